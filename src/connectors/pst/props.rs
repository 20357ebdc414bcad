//! MAPI property types and values (MS-OXCDATA 2.11), and the property ids this reader uses.

use super::error::{le_u16, le_u32};

/// A property type (`wPropType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PropType(pub u16);

impl PropType {
    pub const I16: PropType = PropType(0x0002);
    pub const I32: PropType = PropType(0x0003);
    pub const F32: PropType = PropType(0x0004);
    pub const F64: PropType = PropType(0x0005);
    pub const CURRENCY: PropType = PropType(0x0006);
    pub const APPTIME: PropType = PropType(0x0007);
    pub const ERROR: PropType = PropType(0x000A);
    pub const BOOLEAN: PropType = PropType(0x000B);
    pub const OBJECT: PropType = PropType(0x000D);
    pub const I64: PropType = PropType(0x0014);
    pub const STRING8: PropType = PropType(0x001E);
    pub const UNICODE: PropType = PropType(0x001F);
    pub const TIME: PropType = PropType(0x0040);
    pub const GUID: PropType = PropType(0x0048);
    pub const BINARY: PropType = PropType(0x0102);
    pub const MV: u16 = 0x1000;

    /// Values a PC stores in `dwValueHnid` itself (MS-PST 2.3.3.3).
    pub fn is_inline_in_pc(self) -> bool {
        matches!(self.0, 0x0002 | 0x0003 | 0x0004 | 0x000A | 0x000B)
    }

    pub fn is_fixed(self) -> bool {
        self.fixed_size() > 0
    }

    pub fn fixed_size(self) -> usize {
        match self.0 {
            0x0002 => 2,
            0x000B => 1,
            0x0003 | 0x0004 | 0x000A => 4,
            0x0005 | 0x0006 | 0x0007 | 0x0014 | 0x0040 => 8,
            0x0048 => 16,
            _ => 0,
        }
    }
}

/// A decoded property value. ANSI strings stay bytes until the caller knows the code page.
#[derive(Debug, Clone, PartialEq)]
pub enum PropValue {
    I16(i16),
    I32(i32),
    Bool(bool),
    F64(f64),
    I64(i64),
    /// FILETIME: 100 ns ticks since 1601-01-01 UTC.
    Time(i64),
    Guid([u8; 16]),
    Unicode(String),
    String8(Vec<u8>),
    Binary(Vec<u8>),
    /// An embedded object (an attached message): the sub-node holding it.
    Object {
        nid: u32,
        size: u32,
    },
    MvI32(Vec<i32>),
    MvUnicode(Vec<String>),
    MvString8(Vec<Vec<u8>>),
    MvBinary(Vec<Vec<u8>>),
    Other {
        kind: u16,
        bytes: Vec<u8>,
    },
    /// Binary data too large to hold with its object (attachment data, see
    /// [`PropertyBag::read_streaming`](super::ltp::PropertyBag::read_streaming)): located
    /// and measured, read block by block when it is written out.
    Stream(super::ndb::StreamRef),
    /// The value's storage could not be read; the text says why.
    Unreadable(String),
}

impl PropValue {
    pub fn from_inline(kind: PropType, raw: u32) -> PropValue {
        match kind {
            PropType::I16 => PropValue::I16(raw as u16 as i16),
            PropType::BOOLEAN => PropValue::Bool(raw & 0xFF != 0),
            PropType::F32 => PropValue::F64(f64::from(f32::from_bits(raw))),
            _ => PropValue::I32(raw as i32),
        }
    }

    pub fn decode(kind: PropType, bytes: &[u8]) -> PropValue {
        let u64_at = |at: usize| -> Option<u64> {
            bytes.get(at..at + 8).map(|b| {
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                u64::from_le_bytes(a)
            })
        };
        match kind {
            PropType::I16 => PropValue::I16(le_u16(bytes, 0).unwrap_or(0) as i16),
            PropType::I32 | PropType::ERROR => PropValue::I32(le_u32(bytes, 0).unwrap_or(0) as i32),
            PropType::F32 => {
                PropValue::F64(f64::from(f32::from_bits(le_u32(bytes, 0).unwrap_or(0))))
            }
            PropType::BOOLEAN => PropValue::Bool(bytes.first().is_some_and(|b| *b != 0)),
            PropType::F64 | PropType::APPTIME => {
                PropValue::F64(f64::from_bits(u64_at(0).unwrap_or(0)))
            }
            PropType::I64 | PropType::CURRENCY => PropValue::I64(u64_at(0).unwrap_or(0) as i64),
            PropType::TIME => PropValue::Time(u64_at(0).unwrap_or(0) as i64),
            PropType::GUID => {
                let mut g = [0u8; 16];
                if let Some(b) = bytes.get(..16) {
                    g.copy_from_slice(b);
                }
                PropValue::Guid(g)
            }
            PropType::UNICODE => PropValue::Unicode(utf16le(bytes)),
            PropType::STRING8 => {
                let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
                PropValue::String8(bytes[..end].to_vec())
            }
            PropType::BINARY => PropValue::Binary(bytes.to_vec()),
            PropType::OBJECT => PropValue::Object {
                nid: le_u32(bytes, 0).unwrap_or(0),
                size: le_u32(bytes, 4).unwrap_or(0),
            },
            PropType(0x1003) => PropValue::MvI32(
                bytes
                    .chunks_exact(4)
                    .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
            PropType(0x101F) => {
                PropValue::MvUnicode(mv_items(bytes).iter().map(|b| utf16le(b)).collect())
            }
            PropType(0x101E) => PropValue::MvString8(
                mv_items(bytes)
                    .into_iter()
                    .map(|b| {
                        let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
                        b[..end].to_vec()
                    })
                    .collect(),
            ),
            PropType(0x1102) => PropValue::MvBinary(mv_items(bytes)),
            other => PropValue::Other {
                kind: other.0,
                bytes: bytes.to_vec(),
            },
        }
    }
}

/// Variable-size multi-valued data: ulCount, rgulDataOffsets, then the values.
fn mv_items(bytes: &[u8]) -> Vec<Vec<u8>> {
    let count = le_u32(bytes, 0).unwrap_or(0) as usize;
    if count == 0 || count.saturating_mul(4) + 4 > bytes.len() {
        return Vec::new();
    }
    let offsets: Vec<usize> = (0..count)
        .map(|i| le_u32(bytes, 4 + 4 * i).unwrap_or(0) as usize)
        .collect();
    (0..count)
        .map(|i| {
            let start = offsets[i].min(bytes.len());
            let end = offsets
                .get(i + 1)
                .copied()
                .unwrap_or(bytes.len())
                .clamp(start, bytes.len());
            bytes[start..end].to_vec()
        })
        .collect()
}

/// UTF-16LE to a String, stopping at the first NUL; unpaired surrogates become U+FFFD.
pub fn utf16le(bytes: &[u8]) -> String {
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|u| *u != 0)
        .collect();
    String::from_utf16_lossy(&units)
}

/// Property ids (the high word of a tag). Names follow MS-OXPROPS without the `PidTag` prefix.
pub mod id {
    pub const MESSAGE_CLASS: u16 = 0x001A;
    pub const SUBJECT: u16 = 0x0037;
    pub const CLIENT_SUBMIT_TIME: u16 = 0x0039;
    pub const SENT_REPRESENTING_NAME: u16 = 0x0042;
    pub const SENT_REPRESENTING_ADDRTYPE: u16 = 0x0064;
    pub const SENT_REPRESENTING_EMAIL: u16 = 0x0065;
    pub const TRANSPORT_MESSAGE_HEADERS: u16 = 0x007D;
    pub const RECIPIENT_TYPE: u16 = 0x0C15;
    pub const SENDER_NAME: u16 = 0x0C1A;
    pub const SENDER_ADDRTYPE: u16 = 0x0C1E;
    pub const SENDER_EMAIL: u16 = 0x0C1F;
    pub const MESSAGE_DELIVERY_TIME: u16 = 0x0E06;
    pub const MESSAGE_FLAGS: u16 = 0x0E07;
    pub const MESSAGE_SIZE: u16 = 0x0E08;
    /// PidTagAttachSize: an attachment object's size, a column of the attachment table.
    pub const ATTACH_SIZE: u16 = 0x0E20;
    pub const RECORD_KEY: u16 = 0x0FF9;
    pub const BODY: u16 = 0x1000;
    pub const RTF_COMPRESSED: u16 = 0x1009;
    pub const HTML: u16 = 0x1013;
    pub const INTERNET_MESSAGE_ID: u16 = 0x1035;
    pub const INTERNET_REFERENCES: u16 = 0x1039;
    pub const IN_REPLY_TO_ID: u16 = 0x1042;
    pub const FLAG_STATUS: u16 = 0x1090;
    pub const DISPLAY_NAME: u16 = 0x3001;
    pub const ADDRTYPE: u16 = 0x3002;
    pub const EMAIL_ADDRESS: u16 = 0x3003;
    pub const CREATION_TIME: u16 = 0x3007;
    pub const LAST_MODIFICATION_TIME: u16 = 0x3008;
    pub const SEARCH_KEY: u16 = 0x300B;
    pub const IPM_SUBTREE_ENTRYID: u16 = 0x35E0;
    pub const IPM_OUTBOX_ENTRYID: u16 = 0x35E2;
    pub const IPM_WASTEBASKET_ENTRYID: u16 = 0x35E3;
    pub const IPM_SENTMAIL_ENTRYID: u16 = 0x35E4;
    pub const FINDER_ENTRYID: u16 = 0x35E7;
    pub const CONTENT_COUNT: u16 = 0x3602;
    pub const CONTENT_UNREAD: u16 = 0x3603;
    pub const CONTAINER_CLASS: u16 = 0x3613;
    pub const IPM_APPOINTMENT_ENTRYID: u16 = 0x36D0;
    pub const IPM_CONTACT_ENTRYID: u16 = 0x36D1;
    pub const IPM_JOURNAL_ENTRYID: u16 = 0x36D2;
    pub const IPM_NOTE_ENTRYID: u16 = 0x36D3;
    pub const IPM_TASK_ENTRYID: u16 = 0x36D4;
    pub const IPM_DRAFTS_ENTRYID: u16 = 0x36D7;
    pub const ADDITIONAL_REN_ENTRYIDS: u16 = 0x36D8;
    pub const ATTACH_DATA: u16 = 0x3701;
    pub const ATTACH_FILENAME: u16 = 0x3704;
    pub const ATTACH_METHOD: u16 = 0x3705;
    pub const ATTACH_LONG_FILENAME: u16 = 0x3707;
    pub const ATTACH_MIME_TAG: u16 = 0x370E;
    pub const ATTACH_CONTENT_ID: u16 = 0x3712;
    pub const SMTP_ADDRESS: u16 = 0x39FE;
    pub const GENERATION: u16 = 0x3A05;
    pub const GIVEN_NAME: u16 = 0x3A06;
    pub const BUSINESS_TELEPHONE: u16 = 0x3A08;
    pub const HOME_TELEPHONE: u16 = 0x3A09;
    pub const SURNAME: u16 = 0x3A11;
    pub const COMPANY_NAME: u16 = 0x3A16;
    pub const TITLE: u16 = 0x3A17;
    pub const DEPARTMENT_NAME: u16 = 0x3A18;
    pub const MOBILE_TELEPHONE: u16 = 0x3A1C;
    pub const BUSINESS_FAX: u16 = 0x3A24;
    pub const COUNTRY: u16 = 0x3A26;
    pub const LOCALITY: u16 = 0x3A27;
    pub const STATE_OR_PROVINCE: u16 = 0x3A28;
    pub const STREET_ADDRESS: u16 = 0x3A29;
    pub const POSTAL_CODE: u16 = 0x3A2A;
    pub const BIRTHDAY: u16 = 0x3A42;
    pub const MIDDLE_NAME: u16 = 0x3A44;
    pub const DISPLAY_NAME_PREFIX: u16 = 0x3A45;
    pub const NICKNAME: u16 = 0x3A4F;
    pub const BUSINESS_HOME_PAGE: u16 = 0x3A51;
    pub const HOME_ADDRESS_CITY: u16 = 0x3A59;
    pub const HOME_ADDRESS_COUNTRY: u16 = 0x3A5A;
    pub const HOME_ADDRESS_POSTAL_CODE: u16 = 0x3A5B;
    pub const HOME_ADDRESS_STATE: u16 = 0x3A5C;
    pub const HOME_ADDRESS_STREET: u16 = 0x3A5D;
    pub const INTERNET_CPID: u16 = 0x3FDE;
    pub const MESSAGE_CODEPAGE: u16 = 0x3FFD;
    pub const SENDER_SMTP_ADDRESS: u16 = 0x5D01;
    pub const SENT_REPRESENTING_SMTP_ADDRESS: u16 = 0x5D02;
    pub const PST_PASSWORD: u16 = 0x67FF;
    pub const LTP_ROW_ID: u16 = 0x67F2;
    pub const ROAMING_BINARY_STREAM: u16 = 0x7C09;
}

/// MS-OXOMSG `PidTagMessageFlags` bits.
pub mod msgflag {
    pub const READ: i32 = 0x01;
    pub const UNSENT: i32 = 0x08;
    pub const HASATTACH: i32 = 0x10;
}

/// Seconds between 1601-01-01 and 1970-01-01.
pub const FILETIME_UNIX_OFFSET: i64 = 11_644_473_600;

/// FILETIME ticks to Unix seconds (None for 0 and the "never" sentinels).
pub fn filetime_to_unix(ticks: i64) -> Option<i64> {
    if ticks <= 0 || ticks >= 0x7FFF_0000_0000_0000 {
        return None;
    }
    Some(ticks / 10_000_000 - FILETIME_UNIX_OFFSET)
}
