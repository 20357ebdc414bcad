//! The IMAP session: connect (implicit TLS, STARTTLS or opted-in plaintext), authenticate
//! (AUTHENTICATE PLAIN, LOGIN, XOAUTH2), then the few commands a migration needs.
//!
//! Commands are sequential (one tag in flight), which keeps response routing trivial, except
//! APPEND: [`ImapClient::append_all`] uses MULTIAPPEND or pipelines, because storing is where
//! a copy spends its time.

use std::collections::{HashMap, VecDeque};
use std::time::SystemTime;

use super::proto::{
    is_text_response, literal_marker, parse, quoted, read_response, read_response_from,
    response_code, Part, Response, Value,
};
use crate::connectors::mail::date;
use crate::connectors::mail::{DateWindow, Flag, Flags, RawMessage};
use crate::connectors::net::{
    decode_sasl_error, detect_throttle, server_text, Conn, Credentials, Endpoint, NetError,
    NetResult,
};
use crate::plan::model::Tls;

/// Default ports: IMAPS (implicit TLS) and IMAP (plain or STARTTLS).
pub const PORTS: (u16, u16) = (993, 143);

/// The header fields a message's identity is made of
/// ([`crate::connectors::mail::identity::Identity`]), as a FETCH item.
pub const IDENTITY_FIELDS: &str = "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID DATE SUBJECT)]";

/// APPEND commands kept in flight by [`ImapClient::append_all`]. Enough to hide the round
/// trip and the server's per-message commit behind the next messages' upload.
pub const APPEND_WINDOW: usize = 16;

/// A mailbox as LIST reports it. `name` is the wire name (modified UTF-7, server delimiter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    pub name: String,
    pub delimiter: Option<char>,
    /// Attributes such as `\Noselect`, `\HasChildren`, `\Sent` (SPECIAL-USE).
    pub attributes: Vec<String>,
}

impl Mailbox {
    pub fn has_attribute(&self, attr: &str) -> bool {
        self.attributes.iter().any(|a| a.eq_ignore_ascii_case(attr))
    }

    /// `\Noselect`/`\NonExistent` mailboxes are hierarchy nodes without messages.
    pub fn is_selectable(&self) -> bool {
        !self.has_attribute("\\Noselect") && !self.has_attribute("\\NonExistent")
    }

    /// Subscribed, as [`ImapClient::list_subscribed`] marks it.
    pub fn is_subscribed(&self) -> bool {
        self.has_attribute("\\Subscribed")
    }
}

/// What SELECT/EXAMINE tells: the checkpoint identity of a folder.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MailboxStatus {
    /// Changes when the server renumbers the folder; a checkpoint with another value is void.
    pub uid_validity: Option<u32>,
    pub uid_next: Option<u32>,
    pub exists: u32,
    /// `[HIGHESTMODSEQ n]` (CONDSTORE, RFC 7162): grows with every flag change, so an equal
    /// value means nothing changed since.
    pub highest_modseq: Option<u64>,
    /// `[PERMANENTFLAGS (…)]` of a SELECT: the flags stored for good; `\*` among them means
    /// new keywords may be created. `None` when the server did not say.
    pub permanent_flags: Option<Vec<String>>,
}

impl MailboxStatus {
    /// Whether keywords may be stored in the folder: `\*` among its permanent flags. A
    /// server that names none is trusted to take them.
    pub fn takes_keywords(&self) -> bool {
        self.permanent_flags
            .as_ref()
            .is_none_or(|f| f.iter().any(|x| x == "\\*"))
    }
}

/// One fetched message: its UID, exact bytes, flags and internal date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedMessage {
    pub uid: u32,
    pub size: Option<u64>,
    pub message: RawMessage,
}

/// Where APPEND put a message (UIDPLUS `APPENDUID`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendUid {
    pub uid_validity: u32,
    pub uid: u32,
}

/// A logged-in IMAP session.
pub struct ImapClient {
    conn: Conn,
    tag: u32,
    capabilities: Vec<String>,
}

impl std::fmt::Debug for ImapClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapClient")
            .field("at", &self.conn.at)
            .field("capabilities", &self.capabilities)
            .finish_non_exhaustive()
    }
}

/// A tagged completion.
struct Done {
    ok: bool,
    text: String,
}

impl ImapClient {
    /// Connects, secures, authenticates. STARTTLS is mandatory for `tls: starttls`: a server
    /// not offering it is an error, never a silent downgrade.
    pub async fn connect(endpoint: &Endpoint, credentials: &Credentials) -> NetResult<Self> {
        let conn = Conn::connect(endpoint, Some(credentials.login())).await?;
        Self::start(conn, endpoint.tls, credentials).await
    }

    /// The session on an open connection: greeting, STARTTLS when `tls` says, login.
    async fn start(conn: Conn, tls: Tls, credentials: &Credentials) -> NetResult<Self> {
        let mut c = ImapClient {
            conn,
            tag: 0,
            capabilities: Vec::new(),
        };
        let greeting = read_response(&mut c.conn, "greeting").await?;
        c.check_bye(greeting.first_line(), "greeting")?;
        let g = String::from_utf8_lossy(greeting.first_line()).into_owned();
        if !(g.starts_with("* OK") || g.starts_with("* PREAUTH")) {
            return Err(NetError::protocol(
                &c.conn.at,
                format!("greeting: {}", server_text(g.as_bytes())),
            ));
        }
        c.refresh_capabilities().await?;
        if tls == Tls::Starttls {
            if !c.has_capability("STARTTLS") {
                return Err(NetError::Tls {
                    at: c.conn.at.clone(),
                    reason: "tls: starttls, but the server does not offer STARTTLS".into(),
                });
            }
            c.simple("STARTTLS", "STARTTLS").await?;
            c.conn.upgrade().await?;
            c.refresh_capabilities().await?;
        }
        if !g.starts_with("* PREAUTH") {
            c.authenticate(credentials).await?;
            c.refresh_capabilities().await?;
        }
        Ok(c)
    }

    /// Keeps `slots` (from [`reserve_connections`](crate::connectors::net::reserve_connections))
    /// until this session closes.
    pub fn hold_slots(&mut self, slots: crate::connectors::net::ConnectionSlots) {
        self.conn.hold(slots);
    }

    /// The largest message the server accepts, when it says (`APPENDLIMIT=n`, RFC 7889).
    pub fn append_limit(&self) -> Option<u64> {
        self.capabilities.iter().find_map(|c| {
            let (name, value) = c.split_once('=')?;
            if name.eq_ignore_ascii_case("APPENDLIMIT") {
                value.parse().ok()
            } else {
                None
            }
        })
    }

    pub fn capabilities(&self) -> &[String] {
        &self.capabilities
    }

    pub fn has_capability(&self, name: &str) -> bool {
        self.capabilities
            .iter()
            .any(|c| c.eq_ignore_ascii_case(name))
    }

    async fn refresh_capabilities(&mut self) -> NetResult<()> {
        let (untagged, _) = self.run("CAPABILITY", "CAPABILITY").await?;
        let mut caps = Vec::new();
        for v in untagged {
            if v.get(1)
                .and_then(Value::as_atom)
                .is_some_and(|a| a.eq_ignore_ascii_case("CAPABILITY"))
            {
                caps.extend(v[2..].iter().filter_map(Value::as_atom).map(str::to_owned));
            }
        }
        self.capabilities = caps;
        Ok(())
    }

    async fn authenticate(&mut self, credentials: &Credentials) -> NetResult<()> {
        let result = match credentials {
            Credentials::XOauth2 { login, token } => {
                let ir = Credentials::xoauth2_response(login, token);
                self.sasl("XOAUTH2", &ir).await
            }
            Credentials::Password { login, password } => {
                if self.has_capability("AUTH=PLAIN") {
                    let ir = Credentials::plain_response(login, password);
                    self.sasl("PLAIN", &ir).await
                } else if self.has_capability("LOGINDISABLED") {
                    return Err(NetError::Auth {
                        at: self.conn.at.clone(),
                        text: "server disables LOGIN on this connection (use TLS)".into(),
                    });
                } else {
                    let (Some(l), Some(p)) = (
                        quoted(login.as_bytes()),
                        quoted(password.expose().as_bytes()),
                    ) else {
                        return Err(NetError::Auth {
                            at: self.conn.at.clone(),
                            text: "login or password not plain ASCII and no AUTH=PLAIN".into(),
                        });
                    };
                    self.run_secret(&format!("LOGIN {l} {p}"), "LOGIN")
                        .await
                        .map(|_| ())
                }
            }
        };
        result.map_err(|e| match e {
            NetError::Rejected { at, text, .. } => NetError::Auth { at, text },
            other => other,
        })
    }

    /// AUTHENTICATE with an initial response (SASL-IR, or after the empty `+` challenge).
    /// A further challenge is an error report (XOAUTH2's JSON): answer it empty, then fail.
    async fn sasl(&mut self, mech: &str, ir: &str) -> NetResult<()> {
        let tag = self.next_tag();
        let sasl_ir = self.has_capability("SASL-IR");
        let line = if sasl_ir {
            format!("{tag} AUTHENTICATE {mech} {ir}\r\n")
        } else {
            format!("{tag} AUTHENTICATE {mech}\r\n")
        };
        self.conn.trace_sent(&if sasl_ir {
            format!("{tag} AUTHENTICATE {mech} <redacted>")
        } else {
            format!("{tag} AUTHENTICATE {mech}")
        });
        self.conn.write_all(line.as_bytes(), "AUTHENTICATE").await?;
        let mut sent_ir = sasl_ir;
        let mut detail = None;
        loop {
            let resp = read_response(&mut self.conn, "AUTHENTICATE").await?;
            let first = resp.first_line().to_vec();
            if let Some(ch) = first.strip_prefix(b"+") {
                if sent_ir {
                    detail = Some(decode_sasl_error(ch));
                    self.conn.trace_sent("(empty response)");
                    self.conn.write_all(b"\r\n", "AUTHENTICATE").await?;
                } else {
                    self.conn.trace_sent("<redacted>");
                    self.conn
                        .write_all(format!("{ir}\r\n").as_bytes(), "AUTHENTICATE")
                        .await?;
                    sent_ir = true;
                }
                continue;
            }
            if let Some(done) = self.tagged(&tag, &first) {
                if done.ok {
                    return Ok(());
                }
                let text = match detail {
                    Some(d) => format!("{} ({d})", done.text),
                    None => done.text,
                };
                return Err(self.no_error("AUTHENTICATE", text));
            }
            self.check_bye(&first, "AUTHENTICATE")?;
        }
    }

    /// LIST of all mailboxes, with SPECIAL-USE attributes when the server has them.
    pub async fn list(&mut self) -> NetResult<Vec<Mailbox>> {
        let cmd = if self.has_capability("SPECIAL-USE") && self.has_capability("LIST-EXTENDED") {
            "LIST \"\" \"*\" RETURN (SPECIAL-USE)"
        } else {
            "LIST \"\" \"*\""
        };
        self.list_with(cmd, "LIST").await
    }

    /// [`list`](Self::list), each subscribed mailbox with the `\Subscribed` attribute: one
    /// `LIST … RETURN (SUBSCRIBED)` under LIST-EXTENDED (RFC 5258), else LIST and LSUB.
    pub async fn list_subscribed(&mut self) -> NetResult<Vec<Mailbox>> {
        if self.has_capability("LIST-EXTENDED") {
            let cmd = if self.has_capability("SPECIAL-USE") {
                "LIST \"\" \"*\" RETURN (SUBSCRIBED SPECIAL-USE)"
            } else {
                "LIST \"\" \"*\" RETURN (SUBSCRIBED)"
            };
            return self.list_with(cmd, "LIST").await;
        }
        let mut all = self.list().await?;
        let subscribed: std::collections::HashSet<String> = self
            .list_with("LSUB \"\" \"*\"", "LSUB")
            .await?
            .into_iter()
            .map(|m| m.name)
            .collect();
        for m in &mut all {
            let inbox = m.name.eq_ignore_ascii_case("INBOX");
            let listed = subscribed.contains(&m.name)
                || (inbox && subscribed.iter().any(|s| s.eq_ignore_ascii_case("INBOX")));
            if listed && !m.has_attribute("\\Subscribed") {
                m.attributes.push("\\Subscribed".into());
            }
        }
        Ok(all)
    }

    /// SUBSCRIBE (RFC 3501 §6.3.6); subscribing twice is harmless.
    pub async fn subscribe(&mut self, mailbox: &str) -> NetResult<()> {
        let name = self.astring(mailbox, "SUBSCRIBE").await?;
        self.simple(&format!("SUBSCRIBE {name}"), "SUBSCRIBE").await
    }

    /// Runs a LIST or LSUB command (`verb` is its response name) and reads its mailboxes.
    async fn list_with(&mut self, cmd: &str, verb: &'static str) -> NetResult<Vec<Mailbox>> {
        let (untagged, _) = self.run(cmd, verb).await?;
        let mut out = Vec::new();
        for v in untagged {
            if !v
                .get(1)
                .and_then(Value::as_atom)
                .is_some_and(|a| a.eq_ignore_ascii_case(verb))
            {
                continue;
            }
            let (Some(Value::List(attrs)), Some(delim), Some(name)) =
                (v.get(2), v.get(3), v.get(4))
            else {
                return Err(NetError::protocol(
                    &self.conn.at,
                    format!("malformed {verb} response"),
                ));
            };
            let delimiter = match delim {
                Value::Str(s) if s.len() == 1 => Some(char::from(s[0])),
                _ => None,
            };
            let Some(name) = name.as_bytes() else {
                return Err(NetError::protocol(
                    &self.conn.at,
                    format!("{verb} without a mailbox name"),
                ));
            };
            out.push(Mailbox {
                name: String::from_utf8_lossy(name).into_owned(),
                delimiter,
                attributes: attrs
                    .iter()
                    .filter_map(Value::as_atom)
                    .map(str::to_owned)
                    .collect(),
            });
        }
        Ok(out)
    }

    /// SELECT (read-write, for a target folder).
    pub async fn select(&mut self, mailbox: &str) -> NetResult<MailboxStatus> {
        self.open("SELECT", mailbox).await
    }

    /// EXAMINE (read-only, for a source folder: fetching cannot change its flags). With
    /// CONDSTORE it asks for the folder's HIGHESTMODSEQ too.
    pub async fn examine(&mut self, mailbox: &str) -> NetResult<MailboxStatus> {
        self.open("EXAMINE", mailbox).await
    }

    async fn open(&mut self, verb: &'static str, mailbox: &str) -> NetResult<MailboxStatus> {
        let condstore = if self.has_capability("CONDSTORE") {
            " (CONDSTORE)"
        } else {
            ""
        };
        let (untagged, _) = self
            .run_pieces(
                &[
                    Piece::Text(format!("{verb} ")),
                    mailbox_arg(mailbox),
                    Piece::Text(condstore.into()),
                ],
                verb,
            )
            .await?;
        let mut st = MailboxStatus::default();
        for v in untagged {
            let words: Vec<&str> = v.iter().filter_map(Value::as_atom).collect();
            match words.as_slice() {
                ["*", n, e, ..] if e.eq_ignore_ascii_case("EXISTS") => {
                    st.exists = n.parse().unwrap_or(0);
                }
                ["*", ok, code, ..] if ok.eq_ignore_ascii_case("OK") => {
                    // `[UIDVALIDITY 123]` is one token (brackets group it).
                    let mut it = response_code(code).unwrap_or("").split_whitespace();
                    let key = it.next().unwrap_or("");
                    let val: Option<u32> = it.next().and_then(|v| v.parse().ok());
                    if key.eq_ignore_ascii_case("UIDVALIDITY") {
                        st.uid_validity = val;
                    } else if key.eq_ignore_ascii_case("UIDNEXT") {
                        st.uid_next = val;
                    } else if key.eq_ignore_ascii_case("PERMANENTFLAGS") {
                        st.permanent_flags = response_code(code).map(|c| {
                            c.trim_start_matches(|ch: char| ch.is_ascii_alphabetic())
                                .trim()
                                .trim_start_matches('(')
                                .trim_end_matches(')')
                                .split_whitespace()
                                .map(str::to_owned)
                                .collect()
                        });
                    } else if key.eq_ignore_ascii_case("HIGHESTMODSEQ") {
                        st.highest_modseq = response_code(code)
                            .and_then(|c| c.split_whitespace().nth(1))
                            .and_then(|v| v.parse().ok());
                    }
                }
                _ => {}
            }
        }
        Ok(st)
    }

    /// CREATE; an existing mailbox is success (re-runs must be idempotent).
    pub async fn create(&mut self, mailbox: &str) -> NetResult<()> {
        let pieces = [Piece::Text("CREATE ".into()), mailbox_arg(mailbox)];
        match self.run_pieces(&pieces, "CREATE").await {
            Ok(_) => Ok(()),
            Err(NetError::Rejected { text, .. })
                if text.to_ascii_uppercase().contains("[ALREADYEXISTS]") =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Starts `UID FETCH range (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])` on the
    /// selected mailbox; messages are read one at a time from the returned [`Fetch`], so
    /// memory holds one message, not a mailbox.
    pub async fn uid_fetch(&mut self, range: &str) -> NetResult<Fetch<'_>> {
        self.fetch_items(range, "UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[]")
            .await
    }

    /// Starts `UID FETCH range (UID RFC822.SIZE INTERNALDATE FLAGS BODY.PEEK[HEADER.FIELDS
    /// (MESSAGE-ID DATE SUBJECT)])`: each [`FetchedMessage`] then carries only those header
    /// fields, the flags and the internal date. What a copy needs to decide, without
    /// downloading bodies, which messages are already at the target (their identity), too
    /// large (size), outside a date window (internal date), flagged `\Deleted`, or worth
    /// naming in a report (subject).
    pub async fn uid_fetch_headers(&mut self, range: &str) -> NetResult<Fetch<'_>> {
        self.fetch_items(
            range,
            &format!("UID RFC822.SIZE INTERNALDATE FLAGS {IDENTITY_FIELDS}"),
        )
        .await
    }

    /// Starts `UID FETCH range (UID FLAGS INTERNALDATE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID
    /// DATE SUBJECT)])`, with `(CHANGEDSINCE n)` when given (CONDSTORE): the flags of each
    /// message with what identifies it, or of only those changed since modification sequence
    /// `n`.
    pub async fn uid_fetch_flags(
        &mut self,
        range: &str,
        changed_since: Option<u64>,
    ) -> NetResult<Fetch<'_>> {
        let items = format!("UID FLAGS INTERNALDATE {IDENTITY_FIELDS}");
        match changed_since {
            Some(modseq) => {
                self.fetch_items_with(range, &items, &format!(" (CHANGEDSINCE {modseq})"))
                    .await
            }
            None => self.fetch_items(range, &items).await,
        }
    }

    /// Removes exactly the messages `uids` of the selected mailbox: flags them `\Deleted`
    /// and expunges only those (`UID EXPUNGE`, UIDPLUS). Other messages flagged `\Deleted`
    /// — a user's, not yet expunged — stay. `Ok(false)` without UIDPLUS, where a plain
    /// EXPUNGE would take those too: nothing is done.
    pub async fn uid_remove(&mut self, uids: &str) -> NetResult<bool> {
        self.check_uid_range(uids)?;
        if !self.has_capability("UIDPLUS") {
            return Ok(false);
        }
        self.uid_store(uids, true, &["\\Deleted"]).await?;
        self.simple(&format!("UID EXPUNGE {uids}"), "UID EXPUNGE")
            .await?;
        Ok(true)
    }

    /// `UID STORE uids (+|-)FLAGS.SILENT (flags)` on the selected (SELECT, not EXAMINE)
    /// mailbox: `add` sets the flags, otherwise clears them. Flags are system flags
    /// (`\Seen`) or keywords, never anything a plan wrote.
    pub async fn uid_store(&mut self, uids: &str, add: bool, flags: &[&str]) -> NetResult<()> {
        self.check_uid_range(uids)?;
        if flags.is_empty() {
            return Ok(());
        }
        // A flag is an atom, with a leading `\` for system flags: nothing here can end the
        // list or start another command.
        let is_flag = |f: &str| {
            let body = f.strip_prefix('\\').unwrap_or(f);
            !body.is_empty()
                && body
                    .bytes()
                    .all(|b| (0x21..0x7f).contains(&b) && !b"(){%*\"]\\".contains(&b))
        };
        if let Some(bad) = flags.iter().find(|f| !is_flag(f)) {
            return Err(NetError::protocol(
                &self.conn.at,
                format!("STORE: {bad:?} is not a flag"),
            ));
        }
        let sign = if add { '+' } else { '-' };
        let cmd = format!("UID STORE {uids} {sign}FLAGS.SILENT ({})", flags.join(" "));
        self.simple(&cmd, "UID STORE").await
    }

    /// `UID SEARCH UID uids [SINCE d] [BEFORE d]` on the selected mailbox: the UIDs among
    /// `uids` whose INTERNALDATE is in `window`, ascending. The server compares dates its own
    /// way (RFC 3501 §6.4.4: "disregarding time and timezone"), so for exact UTC bounds search
    /// [`DateWindow::widened`] and check each message's date. The answer is one response
    /// line, which the connection caps at 1 MiB (about 90,000 UIDs): search a large folder in
    /// spans.
    pub async fn uid_search(&mut self, uids: &str, window: &DateWindow) -> NetResult<Vec<u32>> {
        self.check_uid_range(uids)?;
        let mut cmd = format!("UID SEARCH UID {uids}");
        if let Some(d) = window.since_day() {
            cmd.push_str(&format!(" SINCE {}", date::format_imap_day(d)));
        }
        if let Some(d) = window.before_day() {
            cmd.push_str(&format!(" BEFORE {}", date::format_imap_day(d)));
        }
        let (untagged, _) = self.run(&cmd, "UID SEARCH").await?;
        let mut found = Vec::new();
        for v in untagged {
            if !v
                .get(1)
                .and_then(Value::as_atom)
                .is_some_and(|a| a.eq_ignore_ascii_case("SEARCH"))
            {
                continue;
            }
            for n in &v[2..] {
                if let Value::List(_) = n {
                    // CONDSTORE's `(MODSEQ n)` trailer.
                    continue;
                }
                match n.as_atom().and_then(|a| a.parse::<u32>().ok()) {
                    Some(uid) if uid > 0 => found.push(uid),
                    _ => {
                        return Err(NetError::protocol(
                            &self.conn.at,
                            format!("UID SEARCH: not a UID: {n:?}"),
                        ))
                    }
                }
            }
        }
        found.sort_unstable();
        found.dedup();
        Ok(found)
    }

    /// A UID set as sent in a command: digits, `:`, `,` and `*` only, so nothing else can
    /// reach the command line.
    fn check_uid_range(&self, range: &str) -> NetResult<()> {
        if range.is_empty()
            || !range
                .bytes()
                .all(|b| b.is_ascii_digit() || b":,*".contains(&b))
        {
            return Err(NetError::protocol(
                &self.conn.at,
                format!("invalid UID range {range:?}"),
            ));
        }
        Ok(())
    }

    async fn fetch_items(&mut self, range: &str, items: &str) -> NetResult<Fetch<'_>> {
        self.fetch_items_with(range, items, "").await
    }

    async fn fetch_items_with(
        &mut self,
        range: &str,
        items: &str,
        modifiers: &str,
    ) -> NetResult<Fetch<'_>> {
        self.check_uid_range(range)?;
        let tag = self.next_tag();
        let line = format!("{tag} UID FETCH {range} ({items}){modifiers}\r\n");
        self.conn.trace_sent(&line);
        self.conn.write_all(line.as_bytes(), "UID FETCH").await?;
        Ok(Fetch {
            client: self,
            tag,
            done: false,
        })
    }

    /// APPEND with flags and internal date; returns the new UID when the server has UIDPLUS.
    pub async fn append(
        &mut self,
        mailbox: &str,
        message: &RawMessage,
    ) -> NetResult<Option<AppendUid>> {
        let mut results = self.append_all(mailbox, &[message]).await?;
        results.pop().unwrap_or_else(|| {
            Err(NetError::protocol(
                &self.conn.at,
                "APPEND: no completion for the message",
            ))
        })
    }

    /// APPENDs `messages` to `mailbox` in order. With MULTIAPPEND (and LITERAL+) they go as
    /// one atomic command, which servers commit as one transaction — Dovecot stores several
    /// times faster that way than message by message. Otherwise one command each, keeping up
    /// to [`APPEND_WINDOW`] in flight when the server takes non-synchronizing literals
    /// (LITERAL+, or LITERAL- up to 4096 bytes), so the round trips overlap; without them each
    /// literal waits for the server's continuation.
    ///
    /// Returns one result per message the server answered, in order: `Ok` (with APPENDUID
    /// under UIDPLUS for single APPENDs) once it acknowledged the message, `Err` for a tagged
    /// NO/BAD, which refuses only that message (a refused MULTIAPPEND is sent again message by
    /// message to find which), or a throttling reply (for MULTIAPPEND: every message). A
    /// transport error (cut, timeout, `BYE`) ends the batch: it is the last entry, and the
    /// messages after it have no entry — the server may or may not have stored those in
    /// flight. `Err` from the call itself means nothing was sent.
    pub async fn append_all(
        &mut self,
        mailbox: &str,
        messages: &[&RawMessage],
    ) -> NetResult<Vec<NetResult<Option<AppendUid>>>> {
        let flagged: Vec<Outgoing<'_>> = messages.iter().map(|m| (*m, &m.flags)).collect();
        self.append_all_flagged(mailbox, &flagged).await
    }

    /// [`append_all`](Self::append_all), each message with the flags given beside it instead
    /// of its own (a folder that cannot store keywords), without copying the message.
    pub async fn append_all_flagged(
        &mut self,
        mailbox: &str,
        messages: &[Outgoing<'_>],
    ) -> NetResult<Vec<NetResult<Option<AppendUid>>>> {
        if messages.len() > 1
            && self.has_capability("MULTIAPPEND")
            && self.has_capability("LITERAL+")
        {
            match self.multiappend(mailbox, messages).await {
                Ok(text) => {
                    // `[APPENDUID v 5:9]`: the new UIDs in the order of the messages.
                    let uids = append_uids(&text).filter(|(_, u)| u.len() == messages.len());
                    return Ok((0..messages.len())
                        .map(|i| {
                            Ok(uids.as_ref().map(|(v, u)| AppendUid {
                                uid_validity: *v,
                                uid: u[i],
                            }))
                        })
                        .collect());
                }
                Err(NetError::Throttled {
                    at,
                    retry_after,
                    text,
                }) => {
                    return Ok(messages
                        .iter()
                        .map(|_| {
                            Err(NetError::Throttled {
                                at: at.clone(),
                                retry_after,
                                text: text.clone(),
                            })
                        })
                        .collect())
                }
                Err(NetError::Rejected { .. }) => {}
                Err(e) => return Ok(vec![Err(e)]),
            }
        }
        self.append_pipelined(mailbox, messages).await
    }

    async fn append_pipelined(
        &mut self,
        mailbox: &str,
        messages: &[Outgoing<'_>],
    ) -> NetResult<Vec<NetResult<Option<AppendUid>>>> {
        let name = self.astring(mailbox, "APPEND").await?;
        let mut results = Vec::with_capacity(messages.len());
        let mut in_flight: VecDeque<String> = VecDeque::new();
        let mut early = HashMap::new();
        let mut next = 0;
        // A write that failed (the server closed the connection): the answers to what was
        // already sent may still be readable — a throttling reply before a `BYE` says why —
        // so they are read first, and the write's failure comes after them.
        let mut send_failed: Option<NetError> = None;
        while (next < messages.len() && send_failed.is_none()) || !in_flight.is_empty() {
            if next < messages.len() && send_failed.is_none() && in_flight.len() < APPEND_WINDOW {
                let message = messages[next];
                let non_sync = self.non_sync_literal(message.0.len());
                // A synchronizing literal needs the server's `+`, which comes only once the
                // commands before it are answered: drain those first.
                if non_sync || in_flight.is_empty() {
                    let tag = self.next_tag();
                    next += 1;
                    match self.send_append(&tag, &name, message, non_sync).await {
                        Ok(()) => in_flight.push_back(tag),
                        // A NO instead of `+` refuses this message only.
                        Err(e) if !non_sync && is_refusal(&e) => results.push(Err(e)),
                        Err(e) => send_failed = Some(e),
                    }
                    continue;
                }
            }
            let Some(tag) = in_flight.pop_front() else {
                break;
            };
            match self.finish_pipelined(&tag, &in_flight, &mut early).await {
                Ok(done) => results.push(Ok(append_uids(&done.text).and_then(|(v, u)| {
                    (u.len() == 1).then(|| AppendUid {
                        uid_validity: v,
                        uid: u[0],
                    })
                }))),
                Err(e) => {
                    let refused = is_refusal(&e);
                    results.push(Err(e));
                    if !refused {
                        return Ok(results);
                    }
                }
            }
        }
        results.extend(send_failed.map(Err));
        Ok(results)
    }

    /// Reads until pipelined APPEND `tag` completes. A server may complete pipelined commands
    /// in any order (RFC 3501 §5.5): completions of the ones still in flight (`others`) that
    /// come first are kept in `early` for their turn, not mistaken for noise.
    async fn finish_pipelined(
        &mut self,
        tag: &str,
        others: &VecDeque<String>,
        early: &mut HashMap<String, Done>,
    ) -> NetResult<Done> {
        let done = match early.remove(tag) {
            Some(done) => done,
            None => loop {
                let resp = read_response(&mut self.conn, "APPEND").await?;
                let first = resp.first_line();
                if let Some(done) = self.tagged(tag, first) {
                    break done;
                }
                if let Some((other, done)) = others
                    .iter()
                    .find_map(|t| self.tagged(t, first).map(|d| (t.clone(), d)))
                {
                    early.insert(other, done);
                    continue;
                }
                self.check_bye(first, "APPEND")?;
            },
        };
        if done.ok {
            Ok(done)
        } else {
            Err(self.no_error("APPEND", done.text))
        }
    }

    /// One MULTIAPPEND (RFC 3502) command for all `messages`: atomic — on a tagged NO none of
    /// them was stored. Needs MULTIAPPEND and LITERAL+.
    /// One MULTIAPPEND command; returns the tagged OK's text.
    async fn multiappend(&mut self, mailbox: &str, messages: &[Outgoing<'_>]) -> NetResult<String> {
        let name = self.astring(mailbox, "APPEND").await?;
        let tag = self.next_tag();
        let mut heads = Vec::with_capacity(messages.len());
        for (i, (message, flags)) in messages.iter().enumerate() {
            let lead = if i == 0 {
                format!("{tag} APPEND {name}")
            } else {
                String::new()
            };
            heads.push(format!(
                "{lead} {} {{{}+}}\r\n",
                attributes_of(flags, message.internal_date),
                message.len()
            ));
        }
        let mut parts: Vec<&[u8]> = Vec::with_capacity(messages.len() * 2 + 1);
        for (head, (message, _)) in heads.iter().zip(messages) {
            parts.push(head.as_bytes());
            parts.push(message.bytes());
        }
        parts.push(b"\r\n");
        if crate::trace::enabled() {
            for (head, (message, _)) in heads.iter().zip(messages) {
                self.conn.trace_sent(head);
                self.conn
                    .trace_sent(&format!("[{} bytes of message]", message.len()));
            }
        }
        self.conn.write_parts(&parts, "APPEND").await?;
        self.finish(&tag, "APPEND").await.map(|(_, done)| done.text)
    }

    /// Whether a literal of `len` bytes may be sent without waiting for `+`.
    fn non_sync_literal(&self, len: usize) -> bool {
        self.has_capability("LITERAL+") || (self.has_capability("LITERAL-") && len <= 4096)
    }

    /// Writes one APPEND command with its literal. With a synchronizing literal this waits
    /// for the continuation (a NO instead of it is returned as the error).
    async fn send_append(
        &mut self,
        tag: &str,
        name: &str,
        (message, flags): Outgoing<'_>,
        non_sync: bool,
    ) -> NetResult<()> {
        let bytes = message.bytes();
        let head = format!(
            "{tag} APPEND {name} {} {{{}{}}}\r\n",
            attributes_of(flags, message.internal_date),
            bytes.len(),
            if non_sync { "+" } else { "" }
        );
        self.conn.trace_sent(&head);
        if non_sync {
            self.conn
                .trace_sent(&format!("[{} bytes of message]", bytes.len()));
            return self
                .conn
                .write_parts(&[head.as_bytes(), bytes, b"\r\n"], "APPEND")
                .await;
        }
        self.conn.write_all(head.as_bytes(), "APPEND").await?;
        self.await_continuation(tag, "APPEND").await?;
        self.conn
            .trace_sent(&format!("[{} bytes of message]", bytes.len()));
        self.conn.write_parts(&[bytes, b"\r\n"], "APPEND").await
    }

    /// Starts `UID FETCH uid (UID BODY.PEEK[])` on the selected mailbox and reads up to the
    /// first byte of the body's literal: the [`BodyStream`] then hands the body out piece by
    /// piece, never holding it whole. `Ok(None)`: the answer held no body for `uid` (expunged,
    /// or `BODY[] NIL`), and the command is complete. The literal's length is checked against
    /// the connection's read limit ([`Endpoint::read_limit`]) before anything of it is read.
    pub async fn uid_fetch_body(&mut self, uid: u32) -> NetResult<Option<BodyStream<'_>>> {
        let tag = self.next_tag();
        let line = format!("{tag} UID FETCH {uid} (UID BODY.PEEK[])\r\n");
        self.conn.trace_sent(&line);
        self.conn.write_all(line.as_bytes(), "UID FETCH").await?;
        // What comes before the body is passed by, bounded like one message.
        let mut passed = 0u64;
        loop {
            if passed > self.conn.read_limit() {
                return Err(self.flooded("UID FETCH"));
            }
            let raw = self.conn.read_line("UID FETCH").await?;
            passed += raw.len() as u64;
            let mut line = raw.clone();
            while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                line.pop();
            }
            if let Some(done) = self.tagged(&tag, &line) {
                if done.ok {
                    return Ok(None);
                }
                return Err(self.no_error("UID FETCH", done.text));
            }
            self.check_bye(&line, "UID FETCH")?;
            let marker = (!is_text_response(&line))
                .then(|| literal_marker(&line))
                .flatten();
            let Some((start, n)) = marker else {
                continue;
            };
            if is_body_of(&line[..start], uid) {
                let limit = self.conn.read_limit();
                if n as u64 > limit {
                    return Err(NetError::protocol(
                        &self.conn.at,
                        format!(
                            "UID FETCH: the server announced {n} bytes, more than the {limit} this run reads for one message (settings.max_message_size_mb plus slack)"
                        ),
                    ));
                }
                return Ok(Some(BodyStream {
                    client: self,
                    tag,
                    size: n as u64,
                    remaining: n as u64,
                    done: false,
                }));
            }
            // Another response carrying a literal (an unsolicited FETCH): read to its end.
            passed += read_response_from(&mut self.conn, Some(raw), "UID FETCH")
                .await?
                .size();
        }
    }

    /// Starts an APPEND of a message of exactly `size` bytes, to be written with
    /// [`append_piece`](Self::append_piece) and completed with
    /// [`append_finish`](Self::append_finish). With LITERAL+ nothing is waited for; otherwise
    /// this waits for the server's continuation, and a NO instead refuses the message before
    /// anything of it was sent (the session goes on). Once a piece was written, the literal
    /// can only be completed or the connection dropped: a server reads whatever follows as
    /// the message.
    pub async fn append_start(
        &mut self,
        mailbox: &str,
        flags: &Flags,
        internal_date: Option<SystemTime>,
        size: u64,
    ) -> NetResult<String> {
        let name = self.astring(mailbox, "APPEND").await?;
        let tag = self.next_tag();
        let non_sync = self.non_sync_literal(usize::try_from(size).unwrap_or(usize::MAX));
        let head = format!(
            "{tag} APPEND {name} {} {{{size}{}}}\r\n",
            attributes_of(flags, internal_date),
            if non_sync { "+" } else { "" }
        );
        self.conn.trace_sent(&head);
        self.conn.write_all(head.as_bytes(), "APPEND").await?;
        if !non_sync {
            self.await_continuation(&tag, "APPEND").await?;
        }
        self.conn
            .trace_sent(&format!("[{size} bytes of message, streamed]"));
        Ok(tag)
    }

    /// Writes the next piece of the literal [`append_start`](Self::append_start) announced.
    pub async fn append_piece(&mut self, piece: &[u8]) -> NetResult<()> {
        self.conn.write_all(piece, "APPEND").await
    }

    /// Ends the literal of APPEND `tag` and reads its completion: the new UID under UIDPLUS.
    pub async fn append_finish(&mut self, tag: &str) -> NetResult<Option<AppendUid>> {
        self.conn.write_all(b"\r\n", "APPEND").await?;
        let (_, done) = self.finish(tag, "APPEND").await?;
        Ok(append_uids(&done.text).and_then(|(v, u)| {
            (u.len() == 1).then(|| AppendUid {
                uid_validity: v,
                uid: u[0],
            })
        }))
    }

    /// Closes the connection at once, in the middle of whatever was being sent (an APPEND
    /// literal the server must then discard). The client must not be used again: every
    /// command on it fails.
    pub async fn abandon(&mut self) {
        self.conn.trace_sent("(connection abandoned)");
        self.conn.shutdown().await;
    }

    /// LOGOUT and close.
    pub async fn logout(mut self) -> NetResult<()> {
        let r = self.run("LOGOUT", "LOGOUT").await.map(|_| ());
        self.conn.shutdown().await;
        r
    }

    // --- plumbing ---

    fn next_tag(&mut self) -> String {
        self.tag += 1;
        format!("C{}", self.tag)
    }

    /// A mailbox name as an APPEND argument, quoted. Target names are modified UTF-7 (plain
    /// ASCII) by construction; commands that take any name (SELECT, EXAMINE, CREATE) send
    /// other names as literals ([`mailbox_arg`]).
    async fn astring(&mut self, s: &str, op: &'static str) -> NetResult<String> {
        match quoted(s.as_bytes()) {
            Some(q) => Ok(q),
            None => Err(NetError::protocol(
                &self.conn.at,
                format!("{op}: mailbox name {s:?} is not 7-bit; encode it as modified UTF-7 first"),
            )),
        }
    }

    async fn await_continuation(&mut self, tag: &str, op: &'static str) -> NetResult<()> {
        loop {
            let resp = read_response(&mut self.conn, op).await?;
            let first = resp.first_line();
            if first.starts_with(b"+") {
                return Ok(());
            }
            if let Some(done) = self.tagged(tag, first) {
                return Err(self.no_error(op, done.text));
            }
            self.check_bye(first, op)?;
        }
    }

    /// Sends a command made of `pieces`, literals as the server takes them: after LITERAL+
    /// (or LITERAL- for small ones) in one write, otherwise each after the server's `+`.
    /// Returns the parsed untagged responses and the tagged OK text.
    async fn run_pieces(
        &mut self,
        pieces: &[Piece],
        op: &'static str,
    ) -> NetResult<(Vec<Vec<Value>>, String)> {
        let tag = self.next_tag();
        let mut line = format!("{tag} ");
        for piece in pieces {
            match piece {
                Piece::Text(text) => line.push_str(text),
                Piece::Literal(bytes) => {
                    if self.non_sync_literal(bytes.len()) {
                        line.push_str(&format!("{{{}+}}\r\n", bytes.len()));
                        self.conn.trace_sent(&line);
                        self.conn.trace_sent(&String::from_utf8_lossy(bytes));
                        self.conn.write_parts(&[line.as_bytes(), bytes], op).await?;
                    } else {
                        line.push_str(&format!("{{{}}}\r\n", bytes.len()));
                        self.conn.trace_sent(&line);
                        self.conn.write_all(line.as_bytes(), op).await?;
                        self.await_continuation(&tag, op).await?;
                        self.conn.trace_sent(&String::from_utf8_lossy(bytes));
                        self.conn.write_all(bytes, op).await?;
                    }
                    line.clear();
                }
            }
        }
        line.push_str("\r\n");
        self.conn.trace_sent(&line);
        self.conn.write_all(line.as_bytes(), op).await?;
        let (untagged, done) = self.finish(&tag, op).await?;
        Ok((untagged, done.text))
    }

    async fn simple(&mut self, cmd: &str, op: &'static str) -> NetResult<()> {
        self.run(cmd, op).await.map(|_| ())
    }

    /// Sends a command; returns the parsed untagged responses and the tagged OK text.
    async fn run(&mut self, cmd: &str, op: &'static str) -> NetResult<(Vec<Vec<Value>>, String)> {
        self.run_shown(cmd, cmd, op).await
    }

    /// [`Self::run`] with the command traced as `shown`.
    async fn run_shown(
        &mut self,
        cmd: &str,
        shown: &str,
        op: &'static str,
    ) -> NetResult<(Vec<Vec<Value>>, String)> {
        let tag = self.next_tag();
        self.conn.trace_sent(&format!("{tag} {shown}"));
        self.conn
            .write_all(format!("{tag} {cmd}\r\n").as_bytes(), op)
            .await?;
        let (untagged, done) = self.finish(&tag, op).await?;
        Ok((untagged, done.text))
    }

    /// Like [`Self::run`] for commands carrying a secret: the trace shows only the verb, and
    /// the command line is never formatted into an error or log.
    async fn run_secret(
        &mut self,
        cmd: &str,
        op: &'static str,
    ) -> NetResult<(Vec<Vec<Value>>, String)> {
        self.run_shown(cmd, &format!("{op} <redacted>"), op).await
    }

    /// Reads until the tagged completion of `tag`. The untagged responses kept on the way
    /// are bounded like one message ([`Conn::read_limit`]): a server flooding them fails the
    /// command instead of filling memory.
    async fn finish(&mut self, tag: &str, op: &'static str) -> NetResult<(Vec<Vec<Value>>, Done)> {
        let mut untagged = Vec::new();
        let mut kept = 0u64;
        loop {
            let resp = read_response(&mut self.conn, op).await?;
            let first = resp.first_line();
            if let Some(done) = self.tagged(tag, first) {
                if done.ok {
                    return Ok((untagged, done));
                }
                return Err(self.no_error(op, done.text));
            }
            self.check_bye(first, op)?;
            kept += resp.size();
            if kept > self.conn.read_limit() {
                return Err(NetError::protocol(
                    &self.conn.at,
                    format!(
                        "{op}: more untagged data than the {} bytes this run reads for one message",
                        self.conn.read_limit()
                    ),
                ));
            }
            untagged.push(parse(resp));
        }
    }

    /// `* BYE` outside LOGOUT: the server is closing the connection (shutdown, idle limit,
    /// sometimes throttling). Transient.
    fn check_bye(&self, first: &[u8], op: &'static str) -> NetResult<()> {
        if first.len() >= 5 && first[..5].eq_ignore_ascii_case(b"* BYE") && op != "LOGOUT" {
            let text = server_text(&first[5..]);
            if let Some(retry_after) = detect_throttle(&text) {
                return Err(NetError::Throttled {
                    at: self.conn.at.clone(),
                    retry_after,
                    text,
                });
            }
            return Err(NetError::Io {
                at: self.conn.at.clone(),
                op,
                source: std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    format!("server said BYE: {text}"),
                ),
            });
        }
        Ok(())
    }

    fn tagged(&self, tag: &str, line: &[u8]) -> Option<Done> {
        let rest = line.strip_prefix(tag.as_bytes())?.strip_prefix(b" ")?;
        let (status, text) = match rest.iter().position(|b| *b == b' ') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &b""[..]),
        };
        Some(Done {
            ok: status.eq_ignore_ascii_case(b"OK"),
            text: server_text(text),
        })
    }

    /// A server sending more untagged data around one message than a message may hold.
    fn flooded(&self, op: &str) -> NetError {
        NetError::protocol(
            &self.conn.at,
            format!(
                "{op}: more untagged data than the {} bytes this run reads for one message",
                self.conn.read_limit()
            ),
        )
    }

    /// A tagged NO/BAD as a typed error: throttling codes become [`NetError::Throttled`].
    fn no_error(&self, op: &str, text: String) -> NetError {
        match detect_throttle(&text) {
            Some(retry_after) => NetError::Throttled {
                at: self.conn.at.clone(),
                retry_after,
                text,
            },
            None => NetError::Rejected {
                at: self.conn.at.clone(),
                command: op.to_owned(),
                text,
            },
        }
    }
}

/// Part of a command line: text as written, or a string sent as a literal.
enum Piece {
    Text(String),
    Literal(Vec<u8>),
}

/// A mailbox name as a command argument: quoted when it is plain printable ASCII, else a
/// literal (a name a server stores in raw 8-bit, or UTF-8 under UTF8=ACCEPT).
fn mailbox_arg(name: &str) -> Piece {
    match quoted(name.as_bytes()) {
        Some(q) => Piece::Text(q),
        None => Piece::Literal(name.as_bytes().to_vec()),
    }
}

/// A message to APPEND, with the flags to store it with.
pub type Outgoing<'a> = (&'a RawMessage, &'a Flags);

/// An APPEND's flag list and internal date: `(\\Seen $Label1) "01-Jan-2020 10:00:00 +0000"`.
fn attributes_of(flags: &Flags, internal_date: Option<SystemTime>) -> String {
    let mut names: Vec<&str> = flags.system().map(Flag::imap_name).collect();
    names.extend(flags.keywords());
    let mut out = format!("({})", names.join(" "));
    if let Some(t) = internal_date {
        out.push_str(&format!(" \"{}\"", date::format_imap(t)));
    }
    out
}

/// A tagged NO/BAD (or a throttling reply): the server refused one command and the session
/// goes on, unlike a transport failure.
fn is_refusal(e: &NetError) -> bool {
    matches!(e, NetError::Rejected { .. } | NetError::Throttled { .. })
}

/// The UIDs of an `[APPENDUID uidvalidity uid-set]` completion (UIDPLUS), expanded in set
/// order; at most a million, which no APPEND batch comes near.
fn append_uids(text: &str) -> Option<(u32, Vec<u32>)> {
    let code = response_code(text)?;
    let mut it = code.split_whitespace();
    if !it.next()?.eq_ignore_ascii_case("APPENDUID") {
        return None;
    }
    let validity = it.next()?.parse().ok()?;
    let mut uids = Vec::new();
    for part in it.next()?.split(',') {
        let (a, b) = match part.split_once(':') {
            Some((a, b)) => (a.parse::<u32>().ok()?, b.parse::<u32>().ok()?),
            None => {
                let n = part.parse::<u32>().ok()?;
                (n, n)
            }
        };
        let (lo, hi) = (a.min(b), a.max(b));
        if uids.len() + (hi - lo) as usize >= 1_000_000 {
            return None;
        }
        uids.extend(lo..=hi);
    }
    Some((validity, uids))
}

/// A running `UID FETCH`: call [`Fetch::next`] until it returns `None`. Dropping it early
/// leaves the connection mid-response; such a client must not be used again.
pub struct Fetch<'a> {
    client: &'a mut ImapClient,
    tag: String,
    done: bool,
}

impl Fetch<'_> {
    /// The next message, or `None` after the tagged OK.
    pub async fn next(&mut self) -> NetResult<Option<FetchedMessage>> {
        while !self.done {
            let resp = read_response(&mut self.client.conn, "UID FETCH").await?;
            let first = resp.first_line();
            if let Some(done) = self.client.tagged(&self.tag, first) {
                self.done = true;
                if done.ok {
                    return Ok(None);
                }
                return Err(self.client.no_error("UID FETCH", done.text));
            }
            self.client.check_bye(first, "UID FETCH")?;
            let mut v = parse(resp).into_iter();
            let is_fetch = v
                .nth(2)
                .as_ref()
                .and_then(Value::as_atom)
                .is_some_and(|a| a.eq_ignore_ascii_case("FETCH"));
            if !is_fetch {
                continue;
            }
            let Some(Value::List(items)) = v.next() else {
                return Err(NetError::protocol(
                    &self.client.conn.at,
                    "FETCH without item list",
                ));
            };
            match fetched(items) {
                Some(m) => return Ok(Some(m)),
                // A FETCH without a body is an unsolicited flag update; not a message.
                None => continue,
            }
        }
        Ok(None)
    }
}

/// A body being read from [`ImapClient::uid_fetch_body`]: call
/// [`next_piece`](BodyStream::next_piece) until it returns `false`. Dropping it earlier
/// leaves the connection mid-literal; such a client must not be used again.
pub struct BodyStream<'a> {
    client: &'a mut ImapClient,
    tag: String,
    size: u64,
    remaining: u64,
    done: bool,
}

impl BodyStream<'_> {
    /// The literal's exact length.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether the whole answer was read: the client is ready for its next command.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Replaces `buf`'s content with up to `max` next bytes of the body and returns `true`;
    /// after the last byte, reads the rest of the answer up to its tagged OK and returns
    /// `false`.
    pub async fn next_piece(&mut self, buf: &mut Vec<u8>, max: usize) -> NetResult<bool> {
        if self.remaining > 0 {
            let n = self.remaining.min(max.max(1) as u64) as usize;
            buf.clear();
            self.client
                .conn
                .read_exact_into(n, buf, "UID FETCH")
                .await?;
            self.remaining -= n as u64;
            return Ok(true);
        }
        if self.done {
            return Ok(false);
        }
        // The rest of the FETCH response (`)`, or items after the body), then the completion;
        // bounded like one message.
        let mut passed = read_response(&mut self.client.conn, "UID FETCH")
            .await?
            .size();
        loop {
            if passed > self.client.conn.read_limit() {
                return Err(self.client.flooded("UID FETCH"));
            }
            let resp = read_response(&mut self.client.conn, "UID FETCH").await?;
            passed += resp.size();
            let first = resp.first_line();
            if let Some(done) = self.client.tagged(&self.tag, first) {
                self.done = true;
                if done.ok {
                    return Ok(false);
                }
                return Err(self.client.no_error("UID FETCH", done.text));
            }
            self.client.check_bye(first, "UID FETCH")?;
        }
    }
}

/// Whether a response line up to its literal marker announces the `BODY[]` of `uid`:
/// `* 3 FETCH (UID 7 BODY[]` (a UID, where given, must be `uid`).
fn is_body_of(prefix: &[u8], uid: u32) -> bool {
    let values = parse(Response {
        parts: vec![Part::Text(prefix.to_vec())],
    });
    let is_fetch = values.first().and_then(Value::as_atom) == Some("*")
        && values
            .get(2)
            .and_then(Value::as_atom)
            .is_some_and(|a| a.eq_ignore_ascii_case("FETCH"));
    let Some(Value::List(items)) = values.get(3) else {
        return false;
    };
    if !is_fetch || items.len() % 2 == 0 {
        return false;
    }
    let body_last = items
        .last()
        .and_then(Value::as_atom)
        .is_some_and(|a| a.eq_ignore_ascii_case("BODY[]"));
    let uid_ok = items.chunks(2).all(|kv| match kv {
        [k, v] if k.as_atom().is_some_and(|k| k.eq_ignore_ascii_case("UID")) => {
            v.as_atom().and_then(|v| v.parse::<u32>().ok()) == Some(uid)
        }
        _ => true,
    });
    body_last && uid_ok
}

/// Builds a message from FETCH items (moving the body out, not copying it); `None` when the
/// UID or the body is missing. `BODY[] NIL` — a server that has no content to give for the
/// message — is a missing body, never an empty message; only a header section may be `NIL`
/// (no such fields), read as empty.
fn fetched(items: Vec<Value>) -> Option<FetchedMessage> {
    let mut uid = None;
    let mut body = None;
    let mut flags = Flags::new();
    let mut internal_date: Option<SystemTime> = None;
    let mut size = None;
    let mut items = items.into_iter();
    while let (Some(key), Some(val)) = (items.next(), items.next()) {
        let key = key.as_atom().unwrap_or("").to_ascii_uppercase();
        match key.as_str() {
            "UID" => uid = val.as_atom().and_then(|a| a.parse().ok()),
            "RFC822.SIZE" => size = val.as_atom().and_then(|a| a.parse().ok()),
            "INTERNALDATE" => {
                internal_date = val
                    .as_bytes()
                    .and_then(|b| std::str::from_utf8(b).ok())
                    .and_then(date::parse_imap)
            }
            "FLAGS" => {
                if let Value::List(fl) = val {
                    for f in fl.iter().filter_map(Value::as_atom) {
                        match Flag::ALL
                            .iter()
                            .find(|x| x.imap_name().eq_ignore_ascii_case(f))
                        {
                            Some(x) => flags.insert(*x),
                            None if !f.starts_with('\\') => {
                                flags.insert_keyword(f);
                            }
                            None => {} // \Recent and unknown system flags are session state.
                        }
                    }
                }
            }
            k if k.starts_with("BODY[") => {
                body = match val {
                    Value::Str(s) => Some(s),
                    Value::Nil if k != "BODY[]" => Some(Vec::new()),
                    _ => None,
                }
            }
            _ => {}
        }
    }
    Some(FetchedMessage {
        uid: uid?,
        size,
        message: RawMessage::new(body?)
            .with_flags(flags)
            .with_internal_date(internal_date),
    })
}

/// Runs a whole client session — greeting, login, LIST, EXAMINE (an 8-bit name too), header
/// and body UID FETCH, a streamed body FETCH, APPEND, CREATE, UID SEARCH, LOGOUT — against `server`: the server's
/// side of a conversation as raw bytes, whatever the client sends (it is discarded). For
/// fuzzing and property tests of the response reader: for any bytes it must return, never
/// panic, and read no message beyond a 1 MiB limit. Returns how many of those steps succeeded
/// (the login counts as one), so a test can tell how far a replay got.
pub fn replay_session(server: &[u8]) -> usize {
    Conn::run_replayed(server, |conn| async {
        let credentials = Credentials::password("user@example.test", "password");
        let Ok(mut c) = ImapClient::start(conn, Tls::None, &credentials).await else {
            return 0;
        };
        let mut ok = 1;
        ok += usize::from(c.list().await.is_ok());
        ok += usize::from(c.examine("INBOX").await.is_ok());
        ok += usize::from(c.examine("Entw\u{fc}rfe").await.is_ok());
        if let Ok(mut f) = c.uid_fetch_headers("1:*").await {
            while let Ok(Some(_)) = f.next().await {}
        }
        if let Ok(mut f) = c.uid_fetch("1:*").await {
            while let Ok(Some(_)) = f.next().await {}
        }
        if let Ok(Some(mut body)) = c.uid_fetch_body(1).await {
            let mut piece = Vec::new();
            while let Ok(true) = body.next_piece(&mut piece, 4096).await {}
        }
        let message = RawMessage::new(b"Subject: x\r\n\r\nbody\r\n".to_vec());
        ok += usize::from(c.append_all("INBOX", &[&message, &message]).await.is_ok());
        ok += usize::from(c.create("Archiv/Entw\u{fc}rfe").await.is_ok());
        ok += usize::from(c.uid_search("1:*", &DateWindow::unbounded()).await.is_ok());
        ok + usize::from(c.logout().await.is_ok())
    })
    .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The login a replayed session starts with: greeting, CAPABILITY, AUTHENTICATE (SASL-IR),
    /// CAPABILITY again.
    const LOGIN: &str = "* OK ready\r\n* CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR LITERAL+\r\nC1 OK\r\nC2 OK logged in\r\n* CAPABILITY IMAP4rev1 LITERAL+\r\nC3 OK\r\n";

    async fn client(rest: &str, read_limit: u64) -> ImapClient {
        let conn = Conn::replay(format!("{LOGIN}{rest}").into_bytes(), read_limit);
        ImapClient::start(conn, Tls::None, &Credentials::password("u", "p"))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_body_is_handed_out_in_pieces_and_its_answer_read_to_the_end() {
        // An unsolicited FETCH with a literal first, then the body, items after it, the OK.
        let mut c = client(
            "* 2 FETCH (UID 8 BODY[HEADER] {3}\r\nabc)\r\n* 1 FETCH (UID 7 BODY[] {11}\r\nhello world FLAGS (\\Seen))\r\nC4 OK done\r\nC5 OK created\r\n",
            1 << 20,
        )
        .await;
        let mut body = c.uid_fetch_body(7).await.unwrap().expect("a body");
        assert_eq!(body.size(), 11);
        let mut got = Vec::new();
        let mut piece = Vec::new();
        while body.next_piece(&mut piece, 4).await.unwrap() {
            assert!(piece.len() <= 4);
            got.extend_from_slice(&piece);
        }
        assert!(body.is_done());
        assert_eq!(got, b"hello world");
        // The session goes on.
        c.create("X").await.unwrap();
    }

    #[tokio::test]
    async fn no_body_and_oversized_bodies_are_told_apart() {
        let mut c = client("* 1 FETCH (UID 7 BODY[] NIL)\r\nC4 OK done\r\n", 1 << 20).await;
        assert!(c.uid_fetch_body(7).await.unwrap().is_none());
        // Announced beyond the read limit: refused before a byte of it is read.
        let mut c = client("* 1 FETCH (UID 7 BODY[] {999999}\r\n", 1000).await;
        let err = c.uid_fetch_body(7).await.err().expect("refused");
        assert!(err.to_string().contains("announced 999999 bytes"), "{err}");
    }

    #[test]
    fn only_the_body_of_the_asked_uid_is_streamed() {
        assert!(is_body_of(b"* 1 FETCH (UID 7 BODY[] ", 7));
        assert!(is_body_of(b"* 1 FETCH (BODY[] ", 7));
        assert!(!is_body_of(b"* 1 FETCH (UID 8 BODY[] ", 7));
        assert!(!is_body_of(b"* 1 FETCH (UID 7 BODY[HEADER] ", 7));
        assert!(!is_body_of(b"* OK [ALERT] BODY[] ", 7));
    }
}
