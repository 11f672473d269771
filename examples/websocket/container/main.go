// Command app is the container of the websocket example: a WebSocket echo
// server. Every message that arrives on /ws/… is sent back unchanged, text
// as text and binary as binary.
package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"log"
	"net"
	"net/http"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"
)

const maxMessage = 1 << 20

func main() {
	boot := rand.Text()[:12]
	var conns atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"boot": boot, "connections": conns.Load()})
	})
	mux.HandleFunc("GET /ws/", func(w http.ResponseWriter, r *http.Request) {
		// Only the Worker reaches this port, and it forwards the client's
		// Origin unchanged while the Host it sends is its own: checking one
		// against the other here would refuse every browser.
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
		if err != nil {
			log.Printf("websocket: accept: %v", err)
			return
		}
		conns.Add(1)
		defer conns.Add(-1)
		c.SetReadLimit(maxMessage)
		if err := echo(r.Context(), c); err != nil && websocket.CloseStatus(err) == -1 {
			log.Printf("websocket: %v", err)
		}
	})
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// Shutdown does not end hijacked connections; deriving every request
	// from ctx closes open WebSockets on SIGTERM too.
	srv := &http.Server{
		Addr:              ":8080",
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	log.Printf("websocket: listening on %s", srv.Addr)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}

// echo sends every message back until the peer closes.
func echo(ctx context.Context, c *websocket.Conn) error {
	defer c.CloseNow()
	for {
		typ, data, err := c.Read(ctx)
		if err != nil {
			return err
		}
		if err := c.Write(ctx, typ, data); err != nil {
			return err
		}
	}
}
