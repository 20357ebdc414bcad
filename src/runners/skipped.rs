//! Messages a copy deliberately left behind (over the size limit, or refused by the target as
//! too big): each one recorded as a checkpoint of its step, so the report can list them with
//! folder, size, subject and date — a consultant must be able to tell the client exactly
//! which mail did not move. Messages copied without some of their parts (a PST attachment the
//! file no longer holds readable) are recorded the same way under their own prefix
//! ([`partial_from_checkpoints`]): moved, but not whole.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// Checkpoint keys of skipped-message records start with this.
pub const PREFIX: &str = "skipped:";

/// One message left behind, as the report shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedMessage {
    /// The source folder (Unicode, `/` between levels), `INBOX` for POP3.
    pub folder: String,
    /// The message's id at the source: IMAP UID or POP3 UIDL.
    pub uid: String,
    /// Size in bytes.
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// When it was received (RFC 3339, UTC), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    /// Why it was left behind.
    #[serde(default = "over_limit")]
    pub reason: String,
}

fn over_limit() -> String {
    OVER_LIMIT.to_string()
}

/// The reason of a message over `settings.max_message_size_mb` (or the target's APPENDLIMIT).
pub const OVER_LIMIT: &str = "larger than the size limit";

/// The reason of a message flagged `\Deleted` at the source but not expunged
/// (`settings.deleted_messages: skip`).
pub const FLAGGED_DELETED: &str = "flagged \\Deleted at the source, not expunged";

impl SkippedMessage {
    pub fn new(
        folder: impl Into<String>,
        uid: impl Into<String>,
        size: u64,
        subject: Option<String>,
        received: Option<SystemTime>,
        reason: impl Into<String>,
    ) -> Self {
        SkippedMessage {
            folder: folder.into(),
            uid: uid.into(),
            size,
            subject,
            date: received.map(crate::state::format_utc),
            reason: reason.into(),
        }
    }

    /// The checkpoint recording it: `skipped:<scope>:<uid>` → JSON, where `scope` tells the
    /// step's sources apart (a folder's wire name, `pop3`).
    pub fn checkpoint(&self, scope: &str) -> (String, String) {
        (
            format!("{PREFIX}{scope}:{}", self.uid),
            serde_json::to_string(self).unwrap_or_default(),
        )
    }
}

/// The skipped-message records among a step's checkpoints, in key order. Unreadable records
/// are left out rather than failing a report.
pub fn from_checkpoints(checkpoints: &BTreeMap<String, Vec<u8>>) -> Vec<SkippedMessage> {
    records_under(PREFIX, checkpoints)
}

/// The records of messages copied without some of their parts, in key order; `reason` says
/// what each lacks.
pub fn partial_from_checkpoints(checkpoints: &BTreeMap<String, Vec<u8>>) -> Vec<SkippedMessage> {
    records_under(crate::connectors::mailflow::PARTIAL_PREFIX, checkpoints)
}

fn records_under(prefix: &str, checkpoints: &BTreeMap<String, Vec<u8>>) -> Vec<SkippedMessage> {
    checkpoints
        .range(prefix.to_string()..)
        .take_while(|(k, _)| k.starts_with(prefix))
        .filter_map(|(_, v)| serde_json::from_slice(v).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_old_records_still_read() {
        let m = SkippedMessage::new(
            "Archive/2023",
            "17",
            40 << 20,
            Some("Scans".into()),
            Some(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000)),
            OVER_LIMIT,
        );
        let (key, value) = m.checkpoint("Archive.2023");
        assert_eq!(key, "skipped:Archive.2023:17");
        let mut cps = BTreeMap::new();
        cps.insert(key, value.into_bytes());
        cps.insert("imap:INBOX".into(), b"{}".to_vec());
        // A record written before date and reason existed.
        cps.insert(
            "skipped:pop3:abc".into(),
            br#"{"folder":"INBOX","uid":"abc","size":5,"subject":null}"#.to_vec(),
        );
        let found = from_checkpoints(&cps);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0], m);
        assert_eq!(found[0].date.as_deref(), Some("2023-11-14T22:13:20Z"));
        assert_eq!(found[1].reason, OVER_LIMIT);
    }
}
