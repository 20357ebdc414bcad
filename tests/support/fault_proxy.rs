//! A fault-injecting TCP proxy in front of a real server, for the failure paths a migration
//! meets at real hosts: connections cut in the middle of an APPEND, and throttling replies
//! (`NO [THROTTLED]`, Microsoft's "Request is throttled. Suggested Backoff Time: N
//! milliseconds") instead of a server's answer.
//!
//! It reads client commands line by line (plaintext IMAP: tests connect with `tls: none` and
//! `allow_plaintext`), so it knows where an APPEND and its literal start and end. Faults are
//! scripted by counting APPENDs across all connections:
//! - `cut_every`: every Nth APPEND, forward half its literal, then close both directions;
//! - `throttle_every`: every Nth APPEND, swallow the command and its literal and answer
//!   `<tag> NO [THROTTLED] …` without bothering the server.
//!
//! Literals follow RFC 3501 `{n}` (the proxy forwards the server's `+` continuation) and
//! RFC 7888 LITERAL+ `{n+}` (sent at once).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    pub cut_every: Option<usize>,
    pub throttle_every: Option<usize>,
    /// The backoff the throttling reply suggests, in milliseconds.
    pub suggested_backoff_ms: u64,
}

pub struct FaultProxy {
    pub port: u16,
    appends: Arc<AtomicUsize>,
    cuts: Arc<AtomicUsize>,
    throttles: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `127.0.0.1:upstream`.
    pub fn start(upstream: u16, faults: Faults) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy binds a loopback port");
        let port = listener.local_addr().unwrap().port();
        let proxy = FaultProxy {
            port,
            appends: Arc::default(),
            cuts: Arc::default(),
            throttles: Arc::default(),
            stop: Arc::default(),
        };
        let (appends, cuts, throttles, stop) = (
            proxy.appends.clone(),
            proxy.cuts.clone(),
            proxy.throttles.clone(),
            proxy.stop.clone(),
        );
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
                let (appends, cuts, throttles) = (appends.clone(), cuts.clone(), throttles.clone());
                thread::spawn(move || session(client, server, faults, &appends, &cuts, &throttles));
            }
        });
        proxy
    }

    pub fn appends_seen(&self) -> usize {
        self.appends.load(Ordering::SeqCst)
    }

    pub fn cuts(&self) -> usize {
        self.cuts.load(Ordering::SeqCst)
    }

    pub fn throttles(&self) -> usize {
        self.throttles.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn session(
    client: TcpStream,
    server: TcpStream,
    faults: Faults,
    appends: &AtomicUsize,
    cuts: &AtomicUsize,
    throttles: &AtomicUsize,
) {
    // Server → client: a plain byte pump.
    let (Ok(mut server_read), Ok(mut client_write)) = (server.try_clone(), client.try_clone())
    else {
        return;
    };
    let pump = thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match server_read.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if client_write.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = client_write.shutdown(Shutdown::Both);
    });
    let mut from_client = BufReader::new(client.try_clone().expect("clone client"));
    let mut to_client = client;
    let mut to_server = server;
    loop {
        let mut line = Vec::new();
        match from_client.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line).to_string();
        let mut words = text.split_whitespace();
        let tag = words.next().unwrap_or("*").to_string();
        let is_append = words
            .next()
            .is_some_and(|w| w.eq_ignore_ascii_case("APPEND"));
        let literal = literal_size(&text);
        if is_append {
            let n = appends.fetch_add(1, Ordering::SeqCst) + 1;
            if let (Some(every), Some((size, plus))) = (faults.throttle_every, literal) {
                if n.is_multiple_of(every) {
                    throttles.fetch_add(1, Ordering::SeqCst);
                    if !plus {
                        let _ = to_client.write_all(b"+ Ready for literal data\r\n");
                    }
                    let mut swallowed = vec![0; size + 2];
                    if from_client.read_exact(&mut swallowed).is_err() {
                        break;
                    }
                    let reply = format!("{tag} NO [THROTTLED] Request is throttled. Suggested Backoff Time: {} milliseconds\r\n", faults.suggested_backoff_ms);
                    let _ = to_client.write_all(reply.as_bytes());
                    continue;
                }
            }
            if let (Some(every), Some((size, _))) = (faults.cut_every, literal) {
                if n.is_multiple_of(every) {
                    cuts.fetch_add(1, Ordering::SeqCst);
                    let _ = to_server.write_all(&line);
                    let mut half = vec![0; size / 2];
                    let _ = from_client.read_exact(&mut half);
                    let _ = to_server.write_all(&half);
                    let _ = to_server.shutdown(Shutdown::Both);
                    let _ = to_client.shutdown(Shutdown::Both);
                    break;
                }
            }
        }
        if to_server.write_all(&line).is_err() {
            break;
        }
        // LITERAL+ (and, after the server's `+`, synchronizing literals) follow the line: copy
        // them through as bytes so binary content is never read as lines.
        if let Some((size, _)) = literal {
            let mut body = vec![0; size];
            if from_client.read_exact(&mut body).is_err() || to_server.write_all(&body).is_err() {
                break;
            }
        }
    }
    let _ = to_server.shutdown(Shutdown::Both);
    let _ = pump.join();
}

/// `{123}` or `{123+}` at the end of a command line.
fn literal_size(line: &str) -> Option<(usize, bool)> {
    let trimmed = line.trim_end();
    let inner = trimmed.strip_suffix('}')?;
    let open = inner.rfind('{')?;
    let spec = &inner[open + 1..];
    let (digits, plus) = match spec.strip_suffix('+') {
        Some(d) => (d, true),
        None => (spec, false),
    };
    digits.parse().ok().map(|n| (n, plus))
}
