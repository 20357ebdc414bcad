//! `cutover autocomplete show` and `convert`, run in-process through the CLI entry point.

mod autocomplete_fixtures;
use autocomplete_fixtures as common;

use std::path::{Path, PathBuf};

use clap::Parser;
use cutover::cli::{self, Cli, ExitCode, Output};
use cutover::connectors::autocomplete::read_file;

struct Ran {
    code: ExitCode,
    out: String,
    err: String,
}

fn cutover(dir: &Path, args: &[&str]) -> Ran {
    let cli = Cli::try_parse_from(std::iter::once("cutover").chain(args.iter().copied()))
        .expect("valid arguments");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = cli::run(
        cli,
        &mut Output {
            out: &mut out,
            err: &mut err,
            color: false,
            verbosity: Default::default(),
        },
    );
    let tidy = |bytes: Vec<u8>| {
        String::from_utf8(bytes)
            .expect("utf8")
            .replace(&dir.display().to_string(), "[DIR]")
    };
    Ran {
        code,
        out: tidy(out),
        err: tidy(err),
    }
}

fn fixtures() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let nk2 = dir.path().join("Outlook.NK2");
    let stream = dir.path().join("Stream_Autocomplete_0_ABC.dat");
    std::fs::write(&nk2, common::writer_made_nk2()).expect("write");
    std::fs::write(&stream, common::writer_made_stream()).expect("write");
    (dir, nk2, stream)
}

fn s(path: &Path) -> &str {
    path.to_str().expect("utf8 path")
}

#[test]
fn show_lists_like_nk2edit() {
    let (dir, nk2, stream) = fixtures();
    let ran = cutover(dir.path(), &["autocomplete", "show", s(&nk2), s(&stream)]);
    assert_eq!(ran.code, ExitCode::Ok, "{}", ran.err);
    assert_eq!(ran.err, "");
    insta::assert_snapshot!("show_table", ran.out);
}

#[test]
fn show_json() {
    let (dir, nk2, stream) = fixtures();
    let ran = cutover(
        dir.path(),
        &["autocomplete", "show", "--json", s(&nk2), s(&stream)],
    );
    assert_eq!(ran.code, ExitCode::Ok, "{}", ran.err);
    let parsed: serde_json::Value = serde_json::from_str(&ran.out).expect("valid JSON");
    assert_eq!(parsed.as_array().map(Vec::len), Some(2));
    insta::assert_snapshot!("show_json", ran.out);
}

#[test]
fn show_real_files_when_available() {
    // Without CUTOVER_REAL_FIXTURES, the writer-made twins stand in; the table must match the
    // same expected rows either way.
    let dir = tempfile::tempdir().expect("tempdir");
    let nk2 = dir.path().join("nk2");
    let stream = dir.path().join("stream");
    std::fs::write(&nk2, common::nk2_bytes().0).expect("write");
    std::fs::write(&stream, common::stream_bytes().0).expect("write");
    let ran = cutover(dir.path(), &["autocomplete", "show", s(&nk2), s(&stream)]);
    assert_eq!(ran.code, ExitCode::Ok, "{}", ran.err);
    insta::assert_snapshot!("show_real_or_twin", ran.out);
}

#[test]
fn show_reports_corrupt_and_missing_files_and_goes_on() {
    let (dir, nk2, _) = fixtures();
    let broken = dir.path().join("broken.nk2");
    let mut bytes = common::writer_made_nk2();
    bytes.truncate(100);
    std::fs::write(&broken, bytes).expect("write");
    let ran = cutover(dir.path(), &["autocomplete", "show", s(&broken), s(&nk2)]);
    assert_eq!(ran.code, ExitCode::Failure);
    assert!(
        ran.out.contains("nromanoff@stark-research-labs.com"),
        "later files still shown"
    );
    insta::assert_snapshot!("show_corrupt_error", ran.err);

    let missing = dir.path().join("missing.nk2");
    let ran = cutover(dir.path(), &["autocomplete", "show", s(&missing)]);
    assert_eq!(ran.code, ExitCode::Usage);
    assert!(
        ran.err
            .starts_with("error: cannot read [DIR]/missing.nk2\n  caused by: "),
        "{}",
        ran.err
    );
}

#[test]
fn convert_merges_into_csv_and_vcard() {
    let (dir, nk2, stream) = fixtures();
    let csv = dir.path().join("contacts.csv");
    let ran = cutover(
        dir.path(),
        &[
            "autocomplete",
            "convert",
            s(&nk2),
            s(&stream),
            "--to",
            "csv",
            "-o",
            s(&csv),
        ],
    );
    assert_eq!(ran.code, ExitCode::Ok, "{}", ran.err);
    assert_eq!(ran.out, "wrote 7 entries to [DIR]/contacts.csv\n");
    insta::assert_snapshot!(
        "convert_csv",
        common::windows_text(&std::fs::read(&csv).expect("written"))
    );

    let vcf = dir.path().join("contacts.vcf");
    let ran = cutover(
        dir.path(),
        &[
            "autocomplete",
            "convert",
            s(&nk2),
            s(&stream),
            "--to",
            "vcard",
            "-o",
            s(&vcf),
        ],
    );
    assert_eq!(ran.code, ExitCode::Ok, "{}", ran.err);
    let text = String::from_utf8(std::fs::read(&vcf).expect("written")).expect("utf8");
    assert!(
        !text.replace("\r\n", "").contains('\n'),
        "vCard lines end in CRLF"
    );
    insta::assert_snapshot!("convert_vcard", text.replace("\r\n", "\n"));
}

#[test]
fn convert_between_binary_formats_keeps_entries() {
    let (dir, nk2, _) = fixtures();
    let dat = dir.path().join("out.dat");
    let back = dir.path().join("back.nk2");
    let ran = cutover(
        dir.path(),
        &[
            "autocomplete",
            "convert",
            s(&nk2),
            "--to",
            "dat",
            "-o",
            s(&dat),
        ],
    );
    assert_eq!(ran.code, ExitCode::Ok, "{}", ran.err);
    let ran = cutover(
        dir.path(),
        &[
            "autocomplete",
            "convert",
            s(&dat),
            "--to",
            "nk2",
            "-o",
            s(&back),
        ],
    );
    assert_eq!(ran.code, ExitCode::Ok, "{}", ran.err);
    let original = read_file(&nk2).expect("parses");
    let via_dat = read_file(&dat).expect("parses");
    let again = read_file(&back).expect("parses");
    assert_eq!(via_dat.major_version, 12);
    assert_eq!(again.major_version, 10);
    assert_eq!(original.rows, via_dat.rows);
    assert_eq!(original.rows, again.rows);
}

#[test]
fn convert_with_exchange_entries_warns_about_what_it_cannot_resolve() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (nk2_bytes, _) = common::scenario_files();
    let nk2 = dir.path().join("alice.nk2");
    std::fs::write(&nk2, nk2_bytes).expect("write");
    let map = dir.path().join("map.csv");
    std::fs::write(&map, common::SCENARIO_ADDRESS_MAP).expect("write");
    let out = dir.path().join("alice.csv");
    let ran = cutover(
        dir.path(),
        &[
            "autocomplete",
            "convert",
            s(&nk2),
            "--to",
            "csv",
            "-o",
            s(&out),
            "--address-map",
            s(&map),
        ],
    );
    assert_eq!(ran.code, ExitCode::Ok, "{}", ran.err);
    insta::assert_snapshot!(
        "convert_exchange_warnings",
        format!("stdout:\n{}\nstderr:\n{}", ran.out, ran.err)
    );
}

#[test]
fn convert_reports_bad_address_map_as_failure() {
    let (dir, nk2, _) = fixtures();
    let map = dir.path().join("map.csv");
    std::fs::write(&map, "smtp\nx@y.z\n").expect("write");
    let out = dir.path().join("o.nk2");
    let ran = cutover(
        dir.path(),
        &[
            "autocomplete",
            "convert",
            s(&nk2),
            "--to",
            "nk2",
            "-o",
            s(&out),
            "--address-map",
            s(&map),
        ],
    );
    assert_eq!(ran.code, ExitCode::Failure);
    insta::assert_snapshot!("convert_bad_address_map", ran.err);
    assert!(!out.exists(), "nothing written on error");
}
