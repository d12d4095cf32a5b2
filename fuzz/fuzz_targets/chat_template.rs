//! Fuzzes chat-template rendering (src/engine/chat/template.rs): whatever the template text, it
//! renders or answers an error, never a panic, a hang, a stack overflow, or memory beyond the
//! fuel's bound. A template comes from the model file, that is from strangers. The input is the
//! template text; a NUL byte splits off a JSON value that replaces the messages. An input that
//! starts with 0xFF is a recipe instead (see `shaped`): hostile shapes that random text rarely
//! reaches, values nested deep by loops, namespaces that contain themselves, huge splits and
//! repeated lists, walked by every kind of operation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use minerva::engine::chat::template::Template;
use std::time::{Duration, Instant};

/// What a recipe builds: `N` is replaced by a size drawn from the recipe.
const SHAPES: &[&str] = &[
    "{% set ns = namespace(v=[], w=[], d={}) %}{% for i in range(N) %}{% set ns.v = [ns.v] %}\
     {% set ns.w = [ns.w] %}{% set ns.d = {'a': ns.d} %}{% endfor %}",
    "{% set ns = namespace(v=[], w=[], d={}) %}{% for j in range(N) %}{% for i in range(1000) %}\
     {% set ns.v = [ns.v] %}{% endfor %}{% endfor %}",
    "{% set ns = namespace(v=1, w=1, d=1) %}{% set ns.v = ns %}{% set ns.w = [ns] %}\
     {% set ns.d = {'a': ns} %}",
    "{% set a = namespace(v=1) %}{% set ns = namespace(v=a, w=[a], d={'k': a}) %}{% set a.v = ns %}",
    "{% set ns = namespace(v=[], w=[], d={}) %}{% for i in range(N) %}\
     {% set ns.v = ns.v|batch(1)|list %}{% set ns.d = dict(a=ns.d) %}{% endfor %}",
    "{% set s = ' ' * N %}",
    "{% set s = '\\n' * N %}",
    "{% set s = 'a\\r\\nb ' * N %}",
    "{% set big = 'x' * N %}",
];

/// How a recipe walks what it built.
const WALKS: &[&str] = &[
    "{{ ns.v }}",
    "{{ ns.d }}",
    "{{ ns }}",
    "{{ ns.v|string|length }}",
    "{{ (ns.v ~ '')|length }}",
    "{{ ns.v|pprint|length }}",
    "{{ ns.d|tojson }}",
    "{{ ns.v|tojson(indent=2) }}",
    "{{ ns.v == ns.w }}",
    "{{ ns.v in [ns.w] }}",
    "{{ [ns.v, ns.w]|sort|length }}",
    "{{ [ns.v, ns.w]|unique|list|length }}",
    "{{ [ns.v, ns.d]|max }}",
    "{{ {ns.v: 1}|length }}",
    "{{ '{}'.format(ns.v)|length }}",
    "{{ '%s'|format(ns.d)|length }}",
    "{{ [ns.v]|join|length }}",
    "{{ s.split(' ')|length }}",
    "{{ s.split()|length }}",
    "{{ s|split(' ')|length }}",
    "{{ s.splitlines()|length }}",
    "{{ s|lines|length }}",
    "{{ s|list|length }}",
    "{{ s|e|length }}",
    "{{ s|upper|length }}",
    "{{ ([big] * N)|length }}",
    "{{ [big] * N }}",
    "{{ ([big] * N)|string|length }}",
    "{{ ''.join([[big] * N])|length }}",
    "{{ ([big] * N)|pprint|length }}",
];

/// A template from a recipe: after the 0xFF, each pair of bytes is a shape or a walk (the first
/// byte, even for a shape, odd for a walk) and its size (the second byte: 10 to the power of its
/// value mod 9, or that value itself when it is under 128).
fn shaped(recipe: &[u8]) -> String {
    let mut t = String::new();
    for pair in recipe.chunks(2).take(16) {
        let (kind, size) = (pair[0], pair.get(1).copied().unwrap_or(1));
        let n = if size < 128 {
            size as u64
        } else {
            10u64.pow(u32::from(size % 9))
        };
        let piece = if kind % 2 == 0 {
            SHAPES[(kind as usize / 2) % SHAPES.len()]
        } else {
            WALKS[(kind as usize / 2) % WALKS.len()]
        };
        t.push_str(&piece.replace('N', &n.to_string()));
    }
    t
}

fuzz_target!(|data: &[u8]| {
    let (tmpl, msgs) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    let recipe;
    let tmpl = match tmpl.split_first() {
        Some((0xFF, rest)) => {
            recipe = shaped(rest);
            recipe.as_str()
        }
        _ => match std::str::from_utf8(tmpl) {
            Ok(t) => t,
            Err(_) => return,
        },
    };
    let messages = msgs
        .and_then(|m| serde_json::from_slice::<serde_json::Value>(m).ok())
        .unwrap_or_else(|| {
            serde_json::json!([
                {"role": "system", "content": "You are a guard."},
                {"role": "user", "content": "Open the gate!"},
                {"role": "assistant", "content": "", "tool_calls": [{"id": "call_0",
                  "type": "function", "function": {"name": "open_gate", "arguments": {"x": 1}}}]},
                {"role": "tool", "content": "{\"ok\": true}", "tool_call_id": "call_0"},
            ])
        });
    let ctx = serde_json::json!({
        "messages": messages,
        "add_generation_prompt": true,
        "bos_token": "<bos>",
        "eos_token": "<eos>",
        "tools": [{"type": "function", "function": {"name": "open_gate", "description": "Open.",
                   "parameters": {"type": "object", "properties": {"x": {"type": "integer"}}}}}],
    });
    let start = Instant::now();
    if let Ok(t) = Template::new(tmpl) {
        let _ = t.render(&ctx);
    }
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "rendering took {:?}",
        start.elapsed()
    );
});
