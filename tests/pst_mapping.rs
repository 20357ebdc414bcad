//! The import service's mapping CSV as written: Microsoft's header, quoting, CRLF, 500 rows
//! a file, private files, stale files removed; and the PST header check that tells ANSI from
//! Unicode, on writer-made files and the real Outlook files (`CUTOVER_REAL_FIXTURES`).

mod pst_fixtures;

use cutover::connectors::pst_mapping::{
    file_names, render, target_root_folder, write_files, MappingRow,
};

fn row(i: usize) -> MappingRow {
    MappingRow::new(
        &format!("acme/user{i:04}/Mail {i}.pst"),
        &format!("user{i:04}@acme.co.uk"),
        i % 2 == 1,
        target_root_folder(if i.is_multiple_of(3) {
            None
        } else {
            Some("Imported PST")
        }),
        None,
    )
    .unwrap()
}

#[test]
fn rows_are_quoted_only_when_needed() {
    let rows = vec![
        MappingRow::new(
            "acme/bob/Bob.PST",
            "bob@acme.co.uk",
            false,
            target_root_folder(Some("/")),
            None,
        )
        .unwrap(),
        MappingRow::new(
            "acme/carol/old/2002, \"Carol\".pst",
            "carol@acme.onmicrosoft.com",
            true,
            target_root_folder(Some("Old Mail/2002")),
            Some(932),
        )
        .unwrap(),
        MappingRow::new("root.pst", "info@acme.co.uk", false, None, None).unwrap(),
    ];
    insta::assert_snapshot!("mapping-csv", render(&rows).replace("\r\n", "⏎\n"));
    assert_eq!(
        rows[1].csv_line(),
        "Exchange,acme/carol/old,\"2002, \"\"Carol\"\".pst\",carol@acme.onmicrosoft.com,TRUE,/Old Mail/2002,932,,,"
    );
}

#[test]
fn a_thousand_and_one_rows_make_three_private_files_and_a_smaller_mapping_removes_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let rows: Vec<MappingRow> = (0..1001).map(row).collect();
    let written = write_files(&out, "acme-pst-import", &rows).unwrap();
    let names: Vec<String> = written
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, file_names("acme-pst-import", 1001));
    let mut total = 0;
    for (n, path) in written.iter().enumerate() {
        let text = std::fs::read_to_string(path).unwrap();
        let lines: Vec<&str> = text.split("\r\n").filter(|l| !l.is_empty()).collect();
        assert!(lines[0].starts_with("Workload,FilePath,Name,Mailbox,IsArchive,"));
        assert!(lines.len() - 1 <= 500);
        total += lines.len() - 1;
        if n == 2 {
            assert_eq!(lines.len() - 1, 1);
            assert_eq!(
                lines[1],
                "Exchange,acme/user1000,Mail 1000.pst,user1000@acme.co.uk,FALSE,/Imported PST,,,,"
            );
        }
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    assert_eq!(total, 1001);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o700
    );

    // Down to one file: the numbered ones go, other files stay.
    std::fs::write(out.join("notes.csv"), "mine").unwrap();
    write_files(&out, "acme-pst-import", &rows[..3]).unwrap();
    let mut left: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, vec!["acme-pst-import.csv", "notes.csv"]);
}

#[test]
fn pst_headers_tell_ansi_from_unicode_and_other_files_are_named_with_the_offset() {
    use cutover::connectors::pst::{format_of, Format};
    use pst_fixtures::pst_writer::{write, PstSpec};
    let dir = tempfile::tempdir().unwrap();
    let put = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    for (ansi, expected) in [(true, Format::Ansi), (false, Format::Unicode)] {
        let pst = write(&PstSpec {
            ansi,
            ..Default::default()
        });
        assert_eq!(format_of(put("w.pst", &pst)).unwrap(), expected);
    }
    let mbox = put(
        "mail.mbox",
        &[
            b"From alice@example.com Mon Jan  1 00:00:00 2024\n".as_slice(),
            &[0u8; 600],
        ]
        .concat(),
    );
    let error = format_of(&mbox).unwrap_err().to_string();
    assert!(error.contains("mail.mbox"), "{error}");
    assert!(
        error.contains("byte 0x0") && error.contains("header"),
        "{error}"
    );
    assert!(format_of(dir.path().join("missing.pst")).is_err());

    // Real Outlook files, when the fixture folder is there (all Unicode, per its MANIFEST).
    for path in pst_fixtures::real_psts() {
        assert_eq!(
            format_of(&path).unwrap(),
            Format::Unicode,
            "{}",
            path.display()
        );
    }
}
