//! `cutover apply`: the walk under the apply lock, with its event log and run record.

use std::sync::Arc;
use std::time::Duration;

use super::report::{build_report, Report};
use super::{OpsError, Workspace};
use crate::engine::{self, ApplyOptions, CancellationToken, EventSink, WalkReport};
use crate::graph::Selection;
use crate::state::{self, StateStore};

/// What `apply` needs besides the plan.
#[derive(Debug, Clone)]
pub struct ApplyRequest {
    pub selection: Selection,
    pub options: ApplyOptions,
    pub lock_timeout: Duration,
}

/// How an apply went, for the closing summary and the exit code.
#[derive(Debug)]
pub struct ApplyOutcome {
    pub report: WalkReport,
    /// The report for the client, to be rendered and written ([`super::report::write`]).
    pub client_report: Report,
    /// Set when the lock of a dead apply on this host was taken over.
    pub took_over_from: Option<String>,
}

/// Runs the walk under the apply lock, logs events to the JSONL log as well as `sink`,
/// records the run and writes the report.
pub fn apply(
    ws: &Workspace,
    request: &ApplyRequest,
    sink: &mut dyn EventSink,
    cancel: CancellationToken,
) -> Result<ApplyOutcome, OpsError> {
    let store = ws.store()?;
    let previous = store.lock_holder()?;
    let guard = store.acquire_lock_stealing_dead(request.lock_timeout)?;
    let took_over_from = previous
        .filter(|(_, liveness)| *liveness == state::Liveness::Dead)
        .map(|(holder, _)| format!("pid {} on {}", holder.pid, holder.host));
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
    store.finish_run(guard.run_id(), report.outcome.run_outcome())?;
    let client_report = build_report(ws, &report, store.as_ref())?;
    drop(guard);
    Ok(ApplyOutcome {
        report,
        client_report,
        took_over_from,
    })
}
