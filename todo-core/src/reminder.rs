//! Reminders: at a time, or some time before the task is due. A reminder
//! relative to the due time moves with it.

use std::fmt;
use std::time::Duration;

use crate::error::ValidationError;
use crate::time::Timestamp;

/// When one reminder fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reminder {
    /// At this time.
    At(Timestamp),
    /// This long before the due time (0: at it).
    BeforeDue(Duration),
}

impl Reminder {
    /// The longest a reminder may come before the due time.
    pub const MAX_BEFORE: Duration = Duration::from_secs(366 * 86_400);

    /// When it fires for a task due at `due_at` (`None`: a relative one of
    /// a task with no due time, which never fires).
    #[must_use]
    pub fn fires_at(self, due_at: Option<Timestamp>) -> Option<Timestamp> {
        match self {
            Self::At(at) => Some(at),
            Self::BeforeDue(before) => due_at.map(|due| due.saturating_sub(before)),
        }
    }

    /// Parses an ISO 8601 duration of whole weeks, days, hours and minutes
    /// (`PT15M`, `P1D`, `P1DT12H`, `P2W`), as `before_due` is written;
    /// seconds only in whole minutes (`PT0S`, iCalendar's "at the due
    /// time", and `PT90S` no).
    pub fn parse_before_due(raw: &str) -> Result<Self, ValidationError> {
        const BAD: ValidationError = ValidationError::Format {
            field: "reminders",
            what: "reminder: {at} or {before_due} as an ISO 8601 duration such as PT15M or P1D",
        };
        let rest = raw.strip_prefix('P').ok_or(BAD)?;
        let (date, time) = match rest.split_once('T') {
            Some((date, time)) if !time.is_empty() => (date, Some(time)),
            Some(_) => return Err(BAD),
            None => (rest, None),
        };
        let mut seconds: u64 = 0;
        let mut parts = 0;
        let mut read = |text: &str, units: &[(char, u64)]| -> Result<(), ValidationError> {
            let mut number = String::new();
            let mut allowed = units.iter();
            for c in text.chars() {
                if c.is_ascii_digit() {
                    // (eight digits: a year in seconds; the total is bounded
                    // below)
                    if number.len() >= 8 {
                        return Err(BAD);
                    }
                    number.push(c);
                    continue;
                }
                // Units in order, each once.
                let (_, scale) = allowed.by_ref().find(|(unit, _)| *unit == c).ok_or(BAD)?;
                let n: u64 = number.parse().map_err(|_| BAD)?;
                number.clear();
                seconds = seconds.saturating_add(n.saturating_mul(*scale));
                parts += 1;
            }
            if number.is_empty() { Ok(()) } else { Err(BAD) }
        };
        read(date, &[('W', 7 * 86_400), ('D', 86_400)])?;
        if let Some(time) = time {
            read(time, &[('H', 3600), ('M', 60), ('S', 1)])?;
        }
        let before = Duration::from_secs(seconds);
        if parts == 0 || before > Self::MAX_BEFORE || !seconds.is_multiple_of(60) {
            return Err(BAD);
        }
        Ok(Self::BeforeDue(before))
    }
}

impl fmt::Display for Reminder {
    /// `at` as RFC 3339, `before_due` as an ISO 8601 duration (`P1DT2H30M`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::At(at) => write!(f, "{at}"),
            Self::BeforeDue(before) => {
                let total = before.as_secs() / 60;
                let (days, hours, minutes) = (total / 1440, total / 60 % 24, total % 60);
                f.write_str("P")?;
                if days > 0 {
                    write!(f, "{days}D")?;
                }
                if hours > 0 || minutes > 0 || days == 0 {
                    f.write_str("T")?;
                    if hours > 0 {
                        write!(f, "{hours}H")?;
                    }
                    if minutes > 0 || hours == 0 {
                        write!(f, "{minutes}M")?;
                    }
                }
                Ok(())
            }
        }
    }
}

/// A task's reminders: at most [`Reminders::MAX`], each once, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Reminders(Vec<Reminder>);

impl Reminders {
    /// The most reminders a task may have.
    pub const MAX: usize = 10;

    /// Takes the reminders, refusing more than [`Reminders::MAX`]; the
    /// same one twice counts once.
    pub fn new(items: impl IntoIterator<Item = Reminder>) -> Result<Self, ValidationError> {
        let mut kept: Vec<Reminder> = Vec::new();
        for item in items {
            if kept.contains(&item) {
                continue;
            }
            if kept.len() == Self::MAX {
                return Err(ValidationError::TooMany {
                    field: "reminders",
                    max: Self::MAX,
                });
            }
            kept.push(item);
        }
        kept.sort_by_key(|r| match r {
            Reminder::At(at) => (0, at.unix_micros()),
            Reminder::BeforeDue(d) => (1, i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
        });
        Ok(Self(kept))
    }

    /// The reminders, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Reminder> {
        self.0.iter()
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Those relative to the due time: what a task's next occurrence keeps.
    #[must_use]
    pub fn relative(&self) -> Self {
        Self(
            self.0
                .iter()
                .copied()
                .filter(|r| matches!(r, Reminder::BeforeDue(_)))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn before_due_durations_read_and_write_back() {
        for (raw, seconds, shown) in [
            ("PT15M", 900, "PT15M"),
            ("PT0M", 0, "PT0M"),
            ("P1D", 86_400, "P1D"),
            ("P1DT2H30M", 95_400, "P1DT2H30M"),
            ("P2W", 14 * 86_400, "P14D"),
            ("PT90M", 5400, "PT1H30M"),
            ("PT0S", 0, "PT0M"),
            ("PT120S", 120, "PT2M"),
            ("PT31536000S", 365 * 86_400, "P365D"),
            ("PT1M60S", 120, "PT2M"),
            ("P1DT120S", 86_520, "P1DT2M"),
        ] {
            let reminder = Reminder::parse_before_due(raw).unwrap();
            assert_eq!(
                reminder,
                Reminder::BeforeDue(Duration::from_secs(seconds)),
                "{raw}"
            );
            assert_eq!(reminder.to_string(), shown);
            assert_eq!(Reminder::parse_before_due(shown).unwrap(), reminder);
        }
        for bad in [
            "",
            "P",
            "PT",
            "15M",
            "P1H",
            "PT1D",
            "P1DT",
            "PT1M1H",
            "P1D1D",
            "P-1D",
            "P367D",
            "P9999999D",
            "PT1.5H",
            "PT90S",
            "PT1S",
            "PT1S1M",
            "P1S",
        ] {
            assert!(Reminder::parse_before_due(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn at_most_ten_reminders_each_once() {
        let before = |m: u64| Reminder::BeforeDue(Duration::from_secs(m * 60));
        assert_eq!(
            Reminders::new((0..10).map(before)).unwrap().iter().count(),
            10
        );
        assert_eq!(
            Reminders::new([before(5), before(5)])
                .unwrap()
                .iter()
                .count(),
            1
        );
        assert_eq!(
            Reminders::new((0..11).map(before)),
            Err(ValidationError::TooMany {
                field: "reminders",
                max: 10
            })
        );
    }

    #[test]
    fn a_relative_reminder_follows_the_due_time() {
        let due = Timestamp::from_unix_micros(10_000_000_000).unwrap();
        let r = Reminder::BeforeDue(Duration::from_secs(60));
        assert_eq!(
            r.fires_at(Some(due)).unwrap().unix_micros(),
            10_000_000_000 - 60_000_000
        );
        assert_eq!(r.fires_at(None), None);
    }
}
