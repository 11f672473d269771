package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// execResult is the answer of the sandbox example's exec route.
type execResult struct {
	Stdout    string `json:"stdout"`
	Stderr    string `json:"stderr"`
	ExitCode  int    `json:"exit_code"`
	TimedOut  bool   `json:"timed_out"`
	Truncated bool   `json:"truncated"`
	Run       int    `json:"run"`
}

// TestExampleSandbox drives examples/sandbox (what `make run` serves): shell
// code posted per session runs in that session's own container, which keeps
// its files between runs and not across sessions, under a deadline.
func TestExampleSandbox(t *testing.T) {
	app := copyExample(t, "sandbox")
	p := app.start(t)
	exec := func(session, code string, query string) execResult {
		t.Helper()
		var res execResult
		callJSON(t, http.MethodPost, p.url+"/sessions/"+session+"/exec"+query, []byte(code), http.StatusOK, &res)
		return res
	}

	res := exec("alice", "echo hello; echo oops >&2; exit 3", "")
	if res.Stdout != "hello\n" || res.Stderr != "oops\n" || res.ExitCode != 3 || res.TimedOut {
		t.Fatalf("exec = %+v, want stdout hello, stderr oops, exit code 3", res)
	}
	if res = exec("alice", "echo remembered > note.txt; for i in 1 2 3; do printf $i; done", ""); res.Stdout != "123" || res.ExitCode != 0 {
		t.Fatalf("second exec = %+v, want stdout 123", res)
	}
	if res = exec("alice", "cat note.txt; ls", ""); res.Stdout != "remembered\nnote.txt\n" || res.Run != 3 {
		t.Fatalf("third exec = %+v, want the file written before, in the same container (run 3)", res)
	}
	// Another session is another container: no note.txt there.
	if res = exec("bob", "cat note.txt", ""); res.ExitCode != 1 || !strings.Contains(res.Stderr, "no such file") || res.Run != 1 {
		t.Fatalf("bob's exec = %+v, want exit code 1 and no such file, in a fresh container", res)
	}
	if got := running(app.containers(t)); len(got) != 2 {
		t.Fatalf("running containers = %d, want 2 (alice, bob): %+v", len(got), got)
	}

	// The deadline ends a sleep and a busy loop alike.
	start := time.Now()
	if res = exec("alice", "sleep 30", "?timeout_ms=300"); !res.TimedOut || res.ExitCode != 124 {
		t.Fatalf("sleep past the deadline = %+v, want timed_out and exit code 124", res)
	}
	if res = exec("alice", "while true; do :; done", "?timeout_ms=300"); !res.TimedOut || res.ExitCode != 124 {
		t.Fatalf("busy loop past the deadline = %+v, want timed_out and exit code 124", res)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("two runs with a 300 ms deadline took %s", d)
	}
	// JSON bodies pass through as they are, stdin included.
	status, body := call(t, http.MethodPost, p.url+"/sessions/alice/exec", "application/json",
		[]byte(`{"command": "read line; echo got $line", "stdin": "abc\n"}`))
	if status != http.StatusOK || !strings.Contains(string(body), `"stdout":"got abc\n"`) {
		t.Fatalf("JSON exec = %d %s, want stdout got abc", status, body)
	}

	// Bad input gets a clear error.
	if status, body := call(t, http.MethodPost, p.url+"/sessions/bad%20id/exec", "", []byte("true")); status != http.StatusBadRequest || !strings.Contains(string(body), "session id") {
		t.Fatalf("bad session id = %d %q, want 400 naming the session id", status, body)
	}
	if status, body := call(t, http.MethodPost, p.url+"/sessions/alice/exec", "", []byte("if then fi")); status != http.StatusBadRequest || !strings.Contains(string(body), "command") {
		t.Fatalf("code that does not parse = %d %q, want 400", status, body)
	}

	var state struct {
		Status string `json:"status"`
	}
	callJSON(t, http.MethodGet, p.url+"/sessions/alice", nil, http.StatusOK, &state)
	if state.Status != "healthy" && state.Status != "running" {
		t.Fatalf("alice's state = %+v, want healthy or running", state)
	}
	if status, body := call(t, http.MethodDelete, p.url+"/sessions/bob", "", nil); status != http.StatusNoContent {
		t.Fatalf("DELETE bob = %d %q, want 204", status, body)
	}
	eventually(t, 15*time.Second, "bob's container still runs after DELETE", func() bool { return len(running(app.containers(t))) == 1 })
	app.stopAndCheckGone(t, p)
}

// TestExampleStateless drives examples/stateless: getRandom spreads requests
// over at most three containers, and a pinned name always reaches its own.
func TestExampleStateless(t *testing.T) {
	app := copyExample(t, "stateless")
	p := app.start(t)
	type answer struct {
		Instance string `json:"instance"`
		Boot     string `json:"boot"`
		Served   int    `json:"served"`
		Path     string `json:"path"`
	}
	seen := map[string]int{}
	const requests = 30
	for i := range requests {
		var a answer
		callJSON(t, http.MethodGet, fmt.Sprintf("%s/r/%d", p.url, i), nil, http.StatusOK, &a)
		if a.Instance == "" || a.Path != fmt.Sprintf("/r/%d", i) {
			t.Fatalf("request %d = %+v", i, a)
		}
		seen[a.Instance]++
	}
	// With three instances, 30 requests all landing on one has odds of
	// 3^-29.
	if len(seen) < 2 || len(seen) > 3 {
		t.Fatalf("%d requests reached %d instances (%v), want 2 or 3", requests, len(seen), seen)
	}
	if got := running(app.containers(t)); len(got) != len(seen) {
		t.Fatalf("running containers = %d, want one per instance seen (%d)", len(got), len(seen))
	}

	var first, second answer
	callJSON(t, http.MethodGet, p.url+"/instance/pinned/a", nil, http.StatusOK, &first)
	callJSON(t, http.MethodGet, p.url+"/instance/pinned/b", nil, http.StatusOK, &second)
	if first.Instance != second.Instance || first.Boot != second.Boot || second.Served != first.Served+1 {
		t.Fatalf("pinned requests = %+v then %+v, want the same container twice", first, second)
	}
	if _, ok := seen[first.Instance]; ok {
		t.Fatalf("the pinned name reached %s, one of the random instances", first.Instance)
	}
	app.stopAndCheckGone(t, p)
}

// TestExampleStateRestore drives examples/state-restore: the object saves
// the container's state before stopping it and restores it into the next
// container, also after berth itself restarts.
func TestExampleStateRestore(t *testing.T) {
	app := copyExample(t, "state-restore")
	p := app.start(t)
	type info struct {
		Boot string `json:"boot"`
		Keys int    `json:"keys"`
	}
	type value struct {
		Value string `json:"value"`
		Boot  string `json:"boot"`
	}
	callJSON(t, http.MethodPut, p.url+"/alice/kv/colour", []byte("blue"), http.StatusOK, nil)
	callJSON(t, http.MethodPut, p.url+"/alice/kv/size", []byte("42"), http.StatusOK, nil)
	var before info
	callJSON(t, http.MethodGet, p.url+"/alice", nil, http.StatusOK, &before)
	if before.Keys != 2 || before.Boot == "" {
		t.Fatalf("GET /alice = %+v, want 2 keys", before)
	}

	var saved struct {
		Saved bool `json:"saved"`
		Keys  int  `json:"keys"`
	}
	callJSON(t, http.MethodPost, p.url+"/alice/stop", nil, http.StatusOK, &saved)
	if !saved.Saved || saved.Keys != 2 {
		t.Fatalf("POST /alice/stop = %+v, want saved with 2 keys", saved)
	}
	if got := running(app.containers(t)); len(got) != 0 {
		t.Fatalf("after stop, running containers = %+v, want none", got)
	}

	var v value
	callJSON(t, http.MethodGet, p.url+"/alice/kv/colour", nil, http.StatusOK, &v)
	if v.Value != "blue" || v.Boot == before.Boot {
		t.Fatalf("GET colour after the restart = %+v, want blue from a new container (not boot %s)", v, before.Boot)
	}
	callJSON(t, http.MethodGet, p.url+"/alice/kv/size", nil, http.StatusOK, &v)
	if v.Value != "42" {
		t.Fatalf("GET size after the restart = %+v, want 42", v)
	}
	var snap struct {
		State struct {
			Values map[string]string `json:"values"`
		} `json:"state"`
	}
	callJSON(t, http.MethodGet, p.url+"/alice/snapshot", nil, http.StatusOK, &snap)
	if snap.State.Values["colour"] != "blue" || len(snap.State.Values) != 2 {
		t.Fatalf("snapshot = %+v", snap)
	}
	// Another name has its own, empty state.
	if status, body := call(t, http.MethodGet, p.url+"/bob/kv/colour", "", nil); status != http.StatusNotFound {
		t.Fatalf("bob's colour = %d %q, want 404", status, body)
	}

	// A save outlives berth: the snapshot is in the object's storage.
	callJSON(t, http.MethodPut, p.url+"/alice/kv/colour", []byte("green"), http.StatusOK, nil)
	callJSON(t, http.MethodPost, p.url+"/alice/save", nil, http.StatusOK, &saved)
	if !saved.Saved {
		t.Fatalf("POST /alice/save = %+v", saved)
	}
	app.stopAndCheckGone(t, p)

	p = app.start(t)
	callJSON(t, http.MethodGet, p.url+"/alice/kv/colour", nil, http.StatusOK, &v)
	if v.Value != "green" {
		t.Fatalf("GET colour after berth restarted = %+v, want green", v)
	}
	app.stopAndCheckGone(t, p)
}

// TestExampleWebSocket drives examples/websocket: client → Worker → object
// → container echo server and back, per room.
func TestExampleWebSocket(t *testing.T) {
	app := copyExample(t, "websocket")
	p := app.start(t)
	wsURL := "ws" + strings.TrimPrefix(p.url, "http")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dial := func(room string) *websocket.Conn {
		t.Helper()
		c, resp, err := websocket.Dial(ctx, wsURL+"/ws/"+room, nil)
		if err != nil {
			status := 0
			if resp != nil {
				status = resp.StatusCode
			}
			t.Fatalf("dial room %s: %v (status %d)", room, err, status)
		}
		t.Cleanup(func() { c.CloseNow() })
		c.SetReadLimit(1 << 20)
		return c
	}
	roundTrip := func(c *websocket.Conn, typ websocket.MessageType, msg []byte) {
		t.Helper()
		if err := c.Write(ctx, typ, msg); err != nil {
			t.Fatalf("write: %v", err)
		}
		gotType, got, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if gotType != typ || !bytes.Equal(got, msg) {
			t.Fatalf("echo = %v %d bytes %.40q, want %v %d bytes %.40q", gotType, len(got), got, typ, len(msg), msg)
		}
	}

	c1 := dial("lobby")
	roundTrip(c1, websocket.MessageText, []byte("hello"))
	roundTrip(c1, websocket.MessageBinary, []byte{0, 1, 2, 255})
	roundTrip(c1, websocket.MessageText, bytes.Repeat([]byte("0123456789abcdef"), 4096)) // 64 KiB
	c2 := dial("lobby")
	roundTrip(c2, websocket.MessageText, []byte("second"))

	type info struct {
		Boot        string `json:"boot"`
		Connections int    `json:"connections"`
	}
	var lobby, other info
	callJSON(t, http.MethodGet, p.url+"/info/lobby", nil, http.StatusOK, &lobby)
	if lobby.Connections != 2 {
		t.Fatalf("lobby = %+v, want both connections in one container", lobby)
	}
	c3 := dial("other")
	roundTrip(c3, websocket.MessageText, []byte("elsewhere"))
	callJSON(t, http.MethodGet, p.url+"/info/other", nil, http.StatusOK, &other)
	if other.Boot == lobby.Boot || other.Connections != 1 {
		t.Fatalf("room other = %+v, lobby = %+v: want its own container", other, lobby)
	}

	if err := c2.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Fatalf("close: %v", err)
	}
	eventually(t, 10*time.Second, "the container still counts the closed connection", func() bool {
		var now info
		callJSON(t, http.MethodGet, p.url+"/info/lobby", nil, http.StatusOK, &now)
		return now.Connections == 1
	})
	if status, body := call(t, http.MethodGet, p.url+"/ws/lobby", "", nil); status != http.StatusUpgradeRequired {
		t.Fatalf("GET without upgrade = %d %q, want 426", status, body)
	}
	if got := running(app.containers(t)); len(got) != 2 {
		t.Fatalf("running containers = %d, want 2 (lobby, other)", len(got))
	}

	// Stopping berth with sockets open ends them promptly, telling the
	// clients 1001 (going away), and leaves nothing behind. The clients
	// keep reading, as browsers do, and so answer the close.
	readCtx, cancelRead := context.WithTimeout(ctx, 10*time.Second)
	defer cancelRead()
	ended := make(chan error, 2)
	for _, c := range []*websocket.Conn{c1, c3} {
		go func() {
			_, _, err := c.Read(readCtx)
			ended <- err
		}()
	}
	start := time.Now()
	app.stopAndCheckGone(t, p)
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("berth took %s to exit with WebSockets open, want under 3 s", took.Round(time.Millisecond))
	}
	for range 2 {
		if err := <-ended; websocket.CloseStatus(err) != websocket.StatusGoingAway {
			t.Errorf("an open socket ended with %v after berth stopped, want 1001 going away", err)
		}
	}
}

// TestExampleFromItsDirectory runs `berth dev` the way a user in the
// project directory does, with no DIR argument: the Dockerfile and
// image_build_context are relative to the config there too.
func TestExampleFromItsDirectory(t *testing.T) {
	app := copyExample(t, "stateless")
	p := startBerth(t, app.dir, "dev", "--port", "0")
	var a struct {
		Instance string `json:"instance"`
	}
	callJSON(t, http.MethodGet, p.url+"/instance/here", nil, http.StatusOK, &a)
	if a.Instance == "" {
		t.Fatalf("GET /instance/here answered no instance")
	}
	app.stopAndCheckGone(t, p)
}
