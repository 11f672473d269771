package worker

import (
	"testing"
)

const counterSrc = `
import { DurableObject } from "cloudflare:workers";
export class Counter extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    this.ctx.storage.sql.exec("CREATE TABLE IF NOT EXISTS hist (n INTEGER, at TEXT)");
  }
  async increment(by = 1) {
    const n = ((await this.ctx.storage.get("n")) ?? 0) + by;
    await this.ctx.storage.put("n", n);
    this.ctx.storage.sql.exec("INSERT INTO hist VALUES (?, ?)", n, "now");
    return n;
  }
  async fetch(req) {
    const n = await this.increment(1);
    return new Response("n=" + n + " id=" + this.ctx.id.toString() + " name=" + this.ctx.id.name);
  }
  history() { return this.ctx.storage.sql.exec("SELECT n FROM hist ORDER BY n").toArray().map((r) => r.n); }
}
export default {
  async fetch(req, env) {
    const url = new URL(req.url);
    const stub = env.COUNTER.getByName(url.searchParams.get("name") || "a");
    if (url.pathname === "/rpc") return new Response(String(await stub.increment(Number(url.searchParams.get("by") || 1))));
    if (url.pathname === "/hist") return Response.json(await stub.history());
    return stub.fetch(req);
  },
};`

func TestDurableObjectCounter(t *testing.T) {
	ow := newObjectWorker(t, counterSrc, map[string]string{"COUNTER": "Counter"}, objectOptions{})
	for i, want := range []string{"1", "3", "6"} {
		rec := do(t, ow, "GET", "http://x/rpc?by="+[]string{"1", "2", "3"}[i], nil)
		if rec.Code != 200 || rec.Body.String() != want {
			t.Fatalf("rpc %d: %d %q\n%s", i, rec.Code, rec.Body.String(), ow.logs)
		}
	}
	rec := do(t, ow, "GET", "http://x/fetch", nil)
	if rec.Code != 200 || rec.Body.String()[:4] != "n=7 " {
		t.Fatalf("fetch: %d %q\n%s", rec.Code, rec.Body.String(), ow.logs)
	}
	rec = do(t, ow, "GET", "http://x/hist", nil)
	if rec.Body.String() != "[1,3,6,7]" {
		t.Fatalf("hist: %d %q\n%s", rec.Code, rec.Body.String(), ow.logs)
	}
	t.Log(do(t, ow, "GET", "http://x/fetch?name=b", nil).Body.String())
}
