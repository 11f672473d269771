package worker

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/container/testapp"
)

// classEgressSrc configures egress the way @cloudflare/containers does, on
// berth's own Container class: static handlers (as class fields and by
// assignment), interceptHttps, and the runtime overrides.
const classEgressSrc = `
import { Container, ContainerProxy, getContainer } from "cloudflare:workers";
export { ContainerProxy };
export class Egress extends Container {
  defaultPort = 8080;
  enableInternet = false;
  interceptHttps = true;
  static outboundByHost = {
    "example.com": (req, env, ctx) => new Response("byhost " + req.url + " " + ctx.className + " " + env.GREETING),
  };
  static outboundHandlers = {
    named: (req, env, ctx) => new Response("named " + req.url + " " + JSON.stringify(ctx.params)),
  };
  set(host) { return this.setOutboundByHost(host, "named", { p: 1 }); }
  deny(host) { return this.denyHost(host); }
}
export class Assigned extends Container {
  defaultPort = 8080;
  enableInternet = false;
}
Assigned.outbound = (req, env, ctx) => new Response("catch-all " + req.url + " " + ctx.containerId.length);
export default {
  async fetch(req, env) {
    const url = new URL(req.url);
    const [, cls, op] = url.pathname.split("/");
    const stub = getContainer(cls === "a" ? env.ASSIGNED : env.EGRESS, "one");
    switch (op) {
      case "fetch": return stub.fetch("http://container/fetch?url=" + encodeURIComponent(url.searchParams.get("url")));
      case "set": await stub.set(url.searchParams.get("host")); return new Response("set");
      case "deny": await stub.deny(url.searchParams.get("host")); return new Response("denied");
    }
    return new Response("no route", { status: 404 });
  },
};
`

func TestContainerClassOutbound(t *testing.T) {
	m := fakeContainers(t, "Egress", "Assigned")
	w := newObjectWorker(t, classEgressSrc, map[string]string{"EGRESS": "Egress", "ASSIGNED": "Assigned"},
		objectOptions{containers: m, containerClasses: []string{"Egress", "Assigned"}})
	fetch := func(cls, target string) testapp.FetchReply {
		t.Helper()
		rec := do(t, w, "GET", "http://x/"+cls+"/fetch?url="+url.QueryEscape(target), nil)
		var r testapp.FetchReply
		if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &r) != nil {
			t.Fatalf("fetch %s: %d %s\nlog:\n%s", target, rec.Code, rec.Body, w.logs)
		}
		return r
	}
	if r := fetch("e", "http://example.com/a"); r.Body != "byhost http://example.com/a Egress undefined" {
		t.Errorf("outboundByHost (a static class field): %+v\nlog:\n%s", r, w.logs)
	}
	if r := fetch("e", "https://example.com/s"); r.Body != "byhost https://example.com/s Egress undefined" {
		t.Errorf("outboundByHost over HTTPS (interceptHttps): %+v", r)
	}
	if r := fetch("e", "http://other.example/"); r.Status != 520 {
		t.Errorf("a host no handler takes, internet off: %+v, want 520", r)
	}
	// A runtime override switches to intercept-all with a named handler.
	if got := do(t, w, "GET", "http://x/e/set?host=other.example", nil).Body.String(); got != "set" {
		t.Fatalf("setOutboundByHost: %q\nlog:\n%s", got, w.logs)
	}
	if r := fetch("e", "http://other.example/o"); r.Body != `named http://other.example/o {"p":1}` {
		t.Errorf("setOutboundByHost: %+v", r)
	}
	if got := do(t, w, "GET", "http://x/e/deny?host=example.com", nil).Body.String(); got != "denied" {
		t.Fatalf("denyHost: %q", got)
	}
	if r := fetch("e", "http://example.com/"); r.Status != 520 {
		t.Errorf("a denied host: %+v, want 520", r)
	}
	if r := fetch("a", "http://anything.example/z"); !strings.HasPrefix(r.Body, "catch-all http://anything.example/z 64") {
		t.Errorf("static outbound by assignment: %+v\nlog:\n%s", r, w.logs)
	}
}
