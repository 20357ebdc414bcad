//! `cutover approve`: records a person's approval of a manual gate.

use super::{OpsError, Workspace};
use crate::graph::StepKind;
use crate::state::{self, StateStore};

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
