import { Container, getContainer } from "cloudflare:workers";

interface Env {
  SANDBOX: DurableObjectNamespace<Sandbox>;
}

// Sandbox is one session's container. The code it runs gets no network:
// everything it can touch is inside its own container.
export class Sandbox extends Container<Env> {
  defaultPort = 8080;
  sleepAfter = "10m";
  enableInternet = false;

  override onStart(): void {
    console.log(`sandbox ${this.ctx.id.name ?? this.ctx.id.toString()} started`);
  }

  override onStop({ exitCode, reason }: { exitCode: number; reason: string }): void {
    console.log(`sandbox ${this.ctx.id.name ?? this.ctx.id.toString()} stopped: ${reason}, exit code ${exitCode}`);
  }
}

const SESSION = /^[A-Za-z0-9_-]{1,64}$/;
const USAGE = `usage:
  POST   /sessions/<id>/exec[?timeout_ms=N]   run the body (shell code) in session <id>'s sandbox
  GET    /sessions/<id>                       the sandbox's state
  DELETE /sessions/<id>                       destroy the sandbox
`;

// exec turns a request into the container's POST /exec body: a JSON body
// is passed on as it is, anything else is taken for the code itself.
async function execBody(request: Request, url: URL): Promise<string> {
  if ((request.headers.get("content-type") ?? "").startsWith("application/json")) {
    return await request.text();
  }
  const timeout = url.searchParams.get("timeout_ms");
  return JSON.stringify({ command: await request.text(), timeout_ms: timeout === null ? undefined : Number(timeout) });
}

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const url = new URL(request.url);
    const [, kind, id, action = ""] = url.pathname.split("/");
    if (kind !== "sessions" || !id) return new Response(USAGE, { status: url.pathname === "/" ? 200 : 404 });
    if (!SESSION.test(id)) return new Response(`session id ${JSON.stringify(id)}: want 1 to 64 of A-Z a-z 0-9 _ -\n`, { status: 400 });
    const sandbox = getContainer(env.SANDBOX, id);
    switch (`${request.method} ${action}`) {
      case "POST exec":
        return sandbox.fetch(
          new Request("http://sandbox/exec", {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: await execBody(request, url),
          }),
        );
      case "GET ":
        return Response.json(await sandbox.getState());
      case "DELETE ":
        await sandbox.destroy();
        return new Response(null, { status: 204 });
    }
    return new Response(USAGE, { status: 404 });
  },
};
