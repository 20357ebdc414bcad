//! Ctrl-C for the commands that do long work (`apply`, `rollback`, `pst upload`), from their
//! first instant to their last.
//!
//! One process-wide handler (the `ctrlc` crate allows one per process) dispatches to the
//! command running now, which says what a Ctrl-C means at its stage:
//!
//! - **preparing** — taking the lock, signing in to every server for the preview, asking for
//!   confirmation: nothing has been changed yet, so the first Ctrl-C stops at once (the run is
//!   recorded as interrupted and the lock released);
//! - **working** — the first Ctrl-C cancels the walk (steps commit what their targets
//!   acknowledged and stop); the second aborts at once, after the state commit in flight, if
//!   any, has finished (the store's single connection serialises the two), so acknowledged
//!   work that was being checkpointed is kept and the rest is offered again next time.
//!
//! The handler runs on a thread of its own (not in signal context), so it may take locks
//! and write the state.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Once, PoisonError};

use super::ExitCode;
use crate::engine::CancellationToken;
use crate::ops::ApplyLock;

/// What the running command registered.
struct Current {
    cancel: CancellationToken,
    /// Set once the command starts changing things; before, a Ctrl-C stops at once.
    working: AtomicBool,
    /// The apply lock to release before exiting, once taken.
    lock: Mutex<Option<ApplyLock>>,
}

static CURRENT: Mutex<Option<Arc<Current>>> = Mutex::new(None);
static INSTALL: Once = Once::new();

/// The running command's Ctrl-C registration; dropping it unregisters (a later command in
/// the same process, as in the tests, registers its own).
pub struct Interrupt {
    current: Arc<Current>,
}

impl Interrupt {
    /// Registers a command that is preparing: a Ctrl-C now exits at once with code 130.
    pub fn preparing() -> Interrupt {
        Self::register(false)
    }

    /// Registers a command that starts changing things right away (`rollback`, `pst upload`).
    pub fn working() -> Interrupt {
        Self::register(true)
    }

    fn register(working: bool) -> Interrupt {
        INSTALL.call_once(|| {
            let _ = ctrlc::set_handler(on_ctrl_c);
        });
        let current = Arc::new(Current {
            cancel: CancellationToken::new(),
            working: AtomicBool::new(working),
            lock: Mutex::new(None),
        });
        *CURRENT.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&current));
        Interrupt { current }
    }

    /// The token the first Ctrl-C of the working stage cancels.
    pub fn cancel_token(&self) -> CancellationToken {
        self.current.cancel.clone()
    }

    /// Whether Ctrl-C was pressed (during the working stage).
    pub fn is_cancelled(&self) -> bool {
        self.current.cancel.is_cancelled()
    }

    /// The apply lock a Ctrl-C must release (and record the run of) before exiting.
    pub fn hold(&self, lock: ApplyLock) {
        *self
            .current
            .lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(lock);
    }

    /// From now on the first Ctrl-C cancels instead of exiting.
    pub fn start_working(&self) {
        self.current.working.store(true, Ordering::SeqCst);
    }
}

impl Drop for Interrupt {
    fn drop(&mut self) {
        let mut current = CURRENT.lock().unwrap_or_else(PoisonError::into_inner);
        if current
            .as_ref()
            .is_some_and(|c| Arc::ptr_eq(c, &self.current))
        {
            *current = None;
        }
    }
}

fn on_ctrl_c() {
    let current = CURRENT
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let Some(current) = current else {
        // Between commands: nothing to save.
        std::process::exit(ExitCode::Interrupted as i32);
    };
    if !current.working.load(Ordering::SeqCst) {
        say_now("\ninterrupted before anything was changed\n");
        exit_now(&current);
    }
    if current.cancel.is_cancelled() {
        say_now("\naborting (what was committed is kept; apply again to resume)\n");
        exit_now(&current);
    }
    current.cancel.cancel();
    say_now(
        "\ninterrupted: finishing in-flight steps and saving checkpoints (Ctrl-C again aborts)\n",
    );
}

/// Records the run as interrupted, releases the lock and exits with 130.
fn exit_now(current: &Current) -> ! {
    let lock = current
        .lock
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    if let Some(lock) = lock {
        lock.abort();
    }
    std::process::exit(ExitCode::Interrupted as i32);
}

/// Writes straight to file descriptor 2: the command holds the stderr lock for its whole run,
/// so `eprintln!` from the handler's thread would wait forever.
fn say_now(text: &str) {
    // SAFETY: write(2) on fd 2 with a valid buffer and length.
    unsafe {
        libc::write(2, text.as_ptr().cast(), text.len());
    }
}
