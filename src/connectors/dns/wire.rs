//! hickory at the edge: canonical values ↔ wire records, and a TCP exchange with one server
//! (optionally TSIG-signing every request).
//!
//! TCP only: authoritative servers must serve it (RFC 7766), answers are never truncated
//! (a long SPF record, several DKIM keys), and one connection carries every query of a poll.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_net::client::Client;
use hickory_net::proto::op::{DnsRequest, DnsRequestOptions, DnsResponse, Message, Query};
use hickory_net::proto::rr::rdata::{self, MX, SRV, TXT};
use hickory_net::proto::rr::{Name, RData, Record, RecordType as WireType, TSigner};
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::tcp::TcpClientStream;
use hickory_net::xfer::FirstAnswer;
use hickory_net::{DnsMultiplexer, NetError};

use super::rrset::{absolute, RrsetKey};
use crate::plan::model::RecordType;

/// A connection to one DNS server.
#[derive(Clone)]
pub struct Connection {
    client: Client<TokioRuntimeProvider>,
}

impl Connection {
    /// Opens a TCP connection to `addr`; every request times out after `timeout`. With a
    /// `signer`, requests are TSIG-signed and answers must carry a valid TSIG (hickory checks
    /// it and fails the exchange otherwise).
    pub async fn open(
        addr: SocketAddr,
        timeout: Duration,
        signer: Option<TSigner>,
    ) -> Result<Connection, NetError> {
        let provider = TokioRuntimeProvider::default();
        let (stream, sender) = TcpClientStream::new(addr, None, Some(timeout), provider);
        let stream = tokio::time::timeout(timeout, stream)
            .await
            .map_err(|_| NetError::Timeout)??;
        let mut multiplexer = DnsMultiplexer::new(stream, sender).with_timeout(timeout);
        if let Some(signer) = signer {
            multiplexer = multiplexer.with_signer(signer);
        }
        let (client, background) = Client::<TokioRuntimeProvider>::from_sender(multiplexer);
        tokio::spawn(background);
        Ok(Connection { client })
    }

    /// One non-recursive query (RD clear: an authoritative server answers from its zone).
    pub async fn query(&self, name: &str, rtype: RecordType) -> Result<DnsResponse, NetError> {
        let query = Query::query(wire_name(name)?, wire_type(rtype));
        let mut options = DnsRequestOptions::default();
        options.recursion_desired = false;
        options.use_edns = true;
        self.send(DnsRequest::from_query(query, options)).await
    }

    /// Sends a prepared message (an UPDATE) and returns the first answer.
    pub async fn send_message(&self, message: Message) -> Result<DnsResponse, NetError> {
        self.send(DnsRequest::from(message)).await
    }

    async fn send(&self, request: DnsRequest) -> Result<DnsResponse, NetError> {
        use hickory_net::DnsHandle as _;
        self.client.send(request).first_answer().await
    }
}

/// A name for the wire, absolute.
pub fn wire_name(name: &str) -> Result<Name, NetError> {
    Name::from_ascii(absolute(name)).map_err(NetError::from)
}

pub fn wire_type(rtype: RecordType) -> WireType {
    match rtype {
        RecordType::Mx => WireType::MX,
        RecordType::Txt => WireType::TXT,
        RecordType::Cname => WireType::CNAME,
        RecordType::A => WireType::A,
        RecordType::Aaaa => WireType::AAAA,
        RecordType::Srv => WireType::SRV,
    }
}

fn host(name: &Name) -> String {
    absolute(&name.to_ascii())
}

/// A wire record as (key, TTL, canonical value); `None` for types cutover does not manage.
pub fn from_record(record: &Record) -> Option<(RrsetKey, u32, String)> {
    let (rtype, value) = match &record.data {
        RData::MX(mx) => (
            RecordType::Mx,
            format!("{} {}", mx.preference, host(&mx.exchange)),
        ),
        RData::CNAME(cname) => (RecordType::Cname, host(&cname.0)),
        RData::TXT(txt) => (
            RecordType::Txt,
            txt.txt_data
                .iter()
                .map(|chunk| String::from_utf8_lossy(chunk).into_owned())
                .collect::<String>(),
        ),
        RData::A(a) => (RecordType::A, a.0.to_string()),
        RData::AAAA(aaaa) => (RecordType::Aaaa, aaaa.0.to_string()),
        RData::SRV(srv) => (
            RecordType::Srv,
            format!(
                "{} {} {} {}",
                srv.priority,
                srv.weight,
                srv.port,
                host(&srv.target)
            ),
        ),
        _ => return None,
    };
    Some((
        RrsetKey::new(&record.name.to_ascii(), rtype),
        record.ttl,
        value,
    ))
}

/// The wire record of a canonical value.
pub fn to_record(key: &RrsetKey, ttl: u32, value: &str) -> Result<Record, String> {
    let bad = || format!("`{value}` is not a valid {:?} value", key.rtype);
    let name = |text: &str| Name::from_ascii(absolute(text)).map_err(|_| bad());
    let data = match key.rtype {
        RecordType::Mx => {
            let (pref, exchange) = value.split_once(' ').ok_or_else(bad)?;
            RData::MX(MX::new(pref.parse().map_err(|_| bad())?, name(exchange)?))
        }
        RecordType::Cname => RData::CNAME(rdata::CNAME(name(value)?)),
        RecordType::Txt => RData::TXT(TXT::new(super::rrset::txt_chunks(value))),
        RecordType::A => RData::A(rdata::A(value.parse().map_err(|_| bad())?)),
        RecordType::Aaaa => RData::AAAA(rdata::AAAA(value.parse().map_err(|_| bad())?)),
        RecordType::Srv => {
            let parts: Vec<&str> = value.split_whitespace().collect();
            let [p, w, port, target] = parts.as_slice() else {
                return Err(bad());
            };
            RData::SRV(SRV::new(
                p.parse().map_err(|_| bad())?,
                w.parse().map_err(|_| bad())?,
                port.parse().map_err(|_| bad())?,
                name(target)?,
            ))
        }
    };
    let owner =
        Name::from_ascii(&key.name).map_err(|_| format!("`{}` is not a valid name", key.name))?;
    Ok(Record::from_rdata(owner, ttl, data))
}
