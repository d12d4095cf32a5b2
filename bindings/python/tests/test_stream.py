"""Streams: pull mode, callback mode, cancellation, callbacks' exceptions and rules."""

import threading
import time

import pytest

import minerva
from conftest import GREEDY, live_callback_streams, wait_until

Status = minerva.Status
Finish = minerva.FinishReason
LONG = dict(temperature=0.0, max_tokens=0, ignore_eos=True)  # runs until cancelled


def test_pull_iteration_matches_generate(engine):
    expected = engine.generate("The dragon said", **GREEDY)
    s = engine.stream("The dragon said", **GREEDY)
    pieces = list(s)
    assert all(isinstance(p, str) and p for p in pieces)
    assert "".join(pieces) == expected
    assert s.finished and s.status == Status.OK
    assert s.read() == "" and s.read(0) == ""
    assert s.wait() is True
    assert s.tool_calls() == []
    s.close()
    assert s.closed and "closed" in repr(s)


def test_pull_with_a_zero_timeout_like_a_frame_loop(engine):
    expected = engine.generate("The dragon said", **GREEDY)
    with engine.stream("The dragon said", **GREEDY) as s:
        text, polls = "", 0
        while not s.finished:
            text += s.read(timeout=0)
            polls += 1
            time.sleep(0.002)
        assert text == expected and polls > 1
        assert s.read(timeout=0.05) == ""


def test_read_timeout_returns_empty_while_nothing_came(engine):
    with engine.stream("word " * 300, **GREEDY) as s:  # a prompt to compute first
        start = time.monotonic()
        first = s.read(timeout=0.001)
        assert time.monotonic() - start < 5
        assert first == "" or isinstance(first, str)
        with pytest.raises(minerva.Error):
            s.read(timeout=-1)


def test_callback_mode(engine):
    expected = engine.generate("The dragon said", **GREEDY)
    pieces, finished, threads = [], [], set()

    def on_token(text):
        threads.add(threading.get_ident())
        pieces.append(text)

    def on_finish(status, reason):
        finished.append((status, reason))

    with engine.stream("The dragon said", on_token, on_finish=on_finish, **GREEDY) as s:
        assert s.wait() is True
        assert "".join(pieces) == expected
        assert finished == [(Status.OK, Finish.LENGTH)]
        assert threading.get_ident() not in threads  # the engine thread
        assert s.read() == "" and s.finished  # no text to pull in callback mode
        assert list(s) == []
        assert "callback" in repr(s)
    assert live_callback_streams() == 0


def test_on_finish_alone_on_a_pull_stream(engine):
    finished = []
    with engine.stream("Hi", on_finish=lambda st, r: finished.append(r), **GREEDY) as s:
        assert s.read_all()
    assert finished == [Finish.LENGTH]


def test_callback_returning_false_stops(engine):
    pieces = []
    with engine.stream("Once upon a time", lambda t: pieces.append(t) or False,
                       **dict(GREEDY, max_tokens=16)) as s:
        assert s.wait()
        assert len(pieces) == 1
        assert s.stats().finish_reason == Finish.STOP


class Boom(Exception):
    pass


def test_exception_in_token_callback_is_raised_by_wait(engine):
    calls = []

    def on_token(text):
        calls.append(text)
        raise Boom("from on_token")

    s = engine.stream("Once upon a time", on_token, **LONG)
    with pytest.raises(Boom, match="from on_token"):
        s.wait()
    assert len(calls) == 1  # stopped at once, not called again
    assert s.stats().finish_reason == Finish.STOP
    assert s.wait() is True  # raised once
    s.close()


def test_exception_in_token_callback_is_raised_by_iteration_and_generate_paths(engine):
    def on_token(text):
        raise Boom("again")

    with pytest.raises(Boom):
        for _ in engine.stream("Once upon a time", on_token, **GREEDY):
            pass
    with pytest.raises(Boom):
        engine.stream("Once upon a time", on_token, **GREEDY).read_all()


def test_exception_in_finish_callback_is_raised_by_wait(engine):
    def on_finish(status, reason):
        raise Boom("from on_finish")

    with engine.stream("Hi", lambda t: None, on_finish=on_finish, **GREEDY) as s:
        with pytest.raises(Boom):
            s.wait()


def test_exception_of_a_dropped_stream_goes_to_unraisablehook(engine, monkeypatch):
    seen = []
    monkeypatch.setattr("sys.unraisablehook", lambda u: seen.append(u.exc_value))

    def on_token(text):
        raise Boom("nobody waits")

    s = engine.stream("Hi", on_token, **GREEDY)
    wait_until(lambda: s.status is not None, what="the stream's end")
    s.close()  # ended, its exception never raised: reported now
    assert len(seen) == 1 and isinstance(seen[0], Boom)

    called, dropped = threading.Event(), threading.Event()

    def later(text):
        called.set()
        assert dropped.wait(60)
        raise Boom("after the drop")

    s = engine.stream("Hi", later, **GREEDY)
    assert called.wait(60)
    del s  # released while its callback runs: reported when it ends
    dropped.set()
    wait_until(lambda: live_callback_streams() == 0, what="the finish callback")
    assert len(seen) == 2 and isinstance(seen[1], Boom)


def test_cancel(engine):
    s = engine.stream("Once upon a time", **LONG)
    assert s.status is None  # running
    assert s.wait(timeout=0) is False
    first = s.read()
    assert first
    s.cancel()
    rest = "".join(s)  # ends without an error: this object cancelled it
    assert s.finished
    assert s.status == Status.ERR_CANCELLED
    assert s.stats().finish_reason == Finish.CANCELLED
    assert s.wait() is True
    s.cancel()  # again: nothing
    s.close()
    s.cancel()  # closed: nothing
    assert isinstance(rest, str)


def test_cancel_from_another_thread_ends_a_callback_stream(engine):
    got = threading.Event()
    s = engine.stream("Once upon a time", lambda t: got.set(), **LONG)
    assert got.wait(60)
    threading.Thread(target=s.cancel).start()
    assert s.wait(60) is True
    assert s.stats().finish_reason == Finish.CANCELLED
    s.close()


def test_wait_timeout(engine):
    with engine.stream("Once upon a time", lambda t: None, **LONG) as s:
        assert s.wait(timeout=0.01) is False
        s.cancel()
        assert s.wait(timeout=60) is True


def test_closed_stream_refuses_calls(engine):
    s = engine.stream("Hi", **GREEDY)
    s.close()
    s.close()
    s.release()
    for call in (s.read, s.wait, s.stats, s.tool_calls, lambda: s.status, lambda: s.error):
        with pytest.raises(minerva.Error) as e:
            call()
        assert e.value.status == Status.ERR_INVALID_ARGUMENT


def test_tool_calls_before_the_end_is_an_error(engine):
    with engine.stream("Once upon a time", **LONG) as s:
        with pytest.raises(minerva.Error) as e:
            s.tool_calls()
        assert e.value.status == Status.ERR_INVALID_ARGUMENT


def test_release_gives_the_handle_back_at_once(engine):
    finished = threading.Event()
    s = engine.stream("Once upon a time", lambda t: None, on_finish=lambda st, r: finished.set(),
                      **LONG)
    s.release()
    assert s.closed
    assert finished.wait(60)
    wait_until(lambda: live_callback_streams() == 0, what="the finish callback")


def test_what_a_callback_may_call(engine):
    seen = {}

    def on_token(text):
        if seen:
            return False
        assert ready.wait(60)
        s = holder["s"]
        seen["read0"] = s.read(timeout=0)  # allowed: no wait
        seen["wait0"] = s.wait(timeout=0)
        seen["stats"] = s.stats().generated_tokens
        for name, call in [("generate", lambda: engine.generate("x", max_tokens=1)),
                           ("embed", lambda: engine.embed(["x"])),
                           ("wait", lambda: s.wait(timeout=1)),
                           ("read", lambda: s.read(timeout=1)),
                           ("close_engine", engine.close)]:
            try:
                call()
                seen[name] = None
            except minerva.Error as e:
                seen[name] = e.status
        child = engine.stream("Hi", **GREEDY)  # starting a stream is allowed
        seen["child"] = child
        return True

    holder, ready = {}, threading.Event()
    holder["s"] = s = engine.stream("Once upon a time", on_token, **dict(GREEDY, max_tokens=4))
    ready.set()
    assert s.wait(60)
    assert seen["read0"] == "" and seen["wait0"] is False and seen["stats"] >= 1
    for name in ("generate", "embed", "wait", "read", "close_engine"):
        assert seen[name] == Status.ERR_INVALID_ARGUMENT, name
    assert not engine.closed
    assert seen["child"].read_all()
    seen["child"].close()
    s.close()


def test_stream_closes_itself_from_its_callback(engine):
    finished, ready = threading.Event(), threading.Event()
    holder = {}

    def on_token(text):
        assert ready.wait(60)
        holder["s"].close()  # does not wait inside a callback

    s = engine.stream("Once upon a time", on_token, on_finish=lambda st, r: finished.set(),
                      **LONG)
    holder["s"] = s
    ready.set()
    assert finished.wait(60)
    assert s.closed
    wait_until(lambda: live_callback_streams() == 0, what="the finish callback")


def test_blocking_calls_release_the_gil(engine):
    lib = minerva.capi.lib()
    assert isinstance(lib, __import__("ctypes").CDLL)
    assert not isinstance(lib, __import__("ctypes").PyDLL)
    s = engine.stream("Once upon a time", lambda t: None, **LONG)
    ticks, done = [0], threading.Event()

    def count():
        while not done.is_set():
            ticks[0] += 1

    with s._h as ptr:  # one raw wait of 300 ms on a stream that does not end
        counter = threading.Thread(target=count)
        counter.start()
        start = ticks[0]
        time.sleep(0.1)  # sleeping releases the GIL: how fast the counter runs
        per_ms = (ticks[0] - start) / 100
        before = ticks[0]
        assert lib.minerva_stream_wait(ptr, 300) == minerva.Status.ERR_TIMEOUT
        during = ticks[0] - before
    done.set()
    counter.join()
    s.close()
    # Holding the GIL (PyDLL), the counter would run at most one switch interval (5 ms).
    assert during > per_ms * 100, f"{during} turns in a 300 ms wait, {per_ms:.0f} per ms"
