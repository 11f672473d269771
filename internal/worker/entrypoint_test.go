package worker

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestWorkerEntrypoint(t *testing.T) {
	w, logs := newWorker(t, `
import { WorkerEntrypoint, DurableObject } from "cloudflare:workers";
interface Env { NAME: string }
export default class extends WorkerEntrypoint<Env> {
  async fetch(req: Request) {
    this.ctx.waitUntil(new Promise((r) => setTimeout(r, 1)).then(() => console.log("waited")));
    return new Response("default " + this.env.NAME + " " + (typeof this.ctx.passThroughOnException));
  }
}
export class Admin extends WorkerEntrypoint<Env> {
  fetch(req: Request) { return new Response("admin " + this.env.NAME + " " + new URL(req.url).pathname); }
}
export class Counter extends DurableObject {}
export const notAClass = 1;
`, Config{Vars: map[string]any{"NAME": "berth"}})
	if rec := do(t, w, "GET", "http://x/", nil); rec.Body.String() != "default berth function" {
		t.Fatalf("default: %d %q", rec.Code, rec.Body.String())
	}
	if got := w.Entrypoints(); !slices.Equal(got, []string{"Admin"}) {
		t.Fatalf("entrypoints = %v", got)
	}
	rec := httptest.NewRecorder()
	if err := w.ServeEntrypoint(rec, httptest.NewRequest("GET", "http://x/users", nil), "Admin"); err != nil || rec.Body.String() != "admin berth /users" {
		t.Fatalf("Admin: %v %q", err, rec.Body.String())
	}
	for _, name := range []string{"Counter", "notAClass", "Missing"} {
		if err := w.ServeEntrypoint(httptest.NewRecorder(), httptest.NewRequest("GET", "http://x/", nil), name); !errors.Is(err, ErrNoEntrypoint) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	waitFor(t, "waitUntil", func() bool { return strings.Contains(logs.String(), "waited") })
}

func TestPassThroughOnExceptionAndRejections(t *testing.T) {
	w, logs := newWorker(t, `
export default {
  async fetch(req: Request, env: unknown, ctx: ExecutionContext) {
    const p = new URL(req.url).pathname;
    if (p === "/pass") {
      ctx.passThroughOnException();
      throw new Error("broken handler");
    }
    if (p === "/reject") {
      Promise.reject(new RangeError("nobody caught me"));
      (async () => { await null; throw new TypeError("async too"); })();
      return new Response("still fine");
    }
    return new Response("ok");
  },
};`, Config{})
	rec := do(t, w, "GET", "http://x/pass", nil)
	if rec.Code != 500 || strings.Contains(rec.Body.String(), "broken") {
		t.Fatalf("pass: %d %q", rec.Code, rec.Body.String())
	}
	l := logs.String()
	if !strings.Contains(l, "passThroughOnException: no origin") || !strings.Contains(l, "broken handler") || !strings.Contains(l, "index.ts:7") {
		t.Fatalf("log lacks pass-through note or mapped stack:\n%s", l)
	}
	if rec := do(t, w, "GET", "http://x/reject", nil); rec.Code != 200 || rec.Body.String() != "still fine" {
		t.Fatalf("reject: %d %q", rec.Code, rec.Body.String())
	}
	// Rejections are reported once the microtask queue drained, which may
	// be after the response went out.
	for _, want := range []string{`err="RangeError: nobody caught me" request=2`, "index.ts:10", "async too"} {
		waitFor(t, want, func() bool { return strings.Contains(logs.String(), want) })
	}
	if rec := do(t, w, "GET", "http://x/", nil); rec.Body.String() != "ok" {
		t.Fatalf("after: %q", rec.Body.String())
	}
}

// Console lines carry the request they belong to while many requests
// interleave on one runtime through timers, fetches and body reads.
func TestConsoleTaggedWithConcurrentRequests(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(time.Duration(len(r.URL.Query().Get("n"))) * time.Millisecond)
		fmt.Fprint(w, "body-"+r.URL.Query().Get("n"))
	}))
	t.Cleanup(backend.Close)
	w, logs := newWorker(t, `
export default {
  async fetch(req: Request, env: { BACKEND: string }) {
    const n = new URL(req.url).searchParams.get("n")!;
    console.log("start", n);
    await new Promise((r) => setTimeout(r, 10 - Number(n)));
    console.log("timer", n);
    const res = await fetch(env.BACKEND + "?n=" + n);
    console.log("fetched", n);
    const text = await res.text();
    console.log("read", n, text);
    queueMicrotask(() => console.log("micro", n));
    return new Response(text);
  },
};`, Config{Vars: map[string]any{"BACKEND": backend.URL}})
	srv := httptest.NewServer(w)
	t.Cleanup(srv.Close)
	var wg sync.WaitGroup
	for n := 0; n < 8; n++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get(fmt.Sprintf("%s/?n=%d", srv.URL, n))
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
		}()
	}
	wg.Wait()
	line := regexp.MustCompile(`msg="(start|timer|fetched|read|micro) (\d)[^"]*".*? source=console request=(\w+)`)
	tags := map[string]map[string]bool{} // n → request tags seen
	count := 0
	for _, m := range line.FindAllStringSubmatch(logs.String(), -1) {
		if tags[m[2]] == nil {
			tags[m[2]] = map[string]bool{}
		}
		tags[m[2]][m[3]] = true
		count++
	}
	if count != 40 {
		t.Fatalf("found %d tagged console lines, want 40:\n%s", count, logs)
	}
	seen := map[string]bool{}
	for n, ts := range tags {
		if len(ts) != 1 {
			t.Errorf("n=%s logged under %d requests: %v", n, len(ts), ts)
		}
		for tag := range ts {
			if seen[tag] {
				t.Errorf("request %s appears for two n", tag)
			}
			seen[tag] = true
		}
	}
}

// A fetched response the script never reads is closed when its request
// ends, so its connection does not stay open.
func TestUnreadFetchBodyReleased(t *testing.T) {
	released := make(chan struct{})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("partial"))
		w.(http.Flusher).Flush()
		<-r.Context().Done() // the body never ends; only the client can end it
		close(released)
	}))
	t.Cleanup(backend.Close)
	w, _ := newWorker(t, `
export default {
  async fetch(req: Request, env: { BACKEND: string }) {
    const res = await fetch(env.BACKEND);
    return new Response("ignored a " + res.status);
  },
};`, Config{Vars: map[string]any{"BACKEND": backend.URL}})
	if rec := do(t, w, "GET", "http://x/", nil); rec.Body.String() != "ignored a 200" {
		t.Fatalf("got %q", rec.Body.String())
	}
	select {
	case <-released:
	case <-time.After(5 * time.Second):
		t.Fatal("the unread response body was not closed when the request ended")
	}
}
