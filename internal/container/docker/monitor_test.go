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
