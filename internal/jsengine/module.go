package jsengine

import (
	"context"
	"errors"
	"fmt"
	"unsafe"

	"modernc.org/libc"
	lib "modernc.org/libquickjs"
	"modernc.org/quickjs"
)

// The modernc.org/quickjs API compiles every source under the file name
// "<eval>" and evaluates module bytecode with js_std_await, which spins
// forever on a promise that waits for Go I/O (nothing but our loop can settle
// it). This file calls the engine underneath directly: compilation under a
// real name (stack traces, and with them source maps, depend on it), module
// evaluation that waits for top-level await on the engine's own Loop, and
// the engine's promise rejection tracker.

// compile compiles src as a classic script or (module) an ES module named
// name and returns its bytecode.
func (e *QuickJS) compile(name, src string, module bool) ([]byte, error) {
	if e.closed {
		return nil, ErrClosed
	}
	tls, ctx := cContext(e.vm)
	flags := int32(lib.MJS_EVAL_TYPE_GLOBAL | lib.MJS_EVAL_FLAG_COMPILE_ONLY)
	if module {
		flags = lib.MJS_EVAL_TYPE_MODULE | lib.MJS_EVAL_FLAG_COMPILE_ONLY
	}
	psrc, err := libc.CString(src)
	if err != nil {
		return nil, err
	}
	defer libc.Xfree(tls, psrc)
	pname, err := libc.CString(name)
	if err != nil {
		return nil, err
	}
	defer libc.Xfree(tls, pname)
	v := lib.XJS_Eval(tls, ctx, psrc, libc.Tsize_t(len(src)), pname, flags)
	if v.Ftag == lib.EJS_TAG_EXCEPTION {
		return nil, e.takeException()
	}
	defer lib.XFreeValue(tls, ctx, v)
	psize := tls.Alloc(8)
	defer tls.Free(8)
	p := lib.XJS_WriteObject(tls, ctx, psize, v, lib.MJS_WRITE_OBJ_BYTECODE)
	if p == 0 {
		return nil, e.takeException()
	}
	n := int(*(*libc.Tsize_t)(unsafe.Add(nil, psize)))
	out := make([]byte, n)
	copy(out, unsafe.Slice((*byte)(unsafe.Add(nil, p)), n))
	lib.Xjs_free(tls, ctx, p)
	return out, nil
}

// takeException converts the engine's pending exception to an *Error. The
// quickjs package does that conversion for exceptions that reach it, so the
// exception is parked in a global and rethrown through it.
func (e *QuickJS) takeException() error {
	tls, ctx := cContext(e.vm)
	if lib.XJS_HasException(tls, ctx) == 0 {
		return errors.New("quickjs: operation failed without an exception")
	}
	return e.throwValue(lib.XJS_GetException(tls, ctx))
}

var parkedName = [...]byte{'_', '_', 'j', 's', 'e', 'n', 'g', 'i', 'n', 'e', '_', 'e', 'x', 'c', 0}

// throwValue converts the JavaScript value v (an exception or a rejection
// reason; ownership passes to throwValue) to an *Error.
func (e *QuickJS) throwValue(v lib.TJSValue) error {
	tls, ctx := cContext(e.vm)
	global := lib.XJS_GetGlobalObject(tls, ctx)
	lib.XJS_SetPropertyStr(tls, ctx, global, uintptr(unsafe.Pointer(&parkedName[0])), v)
	lib.XFreeValue(tls, ctx, global)
	// A thrown non-Error becomes an Error with an empty name, so that its
	// text survives the conversion.
	_, err := e.vm.Eval(`(() => {
  const e = globalThis.__jsengine_exc; delete globalThis.__jsengine_exc;
  if (e instanceof Error) throw e;
  let s; try { s = typeof e === "string" ? e : JSON.stringify(e) ?? String(e); } catch { s = String(e); }
  const w = new Error(s); w.name = ""; w.stack = ""; throw w;
})()`, quickjs.EvalGlobal)
	if err == nil {
		return errors.New("quickjs: exception vanished")
	}
	return convertErr(err)
}

func (e *QuickJS) CompileModule(name, src string) ([]byte, error) {
	b, err := e.compile(name, src, true)
	if err != nil {
		return nil, fmt.Errorf("compile module %s: %w", name, err)
	}
	return b, nil
}

func (e *QuickJS) EvalModule(code []byte, global string) error {
	if e.closed {
		return ErrClosed
	}
	tls, ctx := cContext(e.vm)
	p := libc.Xmalloc(tls, libc.Tsize_t(len(code)))
	if p == 0 {
		return errors.New("evaluate module: out of memory")
	}
	copy(unsafe.Slice((*byte)(unsafe.Add(nil, p)), len(code)), code)
	obj := lib.XJS_ReadObject(tls, ctx, p, libc.Tsize_t(len(code)), lib.MJS_READ_OBJ_BYTECODE)
	libc.Xfree(tls, p)
	if obj.Ftag == lib.EJS_TAG_EXCEPTION {
		return fmt.Errorf("evaluate module: %w", e.takeException())
	}
	if obj.Ftag != lib.EJS_TAG_MODULE {
		lib.XFreeValue(tls, ctx, obj)
		return errors.New("evaluate module: the bytecode is not a module")
	}
	if lib.XJS_ResolveModule(tls, ctx, obj) < 0 {
		lib.XFreeValue(tls, ctx, obj)
		return fmt.Errorf("evaluate module: %w", e.takeException())
	}
	def := *(*uintptr)(unsafe.Pointer(&obj.Fu))
	promise := func() lib.TJSValue {
		e.enter()
		defer e.leave()
		return lib.XJS_EvalFunction(tls, ctx, obj) // takes obj
	}()
	if promise.Ftag == lib.EJS_TAG_EXCEPTION {
		e.drain()
		return fmt.Errorf("evaluate module: %w", e.takeException())
	}
	e.drain()
	// Top-level await: run the loop until the evaluation promise settles.
	state := func() int32 { return int32(lib.XJS_PromiseState(tls, ctx, promise)) }
	err := e.loop.RunUntil(context.Background(), func() bool { return state() != lib.EJS_PROMISE_PENDING })
	if err == nil && state() == lib.EJS_PROMISE_REJECTED {
		err = e.throwValue(lib.XJS_PromiseResult(tls, ctx, promise))
	}
	lib.XFreeValue(tls, ctx, promise)
	if err != nil {
		return fmt.Errorf("evaluate module: %w", err)
	}
	ns := lib.XJS_GetModuleNamespace(tls, ctx, def)
	if ns.Ftag == lib.EJS_TAG_EXCEPTION {
		return fmt.Errorf("evaluate module: %w", e.takeException())
	}
	pg, err := libc.CString(global)
	if err != nil {
		lib.XFreeValue(tls, ctx, ns)
		return err
	}
	defer libc.Xfree(tls, pg)
	g := lib.XJS_GetGlobalObject(tls, ctx)
	lib.XJS_SetPropertyStr(tls, ctx, g, pg, ns) // takes ns
	lib.XFreeValue(tls, ctx, g)
	return nil
}

// ---- unhandled rejections -----------------------------------------------------

// rejection is a promise rejected with no handler yet. Both values are
// owned references.
type rejection struct {
	promise, reason lib.TJSValue
}

// trackRejections installs the rejection tracker, which the engine calls
// with the C context only (engines maps it to the engine).
func (e *QuickJS) trackRejections() {
	tls, ctx := cContext(e.vm)
	engines.Store(ctx, e)
	lib.XJS_SetHostPromiseRejectionTracker(tls, lib.XJS_GetRuntime(tls, ctx), fp(rejectionTracker), 0)
}

func fp(f any) uintptr {
	type iface [2]uintptr
	return (*iface)(unsafe.Pointer(&f))[1]
}

// rejectionTracker is called by the engine when a promise is rejected with
// no handler (handled 0) and when such a promise gets one later (handled 1).
func rejectionTracker(tls *libc.TLS, ctx uintptr, promise, reason lib.TJSValue, handled int32, _ uintptr) {
	v, ok := engines.Load(ctx)
	if !ok {
		return
	}
	e := v.(*QuickJS)
	if handled == 0 {
		e.rejections = append(e.rejections, rejection{
			promise: lib.XDupValue(tls, ctx, promise),
			reason:  lib.XDupValue(tls, ctx, reason),
		})
		return
	}
	for i, r := range e.rejections {
		if r.promise.Fu == promise.Fu {
			lib.XFreeValue(tls, ctx, r.promise)
			lib.XFreeValue(tls, ctx, r.reason)
			e.rejections = append(e.rejections[:i], e.rejections[i+1:]...)
			return
		}
	}
}

// reportRejections hands the rejections still unhandled after a drain of the
// microtask queue to the OnUnhandledRejection hook (the moment Node and
// browsers report them too).
func (e *QuickJS) reportRejections() {
	for len(e.rejections) > 0 && !e.closed {
		tls, ctx := cContext(e.vm)
		r := e.rejections[0]
		e.rejections = e.rejections[1:]
		lib.XFreeValue(tls, ctx, r.promise)
		err := e.throwValue(r.reason)
		if e.onRejection != nil {
			e.onRejection(err)
		}
	}
}

func (e *QuickJS) dropRejections() {
	tls, ctx := cContext(e.vm)
	for _, r := range e.rejections {
		lib.XFreeValue(tls, ctx, r.promise)
		lib.XFreeValue(tls, ctx, r.reason)
	}
	e.rejections = nil
}
