//! Server copies end to end against a real Dovecot: IMAP → maildir, IMAP → IMAP, POP3 →
//! maildir through the engine (runners_for + apply + SQLite state), with reruns, a
//! cancellation mid-copy, lost checkpoints, an oversized message and secret resolution.
mod common;
mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::CancelAfter;
use cutover::connectors::mail::{Maildir, RawMessage};
use cutover::connectors::net::Endpoint;
use cutover::connectors::pop3::Pop3Client;
use cutover::engine::{self, CancellationToken, PlannedChange, StepResult, VecSink, WalkOutcome};
use cutover::graph::Selection;
use cutover::plan::model::Tls;
use cutover::state::{SqliteStore, StateStore};
use support::dovecot::{Dovecot, User};
use support::mailbox::{assert_same, imap_contents};
use support::remote::*;

fn imap_to_maildir_plan(d: &Dovecot, base: &Path, u: &User, max_mb: Option<u32>) -> String {
    let pw = pw_file(base, "src.pw", &u.password);
    let settings = max_mb
        .map(|m| format!("settings: {{ max_message_size_mb: {m} }}\n"))
        .unwrap_or_default();
    format!(
        r#"
version: 1
name: remote-test
domain: example.test
target: {{ kind: maildir, path: out }}
sources:
  old: {{ kind: imap, {} }}
users:
  - email: alice@example.test
    migrate:
      - from: old
        login: {}
        password: {pw}
{settings}"#,
        server(d, d.imaps_port)
            .trim_start_matches("{ ")
            .trim_end_matches(" }"),
        u.login
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_to_maildir_is_exact_and_rerun_copies_nothing() {
    let d = Dovecot::shared();
    let src = d.add_user("src");
    let seeded = varied_seed(1);
    seed(&d, &src, &seeded).await;
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().to_path_buf();
    let yaml = imap_to_maildir_plan(&d, &base, &src, None);
    let fx = fixture_in(dir, base, &yaml);
    let store = open_store(&fx, "state.db");

    let planned = observe(&fx, store.as_ref());
    match &planned["copy.alice.old"] {
        PlannedChange::Create { items, bytes, .. } => {
            assert_eq!(*items, 6);
            assert!(*bytes > 6_000);
        }
        other => panic!("{other:?}"),
    }

    let report = apply(&fx, Arc::clone(&store), CancellationToken::new()).await;
    assert_eq!(report.outcome, WalkOutcome::Succeeded, "{report:#?}");
    let counts = done(&report, "copy.alice.old");
    assert_eq!((counts.items, counts.present), (6, 0));
    let target = fx.base.join("out/alice@example.test");
    assert_same(&seed_contents(&seeded), &maildir_contents(&target));
    let checkpoints = store.checkpoints("copy.alice.old").unwrap();
    assert!(checkpoints.contains_key("imap:INBOX"), "{checkpoints:?}");

    // Second apply: the step is done with the same config.
    let again = apply(&fx, Arc::clone(&store), CancellationToken::new()).await;
    assert_eq!(again.steps["copy.alice.old"], StepResult::Unchanged);
    assert_eq!(done(&report, "verify.alice").items, 6);
    // Same plan against a fresh state (all checkpoints lost): a full compare, and the
    // target's dedupe copies nothing.
    let fresh = apply(&fx, open_store(&fx, "fresh.db"), CancellationToken::new()).await;
    let counts = done(&fresh, "copy.alice.old");
    assert_eq!((counts.items, counts.present), (0, 6));
    assert_same(&seed_contents(&seeded), &maildir_contents(&target));

    // Verify notices a message gone from the target.
    let md = Maildir::open(&target).unwrap();
    let inbox = md.folder(&cutover::connectors::mail::FolderPath::inbox());
    let victim = md.entries(&inbox).unwrap().remove(0);
    std::fs::remove_file(&victim.path).unwrap();
    match &observe(&fx, open_store(&fx, "preview.db").as_ref())["verify.alice"] {
        PlannedChange::Create { items, present, .. } => assert_eq!((*items, *present), (6, 5)),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_to_imap_is_exact() {
    let d = Dovecot::shared();
    let (src, dst) = (d.add_user("src"), d.add_user("dst"));
    let seeded = varied_seed(2);
    seed(&d, &src, &seeded).await;
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().to_path_buf();
    let spw = pw_file(&base, "src.pw", &src.password);
    let tpw = pw_file(&base, "dst.pw", &dst.password);
    let srv = server(&d, d.imaps_port);
    let yaml = format!(
        r#"
version: 1
name: remote-imap
domain: example.test
target: {{ kind: imap, {t} }}
sources:
  old: {{ kind: imap, {t} }}
users:
  - email: bob@example.test
    target_login: {{ login: {dl}, password: {tpw} }}
    migrate:
      - from: old
        login: {sl}
        password: {spw}
"#,
        t = srv.trim_start_matches("{ ").trim_end_matches(" }"),
        dl = dst.login,
        sl = src.login,
    );
    let fx = fixture_in(dir, base, &yaml);
    let store = open_store(&fx, "state.db");
    let report = apply(&fx, Arc::clone(&store), CancellationToken::new()).await;
    assert_eq!(report.outcome, WalkOutcome::Succeeded, "{report:#?}");
    assert!(matches!(report.steps["user.bob"], StepResult::Done { .. }));
    assert_eq!(done(&report, "copy.bob.old").items, 6);
    assert_eq!(done(&report, "verify.bob").items, 6);
    assert_same(&seed_contents(&seeded), &imap_contents(&d, &dst).await);

    // Lost checkpoints: dedupe against the IMAP target (Message-IDs, and content hashes of
    // the two messages without one) copies nothing again.
    let fresh = apply(&fx, open_store(&fx, "fresh.db"), CancellationToken::new()).await;
    let counts = done(&fresh, "copy.bob.old");
    assert_eq!((counts.items, counts.present), (0, 6));
    assert_same(&seed_contents(&seeded), &imap_contents(&d, &dst).await);
}

/// Two users copied at once within one server limited to two connections: each copy lane
/// needs a connection to each side, so slots are reserved per lane, both at once — per
/// connection, the two steps could each hold one slot and wait forever for the other's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_within_one_server_share_max_connections_without_deadlock() {
    let d = Dovecot::shared();
    let (src1, dst1, src2, dst2) = (
        d.add_user("src"),
        d.add_user("dst"),
        d.add_user("src"),
        d.add_user("dst"),
    );
    let (seed1, seed2) = (varied_seed(7), varied_seed(8));
    seed(&d, &src1, &seed1).await;
    seed(&d, &src2, &seed2).await;
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().to_path_buf();
    let pw = |name: &str, u: &User| pw_file(&base, name, &u.password);
    let (s1, t1, s2, t2) = (
        pw("s1", &src1),
        pw("t1", &dst1),
        pw("s2", &src2),
        pw("t2", &dst2),
    );
    let srv = server(&d, d.imaps_port);
    let t = srv.trim_start_matches("{ ").trim_end_matches(" }");
    let yaml = format!(
        r#"
version: 1
name: shared-limit
domain: example.test
settings: {{ parallelism: 4 }}
target: {{ kind: imap, {t}, max_connections: 2 }}
sources:
  old: {{ kind: imap, {t}, max_connections: 2 }}
users:
  - email: ann@example.test
    target_login: {{ login: {d1}, password: {t1} }}
    migrate:
      - {{ from: old, login: {l1}, password: {s1} }}
  - email: ben@example.test
    target_login: {{ login: {d2}, password: {t2} }}
    migrate:
      - {{ from: old, login: {l2}, password: {s2} }}
"#,
        d1 = dst1.login,
        l1 = src1.login,
        d2 = dst2.login,
        l2 = src2.login,
    );
    let fx = fixture_in(dir, base, &yaml);
    let report = tokio::time::timeout(
        Duration::from_secs(60),
        apply(&fx, open_store(&fx, "state.db"), CancellationToken::new()),
    )
    .await
    .expect("no deadlock over connection slots");
    assert_eq!(report.outcome, WalkOutcome::Succeeded, "{report:#?}");
    assert_same(&seed_contents(&seed1), &imap_contents(&d, &dst1).await);
    assert_same(&seed_contents(&seed2), &imap_contents(&d, &dst2).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pop3_to_maildir_is_exact_and_leaves_the_source() {
    let d = Dovecot::shared();
    let u = d.add_user("pop");
    let msgs: Vec<Vec<u8>> = vec![
        message(301, true, 500).into_bytes(),
        message(302, false, 300).into_bytes(),
        b"Subject: dots\r\n\r\n.leading dot\r\n..two\r\nend\r\n".to_vec(),
        b"Received: from mx by pop.example.test; Tue, 14 Nov 2023 23:13:20 +0100\r\nDate: Mon, 1 Jan 2001 00:00:00 +0000\r\nSubject: dated\r\n\r\nx\r\n".to_vec(),
        b"Date: 14 Nov 2023 22:13:20 GMT\r\nSubject: dated too\r\n\r\ny\r\n".to_vec(),
    ];
    for (i, m) in msgs.iter().enumerate() {
        d.deliver(&u, &format!("{i}.pop.test"), m);
    }
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().to_path_buf();
    let pw = pw_file(&base, "pop.pw", &u.password);
    let srv = server(&d, d.pop3s_port);
    let yaml = format!(
        r#"
version: 1
name: remote-pop
domain: example.test
target: {{ kind: maildir, path: out }}
sources:
  old: {{ kind: pop3, {} }}
users:
  - email: carol@example.test
    migrate:
      - from: old
        login: {}
        password: {pw}
        into: Old Mail
"#,
        srv.trim_start_matches("{ ").trim_end_matches(" }"),
        u.login
    );
    let fx = fixture_in(dir, base, &yaml);
    let store = open_store(&fx, "state.db");
    match &observe(&fx, store.as_ref())["copy.carol.old"] {
        PlannedChange::Create { items, .. } => assert_eq!(*items, 5),
        other => panic!("{other:?}"),
    }
    let report = apply(&fx, Arc::clone(&store), CancellationToken::new()).await;
    assert_eq!(done(&report, "copy.carol.old").items, 5, "{report:#?}");
    assert_eq!(done(&report, "verify.carol").items, 5);
    let got = maildir_contents(&fx.base.join("out/carol@example.test"));
    let mut want: Vec<Vec<u8>> = msgs.clone();
    want.sort();
    let mut have: Vec<Vec<u8>> = got
        .iter()
        .map(|((f, _), c)| {
            assert_eq!(f, "Old Mail");
            assert_eq!(c.len(), 1);
            // POP3 has no INTERNALDATE: the received time comes from the headers.
            if c[0].0.windows(7).any(|w| w == b"Subject")
                && c[0].0.windows(5).any(|w| w == b"dated")
            {
                assert_eq!(
                    c[0].2,
                    at(1_700_000_000),
                    "received date of {:?}",
                    String::from_utf8_lossy(&c[0].0)
                );
            }
            c[0].0.clone()
        })
        .collect();
    have.sort();
    assert!(want == have, "bytes differ");
    let cps = store.checkpoints("copy.carol.old").unwrap();
    assert_eq!(cps.keys().filter(|k| k.starts_with("pop3:")).count(), 5);

    // Nothing was deleted at the source.
    let ep = Endpoint::new("127.0.0.1", d.pop3s_port, Tls::Implicit).with_ca_file(d.ca_file());
    let mut c = Pop3Client::connect(&ep, &creds(&u)).await.unwrap();
    assert_eq!(c.stat().await.unwrap().0, 5);
    c.quit().await.unwrap();

    // Lost checkpoints: dedupe at the maildir.
    let fresh = apply(&fx, open_store(&fx, "fresh.db"), CancellationToken::new()).await;
    assert_eq!(done(&fresh, "copy.carol.old").items, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_mid_copy_then_resumed_copies_exactly_once() {
    let d = Dovecot::shared();
    let src = d.add_user("src");
    let seeded: Seed = vec![
        (
            "INBOX".into(),
            (0..150)
                .map(|i| message(400 + i, i % 4 != 0, 300 + i))
                .collect(),
        ),
        (
            "Work/Projects".into(),
            (150..250)
                .map(|i| message(400 + i, i % 5 != 0, 300 + i))
                .collect(),
        ),
    ];
    seed(&d, &src, &seeded).await;
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().to_path_buf();
    let yaml = imap_to_maildir_plan(&d, &base, &src, None);
    let fx = fixture_in(dir, base, &yaml);
    let target = fx.base.join("out/alice@example.test");
    let state = fx.base.join("state.db");

    // Messages are committed in batches, folders copied by parallel lanes. Each run is
    // cancelled right after its first commit (the other lane may still commit the batch it
    // has in flight) and the next run resumes, until one run finds little enough left to end.
    let mut committed = 0;
    let mut interrupted = 0;
    loop {
        let cancel = CancellationToken::new();
        let store = Arc::new(CancelAfter::open(
            &state,
            "copy.alice.old",
            1,
            cancel.clone(),
        ));
        let report = apply(&fx, store.clone(), cancel).await;
        let rec = store.step("copy.alice.old").unwrap().unwrap();
        let now = rec.counts.items + rec.counts.present + rec.counts.left_behind;
        assert!(
            now > committed,
            "every run makes progress: {committed} -> {now}"
        );
        committed = now;
        if matches!(report.steps["copy.alice.old"], StepResult::Done { .. }) {
            break;
        }
        assert_eq!(report.outcome, WalkOutcome::Interrupted, "{report:#?}");
        assert_eq!(report.steps["copy.alice.old"], StepResult::Interrupted);
        assert!(now < 250, "an interrupted run left work: {now}");
        interrupted += 1;
    }
    assert!(interrupted >= 2, "interrupted {interrupted} times");
    let store: Arc<dyn StateStore> = Arc::new(SqliteStore::open(&state).unwrap());
    let report = apply(&fx, Arc::clone(&store), CancellationToken::new()).await;
    assert_eq!(report.outcome, WalkOutcome::Succeeded, "{report:#?}");
    let rec = store.step("copy.alice.old").unwrap().unwrap();
    assert_eq!(
        rec.counts.items, 250,
        "each message counted once across runs"
    );
    let want = seed_contents(&seeded);
    let have = maildir_contents(&target);
    assert_eq!(want.len(), have.len());
    for (k, copies) in &have {
        assert_eq!(copies.len(), 1, "{k:?} stored {} times", copies.len());
        assert!(copies[0].0 == want[k][0].0, "{k:?} bytes");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_killed_between_delivery_and_checkpoint_stores_each_message_once() {
    let d = Dovecot::shared();
    let src = d.add_user("src");
    let seeded: Seed = vec![(
        "INBOX".into(),
        (0..8).map(|i| message(500 + i, i % 2 == 0, 250)).collect(),
    )];
    seed(&d, &src, &seeded).await;
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().to_path_buf();
    let yaml = imap_to_maildir_plan(&d, &base, &src, None);
    let fx = fixture_in(dir, base, &yaml);
    let target = fx.base.join("out/alice@example.test");
    // The target already holds messages 2..5 (delivered by a run whose checkpoints never
    // reached the state): written there directly, the way the runner would.
    let mut t = cutover::connectors::mail::MaildirTarget::open(&target).unwrap();
    for m in &seeded[0].1[2..5] {
        t.store(&cutover::connectors::mail::FolderPath::inbox(), m)
            .unwrap();
    }
    drop(t);
    let store = open_store(&fx, "state.db");
    let report = apply(&fx, Arc::clone(&store), CancellationToken::new()).await;
    let counts = done(&report, "copy.alice.old");
    assert_eq!((counts.items, counts.present), (5, 3));
    let have = maildir_contents(&target);
    assert_eq!(have.len(), 8);
    assert!(have.values().all(|c| c.len() == 1));
}

/// A run killed while its APPEND was still being committed, then a resumed run killed in
/// turn before its unit ended: the target holds the late copies and the resumed run's, and
/// only the resumed run's are recorded (with their checkpoints). The next run takes those
/// back — exactly the surplus, never a copy it did not record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doubles_a_killed_resumed_run_recorded_are_taken_back_by_the_next() {
    let d = Dovecot::shared();
    let (src, dst) = (d.add_user("src"), d.add_user("dst"));
    let seeded: Seed = vec![(
        "INBOX".into(),
        (0..6).map(|i| message(650 + i, i != 3, 300)).collect(),
    )];
    seed(&d, &src, &seeded).await;
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().to_path_buf();
    let spw = pw_file(&base, "src.pw", &src.password);
    let tpw = pw_file(&base, "dst.pw", &dst.password);
    let t = server(&d, d.imaps_port);
    let t = t.trim_start_matches("{ ").trim_end_matches(" }");
    let yaml = format!(
        "version: 1\nname: takeback\ndomain: example.test\ntarget: {{ kind: imap, {t} }}\nsources:\n  old: {{ kind: imap, {t} }}\nusers:\n  - email: bob@example.test\n    target_login: {{ login: {}, password: {tpw} }}\n    migrate:\n      - {{ from: old, login: {}, password: {spw} }}\n",
        dst.login, src.login
    );
    let fx = fixture_in(dir, base, &yaml);
    let store = open_store(&fx, "state.db");
    let report = apply(&fx, Arc::clone(&store), CancellationToken::new()).await;
    assert_eq!(report.outcome, WalkOutcome::Succeeded, "{report:#?}");
    // Second copies of messages 0..3 reach the target: 0 and 1 as the resumed run's (their
    // UIDs recorded among the step's checkpoints), 2 as a late copy nobody recorded (which
    // must stay: it may be the one the source's copy is counted as); 3 has no Message-ID.
    let mut c = support::mailbox::login(&d, &dst).await;
    let mut records = Vec::new();
    for (i, m) in seeded[0].1[..4].iter().enumerate() {
        let uid = c.append("INBOX", m).await.unwrap().expect("UIDPLUS");
        if i < 2 || i == 3 {
            records.push((
                format!("stored:INBOX:{}:{}", uid.uid_validity, uid.uid),
                m.identity().to_bytes().to_vec(),
            ));
        }
    }
    c.logout().await.unwrap();
    let pairs: Vec<(&str, &[u8])> = records
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .collect();
    store
        .commit_progress("copy.bob.old", Default::default(), &pairs)
        .unwrap();
    // As if that run was killed: the step is running, the next apply resumes it.
    store.mark_running("copy.bob.old").unwrap();
    let report = apply(&fx, Arc::clone(&store), CancellationToken::new()).await;
    assert_eq!(report.outcome, WalkOutcome::Succeeded, "{report:#?}");
    let copies = |contents: &support::mailbox::Contents, m: &RawMessage| {
        contents
            .iter()
            .filter(|((_, identity), _)| *identity == m.identity())
            .map(|(_, c)| c.len())
            .sum::<usize>()
    };
    let have = imap_contents(&d, &dst).await;
    for (i, m) in seeded[0].1.iter().enumerate() {
        let want = if i == 2 { 2 } else { 1 };
        assert_eq!(copies(&have, m), want, "message {i}");
    }
    // The records are spent.
    let left: Vec<_> = store
        .checkpoints("copy.bob.old")
        .unwrap()
        .into_iter()
        .filter(|(k, v)| k.starts_with("stored:") && !v.is_empty())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_message_is_skipped_counted_and_recorded() {
    let d = Dovecot::shared();
    let src = d.add_user("src");
    let big = message(601, true, 1_200_000).with_internal_date(at(1_700_000_000));
    let seeded: Seed = vec![(
        "INBOX".into(),
        vec![
            message(600, true, 300),
            big.clone(),
            message(602, false, 300),
        ],
    )];
    seed(&d, &src, &seeded).await;
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().to_path_buf();
    let yaml = imap_to_maildir_plan(&d, &base, &src, Some(1));
    let fx = fixture_in(dir, base, &yaml);
    let store = open_store(&fx, "state.db");
    match &observe(&fx, store.as_ref())["copy.alice.old"] {
        PlannedChange::Create { items, .. } => assert_eq!(*items, 2),
        other => panic!("{other:?}"),
    }
    let report = apply(&fx, Arc::clone(&store), CancellationToken::new()).await;
    let counts = done(&report, "copy.alice.old");
    assert_eq!((counts.items, counts.left_behind), (2, 1));
    assert_eq!(
        done(&report, "verify.alice").items,
        2,
        "oversized mail is not expected"
    );
    let have = maildir_contents(&fx.base.join("out/alice@example.test"));
    assert_eq!(have.len(), 2);
    assert!(!have.keys().any(|(_, k)| *k == big.identity()));
    let cps = store.checkpoints("copy.alice.old").unwrap();
    let left = cutover::runners::skipped::from_checkpoints(&cps);
    assert_eq!(left.len(), 1, "{cps:?}");
    assert_eq!(left[0].folder, "INBOX");
    assert_eq!(left[0].subject.as_deref(), Some("message 601"));
    assert_eq!(left[0].date.as_deref(), Some("2023-11-14T22:13:20Z"));
    assert!(left[0].size > 1_048_576);

    // The client-facing report lists it with folder, date, size and subject (`cutover apply`
    // on a fresh state: everything else is deduped at the target, the big one left again).
    let plan_file = fx.base.join("remote.yaml");
    std::fs::write(&plan_file, &yaml).unwrap();
    // The CLI starts its own runtime: run it off this test's.
    let run = tokio::task::spawn_blocking(move || {
        common::run(&[
            "apply",
            "--yes",
            "--progress",
            "plain",
            plan_file.to_str().unwrap(),
        ])
    })
    .await
    .unwrap();
    assert_eq!(run.code, cutover::cli::ExitCode::Ok, "{}", run.stderr);
    let md = std::fs::read_to_string(fx.base.join("cutover-out/remote-test-report.md")).unwrap();
    let row = md
        .lines()
        .find(|l| l.contains("message 601"))
        .unwrap_or_else(|| panic!("not in the report:\n{md}"));
    assert_eq!(
        row,
        "| `copy.alice.old` | INBOX | 2023-11-14T22:13:20Z | 1.2 MB | message 601 | larger than the size limit |"
    );
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fx.base.join("cutover-out/remote-test-report.json")).unwrap(),
    )
    .unwrap();
    let steps = json["users"][0]["steps"].as_array().unwrap();
    let copy = steps
        .iter()
        .find(|s| s["step"] == "copy.alice.old")
        .unwrap();
    assert_eq!(copy["left_behind"][0]["subject"], "message 601");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_from_env_works_and_a_missing_one_blocks() {
    let d = Dovecot::shared();
    let src = d.add_user("src");
    seed(
        &d,
        &src,
        &vec![("INBOX".into(), vec![message(700, true, 200)])],
    )
    .await;
    let var = format!("CUTOVER_TEST_REMOTE_PW_{}", std::process::id());
    let srv = server(&d, d.imaps_port);
    let yaml = format!(
        r#"
version: 1
name: remote-env
domain: example.test
target: {{ kind: maildir, path: out }}
sources:
  old: {{ kind: imap, {} }}
users:
  - email: dave@example.test
    migrate:
      - from: old
        login: {}
        password: {{ env: {var} }}
"#,
        srv.trim_start_matches("{ ").trim_end_matches(" }"),
        src.login
    );
    let fx = fixture(&yaml);
    let store = open_store(&fx, "state.db");

    match &observe(&fx, store.as_ref())["copy.dave.old"] {
        PlannedChange::Blocked(why) => {
            assert!(why.contains(&var), "{why}");
            assert!(why.contains("source `old`"), "{why}");
        }
        other => panic!("{other:?}"),
    }
    let report = apply(&fx, Arc::clone(&store), CancellationToken::new()).await;
    match &report.steps["copy.dave.old"] {
        StepResult::Failed { error } => assert!(error.contains(&var), "{error}"),
        other => panic!("{other:?}"),
    }

    std::env::set_var(&var, &src.password);
    let report = apply(&fx, Arc::clone(&store), CancellationToken::new()).await;
    std::env::remove_var(&var);
    assert_eq!(done(&report, "copy.dave.old").items, 1, "{report:#?}");
    // The password is nowhere in the state.
    let db = std::fs::read(fx.base.join("state.db")).unwrap();
    assert!(!db
        .windows(src.password.len())
        .any(|w| w == src.password.as_bytes()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_copies_only_mail_newer_than_the_copy() {
    let d = Dovecot::shared();
    let src = d.add_user("src");
    let seeded: Seed = vec![
        (
            "INBOX".into(),
            (0..5).map(|i| message(800 + i, i != 2, 300)).collect(),
        ),
        ("Sent".into(), vec![message(810, true, 300)]),
    ];
    seed(&d, &src, &seeded).await;
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().to_path_buf();
    let yaml = format!(
        "{}dns: {{ provider: manual }}\n",
        imap_to_maildir_plan(&d, &base, &src, None)
    );
    let fx = fixture_in(dir, base, &yaml);
    let store = open_store(&fx, "state.db");
    let runners = cutover::runners::runners_for(&fx.plan, &fx.graph, &fx.base);
    let run = |ids: &[&str]| {
        let sel =
            Selection::new(&ids.iter().map(|s| s.to_string()).collect::<Vec<_>>(), &[]).unwrap();
        fx.graph.select(&sel)
    };

    let report = engine::apply(
        &fx.plan,
        &fx.graph,
        &run(&["copy.*"]),
        Arc::clone(&store),
        &runners,
        &fast(),
        &mut VecSink::default(),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(done(&report, "copy.alice.old").items, 6);

    // Mail that still lands at the old host after the copy, then the DNS cutover (no DNS
    // runner in this build: recorded as done, as `cutover approve` would).
    seed(
        &d,
        &src,
        &vec![
            (
                "INBOX".into(),
                vec![message(820, true, 300), message(821, false, 200)],
            ),
            ("Sent".into(), vec![message(822, true, 300)]),
        ],
    )
    .await;
    store
        .set_config_hash("dns.cutover", &runners["dns.cutover"].config_hash())
        .unwrap();
    store.mark_done("dns.cutover").unwrap();

    let report = engine::apply(
        &fx.plan,
        &fx.graph,
        &run(&["delta.*"]),
        Arc::clone(&store),
        &runners,
        &fast(),
        &mut VecSink::default(),
        CancellationToken::new(),
    )
    .await;
    let counts = done(&report, "delta.alice.old");
    // Only the three new messages were looked at: the copy's checkpoints seeded the delta.
    assert_eq!((counts.items, counts.present), (3, 0), "{report:#?}");
    let have = maildir_contents(&fx.base.join("out/alice@example.test"));
    assert_eq!(have.len(), 9);
    assert!(have.values().all(|c| c.len() == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pop3_delete_after_copy_removes_only_copied_mail() {
    let d = Dovecot::shared();
    let u = d.add_user("pop-del");
    d.deliver(&u, "1.pop.test", message(901, true, 300).bytes());
    d.deliver(&u, "2.pop.test", message(902, false, 1_200_000).bytes());
    d.deliver(&u, "3.pop.test", message(903, false, 300).bytes());
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().to_path_buf();
    let pw = pw_file(&base, "pop.pw", &u.password);
    let srv = server(&d, d.pop3s_port);
    let yaml = format!(
        r#"
version: 1
name: remote-pop-del
domain: example.test
target: {{ kind: maildir, path: out }}
sources:
  old: {{ kind: pop3, delete_after_copy: true, {} }}
users:
  - email: erin@example.test
    migrate:
      - from: old
        login: {}
        password: {pw}
settings: {{ max_message_size_mb: 1 }}
"#,
        srv.trim_start_matches("{ ").trim_end_matches(" }"),
        u.login
    );
    let fx = fixture_in(dir, base, &yaml);
    let store = open_store(&fx, "state.db");
    let report = apply(&fx, Arc::clone(&store), CancellationToken::new()).await;
    let counts = done(&report, "copy.erin.old");
    assert_eq!((counts.items, counts.left_behind), (2, 1), "{report:#?}");
    assert_eq!(
        maildir_contents(&fx.base.join("out/erin@example.test")).len(),
        2
    );
    // The oversized message was not copied, so it stays at the source.
    let ep = Endpoint::new("127.0.0.1", d.pop3s_port, Tls::Implicit).with_ca_file(d.ca_file());
    let mut c = Pop3Client::connect(&ep, &creds(&u)).await.unwrap();
    let left = c.messages().await.unwrap();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].size > 1_048_576);
    c.quit().await.unwrap();
}

/// Source folders that land in one target folder are copied by one lane, one after the
/// other, so a message in both is stored once — as when folders were copied in sequence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folders_merged_into_one_target_folder_store_a_shared_message_once() {
    let d = Dovecot::shared();
    let src = d.add_user("src");
    let shared = message(700, true, 400);
    let sent: Vec<RawMessage> = (0..70)
        .map(|i| message(710 + i, true, 300))
        .chain([shared.clone()])
        .collect();
    let old_sent: Vec<RawMessage> = [shared.clone()]
        .into_iter()
        .chain((0..70).map(|i| message(800 + i, true, 300)))
        .collect();
    let seeded: Seed = vec![
        ("Sent".into(), sent),
        ("Old Sent".into(), old_sent),
        (
            "INBOX".into(),
            (0..30).map(|i| message(900 + i, true, 300)).collect(),
        ),
    ];
    seed(&d, &src, &seeded).await;
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().to_path_buf();
    let yaml = imap_to_maildir_plan(&d, &base, &src, None).replace(
        "        password: { file: src.pw }\n",
        "        password: { file: src.pw }\n        folders: { map: { \"Old Sent\": \"Sent\" } }\n",
    );
    assert!(yaml.contains("Old Sent"), "{yaml}");
    let fx = fixture_in(dir, base, &yaml);
    let report = apply(&fx, open_store(&fx, "state.db"), CancellationToken::new()).await;
    assert_eq!(report.outcome, WalkOutcome::Succeeded, "{report:#?}");
    let counts = done(&report, "copy.alice.old");
    assert_eq!(
        (counts.items, counts.present),
        (171, 1),
        "the shared one once"
    );
    let have = maildir_contents(&fx.base.join("out/alice@example.test"));
    let sent_copies = &have[&("Sent".to_string(), shared.identity())];
    assert_eq!(sent_copies.len(), 1);
    assert_eq!(have.keys().filter(|(f, _)| f == "Sent").count(), 141);
}
