// ctx.container's outbound interception used directly (egress_test.go):
// before start(), HTTP to example.com and HTTPS to secure.example go to the
// loopback entrypoint Proxy with props, and HTTP to stub.example to a
// Durable Object stub.
import { DurableObject, WorkerEntrypoint } from "cloudflare:workers";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export class Proxy extends WorkerEntrypoint {
  async fetch(req) {
    return new Response(`proxy ${req.method} ${req.url} props=${JSON.stringify(this.ctx.props)} body=${await req.text()}`);
  }
}

export class Raw extends DurableObject {
  async fetch(req) {
    const url = new URL(req.url);
    if (url.hostname === "stub.example") return new Response(`stub ${this.ctx.id.name} ${req.url}`);
    const c = this.ctx.container;
    if (!c.running) {
      await c.interceptOutboundHttp("example.com", this.ctx.exports.Proxy({ props: { x: 1 } }));
      await c.interceptOutboundHttps("secure.example", this.ctx.exports.Proxy({ props: { tls: true } }));
      await c.interceptOutboundHttp("stub.example", this.env.RAW.getByName("stub"));
      c.start(); // internet off
    }
    const port = c.getTcpPort(8080);
    const target = "http://container/fetch?" + url.searchParams;
    for (let i = 0; ; i++) {
      try {
        return await port.fetch(target);
      } catch (e) {
        if (i > 500) throw e;
        await sleep(20);
      }
    }
  }
}

export default {
  fetch(req, env) { return env.RAW.getByName("one").fetch(req); },
};
