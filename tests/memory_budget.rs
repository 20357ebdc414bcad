//! Memory of a copy, counted by the allocator (this test binary's global allocator counts
//! every live heap byte and the peak): a message larger than a lane's share of
//! `settings.memory_budget_mb` goes from the source's FETCH literal into the target's APPEND
//! literal without ever being held whole, and a message held whole is held once — read
//! buffer to target, never a second copy (no clone for the target's flags, no literal grown
//! by doubling). And when the source is cut mid-literal, the target's APPEND is abandoned:
//! nothing partial is stored, and the retry stores the message exactly once. A PST's large
//! attachments go from the file into the APPEND literal block by block.

mod pst_fixtures;
mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use cutover::engine::CancellationToken;
use support::dovecot::{Dovecot, User};
use support::fault_proxy::{FaultProxy, Faults};
use support::mailbox::{assert_same, imap_contents};
use support::remote::{apply, big_message, done, fixture_in, open_store, pw_file, seed, Fx};

/// The global allocator, counting: live bytes now and the most live at once since reset.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: forwards every call to the system allocator unchanged; only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The counts are the process's: tests of this binary run one at a time, so none measures
/// another's allocations.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const MB: usize = 1 << 20;

/// Applies `fx`'s plan; returns the report and the heap's peak above where it started.
async fn apply_measured(
    fx: &Fx,
    store: std::sync::Arc<dyn cutover::state::StateStore>,
) -> (cutover::engine::WalkReport, usize) {
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let report = apply(fx, store, CancellationToken::new()).await;
    (report, PEAK.load(Ordering::Relaxed).saturating_sub(before))
}

/// Prints the copy's heap peak with what it `copied`, and fails unless it stayed below `bound`.
fn assert_peak_below(peak: usize, bound: usize, copied: &str) {
    println!(
        "heap peak during the copy: {:.1} MB ({copied})",
        peak as f64 / MB as f64
    );
    assert!(
        peak < bound,
        "heap peak {peak} bytes, below {bound} expected: {copied}"
    );
}

/// Fills `user`'s inbox with `messages`; returns its contents as read back.
async fn seed_inbox(
    d: &Dovecot,
    user: &User,
    messages: Vec<cutover::connectors::mail::RawMessage>,
) -> support::mailbox::Contents {
    seed(d, user, &vec![("INBOX".to_string(), messages)]).await;
    imap_contents(d, user).await
}

/// The bytes of every message in `user`'s IMAP mailbox, sorted.
async fn stored_bytes(d: &Dovecot, user: &User) -> Vec<Vec<u8>> {
    let mut all: Vec<Vec<u8>> = imap_contents(d, user)
        .await
        .into_values()
        .flatten()
        .map(|(bytes, _, _)| bytes)
        .collect();
    all.sort();
    all
}

/// A plan copying `src`'s mailbox at `source` (kind and endpoint as plan fields) into
/// `dst`'s IMAP mailbox at `target` (endpoint fields) with `settings`, its password files
/// beside it.
fn copy_plan(target: &str, source: &str, settings: &str, src: &User, dst: &User) -> Fx {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "version: 1\nname: mem\ndomain: example.test\ntarget: {{ kind: imap, {target} }}\nsources:\n  old: {{ {source} }}\nsettings: {{ {settings} }}\nusers:\n  - email: kim@example.test\n    target_login: {{ login: {}, password: {} }}\n    migrate:\n      - {{ from: old, login: {}, password: {} }}\n",
        dst.login,
        pw_file(dir.path(), "dst.pw", &dst.password),
        src.login,
        pw_file(dir.path(), "src.pw", &src.password),
    );
    let base = dir.path().to_path_buf();
    fixture_in(dir, base, &yaml)
}

/// A plan copying `file` (a PST, a Maildir…: a source of `kind` without a login) into
/// `dst`'s IMAP mailbox, with the default budget; its password file in `dir`.
fn file_copy_plan(
    dir: tempfile::TempDir,
    kind: &str,
    file: &std::path::Path,
    d: &Dovecot,
    dst: &User,
) -> Fx {
    let yaml = format!(
        "version: 1\nname: mem\ndomain: example.test\ntarget: {{ kind: imap, {} }}\nsources:\n  old: {{ kind: {kind} }}\nusers:\n  - email: kim@example.test\n    target_login: {{ login: {}, password: {} }}\n    migrate:\n      - {{ from: old, file: {} }}\n",
        imaps(d),
        dst.login,
        pw_file(dir.path(), "dst.pw", &dst.password),
        file.display()
    );
    let base = dir.path().to_path_buf();
    fixture_in(dir, base, &yaml)
}

/// The test Dovecot's IMAPS endpoint as plan fields.
fn imaps(d: &Dovecot) -> String {
    format!(
        "host: 127.0.0.1, port: {}, tls: implicit, ca_file: {}",
        d.imaps_port,
        d.ca_file().display()
    )
}

/// One message over a lane's share (16 MB of the default 128 MB budget) is streamed: the
/// copy's heap never holds it. One under it is held once: the heap's peak stays below two
/// copies of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_message_is_streamed_and_a_whole_one_held_once() {
    let _serial = SERIAL.lock().await;
    const STREAMED: usize = 40 * MB;
    const WHOLE: usize = 14 * MB;
    let d = Dovecot::shared();
    let (src, dst) = (d.add_user("memsrc"), d.add_user("memdst"));
    seed(
        &d,
        &src,
        &vec![
            ("INBOX".to_string(), vec![big_message(1, STREAMED)]),
            ("Whole".to_string(), vec![big_message(2, WHOLE)]),
        ],
    )
    .await;
    let expected = imap_contents(&d, &src).await;
    let source = format!("kind: imap, {}", imaps(&d));
    let fx = copy_plan(&imaps(&d), &source, "max_message_size_mb: 50", &src, &dst);
    let store = open_store(&fx, "state.db");

    let (report, peak) = apply_measured(&fx, store).await;

    let counts = done(&report, "copy.kim.old");
    assert_eq!(counts.items, 2, "{report:#?}");
    assert_same(&expected, &imap_contents(&d, &dst).await);
    // Two copies of the whole message would need 28 MB; the streamed one alone 40 MB. The
    // rest of a copy (TLS, state, sessions, the streamed message's pieces) stays under 6 MB.
    assert_peak_below(
        peak,
        WHOLE + 6 * MB,
        &format!(
            "a streamed message of {} MB never whole, a whole one of {} MB held once",
            STREAMED / MB,
            WHOLE / MB
        ),
    );
}

/// The source cut in the middle of a streamed message's FETCH literal: the target's APPEND
/// literal is cut short too (its connection abandoned), so the server stores nothing of it;
/// the step's retry copies it whole, exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_cut_mid_literal_stores_nothing_partial() {
    let _serial = SERIAL.lock().await;
    let d = Dovecot::shared();
    let (src, dst) = (d.add_user("cutsrc"), d.add_user("cutdst"));
    let expected = seed_inbox(
        &d,
        &src,
        vec![big_message(3, 6 * MB), big_message(4, 5 * MB)],
    )
    .await;
    // Plaintext through the proxy, which cuts the first body download after 3 MB.
    let proxy = FaultProxy::start(
        d.imap_port,
        Faults {
            cut_download_every: Some(1),
            cut_download_after: 3 * MB,
            cut_download_limit: Some(1),
            ..Faults::default()
        },
    );
    let source = format!(
        "kind: imap, host: 127.0.0.1, port: {}, tls: none, allow_plaintext: true",
        proxy.port
    );
    let fx = copy_plan(&imaps(&d), &source, "memory_budget_mb: 16", &src, &dst);
    let report = apply(&fx, open_store(&fx, "state.db"), CancellationToken::new()).await;
    assert_eq!(proxy.counts().download_cuts, 1, "the cut happened");
    assert_eq!(done(&report, "copy.kim.old").items, 2, "{report:#?}");
    assert_same(&expected, &imap_contents(&d, &dst).await);
}

/// POP3 cannot stream into an APPEND (a dot-stuffed answer's exact size shows only at its
/// end): a message over a lane's share is spooled to an unnamed private file line by line and
/// appended from there — never held in memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_pop3_message_is_spooled_not_held() {
    let _serial = SERIAL.lock().await;
    const SPOOLED: usize = 12 * MB;
    let d = Dovecot::shared();
    let (src, dst) = (d.add_user("popmemsrc"), d.add_user("popmemdst"));
    let big = big_message(5, SPOOLED);
    d.deliver(&src, "1700000000.M1P1.big", big.bytes());
    let source = format!(
        "kind: pop3, host: 127.0.0.1, port: {}, tls: implicit, ca_file: {}",
        d.pop3s_port,
        d.ca_file().display()
    );
    let fx = copy_plan(&imaps(&d), &source, "memory_budget_mb: 16", &src, &dst);
    let store = open_store(&fx, "state.db");

    let (report, peak) = apply_measured(&fx, store).await;

    assert_eq!(done(&report, "copy.kim.old").items, 1, "{report:#?}");
    let copied = stored_bytes(&d, &dst).await;
    assert!(copied == vec![big.bytes().to_vec()], "byte-identical, once");
    assert_peak_below(
        peak,
        SPOOLED / 2,
        &format!("a POP3 message of {} MB, spooled", SPOOLED / MB),
    );
}

/// A POP3 server without TOP: a large message's identity can only be read by downloading it
/// whole, so those reads go one message at a time — never a round of large messages held at
/// once before the spooled copy of each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_top_large_pop3_messages_are_read_one_at_a_time() {
    let _serial = SERIAL.lock().await;
    const EACH: usize = 6 * MB;
    let d = Dovecot::shared();
    let (src, dst) = (d.add_user("poptopless"), d.add_user("poptoplessdst"));
    let big: Vec<_> = (0..3).map(|i| big_message(20 + i, EACH)).collect();
    for (i, m) in big.iter().enumerate() {
        d.deliver(&src, &format!("170000000{i}.M1P1.big"), m.bytes());
    }
    let proxy = FaultProxy::start(
        d.pop3_port,
        Faults {
            drop_capabilities: vec!["TOP".into()],
            ..Faults::default()
        },
    );
    let source = format!(
        "kind: pop3, host: 127.0.0.1, port: {}, tls: none, allow_plaintext: true",
        proxy.port
    );
    let fx = copy_plan(&imaps(&d), &source, "memory_budget_mb: 16", &src, &dst);
    let store = open_store(&fx, "state.db");

    let (report, peak) = apply_measured(&fx, store).await;

    assert_eq!(done(&report, "copy.kim.old").items, 3, "{report:#?}");
    let copied = stored_bytes(&d, &dst).await;
    let mut expected: Vec<Vec<u8>> = big.iter().map(|m| m.bytes().to_vec()).collect();
    expected.sort();
    assert!(copied == expected, "byte-identical, each once");
    assert_peak_below(
        peak,
        2 * EACH,
        &format!(
            "3 POP3 messages of {} MB without TOP, read one at a time",
            EACH / MB
        ),
    );
}

/// PST messages larger than a lane's share — two with a 20 MB attachment, one with a hundred
/// of 200 kB: the converted message's template is built (holding at most 512 KiB of
/// attachment data), the rest of the attachment data read from the file block by block into the APPEND
/// literal — the heap never holds a message, nor a large attachment. What lands is byte for
/// byte the whole conversion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_pst_attachments_are_streamed_from_the_file() {
    let _serial = SERIAL.lock().await;
    const ATTACHMENT: usize = 20 * MB;
    let d = Dovecot::shared();
    let dst = d.add_user("pstmemdst");
    let dir = tempfile::tempdir().unwrap();
    let mut spec = pst_fixtures::sample(false, 1);
    spec.folders.push(pst_fixtures::pst_writer::FolderSpec {
        name: "Big".into(),
        container_class: Some("IPF.Note".into()),
        messages: (0..2)
            .map(|i| {
                let mut m = pst_fixtures::mail_with_attachment(
                    &format!("big {i}"),
                    pst_fixtures::T0 + i64::from(i),
                    ATTACHMENT,
                    40 + i,
                );
                if i == 1 {
                    // A PidTagMessageSize that understates the message (edited by other
                    // software): the attachment table's sizes still tell it is large.
                    m.props.retain(|p| p.id != 0x0E08);
                    m.props.push(pst_fixtures::pst_writer::int32(0x0E08, 1000));
                }
                m
            })
            .chain([{
                // As written by software other than Outlook: no PidTagMessageSize, so the
                // attachment table's sizes must tell that it is large.
                let mut photos = pst_fixtures::mail_with_attachments(
                    "photos",
                    pst_fixtures::T0 + 5,
                    100,
                    200_000,
                );
                photos.props.retain(|p| p.id != 0x0E08);
                photos
            }])
            .collect(),
        ..pst_fixtures::pst_writer::FolderSpec::default()
    });
    let file = pst_fixtures::write_to(dir.path(), "big.pst", &spec);
    drop(spec);
    let fx = file_copy_plan(dir, "pst", &file, &d, &dst);
    let store = open_store(&fx, "state.db");

    let (report, peak) = apply_measured(&fx, store).await;

    let copied = done(&report, "copy.kim.old").items;
    let pst = cutover::connectors::pst::PstFile::open(&file).unwrap();
    let mut expected: Vec<Vec<u8>> = pst
        .folders()
        .iter()
        .flat_map(|f| pst.message_nids(f.nid))
        .filter_map(|nid| {
            let class = pst.summary(nid).unwrap().message_class;
            (class == "IPM.Note").then(|| pst.message(nid).unwrap().bytes)
        })
        .collect();
    expected.sort();
    assert_eq!(copied as usize, expected.len(), "{report:#?}");
    let stored = stored_bytes(&d, &dst).await;
    let big: Vec<usize> = stored
        .iter()
        .map(Vec::len)
        .filter(|n| *n > ATTACHMENT)
        .collect();
    assert_eq!(big.len(), 3, "the three large messages arrived");
    assert!(
        stored == expected,
        "byte for byte the whole conversion, each once"
    );
    let copied = format!("PST messages of {big:?} bytes, no attachment data held past 512 KiB");
    assert_peak_below(peak, 8 * MB, &copied);
}

/// A Maildir message larger than a lane's share is read from its file piece by piece into
/// the APPEND literal, never held; what lands is the file, byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_maildir_message_is_read_from_its_file() {
    use cutover::connectors::mail::maildir::MaildirTarget;
    use cutover::connectors::mail::FolderPath;
    let _serial = SERIAL.lock().await;
    const SIZE: usize = 24 * MB;
    let d = Dovecot::shared();
    let dst = d.add_user("maildirmemdst");
    let dir = tempfile::tempdir().unwrap();
    let big = big_message(30, SIZE);
    let mut md = MaildirTarget::open(dir.path().join("old.maildir")).unwrap();
    md.store(&FolderPath::inbox(), &big).unwrap();
    drop(md);
    let maildir = dir.path().join("old.maildir");
    let fx = file_copy_plan(dir, "maildir", &maildir, &d, &dst);
    let store = open_store(&fx, "state.db");

    let (report, peak) = apply_measured(&fx, store).await;

    assert_eq!(done(&report, "copy.kim.old").items, 1, "{report:#?}");
    let copied = stored_bytes(&d, &dst).await;
    assert!(copied == vec![big.bytes().to_vec()], "byte-identical, once");
    assert_peak_below(
        peak,
        8 * MB,
        &format!("a Maildir message of {} MB, read from its file", SIZE / MB),
    );
}

/// An mbox message larger than a lane's share is measured where it lies, then read line by
/// line, un-escaped, into the APPEND literal: never held. What lands is the message as the
/// mbox reader gives it whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_mbox_message_is_read_line_by_line() {
    use cutover::connectors::mail::{MboxReader, MboxVariant, MboxWriter};
    let _serial = SERIAL.lock().await;
    const SIZE: usize = 24 * MB;
    let d = Dovecot::shared();
    let dst = d.add_user("mboxmemdst");
    let dir = tempfile::tempdir().unwrap();
    let mbox = dir.path().join("export.mbox");
    let mut writer = MboxWriter::create(&mbox).unwrap();
    writer.write(&big_message(31, SIZE)).unwrap();
    writer.write(&big_message(32, 1000)).unwrap();
    writer.finish().unwrap();
    let mut expected: Vec<Vec<u8>> = MboxReader::open(&mbox, MboxVariant::Mboxrd)
        .unwrap()
        .map(|m| m.unwrap().message.bytes().to_vec())
        .collect();
    expected.sort();
    let fx = file_copy_plan(dir, "mbox", &mbox, &d, &dst);
    let store = open_store(&fx, "state.db");

    let (report, peak) = apply_measured(&fx, store).await;

    assert_eq!(done(&report, "copy.kim.old").items, 2, "{report:#?}");
    assert!(
        stored_bytes(&d, &dst).await == expected,
        "as read whole, once each"
    );
    assert_peak_below(
        peak,
        8 * MB,
        &format!("an mbox message of {} MB, read line by line", SIZE / MB),
    );
}

/// Ctrl-C while a large message streams: the copy stops between pieces — the target's
/// APPEND literal cut short (behind a proxy that reports each APPEND as it begins), so the
/// server stores nothing of it — rather than sending the rest first; the next run stores
/// each message once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_mid_streamed_message_stops_it_and_the_next_run_sends_it() {
    use cutover::engine::{StepResult, WalkOutcome};
    let _serial = SERIAL.lock().await;
    let d = Dovecot::shared();
    let (src, dst) = (d.add_user("cancelsrc"), d.add_user("canceldst"));
    let expected = seed_inbox(
        &d,
        &src,
        vec![big_message(40, 30 * MB), big_message(41, 30 * MB)],
    )
    .await;
    let proxy = FaultProxy::start(d.imap_port, Faults::default());
    let target = format!(
        "host: 127.0.0.1, port: {}, tls: none, allow_plaintext: true",
        proxy.port
    );
    let source = format!("kind: imap, {}", imaps(&d));
    let fx = copy_plan(&target, &source, "max_message_size_mb: 40", &src, &dst);
    let store = open_store(&fx, "state.db");
    let cancel = CancellationToken::new();
    let watch = proxy.watch();
    let stopper = {
        let cancel = cancel.clone();
        std::thread::spawn(move || {
            watch.wait_until(std::time::Duration::from_secs(60), |c| c.appends > 0);
            cancel.cancel();
        })
    };

    let report = apply(&fx, store.clone(), cancel).await;
    stopper.join().unwrap();

    assert_eq!(report.outcome, WalkOutcome::Interrupted, "{report:#?}");
    assert_eq!(report.steps["copy.kim.old"], StepResult::Interrupted);
    let stored = imap_contents(&d, &dst).await.values().flatten().count();
    assert!(
        stored < proxy.counts().appends,
        "the APPEND under way ran to its end: {stored} stored of {} begun",
        proxy.counts().appends
    );
    let report = apply(&fx, store, CancellationToken::new()).await;
    assert_eq!(report.outcome, WalkOutcome::Succeeded, "{report:#?}");
    assert_same(&expected, &imap_contents(&d, &dst).await);
}
