//! The step contract: what the walker drives and what a connector implements.
//!
//! The walker knows steps, not protocols. For every step it owns a [`StepRunner`] and calls,
//! in this order:
//!
//! 1. [`StepRunner::config_hash`] — to decide whether the step is unchanged (done with the
//!    same hash: skipped), changed (state cleared, rerun) or new;
//! 2. [`StepRunner::observe`] — only for `plan` (read-only preview), never during apply;
//! 3. [`StepRunner::apply`] — possibly several times: once per attempt while it returns
//!    transient errors, and again in a later apply after an interruption or a crash.
//!
//! The contract that makes apply idempotent and resumable lives in [`ApplyCtx::commit`]: a
//! runner commits a checkpoint only after its target acknowledged the work, and on (re)start
//! reads [`ApplyCtx::checkpoints`] to skip what was already committed. Work delivered but not
//! yet committed when the process died is offered again, so targets must dedupe.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use super::events::{Event, EventKind};
use crate::graph::Step;
use crate::redact::redact;
use crate::state::{Counts, StateError, StateStore};

/// A boxed, sendable future: what [`StepRunner::apply`] returns. Boxed rather than an
/// `async fn` in the trait so that runners stay object-safe (`Box<dyn StepRunner>`) without a
/// macro dependency.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A step's failure. `transient` decides whether the walker retries it (with backoff, bounded
/// by `settings.retries`); the message is redacted on construction, so a server echoing a
/// token in its error text cannot leak it into state, logs or the terminal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct StepError {
    /// Worth trying again: a dropped connection, a timeout, a throttling answer.
    pub transient: bool,
    /// What went wrong, already redacted.
    pub message: String,
}

impl StepError {
    /// An error retrying will not fix: bad credentials, a missing file, a changed source.
    pub fn permanent(message: impl AsRef<str>) -> Self {
        StepError {
            transient: false,
            message: redact(message.as_ref()).into_owned(),
        }
    }

    /// An error that may go away when tried again.
    pub fn transient(message: impl AsRef<str>) -> Self {
        StepError {
            transient: true,
            message: redact(message.as_ref()).into_owned(),
        }
    }
}

impl From<StateError> for StepError {
    /// State errors are permanent for the step: a store that cannot commit a checkpoint must
    /// not be hammered with retries, and the walk needs a human anyway.
    fn from(e: StateError) -> Self {
        StepError::permanent(format!("state: {e}"))
    }
}

/// What `apply` would do, as computed by [`StepRunner::observe`]. Counts are best effort
/// (a source may change between plan and apply) and never include secret material.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observation {
    /// Items apply would deliver (messages, records).
    pub items: u64,
    /// Bytes apply would deliver.
    pub bytes: u64,
    /// Items already at the target (or behind a checkpoint): apply will not copy them again.
    pub present: u64,
    /// Free-form detail for `plan` output (e.g. "maildir root will be created"). Redacted
    /// by the engine before it is shown.
    pub note: Option<String>,
    /// Optional: what apply would do, in one line, for a step whose work is not counted in
    /// messages (`create carol@acme.co.uk, licence O365_BUSINESS_BASIC (3 of 10 free)`).
    /// `plan` shows it in place of the step kind's generic description. Redacted like `note`.
    pub summary: Option<String>,
    /// The target already is as the plan says: apply would change nothing there, only
    /// confirm it (and mark the step done). `plan` shows such a step as unchanged (`=`), with
    /// `summary`.
    pub in_sync: bool,
    /// Optional: the same work broken down by source folder, for runners that route mail
    /// folder by folder (copy and delta steps). Every folder the plan copies is listed, also
    /// those with nothing left to copy, in a stable order (INBOX first, then by source name)
    /// so two previews of the same mailbox compare equal. Empty means "not broken down", not
    /// "no folders". `items`/`bytes`/`present` above are the totals over these.
    pub folders: Vec<FolderObservation>,
    /// Optional: source folders the plan's `include`/`exclude` rules leave behind, in the
    /// same order as `folders`. Folders without messages of their own (IMAP `\Noselect`
    /// hierarchy nodes) are not listed.
    pub excluded: Vec<ExcludedFolder>,
    /// Optional: lines `plan` prints under the step's line (an upload's blob and mapping-CSV
    /// row, a warning). Redacted by the engine before they are shown.
    pub detail: Vec<String>,
}

impl Observation {
    /// Puts [`folders`](Self::folders) and [`excluded`](Self::excluded) in the order the
    /// contract promises: INBOX first, then by source name. Sources list folders in storage
    /// order (IMAP LIST, directory reads), which must not show through a preview.
    pub fn sort_folders(&mut self) {
        fn key(source: &str) -> (bool, &str) {
            (source != "INBOX", source)
        }
        self.folders
            .sort_by(|a, b| key(&a.source).cmp(&key(&b.source)));
        self.excluded
            .sort_by(|a, b| key(&a.source).cmp(&key(&b.source)));
    }
}

/// One source folder of an [`Observation`]: where its mail goes and how much apply would copy.
/// Serialized as is into `plan --json` and saved plans.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderObservation {
    /// The source folder as people read it: modified UTF-7 decoded, in the source's own
    /// spelling and separator (`INBOX.Entwürfe`), or the file's name for an mbox.
    pub source: String,
    /// The target folder, `/`-separated Unicode segments (`Sent Items`, `Projects/2023`);
    /// `INBOX` for the inbox.
    pub target: String,
    /// As in [`Observation`], for this folder only.
    pub items: u64,
    pub bytes: u64,
    pub present: u64,
}

/// A source folder the plan's folder rules exclude from the copy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExcludedFolder {
    /// As [`FolderObservation::source`].
    pub source: String,
    /// Messages in it, i.e. the mail that stays behind at the source; `None` when the
    /// source would not say (counting them is best effort, they are not copied anyway).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<u64>,
}

/// How an apply attempt ended without error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The step's work is complete; the walker marks it `done`.
    Complete,
    /// The cancellation token fired; the runner committed what the target acknowledged and
    /// stopped. The step stays `running` in state, which the next apply resumes.
    Interrupted,
    /// A person must act before the step can go on (e.g. change DNS at a registrar): the
    /// walker marks the step `waiting`, shows these instructions, and runs no dependent.
    /// `cutover approve` then records an approval ([`ApplyCtx::approval`]) and the next
    /// apply calls `apply` again, which continues once it sees the approval. Commit what
    /// the instructions were based on before returning this, so the next call sees it.
    Waiting(String),
}

/// The checkpoint key under which `cutover approve` records the approval of a step that
/// returned [`Outcome::Waiting`] (manual gates keep theirs in the step record).
pub const APPROVAL_CHECKPOINT: &str = "approval";

/// Who approved a waiting step, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepApproval {
    pub by: String,
    pub at: std::time::SystemTime,
}

impl StepApproval {
    /// The checkpoint value: `<unix milliseconds> <who>`.
    pub fn encode(&self) -> Vec<u8> {
        let ms = self
            .at
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        format!("{ms} {}", self.by).into_bytes()
    }

    pub fn decode(value: &[u8]) -> Option<StepApproval> {
        let text = std::str::from_utf8(value).ok()?;
        let (ms, by) = text.split_once(' ')?;
        Some(StepApproval {
            by: by.to_string(),
            at: std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.parse().ok()?),
        })
    }
}

/// Read-only context of [`StepRunner::observe`].
#[derive(Clone)]
pub struct ObserveCtx<'a> {
    /// The step being observed.
    pub step: Step,
    /// Checkpoints of an earlier (interrupted) apply, so observe can count only what is left.
    pub checkpoints: BTreeMap<String, Vec<u8>>,
    store: &'a dyn StateStore,
}

impl fmt::Debug for ObserveCtx<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObserveCtx")
            .field("step", &self.step.id)
            .field("checkpoints", &self.checkpoints.len())
            .finish_non_exhaustive()
    }
}

impl<'a> ObserveCtx<'a> {
    pub(crate) fn new(
        step: Step,
        checkpoints: BTreeMap<String, Vec<u8>>,
        store: &'a dyn StateStore,
    ) -> Self {
        ObserveCtx {
            step,
            checkpoints,
            store,
        }
    }

    /// Another step's committed checkpoints, as [`ApplyCtx::checkpoints_of`] reads them, so
    /// a step that continues another's work previews what its apply would do (a delta pass:
    /// only mail after its copy step's checkpoints). Read-only.
    pub fn checkpoints_of(&self, step_id: &str) -> Result<BTreeMap<String, Vec<u8>>, StepError> {
        Ok(self.store.checkpoints(step_id)?)
    }
}

/// Everything a running step may use. Cheap to clone and `'static`, so a runner doing
/// blocking I/O can move a clone into `tokio::task::spawn_blocking` and commit from there.
#[derive(Clone)]
pub struct ApplyCtx {
    step: Step,
    attempt: u32,
    resumed: bool,
    checkpoints: BTreeMap<String, Vec<u8>>,
    store: Arc<dyn StateStore>,
    events: UnboundedSender<Event>,
    cancel: CancellationToken,
}

impl fmt::Debug for ApplyCtx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApplyCtx")
            .field("step", &self.step.id)
            .field("attempt", &self.attempt)
            .field("checkpoints", &self.checkpoints.len())
            .finish_non_exhaustive()
    }
}

impl ApplyCtx {
    pub(crate) fn new(
        step: Step,
        attempt: u32,
        resumed: bool,
        checkpoints: BTreeMap<String, Vec<u8>>,
        store: Arc<dyn StateStore>,
        events: UnboundedSender<Event>,
        cancel: CancellationToken,
    ) -> Self {
        ApplyCtx {
            step,
            attempt,
            resumed,
            checkpoints,
            store,
            events,
            cancel,
        }
    }

    /// The step being applied.
    pub fn step(&self) -> &Step {
        &self.step
    }

    /// 1 for the first attempt in this apply, 2 after the first transient error, …
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Whether work on this step ran before and did not end cleanly — an earlier attempt of
    /// this apply, or an earlier apply that crashed, was interrupted or failed (or the step
    /// is run again with `--replace`). A runner may then meet traces of that work at its
    /// target, including a command a killed process had sent that the server is still
    /// completing.
    pub fn resumed(&self) -> bool {
        self.resumed
    }

    /// The step's checkpoints as last committed (by this or an earlier apply), key → value.
    /// Updated by [`commit`](Self::commit), so a retried attempt sees the latest ones.
    pub fn checkpoints(&self) -> &BTreeMap<String, Vec<u8>> {
        &self.checkpoints
    }

    /// Another step's committed checkpoints, read from the store. For a step that continues
    /// another's work: a delta pass starts where its copy step stopped instead of comparing
    /// every message again.
    pub fn checkpoints_of(&self, step_id: &str) -> Result<BTreeMap<String, Vec<u8>>, StepError> {
        Ok(self.store.checkpoints(step_id)?)
    }

    /// One checkpoint value, if any.
    pub fn checkpoint(&self, key: &str) -> Option<&[u8]> {
        self.checkpoints.get(key).map(Vec::as_slice)
    }

    /// The approval `cutover approve` recorded after this step returned
    /// [`Outcome::Waiting`], if any. Cleared with the step's state when its config changes.
    pub fn approval(&self) -> Option<StepApproval> {
        self.checkpoint(APPROVAL_CHECKPOINT)
            .and_then(StepApproval::decode)
    }

    /// Durably records `delta` and `checkpoints` in **one** state transaction
    /// ([`StateStore::commit_progress`]) and reports the progress.
    ///
    /// Call it only **after** the target acknowledged the work the checkpoint covers: a crash
    /// between delivery and commit then means the work is offered again (and deduped), never
    /// lost. Blocking (an fsync); from async code prefer calling it inside `spawn_blocking`
    /// together with the I/O it follows.
    pub fn commit(
        &mut self,
        delta: Counts,
        checkpoints: &[(&str, &[u8])],
    ) -> Result<(), StepError> {
        self.store
            .commit_progress(&self.step.id, delta, checkpoints)?;
        for (k, v) in checkpoints {
            self.checkpoints.insert((*k).to_owned(), v.to_vec());
        }
        self.send_progress(delta, true);
        Ok(())
    }

    /// Reports progress that is not (yet) committed, e.g. bytes of a large upload in flight.
    /// Only for display; state totals change only through [`commit`](Self::commit).
    pub fn report(&self, delta: Counts) {
        self.send_progress(delta, false);
    }

    fn send_progress(&self, delta: Counts, committed: bool) {
        let kind = EventKind::StepProgress {
            items: delta.items,
            bytes: delta.bytes,
            present: delta.present,
            left_behind: delta.left_behind,
            committed,
        };
        // The walker may be gone (the walk ended abnormally); progress is then moot.
        let _ = self.events.send(Event::now(Some(&self.step.id), kind));
    }

    /// Says what the step is doing while it has no progress to count (waiting for a mailbox
    /// to appear, for a throttled service): shown on the step's progress line and in the
    /// event log. Only for display; redacted like every event.
    pub fn status(&self, message: impl Into<String>) {
        let kind = EventKind::StepStatus {
            message: message.into(),
        };
        let _ = self.events.send(Event::now(Some(&self.step.id), kind));
    }

    /// Whether the walk was cancelled. Check it between items: when true, commit what the
    /// target acknowledged and return [`Outcome::Interrupted`].
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// The walk's cancellation token, for `select!`-ing long waits against it.
    pub fn cancel_token(&self) -> &CancellationToken {
        &self.cancel
    }
}

/// One step's behaviour, implemented by connectors (the local mail copy, later IMAP, DNS…).
///
/// Implementations are shared by the walker across tasks (`Send + Sync`) and must keep no
/// per-run state in `self` that would break a retry: everything that must survive an attempt
/// goes through checkpoints.
pub trait StepRunner: Send + Sync {
    /// A stable hex digest of everything in the plan that defines this step's work (source,
    /// file, folder rules, target path…), **never** secrets themselves (hash the reference,
    /// `env:VAR`, not its value).
    ///
    /// Called once per apply and plan, before anything else. Equal to the stored hash and the
    /// step `done`: the step is skipped as unchanged. Different: its state and checkpoints are
    /// cleared and it runs from scratch. Must be deterministic across processes and versions
    /// as far as possible; changing its spelling reruns every step.
    fn config_hash(&self) -> String;

    /// Read-only preview: what [`apply`](Self::apply) would do now — items and bytes to copy,
    /// how many are already present, and optionally the same per source folder with the
    /// folders the plan leaves out ([`Observation::folders`], [`Observation::excluded`]).
    /// A step that continues another's work counts from that step's checkpoints as apply
    /// would ([`ObserveCtx::checkpoints_of`]).
    ///
    /// Called by `plan` (via [`crate::engine::observe`]), never during apply. It may read the
    /// source and the target but must not change either (no folder creation, no writes). An
    /// `Err` is shown as the step being blocked with that reason; `transient` is ignored.
    /// The default reports nothing to do, for steps whose effect cannot be previewed.
    fn observe(&self, ctx: &ObserveCtx<'_>) -> Result<Observation, StepError> {
        let _ = ctx;
        Ok(Observation::default())
    }

    /// The earliest time [`apply`](Self::apply) may do its work (a DNS cutover waits out the
    /// TTL lowered ahead of it), judged from state alone: no network.
    ///
    /// Called by the walker when the step is ready to run, and by `status`. `Ok(None)` (the
    /// default): no time condition. A time in the future: the walker does not call `apply`
    /// yet; it reports the step waiting until then, or sleeps until then with
    /// `apply --wait` (Ctrl-C stops the sleep). An `Err` fails the step.
    fn not_before(&self, ctx: &ObserveCtx<'_>) -> Result<Option<SystemTime>, StepError> {
        let _ = ctx;
        Ok(None)
    }

    /// What this build cannot do for the step: `None` (the default) for a runner that does
    /// its work; the missing piece (`verify of copy from a pst source via the import
    /// service`) for one standing in for it, like [`Unsupported`].
    ///
    /// Called by `validate` (a warning) and `plan --offline` (the step blocked) without any
    /// network or secret, so it must be answered from the plan alone. A runner returning
    /// `Some` must also fail [`apply`](Self::apply) and [`observe`](Self::observe) with it.
    fn unsupported(&self) -> Option<&str> {
        None
    }

    /// Does (or resumes) the step's work.
    ///
    /// Called when all dependencies are done, after the walker marked the step `running`.
    /// It must start from [`ApplyCtx::checkpoints`], deliver items, and call
    /// [`ApplyCtx::commit`] after each acknowledged item or small batch. It must check
    /// [`ApplyCtx::is_cancelled`] between items.
    ///
    /// Returning:
    /// * `Ok(Outcome::Complete)` — all work done; the step becomes `done` and its dependents
    ///   may run;
    /// * `Ok(Outcome::Interrupted)` — cancelled after committing; the step stays `running`
    ///   and the walk ends `Interrupted`;
    /// * `Ok(Outcome::Waiting(instructions))` — a person must act and approve; the step
    ///   becomes `waiting`, its dependents do not run;
    /// * `Err(e)` with `e.transient` — the walker waits (exponential backoff with jitter)
    ///   and calls `apply` again with a fresh context, up to `settings.retries` attempts;
    /// * `Err(e)` permanent, or transient with attempts exhausted — the step becomes
    ///   `failed` with `e.message`; its dependents are skipped, independent steps go on.
    fn apply<'a>(&'a self, ctx: &'a mut ApplyCtx) -> BoxFuture<'a, Result<Outcome, StepError>>;
}

/// A runner for steps this build cannot perform yet (server sources, DNS, autocomplete…):
/// `plan` shows them blocked, `apply` fails them with a clear message instead of panicking,
/// and independent steps still run.
#[derive(Debug, Clone)]
pub struct Unsupported {
    /// What is missing, e.g. `copy from an imap source`.
    pub what: String,
}

impl Unsupported {
    pub fn new(what: impl Into<String>) -> Self {
        Unsupported { what: what.into() }
    }

    fn error(&self) -> StepError {
        StepError::permanent(unsupported_reason(&self.what))
    }
}

/// How a step this build cannot run is described wherever it shows: `what` is
/// [`StepRunner::unsupported`]'s answer.
pub fn unsupported_reason(what: &str) -> String {
    format!("not supported yet by this build: {what}")
}

impl StepRunner for Unsupported {
    fn config_hash(&self) -> String {
        crate::engine::hash_parts(&["unsupported", &self.what])
    }

    fn observe(&self, _ctx: &ObserveCtx<'_>) -> Result<Observation, StepError> {
        Err(self.error())
    }

    fn unsupported(&self) -> Option<&str> {
        Some(&self.what)
    }

    fn apply<'a>(&'a self, _ctx: &'a mut ApplyCtx) -> BoxFuture<'a, Result<Outcome, StepError>> {
        let err = self.error();
        Box::pin(async move { Err(err) })
    }
}
