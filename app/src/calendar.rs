//! UTC days and months, and the windows of them the service keeps. A transaction counts on the
//! day (and month) in which its commit happens, as the service's [`Clock`](crate::clock::Clock)
//! tells it.

use std::{fmt, time::SystemTime};

use time::{
    Date, OffsetDateTime, format_description::BorrowedFormatItem, macros::format_description,
};

/// Days kept per route: today and the 61 before it.
pub const DAYS_KEPT: u32 = 62;
/// Months kept per route: this month and the 23 before it.
pub const MONTHS_KEPT: u32 = 24;

const DAY_FORMAT: &[BorrowedFormatItem<'static>] = format_description!("[year]-[month]-[day]");

/// A UTC calendar day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day(Date);

/// A UTC calendar month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    /// Months since January of year 0: `year * 12 + (month - 1)`.
    index: i32,
}

/// Why a date or month given by a client is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a {1} (expected {2})")]
pub struct CalendarError(pub String, pub &'static str, pub &'static str);

impl Day {
    /// The day `t` falls on, in UTC.
    pub fn of(t: SystemTime) -> Self {
        Self(OffsetDateTime::from(t).date())
    }

    /// Parses `YYYY-MM-DD`, strictly (four-digit year, two-digit month and day).
    pub fn parse(text: &str) -> Result<Self, CalendarError> {
        let invalid = || {
            CalendarError(
                text.to_owned(),
                "date",
                "YYYY-MM-DD with a year from 0001, e.g. 2026-11-21",
            )
        };
        let b = text.as_bytes();
        let shaped = b.len() == 10
            && !text.starts_with("0000")
            && b[4] == b'-'
            && b[7] == b'-'
            && b.iter()
                .enumerate()
                .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
        if !shaped {
            return Err(invalid());
        }
        Date::parse(text, DAY_FORMAT)
            .map(Self)
            .map_err(|_| invalid())
    }

    /// Days since 1970-01-01 (negative before): a compact, ordered number for storage.
    pub fn number(self) -> i32 {
        self.0.to_julian_day() - UNIX_EPOCH_JULIAN_DAY
    }

    pub fn from_number(number: i32) -> Option<Self> {
        Date::from_julian_day(number + UNIX_EPOCH_JULIAN_DAY)
            .ok()
            .map(Self)
    }

    /// The day `n` days later (earlier for negative `n`), if the calendar has it.
    pub fn plus(self, n: i32) -> Option<Self> {
        Self::from_number(self.number().checked_add(n)?)
    }

    pub fn month(self) -> Month {
        Month {
            index: self.0.year() * 12 + i32::from(u8::from(self.0.month())) - 1,
        }
    }

    /// The first day kept when today is `self`.
    pub fn window_start(self) -> Self {
        self.plus(1 - DAYS_KEPT as i32).unwrap_or(self)
    }
}

/// Julian day number of 1970-01-01.
const UNIX_EPOCH_JULIAN_DAY: i32 = 2_440_588;

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02}",
            self.0.year(),
            u8::from(self.0.month()),
            self.0.day()
        )
    }
}

impl Month {
    /// Parses `YYYY-MM`, strictly.
    pub fn parse(text: &str) -> Result<Self, CalendarError> {
        let invalid = || {
            CalendarError(
                text.to_owned(),
                "month",
                "YYYY-MM with a year from 0001, e.g. 2026-11",
            )
        };
        let b = text.as_bytes();
        let shaped = b.len() == 7
            && b[4] == b'-'
            && b.iter()
                .enumerate()
                .all(|(i, c)| i == 4 || c.is_ascii_digit());
        if !shaped {
            return Err(invalid());
        }
        let year: i32 = text[..4].parse().map_err(|_| invalid())?;
        let month: i32 = text[5..].parse().map_err(|_| invalid())?;
        if year < 1 || !(1..=12).contains(&month) {
            return Err(invalid());
        }
        Ok(Self {
            index: year * 12 + month - 1,
        })
    }

    /// Months since January 1970 (negative before): a compact, ordered number for storage.
    pub fn number(self) -> i32 {
        self.index - 1970 * 12
    }

    pub fn from_number(number: i32) -> Self {
        Self {
            index: number + 1970 * 12,
        }
    }

    pub fn plus(self, n: i32) -> Self {
        Self {
            index: self.index + n,
        }
    }

    /// The first month kept when this month is `self`.
    pub fn window_start(self) -> Self {
        self.plus(1 - MONTHS_KEPT as i32)
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}",
            self.index.div_euclid(12),
            self.index.rem_euclid(12) + 1
        )
    }
}

/// What days and months have in common for reads over a range of them.
pub trait Period: Copy + Ord + fmt::Display + Sized {
    /// Parses the client's spelling (`YYYY-MM-DD`, `YYYY-MM`).
    fn parse_text(text: &str) -> Result<Self, CalendarError>;
    /// The period that `today` falls in.
    fn containing(today: Day) -> Self;
    /// The period `n` later (earlier for negative `n`), if the calendar has it.
    fn shifted(self, n: i32) -> Option<Self>;
    /// The first period kept when the current one is `self`.
    fn first_kept(self) -> Self;
    /// Every period from `from` to `to` inclusive, oldest first.
    fn through(from: Self, to: Self) -> Vec<Self>;
}

impl Period for Day {
    fn parse_text(text: &str) -> Result<Self, CalendarError> {
        Day::parse(text)
    }
    fn containing(today: Day) -> Self {
        today
    }
    fn shifted(self, n: i32) -> Option<Self> {
        self.plus(n)
    }
    fn first_kept(self) -> Self {
        self.window_start()
    }
    fn through(from: Self, to: Self) -> Vec<Self> {
        (from.number()..=to.number())
            .filter_map(Day::from_number)
            .collect()
    }
}

impl Period for Month {
    fn parse_text(text: &str) -> Result<Self, CalendarError> {
        Month::parse(text)
    }
    fn containing(today: Day) -> Self {
        today.month()
    }
    fn shifted(self, n: i32) -> Option<Self> {
        Some(self.plus(n))
    }
    fn first_kept(self) -> Self {
        self.window_start()
    }
    fn through(from: Self, to: Self) -> Vec<Self> {
        (from.number()..=to.number())
            .map(Month::from_number)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::clock::{Clock, ManualClock};

    fn day(s: &str) -> Day {
        Day::parse(s).expect("day")
    }

    #[test]
    fn days_parse_strictly_and_print_back() {
        assert_eq!(day("2026-11-21").to_string(), "2026-11-21");
        assert_eq!(day("2024-02-29").to_string(), "2024-02-29");
        for bad in [
            "2026-11-31",
            "2025-02-29",
            "2026-1-21",
            "26-11-21",
            "2026/11/21",
            "+2026-11-2",
            "2026-11-21T00:00:00Z",
            "",
            "２０２６-11-21",
        ] {
            assert!(Day::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn months_parse_strictly_and_count_across_years() {
        let m = Month::parse("2026-01").expect("month");
        assert_eq!(m.to_string(), "2026-01");
        assert_eq!(m.plus(-1).to_string(), "2025-12");
        assert_eq!(m.plus(11).to_string(), "2026-12");
        assert_eq!(Month::from_number(m.number()), m);
        assert_eq!(Month::from_number(0).to_string(), "1970-01");
        for bad in ["2026-13", "2026-00", "2026-1", "2026", "2026-011"] {
            assert!(Month::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn day_numbers_count_from_1970_and_days_know_their_month() {
        assert_eq!(day("1970-01-01").number(), 0);
        assert_eq!(day("1970-01-02").number(), 1);
        let d = day("2026-11-21");
        assert_eq!(Day::from_number(d.number()), Some(d));
        assert_eq!(d.month().to_string(), "2026-11");
        assert_eq!(
            d.plus(10).map(|d| d.to_string()).as_deref(),
            Some("2026-12-01")
        );
        assert_eq!(d.window_start().to_string(), "2026-09-21");
        assert_eq!(d.month().window_start().to_string(), "2024-12");
    }

    #[test]
    fn the_day_of_an_instant_is_its_utc_day() {
        let midnight = SystemTime::UNIX_EPOCH + Duration::from_secs(20_413 * 86_400);
        assert_eq!(Day::of(midnight).number(), 20_413);
        assert_eq!(
            Day::of(midnight - Duration::from_millis(1)).number(),
            20_412
        );
        let clock = ManualClock::at(midnight - Duration::from_millis(1));
        assert_eq!(clock.today().number(), 20_412);
        clock.advance(Duration::from_millis(1));
        assert_eq!(clock.today().number(), 20_413);
    }
}
