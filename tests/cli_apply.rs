//! `plan`, `apply`, `status`, `approve` end to end on the demo plan (real files, real SQLite):
//! apply twice does the work once, saved plans go stale, a second apply is refused by the
//! lock, manual gates stop the walk, and no secret value leaks anywhere.

mod common;

use std::path::Path;

use common::{demo_copy, run};
use cutover::cli::ExitCode;
use cutover::state::{SqliteStore, StateStore};

fn scrub(text: &str, dir: &Path) -> String {
    text.replace(&dir.display().to_string(), "[TMP]")
}

/// Messages the demo copies per user: each demo mbox holds 40, one of them flagged deleted
/// (Thunderbird's expunged bit), which stays behind and is reported.
const DEMO_COPIED: usize = 39;

fn count_files(dir: &Path) -> usize {
    common::files_below(dir)
        .into_iter()
        .filter(|p| {
            p.parent()
                .and_then(|d| d.file_name())
                .is_some_and(|n| n == "cur")
        })
        .count()
}

#[test]
fn demo_apply_twice_does_the_work_once() {
    let (dir, plan) = demo_copy();
    let plan = plan.to_str().unwrap();
    let first_plan = run(&["plan", plan]);
    assert_eq!(first_plan.code, ExitCode::Ok, "{}", first_plan.stderr);
    insta::assert_snapshot!("demo-plan-first", first_plan.stdout);

    let apply = run(&["apply", "--yes", "--progress", "plain", plan]);
    assert_eq!(
        apply.code,
        ExitCode::Ok,
        "{}\n{}",
        apply.stdout,
        apply.stderr
    );
    assert_eq!(count_files(&dir.path().join("demo-out")), 2 * DEMO_COPIED);
    assert!(
        apply.stdout.contains("Apply succeeded: 6 done"),
        "{}",
        apply.stdout
    );

    let status = run(&["status", plan]);
    insta::assert_snapshot!("demo-status", scrub(&status.stdout, dir.path()));
    let report = std::fs::read_to_string(dir.path().join("demo-out/demo-report.md")).unwrap();
    insta::assert_snapshot!("demo-report", report);

    let second_plan = run(&["plan", "--detailed-exitcode", plan]);
    assert_eq!(
        second_plan.code,
        ExitCode::Ok,
        "no changes: detailed exit code 0"
    );
    assert!(
        second_plan
            .stdout
            .contains("Plan: 0 to create, 0 to change, 6 unchanged."),
        "{}",
        second_plan.stdout
    );
    insta::assert_snapshot!("demo-plan-second", second_plan.stdout);

    let again = run(&["apply", "--yes", "--progress", "plain", plan]);
    assert_eq!(again.code, ExitCode::Ok);
    assert!(
        again.stdout.contains("No changes. Nothing to do."),
        "{}",
        again.stdout
    );
    assert_eq!(
        count_files(&dir.path().join("demo-out")),
        2 * DEMO_COPIED,
        "the second apply copies nothing"
    );
}

#[test]
fn plan_json_and_detailed_exit_code_report_changes() {
    let (_dir, plan) = demo_copy();
    let plan = plan.to_str().unwrap();
    let detailed = run(&["plan", "--detailed-exitcode", plan]);
    assert_eq!(detailed.code, ExitCode::Usage, "changes pending: exit 2");
    let json = run(&["plan", "--json", plan]);
    let view: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let copies: Vec<&serde_json::Value> = view["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["step"].as_str().unwrap().starts_with("copy."))
        .collect();
    assert_eq!(copies.len(), 2);
    assert!(copies
        .iter()
        .all(|r| r["action"] == "create" && r["items"] == DEMO_COPIED));
    let offline = run(&["plan", "--offline", plan]);
    assert!(
        offline.stdout.contains("Plan: 6 to create"),
        "{}",
        offline.stdout
    );
}

#[test]
fn saved_plans_go_stale_when_the_plan_or_the_state_changes() {
    let (dir, plan) = demo_copy();
    let plan_s = plan.to_str().unwrap();
    let saved = dir.path().join("saved.json");
    let saved_s = saved.to_str().unwrap();

    assert_eq!(run(&["plan", "--out", saved_s, plan_s]).code, ExitCode::Ok);
    let text = std::fs::read_to_string(&plan).unwrap();
    std::fs::write(&plan, format!("{text}# edited after planning\n")).unwrap();
    let stale = run(&["apply", saved_s]);
    assert_eq!(stale.code, ExitCode::Failure);
    assert!(
        stale.stderr.contains("is stale")
            && stale.stderr.contains("changed since the plan was saved"),
        "{}",
        stale.stderr
    );

    assert_eq!(
        run(&["plan", "--out", saved_s, "--target", "copy.ana.*", plan_s]).code,
        ExitCode::Ok
    );
    assert_eq!(
        run(&[
            "apply",
            "--yes",
            "--progress",
            "plain",
            "--target",
            "user.ben",
            plan_s
        ])
        .code,
        ExitCode::Ok
    );
    let stale = run(&["apply", saved_s]);
    assert_eq!(stale.code, ExitCode::Failure);
    assert!(
        stale.stderr.contains("the state changed since"),
        "{}",
        stale.stderr
    );

    assert_eq!(
        run(&["plan", "--out", saved_s, "--target", "copy.ana.*", plan_s]).code,
        ExitCode::Ok
    );
    let applied = run(&["apply", "--progress", "plain", saved_s]);
    assert_eq!(applied.code, ExitCode::Ok, "{}", applied.stderr);
    assert_eq!(
        count_files(&dir.path().join("demo-out/ana@demo.example")),
        DEMO_COPIED
    );
    assert!(
        !dir.path().join("demo-out/ben@demo.example/cur").exists()
            || count_files(&dir.path().join("demo-out/ben@demo.example")) == 0,
        "the saved plan targeted ana only"
    );
}

#[test]
fn a_second_apply_is_refused_by_the_lock() {
    let (dir, plan) = demo_copy();
    let store = SqliteStore::open(dir.path().join(".cutover/demo.db")).unwrap();
    let guard = store.acquire_lock(std::time::Duration::ZERO).unwrap();
    let refused = run(&[
        "apply",
        "--yes",
        "--progress",
        "plain",
        plan.to_str().unwrap(),
    ]);
    assert_eq!(refused.code, ExitCode::Failure);
    assert!(
        refused
            .stderr
            .contains(&format!("pid {}", std::process::id())),
        "the message names the holder: {}",
        refused.stderr
    );
    assert_eq!(
        count_files(&dir.path().join("demo-out")),
        0,
        "nothing was copied"
    );
    drop(guard);
    assert_eq!(
        run(&[
            "apply",
            "--yes",
            "--progress",
            "plain",
            plan.to_str().unwrap()
        ])
        .code,
        ExitCode::Ok
    );
}

#[test]
fn manual_gate_stops_the_walk_until_approved() {
    let (dir, plan) = demo_copy();
    let text = std::fs::read_to_string(&plan).unwrap();
    std::fs::write(&plan, format!("{text}manual:\n  client-ok:\n    instructions: Ask Ben whether his old mailbox may be read.\n    before: [copy.ben.*]\n")).unwrap();
    let plan = plan.to_str().unwrap();
    let first = run(&["apply", "--yes", "--progress", "plain", plan]);
    assert_eq!(
        first.code,
        ExitCode::Failure,
        "a waiting gate leaves the apply incomplete"
    );
    assert!(
        first
            .stderr
            .contains("manual.client-ok: waiting for approval"),
        "{}",
        first.stderr
    );
    assert!(first.stderr.contains("Ask Ben"));
    assert_eq!(
        count_files(&dir.path().join("demo-out/ana@demo.example")),
        DEMO_COPIED,
        "independent branches go on"
    );
    assert_eq!(
        count_files(&dir.path().join("demo-out/ben@demo.example")),
        0
    );
    let approve = run(&[
        "approve",
        plan,
        "manual.client-ok",
        "--by",
        "consultant@example",
    ]);
    assert_eq!(approve.code, ExitCode::Ok, "{}", approve.stderr);
    let second = run(&["apply", "--yes", "--progress", "plain", plan]);
    assert_eq!(second.code, ExitCode::Ok, "{}", second.stderr);
    assert_eq!(
        count_files(&dir.path().join("demo-out/ben@demo.example")),
        DEMO_COPIED
    );
    let wrong = run(&["approve", plan, "copy.ben.thunderbird"]);
    assert_eq!(wrong.code, ExitCode::Usage);
}

#[test]
fn no_secret_value_reaches_state_events_report_or_output() {
    let (dir, plan) = demo_copy();
    let env_value = "Env-Secret-7f3a9c";
    let file_value = "File-Secret-2b8d4e";
    let command_value = "Command-Secret-9e1c5a";
    std::env::set_var("CUTOVER_TEST_IMAP_PASSWORD", env_value);
    std::fs::write(dir.path().join("carol.pw"), format!("{file_value}\n")).unwrap();
    let text = std::fs::read_to_string(&plan).unwrap().replace(
        "sources:\n",
        "sources:\n  old-imap: { kind: imap, host: imap.example.net }\n",
    );
    let users = format!(
        "  - email: dan@demo.example\n    migrate: [{{ from: old-imap, login: dan, password: {{ env: CUTOVER_TEST_IMAP_PASSWORD }} }}]\n  - email: cat@demo.example\n    migrate: [{{ from: old-imap, login: cat, password: {{ file: carol.pw }} }}]\n  - email: eve@demo.example\n    migrate: [{{ from: old-imap, login: eve, password: {{ command: \"echo {command_value}\" }} }}]\n  - email: fay@demo.example\n    migrate: [{{ from: old-imap, login: fay, password: {{ env: CUTOVER_TEST_UNSET_PASSWORD }} }}]\n"
    );
    // One attempt: the IMAP host does not resolve, and retrying that only slows the test.
    let text = text.replace("settings:\n", &format!("{users}settings:\n  retries: 1\n"));
    std::fs::write(&plan, text).unwrap();
    let plan = plan.to_str().unwrap();

    let preview = run(&["plan", plan]);
    assert!(
        preview.stdout.contains("! copy.fay.old-imap"),
        "{}",
        preview.stdout
    );
    assert!(
        preview.stdout.contains(
            "missing secret (environment variable CUTOVER_TEST_UNSET_PASSWORD is not set)"
        ),
        "{}",
        preview.stdout
    );
    let applied = run(&["apply", "--yes", "--progress", "plain", plan]);
    assert_eq!(
        applied.code,
        ExitCode::Failure,
        "the IMAP host does not resolve; the demo users still complete"
    );
    assert_eq!(
        count_files(&dir.path().join("demo-out/ana@demo.example")),
        DEMO_COPIED
    );
    let status = run(&["status", "--json", plan]);

    let mut haystacks: Vec<(String, Vec<u8>)> = vec![
        (
            "plan output".into(),
            format!("{}{}", preview.stdout, preview.stderr).into_bytes(),
        ),
        (
            "apply output".into(),
            format!("{}{}", applied.stdout, applied.stderr).into_bytes(),
        ),
        ("status output".into(), status.stdout.into_bytes()),
    ];
    for file in common::files_below(&dir.path().join(".cutover"))
        .into_iter()
        .chain(
            common::files_below(&dir.path().join("demo-out"))
                .into_iter()
                .filter(|p| p.extension().is_some_and(|e| e == "md" || e == "json")),
        )
    {
        haystacks.push((file.display().to_string(), std::fs::read(&file).unwrap()));
    }
    assert!(
        haystacks.iter().any(|(name, _)| name.ends_with("demo.db")),
        "the state file is checked"
    );
    assert!(
        haystacks
            .iter()
            .any(|(name, _)| name.ends_with("events.jsonl")),
        "the event log is checked"
    );
    assert!(
        haystacks
            .iter()
            .any(|(name, _)| name.ends_with("report.md")),
        "the report is checked"
    );
    for (name, bytes) in &haystacks {
        for secret in [env_value, file_value, command_value] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{secret} leaked into {name}"
            );
        }
    }
}
