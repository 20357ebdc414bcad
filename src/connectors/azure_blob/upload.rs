//! Resumable block upload of one local file to one block blob.
//!
//! * **Deterministic block ids.** Block `i` of a file is `"<tag>-<i:06>"` (23 ASCII bytes,
//!   base64 on the wire), where `tag` is a digest of the file's identity: size, modification
//!   time, the block size, and a SHA-256 of its first and last 64 KiB. The same file cut the
//!   same way always yields the same ids, so after a crash Get Block List says which blocks
//!   the service already holds and only the others are sent; a changed file yields other
//!   ids, and its upload starts over.
//! * **Bounded concurrency.** At most `concurrency` blocks are in flight (a small default:
//!   many parallel blocks on a slow uplink each crawl until something times out). A block that
//!   fails twice in a row lowers the limit by one, down to one.
//! * **No fixed timeouts on blocks.** A Put Block is abandoned when it moves no byte for
//!   `stall_timeout`, however long it takes in total; timeouts, dropped connections and
//!   408/429/5xx answers are retried with exponential backoff and jitter (honouring
//!   `Retry-After`).
//! * **Integrity.** The file's MD5 is computed while reading it in order (the same buffers
//!   are sent) and set as the blob's Content-MD5 at commit; after the commit the blob's
//!   length, Content-MD5 and committed block list are read back and compared with the local
//!   file. With [`UploadSettings::block_md5`], each block also carries its Content-MD5 for
//!   the service to check — a second MD5 pass, off by default: over HTTPS, TLS already
//!   authenticates every byte in transit, and MD5 is most of the upload's CPU.
//! * **Memory.** One reader thread reads the file in order and hands blocks to the sender
//!   through a one-slot channel: at most `concurrency + 2` blocks are in memory.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use azure_core::http::{NoFormat, RequestContent};
use azure_core::stream::SeekableStream;
use azure_core::Bytes;
use md5::{Digest, Md5};
use sha2::Sha256;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::client::{BlobFailure, BlobTarget, BlockLists};
use super::pace::{Liveness, PacedBody, RateLimiter, Throughput};

/// The service's limit on blocks per blob.
pub const MAX_BLOCKS: u64 = 50_000;
const MIB: u64 = 1024 * 1024;

/// How an upload behaves. [`Default`] is what `cutover` uses unless told otherwise.
#[derive(Debug, Clone, PartialEq)]
pub struct UploadSettings {
    /// Bytes per block (default 4 MiB). Raised automatically (to whole MiB) when the file
    /// would need more than 50,000 blocks.
    pub block_size: u64,
    /// Blocks in flight at once (default 2). At least 1.
    pub concurrency: usize,
    /// Optional cap on upload bandwidth, in megabits per second.
    pub max_upload_mbps: Option<f64>,
    /// A Put Block that moves no byte this long is abandoned and retried (default 60 s).
    pub stall_timeout: Duration,
    /// Attempts per block before the upload gives up (default 8; the walker may retry the
    /// whole step after that, which resumes).
    pub block_attempts: u32,
    /// The first retry's pause; doubled per attempt up to 60 s, with jitter (default 1 s).
    pub first_backoff: Duration,
    /// Send each block's MD5 (Put Block's Content-MD5) for the service to check (default
    /// off). Costs a second MD5 pass over the file; over HTTPS, TLS already protects the
    /// bytes in transit, and the file's MD5 is set and checked at commit either way.
    pub block_md5: bool,
}

impl Default for UploadSettings {
    fn default() -> Self {
        UploadSettings {
            block_size: 4 * MIB,
            concurrency: 2,
            max_upload_mbps: None,
            stall_timeout: Duration::from_secs(60),
            block_attempts: 8,
            first_backoff: Duration::from_secs(1),
            block_md5: false,
        }
    }
}

impl UploadSettings {
    /// The block size used for a file of `size` bytes: the setting, raised to whole MiB when
    /// needed to stay within 50,000 blocks.
    pub fn block_size_for(&self, size: u64) -> u64 {
        let wanted = self.block_size.max(1);
        if size.div_ceil(wanted) <= MAX_BLOCKS {
            return wanted;
        }
        size.div_ceil(MAX_BLOCKS).div_ceil(MIB) * MIB
    }
}

/// What the upload found at the service before sending anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadStart {
    /// The file as cut for this upload (its ids follow from it).
    pub identity: FileIdentity,
    pub size: u64,
    pub block_size: u64,
    pub blocks: u32,
    /// Blocks of this file the service already holds (staged or committed).
    pub present_blocks: u32,
    pub present_bytes: u64,
    /// The blob is already this file, verified from its properties: nothing to do.
    pub already_complete: bool,
}

/// A block the service acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedBlock {
    pub index: u32,
    pub len: u64,
}

/// Hooks into an upload: progress display, checkpoints. Methods are called from the
/// upload's own task, so they must be quick (a state commit is fine, a network call is not).
pub trait UploadObserver: Send + Sync {
    /// Once, after the block list was read back and before any block is sent.
    /// The default does nothing.
    fn started(&self, start: &UploadStart) {
        let _ = start;
    }

    /// About four times a second while blocks are in flight: body bytes handed to the
    /// network by this upload so far (retried bytes included). For display only.
    /// The default does nothing.
    fn sent(&self, bytes: u64) {
        let _ = bytes;
    }

    /// The service acknowledged a block (Put Block answered 201). Called in completion
    /// order, never twice for one block in one upload. An `Err` stops the upload with that
    /// message (e.g. the state store could not record it). The default accepts.
    fn staged(&self, block: &StagedBlock) -> Result<(), String> {
        let _ = block;
        Ok(())
    }

    /// A block's attempt failed; it is sent again after `delay`. The default does nothing.
    fn retrying(&self, index: u32, attempt: u32, delay: Duration, error: &str) {
        let _ = (index, attempt, delay, error);
    }

    /// Blocks kept failing: the concurrency is now `now`. The default does nothing.
    fn concurrency_lowered(&self, now: usize) {
        let _ = now;
    }
}

/// An observer that does nothing.
pub struct Quiet;
impl UploadObserver for Quiet {}

/// How an upload ended without error.
#[derive(Debug, Clone, PartialEq)]
pub enum UploadOutcome {
    /// Committed and verified.
    Complete(UploadReport),
    /// Cancelled: what was acknowledged is at the service (staged); the next upload of the
    /// same file resumes from there.
    Interrupted(UploadReport),
}

/// Figures of one upload run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UploadReport {
    pub size: u64,
    pub block_size: u64,
    pub blocks: u32,
    /// The file's MD5 (only when the whole file was read, i.e. on completion).
    pub md5: Option<[u8; 16]>,
    /// Blocks found at the service and not sent again.
    pub blocks_reused: u32,
    pub bytes_reused: u64,
    /// Blocks acknowledged in this run.
    pub blocks_staged: u32,
    /// Body bytes handed to the network in this run, retries included.
    pub bytes_sent: u64,
    /// Of `bytes_sent`, the bytes of attempts that failed and were sent again.
    pub bytes_resent: u64,
    pub retries: u32,
    pub final_concurrency: usize,
    /// The blob already was this file; nothing was read or sent.
    pub already_complete: bool,
    pub elapsed: Duration,
}

/// An upload that could not finish. `transient`: trying again later (which resumes) may
/// succeed. The message names the file or blob, never the SAS.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct UploadError {
    pub transient: bool,
    pub message: String,
}

impl UploadError {
    fn permanent(message: impl Into<String>) -> Self {
        UploadError {
            transient: false,
            message: message.into(),
        }
    }

    fn from_failure(target: &BlobTarget, f: BlobFailure) -> Self {
        UploadError {
            transient: f.is_transient(),
            message: format!("{}: {}", target.describe(), f.message),
        }
    }
}

/// What identifies the local file's content cheaply, and the ids cut from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileIdentity {
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch (0 when unknown).
    pub mtime_ns: u128,
    /// First 8 bytes of SHA-256 over size, mtime, block size and the first and last 64 KiB.
    pub tag: u64,
    pub block_size: u64,
}

impl FileIdentity {
    /// Reads the file's size and time and samples its ends.
    pub fn of(path: &Path, block_size: u64) -> Result<FileIdentity, UploadError> {
        let io = |e: std::io::Error| UploadError::permanent(format!("{}: {e}", path.display()));
        let mut file = File::open(path).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        if !meta.is_file() {
            return Err(UploadError::permanent(format!(
                "{}: not a regular file",
                path.display()
            )));
        }
        let size = meta.len();
        let mtime_ns = mtime_ns(&meta);
        const SAMPLE: u64 = 64 * 1024;
        let mut hasher = Sha256::new();
        hasher.update(size.to_le_bytes());
        hasher.update(mtime_ns.to_le_bytes());
        hasher.update(block_size.to_le_bytes());
        let mut head = vec![0u8; SAMPLE.min(size) as usize];
        file.read_exact(&mut head).map_err(io)?;
        hasher.update(&head);
        if size > SAMPLE {
            use std::io::{Seek, SeekFrom};
            let tail_start = size.saturating_sub(SAMPLE).max(SAMPLE);
            let mut tail = vec![0u8; (size - tail_start) as usize];
            file.seek(SeekFrom::Start(tail_start)).map_err(io)?;
            file.read_exact(&mut tail).map_err(io)?;
            hasher.update(&tail);
        }
        let digest = hasher.finalize();
        let mut tag = [0u8; 8];
        tag.copy_from_slice(&digest[..8]);
        Ok(FileIdentity {
            size,
            mtime_ns,
            tag: u64::from_be_bytes(tag),
            block_size,
        })
    }

    pub fn blocks(&self) -> u32 {
        self.size.div_ceil(self.block_size) as u32
    }

    /// Length of block `index`.
    pub fn block_len(&self, index: u32) -> u64 {
        let start = u64::from(index) * self.block_size;
        self.block_size.min(self.size - start)
    }

    /// The id of block `index`: `"<tag as 16 hex digits>-<index, 6 digits>"`.
    pub fn block_id(&self, index: u32) -> Vec<u8> {
        format!("{:016x}-{index:06}", self.tag).into_bytes()
    }

    fn expected(&self) -> Vec<(Vec<u8>, u64)> {
        (0..self.blocks())
            .map(|i| (self.block_id(i), self.block_len(i)))
            .collect()
    }
}

fn mtime_ns(meta: &std::fs::Metadata) -> u128 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos())
}

/// Whether the blob already is the file whose MD5 is `md5` (a finished earlier upload): its
/// length and Content-MD5 match and its committed blocks are exactly this file's blocks.
/// Reads nothing locally but the file's identity.
async fn is_complete(
    target: &BlobTarget,
    identity: &FileIdentity,
    md5: [u8; 16],
    settings: &UploadSettings,
    cancel: &CancellationToken,
) -> Result<bool, UploadError> {
    let Some(props) = with_retries(settings, cancel, || target.properties())
        .await
        .map_err(|f| UploadError::from_failure(target, f))?
    else {
        return Ok(false);
    };
    if props.content_length != identity.size || props.content_md5.as_deref() != Some(&md5[..]) {
        return Ok(false);
    }
    let lists = with_retries(settings, cancel, || target.block_lists())
        .await
        .map_err(|f| UploadError::from_failure(target, f))?;
    Ok(committed_matches(&lists, identity))
}

fn committed_matches(lists: &BlockLists, identity: &FileIdentity) -> bool {
    let committed: Vec<(Vec<u8>, u64)> = lists
        .committed
        .iter()
        .map(|b| (b.id.clone(), b.size))
        .collect();
    committed == identity.expected()
}

/// Uploads `path` to `target`, resuming from the blocks the service already holds, commits
/// with the file's MD5 and verifies the result. `known_md5`: the file's MD5 from a finished
/// earlier upload of the same identity (a resume record); when the blob already matches it,
/// nothing is read or sent.
///
/// Cancelling `cancel` stops at once: blocks in flight are abandoned (the service keeps
/// those it completed) and the outcome is [`UploadOutcome::Interrupted`].
pub async fn upload_file(
    target: &BlobTarget,
    path: &Path,
    settings: &UploadSettings,
    known_md5: Option<(FileIdentity, [u8; 16])>,
    observer: Arc<dyn UploadObserver>,
    cancel: &CancellationToken,
) -> Result<UploadOutcome, UploadError> {
    let started_at = Instant::now();
    let size = std::fs::metadata(path)
        .map_err(|e| UploadError::permanent(format!("{}: {e}", path.display())))?
        .len();
    let block_size = settings.block_size_for(size);
    let identity = FileIdentity::of(path, block_size)?;
    let mut report = UploadReport {
        size: identity.size,
        block_size,
        blocks: identity.blocks(),
        final_concurrency: settings.concurrency.max(1),
        ..UploadReport::default()
    };
    let fail = |f: BlobFailure| UploadError::from_failure(target, f);

    if let Some((known, md5)) = known_md5.filter(|(known, _)| *known == identity) {
        if is_complete(target, &known, md5, settings, cancel).await? {
            report.md5 = Some(md5);
            report.already_complete = true;
            report.blocks_reused = report.blocks;
            report.bytes_reused = identity.size;
            report.elapsed = started_at.elapsed();
            observer.started(&UploadStart {
                identity: identity.clone(),
                size: identity.size,
                block_size,
                blocks: identity.blocks(),
                present_blocks: identity.blocks(),
                present_bytes: identity.size,
                already_complete: true,
            });
            return Ok(UploadOutcome::Complete(report));
        }
    }

    let mut lists = with_retries(settings, cancel, || target.block_lists())
        .await
        .map_err(fail)?;
    let id_len = identity.block_id(0).len();
    if lists.uncommitted.iter().any(|b| b.id.len() != id_len) {
        // Uncommitted blocks of another uploader (an AzCopy attempt) with ids of another
        // length make every Put Block fail (`InvalidBlobOrBlock`). Committing an empty list
        // discards them; the blob is about to be replaced anyway.
        target
            .commit(Vec::new(), Md5::digest(b"").into())
            .await
            .map_err(fail)?;
        lists = BlockLists::default();
    }
    let mut present: HashMap<Vec<u8>, u64> = HashMap::new();
    for b in lists.committed.iter().chain(&lists.uncommitted) {
        present.insert(b.id.clone(), b.size);
    }
    let is_present =
        |index: u32| present.get(&identity.block_id(index)) == Some(&identity.block_len(index));
    let present_blocks: Vec<u32> = (0..identity.blocks()).filter(|&i| is_present(i)).collect();
    report.blocks_reused = present_blocks.len() as u32;
    report.bytes_reused = present_blocks.iter().map(|&i| identity.block_len(i)).sum();
    observer.started(&UploadStart {
        identity: identity.clone(),
        size: identity.size,
        block_size,
        blocks: identity.blocks(),
        present_blocks: report.blocks_reused,
        present_bytes: report.bytes_reused,
        already_complete: false,
    });

    let shared = Arc::new(Shared {
        target: target.clone(),
        limiter: settings
            .max_upload_mbps
            .and_then(RateLimiter::from_mbps)
            .map(Arc::new),
        throughput: Arc::new(Throughput::default()),
        limit: AtomicUsize::new(settings.concurrency.max(1)),
        resent: AtomicU64::new(0),
        retries: AtomicU64::new(0),
        settings: settings.clone(),
        observer: Arc::clone(&observer),
        cancel: cancel.child_token(),
    });

    let (tx, mut rx) = mpsc::channel::<Result<ReadBlock, UploadError>>(1);
    let reader_path = path.to_path_buf();
    let reader_identity = identity.clone();
    let reader_cancel = shared.cancel.clone();
    let reader = tokio::task::spawn_blocking(move || {
        read_in_order(&reader_path, &reader_identity, &tx, &reader_cancel)
    });

    let mut tasks: JoinSet<Result<StagedBlock, UploadError>> = JoinSet::new();
    let mut reader_open = true;
    let mut ticker = tokio::time::interval(Duration::from_millis(250));
    let outcome: Result<bool, UploadError> = loop {
        let limit = shared.limit.load(Ordering::Relaxed);
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break Ok(false),
            joined = tasks.join_next(), if !tasks.is_empty() => {
                match joined {
                    Some(Ok(Ok(block))) => {
                        report.blocks_staged += 1;
                        if let Err(e) = observer.staged(&block) {
                            break Err(UploadError::permanent(e));
                        }
                    }
                    Some(Ok(Err(e))) => break Err(e),
                    Some(Err(join)) => break Err(UploadError::permanent(format!("internal: a block task ended abnormally: {join}"))),
                    None => {}
                }
            }
            next = rx.recv(), if reader_open && tasks.len() < limit => {
                match next {
                    Some(Ok(block)) => {
                        if !is_present(block.index) {
                            let id = identity.block_id(block.index);
                            tasks.spawn(send_block(Arc::clone(&shared), block, id));
                        }
                    }
                    Some(Err(e)) => break Err(e),
                    None => reader_open = false,
                }
            }
            _ = ticker.tick() => observer.sent(shared.throughput.sent.load(Ordering::Relaxed)),
            else => break Ok(true),
        }
        if !reader_open && tasks.is_empty() {
            break Ok(true);
        }
    };
    shared.cancel.cancel();
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    drop(rx);
    let md5 = reader
        .await
        .map_err(|e| UploadError::permanent(format!("internal: the file reader failed: {e}")))?;
    report.bytes_sent = shared.throughput.sent.load(Ordering::Relaxed);
    report.bytes_resent = shared.resent.load(Ordering::Relaxed);
    report.retries = shared.retries.load(Ordering::Relaxed) as u32;
    report.final_concurrency = shared.limit.load(Ordering::Relaxed);
    observer.sent(report.bytes_sent);
    match outcome {
        Err(e) => return Err(e),
        Ok(false) => {
            report.elapsed = started_at.elapsed();
            return Ok(UploadOutcome::Interrupted(report));
        }
        Ok(true) => {}
    }
    let md5 = md5?.ok_or_else(|| {
        UploadError::permanent(format!(
            "internal: {} was not read to the end",
            path.display()
        ))
    })?;
    check_unchanged(path, &identity)?;

    let ids = (0..identity.blocks())
        .map(|i| identity.block_id(i))
        .collect();
    commit_with_retries(target, ids, md5, settings, cancel).await?;
    verify(target, &identity, md5, settings, cancel).await?;
    report.md5 = Some(md5);
    report.elapsed = started_at.elapsed();
    Ok(UploadOutcome::Complete(report))
}

/// Everything the block tasks share.
struct Shared {
    target: BlobTarget,
    limiter: Option<Arc<RateLimiter>>,
    throughput: Arc<Throughput>,
    /// The current concurrency limit.
    limit: AtomicUsize,
    resent: AtomicU64,
    retries: AtomicU64,
    settings: UploadSettings,
    observer: Arc<dyn UploadObserver>,
    /// Cancelled when the upload ends for any reason: stops the reader.
    cancel: CancellationToken,
}

struct ReadBlock {
    index: u32,
    data: Bytes,
}

/// Reads the file block by block, in order, hashing it; hands each block to the sender.
/// Returns the file's MD5 when it reached the end, `None` when the sender went away.
fn read_in_order(
    path: &PathBuf,
    identity: &FileIdentity,
    tx: &mpsc::Sender<Result<ReadBlock, UploadError>>,
    cancel: &CancellationToken,
) -> Result<Option<[u8; 16]>, UploadError> {
    let io = |offset: u64, e: std::io::Error| {
        UploadError::permanent(format!("{} at offset {offset}: {e}", path.display()))
    };
    let mut file = File::open(path).map_err(|e| io(0, e))?;
    let mut md5 = Md5::new();
    for index in 0..identity.blocks() {
        if cancel.is_cancelled() {
            return Ok(None);
        }
        let offset = u64::from(index) * identity.block_size;
        let mut buffer = vec![0u8; identity.block_len(index) as usize];
        if let Err(e) = file.read_exact(&mut buffer) {
            let error = if e.kind() == std::io::ErrorKind::UnexpectedEof {
                UploadError::permanent(format!(
                    "{} shrank while it was being uploaded (short read at offset {offset}); close the program using it and run again",
                    path.display()
                ))
            } else {
                io(offset, e)
            };
            let _ = tx.blocking_send(Err(error.clone()));
            return Err(error);
        }
        md5.update(&buffer);
        let block = ReadBlock {
            index,
            data: Bytes::from(buffer),
        };
        if tx.blocking_send(Ok(block)).is_err() {
            return Ok(None);
        }
    }
    Ok(Some(md5.finalize().into()))
}

fn check_unchanged(path: &Path, identity: &FileIdentity) -> Result<(), UploadError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| UploadError::permanent(format!("{}: {e}", path.display())))?;
    if meta.len() != identity.size || mtime_ns(&meta) != identity.mtime_ns {
        return Err(UploadError::permanent(format!(
            "{} changed while it was being uploaded (size or modification time); close the program using it (Outlook) and run again",
            path.display()
        )));
    }
    Ok(())
}

/// Sends one block, retrying transient failures with backoff; lowers the shared
/// concurrency when the block fails twice in a row.
async fn send_block(
    shared: Arc<Shared>,
    block: ReadBlock,
    id: Vec<u8>,
) -> Result<StagedBlock, UploadError> {
    let len = block.data.len() as u64;
    let data = block.data;
    let md5: Option<[u8; 16]> = if shared.settings.block_md5 {
        let data = data.clone();
        let digest = tokio::task::spawn_blocking(move || Md5::digest(&data).into())
            .await
            .map_err(|e| {
                UploadError::permanent(format!("internal: hashing a block failed: {e}"))
            })?;
        Some(digest)
    } else {
        None
    };
    let settings = &shared.settings;
    let mut attempt = 1u32;
    loop {
        let liveness = Liveness::new();
        let body = PacedBody::new(
            data.clone(),
            shared.limiter.clone(),
            Arc::clone(&shared.throughput),
            Arc::clone(&liveness),
        );
        let boxed: Box<dyn SeekableStream> = Box::new(body);
        let content: RequestContent<Bytes, NoFormat> =
            azure_core::http::Body::SeekableStream(boxed).into();
        let request = shared.target.stage_block(&id, content, len, md5);
        let result = watch_stalls(request, &liveness, settings.stall_timeout).await;
        let failure = match result {
            Ok(()) => {
                return Ok(StagedBlock {
                    index: block.index,
                    len,
                })
            }
            Err(f) => f,
        };
        shared
            .resent
            .fetch_add(liveness.pulled(), Ordering::Relaxed);
        if !failure.is_transient() || attempt >= settings.block_attempts {
            let tries = if attempt > 1 {
                format!(" (after {attempt} attempts)")
            } else {
                String::new()
            };
            return Err(UploadError {
                transient: failure.is_transient(),
                message: format!(
                    "{}: block {}: {}{tries}",
                    shared.target.describe(),
                    block.index,
                    failure.message
                ),
            });
        }
        if attempt >= 2 {
            let lowered = shared
                .limit
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    (n > 1).then(|| n - 1)
                });
            if let Ok(before) = lowered {
                shared.observer.concurrency_lowered(before - 1);
            }
        }
        let delay = backoff(settings.first_backoff, attempt, failure.retry_after);
        shared.retries.fetch_add(1, Ordering::Relaxed);
        shared
            .observer
            .retrying(block.index, attempt, delay, &failure.message);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shared.cancel.cancelled() => return Err(UploadError::permanent("cancelled")),
        }
        attempt += 1;
    }
}

/// Runs a Put Block, abandoning it when its body moves no byte for `stall` (and when the
/// answer takes longer than `stall` after the last byte).
async fn watch_stalls(
    request: impl std::future::Future<Output = Result<(), BlobFailure>>,
    liveness: &Liveness,
    stall: Duration,
) -> Result<(), BlobFailure> {
    tokio::pin!(request);
    let check = (stall / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut ticker = tokio::time::interval(check);
    loop {
        tokio::select! {
            result = &mut request => return result,
            _ = ticker.tick() => {
                if liveness.idle_for() >= stall {
                    return Err(BlobFailure::stalled(stall));
                }
            }
        }
    }
}

/// `first · 2^(attempt-1)`, at most 60 s, ±25 % jitter; at least the service's `Retry-After`.
fn backoff(first: Duration, attempt: u32, retry_after: Option<Duration>) -> Duration {
    let base = first
        .saturating_mul(1u32 << (attempt - 1).min(16))
        .min(Duration::from_secs(60));
    let jitter = {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        0.75 + f64::from(nanos % 1000) / 2000.0
    };
    base.mul_f64(jitter).max(retry_after.unwrap_or_default())
}

/// Runs a request other than Put Block, retrying transient failures with the same backoff
/// as blocks (at most `block_attempts` tries). Cancelling ends the wait with a transient
/// failure.
async fn with_retries<T, F, Fut>(
    settings: &UploadSettings,
    cancel: &CancellationToken,
    mut call: F,
) -> Result<T, BlobFailure>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, BlobFailure>>,
{
    let mut attempt = 1;
    loop {
        match call().await {
            Err(f) if f.is_transient() && attempt < settings.block_attempts => {
                let delay = backoff(settings.first_backoff, attempt, f.retry_after);
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = cancel.cancelled() => return Err(f),
                }
                attempt += 1;
            }
            result => return result,
        }
    }
}

async fn commit_with_retries(
    target: &BlobTarget,
    ids: Vec<Vec<u8>>,
    md5: [u8; 16],
    settings: &UploadSettings,
    cancel: &CancellationToken,
) -> Result<(), UploadError> {
    match with_retries(settings, cancel, || target.commit(ids.clone(), md5)).await {
        Ok(()) => Ok(()),
        Err(f) if f.code.as_deref() == Some("InvalidBlockList") => Err(UploadError {
            transient: true,
            message: format!(
                "{}: the service no longer holds every block (uncommitted blocks expire after a week); run again to resend them",
                target.describe()
            ),
        }),
        Err(f) => Err(UploadError::from_failure(target, f)),
    }
}

/// After the commit: the blob's length, Content-MD5 and committed blocks are the file's.
async fn verify(
    target: &BlobTarget,
    identity: &FileIdentity,
    md5: [u8; 16],
    settings: &UploadSettings,
    cancel: &CancellationToken,
) -> Result<(), UploadError> {
    let props = with_retries(settings, cancel, || target.properties())
        .await
        .map_err(|f| UploadError::from_failure(target, f))?
        .ok_or_else(|| {
            UploadError::permanent(format!(
                "{}: the blob is missing right after its commit",
                target.describe()
            ))
        })?;
    if props.content_length != identity.size {
        return Err(UploadError::permanent(format!(
            "{}: verification failed: the blob has {} bytes, the file {}",
            target.describe(),
            props.content_length,
            identity.size
        )));
    }
    if props.content_md5.as_deref() != Some(&md5[..]) {
        return Err(UploadError::permanent(format!(
            "{}: verification failed: the blob's Content-MD5 is {}, the file's {}",
            target.describe(),
            props.content_md5.as_deref().map_or("missing".into(), hex),
            hex(&md5)
        )));
    }
    let lists = with_retries(settings, cancel, || target.block_lists())
        .await
        .map_err(|f| UploadError::from_failure(target, f))?;
    if !committed_matches(&lists, identity) {
        return Err(UploadError::permanent(format!(
            "{}: verification failed: the committed blocks are not this file's {} blocks",
            target.describe(),
            identity.blocks()
        )));
    }
    Ok(())
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An MD5 from 32 hex digits, as [`hex`] writes it.
pub fn md5_from_hex(text: &str) -> Option<[u8; 16]> {
    if text.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_size_grows_to_stay_within_fifty_thousand_blocks() {
        let s = UploadSettings::default();
        assert_eq!(s.block_size_for(1024), 4 * MIB);
        let small = UploadSettings {
            block_size: 256 * 1024,
            ..UploadSettings::default()
        };
        assert_eq!(small.block_size_for(2 * MIB), 256 * 1024);
        assert_eq!(s.block_size_for(50_000 * 4 * MIB), 4 * MIB);
        assert_eq!(s.block_size_for(50_000 * 4 * MIB + 1), 5 * MIB);
        assert_eq!(s.block_size_for(50 * 1024 * MIB), 4 * MIB);
        assert_eq!(s.block_size_for(300 * 1024 * MIB), 7 * MIB);
    }

    #[test]
    fn ids_are_fixed_length_and_follow_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.pst");
        std::fs::write(&path, vec![1u8; 300_000]).unwrap();
        let a = FileIdentity::of(&path, 100_000).unwrap();
        let b = FileIdentity::of(&path, 100_000).unwrap();
        assert_eq!(a, b, "same file, same identity");
        assert_eq!(a.blocks(), 3);
        assert_eq!(a.block_len(2), 100_000);
        assert_eq!(a.block_id(0).len(), a.block_id(2).len());
        assert_eq!(a.block_id(7).len(), 23);
        assert_ne!(
            FileIdentity::of(&path, 200_000).unwrap().tag,
            a.tag,
            "another cut, other ids"
        );
        let mut bytes = vec![1u8; 300_000];
        bytes[299_999] = 2;
        std::fs::write(&path, bytes).unwrap();
        let changed = FileIdentity::of(&path, 100_000).unwrap();
        assert_ne!(changed.tag, a.tag, "changed tail, other ids");
    }

    #[test]
    fn backoff_doubles_caps_and_honours_retry_after() {
        let first = Duration::from_secs(1);
        assert!(backoff(first, 1, None) <= Duration::from_millis(1250));
        assert!(backoff(first, 3, None) >= Duration::from_secs(3));
        assert!(backoff(first, 30, None) <= Duration::from_secs(75));
        assert!(backoff(first, 1, Some(Duration::from_secs(30))) >= Duration::from_secs(30));
    }
}
