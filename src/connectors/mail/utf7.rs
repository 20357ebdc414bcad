//! IMAP "modified UTF-7" mailbox names (RFC 3501 §5.1.3).
//!
//! Dovecot stores Maildir++ folder names in this encoding on disk and IMAP servers send them
//! on the wire, so a folder called `Entwürfe` must become `Entw&APw-rfe` in both places or a
//! migrated folder would appear under a garbled name. Kept free of Maildir details so the IMAP
//! connector can reuse it.
//!
//! The decoder is strict: it rejects anything [`encode`] would never produce (unterminated
//! shifts, padding bits, lone surrogates, base64 runs that spell printable ASCII). A name that
//! does not decode is not silently mangled; the caller decides how to show it.

use std::fmt;

/// Why a name is not valid modified UTF-7.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Utf7Error {
    /// Byte position in the input where decoding failed.
    pub position: usize,
    pub reason: &'static str,
}

impl fmt::Display for Utf7Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid modified UTF-7 at byte {}: {}",
            self.position, self.reason
        )
    }
}

impl std::error::Error for Utf7Error {}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

fn is_direct(c: char) -> bool {
    // Printable US-ASCII except '&' represents itself; everything else is shifted.
    ('\u{20}'..='\u{7e}').contains(&c) && c != '&'
}

fn b64_value(b: u8) -> Option<u32> {
    let v = match b {
        b'A'..=b'Z' => b - b'A',
        b'a'..=b'z' => b - b'a' + 26,
        b'0'..=b'9' => b - b'0' + 52,
        b'+' => 62,
        b',' => 63,
        _ => return None,
    };
    Some(u32::from(v))
}

/// Encodes a Unicode mailbox name. Total: every string has an encoding.
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut pending: Vec<u16> = Vec::new();
    for c in name.chars() {
        if is_direct(c) {
            flush_shifted(&mut pending, &mut out);
            out.push(c);
        } else if c == '&' {
            flush_shifted(&mut pending, &mut out);
            out.push_str("&-");
        } else {
            let mut units = [0u16; 2];
            pending.extend_from_slice(c.encode_utf16(&mut units));
        }
    }
    flush_shifted(&mut pending, &mut out);
    out
}

fn flush_shifted(units: &mut Vec<u16>, out: &mut String) {
    if units.is_empty() {
        return;
    }
    out.push('&');
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for &u in units.iter() {
        acc = (acc << 16) | u32::from(u);
        bits += 16;
        while bits >= 6 {
            bits -= 6;
            out.push(char::from(ALPHABET[((acc >> bits) & 0x3f) as usize]));
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((acc << (6 - bits)) & 0x3f) as usize]));
    }
    out.push('-');
    units.clear();
}

/// Decodes a modified UTF-7 mailbox name.
pub fn decode(encoded: &str) -> Result<String, Utf7Error> {
    let bytes = encoded.as_bytes();
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b != b'&' {
            if !(0x20..=0x7e).contains(&b) {
                return Err(Utf7Error {
                    position: i,
                    reason: "character outside printable US-ASCII",
                });
            }
            out.push(char::from(b));
            i += 1;
            continue;
        }
        let start = i;
        i += 1;
        if bytes.get(i) == Some(&b'-') {
            out.push('&');
            i += 1;
            continue;
        }
        let mut units: Vec<u16> = Vec::new();
        let mut acc: u32 = 0;
        let mut bits = 0u32;
        loop {
            let Some(&c) = bytes.get(i) else {
                return Err(Utf7Error {
                    position: start,
                    reason: "shifted sequence without closing '-'",
                });
            };
            i += 1;
            if c == b'-' {
                break;
            }
            let Some(v) = b64_value(c) else {
                return Err(Utf7Error {
                    position: i - 1,
                    reason: "invalid character in base64 sequence",
                });
            };
            acc = (acc << 6) | v;
            bits += 6;
            if bits >= 16 {
                bits -= 16;
                units.push(((acc >> bits) & 0xffff) as u16);
                acc &= (1 << bits) - 1;
            }
        }
        if bits >= 6 || acc != 0 {
            return Err(Utf7Error {
                position: start,
                reason: "base64 sequence has leftover bits",
            });
        }
        for r in char::decode_utf16(units.iter().copied()) {
            match r {
                Ok(c) if is_direct(c) || c == '&' => {
                    return Err(Utf7Error {
                        position: start,
                        reason: "printable ASCII must not be base64-encoded",
                    })
                }
                Ok(c) => out.push(c),
                Err(_) => {
                    return Err(Utf7Error {
                        position: start,
                        reason: "unpaired UTF-16 surrogate",
                    })
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3501_example() {
        // The RFC's own example: "~peter/mail/台北/日本語".
        let name = "~peter/mail/\u{53f0}\u{5317}/\u{65e5}\u{672c}\u{8a9e}";
        assert_eq!(encode(name), "~peter/mail/&U,BTFw-/&ZeVnLIqe-");
        assert_eq!(decode("~peter/mail/&U,BTFw-/&ZeVnLIqe-").unwrap(), name);
    }

    #[test]
    fn ampersand_and_ascii() {
        assert_eq!(encode("Müller & Söhne"), "M&APw-ller &- S&APY-hne");
        assert_eq!(decode("M&APw-ller &- S&APY-hne").unwrap(), "Müller & Söhne");
        assert_eq!(encode("&"), "&-");
        assert_eq!(encode("plain-ASCII_1.2 ~"), "plain-ASCII_1.2 ~");
        assert_eq!(encode(""), "");
    }

    #[test]
    fn non_bmp_uses_surrogate_pairs() {
        let name = "mail 📬 box";
        let enc = encode(name);
        assert_eq!(enc, "mail &2D3c7A- box");
        assert_eq!(decode(&enc).unwrap(), name);
    }

    #[test]
    fn dovecot_style_names() {
        assert_eq!(encode("Entwürfe"), "Entw&APw-rfe");
        assert_eq!(encode("Gelöschte Elemente"), "Gel&APY-schte Elemente");
        assert_eq!(encode("Отправленные"), "&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-");
    }

    #[test]
    fn control_characters_are_shifted() {
        let enc = encode("a\tb\u{7f}");
        assert!(enc.bytes().all(|b| (0x20..=0x7e).contains(&b)));
        assert_eq!(decode(&enc).unwrap(), "a\tb\u{7f}");
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "&",
            "&U,BTFw",
            "&U,B-",      // leftover bits
            "&--",        // "&-" then a stray '-' is fine, so check separately below
            "&AGE-",      // 'a' must not be shifted
            "&2D0-",      // lone high surrogate
            "&2D3c7A",    // unterminated
            "a\u{e9}",    // raw non-ASCII
            "tab\there",  // raw control
            "&U/BTFw-",   // '/' is not in the modified alphabet
            "&AAAAAA==-", // padding
        ] {
            if bad == "&--" {
                assert_eq!(decode(bad).unwrap(), "&-");
                continue;
            }
            assert!(decode(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
