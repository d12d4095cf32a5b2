package minerva

// The exported Go functions that shim.c's C callbacks call. cgo wants the C definitions in
// another file than the //export directives: they are in shim.c.

/*
#include "shim.h"
*/
import "C"

import (
	"fmt"
	"os"
	"runtime/cgo"
	"runtime/debug"
	"sync"
)

// callbackState is what a callback-mode stream shares with the engine thread, through a handle
// that its finish callback deletes.
type callbackState struct {
	fn     func(text string) bool
	stream *Stream // keeps a running stream reachable until it has finished
	engine *Engine

	mu       sync.Mutex // held while fn runs: orders its calls for the race detector too
	panicked *PanicError
	done     chan struct{} // closed by the finish callback
}

//export minervaGoToken
func minervaGoToken(h C.uintptr_t, text *C.char, n C.size_t) C.minerva_control {
	cb := cgo.Handle(h).Value().(*callbackState)
	if cb.token(C.GoStringN(text, C.int(n))) {
		return C.MINERVA_CONTINUE
	}
	return C.MINERVA_STOP
}

func (cb *callbackState) token(text string) (cont bool) {
	cb.mu.Lock()
	defer cb.mu.Unlock()
	if cb.panicked != nil {
		return false
	}
	defer func() {
		if r := recover(); r != nil {
			cb.panicked = &PanicError{Value: r, Stack: debug.Stack()}
			cont = false
		}
	}()
	return cb.fn(text)
}

//export minervaGoFinish
func minervaGoFinish(h C.uintptr_t, status C.minerva_status, reason C.minerva_finish_reason) {
	cb := cgo.Handle(h).Value().(*callbackState)
	deleteHandle(cgo.Handle(h))
	cb.mu.Lock()
	cb.stream = nil
	cb.mu.Unlock()
	close(cb.done)
}

// progressState is an EngineParams.Progress callback during Open.
type progressState struct {
	fn       func(progress float32) bool
	panicked *PanicError
}

//export minervaGoProgress
func minervaGoProgress(h C.uintptr_t, progress C.float) (ctl C.minerva_control) {
	ps := cgo.Handle(h).Value().(*progressState)
	if ps.panicked != nil {
		return C.MINERVA_STOP
	}
	defer func() {
		if r := recover(); r != nil {
			ps.panicked = &PanicError{Value: r, Stack: debug.Stack()}
			ctl = C.MINERVA_STOP
		}
	}()
	if ps.fn(float32(progress)) {
		return C.MINERVA_CONTINUE
	}
	return C.MINERVA_STOP
}

//export minervaGoLog
func minervaGoLog(h C.uintptr_t, level C.minerva_log_level, message *C.char) {
	v, ok := lookupHandle(uintptr(h))
	if !ok {
		return // the callback was replaced while this line was on its way
	}
	fn := v.(func(LogLevel, string))
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(os.Stderr, "minerva: the log callback panicked (line dropped): %v\n%s", r, debug.Stack())
		}
	}()
	fn(LogLevel(level), C.GoString(message))
}
