"""Game state (0.3): prefill and pin, save and load the prompt cache as bytes and files; LoRA
adapters and their scales per stream."""

import os
import threading

import pytest

import minerva
from conftest import GREEDY, open_engine

Status = minerva.Status

PERSONA = ("You are Ilse, the ferrywoman of the northern lake.\n"
           "Ilse knows every current, every drowned village under the water, and every "
           "traveller who ever crossed without paying.\n")
ASK = PERSONA + "Traveller: How much for the crossing?\nIlse:"
LINE = dict(temperature=0.0, max_tokens=12, cache_prompt=True)


def line(engine):
    with engine.stream(ASK, **LINE) as s:
        text = s.read_all()
        return text, s.stats().cached_prompt_tokens


def test_prefill_save_and_load_into_another_engine(model_path, tmp_path):
    with open_engine(model_path, max_streams=2, context_tokens=512) as a:
        assert a.info().pinned_tokens == 0 and a.info().pinned_bytes == 0
        a.cache_prefill(PERSONA, pin=True)
        info = a.info()
        assert info.pinned_tokens > 20 and info.pinned_bytes > 0
        a.cache_prefill(PERSONA, True)  # pinned already: not pinned twice
        assert a.info().pinned_tokens == info.pinned_tokens
        data = a.cache_save()
        assert isinstance(data, bytes) and len(data) > 100
        in_place, cached = line(a)
        assert cached + 2 >= info.pinned_tokens

        with open_engine(model_path, max_streams=2, context_tokens=512) as b:
            running = b.stream("Meanwhile:", **dict(GREEDY, max_tokens=32))
            b.cache_load(data)  # with a stream running
            running.read_all()
            running.close()
            assert b.info().pinned_tokens == info.pinned_tokens
            loaded, cached = line(b)
            assert cached > 0 and cached + 2 >= info.pinned_tokens
            assert loaded == in_place
            b.cache_load(bytearray(data))  # held already: nothing twice
            assert b.info().pinned_tokens == info.pinned_tokens

        # This save holds the line's own cells too: the line now reuses all but its last token,
        # as it does again in `a` from the same cells (the first time its 13 tokens were
        # computed together, which may differ in the last bits).
        path = tmp_path / "save.bin"
        a.cache_save_file(path)
        assert path.stat().st_size > 100
        again, cached_again = line(a)
        with open_engine(model_path, max_streams=2, context_tokens=512) as c:
            c.cache_load_file(str(path))
            assert c.info().pinned_tokens == info.pinned_tokens
            text, cached = line(c)
            assert text == again and cached == cached_again > info.pinned_tokens


def test_cache_errors(model_path, tmp_path):
    with open_engine(model_path, max_streams=2, context_tokens=512) as a:
        a.cache_prefill(PERSONA, pin=True)
        data = bytearray(a.cache_save())
    with open_engine(model_path, max_streams=1, context_tokens=512) as e:
        # One stream of 512: no room to pin beside it.
        with pytest.raises(minerva.Error) as err:
            e.cache_load(bytes(data))
        assert err.value.status == Status.ERR_CONTEXT_FULL
        with pytest.raises(minerva.Error) as err:
            e.cache_prefill(PERSONA, pin=True)
        assert err.value.status == Status.ERR_CONTEXT_FULL
        data[len(data) // 2] ^= 1
        with pytest.raises(minerva.Error) as err:
            e.cache_load(data)
        assert err.value.status == Status.ERR_INVALID_ARGUMENT
        assert "checksum" in err.value.message
        for junk in (b"", b"junk", bytes(data[: len(data) // 2])):
            with pytest.raises(minerva.Error) as err:
                e.cache_load(junk)
            assert err.value.status == Status.ERR_INVALID_ARGUMENT
        missing = tmp_path / "no" / "such" / "dir" / "save.bin"
        with pytest.raises(minerva.Error) as err:
            e.cache_load_file(missing)
        assert err.value.status == Status.ERR_IO and "save.bin" in err.value.message
        with pytest.raises(minerva.Error) as err:
            e.cache_save_file(missing)
        assert err.value.status == Status.ERR_IO
        for bad in ("", "\udcff bad utf-8", "a\0b"):
            with pytest.raises(minerva.Error) as err:
                e.cache_prefill(bad)
            assert err.value.status == Status.ERR_INVALID_ARGUMENT
        with pytest.raises(TypeError):
            e.cache_load("not bytes")
        with pytest.raises(TypeError):
            e.cache_prefill(PERSONA, pin="yes")
        # Unpinned: the cache of a stream slot, which the next stream reuses.
        e.cache_prefill(PERSONA)
        assert e.info().pinned_tokens == 0
        assert line(e)[1] > 0
    for call in (lambda: e.cache_prefill("x"), e.cache_save, lambda: e.cache_load(b"x"),
                 lambda: e.cache_save_file(tmp_path / "x"),
                 lambda: e.cache_load_file(tmp_path / "x")):
        with pytest.raises(minerva.Error) as err:
            call()
        assert err.value.status == Status.ERR_INVALID_ARGUMENT and "closed" in err.value.message


def test_cache_calls_inside_a_callback_are_refused(engine):
    seen = {}

    def on_token(_text):
        for name, call in [("prefill", lambda: engine.cache_prefill("x")),
                           ("save", engine.cache_save),
                           ("load", lambda: engine.cache_load(b"junk"))]:
            try:
                call()
                seen[name] = None
            except minerva.Error as e:
                seen[name] = e.status
        return False

    with engine.stream("Hello", on_token, **GREEDY) as s:
        assert s.wait(60)
    assert seen == {"prefill": Status.ERR_INVALID_ARGUMENT,
                    "save": Status.ERR_INVALID_ARGUMENT,
                    "load": Status.ERR_INVALID_ARGUMENT}


def test_save_while_streams_run_on_other_threads(model_path):
    with open_engine(model_path, max_streams=2, context_tokens=512) as e:
        e.cache_prefill(PERSONA, pin=True)
        stop = threading.Event()

        def talk():
            while not stop.is_set():
                e.generate("The guard said", temperature=0.0, max_tokens=4)

        t = threading.Thread(target=talk)
        t.start()
        try:
            sizes = {len(e.cache_save()) for _ in range(5)}
        finally:
            stop.set()
            t.join()
        assert all(n > 100 for n in sizes)


LORA_PROMPT = "The old lighthouse keeper said"
LORA_LINE = dict(temperature=0.0, max_tokens=24, cache_prompt=False)


def test_an_adapter_changes_the_text_and_scale_zero_turns_it_off(model_path, lora_dir):
    voice = os.path.join(lora_dir, "voice.gguf")
    with open_engine(model_path, max_streams=1, context_tokens=512) as plain_engine:
        plain = plain_engine.generate(LORA_PROMPT, **LORA_LINE)
    with open_engine(model_path, max_streams=2, context_tokens=512,
                     loras=[(voice, 1.0)]) as e:
        adapted = e.generate(LORA_PROMPT, **LORA_LINE)
        off = e.generate(LORA_PROMPT, lora_scales=[0.0], **LORA_LINE)
        assert adapted != off
        assert off == plain
        assert e.generate(LORA_PROMPT, lora_scales=(1.0,), **LORA_LINE) == adapted
        assert e.generate(LORA_PROMPT, lora_scales=None, **LORA_LINE) == adapted
        with pytest.raises(minerva.Error) as err:  # one scale per adapter: checked here
            e.generate(LORA_PROMPT, lora_scales=[1.0, 0.5], **LORA_LINE)
        assert err.value.status == Status.ERR_INVALID_ARGUMENT
        assert "lora_scales" in err.value.message
        with pytest.raises(minerva.Error) as err:
            e.generate(LORA_PROMPT, lora_scales=[], **LORA_LINE)
        assert err.value.status == Status.ERR_INVALID_ARGUMENT
        with pytest.raises(minerva.Error) as err:  # minerva checks the values
            e.generate(LORA_PROMPT, lora_scales=[float("nan")], **LORA_LINE)
        assert err.value.status == Status.ERR_INVALID_ARGUMENT
        with pytest.raises(TypeError):
            e.generate(LORA_PROMPT, lora_scales=["1"], **LORA_LINE)
    with open_engine(model_path, max_streams=1, context_tokens=512,
                     loras={voice: 0.0}) as e:  # a dict; default scale 0: off
        assert e.generate(LORA_PROMPT, **LORA_LINE) == plain
        assert e.generate(LORA_PROMPT, lora_scales=[1.0], **LORA_LINE) == adapted


def test_adapters_that_do_not_fit_are_refused(model_path, lora_dir, tmp_path):
    wrong = os.path.join(lora_dir, "wrong-shape.gguf")
    with pytest.raises(minerva.Error) as err:
        open_engine(model_path, max_streams=1, context_tokens=512, loras=[(wrong, 1.0)])
    assert err.value.status == Status.ERR_MODEL
    assert "wrong-shape.gguf" in err.value.message
    with pytest.raises(minerva.Error) as err:
        open_engine(model_path, loras=[(tmp_path / "missing.gguf", 1.0)])
    assert err.value.status == Status.ERR_IO and "missing.gguf" in err.value.message
    with pytest.raises(minerva.Error) as err:
        open_engine(model_path, loras=[(os.path.join(lora_dir, "voice.gguf"), float("inf"))])
    assert err.value.status == Status.ERR_INVALID_ARGUMENT
    with pytest.raises(TypeError):
        open_engine(model_path, loras=os.path.join(lora_dir, "voice.gguf"))
    with pytest.raises(TypeError):
        open_engine(model_path, loras=[(wrong, 1.0, 2.0)])
    with pytest.raises(minerva.Error) as err:  # an engine without adapters takes no scales
        with open_engine(model_path, max_streams=1, context_tokens=256, loras=[]) as e:
            e.generate("x", lora_scales=[1.0], max_tokens=1)
    assert err.value.status == Status.ERR_INVALID_ARGUMENT
