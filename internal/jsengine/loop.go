package jsengine

import (
	"context"
	"sync"
	"sync/atomic"
)

// Loop is the event loop of one runtime, the k6 pattern: exactly one
// goroutine, the one in Run, touches the runtime. Every other goroutine (a
// timer firing, a finished outbound fetch, a new incoming request) hands work
// to it with Post. After each task the loop calls its after hook, which drains
// the engine's microtask queue, so promise reactions run before the next task.
//
// Hold and Release count asynchronous host operations that will Post later;
// RunUntilIdle uses the count to know when nothing can happen any more.
type Loop struct {
	mu      sync.Mutex
	queue   []func()
	spare   []func()
	wake    chan struct{}
	pending atomic.Int64
	after   func()
	stopped bool // set by Stop on the loop goroutine
}

// Stop makes the loop run no further tasks: Run and the other run methods
// return after the task that called it. Call it on the loop goroutine, when
// the runtime must not run any more JavaScript.
func (l *Loop) Stop() { l.stopped = true }

// NewLoop returns a loop that calls after (may be nil) once after every task.
func NewLoop(after func()) *Loop {
	return &Loop{wake: make(chan struct{}, 1), after: after}
}

// Hold records one outstanding asynchronous operation. Call it on the loop
// goroutine before starting the operation.
func (l *Loop) Hold() { l.pending.Add(1) }

// Release ends an operation recorded by Hold. Call it on the loop goroutine,
// normally first thing in the task the operation posted.
func (l *Loop) Release() { l.pending.Add(-1) }

// Pending reports the number of outstanding operations.
func (l *Loop) Pending() int64 { return l.pending.Load() }

// Post enqueues f to run on the loop goroutine. Safe from any goroutine; it
// never blocks.
func (l *Loop) Post(f func()) {
	l.mu.Lock()
	l.queue = append(l.queue, f)
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// Run executes posted tasks on the calling goroutine until ctx is done. It is
// the body of a long-lived runtime goroutine.
func (l *Loop) Run(ctx context.Context) error {
	for {
		if l.stopped {
			return nil
		}
		if l.runBatch() {
			continue
		}
		select {
		case <-l.wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// RunUntilIdle executes posted tasks until no task is queued and no operation
// is held, or ctx is done. Used to evaluate code at start-up and in tests.
func (l *Loop) RunUntilIdle(ctx context.Context) error {
	for {
		if l.runBatch() {
			continue
		}
		if l.pending.Load() == 0 {
			return nil
		}
		select {
		case <-l.wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// RunUntil executes posted tasks until done reports true (checked after every
// batch) or ctx is done.
func (l *Loop) RunUntil(ctx context.Context, done func() bool) error {
	for !done() {
		if l.runBatch() {
			continue
		}
		select {
		case <-l.wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// runBatch runs the tasks queued now and reports whether there were any.
func (l *Loop) runBatch() bool {
	l.mu.Lock()
	batch := l.queue
	l.queue = l.spare[:0]
	l.mu.Unlock()
	if len(batch) == 0 {
		l.spare = batch
		return false
	}
	for i, f := range batch {
		batch[i] = nil
		if l.stopped {
			continue
		}
		f()
		if l.after != nil {
			l.after()
		}
	}
	l.spare = batch[:0]
	return true
}
