package dev

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/container"
	"github.com/berth-dev/berth/internal/container/docker"
	"github.com/berth-dev/berth/internal/testutil"
)

// containerProject copies testdata/containers-npm and the static testapp
// into a temp dir.
func containerProject(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join("testdata", "containers-npm")
	if err := testutil.CopyTree(src, dir); err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(testutil.BuildTestApp(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "testapp"), bin, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// npmCI installs the project's pinned packages; it skips the test without
// npm unless CI=true.
func npmCI(t *testing.T, dir string) {
	t.Helper()
	if _, err := exec.LookPath("npm"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("npm is required in CI")
		}
		t.Skip("npm is not installed")
	}
	cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci: %v\n%s", err, out)
	}
}

// testDocker is the Docker runtime of a test; everything the test leaves
// labelled berth.test=1 under app is removed when it ends, failed or not.
func testDocker(t *testing.T, app string) *docker.Runtime {
	t.Helper()
	testutil.RequireDocker(t)
	rt, err := docker.New(docker.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		list, err := rt.List(ctx, map[string]string{container.LabelTest: "1", container.LabelApp: app})
		if err != nil {
			t.Errorf("list test containers: %v", err)
		}
		for _, inst := range list {
			if err := rt.Destroy(ctx, inst.ID); err != nil {
				t.Errorf("remove container %s: %v", inst.Name, err)
			}
		}
		for _, repo := range []string{"berth-dev/" + app + "-echo", "berth-dev/" + app + "-broken"} {
			refs, _ := exec.CommandContext(ctx, "docker", "images", "--format", "{{.Repository}}:{{.Tag}}", "--filter", "label=berth.test=1", repo).Output()
			for _, ref := range strings.Fields(string(refs)) {
				if err := rt.RemoveImage(ctx, ref); err != nil {
					t.Errorf("remove image %s: %v", ref, err)
				}
			}
		}
		rt.Close()
	})
	return rt
}

func runningContainers(t *testing.T, rt *docker.Runtime, app string) []container.Instance {
	t.Helper()
	list, err := rt.List(context.Background(), map[string]string{container.LabelTest: "1", container.LabelApp: app})
	if err != nil {
		t.Fatal(err)
	}
	var out []container.Instance
	for _, inst := range list {
		if inst.Running {
			out = append(out, inst)
		}
	}
	return out
}

func getStatus(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

type hookEvents struct {
	Starts, Stops, Errors int
	ExitCodes             []int
	ErrorTexts            []string
}

func TestContainerPackageNPM(t *testing.T) {
	dir := containerProject(t)
	npmCI(t, dir)
	testContainerClass(t, dir, "", "containers-npm")
}

// Apps pinned to an older release of the package run too (0.1.1, the
// lock file in older/).
func TestContainerPackageNPMOlder(t *testing.T) {
	dir := containerProject(t)
	for _, name := range []string{"package.json", "package-lock.json"} {
		data, err := os.ReadFile(filepath.Join(dir, "older", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	npmCI(t, dir)
	testContainerClass(t, dir, "", "containers-npm")
}

func TestContainerPackageBuiltin(t *testing.T) {
	testContainerClass(t, containerProject(t), "builtin.jsonc", "containers-builtin")
}

// testContainerClass drives the app of testdata/containers-npm: start on
// the first request, one start for concurrent first requests, sleepAfter
// with its hooks, a restart, a crash, and a container that never comes up.
func testContainerClass(t *testing.T, dir, configPath, app string) {
	rt := testDocker(t, app)
	logs := &syncBuffer{}
	url, stop := runDev(t, Options{Dir: dir, ConfigPath: configPath,
		Logger:          slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		ContainerLabels: map[string]string{container.LabelTest: "1"}})
	defer func() {
		if t.Failed() {
			t.Logf("log:\n%s", logs)
		}
	}()

	// The first request starts the container and waits for its port.
	code, body := getStatus(t, url+"/c/a/echo")
	if code != 200 || !strings.Contains(body, `"FROM_CLASS":"yes"`) {
		t.Fatalf("first request: %d %s", code, body)
	}
	// Concurrent first requests of another object start it once.
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for range 8 {
		wg.Go(func() {
			if code, body := getStatus(t, url+"/c/b/echo"); code != 200 {
				errs <- fmt.Sprintf("%d %s", code, body)
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Errorf("concurrent first request: %s", e)
	}
	// (@cloudflare/containers runs onStart once per request that waited
	// for the start, so the runtime's starts are what is counted.)
	if n := strings.Count(logs.String(), `msg="container started"`); n != 2 {
		t.Errorf("%d container starts for objects a and b, want 2", n)
	}
	if n := len(runningContainers(t, rt, app)); n != 2 {
		t.Errorf("%d containers run, want 2", n)
	}
	var ev hookEvents
	// switchPort and getRandom route too.
	if code, body := getStatus(t, url+"/port/a/echo"); code != 200 || !strings.Contains(body, `"path":"/echo"`) {
		t.Errorf("switchPort: %d %s", code, body)
	}
	if code, _ := getStatus(t, url+"/lb/x/echo"); code != 200 {
		t.Errorf("getRandom: %d", code)
	}

	// sleepAfter (3 s): idle containers stop and onStop fires.
	waitFor(t, 30*time.Second, "object a's container to sleep and onStop to fire", func() bool {
		var ev hookEvents
		call(t, "GET", url+"/events/a", &ev)
		return ev.Stops >= 1
	})
	var running bool
	if call(t, "GET", url+"/running/a", &running); running {
		t.Errorf("object a still running after sleepAfter")
	}
	// The next request starts it again.
	if code, body := getStatus(t, url+"/c/a/echo"); code != 200 {
		t.Fatalf("request after sleep: %d %s", code, body)
	}
	call(t, "GET", url+"/events/a", &ev)
	if ev.Starts != 2 {
		t.Errorf("object a: onStart ran %d times after a sleep and a request, want 2", ev.Starts)
	}

	// A crash (exit 3): onStop sees the code, the next request restarts.
	getStatus(t, url+"/c/a/exit?code=3")
	waitFor(t, 30*time.Second, "onStop with exit code 3", func() bool {
		var ev hookEvents
		call(t, "GET", url+"/events/a", &ev)
		for _, c := range ev.ExitCodes {
			if c == 3 {
				return true
			}
		}
		return false
	})
	if code, body := getStatus(t, url+"/c/a/echo"); code != 200 {
		t.Fatalf("request after the crash: %d %s", code, body)
	}
	call(t, "GET", url+"/events/a", &ev)
	if ev.Starts != 3 {
		t.Errorf("object a: %d starts after the crash and a request, want 3", ev.Starts)
	}

	// A container that exits before it listens: onError, and an error
	// response.
	if code, _ := getStatus(t, url+"/broken/z/echo"); code < 500 {
		t.Errorf("broken container answered %d, want 5xx", code)
	}
	var bev hookEvents
	call(t, "GET", url+"/events/z?class=Broken", &bev)
	if bev.Errors == 0 || bev.Starts != 0 {
		t.Errorf("broken container hooks: %+v, want onError and no onStart", bev)
	}

	// berth dev's exit removes its containers.
	stop()
	if n := len(runningContainers(t, rt, app)); n != 0 {
		t.Errorf("%d containers still run after berth dev ended", n)
	}
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestImageRef(t *testing.T) {
	const repo = "berth-dev/app-box"
	for _, c := range []struct {
		name       string
		refs       []string
		configured string
		want       string
	}{
		{"own tag before another app's", []string{"berth-dev/other-box:c0ffee", repo + ":c0ffee"}, "./Dockerfile", repo + ":c0ffee"},
		{"another app's tag only", []string{"berth-dev/other-box:c0ffee"}, "./Dockerfile", "sha256:1"},
		{"the configured reference", []string{"registry.local/x:1", "example/y:2"}, "example/y:2", "example/y:2"},
		{"the configured reference without a tag", []string{"example/y:latest"}, "example/y", "example/y:latest"},
		{"no tags", nil, "./Dockerfile", "sha256:1"},
	} {
		img := container.Image{ID: "sha256:1", Refs: c.refs}
		if got := imageRef(img, repo, c.configured); got != c.want {
			t.Errorf("%s: imageRef = %q, want %q", c.name, got, c.want)
		}
	}
}
