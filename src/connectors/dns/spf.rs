//! Merging Microsoft 365's SPF include into a domain's existing SPF record (RFC 7208).
//!
//! A domain must publish exactly one `v=spf1` TXT record (two make every check a permerror),
//! so cutover never adds a second one: it rewrites the existing record, keeping what the
//! client relies on (other senders, the `all` policy) and dropping only what the plan names.
//! The merge is idempotent: merging an already merged record changes nothing, so `plan`
//! after the cutover shows no change.

/// RFC 7208 section 4.6.4: at most 10 terms that cause DNS lookups per check.
pub const LOOKUP_LIMIT: usize = 10;

/// The outcome of a merge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    /// The one SPF record to publish.
    pub record: String,
    /// Things a person should know: several SPF records found, the lookup limit passed.
    pub warnings: Vec<String>,
}

/// Whether a TXT value is an SPF record: `v=spf1` alone or followed by a space.
pub fn is_spf(txt: &str) -> bool {
    let lower = txt.trim_start().to_ascii_lowercase();
    lower == "v=spf1" || lower.starts_with("v=spf1 ")
}

/// Merges `include` (e.g. `include:spf.protection.outlook.com`) into the SPF records among
/// `existing` (all of them: several are merged into one, with a warning), after removing the
/// mechanisms in `drop` (compared without case and qualifier). The `all` mechanism and a
/// `redirect=` modifier stay last; with no record at all the result is
/// `v=spf1 <include> -all`.
pub fn merge(existing: &[&str], drop: &[String], include: &str) -> Merged {
    let records: Vec<&str> = existing.iter().copied().filter(|t| is_spf(t)).collect();
    let mut warnings = Vec::new();
    if records.len() > 1 {
        warnings.push(format!(
            "{} SPF records found (receivers treat that as a permanent error); merged into one",
            records.len()
        ));
    }
    let dropped: Vec<String> = drop.iter().map(|d| bare(d)).collect();
    let mut terms: Vec<String> = Vec::new();
    let mut all: Option<String> = None;
    let mut modifiers: Vec<String> = Vec::new();
    for record in &records {
        for term in record.split_whitespace().skip(1) {
            let key = bare(term);
            if dropped.contains(&key) {
                continue;
            }
            if key == "all" {
                all.get_or_insert_with(|| term.to_string());
            } else if key.contains('=') {
                if !modifiers.iter().any(|m| bare(m) == key) {
                    modifiers.push(term.to_string());
                }
            } else if !terms.iter().any(|t| bare(t) == key) {
                terms.push(term.to_string());
            }
        }
    }
    if !terms.iter().any(|t| bare(t) == bare(include)) {
        terms.push(include.to_string());
    }
    if records.is_empty() {
        all = Some("-all".into());
    }
    let mut record = String::from("v=spf1");
    for term in terms.iter().chain(all.iter()).chain(modifiers.iter()) {
        record.push(' ');
        record.push_str(term);
    }
    let lookups = lookup_terms(&record);
    if lookups > LOOKUP_LIMIT {
        warnings.push(format!(
            "the SPF record needs {lookups} DNS lookups, past RFC 7208's limit of {LOOKUP_LIMIT} \
             (receivers fail the check); drop senders the client no longer uses (`dns.spf.drop`)"
        ));
    }
    Merged { record, warnings }
}

/// Terms of one SPF record that cost a DNS lookup (`include`, `a`, `mx`, `ptr`, `exists`,
/// `redirect`). Nested includes cost more, which only resolving them can tell: this is the
/// record's own share, a lower bound.
pub fn lookup_terms(record: &str) -> usize {
    record
        .split_whitespace()
        .skip(1)
        .filter(|term| {
            let key = bare(term);
            let name = key.split([':', '/', '=']).next().unwrap_or("");
            matches!(name, "include" | "a" | "mx" | "ptr" | "exists" | "redirect")
        })
        .count()
}

/// A term without its qualifier, lowercased: `~include:X` → `include:x`.
fn bare(term: &str) -> String {
    term.trim()
        .trim_start_matches(['+', '-', '~', '?'])
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    const M365: &str = "include:spf.protection.outlook.com";

    #[test]
    fn merges_into_the_existing_record_keeping_its_policy() {
        let m = merge(
            &[
                "google-site-verification=x",
                "v=spf1 include:_spf-eu.ionos.com ~all",
            ],
            &[],
            M365,
        );
        assert_eq!(
            m.record,
            "v=spf1 include:_spf-eu.ionos.com include:spf.protection.outlook.com ~all"
        );
        assert!(m.warnings.is_empty());
    }

    #[test]
    fn drops_the_old_host_and_is_idempotent() {
        let drop = vec!["INCLUDE:_spf-eu.ionos.com".to_string()];
        let m = merge(&["v=spf1 mx +include:_spf-eu.ionos.com -all"], &drop, M365);
        assert_eq!(
            m.record,
            "v=spf1 mx include:spf.protection.outlook.com -all"
        );
        assert_eq!(merge(&[&m.record], &drop, M365).record, m.record);
    }

    #[test]
    fn no_record_gets_a_strict_one_and_two_records_become_one() {
        assert_eq!(
            merge(&[], &[], M365).record,
            "v=spf1 include:spf.protection.outlook.com -all"
        );
        let m = merge(&["v=spf1 a -all", "v=spf1 mx ~all"], &[], M365);
        assert_eq!(
            m.record,
            "v=spf1 a mx include:spf.protection.outlook.com -all"
        );
        assert_eq!(m.warnings.len(), 1);
    }

    #[test]
    fn warns_past_ten_lookups() {
        let existing = format!(
            "v=spf1 {} ~all",
            (0..10)
                .map(|i| format!("include:s{i}.example"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let m = merge(&[&existing], &[], M365);
        assert_eq!(lookup_terms(&m.record), 11);
        assert!(m.warnings[0].contains("11 DNS lookups"), "{:?}", m.warnings);
        assert_eq!(
            lookup_terms("v=spf1 ip4:192.0.2.0/24 a:x mx/24 redirect=y"),
            3
        );
    }
}
