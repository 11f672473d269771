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
const IDLE_MS = Symbol.for("berth.idleMs"); // on ctx.container: ms idle, -1 while busy
const PROXY_NOW = Symbol.for("berth.proxyNow"); // see Container[PROXY_NOW]
const POLL_MS = 300;
const BUSY_POLL_MS = 5_000; // how often the alarm looks at a busy container
const PORTS_TIMEOUT_MS = 20_000;
const PING_TIMEOUT_MS = 5_000;
const signalNumbers = { SIGINT: 2, SIGTERM: 15, SIGKILL: 9 };
const SCHEDULE_PREFIX = "__CF_CONTAINER_SCHEDULE:"; // + taskId, in ctx.storage.kv
const errorText = (e) => (e instanceof Error ? e.message : String(e)).toLowerCase();
const exitCodeOf = (e) => {
  const m = /(?:container exited with unexpected exit code|runtime signalled the container to exit): (\d+)/.exec(errorText(e));
  return m ? Number(m[1]) : null;
};

// randomId is the package's generateId: url-friendly characters.
function randomId(n) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  let id = "";
  for (const b of crypto.getRandomValues(new Uint8Array(n))) id += alphabet[b % alphabet.length];
  return id;
}

// toSchedule is the record schedule(), getSchedule() and listSchedules()
// give for a stored task, and the second argument of its callback.
function toSchedule(task, payload) {
  const s = { taskId: task.taskId, callback: task.callback, payload, type: task.type, time: task.time };
  if (task.type === "delayed") s.delayInSeconds = task.delayInSeconds;
  return s;
}
// storedPayload is the payload as the package reads it back: through JSON.
function storedPayload(task) {
  try {
    return JSON.parse(task.payloadJSON);
  } catch (e) {
    console.error(`Error parsing payload for schedule ${task.taskId}:`, e);
    return undefined;
  }
}

function parseDuration(v) {
  if (typeof v === "number") return v;
  const m = typeof v === "string" && /^(\d+)([smh])$/.exec(v);
  if (!m) throw new Error(`invalid time expression ${v}`);
  return Number(m[1]) * { s: 1, m: 60, h: 3600 }[m[2]];
}

// ---- Outbound interception ----
// As in @cloudflare/containers 0.3.7: a Container subclass names its egress
// handlers in static properties (outboundByHost, outbound, outboundHandlers
// and the aliases outboundProxy, outboundProxies) and limits hosts with
// allowedHosts and deniedHosts; the instance registers ContainerProxy, a
// loopback entrypoint the Worker must export (export { ContainerProxy }
// from "cloudflare:workers"), with ctx.container's interceptOutbound*, and
// the container's outbound requests reach ContainerProxy.fetch, which picks
// the handler. Handlers are (request, env, { containerId, className,
// params }) => Response. Static properties set by assignment go through the
// setters into registries per class name, as in the package; static class
// fields (define semantics) are read off the class itself, which the
// Worker's module exports.
const OUTBOUND_CONFIGURATION_KEY = "OUTBOUND_CONFIGURATION";
const outboundHandlersRegistry = new Map(); // class name → { name: handler }
const defaultOutboundHandlerNameRegistry = new Map(); // class name → name of its catch-all handler
const outboundByHostRegistry = new Map(); // class name → { host: handler }
const blockedOrigin = () => new Response("Origin is disallowed", { status: 520 });

export function outboundParams(_handler, params) { return params; }

// simpleGlobMatch matches value against a pattern where * stands for any
// run of characters.
function simpleGlobMatch(pattern, value) {
  const parts = pattern.split("*");
  if (parts.length === 1) return pattern === value;
  if (!value.startsWith(parts[0]) || !value.endsWith(parts[parts.length - 1])) return false;
  let pos = parts[0].length;
  for (let i = 1; i < parts.length - 1; i++) {
    const idx = value.indexOf(parts[i], pos);
    if (idx === -1) return false;
    pos = idx + parts[i].length;
  }
  return pos <= value.length - parts[parts.length - 1].length;
}
const matchesHostList = (hostname, patterns) => patterns.some((p) => simpleGlobMatch(p, hostname));
const normalizeHostname = (h) => h.replace(/\.+$/, "");
const byHostMatch = (table, hostname) => table[hostname] ??
  Object.entries(table).find(([pattern]) => pattern !== hostname && simpleGlobMatch(pattern, hostname))?.[1];

// outboundOf reads the egress handlers of a Container class (by name).
function outboundOf(className) {
  const ctor = globalThis.__berth?.module?.[className];
  const handlers = { ...(outboundHandlersRegistry.get(className) ?? {}), ...(ctor?.outboundProxies ?? {}), ...(ctor?.outboundHandlers ?? {}) };
  const name = defaultOutboundHandlerNameRegistry.get(className);
  return {
    handlers,
    byHost: ctor?.outboundByHost ?? outboundByHostRegistry.get(className),
    outbound: ctor?.outbound ?? ctor?.outboundProxy ?? (name ? handlers[name] : undefined),
  };
}

export class ContainerProxy extends WorkerEntrypoint {
  async fetch(request) {
    const hostname = normalizeHostname(new URL(request.url).hostname);
    const { className, containerId, outboundByHostOverrides, outboundHandlerOverride, enableInternet, allowedHosts, deniedHosts, interceptAll } = this.ctx.props;
    const baseCtx = { containerId, className };
    if (deniedHosts && matchesHostList(hostname, deniedHosts)) return blockedOrigin();
    if (allowedHosts && !matchesHostList(hostname, allowedHosts)) return blockedOrigin();
    const { handlers, byHost, outbound } = outboundOf(className);
    if (outboundByHostOverrides) {
      const override = byHostMatch(outboundByHostOverrides, hostname);
      if (override && handlers[override.method]) return handlers[override.method](request, this.env, { ...baseCtx, params: override.params });
    }
    if (byHost) {
      const handler = byHostMatch(byHost, hostname);
      if (handler) return handler(request, this.env, baseCtx);
    }
    if (!interceptAll) return allowedHosts || enableInternet ? fetch(request) : blockedOrigin();
    if (outboundHandlerOverride && handlers[outboundHandlerOverride.method]) {
      return handlers[outboundHandlerOverride.method](request, this.env, { ...baseCtx, params: outboundHandlerOverride.params });
    }
    if (outbound) return outbound(request, this.env, baseCtx);
    if (allowedHosts || enableInternet) return fetch(request);
    return blockedOrigin();
  }
}

export class Container extends DurableObject {
  static get outboundByHost() { return outboundByHostRegistry.get(this.name); }
  static set outboundByHost(handlers) { outboundByHostRegistry.set(this.name, handlers); }
  static get outboundHandlers() { return outboundHandlersRegistry.get(this.name); }
  static set outboundHandlers(handlers) {
    outboundHandlersRegistry.set(this.name, { ...(outboundHandlersRegistry.get(this.name) ?? {}), ...handlers });
  }
  static get outbound() {
    const name = defaultOutboundHandlerNameRegistry.get(this.name);
    return name ? outboundHandlersRegistry.get(this.name)?.[name] : undefined;
  }
  static set outbound(handler) {
    outboundHandlersRegistry.set(this.name, { ...(outboundHandlersRegistry.get(this.name) ?? {}), __outbound__: handler });
    defaultOutboundHandlerNameRegistry.set(this.name, "__outbound__");
  }
  static get outboundProxies() { return this.outboundHandlers; }
  static set outboundProxies(handlers) { this.outboundHandlers = handlers; }
  static get outboundProxy() { return this.outbound; }
  static set outboundProxy(handler) { this.outbound = handler; }

  defaultPort = undefined;
  requiredPorts = undefined;
  sleepAfter = "10m";
  envVars = {};
  entrypoint = undefined;
  enableInternet = true;
  labels = {};
  pingEndpoint = "ping";
  // Outbound interception (see ContainerProxy).
  interceptHttps = false;
  allowedHosts = undefined;
  deniedHosts = undefined;
  outboundByHostOverrides = {};
  outboundHandlerOverride = undefined;
  allowedHostsOverride = undefined;
  deniedHostsOverride = undefined;
  usingInterception = false;
  hasInterceptAllRegistration = false;

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
    const persistedOutbound = this.#restoreOutboundConfiguration();
    ctx.blockConcurrencyWhile(async () => {
      await this.#setAlarmWithin(1000);
      // After an await: a subclass's fields (sleepAfter) are set by now.
      this.renewActivityTimeout();
      if (persistedOutbound !== undefined || this.#hasStaticOutbound() ||
          this.effectiveAllowedHosts !== undefined || this.effectiveDeniedHosts !== undefined) this.usingInterception = true;
      if (this.usingInterception && this.container.running) {
        await this.applyOutboundInterception().catch((e) => console.error("Container: outbound interception:", e));
      }
    });
    if (this.container.running) this.#watch(this.container.monitor());
  }

  // ---- state ----
  // The state is kept in storage, as the package keeps it, and mirrored
  // here: every request checks it, and this instance is its only writer.
  #state = null;
  async getState() {
    if (this.#state === null) this.#state = (await this.ctx.storage.get(STATE_KEY)) ?? null;
    return this.#state === null ? { status: "stopped", lastChange: Date.now() } : { ...this.#state };
  }
  async #setState(status, exitCode) {
    const s = { status, lastChange: Date.now() };
    if (exitCode !== undefined) s.exitCode = exitCode;
    await this.ctx.storage.put(STATE_KEY, s);
    this.#state = s;
  }

  #span = 0; #spanOf = undefined; // sleepAfter in ms, and the value it was parsed from
  #sleepAfterSpan() {
    if (this.#spanOf !== this.sleepAfter) { this.#span = parseDuration(this.sleepAfter) * 1000; this.#spanOf = this.sleepAfter; }
    return this.#span;
  }
  renewActivityTimeout() {
    this.#sleepAfterMs = Date.now() + this.#sleepAfterSpan();
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
    }).then(async () => {
      // The alarm reports the stop (onStop) now, as the package's, which
      // its monitor wakes, does; it is not due before sleepAfter otherwise.
      if (this.#monitor === monitor) await this.ctx.storage.setAlarm(Date.now());
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

  // As the package's, start runs onStart once the container runs, whether
  // this call started it or not.
  async start(startOptions, waitOptions) {
    await this.#startIfNotRunning(startOptions, waitOptions?.portToCheck ?? this.defaultPort ?? this.requiredPorts?.[0] ?? 33, waitOptions?.signal);
    await this.ctx.blockConcurrencyWhile(async () => { await this.onStart(); });
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
      await this.refreshOutboundInterception(); // before start, as on Cloudflare
      const o = startOptions ?? {};
      this.container.start({
        env: o.envVars ?? this.envVars, entrypoint: o.entrypoint ?? this.entrypoint,
        enableInternet: o.enableInternet ?? this.enableInternet, labels: o.labels ?? this.labels,
      });
      this.#watch(this.container.monitor());
      await this.#setState("running");
      await this.#setAlarmWithin(1000);
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
    let last;
    for (let i = 0; i < tries; i++) {
      if (signal?.aborted) throw new Error("Aborted waiting for the container port");
      if (!this.container.running) {
        // A start the runtime refused is that refusal (containerFetch maps
        // it to 503 or 429), not a container that exited.
        const ended = await this.#monitor?.then(() => null, (e) => e);
        if (ended && (errorText(ended).includes(NO_INSTANCE) || errorText(ended).includes(RATE_LIMITED))) throw ended;
        const err = new Error(`Container exited before port ${portToCheck} was ready`);
        await this.#reportError(err);
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
        last = e;
      }
      await new Promise((r) => setTimeout(r, interval));
    }
    // The package's wording for onError; the error thrown names the port.
    await this.#reportError(`Failed to verify port ${portToCheck} is available after ${tries * interval}ms, last error: ${last instanceof Error ? last.message : String(last)}`);
    throw new Error(`Container did not listen on port ${portToCheck} in time`);
  }

  // #reportError hands a failure to wait for the container to onError; what
  // onError throws is dropped, as the package drops it: the caller throws
  // the failure itself.
  async #reportError(err) {
    try { await this.onError(err); } catch { /* the caller throws err */ }
  }

  async startAndWaitForPorts(portsOrArgs, cancellationOptions, startOptions) {
    let ports = portsOrArgs;
    if (portsOrArgs !== null && typeof portsOrArgs === "object" && !Array.isArray(portsOrArgs)) {
      ({ ports, cancellationOptions, startOptions } = portsOrArgs);
    }
    const list = ports === undefined ? (this.requiredPorts ?? (this.defaultPort !== undefined ? [this.defaultPort] : [])) : [].concat(ports);
    if (list.length === 0) throw new Error("No ports to wait for: set defaultPort or requiredPorts, or pass ports");
    const started = await this.#startIfNotRunning(startOptions, list[0], cancellationOptions?.abort);
    // portReadyTimeoutMS is one budget of tries for all the ports, as in
    // the package.
    const interval = cancellationOptions?.waitInterval ?? POLL_MS;
    let tries = Math.ceil((cancellationOptions?.portReadyTimeoutMS ?? PORTS_TIMEOUT_MS) / interval);
    this.#inflight++; // the wait for the ports counts as a request
    try {
      for (const port of list) {
        tries = await this.waitForPort({ portToCheck: port, signal: cancellationOptions?.abort, waitInterval: interval, retries: Math.max(tries, 1) });
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

  // ---- outbound interception ----
  get effectiveAllowedHosts() { return this.allowedHostsOverride ?? this.allowedHosts; }
  get effectiveDeniedHosts() { return this.deniedHostsOverride ?? this.deniedHosts; }

  #hasStaticOutbound() {
    const c = this.constructor;
    return c.outboundByHost !== undefined || c.outbound !== undefined || c.outboundHandlers !== undefined ||
      c.outboundProxy !== undefined || c.outboundProxies !== undefined;
  }

  #validateHandler(methodName) {
    if (!(methodName in outboundOf(this.constructor.name).handlers)) {
      throw new Error(`Outbound handler method '${methodName}' not found in outboundHandlers for ${this.constructor.name}`);
    }
  }

  async setOutboundHandler(methodName, ...params) {
    this.#validateHandler(methodName);
    this.outboundHandlerOverride = params.length === 0 ? { method: methodName } : { method: methodName, params: params[0] };
    await this.refreshOutboundInterception();
  }
  async setOutboundByHost(hostname, methodName, ...params) {
    this.#validateHandler(methodName);
    this.outboundByHostOverrides[hostname] = params.length === 0 ? { method: methodName } : { method: methodName, params: params[0] };
    await this.refreshOutboundInterception();
  }
  async removeOutboundByHost(hostname) {
    delete this.outboundByHostOverrides[hostname];
    await this.refreshOutboundInterception();
  }
  async setOutboundByHosts(handlers) {
    for (const h of Object.values(handlers)) this.#validateHandler(typeof h === "string" ? h : h.method);
    this.outboundByHostOverrides = Object.fromEntries(Object.entries(handlers).map(([host, h]) => [host, typeof h === "string" ? { method: h } : h]));
    await this.refreshOutboundInterception();
  }
  async setAllowedHosts(hosts) {
    this.allowedHostsOverride = [...hosts];
    this.usingInterception = true;
    await this.refreshOutboundInterception();
  }
  async setDeniedHosts(hosts) {
    this.deniedHostsOverride = [...hosts];
    this.usingInterception = true;
    await this.refreshOutboundInterception();
  }
  async allowHost(hostname) {
    const hosts = this.effectiveAllowedHosts ?? [];
    if (!hosts.includes(hostname)) this.allowedHostsOverride = [...hosts, hostname];
    this.usingInterception = true;
    await this.refreshOutboundInterception();
  }
  async denyHost(hostname) {
    const hosts = this.effectiveDeniedHosts ?? [];
    if (!hosts.includes(hostname)) this.deniedHostsOverride = [...hosts, hostname];
    this.usingInterception = true;
    await this.refreshOutboundInterception();
  }
  async removeAllowedHost(hostname) {
    this.allowedHostsOverride = (this.effectiveAllowedHosts ?? []).filter((h) => h !== hostname);
    await this.refreshOutboundInterception();
  }
  async removeDeniedHost(hostname) {
    this.deniedHostsOverride = (this.effectiveDeniedHosts ?? []).filter((h) => h !== hostname);
    await this.refreshOutboundInterception();
  }

  #outboundConfiguration() {
    return {
      outboundByHostOverrides: Object.keys(this.outboundByHostOverrides).length > 0 ? this.outboundByHostOverrides : undefined,
      outboundHandlerOverride: this.outboundHandlerOverride,
      allowedHosts: this.effectiveAllowedHosts,
      deniedHosts: this.effectiveDeniedHosts,
      hasInterceptAllRegistration: this.hasInterceptAllRegistration || undefined,
    };
  }

  // #restoreOutboundConfiguration reads the runtime overrides back from
  // storage (synchronously, in the constructor, as the package does).
  #restoreOutboundConfiguration() {
    const conf = this.ctx.storage.kv.get(OUTBOUND_CONFIGURATION_KEY);
    if (!conf) return undefined;
    const valid = (m) => { try { this.#validateHandler(m); return true; } catch (e) { console.warn("Ignoring an invalid persisted outbound handler:", e); return false; } };
    this.outboundHandlerOverride = conf.outboundHandlerOverride !== undefined && valid(conf.outboundHandlerOverride.method) ? conf.outboundHandlerOverride : undefined;
    this.outboundByHostOverrides = {};
    for (const [host, o] of Object.entries(conf.outboundByHostOverrides ?? {})) if (valid(o.method)) this.outboundByHostOverrides[host] = o;
    this.hasInterceptAllRegistration = conf.hasInterceptAllRegistration === true;
    if (conf.allowedHosts) this.allowedHostsOverride = conf.allowedHosts;
    if (conf.deniedHosts) this.deniedHostsOverride = conf.deniedHosts;
    return conf;
  }

  async refreshOutboundInterception() {
    if (this.usingInterception) await this.applyOutboundInterception();
  }

  // applyOutboundInterception registers ContainerProxy, with the current
  // configuration as its props, for what the class intercepts: the hosts
  // of outboundByHost (and their HTTPS with interceptHttps), or everything
  // once a catch-all, a host list or a runtime override needs it (which
  // stays so: interception cannot be taken back).
  async applyOutboundInterception() {
    const ctx = this.ctx;
    if (ctx.exports === undefined) throw new Error("ctx.exports is undefined: export ContainerProxy from the Worker's entry module");
    if (ctx.exports.ContainerProxy === undefined) {
      throw new Error('ctx.exports.ContainerProxy is undefined: export it from the Worker\'s entry module (export { ContainerProxy } from "cloudflare:workers")');
    }
    const c = this.constructor;
    const needsCatchAll = c.outbound !== undefined || c.outboundProxy !== undefined || this.outboundHandlerOverride !== undefined;
    const interceptAll = this.hasInterceptAllRegistration || needsCatchAll || this.effectiveAllowedHosts !== undefined ||
      this.effectiveDeniedHosts !== undefined || Object.keys(this.outboundByHostOverrides).length > 0 ||
      this.allowedHostsOverride !== undefined || this.deniedHostsOverride !== undefined;
    if (interceptAll) this.hasInterceptAllRegistration = true;
    const conf = this.#outboundConfiguration();
    ctx.storage.kv.put(OUTBOUND_CONFIGURATION_KEY, { ...conf, allowedHosts: this.allowedHostsOverride, deniedHosts: this.deniedHostsOverride });
    const fetcher = ctx.exports.ContainerProxy({
      props: {
        enableInternet: this.enableInternet, containerId: ctx.id.toString(), className: c.name,
        outboundByHostOverrides: conf.outboundByHostOverrides, outboundHandlerOverride: conf.outboundHandlerOverride,
        allowedHosts: conf.allowedHosts, deniedHosts: conf.deniedHosts, interceptAll,
      },
    });
    const staticHosts = Object.keys(outboundOf(c.name).byHost ?? {});
    const hosts = interceptAll ? staticHosts : [...new Set([...staticHosts, ...Object.keys(this.outboundByHostOverrides)])];
    for (const host of hosts) {
      await this.container.interceptOutboundHttp(host, fetcher);
      if (this.interceptHttps) await this.container.interceptOutboundHttps(host, fetcher);
    }
    if (interceptAll) {
      if (this.interceptHttps) await this.container.interceptOutboundHttps("*", fetcher);
      await this.container.interceptAllOutboundHttp(fetcher);
    }
  }

  async stop(signal = "SIGTERM") {
    if (this.container.running) this.container.signal(typeof signal === "string" ? signalNumbers[signal] : signal);
    await this.#syncStopped();
  }

  async destroy() { await this.container.destroy(); }

  // ---- requests ----
  // Not async: the promise containerFetch returns is the answer, without
  // the turns an async function's return of a promise costs. A healthy
  // container with the class's own containerFetch is proxied to at once.
  fetch(request) {
    try {
      const header = request.headers.get(TARGET_PORT_HEADER);
      const port = header ? Number(header) : this.defaultPort;
      if (port === undefined) throw new Error("No port configured for this container. Set the `defaultPort` in your Container subclass, or specify a port with `container.fetch(switchPort(request, port))`.");
      if (this.containerFetch === ownContainerFetch && this.#healthy()) return this.#proxy(request, port);
      return Promise.resolve(this.containerFetch(request, port));
    } catch (e) {
      return Promise.reject(e);
    }
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
    if (this.#state === null) await this.getState();
    if (!this.#healthy()) {
      try {
        await this.startAndWaitForPorts(port, { abort: request.signal });
      } catch (e) {
        const text = errorText(e);
        if (text.includes(NO_INSTANCE)) return new Response("There is no Container instance available at this time.", { status: 503 });
        if (text.includes(RATE_LIMITED)) return new Response(e.message, { status: 429 });
        return new Response(`Failed to start container: ${e instanceof Error ? e.message : String(e)}`, { status: 500 });
      }
    }
    return this.#proxy(request, port);
  }

  #healthy() { return this.#state !== null && this.#state.status === "healthy" && this.container.running; }

  // [PROXY_NOW] is what fetch(request) does when no code of a subclass can
  // see the request or the response, or run on the way: the class's own
  // fetch, containerFetch and renewActivityTimeout, a healthy container,
  // no target port header. The runtime's stub.fetch in the same runtime
  // then hands over the caller's request and the container's response as
  // they are, instead of a copy each way. null: take the long way. flat:
  // the request's headers in wire form.
  [PROXY_NOW](request, flat) {
    if (this.fetch !== ownFetch || this.containerFetch !== ownContainerFetch || this.renewActivityTimeout !== ownRenew ||
      this.defaultPort === undefined || !this.#healthy() || globalThis.__berth.hasFlat(flat, TARGET_PORT_HEADER)) return null;
    return this.#proxy(request, this.defaultPort);
  }

  // #proxy sends request to port and answers with the container's response,
  // whose body (or WebSocket) passes through untouched: the runtime counts
  // the container busy until it has ended, and the alarm asks it.
  #proxy(request, port) {
    this.renewActivityTimeout();
    this.#inflight++;
    let answer;
    try {
      answer = this.container.getTcpPort(port).fetch(request.url.replace("https:", "http:"), request);
    } catch (e) {
      answer = Promise.reject(e);
    }
    return answer.then((res) => {
      this.#inflight--;
      this.renewActivityTimeout();
      return res;
    }, (e) => {
      this.#inflight--;
      return new Response(`Error proxying request to container: ${e instanceof Error ? e.message : String(e)}`, { status: 500 });
    });
  }

  // ---- schedules ----
  // As in the package: a task names a method of the class, runs from the
  // alarm once its time has come as this[callback](payload, schedule), and
  // is deleted then, whether it succeeded or threw. The records carry the
  // time in whole seconds and the payload as JSON gives it back. Tasks are
  // kept in storage, so they survive eviction and restarts. Unlike the
  // package, a task runs at its time rather than on the next alarm tick,
  // listSchedules lists every task of a callback (the package's stops at
  // one), and a task whose method is gone is dropped instead of retried
  // on every alarm.
  async schedule(when, callback, payload) {
    if (typeof callback !== "string") throw new Error("Callback must be a string (method name)");
    if (typeof this[callback] !== "function") throw new Error(`this.${callback} is not a function`);
    const task = { taskId: randomId(9), callback, payloadJSON: JSON.stringify(payload) ?? null };
    if (when instanceof Date) {
      Object.assign(task, { type: "scheduled", time: Math.floor(when.getTime() / 1000), at: when.getTime() });
    } else if (typeof when === "number") {
      const now = Date.now();
      Object.assign(task, { type: "delayed", delayInSeconds: when, time: Math.floor(now / 1000 + when), at: now + when * 1000 });
    }
    if (!Number.isFinite(task.at)) throw new Error("Invalid schedule type. 'when' must be a Date or number of seconds");
    this.ctx.storage.kv.put(SCHEDULE_PREFIX + task.taskId, task);
    const alarm = await this.ctx.storage.getAlarm();
    if (alarm === null || task.at < alarm) await this.ctx.storage.setAlarm(task.at);
    return toSchedule(task, payload);
  }

  async getSchedule(id) {
    const task = this.ctx.storage.kv.get(SCHEDULE_PREFIX + id);
    return task === undefined ? undefined : toSchedule(task, storedPayload(task));
  }

  async listSchedules(name) {
    return this.#tasks().filter((t) => t.callback === name).map((t) => toSchedule(t, storedPayload(t)));
  }

  deleteSchedules(name) {
    for (const t of this.#tasks()) if (t.callback === name) this.ctx.storage.kv.delete(SCHEDULE_PREFIX + t.taskId);
  }

  // scheduleNextAlarm sets the alarm ms from now, as the package's does.
  async scheduleNextAlarm(ms = 1000) {
    await this.ctx.storage.setAlarm(Date.now() + ms);
    await this.ctx.storage.sync();
  }

  #tasks() {
    return Array.from(this.ctx.storage.kv.list({ prefix: SCHEDULE_PREFIX }), ([, t]) => t);
  }

  // #setAlarmWithin sets the alarm ms from now, or sooner for a task due.
  async #setAlarmWithin(ms) {
    await this.ctx.storage.setAlarm(Math.min(Date.now() + ms, ...this.#tasks().map((t) => t.at)));
  }

  // #runDueTasks runs the tasks whose time has come, oldest first.
  async #runDueTasks() {
    const now = Date.now();
    const due = this.#tasks().filter((t) => t.at <= now).sort((a, b) => a.at - b.at);
    for (const task of due) {
      const key = SCHEDULE_PREFIX + task.taskId;
      if (this.ctx.storage.kv.get(key) === undefined) continue; // deleted by an earlier callback
      const fn = this[task.callback];
      if (typeof fn !== "function") {
        console.error(`Callback ${task.callback} not found or is not a function`);
      } else {
        try {
          await fn.call(this, task.payloadJSON === null ? undefined : JSON.parse(task.payloadJSON), toSchedule(task, storedPayload(task)));
        } catch (e) {
          console.error(`Error executing scheduled callback "${task.callback}":`, e);
        }
      }
      this.ctx.storage.kv.delete(key);
    }
  }

  // ---- the alarm: schedules, sleepAfter and stop events ----
  async alarm() {
    await this.#runDueTasks();
    const next = Math.min(...this.#tasks().map((t) => t.at)); // Infinity: none
    if (!this.container.running) {
      await this.#syncStopped();
      if (next === Infinity) await this.ctx.storage.deleteAlarm();
      else await this.ctx.storage.setAlarm(next);
      return;
    }
    const idleMs = this.container[IDLE_MS]();
    if (idleMs < 0) this.renewActivityTimeout();
    else this.#sleepAfterMs = Math.max(this.#sleepAfterMs, Date.now() - idleMs + this.#sleepAfterSpan());
    if (this.#inflight === 0 && !this.#startInFlight && this.#sleepAfterMs <= Date.now()) {
      await this.onActivityExpired();
      this.renewActivityTimeout();
      await this.#setAlarmWithin(1000);
      return;
    }
    // Idle: the alarm comes back when the timeout runs out, unless a
    // request renews it first (then it goes again). Busy (requests in
    // flight, open streams or WebSockets, whose end the runtime knows only
    // when asked): again after at most BUSY_POLL_MS. Each setAlarm is a
    // durable write, so not every second for every object.
    const now = Date.now();
    const busy = idleMs < 0 || this.#inflight > 0 || this.#startInFlight;
    const due = busy ? now + Math.min(BUSY_POLL_MS, this.#sleepAfterSpan()) : Math.max(this.#sleepAfterMs, now + 200);
    await this.ctx.storage.setAlarm(Math.min(due, next));
  }
}
// A subclass that overrides fetch or containerFetch gets its requests
// through it.
const ownFetch = Container.prototype.fetch, ownContainerFetch = Container.prototype.containerFetch,
  ownRenew = Container.prototype.renewActivityTimeout;

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
