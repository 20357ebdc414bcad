//! mbox files as exported by Thunderbird, Apple Mail, Google Takeout and mutt.
//!
//! An mbox is messages concatenated, each introduced by a `From ` separator line and followed
//! by one blank line. Body lines that would look like a separator are escaped with `>`, and
//! the two dialects met in exports differ in how:
//!
//! * **mboxrd** escapes every line matching `>*From ` with one more `>`, so un-escaping (strip
//!   one `>` from `>+From `) restores the original exactly. This is what [`MboxWriter`] writes.
//! * **mboxo** escapes only `From ` to `>From ` and leaves existing `>From ` lines alone. On
//!   reading, a `>From ` line is therefore ambiguous: an escaped `From ` or an original
//!   `>From ` (a quoted reply). The reader strips one `>`, the reading every mboxo consumer
//!   uses: it restores the common case and changes only a rare quoted line. Nothing better is
//!   possible; prefer mboxrd when a source can export it.
//!
//! A line is taken as a separator only when it starts with `From ` and follows a blank line
//! (or starts the file). Writers that forget to escape a `From ` in a body rarely also put a
//! blank line before it, so this keeps their messages whole; a writer that omits the blank
//! line between messages is rarer still.
//!
//! Content-Length based dialects (mboxcl, mboxcl2) are read as mboxo: their bodies are not
//! escaped, so a `From ` line after a blank line in a body splits the message. None of the
//! exporters this tool targets writes them.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::date;
use super::message::{header_fields, Flag, Flags, RawMessage};
use super::{MailError, Result};

/// Which escaping convention the file uses; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MboxVariant {
    Mboxo,
    Mboxrd,
}

/// One message read from an mbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MboxMessage {
    /// Byte offset of this message's `From ` line in the file. Stable as long as the file is
    /// not rewritten, so it is the message's source id and the checkpoint: resume with
    /// [`MboxReader::open_after`].
    pub offset: u64,
    /// The separator line after `From ` (envelope sender and date), for reports.
    pub envelope: String,
    /// Bytes un-escaped and without the separator and trailing blank line; flags from the
    /// status headers; internal date from the separator's date.
    pub message: RawMessage,
}

/// One message located in an mbox and measured, its body not held: what a listing needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MboxEntry {
    /// As [`MboxMessage::offset`].
    pub offset: u64,
    /// As [`MboxMessage::envelope`].
    pub envelope: String,
    /// Exact size of the message [`MboxReader::next`] would give (un-escaped, without the
    /// separator's blank line).
    pub size: u64,
    /// Its header section (up to and with the blank line ending it, at most
    /// [`HEAD_MAX`] bytes): identity, subject and flags come from it.
    pub head: Vec<u8>,
    /// Flags from the status headers, as [`MboxMessage::message`]'s.
    pub flags: Flags,
    /// From the separator's date.
    pub internal_date: Option<SystemTime>,
}

/// The most of a header section an [`MboxEntry`] keeps.
pub const HEAD_MAX: usize = 256 * 1024;

/// Streaming mbox reader: holds one message at a time ([`next`](Iterator::next)), or none
/// ([`next_entry`](Self::next_entry), [`body_line`](Self::body_line)).
pub struct MboxReader<R> {
    reader: R,
    variant: MboxVariant,
    path: PathBuf,
    /// File offset of the next byte `reader` will return.
    pos: u64,
    /// The next message's separator, already consumed: (offset, line without line end).
    pending: Option<(u64, Vec<u8>)>,
    /// The message whose body is being read, if one is.
    body: Option<BodyState>,
    line: Vec<u8>,
    started: bool,
    done: bool,
}

/// Where the reading of one message's body stands.
struct BodyState {
    /// The last line read was blank: a `From ` line now separates.
    prev_blank: bool,
    /// A blank line read but not handed out: the separator's, if no other line follows.
    held: Option<&'static [u8]>,
}

impl MboxReader<BufReader<File>> {
    pub fn open(path: impl AsRef<Path>, variant: MboxVariant) -> Result<Self> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| MailError::io(path, e))?;
        Ok(MboxReader::new(BufReader::new(file), variant, path))
    }

    /// Resumes after the message whose `From ` line is at `offset` (a checkpoint from an
    /// earlier run): seeks there, checks that a separator really is there, and skips that
    /// message, so the first item is the one after it. Seeking instead of re-reading keeps a
    /// resume of a 20 GB export instant. A checkpoint that no longer points at a separator
    /// means the file changed since; that is an error, not a guess.
    pub fn open_after(path: impl AsRef<Path>, variant: MboxVariant, offset: u64) -> Result<Self> {
        let mut reader = Self::open_at(path, variant, offset)?;
        // Read past, not held: the settled message may be the largest of the file.
        if let Some(Err(e)) = reader.next_entry() {
            return Err(e);
        }
        Ok(reader)
    }

    /// Opens `path` so that the first message read is the one whose `From ` line starts at
    /// byte `offset` (an offset an earlier read reported). Fails when no `From ` line starts
    /// there: the file changed since.
    pub fn open_at(path: impl AsRef<Path>, variant: MboxVariant, offset: u64) -> Result<Self> {
        let path = path.as_ref();
        let mut file = File::open(path).map_err(|e| MailError::io(path, e))?;
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| MailError::io_at(path, offset, e))?;
        let mut reader = MboxReader::new(BufReader::new(file), variant, path);
        reader.pos = offset;
        reader.started = true;
        let mut line = Vec::new();
        reader.read_line(&mut line)?;
        if !line.starts_with(b"From ") {
            return Err(MailError::Malformed {
                path: path.to_owned(),
                offset,
                reason: "checkpoint does not point at a `From ` separator line; \
                         the mbox changed since the checkpoint was taken"
                    .into(),
            });
        }
        reader.pending = Some((offset, chomp(&line).to_vec()));
        Ok(reader)
    }
}

fn chomp(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn is_blank(line: &[u8]) -> bool {
    chomp(line).is_empty()
}

/// A separator line's envelope (after `From `) and the date in it.
fn envelope_of(separator: &[u8]) -> (String, Option<SystemTime>) {
    let envelope = String::from_utf8_lossy(&separator[5..]).trim().to_owned();
    let date = date::parse_asctime_anywhere(&envelope);
    (envelope, date)
}

impl<R: BufRead> MboxReader<R> {
    /// Reads from any buffered source; `path` only names it in errors.
    pub fn new(reader: R, variant: MboxVariant, path: impl Into<PathBuf>) -> Self {
        MboxReader {
            reader,
            variant,
            path: path.into(),
            pos: 0,
            pending: None,
            body: None,
            line: Vec::new(),
            started: false,
            done: false,
        }
    }

    /// Reads one line including its `\n` into `buf` (cleared first); returns its offset.
    fn read_line(&mut self, buf: &mut Vec<u8>) -> Result<u64> {
        buf.clear();
        let start = self.pos;
        loop {
            match self.reader.read_until(b'\n', buf) {
                Ok(n) => {
                    self.pos += n as u64;
                    return Ok(start);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.done = true;
                    return Err(MailError::io_at(&self.path, self.pos, e));
                }
            }
        }
    }

    fn find_first_separator(&mut self) -> Result<()> {
        self.started = true;
        let mut line = Vec::new();
        loop {
            let offset = self.read_line(&mut line)?;
            if line.is_empty() {
                return Ok(()); // empty file (or only blank lines): no messages
            }
            if is_blank(&line) {
                continue;
            }
            if line.starts_with(b"From ") {
                self.pending = Some((offset, chomp(&line).to_vec()));
                return Ok(());
            }
            return Err(MailError::Malformed {
                path: self.path.clone(),
                offset,
                reason: "not an mbox file: expected a `From ` separator line".into(),
            });
        }
    }

    fn unescape<'a>(&self, line: &'a [u8]) -> &'a [u8] {
        let quoted = match self.variant {
            MboxVariant::Mboxrd => {
                let n = line.iter().take_while(|&&b| b == b'>').count();
                n > 0 && line[n..].starts_with(b"From ")
            }
            MboxVariant::Mboxo => line.starts_with(b">From "),
        };
        if quoted {
            &line[1..]
        } else {
            line
        }
    }

    /// Starts reading the next message: its separator `(offset, line)`, or `None` at the end.
    /// Its body then comes from [`body_line`](Self::body_line).
    fn begin_message(&mut self) -> Result<Option<(u64, Vec<u8>)>> {
        if !self.started {
            self.find_first_separator()?;
        }
        self.skip_body()?;
        let Some(pending) = self.pending.take() else {
            self.done = true;
            return Ok(None);
        };
        self.body = Some(BodyState {
            prev_blank: false,
            held: None,
        });
        Ok(Some(pending))
    }

    /// Reads past the rest of a body begun and not read to its end.
    fn skip_body(&mut self) -> Result<()> {
        let mut skipped = Vec::new();
        while self.body.is_some() {
            skipped.clear();
            self.body_line(&mut skipped)?;
        }
        Ok(())
    }

    /// Starts reading the body of the message whose `From ` line is at `offset`, at or after
    /// where the reader is (earlier messages are read past, not held), for
    /// [`body_line`](Self::body_line); `Ok(false)` when no message starts there.
    pub fn begin(&mut self, offset: u64) -> Result<bool> {
        loop {
            if !self.started {
                self.find_first_separator()?;
            }
            self.skip_body()?;
            match &self.pending {
                Some((at, _)) if *at <= offset => {
                    let at = *at;
                    self.begin_message()?;
                    if at == offset {
                        return Ok(true);
                    }
                }
                _ => return Ok(false),
            }
        }
    }

    /// Appends the current message's next body line, un-escaped, to `out` (after a blank
    /// line held back: the last line of a message is the separator's blank line, dropped);
    /// `Ok(false)` at the message's end, with nothing appended. Lines are as long as the
    /// file makes them.
    pub fn body_line(&mut self, out: &mut Vec<u8>) -> Result<bool> {
        let mut line = std::mem::take(&mut self.line);
        let result = self.body_line_with(&mut line, out);
        self.line = line;
        result
    }

    fn body_line_with(&mut self, line: &mut Vec<u8>, out: &mut Vec<u8>) -> Result<bool> {
        loop {
            let Some(prev_blank) = self.body.as_ref().map(|b| b.prev_blank) else {
                return Ok(false);
            };
            let line_offset = match self.read_line(line) {
                Ok(offset) => offset,
                Err(e) => {
                    self.body = None;
                    return Err(e);
                }
            };
            let separator = prev_blank && line.starts_with(b"From ");
            if line.is_empty() || separator {
                // The message's end; a blank line still held was the separator's.
                if separator {
                    self.pending = Some((line_offset, chomp(line).to_vec()));
                } else {
                    self.done = true;
                }
                self.body = None;
                return Ok(false);
            }
            // A blank line is held back until another line shows it is not the last.
            let blank_line: Option<&'static [u8]> = match line.as_slice() {
                b"\n" => Some(b"\n"),
                b"\r\n" => Some(b"\r\n"),
                _ => None,
            };
            let is_blank = is_blank(line);
            let Some(state) = self.body.as_mut() else {
                return Ok(false);
            };
            state.prev_blank = is_blank;
            let earlier = std::mem::replace(&mut state.held, blank_line);
            if earlier.is_none() && blank_line.is_some() {
                continue;
            }
            if let Some(held) = earlier {
                out.extend_from_slice(held);
            }
            if blank_line.is_none() {
                let line: &[u8] = line;
                out.extend_from_slice(self.unescape(line));
            }
            return Ok(true);
        }
    }

    fn read_message(&mut self) -> Result<Option<MboxMessage>> {
        let Some((offset, separator)) = self.begin_message()? else {
            return Ok(None);
        };
        let mut bytes = Vec::new();
        while self.body_line(&mut bytes)? {}
        let (envelope, internal_date) = envelope_of(&separator);
        let flags = flags_from_headers(&bytes);
        Ok(Some(MboxMessage {
            offset,
            envelope,
            message: RawMessage::new(bytes)
                .with_flags(flags)
                .with_internal_date(internal_date),
        }))
    }

    /// The next message located and measured, its body read but not held: an
    /// [`MboxEntry`]; `None` after the last.
    pub fn next_entry(&mut self) -> Option<Result<MboxEntry>> {
        if self.done && self.pending.is_none() && self.body.is_none() {
            return None;
        }
        match self.scan_message() {
            Ok(Some(entry)) => Some(Ok(entry)),
            Ok(None) => None,
            Err(e) => {
                self.done = true;
                self.pending = None;
                self.body = None;
                Some(Err(e))
            }
        }
    }

    fn scan_message(&mut self) -> Result<Option<MboxEntry>> {
        let Some((offset, separator)) = self.begin_message()? else {
            return Ok(None);
        };
        let mut head = Vec::new();
        let mut in_head = true;
        let mut size = 0u64;
        let mut line = Vec::new();
        loop {
            line.clear();
            if !self.body_line(&mut line)? {
                break;
            }
            size += line.len() as u64;
            if in_head {
                let from = head.len().saturating_sub(3);
                head.extend_from_slice(&line[..line.len().min(HEAD_MAX - head.len())]);
                let tail = &head[from..];
                in_head = head.len() < HEAD_MAX
                    && !(head.starts_with(b"\n")
                        || head.starts_with(b"\r\n")
                        || tail.windows(2).any(|w| w == b"\n\n")
                        || tail.windows(3).any(|w| w == b"\n\r\n"));
            }
        }
        let (envelope, internal_date) = envelope_of(&separator);
        Ok(Some(MboxEntry {
            offset,
            internal_date,
            envelope,
            size,
            flags: flags_from_headers(&head),
            head,
        }))
    }
}

impl<R: BufRead> Iterator for MboxReader<R> {
    type Item = Result<MboxMessage>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done && self.pending.is_none() {
            return None;
        }
        match self.read_message() {
            Ok(Some(m)) => Some(Ok(m)),
            Ok(None) => None,
            Err(e) => {
                self.done = true;
                self.pending = None;
                Some(Err(e))
            }
        }
    }
}

/// Flags that mail clients store inside mbox messages, since the format has nowhere else:
///
/// * `Status:` (`R` read) and `X-Status:` (`A` answered, `F` flagged, `T` draft, `D` deleted),
///   written by mutt, Dovecot, UW-IMAP and Apple Mail;
/// * `X-Mozilla-Status:` (hex bits: 0x1 read, 0x2 replied, 0x4 marked, 0x8 expunged,
///   0x1000 forwarded) and `X-Mozilla-Keys:` (tags), written by Thunderbird;
/// * `X-Keywords:` (Dovecot's mbox keywords).
///
/// Thunderbird's expunged bit means "deleted but not yet compacted away"; it maps to
/// `Deleted` so the engine can choose to skip such messages rather than resurrect them.
/// The union of all sources is taken: a message carries at most one family in practice.
pub fn flags_from_headers(bytes: &[u8]) -> Flags {
    let mut flags = Flags::new();
    for field in header_fields(bytes) {
        let name = field.name;
        let value = &field.value;
        if name.eq_ignore_ascii_case(b"Status") {
            if value.contains(&b'R') {
                flags.insert(Flag::Seen);
            }
        } else if name.eq_ignore_ascii_case(b"X-Status") {
            for &c in value {
                match c {
                    b'A' => flags.insert(Flag::Answered),
                    b'F' => flags.insert(Flag::Flagged),
                    b'T' => flags.insert(Flag::Draft),
                    b'D' => flags.insert(Flag::Deleted),
                    _ => {}
                }
            }
        } else if name.eq_ignore_ascii_case(b"X-Mozilla-Status") {
            let text = String::from_utf8_lossy(value);
            if let Ok(bits) = u32::from_str_radix(text.trim(), 16) {
                for (bit, flag) in [
                    (0x1, Flag::Seen),
                    (0x2, Flag::Answered),
                    (0x4, Flag::Flagged),
                    (0x8, Flag::Deleted),
                ] {
                    if bits & bit != 0 {
                        flags.insert(flag);
                    }
                }
                if bits & 0x1000 != 0 {
                    flags.insert_keyword("$Forwarded");
                }
            }
        } else if name.eq_ignore_ascii_case(b"X-Mozilla-Keys")
            || name.eq_ignore_ascii_case(b"X-Keywords")
        {
            let text = String::from_utf8_lossy(value);
            for kw in text.split(|c: char| c == ',' || c.is_whitespace()) {
                flags.insert_keyword(kw);
            }
        }
    }
    flags
}

/// mboxrd writer. Message bytes are written unchanged apart from `>` escaping, which the
/// reader undoes, so write→read is byte-exact for every message that ends with a line end
/// (every RFC 5322 message does). A message without a final line end gets one: mbox cannot
/// represent a partial last line, since the separator's blank line must start a line.
///
/// Flags are not written: they would have to be added as headers, which rewrites the message.
/// Callers that need flags in an mbox put `Status:`/`X-Status:` into the bytes themselves
/// (the corpus generator does).
pub struct MboxWriter<W: Write> {
    inner: W,
    pos: u64,
}

impl MboxWriter<BufWriter<File>> {
    /// Creates (or truncates) `path`.
    pub fn create(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = File::create(path).map_err(|e| MailError::io(path, e))?;
        Ok(MboxWriter::new(BufWriter::new(file)))
    }
}

impl<W: Write> MboxWriter<W> {
    pub fn new(inner: W) -> Self {
        MboxWriter { inner, pos: 0 }
    }

    /// Writes one message with envelope sender `MAILER-DAEMON`; returns its offset, the same
    /// value the reader will report for it (when the writer started at the beginning of the
    /// file).
    pub fn write(&mut self, message: &RawMessage) -> io::Result<u64> {
        self.write_with_sender("MAILER-DAEMON", message)
    }

    /// As [`MboxWriter::write`] with an explicit envelope sender (whitespace is replaced, since
    /// the separator is space-delimited). The date written is the internal date, or the epoch
    /// when there is none.
    pub fn write_with_sender(&mut self, sender: &str, message: &RawMessage) -> io::Result<u64> {
        let offset = self.pos;
        let bytes = message.bytes();
        let eol: &[u8] = match bytes.iter().position(|&b| b == b'\n') {
            Some(i) if i > 0 && bytes[i - 1] == b'\r' => b"\r\n",
            _ => b"\n",
        };
        let sender: String = if sender.is_empty() {
            "-".into()
        } else {
            sender
                .chars()
                .map(|c| if c.is_whitespace() { '_' } else { c })
                .collect()
        };
        let when = message.internal_date.unwrap_or(SystemTime::UNIX_EPOCH);
        let separator = format!("From {sender} {}", date::format_asctime(when));
        self.put(separator.as_bytes())?;
        self.put(eol)?;

        let mut rest = bytes;
        while !rest.is_empty() {
            let (line, tail) = match rest.iter().position(|&b| b == b'\n') {
                Some(i) => rest.split_at(i + 1),
                None => (rest, &[][..]),
            };
            let gt = line.iter().take_while(|&&b| b == b'>').count();
            if line[gt..].starts_with(b"From ") {
                self.put(b">")?;
            }
            self.put(line)?;
            rest = tail;
        }
        if !bytes.is_empty() && !bytes.ends_with(b"\n") {
            self.put(eol)?;
        }
        // The blank line uses the message's own final line ending so a CRLF file stays CRLF.
        let blank: &[u8] = if bytes.ends_with(b"\r\n") {
            b"\r\n"
        } else if bytes.ends_with(b"\n") {
            b"\n"
        } else {
            eol
        };
        self.put(blank)?;
        Ok(offset)
    }

    fn put(&mut self, data: &[u8]) -> io::Result<()> {
        self.inner.write_all(data)?;
        self.pos += data.len() as u64;
        Ok(())
    }

    /// Flushes and returns the inner writer. Durability (fsync) is the caller's business: an
    /// mbox written here is test or demo input, not a migration target.
    pub fn finish(mut self) -> io::Result<W> {
        self.inner.flush()?;
        Ok(self.inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(data: &[u8], variant: MboxVariant) -> Vec<MboxMessage> {
        MboxReader::new(data, variant, "test.mbox")
            .collect::<Result<Vec<_>>>()
            .unwrap()
    }

    /// The message's last line, when blank, is the separator's and is dropped; nothing else.
    #[test]
    fn blank_line_handling() {
        for (body, want) in [
            (&b"x\n\n"[..], &b"x\n"[..]),
            (b"x\r\n\r\n", b"x\r\n"),
            (b"x\n", b"x\n"),
            (b"\n", b""),
            (b"x\n\n\n", b"x\n\n"),
            (b"x\n\r", b"x\n\r"),
        ] {
            let mut data = b"From a Mon Jan  2 15:04:05 2023\n".to_vec();
            data.extend_from_slice(body);
            let msgs = read_all(&data, MboxVariant::Mboxrd);
            assert_eq!(msgs[0].message.bytes(), want, "{body:?}");
        }
    }

    #[test]
    fn separator_needs_preceding_blank_line() {
        let data = b"From a Mon Jan  2 15:04:05 2023\nSubject: x\n\nline\nFrom unescaped body line\n\nFrom b Mon Jan  2 15:04:05 2023\n\nsecond\n";
        let msgs = read_all(data, MboxVariant::Mboxo);
        assert_eq!(msgs.len(), 2);
        assert_eq!(
            msgs[0].message.bytes(),
            b"Subject: x\n\nline\nFrom unescaped body line\n"
        );
        assert_eq!(msgs[1].message.bytes(), b"\nsecond\n");
        assert_eq!(msgs[1].envelope, "b Mon Jan  2 15:04:05 2023");
    }

    #[test]
    fn not_an_mbox() {
        let mut r = MboxReader::new(&b"\n\nHello\n"[..], MboxVariant::Mboxrd, "x");
        let err = r.next().unwrap().unwrap_err();
        assert!(err.to_string().contains("x at byte 2"), "{err}");
        assert!(r.next().is_none());
    }

    #[test]
    fn empty_inputs() {
        assert!(read_all(b"", MboxVariant::Mboxrd).is_empty());
        assert!(read_all(b"\n\r\n", MboxVariant::Mboxrd).is_empty());
        let m = read_all(b"From x", MboxVariant::Mboxrd);
        assert_eq!(m.len(), 1);
        assert!(m[0].message.is_empty());
    }
}
