//! First use without surprises (issue 16): the README's commands are real, steps this build
//! cannot run are said so before apply, blocked is not "no changes", an interrupted step says
//! so, retries and throttling show in the report, snippets stay small, the TLS-on-plaintext
//! and unresolvable-name errors say what to change, the lock is taken before any server is
//! contacted and `state unlock` never frees a live apply, and Ctrl-C stops apply at every
//! stage — the second one at once.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use clap::Parser;
use common::{demo_copy, run};
use cutover::cli::{Cli, ExitCode};
use cutover::ops::Workspace;
use cutover::plan::Options;
use cutover::state::{RunOutcome, SqliteStore, StateStore};

/// A plan folder holding `plan.yaml` with `yaml`.
fn plan_dir(yaml: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.yaml");
    std::fs::write(&plan, yaml).unwrap();
    (dir, plan)
}

/// A plan into a maildir with `rest` (its `sources:` and `users:`).
fn maildir_plan(rest: &str) -> (tempfile::TempDir, PathBuf) {
    plan_dir(&format!(
        "version: 1\nname: firstuse\ndomain: acme.test\ntarget: {{ kind: maildir, path: out }}\n{rest}"
    ))
}

/// Replaces the parts of `text` that change from run to run.
fn stable(text: &str, dir: &Path) -> String {
    text.replace(dir.to_str().unwrap(), "<dir>")
}

/// A loopback TCP server the test controls: it counts connections, says `greeting` on each
/// (an IMAP server speaking plaintext), or says nothing and holds the connection open (a
/// server that hangs), or with `drop_connections` closes each at once.
struct Listener {
    port: u16,
    accepted: Arc<AtomicUsize>,
    drop_connections: Arc<AtomicBool>,
}

impl Listener {
    fn start(greeting: Option<&'static [u8]>) -> Listener {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let drop_connections = Arc::new(AtomicBool::new(false));
        let (count, dropping) = (Arc::clone(&accepted), Arc::clone(&drop_connections));
        std::thread::spawn(move || {
            let mut open = Vec::new();
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                if dropping.load(Ordering::SeqCst) {
                    drop(stream);
                    continue;
                }
                count.fetch_add(1, Ordering::SeqCst);
                if let Some(greeting) = greeting {
                    let _ = stream.write_all(greeting);
                }
                open.push(stream);
            }
        });
        Listener {
            port,
            accepted,
            drop_connections,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn wait_for_connection(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.accepted() == 0 {
            assert!(Instant::now() < deadline, "nothing connected to the server");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A plan copying one IMAP account at `host:port` into a maildir; the password in a file.
fn imap_plan(host: &str, port: u16, tls: &str) -> (tempfile::TempDir, PathBuf) {
    let (dir, plan) = plan_dir(&format!(
        r#"version: 1
name: firstuse
domain: acme.test
target: {{ kind: maildir, path: out }}
sources:
  oldhost: {{ kind: imap, host: {host}, port: {port}{tls} }}
users:
  - email: ana@acme.test
    migrate:
      - from: oldhost
        login: ana
        password: {{ file: ana.txt }}
settings:
  output_dir: out
"#
    ));
    std::fs::write(dir.path().join("ana.txt"), "not-a-real-password\n").unwrap();
    (dir, plan)
}

fn state_file(dir: &Path) -> PathBuf {
    dir.join(".cutover/firstuse.db")
}

// ---- The README ----------------------------------------------------------------------

/// `a|b c` → `[[a, c], [b, c]]`: the README writes alternatives with `|`.
fn alternatives(words: &[&str]) -> Vec<Vec<String>> {
    let mut out = vec![Vec::new()];
    for word in words {
        let choices: Vec<&str> = word.split('|').collect();
        out = out
            .into_iter()
            .flat_map(|prefix: Vec<String>| {
                choices.iter().map(move |c| {
                    let mut next = prefix.clone();
                    next.push(c.to_string());
                    next
                })
            })
            .collect();
    }
    out
}

#[test]
fn the_readme_commands_parse_and_name_what_exists() {
    let readme = std::fs::read_to_string("README.md").unwrap();
    let block = readme
        .split("## Commands\n\n")
        .nth(1)
        .expect("a Commands section");
    let block = &block[..block.find("\n\n").unwrap()];
    let acme =
        cutover::plan::load_file(Path::new("plans/acme-to-m365.yaml"), Options::default()).unwrap();
    let graph = acme.graph.as_ref().expect("the seed plan loads");
    let mut parsed = 0;
    for line in block.lines() {
        let command = line.split(" # ").next().unwrap();
        let command = command.split(" > ").next().unwrap().trim();
        let words: Vec<&str> = command
            .split_whitespace()
            .filter(|w| !w.starts_with('['))
            .collect();
        assert_eq!(words[0], "cutover", "{line}");
        for argv in alternatives(&words[1..]) {
            Cli::try_parse_from(std::iter::once("cutover".to_string()).chain(argv.clone()))
                .unwrap_or_else(|e| panic!("README: `{line}` does not parse ({argv:?}): {e}"));
            parsed += 1;
        }
        for word in &words {
            if word.starts_with("plans/") || word.starts_with("schemas/") {
                assert!(
                    Path::new(word).exists(),
                    "README names {word}, which is not there"
                );
            }
            if ["manual.", "copy.", "verify.", "user."]
                .iter()
                .any(|p| word.starts_with(p))
            {
                assert!(
                    graph.step(word).is_some(),
                    "README names step {word}, which the seed plan does not have"
                );
            }
        }
    }
    assert!(parsed >= 15, "{parsed} commands");

    // The demo plan's header says how to write its corpus: that command is real too.
    let demo = std::fs::read_to_string("plans/demo.yaml").unwrap();
    let header = demo
        .lines()
        .find(|l| l.starts_with('#') && l.contains("`cutover demo"))
        .expect("the demo plan says how its corpus is made");
    let command = header.split('`').nth(1).unwrap();
    let words: Vec<&str> = command.split_whitespace().collect();
    let cli = Cli::try_parse_from(&words).unwrap_or_else(|e| panic!("`{command}`: {e}"));
    let cutover::cli::Command::Demo(demo_args) = cli.command else {
        panic!("{command}")
    };
    let cutover::cli::demo::DemoCommand::Init { dir, .. } = demo_args.command else {
        panic!("{command}")
    };
    for mbox in ["ana.mbox", "ben.mbox"] {
        assert!(dir.join(mbox).exists(), "{} has no {mbox}", dir.display());
    }
}

// ---- Steps this build cannot run -------------------------------------------------------

#[test]
fn steps_this_build_cannot_run_are_warned_about_and_blocked() {
    let (dir, plan) = maildir_plan(
        r#"sources:
  import: { kind: pst, via: import-service, sas_url: { env: FIRST_USE_UNSET_SAS } }
users:
  - email: carol@acme.test
    migrate:
      - from: import
        file: carol.pst
"#,
    );
    std::fs::copy("plans/acme/pst/carol.pst", dir.path().join("carol.pst")).unwrap();
    let loaded = cutover::plan::load_file(&plan, Options::default()).unwrap();
    let unsupported = cutover::ops::unsupported_steps(&loaded);
    assert!(
        !unsupported.is_empty(),
        "this plan needs a step kind the build cannot run; pick another when it lands"
    );
    let plan = plan.to_str().unwrap();

    // validate: still valid (exit 0), with a warning per such step.
    let validated = run(&["validate", plan]);
    assert_eq!(validated.code, ExitCode::Ok, "{}", validated.stderr);
    assert!(
        validated.stdout.contains("valid, 1 warning"),
        "{}",
        validated.stdout
    );
    insta::assert_snapshot!(
        "unsupported-validate",
        stable(&(validated.stderr.clone() + &validated.stdout), dir.path())
    );
    let json = run(&["validate", "--format", "json", plan]);
    for (step, what) in &unsupported {
        assert!(
            json.stdout
                .contains(&format!("this build cannot run `{step}` yet: {what}")),
            "{}",
            json.stdout
        );
    }
    assert!(json.stdout.contains(cutover::ops::UNSUPPORTED_STEP));

    // plan --offline reads nothing and still shows them blocked, with the reason; and
    // --detailed-exitcode does not call that success.
    let offline = run(&["plan", "--offline", "--detailed-exitcode", plan]);
    assert_eq!(offline.code, ExitCode::Failure, "{}", offline.stdout);
    for (step, what) in &unsupported {
        let line = offline
            .stdout
            .lines()
            .find(|l| l.contains(step.as_str()))
            .unwrap_or_else(|| panic!("{step} missing: {}", offline.stdout));
        assert!(line.trim_start().starts_with('!'), "{line}");
        assert!(offline.stdout.contains(what.as_str()), "{}", offline.stdout);
    }
    insta::assert_snapshot!(
        "unsupported-plan-offline",
        stable(&offline.stdout, dir.path())
    );

    // The seed plan: whatever this build cannot do in it, validate says, and nothing else.
    let seed =
        cutover::plan::load_file(Path::new("plans/acme-to-m365.yaml"), Options::default()).unwrap();
    let expected = cutover::ops::unsupported_steps(&seed).len();
    let warnings = cutover::ops::unsupported_warnings(&seed);
    assert_eq!(warnings.len(), expected);
}

// ---- Blocked is not "no changes" -------------------------------------------------------

#[test]
fn plan_detailed_exitcode_is_1_when_any_step_is_blocked_and_names_them() {
    // ben's PST was cut short when it was copied off his PC: his copy is blocked, ana's
    // is not.
    let (dir, plan) = maildir_plan(
        r#"sources:
  thunderbird: { kind: mbox }
  pc: { kind: pst }
users:
  - email: ana@acme.test
    migrate:
      - { from: thunderbird, file: ana.mbox }
  - email: ben@acme.test
    migrate:
      - { from: pc, file: ben.pst }
"#,
    );
    std::fs::copy("plans/demo/ana.mbox", dir.path().join("ana.mbox")).unwrap();
    let pst = std::fs::read("plans/acme/pst/bob.pst").unwrap();
    std::fs::write(dir.path().join("ben.pst"), &pst[..pst.len() / 3]).unwrap();
    let plan = plan.to_str().unwrap();
    let preview = run(&["plan", "--detailed-exitcode", plan]);
    assert_eq!(preview.code, ExitCode::Failure, "{}", preview.stdout);
    let summary = preview.stdout.lines().last().unwrap();
    assert!(summary.contains("copy.ben.pc"), "{summary}");
    insta::assert_snapshot!("blocked-some-summary", summary);

    // Every step blocked: still 1 (it used to be 0, "no changes").
    assert_eq!(run(&["apply", "--yes", plan]).code, ExitCode::Failure);
    let preview = run(&[
        "plan",
        "--detailed-exitcode",
        "--target",
        "copy.ben.*",
        plan,
    ]);
    assert_eq!(preview.code, ExitCode::Failure, "{}", preview.stdout);
    assert!(
        !preview
            .stdout
            .lines()
            .any(|l| l.trim_start().starts_with('+')),
        "{}",
        preview.stdout
    );
    insta::assert_snapshot!("blocked-all", stable(&preview.stdout, dir.path()));

    // ben's mail comes from an mbox export instead: changes again, 2.
    std::fs::copy("plans/demo/ben.mbox", dir.path().join("ben.mbox")).unwrap();
    let yaml = std::fs::read_to_string(plan).unwrap();
    std::fs::write(
        plan,
        yaml.replace(
            "{ from: pc, file: ben.pst }",
            "{ from: thunderbird, file: ben.mbox }",
        ),
    )
    .unwrap();
    assert_eq!(
        run(&["plan", "--detailed-exitcode", plan]).code,
        ExitCode::Usage
    );
}

// ---- status and the report after an interruption ----------------------------------------

#[test]
fn status_says_interrupted_and_the_report_lists_attempts_and_throttling() {
    let (dir, plan) = demo_copy();
    let step = "copy.ana.thunderbird";
    // A run that started ana's copy, was throttled for 4.2 s, and ended without finishing
    // it (killed): as the state records it.
    let ws = Workspace::open(&plan, None, Options::default()).unwrap();
    let hash = ws.runners()[step].config_hash();
    let store = SqliteStore::open(&ws.state_path).unwrap();
    store.set_config_hash(step, &hash).unwrap();
    store.mark_running(step).unwrap();
    let (key, value) =
        cutover::runners::notes::count_checkpoint(cutover::runners::notes::THROTTLED_MS, 4200);
    store
        .commit_progress(step, Default::default(), &[(&key, &value)])
        .unwrap();
    let plan = plan.to_str().unwrap();

    let status = run(&["status", plan]);
    let line = status.stdout.lines().find(|l| l.starts_with(step)).unwrap();
    assert!(line.contains("interrupted"), "{line}");
    insta::assert_snapshot!("status-interrupted", stable(&status.stdout, dir.path()));

    // While an apply holds the lock, the step is running indeed.
    let guard = store.acquire_lock(Duration::ZERO).unwrap();
    let status = run(&["status", plan]);
    let line = status.stdout.lines().find(|l| l.starts_with(step)).unwrap();
    assert!(
        line.contains("running") && !line.contains("interrupted"),
        "{line}"
    );
    guard.release().unwrap();

    // The next apply resumes it — its second attempt — and the report says so.
    let applied = run(&["apply", "--yes", plan]);
    assert_eq!(
        applied.code,
        ExitCode::Ok,
        "{}{}",
        applied.stdout,
        applied.stderr
    );
    let report = std::fs::read_to_string(dir.path().join("demo-out/demo-report.md")).unwrap();
    let section = report
        .split("\n## Retries and throttling\n")
        .nth(1)
        .expect("a retries section");
    insta::assert_snapshot!("report-retries", section);
    let json = std::fs::read_to_string(dir.path().join("demo-out/demo-report.json")).unwrap();
    assert!(json.contains("\"attempts\": 2"), "{json}");
    assert!(json.contains("\"throttled_secs\": 5"), "{json}");
}

// ---- Snippets ------------------------------------------------------------------------

#[test]
fn a_huge_plan_gets_a_few_lines_of_snippet() {
    let dir = tempfile::tempdir().unwrap();
    // One 5 MB string over 41,676 lines (a file pasted where the plan should be) …
    let line = "x".repeat(120);
    let mut many_lines = String::from("\"");
    for _ in 0..41_676 {
        many_lines.push_str(&line);
        many_lines.push('\n');
    }
    many_lines.push('"');
    let many = dir.path().join("many-lines.yaml");
    std::fs::write(&many, &many_lines).unwrap();
    // … and 5 MB on one line, with a mistake at its end.
    let one_line = format!(
        "{{version: 1, name: big, domain: acme.test, target: {{kind: maildir, path: out}}, \
         users: [], notes: \"{}\"}}",
        "y".repeat(5 << 20)
    );
    let one = dir.path().join("one-line.yaml");
    std::fs::write(&one, &one_line).unwrap();

    for (file, source) in [(&many, &many_lines), (&one, &one_line)] {
        let out = run(&["validate", file.to_str().unwrap()]);
        assert_eq!(out.code, ExitCode::Failure);
        assert!(
            out.stderr.len() < 4_000 && out.stderr.lines().count() < 30,
            "{} bytes, {} lines for a {}-byte plan:\n{}",
            out.stderr.len(),
            out.stderr.lines().count(),
            source.len(),
            &out.stderr[..out.stderr.len().min(3000)]
        );
    }
    let out = run(&["validate", many.to_str().unwrap()]);
    insta::assert_snapshot!("snippet-many-lines", stable(&out.stderr, dir.path()));
    let out = run(&["validate", one.to_str().unwrap()]);
    insta::assert_snapshot!("snippet-one-line", stable(&out.stderr, dir.path()));

    // The mistake far into the line: the snippet starts with `…`, the header still gives
    // the file's own column.
    let domains: Vec<String> = (0..60).map(|i| format!("d{i}.acme.test")).collect();
    let deep_line = format!(
        "{{version: 1, name: big, domain: acme.test, extra_domains: [{}], target: \
         {{kind: maildir, path: out}}, users: [], notes: \"{}\"}}",
        domains.join(", "),
        "y".repeat(5 << 20)
    );
    let deep = dir.path().join("deep.yaml");
    std::fs::write(&deep, &deep_line).unwrap();
    let out = run(&["validate", deep.to_str().unwrap()]);
    let column = deep_line.find("notes:").unwrap() + 1;
    assert!(
        out.stderr.contains(&format!("deep.yaml:1:{column}]")),
        "column {column}: {}",
        out.stderr
    );
    insta::assert_snapshot!("snippet-deep-in-a-line", stable(&out.stderr, dir.path()));
}

// ---- Connection errors that say what to change ------------------------------------------

#[test]
fn implicit_tls_against_a_plaintext_server_says_what_to_change() {
    let server = Listener::start(Some(
        b"* OK [CAPABILITY IMAP4rev1 STARTTLS] Dovecot ready.\r\n",
    ));
    let (dir, plan) = imap_plan("127.0.0.1", server.port, "");
    let preview = run(&["plan", plan.to_str().unwrap()]);
    assert!(server.accepted() > 0);
    let line = preview
        .stdout
        .lines()
        .find(|l| l.contains("copy.ana.oldhost"))
        .unwrap_or_else(|| panic!("{}", preview.stdout));
    assert!(line.trim_start().starts_with('!'), "{line}");
    let shown = stable(&preview.stdout, dir.path()).replace(&server.port.to_string(), "PORT");
    assert!(
        shown.contains(
            "the server at 127.0.0.1:PORT did not start TLS — is it plaintext or STARTTLS on \
             this port? (tls: starttls / tls: none + allow_plaintext)"
        ),
        "{shown}"
    );
    insta::assert_snapshot!("tls-on-plaintext", shown);
}

#[test]
fn a_name_that_does_not_resolve_fails_once_and_says_so() {
    // `.invalid` never resolves (RFC 6761).
    let (dir, plan) = imap_plan("imap.cutover-first-use.invalid", 993, "");
    let plan = plan.to_str().unwrap();
    let applied = run(&["apply", "--yes", plan]);
    assert_eq!(applied.code, ExitCode::Failure, "{}", applied.stdout);
    let shown = run(&["state", "show", plan, "copy.ana.oldhost"]);
    assert!(shown.stdout.contains("attempts:    1"), "{}", shown.stdout);
    let error = shown
        .stdout
        .lines()
        .find(|l| l.starts_with("last error:"))
        .unwrap()
        .to_string();
    assert!(
        error.contains("the name imap.cutover-first-use.invalid does not resolve"),
        "{error}"
    );
    insta::assert_snapshot!("no-such-host", stable(&error, dir.path()));
}

// ---- The lock --------------------------------------------------------------------------

#[test]
fn a_second_apply_learns_of_the_lock_before_contacting_any_server() {
    let server = Listener::start(None);
    let (dir, plan) = imap_plan("127.0.0.1", server.port, "");
    std::fs::create_dir_all(dir.path().join(".cutover")).unwrap();
    let store = SqliteStore::open(state_file(dir.path())).unwrap();
    let guard = store.acquire_lock(Duration::ZERO).unwrap();

    let applied = run(&["apply", "--yes", plan.to_str().unwrap()]);
    assert_eq!(applied.code, ExitCode::Failure, "{}", applied.stderr);
    assert!(
        applied.stderr.contains("is locked by pid"),
        "{}",
        applied.stderr
    );
    assert_eq!(server.accepted(), 0, "the preview ran before the lock");
    guard.release().unwrap();
}

#[test]
fn state_unlock_never_frees_a_live_apply_and_forces_another_hosts_with_a_warning() {
    let (dir, plan) = demo_copy();
    let plan = plan.to_str().unwrap();
    let db = dir.path().join(".cutover/demo.db");
    std::fs::create_dir_all(db.parent().unwrap()).unwrap();
    let store = SqliteStore::open(&db).unwrap();
    let pid = std::process::id().to_string();
    let host = cutover::state::hostname();
    let shown = |text: &str| {
        let text = text.replace(&pid, "PID").replace(&host, "HOST");
        // `since 2026-…Z`: the time the lock was taken.
        let mut out = String::new();
        for (i, part) in text.split("since ").enumerate() {
            if i == 0 {
                out.push_str(part);
            } else {
                out.push_str("since TIME");
                out.push_str(&part[part.find([')', ';']).unwrap_or(0)..]);
            }
        }
        out
    };

    // This process holds it: alive on this host.
    let guard = store.acquire_lock(Duration::ZERO).unwrap();
    for args in [
        &["state", "unlock", plan][..],
        &["state", "unlock", "--force", plan],
    ] {
        let out = run(args);
        assert_eq!(out.code, ExitCode::Failure, "{args:?}: {}", out.stdout);
        assert!(
            store.lock_holder().unwrap().is_some(),
            "{args:?} released it"
        );
        insta::assert_snapshot!("unlock-live", shown(&out.stderr));
    }
    guard.release().unwrap();

    // Another host's: refused without --force, released with it and a warning.
    lock_row(&db, "r-1", 4242, "laptop-of-jo.example");
    let out = run(&["state", "unlock", plan]);
    assert_eq!(out.code, ExitCode::Failure);
    assert!(store.lock_holder().unwrap().is_some());
    insta::assert_snapshot!("unlock-other-host", out.stderr);
    let out = run(&["state", "unlock", "--force", plan]);
    assert_eq!(out.code, ExitCode::Ok, "{}", out.stderr);
    assert!(store.lock_holder().unwrap().is_none());
    insta::assert_snapshot!("unlock-other-host-forced", out.stderr);

    // A dead process's lock (a pid that has exited) goes without --force.
    let mut child = Command::new("true").spawn().unwrap();
    let dead_pid = child.id();
    child.wait().unwrap();
    lock_row(&db, "r-2", dead_pid, &host);
    let out = run(&["state", "unlock", plan]);
    assert_eq!(out.code, ExitCode::Ok, "{}", out.stderr);
    assert!(out.stdout.contains("no longer running"), "{}", out.stdout);
    assert!(store.lock_holder().unwrap().is_none());
}

/// The lock as an apply of pid `pid` on `host` left it at 2026-03-01T14:05:09Z.
fn lock_row(db: &Path, run_id: &str, pid: u32, host: &str) {
    rusqlite::Connection::open(db)
        .unwrap()
        .execute(
            "INSERT INTO lock (singleton, run_id, pid, host, acquired_at)
             VALUES (1, ?1, ?2, ?3, 1772373909000)",
            rusqlite::params![run_id, pid, host],
        )
        .unwrap();
}

// ---- Ctrl-C ----------------------------------------------------------------------------

/// `cutover apply` with `args` in `dir` as a child process, stderr read line by line.
struct ApplyChild {
    child: std::process::Child,
    stderr: mpsc::Receiver<String>,
    seen: String,
}

impl ApplyChild {
    fn spawn(dir: &Path, args: &[&str]) -> ApplyChild {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cutover"))
            .arg("apply")
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        ApplyChild {
            child,
            stderr: rx,
            seen: String::new(),
        }
    }

    fn interrupt(&self) {
        // SAFETY: kill(2) with a pid this test spawned and has not reaped.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        assert_eq!(rc, 0);
    }

    /// Reads stderr until a line contains `text`.
    fn wait_for_line(&mut self, text: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push_str(&line);
                    self.seen.push('\n');
                    if line.contains(text) {
                        return;
                    }
                }
                Err(_) => panic!("no `{text}` on stderr; so far:\n{}", self.seen),
            }
        }
    }

    /// The exit code, waiting at most `timeout` (killing the child after that).
    fn exit_code(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                while let Ok(line) = self.stderr.recv_timeout(Duration::from_millis(200)) {
                    self.seen.push_str(&line);
                    self.seen.push('\n');
                }
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("apply did not exit; stderr so far:\n{}", self.seen);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ApplyChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn last_run(db: &Path) -> cutover::state::RunRecord {
    SqliteStore::open(db)
        .unwrap()
        .recent_runs(1)
        .unwrap()
        .pop()
        .expect("a run was recorded")
}

#[test]
fn ctrl_c_while_apply_yes_checks_the_servers_stops_at_once() {
    // The source server accepts and never answers: the preview's sign-in hangs (for the
    // 60 s network timeout) — the "first seconds" of `apply --yes`.
    let server = Listener::start(None);
    let (dir, _plan) = imap_plan("127.0.0.1", server.port, "");
    let mut apply = ApplyChild::spawn(dir.path(), &["--yes", "--progress", "plain", "plan.yaml"]);
    server.wait_for_connection(Duration::from_secs(30));
    apply.interrupt();
    assert_eq!(apply.exit_code(Duration::from_secs(10)), Some(130));
    assert!(
        apply
            .seen
            .contains("interrupted before anything was changed"),
        "{}",
        apply.seen
    );
    let db = state_file(dir.path());
    let store = SqliteStore::open(&db).unwrap();
    assert!(store.lock_holder().unwrap().is_none(), "the lock was left");
    assert_eq!(last_run(&db).outcome, Some(RunOutcome::Interrupted));
    assert!(store.steps().unwrap().iter().all(|s| s.attempts == 0));
}

#[test]
fn a_second_ctrl_c_aborts_a_stuck_step_at_once_and_keeps_what_was_committed() {
    // Phase 1: the server closes every connection, so `plan --out` saves quickly (the copy
    // shows blocked). Phase 2: it accepts and hangs, so the applied copy step sits in a
    // read that the first Ctrl-C cannot interrupt.
    let server = Listener::start(None);
    server.drop_connections.store(true, Ordering::SeqCst);
    let (dir, plan) = imap_plan("127.0.0.1", server.port, "");
    let saved = dir.path().join("saved.json");
    let out = run(&[
        "plan",
        "--out",
        saved.to_str().unwrap(),
        plan.to_str().unwrap(),
    ]);
    assert_eq!(out.code, ExitCode::Ok, "{}{}", out.stdout, out.stderr);
    server.drop_connections.store(false, Ordering::SeqCst);

    let mut apply = ApplyChild::spawn(dir.path(), &["--progress", "plain", "saved.json"]);
    server.wait_for_connection(Duration::from_secs(30));
    apply.interrupt();
    apply.wait_for_line("Ctrl-C again aborts", Duration::from_secs(10));
    apply.interrupt();
    assert_eq!(apply.exit_code(Duration::from_secs(10)), Some(130));
    assert!(apply.seen.contains("aborting"), "{}", apply.seen);

    let db = state_file(dir.path());
    let store = SqliteStore::open(&db).unwrap();
    assert!(store.lock_holder().unwrap().is_none(), "the lock was left");
    assert_eq!(last_run(&db).outcome, Some(RunOutcome::Interrupted));
    // What was committed before the abort stays: the user step finished first.
    let user = store.step("user.ana").unwrap().unwrap();
    assert_eq!(user.status, cutover::state::StepStatus::Done);
    let status = run(&["status", plan.to_str().unwrap()]);
    let line = status
        .stdout
        .lines()
        .find(|l| l.starts_with("copy.ana.oldhost"))
        .unwrap();
    assert!(line.contains("interrupted"), "{line}");
}
