package minerva

/*
#include "shim.h"
*/
import "C"

import (
	"runtime/cgo"
	"strings"
	"sync/atomic"
	"unsafe"
)

// Go values reach C only as runtime/cgo.Handle integers in user_data. Every handle made here is
// deleted exactly once: a stream's in its finish callback (minerva calls it exactly once per
// created stream) or where creating the stream failed (then no callback ever runs), a progress
// callback's when minerva_engine_new returns, the log callback's when it is replaced.
var liveHandles atomic.Int64

func newHandle(v any) cgo.Handle {
	liveHandles.Add(1)
	return cgo.NewHandle(v)
}

func deleteHandle(h cgo.Handle) {
	h.Delete()
	liveHandles.Add(-1)
}

// lookupHandle is cgo.Handle.Value without its panic for a deleted handle (a log line racing the
// replacement of the log callback).
func lookupHandle(h uintptr) (v any, ok bool) {
	defer func() {
		if recover() != nil {
			v, ok = nil, false
		}
	}()
	return cgo.Handle(h).Value(), true
}

// currentCallback is the state of the binding callback running on this thread, nil outside one.
// (A goroutine running a callback stays on the C thread that called it, so the C thread-local
// variable set by the C side of the callback answers for this goroutine.)
func currentCallback() any {
	h := uintptr(C.mv_current_handle())
	if h == 0 {
		return nil
	}
	v, _ := lookupHandle(h)
	return v
}

// cmem holds the C copies of the strings and arrays of one call, freed together after it.
type cmem struct{ ptrs []unsafe.Pointer }

func (m *cmem) free() {
	for _, p := range m.ptrs {
		C.free(p)
	}
	m.ptrs = nil
}

func (m *cmem) alloc(size uintptr) unsafe.Pointer {
	if size == 0 {
		size = 1
	}
	p := C.calloc(1, C.size_t(size))
	if p == nil {
		panic("minerva: out of memory")
	}
	m.ptrs = append(m.ptrs, p)
	return p
}

// str copies s for C; what names it in the error for a string with a NUL byte (C would see it
// cut short there).
func (m *cmem) str(s, what string) (*C.char, error) {
	if strings.IndexByte(s, 0) >= 0 {
		return nil, invalid("%s contains a NUL byte", what)
	}
	p := C.CString(s)
	m.ptrs = append(m.ptrs, unsafe.Pointer(p))
	return p, nil
}

// optStr is str, with "" as NULL.
func (m *cmem) optStr(s, what string) (*C.char, error) {
	if s == "" {
		return nil, nil
	}
	return m.str(s, what)
}

// strArray copies ss as a C array of C strings (NULL when empty).
func (m *cmem) strArray(ss []string, what string) (**C.char, error) {
	if len(ss) == 0 {
		return nil, nil
	}
	arr := (**C.char)(m.alloc(uintptr(len(ss)) * unsafe.Sizeof((*C.char)(nil))))
	items := unsafe.Slice(arr, len(ss))
	for i, s := range ss {
		p, err := m.str(s, what)
		if err != nil {
			return nil, err
		}
		items[i] = p
	}
	return arr, nil
}

func cgoHandle(h C.uintptr_t) cgo.Handle { return cgo.Handle(h) }

// sized runs a C call that writes a string under minerva's two-call buffer rule: first for the
// length, then with a buffer that holds it.
func sized(call func(buf *C.char, cap C.size_t, n *C.size_t, cerr **C.char) C.minerva_status) (string, error) {
	var n C.size_t
	var cerr *C.char
	st := call(nil, 0, &n, &cerr)
	switch st {
	case C.MINERVA_OK:
		return "", nil
	case C.MINERVA_ERR_BUFFER_TOO_SMALL:
		C.free(unsafe.Pointer(cerr))
		cerr = nil
	default:
		return "", callError(st, cerr)
	}
	for {
		buf := make([]byte, int(n)+1)
		st = call((*C.char)(unsafe.Pointer(&buf[0])), C.size_t(len(buf)), &n, &cerr)
		switch st {
		case C.MINERVA_OK:
			return string(buf[:n]), nil
		case C.MINERVA_ERR_BUFFER_TOO_SMALL: // grew in between: try again
			C.free(unsafe.Pointer(cerr))
			cerr = nil
		default:
			return "", callError(st, cerr)
		}
	}
}
