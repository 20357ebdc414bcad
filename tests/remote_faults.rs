//! Server copies through the fault-injecting proxy, end to end (`apply` with SQLite state)
//! against a real Dovecot: an IMAP target whose connection is cut mid-APPEND and that answers
//! with throttling replies, on each way the client stores a batch (MULTIAPPEND, pipelined
//! APPENDs, synchronizing literals); an IMAP source cut mid-FETCH; a POP3 source cut mid-RETR;
//! a cancel while waiting out a throttling reply. Every run must end with each source message
//! at the target exactly once, byte-identical, with its flags and internal date.
mod support;

use std::sync::Arc;
use std::time::Duration;

use cutover::connectors::mail::identity::Identity;
use cutover::connectors::mail::{Flag, Flags, RawMessage};
use cutover::engine::{CancellationToken, WalkOutcome};
use support::dovecot::{Dovecot, User};
use support::fault_proxy::{microsoft_throttle, FaultProxy, Faults, THROTTLED};
use support::mailbox::{assert_same, imap_contents, Contents};
use support::remote::*;

/// A plan server entry reaching `port` through a proxy (which speaks plaintext only).
fn via(proxy: &FaultProxy) -> String {
    format!(
        "host: 127.0.0.1, port: {}, tls: none, allow_plaintext: true",
        proxy.port
    )
}

/// A plan server entry reaching Dovecot directly over implicit TLS.
fn direct(d: &Dovecot, port: u16) -> String {
    server(d, port)
        .trim_start_matches("{ ")
        .trim_end_matches(" }")
        .to_string()
}

/// An IMAP → IMAP plan (`kind` of the source may be `pop3`), `retries` attempts per step.
fn plan(
    base: &std::path::Path,
    kind: &str,
    source: &str,
    src: &User,
    target: &str,
    dst: &User,
    retries: u32,
) -> String {
    let spw = pw_file(base, "src.pw", &src.password);
    let tpw = pw_file(base, "dst.pw", &dst.password);
    format!(
        r#"
version: 1
name: remote-faults
domain: example.test
target: {{ kind: imap, {target} }}
sources:
  old: {{ kind: {kind}, {source} }}
users:
  - email: bob@example.test
    target_login: {{ login: {dl}, password: {tpw} }}
    migrate:
      - from: old
        login: {sl}
        password: {spw}
settings: {{ retries: {retries} }}
"#,
        dl = dst.login,
        sl = src.login,
    )
}

/// A fresh plan directory holding [`plan`]'s plan.
fn fixture_for(kind: &str, source: &str, src: &User, target: &str, dst: &User, retries: u32) -> Fx {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().to_path_buf();
    let yaml = plan(&base, kind, source, src, target, dst, retries);
    fixture_in(dir, base, &yaml)
}

/// The varied mailbox plus a folder large enough for two batches (64 messages each).
fn corpus(tag: usize) -> Seed {
    let mut seed = varied_seed(tag);
    let bulk = (0..80)
        .map(|i| {
            let flags = match i % 4 {
                0 => Flags::new().with(Flag::Seen),
                1 => Flags::new().with(Flag::Answered).with_keyword("$Label2"),
                _ => Flags::new(),
            };
            message(tag * 1000 + i, i % 7 != 0, 300 + i * 13)
                .with_flags(flags)
                .with_internal_date(at(1_500_000_000 + i as u64 * 600))
        })
        .collect();
    seed.push(("Bulk".into(), bulk));
    seed
}

fn total(seed: &Seed) -> u64 {
    seed.iter().map(|(_, m)| m.len() as u64).sum()
}

/// Copies [`corpus`] into a target behind a proxy with `faults`; asserts success and exact
/// contents, and returns the proxy for the test's own checks.
async fn copy_into_faulty_target(tag: usize, faults: Faults, retries: u32) -> FaultProxy {
    let d = Dovecot::shared();
    let (src, dst) = (d.add_user("src"), d.add_user("dst"));
    let seeded = corpus(tag);
    seed(&d, &src, &seeded).await;
    let proxy = FaultProxy::start(d.imap_port, faults);
    // These faults throttle every Nth APPEND whatever the rate: a known budget keeps the send
    // rate from chasing them (tests/exchange_target.rs covers finding a budget).
    let target = format!("{}, max_messages_per_second: 1000", via(&proxy));
    let fx = fixture_for(
        "imap",
        &direct(&d, d.imaps_port),
        &src,
        &target,
        &dst,
        retries,
    );
    let store = open_store(&fx, "state.db");
    let report = apply(&fx, Arc::clone(&store), CancellationToken::new()).await;
    assert_eq!(
        report.outcome,
        WalkOutcome::Succeeded,
        "{:?}\n{report:#?}",
        proxy.counts()
    );
    assert_eq!(done(&report, "verify.bob").items, total(&seeded));
    assert_same(&seed_contents(&seeded), &imap_contents(&d, &dst).await);
    let rec = store.step("copy.bob.old").unwrap().unwrap();
    assert_eq!(
        rec.counts.items + rec.counts.present + rec.counts.left_behind,
        total(&seeded),
        "each message accounted for once"
    );
    proxy
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_cut_mid_multiappend_and_throttled_gets_everything_once() {
    // Dovecot offers MULTIAPPEND: one APPEND command per batch, so small periods.
    let proxy = copy_into_faulty_target(
        11,
        Faults {
            cut_every: Some(3),
            throttle_every: Some(4),
            throttle_replies: vec![THROTTLED.into(), microsoft_throttle(20)],
            ..Faults::default()
        },
        10,
    )
    .await;
    let c = proxy.counts();
    assert!(c.cuts >= 2 && c.throttles >= 2, "{c:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_cut_mid_pipelined_appends_and_throttled_gets_everything_once() {
    // A throttled APPEND and a cut later in the same pipelined round: the cut must still end
    // the attempt, and the throttled message must not be checkpointed as done.
    let proxy = copy_into_faulty_target(
        12,
        Faults {
            cut_every: Some(30),
            throttle_every: Some(8),
            throttle_replies: vec![microsoft_throttle(5)],
            drop_capabilities: vec!["MULTIAPPEND".into()],
            ..Faults::default()
        },
        12,
    )
    .await;
    let c = proxy.counts();
    assert!(c.cuts >= 2 && c.throttles >= 5, "{c:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_cut_mid_synchronizing_literal_and_throttled_gets_everything_once() {
    let proxy = copy_into_faulty_target(
        13,
        Faults {
            cut_every: Some(30),
            throttle_every: Some(8),
            throttle_replies: vec![microsoft_throttle(5)],
            drop_capabilities: vec!["MULTIAPPEND".into(), "LITERAL+".into(), "LITERAL-".into()],
            ..Faults::default()
        },
        12,
    )
    .await;
    let c = proxy.counts();
    assert!(c.cuts >= 2 && c.throttles >= 5, "{c:?}");
}

// One attempt per step in these two: every throttling reply must be waited out inside it.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_multiappends_use_up_no_retries() {
    // A reply without a suggested wait costs a second (adaptive backoff): only a few here.
    let proxy = copy_into_faulty_target(
        14,
        Faults {
            throttle_every: Some(2),
            throttle_replies: vec![microsoft_throttle(10), THROTTLED.into()],
            ..Faults::default()
        },
        1,
    )
    .await;
    assert!(proxy.throttles() >= 2, "{:?}", proxy.counts());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_pipelined_appends_use_up_no_retries() {
    let proxy = copy_into_faulty_target(
        15,
        Faults {
            throttle_every: Some(8),
            throttle_replies: vec![microsoft_throttle(10)],
            drop_capabilities: vec!["MULTIAPPEND".into()],
            ..Faults::default()
        },
        1,
    )
    .await;
    assert!(proxy.throttles() >= 5, "{:?}", proxy.counts());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_cut_mid_fetch_gets_everything_once() {
    let d = Dovecot::shared();
    let (src, dst) = (d.add_user("src"), d.add_user("dst"));
    let seeded = corpus(16);
    seed(&d, &src, &seeded).await;
    let proxy = FaultProxy::start(
        d.imap_port,
        Faults {
            cut_download_every: Some(2),
            // Inside the first message or two of a body FETCH.
            cut_download_after: 400,
            cut_download_limit: Some(3),
            ..Faults::default()
        },
    );
    let fx = fixture_for(
        "imap",
        &via(&proxy),
        &src,
        &direct(&d, d.imaps_port),
        &dst,
        10,
    );
    let report = apply(&fx, open_store(&fx, "state.db"), CancellationToken::new()).await;
    assert_eq!(
        report.outcome,
        WalkOutcome::Succeeded,
        "{:?}\n{report:#?}",
        proxy.counts()
    );
    assert!(proxy.counts().download_cuts >= 3, "{:?}", proxy.counts());
    assert_same(&seed_contents(&seeded), &imap_contents(&d, &dst).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pop3_source_cut_mid_retr_gets_everything_once() {
    let d = Dovecot::shared();
    let (src, dst) = (d.add_user("pop"), d.add_user("dst"));
    // POP3 has no INTERNALDATE: the copy dates mail by its Date: header.
    let date = "Tue, 14 Nov 2023 22:13:20 +0000";
    let mails: Vec<RawMessage> = (0..6)
        .map(|i| {
            let id = if i % 3 == 0 {
                String::new()
            } else {
                format!(
                    "Message-ID: <pop{i}.{}@example.test>\r\n",
                    std::process::id()
                )
            };
            let body = format!("line {i} of a POP3 message\r\n").repeat(40);
            RawMessage::new(format!("Date: {date}\r\nSubject: pop {i}\r\n{id}\r\n{body}").into())
        })
        .collect();
    for (i, m) in mails.iter().enumerate() {
        d.deliver(&src, &format!("{i}.pop.test"), m.bytes());
    }
    let proxy = FaultProxy::start(
        d.pop3_port,
        Faults {
            cut_download_every: Some(2),
            cut_download_after: 300,
            cut_download_limit: Some(3),
            ..Faults::default()
        },
    );
    let fx = fixture_for(
        "pop3",
        &via(&proxy),
        &src,
        &direct(&d, d.imaps_port),
        &dst,
        10,
    );
    let report = apply(&fx, open_store(&fx, "state.db"), CancellationToken::new()).await;
    assert_eq!(
        report.outcome,
        WalkOutcome::Succeeded,
        "{:?}\n{report:#?}",
        proxy.counts()
    );
    assert!(proxy.counts().download_cuts >= 3, "{:?}", proxy.counts());
    let mut want = Contents::new();
    for m in &mails {
        let key: Identity = m.identity();
        want.entry(("INBOX".into(), key)).or_default().push((
            m.bytes().to_vec(),
            Flags::new(),
            at(1_700_000_000),
        ));
    }
    assert_same(&want, &imap_contents(&d, &dst).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_while_waiting_out_throttling_leaves_the_batch_for_the_resume() {
    let d = Dovecot::shared();
    let (src, dst) = (d.add_user("src"), d.add_user("dst"));
    let seeded: Seed = vec![(
        "INBOX".into(),
        (0..5)
            .map(|i| {
                message(17_000 + i, i != 2, 400).with_internal_date(at(1_400_000_000 + i as u64))
            })
            .collect(),
    )];
    seed(&d, &src, &seeded).await;
    // Every APPEND throttled with a wait far longer than the test: only the cancel ends it.
    let proxy = FaultProxy::start(
        d.imap_port,
        Faults {
            throttle_every: Some(1),
            throttle_replies: vec![microsoft_throttle(600_000)],
            ..Faults::default()
        },
    );
    let fx = fixture_for(
        "imap",
        &direct(&d, d.imaps_port),
        &src,
        &via(&proxy),
        &dst,
        1,
    );
    let store = open_store(&fx, "state.db");
    let cancel = CancellationToken::new();
    let canceller = {
        let (watch, cancel) = (proxy.watch(), cancel.clone());
        std::thread::spawn(move || {
            let throttled = watch.wait_until(Duration::from_secs(60), |c| c.throttles >= 1);
            cancel.cancel();
            throttled
        })
    };
    let first = apply(&fx, Arc::clone(&store), cancel).await;
    assert!(canceller.join().unwrap(), "the target was never throttled");
    assert_eq!(first.outcome, WalkOutcome::Interrupted, "{first:#?}");

    proxy.set_faults(Faults::default());
    let second = apply(&fx, Arc::clone(&store), CancellationToken::new()).await;
    assert_eq!(second.outcome, WalkOutcome::Succeeded, "{second:#?}");
    assert_eq!(done(&second, "copy.bob.old").items, 5);
    assert_same(&seed_contents(&seeded), &imap_contents(&d, &dst).await);
}

/// A target that refuses one message as too big (`NO [TOOBIG]`, its own limit below the
/// plan's) leaves that message behind, recorded for the report, and copies the rest: one
/// refusal must not fail a mailbox's copy, nor verify.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_the_target_refuses_as_too_big_is_left_behind_and_reported() {
    let d = Dovecot::shared();
    let (src, dst) = (d.add_user("src"), d.add_user("dst"));
    let seeded = corpus(17);
    seed(&d, &src, &seeded).await;
    let big: Vec<&RawMessage> = seeded
        .iter()
        .flat_map(|(_, m)| m)
        .filter(|m| m.len() > 3_000)
        .collect();
    assert_eq!(big.len(), 1, "the corpus has one message over 3,000 bytes");
    let proxy = FaultProxy::start(
        d.imap_port,
        Faults {
            refuse_larger_than: Some(3_000),
            ..Faults::default()
        },
    );
    let fx = fixture_for(
        "imap",
        &direct(&d, d.imaps_port),
        &src,
        &via(&proxy),
        &dst,
        1,
    );
    let store = open_store(&fx, "state.db");
    let report = apply(&fx, Arc::clone(&store), CancellationToken::new()).await;
    assert_eq!(report.outcome, WalkOutcome::Succeeded, "{report:#?}");
    let counts = done(&report, "copy.bob.old");
    assert_eq!((counts.items, counts.left_behind), (total(&seeded) - 1, 1));
    let left =
        cutover::runners::skipped::from_checkpoints(&store.checkpoints("copy.bob.old").unwrap());
    assert_eq!(left.len(), 1);
    // The source's own name, as `plan` shows it (Dovecot separates levels with `.`).
    assert_eq!(left[0].folder, "Archive.2023");
    assert_eq!(left[0].size, big[0].len() as u64);
    assert!(
        left[0].reason.starts_with("refused by the target: ")
            && left[0].reason.contains("[TOOBIG]"),
        "{}",
        left[0].reason
    );
    let mut expected = seed_contents(&seeded);
    expected.retain(|(_, key), _| *key != big[0].identity());
    assert_same(&expected, &imap_contents(&d, &dst).await);
    assert!(proxy.counts().refusals >= 1);
}
