//! The engine: walks a plan's step DAG and drives each step through the [`StepRunner`]
//! contract. It knows steps, not protocols: connectors implement runners ([`local`] for
//! mbox/maildir into a maildir), the walker ([`walk`]) schedules, retries, cancels and
//! records state and events.
//!
//! Library entry points for the CLI: [`runners_for`] builds the runners of a plan, [`observe`]
//! previews (`cutover plan`), [`apply`] executes (`cutover apply`).

pub mod autocomplete;
pub mod events;
pub mod local;
mod m365;
pub mod remote;
pub mod skipped;
pub mod step;
mod tally;
pub mod walk;

use std::collections::HashMap;
use std::sync::Arc;

use sha2::{Digest, Sha256};

pub use events::{Event, EventKind, EventSink, JsonlEventLog, NullSink, Tee, VecSink};
pub use local::runners_for;
pub use step::{
    ApplyCtx, BoxFuture, ExcludedFolder, FolderObservation, Observation, ObserveCtx, Outcome,
    StepError, StepRunner, Unsupported,
};
pub use tokio_util::sync::CancellationToken;
pub use walk::{apply, observe, ApplyOptions, PlannedChange, StepResult, WalkOutcome, WalkReport};

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
