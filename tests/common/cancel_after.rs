//! A real store that cancels the walk after a given number of progress commits of one step:
//! a deterministic "Ctrl-C in the middle of a copy".

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cutover::engine::CancellationToken;
use cutover::state::{
    Liveness, LockGuard, LockHolder, ProgressDelta, RunOutcome, RunRecord, SqliteStore, StateStore,
    StepRecord,
};

pub struct CancelAfter {
    inner: SqliteStore,
    step: String,
    after: u64,
    seen: AtomicU64,
    cancel: CancellationToken,
}

impl CancelAfter {
    /// The store at `db`, cancelling `cancel` right after the `after`-th commit of `step`.
    pub fn open(db: &Path, step: &str, after: u64, cancel: CancellationToken) -> CancelAfter {
        CancelAfter {
            inner: SqliteStore::open(db).expect("state store"),
            step: step.into(),
            after,
            seen: AtomicU64::new(0),
            cancel,
        }
    }
}

impl StateStore for CancelAfter {
    fn steps(&self) -> cutover::state::Result<Vec<StepRecord>> {
        self.inner.steps()
    }
    fn step(&self, id: &str) -> cutover::state::Result<Option<StepRecord>> {
        self.inner.step(id)
    }
    fn set_config_hash(&self, id: &str, hash: &str) -> cutover::state::Result<()> {
        self.inner.set_config_hash(id, hash)
    }
    fn mark_running(&self, id: &str) -> cutover::state::Result<()> {
        self.inner.mark_running(id)
    }
    fn mark_done(&self, id: &str) -> cutover::state::Result<()> {
        self.inner.mark_done(id)
    }
    fn mark_failed(&self, id: &str, error: &str) -> cutover::state::Result<()> {
        self.inner.mark_failed(id, error)
    }
    fn mark_waiting(&self, id: &str) -> cutover::state::Result<()> {
        self.inner.mark_waiting(id)
    }
    fn commit_progress(
        &self,
        id: &str,
        delta: ProgressDelta,
        checkpoints: &[(&str, &[u8])],
    ) -> cutover::state::Result<()> {
        self.inner.commit_progress(id, delta, checkpoints)?;
        if id == self.step && self.seen.fetch_add(1, Ordering::SeqCst) + 1 == self.after {
            self.cancel.cancel();
        }
        Ok(())
    }
    fn checkpoints(&self, id: &str) -> cutover::state::Result<BTreeMap<String, Vec<u8>>> {
        self.inner.checkpoints(id)
    }
    fn clear_step(&self, id: &str) -> cutover::state::Result<()> {
        self.inner.clear_step(id)
    }
    fn record_approval(&self, id: &str, by: &str) -> cutover::state::Result<()> {
        self.inner.record_approval(id, by)
    }
    fn acquire_lock(&self, timeout: Duration) -> cutover::state::Result<LockGuard> {
        self.inner.acquire_lock(timeout)
    }
    fn acquire_lock_stealing_dead(&self, timeout: Duration) -> cutover::state::Result<LockGuard> {
        self.inner.acquire_lock_stealing_dead(timeout)
    }
    fn lock_holder(&self) -> cutover::state::Result<Option<(LockHolder, Liveness)>> {
        self.inner.lock_holder()
    }
    fn force_unlock(&self) -> cutover::state::Result<Option<LockHolder>> {
        self.inner.force_unlock()
    }
    fn finish_run(&self, run_id: &str, outcome: RunOutcome) -> cutover::state::Result<()> {
        self.inner.finish_run(run_id, outcome)
    }
    fn recent_runs(&self, limit: usize) -> cutover::state::Result<Vec<RunRecord>> {
        self.inner.recent_runs(limit)
    }
}
