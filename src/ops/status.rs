//! `cutover status`: every step's state, progress and last error.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{OpsError, Workspace};
use crate::state::{StateStore, StepRecord};

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
