package container_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/clock"
	"github.com/berth-dev/berth/internal/clock/clocktest"
	"github.com/berth-dev/berth/internal/container"
	"github.com/berth-dev/berth/internal/container/docker"
	"github.com/berth-dev/berth/internal/testutil"
)

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// dockerEnv is a Docker runtime, the test image and an app name of the
// test's own; everything is removed when the test ends.
type dockerEnv struct {
	t     *testing.T
	app   string
	image string
	clock *clocktest.Manual
	logs  *syncBuffer
}

func newDockerEnv(t *testing.T) *dockerEnv {
	t.Helper()
	testutil.RequireDocker(t)
	e := &dockerEnv{t: t, app: "berthtest-" + randomHex(4), clock: newFakeClock(), logs: &syncBuffer{}}
	rt := e.runtime()
	bin, err := os.ReadFile(testutil.BuildTestApp(t))
	if err != nil {
		t.Fatal(err)
	}
	dir := imageContext(t, bin, managerImageDockerfile)
	e.image = "berth-test/manager:" + randomHex(4)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := rt.Build(ctx, container.BuildSpec{ContextDir: dir, Tag: e.image, Labels: map[string]string{container.LabelTest: "1"}}); err != nil {
		t.Fatalf("build the test image: %v", err)
	}
	// Registered before any Manager's, so it runs after them: a sweep of
	// whatever a failed test left, then the image.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		left, err := rt.List(ctx, map[string]string{container.LabelApp: e.app})
		if err != nil {
			t.Errorf("list leftovers: %v", err)
		}
		for _, inst := range left {
			if err := rt.Destroy(ctx, inst.ID); err != nil {
				t.Errorf("remove leftover %s: %v", inst.Name, err)
			}
		}
		if err := rt.RemoveImage(ctx, e.image); err != nil {
			t.Errorf("remove the test image: %v", err)
		}
	})
	return e
}

// runtime connects a new Runtime to the engine, as a restarted berth would.
func (e *dockerEnv) runtime() *docker.Runtime {
	e.t.Helper()
	rt, err := docker.New(docker.Options{
		Logger: testLogger(e.t, e.logs),
		// Never created: no test container asks for the internet.
		InternetNetwork: "berth-test-internet-" + randomHex(4),
	})
	if err != nil {
		e.t.Fatalf("docker.New: %v", err)
	}
	e.t.Cleanup(func() { rt.Close() })
	return rt
}

func (e *dockerEnv) manager(rt container.Runtime, classes map[string]container.ClassConfig, mods ...func(*container.ManagerConfig)) *container.Manager {
	e.t.Helper()
	cfg := container.ManagerConfig{
		App: e.app, Runtime: rt, Logger: testLogger(e.t, e.logs), Clock: e.clock, Classes: classes,
		StopGrace: 5 * time.Second, Labels: map[string]string{container.LabelTest: "1"},
	}
	for _, mod := range mods {
		mod(&cfg)
	}
	m, err := container.NewManager(cfg)
	if err != nil {
		e.t.Fatalf("NewManager: %v", err)
	}
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := m.Shutdown(ctx); err != nil {
			e.t.Errorf("Shutdown: %v", err)
		}
	})
	return m
}

func TestManagerDocker(t *testing.T) {
	e := newDockerEnv(t)

	t.Run("start, dial, inactivity stop, start again", func(t *testing.T) {
		rt := e.runtime()
		m := e.manager(rt, map[string]container.ClassConfig{
			testClass: {Image: e.image, DefaultPort: 8080, InactivityTimeout: time.Minute},
		})
		o := owner("docker-sleepy")
		first := startServing(t, m, o, container.StartOptions{Env: map[string]string{"START_VAR": "yes"}})
		if got := echo(t, m, o).Env["START_VAR"]; got != "yes" {
			t.Fatalf("START_VAR = %q", got)
		}
		_, err := m.Dial(testCtx(t), o, 9999)
		wantErrText(t, "Dial of a closed port", err, container.ErrPortNotListening, "the container is not listening")

		e.clock.Advance(time.Minute)
		if err := monitor(t, m, o); err != nil {
			t.Fatalf("Monitor after the inactivity stop = %v, want a clean stop", err)
		}
		inst, err := rt.Inspect(testCtx(t), first.ID)
		if err != nil || inst.Running {
			t.Fatalf("after the stop: %+v, %v; want a stopped container", inst, err)
		}
		second := startServing(t, m, o, container.StartOptions{})
		if second.ID == first.ID || second.Name != container.ContainerName(e.app, o) {
			t.Fatalf("second start: %s %q; first was %s", second.ID, second.Name, first.ID)
		}
		echo(t, m, o)
		if _, err := rt.Inspect(testCtx(t), first.ID); !errors.Is(err, container.ErrNotFound) {
			t.Fatalf("the stopped container after the second start: %v, want it removed", err)
		}
		if err := m.Destroy(testCtx(t), o, nil); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("pause tier", func(t *testing.T) {
		rt := e.runtime()
		m := e.manager(rt, map[string]container.ClassConfig{
			testClass: {Image: e.image, DefaultPort: 8080, InactivityTimeout: time.Minute, Sleep: container.SleepPause, DeepSleepAfter: 5 * time.Minute},
		})
		o := owner("docker-pausable")
		startServing(t, m, o, container.StartOptions{})
		hostname := echo(t, m, o).Hostname
		e.clock.Advance(time.Minute)
		e.clock.Settle()
		if inst, err := m.Inspect(testCtx(t), o); err != nil || !inst.Paused {
			t.Fatalf("after the inactivity timeout: %+v, %v; want paused", inst, err)
		}
		woke := time.Now()
		if got := echo(t, m, o).Hostname; got != hostname {
			t.Fatalf("answered from %q after the wake, want %q", got, hostname)
		}
		t.Logf("wake from pause to the first answer: %s", time.Since(woke))
		e.clock.Advance(time.Minute)
		e.clock.Settle()
		e.clock.Advance(5 * time.Minute)
		if err := monitor(t, m, o); err != nil {
			t.Fatalf("Monitor after the deep sleep = %v, want a clean stop", err)
		}
		if err := m.Destroy(testCtx(t), o, nil); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("SIGTERM ignored: SIGKILL after the stop grace", func(t *testing.T) {
		// The wall clock: this is the path sleepAfter's stop() takes, end
		// to end, with a real grace.
		const grace = 2 * time.Second
		rt := e.runtime()
		m := e.manager(rt, map[string]container.ClassConfig{testClass: {Image: e.image, DefaultPort: 8080}},
			func(c *container.ManagerConfig) { c.Clock, c.StopGrace = clock.Real{}, grace })
		o := owner("docker-ignores-term")
		inst := startServing(t, m, o, container.StartOptions{Env: map[string]string{"IGNORE_TERM": "1"}})
		signalled := time.Now()
		if err := m.Signal(testCtx(t), o, int(syscall.SIGTERM)); err != nil {
			t.Fatalf("Signal SIGTERM: %v", err)
		}
		echo(t, m, o) // it ignored the SIGTERM and still serves
		err := monitor(t, m, o)
		ended := time.Since(signalled)
		const want = "runtime signalled the container to exit: 137"
		if err == nil || err.Error() != want {
			t.Fatalf("Monitor = %v, want exactly %q", err, want)
		}
		if ended < grace {
			t.Fatalf("killed %s after the SIGTERM, before the %s grace", ended, grace)
		}
		t.Logf("killed %s after the SIGTERM (grace %s)", ended, grace)
		got, err := rt.Inspect(testCtx(t), inst.ID)
		if err != nil || got.Running || got.Exit == nil || got.Exit.Code != 137 {
			t.Fatalf("the container after the kill: %+v (exit %+v), %v; want it stopped with code 137", got, got.Exit, err)
		}
		if !strings.Contains(e.logs.String(), "killed a container that ignored SIGTERM for its stop grace") {
			t.Error("the kill was not logged")
		}
		if err := m.Destroy(testCtx(t), o, nil); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("max_instances with concurrent starts", func(t *testing.T) {
		rt := e.runtime()
		const max, n = 2, 5
		m := e.manager(rt, map[string]container.ClassConfig{testClass: {Image: e.image, MaxInstances: max}})
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				_, errs[i] = m.Start(testCtx(t), owner(fmt.Sprint("docker-max-", i)), container.StartOptions{})
			})
		}
		wg.Wait()
		served := 0
		for _, err := range errs {
			switch {
			case err == nil:
				served++
			case !errors.Is(err, container.ErrNoInstance) || !strings.Contains(err.Error(), "there is no container instance that can be provided to this durable object"):
				t.Errorf("Start: %v", err)
			}
		}
		if served != max {
			t.Fatalf("%d starts served, want %d: %v", served, max, errs)
		}
		list, err := rt.List(testCtx(t), map[string]string{container.LabelApp: e.app})
		if err != nil {
			t.Fatal(err)
		}
		running := 0
		for _, inst := range list {
			if inst.Running {
				running++
			}
		}
		if running != max {
			t.Fatalf("%d containers run in the engine, want %d", running, max)
		}
		if err := m.Shutdown(testCtx(t)); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("recover after a restart", func(t *testing.T) {
		classes := map[string]container.ClassConfig{testClass: {Image: e.image, DefaultPort: 8080}}
		before := e.manager(e.runtime(), classes)
		kept, gone := owner("docker-kept"), owner("docker-gone")
		inst := startServing(t, before, kept, container.StartOptions{})
		startServing(t, before, gone, container.StartOptions{})
		hostname := echo(t, before, kept).Hostname

		// berth restarts: a new runtime connection and Manager; the old
		// Manager is dropped without a Shutdown.
		rt := e.runtime()
		after := e.manager(rt, classes)
		attached, err := after.Recover(testCtx(t), func(o container.Owner) bool { return o == kept })
		if err != nil {
			t.Fatalf("Recover: %v", err)
		}
		if len(attached) != 1 || attached[0] != kept {
			t.Fatalf("re-attached %v, want [%v]", attached, kept)
		}
		if running, err := after.Status(testCtx(t), kept); err != nil || !running {
			t.Fatalf("Status = %v, %v", running, err)
		}
		if got := echo(t, after, kept).Hostname; got != hostname {
			t.Fatalf("answered from %q, want the same container %q", got, hostname)
		}
		list, err := rt.List(testCtx(t), map[string]string{container.LabelApp: e.app})
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 1 || list[0].ID != inst.ID {
			t.Fatalf("containers after Recover: %v, want only %s", list, inst.ID)
		}
		get(t, after, kept, "/exit?code=5")
		if err := monitor(t, after, kept); err == nil || err.Error() != "container exited with unexpected exit code: 5" {
			t.Fatalf("Monitor of the re-attached container = %v", err)
		}
		if err := after.Shutdown(testCtx(t)); err != nil {
			t.Fatal(err)
		}
		if list, _ := rt.List(testCtx(t), map[string]string{container.LabelApp: e.app}); len(list) != 0 {
			t.Fatalf("containers after Shutdown: %v", list)
		}
	})
}
