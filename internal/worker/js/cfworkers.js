// The "cloudflare:workers" module as berth serves it. Bindings-related
// exports (env, DurableObject state) are filled in by later runtime pieces.
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
