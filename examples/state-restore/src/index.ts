import { Container, getContainer } from "cloudflare:workers";

interface Env {
  STORE: DurableObjectNamespace<Store>;
}

interface Snapshot {
  body: string;
  saved_at: number;
}

// Store owns a container that keeps a key-value store in memory only. The
// object keeps the durable copy: save() reads the container's whole state
// (GET /state) into SQL storage, and every new container gets it back
// (PUT /state) before it serves anything. Changes made after the last save
// are lost if the container crashes; a stop through stopSaved() or an idle
// timeout saves first.
export class Store extends Container<Env> {
  defaultPort = 8080;
  sleepAfter = "5m";
  enableInternet = false;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    ctx.storage.sql.exec(`CREATE TABLE IF NOT EXISTS snapshot (
      id INTEGER PRIMARY KEY CHECK (id = 1),
      body TEXT NOT NULL,
      saved_at INTEGER NOT NULL
    )`);
  }

  // save copies the running container's state into storage; without a
  // running container there is nothing newer than the last save.
  async save(): Promise<{ saved: boolean; saved_at?: number; keys?: number }> {
    if (!this.ctx.container.running) return { saved: false };
    const res = await this.containerFetch("http://store/state");
    if (!res.ok) throw new Error(`GET /state answered ${res.status}: ${await res.text()}`);
    const body = await res.text();
    const keys = Object.keys(JSON.parse(body).values ?? {}).length;
    const savedAt = Date.now();
    this.ctx.storage.sql.exec("INSERT OR REPLACE INTO snapshot (id, body, saved_at) VALUES (1, ?, ?)", body, savedAt);
    return { saved: true, saved_at: savedAt, keys };
  }

  // stopSaved saves, stops the container and returns once it has exited,
  // so that the next request starts a fresh one.
  async stopSaved(): Promise<{ saved: boolean; saved_at?: number; keys?: number }> {
    const result = await this.save();
    if (this.ctx.container.running) {
      await this.stop();
      for (let waited = 0; this.ctx.container.running; waited += 50) {
        if (waited >= 30_000) throw new Error("the container did not exit within 30 s of SIGTERM");
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
    return result;
  }

  snapshot(): Snapshot | null {
    return this.ctx.storage.sql.exec<Snapshot>("SELECT body, saved_at FROM snapshot WHERE id = 1").toArray()[0] ?? null;
  }

  // onStart runs once the new container's port answers and before requests
  // are let through, so no request sees the empty store. It talks to the
  // port directly because the start it belongs to has not finished.
  override async onStart(): Promise<void> {
    const snap = this.snapshot();
    if (!snap) return;
    const res = await this.ctx.container.getTcpPort(this.defaultPort).fetch("http://store/state", {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: snap.body,
    });
    if (!res.ok) throw new Error(`PUT /state answered ${res.status}: ${await res.text()}`);
    console.log(`restored ${this.ctx.id.name ?? this.ctx.id.toString()} from the snapshot of ${new Date(snap.saved_at).toISOString()}`);
  }

  // When the container has been idle for sleepAfter, save before it stops.
  override async onActivityExpired(): Promise<void> {
    await this.stopSaved();
  }
}

const USAGE = `usage:
  GET  /<name>              the container: boot id, number of keys
  GET  /<name>/kv/<key>     a value
  PUT  /<name>/kv/<key>     set a value (the body)
  POST /<name>/save         copy the container's state into the object's storage
  POST /<name>/stop         save, then stop the container
  GET  /<name>/snapshot     the saved state
`;

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const url = new URL(request.url);
    const [, name, action = "", key = ""] = url.pathname.split("/");
    if (!name) return new Response(USAGE);
    const store = getContainer(env.STORE, name);
    switch (`${request.method} ${action}`) {
      case "GET ":
        return store.fetch(new Request("http://store/"));
      case "GET kv":
      case "PUT kv":
        if (!key) return new Response("want /<name>/kv/<key>\n", { status: 404 });
        return store.fetch(
          new Request(`http://store/kv/${key}`, {
            method: request.method,
            body: request.method === "PUT" ? await request.arrayBuffer() : undefined,
          }),
        );
      case "POST save":
        return Response.json(await store.save());
      case "POST stop":
        return Response.json(await store.stopSaved());
      case "GET snapshot": {
        const snap = await store.snapshot();
        return snap ? Response.json({ saved_at: snap.saved_at, state: JSON.parse(snap.body) }) : new Response("no snapshot yet\n", { status: 404 });
      }
    }
    return new Response(USAGE, { status: 404 });
  },
};
