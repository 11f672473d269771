package testapp

import (
	"os"
	"path/filepath"
	"testing"
)

func TestHasDefaultRoute(t *testing.T) {
	const header = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
	for _, tc := range []struct {
		name, table string
		want        bool
	}{
		{"default up", header + "eth0\t00000000\t010011AC\t0003\t0\t0\t0\t00000000\t0\t0\t0\n", true},
		{"default down", header + "eth0\t00000000\t010011AC\t0002\t0\t0\t0\t00000000\t0\t0\t0\n", false},
		{"subnet only", header + "eth0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n", false},
		{"empty", header, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "route")
			if err := os.WriteFile(p, []byte(tc.table), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := hasDefaultRoute(p)
			if err != nil || got != tc.want {
				t.Fatalf("hasDefaultRoute = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
	if _, err := hasDefaultRoute(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("a missing route table gave no error")
	}
}
