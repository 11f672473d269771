package container_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/clock/clocktest"
	"github.com/berth-dev/berth/internal/container"
	"github.com/berth-dev/berth/internal/container/testapp"
	"github.com/berth-dev/berth/internal/testutil"
)

// newFakeClock is the manual clock of the Manager tests.
func newFakeClock() *clocktest.Manual {
	return clocktest.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
}

// waitArmed waits until at least n timers are armed: a goroutine under test
// arms one when it is about to wait on the clock.
func waitArmed(t testing.TB, c *clocktest.Manual, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for c.Pending() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d timers armed after 10 s, want %d", c.Pending(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// objectID returns a 64-hex Durable Object id derived from name.
func objectID(name string) string {
	sum := sha256.Sum256([]byte(name))
	return hex.EncodeToString(sum[:])
}

// testCtx is a context for one call that must not hang the test run.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

type syncBuffer = testutil.SyncBuffer

// testLogger logs to buf and to t.
func testLogger(t testing.TB, buf *syncBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(io.MultiWriter(buf, tLogWriter{t}), nil))
}

type tLogWriter struct{ t testing.TB }

func (w tLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// imageContext writes a build context with the testapp binary (or a
// placeholder for the fake) at bin and a Dockerfile.
func imageContext(t testing.TB, bin []byte, dockerfile string) string {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "testapp"), bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// managerImageDockerfile is the image of every Manager test: testapp as
// ENTRYPOINT, so StartOptions.Entrypoint (which replaces CMD) becomes its
// arguments.
const managerImageDockerfile = `FROM scratch
ENV GREETING=from-image CLASS_VAR=from-image
LABEL berth.test=1
COPY testapp /testapp
EXPOSE 8080
ENTRYPOINT ["/testapp"]
`

// waitListening dials through the Manager until port accepts: Start does not
// wait for ports, so this waits for the container's boot, not for time.
func waitListening(t testing.TB, m *container.Manager, owner container.Owner, port int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := m.Dial(testCtx(t), owner, port)
		if err == nil {
			conn.Close()
			return
		}
		if !errors.Is(err, container.ErrPortNotListening) {
			t.Fatalf("Dial %s port %d while waiting for it to listen: %v", owner, port, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("port %d of %s did not listen in 30 s: %v", port, owner, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// get does GET path on port 8080 of owner's container over Manager.Dial and
// closes the connection before returning, so the Manager's hold is gone.
func get(t testing.TB, m *container.Manager, owner container.Owner, path string) string {
	t.Helper()
	body, err := tryGet(testCtx(t), m, owner, path)
	if err != nil {
		t.Fatalf("GET %s from %s: %v", path, owner, err)
	}
	return body
}

func tryGet(ctx context.Context, m *container.Manager, owner container.Owner, path string) (string, error) {
	conn, err := m.Dial(ctx, owner, 8080)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	status, body, err := testutil.GetOverConn(ctx, conn, path)
	if err != nil {
		return "", err
	}
	if status != http.StatusOK {
		return "", fmt.Errorf("%d %s: %s", status, http.StatusText(status), body)
	}
	return body, nil
}

func echo(t testing.TB, m *container.Manager, owner container.Owner) testapp.EchoReply {
	t.Helper()
	var reply testapp.EchoReply
	body := get(t, m, owner, "/echo")
	if err := json.Unmarshal([]byte(body), &reply); err != nil {
		t.Fatalf("/echo answered %q: %v", body, err)
	}
	return reply
}

// monitor calls Monitor with a bound, so that a container that never ends
// fails the test instead of hanging it.
func monitor(t testing.TB, m *container.Manager, owner container.Owner) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := m.Monitor(ctx, owner)
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Monitor of %s did not return in 30 s", owner)
	}
	return err
}

// wantErrText fails t unless err wraps target and its text contains text.
func wantErrText(t testing.TB, what string, err, target error, text string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error, want one wrapping %q", what, target)
	}
	if target != nil && !errors.Is(err, target) {
		t.Fatalf("%s: got %q, want an error wrapping %q", what, err, target)
	}
	if !strings.Contains(err.Error(), text) {
		t.Fatalf("%s: error %q does not contain %q", what, err, text)
	}
}
