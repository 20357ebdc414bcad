//! An IMAP account as a [`MailSource`]: every folder the server lists (with whether it is
//! subscribed), read with `EXAMINE` and `BODY.PEEK[]` so the source's flags never change.
//!
//! Checkpoint: `imap:<folder wire name>` → JSON `{"uidvalidity", "last_uid", "modseq"}`, the
//! last settled UID of the folder under its UIDVALIDITY (another UIDVALIDITY voids it: the
//! folder is compared in full, which the target's identity counts make safe), and the
//! folder's modification sequence (CONDSTORE) as of the last flag pass.
//!
//! A date window narrows on the server first (`UID SEARCH SINCE/BEFORE`, in spans, over the
//! window widened by a day because servers compare dates in their own zone), then each
//! candidate's INTERNALDATE decides exactly; mail outside it costs no download.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{
    BodyReader, BoxFuture, Checkpoints, Fetched, FlagChange, FlagChanges, FlowError, FlowResult,
    FolderStatus, Login, MailSource, MessageMeta, Opened, Side, SourceFolder, SourceSession,
    STREAM_PIECE,
};
use crate::connectors::imap::client::BodyStream;
use crate::connectors::imap::folders::{decode_lossy, source_path};
use crate::connectors::imap::{FetchedMessage, ImapClient, MailboxStatus};
use crate::connectors::mail::identity::Identity;
use crate::connectors::mail::{DateWindow, Flag, Flags, RawMessage};
use crate::connectors::mailflow::SpecialUse;
use crate::connectors::net::Endpoint;

/// Sessions one step opens at once, when `max_connections` says nothing lower: providers
/// allow a handful of connections per mailbox (Exchange Online and Gmail about 15–20,
/// Dovecot's default 10 per user and IP) and several users' steps run at once.
const SESSIONS: usize = 4;

/// UIDs per `UID SEARCH`: its answer is one response line, which the connection caps at
/// 1 MiB; 65,536 UIDs of up to ten digits stay well under that.
const SEARCH_SPAN: u32 = 65_536;

/// Ranges per UID set: keeps a command line short.
const RANGES_PER_SET: usize = 256;

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct ImapSource {
    endpoint: Endpoint,
    login: Arc<dyn Login>,
    window: Option<DateWindow>,
}

impl ImapSource {
    pub fn new(endpoint: Endpoint, login: Arc<dyn Login>, window: Option<DateWindow>) -> Self {
        ImapSource {
            endpoint,
            login,
            window,
        }
    }
}

impl MailSource for ImapSource {
    fn describe(&self) -> String {
        let mut d = format!(
            "imap|{}|{:?}|{}|{}",
            self.endpoint.server(),
            self.endpoint.tls,
            self.endpoint.allow_plaintext,
            self.login.describe()
        );
        if let Some(w) = &self.window {
            d.push('|');
            d.push_str(&w.describe());
        }
        d
    }

    fn max_sessions(&self) -> usize {
        SESSIONS.min(self.endpoint.connection_limit())
    }

    fn endpoints(&self) -> Vec<Endpoint> {
        vec![self.endpoint.clone()]
    }

    fn open(&self) -> BoxFuture<'_, FlowResult<Box<dyn SourceSession>>> {
        Box::pin(async move {
            let credentials = self.login.credentials().await?;
            let client = ImapClient::connect(&self.endpoint, &credentials).await?;
            Ok(Box::new(ImapSourceSession {
                client,
                window: self.window,
                examined: None,
            }) as Box<dyn SourceSession>)
        })
    }
}

/// The per-folder checkpoint.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
struct FolderCheckpoint {
    uidvalidity: u32,
    last_uid: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    modseq: Option<u64>,
}

fn checkpoint_key(folder: &SourceFolder) -> String {
    format!("imap:{}", folder.id)
}

/// The folder's checkpoint, when it is valid under the folder's current UIDVALIDITY.
fn valid_checkpoint(
    folder: &SourceFolder,
    checkpoints: &Checkpoints,
    st: &MailboxStatus,
) -> Option<FolderCheckpoint> {
    let uidvalidity = st.uid_validity.filter(|v| *v != 0)?;
    checkpoints
        .get(&checkpoint_key(folder))
        .and_then(|v| serde_json::from_slice::<FolderCheckpoint>(v).ok())
        .filter(|c| c.uidvalidity == uidvalidity)
}

struct ImapSourceSession {
    client: ImapClient,
    window: Option<DateWindow>,
    /// The folder this session has examined, with what EXAMINE said.
    examined: Option<(String, MailboxStatus)>,
}

impl ImapSourceSession {
    /// EXAMINEs `folder` unless it is the one examined last. `fresh`: examine again anyway, to
    /// see mail delivered since.
    async fn examine(&mut self, folder: &SourceFolder, fresh: bool) -> FlowResult<MailboxStatus> {
        if let Some((name, st)) = &self.examined {
            if !fresh && *name == folder.id {
                return Ok(st.clone());
            }
        }
        self.examined = None;
        let st = self.client.examine(&folder.id).await?;
        self.examined = Some((folder.id.clone(), st.clone()));
        Ok(st)
    }

    /// The header fetch of every message of the examined folder with a UID in `lo..=hi`
    /// (`hi` `None`: to the end) received in the date window, in UID order.
    async fn headers(
        &mut self,
        st: &MailboxStatus,
        lo: u32,
        hi: Option<u32>,
    ) -> FlowResult<Vec<FetchedMessage>> {
        let mut out = Vec::new();
        if hi.is_some_and(|hi| hi < lo) || st.exists == 0 {
            return Ok(out);
        }
        match self.window {
            None => {
                let range = match hi {
                    Some(hi) => format!("{lo}:{hi}"),
                    None => format!("{lo}:*"),
                };
                let mut f = self.client.uid_fetch_headers(&range).await?;
                while let Some(m) = f.next().await? {
                    // `n:*` also returns the highest message when n is beyond it.
                    if m.uid >= lo && hi.is_none_or(|hi| m.uid <= hi) {
                        out.push(m);
                    }
                }
            }
            Some(window) => {
                let wide = window.widened();
                let mut candidates = Vec::new();
                let mut from = lo;
                loop {
                    // Bounded spans up to UIDNEXT (or `hi`), then an open one: mail delivered
                    // since EXAMINE is still seen, as by `n:*` without a window.
                    let limit = hi.or(st.uid_next.map(|n| n.saturating_sub(1)));
                    let span_end = from
                        .checked_add(SEARCH_SPAN - 1)
                        .filter(|end| limit.is_some_and(|l| *end < l));
                    match span_end {
                        Some(end) => {
                            candidates.extend(
                                self.client
                                    .uid_search(&format!("{from}:{end}"), &wide)
                                    .await?,
                            );
                            from = end + 1;
                        }
                        None => {
                            let range = match hi {
                                Some(hi) => format!("{from}:{hi}"),
                                None => format!("{from}:*"),
                            };
                            candidates.extend(self.client.uid_search(&range, &wide).await?);
                            break;
                        }
                    }
                }
                candidates.retain(|uid| *uid >= lo && hi.is_none_or(|hi| *uid <= hi));
                for set in uid_sets(&candidates) {
                    let mut f = self.client.uid_fetch_headers(&set).await?;
                    while let Some(m) = f.next().await? {
                        if window.contains(m.message.internal_date) {
                            out.push(m);
                        }
                    }
                }
            }
        }
        out.sort_by_key(|m| m.uid);
        out.dedup_by_key(|m| m.uid);
        Ok(out)
    }
}

impl SourceSession for ImapSourceSession {
    fn folders(&mut self) -> BoxFuture<'_, FlowResult<Vec<SourceFolder>>> {
        Box::pin(async move {
            Ok(self
                .client
                .list_subscribed()
                .await?
                .iter()
                .map(source_folder)
                .collect())
        })
    }

    fn status<'a>(
        &'a mut self,
        folder: &'a SourceFolder,
        checkpoints: &'a Checkpoints,
    ) -> BoxFuture<'a, FlowResult<FolderStatus>> {
        Box::pin(async move {
            let st = self.examine(folder, true).await?;
            let cp = valid_checkpoint(folder, checkpoints, &st);
            let after = cp.map_or(0, |c| c.last_uid);
            let caught_up = st
                .uid_next
                .is_some_and(|next| after.saturating_add(1) >= next);
            let flags_may_have_changed = match cp {
                Some(c) if c.last_uid > 0 => !(c.modseq.is_some() && c.modseq == st.highest_modseq),
                _ => false,
            };
            Ok(FolderStatus {
                messages: u64::from(st.exists),
                has_pending: st.exists > 0 && !caught_up,
                flags_may_have_changed,
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
            let st = self.examine(folder, true).await?;
            let cp = valid_checkpoint(folder, checkpoints, &st);
            let last = cp.map_or(0, |c| c.last_uid);
            let fetched = match side {
                Side::Pending => self.headers(&st, last.saturating_add(1), None).await?,
                Side::Settled if last == 0 => Vec::new(),
                Side::Settled => self.headers(&st, 1, Some(last)).await?,
            };
            // The modification sequence is only moved by a flag pass (which has read every
            // flag up to it); a folder copied for the first time starts from this EXAMINE's.
            let modseq = match cp {
                Some(c) => c.modseq,
                None => st.highest_modseq,
            };
            let uidvalidity = st.uid_validity.unwrap_or(0);
            let key = checkpoint_key(folder);
            Ok(fetched
                .into_iter()
                .map(|m| {
                    let checkpoint = serde_json::to_vec(&FolderCheckpoint {
                        uidvalidity,
                        last_uid: m.uid,
                        modseq,
                    })
                    .unwrap_or_default();
                    MessageMeta {
                        id: m.uid.to_string(),
                        size: m.size.unwrap_or(m.message.len() as u64),
                        identity: Some(Identity::of_message(m.message.bytes())),
                        subject: m.message.subject(),
                        received: m.message.internal_date,
                        in_window: true,
                        problem: None,
                        deleted: m.message.flags.contains(Flag::Deleted),
                        checkpoint: (key.clone(), checkpoint),
                    }
                })
                .collect())
        })
    }

    fn fetch<'a>(
        &'a mut self,
        folder: &'a SourceFolder,
        messages: &'a [&'a MessageMeta],
    ) -> BoxFuture<'a, FlowResult<Vec<Fetched>>> {
        Box::pin(async move {
            self.examine(folder, false).await?;
            let uids: Vec<u32> = messages
                .iter()
                .map(|m| {
                    m.id.parse::<u32>()
                        .map_err(|_| FlowError::Permanent(format!("not an IMAP UID: {:?}", m.id)))
                })
                .collect::<FlowResult<_>>()?;
            let mut found: HashMap<u32, RawMessage> = HashMap::with_capacity(uids.len());
            for set in uid_sets(&uids) {
                let mut f = self.client.uid_fetch(&set).await?;
                while let Some(m) = f.next().await? {
                    found.insert(m.uid, m.message);
                }
            }
            // A message the answer left out (or gave as `BODY[] NIL`) is asked for once more;
            // it is "gone" only when the folder confirms it no longer holds it. One still there
            // that the server will not hand over fails the copy instead of being passed by the
            // checkpoint: nothing is skipped without the report saying so.
            let missing: Vec<u32> = uids
                .iter()
                .copied()
                .filter(|u| !found.contains_key(u))
                .collect();
            if !missing.is_empty() {
                for set in uid_sets(&missing) {
                    let mut f = self.client.uid_fetch(&set).await?;
                    while let Some(m) = f.next().await? {
                        found.insert(m.uid, m.message);
                    }
                }
                let still: Vec<u32> = missing
                    .into_iter()
                    .filter(|u| !found.contains_key(u))
                    .collect();
                let mut present = Vec::new();
                for set in uid_sets(&still) {
                    present.extend(
                        self.client
                            .uid_search(&set, &DateWindow::unbounded())
                            .await?,
                    );
                }
                if let Some(uid) = present.first() {
                    return Err(FlowError::Transient(format!(
                        "the server did not hand over message UID {uid} of `{}` ({} message(s) in all: no body in its FETCH answer), although the folder still holds it",
                        folder.display,
                        present.len()
                    )));
                }
            }
            Ok(uids
                .iter()
                .map(|uid| found.remove(uid).map_or(Fetched::Gone, Fetched::Message))
                .collect())
        })
    }

    fn streams(&self) -> bool {
        true
    }

    /// The message's flags and internal date first (a header fetch: they go before the body
    /// in the target's APPEND), then `UID FETCH uid (BODY.PEEK[])`, whose literal is handed
    /// out as it arrives.
    fn open_body<'a>(
        &'a mut self,
        folder: &'a SourceFolder,
        message: &'a MessageMeta,
    ) -> BoxFuture<'a, FlowResult<Opened<'a>>> {
        Box::pin(async move {
            self.examine(folder, false).await?;
            let uid = message
                .id
                .parse::<u32>()
                .map_err(|_| FlowError::Permanent(format!("not an IMAP UID: {:?}", message.id)))?;
            let mut head = None;
            let mut f = self.client.uid_fetch_headers(&uid.to_string()).await?;
            while let Some(m) = f.next().await? {
                if m.uid == uid {
                    head = Some(m.message);
                }
            }
            // Left out of the answer: gone only when the folder confirms it, as in `fetch`.
            let Some(head) = head else {
                let present = self
                    .client
                    .uid_search(&uid.to_string(), &DateWindow::unbounded())
                    .await?;
                if present.contains(&uid) {
                    return Err(FlowError::Transient(format!(
                        "the server left message UID {uid} of `{}` out of its FETCH answer, although the folder still holds it",
                        folder.display
                    )));
                }
                return Ok(Opened::Gone);
            };
            let (flags, internal_date) = (head.flags.clone(), head.internal_date);
            match self.client.uid_fetch_body(uid).await? {
                Some(stream) => Ok(Opened::Body(Box::new(ImapBody {
                    stream,
                    flags,
                    internal_date,
                }))),
                None => Err(FlowError::Transient(format!(
                    "the server did not hand over message UID {uid} of `{}` (no body in its FETCH answer), although the folder still holds it",
                    folder.display
                ))),
            }
        })
    }

    fn flag_changes<'a>(
        &'a mut self,
        folder: &'a SourceFolder,
        checkpoints: &'a Checkpoints,
    ) -> BoxFuture<'a, FlowResult<FlagChanges>> {
        Box::pin(async move {
            let st = self.examine(folder, true).await?;
            let Some(cp) = valid_checkpoint(folder, checkpoints, &st) else {
                return Ok(FlagChanges::default());
            };
            if cp.last_uid == 0 {
                return Ok(FlagChanges::default());
            }
            // Only what changed since the last flag pass, where the server can tell.
            let since = cp.modseq.filter(|_| st.highest_modseq.is_some());
            let mut changes = Vec::new();
            {
                let mut f = self
                    .client
                    .uid_fetch_flags(&format!("1:{}", cp.last_uid), since)
                    .await?;
                while let Some(m) = f.next().await? {
                    if m.uid > cp.last_uid
                        || !self
                            .window
                            .is_none_or(|w| w.contains(m.message.internal_date))
                    {
                        continue;
                    }
                    changes.push(FlagChange {
                        identity: Identity::of_message(m.message.bytes()),
                        flags: m.message.flags.clone(),
                    });
                }
            }
            let checkpoint = st.highest_modseq.map(|modseq| {
                let value = serde_json::to_vec(&FolderCheckpoint {
                    modseq: Some(modseq),
                    ..cp
                })
                .unwrap_or_default();
                (checkpoint_key(folder), value)
            });
            Ok(FlagChanges {
                changes,
                checkpoint,
            })
        })
    }

    fn close(self: Box<Self>) -> BoxFuture<'static, FlowResult<()>> {
        Box::pin(async move {
            self.client.logout().await?;
            Ok(())
        })
    }
}

/// A message's body streamed from its FETCH literal ([`SourceSession::open_body`]).
struct ImapBody<'a> {
    stream: BodyStream<'a>,
    flags: Flags,
    internal_date: Option<std::time::SystemTime>,
}

impl BodyReader for ImapBody<'_> {
    fn size(&self) -> u64 {
        self.stream.size()
    }

    fn flags(&self) -> &Flags {
        &self.flags
    }

    fn internal_date(&self) -> Option<std::time::SystemTime> {
        self.internal_date
    }

    fn next_piece<'b>(&'b mut self, buf: &'b mut Vec<u8>) -> BoxFuture<'b, FlowResult<bool>> {
        Box::pin(async move { Ok(self.stream.next_piece(buf, STREAM_PIECE).await?) })
    }

    fn is_done(&self) -> bool {
        self.stream.is_done()
    }
}

/// A LIST entry as a [`SourceFolder`].
pub fn source_folder(mailbox: &crate::connectors::imap::Mailbox) -> SourceFolder {
    SourceFolder {
        id: mailbox.name.clone(),
        display: decode_lossy(&mailbox.name),
        path: source_path(&mailbox.name, mailbox.delimiter),
        special: SpecialUse::from_attributes(&mailbox.attributes),
        selectable: mailbox.is_selectable(),
        subscribed: mailbox.is_subscribed(),
    }
}

/// Sorted UIDs as compact UID sets (`1:4,7,9:10`), at most [`RANGES_PER_SET`] ranges per set
/// so a command line stays short.
pub fn uid_sets(uids: &[u32]) -> Vec<String> {
    let mut sorted = uids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut ranges: Vec<(u32, u32)> = Vec::new();
    for u in sorted {
        match ranges.last_mut() {
            Some((_, end)) if u == end.saturating_add(1) => *end = u,
            _ => ranges.push((u, u)),
        }
    }
    ranges
        .chunks(RANGES_PER_SET)
        .map(|c| {
            c.iter()
                .map(|(a, b)| {
                    if a == b {
                        a.to_string()
                    } else {
                        format!("{a}:{b}")
                    }
                })
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_sets_are_compact() {
        assert_eq!(uid_sets(&[5, 1, 2, 3, 7, 9, 10]), vec!["1:3,5,7,9:10"]);
        assert!(uid_sets(&[]).is_empty());
        assert_eq!(
            uid_sets(&[u32::MAX, u32::MAX - 1]),
            vec![format!("{}:{}", u32::MAX - 1, u32::MAX)]
        );
        let many: Vec<u32> = (0..1000).map(|i| i * 2).collect();
        assert_eq!(uid_sets(&many).len(), 1000usize.div_ceil(RANGES_PER_SET));
    }
}
