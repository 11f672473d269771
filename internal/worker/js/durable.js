// Durable Objects: namespaces, ids and stubs (the caller's side), the live
// instances of the script's Durable Object classes with their ctx and
// storage (the object's side), and the structured-clone serialisation that
// carries RPC arguments, results and stored values as bytes. Evaluated
// after fetch.js. Go's side is durable.go.
//
// An object lives in one runtime; its caller may be in another. Everything
// that crosses is bytes (serialize/deserialize) so the path is the same
// either way. Storage operations are synchronous host calls (local
// SQLite), so the async storage API returns settled promises: no other
// event of the object can start while one "awaits" storage (the input
// gate). Go commits the object's writes before any output leaves the
// runtime (the output gate).
(function (g) {
  "use strict";
  const B = g.__berth;
  const { host, hostAsync, toU8, toHostBuffer, utf8 } = B;

  // ---- structured clone to bytes ---------------------------------------------
  // Layout: u32 (little endian) length of a JSON tree, the tree as UTF-8,
  // then the bytes of every ArrayBuffer and body the tree refers to by
  // offset. Plain JSON values stand for themselves; everything else is an
  // array whose first item is a tag. Objects are numbered in the order
  // they are met, so shared and circular references come back as such.
  const errorTypes = { Error, EvalError, RangeError, ReferenceError, SyntaxError, TypeError, URIError };
  const viewTypes = { Int8Array, Uint8Array, Uint8ClampedArray, Int16Array, Uint16Array, Int32Array, Uint32Array,
    Float32Array, Float64Array, BigInt64Array, BigUint64Array, DataView };
  const cloneError = (what) => new DOMException(`${what} could not be cloned.`, "DataCloneError");
  const describe = (v) => {
    if (typeof v === "function") return `function ${v.name || "anonymous"}`;
    const c = v && v.constructor && v.constructor.name;
    return c ? `an instance of ${c}` : Object.prototype.toString.call(v);
  };
  const textDecoder = new TextDecoder();

  // serialize encodes value. rpc is true for RPC arguments and results:
  // then class instances are refused (Cloudflare passes only plain data and
  // RpcTargets), and Requests and Responses are allowed, with the bodies
  // read beforehand (readBodies) in bodies.
  function serialize(value, rpc, bodies) {
    const refs = new Map();
    const blobs = [];
    let blobLen = 0;
    const blob = (u) => { const off = blobLen; blobs.push(u); blobLen += u.byteLength; return [off, u.byteLength]; };
    const flat = (h) => { const out = []; for (const [k, v] of h) out.push(k, v); return out; };
    const enc = (v) => {
      switch (typeof v) {
        case "string": case "boolean": return v;
        case "number": return Number.isFinite(v) && !Object.is(v, -0) ? v : ["n", Object.is(v, -0) ? "-0" : String(v)];
        case "undefined": return ["u"];
        case "bigint": return ["b", v.toString()];
        case "symbol": throw cloneError(String(v));
        case "function": throw cloneError(describe(v));
      }
      if (v === null) return null;
      const seen = refs.get(v);
      if (seen !== undefined) return ["r", seen];
      refs.set(v, refs.size);
      if (Array.isArray(v)) {
        const out = ["a"];
        for (let i = 0; i < v.length; i++) out.push(enc(v[i]));
        return out;
      }
      if (v instanceof ArrayBuffer) return ["B", ...blob(new Uint8Array(v).slice())];
      if (ArrayBuffer.isView(v)) {
        const type = v.constructor.name;
        if (!viewTypes[type]) throw cloneError(describe(v));
        return ["V", type, enc(v.buffer), v.byteOffset, v instanceof DataView ? v.byteLength : v.length];
      }
      if (v instanceof Date) { const t = v.getTime(); return ["D", Number.isNaN(t) ? null : t]; }
      if (v instanceof Map) { const out = ["M"]; for (const [k, x] of v) out.push(enc(k), enc(x)); return out; }
      if (v instanceof Set) { const out = ["S"]; for (const x of v) out.push(enc(x)); return out; }
      if (v instanceof RegExp) return ["X", v.source, v.flags];
      if (v instanceof Error) {
        const name = errorTypes[v.name] ? v.name : "Error";
        const out = ["E", name, String(v.message), v.stack === undefined ? null : String(v.stack)];
        if ("cause" in v) out.push(enc(v.cause));
        return out;
      }
      if (v instanceof Boolean || v instanceof Number || v instanceof String || v instanceof BigInt) return ["W", enc(v.valueOf())];
      if (rpc && (v instanceof Request || v instanceof Response)) {
        const body = bodies && bodies.get(v);
        const b = body ? blob(body) : null;
        if (v instanceof Request) return ["Q", v.method, v.url, flat(v.headers), b];
        return ["P", v.status, v.statusText, flat(v.headers), b];
      }
      const proto = Object.getPrototypeOf(v);
      if (proto !== Object.prototype && proto !== null) {
        if (v.constructor && v.constructor[Symbol.for("berth.RpcTarget")])
          throw cloneError(`${describe(v)} (an RpcTarget; passing RpcTargets by reference is not supported by berth)`);
        if (rpc || v instanceof Promise || v instanceof WeakMap || v instanceof WeakSet) throw cloneError(describe(v));
      }
      const out = ["O"];
      for (const k of Object.keys(v)) out.push(k, enc(v[k]));
      return out;
    };
    const tree = utf8(JSON.stringify(enc(value)));
    const out = new Uint8Array(4 + tree.length + blobLen);
    new DataView(out.buffer).setUint32(0, tree.length, true);
    out.set(tree, 4);
    let off = 4 + tree.length;
    for (const b of blobs) { out.set(b, off); off += b.byteLength; }
    return out.buffer;
  }

  function deserialize(buf) {
    const u = toU8(buf);
    const n = new DataView(u.buffer, u.byteOffset, u.byteLength).getUint32(0, true);
    const tree = JSON.parse(textDecoder.decode(u.subarray(4, 4 + n)));
    const base = 4 + n;
    const refs = [];
    const bytes = (off, len) => u.slice(base + off, base + off + len);
    const headers = (flat) => { const h = new Headers(); for (let i = 0; i + 1 < flat.length; i += 2) h.append(flat[i], flat[i + 1]); return h; };
    const dec = (t) => {
      if (t === null || typeof t !== "object") return t;
      let out;
      switch (t[0]) {
        case "n": return Number(t[1]);
        case "u": return undefined;
        case "b": return BigInt(t[1]);
        case "r": return refs[t[1]];
        case "a": out = []; refs.push(out); for (let i = 1; i < t.length; i++) out.push(dec(t[i])); return out;
        case "O": out = {}; refs.push(out); for (let i = 1; i + 1 < t.length; i += 2) out[t[i]] = dec(t[i + 1]); return out;
        case "M": out = new Map(); refs.push(out); for (let i = 1; i + 1 < t.length; i += 2) out.set(dec(t[i]), dec(t[i + 1])); return out;
        case "S": out = new Set(); refs.push(out); for (let i = 1; i < t.length; i++) out.add(dec(t[i])); return out;
        case "B": out = bytes(t[1], t[2]).buffer; refs.push(out); return out;
        case "V": {
          const at = refs.length;
          refs.push(null);
          const buffer = dec(t[2]);
          out = new viewTypes[t[1]](buffer, t[3], t[4]);
          refs[at] = out;
          return out;
        }
        case "D": out = new Date(t[1] === null ? NaN : t[1]); refs.push(out); return out;
        case "X": out = new RegExp(t[1], t[2]); refs.push(out); return out;
        case "E": {
          out = new (errorTypes[t[1]] || Error)(t[2]);
          refs.push(out);
          if (t[3] !== null) Object.defineProperty(out, "stack", { value: t[3], writable: true, configurable: true });
          if (t.length > 4) out.cause = dec(t[4]);
          return out;
        }
        case "W": { const at = refs.length; refs.push(null); out = Object(dec(t[1])); refs[at] = out; return out; }
        case "Q": {
          const body = t[4] ? bytes(t[4][0], t[4][1]) : null;
          out = new Request(t[2], { method: t[1], headers: headers(t[3]), body });
          refs.push(out);
          return out;
        }
        case "P": {
          const body = t[4] ? bytes(t[4][0], t[4][1]) : null;
          out = new Response(body, { status: t[1], statusText: t[2], headers: headers(t[3]) });
          refs.push(out);
          return out;
        }
      }
      throw new TypeError(`deserialize: unknown tag ${JSON.stringify(t[0])}`);
    };
    return dec(tree);
  }

  // readBodies reads the bodies of the Requests and Responses inside v,
  // which serialize needs as bytes, or returns null if there are none.
  async function readBodies(v) {
    let bodies = null;
    const seen = new Set();
    const walk = async (x) => {
      if (x === null || typeof x !== "object" || seen.has(x)) return;
      seen.add(x);
      if (x instanceof Request || x instanceof Response) {
        (bodies ||= new Map()).set(x, x.body === null ? null : new Uint8Array(await x.arrayBuffer()));
        return;
      }
      if (ArrayBuffer.isView(x) || x instanceof ArrayBuffer) return;
      if (Array.isArray(x)) { for (const y of x) await walk(y); return; }
      if (x instanceof Map) { for (const [k, y] of x) { await walk(k); await walk(y); } return; }
      if (x instanceof Set) { for (const y of x) await walk(y); return; }
      const proto = Object.getPrototypeOf(x);
      if (proto === Object.prototype || proto === null) for (const k of Object.keys(x)) await walk(x[k]);
    };
    await walk(v);
    return bodies;
  }

  // ---- ids, namespaces and stubs (the caller's side) -------------------------
  const idKey = Symbol("durableObjectId");
  class DurableObjectId {
    #hex; #name; #cls;
    constructor(key, cls, hex, name) {
      if (key !== idKey) throw new TypeError("Illegal constructor");
      this.#cls = cls; this.#hex = hex; this.#name = name;
    }
    toString() { return this.#hex; }
    toJSON() { return this.#hex; }
    equals(other) { return other instanceof DurableObjectId && other.#hex === this.#hex; }
    get name() { return this.#name; }
    get jurisdiction() { return undefined; }
    static _cls(id) { return id.#cls; }
  }
  const idClass = DurableObjectId._cls; delete DurableObjectId._cls;

  const locationHints = ["wnam", "enam", "sam", "weur", "eeur", "apac", "apac-ne", "apac-se", "oc", "afr", "me"];
  class DurableObjectNamespace {
    #cls;
    constructor(key, cls) { if (key !== idKey) throw new TypeError("Illegal constructor"); this.#cls = cls; }
    // Names map to ids by a keyed hash in Go; a Worker asks for the same
    // few names on every request, so remember recent answers.
    #ids = new Map();
    idFromName(name) {
      if (arguments.length === 0) throw new TypeError("idFromName: 1 argument required");
      name = String(name);
      let hex = this.#ids.get(name);
      if (hex === undefined) {
        hex = host("doIdFromName", this.#cls, name);
        if (this.#ids.size >= 1024) this.#ids.clear();
        this.#ids.set(name, hex);
      }
      return new DurableObjectId(idKey, this.#cls, hex, name);
    }
    newUniqueId(options) {
      if (options && options.jurisdiction !== undefined && typeof options.jurisdiction !== "string") throw new TypeError("newUniqueId: jurisdiction must be a string");
      return new DurableObjectId(idKey, this.#cls, host("doNewId", this.#cls), undefined);
    }
    idFromString(s) {
      if (typeof s !== "string") throw new TypeError("idFromString: the id must be a string of 64 hex digits");
      return new DurableObjectId(idKey, this.#cls, host("doIdFromString", this.#cls, s), undefined);
    }
    get(id, options) {
      if (!(id instanceof DurableObjectId)) throw new TypeError("get: the argument is not a DurableObjectId");
      if (idClass(id) !== this.#cls) throw new TypeError(`get: the id belongs to the namespace of class ${idClass(id)}, not ${this.#cls}`);
      if (options != null) {
        if (typeof options !== "object") throw new TypeError("get: options must be an object");
        const hint = options.locationHint;
        if (hint !== undefined && !locationHints.includes(hint)) throw new TypeError(`get: unknown locationHint ${JSON.stringify(hint)}; one of ${locationHints.join(", ")}`);
      }
      return makeStub(this.#cls, id);
    }
    getByName(name, options) { return this.get(this.idFromName(name), options); }
    jurisdiction(j) {
      if (!["eu", "fedramp", "fedramp-high"].includes(j)) throw new TypeError(`jurisdiction: unknown jurisdiction ${JSON.stringify(j)}`);
      return this; // one location locally
    }
    get [Symbol.toStringTag]() { return "DurableObjectNamespace"; }
  }

  async function callObject(cls, id, method, args) {
    const bodies = await readBodies(args);
    const payload = serialize(args, true, bodies);
    const [ok, result] = await hostAsync("doCall", cls, id.toString(), id.name ?? null, method, payload, B.tag);
    const v = deserialize(result);
    if (!ok) throw v;
    return v;
  }

  // A stub's own properties are id, name, fetch and connect; any other
  // name is an RPC method, which a Proxy one step up its prototype chain
  // (one per class) makes. Reading stub.fetch, the common case, then
  // passes no trap, and making a stub makes no Proxy.
  const stubId = Symbol("stubId");
  const stubProtos = new Map();
  function stubProto(cls) {
    let proto = stubProtos.get(cls);
    if (proto === undefined) {
      proto = new Proxy(Object.create(null), {
        get(t, p, receiver) {
          if (typeof p !== "string" || p === "then") return undefined; // not a thenable
          const id = receiver[stubId];
          return (...args) => callObject(cls, id, p, args);
        },
      });
      stubProtos.set(cls, proto);
    }
    return proto;
  }
  function makeStub(cls, id) {
    const target = cls + "\n" + id.toString() + "\n" + (id.name ?? "");
    const stub = Object.create(stubProto(cls));
    stub[stubId] = id;
    stub.id = id;
    stub.name = id.name;
    stub.fetch = (input, init) => B.fetchTo(target, input, init);
    stub[Symbol.for("berth.fetchTarget")] = target; // a Fetcher for interception (intercept.js)
    stub.connect = () => { throw new TypeError("connect() on a Durable Object stub is not supported by berth"); };
    return stub;
  }

  // ---- live objects (the object's side) ----------------------------------------
  // rec: { id, cls, instance, ctx, blocked, queue, broken }
  const objects = new Map();
  const errText = (e) => (e instanceof Error ? `${e.name}: ${e.message}` : String(e));

  // deliver runs an event now, or queues it while blockConcurrencyWhile
  // holds the object. Queued events start one per turn of the loop (drain
  // asks Go for a new task each time), so that one event's continuations
  // after awaiting storage run before the next event starts: the input
  // gate.
  function deliver(rec, run) {
    if (rec.blocked || rec.queue.length) { rec.queue.push(run); drain(rec); }
    else run();
  }
  function drain(rec) {
    if (rec.blocked || !rec.queue.length || rec.draining) return;
    rec.draining = true;
    host("doLater", rec.objID);
  }
  g.__berth_do_drain = (objID) => {
    const rec = objects.get(objID);
    if (!rec) return;
    rec.draining = false;
    if (rec.blocked || !rec.queue.length) return;
    rec.queue.shift()();
    drain(rec);
  };

  class DurableObjectState {
    #rec;
    constructor(key, rec) { if (key !== idKey) throw new TypeError("Illegal constructor"); this.#rec = rec; }
    get id() { return this.#rec.id; }
    get storage() { return this.#rec.storage; }
    get exports() { return B.exports; }
    get props() { return {}; }
    get container() { return this.#rec.container; }
    waitUntil(p) {
      const hold = host("doKeepAlive", this.#rec.objID);
      Promise.resolve(p).catch((e) => B.log("error")("Uncaught (in waitUntil)", e)).finally(() => host("doRelease", hold));
    }
    blockConcurrencyWhile(fn) {
      if (typeof fn !== "function") throw new TypeError("blockConcurrencyWhile: the argument must be a function");
      const rec = this.#rec;
      rec.blocked++;
      const hold = host("doKeepAlive", rec.objID);
      let p;
      try { p = Promise.resolve(fn()); } catch (e) { p = Promise.reject(e); }
      return p.then((v) => { release(); return v; }, (e) => {
        // Cloudflare resets an object whose blockConcurrencyWhile callback
        // throws: queued events fail, the next one gets a new instance.
        rec.broken = e;
        host("doAbort", rec.objID, "blockConcurrencyWhile callback threw: " + errText(e));
        release();
        throw e;
      });
      function release() { rec.blocked--; host("doRelease", hold); drain(rec); }
    }
    abort(reason) {
      const rec = this.#rec;
      const err = reason instanceof Error ? reason : new Error(reason === undefined ? "Durable Object aborted" : String(reason));
      rec.broken = err;
      host("doAbort", rec.objID, errText(err));
      throw err;
    }
    acceptWebSocket() { throw new TypeError("acceptWebSocket (WebSocket hibernation) is not supported by berth yet"); }
    getWebSockets() { return []; }
    setWebSocketAutoResponse() {}
    get [Symbol.toStringTag]() { return "DurableObjectState"; }
  }

  // ---- ctx.container ---------------------------------------------------------
  // The JavaScript side of a Durable Object's container, after workerd's:
  // running is known at construction (Go asked the Manager), start() is
  // fire-and-forget (Go queues what follows behind it), and Go watches
  // every run of the container and reports its end with __berth_ct_exit,
  // which turns running false and settles monitor().
  const sinkStream = (id) => new WritableStream({
    async write(chunk) {
      const b = typeof chunk === "string" ? utf8(chunk) : toU8(chunk);
      if (b.byteLength) await hostAsync("sinkWrite", id, toHostBuffer(b));
    },
    close() { host("sinkClose", id, null); },
    abort(e) { host("sinkClose", id, errText(e === undefined ? "aborted" : e)); },
  });
  const signalNumbers = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGUSR1: 10, SIGUSR2: 12, SIGTERM: 15 };
  const stringMap = (what, m) => {
    if (m === undefined || m === null) return undefined;
    if (typeof m !== "object") throw new TypeError(`${what} must be an object of strings`);
    const out = {};
    for (const [k, v] of Object.entries(m)) {
      if (typeof v !== "string") throw new TypeError(`${what}: the value of ${JSON.stringify(k)} must be a string`);
      out[k] = v;
    }
    return out;
  };
  const execWaiters = new Map(); // exec process id → {resolve, reject}

  class Container {
    #objID; #running; #waiters = []; #destroyReason; #destroying = false; #ports = new Map();
    constructor(key, objID, running) {
      if (key !== idKey) throw new TypeError("Illegal constructor");
      this.#objID = objID; this.#running = !!running;
    }
    get running() { return this.#running; }
    // How long the container has been idle (no request, stream or
    // WebSocket) in ms, -1 while busy: berth's own Container class reads it
    // for sleepAfter.
    [Symbol.for("berth.idleMs")]() { return host("ctIdle", this.#objID); }
    get images() { return {}; }
    start(options) {
      if (this.#running) throw new Error("start() cannot be called on a container that is already running.");
      const o = options === undefined || options === null ? {} : options;
      if (typeof o !== "object") throw new TypeError("start: options must be an object");
      const opts = { enableInternet: !!o.enableInternet };
      if (o.entrypoint !== undefined) {
        if (!Array.isArray(o.entrypoint)) throw new TypeError("start: entrypoint must be an array of strings");
        opts.entrypoint = o.entrypoint.map(String);
      }
      const env = stringMap("start: env", o.env);
      if (env) for (const k of Object.keys(env)) {
        if (k.includes("=")) throw new Error(`Environment variable names cannot contain '=': ${k}`);
        if (k.includes("\0")) throw new Error(`Environment variable names cannot contain '\\0': ${k}`);
        if (env[k].includes("\0")) throw new Error(`Environment variable values cannot contain '\\0': ${k}`);
      }
      opts.env = env;
      opts.labels = stringMap("start: labels", o.labels);
      if (o.image !== undefined || o.containerSnapshot !== undefined || o.directorySnapshots !== undefined)
        throw new TypeError("start: image, containerSnapshot and directorySnapshots need the durable_object scheduling policy, which berth does not support yet");
      host("ctStart", this.#objID, JSON.stringify(opts));
      this.#running = true;
      this.#destroyReason = undefined; this.#destroying = false;
    }
    monitor() {
      if (!this.#running) return Promise.reject(new Error("monitor() cannot be called on a container that is not running."));
      let hold = 0;
      try { hold = host("doKeepAlive", this.#objID); } catch { /* the object is going away */ }
      return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }))
        .finally(() => { if (hold) host("doRelease", hold); });
    }
    destroy(reason) {
      if (!this.#running) return Promise.resolve();
      if (!this.#destroying && reason !== undefined) this.#destroyReason = reason;
      this.#destroying = true;
      return hostAsync("ctDestroy", this.#objID).then(() => undefined);
    }
    signal(signo) {
      signo = Number(signo);
      if (!(Number.isInteger(signo) && signo > 0 && signo <= 64)) throw new RangeError("Invalid signal number.");
      if (!this.#running) throw new Error("signal() cannot be called on a container that is not running.");
      host("ctSignal", this.#objID, signo);
    }
    getTcpPort(port) {
      port = Number(port);
      if (!(Number.isInteger(port) && port > 0 && port < 65536)) throw new TypeError(`Invalid port number: ${port}`);
      // A port's Fetcher holds nothing but the port: one per port, not per
      // request.
      let fetcher = this.#ports.get(port);
      if (fetcher === undefined) this.#ports.set(port, fetcher = this.#portFetcher(port));
      return fetcher;
    }
    #portFetcher(port) {
      const objID = this.#objID;
      const target = "@ct\n" + objID + "\n" + port;
      return Object.freeze({
        fetch(input, init) {
          let req;
          try { req = new Request(input, init); } catch (e) { return Promise.reject(e); }
          if (req.url.startsWith("https:")) return Promise.reject(new Error("Connecting to a container using HTTPS is not currently supported; use HTTP instead. TLS is unnecessary anyway, as the connection is already secure by default."));
          return B.fetchTo(target, req, undefined, true);
        },
        connect(address, options) {
          if (options && (options.secureTransport === "on" || options.secureTransport === "starttls"))
            throw new Error("Connecting to a container using TLS is not currently supported. It is unnecessary anyway, as the connection is already secure by default.");
          return makeSocket(objID, port);
        },
      });
    }
    setInactivityTimeout(ms) {
      const n = Number(ms);
      if (!(n >= 0)) return Promise.reject(new RangeError("setInactivityTimeout: the duration must be a number of milliseconds, 0 or more"));
      return hostAsync("ctInactivity", this.#objID, n).then(() => undefined);
    }
    async inspect() {
      const [json] = await hostAsync("ctInspect", this.#objID);
      return json === null ? null : JSON.parse(json);
    }
    async exec(cmd, options) {
      if (!Array.isArray(cmd) || cmd.length === 0 || cmd.some((c) => typeof c !== "string"))
        throw new TypeError("exec: the command must be a non-empty array of strings");
      const o = options === undefined || options === null ? {} : options;
      if (!this.#running) throw new Error("exec() cannot be called on a container that is not running.");
      const pty = o.pty === undefined ? false : o.pty;
      // A terminal has one output stream and takes input: as in workerd,
      // stderr is then "combined" and stdin defaults to "pipe".
      const stderr = o.stderr === undefined ? (pty ? "combined" : "pipe") : o.stderr;
      if (!["pipe", "ignore", "combined"].includes(stderr)) throw new TypeError(`exec: stderr must be "pipe", "ignore" or "combined"`);
      if (pty && stderr !== "combined") throw new TypeError(`stderr must be "combined" when PTY is enabled.`);
      const stdout = o.stdout === undefined ? "pipe" : o.stdout;
      if (!["pipe", "ignore"].includes(stdout)) throw new TypeError(`exec: stdout must be "pipe" or "ignore"`);
      if (stderr === "combined" && stdout !== "pipe") throw new TypeError(`stderr: "combined" requires stdout to be "pipe".`);
      const stdinOpt = o.stdin === undefined && pty ? "pipe" : o.stdin;
      if (stdinOpt !== undefined && stdinOpt !== null && stdinOpt !== "pipe" && !(stdinOpt instanceof ReadableStream))
        throw new TypeError(`exec: stdin must be a ReadableStream or "pipe"`);
      if (o.signal && o.signal.aborted) throw o.signal.reason;
      const opts = {
        cmd, cwd: o.cwd === undefined ? "" : String(o.cwd), env: stringMap("exec: env", o.env), user: o.user === undefined ? "" : String(o.user),
        stdin: stdinOpt !== undefined && stdinOpt !== null, stdout: stdout === "pipe", stderr, pty: !!pty,
        cols: pty && typeof pty === "object" ? Number(pty.cols) : 0, rows: pty && typeof pty === "object" ? Number(pty.rows) : 0,
      };
      const [id, outHandle, errHandle, inSink, pid] = await hostAsync("ctExec", this.#objID, JSON.stringify(opts));
      let resolveExit, rejectExit;
      const exitCode = new Promise((res, rej) => { resolveExit = res; rejectExit = rej; });
      exitCode.catch(() => {});
      execWaiters.set(id, { resolve: resolveExit, reject: rejectExit });
      const outStream = outHandle ? B.hostStream(outHandle) : null;
      const errStream = errHandle ? B.hostStream(errHandle) : null;
      let stdinStream = null;
      if (inSink) {
        const sink = sinkStream(inSink);
        if (stdinOpt === "pipe") stdinStream = sink;
        else stdinOpt.pipeTo(sink).catch(() => {});
      }
      const objID = this.#objID;
      const kill = (signal) => {
        const n = signal === undefined ? 15 : typeof signal === "string" ? signalNumbers[signal] : Number(signal);
        if (!(Number.isInteger(n) && n > 0 && n <= 64)) throw new RangeError("Invalid signal number.");
        host("ctKill", objID, id, n);
      };
      if (o.signal) o.signal.addEventListener("abort", () => { try { kill(9); } catch { /* exited */ } }, { once: true });
      const readAll = async (s) => (s ? new Uint8Array(await new Response(s).arrayBuffer()).buffer : new ArrayBuffer(0));
      return Object.freeze({
        pid,
        isPty: !!pty,
        stdin: stdinStream,
        stdout: outStream,
        stderr: errStream,
        exitCode,
        async output() {
          const [out, err] = await Promise.all([readAll(outStream), readAll(errStream)]);
          return { stdout: out, stderr: err, exitCode: await exitCode };
        },
        kill,
        // resize(cols, rows) as workerd has it; resize({cols, rows}) too.
        // Fire and forget: the terminal changes size shortly after.
        resize(cols, rows) {
          if (cols !== null && typeof cols === "object") ({ cols, rows } = cols);
          if (!pty) throw new TypeError("resize() can only be called on a process that was started with a PTY.");
          cols = Math.trunc(Number(cols));
          rows = Math.trunc(Number(rows));
          if (!(cols >= 1 && cols <= 65535)) throw new RangeError("PTY cols must be between 1 and 65535.");
          if (!(rows >= 1 && rows <= 65535)) throw new RangeError("PTY rows must be between 1 and 65535.");
          host("ctResize", objID, id, cols, rows);
        },
      });
    }
    // Outbound interception: intercept.js and intercept.go.
    interceptOutboundHttp(addr, fetcher) { return B.interceptOutbound(this.#objID, "interceptOutboundHttp", "http", addr, fetcher); }
    interceptAllOutboundHttp(fetcher) { return B.interceptOutbound(this.#objID, "interceptAllOutboundHttp", "all", "", fetcher); }
    interceptOutboundHttps(addr, fetcher) { return B.interceptOutbound(this.#objID, "interceptOutboundHttps", "https", addr, fetcher); }
    snapshotContainer() { return Promise.reject(new Error("container snapshots are not supported by berth yet")); }

    // #exited takes the end of the current run from Go.
    #exited(ok, message, code) {
      this.#running = false;
      let err = null;
      if (this.#destroying && this.#destroyReason !== undefined) err = this.#destroyReason;
      else if (!ok) {
        err = new Error(message);
        if (code) err.exitCode = code;
      }
      this.#destroyReason = undefined; this.#destroying = false;
      const waiters = this.#waiters;
      this.#waiters = [];
      for (const w of waiters) err === null ? w.resolve() : w.reject(err);
    }
    #gone(err) {
      const waiters = this.#waiters;
      this.#waiters = [];
      for (const w of waiters) w.reject(err);
    }
    static {
      Container._exited = (c, ok, message, code) => c.#exited(ok, message, code);
      Container._gone = (c, err) => c.#gone(err);
    }
    get [Symbol.toStringTag]() { return "Container"; }
  }
  const containerExited = Container._exited, containerGone = Container._gone;
  delete Container._exited; delete Container._gone;

  function makeSocket(objID, port) {
    let resolveOpened, rejectOpened, resolveClosed;
    const opened = new Promise((res, rej) => { resolveOpened = res; rejectOpened = rej; });
    const closed = new Promise((res) => { resolveClosed = res; });
    opened.catch(() => {});
    let handle = 0, readable, writable;
    const ready = hostAsync("ctConnect", objID, port).then(([h, sink]) => {
      handle = h;
      resolveOpened({ remoteAddress: `container:${port}`, localAddress: undefined });
      return [h, sink];
    }, (e) => { rejectOpened(e); resolveClosed(); throw e; });
    ready.catch(() => {});
    let reader = null;
    readable = new ReadableStream({
      type: "bytes",
      async pull(c) {
        const [h] = await ready;
        if (!reader) reader = B.hostStream(h).getReader();
        const { done, value } = await reader.read();
        if (done) { c.close(); if (c.byobRequest) c.byobRequest.respond(0); return; }
        c.enqueue(value);
      },
      cancel() { if (handle) host("closeBody", handle); },
    });
    let sinkWriter = null;
    writable = new WritableStream({
      async write(chunk) {
        const [, sink] = await ready;
        if (!sinkWriter) sinkWriter = sinkStream(sink).getWriter();
        await sinkWriter.write(chunk);
      },
      async close() { const [, sink] = await ready; host("sinkClose", sink, null); },
    });
    return {
      readable, writable, opened, closed,
      async close() {
        try { await ready; } catch { return; }
        host("closeBody", handle);
        resolveClosed();
      },
      startTls() { throw new TypeError("startTls is not supported on a container port"); },
    };
  }

  g.__berth_ct_exit = (objID, ok, message, code) => {
    const rec = objects.get(objID);
    if (rec && rec.container) containerExited(rec.container, ok, message, code);
  };
  g.__berth_ct_execExit = (id, code, message) => {
    const w = execWaiters.get(id);
    if (!w) return;
    execWaiters.delete(id);
    if (message) w.reject(new Error(message)); else w.resolve(code);
  };

  // ---- storage ---------------------------------------------------------------------
  const keyString = (k) => { if (typeof k !== "string") throw new TypeError(`storage key must be a string, got ${typeof k}`); return k; };
  const readPairs = (buf) => {
    // Go packs pairs as u32 key length, key, u32 value length, value.
    const u = new Uint8Array(buf);
    const dv = new DataView(u.buffer);
    const out = [];
    for (let off = 0; off < u.length;) {
      const kl = dv.getUint32(off, true); off += 4;
      const k = textDecoder.decode(u.subarray(off, off + kl)); off += kl;
      const vl = dv.getUint32(off, true); off += 4;
      out.push([k, u.subarray(off, off + vl)]); off += vl;
    }
    return out;
  };
  const listArgs = (o = {}) => {
    if (o === null || typeof o !== "object") throw new TypeError("list: options must be an object");
    if (o.start !== undefined && o.startAfter !== undefined) throw new TypeError("list: start and startAfter cannot both be given");
    const limit = o.limit === undefined ? 0 : Number(o.limit);
    if (o.limit !== undefined && !(Number.isInteger(limit) && limit > 0)) throw new TypeError("list: limit must be a positive integer");
    const s = (x) => (x === undefined ? "" : keyString(x));
    return [s(o.start), s(o.startAfter), s(o.end), s(o.prefix), !!o.reverse, limit];
  };
  const alarmTime = (t) => {
    const ms = t instanceof Date ? t.getTime() : Number(t);
    if (!Number.isFinite(ms)) throw new TypeError("setAlarm: the time must be a Date or milliseconds since the epoch");
    return ms;
  };

  function makeStorage(objID) {
    const call = (op, ...args) => host(op, objID, ...args);
    // Each async method runs synchronously and returns a settled promise.
    const settled = (fn) => (...args) => { try { return Promise.resolve(fn(...args)); } catch (e) { return Promise.reject(e); } };
    const getOne = (key) => { const b = call("kvGet", keyString(key)); return b === null ? undefined : deserialize(b); };
    const putOne = (key, value) => call("kvPut", keyString(key), serialize(value, false));

    class SqlStorageCursor {
      #rows; #cols; #i = 0; #read; #written;
      constructor(res) { this.#cols = res.columns; this.#rows = res.rows; this.#read = res.rowsRead; this.#written = res.rowsWritten; }
      get columnNames() { return this.#cols.slice(); }
      get rowsRead() { return this.#read; }
      get rowsWritten() { return this.#written; }
      #object(r) { const o = {}; for (let j = 0; j < this.#cols.length; j++) o[this.#cols[j]] = r[j]; return o; }
      next() {
        if (this.#i >= this.#rows.length) return { done: true, value: undefined };
        return { done: false, value: this.#object(this.#rows[this.#i++]) };
      }
      toArray() { const out = []; while (this.#i < this.#rows.length) out.push(this.#object(this.#rows[this.#i++])); return out; }
      one() {
        const left = this.#rows.length - this.#i;
        if (left === 0) throw new Error("Expected exactly one result from SQL query, but got no results.");
        if (left > 1) throw new Error("Expected exactly one result from SQL query, but got multiple results.");
        return this.#object(this.#rows[this.#i++]);
      }
      raw() {
        const self = this, rows = this.#rows;
        return {
          next() { return self.#i < rows.length ? { done: false, value: rows[self.#i++].slice() } : { done: true, value: undefined }; },
          toArray() { const out = []; while (self.#i < rows.length) out.push(rows[self.#i++].slice()); return out; },
          [Symbol.iterator]() { return this; },
        };
      }
      [Symbol.iterator]() { return this; }
    }
    const decodeRows = (res) => {
      for (const r of res.rows) for (let j = 0; j < r.length; j++) {
        const v = r[j];
        if (v !== null && typeof v === "object") r[j] = "b" in v ? new Uint8Array(host("base64Decode", v.b)).buffer : Number(v.f);
      }
      return res;
    };
    const sqlValue = (v) => {
      if (v === undefined) return null; // workerd binds a missing value as NULL, as the package's schedule() relies on
      if (v === null || typeof v === "string" || typeof v === "number") return v;
      if (typeof v === "boolean") return v ? 1 : 0;
      if (typeof v === "bigint") return Number(v);
      if (v instanceof ArrayBuffer || ArrayBuffer.isView(v)) return toHostBuffer(v);
      throw new TypeError(`sql.exec: cannot bind a value of type ${v === undefined ? "undefined" : describe(v)}; use a string, number, null or ArrayBuffer`);
    };
    const sql = {
      exec(query, ...bindings) {
        if (typeof query !== "string") throw new TypeError("sql.exec: the query must be a string");
        return new SqlStorageCursor(decodeRows(JSON.parse(call("sqlExec", query, ...bindings.map(sqlValue)))));
      },
      get databaseSize() { return call("sqlSize"); },
      Cursor: SqlStorageCursor,
    };
    const kv = {
      get(key) { return getOne(key); },
      put(key, value) { putOne(key, value); },
      delete(key) { return call("kvDelete", keyString(key)); },
      *list(options) { for (const [k, v] of readPairs(call("kvList", ...listArgs(options)))) yield [k, deserialize(v)]; },
    };
    const storage = {
      get: settled((keys) => {
        if (!Array.isArray(keys)) return getOne(keys);
        if (keys.length > 128) throw new RangeError(`get: ${keys.length} keys given, the limit is 128 per call`);
        const out = new Map();
        for (const [k, v] of readPairs(call("kvGetMany", ...keys.map(keyString)))) out.set(k, deserialize(v));
        return out;
      }),
      put: settled((key, value) => {
        if (key !== null && typeof key === "object") {
          const args = [];
          for (const k of Object.keys(key)) args.push(k, serialize(key[k], false));
          if (args.length / 2 > 128) throw new RangeError(`put: ${args.length / 2} entries given, the limit is 128 per call`);
          call("kvPutMany", ...args);
          return;
        }
        putOne(key, value);
      }),
      delete: settled((keys) => {
        if (!Array.isArray(keys)) return call("kvDelete", keyString(keys));
        if (keys.length > 128) throw new RangeError(`delete: ${keys.length} keys given, the limit is 128 per call`);
        return call("kvDeleteMany", ...keys.map(keyString));
      }),
      deleteAll: settled(() => { call("kvDeleteAll"); }),
      list: settled((options) => {
        const out = new Map();
        for (const [k, v] of readPairs(call("kvList", ...listArgs(options)))) out.set(k, deserialize(v));
        return out;
      }),
      async transaction(fn) {
        const sp = call("txBegin");
        const txn = Object.create(storage);
        let rolledBack = false;
        txn.rollback = () => { if (!rolledBack) { rolledBack = true; call("txRollback", sp); } };
        try {
          const v = await fn(txn);
          if (!rolledBack) call("txCommit", sp);
          return v;
        } catch (e) {
          if (!rolledBack) { rolledBack = true; call("txRollback", sp); }
          throw e;
        }
      },
      transactionSync(fn) {
        const sp = call("txBegin");
        let v;
        try { v = fn(); } catch (e) { call("txRollback", sp); throw e; }
        if (v !== null && typeof v === "object" && typeof v.then === "function") {
          call("txRollback", sp);
          throw new TypeError("transactionSync: the callback must not be async");
        }
        call("txCommit", sp);
        return v;
      },
      sync: settled(() => { call("sync"); }),
      getAlarm: settled(() => call("alarmGet")),
      setAlarm: settled((t) => { call("alarmSet", alarmTime(t)); }),
      deleteAlarm: settled(() => { call("alarmDelete"); }),
      getCurrentBookmark: settled(() => { throw new TypeError("point-in-time recovery is not supported by berth"); }),
      sql,
      kv,
    };
    return storage;
  }

  // ---- Go entry points ----------------------------------------------------------------

  // __berth_do_new constructs the instance of class cls for object objID.
  g.__berth_do_new = (objID, cls, hex, name, tag, ctRunning) => {
    B.tag = tag;
    const C = B.module && B.module[cls];
    if (typeof C !== "function") throw new TypeError(`the script does not export the Durable Object class ${cls}`);
    const rec = { objID, cls, blocked: 0, queue: [], broken: null, instance: null };
    rec.id = new DurableObjectId(idKey, cls, hex, name === "" ? undefined : name);
    rec.storage = makeStorage(objID);
    if (ctRunning === true || ctRunning === false) rec.container = new Container(idKey, objID, ctRunning);
    rec.ctx = new DurableObjectState(idKey, rec);
    objects.set(objID, rec);
    try {
      rec.instance = new C(rec.ctx, B.env);
    } catch (e) {
      objects.delete(objID);
      throw e;
    }
  };

  g.__berth_do_close = (objID) => {
    const rec = objects.get(objID);
    if (!rec) return;
    objects.delete(objID);
    rec.broken ||= new Error("Durable Object was evicted");
    if (rec.container) containerGone(rec.container, rec.broken);
    const queued = rec.queue;
    rec.queue = [];
    rec.blocked = 0;
    for (const run of queued) run();
  };

  // respondCall reports the outcome of an RPC call or alarm to Go.
  function respondCall(callID, ok, value) {
    let bytes;
    try {
      bytes = serialize(value, true, null);
    } catch (e) {
      ok = false;
      bytes = serialize(new TypeError(`the result could not be serialized: ${e.message}`), true, null);
    }
    host("doResult", callID, ok, bytes);
  }
  function errorOf(e) {
    try { serialize(e, true, null); return e; } catch { return new Error(errText(e)); }
  }

  g.__berth_do_call = (objID, callID, method, args, tag) => {
    const rec = objects.get(objID);
    if (!rec) { respondCall(callID, false, new Error("Durable Object was reset")); return; }
    deliver(rec, () => {
      B.tag = tag;
      (async () => {
        if (rec.broken) throw rec.broken;
        const inst = rec.instance;
        const fn = method === "constructor" ? undefined : inst[method];
        if (typeof fn !== "function") throw new TypeError(`The RPC receiver does not implement the method "${method}".`);
        const v = await fn.apply(inst, deserialize(args));
        return [v, await readBodies(v)];
      })().then(([v, bodies]) => {
        let bytes;
        try { bytes = serialize(v, true, bodies); } catch (e) { respondCall(callID, false, new TypeError(`the result of ${method}() could not be serialized: ${e.message}`)); return; }
        host("doResult", callID, true, bytes);
      }, (e) => respondCall(callID, false, errorOf(e)));
    });
  };

  g.__berth_do_alarm = (objID, callID, isRetry, retryCount, scheduled, tag) => {
    const rec = objects.get(objID);
    if (!rec) { respondCall(callID, false, new Error("Durable Object was reset")); return; }
    deliver(rec, () => {
      B.tag = tag;
      (async () => {
        if (rec.broken) throw rec.broken;
        const inst = rec.instance;
        if (typeof inst.alarm !== "function") return;
        await inst.alarm({ isRetry, retryCount, scheduledTime: scheduled });
      })().then(() => respondCall(callID, true, null), (e) => {
        B.log("error")(`Uncaught (in alarm of ${rec.cls})`, e);
        respondCall(callID, false, errorOf(e));
      });
    });
  };

  // localFetch is stub.fetch to an object that is live in this runtime:
  // the request goes to its fetch handler through the input gate without
  // leaving the loop, and its writes commit (doLocalEnd is an output
  // operation) before the caller sees the response. null when the object
  // is not live here, or for a WebSocket upgrade (which goes through Go).
  // An exception reads as it does on the way through Go.
  B.localFetch = (target, req) => {
    const flat = B.requestFlat(req);
    if (B.hasFlat(flat, "upgrade")) return null;
    const got = host("doLocal", target);
    if (got == null) return null;
    const sp = got.indexOf(" "), sp2 = got.indexOf(" ", sp + 1);
    const rec = objects.get(Number(got.slice(0, sp))), hold = Number(got.slice(sp + 1, sp2));
    if (!rec) { host("doRelease", hold); return null; }
    // The object's own tag, as for RPC calls (objectTag in Go): stopping
    // the calling request must not cut off the object's handler.
    const url = req.url, caller = B.tag, tag = caller + ">" + got.slice(sp2 + 1);
    if (!rec.blocked && !rec.queue.length && !rec.broken && typeof rec.instance[proxyNow] === "function") {
      const fast = proxyNowFetch(rec, req, flat, url, hold, caller, tag);
      if (fast !== null) return fast;
    }
    const objReq = B.objectRequest(req, flat);
    return new Promise((resolve, reject) => {
      deliver(rec, () => {
        B.tag = tag;
        let p;
        try {
          if (rec.broken) throw rec.broken;
          if (typeof rec.instance.fetch !== "function") throw new TypeError(`the Durable Object class ${rec.cls} has no fetch method`);
          p = Promise.resolve(rec.instance.fetch(objReq));
        } catch (e) {
          p = Promise.reject(e);
        }
        const fail = (e) => {
          host("doLocalEnd", hold);
          B.log("error")("uncaught exception in fetch handler", e);
          B.tag = caller;
          reject(B.remoteError(errText(e)));
        };
        p.then((res) => {
          try { res = B.adoptResponse(res, url); } catch (e) { fail(e); return; }
          host("doLocalEnd", hold);
          B.tag = caller;
          resolve(res);
        }, fail);
      });
    });
  };

  // proxyNowFetch is localFetch to berth's Container class when the class
  // can proxy the request at once (its [PROXY_NOW]): no subclass code sees
  // the request or the response, so the caller's request goes to the
  // container and the container's response comes back without the copies
  // a handler's request and response need. null when it cannot. The
  // round trip is the object's (tag), but as no script of the object's
  // runs, Go is not told of the switches (runQuiet).
  const proxyNow = Symbol.for("berth.proxyNow");
  const startProxy = (rec, req, flat) => {
    try {
      return rec.instance[proxyNow](req, flat);
    } catch (e) {
      return Promise.reject(e);
    }
  };
  function proxyNowFetch(rec, req, flat, url, hold, caller, tag) {
    const p = B.runQuiet(tag, startProxy, rec, req, flat);
    if (p === null) return null;
    return p.then((res) => {
      host("doLocalEnd", hold);
      B.tag = caller;
      return B.rehomeResponse(res, url);
    }, (e) => {
      host("doLocalEnd", hold);
      B.tag = tag;
      B.log("error")("uncaught exception in fetch handler", e);
      B.tag = caller;
      throw B.remoteError(errText(e));
    });
  }

  g.__berth_do_fetch = (objID, id, tag, method, url, headers, bodyHandle, canonical) => {
    const rec = objects.get(objID);
    const run = () => B.handleFetch(id, tag, method, url, headers, bodyHandle, canonical, (req) => {
      if (!rec || rec.broken) throw (rec && rec.broken) || new Error("Durable Object was reset");
      if (typeof rec.instance.fetch !== "function") throw new TypeError(`the Durable Object class ${rec.cls} has no fetch method`);
      return rec.instance.fetch(req);
    });
    if (rec) deliver(rec, run); else run();
  };

  // initObjects adds a namespace to env for every durable_objects binding
  // and to ctx.exports for every class the host serves.
  B.initObjects = (env) => {
    const info = JSON.parse(host("doBindings"));
    const namespaces = {};
    for (const cls of info.classes) namespaces[cls] = new DurableObjectNamespace(idKey, cls);
    for (const [name, cls] of Object.entries(info.bindings)) env[name] = namespaces[cls];
    B.exports = Object.freeze({ ...(B.entrypointExports ? B.entrypointExports() : {}), ...namespaces });
  };

  B.serialize = serialize;
  B.deserialize = deserialize;
  B.DurableObjectId = DurableObjectId;
  B.DurableObjectNamespace = DurableObjectNamespace;
  g.__berth_do_objects = () => objects.size;
})(globalThis);
