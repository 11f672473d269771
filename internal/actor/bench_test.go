package actor

import (
	"context"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/storage"
)

// benchHost is a host with a trivial Factory over a fresh store.
func benchHost(b *testing.B) (*Host, *Namespace, *fakeClock, *storage.Store) {
	b.Helper()
	store, err := storage.OpenStore(b.TempDir(), storage.StoreOptions{DB: storage.Options{Synchronous: storage.SyncNormal}})
	if err != nil {
		b.Fatal(err)
	}
	ns, err := NewNamespace(testSecret(), "Bench", nil)
	if err != nil {
		b.Fatal(err)
	}
	clock := newFakeClock()
	factory := func(context.Context, *State) (Object, error) { return trivialObject{}, nil }
	h, err := New(Options{Store: store, Factory: factory, Namespaces: []*Namespace{ns}, Clock: clock})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = h.Close(context.Background())
		_ = store.Close()
	})
	return h, ns, clock, store
}

type trivialObject struct{}

func (trivialObject) Alarm(context.Context, AlarmInfo) error { return nil }
func (trivialObject) Close(context.Context) error            { return nil }

// BenchmarkActivateNew: first activation of a new object, which creates its
// SQLite database.
func BenchmarkActivateNew(b *testing.B) {
	h, ns, _, _ := benchHost(b)
	ctx := context.Background()
	for i := 0; b.Loop(); i++ {
		hd, err := h.Get(ctx, ns.IDFromName(strconv.Itoa(i)))
		if err != nil {
			b.Fatal(err)
		}
		hd.Release()
	}
}

// BenchmarkReactivate: evict and activate again an object whose database
// the store still holds open (the common wake-up path).
func BenchmarkReactivate(b *testing.B) {
	h, ns, clock, _ := benchHost(b)
	ctx := context.Background()
	id := ns.IDFromName("x")
	for b.Loop() {
		hd, err := h.Get(ctx, id)
		if err != nil {
			b.Fatal(err)
		}
		hd.Release()
		clock.Advance(DefaultIdleTimeout)
	}
}

// BenchmarkGetLive: an event to an object that is live already.
func BenchmarkGetLive(b *testing.B) {
	h, ns, _, _ := benchHost(b)
	ctx := context.Background()
	id := ns.IDFromName("x")
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			hd, err := h.Get(ctx, id)
			if err != nil {
				b.Error(err)
				return
			}
			hd.Release()
		}
	})
}

// BenchmarkIdleObjectMemory activates b.N objects and leaves them live
// and idle, then reports what one costs: Go heap, resident memory (SQLite
// keeps its pages outside the Go heap) and file descriptors. Run it with
// a fixed count, e.g. -benchtime 1000x: each live object holds its
// database open, so a large b.N runs into the file descriptor limit.
func BenchmarkIdleObjectMemory(b *testing.B) {
	h, ns, _, _ := benchHost(b)
	ctx := context.Background()
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	rss0, fds0 := rssBytes(), openFDs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		hd, err := h.Get(ctx, ns.IDFromName(strconv.Itoa(i)))
		if err != nil {
			b.Fatal(err)
		}
		hd.Release()
	}
	b.StopTimer()
	runtime.GC()
	runtime.ReadMemStats(&after)
	if h.Live() != b.N {
		b.Fatalf("live %d, want %d", h.Live(), b.N)
	}
	n := float64(b.N)
	b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/n, "heap-B/object")
	b.ReportMetric(float64(rssBytes()-rss0)/n, "rss-B/object")
	b.ReportMetric(float64(openFDs()-fds0)/n, "fds/object")
}

func rssBytes() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}

func openFDs() int {
	entries, _ := os.ReadDir("/proc/self/fd")
	return len(entries)
}

// BenchmarkStoreObjectNew is the storage part of BenchmarkActivateNew
// (creating and opening the database), to tell the host's share apart.
func BenchmarkStoreObjectNew(b *testing.B) {
	_, ns, _, store := benchHost(b)
	for i := 0; b.Loop(); i++ {
		db, err := store.Object(ns.IDFromName(strconv.Itoa(i)).Key())
		if err != nil {
			b.Fatal(err)
		}
		_ = db.Close()
	}
}
