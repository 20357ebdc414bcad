//! Errors of the PST reader. Every error names the file, the byte offset and the structure
//! that was being read (`header`, `NBT page`, `HN page map`, …), so a consultant can tell a
//! truncated copy from a damaged B-tree page without a hex editor.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Why a PST (or a part of it) could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PstError {
    /// The operating system refused a read (or the file ended early).
    #[error("{}: cannot read {structure} at byte {offset:#x}: {source}", .path.display())]
    Io {
        path: PathBuf,
        offset: u64,
        structure: String,
        #[source]
        source: io::Error,
    },
    /// The bytes are not what MS-PST says they must be.
    #[error("{}: {structure} at byte {offset:#x}: {reason}", .path.display())]
    Corrupt {
        path: PathBuf,
        offset: u64,
        structure: String,
        reason: String,
    },
    /// A valid file using a feature this reader does not implement (e.g. 4K-page OST files).
    #[error("{}: {structure} at byte {offset:#x}: not supported: {reason}", .path.display())]
    Unsupported {
        path: PathBuf,
        offset: u64,
        structure: String,
        reason: String,
    },
    /// The caller asked for a node that the file does not have.
    #[error("{}: no {what} with node id {nid:#x}", .path.display())]
    NoSuchNode {
        path: PathBuf,
        what: &'static str,
        nid: u32,
    },
}

impl PstError {
    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            PstError::Io { path, .. }
            | PstError::Corrupt { path, .. }
            | PstError::Unsupported { path, .. }
            | PstError::NoSuchNode { path, .. } => path,
        }
    }

    /// The byte offset the error points at, when it points at one.
    pub fn offset(&self) -> Option<u64> {
        match self {
            PstError::Io { offset, .. }
            | PstError::Corrupt { offset, .. }
            | PstError::Unsupported { offset, .. } => Some(*offset),
            PstError::NoSuchNode { .. } => None,
        }
    }

    /// The structure that was being read, e.g. `NBT page`.
    pub fn structure(&self) -> Option<&str> {
        match self {
            PstError::Io { structure, .. }
            | PstError::Corrupt { structure, .. }
            | PstError::Unsupported { structure, .. } => Some(structure),
            PstError::NoSuchNode { .. } => None,
        }
    }
}

pub type Result<T, E = PstError> = std::result::Result<T, E>;

/// Where in the file a structure lives: the file path plus the offset of the block or page
/// holding it. Readers carry one so that errors deep in the LTP layer still name the byte.
#[derive(Clone)]
pub(crate) struct Site<'a> {
    pub path: &'a Path,
    pub offset: u64,
}

impl Site<'_> {
    pub fn corrupt(&self, structure: impl fmt::Display, reason: impl fmt::Display) -> PstError {
        PstError::Corrupt {
            path: self.path.to_path_buf(),
            offset: self.offset,
            structure: structure.to_string(),
            reason: reason.to_string(),
        }
    }
}

/// Reads a little-endian integer at `at` from `data`, or reports the structure as truncated.
pub(crate) fn le_u16(data: &[u8], at: usize) -> Option<u16> {
    data.get(at..at.checked_add(2)?)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
}

pub(crate) fn le_u32(data: &[u8], at: usize) -> Option<u32> {
    data.get(at..at.checked_add(4)?)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

pub(crate) fn le_u64(data: &[u8], at: usize) -> Option<u64> {
    data.get(at..at.checked_add(8)?).map(|b| {
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        u64::from_le_bytes(a)
    })
}
