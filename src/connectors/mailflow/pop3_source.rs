//! A POP3 maildrop as a [`MailSource`]: one folder, its inbox, landing in the migration's
//! `into` folder (default the target's inbox).
//!
//! Checkpoints: `pop3:<uidl>` → `1` for every settled message, `outside` for one outside the
//! date window (so no later pass reads its headers again). A key per message keeps every
//! commit O(1); message numbers change between sessions, UIDLs do not.
//!
//! **Read state.** Messages are read with [`Pop3Client::download`] (`TOP n <all lines>`),
//! which leaves them unread where `RETR` would mark them read; a server without `TOP` gets
//! `RETR` and its read marks are undone at the end of the session
//! ([`Pop3Client::quit_leaving_read_state`]).
//!
//! **Round trips.** `UIDL` and `LIST` are read once per session. Bodies of a batch
//! ([`SourceSession::fetch`]) and header blocks ([`SourceSession::identify`], the date
//! window) are requested pipelined where the server advertises PIPELINING, so a batch costs
//! about one round trip. A message's received date comes from the downloaded message itself:
//! no header read precedes a download, except under a date window, whose decision must come
//! before the download (those header reads are pipelined too, and remembered for the session).
//!
//! POP3 has no INTERNALDATE: a message's received time is its topmost `Received:` field's
//! date (the final delivery), else its `Date:` — without it every migrated message would be
//! dated "now", and clients sort by that date.
//!
//! With `delete_after_copy`, a message is marked deleted once the runner committed it
//! ([`SourceSession::committed`]) — and only for mail the target holds, never for mail left
//! behind — and the server deletes on QUIT. A message committed by a run that died before
//! QUIT is deleted by the next session.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use super::{
    BoxFuture, Checkpoints, Fetched, FileBody, FlowError, FlowResult, FolderStatus, Login,
    MailSource, MessageMeta, Opened, Side, SourceFolder, SourceSession, STREAM_PIECE,
};
use crate::connectors::mail::date::parse_rfc5322;
use crate::connectors::mail::identity::Identity;
use crate::connectors::mail::{DateWindow, Flags, RawMessage};
use crate::connectors::net::{Endpoint, NetError};
use crate::connectors::pop3::{Part, Pop3Client, Pop3Message};

/// The checkpoint value of a message outside the date window.
const OUTSIDE: &[u8] = b"outside";
/// The checkpoint value of a settled message.
const SETTLED: &[u8] = b"1";

/// Header blocks requested at once: bounds what one listing holds in memory besides its
/// results.
const HEADERS_AT_ONCE: usize = 256;

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct Pop3Source {
    endpoint: Endpoint,
    login: Arc<dyn Login>,
    window: Option<DateWindow>,
    /// The target folder of the maildrop's mail, as segments (empty: the inbox).
    into: Vec<String>,
    delete_after_copy: bool,
}

impl Pop3Source {
    pub fn new(
        endpoint: Endpoint,
        login: Arc<dyn Login>,
        window: Option<DateWindow>,
        into: Vec<String>,
        delete_after_copy: bool,
    ) -> Self {
        Pop3Source {
            endpoint,
            login,
            window,
            into,
            delete_after_copy,
        }
    }
}

impl MailSource for Pop3Source {
    fn describe(&self) -> String {
        let mut d = format!(
            "pop3|{}|{:?}|{}|{}|{}|{}",
            self.endpoint.server(),
            self.endpoint.tls,
            self.endpoint.allow_plaintext,
            self.login.describe(),
            self.into.join("/"),
            self.delete_after_copy
        );
        if let Some(w) = &self.window {
            d.push('|');
            d.push_str(&w.describe());
        }
        d
    }

    fn endpoints(&self) -> Vec<Endpoint> {
        vec![self.endpoint.clone()]
    }

    fn open(&self) -> BoxFuture<'_, FlowResult<Box<dyn SourceSession>>> {
        Box::pin(async move {
            let credentials = self.login.credentials().await?;
            let client = Pop3Client::connect(&self.endpoint, &credentials).await?;
            Ok(Box::new(Pop3Session {
                client,
                window: self.window,
                into: self.into.clone(),
                delete_after_copy: self.delete_after_copy,
                listing: None,
                heads: HashMap::new(),
            }) as Box<dyn SourceSession>)
        })
    }
}

/// What a message's header block tells, kept for the session.
#[derive(Debug, Clone)]
struct Head {
    identity: Identity,
    subject: Option<String>,
    received: Option<SystemTime>,
}

impl Head {
    fn of(message: &RawMessage) -> Head {
        Head {
            identity: Identity::of_message(message.bytes()),
            subject: message.subject(),
            received: received_of(message),
        }
    }

    fn describe(&self, meta: &mut MessageMeta) {
        meta.identity = Some(self.identity);
        meta.subject.clone_from(&self.subject);
        meta.received = self.received;
    }
}

/// The maildrop as one session sees it.
struct Listing {
    messages: Vec<Pop3Message>,
    /// UIDL → message number in this session.
    numbers: HashMap<String, u32>,
}

struct Pop3Session {
    client: Pop3Client,
    window: Option<DateWindow>,
    into: Vec<String>,
    delete_after_copy: bool,
    /// UIDL + LIST, read once: the server keeps message numbers fixed for a session.
    listing: Option<Listing>,
    /// Header blocks read in this session, by UIDL.
    heads: HashMap<String, Head>,
}

fn key(uid: &str) -> String {
    format!("pop3:{uid}")
}

impl Pop3Session {
    async fn listing(&mut self) -> FlowResult<&Listing> {
        if self.listing.is_none() {
            let messages = self.client.messages().await?;
            let numbers = messages.iter().map(|m| (m.uid.clone(), m.number)).collect();
            self.listing = Some(Listing { messages, numbers });
        }
        self.listing
            .as_ref()
            .ok_or_else(|| FlowError::Permanent("POP3 listing missing".into()))
    }

    async fn number_of(&mut self, uid: &str) -> FlowResult<u32> {
        self.listing()
            .await?
            .numbers
            .get(uid)
            .copied()
            .ok_or_else(|| {
                FlowError::Permanent(format!("POP3 message {uid} is not in the maildrop"))
            })
    }

    /// Reads the header blocks of `uids` not read yet in this session, pipelined.
    async fn read_heads(&mut self, uids: &[String]) -> FlowResult<()> {
        let mut wanted: Vec<(String, u32)> = Vec::new();
        let mut asked = std::collections::HashSet::new();
        for uid in uids {
            if !self.heads.contains_key(uid) && asked.insert(uid.as_str()) {
                wanted.push((uid.clone(), self.number_of(uid).await?));
            }
        }
        // Without TOP a header read downloads the whole message: one at a time, so a round
        // of large messages is never held at once (outside the byte budget).
        let at_once = if self.client.reads_with_top() {
            HEADERS_AT_ONCE
        } else {
            1
        };
        for chunk in wanted.chunks(at_once) {
            let numbers: Vec<u32> = chunk.iter().map(|(_, n)| *n).collect();
            let heads = self.client.download(&numbers, Part::Headers).await?;
            if heads.len() < chunk.len() {
                return Err(FlowError::Transient(
                    "POP3: the server left header reads unanswered".into(),
                ));
            }
            for ((uid, _), head) in chunk.iter().zip(heads) {
                let head = RawMessage::new(head.map_err(download_error)?);
                self.heads.insert(uid.clone(), Head::of(&head));
            }
        }
        Ok(())
    }
}

/// A failed download of one message. A `-ERR` about it is worth another attempt: a message
/// another client removed since this session's listing is not listed by the next one, and a
/// server that keeps refusing fails the step after its retries — never settles the message
/// as if it were gone.
fn download_error(e: NetError) -> FlowError {
    match e {
        NetError::Rejected { at, command, text } => {
            FlowError::Transient(format!("{at}: {command} refused: {text}"))
        }
        other => other.into(),
    }
}

impl SourceSession for Pop3Session {
    fn folders(&mut self) -> BoxFuture<'_, FlowResult<Vec<SourceFolder>>> {
        Box::pin(async move {
            Ok(vec![SourceFolder {
                id: "INBOX".into(),
                display: "INBOX".into(),
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
            let listing = &self.listing().await?.messages;
            Ok(FolderStatus {
                messages: listing.len() as u64,
                has_pending: listing
                    .iter()
                    .any(|m| !checkpoints.contains_key(&key(&m.uid))),
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
            let listing = self.listing().await?.messages.clone();
            let mut out = Vec::new();
            let mut committed_before = Vec::new();
            for m in listing {
                let k = key(&m.uid);
                let settled = checkpoints.get(&k);
                match (side, settled) {
                    (Side::Pending, Some(value)) => {
                        // Committed by a run that died before QUIT: delete it now.
                        if self.delete_after_copy
                            && value.as_slice() == SETTLED
                            && !left_behind(checkpoints, folder, &m.uid)
                        {
                            committed_before.push(m.number);
                        }
                        continue;
                    }
                    (Side::Settled, None) => continue,
                    (Side::Settled, Some(v)) if v.as_slice() == OUTSIDE => continue,
                    _ => {}
                }
                out.push(MessageMeta {
                    id: m.uid.clone(),
                    size: m.size,
                    identity: None,
                    subject: None,
                    received: None,
                    in_window: true,
                    problem: None,
                    deleted: false,
                    checkpoint: (k, SETTLED.to_vec()),
                });
            }
            if !committed_before.is_empty() {
                self.client.dele_all(&committed_before).await?;
            }
            if let Some(window) = self.window {
                // The window needs the received date, which needs the header fields.
                let uids: Vec<String> = out.iter().map(|m| m.id.clone()).collect();
                self.read_heads(&uids).await?;
                let mut kept = Vec::with_capacity(out.len());
                for mut meta in out {
                    if let Some(head) = self.heads.get(&meta.id) {
                        head.describe(&mut meta);
                    }
                    if !window.contains(meta.received) {
                        if side == Side::Settled {
                            continue;
                        }
                        meta.in_window = false;
                        meta.checkpoint.1 = OUTSIDE.to_vec();
                    }
                    kept.push(meta);
                }
                out = kept;
            }
            Ok(out)
        })
    }

    fn identify<'a>(
        &'a mut self,
        _folder: &'a SourceFolder,
        messages: &'a mut [MessageMeta],
    ) -> BoxFuture<'a, FlowResult<()>> {
        Box::pin(async move {
            let uids: Vec<String> = messages
                .iter()
                .filter(|m| m.identity.is_none())
                .map(|m| m.id.clone())
                .collect();
            self.read_heads(&uids).await?;
            for meta in messages.iter_mut().filter(|m| m.identity.is_none()) {
                if let Some(head) = self.heads.get(&meta.id) {
                    head.describe(meta);
                }
            }
            Ok(())
        })
    }

    fn fetch<'a>(
        &'a mut self,
        _folder: &'a SourceFolder,
        messages: &'a [&'a MessageMeta],
    ) -> BoxFuture<'a, FlowResult<Vec<Fetched>>> {
        Box::pin(async move {
            let mut numbers = Vec::with_capacity(messages.len());
            for meta in messages {
                numbers.push(self.number_of(&meta.id).await?);
            }
            let bodies = self.client.download(&numbers, Part::Whole).await?;
            if bodies.len() < messages.len() {
                return Err(FlowError::Transient(
                    "POP3: the server left downloads unanswered".into(),
                ));
            }
            let mut out = Vec::with_capacity(messages.len());
            for (meta, body) in messages.iter().zip(bodies) {
                let message = RawMessage::new(body.map_err(download_error)?);
                // What a header read would have told, for later questions of this session.
                let head = Head::of(&message);
                let received = head.received;
                self.heads.insert(meta.id.clone(), head);
                out.push(Fetched::Message(message.with_internal_date(received)));
            }
            Ok(out)
        })
    }

    fn streams(&self) -> bool {
        true
    }

    /// Downloaded (as [`fetch`](SourceSession::fetch) does) into an unnamed private spool
    /// file, line by line, and handed out from there: a dot-stuffed answer's exact size,
    /// which a target's APPEND announces first, is known only at its end.
    fn open_body<'a>(
        &'a mut self,
        _folder: &'a SourceFolder,
        message: &'a MessageMeta,
    ) -> BoxFuture<'a, FlowResult<Opened<'a>>> {
        Box::pin(async move {
            let number = self.number_of(&message.id).await?;
            let spool_error = |e: std::io::Error| {
                FlowError::Transient(format!("a spool file for message {}: {e}", message.id))
            };
            let file = super::spool_file().map_err(spool_error)?;
            let mut out = std::io::BufWriter::with_capacity(STREAM_PIECE, file);
            let size = self
                .client
                .download_into(number, &mut out, "the spool file")
                .await
                .map_err(download_error)?;
            let file = out.into_inner().map_err(|e| spool_error(e.into_error()))?;
            if !self.heads.contains_key(&message.id) {
                // What a header read would have told: from the spooled message's start.
                let mut head = Vec::new();
                let mut reader = std::io::Read::take(&file, 64 * 1024);
                std::io::Seek::rewind(&mut reader.get_mut()).map_err(spool_error)?;
                std::io::Read::read_to_end(&mut reader, &mut head).map_err(spool_error)?;
                self.heads
                    .insert(message.id.clone(), Head::of(&RawMessage::new(head)));
            }
            let received = self.heads.get(&message.id).and_then(|h| h.received);
            let body = FileBody::new(file, size, Flags::new(), received).map_err(spool_error)?;
            Ok(Opened::Body(Box::new(body)))
        })
    }

    fn committed<'a>(
        &'a mut self,
        _folder: &'a SourceFolder,
        messages: &'a [&'a MessageMeta],
    ) -> BoxFuture<'a, FlowResult<()>> {
        Box::pin(async move {
            if !self.delete_after_copy {
                return Ok(());
            }
            let listing = self.listing().await?;
            let numbers: Vec<u32> = messages
                .iter()
                .filter_map(|m| listing.numbers.get(&m.id).copied())
                .collect();
            self.client.dele_all(&numbers).await?;
            Ok(())
        })
    }

    fn close(self: Box<Self>) -> BoxFuture<'static, FlowResult<()>> {
        // QUIT commits the deletions (of committed copies only); without it none happen.
        Box::pin(async move { Ok(self.client.quit_leaving_read_state().await?) })
    }
}

/// Whether the runner recorded `uid` as left behind (too large), which must never be deleted.
fn left_behind(checkpoints: &Checkpoints, folder: &SourceFolder, uid: &str) -> bool {
    // `skipped:pop3:` is how releases before the mail pipeline recorded them.
    checkpoints.contains_key(&super::left_behind_key(folder, uid))
        || checkpoints.contains_key(&format!("{}pop3:{uid}", super::LEFT_BEHIND_PREFIX))
}

/// When a POP3 message reached the mailbox: the date of its topmost `Received:` field, else
/// its `Date:` (see the module documentation).
pub fn received_of(message: &RawMessage) -> Option<SystemTime> {
    let received = message.header("Received").and_then(|v| {
        let v = String::from_utf8_lossy(&v).into_owned();
        v.rsplit_once(';').and_then(|(_, d)| parse_rfc5322(d))
    });
    received.or_else(|| {
        message
            .header("Date")
            .and_then(|v| parse_rfc5322(&String::from_utf8_lossy(&v)))
    })
}
