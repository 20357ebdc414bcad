//! `cutover apply FILE`: executes the plan's step DAG — idempotent, resumable, interruptible.

use std::collections::HashMap;
use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::time::Duration;

use super::progress::{Expected, Progress, ProgressMode};
use super::{open_workspace, report_ops_error, ExitCode, Output, SelectArgs, StateArgs, Verbosity};
use crate::engine::{ApplyOptions, CancellationToken, WalkOutcome};
use crate::ops::{self, Action, ApplyRequest, PlanView, Workspace};
use crate::plan::Options;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A plan file, or a plan saved by `cutover plan --out`.
    pub file: PathBuf,
    #[command(flatten)]
    pub select: SelectArgs,
    #[command(flatten)]
    pub state: StateArgs,
    /// Do not ask for confirmation (required when not run from a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Steps run at once (default: the plan's `settings.parallelism`).
    #[arg(long)]
    pub parallelism: Option<usize>,
    /// Stop scheduling every step after the first failure.
    #[arg(long)]
    pub fail_fast: bool,
    /// How long to wait for another apply's lock, e.g. `30s`, `5m` (default: do not wait).
    #[arg(long, value_parser = parse_timeout, default_value = "0s")]
    pub lock_timeout: Duration,
    /// Progress display.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,
    /// Sleep until a step's time has come (`dns.cutover` waits out the TTL lowered ahead
    /// of it) instead of stopping there; Ctrl-C stops the sleep, apply again resumes.
    #[arg(long)]
    pub wait: bool,
    /// Write a protocol trace for support to FILE: every IMAP, POP3 and HTTP command and
    /// response line with a timestamp — never message content, passwords or tokens.
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
}

pub(crate) fn parse_timeout(text: &str) -> Result<Duration, String> {
    crate::plan::validate::parse_duration(text)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("`{text}` is not a duration such as 30s or 5m"))
}

pub fn run(args: &Args, output: &mut Output<'_>) -> ExitCode {
    // From the preview on: it talks to the servers too.
    let _trace = match &args.trace {
        Some(path) => match crate::trace::start(path) {
            Ok(trace) => Some(trace),
            Err(e) => {
                let _ = writeln!(
                    output.err,
                    "error: cannot write the trace {}: {e}",
                    path.display()
                );
                return ExitCode::Usage;
            }
        },
        None => None,
    };
    let options = Options {
        allow_inline_secrets: args.state.allow_inline_secrets,
    };
    let saved = is_saved_plan(&args.file);
    let (ws, selection, view) = if saved {
        match ops::load_saved_plan(&args.file, options, args.state.state.as_deref()) {
            Ok((ws, saved)) => {
                match crate::graph::Selection::new(&saved.targets, &saved.excludes)
                    .and_then(|s| s.replacing(&saved.replace))
                {
                    Ok(selection) => (ws, selection, saved.view),
                    Err(e) => {
                        let _ = writeln!(output.err, "error: {e}");
                        return ExitCode::Usage;
                    }
                }
            }
            Err(e) => return report_ops_error(&e, output),
        }
    } else {
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
        let view = match ops::plan(&ws, &selection, false) {
            Ok(view) => view,
            Err(e) => return report_ops_error(&e, output),
        };
        if output.verbosity > Verbosity::Quiet {
            let _ = write!(output.out, "{}", super::render::plan(&view, ws.graph()));
        }
        let blocked = view.count(Action::Blocked);
        if !view.has_changes() {
            if blocked > 0 {
                // Not "nothing to do": those steps are not done, they cannot run.
                let _ = writeln!(
                    output.out,
                    "\n{} — nothing was changed.",
                    super::render::steps_blocked(blocked)
                );
                return ExitCode::Failure;
            }
            let _ = writeln!(output.out, "\nNo changes. Nothing to do.");
            return ExitCode::Ok;
        }
        if blocked > 0 {
            let _ = writeln!(
                output.err,
                "note: {}; apply runs the others.",
                super::render::steps_blocked(blocked)
            );
        }
        if !args.yes && !confirm(output) {
            return ExitCode::Usage;
        }
        (ws, selection, view)
    };
    execute(args, &ws, selection, &view, output)
}

fn is_saved_plan(path: &std::path::Path) -> bool {
    std::fs::read(path)
        .is_ok_and(|bytes| bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{'))
}

fn confirm(output: &mut Output<'_>) -> bool {
    if !std::io::stdin().is_terminal() {
        let _ = writeln!(output.err, "error: apply asks for confirmation; not running from a terminal, so pass --yes (or apply a saved plan)");
        return false;
    }
    let _ = write!(
        output.err,
        "\nDo you want to perform these actions? Only 'yes' will be accepted: "
    );
    let _ = output.err.flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    if answer.trim() == "yes" {
        true
    } else {
        let _ = writeln!(output.err, "Apply cancelled.");
        false
    }
}

fn execute(
    args: &Args,
    ws: &Workspace,
    selection: crate::graph::Selection,
    view: &PlanView,
    output: &mut Output<'_>,
) -> ExitCode {
    let cancel = CancellationToken::new();
    install_interrupt_handler(cancel.clone());
    let expected: HashMap<String, Expected> = view
        .rows
        .iter()
        .filter_map(|r| match (&r.summary, r.items, r.bytes) {
            // A step summarising its own work that moves bytes is an upload: bytes, not mail.
            (Some(_), _, Some(bytes)) if bytes > 0 => {
                Some((r.step.clone(), Expected::Bytes(bytes)))
            }
            (_, Some(n), _) => Some((r.step.clone(), Expected::Messages(n))),
            _ => None,
        })
        .collect();
    let request = ApplyRequest {
        selection,
        options: ApplyOptions {
            parallelism: args.parallelism,
            fail_fast: args.fail_fast,
            wait: args.wait,
            ..ApplyOptions::default()
        },
        lock_timeout: args.lock_timeout,
    };
    let result = {
        let mut progress = Progress::new(args.progress, output.verbosity, output.err, expected);
        ops::apply(ws, &request, &mut progress, cancel)
    };
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(e) => return report_ops_error(&e, output),
    };
    if let Some(previous) = &outcome.took_over_from {
        let _ = writeln!(
            output.err,
            "note: took over the lock of a dead apply ({previous})"
        );
    }
    let steps = &outcome.report.steps;
    let count = |f: fn(&crate::engine::StepResult) -> bool| steps.values().filter(|r| f(r)).count();
    use crate::engine::StepResult as R;
    let _ = writeln!(
        output.out,
        "\nApply {}: {} done, {} unchanged, {} failed, {} not run, {} waiting.",
        ops::outcome_text(outcome.report.outcome),
        count(|r| matches!(r, R::Done { .. } | R::Approved)),
        count(|r| matches!(r, R::Unchanged)),
        count(|r| matches!(r, R::Failed { .. })),
        count(|r| matches!(r, R::Skipped { .. } | R::Interrupted)),
        count(|r| matches!(r, R::Waiting { .. })),
    );
    let markdown = super::render::report_markdown(&outcome.client_report);
    match ops::report::write(ws, &outcome.client_report, &markdown) {
        Ok(files) => {
            for file in &files {
                let _ = writeln!(output.out, "Report: {}", file.display());
            }
            if output.verbosity == Verbosity::Verbose {
                let _ = writeln!(output.out, "State: {}", ws.state_path.display());
                let _ = writeln!(output.out, "Event log: {}", ws.event_log_path().display());
            }
        }
        Err(e) => {
            report_ops_error(&e, output);
        }
    }
    match outcome.report.outcome {
        WalkOutcome::Succeeded => ExitCode::Ok,
        WalkOutcome::Failed => ExitCode::Failure,
        WalkOutcome::Interrupted => ExitCode::Interrupted,
    }
}

/// First Ctrl-C: stop scheduling, let in-flight steps checkpoint. Second: abort at once
/// (state stays consistent: every commit is a transaction).
pub(crate) fn install_interrupt_handler(cancel: CancellationToken) {
    let _ = ctrlc::set_handler(move || {
        if cancel.is_cancelled() {
            say_now("\naborting\n");
            std::process::exit(ExitCode::Interrupted as i32);
        }
        cancel.cancel();
        say_now("\ninterrupted: finishing in-flight steps and saving checkpoints (Ctrl-C again aborts)\n");
    });
}

/// Writes straight to file descriptor 2: the command holds the stderr lock for its whole run,
/// so `eprintln!` from the signal thread would wait forever.
fn say_now(text: &str) {
    // SAFETY: write(2) on fd 2 with a valid buffer and length.
    unsafe {
        libc::write(2, text.as_ptr().cast(), text.len());
    }
}
