package container

import (
	"errors"
	"strings"
	"testing"
)

func TestLookupInstanceType(t *testing.T) {
	for _, tc := range []struct {
		name      string
		canonical string
		nanoCPUs  int64
		memory    int64
	}{
		{"lite", "lite", 62_500_000, 256 << 20},
		{"dev", "lite", 62_500_000, 256 << 20},
		{"basic", "basic", 250_000_000, 1 << 30},
		{"standard", "standard-1", 500_000_000, 4 << 30},
		{"standard-2", "standard-2", 1_000_000_000, 6 << 30},
		{"standard-3", "standard-3", 2_000_000_000, 8 << 30},
		{"standard-4", "standard-4", 4_000_000_000, 12 << 30},
	} {
		it, err := LookupInstanceType(tc.name)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		l := it.Limits()
		if it.Name != tc.canonical || l.NanoCPUs != tc.nanoCPUs || l.MemoryBytes != tc.memory || l.Pids <= 0 {
			t.Errorf("%s = %+v, limits %+v; want %s, %d nano-CPUs, %d bytes", tc.name, it, l, tc.canonical, tc.nanoCPUs, tc.memory)
		}
	}
	if l := mustType(t, "lite").Limits(); l.DiskBytes != 2_000_000_000 {
		t.Errorf("lite disk = %d, want 2 GB", l.DiskBytes)
	}
}

func mustType(t *testing.T, name string) InstanceType {
	t.Helper()
	it, err := LookupInstanceType(name)
	if err != nil {
		t.Fatal(err)
	}
	return it
}

func TestLookupInstanceTypeUnknown(t *testing.T) {
	_, err := LookupInstanceType("huge")
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `"huge"`) || !strings.Contains(err.Error(), "standard-4") {
		t.Fatalf("err = %v, want ErrInvalid naming the type and the valid ones", err)
	}
}

func TestCustomInstanceType(t *testing.T) {
	it, err := CustomInstanceType(1.5, 3072, 10000)
	if err != nil {
		t.Fatal(err)
	}
	if l := it.Limits(); l.NanoCPUs != 1_500_000_000 || l.MemoryBytes != 3072<<20 || l.DiskBytes != 10_000_000_000 {
		t.Fatalf("limits = %+v", l)
	}
	for _, bad := range []struct {
		vcpu     float64
		mem, dsk int64
		field    string
	}{{0, 1024, 0, "vcpu"}, {5, 1024, 0, "vcpu"}, {1, 0, 0, "memory_mib"}, {1, 20000, 0, "memory_mib"}, {1, 1024, 30000, "disk_mb"}} {
		_, err := CustomInstanceType(bad.vcpu, bad.mem, bad.dsk)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), bad.field) {
			t.Errorf("%+v: err = %v, want ErrInvalid naming %s", bad, err, bad.field)
		}
	}
}

func TestSentinelClasses(t *testing.T) {
	if !errors.Is(ErrExecutableNotFound, ErrNotFound) || !errors.Is(ErrImageNotFound, ErrNotFound) {
		t.Fatal("specific not-found sentinels must unwrap to ErrNotFound")
	}
	if errors.Is(ErrNotRunning, ErrNotFound) {
		t.Fatal("ErrNotRunning is not a not-found error")
	}
}
