//! The DNS cutover against real Knot servers started by the tests: lower-ttl → wait →
//! cutover → verify → rollback over RFC 2136 with a secondary that lags, a wrong TSIG key,
//! and the seed plan's own `dns:` section (the manual provider) applied end to end.
//!
//! Waits are real but short: the zones' TTLs are 1–3 seconds and `ahead` is 2s.

mod common;
mod support;

use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{run, Captured};
use cutover::cli::ExitCode;
use support::knot::{Knot, KEY_NAME};

const SECRET: &[u8] = b"cutover test key, 32 bytes long!";

fn secret_b64(secret: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(secret)
}

/// The old host's zone: MX and SPF at IONOS, a verification TXT of another service, TTL 3.
const ACME_ZONE: &str = "$ORIGIN acme.co.uk.
$TTL 3
@ IN SOA ns1.acme.co.uk. hostmaster.acme.co.uk. 1 3600 600 86400 1
@ IN NS ns1.acme.co.uk.
ns1 IN A 127.0.0.1
@ IN MX 10 mx00.ionos.co.uk.
@ IN MX 10 mx01.ionos.co.uk.
@ IN TXT \"v=spf1 include:_spf-eu.ionos.com ~all\"
@ IN TXT \"google-site-verification=abc123\"
www IN A 192.0.2.10
";

fn plan_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("cutover-dns-")
        .tempdir()
        .unwrap()
}

/// A plan with an rfc2136 provider on `primary`, reading and verifying at `nameservers`.
fn rfc2136_plan(dir: &Path, primary: &Knot, nameservers: &[&Knot], secret: &[u8]) -> PathBuf {
    std::fs::write(dir.join("tsig.key"), secret_b64(secret)).unwrap();
    let servers: Vec<String> = nameservers
        .iter()
        .map(|k| format!("\"{}\"", k.addr()))
        .collect();
    let plan = format!(
        "version: 1
name: acme-dns
domain: acme.co.uk
target:
  kind: m365
  tenant: acme.onmicrosoft.com
  initial_domain: acme.onmicrosoft.com
  auth: {{ client_id: 6f1c2b0e-8a4d-4c39-9a57-3d2f0e4b7a10, client_secret: {{ env: UNUSED_SECRET }} }}
users: []
dns:
  provider: rfc2136
  rfc2136:
    server: 127.0.0.1
    port: {port}
    tsig: {{ name: {KEY_NAME}, secret: {{ file: tsig.key }} }}
  nameservers: [{servers}]
  spf: {{ drop: [\"include:_spf-eu.ionos.com\"] }}
  lower_ttl: {{ to: 1, ahead: 2s }}
  propagation_timeout: 60s
settings:
  output_dir: out
",
        port = primary.port,
        servers = servers.join(", ")
    );
    let path = dir.join("plan.yaml");
    std::fs::write(&path, plan).unwrap();
    path
}

fn text(c: &Captured) -> String {
    format!("{}{}", c.stdout, c.stderr)
}

/// Waits until `check` holds (a server shows a change), failing the test after 30 s.
fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `cutover <args>` on a thread, so the test can act on the servers meanwhile.
fn spawn(args: Vec<String>) -> thread::JoinHandle<Captured> {
    thread::spawn(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&args)
    })
}

fn args(list: &[&str], plan: &Path) -> Vec<String> {
    let mut out: Vec<String> = list.iter().map(|s| s.to_string()).collect();
    out.push(plan.display().to_string());
    out
}

/// Runs `cutover <list> <plan>` here.
fn cmd(list: &[&str], plan: &Path) -> Captured {
    let all = args(list, plan);
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    run(&all)
}

fn redacted(text: &str, dir: &Path) -> String {
    let text = text.replace(&dir.display().to_string(), "[DIR]");
    let text = regex::Regex::new(r"127\.0\.0\.1:\d+")
        .unwrap()
        .replace_all(&text, "127.0.0.1:[PORT]")
        .into_owned();
    regex::Regex::new(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(\d+s left")
        .unwrap()
        .replace_all(&text, "[TIME] ([N]s left")
        .into_owned()
}

fn status_json(plan: &Path) -> serde_json::Value {
    let status = run(&["status", "--json", &plan.display().to_string()]);
    serde_json::from_str(&status.stdout).unwrap()
}

fn step_status<'a>(status: &'a serde_json::Value, step: &str) -> &'a serde_json::Value {
    status
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["step"] == step)
        .unwrap_or_else(|| panic!("no {step} in status"))
}

#[test]
fn rfc2136_lower_wait_cutover_verify_and_rollback_with_a_lagging_secondary() {
    let primary = Knot::primary(&[("acme.co.uk", ACME_ZONE)], &secret_b64(SECRET));
    let secondary = Knot::secondary(&primary, &["acme.co.uk"]);
    let dir = plan_dir();
    let plan = rfc2136_plan(dir.path(), &primary, &[&primary, &secondary], SECRET);
    let original_mx = primary.answer("acme.co.uk", "MX");
    let original_txt = primary.answer("acme.co.uk", "TXT");
    assert_eq!(
        original_mx,
        ["3 MX 10 mx00.ionos.co.uk.", "3 MX 10 mx01.ionos.co.uk."]
    );

    // The preview: what lowering and cutting over would change, RRset by RRset.
    let preview = cmd(&["plan"], &plan);
    assert_eq!(preview.code, ExitCode::Ok, "{}", text(&preview));
    insta::assert_snapshot!("rfc2136-plan", redacted(&preview.stdout, dir.path()));

    // dns.lower-ttl: the primary is updated at once; the poll waits for the secondary.
    let lower = spawn(args(&["apply", "--yes", "--progress", "plain"], &plan));
    wait_until("the lowered TTL at the primary", || {
        primary
            .answer("acme.co.uk", "MX")
            .iter()
            .all(|l| l.starts_with("1 "))
    });
    thread::sleep(Duration::from_millis(800));
    assert!(
        !lower.is_finished(),
        "lower-ttl finished while the secondary still lags"
    );
    assert_eq!(secondary.answer("acme.co.uk", "MX"), original_mx);
    secondary.refresh("acme.co.uk", &primary);
    let lower = lower.join().unwrap();
    // The cutover is not due yet: apply stops there, saying until when.
    assert_eq!(lower.code, ExitCode::Failure, "{}", text(&lower));
    assert!(
        lower.stderr.contains("dns.cutover: waiting: not before"),
        "{}",
        text(&lower)
    );
    let status = status_json(&plan);
    assert_eq!(step_status(&status, "dns.lower-ttl")["status"], "done");
    assert!(step_status(&status, "dns.cutover")["note"]
        .as_str()
        .is_some_and(|n| n.starts_with("not before")));
    let preview = cmd(&["plan"], &plan);
    assert!(
        preview.stdout.contains("dns.cutover not before"),
        "{}",
        preview.stdout
    );

    // dns.cutover with --wait: sleeps out `ahead`/the old TTL, updates, polls both servers.
    let cut = spawn(args(
        &["apply", "--yes", "--wait", "--progress", "plain"],
        &plan,
    ));
    wait_until("the new MX at the primary", || {
        primary.answer("acme.co.uk", "MX") == ["3600 MX 0 acme-co-uk.mail.protection.outlook.com."]
    });
    thread::sleep(Duration::from_millis(800));
    assert!(
        !cut.is_finished(),
        "the cutover's poll ended while the secondary lags"
    );
    secondary.refresh("acme.co.uk", &primary);
    let cut = cut.join().unwrap();
    assert_eq!(cut.code, ExitCode::Ok, "{}", text(&cut));
    assert!(
        cut.stderr.contains("dns.cutover: sleeping until"),
        "{}",
        cut.stderr
    );
    for server in [&primary, &secondary] {
        assert_eq!(
            server.answer("acme.co.uk", "TXT"),
            [
                "3600 TXT \"google-site-verification=abc123\"",
                "3600 TXT \"v=spf1 include:spf.protection.outlook.com ~all\"",
            ]
        );
        assert_eq!(
            server.answer("autodiscover.acme.co.uk", "CNAME"),
            ["3600 CNAME autodiscover.outlook.com."]
        );
        assert_eq!(
            server.answer("selector2._domainkey.acme.co.uk", "CNAME"),
            ["3600 CNAME selector2-acme-co-uk._domainkey.acme.onmicrosoft.com."]
        );
    }
    // The report lists what each authoritative server answered.
    let report = std::fs::read_to_string(dir.path().join("out/acme-dns-report.md")).unwrap();
    insta::assert_snapshot!("rfc2136-report-dns", {
        let from = report
            .find("DNS of")
            .expect("the report has the DNS verification");
        redacted(&report[from..], dir.path())
    });

    // Nothing left to do; the plan shows what a rollback would change.
    let preview = cmd(&["plan"], &plan);
    insta::assert_snapshot!("rfc2136-plan-after", redacted(&preview.stdout, dir.path()));

    // Rollback restores the records as they were before lower-ttl, TTL included.
    let back = spawn(args(&["rollback", "dns", "--yes"], &plan));
    wait_until("the old MX at the primary", || {
        primary.answer("acme.co.uk", "MX") == original_mx
    });
    thread::sleep(Duration::from_millis(800));
    assert!(
        !back.is_finished(),
        "the rollback's poll ended while the secondary lags"
    );
    secondary.refresh("acme.co.uk", &primary);
    let back = back.join().unwrap();
    assert_eq!(back.code, ExitCode::Ok, "{}", text(&back));
    for server in [&primary, &secondary] {
        assert_eq!(server.answer("acme.co.uk", "MX"), original_mx);
        assert_eq!(server.answer("acme.co.uk", "TXT"), original_txt);
        assert!(server.answer("autodiscover.acme.co.uk", "CNAME").is_empty());
    }
    let status = status_json(&plan);
    assert_eq!(step_status(&status, "dns.cutover")["status"], "pending");
    assert_eq!(step_status(&status, "dns.lower-ttl")["status"], "pending");
    let again = cmd(&["rollback", "dns", "--yes"], &plan);
    assert!(
        again.stdout.starts_with("Nothing to roll back"),
        "{}",
        text(&again)
    );
}

#[test]
fn a_wrong_tsig_key_is_named_and_changes_nothing() {
    let primary = Knot::primary(&[("acme.co.uk", ACME_ZONE)], &secret_b64(SECRET));
    let dir = plan_dir();
    let plan = rfc2136_plan(
        dir.path(),
        &primary,
        &[&primary],
        b"not the key the server knows....",
    );
    let serial = primary.serial("acme.co.uk");
    let mx = primary.answer("acme.co.uk", "MX");
    let result = cmd(&["apply", "--yes", "--progress", "plain"], &plan);
    assert_eq!(result.code, ExitCode::Failure, "{}", text(&result));
    let status = status_json(&plan);
    let error = step_status(&status, "dns.lower-ttl")["last_error"]
        .as_str()
        .unwrap()
        .to_string();
    insta::assert_snapshot!("wrong-tsig-key", redacted(&error, dir.path()));
    assert!(!error.contains("protocol error"), "{error}");
    assert_eq!(primary.serial("acme.co.uk"), serial, "the zone changed");
    assert_eq!(primary.answer("acme.co.uk", "MX"), mx);
    // Nothing of the secret reaches the state or the output.
    let secret = secret_b64(b"not the key the server knows....");
    assert!(!text(&result).contains(&secret));
}

const ACME_COM_ZONE: &str = "$ORIGIN acme.com.
$TTL 1
@ IN SOA ns1.acme.com. hostmaster.acme.com. 1 3600 600 86400 1
@ IN NS ns1.acme.com.
ns1 IN A 127.0.0.1
@ IN MX 10 mx00.ionos.com.
";

/// The seed plan with its `dns:` section as committed, made runnable here: no users (their
/// copies would need the servers the seed names) and no gates that refer to them, and one
/// test-only line, `nameservers:`, pointing the reads at the test server.
fn seed_dns_plan(dir: &Path, server: &Knot) -> PathBuf {
    let seed = std::fs::read_to_string("plans/acme-to-m365.yaml").unwrap();
    let users = seed.find("\nusers:").unwrap();
    let dns = seed.find("\ndns:").unwrap();
    let manual = seed.find("\nmanual:").unwrap();
    let settings = seed.find("\nsettings:").unwrap();
    let dns_section = seed[dns..manual].replacen(
        "\ndns:\n",
        &format!("\ndns:\n  nameservers: [\"{}\"]\n", server.addr()),
        1,
    );
    let plan = format!(
        "{}\nusers: []\n{}{}",
        &seed[..users],
        dns_section,
        &seed[settings..]
    );
    let path = dir.join("acme-to-m365.yaml");
    std::fs::write(&path, plan).unwrap();
    path
}

/// What the person does at the registrar: the seed's records for both domains.
fn registrar_update(server: &Knot, zone: &str, lines: &[&str]) {
    let mut script = format!("server 127.0.0.1 {}\nzone {zone}\n", server.port);
    for line in lines {
        script.push_str(line);
        script.push('\n');
    }
    script.push_str("send\n");
    let mut child = std::process::Command::new("knsupdate")
        .arg("-y")
        .arg(format!("hmac-sha256:{KEY_NAME}:{}", secret_b64(SECRET)))
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("run knsupdate (Debian package knot-dnsutils)");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "knsupdate failed");
}

#[test]
fn the_seed_plans_dns_section_validates_previews_and_applies_by_hand() {
    let zone_1s = ACME_ZONE.replace("$TTL 3", "$TTL 1");
    let server = Knot::primary(
        &[("acme.co.uk", &zone_1s), ("acme.com", ACME_COM_ZONE)],
        &secret_b64(SECRET),
    );
    let dir = plan_dir();
    let plan = seed_dns_plan(dir.path(), &server);
    let valid = cmd(&["validate"], &plan);
    assert_eq!(valid.code, ExitCode::Ok, "{}", text(&valid));

    let preview = cmd(&["plan"], &plan);
    assert_eq!(preview.code, ExitCode::Ok, "{}", text(&preview));
    insta::assert_snapshot!("seed-plan", redacted(&preview.stdout, dir.path()));

    // TTLs of 1 s need no lowering; the cutover waits them out, then asks for the person.
    let first = cmd(&["apply", "--yes", "--wait", "--progress", "plain"], &plan);
    assert_eq!(first.code, ExitCode::Failure, "{}", text(&first));
    let from = first
        .stderr
        .find("dns.cutover: waiting for approval")
        .unwrap_or_else(|| panic!("{}", text(&first)));
    insta::assert_snapshot!(
        "seed-instructions",
        redacted(&first.stderr[from..], dir.path())
    );
    // The person changes acme.co.uk at the registrar and approves.
    registrar_update(
        &server,
        "acme.co.uk",
        &[
            "update delete acme.co.uk. MX",
            "update add acme.co.uk. 3600 MX 0 acme-co-uk.mail.protection.outlook.com.",
            "update delete acme.co.uk. TXT \"v=spf1 include:_spf-eu.ionos.com ~all\"",
            "update delete acme.co.uk. TXT \"google-site-verification=abc123\"",
            "update add acme.co.uk. 3600 TXT \"google-site-verification=abc123\"",
            "update add acme.co.uk. 3600 TXT \"v=spf1 include:spf.protection.outlook.com ~all\"",
            "update add acme.co.uk. 3600 TXT \"MS=ms48151623\"",
            "update add autodiscover.acme.co.uk. 3600 CNAME autodiscover.outlook.com.",
            "update add selector1._domainkey.acme.co.uk. 3600 CNAME selector1-acme-co-uk._domainkey.acme.onmicrosoft.com.",
            "update add selector2._domainkey.acme.co.uk. 3600 CNAME selector2-acme-co-uk._domainkey.acme.onmicrosoft.com.",
        ],
    );
    let approve = run(&["approve", &plan.display().to_string(), "dns.cutover"]);
    assert_eq!(approve.code, ExitCode::Ok, "{}", text(&approve));
    // acme.com is still as it was: the poll waits until the person did that one too.
    let second = spawn(args(&["apply", "--yes", "--progress", "plain"], &plan));
    thread::sleep(Duration::from_millis(1500));
    assert!(
        !second.is_finished(),
        "the poll ended before acme.com was changed"
    );
    registrar_update(
        &server,
        "acme.com",
        &[
            "update delete acme.com. MX",
            "update add acme.com. 3600 MX 0 acme-com.mail.protection.outlook.com.",
            "update add acme.com. 3600 TXT \"v=spf1 include:spf.protection.outlook.com -all\"",
            "update add autodiscover.acme.com. 3600 CNAME autodiscover.outlook.com.",
            "update add selector1._domainkey.acme.com. 3600 CNAME selector1-acme-com._domainkey.acme.onmicrosoft.com.",
            "update add selector2._domainkey.acme.com. 3600 CNAME selector2-acme-com._domainkey.acme.onmicrosoft.com.",
        ],
    );
    let second = second.join().unwrap();
    assert_eq!(second.code, ExitCode::Ok, "{}", text(&second));
    // Done: the plan shows what a rollback would change.
    let after = cmd(&["plan"], &plan);
    assert!(after.stdout.contains("= dns.cutover"), "{}", after.stdout);
    assert!(
        after.stdout.contains(
            "~ MX acme.com 3600 → 1: 0 acme-com.mail.protection.outlook.com → 10 mx00.ionos.com"
        ),
        "{}",
        after.stdout
    );
}
