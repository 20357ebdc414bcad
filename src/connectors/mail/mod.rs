//! Local mail: mbox files and Maildir++ trees, read and written without any server.
//!
//! These are the connectors that let a whole migration run on one machine: an mbox export or a
//! maildir is a source, a maildir is a target. The engine's copy step drives them through
//! plain types: a source yields [`RawMessage`]s with a stable position to checkpoint
//! (an mbox byte offset, a maildir file name); a target stores what it is given and counts
//! what it holds by [`identity::Identity`], which is what makes a resumed copy idempotent.
//!
//! Everything streams: memory is bounded by the largest single message, never by a mailbox.

pub mod corpus;
pub(crate) mod date;
mod encoding;
pub mod identity;
pub mod maildir;
pub mod mbox;
pub mod message;
pub mod utf7;
pub mod window;

use std::io;
use std::path::PathBuf;

pub use maildir::{FolderPath, Maildir, MaildirEntry, MaildirFolder, MaildirTarget};
pub use mbox::{MboxEntry, MboxMessage, MboxReader, MboxVariant, MboxWriter};
pub use message::{Flag, Flags, RawMessage};
pub use window::DateWindow;

/// Errors name the file and, where one exists, the byte offset, so a report can point a
/// consultant at the exact spot in a 20 GB export.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("{}{}: {source}", .path.display(), at(.offset))]
    Io {
        path: PathBuf,
        offset: Option<u64>,
        #[source]
        source: io::Error,
    },
    #[error("{}{}: {reason}", .path.display(), at(&Some(*.offset)))]
    Malformed {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("invalid folder name {name:?}: {reason}")]
    InvalidFolder { name: String, reason: String },
}

fn at(offset: &Option<u64>) -> String {
    match offset {
        Some(o) => format!(" at byte {o}"),
        None => String::new(),
    }
}

impl MailError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        MailError::Io {
            path: path.into(),
            offset: None,
            source,
        }
    }

    pub(crate) fn io_at(path: impl Into<PathBuf>, offset: u64, source: io::Error) -> Self {
        MailError::Io {
            path: path.into(),
            offset: Some(offset),
            source,
        }
    }
}

pub type Result<T, E = MailError> = std::result::Result<T, E>;
