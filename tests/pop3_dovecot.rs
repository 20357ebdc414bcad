//! The POP3 client against a real Dovecot: exact bytes, UIDL, STLS, implicit TLS, XOAUTH2.
mod support;

use cutover::connectors::net::{Credentials, Endpoint, NetError};
use cutover::connectors::pop3::Pop3Client;
use cutover::plan::model::Tls;
use support::dovecot::{Dovecot, User};

/// Lines that need dot-stuffing, a lone dot line, a line of dots, and a final CRLF.
const TRICKY: &[u8] = b"From: a@example.test\r\nSubject: dots\r\nMessage-ID: <dots@x>\r\n\r\n.leading dot\r\n.\r\n..\r\n...three\r\nlast line\r\n";
const PLAIN: &[u8] = b"From: b@example.test\r\nSubject: second\r\n\r\nbody\r\n\r\n";

fn seeded(d: &Dovecot) -> User {
    let u = d.add_user("pop");
    d.deliver(&u, "1700000000.M1P1.test", TRICKY);
    d.deliver(&u, "1700000001.M2P1.test", PLAIN);
    u
}

fn creds(u: &User) -> Credentials {
    Credentials::password(&u.login, &u.password)
}

#[tokio::test]
async fn retr_returns_exact_bytes_over_starttls() {
    let d = Dovecot::shared();
    let u = seeded(&d);
    let ep = Endpoint::new("127.0.0.1", d.pop3_port, Tls::Starttls).with_ca_file(d.ca_file());
    let mut c = Pop3Client::connect(&ep, &creds(&u))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", d.logs()));
    assert!(c.has_capability("UIDL"));
    let msgs = c.messages().await.unwrap();
    assert_eq!(msgs.len(), 2);
    let mut got = Vec::new();
    for m in &msgs {
        let bytes = c.retr(m.number).await.unwrap();
        assert_eq!(bytes.len() as u64, m.size);
        got.push(bytes);
    }
    got.sort();
    let mut want = vec![TRICKY.to_vec(), PLAIN.to_vec()];
    want.sort();
    assert_eq!(got, want);
    let top = c.top(msgs[0].number, 0).await.unwrap();
    assert!(top.ends_with(b"\r\n\r\n"), "{top:?}");
    c.quit().await.unwrap();
}

#[tokio::test]
async fn uidl_is_stable_and_dele_removes_at_quit() {
    let d = Dovecot::shared();
    let u = seeded(&d);
    let ep = Endpoint::new("127.0.0.1", d.pop3s_port, Tls::Implicit).with_ca_file(d.ca_file());
    let mut c = Pop3Client::connect(&ep, &creds(&u)).await.unwrap();
    let first = c.messages().await.unwrap();
    assert_eq!(c.stat().await.unwrap().0, 2);
    c.quit().await.unwrap();

    let mut c = Pop3Client::connect(&ep, &creds(&u)).await.unwrap();
    let again = c.messages().await.unwrap();
    assert_eq!(first, again);
    let gone = again[0].clone();
    c.dele(gone.number).await.unwrap();
    c.quit().await.unwrap();

    let mut c = Pop3Client::connect(&ep, &creds(&u)).await.unwrap();
    let left = c.messages().await.unwrap();
    assert_eq!(left.len(), 1);
    assert_ne!(left[0].uid, gone.uid);
    c.quit().await.unwrap();
}

#[tokio::test]
async fn xoauth2_and_plaintext_opt_in() {
    let d = Dovecot::shared();
    let u = seeded(&d);
    // Dovecot checks the XOAUTH2 token against the passdb, where it is the password.
    let ep = Endpoint::new("127.0.0.1", d.pop3_port, Tls::None).allowing_plaintext();
    let mut c = Pop3Client::connect(&ep, &Credentials::xoauth2(&u.login, &u.password))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", d.logs()));
    assert_eq!(c.stat().await.unwrap().0, 2);
    c.quit().await.unwrap();

    let err = Pop3Client::connect(&ep, &Credentials::xoauth2(&u.login, "expired-token"))
        .await
        .unwrap_err();
    assert!(matches!(err, NetError::Auth { .. }), "{err}");
    assert!(!err.to_string().contains("expired-token"), "{err}");
}

#[tokio::test]
async fn wrong_password_and_untrusted_certificate() {
    let d = Dovecot::shared();
    let u = seeded(&d);
    let ep = Endpoint::new("127.0.0.1", d.pop3s_port, Tls::Implicit).with_ca_file(d.ca_file());
    let err = Pop3Client::connect(&ep, &Credentials::password(&u.login, "wrong-horse"))
        .await
        .unwrap_err();
    assert!(matches!(err, NetError::Auth { .. }), "{err}");
    assert!(err.to_string().contains(&u.login));
    assert!(!err.to_string().contains("wrong-horse"));

    // Without the private CA the certificate is not trusted.
    let ep = Endpoint::new("127.0.0.1", d.pop3s_port, Tls::Implicit);
    let err = Pop3Client::connect(&ep, &creds(&u)).await.unwrap_err();
    assert!(matches!(err, NetError::Tls { .. }), "{err}");
}
