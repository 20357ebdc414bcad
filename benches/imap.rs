//! Server copy throughput: a generated corpus on one throwaway Dovecot copied by the engine to
//! a second one (IMAP → IMAP), then to a local maildir (IMAP → maildir). Prints first-copy
//! msgs/s and MB/s, the rerun time (same state: the step is done; lost state: a full compare
//! deduped at the target) and peak RSS. Prints figures, asserts only correctness of counts.
//!
//! Scale: `CUTOVER_BENCH_MSGS` (default 5000), `CUTOVER_BENCH_ATTACH_KB` (attachment size
//! before base64, default 512; one message in 20 has one), `CUTOVER_BENCH_SEED`.
//! Run: `scripts/bench-imap.sh` (release build).
//!
//! `CUTOVER_BENCH_SCENARIO=big` (`scripts/bench-imap.sh big`): the mailbox consultants dread
//! instead — `CUTOVER_BENCH_MSGS` (default 24) messages each with one attachment of
//! `CUTOVER_BENCH_ATTACH_KB` (default 22 MiB, ~32 MB a message in base64) in four folders,
//! copied IMAP → IMAP by `cutover apply --target 'copy.*'` (a child process; the copy and the
//! login check it depends on, no verify; `max_message_size_mb: 40`, the
//! default `memory_budget_mb` unless `CUTOVER_BENCH_BUDGET_MB`) and by mbsync (isync), the
//! peer, into two accounts of the same target server in the same run: wall time and peak RSS
//! of each process (`wait4`), and their ratios.

#[allow(dead_code)]
#[path = "../tests/support/dovecot.rs"]
mod dovecot;
#[allow(dead_code)]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use cutover::connectors::imap::ImapClient;
use cutover::connectors::mail::{corpus, utf7, Flags, FolderPath, RawMessage};
use cutover::connectors::net::{Credentials, Endpoint};
use cutover::engine::StepResult;
use cutover::plan::model::Tls;
use dovecot::{Dovecot, User};
use support::{apply, apply_copies_measured, env_num, reset_peak_rss, run_measured};

fn endpoint(d: &Dovecot) -> Endpoint {
    Endpoint::new("127.0.0.1", d.imaps_port, Tls::Implicit).with_ca_file(d.ca_file())
}

/// APPENDs the corpus to `user` on `d`; returns (messages, bytes).
async fn load(d: &Dovecot, user: &User, spec: &corpus::CorpusSpec) -> (u64, u64) {
    load_messages(d, user, corpus::generate(spec)).await
}

/// APPENDs `messages` to `user` on `d`, in batches of up to 64 per folder; returns
/// (messages, bytes).
async fn load_messages(
    d: &Dovecot,
    user: &User,
    messages: impl IntoIterator<Item = corpus::CorpusMessage>,
) -> (u64, u64) {
    let mut c = ImapClient::connect(
        &endpoint(d),
        &Credentials::password(&user.login, &user.password),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", d.logs()));
    let delim = c
        .list()
        .await
        .expect("list")
        .iter()
        .find_map(|b| b.delimiter)
        .unwrap_or('.');
    let wire = |f: &FolderPath| {
        if f.is_inbox() {
            "INBOX".to_string()
        } else {
            f.segments()
                .iter()
                .map(|s| utf7::encode(s))
                .collect::<Vec<_>>()
                .join(&delim.to_string())
        }
    };
    let mut created = BTreeSet::new();
    let (mut n, mut bytes) = (0u64, 0u64);
    let mut pending: BTreeMap<String, Vec<RawMessage>> = BTreeMap::new();
    for m in messages {
        let name = wire(&m.folder);
        if name != "INBOX" && created.insert(name.clone()) {
            c.create(&name).await.expect("create");
        }
        n += 1;
        bytes += m.message.len() as u64;
        let batch = pending.entry(name.clone()).or_default();
        let size = m.message.len();
        batch.push(m.message);
        if batch.len() == 64 || batch.len() * size > 128 << 20 {
            let batch = std::mem::take(batch);
            store(&mut c, &name, &batch).await;
        }
    }
    for (name, batch) in &pending {
        store(&mut c, name, batch).await;
    }
    c.logout().await.expect("logout");
    (n, bytes)
}

async fn store(c: &mut ImapClient, mailbox: &str, batch: &[RawMessage]) {
    let refs: Vec<&RawMessage> = batch.iter().collect();
    for r in c.append_all(mailbox, &refs).await.expect("append") {
        r.expect("append");
    }
}

fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU seconds (user + system) this process used so far: how much of a copy is ours versus
/// the servers'.
fn cpu_seconds() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given; RUSAGE_SELF is always valid.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// Four connections per login, one per lane: the figures stay comparable with those from
/// before per-login limits (the default of 3, for web hosts, leaves one of the corpus's four
/// folders to run after the others: up to half again the wall time here).
fn server(d: &Dovecot) -> String {
    format!(
        "host: 127.0.0.1, port: {}, tls: implicit, ca_file: {}, max_connections_per_login: 4",
        d.imaps_port,
        d.ca_file().display()
    )
}

async fn scenario(label: &str, yaml: &str, base: &Path, msgs: u64, bytes: u64) {
    reset_peak_rss();
    let cpu = cpu_seconds();
    let (secs, counts, _) = apply(yaml, base, "first.db", "copy.*").await;
    let cpu = cpu_seconds() - cpu;
    assert_eq!(counts.items, msgs, "{label}: every message copied once");
    let mb = bytes as f64 / 1e6;
    println!(
        "{label}: first copy {msgs} msgs, {mb:.1} MB in {secs:.1} s = {:.0} msgs/s, {:.1} MB/s (cutover CPU {cpu:.1} s)",
        msgs as f64 / secs,
        mb / secs
    );
    let (again, _, result) = apply(yaml, base, "first.db", "copy.*").await;
    assert_eq!(result, StepResult::Unchanged);
    let (delta, counts, _) = apply(yaml, base, "first.db", "delta.*").await;
    assert_eq!(counts.items, 0, "{label}: nothing new");
    let (full, counts, _) = apply(yaml, base, "lost.db", "copy.*").await;
    assert_eq!((counts.items, counts.present), (0, msgs), "{label}: dedupe");
    println!(
        "{label}: rerun {again:.2} s (copy step done: skipped), incremental pass {delta:.2} s (delta step: every folder checked for new mail, none), {full:.1} s (state lost: full compare, 0 copied)"
    );
    println!(
        "{label}: peak RSS {:.1} MB (first copy and reruns; the process, corpus loader excluded)",
        peak_rss_kb() as f64 / 1024.0
    );
}

/// How many messages `user` holds in all folders of `d`.
async fn count_messages(d: &Dovecot, user: &User) -> u64 {
    let mut c = ImapClient::connect(
        &endpoint(d),
        &Credentials::password(&user.login, &user.password),
    )
    .await
    .expect("login");
    let mut n = 0;
    for b in c.list().await.expect("list") {
        if b.is_selectable() {
            n += u64::from(c.examine(&b.name).await.expect("examine").exists);
        }
    }
    c.logout().await.expect("logout");
    n
}

/// The big-attachment scenario (see the module documentation).
async fn big() {
    let messages = env_num("CUTOVER_BENCH_MSGS", 24);
    let attachment = env_num("CUTOVER_BENCH_ATTACH_KB", 22 * 1024) * 1024;
    let spec = corpus::CorpusSpec {
        seed: env_num("CUTOVER_BENCH_SEED", 7) as u64,
        messages,
        attachment_every: 1,
        attachment_size: attachment,
    };
    let folders = ["INBOX", "Archive", "Projects", "Sent"].map(|f| {
        if f == "INBOX" {
            FolderPath::inbox()
        } else {
            FolderPath::parse(f, '/').expect("folder")
        }
    });
    let corpus = corpus::generate(&spec).enumerate().map(|(i, mut m)| {
        m.folder = folders[i % folders.len()].clone();
        m.message.flags = Flags::new();
        m
    });
    let (a, b) = (Dovecot::start(), Dovecot::start());
    let (src, dst, peer) = (a.add_user("src"), b.add_user("dst"), b.add_user("peer"));
    let t = Instant::now();
    let (msgs, bytes) = load_messages(&a, &src, corpus).await;
    println!(
        "corpus: {msgs} msgs of {:.1} MB ({} KiB attachments) in {} folders, {:.1} MB, loaded in {:.1} s",
        bytes as f64 / msgs as f64 / 1e6,
        attachment / 1024,
        folders.len(),
        bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let base = dir.path();
    std::fs::write(base.join("src.pw"), &src.password).expect("pw");
    std::fs::write(base.join("dst.pw"), &dst.password).expect("pw");
    let budget = std::env::var("CUTOVER_BENCH_BUDGET_MB")
        .map(|mb| format!(", memory_budget_mb: {mb}"))
        .unwrap_or_default();
    std::fs::write(
        base.join("plan.yaml"),
        format!(
            "version: 1\nname: big\ndomain: example.test\nsettings: {{ max_message_size_mb: 40, deleted_messages: copy{budget} }}\ntarget: {{ kind: imap, {} }}\nsources:\n  old: {{ kind: imap, {} }}\nusers:\n  - email: bench@example.test\n    target_login: {{ login: {}, password: {{ file: dst.pw }} }}\n    migrate:\n      - {{ from: old, login: {}, password: {{ file: src.pw }} }}\n",
            server(&b),
            server(&a),
            dst.login,
            src.login
        ),
    )
    .expect("plan");
    let (secs, rss) = apply_copies_measured(base);
    assert_eq!(count_messages(&b, &dst).await, msgs, "cutover copied all");

    // mbsync, the peer: the same source into another account of the same target server.
    let account = |name: &str, d: &Dovecot, u: &User| {
        format!(
            "IMAPAccount {name}\nHost localhost\nPort {}\nUser {}\nPass {}\nSSLType IMAPS\nCertificateFile {}\n\nIMAPStore {name}-store\nAccount {name}\n\n",
            d.imaps_port,
            u.login,
            u.password,
            d.ca_file().display()
        )
    };
    let state = base.join("mbsync-state");
    std::fs::create_dir(&state).expect("state dir");
    let config = base.join("mbsyncrc");
    std::fs::write(
        &config,
        format!(
            "{}{}Channel big\nFar :far-store:\nNear :near-store:\nPatterns *\nCreate Near\nSync Pull\nSyncState {}/\n",
            account("far", &a, &src),
            account("near", &b, &peer),
            state.display()
        ),
    )
    .expect("mbsyncrc");
    let (peer_secs, peer_rss) = run_measured(
        Command::new("mbsync")
            .arg("-c")
            .arg(&config)
            .args(["-q", "-a"]),
        "mbsync",
        &base.join("mbsync.stderr"),
    );
    assert_eq!(count_messages(&b, &peer).await, msgs, "mbsync copied all");

    let mb = bytes as f64 / 1e6;
    reset_peak_rss();
    println!(
        "measurement floor (this process's RSS when spawning): {:.0} MB",
        peak_rss_kb() as f64 / 1024.0
    );
    println!(
        "big imap->imap, cutover: {secs:.2} s ({:.1} MB/s), peak RSS {rss:.0} MB (memory_budget_mb {})",
        mb / secs,
        std::env::var("CUTOVER_BENCH_BUDGET_MB").unwrap_or_else(|_| "128, the default".into())
    );
    let version = Command::new("mbsync")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    println!(
        "big imap->imap, mbsync ({version}): {peer_secs:.2} s ({:.1} MB/s), peak RSS {peer_rss:.0} MB",
        mb / peer_secs
    );
    println!(
        "big imap->imap, cutover/mbsync: wall time {:.2}x, peak RSS {:.2}x",
        secs / peer_secs,
        rss / peer_rss
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::var("CUTOVER_BENCH_SCENARIO").as_deref() == Ok("big") {
        big().await;
        return;
    }
    let messages = env_num("CUTOVER_BENCH_MSGS", 5000);
    let spec = corpus::CorpusSpec {
        seed: env_num("CUTOVER_BENCH_SEED", 7) as u64,
        messages,
        attachment_every: 20,
        attachment_size: env_num("CUTOVER_BENCH_ATTACH_KB", 512) * 1024,
    };
    let (a, b) = (Dovecot::start(), Dovecot::start());
    let (src, dst) = (a.add_user("src"), b.add_user("dst"));
    let t = Instant::now();
    let (msgs, bytes) = load(&a, &src, &spec).await;
    println!(
        "corpus: {msgs} msgs, {:.1} MB, loaded (MULTIAPPEND) in {:.1} s",
        bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let base = dir.path();
    std::fs::write(base.join("src.pw"), &src.password).expect("pw");
    std::fs::write(base.join("dst.pw"), &dst.password).expect("pw");
    let user = |target_login: &str| {
        format!(
            "users:\n  - email: bench@example.test\n{target_login}    migrate:\n      - from: old\n        login: {}\n        password: {{ file: src.pw }}\n",
            src.login
        )
    };
    // A manual DNS cutover gives each migration its delta step (the incremental pass).
    // The corpus flags some mail \Deleted; copying it too keeps the figures comparable.
    let head = "version: 1\nname: bench\ndomain: example.test\nsettings: { deleted_messages: copy }\ndns: { provider: manual, records: [{ name: \"@\", type: MX, value: mx.example.test, priority: 0 }] }\n";
    let imap_plan = format!(
        "{head}target: {{ kind: imap, {} }}\nsources:\n  old: {{ kind: imap, {} }}\n{}",
        server(&b),
        server(&a),
        user(&format!(
            "    target_login: {{ login: {}, password: {{ file: dst.pw }} }}\n",
            dst.login
        ))
    );
    scenario("imap->imap", &imap_plan, base, msgs, bytes).await;

    let md_dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(md_dir.path().join("src.pw"), &src.password).expect("pw");
    let md_plan = format!(
        "{head}target: {{ kind: maildir, path: out }}\nsources:\n  old: {{ kind: imap, {} }}\n{}",
        server(&a),
        user("")
    );
    scenario("imap->maildir", &md_plan, md_dir.path(), msgs, bytes).await;
}
