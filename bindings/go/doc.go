// Package minerva is the Go binding of minerva, local LLM inference (llama.cpp) behind a C ABI:
// load a GGUF model once (Open), start generations on it (Engine.Generate, Engine.Stream,
// Engine.Chat), and get their text as a string, an io.Reader, an iterator, or through a callback.
//
// Import it as
//
//	import minerva "github.com/minerva-ai/minerva/bindings/go"
//
// It is a thin cgo layer over include/minerva.h: the rules are the C library's, stated here in
// Go's words. It links -lminerva; tell cgo where minerva is installed with
//
//	CGO_CFLAGS="$(pkg-config --cflags minerva)" CGO_LDFLAGS="$(pkg-config --libs minerva)" go build
//
// (nothing to set when it is installed under /usr/local), or point at a build tree with
// CGO_CFLAGS=-I/path/to/include CGO_LDFLAGS="-L/path/to/lib -Wl,-rpath,/path/to/lib".
//
// # Goroutines and threads
//
// Every method of Engine and Stream may be called from any goroutine, concurrently; Read, Poll
// and Text of one Stream share a read position (one reader at a time). An engine has one thread
// of its own that decodes all of its streams together. Callbacks given to StreamFunc and
// ChatStreamFunc run on that thread, one at a time for the whole engine: a slow callback holds
// back every stream of the engine, so hand long work to a goroutine. Inside a callback, calls
// that would wait for the engine thread (Wait, Read, Generate, Chat, Embed, CachePrefill,
// CacheSave, CacheLoad and their file variants) return
// ErrInvalidArgument; Cancel, Close, Release, Poll, TryWait, Stats, Tokenize and starting
// streams work. A panic in a callback is recovered before it reaches C: it stops the stream and
// comes back from Wait as a *PanicError. A callback must not call runtime.Goexit (t.FailNow).
// The log callback (SetLogCallback) runs on any thread, one line at a time.
//
// # Lifetimes
//
// Close every Engine and Stream. Stream.Close cancels the stream if it still runs and returns
// once its callback can no longer run; Engine.Close cancels the engine's streams (they end with
// ErrCancelled), waits for their callbacks and frees the model. Streams stay valid after their
// engine is closed (their text so far can be read) and must still be closed. Calls after Close
// return ErrClosed; a second Close does nothing. Go values never reach C: callbacks are passed as
// runtime/cgo handles, released when the stream's last callback has run. An Engine or Stream
// dropped without Close is released by a finalizer, a safety net only.
//
// # Contexts
//
// Generate, Stream, Chat and their variants take a context.Context: when it is done, the stream
// is cancelled (minerva_stream_cancel) and the call, or the stream's Read and Wait, return an
// *Error with Status ErrCancelled that wraps ctx.Err(), so errors.Is(err, context.Canceled)
// holds. No goroutine is kept per stream (context.AfterFunc).
//
// # Errors
//
// Failures are *Error values with the minerva Status and minerva's message naming the function
// and the problem; test them with errors.Is(err, minerva.ErrIO) or errors.As(err, &e).
// minerva_last_error is per thread and a goroutine may change threads between two cgo calls, so
// this package reads it in the same C call that failed: there is no LastError function.
package minerva
