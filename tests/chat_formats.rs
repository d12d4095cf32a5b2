//! Every model's own format, on the real templates (tests/templates/real/, from llama.cpp's
//! models/templates): the default model is made to write exactly what each model writes (a GBNF
//! grammar that is one string literal), and the reply must come out as its text, its reasoning
//! and its tool calls, with no markup delivered as text.

mod common;

use common::{greedy, model_path, one_at_a_time, read_all};
use minerva::engine::chat::{ChatOptions, Message, ToolChoice};
use minerva::engine::{Engine, EngineConfig, Status};
use serde_json::{json, Value};

const TOOLS: &str = r#"[{"type": "function", "function": {"name": "get_weather",
  "description": "The weather in a city", "parameters": {"type": "object",
  "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]"#;

fn template(file: &str) -> String {
    let path = common::root().join("tests/templates/real").join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

/// A GBNF grammar whose only sentence is `text`.
fn literal(text: &str) -> String {
    let mut g = String::from("root ::= \"");
    for c in text.chars() {
        match c {
            '"' => g.push_str("\\\""),
            '\\' => g.push_str("\\\\"),
            '\n' => g.push_str("\\n"),
            '\r' => g.push_str("\\r"),
            '\t' => g.push_str("\\t"),
            c => g.push(c),
        }
    }
    g.push('"');
    g
}

struct Case {
    file: &'static str,
    /// What the model writes.
    output: &'static str,
    text: &'static str,
    reasoning: &'static str,
    /// The calls' (name, arguments).
    calls: Vec<(&'static str, Value)>,
}

struct Reply {
    text: String,
    reasoning: String,
    calls: Vec<(String, Value)>,
}

fn run(e: &Engine, file: &str, output: &str, opts: ChatOptions) -> Result<Reply, String> {
    let mut p = greedy(400);
    p.grammar = Some(literal(output));
    let opts = ChatOptions {
        template: Some(template(file)),
        ..opts
    };
    let s = e
        .chat_start(
            &[Message::new("user", "What is the weather in Paris?")],
            &opts,
            p,
            None,
            None,
        )
        .map_err(|e| e.message)?;
    let text = read_all(&s);
    if s.wait(None) != Status::Ok {
        return Err(s.error().to_owned());
    }
    let calls: Value = serde_json::from_str(s.tool_calls().unwrap()).unwrap();
    let calls = calls
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                c["arguments"].clone(),
            )
        })
        .collect();
    Ok(Reply {
        text,
        reasoning: s.reasoning(),
        calls,
    })
}

fn paris() -> Value {
    json!({"city": "Paris"})
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            // llama.cpp's copy of the template writes the arguments with no line ends around.
            file: "glm_4_5.jinja",
            output: "\n<think>The user wants the weather.</think>\n<tool_call>get_weather<arg_key>city</arg_key>\n<arg_value>Paris</arg_value></tool_call>",
            text: "",
            reasoning: "The user wants the weather.",
            calls: vec![("get_weather", paris())],
        },
        Case {
            file: "GLM-4.6.jinja",
            output: "\n<think>The user wants the weather.</think>\n<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\n</tool_call>",
            text: "",
            reasoning: "The user wants the weather.",
            calls: vec![("get_weather", paris())],
        },
        Case {
            file: "moonshotai-Kimi-K2-Thinking.jinja",
            output: "<think>The user wants the weather.</think><|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>{\"city\": \"Paris\"}<|tool_call_end|><|tool_calls_section_end|>",
            text: "",
            reasoning: "The user wants the weather.",
            calls: vec![("get_weather", paris())],
        },
        Case {
            file: "unsloth-MiniMax-M2.jinja",
            output: "The user wants the weather.</think>\n\n<minimax:tool_call>\n<invoke name=\"get_weather\">\n<parameter name=\"city\">Paris</parameter>\n</invoke>\n</minimax:tool_call>",
            text: "",
            reasoning: "The user wants the weather.",
            calls: vec![("get_weather", paris())],
        },
        Case {
            file: "ByteDance-Seed-OSS.jinja",
            output: "<seed:think>The user wants the weather.</seed:think><seed:tool_call>\n<function=get_weather>\n<parameter=city>Paris</parameter>\n</function>\n</seed:tool_call>",
            text: "",
            reasoning: "The user wants the weather.",
            calls: vec![("get_weather", paris())],
        },
        Case {
            file: "deepseek-ai-DeepSeek-V3.1.jinja",
            output: "The user wants the weather.</think><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{\"city\": \"Paris\"}<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
            text: "",
            reasoning: "The user wants the weather.",
            calls: vec![("get_weather", paris())],
        },
        Case {
            file: "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja",
            output: "The user wants the weather.\n</think>\n\nIt is sunny in Paris.",
            text: "It is sunny in Paris.",
            reasoning: "The user wants the weather.",
            calls: vec![],
        },
        Case {
            file: "mistralai-Mistral-Small-3.1-24B-Instruct-2503.jinja",
            output: "[TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}, \"id\": \"a1b2c3d4e\"}]",
            text: "",
            reasoning: "",
            calls: vec![("get_weather", paris())],
        },
        Case {
            file: "CohereForAI-c4ai-command-r7b-12-2024-tool_use.jinja",
            output: "<|START_THINKING|>I will look it up.<|END_THINKING|><|START_ACTION|>[\n    {\"tool_call_id\": \"0\", \"tool_name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}\n]<|END_ACTION|>",
            text: "",
            reasoning: "I will look it up.",
            calls: vec![("get_weather", paris())],
        },
        Case {
            file: "NVIDIA-Nemotron-Nano-v2.jinja",
            output: "The user wants the weather.\n</think>\n\n<TOOLCALL>[{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}]</TOOLCALL>",
            text: "",
            reasoning: "The user wants the weather.",
            calls: vec![("get_weather", paris())],
        },
        Case {
            file: "meta-llama-Llama-3.2-3B-Instruct.jinja",
            output: "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}",
            text: "",
            reasoning: "",
            calls: vec![("get_weather", paris())],
        },
        Case {
            file: "llama-cpp-lfm2.jinja",
            output: "<|tool_call_start|>[get_weather(city=\"Paris\")]<|tool_call_end|>",
            text: "",
            reasoning: "",
            calls: vec![("get_weather", paris())],
        },
        Case {
            file: "meetkai-functionary-medium-v3.1.jinja",
            output: "<function=get_weather>{\"city\": \"Paris\"}</function>",
            text: "",
            reasoning: "",
            calls: vec![("get_weather", paris())],
        },
    ]
}

fn engine() -> Engine {
    let cfg = EngineConfig {
        max_streams: 1,
        context_tokens: 4096,
        ..Default::default()
    };
    Engine::new(&model_path(), &cfg, None).expect("engine")
}

/// Each format: its calls read, its reasoning kept apart, no markup in the text.
#[test]
fn every_format_is_read() {
    let _one = one_at_a_time();
    let e = engine();
    let mut failed = Vec::new();
    for c in cases() {
        let opts = ChatOptions {
            tools: Some(TOOLS.into()),
            ..Default::default()
        };
        let got = match run(&e, c.file, c.output, opts) {
            Ok(r) => r,
            Err(why) => {
                failed.push(format!("{}: {why}", c.file));
                continue;
            }
        };
        let calls: Vec<(&str, Value)> = got
            .calls
            .iter()
            .map(|(n, a)| (n.as_str(), a.clone()))
            .collect();
        let ok =
            got.text.trim() == c.text && got.reasoning.trim() == c.reasoning && calls == c.calls;
        eprintln!(
            "{} {}: text {:?} reasoning {:?} calls {:?}",
            if ok { "ok  " } else { "FAIL" },
            c.file,
            got.text,
            got.reasoning,
            got.calls
        );
        if !ok {
            failed.push(c.file.to_string());
        }
    }
    assert!(failed.is_empty(), "formats not read: {failed:?}");
}

/// The same replies as they stream through a token callback: no piece holds markup, and the
/// reasoning is kept apart (read by llama.cpp for Seed-OSS, by minerva where DeepSeek V3.1's
/// generation prompt opens it).
#[test]
fn pieces_never_hold_markup() {
    use minerva::engine::Control;
    use std::sync::{Arc, Mutex};
    let _one = one_at_a_time();
    let e = engine();
    let replies = [
        (
            "ByteDance-Seed-OSS.jinja",
            "<seed:think>The user wants the weather.</seed:think>Let me look.<seed:tool_call>\n<function=get_weather>\n<parameter=city>Paris</parameter>\n</function>\n</seed:tool_call>",
        ),
        (
            "deepseek-ai-DeepSeek-V3.1.jinja",
            "The user wants the weather.</think>Let me look.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{\"city\": \"Paris\"}<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
        ),
    ];
    for (file, output) in replies {
        let pieces = Arc::new(Mutex::new(Vec::<String>::new()));
        let sink = pieces.clone();
        let mut p = greedy(400);
        p.grammar = Some(literal(output));
        let opts = ChatOptions {
            template: Some(template(file)),
            tools: Some(TOOLS.into()),
            ..Default::default()
        };
        let s = e
            .chat_start(
                &[Message::new("user", "What is the weather in Paris?")],
                &opts,
                p,
                Some(Box::new(move |t: &str| {
                    sink.lock().unwrap().push(t.to_owned());
                    Control::Continue
                })),
                None,
            )
            .unwrap();
        assert_eq!(s.wait(None), Status::Ok, "{file}: {}", s.error());
        let pieces = pieces.lock().unwrap();
        for piece in pieces.iter() {
            assert!(
                !piece.contains('<') && !piece.contains('>'),
                "{file}: markup in {piece:?} ({pieces:?})"
            );
        }
        assert_eq!(pieces.concat(), "Let me look.", "{file}");
        assert_eq!(s.reasoning(), "The user wants the weather.", "{file}");
        let calls: Value = serde_json::from_str(s.tool_calls().unwrap()).unwrap();
        assert_eq!(calls[0]["name"], "get_weather", "{file}");
        assert_eq!(calls[0]["arguments"], paris(), "{file}");
    }
}

/// MINERVA_REASONING_NONE: the reasoning stays in the text as the model wrote it.
#[test]
fn reasoning_none_leaves_it_in_the_text() {
    let _one = one_at_a_time();
    let e = engine();
    let output = "The user wants the weather.\n</think>\n\nIt is sunny in Paris.";
    let r = run(
        &e,
        "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja",
        output,
        ChatOptions {
            reasoning: false,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(r.reasoning, "");
    assert!(
        r.text.contains("</think>") && r.text.contains("It is sunny"),
        "{:?}",
        r.text
    );
}

/// template_kwargs_json reaches the template; bad values are refused naming the field.
#[test]
fn template_switches() {
    let _one = one_at_a_time();
    let e = engine();
    let msgs = [Message::new("user", "Hi")];
    let glm = |kwargs: Option<&str>| ChatOptions {
        template: Some(template("glm_4_5.jinja")),
        template_kwargs: kwargs.map(String::from),
        ..Default::default()
    };
    let on = e.chat_format(&msgs, &glm(None)).unwrap();
    let off = e
        .chat_format(&msgs, &glm(Some(r#"{"enable_thinking": false}"#)))
        .unwrap();
    assert!(!on.ends_with("<think></think>"), "{on:?}");
    assert!(off.ends_with("<|assistant|>\n<think></think>"), "{off:?}");
    for bad in ["[1]", "{", "\"x\"", "3"] {
        let err = e.chat_format(&msgs, &glm(Some(bad))).unwrap_err();
        assert_eq!(err.status, Status::InvalidArgument);
        assert!(
            err.message.contains("template_kwargs_json"),
            "{}",
            err.message
        );
    }
}

/// continue_final_message: the last assistant turn is left open and the model goes on from it;
/// a last turn of another role is refused naming the field.
#[test]
fn continue_final_message() {
    let _one = one_at_a_time();
    let e = engine();
    let opts = ChatOptions {
        template: Some(template("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja")),
        continue_final_message: true,
        reasoning: false,
        ..Default::default()
    };
    let msgs = [
        Message::new("user", "Name a colour."),
        Message::new("assistant", "The colour is"),
    ];
    let text = e.chat_format(&msgs, &opts).unwrap();
    assert!(text.ends_with("The colour is"), "{text:?}");
    let s = e.chat_start(&msgs, &opts, greedy(8), None, None).unwrap();
    let out = read_all(&s);
    assert_eq!(s.wait(None), Status::Ok, "{}", s.error());
    eprintln!("continued: {out:?}");
    let err = e.chat_format(&msgs[..1], &opts).unwrap_err();
    assert_eq!(err.status, Status::InvalidArgument);
    assert!(
        err.message.contains("continue_final_message"),
        "{}",
        err.message
    );
}

/// A multi-turn exchange with a call and its result renders through every template here that
/// takes tool turns, and a stream runs on it.
#[test]
fn tool_turns_render_and_run() {
    let _one = one_at_a_time();
    let e = engine();
    // An id as minerva makes them (Mistral's template takes only ids that end in 9 letters and
    // digits).
    let calls =
        r#"[{"id": "call_k3x9q0a2b", "name": "get_weather", "arguments": {"city": "Paris"}}]"#;
    let msgs = vec![
        Message::new("user", "What is the weather in Paris?"),
        Message {
            role: "assistant".into(),
            content: None,
            tool_calls: Some(calls.into()),
            tool_call_id: None,
        },
        Message {
            role: "tool".into(),
            content: Some("sunny, 21 C".into()),
            tool_calls: None,
            tool_call_id: Some("call_k3x9q0a2b".into()),
        },
    ];
    let mut failed = Vec::new();
    // Functionary v3.1's template adds the arguments to a string: it takes them only as text.
    for c in cases()
        .into_iter()
        .filter(|c| !c.file.contains("functionary"))
    {
        let opts = ChatOptions {
            template: Some(template(c.file)),
            tools: Some(TOOLS.into()),
            ..Default::default()
        };
        let rendered = match e.chat_format(&msgs, &opts) {
            Ok(t) => t,
            Err(err) => {
                failed.push(format!("{}: {}", c.file, err.message));
                continue;
            }
        };
        if !rendered.contains("sunny, 21 C") {
            failed.push(format!("{}: the tool result is not in the prompt", c.file));
        }
        let s = e.chat_start(&msgs, &opts, greedy(4), None, None).unwrap();
        read_all(&s);
        if s.wait(None) != Status::Ok {
            failed.push(format!("{}: {}", c.file, s.error()));
        }
    }
    assert!(failed.is_empty(), "{failed:#?}");
}

/// REQUIRED with a template that has its own call syntax: the reply is constrained to calls in
/// that syntax (llama.cpp's grammar of them, reasoning allowed first, no free text), and read
/// back as calls, at most max_tool_calls of them, with no text. The default model is no thinking
/// model: where the format lets it reason first it reasons to the end of its tokens, and in
/// Seed-OSS's and LFM2's syntax it writes arguments without end; those replies hold no text.
#[test]
fn required_with_a_native_template() {
    let _one = one_at_a_time();
    let e = engine();
    let calls_written = [
        "glm_4_5.jinja",
        "GLM-4.6.jinja",
        "moonshotai-Kimi-K2-Thinking.jinja",
        "mistralai-Mistral-Small-3.1-24B-Instruct-2503.jinja",
        "CohereForAI-c4ai-command-r7b-12-2024-tool_use.jinja",
        "meta-llama-Llama-3.2-3B-Instruct.jinja",
        "meetkai-functionary-medium-v3.1.jinja",
    ];
    for file in cases().iter().map(|c| c.file) {
        let opts = ChatOptions {
            template: Some(template(file)),
            tools: Some(TOOLS.into()),
            tool_choice: ToolChoice::Required,
            max_tool_calls: 1,
            ..Default::default()
        };
        let s = e
            .chat_start(
                &[Message::new("user", "What is the weather in Paris?")],
                &opts,
                greedy(200),
                None,
                None,
            )
            .unwrap_or_else(|err| panic!("{file}: {}", err.message));
        let text = read_all(&s);
        assert_eq!(s.wait(None), Status::Ok, "{file}: {}", s.error());
        assert_eq!(text, "", "{file}");
        let calls: Value = serde_json::from_str(s.tool_calls().unwrap()).unwrap();
        let calls = calls.as_array().unwrap();
        if calls_written.contains(&file) {
            assert_eq!(calls.len(), 1, "{file}: {calls:?}");
            assert_eq!(calls[0]["name"], "get_weather", "{file}");
            assert!(calls[0]["arguments"]["city"].is_string(), "{file}");
        } else {
            assert!(calls.len() <= 1, "{file}: {calls:?}");
        }
    }
}
