//! DNS: which records a plan wants ([`records`], [`spf`]), what the zone publishes now
//! ([`authority`]: each authoritative server asked directly), and how a change gets there
//! ([`provider`]: [`rfc2136`] dynamic updates with TSIG, or a person following [`manual`]
//! instructions). Record sets and their diffs are in [`rrset`]; hickory is met in [`wire`].
//!
//! This module knows DNS, not steps: the `dns.*` step runners (`engine/dns.rs`) decide when
//! to lower, change, wait, verify and roll back, and what to keep in state.

pub mod authority;
pub mod manual;
pub mod provider;
pub mod records;
pub mod rfc2136;
pub mod rrset;
pub mod spf;
pub mod wire;

pub use authority::{PollOutcome, PollReport, Server, ServerAnswer};
pub use provider::{Applied, Provider};
pub use records::{Desired, Domain};
pub use rrset::{Change, Rrset, RrsetKey};

/// What can go wrong talking to DNS. Messages name the server, zone or key concerned and
/// never a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// The zone's authoritative servers could not be found.
    #[error(
        "cannot find the name servers of {zone}: {detail} (or list them in `dns.nameservers`)"
    )]
    Discovery { zone: String, detail: String },
    /// An authoritative server could not be read.
    #[error("name server {server}: {detail}")]
    Read { server: String, detail: String },
    /// An update's prerequisite failed: the zone changed since it was read. Nothing changed.
    #[error(
        "zone {zone} changed meanwhile, nothing was updated: {detail}; run `cutover plan` to see the zone as it is now"
    )]
    Conflict { zone: String, detail: String },
    /// The server did not accept the TSIG key (unknown name, wrong secret). Nothing changed.
    #[error("TSIG key `{key}` was not accepted: {detail}; nothing was changed")]
    Auth { key: String, detail: String },
    /// The server refused the update for another reason (ACL, not the primary).
    #[error("{server} {detail}")]
    Refused { server: String, detail: String },
    /// The server could not be reached or did not answer in time.
    #[error("{server}: {detail}")]
    Network { server: String, detail: String },
    /// The plan's DNS settings cannot work (caught by `validate` where it can).
    #[error("{0}")]
    Config(String),
}

impl DnsError {
    /// Whether trying again later may help (a network failure); a refused key, a conflict or
    /// a bad setting need a person first.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            DnsError::Network { .. } | DnsError::Read { .. } | DnsError::Discovery { .. }
        )
    }
}
