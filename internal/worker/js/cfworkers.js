// The "cloudflare:workers" module as berth serves it. Bindings-related
// exports (env, DurableObject state) are filled in by later runtime pieces.
// It also serves the Container class of @cloudflare/containers (below).
// The runtime recognises entrypoint classes by these markers, which
// subclasses inherit as static properties.
export class WorkerEntrypoint {
  static [Symbol.for("berth.WorkerEntrypoint")] = true;
  constructor(ctx, env) { this.ctx = ctx; this.env = env; }
}
export class DurableObject {
  static [Symbol.for("berth.DurableObject")] = true;
  constructor(ctx, env) { this.ctx = ctx; this.env = env; }
}
export class WorkflowEntrypoint {
  constructor(ctx, env) { this.ctx = ctx; this.env = env; }
}
export class RpcTarget {
  static [Symbol.for("berth.RpcTarget")] = true;
}
export const env = {};
export function waitUntil(p) { Promise.resolve(p).catch((e) => console.error("Uncaught (in waitUntil)", e)); }

// ---- Containers -------------------------------------------------------------
// berth's own Container class, with the surface of @cloudflare/containers
// (Container, getContainer, getRandom, switchPort) for apps that do not
// install the package. It sits on ctx.container, Durable Object storage and
// alarms, as the package does; the alarm re-arms itself instead of sleeping
// inside the handler.
const STATE_KEY = "__CF_CONTAINER_STATE";
const NO_INSTANCE = "there is no container instance that can be provided to this durable object";
const RATE_LIMITED = "you are requesting too many containers per second";
const NOT_LISTENING = "the container is not listening";
const TARGET_PORT_HEADER = "cf-container-target-port";
const BODY_END = Symbol.for("berth.bodyEnd"); // set by the runtime on a container port's responses
const POLL_MS = 300;
const PORTS_TIMEOUT_MS = 20_000;
const PING_TIMEOUT_MS = 5_000;
const signalNumbers = { SIGINT: 2, SIGTERM: 15, SIGKILL: 9 };
const errorText = (e) => (e instanceof Error ? e.message : String(e)).toLowerCase();
const exitCodeOf = (e) => {
  const m = /(?:container exited with unexpected exit code|runtime signalled the container to exit): (\d+)/.exec(errorText(e));
  return m ? Number(m[1]) : null;
};

function parseDuration(v) {
  if (typeof v === "number") return v;
  const m = typeof v === "string" && /^(\d+)([smh])$/.exec(v);
  if (!m) throw new Error(`invalid time expression ${v}`);
  return Number(m[1]) * { s: 1, m: 60, h: 3600 }[m[2]];
}

export class Container extends DurableObject {
  defaultPort = undefined;
  requiredPorts = undefined;
  sleepAfter = "10m";
  envVars = {};
  entrypoint = undefined;
  enableInternet = true;
  labels = {};
  pingEndpoint = "ping";

  #monitor = null;
  #startInFlight = null;
  #inflight = 0;
  #sleepAfterMs = 0;

  constructor(ctx, env, options) {
    super(ctx, env);
    if (ctx.container === undefined) {
      throw new Error("Containers have not been enabled for this Durable Object class. Have you correctly setup your Wrangler config? More info: https://developers.cloudflare.com/containers/get-started/#configuration");
    }
    if (options) {
      for (const k of ["defaultPort", "sleepAfter", "envVars", "entrypoint", "enableInternet"]) if (options[k] !== undefined) this[k] = options[k];
    }
    this.container = ctx.container;
    ctx.blockConcurrencyWhile(async () => {
      await ctx.storage.setAlarm(Date.now() + 1000);
      // After an await: a subclass's fields (sleepAfter) are set by now.
      this.renewActivityTimeout();
    });
    if (this.container.running) this.#watch(this.container.monitor());
  }

  // ---- state ----
  async getState() {
    return (await this.ctx.storage.get(STATE_KEY)) ?? { status: "stopped", lastChange: Date.now() };
  }
  async #setState(status, exitCode) {
    const s = { status, lastChange: Date.now() };
    if (exitCode !== undefined) s.exitCode = exitCode;
    await this.ctx.storage.put(STATE_KEY, s);
  }

  renewActivityTimeout() {
    this.#sleepAfterMs = Date.now() + parseDuration(this.sleepAfter) * 1000;
  }

  // ---- hooks ----
  onStart() {}
  onStop() {}
  onError(error) { console.error("Container error:", error); throw error; }
  async onActivityExpired() {
    console.log("Activity expired, signalling container to stop");
    await this.stop();
  }

  // ---- lifecycle ----
  #watch(monitor) {
    this.#monitor = monitor;
    monitor.then(async () => {
      if (this.#monitor === monitor) await this.ctx.blockConcurrencyWhile(() => this.#setState("stopped_with_code", 0));
    }, async (error) => {
      if (this.#monitor !== monitor) return;
      const code = exitCodeOf(error);
      if (code !== null) { await this.ctx.blockConcurrencyWhile(() => this.#setState("stopped_with_code", code)); return; }
      await this.ctx.blockConcurrencyWhile(() => this.#setState("stopped"));
      if (!errorText(error).includes(NO_INSTANCE)) { try { await this.onError(error); } catch { /* the default rethrows */ } }
    }).catch((error) => {
      // A container that outlives its object's reset (berth shutting down,
      // a reload) has no storage left to record its stop in.
      if (!errorText(error).includes("durable object was reset")) console.error("Container monitor:", error);
    });
  }

  async #syncStopped() {
    if (this.container.running) return;
    const s = await this.getState();
    if (s.status === "running" || s.status === "healthy" || s.status === "stopped_with_code") {
      await this.#setState("stopped");
      await this.onStop({ exitCode: s.exitCode ?? 0, reason: "exit" });
    }
  }

  async start(startOptions, waitOptions) {
    await this.#startIfNotRunning(startOptions, waitOptions?.portToCheck ?? this.defaultPort ?? this.requiredPorts?.[0] ?? 33, waitOptions?.signal);
  }

  // #startIfNotRunning starts the container unless it runs and waits until
  // it answers on port (or says it is not listening yet). Concurrent
  // callers share one start; onStart runs once per start.
  #startIfNotRunning(startOptions, port, signal) {
    if (this.#startInFlight) return this.#startInFlight;
    if (this.container.running) return Promise.resolve(false);
    this.renewActivityTimeout();
    const p = (async () => {
      await this.#syncStopped();
      const o = startOptions ?? {};
      this.container.start({
        env: o.envVars ?? this.envVars, entrypoint: o.entrypoint ?? this.entrypoint,
        enableInternet: o.enableInternet ?? this.enableInternet, labels: o.labels ?? this.labels,
      });
      this.#watch(this.container.monitor());
      await this.#setState("running");
      await this.ctx.storage.setAlarm(Date.now() + 1000);
      return true;
    })();
    this.#startInFlight = p;
    const clear = () => { if (this.#startInFlight === p) this.#startInFlight = null; };
    p.then(clear, clear);
    return p;
  }

  async waitForPort({ portToCheck, signal, retries, waitInterval } = {}) {
    const interval = waitInterval ?? POLL_MS;
    const tries = retries ?? Math.ceil(PORTS_TIMEOUT_MS / interval);
    const port = this.container.getTcpPort(portToCheck);
    for (let i = 0; i < tries; i++) {
      if (signal?.aborted) throw new Error("Aborted waiting for the container port");
      if (!this.container.running) {
        const err = new Error(`Container exited before port ${portToCheck} was ready`);
        await this.onError(err);
        throw err;
      }
      try {
        const res = await port.fetch("http://" + this.pingEndpoint, { signal: AbortSignal.timeout(PING_TIMEOUT_MS) });
        await res.body?.cancel();
        return tries - i;
      } catch (e) {
        // Not listening yet, or the container just ended (the next turn
        // sees running turn false): try again.
        if (signal?.aborted) throw e;
      }
      await new Promise((r) => setTimeout(r, interval));
    }
    throw new Error(`Container did not listen on port ${portToCheck} in time`);
  }

  async startAndWaitForPorts(portsOrArgs, cancellationOptions, startOptions) {
    let ports = portsOrArgs;
    if (portsOrArgs !== null && typeof portsOrArgs === "object" && !Array.isArray(portsOrArgs)) {
      ({ ports, cancellationOptions, startOptions } = portsOrArgs);
    }
    const list = ports === undefined ? (this.requiredPorts ?? (this.defaultPort !== undefined ? [this.defaultPort] : [])) : [].concat(ports);
    if (list.length === 0) throw new Error("No ports to wait for: set defaultPort or requiredPorts, or pass ports");
    const started = await this.#startIfNotRunning(startOptions, list[0], cancellationOptions?.abort);
    this.#inflight++; // the wait for the ports counts as a request
    try {
      for (const port of list) {
        await this.waitForPort({ portToCheck: port, signal: cancellationOptions?.abort, waitInterval: cancellationOptions?.waitInterval });
      }
    } finally {
      this.#inflight--;
      this.renewActivityTimeout();
    }
    const s = await this.getState();
    if (s.status !== "healthy") {
      await this.ctx.blockConcurrencyWhile(async () => {
        await this.#setState("healthy");
        if (started || s.status === "running") await this.onStart();
      });
    }
  }

  async stop(signal = "SIGTERM") {
    if (this.container.running) this.container.signal(typeof signal === "string" ? signalNumbers[signal] : signal);
    await this.#syncStopped();
  }

  async destroy() { await this.container.destroy(); }

  // ---- requests ----
  async fetch(request) {
    const header = request.headers.get(TARGET_PORT_HEADER);
    const port = header ? Number(header) : this.defaultPort;
    if (port === undefined) throw new Error("No port configured for this container. Set the `defaultPort` in your Container subclass, or specify a port with `container.fetch(switchPort(request, port))`.");
    return this.containerFetch(request, port);
  }

  async containerFetch(requestOrUrl, portOrInit, portParam) {
    let request, port;
    if (typeof requestOrUrl === "string" || requestOrUrl instanceof URL) {
      request = new Request(String(requestOrUrl), typeof portOrInit === "object" ? portOrInit : undefined);
      port = typeof portOrInit === "number" ? portOrInit : portParam;
    } else {
      request = requestOrUrl;
      port = portOrInit;
    }
    port ??= this.defaultPort;
    if (port === undefined) throw new Error("No port specified for the container fetch");
    const state = await this.getState();
    if (!this.container.running || state.status !== "healthy") {
      try {
        await this.startAndWaitForPorts(port, { abort: request.signal });
      } catch (e) {
        const text = errorText(e);
        if (text.includes(NO_INSTANCE)) return new Response("There is no Container instance available at this time.", { status: 503 });
        if (text.includes(RATE_LIMITED)) return new Response(e.message, { status: 429 });
        return new Response(`Failed to start container: ${e instanceof Error ? e.message : String(e)}`, { status: 500 });
      }
    }
    this.renewActivityTimeout();
    this.#inflight++;
    let res;
    try {
      res = await this.container.getTcpPort(port).fetch(request.url.replace("https:", "http:"), request);
    } catch (e) {
      this.#inflight--;
      return new Response(`Error proxying request to container: ${e instanceof Error ? e.message : String(e)}`, { status: 500 });
    }
    if (res.webSocket || res.body === null) {
      // A WebSocket keeps the container busy in the runtime while it is
      // open (its connection holds it), not through this counter.
      this.#inflight--;
      this.renewActivityTimeout();
      return res;
    }
    const done = () => { this.#inflight--; this.renewActivityTimeout(); };
    const ended = res[BODY_END];
    if (ended) {
      // The body passes through untouched (no copy through JavaScript);
      // the runtime says when it has ended.
      ended.then(done);
      return new Response(res.body, res);
    }
    const { readable, writable } = new IdentityTransformStream();
    res.body.pipeTo(writable).catch(() => {}).finally(done);
    return new Response(readable, res);
  }

  // ---- the alarm: sleepAfter and stop events ----
  async alarm() {
    if (!this.container.running) {
      await this.#syncStopped();
      await this.ctx.storage.deleteAlarm();
      return;
    }
    if (this.#inflight === 0 && !this.#startInFlight && this.#sleepAfterMs <= Date.now()) {
      await this.onActivityExpired();
      this.renewActivityTimeout();
      await this.ctx.storage.setAlarm(Date.now() + 1000);
      return;
    }
    // Checked every second at most: a request may have renewed the
    // timeout meanwhile, and the container may have stopped.
    await this.ctx.storage.setAlarm(Math.min(Math.max(this.#sleepAfterMs, Date.now() + 200), Date.now() + 1000));
  }
}

export function getContainer(binding, name = "cf-singleton-container") {
  return binding.get(binding.idFromName(name));
}

export async function getRandom(binding, instances = 3) {
  return binding.get(binding.idFromName(`instance-${Math.floor(Math.random() * instances)}`));
}

export async function loadBalance(binding, instances = 3) {
  console.warn("loadBalance is deprecated, use getRandom instead");
  return getRandom(binding, instances);
}

export function switchPort(request, port) {
  const headers = new Headers(request.headers);
  headers.set(TARGET_PORT_HEADER, String(port));
  return new Request(request, { headers });
}
