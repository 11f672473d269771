package dev

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/container"
	"github.com/berth-dev/berth/internal/container/docker"
	"github.com/berth-dev/berth/internal/container/testapp"
	"github.com/berth-dev/berth/internal/testutil"
)

// TestContainerPackageNPMSurface drives the API of a Container class that
// the other container tests leave alone (containerFetch in both forms,
// start, startAndWaitForPorts with several ports and with options, stop,
// destroy, schedule and its lookups, pingEndpoint, and the hooks onStart,
// onStop and onActivityExpired), on the unmodified @cloudflare/containers
// package and on berth's own class from "cloudflare:workers". The app is
// testdata/containers-npm/src/surface-app.js.
func TestContainerPackageNPMSurface(t *testing.T) {
	t.Run("npm", func(t *testing.T) {
		t.Parallel()
		dir := containerProject(t)
		npmCI(t, dir)
		testContainerSurface(t, dir, "surface-npm.jsonc", "npm")
	})
	t.Run("builtin", func(t *testing.T) {
		t.Parallel()
		testContainerSurface(t, containerProject(t), "surface-builtin.jsonc", "builtin")
	})
}

// uniqueSurfaceApp renames the app of configPath in dir
// (containers-surface-IMPL) to one of this run, with an image of its own
// (IMPL is a label of Dockerfile.surface), and returns the new name. A
// berth dev of the same app in another test process would remove this
// one's containers as leftovers; and berth dev runs a class's containers
// from the first tag of its image (openContainers: img.Refs[0]), which
// may be another app's tag of the same image, removed when that app's
// test ends.
func uniqueSurfaceApp(t *testing.T, dir, configPath, impl string) string {
	t.Helper()
	path := filepath.Join(dir, configPath)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	suffix := fmt.Sprintf("%d-%d", os.Getpid(), time.Now().UnixNano()%1e6)
	app := "containers-surface-" + impl + "-" + suffix
	text := strings.Replace(string(b), `"name": "containers-surface-`+impl+`"`, `"name": "`+app+`"`, 1)
	text = strings.ReplaceAll(text, `"IMPL": "`+impl+`"`, `"IMPL": "`+impl+"-"+suffix+`"`)
	if !strings.Contains(text, app) || !strings.Contains(text, suffix+`" }`) {
		t.Fatalf("%s: app name or IMPL not found", configPath)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return app
}

// surfaceOp is what the object's op method answers: how calling one
// method of the class went.
type surfaceOp struct {
	OK      bool            `json:"ok"`
	Value   json.RawMessage `json:"value"`
	Error   string          `json:"error"`
	Ms      int64           `json:"ms"` // how long the call took
	T0      int64           `json:"t0"` // when it began, in Unix ms
	Running bool            `json:"running"`
}

// surfaceEvents are the records the app's hooks keep in storage.
type surfaceEvents struct {
	Starts, Stops, Errors, Expired int
	ExitCodes                      []int
	Reasons                        []string
	ErrorTexts                     []string
	ExpiredAt                      []int64
	Ticks                          []struct {
		Payload json.RawMessage
		At      int64
		TaskID  string
		Type    string
	}
}

// containerSchedule is the package's Schedule record.
type containerSchedule struct {
	TaskID         string          `json:"taskId"`
	Callback       string          `json:"callback"`
	Payload        json.RawMessage `json:"payload"`
	Type           string          `json:"type"`
	Time           int64           `json:"time"`
	DelayInSeconds *float64        `json:"delayInSeconds"`
}

type surfaceApp struct {
	t       *testing.T
	url     string
	rt      *docker.Runtime
	app     string
	builtin bool
}

// do sends a request to the Worker; it is safe in any goroutine.
func (s *surfaceApp) do(method, path, body string, header map[string]string) (int, string, error) {
	req, err := http.NewRequest(method, s.url+path, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// tryOp calls method with args on the object obj ("surface/NAME" or
// "sleepy/NAME"); it is safe in any goroutine.
func (s *surfaceApp) tryOp(obj, method string, args ...any) (surfaceOp, error) {
	if args == nil {
		args = []any{}
	}
	body, err := json.Marshal(map[string]any{"method": method, "args": args})
	if err != nil {
		return surfaceOp{}, err
	}
	code, text, err := s.do("POST", "/op/"+obj, string(body), nil)
	var r surfaceOp
	if err == nil && (code != 200 || json.Unmarshal([]byte(text), &r) != nil) {
		err = fmt.Errorf("%d %s", code, text)
	}
	if err != nil {
		return r, fmt.Errorf("%s.%s: %w", obj, method, err)
	}
	return r, nil
}

// op is tryOp in the test's goroutine.
func (s *surfaceApp) op(obj, method string, args ...any) surfaceOp {
	s.t.Helper()
	r, err := s.tryOp(obj, method, args...)
	if err != nil {
		s.t.Fatal(err)
	}
	return r
}

// mustOp is op for a call that must succeed.
func (s *surfaceApp) mustOp(obj, method string, args ...any) surfaceOp {
	s.t.Helper()
	r := s.op(obj, method, args...)
	if !r.OK {
		s.t.Fatalf("%s.%s(%v): %s", obj, method, args, r.Error)
	}
	return r
}

// read decodes the JSON of the app's GET /<route>/<obj> into v, which
// must answer 200.
func (s *surfaceApp) read(route, obj string, v any) {
	s.t.Helper()
	if code := call(s.t, "GET", s.url+"/"+route+"/"+obj, v); code != 200 {
		s.t.Fatalf("%s of %s: %d", route, obj, code)
	}
}

func (s *surfaceApp) events(obj string) surfaceEvents {
	s.t.Helper()
	var ev surfaceEvents
	s.read("events", obj, &ev)
	return ev
}

// running reads ctx.container.running in the object.
func (s *surfaceApp) running(obj string) bool {
	s.t.Helper()
	var running bool
	s.read("running", obj, &running)
	return running
}

// fetch sends a request to obj's fetch, which forwards it with
// containerFetch in form ("request", "url-init" or "url-port") to port, or
// with the class's own fetch when form is "".
func (s *surfaceApp) fetch(obj, method, path, body, form string, port int) (int, string) {
	s.t.Helper()
	var header map[string]string
	if form != "" {
		header = map[string]string{"x-form": form, "x-port": fmt.Sprint(port)}
	}
	code, text, err := s.do(method, "/c/"+obj+path, body, header)
	if err != nil {
		s.t.Fatalf("%s %s of %s: %v", method, path, obj, err)
	}
	return code, text
}

// echo is fetch of testapp's /echo, which must answer 200.
func (s *surfaceApp) echo(obj, method, query, body, form string, port int) testapp.EchoReply {
	s.t.Helper()
	code, text := s.fetch(obj, method, "/echo"+query, body, form, port)
	var e testapp.EchoReply
	if code != 200 || json.Unmarshal([]byte(text), &e) != nil {
		s.t.Fatalf("%s /echo%s of %s (containerFetch form %q, port %d): %d %s", method, query, obj, form, port, code, text)
	}
	return e
}

// output is what the containers of obj have printed so far.
func (s *surfaceApp) output(obj string) string {
	s.t.Helper()
	var id string
	s.read("id", obj, &id)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	list, err := s.rt.List(ctx, map[string]string{container.LabelTest: "1", container.LabelApp: s.app, container.LabelObject: id})
	if err != nil {
		s.t.Fatal(err)
	}
	var out strings.Builder
	for _, inst := range list {
		for line, err := range s.rt.Logs(ctx, inst.ID, container.LogOptions{}) {
			if err != nil {
				s.t.Fatalf("logs of %s: %v", inst.Name, err)
			}
			out.WriteString(line.Text + "\n")
		}
	}
	return out.String()
}

// removeSurfaceImages removes the images berth dev built for the app's
// classes (testDocker removes only those of Echo and Broken). Registered
// before testDocker, it runs after the containers are gone.
func removeSurfaceImages(t *testing.T, app string, classes ...string) {
	t.Cleanup(func() {
		rt, err := docker.New(docker.Options{})
		if err != nil {
			t.Errorf("remove test images: %v", err)
			return
		}
		defer rt.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		for _, cls := range classes {
			repo := "berth-dev/" + app + "-" + cls
			refs, err := exec.CommandContext(ctx, "docker", "images", "--format", "{{.Repository}}:{{.Tag}}", "--filter", "label=berth.test=1", repo).Output()
			if err != nil {
				t.Errorf("list images of %s: %v", repo, err)
			}
			for _, ref := range strings.Fields(string(refs)) {
				if err := rt.RemoveImage(ctx, ref); err != nil {
					t.Errorf("remove image %s: %v", ref, err)
				}
			}
		}
	})
}

func testContainerSurface(t *testing.T, dir, configPath, impl string) {
	testutil.RequireDocker(t)
	app, builtin := uniqueSurfaceApp(t, dir, configPath, impl), impl == "builtin"
	removeSurfaceImages(t, app, "surface", "sleepy")
	rt := testDocker(t, app)
	logs := &syncBuffer{}
	url, stop := runDev(t, Options{Dir: dir, ConfigPath: configPath,
		Logger:          slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		ContainerLabels: map[string]string{container.LabelTest: "1"}})
	defer func() {
		if t.Failed() {
			t.Logf("log:\n%s", logs)
		}
	}()
	s := &surfaceApp{t: t, url: url, rt: rt, app: app, builtin: builtin}

	// schedule: a delayed task and one at a Date, on an object without a
	// container. They run while the rest goes on ("schedule runs").
	delayed := s.mustOp("surface/sched", "schedule", 3, "tick", map[string]int{"n": 42})
	var dTask containerSchedule
	mustJSON(t, delayed.Value, &dTask)
	at := time.Now().Add(2500 * time.Millisecond).UnixMilli()
	var sTask containerSchedule
	mustJSON(t, s.mustOp("surface/sched", "schedule", map[string]int64{"$date": at}, "tick", "by-date").Value, &sTask)
	t.Run("schedule records", func(t *testing.T) {
		s := s.with(t)
		if dTask.TaskID == "" || dTask.Callback != "tick" || string(dTask.Payload) != `{"n":42}` || dTask.Type != "delayed" ||
			dTask.DelayInSeconds == nil || *dTask.DelayInSeconds != 3 || dTask.Time != (delayed.T0+3000)/1000 && dTask.Time != (delayed.T0+3000)/1000+1 {
			t.Errorf("schedule(3, tick, {n:42}) = %+v (called at %d ms)", dTask, delayed.T0)
		}
		if sTask.TaskID == "" || sTask.TaskID == dTask.TaskID || sTask.Callback != "tick" || sTask.Type != "scheduled" ||
			string(sTask.Payload) != `"by-date"` || sTask.Time != at/1000 || sTask.DelayInSeconds != nil {
			t.Errorf("schedule(Date %d, tick, by-date) = %+v", at, sTask)
		}
		var got containerSchedule
		mustJSON(t, s.mustOp("surface/sched", "getSchedule", dTask.TaskID).Value, &got)
		if got.TaskID != dTask.TaskID || got.Callback != "tick" || string(got.Payload) != `{"n":42}` || got.Type != "delayed" || got.Time != dTask.Time {
			t.Errorf("getSchedule(%s) = %+v, want %+v", dTask.TaskID, got, dTask)
		}
		if r := s.mustOp("surface/sched", "getSchedule", "no-such-task"); string(r.Value) != "null" {
			t.Errorf("getSchedule of an unknown id = %s, want undefined", r.Value)
		}
		if r := s.op("surface/sched", "schedule", 1, "noSuchMethod"); r.OK || !strings.Contains(r.Error, "this.noSuchMethod is not a function") {
			t.Errorf("schedule of a missing method: %+v", r)
		}

		// listSchedules and deleteSchedules, on tasks far in the future.
		s.mustOp("surface/list", "schedule", 600, "tick", 1)
		s.mustOp("surface/list", "schedule", 900, "tick", 2)
		var list []containerSchedule
		mustJSON(t, s.mustOp("surface/list", "listSchedules", "tick").Value, &list)
		// The package's query stops at one row (LIMIT 1); berth's class
		// lists every task of the callback (cfworkers.js, "schedules").
		want := 1
		if s.builtin {
			want = 2
		}
		if len(list) != want {
			t.Errorf("listSchedules(tick) with 2 tasks: %d records %+v, want %d", len(list), list, want)
		}
		for _, l := range list {
			if l.Callback != "tick" || l.Type != "delayed" || l.TaskID == "" {
				t.Errorf("listSchedules(tick): record %+v", l)
			}
		}
		mustJSON(t, s.mustOp("surface/list", "listSchedules", "other").Value, &list)
		if len(list) != 0 {
			t.Errorf("listSchedules(other) = %+v, want none", list)
		}
		s.mustOp("surface/list", "deleteSchedules", "tick")
		mustJSON(t, s.mustOp("surface/list", "listSchedules", "tick").Value, &list)
		if len(list) != 0 {
			t.Errorf("listSchedules(tick) after deleteSchedules(tick) = %+v, want none", list)
		}
	})

	// The containers of the scenarios start at once, each through the API
	// under test; the subtests then check what came of it.
	type outcome struct {
		op         surfaceOp
		code       int
		body       string
		err        error
		begin, end time.Time
	}
	var expire, keep, ports, cf, cold, life outcome
	s.mustOp("sleepy/keep", "keep", true) // its onActivityExpired does not stop it
	request := func(o *outcome, obj string, header map[string]string) func() {
		return func() {
			o.begin = time.Now()
			o.code, o.body, o.err = s.do("GET", "/c/"+obj+"/echo", "", header)
			o.end = time.Now()
		}
	}
	invoke := func(o *outcome, obj, method string, args ...any) func() {
		return func() {
			o.begin = time.Now()
			o.op, o.err = s.tryOp(obj, method, args...)
			o.end = time.Now()
		}
	}
	concurrently(
		// sleepAfter (4 s on Sleepy) begins with these requests.
		request(&expire, "sleepy/expire", nil),
		request(&keep, "sleepy/keep", nil),
		// Without arguments: requiredPorts [8080, 8081].
		invoke(&ports, "surface/ports", "startAndWaitForPorts"),
		// The positional form with options: only 8081 listens.
		invoke(&cf, "surface/cf", "startAndWaitForPorts", 8081, map[string]any{"waitInterval": 100},
			map[string]any{"envVars": map[string]string{"PORTS": "8081", "MARK": "opts"}}),
		// containerFetch(url, init, port) on a cold object.
		request(&cold, "surface/cold", map[string]string{"x-form": "url-init", "x-port": "8081"}),
		invoke(&life, "surface/life", "start", map[string]any{"envVars": map[string]string{"PORTS": "8080,8081", "TERM_EXIT_CODE": "7", "MARK": "start"}}),
	)
	for name, o := range map[string]outcome{"sleepy/expire": expire, "sleepy/keep": keep, "surface/cold": cold} {
		if o.err != nil || o.code != 200 {
			t.Fatalf("first request to %s (%v): %d %s %v", name, o.end.Sub(o.begin), o.code, o.body, o.err)
		}
	}
	for name, o := range map[string]outcome{"surface/ports": ports, "surface/cf": cf, "surface/life": life} {
		if o.err != nil || !o.op.OK || !o.op.Running {
			t.Fatalf("starting %s (%v): %+v %v", name, o.end.Sub(o.begin), o.op, o.err)
		}
	}

	t.Run("startAndWaitForPorts", func(t *testing.T) {
		s := s.with(t)
		var st struct{ Status string }
		mustJSON(t, s.mustOp("surface/ports", "getState").Value, &st)
		if st.Status != "healthy" {
			t.Errorf("getState().status after startAndWaitForPorts() = %q, want healthy", st.Status)
		}
		if ev := s.events("surface/ports"); ev.Starts != 1 || ev.Errors != 0 {
			t.Errorf("hooks after startAndWaitForPorts(): %+v, want one onStart", ev)
		}
		// The readiness probe is http://container/log?text=surface-ping:
		// testapp prints surface-ping once per probe, at least once per
		// required port.
		waitFor(t, 10*time.Second, "two pingEndpoint probes in the container's output", func() bool {
			return strings.Count(s.output("surface/ports"), "surface-ping\n") >= 2
		})
		if e := s.echo("surface/ports", "GET", "?p=8081", "", "url-port", 8081); e.Path != "/echo" {
			t.Errorf("containerFetch on 8081 after the wait: %+v", e)
		}

		// ports and cancellationOptions (object form): a port nobody
		// listens on fails the wait within portReadyTimeoutMS, with
		// onError; the container keeps running.
		r := s.op("surface/ports", "startAndWaitForPorts", map[string]any{
			"ports":               []int{8080, 8082},
			"cancellationOptions": map[string]any{"portReadyTimeoutMS": 1500, "waitInterval": 100},
		})
		if r.OK || !r.Running {
			t.Errorf("startAndWaitForPorts({ports: [8080, 8082]}) with nothing on 8082: %+v, want an error and the container running", r)
		}
		if r.Ms > 6000 {
			t.Errorf("startAndWaitForPorts({ports: [8080, 8082], portReadyTimeoutMS: 1500}) failed after %d ms, want about 1500", r.Ms)
		}
		if ev := s.events("surface/ports"); ev.Errors != 1 || len(ev.ErrorTexts) != 1 || !strings.Contains(ev.ErrorTexts[0], "8082") {
			t.Errorf("hooks after the failed wait for 8082: %+v, want one onError about port 8082", ev)
		}
		if !s.running("surface/ports") {
			t.Errorf("the container stopped after a failed wait for another port")
		}
	})

	t.Run("containerFetch", func(t *testing.T) {
		s := s.with(t)
		// containerFetch(request, port)
		e := s.echo("surface/cf", "POST", "?q=1", "hello", "request", 8081)
		if e.Method != "POST" || e.Path != "/echo" || e.Body != "hello" || fmt.Sprint(e.Query["q"]) != "[1]" || e.Env["MARK"] != "opts" {
			t.Errorf("containerFetch(request, 8081): %+v", e)
		}
		// containerFetch(url, init, port)
		e = s.echo("surface/cf", "PUT", "?q=2", "put-body", "url-init", 8081)
		if e.Method != "PUT" || e.Path != "/echo" || e.Body != "put-body" || fmt.Sprint(e.Query["q"]) != "[2]" || fmt.Sprint(e.Headers["X-Form"]) != "[url-init]" {
			t.Errorf("containerFetch(url, init, 8081): %+v", e)
		}
		// containerFetch(url, port)
		e = s.echo("surface/cf", "GET", "?q=3", "", "url-port", 8081)
		if e.Method != "GET" || fmt.Sprint(e.Query["q"]) != "[3]" {
			t.Errorf("containerFetch(url, 8081): %+v", e)
		}
		// The port is the one given: nothing listens on 8080 here.
		if code, body := s.fetch("surface/cf", "GET", "/echo", "", "request", 8080); code != 500 || !strings.Contains(body, "Error proxying request to container") {
			t.Errorf("containerFetch(request, 8080) with nothing on 8080: %d %s, want 500", code, body)
		}
		if !s.running("surface/cf") {
			t.Errorf("container not running after a request to a closed port")
		}
		// On the cold object containerFetch(url, init, 8081) started the
		// container (with the class's envVars) and waited for 8081.
		var e2 testapp.EchoReply
		if err := json.Unmarshal([]byte(cold.body), &e2); err != nil || e2.Method != "GET" || e2.Env["PORTS"] != "8080,8081" {
			t.Errorf("cold containerFetch(url, init, 8081): %s", cold.body)
		}
		if ev := s.events("surface/cold"); ev.Starts != 1 {
			t.Errorf("cold containerFetch: onStart ran %d times, want 1", ev.Starts)
		}
	})

	t.Run("start stop destroy", func(t *testing.T) {
		s := s.with(t)
		obj := "surface/life"
		if !s.running(obj) {
			t.Errorf("running after start() = false")
		}
		// start() runs onStart once the container has started (the
		// package: inside blockConcurrencyWhile, before start() returns).
		if ev := s.events(obj); ev.Starts != 1 {
			t.Errorf("onStart ran %d times by the end of start(), want 1", ev.Starts)
		}
		// The class's fetch reaches the started container (defaultPort).
		// start() leaves the state "running", not "healthy", so this
		// request waits for the ports first; the package then runs onStart
		// again, which is not checked here.
		if e := s.echo(obj, "GET", "", "", "", 0); e.Env["MARK"] != "start" {
			t.Errorf("request after start(options): env %v, want MARK=start", e.Env)
		}
		starts := s.events(obj).Starts

		// stop() sends SIGTERM: testapp exits with TERM_EXIT_CODE 7 and
		// onStop sees it.
		s.mustOp(obj, "stop")
		waitFor(t, 15*time.Second, "onStop after stop()", func() bool { return s.events(obj).Stops >= 1 })
		if s.running(obj) {
			t.Errorf("running after stop() and onStop = true")
		}
		if ev := s.events(obj); fmt.Sprint(ev.ExitCodes) != "[7]" || fmt.Sprint(ev.Reasons) != "[exit]" {
			t.Errorf("onStop after stop(): codes %v reasons %v, want [7] [exit]", ev.ExitCodes, ev.Reasons)
		}
		if out := s.output(obj); !strings.Contains(out, "testapp got SIGTERM") {
			t.Errorf("the container's output after stop() lacks SIGTERM:\n%s", out)
		}
		// The next request starts it again, with the class's envVars.
		if e := s.echo(obj, "GET", "", "", "", 0); e.Env["MARK"] != "" {
			t.Errorf("request after stop(): env %v, want the class's", e.Env)
		}
		if ev := s.events(obj); ev.Starts != starts+1 {
			t.Errorf("onStart ran %d times after a restart, want %d", ev.Starts, starts+1)
		}

		// destroy() kills it: onStop with code 0.
		s.mustOp(obj, "destroy")
		waitFor(t, 15*time.Second, "onStop after destroy()", func() bool { return s.events(obj).Stops >= 2 })
		if s.running(obj) {
			t.Errorf("running after destroy() and onStop = true")
		}
		if ev := s.events(obj); fmt.Sprint(ev.ExitCodes) != "[7 0]" {
			t.Errorf("onStop exit codes after stop() and destroy() = %v, want [7 0]", ev.ExitCodes)
		}
	})

	t.Run("schedule runs", func(t *testing.T) {
		s := s.with(t)
		var ev surfaceEvents
		waitFor(t, 10*time.Second, "both scheduled tasks to run", func() bool {
			ev = s.events("surface/sched")
			return len(ev.Ticks) >= 2
		})
		if len(ev.Ticks) != 2 {
			t.Fatalf("ticks: %+v, want 2", ev.Ticks)
		}
		for _, tick := range ev.Ticks {
			task, earliest := dTask, delayed.T0+3000
			if tick.TaskID == sTask.TaskID {
				task, earliest = sTask, at
			}
			if tick.TaskID != task.TaskID || tick.Type != task.Type || string(tick.Payload) != string(task.Payload) {
				t.Errorf("tick(%s, %+v) for task %+v", tick.Payload, tick, task)
			}
			// The package runs a task on the first alarm at or after its
			// time in whole seconds; berth's runs it at its time
			// (cfworkers.js, "schedules").
			if !s.builtin {
				earliest = task.Time * 1000
			}
			if tick.At < earliest || tick.At > earliest+4000 {
				t.Errorf("task %s (%s) ran at %d ms, want from %d ms to 4 s later (Unix ms)", task.TaskID, task.Type, tick.At, earliest)
			}
		}
		if r := s.mustOp("surface/sched", "getSchedule", dTask.TaskID); string(r.Value) != "null" {
			t.Errorf("getSchedule of a task that ran = %s, want undefined", r.Value)
		}
		var list []containerSchedule
		mustJSON(t, s.mustOp("surface/sched", "listSchedules", "tick").Value, &list)
		if len(list) != 0 {
			t.Errorf("listSchedules after the tasks ran: %+v", list)
		}
	})

	t.Run("onActivityExpired", func(t *testing.T) {
		s := s.with(t)
		// The hook records the expiry and stops the container (SIGTERM,
		// exit 7): onStop follows.
		waitFor(t, 15*time.Second, "onActivityExpired and onStop of sleepy/expire", func() bool {
			ev := s.events("sleepy/expire")
			return ev.Expired >= 1 && ev.Stops >= 1
		})
		ev := s.events("sleepy/expire")
		if idle := ev.ExpiredAt[0] - expire.end.UnixMilli(); idle < 3500 {
			t.Errorf("onActivityExpired ran %d ms after the last request, want sleepAfter (4 s)", idle)
		}
		if s.running("sleepy/expire") || fmt.Sprint(ev.ExitCodes) != "[7]" {
			t.Errorf("after onActivityExpired stopped it: running %v, onStop codes %v, want not running, [7]", s.running("sleepy/expire"), ev.ExitCodes)
		}

		// A hook that does not stop the container renews the timeout: it
		// runs again a sleepAfter later, and the container keeps running.
		waitFor(t, 20*time.Second, "onActivityExpired twice on sleepy/keep", func() bool { return s.events("sleepy/keep").Expired >= 2 })
		ev = s.events("sleepy/keep")
		if !s.running("sleepy/keep") || ev.Stops != 0 {
			t.Errorf("onActivityExpired without stop(): running %v, %d onStop, want running and none", s.running("sleepy/keep"), ev.Stops)
		}
		if first := ev.ExpiredAt[0] - keep.end.UnixMilli(); first < 3500 {
			t.Errorf("first onActivityExpired %d ms after the last request, want sleepAfter (4 s)", first)
		}
		if gap := ev.ExpiredAt[1] - ev.ExpiredAt[0]; gap < 3500 {
			t.Errorf("onActivityExpired ran again after %d ms, want sleepAfter (4 s)", gap)
		}
		// stop(signal): SIGINT reaches the process.
		s.mustOp("sleepy/keep", "stop", "SIGINT")
		waitFor(t, 15*time.Second, "onStop after stop(SIGINT)", func() bool { return s.events("sleepy/keep").Stops >= 1 })
		if out := s.output("sleepy/keep"); !strings.Contains(out, "testapp got SIGINT") {
			t.Errorf("the container's output after stop(SIGINT) lacks SIGINT:\n%s", out)
		}
	})

	// berth dev's exit removes its containers.
	stop()
	if n := len(runningContainers(t, rt, app)); n != 0 {
		t.Errorf("%d containers still run after berth dev ended", n)
	}
}

// with is s for the subtest t.
func (s *surfaceApp) with(t *testing.T) *surfaceApp {
	c := *s
	c.t = t
	return &c
}

// concurrently runs fns at once and returns when all have.
func concurrently(fns ...func()) {
	var wg sync.WaitGroup
	for _, fn := range fns {
		wg.Go(fn)
	}
	wg.Wait()
}

func mustJSON(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%v in %s", err, b)
	}
}
