package worker

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/berth-dev/berth/internal/container"
	"github.com/berth-dev/berth/internal/container/fake"
	"github.com/berth-dev/berth/internal/container/testapp"
)

// boxSrc drives ctx.container directly (the Durable Object Container API).
const boxSrc = `
import { DurableObject } from "cloudflare:workers";
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export class Box extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    this.runningAtStart = ctx.container.running;
  }
  async waitUp(port) {
    for (let i = 0; i < 500; i++) {
      try { return await port.fetch("http://container/echo"); }
      catch (e) {
        if (!String(e.message).includes("the container is not listening")) throw e;
        await sleep(10);
      }
    }
    throw new Error("the container never listened");
  }
  async fetch(req) {
    const url = new URL(req.url);
    const c = this.ctx.container;
    const port = c.getTcpPort(8080);
    switch (url.pathname) {
      case "/state":
        return Response.json({ running: c.running, runningAtStart: this.runningAtStart });
      case "/start": {
        c.start({ env: { FROM_START: "yes" }, labels: { app: "lab" } });
        let twice = "";
        try { c.start(); } catch (e) { twice = e.message; }
        this.mon = c.monitor().then(() => "clean", (e) => "error:" + e.message + ":" + e.exitCode);
        const echo = await (await this.waitUp(port)).json();
        return Response.json({ running: c.running, twice, env: echo.env.FROM_START, host: echo.headers.Host ?? null });
      }
      case "/proxy":
        return port.fetch("http://container" + url.searchParams.get("path"), req);
      case "/bodyend": {
        // Three requests one after another, each read to its end; the
        // runtime's end-of-body promise settles only once the body was read.
        const seen = [];
        for (let i = 0; i < 3; i++) {
          const r = await port.fetch("http://container/echo");
          let ended = false;
          const done = r[Symbol.for("berth.bodyEnd")];
          done.then(() => { ended = true; });
          await sleep(5);
          const before = ended;
          await r.text();
          await done;
          seen.push({ before, after: ended });
        }
        return Response.json(seen);
      }
      case "/exit": {
        await port.fetch("http://container/exit?code=3").then((r) => r.text());
        return new Response(await this.mon);
      }
      case "/destroy": {
        const m = c.monitor().then(() => "clean", (e) => "rejected:" + (e && e.message));
        await c.destroy(new Error("destroyed on purpose"));
        return Response.json({ monitor: await m, running: c.running });
      }
      case "/signal": {
        c.signal(15);
        return new Response(await this.mon);
      }
      case "/https":
        return port.fetch("https://container/echo").then(() => "no error", (e) => e.message).then((t) => new Response(t));
      case "/exec": {
        const p = await c.exec(["/testapp", "echo", "hi", "there"]);
        const out = await p.output();
        const e = await c.exec(["/testapp", "stderr", "oops"], { stdout: "ignore" });
        const errText = await new Response(e.stderr).text();
        const cat = await c.exec(["/testapp", "cat"], { stdin: "pipe" });
        const w = cat.stdin.getWriter();
        await w.write(new TextEncoder().encode("piped"));
        await w.close();
        const catOut = await new Response(cat.stdout).text();
        return Response.json({ out: new TextDecoder().decode(out.stdout), code: out.exitCode, err: errText, errCode: await e.exitCode, cat: catOut });
      }
      case "/kill": {
        const p = await c.exec(["/testapp", "sleep", "1h"]);
        p.kill(9);
        return new Response(String(await p.exitCode));
      }
      case "/inspect":
        return Response.json(await c.inspect());
      case "/connect": {
        const s = port.connect("container:8080");
        await s.opened;
        const w = s.writable.getWriter();
        await w.write(new TextEncoder().encode("GET /echo HTTP/1.0\r\nHost: raw\r\n\r\n"));
        const text = await new Response(s.readable).text();
        await s.close();
        return new Response(text.split("\r\n")[0]);
      }
      case "/notrunning": {
        let sig = "", mon = "";
        try { c.signal(15); } catch (e) { sig = e.message; }
        await c.monitor().catch((e) => { mon = e.message; });
        const f = await port.fetch("http://container/echo").then(() => "ok", (e) => e.message);
        return Response.json({ sig, mon, fetch: f });
      }
    }
    return new Response("no route", { status: 404 });
  }
}
export class Plain extends DurableObject {
  fetch() { return new Response(String(this.ctx.container)); }
}
export default {
  fetch(req, env) {
    const url = new URL(req.url);
    if (url.pathname === "/plain") return env.PLAIN.getByName("p").fetch(req);
    return env.BOX.getByName(url.searchParams.get("name") || "a").fetch(req);
  },
};
`

// fakeContainers is a Manager on the in-memory runtime running testapp.
func fakeContainers(t *testing.T, classes ...string) *container.Manager {
	return fakeContainersTB(t, classes...)
}

func fakeContainersTB(t testing.TB, classes ...string) *container.Manager {
	t.Helper()
	cc := map[string]container.ClassConfig{}
	for _, cls := range classes {
		cc[cls] = container.ClassConfig{}
	}
	m, _ := fakeManager(t, nil, cc)
	return m
}

// fakeManager is a container Manager on the in-memory runtime, running
// testapp for every class (on port 8080, with the classes' other
// settings), on clock clk (nil: the wall clock). It returns the runtime
// too.
func fakeManager(t testing.TB, clk container.Clock, classes map[string]container.ClassConfig) (*container.Manager, *fake.Runtime) {
	t.Helper()
	rt := fake.New(fake.Options{Programs: map[string]fake.Program{"/testapp": testapp.Main}})
	dir := t.TempDir()
	for name, data := range map[string]string{
		"testapp":    "placeholder: the fake runs testapp.Main\n",
		"Dockerfile": "FROM scratch\nCOPY testapp /testapp\nEXPOSE 8080\nENTRYPOINT [\"/testapp\"]\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	const image = "berth-test/worker:fake"
	if _, err := rt.Build(context.Background(), container.BuildSpec{ContextDir: dir, Tag: image}); err != nil {
		t.Fatal(err)
	}
	for name, cc := range classes {
		cc.Image, cc.DefaultPort = image, 8080
		classes[name] = cc
	}
	m, err := container.NewManager(container.ManagerConfig{App: "lab", Runtime: rt, Classes: classes, StopGrace: time.Second,
		Clock: clk, Logger: slog.New(slog.DiscardHandler), Labels: map[string]string{container.LabelTest: "1"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := m.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return m, rt
}

// postStreaming POSTs to url a body that stays open, sends first, waits for
// the response head and for first to come back (the echo routes), and
// returns the response and the rest of the body to write; the response's
// body is closed when the test ends.
func postStreaming(t *testing.T, url, first string) (*http.Response, *io.PipeWriter) {
	t.Helper()
	pr, pw := io.Pipe()
	req, err := http.NewRequest("POST", url, pr)
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		resp *http.Response
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		done <- result{resp, err}
	}()
	if _, err := pw.Write([]byte(first)); err != nil {
		t.Fatal(err)
	}
	var res result
	select {
	case res = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("no response head while the request body is still open")
	}
	if res.err != nil {
		t.Fatal(res.err)
	}
	t.Cleanup(func() { res.resp.Body.Close() })
	buf := make([]byte, len(first))
	if _, err := io.ReadFull(res.resp.Body, buf); err != nil || string(buf) != first {
		t.Fatalf("first echoed chunk %q, %v", buf, err)
	}
	return res.resp, pw
}

func boxWorker(t *testing.T, m *container.Manager, dir string) *objectWorker {
	return newObjectWorker(t, boxSrc, map[string]string{"BOX": "Box", "PLAIN": "Plain"},
		objectOptions{dir: dir, containers: m, containerClasses: []string{"Box"}})
}

func getJSON(t *testing.T, w *objectWorker, url string, v any) {
	t.Helper()
	rec := do(t, w, "GET", url, nil)
	if rec.Code != 200 {
		t.Fatalf("GET %s: %d %s\nlog:\n%s", url, rec.Code, rec.Body, w.logs)
	}
	if err := json.Unmarshal(rec.Body.Bytes(), v); err != nil {
		t.Fatalf("GET %s: %v: %s", url, err, rec.Body)
	}
}

func TestContainerLifecycle(t *testing.T) {
	m := fakeContainers(t, "Box")
	w := boxWorker(t, m, "")

	if got := do(t, w, "GET", "http://x/plain", nil).Body.String(); got != "undefined" {
		t.Fatalf("ctx.container of a class without a container = %q, want undefined", got)
	}
	var st struct{ Running, RunningAtStart bool }
	getJSON(t, w, "http://x/state", &st)
	if st.Running || st.RunningAtStart {
		t.Fatalf("before start: %+v", st)
	}
	var started struct {
		Running bool
		Twice   string
		Env     string
		Host    *string
	}
	getJSON(t, w, "http://x/start", &started)
	if !started.Running || started.Env != "yes" || !strings.Contains(started.Twice, "already running") {
		t.Fatalf("start: %+v", started)
	}
	var info struct {
		Labels map[string]string
		Image  string
	}
	getJSON(t, w, "http://x/inspect", &info)
	if info.Labels["app"] != "lab" || len(info.Labels) != 1 || info.Image == "" {
		t.Fatalf("inspect: %+v", info)
	}
	if got := do(t, w, "GET", "http://x/https", nil).Body.String(); !strings.Contains(got, "HTTPS is not currently supported") {
		t.Fatalf("https fetch: %q", got)
	}
	if got := do(t, w, "GET", "http://x/connect", nil).Body.String(); got != "HTTP/1.0 200 OK" {
		t.Fatalf("connect: %q", got)
	}
	if got := do(t, w, "GET", "http://x/exit", nil).Body.String(); got != "error:container exited with unexpected exit code: 3:3" {
		t.Fatalf("monitor after exit 3: %q", got)
	}
	getJSON(t, w, "http://x/state", &st)
	if st.Running {
		t.Fatalf("running after the exit")
	}
	var nr struct{ Sig, Mon, Fetch string }
	getJSON(t, w, "http://x/notrunning", &nr)
	if !strings.Contains(nr.Sig, "not running") || !strings.Contains(nr.Mon, "not running") || !strings.Contains(nr.Fetch, "container is not running") {
		t.Fatalf("calls on a stopped container: %+v", nr)
	}

	// Started again: destroy(reason) makes monitor reject with it.
	getJSON(t, w, "http://x/start", &started)
	var d struct {
		Monitor string
		Running bool
	}
	getJSON(t, w, "http://x/destroy", &d)
	if d.Monitor != "rejected:destroyed on purpose" || d.Running {
		t.Fatalf("destroy: %+v", d)
	}
	// And a SIGTERM the script sends is a clean end for testapp.
	getJSON(t, w, "http://x/start", &started)
	// (A container a signal ends with 128+signal: TestContainerMonitorSignalled.)
	if got := do(t, w, "GET", "http://x/signal", nil).Body.String(); got != "clean" {
		t.Fatalf("monitor after signal(15): %q, want clean (testapp exits 0 on SIGTERM)", got)
	}
}

func TestContainerExec(t *testing.T) {
	m := fakeContainers(t, "Box")
	w := boxWorker(t, m, "")
	var started struct{ Running bool }
	getJSON(t, w, "http://x/start", &started)
	var ex struct {
		Out, Err, Cat string
		Code, ErrCode int
	}
	getJSON(t, w, "http://x/exec", &ex)
	if ex.Out != "hi there\n" || ex.Code != 0 || ex.Err != "oops\n" || ex.ErrCode != 0 || ex.Cat != "piped" {
		t.Fatalf("exec: %+v", ex)
	}
	if got := do(t, w, "GET", "http://x/kill", nil).Body.String(); got != "137" {
		t.Fatalf("exit code after kill(9) = %q, want 137", got)
	}
}

// TestContainerRunningAfterRestart: a new activation (here: a new Worker
// over the same state, as after a berth restart) sees the container that
// kept running.
func TestContainerRunningAfterRestart(t *testing.T) {
	m := fakeContainers(t, "Box")
	dir := t.TempDir()
	w := boxWorker(t, m, dir)
	var started struct{ Running bool }
	getJSON(t, w, "http://x/start", &started)
	w.stop(t)

	w2 := boxWorker(t, m, dir)
	var st struct{ Running, RunningAtStart bool }
	getJSON(t, w2, "http://x/state", &st)
	if !st.Running || !st.RunningAtStart {
		t.Fatalf("after a new activation: %+v, want running", st)
	}
}

// dialCounter counts the connections made for pooled container fetches.
type dialCounter struct {
	*container.Manager
	idle atomic.Int64
}

func (d *dialCounter) DialIdle(ctx context.Context, owner container.Owner, port int) (net.Conn, error) {
	conn, err := d.Manager.DialIdle(ctx, owner, port)
	if err == nil {
		d.idle.Add(1)
	}
	return conn, err
}

func TestContainerFetchReusesConnections(t *testing.T) {
	m := fakeContainers(t, "Box")
	counter := &dialCounter{Manager: m}
	w := newObjectWorker(t, boxSrc, map[string]string{"BOX": "Box", "PLAIN": "Plain"},
		objectOptions{containers: counter, containerClasses: []string{"Box"}})
	var started struct{ Running bool }
	getJSON(t, w, "http://x/start", &started) // waits for the port with fetches
	var seen []struct{ Before, After bool }
	getJSON(t, w, "http://x/bodyend", &seen)
	if len(seen) != 3 {
		t.Fatalf("bodyend: %+v", seen)
	}
	for i, s := range seen {
		if s.Before || !s.After {
			t.Errorf("request %d: body ended before it was read %v, after %v; want false, true", i, s.Before, s.After)
		}
	}
	if n := counter.idle.Load(); n != 1 {
		t.Errorf("%d connections for requests one after another, want 1 (kept alive)", n)
	}
	// A new container gets new connections: the exit drops the pool.
	if rec := do(t, w, "GET", "http://x/exit", nil); rec.Code != 200 {
		t.Fatalf("exit: %d %s", rec.Code, rec.Body)
	}
	getJSON(t, w, "http://x/start", &started)
	getJSON(t, w, "http://x/bodyend", &seen)
	if n := counter.idle.Load(); n != 2 {
		t.Errorf("%d connections in all after a restart, want 2", n)
	}
}

// TestContainerProxyStreamsAndWebSockets: a client request goes Worker →
// stub.fetch → object → getTcpPort().fetch → container, streaming both
// ways, and a WebSocket upgrade goes the same way end to end.
func TestContainerProxyStreamsAndWebSockets(t *testing.T) {
	m := fakeContainers(t, "Box")
	w := boxWorker(t, m, "")
	var started struct{ Running bool }
	getJSON(t, w, "http://x/start", &started)
	srv := httptest.NewServer(w)
	defer srv.Close()

	// Streaming both ways: each line written is echoed before the next is
	// sent.
	resp, pw := postStreaming(t, srv.URL+"/proxy?path=/stream", "one\n")
	buf := make([]byte, 4)
	if _, err := pw.Write([]byte("two\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "two\n" {
		t.Fatalf("second echoed chunk %q, %v", buf, err)
	}
	pw.Close()
	if rest, err := io.ReadAll(resp.Body); err != nil || len(rest) != 0 {
		t.Fatalf("rest %q, %v", rest, err)
	}

	// WebSocket end to end.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/proxy?path=/ws", nil)
	if err != nil {
		t.Fatalf("dial through Worker, object and container: %v", err)
	}
	defer conn.CloseNow()
	for _, msg := range []string{"hello", "world"} {
		if err := conn.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		_, data, err := conn.Read(ctx)
		if err != nil || string(data) != "echo:"+msg {
			t.Fatalf("read %q, %v; want echo:%s", data, err, msg)
		}
	}
	if err := conn.Write(ctx, websocket.MessageText, []byte("close")); err != nil {
		t.Fatal(err)
	}
	_, _, err = conn.Read(ctx)
	if websocket.CloseStatus(err) != websocket.StatusNormalClosure {
		t.Fatalf("close from the container: %v, want 1000", err)
	}
}
