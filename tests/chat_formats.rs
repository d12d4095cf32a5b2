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
            file: "moonshotai-Kimi-K2.jinja",
            output: "<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>{\"city\": \"Paris\"}<|tool_call_end|><|tool_calls_section_end|>",
            text: "",
            reasoning: "",
            calls: vec![("get_weather", paris())],
        },
        Case {
            file: "glm_4_5.jinja",
            output: "<think>The user wants the weather.</think>\n<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\n</tool_call>",
            text: "",
            reasoning: "The user wants the weather.",
            calls: vec![("get_weather", paris())],
        },
        Case {
            file: "unsloth-MiniMax-M2.jinja",
            output: "<think>The user wants the weather.</think>\n\n<minimax:tool_call>\n<invoke name=\"get_weather\">\n<parameter name=\"city\">Paris</parameter>\n</invoke>\n</minimax:tool_call>",
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
            output: "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{\"city\": \"Paris\"}<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
            text: "",
            reasoning: "",
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
            output: "[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}]",
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
            output: "<TOOLCALL>[{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}]</TOOLCALL>",
            text: "",
            reasoning: "",
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
