//! Text for people: plan previews, the Markdown report, numbers and sizes. The library
//! (`crate::ops`) hands over data; everything about how it reads lives here.

use std::fmt::Write as _;

use crate::graph::{StepGraph, StepKind};
use crate::ops::{Action, PlanRow, PlanView, Report, StepReport};
use crate::runners::skipped::SkippedMessage;

/// Terraform-style text of a plan preview.
pub fn plan(view: &PlanView, graph: &StepGraph) -> String {
    let mut out = String::new();
    for row in &view.rows {
        // A multi-line reason (a gate's instructions) continues under the step's line.
        let what = describe(graph, row).replace('\n', "\n      ");
        let _ = writeln!(out, "  {} {:<32} {what}", row.action.symbol(), row.step);
        render_folders(&mut out, row);
        if row.action != Action::Unchanged {
            for line in &row.detail {
                let _ = writeln!(out, "      {line}");
            }
        }
    }
    if !view.rows.is_empty() {
        out.push('\n');
    }
    if let Some(dns) = &view.dns {
        render_dns(&mut out, dns);
    }
    let _ = writeln!(
        out,
        "Plan: {} to create, {} to change, {} unchanged{}.",
        view.count(Action::Create),
        view.count(Action::Change),
        view.count(Action::Unchanged),
        match view.count(Action::Blocked) {
            0 => String::new(),
            n => format!(", {n} blocked"),
        }
    );
    out
}

/// The DNS section of `plan`: per zone the servers read, the TTL lowering and the cutover
/// as RRset diffs, then the wait and what a rollback would change.
fn render_dns(out: &mut String, dns: &crate::runners::dns::DnsPreview) {
    if dns.zones.is_empty()
        && dns.rollback.is_empty()
        && dns.warnings.is_empty()
        && dns.not_before.is_none()
    {
        return;
    }
    let _ = writeln!(out, "DNS ({}):", dns.provider);
    for zone in &dns.zones {
        let _ = writeln!(
            out,
            "  zone {} (read at {}; verified at {})",
            zone.zone,
            zone.read_from,
            zone.servers.join(", ")
        );
        for (title, lines) in [
            ("dns.lower-ttl", &zone.lower_ttl),
            ("dns.cutover", &zone.cutover),
        ] {
            if lines.is_empty() {
                continue;
            }
            let _ = writeln!(out, "    {title}:");
            for line in lines {
                let _ = writeln!(out, "      {line}");
            }
        }
        if zone.lower_ttl.is_empty() && zone.cutover.is_empty() {
            let _ = writeln!(
                out,
                "    no change: the zone already publishes the desired records"
            );
        }
    }
    if let (Some(at), Some(left)) = (&dns.not_before, &dns.time_left) {
        let _ = writeln!(
            out,
            "  dns.cutover not before {at} ({left} left; `apply --wait` sleeps until then)"
        );
    }
    for warning in &dns.warnings {
        let _ = writeln!(out, "  warning: {warning}");
    }
    if !dns.rollback.is_empty() {
        let _ = writeln!(out, "  `cutover rollback dns` would change:");
        for line in &dns.rollback {
            let _ = writeln!(out, "      {line}");
        }
    }
    out.push('\n');
}

/// A table of messages with the step that recorded each, under `title`; `last`: the heading
/// of the reason column. Nothing when there are none.
fn message_table(md: &mut String, title: &str, last: &str, messages: &[(&str, &SkippedMessage)]) {
    if messages.is_empty() {
        return;
    }
    let _ = write!(
        md,
        "\n{title}\n\n| step | folder | received | size | subject | {last} |\n|---|---|---|---:|---|---|\n"
    );
    let cell = |s: &str| s.replace('\n', " ").replace('|', "\\|");
    for (step, m) in messages {
        let _ = writeln!(
            md,
            "| `{step}` | {} | {} | {} | {} | {} |",
            cell(&m.folder),
            m.date.as_deref().unwrap_or("unknown"),
            human_bytes(m.size),
            cell(m.subject.as_deref().unwrap_or("")),
            cell(&m.reason)
        );
    }
}

/// The report's section on steps that needed more than one attempt or were throttled, so a
/// run that "succeeded" the hard way says so.
fn retries_and_throttling(md: &mut String, report: &Report) {
    let struggled: Vec<&StepReport> = report
        .users
        .iter()
        .flat_map(|u| &u.steps)
        .chain(&report.other_steps)
        .filter(|s| s.struggled())
        .collect();
    if struggled.is_empty() {
        return;
    }
    let retried = struggled.iter().filter(|s| s.attempts > 1).count();
    let throttled = struggled
        .iter()
        .filter(|s| s.throttled_secs.is_some())
        .count();
    let _ = write!(
        md,
        "\n## Retries and throttling\n\n{retried} step{} needed more than one attempt and {throttled} \
         {} throttled by the target (the event log beside the state has every retry's error).\n\n\
         | step | attempts | throttled |\n|---|---:|---:|\n",
        plural(retried as u64),
        if throttled == 1 { "was" } else { "were" }
    );
    for s in struggled {
        let _ = writeln!(
            md,
            "| `{}` | {} | {} |",
            s.step,
            s.attempts,
            s.throttled_secs
                .map_or_else(|| "—".to_string(), |secs| format!("{secs} s"))
        );
    }
}

/// `1 step blocked (copy.ana.pc)`, `3 steps blocked (a, b, c)`: the steps named, so a
/// summary at the end of a long preview says which lines to look for (the first
/// [`NAMED_BLOCKED`], then how many more).
pub fn steps_blocked(blocked: &[&str]) -> String {
    let n = blocked.len();
    let mut names = blocked
        .iter()
        .take(NAMED_BLOCKED)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if n > NAMED_BLOCKED {
        names.push_str(&format!(" and {} more", n - NAMED_BLOCKED));
    }
    format!(
        "{n} step{} blocked ({names})",
        if n == 1 { "" } else { "s" }
    )
}

/// How many blocked steps a summary line names.
const NAMED_BLOCKED: usize = 8;

/// The folder mapping under a step's line, one folder per line, aligned:
///
/// ```text
///       INBOX.Sent   -> Sent           2 messages, 1.2 kB
///       Newsletters     excluded       3 messages stay at the source
/// ```
fn render_folders(out: &mut String, row: &PlanRow) {
    // Padding counts chars, so decoded names (`Entwürfe`) line up like ASCII ones.
    let source_width = row
        .folders
        .iter()
        .map(|f| f.source.chars().count())
        .chain(row.excluded.iter().map(|e| e.source.chars().count()))
        .max()
        .unwrap_or(0);
    const EXCLUDED: &str = "excluded";
    let target_width = row
        .folders
        .iter()
        .map(|f| f.target.chars().count())
        .chain((!row.excluded.is_empty()).then_some(EXCLUDED.len()))
        .max()
        .unwrap_or(0);
    for f in &row.folders {
        let counts = if f.items == 0 {
            "nothing to copy".to_string()
        } else {
            format!(
                "{} message{}, {}",
                thousands(f.items),
                plural(f.items),
                human_bytes(f.bytes)
            )
        };
        let present = if f.present > 0 {
            format!("; {} already at target", thousands(f.present))
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "      {:<source_width$} -> {:<target_width$}  {counts}{present}",
            f.source, f.target
        );
    }
    for e in &row.excluded {
        let left = match e.messages {
            Some(0) => "empty".to_string(),
            Some(n) => format!(
                "{} message{} {} at the source",
                thousands(n),
                plural(n),
                if n == 1 { "stays" } else { "stay" }
            ),
            None => "stays at the source".to_string(),
        };
        let _ = writeln!(
            out,
            "      {:<source_width$}    {:<target_width$}  {left}",
            e.source, EXCLUDED
        );
    }
}

fn describe(graph: &StepGraph, row: &PlanRow) -> String {
    let kind = graph.step(&row.step).map(|s| s.kind);
    let counts = match (row.items, row.bytes) {
        (Some(items), Some(bytes)) if matches!(kind, Some(StepKind::Copy | StepKind::Delta)) => {
            let present = row.present.unwrap_or(0);
            format!(
                "copy {} message{}, {}; {} already at target",
                thousands(items),
                plural(items),
                human_bytes(bytes),
                thousands(present)
            )
        }
        (Some(items), _) if kind == Some(StepKind::Verify) => {
            format!("compare {} message{}", thousands(items), plural(items))
        }
        (Some(items), _) if matches!(kind, Some(StepKind::LowerTtl | StepKind::Cutover)) => {
            format!("change {} record set{}", thousands(items), plural(items))
        }
        _ => String::new(),
    };
    let reason = row.reason.clone().unwrap_or_default();
    if row.action == Action::Change && reason == crate::engine::CATCH_UP {
        let (items, bytes) = (row.items.unwrap_or(0), row.bytes.unwrap_or(0));
        return format!(
            "catch up: {} new message{}, {}",
            thousands(items),
            plural(items),
            human_bytes(bytes)
        );
    }
    // A runner's own one-line summary says what it does better than generic counts (an
    // upload's blocks are not messages).
    let counts = row.summary.clone().unwrap_or(counts);
    match row.action {
        Action::Unchanged => row
            .summary
            .clone()
            .unwrap_or_else(|| "already done".to_string()),
        Action::Blocked => format!("blocked: {reason}"),
        Action::Change if !counts.is_empty() => format!("{counts} ({reason})"),
        Action::Change => reason,
        Action::Create if counts.is_empty() => {
            kind.map_or(String::new(), |k| default_description(k).to_string())
        }
        Action::Create => counts,
    }
}

fn default_description(kind: StepKind) -> &'static str {
    match kind {
        StepKind::User => "make sure the mailbox exists",
        StepKind::Copy => "copy mail",
        StepKind::LowerTtl => "lower the TTL of the managed records",
        StepKind::Cutover => "point DNS at the target",
        StepKind::Delta => "copy mail that arrived since the copy",
        StepKind::Autocomplete => "carry the autocomplete cache over",
        StepKind::Verify => "compare source and target",
        StepKind::Manual => "wait for approval",
    }
}

/// `1,204`
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `88.3 MB` (decimal units, as mail providers quote sizes).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// What a step's counted items are, by its kind, for progress lines, `status` and the report:
/// a copy step copies messages, a verify step verifies them, a user step makes a mailbox ready.
pub fn items_word(step: &str) -> &'static str {
    match step.split('.').next() {
        Some("copy" | "delta") => "copied",
        Some("verify") => "verified",
        Some("user") => "ready",
        Some("autocomplete") => "carried over",
        Some("dns") => "changed",
        _ => "done",
    }
}

/// `39 copied`, `1 ready`: a step's item count with its word.
pub fn items_done(step: &str, items: u64) -> String {
    format!("{} {}", thousands(items), items_word(step))
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

pub fn report_markdown(report: &Report) -> String {
    let mut md = format!(
        "# Migration report: {}\n\nOutcome: **{}**\n",
        report.plan, report.outcome
    );
    let table = |md: &mut String, steps: &[StepReport]| {
        md.push_str("\n| step | result | done | size | already there | left behind | detail |\n|---|---|---:|---:|---:|---:|---|\n");
        for s in steps {
            let detail = s
                .detail
                .iter()
                .chain(&s.notes)
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join("; ")
                .replace('\n', " ")
                .replace('|', "\\|");
            let _ = writeln!(
                md,
                "| `{}` | {} | {} | {} | {} | {} | {} |",
                s.step,
                s.result,
                items_done(&s.step, s.messages),
                human_bytes(s.bytes),
                thousands(s.present),
                thousands(s.left_behind_count),
                detail
            );
        }
    };
    for user in &report.users {
        let _ = write!(md, "\n## {}\n", user.email);
        table(&mut md, &user.steps);
        let left: Vec<(&str, &SkippedMessage)> = user
            .steps
            .iter()
            .flat_map(|s| s.left_behind.iter().map(move |m| (s.step.as_str(), m)))
            .collect();
        message_table(&mut md, "Left behind at the source:", "why", &left);
        let partly: Vec<(&str, &SkippedMessage)> = user
            .steps
            .iter()
            .flat_map(|s| s.copied_partly.iter().map(move |m| (s.step.as_str(), m)))
            .collect();
        message_table(
            &mut md,
            "Copied without some of their parts (the source could not read or carry them over):",
            "missing",
            &partly,
        );
    }
    if !report.other_steps.is_empty() {
        md.push_str("\n## DNS and gates\n");
        table(&mut md, &report.other_steps);
    }
    retries_and_throttling(&mut md, report);
    if let Some(script) = &report.exchange_script {
        let _ = write!(
            md,
            "\n## Exchange Online PowerShell\n\nMicrosoft Graph cannot add a mailbox's addresses \
             (aliases, X500) or give the app access to a mailbox. Run `{}` (beside this report) \
             in Exchange Online PowerShell: {} command{} for {} change{}.\n",
            script.file,
            script.commands,
            plural(script.commands as u64),
            script.changes,
            plural(script.changes as u64),
        );
    }
    for (zone, poll) in &report.dns {
        let _ = write!(
            md,
            "\nDNS of {} as each authoritative server answered it:\n\n",
            crate::connectors::dns::rrset::shown_name(zone)
        );
        for server in &poll.servers {
            let _ = writeln!(md, "- {}", server.line().replace('|', "\\|"));
        }
    }
    md
}
