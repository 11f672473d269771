package docker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/berth-dev/berth/internal/container"
	"github.com/berth-dev/berth/internal/testutil"
)

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestHardening reads the engine's view of a container back and checks every
// default the driver promises.
func TestHardening(t *testing.T) {
	rt := newTestRuntime(t, Options{})
	ctx := testCtx(t, 2*time.Minute)
	for _, internet := range []bool{false, true} {
		t.Run(fmt.Sprintf("internet=%v", internet), func(t *testing.T) {
			inst := startApp(t, rt, container.Spec{
				Internet: internet,
				Limits:   container.Limits{NanoCPUs: 5e8, MemoryBytes: 64 << 20, Pids: 100},
			})
			res, err := rt.api.ContainerInspect(ctx, inst.ID, client.ContainerInspectOptions{})
			if err != nil {
				t.Fatal(err)
			}
			hc := res.Container.HostConfig
			if hc.Privileged {
				t.Error("privileged")
			}
			if !slices.Equal(hc.CapDrop, []string{"CAP_ALL"}) && !slices.Equal(hc.CapDrop, []string{"ALL"}) {
				t.Errorf("CapDrop = %v, want ALL", hc.CapDrop)
			}
			var added []string
			for _, c := range hc.CapAdd {
				added = append(added, strings.TrimPrefix(c, "CAP_"))
			}
			slices.Sort(added)
			want := slices.Sorted(slices.Values(keptCapabilities))
			if !slices.Equal(added, want) {
				t.Errorf("CapAdd = %v, want %v", added, want)
			}
			for _, banned := range []string{"NET_RAW", "MKNOD", "AUDIT_WRITE", "SYS_CHROOT", "SETFCAP", "SYS_ADMIN", "NET_ADMIN"} {
				if slices.Contains(added, banned) {
					t.Errorf("CapAdd has %s", banned)
				}
			}
			if !slices.Contains(hc.SecurityOpt, "no-new-privileges") {
				t.Errorf("SecurityOpt = %v, want no-new-privileges", hc.SecurityOpt)
			}
			if hc.Init == nil || !*hc.Init {
				t.Errorf("Init = %v, want true", hc.Init)
			}
			if hc.LogConfig.Type != "json-file" || hc.LogConfig.Config["max-size"] != "10m" || hc.LogConfig.Config["max-file"] != "3" {
				t.Errorf("LogConfig = %+v", hc.LogConfig)
			}
			if hc.PidMode.IsHost() || hc.IpcMode.IsHost() || hc.UTSMode.IsHost() || hc.UsernsMode.IsHost() || hc.NetworkMode.IsHost() {
				t.Errorf("a host namespace is shared: pid=%q ipc=%q uts=%q userns=%q net=%q", hc.PidMode, hc.IpcMode, hc.UTSMode, hc.UsernsMode, hc.NetworkMode)
			}
			if hc.Memory != 64<<20 || hc.MemorySwap != 64<<20 || hc.CPUPeriod != 10_000 || hc.CPUQuota != 5_000 || hc.PidsLimit == nil || *hc.PidsLimit != 100 {
				t.Errorf("limits: memory %d swap %d cpu quota %d per %d µs, pids %v", hc.Memory, hc.MemorySwap, hc.CPUQuota, hc.CPUPeriod, hc.PidsLimit)
			}
			if hc.PublishAllPorts || len(hc.PortBindings) > 0 {
				t.Errorf("ports published: all=%v bindings=%v", hc.PublishAllPorts, hc.PortBindings)
			}
			for port, bindings := range res.Container.NetworkSettings.Ports {
				if len(bindings) > 0 {
					t.Errorf("port %v bound on the host: %v", port, bindings)
				}
			}
			if res.Container.Config.Labels[container.LabelManaged] != "1" {
				t.Errorf("labels = %v, want %s=1", res.Container.Config.Labels, container.LabelManaged)
			}
			wantNet := "none"
			if internet {
				wantNet = rt.inetName
			}
			if string(hc.NetworkMode) != wantNet {
				t.Errorf("NetworkMode = %q, want %q", hc.NetworkMode, wantNet)
			}
			// From the inside: the effective capability set is the kept one
			// and no new privileges can be gained.
			var status bytes.Buffer
			p, err := rt.Exec(ctx, inst.ID, container.ExecSpec{Cmd: []string{"/bin/testapp", "cat"}, Stdin: strings.NewReader(""), Stdout: &status})
			if err != nil {
				t.Fatal(err)
			}
			p.Wait(ctx)
			code, body, err := getThroughDial(ctx, rt, inst.ID, 8080, "/net")
			if err != nil || code != 200 {
				t.Fatalf("GET /net: %d %v", code, err)
			}
			if !internet && (!strings.Contains(body, `"lo"`) || strings.Contains(body, "eth0")) {
				t.Errorf("internet off: interfaces %s, want only lo", body)
			}
			if internet && !strings.Contains(body, "eth0") {
				t.Errorf("internet on: interfaces %s, want eth0", body)
			}
		})
	}
	t.Run("network", func(t *testing.T) {
		res, err := rt.api.NetworkInspect(ctx, rt.inetName, client.NetworkInspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		n := res.Network
		if n.Driver != "bridge" || n.Options["com.docker.network.bridge.enable_icc"] != "false" || n.Labels[container.LabelManaged] != "1" {
			t.Errorf("network %s: driver %q options %v labels %v", n.Name, n.Driver, n.Options, n.Labels)
		}
	})
}

// TestNotPublished: the app's port answers through Dial but is bound on no
// host address, and docker runs no proxy for it.
func TestNotPublished(t *testing.T) {
	rt := newTestRuntime(t, Options{})
	ctx := testCtx(t, time.Minute)
	inst := startApp(t, rt, container.Spec{Internet: true})
	if err := waitHTTP(ctx, rt, inst.ID, 8080, "/echo"); err != nil {
		t.Fatal(err)
	}
	res, err := rt.api.ContainerInspect(ctx, inst.ID, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for port, b := range res.Container.NetworkSettings.Ports {
		if len(b) > 0 {
			t.Errorf("port %v published on %v", port, b)
		}
	}
	// No docker-proxy process serves this container.
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		cmd, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if bytes.HasPrefix(cmd, []byte("/usr/sbin/docker-proxy")) || bytes.Contains(cmd, []byte("docker-proxy\x00")) {
			for _, ep := range res.Container.NetworkSettings.Networks {
				if ep.IPAddress.IsValid() && bytes.Contains(cmd, []byte(ep.IPAddress.String()+"\x00")) {
					t.Errorf("docker-proxy for the container: %q", cmd)
				}
			}
		}
	}
}

// TestDiskLimit: a disk limit is either enforced (StorageOpt read back) or
// dropped with exactly one log line, never silently and never pretended.
func TestDiskLimit(t *testing.T) {
	var logs testutil.SyncBuffer
	rt := newTestRuntime(t, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	ctx := testCtx(t, time.Minute)
	var enforced []bool
	for range 2 {
		inst := startApp(t, rt, container.Spec{Limits: container.Limits{DiskBytes: 2_000_000_000}})
		res, err := rt.api.ContainerInspect(ctx, inst.ID, client.ContainerInspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !res.Container.State.Running {
			t.Fatal("not running")
		}
		enforced = append(enforced, res.Container.HostConfig.StorageOpt["size"] != "")
	}
	warnings := strings.Count(logs.String(), "cannot limit container disk size")
	t.Logf("enforced=%v warnings=%d log=%q", enforced, warnings, logs.String())
	switch {
	case enforced[0] && enforced[1]:
		if warnings != 0 {
			t.Errorf("limit enforced yet %d warnings", warnings)
		}
	case !enforced[0] && !enforced[1]:
		if warnings != 1 {
			t.Errorf("limit dropped with %d warnings, want exactly 1", warnings)
		}
	default:
		t.Errorf("inconsistent: enforced=%v", enforced)
	}
}

// TestEventsReconnect breaks the events stream and checks that an exit
// during the outage still reaches Wait, and that Events flags the gap.
func TestEventsReconnect(t *testing.T) {
	rt := newTestRuntime(t, Options{ReconnectMin: 300 * time.Millisecond, ReconnectMax: time.Second})
	ctx := testCtx(t, time.Minute)
	inst := startApp(t, rt, container.Spec{})
	events := rt.Events(ctx)
	waited := make(chan error, 1)
	var exit container.Exit
	go func() {
		var err error
		exit, err = rt.Wait(ctx, inst.ID)
		waited <- err
	}()
	for !rt.hub.waiting(inst.ID) {
		select {
		case <-ctx.Done():
			t.Fatal("Wait never subscribed")
		case <-time.After(time.Millisecond):
		}
	}
	before := rt.hub.reconnectCount()
	rt.hub.interrupt()
	// The exit happens while the stream is down (backoff 300 ms).
	if _, err := rt.api.ContainerKill(ctx, inst.ID, client.ContainerKillOptions{Signal: "KILL"}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-waited:
		if err != nil {
			t.Fatalf("Wait: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("Wait did not return after the stream reconnected")
	}
	if exit.Code != 137 {
		t.Errorf("exit code %d, want 137", exit.Code)
	}
	if got := rt.hub.reconnectCount(); got <= before {
		t.Errorf("reconnects %d, want > %d", got, before)
	}
	// The first event delivered after the outage, whichever container it
	// is about (other berth containers may share the engine), is flagged.
	rt.Destroy(ctx, inst.ID)
	flagged := false
	for {
		select {
		case ev := <-events:
			flagged = flagged || ev.Dropped
			if ev.ID == inst.ID && ev.Kind == container.EventDestroy {
				if !flagged {
					t.Error("no event after the reconnect was flagged Dropped")
				}
				return
			}
		case <-ctx.Done():
			t.Fatal("no destroy event after reconnect")
		}
	}
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func removeImage(t *testing.T, rt *Runtime, ref string) {
	t.Cleanup(func() {
		if err := rt.RemoveImage(context.Background(), ref); err != nil {
			t.Errorf("RemoveImage %s: %v", ref, err)
		}
	})
}

// TestBuild covers what is Docker-specific about builds: the classic
// builder's stream, build args, .dockerignore, and failures.
func TestBuild(t *testing.T) {
	rt := newTestRuntime(t, Options{})
	ctx := testCtx(t, 3*time.Minute)
	base := testAppImage(t, rt)

	t.Run("args labels dockerignore", func(t *testing.T) {
		dir := t.TempDir()
		writeFiles(t, dir, map[string]string{
			"Dockerfile": "ARG BASE\nFROM ${BASE}\nARG GREETING\nLABEL greeting=${GREETING}\nCOPY . /ctx/\nEXPOSE 9090 53/udp\n" +
				"RUN [\"/bin/testapp\", \"echo\", \"built\"]\n",
			".dockerignore":      "secret.txt\nlogs/\n!logs/keep.txt\n",
			"kept.txt":           "kept",
			"secret.txt":         "secret",
			"logs/drop.txt":      "drop",
			"logs/keep.txt":      "keep",
			"sub/dir/nested.txt": "nested",
		})
		ref := "berth-test/build:" + randomSuffix()
		removeImage(t, rt, ref)
		var progress bytes.Buffer
		img, err := rt.Build(ctx, container.BuildSpec{
			ContextDir: dir, Tag: ref, Progress: &progress,
			Args:   map[string]string{"BASE": base, "GREETING": "hi"},
			Labels: map[string]string{container.LabelTest: "1"},
		})
		if err != nil {
			t.Fatalf("Build: %v\n%s", err, progress.String())
		}
		if !strings.Contains(progress.String(), "Step ") || !strings.Contains(progress.String(), "built") {
			t.Errorf("progress lacks steps or RUN output:\n%s", progress.String())
		}
		if img.Labels["greeting"] != "hi" || img.Labels[container.LabelTest] != "1" {
			t.Errorf("labels %v", img.Labels)
		}
		if !slices.Equal(img.ExposedPorts, []int{8080, 9090}) {
			t.Errorf("ExposedPorts %v, want [8080 9090]", img.ExposedPorts)
		}
		if !slices.Contains(img.Refs, ref) {
			t.Errorf("Refs %v lack %s", img.Refs, ref)
		}
		inst := startApp(t, rt, container.Spec{Image: ref})
		for path, want := range map[string]bool{
			"/ctx/kept.txt": true, "/ctx/sub/dir/nested.txt": true, "/ctx/logs/keep.txt": true,
			"/ctx/Dockerfile": true, "/ctx/secret.txt": false, "/ctx/logs/drop.txt": false,
		} {
			_, err := rt.api.ContainerStatPath(ctx, inst.ID, client.ContainerStatPathOptions{Path: path})
			if got := err == nil; got != want {
				t.Errorf("%s in image: %v, want %v (%v)", path, got, want, err)
			}
		}
	})

	t.Run("dockerfile outside context", func(t *testing.T) {
		dir, other := t.TempDir(), t.TempDir()
		writeFiles(t, dir, map[string]string{"a.txt": "a"})
		writeFiles(t, other, map[string]string{"app.Dockerfile": "FROM " + base + "\nCOPY a.txt /a.txt\n"})
		ref := "berth-test/build:" + randomSuffix()
		removeImage(t, rt, ref)
		if _, err := rt.Build(ctx, container.BuildSpec{ContextDir: dir, Dockerfile: filepath.Join(other, "app.Dockerfile"), Tag: ref, Labels: testLabels}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("missing dockerfile", func(t *testing.T) {
		dir := t.TempDir()
		_, err := rt.Build(ctx, container.BuildSpec{ContextDir: dir, Dockerfile: "nope.Dockerfile", Tag: "berth-test/never:1"})
		if !errors.Is(err, container.ErrInvalid) || !strings.Contains(err.Error(), filepath.Join(dir, "nope.Dockerfile")) {
			t.Errorf("err = %v, want ErrInvalid naming the path", err)
		}
	})

	t.Run("failed step", func(t *testing.T) {
		dir := t.TempDir()
		writeFiles(t, dir, map[string]string{"Dockerfile": "FROM " + base + "\nRUN [\"/bin/testapp\", \"fail-build\", \"the widget is broken\"]\n"})
		ref := "berth-test/build:" + randomSuffix()
		var progress bytes.Buffer
		_, err := rt.Build(ctx, container.BuildSpec{ContextDir: dir, Tag: ref, Progress: &progress, Labels: testLabels})
		if !errors.Is(err, container.ErrBuildFailed) || !strings.Contains(err.Error(), "the widget is broken") {
			t.Errorf("err = %v, want ErrBuildFailed with the step's output", err)
		}
		if !strings.Contains(progress.String(), "the widget is broken") {
			t.Errorf("progress lacks the step's output:\n%s", progress.String())
		}
	})
}

func TestResolve(t *testing.T) {
	rt := newTestRuntime(t, Options{})
	ctx := testCtx(t, 2*time.Minute)
	ref := testAppImage(t, rt)
	img, err := rt.Resolve(ctx, ref)
	if err != nil || !slices.Equal(img.ExposedPorts, []int{8080}) {
		t.Errorf("Resolve(%s) = %+v, %v", ref, img, err)
	}
	missing := "berth-test/does-not-exist:" + randomSuffix()
	_, err = rt.Resolve(ctx, missing)
	if !errors.Is(err, container.ErrImageNotFound) || !strings.Contains(err.Error(), missing) {
		t.Errorf("Resolve(missing) = %v, want ErrImageNotFound naming it", err)
	}
}
