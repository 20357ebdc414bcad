//! The IMAP client through the fault-injecting proxy, in front of a real Dovecot: a
//! connection cut mid-APPEND surfaces as a transient error, and a throttling reply as
//! `Throttled` carrying the suggested backoff. With capabilities hidden by the proxy, each
//! way `append_all` stores a batch (MULTIAPPEND, pipelined APPENDs with LITERAL+,
//! synchronizing literals) lands every message once, in order, and a refused message fails
//! alone.
mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cutover::connectors::imap::ImapClient;
use cutover::connectors::mail::{Flag, Flags, RawMessage};
use cutover::connectors::net::{Credentials, Endpoint, NetError};
use cutover::plan::model::Tls;
use support::dovecot::{Dovecot, User};
use support::fault_proxy::{microsoft_throttle, FaultProxy, Faults};

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
            throttle_replies: vec![microsoft_throttle(75)],
            ..Faults::default()
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

/// How `append_all` sends a batch, chosen by what the server (as the proxy shows it) offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AppendPath {
    Multiappend,
    Pipelined,
    Synchronizing,
}

const PATHS: [AppendPath; 3] = [
    AppendPath::Multiappend,
    AppendPath::Pipelined,
    AppendPath::Synchronizing,
];

impl AppendPath {
    fn hidden(self) -> Vec<String> {
        let names: &[&str] = match self {
            AppendPath::Multiappend => &[],
            AppendPath::Pipelined => &["MULTIAPPEND"],
            AppendPath::Synchronizing => &["MULTIAPPEND", "LITERAL+", "LITERAL-"],
        };
        names.iter().map(|s| s.to_string()).collect()
    }
}

/// A message of `size` bytes with flags and an internal date of its own.
fn varied(n: usize, size: usize) -> RawMessage {
    let mut b = format!("From: a@x\r\nSubject: {n}\r\nMessage-ID: <{n}@paths>\r\n\r\n");
    while b.len() < size {
        b.push_str("body line\r\n");
    }
    let flags = match n % 3 {
        0 => Flags::new().with(Flag::Seen),
        1 => Flags::new().with(Flag::Flagged).with_keyword("$Label1"),
        _ => Flags::new(),
    };
    RawMessage::new(b.into_bytes())
        .with_flags(flags)
        .with_internal_date(Some(
            UNIX_EPOCH + Duration::from_secs(1_600_000_000 + n as u64 * 3600),
        ))
}

/// Logs in through a proxy that hides `path`'s capabilities, and checks they are hidden.
async fn connect_for(path: AppendPath, proxy: &FaultProxy, user: &User) -> ImapClient {
    let endpoint = Endpoint::new("127.0.0.1", proxy.port, Tls::None).allowing_plaintext();
    let client = ImapClient::connect(
        &endpoint,
        &Credentials::password(&user.login, &user.password),
    )
    .await
    .expect("login through the proxy");
    let has = |c: &str| client.has_capability(c);
    let offered = (has("MULTIAPPEND"), has("LITERAL+") || has("LITERAL-"));
    let want = match path {
        AppendPath::Multiappend => (true, true),
        AppendPath::Pipelined => (false, true),
        AppendPath::Synchronizing => (false, false),
    };
    assert_eq!(offered, want, "{path:?}: {:?}", client.capabilities());
    client
}

/// INBOX as (bytes, flags, internal date), in UID order.
async fn inbox(client: &mut ImapClient) -> Vec<(Vec<u8>, Flags, Option<SystemTime>)> {
    client.examine("INBOX").await.unwrap();
    let mut out = Vec::new();
    let mut f = client.uid_fetch("1:*").await.unwrap();
    while let Some(m) = f.next().await.unwrap() {
        let m = m.message;
        out.push((m.bytes().to_vec(), m.flags.clone(), m.internal_date));
    }
    out
}

fn expected(messages: &[RawMessage]) -> Vec<(Vec<u8>, Flags, Option<SystemTime>)> {
    messages
        .iter()
        .map(|m| (m.bytes().to_vec(), m.flags.clone(), m.internal_date))
        .collect()
}

#[tokio::test]
async fn append_all_lands_a_batch_once_and_in_order_on_every_path() {
    let dovecot = Dovecot::shared();
    for path in PATHS {
        let user = dovecot.add_user("paths");
        let proxy = FaultProxy::start(
            dovecot.imap_port,
            Faults {
                drop_capabilities: path.hidden(),
                ..Faults::default()
            },
        );
        let mut client = connect_for(path, &proxy, &user).await;
        // More than APPEND_WINDOW, so the pipelined path has to refill its window.
        let messages: Vec<RawMessage> = (0..40).map(|n| varied(n, 300 + n * 97)).collect();
        let refs: Vec<&RawMessage> = messages.iter().collect();
        let results = client.append_all("INBOX", &refs).await.expect("sent");
        assert_eq!(results.len(), messages.len(), "{path:?}: one result each");
        let uids: Vec<u32> = results
            .into_iter()
            .map(|r| r.expect("acknowledged").map_or(0, |u| u.uid))
            .collect();
        if path == AppendPath::Multiappend {
            assert_eq!(proxy.appends_seen(), 1, "one MULTIAPPEND command");
        } else {
            assert_eq!(proxy.appends_seen(), 40, "{path:?}: one APPEND each");
            assert!(
                uids.windows(2).all(|w| w[0] < w[1]),
                "{path:?}: APPENDUIDs in order: {uids:?}"
            );
        }
        assert!(inbox(&mut client).await == expected(&messages), "{path:?}");
        client.logout().await.unwrap();
    }
}

#[tokio::test]
async fn a_refused_message_fails_alone_on_every_path() {
    let dovecot = Dovecot::shared();
    for path in PATHS {
        let user = dovecot.add_user("refused");
        let proxy = FaultProxy::start(
            dovecot.imap_port,
            Faults {
                drop_capabilities: path.hidden(),
                refuse_larger_than: Some(5_000),
                ..Faults::default()
            },
        );
        let mut client = connect_for(path, &proxy, &user).await;
        let mut messages: Vec<RawMessage> = (0..10).map(|n| varied(n, 400)).collect();
        messages[4] = varied(4, 8_000);
        let refs: Vec<&RawMessage> = messages.iter().collect();
        let results = client.append_all("INBOX", &refs).await.expect("sent");
        assert_eq!(results.len(), 10, "{path:?}: one result each");
        for (i, r) in results.iter().enumerate() {
            match (i, r) {
                (4, Err(NetError::Rejected { text, .. })) => assert!(text.contains("TOOBIG")),
                (4, other) => panic!("{path:?}: the large message was refused: {other:?}"),
                (_, r) => assert!(r.is_ok(), "{path:?}: message {i}: {r:?}"),
            }
        }
        let counts = proxy.counts();
        if path == AppendPath::Multiappend {
            // The atomic MULTIAPPEND is refused whole, then sent again message by message.
            assert_eq!((counts.appends, counts.refusals), (11, 2), "{counts:?}");
        } else {
            assert_eq!((counts.appends, counts.refusals), (10, 1), "{counts:?}");
        }
        let mut landed = messages.clone();
        landed.remove(4);
        assert!(inbox(&mut client).await == expected(&landed), "{path:?}");
        client.logout().await.unwrap();
    }
}

/// A server may complete pipelined commands out of order (RFC 3501 §5.5). With completions
/// swapped by the proxy, every APPEND of a pipelined batch still gets its own result, in the
/// order sent, and nothing waits for a completion that already came.
#[tokio::test]
async fn pipelined_appends_completed_out_of_order_each_get_their_own_result() {
    let dovecot = Dovecot::shared();
    let user = dovecot.add_user("reorder");
    let proxy = FaultProxy::start(
        dovecot.imap_port,
        Faults {
            drop_capabilities: AppendPath::Pipelined.hidden(),
            reorder_appends: true,
            ..Faults::default()
        },
    );
    let mut client = connect_for(AppendPath::Pipelined, &proxy, &user).await;
    let messages: Vec<RawMessage> = (0..30).map(|n| varied(n, 300 + n * 50)).collect();
    let refs: Vec<&RawMessage> = messages.iter().collect();
    let results = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        client.append_all("INBOX", &refs),
    )
    .await
    .expect("no completion is waited for twice")
    .expect("sent");
    let uids: Vec<u32> = results
        .into_iter()
        .map(|r| r.expect("acknowledged").expect("APPENDUID").uid)
        .collect();
    assert_eq!(uids.len(), 30);
    assert!(
        uids.windows(2).all(|w| w[0] < w[1]),
        "each result is its own message's: {uids:?}"
    );
    assert!(proxy.counts().reordered >= 5, "{:?}", proxy.counts());
    assert!(inbox(&mut client).await == expected(&messages));
    client.logout().await.unwrap();
}
