//! Appointments (`IPM.Appointment`) → iCalendar (RFC 5545), with recurrence from
//! PidLidAppointmentRecur (MS-OXOCAL 2.2.1.44) for the common patterns and attendees from
//! the recipient table.

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::convert::{address_of, Context, ConvertOptions};
use super::messaging::{int, text, time, Item, PSETID_APPOINTMENT};
use super::props::{id, PropValue};
use super::{Problem, PstFile};
use crate::connectors::autocomplete::export::push_folded;
use crate::time::civil_from_days;

/// A calendar item.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    pub nid: u32,
    pub folder: String,
    pub subject: String,
    pub location: String,
    /// Unix seconds, UTC.
    pub start: Option<i64>,
    pub end: Option<i64>,
    pub all_day: bool,
    pub description: String,
    pub organizer: Option<Person>,
    pub attendees: Vec<Attendee>,
    pub recurrence: Option<Recurrence>,
    /// Unix seconds of the last change: the event's DTSTAMP.
    pub modified: Option<i64>,
    #[serde(skip)]
    uid: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Person {
    pub name: String,
    pub email: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attendee {
    pub person: Person,
    /// REQ-PARTICIPANT, OPT-PARTICIPANT or NON-PARTICIPANT (resources).
    pub role: &'static str,
    pub resource: bool,
}

/// A recurrence as an RRULE plus deleted occurrences.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recurrence {
    pub rrule: String,
    /// Start dates (YYYYMMDD) of deleted occurrences.
    pub deleted: Vec<String>,
}

pub(super) fn collect(pst: &PstFile) -> (Vec<Event>, Vec<Problem>) {
    let mut events = Vec::new();
    let mut problems = Vec::new();
    let options = ConvertOptions::default();
    let ctx = Context {
        store_code_page: pst.code_page(),
        store_record_key: &pst.store().record_key,
        options: &options,
    };
    for folder in pst.folders().iter().filter(|f| !f.search_folder) {
        let path = folder.path.join("/");
        let (items, mut bad) = pst.items_of_class(folder.nid, &["IPM.Appointment"]);
        problems.append(&mut bad);
        for item in items {
            events.push(event(pst, &ctx, &item, &path));
        }
    }
    (events, problems)
}

fn named_id(pst: &PstFile, lid: u32) -> Option<u16> {
    pst.names().id(PSETID_APPOINTMENT, lid)
}

fn event(pst: &PstFile, ctx: &Context<'_>, item: &Item, folder: &str) -> Event {
    let cp = pst.code_page();
    let named_time = |lid: u32| named_id(pst, lid).and_then(|pid| time(&item.props, pid));
    let start = named_time(0x820D).or_else(|| time(&item.props, 0x0060));
    let end = named_time(0x820E).or_else(|| time(&item.props, 0x0061));
    let all_day = named_id(pst, 0x8215)
        .and_then(|pid| int(&item.props, pid))
        .is_some_and(|v| v != 0);
    let location = named_id(pst, 0x8208)
        .and_then(|pid| text(&item.props, pid, cp))
        .unwrap_or_default();
    let recurrence = named_id(pst, 0x8216).and_then(|pid| match item.props.get(pid) {
        Some(PropValue::Binary(blob)) => parse_recurrence(blob),
        _ => None,
    });
    let organizer = address_of(
        &item.props,
        [
            id::SENT_REPRESENTING_NAME,
            id::SENT_REPRESENTING_EMAIL,
            id::SENT_REPRESENTING_ADDRTYPE,
            id::SENT_REPRESENTING_SMTP_ADDRESS,
        ],
        cp,
        ctx,
    )
    .filter(|m| !m.email.is_empty())
    .map(|m| Person {
        name: m.name.unwrap_or_default(),
        email: m.email,
    });
    let mut attendees = Vec::new();
    for row in &item.recipients {
        // PidTagRecipientFlags bit 0x2: the row is the organizer.
        if int(row, 0x5FFD).is_some_and(|f| f & 0x2 != 0) {
            continue;
        }
        let Some(mailbox) = address_of(
            row,
            [
                id::DISPLAY_NAME,
                id::EMAIL_ADDRESS,
                id::ADDRTYPE,
                id::SMTP_ADDRESS,
            ],
            cp,
            ctx,
        ) else {
            continue;
        };
        let kind = int(row, id::RECIPIENT_TYPE).unwrap_or(1) & 0x0F;
        attendees.push(Attendee {
            person: Person {
                name: mailbox.name.unwrap_or_default(),
                email: mailbox.email,
            },
            role: match kind {
                2 => "OPT-PARTICIPANT",
                3 => "NON-PARTICIPANT",
                _ => "REQ-PARTICIPANT",
            },
            resource: kind == 3,
        });
    }
    let mut hash = Sha256::new();
    hash.update(&pst.store().record_key);
    hash.update(item.nid.to_le_bytes());
    let digest = hash.finalize();
    let uid: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    Event {
        nid: item.nid,
        folder: folder.to_owned(),
        subject: super::convert::subject(item, cp).unwrap_or_default(),
        location,
        start,
        end,
        all_day,
        description: text(&item.props, id::BODY, cp).unwrap_or_default(),
        organizer,
        attendees,
        recurrence,
        modified: time(&item.props, id::LAST_MODIFICATION_TIME),
        uid: format!("pst-{uid}"),
    }
}

/// MS-OXOCAL RecurrencePattern → RRULE. None for patterns this reader does not map (Hijri
/// calendars, unknown frequencies) and for blobs too short to hold a pattern.
pub fn parse_recurrence(blob: &[u8]) -> Option<Recurrence> {
    let u16_at = |at: usize| {
        blob.get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |at: usize| {
        blob.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let frequency = u16_at(4)?;
    let pattern = u16_at(6)?;
    let period = u32_at(14)?;
    let (specific_len, days_mask, day_of_month, nth) = match pattern {
        0x0 => (0, None, None, None),
        0x1 => (4, u32_at(22), None, None),
        0x2 | 0x3 => (4, None, u32_at(22), None),
        0x4 => (8, u32_at(22), None, u32_at(26)),
        _ => return None,
    };
    let mut at = 22 + specific_len;
    let end_type = u32_at(at)?;
    let occurrences = u32_at(at + 4)?;
    at += 12; // EndType, OccurrenceCount, FirstDOW
    let deleted_count = u32_at(at)? as usize;
    at += 4;
    if deleted_count > blob.len() / 4 {
        return None;
    }
    let mut deleted = Vec::with_capacity(deleted_count);
    for i in 0..deleted_count {
        deleted.push(minutes_to_date(u32_at(at + 4 * i)?));
    }
    at += 4 * deleted_count;
    let modified_count = u32_at(at)? as usize;
    if modified_count > blob.len() / 4 {
        return None;
    }
    at += 4 + 4 * modified_count;
    let _start_date = u32_at(at)?;
    let end_date = u32_at(at + 4)?;

    let days = |mask: u32| -> String {
        ["SU", "MO", "TU", "WE", "TH", "FR", "SA"]
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, d)| *d)
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut rule = match (frequency, pattern) {
        (0x200A, 0x0) => format!("FREQ=DAILY;INTERVAL={}", (period / 1440).max(1)),
        (0x200A, 0x1) | (0x200B, 0x1) => {
            let interval = if frequency == 0x200A {
                1
            } else {
                period.max(1)
            };
            format!("FREQ=WEEKLY;INTERVAL={interval};BYDAY={}", days(days_mask?))
        }
        (0x200C, 0x2) => format!(
            "FREQ=MONTHLY;INTERVAL={};BYMONTHDAY={}",
            period.max(1),
            day_of_month?
        ),
        (0x200C, 0x3) => format!("FREQ=MONTHLY;INTERVAL={};BYMONTHDAY=-1", period.max(1)),
        (0x200C, 0x4) => format!(
            "FREQ=MONTHLY;INTERVAL={};BYDAY={};BYSETPOS={}",
            period.max(1),
            days(days_mask?),
            setpos(nth?)
        ),
        (0x200D, 0x2) => format!(
            "FREQ=YEARLY;INTERVAL={};BYMONTHDAY={}",
            (period / 12).max(1),
            day_of_month?
        ),
        (0x200D, 0x3) => format!(
            "FREQ=YEARLY;INTERVAL={};BYMONTHDAY=-1",
            (period / 12).max(1)
        ),
        (0x200D, 0x4) => format!(
            "FREQ=YEARLY;INTERVAL={};BYDAY={};BYSETPOS={}",
            (period / 12).max(1),
            days(days_mask?),
            setpos(nth?)
        ),
        _ => return None,
    };
    match end_type {
        0x2021 => rule.push_str(&format!(";UNTIL={}", minutes_to_date(end_date))),
        0x2022 => rule.push_str(&format!(";COUNT={occurrences}")),
        _ => {}
    }
    Some(Recurrence {
        rrule: rule,
        deleted,
    })
}

fn setpos(nth: u32) -> i32 {
    if nth >= 5 {
        -1
    } else {
        nth as i32
    }
}

/// Minutes since 1601-01-01 (the recurrence blob's dates) → YYYYMMDD.
fn minutes_to_date(minutes: u32) -> String {
    let days = i64::from(minutes) / 1440 - super::props::FILETIME_UNIX_OFFSET / 86_400;
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}{m:02}{d:02}")
}

fn utc_stamp(seconds: i64) -> String {
    let (y, mo, d) = civil_from_days(seconds.div_euclid(86_400));
    let s = seconds.rem_euclid(86_400);
    format!(
        "{y:04}{mo:02}{d:02}T{:02}{:02}{:02}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

fn date_only(seconds: i64) -> String {
    let (y, mo, d) = civil_from_days(seconds.div_euclid(86_400));
    format!("{y:04}{mo:02}{d:02}")
}

/// RFC 5545 TEXT escaping.
fn ics_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

fn param(text: &str) -> String {
    format!("\"{}\"", text.replace(['"', '\r', '\n'], ""))
}

/// One iCalendar file with every event. Times are UTC (`Z`); all-day events are dates.
pub fn calendar_ics(events: &[Event]) -> Vec<u8> {
    let mut out = String::new();
    push_folded(&mut out, "BEGIN:VCALENDAR");
    push_folded(&mut out, "VERSION:2.0");
    push_folded(&mut out, "PRODID:-//cutover//PST export//EN");
    for e in events {
        push_folded(&mut out, "BEGIN:VEVENT");
        push_folded(&mut out, &format!("UID:{}", e.uid));
        let stamp = e.modified.or(e.start).unwrap_or(0);
        push_folded(&mut out, &format!("DTSTAMP:{}", utc_stamp(stamp)));
        if let Some(start) = e.start {
            if e.all_day {
                push_folded(
                    &mut out,
                    &format!("DTSTART;VALUE=DATE:{}", date_only(start + 43_200)),
                );
                if let Some(end) = e.end {
                    push_folded(
                        &mut out,
                        &format!("DTEND;VALUE=DATE:{}", date_only(end + 43_200)),
                    );
                }
            } else {
                push_folded(&mut out, &format!("DTSTART:{}", utc_stamp(start)));
                if let Some(end) = e.end {
                    push_folded(&mut out, &format!("DTEND:{}", utc_stamp(end)));
                }
            }
        }
        push_folded(&mut out, &format!("SUMMARY:{}", ics_text(&e.subject)));
        if !e.location.is_empty() {
            push_folded(&mut out, &format!("LOCATION:{}", ics_text(&e.location)));
        }
        if !e.description.trim().is_empty() {
            push_folded(
                &mut out,
                &format!("DESCRIPTION:{}", ics_text(e.description.trim())),
            );
        }
        if let Some(o) = &e.organizer {
            push_folded(
                &mut out,
                &format!("ORGANIZER;CN={}:mailto:{}", param(&o.name), o.email),
            );
        }
        for a in &e.attendees {
            if a.person.email.is_empty() {
                continue;
            }
            let cutype = if a.resource { ";CUTYPE=RESOURCE" } else { "" };
            push_folded(
                &mut out,
                &format!(
                    "ATTENDEE;CN={};ROLE={}{cutype}:mailto:{}",
                    param(&a.person.name),
                    a.role,
                    a.person.email
                ),
            );
        }
        if let Some(r) = &e.recurrence {
            push_folded(&mut out, &format!("RRULE:{}", r.rrule));
            if let Some(start) = e.start {
                for date in &r.deleted {
                    if e.all_day {
                        push_folded(&mut out, &format!("EXDATE;VALUE=DATE:{date}"));
                    } else {
                        let time_of_day = &utc_stamp(start)[8..];
                        push_folded(&mut out, &format!("EXDATE:{date}{time_of_day}"));
                    }
                }
            }
        }
        push_folded(&mut out, "END:VEVENT");
    }
    push_folded(&mut out, "END:VCALENDAR");
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(
        frequency: u16,
        pattern: u16,
        period: u32,
        specific: &[u32],
        end_type: u32,
        count: u32,
    ) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&0x3004u16.to_le_bytes());
        b.extend_from_slice(&0x3004u16.to_le_bytes());
        b.extend_from_slice(&frequency.to_le_bytes());
        b.extend_from_slice(&pattern.to_le_bytes());
        b.extend_from_slice(&0u16.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&period.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        for s in specific {
            b.extend_from_slice(&s.to_le_bytes());
        }
        b.extend_from_slice(&end_type.to_le_bytes());
        b.extend_from_slice(&count.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes()); // FirstDOW
        b.extend_from_slice(&1u32.to_le_bytes()); // one deleted instance
                                                  // 2024-01-08 in minutes since 1601.
        let day = (crate::time::days_from_civil(2024, 1, 8) + 134_774) as u32 * 1440;
        b.extend_from_slice(&day.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes()); // modified
        b.extend_from_slice(&day.to_le_bytes()); // start
        b.extend_from_slice(&(day + 1440 * 30).to_le_bytes()); // end
        b
    }

    #[test]
    fn common_patterns_become_rrules() {
        let weekly = parse_recurrence(&blob(0x200B, 1, 1, &[0b0010_1010], 0x2022, 10)).unwrap();
        assert_eq!(
            weekly.rrule,
            "FREQ=WEEKLY;INTERVAL=1;BYDAY=MO,WE,FR;COUNT=10"
        );
        assert_eq!(weekly.deleted, vec!["20240108"]);
        let daily = parse_recurrence(&blob(0x200A, 0, 2880, &[], 0x2023, 0)).unwrap();
        assert_eq!(daily.rrule, "FREQ=DAILY;INTERVAL=2");
        let monthly = parse_recurrence(&blob(0x200C, 4, 1, &[0b10, 5], 0x2021, 0)).unwrap();
        assert_eq!(
            monthly.rrule,
            "FREQ=MONTHLY;INTERVAL=1;BYDAY=MO;BYSETPOS=-1;UNTIL=20240207"
        );
        let yearly = parse_recurrence(&blob(0x200D, 2, 12, &[15], 0x2023, 0)).unwrap();
        assert_eq!(yearly.rrule, "FREQ=YEARLY;INTERVAL=1;BYMONTHDAY=15");
        assert!(parse_recurrence(&[1, 2, 3]).is_none());
    }
}
