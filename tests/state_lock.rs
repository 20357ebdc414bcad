//! The apply lock across real processes: refusal naming the holder, waiting with a timeout,
//! a SIGKILLed holder reported dead, stealing only provably dead holders, and unlock.

mod common;

use std::io::Read;
use std::time::Duration;

use common::{child_role, tell_parent, ChildProc};
use cutover::state::{Liveness, SqliteStore, StateError, StateStore};

/// Not a test of its own: the body of the child processes the tests below start. Run
/// normally (no role in the environment) it returns at once.
#[test]
fn child_process_entry() {
    let Some((role, db)) = child_role() else {
        return;
    };
    let store = SqliteStore::open(&db).unwrap();
    match role.as_str() {
        "hold" => {
            let guard = store.acquire_lock(Duration::ZERO).unwrap();
            tell_parent(&format!("LOCKED {}", guard.run_id()));
            // Hold until the parent closes our stdin (or kills us).
            let mut sink = Vec::new();
            std::io::stdin().read_to_end(&mut sink).unwrap();
            guard.release().unwrap();
            tell_parent("RELEASED");
        }
        "try" => match store.acquire_lock(Duration::ZERO) {
            Ok(guard) => tell_parent(&format!("ACQUIRED {}", guard.run_id())),
            Err(err) => tell_parent(&format!("REFUSED {err}")),
        },
        other => panic!("unknown child role {other}"),
    }
}

fn locked(err: StateError) -> (cutover::state::LockHolder, Liveness, String) {
    let message = err.to_string();
    match err {
        StateError::Locked {
            holder, liveness, ..
        } => (*holder, liveness, message),
        other => panic!("expected Locked, got {other:?}"),
    }
}

#[test]
fn a_second_process_is_refused_with_the_holder_named_then_waits_for_release() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("acme.db");
    let store = SqliteStore::open(&db).unwrap();

    let mut holder = ChildProc::spawn("hold", &db);
    let run_id = holder.wait_for("LOCKED ");

    let (who, liveness, message) = locked(store.acquire_lock(Duration::ZERO).unwrap_err());
    assert_eq!(who.pid, holder.pid());
    assert_eq!(who.run_id, run_id);
    assert_eq!(liveness, Liveness::Alive);
    let host = cutover::state::hostname();
    for part in [
        format!("pid {}", holder.pid()),
        format!("on host {host} since 20"),
        "acme.db".to_owned(),
        "cutover state unlock".to_owned(),
    ] {
        assert!(message.contains(&part), "{part:?} missing in: {message}");
    }

    // A live holder is never stolen.
    let (_, liveness, _) = locked(
        store
            .acquire_lock_stealing_dead(Duration::ZERO)
            .unwrap_err(),
    );
    assert_eq!(liveness, Liveness::Alive);
    let (current, liveness) = store.lock_holder().unwrap().unwrap();
    assert_eq!((current.pid, liveness), (holder.pid(), Liveness::Alive));

    // --lock-timeout: keep trying until the holder lets go.
    std::thread::scope(|scope| {
        let waiter = scope.spawn(|| store.acquire_lock(Duration::from_secs(120)));
        holder.close_stdin();
        holder.wait_for("RELEASED");
        holder.finish();
        let guard = waiter.join().unwrap().unwrap();
        assert_eq!(guard.holder().pid, std::process::id());
        assert_ne!(guard.run_id(), run_id);
    });
    assert!(
        store.lock_holder().unwrap().is_none(),
        "guard drop releases"
    );
}

#[test]
fn the_holder_in_this_process_is_named_to_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("acme.db");
    let store = SqliteStore::open(&db).unwrap();

    let guard = store.acquire_lock(Duration::ZERO).unwrap();
    let mut other = ChildProc::spawn("try", &db);
    let message = other.wait_for("REFUSED ");
    other.finish();
    assert!(
        message.contains(&format!("locked by pid {} on host", std::process::id())),
        "{message}"
    );
    assert!(message.contains(guard.run_id()), "{message}");

    guard.release().unwrap();
    let mut other = ChildProc::spawn("try", &db);
    other.wait_for("ACQUIRED ");
    other.finish();
    assert!(store.lock_holder().unwrap().is_none());
}

#[test]
fn a_killed_holder_is_reported_dead_and_only_then_stolen() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("acme.db");
    let store = SqliteStore::open(&db).unwrap();

    let mut holder = ChildProc::spawn("hold", &db);
    let dead_run = holder.wait_for("LOCKED ");
    let dead_pid = holder.pid();
    holder.kill();

    // The lock survives the kill, and the plain acquire says the holder is dead.
    let (who, liveness, message) = locked(store.acquire_lock(Duration::ZERO).unwrap_err());
    assert_eq!((who.pid, liveness), (dead_pid, Liveness::Dead));
    assert!(message.contains(&format!("pid {dead_pid}")), "{message}");
    assert!(message.contains("no longer running"), "{message}");
    assert!(message.contains("cutover state unlock"), "{message}");
    assert_eq!(store.lock_holder().unwrap().unwrap().1, Liveness::Dead);

    let guard = store.acquire_lock_stealing_dead(Duration::ZERO).unwrap();
    assert_eq!(guard.holder().pid, std::process::id());
    let runs = store.recent_runs(10).unwrap();
    let killed = runs.iter().find(|r| r.run_id == dead_run).unwrap();
    assert_eq!((killed.finished_at, killed.outcome), (None, None));
    guard.release().unwrap();
}

#[test]
fn unlock_removes_a_dead_holders_lock() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("acme.db");
    let store = SqliteStore::open(&db).unwrap();

    let mut holder = ChildProc::spawn("hold", &db);
    holder.wait_for("LOCKED ");
    let dead_pid = holder.pid();
    holder.kill();

    let removed = store.force_unlock().unwrap().unwrap();
    assert_eq!(removed.pid, dead_pid);
    assert!(store.force_unlock().unwrap().is_none());
    store
        .acquire_lock(Duration::ZERO)
        .unwrap()
        .release()
        .unwrap();
}

#[test]
fn a_holder_on_another_host_is_never_stolen() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("acme.db");
    let store = SqliteStore::open(&db).unwrap();
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute(
            "INSERT INTO lock (singleton, run_id, pid, host, acquired_at)
             VALUES (1, 'r-1', 4242, 'laptop-of-jo.example', 1772373909000)",
            [],
        )
        .unwrap();

    let (who, liveness, message) = locked(
        store
            .acquire_lock_stealing_dead(Duration::ZERO)
            .unwrap_err(),
    );
    assert_eq!((who.pid, liveness), (4242, Liveness::OtherHost));
    assert!(
        message
            .contains("locked by pid 4242 on host laptop-of-jo.example since 2026-03-01T14:05:09Z"),
        "{message}"
    );
    assert!(message.contains("cutover state unlock"), "{message}");
    assert_eq!(
        store.force_unlock().unwrap().unwrap().host,
        "laptop-of-jo.example"
    );
}

#[test]
fn a_force_released_guard_does_not_release_the_next_holders_lock() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("acme.db");
    let store = SqliteStore::open(&db).unwrap();
    let other = SqliteStore::open(&db).unwrap();

    let first = store.acquire_lock(Duration::ZERO).unwrap();
    other.force_unlock().unwrap();
    let second = other.acquire_lock(Duration::ZERO).unwrap();

    let err = first.release().unwrap_err();
    assert!(matches!(err, StateError::LockLost { .. }), "{err:?}");
    let (holder, _) = store.lock_holder().unwrap().unwrap();
    assert_eq!(holder.run_id, second.run_id());
    drop(second);
    assert!(store.lock_holder().unwrap().is_none());
}
