package worker

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

const wsWorker = `
export default {
  async fetch(req: Request) {
    if (req.headers.get("Upgrade") !== "websocket") return new Response("expected a websocket", { status: 426 });
    const [client, server] = Object.values(new WebSocketPair());
    server.accept();
    server.send("hello from the worker");
    server.addEventListener("message", (ev: MessageEvent) => {
      console.log("got", typeof ev.data === "string" ? ev.data : "binary " + ev.data.byteLength);
      if (typeof ev.data !== "string") { server.send(new Uint8Array(ev.data).reverse()); return; }
      if (ev.data === "close-me") { server.close(4001, "as you wish"); return; }
      if (ev.data === "later") { setTimeout(() => console.log("timer after message"), 1); return; }
      server.send("echo:" + ev.data);
    });
    server.addEventListener("close", (ev: CloseEvent) => console.log("closed", ev.code, ev.reason, ev.wasClean, server.readyState));
    return new Response(null, { status: 101, webSocket: client, headers: { "x-worker": "yes" } });
  },
};`

func wsURL(httpURL string) string { return "ws" + strings.TrimPrefix(httpURL, "http") }

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func readText(t *testing.T, ctx context.Context, c *websocket.Conn) (websocket.MessageType, string) {
	t.Helper()
	typ, b, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return typ, string(b)
}

func TestWebSocketInbound(t *testing.T) {
	w, logs := newWorker(t, wsWorker, Config{})
	srv := httptest.NewServer(w)
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	c, resp, err := websocket.Dial(ctx, wsURL(srv.URL)+"/chat", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if resp.StatusCode != 101 || resp.Header.Get("X-Worker") != "yes" {
		t.Fatalf("handshake: %d %v", resp.StatusCode, resp.Header)
	}
	if _, s := readText(t, ctx, c); s != "hello from the worker" {
		t.Fatalf("first message %q", s)
	}
	if err := c.Write(ctx, websocket.MessageText, []byte("ping")); err != nil {
		t.Fatal(err)
	}
	if typ, s := readText(t, ctx, c); typ != websocket.MessageText || s != "echo:ping" {
		t.Fatalf("echo: %v %q", typ, s)
	}
	if err := c.Write(ctx, websocket.MessageBinary, []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	if typ, s := readText(t, ctx, c); typ != websocket.MessageBinary || s != "\x03\x02\x01" {
		t.Fatalf("binary: %v %q", typ, s)
	}
	if err := c.Write(ctx, websocket.MessageText, []byte("later")); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(4000, "bye"); err != nil {
		t.Fatalf("close: %v", err)
	}
	waitFor(t, "the close event", func() bool { return strings.Contains(logs.String(), "closed 4000 bye true 3") })
	waitFor(t, "the timer", func() bool { return strings.Contains(logs.String(), "timer after message") })
	// Message events, and timers they start, log under the request that
	// opened the socket.
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		if strings.Contains(line, "source=console") && !strings.Contains(line, "request=1") {
			t.Errorf("console line not tagged with request 1: %s", line)
		}
	}

	// The Worker closes.
	c2, _, err := websocket.Dial(ctx, wsURL(srv.URL), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.CloseNow()
	readText(t, ctx, c2)
	if err := c2.Write(ctx, websocket.MessageText, []byte("close-me")); err != nil {
		t.Fatal(err)
	}
	_, _, err = c2.Read(ctx)
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != 4001 || ce.Reason != "as you wish" {
		t.Fatalf("worker close: %v", err)
	}
	waitFor(t, "the worker's close event", func() bool { return strings.Contains(logs.String(), "closed 4001 as you wish true 3") })

	// A plain request gets the Worker's ordinary answer.
	r, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != 426 {
		t.Fatalf("plain GET: %d", r.StatusCode)
	}
}

// A Worker answering 101 to a request that is no upgrade: the client gets
// the library's refusal, the Worker's end a close event with 1006.
func TestWebSocketUpgradeRefused(t *testing.T) {
	w, logs := newWorker(t, `
export default {
  fetch() {
    const [client, server] = Object.values(new WebSocketPair());
    server.accept();
    server.addEventListener("close", (ev) => console.log("closed", ev.code, ev.wasClean));
    server.addEventListener("error", () => console.log("error event"));
    return new Response(null, { status: 101, webSocket: client });
  },
};`, Config{})
	srv := httptest.NewServer(w)
	t.Cleanup(srv.Close)
	r, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode/100 != 4 {
		t.Fatalf("status %d", r.StatusCode)
	}
	waitFor(t, "close 1006", func() bool {
		return strings.Contains(logs.String(), "closed 1006 false") && strings.Contains(logs.String(), "error event")
	})
}

func TestWebSocketPairInJS(t *testing.T) {
	w, _ := newWorker(t, `
export default {
  async fetch() {
    const pair = new WebSocketPair();
    const [a, b] = [pair[0], pair[1]];
    const got: string[] = [];
    b.addEventListener("message", (ev) => { got.push("b:" + ev.data); b.send("re:" + ev.data); });
    a.addEventListener("message", (ev) => got.push("a:" + ev.data));
    const closed = new Promise((r) => a.addEventListener("close", (ev) => { got.push("a closed " + ev.code + " " + a.readyState + " " + b.readyState); r(null); }));
    a.accept();
    a.send("queued before b accepts");
    let threw = "";
    try { new WebSocketPair()[0].send("x"); } catch (e) { threw = e.message; }
    b.accept();
    await new Promise((r) => setTimeout(r, 1));
    b.close(3001, "done");
    await closed;
    return new Response(got.join("|") + "|" + threw);
  },
};`, Config{})
	rec := do(t, w, "GET", "http://x/", nil)
	want := "b:queued before b accepts|a:re:queued before b accepts|a closed 3001 3 3|You must call accept() on this WebSocket before sending messages."
	if rec.Body.String() != want {
		t.Fatalf("got  %q\nwant %q", rec.Body.String(), want)
	}
}

// echoServer is a Go WebSocket server on 127.0.0.1 that echoes messages,
// reports the handshake's headers in its first message and the close code it
// saw on closed.
func echoServer(t *testing.T) (url string, closed chan string) {
	closed = make(chan string, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/refuse" {
			http.Error(w, "no sockets here", http.StatusForbidden)
			return
		}
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{"chat.v1"}})
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(1 << 20)
		ctx := r.Context()
		_ = c.Write(ctx, websocket.MessageText, []byte("hello token="+r.Header.Get("X-Token")+" proto="+c.Subprotocol()))
		for {
			typ, b, err := c.Read(ctx)
			if err != nil {
				code, reason, _ := closeInfo(err)
				closed <- strings.TrimSpace(strings.Join([]string{strconv.Itoa(code), reason}, " "))
				return
			}
			if string(b) == "hang up" {
				c.Close(4002, "server hung up")
				closed <- "server closed"
				return
			}
			if err := c.Write(ctx, typ, b); err != nil {
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL, closed
}

func TestWebSocketOutbound(t *testing.T) {
	echo, closed := echoServer(t)
	w, _ := newWorker(t, `
export default {
  async fetch(req: Request, env: { ECHO: string }) {
    const path = new URL(req.url).pathname;
    if (path === "/refused") {
      const r = await fetch(env.ECHO + "/refuse", { headers: { Upgrade: "websocket" } });
      return new Response(r.status + " " + (r.webSocket === null) + " " + (await r.text()).trim());
    }
    const res = await fetch(env.ECHO + "/ws", { headers: { Upgrade: "websocket", "X-Token": "t0k", "Sec-WebSocket-Protocol": "chat.v1" } });
    const ws = res.webSocket!;
    if (path === "/proxy") return res; // unaccepted: Go proxies the client to it
    ws.accept();
    const got: string[] = [String(res.status), ws.protocol];
    const done = new Promise((resolve) => {
      ws.addEventListener("message", (ev) => {
        got.push(typeof ev.data === "string" ? ev.data : "bytes:" + new Uint8Array(ev.data).join(","));
        if (got.length === 3) ws.send(new Uint8Array([9, 8]));
        if (got.length === 4) ws.send("hang up");
      });
      ws.addEventListener("close", (ev) => { got.push("close " + ev.code + " " + ev.reason); resolve(null); });
    });
    ws.send("one");
    await done;
    return new Response(got.join("|"));
  },
};`, Config{Vars: map[string]any{"ECHO": echo}})

	rec := do(t, w, "GET", "http://x/client", nil)
	want := "101|chat.v1|hello token=t0k proto=chat.v1|one|bytes:9,8|close 4002 server hung up"
	if rec.Body.String() != want {
		t.Fatalf("got  %q\nwant %q", rec.Body.String(), want)
	}
	if got := <-closed; got != "server closed" {
		t.Fatalf("echo server: %q", got)
	}
	if rec := do(t, w, "GET", "http://x/refused", nil); rec.Body.String() != "403 true no sockets here" {
		t.Fatalf("refused: %q", rec.Body.String())
	}

	// The proxy: a client's WebSocket through the Worker to the echo server.
	srv := httptest.NewServer(w)
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, wsURL(srv.URL)+"/proxy", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	c.SetReadLimit(1 << 20)
	if resp.StatusCode != 101 {
		t.Fatalf("proxy handshake: %d", resp.StatusCode)
	}
	if _, s := readText(t, ctx, c); s != "hello token=t0k proto=chat.v1" {
		t.Fatalf("proxy hello: %q", s)
	}
	big := strings.Repeat("x", 200<<10)
	for _, msg := range []string{"through", big} {
		if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		if _, s := readText(t, ctx, c); s != msg {
			t.Fatalf("proxied echo: %d bytes, want %d", len(s), len(msg))
		}
	}
	if err := c.Close(4003, "client done"); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-closed:
		if got != "4003 client done" {
			t.Fatalf("echo server saw %q", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the echo server never saw the close")
	}
}
