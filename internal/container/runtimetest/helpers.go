package runtimetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/container"
	"github.com/berth-dev/berth/internal/container/testapp"
	"github.com/berth-dev/berth/internal/testutil"
)

// Generous bounds: a loaded machine and a real engine are slow, and a
// bound only matters when something is broken.
const (
	opTimeout     = 60 * time.Second
	listenTimeout = 30 * time.Second
	pollInterval  = 20 * time.Millisecond
	serverPort    = 8080
)

// labelRun marks everything one Run creates, so that its final sweep finds
// what a failed Start may have left behind.
const labelRun = "berth.test.run"

type suite struct {
	rt    container.Runtime
	h     Harness
	runID string
	tag   string
	image container.Image
	// buildProgress is what the image build wrote to BuildSpec.Progress.
	buildProgress string
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func opContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	t.Cleanup(cancel)
	return ctx
}

// imageDockerfile is the image every container of the suite runs.
const imageDockerfile = `# berth conformance image
FROM scratch
ARG GREETING=greeting-from-default
ENV GREETING=${GREETING} \
    TESTAPP_IMAGE=berth-runtimetest
LABEL berth.test=1 berth.test.dockerfile=yes
COPY testapp /testapp
WORKDIR /srv/app
WORKDIR /
EXPOSE 8080
ENTRYPOINT ["/testapp"]
`

// buildArg is the value the suite passes for ARG GREETING.
const buildArg = "greeting-from-build-arg"

// contextDir makes a build context holding the testapp binary and a
// Dockerfile with the given text.
func (s *suite) contextDir(t testing.TB, dockerfile string) string {
	t.Helper()
	dir := t.TempDir()
	bin, err := os.ReadFile(s.h.TestAppBinary)
	if err != nil {
		t.Fatalf("read the testapp binary: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "testapp"), bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if dockerfile != "" {
		if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// start starts a container from spec (the suite image unless it names
// one), labelled as the suite's, and destroys it when t ends.
func (s *suite) start(t testing.TB, spec container.Spec) container.Instance {
	t.Helper()
	inst, err := s.rt.Start(opContext(t), s.prepare(spec))
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	s.destroyAtEnd(t, inst.ID)
	return inst
}

func (s *suite) prepare(spec container.Spec) container.Spec {
	if spec.Image == "" {
		spec.Image = s.tag
	}
	labels := map[string]string{container.LabelTest: "1", labelRun: s.runID}
	for k, v := range spec.Labels {
		labels[k] = v
	}
	spec.Labels = labels
	return spec
}

func (s *suite) destroyAtEnd(t testing.TB, id string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		if err := s.rt.Destroy(ctx, id); err != nil {
			t.Errorf("cleanup: destroy %s: %v", id, err)
		}
	})
}

// startServer starts testapp's server and waits until port 8080 accepts.
func (s *suite) startServer(t testing.TB, spec container.Spec) container.Instance {
	t.Helper()
	inst := s.start(t, spec)
	s.waitListening(t, inst.ID, serverPort)
	return inst
}

// waitListening polls Dial until the port accepts: Start does not wait for
// ports, so this is part of a container's lifecycle, not a test sleep.
func (s *suite) waitListening(t testing.TB, id string, port int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), listenTimeout)
	defer cancel()
	var last error
	for {
		conn, err := s.rt.Dial(ctx, id, port)
		if err == nil {
			conn.Close()
			return
		}
		if !errors.Is(err, container.ErrPortNotListening) {
			t.Fatalf("Dial port %d while waiting for it to listen: %v", port, err)
		}
		last = err
		select {
		case <-ctx.Done():
			t.Fatalf("port %d of %s did not listen within %s: %v", port, id, listenTimeout, last)
		case <-time.After(pollInterval):
		}
	}
}

// client is an HTTP client whose connections go through Runtime.Dial.
func (s *suite) client(id string) *http.Client {
	return &http.Client{
		Timeout: opTimeout,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
				_, portText, err := net.SplitHostPort(addr)
				if err != nil {
					return nil, err
				}
				port, err := strconv.Atoi(portText)
				if err != nil {
					return nil, err
				}
				return s.rt.Dial(ctx, id, port)
			},
		},
	}
}

// get does a GET on the server in container id and returns the body; any
// status but 200 fails t.
func (s *suite) get(t testing.TB, id, pathAndQuery string) string {
	t.Helper()
	resp, err := s.client(id).Get(fmt.Sprintf("http://container:%d%s", serverPort, pathAndQuery))
	if err != nil {
		t.Fatalf("GET %s: %v", pathAndQuery, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", pathAndQuery, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", pathAndQuery, resp.Status, body)
	}
	return string(body)
}

func (s *suite) echo(t testing.TB, id string) testapp.EchoReply {
	t.Helper()
	var reply testapp.EchoReply
	body := s.get(t, id, "/echo?probe=1")
	if err := json.Unmarshal([]byte(body), &reply); err != nil {
		t.Fatalf("/echo answered %q: %v", body, err)
	}
	return reply
}

// logs collects the container's log lines without following.
func (s *suite) logs(t testing.TB, id string, opts container.LogOptions) []container.LogLine {
	t.Helper()
	opts.Follow = false
	var lines []container.LogLine
	for line, err := range s.rt.Logs(opContext(t), id, opts) {
		if err != nil {
			t.Fatalf("Logs: %v", err)
		}
		lines = append(lines, line)
	}
	return lines
}

// waitLog polls Logs until a line with text appears on stream and returns
// it. Engines may hand a line to their log store a little after the write.
func (s *suite) waitLog(t testing.TB, id string, stream container.Stream, text string) container.LogLine {
	t.Helper()
	deadline := time.Now().Add(listenTimeout)
	for {
		lines := s.logs(t, id, container.LogOptions{})
		for _, l := range lines {
			if l.Text == text {
				if l.Stream != stream {
					t.Fatalf("log line %q came on %s, want %s", text, l.Stream, stream)
				}
				return l
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line %q on %s within %s; have %v", text, stream, listenTimeout, texts(lines))
		}
		time.Sleep(pollInterval)
	}
}

func texts(lines []container.LogLine) []string {
	var out []string
	for _, l := range lines {
		out = append(out, fmt.Sprintf("%s:%q", l.Stream, l.Text))
	}
	return out
}

func (s *suite) wait(t testing.TB, id string) container.Exit {
	t.Helper()
	exit, err := s.rt.Wait(opContext(t), id)
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	return exit
}

// wantErr fails t unless err wraps target and its text mentions each of
// mentions.
func wantErr(t testing.TB, what string, err, target error, mentions ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: got no error, want one wrapping %q", what, target)
	}
	if !errors.Is(err, target) {
		t.Fatalf("%s: got %q, want an error wrapping %q", what, err, target)
	}
	for _, m := range mentions {
		if !strings.Contains(err.Error(), m) {
			t.Fatalf("%s: error %q does not mention %q", what, err, m)
		}
	}
}

// waitEvent reads events until one matches or the time is up.
func waitEvent(t testing.TB, events <-chan container.Event, what string, match func(container.Event) bool) container.Event {
	t.Helper()
	timeout := time.After(opTimeout)
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("events channel closed before %s", what)
			}
			if match(ev) {
				return ev
			}
		case <-timeout:
			t.Fatalf("no %s event within %s", what, opTimeout)
		}
	}
}

type syncBuffer = testutil.SyncBuffer

// waitOutput polls buf until it contains text.
func waitOutput(t testing.TB, buf *syncBuffer, text string) {
	t.Helper()
	deadline := time.Now().Add(listenTimeout)
	for !strings.Contains(buf.String(), text) {
		if time.Now().After(deadline) {
			t.Fatalf("output %q does not contain %q after %s", buf.String(), text, listenTimeout)
		}
		time.Sleep(pollInterval)
	}
}

type execResult struct {
	stdout, stderr string
	code           int
}

func (s *suite) exec(t testing.TB, id string, spec container.ExecSpec) execResult {
	t.Helper()
	var stdout, stderr syncBuffer
	spec.Stdout, spec.Stderr = &stdout, &stderr
	proc, err := s.rt.Exec(opContext(t), id, spec)
	if err != nil {
		t.Fatalf("Exec %v: %v", spec.Cmd, err)
	}
	code, err := proc.Wait(opContext(t))
	if err != nil {
		t.Fatalf("Exec %v: Wait: %v", spec.Cmd, err)
	}
	return execResult{stdout: stdout.String(), stderr: stderr.String(), code: code}
}
