import { Container, getContainer } from "cloudflare:workers";

interface Env {
  ECHO: DurableObjectNamespace<Echo>;
}

// Echo is one room's echo server. Container.fetch proxies a WebSocket
// upgrade to the container and keeps the object active while it is open.
export class Echo extends Container<Env> {
  defaultPort = 8080;
  sleepAfter = "1m";
  enableInternet = false;
}

// Routes:
//   GET /ws/<room>     WebSocket: every message comes back unchanged
//   GET /info/<room>   the room's container: its boot id and open connections
export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const url = new URL(request.url);
    const [, kind, room] = url.pathname.split("/");
    if (!room || (kind !== "ws" && kind !== "info")) {
      return new Response("usage: GET /ws/<room> (WebSocket) or GET /info/<room>\n", { status: 404 });
    }
    const echo = getContainer(env.ECHO, room);
    if (kind === "info") return echo.fetch(new Request("http://echo/"));
    if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
      return new Response("expected a WebSocket upgrade\n", { status: 426, headers: { upgrade: "websocket" } });
    }
    return echo.fetch(request);
  },
};
