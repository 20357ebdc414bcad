//! Command-line front end. One file per subcommand: each parses its arguments and prints;
//! the work lives in the library so every command is testable without a process.
//!
//! Every subcommand exposes `Args` (clap) and `run(&Args, &mut Output) -> Result<ExitCode, CliError>`.

use std::io::Write;

use clap::{Parser, Subcommand};

pub mod autocomplete;

/// Exit codes shared by every command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// Success (validate: the plan is valid, warnings allowed).
    Ok = 0,
    /// The input is invalid or the work failed.
    Failure = 1,
    /// Usage or I/O error: the command could not do its job at all.
    Usage = 2,
}

/// Where a command writes: stdout for results, stderr for diagnostics and progress.
pub struct Output<'a> {
    pub out: &'a mut dyn Write,
    pub err: &'a mut dyn Write,
    /// Whether colour and Unicode graphics may be used on `err`.
    pub color: bool,
}

#[derive(Debug, Parser)]
#[command(name = "cutover", version, about = "Declarative mail-migration plans", long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Outlook autocomplete caches: show, convert.
    Autocomplete(autocomplete::Args),
}

/// Parses `std::env::args`, runs the command against the real stdout/stderr, returns the exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let mut out = stdout.lock();
    let mut err = stderr.lock();
    let color = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut output = Output {
        out: &mut out,
        err: &mut err,
        color,
    };
    run(cli, &mut output) as i32
}

/// Runs a parsed command line; the library entry point used by tests.
pub fn run(cli: Cli, output: &mut Output<'_>) -> ExitCode {
    match cli.command {
        Command::Autocomplete(args) => autocomplete::run(&args, output),
    }
}
