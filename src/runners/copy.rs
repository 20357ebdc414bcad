//! `copy.*` and `delta.*`: any [`MailSource`] into any [`MailTarget`], through the two mail
//! contracts (`crate::connectors::mailflow`). One runner serves both: a delta pass is a copy
//! that starts from what its copy step committed (those checkpoints lie beneath its own), so
//! it only reads mail that arrived since — and carries over flag changes made since.
//!
//! **Exactly once, by counting.** Per target folder, the target must end up holding as many
//! copies of each [`Identity`] as the source has (see `connectors::mail::identity`). A
//! message is copied unless the target already holds more copies of its identity than the
//! messages of that identity its source folder settled before it: those behind the
//! checkpoints (counted lazily, only when a pending identity is already at the target) plus
//! those this pass settled. So a resume after a crash finds the messages a dead run stored
//! but never committed and stores them no second time; two *different* messages that share
//! a Message-ID are two identities; two true duplicates in a folder are both copied; and
//! overlaps store one copy: two source folders merged into one target folder, or two steps
//! of one user (a PST and the POP3 account it came from) — the graph runs such steps one
//! after the other, each counting what the other stored.
//!
//! **Lanes.** Source folders landing in one target folder form a unit; up to
//! [`LANES_PER_STEP`] units are copied at once, each by a lane with a source and a target
//! session of its own, on a thread of its own. A unit belongs to one lane, so a folder's
//! checkpoint only moves forward and a target folder's counts live in one place.
//!
//! **Batches.** Bodies are fetched in batches of up to [`BATCH_MESSAGES`] messages or
//! [`BATCH_BYTES`] bytes and appended as one batch; what the target acknowledged is committed
//! in one state transaction with the checkpoints of the settled prefix of the listing — never
//! past a message the target has not acknowledged.
//!
//! **Every folder, once.** Every target folder the plan routes mail to is created and
//! subscribed as at the source, also when it gets no mail, once per step (a
//! [`target_folder_key`] checkpoint), so an incremental pass with nothing new still opens
//! nothing.
//!
//! **Connection limits.** A connection refused as one too many (`[LIMIT]`) ends that lane
//! while others hold connections (its folders go to them), else waits and tries again:
//! fewer connections, no failed attempt. The step records it for the report
//! ([`super::throttled`]).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::attempt::{block_on_fresh, on_own_runtime, run_attempt, Failure};
use super::budget::{ByteBudget, STREAM_HOLD};
use super::mail::{mapper_for, source_for, target_for, window_of};
use super::notes;
use super::skipped::{self, SkippedMessage};
use super::throttled::{self, ConnectionLimited};
use crate::connectors::mail::identity::{Identity, IdentityCounts};
use crate::connectors::mail::RawMessage;
use crate::connectors::mailflow::{
    display_target, left_behind_key, partial_key, target_folder_key, Checkpoints, Fetched,
    FlowError, FolderMapper, FolderStatus, MailSource, MailTarget, MessageMeta, Opened, Route,
    Side, SourceFolder, SourceSession, TargetNote, TargetSession, PARTIAL_PREFIX,
};
use crate::connectors::net::{is_connection_limit, reserve_connections, NetError};
use crate::engine::{
    hash_parts, ApplyCtx, BoxFuture, ExcludedFolder, FolderObservation, Observation, ObserveCtx,
    Outcome, StepError, StepRunner, Unsupported,
};
use crate::graph::{Step, StepKind};
use crate::plan::model::{DeletedMessages, Migration, Plan, User};
use crate::state::Counts;

/// Units copied at once by one step, when neither side allows fewer sessions.
pub const LANES_PER_STEP: usize = 4;

/// Messages (and bytes) fetched before they are appended as one batch and committed in one
/// state transaction; large enough to fill an APPEND pipeline. Memory is bounded by the
/// apply's byte budget ([`ByteBudget`]), which a batch takes its bytes from before fetching.
pub const BATCH_MESSAGES: usize = 64;
pub const BATCH_BYTES: u64 = 4 << 20;

/// Messages decided at once: bounds the bookkeeping of one round, not memory.
const ROUND: usize = 256;

/// First wait after a connection refused as one too many, when no other lane goes on;
/// doubled per refusal up to [`LIMITED_WAIT_MAX`].
const LIMITED_WAIT: Duration = Duration::from_secs(2);
const LIMITED_WAIT_MAX: Duration = Duration::from_secs(60);

/// How long a step keeps waiting for a connection a server keeps refusing as one too many
/// before the attempt fails (and the walker's retry takes over).
const LIMITED_GIVE_UP: Duration = Duration::from_secs(1800);

/// Connections a target may close for throttling in a row, without any progress in between,
/// before the lane gives up (and the walker's retry takes over).
const MAX_RECONNECTS: u32 = 10;

/// Builds the runner of a `copy.*` or `delta.*` step. Anything this build cannot do yields
/// an [`Unsupported`] runner naming it.
pub(crate) fn runner(
    plan: &Plan,
    user: &User,
    m: &Migration,
    base: &Path,
    step: &Step,
    budget: &ByteBudget,
) -> Arc<dyn StepRunner> {
    match CopyRunner::new(plan, user, m, base, step) {
        Ok(r) => Arc::new(CopyRunner {
            budget: budget.clone(),
            ..r
        }),
        Err(what) => Arc::new(Unsupported::new(what)),
    }
}

/// See the module documentation.
#[derive(Clone)]
pub(crate) struct CopyRunner {
    pub(crate) source: Arc<dyn MailSource>,
    pub(crate) target: Arc<dyn MailTarget>,
    pub(crate) mapper: FolderMapper,
    /// `settings.max_message_size_mb` in bytes; larger mail is left behind and reported.
    pub(crate) max_bytes: u64,
    /// The migration has a date window: mail outside it is neither to copy nor at the target.
    windowed: bool,
    /// `settings.deleted_messages: copy`: mail flagged `\Deleted` at the source is copied
    /// (else left behind and reported).
    pub(crate) copy_deleted: bool,
    /// For a delta step: the copy step whose checkpoints it starts from.
    seed_from: Option<String>,
    pub(crate) hash: String,
    /// Bytes of mail this step's lanes may hold at once, shared with every other step of the
    /// apply (`settings.memory_budget_mb`).
    budget: ByteBudget,
}

impl CopyRunner {
    pub(crate) fn new(
        plan: &Plan,
        user: &User,
        m: &Migration,
        base: &Path,
        step: &Step,
    ) -> Result<CopyRunner, String> {
        let source = source_for(plan, m, base)?;
        let target = target_for(plan, user, base).map_err(|e| format!("copy into {e}"))?;
        let mapper = mapper_for(m, target.as_ref())?;
        let max_bytes = super::mail::message_limit(plan);
        let seed_from = (step.kind == StepKind::Delta)
            .then(|| step.id.strip_prefix("delta.").map(|s| format!("copy.{s}")))
            .flatten();
        let rules = serde_json::to_string(&m.folders).unwrap_or_default();
        let copy_deleted = plan.settings.deleted_messages == DeletedMessages::Copy;
        let mut parts = vec![
            "copy".to_string(),
            source.describe(),
            target.describe(),
            rules,
            max_bytes.to_string(),
        ];
        // Only when not the default, so steps planned before the setting keep their hash.
        if copy_deleted {
            parts.push("deleted=copy".into());
        }
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        let hash = hash_parts(&parts);
        Ok(CopyRunner {
            source,
            target,
            mapper,
            max_bytes,
            windowed: window_of(m)?.is_some(),
            copy_deleted,
            seed_from,
            hash,
            budget: ByteBudget::new(plan.settings.memory_budget_mb),
        })
    }

    /// The checkpoints this step starts from beneath its own: a delta step's copy step's
    /// (without its left-behind records, which are the copy's to report).
    fn seed(
        &self,
        checkpoints_of: impl FnOnce(&str) -> Result<Checkpoints, StepError>,
    ) -> Result<Checkpoints, StepError> {
        match &self.seed_from {
            Some(copy) => {
                let mut seed = checkpoints_of(copy)?;
                seed.retain(|k, _| {
                    !k.starts_with(skipped::PREFIX)
                        && !k.starts_with(PARTIAL_PREFIX)
                        && !k.starts_with(STORED_PREFIX)
                });
                Ok(seed)
            }
            None => Ok(Checkpoints::new()),
        }
    }

    async fn run(self, ctx: ApplyCtx) -> Result<Outcome, Failure> {
        let mut ctx = ctx;
        let seed = Arc::new(self.seed(|id| ctx.checkpoints_of(id))?);
        let start = merged(&seed, &ctx);
        let limited = Arc::new(Limited::new(&ctx));
        let Some((units, renames)) = self.units_to_copy(&start, &ctx, &limited).await? else {
            return Ok(Outcome::Interrupted);
        };
        renames.record(&mut ctx)?;
        if units.is_empty() {
            return Ok(Outcome::Complete);
        }
        let throttled_before = self.target.throttled_time();
        let lanes = self
            .source
            .max_sessions()
            .min(self.target.max_sessions().unwrap_or(usize::MAX))
            .clamp(1, LANES_PER_STEP)
            .min(units.len());
        let work = Arc::new(Mutex::new(Work {
            units: VecDeque::from(units),
            connected: 0,
        }));
        let failed = Arc::new(AtomicBool::new(false));
        let mut handles = Vec::with_capacity(lanes);
        for _ in 0..lanes {
            let lane = Lane {
                runner: self.clone(),
                ctx: ctx.clone(),
                seed: Arc::clone(&seed),
                work: Arc::clone(&work),
                failed: Arc::clone(&failed),
                limited: Arc::clone(&limited),
                marker: None,
            };
            handles.push(tokio::task::spawn_blocking(move || {
                block_on_fresh(move || lane.run())
            }));
        }
        let mut finished = true;
        let mut failure = None;
        for handle in handles {
            match handle.await {
                Ok(Ok(done)) => finished &= done,
                Ok(Err(e)) => {
                    failure.get_or_insert(e);
                }
                Err(e) => {
                    failure.get_or_insert(
                        StepError::permanent(format!("copy lane failed: {e}")).into(),
                    );
                }
            }
        }
        record_throttling(&mut ctx, self.target.throttled_time() - throttled_before)?;
        match failure {
            Some(e) => Err(e),
            None if finished => Ok(Outcome::Complete),
            None => Ok(Outcome::Interrupted),
        }
    }

    /// The work, as units of source folders grouped by target folder, largest first (so the
    /// biggest unit starts first and does not end the copy alone). Folders with nothing to do
    /// are left out, so an incremental pass with no new mail opens no lane and no target
    /// session — unless their target folder was never made sure of (created, subscribed).
    /// Planned on a session of its own, closed before the lanes connect: a lane takes its
    /// target and source slots together, and nothing holds a source connection while waiting
    /// for a target one. `None`: cancelled while waiting for a connection.
    async fn units_to_copy(
        &self,
        start: &Checkpoints,
        ctx: &ApplyCtx,
        limited: &Limited,
    ) -> Result<Option<(Vec<Unit>, Renames)>, Failure> {
        let endpoints = self.source.endpoints();
        let endpoints: Vec<&_> = endpoints.iter().collect();
        let mut waited = Waiting::new();
        let (slots, mut src) = loop {
            let slots = reserve_connections(&endpoints).await;
            match self.source.open().await {
                Ok(src) => break (slots, src),
                Err(e) => {
                    drop(slots);
                    let e = limited.refused(e, ctx)?;
                    if !waited.wait(&e, ctx).await? {
                        return Ok(None);
                    }
                }
            }
        };
        let mut routed = Vec::new();
        for folder in src.folders().await? {
            if let Route::Copy(target) = self.mapper.route(&folder) {
                routed.push((folder, target));
            }
        }
        let renames = Renames::of(self.target.as_ref(), routed.iter().map(|(_, t)| t));
        let mut by_target: BTreeMap<Vec<String>, Unit> = BTreeMap::new();
        for (folder, target) in routed {
            let target = renames.name(&target);
            let status = src.status(&folder, start).await?;
            let unit = by_target.entry(target.clone()).or_insert_with(|| Unit {
                make_sure: !start.contains_key(&target_folder_key(&target)),
                takes_back: !stored_records(start, &target).is_empty(),
                reopened: false,
                target,
                folders: Vec::new(),
                routed: Vec::new(),
                subscribed: false,
            });
            unit.subscribed |= folder.subscribed;
            unit.routed.push(folder.clone());
            if status.has_pending || status.flags_may_have_changed {
                unit.folders.push((folder, status));
            }
        }
        let _ = src.close().await;
        drop(slots);
        let mut units: Vec<Unit> = by_target
            .into_values()
            .filter(|u| u.make_sure || u.takes_back || !u.folders.is_empty())
            .collect();
        units.sort_by_key(|u| {
            std::cmp::Reverse(u.folders.iter().map(|(_, s)| s.messages).sum::<u64>())
        });
        Ok(Some((units, renames)))
    }

    async fn observe_async(self, checkpoints: Checkpoints) -> Result<Observation, Failure> {
        let mut endpoints = self.target.endpoints();
        endpoints.extend(self.source.endpoints());
        let slots = reserve_connections(&endpoints.iter().collect::<Vec<_>>()).await;
        let mut src = self.source.open().await?;
        // The target is read for what is already there; unreachable (its mailbox not created
        // yet), the preview counts from the source alone.
        let mut tgt = self.target.open(false).await.ok();
        let mut obs = Observation::default();
        let mut oversized = 0u64;
        let mut deleted = 0u64;
        let mut present_in: BTreeMap<Vec<String>, IdentityCounts> = BTreeMap::new();
        let folders = src.folders().await?;
        let renames = Renames::of(
            self.target.as_ref(),
            folders
                .iter()
                .filter_map(|f| self.mapper.map(f))
                .collect::<Vec<_>>()
                .iter(),
        );
        for folder in folders {
            let target = match self.mapper.route(&folder) {
                Route::Container => continue,
                Route::Excluded => {
                    let messages = src
                        .status(&folder, &Checkpoints::new())
                        .await
                        .ok()
                        .map(|s| s.messages);
                    obs.excluded.push(ExcludedFolder {
                        source: folder.display.clone(),
                        messages,
                    });
                    continue;
                }
                Route::Copy(target) => renames.name(&target),
            };
            let status = src.status(&folder, &checkpoints).await?;
            let mut metas = src.list(&folder, &checkpoints, Side::Pending).await?;
            metas.retain(|m| m.in_window);
            let mut row = FolderObservation {
                source: folder.display.clone(),
                target: display_target(&target),
                ..FolderObservation::default()
            };
            if !self.windowed {
                row.present = status.messages.saturating_sub(metas.len() as u64);
            }
            if let Some(t) = tgt.as_mut() {
                if !present_in.contains_key(&target) {
                    let counts = t.identities(&target).await.unwrap_or_default();
                    present_in.insert(target.clone(), counts);
                }
                if metas.iter().any(|m| m.identity.is_none()) {
                    src.identify(&folder, &mut metas).await?;
                }
            }
            let mut used = IdentityCounts::new();
            for m in &metas {
                if m.size > self.max_bytes {
                    oversized += 1;
                    continue;
                }
                if m.deleted && !self.copy_deleted {
                    deleted += 1;
                    continue;
                }
                let there = match (m.identity, present_in.get(&target)) {
                    (Some(id), Some(counts)) => {
                        used.add(id);
                        used.get(&id) <= counts.get(&id)
                    }
                    _ => false,
                };
                if there {
                    row.present += 1;
                } else {
                    row.items += 1;
                    row.bytes += m.size;
                }
            }
            obs.items += row.items;
            obs.bytes += row.bytes;
            obs.present += row.present;
            obs.folders.push(row);
        }
        let _ = src.close().await;
        if let Some(t) = tgt {
            let _ = t.close().await;
        }
        drop(slots);
        obs.sort_folders();
        let mut notes = Vec::new();
        if oversized > 0 {
            notes.push(format!(
                "{oversized} message(s) over max_message_size_mb will be left behind"
            ));
        }
        if deleted > 0 {
            notes.push(format!(
                "{deleted} message(s) flagged \\Deleted will be left behind \
                 (settings.deleted_messages)"
            ));
        }
        if !notes.is_empty() {
            obs.note = Some(notes.join("; "));
        }
        Ok(obs)
    }
}

/// Target folders stored under another name than routed ([`MailTarget::folder_names`]).
pub(crate) struct Renames(Vec<(Vec<String>, Vec<String>, String)>);

impl Renames {
    /// The target's names for every routed target folder of a step.
    pub(crate) fn of<'a>(
        target: &dyn MailTarget,
        routed: impl Iterator<Item = &'a Vec<String>>,
    ) -> Renames {
        let mut wanted: Vec<Vec<String>> = routed.cloned().collect();
        wanted.sort();
        wanted.dedup();
        let named = target.folder_names(&wanted);
        Renames(
            wanted
                .into_iter()
                .zip(named)
                .filter_map(|(from, (to, why))| why.map(|why| (from, to, why)))
                .collect(),
        )
    }

    pub(crate) fn name(&self, routed: &[String]) -> Vec<String> {
        self.0
            .iter()
            .find(|(from, _, _)| from == routed)
            .map_or_else(|| routed.to_vec(), |(_, to, _)| to.clone())
    }

    /// A report note per renamed folder.
    fn record(&self, ctx: &mut ApplyCtx) -> Result<(), StepError> {
        let notes: Vec<(String, Vec<u8>)> = self
            .0
            .iter()
            .map(|(from, to, why)| {
                notes::checkpoint(
                    &format!("folder-renamed:{}", display_target(from)),
                    &format!(
                        "folder `{}` stored as `{}`: {why}",
                        display_target(from),
                        display_target(to)
                    ),
                )
            })
            .collect();
        if notes.is_empty() {
            return Ok(());
        }
        let refs: Vec<(&str, &[u8])> = notes
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect();
        ctx.commit(Counts::default(), &refs)
    }
}

/// Adds `paused` to the step's time paused by the target's throttling, with a report note.
fn record_throttling(ctx: &mut ApplyCtx, paused: std::time::Duration) -> Result<(), StepError> {
    if paused.is_zero() {
        return Ok(());
    }
    let total = notes::count(ctx.checkpoints(), notes::THROTTLED_MS) + paused.as_millis() as u64;
    let text = format!(
        "the target throttled this mailbox: {:.0} s spent waiting; if its budget is known, \
         set `max_messages_per_second` on the target",
        total as f64 / 1000.0
    );
    let (ck, cv) = notes::count_checkpoint(notes::THROTTLED_MS, total);
    let (nk, nv) = notes::checkpoint("throttled", &text);
    ctx.commit(
        Counts::default(),
        &[(ck.as_str(), cv.as_slice()), (nk.as_str(), nv.as_slice())],
    )
}

/// The step's checkpoints as a source reads them: its own over the seed's.
fn merged(seed: &Checkpoints, ctx: &ApplyCtx) -> Checkpoints {
    let mut all = seed.clone();
    all.extend(
        ctx.checkpoints()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    all
}

/// Source folders landing in one target folder.
struct Unit {
    target: Vec<String>,
    /// Those with something to copy or carry over (none when the unit only makes sure of its
    /// target folder).
    folders: Vec<(SourceFolder, FolderStatus)>,
    /// The target folder was never made sure of by this step: create it, subscribe it as the
    /// source says, record it.
    make_sure: bool,
    /// A source folder landing here is subscribed at the source.
    subscribed: bool,
    /// Every source folder landing here, with work or without: what the target folder must
    /// hold.
    routed: Vec<SourceFolder>,
    /// Copies stored by an earlier, killed run are recorded for this folder
    /// ([`stored_records`]): check them for doubles.
    takes_back: bool,
    /// Taken up again after the target closed a lane's connection while throttling: the
    /// server may still commit an APPEND of the closed connection after the new one read the
    /// folder, as after a kill — so copies are recorded and doubles taken back, as on resume.
    reopened: bool,
}

impl Unit {
    /// Whether copies are recorded (`stored:`) and doubles taken back at the unit's end.
    fn records_copies(&self, ctx: &ApplyCtx) -> bool {
        ctx.resumed() || self.reopened
    }
}

/// What the lanes of a step share: the units left, and how many lanes hold connections.
struct Work {
    units: VecDeque<Unit>,
    /// Lanes connected and still taking units. A lane refused a connection as one too many
    /// leaves its unit to them; with none, it waits and tries again. Kept under the same
    /// lock as the units, so a unit handed back is never left with no lane to take it.
    connected: usize,
}

/// A step's refusals as one connection too many: counted across lanes and runs, and
/// recorded for the report.
struct Limited {
    times: AtomicU64,
}

impl Limited {
    fn new(ctx: &ApplyCtx) -> Limited {
        let before = throttled::from_checkpoints(ctx.checkpoints()).map_or(0, |n| n.times);
        Limited {
            times: AtomicU64::new(before),
        }
    }

    /// `e` back if it is a refusal as one connection too many, after recording it; any
    /// other error as the failure it is.
    fn refused(&self, e: FlowError, ctx: &ApplyCtx) -> Result<FlowError, Failure> {
        let text = match &e {
            FlowError::Net(NetError::Throttled { at, text, .. }) if is_connection_limit(text) => {
                format!("{at}: {text}")
            }
            _ => return Err(e.into()),
        };
        let note = ConnectionLimited {
            times: self.times.fetch_add(1, Ordering::Relaxed) + 1,
            last: text,
        };
        let records = note.checkpoints();
        let pairs: Vec<(&str, &[u8])> = records
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect();
        ctx.clone().commit(Counts::default(), &pairs)?;
        Ok(e)
    }
}

/// Waiting out a server that refuses connections as too many.
struct Waiting {
    since: Option<Instant>,
    next: Duration,
}

impl Waiting {
    fn new() -> Waiting {
        Waiting {
            since: None,
            next: LIMITED_WAIT,
        }
    }

    /// Waits before the next try (the server's suggestion, else a doubling backoff);
    /// `Ok(false)` when cancelled, `Err` once the server refused for too long.
    async fn wait(&mut self, refusal: &FlowError, ctx: &ApplyCtx) -> Result<bool, Failure> {
        let since = *self.since.get_or_insert_with(Instant::now);
        if since.elapsed() > LIMITED_GIVE_UP {
            return Err(FlowError::Transient(format!(
                "connections refused as too many for {} s: {refusal}",
                since.elapsed().as_secs()
            ))
            .into());
        }
        let wait = refusal.retry_after().unwrap_or(self.next);
        self.next = (self.next * 2).min(LIMITED_WAIT_MAX);
        tokio::select! {
            _ = tokio::time::sleep(wait) => Ok(true),
            _ = ctx.cancel_token().cancelled() => Ok(false),
        }
    }
}

/// A lane's target and source sessions and the connection slots they hold.
type LaneSessions = (
    Box<dyn TargetSession>,
    Box<dyn SourceSession>,
    crate::connectors::net::ConnectionSlots,
);

/// One lane: units from the queue until it is empty, the walk is cancelled or another lane
/// failed. Connects lazily (a lane that gets no unit opens nothing), target and source slots
/// reserved in one call.
struct Lane {
    runner: CopyRunner,
    ctx: ApplyCtx,
    seed: Arc<Checkpoints>,
    work: Arc<Mutex<Work>>,
    failed: Arc<AtomicBool>,
    limited: Arc<Limited>,
    /// The current unit's target-folder record ([`target_folder_key`]), until committed.
    marker: Option<String>,
}

impl Lane {
    /// `Ok(false)` when cancelled.
    async fn run(mut self) -> Result<bool, Failure> {
        let mut sessions: Option<LaneSessions> = None;
        let mut waited = Waiting::new();
        let mut reconnects = 0;
        let mut committed_before = self.ctx.checkpoints().len();
        loop {
            if self.failed.load(Ordering::Relaxed) {
                break;
            }
            let next = match self.work.lock() {
                Ok(mut work) => {
                    let next = work.units.pop_front();
                    if next.is_none() && sessions.is_some() {
                        work.connected -= 1;
                    }
                    next
                }
                Err(_) => None,
            };
            let Some(unit) = next else { break };
            if sessions.is_none() {
                match self.connect().await {
                    Ok(s) => {
                        sessions = Some(s);
                        if let Ok(mut work) = self.work.lock() {
                            work.connected += 1;
                        }
                    }
                    Err(e) => {
                        let e = match self.limited.refused(e, &self.ctx) {
                            Ok(e) => e,
                            Err(other) => {
                                self.failed.store(true, Ordering::Relaxed);
                                return Err(other);
                            }
                        };
                        // One connection too many: leave the unit to the lanes that have
                        // theirs; with none, wait and try again.
                        let others = match self.work.lock() {
                            Ok(mut work) => {
                                work.units.push_front(unit);
                                work.connected > 0
                            }
                            Err(_) => false,
                        };
                        if others {
                            return Ok(true);
                        }
                        if !waited.wait(&e, &self.ctx).await? {
                            return Ok(false);
                        }
                        continue;
                    }
                }
            }
            let Some((tgt, src, _)) = sessions.as_mut() else {
                break;
            };
            match self.copy_unit(src.as_mut(), tgt.as_mut(), &unit).await {
                Ok(true) => {
                    reconnects = 0;
                }
                // Cancelled mid-response: the sessions are dropped, not closed.
                Ok(false) => return Ok(false),
                // The target closed the connection while throttling (Exchange's `* BYE`):
                // reconnect and go on from the checkpoints, without spending a retry — unless
                // it keeps doing so without letting anything through.
                Err(Failure::Flow(e)) if e.is_throttle() && reconnects < MAX_RECONNECTS => {
                    let committed = self.ctx.checkpoints().len();
                    reconnects = if committed > committed_before {
                        1
                    } else {
                        reconnects + 1
                    };
                    committed_before = committed;
                    sessions = None;
                    let mut unit = unit;
                    unit.reopened = true;
                    if let Ok(mut work) = self.work.lock() {
                        work.units.push_front(unit);
                        work.connected -= 1;
                    }
                }
                Err(e) => {
                    self.failed.store(true, Ordering::Relaxed);
                    return Err(e);
                }
            }
        }
        if let Some((tgt, src, slots)) = sessions {
            let _ = src.close().await;
            let _ = tgt.close().await;
            drop(slots);
        }
        Ok(true)
    }

    /// Opens the lane's target and source sessions, their slots reserved in one call. A
    /// target session opened before the source refused is closed again.
    async fn connect(&self) -> Result<LaneSessions, FlowError> {
        let mut endpoints = self.runner.target.endpoints();
        endpoints.extend(self.runner.source.endpoints());
        let slots = reserve_connections(&endpoints.iter().collect::<Vec<_>>()).await;
        let tgt = self.runner.target.open(true).await?;
        match self.runner.source.open().await {
            Ok(src) => Ok((tgt, src, slots)),
            Err(e) => {
                let _ = tgt.close().await;
                Err(e)
            }
        }
    }

    async fn copy_unit(
        &mut self,
        src: &mut dyn SourceSession,
        tgt: &mut dyn TargetSession,
        unit: &Unit,
    ) -> Result<bool, Failure> {
        tgt.ensure_folder(&unit.target).await?;
        if unit.make_sure {
            tgt.subscribe(&unit.target, unit.subscribed).await?;
            // Recorded with the unit's first commit (or alone at its end), so it costs no
            // transaction of its own.
            self.marker = Some(target_folder_key(&unit.target));
        }
        if unit.folders.is_empty() && !unit.takes_back {
            self.commit_marker()?;
            return Ok(true);
        }
        let limit = tgt
            .size_limit()
            .map_or(self.runner.max_bytes, |l| l.min(self.runner.max_bytes));
        let mut counts = UnitCounts {
            present: tgt.identities(&unit.target).await?,
            settled_at_start: HashMap::new(),
            settled_since: HashMap::new(),
            unit_start: merged(&self.seed, &self.ctx),
            limit,
            copy_deleted: self.runner.copy_deleted,
        };
        for (folder, status) in &unit.folders {
            if self.ctx.is_cancelled() {
                return Ok(false);
            }
            if status.flags_may_have_changed {
                self.carry_flags(src, tgt, folder, &unit.target).await?;
            }
            if !self
                .copy_folder(src, tgt, folder, unit, &mut counts, limit)
                .await?
            {
                return Ok(false);
            }
        }
        if unit.records_copies(&self.ctx) {
            self.take_back_doubles(src, tgt, unit, &mut counts).await?;
        }
        self.record_target_notes(tgt)?;
        self.commit_marker()?;
        Ok(true)
    }

    /// What the target did differently from what it was asked, kept as report notes with
    /// totals over every run of the step.
    fn record_target_notes(&mut self, tgt: &mut dyn TargetSession) -> Result<(), Failure> {
        for note in tgt.take_notes() {
            match note {
                TargetNote::KeywordsDropped { folder, count } => {
                    let topic = format!("keywords-dropped:{folder}");
                    let total = notes::count(self.ctx.checkpoints(), &topic) + count;
                    let text = format!(
                        "{total} message(s) stored in `{folder}` without their keywords: the \
                         target cannot store keywords there"
                    );
                    let (ck, cv) = notes::count_checkpoint(&topic, total);
                    let (nk, nv) = notes::checkpoint(&topic, &text);
                    self.ctx.commit(
                        Counts::default(),
                        &[(ck.as_str(), cv.as_slice()), (nk.as_str(), nv.as_slice())],
                    )?;
                }
            }
        }
        Ok(())
    }

    /// After a resumed copy of a unit: a process killed right after sending an APPEND may
    /// leave the server committing it while the next run reads the folder, which then stores
    /// the same messages again — and that run may be killed in turn before it could look. So
    /// a resumed run records every copy it stores ([`stored_records`], committed with the
    /// message's checkpoint) and, at the end of each unit, reads the folder once more: of any
    /// identity the target holds more copies of than the source folder holding most of them
    /// has, it removes recorded copies (never others, never below that count), then clears
    /// the records.
    async fn take_back_doubles(
        &mut self,
        src: &mut dyn SourceSession,
        tgt: &mut dyn TargetSession,
        unit: &Unit,
        counts: &mut UnitCounts,
    ) -> Result<(), Failure> {
        let records = stored_records(self.ctx.checkpoints(), &unit.target);
        if records.is_empty() {
            return Ok(());
        }
        let now = tgt.identities(&unit.target).await?;
        let mut need: HashMap<Identity, u32> = HashMap::new();
        for folder in &unit.routed {
            let settled = counts.settled(src, folder).await?;
            for (_, _, identity) in &records {
                let n = need.entry(*identity).or_default();
                *n = (*n).max(settled.get(identity));
            }
        }
        let mut ours: BTreeMap<Identity, Vec<&str>> = BTreeMap::new();
        for (_, id, identity) in &records {
            ours.entry(*identity).or_default().push(id.as_str());
        }
        let mut doubles = Vec::new();
        for (identity, ids) in ours {
            let surplus = now
                .get(&identity)
                .saturating_sub(need.get(&identity).copied().unwrap_or(0));
            doubles.extend(
                ids.iter()
                    .rev()
                    .take(surplus as usize)
                    .map(|s| s.to_string()),
            );
        }
        if !doubles.is_empty() {
            tgt.remove(&unit.target, &doubles).await?;
        }
        // Served: cleared (a record's value empty), so a later pass does not look again.
        let cleared: Vec<(&str, &[u8])> = records
            .iter()
            .map(|(key, _, _)| (key.as_str(), &[][..]))
            .collect();
        self.ctx.commit(Counts::default(), &cleared)?;
        Ok(())
    }

    /// Commits the unit's target-folder record if no commit of the unit took it along.
    fn commit_marker(&mut self) -> Result<(), Failure> {
        if let Some(key) = self.marker.take() {
            self.ctx
                .commit(Counts::default(), &[(key.as_str(), b"1")])?;
        }
        Ok(())
    }

    /// Carries flag changes of mail copied earlier over to the target.
    async fn carry_flags(
        &mut self,
        src: &mut dyn SourceSession,
        tgt: &mut dyn TargetSession,
        folder: &SourceFolder,
        target: &[String],
    ) -> Result<(), Failure> {
        let checkpoints = merged(&self.seed, &self.ctx);
        let found = src.flag_changes(folder, &checkpoints).await?;
        if !found.changes.is_empty() {
            tgt.set_flags(target, &found.changes).await?;
        }
        if let Some((key, value)) = &found.checkpoint {
            self.ctx
                .commit(Counts::default(), &[(key.as_str(), value.as_slice())])?;
        }
        Ok(())
    }

    /// Copies message `i` of `progress`, one larger than a lane's share of the budget, from
    /// source to target without holding it whole: the source hands its body out piece by
    /// piece ([`SourceSession::open_body`]) and the target writes each on as it comes
    /// ([`TargetSession::append_streamed`]). It takes only [`STREAM_HOLD`] from the budget —
    /// or, where either side cannot stream, the message's size (clamped to the budget, so it
    /// waits for the others but never forever). Committed, as any message, once the target
    /// acknowledged it; a failure of either side (the target connection then abandoned
    /// mid-literal) commits nothing of it. `Ok(false)` when cancelled.
    #[allow(clippy::too_many_arguments)]
    async fn copy_streamed(
        &mut self,
        src: &mut dyn SourceSession,
        tgt: &mut dyn TargetSession,
        folder: &SourceFolder,
        unit: &Unit,
        counts: &mut UnitCounts,
        progress: &mut Progress,
        i: usize,
    ) -> Result<bool, Failure> {
        let meta = progress.entries[i].meta.clone();
        let hold = if src.streams() && tgt.streams() {
            STREAM_HOLD
        } else {
            meta.size
        };
        let Some(_held) = self.runner.budget.take(hold, self.ctx.cancel_token()).await else {
            return Ok(false);
        };
        let outcome = match src.open_body(folder, &meta).await? {
            Opened::Gone => None,
            Opened::Unreadable(why) => Some(Err(why)),
            Opened::Body(mut body) => {
                let size = body.size();
                let missing = body.missing().map(str::to_owned);
                let result = tgt
                    .append_streamed(&unit.target, body.as_mut(), self.ctx.cancel_token())
                    .await;
                // Settled without the target reading it all (refused at once): the rest is
                // read and dropped, so the source session can go on.
                let settled = matches!(
                    result,
                    Ok(_)
                        | Err(FlowError::Refused {
                            left_behind: true,
                            ..
                        })
                );
                if settled && !body.is_done() {
                    let mut rest = Vec::new();
                    while body.next_piece(&mut rest).await? {}
                }
                Some(Ok((result, size, missing)))
            }
        };
        let entry = &mut progress.entries[i];
        entry.settle = match outcome {
            // Expunged at the source since it was listed: nothing to copy.
            None => Settle::Done(Counts::default(), None),
            Some(Err(why)) => {
                let reason = format!("the source cannot read it: {why}");
                Settle::Done(
                    left_behind_count(),
                    Some(left_behind(folder, &meta, &reason)),
                )
            }
            Some(Ok((Ok(stored_as), size, missing))) => {
                let record = unit.records_copies(&self.ctx);
                entry.stored(counts, &unit.target, stored_as, record, size as usize);
                if let Some(what) = missing {
                    entry.copied_partly(folder, &what, size);
                }
                std::mem::replace(&mut entry.settle, Settle::Open)
            }
            Some(Ok((
                Err(FlowError::Refused {
                    text,
                    left_behind: true,
                }),
                _,
                _,
            ))) => {
                let reason = format!("refused by the target: {text}");
                Settle::Done(
                    left_behind_count(),
                    Some(left_behind(folder, &meta, &reason)),
                )
            }
            // Nothing of this message is committed; the sessions are dropped by the caller
            // (the target's mid-literal, the source's perhaps too).
            Some(Ok((Err(e), _, _))) => {
                if self.ctx.is_cancelled() {
                    return Ok(false);
                }
                return Err(e.into());
            }
        };
        progress
            .advance(&mut self.ctx, src, folder, &mut self.marker)
            .await?;
        Ok(true)
    }

    /// Copies one source folder's pending mail; `Ok(false)` when cancelled.
    async fn copy_folder(
        &mut self,
        src: &mut dyn SourceSession,
        tgt: &mut dyn TargetSession,
        folder: &SourceFolder,
        unit: &Unit,
        counts: &mut UnitCounts,
        limit: u64,
    ) -> Result<bool, Failure> {
        let checkpoints = merged(&self.seed, &self.ctx);
        let metas = src.list(folder, &checkpoints, Side::Pending).await?;
        for round in metas.chunks(ROUND) {
            let mut round = round.to_vec();
            // Mail left behind is reported with its subject and date.
            let copy_deleted = self.runner.copy_deleted;
            let unnamed: Vec<usize> = (0..round.len())
                .filter(|&i| {
                    (round[i].size > limit || (round[i].deleted && !copy_deleted))
                        && round[i].subject.is_none()
                })
                .collect();
            if !unnamed.is_empty() {
                src.identify(folder, &mut round).await?;
            }
            // A message to stream needs its identity before its body (POP3: a `TOP n 0`).
            let share = self.runner.budget.share();
            let large: Vec<usize> = (0..round.len())
                .filter(|&i| {
                    let m = &round[i];
                    m.identity.is_none() && m.size > share && m.size <= limit && m.in_window
                })
                .collect();
            if !large.is_empty() {
                let mut metas: Vec<MessageMeta> = large.iter().map(|&i| round[i].clone()).collect();
                src.identify(folder, &mut metas).await?;
                for (&i, meta) in large.iter().zip(metas) {
                    round[i] = meta;
                }
            }
            let mut progress = Progress::new(round);
            for i in 0..progress.entries.len() {
                let meta = &progress.entries[i].meta;
                let decision = if !meta.in_window {
                    Settle::Done(Counts::default(), None)
                } else if let Some(problem) = &meta.problem {
                    let reason = format!("the source cannot read it: {problem}");
                    Settle::Done(
                        left_behind_count(),
                        Some(left_behind(folder, meta, &reason)),
                    )
                } else if meta.deleted && !copy_deleted {
                    Settle::Done(
                        left_behind_count(),
                        Some(left_behind(folder, meta, skipped::FLAGGED_DELETED)),
                    )
                } else if meta.size > limit {
                    Settle::Done(
                        left_behind_count(),
                        Some(left_behind(folder, meta, skipped::OVER_LIMIT)),
                    )
                } else {
                    match meta.identity {
                        Some(identity) => {
                            if counts.is_there(identity, src, folder).await? {
                                Settle::Present
                            } else {
                                Settle::Fetch
                            }
                        }
                        None => Settle::Fetch,
                    }
                };
                progress.entries[i].settle = decision;
            }
            progress
                .advance(&mut self.ctx, src, folder, &mut self.marker)
                .await?;
            // Fetch and append in batches, in listing order.
            let wanted: Vec<usize> = (0..progress.entries.len())
                .filter(|&i| matches!(progress.entries[i].settle, Settle::Fetch))
                .collect();
            // A message larger than a lane's share of the budget is streamed on its own (its
            // identity known: one only the body tells goes whole, in a batch of its own).
            let mut batches: Vec<Batch> = Vec::new();
            let mut bytes = 0u64;
            for i in wanted {
                let meta = &progress.entries[i].meta;
                let size = meta.size;
                if size > share && meta.identity.is_some() {
                    batches.push(Batch::Streamed(i));
                    continue;
                }
                let full = match batches.last() {
                    Some(Batch::Whole(b)) => {
                        b.len() >= BATCH_MESSAGES
                            || (bytes + size > BATCH_BYTES.min(share) && !b.is_empty())
                    }
                    _ => true,
                };
                if full {
                    batches.push(Batch::Whole(Vec::new()));
                    bytes = 0;
                }
                bytes += size;
                if let Some(Batch::Whole(b)) = batches.last_mut() {
                    b.push(i);
                }
            }
            for batch in batches {
                if self.ctx.is_cancelled() {
                    return Ok(false);
                }
                let batch = match batch {
                    Batch::Whole(batch) => batch,
                    Batch::Streamed(i) => {
                        if !self
                            .copy_streamed(src, tgt, folder, unit, counts, &mut progress, i)
                            .await?
                        {
                            return Ok(false);
                        }
                        continue;
                    }
                };
                let metas: Vec<&MessageMeta> =
                    batch.iter().map(|&i| &progress.entries[i].meta).collect();
                // The batch's bytes are taken before they are read, and given back once the
                // target acknowledged them and the state committed them (end of this turn).
                let wanted_bytes: u64 = metas.iter().map(|m| m.size).sum();
                let Some(_held) = self
                    .runner
                    .budget
                    .take(wanted_bytes, self.ctx.cancel_token())
                    .await
                else {
                    return Ok(false);
                };
                let fetched = src.fetch(folder, &metas).await?;
                let mut to_send: Vec<(usize, RawMessage)> = Vec::new();
                let mut missing: BTreeMap<usize, String> = BTreeMap::new();
                for (&i, fetched) in batch.iter().zip(fetched) {
                    let message = match fetched {
                        Fetched::Message(m) => m,
                        Fetched::Partial {
                            message,
                            missing: what,
                        } => {
                            missing.insert(i, what);
                            message
                        }
                        // Expunged at the source since it was listed: nothing to copy.
                        Fetched::Gone => {
                            progress.entries[i].settle = Settle::Done(Counts::default(), None);
                            continue;
                        }
                        Fetched::Unreadable(why) => {
                            let meta = &progress.entries[i].meta;
                            let reason = format!("the source cannot read it: {why}");
                            let record = left_behind(folder, meta, &reason);
                            progress.entries[i].settle =
                                Settle::Done(left_behind_count(), Some(record));
                            continue;
                        }
                    };
                    if progress.entries[i].meta.identity.is_none() {
                        let identity = Identity::of_message(message.bytes());
                        progress.entries[i].meta.identity = Some(identity);
                        if counts.is_there(identity, src, folder).await? {
                            progress.entries[i].settle = Settle::Present;
                            continue;
                        }
                    }
                    to_send.push((i, message));
                }
                let (slots, messages): (Vec<usize>, Vec<RawMessage>) = to_send.into_iter().unzip();
                let results = if messages.is_empty() {
                    Vec::new()
                } else {
                    tgt.append(&unit.target, &messages, self.ctx.cancel_token())
                        .await
                };
                let unsettled = results.len() < messages.len();
                let mut failure = None;
                for ((&i, message), result) in slots.iter().zip(&messages).zip(results) {
                    match result {
                        Ok(stored_as) => {
                            let record = unit.records_copies(&self.ctx);
                            let entry = &mut progress.entries[i];
                            entry.stored(counts, &unit.target, stored_as, record, message.len());
                            if let Some(what) = missing.remove(&i) {
                                entry.copied_partly(folder, &what, message.len() as u64);
                            }
                        }
                        // The target's own limit, lower than the plan's: left behind and
                        // reported like any oversized message, not a failed copy.
                        Err(FlowError::Refused {
                            text,
                            left_behind: true,
                        }) => {
                            let meta = &progress.entries[i].meta;
                            let reason = format!("refused by the target: {text}");
                            let record = left_behind(folder, meta, &reason);
                            progress.entries[i].settle =
                                Settle::Done(left_behind_count(), Some(record));
                        }
                        Err(e) => {
                            failure.get_or_insert(e);
                        }
                    }
                }
                // Commits what the target acknowledged before reporting any failure.
                progress
                    .advance(&mut self.ctx, src, folder, &mut self.marker)
                    .await?;
                if let Some(e) = failure {
                    return Err(e.into());
                }
                // Messages left unanswered (the target stopped waiting out throttling when
                // cancelled) must stop the copy here: the checkpoint must not pass them.
                if unsettled {
                    if self.ctx.is_cancelled() {
                        return Ok(false);
                    }
                    return Err(StepError::transient(
                        "the target left messages of a batch unanswered",
                    )
                    .into());
                }
            }
            progress
                .advance(&mut self.ctx, src, folder, &mut self.marker)
                .await?;
            if progress.cursor < progress.entries.len() {
                return Err(
                    StepError::permanent("a copy round ended with unsettled messages").into(),
                );
            }
        }
        Ok(true)
    }
}

/// What the copy knows of one target folder's identities while filling it.
///
/// Counted per source folder: the target must hold, of each identity, as many copies as the
/// source folder holding most of them — two source folders merged into one target folder
/// (`INBOX.Sent` and `Sent`) that both hold a message give one copy, as two overlapping
/// sources do, while one folder's true duplicates are all kept.
struct UnitCounts {
    /// Copies the target holds (read at the unit's start, plus what this lane stored).
    present: IdentityCounts,
    /// Per source folder id: its messages behind the checkpoints as they were when the unit
    /// started, counted when first needed.
    settled_at_start: HashMap<String, IdentityCounts>,
    /// Per source folder id: its messages this lane settled since (copied or found there).
    settled_since: HashMap<String, IdentityCounts>,
    unit_start: Checkpoints,
    /// The size limit: larger mail behind the checkpoints was left behind, not copied.
    limit: u64,
    /// Mail flagged `\Deleted` behind the checkpoints was copied (else left behind).
    copy_deleted: bool,
}

impl UnitCounts {
    /// Whether the target already holds the next message of `identity` in `folder`: more
    /// copies than the folder's messages of that identity settled before it. Counts it as
    /// settled either way (the caller then copies it, or not).
    async fn is_there(
        &mut self,
        identity: Identity,
        src: &mut dyn SourceSession,
        folder: &SourceFolder,
    ) -> Result<bool, Failure> {
        let at_target = self.present.get(&identity);
        let there = if at_target == 0 {
            false
        } else {
            let before = self.settled_at_start(src, folder).await?.get(&identity)
                + self
                    .settled_since
                    .get(&folder.id)
                    .map_or(0, |s| s.get(&identity));
            at_target > before
        };
        self.settled_since
            .entry(folder.id.clone())
            .or_default()
            .add(identity);
        Ok(there)
    }

    /// `folder`'s messages behind the checkpoints as they were when the unit started, copied
    /// or found at the target (not left behind); listed on first use.
    async fn settled_at_start(
        &mut self,
        src: &mut dyn SourceSession,
        folder: &SourceFolder,
    ) -> Result<&IdentityCounts, Failure> {
        if !self.settled_at_start.contains_key(&folder.id) {
            let mut settled = IdentityCounts::new();
            let mut metas = src.list(folder, &self.unit_start, Side::Settled).await?;
            if metas.iter().any(|m| m.identity.is_none()) {
                src.identify(folder, &mut metas).await?;
            }
            for m in metas {
                let copied =
                    m.in_window && m.size <= self.limit && (self.copy_deleted || !m.deleted);
                if let (Some(i), true) = (m.identity, copied) {
                    settled.add(i);
                }
            }
            self.settled_at_start.insert(folder.id.clone(), settled);
        }
        Ok(&self.settled_at_start[&folder.id])
    }

    /// Everything of `folder` settled so far: behind the checkpoints at the unit's start,
    /// plus what this lane settled since.
    async fn settled(
        &mut self,
        src: &mut dyn SourceSession,
        folder: &SourceFolder,
    ) -> Result<IdentityCounts, Failure> {
        let mut all = self.settled_at_start(src, folder).await?.clone();
        if let Some(since) = self.settled_since.get(&folder.id) {
            for (identity, n) in since.iter() {
                for _ in 0..n {
                    all.add(*identity);
                }
            }
        }
        Ok(all)
    }
}

/// Checkpoint keys of the copies a resumed run stored start with this: `stored:<target
/// folder>:<target id>` → the copy's identity (16 bytes; empty once checked).
const STORED_PREFIX: &str = "stored:";

fn stored_key(target: &[String], id: &str) -> String {
    format!("{STORED_PREFIX}{}:{id}", display_target(target))
}

/// The copies recorded as stored in `target` and not yet checked: (key, target id, identity).
fn stored_records(checkpoints: &Checkpoints, target: &[String]) -> Vec<(String, String, Identity)> {
    let prefix = format!("{STORED_PREFIX}{}:", display_target(target));
    checkpoints
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .filter_map(|(k, v)| {
            let identity = Identity::from_bytes(v)?;
            Some((k.clone(), k[prefix.len()..].to_string(), identity))
        })
        .collect()
}

/// What happens to one listed message.
#[derive(Debug)]
enum Settle {
    /// Not decided yet.
    Open,
    /// Its body is needed (to copy it, or to identify it).
    Fetch,
    /// The target holds it already.
    Present,
    /// Settled: counts to add and maybe a record (left behind, or copied without some of
    /// its parts).
    Done(Counts, Option<(String, String)>),
}

struct Entry {
    meta: MessageMeta,
    settle: Settle,
    /// The record of its copy, when a resumed run stored it ([`stored_key`]).
    record_stored: Option<(String, Vec<u8>)>,
}

impl Entry {
    /// Settles the message as stored at the target (`stored_as`: the target's id of the
    /// copy) with `bytes` copied: counted among the copies `target` holds and, when `record`
    /// ([`Unit::records_copies`]: a resumed run, or a unit taken up again after its
    /// connection was closed), recorded with its checkpoint (see `take_back_doubles`).
    fn stored(
        &mut self,
        counts: &mut UnitCounts,
        target: &[String],
        stored_as: Option<String>,
        record: bool,
        bytes: usize,
    ) {
        if let Some(identity) = self.meta.identity {
            counts.present.add(identity);
            if let (Some(id), true) = (stored_as, record) {
                self.record_stored = Some((stored_key(target, &id), identity.to_bytes().to_vec()));
            }
        }
        self.settle = Settle::Done(
            Counts {
                items: 1,
                bytes: bytes as u64,
                ..Counts::default()
            },
            None,
        );
    }

    /// Records, with the message's copy (`bytes` copied), that it went without some of its
    /// parts: `missing` says which, for the report.
    fn copied_partly(&mut self, folder: &SourceFolder, missing: &str, bytes: u64) {
        let record = message_record(
            partial_key(folder, &self.meta.id),
            folder,
            &self.meta,
            bytes,
            missing,
        );
        if let Settle::Done(_, slot) = &mut self.settle {
            *slot = Some(record);
        }
    }
}

/// Messages fetched and appended together, or one streamed on its own.
enum Batch {
    Whole(Vec<usize>),
    Streamed(usize),
}

/// One round's listing and how far it is committed: in listing order, every settled message
/// up to the first unsettled one, with its checkpoint.
struct Progress {
    entries: Vec<Entry>,
    cursor: usize,
}

impl Progress {
    fn new(metas: Vec<MessageMeta>) -> Self {
        Progress {
            entries: metas
                .into_iter()
                .map(|meta| Entry {
                    meta,
                    settle: Settle::Open,
                    record_stored: None,
                })
                .collect(),
            cursor: 0,
        }
    }

    /// Commits the settled prefix in one transaction (with `marker`, a target folder's
    /// record still to commit), then tells the source which of those messages the target
    /// holds.
    async fn advance(
        &mut self,
        ctx: &mut ApplyCtx,
        src: &mut dyn SourceSession,
        folder: &SourceFolder,
        marker: &mut Option<String>,
    ) -> Result<(), Failure> {
        let mut delta = Counts::default();
        let mut pairs: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let mut at_target = Vec::new();
        let from = self.cursor;
        while self.cursor < self.entries.len() {
            let entry = &mut self.entries[self.cursor];
            // `kept`: the target holds a copy (copied, or found there) — what a source that
            // deletes copied mail may delete.
            let (counts, record, kept) = match &mut entry.settle {
                Settle::Open | Settle::Fetch => break,
                Settle::Present => (
                    Counts {
                        present: 1,
                        ..Counts::default()
                    },
                    None,
                    true,
                ),
                Settle::Done(c, record) => (*c, record.take(), c.items > 0),
            };
            delta.items += counts.items;
            delta.bytes += counts.bytes;
            delta.present += counts.present;
            delta.left_behind += counts.left_behind;
            let (k, v) = &entry.meta.checkpoint;
            pairs.insert(k.clone(), v.clone());
            if let Some((k, v)) = record {
                pairs.insert(k, v.into_bytes());
            }
            if let Some((k, v)) = entry.record_stored.take() {
                pairs.insert(k, v);
            }
            if kept {
                at_target.push(self.cursor);
            }
            self.cursor += 1;
        }
        if self.cursor == from {
            return Ok(());
        }
        if let Some(key) = marker.take() {
            pairs.insert(key, b"1".to_vec());
        }
        let refs: Vec<(&str, &[u8])> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect();
        ctx.commit(delta, &refs)?;
        if !at_target.is_empty() {
            let metas: Vec<&MessageMeta> =
                at_target.iter().map(|&i| &self.entries[i].meta).collect();
            src.committed(folder, &metas).await?;
        }
        Ok(())
    }
}

/// The record of a message left behind: key and report entry.
fn left_behind(folder: &SourceFolder, meta: &MessageMeta, reason: &str) -> (String, String) {
    message_record(
        left_behind_key(folder, &meta.id),
        folder,
        meta,
        meta.size,
        reason,
    )
}

/// A message's record for the report under checkpoint `key`: folder, id, `size`, subject,
/// date and `reason`.
fn message_record(
    key: String,
    folder: &SourceFolder,
    meta: &MessageMeta,
    size: u64,
    reason: &str,
) -> (String, String) {
    let record = SkippedMessage::new(
        folder.display.as_str(),
        meta.id.as_str(),
        size,
        meta.subject.clone(),
        meta.received,
        reason,
    );
    (key, serde_json::to_string(&record).unwrap_or_default())
}

fn left_behind_count() -> Counts {
    Counts {
        left_behind: 1,
        ..Counts::default()
    }
}

impl StepRunner for CopyRunner {
    fn config_hash(&self) -> String {
        self.hash.clone()
    }

    fn observe(&self, ctx: &ObserveCtx<'_>) -> Result<Observation, StepError> {
        let this = self.clone();
        // As in apply: the step's own checkpoints over the seed's.
        let mut checkpoints = self.seed(|id| ctx.checkpoints_of(id))?;
        checkpoints.extend(ctx.checkpoints.clone());
        on_own_runtime(move || this.observe_async(checkpoints))
    }

    fn apply<'a>(&'a self, ctx: &'a mut ApplyCtx) -> BoxFuture<'a, Result<Outcome, StepError>> {
        let this = self.clone();
        let ctx = ctx.clone();
        run_attempt(ctx.clone(), move || this.run(ctx))
    }
}
