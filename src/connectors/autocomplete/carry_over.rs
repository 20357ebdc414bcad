//! The `autocomplete.<user>` step and the CLI's `convert`: read caches, resolve EX entries,
//! merge, write outputs.

use std::collections::{BTreeSet, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::entry::Entry;
use super::export;
use super::format::{AutocompleteFile, Row};
use super::merge::{assemble, merge_rows};
use super::resolve::{
    AddressMap, KnownMailbox, ResolvedEntry, Resolver, RowResolution, UnresolvedEntry, X500Proxy,
};
use super::tags;
use super::{read_file, AutocompleteError};

/// The kinds of file the step writes per user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputKind {
    /// For `outlook.exe /importnk2` (Outlook 2010+ imports it once into the stream).
    Nk2,
    /// A v12 stream; rename to `Stream_Autocomplete_0_<hex>.dat` in RoamCache.
    Stream,
    /// Outlook's contacts CSV import.
    ContactsCsv,
    /// vCard 4.0 for any other client.
    #[serde(rename = "vcard")]
    VCard,
    /// Exchange Online PowerShell adding the X500 proxies.
    X500Script,
    X500Csv,
    /// EX entries nothing resolved, in the address map's format.
    UnresolvedCsv,
}

impl OutputKind {
    pub const ALL: [OutputKind; 7] = [
        OutputKind::Nk2,
        OutputKind::Stream,
        OutputKind::ContactsCsv,
        OutputKind::VCard,
        OutputKind::X500Script,
        OutputKind::X500Csv,
        OutputKind::UnresolvedCsv,
    ];

    /// The file name for a user; fixed so the engine and the runbook can refer to it.
    pub fn file_name(self, user_slug: &str) -> String {
        let suffix = match self {
            OutputKind::Nk2 => "autocomplete.nk2",
            OutputKind::Stream => "Stream_Autocomplete.dat",
            OutputKind::ContactsCsv => "contacts.csv",
            OutputKind::VCard => "contacts.vcf",
            OutputKind::X500Script => "x500-proxies.ps1",
            OutputKind::X500Csv => "x500-proxies.csv",
            OutputKind::UnresolvedCsv => "unresolved-ex.csv",
        };
        format!("{user_slug}.{suffix}")
    }
}

/// One output file of the step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WrittenFile {
    pub kind: OutputKind,
    pub path: PathBuf,
    pub bytes: usize,
    /// False when the file already held exactly these bytes and was left untouched.
    pub changed: bool,
}

/// What the step did, for state and for the consultant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CarryOverReport {
    pub outputs: Vec<WrittenFile>,
    /// Rows in the written caches after merging.
    pub entries: usize,
    pub resolved: Vec<ResolvedEntry>,
    /// EX entries left out of the Outlook outputs because nothing resolved them.
    pub unresolved: Vec<UnresolvedEntry>,
    pub x500_proxies: Vec<X500Proxy>,
}

/// Rows of all inputs after EX resolution.
struct Resolved {
    files: Vec<AutocompleteFile>,
    /// Non-EX and resolved rows, in input order.
    usable: Vec<Row>,
    /// EX rows nothing resolved, in input order.
    unresolved_rows: Vec<Row>,
    resolved: Vec<ResolvedEntry>,
    unresolved: Vec<UnresolvedEntry>,
    proxies: Vec<X500Proxy>,
}

fn load_and_resolve(
    inputs: &[PathBuf],
    known: &[KnownMailbox],
    address_map: Option<&AddressMap>,
) -> Result<Resolved, AutocompleteError> {
    if inputs.is_empty() {
        return Err(AutocompleteError::NoInputs);
    }
    let resolver = Resolver::new(known, address_map);
    let mut resolved = Resolved {
        files: Vec::with_capacity(inputs.len()),
        usable: Vec::new(),
        unresolved_rows: Vec::new(),
        resolved: Vec::new(),
        unresolved: Vec::new(),
        proxies: Vec::new(),
    };
    let mut proxies = BTreeSet::new();
    let mut seen_resolved = HashSet::new();
    let mut seen_unresolved = HashSet::new();
    for path in inputs {
        let mut file = read_file(path)?;
        for mut row in std::mem::take(&mut file.rows) {
            match resolver.resolve_row(&mut row) {
                RowResolution::NotExchange => resolved.usable.push(row),
                RowResolution::Resolved { entry, proxy } => {
                    if seen_resolved.insert(entry.legacy_dn.to_lowercase()) {
                        resolved.resolved.push(entry);
                    }
                    proxies.extend(proxy);
                    resolved.usable.push(row);
                }
                RowResolution::Unresolved { reason } => {
                    let entry = row.entry();
                    if seen_unresolved.insert(entry.email_address.to_lowercase()) {
                        resolved.unresolved.push(UnresolvedEntry {
                            display_name: entry.display_name,
                            legacy_dn: entry.email_address,
                            reason,
                            source: path.clone(),
                        });
                    }
                    resolved.unresolved_rows.push(row);
                }
            }
        }
        resolved.files.push(file);
    }
    resolved.proxies = proxies.into_iter().collect();
    Ok(resolved)
}

/// Runs the `autocomplete.<user>` step: reads `inputs` (any mix of `.nk2` and v12 streams, in
/// the order given), resolves EX entries against `known` and the optional address map CSV,
/// merges, and writes every [`OutputKind`] into `out_dir` as `<user_slug>.<suffix>`.
///
/// Files are written atomically (temporary file, then rename) and only when their bytes
/// change; the bytes depend only on the inputs, so a second run reports nothing changed.
/// Unresolved EX entries are kept out of the Outlook outputs, since sending to them bounces,
/// and are listed in the report and in the unresolved CSV.
pub fn carry_over(
    inputs: &[PathBuf],
    known: &[KnownMailbox],
    address_map: Option<&Path>,
    out_dir: &Path,
    user_slug: &str,
) -> Result<CarryOverReport, AutocompleteError> {
    let slug_is_safe = !user_slug.is_empty()
        && !user_slug.starts_with('.')
        && user_slug
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if !slug_is_safe {
        return Err(AutocompleteError::InvalidSlug(user_slug.to_owned()));
    }
    let map = address_map.map(AddressMap::from_path).transpose()?;
    let resolved = load_and_resolve(inputs, known, map.as_ref())?;
    let rows = merge_rows(resolved.usable);
    let entries: Vec<Entry> = rows.iter().map(Row::entry).collect();
    let sources: Vec<&AutocompleteFile> = resolved.files.iter().collect();
    let nk2 = assemble(&sources, tags::MAJOR_NK2, rows.clone());
    let stream = assemble(&sources, tags::MAJOR_STREAM, rows);

    crate::files::create_dir_all(out_dir).map_err(|source| AutocompleteError::Write {
        path: out_dir.to_owned(),
        source,
    })?;
    let mut outputs = Vec::with_capacity(OutputKind::ALL.len());
    for kind in OutputKind::ALL {
        let path = out_dir.join(kind.file_name(user_slug));
        let encode = |file: &AutocompleteFile| {
            file.to_bytes().map_err(|source| AutocompleteError::Encode {
                path: path.clone(),
                source,
            })
        };
        let bytes = match kind {
            OutputKind::Nk2 => encode(&nk2)?,
            OutputKind::Stream => encode(&stream)?,
            OutputKind::ContactsCsv => export::contacts_csv(&entries),
            OutputKind::VCard => export::vcards(&entries),
            OutputKind::X500Script => export::x500_powershell(&resolved.proxies),
            OutputKind::X500Csv => export::x500_csv(&resolved.proxies),
            OutputKind::UnresolvedCsv => export::unresolved_csv(&resolved.unresolved),
        };
        let changed = write_if_changed(&path, &bytes)?;
        outputs.push(WrittenFile {
            kind,
            path,
            bytes: bytes.len(),
            changed,
        });
    }
    Ok(CarryOverReport {
        outputs,
        entries: entries.len(),
        resolved: resolved.resolved,
        unresolved: resolved.unresolved,
        x500_proxies: resolved.proxies,
    })
}

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename, so a
/// crash leaves either the old file or the new one, never half of one. Returns whether the
/// file changed.
pub fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<bool, AutocompleteError> {
    if std::fs::read(path).is_ok_and(|existing| existing == bytes) {
        return Ok(false);
    }
    let failed = |source| AutocompleteError::Write {
        path: path.to_owned(),
        source,
    };
    let file_name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = path.with_file_name(format!(".{file_name}.cutover-tmp"));
    let result = (|| {
        let mut file = crate::files::options()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if let Err(source) = result {
        let _ = std::fs::remove_file(&temporary);
        return Err(failed(source));
    }
    Ok(true)
}

/// The output formats of `cutover autocomplete convert`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvertTarget {
    Nk2,
    Dat,
    Csv,
    VCard,
}

/// The result of a conversion, with what the caller should warn about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversion {
    pub bytes: Vec<u8>,
    pub entries: usize,
    pub resolved: Vec<ResolvedEntry>,
    pub unresolved: Vec<UnresolvedEntry>,
    /// Entries other than `unresolved` that the target format cannot hold (no SMTP address
    /// for CSV/vCard). Unresolved EX entries are left out of CSV/vCard too.
    pub left_out: Vec<Entry>,
}

/// Merges `inputs` into one cache in the target format. Unlike [`carry_over`], unresolved EX
/// rows stay in `.nk2`/`.dat` output (a conversion should not lose rows); CSV and vCard cannot
/// hold them and list them in `left_out`.
/// `output` only names the destination in errors; the caller writes `bytes`.
pub fn convert(
    inputs: &[PathBuf],
    target: ConvertTarget,
    address_map: Option<&AddressMap>,
    output: &Path,
) -> Result<Conversion, AutocompleteError> {
    let resolved = load_and_resolve(inputs, &[], address_map)?;
    let rows = merge_rows(resolved.usable.into_iter().chain(resolved.unresolved_rows));
    let entries: Vec<Entry> = rows.iter().map(Row::entry).collect();
    let sources: Vec<&AutocompleteFile> = resolved.files.iter().collect();
    let encode = |major| {
        assemble(&sources, major, rows.clone())
            .to_bytes()
            .map_err(|source| AutocompleteError::Encode {
                path: output.to_owned(),
                source,
            })
    };
    let (bytes, left_out) = match target {
        ConvertTarget::Nk2 => (encode(tags::MAJOR_NK2)?, Vec::new()),
        ConvertTarget::Dat => (encode(tags::MAJOR_STREAM)?, Vec::new()),
        ConvertTarget::Csv | ConvertTarget::VCard => {
            let unresolved: HashSet<String> = resolved
                .unresolved
                .iter()
                .map(|entry| entry.legacy_dn.to_lowercase())
                .collect();
            let left_out = entries
                .iter()
                .filter(|entry| entry.smtp_address.is_none())
                .filter(|entry| !unresolved.contains(&entry.email_address.to_lowercase()))
                .cloned()
                .collect();
            let bytes = if target == ConvertTarget::Csv {
                export::contacts_csv(&entries)
            } else {
                export::vcards(&entries)
            };
            (bytes, left_out)
        }
    };
    Ok(Conversion {
        bytes,
        entries: entries.len(),
        resolved: resolved.resolved,
        unresolved: resolved.unresolved,
        left_out,
    })
}
