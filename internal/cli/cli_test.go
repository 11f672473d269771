package cli

import (
	"bytes"
	"errors"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/testutil"
)

func run(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	root := newRoot(&out, &errOut)
	root.SetArgs(args)
	err = root.Execute()
	return out.String(), errOut.String(), err
}

func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"dev", "--var", "NOCOLON"}, `--var "NOCOLON": want KEY:VALUE`},
		{[]string{"dev", "--port", "70000"}, "--port 70000"},
		{[]string{"dev", "a", "b"}, "at most one project directory"},
		{[]string{"dev", "--no-such-flag"}, "unknown flag"},
		{[]string{"container", "run"}, "exactly one DOCKERFILE or IMAGE"},
		{[]string{"container", "run", "--env", "X", "img"}, `--env "X": want KEY=VALUE`},
		{[]string{"container", "run", "--instance-type", "huge", "img"}, `instance type "huge"`},
	} {
		_, _, err := run(t, tc.args...)
		var usage usageError
		if !errors.As(err, &usage) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("berth %v: err = %v, want a usage error containing %q", tc.args, err, tc.want)
		}
	}
}

func TestColonPairs(t *testing.T) {
	got, err := colonPairs("--var", []string{"A:1", "B:x:y", "C:"})
	if err != nil || got["A"] != "1" || got["B"] != "x:y" || got["C"] != "" {
		t.Fatalf("colonPairs = %v, %v", got, err)
	}
}

func TestRepoName(t *testing.T) {
	for in, want := range map[string]string{
		"examples/My App/Dockerfile": "my-app",
		"./svc/Dockerfile":           "svc",
		"/x/Web_1.2/Dockerfile":      "web_1.2",
	} {
		if got := repoName(in); got != want {
			t.Errorf("repoName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestHelpListsCommands(t *testing.T) {
	out, _, err := run(t, "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"dev", "container"} {
		if !strings.Contains(out, cmd) {
			t.Errorf("help lacks %q:\n%s", cmd, out)
		}
	}
}

// berth dev runs Go code on devProcessors processors unless GOMAXPROCS is
// set.
func TestDevProcessors(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	runtime.GOMAXPROCS(2)
	useDevProcessors(func(string) string { return "" })
	if n := runtime.GOMAXPROCS(0); n != devProcessors {
		t.Errorf("GOMAXPROCS unset: %d processors, want %d", n, devProcessors)
	}
	runtime.GOMAXPROCS(2)
	useDevProcessors(func(k string) string {
		if k == "GOMAXPROCS" {
			return "2"
		}
		return ""
	})
	if n := runtime.GOMAXPROCS(0); n != 2 {
		t.Errorf("GOMAXPROCS=2: %d processors, want 2", n)
	}
}

// berth container finds the engine as berth dev does without a config:
// $WRANGLER_DOCKER_HOST before $DOCKER_HOST, and an engine that is not
// there is reported with where it was looked for.
func TestContainerListEngine(t *testing.T) {
	engine := os.Getenv("DOCKER_HOST")
	if engine == "" {
		engine = "unix:///var/run/docker.sock"
	}
	t.Setenv("HOME", t.TempDir()) // no docker CLI context to fall back on
	t.Setenv("DOCKER_HOST", "")
	t.Setenv("WRANGLER_DOCKER_HOST", "unix:///nonexistent/berth-test.sock")
	_, _, err := run(t, "container", "list")
	if err == nil || !strings.Contains(err.Error(), "not reachable") || !strings.Contains(err.Error(), "/nonexistent/berth-test.sock") {
		t.Fatalf("container list with no engine: err = %v, want one saying the engine at /nonexistent/berth-test.sock is not reachable", err)
	}

	t.Setenv("DOCKER_HOST", engine)
	testutil.RequireDocker(t)
	t.Setenv("WRANGLER_DOCKER_HOST", engine)
	t.Setenv("DOCKER_HOST", "unix:///nonexistent/berth-test.sock")
	out, _, err := run(t, "container", "list")
	if err != nil || !strings.HasPrefix(out, "ID") {
		t.Fatalf("container list with WRANGLER_DOCKER_HOST=%s over a bad DOCKER_HOST: %q, %v", engine, out, err)
	}
}
