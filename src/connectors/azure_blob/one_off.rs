//! The upload outside a plan (`cutover pst upload`), for one-off jobs and the benchmark.
//!
//! Resuming needs no record: block ids follow from the file, and the service lists what it
//! holds. The record only lets a rerun of a *finished* upload stop without reading the file
//! again: after a verified commit, the file's identity and MD5 are kept in a small JSON file
//! in a private folder — `$XDG_STATE_HOME/cutover/uploads/` (else
//! `~/.local/state/cutover/uploads/`), 0700, one 0600 file per container and blob, named by a
//! digest of the two. It holds no secret: the container's address without its SAS, the blob
//! name, the file's path, identity and MD5. Not next to the PST, which may sit on a
//! read-only share.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::upload::{
    hex, md5_from_hex, upload_file, FileIdentity, UploadError, UploadObserver, UploadOutcome,
};
use super::{BlobTarget, ContainerSas, UploadSettings};

/// What `cutover pst upload` asks for.
#[derive(Debug, Clone)]
pub struct OneOffUpload {
    pub file: PathBuf,
    /// The blob's name in the container; default the file's name.
    pub blob_name: Option<String>,
    pub settings: UploadSettings,
    /// Where records live; default [`record_dir`].
    pub record_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    container: String,
    blob: String,
    file: String,
    size: u64,
    mtime_ns: u128,
    tag: u64,
    block_size: u64,
    md5: String,
}

/// The private folder of upload records.
pub fn record_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local").join("state"))
        })?;
    Some(base.join("cutover").join("uploads"))
}

/// The blob name a file gets by default: its own name.
pub fn default_blob_name(file: &Path) -> Option<String> {
    Some(file.file_name()?.to_string_lossy().into_owned())
}

/// Uploads one file to `<container>/<blob>` (resuming, or skipping a finished upload) on a
/// runtime of its own. The SAS has been parsed; the caller resolved it from the environment
/// or a file.
pub fn run(
    sas: &ContainerSas,
    request: &OneOffUpload,
    observer: Arc<dyn UploadObserver>,
    cancel: &CancellationToken,
) -> Result<UploadOutcome, UploadError> {
    let blob = match &request.blob_name {
        Some(name) => name.trim_matches('/').to_string(),
        None => default_blob_name(&request.file).ok_or_else(|| UploadError {
            transient: false,
            message: format!("{}: not a file name", request.file.display()),
        })?,
    };
    if blob.is_empty() {
        return Err(UploadError {
            transient: false,
            message: "--name is empty".into(),
        });
    }
    let target = BlobTarget::new(sas, &blob).map_err(|f| UploadError {
        transient: false,
        message: f.message,
    })?;
    let dir = request.record_dir.clone().or_else(record_dir);
    let record_path = dir.as_ref().map(|d| {
        let digest = Sha256::digest(format!("{}\n{blob}", sas.describe()).as_bytes());
        d.join(format!("{}.json", hex(&digest[..12])))
    });
    let known = record_path
        .as_deref()
        .and_then(|p| std::fs::read(p).ok())
        .and_then(|bytes| serde_json::from_slice::<Record>(&bytes).ok())
        .filter(|r| r.container == sas.describe() && r.blob == blob)
        .and_then(|r| {
            let md5 = md5_from_hex(&r.md5)?;
            Some((
                FileIdentity {
                    size: r.size,
                    mtime_ns: r.mtime_ns,
                    tag: r.tag,
                    block_size: r.block_size,
                },
                md5,
            ))
        });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| UploadError {
            transient: false,
            message: format!("cannot start the async runtime: {e}"),
        })?;
    let outcome = runtime.block_on(upload_file(
        &target,
        &request.file,
        &request.settings,
        known,
        observer,
        cancel,
    ))?;
    if let (UploadOutcome::Complete(report), Some(path)) = (&outcome, &record_path) {
        if let (Some(md5), false) = (report.md5, report.already_complete) {
            let size = report.size;
            let identity = FileIdentity::of(&request.file, report.block_size)?;
            let record = Record {
                container: sas.describe(),
                blob,
                file: request.file.display().to_string(),
                size,
                mtime_ns: identity.mtime_ns,
                tag: identity.tag,
                block_size: identity.block_size,
                md5: hex(&md5),
            };
            // The record only saves a reread next time: failing to write it fails nothing.
            let _ = write_record(path, &record);
        }
    }
    Ok(outcome)
}

fn write_record(path: &Path, record: &Record) -> std::io::Result<()> {
    crate::files::write_atomically(path, &serde_json::to_vec_pretty(record).unwrap_or_default())
}
