// berth's Worker runtime: the Web platform APIs a Worker sees, written in JS
// over a handful of Go host operations (see host.go for the contract:
// __berth_host(op, ...args) for synchronous calls and asynchronous starts,
// __berth_settle(id, ok, ...values) when Go finishes an asynchronous one).
// Evaluated once per runtime, before deps.js (which needs TextEncoder).
(function (g) {
  "use strict";
  const rawHost = g.__berth_host;
  delete g.__berth_host;
  // Go reports Web errors as "DOMExceptionName: message"; rethrow those as
  // the DOMException scripts test for.
  const domNames = /^(InvalidCharacterError|QuotaExceededError|NotSupportedError|DataError|OperationError|SyntaxError|AbortError|TimeoutError): ([^]*)$/;
  // host passes on exactly the arguments it got (Go tells absent ones from
  // undefined, and some operations take any number). Rest parameters and
  // spread would cost as much as the call into Go itself; up to nine
  // arguments are passed on one by one.
  const host = function (op, a, b, c, d, e, f, h, i) {
    try {
      return callWith(rawHost, arguments.length, op, a, b, c, d, e, f, h, i, arguments);
    } catch (e) {
      const m = e instanceof TypeError && domNames.exec(e.message);
      if (m && typeof DOMException === "function") throw new DOMException(m[2], m[1]);
      throw e;
    }
  };

  // callWith calls fn with the first n of the arguments after n; all is
  // the arguments object when there are more than nine.
  function callWith(fn, n, op, a, b, c, d, e, f, h, i, all) {
    switch (n) {
      case 1: return fn(op);
      case 2: return fn(op, a);
      case 3: return fn(op, a, b);
      case 4: return fn(op, a, b, c);
      case 5: return fn(op, a, b, c, d);
      case 6: return fn(op, a, b, c, d, e);
      case 7: return fn(op, a, b, c, d, e, f);
      case 8: return fn(op, a, b, c, d, e, f, h);
      case 9: return fn(op, a, b, c, d, e, f, h, i);
      default: return fn(...all);
    }
  }

  const define = (name, value) => Object.defineProperty(g, name, { value, writable: true, configurable: true, enumerable: false });

  // ---- asynchronous host operations -----------------------------------------
  // Each operation remembers the request whose code started it; when Go
  // settles it, that request becomes the current one for the task and for
  // the promise reactions the settlement runs (see "request context" below).
  let nextOp = 1;
  const ops = new Map();
  function hostAsync(op, a, b, c, d, e, f, h, i) {
    return callWith(hostAsyncId, arguments.length, op, a, b, c, d, e, f, h, i, arguments).promise;
  }
  // hostAsyncId(op, ...args) starts op as host(op, id, ...args).
  function hostAsyncId(op, a, b, c, d, e, f, h, i) {
    const id = nextOp++;
    // A stopped request's code gets no more I/O: it stays suspended.
    if (stopped.has(currentTag)) return { id, promise: new Promise(() => {}) };
    const n = arguments.length, all = n > 8 ? [op, id, ...Array.prototype.slice.call(arguments, 1)] : null;
    const promise = new Promise((resolve, reject) => {
      ops.set(id, { resolve, reject, tag: currentTag, quiet });
      try { callWith(host, n + 1, op, id, a, b, c, d, e, f, h, all); } catch (err) { ops.delete(id); reject(err); }
    });
    return { id, promise };
  }
  g.__berth_settle = (id, ok, ...values) => {
    const p = ops.get(id);
    if (!p) return; // aborted meanwhile
    ops.delete(id);
    if (p.quiet) currentTag = p.tag; else setTag(p.tag);
    if (ok) p.resolve(values); else p.reject(new TypeError(values[0]));
  };
  const cancelOp = (id) => ops.delete(id);

  // ---- DOMException ------------------------------------------------------------
  const domCodes = { IndexSizeError: 1, NotFoundError: 8, NotSupportedError: 9, InvalidStateError: 11, SyntaxError: 12,
    InvalidAccessError: 15, TypeMismatchError: 17, SecurityError: 18, NetworkError: 19, AbortError: 20, QuotaExceededError: 22,
    TimeoutError: 23, DataCloneError: 25, InvalidCharacterError: 5 };
  class DOMException extends Error {
    constructor(message = "", name = "Error") {
      super(String(message));
      Object.defineProperty(this, "name", { value: String(name), configurable: true, writable: true });
    }
    get code() { return domCodes[this.name] || 0; }
  }
  define("DOMException", DOMException);

  // ---- console -------------------------------------------------------------------
  // ---- request context ----------------------------------------------------------
  // QuickJS has no AsyncLocalStorage. Every entry from Go into JavaScript (a
  // request's dispatch, a settled host operation, a timer, a WebSocket event)
  // sets currentTag to the request it belongs to, and the tag stays set while
  // the microtasks that entry queued run, since Go drains them before the
  // next task. Host operations and timers capture the tag when they start.
  // So an await chain that a request started, through fetch, timers and
  // body reads, logs under that request, even with many requests
  // interleaved. The limit: a reaction to a promise that another request's
  // task settles (a shared, cached promise) runs under that other request.
  // Go charges CPU time to the current request, so setTag tells it of every
  // change ("tag"); Go sets the tag it dispatches a request under itself.
  let currentTag = "", reportedTag = "";
  function setTag(t) {
    currentTag = t;
    if (t !== reportedTag) { reportedTag = t; rawHost("tag", t); }
  }
  // runQuiet runs f(a, b, c) as request t without telling Go, for a stretch of
  // berth's own code in which no script runs: the CPU it takes is not worth
  // two calls into Go. The operations f starts remember t and settle under
  // it quietly as well, so the reactions to them must setTag before any
  // script runs.
  let quiet = false;
  function runQuiet(t, f, a, b, c) {
    const tag = currentTag, was = quiet;
    currentTag = t;
    quiet = true;
    try {
      return f(a, b, c);
    } finally {
      currentTag = tag;
      quiet = was;
    }
  }
  // __berth_cancel(tag, reason) drops the work of a request Go stopped at a
  // limit: its timers are cleared and its pending operations fail now (Go
  // aborts its fetches and ignores their late results), so that nothing
  // waits on them for ever; the I/O and timers its code starts from now on
  // never happen.
  const stopped = new Set();
  g.__berth_cancel = (tag, reason) => {
    stopped.add(tag);
    if (stopped.size > 256) stopped.delete(stopped.values().next().value);
    setTag(tag); // the rejection handlers run as the stopped request
    const err = new Error(reason);
    for (const [id, p] of ops) if (p.tag === tag) { ops.delete(id); rawHost("abortFetch", id); p.reject(err); }
    for (const [id, t] of timers) if (t.tag === tag) clearTimer(id);
  };
  function inspect(v, depth, seen) {
    if (typeof v === "string") return depth === 0 ? v : JSON.stringify(v);
    if (typeof v === "function") return "[Function: " + (v.name || "anonymous") + "]";
    if (typeof v === "bigint") return v + "n";
    if (typeof v === "symbol") return v.toString();
    if (v === null || typeof v !== "object") return String(v);
    if (v instanceof Error) return v.stack ? v.name + ": " + v.message + "\n" + v.stack.replace(/\n$/, "") : String(v);
    if (seen.has(v)) return "[Circular]";
    if (depth > 3) return Array.isArray(v) ? "[Array]" : "[Object]";
    seen.add(v);
    try {
      if (Array.isArray(v)) return "[ " + v.map((x) => inspect(x, depth + 1, seen)).join(", ") + " ]";
      if (v instanceof Map) return "Map(" + v.size + ") { " + [...v].map(([k, x]) => inspect(k, depth + 1, seen) + " => " + inspect(x, depth + 1, seen)).join(", ") + " }";
      if (v instanceof Set) return "Set(" + v.size + ") { " + [...v].map((x) => inspect(x, depth + 1, seen)).join(", ") + " }";
      if (ArrayBuffer.isView(v)) return v.constructor.name + "(" + v.length + ") [ " + Array.prototype.slice.call(v, 0, 50).join(", ") + " ]";
      if (v instanceof Date) return v.toISOString();
      if (v instanceof URL) return "URL " + v.href;
      const ctor = v.constructor && v.constructor !== Object ? v.constructor.name + " " : "";
      const keys = Object.keys(v);
      if (keys.length === 0) return ctor + "{}";
      return ctor + "{ " + keys.map((k) => (/^[A-Za-z_$][\w$]*$/.test(k) ? k : JSON.stringify(k)) + ": " + inspect(v[k], depth + 1, seen)).join(", ") + " }";
    } finally { seen.delete(v); }
  }
  function format(args) {
    let first = args[0], rest = args.slice(1), out = "";
    if (typeof first === "string" && /%[sdifoOjc%]/.test(first)) {
      out = first.replace(/%([sdifoOjc%])/g, (m, c) => {
        if (c === "%") return "%";
        if (rest.length === 0) return m;
        const a = rest.shift();
        switch (c) {
          case "s": return typeof a === "string" ? a : inspect(a, 1, new Set());
          case "d": case "i": return String(c === "i" ? parseInt(a) : Number(a));
          case "f": return String(parseFloat(a));
          case "c": return "";
          default: return inspect(a, 1, new Set());
        }
      });
    } else if (args.length) { out = inspect(first, 0, new Set()); }
    for (const a of rest) out += " " + inspect(a, 0, new Set());
    return out;
  }
  const log = (level) => (...args) => host("log", level, currentTag, format(args));
  const counts = new Map(), timeMarks = new Map();
  const consoleObj = {
    log: log("info"), info: log("info"), debug: log("debug"), trace: log("debug"), warn: log("warn"), error: log("error"),
    assert(cond, ...args) { if (!cond) log("error")("Assertion failed" + (args.length ? ": " + format(args) : "")); },
    count(label = "default") { const n = (counts.get(label) || 0) + 1; counts.set(label, n); log("info")(label + ": " + n); },
    countReset(label = "default") { counts.delete(label); },
    time(label = "default") { timeMarks.set(label, performance.now()); },
    timeEnd(label = "default") { const t = timeMarks.get(label); timeMarks.delete(label); if (t !== undefined) log("info")(label + ": " + (performance.now() - t).toFixed(3) + "ms"); },
    timeLog(label = "default", ...a) { const t = timeMarks.get(label); if (t !== undefined) log("info")(label + ": " + (performance.now() - t).toFixed(3) + "ms", ...a); },
    table: log("info"), dir: log("info"), group() {}, groupEnd() {},
  };
  define("console", consoleObj);

  // ---- timers and microtasks ---------------------------------------------------
  let nextTimer = 1;
  const timers = new Map();
  const toDelay = (ms) => { ms = Number(ms); return ms > 0 && ms < 2147483648 ? Math.floor(ms) : 0; };
  function setTimeout(fn, ms, ...args) {
    if (typeof fn !== "function") throw new TypeError("setTimeout: callback is not a function");
    const id = nextTimer++;
    if (stopped.has(currentTag)) return id;
    timers.set(id, { fn, args, repeat: 0, tag: currentTag });
    host("timer", id, toDelay(ms));
    return id;
  }
  function setInterval(fn, ms, ...args) {
    if (typeof fn !== "function") throw new TypeError("setInterval: callback is not a function");
    const id = nextTimer++;
    const delay = Math.max(1, toDelay(ms));
    if (stopped.has(currentTag)) return id;
    timers.set(id, { fn, args, repeat: delay, tag: currentTag });
    host("timer", id, delay);
    return id;
  }
  function clearTimer(id) { id = Number(id); if (timers.delete(id)) host("clearTimer", id); }
  g.__berth_timer = (id) => {
    const t = timers.get(id);
    if (!t) return;
    setTag(t.tag);
    if (t.repeat) host("timer", id, t.repeat); else timers.delete(id);
    t.fn(...t.args);
  };
  define("setTimeout", setTimeout);
  define("setInterval", setInterval);
  define("clearTimeout", clearTimer);
  define("clearInterval", clearTimer);
  define("queueMicrotask", (fn) => {
    if (typeof fn !== "function") throw new TypeError("queueMicrotask: callback is not a function");
    Promise.resolve().then(() => fn()).catch((e) => log("error")("Uncaught (in microtask)", e));
  });

  // ---- performance, navigator ---------------------------------------------------
  const dateNow = g.__berth_dateNow;
  delete g.__berth_dateNow;
  Object.defineProperty(Date, "now", { value: function now() { return dateNow(); }, writable: true, configurable: true, enumerable: false });
  define("performance", { now: () => host("now"), timeOrigin: Date.now() });
  define("navigator", { userAgent: "Cloudflare-Workers", hardwareConcurrency: 1, language: "en" });

  // ---- bytes --------------------------------------------------------------------------
  // Bytes cross to Go as an ArrayBuffer (copied by the engine bridge).
  const toU8 = (x) => {
    if (x instanceof Uint8Array) return x;
    if (x instanceof ArrayBuffer) return new Uint8Array(x);
    if (ArrayBuffer.isView(x)) return new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
    if (typeof SharedArrayBuffer !== "undefined" && x instanceof SharedArrayBuffer) return new Uint8Array(x);
    throw new TypeError("expected an ArrayBuffer or ArrayBufferView");
  };
  const toHostBuffer = (x) => {
    const u = toU8(x);
    return u.byteOffset === 0 && u.byteLength === u.buffer.byteLength ? u.buffer : u.slice().buffer;
  };
  const isBufferSource = (x) => x instanceof ArrayBuffer || ArrayBuffer.isView(x);
  // Short strings are encoded in JS: a host call costs more than the loop,
  // and whatwg-url encodes one code point at a time.
  const utf8 = (s) => {
    s = String(s);
    const n = s.length;
    if (n > 256) return new Uint8Array(host("utf8Encode", s));
    const out = new Uint8Array(n * 3);
    let j = 0;
    for (let i = 0; i < n; i++) {
      let c = s.charCodeAt(i);
      if (c < 0x80) { out[j++] = c; continue; }
      if (c < 0x800) { out[j++] = 0xc0 | (c >> 6); out[j++] = 0x80 | (c & 0x3f); continue; }
      if (c >= 0xd800 && c <= 0xdfff) {
        const d = i + 1 < n ? s.charCodeAt(i + 1) : 0;
        if (c <= 0xdbff && d >= 0xdc00 && d <= 0xdfff) {
          c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00); i++;
          out[j++] = 0xf0 | (c >> 18); out[j++] = 0x80 | ((c >> 12) & 0x3f); out[j++] = 0x80 | ((c >> 6) & 0x3f); out[j++] = 0x80 | (c & 0x3f);
          continue;
        }
        c = 0xfffd; // a lone surrogate
      }
      out[j++] = 0xe0 | (c >> 12); out[j++] = 0x80 | ((c >> 6) & 0x3f); out[j++] = 0x80 | (c & 0x3f);
    }
    return j === out.length ? out : out.slice(0, j);
  };
  // decodeASCII returns the string for all-ASCII bytes, or null.
  const decodeASCII = (u) => {
    const n = u.length;
    if (n > 256) return null;
    let s = "";
    for (let i = 0; i < n; i++) { const c = u[i]; if (c >= 0x80) return null; s += String.fromCharCode(c); }
    return s;
  };
  const concatBytes = (chunks, total) => {
    if (chunks.length === 1) return chunks[0];
    const out = new Uint8Array(total);
    let off = 0;
    for (const c of chunks) { out.set(c, off); off += c.byteLength; }
    return out;
  };

  // ---- encoding ------------------------------------------------------------------------
  class TextEncoder {
    get encoding() { return "utf-8"; }
    encode(input = "") { return utf8(input); }
    encodeInto(src, dest) {
      const b = utf8(src);
      // Only whole code points fit: back off to a UTF-8 boundary.
      let n = Math.min(b.length, dest.length);
      while (n > 0 && n < b.length && (b[n] & 0xc0) === 0x80) n--;
      dest.set(b.subarray(0, n));
      const read = n === b.length ? String(src).length : host("utf8Decode", b.slice(0, n).buffer, false, true).length;
      return { read, written: n };
    }
  }
  const utf8Labels = ["unicode-1-1-utf-8", "unicode11utf8", "unicode20utf8", "utf-8", "utf8", "x-unicode20utf8"];
  class TextDecoder {
    #fatal; #ignoreBOM; #pending = null; #bomSeen = false;
    constructor(label = "utf-8", options = {}) {
      label = String(label).trim().toLowerCase();
      if (!utf8Labels.includes(label)) throw new RangeError(`TextDecoder: encoding "${label}" is not supported`);
      this.#fatal = !!(options && options.fatal);
      this.#ignoreBOM = !!(options && options.ignoreBOM);
    }
    get encoding() { return "utf-8"; }
    get fatal() { return this.#fatal; }
    get ignoreBOM() { return this.#ignoreBOM; }
    decode(input, options) {
      const stream = !!(options && options.stream);
      let bytes = input === undefined || input === null ? new Uint8Array(0) : toU8(input);
      if (this.#pending) { const p = this.#pending; this.#pending = null; bytes = concatBytes([p, bytes], p.length + bytes.length); }
      if (stream) {
        // Hold back an incomplete trailing sequence for the next call.
        let i = bytes.length, k = 0;
        while (i > 0 && k < 3 && (bytes[i - 1] & 0xc0) === 0x80) { i--; k++; }
        if (i > 0) {
          const lead = bytes[i - 1], need = lead >= 0xf0 && lead <= 0xf4 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc2 ? 2 : 1;
          if (need > 1 && bytes.length - (i - 1) < need) { this.#pending = bytes.slice(i - 1); bytes = bytes.subarray(0, i - 1); }
        }
      }
      const skipBOM = !this.#ignoreBOM && !this.#bomSeen;
      let s = bytes.length ? decodeASCII(bytes) ?? host("utf8Decode", bytes.slice().buffer, this.#fatal, false) : "";
      if (skipBOM && (s.length || !stream)) {
        if (s.charCodeAt(0) === 0xfeff) s = s.slice(1);
        if (s.length || bytes.length) this.#bomSeen = true;
      }
      if (!stream) { this.#bomSeen = false; }
      return s;
    }
  }
  define("TextEncoder", TextEncoder);
  define("TextDecoder", TextDecoder);
  define("atob", function atob(s) {
    if (arguments.length === 0) throw new TypeError("atob: 1 argument required");
    return host("atob", String(s));
  });
  define("btoa", function btoa(s) {
    if (arguments.length === 0) throw new TypeError("btoa: 1 argument required");
    return host("btoa", String(s));
  });

  // ---- events ----------------------------------------------------------------------------
  class Event {
    #type; #stop = false; #stopImmediate = false; #canceled = false; #cancelable; #bubbles; #target = null; #current = null; #timeStamp;
    constructor(type, init = {}) {
      if (arguments.length === 0) throw new TypeError("Event: 1 argument required");
      this.#type = String(type); this.#cancelable = !!init.cancelable; this.#bubbles = !!init.bubbles; this.#timeStamp = performance.now();
    }
    get type() { return this.#type; }
    get target() { return this.#target; }
    get currentTarget() { return this.#current; }
    get srcElement() { return this.#target; }
    get cancelable() { return this.#cancelable; }
    get bubbles() { return this.#bubbles; }
    get composed() { return false; }
    get defaultPrevented() { return this.#canceled; }
    get returnValue() { return !this.#canceled; }
    get eventPhase() { return this.#current ? 2 : 0; }
    get timeStamp() { return this.#timeStamp; }
    get isTrusted() { return false; }
    get cancelBubble() { return this.#stop; }
    set cancelBubble(v) { if (v) this.#stop = true; }
    composedPath() { return this.#current ? [this.#current] : []; }
    preventDefault() { if (this.#cancelable) this.#canceled = true; }
    stopPropagation() { this.#stop = true; }
    stopImmediatePropagation() { this.#stop = true; this.#stopImmediate = true; }
    static _dispatch(ev, target, listeners) {
      ev.#target = target; ev.#current = target;
      for (const l of listeners) {
        if (ev.#stopImmediate) break;
        if (l.removed) continue;
        if (l.once) l.remove();
        try {
          if (typeof l.fn === "function") l.fn.call(target, ev); else l.fn.handleEvent(ev);
        } catch (e) { log("error")("Uncaught in event listener:", e); }
      }
      ev.#current = null;
      return !ev.#canceled;
    }
  }
  Event.NONE = 0; Event.CAPTURING_PHASE = 1; Event.AT_TARGET = 2; Event.BUBBLING_PHASE = 3;
  const dispatchEvent = Event._dispatch; delete Event._dispatch;
  class EventTarget {
    #listeners = new Map();
    addEventListener(type, fn, options) {
      if (fn == null) return;
      if (typeof fn !== "function" && typeof fn.handleEvent !== "function") throw new TypeError("addEventListener: listener must be a function or have handleEvent");
      const capture = typeof options === "boolean" ? options : !!(options && options.capture);
      const once = !!(options && typeof options === "object" && options.once);
      const signal = options && typeof options === "object" ? options.signal : undefined;
      if (signal && signal.aborted) return;
      type = String(type);
      let list = this.#listeners.get(type);
      if (!list) this.#listeners.set(type, (list = []));
      if (list.some((l) => l.fn === fn && l.capture === capture)) return;
      const entry = { fn, capture, once, removed: false, remove: () => { entry.removed = true; const i = list.indexOf(entry); if (i >= 0) list.splice(i, 1); } };
      list.push(entry);
      if (signal) signal.addEventListener("abort", () => entry.remove(), { once: true });
    }
    removeEventListener(type, fn, options) {
      const capture = typeof options === "boolean" ? options : !!(options && options.capture);
      const list = this.#listeners.get(String(type));
      if (!list) return;
      const e = list.find((l) => l.fn === fn && l.capture === capture);
      if (e) e.remove();
    }
    dispatchEvent(ev) {
      if (!(ev instanceof Event)) throw new TypeError("dispatchEvent: argument is not an Event");
      const handler = this["on" + ev.type];
      const list = (this.#listeners.get(ev.type) || []).slice();
      if (typeof handler === "function") list.push({ fn: handler, removed: false, once: false });
      return dispatchEvent(ev, this, list);
    }
  }
  define("Event", Event);
  define("EventTarget", EventTarget);

  // ---- abort ------------------------------------------------------------------------------
  const signalAbort = Symbol("abort");
  class AbortSignal extends EventTarget {
    #aborted = false; #reason = undefined;
    constructor(key) { super(); if (key !== signalAbort) throw new TypeError("Illegal constructor"); this.onabort = null; }
    get aborted() { return this.#aborted; }
    get reason() { return this.#reason; }
    throwIfAborted() { if (this.#aborted) throw this.#reason; }
    [signalAbort](reason) {
      if (this.#aborted) return;
      this.#aborted = true;
      this.#reason = reason === undefined ? new DOMException("This operation was aborted", "AbortError") : reason;
      this.dispatchEvent(new Event("abort"));
    }
    static abort(reason) { const s = new AbortSignal(signalAbort); s[signalAbort](reason); return s; }
    static timeout(ms) {
      const s = new AbortSignal(signalAbort);
      setTimeout(() => s[signalAbort](new DOMException("The operation timed out.", "TimeoutError")), toDelay(ms));
      return s;
    }
    static any(signals) {
      const s = new AbortSignal(signalAbort);
      for (const x of signals) if (x.aborted) { s[signalAbort](x.reason); return s; }
      for (const x of signals) x.addEventListener("abort", () => s[signalAbort](x.reason), { once: true });
      return s;
    }
  }
  class AbortController {
    #signal = new AbortSignal(signalAbort);
    get signal() { return this.#signal; }
    abort(reason) { this.#signal[signalAbort](reason); }
  }
  define("AbortSignal", AbortSignal);
  define("AbortController", AbortController);

  g.__berth = { host, hostAsync, hostAsyncId, cancelOp, toU8, toHostBuffer, isBufferSource, utf8, decodeASCII, concatBytes, inspect, format, log, signalAbort,
    get tag() { return currentTag; }, set tag(t) { setTag(t); }, runQuiet,
    // entered is the tag Go dispatched under: Go already charges it.
    entered(t) { currentTag = reportedTag = t; } };
})(globalThis);
