// The app both entry modules run, on whichever Container class they pass.
// Hooks count what happened in storage, read back with events().
export function define({ Container, getContainer, getRandom, switchPort }) {
  const count = async (ctx, key, extra) => {
    const ev = (await ctx.storage.get("events")) ?? { starts: 0, stops: 0, errors: 0, exitCodes: [], errorTexts: [] };
    ev[key]++;
    if (extra) extra(ev);
    await ctx.storage.put("events", ev);
  };
  const events = async (ctx) => (await ctx.storage.get("events")) ?? { starts: 0, stops: 0, errors: 0, exitCodes: [], errorTexts: [] };

  class Echo extends Container {
    defaultPort = 8080;
    sleepAfter = "3s"; // short, but above a container start on a loaded machine
    envVars = { FROM_CLASS: "yes" };
    async onStart() { await count(this.ctx, "starts"); }
    async onStop(params) { await count(this.ctx, "stops", (ev) => ev.exitCodes.push(params.exitCode)); }
    async onError(err) { await count(this.ctx, "errors", (ev) => ev.errorTexts.push(String(err && err.message || err))); }
    async events() { return events(this.ctx); }
    async running() { return this.ctx.container.running; }
    // execCheck runs two ctx.container.exec() processes: testapp pid (its
    // pid as reported and as printed) and testapp tty on a PTY, resized.
    async execCheck() {
      await this.startAndWaitForPorts();
      const c = this.ctx.container, dec = new TextDecoder();
      const readUntil = async (r, seen, want) => {
        while (!seen.text.includes(want)) {
          const { done, value } = await r.read();
          if (done) throw new Error("output ended before " + want + ": " + seen.text);
          seen.text += dec.decode(value, { stream: true });
        }
      };
      const p = await c.exec(["/testapp", "pid"], { stdin: "pipe" });
      const printed = { text: "" };
      await readUntil(p.stdout.getReader(), printed, "\n");
      await p.stdin.getWriter().close();
      const tty = await c.exec(["/testapp", "tty"], { pty: { cols: 80, rows: 24 } });
      const r = tty.stdout.getReader(), seen = { text: "" };
      await readUntil(r, seen, "cols=80 rows=24");
      tty.resize(132, 43);
      await readUntil(r, seen, "cols=132 rows=43");
      const w = tty.stdin.getWriter();
      await w.write(new TextEncoder().encode("done\n"));
      await w.close();
      return { pid: p.pid, printed: printed.text.trim(), code: await p.exitCode, ttyPid: tty.pid, ttyCode: await tty.exitCode };
    }
  }

  // Broken's process exits at once (CMD "exit 5" for testapp).
  class Broken extends Container {
    defaultPort = 8080;
    entrypoint = ["exit", "5"];
    async onStart() { await count(this.ctx, "starts"); }
    async onError(err) { await count(this.ctx, "errors", (ev) => ev.errorTexts.push(String(err && err.message || err))); throw err; }
    async events() { return events(this.ctx); }
  }

  const handler = {
    async fetch(request, env) {
      const url = new URL(request.url);
      const [, kind, name, ...rest] = url.pathname.split("/");
      const path = "/" + rest.join("/") + url.search;
      const forward = (stub) => stub.fetch(new Request(new URL(path, url).href, request));
      switch (kind) {
        case "c": return forward(getContainer(env.ECHO, name));
        case "port": return getContainer(env.ECHO, name).fetch(switchPort(new Request(new URL(path, url).href, request), 8080));
        case "lb": return forward(await getRandom(env.ECHO, 3));
        case "broken": return forward(getContainer(env.BROKEN, name));
        case "events": return Response.json(await getContainer(kind === "events" && url.searchParams.get("class") === "Broken" ? env.BROKEN : env.ECHO, name).events());
        case "running": return Response.json(await getContainer(env.ECHO, name).running());
        case "exec": return Response.json(await getContainer(env.ECHO, name).execCheck());
      }
      return new Response("not found", { status: 404 });
    },
  };
  return { Echo, Broken, handler };
}
