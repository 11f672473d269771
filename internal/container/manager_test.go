package container_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/clock/clocktest"
	"github.com/berth-dev/berth/internal/container"
	"github.com/berth-dev/berth/internal/container/fake"
	"github.com/berth-dev/berth/internal/container/testapp"
)

const (
	testApp   = "shop"
	testClass = "Cart"
)

// fakeEnv is a fake runtime with the Manager test image and a fake clock.
type fakeEnv struct {
	t     *testing.T
	clock *clocktest.Manual
	rt    *fake.Runtime
	image string
	logs  *syncBuffer
	// graceAsked receives the grace of each runtime Stop that waits for one;
	// sending on grace ends that wait (the kill follows).
	graceAsked chan time.Duration
	grace      chan time.Time
}

func newFakeEnv(t *testing.T) *fakeEnv {
	t.Helper()
	e := &fakeEnv{
		t:          t,
		clock:      newFakeClock(),
		logs:       &syncBuffer{},
		graceAsked: make(chan time.Duration, 16),
		grace:      make(chan time.Time),
	}
	e.rt = fake.New(fake.Options{
		Programs: map[string]fake.Program{"/testapp": testapp.Main},
		Now:      e.clock.Now,
		After: func(d time.Duration) <-chan time.Time {
			e.graceAsked <- d
			return e.grace
		},
	})
	dir := imageContext(t, []byte("placeholder: the fake runs testapp.Main\n"), managerImageDockerfile)
	e.image = "berth-test/manager:fake"
	if _, err := e.rt.Build(testCtx(t), container.BuildSpec{ContextDir: dir, Tag: e.image}); err != nil {
		t.Fatalf("build: %v", err)
	}
	return e
}

func (e *fakeEnv) class(mod func(*container.ClassConfig)) map[string]container.ClassConfig {
	cc := container.ClassConfig{Image: e.image, DefaultPort: 8080, Env: map[string]string{"CLASS_VAR": "from-class"}}
	if mod != nil {
		mod(&cc)
	}
	return map[string]container.ClassConfig{testClass: cc}
}

// manager returns a Manager on e's runtime, shut down when the test ends.
func (e *fakeEnv) manager(classes map[string]container.ClassConfig, mods ...func(*container.ManagerConfig)) *container.Manager {
	e.t.Helper()
	cfg := container.ManagerConfig{
		App: testApp, Runtime: e.rt, Logger: testLogger(e.t, e.logs), Clock: e.clock,
		Classes: classes, StopGrace: 3 * time.Second,
		Labels: map[string]string{container.LabelTest: "1"},
	}
	for _, mod := range mods {
		mod(&cfg)
	}
	m, err := container.NewManager(cfg)
	if err != nil {
		e.t.Fatalf("NewManager: %v", err)
	}
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := m.Shutdown(ctx); err != nil {
			e.t.Errorf("Shutdown: %v", err)
		}
	})
	return m
}

func (e *fakeEnv) containers() []container.Instance {
	e.t.Helper()
	list, err := e.rt.List(testCtx(e.t), nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return list
}

func owner(name string) container.Owner {
	return container.Owner{Class: testClass, Object: objectID(name)}
}

// startServing starts owner's container and waits until it answers.
func startServing(t *testing.T, m *container.Manager, o container.Owner, opts container.StartOptions) container.Instance {
	t.Helper()
	inst, err := m.Start(testCtx(t), o, opts)
	if err != nil {
		t.Fatalf("Start %s: %v", o, err)
	}
	waitListening(t, m, o, 8080)
	return inst
}

// TestManagerDialBootWait: within BootWait of its start a refused port is
// dialled again every BootPoll, so that a caller reaches the app as soon as
// it listens; past BootWait, or for a context that ends, the refusal is
// reported as before.
func TestManagerDialBootWait(t *testing.T) {
	e := newFakeEnv(t)
	const wait = 100 * time.Millisecond
	m := e.manager(e.class(nil), func(c *container.ManagerConfig) { c.BootWait = wait })
	o := owner("boot")
	if _, err := m.Start(testCtx(t), o, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	armed := e.clock.Pending()

	dialed := make(chan error, 1)
	go func() {
		conn, err := m.Dial(testCtx(t), o, 9999)
		if conn != nil {
			conn.Close()
		}
		dialed <- err
	}()
	var elapsed time.Duration
	for elapsed < wait {
		waitArmed(t, e.clock, armed+1)
		select {
		case err := <-dialed:
			t.Fatalf("Dial returned after %s, within the boot wait: %v", elapsed, err)
		default:
		}
		e.clock.Advance(container.BootPoll)
		elapsed += container.BootPoll
	}
	select {
	case err := <-dialed:
		wantErrText(t, "Dial of a closed port past the boot wait", err, container.ErrPortNotListening, "the container is not listening")
	case <-time.After(10 * time.Second):
		t.Fatal("Dial did not give up once the boot wait had passed")
	}

	// Past the boot wait a refusal is immediate; a listening port answers.
	_, err := m.Dial(testCtx(t), o, 9999)
	wantErrText(t, "Dial of a closed port after boot", err, container.ErrPortNotListening, "the container is not listening")
	waitListening(t, m, o, 8080)

	// A context that ends stops the wait.
	o2 := owner("boot-cancel")
	if _, err := m.Start(testCtx(t), o2, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(testCtx(t))
	go func() {
		_, err := m.Dial(ctx, o2, 9999)
		dialed <- err
	}()
	waitArmed(t, e.clock, armed+1)
	cancel()
	select {
	case err := <-dialed:
		wantErrText(t, "Dial whose context ended", err, container.ErrPortNotListening, "the container is not listening")
	case <-time.After(10 * time.Second):
		t.Fatal("Dial did not return when its context ended")
	}
}

func TestManagerMonitorReportsExits(t *testing.T) {
	e := newFakeEnv(t)
	m := e.manager(e.class(nil))
	cases := []struct {
		name string
		env  map[string]string
		// act ends the container.
		act  func(o container.Owner)
		want string // "" for a clean end
	}{
		{"exit 0", nil, func(o container.Owner) { get(t, m, o, "/exit?code=0") }, ""},
		{"exit 3", nil, func(o container.Owner) { get(t, m, o, "/exit?code=3") }, "container exited with unexpected exit code: 3"},
		{"exit 143 unsignalled", nil, func(o container.Owner) { get(t, m, o, "/exit?code=143") }, "container exited with unexpected exit code: 143"},
		{"SIGKILL", nil, func(o container.Owner) {
			if err := m.Signal(testCtx(t), o, int(syscall.SIGKILL)); err != nil {
				t.Fatalf("Signal: %v", err)
			}
		}, "runtime signalled the container to exit: 137"},
		{"SIGTERM exits 143", map[string]string{"TERM_EXIT_CODE": "143"}, func(o container.Owner) {
			if err := m.Signal(testCtx(t), o, int(syscall.SIGTERM)); err != nil {
				t.Fatalf("Signal: %v", err)
			}
		}, "runtime signalled the container to exit: 143"},
		{"SIGTERM exits 0", nil, func(o container.Owner) {
			if err := m.Signal(testCtx(t), o, int(syscall.SIGTERM)); err != nil {
				t.Fatalf("Signal: %v", err)
			}
		}, ""},
		{"SIGTERM exits 1", map[string]string{"TERM_EXIT_CODE": "1"}, func(o container.Owner) {
			if err := m.Signal(testCtx(t), o, int(syscall.SIGTERM)); err != nil {
				t.Fatalf("Signal: %v", err)
			}
		}, "container exited with unexpected exit code: 1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := owner(tc.name)
			startServing(t, m, o, container.StartOptions{Env: tc.env})
			if !m.Running(o) {
				t.Fatal("Running is false right after Start")
			}
			tc.act(o)
			err := monitor(t, m, o)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Monitor = %v, want nil", err)
				}
			} else {
				if err == nil || err.Error() != tc.want {
					t.Fatalf("Monitor = %v, want exactly %q", err, tc.want)
				}
				var exit *container.ExitError
				if !errors.As(err, &exit) {
					t.Fatalf("Monitor error %T is not an *ExitError", err)
				}
			}
			if m.Running(o) {
				t.Fatal("Running is true after the container ended")
			}
			if running, err := m.Status(testCtx(t), o); err != nil || running {
				t.Fatalf("Status = %v, %v; want false", running, err)
			}
			// Monitor keeps reporting the latest run.
			if err2 := monitor(t, m, o); fmt.Sprint(err2) != fmt.Sprint(err) {
				t.Fatalf("second Monitor = %v, first %v", err2, err)
			}
		})
	}
}

func TestManagerMonitorWithoutContainer(t *testing.T) {
	e := newFakeEnv(t)
	m := e.manager(e.class(nil))
	err := m.Monitor(testCtx(t), owner("never"))
	wantErrText(t, "Monitor before any Start", err, container.ErrNotRunning, "container is not running")
}

func TestManagerDestroy(t *testing.T) {
	e := newFakeEnv(t)
	m := e.manager(e.class(nil))

	t.Run("reason becomes the monitor error", func(t *testing.T) {
		o := owner("destroy-reason")
		startServing(t, m, o, container.StartOptions{})
		monitorErr := make(chan error, 1)
		go func() { monitorErr <- monitor(t, m, o) }()
		reason := errors.New("the object was deleted")
		if err := m.Destroy(testCtx(t), o, reason); err != nil {
			t.Fatalf("Destroy: %v", err)
		}
		if m.Running(o) {
			t.Fatal("Running after Destroy returned")
		}
		if err := <-monitorErr; !errors.Is(err, reason) {
			t.Fatalf("Monitor = %v, want the reason %v", err, reason)
		}
		if list := e.containers(); len(list) != 0 {
			t.Fatalf("containers after Destroy: %v", list)
		}
	})
	t.Run("no reason resolves monitor", func(t *testing.T) {
		o := owner("destroy-clean")
		startServing(t, m, o, container.StartOptions{})
		if err := m.Destroy(testCtx(t), o, nil); err != nil {
			t.Fatalf("Destroy: %v", err)
		}
		if err := monitor(t, m, o); err != nil {
			t.Fatalf("Monitor = %v, want nil", err)
		}
	})
	t.Run("removes a stopped container", func(t *testing.T) {
		o := owner("destroy-stopped")
		startServing(t, m, o, container.StartOptions{})
		get(t, m, o, "/exit?code=2")
		monitor(t, m, o)
		if n := len(e.containers()); n != 1 {
			t.Fatalf("%d containers after the exit, want the stopped one kept", n)
		}
		if err := m.Destroy(testCtx(t), o, nil); err != nil {
			t.Fatalf("Destroy: %v", err)
		}
		if list := e.containers(); len(list) != 0 {
			t.Fatalf("containers after Destroy: %v", list)
		}
	})
	t.Run("without a container is a no-op", func(t *testing.T) {
		if err := m.Destroy(testCtx(t), owner("destroy-none"), nil); err != nil {
			t.Fatalf("Destroy: %v", err)
		}
	})
}

func TestManagerStartTwice(t *testing.T) {
	e := newFakeEnv(t)
	m := e.manager(e.class(nil))
	o := owner("twice")
	if _, err := m.Start(testCtx(t), o, container.StartOptions{}); err != nil {
		t.Fatalf("Start: %v", err)
	}
	_, err := m.Start(testCtx(t), o, container.StartOptions{})
	wantErrText(t, "second Start", err, container.ErrAlreadyRunning, "already running")
}

func TestManagerConcurrentStartsOfOneOwnerStartOne(t *testing.T) {
	e := newFakeEnv(t)
	m := e.manager(e.class(nil))
	o := owner("concurrent")
	const n = 16
	var ok, already atomic.Int32
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			_, err := m.Start(testCtx(t), o, container.StartOptions{})
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, container.ErrAlreadyRunning):
				already.Add(1)
			default:
				t.Errorf("Start: %v", err)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 1 || already.Load() != n-1 {
		t.Fatalf("%d starts succeeded and %d were already running; want 1 and %d", ok.Load(), already.Load(), n-1)
	}
	if list := e.containers(); len(list) != 1 {
		t.Fatalf("%d containers, want 1", len(list))
	}
	// The failures did not replace the run Monitor reports.
	if !m.Running(o) {
		t.Fatal("not running after the concurrent starts")
	}
}

func TestManagerStartOptions(t *testing.T) {
	e := newFakeEnv(t)
	m := e.manager(e.class(nil))

	t.Run("entrypoint replaces CMD, not ENTRYPOINT", func(t *testing.T) {
		o := owner("entrypoint")
		// The image's ENTRYPOINT is /testapp; were it replaced, "exit" would
		// be an executable the image lacks.
		if _, err := m.Start(testCtx(t), o, container.StartOptions{Entrypoint: []string{"exit", "7"}}); err != nil {
			t.Fatalf("Start: %v", err)
		}
		if err := monitor(t, m, o); err == nil || err.Error() != "container exited with unexpected exit code: 7" {
			t.Fatalf("Monitor = %v, want exit code 7", err)
		}
	})

	t.Run("env, internet, labels and name", func(t *testing.T) {
		o := owner("options")
		inst := startServing(t, m, o, container.StartOptions{
			Env:            map[string]string{"START_VAR": "from-start", "GREETING": "from-start"},
			EnableInternet: true,
			Labels:         map[string]string{"team": "carts"},
		})
		env := echo(t, m, o).Env
		want := map[string]string{
			"GREETING":                     "from-start",
			"CLASS_VAR":                    "from-class",
			"START_VAR":                    "from-start",
			"CLOUDFLARE_DURABLE_OBJECT_ID": o.Object,
		}
		for k, v := range want {
			if env[k] != v {
				t.Errorf("env %s = %q, want %q", k, env[k], v)
			}
		}
		var n testapp.Network
		if err := json.Unmarshal([]byte(get(t, m, o, "/net")), &n); err != nil {
			t.Fatal(err)
		}
		if !n.DefaultRoute {
			t.Error("EnableInternet: no default route")
		}
		wantLabels := map[string]string{
			container.LabelManaged: "1", container.LabelApp: testApp, container.LabelClass: testClass,
			container.LabelObject: o.Object, container.LabelTest: "1", "team": "carts",
		}
		got, err := m.Inspect(testCtx(t), o)
		if err != nil {
			t.Fatalf("Inspect: %v", err)
		}
		if !maps.Equal(got.Labels, wantLabels) {
			t.Errorf("labels %v, want %v", got.Labels, wantLabels)
		}
		wantName := "berth-shop-Cart-" + o.Object[:12]
		if inst.Name != wantName || got.Name != wantName || container.ContainerName(testApp, o) != wantName {
			t.Errorf("name %q (Inspect %q), want %q", inst.Name, got.Name, wantName)
		}
	})

	t.Run("internet is off by default", func(t *testing.T) {
		o := owner("no-internet")
		startServing(t, m, o, container.StartOptions{})
		var n testapp.Network
		if err := json.Unmarshal([]byte(get(t, m, o, "/net")), &n); err != nil {
			t.Fatal(err)
		}
		if n.DefaultRoute {
			t.Error("a default route without EnableInternet")
		}
	})
}

func TestManagerRejectsBadInput(t *testing.T) {
	e := newFakeEnv(t)
	m := e.manager(e.class(nil))
	ctx := testCtx(t)
	o := owner("bad-input")
	cases := []struct {
		what string
		err  error
		want string
	}{
		{"unknown class", func() error {
			_, err := m.Start(ctx, container.Owner{Class: "Nope", Object: o.Object}, container.StartOptions{})
			return err
		}(), `class "Nope" has no container configured (configured: Cart)`},
		{"empty object", func() error {
			_, err := m.Start(ctx, container.Owner{Class: testClass}, container.StartOptions{})
			return err
		}(), "empty object id"},
		{"reserved label", func() error {
			_, err := m.Start(ctx, o, container.StartOptions{Labels: map[string]string{"berth.app": "x"}})
			return err
		}(), `label "berth.app"`},
		{"env name with =", func() error {
			_, err := m.Start(ctx, o, container.StartOptions{Env: map[string]string{"A=B": "x"}})
			return err
		}(), `environment variable "A=B"`},
		{"signal 0", m.Signal(ctx, o, 0), "signal 0 is not in 1-64"},
		{"signal 65", m.Signal(ctx, o, 65), "signal 65 is not in 1-64"},
		{"negative timeout", m.SetInactivityTimeout(o, -time.Second), "-1s is negative"},
		{"port 70000", func() error { _, err := m.Dial(ctx, o, 70000); return err }(), "port 70000 is not in 1-65535"},
	}
	for _, tc := range cases {
		wantErrText(t, tc.what, tc.err, container.ErrInvalid, tc.want)
	}
	if list := e.containers(); len(list) != 0 {
		t.Fatalf("bad input left containers: %v", list)
	}
}

func TestNewManagerRejectsBadConfig(t *testing.T) {
	rt := fake.New(fake.Options{})
	var noPause struct{ container.Runtime }
	noPause.Runtime = rt
	cases := []struct {
		what string
		cfg  container.ManagerConfig
		want string
	}{
		{"no app", container.ManagerConfig{Runtime: rt}, "no app name"},
		{"no runtime", container.ManagerConfig{App: "a"}, "no runtime"},
		{"no image", container.ManagerConfig{App: "a", Runtime: rt, Classes: map[string]container.ClassConfig{"C": {}}}, `class "C": invalid argument: no image`},
		{"bad sleep mode", container.ManagerConfig{App: "a", Runtime: rt, Classes: map[string]container.ClassConfig{"C": {Image: "i", Sleep: "hibernate"}}}, `sleep mode "hibernate"`},
		{"pause without a pauser", container.ManagerConfig{App: "a", Runtime: noPause, Classes: map[string]container.ClassConfig{"C": {Image: "i", Sleep: container.SleepPause}}}, "needs a runtime that can pause"},
		{"bad port", container.ManagerConfig{App: "a", Runtime: rt, Classes: map[string]container.ClassConfig{"C": {Image: "i", DefaultPort: 65536}}}, "default port 65536"},
		{"negative rate", container.ManagerConfig{App: "a", Runtime: rt, Classes: map[string]container.ClassConfig{"C": {Image: "i", StartsPerSecond: -1}}}, "starts per second -1"},
	}
	for _, tc := range cases {
		_, err := container.NewManager(tc.cfg)
		wantErrText(t, tc.what, err, container.ErrInvalid, tc.want)
	}
}

func TestManagerDial(t *testing.T) {
	e := newFakeEnv(t)
	m := e.manager(e.class(nil))
	o := owner("dial")

	_, err := m.Dial(testCtx(t), o, 8080)
	wantErrText(t, "Dial before Start", err, container.ErrNotRunning, "container is not running")

	startServing(t, m, o, container.StartOptions{})
	_, err = m.Dial(testCtx(t), o, 9999)
	wantErrText(t, "Dial of a closed port", err, container.ErrPortNotListening, "the container is not listening")

	conn, err := m.Dial(testCtx(t), o, 0) // the class's default port
	if err != nil {
		t.Fatalf("Dial of the default port: %v", err)
	}
	conn.Close()
	conn.Close() // a second Close must not release the hold twice

	noDefault := newFakeEnv(t).manager(map[string]container.ClassConfig{testClass: {Image: "x"}})
	_, err = noDefault.Dial(testCtx(t), o, 0)
	wantErrText(t, "Dial port 0 without a default", err, container.ErrInvalid, "has no default port")
}

func TestManagerExecAndInspect(t *testing.T) {
	e := newFakeEnv(t)
	m := e.manager(e.class(nil))
	o := owner("exec")
	if _, err := m.Inspect(testCtx(t), o); !errors.Is(err, container.ErrNotFound) {
		t.Fatalf("Inspect before Start = %v, want ErrNotFound", err)
	}
	_, err := m.Exec(testCtx(t), o, container.ExecSpec{Cmd: []string{"/testapp", "echo", "hi"}})
	wantErrText(t, "Exec before Start", err, container.ErrNotRunning, "not running")

	inst := startServing(t, m, o, container.StartOptions{})
	var out syncBuffer
	p, err := m.Exec(testCtx(t), o, container.ExecSpec{Cmd: []string{"/testapp", "echo", "hi", "there"}, Stdout: &out})
	if err != nil {
		t.Fatalf("Exec: %v", err)
	}
	if code, err := p.Wait(testCtx(t)); err != nil || code != 0 {
		t.Fatalf("Wait = %d, %v", code, err)
	}
	if out.String() != "hi there\n" {
		t.Fatalf("exec output %q", out.String())
	}
	got, err := m.Inspect(testCtx(t), o)
	if err != nil || got.ID != inst.ID || !got.Running {
		t.Fatalf("Inspect = %+v, %v; want running %s", got, err, inst.ID)
	}
}

func TestManagerMaxInstances(t *testing.T) {
	e := newFakeEnv(t)
	const max, n = 3, 24
	m := e.manager(e.class(func(cc *container.ClassConfig) { cc.MaxInstances = max }))

	var served, refused atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			_, err := m.Start(testCtx(t), owner(fmt.Sprint("max-", i)), container.StartOptions{})
			switch {
			case err == nil:
				served.Add(1)
			case errors.Is(err, container.ErrNoInstance):
				if !strings.Contains(err.Error(), "there is no container instance that can be provided to this durable object") {
					t.Errorf("refusal text %q", err)
				}
				refused.Add(1)
			default:
				t.Errorf("Start: %v", err)
			}
		})
	}
	close(start)
	wg.Wait()
	if served.Load() != max || refused.Load() != n-max {
		t.Fatalf("served %d, refused %d; want %d and %d", served.Load(), refused.Load(), max, n-max)
	}
	if got := len(e.containers()); got != max {
		t.Fatalf("%d containers run, want %d", got, max)
	}
	if got := strings.Count(e.logs.String(), "max_instances reached"); got != n-max {
		t.Fatalf("%d refusals logged, want %d", got, n-max)
	}

	// A refused owner's Monitor reports the refusal.
	var refusedOwner container.Owner
	for i := range n {
		if o := owner(fmt.Sprint("max-", i)); !m.Running(o) {
			refusedOwner = o
			break
		}
	}
	wantErrText(t, "Monitor of a refused owner", monitor(t, m, refusedOwner), container.ErrNoInstance, "there is no container instance")

	// An ended container frees its instance.
	var runningOwner container.Owner
	for i := range n {
		if o := owner(fmt.Sprint("max-", i)); m.Running(o) {
			runningOwner = o
			break
		}
	}
	if err := m.Signal(testCtx(t), runningOwner, int(syscall.SIGKILL)); err != nil {
		t.Fatal(err)
	}
	monitor(t, m, runningOwner)
	if _, err := m.Start(testCtx(t), refusedOwner, container.StartOptions{}); err != nil {
		t.Fatalf("Start after an instance was freed: %v", err)
	}
}

func TestManagerNoCap(t *testing.T) {
	e := newFakeEnv(t)
	m := e.manager(e.class(func(cc *container.ClassConfig) { cc.MaxInstances = -1 }))
	for i := range container.DefaultMaxInstances + 2 {
		if _, err := m.Start(testCtx(t), owner(fmt.Sprint("nocap-", i)), container.StartOptions{}); err != nil {
			t.Fatalf("Start %d: %v", i, err)
		}
	}
}

func TestManagerNoInstances(t *testing.T) {
	e := newFakeEnv(t)
	m := e.manager(e.class(func(cc *container.ClassConfig) { cc.NoInstances = true }))
	_, err := m.Start(testCtx(t), owner("none"), container.StartOptions{})
	wantErrText(t, "Start with max_instances 0", err, container.ErrNoInstance, "there is no container instance that can be provided to this durable object")
	if got := len(e.containers()); got != 0 {
		t.Fatalf("%d containers run, want 0", got)
	}
}

func TestManagerDefaultMaxInstances(t *testing.T) {
	e := newFakeEnv(t)
	m := e.manager(e.class(nil))
	for i := range container.DefaultMaxInstances {
		if _, err := m.Start(testCtx(t), owner(fmt.Sprint("default-", i)), container.StartOptions{}); err != nil {
			t.Fatalf("Start %d: %v", i, err)
		}
	}
	_, err := m.Start(testCtx(t), owner("default-over"), container.StartOptions{})
	wantErrText(t, "start number 21", err, container.ErrNoInstance, "max_instances (20)")
}

func TestManagerStartRate(t *testing.T) {
	e := newFakeEnv(t)
	m := e.manager(e.class(func(cc *container.ClassConfig) { cc.StartsPerSecond = 2 }))
	for i := range 2 {
		if _, err := m.Start(testCtx(t), owner(fmt.Sprint("rate-", i)), container.StartOptions{}); err != nil {
			t.Fatalf("Start %d: %v", i, err)
		}
	}
	_, err := m.Start(testCtx(t), owner("rate-2"), container.StartOptions{})
	wantErrText(t, "third start in a second", err, container.ErrTooManyStarts, "you are requesting too many containers per second")
	if !strings.Contains(e.logs.String(), "start rate exceeded") {
		t.Error("the refusal was not logged")
	}
	e.clock.Advance(time.Second)
	if _, err := m.Start(testCtx(t), owner("rate-2"), container.StartOptions{}); err != nil {
		t.Fatalf("Start a second later: %v", err)
	}
}

func TestManagerFailedStart(t *testing.T) {
	e := newFakeEnv(t)
	m := e.manager(map[string]container.ClassConfig{
		"Broken": {Image: "berth-test/does-not-exist:1", MaxInstances: 1},
	})
	broken := container.Owner{Class: "Broken", Object: objectID("broken")}
	_, err := m.Start(testCtx(t), broken, container.StartOptions{})
	wantErrText(t, "Start of a missing image", err, container.ErrImageNotFound, "does-not-exist")
	if m.Running(broken) {
		t.Fatal("Running after a failed start")
	}
	if err2 := monitor(t, m, broken); !errors.Is(err2, container.ErrImageNotFound) {
		t.Fatalf("Monitor after a failed start = %v, want the start's error", err2)
	}
	// The failed start gave its instance back: with max_instances 1 the
	// next start fails the same way, not for want of an instance.
	_, err = m.Start(testCtx(t), container.Owner{Class: "Broken", Object: objectID("broken 2")}, container.StartOptions{})
	wantErrText(t, "second Start of a missing image", err, container.ErrImageNotFound, "does-not-exist")
}

func TestManagerInactivityStop(t *testing.T) {
	e := newFakeEnv(t)
	m := e.manager(e.class(nil))
	o := owner("sleepy")
	first := startServing(t, m, o, container.StartOptions{})
	if err := m.SetInactivityTimeout(o, time.Minute); err != nil {
		t.Fatal(err)
	}

	e.clock.Advance(59 * time.Second)
	e.clock.Settle()
	if !m.Running(o) {
		t.Fatal("stopped before the timeout")
	}
	m.Activity(o) // pushes the deadline to 1:59
	e.clock.Advance(59 * time.Second)
	e.clock.Settle()
	if !m.Running(o) {
		t.Fatal("stopped although there was activity")
	}
	e.clock.Advance(2 * time.Second)
	if err := monitor(t, m, o); err != nil {
		t.Fatalf("Monitor after an inactivity stop = %v, want a clean stop", err)
	}
	if !strings.Contains(e.logs.String(), "stopping an idle container") {
		t.Error("the stop was not logged")
	}
	inst, err := e.rt.Inspect(testCtx(t), first.ID)
	if err != nil || inst.Running {
		t.Fatalf("the container after the stop: %+v, %v; want it stopped and kept", inst, err)
	}

	// Starting again replaces the stopped container; the timeout stays.
	second := startServing(t, m, o, container.StartOptions{})
	if second.ID == first.ID {
		t.Fatal("the same container id after a restart")
	}
	if list := e.containers(); len(list) != 1 || list[0].ID != second.ID {
		t.Fatalf("containers after the second start: %v", list)
	}
	e.clock.Advance(time.Minute)
	if err := monitor(t, m, o); err != nil {
		t.Fatalf("second inactivity stop: %v", err)
	}
}

func TestManagerClassInactivityTimeout(t *testing.T) {
	e := newFakeEnv(t)
	m := e.manager(e.class(func(cc *container.ClassConfig) { cc.InactivityTimeout = 5 * time.Minute }))
	o := owner("class-timeout")
	startServing(t, m, o, container.StartOptions{})
	e.clock.Advance(5 * time.Minute)
	if err := monitor(t, m, o); err != nil {
		t.Fatalf("Monitor = %v", err)
	}

	// Without any timeout a container runs on.
	plain := newFakeEnv(t)
	pm := plain.manager(plain.class(nil))
	startServing(t, pm, o, container.StartOptions{})
	plain.clock.Advance(24 * time.Hour)
	plain.clock.Settle()
	if !pm.Running(o) {
		t.Fatal("a container without an inactivity timeout was stopped")
	}
	if n := plain.clock.Pending(); n != 0 {
		t.Fatalf("%d timers armed without a timeout", n)
	}
}

func TestManagerHoldKeepsAwake(t *testing.T) {
	e := newFakeEnv(t)
	m := e.manager(e.class(func(cc *container.ClassConfig) { cc.InactivityTimeout = time.Minute }))

	t.Run("hold", func(t *testing.T) {
		o := owner("held")
		startServing(t, m, o, container.StartOptions{})
		release := m.Hold(o)
		get(t, m, o, "/echo") // a connection that ends under the hold
		e.clock.Advance(time.Hour)
		e.clock.Settle()
		if !m.Running(o) {
			t.Fatal("stopped while held")
		}
		release()
		release() // only the first call counts
		e.clock.Advance(59 * time.Second)
		e.clock.Settle()
		if !m.Running(o) {
			t.Fatal("stopped before the timeout counted from the release")
		}
		e.clock.Advance(time.Second)
		if err := monitor(t, m, o); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("open connection", func(t *testing.T) {
		o := owner("streaming")
		startServing(t, m, o, container.StartOptions{})
		conn, err := m.Dial(testCtx(t), o, 8080)
		if err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(time.Hour)
		e.clock.Settle()
		if !m.Running(o) {
			t.Fatal("stopped with a connection open")
		}
		conn.Close()
		e.clock.Advance(time.Minute)
		if err := monitor(t, m, o); err != nil {
			t.Fatal(err)
		}
	})
}

func TestManagerDialIdleAndUse(t *testing.T) {
	e := newFakeEnv(t)
	m := e.manager(e.class(func(cc *container.ClassConfig) { cc.InactivityTimeout = time.Minute }))
	o := owner("pooled")
	if _, err := m.Use(testCtx(t), o); !errors.Is(err, container.ErrNotRunning) {
		t.Fatalf("Use before a start = %v, want ErrNotRunning", err)
	}
	startServing(t, m, o, container.StartOptions{})
	conn, err := m.DialIdle(testCtx(t), o, 8080)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	release, err := m.Use(testCtx(t), o)
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Hour)
	e.clock.Settle()
	if !m.Running(o) {
		t.Fatal("stopped during a use")
	}
	release()
	// The idle connection, still open, does not keep the container awake.
	e.clock.Advance(time.Minute)
	if err := monitor(t, m, o); err != nil {
		t.Fatal(err)
	}
	if _, err := m.DialIdle(testCtx(t), o, 8080); !errors.Is(err, container.ErrNotRunning) {
		t.Fatalf("DialIdle after the stop = %v, want ErrNotRunning", err)
	}
}

func TestManagerSleepStopKillsAfterGrace(t *testing.T) {
	e := newFakeEnv(t)
	m := e.manager(e.class(func(cc *container.ClassConfig) { cc.InactivityTimeout = time.Minute }))
	o := owner("stubborn")
	startServing(t, m, o, container.StartOptions{Env: map[string]string{"IGNORE_TERM": "1"}})
	e.clock.Advance(time.Minute)
	select {
	case d := <-e.graceAsked:
		if d != 3*time.Second {
			t.Fatalf("stop grace %s, want the configured 3s", d)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the inactivity stop did not begin")
	}
	if !m.Running(o) {
		t.Fatal("a container that ignores SIGTERM ended before its grace")
	}
	e.grace <- time.Time{}
	if err := monitor(t, m, o); err != nil {
		t.Fatalf("Monitor after SIGKILL at the grace's end = %v, want a clean stop", err)
	}
}

func TestManagerPauseTier(t *testing.T) {
	e := newFakeEnv(t)
	m := e.manager(e.class(func(cc *container.ClassConfig) {
		cc.InactivityTimeout = time.Minute
		cc.Sleep = container.SleepPause
		cc.DeepSleepAfter = 10 * time.Minute
	}))
	o := owner("pausable")
	startServing(t, m, o, container.StartOptions{})
	get(t, m, o, "/log?text=state-kept")
	paused := func() bool {
		t.Helper()
		inst, err := m.Inspect(testCtx(t), o)
		if err != nil {
			t.Fatal(err)
		}
		return inst.Paused
	}

	e.clock.Advance(time.Minute)
	e.clock.Settle()
	if !paused() || !m.Running(o) {
		t.Fatalf("after the inactivity timeout: paused %v running %v; want paused and running", paused(), m.Running(o))
	}
	// A request wakes it, with its state.
	before := echo(t, m, o).Hostname
	if paused() {
		t.Fatal("still paused after a request")
	}
	if !strings.Contains(e.logs.String(), "woke a paused container") {
		t.Error("the wake was not logged")
	}
	if after := echo(t, m, o).Hostname; after != before {
		t.Fatalf("hostname changed across the pause: %q, %q", before, after)
	}

	// Idle again: paused, then after DeepSleepAfter stopped cleanly.
	e.clock.Advance(time.Minute)
	e.clock.Settle()
	if !paused() {
		t.Fatal("not paused the second time")
	}
	e.clock.Advance(9 * time.Minute)
	e.clock.Settle()
	if !m.Running(o) {
		t.Fatal("stopped before DeepSleepAfter")
	}
	e.clock.Advance(time.Minute)
	if err := monitor(t, m, o); err != nil {
		t.Fatalf("Monitor after the deep sleep = %v, want a clean stop", err)
	}

	// Signal and Exec wake a paused container too.
	o2 := owner("pausable-2")
	startServing(t, m, o2, container.StartOptions{})
	e.clock.Advance(time.Minute)
	e.clock.Settle()
	if err := m.Signal(testCtx(t), o2, int(syscall.SIGUSR1)); err != nil {
		t.Fatalf("Signal a paused container: %v", err)
	}
	inst, err := m.Inspect(testCtx(t), o2)
	if err != nil || inst.Paused {
		t.Fatalf("after Signal: %+v, %v; want awake", inst, err)
	}
}

func TestManagerStatusReattachesAfterRestart(t *testing.T) {
	e := newFakeEnv(t)
	before := e.manager(e.class(nil))
	o := owner("survivor")
	inst := startServing(t, before, o, container.StartOptions{})

	// A new Manager over the same runtime stands for a restarted berth.
	after := e.manager(e.class(nil))
	if after.Running(o) {
		t.Fatal("Running before Status knew of the container")
	}
	running, err := after.Status(testCtx(t), o)
	if err != nil || !running {
		t.Fatalf("Status after the restart = %v, %v; want true", running, err)
	}
	if !strings.Contains(e.logs.String(), "re-attached a running container") {
		t.Error("the re-attachment was not logged")
	}
	if got := echo(t, after, o).Hostname; got == "" {
		t.Fatal("no answer through the new Manager")
	}
	_, err = after.Start(testCtx(t), o, container.StartOptions{})
	wantErrText(t, "Start of a re-attached owner", err, container.ErrAlreadyRunning, "already running")
	got, err := after.Inspect(testCtx(t), o)
	if err != nil || got.ID != inst.ID {
		t.Fatalf("Inspect = %v, %v; want %s", got.ID, err, inst.ID)
	}
	get(t, after, o, "/exit?code=4")
	if err := monitor(t, after, o); err == nil || err.Error() != "container exited with unexpected exit code: 4" {
		t.Fatalf("Monitor through the new Manager = %v", err)
	}
}

func TestManagerRecover(t *testing.T) {
	e := newFakeEnv(t)
	before := e.manager(map[string]container.ClassConfig{
		testClass: {Image: e.image},
		"Gone":    {Image: e.image},
	})
	alive, deleted, crashed := owner("alive"), owner("deleted"), owner("crashed")
	oldClass := container.Owner{Class: "Gone", Object: objectID("old class")}
	for _, o := range []container.Owner{alive, deleted, crashed, oldClass} {
		startServing(t, before, o, container.StartOptions{})
	}
	get(t, before, crashed, "/exit?code=1")
	monitor(t, before, crashed)
	// A container of another app is not this Manager's business.
	other, err := e.rt.Start(testCtx(t), container.Spec{Image: e.image, Labels: map[string]string{
		container.LabelApp: "other-app", container.LabelClass: testClass, container.LabelObject: alive.Object,
	}})
	if err != nil {
		t.Fatal(err)
	}

	after := e.manager(e.class(nil)) // the class "Gone" is no longer configured
	known := func(o container.Owner) bool { return o != deleted }
	attached, err := after.Recover(testCtx(t), known)
	if err != nil {
		t.Fatalf("Recover: %v", err)
	}
	if len(attached) != 1 || attached[0] != alive {
		t.Fatalf("Recover re-attached %v, want [%v]", attached, alive)
	}
	var left []string
	for _, inst := range e.containers() {
		left = append(left, inst.Labels[container.LabelApp]+"/"+inst.Labels[container.LabelObject])
	}
	want := []string{testApp + "/" + alive.Object, "other-app/" + alive.Object}
	if !equalSets(left, want) {
		t.Fatalf("containers after Recover: %v, want %v", left, want)
	}
	if !after.Running(alive) || after.Running(crashed) {
		t.Fatal("Running disagrees with Recover")
	}
	if _, err := after.Start(testCtx(t), crashed, container.StartOptions{}); err != nil {
		t.Fatalf("Start of the crashed owner after Recover: %v", err)
	}
	if err := e.rt.Destroy(testCtx(t), other.ID); err != nil {
		t.Fatal(err)
	}
}

func equalSets(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	seen := map[string]int{}
	for _, s := range a {
		seen[s]++
	}
	for _, s := range b {
		seen[s]--
	}
	for _, n := range seen {
		if n != 0 {
			return false
		}
	}
	return true
}

func TestManagerShutdown(t *testing.T) {
	e := newFakeEnv(t)
	m := e.manager(e.class(nil))
	owners := []container.Owner{owner("s1"), owner("s2"), owner("s3")}
	for _, o := range owners {
		startServing(t, m, o, container.StartOptions{})
	}
	get(t, m, owners[2], "/exit?code=9") // a stopped one is removed too
	monitor(t, m, owners[2])
	monitors := make(chan error, 2)
	for _, o := range owners[:2] {
		go func() { monitors <- monitor(t, m, o) }()
	}
	if err := m.Shutdown(testCtx(t)); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if list := e.containers(); len(list) != 0 {
		t.Fatalf("containers after Shutdown: %v", list)
	}
	for range 2 {
		if err := <-monitors; err != nil {
			t.Fatalf("Monitor across Shutdown = %v, want nil", err)
		}
	}
	_, err := m.Start(testCtx(t), owners[0], container.StartOptions{})
	wantErrText(t, "Start after Shutdown", err, container.ErrManagerClosed, "shut down")
}

func TestManagerNameTakenByAnotherOwner(t *testing.T) {
	e := newFakeEnv(t)
	m := e.manager(e.class(nil))
	// Two object ids that share their first 12 characters.
	a := container.Owner{Class: testClass, Object: strings.Repeat("ab", 6) + strings.Repeat("0", 52)}
	b := container.Owner{Class: testClass, Object: strings.Repeat("ab", 6) + strings.Repeat("1", 52)}
	ia := startServing(t, m, a, container.StartOptions{})
	ib := startServing(t, m, b, container.StartOptions{})
	if ia.Name != container.ContainerName(testApp, a) {
		t.Fatalf("first name %q", ia.Name)
	}
	if ib.Name != "berth-shop-Cart-"+b.Object {
		t.Fatalf("second name %q, want the full object id", ib.Name)
	}
	if !m.Running(a) || !m.Running(b) {
		t.Fatal("the first container was disturbed")
	}

	// An untracked container of the owner itself that holds the name is
	// replaced.
	c := owner("untracked")
	stray, err := e.rt.Start(testCtx(t), container.Spec{
		Name: container.ContainerName(testApp, c), Image: e.image,
		Labels: map[string]string{container.LabelApp: testApp, container.LabelClass: "Other", container.LabelObject: c.Object},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.rt.Destroy(context.Background(), stray.ID) })
	ic := startServing(t, m, c, container.StartOptions{})
	if ic.Name != "berth-shop-Cart-"+c.Object {
		t.Fatalf("name %q next to a foreign container holding the short name", ic.Name)
	}
}

// serialRuntime fails the test when two calls that act on containers of
// one name overlap.
type serialRuntime struct {
	*fake.Runtime
	t       *testing.T
	mu      sync.Mutex
	active  int
	overlap int
}

func (r *serialRuntime) enter() func() {
	r.mu.Lock()
	r.active++
	if r.active > 1 {
		r.overlap++
	}
	r.mu.Unlock()
	time.Sleep(200 * time.Microsecond) // widens the window a race would need
	return func() {
		r.mu.Lock()
		r.active--
		r.mu.Unlock()
	}
}

func (r *serialRuntime) Start(ctx context.Context, spec container.Spec) (container.Instance, error) {
	defer r.enter()()
	return r.Runtime.Start(ctx, spec)
}

func (r *serialRuntime) Signal(ctx context.Context, id string, sig syscall.Signal) error {
	defer r.enter()()
	return r.Runtime.Signal(ctx, id, sig)
}

func (r *serialRuntime) Destroy(ctx context.Context, id string) error {
	defer r.enter()()
	return r.Runtime.Destroy(ctx, id)
}

func (r *serialRuntime) List(ctx context.Context, labels map[string]string) ([]container.Instance, error) {
	defer r.enter()()
	return r.Runtime.List(ctx, labels)
}

func TestManagerSerializesCallsPerOwner(t *testing.T) {
	e := newFakeEnv(t)
	rt := &serialRuntime{Runtime: e.rt, t: t}
	m, err := container.NewManager(container.ManagerConfig{
		App: testApp, Runtime: rt, Logger: testLogger(t, e.logs), Clock: e.clock, Classes: e.class(nil),
		Labels: map[string]string{container.LabelTest: "1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Shutdown(context.Background()) })
	o := owner("serial")
	var wg sync.WaitGroup
	for i := range 60 {
		wg.Go(func() {
			ctx := testCtx(t)
			var err error
			switch i % 4 {
			case 0:
				_, err = m.Start(ctx, o, container.StartOptions{})
			case 1:
				err = m.Signal(ctx, o, int(syscall.SIGUSR1))
			case 2:
				err = m.Destroy(ctx, o, nil)
			case 3:
				_, err = m.Status(ctx, o)
			}
			if err != nil && !errors.Is(err, container.ErrAlreadyRunning) && !errors.Is(err, container.ErrNotRunning) {
				t.Errorf("call %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.overlap != 0 {
		t.Fatalf("%d runtime calls for one owner overlapped", rt.overlap)
	}
	if list := e.containers(); len(list) > 1 {
		t.Fatalf("%d containers for one owner", len(list))
	}
}

// blockingStarts holds every Start until release is closed, counting how
// many are inside at once.
type blockingStarts struct {
	*fake.Runtime
	inside  atomic.Int32
	entered chan struct{}
	release chan struct{}
}

func (r *blockingStarts) Start(ctx context.Context, spec container.Spec) (container.Instance, error) {
	r.inside.Add(1)
	r.entered <- struct{}{}
	<-r.release
	return r.Runtime.Start(ctx, spec)
}

func TestManagerOwnersStartInParallel(t *testing.T) {
	e := newFakeEnv(t)
	rt := &blockingStarts{Runtime: e.rt, entered: make(chan struct{}, 8), release: make(chan struct{})}
	m, err := container.NewManager(container.ManagerConfig{
		App: testApp, Runtime: rt, Logger: testLogger(t, e.logs), Clock: e.clock, Classes: e.class(nil),
		Labels: map[string]string{container.LabelTest: "1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Shutdown(context.Background()) })
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() {
			if _, err := m.Start(testCtx(t), owner(fmt.Sprint("parallel-", i)), container.StartOptions{}); err != nil {
				t.Errorf("Start: %v", err)
			}
		})
	}
	for range 3 {
		select {
		case <-rt.entered:
		case <-time.After(30 * time.Second):
			t.Fatalf("only %d starts of different owners got in at once", rt.inside.Load())
		}
	}
	close(rt.release)
	wg.Wait()
}

// TestManagerTraffic: an owner has traffic while a Use or a Dial'd
// connection is out, and otherwise has been quiet since the last one ended,
// by the Manager's clock; a plain Hold (a request to the object) is not
// traffic.
func TestManagerTraffic(t *testing.T) {
	e := newFakeEnv(t)
	m := e.manager(e.class(nil))
	o := owner("traffic")
	e.clock.Advance(time.Minute)
	if busy, idle := m.Traffic(o); busy || idle != time.Minute {
		t.Fatalf("unseen owner: busy %v, idle %s; want quiet for the Manager's minute", busy, idle)
	}
	startServing(t, m, o, container.StartOptions{})
	release, err := m.Use(testCtx(t), o)
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Hour)
	if busy, idle := m.Traffic(o); !busy || idle != 0 {
		t.Fatalf("in use: busy %v, idle %s", busy, idle)
	}
	release()
	e.clock.Advance(3 * time.Second)
	if busy, idle := m.Traffic(o); busy || idle != 3*time.Second {
		t.Fatalf("released 3 s ago: busy %v, idle %s", busy, idle)
	}
	hold := m.Hold(o)
	e.clock.Advance(time.Second)
	if busy, idle := m.Traffic(o); busy || idle != 4*time.Second {
		t.Fatalf("under a plain Hold: busy %v, idle %s; want quiet for 4 s", busy, idle)
	}
	hold()
	conn, err := m.Dial(testCtx(t), o, 8080)
	if err != nil {
		t.Fatal(err)
	}
	if busy, _ := m.Traffic(o); !busy {
		t.Fatal("no traffic with a Dial'd connection open")
	}
	conn.Close()
	if busy, idle := m.Traffic(o); busy || idle != 0 {
		t.Fatalf("after the connection closed: busy %v, idle %s", busy, idle)
	}
}

// TestManagerTurnGivenUpWhileWaiting: a call whose context ends while it
// waits for its turn hands the turn on when the call before it finishes.
func TestManagerTurnGivenUpWhileWaiting(t *testing.T) {
	e := newFakeEnv(t)
	m := e.manager(e.class(nil))
	o := owner("turn")
	startServing(t, m, o, container.StartOptions{})
	ctx, cancel := context.WithCancel(testCtx(t))
	cancel()
	for range 20 {
		// Status takes a turn; with the context already ended the later
		// ones give up at once while an earlier one may still hold it.
		go func() { _, _ = m.Status(ctx, o) }()
	}
	if running, err := m.Status(testCtx(t), o); err != nil || !running {
		t.Fatalf("Status after abandoned turns = %v, %v", running, err)
	}
}
