// The egress app both entry modules run (egress_test.go), on whichever
// Container class they pass: outboundByHost with interceptHttps, and a
// runtime override. Handlers are set by assignment, which is how the
// package's static setters see them from compiled TypeScript.
export function define({ Container, getContainer }) {
  class Egress extends Container {
    defaultPort = 8080;
    enableInternet = false;
    interceptHttps = true;
    sleepAfter = "1m";
    async override(host) { await this.setOutboundByHost(host, "named", { n: 1 }); }
  }
  Egress.outboundByHost = {
    "example.com": (req, env, ctx) => new Response(`by host ${req.method} ${req.url} class=${ctx.className}`),
  };
  Egress.outboundHandlers = {
    named: (req, env, ctx) => new Response(`named ${req.url} params=${JSON.stringify(ctx.params)}`),
  };

  const handler = {
    async fetch(request, env) {
      const url = new URL(request.url);
      const stub = getContainer(env.EGRESS, "one");
      if (url.pathname === "/override") {
        await stub.override(url.searchParams.get("host"));
        return new Response("ok");
      }
      return stub.fetch(new Request("http://container/fetch?url=" + encodeURIComponent(url.searchParams.get("url"))));
    },
  };
  return { Egress, handler };
}
