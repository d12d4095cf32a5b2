package minerva

/*
#include "shim.h"
*/
import "C"

import (
	"unsafe"
)

// CachePrefill computes prompt's KV into the engine's prompt cache now, without generating
// (minerva_cache_prefill): a later stream (or chat stream) whose prompt starts with it skips
// those tokens (Stats.CachedPromptTokens). prompt is tokenized as a stream's is, so end it where
// a prompt that continues it splits into the same tokens (at a newline, say).
//
// pin: the prefix is kept until the engine is closed, never evicted by other prompts, beside the
// stream slots (at most 16 prefixes; EngineInfo.PinnedTokens and PinnedBytes say what they
// hold); a prefix pinned already is not pinned twice. Unpinned, it is the cache of a stream slot,
// evicted by later prompts as any other. It runs on the engine thread beside the streams and
// returns when the prefix is in the cache: not from inside a callback (ErrInvalidArgument).
// Errors: ErrInvalidArgument (an empty prompt, not UTF-8), ErrContextFull (longer than the
// context; pinning beyond what the cache may hold), ErrCancelled (the engine is being closed).
func (e *Engine) CachePrefill(prompt string, pin bool) error {
	var m cmem
	defer m.free()
	cprompt, err := m.str(prompt, "the prompt")
	if err != nil {
		return err
	}
	ep := e.acquire()
	if ep == nil {
		return ErrClosed
	}
	defer e.release()
	var cerr *C.char
	if st := C.mv_cache_prefill(ep, cprompt, C.bool(pin), &cerr); st != C.MINERVA_OK {
		return callError(st, cerr)
	}
	return nil
}

// CacheSave gives every cached prefix of the engine that no stream is computing (the pinned
// prefixes and the stream slots' caches: their tokens and KV) as bytes for a game's save file
// (minerva_cache_save); CacheLoad puts them into an engine of the same model, ContextTokens and
// minerva version. Streams keep running; not from inside a callback (ErrInvalidArgument).
func (e *Engine) CacheSave() ([]byte, error) {
	ep := e.acquire()
	if ep == nil {
		return nil, ErrClosed
	}
	defer e.release()
	var n C.size_t
	var cerr *C.char
	st := C.mv_cache_save(ep, nil, 0, &n, &cerr)
	for {
		switch st {
		case C.MINERVA_OK:
			return []byte{}, nil
		case C.MINERVA_ERR_BUFFER_TOO_SMALL: // the cache may grow between two calls: again
			C.free(unsafe.Pointer(cerr))
			cerr = nil
		default:
			return nil, callError(st, cerr)
		}
		buf := make([]byte, max(int(n), 1))
		st = C.mv_cache_save(ep, unsafe.Pointer(&buf[0]), C.size_t(len(buf)), &n, &cerr)
		if st == C.MINERVA_OK {
			return buf[:n:n], nil
		}
	}
}

// CacheLoad loads what CacheSave gave (minerva_cache_load): pinned prefixes into free pinned
// places (one held already is not loaded twice), the others into stream slots no stream holds;
// the first stream on each then starts without prompt processing. Streams keep running; not
// from inside a callback. Errors: ErrInvalidArgument naming what differs or is wrong (not a
// saved cache, another version, model, ContextTokens or KV layout, a checksum that does not
// match, truncated bytes), ErrContextFull (more pinned prefixes than the engine has room for).
// Nothing is loaded when the bytes are refused.
func (e *Engine) CacheLoad(data []byte) error {
	ep := e.acquire()
	if ep == nil {
		return ErrClosed
	}
	defer e.release()
	var ptr unsafe.Pointer
	if len(data) > 0 {
		ptr = unsafe.Pointer(&data[0])
	}
	var cerr *C.char
	if st := C.mv_cache_load(ep, ptr, C.size_t(len(data)), &cerr); st != C.MINERVA_OK {
		return callError(st, cerr)
	}
	return nil
}

// CacheSaveFile is CacheSave into the file at path, written whole or not at all
// (minerva_cache_save_file); ErrIO names a file that cannot be written.
func (e *Engine) CacheSaveFile(path string) error {
	return e.cacheFile(path, true)
}

// CacheLoadFile is CacheLoad from the file at path (minerva_cache_load_file); ErrIO names a
// file that cannot be read.
func (e *Engine) CacheLoadFile(path string) error {
	return e.cacheFile(path, false)
}

func (e *Engine) cacheFile(path string, save bool) error {
	var m cmem
	defer m.free()
	cpath, err := m.str(path, "the path")
	if err != nil {
		return err
	}
	ep := e.acquire()
	if ep == nil {
		return ErrClosed
	}
	defer e.release()
	var cerr *C.char
	var st C.minerva_status
	if save {
		st = C.mv_cache_save_file(ep, cpath, &cerr)
	} else {
		st = C.mv_cache_load_file(ep, cpath, &cerr)
	}
	if st != C.MINERVA_OK {
		return callError(st, cerr)
	}
	return nil
}
