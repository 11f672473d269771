package worker

import (
	"fmt"
	"time"

	"github.com/berth-dev/berth/internal/jsengine"
)

// Limits: every request in flight on a runtime has its own CPU account
// (jsengine.Account), and a limit stops only the request that went past it;
// the runtime and its other requests carry on.
//
// Which request the JavaScript running now belongs to is the request tag the
// runtime already tracks for console logs (runtime.js): every entry from Go
// (a dispatch, a settled operation, a timer, a WebSocket event, a Durable
// Object event) sets it, and JavaScript reports each change with the "tag"
// host operation, so that Go switches the engine's account there, in the
// middle of a call if need be. The microtasks an entry queues run under its
// tag, so a turn of the loop is charged to the request whose callback
// started it; a reaction to a promise that another request settles (a
// shared, cached promise) is charged to that other request. Code of no
// request in flight here (Durable Object events, which run under tags of
// their own, and leftovers of requests that ended) is charged to an account
// that bounds each turn rather than a sum.

// stoppedGrace bounds the code a request stopped for its CPU limit still
// runs: the handlers of the rejections its interrupted code unwinds through.
// Each time it is used up the code is interrupted again.
const stoppedGrace = 10 * time.Millisecond

// keepStopped is how many stopped requests a runtime remembers, so that a
// late report of the same failure (an unhandled rejection, a second
// out-of-memory error) is recognised as such.
const keepStopped = 64

// addRequest registers req as in flight on this runtime and returns its id.
func (rt *runtime) addRequest(req *request) int {
	rt.nextReq++
	id := rt.nextReq
	rt.reqs[id] = req
	rt.tags[req.id] = id
	req.cpu = jsengine.Account{Limit: rt.cfg.CPULimit, OnExceeded: func() { rt.cpuExceeded(id) }}
	return id
}

// setTag is the "tag" host operation: JavaScript now runs for request tag t.
func (rt *runtime) setTag(t string) {
	if t == rt.tag {
		return
	}
	rt.tag = t
	rt.eng.Charge(rt.account(t))
}

// enter charges what runs from now on to req, which Go is dispatching (the
// script sets the same tag first thing).
func (rt *runtime) enter(req *request) {
	rt.tag = req.id
	rt.eng.Charge(&req.cpu)
}

// account is the CPU account of request tag t.
func (rt *runtime) account(t string) *jsengine.Account {
	if id, ok := rt.tags[t]; ok {
		return &rt.reqs[id].cpu
	}
	if st := rt.stopped[t]; st != nil {
		return st.cpu
	}
	return &rt.untracked
}

// cpuExceeded is the OnExceeded of request id's account. It runs inside the
// engine's interrupt check, so it must not call JavaScript.
func (rt *runtime) cpuExceeded(id int) {
	req := rt.reqs[id]
	if req == nil {
		return // its leftover code was stopped again
	}
	req.cpu.Limit = min(req.cpu.Limit, stoppedGrace)
	rt.stopRequest(id, "CPU time", rt.cfg.CPULimit.String())
}

// untrackedExceeded is the OnExceeded of the account of code that belongs to
// no request in flight here. The interrupt stops that code (a Durable Object
// method rejects with it); there is no request to fail.
func (rt *runtime) untrackedExceeded() {
	rt.log.Error("worker exceeded its CPU time limit outside a request; stopping the code", "limit", "CPU time",
		"value", rt.cfg.CPULimit.String(), "tag", rt.tag)
}

// stopRequest fails request id with a *LimitError and drops its work: the
// rest of the runtime does not notice. Its timers are cleared and its
// pending operations rejected (their late results are ignored); what its
// code starts from now on never runs (runtime.js __berth_cancel). It may
// run inside the engine's interrupt check, where JavaScript cannot be
// called, so the JavaScript side waits in rt.cancels for the end of the
// call (see cancelStopped).
func (rt *runtime) stopRequest(id int, kind, value string) {
	req := rt.reqs[id]
	rt.log.Error("worker exceeded its "+kind+" limit; stopping the request", "limit", kind, "value", value,
		"request", req.id, "in_flight", len(rt.reqs)-1)
	rt.finish(req, &LimitError{Limit: kind, Value: value})
	rt.stopped[req.id] = &stoppedRequest{id: id, cpu: &req.cpu}
	rt.stoppedOrder = append(rt.stoppedOrder, req.id)
	if len(rt.stoppedOrder) > keepStopped {
		delete(rt.stopped, rt.stoppedOrder[0])
		rt.stoppedOrder = rt.stoppedOrder[1:]
	}
	rt.endRequest(id)
	rt.cancels = append(rt.cancels, pendingCancel{req.id, fmt.Sprintf("the request was stopped: it exceeded the %s limit (%s)", kind, value)})
	rt.loop.Post(rt.cancelStopped) // in case no other call comes first
}

// stoppedRequest is what a runtime remembers of a request it stopped.
type stoppedRequest struct {
	id  int
	cpu *jsengine.Account
}

// wasStopped reports whether request id, no longer in flight, was stopped
// at a limit (recently).
func (rt *runtime) wasStopped(id int) bool {
	for _, st := range rt.stopped {
		if st.id == id {
			return true
		}
	}
	return false
}

// pendingCancel is the JavaScript side of stopRequest, still to be done.
type pendingCancel struct{ tag, reason string }

// cancelStopped drops the work of the requests stopped since it last ran.
// rt.call and rt.dispatch run it after their call into JavaScript and
// before it (for a stop in the microtasks the loop drained after the last
// task), so that no timer or operation of a stopped request that was
// already queued runs.
func (rt *runtime) cancelStopped() {
	for len(rt.cancels) > 0 {
		c := rt.cancels[0]
		rt.cancels = rt.cancels[1:]
		if _, err := rt.eng.Call("__berth_cancel", c.tag, c.reason); err != nil && !rt.checkLimit(err, 0) {
			rt.log.Error("drop the work of a stopped request", "request", c.tag, "err", err)
		}
	}
}

// checkLimit handles err when it means that JavaScript went past a limit and
// reports whether it did. id is the request whose code returned err, or 0 to
// blame the request JavaScript ran for last.
func (rt *runtime) checkLimit(err error, id int) bool {
	switch {
	case jsengine.IsInterrupted(err):
		// The CPU limit fired, and its OnExceeded has already stopped
		// the request concerned. A request still in flight that gets
		// the error anyway awaited work the interrupt stopped: for it,
		// that is an exception like any other.
		if id == 0 {
			return true
		}
		req := rt.reqs[id]
		return req == nil || req.finished
	case rt.cfg.MemoryLimit > 0 && jsengine.IsOutOfMemory(err):
		rt.outOfMemory(id)
		return true
	}
	return false
}

// outOfMemory handles JavaScript that ran out of the runtime's heap limit:
// the request that hit it fails (the others go on), then a garbage
// collection decides whether the runtime can stay: see afterOutOfMemory.
func (rt *runtime) outOfMemory(id int) {
	if id == 0 {
		id = rt.tags[rt.tag]
	}
	value := formatBytes(rt.cfg.MemoryLimit)
	switch {
	case rt.reqs[id] != nil:
		rt.stopRequest(id, "memory", value)
	case id == 0 && rt.stopped[rt.tag] == nil:
		// No request to blame: code of no request in flight here ran
		// out, and what state it left behind is anyone's guess.
		rt.memDoubt = true
		rt.log.Error("worker exceeded its memory limit outside a request", "limit", "memory", "value", value, "tag", rt.tag)
	}
	// Otherwise it is a later report of a request already stopped or
	// ended.
	if !rt.gcPending {
		rt.gcPending = true
		rt.loop.Post(rt.afterOutOfMemory)
	}
}

// afterOutOfMemory runs a garbage collection once the failing code has
// unwound. A runtime whose heap is still at least half full afterwards
// would most likely fail its next request too (its globals hold the
// memory), and one whose out-of-memory error could not be blamed on a
// request may hold broken state: either is retired, and a fresh runtime
// takes its place in the pool. Otherwise the runtime carries on, as it
// does after a CPU limit.
func (rt *runtime) afterOutOfMemory() {
	rt.gcPending = false
	rt.eng.RunGC()
	used := rt.eng.MemoryUsage()
	doubt := rt.memDoubt
	rt.memDoubt = false
	if doubt || used >= rt.cfg.MemoryLimit/2 {
		why := "its heap is near the memory limit"
		if doubt {
			why = "it ran out of memory outside a request"
		}
		rt.retire(why, "heap", formatBytes(used), "value", formatBytes(rt.cfg.MemoryLimit))
		return
	}
	rt.log.Info("runtime recovered from running out of memory", "heap", formatBytes(used), "value", formatBytes(rt.cfg.MemoryLimit))
}

// retire takes the runtime out of the pool: a new runtime takes new
// requests, while this one finishes the requests, Durable Object calls and
// WebSockets it has in flight and then stops (drained). Its Durable Objects
// are reset when it stops, and their next events activate them anew.
func (rt *runtime) retire(why string, attrs ...any) {
	if rt.retired {
		return
	}
	rt.retired = true
	rt.log.Warn("replacing the runtime: "+why+"; it stops once the work it has in flight is done",
		append(attrs, "in_flight", len(rt.reqs))...)
	if rt.onRetire != nil {
		rt.onRetire(rt)
	}
}

// drained reports whether a retired runtime has nothing left in flight; the
// loop checks it after every batch of tasks.
func (rt *runtime) drained() bool {
	return rt.retired && len(rt.reqs) == 0 && len(rt.calls) == 0 && len(rt.sockets) == 0
}

func formatBytes(n uint64) string {
	if n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}

// objectTag is the tag a Durable Object RPC call runs under: the caller's,
// which the log shows, extended with the object, so that the call is
// neither charged to nor stopped with the calling request when both live
// in the same runtime (stopping a request drops the timers and operations
// of its tag, which would leave the object's method hanging).
func objectTag(caller string, o *object) string { return caller + ">" + o.label }
