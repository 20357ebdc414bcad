//! What Exchange Online needs that Microsoft Graph cannot do, as Exchange Online PowerShell
//! for the consultant to run.
//!
//! Graph documents a user's `proxyAddresses` as read-only ("you can update this property only
//! through the Microsoft 365 admin center"), so a cloud mailbox's extra addresses — the plan's
//! aliases and the X500 addresses of the old Exchange organisation that the autocomplete
//! carry-over finds — are added with `Set-Mailbox -EmailAddresses @{Add=…}`. And IMAP
//! access for the app (`IMAP.AccessAsApp`) needs FullAccess on each mailbox for the app's
//! Exchange service principal (`Add-MailboxPermission`), which has no Graph API either.
//!
//! Steps record each change as a checkpoint (`exchange:…`, see [`ExchangeChange::checkpoint`])
//! when they find it needed; the apply report gathers them from every step into one script
//! ([`script`]). Every line is idempotent: running the script twice changes nothing more.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::connectors::autocomplete::export::{powershell_literal, BOM, CRLF};

/// Checkpoint keys of recorded changes start with this.
pub const EXCHANGE_PREFIX: &str = "exchange:";

/// One change for Exchange Online PowerShell.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "kebab-case")]
pub enum ExchangeChange {
    /// An address the mailbox must receive for: `smtp:alias@domain` (a secondary SMTP
    /// address) or `X500:/o=…` (an old legacyExchangeDN).
    AddAddress { mailbox: String, address: String },
    /// FullAccess on the mailbox for the app registration's Exchange service principal
    /// (`app_id` is its application id), so the app can open it over IMAP.
    GrantAppAccess { mailbox: String, app_id: String },
}

impl ExchangeChange {
    /// A secondary SMTP address for `mailbox`.
    pub fn smtp_alias(mailbox: &str, alias: &str) -> Self {
        ExchangeChange::AddAddress {
            mailbox: mailbox.to_owned(),
            address: format!("smtp:{alias}"),
        }
    }

    fn mailbox(&self) -> &str {
        match self {
            ExchangeChange::AddAddress { mailbox, .. }
            | ExchangeChange::GrantAppAccess { mailbox, .. } => mailbox,
        }
    }

    /// The checkpoint recording it: a key unique per change (so recording it twice is one
    /// record) and its JSON.
    pub fn checkpoint(&self) -> (String, Vec<u8>) {
        let what = match self {
            ExchangeChange::AddAddress { mailbox, address } => {
                format!("address:{}:{}", mailbox.to_lowercase(), address)
            }
            ExchangeChange::GrantAppAccess { mailbox, app_id } => {
                format!("app-access:{}:{}", mailbox.to_lowercase(), app_id)
            }
        };
        (
            format!("{EXCHANGE_PREFIX}{what}"),
            serde_json::to_vec(self).unwrap_or_default(),
        )
    }

    /// The changes among a step's checkpoints; records this build cannot read are skipped.
    pub fn from_checkpoints(checkpoints: &BTreeMap<String, Vec<u8>>) -> Vec<ExchangeChange> {
        checkpoints
            .range(EXCHANGE_PREFIX.to_owned()..)
            .take_while(|(k, _)| k.starts_with(EXCHANGE_PREFIX))
            .filter_map(|(_, v)| serde_json::from_slice(v).ok())
            .collect()
    }
}

/// The script's file name in the output folder.
pub fn script_file_name(plan: &str) -> String {
    format!("{plan}-exchange-online.ps1")
}

/// The Exchange Online PowerShell script making `changes`: one `Set-Mailbox` per mailbox for
/// its addresses, one `Add-MailboxPermission` per mailbox and app. UTF-8 with a byte order
/// mark and CRLF (Windows PowerShell 5.1 reads BOM-less files in the ANSI code page);
/// deterministic for the same set of changes in any order.
pub fn script(plan: &str, changes: &[ExchangeChange]) -> Vec<u8> {
    let mut addresses: BTreeMap<String, (String, Vec<&str>)> = BTreeMap::new();
    let mut grants: BTreeMap<(String, &str), &str> = BTreeMap::new();
    for change in changes {
        let key = change.mailbox().to_lowercase();
        match change {
            ExchangeChange::AddAddress { mailbox, address } => {
                let entry = addresses
                    .entry(key)
                    .or_insert_with(|| (mailbox.clone(), Vec::new()));
                // One spelling whatever the order the records come in.
                if *mailbox < entry.0 {
                    entry.0 = mailbox.clone();
                }
                if !entry.1.iter().any(|a| a.eq_ignore_ascii_case(address)) {
                    entry.1.push(address);
                }
            }
            ExchangeChange::GrantAppAccess { mailbox, app_id } => {
                let spelling = grants.entry((key, app_id)).or_insert(mailbox);
                if mailbox.as_str() < *spelling {
                    *spelling = mailbox;
                }
            }
        }
    }
    let mut out = String::from(BOM);
    let mut line = |text: &str| {
        out.push_str(text);
        out.push_str(CRLF);
    };
    line(&format!(
        "# Exchange Online changes for the migration `{plan}`, written by cutover."
    ));
    line("# Microsoft Graph cannot make them: a mailbox's proxy addresses are read-only there,");
    line("# and IMAP access for an app is a mailbox permission.");
    line("# Run in Exchange Online PowerShell (Connect-ExchangeOnline) as an Exchange administrator,");
    line("# after `cutover apply` created the mailboxes; running it again changes nothing.");
    line("$ErrorActionPreference = 'Stop'");
    if addresses.is_empty() && grants.is_empty() {
        line("# Nothing to change.");
    }
    for (mailbox, mut list) in addresses.into_values() {
        list.sort_unstable();
        let added = list
            .iter()
            .map(|a| powershell_literal(a))
            .collect::<Vec<_>>()
            .join(",");
        line(&format!(
            "Set-Mailbox -Identity {} -EmailAddresses @{{Add={added}}}",
            powershell_literal(&mailbox)
        ));
    }
    for ((_, app_id), mailbox) in grants {
        line(&format!(
            "Add-MailboxPermission -Identity {} -User (Get-ServicePrincipal -Identity {}).Identity -AccessRights FullAccess",
            powershell_literal(mailbox),
            powershell_literal(app_id)
        ));
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_round_trip_and_dedupe() {
        let alias = ExchangeChange::smtp_alias("Alice@acme.co.uk", "accounts@acme.co.uk");
        let x500 = ExchangeChange::AddAddress {
            mailbox: "alice@acme.co.uk".into(),
            address: "X500:/o=Acme/ou=First/cn=Recipients/cn=alice".into(),
        };
        let grant = ExchangeChange::GrantAppAccess {
            mailbox: "carol@acme.co.uk".into(),
            app_id: "6f1c2b0e".into(),
        };
        let mut checkpoints: BTreeMap<String, Vec<u8>> = [&alias, &x500, &grant, &alias]
            .into_iter()
            .map(ExchangeChange::checkpoint)
            .collect();
        checkpoints.insert("imap:INBOX".into(), b"{}".to_vec());
        checkpoints.insert("exchange:broken".into(), b"not json".to_vec());
        let read = ExchangeChange::from_checkpoints(&checkpoints);
        assert_eq!(read.len(), 3, "{read:?}");
        let text = String::from_utf8(script("acme", &read)).unwrap();
        assert!(text.starts_with('\u{FEFF}'));
        let lines: Vec<&str> = text.trim_start_matches('\u{FEFF}').split("\r\n").collect();
        assert!(
            lines.contains(&"Set-Mailbox -Identity 'Alice@acme.co.uk' -EmailAddresses @{Add='X500:/o=Acme/ou=First/cn=Recipients/cn=alice','smtp:accounts@acme.co.uk'}"),
            "{lines:#?}"
        );
        assert!(lines.contains(&"Add-MailboxPermission -Identity 'carol@acme.co.uk' -User (Get-ServicePrincipal -Identity '6f1c2b0e').Identity -AccessRights FullAccess"), "{lines:#?}");
        let mut reversed = read.clone();
        reversed.reverse();
        assert_eq!(script("acme", &reversed), script("acme", &read));
    }
}
