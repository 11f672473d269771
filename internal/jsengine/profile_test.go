package jsengine

import (
	"strings"
	"testing"
)

// TestProfileNamesFunctions charges exactly the fake time burn() moves to
// the function that called it, by name and position.
func TestProfileNamesFunctions(t *testing.T) {
	f := newFakeCPU(t)
	if err := f.EvalScript("prof.js", `
function hot() { burn(1); let s = 0; for (let i = 0; i < 100; i++) s += i; return s; }
const cold = () => { let s = 0; for (let i = 0; i < 100; i++) s += i; return s; };
function outer() { for (let i = 0; i < 10; i++) { hot(); cold(); } }
`); err != nil {
		t.Fatal(err)
	}
	p := StartProfile()
	_, err := f.Call("outer")
	p.Stop()
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := p.WriteFolded(&out); err != nil {
		t.Fatal(err)
	}
	// 10 × 1 ms, all in hot, called from outer; nothing in cold.
	want := "outer <eval>:4:1;hot <eval>:2:1 10000\n" // EvalScript names no file
	if out.String() != want {
		t.Errorf("profile:\n%s\nwant:\n%s", out.String(), want)
	}
	if n := p.Samples(); n != 10000/int(ProfileRate.Microseconds()) {
		t.Errorf("Samples() = %d", n)
	}
	// Stopped: more JavaScript adds nothing.
	if _, err := f.Call("outer"); err != nil {
		t.Fatal(err)
	}
	if n := p.Samples(); n != 500 {
		t.Errorf("after Stop, Samples() = %d", n)
	}
}
