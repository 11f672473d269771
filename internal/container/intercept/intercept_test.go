package intercept

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/container"
)

func TestDNSAnswer(t *testing.T) {
	query := func(qtype uint16) []byte {
		q := []byte{0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0}
		for _, l := range []string{"example", "com"} {
			q = append(q, byte(len(l)))
			q = append(q, l...)
		}
		q = append(q, 0)
		q = binary.BigEndian.AppendUint16(q, qtype)
		return binary.BigEndian.AppendUint16(q, 1)
	}
	resp, ok := dnsAnswer(query(1), FakeIP)
	if !ok {
		t.Fatal("no answer to an A query")
	}
	if resp[0] != 0xab || resp[1] != 0xcd || resp[2]&0x80 == 0 || resp[3]&0x0f != 0 {
		t.Errorf("header %x: want the query's id, QR set, NOERROR", resp[:4])
	}
	if an := binary.BigEndian.Uint16(resp[6:]); an != 1 {
		t.Errorf("%d answers, want 1", an)
	}
	if got := netip.AddrFrom4([4]byte(resp[len(resp)-4:])); got != FakeIP {
		t.Errorf("A record %s, want %s", got, FakeIP)
	}
	resp, ok = dnsAnswer(query(28), FakeIP) // AAAA
	if !ok || binary.BigEndian.Uint16(resp[6:]) != 0 || resp[3]&0x0f != 0 {
		t.Errorf("AAAA: %x, want NOERROR without answers", resp)
	}
	if _, ok := dnsAnswer([]byte{1, 2, 3}, FakeIP); ok {
		t.Error("answered a truncated packet")
	}
}

func TestLoadCA(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "egress-ca")
	ca, err := LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(filepath.Join(dir, CAKeyFile)); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v %v, want mode 0600", st, err)
	}
	again, err := LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if string(again.PEM()) != string(ca.PEM()) || again.CertFile() != filepath.Join(dir, CACertFile) {
		t.Error("a second load made another CA")
	}
	leaf, err := again.Certificate("svc.example")
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.PEM())
	if _, err := leaf.Leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "svc.example"}); err != nil {
		t.Errorf("leaf does not verify against the CA: %v", err)
	}
	if c2, _ := again.Certificate("svc.example"); c2 != leaf {
		t.Error("the leaf was minted again instead of cached")
	}
}

// TestServer drives a Server over in-memory connections: a rule's request,
// a blocked one, TLS with and without a rule, and the loopback probe.
func TestServer(t *testing.T) {
	ca, err := NewCA()
	if err != nil {
		t.Fatal(err)
	}
	table := new(container.Egress)
	for _, tls := range []bool{false, true} {
		r, err := container.ParseEgressRule("example.com", tls, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			info, _ := container.EgressInfoFrom(r.Context())
			io.WriteString(w, r.URL.String()+" sni="+info.SNI)
		}))
		if err != nil {
			t.Fatal(err)
		}
		table.Add(r)
	}
	srv := &Server{Egress: table, CA: ca, SniffTimeout: 200 * time.Millisecond}
	defer srv.Close()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.PEM())
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool},
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			c, s := net.Pipe()
			_, port, _ := net.SplitHostPort(addr)
			go srv.ServeConn(s, netip.MustParseAddrPort(FakeIP.String()+":"+port))
			return c, nil
		},
		ForceAttemptHTTP2: false,
	}}
	get := func(u string) (int, string, error) {
		resp, err := client.Get(u)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}
	if code, body, err := get("http://example.com/p?q=1"); err != nil || code != 200 || body != "http://example.com/p?q=1 sni=" {
		t.Errorf("plain: %d %q %v", code, body, err)
	}
	if code, body, err := get("http://other.example/"); err != nil || code != 520 || body != "Origin is disallowed" {
		t.Errorf("blocked: %d %q %v", code, body, err)
	}
	if code, body, err := get("https://example.com/s"); err != nil || code != 200 || body != "https://example.com/s sni=example.com" {
		t.Errorf("TLS: %d %q %v", code, body, err)
	}
	if _, _, err := get("https://other.example/"); err == nil {
		t.Errorf("TLS no rule selects: no error")
	}
	// The start gate's probe: a loopback destination is closed at once.
	c, s := net.Pipe()
	go srv.ServeConn(s, netip.MustParseAddrPort("127.0.0.1:15001"))
	c.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || strings.Contains(err.Error(), "timeout") {
		t.Errorf("loopback probe: %v, want the connection closed", err)
	}
}
