//! The records a plan wants, per domain: computed from the target (Microsoft 365 publishes a
//! fixed set per domain), then the plan's own `dns.records` on top.
//!
//! Two phases, because the SPF record is merged into what the zone already has: [`keys`]
//! says which RRsets to read, [`desired`] turns what was read into what should be.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::rrset::{absolute, Rrset, RrsetKey};
use super::spf;
use crate::plan::model::{DnsRecord, Plan, RecordType, Target};

/// TTL of a record the plan does not give one (`dns.records[].ttl`).
pub const DEFAULT_TTL: u32 = 3600;
/// Microsoft 365's SPF include.
pub const M365_SPF_INCLUDE: &str = "include:spf.protection.outlook.com";
/// Where Outlook's autodiscover points for Microsoft 365.
pub const M365_AUTODISCOVER: &str = "autodiscover.outlook.com.";

/// One of the plan's domains and the zone holding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain {
    /// `acme.co.uk.`
    pub name: String,
    /// `acme.co.uk.`: the domain itself, or `dns.rfc2136.zone` for the plan's `domain`.
    pub zone: String,
}

/// The plan's domains (`domain` first, then `extra_domains`), each with its zone.
pub fn domains(plan: &Plan) -> Vec<Domain> {
    let main_zone = plan
        .dns
        .as_ref()
        .and_then(|d| d.rfc2136.as_ref())
        .and_then(|r| r.zone.as_deref())
        .map(absolute);
    std::iter::once(&plan.domain)
        .chain(plan.extra_domains.iter())
        .enumerate()
        .map(|(i, d)| Domain {
            name: absolute(d),
            zone: match (&main_zone, i) {
                (Some(zone), 0) => zone.clone(),
                _ => absolute(d),
            },
        })
        .collect()
}

/// What cutover wants for one domain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    pub rrsets: Vec<Rrset>,
    /// For the consultant: an SPF record past the lookup limit, DKIM left out, …
    pub warnings: Vec<String>,
}

/// A change to a TXT set: merge the SPF include, or put one value.
#[derive(Debug, Clone)]
enum TxtEdit {
    MergeSpf,
    Put(String),
}

/// What the plan asks for a domain, before the zone is read.
struct Wants {
    sets: BTreeMap<RrsetKey, Rrset>,
    txt: BTreeMap<RrsetKey, (u32, Vec<TxtEdit>)>,
    warnings: Vec<String>,
}

fn wants(plan: &Plan, domain: &Domain) -> Wants {
    let mut w = Wants {
        sets: BTreeMap::new(),
        txt: BTreeMap::new(),
        warnings: Vec::new(),
    };
    let Some(dns) = plan.dns.as_ref() else {
        return w;
    };
    let bare = domain.name.trim_end_matches('.');
    let dashed = bare.replace('.', "-");
    if let Target::M365 {
        tenant,
        initial_domain,
        ..
    } = &plan.target
    {
        let tenant_values = dns.domains.get(bare).cloned().unwrap_or_default();
        let mx_host = tenant_values
            .mx_host
            .clone()
            .unwrap_or_else(|| format!("{dashed}.mail.protection.outlook.com"));
        let apex = |rtype| RrsetKey::new(&domain.name, rtype);
        let mx = apex(RecordType::Mx);
        w.sets.insert(
            mx.clone(),
            Rrset::new(mx, DEFAULT_TTL, [format!("0 {}", absolute(&mx_host))]),
        );
        let mut apex_txt = vec![TxtEdit::MergeSpf];
        if let Some(verification) = tenant_values.verification {
            apex_txt.push(TxtEdit::Put(verification));
        }
        w.txt.insert(apex(RecordType::Txt), (DEFAULT_TTL, apex_txt));
        let cname = |w: &mut Wants, name: String, to: String| {
            let key = RrsetKey::new(&name, RecordType::Cname);
            w.sets
                .insert(key.clone(), Rrset::new(key, DEFAULT_TTL, [to]));
        };
        cname(
            &mut w,
            format!("autodiscover.{}", domain.name),
            M365_AUTODISCOVER.into(),
        );
        let initial = initial_domain
            .clone()
            .or_else(|| tenant.ends_with(".onmicrosoft.com").then(|| tenant.clone()));
        match initial {
            Some(initial) => {
                for selector in ["selector1", "selector2"] {
                    cname(
                        &mut w,
                        format!("{selector}._domainkey.{}", domain.name),
                        absolute(&format!("{selector}-{dashed}._domainkey.{initial}")),
                    );
                }
            }
            None => w.warnings.push(format!(
                "DKIM selectors of {bare} left out: the target names no `initial_domain` \
                 (*.onmicrosoft.com)"
            )),
        }
    }
    // The plan's own records: grouped per RRset, each group replacing the computed set.
    let mut groups: BTreeMap<RrsetKey, (u32, Vec<String>)> = BTreeMap::new();
    for record in dns
        .records
        .iter()
        .filter(|r| record_domain(plan, r) == domain.name)
    {
        let key = RrsetKey::new(&owner_name(&record.name, &domain.name), record.record_type);
        let ttl = record.ttl.unwrap_or(DEFAULT_TTL);
        if record.record_type == RecordType::Txt {
            let entry = w.txt.entry(key).or_insert((ttl, Vec::new()));
            entry.0 = record.ttl.unwrap_or(entry.0);
            entry.1.push(TxtEdit::Put(record.value.clone()));
            continue;
        }
        let value = match canonical_value(record) {
            Ok(v) => v,
            Err(e) => {
                w.warnings.push(e);
                continue;
            }
        };
        let group = groups.entry(key).or_insert((ttl, Vec::new()));
        group.0 = group.0.min(ttl);
        group.1.push(value);
    }
    for (key, (ttl, values)) in groups {
        w.sets.insert(key.clone(), Rrset::new(key, ttl, values));
    }
    w
}

/// The RRsets to read for `domain` before [`desired`] can say what they should be.
pub fn keys(plan: &Plan, domain: &Domain) -> Vec<RrsetKey> {
    let w = wants(plan, domain);
    let mut keys: Vec<RrsetKey> = w.sets.into_keys().chain(w.txt.into_keys()).collect();
    keys.sort();
    keys.dedup();
    keys
}

/// What `domain`'s managed RRsets should be, given what the zone has now (`current`, by key;
/// a key missing from it counts as absent).
pub fn desired(plan: &Plan, domain: &Domain, current: &BTreeMap<RrsetKey, Rrset>) -> Desired {
    let w = wants(plan, domain);
    let mut warnings = w.warnings;
    let mut rrsets: Vec<Rrset> = w.sets.into_values().collect();
    let drop = plan
        .dns
        .as_ref()
        .map(|d| d.spf.drop.clone())
        .unwrap_or_default();
    for (key, (ttl, edits)) in w.txt {
        let mut values: Vec<String> = current
            .get(&key)
            .map(|r| r.values.clone())
            .unwrap_or_default();
        for edit in edits {
            match edit {
                TxtEdit::MergeSpf => {
                    let existing: Vec<&str> = values.iter().map(String::as_str).collect();
                    let merged = spf::merge(&existing, &drop, M365_SPF_INCLUDE);
                    warnings.extend(
                        merged
                            .warnings
                            .into_iter()
                            .map(|w| format!("{}: {w}", key.name.trim_end_matches('.'))),
                    );
                    values.retain(|v| !spf::is_spf(v));
                    values.push(merged.record);
                }
                TxtEdit::Put(value) => {
                    if let Some(tag) = version_tag(&value) {
                        values.retain(|v| version_tag(v).as_deref() != Some(tag.as_str()));
                    }
                    if spf::is_spf(&value) && spf::lookup_terms(&value) > spf::LOOKUP_LIMIT {
                        warnings.push(format!(
                            "{}: the SPF record needs {} DNS lookups, past RFC 7208's limit of {}",
                            key.name.trim_end_matches('.'),
                            spf::lookup_terms(&value),
                            spf::LOOKUP_LIMIT
                        ));
                    }
                    values.push(value);
                }
            }
        }
        rrsets.push(Rrset::new(key, ttl, values));
    }
    rrsets.sort_by(|a, b| a.key.cmp(&b.key));
    Desired { rrsets, warnings }
}

/// `v=spf1 …` → `v=spf1`, `v=DMARC1; p=none` → `v=dmarc1`: TXT values with the same tag
/// replace each other.
fn version_tag(value: &str) -> Option<String> {
    let lower = value.trim_start().to_ascii_lowercase();
    if !lower.starts_with("v=") {
        return None;
    }
    Some(
        lower
            .split([' ', ';'])
            .next()
            .unwrap_or_default()
            .to_string(),
    )
}

/// The absolute domain a plan record belongs to.
pub fn record_domain(plan: &Plan, record: &DnsRecord) -> String {
    absolute(record.domain.as_deref().unwrap_or(&plan.domain))
}

/// `@` → the domain, `autodiscover` → `autodiscover.<domain>`, `x.example.` stays absolute.
pub fn owner_name(name: &str, domain: &str) -> String {
    let name = name.trim();
    if name == "@" || name.is_empty() {
        absolute(domain)
    } else if name.ends_with('.') {
        absolute(name)
    } else {
        absolute(&format!("{name}.{}", domain.trim_end_matches('.')))
    }
}

/// A plan record's value in canonical form (see [`super::rrset`]).
pub fn canonical_value(record: &DnsRecord) -> Result<String, String> {
    let value = record.value.trim();
    let bad = |why: &str| {
        Err(format!(
            "record {} {}: `{value}` {why}",
            super::rrset::type_name(record.record_type),
            record.name
        ))
    };
    match record.record_type {
        RecordType::Mx => Ok(format!(
            "{} {}",
            record.priority.unwrap_or(0),
            absolute(value)
        )),
        RecordType::Cname => Ok(absolute(value)),
        RecordType::Txt => Ok(record.value.clone()),
        RecordType::A | RecordType::Aaaa => match value.parse::<IpAddr>() {
            Ok(ip @ IpAddr::V4(_)) if record.record_type == RecordType::A => Ok(ip.to_string()),
            Ok(ip @ IpAddr::V6(_)) if record.record_type == RecordType::Aaaa => Ok(ip.to_string()),
            _ => bad("is not an address of that family"),
        },
        RecordType::Srv => {
            let parts: Vec<&str> = value.split_whitespace().collect();
            match parts.as_slice() {
                [p, w, port, target]
                    if p.parse::<u16>().is_ok()
                        && w.parse::<u16>().is_ok()
                        && port.parse::<u16>().is_ok() =>
                {
                    Ok(format!("{p} {w} {port} {}", absolute(target)))
                }
                _ => bad("is not `priority weight port target`"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(yaml_target: &str, dns: &str) -> Plan {
        let text = format!(
            "version: 1\nname: t\ndomain: acme.co.uk\nextra_domains: [acme.com]\ntarget: {yaml_target}\nusers: []\ndns: {dns}\n"
        );
        let loaded = crate::plan::load_str(
            text,
            "t.yaml",
            std::path::Path::new("."),
            Default::default(),
        );
        loaded.plan.expect("test plan is valid")
    }

    const M365: &str = "{ kind: m365, tenant: acme.onmicrosoft.com, initial_domain: acme.onmicrosoft.com, auth: { client_id: x, client_secret: { env: X } } }";

    fn values(d: &Desired, name: &str, rtype: RecordType) -> Vec<String> {
        d.rrsets
            .iter()
            .find(|r| r.key == RrsetKey::new(name, rtype))
            .map(|r| r.values.clone())
            .unwrap_or_default()
    }

    #[test]
    fn m365_records_per_domain_with_plan_overrides() {
        let p = plan(
            M365,
            "{ provider: manual, domains: { acme.com: { mx_host: acme-com.r-v1.mx.microsoft, verification: MS=ms1 } }, \
               records: [ { name: '@', type: TXT, value: 'v=DMARC1; p=quarantine', domain: acme.com }, \
                          { name: autodiscover, type: CNAME, value: autodiscover.example.net } ] }",
        );
        let domains = domains(&p);
        assert_eq!(domains.len(), 2);
        let current: BTreeMap<RrsetKey, Rrset> = [Rrset::new(
            RrsetKey::new("acme.com", RecordType::Txt),
            300,
            ["v=DMARC1; p=none".to_string(), "v=spf1 mx -all".to_string()],
        )]
        .into_iter()
        .map(|r| (r.key.clone(), r))
        .collect();
        let main = desired(&p, &domains[0], &BTreeMap::new());
        assert_eq!(
            values(&main, "acme.co.uk", RecordType::Mx),
            ["0 acme-co-uk.mail.protection.outlook.com."]
        );
        assert_eq!(
            values(&main, "autodiscover.acme.co.uk", RecordType::Cname),
            ["autodiscover.example.net."]
        );
        assert_eq!(
            values(&main, "selector1._domainkey.acme.co.uk", RecordType::Cname),
            ["selector1-acme-co-uk._domainkey.acme.onmicrosoft.com."]
        );
        let extra = desired(&p, &domains[1], &current);
        assert_eq!(
            values(&extra, "acme.com", RecordType::Mx),
            ["0 acme-com.r-v1.mx.microsoft."]
        );
        assert_eq!(
            values(&extra, "acme.com", RecordType::Txt),
            [
                "MS=ms1",
                "v=DMARC1; p=quarantine",
                "v=spf1 mx include:spf.protection.outlook.com -all"
            ]
        );
        assert_eq!(
            values(&extra, "autodiscover.acme.com", RecordType::Cname),
            ["autodiscover.outlook.com."]
        );
    }

    #[test]
    fn an_imap_target_takes_only_the_plans_records() {
        let p = plan(
            "{ kind: imap, host: mail.example.net }",
            "{ provider: manual, records: [ { name: '@', type: MX, value: mail.example.net, priority: 10 }, \
                                             { name: '@', type: MX, value: backup.example.net, priority: 20 } ] }",
        );
        let domains = domains(&p);
        assert_eq!(keys(&p, &domains[1]), Vec::<RrsetKey>::new());
        let main = desired(&p, &domains[0], &BTreeMap::new());
        assert_eq!(main.rrsets.len(), 1);
        assert_eq!(
            values(&main, "acme.co.uk", RecordType::Mx),
            ["10 mail.example.net.", "20 backup.example.net."]
        );
    }
}
