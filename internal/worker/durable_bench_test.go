package worker

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"
)

const benchObjectSrc = `
import { DurableObject } from "cloudflare:workers";
export class Bench extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    this.hits = 0;
  }
  ping(x) { this.hits++; return x; }
  put(n) { for (let i = 0; i < n; i++) this.ctx.storage.kv.put("k" + i, { i, s: "value" }); }
  async putAsync(n) { for (let i = 0; i < n; i++) await this.ctx.storage.put("k" + i, { i, s: "value" }); }
  async get(n) { let s = 0; for (let i = 0; i < n; i++) s += (await this.ctx.storage.get("k" + i)).i; return s; }
  sqlInsert(n) {
    const sql = this.ctx.storage.sql;
    sql.exec("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)");
    for (let i = 0; i < n; i++) sql.exec("INSERT INTO t (v) VALUES (?)", "row " + i);
  }
  sqlSelect(n) { const sql = this.ctx.storage.sql; let c = 0; for (let i = 0; i < n; i++) c += sql.exec("SELECT v FROM t WHERE id = ?", i + 1).toArray().length; return c; }
  increment() { const n = (this.ctx.storage.kv.get("n") ?? 0) + 1; this.ctx.storage.kv.put("n", n); return n; }
  oneRow() { this.ctx.storage.sql.exec("CREATE TABLE t (v TEXT); INSERT INTO t VALUES ('x')"); return 1; }
}
export default {
  async fetch(req, env) {
    const url = new URL(req.url);
    const n = Number(url.searchParams.get("n") || 1);
    const stub = env.BENCH.getByName(url.searchParams.get("name") || "b");
    switch (url.pathname) {
      case "/rpcLoop": {
        const times = [];
        for (let i = 0; i < n; i++) { const t0 = performance.now(); await stub.ping(i); times.push(performance.now() - t0); }
        return Response.json(times);
      }
      case "/rpc": return new Response(String(await stub.ping(1)));
      case "/op": {
        const t0 = performance.now();
        await stub[url.searchParams.get("op")](n);
        return new Response(String(performance.now() - t0));
      }
      case "/increment": return new Response(String(await stub.increment()));
      case "/oneRow": return new Response(String(await stub.oneRow()));
    }
    return new Response("?", { status: 404 });
  },
};`

func newBenchObjects(b *testing.B, runtimes int) *objectWorker {
	return newObjectWorker(b, benchObjectSrc, map[string]string{"BENCH": "Bench"}, objectOptions{runtimes: runtimes})
}

// BenchmarkObjectRPC: a Worker calls a method of a live object and awaits
// the result, sequentially, in JavaScript (the HTTP request that drives
// the loop is not timed). Reported: p50 and calls/s.
func BenchmarkObjectRPC(b *testing.B) {
	for _, runtimes := range []int{1, 2} {
		b.Run(fmt.Sprintf("runtimes=%d", runtimes), func(b *testing.B) {
			ow := newBenchObjects(b, runtimes)
			do(b, ow, "GET", "http://x/rpc", nil) // activate
			var times []float64
			b.ResetTimer()
			start := time.Now()
			for left := b.N; left > 0; {
				n := min(left, 1000)
				left -= n
				rec := do(b, ow, "GET", "http://x/rpcLoop?n="+strconv.Itoa(n), nil)
				var ts []float64
				if err := json.Unmarshal(rec.Body.Bytes(), &ts); err != nil {
					b.Fatalf("%v: %s", err, rec.Body.String())
				}
				times = append(times, ts...)
			}
			elapsed := time.Since(start)
			slices.Sort(times)
			b.ReportMetric(times[len(times)/2]*1000, "p50-µs")
			b.ReportMetric(times[len(times)*99/100]*1000, "p99-µs")
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "calls/s")
		})
	}
}

// BenchmarkObjectStorage: storage operations from JavaScript inside one
// event (one transaction, one commit at its end), per operation.
func BenchmarkObjectStorage(b *testing.B) {
	ow := newBenchObjects(b, 1)
	const n = 2000
	for _, op := range []string{"put", "putAsync", "get", "sqlInsert", "sqlSelect"} {
		b.Run(op, func(b *testing.B) {
			var ms float64
			for i := 0; i < b.N; i++ {
				rec := do(b, ow, "GET", "http://x/op?op="+op+"&n="+strconv.Itoa(n), nil)
				v, err := strconv.ParseFloat(rec.Body.String(), 64)
				if err != nil {
					b.Fatalf("%s: %s", op, rec.Body.String())
				}
				ms += v
			}
			b.ReportMetric(float64(b.N*n)/(ms/1000), "ops/s")
		})
	}
	// One durable write per event: the commit (fsync) dominates.
	b.Run("incrementPerEvent", func(b *testing.B) {
		start := time.Now()
		for i := 0; i < b.N; i++ {
			do(b, ow, "GET", "http://x/increment", nil)
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
	})
}

// BenchmarkObjectActivation: the first call to a new object: host
// activation, database creation and the constructor, in the Worker's
// runtime.
func BenchmarkObjectActivation(b *testing.B) {
	ow := newBenchObjects(b, 1)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		do(b, ow, "GET", "http://x/rpc?name=a"+strconv.Itoa(i), nil)
	}
}

// BenchmarkIdleObjectMemory: resident memory per live, idle object.
func BenchmarkIdleObjectMemory(b *testing.B) {
	const n = 2000
	for i := 0; i < b.N; i++ {
		ow := newBenchObjects(b, 1)
		do(b, ow, "GET", "http://x/rpc?name=warm", nil)
		before := rssBytes()
		for j := 0; j < n; j++ {
			do(b, ow, "GET", "http://x/rpc?name=m"+strconv.Itoa(j), nil)
		}
		after := rssBytes()
		if ow.host.Live() != n+1 {
			b.Fatalf("live = %d", ow.host.Live())
		}
		b.ReportMetric(float64(after-before)/n/1024, "KiB/object")
	}
}

// BenchmarkManyObjects: BERTH_BENCH_OBJECTS objects (default 10000), each
// created with one SQL row, one after another through the Worker. Reports
// the time per object and the disk used.
func BenchmarkManyObjects(b *testing.B) {
	n := 10000
	if s := os.Getenv("BERTH_BENCH_OBJECTS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	for i := 0; i < b.N; i++ {
		dir := b.TempDir()
		ow := newObjectWorker(b, benchObjectSrc, map[string]string{"BENCH": "Bench"}, objectOptions{dir: dir, idle: time.Second})
		start := time.Now()
		for j := 0; j < n; j++ {
			if rec := do(b, ow, "GET", "http://x/oneRow?name=o"+strconv.Itoa(j), nil); rec.Body.String() != "1" {
				b.Fatalf("object %d: %s", j, rec.Body.String())
			}
		}
		elapsed := time.Since(start)
		var size int64
		_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				if info, err := d.Info(); err == nil {
					size += info.Size()
				}
			}
			return nil
		})
		b.ReportMetric(float64(n), "objects")
		b.ReportMetric(elapsed.Seconds(), "s-total")
		b.ReportMetric(float64(n)/elapsed.Seconds(), "objects/s")
		b.ReportMetric(float64(size)/(1<<20), "MiB-disk")
		b.ReportMetric(float64(size)/float64(n), "bytes/object")
	}
}
