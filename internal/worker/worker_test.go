package worker

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/bundle"
	"github.com/berth-dev/berth/internal/testutil"
)

// logBuffer collects log output for assertions.
type logBuffer = testutil.SyncBuffer

// newWorker bundles src (TypeScript) as wrangler would and starts a Worker.
func newWorker(t testing.TB, src string, cfg Config) (*Worker, *logBuffer) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "index.ts"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := bundle.Build(context.Background(), bundle.Options{Entry: "index.ts", Dir: dir, Builtins: Builtins})
	if err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	cfg.Script = res.Code
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	w, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w, logs
}

func do(t testing.TB, h http.Handler, method, url string, body io.Reader, hdr ...string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, url, body)
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Add(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	return rec
}

func TestHelloWorld(t *testing.T) {
	w, _ := newWorker(t, `
interface Env { GREETING: string }
export default {
  async fetch(request: Request, env: Env, ctx: ExecutionContext): Promise<Response> {
    return new Response(env.GREETING + " " + new URL(request.url).pathname, { headers: { "x-test": "1" } });
  },
};`, Config{Vars: map[string]any{"GREETING": "hello"}})
	rec := do(t, w, "GET", "http://example.com/world", nil)
	if rec.Code != 200 || rec.Body.String() != "hello /world" || rec.Header().Get("X-Test") != "1" {
		t.Fatalf("got %d %q %v", rec.Code, rec.Body.String(), rec.Header())
	}
	if ct := rec.Header().Get("Content-Type"); ct != "text/plain;charset=UTF-8" {
		t.Errorf("content-type = %q", ct)
	}
}

func TestRequestProperties(t *testing.T) {
	w, _ := newWorker(t, `
export default {
  async fetch(req: Request) {
    const u = new URL(req.url);
    switch (u.pathname) {
    case "/text": return new Response(req.method + ":" + await req.text());
    case "/json": { const j = await req.json(); return Response.json({ got: j, ct: req.headers.get("Content-Type") }); }
    case "/bytes": { const b = new Uint8Array(await req.arrayBuffer()); return new Response(b.length + ":" + b[0] + ":" + b[b.length - 1]); }
    case "/headers": {
      let threw = false;
      try { req.headers.set("x", "y"); } catch (e) { threw = e instanceof TypeError; }
      return new Response([req.headers.get("X-MULTI"), req.headers.has("x-missing"), threw, u.searchParams.get("q")].join("|"));
    }
    case "/stream": {
      const reader = req.body!.getReader(); let n = 0;
      for (;;) { const { done, value } = await reader.read(); if (done) break; n += value.byteLength; }
      return new Response("streamed " + n);
    }
    }
    return new Response("nope", { status: 404 });
  },
};`, Config{})
	if rec := do(t, w, "POST", "http://x/text", strings.NewReader("héllo")); rec.Body.String() != "POST:héllo" {
		t.Errorf("text: %q", rec.Body.String())
	}
	rec := do(t, w, "PUT", "http://x/json", strings.NewReader(`{"a":[1,2]}`), "Content-Type", "application/json")
	if rec.Body.String() != `{"got":{"a":[1,2]},"ct":"application/json"}` || rec.Header().Get("Content-Type") != "application/json" {
		t.Errorf("json: %q %v", rec.Body.String(), rec.Header())
	}
	bin := make([]byte, 200000)
	bin[0], bin[len(bin)-1] = 7, 255
	if rec := do(t, w, "POST", "http://x/bytes", bytes.NewReader(bin)); rec.Body.String() != "200000:7:255" {
		t.Errorf("bytes: %q", rec.Body.String())
	}
	if rec := do(t, w, "GET", "http://x/headers?q=a%20b", nil, "X-Multi", "1", "X-Multi", "2"); rec.Body.String() != "1, 2|false|true|a b" {
		t.Errorf("headers: %q", rec.Body.String())
	}
	if rec := do(t, w, "POST", "http://x/stream", bytes.NewReader(bin)); rec.Body.String() != "streamed 200000" {
		t.Errorf("stream: %q", rec.Body.String())
	}
	if rec := do(t, w, "GET", "http://x/none", nil); rec.Code != 404 {
		t.Errorf("404: %d", rec.Code)
	}
}

func TestResponseKinds(t *testing.T) {
	w, _ := newWorker(t, `
export default {
  async fetch(req: Request) {
    const p = new URL(req.url).pathname;
    if (p === "/bytes") return new Response(new Uint8Array([0, 1, 2, 255]), { status: 201, statusText: "Made" });
    if (p === "/json") return Response.json({ ok: true }, { status: 202, headers: { "x-a": "b" } });
    if (p === "/redirect") return Response.redirect("https://example.com/elsewhere", 301);
    if (p === "/cookies") {
      const h = new Headers(); h.append("Set-Cookie", "a=1"); h.append("set-cookie", "b=2"); h.append("X-B", "1"); h.append("x-a", "2");
      return new Response([...h].map(([k, v]) => k + "=" + v).join(";") + "|" + h.getSetCookie().length, { headers: h });
    }
    if (p === "/clone") {
      const r = new Response("twice");
      const c = r.clone();
      return new Response((await r.text()) + (await c.text()) + r.bodyUsed);
    }
    if (p === "/stream") {
      const { readable, writable } = new TransformStream();
      const wr = writable.getWriter();
      (async () => { for (const s of ["a", "b", "c"]) { await wr.write(new TextEncoder().encode(s)); await new Promise(r => setTimeout(r, 1)); } await wr.close(); })();
      return new Response(readable);
    }
    if (p === "/bad") { try { new Response("x", { status: 204 }); } catch (e) { return new Response(String(e instanceof TypeError)); } }
    return new Response(null, { status: 204 });
  },
};`, Config{})
	rec := do(t, w, "GET", "http://x/bytes", nil)
	if rec.Code != 201 || !bytes.Equal(rec.Body.Bytes(), []byte{0, 1, 2, 255}) {
		t.Errorf("bytes: %d %v", rec.Code, rec.Body.Bytes())
	}
	rec = do(t, w, "GET", "http://x/json", nil)
	if rec.Code != 202 || rec.Body.String() != `{"ok":true}` || rec.Header().Get("X-A") != "b" {
		t.Errorf("json: %d %q", rec.Code, rec.Body.String())
	}
	rec = do(t, w, "GET", "http://x/redirect", nil)
	if rec.Code != 301 || rec.Header().Get("Location") != "https://example.com/elsewhere" {
		t.Errorf("redirect: %d %v", rec.Code, rec.Header())
	}
	rec = do(t, w, "GET", "http://x/cookies", nil)
	if rec.Body.String() != "set-cookie=a=1;set-cookie=b=2;x-a=2;x-b=1|2" || len(rec.Header().Values("Set-Cookie")) != 2 {
		t.Errorf("cookies: %q %v", rec.Body.String(), rec.Header())
	}
	if rec = do(t, w, "GET", "http://x/clone", nil); rec.Body.String() != "twicetwicetrue" {
		t.Errorf("clone: %q", rec.Body.String())
	}
	if rec = do(t, w, "GET", "http://x/stream", nil); rec.Body.String() != "abc" {
		t.Errorf("stream: %q", rec.Body.String())
	}
	if rec = do(t, w, "GET", "http://x/bad", nil); rec.Body.String() != "true" {
		t.Errorf("bad: %q", rec.Body.String())
	}
	if rec = do(t, w, "GET", "http://x/empty", nil); rec.Code != 204 {
		t.Errorf("empty: %d", rec.Code)
	}
}

func TestUncaughtExceptionIs500WithoutStack(t *testing.T) {
	w, logs := newWorker(t, `
function deep() { throw new Error("secret detail"); }
export default { fetch() { deep(); return new Response("unreachable"); } };`, Config{})
	rec := do(t, w, "GET", "http://x/", nil)
	if rec.Code != 500 || strings.Contains(rec.Body.String(), "secret") {
		t.Fatalf("got %d %q", rec.Code, rec.Body.String())
	}
	if l := logs.String(); !strings.Contains(l, "secret detail") || !strings.Contains(l, "deep") {
		t.Errorf("log lacks error and stack: %s", l)
	}
	w2, _ := newWorker(t, `export default { async fetch() { return "not a response"; } };`, Config{})
	if rec := do(t, w2, "GET", "http://x/", nil); rec.Code != 500 {
		t.Errorf("non-Response: %d", rec.Code)
	}
}

func TestBadScripts(t *testing.T) {
	for name, src := range map[string]string{
		"no default": `export const x = 1;`,
		"no fetch":   `export default { other() {} };`,
		"throws":     `throw new Error("load boom"); export default { fetch() {} };`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := New(context.Background(), Config{Script: src})
			if err == nil {
				t.Fatal("no error")
			}
		})
	}
}

func TestWaitUntilAndConsole(t *testing.T) {
	w, logs := newWorker(t, `
let counter = 0;
export default {
  async fetch(req: Request, env: unknown, ctx: ExecutionContext) {
    console.log("handling", { path: new URL(req.url).pathname }, 42);
    ctx.waitUntil(new Promise<void>((r) => setTimeout(() => { counter++; console.warn("after response"); r(); }, 5)));
    return new Response(String(counter));
  },
};`, Config{})
	if rec := do(t, w, "GET", "http://x/a", nil); rec.Body.String() != "0" {
		t.Fatalf("first: %q", rec.Body.String())
	}
	deadline := 0
	for !strings.Contains(logs.String(), "after response") && deadline < 200 {
		deadline++
		http.DefaultClient.CloseIdleConnections() // a cheap yield; the runtime goroutine runs meanwhile
		runtimeGosched()
	}
	if rec := do(t, w, "GET", "http://x/b", nil); rec.Body.String() != "1" {
		t.Errorf("waitUntil did not run: %q", rec.Body.String())
	}
	l := logs.String()
	if !strings.Contains(l, `msg="handling { path: \"/a\" } 42"`) || !strings.Contains(l, "request=1") || !strings.Contains(l, "level=WARN") {
		t.Errorf("console log: %s", l)
	}
}

func runtimeGosched() { <-time.After(time.Millisecond) }

func TestStackIsSourceMapped(t *testing.T) {
	w, logs := newWorker(t, `
interface Thing { name: string }

function explode(t: Thing): never {
  throw new Error("boom " + t.name);
}

export default {
  fetch(req: Request): Response {
    explode({ name: "x" });
  },
};`, Config{})
	if rec := do(t, w, "GET", "http://x/", nil); rec.Code != 500 {
		t.Fatalf("status %d", rec.Code)
	}
	l := logs.String()
	if !strings.Contains(l, "index.ts:5:") || !strings.Contains(l, "index.ts:10:") || strings.Contains(l, "worker.js:") {
		t.Errorf("stack not mapped to index.ts lines 5 and 10: %s", l)
	}
}
