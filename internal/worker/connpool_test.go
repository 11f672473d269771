package worker

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// hangUpMark ends an answer after which rawServer closes the connection.
const hangUpMark = "\x00hang up"

// rawServer answers each request on a connection with what answer returns
// for it (raw HTTP), and counts the connections it accepted.
type rawServer struct {
	ln       net.Listener
	accepted atomic.Int32
	mu       sync.Mutex
	conns    []net.Conn
}

func newRawServer(t *testing.T, answer func(n int, req *http.Request) string) *rawServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &rawServer{ln: ln}
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.accepted.Add(1)
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for n := 0; ; n++ {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					out := answer(n, req)
					if out == "" { // hang up without answering
						return
					}
					cut, hangUp := strings.CutSuffix(out, hangUpMark)
					if _, err := io.WriteString(c, cut); err != nil || hangUp {
						return
					}
				}
			}()
		}
	}()
	return s
}

func (s *rawServer) pool() *connPool {
	dial := func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", s.ln.Addr().String())
	}
	next := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) }}
	return &connPool{dial: dial, next: next, now: time.Now}
}

func get(t *testing.T, rt http.RoundTripper, method string, body io.Reader) (int, string, error) {
	t.Helper()
	req, err := http.NewRequest(method, "http://container/x", body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func TestConnPoolKeepsConnectionsAlive(t *testing.T) {
	s := newRawServer(t, func(n int, req *http.Request) string {
		switch req.Method {
		case http.MethodHead:
			return "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"
		case http.MethodPost:
			return "HTTP/1.1 201 Created\r\nContent-Length: 4\r\n\r\npost"
		}
		// Early hints come before the response and are not it.
		return "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
	})
	p := s.pool()
	for i := range 3 {
		if code, body, err := get(t, p, http.MethodGet, nil); err != nil || code != 200 || body != "ok" {
			t.Fatalf("GET %d: %d %q %v", i, code, body, err)
		}
	}
	if code, body, err := get(t, p, http.MethodHead, nil); err != nil || code != 200 || body != "" {
		t.Fatalf("HEAD: %d %q %v", code, body, err)
	}
	if code, _, err := get(t, p, http.MethodGet, nil); err != nil || code != 200 {
		t.Fatalf("GET after HEAD: %d %v", code, err)
	}
	if n := s.accepted.Load(); n != 1 {
		t.Errorf("%d connections for five requests one after another, want 1", n)
	}
	// A request with a body goes through net/http's Transport.
	if code, body, err := get(t, p, http.MethodPost, strings.NewReader("data")); err != nil || code != 201 || body != "post" {
		t.Fatalf("POST: %d %q %v", code, body, err)
	}
	if n := s.accepted.Load(); n != 2 {
		t.Errorf("%d connections after a POST, want 2", n)
	}
}

func TestConnPoolRetriesConnectionClosedWhileIdle(t *testing.T) {
	s := newRawServer(t, func(n int, _ *http.Request) string {
		if n == 1 { // the second request on a connection finds it closed
			return ""
		}
		return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	})
	p := s.pool()
	for i := range 3 {
		if code, body, err := get(t, p, http.MethodGet, nil); err != nil || code != 200 || body != "ok" {
			t.Fatalf("GET %d: %d %q %v", i, code, body, err)
		}
	}
	// The second and third requests each find their connection closed and
	// go again on a new one.
	if n := s.accepted.Load(); n != 3 {
		t.Errorf("%d connections, want 3", n)
	}
	// A kept-alive connection that fails after part of an answer is not
	// retried: the container may have handled the request.
	s3 := newRawServer(t, func(n int, _ *http.Request) string {
		if n == 1 {
			return "HTTP/1.1 200 OK\r\n" + hangUpMark
		}
		return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	})
	p3 := s3.pool()
	if _, _, err := get(t, p3, http.MethodGet, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := get(t, p3, http.MethodGet, nil); err == nil {
		t.Error("an answer cut short: no error")
	}
	if n := s3.accepted.Load(); n != 1 {
		t.Errorf("%d connections after an answer cut short, want 1 (no retry)", n)
	}
	// Nor is a request that may not reach the container twice, once sent.
	s4 := newRawServer(t, func(n int, _ *http.Request) string {
		if n == 1 {
			return ""
		}
		return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	})
	p4 := s4.pool()
	for i, method := range []string{http.MethodPost, http.MethodPost} {
		_, _, err := get(t, p4, method, nil)
		if (err == nil) != (i == 0) {
			t.Errorf("POST %d without a body: %v", i, err)
		}
	}
	if n := s4.accepted.Load(); n != 1 {
		t.Errorf("%d connections for a POST on a closed connection, want 1 (no retry)", n)
	}
	// A new connection that fails is not retried.
	s2 := newRawServer(t, func(int, *http.Request) string { return "" })
	if _, _, err := get(t, s2.pool(), http.MethodGet, nil); err == nil {
		t.Error("a server that hangs up at once: no error")
	}
	if n := s2.accepted.Load(); n != 1 {
		t.Errorf("%d connections to a server that hangs up, want 1", n)
	}
}

func TestConnPoolReusesOnlyWholeResponses(t *testing.T) {
	s := newRawServer(t, func(n int, req *http.Request) string {
		if req.URL.Query().Get("close") != "" {
			return "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
		}
		return "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789"
	})
	p := s.pool()
	req, _ := http.NewRequest(http.MethodGet, "http://container/x", nil)
	resp, err := p.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 3)
	if _, err := io.ReadFull(resp.Body, buf); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close() // before its end: the connection cannot carry another request
	if code, _, err := get(t, p, http.MethodGet, nil); err != nil || code != 200 {
		t.Fatalf("GET after a cut body: %d %v", code, err)
	}
	if n := s.accepted.Load(); n != 2 {
		t.Errorf("%d connections, want 2", n)
	}
	req, _ = http.NewRequest(http.MethodGet, "http://container/x?close=1", nil)
	if resp, err = p.RoundTrip(req); err != nil {
		t.Fatal(err)
	}
	io.ReadAll(resp.Body)
	resp.Body.Close()
	if code, _, err := get(t, p, http.MethodGet, nil); err != nil || code != 200 {
		t.Fatalf("GET after Connection: close: %d %v", code, err)
	}
	if n := s.accepted.Load(); n != 3 {
		t.Errorf("%d connections, want 3 (none reused after Connection: close)", n)
	}
}

func TestConnPoolCancel(t *testing.T) {
	received, answered := make(chan struct{}), make(chan struct{})
	s := newRawServer(t, func(n int, req *http.Request) string {
		close(received)
		<-answered // never, until the test ends
		return ""
	})
	defer close(answered)
	p := s.pool()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://container/x", nil)
	errc := make(chan error, 1)
	go func() {
		_, err := p.RoundTrip(req)
		errc <- err
	}()
	<-received
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled request: %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("cancelling did not end the request")
	}
	// Closed for good: a connection given back afterwards is closed.
	p.close()
	if len(p.idle) != 0 {
		t.Errorf("%d idle connections after close", len(p.idle))
	}
}

// A connection idle for longer than containerPoolTimeout is not used again.
func TestConnPoolIdleTimeout(t *testing.T) {
	s := newRawServer(t, func(int, *http.Request) string { return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" })
	p := s.pool()
	now := time.Unix(1000, 0)
	p.now = func() time.Time { return now }
	for _, step := range []time.Duration{0, containerPoolTimeout - time.Second, containerPoolTimeout} {
		now = now.Add(step)
		if code, _, err := get(t, p, http.MethodGet, nil); err != nil || code != 200 {
			t.Fatalf("GET: %d %v", code, err)
		}
	}
	if n := s.accepted.Load(); n != 2 {
		t.Errorf("%d connections, want 2 (the first kept for %s, not for %s)", n, containerPoolTimeout-time.Second, containerPoolTimeout)
	}
}
