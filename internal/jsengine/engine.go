// Package jsengine runs JavaScript for berth's Workers behind a small
// interface, so that the engine (modernc.org/quickjs today) stays replaceable.
//
// Concurrency contract: an Engine belongs to the goroutine that runs its
// Loop. Only Loop().Post, Loop().Pending and Interrupt may be called from other
// goroutines. Go I/O never touches the engine directly: it posts a closure
// that settles the JavaScript promise on the owning goroutine. JavaScript keeps
// its pending promises in tables keyed by integer ids, so Go never holds a
// JavaScript value across goroutines.
package jsengine

import (
	"errors"
	"strings"
)

// Undefined is the Go value of JavaScript undefined, in host function
// arguments and results.
type Undefined struct{}

// HostFunc is a Go function callable from JavaScript.
//
// Arguments arrive converted: strings as string, numbers as int or float64,
// booleans as bool, null as nil, undefined as Undefined, an ArrayBuffer as a
// []byte copy of its contents. Other objects arrive as a string of their JSON
// form. The result may be nil (null), Undefined, bool, int, int64, float64,
// string or []byte (a new ArrayBuffer); a non-nil error is thrown as a
// JavaScript TypeError carrying the error's text.
type HostFunc func(args []any) (any, error)

// ModuleLoader returns the source of the ES module named name, the specifier
// as written in the import (bare names are not rewritten).
type ModuleLoader func(name string) (string, error)

// Engine is one JavaScript runtime with its own global object and event loop.
//
// All methods except Loop and Interrupt must be called on the loop goroutine
// (or before the loop starts). Methods that run JavaScript drain the
// microtask queue before they return.
type Engine interface {
	// Loop is the runtime's event loop.
	Loop() *Loop
	// Register installs fn as the global function name.
	Register(name string, fn HostFunc) error
	// SetModuleLoader supplies the source of imported modules.
	SetModuleLoader(load ModuleLoader)
	// EvalScript evaluates a classic script; name appears in stack traces.
	EvalScript(name, src string) error
	// CompileScript compiles a classic script to bytecode that any Engine of
	// this implementation in this process can run with EvalBytecode.
	CompileScript(name, src string) ([]byte, error)
	// EvalBytecode runs bytecode made by CompileScript.
	EvalBytecode(code []byte) error
	// CompileModule compiles the ES module src to bytecode, under the module
	// name name (what stack traces and the module's imports of itself see).
	// Its imports are not compiled with it: EvalModule loads them through
	// the module loader.
	CompileModule(name, src string) ([]byte, error)
	// EvalModule evaluates module bytecode made by CompileModule, runs the
	// loop until its top-level await settles, and stores its namespace
	// object in the global variable global.
	EvalModule(code []byte, global string) error
	// ImportModule evaluates the module name (source from the module loader),
	// waits for its top-level await and stores its namespace object in the
	// global variable global.
	ImportModule(name, global string) error
	// Call calls the global function fn with args (same types as HostFunc
	// results) and returns its converted result (same types as HostFunc
	// arguments). An exception is returned as an *Error.
	Call(fn string, args ...any) (any, error)
	// SetMemoryLimit caps the runtime's heap; 0 means no limit. Past it,
	// allocations fail with an error for which IsOutOfMemory is true.
	SetMemoryLimit(bytes uint64)
	// MemoryUsage is the number of bytes the runtime's heap holds now.
	MemoryUsage() uint64
	// RunGC collects the runtime's garbage now, cycles included.
	RunGC()
	// Charge makes the time JavaScript runs from now on count against acct
	// (nil: against nothing, with no limit). It may be called between
	// calls into JavaScript and from a HostFunc, to switch accounts in the
	// middle of one; see Account for what is measured and enforced.
	Charge(acct *Account)
	// Interrupt stops the JavaScript running now with an uncatchable error
	// for which IsInterrupted is true. Safe from any goroutine. An
	// Interrupt while no JavaScript runs is dropped when the next call
	// into JavaScript starts.
	Interrupt()
	// Close frees the runtime. The engine is unusable afterwards.
	Close() error
}

// Error is a JavaScript exception that reached Go.
type Error struct {
	Name    string // "TypeError", …
	Message string
	Stack   string // one "    at …" line per frame, file names as evaluated
}

func (e *Error) Error() string {
	if e.Name == "" {
		return e.Message
	}
	return e.Name + ": " + e.Message
}

// ErrClosed is returned by an engine used after Close.
var ErrClosed = errors.New("engine closed")

// IsInterrupted reports whether err is JavaScript stopped by Interrupt or
// by the limit of an Account.
func IsInterrupted(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Name == "InternalError" && e.Message == "interrupted"
}

// IsOutOfMemory reports whether err is JavaScript that ran out of its
// memory limit.
func IsOutOfMemory(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		// When even the message string cannot be allocated, QuickJS's
		// out-of-memory InternalError arrives without one; every other
		// InternalError it throws has a message.
		return e.Name == "InternalError" && (e.Message == "" || strings.Contains(e.Message, "out of memory"))
	}
	return err != nil && strings.Contains(err.Error(), "out of memory")
}
