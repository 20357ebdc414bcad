//! A POP3 maildrop as a [`MailSource`]: one folder, its inbox, landing in the migration's
//! `into` folder (default the target's inbox).
//!
//! Checkpoints: `pop3:<uidl>` → `1` for every settled message, `outside` for one outside the
//! date window (so no later pass reads its headers again). A key per message keeps every
//! commit O(1); message numbers change between sessions, UIDLs do not.
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
    BoxFuture, Checkpoints, Fetched, FlowError, FlowResult, FolderStatus, Login, MailSource,
    MessageMeta, Side, SourceFolder, SourceSession,
};
use crate::connectors::mail::date::parse_rfc5322;
use crate::connectors::mail::identity::Identity;
use crate::connectors::mail::{DateWindow, RawMessage};
use crate::connectors::net::Endpoint;
use crate::connectors::pop3::{Pop3Client, Pop3Message};

/// The checkpoint value of a message outside the date window.
const OUTSIDE: &[u8] = b"outside";
/// The checkpoint value of a settled message.
const SETTLED: &[u8] = b"1";

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
            }) as Box<dyn SourceSession>)
        })
    }
}

struct Pop3Session {
    client: Pop3Client,
    window: Option<DateWindow>,
    into: Vec<String>,
    delete_after_copy: bool,
    /// The maildrop as this session sees it (UIDL + LIST, read once: POP3 locks the
    /// maildrop, so it cannot change during a session).
    listing: Option<Vec<Pop3Message>>,
}

fn key(uid: &str) -> String {
    format!("pop3:{uid}")
}

impl Pop3Session {
    async fn listing(&mut self) -> FlowResult<&[Pop3Message]> {
        if self.listing.is_none() {
            self.listing = Some(self.client.messages().await?);
        }
        Ok(self.listing.as_deref().unwrap_or_default())
    }

    fn number_of(&self, uid: &str) -> FlowResult<u32> {
        self.listing
            .as_deref()
            .unwrap_or_default()
            .iter()
            .find(|m| m.uid == uid)
            .map(|m| m.number)
            .ok_or_else(|| {
                FlowError::Permanent(format!("POP3 message {uid} is not in the maildrop"))
            })
    }

    /// Identity, subject and received time from the header fields (`TOP n 0`).
    async fn head(&mut self, number: u32) -> FlowResult<RawMessage> {
        Ok(RawMessage::new(self.client.top(number, 0).await?))
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
            }])
        })
    }

    fn status<'a>(
        &'a mut self,
        _folder: &'a SourceFolder,
        checkpoints: &'a Checkpoints,
    ) -> BoxFuture<'a, FlowResult<FolderStatus>> {
        Box::pin(async move {
            let listing = self.listing().await?;
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
            let listing = self.listing().await?.to_vec();
            let mut out = Vec::new();
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
                            self.client.dele(m.number).await?;
                        }
                        continue;
                    }
                    (Side::Settled, None) => continue,
                    (Side::Settled, Some(v)) if v.as_slice() == OUTSIDE => continue,
                    _ => {}
                }
                let mut meta = MessageMeta {
                    id: m.uid.clone(),
                    size: m.size,
                    identity: None,
                    subject: None,
                    received: None,
                    in_window: true,
                    problem: None,
                    checkpoint: (k, SETTLED.to_vec()),
                };
                if let Some(window) = self.window {
                    // The window needs the received date, which needs the header fields.
                    let head = self.head(m.number).await?;
                    describe(&mut meta, &head);
                    if !window.contains(meta.received) {
                        if side == Side::Settled {
                            continue;
                        }
                        meta.in_window = false;
                        meta.checkpoint.1 = OUTSIDE.to_vec();
                    }
                }
                out.push(meta);
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
            self.listing().await?;
            for meta in messages.iter_mut().filter(|m| m.identity.is_none()) {
                let number = self.number_of(&meta.id)?;
                let head = self.head(number).await?;
                describe(meta, &head);
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
            self.listing().await?;
            let mut out = Vec::with_capacity(messages.len());
            for meta in messages {
                let number = self.number_of(&meta.id)?;
                let message = RawMessage::new(self.client.retr(number).await?);
                let received = received_of(&message);
                out.push(Fetched::Message(message.with_internal_date(received)));
            }
            Ok(out)
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
            let numbers: HashMap<String, u32> = self
                .listing()
                .await?
                .iter()
                .map(|m| (m.uid.clone(), m.number))
                .collect();
            for meta in messages {
                if let Some(&n) = numbers.get(&meta.id) {
                    self.client.dele(n).await?;
                }
            }
            Ok(())
        })
    }

    fn close(self: Box<Self>) -> BoxFuture<'static, FlowResult<()>> {
        // QUIT commits the deletions (of committed copies only); without it none happen.
        Box::pin(async move { Ok(self.client.quit().await?) })
    }
}

/// Whether the runner recorded `uid` as left behind (too large), which must never be deleted.
fn left_behind(checkpoints: &Checkpoints, folder: &SourceFolder, uid: &str) -> bool {
    // `skipped:pop3:` is how releases before the mail pipeline recorded them.
    checkpoints.contains_key(&super::left_behind_key(folder, uid))
        || checkpoints.contains_key(&format!("{}pop3:{uid}", super::LEFT_BEHIND_PREFIX))
}

fn describe(meta: &mut MessageMeta, head: &RawMessage) {
    meta.identity = Some(Identity::of_message(head.bytes()));
    meta.subject = head.subject();
    meta.received = received_of(head);
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
