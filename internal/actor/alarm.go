package actor

import (
	"time"

	"github.com/berth-dev/berth/internal/storage"
)

// The alarm scheduler keeps one timer per object that has (or may have) an
// alarm. The object's database is the truth: a timer is a hint that is
// never later than the alarm, so it may fire early or for an alarm that is
// gone, and delivery starts by reading the alarm from the database. This
// is the invariant the store's alarm index keeps too, which is why a host
// can arm its timers from the index after a restart.
//
// Hints only ever lower a timer (SetAlarm to a later time leaves the early
// timer, which on firing finds the later alarm and re-arms). So a
// rolled-back write can only leave a timer that is too early, never one
// that is too late.

// alarmEntry is the scheduler's state for one object, guarded by Host.mu.
type alarmEntry struct {
	at   time.Time // when the armed timer fires; zero: none
	seq  uint64    // identifies the armed timer
	stop func() bool

	running bool // a delivery goroutine owns the entry
	again   bool // a hint arrived while running: read the database again

	// Retries of the alarm scheduled at retryOf: retry failures so far,
	// next attempt not before retryAt. Kept in memory only: after a
	// restart a failing alarm starts over, still at least once.
	retry   int
	retryOf time.Time
	retryAt time.Time
}

func (e *alarmEntry) disarmLocked() {
	if e.stop != nil {
		e.stop()
		e.stop = nil
	}
	e.at = time.Time{}
}

// lowerAlarmLocked makes sure the object's timer fires no later than at.
func (h *Host) lowerAlarmLocked(key storage.ObjectKey, at time.Time) {
	if h.closed {
		return
	}
	e := h.alarms[key]
	if e == nil {
		e = &alarmEntry{}
		h.alarms[key] = e
	}
	if e.running {
		e.again = true
		return
	}
	if !e.at.IsZero() && !at.Before(e.at) {
		return
	}
	h.armLocked(key, e, at)
}

func (h *Host) armLocked(key storage.ObjectKey, e *alarmEntry, at time.Time) {
	e.disarmLocked()
	e.at = at
	e.seq++
	seq := e.seq
	e.stop = h.clock.AfterFunc(max(at.Sub(h.clock.Now()), 0), func() { h.fire(key, seq) })
}

// fire runs on the timer's goroutine and delivers until the object has no
// due alarm.
func (h *Host) fire(key storage.ObjectKey, seq uint64) {
	h.mu.Lock()
	e := h.alarms[key]
	if h.closed || e == nil || e.seq != seq || e.running {
		h.mu.Unlock()
		return
	}
	e.at, e.stop = time.Time{}, nil
	e.running = true
	h.work.Add(1)
	h.mu.Unlock()
	defer h.work.Done()

	for {
		h.mu.Lock()
		e.again = false
		h.mu.Unlock()

		next, delivered := h.deliverOnce(key, e)

		h.mu.Lock()
		if h.closed {
			e.running = false
			h.mu.Unlock()
			return
		}
		if delivered || e.again {
			h.mu.Unlock()
			continue
		}
		e.running = false
		switch {
		case !next.IsZero():
			h.armLocked(key, e, next)
		case e.retry == 0:
			delete(h.alarms, key)
		}
		h.mu.Unlock()
		return
	}
}

// deliverOnce reads the object's alarm and, if it is due, delivers it.
// It returns the time to look again (zero: no alarm) or delivered, after
// which the caller looks again at once: the handler may have set a new
// alarm, possibly due already.
func (h *Host) deliverOnce(key storage.ObjectKey, e *alarmEntry) (next time.Time, delivered bool) {
	at, ok, err := h.readAlarm(key)
	if err != nil {
		if h.ctx.Err() != nil {
			return time.Time{}, false
		}
		h.log.Error("read durable object alarm", "object", key.String(), "err", err)
		return h.clock.Now().Add(h.alarmBackoff), false
	}
	h.mu.Lock()
	if !ok || !e.retryOf.Equal(at) {
		e.retry = 0
	}
	retry, due := e.retry, at
	if retry > 0 {
		due = e.retryAt
	}
	h.mu.Unlock()
	if !ok {
		return time.Time{}, false
	}
	if due.After(h.clock.Now()) {
		return due, false
	}

	ns := h.namespaces[key.Namespace]
	if ns == nil {
		h.log.Warn("alarm of a durable object class this host does not serve: left alone", "object", key.String())
		return time.Time{}, false
	}
	id, err := ns.IDFromString(key.ID)
	if err != nil {
		h.log.Warn("alarm of a durable object with an invalid id: left alone", "object", key.String(), "err", err)
		return time.Time{}, false
	}
	info := AlarmInfo{RetryCount: retry, IsRetry: retry > 0, ScheduledTime: at}
	hd, err := h.Get(h.ctx, id)
	touched := false
	if err == nil {
		a := hd.a
		h.mu.Lock()
		a.alarmRunning, a.alarmTouched = true, false
		h.mu.Unlock()
		err = a.obj.Alarm(h.ctx, info)
		h.mu.Lock()
		touched = a.alarmTouched
		a.alarmRunning = false
		h.mu.Unlock()
	}
	if h.ctx.Err() != nil {
		// Closing: the handler was cut short; the alarm stays for the
		// next host.
		if hd != nil {
			hd.Release()
		}
		return time.Time{}, false
	}
	giveUp := err != nil && !touched && retry >= h.alarmRetries
	if err != nil {
		h.log.Warn("durable object alarm failed", "object", key.String(), "retry_count", retry, "give_up", giveUp, "err", err)
	}
	if !touched && (err == nil || giveUp) {
		// Done with this alarm: delete it unless the handler (or another
		// event meanwhile) set a new one. If another event's transaction is
		// open this joins it; should that roll back, the alarm fires again
		// (at least once).
		if derr := h.deleteAlarmIf(key, at); derr != nil {
			h.log.Error("delete delivered durable object alarm", "object", key.String(), "err", derr)
			if hd != nil {
				hd.Release()
			}
			return h.clock.Now().Add(h.alarmBackoff), false
		}
	}
	h.mu.Lock()
	if err == nil || touched || giveUp {
		e.retry = 0
	} else {
		e.retry, e.retryOf = retry+1, at
		e.retryAt = h.clock.Now().Add(h.alarmBackoff << retry)
	}
	h.mu.Unlock()
	if hd != nil {
		hd.Release()
	}
	return time.Time{}, true
}

// readAlarm reads the alarm from the object's database without activating
// the object (the database is shared with its activation, if live).
func (h *Host) readAlarm(key storage.ObjectKey) (time.Time, bool, error) {
	db, err := h.store.Object(key)
	if err != nil {
		return time.Time{}, false, err
	}
	defer db.Close()
	return db.GetAlarm()
}

// deleteAlarmIf deletes the object's alarm if it is still set for at.
func (h *Host) deleteAlarmIf(key storage.ObjectKey, at time.Time) error {
	db, err := h.store.Object(key)
	if err != nil {
		return err
	}
	defer db.Close()
	cur, ok, err := db.GetAlarm()
	if err != nil || !ok || !cur.Equal(at) {
		return err
	}
	return db.DeleteAlarm()
}
