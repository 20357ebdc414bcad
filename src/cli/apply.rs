//! `cutover apply FILE`: executes the plan's step DAG — idempotent, resumable, interruptible.

use std::collections::HashMap;
use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::time::Duration;

use super::interrupt::Interrupt;
use super::progress::{Expected, Progress, ProgressMode};
use super::{open_workspace, report_ops_error, ExitCode, Output, SelectArgs, StateArgs, Verbosity};
use crate::engine::{ApplyOptions, WalkOutcome};
use crate::ops::{self, Action, ApplyLock, ApplyRequest, PlanView, Workspace};
use crate::plan::Options;
use crate::state::RunOutcome;

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
    // From the first instant: Ctrl-C while the servers are being checked stops too.
    let interrupt = Interrupt::preparing();
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
    let saved = if is_saved_plan(&args.file) {
        match ops::load_saved_plan(&args.file, options, args.state.state.as_deref()) {
            Ok((ws, saved)) => {
                match crate::graph::Selection::new(&saved.targets, &saved.excludes)
                    .and_then(|s| s.replacing(&saved.replace))
                {
                    Ok(selection) => Some((ws, selection, saved.view)),
                    Err(e) => {
                        let _ = writeln!(output.err, "error: {e}");
                        return ExitCode::Usage;
                    }
                }
            }
            Err(e) => return report_ops_error(&e, output),
        }
    } else {
        None
    };
    let (ws, selection) = match &saved {
        Some((ws, selection, _)) => (ws, selection.clone()),
        None => {
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
            return with_lock(args, &ws, selection, None, &interrupt, output);
        }
    };
    with_lock(
        args,
        ws,
        selection,
        saved.as_ref().map(|s| &s.2),
        &interrupt,
        output,
    )
}

/// Takes the apply lock before anything talks to a server — a second apply learns at once
/// that one is running — then previews (unless the plan was saved), asks, and applies.
fn with_lock(
    args: &Args,
    ws: &Workspace,
    selection: crate::graph::Selection,
    saved_view: Option<&PlanView>,
    interrupt: &Interrupt,
    output: &mut Output<'_>,
) -> ExitCode {
    let lock = match ops::lock(ws, args.lock_timeout) {
        Ok(lock) => lock,
        Err(e) => return report_ops_error(&e, output),
    };
    interrupt.hold(lock.clone());
    if let Some(previous) = &lock.took_over_from {
        let _ = writeln!(
            output.err,
            "note: took over the lock of a dead apply ({previous})"
        );
    }
    let (code, ran) = match saved_view {
        Some(view) => execute(args, ws, &lock, selection, view, interrupt, output),
        None => preview_then_execute(args, ws, &lock, selection, interrupt, output),
    };
    if !ran {
        // Nothing was applied: record the run for what it was and release the lock.
        let outcome = match code {
            ExitCode::Ok => RunOutcome::Succeeded,
            ExitCode::Interrupted => RunOutcome::Interrupted,
            _ => RunOutcome::Failed,
        };
        if let Err(e) = lock.finish(outcome) {
            return report_ops_error(&e, output);
        }
    }
    code
}

/// The preview, the blocked-steps and nothing-to-do exits, the question, then the walk.
/// Returns the exit code and whether the walk ran (it then recorded the run itself).
fn preview_then_execute(
    args: &Args,
    ws: &Workspace,
    lock: &ApplyLock,
    selection: crate::graph::Selection,
    interrupt: &Interrupt,
    output: &mut Output<'_>,
) -> (ExitCode, bool) {
    let view = match ops::plan(ws, &selection, false) {
        Ok(view) => view,
        Err(e) => return (report_ops_error(&e, output), false),
    };
    if output.verbosity > Verbosity::Quiet {
        let _ = write!(output.out, "{}", super::render::plan(&view, ws.graph()));
    }
    let blocked_steps: Vec<&str> = view
        .rows
        .iter()
        .filter(|r| r.action == Action::Blocked)
        .map(|r| r.step.as_str())
        .collect();
    if !view.has_changes() {
        if !blocked_steps.is_empty() {
            // Not "nothing to do": those steps are not done, they cannot run.
            let _ = writeln!(
                output.out,
                "\n{} — nothing was changed.",
                super::render::steps_blocked(&blocked_steps)
            );
            return (ExitCode::Failure, false);
        }
        let _ = writeln!(output.out, "\nNo changes. Nothing to do.");
        return (ExitCode::Ok, false);
    }
    if !blocked_steps.is_empty() {
        let _ = writeln!(
            output.err,
            "note: {}; apply runs the others.",
            super::render::steps_blocked(&blocked_steps)
        );
    }
    if !args.yes && !confirm(output) {
        return (ExitCode::Usage, false);
    }
    execute(args, ws, lock, selection, &view, interrupt, output)
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
    lock: &ApplyLock,
    selection: crate::graph::Selection,
    view: &PlanView,
    interrupt: &Interrupt,
    output: &mut Output<'_>,
) -> (ExitCode, bool) {
    interrupt.start_working();
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
    };
    let result = {
        let mut progress = Progress::new(args.progress, output.verbosity, output.err, expected);
        ops::apply(ws, lock, &request, &mut progress, interrupt.cancel_token())
    };
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(e) => return (report_ops_error(&e, output), false),
    };
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
    let code = match outcome.report.outcome {
        WalkOutcome::Succeeded => ExitCode::Ok,
        WalkOutcome::Failed => ExitCode::Failure,
        WalkOutcome::Interrupted => ExitCode::Interrupted,
    };
    (code, true)
}
