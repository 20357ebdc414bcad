//! `cutover pst show` and `cutover pst export`, as library calls: what a consultant who only
//! wants the data out of a PST gets, without a plan.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::connectors::mail::identity::{Identity, IdentityCounts};
use crate::connectors::mail::{FolderPath, MailError, MaildirTarget, MboxWriter, RawMessage};
use crate::connectors::mailflow::STREAM_PIECE;
use crate::connectors::pst::{
    self, calendar_ics, contacts_csv, contacts_vcard, ConvertOptions, Folder, FolderRole,
    MessageStream, Problem, PstError, PstFile, StoreInfo,
};

/// Why a PST command failed as a whole (per-message problems are in its report instead).
#[derive(Debug, thiserror::Error)]
pub enum PstOpsError {
    #[error(transparent)]
    Pst(#[from] PstError),
    #[error(transparent)]
    Mail(#[from] MailError),
    #[error("{}: {source}", .path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("interrupted")]
    Interrupted,
}

/// What `pst show` prints.
#[derive(Debug, Clone, Serialize)]
pub struct PstReport {
    pub path: String,
    pub store: StoreInfo,
    pub folders: Vec<FolderRow>,
    pub messages: usize,
    pub contacts: usize,
    pub distribution_lists: usize,
    pub events: usize,
    pub has_autocomplete: bool,
    pub problems: Vec<Problem>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FolderRow {
    pub nid: u32,
    pub path: String,
    pub target: String,
    pub role: Option<FolderRole>,
    pub messages: usize,
    pub associated: usize,
    pub container_class: Option<String>,
    pub in_ipm_subtree: bool,
}

/// Reads a PST's store, folders, counts and problems.
pub fn show(path: &Path) -> Result<PstReport, PstOpsError> {
    let file = PstFile::open(path)?;
    let folders: Vec<FolderRow> = file
        .folders()
        .iter()
        .filter(|f| f.role != Some(FolderRole::IpmSubtree) || f.message_count > 0)
        .map(|f| FolderRow {
            nid: f.nid,
            path: display_path(f),
            target: target_name(f),
            role: f.role,
            messages: f.message_count,
            associated: f.associated_count,
            container_class: f.container_class.clone(),
            in_ipm_subtree: f.in_ipm_subtree,
        })
        .collect();
    let (contacts, lists, mut problems) = file.contacts();
    let (events, mut event_problems) = file.events();
    problems.append(&mut event_problems);
    let mut all_problems = file.problems().to_vec();
    all_problems.append(&mut problems);
    for folder in file.folders() {
        // Reading every message's metadata finds unreadable messages without converting.
        all_problems.extend(file.messages(folder.nid).problems);
    }
    let has_autocomplete = file.autocomplete_stream().ok().flatten().is_some();
    Ok(PstReport {
        path: path.display().to_string(),
        store: file.store().clone(),
        messages: file.folders().iter().map(|f| f.message_count).sum(),
        folders,
        contacts: contacts.len(),
        distribution_lists: lists.len(),
        events: events.len(),
        has_autocomplete,
        problems: all_problems,
    })
}

fn display_path(folder: &Folder) -> String {
    if folder.path.is_empty() {
        "/".into()
    } else {
        folder.path.join("/")
    }
}

fn target_name(folder: &Folder) -> String {
    if folder.target_path.is_empty() {
        return String::new();
    }
    folder.target_path.join("/")
}

/// The forms `pst export` writes mail in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportFormat {
    /// A Maildir++ tree (Dovecot's layout), default folders under the target's names.
    Maildir,
    /// One mbox file per folder.
    Mbox,
    /// One .eml file per message, a directory per folder.
    Eml,
}

/// Hears about export progress. Called from the exporting thread.
pub trait ExportProgress {
    /// Called once before any message, with the number of messages to write.
    fn start(&mut self, _total: u64) {}
    /// Called after each message (written, or recorded as a problem).
    fn message(&mut self, _folder: &str) {}
    /// Whether to stop: checked before each message. Default: never.
    fn cancelled(&self) -> bool {
        false
    }
}

/// Does nothing: for callers without a terminal.
pub struct NoProgress;
impl ExportProgress for NoProgress {}

/// What `pst export` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ExportSummary {
    pub messages_written: usize,
    /// Messages already in a maildir from an earlier run (same bytes, same key).
    pub messages_present: usize,
    /// Items that are not mail (contacts, appointments, tasks, notes) left to the vCard and
    /// iCalendar files or not exported.
    pub not_mail: usize,
    pub contacts: usize,
    pub distribution_lists: usize,
    pub events: usize,
    pub files: Vec<String>,
    pub problems: Vec<Problem>,
    pub notes: Vec<String>,
    pub bytes: u64,
}

/// Message classes exported as mail. Contacts, lists, appointments, tasks and notes are not:
/// they go to contacts.vcf/csv and calendar.ics.
pub fn is_mail_class(class: &str) -> bool {
    let class = class.to_ascii_lowercase();
    ![
        "ipm.contact",
        "ipm.distlist",
        "ipm.appointment",
        "ipm.task",
        "ipm.stickynote",
        "ipm.activity",
    ]
    .iter()
    .any(|prefix| class.starts_with(prefix))
}

/// Writes a PST's mail to `dir` in `format`, plus contacts.vcf, contacts.csv and
/// calendar.ics. A maildir export is idempotent: a rerun counts each folder's message
/// identities (Message-ID, Date, Subject) and stores only what is missing; mbox and eml
/// exports replace their files.
pub fn export(
    path: &Path,
    format: ExportFormat,
    dir: &Path,
    progress: &mut dyn ExportProgress,
) -> Result<ExportSummary, PstOpsError> {
    let file = PstFile::open(path)?;
    create_private_dir(dir)?;
    let mut summary = ExportSummary::default();
    summary.problems.extend(file.problems().iter().cloned());
    let folders: Vec<&Folder> = file
        .folders()
        .iter()
        .filter(|f| f.in_ipm_subtree && !f.search_folder)
        .collect();
    progress.start(folders.iter().map(|f| f.message_count as u64).sum());
    let mut maildir = match format {
        ExportFormat::Maildir => Some(MaildirTarget::open(dir)?),
        _ => None,
    };
    for folder in folders {
        let label = display_path(folder);
        let segments = safe_segments(&folder.target_path);
        let mut mbox: Option<MboxWriter<std::io::BufWriter<fs::File>>> = None;
        let mut present: Option<IdentityCounts> = None;
        let mut seen_here: HashMap<Identity, u32> = HashMap::new();
        for nid in file.message_nids(folder.nid) {
            if progress.cancelled() {
                return Err(PstOpsError::Interrupted);
            }
            let result = file.summary(nid).and_then(|summary| {
                if is_mail_class(&summary.message_class) {
                    file.message_stream(nid, &ConvertOptions::default())
                        .map(Some)
                } else {
                    Ok(None)
                }
            });
            let mut message = match result {
                Ok(None) => {
                    summary.not_mail += 1;
                    progress.message(&label);
                    continue;
                }
                Ok(Some(message)) => message,
                Err(err) => {
                    summary.problems.push(Problem {
                        folder: label.clone(),
                        nid,
                        reason: err.to_string(),
                    });
                    progress.message(&label);
                    continue;
                }
            };
            summary.bytes += message.size();
            summary.notes.extend(
                message
                    .notes
                    .iter()
                    .map(|n| format!("{label} (node {nid:#x}): {n}")),
            );
            // Written piece by piece (large attachments straight from the file), except into
            // an mbox, whose `From ` escaping wants the message whole.
            let exported = match format {
                ExportFormat::Maildir => {
                    let target = maildir.as_mut().ok_or(PstOpsError::Interrupted)?;
                    let folder_path = FolderPath::new(segments.clone())?;
                    let present = match &mut present {
                        Some(p) => p,
                        None => present.insert(target.identities(&folder_path)?),
                    };
                    to_maildir(
                        &file,
                        &mut message,
                        target,
                        &folder_path,
                        present,
                        &mut seen_here,
                    )
                }
                ExportFormat::Mbox => {
                    let path = nested_path(dir, &segments, "mbox");
                    let writer = match &mut mbox {
                        Some(w) => w,
                        None => {
                            create_parent(&path)?;
                            summary.files.push(relative(dir, &path));
                            mbox.insert(MboxWriter::create(&path)?)
                        }
                    };
                    to_mbox(&file, &mut message, writer, &path)
                }
                ExportFormat::Eml => {
                    let mut eml = dir.to_path_buf();
                    eml.extend(&segments);
                    to_eml(&file, &mut message, &eml.join(format!("{nid:08x}.eml")))
                }
            };
            match exported {
                Ok(Exported::Written) => summary.messages_written += 1,
                Ok(Exported::Present) => summary.messages_present += 1,
                // The message could not be read to its end: a problem of this message only.
                Err(PstOpsError::Pst(err)) => summary.problems.push(Problem {
                    folder: label.clone(),
                    nid,
                    reason: err.to_string(),
                }),
                Err(e) => return Err(e),
            }
            progress.message(&label);
        }
        if let Some(writer) = mbox {
            writer.finish().map_err(|source| PstOpsError::Write {
                path: nested_path(dir, &segments, "mbox"),
                source,
            })?;
        }
    }
    let (contacts, lists, mut problems) = file.contacts();
    summary.problems.append(&mut problems);
    let (events, mut problems) = file.events();
    summary.problems.append(&mut problems);
    summary.contacts = contacts.len();
    summary.distribution_lists = lists.len();
    summary.events = events.len();
    if !contacts.is_empty() || !lists.is_empty() {
        write_private(
            &dir.join("contacts.vcf"),
            &contacts_vcard(&contacts, &lists),
        )?;
        write_private(&dir.join("contacts.csv"), &contacts_csv(&contacts))?;
        summary.files.push("contacts.vcf".into());
        summary.files.push("contacts.csv".into());
    }
    if !events.is_empty() {
        write_private(&dir.join("calendar.ics"), &calendar_ics(&events))?;
        summary.files.push("calendar.ics".into());
    }
    Ok(summary)
}

/// Folder names made safe for every export form: Maildir++ forbids `.` and `/` in a segment.
fn safe_segments(target_path: &[String]) -> Vec<String> {
    target_path
        .iter()
        .map(|s| {
            let cleaned: String = s
                .chars()
                .map(|c| {
                    if c == '.' || c == '/' || c == '\\' || c.is_control() {
                        '_'
                    } else {
                        c
                    }
                })
                .collect();
            if cleaned.is_empty() || cleaned == ".." {
                "_".into()
            } else {
                cleaned
            }
        })
        .collect()
}

fn nested_path(dir: &Path, segments: &[String], extension: &str) -> PathBuf {
    let mut path = dir.to_path_buf();
    match segments.split_last() {
        Some((last, parents)) => {
            for p in parents {
                path.push(p);
            }
            path.push(format!("{last}.{extension}"));
        }
        None => path.push(format!("INBOX.{extension}")),
    }
    path
}

fn relative(dir: &Path, path: &Path) -> String {
    path.strip_prefix(dir).unwrap_or(path).display().to_string()
}

fn create_parent(path: &Path) -> Result<(), PstOpsError> {
    match path.parent() {
        Some(parent) => create_private_dir(parent),
        None => Ok(()),
    }
}

fn create_private_dir(dir: &Path) -> Result<(), PstOpsError> {
    crate::files::create_dir_all(dir).map_err(|source| PstOpsError::Write {
        path: dir.to_path_buf(),
        source,
    })
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), PstOpsError> {
    let mut file = create_private(path)?;
    std::io::Write::write_all(&mut file, bytes).map_err(|source| PstOpsError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// `path` created (or emptied) as a private file, its folders made.
fn create_private(path: &Path) -> Result<fs::File, PstOpsError> {
    create_parent(path)?;
    crate::files::options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|source| PstOpsError::Write {
            path: path.to_path_buf(),
            source,
        })
}

/// How a message went into an export.
enum Exported {
    Written,
    /// A maildir export's earlier run stored it already.
    Present,
}

/// Stores `message` in a maildir export's `folder`, unless as many copies of it as this run
/// has met are there already (the folder holds `present` from earlier runs). Its identity
/// comes from its first piece, which holds its header section.
fn to_maildir(
    file: &PstFile,
    message: &mut MessageStream,
    target: &mut MaildirTarget,
    folder: &FolderPath,
    present: &IdentityCounts,
    seen_here: &mut HashMap<Identity, u32>,
) -> Result<Exported, PstOpsError> {
    let mut first = Vec::new();
    let more = message.next_piece(file, &mut first, STREAM_PIECE)?;
    let identity = Identity::of_message(&first);
    let seen = seen_here.entry(identity).or_insert(0u32);
    *seen += 1;
    if *seen <= present.get(&identity) {
        return Ok(Exported::Present);
    }
    // Dropped on an error, the delivery removes its file.
    let mut delivery = target.begin(folder, &message.flags, message.size())?;
    delivery.write(&first)?;
    if more {
        each_piece(file, message, |p| Ok(delivery.write(p)?))?;
    }
    target.finish(delivery, message.internal_date, identity)?;
    Ok(Exported::Written)
}

/// Appends `message` to the mbox `writer` (writing `path`): read whole, for its escaping.
fn to_mbox(
    file: &PstFile,
    message: &mut MessageStream,
    writer: &mut MboxWriter<std::io::BufWriter<fs::File>>,
    path: &Path,
) -> Result<Exported, PstOpsError> {
    let mut bytes = Vec::with_capacity(message.size() as usize);
    each_piece(file, message, |p| {
        bytes.extend_from_slice(p);
        Ok(())
    })?;
    let raw = RawMessage::new(bytes)
        .with_flags(message.flags.clone())
        .with_internal_date(message.internal_date);
    writer.write(&raw).map_err(|source| PstOpsError::Write {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(Exported::Written)
}

/// Writes `message` as the file `eml`, piece by piece; removed again when it cannot be
/// written whole.
fn to_eml(
    file: &PstFile,
    message: &mut MessageStream,
    eml: &Path,
) -> Result<Exported, PstOpsError> {
    let mut out = create_private(eml)?;
    let written = each_piece(file, message, |p| {
        std::io::Write::write_all(&mut out, p).map_err(|source| PstOpsError::Write {
            path: eml.to_path_buf(),
            source,
        })
    });
    if written.is_err() {
        drop(out);
        let _ = fs::remove_file(eml);
    }
    written.map(|()| Exported::Written)
}

/// Hands the rest of `message` to `each`, piece by piece.
fn each_piece(
    file: &PstFile,
    message: &mut MessageStream,
    mut each: impl FnMut(&[u8]) -> Result<(), PstOpsError>,
) -> Result<(), PstOpsError> {
    let mut piece = Vec::new();
    while message.next_piece(file, &mut piece, STREAM_PIECE)? {
        each(&piece)?;
    }
    Ok(())
}

/// The PST's autocomplete stream, for `autocomplete` steps and `pst show`.
pub fn autocomplete_stream(path: &Path) -> Result<Option<Vec<u8>>, PstOpsError> {
    Ok(PstFile::open(path)?.autocomplete_stream()?)
}

#[doc(hidden)]
pub use pst::MessageSummary;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_folder_names_are_cleaned() {
        assert_eq!(
            safe_segments(&["a.b".into(), "c/d".into(), "".into()]),
            vec!["a_b", "c_d", "_"]
        );
        assert!(is_mail_class("IPM.Note"));
        assert!(is_mail_class("REPORT.IPM.Note.NDR"));
        assert!(!is_mail_class("IPM.Contact"));
        assert!(!is_mail_class("ipm.appointment"));
    }
}
