package actor

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
)

var hex64 = regexp.MustCompile(`^[0-9a-f]{64}$`)

func mustNamespace(t *testing.T, secret []byte, class string) *Namespace {
	t.Helper()
	ns, err := NewNamespace(secret, class, nil)
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

func TestIDFromNameIsDeterministicPerNamespace(t *testing.T) {
	a := mustNamespace(t, testSecret(), "Counter")
	a2 := mustNamespace(t, testSecret(), "Counter") // after a restart
	b := mustNamespace(t, testSecret(), "Chat")
	other := mustNamespace(t, bytes.Repeat([]byte{8}, SecretLen), "Counter")

	id := a.IDFromName("foo")
	if !hex64.MatchString(id.String()) {
		t.Fatalf("id %q is not 64 lowercase hex digits", id)
	}
	if got := a2.IDFromName("foo"); got.String() != id.String() {
		t.Fatalf("same namespace, same name: %s then %s", id, got)
	}
	if a.IDFromName("bar").String() == id.String() {
		t.Fatal("different names gave the same id")
	}
	if b.IDFromName("foo").String() == id.String() {
		t.Fatal("different classes gave the same id")
	}
	if other.IDFromName("foo").String() == id.String() {
		t.Fatal("different secrets gave the same id")
	}
	if name, ok := id.Name(); !ok || name != "foo" {
		t.Fatalf("Name() = %q, %v", name, ok)
	}
	if !id.Equal(a.IDFromName("foo")) || id.Equal(a.IDFromName("bar")) {
		t.Fatal("Equal is wrong")
	}
	if k := id.Key(); k.Namespace != "Counter" || k.ID != id.String() || k.Validate() != nil {
		t.Fatalf("Key() = %+v", k)
	}
}

func TestNewUniqueIDUsesInjectedRandomness(t *testing.T) {
	random := bytes.NewReader(append(bytes.Repeat([]byte{1}, 16), bytes.Repeat([]byte{2}, 16)...))
	ns, err := NewNamespace(testSecret(), "Counter", random)
	if err != nil {
		t.Fatal(err)
	}
	x, err := ns.NewUniqueID()
	if err != nil {
		t.Fatal(err)
	}
	y, err := ns.NewUniqueID()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(x.String(), strings.Repeat("01", 16)) || !strings.HasPrefix(y.String(), strings.Repeat("02", 16)) {
		t.Fatalf("ids %s, %s do not start with the random bytes", x, y)
	}
	if x.Equal(y) {
		t.Fatal("two unique ids are equal")
	}
	if _, ok := x.Name(); ok {
		t.Fatal("unique id has a name")
	}
	if _, err := ns.NewUniqueID(); err == nil {
		t.Fatal("exhausted random source: no error")
	}
	back, err := ns.IDFromString(x.String())
	if err != nil || !back.Equal(x) {
		t.Fatalf("round trip: %v, %v", back, err)
	}
}

func TestIDFromString(t *testing.T) {
	ns := mustNamespace(t, testSecret(), "Counter")
	chat := mustNamespace(t, testSecret(), "Chat")
	id := ns.IDFromName("foo")

	got, err := ns.IDFromString(strings.ToUpper(id.String()))
	if err != nil || !got.Equal(id) || got.String() != id.String() {
		t.Fatalf("upper case: %v, %v", got, err)
	}
	if _, ok := got.Name(); ok {
		t.Fatal("an id from a string has a name")
	}

	flipped := []byte(id.String())
	if flipped[3] == '0' {
		flipped[3] = '1'
	} else {
		flipped[3] = '0'
	}
	for _, tc := range []struct{ name, in, want string }{
		{"empty", "", "want 64 hex digits"},
		{"short", id.String()[:63], "have 63 characters"},
		{"not hex", "z" + id.String()[1:], "want 64 hex digits"},
		{"forged", string(flipped), `does not belong to namespace "Counter"`},
		{"other namespace", chat.IDFromName("foo").String(), `does not belong to namespace "Counter"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ns.IDFromString(tc.in)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrInvalid containing %q", err, tc.want)
			}
		})
	}
}

func TestNewNamespaceRejectsBadInput(t *testing.T) {
	if _, err := NewNamespace([]byte("short"), "Counter", nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("short secret: %v", err)
	}
	_, err := NewNamespace(testSecret(), "My$Class", nil)
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `"My$Class"`) {
		t.Fatalf("class with $: %v", err)
	}
}

func TestLoadSecretCreatesOnceAndKeeps(t *testing.T) {
	dir := filepath.Join(t.TempDir(), ".berth")
	var wg sync.WaitGroup
	secrets := make([][]byte, 8)
	errs := make([]error, 8)
	for i := range secrets {
		wg.Go(func() { secrets[i], errs[i] = LoadSecret(dir, nil) })
	}
	wg.Wait()
	for i := range secrets {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if len(secrets[i]) != SecretLen || !bytes.Equal(secrets[i], secrets[0]) {
			t.Fatalf("racing loads disagree: %x vs %x", secrets[i], secrets[0])
		}
	}
	fi, err := os.Stat(filepath.Join(dir, "secret"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("secret mode %v, want 0600", fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("state dir holds %d entries, want only the secret", len(entries))
	}
	again, err := LoadSecret(dir, nil)
	if err != nil || !bytes.Equal(again, secrets[0]) {
		t.Fatalf("reload: %x, %v", again, err)
	}
	// Ids survive a restart because the secret does.
	before := mustNamespace(t, secrets[0], "Counter").IDFromName("x")
	after := mustNamespace(t, again, "Counter").IDFromName("x")
	if before.String() != after.String() {
		t.Fatal("id changed across reload")
	}

	if err := os.WriteFile(filepath.Join(dir, "secret"), []byte("nothex\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = LoadSecret(dir, nil)
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), filepath.Join(dir, "secret")) {
		t.Fatalf("corrupt secret: %v", err)
	}
}
