//! What a server depends on, asked for readiness and for gauges.

use std::fmt;
use std::sync::Arc;

use prometheus_client::encoding::DescriptorEncoder;
use todo_auth::BoundedHasher;
use todo_core::PasswordHasher;

use crate::metrics::gauge;

/// Why a dependency cannot serve: its error, kept for the log (the
/// client sees a plain 503).
#[derive(Debug, thiserror::Error)]
#[error("not ready: {0}")]
pub struct NotReady(#[source] pub Box<dyn std::error::Error + Send + Sync>);

/// A dependency: can it serve, and what does it report.
pub trait Probe: Send + Sync {
    /// One round trip, or why it failed. Blocking: called off the executor.
    fn ready(&self) -> Result<(), NotReady>;
    /// Encodes its gauges into a scrape (see [`gauge`]).
    fn gauges(&self, encoder: &mut DescriptorEncoder<'_>) -> fmt::Result;
}

impl<H: PasswordHasher> Probe for BoundedHasher<H> {
    fn ready(&self) -> Result<(), NotReady> {
        Ok(())
    }

    fn gauges(&self, encoder: &mut DescriptorEncoder<'_>) -> fmt::Result {
        gauge(
            encoder,
            "todo_hashing_queue_depth",
            "Password hashes waiting for a worker.",
            saturating(self.queue_depth()),
        )?;
        gauge(
            encoder,
            "todo_hashing_running",
            "Password hashes running.",
            saturating(self.running()),
        )
    }
}

/// Asks every probe, on the blocking pool.
pub async fn ready(probes: Vec<Arc<dyn Probe>>) -> Result<(), NotReady> {
    match tokio::task::spawn_blocking(move || probes.iter().try_for_each(|p| p.ready())).await {
        Ok(result) => result,
        Err(e) => Err(NotReady(Box::new(e))),
    }
}

/// A count as a gauge value.
fn saturating(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
