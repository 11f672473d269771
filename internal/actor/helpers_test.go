package actor

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/storage"
)

// fakeClock is a manual clock. Timers fire only in Advance, each on its own
// goroutine as with time.AfterFunc; Advance waits for the callbacks it
// started, and fires timers they arm for times already reached, so that a
// test sees every consequence of the time step when Advance returns.
// Callbacks that block (a long alarm handler) block Advance: run it on a
// goroutine of its own then.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	at      time.Time
	f       func()
	stopped bool
	fired   bool
}

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func newFakeClock() *fakeClock { return &fakeClock{now: epoch} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		if t.fired || t.stopped {
			return false
		}
		t.stopped = true
		return true
	}
}

// Advance moves the clock by d and runs every timer due, in time order.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	target := c.now.Add(d)
	c.mu.Unlock()
	for {
		c.mu.Lock()
		var due []*fakeTimer
		for _, t := range c.timers {
			if !t.fired && !t.stopped && !t.at.After(target) {
				due = append(due, t)
			}
		}
		if len(due) == 0 {
			c.now = target
			c.timers = slices.DeleteFunc(c.timers, func(t *fakeTimer) bool { return t.fired || t.stopped })
			c.mu.Unlock()
			return
		}
		slices.SortStableFunc(due, func(a, b *fakeTimer) int { return a.at.Compare(b.at) })
		first := due[0].at
		if first.After(c.now) {
			c.now = first
		}
		var wg sync.WaitGroup
		for _, t := range due {
			if t.at.Equal(first) {
				t.fired = true
				wg.Go(t.f)
			}
		}
		c.mu.Unlock()
		wg.Wait()
	}
}

// Set moves the clock to t (forwards only), running timers as Advance.
func (c *fakeClock) Set(t time.Time) { c.Advance(t.Sub(c.Now())) }

// fakeObject is a Go test double of a Durable Object activation.
type fakeObject struct {
	f     *fakeFactory
	state *State
	gen   int // which activation of this id (1 = first)

	closeOnce sync.Once
	closed    chan struct{}
}

func (o *fakeObject) Alarm(ctx context.Context, info AlarmInfo) error {
	o.f.mu.Lock()
	o.f.alarmCalls = append(o.f.alarmCalls, alarmCall{id: o.state.ID.String(), info: info, at: o.f.clock.Now(), gen: o.gen})
	fn := o.f.onAlarm
	o.f.mu.Unlock()
	if fn == nil {
		return nil
	}
	return fn(ctx, o, info)
}

func (o *fakeObject) Close(context.Context) error {
	called := false
	o.closeOnce.Do(func() { called = true; close(o.closed) })
	if !called {
		o.f.t.Errorf("Close called twice on %s #%d", o.state.ID, o.gen)
	}
	return nil
}

func (o *fakeObject) isClosed() bool {
	select {
	case <-o.closed:
		return true
	default:
		return false
	}
}

type alarmCall struct {
	id   string
	info AlarmInfo
	at   time.Time
	gen  int
}

// fakeFactory builds fakeObjects and records what happened.
type fakeFactory struct {
	t     testing.TB
	clock Clock

	mu         sync.Mutex
	objects    []*fakeObject
	perID      map[string]int
	alarmCalls []alarmCall
	// onConstruct runs inside the Factory; an error fails activation.
	onConstruct func(ctx context.Context, st *State) error
	// onAlarm runs inside Alarm.
	onAlarm func(ctx context.Context, o *fakeObject, info AlarmInfo) error
}

func newFakeFactory(t testing.TB, clock Clock) *fakeFactory {
	return &fakeFactory{t: t, clock: clock, perID: map[string]int{}}
}

func (f *fakeFactory) New(ctx context.Context, st *State) (Object, error) {
	f.mu.Lock()
	fn := f.onConstruct
	f.mu.Unlock()
	if fn != nil {
		if err := fn(ctx, st); err != nil {
			return nil, err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.perID[st.ID.String()]++
	o := &fakeObject{f: f, state: st, gen: f.perID[st.ID.String()], closed: make(chan struct{})}
	f.objects = append(f.objects, o)
	return o, nil
}

func (f *fakeFactory) activations(id ID) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.perID[id.String()]
}

func (f *fakeFactory) alarms() []alarmCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.alarmCalls)
}

func (f *fakeFactory) setAlarmHandler(fn func(ctx context.Context, o *fakeObject, info AlarmInfo) error) {
	f.mu.Lock()
	f.onAlarm = fn
	f.mu.Unlock()
}

// testEnv is a host over a fresh store with a fake clock.
type testEnv struct {
	t       *testing.T
	dir     string
	secret  []byte
	clock   *fakeClock
	store   *storage.Store
	factory *fakeFactory
	ns      *Namespace
	host    *Host
}

func testSecret() []byte { return bytes.Repeat([]byte{7}, SecretLen) }

func newTestEnv(t *testing.T, opts Options) *testEnv {
	t.Helper()
	e := &testEnv{t: t, dir: t.TempDir(), secret: testSecret(), clock: newFakeClock()}
	e.open(opts)
	return e
}

// open opens the store and a host on e.dir (again, after closeAll).
func (e *testEnv) open(opts Options) {
	e.t.Helper()
	var err error
	e.store, err = storage.OpenStore(e.dir, storage.StoreOptions{DB: storage.Options{Synchronous: storage.SyncNormal}})
	if err != nil {
		e.t.Fatal(err)
	}
	e.ns, err = NewNamespace(e.secret, "Counter", nil)
	if err != nil {
		e.t.Fatal(err)
	}
	e.factory = newFakeFactory(e.t, e.clock)
	opts.Store, opts.Factory, opts.Clock = e.store, e.factory.New, e.clock
	if opts.Namespaces == nil {
		opts.Namespaces = []*Namespace{e.ns}
	}
	e.host, err = New(opts)
	if err != nil {
		e.t.Fatal(err)
	}
	store, host := e.store, e.host
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := host.Close(ctx); err != nil && !errors.Is(err, ErrClosed) {
			e.t.Errorf("close host: %v", err)
		}
		_ = store.Close()
	})
}

// closeAll closes host and store, as a process exit would.
func (e *testEnv) closeAll() {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.host.Close(ctx); err != nil {
		e.t.Fatal(err)
	}
	if err := e.store.Close(); err != nil {
		e.t.Fatal(err)
	}
}

func (e *testEnv) get(id ID) *Handle {
	e.t.Helper()
	hd, err := e.host.Get(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return hd
}

// waitClosed waits (bounded) for an object's Close.
func waitClosed(t *testing.T, o *fakeObject) {
	t.Helper()
	select {
	case <-o.closed:
	case <-time.After(5 * time.Second):
		t.Fatalf("object %s #%d not closed", o.state.ID, o.gen)
	}
}
