//! `cutover schema`: the plan's JSON Schema, as committed in `schemas/plan.schema.json`.

use super::{ExitCode, Output};

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: &Args, output: &mut Output<'_>) -> ExitCode {
    let _ = writeln!(output.out, "{}", schema_text());
    ExitCode::Ok
}

/// The schema as pretty JSON (what `schemas/plan.schema.json` must hold, plus a newline).
pub fn schema_text() -> String {
    serde_json::to_string_pretty(&crate::plan::model::json_schema()).unwrap_or_default()
}
