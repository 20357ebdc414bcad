//! `cutover graph FILE`: the step DAG as DOT or Mermaid.

use std::path::PathBuf;

use clap::ValueEnum;

use super::{load_valid_plan, ExitCode, Output, SelectArgs};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The plan file.
    pub file: PathBuf,
    /// `dot` (Graphviz) or `mermaid`.
    #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
    pub format: GraphFormat,
    #[command(flatten)]
    pub select: SelectArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    Dot,
    Mermaid,
}

pub fn run(args: &Args, output: &mut Output<'_>) -> ExitCode {
    let loaded = match load_valid_plan(&args.file, false, output) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let Some((_, graph)) = loaded.valid() else {
        return ExitCode::Failure;
    };
    let selected = match args.select.selection() {
        Ok(selection) => graph.select(&selection),
        Err(e) => {
            let _ = writeln!(output.err, "error: {e}");
            return ExitCode::Usage;
        }
    };
    let text = match args.format {
        GraphFormat::Dot => graph.to_dot(&selected),
        GraphFormat::Mermaid => graph.to_mermaid(&selected),
    };
    let _ = write!(output.out, "{text}");
    ExitCode::Ok
}
