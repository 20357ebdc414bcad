//! Outlook PST files (MS-PST), read by position: Unicode and ANSI, every NDB encoding.
//!
//! Layers, bottom up, each in its own file:
//! - `ndb` — header, node/block B-trees, blocks (signature + CRC checked), data trees,
//!   sub-node trees;
//! - `ltp` — heap-on-node, BTH, property contexts, table contexts;
//! - `messaging` — store, folders (with default-folder roles), messages, recipients,
//!   attachments, the name-to-id map;
//! - `convert` — a message as RFC 5322 bytes (mail-builder), `rtf` — compressed RTF and
//!   HTML de-encapsulation; `contacts` (vCard 4.0, Outlook CSV) and `calendar` (iCalendar).
//!
//! [`PstFile`] is `Send + Sync`: it holds the open file and reads with `pread`, so a source
//! adapter may share one open PST between threads. One unreadable message never stops a
//! file: listings return [`Problem`]s beside what they could read.

mod calendar;
mod contacts;
mod convert;
mod crypt;
mod error;
mod ltp;
mod messaging;
mod ndb;
mod props;
pub mod rtf;
mod strings;
mod template;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::connectors::mail::{Flag, Flags, RawMessage};

pub use calendar::{calendar_ics, Event, Recurrence};
pub use contacts::{contacts_csv, contacts_vcard, Contact, DistributionList};
pub use convert::{ConvertOptions, Mailbox};
pub use crypt::CryptMethod;
pub use error::{PstError, Result};
pub use ltp::PropertyBag;
pub use messaging::{Attachment, Folder, FolderRole, Item, NameMap, Problem, StoreInfo};
pub use ndb::Format;
pub use props::PropValue;

use messaging::{int, text, time, Messaging};
use ndb::Ndb;
use props::{id, msgflag};

/// An open PST file.
pub struct PstFile {
    inner: Messaging,
}

/// Cheap metadata of one message, from its own property context.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MessageSummary {
    pub nid: u32,
    pub message_class: String,
    /// PidTagMessageSize: Outlook's size of the message, not of the RFC 5322 conversion.
    pub size: u64,
    pub message_id: Option<String>,
    pub subject: String,
    /// Unix seconds.
    pub delivery_time: Option<i64>,
    pub submit_time: Option<i64>,
    pub read: bool,
    pub flagged: bool,
    pub draft: bool,
    pub has_attachments: bool,
}

/// A folder's messages in a stable order (node id), with those that could not be read.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    pub messages: Vec<MessageSummary>,
    pub problems: Vec<Problem>,
}

/// One message converted: RFC 5322 bytes plus what IMAP keeps outside them.
#[derive(Debug, Clone)]
pub struct PstMessage {
    pub nid: u32,
    pub bytes: Vec<u8>,
    pub flags: Flags,
    /// INTERNALDATE: the delivery time, else the submit time.
    pub internal_date: Option<SystemTime>,
    /// Parts that could not be carried over (an unreadable attachment, …).
    pub notes: Vec<String>,
}

impl PstMessage {
    pub fn into_raw(self) -> RawMessage {
        RawMessage::new(self.bytes)
            .with_flags(self.flags)
            .with_internal_date(self.internal_date)
    }
}

/// A converted message written out piece by piece ([`PstFile::message_stream`]).
#[derive(Debug)]
pub struct MessageStream {
    pub nid: u32,
    reader: template::TemplateReader,
    pub flags: Flags,
    /// As [`PstMessage::internal_date`].
    pub internal_date: Option<SystemTime>,
    /// As [`PstMessage::notes`].
    pub notes: Vec<String>,
}

impl MessageStream {
    /// Exact size in bytes of the whole message.
    pub fn size(&self) -> u64 {
        self.reader.size()
    }

    /// Replaces `buf`'s content with the next at most `max` bytes of the message (read from
    /// `pst`, the file it came from) and returns `Ok(true)`; `Ok(false)` once all were
    /// written. An error leaves the stream unusable: what was written is no message.
    pub fn next_piece(&mut self, pst: &PstFile, buf: &mut Vec<u8>, max: usize) -> Result<bool> {
        buf.clear();
        self.reader.fill(&pst.inner.ndb, buf, max)
    }

    /// Whether every byte was written.
    pub fn is_done(&self) -> bool {
        self.reader.is_done()
    }
}

/// The file's format (ANSI or Unicode) from its header alone, checked as [`PstFile::open`]
/// checks it (magic, version, CRCs, encryption); reads the first 564 bytes. For callers that
/// only need to know what kind of PST a file is (the import service's mapping CSV).
pub fn format_of(path: impl AsRef<Path>) -> Result<Format> {
    Ok(ndb::Ndb::open(path.as_ref())?.header.format)
}

impl PstFile {
    /// Opens a PST: reads and checks the header, the store, the name-to-id map, every
    /// folder's properties, and indexes nodes by parent (one walk of the node B-tree).
    pub fn open(path: impl AsRef<Path>) -> Result<PstFile> {
        let ndb = Ndb::open(path.as_ref())?;
        Ok(PstFile {
            inner: Messaging::open(ndb)?,
        })
    }

    /// A PST held in memory (fuzzing, tests); `name` stands in for the path in errors.
    pub fn from_bytes(name: impl AsRef<Path>, bytes: Vec<u8>) -> Result<PstFile> {
        let ndb = Ndb::from_bytes(name.as_ref(), bytes.into())?;
        Ok(PstFile {
            inner: Messaging::open(ndb)?,
        })
    }

    /// Reads everything a migration would read — every folder's listing, every message
    /// converted, contacts, calendar, autocomplete — and returns how many messages converted
    /// and the problems met. For fuzzing and never-panics tests; errors never escape.
    pub fn read_everything(&self) -> (usize, usize) {
        let mut converted = 0;
        let mut problems = self.problems().len();
        for folder in self.folders() {
            let listing = self.messages(folder.nid);
            problems += listing.problems.len();
            for summary in listing.messages {
                match self.message(summary.nid) {
                    Ok(_) => converted += 1,
                    Err(_) => problems += 1,
                }
            }
        }
        problems += self.contacts().2.len() + self.events().1.len();
        if self.autocomplete_stream().is_err() {
            problems += 1;
        }
        (converted, problems)
    }

    pub fn path(&self) -> &Path {
        self.inner.ndb.path()
    }

    pub fn store(&self) -> &StoreInfo {
        &self.inner.store
    }

    /// Every folder: the IPM subtree's first (parents before children), then the rest.
    pub fn folders(&self) -> &[Folder] {
        &self.inner.folders
    }

    pub fn folder(&self, nid: u32) -> Option<&Folder> {
        self.inner.folders.iter().find(|f| f.nid == nid)
    }

    /// The folder with a default role (Inbox, Sent Items, …), when the PST has one.
    pub fn folder_with_role(&self, role: FolderRole) -> Option<&Folder> {
        self.inner.folders.iter().find(|f| f.role == Some(role))
    }

    /// Problems found while opening (a folder whose properties could not be read).
    pub fn problems(&self) -> &[Problem] {
        &self.inner.problems
    }

    pub fn names(&self) -> &NameMap {
        &self.inner.names
    }

    /// Node ids of a folder's messages (not associated ones), in node-id order.
    pub fn message_nids(&self, folder: u32) -> Vec<u32> {
        self.inner.message_nids(folder)
    }

    /// Node ids of a folder's associated (FAI) messages.
    pub fn associated_nids(&self, folder: u32) -> Vec<u32> {
        self.inner.associated_nids(folder)
    }

    /// A folder's messages with cheap metadata; unreadable ones become problems.
    pub fn messages(&self, folder: u32) -> Listing {
        let mut listing = Listing::default();
        for nid in self.inner.message_nids(folder) {
            match self.summary(nid) {
                Ok(summary) => listing.messages.push(summary),
                Err(err) => listing.problems.push(self.problem(folder, nid, &err)),
            }
        }
        listing
    }

    fn problem(&self, folder: u32, nid: u32, err: &PstError) -> Problem {
        Problem {
            folder: self.inner.folder_path(folder),
            nid,
            reason: err.to_string(),
        }
    }

    /// One message's metadata.
    pub fn summary(&self, nid: u32) -> Result<MessageSummary> {
        let props = self.inner.message_props(nid)?;
        let code_page = int(&props, id::INTERNET_CPID)
            .or_else(|| int(&props, id::MESSAGE_CODEPAGE))
            .map(|c| c as u32)
            .or(self.inner.store.code_page);
        let flags = int(&props, id::MESSAGE_FLAGS).unwrap_or(0);
        Ok(MessageSummary {
            nid,
            message_class: text(&props, id::MESSAGE_CLASS, code_page).unwrap_or_default(),
            size: int(&props, id::MESSAGE_SIZE).map_or(0, |s| s as u32 as u64),
            message_id: text(&props, id::INTERNET_MESSAGE_ID, code_page),
            subject: text(&props, id::SUBJECT, code_page)
                .map(|s| convert::strip_subject_prefix(&s))
                .unwrap_or_default(),
            delivery_time: time(&props, id::MESSAGE_DELIVERY_TIME),
            submit_time: time(&props, id::CLIENT_SUBMIT_TIME),
            read: flags & msgflag::READ != 0,
            flagged: int(&props, id::FLAG_STATUS) == Some(2),
            draft: flags & msgflag::UNSENT != 0,
            has_attachments: flags & msgflag::HASATTACH != 0,
        })
    }

    /// The sizes of a message's attachments added up, from its attachment table (see
    /// `MessageSummary::size` for the whole message's, when Outlook recorded it).
    pub fn attachments_size(&self, nid: u32) -> Result<u64> {
        self.inner.attachments_size(nid)
    }

    /// The file offset of a message's first data block: where a report can point a reader
    /// with a hex editor.
    pub fn message_block_offset(&self, nid: u32) -> Result<u64> {
        let node = self.inner.message_node(nid)?;
        let tree = self.inner.ndb.data_tree(node.data_bid)?;
        match tree.leaves.first() {
            Some(bid) => Ok(self.inner.ndb.block(*bid)?.offset),
            None => Ok(0),
        }
    }

    /// A message with its recipients and attachments (embedded messages included).
    pub fn item(&self, nid: u32) -> Result<Item> {
        self.inner.item(nid)
    }

    /// A message as RFC 5322 bytes with IMAP flags and internal date.
    pub fn message(&self, nid: u32) -> Result<PstMessage> {
        self.message_with(nid, &ConvertOptions::default())
    }

    /// [`PstFile::message`] with caller knowledge (EX DN → SMTP map).
    pub fn message_with(&self, nid: u32, options: &ConvertOptions) -> Result<PstMessage> {
        let item = self.inner.item(nid)?;
        self.convert(&item, options)
    }

    /// [`PstFile::message_with`] to be written out piece by piece: its exact size is known at
    /// once, and attachment data larger than 256 KiB is read from the file block by block as
    /// the message is written ([`MessageStream::next_piece`]), never held whole. The bytes
    /// are those [`PstFile::message_with`] gives.
    pub fn message_stream(&self, nid: u32, options: &ConvertOptions) -> Result<MessageStream> {
        let item = self.inner.item(nid)?;
        let (template, flags, internal_date, notes) = self.template(&item, options);
        Ok(MessageStream {
            nid,
            reader: template::TemplateReader::new(template),
            flags,
            internal_date,
            notes,
        })
    }

    /// The header section [`PstFile::message`] would write, with an empty body: its
    /// Message-ID, Date and Subject — the message's identity for a target's duplicate check —
    /// read from the message's own properties only (no recipients, bodies or attachments).
    pub fn header_section(&self, nid: u32) -> Result<Vec<u8>> {
        let item = Item {
            nid,
            props: self.inner.message_props(nid)?,
            recipients: Vec::new(),
            attachments: Vec::new(),
            problems: Vec::new(),
        };
        let options = ConvertOptions::default();
        let ctx = convert::Context {
            store_code_page: self.inner.store.code_page,
            store_record_key: &self.inner.store.record_key,
            options: &options,
        };
        Ok(convert::header_section(&item, &ctx, &format!("{nid:x}")))
    }

    /// Converts an item read with [`PstFile::item`]. An error only where attachment data that
    /// was measured cannot be read now (the file changed or is failing).
    pub fn convert(&self, item: &Item, options: &ConvertOptions) -> Result<PstMessage> {
        let (template, flags, internal_date, notes) = self.template(item, options);
        Ok(PstMessage {
            nid: item.nid,
            bytes: template.render(&self.inner.ndb)?,
            flags,
            internal_date,
            notes,
        })
    }

    /// An item converted, its large attachment data left in the file; with flags, internal
    /// date and notes.
    fn template(
        &self,
        item: &Item,
        options: &ConvertOptions,
    ) -> (template::Template, Flags, Option<SystemTime>, Vec<String>) {
        let ctx = convert::Context {
            store_code_page: self.inner.store.code_page,
            store_record_key: &self.inner.store.record_key,
            options,
        };
        let mut notes = Vec::new();
        let seed = format!("{:x}", item.nid);
        let template = convert::to_rfc5322(item, &ctx, &seed, &mut notes);
        let flags_prop = int(&item.props, id::MESSAGE_FLAGS).unwrap_or(0);
        let mut flags = Flags::new();
        if flags_prop & msgflag::READ != 0 {
            flags.insert(Flag::Seen);
        }
        if flags_prop & msgflag::UNSENT != 0 {
            flags.insert(Flag::Draft);
        }
        if int(&item.props, id::FLAG_STATUS) == Some(2) {
            flags.insert(Flag::Flagged);
        }
        let internal_date = time(&item.props, id::MESSAGE_DELIVERY_TIME)
            .or_else(|| time(&item.props, id::CLIENT_SUBMIT_TIME))
            .and_then(unix_to_system_time);
        (template, flags, internal_date, notes)
    }

    /// The raw autocomplete stream (PidTagRoamingBinaryStream, 0x7C090102) of the Inbox's
    /// `IPM.Configuration.Autocomplete` associated message, when the PST has one.
    pub fn autocomplete_stream(&self) -> Result<Option<Vec<u8>>> {
        let mut folders: Vec<u32> = self
            .folder_with_role(FolderRole::Inbox)
            .map(|f| f.nid)
            .into_iter()
            .collect();
        folders.extend(self.inner.folders.iter().map(|f| f.nid));
        for folder in folders {
            for nid in self.inner.associated_nids(folder) {
                let props = self.inner.message_props(nid)?;
                let class =
                    text(&props, id::MESSAGE_CLASS, self.inner.store.code_page).unwrap_or_default();
                if class.eq_ignore_ascii_case("IPM.Configuration.Autocomplete") {
                    if let Some(PropValue::Binary(stream)) = props.get(id::ROAMING_BINARY_STREAM) {
                        return Ok(Some(stream.clone()));
                    }
                }
            }
        }
        Ok(None)
    }

    /// Every message of a folder whose class starts with one of `prefixes`
    /// (case-insensitive), read whole; unreadable ones become problems.
    pub fn items_of_class(&self, folder: u32, prefixes: &[&str]) -> (Vec<Item>, Vec<Problem>) {
        let mut items = Vec::new();
        let mut problems = Vec::new();
        for nid in self.inner.message_nids(folder) {
            let read = self.inner.message_props(nid).and_then(|props| {
                let class = text(&props, id::MESSAGE_CLASS, self.inner.store.code_page)
                    .unwrap_or_default()
                    .to_ascii_lowercase();
                if prefixes
                    .iter()
                    .any(|p| class.starts_with(&p.to_ascii_lowercase()))
                {
                    self.inner.item(nid).map(Some)
                } else {
                    Ok(None)
                }
            });
            match read {
                Ok(Some(item)) => items.push(item),
                Ok(None) => {}
                Err(err) => problems.push(self.problem(folder, nid, &err)),
            }
        }
        (items, problems)
    }

    /// Contacts and distribution lists of every folder.
    pub fn contacts(&self) -> (Vec<Contact>, Vec<DistributionList>, Vec<Problem>) {
        contacts::collect(self)
    }

    /// Appointments and meetings of every folder.
    pub fn events(&self) -> (Vec<Event>, Vec<Problem>) {
        calendar::collect(self)
    }

    pub(crate) fn code_page(&self) -> Option<u32> {
        self.inner.store.code_page
    }
}

pub(crate) fn unix_to_system_time(seconds: i64) -> Option<SystemTime> {
    if seconds >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_secs(seconds as u64))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(seconds.unsigned_abs()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn handles_are_send_and_sync() {
        assert_send_sync::<PstFile>();
        assert_send_sync::<PstError>();
    }
}
