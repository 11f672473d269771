package e2e

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/berth-dev/berth/internal/container"
)

// statelessAnswer is what the stateless example's container answers.
type statelessAnswer struct {
	Instance string `json:"instance"`
	Boot     string `json:"boot"`
	Served   int    `json:"served"`
	Path     string `json:"path"`
}

// addStatelessRoutes gives a copy of examples/stateless two more routes:
// /activation/<name> says whether ctx.container.running was true when
// <name>'s object was activated, /id/<name> is the object's id.
func addStatelessRoutes(t *testing.T, app *exampleApp) {
	t.Helper()
	src := filepath.Join(app.dir, "src", "index.ts")
	editFile(t, src, "  enableInternet = false;\n", `  enableInternet = false;
  // Whether the container ran when this activation began.
  runningAtActivation: boolean = this.ctx.container.running;
  activation(): { running: boolean } {
    return { running: this.runningAtActivation };
  }
`)
	editFile(t, src, "    const url = new URL(request.url);\n", `    const url = new URL(request.url);
    const activation = url.pathname.match(/^\/activation\/([^/]+)$/);
    if (activation) return Response.json(await getContainer(env.BACKEND, activation[1]).activation());
    const id = url.pathname.match(/^\/id\/([^/]+)$/);
    if (id) return new Response(env.BACKEND.idFromName(id[1]).toString());
`)
}

// editFile replaces old with new in the file at path; old must be there.
func editFile(t *testing.T, path, old, new string) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), old) {
		t.Fatalf("%s does not contain %q", path, old)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(string(raw), old, new, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
}

// kill ends berth with SIGKILL, as a crash or the OOM killer does: it
// removes nothing on the way out.
func (p *berthProcess) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatal("berth did not end within 30 s of SIGKILL")
	}
}

// stopWithAndCheckGone is stopAndCheckGone with another signal.
func (a *exampleApp) stopWithAndCheckGone(t *testing.T, p *berthProcess, sig syscall.Signal) {
	t.Helper()
	start := time.Now()
	p.stop(t, sig)
	t.Logf("berth exited %s after %v", time.Since(start).Round(time.Millisecond), sig)
	if left := a.containers(t); len(left) != 0 {
		t.Errorf("after %v %d container(s) of %s are left: %+v", sig, len(left), a.name, left)
	}
	if strings.Contains(p.String(), "unhandled promise rejection") {
		t.Errorf("berth logged an unhandled promise rejection")
	}
}

// TestDevAdoptsContainersAfterSIGKILL: berth dev killed with SIGKILL leaves
// its containers running; the next berth dev on the project takes them
// over (the same container answers, with its state, and the object sees
// ctx.container.running at once), and after a normal stop none is left. A
// start that finds containers whose objects no longer exist (the state
// directory was wiped) removes them before it serves.
func TestDevAdoptsContainersAfterSIGKILL(t *testing.T) {
	app := copyExample(t, "stateless")
	addStatelessRoutes(t, app)
	p := app.start(t)
	var a1, b1 statelessAnswer
	callJSON(t, http.MethodGet, p.url+"/instance/a/x", nil, http.StatusOK, &a1)
	callJSON(t, http.MethodGet, p.url+"/instance/b/x", nil, http.StatusOK, &b1)
	if a1.Instance == b1.Instance || a1.Boot == "" {
		t.Fatalf("a = %+v, b = %+v: want two containers", a1, b1)
	}
	before := running(app.containers(t))
	if len(before) != 2 {
		t.Fatalf("%d running containers before the kill, want 2", len(before))
	}

	p.kill(t)
	after := running(app.containers(t))
	if len(after) != 2 {
		t.Fatalf("%d running containers after SIGKILL, want both still running: %+v", len(after), after)
	}

	p = app.start(t)
	if !strings.Contains(p.String(), "Took over 2 running container(s) of a previous run") {
		t.Errorf("berth dev did not say it took over the two containers:\n%s", p.String())
	}
	var act struct {
		Running bool `json:"running"`
	}
	callJSON(t, http.MethodGet, p.url+"/activation/a", nil, http.StatusOK, &act)
	if !act.Running {
		t.Errorf("ctx.container.running at a's first activation after the restart = false, want true")
	}
	var a2 statelessAnswer
	callJSON(t, http.MethodGet, p.url+"/instance/a/y", nil, http.StatusOK, &a2)
	if a2.Instance != a1.Instance || a2.Boot != a1.Boot || a2.Served != a1.Served+1 {
		t.Errorf("a after the restart = %+v, want the container of before (%+v) serving its next request", a2, a1)
	}
	if now := app.containers(t); len(now) != 2 {
		t.Errorf("%d containers after the restart, want the 2 taken over: %+v", len(now), now)
	}

	// Killed again, and the state wiped: no object of the containers
	// exists any more.
	p.kill(t)
	if err := os.RemoveAll(filepath.Join(app.dir, ".berth", "state")); err != nil {
		t.Fatal(err)
	}
	p = app.start(t)
	if left := app.containers(t); len(left) != 0 {
		t.Errorf("berth dev serves with %d container(s) of objects that no longer exist: %+v", len(left), left)
	}
	if n := strings.Count(p.String(), "removing the container of an owner that no longer exists"); n != 2 {
		t.Errorf("berth logged %d removals of containers without an object, want 2", n)
	}
	var a3 statelessAnswer
	callJSON(t, http.MethodGet, p.url+"/instance/a/z", nil, http.StatusOK, &a3)
	if a3.Boot == a1.Boot || a3.Instance == a1.Instance {
		t.Errorf("a after its object was wiped = %+v, want a new container", a3)
	}
	app.stopAndCheckGone(t, p)
}

// TestDevSIGINTRemovesContainers: Ctrl-C ends berth dev as SIGTERM does,
// removing its containers.
func TestDevSIGINTRemovesContainers(t *testing.T) {
	app := copyExample(t, "stateless")
	p := app.start(t)
	for _, name := range []string{"a", "b"} {
		callJSON(t, http.MethodGet, p.url+"/instance/"+name, nil, http.StatusOK, nil)
	}
	if n := len(running(app.containers(t))); n != 2 {
		t.Fatalf("%d running containers, want 2", n)
	}
	app.stopWithAndCheckGone(t, p, syscall.SIGINT)
}

var (
	buildStep  = regexp.MustCompile(`(?m)^  │ Step \d+/\d+ : `)
	imageBuilt = regexp.MustCompile(`Container image of Backend: (\S+)`)
)

// TestDevImageBuildOnStart: berth dev builds the image at start, showing
// the build as it runs; a start with the Dockerfile, the build context and
// image_vars unchanged builds nothing, a change to any of them builds
// again; image_vars reach the build as build args.
func TestDevImageBuildOnStart(t *testing.T) {
	app := copyExample(t, "stateless")
	cfg := filepath.Join(app.dir, "wrangler.jsonc")
	dockerfile := filepath.Join(app.dir, "Dockerfile")
	// The example's Dockerfile is outside its build context (./container).
	editFile(t, cfg, `"max_instances": 10`, `"max_instances": 10,
      "image_vars": { "BERTH_E2E_GREETING": "hello from image_vars" }`)
	extra := filepath.Join(app.dir, "container", "extra.txt")
	if err := os.WriteFile(extra, []byte("v1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	appendFile(t, dockerfile, "COPY extra.txt /extra.txt\nARG BERTH_E2E_GREETING\nLABEL berth.e2e.greeting=\"$BERTH_E2E_GREETING\"\n")

	type result struct {
		ref, id string
		built   bool
		labels  map[string]string
		env     []string
	}
	start := func(what string) result {
		t.Helper()
		p := app.start(t)
		out := p.String()
		app.stopAndCheckGone(t, p)
		m := imageBuilt.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("%s: berth dev did not name the image:\n%s", what, out)
		}
		r := result{ref: m[1], built: buildStep.MatchString(out)}
		upToDate := strings.Contains(out, "  │ image "+r.ref+" is up to date\n")
		if r.built == upToDate {
			t.Fatalf("%s: the output shows build steps %v and up to date %v, want one of them:\n%s", what, r.built, upToDate, out)
		}
		prep := strings.Index(out, "Preparing the container image of Backend (./Dockerfile)…\n")
		if prep < 0 || prep > strings.Index(out, m[0]) || strings.Index(out, m[0]) > strings.Index(out, "Ready on") {
			t.Fatalf("%s: want Preparing…, the build, the image's name, then Ready:\n%s", what, out)
		}
		if r.built {
			if prep > buildStep.FindStringIndex(out)[0] {
				t.Fatalf("%s: build steps before Preparing…:\n%s", what, out)
			}
			if !strings.Contains(out, "  │ Successfully tagged "+r.ref+"\n") {
				t.Fatalf("%s: berth dev names image %s, not the one it built:\n%s", what, r.ref, out)
			}
		}
		img, err := app.api.ImageInspect(context.Background(), r.ref)
		if err != nil {
			t.Fatalf("%s: inspect %s: %v", what, r.ref, err)
		}
		r.id = img.ID
		if img.Config != nil {
			r.labels, r.env = img.Config.Labels, img.Config.Env
		}
		return r
	}

	first := start("first start")
	if !first.built {
		t.Fatalf("the first start did not build")
	}
	if got := first.labels["berth.e2e.greeting"]; got != "hello from image_vars" {
		t.Errorf("the image's label from the image_vars build arg = %q, want %q", got, "hello from image_vars")
	}
	if !strings.HasPrefix(first.ref, "berth-dev/"+app.name+"-backend:") {
		t.Errorf("image %s, want it in repository berth-dev/%s-backend", first.ref, app.name)
	}

	again := start("second start, nothing changed")
	if again.built || again.ref != first.ref || again.id != first.id {
		t.Errorf("second start: built %v, image %s (%s); want no build and image %s (%s)", again.built, again.ref, again.id, first.ref, first.id)
	}

	if err := os.WriteFile(extra, []byte("v2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctxChanged := start("a file of the build context changed")
	if !ctxChanged.built || ctxChanged.ref == first.ref || ctxChanged.id == first.id {
		t.Errorf("after a change to the context: built %v, image %s; want a build of a new image (not %s)", ctxChanged.built, ctxChanged.ref, first.ref)
	}

	appendFile(t, dockerfile, "ENV BERTH_E2E_REV=2\n")
	dfChanged := start("the Dockerfile changed")
	if !dfChanged.built || dfChanged.ref == ctxChanged.ref || dfChanged.id == ctxChanged.id || !slices.Contains(dfChanged.env, "BERTH_E2E_REV=2") {
		t.Errorf("after a change to the Dockerfile: built %v, image %s, env %v; want a build of a new image (not %s) with BERTH_E2E_REV=2",
			dfChanged.built, dfChanged.ref, dfChanged.env, ctxChanged.ref)
	}

	editFile(t, cfg, `"hello from image_vars"`, `"changed image_vars"`)
	varsChanged := start("image_vars changed")
	if !varsChanged.built || varsChanged.ref == dfChanged.ref || varsChanged.id == dfChanged.id || varsChanged.labels["berth.e2e.greeting"] != "changed image_vars" {
		t.Errorf("after a change to image_vars: built %v, image %s, label %q; want a build of a new image with label %q",
			varsChanged.built, varsChanged.ref, varsChanged.labels["berth.e2e.greeting"], "changed image_vars")
	}
}

// TestDevContainerNameLinksExport: a containers[] entry without class_name
// belongs to the exports entry whose container is its name; one whose
// name no exports entry uses is a config error naming the entry.
func TestDevContainerNameLinksExport(t *testing.T) {
	app := copyExample(t, "stateless")
	config := func(exportContainer string) string {
		return fmt.Sprintf(`{
  "name": %q,
  "main": "src/index.ts",
  "compatibility_date": "2025-11-17",
  "containers": [
    { "name": "backend-svc", "image": "./Dockerfile", "image_build_context": "./container", "max_instances": 10 }
  ],
  "durable_objects": { "bindings": [{ "name": "BACKEND", "class_name": "Backend" }] },
  "exports": { "Backend": { "type": "durable-object", "storage": "sqlite", "container": %q } }
}
`, app.name, exportContainer)
	}
	cfg := filepath.Join(app.dir, "wrangler.jsonc")
	if err := os.WriteFile(cfg, []byte(config("backend-svc")), 0o644); err != nil {
		t.Fatal(err)
	}
	p := app.start(t)
	if !strings.Contains(p.String(), "Preparing the container image of Backend (./Dockerfile)…") {
		t.Errorf("berth dev did not prepare an image for class Backend:\n%s", p.String())
	}
	var a statelessAnswer
	callJSON(t, http.MethodGet, p.url+"/instance/n/hello", nil, http.StatusOK, &a)
	if a.Path != "/instance/n/hello" || a.Instance == "" {
		t.Fatalf("GET /instance/n/hello = %+v", a)
	}
	list := running(app.containers(t))
	if len(list) != 1 || list[0].Labels[container.LabelClass] != "Backend" {
		t.Fatalf("running containers = %+v, want one of class Backend", list)
	}
	app.stopAndCheckGone(t, p)

	if err := os.WriteFile(cfg, []byte(config("other-svc")), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, buildBerth(t), "dev", app.dir, "--port", "0")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "containers[0].class_name") || !strings.Contains(string(out), "required") {
		t.Errorf("berth dev with a container no export names = %v:\n%s\nwant an error on containers[0].class_name", err, out)
	}
	if left := app.containers(t); len(left) != 0 {
		t.Errorf("%d containers after the failed start", len(left))
	}
}

// hostResources is what Docker says of a running container's limits.
type hostResources struct {
	cpus        float64 // CPUQuota / CPUPeriod
	memory      int64
	memorySwap  int64
	pids        int64
	description string
}

func containerResources(t *testing.T, app *exampleApp, id string) hostResources {
	t.Helper()
	res, err := app.api.ContainerInspect(context.Background(), id, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	hc := res.Container.HostConfig
	r := hostResources{memory: hc.Memory, memorySwap: hc.MemorySwap}
	if hc.CPUPeriod > 0 {
		r.cpus = float64(hc.CPUQuota) / float64(hc.CPUPeriod)
	}
	if hc.PidsLimit != nil {
		r.pids = *hc.PidsLimit
	}
	r.description = fmt.Sprintf("cpu quota %d/%d µs, nano cpus %d, memory %d, swap %d, pids %d", hc.CPUQuota, hc.CPUPeriod, hc.NanoCPUs, hc.Memory, hc.MemorySwap, r.pids)
	return r
}

// checkResources compares a container's limits with an instance type of
// vcpu CPUs and memMiB MiB.
func checkResources(t *testing.T, app *exampleApp, inst container.Instance, vcpu float64, memMiB, pids int64) {
	t.Helper()
	r := containerResources(t, app, inst.ID)
	if math.Abs(r.cpus-vcpu) > 1e-9 || r.memory != memMiB<<20 || r.memorySwap != r.memory || r.pids != pids {
		t.Errorf("container %s: %s; want %g CPUs, %d MiB without swap, %d pids", inst.Name, r.description, vcpu, memMiB, pids)
	}
}

const noInstance = "There is no Container instance available at this time."

// TestDevMaxInstancesAndInstanceType: the instance_type of wrangler.jsonc
// is the container's CPU and memory limits, and max_instances 1 refuses a
// second object's container with 503, berth logging the refused start.
func TestDevMaxInstancesAndInstanceType(t *testing.T) {
	app := copyExample(t, "stateless")
	addStatelessRoutes(t, app)
	editFile(t, filepath.Join(app.dir, "wrangler.jsonc"), `"instance_type": "lite",
      "max_instances": 10`, `"instance_type": "basic",
      "max_instances": 1`)
	p := app.start(t)
	var one statelessAnswer
	callJSON(t, http.MethodGet, p.url+"/instance/one", nil, http.StatusOK, &one)
	list := running(app.containers(t))
	if len(list) != 1 {
		t.Fatalf("%d running containers, want 1", len(list))
	}
	checkResources(t, app, list[0], 0.25, 1024, 256) // basic: 1/4 vCPU, 1 GiB

	status, body := call(t, http.MethodGet, p.url+"/instance/two", "", nil)
	if status != http.StatusServiceUnavailable || string(body) != noInstance {
		t.Errorf("a second object's first request = %d %q, want 503 %q", status, body, noInstance)
	}
	_, id := call(t, http.MethodGet, p.url+"/id/two", "", nil)
	refused := regexp.MustCompile(`refused a container start: max_instances reached.* owner=Backend/` + regexp.QuoteMeta(string(id)) + `\b.*max_instances=1`)
	if !refused.MatchString(p.String()) {
		t.Errorf("berth's log does not name the refused start of object two (%s):\n%s", id, p.String())
	}
	if n := len(running(app.containers(t))); n != 1 {
		t.Errorf("%d running containers after the refusal, want 1", n)
	}
	var again statelessAnswer
	callJSON(t, http.MethodGet, p.url+"/instance/one", nil, http.StatusOK, &again)
	if again.Boot != one.Boot {
		t.Errorf("object one answered from another container after the refusal: %+v, then %+v", one, again)
	}
	app.stopAndCheckGone(t, p)
}

// TestDevMaxInstancesConcurrentColdStarts: four first requests at once to
// four objects with max_instances 2: two are served, two refused with 503,
// none lost or left hanging; the containers have the custom instance
// type's limits.
func TestDevMaxInstancesConcurrentColdStarts(t *testing.T) {
	app := copyExample(t, "stateless")
	editFile(t, filepath.Join(app.dir, "wrangler.jsonc"), `"instance_type": "lite",
      "max_instances": 10`, `"instance_type": { "vcpu": 0.5, "memory_mib": 300, "disk_mb": 2000 },
      "max_instances": 2`)
	p := app.start(t)
	type answer struct {
		status int
		body   string
		err    error
	}
	const names = 4
	answers := make([]answer, names)
	c := &http.Client{Timeout: 60 * time.Second}
	var wg sync.WaitGroup
	start := time.Now()
	for i := range names {
		wg.Go(func() {
			resp, err := c.Get(fmt.Sprintf("%s/instance/cold-%d", p.url, i))
			if err != nil {
				answers[i].err = err
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			answers[i].status, answers[i].body, answers[i].err = resp.StatusCode, string(b), err
		})
	}
	wg.Wait()
	t.Logf("%d concurrent cold starts answered in %s", names, time.Since(start).Round(time.Millisecond))
	served, refused := 0, 0
	for i, a := range answers {
		switch {
		case a.err != nil:
			t.Errorf("cold-%d: %v", i, a.err)
		case a.status == http.StatusOK:
			served++
		case a.status == http.StatusServiceUnavailable && a.body == noInstance:
			refused++
		default:
			t.Errorf("cold-%d = %d %q, want 200 or 503 %q", i, a.status, a.body, noInstance)
		}
	}
	if served != 2 || refused != 2 {
		t.Errorf("%d served and %d refused, want 2 and 2 (max_instances 2)", served, refused)
	}
	list := running(app.containers(t))
	if len(list) != 2 {
		t.Fatalf("%d running containers, want 2 (max_instances)", len(list))
	}
	for _, inst := range list {
		checkResources(t, app, inst, 0.5, 300, 512)
	}
	if n := strings.Count(p.String(), "refused a container start: max_instances reached"); n != 2 {
		t.Errorf("berth logged %d refused starts, want 2", n)
	}
	app.stopAndCheckGone(t, p)
}

// TestDevContainerEngineFromConfig: dev.container_engine names the engine,
// as in wrangler, over a DOCKER_HOST that points nowhere.
func TestDevContainerEngineFromConfig(t *testing.T) {
	engine := os.Getenv("DOCKER_HOST")
	if engine == "" {
		engine = "unix:///var/run/docker.sock"
	}
	app := copyExample(t, "stateless")
	editFile(t, filepath.Join(app.dir, "wrangler.jsonc"), `"compatibility_date": "2025-11-17",`,
		fmt.Sprintf(`"compatibility_date": "2025-11-17",
  "dev": { "container_engine": { "localDocker": { "socketPath": %q } } },`, engine))
	t.Setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
	t.Setenv("WRANGLER_DOCKER_HOST", "")
	p := app.start(t)
	if status, body := call(t, http.MethodGet, p.url+"/instance/engine", "", nil); status != http.StatusOK {
		t.Fatalf("GET /instance/engine = %d %q", status, body)
	}
	app.stopAndCheckGone(t, p)

	// Without it, DOCKER_HOST decides: berth dev says the engine is not
	// reachable, and where it looked.
	editFile(t, filepath.Join(app.dir, "wrangler.jsonc"), fmt.Sprintf(`"socketPath": %q`, engine), `"socketPath": "/nonexistent/other.sock"`)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, buildBerth(t), "dev", app.dir, "--port", "0").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "the Docker engine is not reachable") || !strings.Contains(string(out), "/nonexistent/other.sock") {
		t.Errorf("berth dev with an engine that is not there = %v:\n%s\nwant an error naming the socket", err, out)
	}
}
