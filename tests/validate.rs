//! `cutover validate`: every diagnostic kind, in human and JSON form, pointing at the right
//! line and column; the example plans validate; many files in one call.

mod common;

use common::run;
use cutover::cli::ExitCode;

/// Each broken plan, the diagnostic codes it must produce, and where the first one points.
const BROKEN: &[(&str, &[&str], (usize, usize))] = &[
    ("yaml-syntax", &["yaml-syntax"], (13, 1)),
    (
        "unknown-field",
        &["unknown-field", "unknown-field"],
        (12, 5),
    ),
    (
        "wrong-type",
        &["wrong-type", "wrong-type", "wrong-type"],
        (12, 11),
    ),
    ("missing-field", &["missing-field", "missing-field"], (4, 1)),
    (
        "invalid-value",
        &["invalid-value", "invalid-value"],
        (12, 10),
    ),
    ("unknown-source", &["unknown-source"], (13, 17)),
    ("unknown-user", &["unknown-user"], (15, 13)),
    ("unknown-step", &["unknown-step"], (13, 3)),
    ("duplicate-user", &["duplicate-user"], (12, 12)),
    (
        "duplicate-source",
        &["duplicate-key", "duplicate-source"],
        (10, 3),
    ),
    ("duplicate-step", &["duplicate-step"], (13, 12)),
    (
        "email-outside-domains",
        &["email-outside-domains"],
        (11, 12),
    ),
    ("inline-secret", &["inline-secret"], (13, 47)),
    ("plaintext", &["plaintext-without-opt-in"], (12, 10)),
    ("invalid-host", &["invalid-host"], (6, 29)),
    ("invalid-port", &["invalid-value", "invalid-port"], (12, 11)),
    ("invalid-email", &["invalid-email"], (11, 12)),
    ("invalid-glob", &["invalid-glob"], (16, 30)),
    (
        "missing-file",
        &["outside-plan-folder", "missing-file", "missing-file"],
        (10, 27),
    ),
    ("dependency-cycle", &["dependency-cycle"], (17, 13)),
    ("unsupported-version", &["unsupported-version"], (1, 10)),
    (
        "usage-location",
        &["invalid-url", "missing-setting", "invalid-country"],
        (8, 22),
    ),
    (
        "graph-endpoint",
        &["plaintext-without-opt-in", "invalid-url"],
        (11, 21),
    ),
    (
        "pst-import",
        &[
            "missing-setting",
            "missing-setting",
            "outside-plan-folder",
            "outside-plan-folder",
            "missing-setting",
        ],
        (6, 29),
    ),
];

fn path(name: &str) -> String {
    format!("tests/plans/broken/{name}.yaml")
}

#[test]
fn every_diagnostic_kind_points_at_its_line_and_column() {
    for (name, codes, (line, column)) in BROKEN {
        let result = run(&["validate", "--format", "json", &path(name)]);
        assert_eq!(result.code, ExitCode::Failure, "{name} must be invalid");
        let report: serde_json::Value = serde_json::from_str(&result.stdout).unwrap();
        let diagnostics = report["files"][0]["diagnostics"].as_array().unwrap();
        let found: Vec<&str> = diagnostics
            .iter()
            .map(|d| {
                d["code"]
                    .as_str()
                    .unwrap()
                    .trim_start_matches("cutover::plan::")
            })
            .collect();
        assert_eq!(&found, codes, "{name}: codes");
        let first = &diagnostics[0];
        assert_eq!(
            (
                first["line"].as_u64().unwrap() as usize,
                first["column"].as_u64().unwrap() as usize
            ),
            (*line, *column),
            "{name}: position of {}",
            first["message"]
        );
        assert!(
            diagnostics.iter().all(|d| d["help"].is_string()),
            "{name}: every diagnostic has help"
        );
    }
}

#[test]
fn human_diagnostics_snapshot() {
    for (name, _, _) in BROKEN.iter().chain([&("many-problems", &[][..], (0, 0))]) {
        let result = run(&["validate", &path(name)]);
        insta::assert_snapshot!(
            format!("human-{name}"),
            format!("{}{}", result.stderr, result.stdout)
        );
    }
}

#[test]
fn json_diagnostics_snapshot() {
    for (name, _, _) in BROKEN.iter().chain([&("many-problems", &[][..], (0, 0))]) {
        let result = run(&["validate", "--format", "json", &path(name)]);
        insta::assert_snapshot!(format!("json-{name}"), result.stdout);
    }
}

#[test]
fn all_problems_are_reported_in_one_run() {
    let result = run(&["validate", "--format", "json", &path("many-problems")]);
    let report: serde_json::Value = serde_json::from_str(&result.stdout).unwrap();
    let codes: Vec<&str> = report["files"][0]["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["code"].as_str().unwrap())
        .collect();
    for expected in [
        "invalid-name",
        "inline-secret",
        "plaintext-without-opt-in",
        "wrong-type",
        "unknown-field",
        "email-outside-domains",
        "unknown-source",
        "invalid-date",
        "missing-setting",
        "invalid-duration",
    ] {
        assert!(
            codes.contains(&format!("cutover::plan::{expected}").as_str()),
            "missing {expected} in {codes:?}"
        );
    }
}

#[test]
fn inline_secrets_become_warnings_when_allowed_and_are_never_printed() {
    let strict = run(&["validate", &path("inline-secret")]);
    assert_eq!(strict.code, ExitCode::Failure);
    let relaxed = run(&["validate", "--allow-inline-secrets", &path("inline-secret")]);
    assert_eq!(relaxed.code, ExitCode::Ok);
    assert!(
        relaxed.stderr.contains("warning") || relaxed.stderr.contains('⚠'),
        "{}",
        relaxed.stderr
    );
    assert!(relaxed.stdout.contains("valid, 1 warning"));
    for format in ["human", "json", "github"] {
        let out = run(&["validate", "--format", format, &path("inline-secret")]);
        let all = format!("{}{}", out.stdout, out.stderr);
        assert!(
            !all.contains("hunter2"),
            "{format} output leaks the secret:\n{all}"
        );
    }
    let many = run(&["validate", &path("many-problems")]);
    assert!(!format!("{}{}", many.stdout, many.stderr).contains("s3cr3t"));
}

#[test]
fn github_annotations() {
    let result = run(&[
        "validate",
        "--format",
        "github",
        &path("unknown-field"),
        &path("plaintext"),
    ]);
    assert_eq!(result.code, ExitCode::Failure);
    insta::assert_snapshot!(result.stdout);
}

#[test]
fn example_plans_validate() {
    let mut plans: Vec<String> = std::fs::read_dir("plans")
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .map(|p| p.display().to_string())
        .collect();
    plans.sort();
    assert!(
        plans.len() >= 3,
        "expected the seed, minimal and demo plans, found {plans:?}"
    );
    let mut args = vec!["validate"];
    args.extend(plans.iter().map(String::as_str));
    let result = run(&args);
    assert_eq!(
        result.code,
        ExitCode::Ok,
        "{}{}",
        result.stderr,
        result.stdout
    );
    for plan in &plans {
        let text = std::fs::read_to_string(plan).unwrap();
        assert!(
            text.starts_with("# yaml-language-server: $schema=../schemas/plan.schema.json"),
            "{plan} must start with the schema modeline"
        );
        assert!(result.stdout.contains(&format!("{plan}: valid")));
    }
}

#[test]
fn unreadable_file_is_a_usage_error() {
    let result = run(&["validate", "tests/plans/does-not-exist.yaml"]);
    assert_eq!(result.code, ExitCode::Usage);
    assert!(result
        .stderr
        .contains("cannot read tests/plans/does-not-exist.yaml"));
}

#[test]
fn mixed_valid_and_invalid_files_fail_and_report_each() {
    let result = run(&["validate", "plans/imap-to-imap.yaml", &path("plaintext")]);
    assert_eq!(result.code, ExitCode::Failure);
    assert!(result.stdout.contains("plans/imap-to-imap.yaml: valid"));
    assert!(result
        .stdout
        .contains("tests/plans/broken/plaintext.yaml: 1 error"));
}

/// A copy within one server needs two connections; `max_connections: 1` there is a warning
/// (the plan stays valid: cutover takes two rather than stall), pointing at the limit.
#[test]
fn one_connection_to_a_server_that_is_source_and_target_is_a_warning() {
    let plan = "tests/plans/warn/shared-server.yaml";
    let result = run(&["validate", "--format", "json", plan]);
    assert_eq!(result.code, ExitCode::Ok, "{}", result.stdout);
    let report: serde_json::Value = serde_json::from_str(&result.stdout).unwrap();
    let diagnostics = report["files"][0]["diagnostics"].as_array().unwrap();
    assert_eq!(diagnostics.len(), 1, "{diagnostics:#?}");
    assert_eq!(diagnostics[0]["code"], "cutover::plan::connection-limit");
    assert_eq!(diagnostics[0]["severity"], "warning");
    assert_eq!(
        (
            diagnostics[0]["line"].as_u64(),
            diagnostics[0]["column"].as_u64()
        ),
        (Some(7), Some(20))
    );
    let human = run(&["validate", plan]);
    insta::assert_snapshot!(format!("{}{}", human.stderr, human.stdout));
}
