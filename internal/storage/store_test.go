package storage

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// testTime is a fixed instant plus n seconds (alarms keep milliseconds).
func testTime(n int) time.Time {
	return time.UnixMilli(1_800_000_000_000).Add(time.Duration(n) * time.Second)
}

func openTestStore(t *testing.T, dir string, maxOpen int) *Store {
	t.Helper()
	s, err := OpenStore(dir, StoreOptions{MaxOpen: maxOpen})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func key(id string) ObjectKey { return ObjectKey{"Counter", id} }

func TestObjectKeyValidate(t *testing.T) {
	for _, bad := range []ObjectKey{{"", "a"}, {"ns", ""}, {"ns", "../x"}, {"ns", ".hidden"}, {"a/b", "x"}, {"ns", "sp ace"}, {"ns", string(make([]byte, 129))}} {
		if err := bad.Validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%q accepted: %v", bad, err)
		}
	}
	if err := (ObjectKey{"MyContainer", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}).Validate(); err != nil {
		t.Error(err)
	}
}

func TestStoreLazyOpenAndLRU(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir, 3)
	if ok, _ := s.Exists(key("a")); ok {
		t.Fatal("object exists before first use")
	}
	a, err := s.Object(key("a"))
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, a, "k", "a")
	if ok, _ := s.Exists(key("a")); !ok {
		t.Fatal("object file missing after use")
	}
	// A second holder shares the DB; one Close keeps it for the other.
	a2, _ := s.Object(key("a"))
	if a2 != a {
		t.Fatal("two DBs for one object")
	}
	a2.Close()
	if _, _, err := a.Get("k"); err != nil {
		t.Fatalf("db closed while still held: %v", err)
	}
	// Fill beyond MaxOpen with idle objects: LRU evicts, "a" stays (in use).
	for i := range 6 {
		db, err := s.Object(key(fmt.Sprint("o", i)))
		if err != nil {
			t.Fatal(err)
		}
		mustPut(t, db, "k", fmt.Sprint(i))
		db.Close()
	}
	if n := s.OpenCount(); n != 3 {
		t.Fatalf("open databases = %d, want 3 (MaxOpen)", n)
	}
	if _, _, err := a.Get("k"); err != nil {
		t.Fatalf("in-use db evicted: %v", err)
	}
	a.Close()
	// Evicted objects reopen with their data.
	for i := range 6 {
		db, err := s.Object(key(fmt.Sprint("o", i)))
		if err != nil {
			t.Fatal(err)
		}
		v, ok, err := db.Get("k")
		if err != nil || !ok || string(v) != fmt.Sprint(i) {
			t.Fatalf("o%d: %q %v %v", i, v, ok, err)
		}
		db.Close()
	}
	p, _ := s.Path(key("o1"))
	if p != filepath.Join(dir, "objects", "Counter", "o1.sqlite") {
		t.Fatalf("path %s", p)
	}
	if _, err := s.Object(ObjectKey{"ns", "../../etc"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad key: %v", err)
	}
}

func TestStoreConcurrentObject(t *testing.T) {
	s := openTestStore(t, t.TempDir(), 4)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				db, err := s.Object(key(fmt.Sprint("o", (g+i)%6)))
				if err != nil {
					errs <- err
					return
				}
				if err := db.Put(fmt.Sprint("g", g, "-", i), []byte("v")); err != nil {
					errs <- err
				}
				db.Close()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	total := 0
	for i := range 6 {
		db, _ := s.Object(key(fmt.Sprint("o", i)))
		kvs, _ := db.List(ListOptions{})
		total += len(kvs)
		db.Close()
	}
	if total != 8*50 {
		t.Fatalf("%d keys, want %d", total, 8*50)
	}
}

func TestStoreCloseWithObjectInUse(t *testing.T) {
	s, err := OpenStore(t.TempDir(), StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	db, _ := s.Object(key("a"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Put("k", []byte("v")); err != nil {
		t.Fatalf("in-use db closed under its holder: %v", err)
	}
	db.Close()
	if err := db.Put("k", []byte("v")); !errors.Is(err, ErrClosed) {
		t.Fatalf("db still open after last Close: %v", err)
	}
	if _, err := s.Object(key("b")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Object after store Close: %v", err)
	}
}

func TestAlarms(t *testing.T) {
	db := openTestDB(t)
	if _, ok, err := db.GetAlarm(); ok || err != nil {
		t.Fatalf("fresh db has alarm: %v %v", ok, err)
	}
	at := time.UnixMilli(1_800_000_000_123)
	if err := db.SetAlarm(at.Add(400 * time.Microsecond)); err != nil {
		t.Fatal(err)
	}
	got, ok, err := db.GetAlarm()
	if !ok || err != nil || !got.Equal(at) {
		t.Fatalf("alarm = %v %v %v, want %v (ms precision)", got, ok, err, at)
	}
	if err := db.SetAlarm(at.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	db = reopen(t, db)
	if got, ok, _ := db.GetAlarm(); !ok || !got.Equal(at.Add(time.Hour)) {
		t.Fatalf("after reopen: %v %v", got, ok)
	}
	if err := db.DeleteAlarm(); err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteAlarm(); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := db.GetAlarm(); ok {
		t.Fatal("alarm after delete")
	}
}

func TestStoreAlarmIndex(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir, 2)
	set := func(id string, n int) {
		db, err := s.Object(key(id))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if err := db.Begin(); err != nil {
			t.Fatal(err)
		}
		if err := db.SetAlarm(testTime(n)); err != nil {
			t.Fatal(err)
		}
		if err := db.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	set("a", 30)
	set("b", 10)
	set("c", 20)
	set("a", 5) // moved earlier
	db, _ := s.Object(key("c"))
	db.DeleteAlarm()
	db.Close()

	got, err := s.Alarms(testTime(100))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint([]Alarm{{key("a"), testTime(5)}, {key("b"), testTime(10)}}) {
		t.Fatalf("alarms = %v", got)
	}
	if got, _ := s.Alarms(testTime(7)); len(got) != 1 || got[0].Key != key("a") {
		t.Fatalf("due by +7s: %v", got)
	}

	// After a restart the index alone finds them.
	s.Close()
	s2 := openTestStore(t, dir, 2)
	if got, _ := s2.Alarms(testTime(100)); len(got) != 2 {
		t.Fatalf("after restart: %v", got)
	}

	// A rolled-back SetAlarm leaves no trace once settled.
	db, _ = s2.Object(key("d"))
	db.Begin()
	db.SetAlarm(testTime(1))
	db.Rollback()
	db.Close()
	if got, _ := s2.Alarms(testTime(100)); len(got) != 2 {
		t.Fatalf("rolled back alarm listed: %v", got)
	}
}

// The process may die between the index write and the object's commit.
// Simulate each window by writing one side only, and check Alarms repairs.
func TestStoreAlarmIndexRepair(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir, 8)
	// Window 1: index lowered, object commit never happened.
	if err := s.alarms.lower(key("ghost"), testTime(1).UnixMilli()); err != nil {
		t.Fatal(err)
	}
	// Window 2: object moved its alarm later, index still has the earlier time.
	db, _ := s.Object(key("late"))
	db.SetAlarm(testTime(50))
	db.Close()
	s.alarms.lower(key("late"), testTime(2).UnixMilli())

	got, err := s.Alarms(testTime(100))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint([]Alarm{{key("late"), testTime(50)}}) {
		t.Fatalf("alarms = %v", got)
	}
	cands, _ := s.alarms.due(testTime(100).UnixMilli())
	if fmt.Sprint(cands) != fmt.Sprint([]Alarm{{key("late"), testTime(50)}}) {
		t.Fatalf("index not repaired: %v", cands)
	}
	// The ghost's entry went without creating the object.
	if ok, err := s.Exists(key("ghost")); ok || err != nil {
		t.Fatalf("Exists(ghost) after Alarms = %v, %v; want false", ok, err)
	}
	// Index lost entirely: opening the object restores its entry.
	s.Close()
	os.Remove(filepath.Join(dir, "alarms.sqlite"))
	os.Remove(filepath.Join(dir, "alarms.sqlite-wal"))
	s2 := openTestStore(t, dir, 8)
	if got, _ := s2.Alarms(testTime(100)); len(got) != 0 {
		t.Fatalf("fresh index lists %v", got)
	}
	db, _ = s2.Object(key("late"))
	db.Close()
	if got, _ := s2.Alarms(testTime(100)); len(got) != 1 {
		t.Fatalf("index not healed by open: %v", got)
	}
}

func TestStoreDeleteNamespace(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir, 8)
	gone, kept := ObjectKey{"Gone", "a"}, ObjectKey{"Kept", "a"}
	for _, k := range []ObjectKey{gone, kept} {
		db, err := s.Object(k)
		if err != nil {
			t.Fatal(err)
		}
		mustPut(t, db, "k", "v")
		if err := db.Begin(); err != nil {
			t.Fatal(err)
		}
		if err := db.SetAlarm(testTime(1)); err != nil {
			t.Fatal(err)
		}
		if err := db.Commit(); err != nil {
			t.Fatal(err)
		}
		if k == kept {
			db.Close()
		} else {
			defer db.Close()
			// In use: refused, nothing removed.
			if _, err := s.DeleteNamespace("Gone"); err == nil {
				t.Fatal("deleted a namespace with an object in use")
			}
			if ok, _ := s.Exists(gone); !ok {
				t.Fatal("refused delete removed the object")
			}
			db.Close()
		}
	}
	removed, err := s.DeleteNamespace("Gone")
	if err != nil || !removed {
		t.Fatalf("DeleteNamespace = %v, %v; want true, nil", removed, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "objects", "Gone")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("objects directory still there: %v", err)
	}
	got, err := s.Alarms(testTime(100))
	if err != nil || len(got) != 1 || got[0].Key != kept {
		t.Fatalf("alarms after delete = %v, %v; want only %s", got, err, kept)
	}
	// Gone is empty when used again; Kept is untouched.
	db, _ := s.Object(gone)
	if v, ok, err := db.Get("k"); err != nil || ok {
		t.Fatalf("deleted object still has k = %q, %v", v, err)
	}
	db.Close()
	db, _ = s.Object(kept)
	if v, _, err := db.Get("k"); err != nil || string(v) != "v" {
		t.Fatalf("kept object k = %q, %v", v, err)
	}
	db.Close()
	if _, err := s.DeleteNamespace("../x"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad namespace: %v", err)
	}
}
