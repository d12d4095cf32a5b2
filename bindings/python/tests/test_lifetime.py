"""Lifetime and concurrency stress: many streams, abandoned streams, early exits, engines closed
under live streams, threads."""

import gc
import threading
import time

import pytest

import minerva
from conftest import GREEDY, live_callback_streams, open_engine, wait_until

Status = minerva.Status
LONG = dict(temperature=0.0, max_tokens=0, ignore_eos=True)  # runs until cancelled


def test_a_thousand_short_streams(engine):
    start = time.monotonic()
    for i in range(1000):
        params = dict(temperature=0.0, max_tokens=1 + i % 2)
        if i % 4 == 0:
            s = engine.stream("Hi", lambda t: None, **params)
        else:
            s = engine.stream("Hi", **params)
        if i % 50 == 0:
            s.wait() if i % 4 == 0 else s.read_all()
        s.close()
        assert s.closed
    wait_until(lambda: live_callback_streams() == 0, what="every finish callback")
    assert engine.generate("Once upon a time", **GREEDY)
    print(f"1000 streams in {time.monotonic() - start:.1f} s")


def test_streams_abandoned_to_the_garbage_collector(engine):
    for i in range(100):
        engine.stream("Hi", max_tokens=2)  # pull mode, dropped at once
        engine.stream("Hi", lambda t: None, max_tokens=2)  # callback mode, dropped at once
        it = iter(engine.stream("Hi", max_tokens=2))  # an iterator not started
        del it
        if i % 5 == 0:
            box = []  # a cycle: stream -> callback -> box -> stream, runs to its end
            box.append(engine.stream("Hi", lambda t, box=box: box, max_tokens=2))
            del box
    gc.collect()
    wait_until(lambda: live_callback_streams() == 0, what="every finish callback")
    assert engine.generate("Once upon a time", **GREEDY)


def test_breaking_out_of_the_iteration_cancels_and_frees(engine):
    s = engine.stream("Once upon a time", **LONG)
    for piece in s:
        assert piece
        break
    assert s.closed
    with pytest.raises(minerva.Error):
        s.read()
    for _ in engine.stream("Once upon a time", **LONG):  # no reference kept
        break
    it = iter(engine.stream("Once upon a time", **LONG))
    next(it)
    del it  # the generator closes: the stream is freed
    # The engine is not still generating those: a short greedy generation comes back.
    assert engine.generate("Once upon a time", **GREEDY)


def test_an_exception_in_the_loop_body_frees_the_stream(engine):
    s = engine.stream("Once upon a time", **LONG)
    with pytest.raises(KeyError):
        for _ in s:
            raise KeyError("body")
    assert s.closed


def test_closing_the_engine_under_live_streams(model_path):
    e = open_engine(model_path, context_tokens=256)
    errors, pieces = [], []
    first = threading.Event()

    def iterate():
        try:
            for p in e.stream("Once upon a time", **LONG):
                pieces.append(p)
                first.set()
        except minerva.Error as err:
            errors.append(err)

    started = threading.Event()

    def generate():  # what Engine.generate does, with a sign that the stream runs
        try:
            with e.stream("The dragon said", **LONG) as s:
                started.set()
                s.read_all()
        except minerva.Error as err:
            errors.append(err)

    cb_pieces = []
    cb = e.stream("Hello", cb_pieces.append, **LONG)
    pull = e.stream("Hi", **LONG)
    threads = [threading.Thread(target=iterate), threading.Thread(target=generate)]
    for t in threads:
        t.start()
    assert first.wait(60) and started.wait(60)
    e.close()
    for t in threads:
        t.join(60)
        assert not t.is_alive()
    assert len(errors) == 2
    for err in errors:
        assert err.status == Status.ERR_CANCELLED
        assert "engine was closed" in err.message
    # Streams outlive their engine: readable, waitable, and they say how they ended.
    assert cb.wait(10) is True
    assert cb.stats().finish_reason == minerva.FinishReason.CANCELLED
    with pytest.raises(minerva.Error) as err:
        pull.read_all()
    assert err.value.status == Status.ERR_CANCELLED
    assert pull.status == Status.ERR_CANCELLED
    cb.close()
    pull.close()
    with pytest.raises(minerva.Error):
        e.stream("x")
    wait_until(lambda: live_callback_streams() == 0, what="every finish callback")


def test_a_stream_keeps_its_engine_alive(model_path):
    s = open_engine(model_path, context_tokens=256).stream("Once upon a time", **GREEDY)
    gc.collect()
    assert s.read_all()
    s.close()


def test_a_callback_stream_keeps_its_engine_alive(model_path):
    pieces = []
    s = open_engine(model_path, context_tokens=256).stream("Once upon a time", pieces.append,
                                                           **GREEDY)
    gc.collect()
    assert s.wait(60)
    assert len(pieces) >= 1 and s.stats().finish_reason == minerva.FinishReason.LENGTH
    s.close()


def test_closing_another_engine_from_a_callback(engine, model_path):
    other = open_engine(model_path, context_tokens=256)
    outcome = []

    def on_token(text):
        if not outcome:
            try:
                other.close()  # another engine: minerva does not wait
                outcome.append("closed")
            except minerva.Error as e:
                outcome.append(e)
        return False

    with engine.stream("Hi", on_token, **GREEDY) as s:
        assert s.wait(60)
    assert outcome == ["closed"] and other.closed


def test_threads_streaming_on_one_engine(engine):
    results, errors = {}, []

    def worker(n):
        try:
            texts = []
            for k in range(3):
                if (n + k) % 3 == 0:
                    got = []
                    with engine.stream(f"Story {n}.{k}:", got.append, **GREEDY) as s:
                        s.wait()
                    texts.append("".join(got))
                else:
                    texts.append("".join(engine.stream(f"Story {n}.{k}:", **GREEDY)))
            texts.append(str(len(engine.embed([f"thread {n}"])[0])))
            texts.append(engine.detokenize(engine.tokenize(f"thread {n}")))
            results[n] = texts
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(150)
        assert not t.is_alive()
    assert not errors, errors
    assert len(results) == 6
    for n, texts in results.items():
        assert all(texts[:3]), texts
        assert texts[4] == f"thread {n}"
    wait_until(lambda: live_callback_streams() == 0, what="every finish callback")


def test_closing_a_stream_while_another_thread_reads_it(engine):
    s = engine.stream("Once upon a time", **LONG)
    outcome = []
    started = threading.Event()

    def reader():
        try:
            while True:
                if s.read():
                    started.set()
        except minerva.Error as e:
            outcome.append(e.status)

    t = threading.Thread(target=reader)
    t.start()
    assert started.wait(60)
    s.close()
    t.join(30)
    assert not t.is_alive()
    assert outcome == [Status.ERR_INVALID_ARGUMENT]


def test_closing_an_engine_while_another_thread_embeds(model_path):
    e = open_engine(model_path, context_tokens=256)
    outcome, ran = [], threading.Event()

    def embedder():
        try:
            while True:
                e.embed(["some text to embed", "and more"])
                ran.set()
        except minerva.Error as err:
            outcome.append(err.status)

    t = threading.Thread(target=embedder)
    t.start()
    assert ran.wait(60)
    e.close()
    t.join(60)
    assert not t.is_alive()
    assert outcome and outcome[0] in (Status.ERR_INVALID_ARGUMENT, Status.ERR_CANCELLED)
