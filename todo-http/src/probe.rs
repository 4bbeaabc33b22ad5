//! What a server depends on, asked for readiness and for gauges.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use prometheus_client::encoding::DescriptorEncoder;
use todo_auth::BoundedHasher;
use todo_core::PasswordHasher;

use crate::metrics::{Metrics, gauge};

/// Why a dependency cannot serve: its error, kept for the log (the
/// client sees a plain 503).
#[derive(Debug, thiserror::Error)]
#[error("not ready: {0}")]
pub struct NotReady(#[source] pub Box<dyn std::error::Error + Send + Sync>);

/// A dependency: can it serve, and what does it report.
pub trait Probe: Send + Sync {
    /// One round trip, or why it failed. Blocking: called off the executor.
    fn ready(&self) -> Result<(), NotReady>;
    /// Encodes its gauges, and counters it keeps, into a scrape (see
    /// [`gauge`], [`crate::counter`]).
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
async fn ready(probes: Vec<Arc<dyn Probe>>) -> Result<(), NotReady> {
    match crate::blocking::spawn_held(move || probes.iter().try_for_each(|p| p.ready())).await {
        Ok(result) => result,
        Err(e) => Err(NotReady(Box::new(e))),
    }
}

/// A count as a gauge value.
fn saturating(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// What an operator asks of an API beside its routes: is it ready, its
/// metrics, and its OpenAPI document.
#[derive(Clone)]
pub struct Operations {
    probes: Vec<Arc<dyn Probe>>,
    metrics: Arc<Metrics>,
    openapi: Bytes,
}

impl fmt::Debug for Operations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Operations")
            .field("probes", &self.probes.len())
            .finish_non_exhaustive()
    }
}

impl Operations {
    /// `probes` answer readiness and add their gauges to the metrics;
    /// `document` is served at `/openapi.json`.
    pub fn new(
        probes: Vec<Arc<dyn Probe>>,
        document: &impl serde::Serialize,
    ) -> Result<Self, serde_json::Error> {
        Ok(Self {
            metrics: Arc::new(Metrics::new(&probes)),
            probes,
            openapi: Bytes::from(serde_json::to_vec(document)?),
        })
    }

    /// Two APIs served as one: ready when both are, `first`'s metrics (which
    /// count the requests of both), and `document`.
    pub(crate) fn joined(
        first: &Self,
        second: &Self,
        document: &impl serde::Serialize,
    ) -> Result<Self, serde_json::Error> {
        Ok(Self {
            probes: first.probes.iter().chain(&second.probes).cloned().collect(),
            metrics: Arc::clone(&first.metrics),
            openapi: Bytes::from(serde_json::to_vec(document)?),
        })
    }

    /// The OpenAPI document, serialised.
    #[must_use]
    pub fn openapi(&self) -> Bytes {
        self.openapi.clone()
    }

    /// Whether every dependency answers (asked on the blocking pool).
    pub async fn ready(&self) -> Result<(), NotReady> {
        ready(self.probes.clone()).await
    }

    /// The metrics (the probes' gauges included).
    #[must_use]
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}
