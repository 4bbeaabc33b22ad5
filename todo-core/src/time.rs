//! Instants, and the clock they come from. Time is a parameter: nothing in the
//! library reads the system clock except through [`Clock`].

use std::fmt;
use std::time::Duration;

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

use crate::error::ValidationError;

/// An instant in UTC with microsecond precision, between the years 1 and 9999.
///
/// Microseconds are what both databases keep exactly, so a stored instant
/// reads back equal to the one written.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// 0001-01-01T00:00:00Z.
    pub const MIN: Self = Self(-62_135_596_800_000_000);
    /// 9999-12-31T23:59:59.999999Z.
    pub const MAX: Self = Self(253_402_300_799_999_999);
    /// 1970-01-01T00:00:00Z.
    pub const UNIX_EPOCH: Self = Self(0);

    /// An instant from microseconds since the Unix epoch.
    pub fn from_unix_micros(micros: i64) -> Result<Self, ValidationError> {
        if (Self::MIN.0..=Self::MAX.0).contains(&micros) {
            Ok(Self(micros))
        } else {
            Err(Self::out_of_range("time"))
        }
    }

    /// An instant from a date-time in any offset; sub-microsecond digits are dropped.
    pub fn from_datetime(at: OffsetDateTime) -> Result<Self, ValidationError> {
        let micros = at.unix_timestamp_nanos() / 1_000;
        i64::try_from(micros)
            .map_err(|_| Self::out_of_range("time"))
            .and_then(Self::from_unix_micros)
    }

    /// Parses an RFC 3339 date-time (any offset, normalised to UTC). `field`
    /// names the input in the error.
    pub fn parse_rfc3339(raw: &str, field: &'static str) -> Result<Self, ValidationError> {
        // Anything longer than a date-time with nanoseconds and an offset is not one.
        if raw.len() > 40 {
            return Err(ValidationError::Format {
                field,
                what: "RFC 3339 date-time",
            });
        }
        let at = OffsetDateTime::parse(raw, &Rfc3339).map_err(|_| ValidationError::Format {
            field,
            what: "RFC 3339 date-time",
        })?;
        Self::from_datetime(at).map_err(|_| Self::out_of_range(field))
    }

    /// Microseconds since the Unix epoch.
    #[must_use]
    pub const fn unix_micros(self) -> i64 {
        self.0
    }

    /// Whole seconds since the Unix epoch (rounded down).
    #[must_use]
    pub const fn unix_seconds(self) -> i64 {
        self.0.div_euclid(1_000_000)
    }

    /// This instant as a `time` date-time in UTC.
    #[must_use]
    pub fn to_datetime(self) -> OffsetDateTime {
        // In range by construction; the fallback is never taken.
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
            .to_offset(UtcOffset::UTC)
    }

    /// The instant `by` later, saturating at [`Timestamp::MAX`].
    #[must_use]
    pub fn saturating_add(self, by: Duration) -> Self {
        let micros = i64::try_from(by.as_micros()).unwrap_or(i64::MAX);
        Self(self.0.saturating_add(micros).min(Self::MAX.0))
    }

    /// The instant `by` earlier, saturating at [`Timestamp::MIN`].
    #[must_use]
    pub fn saturating_sub(self, by: Duration) -> Self {
        let micros = i64::try_from(by.as_micros()).unwrap_or(i64::MAX);
        Self(self.0.saturating_sub(micros).max(Self::MIN.0))
    }

    /// How long after `earlier` this instant is (zero if it is not later).
    #[must_use]
    pub fn duration_since(self, earlier: Self) -> Duration {
        Duration::from_micros(u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0))
    }

    fn out_of_range(field: &'static str) -> ValidationError {
        ValidationError::Format {
            field,
            what: "date-time between the years 1 and 9999",
        }
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC, e.g. `2026-11-26T13:44:00.123456Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Formatted on the stack: every task on the wire shows four of these.
        let mut text = [0u8; 40];
        let mut rest = &mut text[..];
        if self.to_datetime().format_into(&mut rest, &Rfc3339).is_err() {
            return Err(fmt::Error);
        }
        // What is left unwritten tells the length (the count `format_into`
        // returns is not the whole text's for every format).
        let written = 40 - rest.len();
        let text = text.get(..written).ok_or(fmt::Error)?;
        f.write_str(std::str::from_utf8(text).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Where the library gets the current time.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> Timestamp;
}
