//! A small POP3 client (RFC 1939, CAPA/UIDL per RFC 2449, STLS per RFC 2595, XOAUTH2).
//!
//! Written here rather than taken from a crate because the one tried returned corrupted
//! messages: it did not remove dot-stuffing and lost the final CRLF, which breaks byte-exact
//! copies and every signature in them. This client returns exactly the bytes the server
//! stored: each line of a multi-line response is kept with its line ending, a leading `.` is
//! removed from stuffed lines, and only the terminating `.CRLF` is dropped.
//!
//! Message identity across sessions is the UIDL. Servers without UIDL get a stable stand-in:
//! a SHA-256 of the message's headers (`TOP n 0`), with `#k` appended for the k-th repeat of
//! identical headers, so a resumed migration can still tell what it has copied.
//!
//! **Reading leaves mail unread.** `RETR` marks a message read at Dovecot, Courier and most
//! servers — a migration would change the mailbox people still work in. `TOP n <lines>`
//! with more lines than the message can have returns the same bytes and leaves the read
//! state alone, so [`Pop3Client::download`] uses it wherever the server has TOP; only a
//! server without TOP gets `RETR`, and [`Pop3Client::quit_leaving_read_state`] then undoes
//! the read marks with `RSET` (which Dovecot applies to read marks as to deletions) before
//! it deletes anything.
//!
//! **Pipelining.** Where the server advertises `PIPELINING` (RFC 2449 §6.6), downloads and
//! deletions keep up to [`PIPELINE_WINDOW`] commands in flight and read the answers in
//! order, so a batch of small messages costs one round trip instead of one each; without
//! it, one command at a time.

use std::collections::HashMap;
use std::io::Write;

use sha2::{Digest, Sha256};

use super::net::{detect_throttle, server_text, Conn, Credentials, Endpoint, NetError, NetResult};
use crate::plan::model::Tls;

/// Default ports: POP3S (implicit TLS) and POP3 (plain or STLS).
pub const PORTS: (u16, u16) = (995, 110);

/// Commands kept in flight when the server advertises PIPELINING: a whole batch of the copy
/// runner (64 messages), so a batch of small messages costs one round trip; small enough
/// that the commands themselves (a few dozen bytes each) never fill a socket buffer while
/// answers are not yet read.
pub const PIPELINE_WINDOW: usize = 64;

/// The line count of a whole-message `TOP`: more lines than any message has, and within a
/// signed 32-bit integer, which is what servers parse it into.
const ALL_LINES: u32 = i32::MAX as u32;

/// What [`Pop3Client::download`] reads of each message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The exact bytes of the whole message.
    Whole,
    /// The header block (with its blank line), for identity, subject and dates.
    Headers,
}

/// One message in the maildrop, with a stable id for checkpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pop3Message {
    /// Message number in this session (1-based; changes between sessions).
    pub number: u32,
    /// Stable id: the server's UIDL, or `hdr:<sha256 of headers>[#k]` without UIDL.
    pub uid: String,
    /// Size as the server reports it (octets, with CRLF line endings).
    pub size: u64,
}

/// A logged-in POP3 session.
pub struct Pop3Client {
    conn: Conn,
    capabilities: Vec<String>,
    /// Whether `TOP` works: from CAPA, or, on a server without CAPA, learnt from the first
    /// try (`None` until then).
    top: Option<bool>,
    /// A `RETR` was sent: the server may have marked mail read, which QUIT would keep.
    marked_read: bool,
    /// Messages this session marked deleted (DELE), to mark again after an `RSET`.
    deleted: Vec<u32>,
}

impl std::fmt::Debug for Pop3Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pop3Client")
            .field("at", &self.conn.at)
            .field("capabilities", &self.capabilities)
            .finish_non_exhaustive()
    }
}

impl Pop3Client {
    /// Keeps `slots` (from [`reserve_connections`](crate::connectors::net::reserve_connections))
    /// until this session closes.
    pub fn hold_slots(&mut self, slots: crate::connectors::net::ConnectionSlots) {
        self.conn.hold(slots);
    }

    /// Connects, secures the connection as `endpoint.tls` says (STLS is required for
    /// `starttls`: a server that does not offer it is an error, never a silent downgrade) and
    /// logs in.
    pub async fn connect(endpoint: &Endpoint, credentials: &Credentials) -> NetResult<Self> {
        let conn = Conn::connect(endpoint, Some(credentials.login())).await?;
        Self::start(conn, endpoint.tls, credentials).await
    }

    /// The session on an open connection: greeting, CAPA, STLS when `tls` says, login.
    async fn start(conn: Conn, tls: Tls, credentials: &Credentials) -> NetResult<Self> {
        let mut client = Pop3Client {
            conn,
            capabilities: Vec::new(),
            top: None,
            marked_read: false,
            deleted: Vec::new(),
        };
        client.status_line("greeting").await?;
        client.capabilities = client.capa().await?;
        if tls == Tls::Starttls {
            if !client.has_capability("STLS") {
                return Err(NetError::Tls {
                    at: client.conn.at.clone(),
                    reason: "tls: starttls, but the server does not offer STLS".into(),
                });
            }
            client.command("STLS", "STLS").await?;
            client.conn.upgrade().await?;
            // Capabilities seen before TLS may have been tampered with (RFC 2595 §4).
            client.capabilities = client.capa().await?;
        }
        client.login(credentials).await?;
        // Servers may announce more after login (RFC 2449 §5); PIPELINING among them.
        let after = client.capa().await?;
        if !after.is_empty() {
            client.capabilities = after;
        }
        if !client.capabilities.is_empty() {
            client.top = Some(client.has_capability("TOP"));
        }
        Ok(client)
    }

    /// Whether commands may be sent without waiting for the answer before (RFC 2449
    /// `PIPELINING`).
    pub fn pipelining(&self) -> bool {
        self.has_capability("PIPELINING")
    }

    /// Whether this session has only `RETR` to read whole messages (no `TOP`), which may
    /// mark them read until [`quit_leaving_read_state`](Self::quit_leaving_read_state) undoes it.
    pub fn reads_with_retr(&self) -> bool {
        self.top == Some(false)
    }

    /// Whether this session is known to have `TOP` (from CAPA or a first answer).
    pub fn reads_with_top(&self) -> bool {
        self.top == Some(true)
    }

    /// Capabilities from CAPA (empty when the server does not know CAPA).
    pub fn capabilities(&self) -> &[String] {
        &self.capabilities
    }

    pub fn has_capability(&self, name: &str) -> bool {
        self.capabilities.iter().any(|c| {
            c.split_whitespace()
                .next()
                .is_some_and(|w| w.eq_ignore_ascii_case(name))
        })
    }

    async fn capa(&mut self) -> NetResult<Vec<String>> {
        self.conn.trace_sent("CAPA");
        self.conn.write_all(b"CAPA\r\n", "CAPA").await?;
        let line = self.conn.read_line("CAPA").await?;
        if !line.starts_with(b"+OK") {
            return Ok(Vec::new());
        }
        let body = self.multiline("CAPA").await?;
        Ok(String::from_utf8_lossy(&body)
            .lines()
            .map(|l| l.trim().to_owned())
            .filter(|l| !l.is_empty())
            .collect())
    }

    async fn login(&mut self, credentials: &Credentials) -> NetResult<()> {
        let result = match credentials {
            Credentials::Password { login, password } => {
                // USER and PASS are single lines: a line break in either would end the command
                // early and send the rest as a command of its own.
                let breaks = |s: &str| s.contains(['\r', '\n', '\0']);
                if breaks(login) || breaks(password.expose()) {
                    return Err(NetError::Auth {
                        at: self.conn.at.clone(),
                        text: "the login or password contains a line break or NUL, which POP3 USER/PASS cannot send".into(),
                    });
                }
                self.command(&format!("USER {login}"), "USER").await?;
                self.command(&format!("PASS {}", password.expose()), "PASS")
                    .await
            }
            Credentials::XOauth2 { login, token } => {
                let resp = Credentials::xoauth2_response(login, token);
                let line = format!("AUTH XOAUTH2 {resp}\r\n");
                self.conn.trace_sent("AUTH XOAUTH2 <redacted>");
                self.conn.write_all(line.as_bytes(), "AUTH XOAUTH2").await?;
                let reply = self.conn.read_line("AUTH XOAUTH2").await?;
                if let Some(challenge) = reply.strip_prefix(b"+ ") {
                    // A failed XOAUTH2 answers with a JSON error as a challenge; the client
                    // must send an empty response to receive the final -ERR (RFC 7628 §3.2.3).
                    let detail = super::net::decode_sasl_error(challenge);
                    self.conn.trace_sent("(empty response)");
                    self.conn.write_all(b"\r\n", "AUTH XOAUTH2").await?;
                    let _ = self.conn.read_line("AUTH XOAUTH2").await?;
                    return Err(NetError::Auth {
                        at: self.conn.at.clone(),
                        text: format!("XOAUTH2 token refused: {detail}"),
                    });
                }
                self.status_from(reply, "AUTH XOAUTH2")
            }
        };
        match result {
            Err(NetError::Rejected { at, text, .. }) => Err(match detect_throttle(&text) {
                Some(retry_after) => NetError::Throttled {
                    at,
                    retry_after,
                    text,
                },
                None => NetError::Auth { at, text },
            }),
            other => other.map(|_| ()),
        }
    }

    /// Message count and total size (STAT).
    pub async fn stat(&mut self) -> NetResult<(u32, u64)> {
        let line = self.command("STAT", "STAT").await?;
        let mut it = line.split_whitespace().skip(1);
        match (
            it.next().and_then(|n| n.parse().ok()),
            it.next().and_then(|n| n.parse().ok()),
        ) {
            (Some(n), Some(s)) => Ok((n, s)),
            _ => Err(NetError::protocol(
                &self.conn.at,
                format!("bad STAT answer {line:?}"),
            )),
        }
    }

    /// `(number, size)` of every message (LIST).
    pub async fn list(&mut self) -> NetResult<Vec<(u32, u64)>> {
        self.command("LIST", "LIST").await?;
        let body = self.multiline("LIST").await?;
        let at = self.conn.at.clone();
        parse_pairs(&body, &at, "LIST", |s| s.parse::<u64>().ok())
    }

    /// `(number, uid)` of every message, or `None` when the server has no UIDL.
    pub async fn uidl(&mut self) -> NetResult<Option<Vec<(u32, String)>>> {
        self.conn.trace_sent("UIDL");
        self.conn.write_all(b"UIDL\r\n", "UIDL").await?;
        let line = self.conn.read_line("UIDL").await?;
        if !line.starts_with(b"+OK") {
            return Ok(None);
        }
        let body = self.multiline("UIDL").await?;
        let at = self.conn.at.clone();
        parse_pairs(&body, &at, "UIDL", |s| {
            // RFC 1939: 1-70 characters in 0x21..0x7E.
            (!s.is_empty() && s.len() <= 70 && s.bytes().all(|b| (0x21..0x7f).contains(&b)))
                .then(|| s.to_owned())
        })
        .map(Some)
    }

    /// Every message with a stable id (UIDL, or a header hash without it) and its size.
    pub async fn messages(&mut self) -> NetResult<Vec<Pop3Message>> {
        let sizes = self.list().await?;
        let uids: HashMap<u32, String> = match self.uidl().await? {
            Some(u) => u.into_iter().collect(),
            None => {
                let mut seen: HashMap<String, u32> = HashMap::new();
                let mut m = HashMap::new();
                let numbers: Vec<u32> = sizes.iter().map(|(n, _)| *n).collect();
                for chunk in numbers.chunks(256) {
                    let heads = self.download(chunk, Part::Headers).await?;
                    for (n, head) in chunk.iter().zip(heads) {
                        let id = header_hash_id(&head?, &mut seen);
                        m.insert(*n, id);
                    }
                }
                m
            }
        };
        sizes
            .into_iter()
            .map(|(number, size)| match uids.get(&number) {
                Some(uid) => Ok(Pop3Message {
                    number,
                    uid: uid.clone(),
                    size,
                }),
                None => Err(NetError::protocol(
                    &self.conn.at,
                    format!("message {number} is in LIST but not in UIDL"),
                )),
            })
            .collect()
    }

    /// The exact bytes of message `number` (RETR, dot-unstuffed). Marks it read at most
    /// servers: a migration reads with [`download`](Self::download).
    pub async fn retr(&mut self, number: u32) -> NetResult<Vec<u8>> {
        self.marked_read = true;
        self.command(&format!("RETR {number}"), "RETR").await?;
        self.content("RETR").await
    }

    /// `part` of each message of `numbers`, in order, without changing its read state where
    /// the server has `TOP` (see the module documentation). Pipelined under PIPELINING.
    ///
    /// Returns one entry per message, in order: its bytes, or `Err` for a `-ERR` answer
    /// about that message alone (the others go on). A transport failure ends the list: it
    /// is the last entry and what follows is unknown. `Err` from the call itself: nothing
    /// was read.
    pub async fn download(
        &mut self,
        numbers: &[u32],
        part: Part,
    ) -> NetResult<Vec<NetResult<Vec<u8>>>> {
        if numbers.is_empty() {
            return Ok(Vec::new());
        }
        let mut numbers = numbers;
        let mut out = Vec::with_capacity(numbers.len());
        if self.top.is_none() {
            // No CAPA: whether TOP exists shows on the first message.
            let first = self.top(numbers[0], top_lines(part)).await;
            match first {
                Err(NetError::Rejected { .. }) => self.top = Some(false),
                other => {
                    self.top = Some(true);
                    let failed = other.as_ref().is_err_and(|e| !is_refusal(e));
                    out.push(other);
                    if failed {
                        return Ok(out);
                    }
                    numbers = &numbers[1..];
                }
            }
        }
        let (commands, name): (Vec<String>, &'static str) = if self.top == Some(true) {
            let lines = top_lines(part);
            (
                numbers.iter().map(|n| format!("TOP {n} {lines}")).collect(),
                "TOP",
            )
        } else {
            self.marked_read = true;
            (
                numbers.iter().map(|n| format!("RETR {n}")).collect(),
                "RETR",
            )
        };
        out.extend(self.pipelined(&commands, name, true).await?);
        Ok(out)
    }

    /// The whole of message `number`, as [`download`](Self::download) reads it (`TOP n
    /// <all>` where the server has TOP, else `RETR`), written line by line into `out` as it
    /// arrives (dot-unstuffed), never held: for a message too large to keep in memory.
    /// Returns the bytes written; bounded like one message ([`Endpoint::read_limit`]). A
    /// failure to write is an I/O error at `spool`.
    pub async fn download_into(
        &mut self,
        number: u32,
        out: &mut (dyn Write + Send),
        spool: &str,
    ) -> NetResult<u64> {
        let name = loop {
            if self.top == Some(false) {
                self.marked_read = true;
                self.command(&format!("RETR {number}"), "RETR").await?;
                break "RETR";
            }
            match self
                .command(&format!("TOP {number} {ALL_LINES}"), "TOP")
                .await
            {
                Ok(_) => {
                    self.top = Some(true);
                    break "TOP";
                }
                // No CAPA: whether TOP exists shows on the first message.
                Err(NetError::Rejected { .. }) if self.top.is_none() => self.top = Some(false),
                Err(e) => return Err(e),
            }
        };
        self.conn.trace_reads(false);
        let written = self.multiline_into(name, out, spool).await;
        self.conn.trace_reads(true);
        let written = written?;
        if crate::trace::enabled() {
            self.conn
                .trace_received(&format!("[{written} bytes of message, then .]"));
        }
        Ok(written)
    }

    /// The headers and the first `lines` body lines of message `number` (TOP).
    pub async fn top(&mut self, number: u32, lines: u32) -> NetResult<Vec<u8>> {
        self.command(&format!("TOP {number} {lines}"), "TOP")
            .await?;
        self.content("TOP").await
    }

    /// A multi-line answer that is message content: read like any other, but only its size
    /// goes to the protocol trace.
    async fn content(&mut self, name: &'static str) -> NetResult<Vec<u8>> {
        self.conn.trace_reads(false);
        let body = self.multiline(name).await;
        self.conn.trace_reads(true);
        let body = body?;
        if crate::trace::enabled() {
            self.conn
                .trace_received(&format!("[{} bytes of message, then .]", body.len()));
        }
        Ok(body)
    }

    /// Marks message `number` deleted; the server removes it at QUIT.
    pub async fn dele(&mut self, number: u32) -> NetResult<()> {
        self.dele_all(&[number]).await
    }

    /// Marks `numbers` deleted (pipelined under PIPELINING); the server removes them at QUIT.
    /// The first refusal or failure is the error; the messages before it are marked.
    pub async fn dele_all(&mut self, numbers: &[u32]) -> NetResult<()> {
        let commands: Vec<String> = numbers.iter().map(|n| format!("DELE {n}")).collect();
        for (n, answer) in numbers
            .iter()
            .zip(self.pipelined(&commands, "DELE", false).await?)
        {
            answer?;
            self.deleted.push(*n);
        }
        Ok(())
    }

    /// Ends the session; deletions take effect only on a successful QUIT.
    pub async fn quit(mut self) -> NetResult<()> {
        self.command("QUIT", "QUIT").await?;
        self.conn.shutdown().await;
        Ok(())
    }

    /// Ends the session like [`quit`](Self::quit), but first undoes the read marks of any
    /// `RETR` this session sent: `RSET` (servers that mark read on RETR, like Dovecot, apply
    /// the marks at QUIT and drop them on RSET, as they drop deletions), then the deletions
    /// again. Nothing to undo after `TOP` downloads.
    pub async fn quit_leaving_read_state(mut self) -> NetResult<()> {
        if self.marked_read {
            self.command("RSET", "RSET").await?;
            let deleted = std::mem::take(&mut self.deleted);
            self.dele_all(&deleted).await?;
        }
        self.quit().await
    }

    /// Sends `commands` (each answered by one status line, and a multi-line body after
    /// `+OK` when `multiline`), keeping up to [`PIPELINE_WINDOW`] in flight under PIPELINING,
    /// else one at a time. Answers in order: a body (empty without `multiline`), or `Err`
    /// for a `-ERR`; a transport failure ends the list as its last entry.
    async fn pipelined(
        &mut self,
        commands: &[String],
        name: &'static str,
        multiline: bool,
    ) -> NetResult<Vec<NetResult<Vec<u8>>>> {
        let window = if self.pipelining() {
            PIPELINE_WINDOW
        } else {
            1
        };
        let mut out = Vec::with_capacity(commands.len());
        let mut sent = 0;
        while out.len() < commands.len() {
            // Top the window up: all the commands it has room for in one write.
            let room = (out.len() + window).min(commands.len());
            if sent < room {
                let mut bytes = Vec::new();
                for c in &commands[sent..room] {
                    // Pipelined commands (TOP, RETR, DELE) carry no secret.
                    self.conn.trace_sent(c);
                    bytes.extend_from_slice(c.as_bytes());
                    bytes.extend_from_slice(b"\r\n");
                }
                if let Err(e) = self.conn.write_all(&bytes, name).await {
                    out.push(Err(e));
                    break;
                }
                sent = room;
            }
            let answer = match self.status_line(name).await {
                Ok(_) if multiline => self.content(name).await,
                Ok(_) => Ok(Vec::new()),
                Err(e) => Err(e),
            };
            let ended = answer.as_ref().is_err_and(|e| !is_refusal(e));
            out.push(answer);
            if ended {
                break;
            }
        }
        Ok(out)
    }

    /// Sends a command and reads its status line; `-ERR` becomes [`NetError::Rejected`] (or
    /// [`NetError::Throttled`]). `name` is what errors show: never the arguments, which may
    /// hold a password.
    async fn command(&mut self, line: &str, name: &'static str) -> NetResult<String> {
        // PASS is the one command whose argument is secret; the trace shows the verb only.
        self.conn.trace_sent(if name == "PASS" {
            "PASS <redacted>"
        } else {
            line
        });
        let mut bytes = Vec::with_capacity(line.len() + 2);
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        self.conn.write_all(&bytes, name).await?;
        self.status_line(name).await
    }

    async fn status_line(&mut self, name: &'static str) -> NetResult<String> {
        let line = self.conn.read_line(name).await?;
        self.status_from(line, name)
    }

    fn status_from(&self, line: Vec<u8>, name: &'static str) -> NetResult<String> {
        if line.starts_with(b"+OK") {
            return Ok(String::from_utf8_lossy(&line).trim_end().to_owned());
        }
        let at = self.conn.at.clone();
        if let Some(rest) = line.strip_prefix(b"-ERR") {
            let text = server_text(rest);
            if let Some(retry_after) = detect_throttle(&text) {
                return Err(NetError::Throttled {
                    at,
                    retry_after,
                    text,
                });
            }
            return Err(NetError::Rejected {
                at,
                command: name.to_owned(),
                text,
            });
        }
        Err(NetError::protocol(
            &at,
            format!("{name}: expected +OK or -ERR, got {:?}", server_text(&line)),
        ))
    }

    /// Reads a multi-line body up to `.CRLF`, removing dot-stuffing; lines keep their endings.
    /// Bounded like one message ([`Endpoint::read_limit`]): a server that never ends the
    /// answer fails the command before memory fills.
    async fn multiline(&mut self, name: &'static str) -> NetResult<Vec<u8>> {
        let mut out = Vec::new();
        self.multiline_into(name, &mut out, "memory").await?;
        Ok(out)
    }

    /// [`multiline`](Self::multiline) written into `out` line by line; returns the bytes
    /// written.
    async fn multiline_into(
        &mut self,
        name: &'static str,
        out: &mut (dyn Write + Send),
        spool: &str,
    ) -> NetResult<u64> {
        let limit = self.conn.read_limit();
        let mut written = 0u64;
        loop {
            let line = self.conn.read_line(name).await?;
            if line == b".\r\n" || line == b".\n" {
                return Ok(written);
            }
            let line = line.strip_prefix(b".").unwrap_or(&line);
            if written + line.len() as u64 > limit {
                return Err(NetError::protocol(
                    &self.conn.at,
                    format!("{name}: the answer is longer than the {limit} bytes this run reads for one message (settings.max_message_size_mb plus slack)"),
                ));
            }
            out.write_all(line).map_err(|source| NetError::Io {
                at: spool.to_owned(),
                op: name,
                source,
            })?;
            written += line.len() as u64;
        }
    }
}

/// The `TOP` line count for `part`.
fn top_lines(part: Part) -> u32 {
    match part {
        Part::Whole => ALL_LINES,
        Part::Headers => 0,
    }
}

/// A `-ERR` answer (or a throttling one): the server refused one command and the session
/// goes on, unlike a transport failure.
fn is_refusal(e: &NetError) -> bool {
    matches!(e, NetError::Rejected { .. } | NetError::Throttled { .. })
}

/// Runs a whole client session — greeting, CAPA, USER/PASS, STAT, LIST, UIDL, RETR, TOP,
/// DELE, QUIT — against `server`: the server's side of a conversation as raw bytes, whatever
/// the client sends (it is discarded). For fuzzing and property tests of the response reader:
/// for any bytes it must return, never panic, and read no answer beyond a 1 MiB limit.
/// Returns how many of those steps succeeded (the login counts as one).
pub fn replay_session(server: &[u8]) -> usize {
    Conn::run_replayed(server, |conn| async {
        let credentials = Credentials::password("user@example.test", "password");
        let Ok(mut c) = Pop3Client::start(conn, Tls::None, &credentials).await else {
            return 0;
        };
        let mut ok = 1;
        ok += usize::from(c.stat().await.is_ok());
        ok += usize::from(c.messages().await.is_ok());
        ok += usize::from(c.retr(1).await.is_ok());
        ok += usize::from(c.top(1, 0).await.is_ok());
        ok += usize::from(c.dele(1).await.is_ok());
        ok + usize::from(c.quit().await.is_ok())
    })
    .unwrap_or(0)
}

/// Parses `n value` lines of LIST/UIDL.
fn parse_pairs<T>(
    body: &[u8],
    at: &str,
    what: &str,
    value: impl Fn(&str) -> Option<T>,
) -> NetResult<Vec<(u32, T)>> {
    let text = String::from_utf8_lossy(body);
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut it = l.split_whitespace();
            let n = it.next().and_then(|n| n.parse::<u32>().ok());
            let v = it.next().and_then(&value);
            match (n, v) {
                (Some(n), Some(v)) => Ok((n, v)),
                _ => Err(NetError::protocol(at, format!("bad {what} line {l:?}"))),
            }
        })
        .collect()
}

/// The stand-in id of a message on a server without UIDL: a hash of its header block, with
/// `#k` for the k-th message (k ≥ 2) whose headers hash the same.
fn header_hash_id(headers: &[u8], seen: &mut HashMap<String, u32>) -> String {
    let digest = Sha256::digest(headers);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let base = format!("hdr:{hex}");
    let count = seen.entry(base.clone()).or_insert(0);
    *count += 1;
    if *count == 1 {
        base
    } else {
        format!("{base}#{count}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;

    /// A scripted POP3 server: answers each command by its first word from `script`.
    async fn fake_server(script: Vec<(&'static str, &'static str)>) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (sock, _) = listener.accept().await.unwrap();
            let (r, mut w) = sock.into_split();
            let mut r = BufReader::new(r);
            w.write_all(b"+OK fake ready\r\n").await.unwrap();
            let mut line = String::new();
            while r.read_line(&mut line).await.unwrap_or(0) > 0 {
                let cmd = line.trim_end().to_owned();
                line.clear();
                let reply = script
                    .iter()
                    .find(|(k, _)| cmd.starts_with(k))
                    .map(|(_, v)| *v)
                    .unwrap_or("-ERR unknown command\r\n");
                w.write_all(reply.as_bytes()).await.unwrap();
                if cmd == "QUIT" {
                    break;
                }
            }
        });
        port
    }

    fn plain(port: u16) -> Endpoint {
        Endpoint::new("127.0.0.1", port, Tls::None).allowing_plaintext()
    }

    #[tokio::test]
    async fn without_uidl_ids_are_header_hashes() {
        let port = fake_server(vec![
            ("CAPA", "-ERR what\r\n"),
            ("USER", "+OK\r\n"),
            ("PASS", "+OK\r\n"),
            ("LIST", "+OK 3 messages\r\n1 100\r\n2 200\r\n3 300\r\n.\r\n"),
            ("UIDL", "-ERR unknown command\r\n"),
            ("TOP 1 0", "+OK\r\nSubject: a\r\n\r\n.\r\n"),
            ("TOP 2 0", "+OK\r\nSubject: b\r\n..dot\r\n\r\n.\r\n"),
            ("TOP 3 0", "+OK\r\nSubject: a\r\n\r\n.\r\n"),
            ("QUIT", "+OK bye\r\n"),
        ])
        .await;
        let mut c = Pop3Client::connect(&plain(port), &Credentials::password("u", "p"))
            .await
            .unwrap();
        assert!(c.capabilities().is_empty());
        let msgs = c.messages().await.unwrap();
        assert_eq!(msgs.len(), 3);
        let mut seen = HashMap::new();
        let a = header_hash_id(b"Subject: a\r\n\r\n", &mut seen);
        let b = header_hash_id(b"Subject: b\r\n.dot\r\n\r\n", &mut seen);
        assert_eq!(msgs[0].uid, a);
        assert_eq!(msgs[1].uid, b);
        assert_eq!(msgs[2].uid, format!("{a}#2"));
        assert_eq!(msgs[2].size, 300);
        c.quit().await.unwrap();
    }

    #[tokio::test]
    async fn rejected_login_names_account_not_password() {
        let port = fake_server(vec![
            ("CAPA", "+OK\r\nUSER\r\n.\r\n"),
            ("USER", "+OK\r\n"),
            ("PASS", "-ERR [AUTH] Authentication failed.\r\n"),
        ])
        .await;
        let err = Pop3Client::connect(&plain(port), &Credentials::password("bob@x", "s3cr3t!"))
            .await
            .unwrap_err();
        let shown = err.to_string();
        assert!(matches!(err, NetError::Auth { .. }), "{shown}");
        assert!(shown.contains("bob@x at 127.0.0.1:"), "{shown}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
    }

    #[tokio::test]
    async fn throttled_and_garbage_answers_are_typed_errors() {
        let port = fake_server(vec![
            ("CAPA", "+OK\r\n.\r\n"),
            ("USER", "+OK\r\n"),
            ("PASS", "+OK\r\n"),
            ("STAT", "+OK nonsense\r\n"),
            ("LIST", "-ERR [SYS/TEMP] try later\r\n"),
            ("RETR", "* hello\r\n"),
        ])
        .await;
        let mut c = Pop3Client::connect(&plain(port), &Credentials::password("u", "p"))
            .await
            .unwrap();
        assert!(matches!(c.stat().await, Err(NetError::Protocol { .. })));
        let err = c.list().await.unwrap_err();
        assert!(err.is_transient(), "{err}");
        assert!(matches!(err, NetError::Throttled { .. }));
        assert!(matches!(c.retr(1).await, Err(NetError::Protocol { .. })));
    }

    #[tokio::test]
    async fn a_password_with_a_line_break_is_never_sent() {
        for (login, password) in [("u", "pw\r\nDELE 1"), ("u", "pw\nX"), ("u\r\nDELE 1", "pw")] {
            let port = fake_server(vec![
                ("CAPA", "+OK\r\nUSER\r\n.\r\n"),
                ("USER", "+OK\r\n"),
                ("PASS", "+OK\r\n"),
                ("DELE", "+OK deleted\r\n"),
            ])
            .await;
            let err = Pop3Client::connect(&plain(port), &Credentials::password(login, password))
                .await
                .unwrap_err();
            let shown = err.to_string();
            assert!(matches!(err, NetError::Auth { .. }), "{shown}");
            assert!(shown.contains("line break"), "{shown}");
            assert!(!shown.contains(password), "the password is shown: {shown}");
        }
    }

    #[tokio::test]
    async fn an_endless_answer_is_cut_at_the_read_limit() {
        // Greeting, CAPA, USER, PASS, CAPA again after login, then RETR's endless answer.
        let mut server =
            b"+OK ready\r\n+OK\r\n.\r\n+OK\r\n+OK\r\n+OK\r\n.\r\n+OK 1 octets\r\n".to_vec();
        for _ in 0..40_000 {
            server.extend_from_slice(b"0123456789012345678901234567890123456789\r\n");
        }
        let conn = Conn::replay(server, 1 << 20);
        let mut c = Pop3Client::start(conn, Tls::None, &Credentials::password("u", "p"))
            .await
            .unwrap();
        let err = c.retr(1).await.unwrap_err();
        assert!(
            err.to_string().contains("longer than the 1048576 bytes"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn starttls_without_stls_is_refused() {
        let port = fake_server(vec![("CAPA", "+OK\r\nUSER\r\n.\r\n")]).await;
        let ep = Endpoint::new("127.0.0.1", port, Tls::Starttls);
        let err = Pop3Client::connect(&ep, &Credentials::password("u", "p"))
            .await
            .unwrap_err();
        assert!(matches!(err, NetError::Tls { .. }), "{err}");
    }
}
