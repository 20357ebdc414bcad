//! PST → maildir: messages per second and peak RSS, beside readpst on the same files in the
//! same run, and the memory-flatness check (the largest PST once vs. 50 times in one process).
//!
//!     cargo bench --bench pst                      # writer-made files only
//!     CUTOVER_REAL_FIXTURES=… cargo bench --bench pst
//!     BENCH_PST_REPEAT=20 BENCH_PST_MESSAGES=3000 cargo bench --bench pst
//!
//! `BENCH_PST_SCENARIO=big` (`scripts/bench-pst.sh big`): a PST of 24 mails with 22 MiB
//! attachments in four folders, copied by `cutover apply` (PST → maildir through the copy
//! path, attachments streamed from the file) beside `readpst` on the same file: wall time and
//! peak RSS of both, from `wait4`.
//!
//! Each measurement runs in a child process (this binary with `--child`) so every peak RSS
//! is that process's own high-water mark (`VmHWM`). Output goes to /dev/shm when it exists, for both
//! tools, so the disk is not what is measured.

#[path = "../tests/pst_fixtures/mod.rs"]
mod pst_fixtures;
#[allow(dead_code)]
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use cutover::ops::pst::{export, ExportFormat, NoProgress};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        child(&args[2..]);
        return;
    }
    if std::env::var("BENCH_PST_SCENARIO").as_deref() == Ok("big") {
        big();
        return;
    }
    let repeat: usize = env_or("BENCH_PST_REPEAT", 10);
    let bulk: usize = env_or("BENCH_PST_MESSAGES", 2000);
    let scratch_root = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let scratch = tempfile::tempdir_in(&scratch_root).expect("scratch dir");
    let mut files = pst_fixtures::real_psts();
    let real = files.len();
    files.extend(pst_fixtures::twins(scratch.path()));
    let large = scratch.path().join("bulk.pst");
    std::fs::write(&large, pst_fixtures::pst_writer::write(&bulk_spec(bulk))).expect("write bulk");
    files.push(large.clone());
    println!(
        "files: {} real, {} writer-made, plus bulk.pst ({} messages, {:.1} MB); {repeat} repetitions; output on {}",
        real,
        files.len() - real - 1,
        bulk,
        std::fs::metadata(&large).unwrap().len() as f64 / 1e6,
        scratch_root.display()
    );

    // cutover: every file, `repeat` times, one child per file.
    let me = std::env::current_exe().expect("own path");
    let mut ours_secs = 0.0;
    let mut ours_msgs = 0u64;
    let mut ours_rss = 0u64;
    for file in &files {
        let r = run_child(&me, file, repeat, scratch.path());
        ours_secs += r.secs;
        ours_msgs += r.messages;
        ours_rss = ours_rss.max(r.rss_kb);
    }
    // readpst: the same files, the same number of times.
    let mut readpst_secs = 0.0;
    for file in &files {
        for _ in 0..repeat {
            let out = tempfile::tempdir_in(scratch.path()).unwrap();
            let start = Instant::now();
            let status = Command::new("readpst")
                .args(["-D", "-S", "-q", "-o"])
                .arg(out.path())
                .arg(file)
                .status()
                .expect("readpst (apt-get install pst-utils)");
            readpst_secs += start.elapsed().as_secs_f64();
            assert!(status.success(), "readpst failed on {}", file.display());
        }
    }
    println!(
        "cutover pst → maildir: {ours_msgs} messages in {ours_secs:.2} s = {:.0} msgs/s, peak RSS {:.1} MB",
        ours_msgs as f64 / ours_secs,
        ours_rss as f64 / 1024.0
    );
    println!(
        "readpst -D -S (same files): {readpst_secs:.2} s = {:.0} msgs/s",
        ours_msgs as f64 / readpst_secs
    );
    println!(
        "ratio: cutover is {:.2}x readpst's speed (time readpst / time cutover)",
        readpst_secs / ours_secs
    );

    // Memory flatness: the largest file once, then 50 times in one process.
    let largest = files
        .iter()
        .max_by_key(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
        .unwrap();
    let once = run_child(&me, largest, 1, scratch.path());
    let fifty = run_child(&me, largest, 50, scratch.path());
    println!(
        "peak RSS, {}: once {:.1} MB, 50 times in one run {:.1} MB (difference {:+.1} MB)",
        largest.file_name().unwrap().to_string_lossy(),
        once.rss_kb as f64 / 1024.0,
        fifty.rss_kb as f64 / 1024.0,
        (fifty.rss_kb as f64 - once.rss_kb as f64) / 1024.0
    );
}

/// The big-attachment scenario (see the module documentation).
fn big() {
    use pst_fixtures::pst_writer::FolderSpec;
    let messages = env_or("BENCH_PST_MESSAGES", 24);
    let attachment = env_or("BENCH_PST_ATTACH_KB", 22 * 1024) * 1024;
    let scratch_root = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let scratch = tempfile::tempdir_in(&scratch_root).expect("scratch dir");
    let base = scratch.path();
    let mut spec = pst_fixtures::sample(false, 1);
    spec.folders = ["Inbox", "Archive", "Projects", "Sent"]
        .iter()
        .enumerate()
        .map(|(f, name)| FolderSpec {
            name: (*name).into(),
            container_class: Some("IPF.Note".into()),
            messages: (f..messages)
                .step_by(4)
                .map(|i| {
                    pst_fixtures::mail_with_attachment(
                        &format!("big {i}"),
                        pst_fixtures::T0 + i as i64,
                        attachment,
                        i as u32,
                    )
                })
                .collect(),
            ..FolderSpec::default()
        })
        .collect();
    let file = pst_fixtures::write_to(base, "big.pst", &spec);
    drop(spec);
    let size = std::fs::metadata(&file).unwrap().len() as f64 / 1e6;
    println!(
        "big.pst: {messages} mails with {} KiB attachments in 4 folders, {size:.1} MB; output on {}",
        attachment / 1024,
        scratch_root.display()
    );
    std::fs::write(
        base.join("plan.yaml"),
        format!(
            "version: 1\nname: big\ndomain: example.test\nsettings: {{ max_message_size_mb: 40 }}\ntarget: {{ kind: maildir, path: out }}\nsources:\n  outlook: {{ kind: pst }}\nusers:\n  - email: bench@example.test\n    migrate:\n      - {{ from: outlook, file: {} }}\n",
            file.display()
        ),
    )
    .expect("plan");
    let (secs, rss) = support::apply_copies_measured(base);
    let copied = count_files(&base.join("out"));
    assert_eq!(copied, messages, "cutover copied every mail");
    let readpst_out = base.join("readpst");
    std::fs::create_dir(&readpst_out).unwrap();
    let (peer_secs, peer_rss) = support::run_measured(
        Command::new("readpst")
            .args(["-D", "-S", "-q", "-o"])
            .arg(&readpst_out)
            .arg(&file),
        "readpst",
        &base.join("readpst.stderr"),
    );
    println!(
        "big pst->maildir, cutover apply: {secs:.2} s ({:.1} MB/s of PST), peak RSS {rss:.0} MB",
        size / secs
    );
    println!(
        "big pst, readpst -D -S: {peer_secs:.2} s ({:.1} MB/s of PST), peak RSS {peer_rss:.0} MB",
        size / peer_secs
    );
    println!(
        "big pst, cutover/readpst: wall time {:.2}x, peak RSS {:.2}x",
        secs / peer_secs,
        rss / peer_rss
    );
}

/// Messages below `dir`: files in a maildir's `cur` and `new` folders.
fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .map(|e| {
                let path = e.path();
                if path.is_dir() {
                    count_files(&path)
                } else {
                    usize::from(dir.ends_with("cur") || dir.ends_with("new"))
                }
            })
            .sum()
    })
}

struct ChildResult {
    secs: f64,
    messages: u64,
    rss_kb: u64,
}

fn run_child(me: &Path, file: &Path, repeat: usize, scratch: &Path) -> ChildResult {
    let output = Command::new(me)
        .arg("--child")
        .arg(file)
        .arg(repeat.to_string())
        .arg(scratch)
        .output()
        .expect("run child");
    assert!(
        output.status.success(),
        "child failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    let field = |name: &str| -> f64 {
        text.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("child output lacks {name}: {text}"))
    };
    ChildResult {
        secs: field("secs"),
        messages: field("messages") as u64,
        rss_kb: field("rss_kb") as u64,
    }
}

/// Child: export `file` to a fresh maildir `repeat` times, report time, messages, peak RSS.
fn child(args: &[String]) {
    let file = PathBuf::from(&args[0]);
    let repeat: usize = args[1].parse().unwrap();
    let scratch = PathBuf::from(&args[2]);
    let mut messages = 0u64;
    let start = Instant::now();
    for _ in 0..repeat {
        let out = tempfile::tempdir_in(&scratch).unwrap();
        let summary =
            export(&file, ExportFormat::Maildir, out.path(), &mut NoProgress).expect("export");
        messages += summary.messages_written as u64;
    }
    let secs = start.elapsed().as_secs_f64();
    println!("secs={secs} messages={messages} rss_kb={}", peak_rss_kb());
}

/// This process image's peak RSS (`VmHWM`). Not `getrusage`'s `ru_maxrss`: Linux carries
/// that across `execve`, so a child forked from this (large) parent would report the parent's
/// pages.
fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                line.strip_prefix("VmHWM:")
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
        })
        .unwrap_or(0)
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A PST with `messages` mails of ~20 kB each (HTML body, a 16 kB attachment): the "large
/// file" of the memory check.
fn bulk_spec(messages: usize) -> pst_fixtures::pst_writer::PstSpec {
    use pst_fixtures::pst_writer::*;
    let mut spec = pst_fixtures::sample(false, 1);
    let mut bulk = FolderSpec {
        name: "Bulk".into(),
        container_class: Some("IPF.Note".into()),
        ..FolderSpec::default()
    };
    for i in 0..messages {
        let mut m = MessageSpec {
            props: vec![
                unicode(0x001A, "IPM.Note"),
                unicode(0x0037, &format!("bulk message {i}")),
                unicode(0x0042, "Sender"),
                unicode(0x0064, "SMTP"),
                unicode(0x0065, "sender@example.com"),
                time(0x0039, pst_fixtures::T0 + i as i64),
                time(0x0E06, pst_fixtures::T0 + i as i64 + 5),
                int32(0x0E07, 1),
                unicode(0x1035, &format!("<bulk-{i}@example.com>")),
                unicode(0x1000, &"Lorem ipsum dolor sit amet. ".repeat(40)),
                binary(
                    0x1013,
                    format!(
                        "<html><body>{}</body></html>",
                        "<p>Lorem ipsum</p>".repeat(60)
                    )
                    .as_bytes(),
                ),
            ],
            recipients: vec![vec![
                int32(0x0C15, 1),
                unicode(0x3001, "Recipient"),
                unicode(0x3002, "SMTP"),
                unicode(0x3003, "rcpt@example.com"),
            ]],
            ..MessageSpec::default()
        };
        m.attachments.push(AttachmentSpec {
            props: vec![
                unicode(0x3707, &format!("file{i}.bin")),
                binary(0x3701, &pst_fixtures::pseudo_image(16_000, i as u32)),
            ],
            embedded: None,
        });
        bulk.messages.push(m);
    }
    spec.folders.push(bulk);
    spec
}
