// The "cloudflare:workers" module as berth serves it. Bindings-related
// exports (env, DurableObject state) are filled in by later runtime pieces.
export class WorkerEntrypoint {
  constructor(ctx, env) { this.ctx = ctx; this.env = env; }
}
export class DurableObject {
  constructor(ctx, env) { this.ctx = ctx; this.env = env; }
}
export class WorkflowEntrypoint {
  constructor(ctx, env) { this.ctx = ctx; this.env = env; }
}
export class RpcTarget {}
export const env = {};
export function waitUntil(p) { Promise.resolve(p).catch((e) => console.error("Uncaught (in waitUntil)", e)); }
