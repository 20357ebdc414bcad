//! `--replace` on a done copy step is the catch-up pass before a cutover: it copies the mail
//! that arrived since from the step's checkpoints, and carries over the flag changes the user
//! made in the old mailbox meanwhile (read, flagged, answered) — with CONDSTORE's
//! CHANGEDSINCE where the server offers it, else by comparing every message's flags. Against
//! a real Dovecot, into a Maildir and into an IMAP target, with and without CONDSTORE (a
//! capability filter hides it).

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;

use cutover::connectors::mail::{Flag, Flags, RawMessage};
use cutover::engine::{self, PlannedChange, StepResult, WalkOutcome, CATCH_UP};
use support::dovecot::Dovecot;
use support::fault_proxy::{FaultProxy, Faults};
use support::mailbox::{imap_contents, login, Contents};
use support::remote::{
    all_steps, apply_replacing, done, fixture_in, maildir_contents, open_store, seed, server,
};

fn mail(n: usize) -> RawMessage {
    RawMessage::new(
        format!(
            "Message-ID: <c{n}@catchup.test>\r\nDate: Mon, 1 Jan 2024 10:00:{:02} +0000\r\nSubject: catch-up {n}\r\n\r\nbody {n}\r\n",
            n % 60
        )
        .into_bytes(),
    )
}

/// The flags of the target's message `n`.
fn flags_of(contents: &Contents, n: usize) -> Flags {
    let wanted = mail(n).identity();
    let copies = contents
        .iter()
        .find(|((_, identity), _)| *identity == wanted)
        .map(|(_, copies)| copies)
        .unwrap_or_else(|| panic!("message {n} not at the target"));
    assert_eq!(copies.len(), 1, "message {n} stored once");
    copies[0].1.clone()
}

async fn catch_up(into_imap: bool, condstore: bool) {
    let d = Dovecot::shared();
    let src = d.add_user("catchup-src");
    let dst = d.add_user("catchup-dst");
    let first: Vec<RawMessage> = (0..10)
        .map(|n| {
            let flags = if n == 2 {
                Flags::new().with(Flag::Flagged)
            } else {
                Flags::new()
            };
            mail(n).with_flags(flags)
        })
        .collect();
    seed(&d, &src, &vec![("INBOX".into(), first)]).await;
    // Without CONDSTORE: the same server behind a proxy that hides it.
    let proxy = (!condstore).then(|| {
        FaultProxy::start(
            d.imap_port,
            Faults {
                drop_capabilities: vec!["CONDSTORE".into(), "QRESYNC".into()],
                ..Faults::default()
            },
        )
    });
    let source = match &proxy {
        Some(p) => format!(
            "{{ host: 127.0.0.1, port: {}, tls: none, allow_plaintext: true }}",
            p.port
        ),
        None => server(&d, d.imaps_port),
    };
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().to_path_buf();
    std::fs::write(base.join("src.pw"), &src.password).unwrap();
    std::fs::write(base.join("dst.pw"), &dst.password).unwrap();
    let (target, login_line) = if into_imap {
        (
            format!(
                "{{ kind: imap, {} }}",
                server(&d, d.imaps_port)
                    .trim_start_matches("{ ")
                    .trim_end_matches(" }")
            ),
            format!(
                "\n    target_login: {{ login: {}, password: {{ file: dst.pw }} }}",
                dst.login
            ),
        )
    } else {
        ("{ kind: maildir, path: out }".to_string(), String::new())
    };
    let yaml = format!(
        "version: 1\nname: catch-up\ndomain: example.test\ntarget: {target}\nsources:\n  old: {{ kind: imap, {} }}\nusers:\n  - email: alice@example.test{login_line}\n    migrate:\n      - {{ from: old, login: {}, password: {{ file: src.pw }} }}\n",
        source.trim_start_matches("{ ").trim_end_matches(" }"),
        src.login
    );
    let fx = fixture_in(dir, base.clone(), &yaml);
    let read_target = || async {
        if into_imap {
            imap_contents(&d, &dst).await
        } else {
            maildir_contents(&base.join("out/alice@example.test"))
        }
    };
    let store = open_store(&fx, "state.db");
    let report = apply_replacing(&fx, Arc::clone(&store), &[]).await;
    assert_eq!(report.outcome, WalkOutcome::Succeeded, "{report:#?}");
    assert_eq!(done(&report, "copy.alice.old").items, 10);

    // Meanwhile the user kept working in the old mailbox: three new messages, one read,
    // one unflagged, one answered.
    seed(
        &d,
        &src,
        &vec![("INBOX".into(), (10..13).map(mail).collect())],
    )
    .await;
    let mut c = login(&d, &src).await;
    c.select("INBOX").await.unwrap();
    c.uid_store("1", true, &["\\Seen"]).await.unwrap();
    c.uid_store("3", false, &["\\Flagged"]).await.unwrap();
    c.uid_store("4", true, &["\\Answered"]).await.unwrap();
    c.logout().await.unwrap();

    // Without --replace a done copy stays done; with it, it catches up.
    let runners = cutover::runners::runners_for(&fx.plan, &fx.graph, &fx.base);
    let replace: BTreeSet<String> = ["copy.alice.old".to_string()].into();
    let planned: std::collections::BTreeMap<_, _> = engine::observe(
        &fx.plan,
        &fx.graph,
        &all_steps(&fx),
        &replace,
        store.as_ref(),
        &runners,
    )
    .into_iter()
    .collect();
    match &planned["copy.alice.old"] {
        PlannedChange::Change { items, reason, .. } => {
            assert_eq!((*items, reason.as_str()), (3, CATCH_UP));
        }
        other => panic!("{other:?}"),
    }
    // What `cutover plan --replace copy.*` prints.
    if into_imap && condstore {
        std::fs::write(base.join("plan.yaml"), &yaml).unwrap();
        let ws = cutover::ops::Workspace::open(
            &base.join("plan.yaml"),
            Some(&base.join("state.db")),
            cutover::plan::Options::default(),
        )
        .unwrap();
        let selection = cutover::graph::Selection::new(&[], &[])
            .unwrap()
            .replacing(&["copy.*".to_string()])
            .unwrap();
        let view = cutover::ops::plan(&ws, &selection, false).unwrap();
        insta::assert_snapshot!(
            "plan-replace-catch-up",
            cutover::cli::render::plan(&view, ws.graph())
        );
        let none = cutover::graph::Selection::new(&[], &[])
            .unwrap()
            .replacing(&["copy.nobody.*".to_string()])
            .unwrap();
        let err = cutover::ops::plan(&ws, &none, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--replace copy.nobody.*"), "{err}");
    }
    let report = apply_replacing(&fx, Arc::clone(&store), &["copy.alice.old"]).await;
    assert_eq!(report.outcome, WalkOutcome::Succeeded, "{report:#?}");
    assert_eq!(
        done(&report, "copy.alice.old").items,
        13,
        "3 more, none twice"
    );
    let have = read_target().await;
    assert_eq!(have.values().map(Vec::len).sum::<usize>(), 13);
    assert!(
        flags_of(&have, 0).contains(Flag::Seen),
        "read at the source"
    );
    assert!(!flags_of(&have, 2).contains(Flag::Flagged), "unflagged");
    assert!(flags_of(&have, 3).contains(Flag::Answered), "answered");
    assert!(!flags_of(&have, 1).contains(Flag::Seen), "untouched");
    for n in 10..13 {
        flags_of(&have, n);
    }

    // Done again: a plain apply leaves it alone.
    let again = apply_replacing(&fx, Arc::clone(&store), &[]).await;
    assert_eq!(again.steps["copy.alice.old"], StepResult::Unchanged);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_catches_up_into_a_maildir_with_condstore() {
    catch_up(false, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_catches_up_into_an_imap_target_with_condstore() {
    catch_up(true, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_catches_up_without_condstore_by_comparing_flags() {
    catch_up(true, false).await;
}
