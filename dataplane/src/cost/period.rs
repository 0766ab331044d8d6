//! Budget periods and the window a moment falls in.
//!
//! Calendar periods (`daily`, `weekly`, `monthly`) follow the wall clock of the budget's time
//! zone, so a day is 23 or 25 hours long when daylight saving time starts or ends. Duration
//! periods (`6h`, `2d`) are plain multiples of the duration since the Unix epoch and ignore
//! time zones. Counters are keyed by a window's start, which is what makes a new period start
//! from zero without any reset job.

use std::fmt;
use std::str::FromStr;

use std::time::Duration;
use tollgate_crds::budget::BudgetPeriod;

use chrono::{Datelike, LocalResult, Months, NaiveDate, NaiveDateTime, TimeZone};
use chrono_tz::Tz;

use super::CostError;

const MS_PER_DAY: i64 = 86_400_000;

/// How often a budget starts again from zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Period {
    /// From local midnight to the next local midnight.
    Daily,
    /// ISO weeks: from Monday 00:00 local time to the next Monday.
    Weekly,
    /// From the 1st of the month 00:00 local time to the 1st of the next month.
    Monthly,
    /// Never starts again.
    Total,
    /// Fixed-length windows aligned to multiples of the duration since the Unix epoch
    /// (UTC; the time zone plays no part). NB: `1w` windows therefore start on Thursdays,
    /// 1970-01-01 being one; use `weekly` for calendar weeks.
    Every(Duration),
}

/// A half-open span of time `[start_ms, end_ms)` in milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Window {
    /// First millisecond of the window.
    pub start_ms: i64,
    /// First millisecond after the window.
    pub end_ms: i64,
}

impl Window {
    /// The window of [`Period::Total`]: from the epoch to the end of representable time.
    pub const TOTAL: Window = Window { start_ms: 0, end_ms: i64::MAX };

    /// Whether `ms` lies in the window.
    pub fn contains(&self, ms: i64) -> bool {
        self.start_ms <= ms && ms < self.end_ms
    }

    /// Length of the window in milliseconds (saturating).
    pub fn len_ms(&self) -> i64 {
        self.end_ms.saturating_sub(self.start_ms)
    }
}

/// The window of `period` that contains `now_ms`, calendar periods taken in `tz`.
///
/// [`Period::Total`] always gives [`Window::TOTAL`]. Never panics: a moment outside the
/// range the calendar can represent (hundreds of thousands of years away) falls back to
/// UTC-day windows.
pub fn window_at(period: Period, tz: Tz, now_ms: i64) -> Window {
    match period {
        Period::Total => Window::TOTAL,
        Period::Every(d) => fixed_window(duration_ms(d), now_ms),
        Period::Daily | Period::Weekly | Period::Monthly => {
            calendar_window(period, tz, now_ms).unwrap_or_else(|| fixed_window(MS_PER_DAY, now_ms))
        }
    }
}

/// A duration in whole milliseconds, at least one.
fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1)
}

fn fixed_window(len_ms: i64, now_ms: i64) -> Window {
    let start_ms = now_ms.div_euclid(len_ms).saturating_mul(len_ms);
    Window { start_ms, end_ms: start_ms.saturating_add(len_ms) }
}

fn calendar_window(period: Period, tz: Tz, now_ms: i64) -> Option<Window> {
    let today = tz.timestamp_millis_opt(now_ms).single()?.date_naive();
    let (first, next) = match period {
        Period::Daily => (today, today.succ_opt()?),
        Period::Weekly => {
            let monday = today
                .checked_sub_days(chrono::Days::new(u64::from(today.weekday().num_days_from_monday())))?;
            (monday, monday.checked_add_days(chrono::Days::new(7))?)
        }
        Period::Monthly => {
            let first = today.with_day(1)?;
            (first, first.checked_add_months(Months::new(1))?)
        }
        Period::Total | Period::Every(_) => return None,
    };
    Some(Window { start_ms: start_of_day(tz, first)?, end_ms: start_of_day(tz, next)? })
}

/// The first instant of local date `date` in `tz`.
///
/// NB: midnight itself may not exist (zones such as America/Santiago switch to daylight
/// saving time at 00:00, so the clock jumps from 23:59:59 to 01:00), or exist twice (when
/// clocks go back over midnight). The day then starts at the first instant whose local time
/// is on or after midnight: the transition itself, or the earlier of the two midnights.
fn start_of_day(tz: Tz, date: NaiveDate) -> Option<i64> {
    let midnight = date.and_hms_opt(0, 0, 0)?;
    match tz.from_local_datetime(&midnight) {
        LocalResult::Single(t) => Some(t.timestamp_millis()),
        LocalResult::Ambiguous(earliest, _) => Some(earliest.timestamp_millis()),
        LocalResult::None => first_instant_at_or_after(tz, midnight),
    }
}

/// Binary search for the first instant whose local time in `tz` is at or after `local`.
/// Offsets are within a day of UTC, so the answer lies within two days of `local` read as UTC.
fn first_instant_at_or_after(tz: Tz, local: NaiveDateTime) -> Option<i64> {
    let guess = local.and_utc().timestamp_millis();
    let reached = |ms: i64| tz.timestamp_millis_opt(ms).single().is_some_and(|t| t.naive_local() >= local);
    let (mut lo, mut hi) = (guess.checked_sub(2 * MS_PER_DAY)?, guess.checked_add(2 * MS_PER_DAY)?);
    if reached(lo) || !reached(hi) {
        return None;
    }
    // Invariant: !reached(lo) && reached(hi).
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if reached(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Some(hi)
}

impl From<BudgetPeriod> for Period {
    fn from(p: BudgetPeriod) -> Self {
        match p {
            BudgetPeriod::Daily => Period::Daily,
            BudgetPeriod::Weekly => Period::Weekly,
            BudgetPeriod::Monthly => Period::Monthly,
            BudgetPeriod::Total => Period::Total,
            BudgetPeriod::EverySeconds(s) => Period::Every(Duration::from_secs(s)),
        }
    }
}

impl FromStr for Period {
    type Err = CostError;

    /// The Budget resource's own parser (`tollgate_crds::budget::BudgetPeriod`): one set of
    /// rules and messages for resources and the engine.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        text.parse::<BudgetPeriod>()
            .map(Period::from)
            .map_err(|reason| CostError::InvalidPeriod { input: text.to_owned(), reason })
    }
}

impl fmt::Display for Period {
    /// The canonical text form, which [`Period::from_str`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Period::Daily => f.write_str("daily"),
            Period::Weekly => f.write_str("weekly"),
            Period::Monthly => f.write_str("monthly"),
            Period::Total => f.write_str("total"),
            Period::Every(d) => {
                let ms = d.as_millis();
                if ms % 1_000 != 0 {
                    return write!(f, "{ms}ms");
                }
                let s = ms / 1_000;
                let (n, unit) = [(604_800, "w"), (86_400, "d"), (3_600, "h"), (60, "m")]
                    .into_iter()
                    .find(|(len, _)| s % len == 0 && s > 0)
                    .map_or((s, "s"), |(len, unit)| (s / len, unit));
                write!(f, "{n}{unit}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};

    fn ms(rfc3339: &str) -> i64 {
        DateTime::parse_from_rfc3339(rfc3339).unwrap().timestamp_millis()
    }

    fn utc(ms: i64) -> String {
        DateTime::<Utc>::from_timestamp_millis(ms).unwrap().to_rfc3339()
    }

    fn window(period: &str, tz: Tz, at: &str) -> (String, String) {
        let w = window_at(period.parse().unwrap(), tz, ms(at));
        assert!(w.contains(ms(at)), "{w:?} must contain {at}");
        (utc(w.start_ms), utc(w.end_ms))
    }

    const HOUR: i64 = 3_600_000;

    #[test]
    fn parses_keywords_and_durations() {
        assert_eq!("daily".parse::<Period>(), Ok(Period::Daily));
        assert_eq!("weekly".parse::<Period>(), Ok(Period::Weekly));
        assert_eq!("monthly".parse::<Period>(), Ok(Period::Monthly));
        assert_eq!("total".parse::<Period>(), Ok(Period::Total));
        assert_eq!("90s".parse::<Period>(), Ok(Period::Every(Duration::from_secs(90))));
        assert_eq!("30m".parse::<Period>(), Ok(Period::Every(Duration::from_secs(1_800))));
        assert_eq!("6h".parse::<Period>(), Ok(Period::Every(Duration::from_secs(21_600))));
        assert_eq!("2d".parse::<Period>(), Ok(Period::Every(Duration::from_secs(172_800))));
        assert_eq!("1w".parse::<Period>(), Ok(Period::Every(Duration::from_secs(604_800))));
    }

    #[test]
    fn period_errors_are_precise() {
        let err = |s: &str| s.parse::<Period>().unwrap_err().to_string();
        assert_eq!(err("6x"), r#"invalid period "6x": unknown unit "x": use s, m, h, d or w (e.g. "6h")"#);
        assert_eq!(err("6"), r#"invalid period "6": missing unit after 6: add s, m, h, d or w (e.g. "6h")"#);
        assert_eq!(err("0h"), r#"invalid period "0h": the duration must be longer than zero"#);
        assert_eq!(err("Daily"), r#"invalid period "Daily": write it in lower case ("daily")"#);
        assert_eq!(err(" daily"), r#"invalid period " daily": remove the surrounding spaces"#);
        assert!(err("yearly").contains("expected daily, weekly, monthly, total, or a duration"));
        assert!(err("").contains("expected daily"));
        assert!(err("-1h").contains("expected daily"));
        assert!(err("1.5h").contains(r#"unknown unit ".5h""#));
        assert!(err("99999999999999999999999h").contains("is too large"));
        assert!(err("999999999999999w").contains("is too long"));
    }

    #[test]
    fn display_round_trips() {
        for s in ["daily", "weekly", "monthly", "total", "90s", "30m", "6h", "2d", "1w", "25h", "8d"] {
            assert_eq!(s.parse::<Period>().unwrap().to_string(), s);
        }
        assert_eq!(Period::Every(Duration::from_secs(3_600 * 24)).to_string(), "1d");
    }

    #[test]
    fn daily_in_utc_and_at_boundaries() {
        let tz = chrono_tz::UTC;
        assert_eq!(
            window("daily", tz, "2025-03-04T13:00:00Z"),
            ("2025-03-04T00:00:00+00:00".into(), "2025-03-05T00:00:00+00:00".into())
        );
        // The first millisecond belongs to the new day, the last to the old one.
        assert_eq!(window("daily", tz, "2025-03-05T00:00:00Z").0, "2025-03-05T00:00:00+00:00");
        assert_eq!(window("daily", tz, "2025-03-04T23:59:59.999Z").0, "2025-03-04T00:00:00+00:00");
    }

    #[test]
    fn daily_follows_the_local_calendar() {
        let ny = chrono_tz::America::New_York;
        // 02:00 UTC on the 5th is still the 4th in New York (EST, -05:00).
        assert_eq!(
            window("daily", ny, "2025-03-05T02:00:00Z"),
            ("2025-03-04T05:00:00+00:00".into(), "2025-03-05T05:00:00+00:00".into())
        );
    }

    #[test]
    fn dst_days_are_23_and_25_hours_new_york() {
        let ny = chrono_tz::America::New_York;
        let spring = window_at(Period::Daily, ny, ms("2024-03-10T12:00:00-04:00"));
        assert_eq!(utc(spring.start_ms), "2024-03-10T05:00:00+00:00");
        assert_eq!(utc(spring.end_ms), "2024-03-11T04:00:00+00:00");
        assert_eq!(spring.len_ms(), 23 * HOUR);
        let autumn = window_at(Period::Daily, ny, ms("2024-11-03T12:00:00-05:00"));
        assert_eq!(utc(autumn.start_ms), "2024-11-03T04:00:00+00:00");
        assert_eq!(utc(autumn.end_ms), "2024-11-04T05:00:00+00:00");
        assert_eq!(autumn.len_ms(), 25 * HOUR);
        // Inside the repeated hour (01:30 happens twice) it is still the same day.
        assert_eq!(window_at(Period::Daily, ny, ms("2024-11-03T01:30:00-04:00")), autumn);
        assert_eq!(window_at(Period::Daily, ny, ms("2024-11-03T01:30:00-05:00")), autumn);
    }

    #[test]
    fn dst_days_are_23_and_25_hours_berlin() {
        let berlin = chrono_tz::Europe::Berlin;
        let spring = window_at(Period::Daily, berlin, ms("2024-03-31T03:30:00+02:00"));
        assert_eq!(utc(spring.start_ms), "2024-03-30T23:00:00+00:00");
        assert_eq!(spring.len_ms(), 23 * HOUR);
        let autumn = window_at(Period::Daily, berlin, ms("2024-10-27T02:30:00+01:00"));
        assert_eq!(utc(autumn.start_ms), "2024-10-26T22:00:00+00:00");
        assert_eq!(autumn.len_ms(), 25 * HOUR);
        // The week containing the spring change is 167 hours long, the month 743.
        assert_eq!(window_at(Period::Weekly, berlin, ms("2024-03-31T12:00:00+02:00")).len_ms(), 167 * HOUR);
        assert_eq!(window_at(Period::Monthly, berlin, ms("2024-03-15T12:00:00+01:00")).len_ms(), 743 * HOUR);
        assert_eq!(window_at(Period::Monthly, berlin, ms("2024-10-15T12:00:00+02:00")).len_ms(), 745 * HOUR);
    }

    #[test]
    fn midnight_that_does_not_exist_starts_the_day_at_the_transition() {
        // Santiago de Chile moves from -04:00 to -03:00 at 00:00 on 2024-09-08: the local
        // day starts at 01:00, which is 04:00 UTC, and is 23 hours long.
        let santiago = chrono_tz::America::Santiago;
        let w = window_at(Period::Daily, santiago, ms("2024-09-08T12:00:00-03:00"));
        assert_eq!(utc(w.start_ms), "2024-09-08T04:00:00+00:00");
        assert_eq!(utc(w.end_ms), "2024-09-09T03:00:00+00:00");
        // The day before ends exactly where this one starts.
        let before = window_at(Period::Daily, santiago, ms("2024-09-07T12:00:00-04:00"));
        assert_eq!(before.end_ms, w.start_ms);
        assert_eq!(before.len_ms(), 24 * HOUR);
    }

    #[test]
    fn weekly_starts_on_monday() {
        let tz = chrono_tz::UTC;
        // 2025-01-01 is a Wednesday; its ISO week starts Monday 2024-12-30.
        assert_eq!(
            window("weekly", tz, "2025-01-01T10:00:00Z"),
            ("2024-12-30T00:00:00+00:00".into(), "2025-01-06T00:00:00+00:00".into())
        );
        // Sunday belongs to the week that started six days earlier.
        assert_eq!(window("weekly", tz, "2025-01-05T23:00:00Z").0, "2024-12-30T00:00:00+00:00");
        // Monday 00:00 starts a new week.
        assert_eq!(window("weekly", tz, "2025-01-06T00:00:00Z").0, "2025-01-06T00:00:00+00:00");
        // In Tokyo it is already Monday at 16:00 UTC on Sunday.
        let tokyo = chrono_tz::Asia::Tokyo;
        assert_eq!(window("weekly", tokyo, "2025-01-05T16:00:00Z").0, "2025-01-05T15:00:00+00:00");
    }

    #[test]
    fn monthly_handles_month_ends_and_leap_years() {
        let tz = chrono_tz::UTC;
        assert_eq!(
            window("monthly", tz, "2024-02-29T23:59:59Z"),
            ("2024-02-01T00:00:00+00:00".into(), "2024-03-01T00:00:00+00:00".into())
        );
        assert_eq!(
            window("monthly", tz, "2023-02-28T12:00:00Z"),
            ("2023-02-01T00:00:00+00:00".into(), "2023-03-01T00:00:00+00:00".into())
        );
        assert_eq!(
            window("monthly", tz, "2025-12-31T23:00:00Z"),
            ("2025-12-01T00:00:00+00:00".into(), "2026-01-01T00:00:00+00:00".into())
        );
        assert_eq!(
            window("monthly", tz, "2025-01-31T08:00:00Z"),
            ("2025-01-01T00:00:00+00:00".into(), "2025-02-01T00:00:00+00:00".into())
        );
        assert_eq!(window_at(Period::Monthly, tz, ms("2024-02-10T00:00:00Z")).len_ms(), 29 * 24 * HOUR);
        assert_eq!(window_at(Period::Monthly, tz, ms("2100-02-10T00:00:00Z")).len_ms(), 28 * 24 * HOUR);
        assert_eq!(window_at(Period::Monthly, tz, ms("2000-02-10T00:00:00Z")).len_ms(), 29 * 24 * HOUR);
        // Month boundaries are local: 23:30 UTC on Jan 31 is February in Berlin.
        let berlin = chrono_tz::Europe::Berlin;
        assert_eq!(window("monthly", berlin, "2025-01-31T23:30:00Z").0, "2025-01-31T23:00:00+00:00");
    }

    #[test]
    fn durations_align_to_the_epoch() {
        let tz = chrono_tz::America::New_York; // ignored for durations
        assert_eq!(
            window("6h", tz, "2025-03-04T13:00:00Z"),
            ("2025-03-04T12:00:00+00:00".into(), "2025-03-04T18:00:00+00:00".into())
        );
        assert_eq!(
            window("90s", tz, "1970-01-01T00:02:00Z"),
            ("1970-01-01T00:01:30+00:00".into(), "1970-01-01T00:03:00+00:00".into())
        );
        // 1970-01-01 was a Thursday, so 1w windows start on Thursdays.
        assert_eq!(window("1w", tz, "2025-01-06T00:00:00Z").0, "2025-01-02T00:00:00+00:00");
        // Before the epoch windows still contain the moment (floor, not truncation).
        let w = window_at("1h".parse().unwrap(), tz, -1);
        assert_eq!((w.start_ms, w.end_ms), (-HOUR, 0));
        // Consecutive windows tile time.
        let p: Period = "30m".parse().unwrap();
        let first = window_at(p, tz, 0);
        assert_eq!(window_at(p, tz, first.end_ms).start_ms, first.end_ms);
    }

    #[test]
    fn total_and_extremes_never_panic() {
        let tz = chrono_tz::Europe::Berlin;
        assert_eq!(window_at(Period::Total, tz, 123), Window::TOTAL);
        for p in [Period::Daily, Period::Weekly, Period::Monthly, Period::Every(Duration::ZERO)] {
            for t in [i64::MIN, i64::MIN + 1, -1, 0, i64::MAX - 1, i64::MAX] {
                let w = window_at(p, tz, t);
                assert!(w.start_ms <= t && (t < w.end_ms || w.end_ms == i64::MAX), "{p:?} {t} {w:?}");
            }
        }
        let huge = Period::Every(Duration::from_secs(u64::MAX));
        assert!(window_at(huge, tz, 5).contains(5));
    }

    #[test]
    fn every_instant_of_a_year_maps_to_a_tiling_of_days() {
        // Walk 2024 in New York and Berlin day by day: windows must tile without gaps.
        for tz in [chrono_tz::America::New_York, chrono_tz::Europe::Berlin, chrono_tz::America::Santiago] {
            let mut w = window_at(Period::Daily, tz, ms("2024-01-01T12:00:00Z"));
            for _ in 0..366 {
                let next = window_at(Period::Daily, tz, w.end_ms);
                assert_eq!(next.start_ms, w.end_ms);
                assert!([23, 24, 25].contains(&(next.len_ms() / HOUR)), "{tz}: {next:?}");
                w = next;
            }
        }
    }
}
