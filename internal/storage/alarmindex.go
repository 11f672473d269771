package storage

import (
	"fmt"
	"time"
)

// alarmIndexDB is the store's alarm index: one row per object believed to
// have an alarm. Consistency with the objects' databases, which are the
// truth, relies on write order, not on a transaction across two files:
//
//   - SetAlarm lowers the entry (to the earlier of the old entry and the
//     new time) durably before writing the object's alarm; once that write
//     is durable (commit) the entry is set exactly.
//   - DeleteAlarm, DeleteAll and rollbacks set the entry exactly only after
//     the object's change is durable.
//
// So whatever point the process dies at, an entry is never later than the
// object's alarm and never missing while the object has one; it can only be
// early or stale, and Store.Alarms repairs such entries when it reads them.
type alarmIndexDB struct {
	db *DB
}

func openAlarmIndex(path string, opts Options) (*alarmIndexDB, error) {
	db, err := openDB(path, opts)
	if err != nil {
		return nil, err
	}
	if err := db.c.exec(`CREATE TABLE IF NOT EXISTS alarms (
		namespace TEXT NOT NULL, id TEXT NOT NULL, at INTEGER NOT NULL,
		PRIMARY KEY (namespace, id)) WITHOUT ROWID;
		CREATE INDEX IF NOT EXISTS alarms_at ON alarms (at);`); err != nil {
		_ = db.closeNow()
		return nil, fmt.Errorf("alarm index %s: %w", path, err)
	}
	return &alarmIndexDB{db: db}, nil
}

func (x *alarmIndexDB) lower(key ObjectKey, at int64) error {
	x.db.mu.Lock()
	defer x.db.mu.Unlock()
	_, err := x.db.run(`INSERT INTO alarms (namespace, id, at) VALUES (?1, ?2, ?3)
		ON CONFLICT (namespace, id) DO UPDATE SET at = min(at, excluded.at)`, key.Namespace, key.ID, at)
	return err
}

func (x *alarmIndexDB) set(key ObjectKey, at int64, ok bool) error {
	x.db.mu.Lock()
	defer x.db.mu.Unlock()
	var err error
	if ok {
		_, err = x.db.run(`INSERT INTO alarms (namespace, id, at) VALUES (?1, ?2, ?3)
			ON CONFLICT (namespace, id) DO UPDATE SET at = excluded.at`, key.Namespace, key.ID, at)
	} else {
		_, err = x.db.run(`DELETE FROM alarms WHERE namespace = ?1 AND id = ?2`, key.Namespace, key.ID)
	}
	return err
}

// deleteNamespace removes the entries of namespace and counts them.
func (x *alarmIndexDB) deleteNamespace(namespace string) (int64, error) {
	x.db.mu.Lock()
	defer x.db.mu.Unlock()
	return x.db.run(`DELETE FROM alarms WHERE namespace = ?1`, namespace)
}

// due lists the entries at or before until (unix ms), earliest first.
func (x *alarmIndexDB) due(until int64) ([]Alarm, error) {
	x.db.mu.Lock()
	defer x.db.mu.Unlock()
	s, err := x.db.cached(`SELECT namespace, id, at FROM alarms WHERE at <= ?1 ORDER BY at`)
	if err != nil {
		return nil, err
	}
	defer s.reset()
	if err := s.bind(until); err != nil {
		return nil, err
	}
	var out []Alarm
	for {
		row, err := s.step()
		if err != nil {
			return nil, err
		}
		if !row {
			return out, nil
		}
		out = append(out, Alarm{Key: ObjectKey{s.text(0), s.text(1)}, At: time.UnixMilli(s.int64(2))})
	}
}

func (x *alarmIndexDB) close() error { return x.db.closeNow() }
