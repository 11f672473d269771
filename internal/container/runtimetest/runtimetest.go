// Package runtimetest is the conformance suite for container.Runtime: the
// contracts in container's doc comments, as tests. container/docker and
// container/fake both run it, which keeps the fake honest.
//
// The suite builds its own image FROM scratch around the static testapp
// binary, labels everything it creates berth.test=1 and removes it when it
// ends, failed or not.
package runtimetest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/container"
	"github.com/berth-dev/berth/internal/container/testapp"
)

// Harness is what Run needs from the runtime under test.
type Harness struct {
	Runtime container.Runtime
	// TestAppBinary is the path of the static testapp binary (see
	// testutil.BuildTestApp); the suite COPYs it into the images it builds.
	TestAppBinary string
}

// Run runs the conformance suite against h.Runtime. Independent checks run
// in parallel (go test -parallel bounds how many).
func Run(t *testing.T, h Harness) {
	if h.Runtime == nil || h.TestAppBinary == "" {
		t.Fatal("runtimetest: Harness needs a Runtime and a TestAppBinary")
	}
	s := &suite{rt: h.Runtime, h: h, runID: randomHex(6)}
	s.tag = "berth-test/runtimetest:" + s.runID
	t.Cleanup(func() { s.sweep(t) })
	s.buildImage(t)

	tests := []struct {
		name string
		fn   func(*testing.T)
	}{
		{"Build/Image", s.testBuildImage},
		{"Build/MissingDockerfile", s.testBuildMissingDockerfile},
		{"Build/FailingStep", s.testBuildFailingStep},
		{"Build/RemoveImage", s.testRemoveImage},
		{"Resolve/NotFound", s.testResolveNotFound},
		{"Start/Spec", s.testStartSpec},
		{"Start/CmdOverride", s.testStartCmdOverride},
		{"Start/MissingExecutable", s.testStartMissingExecutable},
		{"Start/DuplicateName", s.testStartDuplicateName},
		{"Dial/NotListening", s.testDialNotListening},
		{"Dial/Stream", s.testDialStream},
		{"Signal/Term", s.testSignalTerm},
		{"Stop/Graceful", s.testStopGraceful},
		{"Stop/IgnoredTerm", s.testStopIgnoredTerm},
		{"Exit/Code", s.testExitCode},
		{"Exit/OOM", s.testOOM},
		{"Destroy", s.testDestroy},
		{"List", s.testList},
		{"Exec", s.testExec},
		{"Logs", s.testLogs},
		{"Stats", s.testStats},
		{"Pause", s.testPause},
		{"Internet", s.testInternet},
		{"Egress/HTTP", s.testEgressHTTP},
		{"Egress/HTTPS", s.testEgressHTTPS},
		{"Egress/Restart", s.testEgressRestart},
		{"Egress/Late", s.testEgressLate},
		{"Egress/Boot", s.testEgressBoot},
		{"Egress/Internet", s.testEgressInternet},
		{"UnknownID", s.testUnknownID},
	}
	// The group returns once every parallel test has finished, before the
	// image is removed.
	t.Run("group", func(t *testing.T) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				tc.fn(t)
			})
		}
	})
}

func (s *suite) buildImage(t *testing.T) {
	dir := s.contextDir(t, imageDockerfile)
	var progress syncBuffer
	img, err := s.rt.Build(opContext(t), container.BuildSpec{
		ContextDir: dir,
		Dockerfile: "Dockerfile",
		Tag:        s.tag,
		Args:       map[string]string{"GREETING": buildArg},
		Labels:     map[string]string{container.LabelTest: "1", "berth.test.spec-label": "yes"},
		Progress:   &progress,
	})
	// Registered before the check: a build that half-worked may have tagged.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		if err := s.rt.RemoveImage(ctx, s.tag); err != nil {
			t.Errorf("cleanup: remove image %s: %v", s.tag, err)
		}
	})
	if err != nil {
		t.Fatalf("build the suite image: %v\nprogress:\n%s", err, progress.String())
	}
	s.image = img
	s.buildProgress = progress.String()
}

// sweep destroys whatever of this run is still there, such as a container a
// failed Start left behind.
func (s *suite) sweep(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	left, err := s.rt.List(ctx, map[string]string{labelRun: s.runID})
	if err != nil {
		t.Errorf("cleanup: list leftovers: %v", err)
		return
	}
	for _, inst := range left {
		if err := s.rt.Destroy(ctx, inst.ID); err != nil {
			t.Errorf("cleanup: destroy leftover %s: %v", inst.ID, err)
		}
	}
}

func (s *suite) testBuildImage(t *testing.T) {
	if s.image.ID == "" {
		t.Fatal("Build returned an image without an ID")
	}
	if strings.TrimSpace(s.buildProgress) == "" {
		t.Error("Build wrote no progress")
	}
	if !slices.Contains(s.image.ExposedPorts, serverPort) {
		t.Errorf("ExposedPorts = %v, want it to hold %d (EXPOSE)", s.image.ExposedPorts, serverPort)
	}
	for k, v := range map[string]string{container.LabelTest: "1", "berth.test.dockerfile": "yes", "berth.test.spec-label": "yes"} {
		if s.image.Labels[k] != v {
			t.Errorf("image label %s = %q, want %q (labels %v)", k, s.image.Labels[k], v, s.image.Labels)
		}
	}
	resolved, err := s.rt.Resolve(opContext(t), s.tag)
	if err != nil {
		t.Fatalf("Resolve(%q): %v", s.tag, err)
	}
	if resolved.ID != s.image.ID {
		t.Errorf("Resolve(%q).ID = %q, want the built %q", s.tag, resolved.ID, s.image.ID)
	}
	if !slices.Contains(resolved.Refs, s.tag) {
		t.Errorf("Resolve(%q).Refs = %v, want it to hold the tag", s.tag, resolved.Refs)
	}
}

func (s *suite) testBuildMissingDockerfile(t *testing.T) {
	dir := s.contextDir(t, "")
	_, err := s.rt.Build(opContext(t), container.BuildSpec{
		ContextDir: dir, Dockerfile: "missing.Dockerfile", Tag: "berth-test/missing:" + s.runID,
		Labels: map[string]string{container.LabelTest: "1"},
	})
	wantErr(t, "Build with a missing Dockerfile", err, container.ErrInvalid, "missing.Dockerfile")
}

func (s *suite) testBuildFailingStep(t *testing.T) {
	// FROM the suite's image, so that no step before the failing one leaves
	// an intermediate image behind (the classic builder keeps those).
	dir := s.contextDir(t, "FROM "+s.tag+"\n"+`RUN ["/testapp", "fail-build", "boom-marker"]
`)
	tag := "berth-test/failing:" + s.runID
	t.Cleanup(func() { _ = s.rt.RemoveImage(context.Background(), tag) })
	var progress syncBuffer
	_, err := s.rt.Build(opContext(t), container.BuildSpec{
		ContextDir: dir, Tag: tag, Progress: &progress,
		Labels: map[string]string{container.LabelTest: "1"},
	})
	wantErr(t, "Build with a failing RUN step", err, container.ErrBuildFailed, "boom-marker")
}

func (s *suite) testRemoveImage(t *testing.T) {
	dir := s.contextDir(t, "FROM scratch\nCOPY testapp /testapp\nLABEL berth.test=1\n")
	tag := "berth-test/removable:" + s.runID
	t.Cleanup(func() { _ = s.rt.RemoveImage(context.Background(), tag) })
	if _, err := s.rt.Build(opContext(t), container.BuildSpec{ContextDir: dir, Tag: tag}); err != nil {
		t.Fatalf("Build: %v", err)
	}
	if err := s.rt.RemoveImage(opContext(t), tag); err != nil {
		t.Fatalf("RemoveImage(%q): %v", tag, err)
	}
	_, err := s.rt.Resolve(opContext(t), tag)
	wantErr(t, "Resolve of a removed image", err, container.ErrImageNotFound, tag)
	if err := s.rt.RemoveImage(opContext(t), tag); err != nil {
		t.Fatalf("RemoveImage of a removed image: %v, want nil", err)
	}
}

func (s *suite) testResolveNotFound(t *testing.T) {
	ref := "berth-test/does-not-exist:" + s.runID
	_, err := s.rt.Resolve(opContext(t), ref)
	wantErr(t, "Resolve of a missing image", err, container.ErrImageNotFound, ref)
}

func (s *suite) testStartSpec(t *testing.T) {
	name := "berth-test-spec-" + s.runID
	inst := s.startServer(t, container.Spec{
		Name:       name,
		Entrypoint: []string{"/testapp"},
		Cmd:        []string{"serve", "--marker"},
		Env:        map[string]string{"SPEC_VAR": "spec-value", "TESTAPP_IMAGE": "overridden"},
		Labels:     map[string]string{container.LabelApp: "suite-app"},
	})
	echo := s.echo(t, inst.ID)
	for k, want := range map[string]string{
		"SPEC_VAR":      "spec-value",
		"GREETING":      buildArg, // ARG from BuildSpec.Args, kept by ENV
		"TESTAPP_IMAGE": "overridden",
	} {
		if echo.Env[k] != want {
			t.Errorf("container env %s = %q, want %q", k, echo.Env[k], want)
		}
	}
	if !slices.Equal(echo.Args, []string{"serve", "--marker"}) {
		t.Errorf("container args = %q, want [serve --marker]", echo.Args)
	}
	if echo.Path != "/echo" || echo.Query["probe"][0] != "1" || echo.Method != "GET" {
		t.Errorf("/echo saw %s %s %v, want GET /echo probe=1", echo.Method, echo.Path, echo.Query)
	}
	if echo.Hostname == "" {
		t.Error("the container has no hostname")
	}

	got, err := s.rt.Inspect(opContext(t), inst.ID)
	if err != nil {
		t.Fatalf("Inspect: %v", err)
	}
	if got.ID != inst.ID || got.Name != name {
		t.Errorf("Inspect = id %q name %q, want %q %q", got.ID, got.Name, inst.ID, name)
	}
	if !got.Running || got.Paused || got.Exit != nil {
		t.Errorf("Inspect of a running container: Running %v Paused %v Exit %v", got.Running, got.Paused, got.Exit)
	}
	if got.Created.IsZero() || got.StartedAt.IsZero() {
		t.Errorf("Inspect: Created %v StartedAt %v, want both set", got.Created, got.StartedAt)
	}
	for k, v := range map[string]string{container.LabelManaged: "1", container.LabelApp: "suite-app", container.LabelTest: "1"} {
		if got.Labels[k] != v {
			t.Errorf("label %s = %q, want %q (labels %v)", k, got.Labels[k], v, got.Labels)
		}
	}
}

func (s *suite) testStartCmdOverride(t *testing.T) {
	marker := "cmd-override-" + s.runID
	inst := s.start(t, container.Spec{Cmd: []string{"echo", marker}})
	if exit := s.wait(t, inst.ID); exit.Code != 0 || exit.OOMKilled {
		t.Fatalf("exit = %+v, want code 0", exit)
	}
	s.waitLog(t, inst.ID, container.Stdout, marker)
}

func (s *suite) testStartMissingExecutable(t *testing.T) {
	inst, err := s.rt.Start(opContext(t), s.prepare(container.Spec{Entrypoint: []string{"/no-such-entrypoint"}}))
	if err == nil {
		s.destroyAtEnd(t, inst.ID)
	}
	wantErr(t, "Start with a missing entrypoint", err, container.ErrExecutableNotFound, "/no-such-entrypoint")
}

func (s *suite) testStartDuplicateName(t *testing.T) {
	name := "berth-test-dup-" + s.runID
	s.start(t, container.Spec{Name: name, Cmd: []string{"sleep", "1h"}})
	inst, err := s.rt.Start(opContext(t), s.prepare(container.Spec{Name: name, Cmd: []string{"sleep", "1h"}}))
	if err == nil {
		s.destroyAtEnd(t, inst.ID)
	}
	wantErr(t, "second Start with the same name", err, container.ErrAlreadyExists)
}

func (s *suite) testDialNotListening(t *testing.T) {
	inst := s.startServer(t, container.Spec{})
	began := time.Now()
	conn, err := s.rt.Dial(opContext(t), inst.ID, 9999)
	if err == nil {
		conn.Close()
	}
	wantErr(t, "Dial of a port nothing listens on", err, container.ErrPortNotListening)
	if took := time.Since(began); took > 2*time.Second {
		t.Errorf("Dial of a closed port took %s, want it to fail fast", took)
	}
}

// testDialStream checks that a dialed connection carries a request and its
// answer at the same time: each chunk sent comes back before the next is.
func (s *suite) testDialStream(t *testing.T) {
	inst := s.startServer(t, container.Spec{})
	conn, err := s.rt.Dial(opContext(t), inst.ID, serverPort)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(opTimeout))
	if _, err := io.WriteString(conn, "POST /stream HTTP/1.1\r\nHost: container\r\nTransfer-Encoding: chunked\r\n\r\n"); err != nil {
		t.Fatalf("write request head: %v", err)
	}
	r := bufio.NewReader(conn)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatalf("read response head: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/stream answered %s", resp.Status)
	}
	for _, chunk := range []string{"first-chunk", "second-chunk"} {
		if _, err := fmt.Fprintf(conn, "%x\r\n%s\r\n", len(chunk), chunk); err != nil {
			t.Fatalf("write chunk: %v", err)
		}
		got := make([]byte, len(chunk))
		if _, err := io.ReadFull(resp.Body, got); err != nil || string(got) != chunk {
			t.Fatalf("echoed %q, %v; want %q while the request is still open", got, err, chunk)
		}
	}
	io.WriteString(conn, "0\r\n\r\n")
	if rest, err := io.ReadAll(resp.Body); err != nil || len(rest) != 0 {
		t.Fatalf("after the last chunk: %q, %v; want a clean end", rest, err)
	}
}

func (s *suite) testSignalTerm(t *testing.T) {
	inst := s.startServer(t, container.Spec{Env: map[string]string{"TERM_EXIT_CODE": "7"}})
	if err := s.rt.Signal(opContext(t), inst.ID, syscall.SIGTERM); err != nil {
		t.Fatalf("Signal SIGTERM: %v", err)
	}
	if exit := s.wait(t, inst.ID); exit.Code != 7 || exit.OOMKilled {
		t.Fatalf("exit after SIGTERM = %+v, want code 7 (TERM_EXIT_CODE)", exit)
	}
	s.waitLog(t, inst.ID, container.Stdout, "testapp got SIGTERM")
	err := s.rt.Signal(opContext(t), inst.ID, syscall.SIGTERM)
	wantErr(t, "Signal to a stopped container", err, container.ErrNotRunning)
}

func (s *suite) testStopGraceful(t *testing.T) {
	inst := s.startServer(t, container.Spec{})
	began := time.Now()
	if err := s.rt.Stop(opContext(t), inst.ID, 20*time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if took := time.Since(began); took > 10*time.Second {
		t.Errorf("Stop of a program that exits on SIGTERM took %s; the grace is a limit, not a wait", took)
	}
	got, err := s.rt.Inspect(opContext(t), inst.ID)
	if err != nil {
		t.Fatalf("Inspect after Stop: %v (Stop must leave the container in place)", err)
	}
	if got.Running || got.Exit == nil || got.Exit.Code != 0 {
		t.Fatalf("after Stop: Running %v Exit %+v, want stopped with code 0", got.Running, got.Exit)
	}
}

func (s *suite) testStopIgnoredTerm(t *testing.T) {
	inst := s.startServer(t, container.Spec{Env: map[string]string{"IGNORE_TERM": "1"}})
	const grace = time.Second
	began := time.Now()
	if err := s.rt.Stop(opContext(t), inst.ID, grace); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if took := time.Since(began); took < grace-100*time.Millisecond {
		t.Errorf("Stop returned after %s, before the %s grace was up", took, grace)
	}
	exit := s.wait(t, inst.ID)
	if exit.Code != 137 {
		t.Errorf("exit after the grace ran out = %+v, want 137 (killed)", exit)
	}
	s.waitLog(t, inst.ID, container.Stdout, "testapp got SIGTERM")

	if err := s.rt.Stop(opContext(t), inst.ID, grace); err != nil {
		t.Errorf("Stop of a stopped container: %v, want nil", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if again, err := s.rt.Wait(ctx, inst.ID); err != nil || again != exit {
		t.Errorf("Wait after exit = %+v, %v; want %+v at once", again, err, exit)
	}
}

func (s *suite) testExitCode(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := s.rt.Events(ctx)
	inst := s.startServer(t, container.Spec{})
	started := waitEvent(t, events, "start", func(ev container.Event) bool {
		return ev.ID == inst.ID && ev.Kind == container.EventStart
	})
	if started.Labels[container.LabelManaged] != "1" || started.Labels[container.LabelTest] != "1" {
		t.Errorf("start event labels = %v, want the container's", started.Labels)
	}

	followDone := make(chan error, 1)
	go func() {
		var err error
		for _, e := range s.rt.Logs(ctx, inst.ID, container.LogOptions{Follow: true}) {
			if e != nil {
				err = e
			}
		}
		followDone <- err
	}()

	s.get(t, inst.ID, "/exit?code=42")
	exit := s.wait(t, inst.ID)
	if exit.Code != 42 || exit.OOMKilled {
		t.Fatalf("exit = %+v, want code 42", exit)
	}
	ev := waitEvent(t, events, "exit", func(ev container.Event) bool {
		return ev.ID == inst.ID && ev.Kind == container.EventExit
	})
	if ev.Exit == nil || ev.Exit.Code != 42 {
		t.Errorf("exit event carries %+v, want code 42", ev.Exit)
	}
	select {
	case err := <-followDone:
		if err != nil {
			t.Errorf("following logs ended with %v", err)
		}
	case <-time.After(opTimeout):
		t.Error("following logs did not end when the container exited")
	}

	got, err := s.rt.Inspect(opContext(t), inst.ID)
	if err != nil {
		t.Fatalf("Inspect: %v", err)
	}
	if got.Running || got.Exit == nil || got.Exit.Code != 42 || got.Exit.At.IsZero() {
		t.Errorf("Inspect after exit: Running %v Exit %+v, want stopped with code 42 and a time", got.Running, got.Exit)
	}
	_, err = s.rt.Dial(opContext(t), inst.ID, serverPort)
	wantErr(t, "Dial of an exited container", err, container.ErrNotRunning)
}

func (s *suite) testOOM(t *testing.T) {
	inst := s.startServer(t, container.Spec{Limits: container.Limits{MemoryBytes: 64 << 20}})
	// The answer never comes: the process dies mid-request.
	resp, err := s.client(inst.ID).Get(fmt.Sprintf("http://container:%d/alloc?mib=200", serverPort))
	if err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Errorf("allocating 200 MiB under a 64 MiB limit succeeded: %s", body)
		}
	}
	exit := s.wait(t, inst.ID)
	if !exit.OOMKilled {
		t.Fatalf("exit = %+v, want OOMKilled", exit)
	}
	got, err := s.rt.Inspect(opContext(t), inst.ID)
	if err != nil {
		t.Fatalf("Inspect: %v", err)
	}
	if got.Exit == nil || !got.Exit.OOMKilled {
		t.Errorf("Inspect Exit = %+v, want OOMKilled", got.Exit)
	}
}

func (s *suite) testDestroy(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := s.rt.Events(ctx)
	inst := s.startServer(t, container.Spec{})
	if err := s.rt.Destroy(opContext(t), inst.ID); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	if err := s.rt.Destroy(opContext(t), inst.ID); err != nil {
		t.Fatalf("second Destroy: %v, want nil", err)
	}
	if err := s.rt.Destroy(opContext(t), "no-such-container-"+s.runID); err != nil {
		t.Fatalf("Destroy of an unknown id: %v, want nil", err)
	}
	waitEvent(t, events, "destroy", func(ev container.Event) bool {
		return ev.ID == inst.ID && ev.Kind == container.EventDestroy
	})
	_, err := s.rt.Inspect(opContext(t), inst.ID)
	wantErr(t, "Inspect of a destroyed container", err, container.ErrNotFound)
	list, err := s.rt.List(opContext(t), map[string]string{labelRun: s.runID})
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	for _, i := range list {
		if i.ID == inst.ID {
			t.Fatalf("List still holds destroyed container %s", inst.ID)
		}
	}
	// The runtime saw the exit (it killed the container), or does not know
	// the id any more; both are allowed.
	if _, err := s.rt.Wait(opContext(t), inst.ID); err != nil {
		wantErr(t, "Wait on a destroyed container", err, container.ErrNotFound)
	}
}

func (s *suite) testList(t *testing.T) {
	objA, objB := "obj-a-"+s.runID, "obj-b-"+s.runID
	a := s.start(t, container.Spec{Cmd: []string{"sleep", "1h"}, Labels: map[string]string{container.LabelObject: objA, container.LabelClass: "listed"}})
	b := s.start(t, container.Spec{Cmd: []string{"exit", "0"}, Labels: map[string]string{container.LabelObject: objB, container.LabelClass: "listed"}})
	s.wait(t, b.ID)

	ids := func(labels map[string]string) []string {
		list, err := s.rt.List(opContext(t), labels)
		if err != nil {
			t.Fatalf("List(%v): %v", labels, err)
		}
		var out []string
		for _, i := range list {
			if i.Labels[container.LabelManaged] != "1" {
				t.Errorf("List returned %s without %s=1", i.ID, container.LabelManaged)
			}
			if i.ID == b.ID && i.Running {
				t.Errorf("List says exited container %s runs", b.ID)
			}
			out = append(out, i.ID)
		}
		slices.Sort(out)
		return out
	}
	if got := ids(map[string]string{container.LabelObject: objA}); !slices.Equal(got, []string{a.ID}) {
		t.Errorf("List(object=%s) = %v, want [%s]", objA, got, a.ID)
	}
	if got := ids(map[string]string{container.LabelObject: objB}); !slices.Equal(got, []string{b.ID}) {
		t.Errorf("List(object=%s) = %v, want the exited [%s]", objB, got, b.ID)
	}
	both := ids(map[string]string{labelRun: s.runID, container.LabelClass: "listed", container.LabelObject: ""})
	if want := []string{a.ID, b.ID}; !slices.Equal(both, slices.Sorted(slices.Values(want))) {
		t.Errorf("List(class=listed, object=any) = %v, want %v", both, want)
	}
	if got := ids(map[string]string{labelRun: s.runID, container.LabelObject: "no-such-object"}); len(got) != 0 {
		t.Errorf("List(object=no-such-object) = %v, want none", got)
	}
}

func (s *suite) testExec(t *testing.T) {
	inst := s.startServer(t, container.Spec{Env: map[string]string{"CONTAINER_VAR": "container-value"}})
	id := inst.ID
	t.Run("Output", func(t *testing.T) {
		r := s.exec(t, id, container.ExecSpec{Cmd: []string{"/testapp", "echo", "hello", "exec"}})
		if r.stdout != "hello exec\n" || r.stderr != "" || r.code != 0 {
			t.Errorf("echo: %+v, want stdout %q and code 0", r, "hello exec\n")
		}
		r = s.exec(t, id, container.ExecSpec{Cmd: []string{"/testapp", "stderr", "to", "stderr"}})
		if r.stderr != "to stderr\n" || r.stdout != "" || r.code != 0 {
			t.Errorf("stderr: %+v, want stderr %q and code 0", r, "to stderr\n")
		}
		if r = s.exec(t, id, container.ExecSpec{Cmd: []string{"/testapp", "exit", "3"}}); r.code != 3 {
			t.Errorf("exit 3: code %d", r.code)
		}
	})
	t.Run("Stdin", func(t *testing.T) {
		in := "first line\nsecond line\n"
		r := s.exec(t, id, container.ExecSpec{Cmd: []string{"/testapp", "cat"}, Stdin: strings.NewReader(in)})
		if r.stdout != in || r.code != 0 {
			t.Errorf("cat: %+v, want stdout %q", r, in)
		}
		// Nil Stdin: the process reads EOF at once.
		if r := s.exec(t, id, container.ExecSpec{Cmd: []string{"/testapp", "cat"}}); r.stdout != "" || r.code != 0 {
			t.Errorf("cat without stdin: %+v, want no output and code 0", r)
		}
	})
	t.Run("EnvWorkDirUser", func(t *testing.T) {
		r := s.exec(t, id, container.ExecSpec{Cmd: []string{"/testapp", "env"}, Env: map[string]string{"EXEC_VAR": "exec-value"}})
		lines := strings.Split(r.stdout, "\n")
		for _, want := range []string{"EXEC_VAR=exec-value", "CONTAINER_VAR=container-value", "GREETING=" + buildArg} {
			if !slices.Contains(lines, want) {
				t.Errorf("exec env lacks %s: %q", want, lines)
			}
		}
		if r := s.exec(t, id, container.ExecSpec{Cmd: []string{"/testapp", "pwd"}}); r.stdout != "/\n" {
			t.Errorf("pwd = %q, want the image's WORKDIR /", r.stdout)
		}
		if r := s.exec(t, id, container.ExecSpec{Cmd: []string{"/testapp", "pwd"}, WorkDir: "/srv/app"}); r.stdout != "/srv/app\n" {
			t.Errorf("pwd with WorkDir /srv/app = %q", r.stdout)
		}
		if r := s.exec(t, id, container.ExecSpec{Cmd: []string{"/testapp", "id"}, User: "4321"}); r.stdout != "uid=4321\n" {
			t.Errorf("id with User 4321 = %q", r.stdout)
		}
	})
	t.Run("Signal", func(t *testing.T) {
		proc, err := s.rt.Exec(opContext(t), id, container.ExecSpec{Cmd: []string{"/testapp", "sleep", "1h"}})
		if err != nil {
			t.Fatalf("Exec sleep: %v", err)
		}
		if err := proc.Signal(opContext(t), syscall.SIGKILL); err != nil {
			t.Fatalf("Signal SIGKILL: %v", err)
		}
		code, err := proc.Wait(opContext(t))
		if err != nil || code != 137 {
			t.Fatalf("Wait after SIGKILL = %d, %v; want 137", code, err)
		}
		if err := proc.Signal(opContext(t), syscall.SIGKILL); err != nil {
			t.Errorf("Signal of an exited process: %v, want nil", err)
		}
	})
	t.Run("TTY", func(t *testing.T) {
		var out syncBuffer
		stdinR, stdinW := io.Pipe()
		defer stdinW.Close()
		proc, err := s.rt.Exec(opContext(t), id, container.ExecSpec{
			Cmd: []string{"/testapp", "tty"}, TTY: true, Size: container.TermSize{Cols: 80, Rows: 24},
			Stdin: stdinR, Stdout: &out,
		})
		if err != nil {
			t.Fatalf("Exec with a TTY: %v", err)
		}
		// The initial size may come through a resize right after the start,
		// so wait for it rather than demand it on the first line.
		waitOutput(t, &out, "tty=true cols=80 rows=24")
		if err := proc.Resize(opContext(t), container.TermSize{Cols: 132, Rows: 43}); err != nil {
			t.Fatalf("Resize: %v", err)
		}
		waitOutput(t, &out, "tty=true cols=132 rows=43")
		if _, err := io.WriteString(stdinW, "done\n"); err != nil {
			t.Fatalf("write to the TTY: %v", err)
		}
		code, err := proc.Wait(opContext(t))
		if err != nil || code != 0 {
			t.Fatalf("Wait = %d, %v; want 0 after a line on stdin", code, err)
		}
	})
	t.Run("NoTTY", func(t *testing.T) {
		if r := s.exec(t, id, container.ExecSpec{Cmd: []string{"/testapp", "tty"}}); r.stdout != "tty=false\n" {
			t.Errorf("tty without a terminal printed %q", r.stdout)
		}
	})
	t.Run("PID", func(t *testing.T) {
		// testapp pid prints its pid and runs until stdin ends.
		var out syncBuffer
		stdinR, stdinW := io.Pipe()
		defer stdinW.Close()
		proc, err := s.rt.Exec(opContext(t), id, container.ExecSpec{Cmd: []string{"/testapp", "pid"}, Stdin: stdinR, Stdout: &out})
		if err != nil {
			t.Fatalf("Exec pid: %v", err)
		}
		pid := proc.PID()
		if pid <= 1 {
			t.Errorf("PID() = %d, want the process's own pid (above the main process's 1)", pid)
		}
		waitOutput(t, &out, fmt.Sprintf("pid=%d\n", pid))
		err = proc.Resize(opContext(t), container.TermSize{Cols: 100, Rows: 30})
		wantErr(t, "Resize of a process without a terminal", err, container.ErrInvalid)
		stdinW.Close()
		if code, err := proc.Wait(opContext(t)); err != nil || code != 0 {
			t.Fatalf("Wait = %d, %v; want 0 once stdin ended", code, err)
		}
		if proc.PID() != pid {
			t.Errorf("PID() after the exit = %d, want it kept (%d)", proc.PID(), pid)
		}
	})
	t.Run("MissingExecutable", func(t *testing.T) {
		_, err := s.rt.Exec(opContext(t), id, container.ExecSpec{Cmd: []string{"/no-such-binary", "arg"}})
		wantErr(t, "Exec of a missing binary", err, container.ErrExecutableNotFound, "/no-such-binary")
	})
}

func (s *suite) testLogs(t *testing.T) {
	inst := s.startServer(t, container.Spec{})
	id := inst.ID
	s.waitLog(t, id, container.Stdout, "testapp listening on :8080")
	s.waitLog(t, id, container.Stderr, "testapp serving on 1 port(s)")

	before := "before-since-" + s.runID
	s.get(t, id, "/log?stream=stderr&text="+before)
	beforeLine := s.waitLog(t, id, container.Stderr, before)
	after := "after-since-" + s.runID
	s.get(t, id, "/log?stream=stdout&text="+after)
	s.waitLog(t, id, container.Stdout, after)

	all := s.logs(t, id, container.LogOptions{})
	for i, l := range all {
		if l.Time.IsZero() {
			t.Errorf("log line %q has no timestamp", l.Text)
		}
		if i > 0 && l.Time.Before(all[i-1].Time) {
			t.Errorf("log line %q (%s) is older than the one before it (%s)", l.Text, l.Time, all[i-1].Time)
		}
	}

	since := texts(s.logs(t, id, container.LogOptions{Since: beforeLine.Time.Add(time.Nanosecond)}))
	if !slices.Contains(since, fmt.Sprintf("stdout:%q", after)) || slices.Contains(since, fmt.Sprintf("stderr:%q", before)) {
		t.Errorf("Logs since just after %q = %v, want %q and not the earlier line", before, since, after)
	}

	tail := s.logs(t, id, container.LogOptions{Tail: 1})
	if len(tail) != 1 || tail[0].Text != after {
		t.Errorf("Logs with Tail 1 = %v, want only %q", texts(tail), after)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	followed := make(chan container.LogLine, 100)
	followErr := make(chan error, 1)
	go func() {
		defer close(followed)
		for l, err := range s.rt.Logs(ctx, id, container.LogOptions{Follow: true, Tail: 1}) {
			if err != nil {
				followErr <- err
				return
			}
			followed <- l
		}
	}()
	// The marker is written after Logs was called, so only following can
	// deliver it.
	marker := "followed-" + s.runID
	s.get(t, id, "/log?stream=stdout&text="+marker)
	deadline := time.After(opTimeout)
	for seen := false; !seen; {
		select {
		case l, ok := <-followed:
			if !ok {
				var err error
				select {
				case err = <-followErr:
				default:
				}
				t.Fatalf("following logs ended without delivering %q (error %v)", marker, err)
			}
			seen = l.Text == marker
		case <-deadline:
			t.Fatalf("following logs did not deliver %q", marker)
		}
	}
	cancel()
	select {
	case _, ok := <-followed:
		for ok {
			_, ok = <-followed
		}
		select {
		case err := <-followErr:
			t.Errorf("following logs ended with %v after ctx ended; want no error", err)
		default:
		}
	case <-time.After(opTimeout):
		t.Error("following logs did not end when ctx ended")
	}
}

func (s *suite) testStats(t *testing.T) {
	const limit = 256 << 20
	inst := s.startServer(t, container.Spec{Limits: container.Limits{MemoryBytes: limit}})
	s.get(t, inst.ID, "/alloc?mib=32")
	st, err := s.rt.Stats(opContext(t), inst.ID)
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	if st.CPU <= 0 {
		t.Errorf("Stats CPU = %s after serving requests, want more than 0", st.CPU)
	}
	if st.MemoryBytes < 16<<20 {
		t.Errorf("Stats memory = %d bytes after allocating 32 MiB, want at least 16 MiB", st.MemoryBytes)
	}
	if st.MemoryLimitBytes != limit {
		t.Errorf("Stats memory limit = %d, want %d", st.MemoryLimitBytes, limit)
	}
	if st.At.IsZero() {
		t.Error("Stats has no time")
	}

	unlimited := s.startServer(t, container.Spec{})
	st, err = s.rt.Stats(opContext(t), unlimited.ID)
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	if st.MemoryLimitBytes != 0 {
		t.Errorf("Stats memory limit of an unlimited container = %d, want 0", st.MemoryLimitBytes)
	}
}

func (s *suite) testPause(t *testing.T) {
	pauser, ok := s.rt.(container.Pauser)
	if !ok {
		t.Skip("the runtime does not implement container.Pauser")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := s.rt.Events(ctx)
	inst := s.startServer(t, container.Spec{})
	conn, err := s.rt.Dial(opContext(t), inst.ID, serverPort)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer conn.Close()

	if err := pauser.Pause(opContext(t), inst.ID); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	waitEvent(t, events, "pause", func(ev container.Event) bool { return ev.ID == inst.ID && ev.Kind == container.EventPause })
	if got, err := s.rt.Inspect(opContext(t), inst.ID); err != nil || !got.Paused {
		t.Fatalf("Inspect of a paused container: Paused %v, %v", got.Paused, err)
	}
	// A frozen process cannot answer.
	if _, err := io.WriteString(conn, "GET /echo HTTP/1.1\r\nHost: container\r\nConnection: close\r\n\r\n"); err != nil {
		t.Fatalf("write a request: %v", err)
	}
	conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := conn.Read(make([]byte, 1)); n > 0 || err == nil || !isTimeout(err) {
		t.Fatalf("a paused container answered: read %d bytes, %v; want a timeout", n, err)
	}

	if err := pauser.Unpause(opContext(t), inst.ID); err != nil {
		t.Fatalf("Unpause: %v", err)
	}
	waitEvent(t, events, "unpause", func(ev container.Event) bool { return ev.ID == inst.ID && ev.Kind == container.EventUnpause })
	if got, err := s.rt.Inspect(opContext(t), inst.ID); err != nil || got.Paused || !got.Running {
		t.Fatalf("Inspect after Unpause: Running %v Paused %v, %v", got.Running, got.Paused, err)
	}
	conn.SetReadDeadline(time.Now().Add(opTimeout))
	reply, err := io.ReadAll(conn)
	if err != nil || !strings.HasPrefix(string(reply), "HTTP/1.1 200") {
		t.Fatalf("after Unpause the request got %q, %v; want a 200", reply, err)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func (s *suite) testInternet(t *testing.T) {
	check := func(t *testing.T, internet bool) {
		inst := s.startServer(t, container.Spec{Internet: internet})
		var n testapp.Network
		body := s.get(t, inst.ID, "/net")
		if err := json.Unmarshal([]byte(body), &n); err != nil {
			t.Fatalf("/net answered %q: %v", body, err)
		}
		if internet {
			if !n.DefaultRoute || !slices.ContainsFunc(n.Interfaces, func(i string) bool { return i != "lo" }) {
				t.Errorf("with Internet: %+v, want an interface besides lo and a default route", n)
			}
			return
		}
		if n.DefaultRoute || !slices.Equal(n.Interfaces, []string{"lo"}) {
			t.Errorf("without Internet: %+v, want only lo and no default route", n)
		}
	}
	t.Run("Off", func(t *testing.T) { t.Parallel(); check(t, false) })
	t.Run("On", func(t *testing.T) { t.Parallel(); check(t, true) })
}

func (s *suite) testUnknownID(t *testing.T) {
	id := "no-such-container-" + s.runID
	ctx := opContext(t)
	_, err := s.rt.Inspect(ctx, id)
	wantErr(t, "Inspect", err, container.ErrNotFound)
	_, err = s.rt.Wait(ctx, id)
	wantErr(t, "Wait", err, container.ErrNotFound)
	wantErr(t, "Signal", s.rt.Signal(ctx, id, syscall.SIGTERM), container.ErrNotFound)
	wantErr(t, "Stop", s.rt.Stop(ctx, id, time.Second), container.ErrNotFound)
	_, err = s.rt.Dial(ctx, id, serverPort)
	wantErr(t, "Dial", err, container.ErrNotFound)
	_, err = s.rt.Exec(ctx, id, container.ExecSpec{Cmd: []string{"/testapp", "echo"}})
	wantErr(t, "Exec", err, container.ErrNotFound)
	_, err = s.rt.Stats(ctx, id)
	wantErr(t, "Stats", err, container.ErrNotFound)
	var logsErr error
	for _, err := range s.rt.Logs(ctx, id, container.LogOptions{}) {
		logsErr = err
		break
	}
	wantErr(t, "Logs", logsErr, container.ErrNotFound)
	if p, ok := s.rt.(container.Pauser); ok {
		wantErr(t, "Pause", p.Pause(ctx, id), container.ErrNotFound)
	}
}
