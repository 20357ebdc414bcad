//! The SQLite state store on real files: opening and migrating, refusing files it must not
//! touch, and the step lifecycle through the `StateStore` trait object the engine uses.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cutover::state::{
    default_state_path, Counts, OpenOptions, RunOutcome, SqliteStore, StateError, StateStore,
    StepStatus, SCHEMA_VERSION,
};
use rusqlite::Connection;

fn raw(path: &Path) -> Connection {
    Connection::open(path).unwrap()
}

fn pragma_i64(path: &Path, name: &str) -> i64 {
    raw(path)
        .query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
        .unwrap()
}

#[test]
fn opening_creates_the_state_dir_with_a_gitignore_and_reopening_keeps_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plans/acme.yaml");
    let path = default_state_path(&plan, "acme-to-m365");
    assert_eq!(path, dir.path().join("plans/.cutover/acme-to-m365.db"));

    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    store.set_config_hash("user.alice", "ab12").unwrap();
    drop(store);

    let gitignore = dir.path().join("plans/.cutover/.gitignore");
    assert_eq!(std::fs::read_to_string(gitignore).unwrap(), "*\n");

    for _ in 0..2 {
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        let step = store.step("user.alice").unwrap().unwrap();
        assert_eq!(step.config_hash.as_deref(), Some("ab12"));
        assert_eq!(store.steps().unwrap().len(), 1);
    }
    let journal: String = raw(&path)
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(journal, "wal");
}

/// A read-only open changes nothing: not a file being set up (empty: refused, left empty,
/// still in its journal mode), not a set-up one (read, and a write refused).
#[test]
fn a_read_only_open_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    assert!(SqliteStore::open_read_only(&path).is_err(), "missing");
    std::fs::write(&path, b"").unwrap();
    assert!(
        SqliteStore::open_read_only(&path).is_err(),
        "not set up yet"
    );
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "left as it was");

    let store = SqliteStore::open(&path).unwrap();
    store.set_config_hash("user.alice", "ab12").unwrap();
    let reader = SqliteStore::open_read_only(&path).unwrap();
    assert_eq!(reader.steps().unwrap().len(), 1);
    assert!(
        reader.set_config_hash("user.bob", "cd34").is_err(),
        "read only"
    );
    assert_eq!(store.steps().unwrap().len(), 1);
}

#[test]
fn an_empty_file_is_initialised() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    std::fs::write(&path, b"").unwrap();
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    store.integrity_check().unwrap();
    // Not a `.cutover` directory: no .gitignore dropped into someone's folder.
    assert!(!dir.path().join(".gitignore").exists());
}

#[test]
fn open_without_create_reports_a_missing_file_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".cutover/acme.db");
    let options = OpenOptions {
        create: false,
        ..OpenOptions::default()
    };
    let err = SqliteStore::open_with(&path, &options).unwrap_err();
    assert!(matches!(err, StateError::NotFound { .. }), "{err:?}");
    assert!(err.to_string().contains("acme.db"), "{err}");
    assert!(!dir.path().join(".cutover").exists());
}

#[test]
fn a_newer_schema_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("acme.db");
    SqliteStore::open(&path).unwrap();
    raw(&path)
        .execute_batch(&format!("PRAGMA user_version = {}", SCHEMA_VERSION + 1))
        .unwrap();

    let err = SqliteStore::open(&path).unwrap_err();
    match &err {
        StateError::TooNew {
            found, supported, ..
        } => {
            assert_eq!((*found, *supported), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
        }
        other => panic!("expected TooNew, got {other:?}"),
    }
    let message = err.to_string();
    assert!(message.contains("acme.db"), "{message}");
    assert!(message.contains("newer cutover"), "{message}");
    assert_eq!(pragma_i64(&path, "user_version"), SCHEMA_VERSION + 1);
}

#[test]
fn a_foreign_sqlite_file_is_refused_and_not_switched_to_wal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("thunderbird.sqlite");
    raw(&path)
        .execute_batch("CREATE TABLE moz_places (url TEXT); INSERT INTO moz_places VALUES ('x');")
        .unwrap();

    let err = SqliteStore::open(&path).unwrap_err();
    assert!(matches!(err, StateError::Foreign { .. }), "{err:?}");
    assert!(err.to_string().contains("thunderbird.sqlite"), "{err}");
    let journal: String = raw(&path)
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(journal, "delete");

    let other_app = dir.path().join("other.db");
    raw(&other_app)
        .execute_batch("PRAGMA application_id = 1234;")
        .unwrap();
    let err = SqliteStore::open(&other_app).unwrap_err();
    assert!(err.to_string().contains("another application"), "{err}");
}

#[test]
fn a_file_that_is_not_sqlite_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("acme.db");
    let garbage: Vec<u8> = (0..8192u32).map(|i| (i * 7919 % 251) as u8).collect();
    std::fs::write(&path, &garbage).unwrap();

    let err = SqliteStore::open(&path).unwrap_err();
    assert!(matches!(err, StateError::Foreign { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("acme.db"), "{message}");
    assert!(message.contains("not an SQLite database"), "{message}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        garbage,
        "must not be modified"
    );
}

#[test]
fn a_damaged_state_file_gives_errors_naming_it_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("acme.db");
    {
        let store = SqliteStore::open(&path).unwrap();
        for i in 0..200 {
            let id = format!("copy.user{i}.ionos-imap");
            store.mark_running(&id).unwrap();
            let value = vec![b'x'; 300];
            store
                .commit_progress(&id, Counts::default(), &[("INBOX", &value)])
                .unwrap();
        }
    } // last connection closed: the WAL is checkpointed into the main file
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 8 * 4096, "test needs several pages");
    let end = bytes.len() - 4096;
    for b in &mut bytes[4096..end] {
        *b ^= 0x5a;
    }
    std::fs::write(&path, &bytes).unwrap();

    let outcome = SqliteStore::open(&path).and_then(|store| {
        store.integrity_check()?;
        store.steps()
    });
    let err = outcome.expect_err("damage must be detected");
    assert!(err.to_string().contains("acme.db"), "{err}");
}

#[test]
fn a_directory_as_state_path_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("iam-a-dir.db");
    std::fs::create_dir(&path).unwrap();
    let err = SqliteStore::open(&path).unwrap_err();
    assert!(err.to_string().contains("iam-a-dir.db"), "{err}");
}

#[test]
fn step_lifecycle_through_the_trait_object() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn StateStore> = Arc::new(SqliteStore::open(dir.path().join("s.db")).unwrap());
    let id = "copy.alice.ionos-imap";

    assert!(store.step(id).unwrap().is_none());
    assert!(store.checkpoints(id).unwrap().is_empty());

    store.set_config_hash(id, "deadbeef01").unwrap();
    let rec = store.step(id).unwrap().unwrap();
    assert_eq!(rec.status, StepStatus::Pending);
    assert_eq!(rec.config_hash.as_deref(), Some("deadbeef01"));
    assert_eq!(
        (rec.attempts, rec.started_at, rec.finished_at),
        (0, None, None)
    );

    store.mark_running(id).unwrap();
    let rec = store.step(id).unwrap().unwrap();
    assert_eq!((rec.status, rec.attempts), (StepStatus::Running, 1));
    assert!(rec.started_at.is_some() && rec.finished_at.is_none());

    let delta = Counts {
        items: 10,
        bytes: 5000,
        present: 2,
        left_behind: 1,
    };
    store
        .commit_progress(id, delta, &[("INBOX", br#"{"uidvalidity":7,"uid":10}"#)])
        .unwrap();
    store
        .commit_progress(
            id,
            delta,
            &[
                ("INBOX", br#"{"uidvalidity":7,"uid":20}"#),
                ("Sent", b"\x00\xffbinary"),
            ],
        )
        .unwrap();
    let rec = store.step(id).unwrap().unwrap();
    assert_eq!(
        rec.counts,
        Counts {
            items: 20,
            bytes: 10_000,
            present: 4,
            left_behind: 2,
        }
    );
    let cps = store.checkpoints(id).unwrap();
    assert_eq!(cps.len(), 2);
    assert_eq!(cps["INBOX"], br#"{"uidvalidity":7,"uid":20}"#);
    assert_eq!(cps["Sent"], b"\x00\xffbinary");

    let failure = "PUT https://acme.blob.core.windows.net/c/a.pst?sv=1&sig=SECRETSIG: 403, \
                   Authorization: Bearer SECRETTOKEN";
    store.mark_failed(id, failure).unwrap();
    let rec = store.step(id).unwrap().unwrap();
    assert_eq!(rec.status, StepStatus::Failed);
    assert!(rec.finished_at.is_some());
    let error = rec.last_error.unwrap();
    assert!(!error.contains("SECRET"), "stored unredacted: {error}");
    assert!(
        error.contains("403") && error.contains("sig=REDACTED"),
        "{error}"
    );

    // A retry resumes: counts and checkpoints kept, previous error still visible.
    store.mark_running(id).unwrap();
    let rec = store.step(id).unwrap().unwrap();
    assert_eq!((rec.status, rec.attempts), (StepStatus::Running, 2));
    assert!(rec.finished_at.is_none() && rec.last_error.is_some());
    assert_eq!(rec.counts.items, 20);
    assert_eq!(store.checkpoints(id).unwrap().len(), 2);

    store.mark_done(id).unwrap();
    let rec = store.step(id).unwrap().unwrap();
    assert_eq!(rec.status, StepStatus::Done);
    assert!(rec.finished_at.is_some() && rec.last_error.is_none());
    assert!(rec.finished_at >= rec.started_at);

    // Config changed: everything about the old config goes.
    store.clear_step(id).unwrap();
    let rec = store.step(id).unwrap().unwrap();
    assert_eq!(rec.status, StepStatus::Pending);
    assert_eq!(rec.config_hash, None);
    assert_eq!(rec.attempts, 0);
    assert_eq!(rec.counts, Counts::default());
    assert_eq!((rec.started_at, rec.finished_at), (None, None));
    assert!(store.checkpoints(id).unwrap().is_empty());
    store.clear_step("never.seen").unwrap();
    assert!(store.step("never.seen").unwrap().is_none());
}

#[test]
fn manual_gates_wait_and_are_approved() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("s.db")).unwrap();

    store.mark_waiting("dns.cutover").unwrap();
    let rec = store.step("dns.cutover").unwrap().unwrap();
    assert_eq!((rec.status, rec.approval), (StepStatus::Waiting, None));

    store
        .record_approval("dns.cutover", "jo@consultancy")
        .unwrap();
    let rec = store.step("dns.cutover").unwrap().unwrap();
    assert_eq!(rec.status, StepStatus::Done);
    let approval = rec.approval.unwrap();
    assert_eq!(approval.by, "jo@consultancy");
    assert_eq!(Some(approval.at), rec.finished_at);

    // Approving a gate before apply reaches it creates its record.
    store.record_approval("dns.lower-ttl", "jo").unwrap();
    assert_eq!(
        store.step("dns.lower-ttl").unwrap().unwrap().status,
        StepStatus::Done
    );
    assert!(matches!(
        store.record_approval("dns.x", "  "),
        Err(StateError::InvalidArgument(_))
    ));

    store.clear_step("dns.cutover").unwrap();
    assert_eq!(store.step("dns.cutover").unwrap().unwrap().approval, None);

    let ids: Vec<_> = store.steps().unwrap().into_iter().map(|s| s.id).collect();
    assert_eq!(ids, ["dns.cutover", "dns.lower-ttl"]);
}

#[test]
fn rejected_writes_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("s.db")).unwrap();

    let err = store
        .commit_progress(
            "copy.ghost",
            Counts {
                items: 1,
                ..Counts::default()
            },
            &[("INBOX", b"1")],
        )
        .unwrap_err();
    assert!(matches!(err, StateError::UnknownStep { .. }), "{err:?}");
    assert!(err.to_string().contains("copy.ghost"), "{err}");
    assert!(store.checkpoints("copy.ghost").unwrap().is_empty());
    assert!(store.step("copy.ghost").unwrap().is_none());

    store.mark_running("copy.bob").unwrap();
    let huge = Counts {
        items: 1,
        bytes: u64::MAX,
        ..Counts::default()
    };
    let err = store
        .commit_progress("copy.bob", huge, &[("INBOX", b"1")])
        .unwrap_err();
    assert!(matches!(err, StateError::InvalidArgument(_)), "{err:?}");
    assert_eq!(
        store.step("copy.bob").unwrap().unwrap().counts,
        Counts::default()
    );
    assert!(store.checkpoints("copy.bob").unwrap().is_empty());

    for bad in ["", "xyz", "ab cd", &"a".repeat(129)] {
        assert!(
            matches!(
                store.set_config_hash("copy.bob", bad),
                Err(StateError::InvalidArgument(_))
            ),
            "{bad:?}"
        );
    }
    assert_eq!(store.step("copy.bob").unwrap().unwrap().config_hash, None);
    assert!(matches!(
        store.mark_running(""),
        Err(StateError::InvalidArgument(_))
    ));
}

#[test]
fn long_errors_are_truncated_on_a_char_boundary() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("s.db")).unwrap();
    let error = "é".repeat(100_000);
    store.mark_failed("verify.alice", &error).unwrap();
    let stored = store
        .step("verify.alice")
        .unwrap()
        .unwrap()
        .last_error
        .unwrap();
    assert!(stored.len() < 17 * 1024, "{}", stored.len());
    assert!(stored.ends_with("(truncated)"));
}

#[test]
fn concurrent_steps_share_one_store_and_lose_no_progress() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let store: Arc<dyn StateStore> = Arc::new(SqliteStore::open(&path).unwrap());
    // A second connection to the same file, as `cutover status` in another process would have.
    let observer = SqliteStore::open(&path).unwrap();
    store.mark_running("shared.counter").unwrap();

    let threads: Vec<_> = (0..4)
        .map(|t| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                let id = format!("copy.user{t}.src");
                store.mark_running(&id).unwrap();
                for n in 1..=50u64 {
                    let delta = Counts {
                        items: 1,
                        bytes: 10,
                        ..Counts::default()
                    };
                    store
                        .commit_progress(&id, delta, &[("INBOX", &n.to_le_bytes())])
                        .unwrap();
                    store.commit_progress("shared.counter", delta, &[]).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }

    for t in 0..4 {
        let id = format!("copy.user{t}.src");
        let rec = observer.step(&id).unwrap().unwrap();
        assert_eq!(rec.counts.items, 50);
        assert_eq!(
            observer.checkpoints(&id).unwrap()["INBOX"],
            50u64.to_le_bytes()
        );
    }
    let shared = observer.step("shared.counter").unwrap().unwrap();
    assert_eq!(shared.counts.items, 200);
}

#[test]
fn runs_are_recorded_from_lock_to_finish() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("s.db")).unwrap();

    let first = store.acquire_lock(Duration::ZERO).unwrap();
    let first_id = first.run_id().to_owned();
    store.finish_run(&first_id, RunOutcome::Failed).unwrap();
    first.release().unwrap();

    let second = store.acquire_lock(Duration::ZERO).unwrap();
    let second_id = second.run_id().to_owned();
    drop(second);

    let runs = store.recent_runs(10).unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0].run_id, second_id, "newest first");
    assert_eq!((runs[0].outcome, runs[0].finished_at), (None, None));
    assert_eq!(runs[1].run_id, first_id);
    assert_eq!(runs[1].outcome, Some(RunOutcome::Failed));
    assert!(runs[1].finished_at.is_some());
    assert_eq!(runs[1].pid, std::process::id());
    assert_eq!(store.recent_runs(1).unwrap().len(), 1);
    store
        .finish_run("no-such-run", RunOutcome::Succeeded)
        .unwrap();
}

#[test]
fn a_write_blocked_past_the_busy_timeout_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("acme.db");
    let options = OpenOptions {
        busy_timeout: Duration::from_millis(50),
        ..OpenOptions::default()
    };
    let store = SqliteStore::open_with(&path, &options).unwrap();
    let blocker = raw(&path);
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();

    let err = store.mark_running("user.alice").unwrap_err();
    assert!(matches!(err, StateError::Busy { .. }), "{err:?}");
    assert!(err.to_string().contains("acme.db"), "{err}");

    blocker.execute_batch("ROLLBACK").unwrap();
    store.mark_running("user.alice").unwrap();
}
