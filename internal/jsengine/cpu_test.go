package jsengine

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// fakeCPU is an engine whose accounts are charged by a fake clock that
// only the script's burn(ms) host function moves, so that the tests charge
// exact amounts without spending them.
type fakeCPU struct {
	*QuickJS
	now time.Duration
}

func newFakeCPU(t *testing.T) *fakeCPU {
	t.Helper()
	f := &fakeCPU{}
	e, err := NewQuickJS(Options{Clock: func() time.Duration { return f.now }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	f.QuickJS = e
	register := func(name string, fn HostFunc) {
		if err := e.Register(name, fn); err != nil {
			t.Fatal(err)
		}
	}
	register("burn", func(args []any) (any, error) {
		f.now += time.Duration(args[0].(int)) * time.Millisecond
		return nil, nil
	})
	// tick(id) settles the promise settle(id) resolves in a later turn of
	// the loop, as Go I/O does.
	register("hostTick", func(args []any) (any, error) {
		id := args[0]
		e.Loop().Hold()
		e.Loop().Post(func() {
			e.Loop().Release()
			if _, err := e.Call("settle", id); err != nil && !IsInterrupted(err) {
				t.Error(err)
			}
		})
		return nil, nil
	})
	if err := e.EvalScript("lib.js", `
		const pending = new Map();
		let next = 0;
		function settle(id) { const r = pending.get(id); pending.delete(id); r(); }
		function tick() { return new Promise((r) => { const id = ++next; pending.set(id, r); hostTick(id); }); }
		// spin gives the interpreter enough operations to poll for the limit.
		function spin() { for (let j = 0; j < 100000; j++) {} }`); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fakeCPU) run(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.Loop().RunUntilIdle(ctx); err != nil {
		t.Fatal(err)
	}
}

func (f *fakeCPU) global(t *testing.T, name string) string {
	t.Helper()
	v, err := f.Call("(() => globalThis." + name + ")")
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprint(v)
}

// An account is charged for every turn that runs its code, and stopped once
// the sum passes its limit although no single turn does.
func TestAccountSumsTurns(t *testing.T) {
	f := newFakeCPU(t)
	exceeded := 0
	a := &Account{Limit: 50 * time.Millisecond, OnExceeded: func() { exceeded++ }}
	f.Charge(a)
	if err := f.EvalScript("work.js", `
		globalThis.done = [];
		(async () => {
			for (let i = 0; i < 5; i++) { burn(20); spin(); done.push(i); await tick(); }
		})().catch((e) => { globalThis.err = String(e); });`); err != nil {
		t.Fatal(err)
	}
	f.run(t)
	if got := f.global(t, "done"); got != "[0,1]" {
		t.Errorf("stretches that completed: %s, want [0,1] (the third passes 50 ms)", got)
	}
	if got := f.global(t, "err"); got != "InternalError: interrupted" {
		t.Errorf("the async function rejected with %q", got)
	}
	if exceeded != 1 || a.Exceeded() != 1 || a.Used() != 60*time.Millisecond {
		t.Errorf("exceeded %d/%d times, used %s; want once, 60ms", exceeded, a.Exceeded(), a.Used())
	}
	// The engine is not harmed: the same account runs again, re-armed for
	// another Limit, and so does code charged to nothing.
	if err := f.EvalScript("again.js", `burn(10); spin(); globalThis.again = 1;`); err != nil {
		t.Fatalf("after the interrupt: %v", err)
	}
	f.Charge(nil)
	if err := f.EvalScript("free.js", `burn(1000); spin();`); err != nil {
		t.Fatalf("uncharged: %v", err)
	}
	if a.Used() != 70*time.Millisecond {
		t.Errorf("used %s after the uncharged call, want 70ms", a.Used())
	}
}

// A PerTurn account bounds each turn, not the sum; Charge from a host
// function splits an entry between accounts.
func TestAccountPerTurnAndSwitch(t *testing.T) {
	f := newFakeCPU(t)
	accts := []*Account{
		{Limit: 50 * time.Millisecond, PerTurn: true},
		{Limit: 50 * time.Millisecond},
	}
	if err := f.Register("charge", func(args []any) (any, error) {
		f.Charge(accts[args[0].(int)])
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	f.Charge(accts[0])
	if err := f.EvalScript("work.js", `
		globalThis.done = 0;
		(async () => {
			for (let i = 0; i < 5; i++) { await tick(); burn(40); spin(); done++; }
		})().catch((e) => { globalThis.err = String(e); });`); err != nil {
		t.Fatal(err)
	}
	f.run(t)
	if got := f.global(t, "done"); got != "5" || accts[0].Exceeded() != 0 {
		t.Errorf("a PerTurn account stopped 40 ms turns: done %s, exceeded %d", got, accts[0].Exceeded())
	}
	f.Charge(accts[0])
	if err := f.EvalScript("split.js", `burn(10); charge(1); burn(30); charge(0); burn(5);`); err != nil {
		t.Fatal(err)
	}
	if accts[0].Used() != 15*time.Millisecond || accts[1].Used() != 30*time.Millisecond {
		t.Errorf("used %s and %s, want 15ms and 30ms", accts[0].Used(), accts[1].Used())
	}
	// Switching to an account past its limit stops the code at the next
	// poll, in the middle of the entry.
	if err := f.EvalScript("over.js", `charge(1); burn(30); spin(); globalThis.over = "ran";`); !IsInterrupted(err) {
		t.Fatalf("err = %v, want interrupted", err)
	}
	if accts[1].Exceeded() != 1 || accts[0].Exceeded() != 0 {
		t.Errorf("exceeded %d and %d, want 0 and 1", accts[0].Exceeded(), accts[1].Exceeded())
	}
}

// The interrupt skips the script's catch and finally blocks.
func TestAccountInterruptIsUncatchable(t *testing.T) {
	f := newFakeCPU(t)
	f.Charge(&Account{Limit: 50 * time.Millisecond})
	err := f.EvalScript("catch.js", `globalThis.seen = ""; try { burn(60); spin(); } catch (e) { seen += "catch"; } finally { seen += "finally"; }`)
	if !IsInterrupted(err) {
		t.Fatalf("err = %v, want interrupted", err)
	}
	if got := f.global(t, "seen"); got != "" {
		t.Errorf("ran %q after the interrupt", got)
	}
}

// Accounting on the real clock: a busy loop is stopped near the limit.
func TestAccountRealClock(t *testing.T) {
	e := newEngine(t)
	a := &Account{Limit: 30 * time.Millisecond}
	e.Charge(a)
	start := time.Now()
	err := e.EvalScript("spin.js", `for (;;) {}`)
	if !IsInterrupted(err) {
		t.Fatalf("err = %v, want interrupted", err)
	}
	if d := time.Since(start); d > 2*time.Second || a.Used() < 30*time.Millisecond {
		t.Errorf("stopped after %s, charged %s", d, a.Used())
	}
}

func TestMemoryLimitAndGC(t *testing.T) {
	e := newEngine(t)
	const limit = 8 << 20
	e.SetMemoryLimit(limit)
	err := e.EvalScript("grow.js", `(() => { const a = []; for (;;) a.push(new Array(100000).fill(1)); })()`)
	if !IsOutOfMemory(err) {
		t.Fatalf("err = %v, want out of memory", err)
	}
	e.RunGC()
	if u := e.MemoryUsage(); u == 0 || u > limit/2 {
		t.Errorf("usage after the failed script and a GC: %d bytes", u)
	}
	if err := e.EvalScript("keep.js", `globalThis.kept = []; for (let i = 0; i < 40; i++) kept.push(new Array(5000).fill(i));`); err != nil {
		t.Fatal(err)
	}
	e.RunGC()
	if u := e.MemoryUsage(); u < 3<<20 {
		t.Errorf("usage with 40 arrays of 5,000 values (16 bytes each) kept: %d bytes", u)
	}
	if v, err := e.Call("(() => kept.length)"); err != nil || v != 40 {
		t.Errorf("after out of memory: %v, %v", v, err)
	}
}

func TestInterruptDroppedWhenIdle(t *testing.T) {
	e := newEngine(t)
	e.Interrupt() // nothing runs: it must not stop the next call
	if err := e.EvalScript("ok.js", `1 + 1`); err != nil {
		t.Fatalf("an Interrupt while idle stopped a later call: %v", err)
	}
}
