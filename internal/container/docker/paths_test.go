package docker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/berth-dev/berth/internal/container"
	"github.com/berth-dev/berth/internal/testutil"
)

// TestDriverPaths drives the paths where the Docker driver has logic of its
// own beyond one engine call: the exit hub, OOM verdicts, grace-period stops,
// exec lookups and the engine's exec failure text, TTY resize, log options.
func TestDriverPaths(t *testing.T) {
	rt := newTestRuntime(t, Options{})
	ctx := testCtx(t, 3*time.Minute)

	t.Run("oom", func(t *testing.T) {
		inst := startApp(t, rt, container.Spec{Limits: container.Limits{MemoryBytes: 32 << 20}})
		if err := waitHTTP(ctx, rt, inst.ID, 8080, "/echo"); err != nil {
			t.Fatal(err)
		}
		go getThroughDial(ctx, rt, inst.ID, 8080, "/alloc?mib=128")
		exit, err := rt.Wait(ctx, inst.ID)
		if err != nil || !exit.OOMKilled {
			t.Errorf("Wait = %+v, %v; want OOMKilled", exit, err)
		}
		got, err := rt.Inspect(ctx, inst.ID)
		if err != nil || got.Exit == nil || !got.Exit.OOMKilled || got.Running {
			t.Errorf("Inspect = %+v, %v", got, err)
		}
	})

	t.Run("stop grace then kill", func(t *testing.T) {
		inst := startApp(t, rt, container.Spec{Env: map[string]string{"IGNORE_TERM": "1"}})
		if err := waitHTTP(ctx, rt, inst.ID, 8080, "/echo"); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := rt.Stop(ctx, inst.ID, 300*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		took := time.Since(start)
		got, _ := rt.Inspect(ctx, inst.ID)
		if got.Running || got.Exit == nil || got.Exit.Code != 137 {
			t.Errorf("after Stop: %+v exit %+v", got, got.Exit)
		}
		if took < 300*time.Millisecond || took > 5*time.Second {
			t.Errorf("Stop took %v, want the 300ms grace then a kill", took)
		}
		if err := rt.Stop(ctx, inst.ID, time.Second); err != nil {
			t.Errorf("Stop of a stopped container: %v", err)
		}
	})

	t.Run("stop sigterm reaches pid 1 app", func(t *testing.T) {
		inst := startApp(t, rt, container.Spec{Env: map[string]string{"TERM_EXIT_CODE": "42"}})
		if err := waitHTTP(ctx, rt, inst.ID, 8080, "/echo"); err != nil {
			t.Fatal(err)
		}
		if err := rt.Stop(ctx, inst.ID, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		exit, err := rt.Wait(ctx, inst.ID)
		if err != nil || exit.Code != 42 {
			t.Errorf("exit %+v %v, want code 42 from the app's SIGTERM handler", exit, err)
		}
	})

	t.Run("name conflict", func(t *testing.T) {
		name := "berth-test-" + randomSuffix()
		startApp(t, rt, container.Spec{Name: name})
		_, err := rt.Start(ctx, container.Spec{Name: name, Image: testAppImage(t, rt), Labels: testLabels})
		if !errors.Is(err, container.ErrAlreadyExists) {
			t.Errorf("second Start = %v, want ErrAlreadyExists", err)
		}
	})

	t.Run("missing entrypoint", func(t *testing.T) {
		// docker-init would start and then fail to exec it; Start looks
		// it up first and leaves nothing behind.
		prog := "/no/such/prog-" + randomSuffix()
		inst, err := rt.Start(ctx, container.Spec{Image: testAppImage(t, rt), Entrypoint: []string{prog}, Labels: testLabels})
		if err == nil {
			rt.Destroy(ctx, inst.ID)
		}
		if !errors.Is(err, container.ErrExecutableNotFound) || !strings.Contains(err.Error(), prog) {
			t.Errorf("Start = %v, want ErrExecutableNotFound naming %s", err, prog)
		}
		all, err := rt.api.ContainerList(ctx, client.ContainerListOptions{All: true})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range all.Items {
			if strings.Contains(c.Command, prog) {
				t.Errorf("failed Start left %s behind", c.ID)
			}
		}
	})

	t.Run("wait right after destroy", func(t *testing.T) {
		inst := startApp(t, rt, container.Spec{})
		if err := rt.Destroy(ctx, inst.ID); err != nil {
			t.Fatal(err)
		}
		exit, err := rt.Wait(ctx, inst.ID)
		if err != nil || exit.Code != 137 {
			t.Errorf("Wait = %+v, %v; want the kill's exit 137", exit, err)
		}
	})

	inst := startApp(t, rt, container.Spec{})
	if err := waitHTTP(ctx, rt, inst.ID, 8080, "/echo"); err != nil {
		t.Fatal(err)
	}

	t.Run("exec lookups", func(t *testing.T) {
		for _, cmd := range []string{"nosuch", "/bin/nosuch", "./nosuch"} {
			_, err := rt.Exec(ctx, inst.ID, container.ExecSpec{Cmd: []string{cmd}})
			if !errors.Is(err, container.ErrExecutableNotFound) || !strings.Contains(err.Error(), cmd) {
				t.Errorf("Exec(%q) = %v, want ErrExecutableNotFound naming it", cmd, err)
			}
		}
		// A PATH that lacks /bin hides testapp.
		_, err := rt.Exec(ctx, inst.ID, container.ExecSpec{Cmd: []string{"testapp"}, Env: map[string]string{"PATH": "/usr/bin"}})
		if !errors.Is(err, container.ErrExecutableNotFound) {
			t.Errorf("Exec with PATH=/usr/bin = %v, want ErrExecutableNotFound", err)
		}
		var out bytes.Buffer
		p, err := rt.Exec(ctx, inst.ID, container.ExecSpec{Cmd: []string{"testapp", "cat"}, Stdin: strings.NewReader("in\nput\n"), Stdout: &out})
		if err != nil {
			t.Fatal(err)
		}
		if code, err := p.Wait(ctx); code != 0 || err != nil || out.String() != "in\nput\n" {
			t.Errorf("cat: %d %v %q", code, err, out.String())
		}
		p, err = rt.Exec(ctx, inst.ID, container.ExecSpec{Cmd: []string{"testapp", "exit", "3"}})
		if err != nil {
			t.Fatal(err)
		}
		if code, err := p.Wait(ctx); code != 3 || err != nil {
			t.Errorf("exit 3: %d %v", code, err)
		}
	})

	t.Run("exec failure reported by the engine", func(t *testing.T) {
		// A dangling symlink passes the lookup (it exists); the runtime
		// then fails to exec it and the engine reports that as output.
		dir := t.TempDir()
		writeFiles(t, dir, map[string]string{"Dockerfile": "FROM " + testAppImage(t, rt) + "\nCOPY links/ /links/\n"})
		os.MkdirAll(filepath.Join(dir, "links"), 0o755)
		if err := os.Symlink("/no/such/program", filepath.Join(dir, "links", "ghost")); err != nil {
			t.Fatal(err)
		}
		ref := "berth-test/ghost:" + randomSuffix()
		removeImage(t, rt, ref)
		if _, err := rt.Build(ctx, container.BuildSpec{ContextDir: dir, Tag: ref, Labels: testLabels}); err != nil {
			t.Fatal(err)
		}
		ghost := startApp(t, rt, container.Spec{Image: ref})
		var out bytes.Buffer
		p, err := rt.Exec(ctx, ghost.ID, container.ExecSpec{Cmd: []string{"/links/ghost"}, Stdout: &out})
		if err != nil {
			t.Fatalf("Exec: %v (the lookup was meant to pass)", err)
		}
		code, err := p.Wait(ctx)
		if !errors.Is(err, container.ErrExecutableNotFound) {
			t.Errorf("Wait = %d, %v; want ErrExecutableNotFound (output %q)", code, err, out.String())
		}
		// A file that exists but may not be executed is not "not found".
		p, err = rt.Exec(ctx, ghost.ID, container.ExecSpec{Cmd: []string{"/etc/hostname"}})
		if err != nil {
			t.Fatal(err)
		}
		if code, err := p.Wait(ctx); code != 126 || err != nil {
			t.Errorf("exec of a non-executable file: %d, %v; want 126, nil", code, err)
		}
	})

	t.Run("tty resize", func(t *testing.T) {
		pr, pw := io.Pipe()
		var out syncBuffer
		p, err := rt.Exec(ctx, inst.ID, container.ExecSpec{Cmd: []string{"testapp", "tty"}, TTY: true,
			Size: container.TermSize{Cols: 80, Rows: 24}, Stdin: pr, Stdout: &out})
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, testCtx(t, 10*time.Second), func() bool { return strings.Contains(out.String(), "cols=80 rows=24") }, out.String)
		if err := p.Resize(ctx, container.TermSize{Cols: 100, Rows: 40}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, testCtx(t, 10*time.Second), func() bool { return strings.Contains(out.String(), "cols=100 rows=40") }, out.String)
		pw.Write([]byte("done\n"))
		pw.Close()
		if code, err := p.Wait(ctx); code != 0 || err != nil {
			t.Errorf("tty exit %d %v; out %q", code, err, out.String())
		}
	})

	t.Run("logs", func(t *testing.T) {
		for _, text := range []string{"one", "two", "three"} {
			getThroughDial(ctx, rt, inst.ID, 8080, "/log?stream=stdout&text="+text)
		}
		// The engine stamps a line when it reads it, asynchronously: take the
		// cut-off from the stamp of "three" rather than from our clock.
		var mid time.Time
		waitFor(t, testCtx(t, 10*time.Second), func() bool {
			for line := range rt.Logs(ctx, inst.ID, container.LogOptions{}) {
				if line.Text == "three" {
					mid = line.Time.Add(time.Nanosecond)
				}
			}
			return !mid.IsZero()
		}, func() string { return "no line three" })
		getThroughDial(ctx, rt, inst.ID, 8080, "/log?stream=stderr&text=four")
		// The engine writes container output to its log asynchronously.
		var all []container.LogLine
		waitFor(t, testCtx(t, 10*time.Second), func() bool {
			all = all[:0]
			for line, err := range rt.Logs(ctx, inst.ID, container.LogOptions{}) {
				if err != nil {
					t.Fatal(err)
				}
				all = append(all, line)
			}
			return len(all) > 0 && all[len(all)-1].Text == "four"
		}, func() string { return fmt.Sprint(all) })
		if n := len(all); n < 4 || all[n-1].Text != "four" || all[n-1].Stream != container.Stderr || all[n-2].Text != "three" || all[n-1].Time.IsZero() {
			t.Errorf("logs %+v", all)
		}
		var tail []string
		for line := range rt.Logs(ctx, inst.ID, container.LogOptions{Tail: 2}) {
			tail = append(tail, line.Text)
		}
		if strings.Join(tail, ",") != "three,four" {
			t.Errorf("tail 2 = %v", tail)
		}
		var since []string
		for line := range rt.Logs(ctx, inst.ID, container.LogOptions{Since: mid}) {
			since = append(since, line.Text)
		}
		if strings.Join(since, ",") != "four" {
			t.Errorf("since = %v", since)
		}
		// Follow: stop after the first line; the iterator must end cleanly.
		fctx, cancel := context.WithCancel(ctx)
		for line, err := range rt.Logs(fctx, inst.ID, container.LogOptions{Follow: true, Tail: 1}) {
			if err != nil || line.Text != "four" {
				t.Errorf("follow: %q %v", line.Text, err)
			}
			break
		}
		// Follow ended by ctx: no error.
		go func() { time.Sleep(100 * time.Millisecond); cancel() }()
		for _, err := range rt.Logs(fctx, inst.ID, container.LogOptions{Follow: true}) {
			if err != nil {
				t.Errorf("follow after cancel: %v", err)
			}
		}
	})

	t.Run("signal", func(t *testing.T) {
		if err := rt.Signal(ctx, inst.ID, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		exit, err := rt.Wait(ctx, inst.ID)
		if err != nil || exit.Code != 137 {
			t.Errorf("exit %+v %v", exit, err)
		}
		if err := rt.Signal(ctx, inst.ID, syscall.SIGTERM); !errors.Is(err, container.ErrNotRunning) {
			t.Errorf("Signal stopped = %v", err)
		}
		if _, err := rt.Exec(ctx, inst.ID, container.ExecSpec{Cmd: []string{"testapp"}}); !errors.Is(err, container.ErrNotRunning) {
			t.Errorf("Exec stopped = %v", err)
		}
		if _, err := rt.Dial(ctx, inst.ID, 8080); !errors.Is(err, container.ErrNotRunning) {
			t.Errorf("Dial stopped = %v", err)
		}
		if n := rt.netns.len(); n != 0 {
			t.Errorf("%d namespace handles open after every container stopped", n)
		}
		if err := rt.Destroy(ctx, inst.ID); err != nil {
			t.Fatal(err)
		}
		if err := rt.Destroy(ctx, inst.ID); err != nil {
			t.Errorf("second Destroy: %v", err)
		}
		if _, err := rt.Inspect(ctx, inst.ID); !errors.Is(err, container.ErrNotFound) {
			t.Errorf("Inspect destroyed = %v", err)
		}
	})
}

type syncBuffer struct{ testutil.SyncBuffer }

func waitFor(t *testing.T, ctx context.Context, cond func() bool, what func() string) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("condition not met: %s", what())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// TestEvents checks the kinds, order, labels and exit details the single
// stream delivers for one container's life.
func TestEvents(t *testing.T) {
	rt := newTestRuntime(t, Options{})
	ctx := testCtx(t, time.Minute)
	events := rt.Events(ctx)
	inst := startApp(t, rt, container.Spec{Labels: map[string]string{container.LabelApp: "evapp"}})
	if err := waitHTTP(ctx, rt, inst.ID, 8080, "/echo"); err != nil {
		t.Fatal(err)
	}
	if err := rt.Pause(ctx, inst.ID); err != nil {
		t.Fatal(err)
	}
	if err := rt.Unpause(ctx, inst.ID); err != nil {
		t.Fatal(err)
	}
	go getThroughDial(ctx, rt, inst.ID, 8080, "/exit?code=7")
	if exit, err := rt.Wait(ctx, inst.ID); err != nil || exit.Code != 7 {
		t.Fatalf("Wait = %+v, %v", exit, err)
	}
	if err := rt.Destroy(ctx, inst.ID); err != nil {
		t.Fatal(err)
	}
	// The runtime remembers the exit of a destroyed container.
	if exit, err := rt.Wait(ctx, inst.ID); err != nil || exit.Code != 7 {
		t.Errorf("Wait after Destroy = %+v, %v", exit, err)
	}
	want := []container.EventKind{container.EventStart, container.EventPause, container.EventUnpause, container.EventExit, container.EventDestroy}
	var got []container.EventKind
	for len(got) < len(want) {
		select {
		case ev := <-events:
			if ev.ID != inst.ID {
				continue
			}
			got = append(got, ev.Kind)
			if ev.Labels[container.LabelApp] != "evapp" || ev.Labels[container.LabelManaged] != "1" || ev.Labels["name"] != "" {
				t.Errorf("%s labels = %v", ev.Kind, ev.Labels)
			}
			if ev.At.IsZero() || ev.Dropped {
				t.Errorf("%s: At %v Dropped %v", ev.Kind, ev.At, ev.Dropped)
			}
			if ev.Kind == container.EventExit && (ev.Exit == nil || ev.Exit.Code != 7) {
				t.Errorf("exit event %+v", ev.Exit)
			}
		case <-ctx.Done():
			t.Fatalf("events so far %v, want %v", got, want)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("events %v, want %v", got, want)
	}
	if n := rt.netns.len(); n != 0 {
		t.Errorf("%d namespace handles still open", n)
	}
}
