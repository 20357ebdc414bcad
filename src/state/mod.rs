//! Persistent state of a plan's apply: per-step status, config hashes, counters, connector
//! checkpoints, manual-gate approvals, and the apply lock.
//!
//! This is what makes `apply` resumable and idempotent (design notes, "State" and "Idempotence
//! contract"): a connector checkpoints only after the target acknowledged, and the counters it
//! reports are written in the *same* transaction as the checkpoint, so after a crash at any
//! instant the store says exactly how far the work got — never "42 copied" beside a checkpoint
//! for 41.
//!
//! The engine talks to a `dyn StateStore`; [`SqliteStore`] is the only implementation today.
//! The trait is kept small and free of SQLite types so that another backend (PostgreSQL, for a
//! team sharing one state) can be added without touching the engine.
//!
//! # Invariant: no secrets
//!
//! The store never receives a secret and must never be given one. Step ids, config hashes
//! (hashes, not configs), checkpoint keys (folder names, block ids) and approvers are not
//! secret. Checkpoint *values* are connector-owned and must not contain credentials either.
//! Error text is the one place a secret can sneak in (a server echoing a SAS URL, an OAuth
//! error body): every implementation passes it through [`crate::redact::redact`] before
//! writing, so a leak in a connector's error message still does not reach the disk.

mod lock;
mod migrations;
mod sqlite;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use lock::{hostname, liveness, Liveness, LockGuard, LockHolder};
pub use migrations::SCHEMA_VERSION;
pub use sqlite::{OpenOptions, SqliteStore};

/// Where a step is in its life. Stored as the lowercase name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StepStatus {
    /// Never run, or reset because its config changed.
    Pending,
    /// Started and not finished. Seen by a new apply, it means the previous apply died while
    /// the step ran: resume it from its checkpoints.
    Running,
    /// Finished successfully (or, for a manual gate, approved).
    Done,
    /// The last attempt failed; `last_error` says why.
    Failed,
    /// A manual gate waiting for `cutover approve`.
    Waiting,
}

impl StepStatus {
    pub const ALL: [StepStatus; 5] = [
        StepStatus::Pending,
        StepStatus::Running,
        StepStatus::Done,
        StepStatus::Failed,
        StepStatus::Waiting,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Pending => "pending",
            StepStatus::Running => "running",
            StepStatus::Done => "done",
            StepStatus::Failed => "failed",
            StepStatus::Waiting => "waiting",
        }
    }

    pub fn parse(text: &str) -> Option<StepStatus> {
        StepStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

impl fmt::Display for StepStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Work counters of a step. Used both for a step's totals and for the increment passed to
/// [`StateStore::commit_progress`]. Three kinds of items, kept apart because they mean
/// different things to a client: what this step delivered, what the target already had,
/// and what stays behind at the source on purpose.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Items delivered to the target (messages, records, blocks).
    pub items: u64,
    /// Bytes delivered to the target.
    pub bytes: u64,
    /// Items the target already held, so nothing was delivered (a message copied by an
    /// earlier run or another step, a mailbox that exists).
    pub present: u64,
    /// Items deliberately not delivered and left at the source (too large, flagged
    /// `\Deleted`, refused by the target, an autocomplete entry without an address); the
    /// step records each with its reason where it can, for the report.
    pub left_behind: u64,
}

/// The increment a connector reports with a checkpoint; same shape as the totals.
pub type ProgressDelta = Counts;

/// Who approved a manual gate, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    pub by: String,
    pub at: SystemTime,
}

/// Everything the store knows about one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepRecord {
    /// Stable step id, e.g. `copy.alice.ionos-imap`.
    pub id: String,
    pub status: StepStatus,
    /// Hex hash of the step's resolved config when it was last planned; `None` after a reset.
    pub config_hash: Option<String>,
    /// How many times the step was started (`mark_running` calls since the last reset).
    pub attempts: u32,
    /// When the current or last attempt started.
    pub started_at: Option<SystemTime>,
    /// When the last attempt ended; `None` while running or never finished.
    pub finished_at: Option<SystemTime>,
    /// Totals since the last reset, across attempts.
    pub counts: Counts,
    /// Redacted error of the last failed attempt; cleared when the step completes.
    pub last_error: Option<String>,
    pub approval: Option<Approval>,
    /// Last time anything in this record changed.
    pub updated_at: SystemTime,
}

/// How an apply run ended, as recorded in the store's run history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    /// Every targeted step is done.
    Succeeded,
    /// At least one step failed or is waiting for approval.
    Failed,
    /// Stopped by Ctrl-C or a signal after persisting in-flight work.
    Interrupted,
}

impl RunOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Succeeded => "succeeded",
            RunOutcome::Failed => "failed",
            RunOutcome::Interrupted => "interrupted",
        }
    }

    pub fn parse(text: &str) -> Option<RunOutcome> {
        [
            RunOutcome::Succeeded,
            RunOutcome::Failed,
            RunOutcome::Interrupted,
        ]
        .into_iter()
        .find(|o| o.as_str() == text)
    }
}

/// One apply run, from lock acquisition to its end. A run whose `finished_at` is `None` and
/// which no longer holds the lock was killed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRecord {
    pub run_id: String,
    pub pid: u32,
    pub host: String,
    pub started_at: SystemTime,
    pub finished_at: Option<SystemTime>,
    pub outcome: Option<RunOutcome>,
}

/// Errors of the state store. Every variant that concerns a file names it, because a user
/// with several plans needs to know *which* state is broken.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot open state file {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },

    #[error("cannot create state directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("state file {path} does not exist (nothing has been applied yet?)")]
    NotFound { path: PathBuf },

    #[error("{path} is not a cutover state file: {reason}")]
    Foreign { path: PathBuf, reason: String },

    #[error("state file {path} is corrupt: {detail}")]
    Corrupt { path: PathBuf, detail: String },

    #[error(
        "state file {path} has schema version {found}, but this cutover only knows up to \
         version {supported}; it was written by a newer cutover — upgrade cutover to use it"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },

    #[error("cannot migrate state file {path} to schema version {version}: {source}")]
    Migration {
        path: PathBuf,
        version: i64,
        #[source]
        source: rusqlite::Error,
    },

    #[error("state file {path}: {op}: {source}")]
    Sqlite {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: rusqlite::Error,
    },

    /// Another process kept the file's write lock past the busy timeout (SQLite's own lock,
    /// held for milliseconds per transaction — not the apply lock).
    #[error(
        "state file {path} is busy: {op} waited too long for another process's write \
         (is something holding a long transaction on it?)"
    )]
    Busy { path: PathBuf, op: &'static str },

    /// Another apply holds the lock. The message is meant to be shown as is.
    #[error("{}", lock::locked_message(path, holder, *liveness))]
    Locked {
        path: PathBuf,
        holder: Box<LockHolder>,
        liveness: Liveness,
    },

    /// The lock this process held was force-released (`cutover state unlock`) while it ran.
    #[error(
        "the lock on state file {path} held by this run ({run_id}) was released by someone \
         else (`cutover state unlock`?) while the run was in progress"
    )]
    LockLost { path: PathBuf, run_id: String },

    #[error("step `{id}` has no state record (commit_progress before mark_running?)")]
    UnknownStep { id: String },

    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

pub type Result<T, E = StateError> = std::result::Result<T, E>;

/// The contract between the engine and a state backend.
///
/// Calls are synchronous and may block on disk I/O (an fsync per commit) or on another
/// process's transaction (up to the backend's busy timeout). From async code call them through
/// `tokio::task::spawn_blocking`; calling directly from a task is acceptable for the short
/// status writes but not in a hot loop. Implementations are `Send + Sync` and serialise calls
/// internally, so one store can be shared (`Arc<dyn StateStore>`) by all concurrently running
/// steps.
///
/// Writes are atomic per call: after a crash, each call either happened entirely or not at all.
/// Nothing is buffered: when a method returns `Ok`, the change is durable.
///
/// The store is deliberately dumb: it does not enforce the step state machine (the engine
/// does) and does not check the lock on every write (the engine holds the lock for the whole
/// apply; read-only commands like `status` don't need it).
///
/// Step ids are passed as `&str`; the store treats them as opaque, stable keys.
pub trait StateStore: Send + Sync {
    /// All step records, sorted by id.
    ///
    /// Called by `plan`, `status` and at the start of `apply` to decide what to run. Records of
    /// steps no longer in the plan are returned too; the caller decides what to do with them.
    fn steps(&self) -> Result<Vec<StepRecord>>;

    /// One step's record, or `None` if nothing was ever recorded for it.
    fn step(&self, id: &str) -> Result<Option<StepRecord>>;

    /// Records the hash of the step's resolved config, creating a `pending` record if none
    /// exists. Nothing else changes.
    ///
    /// Called when apply decides to run a step. If the stored hash differs from the plan's,
    /// the caller first calls [`clear_step`](Self::clear_step) — this method does not reset
    /// anything by itself. `hash` must be a non-empty hex string
    /// ([`StateError::InvalidArgument`] otherwise), which also keeps configs (and their
    /// secrets) out of this column. It is stored exactly as given — the caller compares it
    /// byte for byte with the plan's, so it must always produce the same spelling.
    fn set_config_hash(&self, id: &str, hash: &str) -> Result<()>;

    /// Marks the step `running`: increments `attempts`, sets `started_at` to now and clears
    /// `finished_at`. Counters, checkpoints and `last_error` are kept (a resumed step
    /// continues; the previous error stays visible until the step completes). Creates the
    /// record if missing.
    ///
    /// Called just before the engine hands the step to its connector.
    fn mark_running(&self, id: &str) -> Result<()>;

    /// Marks the step `done`, sets `finished_at`, clears `last_error`. Creates the record if
    /// missing.
    fn mark_done(&self, id: &str) -> Result<()>;

    /// Marks the step `failed` with `error` (redacted before it is written, and truncated to a
    /// sane length), sets `finished_at`. Creates the record if missing.
    ///
    /// Called when an attempt ended in an error the engine will not retry now.
    fn mark_failed(&self, id: &str, error: &str) -> Result<()>;

    /// Marks a manual gate `waiting` for approval. Creates the record if missing.
    fn mark_waiting(&self, id: &str) -> Result<()>;

    /// Adds `delta` to the step's counters and upserts `checkpoints` (key → opaque value,
    /// owned by the step's connector) in **one transaction**.
    ///
    /// Called by a connector right after the target acknowledged a batch; never before, or a
    /// crash would skip unsent work. Because counts and checkpoints are committed together,
    /// they never disagree after a crash. Keys not mentioned keep their values. The record
    /// must exist ([`StateError::UnknownStep`]); that catches progress reported for a step
    /// the engine never started.
    fn commit_progress(
        &self,
        id: &str,
        delta: ProgressDelta,
        checkpoints: &[(&str, &[u8])],
    ) -> Result<()>;

    /// The step's checkpoints, key → value. Empty if none (or no record).
    ///
    /// Called by a connector when a step starts or resumes.
    fn checkpoints(&self, id: &str) -> Result<BTreeMap<String, Vec<u8>>>;

    /// Resets the step to a fresh `pending` record — no hash, attempts, timings, counts,
    /// error or approval — and deletes its checkpoints, atomically. No-op if there is no
    /// record.
    ///
    /// Called when the step's config hash changed: old checkpoints would describe work done
    /// under a different config (another source folder, another mapping) and must not be
    /// trusted. A crash between this and the following `set_config_hash` leaves no hash,
    /// which reads as "changed" and is reset again: harmless.
    fn clear_step(&self, id: &str) -> Result<()>;

    /// Records that `by` approved the manual gate `id`, and marks it `done`. Creates the
    /// record if missing, so a gate may be approved before apply reaches it.
    ///
    /// Called by `cutover approve`. The caller checks the step is a manual gate; the store
    /// cannot know.
    fn record_approval(&self, id: &str, by: &str) -> Result<()>;

    /// Takes the apply lock for this process, retrying until `timeout` has passed
    /// (`Duration::ZERO`: one try). The lock is released when the guard is dropped.
    ///
    /// Errors with [`StateError::Locked`], naming the holder and whether it is known to be
    /// dead, if another holder keeps it past the timeout. A holder that died (SIGKILL, power
    /// loss) leaves its lock behind: this method never takes it over — see
    /// [`acquire_lock_stealing_dead`](Self::acquire_lock_stealing_dead) and
    /// [`force_unlock`](Self::force_unlock). Also starts a run in the run history.
    fn acquire_lock(&self, timeout: Duration) -> Result<LockGuard>;

    /// Like [`acquire_lock`](Self::acquire_lock), but takes over a lock whose holder is
    /// *provably* dead: on this host (same hostname and boot), and its pid no longer runs the
    /// process that took the lock.
    ///
    /// Safe because a dead process writes nothing more, and whatever it was writing when it
    /// died was rolled back or committed whole by the store's transactions: there is no
    /// half-done state to protect. A holder on another host, or one that might be alive, is
    /// never taken over.
    fn acquire_lock_stealing_dead(&self, timeout: Duration) -> Result<LockGuard>;

    /// The current lock holder, if any, and whether it is alive.
    fn lock_holder(&self) -> Result<Option<(LockHolder, Liveness)>>;

    /// Removes the lock whoever holds it, returning who held it. For `cutover state unlock`,
    /// after a human checked the holder is gone; never called by apply itself.
    fn force_unlock(&self) -> Result<Option<LockHolder>>;

    /// Records how the run `run_id` (from [`LockGuard::run_id`]) ended. Called by apply before
    /// releasing the lock. Unknown run ids are ignored.
    fn finish_run(&self, run_id: &str, outcome: RunOutcome) -> Result<()>;

    /// The most recent runs, newest first, at most `limit`.
    fn recent_runs(&self, limit: usize) -> Result<Vec<RunRecord>>;
}

/// Where a plan's state lives unless the user says otherwise: `.cutover/<plan-name>.db`
/// beside the plan file.
///
/// Beside the plan (not in the working directory) so that running from another directory
/// finds the same state. The name is made file-safe: characters other than ASCII letters,
/// digits, `-`, `_` and `.` become `_`, and a leading `.` is replaced too, so a plan name can
/// never point outside `.cutover/`.
pub fn default_state_path(plan_file: &Path, plan_name: &str) -> PathBuf {
    let mut name: String = plan_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() || name.starts_with('.') {
        name.insert(0, '_');
    }
    let dir = plan_file.parent().unwrap_or_else(|| Path::new(""));
    dir.join(STATE_DIR).join(format!("{name}.db"))
}

/// Name of the per-project state directory; when the store creates a directory of this
/// name it puts a `.gitignore` with `*` in it.
pub const STATE_DIR: &str = ".cutover";

/// Formats a time as an RFC 3339 UTC timestamp with second precision
/// (`2026-03-01T14:05:09Z`), for messages and `status` output.
pub fn format_utc(t: SystemTime) -> String {
    let secs = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs_f64().ceil() as i64),
    };
    crate::time::rfc3339_utc(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formatting_matches_known_dates() {
        let at = |s: u64| format_utc(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_772_373_909), "2026-03-01T14:05:09Z");
        assert_eq!(at(4_107_542_399), "2100-02-28T23:59:59Z");
    }

    #[test]
    fn state_path_is_beside_the_plan_and_file_safe() {
        assert_eq!(
            default_state_path(Path::new("plans/acme.yaml"), "acme-to-m365"),
            PathBuf::from("plans/.cutover/acme-to-m365.db")
        );
        assert_eq!(
            default_state_path(Path::new("acme.yaml"), "acme"),
            PathBuf::from(".cutover/acme.db")
        );
        assert_eq!(
            default_state_path(Path::new("/p/acme.yaml"), "../etc/x y"),
            PathBuf::from("/p/.cutover/_.._etc_x_y.db")
        );
        assert_eq!(
            default_state_path(Path::new("/p/a.yaml"), ""),
            PathBuf::from("/p/.cutover/_.db")
        );
    }
}
