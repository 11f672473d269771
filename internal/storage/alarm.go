package storage

import (
	"fmt"
	"time"
)

// alarmIndex is the store-wide index of alarms (see Store). The object's
// own database is the truth; the index must never say "later" or "none"
// while the object holds an alarm, but may say "earlier" or name an object
// that has none: readers check the object and repair the entry.
type alarmIndex interface {
	// lower makes the entry for key at most at, durably, before the
	// object's write that sets the alarm can become durable.
	lower(key ObjectKey, at int64) error
	// set makes the entry exact (ok false: no alarm). Called once the
	// object's alarm is durable; failure leaves an over-reporting entry.
	set(key ObjectKey, at int64, ok bool) error
}

// SetAlarm sets the object's alarm to t (millisecond precision), replacing
// any other. It is a write like any other: part of the open transaction.
func (d *DB) SetAlarm(t time.Time) error {
	if err := d.lock(); err != nil {
		return err
	}
	defer d.mu.Unlock()
	ms := t.UnixMilli()
	if d.alarms != nil {
		if err := d.alarms.lower(d.key, ms); err != nil {
			return fmt.Errorf("set alarm: index: %w", err)
		}
	}
	err := d.atomically(func() error {
		if err := d.ensureMeta(); err != nil {
			return err
		}
		_, err := d.run("INSERT INTO _cf_META (key, value) VALUES ('alarm', ?1) ON CONFLICT (key) DO UPDATE SET value = excluded.value", ms)
		d.alarmDirty = true
		return err
	})
	if err != nil {
		return fmt.Errorf("set alarm: %w", err)
	}
	return nil
}

// GetAlarm returns the alarm time as seen by the open transaction.
func (d *DB) GetAlarm() (time.Time, bool, error) {
	if err := d.lock(); err != nil {
		return time.Time{}, false, err
	}
	defer d.mu.Unlock()
	ms, ok, err := d.alarmLocked()
	if err != nil || !ok {
		return time.Time{}, false, err
	}
	return time.UnixMilli(ms), true, nil
}

func (d *DB) alarmLocked() (int64, bool, error) {
	if !d.metaReady {
		return 0, false, nil
	}
	s, err := d.cached("SELECT value FROM _cf_META WHERE key = 'alarm'")
	if err != nil {
		return 0, false, fmt.Errorf("get alarm: %w", err)
	}
	defer s.reset()
	row, err := s.step()
	if err != nil {
		return 0, false, fmt.Errorf("get alarm: %w", err)
	}
	if !row {
		return 0, false, nil
	}
	return s.int64(0), true, nil
}

// DeleteAlarm removes the alarm, if any.
func (d *DB) DeleteAlarm() error {
	if err := d.lock(); err != nil {
		return err
	}
	defer d.mu.Unlock()
	if err := d.atomically(d.deleteAlarmLocked); err != nil {
		return fmt.Errorf("delete alarm: %w", err)
	}
	return nil
}

func (d *DB) deleteAlarmLocked() error {
	if !d.metaReady {
		return nil
	}
	d.alarmDirty = true
	_, err := d.run("DELETE FROM _cf_META WHERE key = 'alarm'")
	return err
}

// settleAlarmIndex brings the index entry in line with the object's alarm
// once no transaction is open, i.e. once the alarm write is durable or
// gone. Failure is not reported: the entry then over-reports (it was
// lowered before the write), which readers repair.
func (d *DB) settleAlarmIndex() {
	if !d.alarmDirty || d.alarms == nil || d.closed || d.c.inTransaction() {
		return
	}
	ms, ok, err := d.alarmLocked()
	if err != nil {
		return
	}
	if d.alarms.set(d.key, ms, ok) == nil {
		d.alarmDirty = false
	}
}
