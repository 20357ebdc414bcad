//! An mbox export (Thunderbird, Apple Mail, Google Takeout) as a [`MailSource`]: one folder,
//! the file, landing in the migration's `into` folder (default the inbox). Read as mboxrd,
//! which also reads mboxo correctly except for its ambiguous `>From ` lines.
//!
//! Checkpoint: `mbox.offset` → the decimal byte offset of the last settled message's `From `
//! line. A resume seeks there instead of re-reading: instant on a 20 GB export. An offset
//! that no longer points at a separator means the file changed: an error, not a guess.
//!
//! A date window judges a message by its `From ` line's date (mail without one counts as
//! inside); the checkpoint only passes mail inside it.
//!
//! Listing holds no body (each message is read past, measured, its header section kept); a
//! message too large for a copy lane is measured again where it lies and handed out line by
//! line, never held.

use std::path::PathBuf;
use std::time::SystemTime;

use super::{
    BodyReader, BoxFuture, Checkpoints, Fetched, FlowError, FlowResult, FolderStatus, MailSource,
    MessageMeta, Opened, Side, SourceFolder, SourceSession, STREAM_PIECE,
};
use crate::connectors::mail::identity::Identity;
use crate::connectors::mail::{
    DateWindow, Flag, Flags, MboxEntry, MboxReader, MboxVariant, RawMessage,
};

const OFFSET_KEY: &str = "mbox.offset";

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct MboxSource {
    file: PathBuf,
    window: Option<DateWindow>,
    /// The target folder of the file's mail, as segments (empty: the inbox).
    into: Vec<String>,
}

impl MboxSource {
    pub fn new(file: PathBuf, window: Option<DateWindow>, into: Vec<String>) -> Self {
        MboxSource { file, window, into }
    }
}

impl MailSource for MboxSource {
    fn describe(&self) -> String {
        let mut d = format!("mbox|{}|{}", self.file.display(), self.into.join("/"));
        if let Some(w) = &self.window {
            d.push('|');
            d.push_str(&w.describe());
        }
        d
    }

    fn open(&self) -> BoxFuture<'_, FlowResult<Box<dyn SourceSession>>> {
        Box::pin(async move {
            // Fails early, with the path, when the file is missing or unreadable.
            std::fs::metadata(&self.file)
                .map_err(|e| crate::connectors::mail::MailError::io(&self.file, e))?;
            Ok(Box::new(self.clone()) as Box<dyn SourceSession>)
        })
    }
}

impl MboxSource {
    fn checkpoint(checkpoints: &Checkpoints) -> FlowResult<Option<u64>> {
        match checkpoints.get(OFFSET_KEY) {
            None => Ok(None),
            Some(v) => std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .map(Some)
                .ok_or_else(|| FlowError::Permanent("corrupt mbox checkpoint in state".into())),
        }
    }

    /// Calls `each` for every message inside the window on `side` of `checkpoints`, in file
    /// order, located and measured but not held; `each` returning `false` stops.
    fn each(
        &self,
        checkpoints: &Checkpoints,
        side: Side,
        mut each: impl FnMut(MboxEntry) -> bool,
    ) -> FlowResult<()> {
        let offset = Self::checkpoint(checkpoints)?;
        let mut reader = match (side, offset) {
            (Side::Pending, Some(o)) => MboxReader::open_after(&self.file, MboxVariant::Mboxrd, o),
            (Side::Settled, None) => return Ok(()),
            _ => MboxReader::open(&self.file, MboxVariant::Mboxrd),
        }?;
        while let Some(item) = reader.next_entry() {
            let m = item?;
            if side == Side::Settled && offset.is_some_and(|o| m.offset > o) {
                break;
            }
            if !self.window.is_none_or(|w| w.contains(m.internal_date)) {
                continue;
            }
            if !each(m) {
                break;
            }
        }
        Ok(())
    }
}

impl SourceSession for MboxSource {
    fn folders(&mut self) -> BoxFuture<'_, FlowResult<Vec<SourceFolder>>> {
        Box::pin(async move {
            // The file's name, not its path: the plan already says where it is.
            let name = self.file.file_name().map_or_else(
                || self.file.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            );
            Ok(vec![SourceFolder {
                id: name.clone(),
                display: name,
                path: self.into.clone(),
                special: None,
                selectable: true,
                subscribed: true,
            }])
        })
    }

    fn status<'a>(
        &'a mut self,
        _folder: &'a SourceFolder,
        checkpoints: &'a Checkpoints,
    ) -> BoxFuture<'a, FlowResult<FolderStatus>> {
        Box::pin(async move {
            // Cheap enough to answer exactly: is there a message after the checkpoint?
            let mut pending = false;
            self.each(checkpoints, Side::Pending, |_| {
                pending = true;
                false
            })?;
            Ok(FolderStatus {
                messages: 0,
                has_pending: pending,
                flags_may_have_changed: false,
            })
        })
    }

    fn list<'a>(
        &'a mut self,
        _folder: &'a SourceFolder,
        checkpoints: &'a Checkpoints,
        side: Side,
    ) -> BoxFuture<'a, FlowResult<Vec<MessageMeta>>> {
        Box::pin(async move {
            let mut out = Vec::new();
            self.each(checkpoints, side, |m| {
                let head = RawMessage::new(m.head);
                out.push(MessageMeta {
                    id: m.offset.to_string(),
                    size: m.size,
                    identity: Some(Identity::of_message(head.bytes())),
                    subject: head.subject(),
                    received: m.internal_date,
                    in_window: true,
                    problem: None,
                    deleted: m.flags.contains(Flag::Deleted),
                    checkpoint: (OFFSET_KEY.into(), m.offset.to_string().into_bytes()),
                });
                true
            })?;
            Ok(out)
        })
    }

    fn fetch<'a>(
        &'a mut self,
        _folder: &'a SourceFolder,
        messages: &'a [&'a MessageMeta],
    ) -> BoxFuture<'a, FlowResult<Vec<Fetched>>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(messages.len());
            // The batch is consecutive in the file: one reader from the first offset serves it.
            let mut reader: Option<MboxReader<_>> = None;
            for meta in messages {
                let offset = self.offset_of(meta)?;
                let mut found = None;
                for _attempt in 0..2 {
                    let r = match reader.as_mut() {
                        Some(r) => r,
                        None => reader.insert(MboxReader::open_at(
                            &self.file,
                            MboxVariant::Mboxrd,
                            offset,
                        )?),
                    };
                    // Skip messages between batch members (outside the window).
                    let mut hit = None;
                    for item in r.by_ref() {
                        let m = item?;
                        if m.offset == offset {
                            hit = Some(m.message);
                            break;
                        }
                        if m.offset > offset {
                            break;
                        }
                    }
                    match hit {
                        Some(m) => {
                            found = Some(m);
                            break;
                        }
                        // Passed it (or ran out): seek afresh.
                        None => reader = None,
                    }
                }
                match found {
                    Some(m) => out.push(Fetched::Message(m)),
                    None => return Err(self.changed(offset)),
                }
            }
            Ok(out)
        })
    }

    fn streams(&self) -> bool {
        true
    }

    /// The message measured where it lies, then read line by line, un-escaped, into pieces:
    /// never held. The file is read twice for it (measuring, sending), which a message too
    /// large to hold is worth.
    fn open_body<'a>(
        &'a mut self,
        _folder: &'a SourceFolder,
        message: &'a MessageMeta,
    ) -> BoxFuture<'a, FlowResult<Opened<'a>>> {
        Box::pin(async move {
            let offset = self.offset_of(message)?;
            let entry =
                match MboxReader::open_at(&self.file, MboxVariant::Mboxrd, offset)?.next_entry() {
                    Some(entry) => entry?,
                    None => return Err(self.changed(offset)),
                };
            let mut reader = MboxReader::open_at(&self.file, MboxVariant::Mboxrd, offset)?;
            if !reader.begin(offset)? {
                return Err(self.changed(offset));
            }
            Ok(Opened::Body(Box::new(MboxBody {
                reader,
                size: entry.size,
                sent: 0,
                line: Vec::new(),
                at: 0,
                flags: entry.flags,
                internal_date: entry.internal_date,
                file: self.file.clone(),
            })))
        })
    }

    fn close(self: Box<Self>) -> BoxFuture<'static, FlowResult<()>> {
        Box::pin(async { Ok(()) })
    }
}

impl MboxSource {
    fn offset_of(&self, message: &MessageMeta) -> FlowResult<u64> {
        message
            .id
            .parse()
            .map_err(|_| FlowError::Permanent(format!("not an mbox offset: {:?}", message.id)))
    }

    fn changed(&self, offset: u64) -> FlowError {
        FlowError::Permanent(format!(
            "{}: no message at offset {offset}; the mbox changed during the copy",
            self.file.display()
        ))
    }
}

/// An mbox message handed out piece by piece: its body lines, un-escaped, as the reader gives
/// them, cut into pieces of at most [`STREAM_PIECE`] (a line may be longer than a piece).
struct MboxBody {
    reader: MboxReader<std::io::BufReader<std::fs::File>>,
    /// Measured before the first piece.
    size: u64,
    sent: u64,
    /// The line being handed out, from `at`.
    line: Vec<u8>,
    at: usize,
    flags: Flags,
    internal_date: Option<SystemTime>,
    file: PathBuf,
}

impl BodyReader for MboxBody {
    fn size(&self) -> u64 {
        self.size
    }

    fn flags(&self) -> &Flags {
        &self.flags
    }

    fn internal_date(&self) -> Option<SystemTime> {
        self.internal_date
    }

    fn next_piece<'a>(&'a mut self, buf: &'a mut Vec<u8>) -> BoxFuture<'a, FlowResult<bool>> {
        Box::pin(async move {
            buf.clear();
            while buf.len() < STREAM_PIECE {
                if self.at == self.line.len() {
                    self.line.clear();
                    self.at = 0;
                    if !self.reader.body_line(&mut self.line)? {
                        break;
                    }
                }
                let n = (STREAM_PIECE - buf.len()).min(self.line.len() - self.at);
                buf.extend_from_slice(&self.line[self.at..self.at + n]);
                self.at += n;
            }
            self.sent += buf.len() as u64;
            if self.sent > self.size || (buf.is_empty() && self.sent != self.size) {
                // Measured one way, read another: the file changed under the copy.
                return Err(FlowError::Transient(format!(
                    "{}: the message changed while it was copied",
                    self.file.display()
                )));
            }
            Ok(!buf.is_empty())
        })
    }

    /// A file: the session is free whatever was read.
    fn is_done(&self) -> bool {
        true
    }
}
