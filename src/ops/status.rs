//! `cutover status`: every step's state, progress and last error.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{OpsError, Workspace};
use crate::engine::Runners;
use crate::state::{Liveness, StateStore, StepRecord, StepStatus};

/// `status` of a step a run left `running` in state while no apply holds the lock.
pub const INTERRUPTED: &str = "interrupted";
/// The note beside it.
pub const INTERRUPTED_NOTE: &str =
    "the last apply stopped before this step finished; the next apply resumes it";

/// One line of `cutover status`.
#[derive(Debug, Clone, Serialize)]
pub struct StatusRow {
    pub step: String,
    pub status: String,
    pub attempts: u32,
    pub messages: u64,
    pub bytes: u64,
    /// Messages the target already had.
    pub present: u64,
    /// Messages left at the source on purpose (the report lists each with its reason).
    pub left_behind: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
    /// When a step may not run before a time ([`crate::engine::StepRunner::not_before`]):
    /// `not before 2026-03-01T14:05:09Z (1h 02m left)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Seconds the step's mailbox spent paused by the target's throttling, over every run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub throttled_secs: Option<u64>,
}

/// `not before … (… left)` for a step whose runner names a future time.
fn time_note(
    ws: &Workspace,
    runners: &Runners,
    store: Option<&dyn StateStore>,
    id: &str,
) -> Option<String> {
    let store = store?;
    let runner = runners.get(id)?;
    let step = ws.graph().step(id)?.clone();
    let checkpoints = store.checkpoints(id).unwrap_or_default();
    let at = runner
        .not_before(&crate::engine::ObserveCtx::new(step, checkpoints, store))
        .ok()??;
    let left = at.duration_since(std::time::SystemTime::now()).ok()?;
    Some(format!(
        "not before {} ({} left)",
        crate::state::format_utc(at),
        crate::time::human_duration(left)
    ))
}

pub fn status(ws: &Workspace) -> Result<Vec<StatusRow>, OpsError> {
    let store = ws.existing_store()?;
    let records: BTreeMap<String, StepRecord> = match &store {
        Some(store) => store
            .steps()?
            .into_iter()
            .map(|r| (r.id.clone(), r))
            .collect(),
        None => BTreeMap::new(),
    };
    // A step is only running while an apply holds the lock; `running` in state with no live
    // holder is a run that ended without finishing it (Ctrl-C, a kill, a crash).
    let apply_running = match &store {
        Some(store) => matches!(
            store.lock_holder()?,
            Some((_, Liveness::Alive | Liveness::OtherHost))
        ),
        None => false,
    };
    let runners = ws.runners();
    let store: Option<&dyn StateStore> = store.as_ref().map(|s| s.as_ref() as &dyn StateStore);
    let interrupted = |r: &StepRecord| r.status == StepStatus::Running && !apply_running;
    let note = |id: &str| match records.get(id) {
        Some(r) if r.status == StepStatus::Done => None,
        Some(r) if interrupted(r) => Some(INTERRUPTED_NOTE.to_string()),
        _ => time_note(ws, &runners, store, id),
    };
    let throttled = |id: &str| {
        let checkpoints = store?.checkpoints(id).ok()?;
        let ms = crate::runners::notes::count(&checkpoints, crate::runners::notes::THROTTLED_MS);
        (ms > 0).then(|| ms.div_ceil(1000))
    };
    Ok(ws
        .graph()
        .topological_order()
        .unwrap_or_default()
        .into_iter()
        .map(|id| match records.get(id) {
            Some(r) => StatusRow {
                step: id.to_string(),
                status: if interrupted(r) {
                    INTERRUPTED.to_string()
                } else {
                    r.status.to_string()
                },
                attempts: r.attempts,
                messages: r.counts.items,
                bytes: r.counts.bytes,
                present: r.counts.present,
                left_behind: r.counts.left_behind,
                last_error: r.last_error.clone(),
                approved_by: r.approval.as_ref().map(|a| a.by.clone()),
                note: note(id),
                throttled_secs: throttled(id),
            },
            None => StatusRow {
                step: id.to_string(),
                status: "pending".into(),
                attempts: 0,
                messages: 0,
                bytes: 0,
                present: 0,
                left_behind: 0,
                last_error: None,
                approved_by: None,
                note: note(id),
                throttled_secs: None,
            },
        })
        .collect())
}
