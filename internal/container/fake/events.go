package fake

import (
	"context"
	"sync"

	"github.com/berth-dev/berth/internal/container"
)

// hub fans the runtime's one stream of events out to every Events reader
// without ever blocking the publisher.
type hub struct {
	buffer int

	mu   sync.Mutex
	subs map[*subscriber]struct{}
}

type subscriber struct {
	ch chan container.Event
	// dropped records that an event did not fit, so that the next one
	// delivered says so.
	dropped bool
}

func newHub(buffer int) *hub {
	return &hub{buffer: buffer, subs: make(map[*subscriber]struct{})}
}

func (h *hub) subscribe(ctx context.Context) <-chan container.Event {
	s := &subscriber{ch: make(chan container.Event, h.buffer)}
	h.mu.Lock()
	h.subs[s] = struct{}{}
	h.mu.Unlock()
	go func() {
		<-ctx.Done()
		h.mu.Lock()
		delete(h.subs, s)
		close(s.ch)
		h.mu.Unlock()
	}()
	return s.ch
}

func (h *hub) publish(ev container.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		e := ev
		e.Labels = copyMap(ev.Labels)
		e.Dropped = s.dropped
		select {
		case s.ch <- e:
			s.dropped = false
		default:
			s.dropped = true
		}
	}
}

func copyMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	c := make(map[string]string, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}
