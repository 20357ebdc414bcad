//! Every mail source into every mail target through the one copy path, against a real
//! Dovecot (IMAP and POP3 sources, IMAP and m365 targets — the m365 target with the local
//! Graph and Entra ID fake standing in for Microsoft) and real files (mbox and Maildir
//! sources, the Maildir target). Each pair copies a mailbox holding the cases identity must get right —
//! two *different* messages sharing a Message-ID, a true duplicate, a message without
//! Message-ID — then runs again with its state (nothing to do) and with its state lost
//! (everything found at the target, nothing stored twice), and verifies.
//!
//! Also: one user's IMAP and POP3 accounts reaching the same 200 messages store 200.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use cutover::connectors::mail::{Flag, Flags, FolderPath, MaildirTarget, MboxWriter, RawMessage};
use cutover::engine::{CancellationToken, StepResult, WalkOutcome};
use support::dovecot::{Dovecot, User};
use support::graph_fake::{FakeSku, FakeTenant, GraphFake};
use support::mailbox::{imap_contents, Contents};
use support::remote::{
    apply, at, done, fixture_in, maildir_contents, open_store, seed, server, Seed,
};

/// A message with the given headers and a body naming `n`.
fn mail(n: usize, message_id: Option<&str>, date: &str) -> RawMessage {
    let mut b = format!("From: sender{n}@example.test\r\nSubject: matrix {n}\r\nDate: {date}\r\n");
    if let Some(id) = message_id {
        b.push_str(&format!("Message-ID: <{id}>\r\n"));
    }
    b.push_str(&format!("\r\nbody of message {n}\r\n"));
    RawMessage::new(b.into_bytes())
}

/// The inbox every source holds, and a second folder for the sources that have folders.
fn inbox() -> Vec<RawMessage> {
    let dup = mail(4, Some("dup@matrix.test"), "Thu, 4 Jan 2024 10:00:00 +0000")
        .with_internal_date(at(1_704_362_400));
    vec![
        mail(1, Some("one@matrix.test"), "Mon, 1 Jan 2024 10:00:00 +0000")
            .with_flags(Flags::new().with(Flag::Seen))
            .with_internal_date(at(1_704_103_200)),
        // Two different messages, one Message-ID (a message and its edited draft).
        mail(
            2,
            Some("twin@matrix.test"),
            "Tue, 2 Jan 2024 10:00:00 +0000",
        )
        .with_internal_date(at(1_704_189_600)),
        mail(
            3,
            Some("twin@matrix.test"),
            "Wed, 3 Jan 2024 10:00:00 +0000",
        )
        .with_flags(Flags::new().with(Flag::Flagged))
        .with_internal_date(at(1_704_276_000)),
        // The same message twice: both copies stay.
        dup.clone(),
        dup,
        mail(5, None, "Fri, 5 Jan 2024 10:00:00 +0000").with_internal_date(at(1_704_448_800)),
    ]
}

fn projects() -> Vec<RawMessage> {
    vec![
        mail(6, Some("six@matrix.test"), "Sat, 6 Jan 2024 10:00:00 +0000")
            .with_flags(Flags::new().with(Flag::Answered))
            .with_internal_date(at(1_704_535_200)),
        // Also in the inbox: another folder, another copy.
        mail(1, Some("one@matrix.test"), "Mon, 1 Jan 2024 10:00:00 +0000")
            .with_internal_date(at(1_704_103_200)),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum SourceKind {
    Imap,
    Pop3,
    Mbox,
    Maildir,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum TargetKind {
    Maildir,
    Imap,
    M365,
}

/// The sources, prepared once: IMAP and POP3 accounts on the shared Dovecot, an mbox file and
/// a Maildir tree in a temporary folder.
struct Sources {
    d: Arc<Dovecot>,
    imap: User,
    pop3: User,
    files: tempfile::TempDir,
}

async fn sources() -> Sources {
    let d = Dovecot::shared();
    let (imap, pop3) = (d.add_user("matrix-imap"), d.add_user("matrix-pop3"));
    let both: Seed = vec![("INBOX".into(), inbox()), ("Projects".into(), projects())];
    seed(&d, &imap, &both).await;
    seed(&d, &pop3, &vec![("INBOX".into(), inbox())]).await;
    let files = tempfile::tempdir().unwrap();
    let mut w = MboxWriter::create(files.path().join("export.mbox")).unwrap();
    for m in inbox() {
        w.write(&m).unwrap();
    }
    w.finish().unwrap();
    let mut md = MaildirTarget::open(files.path().join("export.maildir")).unwrap();
    for m in inbox() {
        md.store(&FolderPath::inbox(), &m).unwrap();
    }
    for m in projects() {
        md.store(&FolderPath::parse("Projects", '/').unwrap(), &m)
            .unwrap();
    }
    Sources {
        d,
        imap,
        pop3,
        files,
    }
}

/// Flags as sorted names, so mailboxes compare as sorted lists.
fn names(flags: &Flags) -> Vec<String> {
    let mut v: Vec<String> = flags
        .system()
        .map(|f| f.imap_name().to_string())
        .chain(flags.keywords().map(str::to_string))
        .collect();
    v.sort();
    v
}

type Mailbox = Vec<(String, Vec<u8>, Vec<String>)>;

/// What a source's copy must leave at the target: (folder, bytes, flags), sorted. POP3 has
/// no flags; an mbox without Status headers neither; neither has folders.
fn expected(kind: SourceKind) -> Mailbox {
    let flags = |m: &RawMessage| match kind {
        SourceKind::Pop3 | SourceKind::Mbox => Vec::new(),
        SourceKind::Imap | SourceKind::Maildir => names(&m.flags),
    };
    let mut out: Vec<_> = inbox()
        .iter()
        .map(|m| ("INBOX".to_string(), m.bytes().to_vec(), flags(m)))
        .collect();
    if matches!(kind, SourceKind::Imap | SourceKind::Maildir) {
        out.extend(
            projects()
                .iter()
                .map(|m| ("Projects".to_string(), m.bytes().to_vec(), flags(m))),
        );
    }
    out.sort();
    out
}

fn flatten(contents: Contents) -> Mailbox {
    let mut out: Vec<_> = contents
        .into_iter()
        .flat_map(|((folder, _), copies)| {
            copies
                .into_iter()
                .map(move |(bytes, flags, _)| (folder.clone(), bytes, names(&flags)))
        })
        .collect();
    out.sort();
    out
}

/// The plan's `sources:` entry and the user's `migrate:` entry for `kind`.
fn source_yaml(s: &Sources, kind: SourceKind, dir: &std::path::Path) -> (String, String) {
    let files = s.files.path().display();
    match kind {
        SourceKind::Imap => {
            std::fs::write(dir.join("src.pw"), &s.imap.password).unwrap();
            (
                format!(
                    "old: {{ kind: imap, {} }}",
                    server_fields(&s.d, s.d.imaps_port)
                ),
                format!(
                    "{{ from: old, login: {}, password: {{ file: src.pw }} }}",
                    s.imap.login
                ),
            )
        }
        SourceKind::Pop3 => {
            std::fs::write(dir.join("src.pw"), &s.pop3.password).unwrap();
            (
                format!(
                    "old: {{ kind: pop3, {} }}",
                    server_fields(&s.d, s.d.pop3s_port)
                ),
                format!(
                    "{{ from: old, login: {}, password: {{ file: src.pw }} }}",
                    s.pop3.login
                ),
            )
        }
        SourceKind::Mbox => (
            "old: { kind: mbox }".into(),
            format!("{{ from: old, file: {files}/export.mbox }}"),
        ),
        SourceKind::Maildir => (
            "old: { kind: maildir }".into(),
            format!("{{ from: old, file: {files}/export.maildir }}"),
        ),
    }
}

fn server_fields(d: &Dovecot, port: u16) -> String {
    let s = server(d, port);
    s.trim_start_matches("{ ")
        .trim_end_matches(" }")
        .to_string()
}

/// A target mailbox and how to read it back.
struct Target {
    kind: TargetKind,
    user: Option<User>,
    _tenant: Option<GraphFake>,
}

fn target_yaml(s: &Sources, kind: TargetKind, dir: &std::path::Path) -> (String, String, Target) {
    match kind {
        TargetKind::Maildir => (
            "{ kind: maildir, path: out }".into(),
            "matrix@example.test".into(),
            Target {
                kind,
                user: None,
                _tenant: None,
            },
        ),
        TargetKind::Imap => {
            let u = s.d.add_user("matrix-dst");
            std::fs::write(dir.join("dst.pw"), &u.password).unwrap();
            (
                format!("{{ kind: imap, {} }}", server_fields(&s.d, s.d.imaps_port)),
                format!(
                    "matrix@example.test\n    target_login: {{ login: {}, password: {{ file: dst.pw }} }}",
                    u.login
                ),
                Target {
                    kind,
                    user: Some(u),
                    _tenant: None,
                },
            )
        }
        TargetKind::M365 => {
            let u = s.d.add_user("matrix-m365");
            // The tenant already has the user and mailbox (user.* finds them through Graph).
            // Dovecot checks the XOAUTH2 bearer token against its passdb: the "issued" token
            // (Graph and IMAP are both at 127.0.0.1, one scope) is the mailbox's password.
            let mut config = FakeTenant::new(&["example.test"]);
            config.client_id = "app".into();
            config.client_secret = "matrix-app-secret".into();
            config.skus = vec![FakeSku::new("EXCHANGESTANDARD", 1, 0)];
            config
                .scope_tokens
                .insert("https://127.0.0.1/.default".into(), u.password.clone());
            let tenant = GraphFake::start(config);
            let local = u.login.split('@').next().unwrap_or_default();
            tenant.add_user(&u.login, local, &["EXCHANGESTANDARD"]);
            std::fs::write(dir.join("app.secret"), "matrix-app-secret").unwrap();
            (
                format!(
                    "{{ kind: m365, tenant: contoso.onmicrosoft.com, auth: {{ client_id: app, client_secret: {{ file: app.secret }}, token_endpoint: {} }}, graph: {{ endpoint: \"{}\" }}, imap: {{ host: 127.0.0.1, port: {}, ca_file: {} }} }}",
                    tenant.token_url,
                    tenant.root,
                    s.d.imaps_port,
                    s.d.ca_file().display()
                ),
                u.login.clone(),
                Target {
                    kind,
                    user: Some(u),
                    _tenant: Some(tenant),
                },
            )
        }
    }
}

async fn read_back(s: &Sources, t: &Target, base: &std::path::Path, email: &str) -> Contents {
    match t.kind {
        TargetKind::Maildir => maildir_contents(&base.join("out").join(email)),
        TargetKind::Imap | TargetKind::M365 => imap_contents(&s.d, t.user.as_ref().unwrap()).await,
    }
}

/// Copies `source` into `target` three times (fresh, again, state lost) and checks each.
async fn pair(s: &Sources, source: SourceKind, target: TargetKind) {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().to_path_buf();
    let (src_entry, migrate) = source_yaml(s, source, &base);
    let (target_entry, user, t) = target_yaml(s, target, &base);
    let email = user.lines().next().unwrap().to_string();
    let yaml = format!(
        "version: 1\nname: matrix\ndomain: example.test\ntarget: {target_entry}\nsources:\n  {src_entry}\nusers:\n  - email: {user}\n    migrate:\n      - {migrate}\n"
    );
    let fx = fixture_in(dir, base.clone(), &yaml);
    let local = email.split('@').next().unwrap().to_string();
    let (copy, verify) = (format!("copy.{local}.old"), format!("verify.{local}"));
    let what = format!("{source:?} → {target:?}");

    let store = open_store(&fx, "state.db");
    let first = apply(&fx, Arc::clone(&store), CancellationToken::new()).await;
    assert_eq!(first.outcome, WalkOutcome::Succeeded, "{what}: {first:#?}");
    let want = expected(source);
    assert_eq!(
        done(&first, &copy).items as usize,
        want.len(),
        "{what}: every message copied, twins and duplicates included"
    );
    assert_eq!(done(&first, &verify).items as usize, want.len(), "{what}");
    assert_eq!(
        flatten(read_back(s, &t, &base, &email).await),
        want,
        "{what}: the target holds exactly the source's mail"
    );

    let again = apply(&fx, Arc::clone(&store), CancellationToken::new()).await;
    assert!(
        again.steps.values().all(|r| *r == StepResult::Unchanged),
        "{what}: {again:#?}"
    );

    // State lost: everything is found at the target by identity and counted, not stored.
    let lost = apply(&fx, open_store(&fx, "lost.db"), CancellationToken::new()).await;
    let counts = done(&lost, &copy);
    assert_eq!(
        (counts.items, counts.present as usize),
        (0, want.len()),
        "{what}: nothing stored twice"
    );
    assert_eq!(
        flatten(read_back(s, &t, &base, &email).await),
        want,
        "{what}: unchanged"
    );
}

async fn every_source_into(target: TargetKind) {
    let s = sources().await;
    for source in [
        SourceKind::Imap,
        SourceKind::Pop3,
        SourceKind::Mbox,
        SourceKind::Maildir,
    ] {
        pair(&s, source, target).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_source_into_a_maildir() {
    every_source_into(TargetKind::Maildir).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_source_into_an_imap_server() {
    every_source_into(TargetKind::Imap).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_source_into_microsoft_365() {
    every_source_into(TargetKind::M365).await;
}

/// Outlook's POP default leaves mail on the server for 14 days, so a POP user's mail is on
/// the server and in the PST at once; here the same 200 messages are one account's, reached
/// over IMAP and over POP3, both migrated into one inbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_users_overlapping_sources_store_each_message_once() {
    let d = Dovecot::shared();
    let u = d.add_user("overlap");
    let messages: Vec<RawMessage> = (0..200)
        .map(|i| {
            mail(
                1000 + i,
                (i % 10 != 0)
                    .then_some(format!("o{i}@overlap.test"))
                    .as_deref(),
                &format!("Mon, 1 Jan 2024 10:{:02}:{:02} +0000", i / 60, i % 60),
            )
        })
        .collect();
    seed(&d, &u, &vec![("INBOX".into(), messages)]).await;
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().to_path_buf();
    std::fs::write(base.join("u.pw"), &u.password).unwrap();
    let yaml = format!(
        "version: 1\nname: overlap\ndomain: example.test\ntarget: {{ kind: maildir, path: out }}\nsources:\n  host-imap: {{ kind: imap, {} }}\n  host-pop: {{ kind: pop3, {} }}\nusers:\n  - email: bob@example.test\n    migrate:\n      - {{ from: host-imap, login: {login}, password: {{ file: u.pw }} }}\n      - {{ from: host-pop, login: {login}, password: {{ file: u.pw }} }}\n",
        server_fields(&d, d.imaps_port),
        server_fields(&d, d.pop3s_port),
        login = u.login
    );
    let fx = fixture_in(dir, base.clone(), &yaml);
    let report = apply(&fx, open_store(&fx, "state.db"), CancellationToken::new()).await;
    assert_eq!(report.outcome, WalkOutcome::Succeeded, "{report:#?}");
    let imap = done(&report, "copy.bob.host-imap");
    let pop = done(&report, "copy.bob.host-pop");
    assert_eq!(imap.items, 200);
    assert_eq!(
        (pop.items, pop.present),
        (0, 200),
        "POP3 found them all there"
    );
    let stored: usize = maildir_contents(&base.join("out/bob@example.test"))
        .values()
        .map(Vec::len)
        .sum();
    assert_eq!(stored, 200);
    assert_eq!(done(&report, "verify.bob").items, 200);
    let by_folder: BTreeMap<String, usize> =
        flatten(maildir_contents(&base.join("out/bob@example.test")))
            .into_iter()
            .fold(BTreeMap::new(), |mut m, (f, _, _)| {
                *m.entry(f).or_default() += 1;
                m
            });
    assert_eq!(by_folder, BTreeMap::from([("INBOX".to_string(), 200)]));
}
