package fake_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/container"
	"github.com/berth-dev/berth/internal/container/fake"
	"github.com/berth-dev/berth/internal/container/testapp"
)

// buildContext writes files into a fresh build context.
func buildContext(t *testing.T, files map[string]string) string {
	dir := t.TempDir()
	for name, text := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func build(t *testing.T, rt *fake.Runtime, dockerfile string, args map[string]string) (container.Image, string, error) {
	dir := buildContext(t, map[string]string{"Dockerfile": dockerfile, "testapp": "x", "app/bin/tool": "x", "app/etc/conf": "x"})
	var progress bytes.Buffer
	img, err := rt.Build(context.Background(), container.BuildSpec{ContextDir: dir, Tag: "t:1", Args: args, Progress: &progress})
	return img, progress.String(), err
}

// run starts the image and returns what `testapp env` printed: the
// container's environment.
func runEnv(t *testing.T, rt *fake.Runtime, ref string) []string {
	ctx := context.Background()
	inst, err := rt.Start(ctx, container.Spec{Image: ref, Cmd: []string{"env"}})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if exit, err := rt.Wait(ctx, inst.ID); err != nil || exit.Code != 0 {
		t.Fatalf("Wait = %+v, %v", exit, err)
	}
	var env []string
	for l, err := range rt.Logs(ctx, inst.ID, container.LogOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		env = append(env, l.Text)
	}
	return env
}

func TestBuildExpandsArgsAndEnv(t *testing.T) {
	rt := newRuntime(fake.Options{})
	img, progress, err := build(t, rt, `
# a comment
ARG BASE=ignored
FROM scratch
ARG NAME=default-name
ARG UNSET
ENV GREETING="hello ${NAME}" \
    LITERAL='$NAME stays' FALLBACK=${UNSET:-fallback} PLUS=${NAME:+set}
ENV LEGACY with spaces
LABEL "com.example.name"="${NAME}" plain=1
EXPOSE 8080 9090/tcp 53/udp
COPY testapp /testapp
ENTRYPOINT ["/testapp"]
`, map[string]string{"NAME": "from-arg", "EXTRA": "unused"})
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	if !slices.Equal(img.ExposedPorts, []int{8080, 9090}) {
		t.Errorf("ExposedPorts = %v, want [8080 9090]", img.ExposedPorts)
	}
	if img.Labels["com.example.name"] != "from-arg" || img.Labels["plain"] != "1" {
		t.Errorf("labels = %v", img.Labels)
	}
	if !strings.Contains(progress, "[EXTRA]") || !strings.Contains(progress, "Step 1/") {
		t.Errorf("progress %q lacks the steps or the unused-arg warning", progress)
	}
	env := runEnv(t, rt, "t:1")
	for _, want := range []string{"GREETING=hello from-arg", "LITERAL=$NAME stays", "FALLBACK=fallback", "PLUS=set", "LEGACY=with spaces"} {
		if !slices.Contains(env, want) {
			t.Errorf("env lacks %q: %q", want, env)
		}
	}
	if slices.ContainsFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "NAME=") }) {
		t.Errorf("an ARG leaked into the image's env: %q", env)
	}
}

func TestBuildFromLocalImageAndCommandForms(t *testing.T) {
	rt := newRuntime(fake.Options{Programs: map[string]fake.Program{"/usr/bin/testapp": testapp.Main}})
	ctx := context.Background()
	if _, _, err := build(t, rt, "FROM scratch\nCOPY testapp /usr/bin/testapp\nENV BASE=1\nENTRYPOINT [\"testapp\"]\nCMD [\"echo\", \"base-cmd\"]\n", nil); err != nil {
		t.Fatalf("Build base: %v", err)
	}
	buildChild := func(dockerfile string) {
		dir := buildContext(t, map[string]string{"Dockerfile": dockerfile})
		if _, err := rt.Build(ctx, container.BuildSpec{ContextDir: dir, Tag: "child"}); err != nil {
			t.Fatalf("Build child: %v", err)
		}
	}
	// The child inherits the base's files, env, ENTRYPOINT and CMD; the
	// bare name "testapp" is found through PATH.
	buildChild("FROM t:1\nLABEL child=1\n")
	if env := runEnv(t, rt, "child"); !slices.Contains(env, "BASE=1") {
		t.Fatalf("child env %q lacks the base's BASE=1", env)
	}
	inst, err := rt.Start(ctx, container.Spec{Image: "child"})
	if err != nil {
		t.Fatalf("Start child: %v", err)
	}
	rt.Wait(ctx, inst.ID)
	if lines := logTexts(t, rt, inst.ID); !slices.Equal(lines, []string{"base-cmd"}) {
		t.Fatalf("child with the inherited CMD printed %q, want [base-cmd]", lines)
	}
	// A shell-form ENTRYPOINT runs /bin/sh, which the image lacks.
	buildChild("FROM t:1\nENTRYPOINT testapp echo shell form\n")
	_, err = rt.Start(ctx, container.Spec{Image: "child"})
	if !errors.Is(err, container.ErrExecutableNotFound) || !strings.Contains(err.Error(), "/bin/sh") {
		t.Fatalf("Start of a shell-form ENTRYPOINT without /bin/sh = %v, want ErrExecutableNotFound naming /bin/sh", err)
	}
	// An ENTRYPOINT resets the inherited CMD, so testapp gets no command
	// and serves.
	buildChild("FROM t:1\nENTRYPOINT [\"testapp\"]\n")
	inst, err = rt.Start(ctx, container.Spec{Image: "child"})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	defer rt.Destroy(ctx, inst.ID)
	waitPort(t, rt, inst.ID, 8080)
}

func logTexts(t *testing.T, rt *fake.Runtime, id string) []string {
	var out []string
	for l, err := range rt.Logs(context.Background(), id, container.LogOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, l.Text)
	}
	return out
}

func TestBuildCopyLayout(t *testing.T) {
	rt := newRuntime(fake.Options{Programs: map[string]fake.Program{
		"/opt/bin/tool": testapp.Main, "/opt/tool2": testapp.Main, "/work/testapp": testapp.Main,
	}})
	if _, _, err := build(t, rt, "FROM scratch\nCOPY app /opt/\nCOPY app/bin/tool /opt/tool2\nWORKDIR /work\nCOPY testapp .\n", nil); err != nil {
		t.Fatalf("Build: %v", err)
	}
	for _, cmd := range [][]string{{"/opt/bin/tool", "pwd"}, {"/opt/tool2", "pwd"}, {"./testapp", "pwd"}} {
		inst, err := rt.Start(context.Background(), container.Spec{Image: "t:1", Entrypoint: cmd})
		if err != nil {
			t.Errorf("Start %v: %v", cmd, err)
			continue
		}
		if exit, _ := rt.Wait(context.Background(), inst.ID); exit.Code != 0 {
			t.Errorf("%v exited %d", cmd, exit.Code)
		}
	}
}

func TestBuildErrors(t *testing.T) {
	for _, tc := range []struct {
		name, dockerfile string
		want             error
		mention          string
	}{
		{"unknown instruction", "FROM scratch\nFROBNICATE x\n", container.ErrInvalid, "FROBNICATE"},
		{"unsupported instruction", "FROM scratch\nADD x /x\n", container.ErrBuildFailed, "ADD"},
		{"before FROM", "ENV A=1\nFROM scratch\n", container.ErrInvalid, "ENV"},
		{"no FROM", "ARG A\n", container.ErrInvalid, "FROM"},
		{"missing base", "FROM nope:1\n", container.ErrImageNotFound, "nope:1"},
		{"missing COPY source", "FROM scratch\nCOPY nope /nope\n", container.ErrBuildFailed, "nope"},
		{"COPY outside context", "FROM scratch\nCOPY ../x /x\n", container.ErrBuildFailed, "outside"},
		{"RUN shell form without a shell", "FROM scratch\nRUN echo hi\n", container.ErrBuildFailed, "/bin/sh"},
		{"RUN fails", "FROM scratch\nCOPY testapp /testapp\nRUN [\"/testapp\", \"fail-build\", \"step-output\"]\n", container.ErrBuildFailed, "step-output"},
		{"bad port", "FROM scratch\nEXPOSE http\n", container.ErrInvalid, "http"},
		{"multi-stage", "FROM scratch\nFROM scratch\n", container.ErrBuildFailed, "multi-stage"},
		{"unterminated quote", "FROM scratch\nENV A=\"x\n", container.ErrInvalid, "quote"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := build(t, newRuntime(fake.Options{}), tc.dockerfile, nil)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.mention) {
				t.Fatalf("Build = %v, want an error wrapping %q that mentions %q", err, tc.want, tc.mention)
			}
		})
	}
	_, err := newRuntime(fake.Options{}).Build(context.Background(), container.BuildSpec{ContextDir: filepath.Join(t.TempDir(), "gone")})
	if !errors.Is(err, container.ErrInvalid) || !strings.Contains(err.Error(), "gone") {
		t.Fatalf("Build with a missing context = %v, want ErrInvalid naming it", err)
	}
}

func TestRemoveImageByIDAndRetag(t *testing.T) {
	rt := newRuntime(fake.Options{})
	ctx := context.Background()
	first, _, err := build(t, rt, "FROM scratch\nLABEL v=1\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	second, _, err := build(t, rt, "FROM scratch\nLABEL v=2\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := rt.Resolve(ctx, "t:1"); got.ID != second.ID {
		t.Fatalf("t:1 resolves to %s, want the newer build %s", got.ID, second.ID)
	}
	// The older image lost its tag but is still there by id.
	if got, err := rt.Resolve(ctx, first.ID); err != nil || len(got.Refs) != 0 {
		t.Fatalf("Resolve(first id) = %+v, %v; want the untagged image", got, err)
	}
	if err := rt.RemoveImage(ctx, second.ID[:19]); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Resolve(ctx, "t:1"); !errors.Is(err, container.ErrImageNotFound) {
		t.Fatalf("Resolve after removing by id prefix = %v, want ErrImageNotFound", err)
	}
}
