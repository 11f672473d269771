package worker

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"maps"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/berth-dev/berth/internal/actor"
	"github.com/berth-dev/berth/internal/jsengine"
	"github.com/berth-dev/berth/internal/storage"
)

// Objects connects a Worker to the Durable Objects it serves and calls.
//
// Objects live inside the Worker's runtimes: each live object is pinned to
// one runtime of the pool (by its id) until it is evicted, so activating
// one costs a constructor call, not a new engine. The Host decides when an
// object lives; its Factory must call Activate on the Worker version that
// should run it (berth dev: the current one).
type Objects struct {
	// Host delivers events and owns activation, eviction and alarms.
	Host *actor.Host
	// Bindings maps env binding names to Durable Object classes.
	Bindings map[string]string
	// Classes are the classes the host serves; each appears in ctx.exports
	// (loopback stubs without a binding).
	Classes []string
	// Containers runs the containers of the classes in ContainerClasses,
	// whose objects get ctx.container; nil when the app has none.
	Containers       Containers
	ContainerClasses []string
}

// ErrObjectReset fails events of an object that was aborted, evicted with
// events in flight, or replaced by a new version of the code.
var ErrObjectReset = errors.New("durable object was reset")

// object is one activation of a Durable Object, living in one runtime.
type object struct {
	w     *Worker
	rt    *runtime
	state *actor.State
	db    *storage.DB
	label string // class:id-prefix, for logs

	// Loop-goroutine state.
	jsID       int
	gone       bool // closed: no more events or storage
	aborted    bool // its uncommitted writes must not be committed
	inTx       bool // the event transaction is open
	savepoints map[int]*storage.Savepoint
	nextSp     int
	calls      map[int]bool // RPC calls and alarms in flight

	ct *objContainer // ctx.container; nil when the class has none
}

var _ actor.Object = (*object)(nil)

type callResult struct {
	ok      bool // false: the object threw; payload is the exception
	payload []byte
	err     error // the call did not complete
}

type pendingCall struct {
	ch  chan callResult
	obj *object
}

// Activate builds the activation of the object the host is activating: it
// runs the class's constructor in the runtime the id is pinned to. It is
// the body of an actor.Factory.
func (w *Worker) Activate(ctx context.Context, st *actor.State) (actor.Object, error) {
	if w.closed.Load() {
		return nil, ErrClosed
	}
	h := fnv.New32a()
	h.Write([]byte(st.ID.String()))
	s := w.slots[int(h.Sum32()%uint32(len(w.slots)))]
	rt, ready := s.current()
	if ready != nil {
		select {
		case <-ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		rt, _ = s.current()
	}
	cls := st.ID.Namespace().Class()
	o := &object{w: w, rt: rt, state: st, db: st.Storage, label: cls + ":" + st.ID.String()[:8],
		savepoints: map[int]*storage.Savepoint{}, calls: map[int]bool{}}
	// The constructor must know whether the container runs (ctx.container
	// .running), so its status is asked first.
	running, hasContainer := w.attachContainer(ctx, o)
	ctRunning := any(nil)
	if hasContainer {
		ctRunning = running
	}
	errc := make(chan error, 1)
	if !rt.post(func() { errc <- rt.newObject(o, ctRunning) }) {
		o.closeContainer()
		return nil, ErrClosed
	}
	select {
	case err := <-errc:
		if err != nil {
			o.closeContainer()
			return nil, err
		}
	case <-rt.done:
		o.closeContainer()
		return nil, ErrClosed
	}
	if running {
		rt.watchContainer(o)
	}
	w.objMu.Lock()
	w.objs[o] = struct{}{}
	w.objMu.Unlock()
	return o, nil
}

// ResetObjects aborts every live object of this Worker version: their
// events in flight fail and their next events activate them anew (under
// whichever version the host's Factory picks). berth dev calls it when a
// new version takes over.
func (w *Worker) ResetObjects(reason error) {
	w.objMu.Lock()
	objs := slices.Collect(maps.Keys(w.objs))
	w.objMu.Unlock()
	for _, o := range objs {
		o.state.Abort(reason)
	}
}

// LiveObjects is the number of objects live in this Worker version.
func (w *Worker) LiveObjects() int {
	w.objMu.Lock()
	defer w.objMu.Unlock()
	return len(w.objs)
}

// newObject runs on the loop goroutine.
func (rt *runtime) newObject(o *object, ctRunning any) error {
	rt.nextObj++
	o.jsID = rt.nextObj
	rt.objs[o.jsID] = o
	name, _ := o.state.ID.Name()
	_, err := rt.eng.Call("__berth_do_new", o.jsID, o.state.ID.Namespace().Class(), o.state.ID.String(), name, o.label, ctRunning)
	if err != nil {
		delete(rt.objs, o.jsID)
		o.gone = true
		if o.inTx {
			delete(rt.dirty, o)
			_ = o.db.Rollback()
		}
		if rt.checkLimit(err, 0) {
			return ErrClosed
		}
		return fmt.Errorf("%w: constructor of %s: %s", ErrScript, o.label, rt.cfg.stacks.mapText(errorWithStack(err)))
	}
	rt.flushWrites()
	return nil
}

// Alarm delivers the alarm event and waits for the handler to settle.
func (o *object) Alarm(ctx context.Context, info actor.AlarmInfo) error {
	r := o.deliver(ctx, func(callID int) {
		o.rt.call("__berth_do_alarm", o.jsID, callID, info.IsRetry, info.RetryCount,
			float64(info.ScheduledTime.UnixMilli()), "alarm:"+o.label)
	})
	if r.err != nil {
		return r.err
	}
	if !r.ok {
		return fmt.Errorf("%w: alarm handler of %s threw", ErrScript, o.label)
	}
	return nil
}

// Close ends the activation: events still queued or in flight fail, the
// open event transaction is committed (eviction) or discarded (abort).
func (o *object) Close(ctx context.Context) error {
	defer func() {
		o.w.objMu.Lock()
		delete(o.w.objs, o)
		o.w.objMu.Unlock()
	}()
	done := make(chan struct{})
	if !o.rt.post(func() { o.rt.closeObject(o); close(done) }) {
		return nil
	}
	select {
	case <-done:
	case <-o.rt.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// deliver starts an event (start is called on the loop goroutine with the
// call's id) and waits for its doResult.
func (o *object) deliver(ctx context.Context, start func(callID int)) callResult {
	ch := make(chan callResult, 1)
	rt := o.rt
	if !rt.post(func() {
		if o.gone {
			ch <- callResult{err: ErrObjectReset}
			return
		}
		rt.nextCall++
		id := rt.nextCall
		rt.calls[id] = pendingCall{ch: ch, obj: o}
		o.calls[id] = true
		start(id)
	}) {
		return callResult{err: ErrClosed}
	}
	select {
	case r := <-ch:
		return r
	case <-rt.done:
		select {
		case r := <-ch:
			return r
		default:
		}
		return callResult{err: ErrObjectReset}
	case <-ctx.Done():
		return callResult{err: ctx.Err()}
	}
}

// closeObject runs on the loop goroutine.
func (rt *runtime) closeObject(o *object) {
	if o.gone {
		return
	}
	o.gone = true
	o.closeContainer()
	delete(rt.objs, o.jsID)
	rt.call("__berth_do_close", o.jsID)
	for id := range o.calls {
		if c, ok := rt.calls[id]; ok {
			delete(rt.calls, id)
			c.ch <- callResult{err: ErrObjectReset}
		}
	}
	for _, req := range rt.reqs {
		if req.obj == o {
			rt.finish(req, ErrObjectReset)
		}
	}
	rt.endTx(o)
}

// endTx ends o's event transaction for good: committed unless o was
// aborted or a user transaction is still open.
func (rt *runtime) endTx(o *object) {
	delete(rt.dirty, o)
	if !o.inTx {
		return
	}
	o.inTx = false
	if o.aborted || len(o.savepoints) > 0 {
		_ = o.db.Rollback()
		o.state.AlarmChanged()
		return
	}
	if err := o.db.Commit(); err != nil {
		rt.log.Error("commit durable object storage", "object", o.label, "err", err)
	}
}

// flushWrites is the output gate: it commits the event transaction of every
// object that wrote, so that nothing leaves the runtime (a response, an RPC
// result, an outgoing request) before the writes it may reflect are
// durable. It runs before every output and at the end of every turn of the
// loop. A transaction inside an open user transaction waits for it.
func (rt *runtime) flushWrites() {
	for o := range rt.dirty {
		if len(o.savepoints) > 0 || o.aborted {
			continue
		}
		delete(rt.dirty, o)
		o.inTx = false
		if err := o.db.Commit(); err != nil {
			// Cloudflare resets an object whose writes could not be made
			// durable; its caller sees the reset.
			rt.log.Error("commit durable object storage; resetting the object", "object", o.label, "err", err)
			o.aborted = true
			o.state.Abort(err)
		}
	}
}

// shutdownObjects runs when the loop has ended: the runtime's objects can
// take no more events.
func (rt *runtime) shutdownObjects() {
	for _, c := range rt.calls {
		c.ch <- callResult{err: ErrObjectReset}
	}
	clear(rt.calls)
	for _, release := range rt.holds {
		release()
	}
	clear(rt.holds)
	for _, o := range rt.objs {
		o.gone = true
		o.aborted = true
		rt.endTx(o)
		o.state.Abort(ErrClosed)
	}
}

func (rt *runtime) ensureTx(o *object) error {
	if o.inTx {
		return nil
	}
	if err := o.db.Begin(); err != nil {
		return err
	}
	o.inTx = true
	rt.dirty[o] = struct{}{}
	return nil
}

func (rt *runtime) liveObject(a []any) (*object, error) {
	o := rt.objs[argInt(a, 0)]
	if o == nil || o.gone {
		return nil, fmt.Errorf("%w: this object's storage can no longer be used", ErrObjectReset)
	}
	if o.aborted {
		return nil, fmt.Errorf("%w: the object was aborted", ErrObjectReset)
	}
	return o, nil
}

func (w *Worker) objectHost() (*actor.Host, error) {
	if w.cfg.Objects == nil || w.cfg.Objects.Host == nil {
		return nil, errors.New("no Durable Objects are configured")
	}
	return w.cfg.Objects.Host, nil
}

func (w *Worker) namespace(cls string) (*actor.Namespace, error) {
	h, err := w.objectHost()
	if err != nil {
		return nil, err
	}
	ns, ok := h.Namespace(cls)
	if !ok {
		return nil, fmt.Errorf("durable object class %q is not served", cls)
	}
	return ns, nil
}

// objectID parses an id the script handed back, keeping the name it was
// derived from.
func (w *Worker) objectID(cls, hex, name string) (actor.ID, error) {
	ns, err := w.namespace(cls)
	if err != nil {
		return actor.ID{}, err
	}
	if name != "" {
		if id := ns.IDFromName(name); id.String() == hex {
			return id, nil
		}
	}
	id, err := ns.IDFromString(hex)
	if err != nil {
		return actor.ID{}, fmt.Errorf("idFromString: %s", strings.TrimSuffix(err.Error(), ": invalid argument"))
	}
	return id, nil
}

// targetID is the id of the object a stub's fetch target
// ("class\nid\nname") names.
func (w *Worker) targetID(target string) (actor.ID, error) {
	w.targetsMu.Lock()
	id, ok := w.targets[target]
	w.targetsMu.Unlock()
	if ok {
		return id, nil
	}
	parts := strings.SplitN(target, "\n", 3)
	if len(parts) != 3 {
		return actor.ID{}, fmt.Errorf("bad durable object target %q", target)
	}
	id, err := w.objectID(parts[0], parts[1], parts[2])
	if err != nil {
		return id, err
	}
	w.targetsMu.Lock()
	if len(w.targets) >= maxTargets || w.targets == nil {
		w.targets = make(map[string]actor.ID)
	}
	w.targets[target] = id
	w.targetsMu.Unlock()
	return id, nil
}

// maxTargets bounds Worker.targets; past it the map starts again.
const maxTargets = 1024

// getObject returns the live object id, activating it, held until the
// caller calls release (see holdObject).
func (w *Worker) getObject(ctx context.Context, id actor.ID) (o *object, release func(), err error) {
	host, err := w.objectHost()
	if err != nil {
		return nil, nil, err
	}
	hd, err := host.Get(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	o, ok := hd.Object().(*object)
	if !ok {
		hd.Release()
		return nil, nil, fmt.Errorf("durable object %s is not a JavaScript object", id)
	}
	return o, holdObject(hd, o), nil
}

// holdObject is the release of hd, a Handle on o, that also keeps o's
// container busy until it runs: a request to the object is container
// activity.
func holdObject(hd *actor.Handle, o *object) func() {
	if o.ct == nil {
		return hd.Release
	}
	done := o.ct.mgr.Hold(o.ct.owner)
	return func() { done(); hd.Release() }
}

// callObject is the caller's side of an RPC call: it gets the live object
// (activating it), delivers the call in the object's runtime and waits.
func (w *Worker) callObject(ctx context.Context, id actor.ID, method string, payload []byte, tag string) callResult {
	o, release, err := w.getObject(ctx, id)
	if err != nil {
		return callResult{err: err}
	}
	defer release()
	return o.deliver(ctx, func(callID int) {
		o.rt.call("__berth_do_call", o.jsID, callID, method, payload, objectTag(tag, o))
	})
}

// localObject is the fast path of stub.fetch to an object that is live in
// rt itself: the request then goes from the caller's JavaScript to the
// object's without leaving the loop. It returns "jsID hold" with a hold
// (released by doLocalEnd) that keeps the object live and its container
// busy, as roundTripObject's Handle does, or nil when the object is not
// live here (the caller then takes the way through Go, which activates it).
// The object's label follows, for its objectTag.
func (rt *runtime) localObject(w *Worker, target string) any {
	id, err := w.targetID(target)
	if err != nil {
		return nil
	}
	host, err := w.objectHost()
	if err != nil {
		return nil
	}
	hd, ok := host.TryGet(id)
	if !ok {
		return nil
	}
	o, ok := hd.Object().(*object)
	if !ok || o.rt != rt || o.gone || o.aborted {
		hd.Release()
		return nil
	}
	w.localFetches.Add(1)
	rt.nextHold++
	rt.holds[rt.nextHold] = holdObject(hd, o)
	return strconv.Itoa(o.jsID) + " " + strconv.Itoa(rt.nextHold) + " " + o.label
}

// roundTripObject delivers an outgoing request of stub.fetch to the object
// target ("class\nid\nname") and returns its response as the network
// would, streaming the body. The object's Handle is held until the
// response body has been sent.
func (w *Worker) roundTripObject(target string, req *http.Request) (*http.Response, error) {
	id, err := w.targetID(target)
	if err != nil {
		return nil, err
	}
	o, release, err := w.getObject(req.Context(), id)
	if err != nil {
		return nil, err
	}
	if req.ContentLength > 0 {
		req.Header.Set("Content-Length", fmt.Sprint(req.ContentLength))
	}
	pr := newPipeResponse()
	hostTasks.Go(func() {
		err := w.serve(pr, req, "", o)
		release() // once the response body is sent
		pr.finish(err)
	})
	return pr.response(req)
}

// pipeResponse is the http.ResponseWriter an object's fetch handler writes
// to when another Worker called it: the head and a streaming body become
// an *http.Response for the caller.
type pipeResponse struct {
	header http.Header
	status int
	head   chan struct{}
	err    error
	pr     *io.PipeReader
	pw     *io.PipeWriter
	once   sync.Once
}

func newPipeResponse() *pipeResponse {
	pr, pw := io.Pipe()
	return &pipeResponse{header: http.Header{}, head: make(chan struct{}), pr: pr, pw: pw}
}

func (p *pipeResponse) Header() http.Header { return p.header }

func (p *pipeResponse) WriteHeader(status int) {
	p.once.Do(func() { p.status = status; close(p.head) })
}

func (p *pipeResponse) Write(b []byte) (int, error) {
	p.WriteHeader(http.StatusOK)
	return p.pw.Write(b)
}

func (p *pipeResponse) Flush() {}

func (p *pipeResponse) finish(err error) {
	p.once.Do(func() {
		if err == nil {
			err = errors.New("the durable object sent no response")
		}
		p.err = err
		close(p.head)
	})
	var he *headWritten
	if errors.As(err, &he) {
		err = he.err
	}
	p.pw.CloseWithError(err)
}

func (p *pipeResponse) response(req *http.Request) (*http.Response, error) {
	<-p.head
	if p.err != nil {
		return nil, p.err
	}
	return &http.Response{
		Status:        fmt.Sprintf("%d %s", p.status, http.StatusText(p.status)),
		StatusCode:    p.status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        p.header.Clone(),
		Body:          p.pr,
		ContentLength: -1,
		Request:       req,
	}, nil
}

// dispatchObject starts request req on object o (stub.fetch).
func (rt *runtime) dispatchObject(req *request, o *object, method, url, headers string, hasBody, canonical bool) {
	req.dispatched.Store(true)
	if o.gone {
		req.finished = true
		req.headSent = true
		req.head <- head{err: ErrObjectReset}
		return
	}
	id := rt.addRequest(req)
	req.obj = o
	body := 0
	if hasBody {
		body = rt.addBody(req.r.Body, req.r.ContentLength, req.id)
	}
	rt.call("__berth_do_fetch", o.jsID, id, req.id, method, url, headers, body, canonical)
}

// ---- host operations of Durable Objects ----------------------------------------

// outputOps send something out of the runtime; the output gate commits
// pending writes before each.
var outputOps = map[string]bool{
	"respond": true, "write": true, "end": true, "fail": true, "done": true, "fetch": true,
	"doCall": true, "doResult": true, "doLocalEnd": true, "wsSend": true, "wsClose": true, "sinkWrite": true, "sinkClose": true,
}

// durableOp handles the host operations of durable.js; ok is false for an
// op it does not know.
func (rt *runtime) durableOp(op string, a []any) (result any, err error, ok bool) {
	w := rt.cfg.owner
	switch op {
	case "doBindings":
		info := struct {
			Bindings map[string]string `json:"bindings"`
			Classes  []string          `json:"classes"`
		}{Bindings: map[string]string{}, Classes: []string{}}
		if o := rt.cfg.Objects; o != nil && o.Host != nil {
			for name, cls := range o.Bindings {
				if _, ok := o.Host.Namespace(cls); ok {
					info.Bindings[name] = cls
				}
			}
			for _, cls := range o.Classes {
				if _, ok := o.Host.Namespace(cls); ok {
					info.Classes = append(info.Classes, cls)
				}
			}
		}
		b, err := json.Marshal(info)
		return string(b), err, true
	case "doIdFromName":
		ns, err := w.namespace(argString(a, 0))
		if err != nil {
			return nil, err, true
		}
		return ns.IDFromName(argString(a, 1)).String(), nil, true
	case "doNewId":
		ns, err := w.namespace(argString(a, 0))
		if err != nil {
			return nil, err, true
		}
		id, err := ns.NewUniqueID()
		if err != nil {
			return nil, err, true
		}
		return id.String(), nil, true
	case "doIdFromString":
		id, err := w.objectID(argString(a, 0), argString(a, 1), "")
		if err != nil {
			return nil, err, true
		}
		return id.String(), nil, true
	case "doCall":
		op, method, tag := argInt(a, 0), argString(a, 4), argString(a, 6)
		id, err := w.objectID(argString(a, 1), argString(a, 2), argString(a, 3))
		if err != nil {
			return nil, err, true
		}
		payload, _ := argBytes(a, 5)
		rt.loop.Hold()
		hostTasks.Go(func() {
			r := w.callObject(rt.ctx, id, method, payload, tag)
			rt.loop.Post(func() {
				rt.loop.Release()
				if r.err != nil {
					rt.settle(op, r.err)
					return
				}
				rt.settle(op, nil, r.ok, r.payload)
			})
		})
		return nil, nil, true
	case "doResult":
		id := argInt(a, 0)
		c, found := rt.calls[id]
		if !found {
			return nil, nil, true
		}
		delete(rt.calls, id)
		delete(c.obj.calls, id)
		payload, _ := argBytes(a, 2)
		c.ch <- callResult{ok: argBool(a, 1), payload: payload}
		return nil, nil, true
	case "doKeepAlive":
		o, err := rt.liveObject(a)
		if err != nil {
			return nil, err, true
		}
		rt.nextHold++
		rt.holds[rt.nextHold] = o.state.KeepAlive()
		return rt.nextHold, nil, true
	case "doRelease":
		if release, ok := rt.holds[argInt(a, 0)]; ok {
			delete(rt.holds, argInt(a, 0))
			release()
		}
		return nil, nil, true
	case "doLocal":
		return rt.localObject(w, argString(a, 0)), nil, true
	case "doLocalEnd": // an output op: the object's writes commit first
		if release, ok := rt.holds[argInt(a, 0)]; ok {
			delete(rt.holds, argInt(a, 0))
			release()
		}
		return nil, nil, true
	case "doLater":
		id := argInt(a, 0)
		rt.loop.Post(func() { rt.call("__berth_do_drain", id) })
		return nil, nil, true
	case "doAbort":
		if o := rt.objs[argInt(a, 0)]; o != nil && !o.aborted {
			o.aborted = true
			o.state.Abort(errors.New(argString(a, 1)))
		}
		return nil, nil, true
	}
	if strings.HasPrefix(op, "ct") {
		result, err = rt.containerOp(op, a)
		return result, err, true
	}
	if !strings.HasPrefix(op, "kv") && !strings.HasPrefix(op, "sql") && !strings.HasPrefix(op, "tx") &&
		!strings.HasPrefix(op, "alarm") && op != "sync" {
		return nil, nil, false
	}
	o, err := rt.liveObject(a)
	if err != nil {
		return nil, err, true
	}
	result, err = rt.storageOp(o, op, a[1:])
	if err != nil {
		err = storageError(err)
	}
	return result, err, true
}

// storageError makes a storage error read well as a JS exception.
func storageError(err error) error {
	msg := err.Error()
	for _, suffix := range []string{": invalid argument", ": unknown"} {
		msg = strings.TrimSuffix(msg, suffix)
	}
	return errors.New(msg)
}

func (rt *runtime) storageOp(o *object, op string, a []any) (any, error) {
	db := o.db
	write := func() error { return rt.ensureTx(o) }
	switch op {
	case "kvGet":
		v, ok, err := db.Get(argString(a, 0))
		if err != nil || !ok {
			return nil, err
		}
		return v, nil
	case "kvGetMany":
		keys := make([]string, len(a))
		for i := range a {
			keys[i] = argString(a, i)
		}
		kvs, err := db.GetMany(keys)
		if err != nil {
			return nil, err
		}
		return packPairs(kvs), nil
	case "kvPut":
		v, _ := argBytes(a, 1)
		if err := write(); err != nil {
			return nil, err
		}
		return nil, db.Put(argString(a, 0), v)
	case "kvPutMany":
		entries := make([]storage.KV, 0, len(a)/2)
		for i := 0; i+1 < len(a); i += 2 {
			v, _ := argBytes(a, i+1)
			entries = append(entries, storage.KV{Key: argString(a, i), Value: v})
		}
		if err := write(); err != nil {
			return nil, err
		}
		return nil, db.PutMany(entries)
	case "kvDelete":
		if err := write(); err != nil {
			return nil, err
		}
		return db.Delete(argString(a, 0))
	case "kvDeleteMany":
		keys := make([]string, len(a))
		for i := range a {
			keys[i] = argString(a, i)
		}
		if err := write(); err != nil {
			return nil, err
		}
		return db.DeleteMany(keys)
	case "kvDeleteAll":
		if err := write(); err != nil {
			return nil, err
		}
		if err := db.DeleteAll(storage.DeleteAllOptions{Alarm: true}); err != nil {
			return nil, err
		}
		o.state.AlarmChanged()
		return nil, nil
	case "kvList":
		kvs, err := db.List(storage.ListOptions{Start: argString(a, 0), StartAfter: argString(a, 1), End: argString(a, 2),
			Prefix: argString(a, 3), Reverse: argBool(a, 4), Limit: argInt(a, 5)})
		if err != nil {
			return nil, err
		}
		return packPairs(kvs), nil
	case "sqlExec":
		if err := write(); err != nil {
			return nil, err
		}
		args := make([]any, 0, len(a)-1)
		for _, x := range a[1:] {
			if _, ok := x.(jsengine.Undefined); ok {
				return nil, errors.New("sql.exec: undefined cannot be bound")
			}
			args = append(args, x)
		}
		return execSQL(db, argString(a, 0), args)
	case "sqlSize":
		n, err := db.DatabaseSize()
		return float64(n), err
	case "txBegin":
		if err := write(); err != nil {
			return nil, err
		}
		sp, err := db.BeginSavepoint()
		if err != nil {
			return nil, err
		}
		o.nextSp++
		o.savepoints[o.nextSp] = sp
		return o.nextSp, nil
	case "txCommit", "txRollback":
		id := argInt(a, 0)
		sp, ok := o.savepoints[id]
		if !ok {
			return nil, errors.New("transaction: already ended")
		}
		delete(o.savepoints, id)
		if op == "txCommit" {
			return nil, sp.Release()
		}
		err := sp.Rollback()
		o.state.AlarmChanged()
		return nil, err
	case "sync":
		if o.inTx && len(o.savepoints) == 0 {
			delete(rt.dirty, o)
			o.inTx = false
			return nil, db.Commit()
		}
		return nil, nil
	case "alarmGet":
		t, ok, err := o.state.GetAlarm()
		if err != nil || !ok {
			return nil, err
		}
		return float64(t.UnixMilli()), nil
	case "alarmSet":
		ms := 0.0
		if len(a) > 0 {
			switch v := a[0].(type) {
			case int:
				ms = float64(v)
			case float64:
				ms = v
			}
		}
		if err := write(); err != nil {
			return nil, err
		}
		return nil, o.state.SetAlarm(time.UnixMilli(int64(ms)))
	case "alarmDelete":
		if err := write(); err != nil {
			return nil, err
		}
		return nil, o.state.DeleteAlarm()
	}
	return nil, fmt.Errorf("unknown storage operation %q", op)
}

// packPairs encodes pairs for durable.js: u32 key length, key, u32 value
// length, value, little endian.
func packPairs(kvs []storage.KV) []byte {
	n := 0
	for _, kv := range kvs {
		n += 8 + len(kv.Key) + len(kv.Value)
	}
	out := make([]byte, 0, n)
	for _, kv := range kvs {
		out = binary.LittleEndian.AppendUint32(out, uint32(len(kv.Key)))
		out = append(out, kv.Key...)
		out = binary.LittleEndian.AppendUint32(out, uint32(len(kv.Value)))
		out = append(out, kv.Value...)
	}
	return out
}

// execSQL runs a query and returns its whole result as JSON: blobs as
// {"b": base64}, non-finite reals as {"f": "Infinity"}.
func execSQL(db *storage.DB, query string, args []any) (string, error) {
	cur, err := db.Exec(query, args...)
	if err != nil {
		return "", err
	}
	defer cur.Close()
	rows, err := cur.All()
	if err != nil {
		return "", err
	}
	for _, r := range rows {
		for j, v := range r {
			switch x := v.(type) {
			case []byte:
				r[j] = map[string]string{"b": base64.StdEncoding.EncodeToString(x)}
			case float64:
				switch {
				case math.IsInf(x, 1):
					r[j] = map[string]string{"f": "Infinity"}
				case math.IsInf(x, -1):
					r[j] = map[string]string{"f": "-Infinity"}
				case math.IsNaN(x):
					r[j] = map[string]string{"f": "NaN"}
				}
			}
		}
	}
	if rows == nil {
		rows = [][]any{}
	}
	cols := cur.Columns()
	if cols == nil {
		cols = []string{}
	}
	b, err := json.Marshal(struct {
		Columns     []string `json:"columns"`
		Rows        [][]any  `json:"rows"`
		RowsRead    int64    `json:"rowsRead"`
		RowsWritten int64    `json:"rowsWritten"`
	}{cols, rows, cur.RowsRead(), cur.RowsWritten()})
	return string(b), err
}
