//! A window of received dates — a migration's `since`/`before` — in whole UTC days.
//!
//! Every source kind judges a message by the one date that says when it arrived: the IMAP
//! INTERNALDATE, POP3's topmost `Received:` (else `Date:`), an mbox separator's date, a
//! maildir file's modification time. Days are UTC so the same plan selects the same mail
//! whatever the server's or the operator's time zone.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::plan::validate::chrono_free::Date;
use crate::time::days_from_civil;

const DAY: i64 = 86_400;

/// `[since, before)`: on or after 00:00 UTC of `since`, strictly before 00:00 UTC of
/// `before`. Either end may be open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateWindow {
    /// Days since 1970-01-01.
    since: Option<i64>,
    before: Option<i64>,
}

impl DateWindow {
    /// No bound on either end: every date is inside.
    pub fn unbounded() -> DateWindow {
        DateWindow {
            since: None,
            before: None,
        }
    }

    /// The window of a migration's `since`/`before` (`YYYY-MM-DD`); `Ok(None)` when neither is
    /// set. Plan validation reports bad dates with spans; this only refuses to guess.
    pub fn parse(since: Option<&str>, before: Option<&str>) -> Result<Option<DateWindow>, String> {
        let day = |field: &str, text: Option<&str>| -> Result<Option<i64>, String> {
            text.map(|t| {
                Date::parse(t)
                    .map(|d| days_from_civil(i64::from(d.year), d.month.into(), d.day.into()))
                    .ok_or_else(|| format!("`{field}: {t}` is not a YYYY-MM-DD date"))
            })
            .transpose()
        };
        let window = DateWindow {
            since: day("since", since)?,
            before: day("before", before)?,
        };
        if let (Some(s), Some(b)) = (window.since, window.before) {
            if s >= b {
                return Err("`before` is not after `since`: the window is empty".into());
            }
        }
        Ok((window.since.is_some() || window.before.is_some()).then_some(window))
    }

    /// Whether mail received at `received` is in the window. Mail without any date is in
    /// every window: copying a message the consultant did not want costs a delete, leaving
    /// behind one they did want loses it, and nothing would ever say so.
    pub fn contains(&self, received: Option<SystemTime>) -> bool {
        let Some(t) = received else {
            return true;
        };
        let secs = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX) - 1,
        };
        let day = secs.div_euclid(DAY);
        self.since.is_none_or(|s| day >= s) && self.before.is_none_or(|b| day < b)
    }

    /// First day in the window (days since 1970-01-01), if bounded below.
    pub fn since_day(&self) -> Option<i64> {
        self.since
    }

    /// First day after the window (days since 1970-01-01), if bounded above.
    pub fn before_day(&self) -> Option<i64> {
        self.before
    }

    /// The window one day wider on each side. For a server's own date comparison (IMAP
    /// SEARCH compares dates "disregarding time and timezone", i.e. in the message's or the
    /// server's zone): every message of this window is in the wider one whatever zone the
    /// server uses, and an exact check on the message's date then narrows it.
    pub fn widened(&self) -> DateWindow {
        DateWindow {
            since: self.since.map(|s| s - 1),
            before: self.before.map(|b| b + 1),
        }
    }

    /// Stable text for config hashes.
    pub fn describe(&self) -> String {
        let day = |d: Option<i64>| d.map_or_else(|| "-".to_string(), |d| d.to_string());
        format!("window|{}|{}", day(self.since), day(self.before))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: i64) -> Option<SystemTime> {
        Some(if secs >= 0 {
            UNIX_EPOCH + Duration::from_secs(secs as u64)
        } else {
            UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
        })
    }

    #[test]
    fn bounds_are_utc_days_since_inclusive_before_exclusive() {
        let w = DateWindow::parse(Some("2024-02-01"), Some("2024-03-01"))
            .unwrap()
            .unwrap();
        // 2024-02-01T00:00:00Z and 2024-03-01T00:00:00Z.
        let (start, end) = (1_706_745_600, 1_709_251_200);
        assert!(!w.contains(at(start - 1)));
        assert!(w.contains(at(start)));
        assert!(w.contains(at(end - 1)));
        assert!(!w.contains(at(end)));
        assert!(w.contains(None), "undated mail is copied");
        assert!(!w.contains(at(-1)));
    }

    #[test]
    fn open_ends_and_errors() {
        assert_eq!(DateWindow::parse(None, None), Ok(None));
        let since = DateWindow::parse(Some("1970-01-02"), None)
            .unwrap()
            .unwrap();
        assert_eq!((since.since_day(), since.before_day()), (Some(1), None));
        assert!(since.contains(at(i64::from(u32::MAX))));
        assert!(!since.contains(at(DAY - 1)));
        let before = DateWindow::parse(None, Some("1970-01-02"))
            .unwrap()
            .unwrap();
        assert!(before.contains(at(0)) && !before.contains(at(DAY)));
        assert!(DateWindow::parse(Some("2024-13-01"), None)
            .unwrap_err()
            .contains("since"));
        assert!(DateWindow::parse(Some("2024-01-02"), Some("2024-01-02")).is_err());
        let w = DateWindow::parse(Some("2024-01-02"), Some("2024-01-03"))
            .unwrap()
            .unwrap();
        let wide = w.widened();
        assert_eq!(
            (wide.since_day(), wide.before_day()),
            (w.since_day().map(|d| d - 1), w.before_day().map(|d| d + 1))
        );
        assert_ne!(w.describe(), wide.describe());
    }
}
