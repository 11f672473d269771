package container_test

import (
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/container"
)

// sigterm sends SIGTERM to o's container through the Manager, as the
// @cloudflare/containers package's stop() (sleepAfter) does.
func sigterm(t *testing.T, m *container.Manager, o container.Owner) {
	t.Helper()
	if err := m.Signal(testCtx(t), o, int(syscall.SIGTERM)); err != nil {
		t.Fatalf("Signal SIGTERM to %s: %v", o, err)
	}
}

// wantKilled fails t unless Monitor reports o's container killed by SIGKILL
// after the Manager signalled it.
func wantKilled(t *testing.T, m *container.Manager, o container.Owner) {
	t.Helper()
	err := monitor(t, m, o)
	const want = "runtime signalled the container to exit: 137"
	if err == nil || err.Error() != want {
		t.Fatalf("Monitor = %v, want exactly %q", err, want)
	}
	var exit *container.ExitError
	if !errors.As(err, &exit) || exit.Code != 137 || !exit.Signalled {
		t.Fatalf("Monitor error %#v, want an *ExitError with code 137, signalled", err)
	}
}

// TestManagerSignalTermKillsAfterGrace: a SIGTERM sent with Signal ends in
// SIGKILL once the stop grace has passed (not before) for a container that
// ignores it; a second SIGTERM keeps the first deadline.
func TestManagerSignalTermKillsAfterGrace(t *testing.T) {
	e := newFakeEnv(t) // StopGrace 3s
	m := e.manager(e.class(nil))
	o := owner("ignores-term")
	startServing(t, m, o, container.StartOptions{Env: map[string]string{"IGNORE_TERM": "1"}})
	base := e.clock.Pending()

	// Other signals arm nothing.
	if err := m.Signal(testCtx(t), o, int(syscall.SIGUSR1)); err != nil {
		t.Fatal(err)
	}
	if n := e.clock.Pending(); n != base {
		t.Fatalf("%d timers armed after SIGUSR1, want %d", n, base)
	}

	sigterm(t, m, o)
	if n := e.clock.Pending(); n != base+1 {
		t.Fatalf("%d timers armed after SIGTERM, want %d", n, base+1)
	}
	e.clock.Advance(time.Second)
	e.clock.Settle()
	sigterm(t, m, o) // does not move the deadline to 4s
	if n := e.clock.Pending(); n != base+1 {
		t.Fatalf("%d timers armed after a second SIGTERM, want %d", n, base+1)
	}
	echo(t, m, o) // it ignored both and still serves

	e.clock.Advance(2*time.Second - time.Nanosecond)
	e.clock.Settle()
	if !m.Running(o) {
		t.Fatal("killed before the grace had passed")
	}
	if strings.Contains(e.logs.String(), "killed a container") {
		t.Fatal("a kill was logged before the grace had passed")
	}
	e.clock.Advance(time.Nanosecond)
	e.clock.Settle()
	wantKilled(t, m, o)
	logs := e.logs.String()
	if !strings.Contains(logs, "killed a container that ignored SIGTERM for its stop grace") ||
		!strings.Contains(logs, "owner="+o.String()) || !strings.Contains(logs, "grace=3s") {
		t.Fatalf("the kill was not logged with the owner and the grace:\n%s", logs)
	}
	if n := e.clock.Pending(); n != base {
		t.Fatalf("%d timers armed after the kill, want %d", n, base)
	}
}

// TestManagerSignalTermKillSpares: the kill a SIGTERM armed never reaches a
// container that exited on it, was destroyed, or a later run of the owner.
func TestManagerSignalTermKillSpares(t *testing.T) {
	e := newFakeEnv(t) // StopGrace 3s
	m := e.manager(e.class(nil))
	stubborn := map[string]string{"IGNORE_TERM": "1"}

	t.Run("exits on SIGTERM, then a restart", func(t *testing.T) {
		o := owner("obeys-term")
		startServing(t, m, o, container.StartOptions{})
		base := e.clock.Pending()
		sigterm(t, m, o)
		if err := monitor(t, m, o); err != nil {
			t.Fatalf("Monitor after SIGTERM = %v, want a clean exit", err)
		}
		e.clock.Settle()
		if n := e.clock.Pending(); n != base {
			t.Errorf("%d timers armed after the container exited, want %d (the kill disarmed)", n, base)
		}
		// The next run ignores SIGTERM and was never sent one: the old
		// run's grace passing must not kill it.
		startServing(t, m, o, container.StartOptions{Env: stubborn})
		e.clock.Advance(time.Hour)
		e.clock.Settle()
		if !m.Running(o) {
			t.Fatalf("the restarted container was killed: %v", monitor(t, m, o))
		}
		echo(t, m, o)
	})

	t.Run("exits by itself while the kill is armed, then a restart", func(t *testing.T) {
		o := owner("exits-while-armed")
		startServing(t, m, o, container.StartOptions{Env: stubborn})
		base := e.clock.Pending()
		sigterm(t, m, o)
		e.clock.Advance(time.Second)
		e.clock.Settle()
		get(t, m, o, "/exit?code=0")
		if err := monitor(t, m, o); err != nil {
			t.Fatalf("Monitor after exit 0 = %v", err)
		}
		e.clock.Settle()
		if n := e.clock.Pending(); n != base {
			t.Errorf("%d timers armed after the exit, want %d (the kill disarmed)", n, base)
		}
		startServing(t, m, o, container.StartOptions{Env: stubborn})
		e.clock.Advance(2 * time.Second) // the old run's deadline
		e.clock.Settle()
		e.clock.Advance(time.Hour)
		e.clock.Settle()
		if !m.Running(o) {
			t.Fatalf("the restarted container was killed by the old run's timer: %v", monitor(t, m, o))
		}
		echo(t, m, o)

		// The new run's own SIGTERM arms its own kill.
		sigterm(t, m, o)
		e.clock.Advance(3 * time.Second)
		e.clock.Settle()
		wantKilled(t, m, o)
	})

	t.Run("destroyed while the kill is armed", func(t *testing.T) {
		o := owner("destroyed-while-armed")
		startServing(t, m, o, container.StartOptions{Env: stubborn})
		base := e.clock.Pending()
		sigterm(t, m, o)
		reason := errors.New("gone for good")
		if err := m.Destroy(testCtx(t), o, reason); err != nil {
			t.Fatal(err)
		}
		if n := e.clock.Pending(); n != base {
			t.Errorf("%d timers armed after Destroy, want %d", n, base)
		}
		startServing(t, m, o, container.StartOptions{Env: stubborn})
		e.clock.Advance(time.Hour)
		e.clock.Settle()
		if !m.Running(o) {
			t.Fatalf("the container started after Destroy was killed: %v", monitor(t, m, o))
		}
	})
}
