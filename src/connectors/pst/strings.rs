//! ANSI strings: Windows code pages to Unicode through `encoding_rs` (the WHATWG decoders).

use encoding_rs::Encoding;

/// The encoding for a Windows code page number (PidTagInternetCodepage,
/// PidTagMessageCodepage), when `encoding_rs` knows one.
pub fn encoding_for_code_page(code_page: u32) -> Option<&'static Encoding> {
    let label = match code_page {
        874 => "windows-874",
        1250..=1258 => return Encoding::for_label(format!("windows-{code_page}").as_bytes()),
        932 => "shift_jis",
        936 => "gbk",
        949 => "euc-kr",
        950 => "big5",
        866 => "ibm866",
        10000 => "macintosh",
        20127 => "windows-1252",
        20866 => "koi8-r",
        21866 => "koi8-u",
        28591 => "windows-1252",
        28592..=28606 => {
            return Encoding::for_label(format!("iso-8859-{}", code_page - 28590).as_bytes())
        }
        50220..=50222 => "iso-2022-jp",
        51932 => "euc-jp",
        51949 => "euc-kr",
        54936 => "gb18030",
        65001 => "utf-8",
        1200 => "utf-16le",
        1201 => "utf-16be",
        _ => return None,
    };
    Encoding::for_label(label.as_bytes())
}

/// Decodes ANSI bytes with `code_page`, Windows-1252 when it is unknown or absent.
pub fn decode_ansi(bytes: &[u8], code_page: Option<u32>) -> String {
    let encoding = code_page
        .and_then(encoding_for_code_page)
        .unwrap_or(encoding_rs::WINDOWS_1252);
    let (text, _, _) = encoding.decode(bytes);
    text.into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_pages_decode() {
        assert_eq!(decode_ansi(b"caf\xe9", None), "café");
        assert_eq!(decode_ansi(b"\xd7\xe0", Some(1251)), "Ча");
        assert_eq!(decode_ansi(b"\x82\xa0", Some(932)), "あ");
        assert_eq!(decode_ansi("ção".as_bytes(), Some(65001)), "ção");
        assert_eq!(decode_ansi(b"\xe6", Some(28592)), "ć");
    }
}
