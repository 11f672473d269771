package worker

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/worker/loadgen"
)

const helloWorldScript = `export default { fetch() { return new Response("Hello World!"); } };`

const routerScript = `
const routes: Record<string, (u: URL) => Response> = {
  "/": () => new Response("home"),
  "/api/users": (u) => Response.json({ id: Number(u.searchParams.get("id")), name: "user" + u.searchParams.get("id"), tags: ["a", "b"] }),
};
export default {
  fetch(req: Request) {
    const url = new URL(req.url);
    const h = routes[url.pathname];
    return h ? h(url) : new Response("not found", { status: 404 });
  },
};`

// TestLoad measures Workers through a real http.Server on 127.0.0.1 with
// 2 and 8 keep-alive connections. It runs only with BERTH_BENCH=1 (make
// bench); BERTH_BENCH_STRICT=1 also fails it below the hello-world target
// of 5,000 req/s with p50 <= 0.5 ms on 2 connections.
func TestLoad(t *testing.T) {
	if os.Getenv("BERTH_BENCH") != "1" {
		t.Skip("set BERTH_BENCH=1 to run the load test")
	}
	duration := 3 * time.Second
	if d, err := time.ParseDuration(os.Getenv("BERTH_BENCH_DURATION")); err == nil {
		duration = d
	}
	// The baseline, measured in the same run: a Go handler answering what
	// the hello-world Worker answers, behind the same kind of server.
	baseline := map[int]loadgen.Result{}
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "Hello World!")
	}))
	for _, conns := range []int{2, 8} {
		res, err := loadgen.Run(context.Background(), loadgen.Options{URL: plain.URL, Connections: conns, Duration: duration})
		if err != nil {
			t.Fatal(err)
		}
		baseline[conns] = res
		fmt.Printf("load %-6s %s\n", "go", res)
	}
	plain.Close()

	for _, tc := range []struct{ name, script, path, want string }{
		{"hello", helloWorldScript, "/", "Hello World!"},
		{"router", routerScript, "/api/users?id=42", `{"id":42,"name":"user42","tags":["a","b"]}`},
	} {
		w, _ := newWorker(t, tc.script, Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		srv := httptest.NewServer(w)
		for _, conns := range []int{2, 8} {
			res, err := loadgen.Run(context.Background(), loadgen.Options{
				URL: srv.URL + tc.path, Connections: conns, Duration: duration,
				Check: func(status int, body []byte) error {
					if status != 200 || string(body) != tc.want {
						return fmt.Errorf("got %d %q", status, body)
					}
					return nil
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			base := baseline[conns]
			fmt.Printf("load %-6s %s  (vs plain Go handler: %.2f× the req/s, p50 +%v)\n", tc.name, res,
				res.RPS()/base.RPS(), (res.P50 - base.P50).Round(time.Microsecond))
			if res.Errors > 0 {
				t.Errorf("%s: %d errors, first: %v", tc.name, res.Errors, res.FirstError)
			}
			if os.Getenv("BERTH_BENCH_STRICT") == "1" && tc.name == "hello" && conns == 2 &&
				(res.RPS() < 5000 || res.P50 > 500*time.Microsecond) {
				t.Errorf("hello world on 2 connections: %s, want >= 5000 req/s and p50 <= 0.5ms", res)
			}
		}
		srv.Close()
	}
}
