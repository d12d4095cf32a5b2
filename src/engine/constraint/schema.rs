//! Checks of a `json_schema` before llama.cpp converts it to a grammar.
//!
//! llama.cpp's conversion recurses once per level of the schema it visits, and a `$ref` takes it
//! into the schema referred to (each one the first time it meets it): a chain of 10,000 `$ref`s,
//! each to a schema that is the next `$ref`, overflowed an 8 MiB stack, although the text nests
//! two levels deep. The depth the conversion can reach, refs followed, is measured here first.

use crate::engine::error::{Error, Result};
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;

/// The deepest a schema may reach, counting one level per object or array and following each
/// `$ref` into its target. Real schemas reach a few dozen; the conversion, run with
/// [`super::stack::DEEP_STACK`], holds this many with room to spare.
pub const MAX_SCHEMA_DEPTH: usize = 1_000;

/// Refuses a schema that reaches deeper than [`MAX_SCHEMA_DEPTH`] through its `$ref`s. A text
/// that is not JSON passes: the conversion says what is wrong with it.
pub fn check_refs(text: &str) -> Result<()> {
    let mut de = serde_json::Deserializer::from_str(text);
    // The text was checked to nest at most MAX_NESTING (256) deep; serde_json's own limit is 128.
    de.disable_recursion_limit();
    let Ok(schema) = Value::deserialize(&mut de) else {
        return Ok(());
    };
    let depth = depth(&schema);
    if depth > MAX_SCHEMA_DEPTH {
        return Err(Error::invalid(format!(
            "json_schema reaches more than {MAX_SCHEMA_DEPTH} levels deep through its $refs \
             (a chain of $ref?)"
        )));
    }
    Ok(())
}

/// How deep `root` reaches: one level per object or array, each local `$ref` ("#/..." or "#")
/// followed into its target, each target measured once (a `$ref` back into a target being
/// measured counts nothing more: the conversion refers to it by name there). Iterative: the
/// schema itself may be the deep thing. Stops counting past [`MAX_SCHEMA_DEPTH`].
fn depth(root: &Value) -> usize {
    enum Child<'a> {
        Value(&'a Value),
        Ref(&'a str),
    }
    struct Frame<'a> {
        children: Vec<Child<'a>>,
        deepest: usize,
        /// The `$ref` whose target this frame measures.
        target_of: Option<&'a str>,
    }
    fn frame<'a>(v: &'a Value, target_of: Option<&'a str>) -> Frame<'a> {
        let children = match v {
            Value::Array(a) => a.iter().map(Child::Value).collect(),
            Value::Object(o) => o
                .iter()
                .map(|(k, v)| match (k.as_str(), v.as_str()) {
                    ("$ref", Some(r)) if r.starts_with('#') => Child::Ref(r),
                    _ => Child::Value(v),
                })
                .collect(),
            _ => Vec::new(),
        };
        Frame {
            children,
            deepest: 0,
            target_of,
        }
    }
    // The depth each $ref target reaches (None while it is being measured).
    let mut targets: HashMap<&str, Option<usize>> = HashMap::from([("#", None)]);
    let mut stack = vec![frame(root, Some("#"))];
    loop {
        if stack.len() > MAX_SCHEMA_DEPTH {
            return stack.len();
        }
        let top = stack.last_mut().expect("a frame");
        match top.children.pop() {
            Some(Child::Value(v @ (Value::Array(_) | Value::Object(_)))) => {
                stack.push(frame(v, None))
            }
            Some(Child::Value(_)) => {}
            Some(Child::Ref(r)) => match targets.get(r) {
                Some(d) => top.deepest = top.deepest.max(d.unwrap_or(0)),
                None => {
                    if let Some(target) = resolve(root, r) {
                        targets.insert(r, None);
                        stack.push(frame(target, Some(r)));
                    }
                }
            },
            None => {
                let done = stack.pop().expect("a frame");
                let reached = done.deepest + 1;
                if let Some(r) = done.target_of {
                    targets.insert(r, Some(reached));
                }
                match stack.last_mut() {
                    Some(parent) => parent.deepest = parent.deepest.max(reached),
                    None => return reached,
                }
            }
        }
    }
}

/// The value a local JSON pointer ("#/$defs/a", "#") names in `root`.
fn resolve<'a>(root: &'a Value, reference: &str) -> Option<&'a Value> {
    let pointer = &reference[1..];
    if pointer.is_empty() {
        return Some(root);
    }
    root.pointer(pointer)
}

#[cfg(test)]
mod tests {
    use super::{check_refs, depth};

    fn chain(n: usize) -> String {
        let defs: Vec<String> = (0..n)
            .map(|i| format!("\"a{i}\": {{\"$ref\": \"#/$defs/a{}\"}}", i + 1))
            .chain([format!("\"a{n}\": {{\"type\": \"string\"}}")])
            .collect();
        format!(
            "{{\"$ref\": \"#/$defs/a0\", \"$defs\": {{{}}}}}",
            defs.join(", ")
        )
    }

    #[test]
    fn depth_follows_refs() {
        let v = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap();
        assert_eq!(depth(&v(r#"{"type": "string"}"#)), 1);
        assert_eq!(depth(&v(r#"{"properties": {"a": {"type": "string"}}}"#)), 3);
        // A recursive schema: the $ref back into itself adds nothing.
        let tree = r##"{"type": "object", "properties": {"child": {"$ref": "#"}}}"##;
        assert_eq!(depth(&v(tree)), 3);
        // Each link of a chain is one level deeper.
        let d10 = depth(&v(&chain(10)));
        let d20 = depth(&v(&chain(20)));
        assert_eq!(d20 - d10, 10);
    }

    #[test]
    fn ref_chains_are_bounded() {
        assert!(check_refs(&chain(100)).is_ok());
        let e = check_refs(&chain(10_000)).unwrap_err();
        assert!(e.message.contains("$ref"), "{}", e.message);
        // Not JSON: left to the conversion to name.
        assert!(check_refs("{").is_ok());
    }
}
