//! `cutover approve FILE STEP`: marks a manual gate done; the next apply continues past it.

use std::path::PathBuf;

use super::{open_workspace, report_ops_error, ExitCode, Output, StateArgs};
use crate::ops;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The plan file.
    pub file: PathBuf,
    /// The gate, e.g. `manual.disable-mfa-reception`.
    pub step: String,
    #[command(flatten)]
    pub state: StateArgs,
    /// Who approves (default: user@host of this session).
    #[arg(long)]
    pub by: Option<String>,
}

pub fn run(args: &Args, output: &mut Output<'_>) -> ExitCode {
    let ws = match open_workspace(&args.file, &args.state, output) {
        Ok(ws) => ws,
        Err(code) => return code,
    };
    let by = args.by.clone().unwrap_or_else(ops::current_user);
    match ops::approve(&ws, &args.step, &by) {
        Ok(()) => {
            let _ = writeln!(
                output.out,
                "Approved {} (by {by}). The next apply continues past it.",
                args.step
            );
            ExitCode::Ok
        }
        Err(e) => report_ops_error(&e, output),
    }
}
