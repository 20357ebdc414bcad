//! An IMAP mailbox as a [`MailTarget`]: folders created as needed and subscribed as at the
//! source, messages stored with their flags and INTERNALDATE by [`ImapClient::append_all`]
//! (one MULTIAPPEND where offered, else pipelined APPENDs), acknowledged one by one.
//!
//! **Throttling.** Every session writing to one mailbox shares its [`SendRate`]: a throttling
//! reply (`[THROTTLED]`, `[LIMIT]`, `[UNAVAILABLE]`, Microsoft's "Suggested Backoff Time")
//! pauses all of them, the refused messages are sent again, and from the first throttle on
//! messages go paced, in bounded bursts, at a rate that settles just under the mailbox's
//! budget (or at the plan's `max_messages_per_second` from the start). Throttling slows a
//! copy; it does not fail it — a mailbox that takes nothing for half an hour ends the
//! attempt (transient). A connection the server closes while throttling is reported as
//! throttling, so the runner reconnects and goes on without spending a retry.
//!
//! **What servers refuse.** A refusal naming the message's size (`[TOOBIG]`, "too large")
//! leaves that message behind; other refusals fail the copy. Keywords go only where the
//! folder stores them (`PERMANENTFLAGS` with `\*`); elsewhere the messages are stored
//! without them and counted for the report. Some servers end a connection after ten errors
//! (Exchange Online): after nine refusals the session reconnects first.
//!
//! **Exchange Online** ([`Quirks::exchange`]): `\Flagged` given in APPEND is not seen by
//! Exchange's other protocols, so it is set again with STORE; header lines over 10,000
//! characters are left behind before sending (Exchange refuses them).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::{
    BodyReader, BoxFuture, FlagChange, FlowError, FlowResult, Login, MailTarget, TargetNames,
    TargetNote, TargetSession, STREAM_PIECE,
};
use crate::connectors::imap::folders::target_wire_name;
use crate::connectors::imap::ImapClient;
use crate::connectors::mail::identity::{Identity, IdentityCounts};
use crate::connectors::mail::message::header_fields;
use crate::connectors::mail::{Flag, Flags, RawMessage};
use crate::connectors::net::{Endpoint, NetError};
use crate::connectors::send_rate::SendRate;

/// How long a target may keep throttling without taking any message before the attempt
/// gives up (and the walker's retry takes over).
const MAX_THROTTLED: Duration = Duration::from_secs(1800);

/// Refusals (NO/BAD answers) after which a session reconnects before its next command:
/// Exchange Online closes a connection at its tenth.
const ERRORS_PER_CONNECTION: u32 = 9;

/// A connection lost this soon after a throttling reply counts as the server closing it for
/// throttling (Exchange says `* BYE` without a reason).
const THROTTLE_DISCONNECT: Duration = Duration::from_secs(60);

/// What a server does differently from the IMAP RFCs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quirks {
    /// Set `\Flagged` with STORE after APPEND (Exchange shows an APPEND's flag over IMAP
    /// only).
    pub flag_after_append: bool,
    /// The longest header line the server stores; longer ones are left behind before
    /// sending.
    pub max_header_line: Option<usize>,
}

impl Quirks {
    /// Exchange Online's.
    pub fn exchange() -> Quirks {
        Quirks {
            flag_after_append: true,
            max_header_line: Some(10_000),
        }
    }
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct ImapTarget {
    endpoint: Endpoint,
    login: Arc<dyn Login>,
    names: TargetNames,
    quirks: Quirks,
    rate: Arc<SendRate>,
    /// Subscribe every folder the copy makes sure of, whatever the source says.
    subscribe_all: bool,
}

impl ImapTarget {
    /// `names`: the server's special folders (`TargetNames::imap()` for Dovecot-like
    /// servers). The mailbox's send rate is shared with every other target of the same
    /// server and login.
    pub fn new(
        endpoint: Endpoint,
        login: Arc<dyn Login>,
        names: TargetNames,
        quirks: Quirks,
    ) -> Self {
        let key = format!("{}|{}", endpoint.server(), login.describe());
        let rate = SendRate::for_mailbox(&key, endpoint.max_messages_per_second);
        ImapTarget {
            endpoint,
            login,
            names,
            quirks,
            rate,
            subscribe_all: false,
        }
    }

    /// The same target, subscribing every migrated folder whether or not it was subscribed
    /// at the source (Microsoft 365: Outlook shows every folder, IMAP clients of the same
    /// mailbox only subscribed ones).
    pub fn subscribing_all(mut self) -> Self {
        self.subscribe_all = true;
        self
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Signs in and out again: proves the mailbox exists and takes the login.
    pub async fn check_login(&self) -> FlowResult<()> {
        let client = self.connect().await?;
        let _ = client.logout().await;
        Ok(())
    }

    async fn connect(&self) -> FlowResult<ImapClient> {
        let credentials = self.login.credentials().await?;
        Ok(ImapClient::connect(&self.endpoint, &credentials).await?)
    }
}

impl MailTarget for ImapTarget {
    fn describe(&self) -> String {
        format!(
            "imap|{}|{:?}|{}|{}",
            self.endpoint.server(),
            self.endpoint.tls,
            self.endpoint.allow_plaintext,
            self.login.describe()
        )
    }

    fn names(&self) -> TargetNames {
        self.names.clone()
    }

    fn max_sessions(&self) -> Option<usize> {
        Some(self.endpoint.connection_limit())
    }

    fn endpoints(&self) -> Vec<Endpoint> {
        vec![self.endpoint.clone()]
    }

    fn open(&self, _writable: bool) -> BoxFuture<'_, FlowResult<Box<dyn TargetSession>>> {
        Box::pin(async move {
            let session = ImapTargetSession::connect(self.clone()).await?;
            Ok(Box::new(session) as Box<dyn TargetSession>)
        })
    }

    fn throttled_time(&self) -> Duration {
        self.rate.throttled_time()
    }
}

/// What a session learned of one target folder.
#[derive(Debug, Clone, Copy)]
struct FolderInfo {
    takes_keywords: bool,
    uid_validity: Option<u32>,
}

struct ImapTargetSession {
    target: ImapTarget,
    client: ImapClient,
    delimiter: char,
    /// Folders this session made sure of, and what it learned of them.
    folders: HashMap<String, FolderInfo>,
    /// The folder selected read-write, if any.
    selected: Option<String>,
    /// NO/BAD answers on this connection.
    errors: u32,
    last_throttle: Option<Instant>,
    /// Messages stored without their keywords, per folder, since the last `take_notes`.
    keywords_dropped: HashMap<String, u64>,
}

impl ImapTargetSession {
    async fn connect(target: ImapTarget) -> FlowResult<ImapTargetSession> {
        let mut client = target.connect().await?;
        let delimiter = client
            .list()
            .await?
            .iter()
            .find_map(|b| b.delimiter)
            .unwrap_or('/');
        Ok(ImapTargetSession {
            target,
            client,
            delimiter,
            folders: HashMap::new(),
            selected: None,
            errors: 0,
            last_throttle: None,
            keywords_dropped: HashMap::new(),
        })
    }

    /// A fresh connection before the server ends this one for its errors.
    async fn renew_if_worn(&mut self) -> FlowResult<()> {
        if self.errors < ERRORS_PER_CONNECTION {
            return Ok(());
        }
        let fresh = self.target.connect().await?;
        let worn = std::mem::replace(&mut self.client, fresh);
        let _ = worn.logout().await;
        self.errors = 0;
        self.selected = None;
        Ok(())
    }

    fn wire(&self, folder: &[String]) -> String {
        target_wire_name(folder, self.delimiter)
    }

    /// Selects `wire` read-write (once), learning whether it stores keywords.
    async fn select(&mut self, wire: &str) -> FlowResult<FolderInfo> {
        if self.selected.as_deref() == Some(wire) {
            if let Some(info) = self.folders.get(wire) {
                return Ok(*info);
            }
        }
        let st = self.client.select(wire).await?;
        self.selected = Some(wire.to_owned());
        let info = FolderInfo {
            takes_keywords: st.takes_keywords(),
            uid_validity: st.uid_validity,
        };
        self.folders.insert(wire.to_owned(), info);
        Ok(info)
    }

    /// UIDs, identities and flags of the folder's messages, or `None` when the folder does
    /// not exist. Leaves the folder selected (`select`) or examined.
    async fn scan(
        &mut self,
        wire: &str,
        select: bool,
    ) -> FlowResult<Option<Vec<(u32, Identity, Flags)>>> {
        self.selected = None;
        let st = if select {
            self.client.select(wire).await
        } else {
            self.client.examine(wire).await
        };
        let exists = match st {
            Ok(st) => {
                if select {
                    self.selected = Some(wire.to_owned());
                    let info = FolderInfo {
                        takes_keywords: st.takes_keywords(),
                        uid_validity: st.uid_validity,
                    };
                    self.folders.insert(wire.to_owned(), info);
                }
                st.exists
            }
            // The folder does not exist (yet): nothing of it is at the target.
            Err(NetError::Rejected { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        if exists == 0 {
            return Ok(Some(out));
        }
        let mut f = self.client.uid_fetch_flags("1:*", None).await?;
        while let Some(m) = f.next().await? {
            out.push((
                m.uid,
                Identity::of_message(m.message.bytes()),
                m.message.flags.clone(),
            ));
        }
        Ok(Some(out))
    }

    /// A transport failure shortly after throttling is the server closing the connection
    /// for it.
    fn classify(&self, e: NetError) -> FlowError {
        let throttling = self
            .last_throttle
            .is_some_and(|t| t.elapsed() < THROTTLE_DISCONNECT)
            || self.target.rate.throttled_within(THROTTLE_DISCONNECT);
        match e {
            NetError::Throttled { .. } => e.into(),
            e if throttling && e.is_transient() => NetError::Throttled {
                at: self.target.endpoint.server(),
                retry_after: None,
                text: format!("connection closed while throttling: {e}"),
            }
            .into(),
            e => e.into(),
        }
    }

    /// What the folder can store of `message`: without keywords where it takes none, and
    /// `Err` (left behind) for what the server refuses for sure.
    /// Returns the flags to store it with where they differ from its own — never a copy of
    /// the message.
    fn prepare(
        &mut self,
        wire: &str,
        info: FolderInfo,
        message: &RawMessage,
    ) -> FlowResult<Option<Flags>> {
        self.check_header(message.bytes())?;
        Ok(self.storable_flags(wire, info, &message.flags))
    }

    /// `Err` (left behind) for a header the server refuses for sure. `head`: the message, or
    /// its first piece (a header line longer than that is caught by the server instead).
    fn check_header(&self, head: &[u8]) -> FlowResult<()> {
        if let Some(max) = self.target.quirks.max_header_line {
            let longest = header_fields(head)
                .map(|f| f.name.len() + 2 + f.value.len())
                .max()
                .unwrap_or(0);
            if longest > max {
                return Err(FlowError::Refused {
                    text: format!(
                        "a header line of {longest} characters; the target stores at most {max}"
                    ),
                    left_behind: true,
                });
            }
        }
        Ok(())
    }

    /// The flags the folder can store of `flags`: `None` for all of them; without keywords
    /// where it takes none (counted for the report).
    fn storable_flags(&mut self, wire: &str, info: FolderInfo, flags: &Flags) -> Option<Flags> {
        if info.takes_keywords || flags.keywords().next().is_none() {
            return None;
        }
        *self.keywords_dropped.entry(wire.to_owned()).or_default() += 1;
        let mut system = Flags::new();
        for f in flags.system() {
            system.insert(f);
        }
        Some(system)
    }
}

impl ImapTargetSession {
    /// An APPEND's failure as the copy sees it: a refusal of the message (left behind or
    /// not), throttling (learned by the send rate), or the end of the session.
    fn append_refusal(&mut self, e: NetError) -> FlowError {
        match e {
            NetError::Rejected { text, .. } => {
                self.errors += 1;
                let left_behind = refuses_the_message(&text);
                FlowError::Refused { text, left_behind }
            }
            NetError::Throttled {
                at,
                retry_after,
                text,
            } => {
                self.errors += 1;
                self.last_throttle = Some(Instant::now());
                self.target.rate.throttled(1, retry_after);
                NetError::Throttled {
                    at,
                    retry_after,
                    text,
                }
                .into()
            }
            e => self.classify(e),
        }
    }
}

/// Whether a refusal is about the message itself (its size), not the mailbox.
fn refuses_the_message(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    t.contains("[toobig]")
        || t.contains("too large")
        || t.contains("too big")
        || t.contains("exceeds the maximum")
}

impl TargetSession for ImapTargetSession {
    fn size_limit(&self) -> Option<u64> {
        self.client.append_limit()
    }

    fn ensure_folder<'a>(&'a mut self, folder: &'a [String]) -> BoxFuture<'a, FlowResult<()>> {
        Box::pin(async move {
            let wire = self.wire(folder);
            if self.folders.contains_key(&wire) {
                return Ok(());
            }
            if wire != "INBOX" {
                self.client.create(&wire).await?;
            }
            self.select(&wire).await?;
            Ok(())
        })
    }

    fn subscribe<'a>(
        &'a mut self,
        folder: &'a [String],
        subscribed: bool,
    ) -> BoxFuture<'a, FlowResult<()>> {
        Box::pin(async move {
            let wire = self.wire(folder);
            if (subscribed || self.target.subscribe_all) && wire != "INBOX" {
                self.client.subscribe(&wire).await?;
            }
            Ok(())
        })
    }

    fn identities<'a>(
        &'a mut self,
        folder: &'a [String],
    ) -> BoxFuture<'a, FlowResult<IdentityCounts>> {
        Box::pin(async move {
            let wire = self.wire(folder);
            let select = self.folders.contains_key(&wire);
            Ok(self
                .scan(&wire, select)
                .await?
                .unwrap_or_default()
                .into_iter()
                .map(|(_, identity, _)| identity)
                .collect())
        })
    }

    fn append<'a>(
        &'a mut self,
        folder: &'a [String],
        messages: &'a [RawMessage],
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, Vec<FlowResult<Option<String>>>> {
        Box::pin(async move {
            let wire = self.wire(folder);
            let mut out: Vec<Option<FlowResult<Option<String>>>> =
                (0..messages.len()).map(|_| None).collect();
            // What the folder can store, message by message; refused ones are settled now.
            let info = match self.select(&wire).await {
                Ok(info) => info,
                Err(e) => return vec![Err(e)],
            };
            // Per message: its flags as the folder stores them; `None` where it is refused.
            let mut prepared: Vec<Option<Option<Flags>>> = Vec::with_capacity(messages.len());
            for (i, m) in messages.iter().enumerate() {
                match self.prepare(&wire, info, m) {
                    Ok(p) => prepared.push(Some(p)),
                    Err(e) => {
                        out[i] = Some(Err(e));
                        prepared.push(None);
                    }
                }
            }
            let mut queue: VecDeque<usize> = (0..messages.len())
                .filter(|&i| prepared[i].is_some())
                .collect();
            let mut last_progress = Instant::now();
            // A failure that ended the session. Reported at the first unsettled message,
            // which may come before the one that met it: one still waiting to be sent again
            // after a throttling reply.
            let mut ended: Option<FlowError> = None;
            'send: while !queue.is_empty() {
                if let Err(e) = self.renew_if_worn().await {
                    ended = Some(e);
                    break;
                }
                // Without MULTIAPPEND each message is its own command, and each refusal an
                // error on the connection: never more in flight than it can still take.
                let room = if self.client.has_capability("MULTIAPPEND") {
                    queue.len()
                } else {
                    queue
                        .len()
                        .min(ERRORS_PER_CONNECTION.saturating_sub(self.errors).max(1) as usize)
                };
                let n = tokio::select! {
                    n = self.target.rate.acquire(room) => n,
                    _ = cancel.cancelled() => break,
                };
                let chunk: Vec<usize> = queue.iter().take(n).copied().collect();
                let refs: Vec<(&RawMessage, &Flags)> = chunk
                    .iter()
                    .filter_map(|&i| {
                        let flags = prepared[i].as_ref()?;
                        Some((&messages[i], flags.as_ref().unwrap_or(&messages[i].flags)))
                    })
                    .collect();
                let answers = match self.client.append_all_flagged(&wire, &refs).await {
                    Ok(a) => a,
                    Err(e) => {
                        ended = Some(self.classify(e));
                        break;
                    }
                };
                let answered = answers.len();
                let mut throttled = Vec::new();
                let mut wait: Option<Duration> = None;
                let mut accepted = 0;
                let mut flagged = Vec::new();
                for (&i, answer) in chunk.iter().zip(answers) {
                    match answer {
                        Ok(uid) => {
                            if self.target.quirks.flag_after_append
                                && messages[i].flags.contains(Flag::Flagged)
                            {
                                flagged.extend(uid.map(|u| u.uid));
                            }
                            // With the folder's UIDVALIDITY: a UID recorded by an earlier run
                            // must not name a message of a recreated folder.
                            out[i] = Some(Ok(uid.map(|u| format!("{}:{}", u.uid_validity, u.uid))));
                            accepted += 1;
                        }
                        Err(NetError::Throttled { retry_after, .. }) => {
                            self.errors += 1;
                            self.last_throttle = Some(Instant::now());
                            wait = wait.max(retry_after);
                            throttled.push(i);
                        }
                        Err(NetError::Rejected { text, .. }) => {
                            self.errors += 1;
                            let left_behind = refuses_the_message(&text);
                            out[i] = Some(Err(FlowError::Refused { text, left_behind }));
                        }
                        Err(e) => {
                            ended = Some(self.classify(e));
                            break;
                        }
                    }
                }
                // Accounted even when the connection ended: a throttle followed by a BYE is
                // what the send rate must learn from most. The throttle first: it answers
                // the rate this chunk went at, before the acceptances may raise it.
                if !throttled.is_empty() {
                    self.target.rate.throttled(throttled.len(), wait);
                }
                self.target.rate.accepted(accepted);
                if accepted > 0 {
                    last_progress = Instant::now();
                }
                if ended.is_some() {
                    break 'send;
                }
                if !flagged.is_empty() {
                    let set = super::imap_source::uid_sets(&flagged);
                    for s in set {
                        if let Err(e) = self.client.uid_store(&s, true, &["\\Flagged"]).await {
                            ended = Some(self.classify(e));
                            break 'send;
                        }
                    }
                }
                // Settled ones leave the queue; throttled ones stay at its front, in order.
                queue.retain(|i| out[*i].is_none());
                if answered < chunk.len() {
                    break;
                }
                if !throttled.is_empty() && last_progress.elapsed() > MAX_THROTTLED {
                    ended = Some(FlowError::Transient(format!(
                        "the target kept throttling for {} s",
                        last_progress.elapsed().as_secs()
                    )));
                    break;
                }
            }
            // Settled entries up to the first unsettled one; what follows it is unknown.
            let mut settled: Vec<FlowResult<Option<String>>> =
                out.into_iter().map_while(|r| r).collect();
            if settled.len() < messages.len() {
                settled.extend(ended.map(Err));
            }
            settled
        })
    }

    fn streams(&self) -> bool {
        true
    }

    /// One APPEND whose literal (of the size the source's FETCH literal announced) is written
    /// piece by piece as the source hands pieces out. The first piece is read before anything
    /// is sent (the header check needs it, and a source failing at once leaves the target
    /// untouched). Once the literal started, a source failure abandons the connection: the
    /// server, reading fewer bytes than announced, discards the message.
    fn append_streamed<'a>(
        &'a mut self,
        folder: &'a [String],
        body: &'a mut dyn BodyReader,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, FlowResult<Option<String>>> {
        Box::pin(async move {
            let wire = self.wire(folder);
            self.renew_if_worn().await?;
            let info = self.select(&wire).await?;
            let mut piece = Vec::with_capacity(STREAM_PIECE);
            let mut more = body.next_piece(&mut piece).await?;
            if more {
                self.check_header(&piece)?;
            }
            let flags = self
                .storable_flags(&wire, info, body.flags())
                .unwrap_or_else(|| body.flags().clone());
            tokio::select! {
                _ = self.target.rate.acquire(1) => {}
                _ = cancel.cancelled() => {
                    return Err(FlowError::Transient("cancelled before the message was sent".into()));
                }
            }
            let size = body.size();
            let tag = match self
                .client
                .append_start(&wire, &flags, body.internal_date(), size)
                .await
            {
                Ok(tag) => tag,
                Err(e) => return Err(self.append_refusal(e)),
            };
            // Two pieces in turn: the next is read from the source while this one is
            // written to the target, so neither connection waits for the other.
            let mut next = Vec::with_capacity(STREAM_PIECE);
            let mut sent = 0u64;
            while more {
                if cancel.is_cancelled() {
                    // Cut short: the server stores nothing of it, the next run sends it.
                    self.client.abandon().await;
                    return Err(FlowError::Transient("cancelled mid-message".into()));
                }
                sent += piece.len() as u64;
                if sent > size {
                    self.client.abandon().await;
                    return Err(FlowError::Transient(format!(
                        "the source handed out more than the {size} bytes it announced"
                    )));
                }
                let (written, read) =
                    tokio::join!(self.client.append_piece(&piece), body.next_piece(&mut next));
                if let Err(e) = written {
                    self.client.abandon().await;
                    return Err(self.classify(e));
                }
                more = match read {
                    Ok(more) => more,
                    Err(e) => {
                        // The literal cannot be taken back: cut it short, so the server
                        // stores nothing.
                        self.client.abandon().await;
                        return Err(e);
                    }
                };
                std::mem::swap(&mut piece, &mut next);
            }
            if sent != size {
                self.client.abandon().await;
                return Err(FlowError::Transient(format!(
                    "the source handed out {sent} of the {size} bytes it announced"
                )));
            }
            let uid = match self.client.append_finish(&tag).await {
                Ok(uid) => uid,
                Err(e) => return Err(self.append_refusal(e)),
            };
            self.target.rate.accepted(1);
            if self.target.quirks.flag_after_append && flags.contains(Flag::Flagged) {
                if let Some(u) = uid {
                    self.client
                        .uid_store(&u.uid.to_string(), true, &["\\Flagged"])
                        .await
                        .map_err(|e| self.classify(e))?;
                }
            }
            Ok(uid.map(|u| format!("{}:{}", u.uid_validity, u.uid)))
        })
    }

    fn remove<'a>(
        &'a mut self,
        folder: &'a [String],
        ids: &'a [String],
    ) -> BoxFuture<'a, FlowResult<bool>> {
        Box::pin(async move {
            let wire = self.wire(folder);
            let info = self.select(&wire).await?;
            // `uidvalidity:uid` as `append` returned them; others, or another UIDVALIDITY
            // (the folder was recreated since), name nothing of ours.
            let uids: Vec<u32> = ids
                .iter()
                .filter_map(|i| i.split_once(':'))
                .filter(|(v, _)| v.parse().ok() == info.uid_validity)
                .filter_map(|(_, u)| u.parse().ok())
                .collect();
            if uids.is_empty() {
                return Ok(false);
            }
            let mut removed = true;
            for set in super::imap_source::uid_sets(&uids) {
                removed &= self.client.uid_remove(&set).await?;
            }
            Ok(removed)
        })
    }

    fn set_flags<'a>(
        &'a mut self,
        folder: &'a [String],
        changes: &'a [FlagChange],
    ) -> BoxFuture<'a, FlowResult<u64>> {
        Box::pin(async move {
            if changes.is_empty() {
                return Ok(0);
            }
            let wire = self.wire(folder);
            let Some(present) = self.scan(&wire, true).await? else {
                return Ok(0);
            };
            let takes_keywords = self.folders.get(&wire).is_none_or(|i| i.takes_keywords);
            let mut by_identity: HashMap<Identity, Vec<usize>> = HashMap::new();
            for (i, (_, identity, _)) in present.iter().enumerate() {
                by_identity.entry(*identity).or_default().push(i);
            }
            let mut taken: HashMap<Identity, usize> = HashMap::new();
            let mut changed = 0;
            for change in changes {
                let n = taken.entry(change.identity).or_default();
                let Some(&i) = by_identity.get(&change.identity).and_then(|v| v.get(*n)) else {
                    continue;
                };
                *n += 1;
                let (uid, _, flags) = &present[i];
                let mut add = Vec::new();
                let mut remove = Vec::new();
                for flag in [Flag::Seen, Flag::Answered, Flag::Flagged, Flag::Draft] {
                    match (change.flags.contains(flag), flags.contains(flag)) {
                        (true, false) => add.push(flag.imap_name()),
                        (false, true) => remove.push(flag.imap_name()),
                        _ => {}
                    }
                }
                if takes_keywords {
                    add.extend(change.flags.keywords().filter(|k| !flags.has_keyword(k)));
                }
                if add.is_empty() && remove.is_empty() {
                    continue;
                }
                let uid = uid.to_string();
                self.client.uid_store(&uid, true, &add).await?;
                self.client.uid_store(&uid, false, &remove).await?;
                changed += 1;
            }
            Ok(changed)
        })
    }

    fn take_notes(&mut self) -> Vec<TargetNote> {
        self.keywords_dropped
            .drain()
            .map(|(folder, count)| TargetNote::KeywordsDropped {
                folder: crate::connectors::imap::folders::decode_lossy(&folder),
                count,
            })
            .collect()
    }

    fn close(self: Box<Self>) -> BoxFuture<'static, FlowResult<()>> {
        Box::pin(async move { Ok(self.client.logout().await?) })
    }
}
