//! `since`/`before` date windows end to end on every source kind: IMAP and POP3 against the
//! test's own Dovecot, mbox and maildir files, each into a maildir target through the engine
//! (runners_for + observe/apply + SQLite state). The window is February 2024 throughout:
//! on or after 2024-02-01T00:00Z, strictly before 2024-03-01T00:00Z.
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cutover::connectors::imap::ImapClient;
use cutover::connectors::mail::{DateWindow, FolderPath, Maildir, MaildirTarget, RawMessage};
use cutover::connectors::net::{Credentials, Endpoint};
use cutover::connectors::pop3::Pop3Client;
use cutover::engine::{
    self, ApplyOptions, CancellationToken, PlannedChange, StepResult, VecSink, WalkOutcome,
    WalkReport,
};
use cutover::graph::{Selection, StepGraph};
use cutover::plan::model::Tls;
use cutover::plan::{self, Options, Plan};
use cutover::state::{Counts, SqliteStore, StateStore};
use support::dovecot::{Dovecot, User};

/// 2024-02-01T00:00:00Z and 2024-03-01T00:00:00Z.
const FEB: u64 = 1_706_745_600;
const MAR: u64 = 1_709_251_200;
const DAY: u64 = 86_400;

fn at(secs: u64) -> Option<SystemTime> {
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

/// A message whose Message-ID (and subject) is `name`, or without Message-ID.
fn message(name: &str, with_id: bool) -> RawMessage {
    let id = if with_id {
        format!(
            "Message-ID: <{name}.{}@window.test>\r\n",
            std::process::id()
        )
    } else {
        String::new()
    };
    RawMessage::new(
        format!("From: a@window.test\r\nSubject: {name}\r\n{id}\r\nbody of {name}\r\n")
            .into_bytes(),
    )
}

/// Subjects of every message in a maildir, by folder.
fn maildir_subjects(root: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let md = Maildir::open(root).expect("target maildir");
    for folder in md.folders().expect("folders") {
        for entry in md.entries(&folder).expect("entries") {
            let m = entry.read().expect("read");
            let subject = m.subject().unwrap_or_default();
            assert!(
                out.entry(folder.name.to_string())
                    .or_default()
                    .insert(subject.clone()),
                "{subject} stored twice"
            );
        }
    }
    out.retain(|_, s| !s.is_empty());
    out
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

struct Fx {
    _dir: Option<tempfile::TempDir>,
    base: PathBuf,
    plan: Plan,
    graph: StepGraph,
}

fn fixture(dir: tempfile::TempDir, yaml: &str) -> Fx {
    let base = dir.path().to_path_buf();
    Fx {
        _dir: Some(dir),
        ..fixture_at(base, yaml)
    }
}

/// Another plan over the same directory (state, target, password file).
fn fixture_at(base: PathBuf, yaml: &str) -> Fx {
    let loaded = plan::load_str(yaml.to_string(), "window.yaml", &base, Options::default());
    assert_eq!(
        loaded.report.errors(),
        0,
        "{:#?}",
        loaded.report.diagnostics
    );
    Fx {
        _dir: None,
        base,
        plan: loaded.plan.unwrap(),
        graph: loaded.graph.unwrap(),
    }
}

fn fast() -> ApplyOptions {
    ApplyOptions {
        backoff_base: Duration::from_millis(1),
        backoff_max: Duration::from_millis(5),
        ..ApplyOptions::default()
    }
}

async fn apply(fx: &Fx, store: Arc<dyn StateStore>) -> WalkReport {
    let runners = cutover::runners::runners_for(&fx.plan, &fx.graph, &fx.base);
    engine::apply(
        &fx.plan,
        &fx.graph,
        &fx.graph.select(&Selection::default()),
        store,
        &runners,
        &fast(),
        &mut VecSink::default(),
        CancellationToken::new(),
    )
    .await
}

fn observe(fx: &Fx, store: &dyn StateStore) -> BTreeMap<String, PlannedChange> {
    let runners = cutover::runners::runners_for(&fx.plan, &fx.graph, &fx.base);
    engine::observe(
        &fx.plan,
        &fx.graph,
        &fx.graph.select(&Selection::default()),
        &Default::default(),
        store,
        &runners,
    )
    .into_iter()
    .collect()
}

fn open_store(fx: &Fx, name: &str) -> Arc<dyn StateStore> {
    Arc::new(SqliteStore::open(fx.base.join(name)).unwrap())
}

fn done(report: &WalkReport, id: &str) -> Counts {
    match &report.steps[id] {
        StepResult::Done { counts } => *counts,
        other => panic!("{id}: {other:?}\n{report:#?}"),
    }
}

/// `items` of a step never run.
fn planned_items(planned: &BTreeMap<String, PlannedChange>, id: &str) -> u64 {
    match &planned[id] {
        PlannedChange::Create { items, .. } => *items,
        other => panic!("{id}: {other:?}"),
    }
}

fn server(d: &Dovecot, port: u16) -> String {
    format!(
        "host: 127.0.0.1, port: {port}, tls: implicit, ca_file: {}",
        d.ca_file().display()
    )
}

fn server_plan(kind: &str, server: &str, login: &str, extra: &str) -> String {
    format!(
        r#"
version: 1
name: window-{kind}
domain: example.test
target: {{ kind: maildir, path: out }}
sources:
  old: {{ kind: {kind}, {server} }}
users:
  - email: alice@example.test
    migrate:
      - from: old
        login: {login}
        password: {{ file: src.pw }}
{extra}"#
    )
}

async fn imap_login(d: &Dovecot, u: &User) -> ImapClient {
    let ep = Endpoint::new("127.0.0.1", d.imaps_port, Tls::Implicit).with_ca_file(d.ca_file());
    ImapClient::connect(&ep, &Credentials::password(&u.login, &u.password))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", d.logs()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_window_copies_exactly_the_mail_received_in_it() {
    let d = Dovecot::shared();
    let src = d.add_user("window-imap");
    let mut c = imap_login(&d, &src).await;
    let inbox = [
        ("jan-last-second", FEB - 1, true),
        ("feb-first-second", FEB, true),
        ("feb-middle-no-id", FEB + 14 * DAY, false),
        ("feb-last-second", MAR - 1, true),
        ("mar-first-second", MAR, true),
        ("year-2023", FEB - 300 * DAY, true),
        ("year-2025", MAR + 300 * DAY, true),
    ];
    for (name, when, id) in inbox {
        c.append("INBOX", &message(name, id).with_internal_date(at(when)))
            .await
            .unwrap();
    }
    c.create("Archive").await.unwrap();
    for (name, when) in [
        ("archive-feb", FEB + 9 * DAY),
        ("archive-2022", FEB - 700 * DAY),
    ] {
        c.append("Archive", &message(name, true).with_internal_date(at(when)))
            .await
            .unwrap();
    }
    // The server's own narrowing: mail far outside is not even a candidate.
    c.examine("INBOX").await.unwrap();
    let feb = DateWindow::parse(Some("2024-02-01"), Some("2024-03-01"))
        .unwrap()
        .unwrap();
    // (Which of UIDs 1-5 are in depends on the server's zone; the widened window has them
    // all in any zone.)
    let narrow = c.uid_search("1:*", &feb).await.unwrap();
    assert!(
        narrow.contains(&3) && narrow.iter().all(|u| *u < 6),
        "{narrow:?}"
    );
    assert_eq!(
        c.uid_search("1:*", &feb.widened()).await.unwrap(),
        vec![1, 2, 3, 4, 5]
    );
    assert_eq!(c.uid_search("6:7", &feb).await.unwrap(), Vec::<u32>::new());
    c.logout().await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("src.pw"), &src.password).unwrap();
    let window = "        since: 2024-02-01\n        before: 2024-03-01\n";
    let fx = fixture(
        dir,
        &server_plan("imap", &server(&d, d.imaps_port), &src.login, window),
    );
    let store = open_store(&fx, "state.db");

    // `plan` counts only the mail in the window.
    let planned = observe(&fx, store.as_ref());
    assert_eq!(planned_items(&planned, "copy.alice.old"), 4);
    assert_eq!(planned_items(&planned, "verify.alice"), 4);

    let report = apply(&fx, Arc::clone(&store)).await;
    assert_eq!(report.outcome, WalkOutcome::Succeeded, "{report:#?}");
    let counts = done(&report, "copy.alice.old");
    // Mail outside the window is neither copied nor counted as already there.
    assert_eq!((counts.items, counts.present), (4, 0));
    assert_eq!(done(&report, "verify.alice").items, 4);
    let target = fx.base.join("out/alice@example.test");
    let want = BTreeMap::from([
        (
            "INBOX".to_string(),
            set(&["feb-first-second", "feb-middle-no-id", "feb-last-second"]),
        ),
        ("Archive".to_string(), set(&["archive-feb"])),
    ]);
    assert_eq!(maildir_subjects(&target), want);
    // Internal dates were kept, so the copies are in the window too.
    let md = Maildir::open(&target).unwrap();
    for e in md.entries(&md.folder(&FolderPath::inbox())).unwrap() {
        assert!(feb.contains(e.internal_date), "{:?}", e.internal_date);
    }

    // Nothing new arrives in the window: a fresh state compares the window's mail only.
    let fresh = apply(&fx, open_store(&fx, "fresh.db")).await;
    let counts = done(&fresh, "copy.alice.old");
    assert_eq!((counts.items, counts.present), (0, 4));

    // A wider window is another config: the step reruns and copies what entered it.
    let wider = fixture_at(
        fx.base.clone(),
        &server_plan(
            "imap",
            &server(&d, d.imaps_port),
            &src.login,
            "        since: 2024-02-01\n        before: 2024-03-02\n",
        ),
    );
    // The preview compares with the target: four of the five are there already.
    match &observe(&wider, store.as_ref())["copy.alice.old"] {
        PlannedChange::Change { items, present, .. } => assert_eq!((*items, *present), (1, 4)),
        other => panic!("{other:?}"),
    }
    let report = apply(&wider, Arc::clone(&store)).await;
    let counts = done(&report, "copy.alice.old");
    assert_eq!((counts.items, counts.present), (1, 4));
    assert_eq!(done(&report, "verify.alice").items, 5);
    assert!(maildir_subjects(&target)["INBOX"].contains("mar-first-second"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pop3_window_decides_by_received_headers_and_leaves_the_rest() {
    let d = Dovecot::shared();
    let u = d.add_user("window-pop");
    let mails: [(&str, String); 6] = [
        (
            "received-feb",
            // Topmost Received: is in February though Date: is not.
            "Received: from mx by pop.window.test; Thu, 15 Feb 2024 10:00:00 +0000\r\n\
             Received: from relay by mx.window.test; Wed, 31 Jan 2024 23:00:00 +0000\r\n\
             Date: Wed, 31 Jan 2024 22:59:00 +0000\r\n"
                .into(),
        ),
        (
            "received-jan",
            "Received: from mx by pop.window.test; Wed, 31 Jan 2024 23:59:59 +0000\r\n\
             Date: Thu, 1 Feb 2024 10:00:00 +0000\r\n"
                .into(),
        ),
        (
            "date-feb-in-zone",
            // 2024-03-01 00:30 +0100 is 2024-02-29 23:30 UTC.
            "Date: Fri, 1 Mar 2024 00:30:00 +0100\r\n".into(),
        ),
        (
            "date-mar",
            "Date: Fri, 1 Mar 2024 00:00:00 +0000\r\n".into(),
        ),
        ("undated", String::new()),
        (
            "date-2020",
            "Date: Wed, 1 Jan 2020 00:00:00 +0000\r\n".into(),
        ),
    ];
    for (i, (name, head)) in mails.iter().enumerate() {
        let bytes = format!("{head}Subject: {name}\r\n\r\nbody of {name}\r\n");
        d.deliver(&u, &format!("{i}.window.test"), bytes.as_bytes());
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("src.pw"), &u.password).unwrap();
    let fx = fixture(
        dir,
        &server_plan(
            "pop3",
            &format!("delete_after_copy: true, {}", server(&d, d.pop3s_port)),
            &u.login,
            "        since: 2024-02-01\n        before: 2024-03-01\n",
        ),
    );
    let store = open_store(&fx, "state.db");
    let planned = observe(&fx, store.as_ref());
    assert_eq!(planned_items(&planned, "copy.alice.old"), 3);

    let report = apply(&fx, Arc::clone(&store)).await;
    assert_eq!(report.outcome, WalkOutcome::Succeeded, "{report:#?}");
    let counts = done(&report, "copy.alice.old");
    assert_eq!((counts.items, counts.present), (3, 0));
    assert_eq!(
        maildir_subjects(&fx.base.join("out/alice@example.test")),
        BTreeMap::from([(
            "INBOX".to_string(),
            set(&["received-feb", "date-feb-in-zone", "undated"])
        )])
    );
    let mut cps = store.checkpoints("copy.alice.old").unwrap();
    cps.retain(|k, _| k.starts_with("pop3:"));
    let outside = cps.values().filter(|v| v.as_slice() == b"outside").count();
    assert_eq!((cps.len(), outside), (6, 3), "{cps:?}");

    // Only copied mail was deleted: what is outside the window stays at the source.
    let ep = Endpoint::new("127.0.0.1", d.pop3s_port, Tls::Implicit).with_ca_file(d.ca_file());
    let mut c = Pop3Client::connect(&ep, &Credentials::password(&u.login, &u.password))
        .await
        .unwrap();
    let mut left = Vec::new();
    for m in c.messages().await.unwrap() {
        let head = RawMessage::new(c.top(m.number, 0).await.unwrap());
        left.push(head.subject().unwrap_or_default());
    }
    left.sort();
    assert_eq!(left, ["date-2020", "date-mar", "received-jan"]);
    c.quit().await.unwrap();

    // Verify (its own step in this walk) compared only the window: nothing in it is left
    // at the source, so a fresh check finds none of the remaining mail missing.
    assert_eq!(done(&report, "verify.alice").items, 0);
    match &observe(&fx, open_store(&fx, "preview.db").as_ref())["verify.alice"] {
        PlannedChange::Create { items, present, .. } => assert_eq!((*items, *present), (0, 0)),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mbox_and_maildir_windows_use_their_internal_dates() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().to_path_buf();
    std::fs::create_dir_all(base.join("mail")).unwrap();
    // An mbox dates its mail by the `From ` line (UTC); one line carries no date at all.
    let mut mbox = Vec::new();
    for (name, from_line) in [
        ("mbox-jan", "From a@window.test Wed Jan 31 23:59:59 2024"),
        (
            "mbox-feb-first",
            "From a@window.test Thu Feb  1 00:00:00 2024",
        ),
        ("mbox-undated", "From MAILER-DAEMON"),
        (
            "mbox-feb-last",
            "From a@window.test Thu Feb 29 23:59:59 2024",
        ),
        ("mbox-mar", "From a@window.test Fri Mar  1 00:00:00 2024"),
    ] {
        mbox.extend_from_slice(from_line.as_bytes());
        mbox.extend_from_slice(b"\n");
        mbox.extend_from_slice(message(name, true).bytes());
        mbox.extend_from_slice(b"\n");
    }
    std::fs::write(base.join("mail/alice.mbox"), mbox).unwrap();
    // A maildir dates its mail by the file's modification time.
    {
        let mut md = MaildirTarget::open(base.join("mail/bob")).unwrap();
        let sent = FolderPath::parse("Sent", '/').unwrap();
        for (folder, name, when) in [
            (FolderPath::inbox(), "md-feb", FEB + DAY),
            (FolderPath::inbox(), "md-jan", FEB - DAY),
            (sent.clone(), "md-sent-feb", MAR - DAY),
            (sent, "md-sent-mar", MAR + DAY),
        ] {
            md.store(&folder, &message(name, true).with_internal_date(at(when)))
                .unwrap();
        }
    }
    let yaml = r#"
version: 1
name: window-local
domain: example.test
target: { kind: maildir, path: out }
sources:
  export: { kind: mbox }
  old: { kind: maildir }
users:
  - email: alice@example.test
    migrate:
      - from: export
        file: mail/alice.mbox
        since: 2024-02-01
        before: 2024-03-01
  - email: bob@example.test
    migrate:
      - from: old
        file: mail/bob
        since: 2024-02-01
        before: 2024-03-01
"#;
    let fx = fixture(dir, yaml);
    let store = open_store(&fx, "state.db");
    let planned = observe(&fx, store.as_ref());
    assert_eq!(planned_items(&planned, "copy.alice.export"), 3);
    assert_eq!(planned_items(&planned, "copy.bob.old"), 2);

    let report = apply(&fx, Arc::clone(&store)).await;
    assert_eq!(report.outcome, WalkOutcome::Succeeded, "{report:#?}");
    let counts = done(&report, "copy.alice.export");
    assert_eq!((counts.items, counts.present), (3, 0));
    assert_eq!(done(&report, "copy.bob.old").items, 2);
    assert_eq!(done(&report, "verify.alice").items, 3);
    assert_eq!(done(&report, "verify.bob").items, 2);
    assert_eq!(
        maildir_subjects(&fx.base.join("out/alice@example.test")),
        BTreeMap::from([(
            "INBOX".to_string(),
            set(&["mbox-feb-first", "mbox-undated", "mbox-feb-last"])
        )])
    );
    assert_eq!(
        maildir_subjects(&fx.base.join("out/bob@example.test")),
        BTreeMap::from([
            ("INBOX".to_string(), set(&["md-feb"])),
            ("Sent".to_string(), set(&["md-sent-feb"])),
        ])
    );
    // Rerun with lost checkpoints: the window's mail is already there, nothing else is looked at.
    let fresh = apply(&fx, open_store(&fx, "fresh.db")).await;
    let counts = done(&fresh, "copy.alice.export");
    assert_eq!((counts.items, counts.present), (0, 3));
}
