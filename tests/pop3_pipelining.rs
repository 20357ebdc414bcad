//! POP3 at wire speed, against the real Dovecot behind the fault proxy: where the server
//! advertises PIPELINING the copy keeps a window of downloads in flight, where it does not
//! (the proxy hides it) one at a time — the same mail arrives either way; and a connection
//! cut in the middle of a pipelined window costs a retry, never a message lost or stored
//! twice.

mod support;

use std::sync::Arc;

use cutover::connectors::mail::RawMessage;
use cutover::engine::{CancellationToken, WalkOutcome};
use support::dovecot::{Dovecot, User};
use support::fault_proxy::{FaultProxy, Faults};
use support::remote::{apply, done, fixture_in, maildir_contents, message, open_store};

const MESSAGES: usize = 150;

/// A POP3 maildrop of `MESSAGES` messages of varied size (two share a Message-ID, one is
/// there twice); returns them.
fn maildrop(d: &Dovecot, u: &User) -> Vec<RawMessage> {
    let mut mail: Vec<RawMessage> = (0..MESSAGES)
        .map(|i| message(7000 + i, i % 7 != 0, 200 + (i * 211) % 9000))
        .collect();
    mail.push(mail[3].clone());
    mail.push(RawMessage::new(
        b"Message-ID: <x@pipe.test>\r\nSubject: twin a\r\n\r\na\r\n".to_vec(),
    ));
    mail.push(RawMessage::new(
        b"Message-ID: <x@pipe.test>\r\nSubject: twin b\r\n\r\nb\r\n".to_vec(),
    ));
    for (i, m) in mail.iter().enumerate() {
        d.deliver(u, &format!("1700{i:06}.M{i}P9.pipe"), m.bytes());
    }
    mail
}

/// Copies `u`'s maildrop through `proxy` into a maildir; checks the target holds exactly
/// `mail` and returns the copy's attempts.
async fn copy_through(proxy: &FaultProxy, u: &User, mail: &[RawMessage]) -> u32 {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().to_path_buf();
    std::fs::write(base.join("src.pw"), &u.password).unwrap();
    let yaml = format!(
        "version: 1\nname: pipe\ndomain: example.test\ntarget: {{ kind: maildir, path: out }}\nsources:\n  old: {{ kind: pop3, host: 127.0.0.1, port: {}, tls: none, allow_plaintext: true }}\nusers:\n  - email: pat@example.test\n    migrate:\n      - {{ from: old, login: {}, password: {{ file: src.pw }} }}\n",
        proxy.port, u.login
    );
    let fx = fixture_in(dir, base.clone(), &yaml);
    let store = open_store(&fx, "state.db");
    let report = apply(&fx, Arc::clone(&store), CancellationToken::new()).await;
    assert_eq!(report.outcome, WalkOutcome::Succeeded, "{report:#?}");
    assert_eq!(done(&report, "copy.pat.old").items as usize, mail.len());
    assert_eq!(done(&report, "verify.pat").items as usize, mail.len());
    let mut have: Vec<Vec<u8>> = maildir_contents(&base.join("out/pat@example.test"))
        .into_values()
        .flatten()
        .map(|(bytes, _, _)| bytes)
        .collect();
    let mut want: Vec<Vec<u8>> = mail.iter().map(|m| m.bytes().to_vec()).collect();
    have.sort();
    want.sort();
    assert_eq!(have.len(), want.len(), "each message once");
    assert!(have == want, "byte-identical");
    store.step("copy.pat.old").unwrap().unwrap().attempts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_pipelining_downloads_overlap_without_it_they_take_turns() {
    let d = Dovecot::shared();

    let u = d.add_user("pipelined");
    let mail = maildrop(&d, &u);
    let proxy = FaultProxy::start(d.pop3_port, Faults::default());
    copy_through(&proxy, &u, &mail).await;
    let seen = proxy.counts();
    assert!(
        seen.pop3_max_in_flight > 8,
        "a window of downloads in flight: {seen:?}"
    );
    assert!(seen.downloads >= mail.len(), "{seen:?}");

    let u = d.add_user("one-at-a-time");
    let mail = maildrop(&d, &u);
    let proxy = FaultProxy::start(
        d.pop3_port,
        Faults {
            drop_capabilities: vec!["PIPELINING".into()],
            ..Faults::default()
        },
    );
    copy_through(&proxy, &u, &mail).await;
    let seen = proxy.counts();
    assert_eq!(
        seen.pop3_max_in_flight, 1,
        "one command at a time: {seen:?}"
    );
    assert!(seen.downloads >= mail.len(), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_in_the_middle_of_a_window_costs_a_retry_not_a_message() {
    let d = Dovecot::shared();
    let u = d.add_user("pipe-cut");
    let mail = maildrop(&d, &u);
    // Every 40th download is cut 300 bytes into the answers still coming: with a window in
    // flight, the cut falls among answers to downloads already sent.
    let proxy = FaultProxy::start(
        d.pop3_port,
        Faults {
            cut_download_every: Some(40),
            cut_download_after: 300,
            cut_download_limit: Some(2),
            ..Faults::default()
        },
    );
    let attempts = copy_through(&proxy, &u, &mail).await;
    let seen = proxy.counts();
    assert_eq!(seen.download_cuts, 2, "{seen:?}");
    assert!(seen.pop3_max_in_flight > 1, "{seen:?}");
    assert!(
        attempts >= 2,
        "the cuts were retried: {attempts} attempt(s)"
    );
}
