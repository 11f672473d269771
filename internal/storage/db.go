// Package storage keeps the state of Durable Objects: one SQLite database per
// object, holding the object's own SQL tables, its key-value pairs (table
// _cf_KV) and its alarm (table _cf_META), plus a store-wide alarm index so a
// scheduler finds due alarms after a restart without opening every database.
//
// Durability contract: a write is acknowledged when Commit (or, outside an
// event transaction, the write call itself) returns nil. Acknowledged writes
// survive SIGKILL of the process at any moment, and, with SyncFull (the
// default), loss of power as well: databases run in WAL mode and a commit
// returns only after the WAL has been fsynced. SyncNormal skips that fsync;
// SQLite then still survives a process crash (the OS holds the written WAL
// pages) but a power loss may roll back the last commits.
//
// Concurrency: a DB serves one object, whose runtime is single-threaded. Its
// methods are safe to call from several goroutines, but transactions belong
// to the connection, not to a goroutine: writes from anywhere join the open
// transaction.
package storage

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// Sync selects how commits reach the disk.
type Sync int

const (
	// SyncFull fsyncs the WAL at every commit (PRAGMA synchronous=FULL).
	SyncFull Sync = iota
	// SyncNormal leaves commits in the OS page cache; checkpoints still
	// fsync. Survives process crashes, not power loss.
	SyncNormal
)

// Options configure a database.
type Options struct {
	Synchronous Sync
}

// DB is the database of one Durable Object.
type DB struct {
	mu     sync.Mutex
	c      *conn
	path   string
	closed bool

	// eventTx: Begin opened the event transaction and Commit/Rollback has
	// not ended it yet.
	eventTx bool
	// savepoints is the depth of user transactions (Transaction, Savepoint).
	savepoints int

	// The internal tables are created on first write, so an object that
	// only uses SQL carries none of them. A rollback can undo the creation,
	// hence refreshSchemaFlags after every rollback.
	kvReady, metaReady bool

	stmts   map[string]*stmt
	cursors map[*Cursor]struct{}

	// Alarm index hook (nil for a DB opened alone).
	alarms     alarmIndex
	key        ObjectKey
	alarmDirty bool

	// release, when set, hands the DB back to its Store instead of closing it.
	release func()
}

// Open opens (creating if needed) the database at path. The directory must
// exist. The returned DB is not shared with any Store; Close closes it.
func Open(path string, opts Options) (*DB, error) {
	return openDB(path, opts)
}

func openDB(path string, opts Options) (*DB, error) {
	if path == "" {
		return nil, fmt.Errorf("open database: empty path: %w", ErrInvalid)
	}
	if fi, err := os.Stat(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("open database %s: %w", path, err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("open database %s: parent is not a directory: %w", path, ErrInvalid)
	}
	d, err := openChecked(path, opts)
	var se *SQLiteError
	if errors.As(err, &se) && (se.Code&0xff == sqliteNotADB || se.Code&0xff == sqliteCorrupt) && neverCommitted(path) {
		// Power was lost while a new database's first page was written
		// (see openConfigured): nothing was ever committed, start afresh.
		if rerr := os.Remove(path); rerr == nil {
			d, err = openChecked(path, opts)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	return d, nil
}

func openChecked(path string, opts Options) (*DB, error) {
	d, err := openConfigured(path, opts)
	if err != nil {
		return nil, err
	}
	mode, err := d.pragmaText("PRAGMA journal_mode")
	if err == nil && mode != "wal" {
		err = fmt.Errorf("journal mode is %q, want wal", mode)
	}
	if err == nil {
		err = d.refreshSchemaFlags()
	}
	if err != nil {
		d.finalizeStmts()
		d.c.close()
		return nil, err
	}
	return d, nil
}

const (
	sqliteCorrupt = 11
	sqliteNotADB  = 26
)

func openConfigured(path string, opts Options) (*DB, error) {
	fi, statErr := os.Stat(path)
	fresh := statErr != nil || fi.Size() == 0
	c, err := openConn(path)
	if err != nil {
		return nil, err
	}
	d := &DB{c: c, path: path, stmts: map[string]*stmt{}, cursors: map[*Cursor]struct{}{}}
	sync := "FULL"
	if opts.Synchronous == SyncNormal {
		sync = "NORMAL"
	}
	// locking_mode=EXCLUSIVE before WAL: SQLite then keeps the WAL index in
	// process memory (no -shm file per object) and no second process can
	// open the object while this one owns it.
	setup := "PRAGMA locking_mode=EXCLUSIVE; PRAGMA synchronous=FULL;"
	if fresh {
		// Switching an empty file to WAL writes its first page. Through
		// a rollback journal that costs four fsyncs; without one, a single
		// fsync of the file (synchronous=FULL), done before any commit can
		// go to the WAL. A power cut during that one write can leave a
		// torn first page and nothing else: openDB recreates such a file.
		setup += "PRAGMA journal_mode=OFF;"
	}
	setup += "PRAGMA journal_mode=WAL; PRAGMA synchronous=" + sync + "; PRAGMA foreign_keys=ON; PRAGMA busy_timeout=5000;"
	if err := c.exec(setup); err != nil {
		c.close()
		return nil, err
	}
	return d, nil
}

// neverCommitted: the file is at most one page and has no WAL, so no
// transaction ever committed to it.
func neverCommitted(path string) bool {
	fi, err := os.Stat(path)
	if err != nil || fi.Size() > 4096 {
		return false
	}
	_, err = os.Stat(path + "-wal")
	return errors.Is(err, os.ErrNotExist)
}

func (d *DB) pragmaText(q string) (string, error) {
	s, err := d.cached(q)
	if err != nil {
		return "", err
	}
	defer s.reset()
	row, err := s.step()
	if err != nil || !row {
		return "", err
	}
	return s.text(0), nil
}

// Path is the database file.
func (d *DB) Path() string { return d.path }

// Close ends the DB's use. For a DB from Store.Object it hands one
// reference back to the store (which keeps the database open for reuse and
// closes it when evicted); otherwise it closes the database. A transaction still open is rolled back: its writes were never
// acknowledged. Close twice is a no-op.
func (d *DB) Close() error {
	d.mu.Lock()
	rel := d.release
	d.mu.Unlock()
	if rel != nil {
		rel()
		return nil
	}
	return d.closeNow()
}

func (d *DB) closeNow() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	for cur := range d.cursors {
		cur.finish(ErrClosed)
	}
	if d.c.inTransaction() {
		_ = d.c.exec("ROLLBACK")
	}
	d.eventTx, d.savepoints = false, 0
	d.settleAlarmIndex()
	d.finalizeStmts()
	d.closed = true
	if err := d.c.close(); err != nil {
		return fmt.Errorf("close database %s: %w", d.path, err)
	}
	return nil
}

func (d *DB) finalizeStmts() {
	for _, s := range d.stmts {
		s.finalize()
	}
	d.stmts = map[string]*stmt{}
}

// lock takes the mutex and fails when the DB is closed.
func (d *DB) lock() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return fmt.Errorf("database %s: %w", d.path, ErrClosed)
	}
	return nil
}

// cached returns a prepared internal statement, compiled on first use.
func (d *DB) cached(q string) (*stmt, error) {
	if s, ok := d.stmts[q]; ok {
		return s, nil
	}
	s, err := d.c.prepareString(q)
	if err != nil {
		return nil, err
	}
	d.stmts[q] = s
	return s, nil
}

// run executes a cached internal statement with args to completion and
// returns the number of rows it changed.
func (d *DB) run(q string, args ...any) (int64, error) {
	s, err := d.cached(q)
	if err != nil {
		return 0, err
	}
	defer s.reset()
	if err := s.bind(args...); err != nil {
		return 0, err
	}
	before := d.c.totalChanges()
	for {
		row, err := s.step()
		if err != nil {
			return 0, err
		}
		if !row {
			return d.c.totalChanges() - before, nil
		}
	}
}

func (d *DB) refreshSchemaFlags() error {
	s, err := d.cached("SELECT name FROM sqlite_schema WHERE type = 'table' AND name IN ('_cf_KV', '_cf_META')")
	if err != nil {
		return err
	}
	defer s.reset()
	d.kvReady, d.metaReady = false, false
	for {
		row, err := s.step()
		if err != nil {
			return err
		}
		if !row {
			return nil
		}
		switch s.text(0) {
		case "_cf_KV":
			d.kvReady = true
		case "_cf_META":
			d.metaReady = true
		}
	}
}

func (d *DB) ensureKV() error {
	if d.kvReady {
		return nil
	}
	if err := d.c.exec("CREATE TABLE IF NOT EXISTS _cf_KV (key TEXT PRIMARY KEY, value BLOB) WITHOUT ROWID"); err != nil {
		return err
	}
	d.kvReady = true
	return nil
}

func (d *DB) ensureMeta() error {
	if d.metaReady {
		return nil
	}
	if err := d.c.exec("CREATE TABLE IF NOT EXISTS _cf_META (key TEXT PRIMARY KEY, value) WITHOUT ROWID"); err != nil {
		return err
	}
	d.metaReady = true
	return nil
}

// Begin opens the event transaction: every write until Commit or Rollback
// belongs to it and becomes durable together. The Durable Object runtime
// calls Begin when an event starts and Commit before it lets the event's
// output (response, outgoing messages) leave: the output gate. Begin fails
// with ErrTxState if an event transaction or a user transaction is open.
func (d *DB) Begin() error {
	if err := d.lock(); err != nil {
		return err
	}
	defer d.mu.Unlock()
	if d.eventTx {
		return fmt.Errorf("begin event transaction: one is already open: %w", ErrTxState)
	}
	if d.savepoints > 0 {
		return fmt.Errorf("begin event transaction: a user transaction is open: %w", ErrTxState)
	}
	// Deferred: an event that only reads takes no write lock and its commit
	// costs no fsync.
	if err := d.c.exec("BEGIN"); err != nil {
		return fmt.Errorf("begin event transaction: %w", err)
	}
	d.eventTx = true
	return nil
}

// InEvent reports whether the event transaction is open.
func (d *DB) InEvent() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.eventTx
}

// Commit makes the event transaction's writes durable (see the package
// comment) and ends it. When Commit returns an error, none of the event's
// writes are durable and the transaction is over; the runtime should treat
// the object as broken (Cloudflare resets it). Commit with a user
// transaction still open fails with ErrTxState and leaves everything open.
func (d *DB) Commit() error {
	if err := d.lock(); err != nil {
		return err
	}
	defer d.mu.Unlock()
	if !d.eventTx {
		return fmt.Errorf("commit: no event transaction is open: %w", ErrTxState)
	}
	if d.savepoints > 0 {
		return fmt.Errorf("commit: %d user transaction(s) still open: %w", d.savepoints, ErrTxState)
	}
	err := d.c.exec("COMMIT")
	if err != nil && d.c.inTransaction() {
		// COMMIT can fail and leave the transaction open (SQLITE_BUSY);
		// the contract says the transaction is over either way.
		_ = d.c.exec("ROLLBACK")
	}
	d.eventTx = false
	if err != nil {
		_ = d.refreshSchemaFlags()
		d.settleAlarmIndex()
		return fmt.Errorf("commit: %w", err)
	}
	d.settleAlarmIndex()
	return nil
}

// Rollback discards the event transaction's writes, including those of user
// transactions nested in it, and ends it.
func (d *DB) Rollback() error {
	if err := d.lock(); err != nil {
		return err
	}
	defer d.mu.Unlock()
	if !d.eventTx {
		return fmt.Errorf("rollback: no event transaction is open: %w", ErrTxState)
	}
	err := d.c.exec("ROLLBACK")
	d.eventTx, d.savepoints = false, 0
	if ferr := d.refreshSchemaFlags(); err == nil {
		err = ferr
	}
	d.settleAlarmIndex()
	if err != nil {
		return fmt.Errorf("rollback: %w", err)
	}
	return nil
}

// Savepoint is an open user transaction (JS storage.transaction /
// transactionSync). Savepoints nest; they must end in reverse order of
// opening.
type Savepoint struct {
	d     *DB
	depth int
	done  bool
}

// BeginSavepoint opens a user transaction. Inside the event transaction it
// is a SQLite SAVEPOINT; outside, the outermost one is a transaction of its
// own and Release makes it durable.
func (d *DB) BeginSavepoint() (*Savepoint, error) {
	if err := d.lock(); err != nil {
		return nil, err
	}
	defer d.mu.Unlock()
	depth := d.savepoints + 1
	if err := d.c.exec(fmt.Sprintf("SAVEPOINT _cf_user_%d", depth)); err != nil {
		return nil, fmt.Errorf("begin transaction: %w", err)
	}
	d.savepoints = depth
	return &Savepoint{d: d, depth: depth}, nil
}

func (sp *Savepoint) check(op string) error {
	if sp.done {
		return fmt.Errorf("%s transaction: already ended: %w", op, ErrTxState)
	}
	if sp.d.savepoints != sp.depth {
		return fmt.Errorf("%s transaction: a nested transaction (depth %d) is still open or this one was discarded by a rollback: %w",
			op, sp.d.savepoints, ErrTxState)
	}
	return nil
}

// Release keeps the transaction's writes: they join the enclosing
// transaction, or, for the outermost one outside an event, become durable.
func (sp *Savepoint) Release() error {
	d := sp.d
	if err := d.lock(); err != nil {
		return err
	}
	defer d.mu.Unlock()
	if err := sp.check("commit"); err != nil {
		return err
	}
	err := d.c.exec(fmt.Sprintf("RELEASE _cf_user_%d", sp.depth))
	if err != nil {
		// A failed outermost RELEASE (the COMMIT) leaves the savepoint
		// open; undo it so the connection is not stuck in a transaction.
		_ = d.c.exec(fmt.Sprintf("ROLLBACK TO _cf_user_%d; RELEASE _cf_user_%d", sp.depth, sp.depth))
		_ = d.refreshSchemaFlags()
	}
	sp.done = true
	d.savepoints = sp.depth - 1
	d.settleAlarmIndex()
	if err != nil {
		return fmt.Errorf("commit transaction: %w", err)
	}
	return nil
}

// Rollback discards the transaction's writes, and those of nested ones.
func (sp *Savepoint) Rollback() error {
	d := sp.d
	if err := d.lock(); err != nil {
		return err
	}
	defer d.mu.Unlock()
	if err := sp.check("rollback"); err != nil {
		return err
	}
	err := d.c.exec(fmt.Sprintf("ROLLBACK TO _cf_user_%d; RELEASE _cf_user_%d", sp.depth, sp.depth))
	sp.done = true
	d.savepoints = sp.depth - 1
	if ferr := d.refreshSchemaFlags(); err == nil {
		err = ferr
	}
	d.settleAlarmIndex()
	if err != nil {
		return fmt.Errorf("rollback transaction: %w", err)
	}
	return nil
}

// Transaction runs fn in a user transaction (transactionSync): fn's writes
// are kept if it returns nil and rolled back if it returns an error or
// panics; the error (or panic) is passed on.
func (d *DB) Transaction(fn func() error) (err error) {
	sp, err := d.BeginSavepoint()
	if err != nil {
		return err
	}
	defer func() {
		if p := recover(); p != nil {
			_ = sp.Rollback()
			panic(p)
		}
	}()
	if err := fn(); err != nil {
		if rerr := sp.Rollback(); rerr != nil {
			return errors.Join(err, rerr)
		}
		return err
	}
	return sp.Release()
}

// atomically runs fn, an internal multi-statement write, so that it takes
// effect whole or not at all. Caller holds d.mu.
func (d *DB) atomically(fn func() error) error {
	if err := d.c.exec("SAVEPOINT _cf_op"); err != nil {
		return err
	}
	if err := fn(); err != nil {
		_ = d.c.exec("ROLLBACK TO _cf_op; RELEASE _cf_op")
		_ = d.refreshSchemaFlags()
		return err
	}
	if err := d.c.exec("RELEASE _cf_op"); err != nil {
		_ = d.c.exec("ROLLBACK TO _cf_op; RELEASE _cf_op")
		_ = d.refreshSchemaFlags()
		return err
	}
	d.settleAlarmIndex()
	return nil
}

// DatabaseSize is the size of the database in bytes (page count × page
// size), as Cloudflare's sql.databaseSize.
func (d *DB) DatabaseSize() (int64, error) {
	if err := d.lock(); err != nil {
		return 0, err
	}
	defer d.mu.Unlock()
	s, err := d.cached("SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()")
	if err != nil {
		return 0, fmt.Errorf("database size: %w", err)
	}
	defer s.reset()
	if _, err := s.step(); err != nil {
		return 0, fmt.Errorf("database size: %w", err)
	}
	return s.int64(0), nil
}

// IntegrityCheck runs PRAGMA integrity_check and returns nil when SQLite
// reports "ok".
func (d *DB) IntegrityCheck() error {
	if err := d.lock(); err != nil {
		return err
	}
	defer d.mu.Unlock()
	res, err := d.pragmaText("PRAGMA integrity_check")
	if err != nil {
		return fmt.Errorf("integrity check: %w", err)
	}
	if res != "ok" {
		return fmt.Errorf("integrity check of %s: %s", d.path, res)
	}
	return nil
}

// DeleteAllOptions select what DeleteAll removes besides KV and SQL data.
type DeleteAllOptions struct {
	// Alarm also deletes the alarm (compatibility flag
	// delete_all_deletes_alarm, on since 2026-02-24).
	Alarm bool
}

// DeleteAll removes all of the object's data, as Cloudflare's deleteAll on
// a SQLite-backed object: every key-value pair and every user table, view,
// index and trigger; the alarm too if opts.Alarm. It is one atomic write.
func (d *DB) DeleteAll(opts DeleteAllOptions) error {
	if err := d.lock(); err != nil {
		return err
	}
	defer d.mu.Unlock()
	err := d.atomically(func() error {
		if d.kvReady {
			if _, err := d.run("DELETE FROM _cf_KV"); err != nil {
				return err
			}
		}
		if opts.Alarm {
			if err := d.deleteAlarmLocked(); err != nil {
				return err
			}
		}
		// The parent and child tables of a foreign key go in one
		// transaction; deferring the check lets them go in any order.
		if err := d.c.exec("PRAGMA defer_foreign_keys = ON"); err != nil {
			return err
		}
		for _, kind := range []string{"trigger", "view", "vtable", "table"} {
			names, err := d.userSchemaNames(kind)
			if err != nil {
				return err
			}
			for _, name := range names {
				q := "DROP " + map[string]string{"trigger": "TRIGGER", "view": "VIEW", "vtable": "TABLE", "table": "TABLE"}[kind] +
					" IF EXISTS " + quoteIdent(name)
				if err := d.c.exec(q); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete all: %w", err)
	}
	return nil
}

func (d *DB) userSchemaNames(kind string) ([]string, error) {
	q := `SELECT name FROM sqlite_schema WHERE type = ?1 AND name NOT LIKE '\_cf\_%' ESCAPE '\' AND name NOT LIKE 'sqlite\_%' ESCAPE '\'`
	args := []any{kind}
	switch kind {
	case "vtable":
		q = `SELECT name FROM sqlite_schema WHERE type = 'table' AND sql LIKE 'CREATE VIRTUAL TABLE%' AND name NOT LIKE '\_cf\_%' ESCAPE '\'`
		args = nil
	}
	s, err := d.cached(q)
	if err != nil {
		return nil, err
	}
	defer s.reset()
	if err := s.bind(args...); err != nil {
		return nil, err
	}
	var names []string
	for {
		row, err := s.step()
		if err != nil {
			return nil, err
		}
		if !row {
			return names, nil
		}
		names = append(names, s.text(0))
	}
}

func quoteIdent(name string) string {
	out := []byte{'"'}
	for i := 0; i < len(name); i++ {
		if name[i] == '"' {
			out = append(out, '"')
		}
		out = append(out, name[i])
	}
	return string(append(out, '"'))
}
