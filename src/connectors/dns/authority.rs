//! Reading a zone where it is published: its authoritative servers, each asked directly.
//!
//! Never through a cache: a recursive resolver answers from what it cached up to a TTL ago,
//! which is exactly what a cutover must not trust. The servers come from the zone's NS
//! records (looked up through the system resolver: only that lookup may be cached) or from
//! the plan's explicit `dns.nameservers`; each is then queried over TCP with recursion off,
//! and an answer without the AA flag (a server not serving the zone) is an error, not data.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_net::proto::op::ResponseCode;
use hickory_net::proto::rr::RData;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::rrset::{shown_name, Rrset, RrsetKey};
use super::wire::{self, Connection};
use super::DnsError;

/// One authoritative server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Server {
    /// As the NS record or the plan names it: `ns1.ionos.co.uk`, `127.0.0.1:5301`.
    pub name: String,
    pub addr: SocketAddr,
}

impl Server {
    /// `ns1.ionos.co.uk (217.160.80.2:53)`, or just the address when the plan gave one.
    pub fn label(&self) -> String {
        if self.name == self.addr.to_string() || self.name == self.addr.ip().to_string() {
            self.addr.to_string()
        } else {
            format!("{} ({})", self.name, self.addr)
        }
    }
}

/// The authoritative servers of `zone`: `overrides` when given (`host`, `host:port`, an
/// address, `[v6]:port`), else the zone's NS records, each host resolved to one address
/// (IPv4 preferred: IPv6 is often unroutable on the consultant's network).
pub async fn servers(
    zone: &str,
    overrides: &[String],
    timeout: Duration,
) -> Result<Vec<Server>, DnsError> {
    if !overrides.is_empty() {
        let mut out = Vec::new();
        for entry in overrides {
            out.push(explicit_server(entry, timeout).await?);
        }
        return Ok(out);
    }
    let discovery = |detail: String| DnsError::Discovery {
        zone: shown_name(zone).to_string(),
        detail,
    };
    let resolver = hickory_resolver::TokioResolver::builder_tokio()
        .map_err(|e| {
            discovery(format!(
                "cannot read the system resolver configuration: {e}"
            ))
        })?
        .build()
        .map_err(|e| discovery(e.to_string()))?;
    let lookup = tokio::time::timeout(timeout, resolver.ns_lookup(zone))
        .await
        .map_err(|_| discovery("the NS lookup timed out".into()))?
        .map_err(|e| discovery(format!("NS lookup failed: {e}")))?;
    let mut names: Vec<String> = lookup
        .answers()
        .iter()
        .filter_map(|r| match &r.data {
            RData::NS(ns) => Some(shown_name(&ns.0.to_ascii()).to_ascii_lowercase()),
            _ => None,
        })
        .collect();
    names.sort();
    names.dedup();
    if names.is_empty() {
        return Err(discovery("the zone has no NS records".into()));
    }
    let mut out = Vec::new();
    for name in names {
        let ips = tokio::time::timeout(timeout, resolver.lookup_ip(name.as_str()))
            .await
            .map_err(|_| discovery(format!("looking up {name} timed out")))?
            .map_err(|e| discovery(format!("cannot resolve name server {name}: {e}")))?;
        let ips: Vec<IpAddr> = ips.iter().collect();
        let ip = ips
            .iter()
            .find(|ip| ip.is_ipv4())
            .or_else(|| ips.first())
            .copied()
            .ok_or_else(|| discovery(format!("name server {name} has no address")))?;
        out.push(Server {
            name,
            addr: SocketAddr::new(ip, 53),
        });
    }
    Ok(out)
}

async fn explicit_server(entry: &str, timeout: Duration) -> Result<Server, DnsError> {
    let entry = entry.trim();
    if let Ok(addr) = entry.parse::<SocketAddr>() {
        return Ok(Server {
            name: entry.to_string(),
            addr,
        });
    }
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Ok(Server {
            name: entry.to_string(),
            addr: SocketAddr::new(ip, 53),
        });
    }
    let (host, port) = match entry.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => (host, port.parse().unwrap_or(53)),
        _ => (entry, 53),
    };
    let addr = tokio::time::timeout(timeout, tokio::net::lookup_host((host, port)))
        .await
        .map_err(|_| DnsError::Discovery {
            zone: String::new(),
            detail: format!("resolving name server {entry} timed out"),
        })?
        .map_err(|e| DnsError::Discovery {
            zone: String::new(),
            detail: format!("cannot resolve name server {entry}: {e}"),
        })?
        .next()
        .ok_or_else(|| DnsError::Discovery {
            zone: String::new(),
            detail: format!("name server {entry} has no address"),
        })?;
    Ok(Server {
        name: entry.to_string(),
        addr,
    })
}

/// What `server` publishes for each of `keys` (absent RRsets included, with no values).
pub async fn read(
    server: &Server,
    keys: &[RrsetKey],
    timeout: Duration,
) -> Result<BTreeMap<RrsetKey, Rrset>, DnsError> {
    let fail = |detail: String| DnsError::Read {
        server: server.label(),
        detail,
    };
    let connection = Connection::open(server.addr, timeout, None)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let mut out = BTreeMap::new();
    for key in keys {
        let response = connection
            .query(&key.name, key.rtype)
            .await
            .map_err(|e| fail(format!("{}: {e}", key.label())))?;
        let code = response.metadata.response_code;
        if !matches!(code, ResponseCode::NoError | ResponseCode::NXDomain) {
            return Err(fail(format!(
                "answers {code} for {} (is it serving the zone?)",
                key.label()
            )));
        }
        if !response.metadata.authoritative {
            return Err(fail(format!(
                "is not authoritative for {} (its answer has no AA flag)",
                shown_name(&key.name)
            )));
        }
        let mut ttl = u32::MAX;
        let mut values = Vec::new();
        for record in &response.answers {
            if let Some((found, record_ttl, value)) = wire::from_record(record) {
                if &found == key {
                    ttl = ttl.min(record_ttl);
                    values.push(value);
                }
            }
        }
        out.insert(key.clone(), Rrset::new(key.clone(), ttl, values));
    }
    Ok(out)
}

/// One server's answer during a poll, as the report lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerAnswer {
    pub server: String,
    /// Whether it answered every wanted RRset: the same records, with at most the wanted
    /// TTL (a lower TTL only costs queries; a registrar may not offer the exact value).
    pub matches: bool,
    /// What it answered for each wanted RRset (empty when it could not be asked).
    pub answers: Vec<Rrset>,
    /// Why it could not be asked (timeout, refused, not authoritative).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ServerAnswer {
    /// `ns2 (127.0.0.1:5302): MX acme.co.uk 3600: 10 mx00.ionos.co.uk; …` — what a person
    /// reads to see which server lags.
    pub fn line(&self) -> String {
        let verdict = if self.matches { "ok" } else { "differs" };
        match &self.error {
            Some(e) => format!("{}: no answer: {e}", self.server),
            None => format!(
                "{}: {verdict}: {}",
                self.server,
                self.answers
                    .iter()
                    .map(|r| format!("{} {}: {}", r.key.label(), r.ttl, r.shown_values()))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        }
    }
}

/// The last round of a poll.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollReport {
    pub servers: Vec<ServerAnswer>,
    /// Seconds from the first round to the last.
    pub waited_secs: u64,
}

impl PollReport {
    pub fn all_match(&self) -> bool {
        self.servers.iter().all(|s| s.matches)
    }
}

/// Whether `answer` counts as publishing `want`: same records, TTL no higher.
pub fn publishes(answer: &Rrset, want: &Rrset) -> bool {
    answer.key == want.key && answer.values == want.values && answer.ttl <= want.ttl
}

/// How a poll ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollOutcome {
    /// Every server answers every wanted RRset.
    Complete(PollReport),
    /// `timeout` passed with some server still different (or unreachable).
    TimedOut(PollReport),
    Cancelled,
}

/// First wait between two poll rounds; doubled up to [`POLL_MAX_INTERVAL`].
pub const POLL_FIRST_INTERVAL: Duration = Duration::from_millis(250);
pub const POLL_MAX_INTERVAL: Duration = Duration::from_secs(15);

/// Asks every server for every wanted RRset until all [`publishes`] `want`, `timeout`
/// passes, or `cancel` fires. A server that cannot be asked counts as
/// not matching; it may come back in a later round.
pub async fn poll(
    servers: &[Server],
    want: &[Rrset],
    timeout: Duration,
    query_timeout: Duration,
    cancel: &CancellationToken,
) -> PollOutcome {
    let started = Instant::now();
    let keys: Vec<RrsetKey> = want.iter().map(|r| r.key.clone()).collect();
    let mut interval = POLL_FIRST_INTERVAL;
    loop {
        let mut answers = Vec::with_capacity(servers.len());
        for server in servers {
            let answer = match read(server, &keys, query_timeout).await {
                Ok(found) => {
                    let answers: Vec<Rrset> = want
                        .iter()
                        .map(|w| {
                            found
                                .get(&w.key)
                                .cloned()
                                .unwrap_or_else(|| Rrset::absent(w.key.clone()))
                        })
                        .collect();
                    ServerAnswer {
                        server: server.label(),
                        matches: answers.iter().zip(want).all(|(a, w)| publishes(a, w)),
                        answers,
                        error: None,
                    }
                }
                Err(e) => ServerAnswer {
                    server: server.label(),
                    matches: false,
                    answers: Vec::new(),
                    error: Some(e.to_string()),
                },
            };
            answers.push(answer);
        }
        let report = PollReport {
            servers: answers,
            waited_secs: started.elapsed().as_secs(),
        };
        if report.all_match() {
            return PollOutcome::Complete(report);
        }
        let left = timeout.saturating_sub(started.elapsed());
        if left.is_zero() {
            return PollOutcome::TimedOut(report);
        }
        tokio::select! {
            _ = tokio::time::sleep(interval.min(left)) => {}
            _ = cancel.cancelled() => return PollOutcome::Cancelled,
        }
        interval = (interval * 2).min(POLL_MAX_INTERVAL);
    }
}
