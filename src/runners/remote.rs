//! Runners for mail on servers: `copy.*` and `delta.*` steps from `imap` and `pop3` sources
//! into a `maildir`, `imap` or `m365` target (Exchange Online over IMAP, see [`super::m365`]),
//! and `user.*` steps of an `imap` or `m365` target.
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
//! A date window (`since`/`before`, see [`DateWindow`]) selects by received date: IMAP by
//! `UID SEARCH SINCE/BEFORE`, then each candidate's INTERNALDATE; POP3 by the headers of
//! `TOP n 0` ([`pop3_received`]). Mail outside it is neither copied nor counted, and
//! `verify.*` compares only mail inside it. The IMAP checkpoint may pass it; a POP3 message
//! outside it is recorded as `pop3:<uidl>` = `outside` so no later pass asks for its headers
//! again (and `delete_after_copy` never deletes it).
//!
//! Dedupe on the target is per folder by [`DedupeKey`]: before copying into a folder the
//! runner reads the target folder's Message-IDs (and hashes the few messages without one);
//! source messages whose Message-ID is already there are not even downloaded.
//!
//! Each attempt runs on its own blocking thread with a current-thread runtime: the target
//! (maildir writes, fsyncs) and [`ApplyCtx::commit`] block, and the walker's workers must
//! not.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::skipped::{self, SkippedMessage};
use super::tally::Tally;
use crate::connectors::imap::folders::decode_lossy;
use crate::connectors::imap::{
    FetchedMessage, FolderMapper, ImapClient, MailboxStatus, MappedFolder, Route, TargetNames,
    PORTS as IMAP_PORTS,
};
use crate::connectors::mail::{
    AppendOutcome, DateWindow, DedupeKey, FolderPath, Maildir, MaildirTarget, RawMessage,
};
use crate::connectors::net::{
    reserve_connections, ConnectionSlots, Credentials, Endpoint, NetError,
};
use crate::connectors::pop3::{Pop3Client, PORTS as POP3_PORTS};
use crate::engine::hash_parts;
use crate::engine::step::{
    ApplyCtx, BoxFuture, ExcludedFolder, FolderObservation, Observation, ObserveCtx, Outcome,
    StepError, StepRunner, Unsupported,
};
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
const BATCH_BYTES: u64 = 4 << 20;

/// Folders one copy step copies at once when no `max_connections` says fewer. Providers
/// allow a handful of connections per mailbox (Exchange Online and Gmail about 15–20,
/// Dovecot's default 10 per user and IP) and several users' steps run at once.
const LANES_PER_STEP: usize = 4;

/// UIDs per `UID SEARCH`: its answer is one response line, which the connection caps at
/// 1 MiB; 65,536 UIDs of up to ten digits stay well under that.
const SEARCH_SPAN: u32 = 65_536;

/// The `pop3:<uidl>` checkpoint of a message outside the date window.
const POP3_OUTSIDE: &[u8] = b"outside";

/// The longest server-suggested wait honoured inside the runner; beyond it the walker's own
/// backoff takes over.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// Whether `source` is a mail server this module copies from.
pub(crate) fn is_server_source(source: Option<&Source>) -> bool {
    matches!(source, Some(Source::Imap(_) | Source::Pop3 { .. }))
}

/// A login at a server, with its secret resolved only when connecting.
#[derive(Debug, Clone)]
struct Account {
    endpoint: Endpoint,
    login: String,
    secret: AccountSecret,
    base_dir: PathBuf,
    /// Where the password is configured, for errors (`source ionos-imap`, `target_login`).
    context: String,
}

/// What proves the login.
#[derive(Debug, Clone)]
enum AccountSecret {
    /// A password (or a token issued elsewhere) referenced by the plan.
    Plan {
        reference: SecretRef,
        auth: AuthMethod,
    },
    /// The m365 target's app registration: XOAUTH2 with a token cutover fetches, shared by
    /// every mailbox and step.
    App(Arc<super::m365::AppTokens>),
}

impl Account {
    async fn credentials(&self) -> Result<Credentials, StepError> {
        match &self.secret {
            AccountSecret::Plan { reference, auth } => {
                let secret = crate::secrets::resolve(reference, &self.base_dir, false)
                    .map_err(|e| StepError::permanent(format!("{}: {e}", self.context)))?;
                Ok(match auth {
                    AuthMethod::Password => Credentials::password(&self.login, secret.expose()),
                    AuthMethod::Xoauth2 => Credentials::xoauth2(&self.login, secret.expose()),
                })
            }
            AccountSecret::App(tokens) => {
                let tokens = Arc::clone(tokens);
                let token = tokio::task::spawn_blocking(move || tokens.token())
                    .await
                    .map_err(|e| StepError::permanent(format!("token task failed: {e}")))??;
                Ok(Credentials::xoauth2(&self.login, token.expose()))
            }
        }
    }

    /// Everything but the secret's value, for config hashes.
    fn describe(&self) -> String {
        let secret = match &self.secret {
            AccountSecret::Plan { reference, auth } => {
                format!("{auth:?}|{}", secret_label(reference))
            }
            AccountSecret::App(tokens) => format!("app|{}", tokens.describe()),
        };
        format!(
            "{}|{:?}|{}|{}|{secret}",
            self.endpoint.server(),
            self.endpoint.tls,
            self.endpoint.allow_plaintext,
            self.login,
        )
    }

    /// A session counting against the server's `max_connections` (waits for a slot). For a
    /// task that holds no other connection; one holding several reserves them together
    /// ([`reserve_connections`]) and uses [`Self::imap_reserved`].
    async fn imap(&self) -> Result<ImapClient, Failure> {
        let slots = reserve_connections(&[&self.endpoint]).await;
        let mut client = self.imap_reserved().await?;
        client.hold_slots(slots);
        Ok(client)
    }

    /// A session whose connection slot the caller reserved.
    async fn imap_reserved(&self) -> Result<ImapClient, Failure> {
        let creds = self.credentials().await?;
        Ok(ImapClient::connect(&self.endpoint, &creds).await?)
    }

    /// Like [`Self::imap_reserved`]: POP3 sessions are only opened next to a target's.
    async fn pop3_reserved(&self) -> Result<Pop3Client, Failure> {
        let creds = self.credentials().await?;
        Ok(Pop3Client::connect(&self.endpoint, &creds).await?)
    }

    /// A POP3 session counting against the server's `max_connections`.
    async fn pop3(&self) -> Result<Pop3Client, Failure> {
        let slots = reserve_connections(&[&self.endpoint]).await;
        let mut client = self.pop3_reserved().await?;
        client.hold_slots(slots);
        Ok(client)
    }
}

/// The account of `user`'s mailbox at the plan's IMAP-speaking target: an `imap` target
/// needs the user's `target_login`, an `m365` target signs in with the app's token.
fn target_account(plan: &Plan, user: &User, base: &Path) -> Result<Account, String> {
    match &plan.target {
        Target::Imap(server) => {
            let Some(tl) = &user.target_login else {
                return Err(format!(
                    "the imap target for {} without `target_login`",
                    user.email
                ));
            };
            Ok(Account {
                endpoint: Endpoint::from_plan(server, IMAP_PORTS, base),
                login: tl.login.clone(),
                secret: AccountSecret::Plan {
                    reference: tl.password.clone(),
                    auth: server.auth,
                },
                base_dir: base.to_path_buf(),
                context: format!("target_login of {}", user.email),
            })
        }
        Target::M365 {
            tenant,
            initial_domain,
            auth,
            imap,
        } => {
            let endpoint = super::m365::imap_endpoint(imap.as_ref(), base);
            let tokens = super::m365::app_tokens(tenant, auth, &endpoint.host, base);
            Ok(Account {
                login: super::m365::login_for(user, initial_domain.as_deref()),
                endpoint,
                secret: AccountSecret::App(tokens),
                base_dir: base.to_path_buf(),
                context: format!("m365 mailbox of {}", user.email),
            })
        }
        Target::Maildir { .. } => Err("a maildir target over IMAP".into()),
    }
}

/// A secret reference as hashed: the reference, never an inline value (a hash of a short
/// password is guessable, and the hash is stored in state).
pub(super) fn secret_label(r: &SecretRef) -> String {
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
    /// Folders copied at once, each over its own source and target connection.
    lanes: usize,
    /// Only mail received in it is copied (and verified).
    window: Option<DateWindow>,
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
    let window = DateWindow::parse(m.since.as_deref(), m.before.as_deref())?;
    let (Some(login), Some(password)) = (&m.login, &m.password) else {
        return Err(format!(
            "copy from `{}` without `login` and `password`",
            m.from
        ));
    };
    let account = |server: &crate::plan::model::ServerEndpoint, ports| Account {
        endpoint: Endpoint::from_plan(server, ports, base),
        login: login.clone(),
        secret: AccountSecret::Plan {
            reference: password.clone(),
            auth: server.auth,
        },
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
    let (target, names) = match &plan.target {
        Target::Maildir { path } => (
            TargetSpec::Maildir(base.join(path).join(&user.email)),
            TargetNames::imap(),
        ),
        Target::Imap(_) => (
            TargetSpec::Imap(
                target_account(plan, user, base).map_err(|e| format!("copy into {e}"))?,
            ),
            TargetNames::imap(),
        ),
        // \Sent mail must land in Exchange's own "Sent Items", not a new "Sent" beside it.
        Target::M365 { .. } => (
            TargetSpec::Imap(target_account(plan, user, base)?),
            TargetNames::m365(),
        ),
    };
    let mapper = FolderMapper::new(&m.folders, names)?;
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
    let folders = serde_json::to_string(&m.folders).unwrap_or_default();
    let (delete, into_name, max) = (delete.to_string(), into.join("/"), max_bytes.to_string());
    let mut parts = vec![
        "copy-remote",
        &m.from,
        &source_desc,
        &delete,
        &target_desc,
        &folders,
        &into_name,
        &max,
    ];
    // Only when set, so the hashes of steps without a window stay what they were.
    let window_desc = window.map(|w| w.describe());
    parts.extend(window_desc.as_deref());
    let hash = hash_parts(&parts);
    let lanes = copy_lanes(&source, &target);
    Ok(RemoteCopy {
        source,
        target,
        mapper,
        into,
        max_bytes,
        seed_from,
        lanes,
        window,
        hash,
    })
}

impl TargetSpec {
    /// The endpoints a copy holds at once: this target's (if a server) and the source's.
    fn with_source<'a>(&'a self, source: &'a Account) -> Vec<&'a Endpoint> {
        match self {
            TargetSpec::Imap(target) => vec![&target.endpoint, &source.endpoint],
            TargetSpec::Maildir(_) => vec![&source.endpoint],
        }
    }
}

/// Folder lanes of one copy step: [`LANES_PER_STEP`], or fewer when a server's
/// `max_connections` is lower (one lane holds one connection to each side).
fn copy_lanes(source: &SourceSpec, target: &TargetSpec) -> usize {
    let source_limit = match source {
        SourceSpec::Imap(a) => a.endpoint.max_connections,
        SourceSpec::Pop3 { .. } => Some(1),
    };
    let target_limit = match target {
        TargetSpec::Imap(a) => a.endpoint.max_connections,
        TargetSpec::Maildir(_) => None,
    };
    [source_limit, target_limit]
        .into_iter()
        .flatten()
        .fold(LANES_PER_STEP, |lanes, limit| {
            lanes.min(limit.max(1) as usize)
        })
}

/// `user.*` into an imap or m365 target: the user's mailbox accepts the login (it exists, the
/// `target_login` password or the app's token is accepted). Nothing is written: creating an
/// m365 mailbox needs Microsoft Graph, which this build does not do.
pub(crate) fn user_runner(plan: &Plan, user: &User, base: &Path) -> Arc<dyn StepRunner> {
    let account = match target_account(plan, user, base) {
        Ok(a) => a,
        Err(what) => return Arc::new(Unsupported::new(format!("user steps into {what}"))),
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
/// Runs one copy lane to completion on this (blocking-pool) thread, with a runtime of its own
/// so the lane's blocking work (maildir fsyncs, state commits) never stalls another lane.
fn block_on_lane<T>(
    lane: impl std::future::Future<Output = Result<T, Failure>>,
) -> Result<T, Failure> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| StepError::permanent(format!("cannot start a runtime: {e}")))?;
    rt.block_on(lane)
}

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

/// A source message as seen before downloading it.
#[derive(Debug)]
struct Meta {
    uid: u32,
    size: u64,
    message_id: Option<String>,
    subject: Option<String>,
    received: Option<std::time::SystemTime>,
}

fn meta_of(f: FetchedMessage) -> Meta {
    Meta {
        uid: f.uid,
        size: f.size.unwrap_or(f.message.len() as u64),
        message_id: f.message.message_id(),
        subject: f.message.subject(),
        received: f.message.internal_date,
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
                let mut client = account.imap_reserved().await?;
                let delimiter = hierarchy_delimiter(&mut client).await?;
                Ok(Sink::Imap(Box::new(ImapSink {
                    client,
                    delimiter,
                    index: HashMap::new(),
                })))
            }
        }
    }

    /// The largest message worth sending: the plan's `max_bytes`, or less when the target
    /// announces a lower APPENDLIMIT (RFC 7889) — such mail would only be refused.
    fn size_limit(&self, max_bytes: u64) -> u64 {
        match self {
            Sink::Maildir(_) => max_bytes,
            Sink::Imap(s) => s
                .client
                .append_limit()
                .map_or(max_bytes, |limit| limit.min(max_bytes)),
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
    /// Cancelled during such a wait, the list stops early without a failure.
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
        // A failure that ended the session. Reported at the first unsettled message, which
        // may come before the one that met it: one still waiting to be sent again after a
        // throttling reply.
        let mut ended: Option<Failure> = None;
        'send: while !pending.is_empty() {
            let refs: Vec<&RawMessage> = pending.iter().map(|&i| &messages[i]).collect();
            let answers = match self.client.append_all(&wire, &refs).await {
                Ok(a) => a,
                Err(e) => {
                    ended = Some(e.into());
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
                    Err(e @ NetError::Rejected { .. }) => out[i] = Some(Err(e.into())),
                    Err(e) => {
                        ended = Some(e.into());
                        break 'send;
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
                ended = Some(
                    StepError::transient(format!(
                        "the target kept throttling for {} s",
                        since.elapsed().as_secs()
                    ))
                    .into(),
                );
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
        let mut settled: Vec<_> = out.into_iter().map_while(|r| r).collect();
        if settled.len() < messages.len() {
            settled.extend(ended.map(Err));
        }
        settled
    }
}

/// The server's hierarchy delimiter (from LIST), `/` when it names none.
async fn hierarchy_delimiter(client: &mut ImapClient) -> Result<char, Failure> {
    Ok(client
        .list()
        .await?
        .iter()
        .find_map(|b| b.delimiter)
        .unwrap_or('/'))
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

/// A folder's checkpoint: the step's own, else the one it starts from (a delta's copy).
fn folder_checkpoint(
    ctx: &ApplyCtx,
    start: &BTreeMap<String, Vec<u8>>,
    key: &str,
) -> Option<FolderCheckpoint> {
    ctx.checkpoint(key)
        .or_else(|| start.get(key).map(Vec::as_slice))
        .and_then(|v| serde_json::from_slice(v).ok())
}

/// The UID after which a folder's copy resumes, or `None` when nothing can be new: empty,
/// or the checkpoint (valid only under the same UIDVALIDITY) already reaches UIDNEXT.
fn resume_after(checkpoint: Option<FolderCheckpoint>, st: &MailboxStatus) -> Option<u32> {
    let uidvalidity = st.uid_validity.unwrap_or(0);
    let after = match checkpoint {
        Some(c) if c.uidvalidity == uidvalidity && uidvalidity != 0 => c.last_uid,
        _ => 0,
    };
    let caught_up = st
        .uid_next
        .is_some_and(|next| after.saturating_add(1) >= next);
    (st.exists > 0 && !caught_up).then_some(after)
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
        let finished = match &self.source {
            SourceSpec::Imap(account) => {
                let folders = self.folders_to_copy(account, &ctx, &start).await?;
                self.copy_folders(folders, ctx, Arc::new(start)).await?
            }
            SourceSpec::Pop3 {
                account,
                delete_after_copy,
            } => {
                let slots = reserve_connections(&self.target.with_source(account)).await;
                let mut sink = Sink::open(&self.target).await?;
                let finished = self
                    .copy_pop3(account, *delete_after_copy, &mut sink, &mut ctx, &start)
                    .await?;
                sink.close().await;
                drop(slots);
                finished
            }
        };
        Ok(if finished {
            Outcome::Complete
        } else {
            Outcome::Interrupted
        })
    }

    /// The mapped source folders, largest first (so the biggest folder starts first and
    /// does not end the copy alone). Listed on a connection of its own, closed before the
    /// lanes connect: every lane takes its target connection before its source connection,
    /// so nothing holds a source connection while waiting for a target one, and
    /// `max_connections` cannot deadlock.
    ///
    /// Folders with nothing after their checkpoint are left out, so an incremental pass with
    /// no new mail opens no lane and no target connection at all.
    ///
    /// Source folders that land in one target folder (`INBOX.Sent` and `Sent`, a plan `map`)
    /// form one unit of work, copied one after the other by one lane: the target's dedupe
    /// index of a folder lives in one lane, and two lanes filling one folder could each store
    /// a message the other just stored.
    async fn folders_to_copy(
        &self,
        account: &Account,
        ctx: &ApplyCtx,
        start: &BTreeMap<String, Vec<u8>>,
    ) -> Result<Vec<Vec<MappedFolder>>, Failure> {
        let mut src = account.imap().await?;
        let mut by_target: BTreeMap<Vec<String>, (u64, Vec<MappedFolder>)> = BTreeMap::new();
        for mailbox in src.list().await? {
            if let Some(mapped) = self.mapper.map(&mailbox) {
                let st = src.examine(&mapped.source).await?;
                let key = format!("imap:{}", mapped.source);
                if resume_after(folder_checkpoint(ctx, start, &key), &st).is_some() {
                    let unit = by_target.entry(mapped.target.clone()).or_default();
                    unit.0 += u64::from(st.exists);
                    unit.1.push(mapped);
                }
            }
        }
        let _ = src.logout().await;
        let mut units: Vec<(u64, Vec<MappedFolder>)> = by_target.into_values().collect();
        units.sort_by_key(|(exists, _)| std::cmp::Reverse(*exists));
        Ok(units.into_iter().map(|(_, unit)| unit).collect())
    }

    /// Copies `units` (folders grouped by target folder) over up to `self.lanes` connection
    /// pairs, each lane on a thread of its own taking the next unit when done with one: a
    /// folder is copied by exactly one lane, so its checkpoint still advances in UID order. After a lane fails the others finish
    /// their folder and stop; the failure is reported and the next attempt resumes.
    /// `Ok(false)` when cancelled.
    async fn copy_folders(
        &self,
        units: Vec<Vec<MappedFolder>>,
        ctx: ApplyCtx,
        start: Arc<BTreeMap<String, Vec<u8>>>,
    ) -> Result<bool, Failure> {
        let lanes = self.lanes.clamp(1, units.len().max(1));
        let queue = Arc::new(std::sync::Mutex::new(VecDeque::from(units)));
        let failed = Arc::new(AtomicBool::new(false));
        let mut handles = Vec::with_capacity(lanes);
        for _ in 0..lanes {
            let (this, ctx, start) = (self.clone(), ctx.clone(), Arc::clone(&start));
            let (queue, failed) = (Arc::clone(&queue), Arc::clone(&failed));
            handles.push(tokio::task::spawn_blocking(move || {
                block_on_lane(this.lane(queue, ctx, start, failed))
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
        match failure {
            Some(e) => Err(e),
            None => Ok(finished),
        }
    }

    /// One lane: units of folders from `queue` until it is empty, cancelled or another lane
    /// failed.
    /// Connects lazily (a lane that gets no folder opens nothing), target first.
    async fn lane(
        self,
        queue: Arc<std::sync::Mutex<VecDeque<Vec<MappedFolder>>>>,
        mut ctx: ApplyCtx,
        start: Arc<BTreeMap<String, Vec<u8>>>,
        failed: Arc<AtomicBool>,
    ) -> Result<bool, Failure> {
        let SourceSpec::Imap(account) = &self.source else {
            return Err(StepError::permanent("folder lanes need an IMAP source").into());
        };
        let mut connections: Option<(Sink, ImapClient, ConnectionSlots)> = None;
        loop {
            if failed.load(Ordering::Relaxed) {
                break;
            }
            let next = queue.lock().ok().and_then(|mut q| q.pop_front());
            let Some(unit) = next else { break };
            if connections.is_none() {
                let slots = reserve_connections(&self.target.with_source(account)).await;
                let sink = Sink::open(&self.target).await?;
                let src = account.imap_reserved().await?;
                connections = Some((sink, src, slots));
            }
            let Some((sink, src, _)) = connections.as_mut() else {
                break;
            };
            for folder in &unit {
                match self.copy_folder(src, sink, folder, &mut ctx, &start).await {
                    Ok(true) => {}
                    // Cancelled mid-fetch: the connections are mid-response; drop, not log out.
                    Ok(false) => return Ok(false),
                    Err(e) => {
                        failed.store(true, Ordering::Relaxed);
                        return Err(e);
                    }
                }
            }
        }
        if let Some((sink, src, slots)) = connections {
            let _ = src.logout().await;
            sink.close().await;
            drop(slots);
        }
        Ok(true)
    }

    /// Calls `each` with the header fetch ([`ImapClient::uid_fetch_headers`]) of every message
    /// of the examined folder above UID `after` that was received in the date window. With a
    /// window the server narrows first (`UID SEARCH`, in spans, over the window widened by a
    /// day because servers compare dates in their own zone), then each candidate's
    /// INTERNALDATE decides exactly: mail outside costs no header or body download.
    async fn each_header(
        &self,
        src: &mut ImapClient,
        st: &MailboxStatus,
        after: u32,
        mut each: impl FnMut(FetchedMessage),
    ) -> Result<(), Failure> {
        let Some(window) = &self.window else {
            let mut f = src
                .uid_fetch_headers(&format!("{}:*", after.saturating_add(1)))
                .await?;
            while let Some(m) = f.next().await? {
                // `n:*` also returns the highest message when n is beyond it.
                if m.uid > after {
                    each(m);
                }
            }
            return Ok(());
        };
        let wide = window.widened();
        let mut candidates = Vec::new();
        let mut lo = after.saturating_add(1);
        loop {
            // Bounded spans up to UIDNEXT, then an open one: mail delivered since EXAMINE is
            // still seen, as by `n:*` without a window.
            let hi = lo
                .checked_add(SEARCH_SPAN - 1)
                .filter(|hi| st.uid_next.is_some_and(|next| *hi < next.saturating_sub(1)));
            match hi {
                Some(hi) => {
                    candidates.extend(src.uid_search(&format!("{lo}:{hi}"), &wide).await?);
                    lo = hi + 1;
                }
                None => {
                    candidates.extend(src.uid_search(&format!("{lo}:*"), &wide).await?);
                    break;
                }
            }
        }
        candidates.retain(|uid| *uid > after);
        for set in uid_sets(&candidates) {
            let mut f = src.uid_fetch_headers(&set).await?;
            while let Some(m) = f.next().await? {
                if window.contains(m.message.internal_date) {
                    each(m);
                }
            }
        }
        Ok(())
    }

    /// Whether POP3 message `number` was received in the date window, with its headers when
    /// they had to be read to tell (`TOP n 0`; without a window nothing is read).
    async fn pop3_in_window(
        &self,
        client: &mut Pop3Client,
        number: u32,
    ) -> Result<(bool, Option<RawMessage>), Failure> {
        let Some(window) = &self.window else {
            return Ok((true, None));
        };
        let head = RawMessage::new(client.top(number, 0).await?);
        Ok((window.contains(pop3_received(&head)), Some(head)))
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
        let Some(after) = resume_after(folder_checkpoint(ctx, start, &key), &st) else {
            return Ok(true);
        };
        let mut metas = Vec::new();
        self.each_header(src, &st, after, |m| metas.push(meta_of(m)))
            .await?;
        metas.sort_by_key(|m| m.uid);
        metas.dedup_by_key(|m| m.uid);
        if metas.is_empty() {
            return Ok(true);
        }
        sink.prepare(&mapped.target).await?;
        let max_bytes = sink.size_limit(self.max_bytes);
        let folder_name = decode_lossy(&mapped.source);
        for chunk in metas.chunks(CHUNK) {
            let mut plans = Vec::with_capacity(chunk.len());
            for m in chunk {
                let p = if m.size > max_bytes {
                    let record = SkippedMessage::new(
                        folder_name.as_str(),
                        m.uid.to_string(),
                        m.size,
                        m.subject.clone(),
                        m.received,
                        skipped::OVER_LIMIT,
                    );
                    Plan1::Done(skipped(), Some(record.checkpoint(&mapped.source)))
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
                    let unsettled = results.len() < messages.len();
                    let mut failure = None;
                    for ((i, message), result) in slots.iter().zip(&messages).zip(results) {
                        match result {
                            Ok(written) => {
                                state.plans[*i] =
                                    Plan1::Done(written_counts(written, message), None);
                            }
                            // The target's own limit, lower than the plan's: left behind and
                            // reported like any oversized message, not a failed copy.
                            Err(Failure::Net(NetError::Rejected { text, .. }))
                                if is_too_big(&text) =>
                            {
                                let record = SkippedMessage::new(
                                    folder_name.as_str(),
                                    state.uids[*i].to_string(),
                                    message.len() as u64,
                                    message.subject(),
                                    message.internal_date,
                                    format!("refused by the target: {text}"),
                                );
                                state.plans[*i] =
                                    Plan1::Done(skipped(), Some(record.checkpoint(&mapped.source)));
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
                    // Messages left unanswered (the sink stopped waiting out throttling when
                    // cancelled) must stop the copy here: below, unfetched plans count as
                    // expunged, and the checkpoint would pass mail that never arrived.
                    if unsettled {
                        if ctx.is_cancelled() {
                            return Ok(false);
                        }
                        return Err(StepError::transient(
                            "the target left messages of a batch unanswered",
                        )
                        .into());
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
        let mut client = account.pop3_reserved().await?;
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
            let (in_window, head) = self.pop3_in_window(&mut client, m.number).await?;
            if !in_window {
                ctx.commit(Counts::default(), &[(key.as_str(), POP3_OUTSIDE)])?;
                continue;
            }
            if m.size > sink.size_limit(self.max_bytes) {
                let head = match head {
                    Some(h) => h,
                    None => RawMessage::new(client.top(m.number, 0).await?),
                };
                let record = SkippedMessage::new(
                    "INBOX",
                    m.uid.as_str(),
                    m.size,
                    head.subject(),
                    pop3_received(&head),
                    skipped::OVER_LIMIT,
                );
                let (skipped_key, rec) = record.checkpoint("pop3");
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
                        self.each_header(&mut src, &st, after, |m| {
                            newer += 1;
                            let size = m.size.unwrap_or(0);
                            if size > self.max_bytes {
                                oversized += 1;
                            } else {
                                folder.items += 1;
                                folder.bytes += size;
                            }
                        })
                        .await?;
                        // Without a window, everything up to the checkpoint was copied; with
                        // one, mail outside it is neither to copy nor at the target.
                        if self.window.is_none() {
                            folder.present = u64::from(st.exists).saturating_sub(newer);
                        }
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
                    match checkpoints.get(&format!("pop3:{}", m.uid)) {
                        Some(v) if v.as_slice() == POP3_OUTSIDE => continue,
                        Some(_) => {
                            obs.present += 1;
                            continue;
                        }
                        None => {}
                    }
                    if !self.pop3_in_window(&mut client, m.number).await?.0 {
                        continue;
                    }
                    if m.size > self.max_bytes {
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

/// A refusal naming the size (RFC 4469 `[TOOBIG]`), which concerns one message; any other
/// refusal (quota, missing folder, policy) would hit every message and must fail loudly.
fn is_too_big(text: &str) -> bool {
    text.to_ascii_uppercase().contains("[TOOBIG]")
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
    // Copy and delta steps of the user: where refusals by the target are recorded.
    let writers: Vec<String> = steps
        .iter()
        .filter(|s| matches!(s.kind, StepKind::Copy | StepKind::Delta))
        .map(|s| s.id.clone())
        .collect();
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
        writers,
    })
}

struct RemoteVerify {
    copies: Vec<RemoteCopy>,
    writers: Vec<String>,
    hash: String,
}

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
                    let st = src.examine(&mapped.source).await?;
                    if st.exists == 0 {
                        continue;
                    }
                    let keys = out.entry(mapped.target.clone()).or_default();
                    let mut without_id = Vec::new();
                    self.each_header(&mut src, &st, 0, |m| {
                        if m.size.unwrap_or(0) > self.max_bytes {
                            return;
                        }
                        match m.message.message_id() {
                            Some(id) => keys.push(DedupeKey::MessageId(id)),
                            None => without_id.push(m.uid),
                        }
                    })
                    .await?;
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
                    if !self.window.is_none_or(|w| w.contains(pop3_received(&head))) {
                        continue;
                    }
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
                let d = hierarchy_delimiter(&mut c).await?;
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
        let mut tally = Tally::default();
        for copy in &copies {
            let mut client = None;
            for (folder, keys) in copy.source_keys().await? {
                let present = target_keys(&copy.target, &mut client, &folder).await?;
                let name = if folder.is_empty() {
                    "INBOX".to_string()
                } else {
                    folder.join("/")
                };
                let missing = keys.iter().filter(|k| !present.contains(k)).count() as u64;
                tally.add(name, keys.len() as u64, missing);
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
        Ok(tally.observation())
    }

    fn apply<'a>(&'a self, ctx: &'a mut ApplyCtx) -> BoxFuture<'a, Result<Outcome, StepError>> {
        let copies = self.copies.clone();
        let mut ctx = ctx.clone();
        // Messages the target refused as too big are reported, not lost: they excuse as
        // many missing ones (the source side already leaves out those over the plan's limit).
        let mut refused = 0u64;
        for id in &self.writers {
            let left = skipped::from_checkpoints(&ctx.checkpoints_of(id).unwrap_or_default());
            refused += left
                .iter()
                .filter(|m| m.reason != skipped::OVER_LIMIT)
                .count() as u64;
        }
        run_attempt(ctx.clone(), move || async move {
            let checked = Self::tally(copies).await?.verdict(refused)?;
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
