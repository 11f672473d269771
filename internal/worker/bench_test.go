package worker

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/berth-dev/berth/internal/bundle"
	"github.com/berth-dev/berth/internal/jsengine"
)

func benchWorker(b *testing.B, src, path string, want string) {
	w, _ := newWorker(b, src, Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	req := httptest.NewRequest("GET", "http://bench.example"+path, nil)
	rec := httptest.NewRecorder()
	w.ServeHTTP(rec, req)
	if rec.Body.String() != want {
		b.Fatalf("body %q, want %q", rec.Body.String(), want)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rec := httptest.NewRecorder()
		w.ServeHTTP(rec, req)
		if rec.Code != 200 {
			b.Fatal(rec.Code)
		}
	}
}

func BenchmarkHelloWorld(b *testing.B) {
	benchWorker(b, helloWorldScript, "/", "Hello World!")
}

// BenchmarkURLPathname is hello world plus new URL(request.url).pathname,
// what most routing Workers do first.
func BenchmarkURLPathname(b *testing.B) {
	benchWorker(b, `export default { fetch(req) { return new Response(new URL(req.url).pathname); } };`, "/a/b?c=d", "/a/b")
}

// BenchmarkResponseHeaders is hello world with a headers object, as most
// JSON and HTML answers are made.
func BenchmarkResponseHeaders(b *testing.B) {
	benchWorker(b, `export default { fetch() {
  return new Response("ok", { headers: { "content-type": "text/plain", "cache-control": "no-store" } });
} };`, "/", "ok")
}

func BenchmarkRouter(b *testing.B) {
	benchWorker(b, routerScript, "/api/users?id=42", `{"id":42,"name":"user42","tags":["a","b"]}`)
}

// BenchmarkActivation measures starting one runtime of a Worker version whose
// script is already bundled: what a new pool slot, a runtime replacing a
// retired one, or (later) a Durable Object's first request costs.
func BenchmarkActivation(b *testing.B) {
	w, _ := newWorker(b, routerScript, Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	s := &slot{index: 99}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rt, err := w.start(b.Context(), s)
		if err != nil {
			b.Fatal(err)
		}
		rt.stop()
	}
}

// benchScripts are the bundles the activation benchmarks load: the small
// router, and the hono example when its node_modules are installed
// (cd examples/hello-worker && npm ci).
func benchScripts(b *testing.B) map[string]string {
	scripts := map[string]string{"router": routerScript}
	dir := filepath.Join("..", "..", "examples", "hello-worker")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "hono")); err == nil {
		res, err := bundle.Build(context.Background(), bundle.Options{Entry: "src/index.ts", Dir: dir, Builtins: Builtins})
		if err != nil {
			b.Fatal(err)
		}
		scripts["hono"] = res.Code
	}
	return scripts
}

// BenchmarkActivationScript compares evaluating a Worker's module from
// source (what every runtime did before) with evaluating its bytecode,
// compiled once per Worker version (what runtimes do now), on an engine
// that already has the platform code.
func BenchmarkActivationScript(b *testing.B) {
	code, err := platformCode()
	if err != nil {
		b.Fatal(err)
	}
	for name, src := range benchScripts(b) {
		bundled := src
		if name == "router" {
			dir := b.TempDir()
			os.WriteFile(filepath.Join(dir, "index.ts"), []byte(src), 0o644)
			res, err := bundle.Build(context.Background(), bundle.Options{Entry: "index.ts", Dir: dir, Builtins: Builtins})
			if err != nil {
				b.Fatal(err)
			}
			bundled = res.Code
		}
		bytecode, err := compileScript(bundled)
		if err != nil {
			b.Fatal(err)
		}
		newEngine := func() *jsengine.QuickJS {
			e, err := jsengine.NewQuickJS(jsengine.Options{})
			if err != nil {
				b.Fatal(err)
			}
			e.Register("__berth_host", func([]any) (any, error) { return nil, nil })
			for _, c := range code {
				if err := e.EvalBytecode(c); err != nil {
					b.Fatal(err)
				}
			}
			e.SetModuleLoader(func(n string) (string, error) {
				if n == scriptName {
					return bundled, nil
				}
				return builtinModule(n)
			})
			return e
		}
		b.Run(name+"/source", func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				e := newEngine()
				b.StartTimer()
				if err := e.ImportModule(scriptName, "__berthWorker"); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				e.Close()
				b.StartTimer()
			}
		})
		b.Run(name+"/bytecode", func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				e := newEngine()
				b.StartTimer()
				if err := e.EvalModule(bytecode, "__berthWorker"); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				e.Close()
				b.StartTimer()
			}
		})
	}
}
