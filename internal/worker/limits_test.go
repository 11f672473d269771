package worker

import (
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

const limitScript = `
export default {
  async fetch(req: Request) {
    const p = new URL(req.url).pathname;
    if (p === "/spin") { for (;;) {} }
    if (p === "/spin-later") { await new Promise((r) => setTimeout(r, 1)); for (;;) {} }
    if (p === "/grow") { const a: number[][] = []; for (;;) a.push(new Array(100000).fill(1)); }
    if (p === "/slow") { await new Promise((r) => setTimeout(r, 150)); return new Response("slow done"); }
    return new Response("ok");
  },
};`

func TestCPULimit(t *testing.T) {
	w, logs := newWorker(t, limitScript, Config{CPULimit: 50 * time.Millisecond, Runtimes: 2})
	// Runtimes are picked round robin: requests 1 and 3 go to runtime 0,
	// request 2 to runtime 1. Request 1 waits on runtime 0 while request 2
	// spins on runtime 1.
	var wg sync.WaitGroup
	var slow *httptest.ResponseRecorder
	wg.Add(1)
	go func() { defer wg.Done(); slow = do(t, w, "GET", "http://x/slow", nil) }()
	time.Sleep(10 * time.Millisecond)
	start := time.Now()
	rec := do(t, w, "GET", "http://x/spin", nil)
	if rec.Code != 503 {
		t.Errorf("spin: %d %q, want 503", rec.Code, rec.Body.String())
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("spin took %s", d)
	}
	wg.Wait()
	if slow.Code != 200 || slow.Body.String() != "slow done" {
		t.Errorf("request on the other runtime: %d %q", slow.Code, slow.Body.String())
	}
	l := logs.String()
	if !strings.Contains(l, "CPU time limit") || !strings.Contains(l, "value=50ms") || !strings.Contains(l, "request=2") {
		t.Errorf("log does not name the limit and request: %s", l)
	}
	// The runtime was replaced: both slots answer again.
	for i := 0; i < 4; i++ {
		if rec := do(t, w, "GET", "http://x/", nil); rec.Code != 200 || rec.Body.String() != "ok" {
			t.Fatalf("after restart: %d %q", rec.Code, rec.Body.String())
		}
	}
	// A spin in a promise continuation is caught too.
	if rec := do(t, w, "GET", "http://x/spin-later", nil); rec.Code != 503 {
		t.Errorf("spin-later: %d", rec.Code)
	}
	if rec := do(t, w, "GET", "http://x/", nil); rec.Code != 200 {
		t.Errorf("after second restart: %d", rec.Code)
	}
}

func TestMemoryLimit(t *testing.T) {
	w, logs := newWorker(t, limitScript, Config{MemoryLimit: 32 << 20, Runtimes: 2})
	var wg sync.WaitGroup
	var slow *httptest.ResponseRecorder
	wg.Add(1)
	go func() { defer wg.Done(); slow = do(t, w, "GET", "http://x/slow", nil) }()
	time.Sleep(10 * time.Millisecond)
	if rec := do(t, w, "GET", "http://x/grow", nil); rec.Code != 503 {
		t.Errorf("grow: %d %q, want 503", rec.Code, rec.Body.String())
	}
	wg.Wait()
	if slow.Code != 200 {
		t.Errorf("request on the other runtime: %d %q", slow.Code, slow.Body.String())
	}
	if l := logs.String(); !strings.Contains(l, "memory limit") || !strings.Contains(l, "value=\"32 MiB\"") {
		t.Errorf("log does not name the limit: %s", l)
	}
	for i := 0; i < 4; i++ {
		if rec := do(t, w, "GET", "http://x/", nil); rec.Code != 200 {
			t.Fatalf("after restart: %d %q\n%s", rec.Code, rec.Body.String(), logs.String())
		}
	}
}
