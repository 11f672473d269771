// Command app is the container of the state-restore example: a key-value
// store held only in memory. Its whole state can be read (GET /state) and
// replaced (PUT /state), which is what lets the Durable Object in front of
// it carry the state across container restarts.
package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"log"
	"maps"
	"net/http"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

const maxBody = 1 << 20

// state is the store's whole content; it is also the JSON of GET/PUT /state.
type state struct {
	Values map[string]string `json:"values"`
}

type store struct {
	mu     sync.Mutex
	values map[string]string
}

func main() {
	boot := rand.Text()[:12]
	started := time.Now()
	s := &store{values: map[string]string{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		n := len(s.values)
		s.mu.Unlock()
		writeJSON(w, http.StatusOK, map[string]any{"boot": boot, "started": started.UnixMilli(), "keys": n})
	})
	mux.HandleFunc("GET /state", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		st := state{Values: maps.Clone(s.values)}
		s.mu.Unlock()
		writeJSON(w, http.StatusOK, st)
	})
	mux.HandleFunc("PUT /state", func(w http.ResponseWriter, r *http.Request) {
		var st state
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody)).Decode(&st); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "body: want {\"values\": {…}}: " + err.Error()})
			return
		}
		if st.Values == nil {
			st.Values = map[string]string{}
		}
		s.mu.Lock()
		s.values = st.Values
		s.mu.Unlock()
		writeJSON(w, http.StatusOK, map[string]any{"keys": len(st.Values)})
	})
	mux.HandleFunc("GET /kv/{key}", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		v, ok := s.values[r.PathValue("key")]
		s.mu.Unlock()
		if !ok {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such key", "boot": boot})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"value": v, "boot": boot})
	})
	mux.HandleFunc("PUT /kv/{key}", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		s.mu.Lock()
		s.values[r.PathValue("key")] = string(body)
		s.mu.Unlock()
		writeJSON(w, http.StatusOK, map[string]string{"boot": boot})
	})
	srv := &http.Server{Addr: ":8080", Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	log.Printf("state-restore: listening on %s", srv.Addr)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
