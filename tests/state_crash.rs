//! Crash safety: a process committing progress is SIGKILLed over and over, and after each kill
//! the state file must be intact, every acknowledged commit present, and counts and
//! checkpoints in agreement.

mod common;

use std::time::Duration;

use common::{child_role, tell_parent, ChildProc};
use cutover::state::{Counts, SqliteStore, StateStore, StepStatus};

const STEP: &str = "copy.alice.ionos-imap";
const BYTES_PER_ITEM: u64 = 1000;

fn checkpoint(uid: u64) -> Vec<u8> {
    format!(r#"{{"uidvalidity":7,"uid":{uid}}}"#).into_bytes()
}

fn uid_of(value: &[u8]) -> u64 {
    let json: serde_json::Value = serde_json::from_slice(value).unwrap();
    json["uid"].as_u64().unwrap()
}

/// Not a test of its own: the body of the child processes the tests below start. Run
/// normally (no role in the environment) it returns at once.
#[test]
fn child_process_entry() {
    let Some((role, db)) = child_role() else {
        return;
    };
    assert_eq!(role, "commit", "unknown child role");
    // Resume like a connector: continue after the checkpoint, one message per commit.
    let store = SqliteStore::open(&db).unwrap();
    store.mark_running(STEP).unwrap();
    let mut uid = store
        .checkpoints(STEP)
        .unwrap()
        .get("INBOX")
        .map_or(0, |v| uid_of(v));
    loop {
        uid += 1;
        let value = checkpoint(uid);
        let delta = Counts {
            items: 1,
            bytes: BYTES_PER_ITEM,
            present: u64::from(uid.is_multiple_of(3)),
            left_behind: u64::from(uid.is_multiple_of(5)),
        };
        store
            .commit_progress(STEP, delta, &[("INBOX", &value), ("Sent Items", &value)])
            .unwrap();
        tell_parent(&format!("COMMITTED {uid}"));
    }
}

#[test]
fn counts_and_checkpoints_agree_after_sigkill_mid_commit() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("acme.db");
    let rounds = 30u64;
    let mut previous_items = 0;

    for round in 0..rounds {
        let mut child = ChildProc::spawn("commit", &db);
        // Kill after a varying number of acknowledged commits, at a varying phase of the next.
        let mut acknowledged = 0;
        for _ in 0..=round % 4 {
            acknowledged = child.wait_for("COMMITTED ").parse::<u64>().unwrap();
        }
        std::thread::sleep(Duration::from_micros(round * 397 % 2500));
        child.kill();

        // What the next apply would see.
        let store = SqliteStore::open(&db).unwrap();
        store.integrity_check().unwrap();
        let step = store.step(STEP).unwrap().unwrap();
        let checkpoints = store.checkpoints(STEP).unwrap();
        let inbox = uid_of(&checkpoints["INBOX"]);
        let sent = uid_of(&checkpoints["Sent Items"]);

        assert_eq!(step.status, StepStatus::Running, "round {round}");
        assert_eq!(step.attempts as u64, round + 1, "round {round}");
        assert_eq!(
            (inbox, sent),
            (step.counts.items, step.counts.items),
            "round {round}"
        );
        assert_eq!(step.counts.bytes, step.counts.items * BYTES_PER_ITEM);
        assert_eq!(step.counts.present, step.counts.items / 3);
        assert_eq!(step.counts.left_behind, step.counts.items / 5);
        assert!(
            step.counts.items >= acknowledged,
            "round {round}: commit {acknowledged} was acknowledged but state has {}",
            step.counts.items
        );
        assert!(
            step.counts.items > previous_items,
            "round {round}: no progress"
        );
        previous_items = step.counts.items;
    }
}

#[test]
fn a_kill_while_creating_the_state_file_leaves_a_usable_file() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..12u64 {
        let db = dir.path().join(format!("fresh-{round}.db"));
        let mut child = ChildProc::spawn("commit", &db);
        // Somewhere between process start and the first commits: creation, migration, WAL
        // switch, first write.
        std::thread::sleep(Duration::from_micros(round * 1500));
        child.kill();

        let store = SqliteStore::open(&db).unwrap();
        store.integrity_check().unwrap();
        if let Some(step) = store.step(STEP).unwrap() {
            let items = step.counts.items;
            let inbox = store
                .checkpoints(STEP)
                .unwrap()
                .get("INBOX")
                .map_or(0, |v| uid_of(v));
            assert_eq!(inbox, items, "round {round}");
        }
    }
}
