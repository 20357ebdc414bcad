//! The binary autocomplete stream: `.nk2` (major 10) and the Outlook 2010+ stream (major 12)
//! share one layout, so one reader and one writer serve both.
//!
//! The model keeps every byte the format does not give meaning to (reserved words, the value
//! union of variable-size properties, extra information, the footer and any slack after it),
//! because Microsoft asks third parties to preserve them and because a byte-identical
//! round trip is the simplest proof that nothing was lost.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use super::tags::{self, Layout};

/// One parsed autocomplete file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutocompleteFile {
    pub major_version: u32,
    pub minor_version: u32,
    pub rows: Vec<Row>,
    /// Bytes Outlook keeps for minor versions other than 0; opaque to us, preserved.
    pub extra_info: Vec<u8>,
    /// The 8 footer bytes; Outlook writes a FILETIME of the last save here.
    pub footer: [u8; 8],
    /// Whatever follows the footer. Real files carry slack here; keeping it makes an
    /// unmodified file round-trip byte for byte.
    pub trailing: Vec<u8>,
}

/// One recipient: the properties in file order, duplicates included.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Row {
    pub properties: Vec<Property>,
}

/// One property. Fields are private so the value data always matches the tag's type; a
/// mismatch would write a stream that no reader (Outlook included) can walk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Property {
    tag: u32,
    reserved: [u8; 4],
    union: [u8; 8],
    data: ValueData,
}

/// The value data that follows a property's fixed 16 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueData {
    /// Static types: the value lives in the union.
    None,
    /// PT_STRING8, PT_UNICODE, PT_BINARY: the bytes as stored (strings keep their terminator).
    Counted(ValueBytes),
    /// PT_CLSID.
    Guid([u8; 16]),
    /// PT_MV_STRING8, PT_MV_UNICODE, PT_MV_BINARY.
    MultiCounted(Vec<ValueBytes>),
    /// Fixed-size multi-valued types: the values back to back.
    MultiFixed(ValueBytes),
}

/// The bytes of one value. Parsed values share the buffer the file was read into: a
/// 10,000-row stream holds about 100,000 of them, and an allocation each would dominate the
/// parse time.
#[derive(Clone)]
pub struct ValueBytes {
    buffer: Arc<Vec<u8>>,
    start: usize,
    end: usize,
}

impl Deref for ValueBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.buffer.get(self.start..self.end).unwrap_or_default()
    }
}

impl From<Vec<u8>> for ValueBytes {
    fn from(bytes: Vec<u8>) -> Self {
        let end = bytes.len();
        Self {
            buffer: Arc::from(bytes),
            start: 0,
            end,
        }
    }
}

impl From<&[u8]> for ValueBytes {
    fn from(bytes: &[u8]) -> Self {
        Self {
            buffer: Arc::new(bytes.to_vec()),
            start: 0,
            end: bytes.len(),
        }
    }
}

impl PartialEq for ValueBytes {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for ValueBytes {}

impl fmt::Debug for ValueBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl Property {
    /// Builds a property from its parts; `None` when the data does not fit the tag's type.
    pub fn from_parts(
        tag: u32,
        reserved: [u8; 4],
        union: [u8; 8],
        data: ValueData,
    ) -> Option<Self> {
        let fits = match (tags::layout_of(tags::type_of(tag))?, &data) {
            (Layout::Static, ValueData::None)
            | (Layout::Counted, ValueData::Counted(_))
            | (Layout::Guid, ValueData::Guid(_))
            | (Layout::MultiCounted, ValueData::MultiCounted(_)) => true,
            (Layout::MultiFixed(size), ValueData::MultiFixed(bytes)) => bytes.len() % size == 0,
            _ => false,
        };
        fits.then_some(Self {
            tag,
            reserved,
            union,
            data,
        })
    }

    /// A PT_UNICODE property holding `text` with the terminator Outlook writes.
    pub fn unicode(id: u16, text: &str) -> Self {
        let mut bytes: Vec<u8> = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
        bytes.extend_from_slice(&[0, 0]);
        Self::counted(tags::tag(id, tags::PT_UNICODE), bytes)
    }

    /// A PT_BINARY property.
    pub fn binary(id: u16, bytes: Vec<u8>) -> Self {
        Self::counted(tags::tag(id, tags::PT_BINARY), bytes)
    }

    /// A PT_LONG property.
    pub fn long(id: u16, value: i32) -> Self {
        Self::fixed(tags::tag(id, tags::PT_LONG), &value.to_le_bytes())
    }

    /// A PT_ERROR property, as Outlook stores values it could not obtain.
    pub fn error(id: u16, code: u32) -> Self {
        Self::fixed(tags::tag(id, tags::PT_ERROR), &code.to_le_bytes())
    }

    fn fixed(tag: u32, value: &[u8]) -> Self {
        let mut union = [0u8; 8];
        for (slot, byte) in union.iter_mut().zip(value) {
            *slot = *byte;
        }
        Self {
            tag,
            reserved: [0; 4],
            union,
            data: ValueData::None,
        }
    }

    fn counted(tag: u32, bytes: Vec<u8>) -> Self {
        // Outlook leaves the in-memory SBinary/pointer in the union; the byte count in the
        // low half mirrors what it writes for binaries, and readers ignore it anyway.
        let mut union = [0u8; 8];
        let count = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        union[..4].copy_from_slice(&count.to_le_bytes());
        Self {
            tag,
            reserved: [0; 4],
            union,
            data: ValueData::Counted(bytes.into()),
        }
    }

    pub fn tag(&self) -> u32 {
        self.tag
    }

    pub fn id(&self) -> u16 {
        tags::id_of(self.tag)
    }

    pub fn property_type(&self) -> u16 {
        tags::type_of(self.tag)
    }

    pub fn reserved(&self) -> [u8; 4] {
        self.reserved
    }

    pub fn union(&self) -> [u8; 8] {
        self.union
    }

    pub fn data(&self) -> &ValueData {
        &self.data
    }

    /// The text of a PT_UNICODE or PT_STRING8 value, without terminators.
    ///
    /// PT_STRING8 is in the writer's ANSI code page, which the file does not record; Latin-1
    /// decoding keeps ASCII exact (all addresses) and never fails.
    pub fn text(&self) -> Option<String> {
        let ValueData::Counted(bytes) = &self.data else {
            return None;
        };
        match self.property_type() {
            tags::PT_UNICODE => {
                let units = bytes
                    .chunks_exact(2)
                    .map(|pair| u16::from_le_bytes([pair[0], pair[1]]));
                let text = char::decode_utf16(units)
                    .map(|unit| unit.unwrap_or(char::REPLACEMENT_CHARACTER))
                    .collect::<String>();
                Some(text.trim_end_matches('\0').to_owned())
            }
            tags::PT_STRING8 => {
                let text = bytes
                    .iter()
                    .map(|&byte| char::from(byte))
                    .collect::<String>();
                Some(text.trim_end_matches('\0').to_owned())
            }
            _ => None,
        }
    }

    /// The value of a PT_LONG.
    pub fn long_value(&self) -> Option<i32> {
        (self.property_type() == tags::PT_LONG).then(|| {
            i32::from_le_bytes([self.union[0], self.union[1], self.union[2], self.union[3]])
        })
    }

    /// The bytes of a PT_BINARY.
    pub fn binary_value(&self) -> Option<&[u8]> {
        match (&self.data, self.property_type()) {
            (ValueData::Counted(bytes), tags::PT_BINARY) => Some(bytes),
            _ => None,
        }
    }
}

/// Why a stream could not be read. Row and property numbers count from 1, as a person would
/// when comparing against a hex dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub offset: usize,
    pub row: Option<usize>,
    pub property: Option<usize>,
    pub tag: Option<u32>,
    pub expected: Expected,
}

/// What the reader expected at the failing offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// `needed` bytes of `what`; only `available` remained.
    Bytes {
        what: &'static str,
        needed: u64,
        available: usize,
    },
    Signature {
        found: u32,
    },
    KnownMajorVersion {
        found: u32,
    },
    KnownPropertyType {
        found: u16,
    },
}

impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expected::Bytes { what, needed, available } => {
                write!(f, "expected {what} ({needed} bytes), but only {available} bytes remain")
            }
            Expected::Signature { found } => write!(
                f,
                "expected the autocomplete signature 0x{:08X}, found 0x{found:08X} (not an .nk2 or Stream_Autocomplete file)",
                tags::SIGNATURE
            ),
            Expected::KnownMajorVersion { found } => write!(
                f,
                "expected major version {} (.nk2) or {} (Outlook 2010+ stream), found {found}; a stream of unknown version is neither read nor rewritten",
                tags::MAJOR_NK2,
                tags::MAJOR_STREAM
            ),
            Expected::KnownPropertyType { found } => write!(
                f,
                "expected a property type whose size the format defines, found 0x{found:04X}; the rest of the row cannot be located"
            ),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.row, self.property) {
            (Some(row), Some(property)) => write!(f, "row {row}, property {property}")?,
            (Some(row), None) => write!(f, "row {row}")?,
            _ => write!(f, "header/footer")?,
        }
        if let Some(tag) = self.tag {
            write!(f, " (tag 0x{tag:08X})")?;
        }
        write!(
            f,
            ", byte offset {} (0x{:X}): {}",
            self.offset, self.offset, self.expected
        )
    }
}

impl std::error::Error for ParseError {}

/// Why a model could not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    #[error("refusing to write major version {0}: only {maj_nk2} (.nk2) and {maj_stream} (stream) have a known layout", maj_nk2 = tags::MAJOR_NK2, maj_stream = tags::MAJOR_STREAM)]
    UnknownMajorVersion(u32),
    #[error("{0} does not fit the format's 32-bit length field")]
    TooLarge(&'static str),
}

struct Reader<'a> {
    bytes: &'a [u8],
    /// The same bytes, shared by every value parsed from them.
    shared: Arc<Vec<u8>>,
    offset: usize,
    row: Option<usize>,
    property: Option<usize>,
    tag: Option<u32>,
}

impl<'a> Reader<'a> {
    fn fail(&self, expected: Expected) -> ParseError {
        ParseError {
            offset: self.offset,
            row: self.row,
            property: self.property,
            tag: self.tag,
            expected,
        }
    }

    fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.offset)
    }

    fn take(&mut self, needed: u64, what: &'static str) -> Result<&'a [u8], ParseError> {
        let available = self.remaining();
        let end = usize::try_from(needed)
            .ok()
            .and_then(|n| self.offset.checked_add(n));
        let Some(slice) = end.and_then(|end| self.bytes.get(self.offset..end)) else {
            return Err(self.fail(Expected::Bytes {
                what,
                needed,
                available,
            }));
        };
        self.offset += slice.len();
        Ok(slice)
    }

    fn take_shared(&mut self, needed: u64, what: &'static str) -> Result<ValueBytes, ParseError> {
        let start = self.offset;
        let slice = self.take(needed, what)?;
        Ok(ValueBytes {
            buffer: Arc::clone(&self.shared),
            start,
            end: start + slice.len(),
        })
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], ParseError> {
        let slice = self.take(N as u64, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Ok(out)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, ParseError> {
        self.array::<4>(what).map(u32::from_le_bytes)
    }

    /// A count read from the file is attacker-controlled: reserve no more than the remaining
    /// bytes could possibly hold, so a bogus count cannot exhaust memory before it fails.
    fn capacity_for(&self, count: u32, min_item_size: usize) -> usize {
        (count as usize).min(self.remaining() / min_item_size.max(1))
    }
}

/// Parses an autocomplete stream of either version.
pub fn parse(bytes: &[u8]) -> Result<AutocompleteFile, ParseError> {
    parse_owned(bytes.to_vec())
}

/// Parses a stream already in an owned buffer, which the parsed values then share instead of
/// copying (what [`super::read_file`] does).
pub fn parse_owned(buffer: Vec<u8>) -> Result<AutocompleteFile, ParseError> {
    let shared = Arc::new(buffer);
    let bytes: &[u8] = &shared;
    let mut reader = Reader {
        bytes,
        shared: Arc::clone(&shared),
        offset: 0,
        row: None,
        property: None,
        tag: None,
    };
    let signature = reader.u32("the signature")?;
    if signature != tags::SIGNATURE {
        reader.offset = 0;
        return Err(reader.fail(Expected::Signature { found: signature }));
    }
    let major_version = reader.u32("the major version")?;
    if major_version != tags::MAJOR_NK2 && major_version != tags::MAJOR_STREAM {
        reader.offset = 4;
        return Err(reader.fail(Expected::KnownMajorVersion {
            found: major_version,
        }));
    }
    let minor_version = reader.u32("the minor version")?;
    let row_count = reader.u32("the row count")?;
    let mut rows = Vec::with_capacity(reader.capacity_for(row_count, 4));
    for row_index in 0..row_count as usize {
        reader.row = Some(row_index + 1);
        rows.push(parse_row(&mut reader)?);
    }
    reader.row = None;
    reader.property = None;
    reader.tag = None;
    let extra_count = reader.u32("the extra information byte count")?;
    let extra_info = reader
        .take(u64::from(extra_count), "the extra information")?
        .to_vec();
    let footer = reader.array::<8>("the 8-byte footer (last-written FILETIME)")?;
    let trailing = bytes.get(reader.offset..).unwrap_or_default().to_vec();
    Ok(AutocompleteFile {
        major_version,
        minor_version,
        rows,
        extra_info,
        footer,
        trailing,
    })
}

fn parse_row(reader: &mut Reader<'_>) -> Result<Row, ParseError> {
    reader.property = None;
    reader.tag = None;
    let property_count = reader.u32("the row's property count")?;
    let mut properties = Vec::with_capacity(reader.capacity_for(property_count, 16));
    for property_index in 0..property_count as usize {
        reader.property = Some(property_index + 1);
        reader.tag = None;
        properties.push(parse_property(reader)?);
    }
    Ok(Row { properties })
}

fn parse_property(reader: &mut Reader<'_>) -> Result<Property, ParseError> {
    let tag_offset = reader.offset;
    let tag = reader.u32("a property tag")?;
    reader.tag = Some(tag);
    let Some(layout) = tags::layout_of(tags::type_of(tag)) else {
        reader.offset = tag_offset;
        return Err(reader.fail(Expected::KnownPropertyType {
            found: tags::type_of(tag),
        }));
    };
    let reserved = reader.array::<4>("the property's reserved bytes")?;
    let union = reader.array::<8>("the property's 8-byte value")?;
    let data = match layout {
        Layout::Static => ValueData::None,
        Layout::Counted => {
            let count = reader.u32("the value's byte count")?;
            ValueData::Counted(reader.take_shared(u64::from(count), "the value data")?)
        }
        Layout::Guid => ValueData::Guid(reader.array::<16>("a 16-byte GUID")?),
        Layout::MultiCounted => {
            let count = reader.u32("the multi-value count")?;
            let mut values = Vec::with_capacity(reader.capacity_for(count, 4));
            for _ in 0..count {
                let length = reader.u32("a multi-value element's byte count")?;
                values.push(reader.take_shared(u64::from(length), "a multi-value element")?);
            }
            ValueData::MultiCounted(values)
        }
        Layout::MultiFixed(size) => {
            let count = reader.u32("the multi-value count")?;
            let needed = u64::from(count) * size as u64;
            ValueData::MultiFixed(reader.take_shared(needed, "the multi-value elements")?)
        }
    };
    Ok(Property {
        tag,
        reserved,
        union,
        data,
    })
}

impl AutocompleteFile {
    /// An empty file of the given version with a zero footer.
    pub fn new(major_version: u32, minor_version: u32) -> Self {
        Self {
            major_version,
            minor_version,
            rows: Vec::new(),
            extra_info: Vec::new(),
            footer: [0; 8],
            trailing: Vec::new(),
        }
    }

    /// Serialises the file. Refuses majors whose layout is unknown, per Microsoft's guidance.
    pub fn to_bytes(&self) -> Result<Vec<u8>, WriteError> {
        if self.major_version != tags::MAJOR_NK2 && self.major_version != tags::MAJOR_STREAM {
            return Err(WriteError::UnknownMajorVersion(self.major_version));
        }
        let mut out = Vec::with_capacity(self.estimated_size());
        out.extend_from_slice(&tags::SIGNATURE.to_le_bytes());
        out.extend_from_slice(&self.major_version.to_le_bytes());
        out.extend_from_slice(&self.minor_version.to_le_bytes());
        put_count(&mut out, self.rows.len(), "the row count")?;
        for row in &self.rows {
            put_count(&mut out, row.properties.len(), "a row's property count")?;
            for property in &row.properties {
                write_property(&mut out, property)?;
            }
        }
        put_count(&mut out, self.extra_info.len(), "the extra information")?;
        out.extend_from_slice(&self.extra_info);
        out.extend_from_slice(&self.footer);
        out.extend_from_slice(&self.trailing);
        Ok(out)
    }

    fn estimated_size(&self) -> usize {
        let rows: usize = self
            .rows
            .iter()
            .map(|row| {
                4 + row
                    .properties
                    .iter()
                    .map(|p| {
                        16 + match &p.data {
                            ValueData::None => 0,
                            ValueData::Counted(bytes) => 4 + bytes.len(),
                            ValueData::Guid(_) => 16,
                            ValueData::MultiCounted(values) => {
                                4 + values.iter().map(|v| 4 + v.len()).sum::<usize>()
                            }
                            ValueData::MultiFixed(bytes) => 4 + bytes.len(),
                        }
                    })
                    .sum::<usize>()
            })
            .sum();
        16 + rows + 4 + self.extra_info.len() + 8 + self.trailing.len()
    }

    /// The footer read as a FILETIME (100 ns ticks since 1601-01-01 UTC).
    pub fn last_written_filetime(&self) -> u64 {
        u64::from_le_bytes(self.footer)
    }
}

fn put_count(out: &mut Vec<u8>, count: usize, what: &'static str) -> Result<(), WriteError> {
    let count = u32::try_from(count).map_err(|_| WriteError::TooLarge(what))?;
    out.extend_from_slice(&count.to_le_bytes());
    Ok(())
}

fn write_property(out: &mut Vec<u8>, property: &Property) -> Result<(), WriteError> {
    out.extend_from_slice(&property.tag.to_le_bytes());
    out.extend_from_slice(&property.reserved);
    out.extend_from_slice(&property.union);
    match &property.data {
        ValueData::None => {}
        ValueData::Counted(bytes) => {
            put_count(out, bytes.len(), "a property value")?;
            out.extend_from_slice(bytes);
        }
        ValueData::Guid(guid) => out.extend_from_slice(guid),
        ValueData::MultiCounted(values) => {
            put_count(out, values.len(), "a multi-value count")?;
            for value in values {
                put_count(out, value.len(), "a multi-value element")?;
                out.extend_from_slice(value);
            }
        }
        ValueData::MultiFixed(bytes) => {
            let size = match tags::layout_of(property.property_type()) {
                Some(Layout::MultiFixed(size)) => size,
                _ => 1,
            };
            put_count(out, bytes.len() / size, "a multi-value count")?;
            out.extend_from_slice(bytes);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal(major: u32) -> Vec<u8> {
        let mut bytes = Vec::new();
        for word in [tags::SIGNATURE, major, 0, 0, 0] {
            bytes.extend_from_slice(&word.to_le_bytes());
        }
        bytes.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        bytes
    }

    #[test]
    fn empty_stream_round_trips() {
        let bytes = minimal(12);
        let file = parse(&bytes).expect("parses");
        assert_eq!(file.rows.len(), 0);
        assert_eq!(file.to_bytes().expect("writes"), bytes);
    }

    #[test]
    fn unknown_major_is_refused_on_read_and_write() {
        let err = parse(&minimal(13)).expect_err("refused");
        assert_eq!(err.expected, Expected::KnownMajorVersion { found: 13 });
        assert_eq!(err.offset, 4);
        assert!(AutocompleteFile::new(13, 0).to_bytes().is_err());
    }

    #[test]
    fn huge_row_count_fails_without_allocating() {
        let mut bytes = minimal(12);
        bytes[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        let err = parse(&bytes).expect_err("truncated");
        assert!(err.row.is_some(), "{err}");
    }

    #[test]
    fn error_names_row_offset_and_expectation() {
        let mut bytes = Vec::new();
        for word in [tags::SIGNATURE, 12, 0, 1, 1, 0x3001_001F, 0, 0, 0, 100] {
            bytes.extend_from_slice(&word.to_le_bytes());
        }
        let err = parse(&bytes).expect_err("truncated");
        assert_eq!(
            err.to_string(),
            "row 1, property 1 (tag 0x3001001F), byte offset 40 (0x28): expected the value data (100 bytes), but only 0 bytes remain"
        );
    }

    #[test]
    fn unknown_property_type_is_reported_at_its_tag() {
        let mut bytes = Vec::new();
        for word in [tags::SIGNATURE, 10, 1, 1, 1, 0x1234_00FB] {
            bytes.extend_from_slice(&word.to_le_bytes());
        }
        let err = parse(&bytes).expect_err("unknown type");
        assert_eq!(err.offset, 20);
        assert_eq!(err.expected, Expected::KnownPropertyType { found: 0x00FB });
    }

    #[test]
    fn from_parts_rejects_data_that_does_not_fit_the_type() {
        assert!(Property::from_parts(0x3001_001F, [0; 4], [0; 8], ValueData::None).is_none());
        assert!(Property::from_parts(
            0x1234_1003,
            [0; 4],
            [0; 8],
            ValueData::MultiFixed(vec![0; 3].into())
        )
        .is_none());
        assert!(Property::from_parts(
            0x1234_1003,
            [0; 4],
            [0; 8],
            ValueData::MultiFixed(vec![0; 8].into())
        )
        .is_some());
    }
}
