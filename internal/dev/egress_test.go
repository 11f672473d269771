package dev

import (
	"context"
	"log/slog"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/container"
	"github.com/berth-dev/berth/internal/container/testapp"
)

// Outbound interception under berth dev with Docker: the container's own
// client calls hosts that only the interception answers (internet is off:
// every name resolves to berth's own address), and gets the Worker's answer.

// egressProject runs testdata/containers-npm/<config> under berth dev and
// returns a function that has the container fetch a URL, and the server's
// URL.
func egressProject(t *testing.T, dir, config, app string) (fetch func(target string) testapp.FetchReply, base string) {
	t.Helper()
	rt := testDocker(t, app)
	t.Cleanup(func() {
		// The images of this app's classes (testDocker knows Echo's and
		// Broken's only); the containers are gone by now.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		refs, _ := exec.CommandContext(ctx, "docker", "images", "--format", "{{.Repository}}:{{.Tag}}", "--filter", "label=berth.test=1", "berth-dev/"+app+"-*").Output()
		for _, ref := range strings.Fields(string(refs)) {
			if err := rt.RemoveImage(ctx, ref); err != nil {
				t.Errorf("remove image %s: %v", ref, err)
			}
		}
	})
	logs := &syncBuffer{}
	base, _ = runDev(t, Options{Dir: dir, ConfigPath: config,
		Logger:          slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		ContainerLabels: map[string]string{container.LabelTest: "1"}})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log:\n%s", logs)
		}
	})
	return func(target string) testapp.FetchReply {
		t.Helper()
		var r testapp.FetchReply
		if code := call(t, "GET", base+"/fetch?url="+url.QueryEscape(target), &r); code != 200 {
			t.Fatalf("fetch %s through the container: status %d", target, code)
		}
		return r
	}, base
}

// TestContainerEgressRaw: a Durable Object intercepts with
// ctx.exports.Proxy({props}) and a Durable Object stub before start().
func TestContainerEgressRaw(t *testing.T) {
	fetch, base := egressProject(t, containerProject(t), "egress-raw.jsonc", "containers-egress-raw")
	if r := fetch("http://example.com/path?q=1"); r.Body != `proxy GET http://example.com/path?q=1 props={"x":1} body=` {
		t.Errorf("HTTP to example.com: %+v", r)
	}
	if r := fetch("https://secure.example/s"); r.Body != `proxy GET https://secure.example/s props={"tls":true} body=` {
		t.Errorf("HTTPS to secure.example: %+v", r)
	}
	if r := fetch("http://stub.example/q"); r.Body != "stub stub http://stub.example/q" {
		t.Errorf("HTTP to a Durable Object stub: %+v", r)
	}
	if r := fetch("http://unknown.example/"); r.Status != container.EgressBlockedStatus || r.Body != container.EgressBlockedText {
		t.Errorf("a host no rule selects: %+v, want %d %q", r, container.EgressBlockedStatus, container.EgressBlockedText)
	}
	if r := fetch("https://unknown.example/"); r.Err == "" {
		t.Errorf("HTTPS no rule selects: %+v, want a failed connection", r)
	}
	// What a round trip through the Worker costs, as the container's
	// client sees it (keep-alive), beside the app calling itself. The
	// class runs the default instance type (lite, 1/16 vCPU): the tail is
	// the container's CPU quota, not the interception.
	for _, target := range []string{"http://127.0.0.1:8080/echo", "http://example.com/lat", "https://secure.example/lat"} {
		var r testapp.FetchReply
		if code := call(t, "GET", base+"/fetch?n=200&url="+url.QueryEscape(target), &r); code != 200 || r.Err != "" {
			t.Fatalf("fetch %s 200 times: status %d, %+v", target, code, r)
		}
		t.Logf("%s: p50 %.0f µs, p99 %.0f µs over %d requests (keep-alive)", target, r.P50, r.P99, r.N)
	}
}

func TestContainerEgressBuiltin(t *testing.T) {
	testEgressClass(t, containerProject(t), "egress-builtin.jsonc", "containers-egress-builtin")
}

func TestContainerEgressNPM(t *testing.T) {
	dir := containerProject(t)
	npmCI(t, dir)
	testEgressClass(t, dir, "egress-npm.jsonc", "containers-egress-npm")
}

// testEgressClass drives src/egress-app.js: the Container class's
// outboundByHost with interceptHttps, then a runtime override.
func testEgressClass(t *testing.T, dir, config, app string) {
	fetch, base := egressProject(t, dir, config, app)
	if r := fetch("http://example.com/a"); r.Body != "by host GET http://example.com/a class=Egress" {
		t.Errorf("outboundByHost: %+v", r)
	}
	if r := fetch("https://example.com/b"); r.Body != "by host GET https://example.com/b class=Egress" {
		t.Errorf("outboundByHost over HTTPS: %+v", r)
	}
	if r := fetch("http://other.example/"); r.Status != container.EgressBlockedStatus {
		t.Errorf("a host without a handler: %+v, want %d", r, container.EgressBlockedStatus)
	}
	// A runtime override of the package's API: the instance switches to
	// intercepting everything, and the named handler takes the host.
	if code := call(t, "GET", base+"/override?host=other.example", nil); code != 200 {
		t.Fatalf("setOutboundByHost: status %d", code)
	}
	if r := fetch("http://other.example/x"); r.Body != `named http://other.example/x params={"n":1}` {
		t.Errorf("after setOutboundByHost: %+v", r)
	}
	if r := fetch("http://example.com/c"); r.Body != "by host GET http://example.com/c class=Egress" {
		t.Errorf("outboundByHost after the override: %+v", r)
	}
}
