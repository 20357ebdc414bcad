//! The idempotence contract under SIGKILL: `cutover apply` runs as a subprocess over a
//! 2,000-message corpus and is killed at random instants, then run again until it finishes.
//! Every source message must end up at the target exactly once, byte-identical, with its
//! flags, and the state must say every step is done.
//!
//! `CUTOVER_KILL_ROUNDS` sets the number of kills (default 20); `scripts/kill-bench.sh` runs
//! 100 and prints figures.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::apply_process::{apply, resume_until_done};

use cutover::connectors::mail::corpus::{self, CorpusSpec};
use cutover::connectors::mail::maildir::Maildir;
use cutover::connectors::mail::mbox::{MboxReader, MboxVariant};
use cutover::connectors::mail::Flag;
use cutover::state::{SqliteStore, StateStore, StepStatus};

const USERS: [(&str, u64); 2] = [("kim", 11), ("lee", 12)];
const MESSAGES_PER_USER: usize = 1_000;

fn write_plan(dir: &Path) {
    let mut plan = String::from(
        "version: 1\nname: kill\ndomain: kill.example\ntarget: { kind: maildir, path: out }\nsources:\n  export: { kind: mbox }\nsettings: { parallelism: 2, output_dir: reports }\nusers:\n",
    );
    for (user, seed) in USERS {
        let spec = CorpusSpec {
            attachment_every: 50,
            attachment_size: 32 * 1024,
            ..CorpusSpec::new(seed, MESSAGES_PER_USER)
        };
        corpus::write_mbox(&spec, dir.join(format!("{user}.mbox"))).expect("corpus written");
        plan.push_str(&format!("  - email: {user}@kill.example\n    migrate:\n      - {{ from: export, file: {user}.mbox }}\n"));
    }
    std::fs::write(dir.join("plan.yaml"), plan).unwrap();
}

/// Tiny deterministic generator for kill delays (no dependency, reproducible from the seed).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[test]
fn sigkill_at_random_instants_then_resume_delivers_exactly_once() {
    let rounds: usize = std::env::var("CUTOVER_KILL_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let seed: u64 = std::env::var("CUTOVER_KILL_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x00C0_FFEE);
    let dir = tempfile::tempdir().unwrap();
    write_plan(dir.path());
    let mut rng = SplitMix(seed);
    let started = Instant::now();
    let mut kills = 0;
    let mut finished_early = 0;
    let mut mid_copy = 0;
    while kills < rounds {
        let before = copied_so_far(dir.path());
        let mut child = apply(dir.path()).spawn().expect("cutover runs");
        if rng.next().is_multiple_of(4) {
            // A quarter of the kills land anywhere in start-up: opening state, taking the
            // lock, previewing.
            std::thread::sleep(Duration::from_millis(rng.next() % 100));
        } else {
            // The rest land at a random instant once this run has committed new work.
            let waiting = Instant::now();
            while copied_so_far(dir.path()) == before
                && child.try_wait().unwrap().is_none()
                && waiting.elapsed() < Duration::from_secs(30)
            {
                std::thread::sleep(Duration::from_millis(2));
            }
            std::thread::sleep(Duration::from_millis(rng.next() % 60));
        }
        if child.try_wait().unwrap().is_some() {
            // It finished before the kill: count it and start over from a fresh target so the
            // remaining kills still land mid-copy.
            finished_early += 1;
            assert!(
                finished_early < 50,
                "apply keeps finishing before the kill; raise the corpus size"
            );
            // A run that ended before writing anything (e.g. killed state, lock handover) may
            // have left no `out` yet.
            for written in ["out", ".cutover"] {
                match std::fs::remove_dir_all(dir.path().join(written)) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        panic!("cannot reset {written}: {e}")
                    }
                    _ => {}
                }
            }
            continue;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
        let copied = copied_so_far(dir.path());
        if copied > 0 && copied < (USERS.len() * MESSAGES_PER_USER) as u64 {
            mid_copy += 1;
        }
    }
    assert!(
        mid_copy * 2 >= rounds,
        "only {mid_copy} of {rounds} kills landed mid-copy"
    );
    let resumes = resume_until_done(dir.path(), 5);
    let elapsed = started.elapsed();
    verify(dir.path());
    println!(
        "kill test: {kills} SIGKILLs (seed {seed:#x}), {mid_copy} of them mid-copy, {resumes} final apply run(s), {finished_early} early finishes, {:.1}s in all: every message exactly once",
        elapsed.as_secs_f64()
    );
    // A second apply changes nothing.
    let status = apply(dir.path()).status().unwrap();
    assert!(status.success());
    verify(dir.path());
}

/// Messages the state says were copied (committed) so far; read-only, as a watcher must
/// (see `common::apply_process::settled_so_far`).
fn copied_so_far(dir: &Path) -> u64 {
    let path = dir.join(".cutover").join("kill.db");
    if !path.exists() {
        return 0;
    }
    let Ok(store) = SqliteStore::open_read_only(path) else {
        return 0;
    };
    store
        .steps()
        .unwrap()
        .iter()
        .filter(|s| s.id.starts_with("copy."))
        .map(|s| s.counts.items)
        .sum()
}

fn verify(dir: &Path) {
    let store = SqliteStore::open(dir.join(".cutover").join("kill.db")).unwrap();
    for (user, _) in USERS {
        // Source: every message with its flags, as bytes — but those flagged \Deleted, which
        // stay behind (the plan's default) and are counted as such.
        let mut expected: BTreeMap<Vec<u8>, Vec<String>> = BTreeMap::new();
        let mut deleted = 0;
        for m in MboxReader::open(dir.join(format!("{user}.mbox")), MboxVariant::Mboxrd).unwrap() {
            let m = m.unwrap().message;
            if m.flags.contains(Flag::Deleted) {
                deleted += 1;
                continue;
            }
            let flags = format!("{:?}", m.flags);
            expected.entry(m.bytes().to_vec()).or_default().push(flags);
        }
        let total: usize = expected.values().map(Vec::len).sum();
        assert_eq!(total + deleted, MESSAGES_PER_USER);
        assert!(deleted > 0, "the corpus has mail flagged \\Deleted");
        let copy = store.step(&format!("copy.{user}.export")).unwrap().unwrap();
        assert_eq!(copy.counts.left_behind as usize, deleted, "{user}");
        // Target: every message in every folder of the user's Maildir.
        let maildir = Maildir::open(dir.join("out").join(format!("{user}@kill.example"))).unwrap();
        let mut found: BTreeMap<Vec<u8>, Vec<String>> = BTreeMap::new();
        for folder in maildir.folders().unwrap() {
            for entry in maildir.entries(&folder).unwrap() {
                let flags = format!("{:?}", entry.flags);
                let message = entry.read().unwrap();
                found
                    .entry(message.bytes().to_vec())
                    .or_default()
                    .push(flags);
            }
        }
        let found_total: usize = found.values().map(Vec::len).sum();
        assert_eq!(
            found_total, total,
            "{user}: target holds {found_total} messages"
        );
        for (bytes, flags) in &expected {
            let at_target = found
                .get(bytes)
                .unwrap_or_else(|| panic!("{user}: a message is missing at the target"));
            assert_eq!(
                at_target.len(),
                flags.len(),
                "{user}: a message is duplicated"
            );
            let mut a = at_target.clone();
            let mut b = flags.clone();
            a.sort();
            b.sort();
            assert_eq!(a, b, "{user}: flags differ");
        }
    }
    let steps = store.steps().unwrap();
    assert_eq!(steps.len(), 2 * 3, "user, copy and verify per user");
    for step in steps {
        assert_eq!(
            step.status,
            StepStatus::Done,
            "{} is {}",
            step.id,
            step.status
        );
    }
}

#[test]
fn ctrl_c_checkpoints_exits_130_and_the_next_apply_finishes_the_job() {
    let dir = tempfile::tempdir().unwrap();
    write_plan(dir.path());
    let child = apply(dir.path())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cutover runs");
    let waiting = Instant::now();
    while copied_so_far(dir.path()) == 0 && waiting.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(2));
    }
    // SAFETY: plain kill(2) on our own child's pid.
    let sent = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    assert_eq!(sent, 0);
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    let copied = copied_so_far(dir.path());
    assert!(
        copied < (USERS.len() * MESSAGES_PER_USER) as u64,
        "interrupted before the end"
    );
    let store = SqliteStore::open(dir.path().join(".cutover").join("kill.db")).unwrap();
    assert!(
        store.lock_holder().unwrap().is_none(),
        "a clean interrupt releases the lock"
    );
    drop(store);
    assert!(apply(dir.path()).status().unwrap().success());
    verify(dir.path());
}
