//! The recipient behind a row: what a person recognises (name, address, type, weight), read
//! from and written into the raw properties.

use serde::Serialize;

use super::format::{Property, Row};
use super::tags;

/// The fields of a row that people and the other outputs care about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub display_name: String,
    /// `SMTP`, `EX`, or whatever other transport the row names.
    pub address_type: String,
    /// The address in the transport's syntax: an SMTP address, or a legacyExchangeDN for `EX`.
    pub email_address: String,
    /// The SMTP address when the row has one (always for `SMTP` rows).
    pub smtp_address: Option<String>,
    pub weight: i32,
}

impl Entry {
    /// Whether this entry points at an Exchange mailbox by legacyExchangeDN.
    pub fn is_exchange(&self) -> bool {
        self.address_type.eq_ignore_ascii_case("EX")
    }
}

/// Provider UID that marks a one-off entry id ([MS-OXCDATA] 2.2.5.1).
const ONE_OFF_PROVIDER: [u8; 16] = [
    0x81, 0x2B, 0x1F, 0xA4, 0xBE, 0xA3, 0x10, 0x19, 0x9D, 0x6E, 0x00, 0xDD, 0x01, 0x0F, 0x54, 0x02,
];
/// MAPI_UNICODE | MAPI_SEND_NO_RICH_INFO | OOP_DONT_LOOKUP, as Outlook writes for cached SMTP rows.
const ONE_OFF_FLAGS: u16 = 0x9001;

/// A one-off entry id: the self-contained form Outlook uses for addresses not in any address
/// book, which is what an entry for the new tenant must be (the old address book is gone).
pub fn one_off_entry_id(display_name: &str, address_type: &str, address: &str) -> Vec<u8> {
    let mut id =
        Vec::with_capacity(24 + 2 * (display_name.len() + address_type.len() + address.len() + 3));
    id.extend_from_slice(&[0; 4]);
    id.extend_from_slice(&ONE_OFF_PROVIDER);
    id.extend_from_slice(&0u16.to_le_bytes());
    id.extend_from_slice(&ONE_OFF_FLAGS.to_le_bytes());
    for text in [display_name, address_type, address] {
        id.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
        id.extend_from_slice(&[0, 0]);
    }
    id
}

/// PR_SEARCH_KEY: `TYPE:ADDRESS` upper-cased, ASCII, NUL-terminated, as Outlook computes it.
pub fn search_key(address_type: &str, address: &str) -> Vec<u8> {
    let mut key = format!("{address_type}:{address}")
        .to_uppercase()
        .into_bytes();
    key.push(0);
    key
}

impl Row {
    /// The first property with this id, whatever its type.
    pub fn find(&self, id: u16) -> Option<&Property> {
        self.properties.iter().find(|property| property.id() == id)
    }

    /// The first string value stored under this id.
    pub fn text(&self, id: u16) -> Option<String> {
        self.properties
            .iter()
            .filter(|property| property.id() == id)
            .find_map(Property::text)
    }

    /// Replaces the first property with the same id (any type) and drops later ones with that
    /// id, or appends when absent. Keeps the row's property order otherwise.
    pub fn set(&mut self, property: Property) {
        let id = property.id();
        match self
            .properties
            .iter()
            .position(|existing| existing.id() == id)
        {
            Some(first) => {
                self.properties[first] = property;
                let mut index = 0;
                self.properties.retain(|existing| {
                    let keep = index <= first || existing.id() != id;
                    index += 1;
                    keep
                });
            }
            None => self.properties.push(property),
        }
    }

    /// Outlook orders rows by this weight, highest first. Rows without one sort last.
    pub fn weight(&self) -> i32 {
        self.properties
            .iter()
            .filter(|property| property.id() == tags::PID_WEIGHT)
            .find_map(Property::long_value)
            .unwrap_or(i32::MIN)
    }

    /// The row's SMTP address: PR_SMTP_ADDRESS when it holds an address (it is often a
    /// PT_ERROR placeholder), else the email address of an SMTP row.
    pub fn smtp_address(&self) -> Option<String> {
        let stored = self
            .text(tags::PID_SMTP_ADDRESS)
            .filter(|address| address.contains('@'));
        stored.or_else(|| {
            let is_smtp = self
                .text(tags::PID_ADDRESS_TYPE)
                .is_some_and(|kind| kind.eq_ignore_ascii_case("SMTP"));
            self.text(tags::PID_EMAIL_ADDRESS)
                .filter(|address| is_smtp && !address.is_empty())
        })
    }

    /// The person-facing view of this row.
    pub fn entry(&self) -> Entry {
        let email_address = self.text(tags::PID_EMAIL_ADDRESS).unwrap_or_default();
        let display_name = self
            .text(tags::PID_DISPLAY_NAME)
            .filter(|name| !name.is_empty())
            .or_else(|| self.text(tags::PID_NICK_NAME))
            .unwrap_or_else(|| email_address.clone());
        Entry {
            display_name,
            address_type: self.text(tags::PID_ADDRESS_TYPE).unwrap_or_default(),
            email_address,
            smtp_address: self.smtp_address(),
            weight: self.weight(),
        }
    }

    /// A row with the properties Outlook needs to offer and send to this recipient, in the
    /// order Outlook 2010 writes them (nick name first, which Outlook requires).
    pub fn from_entry(entry: &Entry) -> Self {
        let nick = entry
            .smtp_address
            .as_deref()
            .unwrap_or(&entry.email_address);
        let smtp = match &entry.smtp_address {
            Some(address) => Property::unicode(tags::PID_SMTP_ADDRESS, address),
            None => Property::error(tags::PID_SMTP_ADDRESS, tags::MAPI_E_NOT_FOUND),
        };
        let entry_id = one_off_entry_id(
            &entry.display_name,
            &entry.address_type,
            &entry.email_address,
        );
        Row {
            properties: vec![
                Property::unicode(tags::PID_NICK_NAME, nick),
                Property::unicode(tags::PID_DISPLAY_NAME, &entry.display_name),
                smtp,
                Property::binary(tags::PID_ENTRY_ID, entry_id),
                Property::unicode(tags::PID_EMAIL_ADDRESS, &entry.email_address),
                Property::unicode(tags::PID_ADDRESS_TYPE, &entry.address_type),
                Property::binary(
                    tags::PID_SEARCH_KEY,
                    search_key(&entry.address_type, &entry.email_address),
                ),
                Property::long(tags::PID_OBJECT_TYPE, tags::MAPI_MAILUSER as i32),
                Property::long(tags::PID_DISPLAY_TYPE, tags::DT_MAILUSER as i32),
                Property::long(tags::PID_WEIGHT, entry.weight),
            ],
        }
    }

    /// Turns an EX row into an SMTP row for `smtp`, keeping every property that does not
    /// carry the old address (weight, flags, unknown properties).
    pub fn retarget_to_smtp(&mut self, smtp: &str) {
        let old_address = self.text(tags::PID_EMAIL_ADDRESS).unwrap_or_default();
        let display_name = self.entry().display_name;
        let entry_id = one_off_entry_id(&display_name, "SMTP", smtp);
        self.set(Property::unicode(tags::PID_ADDRESS_TYPE, "SMTP"));
        self.set(Property::unicode(tags::PID_EMAIL_ADDRESS, smtp));
        self.set(Property::unicode(tags::PID_SMTP_ADDRESS, smtp));
        self.set(Property::binary(
            tags::PID_SEARCH_KEY,
            search_key("SMTP", smtp),
        ));
        self.set(Property::binary(tags::PID_ENTRY_ID, entry_id.clone()));
        for id in [tags::PID_RECORD_KEY, tags::PID_RECIPIENT_ENTRY_ID] {
            if self.find(id).is_some() {
                self.set(Property::binary(id, entry_id.clone()));
            }
        }
        // A nick name equal to the legacyExchangeDN would keep offering the dead address.
        if !old_address.is_empty() {
            for property in &mut self.properties {
                let stale = property.id() == tags::PID_NICK_NAME
                    && property
                        .text()
                        .is_some_and(|nick| nick.eq_ignore_ascii_case(&old_address));
                if stale {
                    *property = Property::unicode(tags::PID_NICK_NAME, smtp);
                }
            }
        }
    }
}

/// Formats a FILETIME as an RFC 3339 UTC timestamp (second precision), or `None` for zero
/// or out-of-range values.
pub fn filetime_to_rfc3339(filetime: u64) -> Option<String> {
    const TICKS_PER_SECOND: u64 = 10_000_000;
    const SECONDS_1601_TO_1970: i64 = 11_644_473_600;
    if filetime == 0 {
        return None;
    }
    let seconds = i64::try_from(filetime / TICKS_PER_SECOND).ok()? - SECONDS_1601_TO_1970;
    Some(crate::time::rfc3339_utc(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::autocomplete::format::ValueData;

    fn sample(kind: &str, address: &str, smtp: Option<&str>) -> Entry {
        Entry {
            display_name: "Alice Smith".into(),
            address_type: kind.into(),
            email_address: address.into(),
            smtp_address: smtp.map(str::to_owned),
            weight: 42,
        }
    }

    #[test]
    fn built_row_reads_back_as_the_same_entry() {
        let entry = sample("SMTP", "alice@acme.co.uk", Some("alice@acme.co.uk"));
        assert_eq!(Row::from_entry(&entry).entry(), entry);
        let exchange = sample("EX", "/o=Acme/ou=First/cn=Recipients/cn=alice", None);
        assert_eq!(Row::from_entry(&exchange).entry(), exchange);
    }

    #[test]
    fn retarget_rewrites_every_address_bearing_property() {
        let legacy = "/o=Acme/ou=First/cn=Recipients/cn=alice";
        let mut row = Row::from_entry(&sample("EX", legacy, None));
        row.properties
            .push(Property::unicode(tags::PID_NICK_NAME, legacy));
        row.retarget_to_smtp("alice@acme.co.uk");
        let entry = row.entry();
        assert_eq!(entry.address_type, "SMTP");
        assert_eq!(entry.email_address, "alice@acme.co.uk");
        assert_eq!(entry.smtp_address.as_deref(), Some("alice@acme.co.uk"));
        assert_eq!(entry.weight, 42);
        let smtp_props = row
            .properties
            .iter()
            .filter(|p| p.id() == tags::PID_SMTP_ADDRESS)
            .count();
        assert_eq!(smtp_props, 1);
        assert!(row
            .properties
            .iter()
            .all(|p| p.text().is_none_or(|t| !t.contains("/o=Acme"))));
        let Some(ValueData::Counted(key)) = row.find(tags::PID_SEARCH_KEY).map(Property::data)
        else {
            panic!("search key missing");
        };
        assert_eq!(&key[..], b"SMTP:ALICE@ACME.CO.UK\0");
    }

    #[test]
    fn filetimes_format_as_utc() {
        assert_eq!(
            filetime_to_rfc3339(0x01CB_13C2_DB24_3F00).as_deref(),
            Some("2010-06-24T17:29:53Z")
        );
        assert_eq!(filetime_to_rfc3339(0), None);
        assert_eq!(
            filetime_to_rfc3339(116_444_736_000_000_000).as_deref(),
            Some("1970-01-01T00:00:00Z")
        );
    }
}
