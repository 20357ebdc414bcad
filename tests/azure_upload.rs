//! The block upload against a real Azurite started by the test: commit and verify, resume
//! after an interruption, start over on a changed file, skip a finished upload, retry what
//! the service refuses, and never print the SAS signature.

mod support;

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cutover::connectors::azure_blob::{
    upload_file, BlobTarget, ContainerSas, FileIdentity, Quiet, StagedBlock, UploadError,
    UploadObserver, UploadOutcome, UploadSettings,
};
use support::azurite::Azurite;
use support::http_proxy::{Fault, HttpProxy};
use support::random_file::{file_md5, write_random};
use tokio_util::sync::CancellationToken;

const MIB: u64 = 1024 * 1024;

fn settings(block: u64, concurrency: usize) -> UploadSettings {
    UploadSettings {
        block_size: block,
        concurrency,
        first_backoff: Duration::from_millis(20),
        ..UploadSettings::default()
    }
}

fn target(azurite: &Azurite, container: &str, blob: &str) -> BlobTarget {
    azurite.create_container(container);
    let sas = ContainerSas::parse(&azurite.container_sas_url(container)).unwrap();
    BlobTarget::new(&sas, blob).unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// One upload on a runtime of its own, with an observer and a cancellation token.
fn upload_with(
    target: &BlobTarget,
    file: &Path,
    settings: &UploadSettings,
    known: Option<(FileIdentity, [u8; 16])>,
    observer: Arc<dyn UploadObserver>,
    cancel: &CancellationToken,
) -> Result<UploadOutcome, UploadError> {
    runtime().block_on(upload_file(target, file, settings, known, observer, cancel))
}

/// One upload, unobserved and not cancelled.
fn upload(
    target: &BlobTarget,
    file: &Path,
    settings: &UploadSettings,
) -> Result<UploadOutcome, UploadError> {
    upload_with(
        target,
        file,
        settings,
        None,
        Arc::new(Quiet),
        &CancellationToken::new(),
    )
}

/// Cancels the upload after `after` staged blocks.
struct CancelAfter {
    after: u32,
    staged: AtomicU32,
    cancel: CancellationToken,
}

impl UploadObserver for CancelAfter {
    fn staged(&self, _block: &StagedBlock) -> Result<(), String> {
        if self.staged.fetch_add(1, Ordering::SeqCst) + 1 >= self.after {
            self.cancel.cancel();
        }
        Ok(())
    }
}

#[test]
fn upload_commits_with_the_files_md5_and_the_blob_matches() {
    let azurite = Azurite::shared();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("Bob Mail.pst");
    write_random(&file, 10 * MIB + 12345, 1);
    let target = target(&azurite, "ingestiondata", "plan/bob/Bob Mail.pst");
    let mut with_block_md5 = settings(MIB, 3);
    with_block_md5.block_md5 = true;
    let outcome = upload(&target, &file, &with_block_md5).unwrap();
    let UploadOutcome::Complete(report) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(report.blocks, 11);
    assert_eq!(report.blocks_staged, 11);
    assert_eq!(report.blocks_reused, 0);
    assert_eq!(report.bytes_sent, 10 * MIB + 12345);
    assert_eq!(report.md5, Some(file_md5(&file)));
    assert_eq!(
        azurite.blob_md5("ingestiondata", "plan/bob/Bob Mail.pst"),
        file_md5(&file)
    );
    let headers = azurite
        .blob_headers("ingestiondata", "plan/bob/Bob Mail.pst")
        .unwrap();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    use base64::Engine;
    assert_eq!(
        header("content-md5"),
        Some(base64::engine::general_purpose::STANDARD.encode(file_md5(&file)))
    );
    assert_eq!(
        header("content-length"),
        Some((10 * MIB + 12345).to_string())
    );
}

#[test]
fn interrupted_upload_resumes_sending_only_missing_blocks_and_a_finished_one_is_skipped() {
    let azurite = Azurite::shared();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("carol.pst");
    write_random(&file, 12 * MIB, 2);
    let target = target(&azurite, "resume", "carol.pst");
    let cancel = CancellationToken::new();
    let observer = Arc::new(CancelAfter {
        after: 5,
        staged: AtomicU32::new(0),
        cancel: cancel.clone(),
    });
    let first = upload_with(&target, &file, &settings(MIB, 2), None, observer, &cancel).unwrap();
    let UploadOutcome::Interrupted(first) = first else {
        panic!("{first:?}")
    };
    assert!(first.blocks_staged >= 5, "{first:?}");
    assert!(first.md5.is_none());

    let second = upload(&target, &file, &settings(MIB, 2)).unwrap();
    let UploadOutcome::Complete(second) = second else {
        panic!("{second:?}")
    };
    println!(
        "first run staged {} blocks; second run reused {} and staged {}",
        first.blocks_staged, second.blocks_reused, second.blocks_staged
    );
    assert!(second.blocks_reused >= first.blocks_staged, "{second:?}");
    assert_eq!(second.blocks_reused + second.blocks_staged, 12);
    assert_eq!(azurite.blob_md5("resume", "carol.pst"), file_md5(&file));

    // Finished: with the resume record (identity and MD5), nothing is read or sent.
    let identity = FileIdentity::of(&file, MIB).unwrap();
    let third = upload_with(
        &target,
        &file,
        &settings(MIB, 2),
        Some((identity, file_md5(&file))),
        Arc::new(Quiet),
        &CancellationToken::new(),
    )
    .unwrap();
    let UploadOutcome::Complete(third) = third else {
        panic!("{third:?}")
    };
    assert!(third.already_complete);
    assert_eq!(third.bytes_sent, 0);
}

#[test]
fn a_changed_file_starts_over() {
    let azurite = Azurite::shared();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dave.pst");
    write_random(&file, 6 * MIB, 3);
    let target = target(&azurite, "changed", "dave.pst");
    let cancel = CancellationToken::new();
    let observer = Arc::new(CancelAfter {
        after: 3,
        staged: AtomicU32::new(0),
        cancel: cancel.clone(),
    });
    upload_with(&target, &file, &settings(MIB, 1), None, observer, &cancel).unwrap();
    write_random(&file, 6 * MIB, 4);
    let outcome = upload(&target, &file, &settings(MIB, 2)).unwrap();
    let UploadOutcome::Complete(report) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(report.blocks_reused, 0, "{report:?}");
    assert_eq!(report.blocks_staged, 6);
    assert_eq!(azurite.blob_md5("changed", "dave.pst"), file_md5(&file));
}

#[test]
fn an_empty_file_uploads_as_an_empty_blob() {
    let azurite = Azurite::shared();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("empty.pst");
    std::fs::write(&file, b"").unwrap();
    let target = target(&azurite, "empty", "empty.pst");
    let outcome = upload(&target, &file, &settings(MIB, 2)).unwrap();
    assert!(matches!(outcome, UploadOutcome::Complete(_)), "{outcome:?}");
    assert!(azurite.download("empty", "empty.pst").is_empty());
}

#[test]
fn an_expired_or_foreign_sas_fails_permanently_without_printing_the_signature() {
    let azurite = Azurite::shared();
    azurite.create_container("locked");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.pst");
    write_random(&file, 1000, 5);
    // Signed for another container: the service answers 403.
    let sas_query = support::azurite::container_sas("other", "rwl");
    let url = format!("{}/locked?{sas_query}", azurite.account_url());
    let sas = ContainerSas::parse(&url).unwrap();
    let target = BlobTarget::new(&sas, "x.pst").unwrap();
    let error = upload(&target, &file, &settings(MIB, 1)).unwrap_err();
    println!("{error}");
    assert!(!error.transient, "{error:?}");
    assert!(error.message.contains("403"), "{error}");
    let sig = sas_query.split("sig=").nth(1).unwrap();
    assert!(!error.message.contains(sig), "{error}");
    assert!(!error.message.contains("sig="), "{error}");
}

/// Records retries and concurrency changes.
#[derive(Default)]
struct Recorder {
    retries: Mutex<Vec<(u32, u32, Duration, String)>>,
    lowered: Mutex<Vec<usize>>,
}

impl UploadObserver for Recorder {
    fn retrying(&self, index: u32, attempt: u32, delay: Duration, error: &str) {
        self.retries
            .lock()
            .unwrap()
            .push((index, attempt, delay, error.to_string()));
    }
    fn concurrency_lowered(&self, now: usize) {
        self.lowered.lock().unwrap().push(now);
    }
}

fn through_proxy(azurite: &Azurite, container: &str, blob: &str) -> (HttpProxy, BlobTarget) {
    azurite.create_container(container);
    let proxy = HttpProxy::start(azurite.port);
    let url = proxy.rewrite(&azurite.container_sas_url(container), azurite.port);
    let sas = ContainerSas::parse(&url).unwrap();
    (proxy, BlobTarget::new(&sas, blob).unwrap())
}

#[test]
fn busy_answers_are_retried_and_a_block_failing_twice_lowers_the_concurrency() {
    let azurite = Azurite::shared();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("busy.pst");
    write_random(&file, 2 * 1024 * 1024, 6);
    let (proxy, target) = through_proxy(&azurite, "busy", "busy.pst");
    // Blocks 0 and 1 go out together and are refused; their retries are refused again.
    proxy.script([
        Fault::server_busy(),
        Fault::Reply {
            status: 500,
            code: "InternalError",
            retry_after: None,
        },
        Fault::server_busy(),
        Fault::Reply {
            status: 408,
            code: "OperationTimedOut",
            retry_after: None,
        },
    ]);
    let recorder = Arc::new(Recorder::default());
    let outcome = upload_with(
        &target,
        &file,
        &settings(256 * 1024, 2),
        None,
        recorder.clone(),
        &CancellationToken::new(),
    )
    .unwrap();
    let UploadOutcome::Complete(report) = outcome else {
        panic!("{outcome:?}")
    };
    let retries = recorder.retries.lock().unwrap().clone();
    println!("{retries:#?}");
    assert_eq!(retries.len(), 4);
    assert!(
        retries.iter().any(|r| r.3.contains("HTTP 503 ServerBusy")),
        "{retries:?}"
    );
    assert!(
        retries.iter().any(|r| r.3.contains("HTTP 408")),
        "{retries:?}"
    );
    assert_eq!(*recorder.lowered.lock().unwrap(), vec![1]);
    assert_eq!(report.final_concurrency, 1);
    assert_eq!(report.retries, 4);
    assert_eq!(
        report.bytes_resent,
        4 * 256 * 1024,
        "refused bodies were sent in full"
    );
    assert_eq!(azurite.blob_md5("busy", "busy.pst"), file_md5(&file));
}

#[test]
fn throttling_waits_for_retry_after_and_stalled_or_cut_blocks_are_sent_again() {
    let azurite = Azurite::shared();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("slow.pst");
    write_random(&file, 1024 * 1024, 7);
    let (proxy, target) = through_proxy(&azurite, "slow", "slow.pst");
    proxy.script([
        Fault::Reply {
            status: 429,
            code: "TooManyRequests",
            retry_after: Some(1),
        },
        Fault::Stall,
        Fault::Cut,
    ]);
    let recorder = Arc::new(Recorder::default());
    let mut s = settings(256 * 1024, 1);
    s.stall_timeout = Duration::from_millis(800);
    let outcome = upload_with(
        &target,
        &file,
        &s,
        None,
        recorder.clone(),
        &CancellationToken::new(),
    )
    .unwrap();
    assert!(matches!(outcome, UploadOutcome::Complete(_)), "{outcome:?}");
    let retries = recorder.retries.lock().unwrap().clone();
    println!("{retries:#?}");
    assert_eq!(retries.len(), 3, "{retries:?}");
    assert!(
        retries[0].2 >= Duration::from_secs(1),
        "Retry-After honoured: {retries:?}"
    );
    assert!(retries[1].3.contains("stalled"), "{retries:?}");
    assert!(!retries[2].3.is_empty());
    assert_eq!(proxy.faults_left(), 0);
    assert_eq!(azurite.blob_md5("slow", "slow.pst"), file_md5(&file));
}

#[test]
fn a_refused_block_is_not_retried() {
    let azurite = Azurite::shared();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.pst");
    write_random(&file, 300_000, 8);
    let (proxy, target) = through_proxy(&azurite, "refused", "bad.pst");
    proxy.script([Fault::Reply {
        status: 400,
        code: "InvalidBlobOrBlock",
        retry_after: None,
    }]);
    let recorder = Arc::new(Recorder::default());
    let error = upload_with(
        &target,
        &file,
        &settings(MIB, 1),
        None,
        recorder.clone(),
        &CancellationToken::new(),
    )
    .unwrap_err();
    assert!(!error.transient);
    assert!(
        error.message.contains("HTTP 400 InvalidBlobOrBlock"),
        "{error}"
    );
    assert!(recorder.retries.lock().unwrap().is_empty());
}

#[test]
fn a_dead_service_is_a_transient_failure_whose_message_holds_no_signature() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.pst");
    write_random(&file, 1000, 9);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let query = support::azurite::container_sas("ingestiondata", "rwl");
    let url = format!("http://127.0.0.1:{port}/devstoreaccount1/ingestiondata?{query}");
    let target = BlobTarget::new(&ContainerSas::parse(&url).unwrap(), "x.pst").unwrap();
    let mut s = settings(MIB, 1);
    s.block_attempts = 3;
    let error = upload(&target, &file, &s).unwrap_err();
    println!("{error}");
    assert!(error.transient, "{error:?}");
    let sig = query.split("sig=").nth(1).unwrap();
    assert!(!error.message.contains(sig), "{error}");
}
