package jsengine

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"modernc.org/libc"
	lib "modernc.org/libquickjs"
)

// Profile is a sampling profile of the JavaScript that engines run, for
// developers measuring berth (BERTH_JSPROFILE). Go's CPU profiler sees only
// the interpreter's C functions; this names the JavaScript functions.
//
// While a profile is active the interpreter checks for interrupts every
// profileOps operations instead of every 10,000, and the check records the
// stack it is in once ProfileRate of JavaScript time has passed since the
// last sample. (A ticker on another goroutine would be late exactly while
// the loop thread keeps the CPU busy.) The checks come at calls and loop
// back-edges, so the time of a function that calls nothing and has no
// loop, and of host functions and built-ins, shows in the function that
// makes the next call.
type Profile struct {
	mu      sync.Mutex
	stacks  map[string]int     // samples by stack
	names   map[uintptr]string // function bytecode → "name file:line"
	samples int
}

// ProfileRate is the JavaScript time one sample stands for.
const ProfileRate = 20 * time.Microsecond

// profileOps is how many interpreter operations pass between interrupt
// checks while a profile is active.
const profileOps = 20

var activeProfile atomic.Pointer[Profile]

// StartProfile starts profiling every engine of the process; Stop ends it.
func StartProfile() *Profile {
	p := &Profile{stacks: map[string]int{}, names: map[uintptr]string{}}
	activeProfile.Store(p)
	return p
}

// Samples is how many samples the profile holds, each ProfileRate of
// JavaScript time.
func (p *Profile) Samples() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.samples
}

// Stop ends the profile; samples taken after it are dropped.
func (p *Profile) Stop() { activeProfile.CompareAndSwap(p, nil) }

// WriteFolded writes one line per stack, outermost function first, frames
// separated by ";", then the microseconds of JavaScript time in it: the
// "folded" format flame graph tools read. The heaviest stacks come first.
func (p *Profile) WriteFolded(w io.Writer) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	keys := make([]string, 0, len(p.stacks))
	for k := range p.stacks {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int { return p.stacks[b] - p.stacks[a] })
	bw := bufio.NewWriter(w)
	for _, k := range keys {
		fmt.Fprintf(bw, "%s %d\n", k, time.Duration(p.stacks[k])*ProfileRate/time.Microsecond)
	}
	return bw.Flush()
}

// sample records the current stack for each ProfileRate of JavaScript
// time since the last sample.
func (e *QuickJS) sample(p *Profile, tls *libc.TLS, ctx uintptr) {
	cAt[lib.TJSContext](ctx).Finterrupt_counter = profileOps
	ran := e.jsTime + e.clock() - e.enteredAt
	n := int((ran - e.sampledAt) / ProfileRate)
	if n <= 0 {
		return
	}
	e.sampledAt += time.Duration(n) * ProfileRate
	rt := cAt[lib.TJSContext](ctx).Frt
	var frames []string
	p.mu.Lock()
	defer p.mu.Unlock()
	for f := cAt[lib.TJSRuntime](rt).Fcurrent_stack_frame; f != 0 && len(frames) < 64; f = cAt[lib.TJSStackFrame](f).Fprev_frame {
		frames = append(frames, p.frameName(tls, ctx, cAt[lib.TJSStackFrame](f).Fcur_func))
	}
	slices.Reverse(frames)
	stack := strings.Join(frames, ";")
	if stack == "" { // between calls from Go, before the first frame
		stack = "[engine]"
	}
	p.stacks[stack] += n
	p.samples += n
}

// frameName names the function of a stack frame: "name file:line" for
// JavaScript, "[native]" for a built-in.
func (p *Profile) frameName(tls *libc.TLS, ctx uintptr, fn lib.TJSValue) string {
	if fn.Ftag != lib.EJS_TAG_OBJECT {
		return "[?]"
	}
	obj := cAt[lib.TJSObject](*(*uintptr)(unsafe.Pointer(&fn.Fu)))
	if obj.Fclass_id != lib.EJS_CLASS_BYTECODE_FUNCTION {
		return "[native]"
	}
	// u.func.function_bytecode is the first word of the object's union.
	b := *(*uintptr)(unsafe.Pointer(&obj.Fu))
	if name, ok := p.names[b]; ok {
		return name
	}
	fb := cAt[lib.TJSFunctionBytecode](b)
	name := atomString(tls, ctx, fb.Ffunc_name)
	if name == "" {
		name = "(anonymous)"
	}
	file := atomString(tls, ctx, fb.Fdebug.Ffilename)
	if line, col := functionPosition(fb); line > 0 {
		file = fmt.Sprintf("%s:%d:%d", file, line, col)
	}
	name = strings.ReplaceAll(name+" "+file, ";", ",")
	p.names[b] = name
	return name
}

func atomString(tls *libc.TLS, ctx uintptr, atom lib.TJSAtom) string {
	if atom == 0 { // JS_ATOM_NULL
		return ""
	}
	cs := lib.XJS_AtomToCStringLen(tls, ctx, 0, atom)
	if cs == 0 {
		return ""
	}
	defer lib.XJS_FreeCString(tls, ctx, cs)
	return libc.GoString(cs)
}

// functionPosition is the line and column a function starts at: the first
// two numbers of its debug line table (unsigned LEB128, zero-based).
func functionPosition(fb *lib.TJSFunctionBytecode) (line, col int) {
	buf, n := fb.Fdebug.Fpc2line_buf, int(fb.Fdebug.Fpc2line_len)
	var nums [2]int
	i := 0
	for k := range nums {
		var v, shift uint
		for ; ; i++ {
			if i >= n || shift > 28 {
				return 0, 0
			}
			c := *cAt[byte](buf + uintptr(i))
			v |= uint(c&0x7f) << shift
			shift += 7
			if c < 0x80 {
				i++
				break
			}
		}
		nums[k] = int(v) + 1
	}
	return nums[0], nums[1]
}

// cAt is the engine's C memory at addr as a T.
func cAt[T any](addr uintptr) *T { return (*T)(unsafe.Add(nil, addr)) }
