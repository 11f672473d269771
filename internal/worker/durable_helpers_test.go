package worker

import (
	"context"
	"maps"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/actor"
	"github.com/berth-dev/berth/internal/storage"
)

// objectWorker is a Worker with Durable Objects over a fresh state
// directory.
type objectWorker struct {
	*Worker
	host  *actor.Host
	store *storage.Store
	dir   string
	logs  *logBuffer
}

// stop closes w as berth does when it exits: the object host (every
// object's events end), the Worker, then storage.
func (w *objectWorker) stop(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.host.Close(ctx); err != nil {
		t.Fatal(err)
	}
	w.Close()
	w.store.Close()
}

type objectOptions struct {
	dir         string // state directory; default a temp dir
	idle        time.Duration
	clock       actor.Clock
	runtimes    int
	alarmBackof time.Duration
	classes     []string // served without a binding
	cpuLimit    time.Duration
	// containers backs ctx.container of containerClasses.
	containers       Containers
	containerClasses []string
}

// newObjectWorker starts src with the given bindings (env name → class);
// every bound class is served.
func newObjectWorker(t testing.TB, src string, bindings map[string]string, opt objectOptions) *objectWorker {
	t.Helper()
	if opt.dir == "" {
		opt.dir = t.TempDir()
	}
	secret, err := actor.LoadSecret(opt.dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	store, err := storage.OpenStore(opt.dir, storage.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var classes []string
	var namespaces []*actor.Namespace
	seen := map[string]bool{}
	all := slices.Collect(maps.Values(bindings))
	for _, cls := range append(all, opt.classes...) {
		if seen[cls] {
			continue
		}
		seen[cls] = true
		ns, err := actor.NewNamespace(secret, cls, nil)
		if err != nil {
			t.Fatal(err)
		}
		classes = append(classes, cls)
		namespaces = append(namespaces, ns)
	}
	var current atomic.Pointer[Worker]
	ready := make(chan struct{})
	host, err := actor.New(actor.Options{
		Store:        store,
		Namespaces:   namespaces,
		IdleTimeout:  opt.idle,
		Clock:        opt.clock,
		AlarmBackoff: opt.alarmBackof,
		Factory: func(ctx context.Context, st *actor.State) (actor.Object, error) {
			select {
			case <-ready:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			return current.Load().Activate(ctx, st)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	w, logs := newWorker(t, src, Config{Runtimes: opt.runtimes, CPULimit: opt.cpuLimit, Objects: &Objects{Host: host, Bindings: bindings, Classes: classes,
		Containers: opt.containers, ContainerClasses: opt.containerClasses}})
	current.Store(w)
	close(ready)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := host.Close(ctx); err != nil {
			t.Errorf("close host: %v", err)
		}
		if err := store.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	return &objectWorker{Worker: w, host: host, store: store, dir: opt.dir, logs: logs}
}
