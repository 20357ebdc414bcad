//! What users of command-line tools expect: `plan --detailed-exitcode` exit codes exactly as
//! Terraform's (0 / 2 / 1), shell completions and a man page, blocked steps that say so,
//! `-q` and `-v`.

mod common;

use std::process::Command;

use common::{demo_copy, run};
use cutover::cli::ExitCode;

fn cutover(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn detailed_exitcode_is_0_unchanged_2_changes_1_any_error() {
    let (_dir, plan) = demo_copy();
    let plan = plan.to_str().unwrap();
    let detailed = |extra: &[&str]| {
        let mut args = vec!["plan", "--detailed-exitcode"];
        args.extend_from_slice(extra);
        run(&args).code
    };
    assert_eq!(detailed(&[plan]), ExitCode::Usage, "changes: 2");
    assert_eq!(run(&["apply", "--yes", plan]).code, ExitCode::Ok);
    assert_eq!(detailed(&[plan]), ExitCode::Ok, "nothing to change: 0");
    // Errors of every kind are 1 — a file that cannot be read and a bad glob used to be 2.
    assert_eq!(detailed(&["/nonexistent/plan.yaml"]), ExitCode::Failure);
    assert_eq!(detailed(&["--target", "[", plan]), ExitCode::Failure);
    assert_eq!(
        detailed(&["tests/plans/broken/unknown-field.yaml"]),
        ExitCode::Failure
    );
    // Without the flag, usage and read errors keep their usual 2.
    assert_eq!(
        run(&["plan", "/nonexistent/plan.yaml"]).code,
        ExitCode::Usage
    );
    // A command line clap cannot parse: 1 with the flag, 2 without.
    let bad = cutover(&["plan", "--detailed-exitcode", "--no-such-flag", plan]);
    assert_eq!(bad.status.code(), Some(1), "{bad:?}");
    let bad = cutover(&["plan", "--no-such-flag", plan]);
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
    assert_eq!(cutover(&["plan", "--help"]).status.code(), Some(0));
}

#[test]
fn completion_scripts_and_a_man_page() {
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let out = cutover(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {out:?}");
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(
            script.contains("cutover") && script.contains("detailed-exitcode"),
            "{shell}: {script}"
        );
    }
    // The bash script is valid bash.
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("cutover.bash");
    std::fs::write(&script, cutover(&["completions", "bash"]).stdout).unwrap();
    let check = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(check.status.success(), "{check:?}");
    let man = cutover(&["man"]);
    assert!(man.status.success());
    let page = String::from_utf8(man.stdout).unwrap();
    assert!(
        page.starts_with(".ie") || page.contains(".TH cutover"),
        "{page}"
    );
    for command in ["validate", "plan", "apply", "completions", "man"] {
        assert!(
            page.contains(command),
            "{command} missing from the man page"
        );
    }
    assert_eq!(cutover(&["completions", "tcsh"]).status.code(), Some(2));
}

/// A step that cannot run is not "nothing to do".
#[test]
fn blocked_steps_say_nothing_was_changed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy("tests/plans/files/present.pst", dir.path().join("ana.pst")).unwrap();
    let plan = dir.path().join("plan.yaml");
    std::fs::write(
        &plan,
        r#"version: 1
name: blocked
domain: demo.example
target: { kind: maildir, path: out }
sources:
  pc: { kind: pst }
users:
  - email: ana@demo.example
    migrate:
      - { from: pc, file: ana.pst }
"#,
    )
    .unwrap();
    let plan = plan.to_str().unwrap();
    assert_eq!(
        run(&["apply", "--yes", "--target", "user.ana", plan]).code,
        ExitCode::Ok
    );
    let result = run(&["apply", "--yes", "--target", "copy.ana.pc", plan]);
    assert_eq!(result.code, ExitCode::Failure, "{}", result.stdout);
    assert!(
        result
            .stdout
            .contains("1 step blocked (copy.ana.pc) — nothing was changed."),
        "{}",
        result.stdout
    );
    assert!(
        !result.stdout.contains("Nothing to do"),
        "{}",
        result.stdout
    );
    let preview = run(&["plan", "--target", "copy.ana.pc", plan]);
    assert!(
        preview
            .stdout
            .contains("1 step blocked (copy.ana.pc): apply cannot run it"),
        "{}",
        preview.stdout
    );
}

#[test]
fn quiet_and_verbose() {
    let (_dir, plan) = demo_copy();
    let plan = plan.to_str().unwrap();
    let quiet = run(&["-q", "apply", "--yes", "--progress", "plain", plan]);
    assert_eq!(quiet.code, ExitCode::Ok, "{}", quiet.stderr);
    assert!(
        !quiet.stdout.contains("user.ana"),
        "no preview: {}",
        quiet.stdout
    );
    assert!(quiet.stderr.is_empty(), "no progress: {}", quiet.stderr);
    assert!(quiet.stdout.contains("Apply succeeded"), "{}", quiet.stdout);

    let (_dir, plan) = demo_copy();
    let plan = plan.to_str().unwrap();
    let normal = run(&["apply", "--yes", "--progress", "plain", plan]);
    assert!(
        normal.stdout.contains("user.ana") && normal.stderr.contains("copy.ana.thunderbird: done")
    );
    assert!(!normal.stderr.contains("committed"), "{}", normal.stderr);

    let (_dir, plan) = demo_copy();
    let plan = plan.to_str().unwrap();
    let verbose = run(&["apply", "-v", "--yes", "--progress", "plain", plan]);
    assert!(
        verbose.stderr.contains("copy.ana.thunderbird: committed"),
        "{}",
        verbose.stderr
    );
    assert!(verbose.stdout.contains("State: ") && verbose.stdout.contains("Event log: "));
    assert_eq!(
        cutover(&["-q", "-v", "validate", "plans/demo.yaml"])
            .status
            .code(),
        Some(2),
        "-q and -v together are a usage error"
    );
}
