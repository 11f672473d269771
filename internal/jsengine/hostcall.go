package jsengine

import (
	"fmt"
	"unsafe"

	"modernc.org/libc"
	lib "modernc.org/libquickjs"
	"modernc.org/quickjs"
)

// Host functions are C functions of the engine that call hostCall, not the
// quickjs package's RegisterFunc: that one maps every call through reflect
// (reflect.Value.Call, an allocation per argument), which cost about as much
// as what berth's host functions do. hostCall converts the common argument
// types itself and leaves the rest to fromJS.
type hostFunc struct {
	name string
	fn   HostFunc
}

// Register implements Engine.
func (e *QuickJS) Register(name string, fn HostFunc) error {
	tls, ctx := cContext(e.vm)
	e.hostFns = append(e.hostFns, hostFunc{name: name, fn: fn})
	cname, err := libc.CString(name)
	if err != nil {
		return fmt.Errorf("register host function %q: %w", name, err)
	}
	defer libc.Xfree(tls, cname)
	f := lib.XJS_NewCFunction2(tls, ctx, fp(hostCall), cname, 0, lib.EJS_CFUNC_generic_magic, int32(len(e.hostFns)-1))
	global := lib.XJS_GetGlobalObject(tls, ctx)
	defer lib.XFreeValue(tls, ctx, global)
	if lib.XJS_SetPropertyStr(tls, ctx, global, cname, f) < 0 {
		lib.XFreeValue(tls, ctx, lib.XJS_GetException(tls, ctx))
		return fmt.Errorf("register host function %q: cannot set the global", name)
	}
	return nil
}

// hostCall is the C function of every registered host function; magic is
// its index in the engine's hostFns. A panic in the Go function ends the
// JavaScript that called it (an uncatchable exception) and goes on in Go
// once the engine has unwound (leave).
func hostCall(tls *libc.TLS, ctx uintptr, _ lib.TJSValue, argc int32, argv uintptr, magic int32) (r lib.TJSValue) {
	v, ok := engines.Load(ctx)
	if !ok {
		return lib.XJS_ThrowInternalError(tls, ctx, 0, 0)
	}
	e := v.(*QuickJS)
	h := e.hostFns[magic]
	// As the quickjs package's own host calls do: Go code called from here
	// may enter the engine again (a nested Call, a conversion).
	frame := vmFrame(e.vm)
	prev := *frame
	*frame = cAt[lib.TJSRuntime](cAt[lib.TJSContext](ctx).Frt).Fcurrent_stack_frame
	defer func() {
		*frame = prev
		if p := recover(); p != nil {
			if e.panicked == nil {
				e.panicked = p
			}
			r = throwTypeErrorRaw(e.vm, fmt.Sprintf("panic in Go function %s: %v", h.name, p))
			lib.XJS_SetUncatchableException(tls, ctx, 1)
		}
	}()
	args := make([]any, argc)
	for i := range args {
		raw := *cAt[lib.TJSValue](argv + uintptr(i)*unsafe.Sizeof(lib.TJSValue{}))
		a, err := e.argFromJS(tls, ctx, raw)
		if err != nil {
			return throwTypeErrorRaw(e.vm, fmt.Sprintf("%s: argument %d: %v", h.name, i, err))
		}
		args[i] = a
	}
	res, err := h.fn(args)
	if err != nil {
		return throwTypeErrorRaw(e.vm, err.Error())
	}
	if s, ok := res.(string); ok {
		return newStringRaw(tls, ctx, s)
	}
	out, err := e.toJS(res)
	if err != nil {
		return throwTypeErrorRaw(e.vm, fmt.Sprintf("%s: result: %v", h.name, err))
	}
	return rawValue(&out)
}

// throwTypeErrorRaw is throwTypeError for a C function's return value.
func throwTypeErrorRaw(vm *quickjs.VM, msg string) lib.TJSValue {
	v := throwTypeError(vm, msg)
	return rawValue(&v)
}

// argFromJS converts a borrowed argument as fromJS does, the common types
// without the quickjs package.
func (e *QuickJS) argFromJS(tls *libc.TLS, ctx uintptr, raw lib.TJSValue) (any, error) {
	switch raw.Ftag {
	case lib.EJS_TAG_INT:
		return int(*(*int32)(unsafe.Pointer(&raw.Fu))), nil
	case lib.EJS_TAG_BOOL:
		return *(*int32)(unsafe.Pointer(&raw.Fu)) != 0, nil
	case lib.EJS_TAG_NULL:
		return nil, nil
	case lib.EJS_TAG_UNDEFINED:
		return Undefined{}, nil
	case lib.EJS_TAG_FLOAT64:
		return *(*float64)(unsafe.Pointer(&raw.Fu)), nil
	case lib.EJS_TAG_STRING, lib.EJS_TAG_STRING_ROPE:
		plen := tls.Alloc(8)
		defer tls.Free(8)
		cs := lib.XJS_ToCStringLen2(tls, ctx, plen, raw, 0)
		if cs == 0 {
			lib.XFreeValue(tls, ctx, lib.XJS_GetException(tls, ctx))
			return nil, fmt.Errorf("string conversion failed")
		}
		s := string(unsafe.Slice(cAt[byte](cs), int(*cAt[libc.Tsize_t](plen))))
		lib.XJS_FreeCString(tls, ctx, cs)
		return s, nil
	}
	v := wrapValue(e.vm, raw) // borrowed: not freed here
	return e.fromJS(&v)
}

// newStringRaw returns a new engine string holding s.
func newStringRaw(tls *libc.TLS, ctx uintptr, s string) lib.TJSValue {
	if len(s) == 0 {
		return lib.XJS_NewStringLen(tls, ctx, 0, 0)
	}
	// Staged in C memory, as newArrayBuffer does: the engine must not be
	// handed a Go pointer. Small strings on the thread's C stack.
	n := len(s)
	var p uintptr
	if n <= 4096 {
		p = tls.Alloc(n)
		defer tls.Free(n)
	} else if p = libc.Xmalloc(tls, libc.Tsize_t(n)); p == 0 {
		return lib.XJS_ThrowOutOfMemory(tls, ctx)
	} else {
		defer libc.Xfree(tls, p)
	}
	copy(unsafe.Slice(cAt[byte](p), n), s)
	return lib.XJS_NewStringLen(tls, ctx, p, libc.Tsize_t(n))
}
