//! Exchange Online's throttle budget: four mailboxes copied at once into an Exchange-like
//! target — a real Dovecot behind the fault proxy's Exchange profile (no MULTIAPPEND or
//! CONDSTORE, a token bucket per mailbox answered with "Request is throttled. Suggested
//! Backoff Time: 1000 milliseconds", a BYE after three throttles on a connection). Prints,
//! per mailbox, the wall time beside the ideal (messages ÷ budget), the budget used and the
//! APPENDs refused — once finding the budget from the throttling replies, once told it
//! (`max_messages_per_second`).
//!
//! Goals (issue 17): without a configured rate ≥ 90 % of the budget with ≤ 5 % of APPENDs
//! refused; with it ≥ 97 % and none refused.
//!
//!     scripts/bench-exchange.sh [MESSAGES_PER_MAILBOX] [BUDGET_PER_SECOND]

#[allow(dead_code)]
#[path = "../tests/support/dovecot.rs"]
mod dovecot;
#[allow(dead_code)]
#[path = "../tests/support/fault_proxy.rs"]
mod fault_proxy;
#[allow(dead_code)]
mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use cutover::connectors::imap::ImapClient;
use cutover::connectors::mail::RawMessage;
use cutover::connectors::net::{Credentials, Endpoint};
use cutover::engine::{self, ApplyOptions, CancellationToken, EventKind, VecSink, WalkOutcome};
use cutover::graph::Selection;
use cutover::plan::model::Tls;
use cutover::state::{SqliteStore, StateStore};
use dovecot::{Dovecot, User};
use fault_proxy::{FaultProxy, Faults};

const MAILBOXES: usize = 4;

fn env_num(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn seed(d: &Dovecot, u: &User, n: usize, tag: usize) {
    let endpoint =
        Endpoint::new("127.0.0.1", d.imaps_port, Tls::Implicit).with_ca_file(d.ca_file());
    let mut c = ImapClient::connect(&endpoint, &Credentials::password(&u.login, &u.password))
        .await
        .expect("login");
    let messages: Vec<RawMessage> = (0..n)
        .map(|i| {
            RawMessage::new(
                format!(
                    "Message-ID: <b{tag}-{i}@bench.test>\r\nDate: Mon, 1 Jan 2024 10:{:02}:{:02} +0000\r\nSubject: bench {i}\r\n\r\n{}\r\n",
                    i / 60 % 60,
                    i % 60,
                    "body of a message of a few kilobytes ".repeat(60)
                )
                .into_bytes(),
            )
        })
        .collect();
    for chunk in messages.chunks(64) {
        let refs: Vec<&RawMessage> = chunk.iter().collect();
        for r in c.append_all("INBOX", &refs).await.expect("append") {
            r.expect("append");
        }
    }
    c.logout().await.expect("logout");
}

/// One run; returns per mailbox (login): (seconds, messages accepted, APPENDs refused).
async fn run(
    d: &Dovecot,
    sources: &[User],
    per_mailbox: usize,
    budget: f64,
    configured: bool,
) -> (f64, BTreeMap<String, (f64, usize, usize)>) {
    let targets: Vec<User> = (0..MAILBOXES).map(|_| d.add_user("exo-target")).collect();
    let proxy = FaultProxy::start(d.imap_port, Faults::exchange(budget, budget / 2.0, 1000));
    let dir = tempfile::tempdir().expect("tempdir");
    let base = dir.path();
    let mut users = String::new();
    for (i, (src, dst)) in sources.iter().zip(&targets).enumerate() {
        std::fs::write(base.join(format!("s{i}.pw")), &src.password).unwrap();
        std::fs::write(base.join(format!("t{i}.pw")), &dst.password).unwrap();
        users.push_str(&format!(
            "  - email: m{i}@example.test\n    target_login: {{ login: {}, password: {{ file: t{i}.pw }} }}\n    migrate:\n      - {{ from: old, login: {}, password: {{ file: s{i}.pw }} }}\n",
            dst.login, src.login
        ));
    }
    let rate = if configured {
        format!(", max_messages_per_second: {budget}")
    } else {
        String::new()
    };
    let yaml = format!(
        "version: 1\nname: exo-bench\ndomain: example.test\ntarget: {{ kind: imap, host: 127.0.0.1, port: {}, tls: none, allow_plaintext: true{rate} }}\nsources:\n  old: {{ kind: imap, host: 127.0.0.1, port: {}, tls: implicit, ca_file: {} }}\nusers:\n{users}settings: {{ parallelism: {MAILBOXES} }}\n",
        proxy.port,
        d.imaps_port,
        d.ca_file().display()
    );
    let (plan, graph, runners) = support::load(&yaml, base);
    let selected = graph.select(&Selection::new(&["copy.*".into()], &[]).expect("selection"));
    let store: Arc<dyn StateStore> =
        Arc::new(SqliteStore::open(base.join("state.db")).expect("state"));
    let mut events = VecSink::default();
    let started = Instant::now();
    let report = engine::apply(
        &plan,
        &graph,
        &selected,
        store,
        &runners,
        &ApplyOptions::default(),
        &mut events,
        CancellationToken::new(),
    )
    .await;
    let wall = started.elapsed().as_secs_f64();
    assert_eq!(report.outcome, WalkOutcome::Succeeded, "{report:#?}");
    // Per step: from its start to its end.
    let mut began: BTreeMap<String, f64> = BTreeMap::new();
    let mut took: BTreeMap<String, f64> = BTreeMap::new();
    for e in &events.0 {
        let Some(step) = e.step.clone().filter(|s| s.starts_with("copy.")) else {
            continue;
        };
        let at = e.at_ms as f64 / 1000.0;
        match e.kind {
            EventKind::StepStarted { .. } => {
                began.entry(step).or_insert(at);
            }
            EventKind::StepFinished { .. } => {
                let from = began.get(&step).copied().unwrap_or(at);
                took.insert(step, at - from);
            }
            _ => {}
        }
    }
    println!("  proxy saw: {:?}", proxy.counts());
    let logins = proxy.logins();
    let mut out = BTreeMap::new();
    for (i, dst) in targets.iter().enumerate() {
        let c = logins.get(&dst.login).copied().unwrap_or_default();
        let secs = took.get(&format!("copy.m{i}.old")).copied().unwrap_or(wall);
        assert_eq!(c.accepted, per_mailbox, "{}: every message once", dst.login);
        out.insert(format!("m{i}"), (secs, c.accepted, c.refused));
    }
    (wall, out)
}

fn main() {
    let per_mailbox = env_num("CUTOVER_BENCH_EXO_MSGS", 300.0) as usize;
    let budget = env_num("CUTOVER_BENCH_EXO_RATE", 20.0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let d = Dovecot::start();
        let sources: Vec<User> = (0..MAILBOXES).map(|_| d.add_user("exo-source")).collect();
        for (i, u) in sources.iter().enumerate() {
            seed(&d, u, per_mailbox, i).await;
        }
        let ideal = per_mailbox as f64 / budget;
        println!(
            "Exchange-like target: {MAILBOXES} mailboxes × {per_mailbox} messages, budget {budget}/s per mailbox \
             ({} deep), 1000 ms suggested backoff, BYE after 3 throttles; ideal {ideal:.1} s per mailbox",
            budget / 2.0
        );
        for configured in [false, true] {
            let (wall, per) = run(&d, &sources, per_mailbox, budget, configured).await;
            println!(
                "\n{} (wall {wall:.1} s for all four):",
                if configured {
                    format!("told the budget (max_messages_per_second: {budget})")
                } else {
                    "finding the budget from throttling".to_string()
                }
            );
            println!("  mailbox   time     ideal   budget used   APPENDs refused");
            for (name, (secs, accepted, refused)) in per {
                let used = accepted as f64 / secs / budget * 100.0;
                let share = refused as f64 / (accepted + refused) as f64 * 100.0;
                println!(
                    "  {name:<8} {secs:>5.1} s  {ideal:>5.1} s   {used:>6.1} %      {refused:>4} ({share:.1} %)"
                );
            }
        }
        let _ = Path::new(".");
    });
}
