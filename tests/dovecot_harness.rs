//! The Dovecot harness itself: starts, greets on all four listeners, stops on drop.
mod support;

use std::io::Read;
use std::net::TcpStream;

use support::dovecot::Dovecot;

#[test]
fn starts_greets_and_stops() {
    let d = Dovecot::start();
    let mut buf = [0u8; 64];
    let mut s = TcpStream::connect(("127.0.0.1", d.imap_port)).unwrap();
    let n = s.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"* OK"), "{}", d.logs());
    let mut s = TcpStream::connect(("127.0.0.1", d.pop3_port)).unwrap();
    let n = s.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"+OK"), "{}", d.logs());
    let port = d.imap_port;
    let dir = d.dir().to_path_buf();
    drop(d);
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    assert!(!dir.exists());
}
