//! The real clock and the operating system's randomness: the only places in
//! the library that read either.

use std::time::SystemTime;

use todo_core::{Clock, Random, RandomError, Timestamp};

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // this is the clock adapter
    fn now(&self) -> Timestamp {
        let micros = match SystemTime::now().duration_since(SystemTime::UNIX_EPOCH) {
            Ok(since) => i64::try_from(since.as_micros()).unwrap_or(i64::MAX),
            Err(before) => -i64::try_from(before.duration().as_micros()).unwrap_or(i64::MAX),
        };
        Timestamp::from_unix_micros(micros).unwrap_or(Timestamp::UNIX_EPOCH)
    }
}

/// The operating system's CSPRNG, through aws-lc.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsRandom;

impl Random for OsRandom {
    // The one call of aws-lc's generator: everything else draws through
    // `Random`, so tests can seed it (banned elsewhere in `clippy.toml`).
    #[allow(clippy::disallowed_methods)]
    fn fill(&self, buf: &mut [u8]) -> Result<(), RandomError> {
        aws_lc_rs::rand::fill(buf).map_err(|e| RandomError(Box::new(e)))
    }
}
