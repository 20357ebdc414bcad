//! Fixtures made with cutover's own writer, shaped like the real files in
//! `$CUTOVER_REAL_FIXTURES` so the same assertions run on both: a fresh clone has no real files,
//! and the writer-made ones keep every test meaningful there.
#![allow(dead_code)]

use std::path::PathBuf;

use cutover::connectors::autocomplete::{tags, AutocompleteFile, Entry, Property, Row, ValueData};

/// The folder of real files, when CI provides it. A set variable pointing at a folder
/// without the file is a broken CI setup and fails the test loudly.
pub fn real_fixture(name: &str) -> Option<PathBuf> {
    let folder = std::env::var_os("CUTOVER_REAL_FIXTURES")?;
    let path = PathBuf::from(folder).join(name);
    assert!(
        path.is_file(),
        "CUTOVER_REAL_FIXTURES is set but {} is missing",
        path.display()
    );
    Some(path)
}

pub const REAL_NK2: &str = "plaso_Outlook.NK2";
pub const REAL_STREAM: &str =
    "process-pst_unsent_email_IPM.Configuration.Autocomplete_PR_ROAMING_BINARYSTREAM.bin";

pub fn entry(display: &str, kind: &str, address: &str, smtp: Option<&str>, weight: i32) -> Entry {
    Entry {
        display_name: display.into(),
        address_type: kind.into(),
        email_address: address.into(),
        smtp_address: smtp.map(str::to_owned),
        weight,
    }
}

fn smtp(display: &str, address: &str, weight: i32) -> Entry {
    entry(display, "SMTP", address, Some(address), weight)
}

/// FILETIME of a UTC instant given as seconds since 1970.
pub fn filetime(unix_seconds: u64) -> [u8; 8] {
    ((unix_seconds + 11_644_473_600) * 10_000_000).to_le_bytes()
}

/// Rows as Outlook 2007 writes them: the nick name repeated, PR_SMTP_ADDRESS as PT_ERROR,
/// a PT_NULL property, and unknown properties the writer must keep.
fn outlook_2007_row(entry: &Entry) -> Row {
    let mut row = Row::from_entry(entry);
    let nick = row.properties[0].clone();
    row.properties.insert(1, nick);
    row.set(Property::error(
        tags::PID_SMTP_ADDRESS,
        tags::MAPI_E_NOT_FOUND,
    ));
    let null = Property::from_parts(
        tags::tag(0x5FDE, tags::PT_NULL),
        [7; 4],
        [9; 8],
        ValueData::None,
    )
    .expect("PT_NULL is static");
    row.properties.push(null);
    row.properties.push(Property::long(0x5FFD, 1));
    row
}

/// The plaso `.nk2` (v10.1, 5 rows, 2012-03-31), rebuilt with cutover's writer, plus slack
/// after the footer that the round trip must keep.
pub fn writer_made_nk2() -> Vec<u8> {
    let mut file = AutocompleteFile::new(tags::MAJOR_NK2, tags::MINOR_NK2);
    file.rows = [
        smtp(
            "nromanoff@stark-research-labs.com",
            "nromanoff@stark-research-labs.com",
            24576,
        ),
        smtp("mhill.shield@yahoo.com", "mhill.shield@yahoo.com", 12288),
        smtp("Timothy Dungan", "tdungan@stark-research-labs.com", 10240),
        smtp(
            "nfury@stark-research-labs.com",
            "nfury@stark-research-labs.com",
            8704,
        ),
        smtp("'Gavin Kline'", "gavinkline@yahoo.com", 2048),
    ]
    .iter()
    .map(outlook_2007_row)
    .collect();
    file.footer = filetime(1_333_210_168);
    file.trailing = vec![0xAB; 7];
    file.to_bytes().expect("known version")
}

/// The process-pst v12.0 stream (2 rows, 2010-06-24), rebuilt with cutover's writer.
pub fn writer_made_stream() -> Vec<u8> {
    let mut file = AutocompleteFile::new(tags::MAJOR_STREAM, tags::MINOR_STREAM);
    file.rows = vec![
        Row::from_entry(&smtp(
            "Jane Doe (pst-test-2@aranetic.com)",
            "pst-test-2@aranetic.com",
            49152,
        )),
        Row::from_entry(&smtp(
            "John Doe (pst-test-1@aranetic.com)",
            "pst-test-1@aranetic.com",
            24576,
        )),
    ];
    file.footer = filetime(1_277_400_593);
    file.to_bytes().expect("known version")
}

/// The real file when CI provides it, else the writer-made twin; says which on stderr.
pub fn nk2_bytes() -> (Vec<u8>, &'static str) {
    match real_fixture(REAL_NK2) {
        Some(path) => (
            std::fs::read(path).expect("readable"),
            "real plaso_Outlook.NK2",
        ),
        None => {
            eprintln!("CUTOVER_REAL_FIXTURES unset: checking the writer-made twin of {REAL_NK2}; the real-file variant runs when it is set");
            (writer_made_nk2(), "writer-made twin of plaso_Outlook.NK2")
        }
    }
}

pub fn stream_bytes() -> (Vec<u8>, &'static str) {
    match real_fixture(REAL_STREAM) {
        Some(path) => (
            std::fs::read(path).expect("readable"),
            "real process-pst stream",
        ),
        None => {
            eprintln!("CUTOVER_REAL_FIXTURES unset: checking the writer-made twin of {REAL_STREAM}; the real-file variant runs when it is set");
            (
                writer_made_stream(),
                "writer-made twin of the process-pst stream",
            )
        }
    }
}

pub const ACME_DN: &str = "/o=Acme/ou=First Administrative Group/cn=Recipients/cn=";

/// A migration scenario: Alice's old Outlook 2007 `.nk2` (colleagues as EX entries, outsiders
/// as SMTP) and her newer Outlook 2016 stream, overlapping with different weights.
pub fn scenario_files() -> (Vec<u8>, Vec<u8>) {
    let ex = |name: &str, cn: &str, weight: i32| {
        entry(name, "EX", &format!("{ACME_DN}{cn}"), None, weight)
    };
    let mut nk2 = AutocompleteFile::new(tags::MAJOR_NK2, tags::MINOR_NK2);
    nk2.rows = [
        ex("Bob Jones", "bjones", 900),
        ex("Carol White", "cwhite", 800),
        ex("Front Desk", "reception", 700),
        ex("Eve Former", "eformer", 600),
        smtp(
            "Supplier Ltd (orders@supplier.example)",
            "orders@supplier.example",
            500,
        ),
        smtp("Pat O'Brien; Accounts", "pat@accountants.example", 400),
    ]
    .iter()
    .map(outlook_2007_row)
    .collect();
    nk2.footer = filetime(1_333_210_168);

    let mut stream = AutocompleteFile::new(tags::MAJOR_STREAM, tags::MINOR_STREAM);
    stream.rows = vec![
        Row::from_entry(&smtp("Supplier Ltd", "ORDERS@supplier.example", 2000)),
        Row::from_entry(&smtp("Bob Jones", "bob@acme.co.uk", 100)),
        Row::from_entry(&smtp("Zoë Ångström", "zoe@universität.example", 50)),
    ];
    stream.footer = filetime(1_577_836_800);
    (
        nk2.to_bytes().expect("writes"),
        stream.to_bytes().expect("writes"),
    )
}

pub fn scenario_mailboxes() -> Vec<cutover::connectors::autocomplete::KnownMailbox> {
    use cutover::connectors::autocomplete::KnownMailbox;
    vec![
        KnownMailbox {
            smtp: "alice@acme.co.uk".into(),
            display_name: Some("Alice Smith".into()),
            aliases: vec!["asmith".into()],
            legacy_dn: Some(format!("{ACME_DN}asmith")),
        },
        KnownMailbox {
            smtp: "bob@acme.co.uk".into(),
            display_name: Some("Bob Jones".into()),
            aliases: vec![],
            legacy_dn: Some(format!("{ACME_DN}bjones")),
        },
        KnownMailbox {
            smtp: "carol@acme.co.uk".into(),
            display_name: Some("Carol White".into()),
            aliases: vec!["cwhite@acme.co.uk".into()],
            legacy_dn: None,
        },
    ]
}

pub const SCENARIO_ADDRESS_MAP: &str = "# reception is a shared mailbox, not a plan user\n\
legacy_dn,display_name,smtp\n\
,Front Desk,reception@acme.co.uk\n";

/// Windows-bound text outputs: check the BOM and CRLF, then show them plainly for snapshots.
pub fn windows_text(bytes: &[u8]) -> String {
    let text = String::from_utf8(bytes.to_vec()).expect("UTF-8");
    let text = text.strip_prefix('\u{FEFF}').expect("UTF-8 BOM").to_owned();
    assert!(
        !text.replace("\r\n", "").contains('\n'),
        "every line ends in CRLF"
    );
    text.replace("\r\n", "\n")
}
