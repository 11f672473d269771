// Outbound interception of containers (ctx.container.interceptOutboundHttp,
// interceptAllOutboundHttp, interceptOutboundHttps) and the loopback
// entrypoint stubs of ctx.exports that are their usual fetchers
// (ctx.exports.ContainerProxy({ props })). Evaluated after durable.js. Go's
// side is intercept.go.
//
// A fetcher is a Fetcher the runtime can call back later, outside any
// request: a loopback stub of a WorkerEntrypoint export (with its props) or
// a Durable Object stub. Go keeps only its address ("@ep\n" + name + "\n" +
// props as JSON, or the stub's target), so a request the container sends
// reaches the fetcher's fetch() whichever runtime serves it, as on
// Cloudflare.
(function (g) {
  "use strict";
  const B = g.__berth;
  const { hostAsync } = B;
  const targetKey = Symbol.for("berth.fetchTarget");
  const entrypointMark = Symbol.for("berth.WorkerEntrypoint");

  // fetcherTarget returns the address Go calls f by, or throws the
  // TypeError workerd throws for something that is not a Fetcher.
  function fetcherTarget(method, f) {
    const t = f !== null && (typeof f === "object" || typeof f === "function") ? f[targetKey] : undefined;
    if (typeof t !== "string") {
      throw new TypeError(`${method}: the second argument must be a Fetcher: a loopback entrypoint such as ctx.exports.ContainerProxy({ props }), or a Durable Object stub`);
    }
    return t;
  }

  // B.interceptOutbound is what the three methods of ctx.container call;
  // kind is "http" or "https".
  B.interceptOutbound = (objID, method, kind, addr, fetcher) => {
    let target;
    try {
      if (typeof addr !== "string") throw new TypeError(`${method}: the address must be a string`);
      target = fetcherTarget(method, fetcher);
    } catch (e) {
      return Promise.reject(e);
    }
    return hostAsync("ctIntercept", objID, kind, addr, target).then(() => undefined);
  };

  // ---- ctx.exports: loopback stubs of WorkerEntrypoint exports ---------------
  // ctx.exports.Name is a Fetcher for the export Name without props; called
  // as ctx.exports.Name({ props }) it gives one with props (this.ctx.props in
  // the entrypoint). Called directly (stub.fetch(), stub.method()) it runs
  // the entrypoint in this runtime.
  function loopback(name, props) {
    let json;
    try {
      json = JSON.stringify(props === undefined ? {} : props);
    } catch (e) {
      throw new TypeError(`ctx.exports.${name}: props could not be serialized: ${e && e.message}`);
    }
    const frozenProps = Object.freeze(JSON.parse(json));
    const instance = () => {
      const cls = B.module[name];
      const ctx = {
        waitUntil(p) { Promise.resolve(p).catch((e) => B.log("error")("Uncaught (in waitUntil)", e)); },
        passThroughOnException() {},
        props: frozenProps,
        exports: B.exports || {},
      };
      return new cls(ctx, B.env);
    };
    const stub = function (options) {
      if (options !== undefined && (options === null || typeof options !== "object")) throw new TypeError(`ctx.exports.${name}: options must be an object`);
      return loopback(name, options === undefined ? undefined : options.props);
    };
    const fetch = async (input, init) => {
      const req = new Request(input, init);
      const inst = instance();
      if (typeof inst.fetch !== "function") throw new TypeError(`the entrypoint ${name} has no fetch method`);
      return inst.fetch(req);
    };
    return new Proxy(stub, {
      get(t, p) {
        if (p === targetKey) return "@ep\n" + name + "\n" + json;
        if (p === "fetch") return fetch;
        if (p === Symbol.toStringTag) return "Fetcher";
        if (typeof p !== "string" || p === "then") return undefined;
        if (p in Function.prototype) return Reflect.get(t, p);
        return async (...args) => {
          const inst = instance();
          if (typeof inst[p] !== "function") throw new TypeError(`the entrypoint ${name} has no method ${p}`);
          return inst[p](...args);
        };
      },
    });
  }

  // B.entrypointExports gives ctx.exports its entrypoints (durable.js calls
  // it once the module is known).
  B.entrypointExports = () => {
    const out = {};
    const mod = B.module || {};
    for (const k of Object.keys(mod)) {
      if (k !== "default" && typeof mod[k] === "function" && mod[k][entrypointMark] === true) out[k] = loopback(k, undefined);
    }
    return out;
  };
})(globalThis);
