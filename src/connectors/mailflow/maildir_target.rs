//! A user's Maildir++ tree (Dovecot layout) as a [`MailTarget`]: every message a durable file
//! (written to `tmp/`, fsynced, renamed into `cur/`) before the runner checkpoints it;
//! subscriptions in Dovecot's `subscriptions` file.

use std::path::PathBuf;

use tokio_util::sync::CancellationToken;

use super::{
    BodyReader, BoxFuture, FlagChange, FlowError, FlowResult, MailTarget, TargetNames,
    TargetSession, STREAM_PIECE,
};
use crate::connectors::mail::identity::{Identity, IdentityCounts};
use crate::connectors::mail::{FolderPath, Maildir, MaildirTarget as Writer, RawMessage};

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct MaildirTarget {
    /// The user's Maildir root.
    root: PathBuf,
}

impl MaildirTarget {
    pub fn new(root: PathBuf) -> Self {
        MaildirTarget { root }
    }
}

impl MailTarget for MaildirTarget {
    fn describe(&self) -> String {
        format!("maildir|{}", self.root.display())
    }

    fn names(&self) -> TargetNames {
        TargetNames::imap()
    }

    fn open(&self, writable: bool) -> BoxFuture<'_, FlowResult<Box<dyn TargetSession>>> {
        Box::pin(async move {
            // A read-only session over a maildir that does not exist yet sees empty folders.
            let writer = if writable || Maildir::open(&self.root).is_ok() {
                Some(Writer::open(&self.root)?)
            } else {
                None
            };
            Ok(Box::new(MaildirSession { writer }) as Box<dyn TargetSession>)
        })
    }
}

struct MaildirSession {
    /// `None`: read-only over a maildir that does not exist.
    writer: Option<Writer>,
}

/// A Maildir++ folder for target segments. `.` and `/` cannot appear in a Maildir++ segment;
/// they become `_` rather than silently adding hierarchy levels.
pub fn maildir_folder(segments: &[String]) -> FlowResult<FolderPath> {
    let clean: Vec<String> = segments
        .iter()
        .map(|s| {
            s.chars()
                .map(|c| {
                    if c == '.' || c == '/' || c.is_control() {
                        '_'
                    } else {
                        c
                    }
                })
                .collect()
        })
        .collect();
    Ok(FolderPath::new(clean)?)
}

impl MaildirSession {
    fn writer(&mut self) -> FlowResult<&mut Writer> {
        self.writer
            .as_mut()
            .ok_or_else(|| FlowError::Permanent("the maildir target is read-only here".into()))
    }
}

impl TargetSession for MaildirSession {
    fn ensure_folder<'a>(&'a mut self, folder: &'a [String]) -> BoxFuture<'a, FlowResult<()>> {
        Box::pin(async move {
            let folder = maildir_folder(folder)?;
            self.writer()?.ensure_folder(&folder)?;
            Ok(())
        })
    }

    fn subscribe<'a>(
        &'a mut self,
        folder: &'a [String],
        subscribed: bool,
    ) -> BoxFuture<'a, FlowResult<()>> {
        Box::pin(async move {
            if subscribed {
                let folder = maildir_folder(folder)?;
                self.writer()?.subscribe(&folder)?;
            }
            Ok(())
        })
    }

    fn identities<'a>(
        &'a mut self,
        folder: &'a [String],
    ) -> BoxFuture<'a, FlowResult<IdentityCounts>> {
        Box::pin(async move {
            let folder = maildir_folder(folder)?;
            match self.writer.as_mut() {
                Some(w) => Ok(w.identities(&folder)?),
                None => Ok(IdentityCounts::new()),
            }
        })
    }

    fn append<'a>(
        &'a mut self,
        folder: &'a [String],
        messages: &'a [RawMessage],
        _cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, Vec<FlowResult<Option<String>>>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(messages.len());
            let folder = match maildir_folder(folder) {
                Ok(f) => f,
                Err(e) => return vec![Err(e)],
            };
            let writer = match self.writer() {
                Ok(w) => w,
                Err(e) => return vec![Err(e)],
            };
            for m in messages {
                // A file is stored or not: no writer survives its process to store it later,
                // so the runner never needs to take one back (no ids).
                match writer.store(&folder, m) {
                    Ok(_) => out.push(Ok(None)),
                    Err(e) => {
                        // A disk error ends the batch: what follows was not written.
                        out.push(Err(e.into()));
                        break;
                    }
                }
            }
            out
        })
    }

    fn streams(&self) -> bool {
        true
    }

    /// Into a private file in the folder's `tmp/`, piece by piece, renamed into `cur/` once
    /// complete and fsynced; a source failing midway leaves no file behind.
    fn append_streamed<'a>(
        &'a mut self,
        folder: &'a [String],
        body: &'a mut dyn BodyReader,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, FlowResult<Option<String>>> {
        Box::pin(async move {
            let folder = maildir_folder(folder)?;
            let mut piece = Vec::with_capacity(STREAM_PIECE);
            let mut more = body.next_piece(&mut piece).await?;
            // The identity of the writer's index, from the header fields in the first piece.
            let identity = Identity::of_message(&piece);
            let flags = body.flags().clone();
            let writer = self.writer()?;
            let mut delivery = writer.begin(&folder, &flags, body.size())?;
            while more {
                if cancel.is_cancelled() {
                    // Dropped unfinished, the delivery removes its file from `tmp/`.
                    return Err(FlowError::Transient("cancelled mid-message".into()));
                }
                delivery.write(&piece)?;
                more = body.next_piece(&mut piece).await?;
            }
            let writer = self.writer()?;
            writer.finish(delivery, body.internal_date(), identity)?;
            Ok(None)
        })
    }

    fn set_flags<'a>(
        &'a mut self,
        folder: &'a [String],
        changes: &'a [FlagChange],
    ) -> BoxFuture<'a, FlowResult<u64>> {
        Box::pin(async move {
            let folder = maildir_folder(folder)?;
            let changes: Vec<_> = changes
                .iter()
                .map(|c| (c.identity, c.flags.clone()))
                .collect();
            Ok(self.writer()?.set_flags(&folder, &changes)?)
        })
    }

    fn close(self: Box<Self>) -> BoxFuture<'static, FlowResult<()>> {
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maildir_folder_never_adds_levels() {
        let f = maildir_folder(&["a.b".into(), "c/d".into()]).unwrap();
        assert_eq!(f.segments(), ["a_b", "c_d"]);
        assert!(maildir_folder(&[]).unwrap().is_inbox());
    }
}
