//! `cutover completions SHELL`: a completion script for bash, zsh, fish or PowerShell,
//! generated from the command definitions (clap_complete), so it never lags behind them.

use clap::CommandFactory;

use super::{Cli, ExitCode, Output};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shell to complete in.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

pub fn run(args: &Args, output: &mut Output<'_>) -> ExitCode {
    let mut command = Cli::command();
    clap_complete::generate(args.shell, &mut command, "cutover", output.out);
    ExitCode::Ok
}
