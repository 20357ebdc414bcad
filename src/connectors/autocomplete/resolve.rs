//! Exchange (EX) rows point at a legacyExchangeDN of the old organisation; sent to after the
//! move they bounce with IMCEAEX non-delivery reports. This module finds the SMTP address each
//! one stands for, and the X500 proxy the target mailbox needs so that replies to old mail
//! (which carry the same legacyExchangeDN) still deliver.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::entry::Entry;
use super::format::Row;
use super::tags;
use super::AutocompleteError;

/// A mailbox the migration knows about: a plan user, mapped by the engine.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KnownMailbox {
    /// Primary SMTP address at the target.
    pub smtp: String,
    pub display_name: Option<String>,
    /// Other SMTP addresses, or bare aliases (mailNickname), of the same mailbox.
    pub aliases: Vec<String>,
    /// The mailbox's legacyExchangeDN at the old Exchange, when the plan knows it.
    pub legacy_dn: Option<String>,
}

/// Explicit `legacyExchangeDN or display name → SMTP` pairs supplied by the consultant, for
/// entries the plan cannot explain (people who left, shared mailboxes, external contacts).
///
/// The file is CSV with a header row. Columns, matched case-insensitively, in any order:
///
/// * `smtp` (required): the address the entry should become.
/// * `legacy_dn`: a legacyExchangeDN such as `/o=Acme/ou=First Administrative Group/cn=Recipients/cn=bob`.
/// * `display_name`: the name shown in the old cache, used when no DN is known.
///
/// At least one of `legacy_dn` and `display_name` must be present; each row fills one or both.
/// Matching is case-insensitive; surrounding spaces are ignored; lines starting with `#` are
/// comments; other columns are ignored; rows with an empty `smtp` are skipped, so the
/// `*.unresolved-ex.csv` report can be filled in and passed back as it is. A key mapped twice
/// to different addresses is an error.
///
/// ```csv
/// legacy_dn,display_name,smtp
/// /o=Acme/ou=First Administrative Group/cn=Recipients/cn=bob,,bob@acme.co.uk
/// ,Reception Desk,reception@acme.co.uk
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressMap {
    by_legacy_dn: HashMap<String, String>,
    by_display_name: HashMap<String, String>,
}

impl AddressMap {
    /// Reads an address map file.
    pub fn from_path(path: &Path) -> Result<Self, AutocompleteError> {
        let bytes = std::fs::read(path).map_err(|source| AutocompleteError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_csv(&bytes, path)
    }

    /// Parses address map CSV; `path` only names the source in errors.
    pub fn from_csv(bytes: &[u8], path: &Path) -> Result<Self, AutocompleteError> {
        let problem = |line: Option<u64>, problem: String| AutocompleteError::AddressMap {
            path: path.to_owned(),
            line,
            problem,
        };
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        // Comments are skipped here rather than by the csv reader, whose line numbers would
        // then stop counting them and point the user at the wrong line.
        let mut records = csv::ReaderBuilder::new()
            .has_headers(false)
            .trim(csv::Trim::All)
            .flexible(true)
            .from_reader(bytes)
            .into_records()
            .filter(|record| {
                record.as_ref().map_or(true, |record| {
                    let first = record.get(0).unwrap_or_default();
                    !first.starts_with('#') && !record.iter().all(str::is_empty)
                })
            });
        let unreadable = |err: csv::Error| {
            let line = err.position().map(csv::Position::line);
            problem(line, format!("unreadable CSV: {err}"))
        };
        let headers = match records.next() {
            Some(header) => header.map_err(unreadable)?,
            None => {
                return Err(problem(
                    None,
                    "expected a header row, found an empty file".into(),
                ))
            }
        };
        let header_line = headers.position().map(csv::Position::line);
        let column = |name: &str| {
            headers
                .iter()
                .position(|header| header.eq_ignore_ascii_case(name))
        };
        let smtp_column = column("smtp")
            .ok_or_else(|| problem(header_line, "expected a `smtp` column in the header".into()))?;
        let dn_column = column("legacy_dn");
        let name_column = column("display_name");
        if dn_column.is_none() && name_column.is_none() {
            return Err(problem(
                header_line,
                "expected a `legacy_dn` or `display_name` column in the header".into(),
            ));
        }
        let mut map = AddressMap::default();
        let mut first_line: HashMap<(bool, String), u64> = HashMap::new();
        for record in records {
            let record = record.map_err(unreadable)?;
            let line = record.position().map(csv::Position::line);
            let field =
                |index: Option<usize>| index.and_then(|i| record.get(i)).unwrap_or_default();
            let (smtp, dn, name) = (
                field(Some(smtp_column)),
                field(dn_column),
                field(name_column),
            );
            if smtp.is_empty() {
                // A row not filled in yet (e.g. from the unresolved report) maps nothing.
                continue;
            }
            if !smtp.contains('@') {
                return Err(problem(
                    line,
                    format!("expected an SMTP address in `smtp`, found {smtp:?}"),
                ));
            }
            if dn.is_empty() && name.is_empty() {
                return Err(problem(
                    line,
                    "expected a `legacy_dn` or `display_name` value".into(),
                ));
            }
            for (is_dn, key) in [(true, dn), (false, name)] {
                if key.is_empty() {
                    continue;
                }
                let table = if is_dn {
                    &mut map.by_legacy_dn
                } else {
                    &mut map.by_display_name
                };
                let normalized = key.to_lowercase();
                if let Some(previous) = table.get(&normalized) {
                    if !previous.eq_ignore_ascii_case(smtp) {
                        let earlier = first_line
                            .get(&(is_dn, normalized.clone()))
                            .copied()
                            .unwrap_or_default();
                        return Err(problem(
                            line,
                            format!("{key:?} is already mapped to {previous} on line {earlier}; expected one address per key"),
                        ));
                    }
                    continue;
                }
                table.insert(normalized.clone(), smtp.to_owned());
                first_line.insert((is_dn, normalized), line.unwrap_or_default());
            }
        }
        Ok(map)
    }

    pub fn len(&self) -> usize {
        self.by_legacy_dn.len() + self.by_display_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Which evidence tied an EX entry to its SMTP address, in the order they are tried: explicit
/// mappings first, exact identifiers before names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResolvedBy {
    AddressMapLegacyDn,
    MailboxLegacyDn,
    AddressMapDisplayName,
    /// The row's own PR_SMTP_ADDRESS, cached by Outlook when it could look it up.
    CachedSmtpAddress,
    /// The DN's last `cn=` equals a mailbox's alias or address local part.
    LegacyDnCommonName,
    MailboxDisplayName,
}

/// An EX entry that became an SMTP entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResolvedEntry {
    pub display_name: String,
    pub legacy_dn: String,
    pub smtp: String,
    pub resolved_by: ResolvedBy,
}

/// An EX entry nothing could explain. Kept out of the Outlook outputs (it would bounce) and
/// reported so the consultant can add it to the address map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnresolvedEntry {
    pub display_name: String,
    pub legacy_dn: String,
    pub reason: String,
    pub source: PathBuf,
}

/// An X500 proxy address a target mailbox needs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct X500Proxy {
    /// Primary SMTP address of the plan mailbox that must receive the proxy.
    pub mailbox: String,
    /// `X500:` followed by the old legacyExchangeDN.
    pub proxy_address: String,
}

/// What resolving one row found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowResolution {
    /// Not an EX row; nothing to do.
    NotExchange,
    /// Rewritten to SMTP; `proxy` is set when the address belongs to a plan mailbox.
    Resolved {
        entry: ResolvedEntry,
        proxy: Option<X500Proxy>,
    },
    /// Left as it was.
    Unresolved { reason: String },
}

/// Resolves EX rows against the plan's mailboxes and an optional address map.
pub struct Resolver<'a> {
    known: &'a [KnownMailbox],
    map: Option<&'a AddressMap>,
}

impl<'a> Resolver<'a> {
    pub fn new(known: &'a [KnownMailbox], map: Option<&'a AddressMap>) -> Self {
        Self { known, map }
    }

    /// Rewrites `row` to SMTP when it is an EX row that can be resolved.
    pub fn resolve_row(&self, row: &mut Row) -> RowResolution {
        let entry = row.entry();
        if !entry.is_exchange() {
            return RowResolution::NotExchange;
        }
        let cached = row
            .text(tags::PID_SMTP_ADDRESS)
            .filter(|address| address.contains('@'));
        match self.resolve(&entry, cached.as_deref()) {
            Ok((smtp, resolved_by)) => {
                let proxy = self.mailbox_for(&smtp).map(|mailbox| X500Proxy {
                    mailbox: mailbox.smtp.clone(),
                    proxy_address: format!("X500:{}", entry.email_address),
                });
                let smtp = proxy.as_ref().map_or(smtp, |proxy| proxy.mailbox.clone());
                row.retarget_to_smtp(&smtp);
                let entry = ResolvedEntry {
                    display_name: entry.display_name,
                    legacy_dn: entry.email_address,
                    smtp,
                    resolved_by,
                };
                RowResolution::Resolved { entry, proxy }
            }
            Err(reason) => RowResolution::Unresolved { reason },
        }
    }

    fn resolve(
        &self,
        entry: &Entry,
        cached_smtp: Option<&str>,
    ) -> Result<(String, ResolvedBy), String> {
        let dn = entry.email_address.trim();
        let name = entry.display_name.trim().to_lowercase();
        if dn.is_empty() {
            return Err("the entry has no legacyExchangeDN".into());
        }
        let dn_key = dn.to_lowercase();
        if let Some(smtp) = self.map.and_then(|map| map.by_legacy_dn.get(&dn_key)) {
            return Ok((smtp.clone(), ResolvedBy::AddressMapLegacyDn));
        }
        let by_dn = self.unique(|mailbox| {
            mailbox
                .legacy_dn
                .as_deref()
                .is_some_and(|known| known.trim().eq_ignore_ascii_case(dn))
        });
        if let Some(found) = by_dn? {
            return Ok((found, ResolvedBy::MailboxLegacyDn));
        }
        if let Some(smtp) = self.map.and_then(|map| map.by_display_name.get(&name)) {
            return Ok((smtp.clone(), ResolvedBy::AddressMapDisplayName));
        }
        if let Some(cached) = cached_smtp {
            return Ok((cached.to_owned(), ResolvedBy::CachedSmtpAddress));
        }
        if let Some(common_name) = common_name(dn) {
            let by_cn = self.unique(|mailbox| {
                mailbox_names(mailbox).any(|known| known.eq_ignore_ascii_case(&common_name))
            });
            if let Some(found) = by_cn? {
                return Ok((found, ResolvedBy::LegacyDnCommonName));
            }
        }
        if !name.is_empty() {
            let by_name = self.unique(|mailbox| {
                mailbox
                    .display_name
                    .as_deref()
                    .is_some_and(|known| known.trim().to_lowercase() == name)
            });
            if let Some(found) = by_name? {
                return Ok((found, ResolvedBy::MailboxDisplayName));
            }
        }
        Err(
            "no plan mailbox or address_map row matches its legacyExchangeDN or display name"
                .into(),
        )
    }

    /// The single mailbox matching, `Ok(None)` for none, `Err` naming them when several do:
    /// guessing between two people would send mail to the wrong one.
    fn unique(&self, matches: impl Fn(&KnownMailbox) -> bool) -> Result<Option<String>, String> {
        let found: BTreeSet<&str> = self
            .known
            .iter()
            .filter(|m| matches(m))
            .map(|m| m.smtp.as_str())
            .collect();
        match found.len() {
            0 => Ok(None),
            1 => Ok(found.into_iter().next().map(str::to_owned)),
            _ => Err(format!(
                "ambiguous: matches {}",
                found.into_iter().collect::<Vec<_>>().join(", ")
            )),
        }
    }

    /// The plan mailbox owning `address` as primary address or alias.
    fn mailbox_for(&self, address: &str) -> Option<&KnownMailbox> {
        self.known.iter().find(|mailbox| {
            mailbox.smtp.eq_ignore_ascii_case(address)
                || mailbox
                    .aliases
                    .iter()
                    .any(|alias| alias.eq_ignore_ascii_case(address))
        })
    }
}

/// Names an Exchange `cn=` could carry for this mailbox.
fn mailbox_names(mailbox: &KnownMailbox) -> impl Iterator<Item = String> + '_ {
    let local_part = |address: &str| address.split('@').next().unwrap_or(address).to_owned();
    std::iter::once(local_part(&mailbox.smtp))
        .chain(mailbox.aliases.iter().map(move |alias| local_part(alias)))
        .chain(mailbox.legacy_dn.as_deref().and_then(common_name))
}

/// The last `cn=` of a legacyExchangeDN, without the hex prefix Exchange 2007+ and Exchange
/// Online put in front of the alias (`cn=1a2b3c4d5e6f…-alice`).
pub fn common_name(legacy_dn: &str) -> Option<String> {
    let last = legacy_dn.rsplit('/').find(|part| {
        part.get(..3)
            .is_some_and(|prefix| prefix.eq_ignore_ascii_case("cn="))
    })?;
    let value = last.get(3..)?.trim();
    let stripped = match value.split_once('-') {
        Some((prefix, rest))
            if prefix.len() >= 8
                && prefix.bytes().all(|b| b.is_ascii_hexdigit())
                && !rest.is_empty() =>
        {
            rest
        }
        _ => value,
    };
    Some(stripped.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::autocomplete::format::Property;

    fn mailbox(smtp: &str, name: &str, aliases: &[&str], dn: Option<&str>) -> KnownMailbox {
        KnownMailbox {
            smtp: smtp.into(),
            display_name: Some(name.into()),
            aliases: aliases.iter().map(|a| (*a).to_owned()).collect(),
            legacy_dn: dn.map(str::to_owned),
        }
    }

    fn ex_row(name: &str, dn: &str) -> Row {
        Row::from_entry(&Entry {
            display_name: name.into(),
            address_type: "EX".into(),
            email_address: dn.into(),
            smtp_address: None,
            weight: 1,
        })
    }

    fn resolved_by(resolution: &RowResolution) -> Option<ResolvedBy> {
        match resolution {
            RowResolution::Resolved { entry, .. } => Some(entry.resolved_by),
            _ => None,
        }
    }

    #[test]
    fn common_name_strips_exchange_hex_prefix() {
        assert_eq!(
            common_name("/o=Acme/ou=First/cn=Recipients/cn=alice").as_deref(),
            Some("alice")
        );
        assert_eq!(
            common_name("/o=ExchangeLabs/ou=Exchange Administrative Group (FYDIBOHF23SPDLT)/cn=Recipients/cn=3f2a1b0c9d8e4f7a8b6c5d4e3f2a1b0c-bob.jones").as_deref(),
            Some("bob.jones")
        );
        assert_eq!(
            common_name("/o=Acme/cn=Recipients/cn=mary-ann").as_deref(),
            Some("mary-ann")
        );
        assert_eq!(common_name("nothing here"), None);
    }

    #[test]
    fn each_kind_of_evidence_resolves() {
        let known = [
            mailbox(
                "alice@acme.co.uk",
                "Alice Smith",
                &["asmith"],
                Some("/o=Acme/ou=First/cn=Recipients/cn=alice"),
            ),
            mailbox("bob@acme.co.uk", "Bob Jones", &["bob.jones@acme.com"], None),
        ];
        let map = AddressMap::from_csv(
            b"legacy_dn,display_name,smtp\n/o=Acme/ou=First/cn=Recipients/cn=carol,,carol@acme.co.uk\n,Front Desk,reception@acme.co.uk\n",
            Path::new("map.csv"),
        )
        .expect("valid map");
        let resolver = Resolver::new(&known, Some(&map));
        let cases = [
            (
                ex_row("Carol", "/o=Acme/ou=First/cn=Recipients/cn=carol"),
                ResolvedBy::AddressMapLegacyDn,
            ),
            (
                ex_row("A. Smith", "/O=ACME/ou=First/cn=Recipients/cn=ALICE"),
                ResolvedBy::MailboxLegacyDn,
            ),
            (
                ex_row("Front Desk", "/o=Acme/ou=First/cn=Recipients/cn=desk"),
                ResolvedBy::AddressMapDisplayName,
            ),
            (
                ex_row("Someone", "/o=Acme/ou=First/cn=Recipients/cn=asmith"),
                ResolvedBy::LegacyDnCommonName,
            ),
            (
                ex_row("Bob Jones", "/o=Acme/ou=First/cn=Recipients/cn=rjones"),
                ResolvedBy::MailboxDisplayName,
            ),
        ];
        for (mut row, expected) in cases {
            let resolution = resolver.resolve_row(&mut row);
            assert_eq!(resolved_by(&resolution), Some(expected), "{resolution:?}");
            assert_eq!(row.entry().address_type, "SMTP");
        }
        let mut cached = ex_row("Dave", "/o=Acme/ou=First/cn=Recipients/cn=dave");
        cached.set(Property::unicode(
            tags::PID_SMTP_ADDRESS,
            "BOB.JONES@acme.com",
        ));
        let RowResolution::Resolved { entry, proxy } = resolver.resolve_row(&mut cached) else {
            panic!("cached address resolves");
        };
        assert_eq!(
            (entry.resolved_by, entry.smtp.as_str()),
            (ResolvedBy::CachedSmtpAddress, "bob@acme.co.uk")
        );
        assert_eq!(
            proxy,
            Some(X500Proxy {
                mailbox: "bob@acme.co.uk".into(),
                proxy_address: "X500:/o=Acme/ou=First/cn=Recipients/cn=dave".into()
            })
        );
    }

    #[test]
    fn non_plan_addresses_get_no_proxy_and_ambiguity_is_unresolved() {
        let known = [
            mailbox("a@acme.co.uk", "Sam Lee", &[], None),
            mailbox("b@acme.co.uk", "Sam Lee", &[], None),
        ];
        let map = AddressMap::from_csv(
            b"display_name,smtp\nCarol,carol@elsewhere.org\n",
            Path::new("m.csv"),
        )
        .expect("map");
        let resolver = Resolver::new(&known, Some(&map));
        let RowResolution::Resolved { proxy, .. } =
            resolver.resolve_row(&mut ex_row("Carol", "/o=X/cn=carol"))
        else {
            panic!("mapped");
        };
        assert_eq!(proxy, None);
        let mut ambiguous = ex_row("Sam Lee", "/o=X/cn=slee");
        let resolution = resolver.resolve_row(&mut ambiguous);
        assert_eq!(
            resolution,
            RowResolution::Unresolved {
                reason: "ambiguous: matches a@acme.co.uk, b@acme.co.uk".into()
            }
        );
        assert_eq!(ambiguous.entry().address_type, "EX");
    }

    #[test]
    fn address_map_errors_name_file_and_line() {
        let err = AddressMap::from_csv(
            b"legacy_dn,smtp\n/o=X/cn=a,not-an-address\n",
            Path::new("map.csv"),
        )
        .expect_err("bad");
        assert_eq!(
            err.to_string(),
            "map.csv:2: expected an SMTP address in `smtp`, found \"not-an-address\""
        );
        let err =
            AddressMap::from_csv(b"name,smtp\n", Path::new("map.csv")).expect_err("bad header");
        assert!(err
            .to_string()
            .contains("expected a `legacy_dn` or `display_name` column"));
        let err = AddressMap::from_csv(
            b"legacy_dn,smtp\n/o=X/cn=a,a@x.com\n# note\n/O=x/cn=A,b@x.com\n",
            Path::new("m.csv"),
        )
        .expect_err("conflict");
        assert_eq!(err.to_string(), "m.csv:4: \"/O=x/cn=A\" is already mapped to a@x.com on line 2; expected one address per key");
    }
}
