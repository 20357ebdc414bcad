//! Shows the walk as it happens: indicatif bars on a terminal, one plain line per event
//! otherwise (CI logs, `--progress plain`).

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::render::{human_bytes, thousands};
use super::Verbosity;
use crate::engine::{Event, EventKind, EventSink};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// Bars on a terminal, plain lines otherwise.
    Auto,
    /// Progress bars.
    Bar,
    /// One line per event.
    Plain,
}

/// How much work the plan preview expects of a step, so bars have a length and an ETA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// Messages: the bar counts committed items.
    Messages(u64),
    /// Bytes, for steps whose work is not messages (a PST upload): the bar follows the bytes
    /// the step reports as sent, with the rate and an ETA.
    Bytes(u64),
}

/// The terminal side of the walk's events.
pub struct Progress<'a> {
    mode: Mode<'a>,
    verbosity: Verbosity,
    expected: HashMap<String, Expected>,
}

/// A byte-measured step in plain mode: what it sent, and when a line was last printed.
struct PlainBytes {
    sent: u64,
    started: std::time::Instant,
    printed: std::time::Instant,
}

/// A plain line about a byte-measured step at most this often.
const PLAIN_BYTES_EVERY: Duration = Duration::from_secs(30);

enum Mode<'a> {
    Plain(&'a mut dyn Write, HashMap<String, PlainBytes>),
    Bars {
        multi: MultiProgress,
        overall: ProgressBar,
        running: HashMap<String, ProgressBar>,
    },
}

impl<'a> Progress<'a> {
    /// Progress in `mode`; quiet shows only what needs a person (failures, gates waiting),
    /// as plain lines; verbose adds a line per committed batch.
    pub fn new(
        mode: ProgressMode,
        verbosity: Verbosity,
        err: &'a mut dyn Write,
        expected: HashMap<String, Expected>,
    ) -> Progress<'a> {
        let bars = verbosity != Verbosity::Quiet
            && match mode {
                ProgressMode::Bar => true,
                ProgressMode::Plain => false,
                ProgressMode::Auto => std::io::IsTerminal::is_terminal(&std::io::stderr()),
            };
        let mode = if bars {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let overall = multi.add(ProgressBar::new(0));
            overall.set_style(
                ProgressStyle::with_template(
                    "{prefix:.bold} [{bar:30}] {pos}/{len} steps  {elapsed_precise} (ETA {eta})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            overall.set_prefix("apply");
            Mode::Bars {
                multi,
                overall,
                running: HashMap::new(),
            }
        } else {
            Mode::Plain(err, HashMap::new())
        };
        Progress {
            mode,
            verbosity,
            expected,
        }
    }

    fn is_bytes(&self, step: &str) -> bool {
        matches!(self.expected.get(step), Some(Expected::Bytes(_)))
    }

    fn step_bar(&self, multi: &MultiProgress, step: &str) -> ProgressBar {
        let bar = match self.expected.get(step) {
            Some(&Expected::Bytes(n)) => {
                let bar = ProgressBar::new(n);
                bar.set_style(
                    ProgressStyle::with_template(
                        "  {prefix:34} [{bar:24}] {bytes}/{total_bytes}  {bytes_per_sec} ETA {eta}  {msg}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
                );
                bar
            }
            Some(&Expected::Messages(n)) if n > 0 => {
                let bar = ProgressBar::new(n);
                bar.set_style(
                    ProgressStyle::with_template(
                        "  {prefix:34} [{bar:24}] {pos}/{len} msgs  {per_sec} ETA {eta}  {msg}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
                );
                bar
            }
            _ => {
                let bar = ProgressBar::new_spinner();
                bar.set_style(
                    ProgressStyle::with_template(
                        "  {spinner} {prefix:32} {pos} msgs  {per_sec}  {msg}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.enable_steady_tick(Duration::from_millis(120));
                bar
            }
        };
        let bar = multi.add(bar);
        bar.set_prefix(step.to_string());
        bar
    }
}

impl EventSink for Progress<'_> {
    fn emit(&mut self, event: &Event) {
        let step = event.step.clone().unwrap_or_default();
        let bytes_step = self.is_bytes(&step);
        if let Mode::Plain(err, sending) = &mut self.mode {
            let line = match (self.verbosity, &event.kind) {
                (
                    Verbosity::Quiet,
                    EventKind::StepFailed { .. } | EventKind::StepWaiting { .. },
                ) => plain_line(&step, &event.kind),
                (Verbosity::Quiet, _) => None,
                (_, EventKind::StepStarted { .. }) if bytes_step => {
                    let now = std::time::Instant::now();
                    sending.insert(
                        step.clone(),
                        PlainBytes {
                            sent: 0,
                            started: now,
                            printed: now,
                        },
                    );
                    plain_line(&step, &event.kind)
                }
                (
                    _,
                    EventKind::StepProgress {
                        bytes,
                        committed: false,
                        ..
                    },
                ) if bytes_step => sending.get_mut(&step).and_then(|p| {
                    p.sent += bytes;
                    if p.printed.elapsed() < PLAIN_BYTES_EVERY {
                        return None;
                    }
                    p.printed = std::time::Instant::now();
                    let rate = p.sent as f64 / p.started.elapsed().as_secs_f64().max(0.001);
                    Some(format!(
                        "{step}: {} sent, {}/s",
                        human_bytes(p.sent),
                        human_bytes(rate as u64)
                    ))
                }),
                (
                    Verbosity::Verbose,
                    EventKind::StepProgress {
                        items,
                        bytes,
                        present,
                        left_behind,
                        committed: true,
                    },
                ) => Some(format!(
                    "{step}: committed {}, {}{}",
                    super::render::items_done(&step, *items),
                    human_bytes(*bytes),
                    already_there_left_behind(*present, *left_behind)
                )),
                (_, kind) => step_line(&step, kind, bytes_step),
            };
            if let Some(line) = line {
                let _ = writeln!(err, "{line}");
            }
            return;
        }
        let new_bar = match (&self.mode, &event.kind) {
            (Mode::Bars { multi, running, .. }, EventKind::StepStarted { .. })
                if !running.contains_key(&step) =>
            {
                Some(self.step_bar(multi, &step))
            }
            _ => None,
        };
        let Mode::Bars {
            multi,
            overall,
            running,
        } = &mut self.mode
        else {
            return;
        };
        if let Some(bar) = new_bar {
            running.insert(step.clone(), bar);
        }
        match &event.kind {
            EventKind::WalkStarted { steps, .. } => overall.set_length(*steps as u64),
            EventKind::StepProgress {
                bytes, committed, ..
            } if bytes_step => {
                // Sent bytes arrive as uncommitted reports; the commits that follow the
                // service's acknowledgements describe the same bytes again.
                if let (Some(bar), false) = (running.get(&step), committed) {
                    bar.inc(*bytes);
                }
            }
            EventKind::StepProgress { items, bytes, .. } => {
                if let Some(bar) = running.get(&step) {
                    bar.inc(*items);
                    bar.set_message(format!("+{}", human_bytes(*bytes)));
                }
            }
            EventKind::StepFinished { .. }
            | EventKind::StepFailed { .. }
            | EventKind::StepSkipped { .. }
            | EventKind::StepWaiting { .. }
            | EventKind::StepInterrupted => {
                if let Some(bar) = running.remove(&step) {
                    bar.finish_and_clear();
                }
                overall.inc(1);
                if let Some(line) = step_line(&step, &event.kind, bytes_step) {
                    let _ = multi.println(line);
                }
            }
            EventKind::StepRetry { .. } | EventKind::StepSleeping { .. } => {
                if let Some(line) = plain_line(&step, &event.kind) {
                    let _ = multi.println(line);
                }
            }
            EventKind::StepStatus { message } => {
                if let Some(bar) = running.get(&step) {
                    bar.set_message(message.clone());
                }
            }
            EventKind::WalkFinished { .. } => overall.finish_and_clear(),
            EventKind::StepStarted { .. } => {}
        }
    }
}

/// [`plain_line`], except that a byte-measured step (an upload) finishes with its bytes
/// rather than a message count.
fn step_line(step: &str, kind: &EventKind, bytes_step: bool) -> Option<String> {
    match kind {
        EventKind::StepFinished {
            unchanged: false,
            bytes,
            ..
        } if bytes_step => Some(format!("{step}: done ({})", human_bytes(*bytes))),
        kind => plain_line(step, kind),
    }
}

/// The plain-text line of an event, or `None` for events too chatty for a log.
pub fn plain_line(step: &str, kind: &EventKind) -> Option<String> {
    Some(match kind {
        EventKind::WalkStarted { plan, steps } => format!("apply {plan}: {steps} steps"),
        EventKind::StepStarted { attempt, resumed } => {
            let how = if *resumed { "resuming" } else { "starting" };
            if *attempt > 1 {
                format!("{step}: {how} (attempt {attempt})")
            } else {
                format!("{step}: {how}")
            }
        }
        EventKind::StepProgress { .. } => return None,
        EventKind::StepStatus { message } => format!("{step}: {message}"),
        EventKind::StepRetry {
            attempt,
            delay_ms,
            error,
        } => format!(
            "{step}: attempt {attempt} failed, retrying in {:.1}s: {error}",
            *delay_ms as f64 / 1000.0
        ),
        EventKind::StepFinished {
            unchanged: true, ..
        } => format!("{step}: already done"),
        EventKind::StepFinished {
            items,
            bytes,
            present,
            left_behind,
            ..
        } => {
            let more = already_there_left_behind(*present, *left_behind);
            format!(
                "{step}: done ({}, {}{more})",
                super::render::items_done(step, *items),
                human_bytes(*bytes)
            )
        }
        EventKind::StepFailed { error } => format!("{step}: FAILED: {error}"),
        EventKind::StepSkipped { reason } => format!("{step}: not run: {reason}"),
        EventKind::StepWaiting {
            instructions,
            approve: true,
        } => format!(
            "{step}: waiting for approval:\n    {}\n    then run `cutover approve PLAN {step}`",
            instructions.trim().replace('\n', "\n    ")
        ),
        EventKind::StepWaiting {
            instructions,
            approve: false,
        } => format!("{step}: waiting: {}", instructions.trim()),
        EventKind::StepSleeping { until } => {
            format!("{step}: sleeping until {until} (Ctrl-C stops; apply again resumes)")
        }
        EventKind::StepInterrupted => {
            format!("{step}: interrupted, checkpointed; the next apply resumes it")
        }
        EventKind::WalkFinished { outcome } => format!("apply {outcome}"),
    })
}

/// ", N already there, M left behind", each part only when not zero.
fn already_there_left_behind(present: u64, left_behind: u64) -> String {
    let mut more = String::new();
    if present > 0 {
        more.push_str(&format!(", {} already there", thousands(present)));
    }
    if left_behind > 0 {
        more.push_str(&format!(", {} left behind", thousands(left_behind)));
    }
    more
}
