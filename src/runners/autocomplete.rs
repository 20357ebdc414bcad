//! The `autocomplete.<user>` runner: carries a user's Outlook caches over with
//! [`crate::connectors::autocomplete::carry_over`], writing the per-user outputs into
//! `<output_dir>/autocomplete/`. The outputs depend only on the inputs, so the config hash
//! covers the inputs' bytes: same inputs → unchanged in `plan`, changed caches → rerun.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::blocking;
use crate::connectors::autocomplete::{self, KnownMailbox};
use crate::connectors::graph::ExchangeChange;
use crate::connectors::pst::PstFile;
use crate::engine::{
    hash_parts, ApplyCtx, BoxFuture, Observation, ObserveCtx, Outcome, StepError, StepRunner,
};
use crate::graph::user_slug;
use crate::plan::model::{Plan, Source, User};
use crate::state::Counts;

pub struct AutocompleteRunner {
    inputs: Vec<PathBuf>,
    /// Caches found inside the user's PST files: (the PST, its stream's bytes).
    pst_streams: Vec<(PathBuf, Vec<u8>)>,
    address_map: Option<PathBuf>,
    known: Vec<KnownMailbox>,
    out_dir: PathBuf,
    slug: String,
    hash: String,
}

impl AutocompleteRunner {
    /// `None` when the user has no `autocomplete:` or nothing to read (no files, no PST
    /// holding a cache).
    pub fn new(plan: &Plan, user: &User, base_dir: &Path) -> Option<AutocompleteRunner> {
        let config = user.autocomplete.as_ref()?;
        let inputs: Vec<PathBuf> = config.files.iter().map(|f| base_dir.join(f)).collect();
        let pst_streams = if config.from_pst {
            pst_caches(plan, user, base_dir)
        } else {
            Vec::new()
        };
        if inputs.is_empty() && pst_streams.is_empty() {
            return None;
        }
        let address_map = config.address_map.as_ref().map(|m| base_dir.join(m));
        let known: Vec<KnownMailbox> = plan
            .users
            .iter()
            .map(|u| KnownMailbox {
                smtp: u.email.clone(),
                display_name: u.display_name.clone(),
                aliases: u.aliases.clone(),
                legacy_dn: None,
            })
            .collect();
        let out_dir = base_dir
            .join(&plan.settings.output_dir)
            .join("autocomplete");
        let slug = user_slug(&user.email);
        let mut parts = vec![
            "autocomplete".to_string(),
            out_dir.display().to_string(),
            slug.clone(),
        ];
        for file in inputs.iter().chain(address_map.iter()) {
            parts.push(file.display().to_string());
            parts.push(content_hash(file));
        }
        for (pst, stream) in &pst_streams {
            parts.push(pst.display().to_string());
            parts.push(hex(&Sha256::digest(stream)));
        }
        for k in &known {
            parts.push(format!(
                "{}|{:?}|{}",
                k.smtp,
                k.display_name,
                k.aliases.join(",")
            ));
        }
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        Some(AutocompleteRunner {
            hash: hash_parts(&refs),
            inputs,
            pst_streams,
            address_map,
            known,
            out_dir,
            slug,
        })
    }
}

/// The file's SHA-256, or a marker when it cannot be read (apply will then say why).
fn content_hash(path: &Path) -> String {
    match std::fs::read(path) {
        Ok(bytes) => hex(&Sha256::digest(&bytes)),
        Err(e) => format!("unreadable:{}", e.kind()),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The autocomplete streams inside the PST files `user` migrates. A PST that cannot be read
/// or holds none adds nothing here; its copy step reports why it cannot be read.
fn pst_caches(plan: &Plan, user: &User, base_dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    user.migrate
        .iter()
        .filter(|m| matches!(plan.sources.get(&m.from), Some(Source::Pst { .. })))
        .filter_map(|m| m.file.as_ref().map(|f| base_dir.join(f)))
        .filter_map(|path| {
            let stream = PstFile::open(&path).ok()?.autocomplete_stream().ok()??;
            Some((path, stream))
        })
        .collect()
}

impl AutocompleteRunner {
    /// The PST caches as files beside the outputs (private), so they merge like any input;
    /// returns every input.
    fn all_inputs(&self) -> Result<Vec<PathBuf>, StepError> {
        let mut inputs = self.inputs.clone();
        for (pst, stream) in &self.pst_streams {
            let stem = pst
                .file_stem()
                .map_or_else(|| "pst".into(), |s| s.to_string_lossy().into_owned());
            let stem: String = stem
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            let path = self
                .out_dir
                .join(format!("{}.from-{stem}.Stream_Autocomplete.dat", self.slug));
            crate::files::write_atomically(&path, stream).map_err(|e| {
                StepError::permanent(format!("cannot write {}: {e}", path.display()))
            })?;
            inputs.push(path);
        }
        Ok(inputs)
    }
}

impl StepRunner for AutocompleteRunner {
    fn config_hash(&self) -> String {
        self.hash.clone()
    }

    fn observe(&self, _ctx: &ObserveCtx) -> Result<Observation, StepError> {
        let mut entries = 0u64;
        for input in &self.inputs {
            let file =
                autocomplete::read_file(input).map_err(|e| StepError::permanent(e.to_string()))?;
            entries += file.rows.len() as u64;
        }
        for (pst, stream) in &self.pst_streams {
            let file = autocomplete::parse(stream).map_err(|e| {
                StepError::permanent(format!("the autocomplete cache in {}: {e}", pst.display()))
            })?;
            entries += file.rows.len() as u64;
        }
        Ok(Observation {
            items: entries,
            bytes: 0,
            present: 0,
            note: Some(format!("write outputs into {}", self.out_dir.display())),
            ..Observation::default()
        })
    }

    fn apply<'a>(&'a self, ctx: &'a mut ApplyCtx) -> BoxFuture<'a, Result<Outcome, StepError>> {
        let inputs = match self.all_inputs() {
            Ok(i) => i,
            Err(e) => return Box::pin(async move { Err(e) }),
        };
        let (inputs, known, map, out_dir, slug) = (
            inputs,
            self.known.clone(),
            self.address_map.clone(),
            self.out_dir.clone(),
            self.slug.clone(),
        );
        Box::pin(async move {
            let report = blocking(move || {
                autocomplete::carry_over(&inputs, &known, map.as_deref(), &out_dir, &slug)
                    .map_err(|e| StepError::permanent(e.to_string()))
            })
            .await?;
            let written: u64 = report.outputs.iter().map(|o| o.bytes as u64).sum();
            let summary = serde_json::json!({
                "entries": report.entries,
                "outputs": report.outputs.iter().map(|o| o.path.display().to_string()).collect::<Vec<_>>(),
                "unresolved_ex": report.unresolved.len(),
                "x500_proxies": report.x500_proxies.len(),
            });
            let summary = serde_json::to_vec(&summary).unwrap_or_default();
            // The X500 proxies also go into the plan's one Exchange Online script (an m365
            // target's report gathers every step's changes).
            let proxies: Vec<(String, Vec<u8>)> = report
                .x500_proxies
                .iter()
                .map(|p| {
                    ExchangeChange::AddAddress {
                        mailbox: p.mailbox.clone(),
                        address: p.proxy_address.clone(),
                    }
                    .checkpoint()
                })
                .collect();
            let mut checkpoints: Vec<(&str, &[u8])> = vec![("outputs", &summary)];
            checkpoints.extend(proxies.iter().map(|(k, v)| (k.as_str(), v.as_slice())));
            // Unresolved EX entries are left behind: listed, never silently dropped.
            ctx.commit(
                Counts {
                    items: report.entries as u64,
                    bytes: written,
                    left_behind: report.unresolved.len() as u64,
                    ..Counts::default()
                },
                &checkpoints,
            )?;
            Ok(Outcome::Complete)
        })
    }
}
