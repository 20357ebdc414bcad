//! A scripted IMAP server on a loopback port, for what no real server does on purpose: a
//! `* BYE` in the middle of a login, a completion that ends in `{5}`, `BODY[] NIL`. Each test
//! writes its side of the conversation as plain code against a [`Session`]; what the client
//! sent is kept for the test to check.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// The server's side of one connection.
pub struct Session {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    /// Everything the client sent, in order.
    pub received: Arc<Mutex<Vec<u8>>>,
}

impl Session {
    /// The client's next line (with its CRLF), or `None` once it hung up.
    pub fn line(&mut self) -> Option<String> {
        let mut line = Vec::new();
        match self.reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => {
                self.received.lock().unwrap().extend_from_slice(&line);
                Some(String::from_utf8_lossy(&line).into_owned())
            }
        }
    }

    /// The tag and the rest of the client's next command line.
    pub fn command(&mut self) -> Option<(String, String)> {
        let line = self.line()?;
        let line = line.trim_end();
        let (tag, rest) = line.split_once(' ').unwrap_or((line, ""));
        Some((tag.to_owned(), rest.to_owned()))
    }

    /// Exactly `n` bytes the client sends (a literal).
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n];
        self.reader.read_exact(&mut buf).unwrap();
        self.received.lock().unwrap().extend_from_slice(&buf);
        buf
    }

    pub fn send(&mut self, text: &str) {
        let _ = self.writer.write_all(text.as_bytes());
    }

    /// Answers the usual opening: the greeting, then CAPABILITY with `capabilities` and a
    /// LOGIN (or `AUTHENTICATE PLAIN`) with OK, until the client is logged in.
    pub fn open(&mut self, capabilities: &str) {
        self.send("* OK fake IMAP ready\r\n");
        loop {
            let Some((tag, command)) = self.command() else {
                return;
            };
            let verb = command.split(' ').next().unwrap_or("").to_ascii_uppercase();
            match verb.as_str() {
                "CAPABILITY" => {
                    self.send(&format!("* CAPABILITY {capabilities}\r\n{tag} OK done\r\n"))
                }
                "LOGIN" | "AUTHENTICATE" => {
                    self.send(&format!("{tag} OK logged in\r\n"));
                    // The client asks for capabilities once more after the login.
                    if let Some((tag, _)) = self.command() {
                        self.send(&format!("* CAPABILITY {capabilities}\r\n{tag} OK done\r\n"));
                    }
                    return;
                }
                _ => self.send(&format!("{tag} BAD unexpected\r\n")),
            }
        }
    }
}

/// A server accepting one connection and running `script` on it.
pub struct FakeImap {
    pub port: u16,
    pub received: Arc<Mutex<Vec<u8>>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeImap {
    pub fn start(script: impl FnOnce(&mut Session) + Send + 'static) -> FakeImap {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let seen = received.clone();
        let thread = std::thread::spawn(move || {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            let mut session = Session {
                reader: BufReader::new(stream.try_clone().unwrap()),
                writer: stream,
                received: seen,
            };
            script(&mut session);
        });
        FakeImap {
            port,
            received,
            thread: Some(thread),
        }
    }

    /// What the client sent, as text.
    pub fn received(&self) -> String {
        String::from_utf8_lossy(&self.received.lock().unwrap()).into_owned()
    }

    /// Waits for the script to end (it panics in the test thread if the script did).
    pub fn finish(mut self) {
        if let Some(t) = self.thread.take() {
            t.join().expect("the fake server's script failed");
        }
    }
}
