package fake_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/container"
	"github.com/berth-dev/berth/internal/container/fake"
)

// clock is a manual clock for Options.Now and Options.After.
type clock struct {
	mu      sync.Mutex
	now     time.Time
	firings []chan time.Time
}

func newClock() *clock { return &clock{now: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// After returns a channel that fires only when the test calls Fire.
func (c *clock) After(time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	c.firings = append(c.firings, ch)
	return ch
}

func (c *clock) Fire() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ch := range c.firings {
		ch <- c.now
	}
	n := len(c.firings)
	c.firings = nil
	return n
}

// testImage builds the usual testapp image into rt.
func testImage(t *testing.T, rt *fake.Runtime) {
	if _, _, err := build(t, rt, "FROM scratch\nCOPY testapp /testapp\nENTRYPOINT [\"/testapp\"]\n", nil); err != nil {
		t.Fatalf("Build: %v", err)
	}
}

func waitPort(t *testing.T, rt *fake.Runtime, id string, port int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := rt.Dial(context.Background(), id, port)
		if err == nil {
			conn.Close()
			return
		}
		if !errors.Is(err, container.ErrPortNotListening) || time.Now().After(deadline) {
			t.Fatalf("port %d does not listen: %v", port, err)
		}
		time.Sleep(time.Millisecond)
	}
}

func waitLine(t *testing.T, rt *fake.Runtime, id, text string) container.LogLine {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for l, err := range rt.Logs(ctx, id, container.LogOptions{Follow: true}) {
		if err != nil {
			t.Fatal(err)
		}
		if l.Text == text {
			return l
		}
	}
	t.Fatalf("no log line %q", text)
	return container.LogLine{}
}

func TestStopKillsWhenGraceRunsOut(t *testing.T) {
	clk := newClock()
	rt := newRuntime(fake.Options{Now: clk.Now, After: clk.After})
	testImage(t, rt)
	ctx := context.Background()
	inst, err := rt.Start(ctx, container.Spec{Image: "t:1", Env: map[string]string{"IGNORE_TERM": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	waitPort(t, rt, inst.ID, 8080)
	stopped := make(chan error, 1)
	go func() { stopped <- rt.Stop(ctx, inst.ID, time.Hour) }()
	line := waitLine(t, rt, inst.ID, "testapp got SIGTERM")
	if !line.Time.Equal(clk.Now()) {
		t.Errorf("log time %s, want the injected clock's %s", line.Time, clk.Now())
	}
	select {
	case err := <-stopped:
		t.Fatalf("Stop returned (%v) while the grace period had not run out", err)
	default:
	}
	for clk.Fire() == 0 { // Stop may not have asked for its timer yet
		time.Sleep(time.Millisecond)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("Stop: %v", err)
	}
	exit, err := rt.Wait(ctx, inst.ID)
	if err != nil || exit.Code != 137 || exit.OOMKilled {
		t.Fatalf("exit = %+v, %v; want 137", exit, err)
	}
}

func TestCPUIsWallTimeRunningUnpaused(t *testing.T) {
	clk := newClock()
	rt := newRuntime(fake.Options{Now: clk.Now})
	testImage(t, rt)
	ctx := context.Background()
	inst, err := rt.Start(ctx, container.Spec{Image: "t:1", Cmd: []string{"sleep", "1h"}})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Destroy(ctx, inst.ID)
	cpu := func() time.Duration {
		st, err := rt.Stats(ctx, inst.ID)
		if err != nil {
			t.Fatal(err)
		}
		return st.CPU
	}
	clk.Advance(5 * time.Second)
	if got := cpu(); got != 5*time.Second {
		t.Fatalf("CPU after 5 s running = %s", got)
	}
	if err := rt.Pause(ctx, inst.ID); err != nil {
		t.Fatal(err)
	}
	clk.Advance(10 * time.Second)
	if got := cpu(); got != 5*time.Second {
		t.Fatalf("CPU after 10 s paused = %s, want still 5s", got)
	}
	if err := rt.Unpause(ctx, inst.ID); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Second)
	if got := cpu(); got != 6*time.Second {
		t.Fatalf("CPU after 1 s more = %s, want 6s", got)
	}
}

func TestEventsMarkDrops(t *testing.T) {
	rt := newRuntime(fake.Options{EventBuffer: 1})
	testImage(t, rt)
	ctx, cancel := context.WithCancel(context.Background())
	events := rt.Events(ctx)
	var ids []string
	for range 3 {
		inst, err := rt.Start(ctx, container.Spec{Image: "t:1", Cmd: []string{"sleep", "1h"}})
		if err != nil {
			t.Fatal(err)
		}
		defer rt.Destroy(context.Background(), inst.ID)
		ids = append(ids, inst.ID)
	}
	first := <-events // the one that fit
	if first.ID != ids[0] || first.Dropped {
		t.Fatalf("first event %+v, want start of %s without Dropped", first, ids[0])
	}
	if err := rt.Signal(ctx, ids[2], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	next := <-events
	if next.Kind != container.EventExit || next.ID != ids[2] || !next.Dropped {
		t.Fatalf("event after the drops = %+v, want the exit of %s with Dropped", next, ids[2])
	}
	cancel()
	for range events { // closes once ctx ends
	}
}

func TestExecDiesWithContainer(t *testing.T) {
	rt := newRuntime(fake.Options{})
	testImage(t, rt)
	ctx := context.Background()
	inst, err := rt.Start(ctx, container.Spec{Image: "t:1", Cmd: []string{"sleep", "1h"}})
	if err != nil {
		t.Fatal(err)
	}
	proc, err := rt.Exec(ctx, inst.ID, container.ExecSpec{Cmd: []string{"/testapp", "sleep", "1h"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Destroy(ctx, inst.ID); err != nil {
		t.Fatal(err)
	}
	if code, err := proc.Wait(ctx); err != nil || code != 137 {
		t.Fatalf("exec Wait after Destroy = %d, %v; want 137", code, err)
	}
	// The fake saw the exit, so Wait still answers.
	if exit, err := rt.Wait(ctx, inst.ID); err != nil || exit.Code != 137 {
		t.Fatalf("Wait after Destroy = %+v, %v; want the 137 exit", exit, err)
	}
	if _, err := rt.Exec(ctx, inst.ID, container.ExecSpec{Cmd: []string{"/testapp", "id"}}); !errors.Is(err, container.ErrNotFound) {
		t.Fatalf("Exec in a destroyed container = %v, want ErrNotFound", err)
	}
}

func TestStartErrors(t *testing.T) {
	rt := newRuntime(fake.Options{Programs: map[string]fake.Program{}})
	testImage(t, rt)
	ctx := context.Background()
	_, err := rt.Start(ctx, container.Spec{Image: "t:1"})
	if !errors.Is(err, container.ErrExecutableNotFound) || !strings.Contains(err.Error(), "no Program") {
		t.Errorf("Start of an image file without a Program = %v, want ErrExecutableNotFound saying so", err)
	}
	_, err = rt.Start(ctx, container.Spec{Image: "nope:2"})
	if !errors.Is(err, container.ErrImageNotFound) || !strings.Contains(err.Error(), "nope:2") {
		t.Errorf("Start of a missing image = %v, want ErrImageNotFound naming it", err)
	}
	_, err = rt.Start(ctx, container.Spec{Image: "t:1", Name: "-bad name"})
	if !errors.Is(err, container.ErrInvalid) || !strings.Contains(err.Error(), "-bad name") {
		t.Errorf("Start with a bad name = %v, want ErrInvalid naming it", err)
	}
	if list, _ := rt.List(ctx, nil); len(list) != 0 {
		t.Errorf("failed Starts left %d containers behind", len(list))
	}
}

func TestPausedExecRefused(t *testing.T) {
	rt := newRuntime(fake.Options{})
	testImage(t, rt)
	ctx := context.Background()
	inst, err := rt.Start(ctx, container.Spec{Image: "t:1", Cmd: []string{"sleep", "1h"}})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Destroy(ctx, inst.ID)
	if err := rt.Pause(ctx, inst.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Exec(ctx, inst.ID, container.ExecSpec{Cmd: []string{"/testapp", "id"}}); !errors.Is(err, container.ErrNotRunning) {
		t.Fatalf("Exec in a paused container = %v, want ErrNotRunning", err)
	}
	// Destroying a paused container does not hang on the frozen program.
	if err := rt.Destroy(ctx, inst.ID); err != nil {
		t.Fatal(err)
	}
}
