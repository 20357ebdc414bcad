//! Calendar arithmetic for the two date formats local mail needs: the asctime date in an mbox
//! `From ` separator (the internal date of an exported message) and the RFC 5322 `Date:` header
//! the corpus generator writes. Hand-rolled because both are fixed formats in UTC and a date
//! crate would be a large dependency for a few lines of Hinnant's civil-date algorithm.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

use crate::time::{civil_from_days, days_from_civil};

/// Whole seconds since the epoch; times before 1970 clamp to 0 (no mail predates it).
fn unix_secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

struct Parts {
    weekday: &'static str,
    year: i64,
    month: u32,
    day: u32,
    hour: i64,
    min: i64,
    sec: i64,
}

fn parts(secs: i64) -> Parts {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    Parts {
        weekday: WEEKDAYS[days.rem_euclid(7) as usize],
        year,
        month,
        day,
        hour: rem / 3600,
        min: rem % 3600 / 60,
        sec: rem % 60,
    }
}

/// `Mon Jan  2 15:04:05 2023`, as in mbox `From ` lines (always UTC).
pub(crate) fn format_asctime(t: SystemTime) -> String {
    let p = parts(unix_secs(t));
    format!(
        "{} {} {:>2} {:02}:{:02}:{:02} {}",
        p.weekday,
        MONTHS[p.month as usize - 1],
        p.day,
        p.hour,
        p.min,
        p.sec,
        p.year
    )
}

/// `Mon, 02 Jan 2023 16:04:05 +0100`: the RFC 5322 date of `t` as seen in a zone
/// `offset_minutes` east of UTC.
pub(crate) fn format_rfc5322(t: SystemTime, offset_minutes: i32) -> String {
    let p = parts(unix_secs(t).saturating_add(i64::from(offset_minutes) * 60));
    let sign = if offset_minutes < 0 { '-' } else { '+' };
    let off = offset_minutes.unsigned_abs();
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} {}{:02}{:02}",
        p.weekday,
        p.day,
        MONTHS[p.month as usize - 1],
        p.year,
        p.hour,
        p.min,
        p.sec,
        sign,
        off / 60,
        off % 60
    )
}

fn month_index(token: &str) -> Option<u32> {
    MONTHS
        .iter()
        .position(|m| m.eq_ignore_ascii_case(token))
        .map(|i| i as u32 + 1)
}

fn parse_hms(token: &str) -> Option<i64> {
    let mut it = token.split(':');
    let h: i64 = it.next()?.parse().ok()?;
    let m: i64 = it.next()?.parse().ok()?;
    let s: i64 = match it.next() {
        Some(s) => s.parse().ok()?,
        None => 0,
    };
    if it.next().is_some()
        || !(0..24).contains(&h)
        || !(0..60).contains(&m)
        || !(0..61).contains(&s)
    {
        return None;
    }
    Some(h * 3600 + m * 60 + s)
}

/// Finds `Mon DD HH:MM[:SS] ... YYYY` anywhere in an mbox separator line's text after `From `.
/// Writers disagree on the details (a zone before or after the year, a sender with spaces),
/// so this searches instead of parsing positionally; the zone is ignored (taken as UTC),
/// which is how mbox writers mean it. Returns `None` rather than guessing.
pub(crate) fn parse_asctime_anywhere(text: &str) -> Option<SystemTime> {
    let tokens: Vec<&str> = text.split_ascii_whitespace().collect();
    for i in 0..tokens.len() {
        let Some(month) = month_index(tokens[i]) else {
            continue;
        };
        let Some(day) = tokens.get(i + 1).and_then(|d| d.parse::<u32>().ok()) else {
            continue;
        };
        let Some(secs) = tokens.get(i + 2).and_then(|t| parse_hms(t)) else {
            continue;
        };
        let year = tokens[i + 3..]
            .iter()
            .take(2)
            .find_map(|t| t.parse::<i64>().ok().filter(|y| (1970..=9999).contains(y)));
        let Some(year) = year else {
            continue;
        };
        if !(1..=31).contains(&day) {
            continue;
        }
        let total = days_from_civil(year, month, day) * 86_400 + secs;
        return u64::try_from(total)
            .ok()
            .map(|s| UNIX_EPOCH + Duration::from_secs(s));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn formats() {
        // 2023-01-02T15:04:05Z was a Monday.
        let t = at(1_672_671_845);
        assert_eq!(format_asctime(t), "Mon Jan  2 15:04:05 2023");
        assert_eq!(format_rfc5322(t, 60), "Mon, 02 Jan 2023 16:04:05 +0100");
        assert_eq!(format_rfc5322(t, -330), "Mon, 02 Jan 2023 09:34:05 -0530");
        assert_eq!(format_asctime(at(0)), "Thu Jan  1 00:00:00 1970");
        // 2024-02-29 is day 19_782; the day before the epoch appears in widened windows.
        assert_eq!(format_imap_day(19_782), "29-Feb-2024");
        assert_eq!(format_imap_day(-1), "31-Dec-1969");
    }

    #[test]
    fn parses_common_separator_shapes() {
        let t = Some(at(1_672_671_845));
        assert_eq!(
            parse_asctime_anywhere("MAILER-DAEMON Mon Jan  2 15:04:05 2023"),
            t
        );
        assert_eq!(
            parse_asctime_anywhere("a@b.c Mon Jan 2 15:04:05 +0000 2023"),
            t
        );
        assert_eq!(
            parse_asctime_anywhere("- Mon Jan 02 15:04:05 2023 +0000"),
            t
        );
        assert_eq!(parse_asctime_anywhere("x@y Jan 2 15:04:05 2023"), t);
        assert_eq!(parse_asctime_anywhere("garbage"), None);
        assert_eq!(parse_asctime_anywhere("Jan 99 25:00:00 2023"), None);
        assert_eq!(parse_asctime_anywhere(""), None);
    }

    #[test]
    fn round_trip_over_centuries() {
        for secs in [
            0u64,
            951_782_400,
            4_107_542_399,
            1_709_164_800,
            32_503_680_000,
        ] {
            let s = format_asctime(at(secs));
            assert_eq!(parse_asctime_anywhere(&s), Some(at(secs)), "{s}");
        }
    }
}

/// IMAP INTERNALDATE `02-Jan-2023 15:04:05 +0000` (RFC 3501 `date-time`), always in UTC.
pub(crate) fn format_imap(t: SystemTime) -> String {
    let p = parts(unix_secs(t));
    format!(
        "{:02}-{}-{} {:02}:{:02}:{:02} +0000",
        p.day,
        MONTHS[p.month as usize - 1],
        p.year,
        p.hour,
        p.min,
        p.sec
    )
}

/// An IMAP SEARCH `date` (`1-Feb-2024`, RFC 3501 §9) for `days` since 1970-01-01.
pub(crate) fn format_imap_day(days: i64) -> String {
    let p = parts(days.saturating_mul(86_400));
    format!("{}-{}-{}", p.day, MONTHS[p.month as usize - 1], p.year)
}

/// Parses an IMAP INTERNALDATE (`d-Mon-yyyy hh:mm:ss +zzzz`, day possibly space-padded).
/// `None` for anything else: a missing date is better than a wrong one.
pub(crate) fn parse_imap(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    let (date, rest) = text.split_once(' ')?;
    let (time, zone) = rest.trim_start().split_once(' ')?;
    let mut d = date.split('-');
    let day: u32 = d.next()?.trim().parse().ok()?;
    let month = month_index(d.next()?)?;
    let year: i64 = d.next()?.parse().ok()?;
    if d.next().is_some() || !(1..=31).contains(&day) || !(1970..=9999).contains(&year) {
        return None;
    }
    let hms = parse_hms(time)?;
    let zb = zone.trim().as_bytes();
    if zb.len() != 5 || !(zb[0] == b'+' || zb[0] == b'-') || !zb[1..].iter().all(u8::is_ascii_digit)
    {
        return None;
    }
    let zh = i64::from(zb[1] - b'0') * 10 + i64::from(zb[2] - b'0');
    let zm = i64::from(zb[3] - b'0') * 10 + i64::from(zb[4] - b'0');
    let offset = (zh * 60 + zm) * 60 * if zb[0] == b'-' { -1 } else { 1 };
    let secs = days_from_civil(year, month, day) * 86_400 + hms - offset;
    u64::try_from(secs)
        .ok()
        .map(|s| UNIX_EPOCH + Duration::from_secs(s))
}

/// Parses an RFC 5322 `date-time` (`Tue, 1 Jul 2003 10:52:37 +0200`), tolerating what real
/// mail carries: no weekday, no seconds, two-digit years, `GMT`/`UT`/US zone names and a
/// trailing comment. Used to give POP3 mail (which has no INTERNALDATE) its received time.
/// `None` for anything else: a missing date is better than a wrong one.
pub(crate) fn parse_rfc5322(text: &str) -> Option<SystemTime> {
    let text = match text.find('(') {
        Some(i) => &text[..i],
        None => text,
    };
    let text = match text.split_once(',') {
        Some((_, rest)) => rest,
        None => text,
    };
    let mut it = text.split_whitespace();
    let (day, month, year, time) = (it.next()?, it.next()?, it.next()?, it.next()?);
    let zone = it.next().unwrap_or("+0000");
    if it.next().is_some() {
        return None;
    }
    let mut year: i64 = year.parse().ok()?;
    if year < 100 {
        year += if year < 50 { 2000 } else { 1900 };
    }
    let zone = match zone.to_ascii_uppercase().as_str() {
        "GMT" | "UT" | "UTC" | "Z" => "+0000".to_string(),
        "EDT" => "-0400".into(),
        "EST" | "CDT" => "-0500".into(),
        "CST" | "MDT" => "-0600".into(),
        "MST" | "PDT" => "-0700".into(),
        "PST" => "-0800".into(),
        _ => zone.to_string(),
    };
    parse_imap(&format!("{day}-{month}-{year} {time} {zone}"))
}

#[cfg(test)]
mod rfc5322_date_tests {
    use super::*;

    #[test]
    fn real_world_dates() {
        let want = parse_imap("01-Jul-2003 08:52:37 +0000");
        for s in [
            "Tue, 1 Jul 2003 10:52:37 +0200",
            " 1 Jul 2003 10:52:37 +0200 (CEST)",
            "Tue, 01 Jul 03 08:52:37 GMT",
            "Tue, 1 Jul 2003 04:52:37 EDT",
        ] {
            assert_eq!(parse_rfc5322(s), want, "{s}");
        }
        assert_eq!(
            parse_rfc5322("1 Jul 2003 08:52 +0000"),
            parse_imap("01-Jul-2003 08:52:00 +0000")
        );
        for bad in [
            "",
            "yesterday",
            "Tue, 1 Jul",
            "1 Foo 2003 10:00:00 +0000",
            "1 Jul 2003 10:00:00 +0000 extra",
        ] {
            assert_eq!(parse_rfc5322(bad), None, "{bad}");
        }
    }
}

#[cfg(test)]
mod imap_date_tests {
    use super::*;

    #[test]
    fn imap_dates_round_trip_and_zones_apply() {
        let t = UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let s = format_imap(t);
        assert_eq!(s, "14-Nov-2023 22:13:20 +0000");
        assert_eq!(parse_imap(&s), Some(t));
        assert_eq!(
            parse_imap(" 1-Jan-2020 01:00:00 +0100"),
            parse_imap("01-Jan-2020 00:00:00 +0000")
        );
        assert_eq!(
            parse_imap("14-Nov-2023 22:13:20 -0130")
                .map(|x| x.duration_since(t).unwrap().as_secs()),
            Some(5400)
        );
        for bad in [
            "",
            "x",
            "14-Foo-2023 22:13:20 +0000",
            "14-Nov-2023 25:00:00 +0000",
            "14-Nov-2023 22:13:20 0000",
            "14-Nov-2023 22:13:20 +00é0",
        ] {
            assert_eq!(parse_imap(bad), None, "{bad}");
        }
    }
}
