//! The committed JSON Schema is current; the step DAG is wired in runbook order and printed
//! as DOT and Mermaid; `--target`/`--exclude` select steps with their dependencies.

mod common;

use common::run;
use cutover::cli::ExitCode;
use cutover::graph::{Selection, StepGraph};
use cutover::plan::{load_str, Options};

#[test]
fn committed_schema_is_current() {
    let committed = std::fs::read_to_string("schemas/plan.schema.json")
        .expect("schemas/plan.schema.json exists");
    let printed = run(&["schema"]);
    assert_eq!(printed.code, ExitCode::Ok);
    assert!(
        committed == printed.stdout,
        "schemas/plan.schema.json is stale: run `cargo run -- schema > schemas/plan.schema.json`"
    );
}

#[test]
fn schema_describes_every_field() {
    let schema: serde_json::Value = serde_json::from_str(&run(&["schema"]).stdout).unwrap();
    let mut undocumented = Vec::new();
    let mut check = |owner: &str, props: &serde_json::Map<String, serde_json::Value>| {
        for (name, prop) in props {
            if prop.get("description").is_none() && name != "kind" {
                undocumented.push(format!("{owner}.{name}"));
            }
        }
    };
    if let Some(props) = schema["properties"].as_object() {
        check("Plan", props);
    }
    for (def, body) in schema["$defs"].as_object().unwrap() {
        for variant in body["oneOf"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(std::iter::once(body))
        {
            if let Some(props) = variant["properties"].as_object() {
                check(def, props);
            }
        }
    }
    assert!(
        undocumented.is_empty(),
        "fields without a doc comment: {undocumented:?}"
    );
}

#[test]
fn seed_plan_graph_dot_and_mermaid() {
    let dot = run(&["graph", "plans/acme-to-m365.yaml"]);
    assert_eq!(dot.code, ExitCode::Ok, "{}", dot.stderr);
    insta::assert_snapshot!("seed-dot", dot.stdout);
    let mermaid = run(&["graph", "--format", "mermaid", "plans/acme-to-m365.yaml"]);
    assert_eq!(mermaid.code, ExitCode::Ok);
    insta::assert_snapshot!("seed-mermaid", mermaid.stdout);
}

#[test]
fn target_selects_dependencies_and_exclude_drops_dependents() {
    let targeted = run(&[
        "graph",
        "--format",
        "mermaid",
        "--target",
        "verify.alice",
        "plans/acme-to-m365.yaml",
    ]);
    insta::assert_snapshot!("seed-target-verify-alice", targeted.stdout);
    assert!(
        targeted.stdout.contains("dns_cutover"),
        "verify waits for the cutover, so it is selected"
    );
    assert!(
        targeted.stdout.contains("copy_bob_outlook_pst"),
        "the cutover waits for every copy"
    );
    assert!(
        !targeted.stdout.contains("verify_bob") && !targeted.stdout.contains("delta_bob"),
        "bob's later steps are not needed"
    );
}

const RUNBOOK: &str = r#"
version: 1
name: runbook
domain: acme.co.uk
target: { kind: maildir, path: out }
sources:
  imap: { kind: imap, host: imap.example.net }
  pc: { kind: mbox }
users:
  - email: alice@acme.co.uk
    migrate:
      - { from: imap, login: alice, password: { env: P } }
      - { from: pc, file: plan.yaml }
dns:
  provider: manual
  lower_ttl: { to: 300, ahead: 24h }
manual:
  sign-off:
    instructions: The client signs off.
    after: [verify.*]
after:
  dns.cutover: [manual.pre-check]
"#;

fn runbook_graph(text: &str) -> (cutover::plan::Loaded, StepGraph) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("plan.yaml"), text).unwrap();
    let loaded = load_str(
        text.to_string(),
        "plan.yaml",
        dir.path(),
        Options::default(),
    );
    let graph = loaded.graph.clone().expect("graph built");
    (loaded, graph)
}

#[test]
fn runbook_order() {
    let text = RUNBOOK.replace("after:\n  dns.cutover: [manual.pre-check]\n", "");
    let (loaded, graph) = runbook_graph(&text);
    assert_eq!(loaded.report.errors(), 0, "{:?}", loaded.report.diagnostics);
    assert_eq!(graph.dependencies("copy.alice.imap"), ["user.alice"]);
    assert_eq!(
        graph.dependencies("dns.cutover"),
        ["copy.alice.imap", "copy.alice.pc", "dns.lower-ttl"]
    );
    assert_eq!(
        graph.dependencies("delta.alice.imap"),
        ["copy.alice.imap", "dns.cutover"]
    );
    assert!(
        graph.step("delta.alice.pc").is_none(),
        "a file source has no delta pass"
    );
    assert_eq!(
        graph.dependencies("verify.alice"),
        [
            "copy.alice.pc",
            "delta.alice.imap",
            "dns.cutover",
            "user.alice"
        ]
    );
    assert_eq!(graph.dependencies("manual.sign-off"), ["verify.alice"]);
    let order = graph.topological_order().unwrap();
    let pos = |id: &str| order.iter().position(|s| *s == id).unwrap();
    assert!(pos("user.alice") < pos("copy.alice.imap"));
    assert!(pos("dns.lower-ttl") < pos("dns.cutover"));
    assert!(pos("dns.cutover") < pos("delta.alice.imap"));
    assert!(pos("delta.alice.imap") < pos("verify.alice"));
}

#[test]
fn unknown_after_reference_is_reported() {
    let (loaded, _) = runbook_graph(RUNBOOK);
    let codes: Vec<&str> = loaded.report.diagnostics.iter().map(|d| d.code).collect();
    assert_eq!(codes, ["cutover::plan::unknown-step"]);
}

#[test]
fn selection_closure() {
    let text = RUNBOOK.replace("after:\n  dns.cutover: [manual.pre-check]\n", "");
    let (_, graph) = runbook_graph(&text);
    let only_copy = graph.select(&Selection::new(&["copy.alice.imap".into()], &[]).unwrap());
    assert_eq!(
        only_copy.into_iter().collect::<Vec<_>>(),
        ["copy.alice.imap", "user.alice"]
    );
    let without_dns = graph.select(&Selection::new(&[], &["dns.*".into()]).unwrap());
    assert!(without_dns.contains("copy.alice.imap"));
    assert!(
        !without_dns.contains("delta.alice.imap"),
        "deltas depend on the cutover"
    );
    assert!(!without_dns.contains("manual.sign-off"));
}
