//! Property tests: round trips over arbitrary input, and no panic on garbage.

use cutover::connectors::mail::identity::Identity;
use cutover::connectors::mail::message::{header_fields, normalize_message_id};
use cutover::connectors::mail::{utf7, MboxReader, MboxVariant, MboxWriter, RawMessage};
use proptest::prelude::*;

/// Lines biased towards what breaks mbox: separators, escaped separators, blank lines, CR.
fn line() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"".to_vec()),
        Just(b"\r".to_vec()),
        "(>{0,3})From [ -~]{0,12}".prop_map(String::into_bytes),
        "[ -~]{0,20}".prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..20)
            .prop_map(|v| v.into_iter().filter(|&b| b != b'\n').collect()),
    ]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::collection::vec(line(), 0..8),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(lines, crlf, final_eol)| {
            let eol: &[u8] = if crlf { b"\r\n" } else { b"\n" };
            let mut out = Vec::new();
            for (i, l) in lines.iter().enumerate() {
                out.extend_from_slice(l);
                if i + 1 < lines.len() || final_eol {
                    out.extend_from_slice(eol);
                }
            }
            out
        })
}

/// What the writer promises to preserve: everything, except that a non-empty message without
/// a final line end gains one (in the style of its first line end).
fn expected_after_round_trip(bytes: &[u8]) -> Vec<u8> {
    let mut v = bytes.to_vec();
    if !v.is_empty() && !v.ends_with(b"\n") {
        let crlf =
            matches!(v.iter().position(|&b| b == b'\n'), Some(i) if i > 0 && v[i - 1] == b'\r');
        v.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
    }
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn mboxrd_write_read_round_trip(
        bodies in proptest::collection::vec(body(), 0..6),
        buffer in 1usize..16,
    ) {
        let mut out = Vec::new();
        let mut w = MboxWriter::new(&mut out);
        let mut offsets = Vec::new();
        for b in &bodies {
            offsets.push(w.write(&RawMessage::new(b.clone())).unwrap());
        }
        w.finish().unwrap();
        // A tiny read buffer puts buffer boundaries inside separators and escapes.
        let reader = std::io::BufReader::with_capacity(buffer, &out[..]);
        let read: Vec<_> = MboxReader::new(reader, MboxVariant::Mboxrd, "prop")
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        prop_assert_eq!(read.len(), bodies.len());
        for ((got, want), off) in read.iter().zip(&bodies).zip(&offsets) {
            prop_assert_eq!(got.message.bytes(), &expected_after_round_trip(want)[..]);
            prop_assert_eq!(got.offset, *off);
        }
    }

    #[test]
    fn utf7_round_trip(name in any::<String>()) {
        let enc = utf7::encode(&name);
        prop_assert!(enc.bytes().all(|b| (0x20..=0x7e).contains(&b)));
        prop_assert_eq!(utf7::decode(&enc).unwrap(), name);
    }

    #[test]
    fn utf7_decode_is_canonical(name in "[ -~\u{80}-\u{10ffff}]{0,12}") {
        // Anything the decoder accepts re-encodes to the same text: one name, one spelling.
        let enc = utf7::encode(&name);
        let dec = utf7::decode(&enc).unwrap();
        prop_assert_eq!(utf7::encode(&dec), enc);
    }

    #[test]
    fn utf7_decode_never_panics(s in "[&A-Za-z0-9+,/=\\- \u{e9}]{0,24}") {
        if let Ok(dec) = utf7::decode(&s) {
            prop_assert_eq!(utf7::decode(&utf7::encode(&dec)).unwrap(), dec);
        }
    }

    #[test]
    fn header_helpers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let m = RawMessage::new(bytes.clone());
        let _ = m.message_id();
        let _ = m.subject();
        let _ = m.date();
        let _ = m.header("Content-Type");
        let _ = header_fields(&bytes).count();
        let _ = normalize_message_id(&bytes);
        prop_assert_eq!(Identity::of_message(&bytes), m.identity());
        prop_assert_eq!(m.identity().to_string().len(), 32);
    }

    #[test]
    fn header_helpers_on_header_like_garbage(
        lines in proptest::collection::vec(
            prop_oneof![
                "(?i)(message-id|subject|date|status|x-status|x-mozilla-status|x-keywords) ?:[ -~]{0,30}",
                "[ \t][ -~]{0,20}",
                "=\\?[a-z0-9-]{0,8}\\?[bqBQx]\\?[ -~]{0,20}\\?=",
                "[ -~]{0,20}",
            ],
            0..12,
        ),
        crlf in any::<bool>(),
    ) {
        let eol = if crlf { "\r\n" } else { "\n" };
        let text = lines.join(eol);
        let m = RawMessage::new(text.clone().into_bytes());
        let _ = m.subject();
        let _ = m.message_id();
        let _ = m.date();
        // Only the header section counts: a body after it changes nothing.
        let with_body = format!("{text}{eol}{eol}Message-ID: <body@x>{eol}Subject: body{eol}");
        prop_assert_eq!(Identity::of_message(with_body.as_bytes()), m.identity());
        let mbox = format!("From x Mon Jan  2 15:04:05 2023{eol}{text}{eol}{eol}");
        for variant in [MboxVariant::Mboxo, MboxVariant::Mboxrd] {
            let n = MboxReader::new(mbox.as_bytes(), variant, "p").count();
            prop_assert!(n >= 1);
        }
    }

    #[test]
    fn mbox_reader_never_panics(
        prefix in prop_oneof![Just(b"From ".to_vec()), Just(Vec::new())],
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        let mut data = prefix;
        data.extend_from_slice(&bytes);
        for variant in [MboxVariant::Mboxo, MboxVariant::Mboxrd] {
            let mut total = 0usize;
            for item in MboxReader::new(&data[..], variant, "fuzz") {
                match item {
                    Ok(m) => total += m.message.len(),
                    Err(e) => prop_assert!(e.to_string().starts_with("fuzz at byte")),
                }
            }
            // Unescaping only removes bytes.
            prop_assert!(total <= data.len());
        }
    }

    /// Listing an mbox without holding bodies (`next_entry`) measures every message as
    /// reading it whole gives it, with the same identity and flags; and its body read line by
    /// line (`body_line`, what a streamed copy sends) is those bytes.
    #[test]
    fn entries_and_body_lines_agree_with_whole_messages(
        messages in proptest::collection::vec(body(), 1..5),
        crlf_blank in any::<bool>(),
    ) {
        let mut data = Vec::new();
        for m in &messages {
            data.extend_from_slice(b"From someone@example.com Mon Jan  2 15:04:05 2023\n");
            data.extend_from_slice(b"Subject: s\nX-Status: F\n\n");
            data.extend_from_slice(m);
            data.extend_from_slice(if crlf_blank { b"\r\n" } else { b"\n" });
        }
        let whole: Vec<_> = MboxReader::new(&data[..], MboxVariant::Mboxrd, "p")
            .map(|m| m.unwrap())
            .collect();
        let mut entries = MboxReader::new(&data[..], MboxVariant::Mboxrd, "p");
        let mut lines = MboxReader::new(&data[..], MboxVariant::Mboxrd, "p");
        for m in &whole {
            let e = entries.next_entry().unwrap().unwrap();
            prop_assert_eq!(e.offset, m.offset);
            prop_assert_eq!(e.size, m.message.len() as u64);
            prop_assert_eq!(Identity::of_message(&e.head), Identity::of_message(m.message.bytes()));
            prop_assert_eq!(&e.flags, &m.message.flags);
            prop_assert!(lines.begin(m.offset).unwrap());
            let mut streamed = Vec::new();
            while lines.body_line(&mut streamed).unwrap() {}
            prop_assert!(streamed == m.message.bytes(), "body lines differ");
        }
        prop_assert!(entries.next_entry().is_none());
    }
}
