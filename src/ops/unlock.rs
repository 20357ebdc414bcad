//! `cutover state unlock`: release the apply lock of an apply that is gone — and never that
//! of one still running, which would let a second apply run beside it.

use super::{OpsError, Workspace};
use crate::state::{self, Liveness, LockHolder, StateStore};

/// What `unlock` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unlocked {
    /// The state was not locked.
    NotLocked,
    /// Released the lock of an apply on this host that is provably no longer running.
    Dead(LockHolder),
    /// Released, with `--force`, the lock of an apply on another host, which could not be
    /// checked: if it still runs, two applies now share the state.
    Forced(LockHolder),
}

/// Why `unlock` refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnlockRefused {
    #[error(
        "the lock is held by pid {} on this host ({}), which is still running (since {}); \
         stop it with Ctrl-C or wait for it to finish — unlocking would let a second apply \
         run beside it",
        .0.pid, .0.host, state::format_utc(.0.since)
    )]
    Alive(LockHolder),
    #[error(
        "the lock is held by pid {} on host {} (since {}), which cannot be checked from here; \
         if that apply is no longer running, run `cutover state unlock --force`",
        .0.pid, .0.host, state::format_utc(.0.since)
    )]
    OtherHost(LockHolder),
}

/// Releases the apply lock when its holder is provably dead, or is on another host and
/// `force` is given. `Ok(Err(_))`: refused, nothing changed.
pub fn unlock(ws: &Workspace, force: bool) -> Result<Result<Unlocked, UnlockRefused>, OpsError> {
    let Some(store) = ws.existing_store()? else {
        return Ok(Ok(Unlocked::NotLocked));
    };
    let Some((holder, liveness)) = store.lock_holder()? else {
        return Ok(Ok(Unlocked::NotLocked));
    };
    let refused = match liveness {
        Liveness::Alive => Some(UnlockRefused::Alive(holder.clone())),
        Liveness::OtherHost if !force => Some(UnlockRefused::OtherHost(holder.clone())),
        Liveness::OtherHost | Liveness::Dead => None,
    };
    if let Some(refused) = refused {
        return Ok(Err(refused));
    }
    // Release exactly the holder judged above: a lock another apply took meanwhile stays.
    Ok(Ok(match store.release_lock_of(&holder.run_id)? {
        false => Unlocked::NotLocked,
        true if liveness == Liveness::Dead => Unlocked::Dead(holder),
        true => Unlocked::Forced(holder),
    }))
}
