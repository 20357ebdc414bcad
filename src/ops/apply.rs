//! `cutover apply`: the walk under the apply lock, with its event log and run record.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::report::{build_report, Report};
use super::{OpsError, Workspace};
use crate::engine::{self, ApplyOptions, CancellationToken, EventSink, WalkReport};
use crate::graph::Selection;
use crate::state::{self, LockGuard, RunOutcome, SqliteStore, StateStore};

/// What `apply` needs besides the plan.
#[derive(Debug, Clone)]
pub struct ApplyRequest {
    pub selection: Selection,
    pub options: ApplyOptions,
}

/// How an apply went, for the closing summary and the exit code.
#[derive(Debug)]
pub struct ApplyOutcome {
    pub report: WalkReport,
    /// The report for the client, to be rendered and written ([`super::report::write`]).
    pub client_report: Report,
}

/// The apply lock of one `cutover apply`, taken before anything talks to a server (the
/// preview signs in everywhere, which takes seconds: a second apply must learn at once that
/// it cannot run). Cheap to clone: a Ctrl-C handler keeps a clone to [`abort`](Self::abort)
/// with.
#[derive(Clone)]
pub struct ApplyLock {
    store: Arc<SqliteStore>,
    run_id: String,
    guard: Arc<Mutex<Option<LockGuard>>>,
    /// Set when the lock of a dead apply on this host was taken over: `pid 123 on host`.
    pub took_over_from: Option<String>,
}

impl std::fmt::Debug for ApplyLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApplyLock")
            .field("run_id", &self.run_id)
            .finish_non_exhaustive()
    }
}

impl ApplyLock {
    /// Records how the run ended and releases the lock. Later calls (and
    /// [`abort`](Self::abort) after this) do nothing.
    pub fn finish(&self, outcome: RunOutcome) -> Result<(), OpsError> {
        let guard = self
            .guard
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let Some(guard) = guard else {
            return Ok(());
        };
        self.store.finish_run(&self.run_id, outcome)?;
        guard.release()?;
        Ok(())
    }

    /// For a Ctrl-C handler about to exit the process: records the run as interrupted and
    /// releases the lock, errors ignored (the next apply reports a lock left behind). Waits
    /// for a state commit in flight on another thread (the store's one connection), so work
    /// the target acknowledged and a step is committing is recorded before the exit.
    pub fn abort(&self) {
        let _ = self.finish(RunOutcome::Interrupted);
    }
}

/// Takes the apply lock (waiting up to `timeout` for another apply), taking over the lock of
/// an apply on this host that is provably dead.
pub fn lock(ws: &Workspace, timeout: Duration) -> Result<ApplyLock, OpsError> {
    let store = ws.store()?;
    let previous = store.lock_holder()?;
    let guard = store.acquire_lock_stealing_dead(timeout)?;
    let took_over_from = previous
        .filter(|(_, liveness)| *liveness == state::Liveness::Dead)
        .map(|(holder, _)| format!("pid {} on {}", holder.pid, holder.host));
    Ok(ApplyLock {
        store,
        run_id: guard.run_id().to_string(),
        guard: Arc::new(Mutex::new(Some(guard))),
        took_over_from,
    })
}

/// Runs the walk under `lock` (from [`lock`]), logs events to the JSONL log as well as
/// `sink`, records the run, releases the lock and builds the report.
pub fn apply(
    ws: &Workspace,
    lock: &ApplyLock,
    request: &ApplyRequest,
    sink: &mut dyn EventSink,
    cancel: CancellationToken,
) -> Result<ApplyOutcome, OpsError> {
    let store = Arc::clone(&lock.store);
    let selected = ws.select(&request.selection);
    let mut options = request.options.clone();
    options.replace = ws
        .graph()
        .replaced(&request.selection, &selected)
        .map_err(OpsError::Selection)?;
    let runners = ws.runners();
    let mut log =
        engine::JsonlEventLog::open(ws.event_log_path()).map_err(|source| OpsError::Write {
            path: ws.event_log_path(),
            source,
        })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(OpsError::Runtime)?;
    let dyn_store: Arc<dyn StateStore> = store.clone();
    let report = runtime.block_on(async {
        let mut tee = engine::Tee(&mut log, sink);
        engine::apply(
            ws.plan(),
            ws.graph(),
            &selected,
            dyn_store,
            &runners,
            &options,
            &mut tee,
            cancel,
        )
        .await
    });
    let client_report = build_report(ws, &report, store.as_ref())?;
    lock.finish(report.outcome.run_outcome())?;
    Ok(ApplyOutcome {
        report,
        client_report,
    })
}
