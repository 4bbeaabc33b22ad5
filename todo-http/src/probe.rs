//! What a server depends on, asked for readiness and for gauges.

use std::sync::Arc;

use todo_auth::BoundedHasher;
use todo_core::PasswordHasher;

use crate::metrics::gauge;

/// A dependency: can it serve, and what does it report.
pub trait Probe: Send + Sync {
    /// One round trip, or why it failed. Blocking: called off the executor.
    fn ready(&self) -> Result<(), String>;
    fn gauges(&self, out: &mut String);
}

impl<H: PasswordHasher> Probe for BoundedHasher<H> {
    fn ready(&self) -> Result<(), String> {
        Ok(())
    }

    fn gauges(&self, out: &mut String) {
        gauge(
            out,
            "todo_hashing_queue_depth",
            "Password hashes waiting for a worker.",
            self.queue_depth(),
        );
        gauge(
            out,
            "todo_hashing_running",
            "Password hashes running.",
            self.running(),
        );
    }
}

/// Asks every probe, on the blocking pool.
pub async fn ready(probes: Vec<Arc<dyn Probe>>) -> Result<(), String> {
    match tokio::task::spawn_blocking(move || probes.iter().try_for_each(|p| p.ready())).await {
        Ok(result) => result,
        Err(e) => Err(e.to_string()),
    }
}
