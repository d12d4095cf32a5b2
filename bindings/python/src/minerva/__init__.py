"""minerva: local LLM inference (llama.cpp) inside a Python program, over libminerva's C API.

    import minerva

    with minerva.Engine("model.gguf", context_tokens=2048) as engine:
        print(engine.generate("Once upon a time", max_tokens=64, temperature=0))
        for piece in engine.stream("The guard says:", max_tokens=64):
            print(piece, end="", flush=True)
        reply = engine.chat([{"role": "user", "content": "Hello!"}], max_tokens=64)
        vectors = engine.embed(["a cat", "a dog"])
        engine.cache_prefill("You are Bram, the guard.\n", pin=True)  # game state
        save = engine.cache_save()                                     # bytes; cache_load(save)

Rules, as the C header states them, in Python's words:

- Every method of Engine and Stream may be called from any thread, concurrently. No minerva call
  holds the GIL while it waits (ctypes releases it), so threads streaming on one engine run
  together; the engine decodes their streams in shared batches.
- Callbacks (``on_token``, ``on_finish``) run on the engine's thread, one at a time per engine;
  a slow one holds back every stream of its engine. An exception raised in one never reaches
  minerva: it stops the stream and is raised again by ``Stream.wait()`` or the iteration.
  Inside a callback, calls that would wait for the engine (``generate``, ``chat``, ``embed``,
  the ``cache_*`` calls, waits with a timeout) raise ``minerva.Error`` with
  ``Status.ERR_INVALID_ARGUMENT``.
- ``Engine`` and ``Stream`` own their native handle and free it once: ``close()``, the end of a
  ``with`` block, or the garbage collector. A handle cannot be used after it was freed (the
  call raises ``minerva.Error``), nor freed while a call on it runs on another thread. Closing
  an engine cancels its streams; they stay readable and end with ``ERR_CANCELLED``.
- Failures raise ``minerva.Error``, whose ``status`` is the ``minerva_status`` (``Status``) and
  whose message is minerva's own.

The library is found through ``$MINERVA_LIBRARY`` (a full path), then the dynamic loader
(``libminerva.so.1``, ``libminerva.so``), ``ctypes.util.find_library``, then ``pkg-config``:
see ``minerva.capi``.
"""

import atexit as _atexit

from . import capi
from ._core import (
    ChatReply,
    DeviceKind,
    Engine,
    EngineInfo,
    Error,
    FinishReason,
    LogLevel,
    Pooling,
    Reasoning,
    Status,
    Stream,
    StreamStats,
    ToolChoice,
    _reset_log_at_exit,
    abi_version,
    last_error,
    set_log_callback,
    status_str,
    version,
)
from .capi import ABI_VERSION, SEED_RANDOM, library_path

__all__ = [
    "ABI_VERSION",
    "SEED_RANDOM",
    "ChatReply",
    "DeviceKind",
    "Engine",
    "EngineInfo",
    "Error",
    "FinishReason",
    "LogLevel",
    "Pooling",
    "Reasoning",
    "Status",
    "Stream",
    "StreamStats",
    "ToolChoice",
    "abi_version",
    "capi",
    "last_error",
    "library_path",
    "set_log_callback",
    "status_str",
    "version",
]

__version__ = "0.1.0"

# Engines are closed at exit by their weakref finalizers; the log callback is reset here, so
# that no Python code runs on minerva's threads while the interpreter is torn down.
_atexit.register(_reset_log_at_exit)
