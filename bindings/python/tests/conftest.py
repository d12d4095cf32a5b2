"""Fixtures: engines on the real model given by the environment (see test.sh)."""

import faulthandler
import gc
import os
import subprocess
import sys
import time

import pytest

import minerva
from minerva import _core

# Tests use one decoding thread: on a small machine shared with other work, llama.cpp's threads
# spin while they wait for each other, and two of them on a busy 2-core machine decode tens of
# times slower than one.
THREADS = int(os.environ.get("MINERVA_TEST_THREADS", "1"))
# Short greedy generations: deterministic and fast on the tiny model.
GREEDY = dict(temperature=0.0, max_tokens=8, cache_prompt=False)
# A test that has not ended after this long has hung: dump every thread's stack and exit.
HANG_SECS = 180


def _env(name):
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set (run the tests through test.sh)")
    return value


@pytest.fixture(scope="session")
def model_path():
    return _env("MINERVA_MODEL")


@pytest.fixture(scope="session")
def chat_model_path():
    return _env("MINERVA_CHAT_MODEL")


@pytest.fixture(scope="session")
def lora_dir():
    """The test LoRA adapters' folder (voice.gguf, calm.gguf, wrong-shape.gguf):
    $MINERVA_LORA_DIR, else what scripts/lora-adapters.sh prints (it writes them once)."""
    value = os.environ.get("MINERVA_LORA_DIR")
    if value:
        return value
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir,
                          os.pardir, "scripts", "lora-adapters.sh")
    out = subprocess.run([script], capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        pytest.fail(f"scripts/lora-adapters.sh failed:\n{out.stderr}")
    return out.stdout.strip()


def open_engine(path, **kw):
    kw.setdefault("context_tokens", 1024)
    kw.setdefault("max_streams", 4)
    kw.setdefault("threads", THREADS)
    return minerva.Engine(path, **kw)


@pytest.fixture(scope="session")
def engine(model_path):
    with open_engine(model_path) as e:
        yield e


@pytest.fixture(scope="session")
def chat_engine(chat_model_path):
    with open_engine(chat_model_path) as e:
        yield e


@pytest.fixture(autouse=True)
def _watchdog():
    faulthandler.dump_traceback_later(HANG_SECS, exit=True, file=sys.stderr)
    yield
    faulthandler.cancel_dump_traceback_later()


def wait_until(predicate, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        gc.collect()
        time.sleep(0.01)


def live_callback_streams():
    """Callback streams whose finish callback has not run yet."""
    return len(_core._live)
