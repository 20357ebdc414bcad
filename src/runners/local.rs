//! Runners for a fully local migration: `mbox` and `maildir` sources into a `target: maildir`,
//! built on [`crate::connectors::mail`]. Every other combination gets an [`Unsupported`]
//! runner, so a plan mixing supported and unsupported steps still runs what it can.
//!
//! Layout: the user's Maildir is `<target.path>/<user email>/` (relative to the plan file).
//! Checkpoints: `mbox.offset` (decimal byte offset of the last copied message's `From ` line)
//! and `maildir:<folder>` (the last copied message id of that source folder). Each is committed
//! right after the target's `append` returned, i.e. after the message is durable; a crash in
//! between offers the message again and the target's dedupe stores it once.
//!
//! A date window (`since`/`before`, see [`DateWindow`]) judges an mbox message by its `From `
//! line's date and a maildir message by its file's modification time (the internal dates the
//! connectors derive). Mail outside it is invisible to copy, `plan` and verify alike; the
//! checkpoints only pass mail inside it, so mail outside it after the last copied message is
//! read again on the next run (locally, without being stored).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::connectors::folder_filter::FolderFilter;

use super::remote;
use super::skipped::{self, SkippedMessage};
use super::tally::Tally;
use crate::connectors::mail::{
    AppendOutcome, DateWindow, DedupeKey, FolderPath, MailError, Maildir, MaildirTarget,
    MboxReader, MboxVariant, RawMessage,
};
use crate::engine::step::{
    ApplyCtx, BoxFuture, ExcludedFolder, FolderObservation, Observation, ObserveCtx, Outcome,
    StepError, StepRunner, Unsupported,
};
use crate::engine::{hash_parts, Runners};
use crate::graph::{StepGraph, StepKind};
use crate::plan::model::{FolderRules, Migration, Plan, Source, Target};
use crate::state::Counts;

const MBOX_OFFSET: &str = "mbox.offset";

/// Builds a runner for every step of `graph` except manual gates (the walker handles those).
/// `base_dir` is the plan file's folder; relative plan paths resolve against it.
pub fn runners_for(plan: &Plan, graph: &StepGraph, base_dir: &Path) -> Runners {
    let mut runners: Runners = Runners::new();
    let target_root = match &plan.target {
        Target::Maildir { path } => Some((base_dir.join(path), path.display().to_string())),
        _ => None,
    };
    let target_kind = match &plan.target {
        Target::M365 { .. } => "m365",
        Target::Imap(_) => "imap",
        Target::Maildir { .. } => "maildir",
    };
    for step in graph.steps() {
        let user = step.user.and_then(|u| plan.users.get(u));
        let migration = user.and_then(|u| step.migration.and_then(|m| u.migrate.get(m)));
        let from_server =
            migration.is_some_and(|m| remote::is_server_source(plan.sources.get(&m.from)));
        let runner: Arc<dyn StepRunner> = match (step.kind, &target_root, user) {
            (StepKind::Manual, _, _) => continue,
            (StepKind::Autocomplete, _, Some(user)) => {
                match super::autocomplete::AutocompleteRunner::new(plan, user, base_dir) {
                    Some(runner) => Arc::new(runner),
                    None => Arc::new(Unsupported::new(
                        "autocomplete step without `autocomplete:` files",
                    )),
                }
            }
            (StepKind::Copy | StepKind::Delta, _, Some(user)) if from_server => match migration {
                Some(m) => remote::copy_runner(plan, user, m, base_dir, step),
                None => Arc::new(Unsupported::new("copy step without a migration")),
            },
            (StepKind::User, None, Some(user))
                if matches!(plan.target, Target::Imap(_) | Target::M365 { .. }) =>
            {
                remote::user_runner(plan, user, base_dir)
            }
            (StepKind::User, Some((root, written)), Some(user)) => Arc::new(UserMaildir {
                root: root.join(&user.email),
                hash: hash_parts(&["user-maildir", written, &user.email]),
            }),
            (StepKind::Copy, Some((root, written)), Some(user)) => {
                match step.migration.and_then(|m| user.migrate.get(m)) {
                    Some(migration) => copy_runner(
                        plan,
                        migration,
                        base_dir,
                        root.join(&user.email),
                        written,
                        &user.email,
                    ),
                    None => Arc::new(Unsupported::new("copy step without a migration")),
                }
            }
            (StepKind::Verify, _, Some(user))
                if !user.migrate.is_empty()
                    && user
                        .migrate
                        .iter()
                        .all(|m| remote::is_server_source(plan.sources.get(&m.from))) =>
            {
                let steps: Vec<_> = graph
                    .steps()
                    .filter(|s| s.user == step.user)
                    .cloned()
                    .collect();
                remote::verify_runner(plan, user, base_dir, &steps)
            }
            (StepKind::Verify, Some((root, written)), Some(user)) => {
                let sources: Result<Vec<LocalSource>, String> = user
                    .migrate
                    .iter()
                    .map(|m| {
                        LocalSource::new(
                            plan,
                            m,
                            base_dir,
                            root.join(&user.email),
                            written,
                            &user.email,
                        )
                    })
                    .collect();
                match sources {
                    Ok(sources) => {
                        let mut parts = vec!["verify-local".to_string()];
                        parts.extend(sources.iter().map(|s| s.hash.clone()));
                        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
                        Arc::new(LocalVerify {
                            hash: hash_parts(&parts),
                            sources,
                        })
                    }
                    Err(what) => Arc::new(Unsupported::new(format!("verify of {what}"))),
                }
            }
            (StepKind::User | StepKind::Copy | StepKind::Verify, None, _) => {
                Arc::new(Unsupported::new(format!(
                    "{} steps into a {target_kind} target",
                    kind_label(step.kind)
                )))
            }
            (kind, _, _) => Arc::new(Unsupported::new(format!("{} steps", kind_label(kind)))),
        };
        runners.insert(step.id.clone(), runner);
    }
    runners
}

fn kind_label(kind: StepKind) -> &'static str {
    match kind {
        StepKind::User => "user",
        StepKind::Copy => "copy",
        StepKind::LowerTtl => "dns lower-ttl",
        StepKind::Cutover => "dns cutover",
        StepKind::Delta => "delta",
        StepKind::Autocomplete => "autocomplete",
        StepKind::Verify => "verify",
        StepKind::Manual => "manual",
    }
}

fn copy_runner(
    plan: &Plan,
    m: &Migration,
    base: &Path,
    root: PathBuf,
    written: &str,
    email: &str,
) -> Arc<dyn StepRunner> {
    match LocalSource::new(plan, m, base, root, written, email) {
        Ok(source) => Arc::new(LocalCopy { source }),
        Err(what) => Arc::new(Unsupported::new(what)),
    }
}

fn mail_err(e: MailError) -> StepError {
    StepError::permanent(e.to_string())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SourceKind {
    Mbox,
    Maildir,
}

/// Which source folders are copied, and where to.
#[derive(Debug, Clone)]
struct Routing {
    filter: FolderFilter,
    map: BTreeMap<String, String>,
}

impl Routing {
    fn new(rules: &FolderRules) -> Result<Routing, String> {
        Ok(Routing {
            filter: FolderFilter::new(rules)?,
            map: rules.map.clone(),
        })
    }

    /// The target folder for source folder `name`, `None` when it is not copied. Rules match
    /// the `/`-separated name; `map` keys may also use `.` (IMAP's `INBOX.Sent` spelling).
    fn route(&self, name: &FolderPath) -> Result<Option<FolderPath>, StepError> {
        let slash = name.to_string();
        if !self.filter.selects(&[&slash]) {
            return Ok(None);
        }
        let dotted = if name.is_inbox() {
            slash.clone()
        } else {
            name.segments().join(".")
        };
        let mapped = self.map.get(&slash).or_else(|| self.map.get(&dotted));
        match mapped {
            Some(to) => FolderPath::parse(to, '/').map(Some).map_err(mail_err),
            None => Ok(Some(name.clone())),
        }
    }
}

/// One user's local source and where its mail goes.
#[derive(Debug, Clone)]
struct LocalSource {
    kind: SourceKind,
    file: PathBuf,
    /// The user's Maildir at the target.
    target: PathBuf,
    routing: Routing,
    /// Target folder of an mbox (`into`, default INBOX).
    into: FolderPath,
    max_bytes: u64,
    /// Only mail received in it is copied (and verified).
    window: Option<DateWindow>,
    hash: String,
}

impl LocalSource {
    /// `Err` names what this build cannot do with the migration.
    fn new(
        plan: &Plan,
        m: &Migration,
        base: &Path,
        target: PathBuf,
        written: &str,
        email: &str,
    ) -> Result<LocalSource, String> {
        let kind = match plan.sources.get(&m.from) {
            Some(Source::Mbox) => SourceKind::Mbox,
            Some(Source::Maildir) => SourceKind::Maildir,
            Some(Source::Imap(_)) => return Err("copy from an imap source".into()),
            Some(Source::Pop3 { .. }) => return Err("copy from a pop3 source".into()),
            Some(Source::Pst { .. }) => return Err("copy from a pst source".into()),
            None => return Err(format!("copy from unknown source `{}`", m.from)),
        };
        let window = DateWindow::parse(m.since.as_deref(), m.before.as_deref())?;
        let Some(file) = &m.file else {
            return Err(format!("`{}` migration without `file:`", m.from));
        };
        let routing = Routing::new(&m.folders)?;
        let into = match &m.into {
            Some(name) => FolderPath::parse(name, '/').map_err(|e| e.to_string())?,
            None => FolderPath::inbox(),
        };
        let max_bytes = u64::from(plan.settings.max_message_size_mb) * 1024 * 1024;
        let rules = serde_json::to_string(&m.folders).unwrap_or_default();
        let (file_name, into_name, max) = (
            file.display().to_string(),
            into.to_string(),
            max_bytes.to_string(),
        );
        let mut parts = vec![
            "copy-local",
            if kind == SourceKind::Mbox {
                "mbox"
            } else {
                "maildir"
            },
            &file_name,
            written,
            email,
            &rules,
            &into_name,
            &max,
        ];
        // Only when set, so the hashes of steps without a window stay what they were.
        let window_desc = window.map(|w| w.describe());
        parts.extend(window_desc.as_deref());
        let hash = hash_parts(&parts);
        Ok(LocalSource {
            kind,
            file: base.join(file),
            target,
            routing,
            into,
            max_bytes,
            window,
            hash,
        })
    }

    fn in_window(&self, received: Option<std::time::SystemTime>) -> bool {
        self.window.is_none_or(|w| w.contains(received))
    }

    /// The skeleton of a preview: every source folder the rules copy, with its target and
    /// zero counts, and the folders they exclude with the messages left behind there.
    fn routes(&self) -> Result<Observation, StepError> {
        let mut obs = Observation::default();
        match self.kind {
            SourceKind::Mbox => obs.folders.push(FolderObservation {
                // The file name, not its path: the plan already says where it is.
                source: self.file.file_name().map_or_else(
                    || self.file.display().to_string(),
                    |n| n.to_string_lossy().into_owned(),
                ),
                target: self.into.to_string(),
                ..FolderObservation::default()
            }),
            SourceKind::Maildir => {
                let source = Maildir::open(&self.file).map_err(mail_err)?;
                for folder in source.folders().map_err(mail_err)? {
                    match self.routing.route(&folder.name)? {
                        Some(to) => obs.folders.push(FolderObservation {
                            source: folder.name.to_string(),
                            target: to.to_string(),
                            ..FolderObservation::default()
                        }),
                        None => obs.excluded.push(ExcludedFolder {
                            source: folder.name.to_string(),
                            messages: source.entries(&folder).ok().map(|e| e.len() as u64),
                        }),
                    }
                }
            }
        }
        Ok(obs)
    }

    /// Calls `each(target folder, message, checkpoint)` for every message to copy (received in
    /// the date window), starting after `checkpoints`, in a stable order. `each` returning
    /// `Ok(false)` stops early.
    fn for_each(
        &self,
        checkpoints: &BTreeMap<String, Vec<u8>>,
        mut each: impl FnMut(&FolderPath, RawMessage, (String, String)) -> Result<bool, StepError>,
    ) -> Result<bool, StepError> {
        match self.kind {
            SourceKind::Mbox => {
                let after = match checkpoints.get(MBOX_OFFSET) {
                    Some(v) => Some(
                        std::str::from_utf8(v)
                            .ok()
                            .and_then(|s| s.parse::<u64>().ok())
                            .ok_or_else(|| {
                                StepError::permanent("corrupt mbox checkpoint in state")
                            })?,
                    ),
                    None => None,
                };
                let reader = match after {
                    Some(offset) => MboxReader::open_after(&self.file, MboxVariant::Mboxrd, offset),
                    None => MboxReader::open(&self.file, MboxVariant::Mboxrd),
                }
                .map_err(mail_err)?;
                for item in reader {
                    let m = item.map_err(mail_err)?;
                    if !self.in_window(m.message.internal_date) {
                        continue;
                    }
                    if !each(
                        &self.into,
                        m.message,
                        (MBOX_OFFSET.to_string(), m.offset.to_string()),
                    )? {
                        return Ok(false);
                    }
                }
            }
            SourceKind::Maildir => {
                let source = Maildir::open(&self.file).map_err(mail_err)?;
                for folder in source.folders().map_err(mail_err)? {
                    let Some(to) = self.routing.route(&folder.name)? else {
                        continue;
                    };
                    let key = format!("maildir:{}", folder.name);
                    let after = checkpoints
                        .get(&key)
                        .map(|v| String::from_utf8_lossy(v).into_owned());
                    for entry in source
                        .entries_after(&folder, after.as_deref())
                        .map_err(mail_err)?
                    {
                        // Decided before reading: the date is the file's, not its content's.
                        if !self.in_window(entry.internal_date) {
                            continue;
                        }
                        let message = entry.read().map_err(mail_err)?;
                        if !each(&to, message, (key.clone(), entry.id.clone()))? {
                            return Ok(false);
                        }
                    }
                }
            }
        }
        Ok(true)
    }
}

/// Dedupe keys present in a target folder, read without writing anything (for `plan` and
/// verify). A missing maildir or folder is empty.
#[derive(Default)]
struct TargetIndex {
    root: PathBuf,
    folders: BTreeMap<FolderPath, HashSet<DedupeKey>>,
}

impl TargetIndex {
    fn new(root: &Path) -> Self {
        TargetIndex {
            root: root.to_path_buf(),
            folders: BTreeMap::new(),
        }
    }

    fn contains(&mut self, folder: &FolderPath, key: &DedupeKey) -> Result<bool, StepError> {
        if !self.folders.contains_key(folder) {
            let mut keys = HashSet::new();
            if let Ok(dir) = Maildir::open(&self.root) {
                let f = dir.folder(folder);
                if f.dir.is_dir() {
                    for entry in dir.entries(&f).map_err(mail_err)? {
                        keys.insert(entry.read().map_err(mail_err)?.dedupe_key());
                    }
                }
            }
            self.folders.insert(folder.clone(), keys);
        }
        Ok(self.folders.get(folder).is_some_and(|k| k.contains(key)))
    }
}

/// Runs blocking mail I/O off the async workers.
pub(crate) fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StepError> + Send + 'static,
) -> BoxFuture<'static, Result<T, StepError>> {
    Box::pin(async move {
        match tokio::task::spawn_blocking(f).await {
            Ok(r) => r,
            Err(e) => Err(StepError::permanent(format!("step task failed: {e}"))),
        }
    })
}

/// `user.*` into a maildir target: the user's Maildir root exists.
struct UserMaildir {
    root: PathBuf,
    hash: String,
}

impl StepRunner for UserMaildir {
    fn config_hash(&self) -> String {
        self.hash.clone()
    }

    fn observe(&self, _ctx: &ObserveCtx) -> Result<Observation, StepError> {
        let exists = self.root.join("cur").is_dir();
        Ok(Observation {
            items: u64::from(!exists),
            present: u64::from(exists),
            note: Some(format!("maildir {}", self.root.display())),
            ..Observation::default()
        })
    }

    fn apply<'a>(&'a self, ctx: &'a mut ApplyCtx) -> BoxFuture<'a, Result<Outcome, StepError>> {
        let root = self.root.clone();
        let mut ctx = ctx.clone();
        blocking(move || {
            let existed = root.join("cur").is_dir();
            MaildirTarget::open(&root).map_err(mail_err)?;
            let delta = if existed {
                Counts {
                    skipped: 1,
                    ..Counts::default()
                }
            } else {
                Counts {
                    items: 1,
                    ..Counts::default()
                }
            };
            ctx.commit(delta, &[])?;
            Ok(Outcome::Complete)
        })
    }
}

/// `copy.*` from an mbox or maildir into the user's Maildir.
struct LocalCopy {
    source: LocalSource,
}

impl StepRunner for LocalCopy {
    fn config_hash(&self) -> String {
        self.source.hash.clone()
    }

    fn observe(&self, ctx: &ObserveCtx<'_>) -> Result<Observation, StepError> {
        let mut index = TargetIndex::new(&self.source.target);
        let mut obs = self.source.routes()?;
        let max = self.source.max_bytes;
        self.source
            .for_each(&ctx.checkpoints, |folder, message, (key, _)| {
                let len = message.len() as u64;
                if len > max {
                    return Ok(true);
                }
                let present = index.contains(folder, &message.dedupe_key())?;
                // An mbox is one folder; a Maildir's checkpoint key names the source folder.
                let source = key.strip_prefix("maildir:");
                let add = |items: &mut u64, bytes: &mut u64, there: &mut u64| {
                    if present {
                        *there += 1;
                    } else {
                        *items += 1;
                        *bytes += len;
                    }
                };
                if let Some(f) = obs
                    .folders
                    .iter_mut()
                    .find(|f| source.is_none_or(|s| s == f.source))
                {
                    add(&mut f.items, &mut f.bytes, &mut f.present);
                }
                add(&mut obs.items, &mut obs.bytes, &mut obs.present);
                Ok(true)
            })?;
        obs.sort_folders();
        Ok(obs)
    }

    fn apply<'a>(&'a self, ctx: &'a mut ApplyCtx) -> BoxFuture<'a, Result<Outcome, StepError>> {
        let source = self.source.clone();
        let mut ctx = ctx.clone();
        blocking(move || {
            let mut target = MaildirTarget::open(&source.target).map_err(mail_err)?;
            let checkpoints = ctx.checkpoints().clone();
            let finished = source.for_each(&checkpoints, |folder, message, (key, value)| {
                if ctx.is_cancelled() {
                    return Ok(false);
                }
                let len = message.len() as u64;
                let mut left_behind = None;
                let delta = if len > source.max_bytes {
                    // Listed in the report: which mail did not move, and why.
                    let record = SkippedMessage::new(
                        folder.to_string(),
                        value.clone(),
                        len,
                        message.subject(),
                        message.internal_date,
                        skipped::OVER_LIMIT,
                    );
                    left_behind = Some(record.checkpoint(&key));
                    Counts {
                        skipped: 1,
                        ..Counts::default()
                    }
                } else {
                    match target.append(folder, &message).map_err(mail_err)? {
                        AppendOutcome::Appended { .. } => Counts {
                            items: 1,
                            bytes: len,
                            skipped: 0,
                        },
                        AppendOutcome::AlreadyPresent { .. } => Counts {
                            skipped: 1,
                            ..Counts::default()
                        },
                    }
                };
                // Only now is the message durable at the target: checkpoint it.
                let mut checkpoints = vec![(key.as_str(), value.as_bytes())];
                if let Some((k, v)) = &left_behind {
                    checkpoints.push((k.as_str(), v.as_bytes()));
                }
                ctx.commit(delta, &checkpoints)?;
                Ok(true)
            })?;
            Ok(if finished {
                Outcome::Complete
            } else {
                Outcome::Interrupted
            })
        })
    }
}

/// `verify.*`: every message the user's sources hold (as routed) is present at the target.
struct LocalVerify {
    sources: Vec<LocalSource>,
    hash: String,
}

fn verify(sources: &[LocalSource]) -> Result<Tally, StepError> {
    let mut tally = Tally::default();
    let none = BTreeMap::new();
    for source in sources {
        let mut index = TargetIndex::new(&source.target);
        source.for_each(&none, |folder, message, _| {
            if message.len() as u64 > source.max_bytes {
                return Ok(true);
            }
            let present = index.contains(folder, &message.dedupe_key())?;
            tally.count(folder.to_string(), present);
            Ok(true)
        })?;
    }
    Ok(tally)
}

impl StepRunner for LocalVerify {
    fn config_hash(&self) -> String {
        self.hash.clone()
    }

    fn observe(&self, _ctx: &ObserveCtx) -> Result<Observation, StepError> {
        Ok(verify(&self.sources)?.observation())
    }

    fn apply<'a>(&'a self, ctx: &'a mut ApplyCtx) -> BoxFuture<'a, Result<Outcome, StepError>> {
        let sources = self.sources.clone();
        let mut ctx = ctx.clone();
        blocking(move || {
            let checked = verify(&sources)?.verdict(0)?;
            ctx.commit(
                Counts {
                    items: checked,
                    ..Counts::default()
                },
                &[],
            )?;
            Ok(Outcome::Complete)
        })
    }
}
