//! An IMAP mailbox as a [`MailTarget`]: folders created as needed and subscribed as at the
//! source, messages stored with their flags and INTERNALDATE by [`ImapClient::append_all`]
//! (one MULTIAPPEND where offered, else pipelined APPENDs), acknowledged one by one.
//!
//! Throttling replies (`[THROTTLED]`, `[LIMIT]`, `[UNAVAILABLE]`, Microsoft's "Suggested
//! Backoff Time") to an APPEND are waited out inside [`TargetSession::append`] — the
//! suggested time, else a doubling backoff — and the refused messages sent again: throttling
//! slows a copy, it does not fail it. A target that keeps throttling for half an hour without
//! taking a message ends the attempt (transient).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::{
    BoxFuture, FlagChange, FlowError, FlowResult, Login, MailTarget, TargetNames, TargetSession,
};
use crate::connectors::imap::folders::target_wire_name;
use crate::connectors::imap::ImapClient;
use crate::connectors::mail::identity::{Identity, IdentityCounts};
use crate::connectors::mail::{Flag, RawMessage};
use crate::connectors::net::{Endpoint, NetError};

/// How long a target may keep throttling without any message getting through before the
/// attempt gives up (and the walker's retry takes over).
const MAX_THROTTLED: Duration = Duration::from_secs(1800);

/// The longest server-suggested wait honoured at once.
const MAX_WAIT: Duration = Duration::from_secs(300);

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct ImapTarget {
    endpoint: Endpoint,
    login: Arc<dyn Login>,
    names: TargetNames,
    /// Subscribe every folder the copy makes sure of, whatever the source says.
    subscribe_all: bool,
}

impl ImapTarget {
    /// `names`: the server's special folders (`TargetNames::imap()` for Dovecot-like
    /// servers).
    pub fn new(endpoint: Endpoint, login: Arc<dyn Login>, names: TargetNames) -> Self {
        ImapTarget {
            endpoint,
            login,
            names,
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
        let credentials = self.login.credentials().await?;
        let client = ImapClient::connect(&self.endpoint, &credentials).await?;
        let _ = client.logout().await;
        Ok(())
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
            let credentials = self.login.credentials().await?;
            let mut client = ImapClient::connect(&self.endpoint, &credentials).await?;
            let delimiter = client
                .list()
                .await?
                .iter()
                .find_map(|b| b.delimiter)
                .unwrap_or('/');
            Ok(Box::new(ImapTargetSession {
                client,
                delimiter,
                created: Vec::new(),
                subscribe_all: self.subscribe_all,
            }) as Box<dyn TargetSession>)
        })
    }
}

struct ImapTargetSession {
    client: ImapClient,
    delimiter: char,
    /// Folders this session made sure of.
    created: Vec<String>,
    subscribe_all: bool,
}

impl ImapTargetSession {
    fn wire(&self, folder: &[String]) -> String {
        target_wire_name(folder, self.delimiter)
    }

    /// UIDs, identities and flags of the folder's messages, or `None` when the folder does
    /// not exist. Leaves the folder selected (`select`) or examined.
    async fn scan(
        &mut self,
        wire: &str,
        select: bool,
    ) -> FlowResult<Option<Vec<(u32, Identity, crate::connectors::mail::Flags)>>> {
        let st = if select {
            self.client.select(wire).await
        } else {
            self.client.examine(wire).await
        };
        let st = match st {
            Ok(st) => st,
            // The folder does not exist (yet): nothing of it is at the target.
            Err(NetError::Rejected { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        if st.exists == 0 {
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
}

impl TargetSession for ImapTargetSession {
    fn size_limit(&self) -> Option<u64> {
        self.client.append_limit()
    }

    fn ensure_folder<'a>(&'a mut self, folder: &'a [String]) -> BoxFuture<'a, FlowResult<()>> {
        Box::pin(async move {
            let wire = self.wire(folder);
            if wire == "INBOX" || self.created.contains(&wire) {
                return Ok(());
            }
            self.client.create(&wire).await?;
            self.created.push(wire);
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
            if (subscribed || self.subscribe_all) && wire != "INBOX" {
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
            Ok(self
                .scan(&wire, false)
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
            let mut pending: Vec<usize> = (0..messages.len()).collect();
            let mut throttled_since: Option<Instant> = None;
            let mut backoff = Duration::from_secs(1);
            // A failure that ended the session. Reported at the first unsettled message,
            // which may come before the one that met it: one still waiting to be sent again
            // after a throttling reply.
            let mut ended: Option<FlowError> = None;
            'send: while !pending.is_empty() {
                let refs: Vec<&RawMessage> = pending.iter().map(|&i| &messages[i]).collect();
                let answers = match self.client.append_all(&wire, &refs).await {
                    Ok(a) => a,
                    Err(e) => {
                        ended = Some(e.into());
                        break;
                    }
                };
                let mut retry = Vec::new();
                let mut wait = None;
                let mut progressed = false;
                let answered = answers.len();
                for (&i, answer) in pending.iter().zip(answers) {
                    match answer {
                        Ok(uid) => {
                            // With the folder's UIDVALIDITY: a UID recorded by an earlier run
                            // must not name a message of a recreated folder.
                            out[i] = Some(Ok(uid.map(|u| format!("{}:{}", u.uid_validity, u.uid))));
                            progressed = true;
                        }
                        Err(NetError::Throttled { retry_after, .. }) => {
                            // Without a suggested wait, back off adaptively: doubling per
                            // consecutive throttled round.
                            let w = retry_after.unwrap_or(backoff);
                            wait = Some(wait.unwrap_or(Duration::ZERO).max(w));
                            retry.push(i);
                        }
                        Err(NetError::Rejected { text, .. }) => {
                            let too_big = text.to_ascii_uppercase().contains("[TOOBIG]");
                            out[i] = Some(Err(FlowError::Refused { text, too_big }));
                        }
                        Err(e) => {
                            ended = Some(e.into());
                            break 'send;
                        }
                    }
                }
                if answered < pending.len() {
                    break;
                }
                let Some(wait) = wait else { break };
                if progressed {
                    throttled_since = None;
                    backoff = Duration::from_secs(1);
                }
                let since = *throttled_since.get_or_insert_with(Instant::now);
                if since.elapsed() > MAX_THROTTLED {
                    ended = Some(FlowError::Transient(format!(
                        "the target kept throttling for {} s",
                        since.elapsed().as_secs()
                    )));
                    break;
                }
                tokio::select! {
                    _ = tokio::time::sleep(wait.min(MAX_WAIT)) => {}
                    _ = cancel.cancelled() => break,
                }
                backoff = (backoff * 2).min(Duration::from_secs(60));
                pending = retry;
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

    fn remove<'a>(
        &'a mut self,
        folder: &'a [String],
        ids: &'a [String],
    ) -> BoxFuture<'a, FlowResult<bool>> {
        Box::pin(async move {
            let wire = self.wire(folder);
            let st = self.client.select(&wire).await?;
            // `uidvalidity:uid` as `append` returned them; others, or another UIDVALIDITY
            // (the folder was recreated since), name nothing of ours.
            let uids: Vec<u32> = ids
                .iter()
                .filter_map(|i| i.split_once(':'))
                .filter(|(v, _)| v.parse().ok() == st.uid_validity)
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
            let mut by_identity: std::collections::HashMap<Identity, Vec<usize>> =
                Default::default();
            for (i, (_, identity, _)) in present.iter().enumerate() {
                by_identity.entry(*identity).or_default().push(i);
            }
            let mut taken: std::collections::HashMap<Identity, usize> = Default::default();
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
                add.extend(change.flags.keywords().filter(|k| !flags.has_keyword(k)));
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

    fn close(self: Box<Self>) -> BoxFuture<'static, FlowResult<()>> {
        Box::pin(async move { Ok(self.client.logout().await?) })
    }
}
