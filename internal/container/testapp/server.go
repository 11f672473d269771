package testapp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/coder/websocket"
)

func (p *program) serve(ctx context.Context, args []string) int {
	ports := strings.Split(p.envOr("PORTS", "8080"), ",")
	exitCode := make(chan int, 1)
	mux := http.NewServeMux()
	p.routes(mux, args, exitCode)
	p.outboundRoutes(ctx, mux) // before listening: see $FETCH_AT_BOOT
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ctl := &control{crash: make(chan int, 1)}
	if p.env["REQUEST_LOG"] == "1" {
		ctl.log = &requestLog{}
		srv.Handler = ctl.log.wrap(mux)
		srv.ConnContext = ctl.log.connContext
	}
	listen := func(port string) (net.Listener, error) {
		ln, err := p.sys.Listen("tcp", ":"+port)
		if err == nil && ctl.log != nil {
			ln = &taggedListener{Listener: ln, port: port}
		}
		return ln, err
	}
	ctl.listen = func(port string) error {
		ln, err := listen(port)
		if err != nil {
			return err
		}
		go func() { _ = srv.Serve(ln) }()
		p.stdout.println("testapp listening on :" + port)
		return nil
	}
	p.faultRoutes(mux, ctl)

	var listeners []net.Listener
	for _, port := range ports {
		port = strings.TrimSpace(port)
		ln, err := listen(port)
		if err != nil {
			p.stderr.println(fmt.Sprintf("testapp: listen on port %q: %v", port, err))
			for _, l := range listeners {
				l.Close()
			}
			return 1
		}
		listeners = append(listeners, ln)
	}
	for _, ln := range listeners {
		go func() { _ = srv.Serve(ln) }()
	}
	for _, port := range ports {
		p.stdout.println("testapp listening on :" + strings.TrimSpace(port))
	}
	p.stderr.println(fmt.Sprintf("testapp serving on %d port(s)", len(ports)))

	termExit, err := strconv.Atoi(p.envOr("TERM_EXIT_CODE", "0"))
	if err != nil {
		p.stderr.println(fmt.Sprintf("testapp: TERM_EXIT_CODE %q is not a number, using 0", p.env["TERM_EXIT_CODE"]))
	}
	for {
		select {
		case <-ctx.Done():
			srv.Close()
			return 1
		case code := <-exitCode:
			shutdown(srv)
			return code
		case code := <-ctl.crash:
			srv.Close()
			return code
		case sig := <-p.sys.Signals():
			if !isTerm(sig) {
				continue
			}
			p.stdout.println("testapp got " + signalName(sig))
			if p.env["IGNORE_TERM"] == "1" {
				continue
			}
			shutdown(srv)
			return termExit
		}
	}
}

// shutdown lets answers in flight (such as /exit's) reach the client, but
// does not wait for long ones.
func shutdown(srv *http.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if srv.Shutdown(ctx) != nil {
		srv.Close()
	}
}

func (p *program) envOr(key, def string) string {
	if v, ok := p.env[key]; ok && v != "" {
		return v
	}
	return def
}

// handler is an HTTP handler that returns its error; serveHTTP turns errors
// into responses in one place.
type handler func(w http.ResponseWriter, r *http.Request) error

func (h handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := h(w, r); err != nil {
		status := http.StatusInternalServerError
		if errors.Is(err, errBadRequest) {
			status = http.StatusBadRequest
		}
		http.Error(w, err.Error(), status)
	}
}

// EchoReply is the JSON body /echo answers with.
type EchoReply struct {
	Method   string              `json:"method"`
	Path     string              `json:"path"`
	Query    map[string][]string `json:"query"`
	Headers  map[string][]string `json:"headers"`
	Body     string              `json:"body"`
	Env      map[string]string   `json:"env"`
	Args     []string            `json:"args"`
	Hostname string              `json:"hostname"`
}

func (p *program) routes(mux *http.ServeMux, args []string, exitCode chan<- int) {
	mux.Handle("/echo", handler(func(w http.ResponseWriter, r *http.Request) error {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return fmt.Errorf("read body: %w", err)
		}
		host, _ := p.sys.Hostname()
		return writeJSON(w, EchoReply{
			Method: r.Method, Path: r.URL.Path, Query: r.URL.Query(), Headers: r.Header,
			Body: string(body), Env: envMap(p.sys.Environ()), Args: args, Hostname: host,
		})
	}))
	mux.Handle("/sleep", handler(func(w http.ResponseWriter, r *http.Request) error {
		d, err := time.ParseDuration(r.URL.Query().Get("d"))
		if err != nil {
			return fmt.Errorf("%w: d: %v", errBadRequest, err)
		}
		timer := time.NewTimer(d)
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-r.Context().Done():
			return r.Context().Err()
		}
		_, err = fmt.Fprintf(w, "slept %s\n", d)
		return err
	}))
	mux.Handle("/exit", handler(func(w http.ResponseWriter, r *http.Request) error {
		code, err := strconv.Atoi(r.URL.Query().Get("code"))
		if err != nil {
			return fmt.Errorf("%w: code: %v", errBadRequest, err)
		}
		fmt.Fprintf(w, "exiting with %d\n", code)
		select {
		case exitCode <- code:
		default: // already exiting
		}
		return nil
	}))
	mux.Handle("/alloc", handler(func(w http.ResponseWriter, r *http.Request) error {
		n, err := strconv.Atoi(r.URL.Query().Get("mib"))
		if err != nil || n < 0 {
			return fmt.Errorf("%w: mib %q: want a whole number of MiB", errBadRequest, r.URL.Query().Get("mib"))
		}
		if err := p.sys.Alloc(n); err != nil {
			return fmt.Errorf("alloc %d MiB: %w", n, err)
		}
		_, err = fmt.Fprintf(w, "allocated %d MiB\n", n)
		return err
	}))
	mux.Handle("/log", handler(func(w http.ResponseWriter, r *http.Request) error {
		q := r.URL.Query()
		out := p.stdout
		switch q.Get("stream") {
		case "", "stdout":
		case "stderr":
			out = p.stderr
		default:
			return fmt.Errorf("%w: stream %q: want stdout or stderr", errBadRequest, q.Get("stream"))
		}
		out.println(q.Get("text"))
		_, err := io.WriteString(w, "logged\n")
		return err
	}))
	mux.Handle("/net", handler(func(w http.ResponseWriter, r *http.Request) error {
		n, err := p.sys.Network()
		if err != nil {
			return err
		}
		return writeJSON(w, n)
	}))
	mux.Handle("/stream", handler(func(w http.ResponseWriter, r *http.Request) error {
		rc := http.NewResponseController(w)
		// Without full duplex the server would stop reading the body once
		// the response starts.
		if err := rc.EnableFullDuplex(); err != nil {
			return err
		}
		w.WriteHeader(http.StatusOK)
		if err := rc.Flush(); err != nil {
			return err
		}
		buf := make([]byte, 32*1024)
		for {
			n, err := r.Body.Read(buf)
			if n > 0 {
				if _, werr := w.Write(buf[:n]); werr != nil {
					return nil // the client went away; nothing left to tell it
				}
				if ferr := rc.Flush(); ferr != nil {
					return nil
				}
			}
			if err != nil {
				return nil
			}
		}
	}))
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		conn, err := websocket.Accept(w, r, nil)
		if err != nil {
			return // Accept has answered
		}
		defer conn.CloseNow()
		for {
			typ, data, err := conn.Read(r.Context())
			if err != nil {
				return
			}
			if string(data) == "close" {
				conn.Close(websocket.StatusNormalClosure, "bye")
				return
			}
			if err := conn.Write(r.Context(), typ, append([]byte("echo:"), data...)); err != nil {
				return
			}
		}
	})
}

func writeJSON(w http.ResponseWriter, v any) error {
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(v)
}
