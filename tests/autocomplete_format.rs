//! The two real caches (or, without `CUTOVER_REAL_FIXTURES`, their writer-made twins) parse
//! to the right rows and write back byte for byte.

mod autocomplete_fixtures;
use autocomplete_fixtures as common;

use cutover::connectors::autocomplete::entry::filetime_to_rfc3339;
use cutover::connectors::autocomplete::{parse, read_file, tags, AutocompleteError, Expected};

type Expected5 = (&'static str, &'static str, &'static str, i32);

fn check(bytes: &[u8], source: &str, major: u32, minor: u32, written: &str, rows: &[Expected5]) {
    let file = parse(bytes).unwrap_or_else(|err| panic!("{source}: {err}"));
    assert_eq!(
        (file.major_version, file.minor_version),
        (major, minor),
        "{source}"
    );
    assert_eq!(
        filetime_to_rfc3339(file.last_written_filetime()).as_deref(),
        Some(written),
        "{source}"
    );
    let found: Vec<Expected5> = file
        .rows
        .iter()
        .map(|row| {
            let entry = row.entry();
            let leak = |s: String| &*Box::leak(s.into_boxed_str());
            (
                leak(entry.display_name),
                leak(entry.email_address),
                leak(entry.address_type),
                entry.weight,
            )
        })
        .collect();
    assert_eq!(found, rows, "{source}");
    for row in &file.rows {
        let entry = row.entry();
        assert_eq!(
            entry.smtp_address.as_deref(),
            Some(entry.email_address.as_str()),
            "{source}"
        );
        assert_eq!(
            row.properties.first().map(|p| p.tag()),
            Some(0x6001_001F),
            "{source}: nick name first"
        );
    }
    let weights: Vec<i32> = file.rows.iter().map(|row| row.weight()).collect();
    assert!(
        weights.windows(2).all(|w| w[0] >= w[1]),
        "{source}: sorted by weight"
    );
    assert_eq!(
        file.to_bytes().expect("known version"),
        bytes,
        "{source}: byte-identical round trip"
    );
}

#[test]
fn nk2_parses_to_its_five_rows_and_round_trips() {
    let (bytes, source) = common::nk2_bytes();
    check(
        &bytes,
        source,
        10,
        1,
        "2012-03-31T16:09:28Z",
        &[
            (
                "nromanoff@stark-research-labs.com",
                "nromanoff@stark-research-labs.com",
                "SMTP",
                24576,
            ),
            (
                "mhill.shield@yahoo.com",
                "mhill.shield@yahoo.com",
                "SMTP",
                12288,
            ),
            (
                "Timothy Dungan",
                "tdungan@stark-research-labs.com",
                "SMTP",
                10240,
            ),
            (
                "nfury@stark-research-labs.com",
                "nfury@stark-research-labs.com",
                "SMTP",
                8704,
            ),
            ("'Gavin Kline'", "gavinkline@yahoo.com", "SMTP", 2048),
        ],
    );
    // Quirks the issue names, which the parser must carry: a repeated nick name and
    // PR_SMTP_ADDRESS stored as PT_ERROR.
    let file = parse(&bytes).expect("parses");
    let first = &file.rows[0];
    let nicks = first
        .properties
        .iter()
        .filter(|p| p.id() == tags::PID_NICK_NAME)
        .count();
    assert!(nicks > 1, "{source}: nick name repeated");
    assert!(
        file.rows
            .iter()
            .any(|row| row.find(tags::PID_SMTP_ADDRESS).map(|p| p.tag()) == Some(0x39FE_000A)),
        "{source}: PR_SMTP_ADDRESS as PT_ERROR"
    );
}

#[test]
fn v12_stream_parses_to_its_two_rows_and_round_trips() {
    let (bytes, source) = common::stream_bytes();
    check(
        &bytes,
        source,
        12,
        0,
        "2010-06-24T17:29:53Z",
        &[
            (
                "Jane Doe (pst-test-2@aranetic.com)",
                "pst-test-2@aranetic.com",
                "SMTP",
                49152,
            ),
            (
                "John Doe (pst-test-1@aranetic.com)",
                "pst-test-1@aranetic.com",
                "SMTP",
                24576,
            ),
        ],
    );
}

#[test]
fn writer_made_twins_carry_pt_null_and_slack_through_the_round_trip() {
    // Always runs, real files or not: these quirks are not in the two public samples.
    let bytes = common::writer_made_nk2();
    let file = parse(&bytes).expect("parses");
    assert_eq!(file.trailing, vec![0xAB; 7]);
    assert!(file.rows.iter().all(|row| row
        .properties
        .iter()
        .any(|p| p.property_type() == tags::PT_NULL)));
    assert_eq!(file.to_bytes().expect("writes"), bytes);
}

#[test]
fn every_truncation_of_a_real_shaped_file_fails_cleanly() {
    for (bytes, source) in [common::nk2_bytes(), common::stream_bytes()] {
        let file = parse(&bytes).expect("parses");
        let footer_start = bytes.len() - file.trailing.len();
        for cut in 0..footer_start {
            let err = parse(&bytes[..cut]).expect_err("truncated input is an error");
            assert!(err.offset <= cut, "{source}: cut {cut}: {err}");
            assert!(
                matches!(err.expected, Expected::Bytes { .. }),
                "{source}: cut {cut}: {err}"
            );
        }
    }
}

#[test]
fn corrupt_file_error_names_file_row_offset_and_expectation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("alice.nk2");
    let mut bytes = common::writer_made_nk2();
    // Row 2's first property: make its string length run past the end of the file.
    let mut first_row_only = parse(&bytes).expect("parses");
    first_row_only.rows.truncate(1);
    first_row_only.trailing.clear();
    let row2_start = first_row_only.to_bytes().expect("writes").len() - 4 - 8;
    let length_at = row2_start + 4 + 16;
    bytes[length_at..length_at + 4].copy_from_slice(&0x00FF_FFFFu32.to_le_bytes());
    std::fs::write(&path, &bytes).expect("write");
    let err = read_file(&path).expect_err("corrupt");
    assert!(matches!(err, AutocompleteError::Corrupt { .. }));
    let message = err.to_string();
    assert!(
        message.starts_with(&format!(
            "{}: row 2, property 1 (tag 0x6001001F), byte offset {}",
            path.display(),
            length_at + 4
        )),
        "{message}"
    );
    assert!(
        message.contains("expected the value data (16777215 bytes)"),
        "{message}"
    );
}
