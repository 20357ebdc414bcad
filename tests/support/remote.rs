//! Engine-level helpers for tests of server copies: seeding a Dovecot account, plan fixtures,
//! running `apply`, and reading a maildir target back as exact contents (IMAP ones:
//! `support::mailbox`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cutover::connectors::mail::{utf7, Flag, Flags, Maildir, RawMessage};
use cutover::connectors::net::{Credentials, Endpoint};
use cutover::engine::{
    self, ApplyOptions, CancellationToken, PlannedChange, StepResult, VecSink, WalkReport,
};
use cutover::graph::{Selection, StepGraph};
use cutover::plan::model::Tls;
use cutover::plan::{self, Options, Plan};
use cutover::state::{SqliteStore, StateStore};

use super::dovecot::{Dovecot, User};
use super::mailbox::{login, Contents};

pub fn imaps(d: &Dovecot) -> Endpoint {
    Endpoint::new("127.0.0.1", d.imaps_port, Tls::Implicit).with_ca_file(d.ca_file())
}

pub fn creds(u: &User) -> Credentials {
    Credentials::password(&u.login, &u.password)
}

pub fn at(secs: u64) -> Option<SystemTime> {
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

/// A message of about `size` bytes, with or without a Message-ID.
pub fn message(n: usize, id: bool, size: usize) -> RawMessage {
    let mut b = format!("From: sender{n}@example.test\r\nSubject: message {n}\r\n");
    if id {
        b.push_str(&format!(
            "Message-ID: <m{n}.{}@example.test>\r\n",
            std::process::id()
        ));
    }
    b.push_str("\r\n");
    while b.len() < size {
        b.push_str("body line of some mail text ..............................\r\n");
    }
    RawMessage::new(b.into_bytes())
}

/// A message of a little over `size` bytes: a short text and a base64 attachment of
/// pseudo-random bytes (lines of 76), as a mail client sends a large file.
pub fn big_message(n: usize, size: usize) -> RawMessage {
    let mut m = format!(
        "From: big{n}@example.test\r\nTo: kim@example.test\r\nSubject: big attachment {n}\r\nMessage-ID: <big{n}.{}@example.test>\r\nDate: Mon, 1 Jan 2024 10:00:{:02} +0000\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nThe file.\r\n--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"f{n}.bin\"\r\n\r\n",
        std::process::id(),
        n % 60
    )
    .into_bytes();
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut x = 0x9E37_79B9_7F4A_7C15_u64 ^ n as u64;
    while m.len() < size {
        for _ in 0..76 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            m.push(B64[(x % 64) as usize]);
        }
        m.extend_from_slice(b"\r\n");
    }
    m.extend_from_slice(b"--b--\r\n");
    RawMessage::new(m)
}

/// Source folder (Unicode, `/`-separated) → messages, as seeded.
pub type Seed = Vec<(String, Vec<RawMessage>)>;

/// Creates the folders and appends the messages on the server; returns the server's
/// hierarchy delimiter.
pub async fn seed(d: &Dovecot, u: &User, folders: &Seed) -> char {
    let mut c = login(d, u).await;
    let delim = c
        .list()
        .await
        .unwrap()
        .iter()
        .find_map(|b| b.delimiter)
        .unwrap_or('/');
    for (folder, msgs) in folders {
        let wire = wire_name(folder, delim);
        if wire != "INBOX" {
            c.create(&wire).await.unwrap();
        }
        // In batches: one MULTIAPPEND each against Dovecot, where a message at a time is slow.
        for batch in msgs.chunks(64) {
            let refs: Vec<&RawMessage> = batch.iter().collect();
            for r in c.append_all(&wire, &refs).await.unwrap() {
                r.unwrap();
            }
        }
    }
    c.logout().await.unwrap();
    delim
}

pub fn wire_name(folder: &str, delim: char) -> String {
    folder
        .split('/')
        .map(utf7::encode)
        .collect::<Vec<_>>()
        .join(&delim.to_string())
}

/// A varied mailbox: INBOX with flags, keywords and a message without Message-ID, a nested
/// folder, a non-ASCII folder.
pub fn varied_seed(tag: usize) -> Seed {
    let base = tag * 100;
    vec![
        (
            "INBOX".into(),
            vec![
                message(base + 1, true, 300)
                    .with_flags(Flags::new().with(Flag::Seen).with_keyword("$Forwarded"))
                    .with_internal_date(at(1_500_000_000)),
                message(base + 2, false, 200)
                    .with_flags(Flags::new().with(Flag::Flagged).with(Flag::Answered))
                    .with_internal_date(at(1_600_000_000)),
                RawMessage::new(
                    b"Subject: bare\r\n\r\n\xff\xfe bytes\r\n.\r\nno final newline".to_vec(),
                )
                .with_internal_date(at(1_650_000_000)),
            ],
        ),
        (
            "Archive/2023".into(),
            vec![
                message(base + 3, true, 5_000).with_internal_date(at(1_680_000_000)),
                message(base + 4, true, 100)
                    .with_flags(Flags::new().with(Flag::Seen))
                    .with_internal_date(at(1_690_000_000)),
            ],
        ),
        (
            "Entwürfe & Ärger".into(),
            vec![message(base + 5, true, 400)
                .with_flags(Flags::new().with(Flag::Draft))
                .with_internal_date(at(1_700_000_000))],
        ),
    ]
}

pub fn seed_contents(seed: &Seed) -> Contents {
    let mut out = Contents::new();
    for (folder, msgs) in seed {
        for m in msgs {
            out.entry((folder.clone(), m.identity()))
                .or_default()
                .push((m.bytes().to_vec(), m.flags.clone(), m.internal_date));
        }
    }
    out
}

pub fn maildir_contents(root: &Path) -> Contents {
    let mut out = Contents::new();
    let md = Maildir::open(root).expect("target maildir");
    for folder in md.folders().expect("folders") {
        for entry in md.entries(&folder).expect("entries") {
            let m = entry.read().expect("read");
            out.entry((folder.name.to_string(), m.identity()))
                .or_default()
                .push((m.bytes().to_vec(), m.flags.clone(), m.internal_date));
        }
    }
    out
}

pub struct Fx {
    /// Keeps the plan's directory alive as long as the fixture.
    pub dir: tempfile::TempDir,
    pub base: PathBuf,
    pub plan: Plan,
    pub graph: StepGraph,
}

pub fn fixture(yaml: &str) -> Fx {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().to_path_buf();
    fixture_in(dir, base, yaml)
}

pub fn fixture_in(dir: tempfile::TempDir, base: PathBuf, yaml: &str) -> Fx {
    let loaded = plan::load_str(yaml.to_string(), "remote.yaml", &base, Options::default());
    assert_eq!(
        loaded.report.errors(),
        0,
        "{:#?}",
        loaded.report.diagnostics
    );
    Fx {
        dir,
        base,
        plan: loaded.plan.unwrap(),
        graph: loaded.graph.unwrap(),
    }
}

/// Writes a password file beside the plan and returns its plan reference.
pub fn pw_file(dir: &Path, name: &str, value: &str) -> String {
    std::fs::write(dir.join(name), value).unwrap();
    format!("{{ file: {name} }}")
}

pub fn server(d: &Dovecot, port: u16) -> String {
    format!(
        "{{ host: 127.0.0.1, port: {port}, tls: implicit, ca_file: {} }}",
        d.ca_file().display()
    )
}

pub fn fast() -> ApplyOptions {
    ApplyOptions {
        backoff_base: Duration::from_millis(1),
        backoff_max: Duration::from_millis(5),
        ..ApplyOptions::default()
    }
}

pub fn all_steps(fx: &Fx) -> std::collections::BTreeSet<String> {
    fx.graph.select(&Selection::default())
}

pub async fn apply(fx: &Fx, store: Arc<dyn StateStore>, cancel: CancellationToken) -> WalkReport {
    apply_with(fx, store, &fast(), cancel).await
}

/// [`apply`] with `--replace` of the steps `replace` (ids or globs).
pub async fn apply_replacing(fx: &Fx, store: Arc<dyn StateStore>, replace: &[&str]) -> WalkReport {
    let options = ApplyOptions {
        replace: replace.iter().map(|s| s.to_string()).collect(),
        ..fast()
    };
    apply_with(fx, store, &options, CancellationToken::new()).await
}

async fn apply_with(
    fx: &Fx,
    store: Arc<dyn StateStore>,
    options: &ApplyOptions,
    cancel: CancellationToken,
) -> WalkReport {
    let runners = cutover::runners::runners_for(&fx.plan, &fx.graph, &fx.base);
    engine::apply(
        &fx.plan,
        &fx.graph,
        &all_steps(fx),
        store,
        &runners,
        options,
        &mut VecSink::default(),
        cancel,
    )
    .await
}

pub fn observe(fx: &Fx, store: &dyn StateStore) -> BTreeMap<String, PlannedChange> {
    let runners = cutover::runners::runners_for(&fx.plan, &fx.graph, &fx.base);
    engine::observe(
        &fx.plan,
        &fx.graph,
        &all_steps(fx),
        &Default::default(),
        store,
        &runners,
    )
    .into_iter()
    .collect()
}

pub fn open_store(fx: &Fx, name: &str) -> Arc<dyn StateStore> {
    Arc::new(SqliteStore::open(fx.base.join(name)).unwrap())
}

pub fn done(report: &WalkReport, id: &str) -> cutover::state::Counts {
    match &report.steps[id] {
        StepResult::Done { counts } => *counts,
        other => panic!("{id}: {other:?}\n{report:#?}"),
    }
}

/// Starts an apply with `spawn` up to `runs` times and kills each (SIGKILL) the moment
/// `proxy`, in front of `user`'s target server `d`, sees a new APPEND begin; returns how many
/// kills cut a literal (an APPEND begun whose message is not at the target). Stops early
/// when an apply ends without beginning one.
pub async fn kill_at_appends(
    proxy: &super::fault_proxy::FaultProxy,
    d: &Dovecot,
    user: &User,
    runs: usize,
    spawn: impl Fn() -> std::process::Child,
) -> usize {
    let watch = proxy.watch();
    let mut mid_literal = 0;
    for _ in 0..runs {
        let started = proxy.counts().appends;
        let mut child = spawn();
        let began = watch.wait_until(Duration::from_secs(60), |c| c.appends > started);
        child.kill().unwrap();
        child.wait().unwrap();
        if !began {
            break;
        }
        // Every APPEND that began and is not at the target was cut mid-literal.
        let stored = super::mailbox::imap_contents(d, user)
            .await
            .values()
            .flatten()
            .count();
        if stored < proxy.counts().appends {
            mid_literal += 1;
        }
    }
    mid_literal
}

/// The client report of `report` as the CLI renders it (Markdown), for the plan at
/// `base/plan.yaml` with its state at `base/state.db`.
pub fn report_markdown(base: &Path, report: &WalkReport, store: &dyn StateStore) -> String {
    let ws = cutover::ops::Workspace::open(
        &base.join("plan.yaml"),
        Some(&base.join("state.db")),
        Options::default(),
    )
    .unwrap();
    cutover::cli::render::report_markdown(&cutover::ops::build_report(&ws, report, store).unwrap())
}
