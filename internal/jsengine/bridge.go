package jsengine

import (
	"fmt"
	"reflect"
	"unsafe"

	"modernc.org/libc"
	lib "modernc.org/libquickjs"
	"modernc.org/quickjs"
)

// The modernc.org/quickjs Go API has no ArrayBuffer bridge: bytes could only
// cross as strings. The engine underneath (modernc.org/libquickjs) has
// JS_NewArrayBufferCopy and JS_GetArrayBuffer, which need the VM's C context
// and libc thread state, both unexported. bridge finds them by field name and
// type with reflect once, checks the layout, and then reads them with plain
// pointer arithmetic. go.mod pins quickjs; TestBridgeLayout fails loudly if a
// new version moves the fields.
type bridge struct {
	ctxOff     uintptr // VM.state.cContext
	frameOff   uintptr // VM.state.frame (hostcall.go)
	runtimeOff uintptr // VM.state.runtime (*runtime)
	tlsOff     uintptr // runtime.tls
	valVMOff   uintptr // Value.vm
	valVOff    uintptr // Value.v
}

var layout, layoutErr = findLayout()

func findLayout() (b bridge, err error) {
	field := func(t reflect.Type, name string, want reflect.Type, kind reflect.Kind) (reflect.StructField, error) {
		f, ok := t.FieldByName(name)
		if !ok {
			return f, fmt.Errorf("quickjs bridge: %s has no field %q", t, name)
		}
		if want != nil && f.Type != want {
			return f, fmt.Errorf("quickjs bridge: %s.%s is %s, want %s", t, name, f.Type, want)
		}
		if kind != reflect.Invalid && f.Type.Kind() != kind {
			return f, fmt.Errorf("quickjs bridge: %s.%s is a %s, want a %s", t, name, f.Type.Kind(), kind)
		}
		return f, nil
	}
	vmT := reflect.TypeOf(quickjs.VM{})
	// FieldByName follows the embedded state struct and reports the offset
	// from the start of VM.
	ctxF, err := field(vmT, "cContext", reflect.TypeOf(uintptr(0)), reflect.Invalid)
	if err != nil {
		return b, err
	}
	rtF, err := field(vmT, "runtime", nil, reflect.Pointer)
	if err != nil {
		return b, err
	}
	frameF, err := field(vmT, "frame", reflect.TypeOf(uintptr(0)), reflect.Invalid)
	if err != nil {
		return b, err
	}
	tlsF, err := field(rtF.Type.Elem(), "tls", reflect.TypeOf((*libc.TLS)(nil)), reflect.Invalid)
	if err != nil {
		return b, err
	}
	valT := reflect.TypeOf(quickjs.Value{})
	vmF, err := field(valT, "vm", reflect.TypeOf((*quickjs.VM)(nil)), reflect.Invalid)
	if err != nil {
		return b, err
	}
	vF, err := field(valT, "v", reflect.TypeOf(lib.TJSValue{}), reflect.Invalid)
	if err != nil {
		return b, err
	}
	if len(ctxF.Index) != 2 || len(rtF.Index) != 2 || len(frameF.Index) != 2 || frameF.Index[0] != ctxF.Index[0] {
		return b, fmt.Errorf("quickjs bridge: unexpected VM layout")
	}
	stateOff := vmT.Field(ctxF.Index[0]).Offset
	return bridge{
		ctxOff:     stateOff + ctxF.Offset,
		frameOff:   stateOff + frameF.Offset,
		runtimeOff: stateOff + rtF.Offset,
		tlsOff:     tlsF.Offset,
		valVMOff:   vmF.Offset,
		valVOff:    vF.Offset,
	}, nil
}

func cContext(vm *quickjs.VM) (tls *libc.TLS, ctx uintptr) {
	p := unsafe.Pointer(vm)
	ctx = *(*uintptr)(unsafe.Add(p, layout.ctxOff))
	rt := *(*unsafe.Pointer)(unsafe.Add(p, layout.runtimeOff))
	tls = *(**libc.TLS)(unsafe.Add(rt, layout.tlsOff))
	return tls, ctx
}

// vmFrame is the quickjs package's record of the engine stack frame where
// the Go code running now was called (VM.state.frame): its own host calls
// set it, and its entry points refuse to run while it differs from the
// engine's current frame.
func vmFrame(vm *quickjs.VM) *uintptr {
	return (*uintptr)(unsafe.Add(unsafe.Pointer(vm), layout.frameOff))
}

func rawValue(v *quickjs.Value) lib.TJSValue {
	return *(*lib.TJSValue)(unsafe.Add(unsafe.Pointer(v), layout.valVOff))
}

// wrapValue makes a quickjs.Value that owns raw.
func wrapValue(vm *quickjs.VM, raw lib.TJSValue) (v quickjs.Value) {
	p := unsafe.Pointer(&v)
	*(**quickjs.VM)(unsafe.Add(p, layout.valVMOff)) = vm
	*(*lib.TJSValue)(unsafe.Add(p, layout.valVOff)) = raw
	return v
}

// newArrayBuffer returns a new ArrayBuffer holding a copy of b.
func newArrayBuffer(vm *quickjs.VM, b []byte) quickjs.Value {
	tls, ctx := cContext(vm)
	var raw lib.TJSValue
	if len(b) == 0 {
		raw = lib.XJS_NewArrayBufferCopy(tls, ctx, 0, 0)
	} else {
		// The engine copies from C memory: stage the bytes there rather
		// than hand it a Go pointer (which checkptr, and the race
		// detector with it, rejects).
		p := libc.Xmalloc(tls, libc.Tsize_t(len(b)))
		if p == 0 {
			return wrapValue(vm, lib.XJS_ThrowOutOfMemory(tls, ctx))
		}
		copy(unsafe.Slice((*byte)(unsafe.Add(nil, p)), len(b)), b)
		raw = lib.XJS_NewArrayBufferCopy(tls, ctx, p, libc.Tsize_t(len(b)))
		libc.Xfree(tls, p)
	}
	return wrapValue(vm, raw)
}

// arrayBufferBytes returns a copy of the contents of v when v is an
// ArrayBuffer.
func arrayBufferBytes(vm *quickjs.VM, v *quickjs.Value) ([]byte, bool) {
	raw := rawValue(v)
	if raw.Ftag != lib.EJS_TAG_OBJECT {
		return nil, false
	}
	tls, ctx := cContext(vm)
	if lib.XJS_GetClassID(tls, raw) != lib.EJS_CLASS_ARRAY_BUFFER {
		return nil, false
	}
	psize := tls.Alloc(8)
	defer tls.Free(8)
	data := lib.XJS_GetArrayBuffer(tls, ctx, psize, raw)
	n := int(*(*libc.Tsize_t)(unsafe.Add(nil, psize)))
	if data == 0 {
		// A detached buffer: JS_GetArrayBuffer threw; drop that exception.
		if lib.XJS_HasException(tls, ctx) != 0 {
			lib.XFreeValue(tls, ctx, lib.XJS_GetException(tls, ctx))
		}
		return []byte{}, true
	}
	out := make([]byte, n)
	copy(out, unsafe.Slice((*byte)(unsafe.Add(nil, data)), n))
	return out, true
}

func newBool(b bool) (r lib.TJSValue) {
	if b {
		*(*uint64)(unsafe.Pointer(&r)) = 1
	}
	r.Ftag = lib.EJS_TAG_BOOL
	return r
}

var percentS = [...]byte{'%', 's', 0}

// throwTypeError throws a TypeError with msg and returns the exception
// marker a host function returns to make the engine propagate it.
func throwTypeError(vm *quickjs.VM, msg string) quickjs.Value {
	tls, ctx := cContext(vm)
	p, err := libc.CString(msg)
	if err != nil {
		return wrapValue(vm, lib.XJS_ThrowTypeError(tls, ctx, 0, 0))
	}
	defer libc.Xfree(tls, p)
	bp := tls.Alloc(16)
	defer tls.Free(16)
	return wrapValue(vm, lib.XJS_ThrowTypeError(tls, ctx, uintptr(unsafe.Pointer(&percentS[0])), libc.VaList(bp+8, p)))
}
