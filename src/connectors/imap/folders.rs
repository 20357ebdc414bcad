//! IMAP folder names on the wire: modified UTF-7 (RFC 3501 §5.1.3) and the server's
//! hierarchy delimiter, both ways. Routing a folder to its target is the same for every
//! source: [`crate::connectors::mailflow::folders`].

use crate::connectors::mail::utf7;

/// A wire name decoded from modified UTF-7; a name that is not valid modified UTF-7 (some
/// servers store raw 8-bit names) is kept as sent rather than dropped or mangled.
pub fn decode_lossy(wire: &str) -> String {
    utf7::decode(wire).unwrap_or_else(|_| wire.to_owned())
}

/// A source wire name as Unicode segments: decoded, split on the delimiter, a leading
/// `INBOX` segment stripped (`INBOX.Sent` → `Sent`), INBOX itself → empty.
pub fn source_path(wire: &str, delimiter: Option<char>) -> Vec<String> {
    let decoded = decode_lossy(wire);
    let mut segs: Vec<String> = match delimiter {
        Some(d) => decoded.split(d).map(str::to_owned).collect(),
        None => vec![decoded],
    };
    segs.retain(|s| !s.is_empty());
    if segs
        .first()
        .is_some_and(|s| s.eq_ignore_ascii_case("INBOX"))
    {
        segs.remove(0);
    }
    segs
}

/// Segments → the target's wire name. A segment containing the target's delimiter has it
/// replaced by `_`: left alone it would silently create an extra hierarchy level.
pub fn target_wire_name(segments: &[String], delimiter: char) -> String {
    if segments.is_empty() {
        return "INBOX".to_owned();
    }
    segments
        .iter()
        .map(|s| utf7::encode(&s.replace(delimiter, "_")))
        .collect::<Vec<_>>()
        .join(&delimiter.to_string())
}
