//! Walk events: what happened to which step, when. The walker emits them to an
//! [`EventSink`]; [`JsonlEventLog`] appends them to `.cutover/<plan>.events.jsonl`, the
//! audit trail a consultant hands to the client, so every string in it is redacted.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::redact::redact;
use crate::state::{format_utc, Counts};

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum EventKind {
    /// The walk began over `steps` selected steps.
    WalkStarted { plan: String, steps: usize },
    /// An attempt of a step started (1-based).
    StepStarted { attempt: u32, resumed: bool },
    /// A step reported progress; `committed` when it is durable in state.
    StepProgress {
        items: u64,
        bytes: u64,
        present: u64,
        left_behind: u64,
        committed: bool,
    },
    /// What a step is doing while it has nothing to count (waiting for a mailbox to appear).
    StepStatus { message: String },
    /// A transient error; the step is tried again after `delay_ms`.
    StepRetry {
        attempt: u32,
        delay_ms: u64,
        error: String,
    },
    /// The step completed (or was unchanged, or an approved gate).
    StepFinished {
        items: u64,
        bytes: u64,
        present: u64,
        left_behind: u64,
        unchanged: bool,
    },
    /// The step failed for good.
    StepFailed { error: String },
    /// The step did not run; `reason` says why (upstream failed, cancelled, fail-fast…).
    StepSkipped { reason: String },
    /// A step waits: a manual gate or a step needing a person waits for `cutover approve`;
    /// a step whose time has not come says until when.
    StepWaiting {
        instructions: String,
        /// Whether `cutover approve` is what lets it go on (else: time).
        approve: bool,
    },
    /// `apply --wait`: the step sleeps until `until` (RFC 3339 UTC) before it runs.
    StepSleeping { until: String },
    /// The step was cancelled after checkpointing; the next apply resumes it.
    StepInterrupted,
    /// The walk ended.
    WalkFinished { outcome: String },
}

/// One event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// RFC 3339 UTC, second precision.
    pub at: String,
    /// Milliseconds since the epoch, for ordering within a second.
    pub at_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    #[serde(flatten)]
    pub kind: EventKind,
}

impl Event {
    /// An event stamped now; free text in `kind` is redacted here, so no sink can forget.
    pub fn now(step: Option<&str>, kind: EventKind) -> Event {
        let t = SystemTime::now();
        let at_ms = t
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let r = |s: String| redact(&s).into_owned();
        let kind = match kind {
            EventKind::StepRetry {
                attempt,
                delay_ms,
                error,
            } => EventKind::StepRetry {
                attempt,
                delay_ms,
                error: r(error),
            },
            EventKind::StepStatus { message } => EventKind::StepStatus {
                message: r(message),
            },
            EventKind::StepFailed { error } => EventKind::StepFailed { error: r(error) },
            EventKind::StepSkipped { reason } => EventKind::StepSkipped { reason: r(reason) },
            EventKind::StepWaiting {
                instructions,
                approve,
            } => EventKind::StepWaiting {
                instructions: r(instructions),
                approve,
            },
            other => other,
        };
        Event {
            at: format_utc(t),
            at_ms,
            step: step.map(str::to_owned),
            kind,
        }
    }

    pub(crate) fn finished(step: &str, counts: Counts, unchanged: bool) -> Event {
        Event::now(
            Some(step),
            EventKind::StepFinished {
                items: counts.items,
                bytes: counts.bytes,
                present: counts.present,
                left_behind: counts.left_behind,
                unchanged,
            },
        )
    }
}

/// Receives the walk's events, in order, from the walker's own task (never concurrently).
pub trait EventSink {
    /// Called once per event. Errors are the sink's business: a broken log must not stop a
    /// migration half-way, so the sink reports them itself (see [`JsonlEventLog::error`]).
    fn emit(&mut self, event: &Event);
}

/// Discards events.
#[derive(Debug, Default)]
pub struct NullSink;

impl EventSink for NullSink {
    fn emit(&mut self, _event: &Event) {}
}

/// Keeps events in memory (tests, and the CLI's end-of-run summary).
#[derive(Debug, Default)]
pub struct VecSink(pub Vec<Event>);

impl EventSink for VecSink {
    fn emit(&mut self, event: &Event) {
        self.0.push(event.clone());
    }
}

/// Forwards to two sinks (the log file and the terminal).
pub struct Tee<'a>(pub &'a mut dyn EventSink, pub &'a mut dyn EventSink);

impl EventSink for Tee<'_> {
    fn emit(&mut self, event: &Event) {
        self.0.emit(event);
        self.1.emit(event);
    }
}

/// Appends events as JSON lines to a file, flushing after each one so the log is complete
/// up to the last event even after a kill.
pub struct JsonlEventLog {
    path: PathBuf,
    out: BufWriter<File>,
    error: Option<String>,
}

impl JsonlEventLog {
    /// Opens (creating, appending) `path`; its directory is created if missing.
    pub fn open(path: impl AsRef<Path>) -> std::io::Result<Self> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::files::create_dir_all(dir)?;
        }
        // Private: events name steps, folders and errors of someone's mailboxes.
        let file = crate::files::options()
            .create(true)
            .append(true)
            .open(&path)?;
        Ok(JsonlEventLog {
            path,
            out: BufWriter::new(file),
            error: None,
        })
    }

    /// `.cutover/<plan-name>.events.jsonl` beside the state file `state_path`.
    pub fn default_path(state_path: &Path, plan_name: &str) -> PathBuf {
        let dir = state_path.parent().unwrap_or_else(|| Path::new(""));
        let safe: String = plan_name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        dir.join(format!("{safe}.events.jsonl"))
    }

    /// The first write error, if any (reported by the CLI at the end of the run).
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl EventSink for JsonlEventLog {
    fn emit(&mut self, event: &Event) {
        let line = match serde_json::to_string(event) {
            Ok(l) => l,
            Err(e) => {
                self.error
                    .get_or_insert_with(|| format!("cannot encode event: {e}"));
                return;
            }
        };
        // Belt and braces: step ids and counters are not secret, but redact the whole line.
        let line = redact(&line);
        let result = writeln!(self.out, "{line}").and_then(|()| self.out.flush());
        if let Err(e) = result {
            self.error.get_or_insert_with(|| {
                format!("cannot write event log {}: {e}", self.path.display())
            });
        }
    }
}
