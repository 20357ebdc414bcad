//! Compressed RTF (MS-OXRTFCP: LZFu, with its CRC) and HTML de-encapsulation from RTF
//! (MS-OXRTFEX: `\fromhtml1`). No crate does either on bytes we control, so both are here.

use super::crypt::crc32;
use super::strings::decode_ansi;

const PREFIX: &[u8] = b"{\\rtf1\\ansi\\mac\\deff0\\deftab720{\\fonttbl;}{\\f0\\fnil \\froman \\fswiss \\fmodern \\fscript \\fdecor MS Sans SerifSymbolArialTimes New RomanCourier{\\colortbl\\red0\\green0\\blue0\r\n\\par \\pard\\plain\\f0\\fs20\\b\\i\\u\\tab\\tx";
const COMPRESSED: u32 = 0x7546_5A4C; // "LZFu"
const UNCOMPRESSED: u32 = 0x414C_454D; // "MELA"
/// Decompressed RTF larger than this is refused (a corrupt RAWSIZE must not allocate GBs).
const MAX_RAW: usize = 256 << 20;

/// Why a compressed RTF stream could not be decompressed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RtfError {
    #[error("compressed RTF header: {0}")]
    Header(String),
    #[error("compressed RTF CRC {stored:#010x}, the data gives {computed:#010x}")]
    Crc { stored: u32, computed: u32 },
    #[error("compressed RTF: {0}")]
    Data(String),
}

/// Decompresses a PidTagRtfCompressed value.
pub fn decompress(input: &[u8]) -> Result<Vec<u8>, RtfError> {
    if input.len() < 16 {
        return Err(RtfError::Header(format!("{} bytes, need 16", input.len())));
    }
    let word =
        |at: usize| u32::from_le_bytes([input[at], input[at + 1], input[at + 2], input[at + 3]]);
    let comp_size = word(0) as usize;
    let raw_size = word(4) as usize;
    let kind = word(8);
    let stored_crc = word(12);
    if raw_size > MAX_RAW {
        return Err(RtfError::Header(format!(
            "RAWSIZE {raw_size} is implausible"
        )));
    }
    // COMPSIZE counts the bytes after itself; some writers pad, so take what is there.
    let end = (comp_size + 4).clamp(16, input.len());
    let data = &input[16..end];
    match kind {
        UNCOMPRESSED => {
            let n = raw_size.min(data.len());
            Ok(data[..n].to_vec())
        }
        COMPRESSED => {
            let computed = crc32(data);
            if computed != stored_crc {
                return Err(RtfError::Crc {
                    stored: stored_crc,
                    computed,
                });
            }
            lzfu(data, raw_size)
        }
        other => Err(RtfError::Header(format!(
            "COMPTYPE {other:#010x} is neither LZFu nor MELA"
        ))),
    }
}

fn lzfu(data: &[u8], raw_size: usize) -> Result<Vec<u8>, RtfError> {
    let mut dictionary = [0u8; 4096];
    dictionary[..PREFIX.len()].copy_from_slice(PREFIX);
    let mut write = PREFIX.len();
    // A reference expands 2 bytes to at most 17: RAWSIZE beyond that is a lie.
    let mut out = Vec::with_capacity(raw_size.min(data.len().saturating_mul(9)));
    let mut pos = 0;
    while pos < data.len() {
        let control = data[pos];
        pos += 1;
        for bit in 0..8 {
            if pos >= data.len() {
                break;
            }
            if control & (1 << bit) == 0 {
                let b = data[pos];
                pos += 1;
                out.push(b);
                dictionary[write] = b;
                write = (write + 1) % 4096;
            } else {
                if pos + 1 >= data.len() {
                    return Err(RtfError::Data("reference cut short".into()));
                }
                let reference = u16::from_be_bytes([data[pos], data[pos + 1]]);
                pos += 2;
                let offset = (reference >> 4) as usize;
                let length = (reference & 0xF) as usize + 2;
                if offset == write {
                    // The end marker.
                    out.truncate(raw_size);
                    return Ok(out);
                }
                for i in 0..length {
                    let b = dictionary[(offset + i) % 4096];
                    out.push(b);
                    dictionary[write] = b;
                    write = (write + 1) % 4096;
                }
            }
            if out.len() > MAX_RAW {
                return Err(RtfError::Data("output exceeds its declared size".into()));
            }
        }
    }
    out.truncate(raw_size);
    Ok(out)
}

/// Whether decompressed RTF encapsulates HTML (MS-OXRTFEX 2.1.3: `\fromhtml1` in the header).
pub fn encapsulates_html(rtf: &[u8]) -> bool {
    let head = &rtf[..rtf.len().min(1024)];
    head.windows(10).any(|w| w == b"\\fromhtml1")
}

/// Whether decompressed RTF encapsulates plain text (`\fromtext`).
pub fn encapsulates_text(rtf: &[u8]) -> bool {
    let head = &rtf[..rtf.len().min(1024)];
    head.windows(9).any(|w| w == b"\\fromtext")
}

/// Extracts the HTML an RTF body encapsulates (MS-OXRTFEX 2.4): text inside
/// `{\*\htmltag …}` groups and outside `\htmlrtf … \htmlrtf0` regions, with `\par`, `\tab`,
/// escapes, `\'hh` (in the `\ansicpg` code page) and `\uN` turned back into characters.
pub fn html_from_rtf(rtf: &[u8]) -> String {
    #[derive(Clone, Copy)]
    struct Group {
        /// Content of this group is skipped (a non-htmltag destination, \mhtmltag, …).
        skip: bool,
        /// Inside \htmlrtf: RTF-only content, not part of the HTML.
        suppressed: bool,
        /// Inside an htmltag group.
        tag: bool,
    }
    let mut code_page: Option<u32> = None;
    let mut out = String::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut stack: Vec<Group> = Vec::new();
    let mut current = Group {
        skip: false,
        suppressed: false,
        tag: false,
    };
    let mut unicode_skip = 1usize;
    let mut to_skip = 0usize;
    let mut group_start = false;
    let mut depth_seen = 0usize;
    let flush = |pending: &mut Vec<u8>, out: &mut String, code_page: Option<u32>| {
        if !pending.is_empty() {
            out.push_str(&decode_ansi(pending, code_page.or(Some(1252))));
            pending.clear();
        }
    };
    let mut i = 0;
    while i < rtf.len() {
        let c = rtf[i];
        let emitting = !current.skip && !current.suppressed && depth_seen >= 1;
        match c {
            b'{' => {
                stack.push(current);
                group_start = true;
                depth_seen += 1;
                i += 1;
                continue;
            }
            b'}' => {
                if let Some(previous) = stack.pop() {
                    current = previous;
                }
                group_start = false;
                i += 1;
                continue;
            }
            b'\r' | b'\n' => {
                i += 1;
                continue;
            }
            b'\\' => {
                let next = rtf.get(i + 1).copied().unwrap_or(0);
                if next == b'\'' {
                    let hex = rtf.get(i + 2..i + 4).and_then(|h| {
                        std::str::from_utf8(h)
                            .ok()
                            .and_then(|h| u8::from_str_radix(h, 16).ok())
                    });
                    i += 4;
                    if to_skip > 0 {
                        to_skip -= 1;
                    } else if let (Some(byte), true) = (hex, emitting) {
                        pending.push(byte);
                    }
                    group_start = false;
                    continue;
                }
                if !next.is_ascii_alphabetic() {
                    // Control symbol: \{ \} \\ and friends.
                    i += 2;
                    if next == b'*' {
                        // A destination whose reader may ignore it, unless it is an htmltag.
                        let word = if rtf.get(i) == Some(&b'\\') {
                            control_word(rtf, i + 1).0
                        } else {
                            &[][..]
                        };
                        if word == b"htmltag" {
                            current.tag = true;
                            current.suppressed = false;
                            current.skip = false;
                        } else {
                            // \mhtmltag (a rewritten URL) and every other optional destination.
                            current.skip = true;
                        }
                        continue;
                    }
                    if to_skip > 0 {
                        to_skip -= 1;
                        continue;
                    }
                    if emitting && matches!(next, b'{' | b'}' | b'\\') {
                        pending.push(next);
                    } else if emitting && next == b'~' {
                        pending.push(0xA0);
                    }
                    group_start = false;
                    continue;
                }
                let (word, parameter, end) = control_word(rtf, i + 1);
                i = end;
                match word {
                    b"htmlrtf" => current.suppressed = parameter != Some(0),
                    b"ansicpg" => code_page = parameter.map(|p| p as u32),
                    b"uc" => unicode_skip = parameter.unwrap_or(1).max(0) as usize,
                    b"u" => {
                        if emitting {
                            flush(&mut pending, &mut out, code_page);
                            let mut unit = parameter.unwrap_or(0);
                            if unit < 0 {
                                unit += 65536;
                            }
                            if let Some(ch) = char::from_u32(unit as u32) {
                                out.push(ch);
                            }
                        }
                        to_skip = unicode_skip;
                    }
                    b"par" | b"line" if emitting => pending.extend_from_slice(b"\r\n"),
                    b"tab" if emitting => pending.push(b'\t'),
                    b"fonttbl" | b"colortbl" | b"stylesheet" | b"info" | b"pict" | b"object"
                    | b"header" | b"footer"
                        if group_start =>
                    {
                        current.skip = true
                    }
                    _ => {}
                }
                group_start = false;
                continue;
            }
            _ => {
                group_start = false;
                if to_skip > 0 {
                    to_skip -= 1;
                } else if emitting {
                    pending.push(c);
                }
                i += 1;
            }
        }
        if !emitting {
            flush(&mut pending, &mut out, code_page);
        }
    }
    flush(&mut pending, &mut out, code_page);
    out
}

/// Reads a control word starting at `at` (after the backslash): letters, an optional signed
/// number, and one delimiting space (consumed). Returns (word, parameter, next index).
fn control_word(rtf: &[u8], at: usize) -> (&[u8], Option<i64>, usize) {
    let mut i = at;
    while i < rtf.len() && rtf[i].is_ascii_alphabetic() && i - at < 32 {
        i += 1;
    }
    let word = &rtf[at..i];
    let number_start = i;
    if i < rtf.len() && rtf[i] == b'-' {
        i += 1;
    }
    while i < rtf.len() && rtf[i].is_ascii_digit() && i - number_start < 10 {
        i += 1;
    }
    let parameter = std::str::from_utf8(&rtf[number_start..i])
        .ok()
        .and_then(|n| n.parse::<i64>().ok());
    if i < rtf.len() && rtf[i] == b' ' {
        i += 1;
    }
    (word, parameter, i)
}

/// Compresses RTF as MELA (stored, uncompressed) or LZFu with literal runs only: enough for
/// test writers to produce valid PidTagRtfCompressed values.
pub fn compress_for_tests(rtf: &[u8], lzfu: bool) -> Vec<u8> {
    let mut body = Vec::new();
    if lzfu {
        for chunk in rtf.chunks(8) {
            body.push(0u8);
            body.extend_from_slice(chunk);
        }
        // End marker: a reference to the current write position.
        let write = (PREFIX.len() + rtf.len()) % 4096;
        if rtf.len().is_multiple_of(8) {
            body.push(0x01);
        } else {
            let last = body.len() - 1 - (rtf.len() % 8);
            body[last] |= 1 << (rtf.len() % 8);
        }
        body.extend_from_slice(&((write as u16) << 4).to_be_bytes());
    } else {
        body.extend_from_slice(rtf);
    }
    let mut out = Vec::with_capacity(body.len() + 16);
    out.extend_from_slice(&((body.len() + 12) as u32).to_le_bytes());
    out.extend_from_slice(&(rtf.len() as u32).to_le_bytes());
    out.extend_from_slice(&(if lzfu { COMPRESSED } else { UNCOMPRESSED }).to_le_bytes());
    let crc = if lzfu { crc32(&body) } else { 0 };
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// MS-OXRTFCP 4.1: compressing "{\rtf1\ansi\ansicpg1252\pard hello world}\r\n".
    const SPEC_EXAMPLE: [u8; 49] = [
        0x2d, 0x00, 0x00, 0x00, 0x2b, 0x00, 0x00, 0x00, 0x4c, 0x5a, 0x46, 0x75, 0xf1, 0xc5, 0xc7,
        0xa7, 0x03, 0x00, 0x0a, 0x00, 0x72, 0x63, 0x70, 0x67, 0x31, 0x32, 0x35, 0x42, 0x32, 0x0a,
        0xf3, 0x20, 0x68, 0x65, 0x6c, 0x09, 0x00, 0x20, 0x62, 0x77, 0x05, 0xb0, 0x6c, 0x64, 0x7d,
        0x0a, 0x80, 0x0f, 0xa0,
    ];

    #[test]
    fn decompresses_the_spec_example() {
        let out = decompress(&SPEC_EXAMPLE).unwrap();
        assert_eq!(out, b"{\\rtf1\\ansi\\ansicpg1252\\pard hello world}\r\n");
    }

    #[test]
    fn wrong_crc_is_an_error() {
        let mut bad = SPEC_EXAMPLE;
        bad[30] ^= 0x01;
        assert!(matches!(decompress(&bad), Err(RtfError::Crc { .. })));
    }

    #[test]
    fn test_compressor_round_trips() {
        for text in [&b"{\\rtf1 hi}"[..], b"{\\rtf1\\ansi exactly!}", b""] {
            for lzfu in [false, true] {
                assert_eq!(decompress(&compress_for_tests(text, lzfu)).unwrap(), text);
            }
        }
    }

    #[test]
    fn garbage_never_panics() {
        for len in 0..64 {
            let data: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let _ = decompress(&data);
            let _ = html_from_rtf(&data);
        }
    }

    #[test]
    fn de_encapsulates_html() {
        let rtf = br"{\rtf1\ansi\ansicpg1252\fromhtml1 \deff0{\fonttbl{\f0\fswiss Arial;}}
{\*\htmltag19 <html>}{\*\htmltag34 <head>}{\*\htmltag2 \par }
{\*\htmltag64 <p>}\htmlrtf {\htmlrtf0 Ol\'e1 mundo \{x\}\htmlrtf }\htmlrtf0 {\*\htmltag72 </p>}
\htmlrtf \par \htmlrtf0 {\*\htmltag27 </html>}}";
        let html = html_from_rtf(rtf);
        assert_eq!(html, "<html><head>\r\n<p>Olá mundo {x}</p></html>");
    }
}
