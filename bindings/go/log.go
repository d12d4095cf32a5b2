package minerva

/*
#include "shim.h"
*/
import "C"

import (
	"runtime/cgo"
	"sync"
)

// LogLevel is the severity of a log line (MINERVA_LOG_*).
type LogLevel uint32

const (
	LogDebug LogLevel = C.MINERVA_LOG_DEBUG
	LogInfo  LogLevel = C.MINERVA_LOG_INFO // llama.cpp's load messages are here
	LogWarn  LogLevel = C.MINERVA_LOG_WARN
	LogError LogLevel = C.MINERVA_LOG_ERROR
	LogNone  LogLevel = C.MINERVA_LOG_NONE // as the minimum level: no lines at all
)

func (l LogLevel) String() string {
	switch l {
	case LogDebug:
		return "debug"
	case LogInfo:
		return "info"
	case LogWarn:
		return "warn"
	case LogError:
		return "error"
	case LogNone:
		return "none"
	}
	return "unknown"
}

var (
	logMu     sync.Mutex
	logHandle cgo.Handle // of the callback installed, 0 for none
)

// SetLogCallback sends the log lines (minerva's and llama.cpp's) at minLevel and above to fn
// (minerva_set_log_callback), for the whole process; fn nil restores minerva's default: stderr
// (which by default shows only warnings and errors).
//
// fn gets one whole line at a time, without its newline, on any thread (an engine's too), never
// two calls at once. It may call this package, but from an engine's thread the calls that would
// wait for an engine are refused (ErrInvalidArgument), and it must not Close an engine. A panic
// in fn is recovered and printed to stderr; the line is lost. When SetLogCallback returns, the
// previous fn is no longer called (called from inside a callback, a call of it in progress on
// another thread may still be finishing). Do not call SetLogCallback from fn while another
// goroutine may be calling it too.
func SetLogCallback(fn func(level LogLevel, message string), minLevel LogLevel) {
	logMu.Lock()
	defer logMu.Unlock()
	var h cgo.Handle
	if fn != nil {
		h = newHandle(fn)
	}
	C.mv_set_log_callback(C.uintptr_t(h), C.minerva_log_level(minLevel))
	if logHandle != 0 {
		deleteHandle(logHandle) // a line still on its way finds it gone and is dropped
	}
	logHandle = h
}
