package worker

import (
	goruntime "runtime"
	"sync"
	"testing"
)

// Tasks that block do not hold up the others, and once they end no more
// than maxIdle goroutines stay to wait for work.
func TestTaskPoolBlockingTasksAndIdleBound(t *testing.T) {
	p := newTaskPool(3)
	release := make(chan struct{})
	var started, done sync.WaitGroup
	const n = 10
	for range n {
		started.Add(1)
		done.Add(1)
		p.Go(func() {
			started.Done()
			<-release
			done.Done()
		})
	}
	started.Wait() // all ten run at once: none waited for another
	close(release)
	done.Wait()
	waitFor(t, "3 idle goroutines", func() bool { return p.idle.Load() == 3 })

	// The idle goroutines take the next tasks.
	var again sync.WaitGroup
	for range 3 {
		again.Add(1)
		p.Go(again.Done)
	}
	again.Wait()
	waitFor(t, "3 idle goroutines", func() bool { return p.idle.Load() == 3 })
}

// Sequential tasks reuse the goroutines that wait instead of adding one
// each.
func TestTaskPoolReusesGoroutines(t *testing.T) {
	p := newTaskPool(2)
	ran := make(chan struct{})
	p.Go(func() { ran <- struct{}{} })
	<-ran
	waitFor(t, "an idle goroutine", func() bool { return p.idle.Load() == 1 })
	before := goruntime.NumGoroutine()
	for range 100 {
		p.Go(func() { ran <- struct{}{} })
		<-ran
		waitFor(t, "an idle goroutine", func() bool { return p.idle.Load() >= 1 })
	}
	if after := goruntime.NumGoroutine(); after > before+1 {
		t.Fatalf("goroutines grew from %d to %d over 100 sequential tasks", before, after)
	}
}
