//! PST upload throughput against a throwaway Azurite (in memory): `cutover pst upload` at a
//! few concurrencies beside Microsoft's Python SDK (`azure-storage-blob`, `upload_blob`)
//! in the same run — seconds, MiB/s, peak RSS (VmHWM) and CPU time of each process, and the
//! ratio to the Python SDK's default (`max_concurrency=1`). Then each is killed (SIGKILL)
//! half way through an upload and run again: the bytes sent twice, counted by a proxy in
//! front of Azurite.
//! Every scenario gets a fresh Azurite, so one upload's memory does not slow the next.
//! Prints figures; asserts only that each blob's MD5 is the file's.
//!
//! Scale: `CUTOVER_BENCH_UPLOAD_MIB` (default 1024), `CUTOVER_BENCH_CONCURRENCY` (default
//! `1,2,4,8`), `CUTOVER_BENCH_VENV` (a venv with azure-storage-blob; without it the Python
//! rows are skipped with a note). The SDK computes no checksum by default; a third Python
//! row passes `validate_content=True` (an MD5 per block), the fair peer of cutover's file
//! MD5. Run: `scripts/bench-upload.sh` (release build, venv made).

#[allow(dead_code)]
#[path = "../tests/support/azurite.rs"]
mod azurite;
#[allow(dead_code)]
#[path = "../tests/support/http_proxy.rs"]
mod http_proxy;
#[allow(dead_code)]
#[path = "../tests/support/random_file.rs"]
mod random_file;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use azurite::Azurite;
use http_proxy::HttpProxy;

const MIB: u64 = 1024 * 1024;
const BLOCK: u64 = 4 * MIB;

struct Run {
    seconds: f64,
    peak_rss_kb: i64,
    /// User plus system CPU time of the process.
    cpu_seconds: f64,
    stdout: String,
}

/// Waits for `child` and returns its status, `ru_maxrss` in KiB and CPU seconds (wait4's
/// rusage).
fn wait_rusage(child: &mut Child) -> (i32, i64, f64) {
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting for a child we spawned, with valid out-pointers.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert!(pid > 0, "wait4 failed");
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (
        status,
        usage.ru_maxrss,
        seconds(usage.ru_utime) + seconds(usage.ru_stime),
    )
}

/// The process's peak RSS (`VmHWM`), read from /proc until it is gone. Not wait4's
/// `ru_maxrss`, which counts the pages a child shares with the forking parent before exec.
fn watch_hwm(pid: u32) -> std::thread::JoinHandle<i64> {
    std::thread::spawn(move || {
        let path = format!("/proc/{pid}/status");
        let mut peak = 0i64;
        while let Ok(text) = std::fs::read_to_string(&path) {
            if text
                .lines()
                .any(|l| l.starts_with("State:") && l.contains("zombie"))
            {
                break;
            }
            if let Some(kb) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
            {
                peak = peak.max(kb);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        peak
    })
}

fn run(mut cmd: Command) -> Run {
    let started = Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap_or_default());
    let err = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let hwm = watch_hwm(child.id());
    let (status, _, cpu_seconds) = wait_rusage(&mut child);
    let peak_rss_kb = hwm.join().unwrap();
    let seconds = started.elapsed().as_secs_f64();
    let stdout = out.join().unwrap();
    let stderr = err.join().unwrap();
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{cmd:?} failed: {stdout}\n{stderr}"
    );
    Run {
        seconds,
        peak_rss_kb,
        cpu_seconds,
        stdout,
    }
}

fn cutover(file: &Path, sas: &str, blob: &str, concurrency: usize) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cutover"));
    cmd.args(["pst", "upload"])
        .arg(file)
        .args([
            "--sas-env",
            "BENCH_SAS",
            "--name",
            blob,
            "--json",
            "--progress",
            "plain",
        ])
        .args([
            "--concurrency",
            &concurrency.to_string(),
            "--block-mib",
            "4",
        ])
        .env("BENCH_SAS", sas)
        .env("XDG_STATE_HOME", file.parent().unwrap().join("state"))
        .stdin(Stdio::null());
    cmd
}

/// The Python SDK's upload; `md5`: with `validate_content=True` (an MD5 per block).
fn python(
    venv: &Path,
    file: &Path,
    sas: &str,
    blob: &str,
    concurrency: usize,
    md5: bool,
) -> Command {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/bench_upload.py");
    let mut cmd = Command::new(venv.join("bin/python"));
    cmd.arg(script)
        .arg(file)
        .args([blob, &concurrency.to_string()])
        .args(md5.then_some("md5"))
        .env("BENCH_SAS", sas)
        .stdin(Stdio::null());
    cmd
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

struct Row {
    tool: &'static str,
    concurrency: usize,
    seconds: f64,
    rss_mb: f64,
}

/// The header of the results table.
fn print_header() {
    println!(
        "{:<28} {:>4} {:>9} {:>9} {:>9} {:>9}",
        "tool", "conc", "seconds", "MiB/s", "RSS MB", "CPU s"
    );
}

/// One upload on a fresh Azurite; checks the blob's MD5.
fn scenario(
    tool: &'static str,
    concurrency: usize,
    md5: [u8; 16],
    size: u64,
    make: &dyn Fn(&str) -> Command,
) -> Row {
    let azurite = Azurite::start();
    azurite.create_container("ingestiondata");
    let sas = azurite.container_sas_url("ingestiondata");
    let result = run(make(&sas));
    // The tool's own timing when it reports one (excludes interpreter start-up for Python).
    let seconds = serde_json::from_str::<serde_json::Value>(result.stdout.trim())
        .ok()
        .and_then(|v| v["seconds"].as_f64())
        .unwrap_or(result.seconds);
    assert_eq!(
        azurite.blob_md5("ingestiondata", "bench.pst"),
        md5,
        "{tool}"
    );
    let row = Row {
        tool,
        concurrency,
        seconds,
        rss_mb: result.peak_rss_kb as f64 / 1024.0,
    };
    println!(
        "{:<28} {:>4} {:>9.2} {:>9.1} {:>9.1} {:>9.2}",
        row.tool,
        row.concurrency,
        row.seconds,
        size as f64 / MIB as f64 / row.seconds,
        row.rss_mb,
        result.cpu_seconds
    );
    row
}

/// Kills an upload through a counting proxy once half the file went out, runs it again to
/// the end, and returns (MiB sent before the kill, MiB sent twice).
fn kill_and_resume(
    tool: &str,
    md5: [u8; 16],
    size: u64,
    make: &dyn Fn(&str) -> Command,
) -> (f64, f64) {
    let azurite = Azurite::start();
    azurite.create_container("ingestiondata");
    let proxy = HttpProxy::start(azurite.port);
    let sas = proxy.rewrite(&azurite.container_sas_url("ingestiondata"), azurite.port);
    let mut child = make(&sas)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(600);
    while proxy.block_bytes.load(Ordering::SeqCst) < size / 2 {
        assert!(Instant::now() < deadline, "{tool}: no progress");
        assert!(
            child.try_wait().unwrap().is_none(),
            "{tool} ended before the kill"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let before = proxy.block_bytes.load(Ordering::SeqCst);
    run(make(&sas));
    let total = proxy.block_bytes.load(Ordering::SeqCst);
    assert_eq!(
        azurite.blob_md5("ingestiondata", "bench.pst"),
        md5,
        "{tool}"
    );
    (
        before as f64 / MIB as f64,
        total.saturating_sub(size) as f64 / MIB as f64,
    )
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let mib: u64 = env_or("CUTOVER_BENCH_UPLOAD_MIB", "1024")
        .parse()
        .expect("MiB");
    let concurrencies: Vec<usize> = env_or("CUTOVER_BENCH_CONCURRENCY", "1,2,4,8")
        .split(',')
        .map(|c| c.trim().parse().expect("concurrency"))
        .collect();
    let venv: Option<PathBuf> = std::env::var_os("CUTOVER_BENCH_VENV")
        .map(PathBuf::from)
        .filter(|v| v.join("bin/python").exists());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bench.pst");
    let size = mib * MIB;
    random_file::write_random(&file, size, 0x9E37_79B9_7F4A_7C15);
    let md5 = random_file::file_md5(&file);
    println!(
        "upload of {mib} MiB to Azurite ({} in memory, loopback), 4 MiB blocks; one fresh Azurite per run",
        Command::new("azurite-blob")
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    );
    print_header();
    let mut rows = Vec::new();
    if let Some(venv) = &venv {
        for c in [1, 4] {
            rows.push(scenario(
                "python azure-storage-blob",
                c,
                md5,
                size,
                &|sas| python(venv, &file, sas, "bench.pst", c, false),
            ));
        }
        rows.push(scenario("python, validate_content", 1, md5, size, &|sas| {
            python(venv, &file, sas, "bench.pst", 1, true)
        }));
    } else {
        println!("(no CUTOVER_BENCH_VENV with azure-storage-blob: Python rows skipped)");
    }
    for &c in &concurrencies {
        rows.push(scenario("cutover pst upload", c, md5, size, &|sas| {
            cutover(&file, sas, "bench.pst", c)
        }));
    }
    if let Some(baseline) = rows
        .iter()
        .find(|r| r.tool == "python azure-storage-blob" && r.concurrency == 1)
    {
        println!(
            "\nagainst the Python SDK's default (max_concurrency=1, {:.2} s, {:.1} MB):",
            baseline.seconds, baseline.rss_mb
        );
        for r in rows.iter().filter(|r| r.tool.starts_with("cutover")) {
            println!(
                "  cutover --concurrency {}: {:.2}x the speed, {:.2}x the peak RSS",
                r.concurrency,
                baseline.seconds / r.seconds,
                r.rss_mb / baseline.rss_mb
            );
        }
    }

    println!("\nkilled (SIGKILL) half way, then the same command again; bytes of block bodies counted at a proxy:");
    if let Some(venv) = &venv {
        let (before, twice) = kill_and_resume("python", md5, size, &|sas| {
            python(venv, &file, sas, "bench.pst", 1, false)
        });
        println!(
            "  python azure-storage-blob: {before:.1} MiB sent before the kill; sent twice {twice:.1} MiB ({:.0} % of it)",
            100.0 * twice / before
        );
    }
    let c = 4;
    let (before, twice) = kill_and_resume("cutover", md5, size, &|sas| {
        cutover(&file, sas, "bench.pst", c)
    });
    println!(
        "  cutover --concurrency {c}: {before:.1} MiB sent before the kill; sent twice {twice:.1} MiB ({:.1} % of it; bound: {c} blocks in flight = {} MiB)",
        100.0 * twice / before,
        c as u64 * BLOCK / MIB
    );
}
