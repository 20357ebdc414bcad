//! A converted message as a template: its bytes, with holes where large attachment data goes
//! ([`PropValue::Stream`](super::PropValue::Stream)). The template is small (headers, text
//! bodies, small attachments); its exact size is known before anything is written, because
//! each hole's data was measured and its base64 length follows from that; and it is written
//! out piece by piece, each hole filled block by block from the file. So a 30 MB attachment
//! goes from the PST into an IMAP APPEND literal without ever being held whole.
//!
//! The MIME tree is still composed by `mail-builder` (`convert`): a hole is a part whose body
//! is a unique token, marked `Content-Transfer-Encoding: base64`, which makes mail-builder
//! write the body as given. [`TemplateWriter`], the sink mail-builder writes to, recognizes
//! each token and records the hole instead. Holes are encoded with the engine mail-builder
//! itself uses (`encodify`'s MIME base64: 76 columns, CRLF after every line), fed whole lines
//! of input, so a filled hole is byte for byte what mail-builder writes for the same data held
//! in memory (a test keeps it so).

use encodify::base64::MIME;

use super::error::Result;
use super::ndb::{Ndb, StreamRef};

/// Input bytes per base64 line (76 columns).
const LINE_INPUT: usize = 57;

/// One stretch of a template.
#[derive(Debug, Clone)]
pub(crate) enum Segment {
    /// Bytes written as they are.
    Bytes(Vec<u8>),
    /// A stream of the file, written base64-encoded.
    Base64(StreamRef),
}

impl Segment {
    fn size(&self) -> u64 {
        match self {
            Segment::Bytes(b) => b.len() as u64,
            Segment::Base64(stream) => base64_len(stream.size),
        }
    }
}

/// Length of the MIME base64 encoding of `n` bytes, line ends included.
fn base64_len(n: u64) -> u64 {
    let lines = n / LINE_INPUT as u64;
    let rest = (n % LINE_INPUT as u64) as usize;
    lines * MIME.encoded_len(LINE_INPUT) as u64 + MIME.encoded_len(rest) as u64
}

/// See the module documentation.
#[derive(Debug, Clone, Default)]
pub(crate) struct Template {
    segments: Vec<Segment>,
}

impl Template {
    /// Exact size of the message once written.
    pub fn size(&self) -> u64 {
        self.segments.iter().map(Segment::size).sum()
    }

    /// Whether any hole needs the file.
    pub fn has_holes(&self) -> bool {
        self.segments
            .iter()
            .any(|s| matches!(s, Segment::Base64(_)))
    }

    /// Whether any byte outside the holes is 8-bit (holes are base64: 7-bit).
    pub fn has_8bit(&self) -> bool {
        self.segments.iter().any(|s| match s {
            Segment::Bytes(b) => b.iter().any(|c| *c >= 0x80),
            Segment::Base64(_) => false,
        })
    }

    /// The bytes of a template without holes.
    pub fn into_plain(self) -> Option<Vec<u8>> {
        if self.has_holes() {
            return None;
        }
        let mut out = Vec::with_capacity(self.size() as usize);
        for segment in self.segments {
            if let Segment::Bytes(b) = segment {
                out.extend_from_slice(&b);
            }
        }
        Some(out)
    }

    /// The whole message in memory.
    pub fn render(self, ndb: &Ndb) -> Result<Vec<u8>> {
        let size = self.size();
        let mut out = Vec::with_capacity(size as usize);
        let mut reader = TemplateReader::new(self);
        reader.fill(ndb, &mut out, usize::MAX)?;
        Ok(out)
    }
}

/// Writes a [`Template`] out piece by piece, holding at most one block of a hole's data (and
/// its encoding) at a time.
#[derive(Debug)]
pub(crate) struct TemplateReader {
    segments: std::vec::IntoIter<Segment>,
    current: Option<Current>,
    size: u64,
}

#[derive(Debug)]
enum Current {
    Bytes {
        bytes: Vec<u8>,
        at: usize,
    },
    Hole {
        stream: StreamRef,
        next_leaf: usize,
        /// Input read but not yet encoded: less than a line's worth, until the last leaf.
        carry: Vec<u8>,
        /// Encoded, not yet written.
        encoded: Vec<u8>,
        at: usize,
        read: u64,
    },
}

impl TemplateReader {
    pub fn new(template: Template) -> TemplateReader {
        TemplateReader {
            size: template.size(),
            segments: template.segments.into_iter(),
            current: None,
        }
    }

    /// Exact size of everything this reader writes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether everything was written.
    pub fn is_done(&self) -> bool {
        self.current.is_none() && self.segments.len() == 0
    }

    /// Appends up to `limit` next bytes to `out`; `Ok(false)` when there were none left. A
    /// block that cannot be read now (or a file changed since the holes were measured) is an
    /// error: what was written so far is not a message.
    pub fn fill(&mut self, ndb: &Ndb, out: &mut Vec<u8>, limit: usize) -> Result<bool> {
        debug_assert!(limit > 0, "a piece of no bytes says nothing");
        let start = out.len();
        while out.len() - start < limit {
            let room = limit - (out.len() - start);
            let current = match &mut self.current {
                Some(c) => c,
                None => match self.segments.next() {
                    None => break,
                    Some(Segment::Bytes(bytes)) => {
                        self.current.insert(Current::Bytes { bytes, at: 0 })
                    }
                    Some(Segment::Base64(stream)) => self.current.insert(Current::Hole {
                        stream,
                        next_leaf: 0,
                        carry: Vec::new(),
                        encoded: Vec::new(),
                        at: 0,
                        read: 0,
                    }),
                },
            };
            let finished = match current {
                Current::Bytes { bytes, at } => {
                    let n = room.min(bytes.len() - *at);
                    out.extend_from_slice(&bytes[*at..*at + n]);
                    *at += n;
                    *at == bytes.len()
                }
                Current::Hole {
                    stream,
                    next_leaf,
                    carry,
                    encoded,
                    at,
                    read,
                } => {
                    if *at < encoded.len() {
                        let n = room.min(encoded.len() - *at);
                        out.extend_from_slice(&encoded[*at..*at + n]);
                        *at += n;
                        false
                    } else if let Some(leaf) = stream.leaves.get(*next_leaf) {
                        let block = ndb.block(*leaf)?;
                        *read += block.data.len() as u64;
                        *next_leaf += 1;
                        if *read > stream.size {
                            return Err(changed(ndb, block.offset, *read, stream.size));
                        }
                        carry.extend_from_slice(&block.data);
                        // Whole lines only, so the lines fall where one encoding of all the
                        // data would put them; the last leaf takes the rest.
                        let last = *next_leaf == stream.leaves.len();
                        let take = if last {
                            carry.len()
                        } else {
                            carry.len() / LINE_INPUT * LINE_INPUT
                        };
                        encoded.clear();
                        *at = 0;
                        MIME.encode_append(&carry[..take], encoded);
                        carry.drain(..take);
                        false
                    } else if *read != stream.size {
                        return Err(changed(ndb, 0, *read, stream.size));
                    } else {
                        true
                    }
                }
            };
            if finished {
                self.current = None;
            }
        }
        Ok(out.len() > start)
    }
}

/// Attachment data read back (`read` bytes so far, at `offset`) other than it was measured.
fn changed(ndb: &Ndb, offset: u64, read: u64, measured: u64) -> super::error::PstError {
    ndb.site(offset).corrupt(
        "attachment data",
        format!("{read} bytes where {measured} were measured: the file changed"),
    )
}

/// The sink `mail-builder` writes a message to: records bytes, and a hole wherever a token
/// from [`Holes`] is written (see the module documentation).
pub(crate) struct TemplateWriter<'h> {
    holes: &'h mut Holes,
    segments: Vec<Segment>,
    current: Vec<u8>,
}

impl<'h> TemplateWriter<'h> {
    pub fn new(holes: &'h mut Holes) -> Self {
        TemplateWriter {
            holes,
            segments: Vec::new(),
            current: Vec::new(),
        }
    }

    pub fn finish(mut self) -> Template {
        debug_assert!(
            self.holes.all_taken(),
            "a hole's token was not written once"
        );
        if !self.current.is_empty() {
            self.segments.push(Segment::Bytes(self.current));
        }
        Template {
            segments: self.segments,
        }
    }
}

impl mail_builder::Writer for TemplateWriter<'_> {
    fn write(&mut self, bytes: &[u8]) {
        if let Some(filling) = self.holes.take(bytes) {
            if !self.current.is_empty() {
                self.segments
                    .push(Segment::Bytes(std::mem::take(&mut self.current)));
            }
            for segment in filling.segments {
                match segment {
                    Segment::Bytes(b) => self.current.extend_from_slice(&b),
                    hole @ Segment::Base64(_) => {
                        if !self.current.is_empty() {
                            self.segments
                                .push(Segment::Bytes(std::mem::take(&mut self.current)));
                        }
                        self.segments.push(hole);
                    }
                }
            }
            return;
        }
        self.current.extend_from_slice(bytes);
    }
}

/// Tokens standing for holes while mail-builder writes the MIME tree. A token is never in the
/// output, so it can be random: 128 bits drawn per message, which no content of the file can
/// forge (a text part is written as it is, NULs and all; a token derived from the file could
/// be planted in one, and take another part's data).
pub(crate) struct Holes {
    nonce: String,
    waiting: Vec<(Vec<u8>, Template)>,
}

impl Holes {
    pub fn new() -> Holes {
        Holes {
            nonce: format!("{:016x}{:016x}", random_u64(), random_u64()),
            waiting: Vec::new(),
        }
    }

    /// A token for a part body: writing it writes `filling` (base64 data, or an embedded
    /// message's own template) in its place.
    pub fn token(&mut self, filling: Template) -> Vec<u8> {
        let token = format!("\0cutover-hole-{}-{}\0", self.nonce, self.waiting.len()).into_bytes();
        self.waiting.push((token.clone(), filling));
        token
    }

    /// Whether every token was written, once: a token written never or twice is a part lost
    /// or duplicated.
    fn all_taken(&self) -> bool {
        self.waiting.iter().all(|(token, _)| token.is_empty())
    }

    /// A token for `stream`'s data, base64-encoded.
    pub fn base64(&mut self, stream: StreamRef) -> Vec<u8> {
        self.token(Template {
            segments: vec![Segment::Base64(stream)],
        })
    }

    /// The filling of the token `bytes` is, if it is one not taken yet; it is taken.
    fn take(&mut self, bytes: &[u8]) -> Option<Template> {
        if !bytes.starts_with(b"\0cutover-hole-") {
            return None;
        }
        let i = self.waiting.iter().position(|(t, _)| t == bytes)?;
        self.waiting[i].0.clear();
        Some(std::mem::take(&mut self.waiting[i].1))
    }
}

/// 64 random bits from the standard library's per-process random hash keys (no other source
/// of randomness is needed for tokens that only have to be unguessable from the file).
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_lengths_are_those_of_the_engine() {
        for n in [0usize, 1, 2, 3, 56, 57, 58, 113, 114, 115, 8176, 100_000] {
            let data = vec![0xA5u8; n];
            let mut encoded = Vec::new();
            MIME.encode_append(&data, &mut encoded);
            assert_eq!(base64_len(n as u64), encoded.len() as u64, "{n} bytes");
        }
    }
}
