package worker

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"
)

// connPool is the transport of getTcpPort(port).fetch for requests without
// a body, the common case of a proxy: it writes the request and reads the
// response head on the calling goroutine over a kept-alive connection.
// net/http's Transport hands each request to a writer and a reader
// goroutine per connection; on a busy machine those two extra wake-ups
// cost more than the round trip itself. Requests with a body, whose
// response may start before the body is sent, go to next.
type connPool struct {
	dial func(ctx context.Context) (net.Conn, error)
	next *http.Transport
	now  func() time.Time

	mu     sync.Mutex
	idle   []*poolConn // most recently used last
	closed bool
}

type poolConn struct {
	conn net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
	used time.Time // when it went idle
	read int64     // bytes read from conn so far
}

// Read counts what the connection's reader takes from it.
func (pc *poolConn) Read(p []byte) (int, error) {
	n, err := pc.conn.Read(p)
	pc.read += int64(n)
	return n, err
}

func (p *connPool) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil && req.Body != http.NoBody {
		return p.next.RoundTrip(req)
	}
	var lost error // why the request failed on a kept-alive connection
	for {
		pc, reused, err := p.get(req.Context())
		if err != nil {
			if lost != nil && req.Context().Err() == nil {
				// No new connection to send it again on (the container
				// died under the request): the break is what it saw.
				return nil, lost
			}
			return nil, err
		}
		before := pc.read
		resp, sent, err := p.roundTrip(pc, req)
		if err == nil {
			return resp, nil
		}
		pc.conn.Close()
		// A kept-alive connection the container closed while it was idle
		// fails before any byte of an answer: the request goes once more on
		// a new connection, as net/http's Transport does, when it did not
		// leave or may be sent twice.
		if !reused || pc.read != before || req.Context().Err() != nil || !closedIdle(err) || (sent && !replayable(req)) {
			return nil, err
		}
		lost = err
	}
}

// closedIdle reports whether err is what a request on a connection the
// other side had closed gets.
func closedIdle(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || // ReadResponse's EOF
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// replayable reports whether req may reach the container twice: an
// idempotent method or an idempotency key, as net/http's Transport decides.
func replayable(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	_, key := req.Header["Idempotency-Key"]
	_, xkey := req.Header["X-Idempotency-Key"]
	return key || xkey
}

// roundTrip sends req on pc and reads the head of its response; sent
// tells whether the request was written out.
func (p *connPool) roundTrip(pc *poolConn, req *http.Request) (_ *http.Response, sent bool, _ error) {
	ctx := req.Context()
	// Cancelling the request unblocks whatever read or write is under way.
	stop := context.AfterFunc(ctx, func() { _ = pc.conn.SetDeadline(time.Unix(1, 0)) })
	if err := req.Write(pc.bw); err != nil {
		stop()
		return nil, false, ctxErr(ctx, err)
	}
	if err := pc.bw.Flush(); err != nil {
		stop()
		return nil, false, ctxErr(ctx, err)
	}
	var resp *http.Response
	for {
		var err error
		resp, err = http.ReadResponse(pc.br, req)
		if err != nil {
			stop()
			return nil, true, ctxErr(ctx, err)
		}
		// Informational answers (103 Early Hints…) precede the response.
		if resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
			resp.Body.Close()
			continue
		}
		break
	}
	reusable := !resp.Close && !req.Close && resp.StatusCode != http.StatusSwitchingProtocols
	if resp.Body == http.NoBody { // HEAD, 204, 304, Content-Length: 0
		p.release(pc, stop() && reusable)
		return resp, true, nil
	}
	resp.Body = &poolBody{body: resp.Body, pool: p, pc: pc, stop: stop, reusable: reusable, ctx: ctx}
	return resp, true, nil
}

func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// get returns an idle connection, or a new one.
func (p *connPool) get(ctx context.Context) (pc *poolConn, reused bool, err error) {
	now := p.now()
	p.mu.Lock()
	for len(p.idle) > 0 {
		pc = p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if now.Sub(pc.used) < containerPoolTimeout {
			p.mu.Unlock()
			return pc, true, nil
		}
		pc.conn.Close()
	}
	p.mu.Unlock()
	conn, err := p.dial(ctx)
	if err != nil {
		return nil, false, err
	}
	pc = &poolConn{conn: conn, bw: bufio.NewWriter(conn)}
	pc.br = bufio.NewReader(pc)
	return pc, false, nil
}

// put keeps pc for the next request, or closes it.
// release gives pc back to the pool when reuse says it can carry another
// request, and closes it otherwise.
func (p *connPool) release(pc *poolConn, reuse bool) {
	if !reuse {
		pc.conn.Close()
		return
	}
	pc.used = p.now()
	p.mu.Lock()
	if p.closed || len(p.idle) >= containerPoolIdle {
		p.mu.Unlock()
		pc.conn.Close()
		return
	}
	p.idle = append(p.idle, pc)
	p.mu.Unlock()
}

// close closes the idle connections and, from then on, each one given
// back: the container they lead to is gone.
func (p *connPool) close() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.closed = true
	p.mu.Unlock()
	for _, pc := range idle {
		pc.conn.Close()
	}
	p.next.CloseIdleConnections()
}

// poolBody is a response body that gives its connection back to the pool
// once read to its end, and closes it when closed before.
type poolBody struct {
	body     io.ReadCloser
	pool     *connPool
	pc       *poolConn
	stop     func() bool
	ctx      context.Context
	reusable bool
	once     sync.Once
}

func (b *poolBody) Read(p []byte) (int, error) {
	n, err := b.body.Read(p)
	if err == io.EOF {
		b.done(true)
	} else if err != nil {
		err = ctxErr(b.ctx, err)
		b.done(false)
	}
	return n, err
}

func (b *poolBody) Close() error {
	b.done(false)
	return nil
}

// done ends the body's hold on the connection: back to the pool if the
// whole response was read from it, closed otherwise.
func (b *poolBody) done(atEOF bool) {
	b.once.Do(func() {
		stopped := b.stop() // false: the context ended and set a deadline
		b.pool.release(b.pc, atEOF && b.reusable && stopped)
	})
}
