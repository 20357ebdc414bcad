//! An HTTP/1.1 proxy in front of a real blob service (Azurite), for the failure paths of an
//! upload on a poor line, and to count what the uploader really sends.
//!
//! Each request is read (head, then `Content-Length` body bytes) and either forwarded — with
//! `Connection: close`, so the proxy sees every request on a fresh connection — or answered
//! by a scripted fault instead. Faults apply to Put Block requests (`comp=block`), in script
//! order across all connections:
//! - [`Fault::Reply`]: the body is read and dropped, and the service's error answer is given
//!   (`503 ServerBusy`, `500 InternalError`, `408`, `429` with `Retry-After` …, with the
//!   storage error XML body and `x-ms-error-code`, as Azure sends them);
//! - [`Fault::Stall`]: nothing is answered and nothing more is read; the connection is held
//!   until the client gives up on it;
//! - [`Fault::Cut`]: half the body is read, then the connection is closed.
//!
//! `block_bytes` counts the Put Block body bytes that reached the proxy, forwarded or not: on
//! loopback that is what the client sent.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    Reply {
        status: u16,
        code: &'static str,
        retry_after: Option<u32>,
    },
    Stall,
    Cut,
}

impl Fault {
    pub fn server_busy() -> Fault {
        Fault::Reply {
            status: 503,
            code: "ServerBusy",
            retry_after: None,
        }
    }
}

pub struct HttpProxy {
    pub port: u16,
    faults: Arc<Mutex<VecDeque<Fault>>>,
    /// Put Block body bytes received from the client.
    pub block_bytes: Arc<AtomicU64>,
    /// Put Block requests seen (faulted or not).
    pub block_requests: Arc<AtomicU64>,
}

impl HttpProxy {
    pub fn start(upstream_port: u16) -> HttpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().unwrap().port();
        let faults: Arc<Mutex<VecDeque<Fault>>> = Arc::default();
        let block_bytes = Arc::new(AtomicU64::new(0));
        let block_requests = Arc::new(AtomicU64::new(0));
        let (f, b, r) = (faults.clone(), block_bytes.clone(), block_requests.clone());
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (f, b, r) = (f.clone(), b.clone(), r.clone());
                thread::spawn(move || {
                    let _ = serve(client, upstream_port, &f, &b, &r);
                });
            }
        });
        HttpProxy {
            port,
            faults,
            block_bytes,
            block_requests,
        }
    }

    /// Queues faults for the next Put Block requests.
    pub fn script(&self, faults: impl IntoIterator<Item = Fault>) {
        self.faults.lock().unwrap().extend(faults);
    }

    pub fn faults_left(&self) -> usize {
        self.faults.lock().unwrap().len()
    }

    /// A SAS URL through this proxy instead of straight to the service.
    pub fn rewrite(&self, sas_url: &str, upstream_port: u16) -> String {
        sas_url.replacen(
            &format!("127.0.0.1:{upstream_port}"),
            &format!("127.0.0.1:{}", self.port),
            1,
        )
    }
}

fn serve(
    mut client: TcpStream,
    upstream_port: u16,
    faults: &Mutex<VecDeque<Fault>>,
    block_bytes: &AtomicU64,
    block_requests: &AtomicU64,
) -> std::io::Result<()> {
    let head = read_head(&mut client)?;
    let text = String::from_utf8_lossy(&head).into_owned();
    let request_line = text.lines().next().unwrap_or_default().to_string();
    let length: usize = text
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let is_block = request_line.starts_with("PUT ") && request_line.contains("comp=block&");
    let fault = if is_block {
        block_requests.fetch_add(1, Ordering::SeqCst);
        faults.lock().unwrap().pop_front()
    } else {
        None
    };
    let counter = is_block.then_some(block_bytes);
    match fault {
        Some(Fault::Reply {
            status,
            code,
            retry_after,
        }) => {
            copy_body(&mut client, None, length, counter)?;
            let body = format!(
                "\u{feff}<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>{code}</Code><Message>Injected by the test proxy.\nRequestId:00000000-0000-0000-0000-000000000000\nTime:2024-01-01T00:00:00.0000000Z</Message></Error>"
            );
            let retry = retry_after
                .map(|s| format!("Retry-After: {s}\r\n"))
                .unwrap_or_default();
            let response = format!(
                "HTTP/1.1 {status} Injected\r\nContent-Type: application/xml\r\nx-ms-error-code: {code}\r\n{retry}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            client.write_all(response.as_bytes())?;
            client.shutdown(Shutdown::Both)
        }
        Some(Fault::Stall) => {
            // Hold the connection without reading or answering until the client drops it.
            client.set_read_timeout(Some(Duration::from_secs(60)))?;
            thread::sleep(Duration::from_secs(60));
            Ok(())
        }
        Some(Fault::Cut) => {
            copy_body(&mut client, None, length / 2, counter)?;
            client.shutdown(Shutdown::Both)
        }
        None => {
            let mut upstream = TcpStream::connect(("127.0.0.1", upstream_port))?;
            upstream.write_all(&with_connection_close(&text))?;
            copy_body(&mut client, Some(&mut upstream), length, counter)?;
            let mut response = upstream.try_clone()?;
            std::io::copy(&mut response, &mut client)?;
            client.shutdown(Shutdown::Both)
        }
    }
}

fn read_head(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.push(byte[0]);
    }
    Ok(head)
}

fn with_connection_close(head: &str) -> Vec<u8> {
    let mut out = String::new();
    for line in head.split("\r\n").filter(|l| !l.is_empty()) {
        if line
            .split_once(':')
            .is_some_and(|(k, _)| k.trim().eq_ignore_ascii_case("connection"))
        {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    out.into_bytes()
}

fn copy_body(
    from: &mut TcpStream,
    mut to: Option<&mut TcpStream>,
    mut left: usize,
    counter: Option<&AtomicU64>,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    while left > 0 {
        let n = from.read(&mut buf[..left.min(64 * 1024)])?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if let Some(c) = counter {
            c.fetch_add(n as u64, Ordering::SeqCst);
        }
        if let Some(to) = to.as_deref_mut() {
            to.write_all(&buf[..n])?;
        }
        left -= n;
    }
    Ok(())
}
