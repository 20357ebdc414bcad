//! The IMAP client through the fault-injecting proxy, in front of a real Dovecot: a
//! connection cut mid-APPEND surfaces as a transient error, and a throttling reply as
//! `Throttled` carrying the suggested backoff.
mod support;

use std::time::Duration;

use cutover::connectors::imap::ImapClient;
use cutover::connectors::mail::RawMessage;
use cutover::connectors::net::{Credentials, Endpoint, NetError};
use cutover::plan::model::Tls;
use support::dovecot::Dovecot;
use support::fault_proxy::{FaultProxy, Faults};

fn message(n: usize) -> RawMessage {
    RawMessage::new(
        format!(
            "From: a@x\r\nSubject: {n}\r\nMessage-ID: <{n}@faults>\r\n\r\n{}\r\n",
            "body line\r\n".repeat(200)
        )
        .into_bytes(),
    )
}

#[tokio::test]
async fn throttling_and_cuts_reach_the_caller_as_typed_errors() {
    let dovecot = Dovecot::shared();
    let user = dovecot.add_user("faults");
    let proxy = FaultProxy::start(
        dovecot.imap_port,
        Faults {
            throttle_every: Some(2),
            cut_every: Some(5),
            suggested_backoff_ms: 75,
        },
    );
    let endpoint = Endpoint::new("127.0.0.1", proxy.port, Tls::None).allowing_plaintext();
    let credentials = Credentials::password(&user.login, &user.password);

    let mut client = ImapClient::connect(&endpoint, &credentials)
        .await
        .expect("login through the proxy");
    client
        .append("INBOX", &message(1))
        .await
        .expect("first APPEND passes");
    match client.append("INBOX", &message(2)).await {
        Err(NetError::Throttled { retry_after, .. }) => {
            assert_eq!(retry_after, Some(Duration::from_millis(75)))
        }
        other => panic!("expected a throttling error, got {other:?}"),
    }
    client
        .append("INBOX", &message(3))
        .await
        .expect("third APPEND passes");
    let throttled = client.append("INBOX", &message(4)).await.unwrap_err();
    assert!(throttled.is_transient());
    let cut = client.append("INBOX", &message(5)).await.unwrap_err();
    assert!(
        cut.is_transient(),
        "a cut connection is worth a retry: {cut}"
    );
    assert!(!cut.to_string().contains(&user.password));
    assert_eq!((proxy.throttles(), proxy.cuts()), (2, 1));

    // Reconnect: the server has exactly the messages it acknowledged.
    let mut again = ImapClient::connect(&endpoint, &credentials)
        .await
        .expect("reconnect");
    let inbox = again.examine("INBOX").await.unwrap();
    assert_eq!(inbox.exists, 2, "messages 1 and 3 only");
    again.logout().await.unwrap();
}
