package minerva

/*
#include "shim.h"
*/
import "C"

import (
	"context"
	"encoding/json"
	"io"
	"iter"
	"runtime"
	"sync"
	"unsafe"
)

// Blocking calls (Read, Wait) wait in slices of this many milliseconds, so that Close, which
// waits for the calls in progress on the C handle, never waits longer than this for one of them
// (the engine thread may be held by a callback that called Close).
const waitSliceMs = 50

// Stream is one generation (minerva_stream): running from the moment Engine.Stream (or
// StreamFunc, ChatStream, ChatStreamFunc) returns it until it ends by length, stop, end of
// generation, error or cancellation. Pull its text with Read (an io.Reader), Text (an iterator)
// or Poll (never waits: a frame loop's call), or give a callback to Engine.StreamFunc.
//
// Its methods may be called from any goroutine, concurrently; Read, Poll and Text share one
// read position, so use one reader at a time. Close it when done: Close cancels it if it still
// runs. It stays usable after its Engine is closed (it then ends with ErrCancelled).
type Stream struct {
	h       *streamHandle
	engine  *Engine // keeps the engine from being finalized while the stream is in use
	ctx     context.Context
	stopCtx func() bool
	cb      *callbackState // nil in pull mode

	readMu  sync.Mutex
	pending []byte // bytes read from minerva that did not fit the caller's buffer
	readEnd error  // io.EOF or the final error, once Read has reached the end
	pollBuf []byte
}

// streamHandle owns the C handle. Its finalizer (a safety net for a Stream never closed) is on
// this inner object, which no cycle holds.
type streamHandle struct {
	mu     sync.Mutex
	idle   sync.Cond
	ptr    *C.minerva_stream
	users  int // calls in progress on ptr: minerva_stream_free must be the last call
	closed bool
}

func (h *streamHandle) acquire() *C.minerva_stream {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil
	}
	h.users++
	return h.ptr
}

func (h *streamHandle) release() {
	h.mu.Lock()
	h.users--
	if h.users == 0 && h.closed {
		h.idle.Broadcast()
	}
	h.mu.Unlock()
}

func (h *streamHandle) cancel() {
	if p := h.acquire(); p != nil {
		C.minerva_stream_cancel(p)
		h.release()
	}
}

// close marks the handle closed, cancels the stream, waits for the calls in progress and frees
// (or with release, gives back) the C handle. It reports whether it was the first close.
func (h *streamHandle) close(release bool) bool {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return false
	}
	h.closed = true
	p := h.ptr
	if h.users > 0 {
		C.minerva_stream_cancel(p) // ends the blocking calls in progress within an engine step
	}
	for h.users > 0 {
		h.idle.Wait()
	}
	h.ptr = nil
	h.mu.Unlock()
	runtime.SetFinalizer(h, nil)
	if release {
		C.minerva_stream_release(p)
	} else {
		C.minerva_stream_free(p)
	}
	return true
}

func (h *streamHandle) finalize() {
	if !h.closed && h.ptr != nil {
		C.minerva_stream_release(h.ptr)
	}
}

// createFunc starts the C stream: pull mode with handle 0, callback mode otherwise.
type createFunc func(m *cmem, engine *C.minerva_engine, params *C.minerva_generate_params,
	handle C.uintptr_t, out **C.minerva_stream, cerr **C.char) (C.minerva_status, error)

func (e *Engine) start(ctx context.Context, p *GenerateParams, fn func(string) bool, create createFunc) (*Stream, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	if err := ctx.Err(); err != nil {
		return nil, &Error{Status: ErrCancelled, Message: "the context is done", Err: err}
	}
	var m cmem
	defer m.free()
	var cp C.minerva_generate_params
	if err := p.toC(&m, &cp, e.loraCount); err != nil {
		return nil, err
	}
	s := &Stream{h: &streamHandle{}, engine: e, ctx: ctx}
	s.h.idle.L = &s.h.mu
	var handle C.uintptr_t
	if fn != nil {
		s.cb = &callbackState{fn: fn, stream: s, engine: e, done: make(chan struct{})}
		handle = C.uintptr_t(newHandle(s.cb))
	}
	fail := func(err error) (*Stream, error) {
		if handle != 0 {
			deleteHandle(cgoHandle(handle)) // no callback runs for a stream that was not created
		}
		return nil, err
	}
	ep := e.acquire()
	if ep == nil {
		return fail(ErrClosed)
	}
	var out *C.minerva_stream
	var cerr *C.char
	st, err := create(&m, ep, &cp, handle, &out, &cerr)
	e.release()
	if err != nil {
		return fail(err)
	}
	if st != C.MINERVA_OK {
		return fail(callError(st, cerr))
	}
	s.h.ptr = out
	runtime.SetFinalizer(s.h, (*streamHandle).finalize)
	h := s.h
	s.stopCtx = context.AfterFunc(ctx, h.cancel)
	return s, nil
}

// Stream starts a generation in pull mode (minerva_stream_new with no callback) and returns at
// once; read its text with Read, Text or Poll. When ctx is done the stream is cancelled, and its
// reads and Wait return an *Error with Status ErrCancelled wrapping ctx.Err(). p nil: the
// defaults.
func (e *Engine) Stream(ctx context.Context, prompt string, p *GenerateParams) (*Stream, error) {
	return e.startPrompt(ctx, prompt, p, nil)
}

// StreamFunc starts a generation in callback mode: fn gets each piece of text (whole UTF-8
// characters, never empty) and returns true to go on, false to stop the stream (FinishStop).
//
// fn runs on the engine's thread, one callback at a time for all streams of the engine: a slow
// fn holds back every stream of the engine, so hand long work to another goroutine. Inside fn,
// calls that would wait for the engine thread (Wait, Read, Generate, Chat, Embed) return
// ErrInvalidArgument; Cancel, Close, Release, Poll, TryWait, Stats and starting streams are
// allowed. A panic in fn is recovered before it can reach C: it stops the stream and Wait
// returns it as a *PanicError. fn must not call runtime.Goexit (t.FailNow, t.Fatal). fn is not
// called after Wait or Close has returned.
func (e *Engine) StreamFunc(ctx context.Context, prompt string, p *GenerateParams, fn func(text string) bool) (*Stream, error) {
	if fn == nil {
		return nil, invalid("StreamFunc needs a callback")
	}
	return e.startPrompt(ctx, prompt, p, fn)
}

func (e *Engine) startPrompt(ctx context.Context, prompt string, p *GenerateParams, fn func(string) bool) (*Stream, error) {
	return e.start(ctx, p, fn, func(m *cmem, ep *C.minerva_engine, cp *C.minerva_generate_params,
		h C.uintptr_t, out **C.minerva_stream, cerr **C.char) (C.minerva_status, error) {
		cprompt, err := m.str(prompt, "the prompt")
		if err != nil {
			return 0, err
		}
		return C.mv_stream_new(ep, cprompt, cp, h, out, cerr), nil
	})
}

// Generate runs one generation to its end and returns its text (minerva_stream_new, wait,
// free). When ctx is done it cancels the generation and returns the text so far with an *Error
// (ErrCancelled) wrapping ctx.Err(). Not from inside a callback (ErrInvalidArgument).
func (e *Engine) Generate(ctx context.Context, prompt string, p *GenerateParams) (string, error) {
	s, err := e.Stream(ctx, prompt, p)
	if err != nil {
		return "", err
	}
	defer s.Close()
	return s.readAll()
}

// GenerateFunc runs one generation in callback mode to its end: StreamFunc, then Wait.
func (e *Engine) GenerateFunc(ctx context.Context, prompt string, p *GenerateParams, fn func(text string) bool) error {
	s, err := e.StreamFunc(ctx, prompt, p, fn)
	if err != nil {
		return err
	}
	defer s.Close()
	return s.Wait()
}

// readAll waits for the end, then takes the whole text (minerva buffers it).
func (s *Stream) readAll() (string, error) {
	werr := s.Wait()
	s.readMu.Lock()
	defer s.readMu.Unlock()
	out := append([]byte(nil), s.pending...)
	s.pending = nil
	buf := make([]byte, 16<<10)
	for {
		n, fin, err := s.read(buf, 0)
		if err != nil {
			return string(out), err
		}
		out = append(out, buf[:n]...)
		if fin || n == 0 {
			break
		}
	}
	return string(out), werr
}

func (s *Stream) read(dst []byte, timeoutMs int32) (int, bool, error) {
	p := s.h.acquire()
	if p == nil {
		return 0, false, ErrClosed
	}
	defer s.h.release()
	var n C.size_t
	var fin C.bool
	var cerr *C.char
	st := C.mv_stream_read(p, (*C.char)(unsafe.Pointer(&dst[0])), C.size_t(len(dst)), &n, &fin, C.int32_t(timeoutMs), &cerr)
	if st != C.MINERVA_OK {
		return 0, false, callError(st, cerr)
	}
	return int(n), bool(fin), nil
}

// Read implements io.Reader over minerva_stream_read: it waits for text (and respects the
// stream's context: a done context cancels the stream), copies what has arrived, and returns
// io.EOF once the stream ended normally and all its text was read, or the error it ended with.
// Text comes in whole UTF-8 characters, except when p is shorter than 4 bytes. A callback-mode
// stream gives no text here: Read returns at its end. Not from inside a callback.
func (s *Stream) Read(p []byte) (int, error) {
	s.readMu.Lock()
	defer s.readMu.Unlock()
	if len(s.pending) > 0 {
		n := copy(p, s.pending)
		s.pending = s.pending[n:]
		return n, nil
	}
	if s.readEnd != nil {
		return 0, s.readEnd
	}
	if len(p) == 0 {
		return 0, nil
	}
	dst := p
	if len(dst) < 4 {
		dst = make([]byte, 4) // minerva_stream_read wants room for one whole character
	}
	for {
		n, fin, err := s.read(dst, waitSliceMs)
		if err != nil {
			return 0, err
		}
		if n > 0 {
			c := copy(p, dst[:n])
			if c < n {
				s.pending = append([]byte(nil), dst[c:n]...)
			}
			return c, nil
		}
		if fin {
			err := s.Wait()
			if err == nil {
				err = io.EOF
			}
			s.readEnd = err
			return 0, err
		}
	}
}

// Text iterates over the pieces of text as they come (blocking between them), then yields the
// error the stream ended with, if any:
//
//	for text, err := range s.Text() { if err != nil { ... }; fmt.Print(text) }
//
// Breaking out of the loop leaves the stream running: Close it.
func (s *Stream) Text() iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		buf := make([]byte, 4096)
		for {
			n, err := s.Read(buf)
			if n > 0 && !yield(string(buf[:n]), nil) {
				return
			}
			if err == io.EOF {
				return
			}
			if err != nil {
				yield("", err)
				return
			}
		}
	}
}

// Poll never waits (minerva_stream_read with timeout 0): it returns the text that has arrived
// since the last read, and finished true once the stream has ended and all its text was read,
// with the error it ended with (nil when it ended normally). It is the call for a frame loop,
// and may be called from inside a callback. While another goroutine is in Read on the same
// stream, Poll returns no text.
func (s *Stream) Poll() (text string, finished bool, err error) {
	if !s.readMu.TryLock() {
		return "", false, nil
	}
	defer s.readMu.Unlock()
	out := s.pending
	s.pending = nil
	if s.readEnd != nil {
		return string(out), true, endError(s.readEnd)
	}
	if s.pollBuf == nil {
		s.pollBuf = make([]byte, 4096)
	}
	for {
		n, fin, err := s.read(s.pollBuf, 0)
		if err != nil {
			return string(out), false, err
		}
		out = append(out, s.pollBuf[:n]...)
		if fin {
			ended, err := s.TryWait()
			if !ended {
				return string(out), false, nil // its last callback has not returned yet
			}
			if err == nil {
				s.readEnd = io.EOF
			} else {
				s.readEnd = err
			}
			return string(out), true, err
		}
		if n < len(s.pollBuf) {
			return string(out), false, nil
		}
	}
}

func endError(err error) error {
	if err == io.EOF {
		return nil
	}
	return err
}

// Wait blocks until the stream has ended and its last callback has returned
// (minerva_stream_wait), and returns nil when it ended by length, stop or end of generation;
// otherwise the error it ended with: an *Error (ErrCancelled after Cancel, Close, Engine.Close
// or a done context, wrapping ctx.Err() in that case; ErrContextFull, ...), or the *PanicError
// of its callback. Not from inside a callback (ErrInvalidArgument): use TryWait there.
func (s *Stream) Wait() error {
	for {
		p := s.h.acquire()
		if p == nil {
			return ErrClosed
		}
		var cerr *C.char
		st := C.mv_stream_wait(p, waitSliceMs, &cerr)
		s.h.release()
		switch {
		case st == C.MINERVA_ERR_TIMEOUT:
			continue
		case st == C.MINERVA_ERR_INVALID_ARGUMENT && C.mv_current_handle() != 0:
			return callError(st, cerr) // refused inside a callback: not the end of the stream
		}
		return s.final(st, cerr)
	}
}

// TryWait never waits (minerva_stream_wait with timeout 0): ended is false while the stream runs
// (or its last callback has not returned); once ended, err is what Wait returns. It may be
// called from inside a callback.
func (s *Stream) TryWait() (ended bool, err error) {
	p := s.h.acquire()
	if p == nil {
		return false, ErrClosed
	}
	var cerr *C.char
	st := C.mv_stream_wait(p, 0, &cerr)
	s.h.release()
	if st == C.MINERVA_ERR_TIMEOUT {
		return false, nil
	}
	if s.cb != nil {
		select {
		case <-s.cb.done:
		default:
			C.free(unsafe.Pointer(cerr))
			return false, nil
		}
	}
	return true, s.final(st, cerr)
}

// final turns the final status into Wait's error.
func (s *Stream) final(st C.minerva_status, cerr *C.char) error {
	var err error
	if st != C.MINERVA_OK {
		e := callError(st, cerr).(*Error)
		if e.Status == ErrCancelled {
			e.Err = s.ctx.Err()
		}
		err = e
	}
	if s.cb != nil {
		<-s.cb.done // closed by the finish callback, which has returned by now
		s.cb.mu.Lock()
		p := s.cb.panicked
		s.cb.mu.Unlock()
		if p != nil {
			return p
		}
	}
	return err
}

// Cancel asks the stream to end (minerva_stream_cancel): it ends within one engine step with
// FinishCancelled, unless it had ended already. Never waits; any goroutine, a callback too.
func (s *Stream) Cancel() { s.h.cancel() }

// Stats gives the stream's figures so far (minerva_stream_get_stats).
func (s *Stream) Stats() (Stats, error) {
	p := s.h.acquire()
	if p == nil {
		return Stats{}, ErrClosed
	}
	defer s.h.release()
	var c C.minerva_stream_stats
	c.struct_size = C.uint32_t(unsafe.Sizeof(c))
	var cerr *C.char
	if st := C.mv_stream_get_stats(p, &c, &cerr); st != C.MINERVA_OK {
		return Stats{}, callError(st, cerr)
	}
	return statsFromC(&c), nil
}

// ErrorText is the message of the error the stream ended with (minerva_stream_error); "" while
// it runs, when it ended without one, or after Close.
func (s *Stream) ErrorText() string {
	p := s.h.acquire()
	if p == nil {
		return ""
	}
	defer s.h.release()
	return C.GoString(C.minerva_stream_error(p))
}

// ToolCall is one call of a tool by a chat reply.
type ToolCall struct {
	ID        string          `json:"id"` // the model's own, or "call_" and 9 letters and digits, unique in the process
	Name      string          `json:"name"`
	Arguments json.RawMessage `json:"arguments"` // a JSON object
}

// ToolCallsJSON gives, once the stream has ended, the tool calls of a chat stream's reply as
// minerva_stream_tool_calls writes them: a JSON array of {"id", "name", "arguments"}, "[]" when
// there are none. Pass it back as the assistant Message's ToolCallsJSON. ErrInvalidArgument
// while the stream runs: Wait for it first.
func (s *Stream) ToolCallsJSON() (string, error) {
	p := s.h.acquire()
	if p == nil {
		return "", ErrClosed
	}
	defer s.h.release()
	return sized(func(buf *C.char, cap C.size_t, n *C.size_t, cerr **C.char) C.minerva_status {
		return C.mv_stream_tool_calls(p, buf, cap, n, cerr)
	})
}

// Reasoning gives the reasoning of a chat stream's reply so far (minerva_stream_reasoning): with
// ReasoningAuto, what the template's format marks as reasoning (<think>...</think>, ...), kept
// out of the text; "" when there is none (a plain stream, ReasoningNone, or a template that marks
// no reasoning). Readable while the stream runs and after it ended.
func (s *Stream) Reasoning() (string, error) {
	p := s.h.acquire()
	if p == nil {
		return "", ErrClosed
	}
	defer s.h.release()
	return sized(func(buf *C.char, cap C.size_t, n *C.size_t, cerr **C.char) C.minerva_status {
		return C.mv_stream_reasoning(p, buf, cap, n, cerr)
	})
}

// ToolCalls is ToolCallsJSON, decoded.
func (s *Stream) ToolCalls() ([]ToolCall, error) {
	text, err := s.ToolCallsJSON()
	if err != nil {
		return nil, err
	}
	var calls []ToolCall
	if err := json.Unmarshal([]byte(text), &calls); err != nil {
		return nil, &Error{Status: ErrInternal, Message: "the tool calls minerva gave do not parse", Err: err}
	}
	return calls, nil
}

// Close cancels the stream if it still runs, waits until its callback can no longer run, and
// frees it (minerva_stream_free). It waits for the engine only for a callback-mode stream that
// the engine has begun; a pull-mode stream is freed at once. Calls in progress in other
// goroutines end first (a Read or Wait returns ErrClosed or ErrCancelled within an engine
// step); later calls return ErrClosed. A second Close does nothing and returns nil, at once, even while the first one is
// still waiting. It may be called from inside a callback (then it does not wait; the stream's
// callback ends after the current one).
func (s *Stream) Close() error {
	if s.h.close(false) && s.stopCtx != nil {
		s.stopCtx()
	}
	return nil
}

// Release is Close without any wait (minerva_stream_release), for a frame loop: the stream is
// cancelled and the handle given back at once, and its callback may still run on the engine
// thread for the step in progress.
func (s *Stream) Release() {
	if s.h.close(true) && s.stopCtx != nil {
		s.stopCtx()
	}
}
