//! One block blob, spoken to through the official SDK (`azure_storage_blob`): Put Block,
//! Get Block List, Put Block List and Get Blob Properties, each with a timeout, and every
//! failure sorted into retry-worthy or not.
//!
//! The SDK's own retry policy is switched off: the uploader retries per block itself, so it
//! can count what it sends twice and lower its concurrency when blocks keep failing. The
//! transport is the SDK's reqwest client built by cutover, with rustls over `ring` and the
//! system roots (as every other connection of cutover), instead of the SDK's default
//! aws-lc build.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use azure_core::http::headers::HeaderName;
use azure_core::http::{ClientOptions, NoFormat, RequestContent, RetryOptions, Transport};
use azure_core::Bytes;
use azure_storage_blob::models::{
    BlobClientGetPropertiesResultHeaders, BlockBlobClientCommitBlockListOptions,
    BlockBlobClientStageBlockOptions, BlockListType, BlockLookupList,
};
use azure_storage_blob::{BlobClient, BlobClientOptions, BlockBlobClient};

use super::sas::ContainerSas;

/// How long a request other than Put Block may take in total (block lists, properties,
/// commit). Put Block has a stall watchdog instead: its length depends on the line.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(120);

/// Whether retrying may help, and what the service said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureKind {
    /// A timeout, a dropped connection, 408, 429, 5xx: try again after a pause.
    Transient,
    /// 404 `BlobNotFound`/`ContainerNotFound`: the blob (or container) is not there.
    NotFound,
    /// Anything else: a bad or expired SAS (403), a malformed request (400).
    Permanent,
}

/// A failed blob request. `message` never holds the SAS query (it is built from status,
/// error code and the service's message, and redacted by whoever persists it anyway).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BlobFailure {
    pub kind: FailureKind,
    pub message: String,
    /// The service's `Retry-After`, when it sent one.
    pub retry_after: Option<Duration>,
    /// The storage error code (`x-ms-error-code`), e.g. `BlobNotFound`, `InvalidBlobOrBlock`.
    pub code: Option<String>,
}

impl BlobFailure {
    pub fn is_transient(&self) -> bool {
        self.kind == FailureKind::Transient
    }

    fn timeout(what: &str, after: Duration) -> BlobFailure {
        BlobFailure {
            kind: FailureKind::Transient,
            message: format!("{what}: no answer within {}s", after.as_secs()),
            retry_after: None,
            code: None,
        }
    }

    /// A Put Block that moved no byte for `after`.
    pub fn stalled(after: Duration) -> BlobFailure {
        BlobFailure {
            kind: FailureKind::Transient,
            message: format!("the upload stalled: no progress for {}s", after.as_secs()),
            retry_after: None,
            code: None,
        }
    }

    fn from_sdk(what: &str, error: azure_core::Error) -> BlobFailure {
        use azure_core::error::ErrorKind;
        match error.kind() {
            ErrorKind::HttpResponse {
                status,
                error_code,
                raw_response,
            } => {
                let status_code = u16::from(*status);
                let header = |name: &'static str| {
                    raw_response.as_ref().and_then(|r| {
                        r.headers()
                            .get_optional_string(&HeaderName::from_static(name))
                    })
                };
                let code = header("x-ms-error-code").or_else(|| error_code.clone());
                let retry_after = header("retry-after")
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let service_message = raw_response
                    .as_ref()
                    .and_then(|r| xml_message(r.body().as_ref()));
                let kind = match status_code {
                    404 => FailureKind::NotFound,
                    408 | 429 | 500..=599 => FailureKind::Transient,
                    // The block arrived damaged: sending it again is the cure.
                    400 if code.as_deref() == Some("Md5Mismatch") => FailureKind::Transient,
                    _ => FailureKind::Permanent,
                };
                let hint = match status_code {
                    403 => " (the SAS URL may have expired or lack read/write permission; get a fresh one from the portal)",
                    _ => "",
                };
                let mut message = format!("{what}: HTTP {status_code}");
                if let Some(code) = &code {
                    message.push(' ');
                    message.push_str(code);
                }
                if let Some(text) = service_message {
                    message.push_str(": ");
                    message.push_str(&text);
                }
                message.push_str(hint);
                BlobFailure {
                    kind,
                    message,
                    retry_after,
                    code,
                }
            }
            _ => {
                // Connection refused, reset, TLS failure, a body the client could not read:
                // the request may not have reached the service; retrying is safe (idempotent
                // block ids) and the right thing.
                let mut message = format!("{what}: {error}");
                let mut source = std::error::Error::source(&error);
                while let Some(cause) = source {
                    let text = cause.to_string();
                    if !message.contains(&text) {
                        message.push_str(": ");
                        message.push_str(&text);
                    }
                    source = cause.source();
                }
                // The HTTP client's text names the request URL, SAS query included: mask it
                // here, so no copy of this message holds the signature.
                BlobFailure {
                    kind: FailureKind::Transient,
                    message: crate::redact::redact(&message).into_owned(),
                    retry_after: None,
                    code: None,
                }
            }
        }
    }
}

/// The `<Message>` of a storage error body, first line only (the rest is RequestId/Time).
fn xml_message(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let start = text.find("<Message>")? + "<Message>".len();
    let end = text[start..].find("</Message>")? + start;
    let first = text[start..end].lines().next()?.trim();
    (!first.is_empty()).then(|| first.to_string())
}

/// One blob in a SAS-addressed container. Cheap to clone (the SDK clients are shared).
#[derive(Clone)]
pub struct BlobTarget {
    blob_name: String,
    described: String,
    blob: Arc<BlobClient>,
    block: Arc<BlockBlobClient>,
}

impl std::fmt::Debug for BlobTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobTarget")
            .field("blob", &self.described)
            .finish_non_exhaustive()
    }
}

/// A block as the service lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedBlock {
    pub id: Vec<u8>,
    pub size: u64,
}

/// The blob's block lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockLists {
    pub committed: Vec<ListedBlock>,
    pub uncommitted: Vec<ListedBlock>,
}

/// What Get Blob Properties says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobProperties {
    pub content_length: u64,
    pub content_md5: Option<Vec<u8>>,
}

impl BlobTarget {
    /// A client for `blob_name` (`/`-separated) in the SAS's container. Makes no request.
    pub fn new(sas: &ContainerSas, blob_name: &str) -> Result<BlobTarget, BlobFailure> {
        let transport = transport().map_err(|e| BlobFailure {
            kind: FailureKind::Permanent,
            message: format!("cannot set up HTTPS: {e}"),
            retry_after: None,
            code: None,
        })?;
        let options = BlobClientOptions {
            client_options: ClientOptions {
                retry: RetryOptions::none(),
                transport: Some(transport),
                ..ClientOptions::default()
            },
            ..BlobClientOptions::default()
        };
        let described = sas.describe_blob(blob_name);
        let blob = BlobClient::new(sas.blob_url(blob_name), None, Some(options)).map_err(|_| {
            BlobFailure {
                kind: FailureKind::Permanent,
                message: format!("{described}: not a usable blob address"),
                retry_after: None,
                code: None,
            }
        })?;
        let block = Arc::new(blob.block_blob_client());
        Ok(BlobTarget {
            blob_name: blob_name.to_string(),
            described,
            blob: Arc::new(blob),
            block,
        })
    }

    /// The blob's name in its container.
    pub fn blob_name(&self) -> &str {
        &self.blob_name
    }

    /// The blob's address without the SAS.
    pub fn describe(&self) -> &str {
        &self.described
    }

    /// Get Block List (`all`). A blob that does not exist yet (404 `BlobNotFound`) has none.
    pub async fn block_lists(&self) -> Result<BlockLists, BlobFailure> {
        let what = "reading the block list";
        let response =
            with_timeout(what, self.block.get_block_list(BlockListType::All, None)).await;
        let response = match response {
            Ok(r) => r,
            Err(f)
                if f.kind == FailureKind::NotFound
                    && f.code.as_deref() != Some("ContainerNotFound") =>
            {
                return Ok(BlockLists::default())
            }
            Err(f) => return Err(f),
        };
        let list = response
            .into_model()
            .map_err(|e| BlobFailure::from_sdk(what, e))?;
        let convert = |blocks: Option<Vec<azure_storage_blob::models::Block>>| {
            blocks
                .unwrap_or_default()
                .into_iter()
                .map(|b| ListedBlock {
                    id: b.name.unwrap_or_default(),
                    size: b.size.unwrap_or_default().max(0) as u64,
                })
                .collect::<Vec<_>>()
        };
        Ok(BlockLists {
            committed: convert(list.committed_blocks),
            uncommitted: convert(list.uncommitted_blocks),
        })
    }

    /// Put Block, with the block's Content-MD5 when given (the service then checks it against
    /// the bytes it received). No timeout here: the caller watches the body's progress.
    pub async fn stage_block(
        &self,
        id: &[u8],
        body: RequestContent<Bytes, NoFormat>,
        len: u64,
        md5: Option<[u8; 16]>,
    ) -> Result<(), BlobFailure> {
        let options = BlockBlobClientStageBlockOptions {
            transactional_content_md5: md5.map(|m| m.to_vec()),
            ..Default::default()
        };
        self.block
            .stage_block(id, len, body, Some(options))
            .await
            .map(drop)
            .map_err(|e| BlobFailure::from_sdk("sending a block", e))
    }

    /// Put Block List: the blob becomes these blocks (each the latest with its id), with
    /// `content_md5` as its Content-MD5 property.
    pub async fn commit(
        &self,
        ids: Vec<Vec<u8>>,
        content_md5: [u8; 16],
    ) -> Result<(), BlobFailure> {
        let what = "committing the block list";
        let list = BlockLookupList {
            latest: Some(ids),
            ..Default::default()
        };
        let content: RequestContent<BlockLookupList, _> = list
            .try_into()
            .map_err(|e| BlobFailure::from_sdk(what, e))?;
        let options = BlockBlobClientCommitBlockListOptions {
            blob_content_md5: Some(content_md5.to_vec()),
            blob_content_type: Some("application/octet-stream".into()),
            ..Default::default()
        };
        with_timeout(what, self.block.commit_block_list(content, Some(options)))
            .await
            .map(drop)
    }

    /// Get Blob Properties; `None` when the blob does not exist.
    pub async fn properties(&self) -> Result<Option<BlobProperties>, BlobFailure> {
        let what = "reading the blob's properties";
        match with_timeout(what, self.blob.get_properties(None)).await {
            Ok(response) => Ok(Some(BlobProperties {
                content_length: response
                    .content_length()
                    .map_err(|e| BlobFailure::from_sdk(what, e))?
                    .unwrap_or_default(),
                content_md5: response
                    .content_md5()
                    .map_err(|e| BlobFailure::from_sdk(what, e))?,
            })),
            Err(f) if f.kind == FailureKind::NotFound => Ok(None),
            Err(f) => Err(f),
        }
    }
}

async fn with_timeout<T>(
    what: &str,
    request: impl std::future::Future<Output = azure_core::Result<T>>,
) -> Result<T, BlobFailure> {
    match tokio::time::timeout(CONTROL_TIMEOUT, request).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(BlobFailure::from_sdk(what, e)),
        Err(_) => Err(BlobFailure::timeout(what, CONTROL_TIMEOUT)),
    }
}

/// The HTTP client of every blob request: one per process, so its connection pool is shared.
fn transport() -> Result<Transport, String> {
    static CLIENT: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
    let client = CLIENT
        .get_or_init(|| {
            let tls = crate::connectors::tls::client_config(None)?;
            reqwest::Client::builder()
                .tls_backend_preconfigured((*tls).clone())
                .connect_timeout(Duration::from_secs(20))
                .tcp_nodelay(true)
                .pool_idle_timeout(Duration::from_secs(50))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|e| e.to_string())
        })
        .clone()?;
    Ok(Transport::new(Arc::new(client)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_message_is_its_first_line() {
        let body = b"\xef\xbb\xbf<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>BlobNotFound</Code><Message>The specified blob does not exist.\nRequestId:abc\nTime:2024</Message></Error>";
        assert_eq!(
            xml_message(body).as_deref(),
            Some("The specified blob does not exist.")
        );
        assert_eq!(xml_message(b"<Error/>"), None);
    }
}
