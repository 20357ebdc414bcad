//! PST files straight into a target through the one copy path (`kind: pst, via: direct`):
//! default folders land in the target's own whatever the PST's language, contacts and
//! calendars are not copied as mail, an archive PST lands below its `into` folder, reruns and
//! a lost state store nothing twice, a damaged message is left behind and reported while the
//! rest of the file is copied, and a copy killed with SIGKILL at random instants and resumed
//! stores every message exactly once.

mod autocomplete_fixtures;
mod common;
mod pst_fixtures;
mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::apply_process::{apply as apply_process, resume_until_done, settled_so_far};
use cutover::connectors::pst::PstFile;
use cutover::engine::{CancellationToken, StepResult, WalkOutcome};
use pst_fixtures::pst_writer::{self, *};
use support::dovecot::Dovecot;
use support::fault_proxy::{FaultProxy, Faults};
use support::mailbox::{assert_each_once, imap_contents};
use support::remote::{
    apply, done, fixture_in, kill_at_appends, maildir_contents, open_store, server,
};

/// Messages per target folder (`/`-joined, `INBOX` for the inbox).
fn per_folder(contents: &support::mailbox::Contents) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for ((folder, _), copies) in contents {
        *out.entry(folder.clone()).or_default() += copies.len();
    }
    out
}

fn plan(target: &str, file: &Path, into: Option<&str>) -> String {
    let into = into.map_or(String::new(), |f| format!(", into: {f}"));
    format!(
        "version: 1\nname: pst-copy\ndomain: example.test\ntarget: {target}\nsources:\n  outlook: {{ kind: pst }}\nusers:\n  - email: carol@example.test\n    migrate:\n      - {{ from: outlook, file: {}{into} }}\n",
        file.display()
    )
}

/// [`plan`] into an IMAP `target` as `login` (password in `dst.pw`), with `settings`
/// (a YAML flow mapping's inside, may be empty).
fn imap_plan(target: &str, file: &Path, into: Option<&str>, login: &str, settings: &str) -> String {
    plan(target, file, into)
        .replace(
            "  - email: carol@example.test\n",
            &format!(
                "  - email: carol@example.test\n    target_login: {{ login: {login}, password: {{ file: dst.pw }} }}\n"
            ),
        )
        .replace(
            "name: pst-copy\n",
            &format!("name: pst-copy\nsettings: {{ {settings} }}\n"),
        )
}

/// The Portuguese-Outlook sample plus a folder with two different messages sharing one
/// Message-ID and a message stored twice.
fn sample_with_twins(dir: &Path) -> std::path::PathBuf {
    let mut spec = pst_fixtures::sample(false, 1);
    let twin = |subject: &str, at: i64| MessageSpec {
        props: vec![
            unicode(0x001A, "IPM.Note"),
            unicode(0x0037, subject),
            time(0x0039, at),
            time(0x0E06, at),
            unicode(0x1035, "<twin@pst.example>"),
            unicode(0x1000, subject),
        ],
        ..MessageSpec::default()
    };
    let dup = twin("the same twice", pst_fixtures::T0 + 500);
    spec.folders.push(FolderSpec {
        name: "Twins".into(),
        container_class: Some("IPF.Note".into()),
        messages: vec![
            twin("first draft", pst_fixtures::T0 + 100),
            twin("edited draft", pst_fixtures::T0 + 200),
            dup.clone(),
            dup,
        ],
        ..FolderSpec::default()
    });
    pst_fixtures::write_to(dir, "carol.pst", &spec)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pst_lands_in_the_targets_own_folders_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().to_path_buf();
    let file = sample_with_twins(&base);
    let fx = fixture_in(
        dir,
        base.clone(),
        &plan("{ kind: maildir, path: out }", &file, None),
    );
    let store = open_store(&fx, "state.db");
    let report = apply(&fx, Arc::clone(&store), CancellationToken::new()).await;
    assert_eq!(report.outcome, WalkOutcome::Succeeded, "{report:#?}");
    let have = maildir_contents(&base.join("out/carol@example.test"));
    assert_eq!(
        per_folder(&have),
        BTreeMap::from([
            // The Portuguese inbox, sent, drafts and junk are the target's own.
            ("INBOX".to_string(), 4),
            (
                "Top Folder/Child Folder With Space at the End ".to_string(),
                1
            ),
            ("Sent".to_string(), 1),
            ("Drafts".to_string(), 1),
            ("收件箱".to_string(), 1),
            // Twins both arrive; the duplicate arrives twice. No contacts, no calendar.
            ("Twins".to_string(), 4),
        ]),
        "{:?}",
        have.keys().collect::<Vec<_>>()
    );
    let copied = done(&report, "copy.carol.outlook").items;
    assert_eq!(copied, 12);
    assert_eq!(done(&report, "verify.carol").items, 12);

    // The same PST gives the same bytes: a lost state finds everything there.
    let again = apply(&fx, open_store(&fx, "lost.db"), CancellationToken::new()).await;
    let counts = done(&again, "copy.carol.outlook");
    assert_eq!((counts.items, counts.present), (0, 12));
    assert_eq!(
        maildir_contents(&base.join("out/carol@example.test")),
        have,
        "nothing stored twice"
    );
    let rerun = apply(&fx, store, CancellationToken::new()).await;
    assert!(rerun.steps.values().all(|r| *r == StepResult::Unchanged));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archive_pst_lands_below_its_folder() {
    let d = Dovecot::shared();
    let dst = d.add_user("pst-archive");
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().to_path_buf();
    let file = pst_fixtures::write_to(&base, "archive.pst", &pst_fixtures::sample(false, 2));
    std::fs::write(base.join("dst.pw"), &dst.password).unwrap();
    let target = format!(
        "{{ kind: imap, {} }}",
        server(&d, d.imaps_port)
            .trim_start_matches("{ ")
            .trim_end_matches(" }")
    );
    let yaml = imap_plan(&target, &file, Some("Archive"), &dst.login, "");
    let fx = fixture_in(dir, base.clone(), &yaml);
    let report = apply(&fx, open_store(&fx, "state.db"), CancellationToken::new()).await;
    assert_eq!(report.outcome, WalkOutcome::Succeeded, "{report:#?}");
    let want: BTreeMap<String, usize> = [
        ("Archive/Inbox", 4),
        (
            "Archive/Inbox/Top Folder/Child Folder With Space at the End ",
            1,
        ),
        ("Archive/Sent Items", 1),
        ("Archive/Drafts", 1),
        ("Archive/收件箱", 1),
    ]
    .into_iter()
    .map(|(f, n)| (f.to_string(), n))
    .collect();
    assert_eq!(per_folder(&imap_contents(&d, &dst).await), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_message_is_left_behind_and_the_rest_copied() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().to_path_buf();
    let spec = pst_fixtures::sample(false, 0);
    // Damage one message's data block: the block CRC no longer matches.
    let mut bytes = pst_writer::write(&spec);
    let pst = PstFile::from_bytes("probe.pst", bytes.clone()).unwrap();
    let inbox = pst
        .folders()
        .iter()
        .find(|f| f.path.last().is_some_and(|n| n == "Caixa de Entrada"))
        .unwrap()
        .nid;
    let victim = pst.message_nids(inbox)[1];
    let offset = pst.message_block_offset(victim).unwrap() as usize;
    bytes[offset + 8] ^= 0xff;
    let file = base.join("damaged.pst");
    std::fs::write(&file, &bytes).unwrap();
    let fx = fixture_in(
        dir,
        base.clone(),
        &plan("{ kind: maildir, path: out }", &file, None),
    );
    let store = open_store(&fx, "state.db");
    let report = apply(&fx, Arc::clone(&store), CancellationToken::new()).await;
    let counts = done(&report, "copy.carol.outlook");
    assert_eq!((counts.items, counts.left_behind), (7, 1), "{report:#?}");
    let left = cutover::runners::skipped::from_checkpoints(
        &store.checkpoints("copy.carol.outlook").unwrap(),
    );
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].folder.ends_with("Caixa de Entrada"), "{left:?}");
    assert!(
        left[0].reason.contains(&format!("{victim:#x}")) && left[0].reason.contains("CRC"),
        "names the node and why: {}",
        left[0].reason
    );
}

/// A message whose attachment data is damaged (a block's CRC no longer matches): copied
/// without that attachment, and the report lists it with what it lacks — moved, but not
/// whole, and the consultant can tell the client which.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_attachment_is_reported_and_its_message_copied() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().to_path_buf();
    let mut spec = pst_fixtures::sample(false, 0);
    spec.folders.push(FolderSpec {
        name: "Scans".into(),
        container_class: Some("IPF.Note".into()),
        messages: vec![pst_fixtures::mail_with_attachment(
            "scan",
            pst_fixtures::T0,
            300_000,
            5,
        )],
        ..FolderSpec::default()
    });
    // Unencrypted (crypt 0): the attachment's bytes are in the file as they are.
    let mut bytes = pst_writer::write(&spec);
    let data = pst_fixtures::pseudo_image(300_000, 5);
    let probe = &data[100_000..100_064];
    let at = bytes
        .windows(probe.len())
        .position(|w| w == probe)
        .expect("the attachment's data is in the file");
    bytes[at] ^= 0xff;
    let file = base.join("damaged-attachment.pst");
    std::fs::write(&file, &bytes).unwrap();
    // On disk too, for the report.
    let yaml = plan("{ kind: maildir, path: out }", &file, None);
    std::fs::write(base.join("plan.yaml"), &yaml).unwrap();
    let fx = fixture_in(dir, base.clone(), &yaml);
    let store = open_store(&fx, "state.db");
    let report = apply(&fx, Arc::clone(&store), CancellationToken::new()).await;
    let counts = done(&report, "copy.carol.outlook");
    assert_eq!((counts.items, counts.left_behind), (9, 0), "{report:#?}");
    let stored = maildir_contents(&base.join("out/carol@example.test"));
    assert!(
        stored.keys().any(|(folder, _)| folder == "Scans"),
        "the message arrived: {:?}",
        stored.keys()
    );
    let checkpoints = store.checkpoints("copy.carol.outlook").unwrap();
    let partly = cutover::runners::skipped::partial_from_checkpoints(&checkpoints);
    assert_eq!(partly.len(), 1, "{partly:?}");
    assert_eq!(partly[0].folder, "Scans");
    assert_eq!(partly[0].subject.as_deref(), Some("scan"));
    assert!(
        partly[0].reason.contains("scan.pdf") && partly[0].reason.contains("CRC"),
        "names the attachment and why: {}",
        partly[0].reason
    );
    assert!(cutover::runners::skipped::from_checkpoints(&checkpoints).is_empty());
    let out = support::remote::report_markdown(&base, &report, store.as_ref());
    assert!(
        out.contains("Copied without some of their parts") && out.contains("scan.pdf"),
        "{out}"
    );
}

/// Every real PST of the fixtures (or, without them, the writer-made ones): every mail
/// message the reader lists arrives once, and a lost state stores nothing again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fixture_pst_copies_all_its_mail() {
    let scratch = tempfile::tempdir().unwrap();
    let mut files = pst_fixtures::real_psts();
    if files.is_empty() {
        files = pst_fixtures::twins(scratch.path());
    }
    assert!(!files.is_empty());
    for file in files {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().to_path_buf();
        let fx = fixture_in(
            dir,
            base.clone(),
            &plan("{ kind: maildir, path: out }", &file, None),
        );
        let report = apply(&fx, open_store(&fx, "state.db"), CancellationToken::new()).await;
        assert_eq!(
            report.outcome,
            WalkOutcome::Succeeded,
            "{}: {report:#?}",
            file.display()
        );
        let copied = done(&report, "copy.carol.outlook");
        let stored: usize = maildir_contents(&base.join("out/carol@example.test"))
            .values()
            .map(Vec::len)
            .sum::<usize>();
        assert_eq!(copied.items as usize, stored, "{}", file.display());
        assert_eq!(
            done(&report, "verify.carol").items as usize,
            stored,
            "{}",
            file.display()
        );
        let lost = apply(&fx, open_store(&fx, "lost.db"), CancellationToken::new()).await;
        assert_eq!(
            done(&lost, "copy.carol.outlook").items,
            0,
            "{}: nothing stored twice",
            file.display()
        );
    }
}

const BULK: usize = 600;

/// A PST of `BULK` mails of a few kB.
fn bulk(dir: &Path) -> std::path::PathBuf {
    let mut spec = pst_fixtures::sample(false, 1);
    let mut folder = FolderSpec {
        name: "Bulk".into(),
        container_class: Some("IPF.Note".into()),
        ..FolderSpec::default()
    };
    for i in 0..BULK {
        folder.messages.push(MessageSpec {
            props: vec![
                unicode(0x001A, "IPM.Note"),
                unicode(0x0037, &format!("bulk {i}")),
                time(0x0039, pst_fixtures::T0 + i as i64),
                time(0x0E06, pst_fixtures::T0 + i as i64),
                unicode(0x1035, &format!("<bulk-{i}@pst.example>")),
                unicode(0x1000, &"Lorem ipsum dolor sit amet. ".repeat(80)),
            ],
            ..MessageSpec::default()
        });
    }
    spec.folders.push(folder);
    pst_fixtures::write_to(dir, "bulk.pst", &spec)
}

/// Messages the state says were settled (committed) so far.
fn copied_so_far(dir: &Path) -> u64 {
    settled_so_far(&dir.join(".cutover").join("pst-copy.db"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_pst_copy_then_resume_delivers_exactly_once() {
    let d = Dovecot::shared();
    let dst = d.add_user("pst-kill");
    let dir = tempfile::tempdir().unwrap();
    let file = bulk(dir.path());
    std::fs::write(dir.path().join("dst.pw"), &dst.password).unwrap();
    let target = format!(
        "{{ kind: imap, {} }}",
        server(&d, d.imaps_port)
            .trim_start_matches("{ ")
            .trim_end_matches(" }")
    );
    let yaml = imap_plan(&target, &file, None, &dst.login, "output_dir: reports");
    std::fs::write(dir.path().join("plan.yaml"), yaml).unwrap();
    let total = {
        let pst = PstFile::open(&file).unwrap();
        pst.folders()
            .iter()
            .map(|f| {
                pst.messages(f.nid)
                    .messages
                    .iter()
                    .filter(|m| m.message_class == "IPM.Note")
                    .count()
            })
            .sum::<usize>()
    };
    let mut rng = 0x0057_u64;
    let mut mid_copy = 0;
    for _ in 0..6 {
        let before = copied_so_far(dir.path());
        let mut child = apply_process(dir.path()).spawn().expect("cutover runs");
        let waiting = Instant::now();
        while copied_so_far(dir.path()) == before
            && child.try_wait().unwrap().is_none()
            && waiting.elapsed() < Duration::from_secs(30)
        {
            std::thread::sleep(Duration::from_millis(2));
        }
        rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1);
        std::thread::sleep(Duration::from_millis((rng >> 33) % 40));
        if child.try_wait().unwrap().is_some() {
            break;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let copied = copied_so_far(dir.path());
        if copied > 0 && copied < total as u64 {
            mid_copy += 1;
        }
    }
    assert!(mid_copy >= 2, "only {mid_copy} kills landed mid-copy");
    resume_until_done(dir.path(), 4);
    assert_each_once(&imap_contents(&d, &dst).await, total);
}

/// A kill while a PST message too large for a lane's share (budget 16 MB: 2 MB) is being
/// written from the file into the target's APPEND literal, its 6 MB attachment read block by
/// block: the target (behind a proxy that reports each APPEND as it starts) gets a literal cut
/// short, which it discards; the resumed run stores that message once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_streamed_pst_message_then_resume_delivers_exactly_once() {
    let d = Dovecot::shared();
    let dst = d.add_user("pst-stream-kill");
    let dir = tempfile::tempdir().unwrap();
    // Only large messages, so every APPEND is one streamed message.
    let mut spec = pst_fixtures::sample(false, 1);
    spec.folders = vec![FolderSpec {
        name: "Big".into(),
        container_class: Some("IPF.Note".into()),
        messages: (0..5)
            .map(|i| {
                pst_fixtures::mail_with_attachment(
                    &format!("big {i}"),
                    pst_fixtures::T0 + i64::from(i),
                    6 << 20,
                    60 + i,
                )
            })
            .collect(),
        ..FolderSpec::default()
    }];
    let file = pst_fixtures::write_to(dir.path(), "big.pst", &spec);
    let total = {
        let pst = PstFile::open(&file).unwrap();
        pst.folders()
            .iter()
            .flat_map(|f| pst.messages(f.nid).messages)
            .filter(|m| m.message_class == "IPM.Note")
            .count()
    };
    let proxy = FaultProxy::start(d.imap_port, Faults::default());
    std::fs::write(dir.path().join("dst.pw"), &dst.password).unwrap();
    let target = format!(
        "{{ kind: imap, host: 127.0.0.1, port: {}, tls: none, allow_plaintext: true }}",
        proxy.port
    );
    let yaml = imap_plan(
        &target,
        &file,
        None,
        &dst.login,
        "output_dir: reports, memory_budget_mb: 16",
    );
    std::fs::write(dir.path().join("plan.yaml"), yaml).unwrap();
    let mid_literal = kill_at_appends(&proxy, &d, &dst, 3, || {
        apply_process(dir.path()).spawn().expect("cutover runs")
    })
    .await;
    assert!(mid_literal >= 1, "no kill landed mid-literal");
    resume_until_done(dir.path(), 4);
    assert_eq!(total, 5);
    let have = imap_contents(&d, &dst).await;
    assert_each_once(&have, total);
    let large = have
        .values()
        .flatten()
        .filter(|(bytes, _, _)| bytes.len() > 6 << 20)
        .count();
    assert_eq!(large, 5, "every large message arrived whole");
    println!(
        "streamed PST kill test: {mid_literal} SIGKILLs mid-literal: every message exactly once"
    );
}

/// `autocomplete: {}` with a PST: the cache Outlook keeps inside the PST (the Inbox's hidden
/// `IPM.Configuration.Autocomplete` message) is carried over like a `.dat` file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_autocomplete_cache_inside_a_pst_is_carried_over() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().to_path_buf();
    // Outlook's own file where the real fixtures are at hand, else the sample with a stream
    // written by cutover's autocomplete writer in its Inbox.
    let file = pst_fixtures::real_psts()
        .into_iter()
        .find(|p| p.ends_with("process-pst_unsent_email.pst"))
        .unwrap_or_else(|| {
            let mut spec = pst_fixtures::sample(false, 1);
            spec.folders[0].associated[0].props[1] =
                binary(0x7C09, &autocomplete_fixtures::writer_made_stream());
            pst_fixtures::write_to(&base, "carol.pst", &spec)
        });
    let stream = PstFile::open(&file)
        .unwrap()
        .autocomplete_stream()
        .unwrap()
        .expect("the PST holds an autocomplete cache");
    let rows = cutover::connectors::autocomplete::parse(&stream)
        .unwrap()
        .rows
        .len();
    assert!(rows > 0);
    let yaml = plan("{ kind: maildir, path: out }", &file, None)
        .replace("    migrate:\n", "    autocomplete: {}\n    migrate:\n");
    let fx = fixture_in(dir, base.clone(), &yaml);
    let report = apply(&fx, open_store(&fx, "state.db"), CancellationToken::new()).await;
    assert_eq!(report.outcome, WalkOutcome::Succeeded, "{report:#?}");
    assert_eq!(done(&report, "autocomplete.carol").items as usize, rows);
    let outputs: Vec<_> = std::fs::read_dir(base.join("cutover-out/autocomplete"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        outputs.iter().any(|n| n.ends_with(".nk2")) && outputs.iter().any(|n| n.contains("from-")),
        "{outputs:?}"
    );
}
