package docker

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/berth-dev/berth/internal/container"
	"github.com/berth-dev/berth/internal/testutil"
)

var testLabels = map[string]string{container.LabelTest: "1"}

// newTestRuntime returns a Runtime on the local engine, closed and swept of
// everything labelled berth.test=1 that the test made when it ends.
func newTestRuntime(t testing.TB, opts Options) *Runtime {
	t.Helper()
	testutil.RequireDocker(t)
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(testWriter{t}, nil))
	}
	if opts.EgressInit == "" {
		opts.EgressInit = testutil.BuildEgressInit(t)
	}
	if opts.InternetNetwork == "" {
		// A network of the test's own, so that nothing is left behind.
		opts.InternetNetwork = "berth-test-internet-" + randomSuffix()
	}
	rt, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	// Registered first so that it runs last, after the containers are gone.
	t.Cleanup(func() {
		defer rt.Close()
		_, err := rt.api.NetworkRemove(context.Background(), opts.InternetNetwork, client.NetworkRemoveOptions{})
		if err != nil && !cerrdefs.IsNotFound(err) {
			t.Errorf("remove network %s: %v", opts.InternetNetwork, err)
		}
	})
	return rt
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

func randomSuffix() string {
	b := make([]byte, 4)
	rand.Read(b)
	return hex.EncodeToString(b)
}

var appImage struct {
	mu  sync.Mutex
	ref string
}

// testAppImage builds (once per test process) a FROM scratch image around
// the testapp binary, with the binary at /bin/testapp as entrypoint. Tests
// share it, so TestMain removes it rather than a t.Cleanup.
func testAppImage(t testing.TB, rt *Runtime) string {
	t.Helper()
	appImage.mu.Lock()
	defer appImage.mu.Unlock()
	if appImage.ref != "" {
		return appImage.ref
	}
	bin := testutil.BuildTestApp(t)
	dir := t.TempDir()
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "testapp"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	df := "FROM scratch\nCOPY testapp /bin/testapp\nEXPOSE 8080\nENTRYPOINT [\"/bin/testapp\"]\n"
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df), 0o644); err != nil {
		t.Fatal(err)
	}
	ref := "berth-test/dockerdriver:" + randomSuffix()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := rt.Build(ctx, container.BuildSpec{ContextDir: dir, Tag: ref, Labels: testLabels}); err != nil {
		t.Fatalf("build test image: %v", err)
	}
	appImage.ref = ref
	return ref
}

func TestMain(m *testing.M) {
	code := m.Run()
	if appImage.ref != "" {
		if api, err := client.New(client.FromEnv); err == nil {
			api.ImageRemove(context.Background(), appImage.ref, client.ImageRemoveOptions{Force: true, PruneChildren: true})
			api.Close()
		}
	}
	os.Exit(code)
}

// startApp starts the testapp server and registers its destruction.
func startApp(t testing.TB, rt *Runtime, spec container.Spec) container.Instance {
	t.Helper()
	if spec.Image == "" {
		spec.Image = testAppImage(t, rt)
	}
	labels := map[string]string{container.LabelTest: "1"}
	for k, v := range spec.Labels {
		labels[k] = v
	}
	spec.Labels = labels
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	inst, err := rt.Start(ctx, spec)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := rt.Destroy(ctx, inst.ID); err != nil {
			t.Errorf("Destroy: %v", err)
		}
	})
	return inst
}

// getThroughDial sends GET path to port inside the container over Dial and
// returns the status and body.
func getThroughDial(ctx context.Context, rt *Runtime, id string, port int, path string) (int, string, error) {
	conn, err := rt.Dial(ctx, id, port)
	if err != nil {
		return 0, "", err
	}
	defer conn.Close()
	return testutil.GetOverConn(ctx, conn, path)
}

// waitHTTP dials until the container answers 200 on path.
func waitHTTP(ctx context.Context, rt *Runtime, id string, port int, path string) error {
	var last error
	for {
		code, _, err := getThroughDial(ctx, rt, id, port, path)
		if err == nil && code == http.StatusOK {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("status %d", code)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("no answer: %w (last: %v)", ctx.Err(), last)
		case <-time.After(time.Millisecond):
		}
	}
}
