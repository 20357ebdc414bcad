//! `cutover plan` for server copies, end to end against a real Dovecot: the folder mapping of
//! a copy step (SPECIAL-USE, well-known names, `INBOX.` prefix, separators, modified UTF-7,
//! plan include/exclude/map) in the human and the JSON output, and a delta step's preview
//! counting only mail that arrived after its copy step ran.
mod common;
mod support;

use std::path::{Path, PathBuf};

use common::run;
use cutover::cli::ExitCode;
use cutover::connectors::mail::RawMessage;
use support::dovecot::{Dovecot, User};

/// A message whose bytes depend only on `id`, so sizes in snapshots are stable.
fn message(id: &str, with_message_id: bool) -> RawMessage {
    let mut b = format!("From: sender@example.test\r\nSubject: {id}\r\n");
    if with_message_id {
        b.push_str(&format!("Message-ID: <{id}@example.test>\r\n"));
    }
    b.push_str("\r\nA short body.\r\n");
    RawMessage::new(b.into_bytes())
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// Creates the folders (Unicode, `/`-separated) and appends the messages.
async fn seed(d: &Dovecot, u: &User, folders: &[(&str, Vec<RawMessage>)]) {
    let folders: support::remote::Seed = folders
        .iter()
        .map(|(f, m)| (f.to_string(), m.clone()))
        .collect();
    support::remote::seed(d, u, &folders).await;
}

/// Writes a plan copying `u`'s mailbox from the Dovecot into a maildir, with `folders:` rules.
fn write_plan(dir: &Path, d: &Dovecot, u: &User, folders: &str) -> PathBuf {
    std::fs::write(dir.join("src.pw"), &u.password).unwrap();
    let yaml = format!(
        r#"version: 1
name: preview
domain: example.test
target: {{ kind: maildir, path: out }}
sources:
  old: {{ kind: imap, host: 127.0.0.1, port: {port}, tls: implicit, ca_file: {ca} }}
users:
  - email: alice@example.test
    migrate:
      - from: old
        login: {login}
        password: {{ file: src.pw }}
{folders}dns: {{ provider: manual }}
"#,
        port = d.imaps_port,
        ca = d.ca_file().display(),
        login = u.login,
    );
    let path = dir.join("preview.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

fn plan_json(plan: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["plan", "--json"];
    args.extend_from_slice(extra);
    args.push(plan);
    let out = run(&args);
    assert_eq!(out.code, ExitCode::Ok, "{}", out.stderr);
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

fn row<'a>(view: &'a serde_json::Value, step: &str) -> &'a serde_json::Value {
    view["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["step"] == step)
        .unwrap_or_else(|| panic!("no row {step} in {view:#}"))
}

#[test]
fn plan_shows_the_folder_mapping() {
    let d = Dovecot::shared();
    let u = d.add_user("mapping");
    block_on(seed(
        &d,
        &u,
        &[
            (
                "INBOX",
                vec![message("inbox-1", true), message("inbox-2", false)],
            ),
            ("INBOX/Clients", vec![message("clients-1", true)]),
            (
                "Projects/2023",
                vec![message("projects-1", true), message("projects-2", true)],
            ),
            ("Sent", vec![message("sent-1", true)]),
            ("Spam", vec![message("spam-1", true)]),
            ("Entwürfe & Ärger", vec![message("umlaut-1", true)]),
            ("Old Stuff", vec![message("old-1", true)]),
            (
                "Newsletters",
                vec![
                    message("news-1", true),
                    message("news-2", true),
                    message("news-3", true),
                ],
            ),
            ("Trash", vec![]),
        ],
    ));
    let dir = tempfile::tempdir().unwrap();
    let plan = write_plan(
        dir.path(),
        &d,
        &u,
        r#"        folders:
          exclude: ["Newsletters*", "Trash"]
          map: { "Old Stuff": "Archive/Old" }
"#,
    );
    let plan = plan.to_str().unwrap();

    let human = run(&["plan", "--target", "copy.*", plan]);
    assert_eq!(human.code, ExitCode::Ok, "{}", human.stderr);
    insta::assert_snapshot!("folder-mapping-human", human.stdout);

    let view = plan_json(plan, &["--target", "copy.*"]);
    let copy = row(&view, "copy.alice.old");
    assert_eq!(copy["items"], 9, "{copy:#}");
    let listed: u64 = copy["folders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["items"].as_u64().unwrap())
        .sum();
    assert_eq!(listed, 9, "the folders add up to the step's total");
    insta::assert_json_snapshot!("folder-mapping-json", view);
}

#[test]
fn delta_preview_counts_only_mail_after_the_copy() {
    let d = Dovecot::shared();
    let u = d.add_user("delta");
    block_on(seed(
        &d,
        &u,
        &[
            (
                "INBOX",
                vec![
                    message("d-inbox-1", true),
                    message("d-inbox-2", false),
                    message("d-inbox-3", true),
                ],
            ),
            ("Sent", vec![message("d-sent-1", true)]),
            ("Work", vec![message("d-work-1", true)]),
        ],
    ));
    let dir = tempfile::tempdir().unwrap();
    let plan = write_plan(dir.path(), &d, &u, "");
    let plan = plan.to_str().unwrap();

    let before = plan_json(plan, &["--target", "delta.*"]);
    assert_eq!(row(&before, "delta.alice.old")["items"], 5, "{before:#}");

    let copy = run(&[
        "apply",
        "--yes",
        "--progress",
        "plain",
        "--target",
        "copy.*",
        plan,
    ]);
    assert_eq!(copy.code, ExitCode::Ok, "{}\n{}", copy.stdout, copy.stderr);

    // Mail that still lands at the old host after the copy ran.
    block_on(seed(
        &d,
        &u,
        &[
            (
                "INBOX",
                vec![message("d-inbox-4", true), message("d-inbox-5", false)],
            ),
            ("Sent", vec![message("d-sent-2", true)]),
        ],
    ));

    let after = plan_json(plan, &["--target", "delta.*"]);
    let delta = row(&after, "delta.alice.old");
    assert_eq!(
        (delta["items"].as_u64(), delta["present"].as_u64()),
        (Some(3), Some(5)),
        "only the new mail is to copy; what the copy took is behind its checkpoints: {delta:#}"
    );
    assert_eq!(row(&after, "copy.alice.old")["action"], "unchanged");
    let human = run(&["plan", "--target", "delta.*", plan]);
    assert_eq!(human.code, ExitCode::Ok, "{}", human.stderr);
    insta::assert_snapshot!("delta-after-copy-human", human.stdout);
}
