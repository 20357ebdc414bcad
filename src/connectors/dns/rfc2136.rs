//! RFC 2136 dynamic update, signed with TSIG (RFC 8945), to the zone's primary server.
//!
//! All changes of a zone go in one UPDATE message, so the server applies all or none. Each
//! RRset carries a prerequisite (RFC 2136 section 2.4): "exists with exactly these records"
//! (2.4.2, value-dependent) when it was read with records, "does not exist" (2.4.3) when it
//! was absent. A record someone changed between cutover's read and its update makes the
//! server answer NXRRSET/YXRRSET and change nothing, instead of being clobbered.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use hickory_net::proto::op::{
    update_message::UpdateMessage as _, Edns, Message, OpCode, Query, ResponseCode,
};
use hickory_net::proto::rr::rdata::tsig::TsigAlgorithm as WireAlgorithm;
use hickory_net::proto::rr::{DNSClass, Record, RecordType as WireType, TSigner};
use hickory_net::NetError;

use super::authority::Server;
use super::provider::{Applied, Provider, ProviderFuture};
use super::rrset::{shown_name, Change};
use super::wire::{self, Connection};
use super::DnsError;
use crate::plan::model::{self, TsigAlgorithm};
use crate::secrets::SharedSecret;

/// Seconds of clock difference the server may accept (RFC 8945 recommends 300).
const FUDGE: u16 = 300;
/// How long one update exchange may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The plan's `dns.rfc2136` server.
pub struct Rfc2136 {
    server: String,
    port: u16,
    key_name: String,
    algorithm: TsigAlgorithm,
    /// The TSIG key, resolved once per run (shared with every other use of the reference).
    secret: Arc<SharedSecret>,
}

impl Rfc2136 {
    pub fn new(settings: &model::Rfc2136, base_dir: &Path) -> Rfc2136 {
        Rfc2136 {
            server: settings.server.clone(),
            port: settings.port.unwrap_or(53),
            key_name: settings.tsig.name.clone(),
            algorithm: settings.tsig.algorithm,
            secret: crate::secrets::shared(&settings.tsig.secret, base_dir),
        }
    }

    fn label(&self) -> String {
        if self.server.contains(':') {
            format!("[{}]:{}", self.server, self.port)
        } else {
            format!("{}:{}", self.server, self.port)
        }
    }

    async fn addr(&self) -> Result<SocketAddr, DnsError> {
        let unreachable = |detail: String| DnsError::Network {
            server: self.label(),
            detail,
        };
        tokio::time::timeout(
            TIMEOUT,
            tokio::net::lookup_host((self.server.as_str(), self.port)),
        )
        .await
        .map_err(|_| unreachable("resolving the server's name timed out".into()))?
        .map_err(|e| unreachable(format!("cannot resolve the server's name: {e}")))?
        .next()
        .ok_or_else(|| unreachable("the server's name has no address".into()))
    }

    /// The TSIG signer, with the secret resolved now (never stored, never shown).
    fn signer(&self) -> Result<TSigner, DnsError> {
        let auth = |detail: String| DnsError::Auth {
            key: self.key_name.clone(),
            detail,
        };
        let secret = self.secret.get().map_err(|e| auth(e.to_string()))?;
        let key = base64::engine::general_purpose::STANDARD
            .decode(secret.expose().trim())
            .map_err(|_| auth("the key secret is not base64".into()))?;
        let algorithm = match self.algorithm {
            TsigAlgorithm::HmacSha256 => WireAlgorithm::HmacSha256,
            TsigAlgorithm::HmacSha512 => WireAlgorithm::HmacSha512,
        };
        let name = wire::wire_name(&self.key_name).map_err(|e| auth(e.to_string()))?;
        TSigner::new(key, algorithm, name, FUDGE).map_err(|e| auth(e.to_string()))
    }

    async fn send(&self, zone: &str, changes: &[Change]) -> Result<Applied, DnsError> {
        let message = update_message(zone, changes)?;
        let signer = self.signer()?;
        let addr = self.addr().await?;
        let network = |detail: String| DnsError::Network {
            server: self.label(),
            detail,
        };
        let connection = Connection::open(addr, TIMEOUT, Some(signer))
            .await
            .map_err(|e| network(e.to_string()))?;
        let response = match connection.send_message(message).await {
            Ok(response) => response,
            Err(e) if is_tsig_failure(&e) => {
                return Err(DnsError::Auth {
                    key: self.key_name.clone(),
                    detail: format!(
                        "{} did not accept the signature (wrong secret or algorithm?)",
                        self.label()
                    ),
                })
            }
            Err(e) => return Err(network(e.to_string())),
        };
        let zone_name = shown_name(zone).to_string();
        match response.metadata.response_code {
            ResponseCode::NoError => Ok(Applied::Done),
            code @ (ResponseCode::NXRRSet
            | ResponseCode::YXRRSet
            | ResponseCode::NXDomain
            | ResponseCode::YXDomain) => Err(DnsError::Conflict {
                zone: zone_name,
                detail: format!(
                    "{} answered {code}: {} changed since cutover read {}",
                    self.label(),
                    changes
                        .iter()
                        .map(|c| c.before.key.label())
                        .collect::<Vec<_>>()
                        .join(", "),
                    if changes.len() == 1 { "it" } else { "them" }
                ),
            }),
            ResponseCode::NotAuth | ResponseCode::BADSIG | ResponseCode::BADKEY => {
                Err(DnsError::Auth {
                    key: self.key_name.clone(),
                    detail: format!("{} refused the key for zone {zone_name}", self.label()),
                })
            }
            ResponseCode::Refused => Err(DnsError::Refused {
                server: self.label(),
                detail: format!(
                    "refused the update of zone {zone_name}: does its ACL let key `{}` update it?",
                    self.key_name
                ),
            }),
            ResponseCode::NotZone => Err(DnsError::Refused {
                server: self.label(),
                detail: format!("is not the primary of zone {zone_name}"),
            }),
            code => Err(DnsError::Refused {
                server: self.label(),
                detail: format!("answered {code} to the update of zone {zone_name}"),
            }),
        }
    }
}

/// hickory reports a bad or missing TSIG on the answer as a protocol error (the server
/// answers an unsigned NOTAUTH/BADSIG when it does not know the key or the MAC is wrong).
fn is_tsig_failure(error: &NetError) -> bool {
    let text = error.to_string().to_ascii_lowercase();
    ["tsig", "signature", "badsig", "badkey", "signer"]
        .iter()
        .any(|needle| text.contains(needle))
}

impl Provider for Rfc2136 {
    fn describe(&self) -> String {
        format!("rfc2136 at {}", self.label())
    }

    fn primary<'a>(&'a self) -> ProviderFuture<'a, Result<Option<Server>, DnsError>> {
        Box::pin(async move {
            Ok(Some(Server {
                name: self.label(),
                addr: self.addr().await?,
            }))
        })
    }

    fn apply<'a>(
        &'a self,
        zone: &'a str,
        changes: &'a [Change],
    ) -> ProviderFuture<'a, Result<Applied, DnsError>> {
        Box::pin(self.send(zone, changes))
    }
}

/// One UPDATE for all of a zone's changes: per RRset its prerequisite, a delete of the
/// whole RRset, then the new records.
pub fn update_message(zone: &str, changes: &[Change]) -> Result<Message, DnsError> {
    let config = |detail: String| DnsError::Config(detail);
    let zone_name = wire::wire_name(zone).map_err(|e| config(e.to_string()))?;
    let mut zone_query = Query::new();
    zone_query
        .set_name(zone_name)
        .set_query_class(DNSClass::IN)
        .set_query_type(WireType::SOA);
    let mut message = Message::query();
    message.metadata.op_code = OpCode::Update;
    message.metadata.recursion_desired = false;
    message.add_zone(zone_query);
    for change in changes {
        let key = &change.before.key;
        let owner = wire::wire_name(&key.name).map_err(|e| config(e.to_string()))?;
        let rtype = wire::wire_type(key.rtype);
        if change.before.exists() {
            // 2.4.2: RRset exists, value dependent (TTL 0, class of the zone).
            for value in &change.before.values {
                let record = wire::to_record(key, 0, value).map_err(config)?;
                message.add_pre_requisite(record);
            }
        } else {
            // 2.4.3: RRset does not exist (class NONE, empty RDATA).
            let mut record = Record::update0(owner.clone(), 0, rtype);
            record.dns_class = DNSClass::NONE;
            message.add_pre_requisite(record);
        }
        // 2.5.2: delete the RRset (class ANY, empty RDATA), then add the new records.
        let mut delete = Record::update0(owner, 0, rtype);
        delete.dns_class = DNSClass::ANY;
        message.add_update(delete);
        for value in &change.after.values {
            let record = wire::to_record(key, change.after.ttl, value).map_err(config)?;
            message.add_update(record);
        }
    }
    message
        .edns
        .get_or_insert_with(Edns::new)
        .set_max_payload(1232)
        .set_version(0);
    Ok(message)
}
