package worker

import (
	"encoding/json"
	"strings"
	"testing"
)

// localSrc's object reports what its fetch handler saw and can throw,
// write storage and stream; the Worker calls it with stub.fetch.
const localSrc = `
import { DurableObject } from "cloudflare:workers";
export class Echo extends DurableObject {
  async fetch(req) {
    const url = new URL(req.url);
    switch (url.pathname) {
      case "/throw": throw new RangeError("boom");
      case "/write": {
        this.ctx.storage.kv.put("n", (this.ctx.storage.kv.get("n") ?? 0) + 1);
        return new Response("written");
      }
      case "/stream": {
        const { readable, writable } = new TransformStream();
        const w = writable.getWriter();
        (async () => { for (const part of ["a", "b", "c"]) { await w.write(new TextEncoder().encode(part)); } await w.close(); })();
        return new Response(readable, { headers: { "x-streamed": "yes" } });
      }
    }
    return Response.json({
      method: req.method, url: req.url, headers: [...req.headers], body: await req.text(),
      mutable: (() => { try { req.headers.set("x", "1"); return true; } catch { return false; } })(),
    }, { headers: { "x-from": "object" } });
  }
  count() { return this.ctx.storage.kv.get("n") ?? 0; }
}
export default {
  async fetch(req, env) {
    const url = new URL(req.url);
    const stub = env.ECHO.getByName("one");
    switch (url.pathname) {
      case "/view": {
        const views = [];
        for (let i = 0; i < 2; i++) { // the first activates the object; the second finds it live
          const res = await stub.fetch("http://obj.example/view?q=" + i, { method: "POST", body: "payload", headers: { "X-A": "b" } });
          const v = await res.json();
          v.status = res.status; v.from = res.headers.get("x-from"); v.resURL = res.url;
          v.immutable = (() => { try { res.headers.set("x", "1"); return false; } catch { return true; } })();
          views.push(v);
        }
        return Response.json(views);
      }
      case "/throw": {
        const errs = [];
        for (let i = 0; i < 2; i++) {
          try { await stub.fetch("http://obj.example/throw"); errs.push("no error"); } catch (e) { errs.push(e.constructor.name + " " + e.name + ": " + e.message + " remote=" + e.remote); }
        }
        return Response.json(errs);
      }
      case "/write": {
        await stub.fetch("http://obj.example/write");
        return new Response(String(await stub.count()));
      }
      case "/stream": return stub.fetch("http://obj.example/stream");
      case "/proxy": return stub.fetch(req);
      case "/used": {
        await req.text();
        try { await stub.fetch(req); return new Response("no error"); } catch (e) { return new Response(e.constructor.name + ": " + e.message); }
      }
    }
    return new Response("no route", { status: 404 });
  },
};`

func localWorker(t *testing.T) *objectWorker {
	return newObjectWorker(t, localSrc, map[string]string{"ECHO": "Echo"}, objectOptions{runtimes: 1})
}

// TestStubFetchSameRuntime: stub.fetch to an object that lives in the
// caller's runtime goes to it without leaving the loop; what the object
// and the caller see is what they see on the way through Go, which the
// first call (activating the object) takes.
func TestStubFetchSameRuntime(t *testing.T) {
	w := localWorker(t)
	rec := do(t, w, "GET", "http://x/view", nil)
	if rec.Code != 200 {
		t.Fatalf("view: %d %s\n%s", rec.Code, rec.Body, w.logs)
	}
	var views []map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &views); err != nil || len(views) != 2 {
		t.Fatalf("views: %v %s", err, rec.Body)
	}
	if n := w.localFetches(); n != 1 {
		t.Errorf("%d stub.fetch calls took the same-runtime path, want 1 (the second)", n)
	}
	for i, v := range views {
		v["url"] = strings.Replace(v["url"].(string), "q=1", "q=0", 1)
		v["resURL"] = strings.Replace(v["resURL"].(string), "q=1", "q=0", 1)
		if i == 0 {
			continue
		}
		a, _ := json.Marshal(views[0])
		b, _ := json.Marshal(v)
		if string(a) != string(b) {
			t.Errorf("through Go the object and caller saw\n%s\nin the same runtime\n%s", a, b)
		}
	}
	want := `[["content-length","7"],["content-type","text/plain;charset=UTF-8"],["host","obj.example"],["x-a","b"]]`
	if got, _ := json.Marshal(views[1]["headers"]); string(got) != want {
		t.Errorf("headers the object saw = %s, want %s", got, want)
	}
	if views[1]["body"] != "payload" || views[1]["method"] != "POST" || views[1]["from"] != "object" || views[1]["immutable"] != true || views[1]["mutable"] != false {
		t.Errorf("same-runtime view = %v", views[1])
	}

	noScriptErrors(t, w.logs)
	rec = do(t, w, "GET", "http://x/throw", nil)
	var errs []string
	// Through Go (the first call activates the object) and in the same
	// runtime alike, the caller gets the object's exception, marked remote.
	if err := json.Unmarshal(rec.Body.Bytes(), &errs); err != nil || len(errs) != 2 || errs[0] != errs[1] || errs[1] != "RangeError RangeError: boom remote=true" {
		t.Errorf("exceptions through Go and in the same runtime = %s", rec.Body)
	}

	// The object's writes are committed before its response is seen.
	for i, want := range []string{"1", "2"} {
		if rec := do(t, w, "GET", "http://x/write", nil); rec.Body.String() != want {
			t.Errorf("write %d: count = %q, want %q", i, rec.Body, want)
		}
	}
	rec = do(t, w, "GET", "http://x/stream", nil)
	if rec.Body.String() != "abc" || rec.Header().Get("X-Streamed") != "yes" {
		t.Errorf("streamed response = %q %v", rec.Body, rec.Header())
	}
	rec = do(t, w, "POST", "http://x/proxy", strings.NewReader("from the client"), "Content-Type", "text/plain")
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"body":"from the client"`) {
		t.Errorf("proxied client request = %d %s", rec.Code, rec.Body)
	}
	// A request whose body was read cannot be sent on, as with fetch.
	rec = do(t, w, "POST", "http://x/used", strings.NewReader("read once"))
	if want := "TypeError: Cannot construct a Request with a Request whose body has already been used."; rec.Body.String() != want {
		t.Errorf("stub.fetch(used request) = %q, want %q", rec.Body, want)
	}
}

func (w *objectWorker) localFetches() int64 { return w.Worker.localFetches.Load() }

// sql.exec binds undefined as NULL, as workerd does: @cloudflare/containers'
// schedule() without a payload binds JSON.stringify(undefined).
func TestSQLBindsUndefinedAsNull(t *testing.T) {
	w := newObjectWorker(t, `
import { DurableObject } from "cloudflare:workers";
export class Q extends DurableObject {
  run() {
    const sql = this.ctx.storage.sql;
    sql.exec("CREATE TABLE t (a, b)");
    sql.exec("INSERT INTO t VALUES (?, ?)", undefined, JSON.stringify(undefined));
    return JSON.stringify(sql.exec("SELECT a, b, typeof(a) AS ta FROM t").toArray());
  }
}
export default { async fetch(req, env) { return new Response(await env.Q.getByName("q").run()); } };`,
		map[string]string{"Q": "Q"}, objectOptions{})
	rec := do(t, w, "GET", "http://x/", nil)
	if want := `[{"a":null,"b":null,"ta":"null"}]`; rec.Body.String() != want {
		t.Errorf("got %d %s, want %s", rec.Code, rec.Body, want)
	}
}

// An exception of a type of the script's own, or a thrown non-Error, reaches
// the caller of stub.fetch as an Error with the text the object threw.
func TestStubFetchRemoteErrorKinds(t *testing.T) {
	w := newObjectWorker(t, `
import { DurableObject } from "cloudflare:workers";
class MyError extends Error { name = "MyError"; }
export class T extends DurableObject {
  fetch(req) {
    if (req.url.endsWith("/custom")) throw new MyError("mine");
    throw "a string";
  }
}
export default {
  async fetch(req, env) {
    const stub = env.T.getByName("t");
    const out = [];
    for (const path of ["/custom", "/string", "/custom"]) {
      try { await stub.fetch("http://t" + path); } catch (e) { out.push(e.constructor.name + "|" + e.message + "|" + e.remote); }
    }
    return new Response(out.join("\n"));
  },
};`, map[string]string{"T": "T"}, objectOptions{runtimes: 1})
	rec := do(t, w, "GET", "http://x/", nil)
	want := "Error|MyError: mine|true\nError|a string|true\nError|MyError: mine|true"
	if rec.Body.String() != want {
		t.Errorf("got\n%s\nwant\n%s", rec.Body, want)
	}
}
