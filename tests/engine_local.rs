//! The engine end to end on local mail: mbox and maildir sources into a maildir target, with
//! a real SQLite state file and real files in a temp dir.
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::CancelAfter;
use cutover::connectors::mail::identity::Identity;
use cutover::connectors::mail::{corpus, Flag, Flags, Maildir, MboxReader, MboxVariant};
use cutover::engine::{
    self, ApplyOptions, CancellationToken, JsonlEventLog, PlannedChange, StepResult, VecSink,
    WalkOutcome,
};
use cutover::graph::{Selection, StepGraph};
use cutover::plan::{self, Options, Plan};
use cutover::state::{SqliteStore, StateStore};

const PLAN: &str = r#"
version: 1
name: local-test
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
  - email: bob@example.test
    migrate:
      - from: old
        file: mail/bob
        folders: { exclude: ["Kunden/**", "Drafts"], map: { "Archive": "Old Archive" } }
"#;

struct Fixture {
    _dir: tempfile::TempDir,
    base: std::path::PathBuf,
    plan: Plan,
    graph: StepGraph,
}

fn fixture(messages: usize) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = dir.path().to_path_buf();
    std::fs::create_dir_all(base.join("mail")).expect("mkdir");
    corpus::write_mbox(
        &corpus::CorpusSpec::new(11, messages),
        base.join("mail/alice.mbox"),
    )
    .expect("mbox");
    corpus::write_maildir(
        &corpus::CorpusSpec::new(12, messages),
        base.join("mail/bob"),
    )
    .expect("maildir");
    let loaded = plan::load_str(PLAN.to_string(), "local.yaml", &base, Options::default());
    assert_eq!(
        loaded.report.errors(),
        0,
        "{:#?}",
        loaded.report.diagnostics
    );
    let (plan, graph) = (loaded.plan.expect("plan"), loaded.graph.expect("graph"));
    Fixture {
        _dir: dir,
        base,
        plan,
        graph,
    }
}

fn all(graph: &StepGraph) -> BTreeSet<String> {
    graph.select(&Selection::default())
}

fn fast() -> ApplyOptions {
    ApplyOptions {
        backoff_base: Duration::from_millis(1),
        backoff_max: Duration::from_millis(5),
        ..ApplyOptions::default()
    }
}

async fn run(
    fx: &Fixture,
    store: Arc<dyn StateStore>,
    cancel: CancellationToken,
) -> (engine::WalkReport, VecSink) {
    let runners = cutover::runners::runners_for(&fx.plan, &fx.graph, &fx.base);
    let mut sink = VecSink::default();
    let report = engine::apply(
        &fx.plan,
        &fx.graph,
        &all(&fx.graph),
        store,
        &runners,
        &fast(),
        &mut sink,
        cancel,
    )
    .await;
    (report, sink)
}

/// (folder, key) → every stored copy's (bytes, flags).
type Contents = BTreeMap<(String, Identity), Vec<(Vec<u8>, Flags)>>;

/// (folder, key) → (bytes, flags) of every message in a maildir.
fn maildir_contents(root: &Path) -> Contents {
    let mut out: Contents = BTreeMap::new();
    let md = Maildir::open(root).expect("target maildir");
    for folder in md.folders().expect("folders") {
        for entry in md.entries(&folder).expect("entries") {
            let m = entry.read().expect("read");
            out.entry((folder.name.to_string(), m.identity()))
                .or_default()
                .push((m.bytes().to_vec(), m.flags.clone()));
        }
    }
    out
}

/// The mbox's messages as the plan migrates them: those flagged `\Deleted` stay behind.
fn mbox_contents(path: &Path) -> BTreeMap<(String, Identity), (Vec<u8>, Flags)> {
    let mut out = BTreeMap::new();
    for m in MboxReader::open(path, MboxVariant::Mboxrd).expect("mbox") {
        let m = m.expect("message").message;
        if m.flags.contains(Flag::Deleted) {
            continue;
        }
        out.insert(
            ("INBOX".to_string(), m.identity()),
            (m.bytes().to_vec(), m.flags.clone()),
        );
    }
    out
}

fn assert_exactly_once(
    expected: &BTreeMap<(String, Identity), (Vec<u8>, Flags)>,
    actual: &Contents,
) {
    assert_eq!(
        expected.len(),
        actual.len(),
        "distinct messages at the target"
    );
    for (key, (bytes, flags)) in expected {
        let copies = actual
            .get(key)
            .unwrap_or_else(|| panic!("missing at target: {key:?}"));
        assert_eq!(copies.len(), 1, "{key:?} stored {} times", copies.len());
        assert!(copies[0].0 == *bytes, "{key:?}: bytes differ");
        assert_eq!(copies[0].1, *flags, "{key:?}: flags differ");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_copies_everything_byte_identical_then_nothing() {
    let fx = fixture(60);
    let state = fx.base.join(".cutover/local-test.db");
    let store: Arc<dyn StateStore> = Arc::new(SqliteStore::open(&state).expect("store"));
    let runners = cutover::runners::runners_for(&fx.plan, &fx.graph, &fx.base);

    let planned: BTreeMap<String, PlannedChange> = engine::observe(
        &fx.plan,
        &fx.graph,
        &all(&fx.graph),
        &BTreeSet::new(),
        store.as_ref(),
        &runners,
    )
    .into_iter()
    .collect();
    let source = mbox_contents(&fx.base.join("mail/alice.mbox"));
    match &planned["copy.alice.export"] {
        PlannedChange::Create { items, present, .. } => {
            assert_eq!(*items as usize, source.len());
            assert_eq!(*present, 0);
        }
        other => panic!("copy.alice.export planned as {other:?}"),
    }
    match &planned["copy.bob.old"] {
        PlannedChange::Create {
            items,
            folders,
            excluded,
            ..
        } => {
            assert_eq!(folders.iter().map(|f| f.items).sum::<u64>(), *items);
            assert_eq!(folders[0].source, "INBOX", "{folders:#?}");
            let target = |source: &str| {
                folders
                    .iter()
                    .find(|f| f.source == source)
                    .map(|f| f.target.as_str())
            };
            assert_eq!(target("Archive"), Some("Old Archive"));
            assert_eq!(target("Archive/2023"), Some("Archive/2023"));
            assert_eq!(target("Drafts"), None);
            let left: Vec<&str> = excluded.iter().map(|e| e.source.as_str()).collect();
            assert_eq!(left, ["Drafts", "Kunden/Müller & Söhne", "Kunden/日本"]);
            assert!(excluded.iter().all(|e| e.messages.is_some()));
        }
        other => panic!("copy.bob.old planned as {other:?}"),
    }

    let mut log =
        JsonlEventLog::open(JsonlEventLog::default_path(&state, "local-test")).expect("log");
    let report = engine::apply(
        &fx.plan,
        &fx.graph,
        &all(&fx.graph),
        Arc::clone(&store),
        &runners,
        &fast(),
        &mut log,
        CancellationToken::new(),
    )
    .await;
    assert_eq!(report.outcome, WalkOutcome::Succeeded, "{report:#?}");
    assert!(log.error().is_none());
    let lines = std::fs::read_to_string(log.path()).expect("event log");
    assert!(lines.lines().count() > 5);
    for line in lines.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("JSON line");
        assert!(v["at"].is_string() && v["event"].is_string(), "{line}");
    }

    // alice: mbox → INBOX, byte-identical with flags, once each.
    let alice = maildir_contents(&fx.base.join("out/alice@example.test"));
    assert_exactly_once(&source, &alice);
    let StepResult::Done { counts } = &report.steps["copy.alice.export"] else {
        panic!("{report:#?}")
    };
    let in_mbox = MboxReader::open(fx.base.join("mail/alice.mbox"), MboxVariant::Mboxrd)
        .expect("mbox")
        .count();
    assert_eq!(
        (counts.items + counts.present + counts.left_behind) as usize,
        in_mbox,
        "every source message accounted for"
    );
    assert_eq!(
        counts.items as usize,
        source.len(),
        "each distinct message written once"
    );

    // bob: maildir → maildir with folder rules.
    let bob_src = maildir_contents(&fx.base.join("mail/bob"));
    let bob = maildir_contents(&fx.base.join("out/bob@example.test"));
    let mut expected = BTreeMap::new();
    for ((folder, key), copies) in &bob_src {
        if folder.starts_with("Kunden/")
            || folder == "Drafts"
            || copies[0].1.contains(Flag::Deleted)
        {
            continue;
        }
        let to = if folder == "Archive" {
            "Old Archive".to_string()
        } else {
            folder.clone()
        };
        expected.insert((to, *key), copies[0].clone());
    }
    assert!(
        bob_src.keys().any(|(f, _)| f.starts_with("Kunden/")),
        "the corpus exercises exclude"
    );
    assert!(!bob
        .keys()
        .any(|(f, _)| f.starts_with("Kunden") || f == "Drafts" || f == "Archive"));
    assert!(
        bob.keys().any(|(f, _)| f == "Archive/2023"),
        "only the exact folder is renamed"
    );
    assert!(
        bob_src.keys().any(|(f, _)| f == "Archive"),
        "the corpus exercises map"
    );
    assert_exactly_once(&expected, &bob);
    assert!(matches!(
        report.steps["verify.bob"],
        StepResult::Done { .. }
    ));

    // Second apply: nothing to do.
    let (again, _) = run(&fx, Arc::clone(&store), CancellationToken::new()).await;
    assert_eq!(again.outcome, WalkOutcome::Succeeded);
    for (id, result) in &again.steps {
        assert_eq!(*result, StepResult::Unchanged, "{id}");
    }
    let planned = engine::observe(
        &fx.plan,
        &fx.graph,
        &all(&fx.graph),
        &BTreeSet::new(),
        store.as_ref(),
        &runners,
    );
    assert!(
        planned.iter().all(|(_, c)| *c == PlannedChange::Unchanged),
        "{planned:#?}"
    );
    assert_eq!(
        maildir_contents(&fx.base.join("out/alice@example.test")),
        alice
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_mid_copy_then_resumed_copies_exactly_once() {
    // Enough mail for several batches: the copy commits once per batch.
    let fx = fixture(4 * cutover::runners::BATCH_MESSAGES);
    let state = fx.base.join(".cutover/local-test.db");
    let cancel = CancellationToken::new();
    let store = Arc::new(CancelAfter::open(
        &state,
        "copy.alice.export",
        2,
        cancel.clone(),
    ));
    let (first, sink) = run(&fx, store.clone(), cancel).await;
    assert_eq!(first.outcome, WalkOutcome::Interrupted, "{first:#?}");
    assert_eq!(first.steps["copy.alice.export"], StepResult::Interrupted);
    assert!(matches!(
        &first.steps["verify.alice"],
        StepResult::Skipped { .. }
    ));
    let record = store
        .step("copy.alice.export")
        .expect("state")
        .expect("record");
    let stored: usize = maildir_contents(&fx.base.join("out/alice@example.test"))
        .values()
        .map(Vec::len)
        .sum();
    assert!(stored > 0 && stored < 4 * cutover::runners::BATCH_MESSAGES);
    assert_eq!(
        (record.counts.items + record.counts.present) as usize,
        stored,
        "committed exactly the acknowledged messages"
    );
    assert!(sink
        .0
        .iter()
        .any(|e| matches!(e.kind, engine::EventKind::StepInterrupted)));

    // Resume with a fresh token: the copy continues after its checkpoint.
    let store: Arc<dyn StateStore> = Arc::new(SqliteStore::open(&state).expect("reopen"));
    let (second, _) = run(&fx, Arc::clone(&store), CancellationToken::new()).await;
    assert_eq!(second.outcome, WalkOutcome::Succeeded, "{second:#?}");
    let source = mbox_contents(&fx.base.join("mail/alice.mbox"));
    assert_exactly_once(
        &source,
        &maildir_contents(&fx.base.join("out/alice@example.test")),
    );
    let record = store
        .step("copy.alice.export")
        .expect("state")
        .expect("record");
    assert_eq!(
        record.counts.items as usize,
        source.len(),
        "items counted once across both runs"
    );
}

#[tokio::test]
async fn changed_config_clears_state_and_reruns() {
    let mut fx = fixture(10);
    let state = fx.base.join(".cutover/local-test.db");
    let store: Arc<dyn StateStore> = Arc::new(SqliteStore::open(&state).expect("store"));
    let (first, _) = run(&fx, Arc::clone(&store), CancellationToken::new()).await;
    assert_eq!(first.outcome, WalkOutcome::Succeeded, "{first:#?}");

    fx.plan.users[0].migrate[0].into = Some("Imported".into());
    let (second, _) = run(&fx, Arc::clone(&store), CancellationToken::new()).await;
    assert_eq!(second.outcome, WalkOutcome::Succeeded, "{second:#?}");
    assert!(matches!(
        second.steps["copy.alice.export"],
        StepResult::Done { .. }
    ));
    assert_eq!(second.steps["copy.bob.old"], StepResult::Unchanged);
    let alice = maildir_contents(&fx.base.join("out/alice@example.test"));
    let source = mbox_contents(&fx.base.join("mail/alice.mbox"));
    let imported = alice.keys().filter(|(f, _)| f == "Imported").count();
    assert_eq!(imported, source.len());
}

#[tokio::test]
async fn unsupported_steps_fail_clearly_and_independent_steps_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = dir.path();
    std::fs::create_dir_all(base.join("mail")).expect("mkdir");
    corpus::write_mbox(&corpus::CorpusSpec::new(3, 5), base.join("mail/a.mbox")).expect("mbox");
    let yaml = r#"
version: 1
name: mixed
domain: example.test
target: { kind: maildir, path: out }
sources:
  export: { kind: mbox }
  legacy: { kind: imap, host: imap.example.test }
users:
  - email: alice@example.test
    migrate:
      - from: export
        file: mail/a.mbox
  - email: bob@example.test
    migrate:
      - from: legacy
        login: bob
        password: { env: BOB_PASSWORD }
"#;
    let loaded = plan::load_str(yaml.to_string(), "mixed.yaml", base, Options::default());
    assert_eq!(
        loaded.report.errors(),
        0,
        "{:#?}",
        loaded.report.diagnostics
    );
    let (plan, graph) = (loaded.plan.expect("plan"), loaded.graph.expect("graph"));
    let store: Arc<dyn StateStore> =
        Arc::new(SqliteStore::open(base.join(".cutover/mixed.db")).expect("store"));
    let runners = cutover::runners::runners_for(&plan, &graph, base);
    let mut sink = VecSink::default();
    let selected = graph.select(&Selection::default());
    let report = engine::apply(
        &plan,
        &graph,
        &selected,
        store,
        &runners,
        &fast(),
        &mut sink,
        CancellationToken::new(),
    )
    .await;
    assert_eq!(report.outcome, WalkOutcome::Failed);
    let StepResult::Failed { error } = &report.steps["copy.bob.legacy"] else {
        panic!("{report:#?}")
    };
    // The account's password is resolved first: its absence is what the consultant must fix.
    assert!(
        error.contains("environment variable BOB_PASSWORD is not set"),
        "{error}"
    );
    assert!(matches!(
        report.steps["verify.bob"],
        StepResult::Skipped { .. }
    ));
    assert!(matches!(
        report.steps["verify.alice"],
        StepResult::Done { .. }
    ));
}

/// Mail over `max_message_size_mb` in a local export is left behind and recorded for the
/// report with its folder, size, subject and date (from the mbox `From ` line).
#[tokio::test]
async fn oversized_local_mail_is_left_behind_and_recorded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = dir.path().to_path_buf();
    let mut mbox = b"From a@example.test Tue Nov 14 22:13:20 2023\nSubject: Scans\nMessage-ID: <big@example.test>\n\n".to_vec();
    mbox.extend(std::iter::repeat_n(b'x', 1_100_000));
    mbox.extend_from_slice(b"\n\nFrom b@example.test Wed Nov 15 08:00:00 2023\nSubject: small\nMessage-ID: <small@example.test>\n\nhello\n\n");
    std::fs::write(base.join("export.mbox"), &mbox).expect("mbox");
    let yaml = "version: 1\nname: big\ndomain: example.test\ntarget: { kind: maildir, path: out }\nsources:\n  export: { kind: mbox }\nsettings: { max_message_size_mb: 1 }\nusers:\n  - email: alice@example.test\n    migrate:\n      - { from: export, file: export.mbox }\n";
    let loaded = plan::load_str(yaml.to_string(), "big.yaml", &base, Options::default());
    assert_eq!(
        loaded.report.errors(),
        0,
        "{:#?}",
        loaded.report.diagnostics
    );
    let fx = Fixture {
        _dir: dir,
        base,
        plan: loaded.plan.expect("plan"),
        graph: loaded.graph.expect("graph"),
    };
    let store: Arc<dyn StateStore> = Arc::new(SqliteStore::in_memory().expect("store"));
    let (report, _) = run(&fx, Arc::clone(&store), CancellationToken::new()).await;
    assert_eq!(report.outcome, WalkOutcome::Succeeded, "{report:#?}");
    let rec = store.step("copy.alice.export").unwrap().unwrap();
    assert_eq!((rec.counts.items, rec.counts.left_behind), (1, 1));
    let left = cutover::runners::skipped::from_checkpoints(
        &store.checkpoints("copy.alice.export").unwrap(),
    );
    assert_eq!(left.len(), 1);
    // Where it stayed: the export file.
    assert_eq!(left[0].folder, "export.mbox");
    assert_eq!(left[0].subject.as_deref(), Some("Scans"));
    assert_eq!(left[0].date.as_deref(), Some("2023-11-14T22:13:20Z"));
    assert!(left[0].size > 1_100_000);
    assert_eq!(left[0].reason, cutover::runners::skipped::OVER_LIMIT);
}
