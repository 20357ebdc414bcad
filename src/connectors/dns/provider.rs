//! How a change reaches a zone: the [`Provider`] contract, and the plan's choice of one.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;

use super::authority::Server;
use super::rrset::Change;
use super::{manual::Manual, rfc2136::Rfc2136, DnsError};
use crate::plan::model::{Dns, DnsProvider};

/// A boxed, sendable future, so providers stay object-safe (`Box<dyn Provider>`).
pub type ProviderFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What [`Provider::apply`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The zone's primary accepted every change. The caller then polls the authoritative
    /// servers until they all publish them.
    Done,
    /// Nothing was changed: a person has to make these changes (at the registrar's web
    /// page). `instructions` say exactly what, for a person to read. The caller shows them,
    /// waits for the person's approval, then polls the authoritative servers.
    ByPerson { instructions: String },
}

/// Changes RRsets of a zone. One implementation per way of reaching a DNS host: `rfc2136`
/// (dynamic update with TSIG), `manual` (a person at the registrar); an API provider
/// (Cloudflare, Route 53) fits the same contract.
///
/// The caller (the `dns.*` steps and `cutover rollback dns`) reads the current RRsets,
/// computes the changes, commits the previous RRsets to its state, and only then calls
/// [`apply`](Self::apply); it verifies the result itself by polling every authoritative
/// server, so a provider need not wait for propagation.
pub trait Provider: Send + Sync {
    /// How the provider is named in messages: `rfc2136 at 127.0.0.1:53`, `manual`.
    fn describe(&self) -> String;

    /// The server whose data the provider changes, when it is one DNS server (a hidden
    /// primary need not be among the NS). Called before reading the current RRsets: the
    /// caller reads them there, because that is where `apply`'s prerequisites are checked.
    /// `Ok(None)` (the default): read from the first authoritative server.
    fn primary<'a>(&'a self) -> ProviderFuture<'a, Result<Option<Server>, DnsError>> {
        Box::pin(async { Ok(None) })
    }

    /// Makes `changes` (all in `zone`, absolute) happen, all or nothing where the provider
    /// can promise it. Each change's `before` is the RRset as the caller read it: a provider
    /// that can must refuse to apply when the zone no longer holds exactly that (someone
    /// changed it meanwhile) rather than overwrite it.
    ///
    /// Called once per zone and attempt; the caller never passes an empty list. May be called
    /// again with the same changes after a crash or a transient error, with `before` read
    /// anew. Returns:
    /// * `Ok(Applied::Done)` — the changes are in the zone;
    /// * `Ok(Applied::ByPerson { .. })` — nothing changed, a person must do it;
    /// * `Err(DnsError::Conflict)` — a `before` no longer matches; nothing changed;
    /// * `Err(DnsError::Auth)` — the server refused the credentials; nothing changed;
    /// * another `Err` — see [`DnsError::is_transient`] for whether trying again may help.
    fn apply<'a>(
        &'a self,
        zone: &'a str,
        changes: &'a [Change],
    ) -> ProviderFuture<'a, Result<Applied, DnsError>>;
}

/// The provider the plan's `dns:` section chooses. `base_dir` resolves `file:` secrets.
pub fn from_plan(dns: &Dns, base_dir: &Path) -> Result<Box<dyn Provider>, DnsError> {
    match dns.provider {
        DnsProvider::Manual => Ok(Box::new(Manual)),
        DnsProvider::Rfc2136 => match &dns.rfc2136 {
            Some(settings) => Ok(Box::new(Rfc2136::new(settings, base_dir))),
            None => Err(DnsError::Config(
                "`provider: rfc2136` needs an `rfc2136:` block".into(),
            )),
        },
    }
}
