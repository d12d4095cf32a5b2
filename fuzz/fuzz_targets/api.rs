//! Fuzzes the C API surface on the real model: random parameter structs (struct_size included),
//! `repeat_last_n` over all of u32, prompts (any bytes, or up to 4 MiB of special-token text),
//! stop strings, engines with `threads` and `batch_tokens` over their whole range, chat messages,
//! templates and tools, embeddings, and sequences of operations on streams (read, wait, cancel,
//! stats, tool calls, free at any moment). Nothing may crash,
//! hang, abort or leak; every failure must carry a status and a message.
//!
//!   MINERVA_MODEL=... cargo fuzz run api --features api -- -max_total_time=300
#![no_main]

use libfuzzer_sys::fuzz_target;
use minerva::ffi::chat::*;
use minerva::ffi::embed::*;
use minerva::ffi::engine::*;
use minerva::ffi::log::minerva_set_log_callback;
use minerva::ffi::stream::*;
use minerva::ffi::*;
use std::ffi::{c_char, c_void, CString};
use std::sync::OnceLock;

struct Engine(*mut minerva_engine);
unsafe impl Send for Engine {}
unsafe impl Sync for Engine {}

fn engine() -> &'static Engine {
    static E: OnceLock<Engine> = OnceLock::new();
    E.get_or_init(|| {
        let path = CString::new(std::env::var("MINERVA_MODEL").expect("set MINERVA_MODEL")).unwrap();
        let mut e = std::ptr::null_mut();
        unsafe {
            let mut p: minerva_engine_params = std::mem::zeroed();
            minerva_engine_params_init(&mut p, std::mem::size_of_val(&p) as u32);
            p.max_streams = 3;
            p.context_tokens = 64;
            p.batch_tokens = 16;
            minerva_set_log_callback(None, std::ptr::null_mut(), MINERVA_LOG_NONE);
            assert_eq!(minerva_engine_new(path.as_ptr(), &p, &mut e), MINERVA_OK);
        }
        Engine(e)
    })
}

unsafe extern "C" fn on_token(ud: *mut c_void, text: *const c_char, len: usize) -> minerva_control {
    // The contract: valid UTF-8, never empty, NUL-terminated.
    let bytes = unsafe { std::slice::from_raw_parts(text as *const u8, len + 1) };
    assert!(len > 0 && bytes[len] == 0 && std::str::from_utf8(&bytes[..len]).is_ok());
    let budget = unsafe { &mut *(ud as *mut u32) };
    if *budget == 0 {
        return 7; // any value other than CONTINUE stops
    }
    *budget -= 1;
    MINERVA_CONTINUE
}

struct Bytes<'a>(&'a [u8]);
impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        let (v, rest) = self.0.split_first().map(|(v, r)| (*v, r)).unwrap_or((0, &[]));
        self.0 = rest;
        v
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    fn take(&mut self, n: usize) -> Vec<u8> {
        let n = n.min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a.to_vec()
    }
}

/// Texts that make llama.cpp's tokenizer work hardest: special tokens, white space, multi-byte
/// characters.
const UNITS: &[&str] = &["<start_of_turn>", "<end_of_turn>\n", "<bos>", "  \t\n", "é€😀", "word "];

const GRAMMARS: [&str; 4] = [
    "root ::= \"yes\" | \"no\"",
    "root ::= [a-z]+ (\" \" [a-z]+)*",
    "root ::= x\nx ::= \"(\" x? \")\"",
    "root ::= [^\\x00-\\x1f]{0,8}",
];
const SCHEMAS: [&str; 3] = [
    "{\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"integer\"}}}",
    "{\"type\": \"array\", \"items\": {\"enum\": [1, \"x\", null]}}",
    "{\"type\": \"string\", \"pattern\": \"^[a-c]{2,3}$\"}",
];

const ROLES: [&str; 6] = ["system", "user", "assistant", "tool", "narrator", ""];
const TEMPLATES: [&str; 9] = [
    "chatml",
    "gemma",
    "{% for m in messages %}<{{ m.role }}>{{ m.content | trim }}{% endfor %}{{ tools | tojson }}",
    "{{ raise_exception('no') }}",
    // Hostile shapes: nesting by a loop, a namespace that holds itself, shared lists, huge splits,
    // CRLF line ends and a backslash-newline in a literal.
    "{% set ns = namespace(v=[]) %}{% for i in range(30000) %}{% set ns.v = [ns.v] %}{% endfor %}{{ ns.v == messages }}{{ ns.v }}",
    "{% set ns = namespace(v=1) %}{% set ns.v = [ns, messages] %}{{ ns|pprint }}{{ {ns.v: 1} }}",
    "{% set ns = namespace(v=[1], w=[1]) %}{% for i in range(40) %}{% set ns.v = [ns.v, ns.v] %}{% set ns.w = [ns.w, ns.w] %}{% endfor %}{{ [ns.v, ns.w]|sort }}",
    "{{ (' ' * 60000000).split(' ')|length }}{{ ('\\n' * 60000000)|lines|length }}",
    "{% for m in messages %}\r\n{{ m.content ~ 'a\\\r\nb' }}\r{% endfor %}\r\n",
];
const TOOLS: [&str; 2] = [
    "[{\"type\": \"function\", \"function\": {\"name\": \"go\", \"parameters\": {\"type\": \"object\", \"properties\": {\"to\": {\"enum\": [\"a\", \"b\"]}}}}}]",
    "[{\"type\": \"function\", \"function\": {\"name\": \"say\"}}]",
];

/// A NUL-terminated text: one of `real`, or fuzz bytes.
fn text(b: &mut Bytes, real: &[&str]) -> Vec<u8> {
    let mut t = if b.u8() % 2 == 0 {
        real[(b.u8() as usize) % real.len()].as_bytes().to_vec()
    } else {
        let n = (b.u8() % 64) as usize;
        b.take(n)
    };
    t.retain(|&c| c != 0);
    t.push(0);
    t
}

fn check_failure(rc: minerva_status) {
    if rc != MINERVA_OK && rc != MINERVA_ERR_BUFFER_TOO_SMALL {
        let msg = unsafe { std::ffi::CStr::from_ptr(minerva_last_error()) };
        assert!(!msg.to_bytes().is_empty(), "a failure without a message");
    }
}

/// Chat messages, params, templates and tools: formatted into buffers of any size.
fn fuzz_chat(b: &mut Bytes) -> (Vec<Vec<u8>>, Vec<minerva_chat_message>, minerva_chat_params) {
    let n = 1 + (b.u8() % 3) as usize;
    let mut texts: Vec<Vec<u8>> = Vec::new();
    for _ in 0..n {
        texts.push(text(b, &ROLES));
        texts.push(text(b, &["Hello", "Go to a.", "{\"tool_calls\": []}", ""]));
        texts.push(text(b, &["[{\"id\": \"call_0\", \"name\": \"go\", \"arguments\": {}}]", "[]"]));
    }
    let mut msgs = Vec::new();
    for i in 0..n {
        let flags = b.u8();
        msgs.push(minerva_chat_message {
            role: if flags & 1 == 0 { texts[3 * i].as_ptr().cast() } else { std::ptr::null() },
            content: if flags & 2 == 0 { texts[3 * i + 1].as_ptr().cast() } else { std::ptr::null() },
            tool_calls_json: if flags & 4 != 0 { texts[3 * i + 2].as_ptr().cast() } else { std::ptr::null() },
            tool_call_id: if flags & 8 != 0 { c"call_0".as_ptr() } else { std::ptr::null() },
        });
    }
    texts.push(text(b, &TEMPLATES));
    texts.push(text(b, &TOOLS));
    let mut c: minerva_chat_params = unsafe { std::mem::zeroed() };
    unsafe { minerva_chat_params_init(&mut c, std::mem::size_of_val(&c) as u32) };
    let flags = b.u8();
    if flags & 1 != 0 {
        c.chat_template = texts[3 * n].as_ptr().cast();
    }
    if flags & 2 != 0 {
        c.tools_json = texts[3 * n + 1].as_ptr().cast();
    }
    c.tool_choice = (b.u8() % 4) as u32;
    c.add_generation_prompt = flags & 4 == 0;
    if flags & 8 != 0 {
        c.struct_size = b.u32() % 64;
    }
    (texts, msgs, c)
}

/// minerva_embed on 0 to 3 texts, into buffers of any size.
fn fuzz_embed(e: *mut minerva_engine, b: &mut Bytes) {
    let texts: Vec<Vec<u8>> = (0..(b.u8() % 4)).map(|_| text(b, &UNITS)).collect();
    let ptrs: Vec<*const c_char> = texts.iter().map(|t| t.as_ptr().cast()).collect();
    let mut p: minerva_embed_params = unsafe { std::mem::zeroed() };
    unsafe { minerva_embed_params_init(&mut p, std::mem::size_of_val(&p) as u32) };
    p.pooling = (b.u8() % 5) as u32;
    p.normalize = b.u8() % 2 == 0;
    let cap = (b.u32() % 4096) as usize;
    let mut out = vec![0f32; cap];
    let mut len = 0;
    let rc = unsafe { minerva_embed(e, ptrs.as_ptr(), ptrs.len(), &p, out.as_mut_ptr(), cap, &mut len) };
    check_failure(rc);
    if rc == MINERVA_OK {
        assert!(out[..len].iter().all(|x| x.is_finite()));
    }
}

/// An engine of its own with `threads` and `batch_tokens` drawn from their whole range (and a
/// small context, so that a load stays fast and small); one stream on it, then freed.
fn fuzz_engine_params(b: &mut Bytes) {
    let path = CString::new(std::env::var("MINERVA_MODEL").expect("set MINERVA_MODEL")).unwrap();
    let mut p: minerva_engine_params = unsafe { std::mem::zeroed() };
    unsafe { minerva_engine_params_init(&mut p, std::mem::size_of_val(&p) as u32) };
    p.threads = b.u32();
    p.batch_tokens = b.u32() % (1 << 17);
    p.max_streams = 1 + (b.u8() % 4) as u32;
    p.context_tokens = 8 + (b.u32() % 512);
    p.gpu_layers = b.u32() as i32;
    let mut e = std::ptr::null_mut();
    let rc = unsafe { minerva_engine_new(path.as_ptr(), &p, &mut e) };
    if rc != MINERVA_OK {
        assert!(e.is_null());
        let msg = unsafe { std::ffi::CStr::from_ptr(minerva_last_error()) };
        assert!(!msg.to_bytes().is_empty(), "a failure without a message");
        return;
    }
    let mut g: minerva_generate_params = unsafe { std::mem::zeroed() };
    unsafe { minerva_generate_params_init(&mut g, std::mem::size_of_val(&g) as u32) };
    g.max_tokens = 2;
    let rc = unsafe { minerva_generate(e, c"Hello".as_ptr(), &g, None, std::ptr::null_mut(), std::ptr::null_mut()) };
    assert!(rc == MINERVA_OK || rc == MINERVA_ERR_CONTEXT_FULL, "status {rc}");
    unsafe { minerva_engine_free(e) };
}

fuzz_target!(|data: &[u8]| {
    let e = engine().0;
    let mut b = Bytes(data);
    // Short inputs read zeros: they go to the common path, not to a new engine (seconds each).
    let mode = b.u8();
    if mode % 32 == 31 {
        fuzz_engine_params(&mut b);
        return;
    }
    if mode % 32 == 30 {
        fuzz_embed(e, &mut b);
        return;
    }
    let mut g: minerva_generate_params = unsafe { std::mem::zeroed() };
    unsafe { minerva_generate_params_init(&mut g, std::mem::size_of_val(&g) as u32) };
    g.max_tokens = (b.u8() % 8) as u32;
    g.temperature = f32::from_bits(b.u32());
    g.top_k = b.u32() as i32;
    g.top_p = f32::from_bits(b.u32());
    g.min_p = f32::from_bits(b.u32());
    g.repeat_penalty = if b.u8() % 2 == 0 { 1.0 } else { f32::from_bits(b.u32()) };
    g.repeat_last_n = match b.u8() % 4 {
        0 => b.u32(),
        1 => u32::MAX - (b.u8() as u32),
        2 => (1 << 20) + (b.u8() as u32) - 128,
        _ => b.u8() as u32,
    };
    g.seed = b.u32() as u64;
    g.presence_penalty = if b.u8() % 4 == 0 { f32::from_bits(b.u32()) } else { 0.0 };
    g.frequency_penalty = if b.u8() % 4 == 0 { f32::from_bits(b.u32()) } else { 0.0 };
    let biases: Vec<minerva_logit_bias> = (0..(b.u8() % 3))
        .map(|_| minerva_logit_bias { token: b.u32() as i32 % 300_000, bias: f32::from_bits(b.u32()) })
        .collect();
    // Now and then every token banned, or all but a few.
    let ban_all: Vec<minerva_logit_bias> = match b.u8() % 16 {
        0 => (0..262_144).map(|t| minerva_logit_bias { token: t, bias: f32::NEG_INFINITY }).collect(),
        1 => (3..262_144).map(|t| minerva_logit_bias { token: t, bias: f32::NEG_INFINITY }).collect(),
        _ => Vec::new(),
    };
    let biases = if ban_all.is_empty() { biases } else { ban_all };
    g.logit_bias = if biases.is_empty() { std::ptr::null() } else { biases.as_ptr() };
    g.logit_bias_count = biases.len();
    // A grammar or a JSON schema: one of a few real ones, fuzz bytes, or a shape that once
    // crashed or stalled an engine: a chain of rules each beginning with the next, a chain of
    // $refs, an enum of thousands of values.
    let structured = b.u8();
    let grammar_text = text(&mut b, &GRAMMARS);
    let schema_text = text(&mut b, &SCHEMAS);
    let length = (b.u32() % 120_000) as usize;
    let shaped: Vec<u8> = match structured % 8 {
        3 => {
            let mut g = String::from("root ::= r0\n");
            for i in 0..length {
                g.push_str(&format!("r{i} ::= r{}\n", i + 1));
            }
            g.push_str(&format!("r{length} ::= \"a\"\n"));
            g.into_bytes()
        }
        4 => {
            let n = length % 12_000;
            let defs: Vec<String> = (0..n)
                .map(|i| format!("\"a{i}\": {{\"$ref\": \"#/$defs/a{}\"}}", i + 1))
                .chain([format!("\"a{n}\": {{\"type\": \"integer\"}}")])
                .collect();
            format!("{{\"$ref\": \"#/$defs/a0\", \"$defs\": {{{}}}}}", defs.join(", ")).into_bytes()
        }
        5 => {
            let values: Vec<String> = (0..length % 4_000).map(|i| format!("\"v{i}-{}\"", i * 7919 % 1000)).collect();
            format!("{{\"enum\": [{}]}}", values.join(", ")).into_bytes()
        }
        _ => Vec::new(),
    };
    let shaped = [shaped, vec![0]].concat();
    g.grammar = match structured % 8 {
        1 => grammar_text.as_ptr() as *const c_char,
        3 => shaped.as_ptr() as *const c_char,
        _ => std::ptr::null(),
    };
    g.json_schema = match structured % 8 {
        2 => schema_text.as_ptr() as *const c_char,
        4 | 5 => shaped.as_ptr() as *const c_char,
        _ => std::ptr::null(),
    };
    g.ignore_eos = b.u8() % 2 == 0;
    g.cache_prompt = b.u8() % 2 == 0;
    if b.u8() % 8 == 0 {
        g.struct_size = b.u32();
    }
    let n_stops = (b.u8() % 3) as usize;
    let stops: Vec<Vec<u8>> = (0..n_stops)
        .map(|_| {
            let n = (b.u8() % 6) as usize;
            let mut s = b.take(n);
            s.retain(|&c| c != 0);
            s.push(0);
            s
        })
        .collect();
    let stop_ptrs: Vec<*const c_char> = stops.iter().map(|s| s.as_ptr() as *const c_char).collect();
    g.stop = if n_stops > 0 && b.u8() % 8 != 0 { stop_ptrs.as_ptr() } else { std::ptr::null() };
    g.stop_count = n_stops;
    let mut prompt = if b.u8() % 8 == 0 {
        // Up to 4 MiB of one unit repeated, with fuzz bytes around it.
        let unit = UNITS[(b.u8() as usize) % UNITS.len()].as_bytes();
        let bytes = (b.u32() as usize) % (4 << 20);
        let head = (b.u8() % 16) as usize;
        let mut p = b.take(head);
        p.extend(unit.iter().cycle().take(bytes));
        p
    } else {
        let plen = (b.u8() % 48) as usize;
        b.take(plen)
    };
    prompt.retain(|&c| c != 0);
    prompt.push(0);
    let mut budget: u32 = (b.u8() % 6) as u32;
    let callback = b.u8() % 2 == 0;
    let mut s = std::ptr::null_mut();
    let chat = (mode % 4 == 2).then(|| fuzz_chat(&mut b));
    let rc = match &chat {
        Some((_texts, msgs, c)) => unsafe {
            let cap = (b.u8() as usize) * 4;
            let mut buf = vec![0u8; cap];
            let mut len = 0;
            let rc = minerva_chat_format(e, msgs.as_ptr(), msgs.len(), c, buf.as_mut_ptr().cast(), cap, &mut len);
            check_failure(rc);
            if rc == MINERVA_OK {
                assert!(len < cap || (len == cap && cap > 0) || len == 0);
            }
            minerva_chat_stream_new(
                e,
                msgs.as_ptr(),
                msgs.len(),
                c,
                &g,
                if callback { Some(on_token) } else { None },
                &mut budget as *mut u32 as *mut c_void,
                &mut s,
            )
        },
        None => unsafe {
            minerva_stream_new(
                e,
                prompt.as_ptr() as *const c_char,
                &g,
                if callback { Some(on_token) } else { None },
                &mut budget as *mut u32 as *mut c_void,
                &mut s,
            )
        },
    };
    if rc != MINERVA_OK {
        assert!(s.is_null());
        let msg = unsafe { std::ffi::CStr::from_ptr(minerva_last_error()) };
        assert!(!msg.to_bytes().is_empty(), "a failure without a message");
        return;
    }
    // Operations in any order; free always comes last, at any moment.
    for _ in 0..(b.u8() % 6) {
        match b.u8() % 6 {
            0 => unsafe { minerva_stream_cancel(s) },
            5 => {
                let cap = (b.u8() as usize) * 2;
                let mut buf = vec![0u8; cap];
                let mut len = 0;
                let rc = unsafe { minerva_stream_tool_calls(s, buf.as_mut_ptr().cast(), cap, &mut len) };
                check_failure(rc);
                if rc == MINERVA_OK {
                    assert!(std::str::from_utf8(&buf[..len]).is_ok());
                }
            }
            1 => {
                let mut buf = [0u8; 16];
                let (mut n, mut fin) = (0usize, false);
                let cap = 4 + (b.u8() % 12) as usize;
                let rc = unsafe {
                    minerva_stream_read(s, buf.as_mut_ptr() as *mut c_char, cap, &mut n, &mut fin, 5)
                };
                assert_eq!(rc, MINERVA_OK);
                assert!(n <= cap && std::str::from_utf8(&buf[..n]).is_ok());
            }
            2 => {
                let rc = unsafe { minerva_stream_wait(s, (b.u8() % 20) as i32) };
                assert!(rc != MINERVA_ERR_INTERNAL);
            }
            3 => {
                let mut st = minerva_stream_stats::default();
                assert_eq!(unsafe { minerva_stream_get_stats(s, &mut st) }, MINERVA_OK);
            }
            _ => {
                let _ = unsafe { std::ffi::CStr::from_ptr(minerva_stream_error(s)) };
            }
        }
    }
    // The budget lives on this stack frame: the stream must be over before it goes.
    unsafe { minerva_stream_free(s) };
});
