//! What the commands do, as library calls: open a plan with its state, preview (`plan`),
//! execute (`apply`), report, and read state (`status`). The CLI files only parse and print.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::runners::skipped::{self, SkippedMessage};
use crate::engine::{
    self, ApplyOptions, CancellationToken, EventSink, ExcludedFolder, FolderObservation,
    PlannedChange, Runners, StepResult, WalkOutcome, WalkReport,
};
use crate::graph::{Selection, StepGraph, StepKind};
use crate::plan::{self, FileReport, Loaded, Options, Plan};
use crate::state::{self, SqliteStore, StateError, StateStore, StepRecord};

#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a valid plan ({} errors); run `cutover validate` for details", .0.file, .0.errors())]
    InvalidPlan(Box<FileReport>),
    #[error("{0}")]
    Selection(String),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("saved plan {path} is stale: {reason}; run `cutover plan --out` again")]
    StalePlan { path: PathBuf, reason: String },
    #[error("saved plan {path} cannot be read: {reason}")]
    BadSavedPlan { path: PathBuf, reason: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

/// A valid plan, its step graph and where its state lives.
#[derive(Debug)]
pub struct Workspace {
    pub plan_file: PathBuf,
    pub loaded: Loaded,
    pub state_path: PathBuf,
}

impl Workspace {
    /// Loads and validates `plan_file`; the state file defaults to `.cutover/<name>.db`
    /// beside the plan.
    pub fn open(
        plan_file: &Path,
        state_path: Option<&Path>,
        options: Options,
    ) -> Result<Workspace, OpsError> {
        let loaded = plan::load_file(plan_file, options).map_err(|source| OpsError::Read {
            path: plan_file.to_path_buf(),
            source,
        })?;
        Self::from_loaded(plan_file, loaded, state_path)
    }

    /// A workspace over an already loaded plan; fails when the plan has errors.
    pub fn from_loaded(
        plan_file: &Path,
        loaded: Loaded,
        state_path: Option<&Path>,
    ) -> Result<Workspace, OpsError> {
        let Some((plan, _)) = loaded.valid() else {
            return Err(OpsError::InvalidPlan(Box::new(loaded.report)));
        };
        let state_path = state_path.map_or_else(
            || state::default_state_path(plan_file, &plan.name),
            Path::to_path_buf,
        );
        Ok(Workspace {
            plan_file: plan_file.to_path_buf(),
            loaded,
            state_path,
        })
    }

    pub fn plan(&self) -> &Plan {
        self.loaded
            .plan
            .as_ref()
            .expect("Workspace::open keeps only valid plans")
    }

    pub fn graph(&self) -> &StepGraph {
        self.loaded
            .graph
            .as_ref()
            .expect("Workspace::open keeps only valid plans")
    }

    pub fn base_dir(&self) -> &Path {
        &self.loaded.base_dir
    }

    /// Opens (creating) the state store.
    pub fn store(&self) -> Result<Arc<SqliteStore>, OpsError> {
        Ok(Arc::new(SqliteStore::open(&self.state_path)?))
    }

    /// Opens the state store only if it exists (read-only commands never create one).
    pub fn existing_store(&self) -> Result<Option<Arc<SqliteStore>>, OpsError> {
        if self.state_path.exists() {
            self.store().map(Some)
        } else {
            Ok(None)
        }
    }

    pub fn select(&self, selection: &Selection) -> BTreeSet<String> {
        self.graph().select(selection)
    }

    pub fn runners(&self) -> Runners {
        crate::runners::runners_for(self.plan(), self.graph(), self.base_dir())
    }

    /// `<plan dir>/<settings.output_dir>`
    pub fn output_dir(&self) -> PathBuf {
        tidy_path(&self.base_dir().join(&self.plan().settings.output_dir))
    }

    /// The JSONL event log beside the state file.
    pub fn event_log_path(&self) -> PathBuf {
        self.state_path
            .with_file_name(format!("{}.events.jsonl", self.plan().name))
    }
}

/// `plans/../demo-out` → `demo-out`, for paths shown to people (lexical: no symlink lookup).
fn tidy_path(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        out
    }
}

/// One line of `cutover plan`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanRow {
    pub step: String,
    pub action: Action,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub items: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub present: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Where each source folder's mail goes and how much of it (copy and delta steps whose
    /// runner breaks its work down by folder); `items`/`bytes`/`present` are their totals.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub folders: Vec<FolderObservation>,
    /// Source folders the plan's `include`/`exclude` rules leave behind.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded: Vec<ExcludedFolder>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Change,
    Unchanged,
    Blocked,
}

impl Action {
    pub fn symbol(self) -> char {
        match self {
            Action::Create => '+',
            Action::Change => '~',
            Action::Unchanged => '=',
            Action::Blocked => '!',
        }
    }
}

/// The preview of an apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanView {
    pub plan: String,
    pub rows: Vec<PlanRow>,
}

impl PlanView {
    pub fn count(&self, action: Action) -> usize {
        self.rows.iter().filter(|r| r.action == action).count()
    }

    pub fn has_changes(&self) -> bool {
        self.rows
            .iter()
            .any(|r| matches!(r.action, Action::Create | Action::Change))
    }
}

/// Previews what `apply` would do for the selected steps. `offline`: compare with state only,
/// without reading sources or targets (no counts).
pub fn plan(ws: &Workspace, selection: &Selection, offline: bool) -> Result<PlanView, OpsError> {
    let selected = ws.select(selection);
    let runners = ws.runners();
    let store: Arc<dyn StateStore> = match ws.existing_store()? {
        Some(store) => store,
        None => Arc::new(SqliteStore::in_memory()?),
    };
    let rows = if offline {
        offline_rows(ws, &selected, store.as_ref(), &runners)?
    } else {
        engine::observe(ws.plan(), ws.graph(), &selected, store.as_ref(), &runners)
            .into_iter()
            .map(|(step, change)| row(step, change))
            .collect()
    };
    Ok(PlanView {
        plan: ws.plan().name.clone(),
        rows,
    })
}

fn row(step: String, change: PlannedChange) -> PlanRow {
    let base = PlanRow {
        step,
        action: Action::Unchanged,
        items: None,
        bytes: None,
        present: None,
        reason: None,
        folders: Vec::new(),
        excluded: Vec::new(),
    };
    match change {
        PlannedChange::Create {
            items,
            bytes,
            present,
            folders,
            excluded,
        } => PlanRow {
            action: Action::Create,
            items: Some(items),
            bytes: Some(bytes),
            present: Some(present),
            folders,
            excluded,
            ..base
        },
        PlannedChange::Change {
            items,
            bytes,
            present,
            folders,
            excluded,
            reason,
        } => PlanRow {
            action: Action::Change,
            items: Some(items),
            bytes: Some(bytes),
            present: Some(present),
            reason: Some(reason),
            folders,
            excluded,
            ..base
        },
        PlannedChange::Unchanged => base,
        PlannedChange::Blocked(reason) => PlanRow {
            action: Action::Blocked,
            reason: Some(reason),
            ..base
        },
    }
}

fn offline_rows(
    ws: &Workspace,
    selected: &BTreeSet<String>,
    store: &dyn StateStore,
    runners: &Runners,
) -> Result<Vec<PlanRow>, OpsError> {
    let records: BTreeMap<String, StepRecord> = store
        .steps()?
        .into_iter()
        .map(|r| (r.id.clone(), r))
        .collect();
    let order = ws.graph().topological_order().unwrap_or_default();
    Ok(order
        .into_iter()
        .filter(|id| selected.contains(*id))
        .map(|id| {
            let record = records.get(id);
            let hash = runners.get(id).map(|r| r.config_hash());
            let base = PlanRow {
                step: id.to_string(),
                action: Action::Create,
                items: None,
                bytes: None,
                present: None,
                reason: None,
                folders: Vec::new(),
                excluded: Vec::new(),
            };
            match record {
                Some(r)
                    if r.status == state::StepStatus::Done
                        && (hash.is_none() || r.config_hash == hash) =>
                {
                    PlanRow {
                        action: Action::Unchanged,
                        ..base
                    }
                }
                Some(r)
                    if ws
                        .graph()
                        .step(id)
                        .is_some_and(|s| s.kind == StepKind::Manual)
                        && r.approval.is_none() =>
                {
                    PlanRow {
                        action: Action::Blocked,
                        reason: Some("waiting for approval".into()),
                        ..base
                    }
                }
                Some(r) if r.config_hash.is_some() && r.config_hash != hash => PlanRow {
                    action: Action::Change,
                    reason: Some("config changed: rerun from scratch".into()),
                    ..base
                },
                Some(r) if r.status != state::StepStatus::Pending => PlanRow {
                    action: Action::Change,
                    reason: Some(format!("resume ({} last time)", r.status)),
                    ..base
                },
                _ if ws
                    .graph()
                    .step(id)
                    .is_some_and(|s| s.kind == StepKind::Manual) =>
                {
                    PlanRow {
                        action: Action::Blocked,
                        reason: Some("waiting for approval".into()),
                        ..base
                    }
                }
                _ => base,
            }
        })
        .collect())
}

/// Terraform-style text of a plan preview.
pub fn render_plan(view: &PlanView, graph: &StepGraph) -> String {
    let mut out = String::new();
    for row in &view.rows {
        let what = describe(graph, row);
        let _ = writeln!(out, "  {} {:<32} {what}", row.action.symbol(), row.step);
        render_folders(&mut out, row);
    }
    if !view.rows.is_empty() {
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "Plan: {} to create, {} to change, {} unchanged{}.",
        view.count(Action::Create),
        view.count(Action::Change),
        view.count(Action::Unchanged),
        match view.count(Action::Blocked) {
            0 => String::new(),
            n => format!(", {n} blocked"),
        }
    );
    out
}

/// The folder mapping under a step's line, one folder per line, aligned:
///
/// ```text
///       INBOX.Sent   -> Sent           2 messages, 1.2 kB
///       Newsletters     excluded       3 messages stay at the source
/// ```
fn render_folders(out: &mut String, row: &PlanRow) {
    // Padding counts chars, so decoded names (`Entwürfe`) line up like ASCII ones.
    let source_width = row
        .folders
        .iter()
        .map(|f| f.source.chars().count())
        .chain(row.excluded.iter().map(|e| e.source.chars().count()))
        .max()
        .unwrap_or(0);
    const EXCLUDED: &str = "excluded";
    let target_width = row
        .folders
        .iter()
        .map(|f| f.target.chars().count())
        .chain((!row.excluded.is_empty()).then_some(EXCLUDED.len()))
        .max()
        .unwrap_or(0);
    for f in &row.folders {
        let counts = if f.items == 0 {
            "nothing to copy".to_string()
        } else {
            format!(
                "{} message{}, {}",
                thousands(f.items),
                plural(f.items),
                human_bytes(f.bytes)
            )
        };
        let present = if f.present > 0 {
            format!("; {} already at target", thousands(f.present))
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "      {:<source_width$} -> {:<target_width$}  {counts}{present}",
            f.source, f.target
        );
    }
    for e in &row.excluded {
        let left = match e.messages {
            Some(0) => "empty".to_string(),
            Some(n) => format!(
                "{} message{} {} at the source",
                thousands(n),
                plural(n),
                if n == 1 { "stays" } else { "stay" }
            ),
            None => "stays at the source".to_string(),
        };
        let _ = writeln!(
            out,
            "      {:<source_width$}    {:<target_width$}  {left}",
            e.source, EXCLUDED
        );
    }
}

fn describe(graph: &StepGraph, row: &PlanRow) -> String {
    let kind = graph.step(&row.step).map(|s| s.kind);
    let counts = match (row.items, row.bytes) {
        (Some(items), Some(bytes)) if matches!(kind, Some(StepKind::Copy | StepKind::Delta)) => {
            let present = row.present.unwrap_or(0);
            format!(
                "copy {} message{}, {}; {} already at target",
                thousands(items),
                plural(items),
                human_bytes(bytes),
                thousands(present)
            )
        }
        (Some(items), _) if kind == Some(StepKind::Verify) => {
            format!("compare {} message{}", thousands(items), plural(items))
        }
        _ => String::new(),
    };
    let reason = row.reason.clone().unwrap_or_default();
    match row.action {
        Action::Unchanged => "already done".to_string(),
        Action::Blocked => format!("blocked: {reason}"),
        Action::Change if !counts.is_empty() => format!("{counts} ({reason})"),
        Action::Change => reason,
        Action::Create if counts.is_empty() => {
            kind.map_or(String::new(), |k| default_description(k).to_string())
        }
        Action::Create => counts,
    }
}

fn default_description(kind: StepKind) -> &'static str {
    match kind {
        StepKind::User => "make sure the mailbox exists",
        StepKind::Copy => "copy mail",
        StepKind::LowerTtl => "lower the TTL of the managed records",
        StepKind::Cutover => "point DNS at the target",
        StepKind::Delta => "copy mail that arrived since the copy",
        StepKind::Autocomplete => "carry the autocomplete cache over",
        StepKind::Verify => "compare source and target",
        StepKind::Manual => "wait for approval",
    }
}

/// `1,204`
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `88.3 MB` (decimal units, as mail providers quote sizes).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// A plan saved by `plan --out`: `apply FILE` executes exactly it, and refuses it when the
/// plan file or the state changed since.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedPlan {
    pub format: u32,
    pub plan_file: PathBuf,
    pub plan_sha256: String,
    pub state_fingerprint: String,
    pub targets: Vec<String>,
    pub excludes: Vec<String>,
    pub view: PlanView,
}

const SAVED_PLAN_FORMAT: u32 = 1;

pub fn save_plan(
    ws: &Workspace,
    select: (&[String], &[String]),
    view: &PlanView,
    out: &Path,
) -> Result<(), OpsError> {
    let saved = SavedPlan {
        format: SAVED_PLAN_FORMAT,
        plan_file: ws.plan_file.clone(),
        plan_sha256: file_sha256(&ws.plan_file)?,
        state_fingerprint: state_fingerprint(ws)?,
        targets: select.0.to_vec(),
        excludes: select.1.to_vec(),
        view: view.clone(),
    };
    let text = serde_json::to_string_pretty(&saved).unwrap_or_default();
    write_atomically(out, text.as_bytes())
}

/// Reads a saved plan and checks it still describes the plan file and the state.
pub fn load_saved_plan(
    path: &Path,
    options: Options,
    state_path: Option<&Path>,
) -> Result<(Workspace, SavedPlan), OpsError> {
    let bad = |reason: String| OpsError::BadSavedPlan {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let saved: SavedPlan =
        serde_json::from_str(&text).map_err(|e| bad(format!("not a saved cutover plan ({e})")))?;
    if saved.format != SAVED_PLAN_FORMAT {
        return Err(bad(format!("format {} is not supported", saved.format)));
    }
    let stale = |reason: &str| OpsError::StalePlan {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    let current = file_sha256(&saved.plan_file).map_err(|_| stale("the plan file is gone"))?;
    if current != saved.plan_sha256 {
        return Err(stale(&format!(
            "{} changed since the plan was saved",
            saved.plan_file.display()
        )));
    }
    let ws = Workspace::open(&saved.plan_file, state_path, options)?;
    if state_fingerprint(&ws)? != saved.state_fingerprint {
        return Err(stale(
            "the state changed since the plan was saved (another apply ran)",
        ));
    }
    Ok((ws, saved))
}

fn file_sha256(path: &Path) -> Result<String, OpsError> {
    let bytes = std::fs::read(path).map_err(|source| OpsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let text = String::from_utf8_lossy(&bytes);
    Ok(engine::hash_parts(&[&text]))
}

/// A hash of everything apply decisions depend on in state: step status, config hash, counts
/// and approvals.
fn state_fingerprint(ws: &Workspace) -> Result<String, OpsError> {
    let Some(store) = ws.existing_store()? else {
        return Ok(engine::hash_parts(&["no state"]));
    };
    let mut parts = Vec::new();
    for r in store.steps()? {
        parts.push(format!(
            "{}|{}|{:?}|{}|{}|{}|{}",
            r.id,
            r.status,
            r.config_hash,
            r.counts.items,
            r.counts.bytes,
            r.counts.skipped,
            r.approval.is_some()
        ));
    }
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    Ok(engine::hash_parts(&refs))
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), OpsError> {
    let err = |source| OpsError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let tmp = path.with_extension("tmp-cutover");
    std::fs::write(&tmp, bytes).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

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
    pub report_files: Vec<PathBuf>,
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
            &request.options,
            &mut tee,
            cancel,
        )
        .await
    });
    store.finish_run(guard.run_id(), report.outcome.run_outcome())?;
    let report_files = write_report(ws, &report, store.as_ref())?;
    drop(guard);
    Ok(ApplyOutcome {
        report,
        report_files,
        took_over_from,
    })
}

/// The client-facing report of the last apply, per user and step.
#[derive(Debug, Serialize)]
pub struct Report {
    pub plan: String,
    pub outcome: String,
    pub users: Vec<UserReport>,
    pub other_steps: Vec<StepReport>,
}

#[derive(Debug, Serialize)]
pub struct UserReport {
    pub email: String,
    pub steps: Vec<StepReport>,
}

#[derive(Debug, Serialize)]
pub struct StepReport {
    pub step: String,
    pub result: String,
    pub messages: u64,
    pub bytes: u64,
    pub skipped: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Messages the step left behind on purpose (too large), each with folder and date.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub left_behind: Vec<SkippedMessage>,
}

pub fn build_report(
    ws: &Workspace,
    walk: &WalkReport,
    store: &dyn StateStore,
) -> Result<Report, OpsError> {
    let records: BTreeMap<String, StepRecord> = store
        .steps()?
        .into_iter()
        .map(|r| (r.id.clone(), r))
        .collect();
    let order = ws.graph().topological_order().unwrap_or_default();
    let step_report = |id: &str, result: &StepResult| {
        let counts = records.get(id).map(|r| r.counts).unwrap_or_default();
        let (label, detail) = match result {
            StepResult::Done { .. } => ("done", None),
            StepResult::Unchanged => ("already done", None),
            StepResult::Approved => (
                "approved",
                records
                    .get(id)
                    .and_then(|r| r.approval.as_ref())
                    .map(|a| format!("by {} at {}", a.by, state::format_utc(a.at))),
            ),
            StepResult::Failed { error } => ("failed", Some(error.clone())),
            StepResult::Skipped { reason } => ("not run", Some(reason.clone())),
            StepResult::Waiting { instructions } => (
                "waiting for approval",
                Some(instructions.trim().to_string()),
            ),
            StepResult::Interrupted => ("interrupted (resumes on the next apply)", None),
        };
        let left_behind = store
            .checkpoints(id)
            .map(|cps| skipped::from_checkpoints(&cps))
            .unwrap_or_default();
        StepReport {
            step: id.to_string(),
            result: label.to_string(),
            messages: counts.items,
            bytes: counts.bytes,
            skipped: counts.skipped,
            detail,
            left_behind,
        }
    };
    let mut users: Vec<UserReport> = ws
        .plan()
        .users
        .iter()
        .map(|u| UserReport {
            email: u.email.clone(),
            steps: Vec::new(),
        })
        .collect();
    let mut other_steps = Vec::new();
    for id in order {
        let Some(result) = walk.result(id) else {
            continue;
        };
        let entry = step_report(id, result);
        match ws.graph().step(id).and_then(|s| s.user) {
            Some(user) => users[user].steps.push(entry),
            None => other_steps.push(entry),
        }
    }
    users.retain(|u| !u.steps.is_empty());
    Ok(Report {
        plan: ws.plan().name.clone(),
        outcome: outcome_text(walk.outcome).to_string(),
        users,
        other_steps,
    })
}

pub fn outcome_text(outcome: WalkOutcome) -> &'static str {
    match outcome {
        WalkOutcome::Succeeded => "succeeded",
        WalkOutcome::Failed => "incomplete",
        WalkOutcome::Interrupted => "interrupted",
    }
}

pub fn render_report_markdown(report: &Report) -> String {
    let mut md = format!(
        "# Migration report: {}\n\nOutcome: **{}**\n",
        report.plan, report.outcome
    );
    let table = |md: &mut String, steps: &[StepReport]| {
        md.push_str("\n| step | result | messages | size | skipped | detail |\n|---|---|---:|---:|---:|---|\n");
        for s in steps {
            let detail = s
                .detail
                .as_deref()
                .unwrap_or("")
                .replace('\n', " ")
                .replace('|', "\\|");
            let _ = writeln!(
                md,
                "| `{}` | {} | {} | {} | {} | {} |",
                s.step,
                s.result,
                thousands(s.messages),
                human_bytes(s.bytes),
                thousands(s.skipped),
                detail
            );
        }
    };
    for user in &report.users {
        let _ = write!(md, "\n## {}\n", user.email);
        table(&mut md, &user.steps);
        let left: Vec<(&str, &SkippedMessage)> = user
            .steps
            .iter()
            .flat_map(|s| s.left_behind.iter().map(move |m| (s.step.as_str(), m)))
            .collect();
        if !left.is_empty() {
            md.push_str("\nLeft behind at the source:\n\n| step | folder | received | size | subject | why |\n|---|---|---|---:|---|---|\n");
            let cell = |s: &str| s.replace('\n', " ").replace('|', "\\|");
            for (step, m) in left {
                let _ = writeln!(
                    md,
                    "| `{step}` | {} | {} | {} | {} | {} |",
                    cell(&m.folder),
                    m.date.as_deref().unwrap_or("unknown"),
                    human_bytes(m.size),
                    cell(m.subject.as_deref().unwrap_or("")),
                    cell(&m.reason)
                );
            }
        }
    }
    if !report.other_steps.is_empty() {
        md.push_str("\n## DNS and gates\n");
        table(&mut md, &report.other_steps);
    }
    md
}

fn write_report(
    ws: &Workspace,
    walk: &WalkReport,
    store: &dyn StateStore,
) -> Result<Vec<PathBuf>, OpsError> {
    let report = build_report(ws, walk, store)?;
    let dir = ws.output_dir();
    let md_path = dir.join(format!("{}-report.md", report.plan));
    let json_path = dir.join(format!("{}-report.json", report.plan));
    write_atomically(&md_path, render_report_markdown(&report).as_bytes())?;
    write_atomically(
        &json_path,
        serde_json::to_string_pretty(&report)
            .unwrap_or_default()
            .as_bytes(),
    )?;
    Ok(vec![md_path, json_path])
}

/// One line of `cutover status`.
#[derive(Debug, Clone, Serialize)]
pub struct StatusRow {
    pub step: String,
    pub status: String,
    pub attempts: u32,
    pub messages: u64,
    pub bytes: u64,
    pub skipped: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
}

pub fn status(ws: &Workspace) -> Result<Vec<StatusRow>, OpsError> {
    let records: BTreeMap<String, StepRecord> = match ws.existing_store()? {
        Some(store) => store
            .steps()?
            .into_iter()
            .map(|r| (r.id.clone(), r))
            .collect(),
        None => BTreeMap::new(),
    };
    Ok(ws
        .graph()
        .topological_order()
        .unwrap_or_default()
        .into_iter()
        .map(|id| match records.get(id) {
            Some(r) => StatusRow {
                step: id.to_string(),
                status: r.status.to_string(),
                attempts: r.attempts,
                messages: r.counts.items,
                bytes: r.counts.bytes,
                skipped: r.counts.skipped,
                last_error: r.last_error.clone(),
                approved_by: r.approval.as_ref().map(|a| a.by.clone()),
            },
            None => StatusRow {
                step: id.to_string(),
                status: "pending".into(),
                attempts: 0,
                messages: 0,
                bytes: 0,
                skipped: 0,
                last_error: None,
                approved_by: None,
            },
        })
        .collect())
}

/// Records approval of a manual gate by `by`.
pub fn approve(ws: &Workspace, step: &str, by: &str) -> Result<(), OpsError> {
    match ws.graph().step(step) {
        Some(s) if s.kind == StepKind::Manual => {}
        Some(_) => {
            return Err(OpsError::Selection(format!(
                "`{step}` is not a manual gate; only `manual.*` steps are approved"
            )))
        }
        None => {
            let gates: Vec<&str> = ws
                .graph()
                .steps()
                .filter(|s| s.kind == StepKind::Manual)
                .map(|s| s.id.as_str())
                .collect();
            return Err(OpsError::Selection(format!(
                "no step `{step}`; manual gates: {}",
                if gates.is_empty() {
                    "none".into()
                } else {
                    gates.join(", ")
                }
            )));
        }
    }
    ws.store()?.record_approval(step, by)?;
    Ok(())
}

/// `user@host` of whoever runs this process, for approvals.
pub fn current_user() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    format!("{user}@{}", state::hostname())
}
