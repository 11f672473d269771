package dev

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/testutil"
)

// TestDevHonoExample serves examples/hello-worker, a TypeScript hono app
// with a real npm dependency, installed with npm ci from its lock file.
func TestDevHonoExample(t *testing.T) {
	npm, err := exec.LookPath("npm")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("npm is required in CI")
		}
		t.Skip("npm not installed")
	}
	dir := t.TempDir()
	src := filepath.Join("..", "..", "examples", "hello-worker")
	if err := testutil.CopyTree(src, dir); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci: %v\n%s", err, out)
	}

	logs := &syncBuffer{}
	url, _ := startDev(t, Options{Dir: dir, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	check := func(method, path, body, wantType string, wantStatus int, want string) {
		t.Helper()
		req, _ := http.NewRequest(method, url+path, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != wantStatus || string(b) != want || !strings.HasPrefix(resp.Header.Get("Content-Type"), wantType) {
			t.Errorf("%s %s = %d %q (%s), want %d %q (%s)", method, path, resp.StatusCode, b, resp.Header.Get("Content-Type"), wantStatus, want, wantType)
		}
	}
	check("GET", "/", "", "text/plain", 200, "Hello from hono")
	check("GET", "/users/42?tag=a&tag=b", "", "application/json", 200, `{"id":42,"name":"user42","tags":["a","b"]}`)
	check("GET", "/users/abc", "", "application/json", 400, `{"error":"id must be a number"}`)
	check("POST", "/echo", `{"x":[1,true]}`, "application/json", 201, `{"received":{"x":[1,true]},"type":"application/json"}`)
	check("GET", "/nowhere", "", "text/plain", 404, "no route for /nowhere")
	check("GET", "/boom", "", "text/plain", 500, "internal error")
	if l := logs.String(); !strings.Contains(l, "handler failed") || !strings.Contains(l, "src/index.ts:") {
		t.Errorf("the console.error from onError is missing or not source-mapped:\n%s", l)
	}
}
