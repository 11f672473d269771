import { DurableObject } from "cloudflare:workers";

interface Env {
  COUNTER: DurableObjectNamespace<Counter>;
}

interface Change {
  id: number;
  delta: number;
  value: number;
  reason: string;
  at: number;
}

// Counter is one counter: its value under the KV key "value", and its
// history in the SQL table "changes".
export class Counter extends DurableObject<Env> {
  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    ctx.storage.sql.exec(`CREATE TABLE IF NOT EXISTS changes (
      id INTEGER PRIMARY KEY AUTOINCREMENT,
      delta INTEGER NOT NULL,
      value INTEGER NOT NULL,
      reason TEXT NOT NULL,
      at INTEGER NOT NULL
    )`);
  }

  value(): number {
    return this.ctx.storage.kv.get<number>("value") ?? 0;
  }

  // increment adds by and returns the new value. The KV write and the
  // history row are one transaction: both or neither survive a crash.
  increment(by = 1): number {
    if (!Number.isInteger(by)) throw new RangeError(`by must be an integer, got ${by}`);
    return this.change(by, "increment");
  }

  history(limit = 100): Change[] {
    return this.ctx.storage.sql
      .exec<Change>("SELECT id, delta, value, reason, at FROM changes ORDER BY id DESC LIMIT ?", limit)
      .toArray();
  }

  // resetIn schedules a reset to 0 after ms milliseconds.
  async resetIn(ms: number): Promise<number> {
    const at = Date.now() + ms;
    await this.ctx.storage.setAlarm(at);
    return at;
  }

  async alarm(info?: AlarmInvocationInfo): Promise<void> {
    this.change(-this.value(), info?.isRetry ? "alarm (retry)" : "alarm");
  }

  async fetch(request: Request): Promise<Response> {
    const url = new URL(request.url);
    return Response.json({ id: this.ctx.id.toString(), name: this.ctx.id.name, value: this.value(), path: url.pathname });
  }

  private change(delta: number, reason: string): number {
    const value = this.value() + delta;
    this.ctx.storage.transactionSync(() => {
      this.ctx.storage.kv.put("value", value);
      this.ctx.storage.sql.exec("INSERT INTO changes (delta, value, reason, at) VALUES (?, ?, ?, ?)", delta, value, reason, Date.now());
    });
    return value;
  }
}

// Routes:
//   GET  /<name>                   the value
//   POST /<name>/increment?by=N    add N (default 1), returns the new value
//   GET  /<name>/history           the latest changes, newest first
//   POST /<name>/reset?in=MS       reset to 0 in MS milliseconds (an alarm)
//   GET  /<name>/object            the object's own fetch handler
export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const url = new URL(request.url);
    const [name, action = ""] = url.pathname.slice(1).split("/");
    if (!name) return new Response("usage: /<name>[/increment|/history|/reset|/object]\n", { status: 404 });
    const counter = env.COUNTER.getByName(name);
    switch (`${request.method} ${action}`) {
      case "GET ":
        return Response.json({ value: await counter.value() });
      case "POST increment":
        return Response.json({ value: await counter.increment(Number(url.searchParams.get("by") ?? 1)) });
      case "GET history":
        return Response.json(await counter.history(Number(url.searchParams.get("limit") ?? 100)));
      case "POST reset":
        return Response.json({ at: await counter.resetIn(Number(url.searchParams.get("in") ?? 0)) });
      case "GET object":
        return counter.fetch(request);
    }
    return new Response("not found\n", { status: 404 });
  },
};
