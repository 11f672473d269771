package container

import (
	"net/http"
	"net/netip"
	"testing"
)

func TestParseEgressRule(t *testing.T) {
	h := http.NotFoundHandler()
	for _, c := range []struct {
		addr string
		tls  bool
		want string // String() of the rule; "" for an error
	}{
		{"example.com", false, "http example.com:80"},
		{"Example.COM.", false, "http example.com:80"},
		{"*.example.com", true, "https *.example.com:443"},
		{"*", true, "https *:443"},
		{"example.com:8080", false, "http example.com:8080"},
		{"10.1.2.3", false, "http 10.1.2.3/32:80"},
		{"10.1.2.3:8443", true, "https 10.1.2.3/32:8443"},
		{"10.0.0.0/8", false, "http 10.0.0.0/8:80"},
		{"10.9.9.9/8", false, "http 10.0.0.0/8:80"},
		{"::1", false, "http ::1/128:80"},
		{"[2001:db8::1]:81", false, "http 2001:db8::1/128:81"},
		{"", false, ""},
		{"exa mple.com", false, ""},
		{"example.com:0", false, ""},
		{"example.com:http", false, ""},
		{"1.2.3.4:0", false, ""},
	} {
		r, err := ParseEgressRule(c.addr, c.tls, h)
		if c.want == "" {
			if err == nil {
				t.Errorf("ParseEgressRule(%q) = %s, want an error", c.addr, r)
			}
			continue
		}
		if err != nil || r.String() != c.want {
			t.Errorf("ParseEgressRule(%q, %v) = %s, %v; want %s", c.addr, c.tls, r, err, c.want)
		}
	}
	if _, err := ParseEgressRule("example.com", false, nil); err == nil {
		t.Error("a rule without a handler parsed")
	}
}

func TestEgressRoute(t *testing.T) {
	name := func(h http.Handler) string {
		n, _ := h.(namedHandler)
		return string(n)
	}
	var e Egress
	add := func(addr string, tls bool, name string) {
		r, err := ParseEgressRule(addr, tls, namedHandler(name))
		if err != nil {
			t.Fatal(err)
		}
		e.Add(r)
	}
	changed := e.Changed()
	add("0.0.0.0/0", false, "all") // interceptAllOutboundHttp
	select {
	case <-changed:
	default:
		t.Error("Add did not signal Changed")
	}
	add("example.com", false, "exact")
	add("*.example.com", false, "glob")
	add("*.b.example.com", false, "longer glob")
	add("10.0.0.0/8", false, "net8")
	add("10.1.0.0/16", false, "net16")
	add("*", true, "tls all")
	add("secure.example", true, "tls exact")
	dst := func(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
	fake := "198.18.0.1:80"
	for _, c := range []struct {
		tls       bool
		dst, host string
		want      string
	}{
		{false, fake, "example.com", "exact"},
		{false, fake, "EXAMPLE.com.", "exact"},
		{false, fake, "example.com:80", "exact"},
		{false, fake, "a.example.com", "glob"},
		{false, fake, "x.b.example.com", "longer glob"},
		{false, fake, "other.test", "all"},
		{false, "10.1.2.3:80", "10.1.2.3", "net16"},
		{false, "10.2.2.3:80", "", "net8"},
		{false, "10.2.2.3:8080", "example.com", ""}, // wrong port for every rule
		{true, "198.18.0.1:443", "secure.example", "tls exact"},
		{true, "198.18.0.1:443", "other.test", "tls all"},
		{true, "198.18.0.1:443", "", ""}, // no SNI, no address rule
	} {
		got := name(e.Route(c.tls, dst(c.dst), c.host))
		if got != c.want {
			t.Errorf("Route(tls %v, %s, %q) = %q, want %q", c.tls, c.dst, c.host, got, c.want)
		}
	}
	// Replacing a rule keeps one rule per address.
	n := e.Len()
	add("example.com", false, "exact again")
	if e.Len() != n || name(e.Route(false, dst(fake), "example.com")) != "exact again" {
		t.Errorf("re-adding example.com: %d rules (want %d), route %q", e.Len(), n, name(e.Route(false, dst(fake), "example.com")))
	}
	caps := e.Captures()
	want := []EgressCapture{{Port: 80}, {Port: 443}}
	if len(caps) != len(want) || caps[0] != want[0] && caps[0] != want[1] {
		t.Errorf("Captures = %v, want the any-address captures of ports 80 and 443 only", caps)
	}
	if !e.Captured(dst("192.0.2.1:443")) || e.Captured(dst("192.0.2.1:8080")) {
		t.Error("Captured disagrees with Captures")
	}
}

type namedHandler string

func (namedHandler) ServeHTTP(http.ResponseWriter, *http.Request) {}
