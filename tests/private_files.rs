//! Everything cutover writes is private: the state database (and SQLite's -wal/-shm beside
//! it), the event log, reports, saved plans, traces and the Maildir output are `0600` files in
//! `0700` folders, under the common umask 022 — they hold addresses, subjects and whole
//! messages.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        out.push(path.clone());
        if path.is_dir() {
            walk(&path, out);
        }
    }
}

#[test]
fn state_logs_reports_and_mail_are_private() {
    let (dir, _plan) = common::demo_copy();
    // The folder the user made for the plan is theirs; what cutover creates inside is checked.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut inputs = vec![dir.path().join("demo"), dir.path().join("demo.yaml")];
    for mbox in ["ana.mbox", "ben.mbox"] {
        inputs.push(dir.path().join("demo").join(mbox));
    }
    let script = format!(
        "umask 022 && {bin} plan --out saved.json demo.yaml >/dev/null && {bin} apply --yes --trace logs/trace.log demo.yaml",
        bin = env!("CARGO_BIN_EXE_cutover")
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let mut written = Vec::new();
    walk(dir.path(), &mut written);
    written.retain(|p| !inputs.contains(p));
    let names: Vec<String> = written
        .iter()
        .map(|p| p.strip_prefix(dir.path()).unwrap().display().to_string())
        .collect();
    for expected in [
        ".cutover/demo.db",
        ".cutover/demo.events.jsonl",
        "demo-out/demo-report.md",
        "demo-out/demo-report.json",
        "demo-out/ana@demo.example/cur",
        "saved.json",
        "logs/trace.log",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} not written: {names:?}"
        );
    }
    let mut loose = Vec::new();
    for (path, name) in written.iter().zip(&names) {
        let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            loose.push(format!("{name} {mode:o}"));
        }
    }
    assert!(loose.is_empty(), "readable by others: {loose:#?}");
    let messages = names.iter().filter(|n| n.contains("/cur/")).count();
    assert!(messages > 0, "no message files among {names:?}");
}
