package testapp

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

// control is what the fault and observation endpoints (faultRoutes) need
// from the server: set up by serve before it listens.
type control struct {
	// crash ends the program at once with the code sent, without letting
	// answers in flight finish.
	crash chan int
	// listen starts serving on one more port.
	listen func(port string) error
	// log, when REQUEST_LOG=1, records every request with its port.
	log *requestLog

	mu                    sync.Mutex
	hangWaiting, hangGone int
}

// HangsReply is what /hangs answers.
type HangsReply struct {
	// Waiting counts /hang requests still waiting for their client to go.
	Waiting int `json:"waiting"`
	// Gone counts /hang requests whose client went away.
	Gone int `json:"gone"`
}

// RequestRecord is one request /requests lists.
type RequestRecord struct {
	Port   string `json:"port"` // the port as the program listens on it ("8080")
	Method string `json:"method"`
	Host   string `json:"host"`
	Path   string `json:"path"`
}

// faultRoutes adds the endpoints that break the server on purpose or report
// what it saw:
//
//	/crash?code=N[&partial=T]  ends the program with N at once, without
//	                     finishing the answer: with partial, after the
//	                     head and T were sent (chunked), else before any
//	                     byte of it
//	/hang                answers nothing until the client goes away
//	/hangs               a HangsReply
//	/listen?port=P       starts listening on P as well
//	/requests            with REQUEST_LOG=1, the requests served so far,
//	                     oldest first, as RequestRecords
func (p *program) faultRoutes(mux *http.ServeMux, c *control) {
	mux.Handle("/crash", handler(func(w http.ResponseWriter, r *http.Request) error {
		code, err := strconv.Atoi(r.URL.Query().Get("code"))
		if err != nil {
			return fmt.Errorf("%w: code: %v", errBadRequest, err)
		}
		if partial, ok := r.URL.Query()["partial"]; ok {
			w.WriteHeader(http.StatusOK)
			if _, err := io.WriteString(w, strings.Join(partial, "")); err != nil {
				return nil
			}
			if err := http.NewResponseController(w).Flush(); err != nil {
				return nil
			}
		}
		select {
		case c.crash <- code:
		default: // already ending
		}
		<-r.Context().Done() // the connection dies with the program
		return nil
	}))
	mux.Handle("/hang", handler(func(w http.ResponseWriter, r *http.Request) error {
		c.mu.Lock()
		c.hangWaiting++
		c.mu.Unlock()
		<-r.Context().Done()
		c.mu.Lock()
		c.hangWaiting--
		c.hangGone++
		c.mu.Unlock()
		return nil
	}))
	mux.Handle("/hangs", handler(func(w http.ResponseWriter, r *http.Request) error {
		c.mu.Lock()
		reply := HangsReply{Waiting: c.hangWaiting, Gone: c.hangGone}
		c.mu.Unlock()
		return writeJSON(w, reply)
	}))
	mux.Handle("/listen", handler(func(w http.ResponseWriter, r *http.Request) error {
		port := r.URL.Query().Get("port")
		if _, err := strconv.Atoi(port); err != nil {
			return fmt.Errorf("%w: port %q", errBadRequest, port)
		}
		if err := c.listen(port); err != nil {
			return err
		}
		_, err := fmt.Fprintf(w, "listening on :%s\n", port)
		return err
	}))
	mux.Handle("/requests", handler(func(w http.ResponseWriter, r *http.Request) error {
		if c.log == nil {
			return fmt.Errorf("%w: requests are recorded only with REQUEST_LOG=1", errBadRequest)
		}
		return writeJSON(w, c.log.records())
	}))
}

// requestLog records the requests the server handles, with the port each
// came in on (which the listener's address does not tell under the fake
// runtime, whose ports are loopback sockets).
type requestLog struct {
	mu   sync.Mutex
	reqs []RequestRecord
}

type portKey struct{}

func (l *requestLog) records() []RequestRecord {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]RequestRecord{}, l.reqs...)
}

// wrap records each request, then hands it to next.
func (l *requestLog) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		port, _ := r.Context().Value(portKey{}).(string)
		l.mu.Lock()
		l.reqs = append(l.reqs, RequestRecord{Port: port, Method: r.Method, Host: r.Host, Path: r.URL.Path})
		l.mu.Unlock()
		next.ServeHTTP(w, r)
	})
}

// connContext is the server's ConnContext: it puts the port of a tagged
// connection into its requests' context.
func (l *requestLog) connContext(ctx context.Context, c net.Conn) context.Context {
	if tc, ok := c.(*taggedConn); ok {
		return context.WithValue(ctx, portKey{}, tc.port)
	}
	return ctx
}

// taggedListener marks its connections with the port it listens on.
type taggedListener struct {
	net.Listener
	port string
}

func (l *taggedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &taggedConn{Conn: c, port: l.port}, nil
}

type taggedConn struct {
	net.Conn
	port string
}
