//! Chat on the real model: the model's own template (a copy of the model with a template added),
//! the ChatML fallback, built-in names, end-of-turn markers, BOS once, the prompt cache across
//! turns, and tool calls (REQUIRED over 8 streams at once, a multi-turn exchange).

mod common;

use common::{chat_model_path, greedy, model_path, one_at_a_time, read_all, CHAT_TEMPLATE};
use minerva::engine::chat::{ChatOptions, Message, ToolChoice};
use minerva::engine::{Engine, EngineConfig, FinishReason, GenerateParams, Status, Stream};
use serde_json::Value;
use std::sync::{Arc, Mutex};

fn engine_on(path: &str, max_streams: u32) -> Engine {
    let cfg = EngineConfig {
        max_streams,
        context_tokens: 1024,
        ..Default::default()
    };
    Engine::new(path, &cfg, None).expect("engine")
}

fn conversation() -> Vec<Message> {
    vec![
        Message::new("system", "You are Mira, the village blacksmith."),
        Message::new("user", "Hello! Can you fix my sword?"),
    ]
}

#[test]
fn the_models_own_template_renders_and_ends_the_turn() {
    let _one = one_at_a_time();
    let e = engine_on(&chat_model_path(), 2);
    assert!(e.info().has_chat_template);
    let text = e
        .chat_format(&conversation(), &ChatOptions::default())
        .unwrap();
    // Gemma adds BOS itself, so the template's `{{ bos_token }}` is not in the text.
    assert_eq!(
        text,
        "<start_of_turn>user\nYou are Mira, the village blacksmith.\n\nHello! Can you fix my \
         sword?<end_of_turn>\n<start_of_turn>model\n"
    );
    // BOS exactly once: the stream's prompt is the text tokenized with BOS added.
    let tokens = e.tokenize(&text, true, true).unwrap();
    let bos = e.tokenize("", true, false).unwrap();
    assert_eq!(bos.len(), 1);
    assert_eq!(tokens.iter().filter(|&&t| t == bos[0]).count(), 1);
    let mut p = greedy(64);
    p.ignore_eos = false;
    let s = e
        .chat_start(&conversation(), &ChatOptions::default(), p, None, None)
        .unwrap();
    let reply = read_all(&s);
    assert_eq!(s.wait(None), Status::Ok);
    let st = s.stats();
    assert_eq!(st.prompt_tokens as usize, tokens.len());
    eprintln!("reply ({:?}): {reply:?}", st.finish_reason);
    assert!(!reply.contains("<end_of_turn>") && !reply.contains("<start_of_turn>"));
    assert_eq!(s.tool_calls(), Some("[]"));
}

#[test]
fn without_a_template_chatml_with_one_warning() {
    let _one = one_at_a_time();
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let l2 = lines.clone();
    minerva::engine::log::set_sink(
        Some(Arc::new(move |_, msg: &str| {
            l2.lock().unwrap().push(msg.to_owned())
        })),
        minerva::engine::log::Level::Warn,
    );
    let e = engine_on(&model_path(), 1);
    let msgs = vec![Message::new("user", "Hi")];
    for _ in 0..3 {
        assert_eq!(
            e.chat_format(&msgs, &ChatOptions::default()).unwrap(),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }
    minerva::engine::log::set_sink(None, minerva::engine::log::Level::None);
    let warned = lines
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("no chat template; using ChatML"))
        .count();
    assert_eq!(warned, 1, "{:?}", lines.lock().unwrap());

    // The end-of-turn marker ends the stream as EOS and is never delivered, even split across
    // tokens (the grammar makes the model write it).
    let mut p = greedy(64);
    p.grammar = Some(r#"root ::= "Hi there<|im_end|>never""#.into());
    let s = e
        .chat_start(&msgs, &ChatOptions::default(), p, None, None)
        .unwrap();
    assert_eq!(read_all(&s), "Hi there");
    assert_eq!(s.wait(None), Status::Ok);
    assert_eq!(s.stats().finish_reason, FinishReason::Eos);
}

#[test]
fn templates_given_by_text_and_by_name() {
    let _one = one_at_a_time();
    let e = engine_on(&model_path(), 1);
    let msgs = vec![Message::new("user", "Hi")];
    let with = |t: &str| ChatOptions {
        template: Some(t.into()),
        ..Default::default()
    };
    assert_eq!(
        e.chat_format(&msgs, &with(CHAT_TEMPLATE)).unwrap(),
        "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"
    );
    // llama.cpp's built-in template of that name.
    assert_eq!(
        e.chat_format(&msgs, &with("gemma")).unwrap(),
        "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"
    );
    assert_eq!(
        e.chat_format(&msgs, &with("llama3")).unwrap(),
        "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    );
    let err = e.chat_format(&msgs, &with("no-such-template")).unwrap_err();
    assert_eq!(err.status, Status::InvalidArgument);
    assert!(err.message.contains("no-such-template"), "{err}");
    let err = e
        .chat_format(
            &msgs,
            &with("{{ raise_exception('no system turns here') }}"),
        )
        .unwrap_err();
    assert_eq!(err.status, Status::InvalidArgument);
    assert!(err.message.contains("no system turns here"), "{err}");
    // Bad messages.
    let bad = vec![Message::new("narrator", "x")];
    let err = e.chat_format(&bad, &ChatOptions::default()).unwrap_err();
    assert!(
        err.message.contains("messages[0].role is 'narrator'"),
        "{err}"
    );
    assert!(e.chat_format(&[], &ChatOptions::default()).is_err());
}

/// Each turn of a conversation reuses the cache of the one before: only the new tokens are
/// computed.
#[test]
fn the_prompt_cache_carries_a_conversation() {
    let _one = one_at_a_time();
    let e = engine_on(&chat_model_path(), 1);
    let mut msgs = vec![Message::new("user", "Tell me about swords.")];
    let mut p = greedy(12);
    p.cache_prompt = true;
    let mut last_prompt = 0;
    for turn in 0..4 {
        let s = e
            .chat_start(&msgs, &ChatOptions::default(), p.clone(), None, None)
            .unwrap();
        let reply = read_all(&s);
        assert_eq!(s.wait(None), Status::Ok);
        let st = s.stats();
        eprintln!(
            "turn {turn}: {} prompt tokens, {} cached",
            st.prompt_tokens, st.cached_prompt_tokens
        );
        if turn > 0 {
            assert!(
                st.cached_prompt_tokens as usize >= last_prompt,
                "turn {turn}: {} cached of {}, the previous prompt had {last_prompt}",
                st.cached_prompt_tokens,
                st.prompt_tokens
            );
        }
        last_prompt = st.prompt_tokens as usize;
        msgs.push(Message::new("assistant", &reply));
        msgs.push(Message::new("user", "And then?"));
    }
}

const TOOLS: &str = r#"[
  {"type": "function", "function": {"name": "move_to", "description": "Walk to a place.",
    "parameters": {"type": "object", "properties": {
      "place": {"type": "string", "enum": ["inn", "forge", "well"]},
      "run": {"type": "boolean"}}, "required": ["place", "run"]}}},
  {"type": "function", "function": {"name": "give_item", "description": "Give an item.",
    "parameters": {"type": "object", "properties": {
      "item": {"type": "string", "enum": ["sword", "shield"]},
      "count": {"type": "integer", "minimum": 1, "maximum": 3}}, "required": ["item", "count"]}}}
]"#;

/// Checks a call against the tools above, as a real validator would for these schemas.
fn valid_call(c: &Value) -> Result<(), String> {
    let args = c["arguments"]
        .as_object()
        .ok_or("arguments is not an object")?;
    match c["name"].as_str() {
        Some("move_to") => {
            let place = args["place"].as_str().ok_or("place")?;
            if !["inn", "forge", "well"].contains(&place) {
                return Err(format!("place {place}"));
            }
            args["run"].as_bool().ok_or("run")?;
            if args.len() != 2 {
                return Err("extra arguments".into());
            }
        }
        Some("give_item") => {
            let item = args["item"].as_str().ok_or("item")?;
            if !["sword", "shield"].contains(&item) {
                return Err(format!("item {item}"));
            }
            let n = args["count"].as_i64().ok_or("count")?;
            if !(1..=3).contains(&n) {
                return Err(format!("count {n}"));
            }
        }
        other => return Err(format!("unknown tool {other:?}")),
    }
    if !c["id"].as_str().is_some_and(|id| id.starts_with("call_")) {
        return Err("id".into());
    }
    Ok(())
}

#[test]
fn required_tool_calls_over_8_streams_parse_and_validate() {
    let _one = one_at_a_time();
    let e = engine_on(&chat_model_path(), 8);
    let opts = ChatOptions {
        tools: Some(TOOLS.into()),
        tool_choice: ToolChoice::Required,
        ..Default::default()
    };
    let asks = [
        "Go to the inn.",
        "Run to the forge!",
        "Give me two swords.",
        "Hand over a shield.",
        "Walk to the well.",
        "I need three swords.",
        "Let's go to the inn, quickly.",
        "Give me your shield.",
    ];
    let streams: Vec<Stream> = asks
        .iter()
        .enumerate()
        .map(|(i, ask)| {
            let mut p = GenerateParams {
                max_tokens: 256,
                ..Default::default()
            };
            p.sampling.seed = i as u64 + 1;
            p.sampling.temperature = 0.7;
            e.chat_start(&[Message::new("user", ask)], &opts, p, None, None)
                .unwrap()
        })
        .collect();
    for (s, ask) in streams.iter().zip(asks) {
        let text = read_all(s);
        assert_eq!(s.wait(None), Status::Ok, "{}", s.error());
        assert_eq!(text, "", "REQUIRED delivers no text");
        let calls: Value = serde_json::from_str(s.tool_calls().unwrap()).unwrap();
        eprintln!("{ask} -> {calls} ({:?})", s.stats().finish_reason);
        assert_eq!(s.stats().finish_reason, FinishReason::Eos);
        let calls = calls.as_array().unwrap();
        assert!((1..=4).contains(&calls.len()));
        for c in calls {
            valid_call(c).unwrap_or_else(|e| panic!("{ask}: {c}: {e}"));
        }
    }
}

/// A REQUIRED reply that max_tokens cuts short keeps the calls it had completed.
#[test]
fn required_calls_cut_short_keep_the_complete_ones() {
    let _one = one_at_a_time();
    let e = engine_on(&chat_model_path(), 1);
    let opts = ChatOptions {
        tools: Some(TOOLS.into()),
        tool_choice: ToolChoice::Required,
        ..Default::default()
    };
    let mut p = greedy(64);
    p.ignore_eos = false;
    let s = e
        .chat_start(
            &[Message::new("user", "Give me two swords.")],
            &opts,
            p,
            None,
            None,
        )
        .unwrap();
    assert_eq!(read_all(&s), "");
    assert_eq!(s.wait(None), Status::Ok, "{}", s.error());
    let calls: Value = serde_json::from_str(s.tool_calls().unwrap()).unwrap();
    eprintln!("64 tokens -> {calls} ({:?})", s.stats().finish_reason);
    let calls = calls.as_array().unwrap();
    assert!(!calls.is_empty(), "no complete call kept");
    for c in calls {
        valid_call(c).unwrap_or_else(|e| panic!("{c}: {e}"));
    }
}

/// user, assistant with a tool call, the tool's result, and the assistant's next turn: rendered
/// (with the tool turn as the template allows) and run.
#[test]
fn a_multi_turn_exchange_with_tools_renders_and_runs() {
    let _one = one_at_a_time();
    for path in [model_path(), chat_model_path()] {
        let e = engine_on(&path, 1);
        let opts = ChatOptions {
            tools: Some(TOOLS.into()),
            ..Default::default()
        };
        let mut p = greedy(8);
        p.ignore_eos = false;
        let first = e
            .chat_start(
                &[Message::new("user", "Go to the inn.")],
                &ChatOptions {
                    tool_choice: ToolChoice::Required,
                    ..opts.clone()
                },
                GenerateParams {
                    max_tokens: 256,
                    ..p.clone()
                },
                None,
                None,
            )
            .unwrap();
        read_all(&first);
        assert_eq!(first.wait(None), Status::Ok);
        let calls = first.tool_calls().unwrap().to_owned();
        let parsed: Value = serde_json::from_str(&calls).unwrap();
        let id = parsed[0]["id"].as_str().unwrap().to_owned();
        let msgs = vec![
            Message::new("user", "Go to the inn."),
            Message {
                role: "assistant".into(),
                content: None,
                tool_calls: Some(calls.clone()),
                tool_call_id: None,
            },
            Message {
                role: "tool".into(),
                content: Some("{\"arrived\": true}".into()),
                tool_calls: None,
                tool_call_id: Some(id),
            },
        ];
        let text = e.chat_format(&msgs, &opts).unwrap();
        assert!(text.contains("You can call these tools"), "{text}");
        assert!(text.contains("\"tool_calls\""), "{text}");
        assert!(text.contains("{\"arrived\": true}"), "{text}");
        let s = e.chat_start(&msgs, &opts, p, None, None).unwrap();
        read_all(&s);
        assert_eq!(s.wait(None), Status::Ok, "{}", s.error());
    }
}

#[test]
fn bad_tool_input_is_refused() {
    let _one = one_at_a_time();
    let e = engine_on(&model_path(), 1);
    let msgs = vec![Message::new("user", "Hi")];
    for (tools, choice, want) in [
        (
            Some("not json"),
            ToolChoice::Auto,
            "tools_json is not valid JSON",
        ),
        (Some("[]"), ToolChoice::Auto, "empty"),
        (None, ToolChoice::Required, "no tools_json"),
    ] {
        let opts = ChatOptions {
            tools: tools.map(Into::into),
            tool_choice: choice,
            ..Default::default()
        };
        let err = e
            .chat_start(&msgs, &opts, greedy(4), None, None)
            .err()
            .unwrap();
        assert_eq!(err.status, Status::InvalidArgument);
        assert!(err.message.contains(want), "{err}");
    }
    let bad_history = vec![
        Message::new("user", "Hi"),
        Message {
            role: "assistant".into(),
            content: None,
            tool_calls: Some("{oops".into()),
            tool_call_id: None,
        },
    ];
    let err = e
        .chat_format(&bad_history, &ChatOptions::default())
        .unwrap_err();
    assert!(err.message.contains("messages[1].tool_calls_json"), "{err}");
}
