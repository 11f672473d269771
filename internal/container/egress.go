package container

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Outbound interception ("egress"). A container started with Spec.Egress has
// its outbound HTTP and HTTPS captured by the runtime and handed to the
// handlers of an Egress table, the way Cloudflare's
// ctx.container.interceptOutboundHttp and interceptOutboundHttps do:
//
//   - Without Spec.Internet, every outbound TCP connection is captured and
//     every DNS name resolves (to an address of the runtime's choosing).
//     A request that no rule selects gets Cloudflare's blocked answer
//     (EgressBlockedStatus, "Origin is disallowed"); a TLS connection no rule
//     selects, or one that is not HTTP, is closed.
//   - With Spec.Internet, only what the rules can select is captured (their
//     ports, and for address rules their addresses); a captured request or
//     TLS connection that no rule selects goes on to where it was going.
//
// HTTPS is terminated with a certificate that berth's CA issues for the
// server name the client asked for; the container trusts that CA through the
// file at EgressCAPath (see EgressCAPath for the environment that points to it).

// EgressCAPath is where a container with Spec.Egress finds the certificate of
// the CA that signs intercepted HTTPS, as on Cloudflare. The runtime also
// points SSL_CERT_FILE (without Spec.Internet) and NODE_EXTRA_CA_CERTS at it,
// unless Spec.Env sets them.
const EgressCAPath = "/etc/cloudflare/certs/cloudflare-containers-ca.crt"

// Cloudflare's answer to a request no rule lets out.
const (
	EgressBlockedStatus = 520
	EgressBlockedText   = "Origin is disallowed"
)

// EgressBlocked answers every request with Cloudflare's blocked response.
var EgressBlocked http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain;charset=UTF-8")
	w.WriteHeader(EgressBlockedStatus)
	_, _ = w.Write([]byte(EgressBlockedText))
})

// EgressRule selects outbound traffic of a container for a handler.
type EgressRule struct {
	// TLS selects TLS connections (interceptOutboundHttps), matched on the
	// server name (SNI) the client sends; otherwise plain HTTP requests,
	// matched on their Host.
	TLS bool
	// Host is a hostname or a glob of one ("*.example.com"; "*" matches every
	// name). It is empty for an address rule.
	Host string
	// Net is the destination of an address rule (a single IP or a CIDR
	// range), matched on the address the container connected to; invalid
	// for a host rule.
	Net netip.Prefix
	// Port is the destination port the rule selects.
	Port uint16
	// Handler serves the requests the rule selects.
	Handler http.Handler
}

// ParseEgressRule parses addr the way interceptOutboundHttp (tls false) and
// interceptOutboundHttps (tls true) take it: a hostname, a glob ("*.example
// .com", "*"), an IP, a CIDR, each optionally with ":port" (IPv6 in
// brackets). The port defaults to 80 for HTTP and 443 for HTTPS. A malformed
// addr is an error wrapping ErrInvalid.
func ParseEgressRule(addr string, tls bool, h http.Handler) (EgressRule, error) {
	r := EgressRule{TLS: tls, Handler: h, Port: 80}
	if tls {
		r.Port = 443
	}
	fail := func(why string) (EgressRule, error) {
		return EgressRule{}, fmt.Errorf("outbound interception of %q: %w: %s", addr, ErrInvalid, why)
	}
	if h == nil {
		return fail("no handler")
	}
	s := strings.TrimSpace(addr)
	if s == "" {
		return fail("empty address")
	}
	if p, err := netip.ParsePrefix(s); err == nil {
		r.Net = p.Masked()
		return r, nil
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		if ap.Port() == 0 {
			return fail("port 0")
		}
		r.Net, r.Port = netip.PrefixFrom(ap.Addr().Unmap(), ap.Addr().Unmap().BitLen()), ap.Port()
		return r, nil
	}
	if a, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		r.Net = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		return r, nil
	}
	host := s
	if i := strings.LastIndexByte(s, ':'); i >= 0 {
		port, err := strconv.ParseUint(s[i+1:], 10, 16)
		if err != nil || port == 0 {
			return fail("bad port")
		}
		host, r.Port = s[:i], uint16(port)
	}
	host = strings.TrimRight(strings.ToLower(host), ".")
	if host == "" {
		return fail("empty host")
	}
	for _, c := range host {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '*') {
			return fail(fmt.Sprintf("character %q in a hostname", c))
		}
	}
	r.Host = host
	return r, nil
}

// String names the rule as "http example.com:80" or "https 10.0.0.0/8:443".
func (r EgressRule) String() string {
	scheme := "http"
	if r.TLS {
		scheme = "https"
	}
	target := r.Host
	if target == "" {
		target = r.Net.String()
	}
	return scheme + " " + target + ":" + strconv.Itoa(int(r.Port))
}

// matches reports whether the rule selects a request or TLS connection to
// dst for host (the Host of a plain request, the SNI of a TLS connection).
func (r *EgressRule) matches(tls bool, dst netip.AddrPort, host string) bool {
	if r.TLS != tls || r.Port != dst.Port() {
		return false
	}
	if r.Host != "" {
		return host != "" && globMatch(r.Host, host)
	}
	return r.Net.Contains(dst.Addr().Unmap())
}

// rank orders rules from the most to the least specific: exact hostnames,
// then globs (longer first), then address ranges (narrower first), then "*".
func (r *EgressRule) rank() (int, int) {
	switch {
	case r.Host == "*":
		return 0, 0
	case r.Host == "":
		return 1, r.Net.Bits()
	case strings.Contains(r.Host, "*"):
		return 2, len(r.Host)
	}
	return 3, 0
}

// globMatch matches a lowercase pattern where '*' stands for any run of
// characters, as @cloudflare/containers matches hosts.
func globMatch(pattern, value string) bool {
	value = strings.TrimRight(strings.ToLower(value), ".")
	parts := strings.Split(pattern, "*")
	if len(parts) == 1 {
		return pattern == value
	}
	if !strings.HasPrefix(value, parts[0]) {
		return false
	}
	value = value[len(parts[0]):]
	last := parts[len(parts)-1]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(value, p)
		if i < 0 {
			return false
		}
		value = value[i+len(p):]
	}
	return strings.HasSuffix(value, last)
}

// Egress is the live interception table of a container owner: rules added
// while a container runs apply to it (once Interceptor.Intercept returns,
// for a container with Internet), and the table outlives the container, so
// that the owner's next container starts with it. The zero value is an
// empty table. All methods are safe for concurrent use.
type Egress struct {
	mu      sync.RWMutex
	rules   []EgressRule // most specific first; see rank
	changed chan struct{}
}

// Add adds rule, replacing the rule of the same kind for the same address.
func (e *Egress) Add(rule EgressRule) {
	e.mu.Lock()
	defer e.mu.Unlock()
	same := func(o EgressRule) bool {
		return o.TLS == rule.TLS && o.Host == rule.Host && o.Net == rule.Net && o.Port == rule.Port
	}
	e.rules = slices.DeleteFunc(e.rules, same)
	// Among rules of equal rank the newest comes first.
	e.rules = slices.Insert(e.rules, 0, rule)
	slices.SortStableFunc(e.rules, func(a, b EgressRule) int {
		ak, al := a.rank()
		bk, bl := b.rank()
		return cmp.Or(cmp.Compare(bk, ak), cmp.Compare(bl, al))
	})
	if e.changed != nil {
		close(e.changed)
		e.changed = nil
	}
}

// Route returns the handler of the most specific rule that selects a plain
// HTTP request (tls false) or a TLS connection to dst for host, or nil.
func (e *Egress) Route(tls bool, dst netip.AddrPort, host string) http.Handler {
	if e == nil {
		return nil
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	for i := range e.rules {
		if e.rules[i].matches(tls, dst, host) {
			return e.rules[i].Handler
		}
	}
	return nil
}

// Len is the number of rules.
func (e *Egress) Len() int {
	if e == nil {
		return 0
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	return len(e.rules)
}

// Rules returns the rules, most specific first.
func (e *Egress) Rules() []EgressRule {
	if e == nil {
		return nil
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	return slices.Clone(e.rules)
}

// Changed returns a channel that is closed at the next Add.
func (e *Egress) Changed() <-chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.changed == nil {
		e.changed = make(chan struct{})
	}
	return e.changed
}

// EgressCapture is one destination a container with Internet has captured:
// TCP connections to Port at an address in Net (any address when Net is
// invalid).
type EgressCapture struct {
	Net  netip.Prefix
	Port uint16
}

// Captures lists what the rules can select, which is what a runtime
// captures of a container that has Internet: the port of every host rule
// at any address, the addresses and port of every address rule.
func (e *Egress) Captures() []EgressCapture {
	var out []EgressCapture
	for _, r := range e.Rules() {
		c := EgressCapture{Port: r.Port}
		if r.Host == "" {
			c.Net = r.Net
		}
		if !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	// Any-address captures cover the others of their port.
	return slices.DeleteFunc(out, func(c EgressCapture) bool {
		return c.Net.IsValid() && slices.Contains(out, EgressCapture{Port: c.Port})
	})
}

// Captured reports whether a connection to dst is among Captures.
func (e *Egress) Captured(dst netip.AddrPort) bool {
	for _, c := range e.Captures() {
		if c.Port == dst.Port() && (!c.Net.IsValid() || c.Net.Contains(dst.Addr().Unmap())) {
			return true
		}
	}
	return false
}

// EgressInfo describes an intercepted request; handlers find it with
// EgressInfoFrom.
type EgressInfo struct {
	// Dst is the address the container connected to. Without Internet,
	// every hostname resolves to one address of the runtime's.
	Dst netip.AddrPort
	// TLS is set for a request that came over intercepted HTTPS; SNI is the
	// server name the client sent.
	TLS bool
	SNI string
}

type egressInfoKey struct{}

// WithEgressInfo returns ctx carrying info; runtimes use it for the requests
// they hand to rule handlers.
func WithEgressInfo(ctx context.Context, info EgressInfo) context.Context {
	return context.WithValue(ctx, egressInfoKey{}, info)
}

// EgressInfoFrom returns the EgressInfo of an intercepted request's context.
func EgressInfoFrom(ctx context.Context) (EgressInfo, bool) {
	info, ok := ctx.Value(egressInfoKey{}).(EgressInfo)
	return info, ok
}

// Interceptor is implemented by runtimes that can intercept a container's
// outbound HTTP and HTTPS (Spec.Egress).
type Interceptor interface {
	// Intercept makes running container id intercept its outbound traffic
	// through egress from now on, as if it had started with Spec.Egress.
	// Unlike at start, connections made before stay as they are, and the
	// container's environment does not point at EgressCAPath (the file is
	// there where the runtime can put it).
	//
	// For a container already intercepting through egress it returns once
	// the rules egress has now are in force: call it after Egress.Add. A
	// container with Internet may otherwise see a new rule's traffic go
	// out uncaptured for a moment, since what it captures follows the
	// rules.
	Intercept(ctx context.Context, id string, egress *Egress) error
}
