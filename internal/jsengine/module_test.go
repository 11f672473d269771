package jsengine

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestModuleBytecode(t *testing.T) {
	loader := func(name string) (string, error) {
		if name == "dep:lib" {
			return `export const x = 21;`, nil
		}
		return "", fmt.Errorf("no module %q", name)
	}
	c := newEngine(t)
	c.SetModuleLoader(loader)
	// Top-level await on an operation only Go settles: EvalModule must run
	// the loop rather than spin.
	code, err := c.CompileModule("main.js", `import { x } from "dep:lib";
const v = await new Promise((resolve) => later(resolve));
export default { v: x * v };
export function boom() { throw new Error("kaboom"); }`)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ { // one compilation, many runtimes
		e := newEngine(t)
		e.SetModuleLoader(loader)
		loop := e.Loop()
		pending := 0
		if err := e.Register("later", func(args []any) (any, error) {
			loop.Hold()
			pending++
			go func() {
				time.Sleep(time.Millisecond)
				loop.Post(func() {
					loop.Release()
					if _, err := e.Call("(() => __resolveLater(2))"); err != nil {
						t.Error(err)
					}
				})
			}()
			return nil, nil
		}); err != nil {
			t.Fatal(err)
		}
		if err := e.EvalScript("shim.js", `const later0 = later; globalThis.later = (r) => { globalThis.__resolveLater = r; later0(); };`); err != nil {
			t.Fatal(err)
		}
		if err := e.EvalModule(code, "mod"); err != nil {
			t.Fatal(err)
		}
		if v, err := e.Call("(() => mod.default.v)"); err != nil || v != 42 {
			t.Fatalf("v = %v, %v", v, err)
		}
		_, err := e.Call("(() => mod.boom())")
		var je *Error
		if !asError(err, &je) || !strings.Contains(je.Stack, "main.js:4") {
			t.Fatalf("stack does not name main.js:4: %v %q", err, stackOf(err))
		}
	}
	// Errors: a syntax error names the module; a throw during evaluation
	// and a failed import come back as errors.
	if _, err := c.CompileModule("broken.js", "export let = ;"); err == nil || !strings.Contains(err.Error(), "broken.js") {
		t.Fatalf("syntax error: %v", err)
	}
	if _, err := c.CompileModule("m.js", `import "missing:mod";`); err == nil || !strings.Contains(err.Error(), "missing:mod") {
		t.Fatalf("missing import: %v", err)
	}
	for _, src := range []string{`throw new TypeError("at load")`, `await Promise.reject(new RangeError("tla"))`, `await Promise.reject(7)`} {
		code, err := c.CompileModule("m.js", src)
		if err != nil {
			t.Fatal(err)
		}
		e := newEngine(t)
		e.SetModuleLoader(loader)
		if err := e.EvalModule(code, "m"); err == nil {
			t.Errorf("%s: no error", src)
		} else {
			t.Logf("%s: %v", src, err)
		}
	}
}

func asError(err error, target **Error) bool {
	e, ok := err.(*Error)
	if ok {
		*target = e
	}
	return ok
}

func stackOf(err error) string {
	if e, ok := err.(*Error); ok {
		return e.Stack
	}
	return ""
}

func TestUnhandledRejection(t *testing.T) {
	var got []error
	e, err := NewQuickJS(Options{OnUnhandledRejection: func(err error) { got = append(got, err) }})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	code, err := e.CompileScript("rej.js", `
Promise.reject(new TypeError("nobody listens"));
Promise.reject(new Error("handled")).catch(() => {});
(async () => { throw new RangeError("async fn"); })();
Promise.reject("a string");`)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.EvalBytecode(code); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("got %d rejections: %v", len(got), got)
	}
	if je, ok := got[0].(*Error); !ok || je.Name != "TypeError" || je.Message != "nobody listens" || !strings.Contains(je.Stack, "rej.js:2") {
		t.Errorf("first: %#v", got[0])
	}
	if !strings.Contains(got[1].Error(), "async fn") || !strings.Contains(got[2].Error(), "a string") {
		t.Errorf("others: %v", got[1:])
	}
	// The engine keeps working.
	if v, err := e.Call("(() => 1 + 1)"); err != nil || v != 2 {
		t.Fatalf("after: %v %v", v, err)
	}
}
