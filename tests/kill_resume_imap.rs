//! The idempotence contract for server copies under SIGKILL: `cutover apply` copies a
//! generated mailbox from one Dovecot account to another (IMAP → IMAP, batches of
//! MULTIAPPEND over parallel folder lanes; POP3 → IMAP, pipelined download windows) and is
//! killed at random instants, then run again until it finishes. Every source message must be
//! at the target exactly once, byte-identical, with its flags and internal date — a batch the
//! server stored just before the kill, but whose checkpoint never reached the state, must be
//! recognised on resume.

mod common;
mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use common::apply_process::{apply, resume_until_done, settled_so_far};

use cutover::connectors::mail::corpus::{self, CorpusSpec};
use cutover::state::{SqliteStore, StateStore, StepStatus};
use support::dovecot::Dovecot;
use support::fault_proxy::{FaultProxy, Faults};
use support::mailbox::{assert_same, imap_contents};
use support::remote::seed;

const MESSAGES: usize = 1_200;
const KILLS: usize = 8;
/// Pairs of distinct messages sharing a Message-ID (and, one in four, true duplicates).
const TWINS: usize = 40;

/// Messages the state says were settled (committed) so far.
fn copied_so_far(dir: &Path) -> u64 {
    settled_so_far(&dir.join(".cutover").join("kill-imap.db"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_imap_copy_then_resume_delivers_exactly_once() {
    let d = Dovecot::shared();
    let (src, dst) = (d.add_user("src"), d.add_user("dst"));
    let spec = CorpusSpec {
        attachment_every: 40,
        attachment_size: 64 * 1024,
        ..CorpusSpec::new(31, MESSAGES)
    };
    let mut by_folder: std::collections::BTreeMap<String, Vec<_>> = Default::default();
    for m in corpus::generate(&spec) {
        let name = if m.folder.is_inbox() {
            "INBOX".to_string()
        } else {
            m.folder.segments().join("/")
        };
        by_folder.entry(name).or_default().push(m.message);
    }
    // Distinct messages sharing a Message-ID (same id, another date and body), and true
    // duplicates: each must arrive as often as the source holds it, whatever the kills.
    let inbox = by_folder.entry("INBOX".into()).or_default();
    for i in 0..TWINS {
        for (second, body) in [(0, "first"), (1, "second")] {
            inbox.push(cutover::connectors::mail::RawMessage::new(
                format!(
                    "Message-ID: <twin{i}@kill.test>\r\nDate: Mon, 1 Jan 2024 10:{:02}:{second:02} +0000\r\nSubject: twin {i}\r\n\r\n{body} of twin {i}\r\n",
                    i % 60
                )
                .into_bytes(),
            ));
        }
        if i % 4 == 0 {
            let dup =
                format!("Message-ID: <dup{i}@kill.test>\r\nSubject: dup {i}\r\n\r\nsame twice\r\n");
            for _ in 0..2 {
                inbox.push(cutover::connectors::mail::RawMessage::new(
                    dup.clone().into_bytes(),
                ));
            }
        }
    }
    seed(&d, &src, &by_folder.into_iter().collect()).await;
    let expected = imap_contents(&d, &src).await;

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("src.pw"), &src.password).unwrap();
    std::fs::write(dir.path().join("dst.pw"), &dst.password).unwrap();
    let server = format!(
        "host: 127.0.0.1, port: {}, tls: implicit, ca_file: {}",
        d.imaps_port,
        d.ca_file().display()
    );
    std::fs::write(
        dir.path().join("plan.yaml"),
        format!(
            "version: 1\nname: kill-imap\ndomain: example.test\ntarget: {{ kind: imap, {server} }}\nsources:\n  old: {{ kind: imap, {server} }}\nsettings: {{ output_dir: reports }}\nusers:\n  - email: kim@example.test\n    target_login: {{ login: {}, password: {{ file: dst.pw }} }}\n    migrate:\n      - {{ from: old, login: {}, password: {{ file: src.pw }} }}\n",
            dst.login, src.login
        ),
    )
    .unwrap();

    let started = Instant::now();
    let (mid_copy, resumes) = kill_and_resume(dir.path(), (MESSAGES + 2 * TWINS) as u64);
    // Mail flagged \Deleted at the source stays behind (the plan's default).
    let mut expected = expected;
    for copies in expected.values_mut() {
        copies.retain(|(_, flags, _)| !flags.contains(cutover::connectors::mail::Flag::Deleted));
    }
    expected.retain(|_, copies| !copies.is_empty());
    assert_same(&expected, &imap_contents(&d, &dst).await);
    println!(
        "imap kill test: {mid_copy} SIGKILLs mid-copy, {resumes} final run(s), {:.1}s: every message exactly once",
        started.elapsed().as_secs_f64()
    );
}

/// Kills `apply` in `dir` [`KILLS`] times at random instants after a run committed new work
/// (mid-download, mid-batch, between the target's OK and the state commit), then runs it
/// until it finishes; checks every step is done. Returns the kills that landed mid-copy and
/// the final runs it took.
fn kill_and_resume(dir: &Path, total: u64) -> (usize, usize) {
    let mut rng = 0x5EED_u64;
    let mut next = move || {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        rng >> 33
    };
    let mut mid_copy = 0;
    for _ in 0..KILLS {
        let before = copied_so_far(dir);
        let mut child = apply(dir).spawn().expect("cutover runs");
        let waiting = Instant::now();
        while copied_so_far(dir) == before
            && child.try_wait().unwrap().is_none()
            && waiting.elapsed() < Duration::from_secs(30)
        {
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_millis(next() % 40));
        if child.try_wait().unwrap().is_some() {
            break;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let copied = copied_so_far(dir);
        if copied > 0 && copied < total {
            mid_copy += 1;
        }
    }
    assert!(
        mid_copy >= KILLS / 2,
        "only {mid_copy} kills landed mid-copy"
    );
    let resumes = resume_until_done(dir, 4);
    let store = SqliteStore::open(dir.join(".cutover").join("kill-imap.db")).unwrap();
    for step in store.steps().unwrap() {
        assert_eq!(step.status, StepStatus::Done, "{}", step.id);
    }
    (mid_copy, resumes)
}

/// POP3 → IMAP: downloads come in pipelined windows of `TOP`s, so a kill lands with answers
/// of a window read but not yet stored, or stored and not yet committed. Per-UIDL checkpoints
/// and the target's identity counts keep it exactly once; the source's unread mail stays
/// unread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_pop3_window_then_resume_delivers_exactly_once() {
    let d = Dovecot::shared();
    let (src, dst) = (d.add_user("pop-src"), d.add_user("pop-dst"));
    // CRLF line ends, as POP3 carries mail (a message stored with bare LFs comes out of any
    // POP3 server with CRLFs).
    let mut sent: Vec<Vec<u8>> = Vec::new();
    for i in 0..MESSAGES {
        let m = support::remote::message(5000 + i, i % 10 != 0, 300 + (i * 37) % 6000);
        d.deliver(&src, &format!("17000{i:05}.M{i}P1.kill"), m.bytes());
        sent.push(m.bytes().to_vec());
    }
    // Twins sharing a Message-ID and a true duplicate, as in the IMAP test.
    for i in 0..TWINS {
        let twin = format!(
            "Message-ID: <ptwin{i}@kill.test>\r\nDate: Mon, 1 Jan 2024 11:{:02}:{:02} +0000\r\nSubject: twin {i}\r\n\r\ntwin {i}\r\n",
            i % 60,
            i / 60
        );
        for copy in 0..2 {
            d.deliver(
                &src,
                &format!("17100{i:05}.M{copy}P2.kill"),
                twin.as_bytes(),
            );
            sent.push(twin.clone().into_bytes());
        }
    }
    let unread_before = unread(&d, &src).await;

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("src.pw"), &src.password).unwrap();
    std::fs::write(dir.path().join("dst.pw"), &dst.password).unwrap();
    let server = |port: u16| {
        format!(
            "host: 127.0.0.1, port: {port}, tls: implicit, ca_file: {}",
            d.ca_file().display()
        )
    };
    std::fs::write(
        dir.path().join("plan.yaml"),
        format!(
            "version: 1\nname: kill-imap\ndomain: example.test\ntarget: {{ kind: imap, {} }}\nsources:\n  old: {{ kind: pop3, {} }}\nsettings: {{ output_dir: reports }}\nusers:\n  - email: kim@example.test\n    target_login: {{ login: {}, password: {{ file: dst.pw }} }}\n    migrate:\n      - {{ from: old, login: {}, password: {{ file: src.pw }} }}\n",
            server(d.imaps_port),
            server(d.pop3s_port),
            dst.login,
            src.login
        ),
    )
    .unwrap();
    let started = Instant::now();
    let (mid_copy, resumes) = kill_and_resume(dir.path(), sent.len() as u64);
    let mut have: Vec<Vec<u8>> = imap_contents(&d, &dst)
        .await
        .into_values()
        .flatten()
        .map(|(bytes, _, _)| bytes)
        .collect();
    have.sort();
    sent.sort();
    assert_eq!(have.len(), sent.len(), "every message once, twins both");
    assert!(have == sent, "byte-identical");
    assert_eq!(
        unread(&d, &src).await,
        unread_before,
        "the source's read state unchanged"
    );
    println!(
        "pop3 kill test: {mid_copy} SIGKILLs mid-copy, {resumes} final run(s), {:.1}s: every message exactly once",
        started.elapsed().as_secs_f64()
    );
}

/// A kill while a message too large for a lane's share (budget 16 MB: 2 MB) is being
/// streamed from the source's FETCH literal into the target's APPEND literal: the target
/// (behind a proxy that reports each APPEND as it starts) gets a literal cut short, which it
/// discards; the resumed run stores that message once. Each kill waits for an APPEND to
/// start and lands at once, mid-literal of a 6 MB message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_streamed_message_then_resume_delivers_exactly_once() {
    const BIG: usize = 5;
    let d = Dovecot::shared();
    let (src, dst) = (d.add_user("stream-src"), d.add_user("stream-dst"));
    let big: Vec<_> = (0..BIG)
        .map(|i| support::remote::big_message(100 + i, 6 << 20))
        .collect();
    seed(&d, &src, &vec![("INBOX".to_string(), big)]).await;
    let expected = imap_contents(&d, &src).await;
    let proxy = FaultProxy::start(d.imap_port, Faults::default());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("src.pw"), &src.password).unwrap();
    std::fs::write(dir.path().join("dst.pw"), &dst.password).unwrap();
    std::fs::write(
        dir.path().join("plan.yaml"),
        format!(
            "version: 1\nname: kill-imap\ndomain: example.test\ntarget: {{ kind: imap, host: 127.0.0.1, port: {}, tls: none, allow_plaintext: true }}\nsources:\n  old: {{ kind: imap, host: 127.0.0.1, port: {}, tls: implicit, ca_file: {} }}\nsettings: {{ output_dir: reports, memory_budget_mb: 16 }}\nusers:\n  - email: kim@example.test\n    target_login: {{ login: {}, password: {{ file: dst.pw }} }}\n    migrate:\n      - {{ from: old, login: {}, password: {{ file: src.pw }} }}\n",
            proxy.port,
            d.imaps_port,
            d.ca_file().display(),
            dst.login,
            src.login
        ),
    )
    .unwrap();
    let mid_literal = support::remote::kill_at_appends(&proxy, &d, &dst, 3, || {
        apply(dir.path()).spawn().expect("cutover runs")
    })
    .await;
    assert!(mid_literal >= 1, "no kill landed mid-literal");
    let resumes = resume_until_done(dir.path(), 4);
    assert_same(&expected, &imap_contents(&d, &dst).await);
    println!(
        "streamed kill test: {mid_literal} SIGKILLs mid-literal, {resumes} final run(s): every message exactly once"
    );
}

/// How many messages of `u` are unread.
async fn unread(d: &Dovecot, u: &support::dovecot::User) -> usize {
    imap_contents(d, u)
        .await
        .into_values()
        .flatten()
        .filter(|(_, flags, _)| !flags.contains(cutover::connectors::mail::Flag::Seen))
        .count()
}
