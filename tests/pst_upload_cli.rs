//! `cutover pst upload` as a separate process against a real Azurite: killed with SIGKILL in
//! the middle of a large upload, then run again. The blob's MD5 must equal the file's, and
//! the bytes sent twice — counted by a proxy in front of Azurite, not by cutover — at most the
//! blocks that were in flight at the kill.

mod common;
mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::azurite::Azurite;
use support::http_proxy::HttpProxy;
use support::random_file::{file_md5, write_random};

const MIB: u64 = 1024 * 1024;

fn upload(file: &Path, state_home: &Path, sas_var: &str, sas: &str, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cutover"));
    cmd.args(["pst", "upload"])
        .arg(file)
        .args(["--sas-env", sas_var, "--json", "--progress", "plain"])
        .args(extra)
        .env(sas_var, sas)
        .env("XDG_STATE_HOME", state_home)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn json(output: &std::process::Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn signature(sas: &str) -> String {
    sas.split("sig=").nth(1).unwrap().to_string()
}

#[test]
fn killed_upload_resumes_and_resends_at_most_the_blocks_in_flight() {
    let azurite = Azurite::shared();
    azurite.create_container("ingestiondata");
    let proxy = HttpProxy::start(azurite.port);
    let sas = proxy.rewrite(&azurite.container_sas_url("ingestiondata"), azurite.port);
    let dir = tempfile::tempdir().unwrap();
    let state_home = dir.path().join("state");
    let file = dir.path().join("Big Mailbox.pst");
    let size = 128 * MIB;
    write_random(&file, size, 42);
    let (concurrency, block) = (4u64, 4 * MIB);
    let settings = ["--concurrency", "4", "--block-mib", "4"];

    // Slowed to 800 Mbit/s so the kill lands mid-upload; killed past 40 %.
    let mut first = upload(&file, &state_home, "CUTOVER_TEST_SAS_KILL", &sas, &settings)
        .args(["--max-upload-mbps", "800"])
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while proxy.block_bytes.load(std::sync::atomic::Ordering::SeqCst) < size * 4 / 10 {
        assert!(Instant::now() < deadline, "the upload did not get going");
        assert!(
            first.try_wait().unwrap().is_none(),
            "the upload ended before the kill"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    first.kill().unwrap();
    let killed = first.wait_with_output().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let sent_before = proxy.block_bytes.load(std::sync::atomic::Ordering::SeqCst);
    let staged_at_kill = azurite.uncommitted_blocks("ingestiondata", "Big Mailbox.pst") as u64;
    assert!(
        azurite
            .blob_headers("ingestiondata", "Big Mailbox.pst")
            .is_none(),
        "nothing committed yet"
    );

    let second = upload(&file, &state_home, "CUTOVER_TEST_SAS_KILL", &sas, &settings)
        .output()
        .unwrap();
    assert!(
        second.status.success(),
        "resume failed: {}",
        String::from_utf8_lossy(&second.stderr)
    );
    let report = json(&second);
    let total_sent = proxy.block_bytes.load(std::sync::atomic::Ordering::SeqCst);
    let resent = total_sent - size;
    let in_flight_at_kill = sent_before - staged_at_kill * block;
    println!(
        "killed after {:.1} MiB of block bodies; {staged_at_kill} blocks staged, {:.1} MiB in flight; \
         resume reused {} blocks and sent {:.1} MiB; sent twice: {:.1} MiB ({:.2} blocks; bound {} blocks = {} MiB)",
        sent_before as f64 / MIB as f64,
        in_flight_at_kill as f64 / MIB as f64,
        report["blocks_reused"],
        report["bytes_sent"].as_u64().unwrap() as f64 / MIB as f64,
        resent as f64 / MIB as f64,
        resent as f64 / block as f64,
        concurrency,
        concurrency * block / MIB,
    );
    assert_eq!(report["outcome"], "complete");
    assert_eq!(report["blocks_reused"].as_u64().unwrap(), staged_at_kill);
    assert!(
        resent <= concurrency * block,
        "sent twice {resent} bytes, more than the {concurrency} blocks in flight"
    );
    assert!(
        resent <= in_flight_at_kill,
        "only bytes in flight are sent again"
    );
    let md5 = file_md5(&file);
    assert_eq!(azurite.blob_md5("ingestiondata", "Big Mailbox.pst"), md5);
    assert_eq!(
        report["md5"].as_str().unwrap(),
        md5.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );

    // Run again: finished, from the record; nothing read or sent.
    let third = upload(&file, &state_home, "CUTOVER_TEST_SAS_KILL", &sas, &settings)
        .output()
        .unwrap();
    assert!(third.status.success());
    let third_report = json(&third);
    assert_eq!(third_report["already_complete"], true);
    assert_eq!(third_report["bytes_sent"], 0);
    assert_eq!(
        proxy.block_bytes.load(std::sync::atomic::Ordering::SeqCst),
        total_sent
    );

    let sig = signature(&sas);
    for out in [&killed, &second, &third] {
        for text in [&out.stdout, &out.stderr] {
            let text = String::from_utf8_lossy(text);
            assert!(!text.contains(&sig), "signature in output: {text}");
        }
    }
    let records = std::fs::read_dir(state_home.join("cutover/uploads")).unwrap();
    for record in records {
        let record = record.unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            record.metadata().unwrap().permissions().mode() & 0o777,
            0o600
        );
        let text = std::fs::read_to_string(record.path()).unwrap();
        assert!(!text.contains(&sig) && !text.contains("sig="), "{text}");
    }
    let mode = std::fs::metadata(state_home.join("cutover/uploads"))
        .unwrap()
        .permissions();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(mode.mode() & 0o777, 0o700);
}

#[test]
fn the_sas_url_comes_from_the_environment_or_a_file_and_problems_never_show_it() {
    let azurite = Azurite::shared();
    azurite.create_container("cli");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("small.pst");
    write_random(&file, 300_000, 7);
    let sas = azurite.container_sas_url("cli");

    // From a file, with a folder in the blob name.
    let sas_file = dir.path().join("sas.txt");
    std::fs::write(&sas_file, format!("{sas}\n")).unwrap();
    std::env::set_var("XDG_STATE_HOME", dir.path().join("state"));
    let out = common::run(&[
        "pst",
        "upload",
        file.to_str().unwrap(),
        "--sas-file",
        sas_file.to_str().unwrap(),
        "--name",
        "office/Small.pst",
        "--progress",
        "plain",
    ]);
    assert_eq!(out.code, cutover::cli::ExitCode::Ok, "{}", out.stderr);
    assert!(out.stdout.contains("uploaded"), "{}", out.stdout);
    assert!(
        out.stdout.contains("/cli/office/Small.pst"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("verified"), "{}", out.stdout);
    assert_eq!(azurite.blob_md5("cli", "office/Small.pst"), file_md5(&file));

    // A missing variable, a URL without a signature, plain http to a remote host.
    let missing = common::run(&[
        "pst",
        "upload",
        file.to_str().unwrap(),
        "--sas-env",
        "CUTOVER_TEST_NO_SUCH_VAR",
    ]);
    assert_eq!(missing.code, cutover::cli::ExitCode::Usage);
    assert!(
        missing.stderr.contains("CUTOVER_TEST_NO_SUCH_VAR"),
        "{}",
        missing.stderr
    );
    std::env::set_var(
        "CUTOVER_TEST_REMOTE_HTTP",
        "http://acme.blob.core.windows.net/ingestiondata?sv=1&sig=SECRETSIG",
    );
    let http = common::run(&[
        "pst",
        "upload",
        file.to_str().unwrap(),
        "--sas-env",
        "CUTOVER_TEST_REMOTE_HTTP",
    ]);
    assert_eq!(http.code, cutover::cli::ExitCode::Usage);
    assert!(http.stderr.contains("unencrypted"), "{}", http.stderr);
    assert!(!http.stderr.contains("SECRETSIG"), "{}", http.stderr);
}
