//! The IMAP client against a real Dovecot: a byte-identical copy between two users with flags
//! and INTERNALDATE, APPENDUID, SPECIAL-USE, a non-ASCII folder name, TLS modes and auth.
mod support;

use std::time::{Duration, UNIX_EPOCH};

use cutover::connectors::imap::ImapClient;
use cutover::connectors::mail::{utf7, Flag, Flags, RawMessage};
use cutover::connectors::net::{Credentials, Endpoint, NetError};
use cutover::plan::model::Tls;
use support::dovecot::{Dovecot, User};

fn creds(u: &User) -> Credentials {
    Credentials::password(&u.login, &u.password)
}

fn imaps(d: &Dovecot) -> Endpoint {
    Endpoint::new("127.0.0.1", d.imaps_port, Tls::Implicit).with_ca_file(d.ca_file())
}

fn corpus() -> Vec<RawMessage> {
    let at = |s: u64| Some(UNIX_EPOCH + Duration::from_secs(s));
    vec![
        RawMessage::new(
            b"From: a@x\r\nSubject: one\r\nMessage-ID: <1@x>\r\n\r\nhello\r\n".to_vec(),
        )
        .with_flags(Flags::new().with(Flag::Seen).with_keyword("$Forwarded"))
        .with_internal_date(at(1_500_000_000)),
        RawMessage::new(
            b"From: b@x\r\nSubject: two\r\n\r\n.dot\r\n)(\r\n{5}\r\nno final newline".to_vec(),
        )
        .with_flags(Flags::new().with(Flag::Flagged).with(Flag::Answered))
        .with_internal_date(at(1_600_000_000)),
        RawMessage::new(b"Subject: three\r\n\r\n\xff\xfe binary-ish \x7f bytes\r\n".to_vec())
            .with_internal_date(at(1_700_000_000)),
    ]
}

#[tokio::test]
async fn copy_between_users_is_exact() {
    let d = Dovecot::shared();
    let (src_user, dst_user) = (d.add_user("src"), d.add_user("dst"));
    let folder = utf7::encode("Entwürfe & Ärger");

    // Seed the source.
    let mut src = ImapClient::connect(&imaps(&d), &creds(&src_user))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", d.logs()));
    assert!(src.has_capability("UIDPLUS"), "{:?}", src.capabilities());
    src.create(&folder).await.unwrap();
    src.create(&folder).await.unwrap(); // idempotent
    let mut seeded = Vec::new();
    for m in corpus() {
        let uid = src.append(&folder, &m).await.unwrap().expect("APPENDUID");
        seeded.push(uid);
    }
    assert!(seeded.windows(2).all(|w| w[0].uid < w[1].uid));

    // Copy every folder with mail to the target, as a migration would.
    let mut dst = ImapClient::connect(&imaps(&d), &creds(&dst_user))
        .await
        .unwrap();
    let boxes = src.list().await.unwrap();
    let listed = boxes
        .iter()
        .find(|b| b.name == folder)
        .expect("folder listed");
    assert_eq!(utf7::decode(&listed.name).unwrap(), "Entwürfe & Ärger");
    let st = src.examine(&folder).await.unwrap();
    assert_eq!(st.exists, 3);
    assert_eq!(st.uid_validity, Some(seeded[0].uid_validity));
    assert!(st.uid_next.unwrap() > seeded[2].uid);

    let mut fetched = Vec::new();
    {
        let mut f = src.uid_fetch("1:*").await.unwrap();
        while let Some(m) = f.next().await.unwrap() {
            fetched.push(m);
        }
    }
    assert_eq!(fetched.len(), 3);
    dst.create(&folder).await.unwrap();
    let dst_st = dst.select(&folder).await.unwrap();
    for m in &fetched {
        assert_eq!(m.size, Some(m.message.len() as u64));
        let uid = dst
            .append(&folder, &m.message)
            .await
            .unwrap()
            .expect("APPENDUID");
        assert_eq!(Some(uid.uid_validity), dst_st.uid_validity);
    }

    // The target holds the same bytes, flags and dates as the corpus.
    dst.examine(&folder).await.unwrap();
    let mut copied = Vec::new();
    {
        let mut f = dst.uid_fetch("1:*").await.unwrap();
        while let Some(m) = f.next().await.unwrap() {
            copied.push(m.message);
        }
    }
    assert_eq!(copied, corpus());

    // A non-ASCII name round-trips through the target's LIST too.
    let names: Vec<String> = dst
        .list()
        .await
        .unwrap()
        .into_iter()
        .filter_map(|b| utf7::decode(&b.name).ok())
        .collect();
    assert!(names.contains(&"Entwürfe & Ärger".to_string()), "{names:?}");
    src.logout().await.unwrap();
    dst.logout().await.unwrap();
}

#[tokio::test]
async fn special_use_starttls_and_xoauth2() {
    let d = Dovecot::shared();
    let u = d.add_user("su");
    let ep = Endpoint::new("127.0.0.1", d.imap_port, Tls::Starttls).with_ca_file(d.ca_file());
    let mut c = ImapClient::connect(&ep, &Credentials::xoauth2(&u.login, &u.password))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", d.logs()));
    c.create("Sent").await.unwrap();
    c.create("Junk").await.unwrap();
    let boxes = c.list().await.unwrap();
    let sent = boxes.iter().find(|b| b.name == "Sent").unwrap();
    assert!(sent.has_attribute("\\Sent"), "{boxes:?}");
    assert!(boxes.iter().any(|b| b.name == "INBOX" && b.is_selectable()));
    assert_eq!(sent.delimiter, Some('.'));
    let st = c.examine("INBOX").await.unwrap();
    assert_eq!(st.exists, 0);
    {
        let mut f = c.uid_fetch("1:*").await.unwrap();
        assert!(f.next().await.unwrap().is_none());
    }
    let err = c.examine("Does-Not-Exist").await.unwrap_err();
    assert!(matches!(err, NetError::Rejected { .. }), "{err}");
    assert!(err.to_string().contains(&u.login), "{err}");
    c.logout().await.unwrap();
}

#[tokio::test]
async fn bad_credentials_plaintext_and_untrusted_ca() {
    let d = Dovecot::shared();
    let u = d.add_user("bad");
    let err = ImapClient::connect(&imaps(&d), &Credentials::password(&u.login, "nope-secret"))
        .await
        .unwrap_err();
    assert!(matches!(err, NetError::Auth { .. }), "{err}");
    assert!(!err.to_string().contains("nope-secret"));
    let err = ImapClient::connect(&imaps(&d), &Credentials::xoauth2(&u.login, "bad-token"))
        .await
        .unwrap_err();
    assert!(matches!(err, NetError::Auth { .. }), "{err}");

    let plain = Endpoint::new("127.0.0.1", d.imap_port, Tls::None);
    let err = ImapClient::connect(&plain, &creds(&u)).await.unwrap_err();
    assert!(matches!(err, NetError::PlaintextRefused { .. }));
    let c = ImapClient::connect(&plain.allowing_plaintext(), &creds(&u))
        .await
        .unwrap();
    c.logout().await.unwrap();

    let untrusted = Endpoint::new("127.0.0.1", d.imaps_port, Tls::Implicit);
    let err = ImapClient::connect(&untrusted, &creds(&u))
        .await
        .unwrap_err();
    assert!(matches!(err, NetError::Tls { .. }), "{err}");
}
