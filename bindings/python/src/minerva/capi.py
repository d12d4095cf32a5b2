"""The C API of minerva (include/minerva.h) as ctypes declarations, and the library's loading.

This is the low level: the structs, callback types, constants and prototypes exactly as the
header has them. Most programs use ``minerva.Engine`` instead; a program that needs a call the
high level does not offer can use ``minerva.capi.lib()`` with these declarations.

The library is found in this order (the first that loads wins):

1. ``$MINERVA_LIBRARY``: a full path to the shared library. When it is set and fails to load,
   that is the error: no other place is tried.
2. The library inside this package (``minerva/_native/``), where a wheel of ``make wheel`` puts
   it with its private folder: such a wheel needs nothing else installed.
3. ``libminerva.so.1`` (the ABI version), then ``libminerva.so`` (``libminerva.1.dylib``, ``libminerva.dylib`` on
   macOS; ``minerva.dll`` on Windows) by the dynamic loader's own search: ``LD_LIBRARY_PATH``
   (``DYLD_LIBRARY_PATH``), then the ``ld.so`` cache, which holds an installed prefix such as
   ``/usr/local/lib`` once ``ldconfig`` has run.
4. ``ctypes.util.find_library("minerva")``.
5. The ``libdir`` of ``pkg-config minerva`` (honours ``PKG_CONFIG_PATH``).

Every call goes through ``ctypes.CDLL``, which releases the GIL for the length of the call, so a
thread blocked in ``minerva_stream_read`` or ``minerva_stream_wait`` never holds back other
Python threads, and the engine thread can take the GIL to run a Python callback meanwhile.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import subprocess
import sys
import threading
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_bool,
    c_char,
    c_char_p,
    c_double,
    c_float,
    c_int32,
    c_size_t,
    c_uint32,
    c_uint64,
    c_void_p,
)

#: The ABI version this module declares (``MINERVA_ABI_VERSION`` of the header it follows).
ABI_VERSION = 1
#: The ``seed`` that asks for a new random seed for each stream.
SEED_RANDOM = 0xFFFFFFFFFFFFFFFF

# minerva_status
OK = 0
ERR_INVALID_ARGUMENT = 1
ERR_IO = 2
ERR_MODEL = 3
ERR_OUT_OF_MEMORY = 4
ERR_CONTEXT_FULL = 5
ERR_CANCELLED = 6
ERR_TIMEOUT = 7
ERR_BACKEND = 8
ERR_INTERNAL = 9
ERR_BUFFER_TOO_SMALL = 10
# minerva_control
CONTINUE = 0
STOP = 1
# minerva_device_kind
DEVICE_CPU = 0
DEVICE_CUDA = 1
DEVICE_METAL = 2
DEVICE_VULKAN = 3
DEVICE_OTHER = 4
DEVICE_RPC = 5
# minerva_finish_reason
FINISH_RUNNING = 0
FINISH_LENGTH = 1
FINISH_STOP = 2
FINISH_EOS = 3
FINISH_CANCELLED = 4
FINISH_ERROR = 5
# minerva_tool_choice
TOOL_CHOICE_AUTO = 0
TOOL_CHOICE_NONE = 1
TOOL_CHOICE_REQUIRED = 2
# minerva_reasoning
REASONING_AUTO = 0
REASONING_NONE = 1
# minerva_pooling
POOLING_DEFAULT = 0
POOLING_MEAN = 1
POOLING_LAST = 2
POOLING_CLS = 3
# minerva_log_level
LOG_DEBUG = 0
LOG_INFO = 1
LOG_WARN = 2
LOG_ERROR = 3
LOG_NONE = 4

minerva_status = c_uint32
minerva_control = c_uint32
minerva_token = c_int32

# Callback types. Text arrives as a raw pointer plus length (not c_char_p, which would copy up
# to a NUL and hide the length the library gives).
progress_callback = CFUNCTYPE(minerva_control, c_void_p, c_float)
finish_callback = CFUNCTYPE(None, c_void_p, minerva_status, c_uint32)
token_callback = CFUNCTYPE(minerva_control, c_void_p, c_void_p, c_size_t)
log_callback = CFUNCTYPE(None, c_void_p, c_uint32, c_void_p)


class minerva_engine(Structure):
    """Opaque."""


class minerva_stream(Structure):
    """Opaque."""


engine_p = POINTER(minerva_engine)
stream_p = POINTER(minerva_stream)


class minerva_lora(Structure):
    """Added in 0.3: a LoRA adapter of ``minerva_engine_params.loras``."""

    _fields_ = [("path", c_char_p), ("scale", c_float)]


class minerva_engine_params(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("gpu_layers", c_int32),
        ("context_tokens", c_uint32),
        ("max_streams", c_uint32),
        ("threads", c_uint32),
        ("batch_tokens", c_uint32),
        ("use_mmap", c_bool),
        ("progress", progress_callback),
        ("progress_user_data", c_void_p),
        ("rpc_servers", c_char_p),
        # Added in 0.3.
        ("loras", POINTER(minerva_lora)),
        ("lora_count", c_size_t),
    ]


class minerva_engine_info(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("device_kind", c_uint32),
        ("device_name", c_char * 128),
        ("fallback_reason", c_char * 256),
        ("gpu_layers", c_int32),
        ("total_layers", c_int32),
        ("context_tokens", c_uint32),
        ("max_streams", c_uint32),
        ("threads", c_uint32),
        ("model_description", c_char * 128),
        ("parameter_count", c_uint64),
        ("file_bytes", c_uint64),
        ("vocab_size", c_uint32),
        ("train_context_tokens", c_uint32),
        ("has_chat_template", c_bool),
        ("embedding_dims", c_uint32),
        ("cpu_variant", c_char * 64),
        ("devices", c_char * 256),
        # Added in 0.3.
        ("pinned_tokens", c_uint64),
        ("pinned_bytes", c_uint64),
    ]


class minerva_logit_bias(Structure):
    _fields_ = [("token", c_int32), ("bias", c_float)]


class minerva_generate_params(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("max_tokens", c_uint32),
        ("temperature", c_float),
        ("top_k", c_int32),
        ("top_p", c_float),
        ("min_p", c_float),
        ("repeat_penalty", c_float),
        ("repeat_last_n", c_uint32),
        ("seed", c_uint64),
        ("stop", POINTER(c_char_p)),
        ("stop_count", c_size_t),
        ("ignore_eos", c_bool),
        ("cache_prompt", c_bool),
        ("on_finish", finish_callback),
        ("grammar", c_char_p),
        ("json_schema", c_char_p),
        ("presence_penalty", c_float),
        ("frequency_penalty", c_float),
        ("logit_bias", POINTER(minerva_logit_bias)),
        ("logit_bias_count", c_size_t),
        # Added in 0.3.
        ("lora_scales", POINTER(c_float)),
    ]


class minerva_stream_stats(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("prompt_tokens", c_uint32),
        ("cached_prompt_tokens", c_uint32),
        ("generated_tokens", c_uint32),
        ("time_to_first_token_ms", c_double),
        ("prompt_tokens_per_second", c_double),
        ("tokens_per_second", c_double),
        ("finish_reason", c_uint32),
    ]


class minerva_chat_params(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("chat_template", c_char_p),
        ("tools_json", c_char_p),
        ("tool_choice", c_uint32),
        ("add_generation_prompt", c_bool),
        # Added in 0.3.
        ("template_kwargs_json", c_char_p),
        ("reasoning", c_uint32),
        ("continue_final_message", c_bool),
        ("max_tool_calls", c_uint32),
    ]


class minerva_chat_message(Structure):
    _fields_ = [
        ("role", c_char_p),
        ("content", c_char_p),
        ("tool_calls_json", c_char_p),
        ("tool_call_id", c_char_p),
    ]


class minerva_embed_params(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("pooling", c_uint32),
        ("normalize", c_bool),
    ]


#: Every function of the header: name, result type, argument types.
PROTOTYPES = [
    ("minerva_status_str", c_char_p, [minerva_status]),
    ("minerva_last_error", c_char_p, []),
    ("minerva_abi_version", c_uint32, []),
    ("minerva_version", c_char_p, []),
    ("minerva_engine_params_init", None, [POINTER(minerva_engine_params), c_uint32]),
    ("minerva_engine_new", minerva_status,
     [c_char_p, POINTER(minerva_engine_params), POINTER(engine_p)]),
    ("minerva_engine_get_info", minerva_status, [engine_p, POINTER(minerva_engine_info)]),
    ("minerva_engine_free", None, [engine_p]),
    ("minerva_generate_params_init", None, [POINTER(minerva_generate_params), c_uint32]),
    ("minerva_stream_new", minerva_status,
     [engine_p, c_char_p, POINTER(minerva_generate_params), token_callback, c_void_p,
      POINTER(stream_p)]),
    ("minerva_stream_read", minerva_status,
     [stream_p, c_void_p, c_size_t, POINTER(c_size_t), POINTER(c_bool), c_int32]),
    ("minerva_stream_wait", minerva_status, [stream_p, c_int32]),
    ("minerva_stream_cancel", None, [stream_p]),
    ("minerva_stream_get_stats", minerva_status, [stream_p, POINTER(minerva_stream_stats)]),
    ("minerva_stream_error", c_char_p, [stream_p]),
    ("minerva_stream_free", None, [stream_p]),
    ("minerva_stream_release", None, [stream_p]),
    ("minerva_generate", minerva_status,
     [engine_p, c_char_p, POINTER(minerva_generate_params), token_callback, c_void_p,
      POINTER(minerva_stream_stats)]),
    ("minerva_tokenize", minerva_status,
     [engine_p, c_char_p, c_bool, c_bool, POINTER(minerva_token), c_size_t, POINTER(c_size_t)]),
    ("minerva_detokenize", minerva_status,
     [engine_p, POINTER(minerva_token), c_size_t, c_bool, c_void_p, c_size_t,
      POINTER(c_size_t)]),
    ("minerva_cache_prefill", minerva_status, [engine_p, c_char_p, c_bool]),
    ("minerva_cache_save", minerva_status, [engine_p, c_void_p, c_size_t, POINTER(c_size_t)]),
    ("minerva_cache_load", minerva_status, [engine_p, c_void_p, c_size_t]),
    ("minerva_cache_save_file", minerva_status, [engine_p, c_char_p]),
    ("minerva_cache_load_file", minerva_status, [engine_p, c_char_p]),
    ("minerva_chat_params_init", None, [POINTER(minerva_chat_params), c_uint32]),
    ("minerva_chat_format", minerva_status,
     [engine_p, POINTER(minerva_chat_message), c_size_t, POINTER(minerva_chat_params), c_void_p,
      c_size_t, POINTER(c_size_t)]),
    ("minerva_chat_stream_new", minerva_status,
     [engine_p, POINTER(minerva_chat_message), c_size_t, POINTER(minerva_chat_params),
      POINTER(minerva_generate_params), token_callback, c_void_p, POINTER(stream_p)]),
    ("minerva_stream_tool_calls", minerva_status,
     [stream_p, c_void_p, c_size_t, POINTER(c_size_t)]),
    ("minerva_stream_reasoning", minerva_status,
     [stream_p, c_void_p, c_size_t, POINTER(c_size_t)]),
    ("minerva_embed_params_init", None, [POINTER(minerva_embed_params), c_uint32]),
    ("minerva_embed", minerva_status,
     [engine_p, POINTER(c_char_p), c_size_t, POINTER(minerva_embed_params), POINTER(c_float),
      c_size_t, POINTER(c_size_t)]),
    ("minerva_set_log_callback", None, [log_callback, c_void_p, c_uint32]),
]


def _candidate_names() -> list[str]:
    if sys.platform == "darwin":
        return [f"libminerva.{ABI_VERSION}.dylib", "libminerva.dylib"]
    if sys.platform == "win32":
        return ["minerva.dll", "libminerva.dll"]
    return [f"libminerva.so.{ABI_VERSION}", "libminerva.so"]


def _pkg_config_libdir() -> str | None:
    exe = shutil.which("pkg-config")
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, "--variable=libdir", "minerva"],
            capture_output=True, text=True, timeout=10, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    libdir = out.stdout.strip()
    return libdir if out.returncode == 0 and libdir else None


def _open() -> tuple[ctypes.CDLL, str]:
    explicit = os.environ.get("MINERVA_LIBRARY")
    if explicit:
        try:
            return ctypes.CDLL(explicit), explicit
        except OSError as e:
            raise OSError(f"minerva: MINERVA_LIBRARY={explicit!r} does not load: {e}") from None
    tried = []
    bundled = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_native")
    for name in _candidate_names():
        path = os.path.join(bundled, name)
        if os.path.exists(path):
            try:
                return ctypes.CDLL(path), path
            except OSError as e:
                tried.append(f"{path} ({e})")
    for name in _candidate_names():
        try:
            return ctypes.CDLL(name), name
        except OSError as e:
            tried.append(f"{name} ({e})")
    found = ctypes.util.find_library("minerva")
    if found:
        try:
            return ctypes.CDLL(found), found
        except OSError as e:
            tried.append(f"find_library: {found} ({e})")
    else:
        tried.append("ctypes.util.find_library('minerva'): not found")
    libdir = _pkg_config_libdir()
    if libdir:
        for name in _candidate_names():
            path = os.path.join(libdir, name)
            if os.path.exists(path):
                try:
                    return ctypes.CDLL(path), path
                except OSError as e:
                    tried.append(f"{path} ({e})")
        tried.append(f"pkg-config libdir {libdir}: no library there")
    else:
        tried.append("pkg-config minerva: not found")
    raise OSError(
        "minerva: libminerva not found; set MINERVA_LIBRARY to its full path, or install it "
        "where the dynamic loader looks. Tried: " + "; ".join(tried)
    )


def _declare(cdll: ctypes.CDLL) -> None:
    for name, restype, argtypes in PROTOTYPES:
        fn = getattr(cdll, name)
        fn.restype = restype
        fn.argtypes = argtypes


_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_path: str | None = None


def lib() -> ctypes.CDLL:
    """The loaded library, with every prototype declared. Loaded on the first call (see the
    module's documentation for the search order); raises ``OSError`` when it cannot be found,
    does not load, or has another ABI version than ``ABI_VERSION``."""
    global _lib, _path
    if _lib is not None:
        return _lib
    with _lock:
        if _lib is None:
            cdll, path = _open()
            try:
                _declare(cdll)
            except AttributeError as e:
                raise OSError(f"minerva: {path} lacks a function of minerva.h: {e}") from None
            abi = cdll.minerva_abi_version()
            if abi != ABI_VERSION:
                raise OSError(
                    f"minerva: {path} has ABI version {abi}; this binding is written for "
                    f"ABI version {ABI_VERSION}"
                )
            _path = path
            _lib = cdll
    return _lib


def library_path() -> str:
    """What the library was loaded from: the path or the name given to the dynamic loader.
    Loads the library if it is not yet loaded."""
    lib()
    assert _path is not None
    return _path
