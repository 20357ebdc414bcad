//! Walker semantics with scripted runners over a real SQLite state: failure isolation,
//! retries, manual gates, fail-fast, bounded parallelism.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cutover::engine::{
    self, ApplyCtx, ApplyOptions, BoxFuture, CancellationToken, EventKind, Outcome, Runners,
    StepError, StepResult, StepRunner, VecSink, WalkOutcome,
};
use cutover::graph::{Selection, StepGraph};
use cutover::plan::{self, Options, Plan};
use cutover::state::{Counts, SqliteStore, StateStore, StepStatus};

const PLAN: &str = r#"
version: 1
name: walk-test
domain: example.test
target: { kind: maildir, path: out }
sources:
  export: { kind: mbox }
users:
  - email: alice@example.test
    migrate: [{ from: export, file: a.mbox }]
  - email: bob@example.test
    migrate: [{ from: export, file: b.mbox }]
  - email: carol@example.test
    migrate: [{ from: export, file: c.mbox }]
manual:
  sign-off:
    instructions: "Ask the client (token=hunter2) to confirm"
    before: ["verify.carol"]
"#;

/// Scripted behaviour: `fail_first` transient errors, then `then`.
struct Script {
    hash: String,
    fail_first: u32,
    transient: bool,
    calls: AtomicU32,
    running: Arc<AtomicUsize>,
    max_running: Arc<AtomicUsize>,
}

impl Script {
    fn ok() -> Script {
        Script::failing(0, true)
    }
    fn failing(fail_first: u32, transient: bool) -> Script {
        Script {
            hash: "aa".into(),
            fail_first,
            transient,
            calls: AtomicU32::new(0),
            running: Arc::new(AtomicUsize::new(0)),
            max_running: Arc::new(AtomicUsize::new(0)),
        }
    }
}

impl StepRunner for Script {
    fn config_hash(&self) -> String {
        self.hash.clone()
    }

    fn apply<'a>(&'a self, ctx: &'a mut ApplyCtx) -> BoxFuture<'a, Result<Outcome, StepError>> {
        Box::pin(async move {
            let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_running.fetch_max(now, Ordering::SeqCst);
            // Give other steps a chance to start while this one "works".
            for _ in 0..20 {
                tokio::task::yield_now().await;
            }
            self.running.fetch_sub(1, Ordering::SeqCst);
            let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            if call <= self.fail_first {
                let msg = format!("server said no (password=secret{call})");
                return Err(if self.transient {
                    StepError::transient(msg)
                } else {
                    StepError::permanent(msg)
                });
            }
            ctx.commit(
                Counts {
                    items: 1,
                    bytes: 10,
                    ..Counts::default()
                },
                &[("k", b"v")],
            )?;
            Ok(Outcome::Complete)
        })
    }
}

struct Fx {
    _dir: tempfile::TempDir,
    plan: Plan,
    graph: StepGraph,
    store: Arc<dyn StateStore>,
}

fn fixture() -> Fx {
    let dir = tempfile::tempdir().expect("tempdir");
    for f in ["a.mbox", "b.mbox", "c.mbox"] {
        std::fs::write(dir.path().join(f), b"").expect("write");
    }
    let loaded = plan::load_str(
        PLAN.to_string(),
        "walk.yaml",
        dir.path(),
        Options::default(),
    );
    assert_eq!(
        loaded.report.errors(),
        0,
        "{:#?}",
        loaded.report.diagnostics
    );
    let store: Arc<dyn StateStore> =
        Arc::new(SqliteStore::open(dir.path().join(".cutover/walk.db")).expect("store"));
    Fx {
        plan: loaded.plan.expect("plan"),
        graph: loaded.graph.expect("graph"),
        store,
        _dir: dir,
    }
}

fn make_runners(graph: &StepGraph, special: Vec<(&str, Script)>) -> (Runners, Arc<AtomicUsize>) {
    let max = Arc::new(AtomicUsize::new(0));
    let running = Arc::new(AtomicUsize::new(0));
    let mut special: std::collections::HashMap<&str, Script> = special.into_iter().collect();
    let mut out = Runners::new();
    for step in graph.steps() {
        let mut s = special.remove(step.id.as_str()).unwrap_or_else(Script::ok);
        s.running = Arc::clone(&running);
        s.max_running = Arc::clone(&max);
        out.insert(step.id.clone(), Arc::new(s));
    }
    (out, max)
}

fn options() -> ApplyOptions {
    ApplyOptions {
        backoff_base: Duration::from_millis(1),
        backoff_max: Duration::from_millis(4),
        retries: Some(3),
        ..ApplyOptions::default()
    }
}

async fn walk(fx: &Fx, runners: &Runners, options: &ApplyOptions) -> (engine::WalkReport, VecSink) {
    let selected: BTreeSet<String> = fx.graph.select(&Selection::default());
    let mut sink = VecSink::default();
    let report = engine::apply(
        &fx.plan,
        &fx.graph,
        &selected,
        Arc::clone(&fx.store),
        runners,
        options,
        &mut sink,
        CancellationToken::new(),
    )
    .await;
    (report, sink)
}

fn events_for<'a>(sink: &'a VecSink, id: &str) -> Vec<&'a EventKind> {
    sink.0
        .iter()
        .filter(|e| e.step.as_deref() == Some(id))
        .map(|e| &e.kind)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_step_stops_only_its_dependents_and_gates_wait() {
    let fx = fixture();
    let (runners, _) = make_runners(
        &fx.graph,
        vec![("copy.alice.export", Script::failing(99, false))],
    );
    let (report, sink) = walk(&fx, &runners, &options()).await;
    assert_eq!(report.outcome, WalkOutcome::Failed);

    let StepResult::Failed { error } = &report.steps["copy.alice.export"] else {
        panic!("{report:#?}")
    };
    assert!(
        error.contains("server said no") && !error.contains("secret1"),
        "redacted: {error}"
    );
    let StepResult::Skipped { reason } = &report.steps["verify.alice"] else {
        panic!("{report:#?}")
    };
    assert!(
        reason.contains("upstream failed") && reason.contains("copy.alice.export"),
        "{reason}"
    );
    assert!(
        !reason.contains("server said no"),
        "the error is not repeated: {reason}"
    );
    let skipped = events_for(&sink, "verify.alice");
    assert_eq!(skipped.len(), 1, "reported once: {skipped:?}");
    assert!(matches!(skipped[0], EventKind::StepSkipped { .. }));

    // Independent branches ran; a permanent error is not retried.
    assert!(matches!(
        report.steps["verify.bob"],
        StepResult::Done { .. }
    ));
    assert!(matches!(
        report.steps["copy.carol.export"],
        StepResult::Done { .. }
    ));
    assert_eq!(
        fx.store
            .step("copy.alice.export")
            .unwrap()
            .unwrap()
            .attempts,
        1
    );
    assert_eq!(
        fx.store.step("copy.alice.export").unwrap().unwrap().status,
        StepStatus::Failed
    );

    // The gate waits; its dependent does not run; the instructions are shown, redacted.
    let StepResult::Waiting { instructions } = &report.steps["manual.sign-off"] else {
        panic!("{report:#?}")
    };
    assert!(
        instructions.contains("Ask the client") && !instructions.contains("hunter2"),
        "{instructions}"
    );
    assert!(
        matches!(&report.steps["verify.carol"], StepResult::Skipped { reason } if reason.contains("approval"))
    );
    assert_eq!(
        fx.store.step("manual.sign-off").unwrap().unwrap().status,
        StepStatus::Waiting
    );

    // Approve, fix alice: the next walk runs only what is left.
    fx.store
        .record_approval("manual.sign-off", "tester")
        .expect("approve");
    let (runners, _) = make_runners(&fx.graph, vec![]);
    let (again, _) = walk(&fx, &runners, &options()).await;
    assert_eq!(again.outcome, WalkOutcome::Succeeded, "{again:#?}");
    assert_eq!(again.steps["manual.sign-off"], StepResult::Approved);
    assert_eq!(again.steps["verify.bob"], StepResult::Unchanged);
    assert!(matches!(
        again.steps["copy.alice.export"],
        StepResult::Done { .. }
    ));
    assert!(matches!(
        again.steps["verify.carol"],
        StepResult::Done { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_errors_are_retried_with_backoff_until_the_budget_is_spent() {
    let fx = fixture();
    let (runners, _) = make_runners(
        &fx.graph,
        vec![
            ("copy.alice.export", Script::failing(2, true)),
            ("copy.bob.export", Script::failing(99, true)),
        ],
    );
    let (report, sink) = walk(&fx, &runners, &options()).await;

    assert!(
        matches!(report.steps["copy.alice.export"], StepResult::Done { .. }),
        "{report:#?}"
    );
    assert_eq!(
        fx.store
            .step("copy.alice.export")
            .unwrap()
            .unwrap()
            .attempts,
        3
    );
    let retries = events_for(&sink, "copy.alice.export")
        .into_iter()
        .filter(|k| matches!(k, EventKind::StepRetry { .. }))
        .count();
    assert_eq!(retries, 2);

    let StepResult::Failed { error } = &report.steps["copy.bob.export"] else {
        panic!("{report:#?}")
    };
    assert!(error.contains("gave up after 3 attempts"), "{error}");
    assert_eq!(
        fx.store.step("copy.bob.export").unwrap().unwrap().attempts,
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallelism_is_bounded_and_fail_fast_stops_scheduling() {
    let fx = fixture();
    let (runners_, max) = make_runners(&fx.graph, vec![]);
    let opts = ApplyOptions {
        parallelism: Some(2),
        ..options()
    };
    let (report, _) = walk(&fx, &runners_, &opts).await;
    assert!(
        max.load(Ordering::SeqCst) <= 2,
        "at most 2 at once, saw {}",
        max.load(Ordering::SeqCst)
    );
    assert!(
        report
            .steps
            .values()
            .filter(|r| matches!(r, StepResult::Done { .. }))
            .count()
            >= 6
    );

    let fx = fixture();
    let (runners_, _) = make_runners(&fx.graph, vec![("user.alice", Script::failing(99, false))]);
    let opts = ApplyOptions {
        parallelism: Some(1),
        fail_fast: true,
        ..options()
    };
    let (report, _) = walk(&fx, &runners_, &opts).await;
    assert_eq!(report.outcome, WalkOutcome::Failed);
    let not_started = report
        .steps
        .values()
        .filter(|r| matches!(r, StepResult::Skipped { reason } if reason.contains("fail-fast")))
        .count();
    assert!(not_started > 0, "{report:#?}");
}

#[tokio::test]
async fn cancelled_before_start_runs_nothing_and_reports_interrupted() {
    let fx = fixture();
    let (runners, _) = make_runners(&fx.graph, vec![]);
    let cancel = CancellationToken::new();
    cancel.cancel();
    let selected = fx.graph.select(&Selection::default());
    let mut sink = VecSink::default();
    let report = engine::apply(
        &fx.plan,
        &fx.graph,
        &selected,
        Arc::clone(&fx.store),
        &runners,
        &options(),
        &mut sink,
        cancel,
    )
    .await;
    assert_eq!(report.outcome, WalkOutcome::Interrupted);
    assert!(
        report
            .steps
            .values()
            .all(|r| matches!(r, StepResult::Skipped { .. })),
        "{report:#?}"
    );
    assert!(fx.store.steps().expect("steps").is_empty());
}

/// Fails transiently with a different message each attempt: a dropped connection first,
/// then what reconnecting meets.
struct EchoingFailure {
    calls: AtomicU32,
}

impl StepRunner for EchoingFailure {
    fn config_hash(&self) -> String {
        "ab".into()
    }

    fn apply<'a>(&'a self, _ctx: &'a mut ApplyCtx) -> BoxFuture<'a, Result<Outcome, StepError>> {
        Box::pin(async move {
            let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            Err(StepError::transient(if call == 1 {
                "imap.example: read: connection reset by peer".to_string()
            } else {
                format!("imap.example: login rejected: too many sessions ({call})")
            }))
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_that_gives_up_names_what_failed_first() {
    let fx = fixture();
    let (mut runners, _) = make_runners(&fx.graph, vec![]);
    runners.insert(
        "copy.alice.export".into(),
        Arc::new(EchoingFailure {
            calls: AtomicU32::new(0),
        }),
    );
    let (report, _) = walk(&fx, &runners, &options()).await;
    let StepResult::Failed { error } = &report.steps["copy.alice.export"] else {
        panic!("{report:#?}")
    };
    assert_eq!(
        error,
        "imap.example: login rejected: too many sessions (3) (gave up after 3 attempts; the \
         first failed with: imap.example: read: connection reset by peer)"
    );
}
