//! No input makes the loader panic: arbitrary bytes, arbitrary YAML-shaped text, and
//! mutations of a real plan all end in diagnostics or a plan.

use cutover::plan::{load_str, Options};
use proptest::prelude::*;

const SEED: &str = include_str!("../plans/acme-to-m365.yaml");

fn load(text: &str) -> cutover::plan::Loaded {
    let loaded = load_str(
        text.to_string(),
        "fuzz.yaml",
        std::path::Path::new("plans"),
        Options::default(),
    );
    // Whatever happened, every diagnostic must point inside the text.
    for d in &loaded.report.diagnostics {
        for label in &d.labels {
            assert!(
                label.span.end <= loaded.report.source.len(),
                "span {:?} outside the text",
                label.span
            );
            assert!(label.span.start <= label.span.end);
        }
    }
    loaded
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text(text in "\\PC{0,400}") {
        load(&text);
    }

    #[test]
    fn yaml_shaped_text(text in "([a-z_]{1,8}: ?(\\[|\\{|\\]|\\}|-|\"|'|&a|\\*a|!!str|[0-9]{1,6}|[a-z@.]{0,12}|\\n  |\\n- |, )*\\n){0,12}") {
        load(&text);
    }

    #[test]
    fn mutated_seed_plan(cut in 0usize..SEED.len(), insert in "\\PC{0,8}", remove in 0usize..16) {
        let mut text = SEED.to_string();
        let mut at = cut.min(text.len());
        while !text.is_char_boundary(at) { at -= 1; }
        let mut end = (at + remove).min(text.len());
        while !text.is_char_boundary(end) { end -= 1; }
        text.replace_range(at..end, &insert);
        load(&text);
    }
}

#[test]
fn arbitrary_bytes_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plan.yaml");
    for bytes in [
        &b"\xff\xfe\x00name: x"[..],
        b"version: 1\n\xc3\x28",
        b"",
        b"\x00\x00\x00",
        b"- - - -\n",
    ] {
        std::fs::write(&path, bytes).unwrap();
        let loaded = cutover::plan::load_file(&path, Options::default()).unwrap();
        assert!(loaded.report.errors() > 0, "{bytes:?} is not a plan");
    }
}

#[test]
fn deep_nesting_is_refused_not_a_stack_overflow() {
    let text = format!("a: {}{}", "[".repeat(100_000), "]".repeat(100_000));
    let loaded = load(&text);
    assert!(loaded.plan.is_none(), "refused");
    assert!(!loaded.report.diagnostics.is_empty(), "with a diagnostic");
}
