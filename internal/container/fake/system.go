package fake

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"slices"
	"sync"

	"github.com/berth-dev/berth/internal/container/testapp"
)

// system is the testapp.System a Program sees inside a fake container.
type system struct {
	args     []string
	env      []string
	stdin    io.Reader
	stdout   io.Writer
	stderr   io.Writer
	signals  chan os.Signal
	listen   func(network, addr string) (net.Listener, error)
	alloc    func(mib int) error
	network  testapp.Network
	terminal func() testapp.Terminal
	hostname string
	workDir  string
	uid      int
	pid      int
	outbound *outbound // nil: no outbound network (a RUN step)
}

func (s *system) Args() []string            { return slices.Clone(s.args) }
func (s *system) Environ() []string         { return slices.Clone(s.env) }
func (s *system) Stdin() io.Reader          { return s.stdin }
func (s *system) Stdout() io.Writer         { return s.stdout }
func (s *system) Stderr() io.Writer         { return s.stderr }
func (s *system) Signals() <-chan os.Signal { return s.signals }
func (s *system) Alloc(mib int) error       { return s.alloc(mib) }
func (s *system) Hostname() (string, error) { return s.hostname, nil }
func (s *system) Getwd() (string, error)    { return s.workDir, nil }
func (s *system) Getuid() int               { return s.uid }
func (s *system) Getpid() int               { return s.pid }
func (s *system) Terminal() testapp.Terminal {
	if s.terminal == nil {
		return testapp.Terminal{}
	}
	return s.terminal()
}

func (s *system) Listen(network, addr string) (net.Listener, error) {
	return s.listen(network, addr)
}

func (s *system) Network() (testapp.Network, error) {
	n := s.network
	n.Interfaces = slices.Clone(n.Interfaces)
	return n, nil
}

func networkFor(internet bool) testapp.Network {
	if internet {
		return testapp.Network{Interfaces: []string{"lo", "eth0"}, DefaultRoute: true}
	}
	return testapp.Network{Interfaces: []string{"lo"}}
}

// gate freezes a paused container: everything its programs do through their
// System (output, accepting, reading and writing connections) waits at the
// gate until it opens again. Goroutines cannot really be stopped, so a
// program computing without touching its System keeps running; testapp
// always touches it.
type gate struct {
	mu   sync.Mutex
	open chan struct{} // closed while the container is not paused
}

func newGate() *gate {
	open := make(chan struct{})
	close(open)
	return &gate{open: open}
}

func (g *gate) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.open:
		g.open = make(chan struct{})
	default: // already closed
	}
}

func (g *gate) reopen() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.open:
	default:
		close(g.open)
	}
}

// wait blocks while the gate is closed; ctx is the container's, so killing
// a paused container releases everything waiting here.
func (g *gate) wait(ctx context.Context) error {
	g.mu.Lock()
	open := g.open
	g.mu.Unlock()
	select {
	case <-open:
		return nil
	case <-ctx.Done():
		return errKilled
	}
}

var errKilled = errors.New("the container was killed")

// portListener is a real loopback listener standing in for a container
// port. Its Addr is the container-side address the program asked for.
type portListener struct {
	net.Listener
	port int
	ctx  context.Context
	gate *gate
	// track records an accepted connection so that a kill can close it,
	// and reports false once the container is gone; untrack forgets it.
	track   func(net.Conn) bool
	untrack func(net.Conn)
	closed  func()
	once    sync.Once
}

func (l *portListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if err := l.gate.wait(l.ctx); err != nil {
		conn.Close()
		return nil, err
	}
	gc := &gatedConn{Conn: conn, ctx: l.ctx, gate: l.gate}
	gc.onClose = func() { l.untrack(gc) }
	if !l.track(gc) {
		conn.Close()
		return nil, net.ErrClosed
	}
	return gc, nil
}

func (l *portListener) Addr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4zero, Port: l.port}
}

func (l *portListener) Close() error {
	err := l.Listener.Close()
	l.once.Do(l.closed)
	return err
}

type gatedConn struct {
	net.Conn
	ctx     context.Context
	gate    *gate
	onClose func()
}

func (c *gatedConn) Close() error {
	err := c.Conn.Close()
	c.onClose()
	return err
}

func (c *gatedConn) Read(b []byte) (int, error) {
	if err := c.gate.wait(c.ctx); err != nil {
		return 0, err
	}
	n, err := c.Conn.Read(b)
	// Data that arrived while the container was being paused is not
	// handed over until it is thawed.
	if werr := c.gate.wait(c.ctx); werr != nil {
		return 0, werr
	}
	return n, err
}

func (c *gatedConn) Write(b []byte) (int, error) {
	if err := c.gate.wait(c.ctx); err != nil {
		return 0, err
	}
	return c.Conn.Write(b)
}

// lineLog splits a program's output stream into log lines.
type lineLog struct {
	ctx  context.Context
	gate *gate
	emit func(text string) bool // false once the container is gone

	mu      sync.Mutex
	partial []byte
}

func (w *lineLog) Write(b []byte) (int, error) {
	if err := w.gate.wait(w.ctx); err != nil {
		return 0, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.partial = append(w.partial, b...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		if !w.emit(string(w.partial[:i])) {
			return 0, errKilled
		}
		w.partial = w.partial[i+1:]
	}
	return len(b), nil
}

// flush emits an unterminated last line, as Docker logs do.
func (w *lineLog) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.partial) > 0 {
		w.emit(string(w.partial))
		w.partial = nil
	}
}

// execWriter is an exec's output: serialized, frozen with the container,
// and with a terminal's newline translation when it has one.
type execWriter struct {
	ctx  context.Context
	gate *gate
	tty  bool

	mu sync.Mutex
	w  io.Writer
}

func (w *execWriter) Write(b []byte) (int, error) {
	if err := w.gate.wait(w.ctx); err != nil {
		return 0, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	out := b
	if w.tty {
		// A terminal's output processing (ONLCR) turns \n into \r\n.
		out = bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n"))
	}
	if _, err := w.w.Write(out); err != nil {
		return 0, err
	}
	return len(b), nil
}
