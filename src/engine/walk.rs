//! The walker: runs the selected steps of a [`StepGraph`] in dependency order, Terraform-style.
//!
//! * A step starts when every dependency is done — in this walk, or in state from an earlier
//!   one (that is what makes a second apply resume instead of redo).
//! * A failed step stops only its dependents; each is reported skipped once, naming the
//!   failed step rather than repeating its error. Independent branches go on, unless
//!   [`ApplyOptions::fail_fast`].
//! * At most `parallelism` steps run at once: mail servers throttle beyond a few connections.
//! * Transient errors are retried with exponential backoff and full jitter, so parallel steps
//!   hitting one throttled server do not retry in lockstep.
//! * A step `done` with an unchanged config hash is skipped; a changed hash clears the step's
//!   state (its checkpoints describe other work) and reruns it.
//! * Manual gates: approved → done; otherwise `waiting`, and their dependents do not run.
//! * Cancellation: no new step starts; running steps see the token, checkpoint and return;
//!   the walk ends [`WalkOutcome::Interrupted`].
//!
//! The walker never blocks on a step: each runs in its own tokio task and reports through a
//! channel, which the walker drains into the [`EventSink`] in order.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::events::{Event, EventKind, EventSink};
use super::step::{ApplyCtx, ExcludedFolder, FolderObservation, ObserveCtx, Outcome, StepRunner};
use super::Runners;
use crate::graph::{Step, StepGraph, StepKind};
use crate::plan::model::Plan;
use crate::state::{Counts, RunOutcome, StateStore, StepRecord, StepStatus};

/// How to walk. `None` fields take the plan's `settings`.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Steps at once (`--parallelism`); plan `settings.parallelism` when `None`.
    pub parallelism: Option<usize>,
    /// Attempts per step for transient errors; plan `settings.retries` when `None`.
    pub retries: Option<u32>,
    /// Stop starting steps after the first failure (running ones finish).
    pub fail_fast: bool,
    /// First retry delay; doubled per attempt, capped at `backoff_max`.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Done steps to run again with their checkpoints kept (`--replace`): a copy or delta
    /// catches up with mail that arrived since, other steps simply run again.
    pub replace: BTreeSet<String>,
    /// `apply --wait`: sleep until a step's [`StepRunner::not_before`] time instead of
    /// reporting it waiting (Ctrl-C stops the sleep).
    pub wait: bool,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            parallelism: None,
            retries: None,
            fail_fast: false,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            replace: BTreeSet::new(),
            wait: false,
        }
    }
}

/// How one step ended in this walk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepResult {
    /// Ran to completion; totals since the step's last reset.
    Done { counts: Counts },
    /// Already done with the same config: not run.
    Unchanged,
    /// A manual gate that was approved.
    Approved,
    /// Failed for good (redacted message).
    Failed { error: String },
    /// Did not run: an upstream step failed or waits, the walk was cancelled, or fail-fast.
    Skipped { reason: String },
    /// Waiting: a manual gate or a step that asked for a person ([`Outcome::Waiting`]) for
    /// `cutover approve`, or a step whose time has not come ([`StepRunner::not_before`]).
    Waiting { instructions: String },
    /// Cancelled while running, after checkpointing; the next apply resumes it.
    Interrupted,
}

impl StepResult {
    fn is_success(&self) -> bool {
        matches!(
            self,
            StepResult::Done { .. } | StepResult::Unchanged | StepResult::Approved
        )
    }
}

/// How the walk ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalkOutcome {
    /// Every selected step is done.
    Succeeded,
    /// Some step failed, was skipped, or waits for approval.
    Failed,
    /// Cancelled; in-flight work was checkpointed.
    Interrupted,
}

impl WalkOutcome {
    /// The value for [`StateStore::finish_run`].
    pub fn run_outcome(self) -> RunOutcome {
        match self {
            WalkOutcome::Succeeded => RunOutcome::Succeeded,
            WalkOutcome::Failed => RunOutcome::Failed,
            WalkOutcome::Interrupted => RunOutcome::Interrupted,
        }
    }
}

/// The result of [`apply`]: the outcome and every selected step's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalkReport {
    pub outcome: WalkOutcome,
    pub steps: BTreeMap<String, StepResult>,
}

impl WalkReport {
    pub fn result(&self, id: &str) -> Option<&StepResult> {
        self.steps.get(id)
    }
}

/// What `plan` shows for a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlannedChange {
    /// Never run: apply will do this much.
    Create {
        items: u64,
        bytes: u64,
        present: u64,
        /// Per source folder, when the runner breaks its work down ([`Observation::folders`](super::Observation::folders)).
        folders: Vec<FolderObservation>,
        excluded: Vec<ExcludedFolder>,
        /// What apply would do in one line ([`Observation::summary`](super::Observation::summary)).
        summary: Option<String>,
        /// Lines under the step's line ([`Observation::detail`](super::Observation::detail)).
        detail: Vec<String>,
    },
    /// Run before but not (validly) done: resumes, or reruns because its config changed.
    Change {
        items: u64,
        bytes: u64,
        present: u64,
        folders: Vec<FolderObservation>,
        excluded: Vec<ExcludedFolder>,
        reason: String,
        summary: Option<String>,
        detail: Vec<String>,
    },
    /// Done with the same config: apply will skip it.
    Unchanged,
    /// Not done yet, but the target already is as the plan says
    /// ([`Observation::in_sync`](super::Observation::in_sync)): apply only confirms it.
    InSync { summary: Option<String> },
    /// Cannot run now: a manual gate not yet approved, or the step cannot be previewed.
    Blocked(String),
}

/// Selected step ids in dependency order.
fn ordered<'g>(graph: &'g StepGraph, selected: &BTreeSet<String>) -> Option<Vec<&'g Step>> {
    let order = graph.topological_order()?;
    Some(
        order
            .into_iter()
            .filter(|id| selected.contains(*id))
            .filter_map(|id| graph.step(id))
            .collect(),
    )
}

fn gate_instructions(plan: &Plan, step: &Step) -> String {
    let Some(gate) = step.gate.as_deref() else {
        return String::new();
    };
    match plan.manual.get(gate) {
        Some(g) => g.instructions.clone(),
        // Gates the graph adds by itself (the runbook's, not the plan's).
        None if gate == crate::plan::pst_import::GATE => {
            crate::plan::pst_import::gate_instructions(plan)
        }
        None => String::new(),
    }
}

fn approved(record: Option<&StepRecord>) -> bool {
    record.is_some_and(|r| r.approval.is_some() || r.status == StepStatus::Done)
}

/// Read-only preview of an apply: for every selected step, in dependency order, whether it
/// would be created, changed, left alone, or is blocked. Never writes state.
/// `replace` are the done steps asked to run again (`--replace`): they preview as changes
/// ([`CATCH_UP`] for copies and deltas), counted from their checkpoints.
pub fn observe(
    plan: &Plan,
    graph: &StepGraph,
    selected: &BTreeSet<String>,
    replace: &BTreeSet<String>,
    store: &dyn StateStore,
    runners: &Runners,
) -> Vec<(String, PlannedChange)> {
    let Some(steps) = ordered(graph, selected) else {
        return selected
            .iter()
            .map(|id| {
                (
                    id.clone(),
                    PlannedChange::Blocked("the plan has a dependency cycle".into()),
                )
            })
            .collect();
    };
    let mut out = Vec::with_capacity(steps.len());
    for step in steps {
        let record = match store.step(&step.id) {
            Ok(r) => r,
            Err(e) => {
                out.push((
                    step.id.clone(),
                    PlannedChange::Blocked(redacted(&format!("state: {e}"))),
                ));
                continue;
            }
        };
        if step.kind == StepKind::Manual {
            let change = if approved(record.as_ref()) {
                PlannedChange::Unchanged
            } else {
                PlannedChange::Blocked(redacted(&format!(
                    "waiting for approval: {}",
                    gate_instructions(plan, step)
                )))
            };
            out.push((step.id.clone(), change));
            continue;
        }
        let Some(runner) = runners.get(&step.id) else {
            out.push((
                step.id.clone(),
                PlannedChange::Blocked("no runner for this step".into()),
            ));
            continue;
        };
        let hash = runner.config_hash();
        let same_hash =
            record.as_ref().and_then(|r| r.config_hash.as_deref()) == Some(hash.as_str());
        let done = same_hash
            && record
                .as_ref()
                .is_some_and(|r| r.status == StepStatus::Done);
        if done && !replace.contains(&step.id) {
            out.push((step.id.clone(), PlannedChange::Unchanged));
            continue;
        }
        let checkpoints = if same_hash {
            store.checkpoints(&step.id).unwrap_or_default()
        } else {
            BTreeMap::new()
        };
        let ctx = ObserveCtx::new(step.clone(), checkpoints, store);
        let change = match runner.observe(&ctx) {
            Err(e) => PlannedChange::Blocked(redacted(&e.message)),
            Ok(o) if o.in_sync => PlannedChange::InSync {
                summary: o.summary.as_deref().map(redacted),
            },
            Ok(o) => match record {
                _ if done => PlannedChange::Change {
                    items: o.items,
                    bytes: o.bytes,
                    present: o.present,
                    folders: o.folders,
                    excluded: o.excluded,
                    reason: replace_reason(step.kind).into(),
                    summary: o.summary.as_deref().map(redacted),
                    detail: o.detail.iter().map(|d| redacted(d)).collect(),
                },
                Some(r) if r.config_hash.is_some() && !same_hash => PlannedChange::Change {
                    items: o.items,
                    bytes: o.bytes,
                    present: o.present,
                    folders: o.folders,
                    excluded: o.excluded,
                    reason: "config changed: rerun from scratch".into(),
                    summary: o.summary.as_deref().map(redacted),
                    detail: o.detail.iter().map(|d| redacted(d)).collect(),
                },
                Some(r) if same_hash && r.status != StepStatus::Pending => PlannedChange::Change {
                    items: o.items,
                    bytes: o.bytes,
                    present: o.present,
                    folders: o.folders,
                    excluded: o.excluded,
                    reason: format!("resume ({} last time)", r.status),
                    summary: o.summary.as_deref().map(redacted),
                    detail: o.detail.iter().map(|d| redacted(d)).collect(),
                },
                _ => PlannedChange::Create {
                    items: o.items,
                    bytes: o.bytes,
                    present: o.present,
                    folders: o.folders,
                    excluded: o.excluded,
                    summary: o.summary.as_deref().map(redacted),
                    detail: o.detail.iter().map(|d| redacted(d)).collect(),
                },
            },
        };
        out.push((step.id.clone(), change));
    }
    out
}

/// Why a replaced copy or delta step runs again.
pub const CATCH_UP: &str = "catch up";

fn replace_reason(kind: StepKind) -> &'static str {
    match kind {
        StepKind::Copy | StepKind::Delta => CATCH_UP,
        _ => "replaced: run again",
    }
}

fn redacted(s: &str) -> String {
    crate::redact::redact(s).into_owned()
}

/// Where a step is during the walk.
#[derive(Debug, Clone)]
enum Node {
    Pending,
    Running,
    Ended(StepResult),
}

/// What a step task reports back.
enum TaskEnd {
    Complete(Counts),
    Interrupted,
    Failed(String),
    /// Waiting for a person ([`Outcome::Waiting`]) or for a time: the instructions.
    Waiting(String),
}

/// Runs the selected steps. See the module docs for the semantics.
///
/// The caller holds the apply lock for the whole call and records the run's end with
/// [`StateStore::finish_run`]`(run_id, report.outcome.run_outcome())`. To cancel (Ctrl-C),
/// cancel `cancel`; a second Ctrl-C handling (abort) is the caller's business.
#[allow(clippy::too_many_arguments)]
pub async fn apply(
    plan: &Plan,
    graph: &StepGraph,
    selected: &BTreeSet<String>,
    store: Arc<dyn StateStore>,
    runners: &Runners,
    options: &ApplyOptions,
    events: &mut dyn EventSink,
    cancel: CancellationToken,
) -> WalkReport {
    events.emit(&Event::now(
        None,
        EventKind::WalkStarted {
            plan: plan.name.clone(),
            steps: selected.len(),
        },
    ));
    let Some(steps) = ordered(graph, selected) else {
        let steps: BTreeMap<String, StepResult> = selected
            .iter()
            .map(|id| {
                (
                    id.clone(),
                    StepResult::Skipped {
                        reason: "the plan has a dependency cycle".into(),
                    },
                )
            })
            .collect();
        return finish(
            events,
            WalkReport {
                outcome: WalkOutcome::Failed,
                steps,
            },
        );
    };
    let parallelism = options
        .parallelism
        .unwrap_or(plan.settings.parallelism as usize)
        .max(1);
    let attempts = options.retries.unwrap_or(plan.settings.retries).max(1);

    let mut nodes: HashMap<String, Node> = steps
        .iter()
        .map(|s| (s.id.clone(), Node::Pending))
        .collect();
    let (tx, mut rx) = unbounded_channel::<Event>();
    let mut tasks: JoinSet<(String, TaskEnd)> = JoinSet::new();
    let mut task_steps: HashMap<tokio::task::Id, String> = HashMap::new();
    let mut running = 0usize;
    let mut stop_reason: Option<&'static str> = None;

    loop {
        if stop_reason.is_none() && cancel.is_cancelled() {
            stop_reason = Some("not started: apply was interrupted");
        }
        if stop_reason.is_none() {
            // Repeat: a step settled without running (unchanged, approved, skipped) may
            // unblock others in the same pass.
            let mut changed = true;
            while changed && stop_reason.is_none() {
                changed = false;
                for step in &steps {
                    if !matches!(nodes.get(&step.id), Some(Node::Pending)) {
                        continue;
                    }
                    match readiness(step, graph, &nodes, store.as_ref()) {
                        Ready::Wait => continue,
                        Ready::Blocked(reason) => {
                            events.emit(&Event::now(
                                Some(&step.id),
                                EventKind::StepSkipped {
                                    reason: reason.clone(),
                                },
                            ));
                            nodes.insert(
                                step.id.clone(),
                                Node::Ended(StepResult::Skipped { reason }),
                            );
                            changed = true;
                        }
                        Ready::Go => {
                            if step.kind != StepKind::Manual && running >= parallelism {
                                continue;
                            }
                            match prepare(plan, step, store.as_ref(), runners, &options.replace) {
                                Prepared::Settled(result) => {
                                    emit_settled(events, store.as_ref(), &step.id, &result);
                                    if fail_fast_trigger(options, &result) {
                                        stop_reason =
                                            Some("not started: an earlier step failed (fail-fast)");
                                    }
                                    nodes.insert(step.id.clone(), Node::Ended(result));
                                    changed = true;
                                }
                                Prepared::Run(runner, resumed) => {
                                    let job = Job {
                                        step: (*step).clone(),
                                        runner,
                                        store: Arc::clone(&store),
                                        events: tx.clone(),
                                        cancel: cancel.clone(),
                                        attempts,
                                        resumed,
                                        backoff_base: options.backoff_base,
                                        backoff_max: options.backoff_max,
                                        wait: options.wait,
                                    };
                                    let handle = tasks.spawn(run_job(job));
                                    task_steps.insert(handle.id(), step.id.clone());
                                    running += 1;
                                    nodes.insert(step.id.clone(), Node::Running);
                                }
                            }
                            if stop_reason.is_some() {
                                break;
                            }
                        }
                    }
                }
            }
        }
        if tasks.is_empty() {
            break;
        }
        tokio::select! {
            biased;
            Some(event) = rx.recv() => events.emit(&event),
            joined = tasks.join_next_with_id() => {
                let Some(joined) = joined else { continue };
                drain(&mut rx, events);
                running = running.saturating_sub(1);
                let (id, result) = match joined {
                    Ok((task, (id, end))) => {
                        task_steps.remove(&task);
                        match end {
                            TaskEnd::Complete(counts) => (id, StepResult::Done { counts }),
                            TaskEnd::Interrupted => (id, StepResult::Interrupted),
                            TaskEnd::Failed(error) => (id, StepResult::Failed { error }),
                            TaskEnd::Waiting(instructions) => (id, StepResult::Waiting { instructions }),
                        }
                    }
                    Err(join_error) => {
                        // A runner panicked (a bug): fail its step rather than the walk.
                        let message = format!("step task ended abnormally: {join_error}");
                        match task_steps.remove(&join_error.id()) {
                            Some(id) => {
                                let _ = store.mark_failed(&id, &message);
                                events.emit(&Event::now(Some(&id), EventKind::StepFailed { error: message.clone() }));
                                (id, StepResult::Failed { error: message })
                            }
                            None => continue,
                        }
                    }
                };
                if fail_fast_trigger(options, &result) && stop_reason.is_none() {
                    stop_reason = Some("not started: an earlier step failed (fail-fast)");
                }
                nodes.insert(id, Node::Ended(result));
            }
            _ = cancel.cancelled(), if stop_reason.is_none() => {
                stop_reason = Some("not started: apply was interrupted");
            }
        }
    }
    drop(tx);
    drain(&mut rx, events);

    let mut report = BTreeMap::new();
    for step in &steps {
        let result = match nodes.remove(&step.id) {
            Some(Node::Ended(r)) => r,
            _ => {
                let reason = stop_reason.unwrap_or("not started").to_string();
                events.emit(&Event::now(
                    Some(&step.id),
                    EventKind::StepSkipped {
                        reason: reason.clone(),
                    },
                ));
                StepResult::Skipped { reason }
            }
        };
        report.insert(step.id.clone(), result);
    }
    let interrupted = cancel.is_cancelled()
        || report
            .values()
            .any(|r| matches!(r, StepResult::Interrupted));
    let outcome = if interrupted {
        WalkOutcome::Interrupted
    } else if report.values().all(StepResult::is_success) {
        WalkOutcome::Succeeded
    } else {
        WalkOutcome::Failed
    };
    finish(
        events,
        WalkReport {
            outcome,
            steps: report,
        },
    )
}

fn finish(events: &mut dyn EventSink, report: WalkReport) -> WalkReport {
    let outcome = report.outcome.run_outcome().as_str().to_string();
    events.emit(&Event::now(None, EventKind::WalkFinished { outcome }));
    report
}

fn fail_fast_trigger(options: &ApplyOptions, result: &StepResult) -> bool {
    options.fail_fast && matches!(result, StepResult::Failed { .. })
}

fn drain(rx: &mut UnboundedReceiver<Event>, events: &mut dyn EventSink) {
    while let Ok(event) = rx.try_recv() {
        events.emit(&event);
    }
}

enum Ready {
    Go,
    Wait,
    Blocked(String),
}

/// Whether all dependencies of `step` are done. A dependency outside the walk counts as done
/// when state says so (it was applied earlier).
fn readiness(
    step: &Step,
    graph: &StepGraph,
    nodes: &HashMap<String, Node>,
    store: &dyn StateStore,
) -> Ready {
    let mut wait = false;
    for dep in graph.dependencies(&step.id) {
        match nodes.get(dep) {
            Some(Node::Ended(r)) if r.is_success() => {}
            Some(Node::Ended(StepResult::Skipped { reason })) => {
                return Ready::Blocked(reason.clone())
            }
            Some(Node::Ended(StepResult::Waiting { .. })) => {
                return Ready::Blocked(format!("skipped: waiting for approval of `{dep}`"))
            }
            Some(Node::Ended(StepResult::Interrupted)) => {
                return Ready::Blocked(format!("skipped: `{dep}` was interrupted"))
            }
            Some(Node::Ended(_)) => {
                return Ready::Blocked(format!("skipped: upstream failed (`{dep}`)"))
            }
            Some(Node::Pending | Node::Running) => wait = true,
            None => match store.step(dep) {
                Ok(Some(r)) if r.status == StepStatus::Done => {}
                _ => {
                    return Ready::Blocked(format!(
                        "skipped: dependency `{dep}` is not selected and not done"
                    ))
                }
            },
        }
    }
    if wait {
        Ready::Wait
    } else {
        Ready::Go
    }
}

enum Prepared {
    /// Decided without running: unchanged, approved gate, waiting gate, or failed setup.
    Settled(StepResult),
    Run(Arc<dyn StepRunner>, bool),
}

/// Decides what to do with a ready step and brings its state record in line with the plan.
fn prepare(
    plan: &Plan,
    step: &Step,
    store: &dyn StateStore,
    runners: &Runners,
    replace: &BTreeSet<String>,
) -> Prepared {
    let fail = |store: &dyn StateStore, message: String| {
        let _ = store.mark_failed(&step.id, &message);
        Prepared::Settled(StepResult::Failed {
            error: redacted(&message),
        })
    };
    let record = match store.step(&step.id) {
        Ok(r) => r,
        Err(e) => {
            return Prepared::Settled(StepResult::Failed {
                error: redacted(&format!("state: {e}")),
            })
        }
    };
    if step.kind == StepKind::Manual {
        if approved(record.as_ref()) {
            return Prepared::Settled(StepResult::Approved);
        }
        let instructions = redacted(&gate_instructions(plan, step));
        if let Err(e) = store.mark_waiting(&step.id) {
            return fail(store, format!("state: {e}"));
        }
        return Prepared::Settled(StepResult::Waiting { instructions });
    }
    let Some(runner) = runners.get(&step.id) else {
        return fail(store, "internal: no runner for this step".into());
    };
    let hash = runner.config_hash();
    let stored = record.as_ref().and_then(|r| r.config_hash.clone());
    let done = stored.as_deref() == Some(hash.as_str())
        && record
            .as_ref()
            .is_some_and(|r| r.status == StepStatus::Done);
    if done && !replace.contains(&step.id) {
        return Prepared::Settled(StepResult::Unchanged);
    }
    if record.is_some() && stored.as_deref() != Some(hash.as_str()) {
        if let Err(e) = store.clear_step(&step.id) {
            return fail(store, format!("state: {e}"));
        }
    }
    if let Err(e) = store.set_config_hash(&step.id, &hash) {
        return fail(store, format!("state: {e}"));
    }
    // A replaced done step runs again from its checkpoints, like a resumed one.
    let resumed = done
        || stored.as_deref() == Some(hash.as_str())
            && record
                .as_ref()
                .is_some_and(|r| matches!(r.status, StepStatus::Running | StepStatus::Failed));
    Prepared::Run(Arc::clone(runner), resumed)
}

fn emit_settled(events: &mut dyn EventSink, store: &dyn StateStore, id: &str, result: &StepResult) {
    let event = match result {
        StepResult::Unchanged | StepResult::Approved => {
            let counts = store
                .step(id)
                .ok()
                .flatten()
                .map(|r| r.counts)
                .unwrap_or_default();
            Event::finished(id, counts, true)
        }
        StepResult::Waiting { instructions } => Event::now(
            Some(id),
            EventKind::StepWaiting {
                instructions: instructions.clone(),
                approve: true,
            },
        ),
        StepResult::Failed { error } => Event::now(
            Some(id),
            EventKind::StepFailed {
                error: error.clone(),
            },
        ),
        StepResult::Skipped { reason } => Event::now(
            Some(id),
            EventKind::StepSkipped {
                reason: reason.clone(),
            },
        ),
        StepResult::Done { counts } => Event::finished(id, *counts, false),
        StepResult::Interrupted => Event::now(Some(id), EventKind::StepInterrupted),
    };
    events.emit(&event);
}

/// Everything a step task owns.
struct Job {
    step: Step,
    runner: Arc<dyn StepRunner>,
    store: Arc<dyn StateStore>,
    events: UnboundedSender<Event>,
    cancel: CancellationToken,
    attempts: u32,
    resumed: bool,
    backoff_base: Duration,
    backoff_max: Duration,
    wait: bool,
}

/// Holds a ready step back until its [`StepRunner::not_before`] time: sleeps until then
/// with `apply --wait`, else ends the task waiting. `None`: go ahead.
async fn wait_for_time(job: &Job) -> Option<TaskEnd> {
    let checkpoints = job.store.checkpoints(&job.step.id).unwrap_or_default();
    let ctx = ObserveCtx::new(job.step.clone(), checkpoints, job.store.as_ref());
    let until = match job.runner.not_before(&ctx) {
        Ok(Some(until)) => until,
        Ok(None) => return None,
        Err(e) => return Some(TaskEnd::Failed(e.message)),
    };
    let left = until.duration_since(SystemTime::now()).ok()?;
    let at = crate::state::format_utc(until);
    if !job.wait {
        return Some(TaskEnd::Waiting(format!(
            "not before {at} ({} left); apply again then, or `cutover apply --wait` sleeps until then",
            crate::time::human_duration(left)
        )));
    }
    let _ = job.events.send(Event::now(
        Some(&job.step.id),
        EventKind::StepSleeping { until: at },
    ));
    tokio::select! {
        _ = tokio::time::sleep(left) => None,
        _ = job.cancel.cancelled() => Some(TaskEnd::Interrupted),
    }
}

/// One step, all its attempts. Emits its own events through the channel so they reach the
/// sink before the walker sees the task end.
async fn run_job(job: Job) -> (String, TaskEnd) {
    let id = job.step.id.clone();
    let send = |kind: EventKind| {
        let _ = job.events.send(Event::now(Some(&id), kind));
    };
    if let Some(end) = wait_for_time(&job).await {
        match &end {
            TaskEnd::Waiting(text) => send(EventKind::StepWaiting {
                instructions: text.clone(),
                approve: false,
            }),
            TaskEnd::Interrupted => send(EventKind::StepInterrupted),
            TaskEnd::Failed(error) => {
                let _ = job.store.mark_failed(&id, error);
                send(EventKind::StepFailed {
                    error: error.clone(),
                });
            }
            TaskEnd::Complete(_) => {}
        }
        return (id, end);
    }
    let mut attempt = 0u32;
    // What failed first: after several attempts the last error is often only an echo of it
    // (a reconnect refused after a dropped connection), and the first is what to fix.
    let mut first_error: Option<String> = None;
    let end = loop {
        attempt += 1;
        if let Err(e) = job.store.mark_running(&id) {
            break TaskEnd::Failed(redacted(&format!("state: {e}")));
        }
        let checkpoints = match job.store.checkpoints(&id) {
            Ok(c) => c,
            Err(e) => break TaskEnd::Failed(redacted(&format!("state: {e}"))),
        };
        send(EventKind::StepStarted {
            attempt,
            resumed: job.resumed || !checkpoints.is_empty(),
        });
        let mut ctx = ApplyCtx::new(
            job.step.clone(),
            attempt,
            job.resumed || attempt > 1 || !checkpoints.is_empty(),
            checkpoints,
            Arc::clone(&job.store),
            job.events.clone(),
            job.cancel.clone(),
        );
        match job.runner.apply(&mut ctx).await {
            Ok(Outcome::Complete) => match job.store.mark_done(&id) {
                Ok(()) => {
                    let counts = job
                        .store
                        .step(&id)
                        .ok()
                        .flatten()
                        .map(|r| r.counts)
                        .unwrap_or_default();
                    break TaskEnd::Complete(counts);
                }
                Err(e) => break TaskEnd::Failed(redacted(&format!("state: {e}"))),
            },
            Ok(Outcome::Interrupted) => break TaskEnd::Interrupted,
            Ok(Outcome::Waiting(instructions)) => match job.store.mark_waiting(&id) {
                Ok(()) => break TaskEnd::Waiting(redacted(&instructions)),
                Err(e) => break TaskEnd::Failed(redacted(&format!("state: {e}"))),
            },
            Err(e) if e.transient && attempt < job.attempts && !job.cancel.is_cancelled() => {
                first_error.get_or_insert_with(|| e.message.clone());
                let delay = backoff(job.backoff_base, job.backoff_max, attempt, &id);
                send(EventKind::StepRetry {
                    attempt,
                    delay_ms: delay.as_millis() as u64,
                    error: e.message.clone(),
                });
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = job.cancel.cancelled() => break TaskEnd::Interrupted,
                }
            }
            Err(e) => {
                let message = match first_error.take() {
                    Some(first) if first != e.message => format!(
                        "{} (gave up after {attempt} attempts; the first failed with: {first})",
                        e.message
                    ),
                    _ if attempt > 1 => format!("{} (gave up after {attempt} attempts)", e.message),
                    _ => e.message,
                };
                break TaskEnd::Failed(message);
            }
        }
    };
    match &end {
        TaskEnd::Complete(counts) => {
            let _ = job.events.send(Event::finished(&id, *counts, false));
        }
        TaskEnd::Interrupted => send(EventKind::StepInterrupted),
        TaskEnd::Failed(error) => {
            let _ = job.store.mark_failed(&id, error);
            send(EventKind::StepFailed {
                error: error.clone(),
            });
        }
        TaskEnd::Waiting(instructions) => send(EventKind::StepWaiting {
            instructions: instructions.clone(),
            approve: true,
        }),
    }
    (id, end)
}

/// Exponential backoff with "equal jitter": half the exponential delay is fixed, the other
/// half random, so retries spread out but never collapse to zero.
pub fn backoff(base: Duration, max: Duration, attempt: u32, salt: &str) -> Duration {
    let exp = base
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
        .min(max);
    let half = exp / 2;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    let seed = salt.bytes().fold(nanos ^ u64::from(attempt), |h, b| {
        h.wrapping_mul(31).wrapping_add(u64::from(b))
    });
    let fraction = splitmix(seed) as f64 / u64::MAX as f64;
    half + half.mul_f64(fraction)
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(1);
        for attempt in 1..10 {
            let d = backoff(base, max, attempt, "copy.a");
            let exp = (base * (1 << (attempt - 1))).min(max);
            assert!(d >= exp / 2 && d <= exp, "attempt {attempt}: {d:?}");
        }
    }
}
