package worker

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
	"sync"
	"syscall"
	"time"

	"github.com/berth-dev/berth/internal/container"
)

// Containers runs the containers of Durable Objects: it is what
// ctx.container reaches. *container.Manager implements it; its doc comments
// are the contract.
type Containers interface {
	Status(ctx context.Context, owner container.Owner) (bool, error)
	Start(ctx context.Context, owner container.Owner, opts container.StartOptions) (container.Instance, error)
	Monitor(ctx context.Context, owner container.Owner) error
	Destroy(ctx context.Context, owner container.Owner, reason error) error
	Signal(ctx context.Context, owner container.Owner, signo int) error
	Dial(ctx context.Context, owner container.Owner, port int) (net.Conn, error)
	DialIdle(ctx context.Context, owner container.Owner, port int) (net.Conn, error)
	Use(ctx context.Context, owner container.Owner) (release func(), err error)
	SetInactivityTimeout(owner container.Owner, d time.Duration) error
	Hold(owner container.Owner) (release func())
	Exec(ctx context.Context, owner container.Owner, spec container.ExecSpec) (container.Process, error)
	Inspect(ctx context.Context, owner container.Owner) (container.Instance, error)
	InterceptOutbound(ctx context.Context, owner container.Owner, rule container.EgressRule) error
	Traffic(owner container.Owner) (busy bool, idle time.Duration)
}

// errNetworkLost is how a container connection that broke after it was made
// reads to a script; @cloudflare/containers matches on Cloudflare's text.
type errNetworkLost struct{ cause error }

func (e *errNetworkLost) Error() string { return "Network connection lost." }
func (e *errNetworkLost) Unwrap() error { return e.cause }

// objContainer is the Go side of one object's ctx.container.
type objContainer struct {
	mgr   Containers
	owner container.Owner
	// ctx ends when the activation closes: the watch over the container
	// stops then, the container does not.
	ctx    context.Context
	cancel context.CancelFunc

	mu sync.Mutex
	// started is closed once the last start() has been handed to the
	// Manager (and returned), so that what the script does after start()
	// happens after it, as workerd's queued RPCs do.
	started chan struct{}
	// pools keeps, per port, the keep-alive connections of
	// getTcpPort(port).fetch; they are dropped when the container starts or
	// ends and when the activation closes.
	pools map[int]*connPool
	// egress is closed once the intercept calls made so far are in the
	// Manager's table (intercept.go); nil when none was made.
	egress chan struct{}
	// startErr is why the last start() failed; nil when it succeeded.
	startErr error
}

// notRunning gives, for a call that found the container not running
// because its last start failed, that failure: as on Cloudflare, where the
// calls after a refused start fail with its error ("there is no container
// instance…", which @cloudflare/containers matches on).
func (c *objContainer) notRunning(err error) error {
	if !errors.Is(err, container.ErrNotRunning) {
		return err
	}
	c.mu.Lock()
	startErr := c.startErr
	c.mu.Unlock()
	if startErr == nil {
		return err
	}
	return startErr
}

// dropPools closes the idle pooled connections: after a start or an exit
// they lead to a container that is gone.
func (c *objContainer) dropPools() {
	c.mu.Lock()
	pools := c.pools
	c.pools = nil
	c.mu.Unlock()
	for _, t := range pools {
		t.close() // a request still under way closes its connection after it
	}
}

func closedChan() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}

// hasContainer reports whether class cls has a container configured.
func (o *Objects) hasContainer(cls string) bool {
	if o == nil || o.Containers == nil {
		return false
	}
	for _, c := range o.ContainerClasses {
		if c == cls {
			return true
		}
	}
	return false
}

// attachContainer gives o its ctx.container when its class has one and
// reports whether the container runs (Status, which re-attaches a container
// that outlived a previous berth).
func (w *Worker) attachContainer(ctx context.Context, o *object) (running, ok bool) {
	objs := w.cfg.Objects
	cls := o.state.ID.Namespace().Class()
	if !objs.hasContainer(cls) {
		return false, false
	}
	cctx, cancel := context.WithCancel(context.Background())
	o.ct = &objContainer{mgr: objs.Containers, owner: container.Owner{Class: cls, Object: o.state.ID.String()},
		ctx: cctx, cancel: cancel, started: closedChan()}
	running, err := o.ct.mgr.Status(ctx, o.ct.owner)
	if err != nil {
		w.cfg.Logger.Warn("container status at activation; taking it for stopped", "object", o.label, "err", err)
		return false, true
	}
	return running, true
}

// waitStarted waits for the start() calls made so far.
func (c *objContainer) waitStarted(ctx context.Context) error {
	c.mu.Lock()
	started := c.started
	c.mu.Unlock()
	select {
	case <-started:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// watch waits for the container's end and tells the script (running turns
// false, monitor() settles). It does not keep the object live.
func (rt *runtime) watchContainer(o *object) {
	c := o.ct
	go func() {
		if c.waitStarted(c.ctx) != nil {
			return
		}
		err := c.mgr.Monitor(c.ctx, c.owner)
		if c.ctx.Err() != nil {
			return // the activation closed; the next one asks Status
		}
		rt.postExit(o, err)
	}()
}

func (rt *runtime) postExit(o *object, err error) {
	o.ct.dropPools()
	msg, code := "", 0
	var ee *container.ExitError
	if err != nil {
		msg = err.Error()
		if errors.As(err, &ee) {
			code = ee.Code
		}
	}
	rt.post(func() {
		if o.gone {
			return
		}
		rt.call("__berth_ct_exit", o.jsID, err == nil, msg, code)
	})
}

// containerOp handles the ct* host operations of durable.js.
func (rt *runtime) containerOp(op string, a []any) (any, error) {
	switch op {
	case "ctDestroy", "ctInactivity", "ctInspect", "ctConnect", "ctExec", "ctIntercept":
		// Asynchronous: the operation id comes first; make it follow the
		// object's id as in the synchronous ones.
		if len(a) < 2 {
			return nil, fmt.Errorf("%s: missing arguments", op)
		}
		a = append([]any{a[1], a[0]}, a[2:]...)
	}
	o, err := rt.liveObject(a)
	if err != nil {
		return nil, err
	}
	c := o.ct
	if c == nil {
		return nil, errors.New("this Durable Object has no container")
	}
	a = a[1:]
	switch op {
	case "ctStart":
		var opts struct {
			Entrypoint     []string          `json:"entrypoint"`
			Env            map[string]string `json:"env"`
			EnableInternet bool              `json:"enableInternet"`
			Labels         map[string]string `json:"labels"`
		}
		if err := json.Unmarshal([]byte(argString(a, 0)), &opts); err != nil {
			return nil, fmt.Errorf("start: %w", err)
		}
		c.dropPools()
		done := make(chan struct{})
		c.mu.Lock()
		prev := c.started
		c.started = done
		c.mu.Unlock()
		egress := c.egressSettled()
		go func() {
			<-prev
			<-egress // the interception asked for before start() (intercept.go)
			_, err := c.mgr.Start(c.ctx, c.owner, container.StartOptions{
				Entrypoint: opts.Entrypoint, Env: opts.Env, EnableInternet: opts.EnableInternet, Labels: opts.Labels,
			})
			c.mu.Lock()
			c.startErr = nil
			if err != nil && !errors.Is(err, container.ErrAlreadyRunning) {
				c.startErr = err
			}
			c.mu.Unlock()
			close(done)
			if err != nil {
				rt.log.Warn("container start failed", "object", o.label, "err", err)
			}
			// The failure, if any, is what Monitor reports.
			if c.ctx.Err() == nil {
				err := c.mgr.Monitor(c.ctx, c.owner)
				if c.ctx.Err() == nil {
					rt.postExit(o, err)
				}
			}
		}()
		return nil, nil
	case "ctIdle":
		// How long the container has been idle in ms, -1 while busy: the
		// Container class's sleepAfter asks this rather than following
		// every response body to its end in JavaScript.
		if busy, idle := c.mgr.Traffic(c.owner); !busy {
			return float64(idle.Milliseconds()), nil
		}
		return -1, nil
	case "ctSignal":
		signo := argInt(a, 0)
		go func() {
			if c.waitStarted(c.ctx) != nil {
				return
			}
			if err := c.mgr.Signal(c.ctx, c.owner, signo); err != nil {
				rt.log.Warn("container signal failed", "object", o.label, "signal", signo, "err", err)
			}
		}()
		return nil, nil
	case "ctDestroy":
		opID := argInt(a, 0)
		rt.async(opID, func() ([]any, error) {
			if err := c.waitStarted(c.ctx); err != nil {
				return nil, err
			}
			// The script keeps the reason it gave; Monitor's own report is
			// replaced by it in JavaScript.
			return nil, c.mgr.Destroy(c.ctx, c.owner, nil)
		})
		return nil, nil
	case "ctInactivity":
		opID, ms := argInt(a, 0), argFloat(a, 1)
		rt.async(opID, func() ([]any, error) {
			return nil, c.mgr.SetInactivityTimeout(c.owner, time.Duration(ms*float64(time.Millisecond)))
		})
		return nil, nil
	case "ctInspect":
		opID := argInt(a, 0)
		rt.async(opID, func() ([]any, error) {
			if err := c.waitStarted(c.ctx); err != nil {
				return nil, err
			}
			inst, err := c.mgr.Inspect(c.ctx, c.owner)
			if errors.Is(err, container.ErrNotFound) {
				return []any{nil}, nil
			}
			if err != nil {
				return nil, err
			}
			labels := map[string]string{}
			for k, v := range inst.Labels {
				if !strings.HasPrefix(k, "berth.") {
					labels[k] = v
				}
			}
			b, err := json.Marshal(map[string]any{"labels": labels, "image": inst.Image})
			return []any{string(b)}, err
		})
		return nil, nil
	case "ctConnect":
		rt.connectContainer(o, argInt(a, 0), argInt(a, 1))
		return nil, nil
	case "ctIntercept":
		rt.interceptOutbound(o, a)
		return nil, nil
	case "ctExec":
		return nil, rt.execContainer(o, a)
	case "ctKill":
		p := rt.procs[argInt(a, 0)]
		if p == nil {
			return nil, nil
		}
		sig := syscall.Signal(argInt(a, 1))
		go func() {
			if err := p.signal(sig); err != nil {
				rt.log.Warn("exec kill failed", "object", o.label, "err", err)
			}
		}()
		return nil, nil
	case "ctResize":
		// Fire and forget, as workerd's resize(); a process that has
		// exited is gone from procs.
		p := rt.procs[argInt(a, 0)]
		if p == nil {
			return nil, nil
		}
		size := container.TermSize{Cols: uint(argInt(a, 1)), Rows: uint(argInt(a, 2))}
		go func() {
			if err := p.proc.Resize(context.Background(), size); err != nil {
				rt.log.Warn("exec resize failed", "object", o.label, "err", err)
			}
		}()
		return nil, nil
	}
	return nil, fmt.Errorf("unknown container operation %q", op)
}

func argFloat(args []any, i int) float64 {
	if i < len(args) {
		switch v := args[i].(type) {
		case int:
			return float64(v)
		case float64:
			return v
		}
	}
	return 0
}

// dialContainer connects to port in o's container once the start() calls
// before it were made. The connection keeps the object live and its
// container busy (Manager.Dial holds it) until it is closed.
func (rt *runtime) dialContainer(ctx context.Context, o *object, port int) (net.Conn, error) {
	c := o.ct
	if err := c.waitStarted(ctx); err != nil {
		return nil, err
	}
	conn, err := c.mgr.Dial(ctx, c.owner, port)
	if err != nil {
		return nil, c.notRunning(err)
	}
	return &keptConn{Conn: conn, release: o.state.KeepAlive()}, nil
}

// keptConn releases the object's keep-alive when it is closed.
type keptConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (k *keptConn) Close() error {
	k.once.Do(k.release)
	return k.Conn.Close()
}

func (k *keptConn) CloseWrite() error {
	if cw, ok := k.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// containerTransport speaks HTTP/1.1 to a port of o's container, one
// connection per request, which holds the container busy while it is open
// (a WebSocket's). An error after the connection was made (the container
// went away mid-request) reads "Network connection lost.".
func (rt *runtime) containerTransport(o *object, port int) *containerRoundTripper {
	rtr := &containerRoundTripper{}
	rtr.t = &http.Transport{
		DisableKeepAlives:  true,
		DisableCompression: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			conn, err := rt.dialContainer(ctx, o, port)
			if err != nil {
				return nil, &dialError{err}
			}
			return conn, nil
		},
	}
	return rtr
}

// Pooled keep-alive connections per container port: a new connection per
// request costs a dial into the container's network namespace here and an
// accept there, which under a small instance type's CPU quota is most of
// what a request costs the container.
const (
	containerPoolIdle    = 32
	containerPoolTimeout = time.Minute
)

// pooledContainerTransport is containerTransport for getTcpPort(port).fetch:
// connections are kept alive between requests and do not hold the
// container busy while idle; each request holds it (and the object) until
// its response body ends.
func (rt *runtime) pooledContainerTransport(o *object, port int) *containerRoundTripper {
	c := o.ct
	c.mu.Lock()
	t := c.pools[port]
	if t == nil {
		dial := func(ctx context.Context) (net.Conn, error) {
			conn, err := c.mgr.DialIdle(ctx, c.owner, port)
			if err != nil {
				return nil, &dialError{err}
			}
			return conn, nil
		}
		t = &connPool{dial: dial, now: time.Now, next: &http.Transport{
			DisableCompression:  true,
			MaxIdleConnsPerHost: containerPoolIdle,
			IdleConnTimeout:     containerPoolTimeout,
			DialContext:         func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) },
		}}
		if c.pools == nil {
			c.pools = make(map[int]*connPool)
		}
		c.pools[port] = t
	}
	c.mu.Unlock()
	return &containerRoundTripper{t: t, use: func(ctx context.Context) (func(), error) {
		if err := c.waitStarted(ctx); err != nil {
			return nil, err
		}
		release, err := c.mgr.Use(ctx, c.owner)
		if err != nil {
			return nil, c.notRunning(err)
		}
		keep := o.state.KeepAlive()
		return func() { release(); keep() }, nil
	}}
}

type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

type containerRoundTripper struct {
	t http.RoundTripper
	// use, when set, marks the container and its object busy for one
	// request, until its response body ends.
	use func(ctx context.Context) (release func(), err error)
}

func (c *containerRoundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	release := func() {}
	if c.use != nil {
		r, err := c.use(req.Context())
		if err != nil {
			return nil, &dialError{err}
		}
		release = r
	}
	resp, err := c.t.RoundTrip(req)
	if err != nil {
		release()
		var de *dialError
		if errors.As(err, &de) || req.Context().Err() != nil {
			return nil, err
		}
		return nil, &errNetworkLost{err}
	}
	resp.Body = &lostBody{ReadCloser: resp.Body, release: release, ended: make(chan struct{})}
	return resp, nil
}

// lostBody reports a response body cut short by the container as a lost
// connection, and tells when it ended (read to its end, failed or closed).
type lostBody struct {
	io.ReadCloser
	release func()
	once    sync.Once
	ended   chan struct{}
}

func (b *lostBody) end() {
	b.once.Do(func() {
		b.release()
		close(b.ended)
	})
}

func (b *lostBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil {
		b.end()
		if err != io.EOF && !errors.Is(err, context.Canceled) {
			err = &errNetworkLost{err}
		}
	}
	return n, err
}

func (b *lostBody) Close() error {
	err := b.ReadCloser.Close()
	b.end()
	return err
}

// containerTarget parses the fetch target of getTcpPort(port).fetch:
// "@ct\n<object>\n<port>".
func (rt *runtime) containerTarget(target string) (*object, int, error) {
	parts := strings.Split(target, "\n")
	if len(parts) != 3 {
		return nil, 0, fmt.Errorf("bad container target %q", target)
	}
	jsID, _ := strconv.Atoi(parts[1])
	port, _ := strconv.Atoi(parts[2])
	o := rt.objs[jsID]
	if o == nil || o.gone || o.ct == nil {
		return nil, 0, fmt.Errorf("%w: the Durable Object of this container port is gone", ErrObjectReset)
	}
	return o, port, nil
}

const containerTargetPrefix = "@ct\n"

// connectContainer settles op with a raw connection to port: a host body
// to read and a sink to write, as getTcpPort(port).connect() needs.
func (rt *runtime) connectContainer(o *object, op, port int) {
	rt.loop.Hold()
	go func() {
		conn, err := rt.dialContainer(o.ct.ctx, o, port)
		rt.loop.Post(func() {
			rt.loop.Release()
			if err != nil {
				rt.settle(op, err)
				return
			}
			handle := rt.addBody(conn, -1, "")
			pr, pw := io.Pipe()
			rt.nextBody++
			sink := -rt.nextBody // fetch sinks are keyed by operation ids, which are positive
			rt.sinks[sink] = pw
			go func() {
				_, err := io.Copy(conn, pr)
				pr.CloseWithError(err)
				if cw, ok := conn.(interface{ CloseWrite() error }); ok && err == nil {
					_ = cw.CloseWrite()
				}
			}()
			rt.settle(op, nil, handle, sink)
		})
	}()
}

// ---- exec --------------------------------------------------------------------

// execProc is a process exec() started, by id.
type execProc struct {
	proc   container.Process
	signal func(syscall.Signal) error
}

func (rt *runtime) execContainer(o *object, a []any) error {
	opID := argInt(a, 0)
	var opts struct {
		Cmd    []string          `json:"cmd"`
		Cwd    string            `json:"cwd"`
		Env    map[string]string `json:"env"`
		User   string            `json:"user"`
		Stdin  bool              `json:"stdin"`
		Stdout bool              `json:"stdout"`
		Stderr string            `json:"stderr"` // "pipe", "ignore" or "combined"
		Pty    bool              `json:"pty"`
		Cols   uint              `json:"cols"`
		Rows   uint              `json:"rows"`
	}
	if err := json.Unmarshal([]byte(argString(a, 1)), &opts); err != nil {
		return fmt.Errorf("exec: %w", err)
	}
	c := o.ct
	spec := container.ExecSpec{Cmd: opts.Cmd, Env: opts.Env, WorkDir: opts.Cwd, User: opts.User, TTY: opts.Pty,
		Size: container.TermSize{Cols: opts.Cols, Rows: opts.Rows}}
	// The output waits in execPipes, so that the process can end (and its
	// exit code settle) before the script reads it.
	var outP, errP *execPipe
	if opts.Stdout {
		outP = newExecPipe()
		spec.Stdout = outP
	}
	switch opts.Stderr {
	case "pipe":
		errP = newExecPipe()
		spec.Stderr = errP
	case "combined":
		if outP != nil {
			spec.Stderr = outP
		}
	}
	var inR *io.PipeReader
	var inW *io.PipeWriter
	if opts.Stdin {
		inR, inW = io.Pipe()
		spec.Stdin = inR
	}
	closeAll := func(err error) {
		for _, w := range []*execPipe{outP, errP} {
			if w != nil {
				w.CloseWithError(err)
			}
		}
		if inR != nil {
			inR.CloseWithError(err)
		}
	}
	rt.loop.Hold()
	go func() {
		var proc container.Process
		err := c.waitStarted(c.ctx)
		if err == nil {
			proc, err = c.mgr.Exec(c.ctx, c.owner, spec)
		}
		if err != nil {
			closeAll(err)
			rt.loop.Post(func() { rt.loop.Release(); rt.settle(opID, err) })
			return
		}
		release := c.mgr.Hold(c.owner) // a running process is activity
		rt.loop.Post(func() {
			rt.loop.Release()
			rt.nextProc++
			id := rt.nextProc
			p := &execProc{proc: proc, signal: func(sig syscall.Signal) error {
				return proc.Signal(context.Background(), sig)
			}}
			rt.procs[id] = p
			out, errh, in := 0, 0, 0
			if outP != nil {
				out = rt.addBody(outP, -1, "")
			}
			if errP != nil {
				errh = rt.addBody(errP, -1, "")
			}
			if inW != nil {
				rt.nextBody++
				in = -rt.nextBody
				rt.sinks[in] = inW
			}
			rt.settle(opID, nil, id, out, errh, in, proc.PID())
			// The exit code is reported through __berth_ct_execExit.
			rt.loop.Hold()
			go func() {
				code, err := proc.Wait(c.ctx)
				release()
				closeAll(nil)
				rt.loop.Post(func() {
					rt.loop.Release()
					delete(rt.procs, id)
					msg := ""
					if err != nil {
						msg = err.Error()
					}
					rt.call("__berth_ct_execExit", id, code, msg)
				})
			}()
		})
	}()
	return nil
}

// ---- WebSockets and streams to Durable Objects (stub.fetch) ------------------------

// objectDialer returns a dial function whose connections are served by the
// fetch handler of the object target names: an HTTP/1.1 server on an
// in-memory pipe, so that an upgrade to a WebSocket works as on a network.
func (w *Worker) objectDialer(target string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, _, _ string) (net.Conn, error) {
		client, server := net.Pipe()
		srv := &http.Server{
			Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
				if err := w.serveObject(rw, r, target); err != nil {
					var hw *headWritten
					if !errors.As(err, &hw) {
						http.Error(rw, err.Error(), http.StatusInternalServerError)
					}
				}
			}),
			ErrorLog: nil,
		}
		go func() { _ = srv.Serve(&oneConnListener{conn: server}) }()
		return client, nil
	}
}

// serveObject runs r through the fetch handler of the object target names.
func (w *Worker) serveObject(rw http.ResponseWriter, r *http.Request, target string) error {
	id, err := w.targetID(target)
	if err != nil {
		return err
	}
	o, release, err := w.getObject(r.Context(), id)
	if err != nil {
		return err
	}
	defer release()
	return w.serve(rw, r, "", o)
}

// oneConnListener hands out one connection, then blocks until it is closed.
type oneConnListener struct {
	conn net.Conn
	once sync.Once
	done chan struct{}
	mu   sync.Mutex
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	if l.done == nil {
		l.done = make(chan struct{})
	}
	done := l.done
	l.mu.Unlock()
	var c net.Conn
	l.once.Do(func() { c = &notifyConn{Conn: l.conn, done: done} })
	if c != nil {
		return c, nil
	}
	<-done
	return nil, net.ErrClosed
}

func (l *oneConnListener) Close() error { return nil }

func (l *oneConnListener) Addr() net.Addr { return pipeAddr{} }

type notifyConn struct {
	net.Conn
	once sync.Once
	done chan struct{}
}

func (c *notifyConn) Close() error {
	c.once.Do(func() { close(c.done) })
	return c.Conn.Close()
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "durable-object" }

// closeContainer stops watching the container when the activation ends;
// the container itself runs on (the next activation asks its status).
func (o *object) closeContainer() {
	if o.ct != nil {
		o.ct.cancel()
		o.ct.dropPools()
	}
}
