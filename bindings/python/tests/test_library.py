"""The library: loading, version, the declarations against minerva.h, logging, load progress."""

import ctypes
import os
import re
import shutil
import subprocess
import sys
import textwrap

import pytest

import minerva
from minerva import capi
from conftest import open_engine

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(HERE), "src")


def header_text():
    inc = os.environ.get("MINERVA_INCLUDE_DIR")
    if not inc:
        pytest.skip("MINERVA_INCLUDE_DIR is not set")
    with open(os.path.join(inc, "minerva.h"), encoding="utf-8") as f:
        return f.read()


def test_version_and_abi():
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", minerva.version())
    assert minerva.abi_version() == minerva.ABI_VERSION == 1
    assert minerva.status_str(minerva.Status.OK) == "ok"
    assert minerva.status_str(minerva.Status.ERR_IO)
    assert minerva.status_str(9999) == "unknown"
    assert isinstance(minerva.last_error(), str)


def test_every_function_and_constant_of_the_header_is_declared():
    h = header_text()
    functions = set(re.findall(r"^[a-z][\w \*]*?\b(minerva_\w+)\(", h, re.M))
    assert functions, "no function found in minerva.h"
    declared = {name for name, _, _ in capi.PROTOTYPES}
    assert functions == declared
    defines = dict(re.findall(r"^#define MINERVA_(\w+) (\d+)$", h, re.M))
    for name, value in defines.items():
        assert getattr(capi, name) == int(value), name
    assert capi.SEED_RANDOM == 2**64 - 1
    assert "#define MINERVA_SEED_RANDOM UINT64_MAX" in h


STRUCTS = [
    "minerva_engine_params", "minerva_engine_info", "minerva_logit_bias",
    "minerva_generate_params", "minerva_stream_stats", "minerva_chat_params",
    "minerva_chat_message", "minerva_embed_params", "minerva_lora",
]


def test_struct_layouts_match_the_header(tmp_path):
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        pytest.skip("no C compiler to read the header's layouts")
    header_text()
    lines = []
    for name in STRUCTS:
        cls = getattr(capi, name)
        lines.append(f'printf("{name} size %zu\\n", sizeof(struct {name}));')
        for field, _ in cls._fields_:
            lines.append(f'printf("{name}.{field} %zu\\n", offsetof(struct {name}, {field}));')
    src = tmp_path / "layout.c"
    src.write_text("#include <stddef.h>\n#include <stdio.h>\n#include <minerva.h>\n"
                   "int main(void) {\n" + "\n".join(lines) + "\nreturn 0;\n}\n")
    exe = tmp_path / "layout"
    subprocess.run([cc, "-I", os.environ["MINERVA_INCLUDE_DIR"], str(src), "-o", str(exe)],
                   check=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    expected = {}
    for line in out.splitlines():
        key, value = line.rsplit(" ", 1)
        expected[key] = int(value)
    for name in STRUCTS:
        cls = getattr(capi, name)
        assert ctypes.sizeof(cls) == expected[f"{name} size"], name
        for field, _ in cls._fields_:
            assert getattr(cls, field).offset == expected[f"{name}.{field}"], f"{name}.{field}"


def run_python(code, env_changes, timeout=120):
    env = dict(os.environ)
    for k, v in env_changes.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    env["PYTHONPATH"] = SRC
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                          capture_output=True, text=True, timeout=timeout)


LOAD = "import minerva; print(minerva.library_path()); print(minerva.version())"


def loads_without_help():
    """Whether the loader finds libminerva on its own (an installed prefix)."""
    r = run_python(LOAD, {"MINERVA_LIBRARY": None, "LD_LIBRARY_PATH": None,
                          "PKG_CONFIG_PATH": "/nonexistent"})
    return r.returncode == 0


def test_lookup_minerva_library_is_final():
    r = run_python(LOAD, {"MINERVA_LIBRARY": "/nonexistent/libminerva.so"})
    assert r.returncode != 0
    assert "MINERVA_LIBRARY" in r.stderr and "OSError" in r.stderr


def test_lookup_by_the_dynamic_loader():
    lib_dir = os.environ.get("MINERVA_LIB_DIR") or pytest.skip("MINERVA_LIB_DIR is not set")
    r = run_python(LOAD, {"MINERVA_LIBRARY": None, "LD_LIBRARY_PATH": lib_dir})
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] in ("libminerva.so.1", "libminerva.so")


def test_lookup_through_pkg_config(tmp_path):
    lib_dir = os.environ.get("MINERVA_LIB_DIR") or pytest.skip("MINERVA_LIB_DIR is not set")
    if shutil.which("pkg-config") is None:
        pytest.skip("no pkg-config")
    if loads_without_help():
        pytest.skip("libminerva is installed where the loader finds it first")
    (tmp_path / "minerva.pc").write_text(
        f"libdir={lib_dir}\nincludedir=/usr/include\n\nName: minerva\nDescription: test\n"
        "Version: 0.1.0\nLibs: -L${libdir} -lminerva\nCflags: -I${includedir}\n")
    r = run_python(LOAD, {"MINERVA_LIBRARY": None, "LD_LIBRARY_PATH": None,
                          "PKG_CONFIG_PATH": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    assert os.path.dirname(r.stdout.splitlines()[0]) == lib_dir


def test_lookup_failure_names_what_was_tried():
    if loads_without_help():
        pytest.skip("libminerva is installed where the loader finds it")
    r = run_python(LOAD, {"MINERVA_LIBRARY": None, "LD_LIBRARY_PATH": None,
                          "PKG_CONFIG_PATH": "/nonexistent"})
    assert r.returncode != 0
    assert "libminerva not found" in r.stderr and "libminerva.so" in r.stderr


def test_log_callback(model_path):
    lines = []
    minerva.set_log_callback(lambda level, msg: lines.append((level, msg)), minerva.LogLevel.INFO)
    try:
        open_engine(model_path).close()
    finally:
        minerva.set_log_callback(None)
    assert lines, "no log line at INFO while loading a model"
    assert all(isinstance(level, minerva.LogLevel) and level >= minerva.LogLevel.INFO
               for level, _ in lines)
    assert all(isinstance(msg, str) and msg and not msg.endswith("\n") for _, msg in lines)
    count = len(lines)
    open_engine(model_path).close()
    assert len(lines) == count, "the log callback was called after it was replaced"


def test_log_callback_exception_goes_to_unraisablehook(model_path, monkeypatch):
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: seen.append(u.exc_value))

    def bad(level, msg):
        raise ValueError("log callback failed")

    minerva.set_log_callback(bad, "info")
    try:
        open_engine(model_path).close()
    finally:
        minerva.set_log_callback(None)
    assert seen and all(isinstance(e, ValueError) for e in seen)
    with pytest.raises(minerva.Error) as e:
        minerva.set_log_callback(print, "loud")
    assert e.value.status == minerva.Status.ERR_INVALID_ARGUMENT


def test_progress_callback(model_path):
    seen = []
    open_engine(model_path, progress=seen.append).close()
    assert seen and all(0.0 <= p <= 1.0 for p in seen)
    assert seen == sorted(seen)


def test_progress_callback_stops_the_load(model_path):
    with pytest.raises(minerva.Error) as e:
        open_engine(model_path, progress=lambda p: False)
    assert e.value.status == minerva.Status.ERR_CANCELLED


def test_progress_callback_exception_is_raised_after_the_load(model_path):
    class Boom(Exception):
        pass

    def progress(p):
        raise Boom("from progress")

    with pytest.raises(Boom):
        open_engine(model_path, progress=progress)


def test_exit_with_live_streams_and_callbacks(model_path):
    # Streams in both modes still generating, a log callback set and a daemon thread reading
    # when the interpreter exits: it must exit cleanly (engines are closed at exit).
    code = f"""
        import threading, minerva
        minerva.set_log_callback(lambda level, msg: None, minerva.LogLevel.DEBUG)
        e = minerva.Engine({model_path!r}, context_tokens=256, threads=1)
        pieces = []
        s1 = e.stream("Once upon a time", pieces.append, ignore_eos=True, max_tokens=0)
        s2 = e.stream("The dragon said", ignore_eos=True, max_tokens=0)
        def reader():
            try:
                for p in s2:
                    pass
            except minerva.Error:  # the stream is closed at exit under the thread
                pass
        t = threading.Thread(target=reader, daemon=True)
        t.start()
        while not pieces:
            s1.wait(0.01)
        print("exiting")
    """
    r = run_python(code, {}, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "exiting" in r.stdout
    assert "Traceback" not in r.stderr and "Fatal" not in r.stderr, r.stderr
