package actor

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/storage"
)

func TestConcurrentGetsActivateOnce(t *testing.T) {
	e := newTestEnv(t, Options{})
	gate := make(chan struct{})
	e.factory.onConstruct = func(context.Context, *State) error { <-gate; return nil }
	id := e.ns.IDFromName("one")

	const n = 32
	handles := make([]*Handle, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { handles[i], errs[i] = e.host.Get(context.Background(), id) })
	}
	close(gate)
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if handles[i].Object() != handles[0].Object() {
			t.Fatal("two Gets got different instances")
		}
	}
	if got := e.factory.activations(id); got != 1 {
		t.Fatalf("constructor ran %d times, want 1", got)
	}
	if e.host.Live() != 1 {
		t.Fatalf("live = %d", e.host.Live())
	}
	st := handles[0].State()
	if !st.ID.Equal(id) || st.Storage == nil {
		t.Fatalf("state = %+v", st)
	}
	for _, hd := range handles {
		hd.Release()
		hd.Release() // a second Release does nothing
	}
}

func TestIdleObjectIsEvictedAndReactivatedWithStorage(t *testing.T) {
	e := newTestEnv(t, Options{})
	id := e.ns.IDFromName("idle")
	hd := e.get(id)
	first := hd.Object().(*fakeObject)
	if err := hd.State().Storage.Put("k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	hd.Release()

	e.clock.Advance(DefaultIdleTimeout - time.Millisecond)
	if first.isClosed() {
		t.Fatal("evicted before the idle timeout")
	}
	e.clock.Advance(time.Millisecond)
	waitClosed(t, first)
	if e.host.Live() != 0 {
		t.Fatalf("live = %d after eviction", e.host.Live())
	}

	hd = e.get(id)
	defer hd.Release()
	second := hd.Object().(*fakeObject)
	if second == first || second.gen != 2 {
		t.Fatalf("not re-activated: gen %d", second.gen)
	}
	v, ok, err := hd.State().Storage.Get("k")
	if err != nil || !ok || string(v) != "v" {
		t.Fatalf("storage after eviction: %q %v %v", v, ok, err)
	}
}

func TestInFlightEventsAndPendingWorkPreventEviction(t *testing.T) {
	e := newTestEnv(t, Options{IdleTimeout: 10 * time.Second})
	id := e.ns.IDFromName("busy")

	hd := e.get(id)
	obj := hd.Object().(*fakeObject)
	e.clock.Advance(time.Hour)
	if obj.isClosed() {
		t.Fatal("evicted with an event in flight")
	}

	release := hd.State().KeepAlive() // e.g. ctx.waitUntil
	hd.Release()
	e.clock.Advance(time.Hour)
	if obj.isClosed() {
		t.Fatal("evicted with pending work")
	}
	release()
	release() // idempotent
	e.clock.Advance(9 * time.Second)
	if obj.isClosed() {
		t.Fatal("evicted before the idle timeout")
	}
	e.clock.Advance(time.Second)
	waitClosed(t, obj)
}

func TestNewEventRestartsIdleTimer(t *testing.T) {
	e := newTestEnv(t, Options{IdleTimeout: 10 * time.Second})
	id := e.ns.IDFromName("x")
	hd := e.get(id)
	obj := hd.Object().(*fakeObject)
	hd.Release()
	e.clock.Advance(8 * time.Second)
	e.get(id).Release()
	e.clock.Advance(8 * time.Second)
	if obj.isClosed() {
		t.Fatal("evicted although an event came 8 s ago")
	}
	e.clock.Advance(2 * time.Second)
	waitClosed(t, obj)
	if e.factory.activations(id) != 1 {
		t.Fatal("re-activated without a Get")
	}
}

func TestStorageIsReleasedOnEviction(t *testing.T) {
	e := newTestEnv(t, Options{IdleTimeout: time.Second})
	// A store that keeps no idle databases shows releases in OpenCount.
	store, err := storage.OpenStore(t.TempDir(), storage.StoreOptions{MaxOpen: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	host, err := New(Options{Store: store, Factory: e.factory.New, Clock: e.clock, Namespaces: []*Namespace{e.ns}, IdleTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close(context.Background())
	var hs []*Handle
	for _, name := range []string{"a", "b", "c"} {
		hd, err := host.Get(context.Background(), e.ns.IDFromName(name))
		if err != nil {
			t.Fatal(err)
		}
		hs = append(hs, hd)
	}
	if store.OpenCount() != 3 {
		t.Fatalf("open databases = %d with 3 live objects", store.OpenCount())
	}
	for _, hd := range hs {
		hd.Release()
	}
	e.clock.Advance(time.Second)
	if host.Live() != 0 || store.OpenCount() > 1 {
		t.Fatalf("after eviction: live %d, open databases %d", host.Live(), store.OpenCount())
	}
}

func TestAbortResetsTheObject(t *testing.T) {
	e := newTestEnv(t, Options{})
	id := e.ns.IDFromName("abort")
	hd := e.get(id)
	old := hd.Object().(*fakeObject)

	hd.State().Abort(errors.New("user called ctx.abort()"))
	hd.State().Abort(nil) // again: nothing
	waitClosed(t, old)    // at once, with the event still in flight

	// The next activation waits for the old instance's events to end.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	_, err := e.host.Get(ctx, id)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Get while the aborted instance drains: %v", err)
	}
	got := make(chan *Handle)
	go func() { got <- e.get(id) }()
	hd.Release()
	next := <-got
	defer next.Release()
	if obj := next.Object().(*fakeObject); obj == old || obj.gen != 2 {
		t.Fatal("abort did not lead to a new instance")
	}
}

func TestConstructorFailureIsReturnedAndRetried(t *testing.T) {
	e := newTestEnv(t, Options{})
	id := e.ns.IDFromName("broken")
	boom := errors.New("constructor threw")
	e.factory.onConstruct = func(context.Context, *State) error { return boom }
	_, err := e.host.Get(context.Background(), id)
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "Counter/"+id.String()) {
		t.Fatalf("err = %v", err)
	}
	if e.host.Live() != 0 {
		t.Fatal("failed activation stays live")
	}
	e.factory.mu.Lock()
	e.factory.onConstruct = nil
	e.factory.mu.Unlock()
	e.get(id).Release()
	if e.factory.activations(id) != 1 {
		t.Fatal("retry did not activate")
	}
}

func TestGetRejectsForeignIDs(t *testing.T) {
	e := newTestEnv(t, Options{})
	if _, err := e.host.Get(context.Background(), ID{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("zero id: %v", err)
	}
	other := mustNamespace(t, e.secret, "Other")
	_, err := e.host.Get(context.Background(), other.IDFromName("x"))
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `"Other"`) {
		t.Fatalf("foreign namespace: %v", err)
	}
}

func TestCloseWaitsForEventsThenClosesObjects(t *testing.T) {
	e := newTestEnv(t, Options{})
	idle := e.get(e.ns.IDFromName("idle"))
	idleObj := idle.Object().(*fakeObject)
	idle.Release()
	busy := e.get(e.ns.IDFromName("busy"))
	busyObj := busy.Object().(*fakeObject)

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	err := e.host.Close(ctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close with an event stuck: %v", err)
	}
	waitClosed(t, idleObj)
	waitClosed(t, busyObj) // given up waiting: closed so the event fails
	if _, err := e.host.Get(context.Background(), e.ns.IDFromName("idle")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get after Close: %v", err)
	}
	busy.Release()
}

func TestRenamedClassKeepsIDsStorageAndAlarms(t *testing.T) {
	e := newTestEnv(t, Options{})
	id := e.ns.IDFromName("kept")
	hd := e.get(id)
	if err := hd.State().Storage.Put("k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	hd.Release()
	due := epoch.Add(time.Minute)
	setAlarm(t, e, id, due)
	e.closeAll()

	// After renamed_classes Counter -> Tally, the class is Tally with the
	// identity Counter.
	renamed, err := NewNamespaceWithIdentity(e.secret, "Tally", "Counter", nil)
	if err != nil {
		t.Fatal(err)
	}
	e.open(Options{Namespaces: []*Namespace{renamed}})
	if ns, ok := e.host.Namespace("Tally"); !ok || ns != renamed {
		t.Fatalf("Namespace(Tally) = %v, %v", ns, ok)
	}
	if _, ok := e.host.Namespace("Counter"); ok {
		t.Fatal("the old class name is still served")
	}
	again := renamed.IDFromName("kept")
	if again.String() != id.String() {
		t.Fatalf("idFromName after rename = %s, want %s", again, id)
	}
	if _, err := renamed.IDFromString(id.String()); err != nil {
		t.Fatalf("id from before the rename rejected: %v", err)
	}
	if again.Namespace().Class() != "Tally" || again.Key() != id.Key() {
		t.Fatalf("class %q key %v; want Tally, %v", again.Namespace().Class(), again.Key(), id.Key())
	}
	hd = e.get(again)
	v, ok, err := hd.State().Storage.Get("k")
	hd.Release()
	if err != nil || !ok || string(v) != "v" {
		t.Fatalf("stored value after rename = %q, %v, %v", v, ok, err)
	}
	e.clock.Set(due)
	if calls := e.factory.alarms(); len(calls) != 1 || calls[0].id != id.String() {
		t.Fatalf("alarm deliveries after rename = %+v, want one to %s", calls, id)
	}
}

func TestHostRejectsTwoClassesOfOneIdentity(t *testing.T) {
	store, err := storage.OpenStore(t.TempDir(), storage.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	a := mustNamespace(t, testSecret(), "A")
	b, err := NewNamespaceWithIdentity(testSecret(), "B", "A", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(Options{Store: store, Factory: newFakeFactory(t, newFakeClock()).New, Namespaces: []*Namespace{a, b}})
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "identity") {
		t.Fatalf("New = %v, want an error naming the shared identity", err)
	}
}

// TestTryGetOnlyTakesLiveObjects: TryGet never activates; on a live object
// its Handle holds off eviction as Get's does.
func TestTryGetOnlyTakesLiveObjects(t *testing.T) {
	e := newTestEnv(t, Options{})
	id := e.ns.IDFromName("try")
	if _, ok := e.host.TryGet(id); ok {
		t.Fatal("TryGet of an object that is not live gave a Handle")
	}
	if e.factory.activations(id) != 0 {
		t.Fatal("TryGet activated the object")
	}
	first := e.get(id)
	live := first.Object().(*fakeObject)
	first.Release()

	hd, ok := e.host.TryGet(id)
	if !ok || hd.Object() != live {
		t.Fatalf("TryGet of a live object = %v, %v", hd, ok)
	}
	e.clock.Advance(DefaultIdleTimeout)
	if live.isClosed() {
		t.Fatal("evicted while a TryGet Handle was held")
	}
	hd.Release()
	e.clock.Advance(DefaultIdleTimeout)
	waitClosed(t, live)
	if _, ok := e.host.TryGet(id); ok {
		t.Fatal("TryGet of an evicted object gave a Handle")
	}
	if _, ok := e.host.TryGet(ID{}); ok {
		t.Fatal("TryGet of the zero id gave a Handle")
	}
}
