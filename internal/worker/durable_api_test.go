package worker

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// labSrc has a Durable Object with one method per API under test and a
// Worker whose routes run checks in JavaScript; each route answers "ok" or
// the failed check.
const labSrc = `
import { DurableObject, RpcTarget } from "cloudflare:workers";
let constructed = 0;
export class Lab extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    constructed++;
    this.ready = false;
    ctx.blockConcurrencyWhile(async () => {
      await new Promise((r) => setTimeout(r, 20));
      this.ready = true;
    });
  }
  isReady() { return this.ready; }
  constructions() { return constructed; }
  echo(...args) { return args; }
  fail(kind, msg) { throw kind === "range" ? new RangeError(msg) : new Error(msg); }
  async slowAdd() {
    // read-modify-write across awaits of storage: the input gate keeps
    // concurrent calls from interleaving here.
    const n = (await this.ctx.storage.get("n")) ?? 0;
    await this.ctx.storage.put("n", n + 1);
    return n + 1;
  }
  async kv() {
    const s = this.ctx.storage;
    const check = (c, what) => { if (!c) throw new Error("check failed: " + what); };
    await s.deleteAll();
    const big = new Uint8Array(1000).map((_, i) => i % 256);
    const vals = { str: "héllo", num: 1.5, neg0: -0, nan: NaN, big: 12345678901234567890n, date: new Date(1700000000000),
      map: new Map([["a", 1], [2, { b: [1, 2] }]]), set: new Set([1, "x"]), ab: big.buffer, u16: new Uint16Array([1, 65535]),
      err: new TypeError("bad"), nul: null, undef: undefined, nested: { a: [{ b: 1 }, [2, 3]] }, bool: false };
    await s.put(vals);
    const got = await s.get(Object.keys(vals));
    check(got instanceof Map && got.size === Object.keys(vals).length, "get(keys) size " + got.size);
    check(got.get("str") === "héllo" && got.get("num") === 1.5 && Object.is(got.get("neg0"), -0) && Number.isNaN(got.get("nan")), "primitives");
    check(got.get("big") === 12345678901234567890n, "bigint");
    check(got.get("date") instanceof Date && got.get("date").getTime() === 1700000000000, "date");
    check(got.get("map").get(2).b[1] === 2 && got.get("set").has("x"), "map/set");
    check(got.get("ab") instanceof ArrayBuffer && new Uint8Array(got.get("ab"))[999] === 999 % 256, "arraybuffer");
    check(got.get("u16") instanceof Uint16Array && got.get("u16")[1] === 65535, "typed array");
    check(got.get("err") instanceof TypeError && got.get("err").message === "bad", "error");
    check(got.get("nul") === null && got.has("undef") && got.get("undef") === undefined && got.get("bool") === false, "null/undefined/bool");
    const cyc = { name: "c" }; cyc.self = cyc; cyc.list = [cyc];
    await s.put("cyc", cyc);
    const c2 = await s.get("cyc");
    check(c2.self === c2 && c2.list[0] === c2, "cycles");
    check((await s.get("missing")) === undefined, "missing is undefined");
    check((await s.delete("str")) === true && (await s.delete("str")) === false, "delete");
    check((await s.delete(["num", "bool", "nope"])) === 2, "delete many");
    await s.deleteAll();
    for (const k of ["a", "b", "ba", "bb", "c"]) await s.put(k, k.toUpperCase());
    const keys = async (o) => [...(await s.list(o)).keys()].join(",");
    check((await keys()) === "a,b,ba,bb,c", "list all");
    check((await keys({ prefix: "b" })) === "b,ba,bb", "prefix");
    check((await keys({ start: "b", end: "bb" })) === "b,ba", "start/end");
    check((await keys({ startAfter: "b" })) === "ba,bb,c", "startAfter");
    check((await keys({ reverse: true, limit: 2 })) === "c,bb", "reverse limit");
    check((await s.list({ prefix: "a" })).get("a") === "A", "list values");
    // limits: nothing half-written
    let threw = null;
    try { await s.put({ ok1: 1, ["k".repeat(2049)]: 2 }); } catch (e) { threw = e; }
    check(threw && /2049 bytes/.test(threw.message), "long key throws: " + threw);
    check((await s.get("ok1")) === undefined, "batch with a bad key wrote nothing");
    threw = null;
    try { await s.put("v", "x".repeat(140000)); } catch (e) { threw = e; }
    check(threw && /limit is 131072/.test(threw.message), "big value throws: " + threw);
    threw = null;
    try { await s.put("f", () => 1); } catch (e) { threw = e; }
    check(threw && threw.name === "DataCloneError", "function value: " + threw);
    // transactions
    await s.transaction(async (txn) => { await txn.put("t1", 1); txn.rollback(); });
    check((await s.get("t1")) === undefined, "transaction rollback");
    try { await s.transaction(async (txn) => { await txn.put("t2", 1); throw new Error("no"); }); } catch {}
    check((await s.get("t2")) === undefined, "transaction throw rolls back");
    await s.transaction(async (txn) => { await txn.put("t3", 3); });
    check((await s.get("t3")) === 3, "transaction commit");
    try { s.transactionSync(() => { s.kv.put("t4", 4); throw new Error("no"); }); } catch {}
    check(s.kv.get("t4") === undefined, "transactionSync throw rolls back");
    check(s.transactionSync(() => { s.kv.put("t5", 5); return 7; }) === 7 && s.kv.get("t5") === 5, "transactionSync");
    // sync KV
    s.kv.put("sk", { a: 1 });
    check(s.kv.get("sk").a === 1 && s.kv.delete("sk") === true && s.kv.get("sk") === undefined, "sync kv");
    check([...s.kv.list({ prefix: "t" })].map(([k]) => k).join(",") === "t3,t5", "sync kv list");
    await s.sync();
    return "ok";
  }
  sql() {
    const sql = this.ctx.storage.sql;
    const check = (c, what) => { if (!c) throw new Error("check failed: " + what); };
    sql.exec("DROP TABLE IF EXISTS t; CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, score REAL, data BLOB)");
    const w = sql.exec("INSERT INTO t (name, score, data) VALUES (?, ?, ?), (?, ?, ?)", "a", 1.5, new Uint8Array([1, 2, 3]).buffer, "b", 2, null);
    check(w.rowsWritten === 2, "rowsWritten " + w.rowsWritten);
    const c = sql.exec("SELECT * FROM t ORDER BY id");
    check(c.columnNames.join() === "id,name,score,data", "columnNames");
    const first = c.next().value;
    check(first.name === "a" && first.score === 1.5 && new Uint8Array(first.data)[2] === 3, "next/blob");
    const rest = c.toArray();
    check(rest.length === 1 && rest[0].data === null && c.rowsRead >= 2, "toArray/rowsRead " + c.rowsRead);
    check([...sql.exec("SELECT name FROM t")].map((r) => r.name).join() === "a,b", "iteration");
    check(JSON.stringify(sql.exec("SELECT id, name FROM t ORDER BY id").raw().toArray()) === '[[1,"a"],[2,"b"]]', "raw");
    check(sql.exec("SELECT count(*) AS n FROM t").one().n === 2, "one");
    let threw = null;
    try { sql.exec("SELECT * FROM t").one(); } catch (e) { threw = e; }
    check(threw, "one with two rows throws");
    threw = null;
    try { sql.exec("SELEKT 1"); } catch (e) { threw = e; }
    check(threw && /syntax error/.test(threw.message), "sql error: " + threw);
    threw = null;
    try { sql.exec("INSERT INTO t (name) VALUES ('c'); INSERT INTO nope VALUES (1)"); } catch (e) { threw = e; }
    check(threw && /no such table/.test(threw.message) && sql.exec("SELECT count(*) AS n FROM t").one().n === 2, "failed query wrote nothing");
    threw = null;
    try { sql.exec("SELECT ?", {}); } catch (e) { threw = e; }
    check(threw instanceof TypeError, "bad binding");
    check(sql.databaseSize > 0, "databaseSize");
    check(sql.exec("SELECT randomblob(4) AS r, unixepoch() AS u").one().u > 0, "randomblob/unixepoch");
    return "ok";
  }
  async alarms(cmd, arg) {
    const s = this.ctx.storage;
    if (cmd === "set") { await s.setAlarm(Date.now() + arg); return await s.getAlarm(); }
    if (cmd === "setDate") { await s.setAlarm(new Date(Date.now() + arg)); return await s.getAlarm(); }
    if (cmd === "delete") { await s.deleteAlarm(); return await s.getAlarm(); }
    if (cmd === "calls") return s.kv.get("alarmCalls") ?? [];
    if (cmd === "failTimes") { s.kv.put("failTimes", arg); return null; }
  }
  async alarm(info) {
    const calls = this.ctx.storage.kv.get("alarmCalls") ?? [];
    calls.push(info);
    this.ctx.storage.kv.put("alarmCalls", calls);
    const fail = this.ctx.storage.kv.get("failTimes") ?? 0;
    if (fail > 0) { this.ctx.storage.kv.put("failTimes", fail - 1); throw new Error("alarm fails"); }
  }
  whoami() { return { id: this.ctx.id.toString(), name: this.ctx.id.name }; }
  abortMe() { this.ctx.abort("by request"); }
  async viaExports(name) { return await this.ctx.exports.Lab.getByName(name).whoami(); }
  later() { this.ctx.waitUntil(new Promise((r) => setTimeout(r, 300)).then(() => this.ctx.storage.kv.put("later", 1))); return 1; }
  laterDone() { return this.ctx.storage.kv.get("later") ?? 0; }
  echoRequest(req) { return req.text().then((t) => new Response(req.method + " " + req.url + " " + req.headers.get("x-a") + " " + t, { status: 201 })); }
  async fetch(req) { return new Response("object " + this.ctx.id.name + " " + new URL(req.url).pathname + " " + (await req.text()), { headers: { "x-obj": "1" } }); }
}
export class Other extends DurableObject {}
class Thing { constructor() { this.x = 1; } }
class Target extends RpcTarget {}
export default {
  async fetch(req, env, ctx) {
    const url = new URL(req.url);
    const p = url.pathname;
    const check = (c, what) => { if (!c) throw new Error("check failed: " + what); };
    const lab = env.LAB.getByName(url.searchParams.get("name") || "lab");
    const ok = () => new Response("ok");
    try {
      if (p === "/ids") {
        const a = env.LAB.idFromName("x"), b = env.LAB.idFromName("x"), o = env.OTHER.idFromName("x");
        check(/^[0-9a-f]{64}$/.test(a.toString()), "64 hex");
        check(a.equals(b) && a.toString() === b.toString() && !a.equals(o) && a.toString() !== o.toString(), "deterministic, per namespace");
        check(a.name === "x", "name");
        const u1 = env.LAB.newUniqueId(), u2 = env.LAB.newUniqueId();
        check(!u1.equals(u2) && u1.name === undefined, "unique");
        const parsed = env.LAB.idFromString(a.toString());
        check(parsed.equals(a), "idFromString");
        check(env.LAB.idFromString(a.toString().toUpperCase()).equals(a), "upper case");
        const flipped = a.toString().slice(0, 63) + (a.toString().endsWith("0") ? "1" : "0");
        for (const bad of ["zz", flipped, o.toString()]) {
          let e = null;
          try { env.LAB.idFromString(bad); } catch (x) { e = x; }
          check(e instanceof TypeError, "malformed id " + bad + " threw " + e);
        }
        let e = null;
        try { env.LAB.get(o); } catch (x) { e = x; }
        check(e instanceof TypeError, "id of another namespace");
        e = null;
        try { env.LAB.get(a, { locationHint: "mars" }); } catch (x) { e = x; }
        check(e instanceof TypeError, "bad locationHint");
        const viaGet = await env.LAB.get(a, { locationHint: "weur" }).whoami();
        check(viaGet.id === a.toString() && viaGet.name === "x", "get: " + JSON.stringify(viaGet));
        const viaU = await env.LAB.get(u1).whoami();
        check(viaU.id === u1.toString(), "unique id object");
        check(env.LAB.getByName("x").id.equals(a) && env.LAB.getByName("x").name === "x", "stub id/name");
        return ok();
      }
      if (p === "/rpc") {
        const d = new Date(5), m = new Map([[1, new Set([2])]]), buf = new Uint8Array([9, 8]);
        const shared = { s: 1 };
        const [r] = await lab.echo({ d, m, buf, ab: buf.buffer, n: 10n, e: new RangeError("r"), arr: [1, "2", null, undefined], shared, again: shared, f64: new Float64Array([0.5]) });
        check(r.d instanceof Date && r.d.getTime() === 5, "date");
        check(r.m.get(1).has(2), "map/set");
        check(r.buf instanceof Uint8Array && r.buf[1] === 8 && r.ab.byteLength === 2, "bytes");
        check(r.n === 10n && r.e instanceof RangeError && r.e.message === "r", "bigint/error");
        check(r.arr.length === 4 && r.arr[3] === undefined && r.shared === r.again && r.f64[0] === 0.5, "array/shared/float64");
        let e = null;
        try { await lab.fail("range", "boom"); } catch (x) { e = x; }
        check(e instanceof RangeError && e.message === "boom", "exception: " + e);
        e = null;
        try { await lab.echo(() => 1); } catch (x) { e = x; }
        check(e && e.name === "DataCloneError", "function arg: " + e);
        e = null;
        try { await lab.echo(new Thing()); } catch (x) { e = x; }
        check(e && e.name === "DataCloneError" && /Thing/.test(e.message), "class instance arg: " + e);
        e = null;
        try { await lab.echo(new Target()); } catch (x) { e = x; }
        check(e && e.name === "DataCloneError" && /RpcTarget/.test(e.message), "RpcTarget arg: " + e);
        e = null;
        try { await lab.noSuchMethod(); } catch (x) { e = x; }
        check(e instanceof TypeError && /noSuchMethod/.test(e.message), "missing method: " + e);
        const res = await lab.echoRequest(new Request("http://r/x", { method: "POST", body: "hi", headers: { "x-a": "b" } }));
        check(res instanceof Response && res.status === 201 && (await res.text()) === "POST http://r/x b hi", "request/response over rpc");
        const fr = await lab.fetch("http://do/path", { method: "POST", body: "body" });
        const frt = await fr.text();
        check(fr.status === 200 && fr.headers.get("x-obj") === "1" && frt === "object " + (url.searchParams.get("name") || "lab") + " /path body", "stub.fetch " + fr.status + " " + frt);
        const fr2 = await lab.fetch(new Request("http://do/req"));
        check((await fr2.text()) === "object " + (url.searchParams.get("name") || "lab") + " /req ", "stub.fetch(request)");
        return ok();
      }
      if (p === "/ready") return new Response(String(await lab.isReady()));
      if (p === "/constructions") return new Response(String(await lab.constructions()));
      if (p === "/kv") return new Response(await lab.kv());
      if (p === "/sql") return new Response(await lab.sql());
      if (p === "/slowAdd") return new Response(String(await lab.slowAdd()));
      if (p === "/alarms") return Response.json(await lab.alarms(url.searchParams.get("cmd"), Number(url.searchParams.get("arg"))));
      if (p === "/abort") { try { await lab.abortMe(); } catch (e) { return new Response("aborted: " + e.message); } return new Response("not aborted"); }
      if (p === "/exports") return Response.json([await lab.viaExports("loop"), await ctx.exports.Lab.getByName("loop").whoami()]);
      if (p === "/later") return new Response(String(await lab.later()));
      if (p === "/laterDone") return new Response(String(await lab.laterDone()));
      if (p === "/id") return Response.json(await lab.whoami());
    } catch (e) {
      return new Response(String(e) + "\n" + (e && e.stack), { status: 500 });
    }
    return new Response("no route", { status: 404 });
  },
};`

func newLab(t *testing.T, opt objectOptions) *objectWorker {
	return newObjectWorker(t, labSrc, map[string]string{"LAB": "Lab", "OTHER": "Other"}, opt)
}

func expect(t *testing.T, ow *objectWorker, path, want string) {
	t.Helper()
	rec := do(t, ow, "GET", "http://x"+path, nil)
	if rec.Body.String() != want {
		t.Fatalf("%s: %d %q, want %q\n%s", path, rec.Code, rec.Body.String(), want, ow.logs)
	}
}

func TestDurableObjectIDs(t *testing.T) {
	ow := newLab(t, objectOptions{})
	expect(t, ow, "/ids", "ok")
}

func TestDurableObjectRPC(t *testing.T) {
	ow := newLab(t, objectOptions{runtimes: 3})
	expect(t, ow, "/rpc", "ok")
	// Objects spread over the runtimes, and each is reachable from all.
	for i := range 12 {
		expect(t, ow, fmt.Sprintf("/rpc?name=n%d", i), "ok")
	}
}

func TestDurableObjectKVStorage(t *testing.T) {
	ow := newLab(t, objectOptions{})
	expect(t, ow, "/kv", "ok")
}

func TestDurableObjectSQL(t *testing.T) {
	ow := newLab(t, objectOptions{})
	expect(t, ow, "/sql", "ok")
}

// TestDurableObjectOneInstanceAndInputGate: concurrent first calls activate
// one instance; blockConcurrencyWhile in the constructor holds events until
// it is done; concurrent read-modify-write calls that await storage do not
// interleave.
func TestDurableObjectOneInstanceAndInputGate(t *testing.T) {
	ow := newLab(t, objectOptions{runtimes: 2})
	var wg sync.WaitGroup
	results := make([]string, 50)
	for i := range results {
		wg.Go(func() {
			path := "/slowAdd"
			if i%10 == 0 {
				path = "/ready"
			}
			results[i] = do(t, ow, "GET", "http://x"+path, nil).Body.String()
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for i, r := range results {
		if i%10 == 0 {
			if r != "true" {
				t.Fatalf("an event ran before blockConcurrencyWhile ended: %q", r)
			}
			continue
		}
		if seen[r] {
			t.Fatalf("two calls returned %s: read-modify-write interleaved: %v", r, results)
		}
		seen[r] = true
	}
	expect(t, ow, "/slowAdd", "46")
	if ow.host.Live() != 1 {
		t.Fatalf("live = %d", ow.host.Live())
	}
	expect(t, ow, "/constructions", "1")
}

func TestDurableObjectEvictionAndAbort(t *testing.T) {
	ow := newLab(t, objectOptions{idle: 200 * time.Millisecond})
	expect(t, ow, "/slowAdd", "1")
	expect(t, ow, "/constructions", "1")
	waitFor(t, "eviction", func() bool { return ow.host.Live() == 0 && ow.LiveObjects() == 0 })
	// Re-activated: a new instance, the same storage.
	expect(t, ow, "/slowAdd", "2")
	expect(t, ow, "/constructions", "2")
	expect(t, ow, "/abort", "aborted: by request")
	expect(t, ow, "/slowAdd", "3")
	expect(t, ow, "/constructions", "3")
	// waitUntil keeps the object live until its promise settles.
	expect(t, ow, "/later", "1")
	waitFor(t, "the waitUntil write", func() bool {
		if ow.host.Live() != 1 {
			t.Fatalf("evicted with waitUntil work pending")
		}
		return do(t, ow, "GET", "http://x/laterDone", nil).Body.String() == "1"
	})
}

func TestDurableObjectExportsLoopback(t *testing.T) {
	// Lab has no binding here: ctx.exports reaches it all the same.
	ow := newObjectWorker(t, strings.Replace(labSrc, "env.LAB.getByName", "ctx.exports.Lab.getByName", 1),
		map[string]string{"OTHER": "Other"}, objectOptions{classes: []string{"Lab"}})
	rec := do(t, ow, "GET", "http://x/exports", nil)
	if rec.Code != 200 || strings.Count(rec.Body.String(), `"name":"loop"`) != 2 {
		t.Fatalf("exports: %d %s\n%s", rec.Code, rec.Body.String(), ow.logs)
	}
	if body := do(t, ow, "GET", "http://x/id?name=q", nil).Body.String(); !strings.Contains(body, `"name":"q"`) {
		t.Fatalf("a class without a binding through ctx.exports: %s", body)
	}
}

func TestDurableObjectAlarms(t *testing.T) {
	ow := newLab(t, objectOptions{alarmBackof: 20 * time.Millisecond})
	rec := do(t, ow, "GET", "http://x/alarms?cmd=set&arg=60000", nil)
	if rec.Body.String() == "null" {
		t.Fatalf("getAlarm after setAlarm: %s", rec.Body.String())
	}
	expect(t, ow, "/alarms?cmd=delete", "null")
	expect(t, ow, "/alarms?cmd=failTimes&arg=2", "null")
	do(t, ow, "GET", "http://x/alarms?cmd=setDate&arg=50", nil)
	var body string
	waitFor(t, "three alarm deliveries", func() bool {
		body = do(t, ow, "GET", "http://x/alarms?cmd=calls", nil).Body.String()
		return strings.Count(body, "isRetry") == 3
	})
	if !strings.Contains(body, `"isRetry":false,"retryCount":0`) || !strings.Contains(body, `"isRetry":true,"retryCount":2`) {
		t.Fatalf("alarm infos: %s", body)
	}
	expect(t, ow, "/alarms?cmd=delete", "null")
}
