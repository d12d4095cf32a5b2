//! Jinja chat templates, rendered by minijinja as Hugging Face's `transformers` and llama.cpp's
//! server render them: `messages`, `add_generation_prompt`, `tools`, `bos_token`, `eos_token`,
//! `raise_exception`, `strftime_now`, Python's string and dict methods, `trim_blocks` and
//! `lstrip_blocks` on, Python's `json.dumps` spacing for `tojson`.
//!
//! Templates come from model files, that is from strangers, so rendering is bounded: minijinja's
//! fuel charges every instruction and every byte a template makes (loops, `~`, `*`, filters, the
//! output), so a template that loops a billion times or builds a gigabyte string stops with an
//! error after [`FUEL`] units of work, in well under a second. llama.cpp's own Jinja engine has no
//! such limit (a 10-million-step loop still ran after 30 s), which is why it is not used here; the
//! tests compare both on the same templates.

use crate::engine::error::{Error, Result};
use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{Environment, ErrorKind};

/// The work one rendering may do. One fuel is one instruction or 64 bytes of data made, so this is
/// at most 2 million instructions or 128 MiB of strings; real templates use a few thousand.
pub const FUEL: u64 = 2_000_000;
/// Nesting of macro calls and includes.
const RECURSION: usize = 64;
/// Longest template text accepted.
pub const MAX_TEMPLATE_BYTES: usize = 1 << 20;
/// Deepest JSON value `tojson` writes (inputs come from parsed JSON, itself limited to 128).
const MAX_JSON_DEPTH: usize = 256;

/// The ChatML template, as llama.cpp's chat code has it; the fallback for a model without a
/// template.
pub const CHATML: &str = "{%- for message in messages -%}\n  {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' -}}\n{%- endfor -%}\n{%- if add_generation_prompt -%}\n  {{- '<|im_start|>assistant\\n' -}}\n{%- endif -%}";

/// A compiled template.
pub struct Template {
    env: Environment<'static>,
    /// The variables the template reads (`tools`, ...).
    reads_tools: bool,
}

impl Template {
    pub fn new(source: &str) -> Result<Template> {
        if source.len() > MAX_TEMPLATE_BYTES {
            return Err(Error::invalid(format!(
                "chat template: {} bytes, more than the {MAX_TEMPLATE_BYTES} accepted",
                source.len()
            )));
        }
        // Jinja2 (Hugging Face's renderer) reads `\r\n` and a lone `\r` as `\n` everywhere in the
        // template, string literals included, before anything else.
        let source = if source.contains('\r') {
            source.replace("\r\n", "\n").replace('\r', "\n")
        } else {
            source.to_owned()
        };
        let mut env = Environment::new();
        env.set_fuel(Some(FUEL));
        env.set_recursion_limit(RECURSION);
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| Error::invalid(format!("chat template: {e}")))?;
        env.set_syntax(syntax);
        env.set_unknown_method_callback(python_method);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", tojson);
        env.add_template_owned("chat", source)
            .map_err(|e| template_error(&e))?;
        let reads_tools = env
            .get_template("chat")
            .map(|t| t.undeclared_variables(false).contains("tools"))
            .unwrap_or(false);
        Ok(Template { env, reads_tools })
    }

    /// Whether the template itself describes `tools` to the model.
    pub fn reads_tools(&self) -> bool {
        self.reads_tools
    }

    /// Renders with `context` (a JSON object of the variables).
    pub fn render(&self, context: &serde_json::Value) -> Result<String> {
        let t = self
            .env
            .get_template("chat")
            .map_err(|e| template_error(&e))?;
        t.render(to_value(context)).map_err(|e| template_error(&e))
    }
}

impl Template {
    /// Renders with `context` only to learn whether the template stays within its bounds on it:
    /// an error only where the rendering ran out of fuel or of recursion (the template's own
    /// errors, `raise_exception` included, are not this question's).
    pub fn within_bounds(&self, context: &serde_json::Value) -> Result<()> {
        let t = self
            .env
            .get_template("chat")
            .map_err(|e| template_error(&e))?;
        match t.render(to_value(context)) {
            Err(e)
                if e.kind() == ErrorKind::OutOfFuel
                    || e.to_string().contains("recursion limit exceeded") =>
            {
                Err(template_error(&e))
            }
            _ => Ok(()),
        }
    }
}

/// The rendering cut right after the last message's content, so the model continues it (as
/// `transformers` does for `continue_final_message`).
pub fn open_final_message(text: String, last: Option<&serde_json::Value>) -> Result<String> {
    let content = last.and_then(|m| m["content"].as_str()).unwrap_or("");
    let content = content.trim_end();
    if content.is_empty() {
        return Err(Error::invalid(
            "continue_final_message: the last assistant message has no content to continue",
        ));
    }
    match text.rfind(content) {
        Some(p) => Ok(text[..p + content.len()].to_owned()),
        None => Err(Error::invalid(
            "continue_final_message: the template does not write the last message's content as \
             it is, so it cannot be left open",
        )),
    }
}

/// A JSON value as a template value (object keys keep their order).
fn to_value(v: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match v {
        J::Null => Value::from(()),
        J::Bool(b) => Value::from(*b),
        J::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::from(i),
            (None, Some(u)) => Value::from(u),
            _ => Value::from(n.as_f64().unwrap_or(f64::NAN)),
        },
        J::String(s) => Value::from(s.as_str()),
        J::Array(a) => Value::from(a.iter().map(to_value).collect::<Vec<_>>()),
        J::Object(o) => Value::from_pairs(o.iter().map(|(k, v)| (k.as_str(), to_value(v)))),
    }
}

/// A template error as the API reports it: the template's own message (what `raise_exception`
/// said, or what minijinja found and where).
fn template_error(e: &minijinja::Error) -> Error {
    let mut msg = match e.kind() {
        ErrorKind::OutOfFuel => format!(
            "chat template: rendering stopped after {FUEL} units of work (the template loops \
             too long or builds too much text)"
        ),
        _ => match e.detail() {
            Some(d) if e.kind() == ErrorKind::InvalidOperation && e.name().is_some() => {
                format!("chat template: {d}")
            }
            _ => format!("chat template: {e}"),
        },
    };
    if let (Some(line), true) = (e.line(), e.kind() != ErrorKind::OutOfFuel) {
        if !msg.contains("(line ") {
            msg.push_str(&format!(" (line {line})"));
        }
    }
    Error::invalid(msg)
}

/// Most memory a Python string method may make. minijinja charges fuel for a method's result
/// only once it exists, so the methods whose result can be far larger than their inputs are
/// checked before they run.
const MAX_METHOD_BYTES: usize = 16 << 20;
/// What one item of a list costs against [`MAX_METHOD_BYTES`]: a template value is 24 bytes,
/// and the list is made twice (`split` goes through the filter of the same name).
const LIST_ITEM_BYTES: usize = 48;

/// Python's string, dict and list methods (minijinja-contrib's `pycompat`), size-checked first.
fn python_method(
    state: &mut minijinja::State,
    value: &Value,
    method: &str,
    args: &[Value],
) -> std::result::Result<Value, minijinja::Error> {
    if let Some(s) = value.as_str() {
        let arg = |i: usize| args.get(i).and_then(|a| a.as_str()).unwrap_or("");
        let too_big = match method {
            "replace" => {
                let (from, to) = (arg(0), arg(1));
                let count = if from.is_empty() {
                    s.chars().count() + 1
                } else {
                    s.matches(from).count()
                };
                s.len().saturating_add(count.saturating_mul(to.len())) > MAX_METHOD_BYTES
            }
            "join" => {
                let items = args.first().map(|a| a.len().unwrap_or(0)).unwrap_or(0);
                let mut total = items.saturating_mul(s.len());
                if total <= MAX_METHOD_BYTES {
                    if let Some(Ok(iter)) = args.first().map(|a| a.try_iter()) {
                        for item in iter.take(MAX_METHOD_BYTES) {
                            total = total.saturating_add(item.as_str().map_or(20, str::len));
                            if total > MAX_METHOD_BYTES {
                                break;
                            }
                        }
                    }
                }
                total > MAX_METHOD_BYTES
            }
            // Lists of pieces: 60 million spaces split took 3 GB before the fuel stopped it.
            "split" | "splitlines" => {
                let most = MAX_METHOD_BYTES / LIST_ITEM_BYTES + 1;
                let pieces = if method == "splitlines" {
                    s.lines().take(most).count()
                } else {
                    let limit = args
                        .get(1)
                        .and_then(Value::as_i64)
                        .filter(|n| *n >= 0)
                        .map_or(most, |n| (n as usize).saturating_add(1).min(most));
                    match args.first().and_then(Value::as_str) {
                        Some(sep) => s.split(sep).take(limit).count(),
                        None => s.split_whitespace().take(limit).count(),
                    }
                };
                pieces.saturating_mul(LIST_ITEM_BYTES) > MAX_METHOD_BYTES
            }
            // A width or precision in a format spec: "{:>1000000000}".
            "format" => s.split('{').skip(1).any(|field| {
                let spec = field.split('}').next().unwrap_or("");
                spec.split(|c: char| !c.is_ascii_digit())
                    .any(|digits| digits.len() > 4)
            }),
            _ => false,
        };
        if too_big {
            return Err(minijinja::Error::new(
                ErrorKind::InvalidOperation,
                format!("str.{method}() would make more than {MAX_METHOD_BYTES} bytes"),
            ));
        }
    }
    minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
}

fn raise_exception(message: String) -> std::result::Result<Value, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
}

/// `strftime_now(format)`: the local time, as Python's `datetime.now().strftime`.
fn strftime_now(format: String) -> std::result::Result<Value, minijinja::Error> {
    let fmt = std::ffi::CString::new(format)
        .map_err(|_| minijinja::Error::new(ErrorKind::InvalidOperation, "NUL in format"))?;
    let mut buf = [0u8; 256];
    // SAFETY: time/localtime_r fill a zeroed tm; strftime writes at most buf.len() bytes.
    let n = unsafe {
        let now = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&now, &mut tm);
        libc::strftime(buf.as_mut_ptr().cast(), buf.len(), fmt.as_ptr(), &tm)
    };
    Ok(Value::from(String::from_utf8_lossy(&buf[..n]).into_owned()))
}

/// `tojson` as `transformers` defines it: Python's `json.dumps(x, ensure_ascii=False)`, spaces
/// after `,` and `:`, `indent=` and `sort_keys=` honoured. (minijinja's own escapes `<` and `'`
/// for HTML, which would change what the model sees.)
fn tojson(v: Value, kwargs: Kwargs) -> std::result::Result<Value, minijinja::Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let _: Option<bool> = kwargs.get("ensure_ascii")?;
    let _: Option<Value> = kwargs.get("separators")?;
    kwargs.assert_all_used()?;
    let mut out = String::new();
    write_json(&v, indent, sort_keys.unwrap_or(false), 0, &mut out)?;
    Ok(Value::from_safe_string(out))
}

/// Longest text `tojson` writes (its fuel is charged once the text exists).
const MAX_JSON_BYTES: usize = 16 << 20;

fn json_too_big() -> minijinja::Error {
    minijinja::Error::new(
        ErrorKind::InvalidOperation,
        format!("tojson: the value's JSON is over {MAX_JSON_BYTES} bytes"),
    )
}

fn write_json(
    v: &Value,
    indent: Option<usize>,
    sort: bool,
    depth: usize,
    out: &mut String,
) -> std::result::Result<(), minijinja::Error> {
    if depth > MAX_JSON_DEPTH {
        return Err(minijinja::Error::new(
            ErrorKind::InvalidOperation,
            "tojson: value nested too deep",
        ));
    }
    let newline = |out: &mut String, d: usize| {
        if let Some(n) = indent {
            out.push('\n');
            out.extend(std::iter::repeat_n(' ', n * d));
        }
    };
    let sep = if indent.is_some() { "," } else { ", " };
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number => {
            if let (true, Some(i)) = (v.is_integer(), v.as_i64()) {
                out.push_str(&i.to_string());
            } else {
                let f = f64::try_from(v.clone()).unwrap_or(f64::NAN);
                if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e16 {
                    out.push_str(&format!("{f:.1}"));
                } else if f.is_finite() {
                    out.push_str(&f.to_string());
                } else {
                    out.push_str(if f.is_nan() {
                        "NaN"
                    } else if f > 0.0 {
                        "Infinity"
                    } else {
                        "-Infinity"
                    });
                }
            }
        }
        ValueKind::String | ValueKind::Bytes | ValueKind::Invalid | ValueKind::Plain => {
            write_str(v.as_str().unwrap_or(&v.to_string()), out)
        }
        ValueKind::Seq | ValueKind::Iterable => {
            if v.len().unwrap_or(0) > MAX_JSON_BYTES / 2 {
                return Err(json_too_big());
            }
            let items: Vec<Value> = v.try_iter()?.take(MAX_JSON_BYTES / 2 + 1).collect();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if out.len() > MAX_JSON_BYTES {
                    return Err(json_too_big());
                }
                if i > 0 {
                    out.push_str(sep);
                }
                newline(out, depth + 1);
                write_json(item, indent, sort, depth + 1, out)?;
            }
            newline(out, depth);
            out.push(']');
        }
        ValueKind::Map => {
            let mut keys: Vec<Value> = v.try_iter()?.take(MAX_JSON_BYTES / 2 + 1).collect();
            if sort {
                keys.sort();
            }
            if keys.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if out.len() > MAX_JSON_BYTES {
                    return Err(json_too_big());
                }
                if i > 0 {
                    out.push_str(sep);
                }
                newline(out, depth + 1);
                write_str(k.as_str().unwrap_or(&k.to_string()), out);
                out.push_str(": ");
                write_json(&v.get_item(k)?, indent, sort, depth + 1, out)?;
            }
            newline(out, depth);
            out.push('}');
        }
        _ => write_str(&v.to_string(), out),
    }
    Ok(())
}

/// A JSON string with non-ASCII characters kept (ensure_ascii=False).
fn write_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}
