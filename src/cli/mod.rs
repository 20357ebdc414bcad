//! Command-line front end. One file per subcommand: each parses its arguments and prints;
//! the work lives in the library so every command is testable without a process.
//!
//! Every subcommand exposes `Args` (clap) and `run(&Args, &mut Output) -> ExitCode`.

pub mod apply;
pub mod approve;
pub mod autocomplete;
pub mod completions;
pub mod demo;
pub mod graph;
pub mod interrupt;
pub mod man;
pub mod plan;
pub mod progress;
pub mod pst;
pub mod pst_upload;
pub mod render;
pub mod rollback;
pub mod schema;
pub mod state;
pub mod status;
pub mod validate;

use std::path::Path;

use clap::{Parser, Subcommand};

use crate::plan::{Loaded, Options};

/// Exit codes shared by every command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// Success (validate: the plan is valid, warnings allowed).
    Ok = 0,
    /// The input is invalid or the work failed.
    Failure = 1,
    /// Usage or I/O error: the command could not do its job at all (also `plan
    /// --detailed-exitcode`'s "there are changes").
    Usage = 2,
    /// Interrupted with Ctrl-C; in-flight work was checkpointed.
    Interrupted = 130,
}

/// Where a command writes: `out` for results, `err` for diagnostics and progress.
pub struct Output<'a> {
    pub out: &'a mut dyn std::io::Write,
    pub err: &'a mut dyn std::io::Write,
    /// Whether colour may be used on `err`.
    pub color: bool,
    /// How much to say besides results and errors (`-q`, `-v`).
    pub verbosity: Verbosity,
}

/// `-q` / (nothing) / `-v`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Verbosity {
    /// Results, errors and what needs a person (a failed step, a gate waiting); no progress,
    /// no preview before `apply`, no notes.
    Quiet,
    /// Progress, previews, notes.
    #[default]
    Normal,
    /// Also every committed batch of a running step, and where state and logs are.
    Verbose,
}

#[derive(Debug, Parser)]
#[command(name = "cutover", version, about = "Declarative mail-migration plans: validate, plan, apply", long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Say more: every committed batch while applying, where state and logs are.
    #[arg(short, long, global = true, conflicts_with = "quiet")]
    pub verbose: bool,
    /// Say less: results, errors and what needs you only (no progress, no preview in apply).
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

impl Cli {
    /// What `-q`/`-v` ask for.
    pub fn verbosity(&self) -> Verbosity {
        if self.quiet {
            Verbosity::Quiet
        } else if self.verbose {
            Verbosity::Verbose
        } else {
            Verbosity::Normal
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check plan files: schema and semantics, every problem at once (exit 1 when invalid).
    Validate(validate::Args),
    /// Print the plan format's JSON Schema.
    Schema(schema::Args),
    /// Print the step DAG as DOT or Mermaid.
    Graph(graph::Args),
    /// Preview what apply would do: + create, ~ change, = done, ! blocked.
    Plan(plan::Args),
    /// Execute the plan: idempotent, resumable after any crash.
    Apply(apply::Args),
    /// Every step's state, progress and last error.
    Status(status::Args),
    /// Approve a manual gate (or a step waiting for a person) so the next apply continues.
    Approve(approve::Args),
    /// Undo what the plan changed outside the mailboxes: `rollback dns` restores the DNS
    /// records the cutover replaced.
    Rollback(rollback::Args),
    /// Inspect the state file, or release a dead apply's lock.
    State(state::Args),
    /// Outlook autocomplete caches: show, convert.
    Autocomplete(autocomplete::Args),
    /// Outlook data files (.pst): show, export, upload to Microsoft's PST Import Service.
    Pst(pst::Args),
    /// Sample data for the demo plan.
    Demo(demo::Args),
    /// Print a shell completion script (bash, zsh, fish, powershell).
    Completions(completions::Args),
    /// Print the manual page (roff), e.g. `cutover man > ~/.local/share/man/man1/cutover.1`.
    Man(man::Args),
}

/// `--state` and `--allow-inline-secrets`, shared by the commands that open a plan's state.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct StateArgs {
    /// State file (default: `.cutover/<plan name>.db` beside the plan).
    #[arg(long, value_name = "PATH")]
    pub state: Option<std::path::PathBuf>,
    /// Accept inline literal secrets (a warning instead of an error).
    #[arg(long)]
    pub allow_inline_secrets: bool,
}

/// Opens a valid plan with its state path, printing diagnostics on failure.
pub fn open_workspace(
    path: &Path,
    state: &StateArgs,
    output: &mut Output<'_>,
) -> Result<crate::ops::Workspace, ExitCode> {
    let loaded = load_valid_plan(path, state.allow_inline_secrets, output)?;
    crate::ops::Workspace::from_loaded(path, loaded, state.state.as_deref())
        .map_err(|e| report_ops_error(&e, output))
}

/// Prints an operation's error and maps it to an exit code.
pub fn report_ops_error(error: &crate::ops::OpsError, output: &mut Output<'_>) -> ExitCode {
    use crate::ops::OpsError;
    let _ = writeln!(
        output.err,
        "error: {}",
        crate::redact::redact(&error.to_string())
    );
    match error {
        OpsError::Read { .. } | OpsError::Selection(_) | OpsError::BadSavedPlan { .. } => {
            ExitCode::Usage
        }
        _ => ExitCode::Failure,
    }
}

/// `--target` / `--exclude`, shared by graph, plan and apply.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SelectArgs {
    /// Only steps matching this glob (and what they depend on). Repeatable.
    #[arg(long = "target", value_name = "GLOB")]
    pub targets: Vec<String>,
    /// Leave out steps matching this glob (and what depends on them). Repeatable.
    #[arg(long = "exclude", value_name = "GLOB")]
    pub excludes: Vec<String>,
    /// Run steps matching this glob again although they are done (Terraform's `-replace`):
    /// a copy or delta catches up with mail that arrived since, from its checkpoints, and
    /// carries flag changes over. Repeatable.
    #[arg(long = "replace", value_name = "GLOB")]
    pub replace: Vec<String>,
}

impl SelectArgs {
    pub fn selection(&self) -> Result<crate::graph::Selection, String> {
        crate::graph::Selection::new(&self.targets, &self.excludes)?.replacing(&self.replace)
    }
}

/// Loads a plan for a command that needs a valid one: prints its diagnostics (warnings too)
/// and fails with exit 1 when it has errors, exit 2 when it cannot be read.
pub fn load_valid_plan(
    path: &Path,
    allow_inline_secrets: bool,
    output: &mut Output<'_>,
) -> Result<Loaded, ExitCode> {
    let loaded = crate::plan::load_file(
        path,
        Options {
            allow_inline_secrets,
        },
    )
    .map_err(|e| {
        let _ = writeln!(output.err, "error: cannot read {}: {e}", path.display());
        ExitCode::Usage
    })?;
    if !loaded.report.diagnostics.is_empty() {
        let _ = write!(
            output.err,
            "{}",
            validate::render_diagnostics(&loaded.report, output.color)
        );
    }
    if loaded.valid().is_none() {
        let _ = writeln!(
            output.err,
            "error: {} is not a valid plan ({} errors); run `cutover validate` for details",
            path.display(),
            loaded.report.errors()
        );
        return Err(ExitCode::Failure);
    }
    Ok(loaded)
}

/// Parses `std::env::args`, runs the command against the real stdout/stderr, returns the exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e, std::env::args_os()),
    };
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let mut out = stdout.lock();
    let mut err = stderr.lock();
    let color = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    let mut output = Output {
        out: &mut out,
        err: &mut err,
        color,
        verbosity: cli.verbosity(),
    };
    run(cli, &mut output) as i32
}

/// Prints a command line clap could not parse (or `--help`/`--version`) and returns the exit
/// code: 0 for help and version, 2 for a usage error — except under `plan
/// --detailed-exitcode`, where 2 means "changes" and every error is 1.
pub fn usage_error(error: &clap::Error, args: impl IntoIterator<Item = std::ffi::OsString>) -> i32 {
    let _ = error.print();
    if !error.use_stderr() {
        return ExitCode::Ok as i32;
    }
    if args.into_iter().any(|a| a == "--detailed-exitcode") {
        ExitCode::Failure as i32
    } else {
        ExitCode::Usage as i32
    }
}

/// Runs a parsed command line; the library entry point used by tests.
pub fn run(cli: Cli, output: &mut Output<'_>) -> ExitCode {
    match &cli.command {
        Command::Validate(args) => validate::run(args, output),
        Command::Schema(args) => schema::run(args, output),
        Command::Graph(args) => graph::run(args, output),
        Command::Plan(args) => plan::run(args, output),
        Command::Apply(args) => apply::run(args, output),
        Command::Status(args) => status::run(args, output),
        Command::Approve(args) => approve::run(args, output),
        Command::Rollback(args) => rollback::run(args, output),
        Command::State(args) => state::run(args, output),
        Command::Autocomplete(args) => autocomplete::run(args, output),
        Command::Pst(args) => pst::run(args, output),
        Command::Demo(args) => demo::run(args, output),
        Command::Completions(args) => completions::run(args, output),
        Command::Man(args) => man::run(args, output),
    }
}
