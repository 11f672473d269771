package storage

import (
	"fmt"
	"io/fs"
	"path/filepath"
	"testing"
	"time"
)

// Run: go test ./internal/storage -run '^$' -bench . -benchtime=2000x
// (BenchmarkCreateObjects creates 10,000 objects per iteration: -benchtime=1x.)

var syncModes = []struct {
	name string
	sync Sync
}{{"full", SyncFull}, {"normal", SyncNormal}}

func benchDB(b *testing.B, sync Sync) *DB {
	db, err := Open(filepath.Join(b.TempDir(), "bench.sqlite"), Options{Synchronous: sync})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	return db
}

func BenchmarkKVPut(b *testing.B) {
	value := make([]byte, 100)
	for _, m := range syncModes {
		// One put per event: every op is a durable commit.
		b.Run("event-per-put/"+m.name, func(b *testing.B) {
			db := benchDB(b, m.sync)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := db.Begin(); err != nil {
					b.Fatal(err)
				}
				if err := db.Put(fmt.Sprint("key", i), value); err != nil {
					b.Fatal(err)
				}
				if err := db.Commit(); err != nil {
					b.Fatal(err)
				}
			}
		})
		// 100 puts per event: the cost of a put inside an event.
		b.Run("100-per-event/"+m.name, func(b *testing.B) {
			db := benchDB(b, m.sync)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if i%100 == 0 {
					if i > 0 {
						if err := db.Commit(); err != nil {
							b.Fatal(err)
						}
					}
					if err := db.Begin(); err != nil {
						b.Fatal(err)
					}
				}
				if err := db.Put(fmt.Sprint("key", i), value); err != nil {
					b.Fatal(err)
				}
			}
			if err := db.Commit(); err != nil {
				b.Fatal(err)
			}
		})
	}
}

func BenchmarkKVGet(b *testing.B) {
	db := benchDB(b, SyncFull)
	const n = 10_000
	db.Begin()
	for i := range n {
		db.Put(fmt.Sprint("key", i), make([]byte, 100))
	}
	db.Commit()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, ok, err := db.Get(fmt.Sprint("key", (i*7919)%n)); err != nil || !ok {
			b.Fatal(ok, err)
		}
	}
}

func BenchmarkSQLInsert(b *testing.B) {
	for _, m := range syncModes {
		for _, perEvent := range []int{1, 100} {
			b.Run(fmt.Sprintf("%d-per-event/%s", perEvent, m.name), func(b *testing.B) {
				db := benchDB(b, m.sync)
				if _, err := db.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, n REAL)"); err != nil {
					b.Fatal(err)
				}
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if i%perEvent == 0 {
						if i > 0 {
							db.Commit()
						}
						db.Begin()
					}
					if _, err := db.Exec("INSERT INTO t (name, n) VALUES (?, ?)", "name", float64(i)); err != nil {
						b.Fatal(err)
					}
				}
				db.Commit()
			})
		}
	}
}

func BenchmarkSQLSelect(b *testing.B) {
	db := benchDB(b, SyncFull)
	const n = 10_000
	db.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, n REAL)")
	db.Begin()
	for i := range n {
		db.Exec("INSERT INTO t (id, name, n) VALUES (?, ?, ?)", i, "name", float64(i))
	}
	db.Commit()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cur, err := db.Exec("SELECT name, n FROM t WHERE id = ?", (i*7919)%n)
		if err != nil {
			b.Fatal(err)
		}
		if !cur.Next() {
			b.Fatal("no row", cur.Err())
		}
		cur.Close()
	}
}

// BenchmarkCreateObjects creates 10,000 objects, each with one table and
// one row (one durable commit each), through a Store with the default LRU,
// and reports the time per object and the disk used.
func BenchmarkCreateObjects(b *testing.B) {
	const n = 10_000
	for _, m := range syncModes {
		b.Run(m.name, func(b *testing.B) {
			for it := 0; it < b.N; it++ {
				dir := b.TempDir()
				s, err := OpenStore(dir, StoreOptions{DB: Options{Synchronous: m.sync}})
				if err != nil {
					b.Fatal(err)
				}
				start := time.Now()
				for i := range n {
					db, err := s.Object(ObjectKey{"Bench", fmt.Sprintf("%064x", i)})
					if err != nil {
						b.Fatal(err)
					}
					if _, err := db.Exec("CREATE TABLE t (v TEXT); INSERT INTO t VALUES ('hello')"); err != nil {
						b.Fatal(err)
					}
					db.Close()
				}
				if err := s.Close(); err != nil {
					b.Fatal(err)
				}
				elapsed := time.Since(start)
				var bytes, files int64
				filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
					if err == nil && !d.IsDir() {
						if fi, err := d.Info(); err == nil {
							bytes += fi.Size()
							files++
						}
					}
					return nil
				})
				b.ReportMetric(float64(elapsed.Milliseconds()), "ms/10k-objects")
				b.ReportMetric(float64(bytes)/(1<<20), "MiB/10k-objects")
				b.ReportMetric(float64(files), "files")
			}
		})
	}
}
