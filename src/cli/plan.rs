//! `cutover plan FILE`: read-only preview of what `apply` would do.

use std::path::PathBuf;

use super::{open_workspace, report_ops_error, ExitCode, Output, SelectArgs, StateArgs};
use crate::ops;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The plan file.
    pub file: PathBuf,
    #[command(flatten)]
    pub select: SelectArgs,
    #[command(flatten)]
    pub state: StateArgs,
    /// Exit 0 when nothing would change, 2 when something would, 1 on error.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Print the preview as JSON.
    #[arg(long)]
    pub json: bool,
    /// Compare with state only: no source or target is read (no counts).
    #[arg(long)]
    pub offline: bool,
    /// Save the plan for `cutover apply OUT`, which then does exactly this.
    #[arg(long, value_name = "OUT")]
    pub out: Option<PathBuf>,
}

pub fn run(args: &Args, output: &mut Output<'_>) -> ExitCode {
    let ws = match open_workspace(&args.file, &args.state, output) {
        Ok(ws) => ws,
        Err(code) => return code,
    };
    let selection = match args.select.selection() {
        Ok(s) => s,
        Err(e) => {
            let _ = writeln!(output.err, "error: {e}");
            return ExitCode::Usage;
        }
    };
    let view = match ops::plan(&ws, &selection, args.offline) {
        Ok(view) => view,
        Err(e) => return report_ops_error(&e, output),
    };
    if args.json {
        let _ = writeln!(
            output.out,
            "{}",
            serde_json::to_string_pretty(&view).unwrap_or_default()
        );
    } else {
        let _ = write!(output.out, "{}", super::render::plan(&view, ws.graph()));
    }
    if let Some(out) = &args.out {
        if let Err(e) = ops::save_plan(
            &ws,
            (
                &args.select.targets,
                &args.select.excludes,
                &args.select.replace,
            ),
            &view,
            out,
        ) {
            return report_ops_error(&e, output);
        }
        let _ = writeln!(
            output.err,
            "Saved the plan to {}; run `cutover apply {}` to do exactly this.",
            out.display(),
            out.display()
        );
    }
    if args.detailed_exitcode && view.has_changes() {
        ExitCode::Usage
    } else {
        ExitCode::Ok
    }
}
