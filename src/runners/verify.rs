//! `verify.*`: per target folder and identity, the target holds at least as many copies as
//! any one of the user's sources has (mail over the size limit, outside date windows and,
//! unless the plan copies it, flagged `\Deleted` excepted). Counting per identity catches
//! what a presence check would miss: a second, different message with a Message-ID already
//! at the target. Read-only on both sides, so `plan` shows what is still missing.
//!
//! Source folders are compared one by one, not added up: two sources of one user overlap (a
//! PST and the POP3 account it was filled from), as may two folders merged into one, and the
//! copy stores their common mail once.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use super::attempt::{on_own_runtime, run_attempt, Failure};
use super::copy::{CopyRunner, Renames};
use super::skipped;
use super::tally::Tally;
use crate::connectors::mail::identity::IdentityCounts;
use crate::connectors::mailflow::{display_target, Checkpoints, Route, Side};
use crate::connectors::net::reserve_connections;
use crate::engine::{
    hash_parts, ApplyCtx, BoxFuture, Observation, ObserveCtx, Outcome, StepError, StepRunner,
    Unsupported,
};
use crate::graph::{Step, StepKind};
use crate::plan::model::{Plan, User};
use crate::state::Counts;

/// Builds the verify runner of `user`; `steps` are the graph's steps of that user.
pub(crate) fn runner(plan: &Plan, user: &User, base: &Path, steps: &[Step]) -> Arc<dyn StepRunner> {
    let mut copies = Vec::new();
    for (i, m) in user.migrate.iter().enumerate() {
        let Some(step) = steps
            .iter()
            .find(|s| s.kind == StepKind::Copy && s.migration == Some(i))
        else {
            return Arc::new(Unsupported::new("verify without its copy steps"));
        };
        match CopyRunner::new(plan, user, m, base, step) {
            Ok(c) => copies.push(c),
            Err(what) => return Arc::new(Unsupported::new(format!("verify of {what}"))),
        }
    }
    // Copy and delta steps of the user: where refusals by the target are recorded.
    let writers = steps
        .iter()
        .filter(|s| matches!(s.kind, StepKind::Copy | StepKind::Delta))
        .map(|s| s.id.clone())
        .collect();
    let mut parts = vec!["verify".to_string()];
    parts.extend(copies.iter().map(|c| c.hash.clone()));
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    Arc::new(Verify {
        hash: hash_parts(&parts),
        copies,
        writers,
    })
}

struct Verify {
    copies: Vec<CopyRunner>,
    writers: Vec<String>,
    hash: String,
}

impl Verify {
    async fn tally(copies: Vec<CopyRunner>) -> Result<Tally, Failure> {
        // Per target folder: for each identity, the most copies any one source has.
        let mut needed: BTreeMap<
            Vec<String>,
            BTreeMap<crate::connectors::mail::identity::Identity, u32>,
        > = BTreeMap::new();
        for copy in &copies {
            let slots =
                reserve_connections(&copy.source.endpoints().iter().collect::<Vec<_>>()).await;
            let mut src = copy.source.open().await?;
            let folders = src.folders().await?;
            // The names the copy stored them under (Exchange renames some).
            let renames = Renames::of(
                copy.target.as_ref(),
                folders
                    .iter()
                    .filter_map(|f| copy.mapper.map(f))
                    .collect::<Vec<_>>()
                    .iter(),
            );
            for folder in folders {
                let Route::Copy(target) = copy.mapper.route(&folder) else {
                    continue;
                };
                let target = renames.name(&target);
                let mut metas = src
                    .list(&folder, &Checkpoints::new(), Side::Pending)
                    .await?;
                metas.retain(|m| {
                    m.in_window && m.size <= copy.max_bytes && (copy.copy_deleted || !m.deleted)
                });
                if metas.iter().any(|m| m.identity.is_none()) {
                    src.identify(&folder, &mut metas).await?;
                }
                let counts: IdentityCounts = metas.iter().filter_map(|m| m.identity).collect();
                let need = needed.entry(target).or_default();
                for (identity, n) in counts.iter() {
                    let slot = need.entry(*identity).or_default();
                    *slot = (*slot).max(n);
                }
            }
            let _ = src.close().await;
            drop(slots);
        }
        let mut tally = Tally::default();
        let Some(first) = copies.first() else {
            return Ok(tally);
        };
        let slots = reserve_connections(&first.target.endpoints().iter().collect::<Vec<_>>()).await;
        let mut tgt = first.target.open(false).await?;
        for (folder, need) in needed {
            let present = tgt.identities(&folder).await?;
            let checked: u64 = need.values().map(|&n| u64::from(n)).sum();
            let missing: u64 = need
                .iter()
                .map(|(identity, &n)| u64::from(n.saturating_sub(present.get(identity))))
                .sum();
            tally.add(display_target(&folder), checked, missing);
        }
        let _ = tgt.close().await;
        drop(slots);
        Ok(tally)
    }
}

impl StepRunner for Verify {
    fn config_hash(&self) -> String {
        self.hash.clone()
    }

    fn observe(&self, _ctx: &ObserveCtx<'_>) -> Result<Observation, StepError> {
        let copies = self.copies.clone();
        let tally = on_own_runtime(move || Self::tally(copies))?;
        Ok(tally.observation())
    }

    fn apply<'a>(&'a self, ctx: &'a mut ApplyCtx) -> BoxFuture<'a, Result<Outcome, StepError>> {
        let copies = self.copies.clone();
        let mut ctx = ctx.clone();
        // Messages the target refused as too big are reported, not lost: they excuse as
        // many missing ones (the source side already leaves out those over the plan's limit
        // and, unless copied, those flagged \Deleted).
        let mut refused = 0u64;
        for id in &self.writers {
            let left = skipped::from_checkpoints(&ctx.checkpoints_of(id).unwrap_or_default());
            refused += left
                .iter()
                .filter(|m| m.reason != skipped::OVER_LIMIT && m.reason != skipped::FLAGGED_DELETED)
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
