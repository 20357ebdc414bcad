//! A plan with a `kind: pst, via: import-service` source, end to end against a real Azurite:
//! `plan` shows each upload with its blob and mapping-CSV row and the portal gate; `apply`
//! uploads, writes the mapping CSV and stops at `manual.pst-import` with the portal steps;
//! a rerun does nothing; a changed PST is uploaded again; an apply killed mid-upload resumes
//! and sends again at most the blocks that were in flight. No SAS signature anywhere.

mod common;
mod pst_fixtures;
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::run;
use cutover::cli::ExitCode;
use support::azurite::Azurite;
use support::http_proxy::HttpProxy;
use support::random_file::file_md5;

const MIB: u64 = 1024 * 1024;

/// A PST written by the test writer (ANSI or Unicode, so its header is a real one: magic,
/// version, CRCs), padded with pseudo-random bytes to `len` so uploads have some size.
fn write_pst(path: &Path, len: u64, ansi: bool, seed: u64) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let pst = pst_fixtures::pst_writer::write(&pst_fixtures::pst_writer::PstSpec {
        ansi,
        ..Default::default()
    });
    assert!(
        pst.len() as u64 <= len,
        "the writer's PST is {} bytes",
        pst.len()
    );
    let mut bytes = pst;
    let pad = len as usize - bytes.len();
    bytes.extend_from_slice(&support::random_file::random_bytes(pad, seed));
    std::fs::write(path, bytes).unwrap();
}

fn scrub(text: &str, dir: &Path, sas_port: u16) -> String {
    text.replace(&dir.display().to_string(), "[TMP]")
        .replace(&sas_port.to_string(), "[PORT]")
}

struct Fixture {
    dir: tempfile::TempDir,
    plan: PathBuf,
    sig: String,
}

/// A plan dir: three PSTs of two users, the SAS URL in a file, a maildir target.
fn fixture(azurite: &Azurite, container: &str, source_extra: &str, sas_url: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_pst(&root.join("pst/Bob Mail.PST"), 3 * MIB + 1000, false, 1);
    write_pst(&root.join("pst/carol.pst"), MIB / 2, false, 2);
    write_pst(&root.join("pst/carol-2002.pst"), 200_000, true, 3);
    std::fs::write(root.join("sas.txt"), format!("{sas_url}\n")).unwrap();
    azurite.create_container(container);
    let yaml = format!(
        r#"version: 1
name: acme-pst
domain: acme.test
target: {{ kind: maildir, path: out }}
sources:
  import: {{ kind: pst, via: import-service, sas_url: {{ file: sas.txt }}, block_mib: 1{source_extra} }}
users:
  - email: bob@acme.test
    migrate:
      - from: import
        file: pst/Bob Mail.PST
        into: /
  - email: Carol@acme.test
    migrate:
      - from: import
        file: pst/carol.pst
      - from: import
        name: old
        file: pst/carol-2002.pst
        into: Old Mail, 2002
        archive_mailbox: true
settings: {{ output_dir: files }}
"#
    );
    let plan = root.join("plan.yaml");
    std::fs::write(&plan, yaml).unwrap();
    Fixture {
        sig: sas_url.split("sig=").nth(1).unwrap().to_string(),
        dir,
        plan,
    }
}

fn assert_no_signature(fx: &Fixture, texts: &[&str]) {
    for text in texts {
        assert!(!text.contains(&fx.sig), "signature in output: {text}");
    }
    for entry in common::files_below(fx.dir.path()) {
        if entry.file_name().is_some_and(|n| n == "sas.txt") {
            continue;
        }
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !bytes.windows(fx.sig.len()).any(|w| w == fx.sig.as_bytes()),
            "signature in {}",
            entry.display()
        );
    }
}

#[test]
fn plan_apply_upload_write_the_mapping_csv_and_stop_at_the_portal_gate() {
    let azurite = Azurite::shared();
    let sas = azurite.container_sas_url("ingestiondata");
    let fx = fixture(&azurite, "ingestiondata", ", code_page: 932", &sas);
    let plan = fx.plan.to_str().unwrap();
    let root = fx.dir.path();

    let preview = run(&["plan", plan]);
    assert_eq!(preview.code, ExitCode::Ok, "{}", preview.stderr);
    insta::assert_snapshot!(
        "pst-import-plan",
        scrub(&preview.stdout, root, azurite.port)
    );

    let apply = run(&["apply", "--yes", "--progress", "plain", plan]);
    // The walk stops at the gate: not a success yet.
    assert_eq!(
        apply.code,
        ExitCode::Failure,
        "{}\n{}",
        apply.stdout,
        apply.stderr
    );
    for step in [
        "copy.bob.import: done",
        "copy.carol.import: done",
        "copy.carol.import.old: done",
    ] {
        assert!(apply.stderr.contains(step), "{step}: {}", apply.stderr);
    }
    assert!(
        apply
            .stderr
            .contains("manual.pst-import: waiting for approval"),
        "{}",
        apply.stderr
    );
    assert!(
        apply
            .stderr
            .contains("Select the mapping file files/acme-pst-pst-import.csv"),
        "{}",
        apply.stderr
    );

    for (file, blob) in [
        ("pst/Bob Mail.PST", "acme-pst/bob/Bob Mail.PST"),
        ("pst/carol.pst", "acme-pst/carol/carol.pst"),
        ("pst/carol-2002.pst", "acme-pst/carol/old/carol-2002.pst"),
    ] {
        assert_eq!(
            azurite.blob_md5("ingestiondata", blob),
            file_md5(&root.join(file)),
            "{blob}"
        );
    }
    let csv_path = root.join("files/acme-pst-pst-import.csv");
    let csv = std::fs::read_to_string(&csv_path).unwrap();
    insta::assert_snapshot!("pst-import-mapping-csv", csv.replace("\r\n", "⏎\n"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&csv_path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(root.join("files"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );

    // Nothing left to upload; the gate still waits.
    let again = run(&["plan", plan]);
    insta::assert_snapshot!(
        "pst-import-plan-after",
        scrub(&again.stdout, root, azurite.port)
    );

    // A PST that changed is uploaded again, and its CSV row stays.
    write_pst(&root.join("pst/carol.pst"), MIB / 2 + 5, false, 9);
    let changed = run(&["plan", plan]);
    assert!(
        changed.stdout.contains("~ copy.carol.import ")
            && changed.stdout.contains("config changed"),
        "{}",
        changed.stdout
    );
    let apply = run(&["apply", "--yes", "--progress", "plain", plan]);
    assert!(
        apply.stderr.contains("copy.carol.import: done"),
        "{}",
        apply.stderr
    );
    assert!(
        apply.stderr.contains("copy.bob.import: already done"),
        "{}",
        apply.stderr
    );
    assert_eq!(
        azurite.blob_md5("ingestiondata", "acme-pst/carol/carol.pst"),
        file_md5(&root.join("pst/carol.pst"))
    );
    assert_eq!(std::fs::read_to_string(&csv_path).unwrap(), csv);

    // Approving the gate lets the walk go on.
    let approve = run(&["approve", plan, "manual.pst-import"]);
    assert_eq!(approve.code, ExitCode::Ok, "{}", approve.stderr);

    assert_no_signature(
        &fx,
        &[
            &preview.stdout,
            &preview.stderr,
            &apply.stdout,
            &apply.stderr,
        ],
    );
}

#[test]
fn plan_without_the_sas_secret_still_previews_and_apply_fails_the_upload_only() {
    let azurite = Azurite::shared();
    let sas = azurite.container_sas_url("nosecret");
    let fx = fixture(&azurite, "nosecret", "", &sas);
    std::fs::remove_file(fx.dir.path().join("sas.txt")).unwrap();
    let plan = fx.plan.to_str().unwrap();
    let preview = run(&["plan", plan]);
    assert_eq!(preview.code, ExitCode::Ok, "{}", preview.stderr);
    assert!(
        preview
            .stdout
            .contains("+ copy.bob.import                  upload pst/Bob Mail.PST"),
        "{}",
        preview.stdout
    );
    let apply = run(&[
        "apply",
        "--yes",
        "--progress",
        "plain",
        "--target",
        "copy.bob.*",
        plan,
    ]);
    assert_eq!(apply.code, ExitCode::Failure);
    assert!(
        apply
            .stderr
            .contains("copy.bob.import: FAILED: sas_url: missing secret"),
        "{}",
        apply.stderr
    );
}

fn apply_process(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cutover"));
    cmd.args([
        "apply",
        "--yes",
        "--progress",
        "plain",
        "--target",
        "copy.bob.import",
        "plan.yaml",
    ])
    .current_dir(dir)
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    cmd
}

#[test]
fn apply_killed_mid_upload_resumes_and_resends_at_most_the_blocks_in_flight() {
    let azurite = Azurite::shared();
    azurite.create_container("killed");
    let proxy = HttpProxy::start(azurite.port);
    let sas = proxy.rewrite(&azurite.container_sas_url("killed"), azurite.port);
    let fx = fixture(
        &azurite,
        "killed",
        ", upload_concurrency: 3, max_upload_mbps: 400",
        &sas,
    );
    let root = fx.dir.path();
    let size = 64 * MIB;
    write_pst(&root.join("pst/Bob Mail.PST"), size, false, 11);
    let (concurrency, block) = (3, MIB);

    let mut first = apply_process(root).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while proxy.block_bytes.load(std::sync::atomic::Ordering::SeqCst) < size * 4 / 10 {
        assert!(Instant::now() < deadline, "the upload did not get going");
        assert!(
            first.try_wait().unwrap().is_none(),
            "apply ended before the kill"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    first.kill().unwrap();
    first.wait().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let sent_before = proxy.block_bytes.load(std::sync::atomic::Ordering::SeqCst);
    let staged = azurite.uncommitted_blocks("killed", "acme-pst/bob/Bob Mail.PST") as u64;

    let mut runs = 0;
    let second = loop {
        runs += 1;
        let out = apply_process(root).output().unwrap();
        if out.status.success() || runs == 3 {
            break out;
        }
    };
    let stderr = String::from_utf8_lossy(&second.stderr).into_owned();
    assert!(second.status.success(), "{stderr}");
    assert!(stderr.contains("copy.bob.import: resuming"), "{stderr}");
    let resent = proxy.block_bytes.load(std::sync::atomic::Ordering::SeqCst) - size;
    println!(
        "apply killed after {:.1} MiB of block bodies with {staged} blocks staged; \
         sent twice after resuming: {:.2} MiB = {:.2} blocks (bound: {concurrency} blocks in flight)",
        sent_before as f64 / MIB as f64,
        resent as f64 / MIB as f64,
        resent as f64 / block as f64
    );
    assert!(resent <= concurrency * block, "sent twice: {resent} bytes");
    assert_eq!(
        azurite.blob_md5("killed", "acme-pst/bob/Bob Mail.PST"),
        file_md5(&root.join("pst/Bob Mail.PST"))
    );

    // The step's counts are the file's blocks and bytes, once each.
    let status = run(&["status", fx.plan.to_str().unwrap()]);
    assert!(
        status.stdout.contains("copy.bob.import"),
        "{}",
        status.stdout
    );
    let store = cutover::state::SqliteStore::open(root.join(".cutover/acme-pst.db")).unwrap();
    use cutover::state::StateStore;
    let record = store.step("copy.bob.import").unwrap().unwrap();
    assert_eq!(record.counts.bytes, size, "{record:?}");
    assert_eq!(record.counts.items, 64, "{record:?}");
    let csv = std::fs::read_to_string(root.join("files/acme-pst-pst-import.csv")).unwrap();
    assert!(
        csv.contains("Exchange,acme-pst/bob,Bob Mail.PST,bob@acme.test,FALSE,/,"),
        "{csv}"
    );
    assert_no_signature(&fx, &[&stderr]);
}
