package docker

import (
	"testing"

	"github.com/berth-dev/berth/internal/container/runtimetest"
	"github.com/berth-dev/berth/internal/testutil"
)

// TestConformance runs the container.Runtime contract suite against the
// real engine.
func TestConformance(t *testing.T) {
	rt := newTestRuntime(t, Options{})
	runtimetest.Run(t, runtimetest.Harness{Runtime: rt, TestAppBinary: testutil.BuildTestApp(t)})
}
