//! Template rendering: exact texts, the bounds, and the same text as llama.cpp's own engine.

use super::template::{Template, CHATML};
use crate::engine::llama::reference_render;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const GEMMA3: &str = include_str!("../../../tests/templates/gemma3.jinja");
const QWEN25: &str = include_str!("../../../tests/templates/qwen25.jinja");
const LLAMA3: &str = include_str!("../../../tests/templates/llama3.jinja");
const PHI3: &str = include_str!("../../../tests/templates/phi3.jinja");

fn render(template: &str, messages: &Value, tools: Option<&Value>, add_gen: bool) -> String {
    let mut ctx = json!({
        "messages": messages,
        "add_generation_prompt": add_gen,
        "bos_token": "<bos>",
        "eos_token": "<eos>",
    });
    if let Some(t) = tools {
        ctx["tools"] = t.clone();
    }
    Template::new(template)
        .unwrap()
        .render(&ctx)
        .unwrap_or_else(|e| panic!("{e}"))
}

fn conversation() -> Value {
    json!([
        {"role": "system", "content": "You are Mira, a blacksmith."},
        {"role": "user", "content": "Hello! Can you fix my sword?"},
        {"role": "assistant", "content": "  Of course. Give it here.  "},
        {"role": "user", "content": "Ünïcödé, emoji 🗡️ and \"quotes\"\n\nand lines."},
    ])
}

#[test]
fn chatml_renders_exactly() {
    let m = json!([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]);
    assert_eq!(
        render(CHATML, &m, None, true),
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nYo<|im_end|>\n<|im_start|>assistant\n"
    );
    assert_eq!(
        render(CHATML, &m, None, false),
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nYo<|im_end|>\n"
    );
}

#[test]
fn gemma3_renders_exactly() {
    assert_eq!(
        render(GEMMA3, &conversation(), None, true),
        "<bos><start_of_turn>user\nYou are Mira, a blacksmith.\n\nHello! Can you fix my sword?\
         <end_of_turn>\n<start_of_turn>model\nOf course. Give it here.<end_of_turn>\n\
         <start_of_turn>user\nÜnïcödé, emoji 🗡️ and \"quotes\"\n\nand lines.<end_of_turn>\n\
         <start_of_turn>model\n"
    );
}

#[test]
fn raise_exception_is_the_error() {
    let m = json!([{"role": "assistant", "content": "first"}]);
    let e = Template::new(GEMMA3)
        .unwrap()
        .render(&json!({"messages": m, "bos_token": ""}))
        .unwrap_err();
    assert_eq!(e.status, crate::engine::Status::InvalidArgument);
    assert!(
        e.message
            .contains("Conversation roles must alternate user/assistant/user/assistant/..."),
        "{e}"
    );
}

#[test]
fn syntax_errors_are_refused_with_the_place() {
    let e = Template::new("{% for m in messages %}{{ m.content }")
        .err()
        .unwrap();
    assert!(e.message.starts_with("chat template: "), "{e}");
    assert!(e.message.contains("line 1"), "{e}");
}

/// Template texts from the model file are bounded: each of these stops with an error within a
/// second instead of running for hours or eating the host's memory.
#[test]
fn rendering_is_bounded() {
    let cases = [
        ("a billion steps", "{% for i in range(100000) %}{% for j in range(100000) %}{{ '' }}{% endfor %}{% endfor %}"),
        ("a gigabyte string", "{% set ns = namespace(s='xxxxxxxxxxxxxxxx') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}"),
        ("string repetition", "{{ 'x' * 1000000000 }}"),
        ("a huge output", "{% for i in range(100000) %}{{ 'y' * 10000 }}{% endfor %}"),
        ("endless recursion", "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}"),
        ("a long list", "{% set ns = namespace(l=[1]) %}{% for i in range(40) %}{% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l|length }}"),
        ("a huge indent", "{{ 'x'|indent(1000000000, true) }}"),
        ("a huge printf width", "{{ '%1000000000d'|format(1) }}"),
        ("a huge str.format width", "{{ '{:>1000000000}'.format(1) }}"),
        ("replace blowing up", "{% set s = 'x' * 100000 %}{{ s.replace('x', s) }}"),
        ("replace of empty", "{% set s = 'x' * 100000 %}{{ s.replace('', s) }}"),
        ("join blowing up", "{% set s = 'x' * 1000000 %}{{ s.join(range(100000)) }}"),
        ("join of a lazy list", "{% set ns = namespace(l=[1]) %}{% for i in range(30) %}{% set ns.l = ns.l + ns.l %}{% endfor %}{{ ','.join(ns.l) }}"),
        ("tojson of a lazy list", "{% set ns = namespace(l=[1]) %}{% for i in range(30) %}{% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l|tojson }}"),
        ("a repeated list", "{{ ([1] * 1000000000)|tojson }}"),
        ("center", "{{ 'x'|center(1000000000) }}"),
        ("pprint of a deep list", "{% set ns = namespace(v=[]) %}{% for i in range(250) %}{% set ns.v = [ns.v] %}{% endfor %}{% for i in range(1000) %}{{ ns.v|pprint|length }}{% endfor %}"),
        ("str.split of 60 million pieces", "{{ (' ' * 60000000).split(' ')|length }}"),
        ("the split filter", "{{ (' ' * 60000000)|split(' ')|length }}"),
        ("str.splitlines", "{{ ('\\n' * 60000000).splitlines()|length }}"),
        ("the lines filter", "{{ ('\\n' * 60000000)|lines|length }}"),
        ("escaping", "{{ ('\"' * 60000000)|e|length }}"),
        ("a list of characters", "{{ ('x' * 60000000)|list|length }}"),
        ("printing a repeated list", "{% set big = 'x' * 1000000 %}{{ [big] * 1000 }}"),
        ("a repeated list as a string", "{% set big = 'x' * 1000000 %}{{ ([big] * 1000)|string|length }}"),
        ("~ of a repeated list", "{% set big = 'x' * 1000000 %}{{ (([big] * 1000) ~ '')|length }}"),
        ("join of lists", "{% set big = 'x' * 1000000 %}{{ [[big] * 1000]|join|length }}"),
        ("str.join of lists", "{% set big = 'x' * 1000000 %}{{ ''.join([[big] * 1000])|length }}"),
        ("str.format of a list", "{% set big = 'x' * 1000000 %}{{ '{}'.format([big] * 1000)|length }}"),
        ("comparing lists shared 2^40 times", "{% set ns = namespace(v=[1], w=[1]) %}{% for i in range(40) %}{% set ns.v = [ns.v, ns.v] %}{% set ns.w = [ns.w, ns.w] %}{% endfor %}{{ ns.v == ns.w }}"),
        ("sorting lists shared 2^40 times", "{% set ns = namespace(v=[1], w=[1]) %}{% for i in range(40) %}{% set ns.v = [ns.v, ns.v] %}{% set ns.w = [ns.w, ns.w] %}{% endfor %}{{ [ns.v, ns.w]|sort|length }}"),
        ("hashing a list shared 2^40 times", "{% set ns = namespace(v=[1]) %}{% for i in range(40) %}{% set ns.v = [ns.v, ns.v] %}{% endfor %}{{ {ns.v: 1}|length }}"),
        ("printing a list shared 2^40 times", "{% set ns = namespace(v=[1]) %}{% for i in range(40) %}{% set ns.v = [ns.v, ns.v] %}{% endfor %}{{ ns.v }}"),
        ("hashing a namespace that holds itself thrice", "{% set ns = namespace(v=1, w=1, d=1) %}{% set ns.v = ns %}{% set ns.w = ns %}{% set ns.d = ns %}{{ {ns: 1}|length }}"),
        ("printing a namespace that holds itself thrice", "{% set ns = namespace(v=1, w=1, d=1) %}{% set ns.v = ns %}{% set ns.w = ns %}{% set ns.d = ns %}{{ ns }}"),
        ("pprint of a lazy list of 10^8", "{{ ([x] * 100000000)|pprint|length }}"),
        ("pprint of a long list of deep lists", "{% set ns = namespace(v=[]) %}{% for i in range(100) %}{% set ns.v = [ns.v] %}{% endfor %}{{ ([ns.v] * 100000)|pprint|length }}"),
    ];
    for (what, t) in cases {
        let start = Instant::now();
        let r = Template::new(t).and_then(|t| t.render(&json!({"messages": []})));
        let took = start.elapsed();
        let e = r.err().unwrap_or_else(|| panic!("{what}: rendered"));
        assert!(e.message.starts_with("chat template: "), "{what}: {e}");
        eprintln!("{what}: {took:?}: {e}");
        assert!(took < Duration::from_secs(1), "{what} took {took:?}");
    }
}

#[test]
fn tojson_is_pythons() {
    let t = "{{ x | tojson }}|{{ x | tojson(indent=2) }}";
    let ctx = json!({"x": {"a": [1, 2.5, 3.0], "b": "<é\"\n>", "c": null, "d": true}});
    let out = Template::new(t).unwrap().render(&ctx).unwrap();
    assert_eq!(
        out,
        "{\"a\": [1, 2.5, 3.0], \"b\": \"<é\\\"\\n>\", \"c\": null, \"d\": true}|{\n  \"a\": [\n    1,\n    2.5,\n    3.0\n  ],\n  \"b\": \"<é\\\"\\n>\",\n  \"c\": null,\n  \"d\": true\n}"
    );
}

fn tools() -> Value {
    json!([{"type": "function", "function": {
        "name": "move_to", "description": "Walk somewhere.",
        // Keys in alphabetical order: llama.cpp sorts them (transformers, like minerva, keeps the
        // caller's order).
        "parameters": {"properties": {"place": {"enum": ["inn", "forge"], "type": "string"}}, "required": ["place"], "type": "object"}
    }}])
}

/// The same templates render the same text with minijinja (minerva) and llama.cpp's own Jinja
/// engine, as its server calls it.
#[test]
fn same_text_as_llama_cpp() {
    let plain = conversation();
    let no_system = json!(plain.as_array().unwrap()[1..].to_vec());
    let tool_turns_ours = json!([
        {"role": "user", "content": "Go to the inn."},
        {"role": "assistant", "content": "", "tool_calls": [{"id": "call_0", "type": "function",
            "function": {"name": "move_to", "arguments": {"place": "inn"}}}]},
        {"role": "tool", "content": "{\"arrived\": true}", "tool_call_id": "call_0"},
    ]);
    let tool_turns_oai = json!([
        {"role": "user", "content": "Go to the inn."},
        {"role": "assistant", "content": "", "tool_calls": [{"id": "call_0", "type": "function",
            "function": {"name": "move_to", "arguments": "{\"place\": \"inn\"}"}}]},
        {"role": "tool", "content": "{\"arrived\": true}", "tool_call_id": "call_0"},
    ]);
    let tools = tools();
    let cases: Vec<(&str, &str, &Value, &Value, Option<&Value>)> = vec![
        ("chatml", CHATML, &no_system, &no_system, None),
        ("gemma3", GEMMA3, &plain, &plain, None),
        ("gemma3 no system", GEMMA3, &no_system, &no_system, None),
        ("llama3", LLAMA3, &plain, &plain, None),
        ("phi3", PHI3, &plain, &plain, None),
        ("qwen2.5", QWEN25, &plain, &plain, None),
        ("qwen2.5 tools", QWEN25, &plain, &plain, Some(&tools)),
        (
            "qwen2.5 tool turns",
            QWEN25,
            &tool_turns_ours,
            &tool_turns_oai,
            Some(&tools),
        ),
    ];
    for (name, t, ours, theirs, tools) in cases {
        for add_gen in [true, false] {
            let mine = render(t, ours, tools, add_gen);
            let reference = reference_render(
                t,
                &theirs.to_string(),
                tools.map(|t| t.to_string()).as_deref(),
                add_gen,
                "<bos>",
                "<eos>",
            )
            .unwrap_or_else(|e| panic!("{name}: llama.cpp: {e}"));
            assert_eq!(mine, reference, "{name} (add_generation_prompt {add_gen})");
        }
    }
}

/// Values nested deeper than any real template needs (a loop nesting a list 30,000 deep, a
/// namespace that contains itself) are an error for every operation that walks them, never a
/// stack overflow; dropping them is not recursive either. On a 1 MiB stack, as a C# or Java
/// thread has.
#[test]
fn deep_values_are_an_error_not_a_crash() {
    let run = |t: String| {
        std::thread::Builder::new()
            .stack_size(1 << 20)
            .spawn(move || Template::new(&t).and_then(|t| t.render(&json!({"messages": []}))))
            .unwrap()
            .join()
            .unwrap()
    };
    let nest = |depth: usize, then: &str| {
        format!(
            "{{% set ns = namespace(v=[], w=[], d={{}}) %}}{{% for i in range({depth}) %}}\
             {{% set ns.v = [ns.v] %}}{{% set ns.w = [ns.w] %}}{{% set ns.d = {{'a': ns.d}} %}}\
             {{% endfor %}}{then}"
        )
    };
    let walks = [
        "{{ ns.v }}",
        "{{ ns.d }}",
        "{{ ns.v|string }}",
        "{{ ns.v ~ '' }}",
        "{{ ns.v|pprint }}",
        "{{ ns.v|tojson }}",
        "{{ ns.d|tojson(indent=2) }}",
        "{{ ns.v == ns.w }}",
        "{{ ns.v != ns.w }}",
        "{{ ns.v in [ns.w] }}",
        "{{ [ns.v, ns.w]|sort }}",
        "{{ [ns.v, ns.w]|unique|list|length }}",
        "{{ [ns.v, ns.w]|max }}",
        "{{ {ns.v: 1}|length }}",
        "{{ ns.d|items|list }}",
        "{{ '{}'.format(ns.v) }}",
        "{{ '%s'|format(ns.v) }}",
        "{{ ns }}",
    ];
    for op in walks {
        let e = run(nest(30_000, op))
            .err()
            .unwrap_or_else(|| panic!("{op}: rendered"));
        assert!(e.message.starts_with("chat template: "), "{op}: {e}");
        assert!(e.message.contains("nested"), "{op}: {e}");
        // Far below the limit, the same operations work.
        run(nest(100, op)).unwrap_or_else(|e| panic!("{op} at depth 100: {e}"));
    }
    let cycles = [
        "{% set ns = namespace(v=1) %}{% set ns.v = ns %}{{ ns }}",
        "{% set ns = namespace(v=1) %}{% set ns.v = [ns] %}{{ ns|pprint }}",
        "{% set ns = namespace(v=1) %}{% set ns.v = {'a': ns} %}{{ ns|string }}",
        "{% set a = namespace(v=1) %}{% set b = namespace(v=a) %}{% set a.v = b %}{{ a == b }}",
        "{% set ns = namespace(v=1) %}{% set ns.v = [ns] %}{{ {ns.v: 1} }}",
        "{% set ns = namespace(v=1) %}{% set ns.v = ns %}{{ ns|tojson }}",
    ];
    for t in cycles {
        let e = run(t.to_owned())
            .err()
            .unwrap_or_else(|| panic!("{t}: rendered"));
        assert!(e.message.starts_with("chat template: "), "{t}: {e}");
    }
    // 100,000 deep, never walked: only dropped.
    let t = "{% set ns = namespace(v=[]) %}{% for j in range(100) %}{% for i in range(1000) %}\
             {% set ns.v = [ns.v] %}{% endfor %}{% endfor %}{{ ns.v|length }}";
    assert_eq!(run(t.to_owned()).unwrap(), "1");
}

/// The size checks before split, lines, list, escaping and printing leave their results as they
/// were.
#[test]
fn checked_filters_and_methods_still_work() {
    let t = "{{ 'a b  c'.split() }}|{{ 'a,b'.split(',') }}|{{ 'a b c'.split(' ', 1) }}|\
             {{ 'a\\nb'.splitlines() }}|{{ 'a b'|split }}|{{ 'a\\nb'|lines }}|{{ 'ab'|list }}|\
             {{ '<&>'|e }}|{{ [1, [2, 'x']] }}|{{ {'a': [1]}|pprint }}";
    let out = Template::new(t).unwrap().render(&json!({})).unwrap();
    assert_eq!(
        out,
        "['a', 'b', 'c']|['a', 'b']|['a', 'b c']|['a', 'b']|['a', 'b']|['a', 'b']|['a', 'b']|\
         &lt;&amp;&gt;|[1, [2, 'x']]|{\n    'a': [\n        1,\n    ],\n}"
    );
}

/// Line ends as Jinja2 (Hugging Face's renderer) reads them: `\r\n` and a lone `\r` are `\n`
/// everywhere in the template, string literals included, and a backslash before a line end in a
/// string literal joins the lines (Python's rule; Mistral Small 3.1's template relies on it). The
/// expected texts are what jinja2 3.1.6 renders with `trim_blocks` and `lstrip_blocks`.
#[test]
fn line_ends_are_jinja2s() {
    let cases = [
        (
            "a\r\nb\rc\n{% if true %}\r\nx\r\n{% endif %}\r\nend\r\n",
            "a\nb\nc\nx\nend",
        ),
        ("{{ 'a\r\nb' }}|{{ 'c\rd' }}", "a\nb|c\nd"),
        (
            "{{ 'Paris.\\\nNext' }}|{{ \"x\\\r\ny\" }}|{{ 'p\\\rq' }}",
            "Paris.Next|xy|pq",
        ),
        (
            "{{ 'a\\nb\\tc\\\\d\\x41\\u00e9\\101\\d' }}",
            "a\nb\tc\\dAéA\\d",
        ),
        ("abc\r\n", "abc"),
        ("{% raw %}a\r\nb{% endraw %}", "a\nb"),
        ("{# x\r\n #}a\r\n", "a"),
        (
            "{%- set default_system_message = 'You are Mistral Small 3, a Large Language Model \
             (LLM) created by Mistral AI, a French startup headquartered in Paris.\\\r\nYour \
             knowledge base was last updated on 2023-10-01.' %}\r\n{{- default_system_message }}",
            "You are Mistral Small 3, a Large Language Model (LLM) created by Mistral AI, a \
             French startup headquartered in Paris.Your knowledge base was last updated on \
             2023-10-01.",
        ),
    ];
    for (t, want) in cases {
        let out = Template::new(t).unwrap().render(&json!({})).unwrap();
        assert_eq!(out, want, "{t:?}");
    }
}
