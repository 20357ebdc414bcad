//! MAPI property tags and types that matter for the autocomplete cache.
//!
//! A tag is `(id << 16) | type`. Rows match properties by id: the same id can appear with a
//! different type (PR_SMTP_ADDRESS is stored as PT_ERROR in real caches when Outlook never
//! looked it up), so callers compare ids and then check the type they need.

/// `0xBAADF00D`, the first four bytes of every autocomplete stream.
pub const SIGNATURE: u32 = 0xBAAD_F00D;

/// Major version of the `.nk2` files written by Outlook 2003 and 2007.
pub const MAJOR_NK2: u32 = 10;
/// Minor version Outlook 2003/2007 write in `.nk2` files.
pub const MINOR_NK2: u32 = 1;
/// Major version of the Outlook 2010+ stream (`Stream_Autocomplete_*.dat` and the
/// `IPM.Configuration.Autocomplete` message).
pub const MAJOR_STREAM: u32 = 12;
/// Minor version Outlook 2010+ write; a non-zero minor carries extra information we must keep.
pub const MINOR_STREAM: u32 = 0;

pub const PT_UNSPECIFIED: u16 = 0x0000;
pub const PT_NULL: u16 = 0x0001;
pub const PT_I2: u16 = 0x0002;
pub const PT_LONG: u16 = 0x0003;
pub const PT_R4: u16 = 0x0004;
pub const PT_DOUBLE: u16 = 0x0005;
pub const PT_CURRENCY: u16 = 0x0006;
pub const PT_APPTIME: u16 = 0x0007;
pub const PT_ERROR: u16 = 0x000A;
pub const PT_BOOLEAN: u16 = 0x000B;
pub const PT_I8: u16 = 0x0014;
pub const PT_STRING8: u16 = 0x001E;
pub const PT_UNICODE: u16 = 0x001F;
pub const PT_SYSTIME: u16 = 0x0040;
pub const PT_CLSID: u16 = 0x0048;
pub const PT_BINARY: u16 = 0x0102;
/// Flag that turns a base type into its multi-valued form.
pub const MV_FLAG: u16 = 0x1000;

pub const PID_NICK_NAME: u16 = 0x6001;
pub const PID_DROPDOWN_DISPLAY_NAME: u16 = 0x6003;
pub const PID_WEIGHT: u16 = 0x6004;
pub const PID_DISPLAY_NAME: u16 = 0x3001;
pub const PID_ADDRESS_TYPE: u16 = 0x3002;
pub const PID_EMAIL_ADDRESS: u16 = 0x3003;
pub const PID_SEARCH_KEY: u16 = 0x300B;
pub const PID_SMTP_ADDRESS: u16 = 0x39FE;
pub const PID_DISPLAY_TYPE: u16 = 0x3900;
pub const PID_ENTRY_ID: u16 = 0x0FFF;
pub const PID_RECORD_KEY: u16 = 0x0FF9;
pub const PID_OBJECT_TYPE: u16 = 0x0FFE;
/// PR_RECIPIENT_ENTRYID-like copy Outlook keeps per row; it holds the same kind of entry id.
pub const PID_RECIPIENT_ENTRY_ID: u16 = 0x5FF7;

/// `MAPI_E_NOT_FOUND`, what Outlook stores in PT_ERROR properties it could not fill.
pub const MAPI_E_NOT_FOUND: u32 = 0x8004_010F;
/// `MAPI_MAILUSER`, the object type of a mail recipient.
pub const MAPI_MAILUSER: u32 = 6;
/// `DT_MAILUSER`, the display type of an ordinary mail recipient.
pub const DT_MAILUSER: u32 = 0;

/// Builds a tag from an id and a type.
pub const fn tag(id: u16, property_type: u16) -> u32 {
    ((id as u32) << 16) | property_type as u32
}

/// The id half of a tag.
pub const fn id_of(tag: u32) -> u16 {
    (tag >> 16) as u16
}

/// The type half of a tag.
pub const fn type_of(tag: u32) -> u16 {
    (tag & 0xFFFF) as u16
}

/// How a property's value is laid out after its fixed 16 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Everything lives in the 8-byte value union.
    Static,
    /// u32 byte count, then that many bytes.
    Counted,
    /// 16 raw bytes.
    Guid,
    /// u32 value count, then per value a u32 byte count and the bytes.
    MultiCounted,
    /// u32 value count, then that many values of this many bytes each.
    MultiFixed(usize),
}

/// The layout of a property type, or `None` when the published format does not say how to
/// find where the value ends (reading on would misparse everything after it).
pub const fn layout_of(property_type: u16) -> Option<Layout> {
    match property_type {
        PT_UNSPECIFIED | PT_NULL | PT_I2 | PT_LONG | PT_R4 | PT_DOUBLE | PT_CURRENCY
        | PT_APPTIME | PT_ERROR | PT_BOOLEAN | PT_I8 | PT_SYSTIME => Some(Layout::Static),
        PT_STRING8 | PT_UNICODE | PT_BINARY => Some(Layout::Counted),
        PT_CLSID => Some(Layout::Guid),
        0x101E | 0x101F | 0x1102 => Some(Layout::MultiCounted),
        0x1002 => Some(Layout::MultiFixed(2)),
        0x1003 | 0x1004 => Some(Layout::MultiFixed(4)),
        0x1005 | 0x1006 | 0x1007 | 0x1014 | 0x1040 => Some(Layout::MultiFixed(8)),
        0x1048 => Some(Layout::MultiFixed(16)),
        _ => None,
    }
}
