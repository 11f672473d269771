package storage

import (
	"fmt"
	"slices"
	"strings"
)

// Limits of the key-value API, Cloudflare's.
const (
	MaxKeySize   = 2048   // bytes of UTF-8
	MaxValueSize = 131072 // bytes of serialised value (128 KiB)
	MaxBatchKeys = 128    // keys per GetMany, PutMany, DeleteMany
)

// KV is one key-value pair. Values are opaque bytes: the JS side stores
// structured-clone serialisations.
type KV struct {
	Key   string
	Value []byte
}

// keyForError shortens a key for an error message.
func keyForError(key string) string {
	const max = 64
	if len(key) <= max {
		return fmt.Sprintf("%q", key)
	}
	return fmt.Sprintf("%q… (%d bytes)", key[:max], len(key))
}

func checkKey(op, key string) error {
	if len(key) > MaxKeySize {
		return fmt.Errorf("%s key %s: key is %d bytes, the limit is %d: %w", op, keyForError(key), len(key), MaxKeySize, ErrInvalid)
	}
	return nil
}

func checkBatch(op string, n int) error {
	if n > MaxBatchKeys {
		return fmt.Errorf("%s: %d keys given, the limit is %d per call: %w", op, n, MaxBatchKeys, ErrInvalid)
	}
	return nil
}

// Get returns the value stored under key; ok is false when there is none.
func (d *DB) Get(key string) (value []byte, ok bool, err error) {
	if err := checkKey("get", key); err != nil {
		return nil, false, err
	}
	if err := d.lock(); err != nil {
		return nil, false, err
	}
	defer d.mu.Unlock()
	value, ok, err = d.getLocked(key)
	if err != nil {
		return nil, false, fmt.Errorf("get key %s: %w", keyForError(key), err)
	}
	return value, ok, nil
}

func (d *DB) getLocked(key string) ([]byte, bool, error) {
	if !d.kvReady {
		return nil, false, nil
	}
	s, err := d.cached("SELECT value FROM _cf_KV WHERE key = ?1")
	if err != nil {
		return nil, false, err
	}
	defer s.reset()
	if err := s.bind(key); err != nil {
		return nil, false, err
	}
	row, err := s.step()
	if err != nil || !row {
		return nil, false, err
	}
	v := s.blob(0)
	if v == nil {
		v = []byte{}
	}
	return v, true, nil
}

// GetMany returns the pairs present among keys (at most MaxBatchKeys),
// sorted by key, without duplicates; absent keys are left out.
func (d *DB) GetMany(keys []string) ([]KV, error) {
	if err := checkBatch("get", len(keys)); err != nil {
		return nil, err
	}
	for _, k := range keys {
		if err := checkKey("get", k); err != nil {
			return nil, err
		}
	}
	sorted := slices.Clone(keys)
	slices.Sort(sorted)
	sorted = slices.Compact(sorted)
	if err := d.lock(); err != nil {
		return nil, err
	}
	defer d.mu.Unlock()
	out := make([]KV, 0, len(sorted))
	for _, k := range sorted {
		v, ok, err := d.getLocked(k)
		if err != nil {
			return nil, fmt.Errorf("get key %s: %w", keyForError(k), err)
		}
		if ok {
			out = append(out, KV{k, v})
		}
	}
	return out, nil
}

func checkEntry(op string, e KV) error {
	if err := checkKey(op, e.Key); err != nil {
		return err
	}
	if len(e.Value) > MaxValueSize {
		return fmt.Errorf("%s key %s: value is %d bytes, the limit is %d: %w", op, keyForError(e.Key), len(e.Value), MaxValueSize, ErrInvalid)
	}
	return nil
}

// Put stores value under key. A nil value is stored as an empty one.
func (d *DB) Put(key string, value []byte) error {
	return d.PutMany([]KV{{key, value}})
}

// PutMany stores up to MaxBatchKeys pairs atomically: when any entry is
// invalid or a write fails, none is written. A key given twice takes the
// last value.
func (d *DB) PutMany(entries []KV) error {
	if err := checkBatch("put", len(entries)); err != nil {
		return err
	}
	for _, e := range entries {
		if err := checkEntry("put", e); err != nil {
			return err
		}
	}
	if err := d.lock(); err != nil {
		return err
	}
	defer d.mu.Unlock()
	write := func() error {
		if err := d.ensureKV(); err != nil {
			return err
		}
		for _, e := range entries {
			v := e.Value
			if v == nil {
				v = []byte{}
			}
			if _, err := d.run("INSERT INTO _cf_KV (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value", e.Key, v); err != nil {
				return fmt.Errorf("put key %s: %w", keyForError(e.Key), err)
			}
		}
		return nil
	}
	var err error
	if len(entries) == 1 && d.kvReady {
		err = write() // one statement is atomic by itself
	} else {
		err = d.atomically(write)
	}
	if err != nil {
		return fmt.Errorf("put: %w", err)
	}
	return nil
}

// Delete removes key and reports whether it existed.
func (d *DB) Delete(key string) (existed bool, err error) {
	n, err := d.DeleteMany([]string{key})
	return n == 1, err
}

// DeleteMany removes up to MaxBatchKeys keys atomically and returns how many
// existed (a key given twice counts once).
func (d *DB) DeleteMany(keys []string) (int, error) {
	if err := checkBatch("delete", len(keys)); err != nil {
		return 0, err
	}
	for _, k := range keys {
		if err := checkKey("delete", k); err != nil {
			return 0, err
		}
	}
	if err := d.lock(); err != nil {
		return 0, err
	}
	defer d.mu.Unlock()
	if !d.kvReady {
		return 0, nil
	}
	var count int64
	write := func() error {
		for _, k := range keys {
			n, err := d.run("DELETE FROM _cf_KV WHERE key = ?1", k)
			if err != nil {
				return fmt.Errorf("delete key %s: %w", keyForError(k), err)
			}
			count += n
		}
		return nil
	}
	var err error
	if len(keys) == 1 {
		err = write()
	} else {
		err = d.atomically(write)
	}
	if err != nil {
		return 0, fmt.Errorf("delete: %w", err)
	}
	return int(count), nil
}

// ListOptions select a range of keys, as Cloudflare's list(). Keys compare
// as UTF-8 bytes. Start is inclusive, StartAfter and End exclusive; Start
// and StartAfter exclude each other. Limit 0 means no limit.
type ListOptions struct {
	Start      string
	StartAfter string
	End        string
	Prefix     string
	Reverse    bool
	Limit      int
}

// List returns the pairs in the selected range in key order (descending
// with Reverse; Limit then keeps the last keys of the range).
func (d *DB) List(opts ListOptions) ([]KV, error) {
	if opts.Start != "" && opts.StartAfter != "" {
		return nil, fmt.Errorf("list: start and startAfter cannot both be set: %w", ErrInvalid)
	}
	if opts.Limit < 0 {
		return nil, fmt.Errorf("list: limit %d is negative: %w", opts.Limit, ErrInvalid)
	}
	var where []string
	var args []any
	add := func(cond string, arg any) {
		args = append(args, arg)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	if opts.Start != "" {
		add("key >= ?%d", opts.Start)
	}
	if opts.StartAfter != "" {
		add("key > ?%d", opts.StartAfter)
	}
	if opts.End != "" {
		add("key < ?%d", opts.End)
	}
	if opts.Prefix != "" {
		add("key >= ?%d", opts.Prefix)
		if end, ok := prefixEnd(opts.Prefix); ok {
			add("key < ?%d", end)
		}
	}
	q := "SELECT key, value FROM _cf_KV"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY key"
	if opts.Reverse {
		q += " DESC"
	}
	if opts.Limit > 0 {
		add("LIMIT ?%d", int64(opts.Limit))
		q += " " + where[len(where)-1]
	}
	if err := d.lock(); err != nil {
		return nil, err
	}
	defer d.mu.Unlock()
	if !d.kvReady {
		return []KV{}, nil
	}
	s, err := d.cached(q)
	if err != nil {
		return nil, fmt.Errorf("list: %w", err)
	}
	defer s.reset()
	if err := s.bind(args...); err != nil {
		return nil, fmt.Errorf("list: %w", err)
	}
	out := []KV{}
	for {
		row, err := s.step()
		if err != nil {
			return nil, fmt.Errorf("list: %w", err)
		}
		if !row {
			return out, nil
		}
		v := s.blob(1)
		if v == nil {
			v = []byte{}
		}
		out = append(out, KV{s.text(0), v})
	}
}

// prefixEnd returns the smallest string greater than every string with
// the prefix, or false when there is none (a prefix of only 0xff bytes).
func prefixEnd(prefix string) (string, bool) {
	b := []byte(prefix)
	for len(b) > 0 {
		if b[len(b)-1] < 0xff {
			b[len(b)-1]++
			return string(b), true
		}
		b = b[:len(b)-1]
	}
	return "", false
}
