//! Record sets as cutover compares, stores and shows them.
//!
//! An RRset is all records of one owner name and type. Values are kept in a canonical text
//! form (lowercase absolute host names with the trailing dot, MX as `10 host.`, TXT as its
//! text with the character-strings joined) so that what a server answers, what the plan
//! asks for and what the state remembers compare as plain sets of strings.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::plan::model::RecordType;

/// Which RRset: owner name (absolute, lowercase, with the trailing dot) and type.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RrsetKey {
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: RecordType,
}

impl RrsetKey {
    pub fn new(name: &str, rtype: RecordType) -> RrsetKey {
        RrsetKey {
            name: absolute(name),
            rtype,
        }
    }

    /// `MX acme.co.uk`, as shown to people.
    pub fn label(&self) -> String {
        format!("{} {}", type_name(self.rtype), shown_name(&self.name))
    }
}

/// One RRset. No values means the RRset does not exist (its `ttl` is then meaningless and 0).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rrset {
    #[serde(flatten)]
    pub key: RrsetKey,
    pub ttl: u32,
    /// Canonical values, sorted, without duplicates.
    pub values: Vec<String>,
}

impl Rrset {
    /// An RRset from values in any order; duplicates collapse (DNS has no duplicate RRs).
    pub fn new(key: RrsetKey, ttl: u32, values: impl IntoIterator<Item = String>) -> Rrset {
        let values: BTreeSet<String> = values.into_iter().collect();
        let ttl = if values.is_empty() { 0 } else { ttl };
        Rrset {
            key,
            ttl,
            values: values.into_iter().collect(),
        }
    }

    /// The RRset that does not exist.
    pub fn absent(key: RrsetKey) -> Rrset {
        Rrset {
            key,
            ttl: 0,
            values: Vec::new(),
        }
    }

    pub fn exists(&self) -> bool {
        !self.values.is_empty()
    }

    /// Same records and (for an existing set) the same TTL.
    pub fn same_as(&self, other: &Rrset) -> bool {
        self.key == other.key && self.values == other.values && self.ttl == other.ttl
    }

    /// The same records with another TTL.
    pub fn with_ttl(&self, ttl: u32) -> Rrset {
        Rrset::new(self.key.clone(), ttl, self.values.iter().cloned())
    }

    /// `10 mx00.ionos.co.uk, 10 mx01.ionos.co.uk` (or `nothing`).
    pub fn shown_values(&self) -> String {
        if self.values.is_empty() {
            return "nothing".to_string();
        }
        self.values
            .iter()
            .map(|v| shown_value(self.key.rtype, v))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// One RRset going from `before` (as read from the zone) to `after`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The zone the RRset is in, absolute (`acme.co.uk.`).
    pub zone: String,
    pub before: Rrset,
    pub after: Rrset,
}

impl Change {
    /// `+`, `~` or `-`.
    pub fn symbol(&self) -> char {
        match (self.before.exists(), self.after.exists()) {
            (false, _) => '+',
            (true, true) => '~',
            (true, false) => '-',
        }
    }

    /// The diff line `plan` shows:
    /// `~ MX acme.co.uk 3600: 10 mx00.ionos.co.uk → 0 acme-co-uk.mail.protection.outlook.com`.
    pub fn line(&self) -> String {
        let key = self.after.key.label();
        match (self.before.exists(), self.after.exists()) {
            (false, _) => format!("+ {key} {}: {}", self.after.ttl, self.after.shown_values()),
            (true, false) => format!(
                "- {key} {}: {}",
                self.before.ttl,
                self.before.shown_values()
            ),
            (true, true) => {
                let ttl = if self.before.ttl == self.after.ttl {
                    self.after.ttl.to_string()
                } else {
                    format!("{} → {}", self.before.ttl, self.after.ttl)
                };
                if self.before.values == self.after.values {
                    format!("~ {key} {ttl}: {}", self.after.shown_values())
                } else {
                    format!(
                        "~ {key} {ttl}: {} → {}",
                        self.before.shown_values(),
                        self.after.shown_values()
                    )
                }
            }
        }
    }
}

/// The changes turning each `before` into its `after`, skipping those already equal.
pub fn changes(zone: &str, pairs: impl IntoIterator<Item = (Rrset, Rrset)>) -> Vec<Change> {
    pairs
        .into_iter()
        .filter(|(before, after)| !before.same_as(after))
        .map(|(before, after)| Change {
            zone: absolute(zone),
            before,
            after,
        })
        .collect()
}

/// `acme.co.uk` → `acme.co.uk.`, lowercased.
pub fn absolute(name: &str) -> String {
    let mut name = name.trim().to_ascii_lowercase();
    if !name.ends_with('.') {
        name.push('.');
    }
    name
}

/// `acme.co.uk.` → `acme.co.uk`.
pub fn shown_name(name: &str) -> &str {
    name.strip_suffix('.').unwrap_or(name)
}

/// The owner name relative to its zone: `@` for the apex, `autodiscover`.
pub fn relative_name(name: &str, zone: &str) -> String {
    let (name, zone) = (absolute(name), absolute(zone));
    if name == zone {
        return "@".into();
    }
    match name.strip_suffix(&format!(".{zone}")) {
        Some(prefix) => prefix.to_string(),
        None => name,
    }
}

pub fn type_name(rtype: RecordType) -> &'static str {
    match rtype {
        RecordType::Mx => "MX",
        RecordType::Txt => "TXT",
        RecordType::Cname => "CNAME",
        RecordType::A => "A",
        RecordType::Aaaa => "AAAA",
        RecordType::Srv => "SRV",
    }
}

/// A canonical value as people read it: host names without the trailing dot, TXT quoted.
pub fn shown_value(rtype: RecordType, value: &str) -> String {
    match rtype {
        RecordType::Txt => format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\"")),
        _ => value
            .split(' ')
            .map(|part| part.strip_suffix('.').unwrap_or(part))
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// A value as a zone file writes it (RFC 1035 presentation format): TXT split into quoted
/// character-strings of at most 255 bytes, other values as stored.
pub fn zone_file_value(rtype: RecordType, value: &str) -> String {
    match rtype {
        RecordType::Txt => txt_chunks(value)
            .iter()
            .map(|chunk| {
                let mut out = String::from("\"");
                for c in chunk.chars() {
                    match c {
                        '"' | '\\' => {
                            out.push('\\');
                            out.push(c);
                        }
                        c if c.is_ascii_graphic() || c == ' ' => out.push(c),
                        c => {
                            let mut buf = [0u8; 4];
                            for b in c.encode_utf8(&mut buf).bytes() {
                                let _ = write!(out, "\\{b:03}");
                            }
                        }
                    }
                }
                out.push('"');
                out
            })
            .collect::<Vec<_>>()
            .join(" "),
        _ => value.to_string(),
    }
}

/// TXT text cut into character-strings of at most 255 bytes, at character boundaries.
pub fn txt_chunks(value: &str) -> Vec<String> {
    let mut chunks = Vec::new();
    let mut current = String::new();
    for c in value.chars() {
        if current.len() + c.len_utf8() > 255 {
            chunks.push(std::mem::take(&mut current));
        }
        current.push(c);
    }
    if !current.is_empty() || chunks.is_empty() {
        chunks.push(current);
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mx(values: &[&str], ttl: u32) -> Rrset {
        Rrset::new(
            RrsetKey::new("acme.co.uk", RecordType::Mx),
            ttl,
            values.iter().map(|v| v.to_string()),
        )
    }

    #[test]
    fn change_lines_read_like_the_runbook() {
        let c = &changes(
            "acme.co.uk",
            [(
                mx(&["10 mx00.ionos.co.uk."], 3600),
                mx(&["0 acme-co-uk.mail.protection.outlook.com."], 3600),
            )],
        )[0];
        assert_eq!(
            c.line(),
            "~ MX acme.co.uk 3600: 10 mx00.ionos.co.uk → 0 acme-co-uk.mail.protection.outlook.com"
        );
        let lowered = &changes("acme.co.uk", [(mx(&["10 a."], 3600), mx(&["10 a."], 300))])[0];
        assert_eq!(lowered.line(), "~ MX acme.co.uk 3600 → 300: 10 a");
        let added = &changes("acme.co.uk", [(mx(&[], 0), mx(&["0 b."], 3600))])[0];
        assert_eq!(added.line(), "+ MX acme.co.uk 3600: 0 b");
        assert!(changes("acme.co.uk", [(mx(&["0 b."], 60), mx(&["0 b."], 60))]).is_empty());
    }

    #[test]
    fn long_txt_is_split_into_character_strings() {
        let long = "v=spf1 ".to_string() + &"ip4:192.0.2.1 ".repeat(30) + "-all";
        let chunks = txt_chunks(&long);
        assert!(chunks.len() == 2 && chunks.iter().all(|c| c.len() <= 255));
        assert_eq!(chunks.concat(), long);
        assert_eq!(
            zone_file_value(RecordType::Txt, "say \"hi\""),
            "\"say \\\"hi\\\"\""
        );
    }

    #[test]
    fn names_relative_to_their_zone() {
        assert_eq!(relative_name("acme.co.uk.", "acme.co.uk"), "@");
        assert_eq!(
            relative_name("selector1._domainkey.acme.co.uk", "acme.co.uk."),
            "selector1._domainkey"
        );
    }
}
