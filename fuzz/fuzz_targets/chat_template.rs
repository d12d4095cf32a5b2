//! Fuzzes chat-template rendering (src/engine/chat/template.rs): whatever the template text, it
//! renders or answers an error, never a panic, a hang, or memory beyond the fuel's bound. A
//! template comes from the model file, that is from strangers. The input is the template text; a
//! NUL byte splits off a JSON value that replaces the messages.
#![no_main]

use libfuzzer_sys::fuzz_target;
use minerva::engine::chat::template::Template;
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    let (tmpl, msgs) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    let Ok(tmpl) = std::str::from_utf8(tmpl) else { return };
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
