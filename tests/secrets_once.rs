//! `{ command: … }` secrets run once per run, however many connections use them (lanes,
//! both sides of a copy, the preview before apply, verify), and `validate` / `plan --offline`
//! — what CI runs on untrusted pull requests — never run them.
mod common;
mod support;

use common::run;
use cutover::cli::ExitCode;
use support::dovecot::Dovecot;
use support::remote::*;

fn runs(path: &std::path::Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_command_secret_runs_once_per_apply() {
    let d = Dovecot::shared();
    let (src, dst) = (d.add_user("once-src"), d.add_user("once-dst"));
    seed(&d, &src, &varied_seed(41)).await;
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path();
    std::fs::write(base.join("src.pw"), &src.password).unwrap();
    std::fs::write(base.join("dst.pw"), &dst.password).unwrap();
    let plan = base.join("plan.yaml");
    std::fs::write(
        &plan,
        format!(
            r#"version: 1
name: once
domain: example.test
target: {server}
sources:
  old: {server}
users:
  - email: bob@example.test
    target_login: {{ login: {dl}, password: {{ command: "echo run >> dst.runs; cat dst.pw" }} }}
    migrate:
      - from: old
        login: {sl}
        password: {{ command: "echo run >> src.runs; cat src.pw" }}
"#,
            server = format!(
                "{{ kind: imap, host: 127.0.0.1, port: {}, tls: implicit, ca_file: {} }}",
                d.imaps_port,
                d.ca_file().display()
            ),
            dl = dst.login,
            sl = src.login,
        ),
    )
    .unwrap();
    let plan = plan.to_str().unwrap();
    let applied = tokio::task::spawn_blocking({
        let plan = plan.to_owned();
        move || run(&["apply", "--yes", "--progress", "plain", &plan])
    })
    .await
    .unwrap();
    assert_eq!(
        applied.code,
        ExitCode::Ok,
        "{}{}",
        applied.stdout,
        applied.stderr
    );
    // Three folders on up to four lanes, a planning session, the preview, the user check and
    // verify: many connections to each side, one command run each.
    assert_eq!(runs(&base.join("src.runs")), 1, "source secret runs");
    assert_eq!(runs(&base.join("dst.runs")), 1, "target secret runs");
}

/// What CI on someone else's pull request may run: neither reads a secret, so a plan's
/// `{ command }` is never executed there. `plan` without `--offline` does run them (it logs
/// in to count), which is why it is not in that list.
#[test]
fn validate_and_offline_plan_never_run_secret_commands() {
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.yaml");
    std::fs::write(
        &plan,
        r#"version: 1
name: untrusted
domain: example.test
target:
  kind: m365
  tenant: contoso.onmicrosoft.com
  auth:
    client_id: app
    client_secret: { command: "echo ran >> ran.app" }
    token_endpoint: http://127.0.0.1:9/token
sources:
  old: { kind: imap, host: 127.0.0.1, port: 9, tls: implicit }
users:
  - email: bob@example.test
    migrate:
      - from: old
        login: bob
        password: { command: "echo ran >> ran.source" }
"#,
    )
    .unwrap();
    let plan = plan.to_str().unwrap();
    let ran = |dir: &std::path::Path| runs(&dir.join("ran.app")) + runs(&dir.join("ran.source"));
    assert_eq!(run(&["validate", plan]).code, ExitCode::Ok);
    let offline = run(&["plan", "--offline", plan]);
    assert_eq!(offline.code, ExitCode::Ok, "{}", offline.stderr);
    assert_eq!(
        ran(dir.path()),
        0,
        "validate or plan --offline ran a secret command"
    );
    // The test sees a command run when one does.
    let _ = run(&["plan", plan]);
    assert!(
        ran(dir.path()) > 0,
        "plan without --offline resolves secrets"
    );
}
