//! `cutover plan FILE`: read-only preview of what `apply` would do.

use std::path::PathBuf;

use super::{open_workspace, report_ops_error, ExitCode, Output, SelectArgs, StateArgs, Verbosity};
use crate::ops;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The plan file.
    pub file: PathBuf,
    #[command(flatten)]
    pub select: SelectArgs,
    #[command(flatten)]
    pub state: StateArgs,
    /// Exit 0 when nothing would change, 2 when something would, 1 on error or when a step is
    /// blocked.
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
    match (preview(args, output), args.detailed_exitcode) {
        // Blocked is not "no changes": those steps are not done and apply cannot do them,
        // which CI must not read as success.
        (Ok(Preview { blocked: true, .. }), true) => ExitCode::Failure,
        (Ok(Preview { changes: true, .. }), true) => ExitCode::Usage,
        (Ok(_), _) => ExitCode::Ok,
        // Terraform's convention, exactly: 0 nothing to change, 2 changes, 1 any error — a
        // usage or read error too, so CI can tell "changes" from "broken".
        (Err(_), true) => ExitCode::Failure,
        (Err(code), false) => code,
    }
}

/// What a preview found, for the exit code.
struct Preview {
    /// Something would change.
    changes: bool,
    /// Some step cannot run.
    blocked: bool,
}

/// Prints the preview.
fn preview(args: &Args, output: &mut Output<'_>) -> Result<Preview, ExitCode> {
    let ws = open_workspace(&args.file, &args.state, output)?;
    let selection = args.select.selection().map_err(|e| {
        let _ = writeln!(output.err, "error: {e}");
        ExitCode::Usage
    })?;
    let view =
        ops::plan(&ws, &selection, args.offline).map_err(|e| report_ops_error(&e, output))?;
    if args.json {
        let _ = writeln!(
            output.out,
            "{}",
            serde_json::to_string_pretty(&view).unwrap_or_default()
        );
    } else {
        let _ = write!(output.out, "{}", super::render::plan(&view, ws.graph()));
        let blocked = view.blocked_steps(ws.graph());
        if !blocked.is_empty() {
            let _ = writeln!(
                output.out,
                "{}: apply cannot run {} until that is fixed (the reasons are above).",
                super::render::steps_blocked(&blocked),
                if blocked.len() == 1 { "it" } else { "them" }
            );
        }
    }
    if let Some(out) = &args.out {
        ops::save_plan(
            &ws,
            (
                &args.select.targets,
                &args.select.excludes,
                &args.select.replace,
            ),
            &view,
            out,
        )
        .map_err(|e| report_ops_error(&e, output))?;
        if output.verbosity > Verbosity::Quiet {
            let _ = writeln!(
                output.err,
                "Saved the plan to {}; run `cutover apply {}` to do exactly this.",
                out.display(),
                out.display()
            );
        }
    }
    Ok(Preview {
        changes: view.has_changes(),
        blocked: !view.blocked_steps(ws.graph()).is_empty(),
    })
}
