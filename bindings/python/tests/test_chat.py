"""Chat on the model with a chat template: rendering, replies, tool calls."""

import json
import re

import pytest

import minerva

Status = minerva.Status
TOOLS = [{"type": "function", "function": {
    "name": "walk_to", "description": "Walk to a place in town.",
    "parameters": {"type": "object", "properties": {"place": {"enum": ["gate", "tavern"]}},
                   "required": ["place"]}}}]
TURNS = [{"role": "system", "content": "You are Bram, the guard of the town gate."},
         {"role": "user", "content": "A thief ran toward the tavern! Stop him!"}]


def test_the_chat_model_has_a_template(chat_engine):
    assert chat_engine.info().has_chat_template is True


def test_format_chat(chat_engine):
    text = chat_engine.format_chat([{"role": "user", "content": "Hello there"}])
    assert "<start_of_turn>user" in text and "Hello there" in text
    assert text.rstrip().endswith("<start_of_turn>model")
    bare = chat_engine.format_chat([{"role": "user", "content": "Hello there"}],
                                   add_generation_prompt=False)
    assert "<start_of_turn>model" not in bare
    chatml = chat_engine.format_chat([{"role": "user", "content": "Hi"}],
                                     chat_template="chatml")
    assert chatml == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    long = chat_engine.format_chat([{"role": "user", "content": "x" * 10000}])
    assert "x" * 10000 in long  # larger than the first buffer


def test_chat_reply(chat_engine):
    reply = chat_engine.chat([{"role": "user", "content": "Say hello in one word."}],
                             temperature=0, max_tokens=24)
    assert isinstance(reply, str) and isinstance(reply, minerva.ChatReply)
    assert reply.strip()
    assert "<end_of_turn>" not in reply
    assert reply.tool_calls == []
    assert reply.finish_reason in (minerva.FinishReason.EOS, minerva.FinishReason.LENGTH)
    again = chat_engine.chat([{"role": "user", "content": "Say hello in one word."}],
                             temperature=0, max_tokens=24, cache_prompt=False)
    assert str(again) and isinstance(again, str)


def test_chat_stream(chat_engine):
    pieces = []
    with chat_engine.chat_stream(TURNS, temperature=0, max_tokens=16) as s:
        pieces = list(s)
    assert pieces and "".join(pieces).strip()
    got = []
    with chat_engine.chat_stream(TURNS, got.append, temperature=0, max_tokens=16,
                                 cache_prompt=False) as s:
        assert s.wait()
    assert got


def test_tool_call_required(chat_engine):
    reply = chat_engine.chat(TURNS, tools=TOOLS, tool_choice="required", temperature=0,
                             max_tokens=256)
    assert reply == ""
    assert reply.finish_reason == minerva.FinishReason.EOS
    calls = reply.tool_calls
    assert 1 <= len(calls) <= 4
    assert re.fullmatch(r"call_[0-9a-z]{9}", calls[0]["id"]) and calls[0]["name"] == "walk_to"
    assert len({c["id"] for c in calls}) == len(calls)
    assert calls[0]["arguments"]["place"] in ("gate", "tavern")
    # Through a stream, with the tools as JSON text and the enum value.
    with chat_engine.chat_stream(TURNS, tools_json=json.dumps(TOOLS),
                                 tool_choice=minerva.ToolChoice.AUTO,
                                 temperature=0, max_tokens=16) as s:
        s.read_all()
        assert isinstance(s.tool_calls(), list)
        assert json.loads(s.tool_calls_json()) == s.tool_calls()
    # The calls and a tool's answer go back into the conversation.
    turns = TURNS + [{"role": "assistant", "content": None, "tool_calls": calls},
                     {"role": "tool", "tool_call_id": calls[0]["id"], "content": "You are there."}]
    text = chat_engine.format_chat(turns, tools=TOOLS)
    assert "You are there." in text and calls[0]["id"] in text
    answer = chat_engine.chat(turns, tools=TOOLS, tool_choice="none", temperature=0,
                              max_tokens=16)
    assert answer.tool_calls == []


def test_template_kwargs_and_reasoning(chat_engine):
    hello = [{"role": "user", "content": "Say hello in one word."}]
    with chat_engine.chat_stream(hello, template_kwargs={"enable_thinking": False},
                                 reasoning="none", max_tool_calls=2,
                                 continue_final_message=False,
                                 temperature=0, max_tokens=8) as s:
        assert s.reasoning() == ""  # while it runs
        s.read_all()
        assert s.reasoning() == ""  # reasoning NONE: none is kept apart
    reply = chat_engine.chat(hello, template_kwargs_json='{"enable_thinking": false}',
                             reasoning=minerva.Reasoning.AUTO, temperature=0, max_tokens=8)
    assert isinstance(reply.reasoning, str)
    # Template variables reach the template; an assistant turn is continued.
    tmpl = "{{ greeting }}{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}"
    text = chat_engine.format_chat(hello, chat_template=tmpl, template_kwargs={"greeting": "Hi! "})
    assert text.startswith("Hi! [user] Say hello")
    cont = chat_engine.format_chat(hello + [{"role": "assistant", "content": "Hel"}],
                                   chat_template=tmpl, continue_final_message=True)
    assert cont.endswith("[assistant] Hel")
    for params in ({"template_kwargs": "[1]"}, {"template_kwargs_json": "{not json"}):
        with pytest.raises(minerva.Error) as e:
            chat_engine.chat(hello, max_tokens=4, **params)
        assert e.value.status == Status.ERR_INVALID_ARGUMENT
        assert "template_kwargs_json" in e.value.message
    with pytest.raises(minerva.Error) as e:
        chat_engine.chat(hello, max_tokens=4, reasoning="sometimes")
    assert e.value.status == Status.ERR_INVALID_ARGUMENT
    with pytest.raises(TypeError):
        chat_engine.chat(hello, template_kwargs={}, template_kwargs_json="{}")


def test_chat_errors(chat_engine):
    cases = [([{"role": "wizard", "content": "hi"}], {}),
             ([], {}),
             ([{"role": "user", "content": "hi"}], {"chat_template": "no-such-template"}),
             ([{"role": "user", "content": "hi"}], {"tools": "[not json"}),
             ([{"role": "user", "content": "hi"}], {"tool_choice": "sometimes"}),
             ([{"role": "user", "content": None}], {})]
    for messages, params in cases:
        with pytest.raises(minerva.Error) as e:
            chat_engine.chat(messages, max_tokens=4, **params)
        assert e.value.status == Status.ERR_INVALID_ARGUMENT, (messages, params)
        assert e.value.message
    with pytest.raises(minerva.Error) as e:
        chat_engine.format_chat([{"role": "user", "content": "hi"}],
                                chat_template="{{ raise_exception('no users here') }}")
    assert "no users here" in e.value.message
    with pytest.raises(TypeError):
        chat_engine.chat([{"content": "no role"}])
    with pytest.raises(TypeError):
        chat_engine.chat([{"role": "user", "contnet": "typo"}])
    with pytest.raises(TypeError):
        chat_engine.chat("not a list")
    with pytest.raises(TypeError):
        chat_engine.chat([{"role": "user", "content": "hi"}], tools=TOOLS, tools_json="[]")
    with pytest.raises(TypeError):
        chat_engine.format_chat([{"role": "user", "content": "hi"}], max_tokens=3)
