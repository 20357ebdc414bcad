//! An `m365` target through the engine, against a real Dovecot standing in for Exchange
//! Online (its `imap:` override) and the local Graph and Entra ID fake standing in for
//! Microsoft's (the `user.*` step finds the mailbox there): XOAUTH2 with the app's
//! client-credentials token, Exchange's special folder names, reruns, delta and verify, one
//! token for the whole walk, and a wrong client secret reported by tenant, app and AADSTS code
//! without the secret anywhere.
mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cutover::connectors::imap::ImapClient;
use cutover::connectors::mail::{utf7, RawMessage};
use cutover::connectors::net::{Credentials, Endpoint};
use cutover::engine::{
    self, ApplyOptions, CancellationToken, JsonlEventLog, Runners, StepResult, VecSink,
    WalkOutcome, WalkReport,
};
use cutover::graph::{Selection, StepGraph};
use cutover::plan::model::Tls;
use cutover::plan::{self, Options, Plan};
use cutover::state::{SqliteStore, StateStore};
use support::dovecot::{Dovecot, User};
use support::graph_fake::{FakeSku, FakeTenant, GraphFake};

fn imaps(d: &Dovecot) -> Endpoint {
    Endpoint::new("127.0.0.1", d.imaps_port, Tls::Implicit).with_ca_file(d.ca_file())
}

async fn login(d: &Dovecot, u: &User) -> ImapClient {
    ImapClient::connect(&imaps(d), &Credentials::password(&u.login, &u.password))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", d.logs()))
}

fn message(n: usize, id: bool) -> RawMessage {
    let mut b = format!("From: sender{n}@example.test\r\nSubject: message {n}\r\n");
    if id {
        b.push_str(&format!(
            "Message-ID: <m365-{n}.{}@example.test>\r\n",
            std::process::id()
        ));
    }
    b.push_str("\r\nbody of a message\r\n");
    RawMessage::new(b.into_bytes())
}

/// Appends `messages` to `folder` (created unless INBOX) of the user's mailbox.
async fn seed(d: &Dovecot, u: &User, folder: &str, messages: &[RawMessage]) {
    let mut c = login(d, u).await;
    if folder != "INBOX" {
        c.create(folder).await.unwrap();
    }
    for m in messages {
        c.append(folder, m).await.unwrap();
    }
    c.logout().await.unwrap();
}

/// Folder (decoded) → number of messages, for every non-empty folder.
async fn folder_counts(d: &Dovecot, u: &User) -> Vec<(String, u32)> {
    let mut c = login(d, u).await;
    let mut out = Vec::new();
    for b in c.list().await.unwrap() {
        if !b.is_selectable() {
            continue;
        }
        let n = c.examine(&b.name).await.unwrap().exists;
        if n > 0 {
            out.push((utf7::decode(&b.name).unwrap(), n));
        }
    }
    c.logout().await.unwrap();
    out.sort();
    out
}

/// The tenant of `dst`'s mailbox, with the app's secret `secret`: its token for the loopback
/// scope (IMAP and Graph are both at 127.0.0.1) is the mailbox's Dovecot password, which
/// Dovecot takes as the XOAUTH2 token.
fn tenant(dst: &User, secret: &str) -> GraphFake {
    let mut config = FakeTenant::new(&["example.test"]);
    config.client_secret = secret.into();
    config.skus = vec![FakeSku::new("EXCHANGESTANDARD", 5, 0)];
    config
        .scope_tokens
        .insert("https://127.0.0.1/.default".into(), dst.password.clone());
    let fake = GraphFake::start(config);
    fake.add_user(&dst.login, local_part(dst), &["EXCHANGESTANDARD"]);
    fake
}

struct Fx {
    _dir: tempfile::TempDir,
    base: std::path::PathBuf,
    plan: Plan,
    graph: StepGraph,
}

/// A plan copying `src`'s IMAP mailbox into the m365 mailbox `dst` (its address is `dst`'s
/// Dovecot login) through the tenant `fake`; the client secret is read from a file holding
/// `secret`.
fn fixture(d: &Dovecot, src: &User, dst: &User, fake: &GraphFake, secret: &str) -> Fx {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().to_path_buf();
    std::fs::write(base.join("src.pw"), &src.password).unwrap();
    std::fs::write(base.join("app.secret"), secret).unwrap();
    let yaml = format!(
        r#"
version: 1
name: m365-test
domain: example.test
target:
  kind: m365
  tenant: contoso.onmicrosoft.com
  auth:
    client_id: 11111111-2222-3333-4444-555555555555
    client_secret: {{ file: app.secret }}
    token_endpoint: {token_url}
  graph: {{ endpoint: "{graph}" }}
  imap: {{ host: 127.0.0.1, port: {port}, ca_file: {ca} }}
sources:
  old: {{ kind: imap, host: 127.0.0.1, port: {port}, ca_file: {ca} }}
users:
  - email: {email}
    migrate:
      - from: old
        login: {login}
        password: {{ file: src.pw }}
dns: {{ provider: manual }}
"#,
        port = d.imaps_port,
        ca = d.ca_file().display(),
        email = dst.login,
        login = src.login,
        token_url = fake.token_url,
        graph = fake.root,
    );
    let loaded = plan::load_str(yaml, "m365.yaml", &base, Options::default());
    assert_eq!(
        loaded.report.errors(),
        0,
        "{:#?}",
        loaded.report.diagnostics
    );
    Fx {
        _dir: dir,
        base,
        plan: loaded.plan.unwrap(),
        graph: loaded.graph.unwrap(),
    }
}

fn fast() -> ApplyOptions {
    ApplyOptions {
        backoff_base: Duration::from_millis(1),
        backoff_max: Duration::from_millis(5),
        ..ApplyOptions::default()
    }
}

async fn apply(
    fx: &Fx,
    runners: &Runners,
    store: &Arc<dyn StateStore>,
    globs: &[&str],
    events: &mut dyn engine::EventSink,
) -> WalkReport {
    let selection = Selection::new(
        &globs.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        &[],
    )
    .unwrap();
    let selected: BTreeSet<String> = fx.graph.select(&selection);
    engine::apply(
        &fx.plan,
        &fx.graph,
        &selected,
        Arc::clone(store),
        runners,
        &fast(),
        events,
        CancellationToken::new(),
    )
    .await
}

fn done(report: &WalkReport, id: &str) -> cutover::state::Counts {
    match &report.steps[id] {
        StepResult::Done { counts } => *counts,
        other => panic!("{id}: {other:?}\n{report:#?}"),
    }
}

fn local_part(u: &User) -> &str {
    u.login.split('@').next().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_source_into_m365_lands_in_exchange_folders_once() {
    let d = Dovecot::shared();
    let (src, dst) = (d.add_user("src"), d.add_user("m365"));
    seed(&d, &src, "INBOX", &[message(1, true), message(2, false)]).await;
    seed(&d, &src, "Sent", &[message(3, true)]).await;
    seed(&d, &src, "Trash", &[message(4, true)]).await;
    seed(&d, &src, "Junk", &[message(5, true)]).await;
    seed(&d, &src, "Projects", &[message(6, true)]).await;
    // Dovecot checks an XOAUTH2 bearer token against its passdb: the "issued" token is the
    // mailbox's password.
    let tokens = tenant(&dst, "app-secret-value-1");
    let fx = fixture(&d, &src, &dst, &tokens, "app-secret-value-1");
    let store: Arc<dyn StateStore> = Arc::new(SqliteStore::open(fx.base.join("state.db")).unwrap());
    let runners = cutover::runners::runners_for(&fx.plan, &fx.graph, &fx.base);
    let who = local_part(&dst);
    let copy = format!("copy.{who}.old");

    let report = apply(&fx, &runners, &store, &["copy.*"], &mut VecSink::default()).await;
    assert_eq!(report.outcome, WalkOutcome::Succeeded, "{report:#?}");
    assert!(matches!(
        report.steps[&format!("user.{who}")],
        StepResult::Done { .. }
    ));
    assert_eq!(done(&report, &copy).items, 6);
    let expected = vec![
        ("Deleted Items".to_string(), 1),
        ("INBOX".to_string(), 2),
        ("Junk Email".to_string(), 1),
        ("Projects".to_string(), 1),
        ("Sent Items".to_string(), 1),
    ];
    assert_eq!(folder_counts(&d, &dst).await, expected);

    // Rerun with lost checkpoints: the target's dedupe copies nothing.
    let fresh: Arc<dyn StateStore> = Arc::new(SqliteStore::open(fx.base.join("fresh.db")).unwrap());
    let again = apply(&fx, &runners, &fresh, &["copy.*"], &mut VecSink::default()).await;
    let counts = done(&again, &copy);
    assert_eq!((counts.items, counts.present), (0, 6));

    // Mail still arriving at the old host, then the cutover (approved by hand) and the delta.
    seed(&d, &src, "Sent", &[message(7, true)]).await;
    store
        .set_config_hash("dns.cutover", &runners["dns.cutover"].config_hash())
        .unwrap();
    store.mark_done("dns.cutover").unwrap();
    let report = apply(
        &fx,
        &runners,
        &store,
        &["verify.*"],
        &mut VecSink::default(),
    )
    .await;
    assert_eq!(report.outcome, WalkOutcome::Succeeded, "{report:#?}");
    let delta = done(&report, &format!("delta.{who}.old"));
    assert_eq!((delta.items, delta.present), (1, 0));
    assert_eq!(done(&report, &format!("verify.{who}")).items, 7);
    assert!(folder_counts(&d, &dst)
        .await
        .contains(&("Sent Items".to_string(), 2)));

    // One token served the user (Graph and IMAP), copy, delta and verify steps of all three
    // walks.
    let requests: Vec<String> = tokens
        .requests()
        .into_iter()
        .filter(|r| r.target.ends_with("/oauth2/v2.0/token"))
        .map(|r| r.body)
        .collect();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let form = &requests[0];
    for field in [
        "grant_type=client_credentials",
        "client_id=11111111-2222-3333-4444-555555555555",
        // The scope follows the IMAP host of the override.
        "scope=https%3A%2F%2F127.0.0.1%2F.default",
    ] {
        assert!(form.contains(field), "{field} in {form}");
    }
    drop(runners);
    assert_no_leak(&fx.base, &[&dst.password, "app-secret-value-1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_client_secret_names_tenant_app_and_code_and_leaks_nothing() {
    let d = Dovecot::shared();
    let (src, dst) = (d.add_user("src"), d.add_user("m365"));
    seed(&d, &src, "INBOX", &[message(11, true)]).await;
    let tokens = tenant(&dst, "the-right-secret");
    let secret = "Wrong-App-Secret-5d1e7b";
    let fx = fixture(&d, &src, &dst, &tokens, secret);
    let store: Arc<dyn StateStore> = Arc::new(SqliteStore::open(fx.base.join("state.db")).unwrap());
    let runners = cutover::runners::runners_for(&fx.plan, &fx.graph, &fx.base);
    let mut log = JsonlEventLog::open(fx.base.join("events.jsonl")).unwrap();
    let report = apply(&fx, &runners, &store, &["copy.*"], &mut log).await;
    drop(log);
    assert_eq!(report.outcome, WalkOutcome::Failed, "{report:#?}");
    let user = format!("user.{}", local_part(&dst));
    let StepResult::Failed { error } = &report.steps[&user] else {
        panic!("{report:#?}");
    };
    for part in [
        "m365 tenant `contoso.onmicrosoft.com`",
        "app `11111111-2222-3333-4444-555555555555`",
        "HTTP 401",
        "invalid_client",
        "AADSTS7000215",
    ] {
        assert!(error.contains(part), "{part} in {error}");
    }
    assert!(
        !error.contains(secret),
        "the secret is not in the error: {error}"
    );
    // A wrong secret is not retried: one request per step that needed a token.
    assert_eq!(tokens.requests().len(), 1, "the copy waits for user.*");
    let record = store.step(&user).unwrap().unwrap();
    assert!(record
        .last_error
        .as_deref()
        .is_some_and(|e| e.contains("AADSTS7000215")));
    drop(runners);
    assert_no_leak(&fx.base, &[secret]);
}

#[test]
fn m365_imap_override_is_validated() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = r#"
version: 1
name: m365-bad
domain: example.test
target:
  kind: m365
  tenant: contoso.onmicrosoft.com
  auth: { client_id: app, client_secret: { env: X } }
  imap: { host: "imap://outlook.office365.us", tls: none }
users:
  - email: a@example.test
"#;
    let loaded = plan::load_str(yaml.into(), "bad.yaml", dir.path(), Options::default());
    let codes: Vec<&str> = loaded.report.diagnostics.iter().map(|d| d.code).collect();
    assert!(
        codes.contains(&"cutover::plan::plaintext-without-opt-in"),
        "tls: none needs the opt-in (and a loopback host): {codes:?}"
    );
    assert!(
        codes.contains(&"cutover::plan::invalid-host"),
        "the host is checked too: {codes:?}"
    );
    assert_eq!(
        codes.len(),
        2,
        "each problem reported once: {:#?}",
        loaded.report.diagnostics
    );
    // With the opt-in, plaintext still goes only to this machine.
    let remote = yaml
        .replace("tls: none", "tls: none, allow_plaintext: true")
        .replace("imap://outlook.office365.us", "outlook.office365.us");
    let loaded = plan::load_str(remote, "bad.yaml", dir.path(), Options::default());
    let codes: Vec<&str> = loaded.report.diagnostics.iter().map(|d| d.code).collect();
    assert_eq!(
        codes,
        vec!["cutover::plan::plaintext-without-opt-in"],
        "{:#?}",
        loaded.report.diagnostics
    );
    let local = yaml
        .replace("tls: none", "tls: none, allow_plaintext: true")
        .replace("imap://outlook.office365.us", "127.0.0.1");
    let loaded = plan::load_str(local, "ok.yaml", dir.path(), Options::default());
    assert_eq!(
        loaded.report.errors(),
        0,
        "{:#?}",
        loaded.report.diagnostics
    );
}

/// None of `secrets` is in any file under `dir` (state database and its journal, event log).
fn assert_no_leak(dir: &Path, secrets: &[&str]) {
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".pw") || name.ends_with(".secret") || !path.is_file() {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        for s in secrets {
            assert!(
                !bytes.windows(s.len()).any(|w| w == s.as_bytes()),
                "{s} leaked into {name}"
            );
        }
        checked.push(name);
    }
    assert!(
        checked.iter().any(|n| n == "state.db"),
        "the state file is checked: {checked:?}"
    );
}
