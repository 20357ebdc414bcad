//! Runners for mail on servers: `copy.*` and `delta.*` steps from `imap` and `pop3` sources
//! into a `maildir` or `imap` target, and `user.*` steps of an `imap` target.
//!
//! One runner serves both copy and delta: a delta pass is a copy that starts from what the
//! copy step already committed (its checkpoints seed the delta's), so it only fetches mail
//! that arrived since. Without them it still works, just slower: it compares everything, and
//! the target's dedupe skips what is there.
//!
//! Checkpoints (committed only after the target acknowledged the message):
//! * `imap:<source folder wire name>` — JSON `{"uidvalidity": u32, "last_uid": u32}`; a
//!   different UIDVALIDITY at the source voids it and the folder is compared in full, which
//!   target dedupe makes safe;
//! * `pop3:<uidl>` — one key per copied (or deliberately skipped) POP3 message: a key per
//!   message keeps every commit O(1), where one growing set would be rewritten per message;
//! * `skipped:<folder or pop3>:<id>` — JSON `{folder, uid, size, subject}` of a message over
//!   `settings.max_message_size_mb`, for the report.
//!
//! Dedupe on the target is per folder by [`DedupeKey`]: before copying into a folder the
//! runner reads the target folder's Message-IDs (and hashes the few messages without one);
//! source messages whose Message-ID is already there are not even downloaded.
//!
//! Each attempt runs on its own blocking thread with a current-thread runtime: the target
//! (maildir writes, fsyncs) and [`ApplyCtx::commit`] block, and the walker's workers must
//! not.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::hash_parts;
use super::step::{
    ApplyCtx, BoxFuture, ExcludedFolder, FolderObservation, Observation, ObserveCtx, Outcome,
    StepError, StepRunner, Unsupported,
};
use crate::connectors::imap::folders::decode_lossy;
use crate::connectors::imap::{
    FetchedMessage, FolderMapper, ImapClient, MappedFolder, Route, TargetNames, PORTS as IMAP_PORTS,
};
use crate::connectors::mail::{
    utf7, AppendOutcome, DedupeKey, FolderPath, Maildir, MaildirTarget, RawMessage,
};
use crate::connectors::net::{Credentials, Endpoint, NetError};
use crate::connectors::pop3::{Pop3Client, PORTS as POP3_PORTS};
use crate::graph::{Step, StepKind};
use crate::plan::model::{AuthMethod, Migration, Plan, SecretRef, Source, Target, User};
use crate::state::Counts;
use tokio_util::sync::CancellationToken;

/// Messages planned per round of body fetches: bounds the UID set sent in one command and the
/// per-round bookkeeping, not memory (bodies stream one at a time).
const CHUNK: usize = 256;

/// How long a target may keep throttling without any message getting through before the
/// attempt gives up (and the walker's retry takes over).
const MAX_THROTTLED: Duration = Duration::from_secs(1800);

/// Messages (and bytes) fetched before they are appended as one pipelined batch and
/// committed in one state transaction. Bounds memory; large enough to fill the pipeline.
const BATCH_MESSAGES: usize = 64;
const BATCH_BYTES: u64 = 16 << 20;

/// The longest server-suggested wait honoured inside the runner; beyond it the walker's own
/// backoff takes over.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// Whether `source` is a mail server this module copies from.
pub(crate) fn is_server_source(source: Option<&Source>) -> bool {
    matches!(source, Some(Source::Imap(_) | Source::Pop3 { .. }))
}

/// A login at a server, with its password reference resolved only when connecting.
#[derive(Debug, Clone)]
struct Account {
    endpoint: Endpoint,
    login: String,
    password: SecretRef,
    auth: AuthMethod,
    base_dir: PathBuf,
    /// Where the password is configured, for errors (`source ionos-imap`, `target_login`).
    context: String,
}

impl Account {
    fn credentials(&self) -> Result<Credentials, StepError> {
        let secret = crate::secrets::resolve(&self.password, &self.base_dir, false)
            .map_err(|e| StepError::permanent(format!("{}: {e}", self.context)))?;
        Ok(match self.auth {
            AuthMethod::Password => Credentials::password(&self.login, secret.expose()),
            AuthMethod::Xoauth2 => Credentials::xoauth2(&self.login, secret.expose()),
        })
    }

    /// Everything but the secret's value, for config hashes.
    fn describe(&self) -> String {
        format!(
            "{}|{:?}|{}|{}|{:?}|{}",
            self.endpoint.server(),
            self.endpoint.tls,
            self.endpoint.allow_plaintext,
            self.login,
            self.auth,
            secret_label(&self.password)
        )
    }

    async fn imap(&self) -> Result<ImapClient, Failure> {
        let creds = self.credentials()?;
        Ok(ImapClient::connect(&self.endpoint, &creds).await?)
    }

    async fn pop3(&self) -> Result<Pop3Client, Failure> {
        let creds = self.credentials()?;
        Ok(Pop3Client::connect(&self.endpoint, &creds).await?)
    }
}

/// A secret reference as hashed: the reference, never an inline value (a hash of a short
/// password is guessable, and the hash is stored in state).
fn secret_label(r: &SecretRef) -> String {
    match r {
        SecretRef::Env(e) => format!("env:{}", e.env),
        SecretRef::File(f) => format!("file:{}", f.file.display()),
        SecretRef::Command(c) => format!("command:{}", c.command),
        SecretRef::Inline(_) => "inline".into(),
    }
}

#[derive(Debug, Clone)]
enum SourceSpec {
    Imap(Account),
    Pop3 {
        account: Account,
        delete_after_copy: bool,
    },
}

#[derive(Debug, Clone)]
enum TargetSpec {
    /// The user's Maildir root.
    Maildir(PathBuf),
    Imap(Account),
}

/// `copy.*`/`delta.*` from a server source.
#[derive(Debug, Clone)]
struct RemoteCopy {
    source: SourceSpec,
    target: TargetSpec,
    mapper: FolderMapper,
    /// Target folder of POP3 mail (`into`, default INBOX), as segments.
    into: Vec<String>,
    max_bytes: u64,
    /// For a delta step: the copy step whose checkpoints it starts from.
    seed_from: Option<String>,
    hash: String,
}

/// Builds the runner of a `copy.*` or `delta.*` step whose migration reads a server source.
/// Anything this build cannot do yields an [`Unsupported`] runner naming it.
pub(crate) fn copy_runner(
    plan: &Plan,
    user: &User,
    m: &Migration,
    base: &Path,
    step: &Step,
) -> Arc<dyn StepRunner> {
    match build_copy(plan, user, m, base, step) {
        Ok(r) => Arc::new(r),
        Err(what) => Arc::new(Unsupported::new(what)),
    }
}

fn build_copy(
    plan: &Plan,
    user: &User,
    m: &Migration,
    base: &Path,
    step: &Step,
) -> Result<RemoteCopy, String> {
    if m.since.is_some() || m.before.is_some() {
        return Err("`since`/`before` date filters on server sources".into());
    }
    let (Some(login), Some(password)) = (&m.login, &m.password) else {
        return Err(format!(
            "copy from `{}` without `login` and `password`",
            m.from
        ));
    };
    let account = |server: &crate::plan::model::ServerEndpoint, ports| Account {
        endpoint: Endpoint::from_plan(server, ports, base),
        login: login.clone(),
        password: password.clone(),
        auth: server.auth,
        base_dir: base.to_path_buf(),
        context: format!("source `{}`", m.from),
    };
    let source = match plan.sources.get(&m.from) {
        Some(Source::Imap(server)) => SourceSpec::Imap(account(server, IMAP_PORTS)),
        Some(Source::Pop3 {
            server,
            delete_after_copy,
        }) => SourceSpec::Pop3 {
            account: account(server, POP3_PORTS),
            delete_after_copy: *delete_after_copy,
        },
        _ => return Err(format!("copy from `{}`: not a server source", m.from)),
    };
    let target = match &plan.target {
        Target::Maildir { path } => TargetSpec::Maildir(base.join(path).join(&user.email)),
        Target::Imap(server) => {
            let Some(tl) = &user.target_login else {
                return Err(format!(
                    "copy into the imap target for {} without `target_login`",
                    user.email
                ));
            };
            TargetSpec::Imap(Account {
                endpoint: Endpoint::from_plan(server, IMAP_PORTS, base),
                login: tl.login.clone(),
                password: tl.password.clone(),
                auth: server.auth,
                base_dir: base.to_path_buf(),
                context: format!("target_login of {}", user.email),
            })
        }
        Target::M365 { .. } => return Err("copy into an m365 target".into()),
    };
    let mapper = FolderMapper::new(&m.folders, TargetNames::imap())?;
    let into = match &m.into {
        Some(name) => name
            .split('/')
            .filter(|s| !s.is_empty() && !s.eq_ignore_ascii_case("INBOX"))
            .map(str::to_owned)
            .collect(),
        None => Vec::new(),
    };
    let max_bytes = u64::from(plan.settings.max_message_size_mb) * 1024 * 1024;
    let seed_from = (step.kind == StepKind::Delta)
        .then(|| step.id.strip_prefix("delta.").map(|s| format!("copy.{s}")))
        .flatten();
    let (source_desc, delete) = match &source {
        SourceSpec::Imap(a) => (format!("imap|{}", a.describe()), false),
        SourceSpec::Pop3 {
            account,
            delete_after_copy,
        } => (format!("pop3|{}", account.describe()), *delete_after_copy),
    };
    let target_desc = match &target {
        TargetSpec::Maildir(root) => format!("maildir|{}", root.display()),
        TargetSpec::Imap(a) => format!("imap|{}", a.describe()),
    };
    let hash = hash_parts(&[
        "copy-remote",
        &m.from,
        &source_desc,
        &delete.to_string(),
        &target_desc,
        &serde_json::to_string(&m.folders).unwrap_or_default(),
        &into.join("/"),
        &max_bytes.to_string(),
    ]);
    Ok(RemoteCopy {
        source,
        target,
        mapper,
        into,
        max_bytes,
        seed_from,
        hash,
    })
}

/// `user.*` into an imap target: the user can log in there (the mailbox exists, the
/// `target_login` password resolves and is accepted). Nothing is written.
pub(crate) fn user_runner(plan: &Plan, user: &User, base: &Path) -> Arc<dyn StepRunner> {
    let (Target::Imap(server), Some(tl)) = (&plan.target, &user.target_login) else {
        return Arc::new(Unsupported::new(format!(
            "user steps into an imap target without `target_login` ({})",
            user.email
        )));
    };
    let account = Account {
        endpoint: Endpoint::from_plan(server, IMAP_PORTS, base),
        login: tl.login.clone(),
        password: tl.password.clone(),
        auth: server.auth,
        base_dir: base.to_path_buf(),
        context: format!("target_login of {}", user.email),
    };
    let hash = hash_parts(&["user-imap", &account.describe()]);
    Arc::new(UserImap { account, hash })
}

struct UserImap {
    account: Account,
    hash: String,
}

impl UserImap {
    async fn check(account: Account) -> Result<(), Failure> {
        let client = account.imap().await?;
        let _ = client.logout().await;
        Ok(())
    }
}

impl StepRunner for UserImap {
    fn config_hash(&self) -> String {
        self.hash.clone()
    }

    fn observe(&self, _ctx: &ObserveCtx<'_>) -> Result<Observation, StepError> {
        let account = self.account.clone();
        on_own_runtime(
            move || async move { Self::check(account).await.map_err(Failure::into_step) },
        )?;
        Ok(Observation {
            present: 1,
            note: Some(format!("{} can log in at the target", self.account.login)),
            ..Observation::default()
        })
    }

    fn apply<'a>(&'a self, ctx: &'a mut ApplyCtx) -> BoxFuture<'a, Result<Outcome, StepError>> {
        let account = self.account.clone();
        let mut ctx = ctx.clone();
        run_attempt(ctx.clone(), move || async move {
            Self::check(account).await?;
            ctx.commit(
                Counts {
                    skipped: 1,
                    ..Counts::default()
                },
                &[],
            )?;
            Ok(Outcome::Complete)
        })
    }
}

/// An attempt's failure: a step error, or a network error still carrying its retry hint.
enum Failure {
    Step(StepError),
    Net(NetError),
}

impl From<StepError> for Failure {
    fn from(e: StepError) -> Self {
        Failure::Step(e)
    }
}

impl From<NetError> for Failure {
    fn from(e: NetError) -> Self {
        Failure::Net(e)
    }
}

impl Failure {
    fn into_step(self) -> StepError {
        match self {
            Failure::Step(e) => e,
            Failure::Net(e) if e.is_transient() => StepError::transient(e.to_string()),
            Failure::Net(e) => StepError::permanent(e.to_string()),
        }
    }
}

/// Runs `f` to completion on a fresh current-thread runtime in a thread of its own, so it may
/// block freely (maildir fsyncs, state commits) and may be called from sync or async code
/// (`observe` is sync but called from within the walker's runtime).
fn on_own_runtime<T, F, Fut>(f: F) -> Result<T, StepError>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T, StepError>>,
{
    match std::thread::spawn(move || block_on_fresh(f)).join() {
        Ok(r) => r,
        Err(_) => Err(StepError::permanent("step thread panicked")),
    }
}

/// Blocks the current (non-runtime) thread on `f` with a fresh current-thread runtime.
fn block_on_fresh<T, F, Fut>(f: F) -> Result<T, StepError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<T, StepError>>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| StepError::permanent(format!("cannot start a runtime: {e}")))?;
    rt.block_on(f())
}

/// One apply attempt on its own thread. A transient network error with a server-suggested
/// wait sleeps that long (bounded, cancellable) before reporting, so the walker's retry does
/// not hit a throttling server early.
fn run_attempt<F, Fut>(ctx: ApplyCtx, f: F) -> BoxFuture<'static, Result<Outcome, StepError>>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<Outcome, Failure>>,
{
    Box::pin(async move {
        let task = tokio::task::spawn_blocking(move || {
            block_on_fresh(move || async move {
                match f().await {
                    Ok(o) => Ok(o),
                    Err(Failure::Net(e)) if e.is_transient() => {
                        if let Some(wait) = e.retry_after() {
                            tokio::select! {
                                _ = tokio::time::sleep(wait.min(MAX_RETRY_AFTER)) => {}
                                _ = ctx.cancel_token().cancelled() => {}
                            }
                        }
                        Err(StepError::transient(e.to_string()))
                    }
                    Err(other) => Err(other.into_step()),
                }
            })
        });
        match task.await {
            Ok(r) => r,
            Err(e) => Err(StepError::permanent(format!("step task failed: {e}"))),
        }
    })
}

/// The per-folder IMAP checkpoint.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
struct FolderCheckpoint {
    uidvalidity: u32,
    last_uid: u32,
}

/// What the report shows of a message too large to copy.
#[derive(Debug, Serialize)]
struct SkippedRecord<'a> {
    folder: &'a str,
    uid: &'a str,
    size: u64,
    subject: Option<String>,
}

/// A source message as seen before downloading it.
#[derive(Debug)]
struct Meta {
    uid: u32,
    size: u64,
    message_id: Option<String>,
    subject: Option<String>,
}

fn meta_of(f: FetchedMessage) -> Meta {
    Meta {
        uid: f.uid,
        size: f.size.unwrap_or(f.message.len() as u64),
        message_id: f.message.message_id(),
        subject: f.message.subject(),
    }
}

/// The target side of a copy, with per-folder dedupe.
enum Sink {
    Maildir(MaildirTarget),
    Imap(Box<ImapSink>),
}

struct ImapSink {
    client: ImapClient,
    delimiter: char,
    /// Dedupe keys per target wire name, loaded on first use of the folder.
    index: HashMap<String, HashSet<DedupeKey>>,
}

/// A maildir folder for target segments. `.` and `/` cannot appear in a Maildir++ segment;
/// they become `_` rather than silently adding hierarchy levels.
fn maildir_folder(segments: &[String]) -> Result<FolderPath, StepError> {
    let clean: Vec<String> = segments
        .iter()
        .map(|s| {
            s.chars()
                .map(|c| {
                    if c == '.' || c == '/' || c.is_control() {
                        '_'
                    } else {
                        c
                    }
                })
                .collect()
        })
        .collect();
    FolderPath::new(clean).map_err(|e| StepError::permanent(e.to_string()))
}

impl Sink {
    async fn open(spec: &TargetSpec) -> Result<Sink, Failure> {
        match spec {
            TargetSpec::Maildir(root) => Ok(Sink::Maildir(
                MaildirTarget::open(root).map_err(|e| StepError::permanent(e.to_string()))?,
            )),
            TargetSpec::Imap(account) => {
                let mut client = account.imap().await?;
                let delimiter = client
                    .list()
                    .await?
                    .iter()
                    .find_map(|b| b.delimiter)
                    .unwrap_or('/');
                Ok(Sink::Imap(Box::new(ImapSink {
                    client,
                    delimiter,
                    index: HashMap::new(),
                })))
            }
        }
    }

    /// Makes sure the folder exists and its dedupe index is loaded.
    async fn prepare(&mut self, folder: &[String]) -> Result<(), Failure> {
        match self {
            Sink::Maildir(_) => Ok(()),
            Sink::Imap(s) => {
                let wire = crate::connectors::imap::folders::target_wire_name(folder, s.delimiter);
                if s.index.contains_key(&wire) {
                    return Ok(());
                }
                if wire != "INBOX" {
                    s.client.create(&wire).await?;
                }
                let keys = imap_keys(&mut s.client, &wire).await?;
                s.index.insert(wire, keys);
                Ok(())
            }
        }
    }

    async fn contains(&mut self, folder: &[String], key: &DedupeKey) -> Result<bool, Failure> {
        match self {
            Sink::Maildir(t) => Ok(t
                .contains(&maildir_folder(folder)?, key)
                .map_err(|e| StepError::permanent(e.to_string()))?),
            Sink::Imap(s) => {
                let wire = crate::connectors::imap::folders::target_wire_name(folder, s.delimiter);
                Ok(s.index.get(&wire).is_some_and(|k| k.contains(key)))
            }
        }
    }

    /// Stores the message unless its key is already in the folder; `true` when written.
    /// Returns only once the target acknowledged it (fsync / tagged OK).
    async fn append(
        &mut self,
        folder: &[String],
        message: &RawMessage,
        cancel: &CancellationToken,
    ) -> Result<bool, Failure> {
        let mut out = self
            .append_batch(folder, std::slice::from_ref(message), cancel)
            .await;
        out.pop()
            .unwrap_or_else(|| Err(StepError::transient("append was cancelled").into()))
    }

    /// Stores each message unless its key is already in the folder, in order. One result per
    /// settled message: `Ok(true)` written and acknowledged, `Ok(false)` already there, `Err`
    /// refused. The list stops early at a failure that ends the session (its entry is the
    /// last); the messages after it are unknown. A throttling reply waits the suggested time
    /// (cancellable) and sends the message again: throttling slows a copy, it does not fail it.
    async fn append_batch(
        &mut self,
        folder: &[String],
        messages: &[RawMessage],
        cancel: &CancellationToken,
    ) -> Vec<Result<bool, Failure>> {
        match self {
            Sink::Maildir(t) => {
                let mut out = Vec::with_capacity(messages.len());
                let dir = match maildir_folder(folder) {
                    Ok(d) => d,
                    Err(e) => return vec![Err(e.into())],
                };
                for m in messages {
                    match t.append(&dir, m) {
                        Ok(o) => out.push(Ok(matches!(o, AppendOutcome::Appended { .. }))),
                        Err(e) => {
                            out.push(Err(StepError::permanent(e.to_string()).into()));
                            break;
                        }
                    }
                }
                out
            }
            Sink::Imap(s) => s.append_batch(folder, messages, cancel).await,
        }
    }
    async fn close(self) {
        if let Sink::Imap(s) = self {
            let _ = s.client.logout().await;
        }
    }
}

impl ImapSink {
    async fn append_batch(
        &mut self,
        folder: &[String],
        messages: &[RawMessage],
        cancel: &CancellationToken,
    ) -> Vec<Result<bool, Failure>> {
        let wire = crate::connectors::imap::folders::target_wire_name(folder, self.delimiter);
        let index = self.index.entry(wire.clone()).or_default();
        let keys: Vec<DedupeKey> = messages.iter().map(RawMessage::dedupe_key).collect();
        let mut out: Vec<Option<Result<bool, Failure>>> = Vec::with_capacity(messages.len());
        let mut pending: Vec<usize> = Vec::new();
        let mut batch_keys = HashSet::new();
        for (i, key) in keys.iter().enumerate() {
            // Twice in one batch counts as already there the second time.
            if index.contains(key) || !batch_keys.insert(key.clone()) {
                out.push(Some(Ok(false)));
            } else {
                out.push(None);
                pending.push(i);
            }
        }
        let mut throttled_since: Option<std::time::Instant> = None;
        let mut backoff = Duration::from_secs(1);
        'send: while !pending.is_empty() {
            let refs: Vec<&RawMessage> = pending.iter().map(|&i| &messages[i]).collect();
            let answers = match self.client.append_all(&wire, &refs).await {
                Ok(a) => a,
                Err(e) => {
                    out[pending[0]] = Some(Err(e.into()));
                    break;
                }
            };
            let mut retry = Vec::new();
            let mut wait = None;
            let mut progressed = false;
            let answered = answers.len();
            for (&i, answer) in pending.iter().zip(answers) {
                match answer {
                    Ok(_) => {
                        self.index.get_mut(&wire).map(|k| k.insert(keys[i].clone()));
                        out[i] = Some(Ok(true));
                        progressed = true;
                    }
                    Err(NetError::Throttled { retry_after, .. }) => {
                        // Without a suggested wait, back off adaptively: doubling per
                        // consecutive throttled round.
                        let w = retry_after.unwrap_or(backoff);
                        wait = Some(wait.unwrap_or(Duration::ZERO).max(w));
                        retry.push(i);
                    }
                    Err(e) => {
                        let ends_session = !matches!(e, NetError::Rejected { .. });
                        out[i] = Some(Err(e.into()));
                        if ends_session {
                            break 'send;
                        }
                    }
                }
            }
            if answered < pending.len() {
                break;
            }
            let Some(wait) = wait else { break };
            if progressed {
                throttled_since = None;
                backoff = Duration::from_secs(1);
            }
            let since = *throttled_since.get_or_insert_with(std::time::Instant::now);
            if since.elapsed() > MAX_THROTTLED {
                let i = retry[0];
                out[i] = Some(Err(StepError::transient(format!(
                    "the target kept throttling for {} s",
                    since.elapsed().as_secs()
                ))
                .into()));
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(wait.min(MAX_RETRY_AFTER)) => {}
                _ = cancel.cancelled() => break,
            }
            backoff = (backoff * 2).min(Duration::from_secs(60));
            pending = retry;
        }
        // Settled entries up to the first unsettled one; what follows it is unknown.
        out.into_iter().map_while(|r| r).collect()
    }
}

/// The dedupe keys of an IMAP folder: Message-IDs from a header-only fetch, and content
/// hashes of the messages without one (those bodies must be downloaded).
async fn imap_keys(client: &mut ImapClient, wire: &str) -> Result<HashSet<DedupeKey>, Failure> {
    let st = client.examine(wire).await?;
    let mut keys = HashSet::new();
    if st.exists == 0 {
        return Ok(keys);
    }
    let mut without_id = Vec::new();
    {
        let mut f = client.uid_fetch_headers("1:*").await?;
        while let Some(m) = f.next().await? {
            match m.message.message_id() {
                Some(id) => {
                    keys.insert(DedupeKey::MessageId(id));
                }
                None => without_id.push(m.uid),
            }
        }
    }
    for set in uid_sets(&without_id) {
        let mut f = client.uid_fetch(&set).await?;
        while let Some(m) = f.next().await? {
            keys.insert(m.message.dedupe_key());
        }
    }
    Ok(keys)
}

/// Sorted UIDs as compact UID sets (`1:4,7,9:10`), at most [`CHUNK`] ranges per set so a
/// command line stays short.
fn uid_sets(uids: &[u32]) -> Vec<String> {
    let mut sorted = uids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut ranges: Vec<(u32, u32)> = Vec::new();
    for u in sorted {
        match ranges.last_mut() {
            Some((_, end)) if u == end.saturating_add(1) => *end = u,
            _ => ranges.push((u, u)),
        }
    }
    ranges
        .chunks(CHUNK)
        .map(|c| {
            c.iter()
                .map(|(a, b)| {
                    if a == b {
                        a.to_string()
                    } else {
                        format!("{a}:{b}")
                    }
                })
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect()
}

/// What happens to one planned message.
enum Plan1 {
    Fetch,
    Done(Counts, Option<(String, String)>),
}

impl RemoteCopy {
    /// Extra checkpoints to start from (a delta step: its copy step's), consulted where the
    /// step has none of its own; the step's own always win.
    fn start_checkpoints(&self, ctx: &ApplyCtx) -> Result<BTreeMap<String, Vec<u8>>, StepError> {
        self.seed(|id| ctx.checkpoints_of(id))
    }

    /// The seed checkpoints, read from the store by `checkpoints_of`: shared by apply and
    /// observe so `plan` counts a delta from the same place apply starts it.
    fn seed(
        &self,
        checkpoints_of: impl FnOnce(&str) -> Result<BTreeMap<String, Vec<u8>>, StepError>,
    ) -> Result<BTreeMap<String, Vec<u8>>, StepError> {
        match &self.seed_from {
            Some(copy) => {
                let mut seed = checkpoints_of(copy)?;
                seed.retain(|k, _| !k.starts_with("skipped:"));
                Ok(seed)
            }
            None => Ok(BTreeMap::new()),
        }
    }

    async fn run(self, mut ctx: ApplyCtx) -> Result<Outcome, Failure> {
        let start = self.start_checkpoints(&ctx)?;
        let mut sink = Sink::open(&self.target).await?;
        let finished = match &self.source {
            SourceSpec::Imap(account) => {
                let mut src = account.imap().await?;
                let boxes = src.list().await?;
                let mut finished = true;
                for mailbox in &boxes {
                    let Some(mapped) = self.mapper.map(mailbox) else {
                        continue;
                    };
                    if !self
                        .copy_folder(&mut src, &mut sink, &mapped, &mut ctx, &start)
                        .await?
                    {
                        finished = false;
                        break;
                    }
                }
                if finished {
                    let _ = src.logout().await;
                }
                finished
            }
            SourceSpec::Pop3 {
                account,
                delete_after_copy,
            } => {
                self.copy_pop3(account, *delete_after_copy, &mut sink, &mut ctx, &start)
                    .await?
            }
        };
        sink.close().await;
        Ok(if finished {
            Outcome::Complete
        } else {
            Outcome::Interrupted
        })
    }

    /// Copies one IMAP folder; `Ok(false)` when cancelled.
    async fn copy_folder(
        &self,
        src: &mut ImapClient,
        sink: &mut Sink,
        mapped: &MappedFolder,
        ctx: &mut ApplyCtx,
        start: &BTreeMap<String, Vec<u8>>,
    ) -> Result<bool, Failure> {
        if ctx.is_cancelled() {
            return Ok(false);
        }
        let key = format!("imap:{}", mapped.source);
        let st = src.examine(&mapped.source).await?;
        let uidvalidity = st.uid_validity.unwrap_or(0);
        let prev: Option<FolderCheckpoint> = ctx
            .checkpoint(&key)
            .or_else(|| start.get(&key).map(Vec::as_slice))
            .and_then(|v| serde_json::from_slice(v).ok());
        let after = match prev {
            Some(c) if c.uidvalidity == uidvalidity && uidvalidity != 0 => c.last_uid,
            _ => 0,
        };
        if st.exists == 0
            || st
                .uid_next
                .is_some_and(|next| after.saturating_add(1) >= next)
        {
            return Ok(true);
        }
        let mut metas = Vec::new();
        {
            let mut f = src
                .uid_fetch_headers(&format!("{}:*", after.saturating_add(1)))
                .await?;
            while let Some(m) = f.next().await? {
                // `n:*` also returns the highest message when n is beyond it.
                if m.uid > after {
                    metas.push(meta_of(m));
                }
            }
        }
        metas.sort_by_key(|m| m.uid);
        metas.dedup_by_key(|m| m.uid);
        if metas.is_empty() {
            return Ok(true);
        }
        sink.prepare(&mapped.target).await?;
        let folder_name = utf7::decode(&mapped.source).unwrap_or_else(|_| mapped.source.clone());
        for chunk in metas.chunks(CHUNK) {
            let mut plans = Vec::with_capacity(chunk.len());
            for m in chunk {
                let p = if m.size > self.max_bytes {
                    let record = SkippedRecord {
                        folder: &folder_name,
                        uid: &m.uid.to_string(),
                        size: m.size,
                        subject: m.subject.clone(),
                    };
                    Plan1::Done(
                        skipped(),
                        Some((
                            format!("skipped:{}:{}", mapped.source, m.uid),
                            serde_json::to_string(&record).unwrap_or_default(),
                        )),
                    )
                } else if let Some(id) = &m.message_id {
                    if sink
                        .contains(&mapped.target, &DedupeKey::MessageId(id.clone()))
                        .await?
                    {
                        Plan1::Done(skipped(), None)
                    } else {
                        Plan1::Fetch
                    }
                } else {
                    Plan1::Fetch
                };
                plans.push(p);
            }
            let mut state = Progress {
                key: &key,
                uidvalidity,
                uids: chunk.iter().map(|m| m.uid).collect(),
                plans,
                cursor: 0,
            };
            state.advance(ctx)?;
            let wanted: Vec<u32> = state
                .uids
                .iter()
                .zip(&state.plans)
                .filter(|(_, p)| matches!(p, Plan1::Fetch))
                .map(|(u, _)| *u)
                .collect();
            for set in uid_sets(&wanted) {
                let mut f = src.uid_fetch(&set).await?;
                let mut batch: Vec<(usize, RawMessage)> = Vec::new();
                let mut batch_bytes = 0u64;
                loop {
                    if ctx.is_cancelled() {
                        return Ok(false);
                    }
                    let next = f.next().await?;
                    let end = next.is_none();
                    if let Some(m) = next {
                        let Ok(i) = state.uids.binary_search(&m.uid) else {
                            continue;
                        };
                        if !matches!(state.plans[i], Plan1::Fetch) {
                            continue;
                        }
                        batch_bytes += m.message.len() as u64;
                        batch.push((i, m.message));
                    }
                    if batch.is_empty()
                        || !(end || batch.len() >= BATCH_MESSAGES || batch_bytes >= BATCH_BYTES)
                    {
                        if end {
                            break;
                        }
                        continue;
                    }
                    let (slots, messages): (Vec<usize>, Vec<RawMessage>) =
                        std::mem::take(&mut batch).into_iter().unzip();
                    batch_bytes = 0;
                    let results = sink
                        .append_batch(&mapped.target, &messages, ctx.cancel_token())
                        .await;
                    let mut failure = None;
                    for ((i, message), result) in slots.iter().zip(&messages).zip(results) {
                        match result {
                            Ok(written) => {
                                state.plans[*i] =
                                    Plan1::Done(written_counts(written, message), None);
                            }
                            Err(e) => {
                                failure.get_or_insert(e);
                            }
                        }
                    }
                    // Commits what the target acknowledged before reporting any failure.
                    state.advance(ctx)?;
                    if let Some(e) = failure {
                        return Err(e);
                    }
                    if end {
                        break;
                    }
                }
            }
            // Messages expunged at the source between planning and fetching are gone:
            // nothing to copy, but the checkpoint may pass them.
            for p in &mut state.plans {
                if matches!(p, Plan1::Fetch) {
                    *p = Plan1::Done(Counts::default(), None);
                }
            }
            state.advance(ctx)?;
        }
        Ok(true)
    }

    /// Copies a POP3 maildrop into the `into` folder; `Ok(false)` when cancelled.
    async fn copy_pop3(
        &self,
        account: &Account,
        delete_after_copy: bool,
        sink: &mut Sink,
        ctx: &mut ApplyCtx,
        start: &BTreeMap<String, Vec<u8>>,
    ) -> Result<bool, Failure> {
        let mut client = account.pop3().await?;
        let messages = client.messages().await?;
        let mut prepared = false;
        let mut finished = true;
        for m in messages {
            let key = format!("pop3:{}", m.uid);
            if ctx.checkpoint(&key).is_some() || start.contains_key(&key) {
                // Copied (or skipped) earlier. Deleting is only for copied ones, and only
                // now that the copy is known to be committed.
                if delete_after_copy
                    && ctx.checkpoint(&key).or(start.get(&key).map(Vec::as_slice)) == Some(b"1")
                {
                    client.dele(m.number).await?;
                }
                continue;
            }
            if ctx.is_cancelled() {
                finished = false;
                break;
            }
            if m.size > self.max_bytes {
                let head = client.top(m.number, 0).await?;
                let record = SkippedRecord {
                    folder: "INBOX",
                    uid: &m.uid,
                    size: m.size,
                    subject: RawMessage::new(head).subject(),
                };
                let rec = serde_json::to_string(&record).unwrap_or_default();
                let skipped_key = format!("skipped:pop3:{}", m.uid);
                ctx.commit(
                    skipped(),
                    &[
                        (key.as_str(), b"skipped".as_slice()),
                        (skipped_key.as_str(), rec.as_bytes()),
                    ],
                )?;
                continue;
            }
            if !prepared {
                sink.prepare(&self.into).await?;
                prepared = true;
            }
            let message = RawMessage::new(client.retr(m.number).await?);
            let received = pop3_received(&message);
            let message = message.with_internal_date(received);
            let written = sink
                .append(&self.into, &message, ctx.cancel_token())
                .await?;
            let delta = written_counts(written, &message);
            ctx.commit(delta, &[(key.as_str(), b"1".as_slice())])?;
            if delete_after_copy {
                client.dele(m.number).await?;
            }
        }
        // QUIT commits the deletions (of committed copies only); without it none happen.
        client.quit().await?;
        Ok(finished)
    }

    async fn observe_async(
        self,
        checkpoints: BTreeMap<String, Vec<u8>>,
    ) -> Result<Observation, Failure> {
        let mut obs = Observation::default();
        let mut oversized = 0u64;
        match &self.source {
            SourceSpec::Imap(account) => {
                let mut src = account.imap().await?;
                for mailbox in src.list().await? {
                    let mapped = match self.mapper.route(&mailbox) {
                        Route::Copy(mapped) => mapped,
                        Route::Excluded => {
                            // Best effort: a folder the plan leaves out must not block the
                            // preview of the ones it copies.
                            let messages = src.examine(&mailbox.name).await.ok();
                            obs.excluded.push(ExcludedFolder {
                                source: decode_lossy(&mailbox.name),
                                messages: messages.map(|st| u64::from(st.exists)),
                            });
                            continue;
                        }
                        Route::Container => continue,
                    };
                    let mut folder = FolderObservation {
                        source: decode_lossy(&mapped.source),
                        target: target_display(&mapped.target),
                        ..FolderObservation::default()
                    };
                    let st = src.examine(&mapped.source).await?;
                    let prev: Option<FolderCheckpoint> = checkpoints
                        .get(&format!("imap:{}", mapped.source))
                        .and_then(|v| serde_json::from_slice(v).ok());
                    let after = match prev {
                        Some(c) if Some(c.uidvalidity) == st.uid_validity => c.last_uid,
                        _ => 0,
                    };
                    if st.exists > 0 {
                        let mut newer = 0u64;
                        let mut f = src
                            .uid_fetch_headers(&format!("{}:*", after.saturating_add(1)))
                            .await?;
                        while let Some(m) = f.next().await? {
                            if m.uid <= after {
                                continue;
                            }
                            newer += 1;
                            let size = m.size.unwrap_or(0);
                            if size > self.max_bytes {
                                oversized += 1;
                            } else {
                                folder.items += 1;
                                folder.bytes += size;
                            }
                        }
                        folder.present = u64::from(st.exists).saturating_sub(newer);
                    }
                    obs.items += folder.items;
                    obs.bytes += folder.bytes;
                    obs.present += folder.present;
                    obs.folders.push(folder);
                }
                let _ = src.logout().await;
            }
            SourceSpec::Pop3 { account, .. } => {
                let mut client = account.pop3().await?;
                for m in client.messages().await? {
                    if checkpoints.contains_key(&format!("pop3:{}", m.uid)) {
                        obs.present += 1;
                    } else if m.size > self.max_bytes {
                        oversized += 1;
                    } else {
                        obs.items += 1;
                        obs.bytes += m.size;
                    }
                }
                let _ = client.quit().await;
                // POP3 reaches the inbox only.
                obs.folders.push(FolderObservation {
                    source: "INBOX".into(),
                    target: target_display(&self.into),
                    items: obs.items,
                    bytes: obs.bytes,
                    present: obs.present,
                });
            }
        }
        obs.sort_folders();
        if oversized > 0 {
            obs.note = Some(format!(
                "{oversized} message(s) over max_message_size_mb will be skipped"
            ));
        }
        Ok(obs)
    }
}

/// Target segments as shown to people: `/`-joined, the inbox as `INBOX`.
fn target_display(segments: &[String]) -> String {
    if segments.is_empty() {
        "INBOX".into()
    } else {
        segments.join("/")
    }
}

/// When a POP3 message reached the mailbox (POP3 has no INTERNALDATE): the date of its
/// topmost `Received:` field (the final delivery), else its `Date:`. Without it every
/// migrated message would be dated "now", and clients sort by that date.
fn pop3_received(message: &RawMessage) -> Option<std::time::SystemTime> {
    let received = message.header("Received").and_then(|v| {
        let v = String::from_utf8_lossy(&v).into_owned();
        v.rsplit_once(';')
            .and_then(|(_, d)| crate::connectors::mail::date::parse_rfc5322(d))
    });
    received.or_else(|| {
        message.header("Date").and_then(|v| {
            crate::connectors::mail::date::parse_rfc5322(&String::from_utf8_lossy(&v))
        })
    })
}

/// The counts of one appended message: copied, or already at the target.
fn written_counts(written: bool, message: &RawMessage) -> Counts {
    if written {
        Counts {
            items: 1,
            bytes: message.len() as u64,
            skipped: 0,
        }
    } else {
        skipped()
    }
}

fn skipped() -> Counts {
    Counts {
        skipped: 1,
        ..Counts::default()
    }
}

/// One chunk's progress: commits, in UID order, every finished message up to the first
/// unfinished one, with the checkpoint just past it. Servers answer FETCH in UID order, so
/// this commits each message right after the target acknowledged it; were one out of order,
/// its checkpoint would wait for the earlier ones (and a crash re-offer it to dedupe).
struct Progress<'a> {
    key: &'a str,
    uidvalidity: u32,
    uids: Vec<u32>,
    plans: Vec<Plan1>,
    cursor: usize,
}

impl Progress<'_> {
    fn advance(&mut self, ctx: &mut ApplyCtx) -> Result<(), StepError> {
        let mut delta = Counts::default();
        let mut extra: Vec<(String, String)> = Vec::new();
        let mut last = None;
        while self.cursor < self.plans.len() {
            let Plan1::Done(c, rec) = &mut self.plans[self.cursor] else {
                break;
            };
            delta.items += c.items;
            delta.bytes += c.bytes;
            delta.skipped += c.skipped;
            if let Some(r) = rec.take() {
                extra.push(r);
            }
            last = Some(self.uids[self.cursor]);
            self.cursor += 1;
        }
        let Some(last_uid) = last else {
            return Ok(());
        };
        let cp = serde_json::to_string(&FolderCheckpoint {
            uidvalidity: self.uidvalidity,
            last_uid,
        })
        .unwrap_or_default();
        let mut pairs: Vec<(&str, &[u8])> = vec![(self.key, cp.as_bytes())];
        pairs.extend(extra.iter().map(|(k, v)| (k.as_str(), v.as_bytes())));
        ctx.commit(delta, &pairs)
    }
}

impl StepRunner for RemoteCopy {
    fn config_hash(&self) -> String {
        self.hash.clone()
    }

    fn observe(&self, ctx: &ObserveCtx<'_>) -> Result<Observation, StepError> {
        let this = self.clone();
        // As in apply: the step's own checkpoints win over the seed's.
        let mut checkpoints = self.seed(|id| ctx.checkpoints_of(id))?;
        checkpoints.extend(ctx.checkpoints.clone());
        on_own_runtime(move || async move {
            this.observe_async(checkpoints)
                .await
                .map_err(Failure::into_step)
        })
    }

    fn apply<'a>(&'a self, ctx: &'a mut ApplyCtx) -> BoxFuture<'a, Result<Outcome, StepError>> {
        let this = self.clone();
        let ctx = ctx.clone();
        run_attempt(ctx.clone(), move || this.run(ctx))
    }
}

/// `verify.*` of a user whose mail comes from servers: every source message within the size
/// limit is present (by [`DedupeKey`]) in its mapped target folder. Read-only on both sides,
/// so `plan` can show what is still missing.
pub(crate) fn verify_runner(
    plan: &Plan,
    user: &User,
    base: &Path,
    steps: &[Step],
) -> Arc<dyn StepRunner> {
    let mut copies = Vec::new();
    for (i, m) in user.migrate.iter().enumerate() {
        let Some(step) = steps
            .iter()
            .find(|s| s.kind == StepKind::Copy && s.migration == Some(i))
        else {
            return Arc::new(Unsupported::new("verify without its copy steps"));
        };
        match build_copy(plan, user, m, base, step) {
            Ok(c) => copies.push(c),
            Err(what) => return Arc::new(Unsupported::new(format!("verify of {what}"))),
        }
    }
    let mut parts = vec!["verify-remote".to_string()];
    parts.extend(copies.iter().map(|c| c.hash.clone()));
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    Arc::new(RemoteVerify {
        hash: hash_parts(&parts),
        copies,
    })
}

struct RemoteVerify {
    copies: Vec<RemoteCopy>,
    hash: String,
}

/// Per target folder: (checked, missing).
type Tally = BTreeMap<String, (u64, u64)>;

impl RemoteCopy {
    /// Dedupe keys of every source message within the size limit, by target folder.
    async fn source_keys(&self) -> Result<BTreeMap<Vec<String>, Vec<DedupeKey>>, Failure> {
        let mut out: BTreeMap<Vec<String>, Vec<DedupeKey>> = BTreeMap::new();
        match &self.source {
            SourceSpec::Imap(account) => {
                let mut src = account.imap().await?;
                for mailbox in src.list().await? {
                    let Some(mapped) = self.mapper.map(&mailbox) else {
                        continue;
                    };
                    if src.examine(&mapped.source).await?.exists == 0 {
                        continue;
                    }
                    let keys = out.entry(mapped.target.clone()).or_default();
                    let mut without_id = Vec::new();
                    {
                        let mut f = src.uid_fetch_headers("1:*").await?;
                        while let Some(m) = f.next().await? {
                            if m.size.unwrap_or(0) > self.max_bytes {
                                continue;
                            }
                            match m.message.message_id() {
                                Some(id) => keys.push(DedupeKey::MessageId(id)),
                                None => without_id.push(m.uid),
                            }
                        }
                    }
                    for set in uid_sets(&without_id) {
                        let mut f = src.uid_fetch(&set).await?;
                        while let Some(m) = f.next().await? {
                            keys.push(m.message.dedupe_key());
                        }
                    }
                }
                let _ = src.logout().await;
            }
            SourceSpec::Pop3 { account, .. } => {
                let mut client = account.pop3().await?;
                let keys = out.entry(self.into.clone()).or_default();
                for m in client.messages().await? {
                    if m.size > self.max_bytes {
                        continue;
                    }
                    let head = RawMessage::new(client.top(m.number, 0).await?);
                    keys.push(match head.message_id() {
                        Some(id) => DedupeKey::MessageId(id),
                        None => RawMessage::new(client.retr(m.number).await?).dedupe_key(),
                    });
                }
                let _ = client.quit().await;
            }
        }
        Ok(out)
    }
}

/// Target keys of one folder, read-only: a missing folder is empty.
async fn target_keys(
    target: &TargetSpec,
    client: &mut Option<(ImapClient, char)>,
    folder: &[String],
) -> Result<HashSet<DedupeKey>, Failure> {
    match target {
        TargetSpec::Maildir(root) => {
            let mut keys = HashSet::new();
            if let Ok(md) = Maildir::open(root) {
                let f = md.folder(&maildir_folder(folder)?);
                if f.dir.is_dir() {
                    for e in md
                        .entries(&f)
                        .map_err(|e| StepError::permanent(e.to_string()))?
                    {
                        let m = e.read().map_err(|e| StepError::permanent(e.to_string()))?;
                        keys.insert(m.dedupe_key());
                    }
                }
            }
            Ok(keys)
        }
        TargetSpec::Imap(account) => {
            if client.is_none() {
                let mut c = account.imap().await?;
                let d = c
                    .list()
                    .await?
                    .iter()
                    .find_map(|b| b.delimiter)
                    .unwrap_or('/');
                *client = Some((c, d));
            }
            let Some((c, d)) = client.as_mut() else {
                return Ok(HashSet::new());
            };
            let wire = crate::connectors::imap::folders::target_wire_name(folder, *d);
            match imap_keys(c, &wire).await {
                // The folder does not exist (yet): nothing of it is at the target.
                Err(Failure::Net(NetError::Rejected { .. })) => Ok(HashSet::new()),
                other => other,
            }
        }
    }
}

impl RemoteVerify {
    async fn tally(copies: Vec<RemoteCopy>) -> Result<Tally, Failure> {
        let mut tally = Tally::new();
        for copy in &copies {
            let mut client = None;
            for (folder, keys) in copy.source_keys().await? {
                let present = target_keys(&copy.target, &mut client, &folder).await?;
                let name = if folder.is_empty() {
                    "INBOX".to_string()
                } else {
                    folder.join("/")
                };
                let entry = tally.entry(name).or_default();
                entry.0 += keys.len() as u64;
                entry.1 += keys.iter().filter(|k| !present.contains(k)).count() as u64;
            }
            if let Some((c, _)) = client {
                let _ = c.logout().await;
            }
        }
        Ok(tally)
    }
}

impl StepRunner for RemoteVerify {
    fn config_hash(&self) -> String {
        self.hash.clone()
    }

    fn observe(&self, _ctx: &ObserveCtx<'_>) -> Result<Observation, StepError> {
        let copies = self.copies.clone();
        let tally = on_own_runtime(move || async move {
            Self::tally(copies).await.map_err(Failure::into_step)
        })?;
        let checked: u64 = tally.values().map(|(n, _)| n).sum();
        let missing: u64 = tally.values().map(|(_, m)| m).sum();
        Ok(Observation {
            items: checked,
            present: checked - missing,
            note: Some(format!(
                "{missing} of {checked} messages not yet at the target"
            )),
            ..Observation::default()
        })
    }

    fn apply<'a>(&'a self, ctx: &'a mut ApplyCtx) -> BoxFuture<'a, Result<Outcome, StepError>> {
        let copies = self.copies.clone();
        let mut ctx = ctx.clone();
        run_attempt(ctx.clone(), move || async move {
            let tally = Self::tally(copies).await?;
            let missing: Vec<String> = tally
                .iter()
                .filter(|(_, (_, m))| *m > 0)
                .map(|(f, (n, m))| format!("{f}: {m} of {n} missing"))
                .collect();
            if !missing.is_empty() {
                return Err(StepError::permanent(format!(
                    "verify: messages missing at the target ({})",
                    missing.join(", ")
                ))
                .into());
            }
            ctx.commit(
                Counts {
                    items: tally.values().map(|(n, _)| n).sum(),
                    ..Counts::default()
                },
                &[],
            )?;
            Ok(Outcome::Complete)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_sets_are_compact() {
        assert_eq!(uid_sets(&[5, 1, 2, 3, 7, 9, 10]), vec!["1:3,5,7,9:10"]);
        assert!(uid_sets(&[]).is_empty());
        assert_eq!(
            uid_sets(&[u32::MAX, u32::MAX - 1]),
            vec![format!("{}:{}", u32::MAX - 1, u32::MAX)]
        );
        let many: Vec<u32> = (0..1000).map(|i| i * 2).collect();
        assert_eq!(uid_sets(&many).len(), 1000usize.div_ceil(CHUNK));
    }

    #[test]
    fn maildir_folder_never_adds_levels() {
        let f = maildir_folder(&["a.b".into(), "c/d".into()]).unwrap();
        assert_eq!(f.segments(), ["a_b", "c_d"]);
        assert!(maildir_folder(&[]).unwrap().is_inbox());
    }

    #[test]
    fn secret_label_hides_inline_values() {
        assert_eq!(secret_label(&SecretRef::Inline("hunter2".into())), "inline");
    }
}
