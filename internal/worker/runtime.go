package worker

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	_ "embed"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/berth-dev/berth/internal/jsengine"
)

var (
	//go:embed js/deps.js
	depsJS string
	//go:embed js/runtime.js
	runtimeJS string
	//go:embed js/fetch.js
	fetchJS string
	//go:embed js/websocket.js
	websocketJS string
	//go:embed js/cfworkers.js
	cloudflareWorkersJS string
	//go:embed js/durable.js
	durableJS string
	//go:embed js/intercept.js
	interceptJS string
)

//go:generate sh -c "cd jsdeps && npm ci --no-audit --no-fund && go run gen.go"

// Builtins are the module specifiers berth serves to scripts; pass them to
// bundle.Options.Builtins.
var Builtins = []string{"cloudflare:workers"}

// The platform code is the same for every runtime: compile it once per
// process and evaluate the bytecode in each new runtime.
var platform struct {
	once sync.Once
	code [][]byte
	err  error
}

func platformCode() ([][]byte, error) {
	platform.once.Do(func() {
		e, err := jsengine.NewQuickJS(jsengine.Options{})
		if err != nil {
			platform.err = err
			return
		}
		defer e.Close()
		for _, f := range []struct{ name, src string }{{"runtime.js", runtimeJS}, {"deps.js", depsJS}, {"fetch.js", fetchJS}, {"websocket.js", websocketJS}, {"durable.js", durableJS}, {"intercept.js", interceptJS}} {
			b, err := e.CompileScript(f.name, f.src)
			if err != nil {
				platform.err = err
				return
			}
			platform.code = append(platform.code, b)
		}
	})
	return platform.code, platform.err
}

// builtinModule serves the modules berth provides to scripts.
func builtinModule(name string) (string, error) {
	switch name {
	case "cloudflare:workers":
		return cloudflareWorkersJS, nil
	}
	return "", fmt.Errorf("module %q is not provided by berth", name)
}

// compileScript compiles the bundled script to module bytecode. The engine
// resolves the script's imports while compiling, so the compiling engine
// gets the same module loader as the runtimes.
func compileScript(script string) ([]byte, error) {
	e, err := jsengine.NewQuickJS(jsengine.Options{})
	if err != nil {
		return nil, err
	}
	defer e.Close()
	e.SetModuleLoader(builtinModule)
	return e.CompileModule(scriptName, script)
}

// runtime is one engine and the goroutine that owns it.
type runtime struct {
	cfg    *Config
	log    *slog.Logger
	eng    jsengine.Engine
	loop   *jsengine.Loop
	start  time.Time
	ctx    context.Context // ends when the runtime stops
	cancel context.CancelFunc
	done   chan struct{} // closed when the loop goroutine has ended
	// onRetire is called (on the loop goroutine) when the runtime leaves
	// the pool after running out of memory (limits.go); it goes on until
	// the work it has in flight is done.
	onRetire func(*runtime)

	// Loop-goroutine state.
	reqs    map[int]*request
	nextReq int

	// Limits (limits.go): the request tag JavaScript runs under, as it last
	// reported it; the ids of the requests in reqs by tag; the CPU account
	// of code that is no request's; recently stopped requests' accounts.
	tag          string
	tags         map[string]int
	untracked    jsengine.Account
	stopped      map[string]*stoppedRequest
	stoppedOrder []string
	cancels      []pendingCancel
	gcPending    bool // a collection after running out of memory is queued
	memDoubt     bool // memory ran out in code that was no request's
	retired      bool

	timers  map[int]*timer
	fetches map[int]context.CancelFunc
	// bodies are request and response bodies JavaScript has not read: the
	// script gets a handle and the bytes stay in Go unless it reads them.
	bodies   map[int]*hostBody
	nextBody int
	// sinks are outbound request bodies fed from a JavaScript stream, by
	// fetch operation id.
	sinks map[int]*io.PipeWriter
	// entrypoints are the script's named WorkerEntrypoint classes.
	entrypoints []string
	// sockets are the WebSockets the script can send on, by id.
	sockets    map[int]*socket
	nextSocket int
	// classes are the names of the script's exported classes.
	classes []string

	// Durable Objects living in this runtime (durable.go).
	objs     map[int]*object
	nextObj  int
	calls    map[int]pendingCall
	nextCall int
	dirty    map[*object]struct{} // objects with an open event transaction
	holds    map[int]func()       // ctx.waitUntil and blockConcurrencyWhile keep-alives
	nextHold int
	// procs are the processes ctx.container.exec() started, by id.
	procs    map[int]*execProc
	nextProc int
}

type hostBody struct {
	rc    io.ReadCloser
	size  int64  // -1 when unknown
	owner string // the request whose code made it; it is closed when that request ends
	// ended, when set, is closed once the body was read to its end, failed
	// or was closed, wherever it went (a container's response body).
	ended <-chan struct{}
}

type timer struct {
	stop    func() bool
	stopped bool
}

func startRuntime(ctx context.Context, cfg *Config, env string, index int, onRetire func(*runtime)) (*runtime, error) {
	code, err := platformCode()
	if err != nil {
		return nil, fmt.Errorf("compile platform code: %w", err)
	}
	rctx, cancel := context.WithCancel(context.Background())
	rt := &runtime{
		cfg:     cfg,
		log:     cfg.Logger.With("worker", cfg.Name, "runtime", index),
		start:   cfg.Clock.Now(),
		ctx:     rctx,
		cancel:  cancel,
		done:    make(chan struct{}),
		sockets: map[int]*socket{},
		reqs:    map[int]*request{},
		timers:  map[int]*timer{},
		fetches: map[int]context.CancelFunc{},
		bodies:  map[int]*hostBody{},
		sinks:   map[int]*io.PipeWriter{},
		objs:    map[int]*object{},
		calls:   map[int]pendingCall{},
		dirty:   map[*object]struct{}{},
		holds:   map[int]func(){},
		procs:   map[int]*execProc{},

		onRetire: onRetire,
		tags:     map[string]int{},
		stopped:  map[string]*stoppedRequest{},
	}
	ready := make(chan error, 1)
	go func() {
		defer close(rt.done)
		err := rt.init(code, env)
		ready <- err
		if err != nil {
			return
		}
		_ = rt.loop.RunUntil(rctx, rt.drained)
		rt.cancel() // drained: what waits on rt.ctx gives up
		rt.shutdown()
	}()
	select {
	case err := <-ready:
		if err != nil {
			cancel()
			return nil, err
		}
		return rt, nil
	case <-ctx.Done():
		cancel()
		return nil, ctx.Err()
	}
}

// init runs on the runtime goroutine.
func (rt *runtime) init(code [][]byte, env string) error {
	eng, err := jsengine.NewQuickJS(jsengine.Options{
		OnJobError: func(err error) {
			if rt.checkLimit(err, 0) {
				return
			}
			rt.log.Error("uncaught exception in a microtask", "err", rt.cfg.stacks.mapText(errorWithStack(err)))
		},
		OnUnhandledRejection: rt.unhandledRejection,
	})
	if err != nil {
		return err
	}
	rt.eng, rt.loop = eng, eng.Loop()
	fail := func(err error) error {
		eng.Close()
		return err
	}
	if rt.cfg.MemoryLimit > 0 {
		eng.SetMemoryLimit(rt.cfg.MemoryLimit)
	}
	if err := eng.Register("__berth_host", rt.host); err != nil {
		return fail(err)
	}
	// Date.now from the runtime's clock: the engine's own asks the kernel
	// (a system call through the C library), the Go clock reads the vDSO.
	dateNow := func([]any) (any, error) { return float64(rt.cfg.Clock.Now().UnixMilli()), nil }
	if err := eng.Register("__berth_dateNow", dateNow); err != nil {
		return fail(err)
	}
	// Start-up is no request's and runs unmetered; from then on JavaScript
	// is charged to the request whose tag it runs under (limits.go).
	rt.untracked = jsengine.Account{Limit: rt.cfg.CPULimit, PerTurn: true, OnExceeded: rt.untrackedExceeded}
	defer eng.Charge(&rt.untracked)
	for _, b := range code {
		if err := eng.EvalBytecode(b); err != nil {
			return fail(fmt.Errorf("load platform code: %w", err))
		}
	}
	eng.SetModuleLoader(builtinModule)
	if err := eng.EvalModule(rt.cfg.code, "__berthWorker"); err != nil {
		return fail(fmt.Errorf("%w: load script: %s", ErrScript, rt.cfg.stacks.mapText(err.Error())))
	}
	names, err := eng.Call("__berth_init", env)
	if err != nil {
		return fail(fmt.Errorf("%w: %w", ErrScript, err))
	}
	if s, ok := names.(string); ok {
		var exports struct {
			Entrypoints []string `json:"entrypoints"`
			Classes     []string `json:"classes"`
		}
		_ = json.Unmarshal([]byte(s), &exports)
		rt.entrypoints, rt.classes = exports.Entrypoints, exports.Classes
	}
	return nil
}

// post runs f on the loop goroutine; false when the runtime has stopped.
func (rt *runtime) post(f func()) bool {
	select {
	case <-rt.done:
		return false
	default:
	}
	rt.loop.Post(f)
	return true
}

func (rt *runtime) stop() {
	rt.cancel()
	<-rt.done
}

// shutdown runs on the loop goroutine after the loop ended.
func (rt *runtime) shutdown() {
	for _, t := range rt.timers {
		t.stop()
	}
	for _, c := range rt.fetches {
		c()
	}
	for _, b := range rt.bodies {
		b.rc.Close()
	}
	for _, pw := range rt.sinks {
		pw.CloseWithError(ErrClosed)
	}
	for _, s := range rt.sockets {
		s.shutdown()
	}
	for _, req := range rt.reqs {
		rt.finish(req, ErrClosed)
	}
	rt.shutdownObjects()
	rt.eng.Close()
}

func (rt *runtime) call(fn string, args ...any) {
	if len(rt.cancels) > 0 {
		rt.cancelStopped()
	}
	if _, err := rt.eng.Call(fn, args...); err != nil && !rt.checkLimit(err, 0) {
		rt.log.Error("runtime call failed", "function", fn, "err", rt.cfg.stacks.mapText(errorWithStack(err)))
	}
	if len(rt.cancels) > 0 {
		rt.cancelStopped()
	}
	rt.flushWrites() // the end of a turn
}

// unhandledRejection logs a promise rejection no code handled, with its
// source-mapped stack, under the request that was current. The runtime
// carries on (workerd logs these too; the request they came from is not
// failed for it).
func (rt *runtime) unhandledRejection(err error) {
	if rt.checkLimit(err, 0) || rt.stopped[rt.tag] != nil {
		return // the limit was logged, and the request failed with it
	}
	attrs := []any{"err", err.Error()}
	if rt.tag != "" {
		attrs = append(attrs, "request", rt.tag)
	}
	var je *jsengine.Error
	if errors.As(err, &je) && je.Stack != "" {
		attrs = append(attrs, "stack", rt.cfg.stacks.mapText(je.Stack))
	}
	rt.log.Error("unhandled promise rejection", attrs...)
}

func (rt *runtime) dispatch(req *request, method, url, headers string, hasBody, canonical bool) {
	req.dispatched.Store(true)
	if len(rt.cancels) > 0 {
		rt.cancelStopped()
	}
	id := rt.addRequest(req)
	rt.enter(req)
	body := 0
	if hasBody {
		body = rt.addBody(req.r.Body, req.r.ContentLength, req.id)
	}
	if _, err := rt.eng.Call("__berth_dispatch", id, req.id, req.entrypoint, method, url, headers, body, canonical, requestProps(req.r)); err != nil && !rt.checkLimit(err, id) {
		rt.fail(id, err.Error(), "")
	}
	if len(rt.cancels) > 0 {
		rt.cancelStopped()
	}
	rt.flushWrites()
}

// addBody registers a body JavaScript may read or pass on; 0 is no body.
func (rt *runtime) addBody(rc io.ReadCloser, size int64, owner string) int {
	rt.nextBody++
	rt.bodies[rt.nextBody] = &hostBody{rc: rc, size: size, owner: owner}
	return rt.nextBody
}

// endRequest forgets request id once it has no more work, and closes the
// bodies its code left unread (an outbound fetch's response nobody
// consumed would otherwise hold its connection until the runtime stops).
func (rt *runtime) endRequest(id int) {
	req := rt.reqs[id]
	if req == nil {
		return
	}
	delete(rt.reqs, id)
	delete(rt.tags, req.id)
	if rt.tag == req.id {
		rt.eng.Charge(rt.account(req.id)) // what it left behind is no longer its
	}
	for handle, b := range rt.bodies {
		if b.owner == req.id {
			delete(rt.bodies, handle)
			b.rc.Close()
		}
	}
}

// takeBody hands the body's ownership to the caller.
func (rt *runtime) takeBody(handle int) (*hostBody, error) {
	b, ok := rt.bodies[handle]
	if !ok {
		return nil, errBodyUsed
	}
	delete(rt.bodies, handle)
	return b, nil
}

var errBodyUsed = errors.New("the body has already been read or closed")

// abandon is called when the client went away before the response ended.
func (rt *runtime) abandon(req *request) {
	req.finished = true
}

// settle resolves (err == nil) or rejects the JS promise of operation op.
func (rt *runtime) settle(op int, err error, values ...any) {
	if err != nil {
		rt.call("__berth_settle", append([]any{op, false, err.Error()}, values...)...)
		return
	}
	rt.call("__berth_settle", append([]any{op, true}, values...)...)
}

// async runs work off the loop and settles op with its result on the loop.
func (rt *runtime) async(op int, work func() ([]any, error)) {
	rt.loop.Hold()
	hostTasks.Go(func() {
		vals, err := work()
		rt.loop.Post(func() {
			rt.loop.Release()
			rt.settle(op, err, vals...)
		})
	})
}

func (rt *runtime) finish(req *request, err error) {
	if req.finished {
		return
	}
	req.finished = true
	if !req.headSent {
		req.headSent = true
		req.head <- head{err: err}
		return
	}
	// A write still waiting to be sent gives way to the end: the client
	// must learn that the body ended. Only the loop goroutine sends, so
	// the second send cannot block.
	select {
	case req.chunks <- chunk{end: true, err: err}:
	default:
		select {
		case <-req.chunks:
		default:
		}
		req.chunks <- chunk{end: true, err: err}
	}
}

func (rt *runtime) fail(id int, text, stack string) {
	if name, msg, ok := strings.Cut(text, ": "); ok && name == "InternalError" && rt.checkLimit(&jsengine.Error{Name: name, Message: msg}, id) {
		return // a limit's error that reached the handler's promise (limits.go)
	}
	req := rt.reqs[id]
	if req == nil && rt.wasStopped(id) {
		return // its work failing after the stop, which was logged
	}
	attrs := []any{"err", text}
	if req != nil {
		attrs = append(attrs, "request", req.id)
	}
	if stack != "" {
		attrs = append(attrs, "stack", rt.cfg.stacks.mapText(stack))
	}
	rt.log.Error("uncaught exception in fetch handler", attrs...)
	if req != nil {
		rt.finish(req, &scriptError{text: text, stack: stack})
	}
}

// ---- host operations ---------------------------------------------------------

func argString(args []any, i int) string {
	if i < len(args) {
		if s, ok := args[i].(string); ok {
			return s
		}
	}
	return ""
}

func argInt(args []any, i int) int {
	if i < len(args) {
		switch v := args[i].(type) {
		case int:
			return v
		case float64:
			return int(v)
		}
	}
	return 0
}

func argBytes(args []any, i int) ([]byte, bool) {
	if i < len(args) {
		b, ok := args[i].([]byte)
		return b, ok
	}
	return nil, false
}

func argBool(args []any, i int) bool {
	if i < len(args) {
		b, _ := args[i].(bool)
		return b
	}
	return false
}

var errNoRequest = errors.New("the request has already finished")

// host is __berth_host(op, ...args), the one Go function JavaScript calls.
// Asynchronous operations take an operation id as their first argument and
// end with __berth_settle(id, ok, ...values).
func (rt *runtime) host(args []any) (any, error) {
	op := argString(args, 0)
	a := args[1:]
	if outputOps[op] {
		rt.flushWrites()
	}
	switch op {
	case "tag":
		rt.setTag(argString(a, 0))
		return nil, nil
	case "log":
		level := slog.LevelInfo
		switch argString(a, 0) {
		case "debug":
			level = slog.LevelDebug
		case "warn":
			level = slog.LevelWarn
		case "error":
			level = slog.LevelError
		}
		attrs := []any{"source", "console"}
		if tag := argString(a, 1); tag != "" {
			attrs = append(attrs, "request", tag)
		}
		rt.log.Log(context.Background(), level, rt.cfg.stacks.mapText(argString(a, 2)), attrs...)
		return nil, nil
	case "now":
		return float64(rt.cfg.Clock.Now().Sub(rt.start).Nanoseconds()) / 1e6, nil
	case "timer":
		rt.setTimer(argInt(a, 0), argInt(a, 1))
		return nil, nil
	case "clearTimer":
		id := argInt(a, 0)
		if t, ok := rt.timers[id]; ok {
			delete(rt.timers, id)
			if t.stop() {
				rt.loop.Release()
			} else {
				t.stopped = true
			}
		}
		return nil, nil
	case "utf8Encode":
		return []byte(argString(a, 0)), nil
	case "utf8Decode":
		b, _ := argBytes(a, 0)
		return decodeUTF8(b, argBool(a, 1))
	case "atob":
		return atob(argString(a, 0))
	case "btoa":
		return btoa(argString(a, 0))
	case "base64Decode":
		s := strings.TrimRight(argString(a, 0), "=")
		b, err := base64.RawStdEncoding.DecodeString(s)
		if err != nil {
			return nil, &domError{"DataError", "invalid base64"}
		}
		return b, nil
	case "random":
		n := argInt(a, 0)
		b := make([]byte, n)
		if _, err := io.ReadFull(rt.cfg.Random, b); err != nil {
			return nil, fmt.Errorf("random: %w", err)
		}
		return b, nil
	case "randomHex":
		b := make([]byte, argInt(a, 0))
		if _, err := io.ReadFull(rt.cfg.Random, b); err != nil {
			return nil, fmt.Errorf("random: %w", err)
		}
		return hex.EncodeToString(b), nil
	case "uuid":
		var b [16]byte
		if _, err := io.ReadFull(rt.cfg.Random, b[:]); err != nil {
			return nil, fmt.Errorf("random: %w", err)
		}
		b[6] = b[6]&0x0f | 0x40
		b[8] = b[8]&0x3f | 0x80
		h := hex.EncodeToString(b[:])
		return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:], nil
	case "digest":
		h, err := newHash(argString(a, 0))
		if err != nil {
			return nil, err
		}
		b, _ := argBytes(a, 1)
		hh := h()
		hh.Write(b)
		return hh.Sum(nil), nil
	case "hmac", "hmacVerify":
		h, err := newHash(argString(a, 0))
		if err != nil {
			return nil, err
		}
		key, _ := argBytes(a, 1)
		data, _ := argBytes(a, 2)
		m := hmac.New(h, key)
		m.Write(data)
		sum := m.Sum(nil)
		if op == "hmac" {
			return sum, nil
		}
		sig, _ := argBytes(a, 3)
		return hmac.Equal(sum, sig), nil
	case "parseMultipart":
		b, _ := argBytes(a, 1)
		return parseMultipart(argString(a, 0), b)
	case "respond":
		return nil, rt.respond(a)
	case "write":
		opID, id := argInt(a, 0), argInt(a, 1)
		req := rt.reqs[id]
		if req == nil || req.finished {
			return nil, errNoRequest
		}
		b, _ := argBytes(a, 2)
		select {
		case req.chunks <- chunk{data: b, op: opID}:
		default:
			return nil, errors.New("write: a previous write is still pending")
		}
		return nil, nil
	case "end":
		req := rt.reqs[argInt(a, 0)]
		if req == nil {
			return nil, nil
		}
		var err error
		if msg := argString(a, 1); msg != "" {
			err = &scriptError{text: msg}
		}
		rt.finish(req, err)
		return nil, nil
	case "fail":
		if argBool(a, 3) {
			// Cloudflare would send the request on to the zone's origin;
			// locally there is no origin, so the client gets the 500.
			rt.log.Warn("passThroughOnException: no origin to pass the request to locally; answering 500", "request", rt.reqs[argInt(a, 0)].tagOrEmpty())
		}
		rt.fail(argInt(a, 0), argString(a, 1), argString(a, 2))
		return nil, nil
	case "done":
		id := argInt(a, 0)
		if req := rt.reqs[id]; req != nil {
			rt.finish(req, &scriptError{text: "the fetch handler finished without a response"})
			rt.endRequest(id)
		}
		return nil, nil
	case "readBody":
		opID := argInt(a, 0)
		b, err := rt.takeBody(argInt(a, 1))
		if err != nil {
			return nil, err
		}
		rt.async(opID, func() ([]any, error) {
			defer b.rc.Close()
			data, err := io.ReadAll(b.rc)
			return []any{data}, err
		})
		return nil, nil
	case "readChunk":
		opID, handle := argInt(a, 0), argInt(a, 1)
		b, ok := rt.bodies[handle]
		if !ok {
			return nil, errBodyUsed
		}
		rt.async(opID, func() ([]any, error) {
			buf := make([]byte, 64<<10)
			n, err := b.rc.Read(buf)
			if n > 0 {
				return []any{buf[:n]}, nil
			}
			if err == io.EOF {
				return []any{nil}, nil
			}
			if err == nil {
				return []any{[]byte{}}, nil
			}
			return nil, err
		})
		return nil, nil
	case "bodyEnd":
		// Settles when the body ends, even after it was handed on to Go
		// (passed through to a response) without JS reading it. Not held
		// on the loop: a body nobody reads must not keep the runtime busy.
		opID := argInt(a, 0)
		b, ok := rt.bodies[argInt(a, 1)]
		if !ok || b.ended == nil {
			rt.settle(opID, nil)
			return nil, nil
		}
		go func() {
			<-b.ended
			rt.loop.Post(func() { rt.settle(opID, nil) })
		}()
		return nil, nil
	case "closeBody":
		if b, err := rt.takeBody(argInt(a, 0)); err == nil {
			b.rc.Close()
		}
		return nil, nil
	case "sinkWrite":
		opID := argInt(a, 0)
		pw, ok := rt.sinks[argInt(a, 1)]
		if !ok {
			return nil, errors.New("the request body is no longer being sent")
		}
		data, _ := argBytes(a, 2)
		rt.async(opID, func() ([]any, error) {
			_, err := pw.Write(data)
			return nil, err
		})
		return nil, nil
	case "sinkClose":
		id := argInt(a, 0)
		if pw, ok := rt.sinks[id]; ok {
			delete(rt.sinks, id)
			if msg := argString(a, 1); msg != "" {
				pw.CloseWithError(&scriptError{text: msg})
			} else {
				pw.Close()
			}
		}
		return nil, nil
	case "fetch":
		rt.fetch(a)
		return nil, nil
	case "wsCreate":
		return rt.newSocket(argString(a, 0)).id, nil
	case "wsSend":
		sock := rt.sockets[argInt(a, 0)]
		if sock == nil {
			return nil, nil // closed meanwhile; the close event is on its way
		}
		switch d := a[1].(type) {
		case string:
			sock.enqueue(wsFrame{text: true, data: []byte(d)})
		case []byte:
			sock.enqueue(wsFrame{data: d})
		}
		return nil, nil
	case "wsClose":
		if sock := rt.sockets[argInt(a, 0)]; sock != nil {
			sock.enqueue(wsFrame{close: true, code: argInt(a, 1), reason: argString(a, 2)})
		}
		return nil, nil
	case "wsAccept":
		if sock := rt.sockets[argInt(a, 0)]; sock != nil {
			sock.startReading()
		}
		return nil, nil
	case "abortFetch":
		if c, ok := rt.fetches[argInt(a, 0)]; ok {
			c()
		}
		return nil, nil
	}
	if res, err, ok := rt.durableOp(op, a); ok {
		return res, err
	}
	return nil, fmt.Errorf("unknown host operation %q", op)
}

func newHash(name string) (func() hash.Hash, error) {
	switch name {
	case "SHA-1":
		return sha1.New, nil
	case "SHA-256":
		return sha256.New, nil
	case "SHA-384":
		return sha512.New384, nil
	case "SHA-512":
		return sha512.New, nil
	case "MD5":
		return md5.New, nil
	}
	return nil, &domError{"NotSupportedError", fmt.Sprintf("unrecognized hash algorithm %q", name)}
}

func (rt *runtime) setTimer(id, ms int) {
	t := &timer{}
	rt.loop.Hold()
	t.stop = rt.cfg.Clock.AfterFunc(time.Duration(ms)*time.Millisecond, func() {
		rt.loop.Post(func() {
			if rt.timers[id] != t {
				if t.stopped {
					rt.loop.Release() // cleared after it fired
				}
				return
			}
			delete(rt.timers, id)
			rt.loop.Release()
			rt.call("__berth_timer", id)
		})
	})
	rt.timers[id] = t
}

func splitFlat(flat string) []string {
	if flat == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(flat, "\n"), "\n")
}

// respond: (id, status, statusText, flatHeaders, body, final) where body is
// null, a string, an ArrayBuffer, a host body handle (copied to the client in
// Go), or undefined for a stream that follows. final means the request has
// no more work (no waitUntil), so it ends here without a "done".
func (rt *runtime) respond(a []any) error {
	id := argInt(a, 0)
	req := rt.reqs[id]
	if req == nil || req.finished || req.headSent {
		return errNoRequest
	}
	h := head{status: argInt(a, 1), headers: splitFlat(argString(a, 3))}
	if len(a) > 4 {
		switch b := a[4].(type) {
		case string:
			h.body = []byte(b)
		case []byte:
			h.body = b
		case int:
			hb, err := rt.takeBody(b)
			if err != nil {
				return err
			}
			h.pipe = hb.rc
		case jsengine.Undefined:
			h.stream = true
		}
	}
	if id := argInt(a, 6); id != 0 {
		sock := rt.sockets[id]
		if sock == nil {
			return errors.New("the WebSocket is closed")
		}
		h.status, h.ws = http.StatusSwitchingProtocols, sock
		if sock.conn != nil { // a fetched WebSocket nobody accepted: Go proxies it
			delete(rt.sockets, id)
			h.bridge = sock
		}
	}
	req.headSent = true
	req.head <- h
	if !h.stream {
		req.finished = true
	}
	if argBool(a, 5) {
		rt.endRequest(id)
	}
	return nil
}

// fetch: (op, method, url, flatHeaders, body, redirect). body is null, a
// string, an ArrayBuffer, a host body handle (streamed without passing
// through JavaScript) or true for a JavaScript stream that arrives through
// sinkWrite/sinkClose under the operation id. The response body stays in Go
// as a host body handle.
func (rt *runtime) fetch(a []any) {
	op := argInt(a, 0)
	method, url, redirect := argString(a, 1), argString(a, 2), argString(a, 5)
	headers := splitFlat(argString(a, 3))
	target := argString(a, 7)
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i] == "upgrade" && strings.EqualFold(strings.TrimSpace(headers[i+1]), "websocket") {
			rt.fetchWebSocket(op, url, headers, argString(a, 6), target)
			return
		}
	}
	client := *rt.cfg.Client
	if strings.HasPrefix(target, containerTargetPrefix) {
		o, port, err := rt.containerTarget(target)
		if err != nil {
			rt.settle(op, err)
			return
		}
		client = http.Client{Transport: rt.pooledContainerTransport(o, port)}
	}
	var body io.Reader
	size := int64(-1)
	switch b := a[4].(type) {
	case string:
		body, size = strings.NewReader(b), int64(len(b))
	case []byte:
		body, size = bytes.NewReader(b), int64(len(b))
	case int:
		hb, err := rt.takeBody(b)
		if err != nil {
			rt.settle(op, err)
			return
		}
		body, size = hb.rc, hb.size
	case bool:
		pr, pw := io.Pipe()
		rt.sinks[op] = pw
		body = pr
	}
	ctx, cancel := context.WithCancel(context.Background())
	rt.fetches[op] = cancel
	switch redirect {
	case "manual":
		client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	case "error":
		client.CheckRedirect = func(*http.Request, []*http.Request) error {
			return errors.New("redirect mode is \"error\"")
		}
	}
	do := client.Do
	if target != "" && !strings.HasPrefix(target, containerTargetPrefix) {
		do = func(req *http.Request) (*http.Response, error) { return rt.cfg.owner.roundTripObject(target, req) }
	}
	rt.loop.Hold()
	hostTasks.Go(func() {
		resp, err := doFetch(ctx, do, method, url, headers, body, size)
		rt.loop.Post(func() {
			rt.loop.Release()
			delete(rt.fetches, op)
			if pw, ok := rt.sinks[op]; ok && err != nil {
				delete(rt.sinks, op)
				pw.CloseWithError(err)
			}
			if err != nil {
				cancel()
				var se *scriptError
				if target != "" && !strings.HasPrefix(target, containerTargetPrefix) && errors.As(err, &se) {
					// The object's fetch handler threw: the caller gets its
					// exception, as workerd propagates it.
					err = errors.New(remoteErrorMark + se.text)
				}
				rt.settle(op, err)
				return
			}
			if ctx.Err() != nil { // aborted meanwhile
				resp.Body.Close()
				cancel()
				return
			}
			flat := flattenHeaders(resp.Header)
			_, statusText, _ := strings.Cut(resp.Status, " ") // "200 OK"
			statusText = strings.TrimSpace(statusText)
			final := url
			if resp.Request.Response != nil { // redirected
				final = resp.Request.URL.String()
			}
			handle := rt.addBody(&cancelOnClose{resp.Body, cancel}, resp.ContentLength, argString(a, 6))
			if lb, ok := resp.Body.(*lostBody); ok {
				rt.bodies[handle].ended = lb.ended
			}
			rt.settle(op, nil, resp.StatusCode, statusText, flat, handle, final, final != url)
		})
	})
}

// remoteErrorMark starts the text of a settled fetch error that is an
// exception a Durable Object's fetch handler threw ("Name: message"),
// which fetch.js rethrows as such (remoteError).
const remoteErrorMark = "\x00remote\x00"

// cancelOnClose releases the fetch's context with its body.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

func doFetch(ctx context.Context, do func(*http.Request) (*http.Response, error), method, url string, headers []string, body io.Reader, size int64) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", url, err)
	}
	if body != nil {
		// -1: a streamed body of unknown length (which a Durable Object's
		// fetch handler must still see as a body).
		req.ContentLength = size
	}
	for i := 0; i+1 < len(headers); i += 2 {
		switch headers[i] {
		case "host":
			req.Host = headers[i+1]
			continue
		case "content-length", "transfer-encoding", "connection", "keep-alive":
			continue // the transport frames the body itself
		}
		req.Header.Add(headers[i], headers[i+1])
	}
	resp, err := do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", url, err)
	}
	return resp, nil
}

func parseMultipart(contentType string, body []byte) (string, error) {
	_, params, err := mime.ParseMediaType(contentType)
	if err != nil || params["boundary"] == "" {
		return "", fmt.Errorf("invalid multipart content type %q", contentType)
	}
	r := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	var parts [][]any
	for {
		p, err := r.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", fmt.Errorf("parse multipart body: %w", err)
		}
		data, err := io.ReadAll(p)
		if err != nil {
			return "", fmt.Errorf("parse multipart body: %w", err)
		}
		var filename any
		if p.FileName() != "" {
			filename = p.FileName()
		}
		ct := p.Header.Get("Content-Type")
		if filename != nil && ct == "" {
			ct = "application/octet-stream"
		}
		parts = append(parts, []any{p.FormName(), filename, ct, base64.StdEncoding.EncodeToString(data)})
	}
	out, err := json.Marshal(parts)
	if parts == nil {
		return "[]", err
	}
	return string(out), err
}

func errorWithStack(err error) string {
	var e *jsengine.Error
	if errors.As(err, &e) && e.Stack != "" {
		return err.Error() + "\n" + e.Stack
	}
	return err.Error()
}
