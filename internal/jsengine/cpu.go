package jsengine

import (
	"sync"
	"time"
	"unsafe"

	"modernc.org/libc"
	lib "modernc.org/libquickjs"
)

// Account is a CPU time budget that the JavaScript an engine runs is charged
// to (Engine.Charge says which account is current). An embedder makes one per
// unit of work it wants bounded, such as an incoming request, and switches to
// it whenever the engine starts running that work's code.
//
// What is measured is the wall time, on the monotonic clock, between the
// moment the engine enters JavaScript (a Call, an evaluation, a drain of the
// microtask queue) and the moment it returns, including the host functions
// that JavaScript calls. On a runtime's single loop goroutine that equals the
// CPU time it used unless the host is overloaded and the goroutine waits for
// a thread. Thread CPU time (RUSAGE_THREAD, CLOCK_THREAD_CPUTIME_ID) would
// only mean this runtime if the loop goroutine were locked to its thread, and
// locking it roughly doubled the cost of a hello-world request (every wake-up
// of the loop becomes a hand-off between threads), so it is not used.
//
// Each time the time charged to an account passes its limit, the engine
// stops the JavaScript running at that moment with an uncatchable error (see
// IsInterrupted; it skips catch and finally blocks, and an async function or
// promise job it unwinds rejects with it), calls OnExceeded, and re-arms: the
// code the account runs next, such as the handlers of those rejections, may
// run for another Limit (as OnExceeded may have set it) before it is stopped
// again. The engine polls for the limit every few thousand operations of the
// interpreter, so a long-running built-in (a sort of a huge array) may run
// past it before it is stopped.
//
// The fields are read and written on the loop goroutine only.
type Account struct {
	// Limit is the time the account may use before its JavaScript is
	// stopped; 0 or less means no limit.
	Limit time.Duration
	// PerTurn makes the time used start again from zero at every turn of
	// the loop (one posted task and its microtasks): the limit then bounds
	// each turn, not the sum.
	PerTurn bool
	// OnExceeded, if set, is called each time the account passes its
	// limit, on the loop goroutine, from inside the engine's interrupt
	// check: JavaScript is suspended there, so OnExceeded must not run
	// JavaScript (it may call Charge, change Limit, and Post work to the
	// loop, which runs after the interrupted code has unwound).
	OnExceeded func()

	used     time.Duration
	deadline time.Duration // used at which the engine interrupts; 0 is Limit
	turn     uint64        // the engine turn the used time belongs to (PerTurn)
	exceeded int
}

// Used is the time charged to the account so far (this turn, for a PerTurn
// account).
func (a *Account) Used() time.Duration { return a.used }

// Exceeded is how many times the account passed its limit.
func (a *Account) Exceeded() int { return a.exceeded }

// monotonic is the default clock of the accounting.
func monotonic() time.Duration { return time.Since(clockBase) }

var clockBase = time.Now()

// engines maps a C context to its engine, for the engine callbacks (the
// interrupt handler, the promise rejection tracker) that get only C
// pointers.
var engines sync.Map // uintptr → *QuickJS

// installInterruptHandler replaces the quickjs package's interrupt handler
// (which knows only a per-call timeout fixed when Go enters JavaScript) with
// one that checks the current account, whose deadline moves as Charge
// switches accounts in the middle of a call.
func (e *QuickJS) installInterruptHandler() {
	tls, ctx := cContext(e.vm)
	engines.Store(ctx, e)
	lib.XJS_SetInterruptHandler(tls, lib.XJS_GetRuntime(tls, ctx), fp(interruptHandler), ctx)
}

// interruptHandler is called by the interpreter every few thousand
// operations; a non-zero result throws the uncatchable interrupt error.
func interruptHandler(tls *libc.TLS, _, ctx uintptr) int32 {
	v, ok := engines.Load(ctx)
	if !ok {
		return 0
	}
	e := v.(*QuickJS)
	if p := activeProfile.Load(); p != nil {
		e.sample(p, tls, ctx)
	}
	if e.poll() {
		return 1
	}
	return 0
}

// poll reports whether the running JavaScript must stop.
func (e *QuickJS) poll() bool {
	if e.interrupt.Load() {
		return true
	}
	a := e.acct
	if a == nil || a.Limit <= 0 || e.depth == 0 {
		return false
	}
	now := e.clock()
	used := a.used + now - e.since
	if a.deadline == 0 {
		a.deadline = a.Limit
	}
	if used < a.deadline {
		return false
	}
	a.used, e.since = used, now
	a.exceeded++
	if a.OnExceeded != nil {
		a.OnExceeded()
	}
	if a.Limit > 0 {
		a.deadline = a.used + a.Limit
	} else {
		a.deadline = 0
	}
	return true
}

// Charge implements Engine.
func (e *QuickJS) Charge(a *Account) {
	if a == e.acct {
		return
	}
	if e.depth > 0 {
		now := e.clock()
		e.bill(now)
		e.since = now
		e.startTurn(a)
	}
	e.acct = a
}

// enter marks the start of running JavaScript; nested calls (from host
// functions, or a Call's own drain) belong to the outermost one.
func (e *QuickJS) enter() {
	if e.depth == 0 {
		// An Interrupt that arrived while no JavaScript ran is for
		// nothing that runs now, as with the quickjs package's own
		// handler.
		e.interrupt.Store(false)
		e.since = e.clock()
		e.enteredAt = e.since
		if activeProfile.Load() != nil {
			_, ctx := cContext(e.vm)
			cAt[lib.TJSContext](ctx).Finterrupt_counter = profileOps
		}
		e.startTurn(e.acct)
	}
	e.depth++
}

// leave ends what enter started and charges the time to the account.
func (e *QuickJS) leave() {
	e.depth--
	if e.depth == 0 {
		now := e.clock()
		e.bill(now)
		e.jsTime += now - e.enteredAt
		if p := e.panicked; p != nil {
			e.panicked = nil
			tls, ctx := cContext(e.vm)
			lib.XJS_SetUncatchableException(tls, ctx, 0)
			panic(p)
		}
	}
}

func (e *QuickJS) bill(now time.Duration) {
	if a := e.acct; a != nil {
		a.used += now - e.since
	}
}

// startTurn restarts a PerTurn account the first time it is charged in a
// turn.
func (e *QuickJS) startTurn(a *Account) {
	if a != nil && a.PerTurn && a.turn != e.turn {
		a.turn, a.used, a.deadline = e.turn, 0, 0
	}
}

// RunGC implements Engine.
func (e *QuickJS) RunGC() {
	if e.closed {
		return
	}
	tls, ctx := cContext(e.vm)
	lib.XJS_RunGC(tls, lib.XJS_GetRuntime(tls, ctx))
}

// MemoryUsage implements Engine.
func (e *QuickJS) MemoryUsage() uint64 {
	if e.closed {
		return 0
	}
	tls, ctx := cContext(e.vm)
	size := int(unsafe.Sizeof(lib.TJSMemoryUsage{}))
	p := tls.Alloc(size)
	defer tls.Free(size)
	lib.XJS_ComputeMemoryUsage(tls, lib.XJS_GetRuntime(tls, ctx), p)
	return uint64((*lib.TJSMemoryUsage)(unsafe.Add(nil, p)).Fmalloc_size)
}
