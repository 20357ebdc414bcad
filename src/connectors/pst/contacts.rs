//! Contacts (`IPM.Contact`) and distribution lists (`IPM.DistList`) → vCard 4.0 (RFC 6350)
//! and Outlook's contacts import CSV. Deterministic bytes: same PST, same files.

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::messaging::{nid_of_entry_id, text, time, Item, PSETID_ADDRESS};
use super::props::{id, utf16le, PropValue};
use super::{Problem, PstFile};
use crate::connectors::autocomplete::export::{push_csv_line, push_folded, vcard_text};

/// One contact, the fields a vCard and Outlook's CSV carry.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Contact {
    pub nid: u32,
    pub folder: String,
    pub display_name: String,
    pub given_name: String,
    pub surname: String,
    pub middle_name: String,
    pub prefix: String,
    pub suffix: String,
    pub nickname: String,
    pub company: String,
    pub department: String,
    pub title: String,
    /// (address, display name), Email1..Email3 in order.
    pub emails: Vec<(String, String)>,
    pub business_phone: String,
    pub home_phone: String,
    pub mobile_phone: String,
    pub business_fax: String,
    pub business_address: Address,
    pub home_address: Address,
    /// YYYY-MM-DD.
    pub birthday: Option<String>,
    pub web_page: String,
    pub notes: String,
    #[serde(skip)]
    uid: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Address {
    pub street: String,
    pub city: String,
    pub state: String,
    pub postal_code: String,
    pub country: String,
}

impl Address {
    fn is_empty(&self) -> bool {
        [
            &self.street,
            &self.city,
            &self.state,
            &self.postal_code,
            &self.country,
        ]
        .iter()
        .all(|f| f.is_empty())
    }
}

/// A distribution list with its members (name, SMTP or other address).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DistributionList {
    pub nid: u32,
    pub folder: String,
    pub name: String,
    pub members: Vec<Member>,
    #[serde(skip)]
    uid: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Member {
    pub name: String,
    pub address: String,
    pub address_type: String,
}

pub(super) fn collect(pst: &PstFile) -> (Vec<Contact>, Vec<DistributionList>, Vec<Problem>) {
    let mut contacts = Vec::new();
    let mut lists = Vec::new();
    let mut problems = Vec::new();
    let cp = pst.code_page();
    for folder in pst.folders().iter().filter(|f| !f.search_folder) {
        let path = folder.path.join("/");
        let (items, mut bad) = pst.items_of_class(folder.nid, &["IPM.Contact", "IPM.DistList"]);
        problems.append(&mut bad);
        for item in items {
            let class = text(&item.props, id::MESSAGE_CLASS, cp).unwrap_or_default();
            if class.to_ascii_lowercase().starts_with("ipm.distlist") {
                lists.push(distribution_list(pst, &item, &path));
            } else {
                contacts.push(contact(pst, &item, &path));
            }
        }
    }
    (contacts, lists, problems)
}

fn named(pst: &PstFile, item: &Item, lid: u32) -> String {
    pst.names()
        .id(PSETID_ADDRESS, lid)
        .and_then(|pid| text(&item.props, pid, pst.code_page()))
        .unwrap_or_default()
}

fn uid(pst: &PstFile, nid: u32) -> String {
    let mut hash = Sha256::new();
    hash.update(&pst.store().record_key);
    hash.update(nid.to_le_bytes());
    let digest = hash.finalize();
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("pst-{hex}")
}

fn contact(pst: &PstFile, item: &Item, folder: &str) -> Contact {
    let cp = pst.code_page();
    let t = |pid: u16| text(&item.props, pid, cp).unwrap_or_default();
    let mut emails = Vec::new();
    for (address, display, kind) in [
        (0x8083, 0x8080, 0x8082),
        (0x8093, 0x8090, 0x8092),
        (0x80A3, 0x80A0, 0x80A2),
    ] {
        let address = named(pst, item, address);
        if address.is_empty() {
            continue;
        }
        let kind = named(pst, item, kind);
        if !kind.is_empty() && !kind.eq_ignore_ascii_case("SMTP") && !address.contains('@') {
            continue;
        }
        emails.push((address, named(pst, item, display)));
    }
    let mut business_address = Address {
        street: t(id::STREET_ADDRESS),
        city: t(id::LOCALITY),
        state: t(id::STATE_OR_PROVINCE),
        postal_code: t(id::POSTAL_CODE),
        country: t(id::COUNTRY),
    };
    if business_address.is_empty() {
        business_address = Address {
            street: named(pst, item, 0x8045),
            city: named(pst, item, 0x8046),
            state: named(pst, item, 0x8047),
            postal_code: named(pst, item, 0x8048),
            country: named(pst, item, 0x8049),
        };
    }
    // Outlook stores a birthday at local midnight, a few hours off UTC midnight either
    // way: the nearest UTC midnight is the date.
    let birthday = time(&item.props, id::BIRTHDAY).map(|s| {
        let (y, m, d) = crate::time::civil_from_days((s + 43_200).div_euclid(86_400));
        format!("{y:04}-{m:02}-{d:02}")
    });
    let web_page = {
        let own = t(id::BUSINESS_HOME_PAGE);
        if own.is_empty() {
            named(pst, item, 0x802B)
        } else {
            own
        }
    };
    Contact {
        nid: item.nid,
        folder: folder.to_owned(),
        display_name: t(id::DISPLAY_NAME),
        given_name: t(id::GIVEN_NAME),
        surname: t(id::SURNAME),
        middle_name: t(id::MIDDLE_NAME),
        prefix: t(id::DISPLAY_NAME_PREFIX),
        suffix: t(id::GENERATION),
        nickname: t(id::NICKNAME),
        company: t(id::COMPANY_NAME),
        department: t(id::DEPARTMENT_NAME),
        title: t(id::TITLE),
        emails,
        business_phone: t(id::BUSINESS_TELEPHONE),
        home_phone: t(id::HOME_TELEPHONE),
        mobile_phone: t(id::MOBILE_TELEPHONE),
        business_fax: t(id::BUSINESS_FAX),
        business_address,
        home_address: Address {
            street: t(id::HOME_ADDRESS_STREET),
            city: t(id::HOME_ADDRESS_CITY),
            state: t(id::HOME_ADDRESS_STATE),
            postal_code: t(id::HOME_ADDRESS_POSTAL_CODE),
            country: t(id::HOME_ADDRESS_COUNTRY),
        },
        birthday,
        web_page,
        notes: t(id::BODY),
        uid: uid(pst, item.nid),
    }
}

/// MS-OXCDATA 2.2.5.1 one-off entry id provider.
const ONE_OFF_UID: [u8; 16] = [
    0x81, 0x2B, 0x1F, 0xA4, 0xBE, 0xA3, 0x10, 0x19, 0x9D, 0x6E, 0x00, 0xDD, 0x01, 0x0F, 0x54, 0x02,
];
/// MS-OXOCNTC 2.2.2.1 WrappedEntryId provider (a reference to a contact or list).
const WRAPPED_UID: [u8; 16] = [
    0xC0, 0x91, 0xAD, 0xD3, 0x51, 0x9D, 0xCF, 0x11, 0xA4, 0xA9, 0x00, 0xAA, 0x00, 0x47, 0xFA, 0xA4,
];

fn distribution_list(pst: &PstFile, item: &Item, folder: &str) -> DistributionList {
    let cp = pst.code_page();
    let name = pst
        .names()
        .id(PSETID_ADDRESS, 0x8053)
        .and_then(|pid| text(&item.props, pid, cp))
        .or_else(|| text(&item.props, id::DISPLAY_NAME, cp))
        .unwrap_or_default();
    let list_of = |lid: u32| -> Vec<Vec<u8>> {
        match pst
            .names()
            .id(PSETID_ADDRESS, lid)
            .and_then(|pid| item.props.get(pid))
        {
            Some(PropValue::MvBinary(v)) => v.clone(),
            _ => Vec::new(),
        }
    };
    let one_offs = list_of(0x8054);
    let members_ids = list_of(0x8055);
    let mut members = Vec::new();
    let count = one_offs.len().max(members_ids.len());
    for i in 0..count {
        let member = one_offs
            .get(i)
            .and_then(|e| parse_one_off(e))
            .or_else(|| members_ids.get(i).and_then(|e| member_from_entry(pst, e)));
        if let Some(member) = member {
            members.push(member);
        }
    }
    DistributionList {
        nid: item.nid,
        folder: folder.to_owned(),
        name,
        members,
        uid: uid(pst, item.nid),
    }
}

/// A one-off entry id: flags, provider, version, flags, then display name, address type and
/// address as NUL-terminated strings (UTF-16 when the Unicode bit is set).
fn parse_one_off(entry: &[u8]) -> Option<Member> {
    if entry.get(4..20)? != ONE_OFF_UID {
        return None;
    }
    let flags = u16::from_le_bytes([*entry.get(22)?, *entry.get(23)?]);
    let rest = entry.get(24..)?;
    let unicode = flags & 0x8000 != 0;
    let mut fields = Vec::new();
    let mut at = 0;
    for _ in 0..3 {
        if unicode {
            let mut end = at;
            while end + 1 < rest.len() && (rest[end] != 0 || rest[end + 1] != 0) {
                end += 2;
            }
            fields.push(utf16le(rest.get(at..end.min(rest.len()))?));
            at = end + 2;
        } else {
            let end = rest[at.min(rest.len())..]
                .iter()
                .position(|b| *b == 0)
                .map_or(rest.len(), |p| at + p);
            fields.push(super::strings::decode_ansi(rest.get(at..end)?, None));
            at = end + 1;
        }
    }
    Some(Member {
        name: fields[0].clone(),
        address_type: fields[1].clone(),
        address: fields[2].clone(),
    })
}

/// A member stored as a wrapped entry id pointing at a contact of this PST.
fn member_from_entry(pst: &PstFile, entry: &[u8]) -> Option<Member> {
    if let Some(member) = parse_one_off(entry) {
        return Some(member);
    }
    if entry.get(4..20)? != WRAPPED_UID {
        return None;
    }
    let inner = entry.get(21..)?;
    let nid = nid_of_entry_id(inner)?;
    let item = pst.item(nid).ok()?;
    let address = named(pst, &item, 0x8083);
    let name = text(&item.props, id::DISPLAY_NAME, pst.code_page()).unwrap_or_default();
    Some(Member {
        name,
        address,
        address_type: "SMTP".into(),
    })
}

/// One vCard 4.0 file: every contact, then every distribution list (KIND:group with MEMBER
/// mailto: URIs).
pub fn contacts_vcard(contacts: &[Contact], lists: &[DistributionList]) -> Vec<u8> {
    let mut out = String::new();
    for c in contacts {
        push_folded(&mut out, "BEGIN:VCARD");
        push_folded(&mut out, "VERSION:4.0");
        push_folded(&mut out, &format!("UID:{}", c.uid));
        let fn_name = if !c.display_name.is_empty() {
            c.display_name.clone()
        } else {
            [&c.given_name, &c.surname]
                .iter()
                .filter(|s| !s.is_empty())
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        };
        push_folded(&mut out, &format!("FN:{}", vcard_text(&fn_name)));
        push_folded(
            &mut out,
            &format!(
                "N:{};{};{};{};{}",
                vcard_text(&c.surname),
                vcard_text(&c.given_name),
                vcard_text(&c.middle_name),
                vcard_text(&c.prefix),
                vcard_text(&c.suffix)
            ),
        );
        if !c.nickname.is_empty() {
            push_folded(&mut out, &format!("NICKNAME:{}", vcard_text(&c.nickname)));
        }
        if !c.company.is_empty() || !c.department.is_empty() {
            push_folded(
                &mut out,
                format!(
                    "ORG:{};{}",
                    vcard_text(&c.company),
                    vcard_text(&c.department)
                )
                .trim_end_matches(';'),
            );
        }
        if !c.title.is_empty() {
            push_folded(&mut out, &format!("TITLE:{}", vcard_text(&c.title)));
        }
        for (index, (address, _)) in c.emails.iter().enumerate() {
            push_folded(
                &mut out,
                &format!("EMAIL;PREF={}:{}", index + 1, vcard_text(address)),
            );
        }
        for (kind, number) in [
            ("work,voice", &c.business_phone),
            ("home,voice", &c.home_phone),
            ("cell", &c.mobile_phone),
            ("work,fax", &c.business_fax),
        ] {
            if !number.is_empty() {
                push_folded(
                    &mut out,
                    &format!("TEL;TYPE=\"{kind}\":{}", vcard_text(number)),
                );
            }
        }
        for (kind, a) in [("work", &c.business_address), ("home", &c.home_address)] {
            if !a.is_empty() {
                push_folded(
                    &mut out,
                    &format!(
                        "ADR;TYPE={kind}:;;{};{};{};{};{}",
                        vcard_text(&a.street),
                        vcard_text(&a.city),
                        vcard_text(&a.state),
                        vcard_text(&a.postal_code),
                        vcard_text(&a.country)
                    ),
                );
            }
        }
        if let Some(b) = &c.birthday {
            push_folded(&mut out, &format!("BDAY:{}", b.replace('-', "")));
        }
        if !c.web_page.is_empty() {
            push_folded(&mut out, &format!("URL:{}", c.web_page));
        }
        if !c.notes.trim().is_empty() {
            push_folded(&mut out, &format!("NOTE:{}", vcard_text(c.notes.trim())));
        }
        push_folded(&mut out, "END:VCARD");
    }
    for list in lists {
        push_folded(&mut out, "BEGIN:VCARD");
        push_folded(&mut out, "VERSION:4.0");
        push_folded(&mut out, &format!("UID:{}", list.uid));
        push_folded(&mut out, "KIND:group");
        push_folded(&mut out, &format!("FN:{}", vcard_text(&list.name)));
        for member in &list.members {
            if member.address.contains('@') {
                push_folded(&mut out, &format!("MEMBER:mailto:{}", member.address));
            }
        }
        push_folded(&mut out, "END:VCARD");
    }
    out.into_bytes()
}

/// Outlook's "Comma Separated Values" import: English column names the import wizard maps by
/// itself, UTF-8 with a BOM, CRLF. Distribution lists cannot be imported from CSV; their
/// members are in the vCard file.
pub fn contacts_csv(contacts: &[Contact]) -> Vec<u8> {
    let mut out = String::from("\u{FEFF}");
    let header = [
        "Title",
        "First Name",
        "Middle Name",
        "Last Name",
        "Suffix",
        "Nickname",
        "Company",
        "Department",
        "Job Title",
        "Business Street",
        "Business City",
        "Business State",
        "Business Postal Code",
        "Business Country/Region",
        "Home Street",
        "Home City",
        "Home State",
        "Home Postal Code",
        "Home Country/Region",
        "Business Fax",
        "Business Phone",
        "Home Phone",
        "Mobile Phone",
        "Birthday",
        "E-mail Address",
        "E-mail Type",
        "E-mail Display Name",
        "E-mail 2 Address",
        "E-mail 2 Type",
        "E-mail 2 Display Name",
        "E-mail 3 Address",
        "E-mail 3 Type",
        "E-mail 3 Display Name",
        "Notes",
        "Web Page",
    ];
    push_csv_line(&mut out, &header);
    for c in contacts {
        let email = |i: usize| -> (String, String, String) {
            match c.emails.get(i) {
                Some((address, display)) => (address.clone(), "SMTP".into(), display.clone()),
                None => Default::default(),
            }
        };
        let (e1, t1, d1) = email(0);
        let (e2, t2, d2) = email(1);
        let (e3, t3, d3) = email(2);
        let birthday = c
            .birthday
            .as_deref()
            .and_then(|b| {
                let mut parts = b.split('-');
                Some((parts.next()?, parts.next()?, parts.next()?))
            })
            .map(|(y, m, d)| {
                format!(
                    "{}/{}/{y}",
                    m.trim_start_matches('0'),
                    d.trim_start_matches('0')
                )
            })
            .unwrap_or_default();
        let b = &c.business_address;
        let h = &c.home_address;
        push_csv_line(
            &mut out,
            &[
                &c.prefix,
                &c.given_name,
                &c.middle_name,
                &c.surname,
                &c.suffix,
                &c.nickname,
                &c.company,
                &c.department,
                &c.title,
                &b.street,
                &b.city,
                &b.state,
                &b.postal_code,
                &b.country,
                &h.street,
                &h.city,
                &h.state,
                &h.postal_code,
                &h.country,
                &c.business_fax,
                &c.business_phone,
                &c.home_phone,
                &c.mobile_phone,
                &birthday,
                &e1,
                &t1,
                &d1,
                &e2,
                &t2,
                &d2,
                &e3,
                &t3,
                &d3,
                c.notes.trim(),
                &c.web_page,
            ],
        );
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_off_entry_ids_parse() {
        let mut entry = vec![0, 0, 0, 0];
        entry.extend_from_slice(&ONE_OFF_UID);
        entry.extend_from_slice(&[0, 0, 0x00, 0x80]);
        for field in ["Ann", "SMTP", "ann@example.com"] {
            for unit in field.encode_utf16() {
                entry.extend_from_slice(&unit.to_le_bytes());
            }
            entry.extend_from_slice(&[0, 0]);
        }
        let member = parse_one_off(&entry).unwrap();
        assert_eq!(member.name, "Ann");
        assert_eq!(member.address, "ann@example.com");
        assert!(parse_one_off(&entry[..10]).is_none());
    }
}
