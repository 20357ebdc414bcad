//! `cutover plan`: what apply would do, step by step, and plans saved for a later apply.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{write_atomically, OpsError, Workspace};
use crate::engine::{self, ExcludedFolder, FolderObservation, PlannedChange, Runners};
use crate::graph::{Selection, StepKind};
use crate::plan::Options;
use crate::state::{self, SqliteStore, StateStore, StepRecord};

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
    /// What apply would do, in one line, for steps that say so (`user.*` of an m365 target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Where each source folder's mail goes and how much of it (copy and delta steps whose
    /// runner breaks its work down by folder); `items`/`bytes`/`present` are their totals.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub folders: Vec<FolderObservation>,
    /// Source folders the plan's `include`/`exclude` rules leave behind.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded: Vec<ExcludedFolder>,
    /// Lines shown under the step (a PST upload's blob and mapping-CSV row).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub detail: Vec<String>,
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
    /// The DNS changes per zone, when a `dns.*` step is selected (`runners::dns::preview`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<crate::runners::dns::DnsPreview>,
}

impl PlanView {
    pub fn count(&self, action: Action) -> usize {
        self.rows.iter().filter(|r| r.action == action).count()
    }

    /// The blocked steps apply cannot run until something is fixed, in plan order: every
    /// `!` row but manual gates waiting for their approval, which is the runbook working as
    /// written rather than something broken.
    pub fn blocked_steps<'v>(&'v self, graph: &crate::graph::StepGraph) -> Vec<&'v str> {
        self.rows
            .iter()
            .filter(|r| r.action == Action::Blocked)
            .filter(|r| {
                graph
                    .step(&r.step)
                    .is_none_or(|s| s.kind != StepKind::Manual)
            })
            .map(|r| r.step.as_str())
            .collect()
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
    let replace = ws
        .graph()
        .replaced(selection, &selected)
        .map_err(OpsError::Selection)?;
    let runners = ws.runners();
    let store: Arc<dyn StateStore> = match ws.existing_store()? {
        Some(store) => store,
        None => Arc::new(SqliteStore::in_memory()?),
    };
    let rows = if offline {
        offline_rows(ws, &selected, &replace, store.as_ref(), &runners)?
    } else {
        engine::observe(
            ws.plan(),
            ws.graph(),
            &selected,
            &replace,
            store.as_ref(),
            &runners,
        )
        .into_iter()
        .map(|(step, change)| row(step, change))
        .collect()
    };
    let dns = if offline || !selected.iter().any(|id| id.starts_with("dns.")) {
        None
    } else {
        // A failure shows on the dns.* rows as "blocked" already.
        crate::runners::dns::preview(ws.plan(), ws.base_dir(), store.as_ref()).ok()
    };
    Ok(PlanView {
        plan: ws.plan().name.clone(),
        rows,
        dns,
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
        summary: None,
        folders: Vec::new(),
        excluded: Vec::new(),
        detail: Vec::new(),
    };
    match change {
        PlannedChange::Create {
            items,
            bytes,
            present,
            folders,
            excluded,
            summary,
            detail,
        } => PlanRow {
            action: Action::Create,
            items: Some(items),
            bytes: Some(bytes),
            present: Some(present),
            summary,
            folders,
            excluded,
            detail,
            ..base
        },
        PlannedChange::Change {
            items,
            bytes,
            present,
            folders,
            excluded,
            reason,
            summary,
            detail,
        } => PlanRow {
            action: Action::Change,
            items: Some(items),
            bytes: Some(bytes),
            present: Some(present),
            reason: Some(reason),
            summary,
            folders,
            excluded,
            detail,
            ..base
        },
        PlannedChange::Unchanged => base,
        PlannedChange::InSync { summary } => PlanRow { summary, ..base },
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
    replace: &BTreeSet<String>,
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
            let runner = runners.get(id);
            let hash = runner.map(|r| r.config_hash());
            let base = PlanRow {
                step: id.to_string(),
                action: Action::Create,
                items: None,
                bytes: None,
                present: None,
                reason: None,
                summary: None,
                folders: Vec::new(),
                excluded: Vec::new(),
                detail: Vec::new(),
            };
            // Known without reading anything: this build cannot run the step at all.
            if let Some(what) = runner.and_then(|r| r.unsupported()) {
                return PlanRow {
                    action: Action::Blocked,
                    reason: Some(engine::unsupported_reason(what)),
                    ..base
                };
            }
            match record {
                Some(r)
                    if r.status == state::StepStatus::Done
                        && (hash.is_none() || r.config_hash == hash) =>
                {
                    if replace.contains(id) {
                        PlanRow {
                            action: Action::Change,
                            reason: Some("replaced: run again".into()),
                            ..base
                        }
                    } else {
                        PlanRow {
                            action: Action::Unchanged,
                            ..base
                        }
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
    /// `--replace` patterns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replace: Vec<String>,
    pub view: PlanView,
}

const SAVED_PLAN_FORMAT: u32 = 1;

pub fn save_plan(
    ws: &Workspace,
    select: (&[String], &[String], &[String]),
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
        replace: select.2.to_vec(),
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
            "{}|{}|{:?}|{}|{}|{}|{}|{}",
            r.id,
            r.status,
            r.config_hash,
            r.counts.items,
            r.counts.bytes,
            r.counts.present,
            r.counts.left_behind,
            r.approval.is_some()
        ));
    }
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    Ok(engine::hash_parts(&refs))
}
