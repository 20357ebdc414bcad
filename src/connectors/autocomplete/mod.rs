//! Outlook's autocomplete cache, carried over a migration.
//!
//! After a move Outlook forgets every address users relied on typing, and entries that point
//! at the old Exchange (type `EX`, a legacyExchangeDN) bounce with IMCEAEX reports. This module
//! reads both cache formats (`.nk2`, major version 10, and the Outlook 2010+ stream, major
//! version 12), merges caches from several sources, rewrites EX entries to SMTP, and writes
//! everything a user or an administrator needs at the target:
//!
//! * [`format`](mod@format): the binary layout, read and written losslessly.
//! * [`entry`]: the recipient a row describes; building and retargeting rows.
//! * [`merge`]: dedupe and order rows from several caches.
//! * [`resolve`]: EX → SMTP via plan mailboxes and an address map; X500 proxies.
//! * [`export`]: contacts CSV, vCard, PowerShell and CSV outputs.
//! * [`carry_over`](mod@carry_over): the per-user step the engine runs, and the CLI's `convert`.

pub mod carry_over;
pub mod entry;
pub mod export;
pub mod format;
pub mod merge;
pub mod resolve;
pub mod tags;

use std::path::{Path, PathBuf};

pub use carry_over::{
    carry_over, convert, CarryOverReport, Conversion, ConvertTarget, OutputKind, WrittenFile,
};
pub use entry::Entry;
pub use format::{
    parse, parse_owned, AutocompleteFile, Expected, ParseError, Property, Row, ValueData,
    WriteError,
};
pub use resolve::{
    AddressMap, KnownMailbox, ResolvedBy, ResolvedEntry, UnresolvedEntry, X500Proxy,
};

/// Everything that can go wrong, each naming the file involved so a consultant handling a
/// dozen users' caches knows which one to look at.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum AutocompleteError {
    #[error("cannot read {}", .path.display())]
    #[diagnostic(code(cutover::autocomplete::read))]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {detail}", .path.display())]
    #[diagnostic(
        code(cutover::autocomplete::corrupt),
        help(
            "not an intact .nk2 or Stream_Autocomplete file; copy it again while Outlook is closed"
        )
    )]
    Corrupt { path: PathBuf, detail: ParseError },
    #[error("cannot encode {}: {source}", .path.display())]
    #[diagnostic(code(cutover::autocomplete::encode))]
    Encode {
        path: PathBuf,
        #[source]
        source: WriteError,
    },
    #[error("cannot write {}", .path.display())]
    #[diagnostic(code(cutover::autocomplete::write))]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}{}: {problem}", .path.display(), .line.map(|line| format!(":{line}")).unwrap_or_default())]
    #[diagnostic(
        code(cutover::autocomplete::address_map),
        help("the address map is CSV with a header naming `smtp` and `legacy_dn` and/or `display_name`")
    )]
    AddressMap {
        path: PathBuf,
        line: Option<u64>,
        problem: String,
    },
    #[error("user slug {0:?} cannot name output files: expected letters, digits, '.', '-' or '_'")]
    #[diagnostic(code(cutover::autocomplete::slug))]
    InvalidSlug(String),
    #[error("no autocomplete files were given")]
    #[diagnostic(code(cutover::autocomplete::no_inputs))]
    NoInputs,
}

/// Reads and parses one cache file.
pub fn read_file(path: &Path) -> Result<AutocompleteFile, AutocompleteError> {
    let bytes = std::fs::read(path).map_err(|source| AutocompleteError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_owned(bytes).map_err(|detail| AutocompleteError::Corrupt {
        path: path.to_owned(),
        detail,
    })
}
