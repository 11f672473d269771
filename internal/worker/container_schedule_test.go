package worker

import (
	"encoding/json"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/clock/clocktest"
)

// scheduleSrc is a class on berth's own Container class that schedules
// tasks; its methods are called over RPC through the Worker.
const scheduleSrc = `
import { Container } from "cloudflare:workers";
export class Sched extends Container {
  boot = String(Math.random());
  async record(payload, schedule) {
    const runs = this.ctx.storage.kv.get("runs") ?? [];
    runs.push({ payload: payload === undefined ? "(undefined)" : payload, schedule, boot: this.boot });
    this.ctx.storage.kv.put("runs", runs);
  }
  async failing() { throw new Error("the callback failed on purpose"); }
  // add calls schedule with a Date (kind "date", value in ms), a number of
  // seconds ("delay") or anything else (value as is).
  async add(kind, value, callback, payload) {
    const when = kind === "date" ? new Date(value) : value;
    try { return await this.schedule(when, callback, payload); } catch (e) { return { error: e.message }; }
  }
  runs() { return this.ctx.storage.kv.get("runs") ?? []; }
  bootID() { return this.boot; }
  alarmAt() { return this.ctx.storage.getAlarm(); }
}
export default {
  async fetch(req, env) {
    const [method, ...args] = JSON.parse(new URL(req.url).searchParams.get("call"));
    const v = await env.SCHED.getByName("s")[method](...args);
    return Response.json(v === undefined ? null : v);
  },
};
`

type scheduleRecord struct {
	TaskID         string          `json:"taskId"`
	Callback       string          `json:"callback"`
	Payload        json.RawMessage `json:"payload"`
	Type           string          `json:"type"`
	Time           int64           `json:"time"`
	DelayInSeconds *float64        `json:"delayInSeconds"`
	Error          string          `json:"error"`
}

type scheduleRun struct {
	Payload  json.RawMessage `json:"payload"`
	Schedule scheduleRecord  `json:"schedule"`
	Boot     string          `json:"boot"`
}

// TestContainerSchedule: schedule() on berth's Container class, with the
// package's records and errors; due tasks run from the alarm (a failing one
// is dropped too) and later ones wait; a task outlives a restart; the
// schedules can be read, listed and deleted.
func TestContainerSchedule(t *testing.T) {
	m := fakeContainers(t, "Sched")
	dir := t.TempDir()
	// The host's clock runs behind the real one until the test moves it, so
	// no alarm fires unless the test says so; JavaScript's Date.now() is
	// the real time, so a task dated just after the host's now is already
	// due for the class once its alarm fires.
	clk := clocktest.New(time.Now().Add(-time.Hour))
	open := func() *objectWorker {
		return newObjectWorker(t, scheduleSrc, map[string]string{"SCHED": "Sched"},
			objectOptions{dir: dir, clock: clk, idle: 24 * time.Hour, containers: m, containerClasses: []string{"Sched"}})
	}
	w := open()
	call := func(w *objectWorker, v any, method string, args ...any) {
		t.Helper()
		b, err := json.Marshal(append([]any{method}, args...))
		if err != nil {
			t.Fatal(err)
		}
		if v == nil {
			v = new(any)
		}
		getJSON(t, w, "http://x/?call="+url.QueryEscape(string(b)), v)
	}
	add := func(w *objectWorker, kind string, value any, callback any, payload ...any) scheduleRecord {
		t.Helper()
		var rec scheduleRecord
		call(w, &rec, "add", append([]any{kind, value, callback}, payload...)...)
		return rec
	}
	runs := func(w *objectWorker) []scheduleRun {
		var r []scheduleRun
		call(w, &r, "runs")
		return r
	}
	listed := func(w *objectWorker, name string) []string {
		var recs []scheduleRecord
		call(w, &recs, "listSchedules", name)
		var ids []string
		for _, r := range recs {
			ids = append(ids, r.TaskID)
		}
		slices.Sort(ids)
		return ids
	}

	// Records as the package returns them.
	now := time.Now()
	hour := add(w, "delay", 3600, "record", map[string]int{"n": 1})
	if !regexp.MustCompile(`^[A-Za-z0-9]{9}$`).MatchString(hour.TaskID) || hour.Callback != "record" || hour.Type != "delayed" ||
		hour.DelayInSeconds == nil || *hour.DelayInSeconds != 3600 || string(hour.Payload) != `{"n":1}` ||
		hour.Time < now.Unix()+3599 || hour.Time > time.Now().Unix()+3600 {
		t.Fatalf("schedule(3600, ...) = %+v", hour)
	}
	at := now.Add(2 * time.Hour).UnixMilli()
	later := add(w, "date", at, "record", "later")
	if later.Type != "scheduled" || later.Time != at/1000 || later.DelayInSeconds != nil || string(later.Payload) != `"later"` {
		t.Fatalf("schedule(Date, ...) = %+v", later)
	}
	for _, tc := range []struct {
		kind     string
		value    any
		callback any
		want     string
	}{
		{"delay", 1, "nope", "this.nope is not a function"},
		{"delay", 1, 42, "Callback must be a string (method name)"},
		{"text", "soon", "record", "Invalid schedule type. 'when' must be a Date or number of seconds"},
	} {
		if rec := add(w, tc.kind, tc.value, tc.callback); rec.Error != tc.want {
			t.Errorf("schedule(%v, %v) = %+v, want the error %q", tc.value, tc.callback, rec, tc.want)
		}
	}
	var got *scheduleRecord
	call(w, &got, "getSchedule", hour.TaskID)
	if got == nil || got.TaskID != hour.TaskID || got.Type != "delayed" || string(got.Payload) != `{"n":1}` || got.Time != hour.Time {
		t.Fatalf("getSchedule = %+v, want %+v", got, hour)
	}
	call(w, &got, "getSchedule", "no-such-id")
	if got != nil {
		t.Fatalf("getSchedule of an unknown id = %+v, want undefined", got)
	}
	if ids, want := listed(w, "record"), []string{hour.TaskID, later.TaskID}; !slices.Equal(ids, slices.Sorted(slices.Values(want))) {
		t.Fatalf("listSchedules = %v, want %v", ids, want)
	}

	// Due tasks: a past date, a delay of 0 without a payload, and one whose
	// method throws. The alarm is set for the earliest; nothing runs before
	// it fires.
	past := clk.Now().Add(time.Millisecond).UnixMilli()
	pastRec := add(w, "date", past, "record", "past")
	zero := add(w, "delay", 0, "record")
	failing := add(w, "delay", 0, "failing", "x")
	var alarm float64
	if call(w, &alarm, "alarmAt"); int64(alarm) != past {
		t.Fatalf("alarm at %v, want the earliest task's time %d", alarm, past)
	}
	if r := runs(w); len(r) != 0 {
		t.Fatalf("runs before the alarm fired: %+v", r)
	}
	clk.Set(time.Now())
	waitFor(t, "the due tasks to run", func() bool { return len(runs(w)) == 2 })
	r := runs(w)
	if string(r[0].Payload) != `"past"` || r[0].Schedule.TaskID != pastRec.TaskID || r[0].Schedule.Type != "scheduled" ||
		string(r[1].Payload) != `"(undefined)"` || r[1].Schedule.TaskID != zero.TaskID || string(r[1].Schedule.Payload) != "null" {
		t.Fatalf("runs = %+v", r)
	}
	waitFor(t, "the failed task to be dropped", func() bool {
		var g *scheduleRecord
		call(w, &g, "getSchedule", failing.TaskID)
		return g == nil
	})
	if l := w.logs.String(); !strings.Contains(l, "Error executing scheduled callback") || !strings.Contains(l, "the callback failed on purpose") {
		t.Errorf("no error logged for the failing callback:\n%s", w.logs)
	}
	if ids, want := listed(w, "record"), []string{hour.TaskID, later.TaskID}; !slices.Equal(ids, slices.Sorted(slices.Values(want))) {
		t.Fatalf("listSchedules after the run = %v, want the later tasks %v", ids, want)
	}
	waitFor(t, "the alarm to be set for the next task", func() bool {
		call(w, &alarm, "alarmAt")
		return int64(alarm)/1000 == hour.Time
	})

	// A task outlives a restart: scheduled, berth stops before its alarm,
	// and the next run's alarm runs it in a new activation.
	var bootBefore string
	call(w, &bootBefore, "bootID")
	restart := add(w, "date", clk.Now().Add(time.Millisecond).UnixMilli(), "record", "after restart")
	w.stop(t)
	w = open()
	clk.Set(clk.Now().Add(time.Second))
	waitFor(t, "the task to run after the restart", func() bool { return len(runs(w)) == 3 })
	if r := runs(w)[2]; string(r.Payload) != `"after restart"` || r.Schedule.TaskID != restart.TaskID || r.Boot == bootBefore {
		t.Fatalf("run after the restart = %+v (boot before %s), want it in a new activation", r, bootBefore)
	}

	// deleteSchedules removes every task of a callback.
	call(w, nil, "deleteSchedules", "record")
	if ids := listed(w, "record"); len(ids) != 0 {
		t.Fatalf("listSchedules after deleteSchedules = %v", ids)
	}
	call(w, &got, "getSchedule", hour.TaskID)
	if got != nil {
		t.Fatalf("getSchedule after deleteSchedules = %+v", got)
	}
	// scheduleNextAlarm sets the alarm ms from now.
	before := time.Now().UnixMilli()
	call(w, nil, "scheduleNextAlarm", 5000)
	if call(w, &alarm, "alarmAt"); int64(alarm) < before+5000 || int64(alarm) > time.Now().UnixMilli()+5000 {
		t.Fatalf("alarm after scheduleNextAlarm(5000) at %v, want 5 s after %d", alarm, before)
	}
}
