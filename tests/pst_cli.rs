//! `cutover pst show` and `cutover pst export`, in-process through the CLI entry point.

mod common;
mod pst_fixtures;

use std::path::Path;

use cutover::cli::ExitCode;
use cutover::connectors::mail::{Maildir, RawMessage};

struct Ran {
    code: ExitCode,
    out: String,
    err: String,
}

/// `cutover <args>` in-process, with `dir` shown as `[DIR]` (snapshots stay stable).
fn cutover(dir: &Path, args: &[&str]) -> Ran {
    let ran = common::run(args);
    let tidy = |text: String| text.replace(&dir.display().to_string(), "[DIR]");
    Ran {
        code: ran.code,
        out: tidy(ran.stdout),
        err: tidy(ran.stderr),
    }
}

fn s(path: &Path) -> &str {
    path.to_str().expect("utf8 path")
}

#[test]
fn show_prints_store_folders_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let pst = pst_fixtures::write_to(dir.path(), "sample.pst", &pst_fixtures::sample(false, 1));
    let ran = cutover(dir.path(), &["pst", "show", s(&pst)]);
    assert_eq!(ran.code, ExitCode::Ok, "{}", ran.err);
    insta::assert_snapshot!("show_synthetic", ran.out);
    let ran = cutover(dir.path(), &["pst", "show", "--json", s(&pst)]);
    assert_eq!(ran.code, ExitCode::Ok, "{}", ran.err);
    let json: serde_json::Value = serde_json::from_str(&ran.out).unwrap();
    assert_eq!(json["store"]["has_password"], true);
    assert_eq!(json["messages"], 11);
    assert_eq!(json["distribution_lists"], 1);
}

#[test]
fn show_real_fixtures() {
    let Some(folder) = pst_fixtures::real_folder() else {
        eprintln!("CUTOVER_REAL_FIXTURES unset: show_prints_store_folders_and_counts covers the writer-made twin");
        return;
    };
    for name in ["pstconv_outlook.pst", "java-libpst_dist-list.pst"] {
        let ran = cutover(&folder, &["pst", "show", s(&folder.join(name))]);
        assert_eq!(ran.code, ExitCode::Ok, "{}", ran.err);
        insta::assert_snapshot!(format!("show_real_{name}"), ran.out);
    }
}

#[test]
fn show_of_a_corrupt_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.pst");
    std::fs::write(&path, b"!BDN not really a pst, and far too short to be one").unwrap();
    let ran = cutover(dir.path(), &["pst", "show", s(&path)]);
    assert_eq!(ran.code, ExitCode::Failure);
    insta::assert_snapshot!("show_corrupt", ran.err);
}

#[test]
fn export_maildir_is_idempotent_and_writes_contacts_and_calendar() {
    let dir = tempfile::tempdir().unwrap();
    let pst = pst_fixtures::write_to(dir.path(), "sample.pst", &pst_fixtures::sample(false, 2));
    let out = dir.path().join("out");
    let ran = cutover(
        dir.path(),
        &[
            "pst",
            "export",
            s(&pst),
            "--to",
            "maildir",
            s(&out),
            "--quiet",
        ],
    );
    assert_eq!(ran.code, ExitCode::Ok, "{}", ran.err);
    assert!(ran.out.starts_with("wrote 8 messages"), "{}", ran.out);
    let maildir = Maildir::open(&out).unwrap();
    let mut names: Vec<String> = maildir
        .folders()
        .unwrap()
        .iter()
        .map(|f| f.name.to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "Drafts",
            "INBOX",
            "INBOX/Top Folder/Child Folder With Space at the End ",
            "Sent Items",
            "收件箱",
        ]
    );
    for file in ["contacts.vcf", "contacts.csv", "calendar.ics"] {
        let meta = std::fs::metadata(out.join(file)).unwrap();
        #[cfg(unix)]
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
            0o600
        );
    }
    // A rerun writes nothing new.
    let again = cutover(
        dir.path(),
        &[
            "pst",
            "export",
            s(&pst),
            "--to",
            "maildir",
            s(&out),
            "--quiet",
        ],
    );
    assert!(
        again.out.starts_with("wrote 0 messages") && again.out.contains("(8 already there)"),
        "{}",
        again.out
    );
    // Flags reach the maildir: the draft is \Draft + \Seen.
    let drafts = maildir
        .folders()
        .unwrap()
        .into_iter()
        .find(|f| f.name.to_string() == "Drafts")
        .unwrap();
    let entries = maildir.entries(&drafts).unwrap();
    let message: RawMessage = entries[0].read().unwrap();
    assert!(message
        .flags
        .contains(cutover::connectors::mail::Flag::Draft));
}

#[test]
fn export_mbox_and_eml() {
    let dir = tempfile::tempdir().unwrap();
    let pst = pst_fixtures::write_to(dir.path(), "sample.pst", &pst_fixtures::sample(true, 0));
    for form in ["mbox", "eml"] {
        let out = dir.path().join(form);
        let ran = cutover(
            dir.path(),
            &["pst", "export", s(&pst), "--to", form, s(&out), "--quiet"],
        );
        assert_eq!(ran.code, ExitCode::Ok, "{}", ran.err);
        assert!(ran.out.starts_with("wrote 8 messages"), "{}", ran.out);
    }
    let mbox = std::fs::read_to_string(dir.path().join("mbox/INBOX.mbox")).unwrap();
    assert_eq!(
        mbox.matches("\nFrom ").count() + usize::from(mbox.starts_with("From ")),
        4
    );
    let eml_count = walkdir(&dir.path().join("eml"));
    assert_eq!(eml_count, 8);
}

/// A mail with a 2 MB attachment (written from the file piece by piece) exports to eml,
/// maildir and mbox as the bytes of its whole conversion.
#[test]
fn export_writes_large_attachments_as_converted() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = pst_fixtures::sample(false, 1);
    spec.folders = vec![pst_fixtures::pst_writer::FolderSpec {
        name: "Big".into(),
        container_class: Some("IPF.Note".into()),
        messages: vec![pst_fixtures::mail_with_attachment(
            "big",
            pst_fixtures::T0,
            2_000_000,
            3,
        )],
        ..pst_fixtures::pst_writer::FolderSpec::default()
    }];
    let pst = pst_fixtures::write_to(dir.path(), "big.pst", &spec);
    let file = cutover::connectors::pst::PstFile::open(&pst).unwrap();
    let folder = file
        .folders()
        .iter()
        .find(|f| f.path.last().is_some_and(|n| n == "Big"))
        .unwrap();
    let nid = file.message_nids(folder.nid)[0];
    let whole = file.message(nid).unwrap().bytes;
    assert!(whole.len() > 2_700_000);
    for form in ["eml", "maildir", "mbox"] {
        let out = dir.path().join(form);
        let ran = cutover(
            dir.path(),
            &["pst", "export", s(&pst), "--to", form, s(&out), "--quiet"],
        );
        assert_eq!(ran.code, ExitCode::Ok, "{}", ran.err);
        assert!(
            ran.out.starts_with("wrote 1 message"),
            "{form}: {}",
            ran.out
        );
    }
    let eml = std::fs::read(dir.path().join(format!("eml/Big/{nid:08x}.eml"))).unwrap();
    assert!(eml == whole, "eml differs from the conversion");
    let maildir = Maildir::open(dir.path().join("maildir")).unwrap();
    let stored: Vec<Vec<u8>> = maildir
        .folders()
        .unwrap()
        .iter()
        .flat_map(|f| maildir.entries(f).unwrap())
        .map(|e| e.read().unwrap().bytes().to_vec())
        .collect();
    assert!(
        stored == vec![whole.clone()],
        "maildir differs from the conversion"
    );
    let mbox = std::fs::read(dir.path().join("mbox/Big.mbox")).unwrap();
    assert!(
        mbox.windows(whole.len()).any(|w| w == whole.as_slice()),
        "mbox does not hold the conversion"
    );
}

fn walkdir(dir: &Path) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            n += walkdir(&path);
        } else if path.extension().is_some_and(|e| e == "eml") {
            n += 1;
        }
    }
    n
}
