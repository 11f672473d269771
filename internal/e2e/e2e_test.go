// Package e2e runs the built berth binary the way a user does.
package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/container"
	"github.com/berth-dev/berth/internal/container/docker"
	"github.com/berth-dev/berth/internal/testutil"
)

var berthBin struct {
	once sync.Once
	path string
	err  error
}

// buildBerth compiles cmd/berth once per test process.
func buildBerth(t *testing.T) string {
	t.Helper()
	berthBin.once.Do(func() {
		root, err := testutil.ModuleRoot()
		if err != nil {
			berthBin.err = err
			return
		}
		dir, err := os.MkdirTemp("", "berth-e2e-")
		if err != nil {
			berthBin.err = err
			return
		}
		berthBin.path = filepath.Join(dir, "berth")
		cmd := exec.Command("go", "build", "-o", berthBin.path, "./cmd/berth")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			berthBin.err = err
			t.Logf("%s", out)
		}
	})
	if berthBin.err != nil {
		t.Fatalf("build berth: %v", berthBin.err)
	}
	return berthBin.path
}

// berthProcess is a running berth command whose stdout is scanned for the
// Ready line.
type berthProcess struct {
	cmd    *exec.Cmd
	url    string
	output *strings.Builder
	mu     sync.Mutex
	done   chan error
}

var readyLine = regexp.MustCompile(`Ready on (http://\S+)`)

func startBerth(t *testing.T, dir string, args ...string) *berthProcess {
	t.Helper()
	cmd := exec.Command(buildBerth(t), args...)
	cmd.Dir = dir
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &berthProcess{cmd: cmd, output: &strings.Builder{}, done: make(chan error, 1)}
	cmd.Stderr = writerFunc(func(b []byte) (int, error) { p.log(string(b)); return len(b), nil })
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.log(sc.Text() + "\n")
			if m := readyLine.FindStringSubmatch(sc.Text()); m != nil {
				ready <- m[1]
			}
		}
		p.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
		}
		if t.Failed() {
			t.Logf("berth output:\n%s", p.String())
		}
	})
	select {
	case p.url = <-ready:
	case err := <-p.done:
		t.Fatalf("berth %v exited before ready: %v\n%s", args, err, p.String())
	case <-time.After(3 * time.Minute):
		t.Fatalf("berth %v not ready after 3 minutes:\n%s", args, p.String())
	}
	return p
}

func (p *berthProcess) log(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.output.WriteString(s)
}

func (p *berthProcess) String() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.output.String()
}

// stop sends sig and waits for a clean exit.
func (p *berthProcess) stop(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("berth exited with %v after %v\n%s", err, sig, p.String())
		}
	case <-time.After(time.Minute):
		t.Fatalf("berth did not exit within a minute of %v", sig)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func randomLabel(t *testing.T) string {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// TestContainerRun serves examples/hello-container with `berth container
// run`: build the image, start its container, serve it on loopback, and
// remove the container on SIGTERM.
func TestContainerRun(t *testing.T) {
	testutil.RequireDocker(t)
	root, err := testutil.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	// Build the example into a copy, so the source tree stays clean.
	dir := filepath.Join(t.TempDir(), "hello-container")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	dockerfile, err := os.ReadFile(filepath.Join(root, "examples/hello-container/Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), dockerfile, 0o644); err != nil {
		t.Fatal(err)
	}
	build := exec.Command("go", "build", "-o", filepath.Join(dir, "hello"), "./examples/hello-container")
	build.Dir, build.Env = root, append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build example: %v\n%s", err, out)
	}

	rt, err := docker.New(docker.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	run := randomLabel(t)
	tag, err := container.ContentTag("berth-dev/hello-container", container.BuildSpec{ContextDir: dir, Dockerfile: filepath.Join(dir, "Dockerfile")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		list, _ := rt.List(ctx, map[string]string{"berth.e2e": run})
		for _, in := range list {
			_ = rt.Destroy(ctx, in.ID)
		}
		if err := rt.RemoveImage(ctx, tag); err != nil {
			t.Errorf("remove image %s: %v", tag, err)
		}
	})

	p := startBerth(t, dir, "container", "run", "--listen", "127.0.0.1:0",
		"--label", container.LabelTest+"=1", "--label", "berth.e2e="+run, "./Dockerfile")
	status, body := get(t, p.url+"/some/path")
	if status != http.StatusOK || !strings.Contains(body, "request 1, GET /some/path") {
		t.Fatalf("GET = %d %q", status, body)
	}
	if _, body = get(t, p.url+"/"); !strings.Contains(body, "request 2") {
		t.Fatalf("second GET = %q: want the same container answering", body)
	}

	list, err := rt.List(context.Background(), map[string]string{"berth.e2e": run})
	if err != nil || len(list) != 1 || !list[0].Running {
		t.Fatalf("List = %+v, %v; want one running container", list, err)
	}
	p.stop(t, syscall.SIGTERM)
	list, err = rt.List(context.Background(), map[string]string{"berth.e2e": run})
	if err != nil || len(list) != 0 {
		t.Fatalf("after SIGTERM List = %+v, %v; want the container removed", list, err)
	}
}
