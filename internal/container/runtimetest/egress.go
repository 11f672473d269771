package runtimetest

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/container"
	"github.com/berth-dev/berth/internal/container/testapp"
)

// The outbound interception part of the suite (Spec.Egress). Every host
// and address the containers call is answered by the interception; nothing
// leaves the machine: without Internet every name resolves to the
// runtime's own address, and the addresses used with Internet are in
// TEST-NET-3 (203.0.113.0/24), captured before they could be routed.

// egressSeen is what egressHandler answers: what the handler saw.
type egressSeen struct {
	Handler string `json:"handler"`
	Method  string `json:"method"`
	URL     string `json:"url"`
	Host    string `json:"host"`
	Dst     string `json:"dst"`
	TLS     bool   `json:"tls"`
	SNI     string `json:"sni"`
	Body    string `json:"body"`
	HasInfo bool   `json:"has_info"`
}

func egressHandler(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		info, ok := container.EgressInfoFrom(r.Context())
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Handler", name)
		_ = json.NewEncoder(w).Encode(egressSeen{
			Handler: name, Method: r.Method, URL: r.URL.String(), Host: r.Host,
			Dst: info.Dst.String(), TLS: info.TLS, SNI: info.SNI, Body: string(body), HasInfo: ok,
		})
	})
}

func addRule(t testing.TB, e *container.Egress, addr string, tls bool, name string) {
	t.Helper()
	r, err := container.ParseEgressRule(addr, tls, egressHandler(name))
	if err != nil {
		t.Fatalf("ParseEgressRule(%q): %v", addr, err)
	}
	e.Add(r)
}

// fetchFrom has the container make a request and returns what it got.
func (s *suite) fetchFrom(t testing.TB, id, target string, extra url.Values) testapp.FetchReply {
	t.Helper()
	q := url.Values{"url": {target}}
	for k, v := range extra {
		q[k] = v
	}
	var reply testapp.FetchReply
	body := s.get(t, id, "/fetch?"+q.Encode())
	if err := json.Unmarshal([]byte(body), &reply); err != nil {
		t.Fatalf("/fetch answered %q: %v", body, err)
	}
	return reply
}

// intercepted checks that reply is handler's answer and returns what the
// handler saw.
func intercepted(t testing.TB, target string, reply testapp.FetchReply, handler string) egressSeen {
	t.Helper()
	if reply.Err != "" || reply.Status != http.StatusOK {
		t.Fatalf("fetch %s from the container: status %d err %q body %q; want handler %s's answer", target, reply.Status, reply.Err, reply.Body, handler)
	}
	var seen egressSeen
	if err := json.Unmarshal([]byte(reply.Body), &seen); err != nil {
		t.Fatalf("fetch %s: body %q: %v", target, reply.Body, err)
	}
	if seen.Handler != handler {
		t.Fatalf("fetch %s went to handler %q, want %q", target, seen.Handler, handler)
	}
	if !seen.HasInfo {
		t.Errorf("fetch %s: the handler's request carries no EgressInfo", target)
	}
	return seen
}

func blocked(t testing.TB, target string, reply testapp.FetchReply) {
	t.Helper()
	if reply.Status != container.EgressBlockedStatus || reply.Body != container.EgressBlockedText {
		t.Fatalf("fetch %s (no rule): status %d body %q err %q; want %d %q", target, reply.Status, reply.Body, reply.Err,
			container.EgressBlockedStatus, container.EgressBlockedText)
	}
}

func (s *suite) testEgressHTTP(t *testing.T) {
	table := new(container.Egress)
	addRule(t, table, "example.com", false, "exact")
	addRule(t, table, "*.glob.example", false, "glob")
	addRule(t, table, "203.0.113.9:8080", false, "ipport")
	inst := s.startServer(t, container.Spec{Egress: table})

	target := "http://example.com/some/path?q=1"
	seen := intercepted(t, target, s.fetchFrom(t, inst.ID, target, nil), "exact")
	if seen.URL != target || seen.Host != "example.com" || seen.Method != "GET" || seen.TLS {
		t.Errorf("the handler saw %+v; want GET %s, Host example.com, no TLS", seen, target)
	}
	if !strings.HasSuffix(seen.Dst, ":80") {
		t.Errorf("original destination %q, want port 80", seen.Dst)
	}
	seen = intercepted(t, target, s.fetchFrom(t, inst.ID, target, url.Values{"method": {"POST"}, "body": {"posted body"}}), "exact")
	if seen.Method != "POST" || seen.Body != "posted body" {
		t.Errorf("the handler saw %s with body %q; want POST \"posted body\"", seen.Method, seen.Body)
	}
	intercepted(t, "http://a.glob.example/", s.fetchFrom(t, inst.ID, "http://a.glob.example/", nil), "glob")
	seen = intercepted(t, "http://203.0.113.9:8080/x", s.fetchFrom(t, inst.ID, "http://203.0.113.9:8080/x", nil), "ipport")
	if seen.Dst != "203.0.113.9:8080" {
		t.Errorf("original destination %q, want 203.0.113.9:8080", seen.Dst)
	}

	// What no rule selects gets Cloudflare's blocked answer.
	blocked(t, "http://other.example/", s.fetchFrom(t, inst.ID, "http://other.example/", nil))
	blocked(t, "http://203.0.113.9/", s.fetchFrom(t, inst.ID, "http://203.0.113.9/", nil))
	// A rule added while the container runs applies at once.
	addRule(t, table, "other.example", false, "late")
	intercepted(t, "http://other.example/", s.fetchFrom(t, inst.ID, "http://other.example/", nil), "late")

	// Every name resolves.
	var res testapp.ResolveReply
	body := s.get(t, inst.ID, "/resolve?host=anything.example")
	if err := json.Unmarshal([]byte(body), &res); err != nil || res.Err != "" || len(res.Addrs) == 0 {
		t.Errorf("/resolve of anything.example: %s (%v); want an address", body, err)
	}
}

func (s *suite) testEgressHTTPS(t *testing.T) {
	table := new(container.Egress)
	addRule(t, table, "secure.example", true, "tls")
	addRule(t, table, "secure.example", false, "plain")
	inst := s.startServer(t, container.Spec{Egress: table})

	target := "https://secure.example/api/v1?x=2"
	seen := intercepted(t, target, s.fetchFrom(t, inst.ID, target, nil), "tls")
	if seen.URL != target || !seen.TLS || seen.SNI != "secure.example" || !strings.HasSuffix(seen.Dst, ":443") {
		t.Errorf("the handler saw %+v; want %s over TLS, SNI secure.example, port 443", seen, target)
	}
	// The same name over plain HTTP is another rule.
	intercepted(t, "http://secure.example/", s.fetchFrom(t, inst.ID, "http://secure.example/", nil), "plain")
	// TLS that no rule selects is closed: no certificate is offered.
	if reply := s.fetchFrom(t, inst.ID, "https://other.example/", nil); reply.Err == "" {
		t.Errorf("https://other.example/ (no rule): status %d body %q; want a failed connection", reply.Status, reply.Body)
	}
}

// testEgressRestart: the owner's table outlives its container; the next
// container starts with it.
func (s *suite) testEgressRestart(t *testing.T) {
	table := new(container.Egress)
	addRule(t, table, "example.com", false, "first")
	first := s.startServer(t, container.Spec{Egress: table})
	intercepted(t, "http://example.com/", s.fetchFrom(t, first.ID, "http://example.com/", nil), "first")
	if err := s.rt.Stop(opContext(t), first.ID, opTimeout); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	addRule(t, table, "second.example", false, "second")
	next := s.startServer(t, container.Spec{Egress: table})
	intercepted(t, "http://example.com/", s.fetchFrom(t, next.ID, "http://example.com/", nil), "first")
	intercepted(t, "http://second.example/", s.fetchFrom(t, next.ID, "http://second.example/", nil), "second")
}

// testEgressLate: Interceptor.Intercept on a container that started
// without interception.
func (s *suite) testEgressLate(t *testing.T) {
	ic, ok := s.rt.(container.Interceptor)
	if !ok {
		t.Skip("the runtime is not an Interceptor")
	}
	inst := s.startServer(t, container.Spec{})
	if reply := s.fetchFrom(t, inst.ID, "http://example.com/", nil); reply.Err == "" {
		t.Fatalf("without interception or internet: status %d body %q; want a failed connection", reply.Status, reply.Body)
	}
	table := new(container.Egress)
	addRule(t, table, "example.com", false, "late")
	if err := ic.Intercept(opContext(t), inst.ID, table); err != nil {
		t.Fatalf("Intercept: %v", err)
	}
	if err := ic.Intercept(opContext(t), inst.ID, table); err != nil {
		t.Fatalf("Intercept again with the same table: %v", err)
	}
	intercepted(t, "http://example.com/", s.fetchFrom(t, inst.ID, "http://example.com/", nil), "late")
	blocked(t, "http://other.example/", s.fetchFrom(t, inst.ID, "http://other.example/", nil))
}

// testEgressBoot: the program's very first connection is intercepted.
func (s *suite) testEgressBoot(t *testing.T) {
	table := new(container.Egress)
	addRule(t, table, "boot.example", false, "boot")
	inst := s.startServer(t, container.Spec{Egress: table, Env: map[string]string{"FETCH_AT_BOOT": "http://boot.example/first"}})
	var reply testapp.FetchReply
	body := s.get(t, inst.ID, "/boot-fetch")
	if err := json.Unmarshal([]byte(body), &reply); err != nil {
		t.Fatalf("/boot-fetch answered %q: %v", body, err)
	}
	intercepted(t, "http://boot.example/first (at boot)", reply, "boot")
}

// testEgressInternet: with Internet, what the rules select is intercepted
// too.
func (s *suite) testEgressInternet(t *testing.T) {
	table := new(container.Egress)
	addRule(t, table, "203.0.113.7", false, "ip")
	inst := s.startServer(t, container.Spec{Egress: table, Internet: true})
	seen := intercepted(t, "http://203.0.113.7/p", s.fetchFrom(t, inst.ID, "http://203.0.113.7/p", nil), "ip")
	if seen.Dst != "203.0.113.7:80" {
		t.Errorf("original destination %q, want 203.0.113.7:80", seen.Dst)
	}
	// A rule added while it runs is captured too, once Intercept says so
	// (before, its traffic would go out).
	addRule(t, table, "203.0.113.8:8081", false, "late")
	if ic, ok := s.rt.(container.Interceptor); ok {
		if err := ic.Intercept(opContext(t), inst.ID, table); err != nil {
			t.Fatalf("Intercept after a new rule: %v", err)
		}
	}
	intercepted(t, "http://203.0.113.8:8081/", s.fetchFrom(t, inst.ID, "http://203.0.113.8:8081/", nil), "late")
}
