package testutil

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestBuildTestAppRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles a binary")
	}
	bin := BuildTestApp(t)
	if again := BuildTestApp(t); again != bin {
		t.Fatalf("second BuildTestApp = %q, want the cached %q", again, bin)
	}
	out, err := exec.Command(bin, "echo", "hello", "world").Output()
	if err != nil {
		t.Fatalf("run %s: %v", bin, err)
	}
	if string(out) != "hello world\n" {
		t.Fatalf("testapp echo printed %q, want %q", out, "hello world\n")
	}
}

func TestPingDockerUnreachable(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "no.sock")
	err := pingDocker("unix://"+sock, 200*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), sock) {
		t.Fatalf("ping of a missing socket = %v, want an error naming %s", err, sock)
	}
	if err := pingDocker("ssh://somewhere", time.Second); err == nil || !strings.Contains(err.Error(), "ssh") {
		t.Fatalf("ping over ssh = %v, want an unsupported-scheme error", err)
	}
}

func TestWaitFor(t *testing.T) {
	calls := 0
	err := WaitFor(context.Background(), time.Millisecond, func() (bool, error) {
		calls++
		return calls == 3, nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("WaitFor = %v after %d calls, want nil after 3", err, calls)
	}
	boom := errors.New("boom")
	if err := WaitFor(context.Background(), time.Millisecond, func() (bool, error) { return false, boom }); !errors.Is(err, boom) {
		t.Fatalf("WaitFor = %v, want fn's error", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := WaitFor(ctx, time.Hour, func() (bool, error) { return false, nil }); !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitFor with an ended ctx = %v, want context.Canceled", err)
	}
}
