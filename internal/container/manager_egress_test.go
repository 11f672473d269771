package container_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"testing"

	"github.com/berth-dev/berth/internal/container"
	"github.com/berth-dev/berth/internal/container/testapp"
)

// fetchVia has owner's container fetch target and returns what it got.
func fetchVia(t testing.TB, m *container.Manager, owner container.Owner, target string) testapp.FetchReply {
	t.Helper()
	var reply testapp.FetchReply
	body := get(t, m, owner, "/fetch?url="+url.QueryEscape(target))
	if err := json.Unmarshal([]byte(body), &reply); err != nil {
		t.Fatalf("/fetch answered %q: %v", body, err)
	}
	return reply
}

func egressRule(t testing.TB, addr, answer string) container.EgressRule {
	t.Helper()
	r, err := container.ParseEgressRule(addr, false, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s", answer, r.URL)
	}))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestManagerInterceptOutbound(t *testing.T) {
	e := newFakeEnv(t)
	m := e.manager(e.class(nil))
	owner := container.Owner{Class: testClass, Object: objectID("egress")}
	ctx := testCtx(t)

	// Before the start, as @cloudflare/containers does it.
	if err := m.InterceptOutbound(ctx, owner, egressRule(t, "example.com", "first")); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Start(ctx, owner, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	waitListening(t, m, owner, 8080)
	if r := fetchVia(t, m, owner, "http://example.com/a"); r.Body != "first http://example.com/a" {
		t.Fatalf("intercepted fetch: %+v", r)
	}
	if r := fetchVia(t, m, owner, "http://other.example/"); r.Status != container.EgressBlockedStatus {
		t.Errorf("fetch no rule selects: %+v, want %d", r, container.EgressBlockedStatus)
	}
	// While it runs.
	if err := m.InterceptOutbound(ctx, owner, egressRule(t, "other.example", "second")); err != nil {
		t.Fatal(err)
	}
	if r := fetchVia(t, m, owner, "http://other.example/b"); r.Body != "second http://other.example/b" {
		t.Errorf("rule added while running: %+v", r)
	}
	// The rules outlive the container: the next one has them.
	if err := m.Destroy(ctx, owner, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Start(ctx, owner, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	waitListening(t, m, owner, 8080)
	if r := fetchVia(t, m, owner, "http://example.com/c"); r.Body != "first http://example.com/c" {
		t.Errorf("after a restart: %+v", r)
	}
	if r := fetchVia(t, m, owner, "http://other.example/d"); r.Body != "second http://other.example/d" {
		t.Errorf("after a restart: %+v", r)
	}

	// A container that started without rules gets them when they come.
	late := container.Owner{Class: testClass, Object: objectID("late")}
	if _, err := m.Start(ctx, late, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	waitListening(t, m, late, 8080)
	if r := fetchVia(t, m, late, "http://example.com/"); r.Err == "" {
		t.Errorf("no rules, no internet: %+v; want a failed connection", r)
	}
	if err := m.InterceptOutbound(ctx, late, egressRule(t, "example.com", "late")); err != nil {
		t.Fatal(err)
	}
	if r := fetchVia(t, m, late, "http://example.com/e"); r.Body != "late http://example.com/e" {
		t.Errorf("rule for a running container started without: %+v", r)
	}
}

// notInterceptor hides the fake's Intercept.
type notInterceptor struct{ container.Runtime }

func TestManagerInterceptOutboundUnsupported(t *testing.T) {
	e := newFakeEnv(t)
	m := e.manager(e.class(nil), func(cfg *container.ManagerConfig) { cfg.Runtime = notInterceptor{e.rt} })
	owner := container.Owner{Class: testClass, Object: objectID("x")}
	err := m.InterceptOutbound(testCtx(t), owner, egressRule(t, "example.com", "x"))
	if !errors.Is(err, container.ErrNoInterception) {
		t.Fatalf("InterceptOutbound on a runtime that cannot: %v, want ErrNoInterception", err)
	}
}
