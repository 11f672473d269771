package intercept

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"sync"
	"time"

	"github.com/berth-dev/berth/internal/container"
)

// DefaultSniffTimeout is how long a captured connection may stay silent
// before the Server stops waiting for the first byte that tells HTTP from
// TLS (a server-speaks-first protocol never sends one).
const DefaultSniffTimeout = 5 * time.Second

// handshakeTimeout bounds a TLS handshake and reading a request head.
const handshakeTimeout = 10 * time.Second

// Server takes the connections a container's interception captured apart
// into requests for the handlers of an Egress table:
//
//   - A connection to a loopback address is closed at once: nothing is
//     captured there, so it is someone connecting to the interceptor's own
//     port (container/docker's start gate polls it).
//   - A connection whose first byte is 0x16 is TLS. If a rule selects its
//     server name it is terminated with a certificate from CA and its
//     requests go to that rule's handler; otherwise, with Internet, its
//     bytes go on unchanged to where they were going (through Dial), and
//     without it the connection is closed.
//   - Anything else is served as HTTP/1.1. A request a rule selects goes to
//     that rule's handler; any other goes on to its destination with
//     Internet, and gets Cloudflare's blocked answer without it.
//   - A connection that sends nothing for SniffTimeout goes on to its
//     destination with Internet, and is closed without it.
//
// Handlers see an absolute URL (http://host/path or https://server-name/
// path) and container.EgressInfoFrom(r.Context()). Set the fields before the
// first connection; the methods are safe for concurrent use.
type Server struct {
	Egress *container.Egress
	// CA signs the certificates of terminated TLS; nil refuses TLS.
	CA *CA
	// Internet lets what no rule selects go on through Dial.
	Internet bool
	// Dial connects to a captured connection's original destination
	// without being captured again. Needed with Internet.
	Dial func(ctx context.Context, dst netip.AddrPort) (net.Conn, error)
	// Logger is slog.Default when nil.
	Logger *slog.Logger
	// SniffTimeout is DefaultSniffTimeout when zero.
	SniffTimeout time.Duration

	once  sync.Once
	conns *connListener
	http  *http.Server
	proxy *httputil.ReverseProxy

	mu     sync.Mutex
	closed bool
	open   map[*trackedConn]struct{}
}

func (s *Server) setup() {
	s.once.Do(func() {
		if s.Logger == nil {
			s.Logger = slog.Default()
		}
		if s.SniffTimeout <= 0 {
			s.SniffTimeout = DefaultSniffTimeout
		}
		s.open = make(map[*trackedConn]struct{})
		s.conns = newConnListener()
		s.http = &http.Server{
			Handler:           http.HandlerFunc(s.serveHTTP),
			ReadHeaderTimeout: handshakeTimeout,
			IdleTimeout:       2 * time.Minute,
			ErrorLog:          log.New(io.Discard, "", 0),
			ConnContext: func(ctx context.Context, c net.Conn) context.Context {
				if tc, ok := c.(*tls.Conn); ok {
					c = tc.NetConn()
				}
				if sc, ok := c.(*sniffedConn); ok {
					return container.WithEgressInfo(ctx, sc.info)
				}
				return ctx
			},
		}
		s.proxy = &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) {
				info, _ := container.EgressInfoFrom(pr.In.Context())
				pr.Out.URL.Scheme = "http"
				pr.Out.URL.Host = info.Dst.String()
				pr.Out.Host = pr.In.Host
			},
			Transport: &http.Transport{
				DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
					dst, err := netip.ParseAddrPort(addr)
					if err != nil {
						return nil, err
					}
					return s.dial(ctx, dst)
				},
				MaxIdleConnsPerHost: 8,
				IdleConnTimeout:     time.Minute,
			},
			ErrorLog: log.New(io.Discard, "", 0),
		}
		go func() { _ = s.http.Serve(s.conns) }()
	})
}

var errNoDial = errors.New("intercept: no Dial for traffic that goes on to the internet")

func (s *Server) dial(ctx context.Context, dst netip.AddrPort) (net.Conn, error) {
	if s.Dial == nil {
		return nil, errNoDial
	}
	return s.Dial(ctx, dst)
}

// Serve accepts captured connections from l until l is closed; origDst
// tells each connection's original destination.
func (s *Server) Serve(l net.Listener, origDst func(net.Conn) (netip.AddrPort, error)) error {
	s.setup()
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(5 * time.Millisecond)
				continue
			}
			return err
		}
		dst, err := origDst(c)
		if err != nil {
			c.Close()
			continue
		}
		go s.ServeConn(c, dst)
	}
}

// ServeConn serves one captured connection whose original destination was
// dst, and owns it. It returns once the connection is handed on.
func (s *Server) ServeConn(c net.Conn, dst netip.AddrPort) {
	s.setup()
	tc := &trackedConn{Conn: c, s: s}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.Close()
		return
	}
	s.open[tc] = struct{}{}
	s.mu.Unlock()
	if dst.Addr().IsLoopback() {
		tc.Close()
		return
	}
	sc := &sniffedConn{Conn: tc, r: bufio.NewReader(tc), info: container.EgressInfo{Dst: dst}}
	_ = tc.SetReadDeadline(time.Now().Add(s.SniffTimeout))
	first, err := sc.r.Peek(1)
	_ = tc.SetReadDeadline(time.Time{})
	switch {
	case err != nil:
		var ne net.Error
		if s.Internet && errors.As(err, &ne) && ne.Timeout() {
			s.passThrough(sc, nil)
			return
		}
		tc.Close()
	case first[0] == 0x16:
		s.serveTLS(sc)
	default:
		s.conns.hand(sc)
	}
}

var (
	errPassThrough = errors.New("no rule selects this server name; passing the connection through")
	errNoRule      = errors.New("no rule selects this server name")
)

func (s *Server) serveTLS(sc *sniffedConn) {
	dst := sc.info.Dst
	base := &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"http/1.1"},
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			name := hello.ServerName
			if name == "" {
				name = dst.Addr().Unmap().String()
			}
			return s.CA.Certificate(name)
		},
	}
	var pass bool
	cfg := &tls.Config{
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			if s.CA != nil && s.Egress.Route(true, dst, hello.ServerName) != nil {
				return base, nil
			}
			if s.Internet {
				// The handshake is abandoned without an alert: the
				// client's bytes go on to the real server.
				pass = true
				sc.mute = true
				return nil, errPassThrough
			}
			return nil, errNoRule
		},
	}
	sc.record = new(bytes.Buffer)
	conn := tls.Server(sc, cfg)
	_ = sc.SetDeadline(time.Now().Add(handshakeTimeout))
	err := conn.Handshake()
	_ = sc.SetDeadline(time.Time{})
	if pass {
		s.passThrough(sc, sc.record.Bytes())
		return
	}
	sc.record = nil
	if err != nil {
		sc.Close()
		return
	}
	sc.info.TLS = true
	sc.info.SNI = conn.ConnectionState().ServerName
	s.conns.hand(conn)
}

// passThrough connects sc to its original destination: replay (what a
// handshake already consumed) goes first, then the rest both ways.
func (s *Server) passThrough(sc *sniffedConn, replay []byte) {
	ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
	up, err := s.dial(ctx, sc.info.Dst)
	cancel()
	if err != nil {
		s.Logger.Debug("egress: pass a connection through", "dst", sc.info.Dst.String(), "err", err.Error())
		sc.Close()
		return
	}
	defer up.Close()
	defer sc.Close()
	if len(replay) > 0 {
		if _, err := up.Write(replay); err != nil {
			return
		}
	}
	done := make(chan struct{}, 2)
	pipe := func(dst net.Conn, src io.Reader) {
		_, _ = io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		} else {
			_ = dst.Close()
		}
		done <- struct{}{}
	}
	go pipe(up, sc.r)
	go pipe(sc.Conn, up)
	<-done
	<-done
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	info, _ := container.EgressInfoFrom(r.Context())
	host := r.Host
	if host == "" {
		host = info.SNI
	}
	if host == "" {
		host = info.Dst.String()
	}
	r.URL.Scheme, r.URL.Host = "http", host
	var h http.Handler
	if info.TLS {
		r.URL.Scheme = "https"
		h = s.Egress.Route(true, info.Dst, info.SNI)
	} else {
		h = s.Egress.Route(false, info.Dst, host)
	}
	switch {
	case h != nil:
		h.ServeHTTP(w, r)
	case s.Internet && !info.TLS:
		s.proxy.ServeHTTP(w, r)
	default:
		container.EgressBlocked.ServeHTTP(w, r)
	}
}

// Close closes the Server and every connection it has; Serve returns once
// its listener is closed too.
func (s *Server) Close() error {
	s.setup()
	s.mu.Lock()
	s.closed = true
	open := s.open
	s.open = map[*trackedConn]struct{}{}
	s.mu.Unlock()
	s.conns.Close()
	_ = s.http.Close()
	for c := range open {
		c.Conn.Close()
	}
	return nil
}

// trackedConn is a captured connection; the Server closes what is still open
// when it closes.
type trackedConn struct {
	net.Conn
	s    *Server
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.s.mu.Lock()
		delete(c.s.open, c)
		c.s.mu.Unlock()
	})
	return c.Conn.Close()
}

func (c *trackedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// sniffedConn is a captured connection whose first bytes were peeked. While
// record is set it keeps what is read (a TLS handshake that may be
// abandoned); mute drops writes (the alert of an abandoned handshake).
type sniffedConn struct {
	net.Conn
	r      *bufio.Reader
	info   container.EgressInfo
	record *bytes.Buffer
	mute   bool
}

func (c *sniffedConn) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if c.record != nil {
		c.record.Write(p[:n])
	}
	return n, err
}

func (c *sniffedConn) Write(p []byte) (int, error) {
	if c.mute {
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// connListener hands connections to the http.Server.
type connListener struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newConnListener() *connListener {
	return &connListener{ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *connListener) hand(c net.Conn) {
	select {
	case l.ch <- c:
	case <-l.done:
		c.Close()
	}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *connListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *connListener) Addr() net.Addr { return interceptAddr{} }

type interceptAddr struct{}

func (interceptAddr) Network() string { return "tcp" }
func (interceptAddr) String() string  { return "egress-interceptor" }
