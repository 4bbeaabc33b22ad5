//! Randomness, and the ids made from it.

use uuid::Uuid;

use crate::error::RandomError;
use crate::time::Timestamp;

/// A source of cryptographically secure random bytes.
pub trait Random: Send + Sync {
    /// Fills `buf` with random bytes, or fails: never answers weak bytes.
    fn fill(&self, buf: &mut [u8]) -> Result<(), RandomError>;
}

/// A new UUIDv7 for `now`: ids sort by creation time, to the millisecond.
pub fn new_v7(now: Timestamp, random: &dyn Random) -> Result<Uuid, RandomError> {
    let mut bytes = [0u8; 10];
    random.fill(&mut bytes)?;
    let millis = u64::try_from(now.unix_micros() / 1_000).unwrap_or(0);
    Ok(uuid::Builder::from_unix_timestamp_millis(millis, &bytes).into_uuid())
}
