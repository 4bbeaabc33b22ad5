//! The relay: every change of every owner's stream, handed on to a message
//! broker (the server publishes to RabbitMQ) at least once and, per owner,
//! in the order the changes committed.
//!
//! The log is the queue. The store keeps, per owner's stream, how far the
//! relay has got, and leases a stream to one relay at a time (several
//! instances may run one each): a relay leases streams that are behind,
//! publishes their next changes in order, and settles how far the broker
//! confirmed under the same lease. A relay that stops, or loses its broker,
//! settles nothing past what was confirmed, and whoever leases the stream
//! next starts there: a change may be published twice (at least once),
//! never skipped. A lease that runs out before it is settled goes to
//! another relay, and its late settlement is refused.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::change::{Change, LogPosition};
use crate::error::{Result, StoreError};
use crate::ports::TaskStore;
use crate::time::{Clock, Timestamp};
use crate::user::UserId;

/// One owner's stream as the relay left it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayedStream {
    /// The stream's owner.
    pub owner: UserId,
    /// The relay has published (or passed over) the stream's changes up
    /// to here.
    pub relayed_through: LogPosition,
}

/// Where the relay's progress through each stream is kept, with its leases.
pub trait RelayStore: Send + Sync {
    /// Leases, until `lease_until`, up to `limit` streams whose latest
    /// change is past their `relayed_through` and that are not leased (or
    /// whose lease ran out by `now`), those leased longest ago first:
    /// atomically, so that of several relays asking at once each stream
    /// goes to one. Returns them as leased.
    fn lease_unrelayed_streams(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
    ) -> Result<Vec<RelayedStream>, StoreError>;
    /// Whether any stream is behind and free to lease at `now`: a read,
    /// for an idle relay to look without taking the write lock.
    fn any_unrelayed_stream(&self, now: Timestamp) -> Result<bool, StoreError>;
    /// Records that `owner`'s stream is relayed through `relayed_through`
    /// (never moving it back) and ends the lease, if the stream is still
    /// leased until `lease_until`; `false` (nothing written) if the lease
    /// was lost to another relay.
    fn settle_relayed_stream(
        &self,
        owner: UserId,
        lease_until: Timestamp,
        relayed_through: LogPosition,
    ) -> Result<bool, StoreError>;
}

/// A stream leased to the caller ([`RelayService::lease`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeasedStream {
    /// The stream as leased.
    pub stream: RelayedStream,
    /// The lease's end, which also names it.
    pub until: Timestamp,
}

/// The next changes of a leased stream ([`RelayService::pending`]).
#[derive(Debug, Clone, Default)]
pub struct RelayBatch {
    /// The changes to publish, in order.
    pub changes: Vec<Change>,
    /// How far the stream moves on before the first of them: where it
    /// was, or past what the read looked at when it found nothing to
    /// publish. (Not past a mark of what retention or a cap dropped: a
    /// project's mark is no floor for the stream's other changes.)
    pub skipped_through: LogPosition,
    /// Whether retention dropped changes before they were relayed.
    pub dropped: bool,
}

/// Leases streams, reads what they have to relay, and settles how far a
/// relay got.
#[derive(Clone)]
pub struct RelayService {
    tasks: Arc<dyn TaskStore>,
    store: Arc<dyn RelayStore>,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for RelayService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelayService").finish_non_exhaustive()
    }
}

impl RelayService {
    /// The relay's progress in `store`, the changes read from `tasks`.
    #[must_use]
    pub fn new(
        tasks: Arc<dyn TaskStore>,
        store: Arc<dyn RelayStore>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            tasks,
            store,
            clock,
        }
    }

    /// Leases up to `limit` streams that have changes to relay, for
    /// `lease`, the least recently served first. Looks with a read first:
    /// an idle relay takes no write lock.
    pub fn lease(&self, limit: usize, lease: Duration) -> Result<Vec<LeasedStream>> {
        let now = self.clock.now();
        if !self.store.any_unrelayed_stream(now)? {
            return Ok(Vec::new());
        }
        let until = now.saturating_add(lease);
        Ok(self
            .store
            .lease_unrelayed_streams(now, until, limit)?
            .into_iter()
            .map(|stream| LeasedStream { stream, until })
            .collect())
    }

    /// Up to `limit` changes of a leased stream after what it relayed, in
    /// order. Changes that retention or a cap dropped before they were
    /// relayed are passed over, and counted; the stream's others are not.
    pub fn pending(&self, leased: &LeasedStream, limit: usize) -> Result<RelayBatch> {
        let stream = leased.stream;
        let log = self
            .tasks
            .changes_after(stream.owner, stream.relayed_through, limit)?;
        // (what was dropped is not in the read; its mark is no floor for
        // the stream's other changes: see `WebhookService::pending`)
        let mut skipped_through = stream.relayed_through;
        let changes: Vec<Change> = log
            .changes
            .into_iter()
            .filter(|change| change.position > skipped_through)
            .collect();
        // Nothing to publish in what the read looked at: the stream moves
        // on past it (a quiet stream behind a busy log would otherwise be
        // read from the same place for ever: review of session 22).
        if changes.is_empty() {
            skipped_through = skipped_through.max(log.scanned_through);
        }
        Ok(RelayBatch {
            changes,
            skipped_through,
            dropped: log.pruned_through > stream.relayed_through,
        })
    }

    /// Records that the broker confirmed a leased stream's changes through
    /// `through`, and ends the lease; `false` if the lease was lost (the
    /// next relay starts where the last settlement left it).
    pub fn settle(&self, leased: &LeasedStream, through: LogPosition) -> Result<bool> {
        Ok(self
            .store
            .settle_relayed_stream(leased.stream.owner, leased.until, through)?)
    }
}
