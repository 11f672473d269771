package worker

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/coder/websocket"
)

// WebSockets. A script reaches a WebSocket connection in two ways:
//
//   - it answers an upgrade request with new Response(null, {status: 101,
//     webSocket: client}) where client is one end of a WebSocketPair; the
//     script keeps the other end. Go accepts the upgrade (Serve) and the
//     socket carries frames between the client and that end.
//   - it calls fetch with an "Upgrade: websocket" header; Go dials and the
//     response's webSocket is backed by the outbound connection.
//
// A fetched WebSocket that the script returns in its response without
// accepting it is not driven by JavaScript at all: Go accepts the client and
// copies frames between the two connections (the proxy case).
//
// The Go side of both upgrades is github.com/coder/websocket: context-aware,
// safe for concurrent writers, does the close handshake itself, and accepts
// from a plain http.Handler.

// maxMessageSize bounds one incoming message, as Cloudflare does (32 MiB).
const maxMessageSize = 32 << 20

// socket is one WebSocket connection a script uses, from the moment the
// script creates it (before the connection exists, for an inbound one).
type socket struct {
	id  int
	tag string // the request that created it, for logs
	rt  *runtime

	ctx    context.Context
	cancel context.CancelFunc

	mu         sync.Mutex
	conn       *websocket.Conn
	out        []wsFrame
	wake       chan struct{}
	sentCode   int // the close code the script sent, 0 before
	sentReason string
	reading    bool

	reported sync.Once
	done     chan struct{} // closed once the connection has ended
}

type wsFrame struct {
	text   bool
	data   []byte
	close  bool
	code   int
	reason string
}

// newSocket registers a socket on the loop goroutine.
func (rt *runtime) newSocket(tag string) *socket {
	rt.nextSocket++
	ctx, cancel := context.WithCancel(rt.ctx)
	s := &socket{id: rt.nextSocket, tag: tag, rt: rt, ctx: ctx, cancel: cancel, wake: make(chan struct{}, 1), done: make(chan struct{})}
	rt.sockets[s.id] = s
	return s
}

// attach gives the socket its connection and starts writing what the
// script queued; read also starts reading.
func (s *socket) attach(conn *websocket.Conn, read bool) {
	conn.SetReadLimit(maxMessageSize)
	s.mu.Lock()
	s.conn = conn
	s.mu.Unlock()
	go s.writeLoop()
	if read {
		s.startReading()
	}
}

func (s *socket) startReading() {
	s.mu.Lock()
	start := !s.reading && s.conn != nil
	s.reading = true
	s.mu.Unlock()
	if start {
		go s.readLoop()
	}
}

func (s *socket) enqueue(f wsFrame) {
	s.mu.Lock()
	if f.close {
		if s.sentCode != 0 {
			s.mu.Unlock()
			return
		}
		s.sentCode, s.sentReason = f.code, f.reason
	}
	s.out = append(s.out, f)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *socket) writeLoop() {
	for {
		s.mu.Lock()
		batch := s.out
		s.out = nil
		s.mu.Unlock()
		for _, f := range batch {
			if f.close {
				// Close does the handshake: it sends the frame and waits
				// (up to 5 s) for the peer's; the read loop then ends.
				err := s.conn.Close(websocket.StatusCode(f.code), f.reason)
				s.finish(err)
				return
			}
			typ := websocket.MessageBinary
			if f.text {
				typ = websocket.MessageText
			}
			if err := s.conn.Write(s.ctx, typ, f.data); err != nil {
				s.conn.CloseNow()
				s.finish(err)
				return
			}
		}
		select {
		case <-s.wake:
		case <-s.ctx.Done():
			s.conn.CloseNow()
			return
		}
	}
}

func (s *socket) readLoop() {
	for {
		typ, data, err := s.conn.Read(s.ctx)
		if err != nil {
			s.finish(err)
			return
		}
		var payload any = data
		if typ == websocket.MessageText {
			payload = string(data)
		}
		s.rt.loop.Post(func() { s.rt.call("__berth_ws", s.id, "message", payload) })
	}
}

// finish reports the end of the connection to the script, once.
func (s *socket) finish(err error) {
	s.reported.Do(func() {
		code, reason, clean := closeInfo(err)
		s.mu.Lock()
		if code == int(websocket.StatusNoStatusRcvd) || (!clean && s.sentCode != 0) {
			// The script closed first: the handshake completing (or the
			// peer hanging up afterwards) ends the socket with its code.
			code, reason, clean = s.sentCode, s.sentReason, true
		}
		s.mu.Unlock()
		s.cancel()
		close(s.done)
		s.rt.loop.Post(func() {
			delete(s.rt.sockets, s.id)
			s.rt.call("__berth_ws", s.id, "close", code, reason, clean)
		})
	})
}

func closeInfo(err error) (code int, reason string, clean bool) {
	var ce websocket.CloseError
	if errors.As(err, &ce) {
		return int(ce.Code), ce.Reason, true
	}
	return int(websocket.StatusAbnormalClosure), "", false
}

// shutdown drops the connection when the runtime stops.
func (s *socket) shutdown() {
	s.cancel()
	s.mu.Lock()
	conn := s.conn
	s.mu.Unlock()
	if conn != nil {
		conn.CloseNow()
	}
}

// handshakeHeaders are set by the WebSocket library on either side of an
// upgrade; a script's copies are dropped.
var handshakeHeaders = map[string]bool{
	"upgrade": true, "connection": true, "sec-websocket-key": true, "sec-websocket-version": true,
	"sec-websocket-accept": true, "sec-websocket-extensions": true, "sec-websocket-protocol": true,
	"content-length": true, "transfer-encoding": true,
}

// serveWebSocket completes an upgrade the script accepted with a 101
// response carrying sock, and holds the request until the connection ends.
func (w *Worker) serveWebSocket(rw http.ResponseWriter, r *http.Request, rt *runtime, h head) error {
	sock := h.ws
	opts := &websocket.AcceptOptions{
		// Cloudflare leaves origin checks to the Worker.
		InsecureSkipVerify: true,
	}
	hdr := rw.Header()
	for i := 0; i+1 < len(h.headers); i += 2 {
		name := strings.ToLower(h.headers[i])
		if name == "sec-websocket-protocol" {
			opts.Subprotocols = append(opts.Subprotocols, strings.TrimSpace(h.headers[i+1]))
		}
		if !handshakeHeaders[name] {
			hdr.Add(h.headers[i], h.headers[i+1])
		}
	}
	conn, err := websocket.Accept(rw, r, opts)
	if err != nil {
		// Accept has answered the client (a 4xx); the script's end closes.
		w.cfg.Logger.Warn("websocket upgrade failed", "worker", w.cfg.Name, "request", sock.tag, "err", err)
		if h.bridge != nil {
			h.bridge.shutdown()
			h.bridge.finish(err)
		}
		sock.finish(err)
		return nil
	}
	// After the upgrade net/http no longer watches the connection, so the
	// request's context ends only when the server serving the Worker goes
	// away (berth dev stopping): the client is then told so with 1001, and
	// so is the far end of a proxied socket.
	if h.bridge != nil {
		stop := context.AfterFunc(r.Context(), func() {
			go goingAway(h.bridge.conn)
			goingAway(conn)
		})
		defer stop()
		return bridgeSockets(rt.ctx, conn, h.bridge)
	}
	sock.attach(conn, true)
	select {
	case <-sock.done:
	case <-rt.done:
		conn.CloseNow()
	case <-r.Context().Done():
		// The script hears of it as a close event with that code.
		sock.enqueue(wsFrame{close: true, code: int(websocket.StatusGoingAway), reason: goingAwayReason})
		select {
		case <-sock.done:
		case <-rt.done:
			conn.CloseNow()
		}
	}
	return nil
}

const goingAwayReason = "going away"

// goingAway closes c with 1001: the close frame goes out at once, and the
// handshake waits for the peer's answer (up to the library's 5 s).
func goingAway(c *websocket.Conn) {
	_ = c.Close(websocket.StatusGoingAway, goingAwayReason)
}

// bridgeSockets copies frames both ways between the client's connection and
// an outbound one until either side closes, then closes the other with the
// same code.
func bridgeSockets(ctx context.Context, client *websocket.Conn, out *socket) error {
	client.SetReadLimit(maxMessageSize)
	out.conn.SetReadLimit(maxMessageSize)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); pipeWebSocket(ctx, out.conn, client) }()
	go func() { defer wg.Done(); pipeWebSocket(ctx, client, out.conn) }()
	wg.Wait()
	out.cancel()
	return nil
}

func pipeWebSocket(ctx context.Context, dst, src *websocket.Conn) {
	for {
		typ, r, err := src.Reader(ctx)
		if err != nil {
			code, reason, clean := closeInfo(err)
			if clean && code != int(websocket.StatusNoStatusRcvd) {
				_ = dst.Close(websocket.StatusCode(code), reason)
			} else if clean {
				_ = dst.Close(websocket.StatusNormalClosure, "")
			} else {
				dst.CloseNow()
			}
			return
		}
		wr, err := dst.Writer(ctx, typ)
		if err != nil {
			src.CloseNow()
			return
		}
		_, err = io.Copy(wr, r)
		if cerr := wr.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			src.CloseNow()
			dst.CloseNow()
			return
		}
	}
}

// fetchWebSocket is fetch with "Upgrade: websocket": it dials url (or the
// Durable Object or container port target names) and
// settles op like a fetch, with a 101 status and the new socket's id as an
// eighth value; a server that refuses the upgrade gives a plain response.
func (rt *runtime) fetchWebSocket(op int, url string, headers []string, tag, target string) {
	opts := &websocket.DialOptions{HTTPClient: rt.cfg.Client, HTTPHeader: http.Header{}}
	switch {
	case strings.HasPrefix(target, containerTargetPrefix):
		o, port, err := rt.containerTarget(target)
		if err != nil {
			rt.settle(op, err)
			return
		}
		opts.HTTPClient = &http.Client{Transport: rt.containerTransport(o, port).t}
	case target != "":
		opts.HTTPClient = &http.Client{Transport: &http.Transport{DialContext: rt.cfg.owner.objectDialer(target), DisableKeepAlives: true}}
	}
	sock := rt.newSocket(tag)
	delete(rt.sockets, sock.id) // registered once the handshake succeeded
	rt.fetches[op] = sock.cancel
	for i := 0; i+1 < len(headers); i += 2 {
		name, value := headers[i], headers[i+1]
		switch {
		case name == "host":
			opts.Host = value
		case name == "sec-websocket-protocol":
			for _, p := range strings.Split(value, ",") {
				opts.Subprotocols = append(opts.Subprotocols, strings.TrimSpace(p))
			}
		case handshakeHeaders[name]:
		default:
			opts.HTTPHeader.Add(name, value)
		}
	}
	rt.loop.Hold()
	go func() {
		conn, resp, err := websocket.Dial(sock.ctx, url, opts)
		rt.loop.Post(func() {
			rt.loop.Release()
			delete(rt.fetches, op)
			if err != nil && (resp == nil || resp.StatusCode == http.StatusSwitchingProtocols) {
				sock.cancel()
				rt.settle(op, errors.New("fetch "+url+": "+err.Error()))
				return
			}
			flat := flattenHeaders(resp.Header)
			statusText := http.StatusText(resp.StatusCode)
			if err != nil { // refused: an ordinary response
				handle := rt.addBody(&cancelOnClose{resp.Body, sock.cancel}, -1, tag)
				rt.settle(op, nil, resp.StatusCode, statusText, flat, handle, url, false)
				return
			}
			if sock.ctx.Err() != nil { // aborted meanwhile
				conn.CloseNow()
				return
			}
			rt.sockets[sock.id] = sock
			sock.attach(conn, false) // reads once the script accepts
			rt.settle(op, nil, resp.StatusCode, statusText, flat, 0, url, false, sock.id)
		})
	}()
}

// flattenHeaders is h in the wire form the runtime's JavaScript takes.
func flattenHeaders(h http.Header) string {
	var flat strings.Builder
	writeFlatHeaders(&flat, h)
	return flat.String()
}

// writeFlatHeaders writes h to flat as "name\nvalue\n" for each value,
// with names in lower case.
func writeFlatHeaders(flat *strings.Builder, h http.Header) {
	size := 0
	for name, vs := range h {
		for _, v := range vs {
			size += len(name) + len(v) + 2
		}
	}
	flat.Grow(size)
	for name, vs := range h {
		for _, v := range vs {
			for i := 0; i < len(name); i++ { // ASCII: the names Go parsed are tokens
				c := name[i]
				if 'A' <= c && c <= 'Z' {
					c += 'a' - 'A'
				}
				flat.WriteByte(c)
			}
			flat.WriteByte('\n')
			flat.WriteString(v)
			flat.WriteByte('\n')
		}
	}
}
