//! The m365 target against Exchange Online as it is, played by the real Dovecot behind the
//! fault proxy's Exchange profile (no MULTIAPPEND or CONDSTORE, a per-mailbox token bucket
//! answered with Exchange's throttling text, a BYE after repeated throttles, folders that
//! cannot store keywords) and the Graph fake for the tenant: throttling is waited out
//! together and never costs a retry, keywords are not sent where they cannot be stored,
//! `\Flagged` is set again with STORE, reserved and case-colliding folder names get
//! distinct names, header lines Exchange refuses are left behind, and a connection is
//! renewed before the server ends it for its errors.

mod support;

use std::sync::Arc;

use cutover::connectors::mail::{Flag, Flags, RawMessage};
use cutover::engine::{CancellationToken, WalkOutcome, WalkReport};
use cutover::state::StateStore;
use support::dovecot::{Dovecot, User};
use support::fault_proxy::{FaultProxy, Faults};
use support::graph_fake::{FakeSku, FakeTenant, GraphFake};
use support::mailbox::{assert_each_once, imap_contents, Contents};
use support::remote::{apply, done, fixture_in, open_store, seed, server, Fx, Seed};

fn mail(n: usize, extra: &str) -> RawMessage {
    RawMessage::new(
        format!(
            "Message-ID: <x{n}@exchange.test>\r\nDate: Mon, 1 Jan 2024 10:{:02}:{:02} +0000\r\nSubject: exchange {n}\r\n{extra}\r\nbody {n}\r\n",
            n / 60 % 60,
            n % 60
        )
        .into_bytes(),
    )
}

struct Exchange {
    d: Arc<Dovecot>,
    dst: User,
    proxy: FaultProxy,
    _tenant: GraphFake,
    fx: Fx,
}

/// `src`'s mailbox into the m365 mailbox `dst`, whose IMAP is the proxy with `faults`.
fn exchange(d: Arc<Dovecot>, src: &User, faults: Faults, settings: &str, imap: &str) -> Exchange {
    let dst = d.add_user("exo");
    let proxy = FaultProxy::start(d.imap_port, faults);
    let mut config = FakeTenant::new(&["example.test"]);
    config.client_id = "app".into();
    config.client_secret = "exo-app-secret".into();
    config.skus = vec![FakeSku::new("EXCHANGESTANDARD", 1, 0)];
    config
        .scope_tokens
        .insert("https://127.0.0.1/.default".into(), dst.password.clone());
    let tenant = GraphFake::start(config);
    tenant.add_user(&dst.login, "exo", &["EXCHANGESTANDARD"]);
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().to_path_buf();
    std::fs::write(base.join("app.secret"), "exo-app-secret").unwrap();
    std::fs::write(base.join("src.pw"), &src.password).unwrap();
    let yaml = format!(
        "version: 1\nname: exo\ndomain: example.test\ntarget: {{ kind: m365, tenant: contoso.onmicrosoft.com, auth: {{ client_id: app, client_secret: {{ file: app.secret }}, token_endpoint: {} }}, graph: {{ endpoint: \"{}\" }}, imap: {{ host: 127.0.0.1, port: {}, tls: none, allow_plaintext: true{imap} }} }}\nsources:\n  old: {{ kind: imap, {} }}\nusers:\n  - email: {}\n    migrate:\n      - {{ from: old, login: {}, password: {{ file: src.pw }} }}\nsettings: {{ {settings} }}\n",
        tenant.token_url,
        tenant.root,
        proxy.port,
        server(&d, d.imaps_port)
            .trim_start_matches("{ ")
            .trim_end_matches(" }"),
        dst.login,
        src.login
    );
    let fx = fixture_in(dir, base, &yaml);
    Exchange {
        d,
        dst,
        proxy,
        _tenant: tenant,
        fx,
    }
}

impl Exchange {
    fn copy_step(&self) -> String {
        format!("copy.{}.old", self.dst.login.split('@').next().unwrap())
    }

    async fn run(&self, store: Arc<dyn StateStore>) -> WalkReport {
        apply(&self.fx, store, CancellationToken::new()).await
    }

    async fn contents(&self) -> Contents {
        imap_contents(&self.d, &self.dst).await
    }
}

/// A budget of 40 messages a second, 8 deep, a 300 ms suggested backoff and a BYE after three
/// throttles on a connection; `retries: 1`, so a disconnect that spent a retry would fail the
/// step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_waited_out_together_and_costs_no_retry() {
    let d = Dovecot::shared();
    let src = d.add_user("exo-src");
    let messages: Vec<RawMessage> = (0..240).map(|n| mail(n, "")).collect();
    let folders: Seed = vec![
        ("INBOX".into(), messages[..120].to_vec()),
        ("Projects".into(), messages[120..180].to_vec()),
        ("Clients".into(), messages[180..].to_vec()),
    ];
    seed(&d, &src, &folders).await;
    let x = exchange(d, &src, Faults::exchange(40.0, 8.0, 300), "retries: 1", "");
    let store = open_store(&x.fx, "state.db");
    let report = x.run(Arc::clone(&store)).await;
    assert_eq!(report.outcome, WalkOutcome::Succeeded, "{report:#?}");
    assert_each_once(&x.contents().await, 240);
    let counts = x.proxy.counts();
    assert!(counts.throttles > 0, "the budget was met: {counts:?}");
    assert!(
        counts.appends > 0 && counts.byes <= counts.throttles,
        "{counts:?}"
    );
    // Refused APPENDs stay a small share of all (the rate settles under the budget).
    assert!(
        counts.throttles * 4 < counts.appends,
        "too many refusals: {counts:?}"
    );
    let cps = store.checkpoints(&x.copy_step()).unwrap();
    let throttled = cutover::runners::notes::count(&cps, cutover::runners::notes::THROTTLED_MS);
    assert!(throttled > 0, "time paused is recorded");
    let notes = cutover::runners::notes::from_checkpoints(&cps);
    assert!(
        notes
            .iter()
            .any(|n| n.contains("throttled") && n.contains("max_messages_per_second")),
        "{notes:?}"
    );
}

/// A known budget: paced from the start, never refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_budget_is_never_refused() {
    let d = Dovecot::shared();
    let src = d.add_user("exo-known");
    seed(
        &d,
        &src,
        &vec![("INBOX".into(), (0..90).map(|n| mail(n, "")).collect())],
    )
    .await;
    let x = exchange(
        d,
        &src,
        Faults::exchange(40.0, 8.0, 300),
        "retries: 1",
        ", max_messages_per_second: 30",
    );
    let report = x.run(open_store(&x.fx, "state.db")).await;
    assert_eq!(report.outcome, WalkOutcome::Succeeded, "{report:#?}");
    assert_each_once(&x.contents().await, 90);
    assert_eq!(x.proxy.counts().throttles, 0, "{:?}", x.proxy.counts());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchanges_folder_and_flag_quirks() {
    let d = Dovecot::shared();
    let src = d.add_user("exo-quirks");
    let keyworded = mail(1, "").with_flags(Flags::new().with(Flag::Seen).with_keyword("$Label1"));
    let flagged = mail(2, "").with_flags(Flags::new().with(Flag::Flagged));
    let long_header = mail(3, &format!("X-Long: {}\r\n", "a".repeat(12_000)));
    let folders: Seed = vec![
        ("INBOX".into(), vec![keyworded, flagged, long_header]),
        ("Files".into(), vec![mail(4, "")]),
        ("Projects".into(), vec![mail(5, "")]),
        ("projects".into(), vec![mail(6, "")]),
    ];
    seed(&d, &src, &folders).await;
    let faults = Faults {
        budget: None,
        ..Faults::exchange(1000.0, 1000.0, 100)
    };
    let x = exchange(d, &src, faults, "retries: 1", "");
    let store = open_store(&x.fx, "state.db");
    let report = x.run(Arc::clone(&store)).await;
    assert_eq!(report.outcome, WalkOutcome::Succeeded, "{report:#?}");
    let copy = done(&report, &x.copy_step());
    assert_eq!(
        (copy.items, copy.left_behind),
        (5, 1),
        "the long header is left behind"
    );
    let have = x.contents().await;
    let folders: std::collections::BTreeSet<&str> = have.keys().map(|(f, _)| f.as_str()).collect();
    assert_eq!(
        folders,
        ["INBOX", "Files (migrated)", "Projects", "projects (2)"]
            .into_iter()
            .collect()
    );
    let counts = x.proxy.counts();
    assert_eq!(
        counts.appends_with_keywords, 0,
        "no keywords sent: {counts:?}"
    );
    assert!(
        counts.flagged_stores >= 1,
        "\\Flagged set again: {counts:?}"
    );
    let cps = store.checkpoints(&x.copy_step()).unwrap();
    let notes = cutover::runners::notes::from_checkpoints(&cps).join("\n");
    assert!(
        notes.contains("`Files` stored as `Files (migrated)`"),
        "{notes}"
    );
    assert!(
        notes.contains("`projects` stored as `projects (2)`"),
        "{notes}"
    );
    assert!(
        notes.contains("1 message(s) stored in `INBOX` without their keywords"),
        "{notes}"
    );
    let left = cutover::runners::skipped::from_checkpoints(&cps);
    assert_eq!(left.len(), 1);
    assert!(left[0].reason.contains("header line"), "{left:?}");
}

/// Exchange ends a connection at its tenth error: the session renews it after nine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_is_renewed_before_ten_errors() {
    let d = Dovecot::shared();
    let src = d.add_user("exo-errors");
    // Fourteen messages the server refuses as too big, then ordinary ones.
    let big: Vec<RawMessage> = (0..14)
        .map(|n| mail(100 + n, &format!("X-Pad: {}\r\n", "b".repeat(3000))))
        .collect();
    let small: Vec<RawMessage> = (0..6).map(|n| mail(200 + n, "")).collect();
    seed(
        &d,
        &src,
        &vec![("INBOX".into(), big.into_iter().chain(small).collect())],
    )
    .await;
    let faults = Faults {
        budget: None,
        refuse_larger_than: Some(2500),
        bye_after_refusals: Some(10),
        ..Faults::exchange(1000.0, 1000.0, 100)
    };
    let x = exchange(d, &src, faults, "retries: 1", "");
    let report = x.run(open_store(&x.fx, "state.db")).await;
    assert_eq!(report.outcome, WalkOutcome::Succeeded, "{report:#?}");
    let copy = done(&report, &x.copy_step());
    assert_eq!((copy.items, copy.left_behind), (6, 14));
    let counts = x.proxy.counts();
    assert_eq!(counts.byes, 0, "never closed for errors: {counts:?}");
    assert!(counts.connections >= 2, "renewed: {counts:?}");
}
