// Package worker runs Cloudflare-style Worker scripts: a bundled ES module
// whose default export has fetch(request, env, ctx), answering HTTP requests
// through an http.Handler.
//
// The Web platform a script sees (Request, Response, Headers, URL, streams,
// TextEncoder, crypto, timers, fetch, …) is written in JavaScript (js/) on top
// of a few Go host operations (host.go). Each runtime is one jsengine.Engine
// owned by one goroutine running its event loop; a Worker is a pool of them,
// and each runtime interleaves many requests while they await I/O.
package worker

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/berth-dev/berth/internal/actor"
	"github.com/berth-dev/berth/internal/clock"
	"github.com/berth-dev/berth/internal/jsengine"
)

// Clock is the time source; tests inject a manual one so they do not sleep.
type Clock = clock.Clock

// Config describes one Worker version.
type Config struct {
	// Name identifies the Worker in logs.
	Name string
	// Script is the bundled ES module (bundle.Result.Code).
	Script string
	// Vars become the env object: plain vars and secrets. Values must
	// survive JSON encoding.
	Vars map[string]any
	// Logger receives console output, tagged with the request, and runtime
	// errors. Defaults to slog.Default().
	Logger *slog.Logger
	// Client performs the script's outbound fetch. Defaults to a client with
	// no timeout of its own (scripts use AbortSignal).
	Client *http.Client
	// Runtimes is the pool size; default 1.
	Runtimes int
	// MemoryLimit caps each runtime's JavaScript heap in bytes; 0 is none.
	// The request that runs the runtime out of it gets a 503; the others
	// in flight go on. If the heap is still at least half full after a
	// garbage collection, the runtime is replaced in the pool and stops
	// once the work it has in flight is done.
	MemoryLimit uint64
	// CPULimit bounds the time the JavaScript of one request may run
	// (wrangler's limits.cpu_ms); 0 means the default of 30 s, negative
	// means none. It is the sum over everything the request's code runs:
	// its handler, the callbacks of its I/O and timers, the microtasks
	// they queue (see limits.go for how code is attributed). It is
	// measured in wall-clock time, which equals CPU time on a runtime's
	// single goroutine unless the host is overloaded (jsengine.Account).
	// Past it the request's code is stopped and the request gets a 503;
	// the runtime and its other requests carry on.
	CPULimit time.Duration
	// SourceMap is the bundle's source map (bundle.Result.SourceMap); stack
	// traces in the log name the project's files and lines through it.
	// Without it the map inlined in Script is used, if there is one.
	SourceMap string
	// Clock and Random default to the real clock and crypto/rand.
	Clock  Clock
	Random io.Reader
	// Objects, if set, gives the script Durable Objects: env bindings,
	// ctx.exports, and the classes' instances living in this Worker.
	Objects *Objects

	owner  *Worker
	stacks *stackMapper
	// code is Script compiled to bytecode once per Worker version; every
	// runtime of the pool (and every replacement) evaluates it.
	code []byte
}

// ErrScript is wrapped by errors that come from the Worker's own code: an
// uncaught exception, a bad return value.
var ErrScript = errors.New("worker script failed")

// ErrClosed is returned for requests to a closed Worker.
var ErrClosed = errors.New("worker closed")

// ErrLimitExceeded is wrapped by a *LimitError.
var ErrLimitExceeded = errors.New("worker exceeded a resource limit")

// DefaultCPULimit is the CPU limit when Config.CPULimit is 0.
const DefaultCPULimit = 30 * time.Second

// LimitError fails a request that went past a limit.
type LimitError struct {
	Limit string // "CPU time" or "memory"
	Value string // the configured limit, such as "50ms" or "64 MiB"
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("worker exceeded the %s limit (%s)", e.Limit, e.Value)
}

func (e *LimitError) Unwrap() error { return ErrLimitExceeded }

// Worker is a pool of runtimes that all run the same script.
type Worker struct {
	cfg         Config
	entrypoints []string
	classes     []string
	env         string
	objMu       sync.Mutex
	objs        map[*object]struct{}
	slots       []*slot
	next        atomic.Uint64
	reqs        atomic.Uint64
	closed      atomic.Bool
	// retired are the runtimes replaced in the pool that still finish
	// their work in flight.
	retiredMu sync.Mutex
	retired   map[*runtime]struct{}
	// localFetches counts the stub.fetch calls that reached an object in
	// the caller's own runtime (localObject).
	localFetches atomic.Int64
	// targets remembers the ids of recent stub fetch targets: checking a
	// target's id against its name costs an HMAC.
	targetsMu sync.Mutex
	targets   map[string]actor.ID
}

// slot holds one runtime of the pool and replaces it when it retires.
type slot struct {
	index int
	mu    sync.Mutex
	rt    *runtime
	ready chan struct{} // closed when a replacement has started (or failed)
}

func (s *slot) current() (*runtime, chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rt, s.ready
}

// New starts cfg.Runtimes runtimes and evaluates the script in each. It fails
// if the script throws while loading or has no usable default export.
func New(ctx context.Context, cfg Config) (*Worker, error) {
	if cfg.Script == "" {
		return nil, fmt.Errorf("new worker %q: empty script", cfg.Name)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{}
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Random == nil {
		cfg.Random = rand.Reader
	}
	if cfg.Runtimes <= 0 {
		cfg.Runtimes = 1
	}
	env, err := json.Marshal(cfg.Vars)
	if err != nil {
		return nil, fmt.Errorf("new worker %q: encode vars: %w", cfg.Name, err)
	}
	if cfg.Vars == nil {
		env = []byte("{}")
	}
	if cfg.CPULimit == 0 {
		cfg.CPULimit = DefaultCPULimit
	}
	cfg.stacks = newStackMapper(cfg.Script, cfg.SourceMap)
	code, err := compileScript(cfg.Script)
	if err != nil {
		return nil, fmt.Errorf("new worker %q: %w: %s", cfg.Name, ErrScript, cfg.stacks.mapText(err.Error()))
	}
	cfg.code = code
	w := &Worker{cfg: cfg, env: string(env), objs: map[*object]struct{}{}, retired: map[*runtime]struct{}{}}
	w.cfg.owner = w
	for i := 0; i < cfg.Runtimes; i++ {
		s := &slot{index: i}
		rt, err := w.start(ctx, s)
		if err != nil {
			w.Close()
			return nil, fmt.Errorf("new worker %q: %w", cfg.Name, err)
		}
		s.rt = rt
		w.slots = append(w.slots, s)
		w.entrypoints = rt.entrypoints
		w.classes = rt.classes
	}
	return w, nil
}

func (w *Worker) start(ctx context.Context, s *slot) (*runtime, error) {
	return startRuntime(ctx, &w.cfg, w.env, s.index, func(old *runtime) { w.replace(s, old) })
}

// replace starts a new runtime in place of old, which retired. It is called
// on old's goroutine, so that from then on Serve finds s.ready set and waits
// for the replacement rather than sending old new requests; old finishes
// the work it has and stops by itself (Close stops it sooner).
func (w *Worker) replace(s *slot, old *runtime) {
	w.retiredMu.Lock()
	w.retired[old] = struct{}{}
	w.retiredMu.Unlock()
	go func() {
		<-old.done
		w.retiredMu.Lock()
		delete(w.retired, old)
		w.retiredMu.Unlock()
	}()
	s.mu.Lock()
	if s.rt != old || s.ready != nil {
		s.mu.Unlock()
		return
	}
	ready := make(chan struct{})
	s.ready = ready
	s.mu.Unlock()
	go w.restart(s, ready)
}

func (w *Worker) restart(s *slot, ready chan struct{}) {
	defer close(ready)
	if w.closed.Load() {
		return
	}
	rt, err := w.start(context.Background(), s)
	if err != nil {
		w.cfg.Logger.Error("restart worker runtime", "worker", w.cfg.Name, "runtime", s.index, "err", err)
		s.mu.Lock()
		s.ready = nil
		s.mu.Unlock()
		return
	}
	s.mu.Lock()
	s.rt, s.ready = rt, nil
	s.mu.Unlock()
	if w.closed.Load() {
		rt.stop()
	}
}

// Close stops every runtime. Requests in flight fail, and so do the events
// of the Durable Objects living here (which the host then drops).
func (w *Worker) Close() error {
	w.closed.Store(true)
	w.ResetObjects(ErrClosed)
	for _, s := range w.slots {
		rt, _ := s.current()
		rt.stop()
	}
	w.retiredMu.Lock()
	retired := slices.Collect(maps.Keys(w.retired))
	w.retiredMu.Unlock()
	for _, rt := range retired {
		rt.stop()
	}
	return nil
}

// ServeHTTP answers r with the Worker; errors become a 500 without details
// (the log has them).
func (w *Worker) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	if err := w.Serve(rw, r); err != nil {
		var hw *headWritten
		if errors.As(err, &hw) {
			return // too late for a status; the body was cut short
		}
		var le *LimitError
		if errors.As(err, &le) {
			// What workerd answers ("Worker exceeded CPU time limit.").
			http.Error(rw, "Worker exceeded "+le.Limit+" limit.", http.StatusServiceUnavailable)
			return
		}
		status := http.StatusInternalServerError
		if errors.Is(err, ErrClosed) {
			status = http.StatusServiceUnavailable
		}
		http.Error(rw, http.StatusText(status), status)
	}
}

func (r *request) tagOrEmpty() string {
	if r == nil {
		return ""
	}
	return r.id
}

// headWritten marks an error that happened after the response head went out.
type headWritten struct{ err error }

func (e *headWritten) Error() string { return e.err.Error() }
func (e *headWritten) Unwrap() error { return e.err }

// Serve runs the script's fetch handler for r and writes its response to rw.
// It returns an error, without writing anything, when the script fails
// before it produced a response.
func (w *Worker) Serve(rw http.ResponseWriter, r *http.Request) error {
	return w.ServeEntrypoint(rw, r, "")
}

// Entrypoints lists the script's named WorkerEntrypoint exports (classes
// that extend WorkerEntrypoint from cloudflare:workers), which
// ServeEntrypoint can call; service bindings address them by name.
func (w *Worker) Entrypoints() []string { return slices.Clone(w.entrypoints) }

// Classes lists the names of every class (function) the script exports,
// which actor.Validate checks Durable Object bindings against.
func (w *Worker) Classes() []string { return slices.Clone(w.classes) }

// ErrNoEntrypoint is returned for an entrypoint name the script does not
// export.
var ErrNoEntrypoint = errors.New("no such entrypoint")

// ServeEntrypoint is Serve with the fetch method of the named
// WorkerEntrypoint class; "" is the default export.
func (w *Worker) ServeEntrypoint(rw http.ResponseWriter, r *http.Request, entrypoint string) error {
	if entrypoint != "" && !slices.Contains(w.entrypoints, entrypoint) {
		return fmt.Errorf("worker %q: entrypoint %q: %w", w.cfg.Name, entrypoint, ErrNoEntrypoint)
	}
	return w.serve(rw, r, entrypoint, nil)
}

// serve runs r through the script: the fetch handler of entrypoint, or of
// Durable Object obj (stub.fetch) when obj is set.
func (w *Worker) serve(rw http.ResponseWriter, r *http.Request, entrypoint string, obj *object) error {
	var s *slot
	var rt *runtime
	if obj != nil {
		rt = obj.rt
	} else {
		s = w.slots[int(w.next.Add(1)-1)%len(w.slots)]
		var ready chan struct{}
		rt, ready = s.current()
		if ready != nil { // its runtime retired: wait for the new one
			select {
			case <-ready:
			case <-r.Context().Done():
				return r.Context().Err()
			}
			rt, _ = s.current()
		}
	}
	req := &request{
		r:          r,
		id:         strconv.FormatUint(w.reqs.Add(1), 36),
		entrypoint: entrypoint,
		head:       make(chan head, 1),
		chunks:     make(chan chunk, 1),
	}
	url := requestURL(r)
	canonical := isCanonicalURL(url)
	var flat strings.Builder
	writeFlatHeaders(&flat, r.Header)
	if r.Host != "" && r.Header.Get("Host") == "" {
		flat.WriteString("host\n")
		flat.WriteString(r.Host)
		flat.WriteByte('\n')
	}
	hasBody := r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0
	if hasBody {
		// A Worker that streams the request body upstream may answer before
		// the upload ends; HTTP/1 needs full duplex for that. Writers that
		// cannot do it (tests' recorders) just return an error.
		ctl := http.NewResponseController(rw)
		_ = ctl.EnableFullDuplex()
		if obj == nil {
			body := &handlerBody{rc: r.Body}
			defer body.detach(ctl)
			r = r.WithContext(r.Context()) // a shallow copy: the caller's Request keeps its own Body
			r.Body = body
			req.r = r
		}
	}
	var h head
	for attempt := 0; ; attempt++ {
		cur := rt
		dispatch := func() { cur.dispatch(req, r.Method, url, flat.String(), hasBody, canonical) }
		if obj != nil {
			dispatch = func() { cur.dispatchObject(req, obj, r.Method, url, flat.String(), hasBody, canonical) }
		}
		if cur.post(dispatch) {
			var died bool
			select {
			case h = <-req.head:
			case <-r.Context().Done():
				rt.post(func() { rt.abandon(req) })
				return r.Context().Err()
			case <-rt.done:
				died = true
			}
			if !died {
				break
			}
			select {
			case h = <-req.head: // answered (or failed) just before the end
			default:
				if req.dispatched.Load() {
					return ErrClosed
				}
			}
			if h.status != 0 || h.err != nil {
				break
			}
		}
		// The runtime stopped (it retired and drained) before it took
		// this request: wait for its replacement, once.
		if attempt > 0 || w.closed.Load() || obj != nil {
			return ErrClosed
		}
		_, ready := s.current()
		if ready != nil {
			select {
			case <-ready:
			case <-r.Context().Done():
				return r.Context().Err()
			}
		}
		rt, _ = s.current()
	}
	if h.err != nil {
		return h.err
	}
	if h.ws != nil {
		return w.serveWebSocket(rw, r, rt, h)
	}
	hdr := rw.Header()
	for i := 0; i+1 < len(h.headers); i += 2 {
		hdr.Add(h.headers[i], h.headers[i+1])
	}
	rw.WriteHeader(h.status)
	if h.pipe != nil {
		return copyBody(rw, h.pipe, r.Method == http.MethodHead)
	}
	if !h.stream {
		if len(h.body) > 0 && r.Method != http.MethodHead {
			_, err := rw.Write(h.body)
			return err
		}
		return nil
	}
	flusher, _ := rw.(http.Flusher)
	for {
		select {
		case c := <-req.chunks:
			if c.end {
				if c.err != nil {
					return &headWritten{c.err}
				}
				return nil
			}
			_, err := rw.Write(c.data)
			if err == nil && flusher != nil {
				flusher.Flush()
			}
			rt.post(func() { rt.settle(c.op, err) })
			if err != nil {
				return &headWritten{err}
			}
		case <-r.Context().Done():
			rt.post(func() { rt.abandon(req) })
			return &headWritten{r.Context().Err()}
		case <-rt.done:
			return &headWritten{ErrClosed}
		}
	}
}

func requestURL(r *http.Request) string {
	if r.URL.IsAbs() {
		return r.URL.String()
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	target := r.RequestURI // as the client sent it
	if !strings.HasPrefix(target, "/") {
		target = r.URL.RequestURI()
	}
	return scheme + "://" + r.Host + target
}

// copyBuffers are copyBody's buffers: one a response, 32 KiB each, would
// otherwise be most of what a proxied request allocates.
var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// copyBody streams a host body (an outbound fetch's response or the
// incoming request's body) to the client with a fixed buffer, flushing each
// chunk so that streamed responses stay streamed.
func copyBody(rw http.ResponseWriter, body io.ReadCloser, head bool) error {
	defer body.Close()
	if head {
		return nil
	}
	flusher, _ := rw.(http.Flusher)
	bp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bp)
	buf := *bp
	for {
		n, err := body.Read(buf)
		if n > 0 {
			if _, werr := rw.Write(buf[:n]); werr != nil {
				return &headWritten{werr}
			}
			if flusher != nil {
				flusher.Flush()
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return &headWritten{fmt.Errorf("read response body: %w", err)}
		}
	}
}

// request is one incoming request while the script handles it.
type request struct {
	r          *http.Request
	id         string  // shown in logs
	entrypoint string  // a named WorkerEntrypoint; "" is the default export
	obj        *object // the Durable Object it was sent to (stub.fetch)
	head       chan head
	chunks     chan chunk
	dispatched atomic.Bool // a runtime has started running it
	// Fields below are touched only on the runtime's loop goroutine.
	headSent bool
	finished bool
	cpu      jsengine.Account // the CPU time its code used (limits.go)
}

type head struct {
	status  int
	headers []string // name, value, name, value…
	body    []byte
	pipe    io.ReadCloser // a host body copied straight to the client
	stream  bool
	// ws is the socket of a 101 response; bridge is set too when it is an
	// outbound WebSocket Go proxies to the client.
	ws, bridge *socket
	err        error
}

type chunk struct {
	data []byte
	op   int
	end  bool
	err  error
}

// scriptError is an uncaught exception in the script. Its text and stack are
// for the log only; the client gets a plain 500.
type scriptError struct {
	text, stack string
}

func (e *scriptError) Error() string { return e.text }
func (e *scriptError) Unwrap() error { return ErrScript }

// handlerBody is an incoming request's body as the runtime sees it.
// net/http lets nothing use a request body once the handler has returned,
// and with full duplex on it must be closed before then (golang/go#68560):
// detach, run as the handler returns, cuts the runtime off and closes it.
type handlerBody struct {
	mu   sync.Mutex // held through each Read and Close
	rc   io.ReadCloser
	gone bool
	eof  bool // a Read reached the end
}

// errBodyGone is what the runtime reads from a body whose request is over.
var errBodyGone = errors.New("the request has ended; its body can no longer be read")

func (b *handlerBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.gone {
		return 0, errBodyGone
	}
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

// Close only cuts the runtime off; detach closes the body itself, on the
// handler's goroutine. Closed here, on the runtime's, the body's end
// would start the server's background read of the connection just as the
// handler may be returning, and a read deadline detach sets would then
// break that read and with it the connection.
func (b *handlerBody) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.gone = true
	return nil
}

// detach cuts the runtime off the body and closes it, as the handler
// returns. A Read blocked on the client is ended by a read deadline in the
// past (the client has its response). The close happens here, on the
// handler's goroutine, because with full duplex on, the server's own close
// after the handler reads the body to its end and starts a background
// read that races its read of the next request, which panics
// (golang/go#68560); here the server can still stop that read. A body not
// read to its end is closed under a past read deadline too: what of it has
// arrived is read, and when the rest has not, the server closes the
// connection instead of waiting for an upload nobody reads.
func (b *handlerBody) detach(ctl *http.ResponseController) {
	if !b.mu.TryLock() {
		_ = ctl.SetReadDeadline(time.Now())
		b.mu.Lock()
	}
	b.gone = true
	if !b.eof {
		// Not once the end was read: the server's background read is
		// running then, and a deadline would break it.
		_ = ctl.SetReadDeadline(time.Now())
	}
	_ = b.rc.Close()
	b.mu.Unlock()
}
