//! The `manual` provider: a person makes the change at the DNS host's web page. cutover says
//! exactly what to change — a table in the terms registrars use (host, type, value,
//! priority, TTL) and the same as a zone-file snippet for hosts that take one — and changes
//! nothing itself.

use std::fmt::Write as _;

use super::provider::{Applied, Provider, ProviderFuture};
use super::rrset::{relative_name, shown_name, type_name, zone_file_value, Change};
use super::DnsError;
use crate::plan::model::RecordType;

/// See the module docs.
pub struct Manual;

impl Provider for Manual {
    fn describe(&self) -> String {
        "manual".into()
    }

    fn apply<'a>(
        &'a self,
        zone: &'a str,
        changes: &'a [Change],
    ) -> ProviderFuture<'a, Result<Applied, DnsError>> {
        let instructions = instructions(zone, changes);
        Box::pin(async move { Ok(Applied::ByPerson { instructions }) })
    }
}

/// One row of the registrar table.
struct Row {
    action: &'static str,
    rtype: &'static str,
    host: String,
    value: String,
    priority: String,
    ttl: String,
}

/// The table and the zone-file snippet for `changes` in `zone`.
pub fn instructions(zone: &str, changes: &[Change]) -> String {
    let mut rows = Vec::new();
    for change in changes {
        let key = &change.after.key;
        let host = relative_name(&key.name, zone);
        let ttl_changed = change.before.exists()
            && change.after.exists()
            && change.before.ttl != change.after.ttl;
        let row = |action, value: &str, ttl: Option<u32>| {
            let (priority, value) = split_priority(key.rtype, value);
            Row {
                action,
                rtype: type_name(key.rtype),
                host: host.clone(),
                value,
                priority,
                ttl: ttl.map(|t| t.to_string()).unwrap_or_default(),
            }
        };
        for value in &change.before.values {
            if !change.after.values.contains(value) {
                rows.push(row("delete", value, None));
            }
        }
        for value in &change.after.values {
            if !change.before.values.contains(value) {
                rows.push(row("add", value, Some(change.after.ttl)));
            } else if ttl_changed {
                rows.push(row("set TTL", value, Some(change.after.ttl)));
            }
        }
    }
    let mut out = format!(
        "Change these records at the DNS host of {}:\n\n",
        shown_name(zone)
    );
    let header = Row {
        action: "action",
        rtype: "type",
        host: "host".into(),
        value: "value".into(),
        priority: "priority".into(),
        ttl: "TTL".into(),
    };
    let width = |f: &dyn Fn(&Row) -> usize| {
        std::iter::once(&header)
            .chain(rows.iter())
            .map(f)
            .max()
            .unwrap_or(0)
    };
    let (wa, wt, wh, wv, wp) = (
        width(&|r| r.action.len()),
        width(&|r| r.rtype.len()),
        width(&|r| r.host.chars().count()),
        width(&|r| r.value.chars().count()),
        width(&|r| r.priority.len()),
    );
    for r in std::iter::once(&header).chain(rows.iter()) {
        let line = format!(
            "  {:<wa$}  {:<wt$}  {:<wh$}  {:<wv$}  {:<wp$}  {}",
            r.action, r.rtype, r.host, r.value, r.priority, r.ttl
        );
        let _ = writeln!(out, "{}", line.trim_end());
    }
    let _ = writeln!(
        out,
        "\nAs a zone-file snippet (the complete record sets after the change):\n\n  $ORIGIN {}",
        zone
    );
    let owner_width = changes
        .iter()
        .map(|c| relative_name(&c.after.key.name, zone).len())
        .max()
        .unwrap_or(1);
    for change in changes {
        let key = &change.after.key;
        let owner = relative_name(&key.name, zone);
        if !change.after.exists() {
            let _ = writeln!(
                out,
                "  ; delete every {} record of {owner}",
                type_name(key.rtype)
            );
            continue;
        }
        for value in &change.after.values {
            let _ = writeln!(
                out,
                "  {owner:<owner_width$} {} IN {:<5} {}",
                change.after.ttl,
                type_name(key.rtype),
                zone_file_value(key.rtype, value)
            );
        }
    }
    out
}

/// MX `10 mx.example.` → (`10`, `mx.example`); other types have no priority column, and
/// host names lose the trailing dot registrars do not want.
fn split_priority(rtype: RecordType, value: &str) -> (String, String) {
    match rtype {
        RecordType::Mx => match value.split_once(' ') {
            Some((priority, host)) => (priority.to_string(), shown_name(host).to_string()),
            None => (String::new(), value.to_string()),
        },
        RecordType::Txt => (String::new(), value.to_string()),
        _ => (String::new(), shown_name(value).to_string()),
    }
}
