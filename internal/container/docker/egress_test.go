package docker

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/berth-dev/berth/internal/container"
	"github.com/berth-dev/berth/internal/container/testapp"
)

func testCtxEgress(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// fetchIn has container id fetch target (with extra /fetch parameters).
func fetchIn(t testing.TB, ctx context.Context, rt *Runtime, id, target string, extra url.Values) testapp.FetchReply {
	t.Helper()
	q := url.Values{"url": {target}}
	for k, v := range extra {
		q[k] = v
	}
	code, body, err := getThroughDial(ctx, rt, id, 8080, "/fetch?"+q.Encode())
	if err != nil || code != http.StatusOK {
		t.Fatalf("/fetch %s: %d %s %v", target, code, body, err)
	}
	var reply testapp.FetchReply
	if err := json.Unmarshal([]byte(body), &reply); err != nil {
		t.Fatalf("/fetch %s answered %q: %v", target, body, err)
	}
	return reply
}

func textHandler(text string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s", text, r.URL)
	})
}

func mustRule(t testing.TB, addr string, tls bool, h http.Handler) container.EgressRule {
	t.Helper()
	r, err := container.ParseEgressRule(addr, tls, h)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestEgressEngineRestart: `docker restart` gives the container a new
// network namespace; berth sets interception up in it again (the start
// gate holds the program back meanwhile) and lets go of the old one.
func TestEgressEngineRestart(t *testing.T) {
	rt := newTestRuntime(t, Options{})
	ctx := testCtxEgress(t, 2*time.Minute)
	table := new(container.Egress)
	table.Add(mustRule(t, "example.com", false, textHandler("intercepted")))
	inst := startApp(t, rt, container.Spec{Egress: table, Env: map[string]string{"FETCH_AT_BOOT": "http://example.com/boot"}})
	if err := waitHTTP(ctx, rt, inst.ID, 8080, "/echo"); err != nil {
		t.Fatal(err)
	}
	if r := fetchIn(t, ctx, rt, inst.ID, "http://example.com/one", nil); r.Body != "intercepted http://example.com/one" {
		t.Fatalf("before the restart: %+v", r)
	}
	st := rt.egressOf(inst.ID)
	st.mu.Lock()
	oldNS, oldStarted := st.ns, st.startedAt
	st.mu.Unlock()

	t0 := time.Now()
	if _, err := rt.api.ContainerRestart(ctx, inst.ID, client.ContainerRestartOptions{}); err != nil {
		t.Fatal(err)
	}
	t1 := time.Now()
	if err := waitHTTP(ctx, rt, inst.ID, 8080, "/echo"); err != nil {
		t.Fatal(err)
	}
	t.Logf("restart took %s, then %s until the program answered", t1.Sub(t0), time.Since(t1))
	code, body, err := getThroughDial(ctx, rt, inst.ID, 8080, "/boot-fetch")
	if err != nil || code != 200 || !strings.Contains(body, "intercepted http://example.com/boot") {
		t.Errorf("the restarted program's first fetch: %d %s %v", code, body, err)
	}
	if r := fetchIn(t, ctx, rt, inst.ID, "http://example.com/two", nil); r.Body != "intercepted http://example.com/two" {
		t.Errorf("after the restart: %+v", r)
	}
	st.mu.Lock()
	newStarted := st.startedAt
	st.mu.Unlock()
	if newStarted == oldStarted {
		t.Errorf("interception still set up for the run of %s", oldStarted)
	}
	if _, err := oldNS.Stat(); err == nil {
		t.Errorf("the old network namespace handle is still open")
	}
}

// TestEgressPassThrough: with internet, traffic that no rule selects goes
// on to its destination, from the container's own address, even on a port
// interception captures. The destination is a server of this test on the
// bridge's gateway: nothing leaves the machine.
func TestEgressPassThrough(t *testing.T) {
	rt := newTestRuntime(t, Options{})
	ctx := testCtxEgress(t, 2*time.Minute)
	if err := rt.ensureInternetNetwork(ctx); err != nil {
		t.Fatal(err)
	}
	netw, err := rt.api.NetworkInspect(ctx, rt.inetName, client.NetworkInspectOptions{})
	if err != nil || len(netw.Network.IPAM.Config) == 0 {
		t.Fatalf("inspect the test network: %v", err)
	}
	gw := netw.Network.IPAM.Config[0].Gateway

	seen := make(chan string, 4)
	plain := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.RemoteAddr
		fmt.Fprintf(w, "host server %s %s", r.Host, r.URL)
	}))
	plain.Listener = listenAll(t)
	plain.Start()
	defer plain.Close()
	secure := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "host tls server %s", r.URL)
	}))
	secure.Listener = listenAll(t)
	secure.StartTLS()
	defer secure.Close()
	plainPort := plain.Listener.Addr().(*net.TCPAddr).Port
	securePort := secure.Listener.Addr().(*net.TCPAddr).Port

	table := new(container.Egress)
	// Host rules capture their whole port.
	table.Add(mustRule(t, fmt.Sprintf("example.com:%d", plainPort), false, textHandler("intercepted")))
	table.Add(mustRule(t, fmt.Sprintf("secure.example:%d", securePort), true, textHandler("intercepted tls")))
	table.Add(mustRule(t, "203.0.113.5", false, textHandler("by address")))
	inst := startApp(t, rt, container.Spec{Internet: true, Egress: table})
	if err := waitHTTP(ctx, rt, inst.ID, 8080, "/echo"); err != nil {
		t.Fatal(err)
	}

	target := fmt.Sprintf("http://%s:%d/plain", gw.String(), plainPort)
	if r := fetchIn(t, ctx, rt, inst.ID, target, nil); r.Status != 200 || !strings.HasPrefix(r.Body, "host server ") {
		t.Errorf("plain HTTP no rule selects, on a captured port: %+v; want the host server's answer", r)
	}
	select {
	case from := <-seen:
		if ap, err := netip.ParseAddrPort(from); err != nil || ap.Addr() == netip.MustParseAddr("127.0.0.1") {
			t.Errorf("the host server saw the request from %s; want the container's address", from)
		}
	default:
		t.Errorf("the host server saw no request")
	}
	target = fmt.Sprintf("https://%s:%d/tls", gw.String(), securePort)
	if r := fetchIn(t, ctx, rt, inst.ID, target, url.Values{"insecure": {"1"}}); r.Status != 200 || r.Body != "host tls server /tls" {
		t.Errorf("TLS no rule selects, on a captured port: %+v; want the host TLS server's answer", r)
	}
	if r := fetchIn(t, ctx, rt, inst.ID, "http://203.0.113.5/x", nil); r.Body != "by address http://203.0.113.5/x" {
		t.Errorf("address rule: %+v", r)
	}
}

func listenAll(t testing.TB) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestEgressRules checks the rules berth installs, without an engine.
func TestEgressRules(t *testing.T) {
	rules, noflush := egressRules(false, 15001, 15053, nil, true)
	if noflush {
		t.Error("without internet the tables are replaced whole")
	}
	for _, want := range []string{"--to-ports 15053", "! -d 127.0.0.0/8 -j REDIRECT --to-ports 15001", "--dst-type LOCAL -j ACCEPT"} {
		if !strings.Contains(rules, want) {
			t.Errorf("rules without internet lack %q:\n%s", want, rules)
		}
	}
	caps := []container.EgressCapture{{Port: 80}, {Net: netip.MustParsePrefix("10.0.0.0/8"), Port: 8080}, {Net: netip.MustParsePrefix("::1/128"), Port: 80}}
	rules, noflush = egressRules(true, 15001, 0, caps, true)
	if !noflush {
		t.Errorf("with internet berth must not flush Docker's own rules")
	}
	for _, want := range []string{"-m mark --mark 0x6265 -j RETURN", "-p tcp --dport 80 -j REDIRECT", "-p tcp -d 10.0.0.0/8 --dport 8080 -j REDIRECT", "-I OUTPUT 1 -j BERTH_EGRESS"} {
		if !strings.Contains(rules, want) {
			t.Errorf("rules with internet lack %q:\n%s", want, rules)
		}
	}
	if strings.Contains(rules, "::1") {
		t.Errorf("IPv6 capture in iptables rules:\n%s", rules)
	}
	if rules, _ = egressRules(true, 15001, 0, caps, false); strings.Contains(rules, "-I OUTPUT") {
		t.Errorf("a refresh jumps to berth's chain again:\n%s", rules)
	}
}

// BenchmarkEgress measures what interception costs: Start with and without
// it (interleaved), the setup itself, and intercepted requests as the
// container's own client sees them (p50 over 200 requests each).
func BenchmarkEgress(b *testing.B) {
	rt := newTestRuntime(b, Options{})
	ctx := testCtxEgress(b, 20*time.Minute)
	image := testAppImage(b, rt)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	table := new(container.Egress)
	table.Add(mustRule(b, "example.com", false, handler))
	table.Add(mustRule(b, "example.com", true, handler))
	start := func(spec container.Spec) (container.Instance, time.Duration) {
		spec.Image = image
		spec.Labels = testLabels
		t0 := time.Now()
		inst, err := rt.Start(ctx, spec)
		if err != nil {
			b.Fatal(err)
		}
		d := time.Since(t0)
		b.Cleanup(func() { rt.Destroy(context.Background(), inst.ID) })
		return inst, d
	}
	var plain, withEgress, setup, rules []time.Duration
	var last container.Instance
	for i := 0; i < b.N; i++ {
		inst, d := start(container.Spec{})
		plain = append(plain, d)
		rt.Destroy(ctx, inst.ID)
		last, d = start(container.Spec{Egress: table})
		withEgress = append(withEgress, d)
		st := rt.egressOf(last.ID)
		st.mu.Lock()
		setup, rules = append(setup, st.totalTook), append(rules, st.rulesTook)
		st.mu.Unlock()
		if i < b.N-1 {
			rt.Destroy(ctx, last.ID)
		}
	}
	b.Logf("Start without interception: %s", summary(plain))
	b.Logf("Start with interception (gated): %s", summary(withEgress))
	b.Logf("  of which setup (inspect, listeners, rules): %s; routes and iptables-restore: %s", summary(setup), summary(rules))
	b.ReportMetric(ms(median(withEgress))-ms(median(plain)), "start-extra-ms")
	b.ReportMetric(ms(median(rules)), "rules-ms")
	if err := waitHTTP(ctx, rt, last.ID, 8080, "/echo"); err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct{ name, url, fresh string }{
		{"loopback baseline (the app itself), keep-alive", "http://127.0.0.1:8080/echo", "0"},
		{"intercepted HTTP, keep-alive", "http://example.com/", "0"},
		{"intercepted HTTP, new connection + DNS", "http://example.com/", "1"},
		{"intercepted HTTPS, keep-alive", "https://example.com/", "0"},
		{"intercepted HTTPS, new connection + DNS + TLS", "https://example.com/", "1"},
	} {
		r := fetchIn(b, ctx, rt, last.ID, c.url, url.Values{"n": {"200"}, "fresh": {c.fresh}})
		if r.Err != "" || r.Status != 200 {
			b.Fatalf("%s: %+v", c.name, r)
		}
		b.Logf("%-48s p50 %6.0f µs  p99 %6.0f µs", c.name, r.P50, r.P99)
	}
}
