//! `cutover pst upload`: one file into the PST Import Service's container outside a plan (a
//! one-off job, the benchmark). The container SAS URL is a secret reference (an environment
//! variable or a file), resolved here once; the upload resumes from what the service already
//! holds and skips a finished one (`connectors::azure_blob::one_off`).

use std::path::PathBuf;
use std::sync::Arc;

use crate::connectors::azure_blob::one_off::{self, OneOffUpload};
use crate::connectors::azure_blob::{ContainerSas, UploadObserver, UploadOutcome, UploadSettings};
use crate::engine::CancellationToken;
use crate::plan::model::SecretRef;
use crate::redact::redact;

/// What to upload, where, how.
#[derive(Debug, Clone)]
pub struct UploadJob {
    pub file: PathBuf,
    /// The container SAS URL (the portal's network-upload URL), by reference.
    pub sas: SecretRef,
    /// The blob's name in the container; default the file's name.
    pub blob_name: Option<String>,
    pub settings: UploadSettings,
}

/// What [`upload`] did.
#[derive(Debug)]
pub struct Uploaded {
    pub outcome: UploadOutcome,
    /// The blob as it may be shown: container URL and name, never the signature.
    pub blob: String,
}

#[derive(Debug, thiserror::Error)]
pub enum UploadJobError {
    /// The SAS reference or URL is unusable: nothing was sent.
    #[error("SAS URL: {0}")]
    Sas(String),
    /// The upload failed; `transient`: what the service acknowledged is kept and a rerun
    /// resumes from it.
    #[error("{message}")]
    Upload { message: String, transient: bool },
}

/// Uploads `job.file`, reporting progress to `observer`; `cancel` stops it keeping what the
/// service acknowledged ([`UploadOutcome::Interrupted`]). Errors are redacted.
pub fn upload(
    job: &UploadJob,
    observer: Arc<dyn UploadObserver>,
    cancel: &CancellationToken,
) -> Result<Uploaded, UploadJobError> {
    let sas = crate::secrets::resolve(&job.sas, std::path::Path::new(""), false)
        .map_err(|e| e.to_string())
        .and_then(|secret| ContainerSas::parse(secret.expose()).map_err(|e| e.to_string()))
        .map_err(|e| UploadJobError::Sas(redact(&e).into_owned()))?;
    let request = OneOffUpload {
        file: job.file.clone(),
        blob_name: job.blob_name.clone(),
        settings: job.settings.clone(),
        record_dir: None,
    };
    let outcome =
        one_off::run(&sas, &request, observer, cancel).map_err(|e| UploadJobError::Upload {
            message: redact(&e.message).into_owned(),
            transient: e.transient,
        })?;
    let name = job
        .blob_name
        .clone()
        .or_else(|| one_off::default_blob_name(&job.file))
        .unwrap_or_default();
    Ok(Uploaded {
        outcome,
        blob: sas.describe_blob(&name),
    })
}
