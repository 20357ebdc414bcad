//! `user.<name>` of an `m365` target: the user, their licence and their mailbox in Microsoft
//! 365, through Microsoft Graph ([`crate::connectors::graph`]), then the IMAP login that
//! proves the app can open the mailbox (the runner [`super::user::runner`] hands in).
//!
//! Apply, each part idempotent so a crash or a retry anywhere repeats nothing:
//! 1. `GET /users/{upn}`; absent → `POST /users` (enabled, display name, mail nickname, usage
//!    location, an initial password from the plan's secret reference or generated and written
//!    only to a 0600 file the report names); present → `PATCH` the display name if it differs
//!    and the usage location if it has none and a licence needs one;
//! 2. the licence by SKU part number through `GET /subscribedSkus`, assigned
//!    (`assignLicense`) unless it already is, refused when no seat is free;
//! 3. aliases Graph cannot add (proxy addresses are read-only there) are recorded as Exchange
//!    Online PowerShell for the report's script, with FullAccess for the app on mailboxes
//!    cutover created (IMAP as the app needs it);
//! 4. the mailbox: polled (`GET /users/{id}/mailboxSettings`) with backoff until it answers,
//!    visibly and cancellably, since Exchange provisions it minutes after the licence;
//! 5. the IMAP login as the app.
//!
//! `plan` reads the tenant once for all users of the plan (one `$batch` of user reads and
//! one `subscribedSkus`), shows per user what apply would do, the seats each SKU needs against
//! those free, and blocks the users of a SKU that is short.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::json;

use super::m365::{app_tokens, AppTokens, LiveRegistry};
use super::mail::secret_label;
use super::notes;
use crate::connectors::graph::{
    self, initial_password, sleep_unless_cancelled, ExchangeChange, GraphClient, GraphError,
    GraphUser, MailboxState, NewUser, SubscribedSku,
};
use crate::engine::{
    hash_parts, ApplyCtx, BoxFuture, Observation, ObserveCtx, Outcome, StepError, StepRunner,
};
use crate::graph::user_slug;
use crate::plan::model::{Plan, SecretRef, Target, User};
use crate::secrets::Secret;
use crate::state::Counts;

/// How long a tenant read at plan time is reused by the other users' previews.
const SNAPSHOT_TTL: Duration = Duration::from_secs(60);

/// Mailbox polling: the first wait, doubled per poll up to the longest, for at most the
/// deadline per attempt (then a transient error: the walker's retry waits on).
const MAILBOX_POLL_FIRST: Duration = Duration::from_millis(500);
const MAILBOX_POLL_MAX: Duration = Duration::from_secs(30);
const MAILBOX_DEADLINE: Duration = Duration::from_secs(30 * 60);

/// The runner of `user.*` for an m365 target, finishing with `mailbox_check` (the IMAP login).
/// `None` when the plan's target is not m365.
pub(crate) fn user_runner(
    plan: &Plan,
    user: &User,
    base: &Path,
    mailbox_check: Arc<dyn StepRunner>,
) -> Option<Arc<dyn StepRunner>> {
    let Target::M365 {
        tenant: tenant_name,
        auth,
        graph: graph_config,
        usage_location,
        ..
    } = &plan.target
    else {
        return None;
    };
    let root = graph_config
        .as_ref()
        .map_or(graph::GLOBAL_ENDPOINT, |g| g.endpoint.as_str())
        .trim_end_matches('/')
        .to_owned();
    let host = crate::connectors::http::checked_url(&root)
        .ok()
        .and_then(|u| u.host().map(str::to_owned))
        .unwrap_or_else(|| root.clone());
    let tokens = app_tokens(tenant_name, auth, &host, base);
    let wanted: Vec<WantedUser> = plan
        .users
        .iter()
        .map(|u| WantedUser::new(u, usage_location.as_deref()))
        .collect();
    let key = std::iter::once(format!("{root}|{}", tokens.describe()))
        .chain(wanted.iter().map(WantedUser::describe))
        .collect::<Vec<_>>()
        .join("\n");
    let tenant = TENANTS.get_or_insert(key, || Tenant {
        root,
        tokens,
        users: wanted,
        snapshot: Mutex::new(None),
    });
    let me = WantedUser::new(user, usage_location.as_deref());
    // Relative to the plan's folder, as the plan writes `output_dir`: what notes and errors
    // show (the same on every machine); joined to `base` where a file is written.
    let password_file = plan
        .settings
        .output_dir
        .join("m365")
        .join(format!("{}.initial-password.txt", user_slug(&user.email)));
    let script_file = plan
        .settings
        .output_dir
        .join(graph::script_file_name(&plan.name));
    let hash = hash_parts(&[
        "user-m365",
        &tenant.root,
        &tenant.tokens.describe(),
        &me.describe(),
        &password_file.display().to_string(),
        &mailbox_check.config_hash(),
    ]);
    Some(Arc::new(M365User {
        job: Arc::new(Job {
            tenant,
            user: me,
            app_id: auth.client_id.clone(),
            base_dir: base.to_path_buf(),
            password_file,
        }),
        script_file,
        mailbox_check,
        hash,
    }))
}

/// One user as the plan wants them at the tenant.
#[derive(Debug, Clone)]
struct WantedUser {
    upn: String,
    display_name: String,
    mail_nickname: String,
    licence: Option<String>,
    usage_location: Option<String>,
    aliases: Vec<String>,
    initial_password: Option<SecretRef>,
}

impl WantedUser {
    fn new(user: &User, target_location: Option<&str>) -> WantedUser {
        let local = user.email.split('@').next().unwrap_or(&user.email);
        WantedUser {
            upn: user.email.clone(),
            display_name: user
                .display_name
                .clone()
                .unwrap_or_else(|| local.to_owned()),
            mail_nickname: mail_nickname(local),
            licence: user.licence.clone(),
            usage_location: user
                .usage_location
                .clone()
                .or_else(|| target_location.map(str::to_owned)),
            aliases: user.aliases.clone(),
            initial_password: user.initial_password.clone(),
        }
    }

    /// Everything that defines the step's work, for config hashes and sharing; the initial
    /// password only as its reference.
    fn describe(&self) -> String {
        format!(
            "{}|{}|{}|{:?}|{:?}|{}|{}",
            self.upn,
            self.display_name,
            self.mail_nickname,
            self.licence,
            self.usage_location,
            self.aliases.join(","),
            self.initial_password
                .as_ref()
                .map_or("generated".into(), secret_label),
        )
    }

    fn wants_sku(&self, sku: &SubscribedSku) -> bool {
        self.licence
            .as_deref()
            .is_some_and(|l| l.eq_ignore_ascii_case(&sku.sku_part_number))
    }
}

/// A mail nickname Graph accepts: the address's local part without the characters it
/// refuses there (`@ ( ) \ [ ] " ; : < > ,` and spaces).
fn mail_nickname(local: &str) -> String {
    local
        .chars()
        .filter(|c| !"@()\\[]\";:<>, ".contains(*c) && !c.is_control())
        .collect()
}

/// What `plan` read of the tenant, shared by the previews of all users of the plan.
#[derive(Debug)]
struct Snapshot {
    skus: Vec<SubscribedSku>,
    /// By lower-case UPN; `None` where the directory has no such user.
    users: HashMap<String, Option<GraphUser>>,
}

/// The tenant as the runners of one plan see it.
struct Tenant {
    /// Graph's service root.
    root: String,
    tokens: Arc<AppTokens>,
    /// Every user of the plan: the seats a SKU needs count them all.
    users: Vec<WantedUser>,
    snapshot: Mutex<Option<(Instant, Arc<Snapshot>)>>,
}

static TENANTS: LiveRegistry<Tenant> = LiveRegistry::new();

impl Tenant {
    fn client(&self, ctx: Option<&ApplyCtx>) -> Result<GraphClient, StepError> {
        let tokens: Arc<dyn graph::BearerSource> = self.tokens.clone();
        let client = GraphClient::new(&self.root, tokens)
            .map_err(|e| StepError::permanent(format!("target.graph.endpoint {e}")))?;
        Ok(match ctx {
            Some(ctx) => {
                let status = ctx.clone();
                client
                    .with_cancel(ctx.cancel_token().clone())
                    .with_wait_observer(Arc::new(move |what: &str| status.status(what)))
            }
            None => client,
        })
    }

    /// The tenant's users and subscriptions, read once for all previews (within
    /// [`SNAPSHOT_TTL`], and until an apply changes the tenant).
    fn snapshot(&self) -> Result<Arc<Snapshot>, StepError> {
        let mut slot = self.snapshot.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((at, snap)) = slot.as_ref() {
            if at.elapsed() < SNAPSHOT_TTL {
                return Ok(Arc::clone(snap));
            }
        }
        let client = self.client(None)?;
        let skus = client.subscribed_skus().map_err(|e| step_error(&e))?;
        let upns: Vec<String> = self.users.iter().map(|u| u.upn.clone()).collect();
        let found = client.users(&upns).map_err(|e| step_error(&e))?;
        let snap = Arc::new(Snapshot {
            skus,
            users: upns.iter().map(|u| u.to_lowercase()).zip(found).collect(),
        });
        *slot = Some((Instant::now(), Arc::clone(&snap)));
        Ok(snap)
    }

    fn forget_snapshot(&self) {
        *self.snapshot.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Seats of `sku` the plan still needs: its users wanting it who do not have it.
    fn seats_needed(&self, snap: &Snapshot, sku: &SubscribedSku) -> i64 {
        self.users
            .iter()
            .filter(|u| u.wants_sku(sku))
            .filter(|u| {
                !snap
                    .users
                    .get(&u.upn.to_lowercase())
                    .and_then(Option::as_ref)
                    .is_some_and(|g| g.has_licence(&sku.sku_id))
            })
            .count() as i64
    }
}

/// The SKU with this part number, or why it cannot be used.
fn find_sku<'a>(skus: &'a [SubscribedSku], part_number: &str) -> Result<&'a SubscribedSku, String> {
    let sku = skus
        .iter()
        .find(|s| s.sku_part_number.eq_ignore_ascii_case(part_number))
        .ok_or_else(|| {
            let known: Vec<&str> = skus.iter().map(|s| s.sku_part_number.as_str()).collect();
            format!(
                "licence `{part_number}` is not among the tenant's subscriptions ({})",
                if known.is_empty() {
                    "it has none".to_string()
                } else {
                    known.join(", ")
                }
            )
        })?;
    if !sku.assignable() {
        return Err(format!(
            "licence `{part_number}` cannot be assigned: the subscription is {}",
            sku.capability_status
        ));
    }
    Ok(sku)
}

/// `3 of 10 free`, with the plan's need when it is more than this one seat.
fn seats_text(sku: &SubscribedSku, needed: i64) -> String {
    let needed = if needed > 1 {
        format!(", {needed} needed")
    } else {
        String::new()
    };
    format!(
        "{} of {} free{needed}",
        sku.free(),
        sku.prepaid_units.enabled
    )
}

/// A Graph error as a step error, with what to do about the usual ones.
fn step_error(e: &GraphError) -> StepError {
    let hint = match (e.status(), e.code()) {
        (Some(403), Some("Authorization_RequestDenied")) => Some(
            "the app lacks a Microsoft Graph application permission: grant User.ReadWrite.All and \
             Organization.Read.All (or Directory.ReadWrite.All) with admin consent",
        ),
        (Some(403), Some("ErrorAccessDenied")) => Some(
            "the app cannot read mailbox settings: grant the MailboxSettings.Read application \
             permission with admin consent",
        ),
        (Some(401), _) => {
            Some("Graph refused the app's token: check target.tenant and the app's consent")
        }
        _ => None,
    };
    let text = match hint {
        Some(h) => format!("{e} — {h}"),
        None => e.to_string(),
    };
    if e.is_transient() {
        StepError::transient(text)
    } else {
        StepError::permanent(text)
    }
}

/// What one user's step works with; shared with its blocking task.
struct Job {
    tenant: Arc<Tenant>,
    user: WantedUser,
    app_id: String,
    base_dir: PathBuf,
    /// Relative to `base_dir`.
    password_file: PathBuf,
}

struct M365User {
    job: Arc<Job>,
    /// The report's Exchange Online script, relative to the plan's folder.
    script_file: PathBuf,
    mailbox_check: Arc<dyn StepRunner>,
    hash: String,
}

impl Job {
    /// What apply would do, from the shared tenant snapshot.
    fn preview(&self) -> Result<Observation, StepError> {
        let snap = self.tenant.snapshot()?;
        let wanted = &self.user;
        let existing = snap
            .users
            .get(&wanted.upn.to_lowercase())
            .and_then(Option::as_ref);
        let mut parts: Vec<String> = Vec::new();
        let mut changes = false;
        match existing {
            None => {
                parts.push(format!("create {}", wanted.upn));
                changes = true;
            }
            Some(u) => {
                parts.push("exists".into());
                if u.display_name.as_deref() != Some(wanted.display_name.as_str()) {
                    parts.push(format!("rename to `{}`", wanted.display_name));
                    changes = true;
                }
            }
        }
        if let Some(licence) = &wanted.licence {
            let sku = find_sku(&snap.skus, licence).map_err(StepError::permanent)?;
            if existing.is_some_and(|u| u.has_licence(&sku.sku_id)) {
                parts.push("licensed".into());
            } else {
                let needed = self.tenant.seats_needed(&snap, sku);
                if needed > sku.free() {
                    return Err(StepError::permanent(format!(
                        "licence {} is short: {}",
                        sku.sku_part_number,
                        seats_text(sku, needed)
                    )));
                }
                let verb = if existing.is_some() {
                    "assign licence"
                } else {
                    "licence"
                };
                parts.push(format!(
                    "{verb} {} ({})",
                    sku.sku_part_number,
                    seats_text(sku, needed)
                ));
                changes = true;
            }
        }
        let missing = wanted
            .aliases
            .iter()
            .filter(|a| !existing.is_some_and(|u| u.has_address(a)))
            .count();
        if missing > 0 {
            parts.push(format!(
                "{missing} alias{} for Exchange Online PowerShell",
                if missing == 1 { "" } else { "es" }
            ));
            changes = true;
        }
        Ok(Observation {
            items: u64::from(changes),
            present: u64::from(!changes),
            summary: Some(parts.join(", ")),
            in_sync: !changes,
            ..Observation::default()
        })
    }

    /// Steps 1–4 of the module docs, blocking. `Interrupted` when cancelled. What it did is
    /// recorded (notes, Exchange changes) whether it then succeeds or fails.
    fn provision(&self, mut ctx: ApplyCtx) -> Result<Outcome, StepError> {
        self.tenant.forget_snapshot();
        let client = self.tenant.client(Some(&ctx))?;
        let mut record: Vec<(String, Vec<u8>)> = Vec::new();
        let provisioned = self.provision_user(&client, &ctx, &mut record);
        commit(&mut ctx, &record)?;
        match provisioned? {
            Some(user) => self.await_mailbox(&client, &user, &ctx),
            None => Ok(Outcome::Interrupted),
        }
    }

    /// Steps 1–3: the user as the plan wants them, `None` when cancelled half-way.
    fn provision_user(
        &self,
        client: &GraphClient,
        ctx: &ApplyCtx,
        record: &mut Vec<(String, Vec<u8>)>,
    ) -> Result<Option<GraphUser>, StepError> {
        let wanted = &self.user;
        let upn = wanted.upn.as_str();
        let existing = client.user(upn).map_err(|e| step_error(&e))?;
        // The licence is checked before anything is written: a user created without the
        // seat they need is half a migration.
        let sku = match &wanted.licence {
            Some(licence) => {
                let skus = client.subscribed_skus().map_err(|e| step_error(&e))?;
                let sku = find_sku(&skus, licence)
                    .map_err(StepError::permanent)?
                    .clone();
                let assigned = existing
                    .as_ref()
                    .is_some_and(|u| u.has_licence(&sku.sku_id));
                if !assigned && sku.free() < 1 {
                    return Err(StepError::permanent(format!(
                        "licence {} is short: no seat free ({}): buy more or free one, then apply again",
                        sku.sku_part_number,
                        seats_text(&sku, 1)
                    )));
                }
                Some(sku)
            }
            None => None,
        };

        let mut user = match existing {
            Some(user) => {
                if user.display_name.as_deref() != Some(wanted.display_name.as_str()) {
                    client
                        .update_user(&user.id, &json!({ "displayName": wanted.display_name }))
                        .map_err(|e| step_error(&e))?;
                    record.push(notes::checkpoint(
                        "display-name",
                        &format!("display name set to `{}`", wanted.display_name),
                    ));
                }
                user
            }
            None => {
                let user = self.create(client, record)?;
                record.push(
                    ExchangeChange::GrantAppAccess {
                        mailbox: upn.to_owned(),
                        app_id: self.app_id.clone(),
                    }
                    .checkpoint(),
                );
                user
            }
        };
        if ctx.is_cancelled() {
            return Ok(None);
        }

        if let Some(sku) = &sku {
            if user.usage_location.is_none() {
                if let Some(location) = &wanted.usage_location {
                    client
                        .update_user(&user.id, &json!({ "usageLocation": location }))
                        .map_err(|e| step_error(&e))?;
                    user.usage_location = Some(location.clone());
                }
            }
            if !user.has_licence(&sku.sku_id) {
                client
                    .assign_licence(&user.id, &sku.sku_id)
                    .map_err(|e| step_error(&e))?;
                user.assigned_licenses.push(graph::AssignedLicense {
                    sku_id: sku.sku_id.clone(),
                    disabled_plans: Vec::new(),
                });
                record.push(notes::checkpoint(
                    "licence",
                    &format!("licence {} assigned", sku.sku_part_number),
                ));
            }
        }

        for alias in &wanted.aliases {
            if !user.has_address(alias) {
                record.push(ExchangeChange::smtp_alias(upn, alias).checkpoint());
            }
        }
        Ok(Some(user))
    }

    /// `POST /users` with the initial password (written to its file first when generated,
    /// so the password of a user created just before a crash is never lost).
    fn create(
        &self,
        client: &GraphClient,
        record: &mut Vec<(String, Vec<u8>)>,
    ) -> Result<GraphUser, StepError> {
        let wanted = &self.user;
        let password: Secret = match &wanted.initial_password {
            Some(reference) => crate::secrets::shared(reference, &self.base_dir)
                .get()
                .map_err(|e| {
                    StepError::permanent(format!("initial_password of {}: {e}", wanted.upn))
                })?,
            None => self.generated_password()?,
        };
        let new = NewUser {
            user_principal_name: &wanted.upn,
            display_name: &wanted.display_name,
            mail_nickname: &wanted.mail_nickname,
            usage_location: wanted.usage_location.as_deref(),
            password: &password,
        };
        let created = match client.create_user(&new) {
            Ok(user) => user,
            Err(e) => {
                // Created after all (by an attempt whose answer was lost, or by someone else
                // meanwhile): use it.
                if !e.is_transient() {
                    if let Ok(Some(user)) = client.user(&wanted.upn) {
                        return Ok(user);
                    }
                }
                let mut err = step_error(&e);
                if e.to_string().contains("domain") {
                    err.message.push_str(&format!(
                        " — add and verify the domain of {} in the tenant first",
                        wanted.upn
                    ));
                }
                return Err(err);
            }
        };
        record.push(notes::checkpoint(
            "account",
            &format!("created {}", wanted.upn),
        ));
        if wanted.initial_password.is_none() {
            record.push(notes::checkpoint(
                "initial-password",
                &format!(
                    "initial password written to {} (0600); the user must change it at first sign-in",
                    self.password_file.display()
                ),
            ));
        }
        Ok(created)
    }

    /// The password of the password file: the one an earlier attempt generated (its user
    /// may exist already, unseen by a directory still replicating), else a new one written
    /// there before any request carries it.
    fn generated_password(&self) -> Result<Secret, StepError> {
        let path = self.base_dir.join(&self.password_file);
        if let Ok(text) = std::fs::read_to_string(&path) {
            if let Some(earlier) = text
                .lines()
                .rev()
                .find(|l| !l.is_empty() && !l.starts_with('#'))
            {
                return Ok(Secret::new(earlier));
            }
        }
        let generated = initial_password().map_err(StepError::permanent)?;
        let text = format!(
            "# Initial password of {} (Microsoft 365), generated by cutover.\n\
             # The user must change it at first sign-in. Hand it over, then delete this file.\n{}\n",
            self.user.upn,
            generated.expose()
        );
        crate::files::write_atomically(&path, text.as_bytes())
            .map_err(|e| StepError::permanent(format!("cannot write {}: {e}", path.display())))?;
        Ok(generated)
    }

    /// Polls the mailbox until it answers (module docs, step 4).
    fn await_mailbox(
        &self,
        client: &GraphClient,
        user: &GraphUser,
        ctx: &ApplyCtx,
    ) -> Result<Outcome, StepError> {
        let started = Instant::now();
        let mut wait = MAILBOX_POLL_FIRST;
        let mut polls = 0u32;
        loop {
            polls += 1;
            let (code, message) =
                match client.mailbox_state(&user.id).map_err(|e| step_error(&e))? {
                    MailboxState::Ready => return Ok(Outcome::Complete),
                    MailboxState::Missing { code, message } => (code, message),
                };
            if user.assigned_licenses.is_empty() {
                return Err(StepError::permanent(format!(
                    "{} has no mailbox and no licence ({code}: {message}): give the user a \
                     `licence:` that includes Exchange Online",
                    user.user_principal_name
                )));
            }
            if started.elapsed() >= MAILBOX_DEADLINE {
                return Err(StepError::transient(format!(
                    "the mailbox of {} did not appear within {} minutes ({code}); Exchange Online \
                     may still be provisioning it",
                    user.user_principal_name,
                    MAILBOX_DEADLINE.as_secs() / 60
                )));
            }
            ctx.status(format!(
                "waiting for the mailbox of {} to appear (check {polls}: {code}; next in {:.1}s)",
                user.user_principal_name,
                wait.as_secs_f64()
            ));
            if sleep_unless_cancelled(wait, Some(ctx.cancel_token())).is_err() {
                return Ok(Outcome::Interrupted);
            }
            wait = (wait * 2).min(MAILBOX_POLL_MAX);
        }
    }
}

/// Commits the notes and Exchange changes gathered so far (no counts).
fn commit(ctx: &mut ApplyCtx, record: &[(String, Vec<u8>)]) -> Result<(), StepError> {
    if record.is_empty() {
        return Ok(());
    }
    let refs: Vec<(&str, &[u8])> = record
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .collect();
    ctx.commit(Counts::default(), &refs)
}

impl StepRunner for M365User {
    fn config_hash(&self) -> String {
        self.hash.clone()
    }

    /// Graph only: the mailbox of a user still to be created cannot be signed in to yet.
    fn observe(&self, _ctx: &ObserveCtx<'_>) -> Result<Observation, StepError> {
        self.job.preview()
    }

    fn apply<'a>(&'a self, ctx: &'a mut ApplyCtx) -> BoxFuture<'a, Result<Outcome, StepError>> {
        Box::pin(async move {
            let job = Arc::clone(&self.job);
            let work = ctx.clone();
            let provisioned = tokio::task::spawn_blocking(move || job.provision(work))
                .await
                .map_err(|e| StepError::permanent(format!("step task failed: {e}")))??;
            if provisioned == Outcome::Interrupted {
                return Ok(Outcome::Interrupted);
            }
            match self.mailbox_check.apply(ctx).await {
                Err(e) if !e.transient => {
                    // Most likely the app has no FullAccess on this mailbox yet: record the
                    // line that grants it and say where it is.
                    let grant = ExchangeChange::GrantAppAccess {
                        mailbox: self.job.user.upn.clone(),
                        app_id: self.job.app_id.clone(),
                    }
                    .checkpoint();
                    let mut recorder = ctx.clone();
                    tokio::task::spawn_blocking(move || commit(&mut recorder, &[grant]))
                        .await
                        .map_err(|e| StepError::permanent(format!("step task failed: {e}")))??;
                    Err(StepError::permanent(format!(
                        "{} — if the app was never given access to this mailbox (new mailboxes \
                         never are), run {} in Exchange Online PowerShell (it grants FullAccess \
                         with Add-MailboxPermission), then apply again",
                        e.message,
                        self.script_file.display()
                    )))
                }
                other => other,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mail_nicknames_drop_what_graph_refuses() {
        assert_eq!(mail_nickname("alice"), "alice");
        assert_eq!(mail_nickname("o'neil.smith"), "o'neil.smith");
        assert_eq!(mail_nickname("\"john doe\""), "johndoe");
    }

    #[test]
    fn seats_show_the_plans_need_when_more_than_one() {
        let sku = SubscribedSku {
            sku_id: "s".into(),
            sku_part_number: "O365_BUSINESS_BASIC".into(),
            capability_status: "Enabled".into(),
            consumed_units: 7,
            prepaid_units: graph::PrepaidUnits {
                enabled: 10,
                ..Default::default()
            },
        };
        assert_eq!(seats_text(&sku, 1), "3 of 10 free");
        assert_eq!(seats_text(&sku, 4), "3 of 10 free, 4 needed");
        assert!(find_sku(std::slice::from_ref(&sku), "o365_business_basic").is_ok());
        let err = find_sku(std::slice::from_ref(&sku), "EXCHANGESTANDARD").unwrap_err();
        assert!(err.contains("(O365_BUSINESS_BASIC)"), "{err}");
        let suspended = SubscribedSku {
            capability_status: "Suspended".into(),
            ..sku
        };
        assert!(find_sku(&[suspended], "O365_BUSINESS_BASIC")
            .unwrap_err()
            .contains("Suspended"));
    }
}
