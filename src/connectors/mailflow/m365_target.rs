//! A Microsoft 365 mailbox (Exchange Online over IMAP) as a [`MailTarget`]: the IMAP target
//! with Exchange's own special folders ("Sent Items", "Deleted Items", "Junk Email"), so mail
//! a source marks `\Sent` lands where Outlook shows sent mail, and every migrated folder
//! subscribed (phones and IMAP clients of the mailbox show subscribed folders only). The login is the plan's app
//! registration (SASL XOAUTH2 with a client-credentials token), which the runners provide as
//! a [`Login`].

use std::sync::Arc;

use super::imap_target::ImapTarget;
use super::{BoxFuture, FlowResult, Login, MailTarget, TargetNames, TargetSession};
use crate::connectors::net::Endpoint;

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct M365Target {
    imap: ImapTarget,
}

impl M365Target {
    /// `endpoint`: Exchange Online's IMAP endpoint (`outlook.office365.com:993`, or a
    /// sovereign cloud's); `login`: the mailbox address with the app's token.
    pub fn new(endpoint: Endpoint, login: Arc<dyn Login>) -> Self {
        M365Target {
            imap: ImapTarget::new(endpoint, login, TargetNames::m365()).subscribing_all(),
        }
    }

    /// Signs in to the mailbox and out again (see [`ImapTarget::check_login`]).
    pub async fn check_login(&self) -> FlowResult<()> {
        self.imap.check_login().await
    }
}

impl MailTarget for M365Target {
    fn describe(&self) -> String {
        format!("m365|{}", self.imap.describe())
    }

    fn names(&self) -> TargetNames {
        self.imap.names()
    }

    fn max_sessions(&self) -> Option<usize> {
        self.imap.max_sessions()
    }

    fn endpoints(&self) -> Vec<Endpoint> {
        self.imap.endpoints()
    }

    fn open(&self, writable: bool) -> BoxFuture<'_, FlowResult<Box<dyn TargetSession>>> {
        self.imap.open(writable)
    }
}
