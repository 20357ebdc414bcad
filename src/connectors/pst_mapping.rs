//! The mapping CSV of Microsoft's PST Import Service ("Use network upload to import your
//! organization's PST files to Microsoft 365", step 4): one row per uploaded PST, telling
//! the service which mailbox it goes to and where.
//!
//! The service is strict, and the seed migration's import job failed on a file name whose
//! case differed from the upload, so every value here comes from the same place the upload
//! takes it (the blob name) rather than being typed twice:
//! - the header is Microsoft's, exactly;
//! - `Workload` is `Exchange`;
//! - `FilePath` is the blob's folder inside the container, `Name` its file name, both
//!   case-sensitive as uploaded; `FilePath` never names the container (`ingestiondata`);
//! - `IsArchive` is `TRUE` for the archive mailbox, `FALSE` otherwise;
//! - `TargetRootFolder` blank imports into a new `Imported` folder, `/` merges into the
//!   mailbox's own folders, `/Name` imports under that folder;
//! - `ContentCodePage` only for ANSI PSTs (Unicode ones carry their own encoding);
//! - the SharePoint columns stay blank;
//! - at most 500 rows per file: more PSTs make more files, one import job each.
//!
//! Whether a PST is ANSI or Unicode comes from the PST connector's header check
//! ([`crate::connectors::pst::format_of`]).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Microsoft's header line, column for column.
pub const HEADER: [&str; 10] = [
    "Workload",
    "FilePath",
    "Name",
    "Mailbox",
    "IsArchive",
    "TargetRootFolder",
    "ContentCodePage",
    "SPFileContainer",
    "SPManifestContainer",
    "SPSiteUrl",
];

/// Rows per mapping file the import service accepts.
pub const MAX_ROWS_PER_FILE: usize = 500;

/// The container Microsoft's SAS URL points at; it must never appear in `FilePath`.
pub const INGESTION_CONTAINER: &str = "ingestiondata";

/// One PST's row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MappingRow {
    /// The blob's folder in the container (`acme-to-m365/bob`); empty for the container root.
    pub file_path: String,
    /// The blob's file name, exactly as uploaded.
    pub name: String,
    /// The mailbox's address.
    pub mailbox: String,
    pub is_archive: bool,
    /// `None`: blank (Microsoft's `Imported` folder).
    pub target_root_folder: Option<String>,
    /// Only for ANSI PSTs.
    pub content_code_page: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MappingError(pub String);

impl MappingRow {
    /// The row of the PST uploaded as `blob_name` (`/`-separated, inside the container).
    pub fn new(
        blob_name: &str,
        mailbox: &str,
        is_archive: bool,
        target_root_folder: Option<String>,
        content_code_page: Option<u32>,
    ) -> Result<MappingRow, MappingError> {
        let (file_path, name) = match blob_name.rsplit_once('/') {
            Some((path, name)) => (path.to_string(), name.to_string()),
            None => (String::new(), blob_name.to_string()),
        };
        if name.is_empty() {
            return Err(MappingError(format!("blob `{blob_name}` has no file name")));
        }
        if file_path.to_ascii_lowercase().contains(INGESTION_CONTAINER) {
            return Err(MappingError(format!(
                "FilePath `{file_path}` contains `{INGESTION_CONTAINER}`, which the import service rejects; rename the plan or the user"
            )));
        }
        if mailbox.trim().is_empty() {
            return Err(MappingError(format!("no mailbox for `{blob_name}`")));
        }
        Ok(MappingRow {
            file_path,
            name,
            mailbox: mailbox.to_string(),
            is_archive,
            target_root_folder,
            content_code_page,
        })
    }

    /// The ten columns, in [`HEADER`] order.
    pub fn fields(&self) -> [String; 10] {
        [
            "Exchange".to_string(),
            self.file_path.clone(),
            self.name.clone(),
            self.mailbox.clone(),
            if self.is_archive { "TRUE" } else { "FALSE" }.to_string(),
            self.target_root_folder.clone().unwrap_or_default(),
            self.content_code_page
                .map(|c| c.to_string())
                .unwrap_or_default(),
            String::new(),
            String::new(),
            String::new(),
        ]
    }

    /// The row as one CSV line (no terminator), for `plan` output.
    pub fn csv_line(&self) -> String {
        let text = render(std::slice::from_ref(self));
        text.lines().nth(1).unwrap_or_default().to_string()
    }
}

/// `TargetRootFolder` from a plan's `into:`: none → blank (Microsoft's `Imported`), `/` →
/// `/` (merge into the mailbox's folders), `Archive` or `/Archive/` → `/Archive`.
pub fn target_root_folder(into: Option<&str>) -> Option<String> {
    let into = into?.trim();
    if into.is_empty() {
        return None;
    }
    let inner = into.trim_matches('/');
    if inner.is_empty() {
        return Some("/".to_string());
    }
    Some(format!("/{inner}"))
}

/// One mapping file's text: header and rows, CRLF line ends (the portal runs on Windows),
/// fields quoted only when they need it.
pub fn render(rows: &[MappingRow]) -> String {
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    // Writing to a Vec cannot fail.
    let _ = writer.write_record(HEADER);
    for row in rows {
        let _ = writer.write_record(row.fields());
    }
    let bytes = writer.into_inner().unwrap_or_default();
    String::from_utf8(bytes).unwrap_or_default()
}

/// The file names for `rows` rows: `<stem>.csv`, or `<stem>-1.csv`, `<stem>-2.csv` … when
/// they need more than one file. At least one name (an empty mapping is still a file).
pub fn file_names(stem: &str, rows: usize) -> Vec<String> {
    let files = rows.div_ceil(MAX_ROWS_PER_FILE).max(1);
    if files == 1 {
        vec![format!("{stem}.csv")]
    } else {
        (1..=files).map(|n| format!("{stem}-{n}.csv")).collect()
    }
}

/// Writes the mapping files into `dir` ([`crate::files::write_atomically`]: each replaced atomically,
/// 0600, in 0700 folders); removes files of the same stem left from a larger mapping.
/// Returns the paths written.
pub fn write_files(dir: &Path, stem: &str, rows: &[MappingRow]) -> std::io::Result<Vec<PathBuf>> {
    let names = file_names(stem, rows.len());
    let mut written = Vec::new();
    let chunks: Vec<&[MappingRow]> = if rows.is_empty() {
        vec![&[]]
    } else {
        rows.chunks(MAX_ROWS_PER_FILE).collect()
    };
    for (name, chunk) in names.iter().zip(chunks) {
        let path = dir.join(name);
        crate::files::write_atomically(&path, render(chunk).as_bytes())?;
        written.push(path);
    }
    // A mapping that shrank must not leave a stale file an operator could pick in the portal.
    let single = format!("{stem}.csv");
    for entry in std::fs::read_dir(dir)?.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let ours = file == single
            || file
                .strip_prefix(&format!("{stem}-"))
                .and_then(|rest| rest.strip_suffix(".csv"))
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if ours && !names.contains(&file) {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_root_folder_follows_microsofts_rules() {
        assert_eq!(target_root_folder(None), None);
        assert_eq!(target_root_folder(Some("")), None);
        assert_eq!(target_root_folder(Some("/")), Some("/".into()));
        assert_eq!(target_root_folder(Some("Archive")), Some("/Archive".into()));
        assert_eq!(
            target_root_folder(Some("/Old Mail/2019/")),
            Some("/Old Mail/2019".into())
        );
    }

    #[test]
    fn file_path_and_name_come_from_the_blob_name() {
        let row = MappingRow::new("acme/Bob/Bob.PST", "bob@acme.co.uk", false, None, None).unwrap();
        assert_eq!(
            (row.file_path.as_str(), row.name.as_str()),
            ("acme/Bob", "Bob.PST")
        );
        let root = MappingRow::new("x.pst", "a@b.c", true, None, None).unwrap();
        assert_eq!(root.file_path, "");
        assert!(MappingRow::new("IngestionData/x.pst", "a@b.c", false, None, None).is_err());
        assert!(MappingRow::new("a/", "a@b.c", false, None, None).is_err());
    }

    #[test]
    fn more_than_five_hundred_rows_make_numbered_files() {
        assert_eq!(
            file_names("plan-pst-import", 0),
            vec!["plan-pst-import.csv"]
        );
        assert_eq!(
            file_names("plan-pst-import", 500),
            vec!["plan-pst-import.csv"]
        );
        assert_eq!(
            file_names("plan-pst-import", 1001),
            vec![
                "plan-pst-import-1.csv",
                "plan-pst-import-2.csv",
                "plan-pst-import-3.csv"
            ]
        );
    }
}
