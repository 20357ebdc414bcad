//! mbox reader and writer against real files.

use std::fs;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cutover::connectors::mail::{
    Flag, Flags, MailError, MboxMessage, MboxReader, MboxVariant, MboxWriter, RawMessage,
};

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn read_file(path: &std::path::Path, variant: MboxVariant) -> Vec<MboxMessage> {
    MboxReader::open(path, variant)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

fn tricky_messages() -> Vec<RawMessage> {
    let bodies: Vec<&[u8]> = vec![
        b"Message-ID: <1@x>\nSubject: plain\n\nHello\n",
        b"Subject: from lines\n\nFrom the start of a line\n>From quoted\n>>From deeper\n\nFrom after blank\n",
        b"Subject: crlf\r\nMessage-ID: <2@x>\r\n\r\nFrom crlf body\r\n>From too\r\n",
        b"",
        b"Subject: ends with blank lines\n\nbody\n\n\n",
        b"Subject: crlf blank end\r\n\r\nbody\r\n\r\n",
        b"From : header-looking first line\nX: y\n\n",
    ];
    bodies
        .into_iter()
        .enumerate()
        .map(|(i, b)| {
            RawMessage::new(b.to_vec())
                .with_internal_date(Some(at(1_700_000_000 + i as u64 * 3600)))
        })
        .collect()
}

#[test]
fn round_trip_is_byte_exact_including_from_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("export.mbox");
    let messages = tricky_messages();
    let mut w = MboxWriter::create(&path).unwrap();
    let offsets: Vec<u64> = messages.iter().map(|m| w.write(m).unwrap()).collect();
    w.finish().unwrap();

    let raw = fs::read(&path).unwrap();
    assert!(raw.windows(26).any(|w| w == b"\n>From the start of a line"));
    assert!(raw.windows(16).any(|w| w == b"\n>>>From deeper\n"));

    let read = read_file(&path, MboxVariant::Mboxrd);
    assert_eq!(read.len(), messages.len());
    for ((got, want), off) in read.iter().zip(&messages).zip(&offsets) {
        assert_eq!(got.message.bytes(), want.bytes(), "at offset {off}");
        assert_eq!(got.message.internal_date, want.internal_date);
        assert_eq!(got.offset, *off);
        assert_eq!(&raw[got.offset as usize..got.offset as usize + 5], b"From ");
    }
}

#[test]
fn message_without_final_newline_gains_one() {
    let mut out = Vec::new();
    let mut w = MboxWriter::new(&mut out);
    w.write(&RawMessage::new(b"Subject: x\n\nno newline".to_vec()))
        .unwrap();
    w.write(&RawMessage::new(b"Subject: y\r\n\r\nno crlf".to_vec()))
        .unwrap();
    w.finish().unwrap();
    let read: Vec<_> = MboxReader::new(&out[..], MboxVariant::Mboxrd, "mem")
        .map(Result::unwrap)
        .collect();
    assert_eq!(read[0].message.bytes(), b"Subject: x\n\nno newline\n");
    assert_eq!(read[1].message.bytes(), b"Subject: y\r\n\r\nno crlf\r\n");
}

#[test]
fn mboxo_and_mboxrd_unescape_differently() {
    let data =
        b"From a Mon Jan  2 15:04:05 2023\nSubject: x\n\n>From one\n>>From two\n>not from\n\n";
    let rd: Vec<_> = MboxReader::new(&data[..], MboxVariant::Mboxrd, "m")
        .map(Result::unwrap)
        .collect();
    let o: Vec<_> = MboxReader::new(&data[..], MboxVariant::Mboxo, "m")
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        rd[0].message.bytes(),
        b"Subject: x\n\nFrom one\n>From two\n>not from\n"
    );
    assert_eq!(
        o[0].message.bytes(),
        b"Subject: x\n\nFrom one\n>>From two\n>not from\n"
    );
}

#[test]
fn crlf_file() {
    let data = b"From a@b Mon Jan  2 15:04:05 2023\r\nSubject: one\r\n\r\nbody\r\n>From esc\r\n\r\nFrom c@d Tue Jan  3 15:04:05 2023\r\nSubject: two\r\n\r\nlast\r\n\r\n";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crlf.mbox");
    fs::write(&path, data).unwrap();
    let read = read_file(&path, MboxVariant::Mboxrd);
    assert_eq!(read.len(), 2);
    assert_eq!(
        read[0].message.bytes(),
        b"Subject: one\r\n\r\nbody\r\nFrom esc\r\n"
    );
    assert_eq!(read[1].message.bytes(), b"Subject: two\r\n\r\nlast\r\n");
    assert_eq!(read[0].envelope, "a@b Mon Jan  2 15:04:05 2023");
    let second = data.windows(8).position(|w| w == b"\r\nFrom c").unwrap() + 2;
    assert_eq!(read[1].offset, second as u64);
    assert_eq!(read[0].message.internal_date, Some(at(1_672_671_845)));
    assert_eq!(read[1].message.subject().as_deref(), Some("two"));
}

#[test]
fn crlf_round_trip_keeps_crlf_separators() {
    let m = RawMessage::new(b"Subject: c\r\n\r\nFrom x\r\n".to_vec());
    let mut out = Vec::new();
    let mut w = MboxWriter::new(&mut out);
    w.write(&m).unwrap();
    w.finish().unwrap();
    assert!(out.ends_with(b"\r\n>From x\r\n\r\n"));
    assert!(!out.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'));
    let read: Vec<_> = MboxReader::new(&out[..], MboxVariant::Mboxrd, "m")
        .map(Result::unwrap)
        .collect();
    assert_eq!(read[0].message.bytes(), m.bytes());
}

#[test]
fn flags_from_status_headers() {
    let data = b"From a Mon Jan  2 15:04:05 2023
Status: RO
X-Status: AFT
X-Keywords: $Label1, NonJunk

one

From b Mon Jan  2 15:04:05 2023
X-Mozilla-Status: 100f
X-Mozilla-Status2: 00000000
X-Mozilla-Keys: $label2                                   

two

From c Mon Jan  2 15:04:05 2023
Status: O
X-Mozilla-Status: zzzz

three
";
    let read: Vec<_> = MboxReader::new(&data[..], MboxVariant::Mboxo, "m")
        .map(Result::unwrap)
        .collect();
    let expect0 = Flags::new()
        .with(Flag::Seen)
        .with(Flag::Answered)
        .with(Flag::Flagged)
        .with(Flag::Draft)
        .with_keyword("$Label1")
        .with_keyword("NonJunk");
    assert_eq!(read[0].message.flags, expect0);
    let expect1 = Flags::new()
        .with(Flag::Seen)
        .with(Flag::Answered)
        .with(Flag::Flagged)
        .with(Flag::Deleted)
        .with_keyword("$Forwarded")
        .with_keyword("$label2");
    assert_eq!(read[1].message.flags, expect1);
    assert!(read[2].message.flags.is_empty());
}

#[test]
fn resume_after_offset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.mbox");
    let messages = tricky_messages();
    let mut w = MboxWriter::create(&path).unwrap();
    let offsets: Vec<u64> = messages.iter().map(|m| w.write(m).unwrap()).collect();
    w.finish().unwrap();

    for k in 0..messages.len() {
        let rest: Vec<_> = MboxReader::open_after(&path, MboxVariant::Mboxrd, offsets[k])
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let got: Vec<u64> = rest.iter().map(|m| m.offset).collect();
        assert_eq!(got, offsets[k + 1..].to_vec());
        for (m, want) in rest.iter().zip(&messages[k + 1..]) {
            assert_eq!(m.message.bytes(), want.bytes());
        }
    }

    let err = MboxReader::open_after(&path, MboxVariant::Mboxrd, offsets[1] + 3)
        .err()
        .unwrap();
    assert!(matches!(err, MailError::Malformed { offset, .. } if offset == offsets[1] + 3));
    let text = err.to_string();
    assert!(
        text.contains("r.mbox") && text.contains(&format!("byte {}", offsets[1] + 3)),
        "{text}"
    );
}

#[test]
fn errors_name_the_file() {
    let err = MboxReader::open("/nonexistent/dir/x.mbox", MboxVariant::Mboxrd)
        .err()
        .unwrap();
    assert!(err.to_string().contains("/nonexistent/dir/x.mbox"));

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not.mbox");
    fs::write(&path, b"Subject: this is not an mbox\n\nbody\n").unwrap();
    let first = MboxReader::open(&path, MboxVariant::Mboxrd)
        .unwrap()
        .next()
        .unwrap();
    let text = first.unwrap_err().to_string();
    assert!(
        text.contains("not.mbox at byte 0") && text.contains("From "),
        "{text}"
    );
}

#[test]
fn thunderbird_style_mboxo_export() {
    // Thunderbird writes "From - <date>" separators, X-Mozilla-Status and escapes body
    // "From " lines mboxo style.
    let data = b"From - Sat Mar 02 10:11:12 2024\r\nX-Mozilla-Status: 0001\r\nX-Mozilla-Status2: 00000000\r\nMessage-ID: <tb1@example.com>\r\nSubject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\n\r\n>From the road\r\n\r\nFrom - Sat Mar 02 10:11:13 2024\r\nX-Mozilla-Status: 0000\r\nSubject: second\r\n\r\nbye\r\n\r\n";
    let read: Vec<_> = MboxReader::new(&data[..], MboxVariant::Mboxo, "tb")
        .map(Result::unwrap)
        .collect();
    assert_eq!(read.len(), 2);
    assert_eq!(read[0].message.subject().as_deref(), Some("Grüße"));
    assert_eq!(
        read[0].message.message_id().as_deref(),
        Some("tb1@example.com")
    );
    assert!(read[0].message.flags.contains(Flag::Seen));
    assert!(read[0]
        .message
        .bytes()
        .ends_with(b"\r\n\r\nFrom the road\r\n"));
    assert_eq!(read[1].message.internal_date, Some(at(1_709_374_273)));
    assert!(!read[1].message.flags.contains(Flag::Seen));
}
