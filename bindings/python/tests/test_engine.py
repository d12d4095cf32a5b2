"""Engine: creation, errors, info, generation parameters, tokens, embeddings."""

import json
import math
import os
import re
import socket
import subprocess
import time

import pytest

import minerva
from conftest import GREEDY, open_engine

Status = minerva.Status


def test_info(engine):
    info = engine.info()
    assert info.context_tokens == 1024 and info.max_streams == 4
    assert info.threads >= 1
    assert isinstance(info.device_kind, minerva.DeviceKind)
    assert info.device_name and info.model_description
    assert info.vocab_size > 0 and info.embedding_dims > 0
    assert info.total_layers > 0 and info.parameter_count > 0 and info.file_bytes > 0
    assert info.has_chat_template is False
    if info.device_kind == minerva.DeviceKind.CPU:
        assert re.fullmatch(r"CPU: \d+ layers \+ output", info.devices), info.devices
    else:
        assert info.devices, "devices is empty"
    assert "minerva.Engine" in repr(engine)


def test_missing_model_is_an_io_error(tmp_path):
    with pytest.raises(minerva.Error) as e:
        minerva.Engine(tmp_path / "missing.gguf")
    assert e.value.status == Status.ERR_IO
    assert "missing.gguf" in str(e.value)
    assert e.value.status.name == "ERR_IO" and "ERR_IO" in repr(e.value)


def test_a_file_that_is_not_gguf_is_a_model_error(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"this is not a model" * 100)
    with pytest.raises(minerva.Error) as e:
        minerva.Engine(str(bad))
    assert e.value.status == Status.ERR_MODEL


def test_engine_parameter_errors(model_path):
    with pytest.raises(minerva.Error) as e:
        minerva.Engine(model_path, context_tokens=4)  # below the C minimum: minerva says
    assert e.value.status == Status.ERR_INVALID_ARGUMENT
    assert "context_tokens" in e.value.message
    with pytest.raises(minerva.Error) as e:
        minerva.Engine(model_path, max_streams=-1)  # does not fit the C field
    assert e.value.status == Status.ERR_INVALID_ARGUMENT
    with pytest.raises(TypeError):
        minerva.Engine(model_path, context_size=512)  # not a field of minerva_engine_params
    with pytest.raises(TypeError):
        minerva.Engine(model_path, threads="two")
    with pytest.raises(TypeError):
        minerva.Engine(None)
    with pytest.raises(minerva.Error) as e:
        minerva.Engine(model_path + "\0x")
    assert e.value.status == Status.ERR_INVALID_ARGUMENT


def test_context_manager_and_close(model_path):
    with open_engine(model_path, context_tokens=256, use_mmap=False, batch_tokens=64) as e:
        assert not e.closed
        assert e.info().context_tokens == 256
    assert e.closed
    e.close()  # again: nothing
    assert repr(e) == "<minerva.Engine closed>"
    for call in (lambda: e.generate("x"), lambda: e.stream("x"), lambda: e.tokenize("x"),
                 lambda: e.embed(["x"]), e.info, lambda: e.chat([{"role": "user",
                                                                   "content": "x"}])):
        with pytest.raises(minerva.Error) as err:
            call()
        assert err.value.status == Status.ERR_INVALID_ARGUMENT
        assert "closed" in err.value.message


def test_generate_is_deterministic_when_greedy(engine):
    a = engine.generate("The capital of France is", **GREEDY)
    b = engine.generate("The capital of France is", **GREEDY)
    assert isinstance(a, str) and a.strip()
    assert a == b


def test_seeded_sampling_is_reproducible(engine):
    p = dict(temperature=0.9, seed=1234, max_tokens=8, cache_prompt=False)
    assert engine.generate("My favourite colour is", **p) == engine.generate(
        "My favourite colour is", **p)
    engine.generate("Hi", temperature=0.9, seed=None, max_tokens=2)  # random seed
    engine.generate("Hi", seed=minerva.SEED_RANDOM, max_tokens=2)


def test_max_tokens_and_stats(engine):
    with engine.stream("Once upon a time", **GREEDY) as s:
        text = s.read_all()
        st = s.stats()
    assert text
    assert st.generated_tokens == 8
    assert st.finish_reason == minerva.FinishReason.LENGTH
    assert st.prompt_tokens == len(engine.tokenize("Once upon a time"))
    assert st.time_to_first_token_ms > 0


def test_stop_strings(engine):
    full = engine.generate("Once upon a time", **dict(GREEDY, max_tokens=16))
    words = full.split()
    assert len(words) >= 3
    stop = words[2]
    with engine.stream("Once upon a time", stop=[stop, "zzzz"], **dict(GREEDY, max_tokens=16)) as s:
        text = s.read_all()
        assert s.stats().finish_reason == minerva.FinishReason.STOP
    assert stop not in text
    assert full.startswith(text)
    assert engine.generate("Once upon a time", stop=stop, **dict(GREEDY, max_tokens=16)) == text


def test_json_schema_output_parses(engine):
    schema = {"type": "object",
              "properties": {"action": {"enum": ["attack", "flee", "talk"]},
                             "line": {"type": "string", "maxLength": 20}},
              "required": ["action", "line"]}
    for given in (schema, json.dumps(schema)):
        with engine.stream("The orc sees the player. Its decision, as JSON:",
                           json_schema=given, temperature=0, max_tokens=48) as s:
            text = s.read_all()
            assert s.stats().finish_reason == minerva.FinishReason.EOS
        value = json.loads(text)
        assert value["action"] in ("attack", "flee", "talk")
        assert isinstance(value["line"], str)


def test_grammar(engine):
    text = engine.generate("Is the sky blue? Answer:", grammar='root ::= " yes" | " no"',
                           temperature=0, max_tokens=8)
    assert text in (" yes", " no")


def test_bad_grammar_and_schema_are_refused(engine):
    with pytest.raises(minerva.Error) as e:
        engine.generate("x", grammar="root ::= (", max_tokens=2)
    assert e.value.status == Status.ERR_INVALID_ARGUMENT
    with pytest.raises(minerva.Error) as e:
        engine.generate("x", json_schema="{not json", max_tokens=2)
    assert e.value.status == Status.ERR_INVALID_ARGUMENT
    with pytest.raises(minerva.Error) as e:
        engine.generate("x", grammar='root ::= "a"', json_schema={"type": "string"})
    assert e.value.status == Status.ERR_INVALID_ARGUMENT


def test_logit_bias_bans_a_token(engine):
    with engine.stream("Once upon a time", **dict(GREEDY, max_tokens=1)) as s:
        first = s.read_all()
    banned = engine.tokenize(first, add_special=False)
    assert len(banned) == 1
    with engine.stream("Once upon a time", logit_bias={banned[0]: -math.inf},
                       **dict(GREEDY, max_tokens=1)) as s:
        other = s.read_all()
    assert other and other != first
    # pairs work too
    assert engine.generate("Once upon a time", logit_bias=[(banned[0], -math.inf)],
                           **dict(GREEDY, max_tokens=1)) == other


def test_penalties_are_accepted(engine):
    assert engine.generate("Once upon a time", presence_penalty=0.5, frequency_penalty=0.5,
                           repeat_penalty=1.1, repeat_last_n=32, top_k=20, top_p=0.9,
                           min_p=0.1, ignore_eos=True, **GREEDY)


def test_generate_parameter_errors(engine):
    cases = [dict(temperature=-1.0), dict(top_p=0.0), dict(min_p=2.0),
             dict(repeat_penalty=0.0), dict(temperature=math.nan), dict(stop=[""]),
             dict(repeat_last_n=2**21), dict(logit_bias={10**9: 1.0})]
    for params in cases:
        with pytest.raises(minerva.Error) as e:
            engine.generate("x", max_tokens=1, **params)
        assert e.value.status == Status.ERR_INVALID_ARGUMENT, params
        assert e.value.message, params
    with pytest.raises(minerva.Error) as e:  # does not fit the C field
        engine.generate("x", max_tokens=-1)
    assert e.value.status == Status.ERR_INVALID_ARGUMENT
    with pytest.raises(TypeError):
        engine.generate("x", max_token=1)  # misspelt: not a C field
    with pytest.raises(TypeError):
        engine.generate("x", max_tokens="8")
    with pytest.raises(TypeError):
        engine.generate(None)
    with pytest.raises(minerva.Error) as e:
        engine.generate("a\0b", max_tokens=1)
    assert e.value.status == Status.ERR_INVALID_ARGUMENT
    with pytest.raises(minerva.Error) as e:  # not UTF-8: minerva refuses it
        engine.generate("bad \udc80 text", max_tokens=1)
    assert e.value.status == Status.ERR_INVALID_ARGUMENT


def test_prompt_longer_than_the_context_fails_the_stream(model_path):
    with open_engine(model_path, context_tokens=64) as e:
        with pytest.raises(minerva.Error) as err:
            e.generate("word " * 200, max_tokens=4)
        assert err.value.status == Status.ERR_CONTEXT_FULL
        s = e.stream("word " * 200, max_tokens=4)
        with pytest.raises(minerva.Error) as err:
            s.wait()
        assert err.value.status == Status.ERR_CONTEXT_FULL
        assert s.error
        assert s.status == Status.ERR_CONTEXT_FULL
        assert s.stats().finish_reason == minerva.FinishReason.ERROR
        s.close()


def test_tokenize_round_trip(engine):
    text = "Hello world, the dragon said: «ça va?» 🐉"
    tokens = engine.tokenize(text)
    assert tokens and all(isinstance(t, int) for t in tokens)
    assert engine.detokenize(tokens) == text
    plain = engine.tokenize(text, add_special=False)
    assert len(plain) == len(tokens) - 1  # without BOS
    assert engine.detokenize(tokens, render_special=True).startswith("<bos>")
    assert engine.tokenize("<start_of_turn>", add_special=False) != engine.tokenize(
        "<start_of_turn>", add_special=False, parse_special=False)
    long = "lorem ipsum " * 2000
    assert engine.detokenize(engine.tokenize(long, add_special=False)) == long
    assert engine.tokenize("", add_special=False) == []
    assert engine.detokenize([]) == ""


def test_tokenize_errors(engine):
    vocab = engine.info().vocab_size
    with pytest.raises(minerva.Error) as e:
        engine.detokenize([1, vocab])
    assert e.value.status == Status.ERR_INVALID_ARGUMENT
    with pytest.raises(minerva.Error) as e:
        engine.detokenize([-5])
    assert e.value.status == Status.ERR_INVALID_ARGUMENT
    with pytest.raises(minerva.Error):
        engine.tokenize("a\0b")
    with pytest.raises(TypeError):
        engine.tokenize(42)


def test_embeddings(engine):
    dims = engine.info().embedding_dims
    vectors = engine.embed(["a small cat", "a small cat", "the stock market fell today"])
    assert len(vectors) == 3 and all(len(v) == dims for v in vectors)
    assert all(isinstance(x, float) for x in vectors[0])
    for v in vectors:
        assert math.isclose(sum(x * x for x in v), 1.0, rel_tol=1e-3)
    dot = lambda a, b: sum(x * y for x, y in zip(a, b))  # noqa: E731
    assert dot(vectors[0], vectors[1]) > 0.999
    assert dot(vectors[0], vectors[2]) < 0.999
    # Alone or at another place in a batch, a text's vector is the same up to llama.cpp's
    # batch arithmetic (measured: cosine 0.99983 on the default model).
    single = engine.embed("a small cat")
    assert len(single) == 1 and dot(single[0], vectors[0]) > 0.999
    assert engine.embed([]) == []
    raw = engine.embed(["a small cat"], normalize=False, pooling="mean")[0]
    assert not math.isclose(sum(x * x for x in raw), 1.0, rel_tol=1e-3)
    assert len(engine.embed(["a"], pooling=minerva.Pooling.LAST)[0]) == dims


def test_embedding_errors(engine):
    with pytest.raises(minerva.Error) as e:
        engine.embed(["ok", "bad\0text"])
    assert e.value.status == Status.ERR_INVALID_ARGUMENT
    with pytest.raises(minerva.Error) as e:
        engine.embed(["ok"], pooling="sideways")
    assert e.value.status == Status.ERR_INVALID_ARGUMENT
    with pytest.raises(minerva.Error) as e:
        engine.embed(["ok"], pooling=77)  # an unknown pooling: minerva says
    assert e.value.status == Status.ERR_INVALID_ARGUMENT
    with pytest.raises(minerva.Error) as e:
        engine.embed(["x " * 2000])  # longer than the context
    assert e.value.status == Status.ERR_CONTEXT_FULL
    with pytest.raises(TypeError):
        engine.embed(["ok"], dims=3)


def closed_port():
    """A local port where nothing listens (bound, read, closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_rpc_servers_errors(model_path):
    endpoint = f"127.0.0.1:{closed_port()}"
    for servers in (endpoint, [endpoint]):
        with pytest.raises(minerva.Error) as e:
            open_engine(model_path, rpc_servers=servers)
        assert e.value.status == Status.ERR_BACKEND
        assert endpoint in e.value.message
    with pytest.raises(minerva.Error) as e:
        open_engine(model_path, rpc_servers="nohostport")
    assert e.value.status == Status.ERR_INVALID_ARGUMENT
    assert "nohostport" in e.value.message
    with pytest.raises(TypeError):
        open_engine(model_path, rpc_servers=50052)
    with pytest.raises(TypeError):
        open_engine(model_path, rpc_servers=["127.0.0.1:50052", 50053])


def rpc_server_path():
    lib_dir = os.environ.get("MINERVA_LIB_DIR", "")
    for path in (os.path.join(lib_dir, "minerva-rpc-server"),
                 os.path.join(lib_dir, os.pardir, "bin", "minerva-rpc-server")):
        if lib_dir and os.access(path, os.X_OK):
            return path
    pytest.skip("no minerva-rpc-server next to MINERVA_LIB_DIR")


def test_rpc_server_takes_the_layers(model_path):
    server = rpc_server_path()
    port = closed_port()
    proc = subprocess.Popen([server, "--port", str(port), "--mem", "4096", "--threads", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # Ready when it accepts; the server serves that connection, which ends at once, and
        # then the engine's (one connection at a time).
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"minerva-rpc-server exited with {proc.returncode}"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "minerva-rpc-server did not listen"
                time.sleep(0.05)
        # The engine is closed before the server is killed: a server lost while an engine uses
        # it ends the process.
        with open_engine(model_path, rpc_servers=f"127.0.0.1:{port}", gpu_layers=-1,
                         context_tokens=256, max_streams=1) as e:
            info = e.info()
            assert "RPC" in info.devices, info.devices
            assert f"127.0.0.1:{port}" in info.devices, info.devices
            assert info.device_kind == minerva.DeviceKind.RPC, info
            assert e.generate("The capital of France is", **GREEDY).strip()
    finally:
        proc.kill()
        proc.wait()
