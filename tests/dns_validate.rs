//! `cutover validate` on the `dns:` section: every DNS diagnostic on its exact span.

mod common;

use common::run;
use cutover::cli::ExitCode;

const PLAN: &str = "tests/plans/dns/problems.yaml";

#[test]
fn dns_settings_are_checked_before_anything_reaches_a_zone() {
    let result = run(&["validate", PLAN]);
    assert_eq!(result.code, ExitCode::Failure, "{}", result.stderr);
    insta::assert_snapshot!(
        "dns-problems-human",
        format!("{}{}", result.stdout, result.stderr)
    );
    let json = run(&["validate", "--format", "json", PLAN]);
    let report: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let found: Vec<(String, String, u64)> = report["files"][0]["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["code"]
                    .as_str()
                    .unwrap()
                    .trim_start_matches("cutover::plan::")
                    .to_string(),
                d["severity"].as_str().unwrap().to_string(),
                d["line"].as_u64().unwrap(),
            )
        })
        .collect();
    insta::assert_debug_snapshot!("dns-problems-codes", found);
}

#[test]
fn the_seed_plan_is_valid_with_its_computed_dns() {
    let result = run(&["validate", "plans/acme-to-m365.yaml"]);
    assert_eq!(
        result.code,
        ExitCode::Ok,
        "{}{}",
        result.stdout,
        result.stderr
    );
}
