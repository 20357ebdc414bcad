//! A Microsoft 365 mailbox (Exchange Online over IMAP) as a [`MailTarget`]: the IMAP target
//! with Exchange's own special folders ("Sent Items", "Deleted Items", "Junk Email"), so mail
//! a source marks `\Sent` lands where Outlook shows sent mail, and every migrated folder
//! subscribed (phones and IMAP clients of the mailbox show subscribed folders only). The
//! login is the plan's app registration (SASL XOAUTH2 with a client-credentials token),
//! which the runners provide as a [`Login`].
//!
//! Exchange Online as it is: no MULTIAPPEND (pipelined APPENDs with LITERAL+), a per-mailbox
//! throttle budget (the IMAP target's shared send rate), keywords only where a folder takes
//! them, `\Flagged` set again after APPEND ([`Quirks::exchange`]); and folder names as
//! Exchange stores them ([`MailTarget::folder_names`]): `Files` is reserved at the top, and
//! names that differ only in case are one folder there, so the later one gets a number.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::imap_target::{ImapTarget, Quirks};
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
            imap: ImapTarget::new(endpoint, login, TargetNames::m365(), Quirks::exchange())
                .subscribing_all(),
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

    fn folder_names(&self, wanted: &[Vec<String>]) -> Vec<(Vec<String>, Option<String>)> {
        exchange_folder_names(wanted)
    }

    fn throttled_time(&self) -> std::time::Duration {
        self.imap.throttled_time()
    }
}

/// Top-level names Exchange Online keeps for itself.
const RESERVED: &[&str] = &["Files"];

/// See [`MailTarget::folder_names`]: a reserved top-level name gets ` (migrated)`, and a name
/// equal to an earlier one but for case gets ` (2)`, ` (3)`…; a renamed folder's subfolders
/// follow it.
fn exchange_folder_names(wanted: &[Vec<String>]) -> Vec<(Vec<String>, Option<String>)> {
    let mut chosen: HashMap<Vec<String>, Vec<String>> = HashMap::new();
    let mut taken: HashSet<String> = HashSet::new();
    let key = |path: &[String]| path.join("/").to_lowercase();
    let mut out = Vec::with_capacity(wanted.len());
    for w in wanted {
        let mut path: Vec<String> = Vec::new();
        let mut why = None;
        for i in 0..w.len() {
            if let Some(c) = chosen.get(&w[..=i]) {
                path = c.clone();
                continue;
            }
            let mut name = w[i].clone();
            if i == 0 && RESERVED.iter().any(|r| r.eq_ignore_ascii_case(&name)) {
                name = format!("{name} (migrated)");
                why = Some(format!(
                    "Exchange Online reserves the folder name `{}`",
                    w[i]
                ));
            }
            let mut candidate = path.clone();
            candidate.push(name.clone());
            let mut n = 2;
            while taken.contains(&key(&candidate)) {
                if let Some(last) = candidate.last_mut() {
                    *last = format!("{name} ({n})");
                }
                n += 1;
                why = Some(
                    "Exchange Online does not tell folder names apart by case: another folder \
                     has this name"
                        .into(),
                );
            }
            taken.insert(key(&candidate));
            chosen.insert(w[..=i].to_vec(), candidate.clone());
            path = candidate;
        }
        let renamed = path != *w;
        if renamed && why.is_none() {
            why = Some("a folder above it is stored under another name".into());
        }
        out.push((path, why.filter(|_| renamed)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Vec<String> {
        if s.is_empty() {
            Vec::new()
        } else {
            s.split('/').map(str::to_owned).collect()
        }
    }

    #[test]
    fn reserved_and_case_colliding_names_become_distinct() {
        let wanted: Vec<Vec<String>> = [
            "",
            "Archive",
            "Archive/2023",
            "Files",
            "archive",
            "archive/2023",
            "Projects",
        ]
        .iter()
        .map(|s| p(s))
        .collect();
        let got: Vec<String> = exchange_folder_names(&wanted)
            .into_iter()
            .map(|(path, why)| {
                format!(
                    "{}{}",
                    path.join("/"),
                    if why.is_some() { " *" } else { "" }
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                "",
                "Archive",
                "Archive/2023",
                "Files (migrated) *",
                "archive (2) *",
                "archive (2)/2023 *",
                "Projects",
            ]
        );
    }
}
