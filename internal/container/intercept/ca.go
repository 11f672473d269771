// Package intercept is the runtime-neutral half of outbound interception
// (container.Egress): the CA that signs intercepted HTTPS, the DNS responder
// that makes every name resolve, and the Server that takes captured
// connections apart into requests for the rules' handlers. How connections
// get captured is each runtime's business: container/docker redirects them
// inside the container's network namespace, container/fake hands them over
// in memory.
package intercept

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// CA files in a CA directory.
const (
	CACertFile = "ca.crt" // PEM certificate, world-readable: containers mount it
	CAKeyFile  = "ca.key" // PEM PKCS#8 private key, owner-only
)

// Leaf certificates live a week and are minted again a day before they end.
const (
	leafLifetime = 7 * 24 * time.Hour
	leafRenew    = 24 * time.Hour
	// leafCacheMax bounds the cache of minted leaves; a full cache starts
	// over rather than grow without end.
	leafCacheMax = 4096
)

// CA is the certificate authority that signs intercepted HTTPS. Containers
// trust it through its certificate file (container.EgressCAPath); each
// server name gets a leaf certificate minted on first use and cached. All
// methods are safe for concurrent use.
type CA struct {
	cert     *x509.Certificate
	key      crypto.Signer
	certPEM  []byte
	certFile string
	now      func() time.Time

	// leafKey is the key of every leaf: minting then costs one signature,
	// not a key generation.
	leafKey *ecdsa.PrivateKey

	mu     sync.Mutex
	leaves map[string]*tls.Certificate
}

// LoadCA loads the CA in dir, creating it (and dir, owner-only) when dir has
// none. A state directory keeps one CA, so that containers started by an
// earlier run keep trusting it.
func LoadCA(dir string) (*CA, error) {
	certPath, keyPath := filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)
	certPEM, cerr := os.ReadFile(certPath)
	keyPEM, kerr := os.ReadFile(keyPath)
	if errors.Is(cerr, os.ErrNotExist) && errors.Is(kerr, os.ErrNotExist) {
		return createCA(dir)
	}
	if err := errors.Join(cerr, kerr); err != nil {
		return nil, fmt.Errorf("load egress CA in %s: %w", dir, err)
	}
	ca, err := parseCA(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("load egress CA in %s: %w", dir, err)
	}
	ca.certFile = certPath
	return ca, nil
}

func createCA(dir string) (*CA, error) {
	certPEM, keyPEM, err := newCAPEM(time.Now())
	if err != nil {
		return nil, fmt.Errorf("create egress CA: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create egress CA: %w", err)
	}
	// The key goes first and the certificate last, each renamed into
	// place, so that a crash leaves no certificate without its key.
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{{CAKeyFile, keyPEM, 0o600}, {CACertFile, certPEM, 0o644}} {
		tmp := filepath.Join(dir, "."+f.name+".tmp")
		if err := os.WriteFile(tmp, f.data, f.mode); err != nil {
			return nil, fmt.Errorf("create egress CA: %w", err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, f.name)); err != nil {
			return nil, fmt.Errorf("create egress CA: %w", err)
		}
	}
	ca, err := parseCA(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	ca.certFile = filepath.Join(dir, CACertFile)
	return ca, nil
}

// NewCA returns a CA that lives in memory only (CertFile is empty); the fake
// runtime and tests use it.
func NewCA() (*CA, error) {
	certPEM, keyPEM, err := newCAPEM(time.Now())
	if err != nil {
		return nil, fmt.Errorf("create egress CA: %w", err)
	}
	return parseCA(certPEM, keyPEM)
}

func newCAPEM(now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	host, _ := os.Hostname()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "berth egress CA", Organization: []string{"berth"}, OrganizationalUnit: []string{host}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

func parseCA(certPEM, keyPEM []byte) (*CA, error) {
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, errors.New("egress CA: not PEM")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("egress CA certificate: %w", err)
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("egress CA key: %w", err)
	}
	key, ok := k.(crypto.Signer)
	if !ok || !cert.IsCA {
		return nil, errors.New("egress CA: not a CA certificate with a signing key")
	}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	return &CA{cert: cert, key: key, certPEM: certPEM, now: time.Now, leafKey: leafKey, leaves: map[string]*tls.Certificate{}}, nil
}

// PEM is the CA certificate, which containers trust.
func (ca *CA) PEM() []byte { return ca.certPEM }

// CertFile is the path of the CA certificate on this host; empty for a CA
// that lives in memory only.
func (ca *CA) CertFile() string { return ca.certFile }

// Certificate returns a certificate for name (a hostname, or an IP for a
// client that sent no server name), signed by the CA.
func (ca *CA) Certificate(name string) (*tls.Certificate, error) {
	now := ca.now()
	ca.mu.Lock()
	defer ca.mu.Unlock()
	if c := ca.leaves[name]; c != nil && now.Add(leafRenew).Before(c.Leaf.NotAfter) {
		return c, nil
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(leafLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if ip, err := netip.ParseAddr(name); err == nil {
		tmpl.IPAddresses = append(tmpl.IPAddresses, ip.AsSlice())
	} else {
		tmpl.DNSNames = []string{name}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &ca.leafKey.PublicKey, ca.key)
	if err != nil {
		return nil, fmt.Errorf("issue a certificate for %q: %w", name, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	c := &tls.Certificate{Certificate: [][]byte{der, ca.cert.Raw}, PrivateKey: ca.leafKey, Leaf: leaf}
	if len(ca.leaves) >= leafCacheMax {
		clear(ca.leaves)
	}
	ca.leaves[name] = c
	return c, nil
}
