//! `user.*` of an m365 target through Microsoft Graph, against the local Graph and Entra ID
//! fake (tests/support/graph_fake.rs) and a real Dovecot standing in for Exchange Online's
//! IMAP: an existing user left alone, an absent one created, licensed and waited for, the
//! throttling answers waited out, a short licence blocking, Ctrl-C while waiting for a
//! mailbox, a wrong client secret; and the seed plan's `user.*` steps end to end through the
//! CLI (plan, apply, report, Exchange Online script, rerun).
mod common;
mod support;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::run;
use cutover::cli::ExitCode;
use cutover::engine::{
    self, ApplyOptions, CancellationToken, EventKind, JsonlEventLog, PlannedChange, Runners,
    StepResult, VecSink, WalkOutcome, WalkReport,
};
use cutover::graph::{Selection, StepGraph};
use cutover::plan::{self, Options, Plan};
use cutover::state::{SqliteStore, StateStore};
use support::dovecot::{Dovecot, User};
use support::graph_fake::{FakeSku, FakeTenant, GraphFake};

/// The scope of the app's tokens for both services: Graph and IMAP are both at 127.0.0.1.
const LOOPBACK_SCOPE: &str = "https://127.0.0.1/.default";

/// A fake tenant whose tokens for the loopback scope are `mailbox`'s Dovecot password (so
/// the same token opens the mailbox over XOAUTH2 and calls Graph).
fn tenant(mailbox: &User, skus: Vec<FakeSku>, mailbox_polls: u32) -> GraphFake {
    let mut config = FakeTenant::new(&["example.test"]);
    config.skus = skus;
    config.mailbox_polls = mailbox_polls;
    config
        .scope_tokens
        .insert(LOOPBACK_SCOPE.into(), mailbox.password.clone());
    GraphFake::start(config)
}

struct Fx {
    _dir: tempfile::TempDir,
    base: PathBuf,
    plan: Plan,
    graph: StepGraph,
    step: String,
}

/// A plan with one m365 user, `user_yaml` (its lines after `- email: …`), against `fake` and
/// the Dovecot `d`; the app secret is read from a file holding `secret`.
fn fixture(fake: &GraphFake, d: &Dovecot, email: &str, user_yaml: &str, secret: &str) -> Fx {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().to_path_buf();
    std::fs::write(base.join("app.secret"), secret).unwrap();
    let yaml = format!(
        r#"
version: 1
name: graph-test
domain: example.test
target:
  kind: m365
  tenant: contoso.onmicrosoft.com
  usage_location: GB
  auth:
    client_id: 11111111-2222-3333-4444-555555555555
    client_secret: {{ file: app.secret }}
    token_endpoint: {token}
  graph: {{ endpoint: "{root}" }}
  imap: {{ host: 127.0.0.1, port: {port}, ca_file: {ca} }}
users:
  - email: {email}
{user_yaml}
settings:
  output_dir: out
"#,
        token = fake.token_url,
        root = fake.root,
        port = d.imaps_port,
        ca = d.ca_file().display(),
    );
    let loaded = plan::load_str(yaml, "graph.yaml", &base, Options::default());
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
        step: format!("user.{}", email.split('@').next().unwrap()),
    }
}

fn fast() -> ApplyOptions {
    ApplyOptions {
        backoff_base: Duration::from_millis(1),
        backoff_max: Duration::from_millis(5),
        ..ApplyOptions::default()
    }
}

fn store(fx: &Fx, name: &str) -> Arc<dyn StateStore> {
    Arc::new(SqliteStore::open(fx.base.join(name)).unwrap())
}

fn selected(fx: &Fx) -> BTreeSet<String> {
    fx.graph
        .select(&Selection::new(&["user.*".to_string()], &[]).unwrap())
}

fn observe(fx: &Fx, runners: &Runners, store: &dyn StateStore) -> PlannedChange {
    let planned = engine::observe(
        &fx.plan,
        &fx.graph,
        &selected(fx),
        &BTreeSet::new(),
        store,
        runners,
    );
    planned
        .into_iter()
        .find(|(id, _)| *id == fx.step)
        .map(|(_, change)| change)
        .unwrap()
}

async fn apply(
    fx: &Fx,
    runners: &Runners,
    store: &Arc<dyn StateStore>,
    events: &mut dyn engine::EventSink,
    cancel: CancellationToken,
) -> WalkReport {
    engine::apply(
        &fx.plan,
        &fx.graph,
        &selected(fx),
        Arc::clone(store),
        runners,
        &fast(),
        events,
        cancel,
    )
    .await
}

fn sku(part: &str, enabled: i64, consumed: i64) -> FakeSku {
    FakeSku::new(part, enabled, consumed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_licensed_user_is_in_sync_and_only_confirmed() {
    let d = Dovecot::shared();
    let mailbox = d.add_user("alice");
    let fake = tenant(&mailbox, vec![sku("O365_BUSINESS_PREMIUM", 5, 0)], 0);
    fake.add_user(&mailbox.login, "Alice Smith", &["O365_BUSINESS_PREMIUM"]);
    let fx = fixture(
        &fake,
        &d,
        &mailbox.login,
        "    display_name: Alice Smith\n    licence: O365_BUSINESS_PREMIUM",
        "fake-app-secret-value",
    );
    let runners = cutover::runners::runners_for(&fx.plan, &fx.graph, &fx.base);
    let state = store(&fx, "state.db");
    assert_eq!(
        observe(&fx, &runners, state.as_ref()),
        PlannedChange::InSync {
            summary: Some("exists, licensed".into())
        }
    );
    let report = apply(
        &fx,
        &runners,
        &state,
        &mut VecSink::default(),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(report.outcome, WalkOutcome::Succeeded, "{report:#?}");
    // Read only: nothing created, changed or assigned; the mailbox answered at once.
    for (method, path) in [("POST", "/v1.0/users"), ("PATCH", "/v1.0/users")] {
        assert_eq!(fake.count(method, path), 0, "{method} {path}");
    }
    assert_eq!(
        fake.count("GET", "/v1.0/users/"),
        2,
        "the user, its mailbox"
    );
    assert_eq!(fake.seats("O365_BUSINESS_PREMIUM"), (5, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absent_user_is_created_licensed_and_waited_for() {
    let d = Dovecot::shared();
    let mailbox = d.add_user("carol");
    let fake = tenant(&mailbox, vec![sku("O365_BUSINESS_BASIC", 10, 7)], 3);
    let alias = "carol.white@example.test";
    let fx = fixture(
        &fake,
        &d,
        &mailbox.login,
        &format!("    display_name: Carol White\n    licence: O365_BUSINESS_BASIC\n    aliases: [{alias}]"),
        "fake-app-secret-value",
    );
    let runners = cutover::runners::runners_for(&fx.plan, &fx.graph, &fx.base);
    let state = store(&fx, "state.db");
    match observe(&fx, &runners, state.as_ref()) {
        PlannedChange::Create { summary, .. } => assert_eq!(
            summary.as_deref(),
            Some(
                format!(
                    "create {}, licence O365_BUSINESS_BASIC (3 of 10 free), 1 alias for Exchange Online PowerShell",
                    mailbox.login
                )
                .as_str()
            )
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        fake.count("POST", "/v1.0/$batch"),
        1,
        "plan reads users in one batch"
    );

    let mut events = VecSink::default();
    let report = apply(&fx, &runners, &state, &mut events, CancellationToken::new()).await;
    assert_eq!(report.outcome, WalkOutcome::Succeeded, "{report:#?}");

    let created = fake.user(&mailbox.login).expect("created");
    assert_eq!(created.display_name, "Carol White");
    assert_eq!(
        created.mail_nickname,
        mailbox.login.split('@').next().unwrap()
    );
    assert!(created.account_enabled && created.force_change_password);
    assert_eq!(created.usage_location.as_deref(), Some("GB"));
    assert_eq!(created.licences.len(), 1);
    assert_eq!(fake.seats("O365_BUSINESS_BASIC"), (10, 8));
    // Three "not yet" answers, then the mailbox.
    assert_eq!(
        fake.count(
            "GET",
            &format!("/v1.0/users/{}/mailboxSettings", created.id)
        ),
        4
    );
    let waits: Vec<&str> = events
        .0
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::StepStatus { message } => Some(message.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(waits.len(), 3, "{waits:?}");
    assert!(
        waits[0].contains("waiting for the mailbox")
            && waits[0].contains("MailboxNotEnabledForRESTAPI"),
        "{waits:?}"
    );

    // The generated password: only in its 0600 file, which is what Graph received.
    let file = fx.base.join(format!(
        "out/m365/{}.initial-password.txt",
        mailbox.login.split('@').next().unwrap()
    ));
    let text = std::fs::read_to_string(&file).unwrap();
    let password = text.lines().last().unwrap();
    assert_eq!(Some(password), created.password.as_deref());
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let checkpoints = state.checkpoints(&fx.step).unwrap();
    let notes = cutover::runners::notes::from_checkpoints(&checkpoints);
    assert!(
        notes
            .iter()
            .any(|n| n.contains("initial-password.txt (0600)")),
        "{notes:?}"
    );
    let changes = cutover::connectors::graph::ExchangeChange::from_checkpoints(&checkpoints);
    assert!(
        changes.contains(&cutover::connectors::graph::ExchangeChange::smtp_alias(
            &mailbox.login,
            alias
        ))
    );
    drop(runners);
    assert_nowhere(&fx.base, &[password, "fake-app-secret-value"], &[&file]);

    // Again from scratch: found, licensed, mailbox there — nothing written twice.
    let runners = cutover::runners::runners_for(&fx.plan, &fx.graph, &fx.base);
    let again = apply(
        &fx,
        &runners,
        &store(&fx, "fresh.db"),
        &mut VecSink::default(),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(again.outcome, WalkOutcome::Succeeded, "{again:#?}");
    assert_eq!(fake.count_exact("POST", "/v1.0/users"), 1, "one create");
    assert_eq!(
        fake.count("POST", &format!("/v1.0/users/{}/assignLicense", created.id)),
        1
    );
    assert_eq!(fake.seats("O365_BUSINESS_BASIC"), (10, 8));
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        text,
        "the password file is kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_waited_out_and_service_errors_are_retried() {
    let d = Dovecot::shared();
    let mailbox = d.add_user("dave");
    let fake = tenant(&mailbox, vec![sku("EXCHANGESTANDARD", 3, 0)], 0);
    let fx = fixture(
        &fake,
        &d,
        &mailbox.login,
        "    licence: EXCHANGESTANDARD\n    initial_password: { file: dave.pw }",
        "fake-app-secret-value",
    );
    std::fs::write(fx.base.join("dave.pw"), "Initial-Passw0rd-from-the-plan").unwrap();
    let runners = cutover::runners::runners_for(&fx.plan, &fx.graph, &fx.base);
    let state = store(&fx, "state.db");

    // Inside a batch: the throttled request alone is sent again after its Retry-After.
    fake.fail_next("GET", "/users/", 429, Some(1), 1);
    assert!(matches!(
        observe(&fx, &runners, state.as_ref()),
        PlannedChange::Create { .. }
    ));
    let batches: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.target == "/v1.0/$batch")
        .collect();
    assert_eq!(batches.len(), 2, "the throttled user read is batched again");
    assert!(batches[1].at.duration_since(batches[0].at) >= Duration::from_secs(1));

    let sku_reads = fake.count("GET", "/v1.0/subscribedSkus");
    fake.fail_next("GET", "/users/", 429, Some(1), 1);
    fake.fail_next("GET", "/subscribedSkus", 503, Some(0), 2);
    fake.fail_next("POST", "/users/", 500, None, 1);
    let report = apply(
        &fx,
        &runners,
        &state,
        &mut VecSink::default(),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(report.outcome, WalkOutcome::Succeeded, "{report:#?}");
    let requests = fake.requests();
    let user_reads: Vec<_> = requests
        .iter()
        .filter(|r| {
            r.method == "GET"
                && r.target
                    .starts_with(&format!("/v1.0/users/{}?", mailbox.login))
        })
        .collect();
    assert_eq!(user_reads.len(), 2, "429, then the answer");
    assert!(
        user_reads[1].at.duration_since(user_reads[0].at) >= Duration::from_secs(1),
        "Retry-After: 1 is honoured"
    );
    assert_eq!(
        fake.count("GET", "/v1.0/subscribedSkus") - sku_reads,
        3,
        "503 twice, then the answer"
    );
    let created = fake.user(&mailbox.login).unwrap();
    assert_eq!(
        fake.count("POST", &format!("/v1.0/users/{}/assignLicense", created.id)),
        2,
        "500, then assigned"
    );
    assert_eq!(
        created.password.as_deref(),
        Some("Initial-Passw0rd-from-the-plan")
    );
    assert!(
        !fx.base.join("out/m365").exists(),
        "no password file when the plan gives the password"
    );
    assert_eq!(fake.seats("EXCHANGESTANDARD"), (3, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_licence_blocks_the_plan_and_apply_creates_nothing() {
    let d = Dovecot::shared();
    let mailbox = d.add_user("erin");
    let fake = tenant(&mailbox, vec![sku("O365_BUSINESS_PREMIUM", 2, 2)], 0);
    let fx = fixture(
        &fake,
        &d,
        &mailbox.login,
        "    licence: O365_BUSINESS_PREMIUM",
        "fake-app-secret-value",
    );
    let runners = cutover::runners::runners_for(&fx.plan, &fx.graph, &fx.base);
    let state = store(&fx, "state.db");
    assert_eq!(
        observe(&fx, &runners, state.as_ref()),
        PlannedChange::Blocked("licence O365_BUSINESS_PREMIUM is short: 0 of 2 free".into())
    );
    let report = apply(
        &fx,
        &runners,
        &state,
        &mut VecSink::default(),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(report.outcome, WalkOutcome::Failed, "{report:#?}");
    let StepResult::Failed { error } = &report.steps[&fx.step] else {
        panic!("{report:#?}");
    };
    assert!(
        error.contains("licence O365_BUSINESS_PREMIUM is short: no seat free (0 of 2 free)"),
        "{error}"
    );
    assert!(
        fake.user(&mailbox.login).is_none(),
        "no user without the seat they need"
    );
    assert_eq!(fake.count_exact("POST", "/v1.0/users"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_while_waiting_for_the_mailbox_interrupts_and_the_next_apply_resumes() {
    let d = Dovecot::shared();
    let mailbox = d.add_user("finn");
    // Far more "not yet" answers than the test waits for.
    let fake = Arc::new(tenant(
        &mailbox,
        vec![sku("O365_BUSINESS_BASIC", 1, 0)],
        1000,
    ));
    let fx = fixture(
        &fake,
        &d,
        &mailbox.login,
        "    licence: O365_BUSINESS_BASIC",
        "fake-app-secret-value",
    );
    let runners = cutover::runners::runners_for(&fx.plan, &fx.graph, &fx.base);
    let state = store(&fx, "state.db");
    let cancel = CancellationToken::new();
    let watcher = {
        let (fake, cancel) = (Arc::clone(&fake), cancel.clone());
        std::thread::spawn(move || {
            let polls = || {
                fake.requests()
                    .iter()
                    .filter(|r| r.target.ends_with("/mailboxSettings"))
                    .count()
            };
            while polls() < 2 {
                std::thread::sleep(Duration::from_millis(20));
            }
            cancel.cancel();
        })
    };
    let report = apply(&fx, &runners, &state, &mut VecSink::default(), cancel).await;
    watcher.join().unwrap();
    assert_eq!(report.outcome, WalkOutcome::Interrupted, "{report:#?}");
    assert_eq!(report.steps[&fx.step], StepResult::Interrupted);
    let created = fake.user(&mailbox.login).unwrap();
    assert_eq!(created.licences.len(), 1);

    // The mailbox arrives; the next apply finds user and licence and only waits for it.
    fake.set_mailbox_ready(&mailbox.login);
    let report = apply(
        &fx,
        &runners,
        &state,
        &mut VecSink::default(),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(report.outcome, WalkOutcome::Succeeded, "{report:#?}");
    assert_eq!(fake.count_exact("POST", "/v1.0/users"), 1);
    assert_eq!(fake.seats("O365_BUSINESS_BASIC"), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_client_secret_shows_the_aadsts_error_and_never_the_secret() {
    let d = Dovecot::shared();
    let mailbox = d.add_user("gail");
    let fake = tenant(&mailbox, vec![sku("O365_BUSINESS_BASIC", 1, 0)], 0);
    let secret = "Wrong-App-Secret-9c2f1a";
    let fx = fixture(
        &fake,
        &d,
        &mailbox.login,
        "    licence: O365_BUSINESS_BASIC",
        secret,
    );
    let runners = cutover::runners::runners_for(&fx.plan, &fx.graph, &fx.base);
    let state = store(&fx, "state.db");
    let PlannedChange::Blocked(why) = observe(&fx, &runners, state.as_ref()) else {
        panic!("a wrong secret blocks the preview");
    };
    let mut log = JsonlEventLog::open(fx.base.join("events.jsonl")).unwrap();
    let report = apply(&fx, &runners, &state, &mut log, CancellationToken::new()).await;
    drop(log);
    assert_eq!(report.outcome, WalkOutcome::Failed, "{report:#?}");
    let StepResult::Failed { error } = &report.steps[&fx.step] else {
        panic!("{report:#?}");
    };
    for text in [&why, error] {
        for part in [
            "m365 tenant `contoso.onmicrosoft.com`",
            "app `11111111-2222-3333-4444-555555555555`",
            "HTTP 401",
            "invalid_client",
            "AADSTS7000215: Invalid client secret provided",
        ] {
            assert!(text.contains(part), "{part} in {text}");
        }
        assert!(!text.contains(secret), "{text}");
    }
    assert_eq!(
        fake.count("GET", "/v1.0/"),
        0,
        "no Graph call without a token"
    );
    drop(runners);
    assert_nowhere(&fx.base, &[secret], &[]);
}

/// The seed plan's `user.*` steps through the CLI, with its target pointed at the fake and
/// at a Dovecot holding the five mailboxes (`<user>@acme.onmicrosoft.com`, the logins the
/// plan's `initial_domain` gives).
#[test]
fn the_seed_plan_applies_its_user_steps() {
    let imap_token = format!("seed-imap-token-{}", std::process::id());
    let people = ["alice", "dave", "info", "bob", "carol"];
    let logins: Vec<(String, String)> = people
        .iter()
        .map(|p| (format!("{p}@acme.onmicrosoft.com"), imap_token.clone()))
        .collect();
    let d = Dovecot::start_with(&logins);
    let mut config = FakeTenant::new(&["acme.co.uk", "acme.com"]);
    config.tenant = "acme.onmicrosoft.com".into();
    config.client_id = "6f1c2b0e-8a4d-4c39-9a57-3d2f0e4b7a10".into();
    config.client_secret = "acme-graph-secret-0b9e".into();
    config.initial_domain = "acme.onmicrosoft.com".into();
    config.mailbox_polls = 1;
    config.skus = vec![
        sku("O365_BUSINESS_PREMIUM", 5, 1),
        sku("EXCHANGESTANDARD", 2, 0),
        sku("O365_BUSINESS_BASIC", 10, 7),
    ];
    config
        .scope_tokens
        .insert(LOOPBACK_SCOPE.into(), imap_token.clone());
    let fake = GraphFake::start(config);
    // Alice is there already, licensed, with her aliases.
    fake.add_user(
        "alice@acme.co.uk",
        "Alice Smith",
        &["O365_BUSINESS_PREMIUM"],
    );
    fake.add_address("alice@acme.co.uk", "smtp:accounts@acme.co.uk");
    fake.add_address("alice@acme.co.uk", "smtp:alice@acme.com");

    let dir = tempfile::tempdir().unwrap();
    let base = dir.path();
    let seed = std::fs::read_to_string("plans/acme-to-m365.yaml").unwrap();
    let patched = seed.replace(
        "    client_secret: { env: ACME_GRAPH_SECRET }\n",
        &format!(
            "    client_secret: {{ file: app.secret }}\n    token_endpoint: {}\n  graph: {{ endpoint: \"{}\" }}\n  imap: {{ host: 127.0.0.1, port: {}, ca_file: {} }}\n",
            fake.token_url,
            fake.root,
            d.imaps_port,
            d.ca_file().display()
        ),
    );
    assert_ne!(patched, seed, "the seed plan's target was patched");
    std::fs::write(base.join("acme-to-m365.yaml"), &patched).unwrap();
    std::fs::write(base.join("app.secret"), "acme-graph-secret-0b9e").unwrap();
    std::os::unix::fs::symlink(
        std::fs::canonicalize("plans/acme").unwrap(),
        base.join("acme"),
    )
    .unwrap();
    let secrets_dir = base.join("secrets");
    std::fs::create_dir(&secrets_dir).unwrap();
    std::fs::write(secrets_dir.join("info-ionos.txt"), "unused").unwrap();
    let plan_file = base.join("acme-to-m365.yaml");
    let plan_path = plan_file.to_str().unwrap();

    let planned = run(&["plan", "--target", "user.*", plan_path]);
    assert_eq!(
        planned.code,
        ExitCode::Ok,
        "{}{}",
        planned.stdout,
        planned.stderr
    );
    insta::assert_snapshot!("seed-user-plan", planned.stdout);

    let applied = run(&[
        "apply",
        "--yes",
        "--progress",
        "plain",
        "--target",
        "user.*",
        plan_path,
    ]);
    assert_eq!(
        applied.code,
        ExitCode::Ok,
        "{}\n{}",
        applied.stdout,
        applied.stderr
    );
    for person in ["dave", "info", "bob", "carol"] {
        let user = fake.user(&format!("{person}@acme.co.uk")).expect("created");
        assert_eq!(user.licences.len(), 1, "{person}");
        let file = base.join(format!("cutover-out/m365/{person}.initial-password.txt"));
        assert_eq!(
            std::fs::read_to_string(&file).unwrap().lines().last(),
            user.password.as_deref(),
            "{person}"
        );
    }
    assert_eq!(
        fake.seats("O365_BUSINESS_PREMIUM"),
        (5, 4),
        "one before, alice; dave, bob"
    );
    assert_eq!(fake.seats("EXCHANGESTANDARD"), (2, 1), "info");
    assert_eq!(fake.seats("O365_BUSINESS_BASIC"), (10, 8), "carol");

    let report = std::fs::read_to_string(base.join("cutover-out/acme-to-m365-report.md")).unwrap();
    insta::assert_snapshot!("seed-user-report", report);
    let script = std::fs::read(base.join("cutover-out/acme-to-m365-exchange-online.ps1")).unwrap();
    insta::assert_snapshot!("seed-exchange-script", String::from_utf8(script).unwrap());

    // Everything is there now: the plan says so, apply does nothing more.
    let again = run(&["plan", "--target", "user.*", plan_path]);
    assert!(
        again
            .stdout
            .contains("Plan: 0 to create, 0 to change, 5 unchanged."),
        "{}",
        again.stdout
    );
    assert_eq!(fake.count_exact("POST", "/v1.0/users"), 4);

    let passwords: Vec<String> = ["dave", "info", "bob", "carol"]
        .iter()
        .map(|p| {
            fake.user(&format!("{p}@acme.co.uk"))
                .unwrap()
                .password
                .unwrap()
        })
        .collect();
    let mut secrets: Vec<&str> = passwords.iter().map(String::as_str).collect();
    secrets.push("acme-graph-secret-0b9e");
    secrets.push(&imap_token);
    let out = format!(
        "{}{}{}{}",
        planned.stdout, planned.stderr, applied.stdout, applied.stderr
    );
    for s in &secrets {
        assert!(!out.contains(s), "{s} printed");
    }
    let password_dir = base.join("cutover-out/m365");
    assert_nowhere(base, &secrets, &[&password_dir]);
}

/// No file under `dir` (recursively, symlinks not followed) holds any of `secrets`, except
/// the files or folders in `allowed` and the plan's own secret files.
fn assert_nowhere(dir: &Path, secrets: &[&str], allowed: &[&Path]) {
    let mut checked = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        if allowed.iter().any(|a| path.starts_with(a)) {
            continue;
        }
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            stack.extend(
                std::fs::read_dir(&path)
                    .unwrap()
                    .flatten()
                    .map(|e| e.path()),
            );
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy();
        if !meta.is_file() || name.ends_with(".secret") || name.ends_with(".pw") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        for s in secrets {
            assert!(
                !bytes.windows(s.len()).any(|w| w == s.as_bytes()),
                "{s} leaked into {}",
                path.display()
            );
        }
        checked += 1;
    }
    assert!(checked > 0, "some files were checked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mailbox_the_app_cannot_open_says_how_to_grant_access() {
    let d = Dovecot::shared();
    let mailbox = d.add_user("hana");
    // The tenant's token is not what this mailbox accepts: as when the app has no FullAccess.
    let stranger = User {
        login: mailbox.login.clone(),
        password: "a-token-the-mailbox-refuses".into(),
    };
    let fake = tenant(&stranger, vec![sku("O365_BUSINESS_BASIC", 1, 0)], 0);
    fake.add_user(&mailbox.login, "Hana", &["O365_BUSINESS_BASIC"]);
    let fx = fixture(
        &fake,
        &d,
        &mailbox.login,
        "    display_name: Hana\n    licence: O365_BUSINESS_BASIC",
        "fake-app-secret-value",
    );
    let runners = cutover::runners::runners_for(&fx.plan, &fx.graph, &fx.base);
    let state = store(&fx, "state.db");
    let report = apply(
        &fx,
        &runners,
        &state,
        &mut VecSink::default(),
        CancellationToken::new(),
    )
    .await;
    let StepResult::Failed { error } = &report.steps[&fx.step] else {
        panic!("{report:#?}");
    };
    assert!(
        error.contains("login rejected")
            && error.contains("run out/graph-test-exchange-online.ps1")
            && error.contains("Add-MailboxPermission"),
        "{error}"
    );
    let changes = cutover::connectors::graph::ExchangeChange::from_checkpoints(
        &state.checkpoints(&fx.step).unwrap(),
    );
    assert_eq!(
        changes,
        vec![cutover::connectors::graph::ExchangeChange::GrantAppAccess {
            mailbox: mailbox.login.clone(),
            app_id: "11111111-2222-3333-4444-555555555555".into(),
        }]
    );
}
