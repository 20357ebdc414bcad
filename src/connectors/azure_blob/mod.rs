//! Azure Blob Storage, as far as a PST upload to Microsoft's import service needs it: a
//! container SAS URL ([`sas`]), one block blob through the official SDK ([`client`]), and
//! a resumable, paced block upload of a local file ([`upload`], [`pace`]).

pub mod client;
pub mod one_off;
pub mod pace;
pub mod sas;
pub mod upload;

pub use client::{BlobFailure, BlobTarget, FailureKind};
pub use sas::{ContainerSas, SasError};
pub use upload::{
    upload_file, FileIdentity, Quiet, StagedBlock, UploadError, UploadObserver, UploadOutcome,
    UploadReport, UploadSettings, UploadStart,
};
