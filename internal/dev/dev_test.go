package dev

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/testutil"
)

type syncBuffer = testutil.SyncBuffer

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

const workerSource = `
interface Env { GREETING: string; SECRET: string; FLAG: string }
export default {
  async fetch(req: Request, env: Env): Promise<Response> {
    return new Response(VERSION + " " + env.GREETING + " " + env.SECRET + " " + env.FLAG);
  },
};
`

// startDev runs a dev server on a free port and returns its URL.
func startDev(t *testing.T, opts Options) (url string, out *syncBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out = &syncBuffer{}
	ready := make(chan string, 1)
	opts.Out, opts.Port, opts.Ready = out, 0, func(u string) { ready <- u }
	done := make(chan error, 1)
	go func() { done <- Run(ctx, opts) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case url = <-ready:
	case err := <-done:
		t.Fatalf("Run ended before ready: %v\n%s", err, out)
	case <-time.After(60 * time.Second):
		t.Fatalf("not ready after 60 s:\n%s", out)
	}
	if !strings.Contains(out.String(), "Ready on "+url) {
		t.Fatalf("output %q lacks the Ready line", out)
	}
	return url, out
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

// eventually polls get until it returns want, for up to 20 s.
func eventually(t *testing.T, url, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var got string
	for time.Now().Before(deadline) {
		if got = get(t, url); got == want {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("GET %s = %q, want %q", url, got, want)
}

func TestDevServesReloadsAndKeepsLastGood(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "wrangler.jsonc"), `{
		// comments are fine
		"name": "hello", "main": "src/index.ts",
		"vars": {"GREETING": "from-config", "SECRET": "from-config", "FLAG": "from-config"},
	}`)
	writeFile(t, filepath.Join(dir, "src/version.ts"), `export const V = "v1";`)
	writeFile(t, filepath.Join(dir, "src/index.ts"), `import { V } from "./version";
const VERSION = V;`+workerSource)
	writeFile(t, filepath.Join(dir, ".dev.vars"), "SECRET=from-dev-vars\nFLAG=from-dev-vars\n")

	url, out := startDev(t, Options{Dir: dir, Watch: true, Vars: map[string]string{"FLAG": "from-flag"}})
	if got := get(t, url); got != "v1 from-config from-dev-vars from-flag" {
		t.Fatalf("GET = %q", got)
	}

	writeFile(t, filepath.Join(dir, "src/version.ts"), `export const V = "v2";`)
	eventually(t, url, "v2 from-config from-dev-vars from-flag")

	writeFile(t, filepath.Join(dir, "src/version.ts"), `export const V = ;`)
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(out.String(), "Rebuild failed") {
		if time.Now().After(deadline) {
			t.Fatalf("no rebuild error printed:\n%s", out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(out.String(), "version.ts") {
		t.Errorf("the rebuild error does not name the file:\n%s", out)
	}
	if got := get(t, url); got != "v2 from-config from-dev-vars from-flag" {
		t.Fatalf("after a failed rebuild GET = %q, want the last good version", got)
	}
}

func TestDevConfigErrors(t *testing.T) {
	dir := t.TempDir()
	err := Run(context.Background(), Options{Dir: dir})
	if err == nil || !strings.Contains(err.Error(), "wrangler.jsonc") {
		t.Fatalf("no config: err = %v", err)
	}
	writeFile(t, filepath.Join(dir, "wrangler.json"), `{"name": "x"}`)
	err = Run(context.Background(), Options{Dir: dir})
	if err == nil || !strings.Contains(err.Error(), "wrangler.json: main: required") {
		t.Fatalf("no main: err = %v", err)
	}
	writeFile(t, filepath.Join(dir, "wrangler.json"), `{"name": "x", "main": "missing.ts"}`)
	err = Run(context.Background(), Options{Dir: dir})
	if err == nil || !strings.Contains(err.Error(), "missing.ts") {
		t.Fatalf("missing entry: err = %v", err)
	}
}

func TestProcessEnvOnlyWhenAsked(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "wrangler.json"), `{"main": "w.js"}`)
	s, err := newServer(Options{Dir: dir, Environ: []string{"TOKEN=abc"}})
	if err != nil {
		t.Fatal(err)
	}
	vars, err := s.vars()
	if err != nil || vars["TOKEN"] != nil {
		t.Fatalf("vars = %v, %v; the environment must stay out unless asked for", vars, err)
	}
	s.opts.Environ = append(s.opts.Environ, "CLOUDFLARE_INCLUDE_PROCESS_ENV=true")
	if vars, _ = s.vars(); vars["TOKEN"] != "abc" {
		t.Fatalf("vars = %v, want TOKEN from the environment", vars)
	}
}

func TestDevAppliesCPULimit(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "wrangler.json"), `{"main": "w.js", "limits": {"cpu_ms": 50}}`)
	writeFile(t, filepath.Join(dir, "w.js"), `export default {
		fetch(req) {
			if (new URL(req.url).pathname === "/spin") { for (;;) {} }
			return new Response("ok");
		},
	};`)
	url, _ := startDev(t, Options{Dir: dir})
	resp, err := http.Get(url + "/spin")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode < 500 {
		t.Fatalf("GET /spin = %d, want a 5xx once the 50 ms CPU limit is hit", resp.StatusCode)
	}
	eventually(t, url+"/", "ok")
}
