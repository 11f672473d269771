package fake_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/berth-dev/berth/internal/container/fake"
	"github.com/berth-dev/berth/internal/container/runtimetest"
	"github.com/berth-dev/berth/internal/container/testapp"
)

func newRuntime(opts fake.Options) *fake.Runtime {
	if opts.Programs == nil {
		opts.Programs = map[string]fake.Program{"/testapp": testapp.Main}
	}
	return fake.New(opts)
}

// The fake runs testapp.Main for /testapp, so the binary the suite COPYs
// only has to exist.
func dummyBinary(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "testapp")
	if err := os.WriteFile(p, []byte("not a real binary: the fake runs testapp.Main\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConformance(t *testing.T) {
	runtimetest.Run(t, runtimetest.Harness{Runtime: newRuntime(fake.Options{}), TestAppBinary: dummyBinary(t)})
}
