package jsengine

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	lib "modernc.org/libquickjs"
	"modernc.org/quickjs"
)

// QuickJS is the Engine over modernc.org/quickjs.
type QuickJS struct {
	vm      *quickjs.VM
	loop    *Loop
	fns     map[string]quickjs.Value
	loader  ModuleLoader
	onError func(error)
	closed  bool

	onRejection func(error)
	rejections  []rejection

	hostFns  []hostFunc // by the magic number of their C function (hostcall.go)
	panicked any        // a host function's panic, to go on with in leave

	// CPU accounting (cpu.go).
	clock func() time.Duration
	acct  *Account
	depth int           // nesting of enter
	since time.Duration // clock when the time not yet billed started
	// For profiles (profile.go): monotonic() when JavaScript was last
	// entered from Go, the JavaScript time before that, and the JavaScript
	// time of the last sample.
	enteredAt, jsTime, sampledAt time.Duration
	turn                         uint64      // counts the loop's turns, for PerTurn accounts
	interrupt                    atomic.Bool // set by Interrupt
}

// Options configure a new QuickJS engine.
type Options struct {
	// OnJobError receives exceptions that escaped a microtask job; they have
	// no caller to return to. nil drops them.
	OnJobError func(error)
	// OnUnhandledRejection receives the reason of every promise that was
	// rejected and still had no handler once the microtask queue drained.
	// nil drops them (they are tracked either way).
	OnUnhandledRejection func(error)
	// Clock is the monotonic clock CPU accounts are charged by (see
	// Account); nil is the real one. Tests inject a fake to charge time
	// without burning it.
	Clock func() time.Duration
}

// NewQuickJS returns a fresh runtime. The caller's goroutine owns it until it
// hands the engine to the goroutine that runs the loop.
func NewQuickJS(opts Options) (*QuickJS, error) {
	if layoutErr != nil {
		return nil, layoutErr
	}
	vm, err := quickjs.NewVM()
	if err != nil {
		return nil, fmt.Errorf("new quickjs vm: %w", err)
	}
	e := &QuickJS{vm: vm, fns: map[string]quickjs.Value{}, onError: opts.OnJobError, onRejection: opts.OnUnhandledRejection,
		clock: opts.Clock, turn: 1}
	if e.clock == nil {
		e.clock = monotonic
	}
	e.loop = NewLoop(e.endTurn)
	e.trackRejections()
	e.installInterruptHandler()
	return e, nil
}

var _ Engine = (*QuickJS)(nil)

func (e *QuickJS) Loop() *Loop { return e.loop }

// endTurn is the loop's after hook: the microtasks the task queued run
// before the next task, and a new turn starts for PerTurn accounts.
func (e *QuickJS) endTurn() {
	e.drain()
	e.turn++
}

func (e *QuickJS) drain() {
	e.enter()
	defer e.leave()
	if _, err := e.vm.ExecutePendingJobs(); err != nil && e.onError != nil {
		e.onError(convertErr(err))
	}
	if len(e.rejections) > 0 {
		e.reportRejections()
	}
}

// fromJS converts a borrowed argument.
func (e *QuickJS) fromJS(v *quickjs.Value) (any, error) {
	if b, ok := arrayBufferBytes(e.vm, v); ok {
		return b, nil
	}
	a, err := v.Any()
	if err != nil {
		return nil, err
	}
	switch x := a.(type) {
	case quickjs.Undefined:
		return Undefined{}, nil
	case *quickjs.Object:
		return x.String(), nil
	case quickjs.Unsupported:
		return Undefined{}, nil
	}
	return a, nil
}

// toJS converts a Go result to a new owned Value.
func (e *QuickJS) toJS(x any) (quickjs.Value, error) {
	vm := e.vm
	switch v := x.(type) {
	case nil:
		return wrapValue(vm, lib.TJSValue{Ftag: lib.EJS_TAG_NULL}), nil
	case Undefined:
		return quickjs.UndefinedValue, nil
	case bool:
		return wrapValue(vm, newBool(v)), nil
	case int:
		return vm.NewInt(v), nil
	case int64:
		return vm.NewFloat64(float64(v)), nil
	case float64:
		return vm.NewFloat64(v), nil
	case string:
		return vm.NewString(v)
	case []byte:
		return newArrayBuffer(vm, v), nil
	case quickjs.Value:
		return v, nil
	}
	return quickjs.Value{}, fmt.Errorf("cannot convert %T", x)
}

func (e *QuickJS) SetModuleLoader(load ModuleLoader) {
	e.loader = load
	e.vm.SetModuleLoader(func(_ *quickjs.VM, name string) (string, error) {
		if e.loader == nil {
			return "", fmt.Errorf("no module loader")
		}
		return e.loader(name)
	}, func(_ *quickjs.VM, _, name string) (string, error) { return name, nil })
}

func (e *QuickJS) EvalScript(name, src string) error {
	e.enter()
	defer e.leave()
	v, err := e.vm.EvalValue(src, quickjs.EvalGlobal)
	if err != nil {
		return fmt.Errorf("evaluate %s: %w", name, convertErr(err))
	}
	v.Free()
	e.drain()
	return nil
}

func (e *QuickJS) CompileScript(name, src string) ([]byte, error) {
	b, err := e.compile(name, src, false)
	if err != nil {
		return nil, fmt.Errorf("compile %s: %w", name, err)
	}
	return b, nil
}

func (e *QuickJS) EvalBytecode(code []byte) error {
	e.enter()
	defer e.leave()
	v, err := e.vm.EvalBytecodeValue(code)
	if err != nil {
		return fmt.Errorf("evaluate bytecode: %w", convertErr(err))
	}
	v.Free()
	e.drain()
	return nil
}

func (e *QuickJS) ImportModule(name, global string) error {
	// The Go API does not expose a module's namespace, so a dynamic import
	// from a classic script stores it, and records how the import ended.
	state := "__jsengine_import_" + global
	src := `globalThis[` + strconv.Quote(state) + `] = 0; import(` + strconv.Quote(name) + `).then(
  (ns) => { globalThis[` + strconv.Quote(global) + `] = ns; globalThis[` + strconv.Quote(state) + `] = 1; },
  (e) => { globalThis[` + strconv.Quote(state) + `] = (e && e.stack) ? String(e) + "\n" + e.stack : String(e); });`
	if err := e.EvalScript(name, src); err != nil {
		return err
	}
	var result any
	done := func() bool {
		r, err := e.vm.Eval(`globalThis[`+strconv.Quote(state)+`]`, quickjs.EvalGlobal)
		if err != nil {
			result = err.Error()
			return true
		}
		result = r
		return r != 0
	}
	if err := e.loop.RunUntil(context.Background(), done); err != nil {
		return fmt.Errorf("import module %s: %w", name, err)
	}
	_, _ = e.vm.Eval(`delete globalThis[`+strconv.Quote(state)+`]`, quickjs.EvalGlobal)
	if result != 1 {
		return fmt.Errorf("import module %s: %v", name, result)
	}
	return nil
}

func (e *QuickJS) fn(name string) (quickjs.Value, error) {
	if f, ok := e.fns[name]; ok {
		return f, nil
	}
	f, err := e.vm.EvalValue(name, quickjs.EvalGlobal)
	if err != nil {
		return f, convertErr(err)
	}
	e.fns[name] = f
	return f, nil
}

func (e *QuickJS) Call(name string, args ...any) (any, error) {
	if e.closed {
		return nil, ErrClosed
	}
	e.enter()
	defer e.leave()
	f, err := e.fn(name)
	if err != nil {
		return nil, fmt.Errorf("call %s: %w", name, err)
	}
	jsArgs := make([]any, len(args))
	var owned []quickjs.Value
	for i, a := range args {
		switch x := a.(type) {
		case []byte, bool, nil:
			v, err := e.toJS(x)
			if err != nil {
				return nil, fmt.Errorf("call %s: argument %d: %w", name, i, err)
			}
			owned = append(owned, v)
			jsArgs[i] = v
		case Undefined:
			jsArgs[i] = quickjs.Undefined{}
		default:
			jsArgs[i] = a
		}
	}
	r, err := f.CallValue(quickjs.UndefinedValue, jsArgs...)
	for i := range owned {
		owned[i].Free()
	}
	if err != nil {
		e.drain()
		return nil, convertErr(err)
	}
	res, cerr := e.fromJS(&r)
	r.Free()
	e.drain()
	return res, cerr
}

func (e *QuickJS) SetMemoryLimit(bytes uint64) { e.vm.SetMemoryLimit(uintptr(bytes)) }

// Interrupt implements Engine. The flag is read by the interrupt handler
// (cpu.go), which replaced the quickjs package's own.
func (e *QuickJS) Interrupt() { e.interrupt.Store(true) }

func (e *QuickJS) Close() error {
	if e.closed {
		return nil
	}
	e.dropRejections()
	_, ctx := cContext(e.vm)
	engines.Delete(ctx)
	e.closed = true
	for k, f := range e.fns {
		f.Free()
		delete(e.fns, k)
	}
	return e.vm.Close()
}

func convertErr(err error) error {
	var qe *quickjs.Error
	if errors.As(err, &qe) {
		return &Error{Name: qe.Name, Message: qe.Message, Stack: qe.Stack}
	}
	return err
}
