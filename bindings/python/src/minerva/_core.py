"""minerva's Python API over the ctypes declarations of ``minerva.capi``."""

from __future__ import annotations

import ctypes
import enum
import itertools
import json
import math
import operator
import os
import sys
import threading
import time
import weakref
from ctypes import byref, c_bool, c_char_p, c_float, c_int32, c_size_t
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Sequence, Union

from . import capi

# ---------------------------------------------------------------------------------------------
# Enumerations: the header's constants, named as in C without the group prefix.


class Status(enum.IntEnum):
    """A ``minerva_status``."""

    OK = capi.OK
    ERR_INVALID_ARGUMENT = capi.ERR_INVALID_ARGUMENT
    ERR_IO = capi.ERR_IO
    ERR_MODEL = capi.ERR_MODEL
    ERR_OUT_OF_MEMORY = capi.ERR_OUT_OF_MEMORY
    ERR_CONTEXT_FULL = capi.ERR_CONTEXT_FULL
    ERR_CANCELLED = capi.ERR_CANCELLED
    ERR_TIMEOUT = capi.ERR_TIMEOUT
    ERR_BACKEND = capi.ERR_BACKEND
    ERR_INTERNAL = capi.ERR_INTERNAL
    ERR_BUFFER_TOO_SMALL = capi.ERR_BUFFER_TOO_SMALL


class FinishReason(enum.IntEnum):
    """Why a stream ended (``MINERVA_FINISH_*``)."""

    RUNNING = capi.FINISH_RUNNING
    LENGTH = capi.FINISH_LENGTH
    STOP = capi.FINISH_STOP
    EOS = capi.FINISH_EOS
    CANCELLED = capi.FINISH_CANCELLED
    ERROR = capi.FINISH_ERROR


class ToolChoice(enum.IntEnum):
    """``MINERVA_TOOL_CHOICE_*``; the ``tool_choice`` keyword also takes "auto", "none",
    "required"."""

    AUTO = capi.TOOL_CHOICE_AUTO
    NONE = capi.TOOL_CHOICE_NONE
    REQUIRED = capi.TOOL_CHOICE_REQUIRED


class Reasoning(enum.IntEnum):
    """``MINERVA_REASONING_*``: what becomes of the reasoning a model writes; the ``reasoning``
    keyword also takes "auto", "none". AUTO keeps it apart from the text (read it with
    :meth:`Stream.reasoning`); NONE leaves it in the text."""

    AUTO = capi.REASONING_AUTO
    NONE = capi.REASONING_NONE


class Pooling(enum.IntEnum):
    """``MINERVA_POOLING_*``; the ``pooling`` keyword also takes "default", "mean", ..."""

    DEFAULT = capi.POOLING_DEFAULT
    MEAN = capi.POOLING_MEAN
    LAST = capi.POOLING_LAST
    CLS = capi.POOLING_CLS


class LogLevel(enum.IntEnum):
    """``MINERVA_LOG_*``."""

    DEBUG = capi.LOG_DEBUG
    INFO = capi.LOG_INFO
    WARN = capi.LOG_WARN
    ERROR = capi.LOG_ERROR
    NONE = capi.LOG_NONE


class DeviceKind(enum.IntEnum):
    """``MINERVA_DEVICE_*``: the kind of device that holds most of the model."""

    CPU = capi.DEVICE_CPU
    CUDA = capi.DEVICE_CUDA
    METAL = capi.DEVICE_METAL
    VULKAN = capi.DEVICE_VULKAN
    OTHER = capi.DEVICE_OTHER
    #: A ``minerva-rpc-server`` given in ``rpc_servers`` (docs/RPC.md).
    RPC = capi.DEVICE_RPC


def _enum(cls, value):
    """``cls(value)``, or the plain int for a value a newer library added."""
    try:
        return cls(value)
    except ValueError:
        return int(value)


# ---------------------------------------------------------------------------------------------
# Errors


class Error(Exception):
    """A failed minerva call: ``status`` is the ``minerva_status`` (a :class:`Status`), the
    message is minerva's own, naming the function and the problem."""

    def __init__(self, status: int, message: str = "") -> None:
        self.status = _enum(Status, status)
        self.message = message or status_str(status)
        super().__init__(self.message)

    def __repr__(self) -> str:
        name = self.status.name if isinstance(self.status, Status) else self.status
        return f"minerva.Error({name}, {self.message!r})"


def _error(status: int) -> Error:
    # minerva_last_error is per thread and read right after the failed call, on the same thread.
    message = capi.lib().minerva_last_error() or b""
    return Error(status, message.decode("utf-8", "replace"))


def _check(status: int) -> None:
    if status != capi.OK:
        raise _error(status)


def _invalid(message: str) -> Error:
    return Error(capi.ERR_INVALID_ARGUMENT, message)


def version() -> str:
    """The library's version, e.g. "0.1.0"."""
    return capi.lib().minerva_version().decode()


def abi_version() -> int:
    """The library's ABI version (``minerva_abi_version``); the loader checks that it is
    ``capi.ABI_VERSION``."""
    return capi.lib().minerva_abi_version()


def status_str(status: int) -> str:
    """The library's name of a status ("ok", "invalid argument", ...)."""
    return capi.lib().minerva_status_str(int(status)).decode()


def last_error() -> str:
    """``minerva_last_error()``: the message of the last failed minerva call on this thread.
    This binding already puts it in every :class:`Error` it raises."""
    return (capi.lib().minerva_last_error() or b"").decode("utf-8", "replace")


# ---------------------------------------------------------------------------------------------
# Conversions of Python values into C fields


def _cstr(value, name: str) -> bytes:
    """UTF-8 bytes for a C string. Lone surrogates are passed on as the bytes they would be,
    so that minerva itself refuses the text as not UTF-8, with its own message."""
    if isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
    elif isinstance(value, (bytes, bytearray)):
        data = bytes(value)
    else:
        raise TypeError(f"{name} must be str, not {type(value).__name__}")
    if b"\0" in data:
        raise _invalid(f"{name} contains a NUL character")
    return data


def _opt_cstr(value, name: str) -> Optional[bytes]:
    return None if value is None else _cstr(value, name)


def _rpc_servers(value) -> Optional[bytes]:
    """``rpc_servers``: None, a "host:port,host:port" string, or a list of "host:port" strings
    (joined with commas; an empty list is none). minerva checks the syntax."""
    if value is None or isinstance(value, (str, bytes, bytearray)):
        return _opt_cstr(value, "rpc_servers")
    try:
        items = list(value)
    except TypeError:
        raise TypeError("rpc_servers must be a str or a list of str, not "
                        f"{type(value).__name__}") from None
    return b",".join(_cstr(s, f"rpc_servers[{i}]") for i, s in enumerate(items))


def _path(value, name: str) -> bytes:
    """A file path for C: str and os.PathLike through the file system's encoding."""
    if isinstance(value, (str, os.PathLike)):
        value = os.fsencode(value)
    return _cstr(value, name)


def _loras(value):
    """``loras``: None, or a list of ``(path, scale)`` pairs (or a ``{path: scale}`` dict; a
    bare path has scale 1.0), as a ``minerva_lora`` array and the path bytes it points at."""
    if value is None:
        return None, []
    if isinstance(value, (str, bytes, bytearray, os.PathLike)):
        raise TypeError("loras must be a list of (path, scale) pairs, not a single path")
    items = list(value.items()) if isinstance(value, Mapping) else list(value)
    arr = (capi.minerva_lora * len(items))()
    paths = []
    for i, item in enumerate(items):
        if isinstance(item, (str, bytes, bytearray, os.PathLike)):
            path, scale = item, 1.0
        else:
            try:
                path, scale = item
            except (TypeError, ValueError):
                raise TypeError(f"loras[{i}] must be a (path, scale) pair, not "
                                f"{type(item).__name__}") from None
        data = _path(path, f"loras[{i}] path")
        paths.append(data)
        arr[i].path = data
        arr[i].scale = _float(f"loras[{i}] scale", scale)
    return arr, paths


def _json_text(value, name: str) -> bytes:
    """A JSON text given as str/bytes, or a Python value to serialize."""
    if isinstance(value, (str, bytes, bytearray)):
        return _cstr(value, name)
    return _cstr(json.dumps(value), name)


def _int(name: str, value, lo: int, hi: int) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not bool")
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, not {type(value).__name__}") from None
    if not lo <= v <= hi:
        raise _invalid(f"{name}: {v} is out of range ({lo} to {hi})")
    return v


def _float(name: str, value) -> float:
    if isinstance(value, (bool, str, bytes)) or not hasattr(value, "__float__"):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    return float(value)


def _bool(name: str, value) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise TypeError(f"{name} must be a bool, not {type(value).__name__}")


def _choice(cls, name: str, value) -> int:
    if isinstance(value, str):
        try:
            return int(cls[value.upper()])
        except KeyError:
            names = ", ".join(m.name.lower() for m in cls)
            raise _invalid(f"{name}: unknown value {value!r} (one of {names})") from None
    return _int(name, value, 0, 0xFFFFFFFF)


_U32 = 0xFFFFFFFF
_I32_MIN, _I32_MAX = -(2**31), 2**31 - 1

ENGINE_PARAMS = ("gpu_layers", "context_tokens", "max_streams", "threads", "batch_tokens",
                 "use_mmap", "progress", "rpc_servers", "loras")
GENERATE_PARAMS = ("max_tokens", "temperature", "top_k", "top_p", "min_p", "repeat_penalty",
                   "repeat_last_n", "seed", "stop", "ignore_eos", "cache_prompt", "grammar",
                   "json_schema", "presence_penalty", "frequency_penalty", "logit_bias",
                   "lora_scales")
CHAT_PARAMS = ("chat_template", "tools", "tools_json", "tool_choice", "add_generation_prompt",
               "template_kwargs", "template_kwargs_json", "reasoning", "continue_final_message",
               "max_tool_calls")
EMBED_PARAMS = ("pooling", "normalize")


def _unknown(kind: str, names, allowed) -> TypeError:
    bad = ", ".join(sorted(names))
    return TypeError(f"unknown {kind} parameter(s): {bad} (known: {', '.join(allowed)})")


def _generate_params(params: Mapping[str, Any], lora_count: int = 0):
    """A filled ``minerva_generate_params`` and the objects that must outlive the call.
    ``lora_count``: the engine's adapters, as many as ``lora_scales`` must have (minerva reads
    that many floats)."""
    unknown = set(params) - set(GENERATE_PARAMS)
    if unknown:
        raise _unknown("generate", unknown, GENERATE_PARAMS)
    lib = capi.lib()
    p = capi.minerva_generate_params()
    lib.minerva_generate_params_init(byref(p), ctypes.sizeof(p))
    keep: list = []
    for name, value in params.items():
        if name in ("max_tokens", "repeat_last_n"):
            setattr(p, name, _int(name, value, 0, _U32))
        elif name == "top_k":
            p.top_k = _int(name, value, _I32_MIN, _I32_MAX)
        elif name in ("temperature", "top_p", "min_p", "repeat_penalty", "presence_penalty",
                      "frequency_penalty"):
            setattr(p, name, _float(name, value))
        elif name == "seed":
            p.seed = capi.SEED_RANDOM if value is None else _int(name, value, 0, 2**64 - 1)
        elif name in ("ignore_eos", "cache_prompt"):
            setattr(p, name, _bool(name, value))
        elif name == "grammar":
            p.grammar = _opt_cstr(value, name)
        elif name == "json_schema":
            p.json_schema = None if value is None else _json_text(value, name)
        elif name == "stop":
            if value is None:
                continue
            items = [value] if isinstance(value, (str, bytes)) else list(value)
            arr = (c_char_p * len(items))(*[_cstr(s, f"stop[{i}]") for i, s in enumerate(items)])
            keep.append(arr)
            p.stop = ctypes.cast(arr, ctypes.POINTER(c_char_p))
            p.stop_count = len(items)
        elif name == "logit_bias":
            if value is None:
                continue
            pairs = list(value.items()) if isinstance(value, Mapping) else list(value)
            arr = (capi.minerva_logit_bias * len(pairs))()
            for i, pair in enumerate(pairs):
                token, bias = pair
                arr[i].token = _int(f"logit_bias token {token!r}", token, _I32_MIN, _I32_MAX)
                arr[i].bias = _float("logit_bias bias", bias)
            keep.append(arr)
            p.logit_bias = ctypes.cast(arr, ctypes.POINTER(capi.minerva_logit_bias))
            p.logit_bias_count = len(pairs)
        elif name == "lora_scales":
            if value is None:
                continue  # the engine's scales
            scales = [_float(f"lora_scales[{i}]", x) for i, x in enumerate(value)]
            if len(scales) != lora_count:
                raise _invalid(f"lora_scales has {len(scales)} scales; the engine has "
                               f"{lora_count} adapters")
            arr = (c_float * max(1, len(scales)))(*scales)
            keep.append(arr)
            p.lora_scales = ctypes.cast(arr, ctypes.POINTER(c_float))
    return p, keep


def _chat_params(params: Mapping[str, Any]):
    lib = capi.lib()
    c = capi.minerva_chat_params()
    lib.minerva_chat_params_init(byref(c), ctypes.sizeof(c))
    if "tools" in params and "tools_json" in params:
        raise TypeError("give tools or tools_json, not both")
    if "template_kwargs" in params and "template_kwargs_json" in params:
        raise TypeError("give template_kwargs or template_kwargs_json, not both")
    for name, value in params.items():
        if name == "chat_template":
            c.chat_template = _opt_cstr(value, name)
        elif name in ("tools", "tools_json"):
            c.tools_json = None if value is None else _json_text(value, name)
        elif name == "tool_choice":
            c.tool_choice = _choice(ToolChoice, name, value)
        elif name == "add_generation_prompt":
            c.add_generation_prompt = _bool(name, value)
        elif name in ("template_kwargs", "template_kwargs_json"):
            c.template_kwargs_json = None if value is None else _json_text(value, name)
        elif name == "reasoning":
            c.reasoning = _choice(Reasoning, name, value)
        elif name == "continue_final_message":
            c.continue_final_message = _bool(name, value)
        elif name == "max_tool_calls":
            c.max_tool_calls = _int(name, value, 0, _U32)
        else:
            raise _unknown("chat", [name], CHAT_PARAMS)
    return c


_MESSAGE_KEYS = ("role", "content", "tool_calls", "tool_calls_json", "tool_call_id")


def _messages(messages):
    if isinstance(messages, (str, bytes, Mapping)):
        raise TypeError("messages must be a list of {'role': ..., 'content': ...} dicts")
    items = list(messages)
    arr = (capi.minerva_chat_message * len(items))()
    for i, m in enumerate(items):
        if not isinstance(m, Mapping):
            raise TypeError(f"messages[{i}] must be a dict, not {type(m).__name__}")
        unknown = set(m) - set(_MESSAGE_KEYS)
        if unknown:
            raise TypeError(f"messages[{i}]: unknown key(s) {sorted(unknown)} "
                            f"(known: {', '.join(_MESSAGE_KEYS)})")
        if "role" not in m:
            raise TypeError(f"messages[{i}] has no 'role'")
        arr[i].role = _opt_cstr(m["role"], f"messages[{i}].role")
        arr[i].content = _opt_cstr(m.get("content"), f"messages[{i}].content")
        calls = m.get("tool_calls", m.get("tool_calls_json"))
        if calls is not None:
            arr[i].tool_calls_json = _json_text(calls, f"messages[{i}].tool_calls")
        arr[i].tool_call_id = _opt_cstr(m.get("tool_call_id"), f"messages[{i}].tool_call_id")
    return arr, len(items)


def _two_call(call, guess: int = 4096) -> bytes:
    """The buffer pattern of the header: ``call(buf, cap, out_len)``, again with the size the
    library asked for when ``guess`` bytes were too few."""
    cap = guess
    for _ in range(4):
        buf = ctypes.create_string_buffer(cap)
        n = c_size_t(0)
        st = call(buf, cap, byref(n))
        if st == capi.ERR_BUFFER_TOO_SMALL and n.value > cap:
            cap = n.value
            continue
        _check(st)
        return buf.raw[: n.value]
    raise Error(capi.ERR_INTERNAL, "the size minerva asked for kept growing")


# ---------------------------------------------------------------------------------------------
# Handles: a native pointer that cannot be used after it was freed, nor freed while in use.


class _Handle:
    """Owns one native pointer. ``with handle as ptr:`` holds it for the length of one call
    (raising :class:`Error` once it is closed); :meth:`detach` takes it away for freeing, after
    the calls in progress on other threads have returned: minerva requires that freeing does
    not overlap another call on the same handle."""

    __slots__ = ("ptr", "kind", "_cond", "_users", "_closing")

    def __init__(self, ptr, kind: str) -> None:
        self.ptr = ptr
        self.kind = kind
        self._cond = threading.Condition(threading.Lock())
        self._users = 0
        self._closing = False

    @property
    def closed(self) -> bool:
        return self._closing

    def __enter__(self):
        with self._cond:
            if self._closing:
                raise _invalid(f"the {self.kind} is closed")
            self._users += 1
            return self.ptr

    def __exit__(self, *exc) -> None:
        with self._cond:
            self._users -= 1
            if self._users == 0:
                self._cond.notify_all()

    def detach(self, before_wait: Optional[Callable] = None):
        """Marks the handle closed and returns the pointer once no call holds it; None if it
        was closed already. ``before_wait(ptr)`` runs first (e.g. a cancel that makes the
        calls in progress return)."""
        with self._cond:
            if self._closing:
                return None
            self._closing = True
            ptr = self.ptr
        if before_wait is not None:
            before_wait(ptr)
        with self._cond:
            while self._users:
                self._cond.wait()
            self.ptr = None
        return ptr


# ---------------------------------------------------------------------------------------------
# Callbacks. One trampoline of each type lives for the whole process; the Python objects of a
# stream are found by the integer key passed as user_data, and dropped in its finish callback,
# which minerva calls exactly once, last. Nothing ever raises into C: an exception is kept and
# raised again to the caller after the stream ended.

_tls = threading.local()  # .engine: the _Handle whose callback runs; .depth: callbacks nested
_live: dict = {}
_keys = itertools.count(1)
_report_lock = threading.RLock()  # re-entered by a finalizer run inside it


class _CallbackState:
    __slots__ = ("on_token", "on_finish", "engine", "error", "finished", "orphaned", "raised")

    def __init__(self, on_token, on_finish, engine) -> None:
        self.on_token = on_token
        self.on_finish = on_finish
        self.engine = engine  # keeps the Engine alive while the engine thread may call back
        self.error: Optional[BaseException] = None
        self.finished = False
        self.orphaned = False  # no Stream object left to raise the error from
        self.raised = False


def _report(state: _CallbackState) -> None:
    """An exception of a callback whose Stream is gone goes to sys.unraisablehook, as Python
    does for exceptions it cannot raise anywhere."""
    err = state.error
    if err is None or state.raised:
        return
    state.raised = True
    try:
        hook = sys.unraisablehook
        hook(_Unraisable(err, "minerva: exception in a stream callback, after its Stream was "
                              "closed or dropped"))
    except BaseException:
        pass


class _Unraisable:
    def __init__(self, err: BaseException, message: str) -> None:
        self.exc_type = type(err)
        self.exc_value = err
        self.exc_traceback = err.__traceback__
        self.err_msg = message
        self.object = None


def _enter_callback(engine) -> tuple:
    prev = (getattr(_tls, "engine", None), getattr(_tls, "depth", 0))
    _tls.engine = engine
    _tls.depth = prev[1] + 1
    return prev


def _leave_callback(prev: tuple) -> None:
    _tls.engine, _tls.depth = prev


def _in_callback() -> bool:
    return getattr(_tls, "depth", 0) > 0


def _token_trampoline(user_data, text, length):
    state = None
    try:
        state = _live.get(user_data)
        if state is None or state.error is not None or state.on_token is None:
            return capi.STOP
        prev = _enter_callback(state.engine._h if state.engine is not None else None)
        try:
            r = state.on_token(ctypes.string_at(text, length).decode("utf-8", "replace"))
        finally:
            _leave_callback(prev)
        return capi.CONTINUE if r is None or r else capi.STOP
    except BaseException as e:  # noqa: BLE001 - nothing may unwind into C
        try:
            if state is not None and state.error is None:
                state.error = e
        except BaseException:
            pass
        return capi.STOP


def _finish_trampoline(user_data, status, reason):
    try:
        state = _live.pop(user_data, None)
        if state is None:
            return
        try:
            if state.on_finish is not None:
                prev = _enter_callback(state.engine._h if state.engine is not None else None)
                try:
                    state.on_finish(_enum(Status, status), _enum(FinishReason, reason))
                finally:
                    _leave_callback(prev)
        except BaseException as e:  # noqa: BLE001
            if state.error is None:
                state.error = e
        state.engine = None
        with _report_lock:
            state.finished = True
            if state.orphaned:
                _report(state)
    except BaseException:  # noqa: BLE001
        pass


def _log_trampoline(fn):
    def trampoline(_user_data, level, message):
        try:
            prev = _enter_callback(None)
            try:
                fn(_enum(LogLevel, level), ctypes.string_at(message).decode("utf-8", "replace"))
            finally:
                _leave_callback(prev)
        except BaseException as e:  # noqa: BLE001 - nothing may unwind into C
            try:
                sys.unraisablehook(_Unraisable(e, "minerva: exception in the log callback"))
            except BaseException:
                pass

    return trampoline


_TOKEN_CB = capi.token_callback(_token_trampoline)
_FINISH_CB = capi.finish_callback(_finish_trampoline)
_NO_TOKEN_CB = capi.token_callback()  # NULL: pull mode
# Every log trampoline ever given to minerva, kept for the life of the process: one may still be
# running when it is replaced from inside a callback, and no Python lock is held across
# minerva_set_log_callback (it waits for a log callback running on another thread, which could
# be waiting for that lock).
_log_callbacks: list = []


def set_log_callback(fn: Optional[Callable[[LogLevel, str], Any]],
                     min_level: Union[LogLevel, int, str] = LogLevel.WARN) -> None:
    """Sends minerva's and llama.cpp's log lines at ``min_level`` and above to
    ``fn(level, message)``, for the whole process; ``None`` restores the default (stderr).
    Without a call, warnings and errors go to stderr. ``fn`` runs on any thread, one line at a
    time, and may call minerva; an exception from it goes to ``sys.unraisablehook``. When this
    returns, the previous function is not running and is never called again (unless this is
    called from a minerva callback, where minerva cannot wait for it)."""
    level = _choice(LogLevel, "min_level", min_level)
    lib = capi.lib()
    if fn is None:
        lib.minerva_set_log_callback(capi.log_callback(), None, level)  # NULL: stderr
        return
    if not callable(fn):
        raise TypeError("the log callback must be callable")
    cb = capi.log_callback(_log_trampoline(fn))
    _log_callbacks.append(cb)
    lib.minerva_set_log_callback(cb, None, level)


def _reset_log_at_exit() -> None:
    # No Python code may run on minerva's threads once the interpreter is torn down.
    if _log_callbacks and capi._lib is not None:
        set_log_callback(None)


# ---------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class EngineInfo:
    """What an engine runs on and what it loaded (``minerva_engine_info``)."""

    device_kind: DeviceKind
    device_name: str
    fallback_reason: str
    gpu_layers: int
    total_layers: int
    context_tokens: int
    max_streams: int
    threads: int
    model_description: str
    parameter_count: int
    file_bytes: int
    vocab_size: int
    train_context_tokens: int
    has_chat_template: bool
    embedding_dims: int
    #: The CPU backend in use, e.g. "x86-64 AVX-512 VBMI VNNI (icelake)".
    cpu_variant: str
    #: Each device that holds layers, with how many, e.g. "RPC0 (10.0.0.2:50052): 12 layers,
    #: CPU: 7 layers" (llama.cpp counts the output layer as one).
    devices: str
    #: Tokens the engine's pinned prefixes hold (:meth:`Engine.cache_prefill` with ``pin``).
    pinned_tokens: int
    #: The bytes of KV cache they take (0 when the model's header does not say enough).
    pinned_bytes: int


@dataclass(frozen=True)
class StreamStats:
    """A stream's figures so far (``minerva_stream_stats``)."""

    prompt_tokens: int
    cached_prompt_tokens: int
    generated_tokens: int
    time_to_first_token_ms: float
    prompt_tokens_per_second: float
    tokens_per_second: float
    finish_reason: FinishReason


class ChatReply(str):
    """The text of a chat reply (a ``str``), with the ``tool_calls`` of the reply (a list of
    ``{"id", "name", "arguments"}`` dicts, ``[]`` for none), its ``finish_reason`` and its
    ``reasoning`` (kept out of the text under ``reasoning="auto"``; "" for none)."""

    tool_calls: list
    finish_reason: FinishReason
    reasoning: str

    def __new__(cls, text: str, tool_calls: list, finish_reason: FinishReason,
                reasoning: str = ""):
        self = super().__new__(cls, text)
        self.tool_calls = tool_calls
        self.finish_reason = finish_reason
        self.reasoning = reasoning
        return self


# ---------------------------------------------------------------------------------------------
# Streams

_READ_CAP = 4096
# Waits without a limit are made of waits of this length, so that Ctrl-C (delivered between
# two of them) and a close() on another thread are noticed.
_SLICE_MS = 100


def _slices(timeout: Optional[float]) -> Iterator[int]:
    """Milliseconds to wait, one slice at a time, until ``timeout`` seconds passed (None: no
    limit; 0: one call that does not wait)."""
    if timeout is None:
        while True:
            yield _SLICE_MS
    if timeout < 0 or math.isnan(timeout):
        raise _invalid(f"timeout must be None or >= 0 seconds, not {timeout}")
    if timeout == 0:
        yield 0
        return
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        yield max(1, min(_SLICE_MS, int(math.ceil(left * 1000))))


def _free_stream(handle: _Handle, state: Optional[_CallbackState], wait: bool) -> None:
    def cancel(ptr):
        capi.lib().minerva_stream_cancel(ptr)

    ptr = handle.detach(cancel)
    if ptr is None:
        return
    lib = capi.lib()
    if wait or state is None:
        # Waits for the finish callback of a callback stream (never from inside a callback,
        # where minerva does not wait); at once for a pull-mode stream.
        lib.minerva_stream_free(ptr)
    else:
        lib.minerva_stream_release(ptr)
    if state is not None:
        with _report_lock:
            state.orphaned = True
            if state.finished:
                _report(state)


class Stream:
    """One generation, running from the moment it is created. Made by :meth:`Engine.stream`
    and :meth:`Engine.chat_stream`.

    Pull mode (no ``on_token``): iterate it for the text as it comes (``for piece in stream``),
    or call :meth:`read`, e.g. with ``timeout=0`` once a frame. Callback mode: ``on_token``
    gets each piece on the engine's thread; :meth:`wait` for the end.

    Every method may be called from any thread. :meth:`close` (also the end of a ``with``
    block, and the garbage collector) cancels the stream if it still runs and frees it; the
    methods then raise :class:`Error`. A stream stays readable after its engine is closed
    (it then ends with ``ERR_CANCELLED``)."""

    def __init__(self, engine: "Engine", ptr, state: Optional[_CallbackState]) -> None:
        self._engine = engine  # a stream keeps its engine alive
        self._h = _Handle(ptr, "stream")
        self._state = state
        self._finished = False
        self._cancel_asked = False
        self._finalizer = weakref.finalize(self, _free_stream, self._h, state, False)

    # -- pull mode ----------------------------------------------------------------------------

    def _read_once(self, timeout_ms: int) -> str:
        buf = ctypes.create_string_buffer(_READ_CAP)
        n = c_size_t(0)
        done = c_bool(False)
        with self._h as ptr:
            st = capi.lib().minerva_stream_read(ptr, buf, _READ_CAP, byref(n), byref(done),
                                                timeout_ms)
            if st != capi.OK:
                raise _error(st)
        if done.value:
            self._finished = True
        return buf.raw[: n.value].decode("utf-8", "replace")

    def read(self, timeout: Optional[float] = None) -> str:
        """The text that has arrived (whole characters), waiting up to ``timeout`` seconds
        for some (None: until there is text or the end; 0: never waits). "" on timeout and
        once :attr:`finished`. A callback-mode stream returns no text. Inside a minerva
        callback only ``timeout=0`` is allowed."""
        for ms in _slices(timeout):
            text = self._read_once(ms)
            if text or self._finished:
                return text
        return ""

    @property
    def finished(self) -> bool:
        """True once :meth:`read` has reported the end: the stream ended and all its text was
        read."""
        return self._finished

    def __iter__(self) -> Iterator[str]:
        """The pieces of text until the end. Leaving the loop early (``break``, an exception)
        cancels and closes the stream. At the end it raises what a callback raised, and
        :class:`Error` if the stream failed, or was cancelled by anything but this object's
        :meth:`cancel` (e.g. by its engine's :meth:`Engine.close`)."""
        return self._pieces()

    def _pieces(self) -> Iterator[str]:
        complete = False
        try:
            while True:
                text = self.read()
                if text:
                    yield text
                elif self._finished:
                    break
            complete = True
        finally:
            if not complete:
                self.close()
        self._raise_end()

    def read_all(self) -> str:
        """All the text until the end (see :meth:`__iter__` for what it raises)."""
        return "".join(self._pieces())

    def _raise_end(self) -> None:
        st = self._poll()
        if st is None:  # cannot happen once finished; keep the C API's word
            raise Error(capi.ERR_INTERNAL, "the stream reported its end but has not ended")
        self._raise_callback_error()
        if st == capi.OK:
            return
        if st == capi.ERR_CANCELLED:
            if self._cancel_asked:
                return
            why = "the stream was cancelled"
            if self._engine.closed:
                why += ": its engine was closed"
            raise Error(st, why)
        raise self._stream_error(st)

    def _stream_error(self, st: int) -> Error:
        return Error(st, self.error or status_str(st))

    def _raise_callback_error(self) -> None:
        state = self._state
        if state is not None and state.error is not None:
            with _report_lock:
                if state.raised:
                    return
                state.raised = True
            raise state.error

    # -- both modes ---------------------------------------------------------------------------

    def _poll(self, timeout_ms: int = 0) -> Optional[int]:
        lib = capi.lib()
        with self._h as ptr:
            st = lib.minerva_stream_wait(ptr, timeout_ms)
            if st == capi.ERR_INVALID_ARGUMENT:
                # Either the wait was refused (a timeout inside a callback) or the stream ended
                # with that status (a prompt that gives no tokens): the stats tell them apart.
                err = _error(st)
                stats = capi.minerva_stream_stats()
                stats.struct_size = ctypes.sizeof(stats)
                if (lib.minerva_stream_get_stats(ptr, byref(stats)) != capi.OK
                        or stats.finish_reason != capi.FINISH_ERROR):
                    raise err
        return None if st == capi.ERR_TIMEOUT else st

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Waits up to ``timeout`` seconds (None: no limit) for the end and its last callback.
        True when it ended, also when cancelled (``stats().finish_reason`` says so); False on
        timeout. Raises what a callback raised, and :class:`Error` when the stream failed.
        Inside a minerva callback only ``timeout=0`` is allowed."""
        for ms in _slices(timeout):
            st = self._poll(ms)
            if st is not None:
                self._raise_callback_error()
                if st not in (capi.OK, capi.ERR_CANCELLED):
                    raise self._stream_error(st)
                return True
        return False

    @property
    def status(self) -> Optional[Status]:
        """The final status once the stream has ended (``OK``, ``ERR_CANCELLED`` or the error
        it failed with); None while it runs. Never waits."""
        st = self._poll(0)
        return None if st is None else _enum(Status, st)

    def cancel(self) -> None:
        """Asks the stream to end (within one engine step); never waits, any thread, a callback
        too. Iterating it then ends without an error. No-op once closed."""
        self._cancel_asked = True
        try:
            with self._h as ptr:
                capi.lib().minerva_stream_cancel(ptr)
        except Error:
            pass

    def stats(self) -> StreamStats:
        """The stream's figures so far."""
        s = capi.minerva_stream_stats()
        s.struct_size = ctypes.sizeof(s)
        with self._h as ptr:
            _check(capi.lib().minerva_stream_get_stats(ptr, byref(s)))
        return StreamStats(s.prompt_tokens, s.cached_prompt_tokens, s.generated_tokens,
                           s.time_to_first_token_ms, s.prompt_tokens_per_second,
                           s.tokens_per_second, _enum(FinishReason, s.finish_reason))

    @property
    def error(self) -> str:
        """The message of the error the stream ended with; "" while it runs or without one."""
        with self._h as ptr:
            return (capi.lib().minerva_stream_error(ptr) or b"").decode("utf-8", "replace")

    def tool_calls_json(self) -> str:
        """Once ended: the tool calls of a chat reply as minerva's JSON text."""
        lib = capi.lib()
        with self._h as ptr:
            data = _two_call(lambda buf, cap, n: lib.minerva_stream_tool_calls(ptr, buf, cap, n),
                             1024)
        return data.decode("utf-8")

    def tool_calls(self) -> list:
        """Once ended: the tool calls of a chat reply, ``[{"id", "name", "arguments"}]``;
        give them back as the assistant message's ``tool_calls``. Raises
        ``ERR_INVALID_ARGUMENT`` while the stream runs."""
        return json.loads(self.tool_calls_json())

    def reasoning(self) -> str:
        """The reasoning of a chat reply so far: under ``reasoning="auto"``, what the template's
        format marks as reasoning (``<think>...</think>``, ...), kept out of the text; "" when
        there is none. Readable while the stream runs and after it ended."""
        lib = capi.lib()
        with self._h as ptr:
            data = _two_call(lambda buf, cap, n: lib.minerva_stream_reasoning(ptr, buf, cap, n))
        return data.decode("utf-8", "replace")

    # -- release ------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._h.closed

    def close(self) -> None:
        """Cancels the stream if it runs, waits until its callbacks can no longer run, and
        frees it (``minerva_stream_free``); a second call does nothing. Returns at once for a
        pull-mode stream. From inside a minerva callback it does not wait: the finish callback
        runs later on the engine thread. A callback's exception that was never raised to the
        caller goes to ``sys.unraisablehook``."""
        self._cancel_asked = True
        if self._finalizer.detach() is not None:
            _free_stream(self._h, self._state, True)

    def release(self) -> None:
        """Cancels the stream if it runs and gives the handle back at once, never waiting
        (``minerva_stream_release``): for a frame loop. Callbacks may still run on the engine
        thread until its finish callback."""
        self._cancel_asked = True
        if self._finalizer.detach() is not None:
            _free_stream(self._h, self._state, False)

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "callback" if self._state is not None else "pull"
        state = "closed" if self.closed else ("finished" if self._finished else "open")
        return f"<minerva.Stream {mode} {state}>"


# ---------------------------------------------------------------------------------------------
# Engines


def _free_engine(handle: _Handle) -> None:
    if _in_callback():
        # A garbage collection inside a minerva callback: minerva ignores freeing an engine from
        # its own thread, so free it from a thread of its own.
        threading.Thread(target=_free_engine, args=(handle,), name="minerva-engine-free",
                         daemon=True).start()
        return
    ptr = handle.detach()
    if ptr is not None:
        capi.lib().minerva_engine_free(ptr)


class Engine:
    """A loaded GGUF model and its engine thread, which decodes all of its streams together.

    ``Engine(path, **engine_params)`` takes the fields of ``minerva_engine_params`` as
    keywords: ``gpu_layers``, ``context_tokens``, ``max_streams``, ``threads``,
    ``batch_tokens``, ``use_mmap``, ``progress`` (a function of a float from 0 to 1, run
    on this thread while the model loads; returning False aborts the load), ``rpc_servers``
    ("host:port,host:port" or a list of "host:port": ``minerva-rpc-server`` machines whose
    devices take layers with the local GPU's, see docs/RPC.md; one that cannot be reached is
    ``ERR_BACKEND`` naming it, a malformed list ``ERR_INVALID_ARGUMENT``), and ``loras`` (a
    list of ``(path, scale)``: LoRA adapters made for this model, each with its default scale
    for every stream, at most 32; one that does not fit the model is ``ERR_MODEL`` naming the
    file, a missing file ``ERR_IO``).

    Every method may be called from any thread, concurrently. :meth:`close` (also the end of a
    ``with`` block, the garbage collector, and the interpreter's exit) cancels the engine's
    streams, waits for their callbacks and frees the model; it first waits for the calls in
    progress on other threads. Streams stay usable after it (they end with ``ERR_CANCELLED``).
    Callbacks run on the engine's thread, one at a time; a slow one holds back every stream of
    the engine. Inside a callback, calls that wait for the engine (:meth:`generate`,
    :meth:`chat`, :meth:`embed`, waits with a timeout) raise ``ERR_INVALID_ARGUMENT``, and
    closing the callback's own engine raises it too."""

    def __init__(self, path: Union[str, bytes, "os.PathLike[str]"], **engine_params: Any) -> None:
        self._h = _Handle(None, "engine")
        self._h._closing = True  # closed until loaded
        unknown = set(engine_params) - set(ENGINE_PARAMS)
        if unknown:
            raise _unknown("engine", unknown, ENGINE_PARAMS)
        lib = capi.lib()
        raw_path = os.fsencode(path) if isinstance(path, (str, os.PathLike)) else path
        raw_path = _cstr(raw_path, "path")
        p = capi.minerva_engine_params()
        lib.minerva_engine_params_init(byref(p), ctypes.sizeof(p))
        progress_error: list = []
        progress_cb = None
        loras, lora_paths = None, []
        for name, value in engine_params.items():
            if name == "gpu_layers":
                p.gpu_layers = _int(name, value, _I32_MIN, _I32_MAX)
            elif name in ("context_tokens", "max_streams", "threads", "batch_tokens"):
                setattr(p, name, _int(name, value, 0, _U32))
            elif name == "use_mmap":
                p.use_mmap = _bool(name, value)
            elif name == "rpc_servers":
                p.rpc_servers = _rpc_servers(value)  # the struct keeps the bytes alive
            elif name == "loras":
                loras, lora_paths = _loras(value)  # read during the call
                if loras is not None:
                    p.loras = ctypes.cast(loras, ctypes.POINTER(capi.minerva_lora))
                    p.lora_count = len(lora_paths)
            elif name == "progress" and value is not None:
                if not callable(value):
                    raise TypeError("progress must be callable")
                progress_cb = capi.progress_callback(self._progress_trampoline(value,
                                                                               progress_error))
                p.progress = progress_cb
        out = capi.engine_p()
        st = lib.minerva_engine_new(raw_path, byref(p), byref(out))
        del loras  # read during the call only
        if st != capi.OK:
            err = _error(st)
            if progress_error:
                raise progress_error[0]
            raise err
        self._h = _Handle(out, "engine")
        self._lora_count = len(lora_paths)
        self._finalizer = weakref.finalize(self, _free_engine, self._h)

    @staticmethod
    def _progress_trampoline(fn, errors: list):
        def trampoline(_user_data, progress):
            try:
                prev = _enter_callback(None)
                try:
                    r = fn(progress)
                finally:
                    _leave_callback(prev)
                return capi.CONTINUE if r is None or r else capi.STOP
            except BaseException as e:  # noqa: BLE001
                errors.append(e)
                return capi.STOP

        return trampoline

    # -- lifetime -----------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._h.closed

    def close(self) -> None:
        """Cancels the streams (their finish callbacks run), waits until no callback of the
        engine runs, and frees the model. A second call does nothing. Raises
        ``ERR_INVALID_ARGUMENT`` from a callback of this engine (an engine cannot wait for its
        own thread)."""
        if getattr(_tls, "engine", None) is self._h and not self._h.closed:
            raise _invalid("Engine.close() called from a callback of this engine; close it "
                           "from another thread")
        fin = getattr(self, "_finalizer", None)
        if fin is not None and fin.detach() is not None:
            ptr = self._h.detach()
            if ptr is not None:
                capi.lib().minerva_engine_free(ptr)

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        if self.closed:
            return "<minerva.Engine closed>"
        i = self.info()
        return f"<minerva.Engine {i.model_description!r} on {i.device_name!r}>"

    # -- information --------------------------------------------------------------------------

    def info(self) -> EngineInfo:
        """What the engine runs on and what it loaded."""
        i = capi.minerva_engine_info()
        i.struct_size = ctypes.sizeof(i)
        with self._h as ptr:
            _check(capi.lib().minerva_engine_get_info(ptr, byref(i)))

        def s(b: bytes) -> str:
            return b.decode("utf-8", "replace")

        return EngineInfo(_enum(DeviceKind, i.device_kind), s(i.device_name),
                          s(i.fallback_reason), i.gpu_layers, i.total_layers, i.context_tokens,
                          i.max_streams, i.threads, s(i.model_description), i.parameter_count,
                          i.file_bytes, i.vocab_size, i.train_context_tokens,
                          bool(i.has_chat_template), i.embedding_dims, s(i.cpu_variant),
                          s(i.devices), i.pinned_tokens, i.pinned_bytes)

    # -- generation ---------------------------------------------------------------------------

    def _start(self, new, params, on_token, on_finish) -> Stream:
        gp, keep = _generate_params(params, self._lora_count)
        state = None
        key = None
        if on_token is not None or on_finish is not None:
            if on_token is not None and not callable(on_token):
                raise TypeError("on_token must be callable")
            if on_finish is not None and not callable(on_finish):
                raise TypeError("on_finish must be callable")
            state = _CallbackState(on_token, on_finish, self)
            key = next(_keys)
            _live[key] = state
            gp.on_finish = _FINISH_CB
        out = capi.stream_p()
        try:
            with self._h as ptr:
                st = new(ptr, byref(gp), _TOKEN_CB if on_token is not None else _NO_TOKEN_CB, key,
                         byref(out))
                err = _error(st) if st != capi.OK else None
        except BaseException:
            if key is not None:
                _live.pop(key, None)
            raise
        if err is not None:
            if key is not None:
                _live.pop(key, None)  # no callback is ever called for a stream not created
            raise err
        del keep  # read during the call only
        return Stream(self, out, state)

    def stream(self, prompt: str, on_token: Optional[Callable[[str], Any]] = None, *,
               on_finish: Optional[Callable[[Status, FinishReason], Any]] = None,
               **params: Any) -> Stream:
        """Starts a generation and returns at once. ``params`` are the fields of
        ``minerva_generate_params``: ``max_tokens``, ``temperature``, ``top_k``, ``top_p``,
        ``min_p``, ``repeat_penalty``, ``repeat_last_n``, ``seed`` (None: random),
        ``stop`` (a str or a list), ``ignore_eos``, ``cache_prompt``, ``grammar``,
        ``json_schema`` (a JSON text or a dict), ``presence_penalty``, ``frequency_penalty``,
        ``logit_bias`` ({token: bias}; ``-math.inf`` bans), ``lora_scales`` (one scale per
        adapter of the engine's ``loras``, in their order; 0 turns one off; None: the
        engine's scales).

        Without ``on_token`` it is a pull-mode stream: iterate it. With it, ``on_token(text)``
        runs on the engine thread for each piece (returning False stops the stream), and
        ``on_finish(status, reason)``, also there, runs once at the end."""
        data = _cstr(prompt, "prompt")
        lib = capi.lib()
        return self._start(lambda e, gp, cb, ud, out: lib.minerva_stream_new(e, data, gp, cb,
                                                                               ud, out),
                           params, on_token, on_finish)

    def generate(self, prompt: str, **params: Any) -> str:
        """The whole text of one generation (the keywords of :meth:`stream`). Waits without
        holding the GIL; Ctrl-C cancels it. Raises :class:`Error` when the stream fails or is
        cancelled (e.g. by :meth:`close` on another thread)."""
        with self.stream(prompt, **params) as s:
            return s.read_all()

    def chat_stream(self, messages: Sequence[Mapping[str, Any]],
                    on_token: Optional[Callable[[str], Any]] = None, *,
                    on_finish: Optional[Callable[[Status, FinishReason], Any]] = None,
                    **params: Any) -> Stream:
        """A stream on a conversation rendered with the chat template. ``messages`` are dicts
        with ``role`` ("system", "user", "assistant", "tool"), ``content``, and where needed
        ``tool_calls`` (an assistant's calls, as :meth:`Stream.tool_calls` gave them) and
        ``tool_call_id`` (a tool turn's). ``params`` are those of :meth:`stream` plus the chat
        ones: ``chat_template``, ``tools`` (a list of OpenAI-style tools, or its JSON; also
        accepted as ``tools_json``), ``tool_choice`` ("auto", "none", "required"),
        ``add_generation_prompt``, ``template_kwargs`` (a dict of extra template variables,
        e.g. ``{"enable_thinking": False}``, or its JSON; also accepted as
        ``template_kwargs_json``), ``reasoning`` ("auto": kept apart from the text, read with
        :meth:`Stream.reasoning`; "none": left in the text), ``continue_final_message`` (the
        last message is an assistant turn the model continues), ``max_tool_calls`` (a
        "required" reply holds 1 to this many calls; 0: 4)."""
        chat_kw = {k: params.pop(k) for k in CHAT_PARAMS if k in params}
        chat = _chat_params(chat_kw)
        msgs, count = _messages(messages)
        lib = capi.lib()
        return self._start(
            lambda e, gp, cb, ud, out: lib.minerva_chat_stream_new(e, msgs, count, byref(chat),
                                                                   gp, cb, ud, out),
            params, on_token, on_finish)

    def chat(self, messages: Sequence[Mapping[str, Any]], **params: Any) -> ChatReply:
        """The assistant's reply to ``messages`` (see :meth:`chat_stream`), as a ``str`` that
        also carries ``.tool_calls``, ``.finish_reason`` and ``.reasoning``."""
        with self.chat_stream(messages, **params) as s:
            text = s.read_all()
            return ChatReply(text, s.tool_calls(), s.stats().finish_reason, s.reasoning())

    def format_chat(self, messages: Sequence[Mapping[str, Any]], **chat_params: Any) -> str:
        """The text the model sees for ``messages`` (``minerva_chat_format``); takes the chat
        keywords of :meth:`chat_stream`."""
        chat = _chat_params(chat_params)
        msgs, count = _messages(messages)
        lib = capi.lib()
        with self._h as ptr:
            data = _two_call(lambda buf, cap, n: lib.minerva_chat_format(ptr, msgs, count,
                                                                         byref(chat), buf, cap,
                                                                         n))
        return data.decode("utf-8")

    # -- tokens and embeddings ----------------------------------------------------------------

    def tokenize(self, text: str, add_special: bool = True, parse_special: bool = True) -> list:
        """The token ids of ``text``; with both flags (the default), exactly the tokens a
        stream on ``text`` starts from."""
        data = _cstr(text, "text")
        add = _bool("add_special", add_special)
        parse = _bool("parse_special", parse_special)
        lib = capi.lib()
        cap = len(data) + 8
        with self._h as ptr:
            for _ in range(3):
                arr = (c_int32 * cap)()
                n = c_size_t(0)
                st = lib.minerva_tokenize(ptr, data, add, parse, arr, cap, byref(n))
                if st == capi.ERR_BUFFER_TOO_SMALL and n.value > cap:
                    cap = n.value
                    continue
                _check(st)
                return arr[: n.value]
        raise Error(capi.ERR_INTERNAL, "the token count minerva asked for kept growing")

    def detokenize(self, tokens: Iterable[int], render_special: bool = False) -> str:
        """The text of ``tokens`` as the model would write it (special tokens shown with
        ``render_special``). Bytes of a character split across the tokens given are replaced
        with U+FFFD."""
        ids = [_int(f"tokens[{i}]", t, _I32_MIN, _I32_MAX) for i, t in enumerate(tokens)]
        arr = (c_int32 * len(ids))(*ids)
        render = _bool("render_special", render_special)
        lib = capi.lib()
        with self._h as ptr:
            data = _two_call(lambda buf, cap, n: lib.minerva_detokenize(ptr, arr, len(ids),
                                                                        render, buf, cap, n),
                             len(ids) * 8 + 16)
        return data.decode("utf-8", "replace")

    def embed(self, texts: Union[str, Sequence[str]], **embed_params: Any) -> list:
        """One vector (``info().embedding_dims`` floats) per text: ``list[list[float]]``. A
        single ``str`` is one text. Keywords: ``pooling`` ("default", "mean", "last", "cls"),
        ``normalize`` (default True: a dot product is the cosine similarity). Runs on the
        engine thread between generation steps; waits without holding the GIL."""
        unknown = set(embed_params) - set(EMBED_PARAMS)
        if unknown:
            raise _unknown("embed", unknown, EMBED_PARAMS)
        items = [texts] if isinstance(texts, (str, bytes)) else list(texts)
        enc = [_cstr(t, f"texts[{i}]") for i, t in enumerate(items)]
        arr = (c_char_p * len(enc))(*enc)
        lib = capi.lib()
        ep = capi.minerva_embed_params()
        lib.minerva_embed_params_init(byref(ep), ctypes.sizeof(ep))
        if embed_params.get("pooling") is not None:
            ep.pooling = _choice(Pooling, "pooling", embed_params["pooling"])
        if "normalize" in embed_params:
            ep.normalize = _bool("normalize", embed_params["normalize"])
        count = len(enc)
        with self._h as ptr:
            n = c_size_t(0)
            st = lib.minerva_embed(ptr, arr, count, byref(ep), None, 0, byref(n))
            if st not in (capi.OK, capi.ERR_BUFFER_TOO_SMALL):
                raise _error(st)
            size = n.value
            if count == 0 or size == 0:
                return [[] for _ in range(count)]
            out = (c_float * size)()
            _check(lib.minerva_embed(ptr, arr, count, byref(ep), out, size, byref(n)))
        dims = size // count
        return [out[i * dims:(i + 1) * dims] for i in range(count)]

    # -- game state ---------------------------------------------------------------------------

    def cache_prefill(self, prompt: str, pin: bool = False) -> None:
        """Computes ``prompt``'s KV into the prompt cache now, without generating: a later
        stream (or chat stream) whose prompt starts with it skips those tokens
        (``stats().cached_prompt_tokens``). End it where a prompt that continues it splits into
        the same tokens (at a newline, say). ``pin``: kept until the engine is closed, never
        evicted (at most 16 prefixes; ``info().pinned_tokens``, ``pinned_bytes``), else the
        cache of a stream slot that later prompts evict. Runs on the engine thread beside the
        streams and returns when the prefix is cached; raises ``ERR_INVALID_ARGUMENT`` inside a
        callback, ``ERR_CONTEXT_FULL`` beyond what the cache may pin."""
        data = _cstr(prompt, "prompt")
        flag = _bool("pin", pin)
        with self._h as ptr:
            _check(capi.lib().minerva_cache_prefill(ptr, data, flag))

    def cache_save(self) -> bytes:
        """Every cached prefix no stream is computing (the pinned ones and the stream slots'
        caches) as bytes for a game's save file, checked by :meth:`cache_load` for minerva's
        version, the model, ``context_tokens`` and the KV layout. Streams keep running; raises
        ``ERR_INVALID_ARGUMENT`` inside a callback."""
        lib = capi.lib()
        buf = None
        with self._h as ptr:
            n = c_size_t(0)
            st = lib.minerva_cache_save(ptr, None, 0, byref(n))
            while st == capi.ERR_BUFFER_TOO_SMALL:  # the cache may grow between the calls
                buf = ctypes.create_string_buffer(n.value)
                st = lib.minerva_cache_save(ptr, buf, len(buf), byref(n))
            _check(st)
        return b"" if buf is None else buf.raw[: n.value]

    def cache_load(self, data: Union[bytes, bytearray, memoryview]) -> None:
        """Loads what :meth:`cache_save` gave into this engine (same model, ``context_tokens``
        and minerva version; ``max_streams`` may differ): pinned prefixes stay pinned, the
        others become stream slots' caches. Bytes that are not a saved cache, or differ, raise
        ``ERR_INVALID_ARGUMENT`` naming what; more pinned prefixes than fit ``ERR_CONTEXT_FULL``.
        Streams keep running; raises ``ERR_INVALID_ARGUMENT`` inside a callback."""
        if isinstance(data, str) or not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data must be bytes, not {type(data).__name__}")
        raw = bytes(data)
        with self._h as ptr:
            _check(capi.lib().minerva_cache_load(ptr, raw, len(raw)))

    def cache_save_file(self, path: Union[str, bytes, "os.PathLike[str]"]) -> None:
        """:meth:`cache_save` into the file at ``path``, written whole or not at all;
        ``ERR_IO`` naming the file when it cannot be written."""
        data = _path(path, "path")
        with self._h as ptr:
            _check(capi.lib().minerva_cache_save_file(ptr, data))

    def cache_load_file(self, path: Union[str, bytes, "os.PathLike[str]"]) -> None:
        """:meth:`cache_load` from the file at ``path``; ``ERR_IO`` naming the file when it
        cannot be read."""
        data = _path(path, "path")
        with self._h as ptr:
            _check(capi.lib().minerva_cache_load_file(ptr, data))
