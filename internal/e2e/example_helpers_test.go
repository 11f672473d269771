package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/berth-dev/berth/internal/config"
	"github.com/berth-dev/berth/internal/container"
	"github.com/berth-dev/berth/internal/container/docker"
	"github.com/berth-dev/berth/internal/testutil"
)

// labelRun marks the images (and, through them, the containers) of one
// example run, so that cleanup finds exactly what the run made.
const labelRun = "berth.e2e"

// exampleApp is a copy of one project under examples/, renamed so that its
// containers (labelled berth.app=<name> by berth dev) are this run's alone.
type exampleApp struct {
	example string
	name    string // the wrangler name written into the copy
	run     string // the value of labelRun on its images
	dir     string
	rt      *docker.Runtime
	api     *client.Client
}

// copyExample copies examples/<example> into a temporary directory, gives
// it a unique app name, labels the images its Dockerfile builds with
// berth.test=1 and labelRun, compiles its container program there, and
// registers a cleanup that removes every container and image of the run,
// whether or not the test passed.
func copyExample(t *testing.T, example string) *exampleApp {
	t.Helper()
	testutil.RequireDocker(t)
	root, err := testutil.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	run := randomLabel(t)
	a := &exampleApp{
		example: example,
		name:    "e2e-" + example + "-" + run,
		run:     run,
		dir:     filepath.Join(t.TempDir(), example),
	}
	src := filepath.Join(root, "examples", example)
	if err := testutil.CopyTree(src, a.dir, filepath.Join("container", "app")); err != nil {
		t.Fatalf("copy %s: %v", src, err)
	}
	a.rename(t)
	appendFile(t, filepath.Join(a.dir, "Dockerfile"), fmt.Sprintf("\nLABEL %s=\"1\" %s=%q\n", container.LabelTest, labelRun, run))

	build := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(a.dir, "container", "app"), "./examples/"+example+"/container")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOFLAGS=")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the container program of %s: %v\n%s", example, err, out)
	}

	if a.rt, err = docker.New(docker.Options{}); err != nil {
		t.Fatal(err)
	}
	if a.api, err = client.New(client.FromEnv); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		a.removeAll(t)
		a.rt.Close()
		a.api.Close()
	})
	return a
}

var topLevelName = regexp.MustCompile(`"name":\s*"[^"]*"`)

// rename writes a.name over the config's top-level name (the first "name"
// key of every example's wrangler.jsonc) and checks that it took.
func (a *exampleApp) rename(t *testing.T) {
	t.Helper()
	path := filepath.Join(a.dir, "wrangler.jsonc")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	loc := topLevelName.FindIndex(raw)
	if loc == nil {
		t.Fatalf("%s: no \"name\" key", path)
	}
	out := append(append(append([]byte{}, raw[:loc[0]]...), fmt.Sprintf("%q: %q", "name", a.name)...), raw[loc[1]:]...)
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Name != a.name {
		t.Fatalf("%s: name is %q after the rewrite, want %q (the first \"name\" key must be the top-level one)", path, cfg.Name, a.name)
	}
}

// start runs `berth dev` on the copy, on a free loopback port.
func (a *exampleApp) start(t *testing.T) *berthProcess {
	t.Helper()
	return startBerth(t, a.dir, "dev", a.dir, "--port", "0")
}

// containers lists the app's containers, running or not.
func (a *exampleApp) containers(t *testing.T) []container.Instance {
	t.Helper()
	list, err := a.rt.List(context.Background(), map[string]string{container.LabelApp: a.name})
	if err != nil {
		t.Fatalf("list containers of %s: %v", a.name, err)
	}
	return list
}

func running(list []container.Instance) []container.Instance {
	var out []container.Instance
	for _, in := range list {
		if in.Running {
			out = append(out, in)
		}
	}
	return out
}

// stopAndCheckGone stops berth with SIGTERM and checks that no container of
// the app is left, running or not, and that the example's code (and the
// Container class under it) left no promise rejection unhandled.
func (a *exampleApp) stopAndCheckGone(t *testing.T, p *berthProcess) {
	t.Helper()
	start := time.Now()
	p.stop(t, syscall.SIGTERM)
	t.Logf("berth exited %s after SIGTERM", time.Since(start).Round(time.Millisecond))
	if left := a.containers(t); len(left) != 0 {
		t.Errorf("after SIGTERM %d container(s) of %s are left: %+v", len(left), a.name, left)
	}
	var rejections []string
	for line := range strings.Lines(p.String()) {
		if strings.Contains(line, "unhandled promise rejection") {
			rejections = append(rejections, line)
		}
	}
	if len(rejections) > 0 {
		t.Errorf("berth logged %d unhandled promise rejection(s), the first:\n%s", len(rejections), rejections[0])
	}
}

// removeAll removes the run's containers and images.
func (a *exampleApp) removeAll(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	list, err := a.rt.List(ctx, map[string]string{container.LabelApp: a.name})
	if err != nil {
		t.Errorf("cleanup: list containers: %v", err)
	}
	for _, in := range list {
		if err := a.rt.Destroy(ctx, in.ID); err != nil {
			t.Errorf("cleanup: remove container %s: %v", in.ID, err)
		}
	}
	images, err := a.api.ImageList(ctx, client.ImageListOptions{Filters: make(client.Filters).Add("label", labelRun+"="+a.run)})
	if err != nil {
		t.Errorf("cleanup: list images: %v", err)
		return
	}
	// An image built on another of the run's (a Dockerfile that grew a
	// step) is its child, and the engine removes a parent only after its
	// children: remove in passes until a pass removes nothing.
	left := images.Items
	for len(left) > 0 {
		var failed []error
		kept := left[:0:0]
		for _, img := range left {
			if _, err := a.api.ImageRemove(ctx, img.ID, client.ImageRemoveOptions{Force: true, PruneChildren: true}); err != nil {
				if cerrdefs.IsNotFound(err) {
					continue // removed with a child
				}
				kept = append(kept, img)
				failed = append(failed, fmt.Errorf("remove image %s %v: %w", img.ID, img.RepoTags, err))
			}
		}
		if len(kept) == len(left) {
			for _, err := range failed {
				t.Errorf("cleanup: %v", err)
			}
			return
		}
		left = kept
	}
}

// imageRef returns the run's image built by berth dev: there must be one.
func (a *exampleApp) imageRef(t *testing.T) string {
	t.Helper()
	images, err := a.api.ImageList(context.Background(), client.ImageListOptions{Filters: make(client.Filters).Add("label", labelRun+"="+a.run)})
	if err != nil {
		t.Fatal(err)
	}
	if len(images.Items) != 1 {
		t.Fatalf("want one image labelled %s=%s, found %d", labelRun, a.run, len(images.Items))
	}
	img := images.Items[0]
	if len(img.RepoTags) > 0 {
		return img.RepoTags[0]
	}
	return img.ID
}

func appendFile(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// httpClient waits long enough for a first request, which may build the
// image and start a container.
var httpClient = &http.Client{Timeout: 2 * time.Minute}

// call sends one request and returns the status and body.
func call(t *testing.T, method, url, contentType string, body []byte) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return resp.StatusCode, out
}

// callJSON sends one request, wants want as the status and decodes the JSON
// answer into v.
func callJSON(t *testing.T, method, url string, body []byte, want int, v any) {
	t.Helper()
	status, out := call(t, method, url, "", body)
	if status != want {
		t.Fatalf("%s %s = %d %q, want %d", method, url, status, out, want)
	}
	if v == nil {
		return
	}
	if err := json.Unmarshal(out, v); err != nil {
		t.Fatalf("%s %s = %d %q: not the JSON expected: %v", method, url, status, out, err)
	}
}

// eventually polls cond every 50 ms for up to d.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
