package jsengine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func newEngine(t *testing.T) *QuickJS {
	t.Helper()
	e, err := NewQuickJS(Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func TestBridgeLayout(t *testing.T) {
	if layoutErr != nil {
		t.Fatal(layoutErr)
	}
}

func TestHostFuncConversions(t *testing.T) {
	e := newEngine(t)
	var got []any
	if err := e.Register("host", func(args []any) (any, error) {
		got = args
		switch args[0] {
		case "bytes":
			return []byte{1, 2, 255}, nil
		case "fail":
			return nil, errors.New("it broke")
		case "null":
			return nil, nil
		case "bool":
			return true, nil
		}
		return len(args), nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := e.EvalScript("t.js", `
		globalThis.r1 = host("x", 1, 2.5, true, null, undefined, new Uint8Array([7, 8, 9]).buffer, {a: 1});
		const ab = host("bytes");
		globalThis.r2 = ab instanceof ArrayBuffer ? Array.from(new Uint8Array(ab)).join(",") : "not an ArrayBuffer";
		try { host("fail"); globalThis.r3 = "no throw" } catch (e) { globalThis.r3 = (e instanceof TypeError) + ":" + e.message }
		globalThis.r4 = host("null") === null && host("bool") === true;
	`); err != nil {
		t.Fatal(err)
	}
	// got holds the args of the last call ("bool").
	_ = got
	check := func(expr string, want any) {
		t.Helper()
		v, err := e.Call("(() => " + expr + ")")
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(v) != fmt.Sprint(want) {
			t.Errorf("%s = %v, want %v", expr, v, want)
		}
	}
	check("r1", 8)
	check("r2", "1,2,255")
	check("r3", "true:it broke")
	check("r4", true)
	if err := e.EvalScript("t2.js", `host("x", 1, 2.5, true, null, undefined, new Uint8Array([7, 8, 9]).buffer, {a: 1})`); err != nil {
		t.Fatal(err)
	}
	want := []any{"x", 1, 2.5, true, nil, Undefined{}, []byte{7, 8, 9}, `{"a":1}`}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("args = %#v, want %#v", got, want)
	}
}

func TestCallBytesAndErrors(t *testing.T) {
	e := newEngine(t)
	if err := e.EvalScript("t.js", `
		function sum(ab) { let s = 0; for (const b of new Uint8Array(ab)) s += b; return s; }
		function boom() { throw new RangeError("too far"); }`); err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte{1}, 1<<16)
	v, err := e.Call("sum", big)
	if err != nil || v != 1<<16 {
		t.Fatalf("sum = %v, %v", v, err)
	}
	_, err = e.Call("boom")
	var je *Error
	if !errors.As(err, &je) || je.Name != "RangeError" || je.Message != "too far" || !strings.Contains(je.Stack, "boom") {
		t.Fatalf("err = %#v", err)
	}
}

func TestLoopSettlesFromOtherGoroutine(t *testing.T) {
	e := newEngine(t)
	loop := e.Loop()
	var result any
	if err := e.Register("hostAsync", func(args []any) (any, error) {
		id := args[0]
		loop.Hold()
		go func() {
			time.Sleep(time.Millisecond)
			loop.Post(func() {
				loop.Release()
				if _, err := e.Call("settle", id, "done"); err != nil {
					t.Error(err)
				}
			})
		}()
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := e.Register("report", func(args []any) (any, error) { result = args[0]; return nil, nil }); err != nil {
		t.Fatal(err)
	}
	if err := e.EvalScript("t.js", `
		const pending = new Map();
		function settle(id, v) { pending.get(id)(v); pending.delete(id); }
		function op(id) { return new Promise((res) => { pending.set(id, res); hostAsync(id); }); }
		(async () => { const a = await op(1); const b = await op(2); report(a + "+" + b); })();`); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := loop.RunUntilIdle(ctx); err != nil {
		t.Fatal(err)
	}
	if result != "done+done" {
		t.Fatalf("result = %v", result)
	}
}

func TestImportModule(t *testing.T) {
	e := newEngine(t)
	e.SetModuleLoader(func(name string) (string, error) {
		switch name {
		case "main.js":
			return `import { x } from "dep:lib"; await null; export default { v: x * 2 };`, nil
		case "dep:lib":
			return `export const x = 21;`, nil
		case "bad.js":
			return `import "missing:mod";`, nil
		}
		return "", fmt.Errorf("no module %q", name)
	})
	if err := e.ImportModule("main.js", "mod"); err != nil {
		t.Fatal(err)
	}
	v, err := e.Call("(() => mod.default.v)")
	if err != nil || v != 42 {
		t.Fatalf("v = %v, %v", v, err)
	}
	err = e.ImportModule("bad.js", "bad")
	if err == nil || !strings.Contains(err.Error(), "missing:mod") {
		t.Fatalf("err = %v", err)
	}
}

func TestBytecode(t *testing.T) {
	e := newEngine(t)
	code, err := e.CompileScript("lib.js", `globalThis.answer = 6 * 7;`)
	if err != nil {
		t.Fatal(err)
	}
	e2 := newEngine(t)
	if err := e2.EvalBytecode(code); err != nil {
		t.Fatal(err)
	}
	if v, _ := e2.Call("(() => answer)"); v != 42 {
		t.Fatalf("answer = %v", v)
	}
}

func TestInterrupt(t *testing.T) {
	e := newEngine(t)
	go func() { time.Sleep(20 * time.Millisecond); e.Interrupt() }()
	err := e.EvalScript("spin.js", `for (;;) {}`)
	if err == nil || !strings.Contains(err.Error(), "interrupted") {
		t.Fatalf("err = %v", err)
	}
}

// A host function that panics ends the JavaScript that called it (try and
// catch do not see it), and the panic goes on in the Go code that called
// JavaScript; the engine can be used again once it is recovered.
func TestHostFuncPanic(t *testing.T) {
	e := newEngine(t)
	if err := e.Register("boom", func([]any) (any, error) { panic("boom") }); err != nil {
		t.Fatal(err)
	}
	if err := e.Register("nested", func(args []any) (any, error) { return e.Call("double", args[0]) }); err != nil {
		t.Fatal(err)
	}
	if err := e.EvalScript("p.js", `
		globalThis.caught = false;
		globalThis.double = (n) => n * 2;
		globalThis.run = () => { try { boom(); } catch { caught = true; } return "ran on"; };
	`); err != nil {
		t.Fatal(err)
	}
	func() {
		defer func() {
			if p := recover(); p != "boom" {
				t.Errorf("recovered %v, want the host function's panic", p)
			}
		}()
		v, err := e.Call("run")
		t.Errorf("Call returned %v, %v", v, err)
	}()
	if v, err := e.Call("(() => [caught, nested(21)].join())"); err != nil || v != "false,42" {
		t.Errorf("after the panic: %v, %v", v, err)
	}
}
