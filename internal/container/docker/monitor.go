package docker

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/client"

	"github.com/berth-dev/berth/internal/container"
)

// eventBuffer is how many events an Events reader may fall behind by before
// events are dropped for it.
const eventBuffer = 256

// exitMemory bounds how many exits of gone containers the hub remembers for
// a late Wait.
const exitMemory = 4096

// waitResult is what a waiter receives: an exit, or an error when the
// container vanished without the hub seeing it exit.
type waitResult struct {
	exit container.Exit
	err  error
}

type subscriber struct {
	ch      chan container.Event
	dropped bool
}

// hub owns the single events stream. It turns die events into exits for
// waiters, fans every event out to Events readers, and tells the namespace
// cache when a container's namespace is gone.
type hub struct {
	r                      *Runtime
	backoffMin, backoffMax time.Duration

	mu        sync.Mutex
	waiters   map[string]map[chan waitResult]struct{}
	exits     map[string]container.Exit
	exitOrder []string
	oomSeen   map[string]bool
	// killSeen marks containers berth (or anyone) sent SIGKILL: their exit
	// code 137 needs no wait for a late oom event.
	killSeen map[string]bool
	// paused is the pause state last reported per container: the engine
	// may report one pause (or unpause) twice, once from its API handler
	// and once from containerd's event, and a repeat is not a change.
	paused map[string]bool
	// intents are the pauses and unpauses berth asked for, which tell an
	// engine's late echo of the previous one from a change (see pauseEcho).
	intents map[string]pauseIntent
	// held are exits with code 137 waiting briefly for an oom event, which
	// the engine may report after the exit (its OOM and exit notices travel
	// separate paths).
	held   map[string]*heldExit
	subs   map[*subscriber]struct{}
	closed bool
	// lastSeen is the engine time (ns) of the newest event handled; a
	// reconnect asks the engine to replay from there.
	lastSeen int64
	// breakStream ends the current stream as if the connection had broken;
	// tests use it to exercise reconnection.
	breakStream context.CancelFunc
	reconnects  int
}

func newHub(r *Runtime, backoffMin, backoffMax time.Duration) *hub {
	return &hub{
		r:          r,
		backoffMin: backoffMin,
		backoffMax: backoffMax,
		waiters:    make(map[string]map[chan waitResult]struct{}),
		exits:      make(map[string]container.Exit),
		oomSeen:    make(map[string]bool),
		killSeen:   make(map[string]bool),
		paused:     make(map[string]bool),
		intents:    make(map[string]pauseIntent),
		held:       make(map[string]*heldExit),
		subs:       make(map[*subscriber]struct{}),
	}
}

// run keeps one events stream open until ctx ends. ready is closed once the
// first stream has been requested.
func (h *hub) run(ctx context.Context, ready chan struct{}) {
	defer h.shutdown()
	h.mu.Lock()
	h.lastSeen = time.Now().UnixNano() // engine time: the engine runs on this host
	h.mu.Unlock()
	backoff := h.backoffMin
	first := true
	for ctx.Err() == nil {
		streamCtx, cancel := context.WithCancel(ctx)
		h.mu.Lock()
		h.breakStream = cancel
		since := h.lastSeen
		h.mu.Unlock()

		opened := time.Now()
		res := h.r.api.Events(streamCtx, client.EventsListOptions{
			// Replaying from the last event seen means a reconnect loses
			// nothing the engine still has in its event buffer.
			Since: fmt.Sprintf("%d.%09d", since/1e9, since%1e9),
			Filters: make(client.Filters).
				Add("type", string(events.ContainerEventType)).
				Add("label", container.LabelManaged+"=1"),
		})
		if first {
			close(ready)
			first = false
		} else {
			h.afterReconnect(ctx)
		}
		err := h.consume(ctx, res)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if time.Since(opened) > h.backoffMax {
			backoff = h.backoffMin
		}
		h.r.log.Warn("docker events stream broke; reconnecting", "err", err, "backoff", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, h.backoffMax)
	}
}

// consume handles messages until the stream ends and returns why it ended.
func (h *hub) consume(ctx context.Context, res client.EventsResult) error {
	for {
		select {
		case m := <-res.Messages:
			h.handle(ctx, m)
		case err, ok := <-res.Err:
			if !ok || err == nil {
				err = errors.New("stream closed")
			}
			return err
		}
	}
}

// afterReconnect settles every pending waiter from the engine's current
// state, in case an exit fell outside the replayed events, and flags the gap
// to Events readers.
func (h *hub) afterReconnect(ctx context.Context) {
	h.mu.Lock()
	h.reconnects++
	ids := make([]string, 0, len(h.waiters))
	for id := range h.waiters {
		ids = append(ids, id)
	}
	for s := range h.subs {
		s.dropped = true
	}
	h.mu.Unlock()
	for _, id := range ids {
		ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
		res, err := h.r.api.ContainerInspect(ictx, id, client.ContainerInspectOptions{})
		cancel()
		switch {
		case cerrdefs.IsNotFound(err):
			h.mu.Lock()
			exit, seen := h.exits[id]
			h.mu.Unlock()
			if seen {
				h.deliver(id, waitResult{exit: exit})
			} else {
				h.deliver(id, waitResult{err: fmt.Errorf("wait for container %s: %w", shortID(id), container.ErrNotFound)})
			}
		case err != nil:
			// The engine may still be coming back; the next reconnect retries.
		default:
			if exit, done := exitFromState(res.Container.State); done {
				h.record(id, exit)
				h.deliver(id, waitResult{exit: exit})
			}
		}
	}
}

func (h *hub) handle(ctx context.Context, m events.Message) {
	at := eventTime(m)
	h.mu.Lock()
	if m.TimeNano != 0 && m.TimeNano <= h.lastSeen {
		h.mu.Unlock()
		return // replayed after a reconnect; already handled
	}
	if m.TimeNano > h.lastSeen {
		h.lastSeen = m.TimeNano
	}
	h.mu.Unlock()

	id := m.Actor.ID
	ev := container.Event{ID: id, Labels: eventLabels(m.Actor.Attributes), At: at}
	switch m.Action {
	case events.ActionStart:
		// A start means a fresh network namespace; any handle is stale.
		h.r.netns.drop(id)
		h.r.egressOnStart(id)
		h.mu.Lock()
		delete(h.oomSeen, id)
		delete(h.paused, id)
		h.mu.Unlock()
		ev.Kind = container.EventStart
	case events.ActionKill:
		if sig := m.Actor.Attributes["signal"]; sig == "9" || sig == "SIGKILL" || sig == "KILL" {
			h.mu.Lock()
			h.killSeen[id] = true
			h.mu.Unlock()
		}
		return
	case events.ActionOOM:
		ev.Kind = container.EventOOM
		h.mu.Lock()
		held := h.held[id]
		delete(h.held, id)
		if held == nil {
			h.oomSeen[id] = true
		}
		h.mu.Unlock()
		if held != nil {
			// Whoever takes a held exit out of the map reports it.
			held.timer.Stop()
			h.publish(ev)
			held.exit.OOMKilled = true
			h.finishExit(held)
			return
		}
	case events.ActionDie:
		code, _ := strconv.Atoi(m.Actor.Attributes["exitCode"])
		h.mu.Lock()
		oom, killed := h.oomSeen[id], h.killSeen[id]
		delete(h.oomSeen, id)
		delete(h.killSeen, id)
		delete(h.paused, id)
		h.mu.Unlock()
		if !oom {
			// The oom event normally comes first, but State.OOMKilled is
			// the engine's own verdict; the container may already be gone.
			ictx, cancel := context.WithTimeout(ctx, 2*time.Second)
			res, err := h.r.api.ContainerInspect(ictx, id, client.ContainerInspectOptions{})
			cancel()
			if err == nil && res.Container.State != nil {
				oom = res.Container.State.OOMKilled
			}
		}
		ev.Kind = container.EventExit
		held := &heldExit{id: id, exit: container.Exit{Code: code, OOMKilled: oom, At: at}, ev: ev}
		if code == 128+9 && !oom && !killed {
			h.mu.Lock()
			h.held[id] = held
			held.timer = time.AfterFunc(oomGrace, func() { h.releaseHeld(id) })
			h.mu.Unlock()
			return
		}
		h.finishExit(held)
		return
	case events.ActionPause, events.ActionUnPause:
		pause := m.Action == events.ActionPause
		h.mu.Lock()
		if it, ok := h.intents[id]; ok && it.paused != pause && (it.until == 0 || m.TimeNano <= it.until) {
			h.mu.Unlock()
			return // the engine's late echo of the call before berth's last
		}
		prev, known := h.paused[id]
		repeat := known && prev == pause
		h.paused[id] = pause
		h.mu.Unlock()
		if repeat {
			return
		}
		ev.Kind = container.EventUnpause
		if pause {
			ev.Kind = container.EventPause
		}
	case events.ActionDestroy:
		h.releaseHeld(id)
		h.r.netns.drop(id)
		h.r.egressOnDestroy(id)
		h.mu.Lock()
		exit, seen := h.exits[id]
		delete(h.oomSeen, id)
		delete(h.killSeen, id)
		delete(h.paused, id)
		delete(h.intents, id)
		h.mu.Unlock()
		if seen {
			h.deliver(id, waitResult{exit: exit})
		} else {
			h.deliver(id, waitResult{err: fmt.Errorf("wait for container %s: destroyed before it exited: %w", shortID(id), container.ErrNotFound)})
		}
		ev.Kind = container.EventDestroy
	default:
		return
	}
	h.publish(ev)
}

// pauseEcho is how long after berth's pause (or unpause) of a container
// the engine may still report the opposite. dockerd 20.10 reports a pause
// from its API handler and again from containerd's notice if that finds
// the container not marked paused; under load the notice comes after the
// next unpause, so the engine reports pause, unpause, pause, unpause for
// one pause and one unpause.
const pauseEcho = 2 * time.Second

// pauseIntent is berth's last pause (paused) or unpause of a container;
// until is the engine time (ns) up to which events saying the opposite are
// echoes, 0 while the call is in flight.
type pauseIntent struct {
	paused bool
	until  int64
}

// intend records that berth is about to pause (or unpause) id; the
// returned done reports how the engine answered.
func (h *hub) intend(id string, paused bool) (done func(ok bool)) {
	it := pauseIntent{paused: paused}
	h.mu.Lock()
	h.intents[id] = it
	h.mu.Unlock()
	return func(ok bool) {
		h.mu.Lock()
		defer h.mu.Unlock()
		if cur, found := h.intents[id]; !found || cur != it {
			return // a later call took over
		}
		if !ok {
			delete(h.intents, id)
			return
		}
		h.intents[id] = pauseIntent{paused: paused, until: time.Now().Add(pauseEcho).UnixNano()} // engine time: the engine runs on this host
	}
}

// oomGrace is how long an exit by SIGKILL that nobody sent waits for the
// engine's late oom event before it is reported as a plain kill.
const oomGrace = 500 * time.Millisecond

// heldExit is an exit not yet reported; see hub.held.
type heldExit struct {
	id    string
	exit  container.Exit
	ev    container.Event
	timer *time.Timer
}

// releaseHeld reports a held exit as it stands, if one is still held.
func (h *hub) releaseHeld(id string) {
	h.mu.Lock()
	held := h.held[id]
	delete(h.held, id)
	h.mu.Unlock()
	if held != nil {
		held.timer.Stop()
		h.finishExit(held)
	}
}

// finishExit reports an exit to waiters and Events readers.
func (h *hub) finishExit(x *heldExit) {
	h.r.netns.drop(x.id)
	h.r.egressOnExit(x.id)
	h.record(x.id, x.exit)
	h.deliver(x.id, waitResult{exit: x.exit})
	exit := x.exit
	x.ev.Exit = &exit
	h.publish(x.ev)
}

// record remembers an exit for Waits that come after it, forgetting the
// oldest beyond exitMemory.
func (h *hub) record(id string, exit container.Exit) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.exits[id]; !ok {
		h.exitOrder = append(h.exitOrder, id)
	}
	h.exits[id] = exit
	for len(h.exitOrder) > exitMemory {
		delete(h.exits, h.exitOrder[0])
		h.exitOrder = h.exitOrder[1:]
	}
}

func (h *hub) lastExit(id string) (container.Exit, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	exit, ok := h.exits[id]
	return exit, ok
}

// watch registers interest in id's exit. The returned stop must be called.
func (h *hub) watch(id string) (<-chan waitResult, func()) {
	ch := make(chan waitResult, 1)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		ch <- waitResult{err: fmt.Errorf("wait for container %s: runtime closed: %w", shortID(id), container.ErrUnavailable)}
		return ch, func() {}
	}
	set := h.waiters[id]
	if set == nil {
		set = make(map[chan waitResult]struct{})
		h.waiters[id] = set
	}
	set[ch] = struct{}{}
	return ch, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if set := h.waiters[id]; set != nil {
			delete(set, ch)
			if len(set) == 0 {
				delete(h.waiters, id)
			}
		}
	}
}

func (h *hub) deliver(id string, res waitResult) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.waiters[id] {
		select {
		case ch <- res:
		default: // already settled
		}
	}
	delete(h.waiters, id)
}

func (h *hub) publish(ev container.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		e := ev
		e.Labels = maps.Clone(ev.Labels)
		e.Dropped = s.dropped
		select {
		case s.ch <- e:
			s.dropped = false
		default:
			s.dropped = true
		}
	}
}

func (h *hub) subscribe() *subscriber {
	s := &subscriber{ch: make(chan container.Event, eventBuffer)}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		close(s.ch)
		return s
	}
	h.subs[s] = struct{}{}
	return s
}

func (h *hub) unsubscribe(s *subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[s]; ok {
		delete(h.subs, s)
		close(s.ch)
	}
}

// shutdown releases every waiter and reader when the runtime closes.
func (h *hub) shutdown() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for id, set := range h.waiters {
		for ch := range set {
			select {
			case ch <- waitResult{err: fmt.Errorf("wait for container %s: runtime closed: %w", shortID(id), container.ErrUnavailable)}:
			default:
			}
		}
	}
	clear(h.waiters)
	for s := range h.subs {
		close(s.ch)
	}
	clear(h.subs)
}

func (h *hub) interrupt() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.breakStream != nil {
		h.breakStream()
	}
}

// waiting reports whether a Wait for id is registered.
func (h *hub) waiting(id string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.waiters[id]) > 0
}

func (h *hub) reconnectCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.reconnects
}

// Wait implements container.Runtime. It subscribes before it inspects, so an
// exit between the two is not missed.
func (r *Runtime) Wait(ctx context.Context, id string) (container.Exit, error) {
	ch, stop := r.hub.watch(id)
	defer stop()
	res, err := r.api.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if cerrdefs.IsNotFound(err) {
		if exit, ok := r.hub.lastExit(id); ok {
			return exit, nil
		}
	}
	if err != nil {
		return container.Exit{}, wrapErr(fmt.Sprintf("wait for container %s", shortID(id)), err)
	}
	if full := res.Container.ID; full != id {
		// Called with a name or short id; events carry full ids.
		stop()
		ch, stop = r.hub.watch(full)
		defer stop()
		id = full
		res, err = r.api.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
		if err != nil {
			if exit, ok := r.hub.lastExit(id); ok && cerrdefs.IsNotFound(err) {
				return exit, nil
			}
			return container.Exit{}, wrapErr(fmt.Sprintf("wait for container %s", shortID(id)), err)
		}
	}
	if exit, done := exitFromState(res.Container.State); done {
		if seen, ok := r.hub.lastExit(id); ok {
			return seen, nil // carries the oom verdict and the event's time
		}
		return exit, nil
	}
	select {
	case wr := <-ch:
		return wr.exit, wr.err
	case <-ctx.Done():
		return container.Exit{}, fmt.Errorf("wait for container %s: %w", shortID(id), ctx.Err())
	}
}

// Events implements container.Runtime.
func (r *Runtime) Events(ctx context.Context) <-chan container.Event {
	s := r.hub.subscribe()
	go func() {
		select {
		case <-ctx.Done():
		case <-r.done:
		}
		r.hub.unsubscribe(s)
	}()
	return s.ch
}

func eventTime(m events.Message) time.Time {
	switch {
	case m.TimeNano != 0:
		return time.Unix(0, m.TimeNano)
	case m.Time != 0:
		return time.Unix(m.Time, 0)
	}
	return time.Time{}
}

// eventAttributes are the keys the engine adds to an event's attributes
// beside the container's labels.
var eventAttributes = map[string]bool{
	"image": true, "name": true, "exitCode": true, "signal": true,
	"execID": true, "execDuration": true, "container": true,
}

func eventLabels(attrs map[string]string) map[string]string {
	labels := make(map[string]string, len(attrs))
	for k, v := range attrs {
		if !eventAttributes[k] {
			labels[k] = v
		}
	}
	return labels
}
