//! The engine: walks a plan's step DAG and drives each step through the [`StepRunner`]
//! contract. It knows steps, not protocols: `crate::runners` binds step kinds to connectors,
//! the walker ([`walk`]) schedules, retries, cancels and records state and events. No file
//! here imports `crate::connectors` (a test keeps it so).
//!
//! Library entry points: [`observe`] previews (`cutover plan`), [`apply`] executes
//! (`cutover apply`), given the runners `crate::runners::runners_for` built.

pub mod events;
pub mod step;
pub mod walk;

use std::collections::HashMap;
use std::sync::Arc;

use sha2::{Digest, Sha256};

pub use events::{Event, EventKind, EventSink, JsonlEventLog, NullSink, Tee, VecSink};
pub use step::{
    unsupported_reason, ApplyCtx, BoxFuture, ExcludedFolder, FolderObservation, Observation,
    ObserveCtx, Outcome, StepApproval, StepError, StepRunner, Unsupported, APPROVAL_CHECKPOINT,
};
pub use tokio_util::sync::CancellationToken;
pub use walk::{
    apply, observe, ApplyOptions, PlannedChange, StepResult, WalkOutcome, WalkReport, CATCH_UP,
};

/// Runners by step id. `Arc` because each running step's task holds its runner.
pub type Runners = HashMap<String, Arc<dyn StepRunner>>;

/// Hex SHA-256 over length-prefixed parts: the spelling of a config hash. Length prefixes
/// keep `["ab", "c"]` and `["a", "bc"]` apart.
pub fn hash_parts(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}
