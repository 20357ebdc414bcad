//! A Maildir++ tree (a Dovecot or Courier mail directory, copied off a server) as a
//! [`MailSource`]: INBOX and every `.`-folder, each message file with the flags in its name
//! and its mtime as the received time; subscriptions from Dovecot's `subscriptions` file.
//!
//! Checkpoint: `maildir:<folder>` → the unique part of the last settled file's name. Files are
//! listed sorted by that name, so "after X" is stable while flags change (which renames the
//! file's `:2,` part only).

use std::collections::HashMap;
use std::path::PathBuf;

use super::{
    BoxFuture, Checkpoints, Fetched, FileBody, FlowError, FlowResult, FolderStatus, MailSource,
    MessageMeta, Opened, Side, SourceFolder, SourceSession,
};
use crate::connectors::mail::identity::Identity;
use crate::connectors::mail::maildir::read_header;
use crate::connectors::mail::{DateWindow, Flag, Maildir, MaildirEntry, MaildirFolder, RawMessage};

/// Folders read at once: local disks take a few readers well.
const SESSIONS: usize = 4;

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct MaildirSource {
    root: PathBuf,
    window: Option<DateWindow>,
}

impl MaildirSource {
    pub fn new(root: PathBuf, window: Option<DateWindow>) -> Self {
        MaildirSource { root, window }
    }
}

impl MailSource for MaildirSource {
    fn describe(&self) -> String {
        let mut d = format!("maildir|{}", self.root.display());
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
            Ok(Box::new(MaildirSession {
                maildir: Maildir::open(&self.root)?,
                window: self.window,
                folders: HashMap::new(),
                files: None,
            }) as Box<dyn SourceSession>)
        })
    }
}

struct MaildirSession {
    maildir: Maildir,
    window: Option<DateWindow>,
    /// Folders by id, as found by `folders()` (a directory whose name is not valid modified
    /// UTF-7 is read from where it really is).
    folders: HashMap<String, MaildirFolder>,
    /// The files of the folder fetched from last, by id.
    files: Option<(String, HashMap<String, MaildirEntry>)>,
}

fn checkpoint_key(folder: &SourceFolder) -> String {
    format!("maildir:{}", folder.id)
}

impl MaildirSession {
    fn folder(&mut self, folder: &SourceFolder) -> FlowResult<MaildirFolder> {
        if self.folders.is_empty() {
            for f in self.maildir.folders()? {
                self.folders.insert(f.name.to_string(), f);
            }
        }
        self.folders.get(&folder.id).cloned().ok_or_else(|| {
            FlowError::Permanent(format!(
                "{}: folder {} is gone",
                self.maildir.root().display(),
                folder.display
            ))
        })
    }

    /// The file of message `id` in `folder`, from the folder's listing (read again when
    /// `refresh`, or when another folder was read last).
    fn file(
        &mut self,
        folder: &SourceFolder,
        id: &str,
        refresh: bool,
    ) -> FlowResult<Option<MaildirEntry>> {
        let stale = self.files.as_ref().is_none_or(|(f, _)| *f != folder.id);
        if stale || refresh {
            let dir = self.folder(folder)?;
            let files = self
                .maildir
                .entries(&dir)?
                .into_iter()
                .map(|e| (e.id.clone(), e))
                .collect();
            self.files = Some((folder.id.clone(), files));
        }
        Ok(self.files.as_ref().and_then(|(_, f)| f.get(id).cloned()))
    }

    /// The folder's files inside the window on `side` of the checkpoint, in name order.
    fn entries(
        &mut self,
        folder: &SourceFolder,
        checkpoints: &Checkpoints,
        side: Side,
    ) -> FlowResult<Vec<MaildirEntry>> {
        let dir = self.folder(folder)?;
        let after = checkpoints
            .get(&checkpoint_key(folder))
            .map(|v| String::from_utf8_lossy(v).into_owned());
        let mut entries = match side {
            Side::Pending => self.maildir.entries_after(&dir, after.as_deref())?,
            Side::Settled => match &after {
                None => Vec::new(),
                Some(a) => {
                    let mut all = self.maildir.entries(&dir)?;
                    all.retain(|e| e.id.as_str() <= a.as_str());
                    all
                }
            },
        };
        // Decided before reading: the date is the file's, not its content's.
        entries.retain(|e| self.window.is_none_or(|w| w.contains(e.internal_date)));
        Ok(entries)
    }
}

impl SourceSession for MaildirSession {
    fn folders(&mut self) -> BoxFuture<'_, FlowResult<Vec<SourceFolder>>> {
        Box::pin(async move {
            let found = self.maildir.folders()?;
            // Dovecot's `subscriptions` file; without one, every folder counts as subscribed.
            let subscriptions = self.maildir.subscriptions()?;
            let subscribed = |name: &crate::connectors::mail::FolderPath| {
                name.is_inbox()
                    || subscriptions
                        .as_ref()
                        .is_none_or(|s| s.iter().any(|f| f == name))
            };
            self.folders.clear();
            let mut out = Vec::with_capacity(found.len());
            for f in found {
                let id = f.name.to_string();
                out.push(SourceFolder {
                    id: id.clone(),
                    display: id.clone(),
                    path: f.name.segments().to_vec(),
                    special: None,
                    selectable: true,
                    subscribed: subscribed(&f.name),
                });
                self.folders.insert(id, f);
            }
            Ok(out)
        })
    }

    fn status<'a>(
        &'a mut self,
        folder: &'a SourceFolder,
        checkpoints: &'a Checkpoints,
    ) -> BoxFuture<'a, FlowResult<FolderStatus>> {
        Box::pin(async move {
            let dir = self.folder(folder)?;
            let messages = self.maildir.entries(&dir)?.len() as u64;
            let pending = self.entries(folder, checkpoints, Side::Pending)?;
            Ok(FolderStatus {
                messages,
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
            let key = checkpoint_key(folder);
            let mut out = Vec::new();
            for e in self.entries(folder, checkpoints, side)? {
                let head = RawMessage::new(read_header(&e.path)?);
                out.push(MessageMeta {
                    identity: Some(Identity::of_message(head.bytes())),
                    subject: head.subject(),
                    size: e.size,
                    received: e.internal_date,
                    in_window: true,
                    problem: None,
                    deleted: e.flags.contains(Flag::Deleted),
                    checkpoint: (key.clone(), e.id.clone().into_bytes()),
                    id: e.id,
                });
            }
            Ok(out)
        })
    }

    fn fetch<'a>(
        &'a mut self,
        folder: &'a SourceFolder,
        messages: &'a [&'a MessageMeta],
    ) -> BoxFuture<'a, FlowResult<Vec<Fetched>>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(messages.len());
            for meta in messages {
                let mut entry = self.file(folder, &meta.id, false)?;
                if entry.is_none() {
                    // Flags may have renamed the file since it was listed: list again.
                    entry = self.file(folder, &meta.id, true)?;
                }
                out.push(match entry.map(|e| e.read()) {
                    Some(Ok(m)) => Fetched::Message(m),
                    // Expunged since the listing.
                    Some(Err(crate::connectors::mail::MailError::Io { source, .. }))
                        if source.kind() == std::io::ErrorKind::NotFound =>
                    {
                        Fetched::Gone
                    }
                    Some(Err(e)) => return Err(e.into()),
                    None => Fetched::Gone,
                });
            }
            Ok(out)
        })
    }

    fn streams(&self) -> bool {
        true
    }

    /// The message's file, read where it is piece by piece (its size the file's).
    fn open_body<'a>(
        &'a mut self,
        folder: &'a SourceFolder,
        message: &'a MessageMeta,
    ) -> BoxFuture<'a, FlowResult<Opened<'a>>> {
        Box::pin(async move {
            let mut entry = self.file(folder, &message.id, false)?;
            if entry.is_none() {
                // Flags may have renamed the file since it was listed: list again.
                entry = self.file(folder, &message.id, true)?;
            }
            let Some(entry) = entry else {
                return Ok(Opened::Gone);
            };
            let opened = std::fs::File::open(&entry.path).and_then(|file| {
                let size = file.metadata()?.len();
                FileBody::new(file, size, entry.flags.clone(), entry.internal_date)
            });
            match opened {
                Ok(body) => Ok(Opened::Body(Box::new(body))),
                // Expunged since the listing.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Opened::Gone),
                Err(e) => Err(crate::connectors::mail::MailError::io(&entry.path, e).into()),
            }
        })
    }

    fn close(self: Box<Self>) -> BoxFuture<'static, FlowResult<()>> {
        Box::pin(async { Ok(()) })
    }
}
