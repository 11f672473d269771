package intercept

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
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

const (
	dnsTypeA   = 1
	dnsClassIN = 1
	dnsTTL     = 5
)

// dnsAnswer builds the answer to query (RFC 1035 §4.1).
func dnsAnswer(query []byte, a netip.Addr) ([]byte, bool) {
	if len(query) < 12 {
		return nil, false
	}
	flags := binary.BigEndian.Uint16(query[2:])
	if flags&0x8000 != 0 || binary.BigEndian.Uint16(query[4:]) != 1 {
		return nil, false // a response, or not exactly one question
	}
	// The question: labels up to the root, then type and class.
	i := 12
	for {
		if i >= len(query) {
			return nil, false
		}
		l := int(query[i])
		if l == 0 {
			i++
			break
		}
		if l&0xc0 != 0 {
			return nil, false // compression has no place in a question
		}
		i += 1 + l
	}
	if i+4 > len(query) {
		return nil, false
	}
	qtype, qclass := binary.BigEndian.Uint16(query[i:]), binary.BigEndian.Uint16(query[i+2:])
	question := query[12 : i+4]

	opcode := flags >> 11 & 0xf
	rcode := uint16(0)
	answer := opcode == 0 && qtype == dnsTypeA && qclass == dnsClassIN && a.Is4()
	if opcode != 0 {
		rcode = 4 // NOTIMP
	}
	resp := make([]byte, 12, 12+len(question)+16)
	copy(resp, query[:2]) // id
	// QR, the opcode, AA, RD as asked, RA.
	binary.BigEndian.PutUint16(resp[2:], 0x8000|opcode<<11|0x0400|flags&0x0100|0x0080|rcode)
	binary.BigEndian.PutUint16(resp[4:], 1)
	if answer {
		binary.BigEndian.PutUint16(resp[6:], 1)
	}
	resp = append(resp, question...)
	if answer {
		ip := a.As4()
		resp = append(resp, 0xc0, 12) // the name: a pointer to the question's
		resp = binary.BigEndian.AppendUint16(resp, dnsTypeA)
		resp = binary.BigEndian.AppendUint16(resp, dnsClassIN)
		resp = binary.BigEndian.AppendUint32(resp, dnsTTL)
		resp = binary.BigEndian.AppendUint16(resp, 4)
		resp = append(resp, ip[:]...)
	}
	return resp, true
}
