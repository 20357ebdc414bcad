//! Step runners: what binds the engine's step kinds to connectors. The engine walks steps and
//! knows no protocol; connectors know protocols and formats and no DAG; this module reads the
//! plan and puts the two together.
//!
//! [`runners_for`] builds a runner for every step of a plan. Anything this build cannot do
//! gets an [`Unsupported`] runner naming it, so a plan mixing supported and unsupported steps
//! still runs what it can.

mod attempt;
pub mod autocomplete;
pub mod budget;
mod copy;
pub mod dns;
mod m365;
mod m365_user;
mod mail;
pub mod notes;
mod pst_import;
pub mod skipped;
mod tally;
pub mod throttled;
mod user;
mod verify;

use std::path::Path;
use std::sync::Arc;

use crate::engine::{BoxFuture, Runners, StepError, StepRunner, Unsupported};
use crate::graph::{StepGraph, StepKind};
use crate::plan::model::Plan;

pub use copy::{BATCH_BYTES, BATCH_MESSAGES, LANES_PER_STEP};

/// Builds a runner for every step of `graph` except manual gates (the walker handles those).
/// `base_dir` is the plan file's folder; relative plan paths resolve against it.
pub fn runners_for(plan: &Plan, graph: &StepGraph, base_dir: &Path) -> Runners {
    let mut runners: Runners = Runners::new();
    // One budget for every copy of the apply.
    let budget = budget::ByteBudget::new(plan.settings.memory_budget_mb);
    for step in graph.steps() {
        let user = step.user.and_then(|u| plan.users.get(u));
        let migration = user.and_then(|u| step.migration.and_then(|m| u.migrate.get(m)));
        let runner: Arc<dyn StepRunner> = match (step.kind, user) {
            (StepKind::Manual, _) => continue,
            (StepKind::User, Some(user)) => user::runner(plan, user, base_dir),
            (StepKind::Copy, Some(user))
                if crate::plan::pst_import::is_import_source(
                    migration.and_then(|m| plan.sources.get(&m.from)),
                ) =>
            {
                match migration {
                    Some(m) => pst_import::upload_runner(plan, graph, user, m, base_dir),
                    None => Arc::new(Unsupported::new("copy step without a migration")),
                }
            }
            (StepKind::Copy | StepKind::Delta, Some(user)) => match migration {
                Some(m) => copy::runner(plan, user, m, base_dir, step, &budget),
                None => Arc::new(Unsupported::new("copy step without a migration")),
            },
            (StepKind::Verify, Some(user)) => {
                let steps: Vec<_> = graph
                    .steps()
                    .filter(|s| s.user == step.user)
                    .cloned()
                    .collect();
                verify::runner(plan, user, base_dir, &steps)
            }
            (StepKind::Autocomplete, Some(user)) => {
                match autocomplete::AutocompleteRunner::new(plan, user, base_dir) {
                    Some(runner) => Arc::new(runner),
                    None => Arc::new(Unsupported::new(
                        "autocomplete: no `files`, and no PST of the user holds a cache",
                    )),
                }
            }
            (StepKind::LowerTtl, _) => dns::lower_ttl_runner(plan, base_dir),
            (StepKind::Cutover, _) => dns::cutover_runner(plan, base_dir),
            (kind, _) => Arc::new(Unsupported::new(format!("{} steps", kind_label(kind)))),
        };
        runners.insert(step.id.clone(), runner);
    }
    runners
}

fn kind_label(kind: StepKind) -> &'static str {
    match kind {
        StepKind::User => "user",
        StepKind::Copy => "copy",
        StepKind::LowerTtl => "dns lower-ttl",
        StepKind::Cutover => "dns cutover",
        StepKind::Delta => "delta",
        StepKind::Autocomplete => "autocomplete",
        StepKind::Verify => "verify",
        StepKind::Manual => "manual",
    }
}

/// Runs blocking work (file I/O, state commits) off the async workers.
pub(crate) fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StepError> + Send + 'static,
) -> BoxFuture<'static, Result<T, StepError>> {
    Box::pin(async move {
        match tokio::task::spawn_blocking(f).await {
            Ok(r) => r,
            Err(e) => Err(StepError::permanent(format!("step task failed: {e}"))),
        }
    })
}
