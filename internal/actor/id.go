package actor

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/berth-dev/berth/internal/storage"
)

// An id is 32 bytes, shown as 64 lowercase hex digits as on Cloudflare:
// a 16-byte body (derived from a name, or random) followed by a 16-byte
// MAC of the body under the namespace's key. The MAC makes ids
// self-authenticating: IDFromString rejects a forged id, or one of another
// namespace, without looking anything up, so a Worker cannot reach an
// object its namespace never handed out.
const (
	idBodyLen = 16
	idMACLen  = 16
	idLen     = idBodyLen + idMACLen
	// SecretLen is the length of the per-state-directory secret.
	SecretLen = 32
)

// Namespace is the id space of one Durable Object class. Every binding to
// the class shares it (Cloudflare keys namespaces by class, not binding).
// Its key is derived from the state directory's secret and the class's
// identity, so ids are stable across restarts and differ between classes.
// The identity is the name the class was first created with: a class
// renamed by a migration keeps its ids and its storage, as on Cloudflare.
// A Namespace is immutable and safe for concurrent use.
type Namespace struct {
	class    string
	identity string
	nameKey  []byte // derives bodies from names
	macKey   []byte // authenticates bodies
	random   io.Reader
}

// NewNamespace returns the namespace of a class that was never renamed: its
// name is its identity (see NewNamespaceWithIdentity).
func NewNamespace(secret []byte, class string, random io.Reader) (*Namespace, error) {
	return NewNamespaceWithIdentity(secret, class, class, random)
}

// NewNamespaceWithIdentity returns the namespace of class, whose ids and
// storage are keyed by identity (config.ClassIdentity). secret is the
// state directory's secret (LoadSecret); random feeds NewUniqueID (nil:
// crypto/rand). The identity doubles as the storage namespace, so it must
// be a valid storage.ObjectKey namespace (JS identifiers with '$' are not).
func NewNamespaceWithIdentity(secret []byte, class, identity string, random io.Reader) (*Namespace, error) {
	if len(secret) < SecretLen {
		return nil, fmt.Errorf("namespace %q: secret of %d bytes, want %d: %w", class, len(secret), SecretLen, ErrInvalid)
	}
	if class == "" {
		return nil, fmt.Errorf("namespace of identity %q: empty class name: %w", identity, ErrInvalid)
	}
	if err := (storage.ObjectKey{Namespace: identity, ID: "x"}).Validate(); err != nil {
		if identity == class {
			return nil, fmt.Errorf("durable object class %q: %w", class, err)
		}
		return nil, fmt.Errorf("durable object class %q, identity %q: %w", class, identity, err)
	}
	if random == nil {
		random = rand.Reader
	}
	nsKey := mac(secret, []byte("berth durable object namespace v1\x00"+identity))
	return &Namespace{
		class:    class,
		identity: identity,
		nameKey:  mac(nsKey, []byte("name")),
		macKey:   mac(nsKey, []byte("mac")),
		random:   random,
	}, nil
}

func mac(key, msg []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(msg)
	return m.Sum(nil)
}

// Class is the Durable Object class the namespace belongs to now: the
// exported JS class its objects are instances of.
func (n *Namespace) Class() string { return n.class }

// Identity is the name the class was first created with; it keys the ids
// and is the Namespace of the objects' storage.ObjectKey.
func (n *Namespace) Identity() string { return n.identity }

// IDFromName returns the id for name (idFromName): the same for the same
// name in the same namespace, on every run against the same state
// directory. The id remembers name (id.name in JS).
func (n *Namespace) IDFromName(name string) ID {
	var raw [idLen]byte
	copy(raw[:idBodyLen], mac(n.nameKey, []byte(name)))
	n.seal(&raw)
	return ID{ns: n, raw: raw, name: name, named: true}
}

// NewUniqueID returns a fresh random id (newUniqueId). It fails only when
// the random source does.
func (n *Namespace) NewUniqueID() (ID, error) {
	var raw [idLen]byte
	if _, err := io.ReadFull(n.random, raw[:idBodyLen]); err != nil {
		return ID{}, fmt.Errorf("new unique id in namespace %q: %w", n.class, err)
	}
	n.seal(&raw)
	return ID{ns: n, raw: raw}, nil
}

// IDFromString parses the 64-hex-digit form of an id (idFromString). A
// malformed string, or an id minted by another namespace or another state
// directory, fails with an error wrapping ErrInvalid. Upper-case hex is
// accepted; String always gives lower case.
func (n *Namespace) IDFromString(s string) (ID, error) {
	var raw [idLen]byte
	if len(s) != 2*idLen {
		return ID{}, fmt.Errorf("invalid durable object id %q: want %d hex digits, have %d characters: %w", s, 2*idLen, len(s), ErrInvalid)
	}
	if _, err := hex.Decode(raw[:], []byte(s)); err != nil {
		return ID{}, fmt.Errorf("invalid durable object id %q: want %d hex digits: %w", s, 2*idLen, ErrInvalid)
	}
	want := mac(n.macKey, raw[:idBodyLen])[:idMACLen]
	if !hmac.Equal(want, raw[idBodyLen:]) {
		return ID{}, fmt.Errorf("durable object id %q does not belong to namespace %q: %w", s, n.class, ErrInvalid)
	}
	return ID{ns: n, raw: raw}, nil
}

func (n *Namespace) seal(raw *[idLen]byte) {
	copy(raw[idBodyLen:], mac(n.macKey, raw[:idBodyLen])[:idMACLen])
}

// ID names one Durable Object of a namespace. The zero ID names nothing.
// IDs are small values: compare them with Equal, not ==, since ==
// also compares the remembered name.
type ID struct {
	ns    *Namespace
	raw   [idLen]byte
	name  string
	named bool
}

// String is the id as 64 lowercase hex digits (id.toString()).
func (id ID) String() string { return hex.EncodeToString(id.raw[:]) }

// Name is the name the id was derived from (id.name); ok is false for ids
// from NewUniqueID or IDFromString, whose name is undefined in JS.
func (id ID) Name() (name string, ok bool) { return id.name, id.named }

// Namespace is the namespace that minted the id; nil for the zero ID.
func (id ID) Namespace() *Namespace { return id.ns }

// IsZero reports whether id is the zero ID.
func (id ID) IsZero() bool { return id.ns == nil }

// Equal reports whether both ids name the same object (id.equals()).
func (id ID) Equal(other ID) bool { return id.ns == other.ns && id.raw == other.raw }

// Key is the object's storage key.
func (id ID) Key() storage.ObjectKey {
	if id.ns == nil {
		return storage.ObjectKey{}
	}
	return storage.ObjectKey{Namespace: id.ns.identity, ID: id.String()}
}

// secretFile is the secret's name inside the state directory.
const secretFile = "secret"

// LoadSecret returns the secret of the state directory dir (e.g. .berth),
// kept in dir/secret as hex, mode 0600. The first call creates it (and
// dir) from random (nil: crypto/rand); processes racing to create it end
// up with the same one. Losing the file changes every id: objects named by
// idFromName get new ids and old ids stop parsing.
func LoadSecret(dir string, random io.Reader) ([]byte, error) {
	path := filepath.Join(dir, secretFile)
	secret, err := readSecret(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return secret, err
	}
	if random == nil {
		random = rand.Reader
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create secret: %w", err)
	}
	fresh := make([]byte, SecretLen)
	if _, err := io.ReadFull(random, fresh); err != nil {
		return nil, fmt.Errorf("create secret %s: %w", path, err)
	}
	// Write a temporary file and link it into place: the link either
	// creates a complete file or fails because another process won.
	tmp, err := os.CreateTemp(dir, ".secret-*")
	if err != nil {
		return nil, fmt.Errorf("create secret: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.WriteString(hex.EncodeToString(fresh) + "\n")
	if err == nil {
		err = tmp.Chmod(0o600)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("create secret %s: %w", path, err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return readSecret(path)
		}
		return nil, fmt.Errorf("create secret %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return fresh, nil
}

func readSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("read secret: %w", err)
	}
	secret, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(secret) < SecretLen {
		return nil, fmt.Errorf("secret %s: want %d hex digits; remove the file to make a new one (every durable object id changes): %w", path, 2*SecretLen, ErrInvalid)
	}
	return secret, nil
}
