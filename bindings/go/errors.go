package minerva

/*
#include "shim.h"
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// Status is a minerva_status: OK, or the kind of a failure. Every non-OK value is also an error,
// so that errors.Is(err, minerva.ErrIO) tells the kind of any error this package returns.
type Status uint32

// The minerva_status values (MINERVA_OK, MINERVA_ERR_*). Values are never reused or renumbered.
const (
	OK                 Status = C.MINERVA_OK
	ErrInvalidArgument Status = C.MINERVA_ERR_INVALID_ARGUMENT // NULL or bad parameters, text not UTF-8, a blocking call inside a callback
	ErrIO              Status = C.MINERVA_ERR_IO               // the model file is missing or unreadable
	ErrModel           Status = C.MINERVA_ERR_MODEL            // not GGUF, truncated, corrupt, unsupported
	ErrOutOfMemory     Status = C.MINERVA_ERR_OUT_OF_MEMORY    // host or device memory ran out
	ErrContextFull     Status = C.MINERVA_ERR_CONTEXT_FULL     // the prompt or the generation does not fit the context
	ErrCancelled       Status = C.MINERVA_ERR_CANCELLED        // cancelled (Cancel, Close, Engine.Close, a done context, a progress callback)
	ErrTimeout         Status = C.MINERVA_ERR_TIMEOUT          // a wait ended before the stream did
	ErrBackend         Status = C.MINERVA_ERR_BACKEND          // llama.cpp or the device failed
	ErrInternal        Status = C.MINERVA_ERR_INTERNAL         // a bug in minerva (a panic caught in the library)
	ErrBufferTooSmall  Status = C.MINERVA_ERR_BUFFER_TOO_SMALL // never returned by this package: it sizes its buffers
)

// String is minerva_status_str: "ok", "invalid argument", ...; "unknown" for values the library
// does not know.
func (s Status) String() string {
	return C.GoString(C.minerva_status_str(C.minerva_status(s)))
}

// Error makes a Status usable as a sentinel with errors.Is.
func (s Status) Error() string { return "minerva: " + s.String() }

// Error is a failed minerva call: its status, and minerva's message naming the function and the
// problem (minerva_last_error, or minerva_stream_error for an error that ended a stream). Use
// errors.As to get it, errors.Is to test its Status:
//
//	var e *minerva.Error
//	if errors.As(err, &e) { fmt.Println(e.Status, e.Message) }
//	if errors.Is(err, minerva.ErrIO) { ... }
//
// Err is what caused it on the Go side, if anything: ctx.Err() when a done context cancelled the
// stream (so errors.Is(err, context.Canceled) holds too).
type Error struct {
	Status  Status
	Message string
	Err     error
}

func (e *Error) Error() string {
	msg := e.Message
	if msg == "" {
		msg = e.Status.String()
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return "minerva: " + msg
}

// Unwrap gives the Status, and Err when set.
func (e *Error) Unwrap() []error {
	if e.Err != nil {
		return []error{e.Status, e.Err}
	}
	return []error{e.Status}
}

// ErrClosed is returned by the methods of an Engine or Stream after its Close (its Status is
// ErrInvalidArgument: the C library would get a freed handle).
var ErrClosed = &Error{Status: ErrInvalidArgument, Message: "the engine or stream is closed"}

// PanicError is returned by Stream.Wait (and Generate, Chat, Open, ...) when a callback of this
// package's caller panicked: the panic is recovered before it could reach C, the stream is
// stopped, and the panic value and stack come back here.
type PanicError struct {
	Value any
	Stack []byte
}

func (p *PanicError) Error() string { return fmt.Sprintf("minerva: a callback panicked: %v", p.Value) }

// Unwrap gives the panic value when it is an error.
func (p *PanicError) Unwrap() error {
	if err, ok := p.Value.(error); ok {
		return err
	}
	return nil
}

// callError builds the error of a failed C call from its status and the message the C helper
// copied (which it frees).
func callError(st C.minerva_status, msg *C.char) error {
	e := &Error{Status: Status(st)}
	if msg != nil {
		e.Message = C.GoString(msg)
		C.free(unsafe.Pointer(msg))
	}
	return e
}

func invalid(format string, args ...any) error {
	return &Error{Status: ErrInvalidArgument, Message: fmt.Sprintf(format, args...)}
}
