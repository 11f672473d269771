package docker

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/moby/moby/api/types/events"

	"github.com/berth-dev/berth/internal/container"
)

// TestHubDropsRepeatedPauseEvents: Docker 20.10 can report one pause twice
// (from its API handler and from containerd's event); Events must report
// changes only. Needs no engine: the messages are fed to the hub directly.
func TestHubDropsRepeatedPauseEvents(t *testing.T) {
	h := newHub(&Runtime{netns: newNetnsCache()}, time.Millisecond, time.Millisecond)
	sub := h.subscribe()
	defer h.unsubscribe(sub)
	at := time.Now().UnixNano()
	for _, action := range []events.Action{
		events.ActionStart, events.ActionPause, events.ActionPause, events.ActionUnPause, events.ActionUnPause,
		events.ActionPause, events.ActionUnPause,
	} {
		at++
		h.handle(context.Background(), events.Message{Action: action, Actor: events.Actor{ID: "c1"}, TimeNano: at})
	}
	var got []container.EventKind
	for len(sub.ch) > 0 {
		got = append(got, (<-sub.ch).Kind)
	}
	want := []container.EventKind{container.EventStart, container.EventPause, container.EventUnpause, container.EventPause, container.EventUnpause}
	if !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	// A container first seen paused (berth restarted meanwhile) still
	// reports its unpause.
	h.handle(context.Background(), events.Message{Action: events.ActionUnPause, Actor: events.Actor{ID: "c2"}, TimeNano: at + 1})
	if ev := <-sub.ch; ev.Kind != container.EventUnpause || ev.ID != "c2" {
		t.Fatalf("first event of c2 = %+v, want its unpause", ev)
	}
}

// TestHubDropsLatePauseEchoes: under load dockerd 20.10 reports a pause
// again after berth's unpause (containerd's notice of the pause comes
// late), then an unpause. Events reports berth's pause and unpause once,
// and a pause by someone else after the echo window again.
func TestHubDropsLatePauseEchoes(t *testing.T) {
	h := newHub(&Runtime{netns: newNetnsCache()}, time.Millisecond, time.Millisecond)
	sub := h.subscribe()
	defer h.unsubscribe(sub)
	at := time.Now().UnixNano()
	send := func(action events.Action) {
		at++
		h.handle(context.Background(), events.Message{Action: action, Actor: events.Actor{ID: "c1"}, TimeNano: at})
	}
	send(events.ActionStart)
	done := h.intend("c1", true)
	send(events.ActionPause) // from the API handler, before the call returns
	done(true)
	done = h.intend("c1", false)
	send(events.ActionUnPause)
	done(true)
	send(events.ActionPause) // the late echoes
	send(events.ActionUnPause)
	at += int64(2 * pauseEcho) // well after: someone else's pause counts
	send(events.ActionPause)
	var got []container.EventKind
	for len(sub.ch) > 0 {
		got = append(got, (<-sub.ch).Kind)
	}
	want := []container.EventKind{container.EventStart, container.EventPause, container.EventUnpause, container.EventPause}
	if !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	// A failed call leaves no intent behind.
	h.intend("c2", true)(false)
	h.handle(context.Background(), events.Message{Action: events.ActionUnPause, Actor: events.Actor{ID: "c2"}, TimeNano: at + 1})
	if ev := <-sub.ch; ev.Kind != container.EventUnpause || ev.ID != "c2" {
		t.Fatalf("first event of c2 = %+v, want its unpause", ev)
	}
}
