//! What the IMAP and POP3 clients share: where to connect ([`Endpoint`]), how to log in
//! ([`Credentials`]), the transport (TCP, implicit TLS, STARTTLS upgrade) and one error type
//! ([`NetError`]) that names the account and server and never the secret.
//!
//! TLS is rustls with the ring provider: pure Rust plus ring's small C/asm core, no OpenSSL
//! to match at run time. Trust is the system store, loaded once and shared with the HTTP
//! client ([`super::tls`]; the legacy hosts being migrated away from have public
//! certificates), plus an optional `ca_file` for private CAs. Plaintext needs
//! `tls: none` *and* `allow_plaintext`, checked here so no protocol code can forget it.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, LazyLock, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{
    AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, ReadBuf,
};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::plan::model::{ServerEndpoint, Tls};
use crate::redact::redact;

/// Where a client connects and how securely.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub tls: Tls,
    /// Opt-in for `tls: none`; without it a plaintext connection is refused before any byte.
    pub allow_plaintext: bool,
    /// Extra PEM CA certificates to trust (private CAs), in addition to the system bundle.
    pub ca_file: Option<PathBuf>,
    /// Bound on every single network operation (connect, one read, one write), so a server
    /// that stops answering fails the attempt instead of hanging the step forever.
    pub timeout: Duration,
    /// The most connections this process holds open to `host:port` at once (the plan's
    /// `max_connections`), enforced by [`reserve_connections`] before connecting.
    pub max_connections: Option<u32>,
    /// Who signs in (no secret), when known: connections of one login to one host count
    /// against [`max_connections_per_login`](Self::max_connections_per_login).
    pub login: Option<String>,
    /// The most connections this process holds open at once with [`login`](Self::login) on
    /// `host` (the plan's `max_connections_per_login`, default
    /// [`DEFAULT_CONNECTIONS_PER_LOGIN`]), enforced by [`reserve_connections`].
    pub max_connections_per_login: u32,
    /// The plan's known budget of messages a target mailbox takes per second
    /// (`max_messages_per_second`): the send rate starts there and never exceeds it.
    pub max_messages_per_second: Option<f64>,
    /// The most bytes read for one message from this server — an IMAP literal, a whole IMAP
    /// response, a POP3 multi-line answer: the plan's `max_message_size_mb` plus slack
    /// ([`Endpoint::with_message_limit`]). A server announcing or sending more gets a protocol
    /// error before the excess is read, so memory stays bounded whatever it claims.
    pub read_limit: u64,
}

/// [`Endpoint::read_limit`] without a plan: the default `max_message_size_mb` (35) with slack.
pub const DEFAULT_READ_LIMIT: u64 = read_limit_for(35 << 20);

/// A message limit plus slack: a server's `RFC822.SIZE` is an estimate at some (Exchange's
/// is known to differ from what it sends), so a quarter more and 1 MiB are accepted.
pub const fn read_limit_for(max_message_bytes: u64) -> u64 {
    max_message_bytes
        .saturating_add(max_message_bytes / 4)
        .saturating_add(1 << 20)
}

/// Connections per login and host when the plan does not say: web hosts commonly allow a
/// few per user.
pub const DEFAULT_CONNECTIONS_PER_LOGIN: u32 = 3;

impl Endpoint {
    /// An endpoint with the default timeout.
    pub fn new(host: impl Into<String>, port: u16, tls: Tls) -> Self {
        Endpoint {
            host: host.into(),
            port,
            tls,
            allow_plaintext: false,
            ca_file: None,
            timeout: Duration::from_secs(60),
            max_connections: None,
            login: None,
            max_connections_per_login: DEFAULT_CONNECTIONS_PER_LOGIN,
            max_messages_per_second: None,
            read_limit: DEFAULT_READ_LIMIT,
        }
    }

    /// From a plan's server entry: `ports` are the protocol's (implicit TLS, plain/STARTTLS)
    /// defaults, `base_dir` resolves a relative `ca_file` against the plan file.
    pub fn from_plan(server: &ServerEndpoint, ports: (u16, u16), base_dir: &Path) -> Self {
        let default_port = match server.tls {
            Tls::Implicit => ports.0,
            Tls::Starttls | Tls::None => ports.1,
        };
        Endpoint {
            allow_plaintext: server.allow_plaintext,
            ca_file: server.ca_file.as_ref().map(|p| base_dir.join(p)),
            max_connections: server.max_connections,
            max_connections_per_login: server
                .max_connections_per_login
                .unwrap_or(DEFAULT_CONNECTIONS_PER_LOGIN)
                .max(1),
            max_messages_per_second: server.max_messages_per_second,
            ..Endpoint::new(
                server.host.clone(),
                server.port.unwrap_or(default_port),
                server.tls,
            )
        }
    }

    pub fn with_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    pub fn allowing_plaintext(mut self) -> Self {
        self.allow_plaintext = true;
        self
    }

    /// The same server, for connections signing in as `login` (see
    /// [`max_connections_per_login`](Self::max_connections_per_login)).
    pub fn for_login(mut self, login: impl Into<String>) -> Self {
        self.login = Some(login.into());
        self
    }

    /// The most connections one task may hold at once to this endpoint: the lower of the
    /// server's and the login's limits.
    pub fn connection_limit(&self) -> usize {
        let per_login = if self.login.is_some() {
            self.max_connections_per_login.max(1)
        } else {
            u32::MAX
        };
        self.max_connections
            .map_or(per_login, |m| m.max(1).min(per_login)) as usize
    }

    /// Bounds reads from this server by a plan's message size limit (plus slack; see
    /// [`Endpoint::read_limit`]).
    pub fn with_message_limit(mut self, max_message_bytes: u64) -> Self {
        self.read_limit = read_limit_for(max_message_bytes);
        self
    }

    /// `host:port`, as errors show it.
    pub fn server(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

pub use crate::secrets::Secret;

/// How to log in. The login is not secret and appears in errors; the secret never does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// IMAP `AUTHENTICATE PLAIN` (or `LOGIN`), POP3 `USER`/`PASS`.
    Password { login: String, password: Secret },
    /// SASL XOAUTH2 with an access token obtained elsewhere.
    XOauth2 { login: String, token: Secret },
}

impl Credentials {
    pub fn password(login: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials::Password {
            login: login.into(),
            password: Secret::new(password),
        }
    }

    pub fn xoauth2(login: impl Into<String>, token: impl Into<String>) -> Self {
        Credentials::XOauth2 {
            login: login.into(),
            token: Secret::new(token),
        }
    }

    pub fn login(&self) -> &str {
        match self {
            Credentials::Password { login, .. } | Credentials::XOauth2 { login, .. } => login,
        }
    }

    /// The SASL XOAUTH2 initial response, base64-encoded.
    pub(crate) fn xoauth2_response(login: &str, token: &Secret) -> String {
        use base64::Engine;
        let raw = format!("user={login}\x01auth=Bearer {}\x01\x01", token.expose());
        base64::engine::general_purpose::STANDARD.encode(raw)
    }

    /// The SASL PLAIN initial response (empty authzid), base64-encoded.
    pub(crate) fn plain_response(login: &str, password: &Secret) -> String {
        use base64::Engine;
        let raw = format!("\0{login}\0{}", password.expose());
        base64::engine::general_purpose::STANDARD.encode(raw)
    }
}

/// Every failure of a mail server connection. `at` is `account at host:port` (or just
/// `host:port` before a login is known); server texts are redacted on construction.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("{at}: {op}: {source}")]
    Io {
        at: String,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{at}: {op}: no answer within {}s", .timeout.as_secs())]
    Timeout {
        at: String,
        op: &'static str,
        timeout: Duration,
    },
    #[error("{at}: TLS: {reason}")]
    Tls { at: String, reason: String },
    /// The answer to the TLS ClientHello was not TLS: a plaintext server (an IMAP `* OK`
    /// greeting read as a TLS record), the commonest mistake in a plan's `tls`.
    #[error("{at}: the server at {server} did not start TLS — is it plaintext or STARTTLS on this port? (tls: starttls / tls: none + allow_plaintext)")]
    NotTls { at: String, server: String },
    /// The server's name does not exist in DNS — a typo far more often than an outage, so
    /// not retried.
    #[error("{at}: the name {host} does not resolve ({reason}); check `host` in the plan")]
    NoSuchHost {
        at: String,
        host: String,
        reason: String,
    },
    #[error("{at}: refusing to connect without TLS: set `tls: none` together with `allow_plaintext: true` to send passwords and mail unencrypted")]
    PlaintextRefused { at: String },
    #[error("{at}: login rejected: {text}")]
    Auth { at: String, text: String },
    #[error("{at}: {command} rejected: {text}")]
    Rejected {
        at: String,
        command: String,
        text: String,
    },
    #[error("{at}: throttled by the server{}: {text}", retry_hint(.retry_after))]
    Throttled {
        at: String,
        /// The wait the server suggested, when it said one.
        retry_after: Option<Duration>,
        text: String,
    },
    #[error("{at}: unexpected server response: {reason}")]
    Protocol { at: String, reason: String },
}

fn retry_hint(d: &Option<Duration>) -> String {
    match d {
        Some(d) => format!(" (suggested wait {} ms)", d.as_millis()),
        None => String::new(),
    }
}

impl NetError {
    /// Whether a later attempt may succeed: dropped connections, timeouts, throttling.
    /// Credentials, TLS trust, refused commands and protocol violations need a human.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            NetError::Io { .. } | NetError::Timeout { .. } | NetError::Throttled { .. }
        )
    }

    /// The server's suggested wait, for throttling errors.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            NetError::Throttled { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    pub(crate) fn protocol(at: &str, reason: impl AsRef<str>) -> Self {
        NetError::Protocol {
            at: at.to_owned(),
            reason: redact(reason.as_ref()).into_owned(),
        }
    }
}

pub type NetResult<T> = Result<T, NetError>;

/// Server text as it may appear in an error: lossy UTF-8, trimmed, bounded, redacted.
pub(crate) fn server_text(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    let s = s.trim();
    let s: String = s.chars().take(300).collect();
    redact(&s).into_owned()
}

/// The JSON error of a failed SASL XOAUTH2 challenge (base64), shown redacted and bounded.
pub(crate) fn decode_sasl_error(challenge: &[u8]) -> String {
    use base64::Engine;
    let trimmed = String::from_utf8_lossy(challenge);
    match base64::engine::general_purpose::STANDARD.decode(trimmed.trim()) {
        Ok(json) => server_text(&json),
        Err(_) => server_text(challenge),
    }
}

/// Whether a failed TLS handshake read something that is not TLS at all (the server spoke
/// its protocol in plaintext), as opposed to a TLS failure proper (trust, names, versions).
fn not_tls(error: &io::Error) -> bool {
    error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|e| matches!(e, rustls::Error::InvalidMessage(_)))
}

/// Resolves `host:port` before connecting, so a name that does not exist (EAI_NONAME: the
/// resolver answered that it does not) is told apart from a resolver that could not answer
/// (EAI_AGAIN and the rest, worth retrying). The C library's reason is the only thing the
/// standard library passes on, hence the text match on glibc's and musl's wording.
async fn resolve(at: &str, endpoint: &Endpoint) -> NetResult<Vec<std::net::SocketAddr>> {
    let lookup = timed(at, "resolve", endpoint.timeout, async {
        tokio::net::lookup_host((endpoint.host.as_str(), endpoint.port)).await
    });
    match lookup.await {
        Ok(addrs) => Ok(addrs.collect()),
        Err(NetError::Io { source, .. }) if is_no_such_name(&source) => Err(NetError::NoSuchHost {
            at: at.to_owned(),
            host: endpoint.host.clone(),
            reason: source
                .to_string()
                .trim_start_matches("failed to lookup address information: ")
                .to_owned(),
        }),
        Err(e) => Err(e),
    }
}

fn is_no_such_name(error: &io::Error) -> bool {
    let text = error.to_string();
    [
        "Name or service not known",
        "No address associated with hostname",
        "Name does not resolve",
    ]
    .iter()
    .any(|known| text.contains(known))
}

/// TCP or TLS over TCP, so one reader type serves before and after STARTTLS.
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Only while the TCP stream is moved into the TLS handshake.
    Closed,
    /// A server's side of a conversation replayed from memory, what is written discarded:
    /// the protocol clients run against arbitrary bytes in fuzzing and property tests
    /// ([`Conn::replay`]).
    Replay(std::io::Cursor<Vec<u8>>),
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "connection closed")
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Closed => Poll::Ready(Err(closed())),
            Stream::Replay(bytes) => Pin::new(bytes).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Closed => Poll::Ready(Err(closed())),
            Stream::Replay(_) => Poll::Ready(Ok(buf.len())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Closed => Poll::Ready(Err(closed())),
            Stream::Replay(_) => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Closed | Stream::Replay(_) => Poll::Ready(Ok(())),
        }
    }
}

/// Longest response line accepted: generous for long FLAGS/CAPABILITY lines, bounded so a
/// broken server cannot exhaust memory.
const MAX_LINE: u64 = 1 << 20;

/// Reads and writes of large literals are timed piece by piece, this size each.
const IO_PIECE: usize = 256 * 1024;

/// A buffered connection with per-operation timeouts and errors that name the peer.
pub(crate) struct Conn {
    inner: BufReader<Stream>,
    pub(crate) at: String,
    endpoint: Endpoint,
    /// The reservation this connection counts against, released when it closes.
    slots: ConnectionSlots,
    /// Its number in the protocol trace ([`crate::trace`]).
    number: u64,
    /// Whether lines read go to the trace: off while they are message content (POP3 RETR).
    trace_reads: bool,
}

/// Connection slots reserved for a set of connections held at once: one per endpoint
/// listed, from its server's `max_connections` and from its login's
/// `max_connections_per_login`. Hold it while the connections are open; the slots return
/// when it drops.
///
/// Reserve everything a task will hold at once in **one** call: [`reserve_connections`]
/// takes each server's slots in one step and servers in one global order, so two tasks can
/// never each hold a slot the other waits for. A task holding a reservation must not wait
/// for another.
#[derive(Debug, Default)]
pub struct ConnectionSlots {
    _permits: Vec<OwnedSemaphorePermit>,
}

/// What a connection slot counts against, with its limit. Ordered: every reservation takes
/// its slots in this one global order (servers, then logins), which is what keeps two
/// reservations from each holding a slot the other waits for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum SlotKey {
    /// Host (lowercase), port, `max_connections`.
    Server(String, u16, u32),
    /// Host (lowercase), login, `max_connections_per_login`: a login's connections to one
    /// host count together whatever the port or protocol, as servers count them.
    Login(String, String, u32),
}

impl SlotKey {
    fn limit(&self) -> u32 {
        match self {
            SlotKey::Server(_, _, l) | SlotKey::Login(_, _, l) => *l,
        }
    }
}

/// Waits until every endpoint in `endpoints` has a free connection slot and reserves them
/// (see [`ConnectionSlots`]): one of its server's `max_connections`, if set, and one of its
/// login's `max_connections_per_login`, if the login is known. An endpoint listed twice (a
/// copy within one server) takes two slots of it, or all its slots when the limit is lower
/// — one connection per side is the least a copy can do with.
pub async fn reserve_connections(endpoints: &[&Endpoint]) -> ConnectionSlots {
    static SLOTS: LazyLock<Mutex<HashMap<SlotKey, Arc<Semaphore>>>> = LazyLock::new(Mutex::default);
    let mut wanted: std::collections::BTreeMap<SlotKey, u32> = Default::default();
    for e in endpoints {
        let host = e.host.to_ascii_lowercase();
        if let Some(limit) = e.max_connections {
            *wanted
                .entry(SlotKey::Server(host.clone(), e.port, limit.max(1)))
                .or_default() += 1;
        }
        if let Some(login) = &e.login {
            let key = SlotKey::Login(host, login.clone(), e.max_connections_per_login.max(1));
            *wanted.entry(key).or_default() += 1;
        }
    }
    let mut permits = Vec::with_capacity(wanted.len());
    for (key, count) in wanted {
        let limit = key.limit();
        let semaphore = {
            let mut slots = SLOTS
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            Arc::clone(
                slots
                    .entry(key)
                    .or_insert_with(|| Arc::new(Semaphore::new(limit as usize))),
            )
        };
        // Never closed, so acquiring only fails if it were; then the slot is not enforced.
        if let Ok(p) = semaphore.acquire_many_owned(count.min(limit)).await {
            permits.push(p);
        }
    }
    ConnectionSlots { _permits: permits }
}

impl Conn {
    /// TCP connect, and the TLS handshake for implicit TLS. Refuses `tls: none` without the
    /// explicit opt-in before touching the network.
    pub(crate) async fn connect(endpoint: &Endpoint, account: Option<&str>) -> NetResult<Conn> {
        let at = match account {
            Some(a) => format!("{a} at {}", endpoint.server()),
            None => endpoint.server(),
        };
        if endpoint.tls == Tls::None && !endpoint.allow_plaintext {
            return Err(NetError::PlaintextRefused { at });
        }
        let addrs = resolve(&at, endpoint).await?;
        let tcp = timed(&at, "connect", endpoint.timeout, async {
            TcpStream::connect(addrs.as_slice()).await
        })
        .await?;
        let _ = tcp.set_nodelay(true);
        let mut conn = Conn {
            inner: BufReader::new(Stream::Plain(tcp)),
            at,
            endpoint: endpoint.clone(),
            slots: ConnectionSlots::default(),
            number: crate::trace::connection_number(),
            trace_reads: true,
        };
        if crate::trace::enabled() {
            conn.trace_sent(&format!("(connected; tls: {:?})", endpoint.tls));
        }
        if endpoint.tls == Tls::Implicit {
            conn.upgrade().await?;
        }
        Ok(conn)
    }

    /// A connection whose server side is `server`, replayed from memory (what the client
    /// writes is discarded), reading at most `read_limit` bytes per message: for running the
    /// protocol clients against arbitrary bytes in fuzzing and property tests.
    pub(crate) fn replay(server: Vec<u8>, read_limit: u64) -> Conn {
        let endpoint = Endpoint {
            allow_plaintext: true,
            timeout: Duration::from_secs(5),
            read_limit,
            ..Endpoint::new("replay", 0, Tls::None)
        };
        Conn {
            inner: BufReader::new(Stream::Replay(std::io::Cursor::new(server))),
            at: "replay".into(),
            endpoint,
            slots: ConnectionSlots::default(),
            number: 0,
            trace_reads: true,
        }
    }

    /// Runs `session` on a replayed connection (the server's side is `server`, a 1 MiB read
    /// limit) on a runtime of its own: the protocol clients against bytes, for the fuzz targets
    /// and property tests. `None` when no runtime could be built.
    pub(crate) fn run_replayed<T, F: std::future::Future<Output = T>>(
        server: &[u8],
        session: impl FnOnce(Conn) -> F,
    ) -> Option<T> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .ok()?;
        Some(runtime.block_on(session(Conn::replay(server.to_vec(), 1 << 20))))
    }

    /// Records a line this connection sends in the protocol trace, as `shown`: the line with
    /// any secret replaced by `<redacted>` (the caller's job; the trace redacts again).
    pub(crate) fn trace_sent(&self, shown: &str) {
        if crate::trace::enabled() {
            crate::trace::record(&self.who(), crate::trace::Direction::Sent, shown);
        }
    }

    /// Records what was received, as text, in the protocol trace.
    pub(crate) fn trace_received(&self, text: &str) {
        if crate::trace::enabled() {
            crate::trace::record(&self.who(), crate::trace::Direction::Received, text);
        }
    }

    /// Lines read from now on go to the trace (`true`, the default) or are message content
    /// and are left out (`false`).
    pub(crate) fn trace_reads(&mut self, on: bool) {
        self.trace_reads = on;
    }

    fn who(&self) -> String {
        format!("#{} {}", self.number, self.at)
    }

    /// The most bytes read for one message ([`Endpoint::read_limit`]).
    pub(crate) fn read_limit(&self) -> u64 {
        self.endpoint.read_limit
    }

    /// Ties `slots` to this connection: they are released when it closes.
    pub(crate) fn hold(&mut self, slots: ConnectionSlots) {
        self.slots = slots;
    }

    /// Switches the connection to TLS (implicit TLS or after STARTTLS/STLS was accepted).
    /// Refuses when the server already sent bytes after its go-ahead: they were sent in
    /// plaintext and would be read as if protected (the STARTTLS injection attack).
    pub(crate) async fn upgrade(&mut self) -> NetResult<()> {
        if !self.inner.buffer().is_empty() {
            return Err(NetError::protocol(
                &self.at,
                "data after the STARTTLS go-ahead (possible injection); refusing",
            ));
        }
        let config =
            super::tls::client_config(self.endpoint.ca_file.as_deref()).map_err(|reason| {
                NetError::Tls {
                    at: self.at.clone(),
                    reason,
                }
            })?;
        let name = ServerName::try_from(self.endpoint.host.clone()).map_err(|e| NetError::Tls {
            at: self.at.clone(),
            reason: format!("invalid server name: {e}"),
        })?;
        let old = std::mem::replace(&mut self.inner, BufReader::new(Stream::Closed));
        let tcp = match old.into_inner() {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(_) | Stream::Closed | Stream::Replay(_) => {
                return Err(NetError::protocol(&self.at, "TLS requested twice"));
            }
        };
        let connector = TlsConnector::from(config);
        let at = self.at.clone();
        let tls =
            match tokio::time::timeout(self.endpoint.timeout, connector.connect(name, tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) if not_tls(&e) => {
                    return Err(NetError::NotTls {
                        at,
                        server: self.endpoint.server(),
                    })
                }
                Ok(Err(e)) => {
                    return Err(NetError::Tls {
                        at,
                        reason: redact(&e.to_string()).into_owned(),
                    })
                }
                Err(_) => {
                    return Err(NetError::Timeout {
                        at,
                        op: "TLS handshake",
                        timeout: self.endpoint.timeout,
                    })
                }
            };
        self.inner = BufReader::new(Stream::Tls(Box::new(tls)));
        self.trace_sent("(TLS established)");
        Ok(())
    }

    /// One response line including its line ending. EOF is an I/O error (the server hung up).
    pub(crate) async fn read_line(&mut self, op: &'static str) -> NetResult<Vec<u8>> {
        let mut line = Vec::new();
        let timeout = self.endpoint.timeout;
        let at = self.at.clone();
        let inner = &mut self.inner;
        timed(&at, op, timeout, async {
            (&mut *inner)
                .take(MAX_LINE)
                .read_until(b'\n', &mut line)
                .await
        })
        .await?;
        if line.is_empty() {
            return Err(NetError::Io {
                at,
                op,
                source: io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed by server"),
            });
        }
        if !line.ends_with(b"\n") {
            if line.len() as u64 >= MAX_LINE {
                return Err(NetError::protocol(
                    &self.at,
                    "response line longer than 1 MiB",
                ));
            }
            return Err(NetError::Io {
                at: self.at.clone(),
                op,
                source: io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed mid-line"),
            });
        }
        if self.trace_reads && crate::trace::enabled() {
            self.trace_received(&String::from_utf8_lossy(&line));
        }
        Ok(line)
    }

    /// Exactly `n` bytes (an IMAP literal), appended to `out`. The caller checks `n` against
    /// [`Self::read_limit`] first.
    pub(crate) async fn read_exact_into(
        &mut self,
        n: usize,
        out: &mut Vec<u8>,
        op: &'static str,
    ) -> NetResult<()> {
        let timeout = self.endpoint.timeout;
        let at = self.at.clone();
        let inner = &mut self.inner;
        // Nothing is reserved for the announced length: `out` grows piece by piece as bytes
        // arrive, so a length a server merely announces costs no memory.
        let mut remaining = n;
        // The timeout bounds each piece, not the whole literal: a 35 MB message over a slow
        // line may take minutes, but a line that stalls for `timeout` fails.
        while remaining > 0 {
            let piece = remaining.min(IO_PIECE);
            // Once the server has sent a first piece, room for the rest is reserved at once:
            // growing by doubling would hold up to twice the literal (and copy it).
            if remaining < n && out.capacity() < out.len() + remaining {
                out.reserve_exact(remaining);
            }
            let start = out.len();
            out.resize(start + piece, 0);
            timed(&at, op, timeout, async {
                inner.read_exact(&mut out[start..]).await
            })
            .await?;
            remaining -= piece;
        }
        if crate::trace::enabled() {
            self.trace_received(&format!("[{n} bytes of literal]"));
        }
        Ok(())
    }

    /// Writes and flushes.
    pub(crate) async fn write_all(&mut self, bytes: &[u8], op: &'static str) -> NetResult<()> {
        self.write_parts(&[bytes], op).await
    }

    /// Writes `parts` back to back and flushes once: a command and its literals without
    /// first copying them into one buffer. The timeout bounds each piece, as when reading.
    pub(crate) async fn write_parts(&mut self, parts: &[&[u8]], op: &'static str) -> NetResult<()> {
        let timeout = self.endpoint.timeout;
        let at = self.at.clone();
        let inner = self.inner.get_mut();
        for part in parts {
            for piece in part.chunks(IO_PIECE) {
                timed(&at, op, timeout, async { inner.write_all(piece).await }).await?;
            }
        }
        timed(&at, op, timeout, async { inner.flush().await }).await
    }

    pub(crate) async fn shutdown(&mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(5), self.inner.get_mut().shutdown()).await;
    }
}

async fn timed<T>(
    at: &str,
    op: &'static str,
    timeout: Duration,
    fut: impl std::future::Future<Output = io::Result<T>>,
) -> NetResult<T> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(source)) => Err(NetError::Io {
            at: at.to_owned(),
            op,
            source,
        }),
        Err(_) => Err(NetError::Timeout {
            at: at.to_owned(),
            op,
            timeout,
        }),
    }
}

/// Recognises a server's "slow down" answer and the wait it suggests.
///
/// Returns `Some(wait)` when `text` (the part of a `NO`/`-ERR` response after the tag or
/// status) is throttling: the IMAP response codes `[THROTTLED]`, `[LIMIT]`, `[UNAVAILABLE]`
/// (RFC 5530), the POP3 `[SYS/TEMP]`/`[IN-USE]` codes (RFC 3206/2449), and Exchange Online's
/// free text "Request is throttled. Suggested Backoff Time: N milliseconds", whose N is the
/// wait. Treating these as transient with the server's own wait is what keeps a bulk copy
/// from being locked out for hours.
pub fn detect_throttle(text: &str) -> Option<Option<Duration>> {
    let upper = text.to_ascii_uppercase();
    let wait = suggested_backoff(&upper);
    if wait.is_some() {
        return Some(wait);
    }
    let codes = [
        "[THROTTLED]",
        "[LIMIT]",
        "[UNAVAILABLE]",
        "[SYS/TEMP]",
        "[IN-USE]",
    ];
    if codes.iter().any(|c| upper.contains(c))
        || upper.contains("REQUEST IS THROTTLED")
        || is_connection_limit(text)
    {
        return Some(None);
    }
    None
}

/// Whether a refusal says there are too many connections (of this user, from this address):
/// `[LIMIT]` (RFC 5530) or the wording of servers without response codes. A copy then opens
/// fewer connections rather than failing.
pub fn is_connection_limit(text: &str) -> bool {
    let upper = text.to_ascii_uppercase();
    upper.contains("[LIMIT]")
        || upper.contains("TOO MANY CONNECTIONS")
        || upper.contains("MAXIMUM NUMBER OF CONNECTIONS")
        || upper.contains("TOO MANY SIMULTANEOUS")
}

fn suggested_backoff(upper: &str) -> Option<Duration> {
    let key = "SUGGESTED BACKOFF TIME:";
    let rest = upper[upper.find(key)? + key.len()..].trim_start();
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let n: u64 = digits.parse().ok()?;
    let unit = rest[digits.len()..].trim_start();
    Some(
        if unit.starts_with("MILLISECOND") || unit.starts_with("MS") {
            Duration::from_millis(n)
        } else if unit.starts_with("SECOND") || unit.starts_with('S') {
            Duration::from_secs(n)
        } else {
            // Exchange states milliseconds; a bare number is read the same way.
            Duration::from_millis(n)
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `max_connections` bounds the reservations held at once: with two slots, a third
    /// waits until one is released; an endpoint listed twice takes two slots at once.
    #[tokio::test]
    async fn max_connections_bounds_reservations() {
        let limited = Endpoint {
            max_connections: Some(2),
            ..Endpoint::new("limited.example", 993, Tls::Implicit)
        };
        let first = reserve_connections(&[&limited]).await;
        let _second = reserve_connections(&[&limited]).await;
        let third = tokio::spawn({
            let limited = limited.clone();
            async move { reserve_connections(&[&limited]).await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!third.is_finished(), "a third slot beyond the limit");
        drop(first);
        let third = tokio::time::timeout(Duration::from_secs(5), third)
            .await
            .expect("the third reservation proceeds once a slot is free")
            .unwrap();
        drop((third, _second));
        // A copy within one server: both sides' slots at once, so two such copies cannot
        // each hold one slot and wait for the other's.
        let pair = reserve_connections(&[&limited, &limited]).await;
        let waiting = tokio::spawn({
            let limited = limited.clone();
            async move { reserve_connections(&[&limited, &limited]).await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiting.is_finished());
        drop(pair);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the second pair proceeds")
            .unwrap();
        let unlimited = Endpoint::new("limited.example", 993, Tls::Implicit);
        let mut many = Vec::new();
        for _ in 0..5 {
            many.push(reserve_connections(&[&unlimited]).await);
        }
    }

    /// `max_connections_per_login` bounds one login's connections to a host, whatever the
    /// port, while other logins go on; with a server limit too, both are taken in one call.
    #[tokio::test]
    async fn connections_per_login_bound_each_login() {
        let imap = Endpoint {
            max_connections_per_login: 2,
            ..Endpoint::new("perlogin.example", 993, Tls::Implicit)
        };
        let pop = Endpoint {
            port: 995,
            ..imap.clone()
        };
        let alice = imap.clone().for_login("alice");
        let _a1 = reserve_connections(&[&alice]).await;
        let _a2 = reserve_connections(&[&pop.clone().for_login("alice")]).await;
        let third = tokio::spawn({
            let alice = alice.clone();
            async move { reserve_connections(&[&alice]).await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!third.is_finished(), "a third connection of alice");
        // Bob is another login: not held up by alice's.
        let bob = imap.clone().for_login("bob");
        tokio::time::timeout(Duration::from_secs(5), reserve_connections(&[&bob, &bob]))
            .await
            .expect("bob's two connections");
        drop(_a1);
        tokio::time::timeout(Duration::from_secs(5), third)
            .await
            .expect("alice's third proceeds once one closes")
            .unwrap();
        assert_eq!(alice.connection_limit(), 2);
        let capped = Endpoint {
            max_connections: Some(1),
            ..alice
        };
        assert_eq!(capped.connection_limit(), 1);
    }

    #[test]
    fn throttle_codes_and_backoff() {
        assert_eq!(detect_throttle("[THROTTLED] slow down"), Some(None));
        assert_eq!(detect_throttle("[LIMIT] too many connections"), Some(None));
        assert_eq!(detect_throttle("[UNAVAILABLE] try later"), Some(None));
        assert_eq!(detect_throttle("[SYS/TEMP] busy"), Some(None));
        assert_eq!(
            detect_throttle("Request is throttled. Suggested Backoff Time: 25000 milliseconds"),
            Some(Some(Duration::from_millis(25000)))
        );
        assert_eq!(
            detect_throttle("request is throttled. suggested backoff time: 7 seconds"),
            Some(Some(Duration::from_secs(7)))
        );
        assert_eq!(
            detect_throttle("Request is throttled. Suggested Backoff Time: soon"),
            Some(None)
        );
        assert_eq!(
            detect_throttle(
                "[LIMIT] Maximum number of connections from user+IP exceeded \
                 (mail_max_userip_connections=3)"
            ),
            Some(None)
        );
        assert_eq!(
            detect_throttle("Too many connections, try later"),
            Some(None)
        );
        assert!(is_connection_limit("Too many simultaneous connections"));
        assert!(!is_connection_limit("[THROTTLED] slow down"));
        assert_eq!(detect_throttle("[AUTHENTICATIONFAILED] nope"), None);
        assert_eq!(detect_throttle("Mailbox doesn't exist: Foo"), None);
        assert_eq!(
            detect_throttle("Suggested Backoff Time: 99999999999999999999999"),
            None
        );
    }

    #[test]
    fn secrets_stay_out_of_debug_and_errors() {
        let c = Credentials::password("alice@example.com", "hunter2-secret");
        assert!(!format!("{c:?}").contains("hunter2"));
        let e = NetError::Auth {
            at: "alice@example.com at imap.example.com:993".into(),
            text: server_text(b"[AUTHENTICATIONFAILED] password=hunter2 wrong"),
        };
        let shown = e.to_string();
        assert!(
            shown.contains("alice@example.com at imap.example.com:993"),
            "{shown}"
        );
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!e.is_transient());
    }

    #[test]
    fn sasl_responses() {
        use base64::Engine;
        let dec = |s: String| base64::engine::general_purpose::STANDARD.decode(s).unwrap();
        assert_eq!(
            dec(Credentials::plain_response("u", &Secret::new("p"))),
            b"\0u\0p"
        );
        assert_eq!(
            dec(Credentials::xoauth2_response("u@x", &Secret::new("tok"))),
            b"user=u@x\x01auth=Bearer tok\x01\x01"
        );
    }

    #[tokio::test]
    async fn plaintext_needs_opt_in() {
        let ep = Endpoint::new("127.0.0.1", 1, Tls::None);
        let err = Conn::connect(&ep, Some("bob")).await.err().unwrap();
        assert!(matches!(err, NetError::PlaintextRefused { .. }), "{err}");
        assert!(err.to_string().contains("allow_plaintext"));
    }
}
