//! Source untouched, target complete, against the real Dovecot: a POP3 copy leaves unread
//! mail unread (with `TOP`, and with `RETR` undone by `RSET` where the server has no TOP), an
//! IMAP copy leaves every flag as it was; every routed folder arrives, empty ones included,
//! subscribed as at the source (IMAP, Maildir, Microsoft 365: all), and only once; mail
//! flagged `\Deleted` stays behind and is reported (or is copied, as the plan says); the
//! counts tell copied, already there and left behind apart.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;

use cutover::connectors::mail::{Flag, Flags, RawMessage};
use cutover::connectors::net::{Endpoint, NetError};
use cutover::connectors::pop3::Pop3Client;
use cutover::engine::{CancellationToken, WalkOutcome};
use cutover::plan::model::Tls;
use support::dovecot::{Dovecot, User};
use support::fault_proxy::{FaultProxy, Faults};
use support::graph_fake::{FakeSku, FakeTenant, GraphFake};
use support::mailbox::{assert_same, imap_contents, login};
use support::remote::{
    apply, apply_replacing, creds, done, fixture_in, maildir_contents, open_store, seed, server,
    varied_seed, Fx,
};

fn mail(n: usize) -> RawMessage {
    RawMessage::new(
        format!(
            "Message-ID: <f{n}@fidelity.test>\r\nDate: Mon, 1 Jan 2024 10:00:{:02} +0000\r\nSubject: fidelity {n}\r\n\r\nbody {n}\r\n",
            n % 60
        )
        .into_bytes(),
    )
}

/// `{ host, port, tls, ca_file }` as fields to splice into a plan's server entry.
fn fields(d: &Dovecot, port: u16) -> String {
    let s = server(d, port);
    s.trim_start_matches("{ ")
        .trim_end_matches(" }")
        .to_string()
}

fn plaintext(port: u16) -> String {
    format!("host: 127.0.0.1, port: {port}, tls: none, allow_plaintext: true")
}

/// A plan migrating `src` (`kind` at `source`) for alice into `target`.
fn plan(dir: &std::path::Path, kind: &str, source: &str, src: &User, target: &str) -> String {
    std::fs::write(dir.join("src.pw"), &src.password).unwrap();
    format!(
        "version: 1\nname: fidelity\ndomain: example.test\ntarget: {target}\nsources:\n  old: {{ kind: {kind}, {source} }}\nusers:\n  - email: alice@example.test\n    migrate:\n      - {{ from: old, login: {}, password: {{ file: src.pw }} }}\n",
        src.login
    )
}

/// A plan copying `src` over IMAP into `dst`'s IMAP mailbox on the same Dovecot.
fn imap_to_imap(d: &Dovecot, src: &User, dst: &User) -> Fx {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().to_path_buf();
    std::fs::write(base.join("dst.pw"), &dst.password).unwrap();
    let target = format!("{{ kind: imap, {} }}", fields(d, d.imaps_port));
    let yaml = plan(&base, "imap", &fields(d, d.imaps_port), src, &target).replace(
        "  - email: alice@example.test\n",
        &format!(
            "  - email: alice@example.test\n    target_login: {{ login: {}, password: {{ file: dst.pw }} }}\n",
            dst.login
        ),
    );
    fixture_in(dir, base, &yaml)
}

/// Which messages of the user's INBOX lack `\Seen`, by subject.
async fn unseen(d: &Dovecot, u: &User) -> BTreeSet<String> {
    imap_contents(d, u)
        .await
        .into_values()
        .flatten()
        .filter(|(_, flags, _)| !flags.contains(Flag::Seen))
        .map(|(bytes, _, _)| RawMessage::new(bytes).subject().unwrap_or_default())
        .collect()
}

async fn pop3_copy_keeps_unread(source: &str, d: &Dovecot, u: &User) {
    let before = imap_contents(d, u).await;
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().to_path_buf();
    let fx = fixture_in(
        dir,
        base.clone(),
        &plan(&base, "pop3", source, u, "{ kind: maildir, path: out }"),
    );
    let report = apply(&fx, open_store(&fx, "state.db"), CancellationToken::new()).await;
    assert_eq!(report.outcome, WalkOutcome::Succeeded, "{report:#?}");
    assert_eq!(done(&report, "copy.alice.old").items, 4);
    assert_eq!(
        maildir_contents(&base.join("out/alice@example.test"))
            .values()
            .map(Vec::len)
            .sum::<usize>(),
        4
    );
    // Every flag at the source as it was: the three unread messages still unread.
    assert_same(&before, &imap_contents(d, u).await);
    assert_eq!(unseen(d, u).await.len(), 3);
}

/// Three unread messages and a read one, in a POP3 user's INBOX.
async fn pop3_mailbox(d: &Dovecot, hint: &str) -> User {
    let u = d.add_user(hint);
    let inbox = vec![
        mail(1),
        mail(2),
        mail(3),
        mail(4).with_flags(Flags::new().with(Flag::Seen)),
    ];
    seed(d, &u, &vec![("INBOX".into(), inbox)]).await;
    u
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pop3_copy_leaves_unread_mail_unread() {
    let d = Dovecot::shared();
    // What the test guards against: Dovecot, like Courier, marks mail read on RETR.
    let control = pop3_mailbox(&d, "pop-control").await;
    let ep = Endpoint::new("127.0.0.1", d.pop3s_port, Tls::Implicit).with_ca_file(d.ca_file());
    let mut c = Pop3Client::connect(&ep, &creds(&control)).await.unwrap();
    for m in c.messages().await.unwrap() {
        c.retr(m.number).await.unwrap();
    }
    c.quit().await.unwrap();
    assert!(
        unseen(&d, &control).await.is_empty(),
        "RETR marks mail read at Dovecot"
    );

    // TOP n <all lines>: nothing to undo.
    let u = pop3_mailbox(&d, "pop-top").await;
    pop3_copy_keeps_unread(&fields(&d, d.pop3s_port), &d, &u).await;

    // A server without TOP: RETR, then RSET before QUIT undoes the read marks.
    let u = pop3_mailbox(&d, "pop-retr").await;
    let proxy = FaultProxy::start(
        d.pop3_port,
        Faults {
            drop_capabilities: vec!["TOP".into()],
            ..Faults::default()
        },
    );
    pop3_copy_keeps_unread(&plaintext(proxy.port), &d, &u).await;
    assert!(proxy.counts().downloads >= 4, "{:?}", proxy.counts());
}

/// The POP3 source with `delete_after_copy` and no TOP: RSET also undoes the deletions, so
/// they are made again before QUIT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_top_deletions_survive_the_read_state_undo() {
    let d = Dovecot::shared();
    let u = pop3_mailbox(&d, "pop-retr-del").await;
    let proxy = FaultProxy::start(
        d.pop3_port,
        Faults {
            drop_capabilities: vec!["TOP".into()],
            ..Faults::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().to_path_buf();
    let source = format!("delete_after_copy: true, {}", plaintext(proxy.port));
    let fx = fixture_in(
        dir,
        base.clone(),
        &plan(&base, "pop3", &source, &u, "{ kind: maildir, path: out }"),
    );
    let report = apply(&fx, open_store(&fx, "state.db"), CancellationToken::new()).await;
    assert_eq!(done(&report, "copy.alice.old").items, 4, "{report:#?}");
    assert!(
        imap_contents(&d, &u).await.is_empty(),
        "all copied, all deleted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imap_copy_leaves_the_source_flags_unchanged() {
    let d = Dovecot::shared();
    let (src, dst) = (d.add_user("flags-src"), d.add_user("flags-dst"));
    let mut seeded = varied_seed(7);
    seeded[0]
        .1
        .push(mail(9).with_flags(Flags::new().with(Flag::Answered)));
    seed(&d, &src, &seeded).await;
    let before = imap_contents(&d, &src).await;
    let fx = imap_to_imap(&d, &src, &dst);
    let report = apply(&fx, open_store(&fx, "state.db"), CancellationToken::new()).await;
    assert_eq!(report.outcome, WalkOutcome::Succeeded, "{report:#?}");
    assert_same(&before, &imap_contents(&d, &src).await);
    assert_same(&before, &imap_contents(&d, &dst).await);
}

/// A source with an empty folder, subscribed folders and one that is not.
async fn foldered_source(d: &Dovecot) -> User {
    let src = d.add_user("folders-src");
    seed(
        d,
        &src,
        &vec![
            ("INBOX".into(), vec![mail(20)]),
            ("Projects".into(), vec![mail(21)]),
            ("Empty".into(), vec![]),
            ("Archive/2023".into(), vec![mail(22)]),
            ("Hidden".into(), vec![mail(23)]),
        ],
    )
    .await;
    let mut c = login(d, &src).await;
    let delim = c.list().await.unwrap()[0].delimiter.unwrap_or('.');
    for name in ["INBOX", "Projects", "Empty", "Archive/2023"] {
        c.subscribe(&name.replace('/', &delim.to_string()))
            .await
            .unwrap();
    }
    c.logout().await.unwrap();
    src
}

/// Every folder of `u` (Unicode, `/` between levels), and those subscribed.
async fn folders_of(d: &Dovecot, u: &User) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut c = login(d, u).await;
    let mut all = BTreeSet::new();
    let mut subscribed = BTreeSet::new();
    for m in c.list_subscribed().await.unwrap() {
        let name = m.name.replace(m.delimiter.unwrap_or('/'), "/");
        if m.is_subscribed() {
            subscribed.insert(name.clone());
        }
        if m.is_selectable() {
            all.insert(name);
        }
    }
    c.logout().await.unwrap();
    (all, subscribed)
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_folders_arrive_subscribed_as_at_the_source_and_only_once() {
    let d = Dovecot::shared();
    let src = foldered_source(&d).await;
    let every = set(&["INBOX", "Projects", "Empty", "Archive/2023", "Hidden"]);

    // Into an IMAP server.
    let dst = d.add_user("folders-dst");
    let fx = imap_to_imap(&d, &src, &dst);
    let store = open_store(&fx, "state.db");
    let report = apply(&fx, Arc::clone(&store), CancellationToken::new()).await;
    assert_eq!(report.outcome, WalkOutcome::Succeeded, "{report:#?}");
    let (all, subscribed) = folders_of(&d, &dst).await;
    assert!(every.is_subset(&all), "{all:?}");
    assert_eq!(
        subscribed,
        set(&["Projects", "Empty", "Archive/2023"]),
        "subscribed as at the source (INBOX needs none)"
    );
    // Made sure of once: a folder the user deletes afterwards is not created again by a
    // later pass.
    std::fs::remove_dir_all(d.maildir(&dst).join(".Empty")).unwrap();
    let again = apply_replacing(&fx, Arc::clone(&store), &["copy.alice.old"]).await;
    assert_eq!(again.outcome, WalkOutcome::Succeeded, "{again:#?}");
    assert!(!folders_of(&d, &dst).await.0.contains("Empty"));

    // Into a Maildir, read through a server without LIST-EXTENDED (subscriptions by LSUB).
    let proxy = FaultProxy::start(
        d.imap_port,
        Faults {
            drop_capabilities: vec!["LIST-EXTENDED".into()],
            ..Faults::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().to_path_buf();
    let fx = fixture_in(
        dir,
        base.clone(),
        &plan(
            &base,
            "imap",
            &plaintext(proxy.port),
            &src,
            "{ kind: maildir, path: out }",
        ),
    );
    let report = apply(&fx, open_store(&fx, "state.db"), CancellationToken::new()).await;
    assert_eq!(report.outcome, WalkOutcome::Succeeded, "{report:#?}");
    let root = base.join("out/alice@example.test");
    assert!(root.join(".Empty/cur").is_dir());
    let mut lines: Vec<String> = std::fs::read_to_string(root.join("subscriptions"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    assert_eq!(lines, ["Archive.2023", "Empty", "Projects"]);

    // Into Microsoft 365: every folder subscribed.
    // The tenant has the user and mailbox (user.* finds them through Graph); Dovecot takes
    // the mailbox's password as its XOAUTH2 token, which the fake issues for the IMAP scope.
    let m365 = d.add_user("folders-m365");
    let mut config = FakeTenant::new(&["example.test"]);
    config.client_id = "app".into();
    config.client_secret = "fidelity-app-secret".into();
    config.skus = vec![FakeSku::new("EXCHANGESTANDARD", 1, 0)];
    config
        .scope_tokens
        .insert("https://127.0.0.1/.default".into(), m365.password.clone());
    let tenant = GraphFake::start(config);
    let local = m365.login.split('@').next().unwrap_or_default();
    tenant.add_user(&m365.login, local, &["EXCHANGESTANDARD"]);
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().to_path_buf();
    std::fs::write(base.join("app.secret"), "fidelity-app-secret").unwrap();
    let target = format!(
        "{{ kind: m365, tenant: contoso.onmicrosoft.com, auth: {{ client_id: app, client_secret: {{ file: app.secret }}, token_endpoint: {} }}, graph: {{ endpoint: \"{}\" }}, imap: {{ host: 127.0.0.1, port: {}, ca_file: {} }} }}",
        tenant.token_url,
        tenant.root,
        d.imaps_port,
        d.ca_file().display()
    );
    // The mailbox is signed in to as the user's address.
    let yaml = plan(&base, "imap", &fields(&d, d.imaps_port), &src, &target)
        .replace("alice@example.test", &m365.login);
    let fx = fixture_in(dir, base, &yaml);
    let report = apply(&fx, open_store(&fx, "state.db"), CancellationToken::new()).await;
    assert_eq!(report.outcome, WalkOutcome::Succeeded, "{report:#?}");
    let (all, subscribed) = folders_of(&d, &m365).await;
    assert!(every.is_subset(&all), "{all:?}");
    assert_eq!(
        subscribed,
        set(&["Projects", "Empty", "Archive/2023", "Hidden"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_pop3_maildrop_still_gets_its_folder() {
    let d = Dovecot::shared();
    let u = d.add_user("pop-empty");
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().to_path_buf();
    let yaml = plan(
        &base,
        "pop3",
        &fields(&d, d.pop3s_port),
        &u,
        "{ kind: maildir, path: out }",
    )
    .replace(
        "password: { file: src.pw } }",
        "password: { file: src.pw }, into: Old POP }",
    );
    let fx = fixture_in(dir, base.clone(), &yaml);
    let report = apply(&fx, open_store(&fx, "state.db"), CancellationToken::new()).await;
    assert_eq!(report.outcome, WalkOutcome::Succeeded, "{report:#?}");
    let root = base.join("out/alice@example.test");
    assert!(root.join(".Old POP/cur").is_dir());
    assert_eq!(
        std::fs::read_to_string(root.join("subscriptions")).unwrap(),
        "Old POP\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_flagged_mail_stays_behind_and_is_reported_unless_the_plan_copies_it() {
    let d = Dovecot::shared();
    let src = d.add_user("deleted-src");
    let gone = mail(31).with_flags(Flags::new().with(Flag::Deleted).with(Flag::Seen));
    seed(
        &d,
        &src,
        &vec![("INBOX".into(), vec![mail(30), gone.clone(), mail(32)])],
    )
    .await;
    for (setting, copied) in [("", 2), ("settings: { deleted_messages: copy }\n", 3)] {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().to_path_buf();
        let yaml = format!(
            "{}{setting}",
            plan(
                &base,
                "imap",
                &fields(&d, d.imaps_port),
                &src,
                "{ kind: maildir, path: out }",
            )
        );
        let fx = fixture_in(dir, base.clone(), &yaml);
        let store = open_store(&fx, "state.db");
        let report = apply(&fx, Arc::clone(&store), CancellationToken::new()).await;
        assert_eq!(report.outcome, WalkOutcome::Succeeded, "{report:#?}");
        let counts = done(&report, "copy.alice.old");
        let have = maildir_contents(&base.join("out/alice@example.test"));
        let stored: Vec<_> = have.values().flatten().collect();
        assert_eq!(stored.len(), copied, "{setting}");
        assert_eq!(done(&report, "verify.alice").items as usize, copied);
        let left = cutover::runners::skipped::from_checkpoints(
            &store.checkpoints("copy.alice.old").unwrap(),
        );
        if copied == 2 {
            assert_eq!(
                (counts.items, counts.present, counts.left_behind),
                (2, 0, 1)
            );
            assert_eq!(left.len(), 1);
            assert_eq!(left[0].subject.as_deref(), Some("fidelity 31"));
            assert_eq!(left[0].reason, cutover::runners::skipped::FLAGGED_DELETED);
        } else {
            assert_eq!((counts.items, counts.left_behind), (3, 0));
            assert!(left.is_empty());
            assert!(
                stored
                    .iter()
                    .any(|(b, f, _)| *b == gone.bytes() && f.contains(Flag::Deleted)),
                "copied with its flag"
            );
        }
        // Run again with the state lost: what is there is counted as there, what stays
        // behind as left behind — three different numbers.
        let lost = apply(&fx, open_store(&fx, "lost.db"), CancellationToken::new()).await;
        let counts = done(&lost, "copy.alice.old");
        assert_eq!(
            (counts.items, counts.present, counts.left_behind),
            (0, copied as u64, 3 - copied as u64)
        );
    }
}

/// A host allowing two connections per user, and a plan allowing four: the lanes the server
/// refuses (`[LIMIT]`) leave their folders to the others and the copy goes on, every step
/// in its first attempt (`retries: 1`); the report says so and names the setting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_user_connection_limit_slows_the_copy_without_failing_it() {
    let d = Dovecot::start_configured("protocol imap {\n  mail_max_userip_connections = 2\n}\n");
    let mut users = Vec::new();
    for u in 0..3 {
        let src = d.add_user("limited");
        let folders: Vec<(String, Vec<RawMessage>)> = (0..6)
            .map(|f| {
                let name = if f == 0 {
                    "INBOX".to_string()
                } else {
                    format!("Folder{f}")
                };
                (
                    name,
                    (0..15)
                        .map(|i| mail(1000 * (u + 1) + 100 * f + i))
                        .collect(),
                )
            })
            .collect();
        seed(&d, &src, &folders).await;
        users.push(src);
    }
    // What the server says to one connection too many.
    let ep = Endpoint::new("127.0.0.1", d.imaps_port, Tls::Implicit).with_ca_file(d.ca_file());
    let held = [
        cutover::connectors::imap::ImapClient::connect(&ep, &creds(&users[0]))
            .await
            .unwrap(),
        cutover::connectors::imap::ImapClient::connect(&ep, &creds(&users[0]))
            .await
            .unwrap(),
    ];
    let refused = cutover::connectors::imap::ImapClient::connect(&ep, &creds(&users[0]))
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(
        matches!(refused, NetError::Throttled { .. }),
        "{refused}\n{}",
        d.logs()
    );
    drop(held);

    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().to_path_buf();
    let mut yaml = format!(
        "version: 1\nname: limited\ndomain: example.test\ntarget: {{ kind: maildir, path: out }}\nsources:\n  old: {{ kind: imap, max_connections_per_login: 4, {} }}\nsettings: {{ parallelism: 3, retries: 1 }}\nusers:\n",
        fields(&d, d.imaps_port)
    );
    for (i, u) in users.iter().enumerate() {
        std::fs::write(base.join(format!("u{i}.pw")), &u.password).unwrap();
        yaml.push_str(&format!(
            "  - email: u{i}@example.test\n    migrate:\n      - {{ from: old, login: {}, password: {{ file: u{i}.pw }} }}\n",
            u.login
        ));
    }
    std::fs::write(base.join("plan.yaml"), &yaml).unwrap();
    let fx = fixture_in(dir, base.clone(), &yaml);
    let store = open_store(&fx, "state.db");
    let report = apply(&fx, Arc::clone(&store), CancellationToken::new()).await;
    assert_eq!(report.outcome, WalkOutcome::Succeeded, "{report:#?}");
    let mut limited = 0;
    for i in 0..users.len() {
        let id = format!("copy.u{i}.old");
        assert_eq!(done(&report, &id).items, 90);
        let rec = store.step(&id).unwrap().unwrap();
        assert_eq!(rec.attempts, 1, "{id}: no retry spent");
        let note = cutover::runners::throttled::from_checkpoints(&store.checkpoints(&id).unwrap());
        if let Some(note) = note {
            limited += 1;
            assert!(note.advice().contains("max_connections_per_login"));
            assert!(note.last.contains("[LIMIT]"), "{}", note.last);
        }
        let stored: usize = maildir_contents(&base.join(format!("out/u{i}@example.test")))
            .values()
            .map(Vec::len)
            .sum();
        assert_eq!(stored, 90);
    }
    assert!(limited > 0, "the server refused some connections");
    // The report says it.
    let out = support::remote::report_markdown(&base, &report, store.as_ref());
    assert!(out.contains("max_connections_per_login"), "{out}");
}
