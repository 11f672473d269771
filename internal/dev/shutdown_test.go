package dev

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// socketWorker echoes on WebSockets two ways: /ws is accepted by the Worker
// itself, /room/<name> by a Durable Object, the Worker passing the object's
// socket back to the client.
const socketWorker = `
import { DurableObject } from "cloudflare:workers";
function echo(tag) {
  const [client, server] = Object.values(new WebSocketPair());
  server.accept();
  server.addEventListener("message", (ev) => server.send(ev.data));
  server.addEventListener("close", (ev) => console.log(tag, "closed", ev.code, ev.reason));
  return new Response(null, { status: 101, webSocket: client });
}
export class Room extends DurableObject {
  fetch() { return echo("room"); }
}
export default {
  fetch(req, env) {
    const url = new URL(req.url);
    if (url.pathname.startsWith("/room/")) return env.ROOMS.getByName(url.pathname.slice(6)).fetch(req);
    return echo("worker");
  },
};
`

// TestShutdownClosesWebSockets: berth dev stops promptly with WebSockets
// open, telling their clients 1001 (going away) and their scripts too.
func TestShutdownClosesWebSockets(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "index.js"), socketWorker)
	writeFile(t, filepath.Join(dir, "wrangler.jsonc"), `{"name": "sockets", "main": "index.js",
		"durable_objects": {"bindings": [{"name": "ROOMS", "class_name": "Room"}]},
		"migrations": [{"tag": "v1", "new_sqlite_classes": ["Room"]}]}`)
	logs := &syncBuffer{}
	url, stop := runDev(t, Options{Dir: dir, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	wsURL := "ws" + strings.TrimPrefix(url, "http")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	type ended struct {
		path string
		err  error
	}
	closed := make(chan ended, 2)
	for _, path := range []string{"/ws", "/room/lobby"} {
		c, _, err := websocket.Dial(ctx, wsURL+path, nil)
		if err != nil {
			t.Fatalf("dial %s: %v", path, err)
		}
		defer c.CloseNow()
		if err := c.Write(ctx, websocket.MessageText, []byte("hi")); err != nil {
			t.Fatal(err)
		}
		if _, msg, err := c.Read(ctx); err != nil || string(msg) != "hi" {
			t.Fatalf("echo on %s: %q, %v", path, msg, err)
		}
		// A client keeps reading, as browsers do, and so answers the close.
		go func() {
			_, _, err := c.Read(ctx)
			closed <- ended{path, err}
		}()
	}

	start := time.Now()
	stop()
	took := time.Since(start)
	if took > 2*time.Second {
		t.Errorf("berth dev took %s to stop with two WebSockets open, want under 2 s", took.Round(time.Millisecond))
	}
	for range 2 {
		e := <-closed
		if code := websocket.CloseStatus(e.err); code != websocket.StatusGoingAway {
			t.Errorf("%s ended with %v (status %d), want 1001 going away", e.path, e.err, code)
		}
	}
	for _, want := range []string{`worker closed 1001 going away`, `room closed 1001 going away`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the script did not log %q:\n%s", want, logs)
		}
	}
}
