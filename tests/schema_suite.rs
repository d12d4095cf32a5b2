//! The official JSON Schema Test Suite (draft 2020-12, vendored in tests/json-schema-suite/) through
//! constrained decoding: every schema is accepted or refused with its keyword named, and an
//! accepted schema never lets data through that the suite marks invalid (each datum written as
//! JSON and followed token by token, in the model's own tokens, as a stream would write it).
//! Valid data an accepted schema refuses is counted: minerva narrows what schemas leave open
//! (unbounded numbers, objects without `additionalProperties`, whitespace), which is allowed.

mod common;

use minerva::engine::{GenerateParams, Status};
use serde_json::Value;

#[test]
fn the_suite_is_enforced_or_refused_by_name() {
    let _one = common::one_at_a_time();
    let engine = common::engine(1, 256);
    let dir = common::root().join("tests/json-schema-suite");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 40, "{dir:?}");
    let (mut groups, mut accepted, mut loosened) = (0, 0, Vec::new());
    let (mut data, mut narrowed) = (0, 0);
    for f in &files {
        let name = f.file_stem().unwrap().to_string_lossy().into_owned();
        let suite: Value = serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap();
        let (mut file_acc, mut file_groups) = (0, 0);
        let mut refusals = Vec::new();
        for g in suite.as_array().unwrap() {
            groups += 1;
            file_groups += 1;
            let params = GenerateParams {
                json_schema: Some(g["schema"].to_string()),
                ..Default::default()
            };
            // Each group's first datum decides acceptance; a refusal names its reason.
            let mut this_accepted = None;
            for t in g["tests"].as_array().unwrap() {
                let text = serde_json::to_string(&t["data"]).unwrap();
                match engine.constraint_accepts(&params, &text) {
                    Err(e) => {
                        assert_eq!(e.status, Status::InvalidArgument, "{name}: {}", e.message);
                        assert!(e.message.starts_with("json_schema"), "{}", e.message);
                        refusals.push(e.message.chars().take(90).collect::<String>());
                        this_accepted = Some(false);
                        break;
                    }
                    Ok(ok) => {
                        this_accepted = Some(true);
                        data += 1;
                        let valid = t["valid"].as_bool().unwrap();
                        if ok && !valid {
                            loosened.push(format!(
                                "{name}: {}: {} ({})",
                                g["description"], text, t["description"]
                            ));
                        }
                        if valid && !ok {
                            narrowed += 1;
                        }
                    }
                }
            }
            if this_accepted == Some(true) {
                accepted += 1;
                file_acc += 1;
            }
        }
        refusals.sort();
        refusals.dedup();
        eprintln!(
            "{name:<24} {file_acc:>2} of {file_groups:>2} accepted{}",
            refusals
                .first()
                .map(|r| format!("; refused: {r}"))
                .unwrap_or_default()
        );
    }
    eprintln!(
        "{accepted} of {groups} schemas accepted; {data} data followed: {} invalid let through, \
         {narrowed} valid refused (narrowed)",
        loosened.len()
    );
    assert!(
        loosened.is_empty(),
        "invalid data accepted:\n{}",
        loosened.join("\n")
    );
}
