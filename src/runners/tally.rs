//! What `verify.*` steps count, whatever the source: per target folder, the source messages
//! checked and how many of them the target lacks. One type, one preview, one verdict, so a
//! local and a server verify report alike.

use std::collections::BTreeMap;

use crate::engine::step::{Observation, StepError};

/// Per target folder: (checked, missing).
#[derive(Debug, Default)]
pub(crate) struct Tally(BTreeMap<String, (u64, u64)>);

impl Tally {
    /// Adds `checked` messages of `folder`, `missing` of them absent at the target.
    pub(crate) fn add(&mut self, folder: String, checked: u64, missing: u64) {
        let entry = self.0.entry(folder).or_default();
        entry.0 += checked;
        entry.1 += missing;
    }

    pub(crate) fn checked(&self) -> u64 {
        self.0.values().map(|(n, _)| n).sum()
    }

    pub(crate) fn missing(&self) -> u64 {
        self.0.values().map(|(_, m)| m).sum()
    }

    /// The preview: everything checked, what is already there.
    pub(crate) fn observation(&self) -> Observation {
        let (checked, missing) = (self.checked(), self.missing());
        Observation {
            items: checked,
            present: checked - missing,
            note: Some(format!(
                "{missing} of {checked} messages not yet at the target"
            )),
            ..Observation::default()
        }
    }

    /// The verdict: the number checked, or an error naming each folder with missing mail.
    /// `excused` missing messages are accounted for elsewhere (left behind and reported),
    /// so up to that many do not fail the check.
    pub(crate) fn verdict(&self, excused: u64) -> Result<u64, StepError> {
        if self.missing() <= excused {
            return Ok(self.checked());
        }
        let missing: Vec<String> = self
            .0
            .iter()
            .filter(|(_, (_, m))| *m > 0)
            .map(|(f, (n, m))| format!("{f}: {m} of {n} missing"))
            .collect();
        Err(StepError::permanent(format!(
            "verify: messages missing at the target ({})",
            missing.join(", ")
        )))
    }
}
