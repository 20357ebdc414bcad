//! A fault-injecting TCP proxy in front of a real server, for the failure paths a migration
//! meets at real hosts: connections cut in the middle of an APPEND or of a download, throttling
//! replies (`NO [THROTTLED]`, Microsoft's "Request is throttled. Suggested Backoff Time: N
//! milliseconds") instead of a server's answer, messages refused for their size, and servers
//! that lack an extension (capabilities filtered out of what the server advertises).
//!
//! It speaks plaintext only (tests connect with `tls: none` + `allow_plaintext`) and reads
//! both directions line by line, copying literals (`{n}` RFC 3501, `{n+}` RFC 7888) as bytes,
//! so it knows where commands, literals and responses start and end. Faults are scripted by
//! counting across all connections, so a reconnect does not reset the script:
//! - `throttle_every`: every Nth APPEND is swallowed (all its literals, MULTIAPPEND included)
//!   and answered with the next of `throttle_replies`, without bothering the server;
//! - `cut_every`: every Nth APPEND, half of its bytes reach the server, then both directions
//!   are closed — mid-literal, like a connection lost during an upload;
//! - `refuse_larger_than`: an APPEND with a literal over that size is answered `NO [TOOBIG]`
//!   and never reaches the server (a synchronizing literal is refused instead of `+`, as
//!   servers do; with LITERAL+ the bytes are swallowed first);
//! - `cut_download_every` / `cut_download_after`: every Nth body download (IMAP `UID FETCH`
//!   of `BODY.PEEK[]`, POP3 `RETR` or `TOP n m` with m > 0) is cut once that many response
//!   bytes reached the client, at most `cut_download_limit` times;
//! - `drop_capabilities`: names removed from `* CAPABILITY` lines and `[CAPABILITY …]` codes,
//!   and POP3 `CAPA` lines (`PIPELINING`, `TOP`);
//! - `reorder_appends`: an APPEND's completion comes after the next command's;
//! - `budget`: a token bucket per login (Exchange Online throttles per mailbox): an APPEND
//!   finding no token for each of its messages is answered with the next throttling reply;
//!   `bye_after_refusals` closes a connection (`* BYE`) after that many invented refusals
//!   on it, as Exchange does;
//! - `no_keywords`: `PERMANENTFLAGS` without `\*` (the folder cannot store keywords), and
//!   APPENDs that send keywords anyway are counted;
//! - `huge_body`: a body download announces a literal of that many bytes instead of the
//!   message's, and the proxy streams that many filler bytes (as long as the client reads);
//! - `omit_fetch_uids`: a `UID FETCH` of one of these UIDs alone is answered without its
//!   `* n FETCH` line (a server leaving a message it still holds out of an answer);
//! - `nil_body_uids`: the body of these UIDs comes as `BODY[] NIL` (a server that has nothing
//!   to give for a message it still lists).
//!
//! [`Faults::exchange`] is Exchange Online's profile: its capabilities (no MULTIAPPEND, no
//! CONDSTORE), a per-mailbox budget, its throttling text, a BYE after three throttles.
//!
//! POP3 sessions (told by the `+OK` greeting) are followed answer by answer — a status line,
//! and a body up to `.` after `+OK` for the commands that have one — so the proxy knows how
//! many commands a client keeps in flight (PIPELINING) and which lines are a CAPA answer.
//!
//! Replies the proxy invents reach the client in command order (after the server's answers
//! to the commands sent before), as a server's would.
//!
//! Limits, fine for the tests: a server refusing a synchronizing literal (`NO` instead of
//! `+`) is not followed — the proxy would wait for the literal.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// A throttling reply without a suggested wait: the client must back off on its own.
pub const THROTTLED: &str = "NO [THROTTLED] Too many requests, slow down";

/// Exchange Online's throttling reply (no response code, a suggested wait in the text).
pub fn microsoft_throttle(ms: u64) -> String {
    format!("NO Request is throttled. Suggested Backoff Time: {ms} milliseconds")
}

#[derive(Debug, Clone, Default)]
pub struct Faults {
    pub cut_every: Option<usize>,
    pub throttle_every: Option<usize>,
    /// Throttling replies (without the tag), used in turn; empty means [`THROTTLED`].
    pub throttle_replies: Vec<String>,
    pub refuse_larger_than: Option<usize>,
    pub cut_download_every: Option<usize>,
    /// Response bytes of a cut download that still reach the client; smaller than the
    /// response, or the cut falls on whatever the server sends next.
    pub cut_download_after: usize,
    /// At most this many download cuts: a step that reads everything again on each attempt
    /// (verify) could never get through a cut every few downloads.
    pub cut_download_limit: Option<usize>,
    /// Capability names (any case) the client must not see.
    pub drop_capabilities: Vec<String>,
    /// Completes pipelined APPENDs out of order: an APPEND's `OK [APPENDUID …]` is held back
    /// until the next command completes (only while another command is in flight, so it
    /// always comes). RFC 3501 allows it; Dovecot never does it.
    pub reorder_appends: bool,
    /// Per login: messages per second, and how many may come at once (the bucket's depth).
    pub budget: Option<(f64, f64)>,
    /// Closes a connection (`* BYE`) after this many replies the proxy invented on it
    /// (throttling, `[TOOBIG]`): Exchange closes after a few throttles, and after ten errors.
    pub bye_after_refusals: Option<usize>,
    /// Folders cannot store keywords (`PERMANENTFLAGS` without `\*`).
    pub no_keywords: bool,
    /// Announced (and streamed) length of every body download's literal.
    pub huge_body: Option<u64>,
    /// UIDs whose body download says `BODY[] NIL`.
    pub nil_body_uids: Vec<u32>,
    pub omit_fetch_uids: Vec<u32>,
}

impl Faults {
    /// Exchange Online as the issue tracker measured it: `IMAP4 IMAP4rev1 AUTH=PLAIN
    /// AUTH=XOAUTH2 SASL-IR UIDPLUS MOVE ID UNSELECT CHILDREN IDLE NAMESPACE LITERAL+` (so no
    /// MULTIAPPEND, CONDSTORE, QRESYNC…), throttling per mailbox with its text and a suggested
    /// backoff of `backoff_ms`, a BYE after three throttles, no keywords.
    pub fn exchange(per_second: f64, depth: f64, backoff_ms: u64) -> Faults {
        Faults {
            drop_capabilities: [
                "MULTIAPPEND",
                "CONDSTORE",
                "QRESYNC",
                "LITERAL-",
                "APPENDLIMIT",
                "CATENATE",
                "BINARY",
                "SPECIAL-USE",
                "LIST-EXTENDED",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            throttle_replies: vec![microsoft_throttle(backoff_ms)],
            budget: Some((per_second, depth)),
            bye_after_refusals: Some(3),
            no_keywords: true,
            ..Faults::default()
        }
    }
}

/// What the proxy has seen and done, across all connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// APPEND commands (a MULTIAPPEND counts once).
    pub appends: usize,
    pub cuts: usize,
    pub throttles: usize,
    pub refusals: usize,
    pub downloads: usize,
    pub download_cuts: usize,
    /// APPEND completions sent after a later command's.
    pub reordered: usize,
    /// POP3 commands the clients sent.
    pub pop3_commands: usize,
    /// The most POP3 commands one client had sent before their answers were complete: 1
    /// for a client waiting for each answer, more for one pipelining.
    pub pop3_max_in_flight: usize,
    /// APPENDs that carried keywords.
    pub appends_with_keywords: usize,
    /// Connections closed with `* BYE` after throttling.
    pub byes: usize,
    /// `UID STORE … +FLAGS… (\Flagged)` commands.
    pub flagged_stores: usize,
    /// Connections opened.
    pub connections: usize,
}

/// Per login: messages the budget let through and APPENDs it refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoginCounts {
    pub accepted: usize,
    pub refused: usize,
}

struct Shared {
    faults: Mutex<Faults>,
    counts: Mutex<Counts>,
    changed: Condvar,
    /// Per login: tokens left and when they were last topped up.
    buckets: Mutex<std::collections::HashMap<String, (f64, Instant)>>,
    logins: Mutex<std::collections::BTreeMap<String, LoginCounts>>,
}

impl Shared {
    fn faults(&self) -> Faults {
        self.faults.lock().unwrap().clone()
    }

    /// Takes `n` tokens of `login`'s bucket, if it has them.
    fn take_tokens(&self, login: &str, n: usize, (per_second, depth): (f64, f64)) -> bool {
        let mut buckets = self.buckets.lock().unwrap();
        let now = Instant::now();
        let (tokens, at) = buckets.entry(login.to_owned()).or_insert((depth, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * per_second).min(depth);
        *at = now;
        let ok = *tokens >= n as f64;
        if ok {
            *tokens -= n as f64;
        }
        let mut logins = self.logins.lock().unwrap();
        let c = logins.entry(login.to_owned()).or_default();
        if ok {
            c.accepted += n;
        } else {
            c.refused += 1;
        }
        ok
    }

    /// Applies `f` to the counts and returns the updated value.
    fn count(&self, f: impl FnOnce(&mut Counts)) -> Counts {
        let mut c = self.counts.lock().unwrap();
        f(&mut c);
        self.changed.notify_all();
        *c
    }
}

pub struct FaultProxy {
    pub port: u16,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
}

/// A handle to wait on a proxy's counts from another thread.
#[derive(Clone)]
pub struct Watch(Arc<Shared>);

impl Watch {
    /// Blocks until `done(counts)` holds; `false` after `timeout` (a test then fails instead
    /// of hanging).
    pub fn wait_until(&self, timeout: Duration, done: impl Fn(&Counts) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut c = self.0.counts.lock().unwrap();
        while !done(&c) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            c = self.0.changed.wait_timeout(c, left).unwrap().0;
        }
        true
    }
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `127.0.0.1:upstream`.
    pub fn start(upstream: u16, faults: Faults) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy binds a loopback port");
        let port = listener.local_addr().unwrap().port();
        let proxy = FaultProxy {
            port,
            shared: Arc::new(Shared {
                faults: Mutex::new(faults),
                counts: Mutex::default(),
                changed: Condvar::new(),
                buckets: Mutex::default(),
                logins: Mutex::default(),
            }),
            stop: Arc::default(),
        };
        let (shared, stop) = (proxy.shared.clone(), proxy.stop.clone());
        thread::spawn(move || {
            for client in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                // Lines are forwarded one write each: without this, Nagle's algorithm holds
                // a small answer back until the peer's delayed ACK, 40 ms per round trip.
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let shared = shared.clone();
                thread::spawn(move || session(client, server, &shared));
            }
        });
        proxy
    }

    /// Changes the script for what happens next (connections already open included).
    pub fn set_faults(&self, faults: Faults) {
        *self.shared.faults.lock().unwrap() = faults;
    }

    /// Per login (as the client signed in): what the budget let through and refused.
    pub fn logins(&self) -> std::collections::BTreeMap<String, LoginCounts> {
        self.shared.logins.lock().unwrap().clone()
    }

    pub fn counts(&self) -> Counts {
        *self.shared.counts.lock().unwrap()
    }

    pub fn watch(&self) -> Watch {
        Watch(self.shared.clone())
    }

    pub fn appends_seen(&self) -> usize {
        self.counts().appends
    }

    pub fn cuts(&self) -> usize {
        self.counts().cuts
    }

    pub fn throttles(&self) -> usize {
        self.counts().throttles
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// The client side of a session, shared by both directions so that replies the proxy makes
/// up come in order: a server completes pipelined commands in the order sent, and a client
/// may rely on that, so an invented reply waits until the commands sent before it completed.
struct Downstream {
    to_client: TcpStream,
    /// Tags of commands sent to the server and not yet completed, and invented replies, in
    /// the order the client sent the commands.
    queue: VecDeque<Pending>,
    /// Response bytes the client may still get before the connection is cut.
    budget: Option<usize>,
    /// The server greeted `+OK`: a POP3 session.
    pop3: bool,
    /// POP3 commands sent and not yet fully answered, in order.
    pop3_pending: VecDeque<Pop3Command>,
    /// A `UID FETCH` of this UID alone is in flight: its FETCH lines are left out.
    omit_uid: Option<u32>,
}

/// What the proxy needs to know of a POP3 command to follow its answer.
#[derive(Debug, Clone, Copy)]
struct Pop3Command {
    /// `+OK` is followed by a body ending in a `.` line.
    multiline: bool,
    /// The answer lists capabilities (filtered).
    capa: bool,
}

impl Pop3Command {
    fn of(words: &[&str]) -> Pop3Command {
        let verb = words
            .first()
            .map(|w| w.to_ascii_uppercase())
            .unwrap_or_default();
        let args = words.len().saturating_sub(1);
        Pop3Command {
            multiline: match verb.as_str() {
                "CAPA" | "RETR" | "TOP" => true,
                "LIST" | "UIDL" => args == 0,
                _ => false,
            },
            capa: verb == "CAPA",
        }
    }
}

enum Pending {
    Sent(String),
    Reply(Vec<u8>),
}

impl Downstream {
    /// Counts a download command and, when it is one the script cuts, sets the budget —
    /// before the command reaches the server, so before any of its response.
    fn count_download(&mut self, shared: &Shared, faults: &Faults) {
        let n = shared.count(|c| c.downloads += 1).downloads;
        let cut = faults
            .cut_download_every
            .is_some_and(|e| n.is_multiple_of(e))
            && faults
                .cut_download_limit
                .is_none_or(|max| shared.counts.lock().unwrap().download_cuts < max);
        if cut {
            self.budget = Some(faults.cut_download_after);
        }
    }

    /// Passes `bytes` on, or only what the budget allows; `false` once the client is gone.
    fn send(&mut self, bytes: &[u8], shared: &Shared) -> bool {
        match self.budget.as_mut() {
            Some(left) if *left < bytes.len() => {
                let _ = self.to_client.write_all(&bytes[..*left]);
                shared.count(|c| c.download_cuts += 1);
                false
            }
            Some(left) => {
                *left -= bytes.len();
                self.to_client.write_all(bytes).is_ok()
            }
            None => self.to_client.write_all(bytes).is_ok(),
        }
    }

    /// Answers `tag` with `reply` in place of the server, after what is in flight.
    fn reply(&mut self, tag: &str, reply: &str) -> bool {
        let line = format!("{tag} {reply}\r\n").into_bytes();
        if self.queue.iter().any(|p| matches!(p, Pending::Sent(_))) {
            self.queue.push_back(Pending::Reply(line));
            true
        } else {
            self.to_client.write_all(&line).is_ok()
        }
    }

    /// After the server completed `tag`: the replies queued behind it are due.
    fn completed(&mut self, tag: &str) -> bool {
        let Some(at) = self
            .queue
            .iter()
            .position(|p| matches!(p, Pending::Sent(t) if t == tag))
        else {
            return true;
        };
        // Entries before it were not commands after all (continuation lines) or were
        // answered out of order: nothing more will come for them.
        self.queue.drain(..=at);
        while let Some(Pending::Reply(_)) = self.queue.front() {
            let Some(Pending::Reply(line)) = self.queue.pop_front() else {
                break;
            };
            if self.to_client.write_all(&line).is_err() {
                return false;
            }
        }
        true
    }
}

type Down = Arc<Mutex<Downstream>>;

fn session(client: TcpStream, server: TcpStream, shared: &Arc<Shared>) {
    let (Ok(server_read), Ok(to_client)) = (server.try_clone(), client.try_clone()) else {
        return;
    };
    let down: Down = Arc::new(Mutex::new(Downstream {
        to_client,
        queue: VecDeque::new(),
        budget: None,
        pop3: false,
        pop3_pending: VecDeque::new(),
        omit_uid: None,
    }));
    let pump = {
        let (shared, down) = (shared.clone(), down.clone());
        thread::spawn(move || responses(server_read, &down, &shared))
    };
    let mut from_client = BufReader::new(client.try_clone().expect("clone client"));
    let mut to_server = server;
    // Whether the line read next continues a command (follows one of its literals).
    let mut continues = false;
    // Who signed in on this connection, and how often it was throttled.
    let mut login = String::new();
    let mut refused_here = 0usize;
    shared.count(|c| c.connections += 1);
    while let Some(line) = read_line(&mut from_client) {
        let text = String::from_utf8_lossy(&line).to_string();
        let words: Vec<&str> = text.split_whitespace().collect();
        let tag = words.first().copied().unwrap_or("*").to_string();
        let verb = |i: usize, w: &str| words.get(i).is_some_and(|v| v.eq_ignore_ascii_case(w));
        let faults = shared.faults();
        if down.lock().unwrap().pop3 {
            // POP3: no tags, no literals; downloads are RETR and TOP with body lines.
            let download =
                verb(0, "RETR") || (verb(0, "TOP") && words.get(2).is_some_and(|n| *n != "0"));
            {
                let mut d = down.lock().unwrap();
                if download {
                    d.count_download(shared, &faults);
                }
                d.pop3_pending.push_back(Pop3Command::of(&words));
                let in_flight = d.pop3_pending.len();
                shared.count(|c| {
                    c.pop3_commands += 1;
                    c.pop3_max_in_flight = c.pop3_max_in_flight.max(in_flight);
                });
            }
            if to_server.write_all(&line).is_err() {
                break;
            }
            continue;
        }
        if !continues {
            if let Some(who) = signed_in_as(&words) {
                login = who;
            }
            if verb(1, "UID") && verb(2, "FETCH") {
                let alone = words.get(3).and_then(|w| w.parse::<u32>().ok());
                if let Some(uid) = alone.filter(|u| faults.omit_fetch_uids.contains(u)) {
                    down.lock().unwrap().omit_uid = Some(uid);
                }
            }
            if verb(1, "UID")
                && verb(2, "STORE")
                && text.contains("+FLAGS")
                && text.contains("\\Flagged")
            {
                shared.count(|c| c.flagged_stores += 1);
            }
        }
        let forwarded = if !continues && verb(1, "APPEND") {
            let n = shared.count(|c| c.appends += 1).appends;
            let mut s = Append {
                tag: &tag,
                n,
                faults: &faults,
                shared,
                down: &down,
                from_client: &mut from_client,
                to_server: &mut to_server,
                login: &login,
                refused_here: &mut refused_here,
            };
            match s.run(line) {
                Some(more) => {
                    continues = more;
                    true
                }
                None => false,
            }
        } else {
            if !continues {
                let download = (verb(1, "UID") && verb(2, "FETCH") && text.contains("BODY.PEEK[]"))
                    || verb(0, "RETR");
                let mut d = down.lock().unwrap();
                if download {
                    d.count_download(shared, &faults);
                }
                d.queue.push_back(Pending::Sent(tag.clone()));
            }
            let literal = literal_size(&line);
            continues = literal.is_some();
            to_server.write_all(&line).is_ok()
                && match literal {
                    Some((size, _)) => copy_exact(&mut from_client, &mut to_server, size),
                    None => true,
                }
        };
        if !forwarded {
            break;
        }
    }
    let _ = to_server.shutdown(Shutdown::Both);
    let _ = client.shutdown(Shutdown::Both);
    let _ = pump.join();
}

/// One APPEND command as the proxy handles it.
struct Append<'a> {
    tag: &'a str,
    /// Its number among all APPENDs the proxy has seen.
    n: usize,
    faults: &'a Faults,
    shared: &'a Shared,
    down: &'a Down,
    from_client: &'a mut BufReader<TcpStream>,
    to_server: &'a mut TcpStream,
    /// Who signed in on this connection.
    login: &'a str,
    /// Throttling replies sent on this connection so far.
    refused_here: &'a mut usize,
}

impl Append<'_> {
    fn every(&self, e: Option<usize>) -> bool {
        e.is_some_and(|e| self.n.is_multiple_of(e))
    }

    fn too_big(&self, size: usize) -> bool {
        self.faults.refuse_larger_than.is_some_and(|max| size > max)
    }

    /// The reply replacing the server's, if this APPEND is throttled or refused.
    fn invented(&mut self, sizes: &[usize]) -> Option<String> {
        if let Some(budget) = self.faults.budget {
            if !self.shared.take_tokens(self.login, sizes.len(), budget) {
                let k = self.shared.count(|c| c.throttles += 1).throttles;
                let replies = &self.faults.throttle_replies;
                return Some(match replies.len() {
                    0 => THROTTLED.to_string(),
                    r => replies[(k - 1) % r].clone(),
                });
            }
        }
        if self.every(self.faults.throttle_every) {
            let k = self.shared.count(|c| c.throttles += 1).throttles;
            let replies = &self.faults.throttle_replies;
            return Some(match replies.len() {
                0 => THROTTLED.to_string(),
                r => replies[(k - 1) % r].clone(),
            });
        }
        if sizes.iter().any(|&s| self.too_big(s)) {
            self.shared.count(|c| c.refusals += 1);
            return Some("NO [TOOBIG] Message too large (fault proxy)".into());
        }
        None
    }

    fn sent(&self) {
        let tag = self.tag.to_string();
        self.down
            .lock()
            .unwrap()
            .queue
            .push_back(Pending::Sent(tag));
    }

    /// Answers with `reply` in place of the server; after too many throttling replies on this
    /// connection, closes it as Exchange does. `None` when the session is over.
    fn answer(&mut self, reply: &str) -> Option<bool> {
        *self.refused_here += 1;
        let mut d = self.down.lock().unwrap();
        if !d.reply(self.tag, reply) {
            return None;
        }
        let bye = self
            .faults
            .bye_after_refusals
            .is_some_and(|n| *self.refused_here >= n);
        if bye {
            // As Exchange: the answers to what is in flight first, then `* BYE`, then close.
            let deadline = Instant::now() + Duration::from_secs(5);
            while d.queue.iter().any(|p| matches!(p, Pending::Sent(_))) && Instant::now() < deadline
            {
                drop(d);
                thread::sleep(Duration::from_millis(2));
                d = self.down.lock().unwrap();
            }
            let _ = d.to_client.write_all(b"* BYE Connection is closed. 13\r\n");
            drop(d);
            self.shared.count(|c| c.byes += 1);
            return None;
        }
        Some(false)
    }

    /// Handles the command starting with `line`: `None` when the session is over, else
    /// whether the client's next line still belongs to this command.
    fn run(&mut self, line: Vec<u8>) -> Option<bool> {
        if self.faults.no_keywords && has_keywords(&line) {
            self.shared.count(|c| c.appends_with_keywords += 1);
        }
        let Some((size, plus)) = literal_size(&line) else {
            self.sent();
            return self.to_server.write_all(&line).is_ok().then_some(false);
        };
        if !plus {
            // A synchronizing literal: the client sends it only after `+`, so the decision
            // is made on this line (clients send MULTIAPPEND only with LITERAL+).
            if let Some(reply) = self.invented(&[size]) {
                return self.answer(&reply);
            }
            self.sent();
            if self.every(self.faults.cut_every) {
                self.shared.count(|c| c.cuts += 1);
                // The server's `+` reaches the client through the pump; then half the literal.
                let _ = self.to_server.write_all(&line);
                let _ = copy_exact(self.from_client, self.to_server, size / 2);
                return None;
            }
            let ok = self.to_server.write_all(&line).is_ok()
                && copy_exact(self.from_client, self.to_server, size);
            return ok.then_some(true);
        }
        // LITERAL+: the whole command (every message of a MULTIAPPEND) comes without waiting
        // for the server, so read it all, then decide.
        let mut command = line;
        let mut sizes = vec![size];
        let mut next = Some(size);
        while let Some(size) = next {
            let start = command.len();
            command.resize(start + size, 0);
            self.from_client.read_exact(&mut command[start..]).ok()?;
            let rest = read_line(self.from_client)?;
            next = match literal_size(&rest) {
                Some((size, true)) => Some(size),
                // Not what a client sends; the proxy cannot handle it without the server.
                Some((_, false)) => return None,
                None => None,
            };
            sizes.extend(next);
            command.extend_from_slice(&rest);
        }
        if let Some(reply) = self.invented(&sizes) {
            return self.answer(&reply);
        }
        self.sent();
        if self.every(self.faults.cut_every) {
            self.shared.count(|c| c.cuts += 1);
            let _ = self.to_server.write_all(&command[..command.len() / 2]);
            return None;
        }
        self.to_server.write_all(&command).is_ok().then_some(false)
    }
}

/// Server → client: lines, with capability filtering; literals as bytes.
fn responses(server: TcpStream, down: &Down, shared: &Shared) {
    let mut from_server = BufReader::new(server);
    // An APPEND completion held back to come after the next one (`reorder_appends`).
    let mut held: Option<(Vec<u8>, String)> = None;
    let mut greeted = false;
    // Inside a POP3 multi-line answer: whether it is CAPA's.
    let mut pop3_body: Option<bool> = None;
    'lines: while let Some(line) = read_line(&mut from_server) {
        let faults = shared.faults();
        if !greeted {
            greeted = true;
            if line.starts_with(b"+OK") {
                down.lock().unwrap().pop3 = true;
            }
        } else if down.lock().unwrap().pop3 {
            let mut d = down.lock().unwrap();
            match pop3_body {
                Some(capa) => {
                    if line == b".\r\n" || line == b".\n" {
                        pop3_body = None;
                        d.pop3_pending.pop_front();
                    } else if capa && dropped_pop3_capability(&line, &faults.drop_capabilities) {
                        continue;
                    }
                }
                None => {
                    let command = d.pop3_pending.front().copied();
                    match command {
                        Some(c) if c.multiline && line.starts_with(b"+OK") => {
                            pop3_body = Some(c.capa);
                        }
                        _ => {
                            d.pop3_pending.pop_front();
                        }
                    }
                }
            }
            if !d.send(&line, shared) {
                break;
            }
            continue;
        }
        let line = if faults.drop_capabilities.is_empty() {
            line
        } else {
            filter_capabilities(&line, &faults.drop_capabilities)
        };
        let line = if faults.no_keywords && contains(&line, b"[PERMANENTFLAGS") {
            String::from_utf8_lossy(&line)
                .replace(" \\*", "")
                .into_bytes()
        } else {
            line
        };
        if faults.reorder_appends && held.is_none() && contains(&line, b"[APPENDUID") {
            if let Some(tag) = completion_tag(&line) {
                let in_flight = down
                    .lock()
                    .unwrap()
                    .queue
                    .iter()
                    .filter(|p| matches!(p, Pending::Sent(_)))
                    .count();
                if in_flight >= 2 {
                    held = Some((line, tag));
                    continue;
                }
            }
        }
        let omit = down.lock().unwrap().omit_uid;
        if omit.is_some() && line.starts_with(b"* ") && fetch_uid(&line) == omit {
            // Left out: the line, its literal and the rest of the response after it.
            if let Some((size, _)) = literal_size(&line) {
                if !skip_exact(&mut from_server, size) || read_line(&mut from_server).is_none() {
                    break;
                }
            }
            continue;
        }
        if omit.is_some() && completion_tag(&line).is_some() {
            down.lock().unwrap().omit_uid = None;
        }
        if let Some(size) = body_literal(&line) {
            if let Some(huge) = faults.huge_body {
                // Announce `huge` bytes and stream filler until the client stops reading; the
                // server's own literal is dropped and the session ends.
                let at = line.len() - format!("{{{size}}}\r\n").len();
                let mut fake = line[..at].to_vec();
                fake.extend_from_slice(format!("{{{huge}}}\r\n").as_bytes());
                let to_client = down.lock().unwrap().to_client.try_clone();
                if let Ok(mut to_client) = to_client {
                    let _ = to_client.write_all(&fake);
                    let filler = vec![b'x'; 64 * 1024];
                    let mut left = huge;
                    while left > 0 {
                        let n = left.min(filler.len() as u64) as usize;
                        if to_client.write_all(&filler[..n]).is_err() {
                            break;
                        }
                        left -= n as u64;
                    }
                }
                break 'lines;
            }
            if fetch_uid(&line).is_some_and(|uid| faults.nil_body_uids.contains(&uid)) {
                // `BODY[] {n}` + literal becomes `BODY[] NIL`; the line after the literal
                // (`)` and the rest) follows as the server sends it.
                let at = line.len() - format!("{{{size}}}\r\n").len();
                let mut nil = line[..at].to_vec();
                nil.extend_from_slice(b"NIL");
                if !down.lock().unwrap().send(&nil, shared) || !skip_exact(&mut from_server, size) {
                    break;
                }
                continue;
            }
        }
        if !down.lock().unwrap().send(&line, shared) {
            break;
        }
        if let Some((mut left, _)) = literal_size(&line) {
            // Read unlocked: the client side must not wait on the server's pace.
            let mut buf = [0u8; 16 * 1024];
            while left > 0 {
                match from_server.read(&mut buf[..left.min(16 * 1024)]) {
                    Ok(0) | Err(_) => break 'lines,
                    Ok(n) => {
                        if !down.lock().unwrap().send(&buf[..n], shared) {
                            break 'lines;
                        }
                        left -= n;
                    }
                }
            }
        } else if let Some(tag) = completion_tag(&line) {
            if !down.lock().unwrap().completed(&tag) {
                break;
            }
            if let Some((late, late_tag)) = held.take() {
                let mut d = down.lock().unwrap();
                if !d.send(&late, shared) || !d.completed(&late_tag) {
                    break;
                }
                shared.count(|c| c.reordered += 1);
            }
        }
    }
    if let Ok(d) = down.lock() {
        let _ = d.to_client.shutdown(Shutdown::Both);
    }
    if let Ok(server) = from_server.get_ref().try_clone() {
        let _ = server.shutdown(Shutdown::Both);
    }
}

/// The login a `LOGIN` or `AUTHENTICATE PLAIN|XOAUTH2` (with its initial response) signs in.
fn signed_in_as(words: &[&str]) -> Option<String> {
    use base64::Engine as _;
    let verb = words.get(1)?;
    if verb.eq_ignore_ascii_case("LOGIN") {
        return Some(words.get(2)?.trim_matches('"').to_string());
    }
    if !verb.eq_ignore_ascii_case("AUTHENTICATE") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(words.get(3)?)
        .ok()?;
    let text = String::from_utf8_lossy(&decoded).into_owned();
    if words.get(2)?.eq_ignore_ascii_case("XOAUTH2") {
        return text
            .split('\x01')
            .find_map(|p| p.strip_prefix("user="))
            .map(str::to_owned);
    }
    // PLAIN: authzid NUL authcid NUL password.
    text.split('\0').nth(1).map(str::to_owned)
}

/// Whether an APPEND line's flag list holds a keyword (a flag without a leading `\`):
/// `tag APPEND mailbox (flags) …`, the mailbox an atom or a quoted string.
fn has_keywords(line: &[u8]) -> bool {
    let text = String::from_utf8_lossy(line);
    let mut rest = text.as_ref();
    for _ in 0..2 {
        rest = rest.trim_start();
        rest = rest.split_once(' ').map_or("", |(_, r)| r);
    }
    let rest = rest.trim_start();
    let after_mailbox = match rest.strip_prefix('"') {
        Some(quoted) => {
            let mut escaped = false;
            let end = quoted.char_indices().find(|&(_, c)| {
                let end = c == '"' && !escaped;
                escaped = c == '\\' && !escaped;
                end
            });
            end.map_or("", |(i, _)| &quoted[i + 1..])
        }
        None => rest.split_once(' ').map_or("", |(_, r)| r),
    };
    let Some(flags) = after_mailbox.trim_start().strip_prefix('(') else {
        return false;
    };
    flags
        .split(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .any(|f| !f.starts_with('\\'))
}

/// The size of the body literal a `* n FETCH (… BODY[] {size}` line announces.
fn body_literal(line: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(line).ok()?;
    if !text.starts_with("* ") || !text.to_ascii_uppercase().contains(" FETCH ") {
        return None;
    }
    let (size, plus) = literal_size(line)?;
    let before = text.trim_end().rsplit_once('{')?.0;
    (!plus && before.to_ascii_uppercase().ends_with("BODY[] ")).then_some(size)
}

/// The UID of a `* n FETCH (… UID u …` line.
fn fetch_uid(line: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(line).ok()?.to_ascii_uppercase();
    let rest = &text[text.find("UID ")? + 4..];
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

fn skip_exact(from: &mut impl Read, size: usize) -> bool {
    std::io::copy(&mut from.take(size as u64), &mut std::io::sink()).is_ok_and(|n| n == size as u64)
}

fn contains(line: &[u8], needle: &[u8]) -> bool {
    line.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

/// The tag of a tagged `OK`/`NO`/`BAD` completion.
fn completion_tag(line: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(line).ok()?;
    let mut words = text.split_whitespace();
    let tag = words.next()?;
    let status = words.next()?;
    let is_status = ["OK", "NO", "BAD"]
        .iter()
        .any(|s| s.eq_ignore_ascii_case(status));
    (tag != "*" && tag != "+" && is_status).then(|| tag.to_string())
}

/// Whether a line of a POP3 CAPA answer names a capability in `drop` (its first word).
fn dropped_pop3_capability(line: &[u8], drop: &[String]) -> bool {
    let text = String::from_utf8_lossy(line);
    text.split_whitespace()
        .next()
        .is_some_and(|cap| drop.iter().any(|d| d.eq_ignore_ascii_case(cap)))
}

/// Removes `drop` from a `* CAPABILITY …` line or a `[CAPABILITY …]` response code.
fn filter_capabilities(line: &[u8], drop: &[String]) -> Vec<u8> {
    let Ok(text) = std::str::from_utf8(line) else {
        return line.to_vec();
    };
    let upper = text.to_ascii_uppercase();
    let (start, end) = if let Some(i) = upper.find("[CAPABILITY ") {
        let from = i + "[CAPABILITY ".len();
        match upper[from..].find(']') {
            Some(j) => (from, from + j),
            None => return line.to_vec(),
        }
    } else if upper.starts_with("* CAPABILITY ") {
        ("* CAPABILITY ".len(), text.trim_end().len())
    } else {
        return line.to_vec();
    };
    let kept: Vec<&str> = text[start..end]
        .split_whitespace()
        .filter(|cap| !drop.iter().any(|d| d.eq_ignore_ascii_case(cap)))
        .collect();
    format!("{}{}{}", &text[..start], kept.join(" "), &text[end..]).into_bytes()
}

fn read_line(r: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut line = Vec::new();
    match r.read_until(b'\n', &mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line),
    }
}

fn copy_exact(from: &mut impl Read, to: &mut impl Write, size: usize) -> bool {
    let mut buf = vec![0; size];
    from.read_exact(&mut buf).is_ok() && to.write_all(&buf).is_ok()
}

/// `{123}` or `{123+}` at the end of a line.
fn literal_size(line: &[u8]) -> Option<(usize, bool)> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let inner = line
        .strip_suffix(b"\r")
        .unwrap_or(line)
        .strip_suffix(b"}")?;
    let spec = &inner[inner.iter().rposition(|&b| b == b'{')? + 1..];
    let (digits, plus) = match spec.strip_suffix(b"+") {
        Some(d) => (d, true),
        None => (spec, false),
    };
    std::str::from_utf8(digits)
        .ok()?
        .parse()
        .ok()
        .map(|n| (n, plus))
}
