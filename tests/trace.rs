//! `cutover apply --trace FILE`: the protocol trace has the commands and responses of every
//! IMAP, POP3 and HTTP exchange with timestamps, and none of the secrets the run used — the
//! source passwords, the app's client secret, the access token, in clear or inside a SASL
//! response — nor any message content.
mod support;

use std::process::Command;

use base64::Engine;
use support::dovecot::Dovecot;
use support::graph_fake::{FakeSku, FakeTenant, GraphFake};
use support::remote::{message, seed};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_holds_the_protocol_and_no_secret() {
    let d = Dovecot::shared();
    let (imap_user, pop_user, mailbox) = (
        d.add_user("trace-imap"),
        d.add_user("trace-pop"),
        d.add_user("trace-m365"),
    );
    let marker = "BODY-MARKER-8c1f-never-traced";
    let with_body = |n: usize| {
        let m = message(n, true, 300);
        let text = String::from_utf8_lossy(m.bytes())
            .replace("\r\n\r\n", &format!("\r\n\r\n{marker}\r\n"));
        cutover::connectors::mail::RawMessage::new(text.into_bytes())
    };
    seed(
        &d,
        &imap_user,
        &vec![("INBOX".into(), vec![with_body(9100), with_body(9101)])],
    )
    .await;
    d.deliver(&pop_user, "pop-1", with_body(9102).bytes());
    // Dovecot takes a mailbox's password as its XOAUTH2 token: the fake tenant issues it for
    // the IMAP scope, and answers Graph for the `user.*` step.
    let token = mailbox.password.clone();
    let client_secret = "client-secret-value-4d2e";
    let mut tenant = FakeTenant::new(&["example.test"]);
    tenant.client_secret = client_secret.into();
    tenant.skus = vec![FakeSku::new("EXCHANGESTANDARD", 5, 0)];
    tenant
        .scope_tokens
        .insert("https://127.0.0.1/.default".into(), token.clone());
    let fake = GraphFake::start(tenant);
    let local = mailbox.login.split('@').next().unwrap();
    fake.add_user(&mailbox.login, local, &["EXCHANGESTANDARD"]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.secret"), client_secret).unwrap();
    std::fs::write(dir.path().join("pop.pw"), &pop_user.password).unwrap();
    let ca = d.ca_file();
    let plan = format!(
        r#"version: 1
name: trace
domain: example.test
target:
  kind: m365
  tenant: contoso.onmicrosoft.com
  auth:
    client_id: 11111111-2222-3333-4444-555555555555
    client_secret: {{ file: app.secret }}
    token_endpoint: {token_url}
  graph: {{ endpoint: "{graph}" }}
  imap: {{ host: 127.0.0.1, port: {imaps}, ca_file: {ca} }}
sources:
  old-imap: {{ kind: imap, host: 127.0.0.1, port: {imaps}, ca_file: {ca} }}
  old-pop: {{ kind: pop3, host: 127.0.0.1, port: {pop3s}, ca_file: {ca} }}
users:
  - email: {email}
    migrate:
      - {{ from: old-imap, login: {imap_login}, password: {{ env: CUTOVER_TRACE_TEST_PW }} }}
      - {{ from: old-pop, login: {pop_login}, password: {{ command: "cat pop.pw" }} }}
"#,
        token_url = fake.token_url,
        graph = fake.root,
        imaps = d.imaps_port,
        pop3s = d.pop3s_port,
        ca = ca.display(),
        email = mailbox.login,
        imap_login = imap_user.login,
        pop_login = pop_user.login,
    );
    let plan_file = dir.path().join("plan.yaml");
    std::fs::write(&plan_file, plan).unwrap();
    let trace_file = dir.path().join("support/trace.log");
    let run = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(["apply", "--yes", "--progress", "plain", "--trace"])
        .arg(&trace_file)
        .arg(&plan_file)
        .env("CUTOVER_TRACE_TEST_PW", &imap_user.password)
        .output()
        .unwrap();
    assert!(run.status.success(), "{run:?}\n{}", d.logs());
    let trace = std::fs::read_to_string(&trace_file).unwrap();

    // The protocol is there, with timestamps and connections.
    for expected in [
        "AUTHENTICATE PLAIN <redacted>",
        "AUTHENTICATE XOAUTH2 <redacted>",
        "UID FETCH",
        "APPEND",
        "bytes of literal]",
        "bytes of message]",
        "PASS <redacted>",
        // POP3 reads with TOP n <all lines>, which leaves unread mail unread.
        "TOP 1 ",
        "bytes of message, then .]",
        "POST http://127.0.0.1:",
        "GET http://127.0.0.1:",
        "client_secret=REDACTED",
        "<< HTTP 200",
        "<< * OK",
        "<< +OK",
    ] {
        assert!(
            trace.contains(expected),
            "`{expected}` missing from the trace:\n{trace}"
        );
    }
    for line in trace.lines() {
        let stamp = line.split(' ').next().unwrap();
        assert!(
            stamp.len() == 24 && stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T',
            "not a timestamp: {line}"
        );
    }
    // And nothing secret or private, in clear or base64 (SASL PLAIN and XOAUTH2 responses).
    let b64 = |s: String| base64::engine::general_purpose::STANDARD.encode(s);
    let secrets = [
        imap_user.password.clone(),
        pop_user.password.clone(),
        token.clone(),
        client_secret.to_string(),
        b64(format!("\0{}\0{}", imap_user.login, imap_user.password)),
        b64(format!(
            "user={}\x01auth=Bearer {token}\x01\x01",
            mailbox.login
        )),
        marker.to_string(),
    ];
    for secret in &secrets {
        assert!(
            !trace.contains(secret.as_str()),
            "the trace holds {secret:?}"
        );
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&trace_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "trace file mode {mode:o}");
}
