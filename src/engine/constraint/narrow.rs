//! What minerva changes in a JSON schema before llguidance compiles it: it narrows what the
//! schema leaves open, so that a small model cannot write on until `max_tokens`, and the output
//! stays valid against the schema as given.
//!
//! - A number without bounds gets at most 16 digits before the point and 10 after it (llama.cpp's
//!   conversion allowed 16 and 16): a JSON number has no length, and a model can write digits
//!   for ever ("2000000..."). The digits after the point are bounded by a `multipleOf`, not
//!   where the schema has one of its own.
//! - An object that says nothing of `additionalProperties` (nor `patternProperties`) gets none,
//!   as with llama.cpp's conversion: left open, a small model adds property after property, the
//!   same key again too. Not where the schema uses `allOf`: its parts each list some of an
//!   object's properties, and closing each would leave no object that satisfies them all.
//! - Counts written `2.0` (integers to JSON Schema) are written `2`, as llguidance requires.
//!
//! Only subschemas are changed, found by the keywords that hold them: a property named like a
//! keyword, or data in `enum`, `const`, `default` or `examples`, is left alone.

use serde_json::Value;

const NUMBER_BOUND: f64 = 9_999_999_999_999_999.0;
const NUMBER_STEP: f64 = 1e-10;
const COUNTS: [&str; 8] = [
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "minProperties",
    "maxProperties",
    "minContains",
    "maxContains",
];

/// Narrows `schema` in place (see the module's text).
pub(super) fn narrow(schema: &mut Value) {
    let close = !uses(schema, "allOf");
    // llguidance merges the `multipleOf`s of combined schemas by their least common multiple in
    // 32 bits: one of minerva's steps beside one of the schema's own could overflow it.
    let step = !uses(schema, "multipleOf");
    each_schema(schema, &mut |o| {
        whole_counts(o);
        bound_numbers(o, step);
        if close {
            close_object(o);
        }
    });
}

/// Calls `f` on every schema object in `root` (root included), iteratively (a schema may nest
/// deeply): the values of the keywords that hold one subschema, a list of them, or a map of
/// names to them.
fn each_schema(root: &mut Value, f: &mut dyn FnMut(&mut serde_json::Map<String, Value>)) {
    const ONE: [&str; 11] = [
        "items",
        "additionalItems",
        "additionalProperties",
        "contains",
        "not",
        "if",
        "then",
        "else",
        "propertyNames",
        "unevaluatedItems",
        "unevaluatedProperties",
    ];
    const LIST: [&str; 5] = ["allOf", "anyOf", "oneOf", "prefixItems", "items"];
    const MAP: [&str; 5] = [
        "properties",
        "patternProperties",
        "$defs",
        "definitions",
        "dependentSchemas",
    ];
    let mut stack = vec![root];
    while let Some(v) = stack.pop() {
        let Value::Object(o) = v else { continue };
        f(o);
        for (k, v) in o.iter_mut() {
            let k = k.as_str();
            if ONE.contains(&k) && v.is_object() {
                stack.push(v);
            } else if MAP.contains(&k) {
                if let Value::Object(m) = v {
                    stack.extend(m.values_mut());
                }
            } else if LIST.contains(&k) {
                if let Value::Array(a) = v {
                    stack.extend(a.iter_mut());
                }
            }
        }
    }
}

/// Whether `type` allows `t` (a schema without `type` allows every type).
fn allows(o: &serde_json::Map<String, Value>, t: &str) -> bool {
    match o.get("type") {
        None => true,
        Some(Value::String(s)) => s == t,
        Some(Value::Array(ts)) => ts.iter().any(|s| s.as_str() == Some(t)),
        Some(_) => false,
    }
}

/// A schema that fixes its values (`enum`, `const`) or is another's (`$ref`) needs no bounds.
fn is_open(o: &serde_json::Map<String, Value>) -> bool {
    !o.contains_key("enum") && !o.contains_key("const") && !o.contains_key("$ref")
}

fn whole_counts(o: &mut serde_json::Map<String, Value>) {
    for (k, v) in o.iter_mut() {
        if COUNTS.contains(&k.as_str()) && !v.is_u64() {
            if let Some(f) = v.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0) {
                if f <= u64::MAX as f64 {
                    *v = Value::from(f as u64);
                }
            }
        }
    }
}

/// Bounds each open side of a schema that allows numbers (the keywords apply to numbers only,
/// so a schema of any type keeps its other types as they were).
fn bound_numbers(o: &mut serde_json::Map<String, Value>, step: bool) {
    let (integer, number) = (allows(o, "integer"), allows(o, "number"));
    if !(integer || number) || !is_open(o) {
        return;
    }
    if !o.contains_key("minimum") && !o.contains_key("exclusiveMinimum") {
        o.insert("minimum".into(), (-NUMBER_BOUND).into());
    }
    if !o.contains_key("maximum") && !o.contains_key("exclusiveMaximum") {
        o.insert("maximum".into(), NUMBER_BOUND.into());
    }
    if number && step && !o.contains_key("multipleOf") {
        o.insert("multipleOf".into(), NUMBER_STEP.into());
    }
}

/// `"additionalProperties": false` for an object schema that lists its properties and says
/// nothing of others.
fn close_object(o: &mut serde_json::Map<String, Value>) {
    if allows(o, "object")
        && o.contains_key("properties")
        && !o.contains_key("additionalProperties")
        && !o.contains_key("patternProperties")
        && !o.contains_key("unevaluatedProperties")
    {
        o.insert("additionalProperties".into(), false.into());
    }
}

/// Whether a subschema of `root` has `keyword`.
fn uses(root: &mut Value, keyword: &str) -> bool {
    let mut found = false;
    each_schema(root, &mut |o| found |= o.contains_key(keyword));
    found
}

#[cfg(test)]
mod tests {
    use super::narrow;
    use serde_json::{json, Value};

    fn narrowed(v: Value) -> Value {
        let mut v = v;
        narrow(&mut v);
        v
    }

    #[test]
    fn numbers_get_bounds_where_open() {
        let v = narrowed(json!({"type": "number"}));
        assert_eq!(v["maximum"], json!(9_999_999_999_999_999.0));
        assert_eq!(v["multipleOf"], json!(1e-10));
        let v = narrowed(json!({"type": "integer", "minimum": 0}));
        assert_eq!(v["minimum"], json!(0));
        assert!(v.get("multipleOf").is_none());
        // A schema of any type: the bounds apply to its numbers only.
        assert!(narrowed(json!({"maxItems": 2})).get("maximum").is_some());
        assert!(narrowed(json!({"type": "string"})).get("maximum").is_none());
        assert!(narrowed(json!({"enum": [1, 2]})).get("maximum").is_none());
        // No step of minerva's beside a schema's own multipleOf.
        let v = narrowed(json!({"allOf": [{"multipleOf": 2}]}));
        assert!(v.get("multipleOf").is_none());
    }

    #[test]
    fn only_subschemas_change() {
        // Properties named like keywords, and data, stay as they are.
        let v = narrowed(json!({"type": "object", "properties": {
            "properties": {"type": "string"}, "maxItems": {"type": "boolean"}},
            "default": {"type": "number", "properties": {}}}));
        assert_eq!(v["additionalProperties"], json!(false));
        assert!(v["properties"].get("additionalProperties").is_none());
        assert!(v["properties"].get("minimum").is_none());
        assert_eq!(v["default"], json!({"type": "number", "properties": {}}));
        assert!(v["properties"]["maxItems"].get("maximum").is_none());
        // Nested schemas are reached through the keywords that hold them.
        let v = narrowed(json!({"items": {"anyOf": [{"type": "integer"}]}, "maxItems": 2.0}));
        assert!(v["items"]["anyOf"][0].get("maximum").is_some());
        assert_eq!(v["maxItems"], json!(2));
    }

    #[test]
    fn all_of_keeps_objects_open() {
        let v = narrowed(json!({"allOf": [{"properties": {"a": {}}}, {"properties": {"b": {}}}]}));
        assert!(v["allOf"][0].get("additionalProperties").is_none());
    }
}
