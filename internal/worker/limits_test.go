package worker

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

const limitScript = `
let count = 0;
// burn spends ms of CPU time.
const burn = (ms: number) => { const end = Date.now() + ms; while (Date.now() < end) {} };
const tick = () => new Promise((r) => setTimeout(r, 0));
export default {
  async fetch(req: Request, env: { UPSTREAM: string }, ctx: ExecutionContext) {
    const u = new URL(req.url);
    switch (u.pathname) {
      case "/spin": for (;;) {}
      case "/spin-later": await fetch(env.UPSTREAM + "/fast"); for (;;) {}
      case "/steps": {
        const n = Number(u.searchParams.get("n")), ms = Number(u.searchParams.get("ms"));
        for (let i = 0; i < n; i++) { burn(ms); await tick(); await fetch(env.UPSTREAM + "/fast"); }
        return new Response("finished " + n);
      }
      case "/slow": return new Response("slow " + await (await fetch(env.UPSTREAM + "/wait")).text());
      case "/count": return new Response(String(++count));
      case "/leave-work":
        setInterval(() => { count += 1000; }, 1);
        fetch(env.UPSTREAM + "/wait").catch(() => {});
        for (;;) {}
      case "/spin-aside": {
        const p = fetch(env.UPSTREAM + "/wait");
        ctx.waitUntil((async () => { await tick(); for (;;) {} })());
        await p;
        return new Response("not stopped");
      }
      case "/grow": { const a: number[][] = []; for (;;) a.push(new Array(100000).fill(1)); }
      case "/hoard": { const g = globalThis as any; g.hoard ??= []; for (;;) g.hoard.push(new Array(100000).fill(1)); }
    }
    return new Response("ok");
  },
};`

// upstream is what the script fetches: /fast answers at once, /wait once
// the test opens the gate, so that a test knows a request is in flight
// without sleeping.
type upstream struct {
	url     string
	waiting chan struct{} // a /wait request arrived
	gone    chan struct{} // a /wait request's client gave up before the gate opened
	open    chan struct{}
	once    sync.Once
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{waiting: make(chan struct{}, 16), gone: make(chan struct{}, 16), open: make(chan struct{})}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/wait" {
			u.waiting <- struct{}{}
			select {
			case <-u.open:
			case <-r.Context().Done():
				u.gone <- struct{}{}
				return
			}
		}
		io.WriteString(w, "up")
	}))
	t.Cleanup(func() { u.release(); srv.Close() })
	u.url = srv.URL
	return u
}

func (u *upstream) release() { u.once.Do(func() { close(u.open) }) }

func await[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

func limitWorker(t *testing.T, cfg Config) (*Worker, *logBuffer, *upstream) {
	t.Helper()
	u := newUpstream(t)
	cfg.Vars = map[string]any{"UPSTREAM": u.url}
	w, logs := newWorker(t, limitScript, cfg)
	return w, logs, u
}

// inBackground serves a request on its own goroutine.
func inBackground(t *testing.T, w *Worker, url string) <-chan *httptest.ResponseRecorder {
	ch := make(chan *httptest.ResponseRecorder, 1)
	go func() { ch <- do(t, w, "GET", url, nil) }()
	return ch
}

func expectResponse(t *testing.T, rec *httptest.ResponseRecorder, code int, body string) {
	t.Helper()
	if got := strings.TrimSpace(rec.Body.String()); rec.Code != code || got != body {
		t.Errorf("got %d %q, want %d %q", rec.Code, got, code, body)
	}
}

// onLoop runs f on rt's loop goroutine and waits for it.
func onLoop(t *testing.T, rt *runtime, f func()) {
	t.Helper()
	done := make(chan struct{})
	if !rt.post(func() { f(); close(done) }) {
		t.Fatal("the runtime has stopped")
	}
	await(t, done, "the runtime's loop")
}

// logLine fails unless one line of the log has all of parts.
func logLine(t *testing.T, logs *logBuffer, parts ...string) {
	t.Helper()
lines:
	for _, line := range strings.Split(logs.String(), "\n") {
		for _, p := range parts {
			if !strings.Contains(line, p) {
				continue lines
			}
		}
		return
	}
	t.Errorf("no log line has %q:\n%s", parts, logs)
}

// noScriptErrors fails on log lines other than the limit's: stopping a
// request must not spill errors elsewhere.
func noScriptErrors(t *testing.T, logs *logBuffer) {
	t.Helper()
	for _, bad := range []string{"uncaught exception", "runtime call failed", "unhandled promise rejection", "drop the work"} {
		if strings.Contains(logs.String(), bad) {
			t.Errorf("the log has %q:\n%s", bad, logs)
		}
	}
}

// The CPU limit is a budget for all the code of a request: one that spends
// 20 ms at a time between awaits is stopped once the sum passes 50 ms.
func TestCPULimitSumsAcrossAwaits(t *testing.T) {
	w, logs, _ := limitWorker(t, Config{CPULimit: 50 * time.Millisecond})
	expectResponse(t, do(t, w, "GET", "http://x/steps?n=2&ms=15", nil), 200, "finished 2")
	start := time.Now()
	expectResponse(t, do(t, w, "GET", "http://x/steps?n=10&ms=20", nil), 503, "Worker exceeded CPU time limit.")
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("stopping the request took %s", d)
	}
	logLine(t, logs, `msg="worker exceeded its CPU time limit; stopping the request"`, `limit="CPU time" value=50ms request=2`)
	noScriptErrors(t, logs)
}

// A request that loops for ever is stopped; another request in flight on
// the same runtime completes, and the runtime (its globals) lives on.
func TestCPULimitStopsOnlyTheRequest(t *testing.T) {
	w, logs, up := limitWorker(t, Config{CPULimit: 50 * time.Millisecond, Runtimes: 1})
	expectResponse(t, do(t, w, "GET", "http://x/count", nil), 200, "1")
	slow := inBackground(t, w, "http://x/slow")
	await(t, up.waiting, "the slow request")
	expectResponse(t, do(t, w, "GET", "http://x/spin", nil), 503, "Worker exceeded CPU time limit.")
	expectResponse(t, do(t, w, "GET", "http://x/spin-later", nil), 503, "Worker exceeded CPU time limit.")
	up.release()
	expectResponse(t, await(t, slow, "the slow response"), 200, "slow up")
	// A fresh runtime would count from 1 again.
	expectResponse(t, do(t, w, "GET", "http://x/count", nil), 200, "2")
	logLine(t, logs, `msg="worker exceeded its CPU time limit; stopping the request"`, `limit="CPU time" value=50ms request=3 in_flight=1`)
	logLine(t, logs, `limit="CPU time" value=50ms request=4 in_flight=1`)
	noScriptErrors(t, logs)
}

// The timers and pending fetches of a stopped request are dropped, and
// their late results are ignored.
func TestCPULimitDropsTheRequestsWork(t *testing.T) {
	w, logs, up := limitWorker(t, Config{CPULimit: 50 * time.Millisecond, Runtimes: 1})
	rt, _ := w.slots[0].current()
	expectResponse(t, do(t, w, "GET", "http://x/leave-work", nil), 503, "Worker exceeded CPU time limit.")
	await(t, up.waiting, "the stopped request's fetch")
	await(t, up.gone, "the stopped request's fetch to be aborted")
	deadline := time.Now().Add(10 * time.Second)
	for {
		var timers, fetches, reqs int
		var pending int64
		onLoop(t, rt, func() {
			timers, fetches, reqs, pending = len(rt.timers), len(rt.fetches), len(rt.reqs), rt.loop.Pending()
		})
		if timers == 0 && fetches == 0 && reqs == 0 && pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("left behind: %d timers, %d fetches, %d requests, %d operations", timers, fetches, reqs, pending)
		}
		time.Sleep(time.Millisecond) // the aborted fetch's goroutine reports back
	}
	// The interval never ran: it would have added 1000.
	expectResponse(t, do(t, w, "GET", "http://x/count", nil), 200, "1")
	// A fetch the handler awaits fails when the request is stopped by
	// code running aside; the handler's failure is no new error.
	expectResponse(t, do(t, w, "GET", "http://x/spin-aside", nil), 503, "Worker exceeded CPU time limit.")
	await(t, up.waiting, "the second stopped request's fetch")
	await(t, up.gone, "the second stopped request's fetch to be aborted")
	expectResponse(t, do(t, w, "GET", "http://x/count", nil), 200, "2")
	noScriptErrors(t, logs)
}

const gateObjectScript = `
import { DurableObject } from "cloudflare:workers";
export class Gate extends DurableObject {
  waiters: ((v: string) => void)[] = [];
  opened = 0;
  // wait does I/O of its own (a timer) before it waits for open().
  async wait() {
    await new Promise((r) => setTimeout(r, 0));
    return new Promise<string>((r) => this.waiters.push(r));
  }
  waiting() { return this.waiters.length; }
  open() { for (const r of this.waiters.splice(0)) r("opened"); return ++this.opened; }
  spin() { for (;;) {} }
}
export default {
  async fetch(req: Request, env: any) {
    const stub = env.GATE.get(env.GATE.idFromName("g"));
    switch (new URL(req.url).pathname) {
      case "/wait": return new Response(await stub.wait());
      case "/waiting": return new Response(String(await stub.waiting()));
      case "/open": return new Response(String(await stub.open()));
      case "/wait-and-spin": stub.wait(); for (;;) {}
      case "/object-spin":
        try { await stub.spin(); } catch (e) { return new Response("caught " + e); }
    }
    return new Response("?");
  },
};`

// Durable Object calls in flight on the runtime go on when a request is
// stopped, including the call the stopped request made itself (it runs
// under a tag of its own), and the object keeps working.
func TestCPULimitSparesObjectCalls(t *testing.T) {
	ow := newObjectWorker(t, gateObjectScript, map[string]string{"GATE": "Gate"}, objectOptions{runtimes: 1, cpuLimit: 50 * time.Millisecond})
	waitFor := func(n string) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; {
			rec := do(t, ow, "GET", "http://x/waiting", nil)
			if rec.Body.String() == n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("waiting = %s, want %s", rec.Body.String(), n)
			}
			time.Sleep(time.Millisecond) // the call travels through the object host
		}
	}
	waiter := inBackground(t, ow.Worker, "http://x/wait")
	waitFor("1")
	expectResponse(t, do(t, ow, "GET", "http://x/wait-and-spin", nil), 503, "Worker exceeded CPU time limit.")
	waitFor("2")
	expectResponse(t, do(t, ow, "GET", "http://x/open", nil), 200, "1")
	expectResponse(t, await(t, waiter, "the waiting request"), 200, "opened")
	expectResponse(t, do(t, ow, "GET", "http://x/open", nil), 200, "2")
	logLine(t, ow.logs, `msg="worker exceeded its CPU time limit; stopping the request"`, `limit="CPU time"`)
	noScriptErrors(t, ow.logs)
}

// A Durable Object method that loops for ever is stopped after the limit;
// its caller gets an exception, and the object lives on.
func TestCPULimitStopsAnObjectMethod(t *testing.T) {
	ow := newObjectWorker(t, gateObjectScript, map[string]string{"GATE": "Gate"}, objectOptions{runtimes: 1, cpuLimit: 50 * time.Millisecond})
	expectResponse(t, do(t, ow, "GET", "http://x/object-spin", nil), 200, "caught Error: interrupted")
	expectResponse(t, do(t, ow, "GET", "http://x/open", nil), 200, "1")
	logLine(t, ow.logs, `msg="worker exceeded its CPU time limit outside a request; stopping the code"`, `limit="CPU time" value=50ms tag=1>Gate:`)
	noScriptErrors(t, ow.logs)
}

// The limit holds on a pool too, and the other runtimes are not involved.
func TestCPULimitPool(t *testing.T) {
	w, _, up := limitWorker(t, Config{CPULimit: 50 * time.Millisecond, Runtimes: 2})
	// Runtimes are picked round robin: the slow request goes to runtime
	// 0, the spinning one to runtime 1.
	slow := inBackground(t, w, "http://x/slow")
	await(t, up.waiting, "the slow request")
	expectResponse(t, do(t, w, "GET", "http://x/spin", nil), 503, "Worker exceeded CPU time limit.")
	up.release()
	expectResponse(t, await(t, slow, "the slow response"), 200, "slow up")
	for i := 0; i < 4; i++ {
		expectResponse(t, do(t, w, "GET", "http://x/", nil), 200, "ok")
	}
}

// A request that runs the heap out of memory fails; a request in flight on
// the same runtime completes, and the runtime, whose heap a collection
// empties again, stays.
func TestMemoryLimitStopsOnlyTheRequest(t *testing.T) {
	w, logs, up := limitWorker(t, Config{MemoryLimit: 32 << 20, Runtimes: 1})
	expectResponse(t, do(t, w, "GET", "http://x/count", nil), 200, "1")
	slow := inBackground(t, w, "http://x/slow")
	await(t, up.waiting, "the slow request")
	expectResponse(t, do(t, w, "GET", "http://x/grow", nil), 503, "Worker exceeded memory limit.")
	up.release()
	expectResponse(t, await(t, slow, "the slow response"), 200, "slow up")
	expectResponse(t, do(t, w, "GET", "http://x/count", nil), 200, "2")
	logLine(t, logs, `msg="worker exceeded its memory limit; stopping the request"`, `limit=memory value="32 MiB" request=3 in_flight=1`)
	logLine(t, logs, `msg="runtime recovered from running out of memory"`)
	noScriptErrors(t, logs)
}

// A runtime whose globals keep its heap full is replaced in the pool; it
// finishes the requests it has in flight and then stops.
func TestMemoryLimitRetiresAFullRuntime(t *testing.T) {
	w, logs, up := limitWorker(t, Config{MemoryLimit: 32 << 20, Runtimes: 1})
	expectResponse(t, do(t, w, "GET", "http://x/count", nil), 200, "1")
	old, _ := w.slots[0].current()
	slow := inBackground(t, w, "http://x/slow")
	await(t, up.waiting, "the slow request")
	expectResponse(t, do(t, w, "GET", "http://x/hoard", nil), 503, "Worker exceeded memory limit.")
	for deadline := time.Now().Add(10 * time.Second); ; {
		if rt, _ := w.slots[0].current(); rt != old {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the runtime was not replaced:\n%s", logs)
		}
		time.Sleep(time.Millisecond) // the collection and the new runtime's start
	}
	expectResponse(t, do(t, w, "GET", "http://x/count", nil), 200, "1") // a fresh runtime
	select {
	case <-old.done:
		t.Fatal("the old runtime stopped with a request in flight")
	default:
	}
	up.release()
	expectResponse(t, await(t, slow, "the slow response"), 200, "slow up")
	await(t, old.done, "the drained runtime to stop")
	logLine(t, logs, `msg="worker exceeded its memory limit; stopping the request"`, `limit=memory value="32 MiB" request=3`)
	logLine(t, logs, `msg="replacing the runtime: its heap is near the memory limit; it stops once the work it has in flight is done"`)
	noScriptErrors(t, logs)
}
