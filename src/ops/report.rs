//! The client-facing report of an apply: per user and step, with the mail left behind. The
//! data lives here; its Markdown rendering is the CLI's (`crate::cli::render`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use super::{write_atomically, OpsError, Workspace};
use crate::connectors::graph::{
    exchange_script as exchange_script_bytes, script_file_name, ExchangeChange,
};
use crate::engine::{StepResult, WalkOutcome, WalkReport};
use crate::plan::model::Target;
use crate::runners::notes;
use crate::runners::skipped::{self, SkippedMessage};
use crate::state::{self, StateStore, StepRecord};

/// The client-facing report of the last apply, per user and step.
#[derive(Debug, Serialize)]
pub struct Report {
    pub plan: String,
    pub outcome: String,
    pub users: Vec<UserReport>,
    pub other_steps: Vec<StepReport>,
    /// Exchange Online PowerShell the consultant must run (what Graph cannot do), when any
    /// step needs some: written beside the report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exchange_script: Option<ExchangeScript>,
    /// Each authoritative server's answer when `dns.cutover` verified the change, per zone.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<(String, crate::connectors::dns::PollReport)>,
}

/// The Exchange Online script of a report.
#[derive(Debug, Serialize)]
pub struct ExchangeScript {
    /// File name in the output folder.
    pub file: String,
    /// `Set-Mailbox` and `Add-MailboxPermission` lines.
    pub commands: usize,
    pub changes: usize,
    #[serde(skip)]
    bytes: Vec<u8>,
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
    /// Messages the target already had (an earlier run or another step copied them).
    pub present: u64,
    /// Messages left at the source on purpose; each is in `left_behind` where recorded.
    pub left_behind_count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Messages the step left behind on purpose (too large), each with folder and date.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub left_behind: Vec<SkippedMessage>,
    /// Messages the step copied without some of their parts (`reason`: what each lacks).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub copied_partly: Vec<SkippedMessage>,
    /// What the step left for the reader: files it wrote, what it changed at the target.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Attempts the step took since it last started from scratch (more than 1: transient
    /// errors were retried, in this apply or an earlier one).
    pub attempts: u32,
    /// Seconds its mailbox spent paused by the target's throttling, over every run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub throttled_secs: Option<u64>,
}

impl StepReport {
    /// Whether the step was retried or throttled: worth a line of its own in the report, as
    /// "succeeded" alone would hide it.
    pub fn struggled(&self) -> bool {
        self.attempts > 1 || self.throttled_secs.is_some()
    }
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
            StepResult::Waiting { instructions } => {
                ("waiting", Some(instructions.trim().to_string()))
            }
            StepResult::Interrupted => ("interrupted (resumes on the next apply)", None),
        };
        let checkpoints = store.checkpoints(id).unwrap_or_default();
        let throttled_ms = notes::count(&checkpoints, notes::THROTTLED_MS);
        StepReport {
            attempts: records.get(id).map_or(0, |r| r.attempts),
            throttled_secs: (throttled_ms > 0).then(|| throttled_ms.div_ceil(1000)),
            step: id.to_string(),
            result: label.to_string(),
            messages: counts.items,
            bytes: counts.bytes,
            present: counts.present,
            left_behind_count: counts.left_behind,
            detail,
            left_behind: skipped::from_checkpoints(&checkpoints),
            copied_partly: skipped::partial_from_checkpoints(&checkpoints),
            notes: notes::from_checkpoints(&checkpoints),
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
    let dns = if ws.plan().dns.is_some() {
        crate::runners::dns::verification(store).unwrap_or_default()
    } else {
        Vec::new()
    };
    Ok(Report {
        plan: ws.plan().name.clone(),
        outcome: outcome_text(walk.outcome).to_string(),
        users,
        other_steps,
        exchange_script: exchange_script(ws, store)?,
        dns,
    })
}

/// The Exchange Online changes every step of the plan recorded (not only this walk's), as
/// one script, for an m365 target.
fn exchange_script(
    ws: &Workspace,
    store: &dyn StateStore,
) -> Result<Option<ExchangeScript>, OpsError> {
    if !matches!(ws.plan().target, Target::M365 { .. }) {
        return Ok(None);
    }
    let mut changes = Vec::new();
    for step in ws.graph().steps() {
        changes.extend(ExchangeChange::from_checkpoints(
            &store.checkpoints(&step.id)?,
        ));
    }
    if changes.is_empty() {
        return Ok(None);
    }
    changes.sort();
    changes.dedup();
    let plan = &ws.plan().name;
    let bytes = exchange_script_bytes(plan, &changes);
    let commands = String::from_utf8_lossy(&bytes)
        .lines()
        .filter(|l| l.starts_with("Set-Mailbox") || l.starts_with("Add-MailboxPermission"))
        .count();
    Ok(Some(ExchangeScript {
        file: script_file_name(plan),
        commands,
        changes: changes.len(),
        bytes,
    }))
}

pub fn outcome_text(outcome: WalkOutcome) -> &'static str {
    match outcome {
        WalkOutcome::Succeeded => "succeeded",
        WalkOutcome::Failed => "incomplete",
        WalkOutcome::Interrupted => "interrupted",
    }
}

/// Writes `report` as Markdown (`markdown`, rendered by the CLI) and JSON into the plan's
/// output folder, and its Exchange Online script (0600) when it has one; returns the paths.
pub fn write(ws: &Workspace, report: &Report, markdown: &str) -> Result<Vec<PathBuf>, OpsError> {
    let dir = ws.output_dir();
    let md_path = dir.join(format!("{}-report.md", report.plan));
    let json_path = dir.join(format!("{}-report.json", report.plan));
    write_atomically(&md_path, markdown.as_bytes())?;
    write_atomically(
        &json_path,
        serde_json::to_string_pretty(report)
            .unwrap_or_default()
            .as_bytes(),
    )?;
    let mut files = vec![md_path, json_path];
    if let Some(script) = &report.exchange_script {
        let path = dir.join(&script.file);
        crate::files::write_atomically(&path, &script.bytes).map_err(|source| OpsError::Write {
            path: path.clone(),
            source,
        })?;
        files.push(path);
    }
    Ok(files)
}
