//! Servers that misbehave, on purpose or by bug: what the IMAP client makes of a `* BYE` in
//! the middle of a login or instead of a continuation, a completion whose text ends in
//! `{5}`, `BODY[] NIL`, a folder name that is not ASCII — each against a scripted server
//! (`support::fake_imap`), since no real server does these on request.
mod support;

use std::time::Duration;

use cutover::connectors::imap::ImapClient;
use cutover::connectors::mail::RawMessage;
use cutover::connectors::net::{Credentials, Endpoint, NetError};
use cutover::plan::model::Tls;
use support::fake_imap::FakeImap;

fn endpoint(port: u16) -> Endpoint {
    Endpoint {
        timeout: Duration::from_secs(3),
        ..Endpoint::new("127.0.0.1", port, Tls::None).allowing_plaintext()
    }
}

fn credentials() -> Credentials {
    Credentials::password("alice@example.test", "pw-never-shown")
}

/// A `* BYE` in answer to AUTHENTICATE is the server's reason, not a bare end of file.
#[tokio::test]
async fn bye_during_login_is_reported_with_the_servers_words() {
    let server = FakeImap::start(|s| {
        s.send("* OK ready\r\n");
        let (tag, _) = s.command().unwrap();
        s.send(&format!(
            "* CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR\r\n{tag} OK done\r\n"
        ));
        let _ = s.command().unwrap();
        s.send("* BYE Too many invalid login attempts from your address\r\n");
    });
    let err = ImapClient::connect(&endpoint(server.port), &credentials())
        .await
        .unwrap_err();
    let shown = err.to_string();
    assert!(
        shown.contains("BYE") && shown.contains("Too many invalid login attempts"),
        "{shown}"
    );
    assert!(!shown.contains("pw-never-shown"));
    server.finish();
}

/// A `* BYE` where the client waits for the `+` of a synchronizing literal.
#[tokio::test]
async fn bye_instead_of_a_continuation_is_reported() {
    let server = FakeImap::start(|s| {
        s.open("IMAP4rev1");
        let (_, command) = s.command().unwrap();
        assert!(command.starts_with("APPEND"), "{command}");
        s.send("* BYE Server shutting down for maintenance\r\n");
    });
    let mut client = ImapClient::connect(&endpoint(server.port), &credentials())
        .await
        .unwrap();
    let message = RawMessage::new(b"Subject: x\r\n\r\nbody\r\n".to_vec());
    let err = client.append("INBOX", &message).await.unwrap_err();
    let shown = err.to_string();
    assert!(
        shown.contains("BYE") && shown.contains("shutting down for maintenance"),
        "{shown}"
    );
    server.finish();
}

/// A tagged NO echoing a name that ends in `{5}` is one line of text: the session stays in
/// step and the next command gets its own answer.
#[tokio::test]
async fn a_completion_ending_in_braces_announces_no_literal() {
    let server = FakeImap::start(|s| {
        s.open("IMAP4rev1");
        let (tag, command) = s.command().unwrap();
        assert!(command.starts_with("EXAMINE"), "{command}");
        s.send(&format!("{tag} NO Mailbox doesn't exist: Reports{{5}}\r\n"));
        let (tag, command) = s.command().unwrap();
        assert!(command.starts_with("EXAMINE"), "{command}");
        s.send(&format!(
            "* 4 EXISTS\r\n* OK [UIDVALIDITY 9] ok\r\n{tag} OK [READ-ONLY] done\r\n"
        ));
    });
    let mut client = ImapClient::connect(&endpoint(server.port), &credentials())
        .await
        .unwrap();
    let err = client.examine("Reports{5}").await.unwrap_err();
    assert!(
        matches!(err, NetError::Rejected { .. }) && err.to_string().contains("doesn't exist"),
        "{err}"
    );
    let status = client.examine("INBOX").await.unwrap();
    assert_eq!((status.exists, status.uid_validity), (4, Some(9)));
    server.finish();
}

/// A folder name that is not ASCII (a server that stores raw UTF-8 names) goes as a literal,
/// after the server's `+` when it has no LITERAL+.
#[tokio::test]
async fn a_non_ascii_folder_name_goes_as_a_literal() {
    let name = "Entwürfe";
    let server = FakeImap::start(move |s| {
        s.open("IMAP4rev1");
        let (tag, command) = s.command().unwrap();
        assert_eq!(command, format!("EXAMINE {{{}}}", name.len()));
        s.send("+ go ahead\r\n");
        assert_eq!(s.bytes(name.len()), name.as_bytes());
        assert_eq!(s.line().unwrap(), "\r\n");
        s.send(&format!(
            "* 2 EXISTS\r\n* OK [UIDVALIDITY 3] ok\r\n{tag} OK [READ-ONLY] done\r\n"
        ));
    });
    let mut client = ImapClient::connect(&endpoint(server.port), &credentials())
        .await
        .unwrap();
    let status = client.examine(name).await.unwrap();
    assert_eq!(status.exists, 2);
    server.finish();
}

/// `BODY[] NIL` is a server with nothing to give for that message: no message at all, never
/// an empty one that would be appended.
#[tokio::test]
async fn body_nil_is_not_an_empty_message() {
    let server = FakeImap::start(|s| {
        s.open("IMAP4rev1");
        let (tag, command) = s.command().unwrap();
        assert!(command.starts_with("UID FETCH 1:2"), "{command}");
        s.send("* 1 FETCH (UID 1 FLAGS (\\Seen) RFC822.SIZE 40 BODY[] NIL)\r\n");
        s.send("* 2 FETCH (UID 2 FLAGS () RFC822.SIZE 5 BODY[] {5}\r\nhello)\r\n");
        s.send(&format!("{tag} OK fetched\r\n"));
    });
    let mut client = ImapClient::connect(&endpoint(server.port), &credentials())
        .await
        .unwrap();
    let mut fetched = Vec::new();
    {
        let mut fetch = client.uid_fetch("1:2").await.unwrap();
        while let Some(m) = fetch.next().await.unwrap() {
            fetched.push((m.uid, m.message.bytes().to_vec()));
        }
    }
    assert_eq!(fetched, vec![(2, b"hello".to_vec())]);
    server.finish();
}

mod copies {
    //! The same misbehaviour through a whole copy: a real Dovecot behind the fault proxy.
    use std::sync::Arc;

    use cutover::connectors::mail::RawMessage;
    use cutover::engine::{CancellationToken, StepResult, WalkOutcome};

    use super::support::dovecot::Dovecot;
    use super::support::fault_proxy::{FaultProxy, Faults};
    use super::support::remote::*;

    fn plan(
        base: &std::path::Path,
        port: u16,
        login: &str,
        password: &str,
        limit_mb: u32,
    ) -> String {
        let pw = pw_file(base, "src.pw", password);
        format!(
            r#"
version: 1
name: hostile
domain: example.test
target: {{ kind: maildir, path: out }}
sources:
  old: {{ kind: imap, host: 127.0.0.1, port: {port}, tls: none, allow_plaintext: true }}
users:
  - email: bob@example.test
    migrate:
      - {{ from: old, login: {login}, password: {pw} }}
settings: {{ retries: 2, max_message_size_mb: {limit_mb}, memory_budget_mb: 16 }}
"#
        )
    }

    /// Copies `messages` (UIDs 1, 2, 3…) from behind a proxy with `faults` that keep UID 2
    /// from the client: the copy must fail naming it, with nothing stored; then, the faults
    /// lifted, copy everything exactly once. `stored_before`: how many the failed copy stored
    /// if the test knows. Returns the stored messages' sizes.
    async fn withheld_then_copied(
        user: &str,
        messages: Vec<RawMessage>,
        faults: Faults,
        stored_before: Option<usize>,
    ) -> Vec<usize> {
        let d = Dovecot::shared();
        let src = d.add_user(user);
        let count = messages.len();
        seed(&d, &src, &vec![("INBOX".to_string(), messages)]).await;
        let proxy = FaultProxy::start(d.imap_port, faults);
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().to_path_buf();
        let yaml = plan(&base, proxy.port, &src.login, &src.password, 35);
        let fx = fixture_in(dir, base, &yaml);
        let store = open_store(&fx, "state.db");
        let report = apply(&fx, Arc::clone(&store), CancellationToken::new()).await;
        assert_eq!(report.outcome, WalkOutcome::Failed, "{report:#?}");
        let StepResult::Failed { error } = &report.steps["copy.bob.old"] else {
            panic!("{report:#?}");
        };
        assert!(
            error.contains("UID 2") && error.contains("still holds it"),
            "{error}"
        );
        let out = fx.base.join("out/bob@example.test");
        let before = maildir_contents(&out).values().flatten().count();
        assert!(before < count, "UID 2 is not stored, nor passed");
        if let Some(expected) = stored_before {
            assert_eq!(before, expected);
        }
        proxy.set_faults(Faults::default());
        let report = apply(&fx, store, CancellationToken::new()).await;
        assert_eq!(report.outcome, WalkOutcome::Succeeded, "{report:#?}");
        let stored = maildir_contents(&out);
        let sizes: Vec<usize> = stored.values().flatten().map(|m| m.0.len()).collect();
        assert_eq!(sizes.len(), count, "each once: {sizes:?}");
        sizes
    }

    /// A message the server lists but answers `BODY[] NIL` for is neither appended as an
    /// empty message nor passed by the checkpoint: the copy fails saying which, and copies
    /// everything once the server hands it over.
    #[tokio::test]
    async fn a_message_the_server_withholds_is_not_skipped() {
        let messages: Vec<_> = (0..3).map(|i| message(7100 + i, true, 400)).collect();
        let faults = Faults {
            nil_body_uids: vec![2],
            ..Faults::default()
        };
        // Nothing of that batch is stored.
        withheld_then_copied("withheld", messages, faults, Some(0)).await;
    }

    /// The same for a message large enough to be streamed (over an eighth of a 16 MB budget):
    /// a server leaving it out of its answer (the header FETCH that precedes the body) does
    /// not get it passed by the checkpoint either.
    #[tokio::test]
    async fn a_streamed_message_left_out_of_an_answer_is_not_skipped() {
        let messages = vec![
            message(7200, true, 400),
            message(7201, true, 3 << 20),
            message(7202, true, 400),
        ];
        let faults = Faults {
            omit_fetch_uids: vec![2],
            ..Faults::default()
        };
        let sizes = withheld_then_copied("left-out", messages, faults, None).await;
        assert!(
            sizes.iter().any(|&n| n >= 3 << 20),
            "the large one too: {sizes:?}"
        );
    }

    /// A server announcing a body far larger than the plan's limit gets a clear error before
    /// any of it is read: the apply process's peak memory stays flat (measured by the kernel,
    /// `wait4`), whatever length was announced — 2 GiB, or 256 MiB actually streamed.
    #[test]
    fn an_announced_giant_literal_is_refused_unread() {
        let d = Dovecot::shared();
        let src = d.add_user("giant");
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(seed(
            &d,
            &src,
            &vec![("INBOX".to_string(), vec![message(7200, true, 2000)])],
        ));
        for announced in [2u64 << 30, 256 << 20] {
            let proxy = FaultProxy::start(
                d.imap_port,
                Faults {
                    huge_body: Some(announced),
                    ..Faults::default()
                },
            );
            let dir = tempfile::tempdir().unwrap();
            let yaml = plan(dir.path(), proxy.port, &src.login, &src.password, 1);
            let plan_file = dir.path().join("plan.yaml");
            std::fs::write(&plan_file, yaml).unwrap();
            // Output to files, not pipes: the child is reaped by `wait4`, not by `Child`.
            let (out, err) = (dir.path().join("stdout"), dir.path().join("stderr"));
            #[allow(clippy::zombie_processes)]
            let child = std::process::Command::new(env!("CARGO_BIN_EXE_cutover"))
                .args(["apply", "--yes", "--progress", "plain"])
                .arg(&plan_file)
                .stdout(std::fs::File::create(&out).unwrap())
                .stderr(std::fs::File::create(&err).unwrap())
                .spawn()
                .unwrap();
            let (status, peak_kib) = wait_with_peak_memory(child.id());
            let stdout = std::fs::read_to_string(&out).unwrap();
            let stderr = std::fs::read_to_string(&err).unwrap();
            assert_ne!(status, 0, "{stdout}{stderr}");
            let shown = format!("{stdout}{stderr}");
            assert!(
                shown.contains(&format!("announced {announced} bytes"))
                    && shown.contains("max_message_size_mb"),
                "{shown}"
            );
            assert!(
                peak_kib < 128 * 1024,
                "peak memory {peak_kib} KiB after a server announced {announced} bytes"
            );
        }
    }

    /// Waits for process `pid` (a child of this one) and returns its exit code and the peak
    /// resident memory the kernel recorded for it, in KiB.
    fn wait_with_peak_memory(pid: u32) -> (i32, i64) {
        let mut status = 0;
        // SAFETY: an all-zero rusage is valid; wait4 fills it for our own child.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: pid is our child, status and usage point to valid memory.
        let reaped = unsafe { libc::wait4(pid as i32, &mut status, 0, &mut usage) };
        assert_eq!(reaped, pid as i32);
        (libc::WEXITSTATUS(status), usage.ru_maxrss)
    }
}
