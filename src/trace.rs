//! The protocol trace for support: `cutover apply --trace FILE` writes every IMAP, POP3 and
//! HTTP command cutover sends and every response line it reads, one per line, with a
//! timestamp and the connection it belongs to:
//!
//! ```text
//! 2026-03-01T14:05:09.120Z #3 alice@acme.co.uk at imap.ionos.co.uk:993 >> C4 UID FETCH 1:64 (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])
//! 2026-03-01T14:05:09.310Z #3 alice@acme.co.uk at imap.ionos.co.uk:993 << * 1 FETCH (UID 1 FLAGS (\Seen) RFC822.SIZE 2048 BODY[] {2048}
//! 2026-03-01T14:05:09.311Z #3 alice@acme.co.uk at imap.ionos.co.uk:993 << [2048 bytes of literal]
//! ```
//!
//! What it never holds: message content (IMAP literals and POP3 `RETR`/`TOP` answers appear
//! as their size only), passwords and tokens (the protocol code hands over the line with the
//! secret replaced by `<redacted>`: LOGIN, AUTHENTICATE's initial response, POP3 PASS and
//! AUTH, the token request's form), and every line also goes through [`crate::redact`] (SAS
//! signatures, `Bearer`, `password=`…) before it is written.
//!
//! One trace per process at a time ([`start`]); the protocol code calls [`record`], which costs
//! an atomic load when no trace runs.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

static ON: AtomicBool = AtomicBool::new(false);
static SINK: Mutex<Option<BufWriter<File>>> = Mutex::new(None);
static CONNECTIONS: AtomicU64 = AtomicU64::new(0);

/// Longest line written; longer ones (a 1 MiB CAPABILITY line) are cut, marked.
const MAX_LINE: usize = 2000;

/// A running trace: written until dropped (then flushed and closed).
#[derive(Debug)]
pub struct Trace(());

/// Starts writing the trace to `path` (created `0600`, replaced if it exists). Fails when a
/// trace is already running in this process.
pub fn start(path: &Path) -> io::Result<Trace> {
    let mut sink = SINK.lock().unwrap_or_else(PoisonError::into_inner);
    if sink.is_some() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "a trace is already running",
        ));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::files::create_dir_all(dir)?;
    }
    let file = crate::files::options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    *sink = Some(BufWriter::new(file));
    ON.store(true, Ordering::SeqCst);
    Ok(Trace(()))
}

impl Drop for Trace {
    fn drop(&mut self) {
        ON.store(false, Ordering::SeqCst);
        let mut sink = SINK.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(mut w) = sink.take() {
            let _ = w.flush();
        }
    }
}

/// Whether a trace is running (so callers can skip building what they would record).
pub fn enabled() -> bool {
    ON.load(Ordering::Relaxed)
}

/// A number for a new connection, so lines of parallel connections can be told apart.
pub fn connection_number() -> u64 {
    CONNECTIONS.fetch_add(1, Ordering::Relaxed) + 1
}

/// Which way a line went.
#[derive(Debug, Clone, Copy)]
pub enum Direction {
    /// Sent by cutover.
    Sent,
    /// Received from the server.
    Received,
}

/// Writes one line of the trace, if one is running: `who` names the connection, `text` is the
/// line as sent or received (line ending dropped; secrets already replaced by the caller).
pub fn record(who: &str, direction: Direction, text: &str) {
    if !enabled() {
        return;
    }
    let arrow = match direction {
        Direction::Sent => ">>",
        Direction::Received => "<<",
    };
    let mut text: String = text
        .trim_end_matches(['\r', '\n'])
        .chars()
        .map(|c| if c.is_control() { '.' } else { c })
        .collect();
    if text.len() > MAX_LINE {
        let mut cut = MAX_LINE;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str(" […]");
    }
    let line = format!(
        "{} {who} {arrow} {}\n",
        timestamp(),
        crate::redact::redact(&text)
    );
    let mut sink = SINK.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(w) = sink.as_mut() {
        let _ = w.write_all(line.as_bytes());
    }
}

/// Now as RFC 3339 UTC with milliseconds.
fn timestamp() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let seconds = crate::time::rfc3339_utc(now.as_secs() as i64);
    format!(
        "{}.{:03}Z",
        seconds.trim_end_matches('Z'),
        now.subsec_millis()
    )
}
