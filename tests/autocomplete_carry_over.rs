//! The `autocomplete.<user>` step end to end: two caches in, every per-user output out,
//! EX entries resolved or listed, X500 proxies emitted, and a second run changes nothing.

mod autocomplete_fixtures;
use autocomplete_fixtures as common;

use std::path::{Path, PathBuf};

use cutover::connectors::autocomplete::{
    carry_over, read_file, AutocompleteError, CarryOverReport, OutputKind,
};

struct Run {
    _dir: tempfile::TempDir,
    inputs: Vec<PathBuf>,
    map: PathBuf,
    out: PathBuf,
}

fn setup() -> Run {
    let dir = tempfile::tempdir().expect("tempdir");
    let (nk2, stream) = common::scenario_files();
    let inputs = vec![
        dir.path().join("alice.nk2"),
        dir.path().join("Stream_Autocomplete_0_ABC.dat"),
    ];
    std::fs::write(&inputs[0], nk2).expect("write");
    std::fs::write(&inputs[1], stream).expect("write");
    let map = dir.path().join("address_map.csv");
    std::fs::write(&map, common::SCENARIO_ADDRESS_MAP).expect("write");
    let out = dir.path().join("out");
    Run {
        _dir: dir,
        inputs,
        map,
        out,
    }
}

fn run(setup: &Run) -> CarryOverReport {
    carry_over(
        &setup.inputs,
        &common::scenario_mailboxes(),
        Some(&setup.map),
        &setup.out,
        "alice",
    )
    .expect("carry over")
}

fn output(report: &CarryOverReport, kind: OutputKind) -> &Path {
    &report
        .outputs
        .iter()
        .find(|written| written.kind == kind)
        .expect("written")
        .path
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).expect("output exists")
}

#[test]
fn writes_every_output_and_reports_resolution() {
    let setup = setup();
    let report = run(&setup);
    let mut names: Vec<String> = std::fs::read_dir(&setup.out)
        .expect("out dir")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    insta::assert_debug_snapshot!("carry_over_file_names", names);

    let json = serde_json::to_string_pretty(&report).expect("serialises");
    let json = json
        .replace(&setup.out.display().to_string(), "[OUT]")
        .replace(
            &setup.inputs[0].parent().expect("dir").display().to_string(),
            "[IN]",
        );
    insta::assert_snapshot!("carry_over_report", json);

    let nk2 = read_file(output(&report, OutputKind::Nk2)).expect("nk2 parses");
    let stream = read_file(output(&report, OutputKind::Stream)).expect("stream parses");
    assert_eq!((nk2.major_version, nk2.minor_version), (10, 1));
    assert_eq!((stream.major_version, stream.minor_version), (12, 0));
    assert_eq!(nk2.rows, stream.rows, "both caches hold the same rows");
    let listed: Vec<String> = stream
        .rows
        .iter()
        .map(|row| {
            let e = row.entry();
            format!(
                "{} | {} | {} | {}",
                e.weight, e.address_type, e.email_address, e.display_name
            )
        })
        .collect();
    insta::assert_debug_snapshot!("carry_over_rows", listed);
    assert!(
        stream.rows.iter().all(|row| !row.entry().is_exchange()),
        "unresolved EX entries are kept out of the Outlook caches"
    );
    assert_eq!(
        stream.last_written_filetime(),
        u64::from_le_bytes(common::filetime(1_577_836_800))
    );

    insta::assert_snapshot!(
        "carry_over_contacts_csv",
        common::windows_text(&read(output(&report, OutputKind::ContactsCsv)))
    );
    insta::assert_snapshot!(
        "carry_over_vcard",
        String::from_utf8(read(output(&report, OutputKind::VCard))).expect("utf8")
    );
    insta::assert_snapshot!(
        "carry_over_x500_ps1",
        common::windows_text(&read(output(&report, OutputKind::X500Script)))
    );
    insta::assert_snapshot!(
        "carry_over_x500_csv",
        common::windows_text(&read(output(&report, OutputKind::X500Csv)))
    );
    let unresolved = common::windows_text(&read(output(&report, OutputKind::UnresolvedCsv)));
    insta::assert_snapshot!(
        "carry_over_unresolved_csv",
        unresolved.replace(&setup.inputs[0].display().to_string(), "[IN]/alice.nk2")
    );
}

#[test]
fn second_run_changes_nothing_and_leaves_no_temporary_files() {
    let setup = setup();
    let first = run(&setup);
    assert!(first.outputs.iter().all(|written| written.changed));
    let before: Vec<Vec<u8>> = first.outputs.iter().map(|w| read(&w.path)).collect();
    let second = run(&setup);
    assert!(
        second.outputs.iter().all(|written| !written.changed),
        "{second:?}"
    );
    let after: Vec<Vec<u8>> = second.outputs.iter().map(|w| read(&w.path)).collect();
    assert_eq!(before, after);
    assert_eq!(first.resolved, second.resolved);
    let leftovers: Vec<_> = std::fs::read_dir(&setup.out)
        .expect("dir")
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().contains("tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_fresh_output_folder_gets_identical_bytes() {
    let setup = setup();
    let first = run(&setup);
    let other_out = setup.out.with_file_name("out-again");
    let second = carry_over(
        &setup.inputs,
        &common::scenario_mailboxes(),
        Some(&setup.map),
        &other_out,
        "alice",
    )
    .expect("carry over");
    for (a, b) in first.outputs.iter().zip(&second.outputs) {
        assert_eq!(read(&a.path), read(&b.path), "{:?}", a.kind);
    }
}

#[test]
fn without_address_map_the_shared_mailbox_is_listed_not_dropped() {
    let setup = setup();
    let report = carry_over(
        &setup.inputs,
        &common::scenario_mailboxes(),
        None,
        &setup.out,
        "alice",
    )
    .expect("runs");
    let unresolved: Vec<&str> = report
        .unresolved
        .iter()
        .map(|u| u.display_name.as_str())
        .collect();
    assert_eq!(unresolved, ["Front Desk", "Eve Former"]);
    let csv = common::windows_text(&read(output(&report, OutputKind::UnresolvedCsv)));
    assert!(
        csv.contains("Front Desk") && csv.contains("Eve Former"),
        "{csv}"
    );
}

#[test]
fn the_unresolved_report_filled_in_works_as_an_address_map() {
    let setup = setup();
    let report = carry_over(
        &setup.inputs,
        &common::scenario_mailboxes(),
        None,
        &setup.out,
        "alice",
    )
    .expect("runs");
    let filled = common::windows_text(&read(output(&report, OutputKind::UnresolvedCsv))).replace(
        "\"Eve Former\",\"\"",
        "\"Eve Former\",\"eve@newjob.example\"",
    );
    std::fs::write(&setup.map, filled).expect("write");
    let report = run(&setup);
    let still: Vec<&str> = report
        .unresolved
        .iter()
        .map(|u| u.display_name.as_str())
        .collect();
    assert_eq!(
        still,
        ["Front Desk"],
        "rows left empty are ignored, filled ones resolve"
    );
    assert!(report
        .resolved
        .iter()
        .any(|r| r.smtp == "eve@newjob.example"));
}

#[test]
fn inputs_errors_name_the_offending_file() {
    let setup = setup();
    let err = carry_over(&setup.inputs, &[], None, &setup.out, "../alice").expect_err("bad slug");
    assert!(matches!(err, AutocompleteError::InvalidSlug(_)));
    let err = carry_over(&[], &[], None, &setup.out, "alice").expect_err("no inputs");
    assert!(matches!(err, AutocompleteError::NoInputs));
    std::fs::write(&setup.inputs[1], b"\x0D\xF0\xAD\xBA\x0D\x00\x00\x00").expect("write");
    let err = carry_over(&setup.inputs, &[], None, &setup.out, "alice").expect_err("unknown major");
    assert_eq!(
        err.to_string(),
        format!(
            "{}: header/footer, byte offset 4 (0x4): expected major version 10 (.nk2) or 12 (Outlook 2010+ stream), found 13; a stream of unknown version is neither read nor rewritten",
            setup.inputs[1].display()
        )
    );
    std::fs::write(&setup.map, "legacy_dn,smtp\n/o=x/cn=y,nobody\n").expect("write");
    let err =
        carry_over(&setup.inputs, &[], Some(&setup.map), &setup.out, "alice").expect_err("bad map");
    assert_eq!(
        err.to_string(),
        format!(
            "{}:2: expected an SMTP address in `smtp`, found \"nobody\"",
            setup.map.display()
        )
    );
}
