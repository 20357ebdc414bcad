//! [`StateStore`] on an embedded SQLite file.
//!
//! Crash safety comes from SQLite's WAL journal with `synchronous=FULL`: every committed
//! transaction is fsynced before the call returns, and a process killed at any instant leaves
//! a file that SQLite recovers to the last commit on next open. Everything the engine needs to
//! stay consistent — counters with checkpoints, a reset with its checkpoint deletion, the lock
//! check with the lock take-over — happens inside single transactions.
//!
//! WAL needs shared memory between the processes using the file, so the state file must be on
//! a local file system (not NFS/SMB) — the default beside the plan in a git checkout is.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior};

use super::lock::{self, Liveness, LockGuard, LockHolder};
use super::migrations::{self, SCHEMA_VERSION};
use super::{
    Approval, Counts, ProgressDelta, Result, RunOutcome, RunRecord, StateError, StateStore,
    StepRecord, StepStatus, STATE_DIR,
};
use crate::redact::redact;

/// Longest error text kept per step. Errors are for humans; a megabyte of HTML from a proxy
/// helps nobody and bloats every `status`.
const MAX_ERROR_BYTES: usize = 16 * 1024;

/// How often a blocked `acquire_lock` looks again.
const LOCK_POLL: Duration = Duration::from_millis(200);

/// How to open a state file.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// Create the file (and its directory) if missing. `false` for read-mostly commands such
    /// as `status`, which should report "nothing applied yet" rather than create state.
    pub create: bool,
    /// How long a call waits for another process's transaction before failing. Transactions
    /// here are milliseconds long, so this only matters under heavy contention.
    pub busy_timeout: Duration,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            create: true,
            busy_timeout: Duration::from_secs(10),
        }
    }
}

/// The SQLite state store. Cheap to share: wrap it in an `Arc`; calls are serialised on one
/// connection (SQLite serialises writers anyway, and the work per call is tiny).
pub struct SqliteStore {
    path: PathBuf,
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the state file at `path` and migrates it to the current
    /// schema. See [`open_with`](Self::open_with).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, &OpenOptions::default())
    }

    /// Opens the state file at `path`.
    ///
    /// Refuses — with an error naming the file, never a panic — files that are not SQLite,
    /// SQLite files of another application, corrupt files, and files written by a newer
    /// cutover ([`StateError::TooNew`]); none of those is modified. An older file is migrated
    /// in one transaction. Creating a file inside a `.cutover` directory also drops a
    /// `.gitignore` with `*` there, so state is never committed by accident.
    pub fn open_with(path: impl AsRef<Path>, options: &OpenOptions) -> Result<Self> {
        let path = path.as_ref().to_owned();
        if !path.exists() {
            if !options.create {
                return Err(StateError::NotFound { path });
            }
            prepare_dir(&path)?;
            // Created here, private: SQLite gives its -wal and -shm files the mode of the
            // database file, and would create this one world-readable.
            crate::files::touch(&path).map_err(|source| StateError::CreateDir {
                path: path.clone(),
                source,
            })?;
        }

        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        if options.create {
            flags |= OpenFlags::SQLITE_OPEN_CREATE;
        }
        let mut conn =
            Connection::open_with_flags(&path, flags).map_err(|source| StateError::Open {
                path: path.clone(),
                source,
            })?;
        conn.busy_timeout(options.busy_timeout)
            .map_err(|e| classify(&path, "set busy timeout", e))?;

        // Look before touching: switching a foreign or newer file to WAL would already modify it.
        let header =
            migrations::read_header(&conn).map_err(|e| classify(&path, "read header", e))?;
        migrations::check_header(&path, &header, SCHEMA_VERSION)?;

        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(|e| classify(&path, "enable WAL journal", e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StateError::Corrupt {
                path,
                detail: format!("cannot switch to WAL journal (still {mode})"),
            });
        }
        conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
            .map_err(|e| classify(&path, "set pragmas", e))?;

        migrations::migrate(&mut conn, &path)?;

        Ok(SqliteStore {
            path,
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Opens an existing state file only to read it, changing nothing (no journal switch, no
    /// migration, no lock): for watching another process's apply. Opening a file for writing
    /// while another process creates it makes the two race for the switch to WAL, and one of
    /// them gives up busy; this never takes part in that. Fails while the file is not yet a
    /// state file of this version.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_owned();
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn =
            Connection::open_with_flags(&path, flags).map_err(|source| StateError::Open {
                path: path.clone(),
                source,
            })?;
        conn.busy_timeout(OpenOptions::default().busy_timeout)
            .map_err(|e| classify(&path, "set busy timeout", e))?;
        let header =
            migrations::read_header(&conn).map_err(|e| classify(&path, "read header", e))?;
        migrations::check_header(&path, &header, SCHEMA_VERSION)?;
        if header.user_version != SCHEMA_VERSION {
            return Err(StateError::Corrupt {
                path,
                detail: format!(
                    "schema version {}, not yet {SCHEMA_VERSION}: read it once it is set up",
                    header.user_version
                ),
            });
        }
        Ok(SqliteStore {
            path,
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// An empty store in memory: `plan` on a plan that never ran previews against it
    /// without creating a state file.
    pub fn in_memory() -> Result<Self> {
        let path = std::path::PathBuf::from(":memory:");
        let mut conn = Connection::open_in_memory().map_err(|source| StateError::Open {
            path: path.clone(),
            source,
        })?;
        migrations::migrate(&mut conn, &path)?;
        Ok(SqliteStore {
            path,
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// The state file's path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's schema version (after opening: always [`SCHEMA_VERSION`]).
    pub fn schema_version(&self) -> Result<i64> {
        self.conn()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.err("read schema version", e))
    }

    /// Runs SQLite's full integrity check; `Corrupt` with its findings if it fails. Slow on
    /// big files, so not done on every open — for `cutover state check` and tests.
    pub fn integrity_check(&self) -> Result<()> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("PRAGMA integrity_check")
            .map_err(|e| self.err("integrity check", e))?;
        let findings = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.err("integrity check", e))?;
        if findings == ["ok"] {
            Ok(())
        } else {
            Err(StateError::Corrupt {
                path: self.path.clone(),
                detail: findings.join("; "),
            })
        }
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic elsewhere while holding the connection cannot leave a transaction open
        // (rusqlite rolls back on drop), so the connection is still usable.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn err(&self, op: &'static str, source: rusqlite::Error) -> StateError {
        classify(&self.path, op, source)
    }

    fn corrupt(&self, detail: String) -> StateError {
        StateError::Corrupt {
            path: self.path.clone(),
            detail,
        }
    }

    fn write_status(&self, id: &str, sql: &str, op: &'static str) -> Result<()> {
        check_id(id)?;
        let now = to_millis(SystemTime::now());
        self.conn()
            .execute(sql, params![id, now])
            .map_err(|e| self.err(op, e))?;
        Ok(())
    }

    fn raw_step(&self, conn: &Connection, id: &str) -> Result<Option<RawStep>> {
        conn.prepare_cached(&format!("SELECT {STEP_COLUMNS} FROM steps WHERE id = ?1"))
            .and_then(|mut stmt| stmt.query_row([id], RawStep::read).optional())
            .map_err(|e| self.err("read step", e))
    }

    /// Removes the apply lock only if run `run_id` still holds it (`cutover state unlock`,
    /// which judged that holder): `false` when the lock is gone or another run holds it.
    pub fn release_lock_of(&self, run_id: &str) -> Result<bool> {
        let removed = self
            .conn()
            .execute("DELETE FROM lock WHERE run_id = ?1", [run_id])
            .map_err(|e| self.err("release lock", e))?;
        Ok(removed > 0)
    }

    fn try_acquire(&self, steal_dead: bool) -> Result<Result<LockGuard, (LockHolder, Liveness)>> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.err("begin lock transaction", e))?;
        if let Some(holder) = read_holder(&tx).map_err(|e| self.err("read lock", e))? {
            let liveness = lock::liveness(&holder);
            if !(steal_dead && liveness == Liveness::Dead) {
                return Ok(Err((holder, liveness)));
            }
            tx.execute("DELETE FROM lock", [])
                .map_err(|e| self.err("remove dead holder's lock", e))?;
        }
        let now = SystemTime::now();
        let me = lock::this_process(lock::new_run_id(now), now);
        tx.execute(
            "INSERT INTO lock (singleton, run_id, pid, host, boot_id, process_start, acquired_at)
             VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                me.run_id,
                me.pid,
                me.host,
                me.boot_id,
                me.process_start.and_then(|s| i64::try_from(s).ok()),
                to_millis(me.since)
            ],
        )
        .map_err(|e| self.err("take lock", e))?;
        tx.execute(
            "INSERT INTO runs (run_id, pid, host, started_at) VALUES (?1, ?2, ?3, ?4)",
            params![me.run_id, me.pid, me.host, to_millis(me.since)],
        )
        .map_err(|e| self.err("record run start", e))?;
        tx.commit().map_err(|e| self.err("commit lock", e))?;
        drop(conn);

        let conn = Arc::clone(&self.conn);
        let path = self.path.clone();
        let run_id = me.run_id.clone();
        let release = Box::new(move || {
            let removed = conn
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .execute("DELETE FROM lock WHERE run_id = ?1", [&run_id])
                .map_err(|e| classify(&path, "release lock", e))?;
            if removed == 0 {
                return Err(StateError::LockLost { path, run_id });
            }
            Ok(())
        });
        Ok(Ok(LockGuard::new(me, release)))
    }

    fn acquire(&self, timeout: Duration, steal_dead: bool) -> Result<LockGuard> {
        // A timeout too large to represent means "wait for ever".
        let deadline = Instant::now().checked_add(timeout);
        loop {
            let (holder, liveness) = match self.try_acquire(steal_dead)? {
                Ok(guard) => return Ok(guard),
                Err(held) => held,
            };
            let now = Instant::now();
            let pause = match deadline {
                Some(deadline) if now >= deadline => {
                    return Err(StateError::Locked {
                        path: self.path.clone(),
                        holder: Box::new(holder),
                        liveness,
                    });
                }
                Some(deadline) => LOCK_POLL.min(deadline - now),
                None => LOCK_POLL,
            };
            std::thread::sleep(pause);
        }
    }
}

impl StateStore for SqliteStore {
    fn steps(&self) -> Result<Vec<StepRecord>> {
        let conn = self.conn();
        let raws = conn
            .prepare_cached(&format!("SELECT {STEP_COLUMNS} FROM steps ORDER BY id"))
            .and_then(|mut stmt| {
                stmt.query_map([], RawStep::read)?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(|e| self.err("read steps", e))?;
        raws.into_iter().map(|raw| raw.into_record(self)).collect()
    }

    fn step(&self, id: &str) -> Result<Option<StepRecord>> {
        let conn = self.conn();
        self.raw_step(&conn, id)?
            .map(|raw| raw.into_record(self))
            .transpose()
    }

    fn set_config_hash(&self, id: &str, hash: &str) -> Result<()> {
        check_id(id)?;
        if hash.is_empty() || hash.len() > 128 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(StateError::InvalidArgument(format!(
                "config hash for step `{id}` must be 1 to 128 hex digits"
            )));
        }
        let now = to_millis(SystemTime::now());
        self.conn()
            .execute(
                "INSERT INTO steps (id, config_hash, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (id) DO UPDATE SET config_hash = ?2, updated_at = ?3",
                params![id, hash, now],
            )
            .map_err(|e| self.err("set config hash", e))?;
        Ok(())
    }

    fn mark_running(&self, id: &str) -> Result<()> {
        self.write_status(
            id,
            "INSERT INTO steps (id, status, attempts, started_at, updated_at)
             VALUES (?1, 'running', 1, ?2, ?2)
             ON CONFLICT (id) DO UPDATE SET status = 'running', attempts = attempts + 1,
                 started_at = ?2, finished_at = NULL, updated_at = ?2",
            "mark step running",
        )
    }

    fn mark_done(&self, id: &str) -> Result<()> {
        self.write_status(
            id,
            "INSERT INTO steps (id, status, finished_at, updated_at) VALUES (?1, 'done', ?2, ?2)
             ON CONFLICT (id) DO UPDATE SET status = 'done', finished_at = ?2,
                 last_error = NULL, updated_at = ?2",
            "mark step done",
        )
    }

    fn mark_failed(&self, id: &str, error: &str) -> Result<()> {
        check_id(id)?;
        let error = truncate(redact(error).into_owned(), MAX_ERROR_BYTES);
        let now = to_millis(SystemTime::now());
        self.conn()
            .execute(
                "INSERT INTO steps (id, status, finished_at, last_error, updated_at)
                 VALUES (?1, 'failed', ?2, ?3, ?2)
                 ON CONFLICT (id) DO UPDATE SET status = 'failed', finished_at = ?2,
                     last_error = ?3, updated_at = ?2",
                params![id, now, error],
            )
            .map_err(|e| self.err("mark step failed", e))?;
        Ok(())
    }

    fn mark_waiting(&self, id: &str) -> Result<()> {
        self.write_status(
            id,
            "INSERT INTO steps (id, status, updated_at) VALUES (?1, 'waiting', ?2)
             ON CONFLICT (id) DO UPDATE SET status = 'waiting', updated_at = ?2",
            "mark step waiting",
        )
    }

    fn commit_progress(
        &self,
        id: &str,
        delta: ProgressDelta,
        checkpoints: &[(&str, &[u8])],
    ) -> Result<()> {
        check_id(id)?;
        let field = |name: &str, v: u64| {
            i64::try_from(v).map_err(|_| {
                StateError::InvalidArgument(format!("{name} delta {v} for step `{id}` too large"))
            })
        };
        let (items, bytes, present, left_behind) = (
            field("items", delta.items)?,
            field("bytes", delta.bytes)?,
            field("present", delta.present)?,
            field("left_behind", delta.left_behind)?,
        );
        let now = to_millis(SystemTime::now());

        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.err("begin progress transaction", e))?;
        let updated = tx
            .prepare_cached(
                "UPDATE steps SET items = items + ?2, bytes = bytes + ?3,
                     present = present + ?4, left_behind = left_behind + ?5, updated_at = ?6
                 WHERE id = ?1",
            )
            .and_then(|mut stmt| stmt.execute(params![id, items, bytes, present, left_behind, now]))
            .map_err(|e| self.err("update counts", e))?;
        if updated == 0 {
            return Err(StateError::UnknownStep { id: id.to_owned() });
        }
        {
            let mut upsert = tx
                .prepare_cached(
                    "INSERT INTO checkpoints (step_id, key, value, updated_at)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (step_id, key) DO UPDATE
                         SET value = excluded.value, updated_at = excluded.updated_at",
                )
                .map_err(|e| self.err("write checkpoint", e))?;
            for (key, value) in checkpoints {
                upsert
                    .execute(params![id, key, value, now])
                    .map_err(|e| self.err("write checkpoint", e))?;
            }
        }
        tx.commit().map_err(|e| self.err("commit progress", e))
    }

    fn checkpoints(&self, id: &str) -> Result<BTreeMap<String, Vec<u8>>> {
        let conn = self.conn();
        conn.prepare_cached("SELECT key, value FROM checkpoints WHERE step_id = ?1")
            .and_then(|mut stmt| {
                stmt.query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<BTreeMap<_, _>>>()
            })
            .map_err(|e| self.err("read checkpoints", e))
    }

    fn clear_step(&self, id: &str) -> Result<()> {
        let now = to_millis(SystemTime::now());
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.err("begin reset", e))?;
        tx.execute("DELETE FROM checkpoints WHERE step_id = ?1", [id])
            .map_err(|e| self.err("delete checkpoints", e))?;
        tx.execute(
            "UPDATE steps SET status = 'pending', config_hash = NULL, attempts = 0,
                 started_at = NULL, finished_at = NULL, items = 0, bytes = 0, present = 0,
                 left_behind = 0,
                 last_error = NULL, approved_by = NULL, approved_at = NULL, updated_at = ?2
             WHERE id = ?1",
            params![id, now],
        )
        .map_err(|e| self.err("reset step", e))?;
        tx.commit().map_err(|e| self.err("commit reset", e))
    }

    fn record_approval(&self, id: &str, by: &str) -> Result<()> {
        check_id(id)?;
        if by.trim().is_empty() {
            return Err(StateError::InvalidArgument(format!(
                "approval of `{id}` needs the approver's name"
            )));
        }
        let now = to_millis(SystemTime::now());
        self.conn()
            .execute(
                "INSERT INTO steps (id, status, finished_at, approved_by, approved_at, updated_at)
                 VALUES (?1, 'done', ?2, ?3, ?2, ?2)
                 ON CONFLICT (id) DO UPDATE SET status = 'done', finished_at = ?2,
                     last_error = NULL, approved_by = ?3, approved_at = ?2, updated_at = ?2",
                params![id, now, by],
            )
            .map_err(|e| self.err("record approval", e))?;
        Ok(())
    }

    fn acquire_lock(&self, timeout: Duration) -> Result<LockGuard> {
        self.acquire(timeout, false)
    }

    fn acquire_lock_stealing_dead(&self, timeout: Duration) -> Result<LockGuard> {
        self.acquire(timeout, true)
    }

    fn lock_holder(&self) -> Result<Option<(LockHolder, Liveness)>> {
        let holder = read_holder(&self.conn()).map_err(|e| self.err("read lock", e))?;
        Ok(holder.map(|h| {
            let liveness = lock::liveness(&h);
            (h, liveness)
        }))
    }

    fn force_unlock(&self) -> Result<Option<LockHolder>> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.err("begin unlock", e))?;
        let holder = read_holder(&tx).map_err(|e| self.err("read lock", e))?;
        tx.execute("DELETE FROM lock", [])
            .map_err(|e| self.err("remove lock", e))?;
        tx.commit().map_err(|e| self.err("commit unlock", e))?;
        Ok(holder)
    }

    fn finish_run(&self, run_id: &str, outcome: RunOutcome) -> Result<()> {
        let now = to_millis(SystemTime::now());
        self.conn()
            .execute(
                "UPDATE runs SET finished_at = ?2, outcome = ?3 WHERE run_id = ?1",
                params![run_id, now, outcome.as_str()],
            )
            .map_err(|e| self.err("record run end", e))?;
        Ok(())
    }

    fn recent_runs(&self, limit: usize) -> Result<Vec<RunRecord>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let conn = self.conn();
        let rows = conn
            .prepare_cached(
                "SELECT run_id, pid, host, started_at, finished_at, outcome FROM runs
                 ORDER BY started_at DESC, rowid DESC LIMIT ?1",
            )
            .and_then(|mut stmt| {
                stmt.query_map([limit], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, Option<i64>>(4)?,
                        r.get::<_, Option<String>>(5)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(|e| self.err("read runs", e))?;
        rows.into_iter()
            .map(|(run_id, pid, host, started, finished, outcome)| {
                let outcome = match outcome {
                    None => None,
                    Some(text) => Some(RunOutcome::parse(&text).ok_or_else(|| {
                        self.corrupt(format!("run {run_id} has unknown outcome `{text}`"))
                    })?),
                };
                Ok(RunRecord {
                    pid: u32::try_from(pid)
                        .map_err(|_| self.corrupt(format!("run {run_id} has pid {pid}")))?,
                    run_id,
                    host,
                    started_at: from_millis(started),
                    finished_at: finished.map(from_millis),
                    outcome,
                })
            })
            .collect()
    }
}

/// Maps SQLite errors that mean "this file is broken or not ours" to errors that say so.
pub(crate) fn classify(path: &Path, op: &'static str, source: rusqlite::Error) -> StateError {
    match source.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => StateError::Foreign {
            path: path.to_owned(),
            reason: "it is not an SQLite database".into(),
        },
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StateError::Busy {
            path: path.to_owned(),
            op,
        },
        Some(ErrorCode::DatabaseCorrupt) => StateError::Corrupt {
            path: path.to_owned(),
            detail: format!("{op}: {source}"),
        },
        _ => StateError::Sqlite {
            path: path.to_owned(),
            op,
            source,
        },
    }
}

/// Creates the state directory if needed; in a `.cutover` directory makes sure a `.gitignore`
/// keeps its content out of git (state holds mailbox names and addresses, and is per-machine).
fn prepare_dir(path: &Path) -> Result<()> {
    let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return Ok(());
    };
    let io = |source| StateError::CreateDir {
        path: dir.to_owned(),
        source,
    };
    crate::files::create_dir_all(dir).map_err(io)?;
    if dir.file_name().is_some_and(|n| n == STATE_DIR) {
        let ignore = dir.join(".gitignore");
        if !ignore.exists() {
            crate::files::write_atomically(&ignore, b"*\n").map_err(io)?;
        }
    }
    Ok(())
}

fn check_id(id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(StateError::InvalidArgument("empty step id".into()));
    }
    Ok(())
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str(" … (truncated)");
    }
    text
}

fn to_millis(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

fn from_millis(ms: i64) -> SystemTime {
    let magnitude = Duration::from_millis(ms.unsigned_abs());
    if ms >= 0 {
        UNIX_EPOCH + magnitude
    } else {
        UNIX_EPOCH - magnitude
    }
}

fn read_holder(conn: &Connection) -> rusqlite::Result<Option<LockHolder>> {
    conn.query_row(
        "SELECT run_id, pid, host, boot_id, process_start, acquired_at FROM lock",
        [],
        |r| {
            Ok(LockHolder {
                run_id: r.get(0)?,
                // A pid that does not fit is nonsense; 0 makes liveness say "can't tell".
                pid: u32::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                host: r.get(2)?,
                boot_id: r.get(3)?,
                process_start: r
                    .get::<_, Option<i64>>(4)?
                    .and_then(|s| u64::try_from(s).ok()),
                since: from_millis(r.get(5)?),
            })
        },
    )
    .optional()
}

const STEP_COLUMNS: &str = "id, status, config_hash, attempts, started_at, finished_at, \
     items, bytes, present, left_behind, last_error, approved_by, approved_at, updated_at";

/// A `steps` row as stored, before the checks that turn it into a [`StepRecord`]; kept apart
/// so that a bad value becomes a `Corrupt` error naming the file, not a panic or a generic
/// conversion error.
struct RawStep {
    id: String,
    status: String,
    config_hash: Option<String>,
    attempts: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    items: i64,
    bytes: i64,
    present: i64,
    left_behind: i64,
    last_error: Option<String>,
    approved_by: Option<String>,
    approved_at: Option<i64>,
    updated_at: i64,
}

impl RawStep {
    fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawStep> {
        Ok(RawStep {
            id: r.get(0)?,
            status: r.get(1)?,
            config_hash: r.get(2)?,
            attempts: r.get(3)?,
            started_at: r.get(4)?,
            finished_at: r.get(5)?,
            items: r.get(6)?,
            bytes: r.get(7)?,
            present: r.get(8)?,
            left_behind: r.get(9)?,
            last_error: r.get(10)?,
            approved_by: r.get(11)?,
            approved_at: r.get(12)?,
            updated_at: r.get(13)?,
        })
    }

    fn into_record(self, store: &SqliteStore) -> Result<StepRecord> {
        let id = self.id;
        let bad = |what: &str, value: &dyn std::fmt::Display| {
            store.corrupt(format!("step `{id}` has invalid {what} `{value}`"))
        };
        let status = StepStatus::parse(&self.status).ok_or_else(|| bad("status", &self.status))?;
        let count = |what: &str, v: i64| u64::try_from(v).map_err(|_| bad(what, &v));
        let approval = match (self.approved_by, self.approved_at) {
            (Some(by), Some(at)) => Some(Approval {
                by,
                at: from_millis(at),
            }),
            _ => None,
        };
        Ok(StepRecord {
            status,
            config_hash: self.config_hash,
            attempts: u32::try_from(self.attempts).map_err(|_| bad("attempts", &self.attempts))?,
            started_at: self.started_at.map(from_millis),
            finished_at: self.finished_at.map(from_millis),
            counts: Counts {
                items: count("items", self.items)?,
                bytes: count("bytes", self.bytes)?,
                present: count("present", self.present)?,
                left_behind: count("left_behind", self.left_behind)?,
            },
            last_error: self.last_error,
            approval,
            updated_at: from_millis(self.updated_at),
            id,
        })
    }
}
