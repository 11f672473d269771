package worker

import "sync/atomic"

// taskPool runs functions on goroutines that outlive them. An HTTP
// round trip grows a new goroutine's 8 KiB stack several times, each
// growth a copy of the stack; a goroutine that has run one before starts
// the next with the stack it already has. At most maxIdle goroutines wait
// for work; the rest end when their task does.
type taskPool struct {
	tasks   chan func()
	idle    atomic.Int32
	maxIdle int32
}

func newTaskPool(maxIdle int) *taskPool {
	return &taskPool{tasks: make(chan func()), maxIdle: int32(maxIdle)}
}

// Go runs f on a waiting goroutine, or on a new one when none waits. It
// never blocks.
func (p *taskPool) Go(f func()) {
	select {
	case p.tasks <- f:
	default:
		go p.run(f)
	}
}

func (p *taskPool) run(f func()) {
	for {
		f()
		if p.idle.Add(1) > p.maxIdle {
			p.idle.Add(-1)
			return
		}
		f = <-p.tasks
		p.idle.Add(-1)
	}
}

// hostTasks runs the work runtimes hand off their loops: round trips,
// calls to other objects, storage. 64 idle goroutines cover the
// concurrency one machine's runtimes reach in practice.
var hostTasks = newTaskPool(64)
