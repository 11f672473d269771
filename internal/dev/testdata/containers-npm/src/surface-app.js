// The app of containers_npm_surface_test.go, on whichever Container class
// the entry module passes: the methods of the class (start,
// startAndWaitForPorts, stop, destroy, schedule, getSchedule,
// listSchedules, deleteSchedules, getState) called by name over RPC, both
// forms of containerFetch from the object's own fetch, and hooks that
// record what happened in the object's storage.
//
// The container is testapp (see the Dockerfile): with PORTS="8080,8081" it
// serves both ports, its /log route prints the text it is given (so the
// readiness probe of pingEndpoint shows in the container's output), and
// on SIGTERM or SIGINT it prints "testapp got SIG…" and exits with
// $TERM_EXIT_CODE.
export function define({ Container, getContainer }) {
  const blank = () => ({
    starts: 0, stops: 0, errors: 0, expired: 0,
    exitCodes: [], reasons: [], errorTexts: [], expiredAt: [], ticks: [],
  });
  const record = async (ctx, change) => {
    const ev = (await ctx.storage.get("events")) ?? blank();
    change(ev);
    await ctx.storage.put("events", ev);
  };
  const errorText = (e) => String((e && e.message) || e);
  // JSON arguments of op(): {"$date": ms} is a Date.
  const revive = (v) => (v !== null && typeof v === "object" && "$date" in v ? new Date(v.$date) : v);

  class Surface extends Container {
    defaultPort = 8080;
    requiredPorts = [8080, 8081];
    envVars = { PORTS: "8080,8081", TERM_EXIT_CODE: "7" };
    pingEndpoint = "container/log?text=surface-ping";

    async onStart() { await record(this.ctx, (ev) => ev.starts++); }
    async onStop(params) {
      await record(this.ctx, (ev) => { ev.stops++; ev.exitCodes.push(params.exitCode); ev.reasons.push(params.reason); });
    }
    async onError(err) {
      await record(this.ctx, (ev) => { ev.errors++; ev.errorTexts.push(errorText(err)); });
      throw err;
    }
    // It records the expiry, then stops the container unless the object
    // was told to keep it ("keep" in storage).
    async onActivityExpired() {
      await record(this.ctx, (ev) => { ev.expired++; ev.expiredAt.push(Date.now()); });
      if (!(await this.ctx.storage.get("keep"))) await this.stop();
    }
    // tick is the callback of schedule().
    async tick(payload, schedule) {
      await record(this.ctx, (ev) => ev.ticks.push({ payload, at: Date.now(), taskId: schedule?.taskId, type: schedule?.type }));
    }

    async events() { return (await this.ctx.storage.get("events")) ?? blank(); }
    async running() { return this.ctx.container.running; }
    async keep(on) { await this.ctx.storage.put("keep", on); return on; }

    // op calls the method name with args and tells how it went.
    async op(name, args) {
      const t0 = Date.now();
      try {
        const value = await this[name](...args.map(revive));
        return { ok: true, value: value ?? null, ms: Date.now() - t0, t0, running: this.ctx.container.running };
      } catch (e) {
        return { ok: false, error: errorText(e), ms: Date.now() - t0, t0, running: this.ctx.container.running };
      }
    }

    // fetch forwards with containerFetch in the form x-form names, to the
    // port x-port names; without x-form it is the class's own fetch.
    async fetch(request) {
      const form = request.headers.get("x-form");
      const port = Number(request.headers.get("x-port"));
      const url = new URL(request.url);
      const target = "http://container" + url.pathname + url.search;
      switch (form) {
        case "request":
          return this.containerFetch(new Request(target, request), port);
        case "url-init": {
          const init = { method: request.method, headers: { "x-form": form, "content-type": "text/plain" } };
          if (request.method !== "GET" && request.method !== "HEAD") init.body = await request.text();
          return this.containerFetch(new URL(target), init, port);
        }
        case "url-port":
          return this.containerFetch(target, port);
      }
      return super.fetch(request);
    }
  }

  // Sleepy's containers sleep after 4 s without requests, counted from
  // when the container is up: the package counts the start as idle time,
  // and a start on a loaded machine can take longer than that.
  class Sleepy extends Surface {
    sleepAfter = "60s";
    async onStart() {
      await super.onStart();
      this.sleepAfter = "4s";
      this.renewActivityTimeout();
      // The package's alarm sleeps until the deadline it last saw; this
      // wakes it.
      await this.scheduleNextAlarm();
    }
  }

  const handler = {
    async fetch(request, env) {
      const url = new URL(request.url);
      const [, kind, cls, name, ...rest] = url.pathname.split("/");
      const stub = getContainer(cls === "sleepy" ? env.SLEEPY : env.SURFACE, name);
      switch (kind) {
        case "op": {
          const { method, args = [] } = await request.json();
          return Response.json(await stub.op(method, args));
        }
        case "events": return Response.json(await stub.events());
        case "running": return Response.json(await stub.running());
        case "id": return Response.json(stub.id.toString());
        case "keep": return Response.json(await stub.keep(url.searchParams.get("on") === "1"));
        case "c": return stub.fetch(new Request(new URL("/" + rest.join("/") + url.search, url), request));
      }
      return new Response("not found", { status: 404 });
    },
  };
  return { Surface, Sleepy, handler };
}
