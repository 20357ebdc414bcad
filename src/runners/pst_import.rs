//! The `copy.<user>.<source>` steps of a `kind: pst, via: import-service` source: upload the
//! PST to the import service's storage ([`crate::connectors::azure_blob`]) and keep the
//! plan's mapping CSV ([`crate::connectors::pst_mapping`]) in line with what is uploaded.
//! The portal job that follows is the runbook gate `manual.pst-import`
//! ([`crate::plan::pst_import`]).
//!
//! Checkpoints (JSON values):
//! - `pst.upload` — the file's identity and the bytes of its blocks the service acknowledged
//!   (and the state counted), committed about once a second while blocks come in;
//! - `pst.done` — the identity and MD5 of the verified blob: a rerun after a crash between
//!   the commit and the step's end checks the blob's properties and sends nothing;
//! - `pst.row` — the step's mapping-CSV row. The mapping files hold the rows of every
//!   upload step that has one, in plan order, rewritten by each upload that finishes.
//!
//! Counts: `items` are blocks, `bytes` their bytes, as the service acknowledges them.
//! The config hash covers the file (path, size, modification time), the blob, the block
//! size and the CSV row's inputs — not the concurrency or bandwidth cap — so a changed PST
//! starts its step over, and changing how fast it is sent does not.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::connectors::azure_blob::{
    self,
    upload::{hex, md5_from_hex},
    BlobTarget, ContainerSas, FileIdentity, StagedBlock, UploadObserver, UploadOutcome,
    UploadSettings, UploadStart,
};
use crate::connectors::pst::{self, Format as PstFormat};
use crate::connectors::pst_mapping::{self, MappingRow};
use crate::engine::{
    hash_parts, ApplyCtx, BoxFuture, Observation, ObserveCtx, Outcome, StepError, StepRunner,
    Unsupported,
};
use crate::graph::StepGraph;
use crate::plan::model::{Migration, Plan, SecretRef, Source, Target, User};
use crate::plan::pst_import;
use crate::state::Counts;

const UPLOAD: &str = "pst.upload";
const DONE: &str = "pst.done";
const ROW: &str = "pst.row";
const MIB: u64 = 1024 * 1024;

/// How often acknowledged blocks are committed to the state (each commit is an fsync).
const COMMIT_EVERY: Duration = Duration::from_secs(1);

/// The runner of an upload step, or an [`Unsupported`] one saying what the plan lacks.
pub(crate) fn upload_runner(
    plan: &Plan,
    graph: &StepGraph,
    user: &User,
    migration: &Migration,
    base_dir: &Path,
) -> Arc<dyn StepRunner> {
    match PstUpload::new(plan, graph, user, migration, base_dir) {
        Ok(r) => Arc::new(r),
        Err(what) => Arc::new(Unsupported::new(what)),
    }
}

/// The inputs of the step's mapping-CSV row, before the PST's header is read.
#[derive(Debug, Clone)]
struct RowSpec {
    mailbox: String,
    is_archive: bool,
    target_root_folder: Option<String>,
    code_page: Option<u32>,
}

struct PstUpload {
    /// The PST, resolved against the plan's folder, and as the plan writes it.
    file: PathBuf,
    file_written: String,
    blob_name: String,
    sas: SecretRef,
    base_dir: PathBuf,
    settings: UploadSettings,
    row: RowSpec,
    /// Where the mapping files go, and their stem.
    csv_dir: PathBuf,
    csv_stem: String,
    /// The mapping file(s) as the plan's folder sees them, for the report.
    csv_shown: String,
    /// Every upload step of the plan, in plan order: the rows of the mapping files.
    upload_steps: Arc<Vec<String>>,
    hash: String,
}

impl PstUpload {
    fn new(
        plan: &Plan,
        graph: &StepGraph,
        user: &User,
        migration: &Migration,
        base_dir: &Path,
    ) -> Result<PstUpload, String> {
        let Some(Source::Pst {
            sas_url: Some(sas),
            upload_concurrency,
            block_mib,
            max_upload_mbps,
            code_page,
            ..
        }) = plan.sources.get(&migration.from)
        else {
            return Err(format!(
                "upload from source `{}` without `sas_url`",
                migration.from
            ));
        };
        let Some(file_written) = migration.file.as_ref() else {
            return Err("PST upload without `file`".into());
        };
        let blob_name = pst_import::blob_name(plan, user, migration)
            .ok_or_else(|| format!("`{}` has no file name", file_written.display()))?;
        let mailbox = match &plan.target {
            Target::M365 { initial_domain, .. } => {
                super::m365::login_for(user, initial_domain.as_deref())
            }
            _ => user.email.clone(),
        };
        let settings = UploadSettings {
            block_size: u64::from(block_mib.unwrap_or(4)).max(1) * MIB,
            concurrency: upload_concurrency.unwrap_or(2).max(1) as usize,
            max_upload_mbps: *max_upload_mbps,
            ..UploadSettings::default()
        };
        let row = RowSpec {
            mailbox,
            is_archive: migration.archive_mailbox,
            target_root_folder: pst_mapping::target_root_folder(migration.into.as_deref()),
            code_page: *code_page,
        };
        let upload_steps: Vec<String> = pst_import::uploads(plan)
            .into_iter()
            .filter_map(|(ui, mi)| {
                graph
                    .steps()
                    .find(|s| s.user == Some(ui) && s.migration == Some(mi))
                    .map(|s| s.id.clone())
            })
            .collect();
        let file = base_dir.join(file_written);
        let (size, mtime) = std::fs::metadata(&file)
            .map(|m| {
                let mtime = m
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos());
                (m.len().to_string(), mtime.to_string())
            })
            .unwrap_or_else(|_| ("missing".into(), String::new()));
        let hash = hash_parts(&[
            "pst-import-upload",
            &file_written.display().to_string(),
            &size,
            &mtime,
            &blob_name,
            &format!("{sas:?}"),
            &settings.block_size.to_string(),
            &row.mailbox,
            &row.is_archive.to_string(),
            row.target_root_folder.as_deref().unwrap_or(""),
            &row.code_page.map(|c| c.to_string()).unwrap_or_default(),
        ]);
        Ok(PstUpload {
            file,
            file_written: file_written.display().to_string(),
            blob_name,
            sas: sas.clone(),
            base_dir: base_dir.to_path_buf(),
            settings,
            row,
            csv_dir: base_dir.join(&plan.settings.output_dir),
            csv_stem: pst_import::csv_stem(plan),
            csv_shown: pst_import::csv_paths(plan)
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            upload_steps: Arc::new(upload_steps),
            hash,
        })
    }

    /// The PST's format from its header (the PST connector's check); an error names the
    /// file, offset and structure.
    fn format(&self) -> Result<PstFormat, StepError> {
        pst::format_of(&self.file).map_err(|e| {
            StepError::permanent(
                e.to_string()
                    .replace(&self.file.display().to_string(), &self.file_written),
            )
        })
    }

    /// The step's CSV row: `ContentCodePage` only for an ANSI PST.
    fn mapping_row(&self, format: PstFormat) -> Result<MappingRow, StepError> {
        let code_page = match format {
            PstFormat::Ansi => self.row.code_page,
            PstFormat::Unicode => None,
        };
        MappingRow::new(
            &self.blob_name,
            &self.row.mailbox,
            self.row.is_archive,
            self.row.target_root_folder.clone(),
            code_page,
        )
        .map_err(|e| StepError::permanent(e.to_string()))
    }

    fn upload_settings(&self, size: u64) -> u64 {
        self.settings.block_size_for(size)
    }
}

/// The file's identity as checkpointed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct IdentityRecord {
    size: u64,
    mtime_ns: u128,
    tag: u64,
    block_size: u64,
}

impl From<&FileIdentity> for IdentityRecord {
    fn from(i: &FileIdentity) -> Self {
        IdentityRecord {
            size: i.size,
            mtime_ns: i.mtime_ns,
            tag: i.tag,
            block_size: i.block_size,
        }
    }
}

impl IdentityRecord {
    fn identity(&self) -> FileIdentity {
        FileIdentity {
            size: self.size,
            mtime_ns: self.mtime_ns,
            tag: self.tag,
            block_size: self.block_size,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct UploadRecord {
    file: IdentityRecord,
    /// Bytes of acknowledged blocks the state has counted.
    counted_bytes: u64,
    counted_blocks: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct DoneRecord {
    file: IdentityRecord,
    /// Hex MD5 of the file (= the blob's Content-MD5).
    md5: String,
}

/// A file size for the plan line: MB, or GB from 1 GB on (rendering proper lives in the
/// CLI; a runner's summary is one finished line).
fn size_text(bytes: u64) -> String {
    if bytes >= 1_000_000_000 {
        format!("{:.2} GB", bytes as f64 / 1e9)
    } else {
        format!("{:.1} MB", bytes as f64 / 1e6)
    }
}

fn decode<T: for<'de> Deserialize<'de>>(value: Option<&[u8]>) -> Option<T> {
    serde_json::from_slice(value?).ok()
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

impl StepRunner for PstUpload {
    fn config_hash(&self) -> String {
        self.hash.clone()
    }

    fn observe(&self, ctx: &ObserveCtx<'_>) -> Result<Observation, StepError> {
        let size = std::fs::metadata(&self.file)
            .map_err(|e| StepError::permanent(format!("{}: {e}", self.file_written)))?
            .len();
        let format = self.format()?;
        let row = self.mapping_row(format)?;
        let block_size = self.upload_settings(size);
        let blocks = size.div_ceil(block_size);
        let counted: Option<UploadRecord> = decode(ctx.checkpoints.get(UPLOAD).map(Vec::as_slice));
        let (done_blocks, done_bytes) = counted
            .filter(|r| r.file.size == size && r.file.block_size == block_size)
            .map_or((0, 0), |r| (r.counted_blocks, r.counted_bytes));
        let mut detail = vec![
            format!("to blob {}", self.blob_name),
            format!("mapping CSV row: {}", row.csv_line()),
        ];
        if format == PstFormat::Ansi && self.row.code_page.is_none() {
            detail.push("ANSI PST: ContentCodePage left blank (fine for Western European text); set the source's `code_page` for other languages, e.g. 932 Japanese".into());
        }
        let resumed = if done_bytes > 0 {
            format!("; {} already uploaded", size_text(done_bytes))
        } else {
            String::new()
        };
        Ok(Observation {
            items: blocks.saturating_sub(done_blocks),
            bytes: size.saturating_sub(done_bytes),
            present: done_blocks,
            summary: Some(format!(
                "upload {} ({}, {} PST){resumed}",
                self.file_written,
                size_text(size),
                match format {
                    PstFormat::Ansi => "ANSI",
                    PstFormat::Unicode => "Unicode",
                }
            )),
            detail,
            ..Observation::default()
        })
    }

    fn apply<'a>(&'a self, ctx: &'a mut ApplyCtx) -> BoxFuture<'a, Result<Outcome, StepError>> {
        Box::pin(async move {
            let format = self.format()?;
            let row = self.mapping_row(format)?;
            let secret = crate::secrets::resolve(&self.sas, &self.base_dir, false)
                .map_err(|e| StepError::permanent(format!("sas_url: {e}")))?;
            let sas = ContainerSas::parse(secret.expose())
                .map_err(|e| StepError::permanent(format!("sas_url: {e}")))?;
            drop(secret);
            let target = BlobTarget::new(&sas, &self.blob_name)
                .map_err(|e| StepError::permanent(e.message))?;

            let known = decode::<DoneRecord>(ctx.checkpoint(DONE))
                .and_then(|d| md5_from_hex(&d.md5).map(|md5| (d.file.identity(), md5)));
            let counted: Option<UploadRecord> = decode(ctx.checkpoint(UPLOAD));
            let observer = Arc::new(StepObserver {
                ctx: Mutex::new(ctx.clone()),
                state: Mutex::new(Tally {
                    identity: None,
                    counted_bytes: counted.as_ref().map_or(0, |c| c.counted_bytes),
                    counted_blocks: counted.as_ref().map_or(0, |c| c.counted_blocks),
                    pending_bytes: 0,
                    pending_blocks: 0,
                    last_commit: Instant::now(),
                    reported_sent: 0,
                }),
            });
            let outcome = azure_blob::upload_file(
                &target,
                &self.file,
                &self.settings,
                known,
                observer.clone(),
                ctx.cancel_token(),
            )
            .await;
            observer.flush()?;
            let report = match outcome {
                Ok(UploadOutcome::Complete(report)) => report,
                Ok(UploadOutcome::Interrupted(_)) => return Ok(Outcome::Interrupted),
                Err(e) if e.transient => {
                    return Err(StepError::transient(format!(
                        "{}: {}",
                        self.file_written, e.message
                    )))
                }
                Err(e) => {
                    return Err(StepError::permanent(format!(
                        "{}: {}",
                        self.file_written, e.message
                    )))
                }
            };
            let identity = observer.identity().ok_or_else(|| {
                StepError::permanent("internal: the upload did not say what it found")
            })?;
            let md5 = report.md5.ok_or_else(|| {
                StepError::permanent("internal: a finished upload without its MD5")
            })?;
            let done = DoneRecord {
                file: IdentityRecord::from(&identity),
                md5: hex(&md5),
            };
            let (done_json, row_json) = (encode(&done), encode(&row));
            let (note_key, note) = super::notes::checkpoint(
                "upload",
                &format!(
                    "{} uploaded to the PST Import Service as {} (MD5 {}); mapping file {}",
                    self.file_written, self.blob_name, done.md5, self.csv_shown
                ),
            );
            ctx.commit(
                Counts::default(),
                &[
                    (DONE, done_json.as_slice()),
                    (ROW, row_json.as_slice()),
                    (note_key.as_str(), note.as_slice()),
                ],
            )?;
            self.write_mapping(ctx, &row)?;
            Ok(Outcome::Complete)
        })
    }
}

impl PstUpload {
    /// Rewrites the plan's mapping files from the rows of every finished upload step.
    /// Serialized: two uploads finishing together must not write a file missing the other.
    fn write_mapping(&self, ctx: &ApplyCtx, own: &MappingRow) -> Result<(), StepError> {
        static WRITING: Mutex<()> = Mutex::new(());
        let _guard = WRITING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut rows = Vec::new();
        for step in self.upload_steps.iter() {
            if step == &ctx.step().id {
                rows.push(own.clone());
                continue;
            }
            let checkpoints = ctx.checkpoints_of(step)?;
            if let Some(row) = decode::<MappingRow>(checkpoints.get(ROW).map(Vec::as_slice)) {
                rows.push(row);
            }
        }
        pst_mapping::write_files(&self.csv_dir, &self.csv_stem, &rows).map_err(|e| {
            StepError::permanent(format!(
                "cannot write the mapping CSV in {}: {e}",
                self.csv_dir.display()
            ))
        })?;
        Ok(())
    }
}

/// What the step has told the state so far.
struct Tally {
    identity: Option<FileIdentity>,
    /// Acknowledged bytes and blocks committed to the state.
    counted_bytes: u64,
    counted_blocks: u64,
    /// Acknowledged, not yet committed.
    pending_bytes: u64,
    pending_blocks: u64,
    last_commit: Instant,
    /// Sent bytes already reported for display.
    reported_sent: u64,
}

/// The upload's hooks into the step: checkpoints and progress.
struct StepObserver {
    ctx: Mutex<ApplyCtx>,
    state: Mutex<Tally>,
}

impl StepObserver {
    fn identity(&self) -> Option<FileIdentity> {
        self.lock().identity.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Commits the acknowledged blocks not yet in the state.
    fn flush(&self) -> Result<(), StepError> {
        let mut tally = self.lock();
        self.commit(&mut tally)
    }

    fn commit(&self, tally: &mut Tally) -> Result<(), StepError> {
        let Some(identity) = tally.identity.as_ref() else {
            return Ok(());
        };
        if tally.pending_blocks == 0 && tally.pending_bytes == 0 {
            return Ok(());
        }
        let record = UploadRecord {
            file: IdentityRecord::from(identity),
            counted_bytes: tally.counted_bytes + tally.pending_bytes,
            counted_blocks: tally.counted_blocks + tally.pending_blocks,
        };
        let json = encode(&record);
        let delta = Counts {
            items: tally.pending_blocks,
            bytes: tally.pending_bytes,
            ..Counts::default()
        };
        let mut ctx = self
            .ctx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        blocking(|| ctx.commit(delta, &[(UPLOAD, json.as_slice())]))?;
        tally.counted_bytes = record.counted_bytes;
        tally.counted_blocks = record.counted_blocks;
        tally.pending_bytes = 0;
        tally.pending_blocks = 0;
        tally.last_commit = Instant::now();
        Ok(())
    }
}

/// Runs a blocking state commit from the upload's async task without stalling the
/// runtime's other tasks (where the runtime allows it).
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

impl UploadObserver for StepObserver {
    fn started(&self, start: &UploadStart) {
        let mut tally = self.lock();
        tally.identity = Some(start.identity.clone());
        // Blocks the service holds that the state never counted (acknowledged just before
        // a crash) are counted now; a state ahead of the service (uncommitted blocks
        // expire after a week) stays as it is — counts never go down.
        if start.present_bytes > tally.counted_bytes {
            tally.pending_bytes = start.present_bytes - tally.counted_bytes;
            tally.pending_blocks =
                u64::from(start.present_blocks).saturating_sub(tally.counted_blocks);
        }
    }

    fn sent(&self, bytes: u64) {
        let mut tally = self.lock();
        let delta = bytes.saturating_sub(tally.reported_sent);
        tally.reported_sent = bytes;
        drop(tally);
        if delta > 0 {
            let ctx = self
                .ctx
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            ctx.report(Counts {
                items: 0,
                bytes: delta,
                ..Counts::default()
            });
        }
    }

    fn staged(&self, block: &StagedBlock) -> Result<(), String> {
        let mut tally = self.lock();
        tally.pending_bytes += block.len;
        tally.pending_blocks += 1;
        if tally.last_commit.elapsed() >= COMMIT_EVERY {
            self.commit(&mut tally).map_err(|e| e.message)?;
        }
        Ok(())
    }
}
