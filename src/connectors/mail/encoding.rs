//! The few transfer encodings local mail touches: base64 (attachments in the corpus, RFC 2047
//! `B` words), RFC 2047 encoded words (Subject display and corpus subjects) and the legacy
//! single-byte charsets that still turn up in old mail. Display-only: message bytes are never
//! decoded and re-encoded, so a lossy display never costs data.

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding, no line breaks.
pub(crate) fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(B64[((n >> (18 - 6 * i)) & 0x3f) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes base64, ignoring whitespace and tolerating missing padding; `None` on any other
/// character so a broken encoded word is shown as written instead of as garbage.
pub(crate) fn base64_decode(text: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    let mut padding = false;
    for &c in text {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                padding = true;
                continue;
            }
            b' ' | b'\t' | b'\r' | b'\n' => continue,
            _ => return None,
        };
        if padding {
            return None;
        }
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Windows-1252 0x80..=0x9F; the rest of the range is Latin-1. Undefined slots map to U+FFFD.
const CP1252_HIGH: [char; 32] = [
    '€', '\u{fffd}', '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', '\u{fffd}', 'Ž',
    '\u{fffd}', '\u{fffd}', '‘', '’', '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ', '\u{fffd}',
    'ž', 'Ÿ',
];

/// Bytes in a named charset to text, or `None` for a charset this display code does not know.
pub(crate) fn decode_charset(charset: &str, bytes: &[u8]) -> Option<String> {
    // RFC 2231 allows a language suffix: "utf-8*en".
    let cs = charset.split('*').next().unwrap_or("").to_ascii_lowercase();
    match cs.as_str() {
        "utf-8" | "utf8" | "us-ascii" | "ascii" => {
            Some(String::from_utf8_lossy(bytes).into_owned())
        }
        "iso-8859-1" | "latin1" | "l1" | "iso_8859-1" => {
            Some(bytes.iter().map(|&b| char::from(b)).collect())
        }
        "windows-1252" | "cp1252" => Some(
            bytes
                .iter()
                .map(|&b| match b {
                    0x80..=0x9f => CP1252_HIGH[usize::from(b - 0x80)],
                    _ => char::from(b),
                })
                .collect(),
        ),
        "iso-8859-15" | "latin9" => Some(
            bytes
                .iter()
                .map(|&b| match b {
                    0xa4 => '€',
                    0xa6 => 'Š',
                    0xa8 => 'š',
                    0xb4 => 'Ž',
                    0xb8 => 'ž',
                    0xbc => 'Œ',
                    0xbd => 'œ',
                    0xbe => 'Ÿ',
                    _ => char::from(b),
                })
                .collect(),
        ),
        _ => None,
    }
}

/// Raw 8-bit header text: UTF-8 when it is, else Latin-1 (the usual legacy default), so a
/// display never fails.
pub(crate) fn bytes_to_display(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => bytes.iter().map(|&b| char::from(b)).collect(),
    }
}

struct EncodedWord<'a> {
    charset: &'a str,
    bytes: Vec<u8>,
    len: usize,
}

fn parse_encoded_word(s: &[u8]) -> Option<EncodedWord<'_>> {
    // =?charset?E?text?=
    let rest = s.strip_prefix(b"=?")?;
    let q1 = rest.iter().position(|&b| b == b'?')?;
    let charset = std::str::from_utf8(&rest[..q1]).ok()?;
    if charset.is_empty() {
        return None;
    }
    let rest = &rest[q1 + 1..];
    let enc = *rest.first()?;
    if rest.get(1) != Some(&b'?') {
        return None;
    }
    let text_start = &rest[2..];
    let end = text_start.windows(2).position(|w| w == b"?=")?;
    let text = &text_start[..end];
    if text.iter().any(|b| b.is_ascii_whitespace()) {
        return None;
    }
    let bytes = match enc.to_ascii_uppercase() {
        b'B' => base64_decode(text)?,
        b'Q' => {
            let mut out = Vec::with_capacity(text.len());
            let mut i = 0;
            while i < text.len() {
                match text[i] {
                    b'_' => out.push(b' '),
                    b'=' => {
                        let hi = hex_value(*text.get(i + 1)?)?;
                        let lo = hex_value(*text.get(i + 2)?)?;
                        out.push(hi << 4 | lo);
                        i += 2;
                    }
                    c => out.push(c),
                }
                i += 1;
            }
            out
        }
        _ => return None,
    };
    Some(EncodedWord {
        charset,
        bytes,
        len: 2 + q1 + 1 + 2 + end + 2,
    })
}

/// Decodes RFC 2047 encoded words in an unfolded header value for display. Whitespace between
/// adjacent encoded words is dropped (the RFC's rule), and adjacent words in one charset are
/// joined before decoding because mailers split multi-byte characters across words.
/// Unknown charsets and malformed words stay as written.
pub(crate) fn decode_rfc2047(value: &[u8]) -> String {
    enum Token<'a> {
        Text(&'a [u8]),
        Word(EncodedWord<'a>, &'a [u8]),
    }
    let mut tokens = Vec::new();
    let mut text_start = 0;
    let mut i = 0;
    while i < value.len() {
        if value[i] == b'=' && value.get(i + 1) == Some(&b'?') {
            if let Some(w) = parse_encoded_word(&value[i..]) {
                if text_start < i {
                    tokens.push(Token::Text(&value[text_start..i]));
                }
                let len = w.len;
                tokens.push(Token::Word(w, &value[i..i + len]));
                i += len;
                text_start = i;
                continue;
            }
        }
        i += 1;
    }
    if text_start < value.len() {
        tokens.push(Token::Text(&value[text_start..]));
    }

    let mut out = String::new();
    // Adjacent encoded words: (charset, decoded bytes, raw text in case the charset is unknown).
    let mut run: Option<(&str, Vec<u8>, Vec<u8>)> = None;
    let flush = |run: &mut Option<(&str, Vec<u8>, Vec<u8>)>, out: &mut String| {
        if let Some((cs, bytes, raw)) = run.take() {
            match decode_charset(cs, &bytes) {
                Some(s) => out.push_str(&s),
                None => out.push_str(&bytes_to_display(&raw)),
            }
        }
    };
    for (idx, token) in tokens.iter().enumerate() {
        match token {
            Token::Word(w, raw) => match &mut run {
                Some((cs, bytes, raw_acc)) if cs.eq_ignore_ascii_case(w.charset) => {
                    bytes.extend_from_slice(&w.bytes);
                    raw_acc.extend_from_slice(raw);
                }
                _ => {
                    flush(&mut run, &mut out);
                    run = Some((w.charset, w.bytes.clone(), raw.to_vec()));
                }
            },
            Token::Text(t) => {
                let between_words = idx > 0
                    && matches!(tokens.get(idx - 1), Some(Token::Word(..)))
                    && matches!(tokens.get(idx + 1), Some(Token::Word(..)));
                if between_words && t.iter().all(|&b| b == b' ' || b == b'\t') {
                    continue;
                }
                flush(&mut run, &mut out);
                out.push_str(&bytes_to_display(t));
            }
        }
    }
    flush(&mut run, &mut out);
    out
}

/// Encodes text as one or more RFC 2047 `B` words of UTF-8, never splitting a character, each
/// word at most 75 characters as the RFC requires. Used by the corpus generator.
pub(crate) fn encode_rfc2047_b(text: &str) -> String {
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in text.chars() {
        // "=?UTF-8?B?" + base64 + "?=" must stay within 75: 45 input bytes -> 60 chars.
        if chunk.len() + c.len_utf8() > 45 {
            words.push(format!("=?UTF-8?B?{}?=", base64_encode(chunk.as_bytes())));
            chunk.clear();
        }
        chunk.push(c);
    }
    if !chunk.is_empty() || words.is_empty() {
        words.push(format!("=?UTF-8?B?{}?=", base64_encode(chunk.as_bytes())));
    }
    words.join("\r\n ")
}

/// Encodes text as RFC 2047 `Q` words of UTF-8 (readable for mostly-ASCII subjects).
pub(crate) fn encode_rfc2047_q(text: &str) -> String {
    let mut words = Vec::new();
    let mut cur = String::new();
    for c in text.chars() {
        let mut piece = String::new();
        if c == ' ' {
            piece.push('_');
        } else if c.is_ascii_alphanumeric() || "!*+-/".contains(c) {
            piece.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                piece.push_str(&format!("={b:02X}"));
            }
        }
        if cur.len() + piece.len() > 60 {
            words.push(format!("=?UTF-8?Q?{cur}?="));
            cur.clear();
        }
        cur.push_str(&piece);
    }
    if !cur.is_empty() || words.is_empty() {
        words.push(format!("=?UTF-8?Q?{cur}?="));
    }
    words.join("\r\n ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip() {
        for data in [&b""[..], b"f", b"fo", b"foo", b"foob", b"fooba", b"foobar"] {
            let enc = base64_encode(data);
            assert_eq!(base64_decode(enc.as_bytes()).unwrap(), data);
        }
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_decode(b"Zm8").unwrap(), b"fo");
        assert!(base64_decode(b"Zm8*").is_none());
        assert!(base64_decode(b"Zm==8").is_none());
    }

    #[test]
    fn hex_digits() {
        assert_eq!(hex(&[0, 0xab, 0xff]), "00abff");
    }

    #[test]
    fn rfc2047_examples() {
        // RFC 2047 §8.
        let cases: &[(&str, &str)] = &[
            ("(=?ISO-8859-1?Q?a?=)", "(a)"),
            ("(=?ISO-8859-1?Q?a?= b)", "(a b)"),
            ("(=?ISO-8859-1?Q?a?= =?ISO-8859-1?Q?b?=)", "(ab)"),
            ("(=?ISO-8859-1?Q?a?=  =?ISO-8859-1?Q?b?=)", "(ab)"),
            ("(=?ISO-8859-1?Q?a_b?=)", "(a b)"),
            ("(=?ISO-8859-1?Q?a?= =?ISO-8859-15?Q?_b?=)", "(a b)"),
            ("=?ISO-8859-2?Q?a?=", "=?ISO-8859-2?Q?a?="),
            ("=?utf-8?B?w6TDtsO8?=", "äöü"),
            (
                "Re: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= aus Berlin",
                "Re: Grüße aus Berlin",
            ),
            ("=?windows-1252?Q?=80_100?=", "€ 100"),
            ("=?x-unknown?Q?abc?=", "=?x-unknown?Q?abc?="),
            ("=?utf-8?B?not base64?=", "=?utf-8?B?not base64?="),
            ("=?utf-8?Q?broken=Z?=", "=?utf-8?Q?broken=Z?="),
            ("plain subject", "plain subject"),
            ("=?", "=?"),
            ("a =?utf-8?q?b?=", "a b"),
        ];
        for (input, want) in cases {
            assert_eq!(decode_rfc2047(input.as_bytes()), *want, "{input}");
        }
    }

    #[test]
    fn split_multibyte_across_words() {
        // "ü" = C3 BC split across two words.
        assert_eq!(
            decode_rfc2047(b"=?UTF-8?Q?M=C3?= =?UTF-8?Q?=BCller?="),
            "Müller"
        );
    }

    #[test]
    fn encoders_round_trip_through_decoder() {
        let text = "Ünïcödé subject that is long enough to need several encoded words — 日本語 ✓";
        for enc in [encode_rfc2047_b(text), encode_rfc2047_q(text)] {
            for line in enc.split("\r\n") {
                assert!(line.trim_start().len() <= 75, "{line}");
            }
            let unfolded = enc.replace("\r\n", "");
            assert_eq!(decode_rfc2047(unfolded.as_bytes()), text);
        }
    }

    #[test]
    fn raw_latin1_header_displays() {
        assert_eq!(decode_rfc2047(b"caf\xe9"), "café");
    }
}
