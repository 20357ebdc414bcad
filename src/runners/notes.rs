//! One-line notes a step leaves for the client-facing report: where a generated file went,
//! what the step changed at the target, what a person still has to do. Kept as checkpoints
//! of the step (`note:<topic>`), so they are durable with the work they describe and survive
//! into the report of every later apply. Never secret: a note names a file holding a secret,
//! never the secret.

use std::collections::BTreeMap;

/// Checkpoint keys of notes start with this.
pub const PREFIX: &str = "note:";

/// The checkpoint of a note on `topic` (one note per topic: a newer one replaces it).
pub fn checkpoint(topic: &str, text: &str) -> (String, Vec<u8>) {
    (format!("{PREFIX}{topic}"), text.as_bytes().to_vec())
}

/// Counts kept beside notes (`note-count:<topic>`), so a note can say the total over every
/// run of the step. Not notes themselves: the report does not list them.
pub const COUNT_PREFIX: &str = "note-count:";

/// The total kept for `topic`, 0 when none.
pub fn count(checkpoints: &BTreeMap<String, Vec<u8>>, topic: &str) -> u64 {
    checkpoints
        .get(&format!("{COUNT_PREFIX}{topic}"))
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The checkpoint keeping `total` for `topic`.
pub fn count_checkpoint(topic: &str, total: u64) -> (String, Vec<u8>) {
    (
        format!("{COUNT_PREFIX}{topic}"),
        total.to_string().into_bytes(),
    )
}

/// Wall time a step's mailbox spent paused by the target's throttling, in milliseconds.
pub const THROTTLED_MS: &str = "throttled-ms";

/// A step's notes, in topic order.
pub fn from_checkpoints(checkpoints: &BTreeMap<String, Vec<u8>>) -> Vec<String> {
    checkpoints
        .range(PREFIX.to_owned()..)
        .take_while(|(k, _)| k.starts_with(PREFIX))
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn notes_round_trip_in_topic_order() {
        let checkpoints: BTreeMap<String, Vec<u8>> = [
            super::checkpoint("licence", "licence assigned"),
            ("imap:INBOX".to_string(), b"{}".to_vec()),
            super::checkpoint("account", "created"),
            ("pop3:1".to_string(), b"x".to_vec()),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            super::from_checkpoints(&checkpoints),
            vec!["created", "licence assigned"]
        );
    }
    use std::collections::BTreeMap;
}
