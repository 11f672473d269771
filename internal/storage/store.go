package storage

import (
	"container/list"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/containerd/errdefs"
)

// ObjectKey names a Durable Object: its namespace (the class binding) and
// its id (64 hex digits on Cloudflare; any [A-Za-z0-9_.-] name here).
type ObjectKey struct {
	Namespace string
	ID        string
}

func (k ObjectKey) String() string { return k.Namespace + "/" + k.ID }

// Validate checks that both parts are 1..128 characters of [A-Za-z0-9_.-]
// not starting with '.', so the key maps to one file inside the store.
func (k ObjectKey) Validate() error {
	for _, part := range []struct{ what, v string }{{"namespace", k.Namespace}, {"object id", k.ID}} {
		if part.v == "" || len(part.v) > 128 {
			return fmt.Errorf("%s %q: must be 1 to 128 characters: %w", part.what, part.v, ErrInvalid)
		}
		if part.v[0] == '.' {
			return fmt.Errorf("%s %q: must not start with '.': %w", part.what, part.v, ErrInvalid)
		}
		for _, r := range part.v {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.') {
				return fmt.Errorf("%s %q: character %q not allowed (use A-Z, a-z, 0-9, '_', '-', '.'): %w", part.what, part.v, r, ErrInvalid)
			}
		}
	}
	return nil
}

// StoreOptions configure a Store.
type StoreOptions struct {
	// MaxOpen bounds the open databases kept for reuse (default 128). Each
	// open database holds two file descriptors (database, WAL). Databases
	// in use are never closed, so more than MaxOpen can be open while more
	// than MaxOpen objects are in use.
	MaxOpen int
	// DB options for every database of the store.
	DB Options
}

// Store maps objects to databases under one state directory:
//
//	<dir>/objects/<namespace>/<id>.sqlite   one per object, created on first use
//	<dir>/alarms.sqlite                     alarm index
//
// It opens databases lazily and keeps an LRU of idle ones open.
type Store struct {
	dir    string
	opts   StoreOptions
	alarms *alarmIndexDB

	mu      sync.Mutex
	closed  bool
	entries map[ObjectKey]*storeEntry
	idle    *list.List // of *storeEntry with refs == 0, most recent at front
	// busy: keys being opened or closed; wait on the channel, then retry.
	busy map[ObjectKey]chan struct{}
}

type storeEntry struct {
	key  ObjectKey
	db   *DB
	refs int
	elem *list.Element // in idle, when refs == 0
}

// OpenStore opens (creating) the store in dir.
func OpenStore(dir string, opts StoreOptions) (*Store, error) {
	if opts.MaxOpen <= 0 {
		opts.MaxOpen = 128
	}
	if err := os.MkdirAll(filepath.Join(dir, "objects"), 0o700); err != nil {
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	idx, err := openAlarmIndex(filepath.Join(dir, "alarms.sqlite"), opts.DB)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	return &Store{
		dir: dir, opts: opts, alarms: idx,
		entries: map[ObjectKey]*storeEntry{}, idle: list.New(), busy: map[ObjectKey]chan struct{}{},
	}, nil
}

// Path is the database file of the object.
func (s *Store) Path(key ObjectKey) (string, error) {
	if err := key.Validate(); err != nil {
		return "", err
	}
	return filepath.Join(s.dir, "objects", key.Namespace, key.ID+".sqlite"), nil
}

// Exists reports whether the object's database has been created.
func (s *Store) Exists(key ObjectKey) (bool, error) {
	p, err := s.Path(key)
	if err != nil {
		return false, err
	}
	_, err = os.Stat(p)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// Object returns the object's database, opening (and creating) it if
// needed. Every successful call must be matched by one Close of the
// returned DB, which hands it back to the store; concurrent callers for
// the same object share one DB.
func (s *Store) Object(key ObjectKey) (*DB, error) {
	path, err := s.Path(key)
	if err != nil {
		return nil, err
	}
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return nil, fmt.Errorf("open object %s: %w", key, ErrClosed)
		}
		if e, ok := s.entries[key]; ok {
			if e.refs == 0 {
				s.idle.Remove(e.elem)
				e.elem = nil
			}
			e.refs++
			s.mu.Unlock()
			return s.handle(e), nil
		}
		if wait, ok := s.busy[key]; ok {
			s.mu.Unlock()
			<-wait
			continue
		}
		done := make(chan struct{})
		s.busy[key] = done
		s.mu.Unlock()

		db, err := s.open(key, path)

		s.mu.Lock()
		delete(s.busy, key)
		close(done)
		if err != nil {
			s.mu.Unlock()
			return nil, fmt.Errorf("open object %s: %w", key, err)
		}
		if s.closed {
			s.mu.Unlock()
			_ = db.closeNow()
			return nil, fmt.Errorf("open object %s: %w", key, ErrClosed)
		}
		e := &storeEntry{key: key, db: db, refs: 1}
		s.entries[key] = e
		victims := s.evictLocked()
		s.mu.Unlock()
		s.closeAll(victims)
		return s.handle(e), nil
	}
}

func (s *Store) open(key ObjectKey, path string) (*DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	db, err := openDB(path, s.opts.DB)
	if err != nil {
		return nil, err
	}
	db.alarms, db.key = s.alarms, key
	// Heal an index that lost this object's entry (e.g. alarms.sqlite
	// removed): opening the object puts it back.
	if ms, ok, err := db.alarmLocked(); err == nil && ok {
		_ = s.alarms.set(key, ms, true)
	}
	return db, nil
}

// handle returns the entry's DB, whose Close counts one reference down.
func (s *Store) handle(e *storeEntry) *DB {
	e.db.mu.Lock()
	if e.db.release == nil {
		e.db.release = func() { s.releaseRef(e) }
	}
	e.db.mu.Unlock()
	return e.db
}

func (s *Store) releaseRef(e *storeEntry) {
	s.mu.Lock()
	if e.refs == 0 {
		s.mu.Unlock()
		return
	}
	e.refs--
	if e.refs > 0 {
		s.mu.Unlock()
		return
	}
	if s.closed {
		delete(s.entries, e.key)
		s.mu.Unlock()
		_ = e.db.closeNow()
		return
	}
	e.elem = s.idle.PushFront(e)
	victims := s.evictLocked()
	s.mu.Unlock()
	s.closeAll(victims)
}

// evictLocked removes idle entries beyond MaxOpen, least recently used
// first, and returns their DBs for closing outside the lock.
// An evicted key stays in s.busy until its database is closed, so that
// Object does not open a second connection to a file the first still locks.
func (s *Store) evictLocked() []*storeEntry {
	var victims []*storeEntry
	for len(s.entries) > s.opts.MaxOpen && s.idle.Len() > 0 {
		e := s.idle.Remove(s.idle.Back()).(*storeEntry)
		delete(s.entries, e.key)
		s.busy[e.key] = make(chan struct{})
		victims = append(victims, e)
	}
	return victims
}

func (s *Store) closeAll(victims []*storeEntry) {
	for _, e := range victims {
		_ = e.db.closeNow()
		s.mu.Lock()
		if ch, ok := s.busy[e.key]; ok {
			delete(s.busy, e.key)
			close(ch)
		}
		s.mu.Unlock()
	}
}

// OpenCount is the number of databases open now.
func (s *Store) OpenCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.entries)
}

// Close closes idle databases and the alarm index now; databases in use
// close when their holders Close them. Uncommitted transactions in idle
// databases are rolled back.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	var victims []*DB
	for s.idle.Len() > 0 {
		e := s.idle.Remove(s.idle.Front()).(*storeEntry)
		delete(s.entries, e.key)
		victims = append(victims, e.db)
	}
	s.mu.Unlock()
	var errs []error
	for _, db := range victims {
		errs = append(errs, db.closeNow())
	}
	errs = append(errs, s.alarms.close())
	return errors.Join(errs...)
}

// DeleteNamespace removes every object of namespace: their databases and
// their alarm index entries. It is for a Durable Object class a migration
// deleted, before anything uses the store: an object of namespace in use
// fails it with an error wrapping errdefs.ErrFailedPrecondition. removed
// reports whether there was anything to remove.
func (s *Store) DeleteNamespace(namespace string) (removed bool, err error) {
	if err := (ObjectKey{Namespace: namespace, ID: "x"}).Validate(); err != nil {
		return false, fmt.Errorf("delete namespace: %w", err)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return false, fmt.Errorf("delete namespace %s: %w", namespace, ErrClosed)
	}
	var idle []*storeEntry
	for key, e := range s.entries {
		if key.Namespace != namespace {
			continue
		}
		if e.refs > 0 {
			s.mu.Unlock()
			return false, fmt.Errorf("delete namespace %s: object %s is in use: %w", namespace, key, errdefs.ErrFailedPrecondition)
		}
		idle = append(idle, e)
	}
	for key := range s.busy {
		if key.Namespace == namespace {
			s.mu.Unlock()
			return false, fmt.Errorf("delete namespace %s: object %s is being opened: %w", namespace, key, errdefs.ErrFailedPrecondition)
		}
	}
	for _, e := range idle {
		s.idle.Remove(e.elem)
		delete(s.entries, e.key)
	}
	s.mu.Unlock()
	for _, e := range idle {
		_ = e.db.closeNow()
	}

	dir := filepath.Join(s.dir, "objects", namespace)
	if _, err := os.Stat(dir); err == nil {
		removed = true
	} else if !errors.Is(err, os.ErrNotExist) {
		return false, fmt.Errorf("delete namespace %s: %w", namespace, err)
	}
	// The index goes first: an entry whose object is gone would be
	// repaired anyway, but an object without its entry is never lost.
	n, err := s.alarms.deleteNamespace(namespace)
	if err != nil {
		return false, fmt.Errorf("delete namespace %s: alarm index: %w", namespace, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return false, fmt.Errorf("delete namespace %s: %w", namespace, err)
	}
	return removed || n > 0, nil
}

// Alarm is a scheduled alarm of an object.
type Alarm struct {
	Key ObjectKey
	At  time.Time
}

// Alarms returns the alarms due at or before until, earliest first, as the
// objects' databases say: each candidate from the index is checked against
// its object (opened through the store) and the index entry is repaired
// when it over-reported. A scheduler calls Alarms(farFuture) after a restart
// to learn every pending alarm.
func (s *Store) Alarms(until time.Time) ([]Alarm, error) {
	candidates, err := s.alarms.due(until.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("list alarms: %w", err)
	}
	var out []Alarm
	for _, c := range candidates {
		// An entry may outlive its object's file (removed while berth was
		// down): drop it rather than open, and so create, the object.
		exists, err := s.Exists(c.Key)
		if err != nil {
			return nil, fmt.Errorf("list alarms: %w", err)
		}
		if !exists {
			if err := s.alarms.set(c.Key, 0, false); err != nil {
				return nil, fmt.Errorf("list alarms: drop the entry of missing object %s: %w", c.Key, err)
			}
			continue
		}
		db, err := s.Object(c.Key)
		if err != nil {
			return nil, fmt.Errorf("list alarms: %w", err)
		}
		db.mu.Lock()
		ms, ok, err := db.alarmLocked()
		inTx := db.c.inTransaction()
		db.mu.Unlock()
		_ = db.Close()
		if err != nil {
			return nil, fmt.Errorf("list alarms: object %s: %w", c.Key, err)
		}
		// An object inside a transaction may hold an alarm write not yet
		// durable; its entry is settled when the transaction ends.
		if !inTx && (!ok || ms != c.At.UnixMilli()) {
			if err := s.alarms.set(c.Key, ms, ok); err != nil {
				return nil, fmt.Errorf("list alarms: repair index for %s: %w", c.Key, err)
			}
		}
		if ok && ms <= until.UnixMilli() {
			out = append(out, Alarm{Key: c.Key, At: time.UnixMilli(ms)})
		}
	}
	slices.SortFunc(out, func(a, b Alarm) int { return a.At.Compare(b.At) })
	return out, nil
}
