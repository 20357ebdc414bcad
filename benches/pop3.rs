//! POP3 against IMAP, same mailbox: one INBOX of small messages (1–6 KB, `CUTOVER_BENCH_MSGS`,
//! default 3,000) on a throwaway Dovecot, copied by the engine into an IMAP mailbox on a
//! second Dovecot — once read over IMAP, once over POP3 — on loopback and through a delay
//! proxy giving a round trip of `CUTOVER_BENCH_RTT_MS` (default 20) to both servers. Prints
//! each copy's messages per second (the median of `CUTOVER_BENCH_RUNS`, default 3, runs
//! taking turns) and the ratios the POP3 path is held to: on loopback at least 80 % of the
//! IMAP rate, at 20 ms at least 300 messages/s. Asserts only that every message was copied
//! once.
//!
//! Run: `scripts/bench-pop3.sh` (release build).

#[allow(dead_code)]
#[path = "../tests/support/dovecot.rs"]
mod dovecot;
#[allow(dead_code)]
mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use cutover::connectors::imap::ImapClient;
use cutover::connectors::mail::RawMessage;
use cutover::connectors::net::{Credentials, Endpoint};
use cutover::connectors::pop3::Pop3Client;
use cutover::plan::model::Tls;
use dovecot::{Dovecot, User};
use support::delay_proxy::DelayProxy;
use support::{apply, env_num};

/// A mail of 1–6 KB with the headers a client writes and a delivery's `Received:`.
fn mail(n: usize) -> RawMessage {
    // A fixed pseudo-random size per message, so every run copies the same mailbox.
    let size = 1024 + (n.wrapping_mul(2_654_435_761) % (5 * 1024));
    let day = 1 + n % 28;
    let mut text = format!(
        "Received: from mx.example.test by mail.example.test; Mon, {day} Jan 2024 10:{:02}:{:02} +0000\r\n\
         From: Sender {n} <sender{n}@example.test>\r\nTo: bench@example.test\r\n\
         Subject: Bench message {n}\r\nDate: Mon, {day} Jan 2024 10:{:02}:{:02} +0000\r\n\
         Message-ID: <bench{n}@example.test>\r\n\r\n",
        n % 60,
        n / 60 % 60,
        n % 60,
        n / 60 % 60
    );
    while text.len() < size {
        text.push_str("Some text of an ordinary business mail, line after line of it.\r\n");
    }
    RawMessage::new(text.into_bytes())
}

fn imaps(d: &Dovecot) -> Endpoint {
    Endpoint::new("127.0.0.1", d.imaps_port, Tls::Implicit).with_ca_file(d.ca_file())
}

fn creds(u: &User) -> Credentials {
    Credentials::password(&u.login, &u.password)
}

/// Stores `count` messages in the user's INBOX; returns their total size.
async fn load(d: &Dovecot, u: &User, count: usize) -> u64 {
    let mut c = ImapClient::connect(&imaps(d), &creds(u))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", d.logs()));
    let mut bytes = 0;
    let all: Vec<RawMessage> = (0..count).map(mail).collect();
    for batch in all.chunks(64) {
        let refs: Vec<&RawMessage> = batch.iter().collect();
        for r in c.append_all("INBOX", &refs).await.expect("append") {
            r.expect("append");
        }
        bytes += batch.iter().map(|m| m.len() as u64).sum::<u64>();
    }
    c.logout().await.expect("logout");
    bytes
}

/// Lets Dovecot index the mailbox for both protocols (sizes, UIDLs), so neither copy pays
/// the server's first look.
async fn warm_up(d: &Dovecot, u: &User) {
    let mut c = ImapClient::connect(&imaps(d), &creds(u))
        .await
        .expect("imap");
    c.examine("INBOX").await.expect("examine");
    let mut f = c.uid_fetch_headers("1:*").await.expect("fetch");
    while f.next().await.expect("fetch").is_some() {}
    c.logout().await.expect("logout");
    let pop = Endpoint::new("127.0.0.1", d.pop3s_port, Tls::Implicit).with_ca_file(d.ca_file());
    let mut p = Pop3Client::connect(&pop, &creds(u)).await.expect("pop3");
    p.messages().await.expect("uidl");
    p.quit().await.expect("quit");
}

/// Copies with `yaml` (its `copy.*` step only); returns seconds.
async fn copy(yaml: &str, base: &Path, expected: u64) -> f64 {
    let (secs, counts, _) = apply(yaml, base, "state.db", "copy.*").await;
    assert_eq!(counts.items, expected, "every message copied once");
    secs
}

/// One side of a copy: a login on a loopback port, and the CA of that server.
struct Side<'a> {
    user: &'a User,
    port: u16,
    ca: &'a Path,
}

/// A plan copying `src` (read as `kind`) into `dst`'s IMAP mailbox.
fn plan_yaml(base: &Path, kind: &str, src: Side<'_>, dst: Side<'_>) -> String {
    std::fs::write(base.join("src.pw"), &src.user.password).expect("pw");
    std::fs::write(base.join("dst.pw"), &dst.user.password).expect("pw");
    let server = |side: &Side<'_>| {
        format!(
            "host: 127.0.0.1, port: {}, tls: implicit, ca_file: {}",
            side.port,
            side.ca.display()
        )
    };
    format!(
        "version: 1\nname: bench\ndomain: example.test\ntarget: {{ kind: imap, {} }}\nsources:\n  old: {{ kind: {kind}, {} }}\nusers:\n  - email: bench@example.test\n    target_login: {{ login: {}, password: {{ file: dst.pw }} }}\n    migrate:\n      - {{ from: old, login: {}, password: {{ file: src.pw }} }}\n",
        server(&dst),
        server(&src),
        dst.user.login,
        src.user.login
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let messages = env_num("CUTOVER_BENCH_MSGS", 3000);
    let rtt = Duration::from_millis(env_num("CUTOVER_BENCH_RTT_MS", 20) as u64);
    // The servers do not fsync: both copies store the same messages into the same target,
    // and on a shared machine one fsync stalled by other work would decide the figures
    // rather than the protocols. (cutover's own state still commits durably per batch.)
    let unsynced = "mail_fsync = never\n";
    let (a, b) = (
        Dovecot::start_configured(unsynced),
        Dovecot::start_configured(unsynced),
    );
    let src = a.add_user("src");
    let t = Instant::now();
    let bytes = load(&a, &src, messages).await;
    warm_up(&a, &src).await;
    println!(
        "mailbox: {messages} msgs in INBOX, {:.1} MB, loaded and indexed in {:.1} s",
        bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    // The delayed way to each server: half the round trip each way.
    let one_way = rtt / 2;
    let far = |port: u16| DelayProxy::start(port, one_way).port;
    let (far_imap, far_pop3, far_dst) = (far(a.imaps_port), far(a.pop3s_port), far(b.imaps_port));
    // Each copy several times, the two sources taking turns, so a busy moment of the machine
    // (the servers fsync every message) does not fall on one of them only; the median counts.
    let runs = env_num("CUTOVER_BENCH_RUNS", 3).max(1);
    let mut times: std::collections::BTreeMap<(&str, &str), Vec<f64>> = Default::default();
    for _ in 0..runs {
        for (link, (imap_port, pop3_port, dst_port)) in [
            ("loopback", (a.imaps_port, a.pop3s_port, b.imaps_port)),
            ("rtt", (far_imap, far_pop3, far_dst)),
        ] {
            for (kind, src_port) in [("imap", imap_port), ("pop3", pop3_port)] {
                let dst = b.add_user("dst");
                let dir = tempfile::tempdir().expect("tempdir");
                let (a_ca, b_ca) = (a.ca_file(), b.ca_file());
                let yaml = plan_yaml(
                    dir.path(),
                    kind,
                    Side {
                        user: &src,
                        port: src_port,
                        ca: &a_ca,
                    },
                    Side {
                        user: &dst,
                        port: dst_port,
                        ca: &b_ca,
                    },
                );
                let secs = copy(&yaml, dir.path(), messages as u64).await;
                times.entry((link, kind)).or_default().push(secs);
            }
        }
    }
    let mut rates = std::collections::BTreeMap::new();
    for ((link, kind), mut secs) in times {
        secs.sort_by(f64::total_cmp);
        let median = secs[secs.len() / 2];
        let rate = messages as f64 / median;
        let label = if link == "rtt" {
            format!("{} ms round trip", rtt.as_millis())
        } else {
            link.to_string()
        };
        let all: Vec<String> = secs.iter().map(|s| format!("{s:.2}")).collect();
        println!(
            "{kind}->imap, {label}: {messages} msgs, {:.1} MB in {median:.2} s (median of {}: {} s) = {rate:.0} msgs/s",
            bytes as f64 / 1e6,
            secs.len(),
            all.join(", ")
        );
        rates.insert((link, kind), rate);
    }
    let ratio = rates[&("loopback", "pop3")] / rates[&("loopback", "imap")];
    println!(
        "pop3/imap on loopback: {:.0} % of the IMAP rate (goal: at least 80 %)",
        ratio * 100.0
    );
    println!(
        "pop3 at {} ms round trip: {:.0} msgs/s (goal: at least 300); imap there: {:.0} msgs/s",
        rtt.as_millis(),
        rates[&("rtt", "pop3")],
        rates[&("rtt", "imap")]
    );
}
