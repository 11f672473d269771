// Package testutil holds helpers shared by tests: gating Docker-backed tests,
// building the static testapp binary, and waiting for a condition.
package testutil

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// RequireDocker skips t unless a Docker engine answers a ping within 2 s at
// $DOCKER_HOST (unix:// or tcp://) or /var/run/docker.sock. When CI=true an
// unreachable engine fails t instead, so that CI cannot pass by skipping.
// Under -short it always skips.
func RequireDocker(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("skipping Docker-backed test in -short mode")
	}
	err := pingDocker(os.Getenv("DOCKER_HOST"), 2*time.Second)
	if err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("docker engine required in CI: %v", err)
	}
	t.Skipf("no docker engine: %v", err)
}

func pingDocker(host string, timeout time.Duration) error {
	if host == "" {
		host = "unix:///var/run/docker.sock"
	}
	u, err := url.Parse(host)
	if err != nil {
		return fmt.Errorf("DOCKER_HOST %q: %w", host, err)
	}
	transport := &http.Transport{}
	base := ""
	switch u.Scheme {
	case "unix":
		sock := u.Path
		transport.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}
		base = "http://docker"
	case "tcp", "http":
		base = "http://" + u.Host
	default:
		return fmt.Errorf("DOCKER_HOST %q: scheme %q not supported here: want unix:// or tcp://", host, u.Scheme)
	}
	defer transport.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/_ping", nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: transport}).Do(req)
	if err != nil {
		return fmt.Errorf("ping %s: %w", host, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("ping %s: %s", host, resp.Status)
	}
	return nil
}

// staticBinary is a static program of the module that tests build once per
// test process.
type staticBinary struct {
	pkg, name string
	once      sync.Once
	path      string
	err       error
}

func (b *staticBinary) get(t testing.TB) string {
	t.Helper()
	b.once.Do(func() { b.path, b.err = buildStatic(b.pkg, b.name) })
	if b.err != nil {
		t.Fatalf("build %s: %v", b.name, b.err)
	}
	return b.path
}

var testApp = &staticBinary{pkg: "./internal/container/testapp/cmd/testapp", name: "testapp"}

// BuildTestApp compiles the static testapp (internal/container/testapp/cmd/
// testapp, CGO_ENABLED=0) once per test process and returns the binary's
// path.
func BuildTestApp(t testing.TB) string {
	t.Helper()
	return testApp.get(t)
}

// buildStatic builds the main package pkg of the module under test as a
// static Linux binary named name. Every process builds into the same
// per-user directory and renames the result into place, so parallel test
// processes share one file (the go build cache keeps the rebuild cheap), a
// process reading the old binary keeps its file, and nothing piles up in
// /tmp.
func buildStatic(pkg, name string) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("berth-testapp-%d", os.Getuid()))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(dir, name+"-*.tmp")
	if err != nil {
		return "", err
	}
	tmp.Close()
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", tmp.Name(), pkg)
	cmd.Dir = root
	// GOFLAGS is cleared so that a -race or -cover meant for the tests does
	// not reach this static build.
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOFLAGS=")
	if output, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("%v: %w\n%s", cmd.Args, err, output)
	}
	out := filepath.Join(dir, name)
	if err := os.Rename(tmp.Name(), out); err != nil {
		return "", err
	}
	return out, nil
}

// ModuleRoot returns the directory holding the go.mod of the module under
// test, as `go env GOMOD` reports it from the current directory.
func ModuleRoot() (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("go", "env", "GOMOD")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go env GOMOD: %w: %s", err, stderr.String())
	}
	gomod := strings.TrimSpace(stdout.String())
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("go env GOMOD: not inside a module")
	}
	return filepath.Dir(gomod), nil
}

// WaitFor calls fn at once and then every interval until it reports done,
// returns an error, or ctx ends. It returns nil once done, fn's error, or
// an error wrapping ctx's.
func WaitFor(ctx context.Context, interval time.Duration, fn func() (done bool, err error)) error {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		done, err := fn()
		if err != nil {
			return err
		}
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait: %w", ctx.Err())
		case <-ticker.C:
		}
	}
}
