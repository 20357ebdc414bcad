//! `cutover status FILE`: every step's state, progress and last error.

use std::path::PathBuf;

use super::render::{human_bytes, items_done, thousands};
use super::{open_workspace, report_ops_error, ExitCode, Output, StateArgs};
use crate::ops;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The plan file.
    pub file: PathBuf,
    #[command(flatten)]
    pub state: StateArgs,
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &Args, output: &mut Output<'_>) -> ExitCode {
    let ws = match open_workspace(&args.file, &args.state, output) {
        Ok(ws) => ws,
        Err(code) => return code,
    };
    let rows = match ops::status(&ws) {
        Ok(rows) => rows,
        Err(e) => return report_ops_error(&e, output),
    };
    if args.json {
        let _ = writeln!(
            output.out,
            "{}",
            serde_json::to_string_pretty(&rows).unwrap_or_default()
        );
        return ExitCode::Ok;
    }
    let _ = writeln!(
        output.out,
        "{:<34} {:<11} {:>8} {:>16} {:>10} {:>13} {:>11}  LAST ERROR / NOTE",
        "STEP", "STATUS", "ATTEMPTS", "DONE", "SIZE", "ALREADY THERE", "LEFT BEHIND"
    );
    for row in &rows {
        let throttled = row
            .throttled_secs
            .map(|s| format!("throttled by the target for {s} s"));
        let error = row
            .last_error
            .as_deref()
            .map(|e| e.lines().next().unwrap_or(""))
            .or(row.note.as_deref())
            .or(throttled.as_deref())
            .unwrap_or("");
        let _ = writeln!(
            output.out,
            "{:<34} {:<11} {:>8} {:>16} {:>10} {:>13} {:>11}  {error}",
            row.step,
            row.status,
            row.attempts,
            items_done(&row.step, row.messages),
            human_bytes(row.bytes),
            thousands(row.present),
            thousands(row.left_behind)
        );
    }
    let done = rows.iter().filter(|r| r.status == "done").count();
    let _ = writeln!(
        output.out,
        "\n{done} of {} steps done. State: {}",
        rows.len(),
        ws.state_path.display()
    );
    ExitCode::Ok
}
