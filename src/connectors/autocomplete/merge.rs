//! Merging caches from several places (an old `.nk2` and a newer stream, or several PCs) into
//! one, the way a user would expect Outlook to have remembered them all.

use std::collections::HashMap;

use super::format::{AutocompleteFile, Row};
use super::tags;

/// The identity two rows share when they are the same recipient: the SMTP address when the
/// row has one (case-insensitive, as mail systems treat it), else the type and address, so
/// unresolved Exchange rows still collapse per legacyExchangeDN. Rows with no address at all
/// have no identity and are all kept.
pub fn identity(row: &Row) -> Option<String> {
    if let Some(smtp) = row.smtp_address() {
        return Some(format!("SMTP:{}", smtp.to_lowercase()));
    }
    let address = row
        .text(tags::PID_EMAIL_ADDRESS)
        .filter(|address| !address.is_empty())?;
    let kind = row
        .text(tags::PID_ADDRESS_TYPE)
        .unwrap_or_default()
        .to_uppercase();
    Some(format!("{kind}:{}", address.to_lowercase()))
}

/// Dedupes rows by [`identity`], keeping the row with the highest weight (the first one on a
/// tie), and orders the result by weight, highest first, as Outlook stores it. Rows of equal
/// weight keep the order in which their recipient was first seen, so the output depends only
/// on the order of the inputs.
pub fn merge_rows(rows: impl IntoIterator<Item = Row>) -> Vec<Row> {
    let mut kept: Vec<Row> = Vec::new();
    let mut slot_of: HashMap<String, usize> = HashMap::new();
    for row in rows {
        let Some(key) = identity(&row) else {
            kept.push(row);
            continue;
        };
        match slot_of.get(&key).copied() {
            Some(slot) => {
                if let Some(existing) = kept.get_mut(slot) {
                    if row.weight() > existing.weight() {
                        *existing = row;
                    }
                }
            }
            None => {
                slot_of.insert(key, kept.len());
                kept.push(row);
            }
        }
    }
    kept.sort_by_key(|row| std::cmp::Reverse(row.weight()));
    kept
}

/// A file of `major_version` around `rows`. Minor version, extra information and footer come
/// from the most recently written source of that major version, because Microsoft asks writers
/// to preserve them; the footer is otherwise the latest source footer, never the clock, so the
/// same inputs always give the same bytes.
pub fn assemble(
    sources: &[&AutocompleteFile],
    major_version: u32,
    rows: Vec<Row>,
) -> AutocompleteFile {
    let default_minor = if major_version == tags::MAJOR_NK2 {
        tags::MINOR_NK2
    } else {
        tags::MINOR_STREAM
    };
    let latest_footer = sources
        .iter()
        .map(|file| file.last_written_filetime())
        .max()
        .unwrap_or(0);
    let same_major = sources
        .iter()
        .filter(|file| file.major_version == major_version)
        .max_by_key(|file| file.last_written_filetime());
    let mut file = AutocompleteFile::new(major_version, default_minor);
    if let Some(template) = same_major {
        file.minor_version = template.minor_version;
        file.extra_info = template.extra_info.clone();
    }
    file.footer = latest_footer.to_le_bytes();
    file.rows = rows;
    file
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::autocomplete::entry::Entry;

    fn row(address: &str, weight: i32) -> Row {
        Row::from_entry(&Entry {
            display_name: address.to_uppercase(),
            address_type: "SMTP".into(),
            email_address: address.into(),
            smtp_address: Some(address.into()),
            weight,
        })
    }

    fn addresses(rows: &[Row]) -> Vec<(String, i32)> {
        rows.iter()
            .map(|r| (r.entry().email_address, r.weight()))
            .collect()
    }

    #[test]
    fn keeps_highest_weight_and_sorts_stably() {
        let merged = merge_rows(vec![
            row("a@x.com", 5),
            row("b@x.com", 9),
            row("A@X.com", 7),
            row("c@x.com", 5),
            row("b@x.com", 1),
        ]);
        assert_eq!(
            addresses(&merged),
            vec![
                ("b@x.com".into(), 9),
                ("A@X.com".into(), 7),
                ("c@x.com".into(), 5)
            ]
        );
    }

    #[test]
    fn equal_weights_keep_first_seen_row() {
        let mut first = row("a@x.com", 3);
        first
            .properties
            .push(crate::connectors::autocomplete::format::Property::long(
                0x7777, 1,
            ));
        let merged = merge_rows(vec![first.clone(), row("a@x.com", 3)]);
        assert_eq!(merged, vec![first]);
    }

    #[test]
    fn assemble_keeps_minor_and_extra_of_latest_same_major_source() {
        let mut old = AutocompleteFile::new(12, 3);
        old.extra_info = vec![1];
        old.footer = 10u64.to_le_bytes();
        let mut new = AutocompleteFile::new(12, 4);
        new.extra_info = vec![2];
        new.footer = 20u64.to_le_bytes();
        let nk2 = AutocompleteFile::new(10, 1);
        let file = assemble(&[&old, &new, &nk2], 12, Vec::new());
        assert_eq!(
            (
                file.minor_version,
                file.extra_info.clone(),
                file.last_written_filetime()
            ),
            (4, vec![2], 20)
        );
        let file = assemble(&[&new], 10, Vec::new());
        assert_eq!((file.minor_version, file.extra_info.len()), (1, 0));
    }
}
