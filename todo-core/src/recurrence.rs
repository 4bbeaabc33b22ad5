//! Recurring tasks: the subset of RFC 5545's RRULE that API.md gives
//! (`FREQ=DAILY|WEEKLY|MONTHLY|YEARLY` with `INTERVAL`, `BYDAY`,
//! `BYMONTHDAY`, `COUNT`, `UNTIL`), expanded against an IANA time zone.
//!
//! A series starts at its first due time (RFC 5545's `DTSTART`, always its
//! first occurrence) and keeps that wall-clock time in its zone across
//! daylight-saving changes; a local time that a change skips is moved
//! forward by the gap (RFC 5545 §3.3.10, jiff's "compatible"). A day a
//! month lacks (the 31st in a 30-day month, February 29th in a common
//! year) is no occurrence, as RFC 5545 says; it is not moved to another day.
//!
//! [`Recurrence::nth`] generates the occurrences period by period; the
//! tests hold it to a plain day-by-day reference that asks of each day
//! whether it is one.

use std::fmt;

use jiff::civil::DateTime;
use jiff::tz::TimeZone;

use crate::error::ValidationError;
use crate::time::Timestamp;

/// A time zone by its IANA name (`Europe/Berlin`), from the database
/// bundled with the build, so that every instance computes the same
/// occurrences.
#[derive(Clone)]
pub struct TimeZoneName {
    name: String,
    zone: TimeZone,
}

impl TimeZoneName {
    /// The longest name accepted (the longest IANA names are about 30).
    pub const MAX_CHARS: usize = 64;

    /// Coordinated Universal Time, the default.
    #[must_use]
    pub fn utc() -> Self {
        Self {
            name: "UTC".to_owned(),
            zone: TimeZone::UTC,
        }
    }

    /// An IANA time zone name the database knows.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        // Most tasks are in UTC, and every stored task is parsed as it is
        // read: no lookup in the zone database for it.
        if raw == "UTC" {
            return Ok(Self::utc());
        }
        let unknown = ValidationError::Format {
            field: "time_zone",
            what: "IANA time zone name",
        };
        if raw.is_empty()
            || raw.len() > Self::MAX_CHARS
            || !raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/_-+".contains(&b))
        {
            return Err(unknown);
        }
        let zone = TimeZone::get(raw).map_err(|_| unknown)?;
        // As the database spells it (a name is found whatever its case).
        let name = zone.iana_name().unwrap_or(raw).to_owned();
        Ok(Self { name, zone })
    }

    /// The name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// The wall-clock date and time of `at` in this zone.
    fn civil(&self, at: Timestamp) -> Option<DateTime> {
        let at = jiff::Timestamp::from_microsecond(at.unix_micros()).ok()?;
        Some(self.zone.to_datetime(at))
    }

    /// The instant of a wall-clock time in this zone; a time a transition
    /// skips is moved forward by the gap, a repeated one is its first.
    fn instant(&self, civil: DateTime) -> Option<Timestamp> {
        let at = self.zone.to_ambiguous_timestamp(civil).compatible().ok()?;
        Timestamp::from_unix_micros(at.as_microsecond()).ok()
    }
}

impl PartialEq for TimeZoneName {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for TimeZoneName {}

impl fmt::Debug for TimeZoneName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TimeZoneName").field(&self.name).finish()
    }
}

impl fmt::Display for TimeZoneName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// How often a series repeats, before `INTERVAL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Frequency {
    /// Every day.
    Daily,
    /// Every week (weeks start on Monday, RFC 5545's default).
    Weekly,
    /// Every month.
    Monthly,
    /// Every year.
    Yearly,
}

impl Frequency {
    const ALL: [(Self, &'static str); 4] = [
        (Self::Daily, "DAILY"),
        (Self::Weekly, "WEEKLY"),
        (Self::Monthly, "MONTHLY"),
        (Self::Yearly, "YEARLY"),
    ];

    fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(f, _)| *f == self)
            .map_or("DAILY", |(_, name)| name)
    }
}

/// Weekday codes, Monday first (bit 0 of [`Recurrence::by_day`]).
const WEEKDAYS: [&str; 7] = ["MO", "TU", "WE", "TH", "FR", "SA", "SU"];

/// A repetition rule: the RRULE subset of API.md, made only by
/// [`Recurrence::parse`] (its parts are private: no rule of interval 0 or
/// count 0 can be built).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Recurrence {
    /// `FREQ`.
    pub(crate) frequency: Frequency,
    /// `INTERVAL`: every so many periods, 1 to [`Recurrence::MAX_INTERVAL`].
    pub(crate) interval: u16,
    /// `BYDAY`: a bit per weekday, Monday first (0: none given).
    pub(crate) by_day: u8,
    /// `BYMONTHDAY`: days of the month, 1 to 31 or -31 to -1 (from the
    /// month's end), sorted, each once.
    pub(crate) by_month_day: Vec<i8>,
    /// `COUNT`: how many occurrences in all, the first included.
    pub(crate) count: Option<u32>,
    /// `UNTIL`: no occurrence after it.
    pub(crate) until: Option<Timestamp>,
}

/// The parse error of a rule: outside the subset, or malformed.
const BAD_RULE: ValidationError = ValidationError::Format {
    field: "recurrence",
    what: "RRULE of FREQ=DAILY|WEEKLY|MONTHLY|YEARLY with INTERVAL, BYDAY, BYMONTHDAY, COUNT, UNTIL",
};

impl Recurrence {
    /// The most text a rule may be.
    pub const MAX_CHARS: usize = 256;
    /// The largest `INTERVAL`.
    pub const MAX_INTERVAL: u16 = 1000;
    /// The largest `COUNT`.
    pub const MAX_COUNT: u32 = 10_000;
    /// Periods searched for an occurrence before a series counts as
    /// ended (a rule whose days seldom or never meet, such as
    /// `BYMONTHDAY=31` on Mondays in February): bounds every expansion.
    const MAX_PERIODS: u32 = 50_000;

    /// Parses `FREQ=…;INTERVAL=…` (an optional `RRULE:` prefix allowed);
    /// each part at most once, `FREQ` required, names upper case as RFC
    /// 5545 writes them. `BYDAY` takes plain weekdays (`MO,WE`), not
    /// ordinals (`1MO`); `UNTIL` a UTC time (`20270101T000000Z`) or a date
    /// (`20270101`, the end of that day in UTC). `COUNT` and `UNTIL`
    /// exclude each other.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        if raw.len() > Self::MAX_CHARS {
            return Err(BAD_RULE);
        }
        let body = raw.strip_prefix("RRULE:").unwrap_or(raw);
        let mut frequency = None;
        let mut interval = None;
        let mut by_day = None;
        let mut by_month_day = None;
        let mut count = None;
        let mut until = None;
        for part in body.split(';') {
            let (name, value) = part.split_once('=').ok_or(BAD_RULE)?;
            let fresh = match name {
                "FREQ" => frequency
                    .replace(
                        Frequency::ALL
                            .iter()
                            .find(|(_, n)| *n == value)
                            .map(|(f, _)| *f)
                            .ok_or(BAD_RULE)?,
                    )
                    .is_none(),
                "INTERVAL" => interval
                    .replace(
                        small_number(value)
                            .and_then(|n| u16::try_from(n).ok())
                            .filter(|n| (1..=Self::MAX_INTERVAL).contains(n))
                            .ok_or(BAD_RULE)?,
                    )
                    .is_none(),
                "BYDAY" => by_day.replace(weekdays(value)?).is_none(),
                "BYMONTHDAY" => by_month_day.replace(month_days(value)?).is_none(),
                "COUNT" => count
                    .replace(
                        small_number(value)
                            .filter(|n| (1..=Self::MAX_COUNT).contains(n))
                            .ok_or(BAD_RULE)?,
                    )
                    .is_none(),
                "UNTIL" => until.replace(until_time(value)?).is_none(),
                _ => false,
            };
            if !fresh {
                return Err(BAD_RULE);
            }
        }
        if count.is_some() && until.is_some() {
            return Err(BAD_RULE);
        }
        // RFC 5545 §3.3.10: BYMONTHDAY "MUST NOT be specified" with WEEKLY.
        if frequency == Some(Frequency::Weekly) && by_month_day.is_some() {
            return Err(BAD_RULE);
        }
        Ok(Self {
            frequency: frequency.ok_or(BAD_RULE)?,
            interval: interval.unwrap_or(1),
            by_day: by_day.unwrap_or(0),
            by_month_day: by_month_day.unwrap_or_default(),
            count,
            until,
        })
    }

    /// The `n`th occurrence (1: `start` itself) of the series that starts
    /// at `start` in `zone`; `None` once the series has ended (`COUNT`,
    /// `UNTIL`, or no occurrence within the search's bound).
    #[must_use]
    pub fn nth(&self, start: Timestamp, zone: &TimeZoneName, n: u32) -> Option<Timestamp> {
        let index = usize::try_from(n.checked_sub(1)?).ok()?;
        self.occurrences(start, zone).nth(index)
    }

    /// The occurrences of the series that starts at `start` in `zone`, in
    /// order, `start` first, until the series ends.
    pub fn occurrences<'a>(
        &'a self,
        start: Timestamp,
        zone: &'a TimeZoneName,
    ) -> impl Iterator<Item = Timestamp> + 'a {
        let first = zone.civil(start);
        let start_day = first.map(Day::of);
        let later = (0..Self::MAX_PERIODS)
            .map_while(move |period| self.days_of_period(start_day?, period))
            .flatten()
            .filter(move |day| start_day.is_some_and(|start| day.number > start.number))
            .map_while(move |day| zone.instant(day.at(first?)?))
            .take_while(move |at| self.until.is_none_or(|until| *at <= until));
        let count = self
            .count
            .map_or(usize::MAX, |c| usize::try_from(c).unwrap_or(usize::MAX));
        std::iter::once(start).chain(later).take(count)
    }

    /// The days of the `period`th period (0: the start's) that the rule
    /// picks, in order.
    fn days_of_period(&self, start: Day, period: u32) -> Option<Vec<Day>> {
        let step = i64::from(period) * i64::from(self.interval);
        let mut days = Vec::new();
        match self.frequency {
            Frequency::Daily => {
                let day = Day::from_number(start.number.checked_add(step)?)?;
                if self.day_matches(day) && self.month_day_matches(day) {
                    days.push(day);
                }
            }
            Frequency::Weekly => {
                let monday = start.number - i64::from(start.weekday());
                let monday = monday.checked_add(step.checked_mul(7)?)?;
                for offset in 0..7 {
                    let day = Day::from_number(monday + offset)?;
                    let picked = if self.by_day == 0 {
                        day.weekday() == start.weekday()
                    } else {
                        self.day_matches(day)
                    };
                    if picked && self.month_day_matches(day) {
                        days.push(day);
                    }
                }
            }
            Frequency::Monthly => {
                let months = i64::from(start.year) * 12 + i64::from(start.month) - 1 + step;
                let (year, month) = (months.div_euclid(12), months.rem_euclid(12) + 1);
                self.days_of_month(start, year, month, &mut days)?;
            }
            Frequency::Yearly => {
                let year = i64::from(start.year).checked_add(step)?;
                if self.by_day == 0 && self.by_month_day.is_empty() {
                    // The start's month and day (February 29th: leap years only).
                    if let Some(day) = Day::new(year, start.month, start.day) {
                        days.push(day);
                    }
                } else {
                    for month in 1..=12 {
                        self.days_of_month(start, year, month, &mut days)?;
                    }
                }
            }
        }
        Some(days)
    }

    /// The days of one month the rule picks: `BYMONTHDAY` and `BYDAY`
    /// (both: days that are both), or the start's day of the month.
    fn days_of_month(&self, start: Day, year: i64, month: i64, days: &mut Vec<Day>) -> Option<()> {
        let month = i8::try_from(month).ok()?;
        let first = Day::new(year, month, 1)?;
        let length = first.days_in_month();
        for day_of_month in 1..=length {
            let day = Day::from_number(first.number + i64::from(day_of_month) - 1)?;
            let picked = match (self.by_day, self.by_month_day.is_empty()) {
                (0, true) => day_of_month == start.day,
                (0, false) => self.month_day_matches(day),
                (_, true) => self.day_matches(day),
                (_, false) => self.day_matches(day) && self.month_day_matches(day),
            };
            if picked {
                days.push(day);
            }
        }
        Some(())
    }

    fn day_matches(&self, day: Day) -> bool {
        self.by_day == 0 || self.by_day & (1 << day.weekday()) != 0
    }

    fn month_day_matches(&self, day: Day) -> bool {
        if self.by_month_day.is_empty() {
            return true;
        }
        let from_end = i16::from(day.day) - i16::from(day.days_in_month()) - 1;
        self.by_month_day
            .iter()
            .any(|&md| i16::from(md) == i16::from(day.day) || i16::from(md) == from_end)
    }

    /// Whether `day` is an occurrence's day of the series that starts on
    /// `start`, asked of the day alone (no generation): the reference the
    /// tests hold [`Recurrence::nth`] to.
    #[cfg(test)]
    fn is_occurrence_day(&self, start: Day, day: Day) -> bool {
        let interval = i64::from(self.interval);
        if day.number < start.number {
            return false;
        }
        if day.number == start.number {
            return true;
        }
        match self.frequency {
            Frequency::Daily => {
                (day.number - start.number) % interval == 0
                    && self.day_matches(day)
                    && self.month_day_matches(day)
            }
            Frequency::Weekly => {
                let week = |d: Day| (d.number - i64::from(d.weekday())).div_euclid(7);
                let weekday_ok = if self.by_day == 0 {
                    day.weekday() == start.weekday()
                } else {
                    self.day_matches(day)
                };
                (week(day) - week(start)) % interval == 0
                    && weekday_ok
                    && self.month_day_matches(day)
            }
            Frequency::Monthly => {
                let months = |d: Day| i64::from(d.year) * 12 + i64::from(d.month);
                (months(day) - months(start)) % interval == 0 && self.in_month(start, day)
            }
            Frequency::Yearly => {
                let years_ok = (i64::from(day.year) - i64::from(start.year)) % interval == 0;
                let picked = if self.by_day == 0 && self.by_month_day.is_empty() {
                    day.month == start.month && day.day == start.day
                } else {
                    self.in_month(start, day)
                };
                years_ok && picked
            }
        }
    }

    #[cfg(test)]
    fn in_month(&self, start: Day, day: Day) -> bool {
        match (self.by_day, self.by_month_day.is_empty()) {
            (0, true) => day.day == start.day,
            (0, false) => self.month_day_matches(day),
            (_, true) => self.day_matches(day),
            (_, false) => self.day_matches(day) && self.month_day_matches(day),
        }
    }
}

impl fmt::Display for Recurrence {
    /// The canonical form: parts in RFC 5545's order, `INTERVAL` only when
    /// above 1, `UNTIL` as a UTC time.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FREQ={}", self.frequency.name())?;
        if self.interval > 1 {
            write!(f, ";INTERVAL={}", self.interval)?;
        }
        if self.by_day != 0 {
            let days: Vec<&str> = WEEKDAYS
                .iter()
                .enumerate()
                .filter(|(bit, _)| self.by_day & (1 << bit) != 0)
                .map(|(_, code)| *code)
                .collect();
            write!(f, ";BYDAY={}", days.join(","))?;
        }
        if !self.by_month_day.is_empty() {
            let days: Vec<String> = self.by_month_day.iter().map(i8::to_string).collect();
            write!(f, ";BYMONTHDAY={}", days.join(","))?;
        }
        if let Some(count) = self.count {
            write!(f, ";COUNT={count}")?;
        }
        if let Some(until) = self.until {
            let at =
                jiff::Timestamp::from_microsecond(until.unix_micros()).map_err(|_| fmt::Error)?;
            write!(f, ";UNTIL={}", at.strftime("%Y%m%dT%H%M%SZ"))?;
        }
        Ok(())
    }
}

/// A number of at most six digits, no sign.
fn small_number(raw: &str) -> Option<u32> {
    if raw.is_empty() || raw.len() > 6 || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    raw.parse().ok()
}

fn weekdays(raw: &str) -> Result<u8, ValidationError> {
    let mut bits = 0u8;
    for code in raw.split(',') {
        let bit = WEEKDAYS.iter().position(|w| *w == code).ok_or(BAD_RULE)?;
        if bits & (1 << bit) != 0 {
            return Err(BAD_RULE);
        }
        bits |= 1 << bit;
    }
    Ok(bits)
}

fn month_days(raw: &str) -> Result<Vec<i8>, ValidationError> {
    let mut days = Vec::new();
    for item in raw.split(',') {
        let (negative, digits) = match item.strip_prefix('-') {
            Some(digits) => (true, digits),
            None => (false, item.strip_prefix('+').unwrap_or(item)),
        };
        let day = small_number(digits)
            .filter(|d| (1..=31).contains(d))
            .and_then(|d| i8::try_from(d).ok())
            .ok_or(BAD_RULE)?;
        let day = if negative { -day } else { day };
        if days.contains(&day) {
            return Err(BAD_RULE);
        }
        days.push(day);
    }
    days.sort_unstable();
    Ok(days)
}

/// `UNTIL`: `YYYYMMDDTHHMMSSZ`, or `YYYYMMDD` (through the end of that day, UTC).
fn until_time(raw: &str) -> Result<Timestamp, ValidationError> {
    let digits = |range: std::ops::Range<usize>| -> Result<i64, ValidationError> {
        let part = raw.get(range).ok_or(BAD_RULE)?;
        if !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(BAD_RULE);
        }
        part.parse().map_err(|_| BAD_RULE)
    };
    let (year, month, day) = (digits(0..4)?, digits(4..6)?, digits(6..8)?);
    let (hour, minute, second) = match raw.len() {
        8 => (23, 59, 59),
        16 if raw.as_bytes()[8] == b'T' && raw.as_bytes()[15] == b'Z' => {
            (digits(9..11)?, digits(11..13)?, digits(13..15)?)
        }
        _ => return Err(BAD_RULE),
    };
    let narrow = |n: i64| i8::try_from(n).map_err(|_| BAD_RULE);
    let civil = DateTime::new(
        i16::try_from(year).map_err(|_| BAD_RULE)?,
        narrow(month)?,
        narrow(day)?,
        narrow(hour)?,
        narrow(minute)?,
        narrow(second)?,
        0,
    )
    .map_err(|_| BAD_RULE)?;
    let at = TimeZone::UTC
        .to_ambiguous_timestamp(civil)
        .compatible()
        .map_err(|_| BAD_RULE)?;
    Timestamp::from_unix_micros(at.as_microsecond()).map_err(|_| BAD_RULE)
}

/// A calendar day, with its number (days since 1970-01-01) for arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Day {
    number: i64,
    year: i16,
    month: i8,
    day: i8,
}

impl Day {
    fn of(civil: DateTime) -> Self {
        let (year, month, day) = (civil.year(), civil.month(), civil.day());
        Self {
            number: days_from_civil(i64::from(year), i64::from(month), i64::from(day)),
            year,
            month,
            day,
        }
    }

    /// The day, if the month has it and the year is one jiff knows.
    fn new(year: i64, month: i8, day: i8) -> Option<Self> {
        let year = i16::try_from(year).ok()?;
        jiff::civil::Date::new(year, month, day).ok()?;
        Some(Self {
            number: days_from_civil(i64::from(year), i64::from(month), i64::from(day)),
            year,
            month,
            day,
        })
    }

    fn from_number(number: i64) -> Option<Self> {
        let (year, month, day) = civil_from_days(number);
        Self::new(year, i8::try_from(month).ok()?, i8::try_from(day).ok()?)
    }

    /// 0 for Monday … 6 for Sunday (1970-01-01 was a Thursday).
    fn weekday(self) -> u8 {
        u8::try_from((self.number + 3).rem_euclid(7)).unwrap_or(0)
    }

    fn days_in_month(self) -> i8 {
        jiff::civil::Date::new(self.year, self.month, 1).map_or(31, |d| d.days_in_month())
    }

    /// This day at the wall-clock time of `like`.
    fn at(self, like: DateTime) -> Option<DateTime> {
        DateTime::new(
            self.year,
            self.month,
            self.day,
            like.hour(),
            like.minute(),
            like.second(),
            like.subsec_nanosecond(),
        )
        .ok()
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date of a day number (`civil_from_days`, the inverse of the above).
fn civil_from_days(number: i64) -> (i64, i64, i64) {
    let z = number + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use proptest::prelude::*;

    use super::*;

    fn at(rfc3339: &str) -> Timestamp {
        Timestamp::parse_rfc3339(rfc3339, "at").unwrap()
    }

    fn zone(name: &str) -> TimeZoneName {
        TimeZoneName::parse(name).unwrap()
    }

    /// The first `n` occurrences, as RFC 3339 times in `zone`.
    fn first(rule: &str, start: &str, zone_name: &str, n: u32) -> Vec<String> {
        let rule = Recurrence::parse(rule).unwrap();
        let zone = zone(zone_name);
        (1..=n)
            .map_while(|k| rule.nth(at(start), &zone, k))
            .map(|t| {
                let t = jiff::Timestamp::from_microsecond(t.unix_micros()).unwrap();
                t.to_zoned_datetime(zone.zone.clone())
                    .strftime("%Y-%m-%dT%H:%M%:z")
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn rules_parse_to_their_canonical_form_and_back() {
        for (raw, canonical) in [
            ("FREQ=DAILY", "FREQ=DAILY"),
            (
                "RRULE:FREQ=WEEKLY;INTERVAL=2;BYDAY=WE,MO",
                "FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,WE",
            ),
            (
                "BYMONTHDAY=-1,15;FREQ=MONTHLY;COUNT=3",
                "FREQ=MONTHLY;BYMONTHDAY=-1,15;COUNT=3",
            ),
            (
                "FREQ=YEARLY;INTERVAL=1;UNTIL=20300101",
                "FREQ=YEARLY;UNTIL=20300101T235959Z",
            ),
            (
                "FREQ=DAILY;UNTIL=20270102T030405Z",
                "FREQ=DAILY;UNTIL=20270102T030405Z",
            ),
        ] {
            let rule = Recurrence::parse(raw).unwrap();
            assert_eq!(rule.to_string(), canonical, "{raw}");
            assert_eq!(Recurrence::parse(canonical).unwrap(), rule);
        }
    }

    #[test]
    fn rules_outside_the_subset_are_refused_naming_the_field() {
        for raw in [
            "",
            "FREQ=HOURLY",
            "FREQ=daily",
            "INTERVAL=2",
            "FREQ=DAILY;FREQ=WEEKLY",
            "FREQ=DAILY;INTERVAL=0",
            "FREQ=DAILY;INTERVAL=1001",
            "FREQ=WEEKLY;BYDAY=1MO",
            "FREQ=WEEKLY;BYDAY=MO,MO",
            "FREQ=MONTHLY;BYMONTHDAY=32",
            "FREQ=MONTHLY;BYMONTHDAY=0",
            "FREQ=DAILY;COUNT=0",
            "FREQ=DAILY;COUNT=3;UNTIL=20300101",
            "FREQ=DAILY;UNTIL=2030-01-01",
            "FREQ=DAILY;BYMONTH=1",
            "FREQ=DAILY;WKST=SU",
            "FREQ=WEEKLY;BYMONTHDAY=1",
            "FREQ=DAILY;",
            &format!("FREQ=DAILY;BYMONTHDAY={}", "1,".repeat(200)),
        ] {
            assert_eq!(Recurrence::parse(raw), Err(BAD_RULE), "{raw:?}");
        }
    }

    #[test]
    fn time_zones_are_iana_names_the_database_knows() {
        assert_eq!(zone("Europe/Berlin").as_str(), "Europe/Berlin");
        // UTC without a lookup, the same zone as the database's.
        assert_eq!(zone("UTC"), TimeZoneName::utc());
        let noon = at("2026-06-01T12:00:00Z");
        assert_eq!(zone("UTC").civil(noon), zone("Etc/UTC").civil(noon));
        assert_eq!(zone("europe/berlin").as_str(), "Europe/Berlin");
        for bad in [
            "",
            "Mars/Olympus",
            "Europe/../../etc/passwd",
            "UTC\n",
            &"A".repeat(65),
        ] {
            assert!(TimeZoneName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn daily_keeps_the_wall_clock_time_across_daylight_saving_in_two_zones() {
        // New York springs forward on 2026-03-08, Berlin on 2026-03-29.
        assert_eq!(
            first(
                "FREQ=DAILY",
                "2026-03-07T09:00:00-05:00",
                "America/New_York",
                3
            ),
            [
                "2026-03-07T09:00-05:00",
                "2026-03-08T09:00-04:00",
                "2026-03-09T09:00-04:00"
            ]
        );
        assert_eq!(
            first(
                "FREQ=DAILY",
                "2026-10-24T08:30:00+02:00",
                "Europe/Berlin",
                3
            ),
            [
                "2026-10-24T08:30+02:00",
                "2026-10-25T08:30+01:00",
                "2026-10-26T08:30+01:00"
            ]
        );
        // A time the change skips moves forward by the gap, that day only.
        assert_eq!(
            first(
                "FREQ=DAILY",
                "2026-03-28T02:30:00+01:00",
                "Europe/Berlin",
                3
            ),
            [
                "2026-03-28T02:30+01:00",
                "2026-03-29T03:30+02:00",
                "2026-03-30T02:30+02:00"
            ]
        );
        // A repeated time is its first.
        assert_eq!(
            first(
                "FREQ=DAILY",
                "2026-10-31T01:30:00-04:00",
                "America/New_York",
                2
            ),
            ["2026-10-31T01:30-04:00", "2026-11-01T01:30-04:00"]
        );
    }

    #[test]
    fn month_ends_and_leap_days_follow_rfc_5545() {
        // The 31st: only the months that have one.
        assert_eq!(
            first("FREQ=MONTHLY", "2027-01-31T10:00:00Z", "UTC", 4),
            [
                "2027-01-31T10:00+00:00",
                "2027-03-31T10:00+00:00",
                "2027-05-31T10:00+00:00",
                "2027-07-31T10:00+00:00"
            ]
        );
        // The last day of every month.
        assert_eq!(
            first(
                "FREQ=MONTHLY;BYMONTHDAY=-1",
                "2028-01-31T10:00:00Z",
                "UTC",
                3
            ),
            [
                "2028-01-31T10:00+00:00",
                "2028-02-29T10:00+00:00",
                "2028-03-31T10:00+00:00"
            ]
        );
        // February 29th: leap years only.
        assert_eq!(
            first("FREQ=YEARLY", "2028-02-29T07:00:00Z", "UTC", 3),
            [
                "2028-02-29T07:00+00:00",
                "2032-02-29T07:00+00:00",
                "2036-02-29T07:00+00:00"
            ]
        );
    }

    #[test]
    fn rfc_5545_examples() {
        // "Every other week on Monday, Wednesday, and Friday until December
        // 24, 1997, starting on Monday, September 1, 1997" (first six).
        assert_eq!(
            first(
                "FREQ=WEEKLY;INTERVAL=2;UNTIL=19971224T000000Z;BYDAY=MO,WE,FR",
                "1997-09-01T09:00:00-04:00",
                "America/New_York",
                6
            ),
            [
                "1997-09-01T09:00-04:00",
                "1997-09-03T09:00-04:00",
                "1997-09-05T09:00-04:00",
                "1997-09-15T09:00-04:00",
                "1997-09-17T09:00-04:00",
                "1997-09-19T09:00-04:00"
            ]
        );
        // … which has 25 occurrences, the last on December 22.
        let all = first(
            "FREQ=WEEKLY;INTERVAL=2;UNTIL=19971224T000000Z;BYDAY=MO,WE,FR",
            "1997-09-01T09:00:00-04:00",
            "America/New_York",
            100,
        );
        assert_eq!(all.len(), 25);
        assert_eq!(all.last().unwrap(), "1997-12-22T09:00-05:00");
        // "Monthly on the first and last day of the month for 10 occurrences".
        let ends = first(
            "FREQ=MONTHLY;COUNT=10;BYMONTHDAY=1,-1",
            "1997-09-30T09:00:00-04:00",
            "America/New_York",
            100,
        );
        assert_eq!(ends.len(), 10);
        assert_eq!(
            ends[..3],
            [
                "1997-09-30T09:00-04:00",
                "1997-10-01T09:00-04:00",
                "1997-10-31T09:00-05:00"
            ]
        );
        assert_eq!(ends[9], "1998-02-01T09:00-05:00");
        // "Daily for 10 occurrences".
        assert_eq!(
            first(
                "FREQ=DAILY;COUNT=10",
                "1997-09-02T09:00:00-04:00",
                "America/New_York",
                100
            )
            .len(),
            10
        );
        // "Every Tuesday, every other month" (the first three).
        assert_eq!(
            first(
                "FREQ=MONTHLY;INTERVAL=2;BYDAY=TU",
                "1997-09-02T09:00:00-04:00",
                "America/New_York",
                6
            )[3..],
            [
                "1997-09-23T09:00-04:00",
                "1997-09-30T09:00-04:00",
                "1997-11-04T09:00-05:00"
            ]
        );
    }

    fn a_rule() -> impl Strategy<Value = Recurrence> {
        let frequency = prop_oneof![
            Just(Frequency::Daily),
            Just(Frequency::Weekly),
            Just(Frequency::Monthly),
            Just(Frequency::Yearly),
        ];
        let month_day = prop_oneof![1i8..=31, -31i8..=-1];
        (
            frequency,
            1u16..=4,
            prop_oneof![Just(0u8), 1u8..=127],
            prop::collection::btree_set(month_day, 0..=3),
        )
            .prop_map(|(frequency, interval, by_day, days)| Recurrence {
                frequency,
                interval,
                by_day,
                by_month_day: days.into_iter().collect(),
                count: None,
                until: None,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// The generated occurrences are exactly the days the day-by-day
        /// reference says are ones, in order, at the start's wall-clock
        /// time, over eight years from any start in two zones.
        #[test]
        fn occurrences_are_the_reference_expansion(
            rule in a_rule(),
            start_day in 0i64..3650,
            minutes in 0i64..1440,
            berlin in any::<bool>(),
        ) {
            let zone = zone(if berlin { "Europe/Berlin" } else { "America/New_York" });
            let (y, m, d) = civil_from_days(days_from_civil(2020, 1, 1) + start_day);
            let civil = DateTime::new(
                i16::try_from(y).unwrap(), i8::try_from(m).unwrap(), i8::try_from(d).unwrap(),
                i8::try_from(minutes / 60).unwrap(), i8::try_from(minutes % 60).unwrap(), 0, 0,
            ).unwrap();
            let start = zone.instant(civil).unwrap();
            let first = zone.civil(start).unwrap();
            let start_day = Day::of(first);
            let horizon = start_day.number + 8 * 366;
            let expected: Vec<Timestamp> = (start_day.number..horizon)
                .map(|n| Day::from_number(n).unwrap())
                .filter(|day| rule.is_occurrence_day(start_day, *day))
                .map(|day| zone.instant(day.at(first).unwrap()).unwrap())
                .collect();
            let got: Vec<Timestamp> = rule
                .occurrences(start, &zone)
                .take_while(|t| zone.civil(*t).map(Day::of).unwrap().number < horizon)
                .collect();
            prop_assert_eq!(&got, &expected);
            // `nth` agrees with the iterator (spot checks).
            for n in [1, 2, 3, 17].into_iter().filter(|n| *n as usize <= got.len()) {
                prop_assert_eq!(rule.nth(start, &zone, n), Some(got[n as usize - 1]));
            }
        }

        /// `COUNT` ends the series after that many; `UNTIL` after its time.
        #[test]
        fn count_and_until_end_the_series(rule in a_rule(), count in 1u32..20) {
            let zone = zone("UTC");
            let start = at("2026-01-01T12:00:00Z");
            let counted = Recurrence { count: Some(count), ..rule.clone() };
            let all: Vec<_> = (1..=count + 5).map_while(|n| counted.nth(start, &zone, n)).collect();
            let unbounded: Vec<_> = (1..=count).map_while(|n| rule.nth(start, &zone, n)).collect();
            prop_assert_eq!(&all, &unbounded);
            if let Some(&last) = all.last() {
                let until = Recurrence { until: Some(last), ..rule.clone() };
                let bounded: Vec<_> = (1..=count + 5).map_while(|n| until.nth(start, &zone, n)).collect();
                prop_assert_eq!(bounded, all);
            }
        }
    }

    #[test]
    fn day_numbers_round_trip() {
        for n in [-800_000, -1, 0, 1, 59, 365, 10_957, 20_000, 2_932_896] {
            let (y, m, d) = civil_from_days(n);
            assert_eq!(days_from_civil(y, m, d), n);
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(Day::new(2026, 12, 4).unwrap().weekday(), 4, "a Friday");
    }
}
