package testutil

import "testing"

var egressInit = &staticBinary{pkg: "./cmd/berth-egress-init", name: "berth-egress-init"}

// BuildEgressInit compiles the static berth-egress-init (cmd/berth-egress-
// init, CGO_ENABLED=0), the start gate of outbound interception, once per
// test process, as BuildTestApp builds the testapp, and returns the
// binary's path.
func BuildEgressInit(t testing.TB) string {
	t.Helper()
	return egressInit.get(t)
}
