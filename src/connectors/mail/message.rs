//! A message as a migration sees it: the exact bytes, plus the metadata that lives outside the
//! bytes (flags, internal date). Bytes are never rewritten: a migration that "fixes" headers
//! breaks signatures (DKIM, S/MIME) and makes the copy unverifiable against its source.
//!
//! Header helpers here parse only as much as reports and dedupe need, tolerate any garbage and
//! never panic: old mailboxes contain every malformation a mailer ever produced.

use std::collections::BTreeSet;
use std::time::SystemTime;

use super::encoding;
use super::identity::Identity;

/// The IMAP system flags that survive a migration. `\Recent` is deliberately absent: it is
/// session state owned by the receiving server, not a property of the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Flag {
    Seen,
    Answered,
    Flagged,
    Deleted,
    Draft,
}

impl Flag {
    pub const ALL: [Flag; 5] = [
        Flag::Seen,
        Flag::Answered,
        Flag::Flagged,
        Flag::Deleted,
        Flag::Draft,
    ];

    fn bit(self) -> u8 {
        1 << (self as u8)
    }

    /// The IMAP spelling, e.g. `\Seen`, for connectors that speak IMAP.
    pub fn imap_name(self) -> &'static str {
        match self {
            Flag::Seen => "\\Seen",
            Flag::Answered => "\\Answered",
            Flag::Flagged => "\\Flagged",
            Flag::Deleted => "\\Deleted",
            Flag::Draft => "\\Draft",
        }
    }
}

/// System flags plus keywords (`$Forwarded`, `$Label1`, `NonJunk`, …). Keywords are kept in a
/// sorted set so equal flag sets compare equal regardless of the order a source listed them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Flags {
    system: u8,
    keywords: BTreeSet<String>,
}

impl Flags {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn contains(&self, flag: Flag) -> bool {
        self.system & flag.bit() != 0
    }

    pub fn insert(&mut self, flag: Flag) {
        self.system |= flag.bit();
    }

    pub fn remove(&mut self, flag: Flag) {
        self.system &= !flag.bit();
    }

    /// Builder form of [`Flags::insert`].
    pub fn with(mut self, flag: Flag) -> Self {
        self.insert(flag);
        self
    }

    /// Adds a keyword if it is a valid IMAP atom (what every target can store); returns whether
    /// it was accepted. Invalid keywords from a broken source are dropped rather than passed on
    /// to fail a later IMAP `APPEND`.
    pub fn insert_keyword(&mut self, keyword: &str) -> bool {
        if !is_valid_keyword(keyword) {
            return false;
        }
        self.keywords.insert(keyword.to_owned());
        true
    }

    /// Builder form of [`Flags::insert_keyword`].
    pub fn with_keyword(mut self, keyword: &str) -> Self {
        self.insert_keyword(keyword);
        self
    }

    pub fn has_keyword(&self, keyword: &str) -> bool {
        self.keywords.contains(keyword)
    }

    pub fn system(&self) -> impl Iterator<Item = Flag> + '_ {
        Flag::ALL.into_iter().filter(|f| self.contains(*f))
    }

    pub fn keywords(&self) -> impl Iterator<Item = &str> + '_ {
        self.keywords.iter().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.system == 0 && self.keywords.is_empty()
    }
}

/// IMAP `atom` without `\`: no controls, space, or `( ) { % * " \ ]`, and non-ASCII excluded.
fn is_valid_keyword(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 200
        && k.bytes()
            .all(|b| (0x21..0x7f).contains(&b) && !b"(){%*\"\\]".contains(&b))
}

/// One message: exact bytes plus out-of-band metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMessage {
    bytes: Vec<u8>,
    pub flags: Flags,
    /// When the mailbox received the message (IMAP INTERNALDATE), not the `Date:` header, which
    /// the sender sets. Clients sort by it, so losing it reorders a user's mailbox.
    pub internal_date: Option<SystemTime>,
}

impl RawMessage {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self {
            bytes,
            flags: Flags::new(),
            internal_date: None,
        }
    }

    pub fn with_flags(mut self, flags: Flags) -> Self {
        self.flags = flags;
        self
    }

    pub fn with_internal_date(mut self, date: Option<SystemTime>) -> Self {
        self.internal_date = date;
        self
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The first header field named `name` (case-insensitive), unfolded and trimmed.
    pub fn header(&self, name: &str) -> Option<Vec<u8>> {
        header_value(&self.bytes, name)
    }

    /// The normalized Message-ID, see [`normalize_message_id`].
    pub fn message_id(&self) -> Option<String> {
        message_id_of(&self.bytes)
    }

    /// Subject for reports, RFC 2047 decoded. Lossy by design: display only.
    pub fn subject(&self) -> Option<String> {
        self.header("Subject")
            .map(|v| encoding::decode_rfc2047(&v).trim().to_owned())
    }

    /// The `Date:` header as written (unfolded), for reports.
    pub fn date(&self) -> Option<String> {
        self.header("Date")
            .map(|v| encoding::bytes_to_display(&v).trim().to_owned())
    }

    /// What tells this message from others across a copy: see [`Identity`].
    pub fn identity(&self) -> Identity {
        Identity::of_message(&self.bytes)
    }
}

/// A header line ends the header section when it is empty, with or without a CR.
fn is_blank_line(line: &[u8]) -> bool {
    line.is_empty() || line == b"\r"
}

/// One header field: its name as written and its unfolded value (line breaks of folded
/// continuation lines removed, the folding whitespace kept, as RFC 5322 §2.2.3 says).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderField<'a> {
    pub name: &'a [u8],
    pub value: Vec<u8>,
}

/// Iterates the header fields of a message (or of a header section alone). Lines without a
/// colon (an mbox `From ` line left in, binary junk) are skipped along with their continuation
/// lines; the section ends at the first blank line or at the end of input.
pub fn header_fields(bytes: &[u8]) -> HeaderFields<'_> {
    HeaderFields { rest: bytes }
}

pub struct HeaderFields<'a> {
    rest: &'a [u8],
}

fn split_line(bytes: &[u8]) -> (&[u8], &[u8]) {
    match bytes.iter().position(|&b| b == b'\n') {
        Some(i) => (&bytes[..i], &bytes[i + 1..]),
        None => (bytes, &[]),
    }
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

impl<'a> Iterator for HeaderFields<'a> {
    type Item = HeaderField<'a>;

    fn next(&mut self) -> Option<HeaderField<'a>> {
        loop {
            if self.rest.is_empty() {
                return None;
            }
            let (line, rest) = split_line(self.rest);
            if is_blank_line(line) {
                self.rest = &[];
                return None;
            }
            self.rest = rest;
            let line = strip_cr(line);
            let starts_field = !matches!(line.first(), Some(b' ' | b'\t'));
            let colon = line.iter().position(|&b| b == b':');
            let (Some(colon), true) = (colon, starts_field) else {
                // Garbage or an orphan continuation line: skip it.
                continue;
            };
            let name = trim_end_wsp(&line[..colon]);
            let mut value = line[colon + 1..].to_vec();
            while let Some(&(b' ' | b'\t')) = self.rest.first() {
                let (cont, rest) = split_line(self.rest);
                value.extend_from_slice(strip_cr(cont));
                self.rest = rest;
            }
            return Some(HeaderField { name, value });
        }
    }
}

fn trim_end_wsp(s: &[u8]) -> &[u8] {
    let end = s
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    &s[..end]
}

fn trim_wsp(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    trim_end_wsp(&s[start..])
}

/// First header named `name` (ASCII case-insensitive), unfolded and trimmed.
pub fn header_value(bytes: &[u8], name: &str) -> Option<Vec<u8>> {
    header_fields(bytes)
        .find(|f| f.name.eq_ignore_ascii_case(name.as_bytes()))
        .map(|f| trim_wsp(&f.value).to_vec())
}

fn message_id_of(bytes: &[u8]) -> Option<String> {
    header_value(bytes, "Message-ID").and_then(|v| normalize_message_id(&v))
}

/// Normalizes a Message-ID header value so that one message seen through two paths (an IMAP
/// server and an mbox export, say) yields the same key:
///
/// * the id is the text inside the first `<…>`; brackets, surrounding comments and the
///   whitespace that folding inserts are dropped. A value without brackets (some broken
///   mailers) is used whole, minus whitespace;
/// * the part after the last `@` is lowercased: it is a domain, and domains are
///   case-insensitive, while the left part is case-sensitive and kept;
/// * bytes that are not printable ASCII are written as `\xNN`, an injective escape: two
///   different ids never collapse into one, which would make dedupe drop a real message.
///
/// An empty id (`<>`) counts as absent.
pub fn normalize_message_id(value: &[u8]) -> Option<String> {
    let inner = match value.iter().position(|&b| b == b'<') {
        Some(open) => {
            let after = &value[open + 1..];
            match after.iter().position(|&b| b == b'>') {
                Some(close) => &after[..close],
                None => after,
            }
        }
        None => value,
    };
    let compact: Vec<u8> = inner
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if compact.is_empty() {
        return None;
    }
    let at = compact.iter().rposition(|&b| b == b'@');
    let mut out = String::with_capacity(compact.len());
    for (i, &b) in compact.iter().enumerate() {
        let b = match at {
            Some(at) if i > at => b.to_ascii_lowercase(),
            _ => b,
        };
        if (0x21..0x7f).contains(&b) && b != b'\\' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folded_case_insensitive_header() {
        let m = RawMessage::new(
            b"From: a@b\r\nmessage-id:\r\n  <AbC.123@Example.COM>\r\nSubject: x\r\n\r\nbody\r\n"
                .to_vec(),
        );
        assert_eq!(m.message_id().as_deref(), Some("AbC.123@example.com"));
    }

    #[test]
    fn header_section_stops_at_blank_line() {
        let m = RawMessage::new(b"Subject: a\n\nMessage-ID: <body@x>\n".to_vec());
        assert_eq!(m.message_id(), None);
        assert_eq!(m.subject().as_deref(), Some("a"));
    }

    #[test]
    fn garbage_lines_are_skipped() {
        let m = RawMessage::new(
            b"From someone Mon Jan  1 00:00:00 2024\n junk continuation\n\xff\xfe\nMessage-Id : <x@y>\n\n"
                .to_vec(),
        );
        assert_eq!(m.message_id().as_deref(), Some("x@y"));
    }

    #[test]
    fn message_id_forms() {
        let n = |v: &[u8]| normalize_message_id(v);
        assert_eq!(n(b"<a@b> (comment)").as_deref(), Some("a@b"));
        assert_eq!(n(b"(comment) <a@B.c>").as_deref(), Some("a@b.c"));
        assert_eq!(n(b"no-brackets@Host").as_deref(), Some("no-brackets@host"));
        assert_eq!(n(b"<a@b").as_deref(), Some("a@b"));
        assert_eq!(n(b"<>"), None);
        assert_eq!(n(b"   "), None);
        assert_eq!(n(b"<caf\xe9@x>").as_deref(), Some("caf\\xe9@x"));
        assert_eq!(n(b"<a\\b@x>").as_deref(), Some("a\\x5cb@x"));
    }

    #[test]
    fn subject_decoding_and_date() {
        let m = RawMessage::new(
            b"Subject: =?UTF-8?B?R3LDvMOfZQ==?=\r\n =?UTF-8?Q?_aus_K=C3=B6ln?=\r\nDate: Mon, 2 Jan 2023\r\n 15:04:05 +0000\r\n\r\n"
                .to_vec(),
        );
        assert_eq!(m.subject().as_deref(), Some("Grüße aus Köln"));
        assert_eq!(m.date().as_deref(), Some("Mon, 2 Jan 2023 15:04:05 +0000"));
    }

    #[test]
    fn flags_set_semantics() {
        let f = Flags::new()
            .with(Flag::Seen)
            .with(Flag::Draft)
            .with_keyword("$Label1")
            .with_keyword("bad keyword")
            .with_keyword("");
        assert!(f.contains(Flag::Seen) && f.contains(Flag::Draft) && !f.contains(Flag::Flagged));
        assert_eq!(f.keywords().collect::<Vec<_>>(), vec!["$Label1"]);
        assert_eq!(
            f.system().collect::<Vec<_>>(),
            vec![Flag::Seen, Flag::Draft]
        );
        let mut g = f.clone();
        g.remove(Flag::Seen);
        assert!(!g.contains(Flag::Seen));
        assert!(Flags::new().is_empty());
    }
}
