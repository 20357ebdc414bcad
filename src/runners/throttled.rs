//! A step that met a server's connection limit (`[LIMIT] Maximum number of connections from
//! user+IP exceeded`, "too many connections") went on with fewer connections and waited
//! instead of failing; it records how often as a checkpoint of its own, and says so in a
//! report note ([`super::notes`]) that suggests the plan setting that avoids it.

use serde::{Deserialize, Serialize};

use crate::connectors::mailflow::Checkpoints;

/// The checkpoint key of the record.
pub const KEY: &str = "throttled:connections";

/// The topic of the report note.
pub const NOTE: &str = "connection-limit";

/// How often a step's connections were refused as too many, and the last refusal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionLimited {
    /// Refusals so far, over all runs of the step.
    pub times: u64,
    /// The refusal as the server worded it, with the account and server it concerned.
    pub last: String,
}

impl ConnectionLimited {
    /// What the report says: what happened and the setting that avoids it.
    pub fn advice(&self) -> String {
        format!(
            "throttled {}× by a connection limit ({}); went on with fewer connections — set \
             `max_connections_per_login` on that server in the plan to what it allows",
            self.times, self.last
        )
    }

    /// The checkpoints recording it: the record and the report's note.
    pub fn checkpoints(&self) -> [(String, Vec<u8>); 2] {
        [
            (
                KEY.to_string(),
                serde_json::to_vec(self).unwrap_or_default(),
            ),
            super::notes::checkpoint(NOTE, &self.advice()),
        ]
    }
}

/// The step's record, if it has one.
pub fn from_checkpoints(checkpoints: &Checkpoints) -> Option<ConnectionLimited> {
    checkpoints
        .get(KEY)
        .and_then(|v| serde_json::from_slice(v).ok())
}
