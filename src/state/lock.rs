//! The apply lock: who holds it, whether they are still alive, and the guard that releases it.
//!
//! The lock is a row in the state database itself rather than a separate lock file or an
//! `flock`:
//! - it is taken in the same kind of transaction as every other write, so SQLite's own
//!   cross-process locking makes "check the holder, then take it" atomic — two processes
//!   racing for it cannot both win, and no second file can get out of step with the state;
//! - a holder killed with SIGKILL leaves the row behind, which is what we want: the next
//!   apply learns *who* died and *when*, instead of silently starting over a half-finished
//!   run (an `flock` vanishes with its process and tells nothing);
//! - it carries the holder's pid, host, boot id and process start time, which is enough to
//!   prove a holder on this host dead without guessing.
//!
//! Stale locks are never taken over silently: [`acquire_lock`](super::StateStore::acquire_lock)
//! reports them, and only the explicit stealing variant or `cutover state unlock` removes them.

use std::fmt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{format_utc, Result};

/// Who holds (or held) the apply lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockHolder {
    /// Unique id of the run that took the lock; also the key of its run-history entry.
    pub run_id: String,
    pub pid: u32,
    /// Hostname of the holder's machine.
    pub host: String,
    /// When the lock was taken.
    pub since: SystemTime,
    /// Linux boot id of the holder's machine: a different boot id on the same host means the
    /// machine restarted since, so the holder is dead.
    pub boot_id: Option<String>,
    /// Start time of the holder's process (clock ticks after boot, `/proc/<pid>/stat` field
    /// 22): if the pid now belongs to a process started at another time, the pid was reused
    /// and the holder is dead.
    pub process_start: Option<u64>,
}

/// Whether a lock holder is still running, as far as this process can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// On this host and its process is running (or might be: we could not prove otherwise).
    Alive,
    /// On this host and provably gone: no such pid, a zombie, a reused pid, or the machine
    /// rebooted since.
    Dead,
    /// On another host: its processes cannot be checked from here.
    OtherHost,
}

impl fmt::Display for Liveness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Liveness::Alive => "alive",
            Liveness::Dead => "dead",
            Liveness::OtherHost => "on another host",
        })
    }
}

type ReleaseFn = Box<dyn FnOnce() -> Result<()> + Send + Sync>;

/// Holds the apply lock; dropping it releases the lock.
///
/// Release on drop is best effort and silent; call [`release`](Self::release) on a clean exit
/// to learn whether the lock was taken away meanwhile. Note `std::process::exit` skips
/// destructors: drop the guard (or release it) before exiting.
pub struct LockGuard {
    holder: LockHolder,
    release: Option<ReleaseFn>,
}

impl LockGuard {
    /// For store implementations: `release` removes exactly this holder's lock (not a lock
    /// someone else took after a force-unlock) and errors if it was no longer there.
    pub fn new(holder: LockHolder, release: ReleaseFn) -> Self {
        LockGuard {
            holder,
            release: Some(release),
        }
    }

    pub fn holder(&self) -> &LockHolder {
        &self.holder
    }

    /// The run id to pass to [`StateStore::finish_run`](super::StateStore::finish_run).
    pub fn run_id(&self) -> &str {
        &self.holder.run_id
    }

    /// Releases the lock now. Errs with [`StateError::LockLost`](super::StateError::LockLost)
    /// if it had been force-released by someone else while held.
    pub fn release(mut self) -> Result<()> {
        match self.release.take() {
            Some(release) => release(),
            None => Ok(()),
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            // Nothing useful to do with an error here: the lock row stays and the next acquire
            // reports it, which is the same outcome as a crash.
            let _ = release();
        }
    }
}

impl fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("holder", &self.holder)
            .field("released", &self.release.is_none())
            .finish()
    }
}

/// The lock holder this process would be.
pub(crate) fn this_process(run_id: String, now: SystemTime) -> LockHolder {
    let pid = std::process::id();
    LockHolder {
        run_id,
        pid,
        host: hostname(),
        since: now,
        boot_id: boot_id(),
        process_start: process_start(pid),
    }
}

/// A run id unique across processes and hosts without a UUID dependency: time, pid, and 64
/// bits from the standard library's per-process random hash keys.
pub(crate) fn new_run_id(now: SystemTime) -> String {
    use std::hash::{BuildHasher, Hasher};
    let millis = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(millis);
    hasher.write_u32(std::process::id());
    format!(
        "{millis:x}-{:x}-{:016x}",
        std::process::id(),
        hasher.finish()
    )
}

/// Decides whether `holder` is alive, conservatively: `Dead` only with proof.
pub fn liveness(holder: &LockHolder) -> Liveness {
    if holder.host != hostname() {
        return Liveness::OtherHost;
    }
    if let (Some(then), Some(now)) = (&holder.boot_id, boot_id()) {
        if *then != now {
            return Liveness::Dead;
        }
    }
    // pid 0 and values beyond i32 would make kill() address process groups; never valid here.
    let Ok(pid) = libc::pid_t::try_from(holder.pid) else {
        return Liveness::Alive;
    };
    if pid <= 0 {
        return Liveness::Alive;
    }
    // SAFETY: signal 0 performs only the existence and permission check, delivers nothing.
    let rc = unsafe { libc::kill(pid, 0) };
    if rc != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
        return Liveness::Dead;
    }
    // kill() also succeeds for a zombie (exited, not yet reaped) and for whatever process
    // reused the pid; /proc tells those apart where it exists.
    if let Some((state, start)) = proc_stat(holder.pid) {
        if matches!(state, 'Z' | 'X' | 'x') {
            return Liveness::Dead;
        }
        if holder.process_start.is_some_and(|then| then != start) {
            return Liveness::Dead;
        }
    }
    Liveness::Alive
}

pub(crate) fn locked_message(path: &Path, holder: &LockHolder, liveness: Liveness) -> String {
    let who = format!(
        "state {} is locked by pid {} on host {} since {} (run {})",
        path.display(),
        holder.pid,
        holder.host,
        format_utc(holder.since),
        holder.run_id
    );
    match liveness {
        Liveness::Alive => format!(
            "{who}; another apply is probably running — wait for it, or if that process is \
             dead run `cutover state unlock`"
        ),
        Liveness::Dead => format!(
            "{who}, but that process is no longer running (killed or crashed); run \
             `cutover state unlock` to release the lock"
        ),
        Liveness::OtherHost => format!(
            "{who}; that host's processes cannot be checked from here — if that process is \
             dead run `cutover state unlock`"
        ),
    }
}

/// This machine's hostname; `"unknown"` if it cannot be read (then liveness checks still
/// work between processes of this machine, which all see the same value).
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates on success when
    // the name fits, and we stop at the first NUL or the buffer's end either way.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".to_owned();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match String::from_utf8_lossy(&buf[..end]).trim() {
        "" => "unknown".to_owned(),
        name => name.to_owned(),
    }
}

fn boot_id() -> Option<String> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let id = id.trim();
    (!id.is_empty()).then(|| id.to_owned())
}

fn process_start(pid: u32) -> Option<u64> {
    proc_stat(pid).map(|(_, start)| start)
}

/// State letter and start time of `pid` from `/proc/<pid>/stat`; `None` off Linux or if the
/// process does not exist.
fn proc_stat(pid: u32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is parenthesised and may contain spaces and ')': the fields
    // we want follow the *last* ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // After the state (field 3), start time is field 22: the 19th of the remaining fields.
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_vanished_pid_is_dead() {
        let me = this_process(new_run_id(SystemTime::now()), SystemTime::now());
        assert!(me.process_start.is_some(), "Linux /proc expected");
        assert_eq!(liveness(&me), Liveness::Alive);

        let reused = LockHolder {
            process_start: me.process_start.map(|s| s + 1),
            ..me.clone()
        };
        assert_eq!(liveness(&reused), Liveness::Dead);

        let rebooted = LockHolder {
            boot_id: Some("00000000-0000-0000-0000-000000000000".into()),
            ..me.clone()
        };
        assert_eq!(liveness(&rebooted), Liveness::Dead);

        let elsewhere = LockHolder {
            host: format!("{}-elsewhere", me.host),
            ..me.clone()
        };
        assert_eq!(liveness(&elsewhere), Liveness::OtherHost);

        let nonsense = LockHolder { pid: 0, ..me };
        assert_eq!(liveness(&nonsense), Liveness::Alive);
    }

    #[test]
    fn run_ids_differ() {
        let now = SystemTime::now();
        assert_ne!(new_run_id(now), new_run_id(now));
    }
}
