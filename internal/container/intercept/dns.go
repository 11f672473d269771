package intercept

import (
	"errors"
	"net"
	"net/netip"

	"golang.org/x/net/dns/dnsmessage"
)

// FakeIP is what DNS answers for every name in a container whose traffic is
// intercepted without internet: connections to it are captured like all
// others, and the name comes back from the Host header or the TLS server
// name. It is in 198.18.0.0/15, the range reserved for benchmarking, so it
// belongs to nobody.
var FakeIP = netip.AddrFrom4([4]byte{198, 18, 0, 1})

// ServeDNS answers the DNS queries that arrive on pc until pc is closed:
// every A query of class IN gets a, AAAA and other types an empty NOERROR
// answer (so that clients use the A record), other opcodes NOTIMP.
// Malformed packets are dropped.
func ServeDNS(pc net.PacketConn, a netip.Addr) error {
	buf := make([]byte, 1500)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		if resp, ok := dnsAnswer(buf[:n], a); ok {
			_, _ = pc.WriteTo(resp, from)
		}
	}
}

// dnsTTL is short: the answer only routes the connection to berth.
const dnsTTL = 5

// dnsAnswer builds the answer to query with golang.org/x/net/dns/dnsmessage;
// false for a packet to drop (malformed, a response, not one question).
func dnsAnswer(query []byte, a netip.Addr) ([]byte, bool) {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil || h.Response {
		return nil, false
	}
	qs, err := p.AllQuestions()
	if err != nil || len(qs) != 1 {
		return nil, false
	}
	q := qs[0]
	resp := dnsmessage.Header{ID: h.ID, Response: true, OpCode: h.OpCode, Authoritative: true,
		RecursionDesired: h.RecursionDesired, RecursionAvailable: true}
	if h.OpCode != 0 {
		resp.RCode = dnsmessage.RCodeNotImplemented
	}
	b := dnsmessage.NewBuilder(make([]byte, 0, 512), resp)
	b.EnableCompression()
	if b.StartQuestions() != nil || b.Question(q) != nil {
		return nil, false
	}
	if h.OpCode == 0 && q.Type == dnsmessage.TypeA && q.Class == dnsmessage.ClassINET && a.Is4() {
		if b.StartAnswers() != nil {
			return nil, false
		}
		rh := dnsmessage.ResourceHeader{Name: q.Name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: dnsTTL}
		if b.AResource(rh, dnsmessage.AResource{A: a.As4()}) != nil {
			return nil, false
		}
	}
	out, err := b.Finish()
	return out, err == nil
}
