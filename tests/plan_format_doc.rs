//! `docs/plan-format.md` against the schema, so the tour of the plan cannot drift: a section
//! for every top-level key and none for a key that is gone, "(required)" exactly on the
//! required ones, every example valid — all of them together form a plan `validate` accepts
//! — and every source and target kind, secret reference and `tls` value named.

use std::collections::BTreeSet;
use std::path::Path;

use cutover::plan::{self, Options};

const DOC: &str = "docs/plan-format.md";

fn schema() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string("schemas/plan.schema.json").unwrap()).unwrap()
}

/// `(key, required?, its yaml example)` for every `## \`key\`` section.
fn key_sections(doc: &str) -> Vec<(String, bool, String)> {
    doc.split("\n## ")
        .skip(1)
        .filter(|section| section.starts_with('`'))
        .map(|section| {
            let heading = section.lines().next().unwrap();
            let key = heading.split('`').nth(1).unwrap().to_string();
            let blocks: Vec<&str> = section.split("```yaml\n").skip(1).collect();
            assert_eq!(
                blocks.len(),
                1,
                "`{key}`: one example, not {}",
                blocks.len()
            );
            let example = blocks[0].split("```").next().unwrap().to_string();
            (key, heading.contains("(required)"), example)
        })
        .collect()
}

#[test]
fn every_top_level_key_has_a_section_with_a_valid_example() {
    let doc = std::fs::read_to_string(DOC).unwrap();
    let schema = schema();
    let keys: BTreeSet<String> = schema["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let required: BTreeSet<String> = schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    let sections = key_sections(&doc);
    let documented: BTreeSet<String> = sections.iter().map(|s| s.0.clone()).collect();
    assert_eq!(
        documented, keys,
        "sections of {DOC} vs the schema's top-level keys"
    );
    for (key, marked_required, example) in &sections {
        assert_eq!(
            *marked_required,
            required.contains(key),
            "`{key}`: \"(required)\" in {DOC} must match the schema"
        );
        assert!(
            example.starts_with(&format!("{key}:")),
            "`{key}`'s example must set `{key}`:\n{example}"
        );
    }

    // Together, the examples are a plan (written as if it were in plans/, where the files
    // they name exist).
    let whole: String = sections.iter().map(|s| s.2.as_str()).collect();
    let loaded = plan::load_str(whole.clone(), DOC, Path::new("plans"), Options::default());
    assert_eq!(
        loaded.report.errors(),
        0,
        "the examples of {DOC} together:\n{whole}\n{:#?}",
        loaded.report.diagnostics
    );
    assert!(loaded.valid().is_some());
}

#[test]
fn every_kind_secret_reference_and_tls_value_is_named() {
    let doc = std::fs::read_to_string(DOC).unwrap();
    let schema = schema();
    let defs = &schema["$defs"];
    for def in ["Source", "Target"] {
        for variant in defs[def]["oneOf"].as_array().unwrap() {
            let kind = variant["properties"]["kind"]["const"].as_str().unwrap();
            assert!(
                doc.contains(&format!("kind: {kind}")),
                "{DOC} never names `kind: {kind}` ({def})"
            );
        }
    }
    for variant in defs["Tls"]["oneOf"].as_array().unwrap() {
        let value = variant["const"].as_str().unwrap();
        assert!(
            doc.contains(&format!("tls: {value}")),
            "{DOC} never explains `tls: {value}`"
        );
    }
    assert!(doc.contains("allow_plaintext: true"));
    // The secret references: each `{ <name>: … }` form of the schema's SecretRef.
    let mut forms = 0;
    for variant in defs["SecretRef"]["anyOf"].as_array().unwrap() {
        let Some(reference) = variant["$ref"].as_str() else {
            continue;
        };
        let def = &defs[reference.trim_start_matches("#/$defs/")];
        for name in def["required"].as_array().unwrap() {
            let name = name.as_str().unwrap();
            assert!(
                doc.contains(&format!("{{ {name}: ")),
                "{DOC} never shows `{{ {name}: … }}`"
            );
            forms += 1;
        }
    }
    assert_eq!(forms, 3, "env, file, command");
}
