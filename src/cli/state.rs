//! `cutover state list|show|unlock FILE`: look into and repair the state file.

use std::path::PathBuf;

use super::{open_workspace, report_ops_error, ExitCode, Output, StateArgs};
use crate::ops::{OpsError, Unlocked};
use crate::state::{self, StateStore};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: StateCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum StateCommand {
    /// Every step the state knows, with its status.
    List {
        file: PathBuf,
        #[command(flatten)]
        state: StateArgs,
    },
    /// One step's full record and its checkpoints.
    Show {
        file: PathBuf,
        step: String,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Release the apply lock of a process that is gone (killed, crashed). Refused while
    /// that apply still runs on this host; one on another host needs `--force`.
    Unlock {
        file: PathBuf,
        #[command(flatten)]
        state: StateArgs,
        /// Release the lock of an apply on another host, which cannot be checked from here.
        #[arg(long)]
        force: bool,
    },
}

pub fn run(args: &Args, output: &mut Output<'_>) -> ExitCode {
    let (file, state_args) = match &args.command {
        StateCommand::List { file, state }
        | StateCommand::Show { file, state, .. }
        | StateCommand::Unlock { file, state, .. } => (file, state),
    };
    if let StateCommand::Unlock { force, .. } = &args.command {
        return unlock(file, state_args, *force, output);
    }
    let ws = match open_workspace(file, state_args, output) {
        Ok(ws) => ws,
        Err(code) => return code,
    };
    let store = match ws.existing_store() {
        Ok(Some(store)) => store,
        Ok(None) => {
            let _ = writeln!(
                output.err,
                "no state yet at {} (nothing was applied)",
                ws.state_path.display()
            );
            return ExitCode::Failure;
        }
        Err(e) => return report_ops_error(&e, output),
    };
    let result: Result<(), OpsError> = (|| {
        match &args.command {
            StateCommand::List { .. } => {
                for r in store.steps()? {
                    let _ = writeln!(
                        output.out,
                        "{:<34} {:<8} attempts={} items={} bytes={}",
                        r.id, r.status, r.attempts, r.counts.items, r.counts.bytes
                    );
                }
            }
            StateCommand::Show { step, .. } => match store.step(step)? {
                None => {
                    let _ = writeln!(output.out, "{step}: no record (pending)");
                }
                Some(r) => {
                    let _ = writeln!(
                        output.out,
                        "step:        {}\nstatus:      {}\nconfig hash: {}\nattempts:    {}",
                        r.id,
                        r.status,
                        r.config_hash.as_deref().unwrap_or("-"),
                        r.attempts
                    );
                    let _ = writeln!(
                        output.out,
                        "started:     {}\nfinished:    {}",
                        r.started_at.map_or("-".into(), state::format_utc),
                        r.finished_at.map_or("-".into(), state::format_utc)
                    );
                    let _ = writeln!(
                        output.out,
                        "done:        {}\nbytes:       {}\nalready there: {}\nleft behind: {}",
                        super::render::items_done(&r.id, r.counts.items),
                        r.counts.bytes,
                        r.counts.present,
                        r.counts.left_behind
                    );
                    if let Some(a) = &r.approval {
                        let _ = writeln!(
                            output.out,
                            "approved:    by {} at {}",
                            a.by,
                            state::format_utc(a.at)
                        );
                    }
                    if let Some(e) = &r.last_error {
                        let _ = writeln!(output.out, "last error:  {e}");
                    }
                    for (key, value) in store.checkpoints(step)? {
                        let _ = writeln!(
                            output.out,
                            "checkpoint:  {key} = {}",
                            String::from_utf8_lossy(&value)
                        );
                    }
                }
            },
            StateCommand::Unlock { .. } => {}
        }
        Ok(())
    })();
    match result {
        Ok(()) => ExitCode::Ok,
        Err(e) => report_ops_error(&e, output),
    }
}

fn unlock(
    file: &std::path::Path,
    state_args: &StateArgs,
    force: bool,
    output: &mut Output<'_>,
) -> ExitCode {
    let ws = match open_workspace(file, state_args, output) {
        Ok(ws) => ws,
        Err(code) => return code,
    };
    match crate::ops::unlock(&ws, force) {
        Err(e) => report_ops_error(&e, output),
        Ok(Err(refused)) => {
            let _ = writeln!(output.err, "error: {refused}");
            ExitCode::Failure
        }
        Ok(Ok(Unlocked::NotLocked)) => {
            let _ = writeln!(output.out, "the state was not locked");
            ExitCode::Ok
        }
        Ok(Ok(Unlocked::Dead(h))) => {
            let _ = writeln!(
                output.out,
                "released the lock of pid {} on {} (taken {}; that process is no longer running)",
                h.pid,
                h.host,
                state::format_utc(h.since)
            );
            ExitCode::Ok
        }
        Ok(Ok(Unlocked::Forced(h))) => {
            let _ = writeln!(
                output.err,
                "warning: released the lock of pid {} on host {} (taken {}) without being able \
                 to check that apply from here; if it is still running, two applies now share \
                 this state — stop one",
                h.pid,
                h.host,
                state::format_utc(h.since)
            );
            ExitCode::Ok
        }
    }
}
