//! `cutover approve`: records a person's approval of a manual gate, or of a step that
//! waits for a person (`Outcome::Waiting`).

use super::{OpsError, Workspace};
use crate::graph::StepKind;
use crate::state::{self, StateStore};

/// Records approval of a manual gate, or of a step waiting for a person (a `manual` DNS
/// change), by `by`.
pub fn approve(ws: &Workspace, step: &str, by: &str) -> Result<(), OpsError> {
    match ws.graph().step(step) {
        Some(s) if s.kind == StepKind::Manual => {}
        Some(_) => {
            let store = ws.store()?;
            let waiting = store
                .step(step)?
                .is_some_and(|r| r.status == state::StepStatus::Waiting);
            if !waiting {
                return Err(OpsError::Selection(format!(
                    "`{step}` is not waiting for approval; approve manual gates, or a step \
                     after apply showed what to do for it"
                )));
            }
            let approval = crate::engine::StepApproval {
                by: by.to_string(),
                at: std::time::SystemTime::now(),
            };
            store.commit_progress(
                step,
                state::Counts::default(),
                &[(crate::engine::APPROVAL_CHECKPOINT, &approval.encode())],
            )?;
            return Ok(());
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
