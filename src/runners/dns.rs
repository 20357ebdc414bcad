//! Runners of the DNS steps, on [`crate::connectors::dns`]:
//!
//! * `dns.lower-ttl` — lowers the TTL of every RRset the cutover will change to
//!   `lower_ttl.to`, waits until every authoritative server publishes it, and records when,
//!   and the highest TTL it replaced;
//! * `dns.cutover` — not before `lower_ttl.ahead` and that old TTL have passed
//!   ([`StepRunner::not_before`]), sets the desired records, waits until every authoritative
//!   server publishes them, and keeps each server's answer for the report.
//!
//! Both keep the RRsets as they were before cutover touched them (checkpoints
//! `original:…`/`previous:…`, committed *before* any change is sent), which is what
//! [`rollback`] restores. With the `manual` provider a step returns [`Outcome::Waiting`] with
//! the registrar instructions; after `cutover approve` it polls like the others.
//!
//! Checkpoints (values JSON): `original:<name>/<TYPE>` and `previous:…` ([`Kept`]),
//! `desired:…` (the cutover's target, pinned at its first run so a manual approval refers to
//! one fixed change), `planned` (the sets above are complete), `lowered` ([`Lowered`]),
//! `shown` (when the manual instructions were shown, unix ms), `report` (per-zone
//! [`PollReport`]s), and the engine's `approval`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::connectors::dns::authority::{self, PollOutcome, PollReport, Server};
use crate::connectors::dns::manual;
use crate::connectors::dns::provider::{self, Applied, Provider};
use crate::connectors::dns::records::{self, Domain};
use crate::connectors::dns::rrset::{self, Change, Rrset, RrsetKey};
use crate::connectors::dns::DnsError;
use crate::engine::{
    hash_parts, ApplyCtx, BoxFuture, CancellationToken, Observation, ObserveCtx, Outcome,
    StepError, StepRunner,
};
use crate::plan::model::Plan;
use crate::state::{Counts, StateStore};

pub const LOWER_TTL_STEP: &str = "dns.lower-ttl";
pub const CUTOVER_STEP: &str = "dns.cutover";

/// How long one DNS query may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// `dns.propagation_timeout` when the plan gives none.
const DEFAULT_PROPAGATION_TIMEOUT: Duration = Duration::from_secs(3600);

/// An RRset as it was, with its zone: what a rollback puts back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kept {
    pub zone: String,
    pub rrset: Rrset,
}

/// What `dns.lower-ttl` recorded when every server published the lowered TTLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lowered {
    /// Unix seconds.
    pub at: u64,
    /// The highest TTL replaced: caches may hold the old records that long after `at`.
    pub old_ttl: u32,
    /// Whether anything had to be lowered (if not, `ahead` need not be waited out).
    pub lowered: bool,
}

/// The plan's DNS settings, as both steps and rollback use them.
#[derive(Debug, Clone)]
struct Setup {
    plan: Plan,
    base_dir: PathBuf,
    domains: Vec<Domain>,
    lower_to: Option<u32>,
    ahead: Duration,
    propagation_timeout: Duration,
    nameservers: Vec<String>,
    /// Held for the runners' lifetime so the TSIG secret is resolved once per run (each
    /// provider built from the plan finds this one: `crate::secrets::shared`).
    _tsig: Option<std::sync::Arc<crate::secrets::SharedSecret>>,
}

impl Setup {
    fn new(plan: &Plan, base_dir: &Path) -> Setup {
        let dns = plan.dns.clone().unwrap_or_else(|| crate::plan::model::Dns {
            provider: crate::plan::model::DnsProvider::Manual,
            rfc2136: None,
            records: Vec::new(),
            lower_ttl: None,
            spf: Default::default(),
            domains: Default::default(),
            nameservers: Vec::new(),
            propagation_timeout: None,
        });
        let duration = |text: Option<&str>| {
            text.and_then(crate::plan::validate::parse_duration)
                .map(Duration::from_secs)
        };
        Setup {
            plan: plan.clone(),
            base_dir: base_dir.to_path_buf(),
            domains: records::domains(plan),
            lower_to: dns.lower_ttl.as_ref().map(|l| l.to),
            ahead: duration(dns.lower_ttl.as_ref().map(|l| l.ahead.as_str())).unwrap_or_default(),
            propagation_timeout: duration(dns.propagation_timeout.as_deref())
                .unwrap_or(DEFAULT_PROPAGATION_TIMEOUT),
            nameservers: dns.nameservers.clone(),
            _tsig: dns
                .rfc2136
                .as_ref()
                .map(|r| crate::secrets::shared(&r.tsig.secret, base_dir)),
        }
    }

    /// Everything in the plan that defines the DNS steps' work (never secrets: the TSIG
    /// secret is a reference and hashes as one).
    fn hash(&self, step: &str) -> String {
        let plan = &self.plan;
        let target = match &plan.target {
            crate::plan::model::Target::M365 {
                tenant,
                initial_domain,
                ..
            } => format!("m365|{tenant}|{initial_domain:?}"),
            crate::plan::model::Target::Imap(_) => "imap".into(),
            crate::plan::model::Target::Maildir { .. } => "maildir".into(),
        };
        // The TSIG secret hashes as its reference (`env:VAR`), never as a value.
        let mut dns = plan.dns.clone();
        if let Some(tsig) = dns
            .as_mut()
            .and_then(|d| d.rfc2136.as_mut())
            .map(|r| &mut r.tsig)
        {
            tsig.secret = crate::plan::model::SecretRef::Inline(format!("{:?}", tsig.secret));
        }
        let dns = serde_json::to_string(&dns).unwrap_or_default();
        let domains: Vec<&str> = self.domains.iter().map(|d| d.name.as_str()).collect();
        hash_parts(&["dns", step, &target, &dns, &domains.join(",")])
    }

    fn provider(&self) -> Result<Box<dyn Provider>, DnsError> {
        match &self.plan.dns {
            Some(dns) => provider::from_plan(dns, &self.base_dir),
            None => Err(DnsError::Config("the plan has no `dns:` section".into())),
        }
    }
}

/// One zone as read now: its servers, where it was read, and the RRsets asked for. With no
/// RRsets to ask for, nothing is looked up: no servers, nothing read.
struct ZoneView {
    zone: String,
    servers: Vec<Server>,
    read_from: Option<Server>,
    current: BTreeMap<RrsetKey, Rrset>,
}

impl ZoneView {
    fn current(&self, key: &RrsetKey) -> Rrset {
        self.current
            .get(key)
            .cloned()
            .unwrap_or_else(|| Rrset::absent(key.clone()))
    }
}

async fn view(
    setup: &Setup,
    provider: &dyn Provider,
    zone: &str,
    keys: &[RrsetKey],
) -> Result<ZoneView, DnsError> {
    if keys.is_empty() {
        return Ok(ZoneView {
            zone: zone.to_string(),
            servers: Vec::new(),
            read_from: None,
            current: BTreeMap::new(),
        });
    }
    let servers = authority::servers(zone, &setup.nameservers, QUERY_TIMEOUT).await?;
    let read_from = match provider.primary().await? {
        Some(primary) => primary,
        None => servers
            .first()
            .cloned()
            .ok_or_else(|| DnsError::Discovery {
                zone: rrset::shown_name(zone).into(),
                detail: "no name servers".into(),
            })?,
    };
    let current = authority::read(&read_from, keys, QUERY_TIMEOUT).await?;
    Ok(ZoneView {
        zone: zone.to_string(),
        servers,
        read_from: Some(read_from),
        current,
    })
}

/// What the cutover would set, per zone, computed from the zone as it is now.
struct Computed {
    zone: ZoneView,
    desired: Vec<Rrset>,
    warnings: Vec<String>,
}

async fn compute(
    setup: &Setup,
    provider: &dyn Provider,
    domain: &Domain,
) -> Result<Computed, DnsError> {
    let keys = records::keys(&setup.plan, domain);
    let zone = view(setup, provider, &domain.zone, &keys).await?;
    let desired = records::desired(&setup.plan, domain, &zone.current);
    Ok(Computed {
        zone,
        desired: desired.rrsets,
        warnings: desired.warnings,
    })
}

fn dns_err(e: DnsError) -> StepError {
    if e.is_transient() {
        StepError::transient(e.to_string())
    } else {
        StepError::permanent(e.to_string())
    }
}

fn kept_key(prefix: &str, key: &RrsetKey) -> String {
    format!("{prefix}:{}/{}", key.name, rrset::type_name(key.rtype))
}

/// The [`Kept`] checkpoints under `prefix`, in key order.
fn kept(checkpoints: &BTreeMap<String, Vec<u8>>, prefix: &str) -> Vec<Kept> {
    let prefix = format!("{prefix}:");
    checkpoints
        .iter()
        .filter(|(k, _)| k.starts_with(&prefix))
        .filter_map(|(_, v)| serde_json::from_slice(v).ok())
        .collect()
}

fn lowered(checkpoints: &BTreeMap<String, Vec<u8>>) -> Option<Lowered> {
    checkpoints
        .get("lowered")
        .and_then(|v| serde_json::from_slice(v).ok())
}

/// Commits the RRsets a step recorded before changing anything, with `planned` (the record
/// is complete), in one transaction.
fn commit_planned(
    ctx: &mut ApplyCtx,
    mut entries: Vec<(String, Vec<u8>)>,
) -> Result<(), StepError> {
    entries.push(("planned".into(), b"1".to_vec()));
    let refs: Vec<(&str, &[u8])> = entries
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .collect();
    ctx.commit(Counts::default(), &refs)
}

/// A poll that ran out of time, with each server's last answer.
fn timed_out(setup: &Setup, zone: &str, what: &str, report: &PollReport) -> StepError {
    StepError::permanent(format!(
        "not every authoritative server of {} publishes {what} after {}:\n{}",
        rrset::shown_name(zone),
        crate::time::human_duration(setup.propagation_timeout),
        report
            .servers
            .iter()
            .map(|s| format!("  {}", s.line()))
            .collect::<Vec<_>>()
            .join("\n")
    ))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn json(value: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

/// Groups wanted RRsets by zone, in the plan's domain order.
fn by_zone(wanted: &[Kept]) -> Vec<(String, Vec<Rrset>)> {
    let mut out: Vec<(String, Vec<Rrset>)> = Vec::new();
    for k in wanted {
        match out.iter_mut().find(|(z, _)| *z == k.zone) {
            Some((_, sets)) => sets.push(k.rrset.clone()),
            None => out.push((k.zone.clone(), vec![k.rrset.clone()])),
        }
    }
    out
}

/// What a step does to the zones once it knows its target RRsets: changes what differs
/// (through the provider; a person with `manual`), then polls every server until all
/// publish the targets. `expected_before` holds, per key, the values the zone may still
/// have (the step's starting point); anything else means someone changed it meanwhile.
async fn drive(
    setup: &Setup,
    ctx: &mut ApplyCtx,
    targets: &[Kept],
    expected_before: &BTreeMap<RrsetKey, Vec<String>>,
) -> Result<Outcome, StepError> {
    let provider = setup.provider().map_err(dns_err)?;
    let mut instructions = Vec::new();
    let mut zones: Vec<(ZoneView, Vec<Rrset>)> = Vec::new();
    for (zone, wanted) in by_zone(targets) {
        let keys: Vec<RrsetKey> = wanted.iter().map(|r| r.key.clone()).collect();
        let view = view(setup, provider.as_ref(), &zone, &keys)
            .await
            .map_err(dns_err)?;
        let mut pairs = Vec::new();
        for want in &wanted {
            let current = view.current(&want.key);
            if !current.same_as(want)
                && expected_before.get(&want.key).is_some_and(|values| {
                    *values != current.values && current.values != want.values
                })
            {
                return Err(StepError::permanent(format!(
                    "{} changed since cutover recorded it (now {}); run `cutover plan` to see the zone as it is",
                    want.key.label(),
                    current.shown_values()
                )));
            }
            pairs.push((current, want.clone()));
        }
        let changes = rrset::changes(&zone, pairs);
        if !changes.is_empty() {
            match provider.apply(&zone, &changes).await.map_err(dns_err)? {
                Applied::Done => {}
                Applied::ByPerson { instructions: text } => instructions.push(text),
            }
        }
        zones.push((view, wanted));
    }
    if !instructions.is_empty() {
        let shown_at = ctx
            .checkpoint("shown")
            .and_then(|v| std::str::from_utf8(v).ok()?.parse::<u128>().ok());
        let approved = match (ctx.approval(), shown_at) {
            (Some(approval), Some(shown)) => approval
                .at
                .duration_since(UNIX_EPOCH)
                .is_ok_and(|at| at.as_millis() >= shown),
            _ => false,
        };
        if !approved {
            let now_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0)
                .to_string();
            ctx.commit(Counts::default(), &[("shown", now_ms.as_bytes())])?;
            return Ok(Outcome::Waiting(format!(
                "{}\nMake these changes at the DNS host (cutover then checks every authoritative server until all publish them),",
                instructions.join("\n")
            )));
        }
    }
    let mut reports = Vec::new();
    for (view, wanted) in &zones {
        match authority::poll(
            &view.servers,
            wanted,
            setup.propagation_timeout,
            QUERY_TIMEOUT,
            ctx.cancel_token(),
        )
        .await
        {
            PollOutcome::Complete(report) => reports.push((view.zone.clone(), report)),
            PollOutcome::Cancelled => return Ok(Outcome::Interrupted),
            PollOutcome::TimedOut(report) => {
                return Err(timed_out(
                    setup,
                    &view.zone,
                    "the change; apply again to keep waiting",
                    &report,
                ))
            }
        }
    }
    ctx.commit(Counts::default(), &[("report", &json(&reports))])?;
    Ok(Outcome::Complete)
}

/// The `dns.lower-ttl` runner.
pub fn lower_ttl_runner(plan: &Plan, base_dir: &Path) -> Arc<dyn StepRunner> {
    Arc::new(LowerTtl {
        setup: Setup::new(plan, base_dir),
    })
}

/// The `dns.cutover` runner.
pub fn cutover_runner(plan: &Plan, base_dir: &Path) -> Arc<dyn StepRunner> {
    Arc::new(Cutover {
        setup: Setup::new(plan, base_dir),
    })
}

struct LowerTtl {
    setup: Setup,
}

/// The RRsets the cutover will change whose TTL is above `to`, as they are now.
async fn to_lower(setup: &Setup, to: u32) -> Result<Vec<Kept>, DnsError> {
    let provider = setup.provider()?;
    let mut out = Vec::new();
    for domain in &setup.domains {
        let computed = compute(setup, provider.as_ref(), domain).await?;
        for want in &computed.desired {
            let current = computed.zone.current(&want.key);
            if current.exists() && !current.same_as(want) && current.ttl > to {
                out.push(Kept {
                    zone: domain.zone.clone(),
                    rrset: current,
                });
            }
        }
    }
    Ok(out)
}

impl StepRunner for LowerTtl {
    fn config_hash(&self) -> String {
        self.setup.hash(LOWER_TTL_STEP)
    }

    fn observe(&self, _ctx: &ObserveCtx<'_>) -> Result<Observation, StepError> {
        let to = self.setup.lower_to.unwrap_or(0);
        let lower = block_on(to_lower(&self.setup, to))?.map_err(dns_err)?;
        Ok(Observation {
            items: lower.len() as u64,
            note: Some(format!("lower {} record set(s) to TTL {to}", lower.len())),
            ..Observation::default()
        })
    }

    fn apply<'a>(&'a self, ctx: &'a mut ApplyCtx) -> BoxFuture<'a, Result<Outcome, StepError>> {
        Box::pin(async move {
            let to = self.setup.lower_to.unwrap_or(0);
            if ctx.checkpoint("planned").is_none() {
                let originals = to_lower(&self.setup, to).await.map_err(dns_err)?;
                let entries: Vec<(String, Vec<u8>)> = originals
                    .iter()
                    .map(|k| (kept_key("original", &k.rrset.key), json(k)))
                    .collect();
                commit_planned(ctx, entries)?;
            }
            let originals = kept(ctx.checkpoints(), "original");
            let targets: Vec<Kept> = originals
                .iter()
                .map(|k| Kept {
                    zone: k.zone.clone(),
                    rrset: k.rrset.with_ttl(to),
                })
                .collect();
            let expected: BTreeMap<RrsetKey, Vec<String>> = originals
                .iter()
                .map(|k| (k.rrset.key.clone(), k.rrset.values.clone()))
                .collect();
            if !targets.is_empty() {
                let outcome = drive(&self.setup, ctx, &targets, &expected).await?;
                if outcome != Outcome::Complete {
                    return Ok(outcome);
                }
            }
            let record = Lowered {
                at: unix_now(),
                old_ttl: originals.iter().map(|k| k.rrset.ttl).max().unwrap_or(0),
                lowered: !originals.is_empty(),
            };
            ctx.commit(Counts::default(), &[("lowered", &json(&record))])?;
            Ok(Outcome::Complete)
        })
    }
}

struct Cutover {
    setup: Setup,
}

/// When the cutover may run, from `dns.lower-ttl`'s record: `ahead` and the old TTL after
/// the TTL was lowered (only the old TTL when nothing needed lowering). `None` without a
/// `lower_ttl` or before it is done.
fn cutover_not_before(
    setup: &Setup,
    lower_checkpoints: &BTreeMap<String, Vec<u8>>,
) -> Option<SystemTime> {
    setup.lower_to?;
    let record = lowered(lower_checkpoints)?;
    let old_ttl = Duration::from_secs(u64::from(record.old_ttl));
    let wait = if record.lowered {
        setup.ahead.max(old_ttl)
    } else {
        old_ttl
    };
    Some(UNIX_EPOCH + Duration::from_secs(record.at) + wait)
}

impl StepRunner for Cutover {
    fn config_hash(&self) -> String {
        self.setup.hash(CUTOVER_STEP)
    }

    fn not_before(&self, ctx: &ObserveCtx<'_>) -> Result<Option<SystemTime>, StepError> {
        Ok(cutover_not_before(
            &self.setup,
            &ctx.checkpoints_of(LOWER_TTL_STEP)?,
        ))
    }

    fn observe(&self, ctx: &ObserveCtx<'_>) -> Result<Observation, StepError> {
        let provider = self.setup.provider().map_err(dns_err)?;
        let mut changes = 0;
        for domain in &self.setup.domains {
            let computed =
                block_on(compute(&self.setup, provider.as_ref(), domain))?.map_err(dns_err)?;
            changes += computed
                .desired
                .iter()
                .filter(|w| !computed.zone.current(&w.key).same_as(w))
                .count();
        }
        let when = self
            .not_before(ctx)?
            .filter(|t| *t > SystemTime::now())
            .map(|t| format!(", not before {}", crate::state::format_utc(t)))
            .unwrap_or_default();
        Ok(Observation {
            items: changes as u64,
            note: Some(format!("change {changes} record set(s){when}")),
            ..Observation::default()
        })
    }

    fn apply<'a>(&'a self, ctx: &'a mut ApplyCtx) -> BoxFuture<'a, Result<Outcome, StepError>> {
        Box::pin(async move {
            let lower = ctx.checkpoints_of(LOWER_TTL_STEP)?;
            if let Some(at) = cutover_not_before(&self.setup, &lower) {
                if at > SystemTime::now() {
                    return Err(StepError::permanent(format!(
                        "refusing to cut over before {}: resolvers may still cache the old TTL",
                        crate::state::format_utc(at)
                    )));
                }
            }
            if ctx.checkpoint("planned").is_none() {
                let provider = self.setup.provider().map_err(dns_err)?;
                let originals: BTreeMap<RrsetKey, Kept> = kept(&lower, "original")
                    .into_iter()
                    .map(|k| (k.rrset.key.clone(), k))
                    .collect();
                let mut entries: Vec<(String, Vec<u8>)> = Vec::new();
                for domain in &self.setup.domains {
                    let computed = compute(&self.setup, provider.as_ref(), domain)
                        .await
                        .map_err(dns_err)?;
                    for want in &computed.desired {
                        let current = computed.zone.current(&want.key);
                        if current.same_as(want) {
                            continue;
                        }
                        let previous = originals.get(&want.key).cloned().unwrap_or(Kept {
                            zone: domain.zone.clone(),
                            rrset: current,
                        });
                        entries.push((kept_key("previous", &want.key), json(&previous)));
                        entries.push((
                            kept_key("desired", &want.key),
                            json(&Kept {
                                zone: domain.zone.clone(),
                                rrset: want.clone(),
                            }),
                        ));
                    }
                }
                commit_planned(ctx, entries)?;
            }
            let targets = kept(ctx.checkpoints(), "desired");
            // The zone may still hold the previous records, or their TTL-lowered copy.
            let expected: BTreeMap<RrsetKey, Vec<String>> = kept(ctx.checkpoints(), "previous")
                .into_iter()
                .map(|k| (k.rrset.key.clone(), k.rrset.values))
                .collect();
            if targets.is_empty() {
                ctx.commit(Counts::default(), &[("report", b"[]")])?;
                return Ok(Outcome::Complete);
            }
            drive(&self.setup, ctx, &targets, &expected).await
        })
    }
}

/// What `cutover plan` shows about DNS, read from the zones' servers and the state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsPreview {
    pub provider: String,
    pub zones: Vec<ZonePreview>,
    /// SPF past the lookup limit, DKIM left out, …
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// When `dns.cutover` may run (RFC 3339 UTC), while that is in the future.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<String>,
    /// The time left until `not_before`, e.g. `23h 59m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_left: Option<String>,
    /// What `cutover rollback dns` would change now (diff lines, per zone in order).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rollback: Vec<String>,
}

/// One zone in a [`DnsPreview`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZonePreview {
    pub zone: String,
    /// Its authoritative servers, as polled.
    pub servers: Vec<String>,
    /// Where the current RRsets were read (the rfc2136 primary, else the first server).
    pub read_from: String,
    /// `dns.lower-ttl`'s changes, while it is not done.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lower_ttl: Vec<String>,
    /// `dns.cutover`'s changes: the zone now → the desired records.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cutover: Vec<String>,
}

fn is_done(store: &dyn StateStore, step: &str) -> Result<bool, StepError> {
    Ok(store
        .step(step)?
        .is_some_and(|r| r.status == crate::state::StepStatus::Done))
}

/// The DNS part of `cutover plan`: per zone the TTL lowering and the cutover as diff lines,
/// when the cutover may run, and what a rollback would change. Reads the zones; never writes.
pub fn preview(
    plan: &Plan,
    base_dir: &Path,
    store: &dyn StateStore,
) -> Result<DnsPreview, StepError> {
    let setup = Setup::new(plan, base_dir);
    let lower_done = is_done(store, LOWER_TTL_STEP)?;
    // Once the cutover is done the zones are read only for what a rollback would change.
    let read_zones = !is_done(store, CUTOVER_STEP)?;
    let lower_checkpoints = store.checkpoints(LOWER_TTL_STEP)?;
    let rollback = rollback_changes(plan, base_dir, store)?;
    block_on(async {
        let provider = setup.provider().map_err(dns_err)?;
        let mut preview = DnsPreview {
            provider: provider.describe(),
            zones: Vec::new(),
            warnings: Vec::new(),
            not_before: None,
            time_left: None,
            rollback: rollback
                .iter()
                .flat_map(|z| z.changes.iter().map(Change::line))
                .collect(),
        };
        for domain in setup.domains.iter().filter(|_| read_zones) {
            let computed = compute(&setup, provider.as_ref(), domain)
                .await
                .map_err(dns_err)?;
            let Some(read_from) = &computed.zone.read_from else {
                continue; // nothing managed in this zone
            };
            let pairs = computed
                .desired
                .iter()
                .map(|w| (computed.zone.current(&w.key), w.clone()));
            let cutover: Vec<Change> = rrset::changes(&domain.zone, pairs);
            let lower_ttl = match setup.lower_to {
                Some(to) if !lower_done => cutover
                    .iter()
                    .filter(|c| c.before.exists() && c.before.ttl > to)
                    .map(|c| Change {
                        zone: c.zone.clone(),
                        before: c.before.clone(),
                        after: c.before.with_ttl(to),
                    })
                    .map(|c| c.line())
                    .collect(),
                _ => Vec::new(),
            };
            preview.warnings.extend(computed.warnings);
            preview.zones.push(ZonePreview {
                zone: rrset::shown_name(&domain.zone).to_string(),
                servers: computed.zone.servers.iter().map(Server::label).collect(),
                read_from: read_from.label(),
                lower_ttl,
                cutover: cutover.iter().map(Change::line).collect(),
            });
        }
        if let Some(at) = cutover_not_before(&setup, &lower_checkpoints) {
            if let Ok(left) = at.duration_since(SystemTime::now()) {
                preview.not_before = Some(crate::state::format_utc(at));
                preview.time_left = Some(crate::time::human_duration(left));
            }
        }
        Ok(preview)
    })?
}

/// The changes of one zone that `cutover rollback dns` would make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollbackZone {
    pub zone: String,
    pub changes: Vec<Change>,
}

/// What the DNS steps recorded before changing anything: `dns.lower-ttl`'s originals, then
/// `dns.cutover`'s previous RRsets for the rest.
fn recorded_originals(store: &dyn StateStore) -> Result<Vec<Kept>, StepError> {
    let mut out = kept(&store.checkpoints(LOWER_TTL_STEP)?, "original");
    for k in kept(&store.checkpoints(CUTOVER_STEP)?, "previous") {
        if !out.iter().any(|o| o.rrset.key == k.rrset.key) {
            out.push(k);
        }
    }
    Ok(out)
}

/// What restoring the recorded RRsets would change now, per zone (reads the zones). Empty
/// when the state records no DNS change, or the zones already hold the recorded RRsets.
pub fn rollback_changes(
    plan: &Plan,
    base_dir: &Path,
    store: &dyn StateStore,
) -> Result<Vec<RollbackZone>, StepError> {
    let originals = recorded_originals(store)?;
    if originals.is_empty() {
        return Ok(Vec::new());
    }
    let setup = Setup::new(plan, base_dir);
    block_on(async {
        let provider = setup.provider().map_err(dns_err)?;
        let mut out = Vec::new();
        for (zone, wanted) in by_zone(&originals) {
            let keys: Vec<RrsetKey> = wanted.iter().map(|r| r.key.clone()).collect();
            let view = view(&setup, provider.as_ref(), &zone, &keys)
                .await
                .map_err(dns_err)?;
            let changes =
                rrset::changes(&zone, wanted.into_iter().map(|w| (view.current(&w.key), w)));
            if !changes.is_empty() {
                out.push(RollbackZone { zone, changes });
            }
        }
        Ok(out)
    })?
}

/// What a person must change at the DNS host to roll back (the `manual` provider's table).
pub fn rollback_instructions(zones: &[RollbackZone]) -> String {
    zones
        .iter()
        .map(|z| manual::instructions(&z.zone, &z.changes))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Restores the recorded RRsets through the plan's provider (with `manual`, the caller has
/// had a person make [`rollback_instructions`]' changes), polls every authoritative server
/// until all publish them, then resets `dns.lower-ttl` and `dns.cutover` so a later apply
/// starts the DNS cutover afresh. The caller holds the apply lock. Returns each zone's last
/// poll round; `Ok(None)` when cancelled.
pub fn rollback(
    plan: &Plan,
    base_dir: &Path,
    store: &dyn StateStore,
    cancel: &CancellationToken,
) -> Result<Option<Vec<(String, PollReport)>>, StepError> {
    let originals = recorded_originals(store)?;
    let setup = Setup::new(plan, base_dir);
    let reports = block_on(async {
        let provider = setup.provider().map_err(dns_err)?;
        let mut reports = Vec::new();
        for (zone, wanted) in by_zone(&originals) {
            let keys: Vec<RrsetKey> = wanted.iter().map(|r| r.key.clone()).collect();
            let view = view(&setup, provider.as_ref(), &zone, &keys)
                .await
                .map_err(dns_err)?;
            let changes = rrset::changes(
                &zone,
                wanted.iter().map(|w| (view.current(&w.key), w.clone())),
            );
            if !changes.is_empty() {
                // `ByPerson`: the caller confirmed the person made the change; poll for it.
                provider.apply(&zone, &changes).await.map_err(dns_err)?;
            }
            match authority::poll(
                &view.servers,
                &wanted,
                setup.propagation_timeout,
                QUERY_TIMEOUT,
                cancel,
            )
            .await
            {
                PollOutcome::Complete(report) => reports.push((zone, report)),
                PollOutcome::Cancelled => return Ok(None),
                PollOutcome::TimedOut(report) => {
                    return Err(timed_out(&setup, &zone, "the restored records", &report))
                }
            }
        }
        Ok(Some(reports))
    })??;
    if reports.is_some() {
        store.clear_step(CUTOVER_STEP)?;
        store.clear_step(LOWER_TTL_STEP)?;
    }
    Ok(reports)
}

/// Each authoritative server's last answer, per zone, as `dns.cutover` recorded them: the
/// verification the report lists.
pub fn verification(store: &dyn StateStore) -> Result<Vec<(String, PollReport)>, StepError> {
    Ok(store
        .checkpoints(CUTOVER_STEP)?
        .get("report")
        .and_then(|v| serde_json::from_slice(v).ok())
        .unwrap_or_default())
}

/// Runs a future to completion from synchronous code (`observe`, `plan`, `rollback`): on a
/// current-thread runtime of its own, in a thread of its own so that it works inside the
/// walker's runtime too.
pub fn block_on<T: Send>(
    future: impl std::future::Future<Output = T> + Send,
) -> Result<T, StepError> {
    let run = move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map(|rt| rt.block_on(future))
            .map_err(|e| StepError::permanent(format!("cannot start a runtime: {e}")))
    };
    std::thread::scope(|s| s.spawn(run).join())
        .unwrap_or_else(|_| Err(StepError::permanent("DNS thread panicked")))
}
