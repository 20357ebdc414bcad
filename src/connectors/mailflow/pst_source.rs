//! An Outlook PST file as a [`MailSource`]: every mail folder below the IPM subtree (what the
//! user sees in Outlook), each message converted to RFC 5322 by `connectors::pst` — the same
//! bytes on every run, so a resumed copy recognizes what it already stored.
//!
//! Folders are named by node id (hex), which stays while a folder is renamed; their path is
//! the Outlook path with the default folders named as the target names them, whatever the
//! PST's language (`Caixa de Entrada` is the inbox), and the default folders carry their
//! special-use role, so a PST's sent mail lands in the target's own sent folder. With the
//! migration's `into`, the whole PST lands below that folder instead (an archive PST into
//! `Archive`), default folders included and keeping their names.
//!
//! Contacts, calendars, tasks and notes are not mail: `cutover pst export` writes them as
//! vCard and iCalendar. Associated (hidden) messages are never copied.
//!
//! Checkpoint: `pst:<folder node id>` → the last settled message's node id. Messages are
//! listed in node-id order, which a PST never reorders. A message the reader cannot read is
//! listed with its problem and left behind, reported with folder, node id and why; one whose
//! parts it cannot all read or carry over (a damaged attachment, an attachment stored as a
//! link, an unreadable recipient table) is copied without them and reported with what it
//! lacks ([`Fetched::Partial`]).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use super::{
    BodyReader, BoxFuture, Checkpoints, Fetched, FlowError, FlowResult, FolderStatus, MailSource,
    MessageMeta, Opened, Side, SourceFolder, SourceSession, SpecialUse, STREAM_PIECE,
};
use crate::connectors::mail::identity::Identity;
use crate::connectors::mail::{DateWindow, Flags};
use crate::connectors::pst::{
    ConvertOptions, Folder, FolderRole, MessageStream, PstError, PstFile,
};

/// Folders converted at once: the file is read with `pread`, shared by all sessions.
const SESSIONS: usize = 4;

/// See the module documentation.
pub struct PstSource {
    file: PathBuf,
    window: Option<DateWindow>,
    /// The folder the whole PST lands below (empty: the mailbox root).
    into: Vec<String>,
    options: ConvertOptions,
    /// Opened once, on first use, and shared by every session of the step.
    open: Mutex<Option<Arc<PstFile>>>,
}

impl std::fmt::Debug for PstSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PstSource")
            .field("file", &self.file)
            .field("into", &self.into)
            .finish_non_exhaustive()
    }
}

impl PstSource {
    /// `options`: what conversion may know beyond the file (Exchange addresses of the plan's
    /// users, to write SMTP addresses instead).
    pub fn new(
        file: PathBuf,
        window: Option<DateWindow>,
        into: Vec<String>,
        options: ConvertOptions,
    ) -> Self {
        PstSource {
            file,
            window,
            into,
            options,
            open: Mutex::new(None),
        }
    }

    fn pst(&self) -> FlowResult<Arc<PstFile>> {
        let mut slot = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(pst) = slot.as_ref() {
            return Ok(Arc::clone(pst));
        }
        let pst = Arc::new(PstFile::open(&self.file).map_err(pst_error)?);
        *slot = Some(Arc::clone(&pst));
        Ok(pst)
    }
}

fn pst_error(e: crate::connectors::pst::PstError) -> FlowError {
    FlowError::Permanent(e.to_string())
}

impl MailSource for PstSource {
    fn describe(&self) -> String {
        let mut d = format!("pst|{}|{}", self.file.display(), self.into.join("/"));
        if let Some(w) = &self.window {
            d.push('|');
            d.push_str(&w.describe());
        }
        d
    }

    fn max_sessions(&self) -> usize {
        SESSIONS
    }

    fn open(&self) -> BoxFuture<'_, FlowResult<Box<dyn SourceSession>>> {
        Box::pin(async move {
            // Sessions run on the runner's blocking lane threads: reading the file blocks freely.
            let pst = self.pst()?;
            Ok(Box::new(PstSession {
                pst,
                window: self.window,
                into: self.into.clone(),
                options: self.options.clone(),
            }) as Box<dyn SourceSession>)
        })
    }
}

struct PstSession {
    pst: Arc<PstFile>,
    window: Option<DateWindow>,
    into: Vec<String>,
    options: ConvertOptions,
}

/// Whether a folder holds mail (not contacts, calendar items, tasks, notes or a search).
fn holds_mail(folder: &Folder) -> bool {
    let non_mail_role = matches!(
        folder.role,
        Some(
            FolderRole::Calendar
                | FolderRole::Contacts
                | FolderRole::Tasks
                | FolderRole::Journal
                | FolderRole::Notes
                | FolderRole::SearchRoot
        )
    );
    let class_is_mail = folder
        .container_class
        .as_deref()
        .is_none_or(|c| c.is_empty() || c.starts_with("IPF.Note") || c == "IPF");
    folder.in_ipm_subtree && !folder.search_folder && !non_mail_role && class_is_mail
}

/// Whether a message class is mail (notes, meeting requests, reports, posts).
fn is_mail(class: &str) -> bool {
    let c = class.to_ascii_uppercase();
    c.is_empty()
        || c == "IPM"
        || c.starts_with("IPM.NOTE")
        || c.starts_with("IPM.SCHEDULE.MEETING")
        || c.starts_with("IPM.POST")
        || c.starts_with("REPORT.")
}

fn special_of(role: Option<FolderRole>) -> Option<SpecialUse> {
    match role? {
        FolderRole::SentItems => Some(SpecialUse::Sent),
        FolderRole::DeletedItems => Some(SpecialUse::Trash),
        FolderRole::Drafts => Some(SpecialUse::Drafts),
        FolderRole::Junk => Some(SpecialUse::Junk),
        _ => None,
    }
}

/// The size a message will have once converted, from Outlook's (PidTagMessageSize, which
/// counts attachment data raw): attachments grow by a third in base64, and in mail with large
/// attachments — the mail whose size decides anything (the plan's size limit, whether a copy
/// holds the message or streams it) — they are nearly all of it.
fn converted_size_estimate(outlook_size: u64) -> u64 {
    outlook_size.saturating_mul(4) / 3
}

fn folder_id(nid: u32) -> String {
    format!("{nid:x}")
}

fn nid_of(folder: &SourceFolder) -> FlowResult<u32> {
    u32::from_str_radix(&folder.id, 16)
        .map_err(|_| FlowError::Permanent(format!("not a PST folder id: {:?}", folder.id)))
}

fn checkpoint_key(folder: &SourceFolder) -> String {
    format!("pst:{}", folder.id)
}

fn settled_through(folder: &SourceFolder, checkpoints: &Checkpoints) -> Option<u32> {
    checkpoints
        .get(&checkpoint_key(folder))
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|s| s.parse().ok())
}

impl PstSession {
    /// The folder's mail messages on `side` of the checkpoint, in node-id order.
    fn nids(
        &self,
        folder: &SourceFolder,
        checkpoints: &Checkpoints,
        side: Side,
    ) -> FlowResult<Vec<u32>> {
        let through = settled_through(folder, checkpoints);
        let mut nids = self.pst.message_nids(nid_of(folder)?);
        nids.sort_unstable();
        nids.retain(|n| match (side, through) {
            (Side::Pending, Some(t)) => *n > t,
            (Side::Pending, None) => true,
            (Side::Settled, Some(t)) => *n <= t,
            (Side::Settled, None) => false,
        });
        Ok(nids)
    }

    fn meta(&self, folder: &SourceFolder, nid: u32) -> Option<MessageMeta> {
        let checkpoint = (checkpoint_key(folder), nid.to_string().into_bytes());
        let summary = match self.pst.summary(nid) {
            Ok(s) => s,
            Err(e) => {
                return Some(MessageMeta {
                    id: nid.to_string(),
                    size: 0,
                    identity: None,
                    subject: None,
                    received: None,
                    in_window: true,
                    problem: Some(format!("node {nid:#x} in {}: {e}", folder.display)),
                    deleted: false,
                    checkpoint,
                })
            }
        };
        if !is_mail(&summary.message_class) {
            return None;
        }
        let received = summary
            .delivery_time
            .or(summary.submit_time)
            .and_then(|t| u64::try_from(t).ok())
            .map(|t| std::time::UNIX_EPOCH + std::time::Duration::from_secs(t));
        if !self.window.is_none_or(|w| w.contains(received)) {
            return None;
        }
        // PidTagMessageSize, which Outlook keeps; a file written or edited by other software
        // may lack it or understate it, so for a message with attachments the attachment
        // table's sizes bound it from below: a message with large attachments is streamed,
        // never fetched whole on a size that says it is small.
        let outlook_size = if summary.size == 0 || summary.has_attachments {
            summary
                .size
                .max(self.pst.attachments_size(nid).unwrap_or(0))
        } else {
            summary.size
        };
        let (identity, problem) = match self.pst.header_section(nid) {
            Ok(head) => (Some(Identity::of_message(&head)), None),
            Err(e) => (
                None,
                Some(format!("node {nid:#x} in {}: {e}", folder.display)),
            ),
        };
        Some(MessageMeta {
            id: nid.to_string(),
            size: converted_size_estimate(outlook_size),
            identity,
            subject: Some(summary.subject),
            received,
            in_window: true,
            problem,
            // A PST has no "deleted, not yet expunged": deleting moves mail to Deleted Items.
            deleted: false,
            checkpoint,
        })
    }
}

impl SourceSession for PstSession {
    fn folders(&mut self) -> BoxFuture<'_, FlowResult<Vec<SourceFolder>>> {
        Box::pin(async move {
            Ok(self
                .pst
                .folders()
                .iter()
                .filter(|f| holds_mail(f) && f.role != Some(FolderRole::IpmSubtree))
                .map(|f| {
                    let mut path = f.target_path.clone();
                    let inbox_first = path.first().is_some_and(|s| s == "INBOX");
                    let (path, special) = if self.into.is_empty() {
                        if inbox_first {
                            path.remove(0);
                        }
                        (path, special_of(f.role))
                    } else {
                        // Below `into`, every folder keeps its own name, the inbox too.
                        if inbox_first {
                            path[0] = "Inbox".into();
                        }
                        let mut under = self.into.clone();
                        under.extend(path);
                        (under, None)
                    };
                    SourceFolder {
                        id: folder_id(f.nid),
                        display: f.path.join("/"),
                        path,
                        special,
                        selectable: true,
                        // Outlook shows every folder of a PST: no subscriptions to carry.
                        subscribed: true,
                    }
                })
                .collect())
        })
    }

    fn status<'a>(
        &'a mut self,
        folder: &'a SourceFolder,
        checkpoints: &'a Checkpoints,
    ) -> BoxFuture<'a, FlowResult<FolderStatus>> {
        Box::pin(async move {
            let all = self.nids(folder, &Checkpoints::new(), Side::Pending)?;
            let pending = self.nids(folder, checkpoints, Side::Pending)?;
            Ok(FolderStatus {
                messages: all.len() as u64,
                has_pending: !pending.is_empty(),
                flags_may_have_changed: false,
            })
        })
    }

    fn list<'a>(
        &'a mut self,
        folder: &'a SourceFolder,
        checkpoints: &'a Checkpoints,
        side: Side,
    ) -> BoxFuture<'a, FlowResult<Vec<MessageMeta>>> {
        Box::pin(async move {
            let nids = self.nids(folder, checkpoints, side)?;
            Ok(nids
                .into_iter()
                .filter_map(|nid| self.meta(folder, nid))
                .collect())
        })
    }

    fn fetch<'a>(
        &'a mut self,
        _folder: &'a SourceFolder,
        messages: &'a [&'a MessageMeta],
    ) -> BoxFuture<'a, FlowResult<Vec<Fetched>>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(messages.len());
            for meta in messages {
                let nid = node_id(meta)?;
                out.push(match self.pst.message_with(nid, &self.options) {
                    Ok(m) => match missing(&m.notes) {
                        Some(missing) => Fetched::Partial {
                            missing,
                            message: m.into_raw(),
                        },
                        None => Fetched::Message(m.into_raw()),
                    },
                    Err(e) => Fetched::Unreadable(unreadable(nid, e)?),
                });
            }
            Ok(out)
        })
    }

    fn streams(&self) -> bool {
        true
    }

    /// The message's template (headers, bodies, small attachments) is built at once; large
    /// attachment data is read from the file block by block as the pieces go out.
    fn open_body<'a>(
        &'a mut self,
        _folder: &'a SourceFolder,
        message: &'a MessageMeta,
    ) -> BoxFuture<'a, FlowResult<Opened<'a>>> {
        Box::pin(async move {
            let nid = node_id(message)?;
            Ok(match self.pst.message_stream(nid, &self.options) {
                Ok(stream) => Opened::Body(Box::new(PstBody {
                    pst: Arc::clone(&self.pst),
                    missing: missing(&stream.notes),
                    stream,
                })),
                Err(e) => Opened::Unreadable(unreadable(nid, e)?),
            })
        })
    }

    fn close(self: Box<Self>) -> BoxFuture<'static, FlowResult<()>> {
        Box::pin(async { Ok(()) })
    }
}

/// What a converted message lacks, from its conversion's notes.
fn missing(notes: &[String]) -> Option<String> {
    (!notes.is_empty()).then(|| notes.join("; "))
}

/// Why message `nid` cannot be read, for the report; a disk that refused a read is no
/// damage but worth another attempt: an error.
fn unreadable(nid: u32, e: PstError) -> FlowResult<String> {
    match e {
        PstError::Io { .. } => Err(FlowError::Transient(format!("node {nid:#x}: {e}"))),
        e => Ok(format!("node {nid:#x}: {e}")),
    }
}

fn node_id(message: &MessageMeta) -> FlowResult<u32> {
    message
        .id
        .parse()
        .map_err(|_| FlowError::Permanent(format!("not a PST node id: {:?}", message.id)))
}

/// A PST message written out piece by piece (see [`PstFile::message_stream`]).
struct PstBody {
    pst: Arc<PstFile>,
    stream: MessageStream,
    /// The conversion's notes: what the message goes without.
    missing: Option<String>,
}

impl BodyReader for PstBody {
    fn size(&self) -> u64 {
        self.stream.size()
    }

    fn flags(&self) -> &Flags {
        &self.stream.flags
    }

    fn internal_date(&self) -> Option<SystemTime> {
        self.stream.internal_date
    }

    fn next_piece<'a>(&'a mut self, buf: &'a mut Vec<u8>) -> BoxFuture<'a, FlowResult<bool>> {
        Box::pin(async move {
            let nid = self.stream.nid;
            self.stream
                .next_piece(&self.pst, buf, STREAM_PIECE)
                // Measured when opened, unreadable now: the file changed or its disk fails.
                .map_err(|e| FlowError::Transient(format!("node {nid:#x}: {e}")))
        })
    }

    /// The file is read by position: the session is free whatever was read of the message,
    /// so a message the target refused is not read to its end for nothing.
    fn is_done(&self) -> bool {
        true
    }

    fn missing(&self) -> Option<&str> {
        self.missing.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mail_classes() {
        for c in [
            "IPM.Note",
            "IPM.Note.SMIME",
            "ipm.note",
            "IPM.Schedule.Meeting.Request",
            "REPORT.IPM.Note.NDR",
            "IPM.Post",
            "",
        ] {
            assert!(is_mail(c), "{c}");
        }
        for c in [
            "IPM.Contact",
            "IPM.DistList",
            "IPM.Appointment",
            "IPM.Task",
            "IPM.StickyNote",
            "IPM.Activity",
        ] {
            assert!(!is_mail(c), "{c}");
        }
    }
}
