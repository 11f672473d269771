// Package clocktest is a clock.Clock for tests that moves only when the test
// moves it.
package clocktest

import (
	"slices"
	"sync"
	"time"

	"github.com/berth-dev/berth/internal/clock"
)

// Manual is a manual clock. Advance fires the timers it passes, each on its
// own goroutine as time.AfterFunc does, and returns without waiting for
// them (a callback may block on something the test controls); Settle waits
// for the callbacks started so far. A timer armed for a time already
// reached fires at once.
type Manual struct {
	mu      sync.Mutex
	now     time.Time
	timers  []*timer
	running sync.WaitGroup
}

var _ clock.Clock = (*Manual)(nil)

type timer struct {
	at            time.Time
	f             func()
	stopped, done bool
}

// New returns a Manual clock reading start.
func New(start time.Time) *Manual { return &Manual{now: start} }

func (c *Manual) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *Manual) AfterFunc(d time.Duration, f func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &timer{at: c.now.Add(d), f: f}
	if d <= 0 {
		t.done = true
		c.fireLocked(t)
	} else {
		c.timers = append(c.timers, t)
	}
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		if t.done || t.stopped {
			return false
		}
		t.stopped = true
		return true
	}
}

func (c *Manual) fireLocked(t *timer) {
	c.running.Add(1)
	go func() {
		defer c.running.Done()
		t.f()
	}()
}

// Advance moves the clock by d, firing due timers in time order.
func (c *Manual) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	end := c.now.Add(d)
	slices.SortStableFunc(c.timers, func(a, b *timer) int { return a.at.Compare(b.at) })
	var keep []*timer
	for _, t := range c.timers {
		switch {
		case t.stopped:
		case t.at.After(end):
			keep = append(keep, t)
		default:
			if t.at.After(c.now) {
				c.now = t.at
			}
			t.done = true
			c.fireLocked(t)
		}
	}
	c.timers = keep
	c.now = end
}

// Set moves the clock forward to t, as Advance does.
func (c *Manual) Set(t time.Time) { c.Advance(t.Sub(c.Now())) }

// Settle waits until every callback started so far (and any they started)
// has returned.
func (c *Manual) Settle() { c.running.Wait() }

// Pending counts the armed timers.
func (c *Manual) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, t := range c.timers {
		if !t.stopped {
			n++
		}
	}
	return n
}
