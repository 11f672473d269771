package actor

import (
	"context"
	"errors"
	"testing"
	"time"
)

func setAlarm(t *testing.T, e *testEnv, id ID, at time.Time) {
	t.Helper()
	hd := e.get(id)
	defer hd.Release()
	if err := hd.State().SetAlarm(at); err != nil {
		t.Fatal(err)
	}
}

func storedAlarm(t *testing.T, e *testEnv, id ID) (time.Time, bool) {
	t.Helper()
	db, err := e.store.Object(id.Key())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	at, ok, err := db.GetAlarm()
	if err != nil {
		t.Fatal(err)
	}
	return at, ok
}

func TestAlarmFiresAtItsTime(t *testing.T) {
	e := newTestEnv(t, Options{})
	id := e.ns.IDFromName("a")
	due := epoch.Add(10 * time.Second)
	setAlarm(t, e, id, due)

	e.clock.Advance(10*time.Second - time.Millisecond)
	if n := len(e.factory.alarms()); n != 0 {
		t.Fatalf("%d alarms delivered early", n)
	}
	e.clock.Advance(time.Millisecond)
	calls := e.factory.alarms()
	if len(calls) != 1 {
		t.Fatalf("%d alarm deliveries, want 1", len(calls))
	}
	want := AlarmInfo{RetryCount: 0, IsRetry: false, ScheduledTime: due}
	if c := calls[0]; c.info.RetryCount != 0 || c.info.IsRetry || !c.info.ScheduledTime.Equal(want.ScheduledTime) || !c.at.Equal(due) {
		t.Fatalf("delivery = %+v", c)
	}
	if _, ok := storedAlarm(t, e, id); ok {
		t.Fatal("alarm still stored after a successful handler")
	}
	e.clock.Advance(time.Hour)
	if n := len(e.factory.alarms()); n != 1 {
		t.Fatalf("%d deliveries after an hour, want still 1", n)
	}
}

func TestAlarmActivatesEvictedObject(t *testing.T) {
	e := newTestEnv(t, Options{})
	id := e.ns.IDFromName("sleeper")
	setAlarm(t, e, id, epoch.Add(5*time.Minute))
	e.clock.Advance(DefaultIdleTimeout)
	if e.host.Live() != 0 {
		t.Fatal("object not evicted")
	}
	e.clock.Advance(5 * time.Minute)
	calls := e.factory.alarms()
	if len(calls) != 1 || calls[0].gen != 2 {
		t.Fatalf("deliveries = %+v, want one to a second activation", calls)
	}
	// Delivery was an event: the object is idle again and gets evicted.
	e.clock.Advance(DefaultIdleTimeout)
	if e.host.Live() != 0 {
		t.Fatal("object not evicted after its alarm")
	}
}

func TestAlarmRetriesWithExponentialBackoff(t *testing.T) {
	e := newTestEnv(t, Options{})
	id := e.ns.IDFromName("flaky")
	fails := 3
	e.factory.setAlarmHandler(func(_ context.Context, _ *fakeObject, info AlarmInfo) error {
		if info.RetryCount < fails {
			return errors.New("handler threw")
		}
		return nil
	})
	due := epoch.Add(time.Second)
	setAlarm(t, e, id, due)
	e.clock.Set(due)
	// Retries come 2 s, 4 s, 8 s after each failure; none early.
	at := due
	for n, backoff := range []time.Duration{2 * time.Second, 4 * time.Second, 8 * time.Second} {
		at = at.Add(backoff)
		e.clock.Set(at.Add(-time.Millisecond))
		if got := len(e.factory.alarms()); got != n+1 {
			t.Fatalf("before retry %d: %d deliveries", n+1, got)
		}
		e.clock.Set(at)
	}
	calls := e.factory.alarms()
	if len(calls) != 4 {
		t.Fatalf("%d deliveries, want 4", len(calls))
	}
	wantAt := []time.Time{due, due.Add(2 * time.Second), due.Add(6 * time.Second), due.Add(14 * time.Second)}
	for i, c := range calls {
		if c.info.RetryCount != i || c.info.IsRetry != (i > 0) || !c.info.ScheduledTime.Equal(due) || !c.at.Equal(wantAt[i]) {
			t.Fatalf("delivery %d = %+v, want retry %d at %v", i, c, i, wantAt[i])
		}
	}
	if _, ok := storedAlarm(t, e, id); ok {
		t.Fatal("alarm still stored after the retry succeeded")
	}
}

func TestAlarmGivesUpAfterSixRetries(t *testing.T) {
	e := newTestEnv(t, Options{})
	id := e.ns.IDFromName("hopeless")
	e.factory.setAlarmHandler(func(context.Context, *fakeObject, AlarmInfo) error { return errors.New("always") })
	setAlarm(t, e, id, epoch.Add(time.Second))
	e.clock.Advance(24 * time.Hour)
	calls := e.factory.alarms()
	if len(calls) != 7 {
		t.Fatalf("%d deliveries, want 1 + 6 retries", len(calls))
	}
	if calls[6].info.RetryCount != 6 {
		t.Fatalf("last retry count %d", calls[6].info.RetryCount)
	}
	if _, ok := storedAlarm(t, e, id); ok {
		t.Fatal("alarm kept after giving up")
	}
}

func TestAlarmSetDuringHandlerFiresAgain(t *testing.T) {
	e := newTestEnv(t, Options{})
	id := e.ns.IDFromName("loop")
	e.factory.setAlarmHandler(func(_ context.Context, o *fakeObject, info AlarmInfo) error {
		st := o.state
		if _, ok, _ := st.GetAlarm(); ok {
			return errors.New("getAlarm during the handler should report none")
		}
		switch n := len(e.factory.alarms()); n {
		case 1: // as @cloudflare/containers: setAlarm(Date.now())
			if err := st.SetAlarm(e.clock.Now()); err != nil {
				return err
			}
			if at, ok, _ := st.GetAlarm(); !ok || !at.Equal(e.clock.Now()) {
				return errors.New("getAlarm after setAlarm in the handler should report it")
			}
		case 2:
			return st.SetAlarm(e.clock.Now().Add(30 * time.Second))
		}
		return nil
	})
	due := epoch.Add(time.Second)
	setAlarm(t, e, id, due)
	e.clock.Set(due)
	calls := e.factory.alarms()
	if len(calls) != 2 || !calls[1].at.Equal(due) || calls[1].info.IsRetry {
		t.Fatalf("deliveries = %+v, want a second at once", calls)
	}
	e.clock.Advance(30*time.Second - time.Millisecond)
	if len(e.factory.alarms()) != 2 {
		t.Fatal("third delivery early")
	}
	e.clock.Advance(time.Millisecond)
	if calls = e.factory.alarms(); len(calls) != 3 {
		t.Fatalf("%d deliveries, want 3", len(calls))
	}
	if _, ok := storedAlarm(t, e, id); ok {
		t.Fatal("alarm still stored")
	}
}

func TestLongAlarmHandlerKeepsObjectLive(t *testing.T) {
	e := newTestEnv(t, Options{})
	id := e.ns.IDFromName("slow")
	started := make(chan *fakeObject)
	finish := make(chan struct{})
	e.factory.setAlarmHandler(func(_ context.Context, o *fakeObject, _ AlarmInfo) error {
		started <- o
		<-finish // the package sleeps up to 3 minutes in alarm()
		return nil
	})
	setAlarm(t, e, id, epoch.Add(time.Second))
	fired := make(chan struct{})
	go func() { e.clock.Advance(time.Second); close(fired) }()
	obj := <-started
	// Idle timers for the object, if any, would fire in this span.
	done := make(chan struct{})
	go func() {
		e.clock.Advance(10 * time.Minute)
		close(done)
	}()
	<-done
	if obj.isClosed() || e.host.Live() != 1 {
		t.Fatal("object evicted while its alarm handler runs")
	}
	close(finish)
	<-fired
	if _, ok := storedAlarm(t, e, id); ok {
		t.Fatal("alarm still stored after the long handler")
	}
}

func TestDeletedOrMovedAlarm(t *testing.T) {
	e := newTestEnv(t, Options{})
	gone := e.ns.IDFromName("gone")
	later := e.ns.IDFromName("later")
	rolledBack := e.ns.IDFromName("rolledback")

	setAlarm(t, e, gone, epoch.Add(10*time.Second))
	hd := e.get(gone)
	if err := hd.State().DeleteAlarm(); err != nil {
		t.Fatal(err)
	}
	hd.Release()

	setAlarm(t, e, later, epoch.Add(10*time.Second))
	setAlarm(t, e, later, epoch.Add(60*time.Second))

	hd = e.get(rolledBack)
	db := hd.State().Storage
	if err := db.Begin(); err != nil {
		t.Fatal(err)
	}
	if err := hd.State().SetAlarm(epoch.Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := db.Rollback(); err != nil {
		t.Fatal(err)
	}
	hd.State().AlarmChanged()
	hd.Release()

	e.clock.Advance(59 * time.Second)
	if calls := e.factory.alarms(); len(calls) != 0 {
		t.Fatalf("deliveries %+v, want none yet", calls)
	}
	e.clock.Advance(time.Second)
	calls := e.factory.alarms()
	if len(calls) != 1 || calls[0].id != later.String() {
		t.Fatalf("deliveries %+v, want one, to %q", calls, "later")
	}
}

func TestAlarmFiresAfterRestart(t *testing.T) {
	e := newTestEnv(t, Options{})
	id := e.ns.IDFromName("persistent")
	due := epoch.Add(time.Hour)
	setAlarm(t, e, id, due)
	e.closeAll()

	e.clock = newFakeClock()
	e.clock.Set(due.Add(time.Hour)) // the process was down past the due time
	e.open(Options{})
	if len(e.factory.alarms()) != 0 {
		t.Fatal("delivered before any time passed")
	}
	e.clock.Advance(0)
	calls := e.factory.alarms()
	if len(calls) != 1 || !calls[0].info.ScheduledTime.Equal(due) || calls[0].gen != 1 {
		t.Fatalf("deliveries after restart = %+v", calls)
	}
	if _, ok := storedAlarm(t, e, id); ok {
		t.Fatal("alarm still stored")
	}
}

func TestAlarmCutShortByCloseIsDeliveredAgain(t *testing.T) {
	e := newTestEnv(t, Options{})
	id := e.ns.IDFromName("interrupted")
	started := make(chan struct{})
	e.factory.setAlarmHandler(func(ctx context.Context, _ *fakeObject, _ AlarmInfo) error {
		close(started)
		<-ctx.Done()
		return ctx.Err()
	})
	setAlarm(t, e, id, epoch.Add(time.Second))
	fired := make(chan struct{})
	go func() { e.clock.Advance(time.Second); close(fired) }()
	<-started
	e.closeAll()
	<-fired

	e.open(Options{})
	e.clock.Advance(0)
	if calls := e.factory.alarms(); len(calls) != 1 {
		t.Fatalf("deliveries after restart = %+v, want the interrupted alarm again", calls)
	}
}

func TestAlarmOfUnservedNamespaceIsLeftAlone(t *testing.T) {
	e := newTestEnv(t, Options{})
	id := e.ns.IDFromName("orphan")
	setAlarm(t, e, id, epoch.Add(time.Second))
	e.closeAll()

	other := mustNamespace(t, e.secret, "Other")
	e.open(Options{Namespaces: []*Namespace{other}})
	e.clock.Advance(time.Hour)
	if len(e.factory.alarms()) != 0 {
		t.Fatal("delivered an alarm of a namespace the host does not serve")
	}
	if _, ok := storedAlarm(t, e, id); !ok {
		t.Fatal("alarm of an unserved namespace was deleted")
	}
}
