//! Plans written to escape: an address whose local part is a path, file references that
//! leave the plan's folder. Validation refuses or names them, and even a plan that skipped
//! validation writes nothing outside the target folder.

mod common;

use std::sync::Arc;

use common::run;
use cutover::cli::ExitCode;
use cutover::engine::{self, ApplyOptions, CancellationToken, StepResult, VecSink};
use cutover::graph::{Selection, StepGraph};
use cutover::plan::model::Plan;
use cutover::state::{SqliteStore, StateStore};

fn codes(stdout: &str) -> Vec<(String, String)> {
    let report: serde_json::Value = serde_json::from_str(stdout).unwrap();
    report["files"][0]["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["code"]
                    .as_str()
                    .unwrap()
                    .trim_start_matches("cutover::plan::")
                    .to_owned(),
                d["severity"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn demo_plan(email: &str) -> String {
    format!(
        r#"version: 1
name: escape
domain: demo.example
target: {{ kind: maildir, path: out }}
sources:
  thunderbird: {{ kind: mbox }}
users:
  - email: "{email}"
    migrate:
      - from: thunderbird
        file: mail.mbox
"#
    )
}

const MBOX: &str = "From a@demo.example Mon Jan  1 00:00:00 2024\nFrom: a@demo.example\nSubject: hello\nMessage-ID: <escape-1@demo.example>\nDate: Mon, 1 Jan 2024 00:00:00 +0000\n\nbody\n";

#[test]
fn addresses_that_name_a_path_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mail.mbox"), MBOX).unwrap();
    for email in [
        "/srv/x/escaped@demo.example",
        "a/b@demo.example",
        "..@demo.example",
        "a..b@demo.example",
        "back\\\\slash@demo.example",
        "nul\\u0000@demo.example",
        "tab\\t@demo.example",
    ] {
        let plan = dir.path().join("plan.yaml");
        std::fs::write(&plan, demo_plan(email)).unwrap();
        let result = run(&["validate", "--format", "json", plan.to_str().unwrap()]);
        assert_eq!(result.code, ExitCode::Failure, "{email}: {}", result.stdout);
        assert!(
            codes(&result.stdout).contains(&("invalid-email".into(), "error".into())),
            "{email}: {}",
            result.stdout
        );
    }
    let plan = dir.path().join("plan.yaml");
    std::fs::write(&plan, demo_plan("o'brien+news@demo.example")).unwrap();
    let result = run(&["validate", plan.to_str().unwrap()]);
    assert_eq!(result.code, ExitCode::Ok, "{}", result.stderr);
}

/// A plan that never went through validation (a library caller's): the address still cannot
/// put the user's Maildir, or a step id, outside the target folder.
#[tokio::test]
async fn an_unvalidated_plan_cannot_write_outside_the_target() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("plan");
    std::fs::create_dir(&base).unwrap();
    std::fs::write(base.join("mail.mbox"), MBOX).unwrap();
    let outside = dir.path().join("escaped@demo.example");
    let email = format!("{}/x/../escaped@demo.example", dir.path().display());
    let plan: Plan = serde_json::from_value(serde_json::json!({
        "version": 1,
        "name": "escape",
        "domain": "demo.example",
        "target": { "kind": "maildir", "path": "out" },
        "sources": { "thunderbird": { "kind": "mbox" } },
        "users": [{ "email": email, "migrate": [{ "from": "thunderbird", "file": "mail.mbox" }] }],
    }))
    .unwrap();
    let (graph, problems) = StepGraph::build(&plan);
    assert!(problems.is_empty(), "{problems:?}");
    let ids: Vec<String> = graph.steps().map(|s| s.id.clone()).collect();
    for id in &ids {
        assert!(
            !id.contains('/') && !id.contains(".."),
            "step id {id:?} carries the path"
        );
    }
    let runners = cutover::runners::runners_for(&plan, &graph, &base);
    let store: Arc<dyn StateStore> = Arc::new(SqliteStore::open(base.join("state.db")).unwrap());
    let selected = graph.select(&Selection::default());
    let report = engine::apply(
        &plan,
        &graph,
        &selected,
        store,
        &runners,
        &ApplyOptions::default(),
        &mut VecSink::default(),
        CancellationToken::new(),
    )
    .await;
    for (id, result) in &report.steps {
        assert!(
            matches!(result, StepResult::Done { .. }),
            "{id}: {result:?}"
        );
    }
    assert!(!outside.exists(), "a maildir was written at {outside:?}");
    let written: Vec<String> = std::fs::read_dir(base.join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(written.len(), 1, "{written:?}");
    assert!(
        !written[0].contains('/') && !written[0].starts_with('.'),
        "{written:?}"
    );
    let inbox = base.join("out").join(&written[0]).join("cur");
    assert_eq!(std::fs::read_dir(inbox).unwrap().count(), 1);
}

/// Files a plan reads from outside its folder — absolute, climbing out with `..`, through a
/// symbolic link, or a `{ file: … }` secret — are named by validate (a warning: a CA or a
/// secret kept elsewhere is legitimate, but a reviewer of someone else's plan must see it).
#[test]
fn file_references_outside_the_plan_folder_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("plan");
    std::fs::create_dir(&base).unwrap();
    std::fs::write(dir.path().join("outside.mbox"), MBOX).unwrap();
    std::fs::write(dir.path().join("outside.secret"), "pw").unwrap();
    std::fs::write(base.join("inside.mbox"), MBOX).unwrap();
    std::fs::write(base.join("inside.secret"), "pw").unwrap();
    std::os::unix::fs::symlink(dir.path().join("outside.mbox"), base.join("link.mbox")).unwrap();
    let plan = base.join("plan.yaml");
    std::fs::write(
        &plan,
        format!(
            r#"version: 1
name: outside
domain: demo.example
target: {{ kind: maildir, path: out }}
sources:
  files: {{ kind: mbox }}
  imap: {{ kind: imap, host: imap.demo.example }}
users:
  - email: ana@demo.example
    migrate:
      - {{ from: files, name: up, file: ../outside.mbox }}
      - {{ from: files, name: absolute, file: {abs} }}
      - {{ from: files, name: link, file: link.mbox }}
      - {{ from: files, name: inside, file: inside.mbox }}
      - {{ from: imap, login: ana, password: {{ file: ../outside.secret }} }}
  - email: ben@demo.example
    migrate:
      - {{ from: imap, login: ben, password: {{ file: inside.secret }} }}
"#,
            abs = dir.path().join("outside.mbox").display()
        ),
    )
    .unwrap();
    let result = run(&["validate", "--format", "json", plan.to_str().unwrap()]);
    assert_eq!(result.code, ExitCode::Ok, "{}", result.stdout);
    let outside: Vec<_> = codes(&result.stdout)
        .into_iter()
        .filter(|(code, _)| code == "outside-plan-folder")
        .collect();
    assert_eq!(outside.len(), 4, "{}", result.stdout);
    assert!(outside.iter().all(|(_, severity)| severity == "warning"));
    for named in ["../outside.mbox", "link.mbox", "../outside.secret"] {
        assert!(result.stdout.contains(named), "{named}: {}", result.stdout);
    }
    assert!(!result.stdout.contains("inside.mbox` is outside"));
}

/// The token endpoint's "plain http only to this machine" is decided on the parsed host, the
/// same check the token client makes.
#[test]
fn a_token_endpoint_that_only_looks_local_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (url, refused) in [
        ("http://127.0.0.1@attacker.example/token", true),
        ("http://localhost.attacker.example/token", true),
        ("http://127.0.0.1:8080/token", false),
        ("http://localhost/token", false),
        (
            "https://login.microsoftonline.us/t/oauth2/v2.0/token",
            false,
        ),
    ] {
        let plan = dir.path().join("plan.yaml");
        std::fs::write(
            &plan,
            format!(
                r#"version: 1
name: token
domain: demo.example
target:
  kind: m365
  tenant: demo.onmicrosoft.com
  auth: {{ client_id: app, client_secret: {{ env: APP_SECRET }}, token_endpoint: "{url}" }}
users:
  - email: ana@demo.example
"#
            ),
        )
        .unwrap();
        let result = run(&["validate", "--format", "json", plan.to_str().unwrap()]);
        let found = codes(&result.stdout).iter().any(|(code, severity)| {
            severity == "error"
                && matches!(code.as_str(), "plaintext-without-opt-in" | "invalid-url")
        });
        assert_eq!(found, refused, "{url}: {}", result.stdout);
    }
}
