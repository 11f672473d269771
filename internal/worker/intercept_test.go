package worker

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/container"
	"github.com/berth-dev/berth/internal/container/testapp"
)

// egressSrc intercepts its container's outbound HTTP(S) with a loopback
// entrypoint (with props) and a Durable Object stub, before start(), as
// @cloudflare/containers does.
const egressSrc = `
import { DurableObject, WorkerEntrypoint } from "cloudflare:workers";
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export class Proxy extends WorkerEntrypoint {
  async fetch(req) {
    return Response.json({ via: "Proxy", url: req.url, method: req.method, props: this.ctx.props, body: await req.text() },
      { headers: { "x-via": "proxy" } });
  }
  hello(name) { return "hello " + name + " " + JSON.stringify(this.ctx.props); }
}
export class Box extends DurableObject {
  async waitUp(port) {
    for (let i = 0; i < 500; i++) {
      try { return await port.fetch("http://container/echo"); }
      catch (e) { await sleep(10); }
    }
    throw new Error("the container never listened");
  }
  async fetch(req) {
    const url = new URL(req.url);
    const c = this.ctx.container;
    const port = c.getTcpPort(8080);
    if (url.hostname === "object.example") return new Response("object " + this.ctx.id.name + " " + req.method + " " + req.url);
    switch (url.pathname) {
      case "/setup": {
        const errors = [];
        for (const bad of [() => c.interceptOutboundHttp("example.com", { fetch() {} }),
                           () => c.interceptOutboundHttp("example.com", this.ctx.exports.Box),
                           () => c.interceptOutboundHttp("bad host!", this.ctx.exports.Proxy)]) {
          await bad().then(() => errors.push("no error"), (e) => errors.push(e.name + ": " + e.message));
        }
        await c.interceptOutboundHttp("example.com", this.ctx.exports.Proxy({ props: { x: 1 } }));
        await c.interceptOutboundHttps("secure.example", this.ctx.exports.Proxy({ props: { tls: true } }));
        await c.interceptOutboundHttp("object.example", this.env.BOX.getByName("target"));
        c.start();
        await (await this.waitUp(port)).text();
        return Response.json({ errors, direct: await (await this.ctx.exports.Proxy({ props: { d: 2 } }).fetch("http://direct/")).json(),
          rpc: await this.ctx.exports.Proxy({ props: { r: 3 } }).hello("rpc") });
      }
      case "/late": {
        // After start(), without awaiting start's effect: the Manager orders it.
        await c.interceptAllOutboundHttp(this.ctx.exports.Proxy({ props: { all: true } }));
        return new Response("ok");
      }
      case "/fetch":
        return port.fetch("http://container/fetch?url=" + encodeURIComponent(url.searchParams.get("url")) +
          (url.searchParams.get("method") ? "&method=" + url.searchParams.get("method") + "&body=" + url.searchParams.get("body") : ""));
    }
    return new Response("no route", { status: 404 });
  }
}
export default {
  fetch(req, env) { return env.BOX.getByName("a").fetch(req); },
};
`

func TestInterceptOutbound(t *testing.T) {
	m := fakeContainers(t, "Box")
	w := newObjectWorker(t, egressSrc, map[string]string{"BOX": "Box"},
		objectOptions{containers: m, containerClasses: []string{"Box"}})
	var setup struct {
		Errors []string
		Direct struct {
			Via   string
			Props map[string]any
		}
		RPC string
	}
	getJSON(t, w, "http://x/setup", &setup)
	if len(setup.Errors) != 3 || !strings.HasPrefix(setup.Errors[0], "TypeError") || !strings.Contains(setup.Errors[0], "Fetcher") ||
		!strings.HasPrefix(setup.Errors[1], "TypeError") || !strings.Contains(setup.Errors[2], "bad host!") {
		t.Errorf("bad calls: %q", setup.Errors)
	}
	if setup.Direct.Via != "Proxy" || setup.Direct.Props["d"] != float64(2) || setup.RPC != `hello rpc {"r":3}` {
		t.Errorf("ctx.exports.Proxy({props}) called directly: %+v", setup)
	}

	fetch := func(target string, extra ...string) testapp.FetchReply {
		t.Helper()
		u := "http://x/fetch?url=" + url.QueryEscape(target)
		for i := 0; i+1 < len(extra); i += 2 {
			u += "&" + extra[i] + "=" + url.QueryEscape(extra[i+1])
		}
		var r testapp.FetchReply
		getJSON(t, w, u, &r)
		return r
	}
	type seen struct {
		Via, URL, Method, Body string
		Props                  map[string]any
	}
	proxied := func(target string, r testapp.FetchReply) seen {
		t.Helper()
		var s seen
		if r.Status != 200 || json.Unmarshal([]byte(r.Body), &s) != nil || s.Via != "Proxy" {
			t.Fatalf("fetch %s from the container: %+v; want the Proxy entrypoint's answer\nlog:\n%s", target, r, w.logs)
		}
		return s
	}

	s := proxied("http://example.com/path?q=1", fetch("http://example.com/path?q=1"))
	if s.URL != "http://example.com/path?q=1" || s.Props["x"] != float64(1) {
		t.Errorf("intercepted HTTP: %+v", s)
	}
	s = proxied("POST http://example.com/", fetch("http://example.com/", "method", "POST", "body", "sent"))
	if s.Method != "POST" || s.Body != "sent" {
		t.Errorf("intercepted POST: %+v", s)
	}
	s = proxied("https://secure.example/x", fetch("https://secure.example/x"))
	if s.URL != "https://secure.example/x" || s.Props["tls"] != true {
		t.Errorf("intercepted HTTPS: %+v", s)
	}
	if r := fetch("http://object.example/y"); r.Status != 200 || r.Body != "object target GET http://object.example/y" {
		t.Errorf("intercepted to a Durable Object stub: %+v", r)
	}
	if r := fetch("http://unknown.example/"); r.Status != container.EgressBlockedStatus || r.Body != container.EgressBlockedText {
		t.Errorf("no rule: %+v", r)
	}
	// interceptAllOutboundHttp while the container runs; the more
	// specific rules keep their fetchers.
	if got := do(t, w, "GET", "http://x/late", nil).Body.String(); got != "ok" {
		t.Fatalf("late: %q\nlog:\n%s", got, w.logs)
	}
	s = proxied("http://unknown.example/", fetch("http://unknown.example/"))
	if s.Props["all"] != true {
		t.Errorf("intercept-all: %+v", s)
	}
	if s = proxied("http://example.com/", fetch("http://example.com/")); s.Props["x"] != float64(1) {
		t.Errorf("example.com after intercept-all: %+v", s)
	}
}
