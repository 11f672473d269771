package worker

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/berth-dev/berth/internal/clock/clocktest"
	"github.com/berth-dev/berth/internal/container"
	"github.com/berth-dev/berth/internal/container/fake"
	"github.com/berth-dev/berth/internal/container/testapp"
)

// behaviourClock returns a manual clock at the current time, in whole
// milliseconds (JavaScript's time unit).
func behaviourClock() *clocktest.Manual {
	return clocktest.New(time.Now().Truncate(time.Millisecond))
}

// rawSrc drives ctx.container directly, for what a script sees of
// failures, aborts and the inactivity timeout.
const rawSrc = `
import { DurableObject } from "cloudflare:workers";
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const outcome = (p) => p.then((r) => r.text()).then((t) => "ok:" + t, (e) => "error:" + (e && e.message));
export class Raw extends DurableObject {
  async waitUp(port) {
    for (let i = 0; i < 500; i++) {
      try { return await port.fetch("http://container/echo"); }
      catch (e) {
        if (!String(e.message).includes("the container is not listening")) throw e;
        await sleep(5);
      }
    }
    throw new Error("the container never listened");
  }
  // untilHangs polls /hangs until pred holds.
  async untilHangs(port, pred) {
    for (let i = 0; i < 1000; i++) {
      const h = await (await port.fetch("http://container/hangs")).json();
      if (pred(h)) return h;
      await sleep(5);
    }
    throw new Error("/hangs never got there");
  }
  async fetch(req) {
    const url = new URL(req.url);
    const c = this.ctx.container;
    const port = c.getTcpPort(8080);
    switch (url.pathname) {
      case "/start": {
        c.start({ env: JSON.parse(url.searchParams.get("env") || "{}") });
        this.mon = c.monitor().then(() => "clean", (e) => "error:" + e.message + ":" + e.exitCode);
        await (await this.waitUp(port)).text();
        return Response.json({ running: c.running, id: this.ctx.id.toString() });
      }
      case "/refused": {
        // A start the Manager refuses: what start(), the first port fetch
        // and monitor() tell.
        let start = "";
        try { c.start(); } catch (e) { start = "threw:" + e.message; }
        const mon = c.monitor().then(() => "clean", (e) => e.message);
        const fetch = await outcome(port.fetch("http://container/echo"));
        return Response.json({ start, fetch, monitor: await mon, running: c.running });
      }
      case "/state":
        return Response.json({ running: c.running, idle: c[Symbol.for("berth.idleMs")]() });
      case "/monitor":
        return new Response(await this.mon);
      case "/inactivity":
        await c.setInactivityTimeout(Number(url.searchParams.get("ms")));
        return new Response("set");
      case "/open":
        this.sock = port.connect("container:8080");
        await this.sock.opened;
        return new Response("open");
      case "/close":
        await this.sock.close();
        return new Response("closed");
      case "/signal":
        c.signal(Number(url.searchParams.get("n")));
        return new Response(await this.mon);
      case "/get":
        return new Response(await outcome(port.fetch("http://container" + url.searchParams.get("path"))));
      case "/post":
        return new Response(await outcome(port.fetch("http://container" + url.searchParams.get("path"), { method: "POST", body: "payload" })));
      case "/killhang": {
        // The container is killed while it holds a request.
        const p = outcome(port.fetch("http://container/hang"));
        await this.untilHangs(port, (h) => h.waiting === 1);
        c.signal(9);
        return new Response(await p);
      }
      case "/destroystream": {
        // The container goes away while its response streams.
        let ctl;
        const body = new ReadableStream({ start(c) { ctl = c; } });
        const res = await port.fetch("http://container/stream", { method: "POST", body, duplex: "half" });
        const reader = res.body.getReader();
        ctl.enqueue(new TextEncoder().encode("first"));
        const first = await reader.read();
        await c.destroy();
        let rest;
        try {
          for (;;) { const { done } = await reader.read(); if (done) { rest = "ended cleanly"; break; } }
        } catch (e) { rest = "error:" + e.message; }
        return Response.json({ first: new TextDecoder().decode(first.value), rest });
      }
      case "/abort": {
        // Aborted while the container holds the request.
        const ac = new AbortController();
        const p = port.fetch("http://container/hang", { signal: ac.signal });
        await this.untilHangs(port, (h) => h.waiting === 1);
        const reason = new Error("aborted on purpose");
        ac.abort(reason);
        let got = "resolved";
        try { await p; } catch (e) { got = e === reason ? "the reason" : "other:" + e; }
        const hangs = await this.untilHangs(port, (h) => h.waiting === 0);
        const next = await outcome(port.fetch("http://container/echo"));
        return Response.json({ got, hangs, next: next.slice(0, 3), idle: c[Symbol.for("berth.idleMs")]() });
      }
    }
    return new Response("no route", { status: 404 });
  }
}
export default {
  fetch(req, env) {
    const url = new URL(req.url);
    return env.RAW.getByName(url.searchParams.get("name") || "a").fetch(req);
  },
};
`

func rawWorker(t *testing.T, m Containers) *objectWorker {
	return newObjectWorker(t, rawSrc, map[string]string{"RAW": "Raw"},
		objectOptions{containers: m, containerClasses: []string{"Raw"}, idle: 24 * time.Hour})
}

func body(t *testing.T, w *objectWorker, url string) string {
	t.Helper()
	rec := do(t, w, "GET", url, nil)
	if rec.Code != 200 {
		t.Fatalf("GET %s: %d %s\nlog:\n%s", url, rec.Code, rec.Body, w.logs)
	}
	return rec.Body.String()
}

// startRaw starts the container of object name and returns its owner.
func startRaw(t *testing.T, w *objectWorker, name string, env map[string]string) container.Owner {
	t.Helper()
	b, _ := json.Marshal(env)
	var st struct {
		Running bool
		ID      string
	}
	getJSON(t, w, "http://x/start?name="+name+"&env="+url.QueryEscape(string(b)), &st)
	if !st.Running {
		t.Fatalf("object %s: not running after start", name)
	}
	return container.Owner{Class: "Raw", Object: st.ID}
}

const networkLost = "Network connection lost."

// TestContainerNetworkLost: a container connection that breaks after it
// was made reads "Network connection lost." to the script, whether the
// container dies before the response head (on a kept-alive connection or
// a new one) or while the body streams, or is killed or destroyed under a
// request.
func TestContainerNetworkLost(t *testing.T) {
	m, _ := fakeManager(t, nil, map[string]container.ClassConfig{"Raw": {}})
	w := rawWorker(t, m)
	for _, tc := range []struct{ name, url string }{
		// A GET on the connection the start's /echo left in the pool.
		{"head-reused", "http://x/get?path=" + urlq("/crash?code=7")},
		// A POST (a body: a new connection, not replayed).
		{"head-post", "http://x/post?path=" + urlq("/crash?code=7")},
		// The head and part of the body came, then the container died.
		{"body", "http://x/get?path=" + urlq("/crash?code=7&partial=half")},
		{"killed", "http://x/killhang?x=1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			startRaw(t, w, tc.name, nil)
			got := body(t, w, tc.url+"&name="+tc.name)
			if !strings.HasPrefix(got, "error:") || !strings.Contains(got, networkLost) {
				t.Errorf("fetch outcome %q, want an error with %q", got, networkLost)
			}
		})
	}
	t.Run("destroyed", func(t *testing.T) {
		startRaw(t, w, "destroyed", nil)
		var r struct{ First, Rest string }
		getJSON(t, w, "http://x/destroystream?name=destroyed", &r)
		if r.First != "first" || !strings.HasPrefix(r.Rest, "error:") || !strings.Contains(r.Rest, networkLost) {
			t.Errorf("stream cut by destroy(): %+v, want the first chunk, then an error with %q", r, networkLost)
		}
	})
}

func urlq(s string) string { return strings.NewReplacer("?", "%3F", "&", "%26", "=", "%3D").Replace(s) }

// TestContainerFetchAbort: aborting getTcpPort().fetch while the container
// holds the request rejects it with the abort's reason, the container sees
// its client go away, and nothing stays busy: the next request works and
// the container counts as idle.
func TestContainerFetchAbort(t *testing.T) {
	m, _ := fakeManager(t, nil, map[string]container.ClassConfig{"Raw": {}})
	w := rawWorker(t, m)
	startRaw(t, w, "ab", nil)
	var r struct {
		Got   string
		Hangs testapp.HangsReply
		Next  string
		Idle  float64
	}
	getJSON(t, w, "http://x/abort?name=ab", &r)
	if r.Got != "the reason" {
		t.Errorf("aborted fetch settled with %q, want a rejection with the abort reason", r.Got)
	}
	if r.Hangs != (testapp.HangsReply{Waiting: 0, Gone: 1}) {
		t.Errorf("container's /hang requests after the abort: %+v, want its client gone", r.Hangs)
	}
	if r.Next != "ok:" {
		t.Errorf("request after the abort: %q", r.Next)
	}
	if r.Idle < 0 {
		t.Errorf("container busy (idle %v) after the aborted request ended", r.Idle)
	}
}

// TestContainerMonitorSignalled: a container that a signal from the script
// ends with 128+signal makes monitor() reject with "runtime signalled the
// container to exit: <code>" and the code in exitCode (the number is the
// exit code, which is what @cloudflare/containers parses); one that exits 0
// on SIGTERM ends cleanly.
func TestContainerMonitorSignalled(t *testing.T) {
	m, _ := fakeManager(t, nil, map[string]container.ClassConfig{"Raw": {}})
	w := rawWorker(t, m)
	for _, tc := range []struct {
		name   string
		env    map[string]string
		signal int
		want   string
	}{
		{"kill", nil, 9, "error:runtime signalled the container to exit: 137:137"},
		{"term143", map[string]string{"TERM_EXIT_CODE": "143"}, 15, "error:runtime signalled the container to exit: 143:143"},
		{"term0", nil, 15, "clean"},
	} {
		startRaw(t, w, tc.name, tc.env)
		if got := body(t, w, fmt.Sprintf("http://x/signal?name=%s&n=%d", tc.name, tc.signal)); got != tc.want {
			t.Errorf("%s: monitor() after signal(%d) = %q, want %q", tc.name, tc.signal, got, tc.want)
		}
	}
}

// TestContainerSetInactivityTimeout: setInactivityTimeout(ms) makes the
// runtime stop the container once it has been idle that long (requests to
// the object are activity), as a clean end; an open connection to the
// container keeps it running however long it stays open.
func TestContainerSetInactivityTimeout(t *testing.T) {
	clk := behaviourClock()
	m, _ := fakeManager(t, clk, map[string]container.ClassConfig{"Raw": {}})
	w := rawWorker(t, m)
	owner := startRaw(t, w, "idle", nil)
	// stopsAfterTimeout checks that the container runs until the 5 s
	// timeout since now has passed, and stops then.
	stopsAfterTimeout := func(since string) {
		t.Helper()
		clk.Advance(5*time.Second - time.Millisecond)
		clk.Settle()
		if !m.Running(owner) {
			t.Fatalf("stopped sooner than the inactivity timeout after %s", since)
		}
		clk.Advance(time.Millisecond)
		waitFor(t, "the container to stop after the inactivity timeout since "+since, func() bool { return !m.Running(owner) })
	}
	body(t, w, "http://x/inactivity?name=idle&ms=5000")
	stopsAfterTimeout("its last request")
	if got := body(t, w, "http://x/monitor?name=idle"); got != "clean" {
		t.Errorf("monitor() after the inactivity stop = %q, want clean", got)
	}
	var st struct{ Running bool }
	getJSON(t, w, "http://x/state?name=idle", &st)
	if st.Running {
		t.Error("ctx.container.running still true after the inactivity stop")
	}

	// The timeout lasts for the next container; an open connection holds it.
	owner = startRaw(t, w, "idle", nil)
	body(t, w, "http://x/open?name=idle")
	clk.Advance(time.Hour)
	clk.Settle()
	if !m.Running(owner) {
		t.Fatal("stopped while a connection to it was open")
	}
	body(t, w, "http://x/close?name=idle")
	stopsAfterTimeout("the connection closed")
}

// TestContainerRefusedStartText: a start the Manager refuses because the
// class runs its max_instances reads, to a plain Durable Object, with
// Cloudflare's text on the first port fetch and on monitor().
func TestContainerRefusedStartText(t *testing.T) {
	m, _ := fakeManager(t, nil, map[string]container.ClassConfig{"Raw": {MaxInstances: 1}})
	w := rawWorker(t, m)
	startRaw(t, w, "first", nil)
	var r struct {
		Start, Fetch, Monitor string
		Running               bool
	}
	getJSON(t, w, "http://x/refused?name=second", &r)
	const want = "there is no container instance that can be provided to this durable object"
	if r.Start != "" {
		t.Errorf("start() threw %q; it is fire and forget", r.Start)
	}
	if !strings.Contains(r.Fetch, want) {
		t.Errorf("first port fetch after a refused start: %q, want %q in it", r.Fetch, want)
	}
	if !strings.Contains(r.Monitor, want) {
		t.Errorf("monitor() after a refused start: %q, want %q in it", r.Monitor, want)
	}
	if r.Running {
		t.Error("running after a refused start")
	}
}

// classSrc runs classes on berth's Container class. JavaScript's Date.now()
// reads the test's clock: each request to the Worker carries it ("now", in
// ms) and the Worker sets it, so that sleepAfter, the alarms (the object
// host's clock) and the container's idle time (the Manager's clock) all
// follow the one manual clock.
const classSrc = `
import { Container } from "cloudflare:workers";
let fakeNow = null;
const realNow = Date.now;
Date.now = () => fakeNow ?? realNow();
export class Web extends Container {
  defaultPort = 8080;
  sleepAfter = 5; // seconds
  envVars = { REQUEST_LOG: "1" };
  events = [];
  alarmRuns = 0;
  onStart() { this.events.push({ hook: "start" }); }
  onStop(p) { this.events.push({ hook: "stop", params: p }); }
  onError(e) { this.events.push({ hook: "error", message: String(e && e.message) }); }
  async onActivityExpired() { this.events.push({ hook: "expired" }); await super.onActivityExpired(); }
  async alarm(info) { try { await super.alarm(info); } finally { this.alarmRuns++; } }
  getEvents() { return this.events; }
  getAlarmRuns() { return this.alarmRuns; }
  alarmAt() { return this.ctx.storage.getAlarm(); }
  running() { return this.container.running; }
  objectId() { return this.ctx.id.toString(); }
  async waitPorts() {
    try { await this.startAndWaitForPorts({ cancellationOptions: { waitInterval: 5 } }); return "ready"; }
    catch (e) { return "error:" + e.message; }
  }
}
// Keep's onActivityExpired does not stop the container.
export class Keep extends Web {
  async onActivityExpired() { this.events.push({ hook: "expired" }); }
}
// Ports waits for two ports; its container listens on the second only when
// told to, and is pinged at /healthz.
export class Ports extends Web {
  requiredPorts = [8080, 8081];
  pingEndpoint = "container/healthz";
}
export class Lim extends Web {}
export class Rate extends Web {}
export default {
  async fetch(req, env) {
    const url = new URL(req.url);
    const now = url.searchParams.get("now");
    if (now !== null) fakeNow = Number(now);
    if (url.pathname === "/tick") return new Response("ticked");
    const stub = env[url.searchParams.get("ns") || "WEB"].getByName(url.searchParams.get("name") || "a");
    const call = url.searchParams.get("call");
    if (call !== null) {
      const [method, ...args] = JSON.parse(call);
      const v = await stub[method](...args);
      return Response.json(v === undefined ? null : v);
    }
    return stub.fetch(req);
  },
};
`

var classBindings = map[string]string{"WEB": "Web", "KEEP": "Keep", "PORTS": "Ports", "LIM": "Lim", "RATE": "Rate"}

// portDials counts the pooled dials per port (the Container class's pings
// and requests).
type portDials struct {
	*container.Manager
	mu    sync.Mutex
	dials map[int]int
}

func (d *portDials) DialIdle(ctx context.Context, owner container.Owner, port int) (net.Conn, error) {
	d.mu.Lock()
	d.dials[port]++
	d.mu.Unlock()
	return d.Manager.DialIdle(ctx, owner, port)
}

func (d *portDials) count(port int) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.dials[port]
}

type classEnv struct {
	t     *testing.T
	clk   *clocktest.Manual
	m     *container.Manager
	rt    *fake.Runtime
	dials *portDials
	w     *objectWorker
	srv   *httptest.Server
}

func newClassEnv(t *testing.T, cfg map[string]container.ClassConfig) *classEnv {
	e := &classEnv{t: t, clk: behaviourClock()}
	all := map[string]container.ClassConfig{}
	for _, cls := range classBindings {
		all[cls] = cfg[cls]
	}
	e.m, e.rt = fakeManager(t, e.clk, all)
	e.dials = &portDials{Manager: e.m, dials: map[int]int{}}
	e.w = newObjectWorker(t, classSrc, classBindings,
		objectOptions{clock: e.clk, idle: 24 * time.Hour, containers: e.dials, containerClasses: slices.Collect(maps.Values(classBindings))})
	e.srv = httptest.NewServer(e.w)
	t.Cleanup(e.srv.Close)
	return e
}

// url is the Worker URL of path for object name of binding ns, with the
// clock's time.
func (e *classEnv) url(ns, name, path string) string {
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	return fmt.Sprintf("http://x%s%sns=%s&name=%s&now=%d", path, sep, ns, name, e.clk.Now().UnixMilli())
}

func (e *classEnv) get(ns, name, path string) (int, string) {
	e.t.Helper()
	rec := do(e.t, e.w, "GET", e.url(ns, name, path), nil)
	return rec.Code, rec.Body.String()
}

func (e *classEnv) call(v any, ns, name, method string, args ...any) {
	e.t.Helper()
	b, err := json.Marshal(append([]any{method}, args...))
	if err != nil {
		e.t.Fatal(err)
	}
	if v == nil {
		v = new(any)
	}
	getJSON(e.t, e.w, e.url(ns, name, "/?call="+url.QueryEscape(string(b))), v)
}

type hookEvent struct {
	Hook    string
	Message string
	Params  *struct {
		ExitCode int    `json:"exitCode"`
		Reason   string `json:"reason"`
	}
}

func (e *classEnv) events(ns, name string) []hookEvent {
	var ev []hookEvent
	e.call(&ev, ns, name, "getEvents")
	return ev
}

func countHook(ev []hookEvent, hook string) int {
	n := 0
	for _, x := range ev {
		if x.Hook == hook {
			n++
		}
	}
	return n
}

func (e *classEnv) owner(ns, name string) container.Owner {
	var id string
	e.call(&id, ns, name, "objectId")
	return container.Owner{Class: classBindings[ns], Object: id}
}

// step moves the clock (JavaScript's too) on by d and, when the object's
// alarm was due by then, waits for it to have run.
func (e *classEnv) step(ns, name string, d time.Duration) {
	e.t.Helper()
	// Runs before the alarm's time: an alarm already due may run between
	// the two reads, and then counts as the one waited for.
	var runs int
	e.call(&runs, ns, name, "getAlarmRuns")
	var at *float64
	e.call(&at, ns, name, "alarmAt")
	next := e.clk.Now().Add(d)
	if rec := do(e.t, e.w, "GET", fmt.Sprintf("http://x/tick?now=%d", next.UnixMilli()), nil); rec.Code != 200 {
		e.t.Fatalf("tick: %d %s", rec.Code, rec.Body)
	}
	e.clk.Advance(d)
	if at == nil || int64(*at) > next.UnixMilli() {
		return
	}
	waitFor(e.t, "the alarm to run", func() bool {
		var n int
		e.call(&n, ns, name, "getAlarmRuns")
		return n > runs
	})
}

// requests lists what the container of the object has been asked.
func (e *classEnv) requests(owner container.Owner) []testapp.RequestRecord {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := e.m.Dial(ctx, owner, 8080)
	if err != nil {
		e.t.Fatal(err)
	}
	defer conn.Close()
	req, _ := http.NewRequest("GET", "http://container/requests", nil)
	if err := req.Write(conn); err != nil {
		e.t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var recs []testapp.RequestRecord
	if err := json.NewDecoder(resp.Body).Decode(&recs); err != nil {
		e.t.Fatal(err)
	}
	return recs
}

// TestContainerClassSleepAfter: with no request, open body or WebSocket
// for sleepAfter, the alarm calls onActivityExpired, whose default stops
// the container; onStop follows with exit code 0 and the next request
// starts it again. An onActivityExpired that does not stop it keeps it
// running and is called again after another sleepAfter.
func TestContainerClassSleepAfter(t *testing.T) {
	e := newClassEnv(t, nil)
	if code, b := e.get("WEB", "a", "/echo"); code != 200 {
		t.Fatalf("first request: %d %s", code, b)
	}
	owner := e.owner("WEB", "a")
	for i := 1; i < 5; i++ {
		e.step("WEB", "a", time.Second)
		if !e.m.Running(owner) || countHook(e.events("WEB", "a"), "expired") != 0 {
			t.Fatalf("%d s after the request (sleepAfter 5 s): running %v, events %+v", i, e.m.Running(owner), e.events("WEB", "a"))
		}
	}
	e.step("WEB", "a", time.Second)
	if n := countHook(e.events("WEB", "a"), "expired"); n != 1 {
		t.Fatalf("onActivityExpired called %d times once sleepAfter passed, want 1", n)
	}
	waitFor(t, "the container to stop", func() bool { return !e.m.Running(owner) })
	waitFor(t, "running to turn false", func() bool {
		var r bool
		e.call(&r, "WEB", "a", "running")
		return !r
	})
	// The exit sets the alarm for now: onStop follows without the clock
	// moving.
	waitFor(t, "onStop after the container stopped", func() bool { return countHook(e.events("WEB", "a"), "stop") == 1 })
	ev := e.events("WEB", "a")
	if last := ev[len(ev)-1]; last.Hook != "stop" || last.Params == nil || last.Params.ExitCode != 0 || last.Params.Reason != "exit" {
		t.Fatalf("events after the sleep: %+v, want onStop({exitCode: 0, reason: \"exit\"}) last", ev)
	}
	if code, b := e.get("WEB", "a", "/echo"); code != 200 {
		t.Fatalf("request after the sleep: %d %s", code, b)
	}
	if n := countHook(e.events("WEB", "a"), "start"); n != 2 || !e.m.Running(owner) {
		t.Fatalf("after a request to the stopped container: %d onStart, running %v; want 2, true", n, e.m.Running(owner))
	}

	// Keep's onActivityExpired does not stop: the container runs on and
	// the timer is renewed.
	if code, b := e.get("KEEP", "k", "/echo"); code != 200 {
		t.Fatalf("first request: %d %s", code, b)
	}
	keep := e.owner("KEEP", "k")
	for i := 1; i <= 10; i++ {
		e.step("KEEP", "k", time.Second)
		want := i / 5
		if n := countHook(e.events("KEEP", "k"), "expired"); n != want || !e.m.Running(keep) {
			t.Fatalf("%d s after the request: onActivityExpired called %d times (want %d), running %v", i, n, want, e.m.Running(keep))
		}
	}
	if ev := e.events("KEEP", "k"); countHook(ev, "stop") != 0 {
		t.Fatalf("onStop without a stop: %+v", ev)
	}
}

// expireAfter steps the clock a second at a time and checks that the
// container of Web object name runs until sleepAfter (5 s) has passed, then
// stops.
func (e *classEnv) expireAfter(name string, owner container.Owner) {
	e.t.Helper()
	for i := 1; i < 5; i++ {
		e.step("WEB", name, time.Second)
		if !e.m.Running(owner) {
			e.t.Fatalf("%s: stopped %d s after its stream ended (sleepAfter 5 s)", name, i)
		}
	}
	e.step("WEB", name, time.Second)
	waitFor(e.t, name+"'s container to stop sleepAfter after its stream ended", func() bool { return !e.m.Running(owner) })
}

// TestContainerClassAlarmCadence: an idle container's alarm comes back when
// sleepAfter runs out, not every second (each setAlarm is a durable
// write), and a container that exits gets its onStop at once, not at that
// alarm.
func TestContainerClassAlarmCadence(t *testing.T) {
	e := newClassEnv(t, nil)
	if code, b := e.get("WEB", "c", "/echo"); code != 200 {
		t.Fatalf("first request: %d %s", code, b)
	}
	deadline := e.clk.Now().Add(5 * time.Second).UnixMilli() // sleepAfter 5 s
	e.step("WEB", "c", time.Second)                          // the alarm the start set
	var at *float64
	e.call(&at, "WEB", "c", "alarmAt")
	if at == nil {
		t.Fatalf("no alarm for an idle container, want one at its sleepAfter deadline %d", deadline)
	}
	if int64(*at) < deadline-10 || int64(*at) > deadline+10 {
		t.Fatalf("alarm of an idle container at %.0f, want at its sleepAfter deadline %d", *at, deadline)
	}
	runs := 0
	e.call(&runs, "WEB", "c", "getAlarmRuns")

	// The container exits by itself: onStop comes without the clock moving.
	owner := e.owner("WEB", "c")
	if code, b := e.get("WEB", "c", "/exit?code=0"); code != 200 && code != 500 {
		t.Fatalf("exit request: %d %s", code, b)
	}
	waitFor(t, "the container to end", func() bool { return !e.m.Running(owner) })
	waitFor(t, "onStop after the container exited", func() bool { return countHook(e.events("WEB", "c"), "stop") == 1 })
	if ev := e.events("WEB", "c"); ev[len(ev)-1].Params == nil || ev[len(ev)-1].Params.ExitCode != 0 {
		t.Fatalf("events after the exit: %+v, want onStop({exitCode: 0}) last", ev)
	}
}

// TestContainerClassActivityBody: a response body still streaming is
// activity: the container runs past sleepAfter while it streams and stops
// sleepAfter after it ended.
func TestContainerClassActivityBody(t *testing.T) {
	e := newClassEnv(t, nil)
	resp, pw := postStreaming(t, e.srv.URL+"/stream?ns=WEB&name=s&now="+strconv.FormatInt(e.clk.Now().UnixMilli(), 10), "one\n")
	owner := e.owner("WEB", "s")
	for i := 1; i <= 12; i++ {
		e.step("WEB", "s", time.Second)
	}
	if !e.m.Running(owner) || countHook(e.events("WEB", "s"), "expired") != 0 {
		t.Fatalf("12 s into a streaming response (sleepAfter 5 s): running %v, events %+v", e.m.Running(owner), e.events("WEB", "s"))
	}
	if _, err := pw.Write([]byte("two\n")); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	if rest, err := io.ReadAll(resp.Body); err != nil || string(rest) != "two\n" {
		t.Fatalf("rest of the stream %q, %v", rest, err)
	}
	e.expireAfter("s", owner)
}

// TestContainerClassActivityWebSocket: an open WebSocket is activity: the
// container runs past sleepAfter while it is open and stops sleepAfter
// after it closed.
func TestContainerClassActivityWebSocket(t *testing.T) {
	e := newClassEnv(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(e.srv.URL, "http")+"/ws?ns=WEB&name=ws&now="+strconv.FormatInt(e.clk.Now().UnixMilli(), 10), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseNow()
	echo := func(msg string) {
		t.Helper()
		if err := conn.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		if _, data, err := conn.Read(ctx); err != nil || string(data) != "echo:"+msg {
			t.Fatalf("read %q, %v", data, err)
		}
	}
	echo("hello")
	owner := e.owner("WEB", "ws")
	for i := 1; i <= 12; i++ {
		e.step("WEB", "ws", time.Second)
	}
	if !e.m.Running(owner) || countHook(e.events("WEB", "ws"), "expired") != 0 {
		t.Fatalf("12 s into an open WebSocket (sleepAfter 5 s): running %v, events %+v", e.m.Running(owner), e.events("WEB", "ws"))
	}
	echo("still there")
	if err := conn.Write(ctx, websocket.MessageText, []byte("close")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := conn.Read(ctx); websocket.CloseStatus(err) != websocket.StatusNormalClosure {
		t.Fatalf("close from the container: %v", err)
	}
	// The runtime sees the WebSocket's connection end a moment later.
	waitFor(t, "the container to be idle", func() bool {
		busy, _ := e.m.Traffic(owner)
		return !busy
	})
	e.expireAfter("ws", owner)
}

// TestContainerClassRequiredPorts: startAndWaitForPorts() waits for every
// port of requiredPorts, pinging each at pingEndpoint's host and path; the
// default pingEndpoint is the host "ping".
func TestContainerClassRequiredPorts(t *testing.T) {
	e := newClassEnv(t, nil)
	result := make(chan string, 1)
	go func() {
		var r string
		e.call(&r, "PORTS", "p", "waitPorts")
		result <- r
	}()
	// The container listens on 8080 only: the class pings it, then keeps
	// trying 8081.
	waitFor(t, "tries at port 8081", func() bool { return e.dials.count(8081) >= 3 })
	select {
	case r := <-result:
		t.Fatalf("startAndWaitForPorts returned %q while port 8081 did not listen", r)
	default:
	}
	owner := e.owner("PORTS", "p")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := e.m.Dial(ctx, owner, 8080)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", "http://container/listen?port=8081", nil)
	if err := req.Write(conn); err != nil {
		t.Fatal(err)
	}
	if resp, err := http.ReadResponse(bufio.NewReader(conn), req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("/listen: %v %v", resp, err)
	}
	conn.Close()
	select {
	case r := <-result:
		if r != "ready" {
			t.Fatalf("startAndWaitForPorts: %s", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("startAndWaitForPorts did not return once both ports listened")
	}
	var pings []string
	for _, r := range e.requests(owner) {
		if r.Path != "/listen" && r.Path != "/requests" {
			pings = append(pings, r.Port+" "+r.Host+" "+r.Path)
		}
	}
	if want := []string{"8080 container /healthz", "8081 container /healthz"}; !slices.Equal(pings, want) {
		t.Errorf("requests the container saw: %q, want %q", pings, want)
	}
	if ev := e.events("PORTS", "p"); countHook(ev, "start") != 1 {
		t.Errorf("events: %+v, want one onStart", ev)
	}

	// The default pingEndpoint.
	if code, b := e.get("WEB", "d", "/echo"); code != 200 {
		t.Fatalf("request: %d %s", code, b)
	}
	var seen []string
	for _, r := range e.requests(e.owner("WEB", "d")) {
		seen = append(seen, r.Port+" "+r.Host+" "+r.Path)
	}
	if len(seen) != 3 || seen[0] != "8080 ping /" || seen[1] != "8080 x /echo" {
		t.Errorf("requests the container saw: %q, want a ping at host \"ping\", then the request", seen)
	}
}

// TestContainerClassStartRefused: the class answers a request whose start
// the Manager refuses with 503 and Cloudflare's text when the class runs
// max_instances containers, and with 429 when starts are rate-limited.
func TestContainerClassStartRefused(t *testing.T) {
	// The clock does not move, so the one start a second is used up.
	e := newClassEnv(t, map[string]container.ClassConfig{"Lim": {MaxInstances: 1}, "Rate": {StartsPerSecond: 1}})
	for _, ns := range []string{"LIM", "RATE"} {
		if code, b := e.get(ns, "first", "/echo"); code != 200 {
			t.Fatalf("%s: first object: %d %s", ns, code, b)
		}
	}
	code, b := e.get("LIM", "second", "/echo")
	if code != 503 || b != "There is no Container instance available at this time." {
		t.Errorf("max_instances reached: %d %q, want 503 and Cloudflare's text", code, b)
	}
	code, b = e.get("RATE", "second", "/echo")
	if code != 429 || !strings.Contains(b, "you are requesting too many containers per second") {
		t.Errorf("start rate exceeded: %d %q, want 429 with the rate error", code, b)
	}
	// As in the package, monitor()'s no-instance rejection is no error of
	// the container, while the rate error goes to onError; neither is a
	// container that exited before its port was ready.
	if ev := e.events("LIM", "second"); len(ev) != 0 {
		t.Errorf("LIM: hooks of the refused object: %+v, want none", ev)
	}
	if ev := e.events("RATE", "second"); len(ev) != 1 || ev[0].Hook != "error" || !strings.Contains(ev[0].Message, "you are requesting too many containers per second") {
		t.Errorf("RATE: hooks of the refused object: %+v, want onError with the rate error", ev)
	}
}

// TestContainerClassExitCode: a container that exits with a non-zero code
// reaches onStop as {exitCode, reason: "exit"}, not onError, and the next
// request starts it again.
func TestContainerClassExitCode(t *testing.T) {
	e := newClassEnv(t, nil)
	if code, b := e.get("WEB", "x", "/echo"); code != 200 {
		t.Fatalf("first request: %d %s", code, b)
	}
	owner := e.owner("WEB", "x")
	if code, b := e.get("WEB", "x", "/exit?code=3"); code != 200 {
		t.Fatalf("/exit: %d %s", code, b)
	}
	waitFor(t, "the container to exit", func() bool { return !e.m.Running(owner) })
	waitFor(t, "running to turn false", func() bool {
		var r bool
		e.call(&r, "WEB", "x", "running")
		return !r
	})
	waitFor(t, "onStop after the exit", func() bool { return countHook(e.events("WEB", "x"), "stop") >= 1 })
	ev := e.events("WEB", "x")
	if countHook(ev, "error") != 0 {
		t.Errorf("onError for an exit code: %+v", ev)
	}
	if n := countHook(ev, "stop"); n != 1 {
		t.Fatalf("events: %+v, want one onStop", ev)
	}
	if last := ev[len(ev)-1]; last.Hook != "stop" || last.Params.ExitCode != 3 || last.Params.Reason != "exit" {
		t.Errorf("events: %+v, want onStop({exitCode: 3, reason: \"exit\"}) last", ev)
	}
	if code, b := e.get("WEB", "x", "/echo"); code != 200 || !e.m.Running(owner) {
		t.Fatalf("request after the exit: %d %s, running %v", code, b, e.m.Running(owner))
	}
	if ev := e.events("WEB", "x"); countHook(ev, "start") != 2 || countHook(ev, "stop") != 1 {
		t.Errorf("events after the restart: %+v, want two onStart and one onStop", ev)
	}
}

// TestConnPoolLostWhenNoNewConnection: a request that a kept-alive
// connection failed under, and that cannot go again because no new
// connection can be made (the container is gone), fails with what broke
// the first connection, not with the dial's error.
func TestConnPoolLostWhenNoNewConnection(t *testing.T) {
	var s *rawServer
	s = newRawServer(t, func(n int, _ *http.Request) string {
		if n == 1 { // the container dies under the second request
			s.ln.Close()
			return ""
		}
		return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	})
	p := s.pool()
	if _, _, err := get(t, p, http.MethodGet, nil); err != nil {
		t.Fatal(err)
	}
	_, _, err := get(t, p, http.MethodGet, nil)
	if err == nil || !closedIdle(err) {
		t.Fatalf("GET on a connection that broke, with no new one to be had: %v, want the broken connection's error", err)
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		t.Fatalf("error %v is the dial's", err)
	}
}
