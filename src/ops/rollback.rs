//! `cutover rollback dns`: put back the DNS records the cutover replaced, through the same
//! provider, and reset the DNS steps so a later apply cuts over afresh.

use std::time::Duration;

use super::{OpsError, Workspace};
use crate::connectors::dns::PollReport;
use crate::engine::{CancellationToken, StepError};
use crate::plan::model::DnsProvider;
use crate::runners::dns;
use crate::state::{RunOutcome, SqliteStore, StateStore};

impl From<StepError> for OpsError {
    fn from(e: StepError) -> Self {
        OpsError::Step(e.message)
    }
}

/// What a rollback would change now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollbackPreview {
    /// RRset diff lines, zone by zone (`~ MX acme.co.uk 3600: 0 acme-… → 10 mx00.ionos.co.uk`).
    pub changes: Vec<String>,
    /// With the `manual` provider: what the person changes at the DNS host.
    pub instructions: Option<String>,
}

impl RollbackPreview {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// Reads the zones and the state: what `rollback_dns` would change. Never writes.
pub fn preview_dns(ws: &Workspace) -> Result<RollbackPreview, OpsError> {
    let Some(dns) = ws.plan().dns.as_ref() else {
        return Err(OpsError::Selection("the plan has no `dns:` section".into()));
    };
    let Some(store) = ws.existing_store()? else {
        return Ok(RollbackPreview {
            changes: Vec::new(),
            instructions: None,
        });
    };
    let zones = dns::rollback_changes(ws.plan(), ws.base_dir(), store.as_ref())?;
    Ok(RollbackPreview {
        changes: zones
            .iter()
            .flat_map(|z| z.changes.iter().map(|c| c.line()))
            .collect(),
        instructions: (dns.provider == DnsProvider::Manual && !zones.is_empty())
            .then(|| dns::rollback_instructions(&zones)),
    })
}

/// How a rollback ended.
#[derive(Debug)]
pub enum RollbackOutcome {
    /// Every authoritative server publishes the restored records; the DNS steps are reset.
    Restored(Vec<(String, PollReport)>),
    /// Ctrl-C during the poll; the state is unchanged (run it again).
    Interrupted,
}

/// Restores the records under the apply lock (with `manual`, the caller confirmed that a
/// person made [`preview_dns`]' changes), polls every server, resets the DNS steps.
pub fn rollback_dns(
    ws: &Workspace,
    lock_timeout: Duration,
    cancel: &CancellationToken,
) -> Result<RollbackOutcome, OpsError> {
    let store: std::sync::Arc<SqliteStore> = ws.store()?;
    let guard = store.acquire_lock_stealing_dead(lock_timeout)?;
    let result = dns::rollback(ws.plan(), ws.base_dir(), store.as_ref(), cancel);
    let run = match &result {
        Ok(Some(_)) => RunOutcome::Succeeded,
        Ok(None) => RunOutcome::Interrupted,
        Err(_) => RunOutcome::Failed,
    };
    store.finish_run(guard.run_id(), run)?;
    drop(guard);
    Ok(match result? {
        Some(reports) => RollbackOutcome::Restored(reports),
        None => RollbackOutcome::Interrupted,
    })
}
