//! Lists that scan (a filter no index holds, or `q`) hold a database
//! connection for as long as they read, up to every task of the owner: a
//! few users repeating them would take the whole pool, and with it every
//! login, refresh and write of everyone else. So they take a slot first:
//! at most `slots` at once across users, leaving the rest of the pool to
//! other work, and one at a time per user: one user's searches queue
//! behind each other (a cheap wait, holding nothing) and not in front of
//! everyone's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use todo_core::UserId;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::problem::ApiError;

/// How long a scan waits for a slot before 503: as long as a request
/// waits for a pooled connection by default.
const WAIT: Duration = Duration::from_secs(2);

type Owners = Arc<Mutex<HashMap<UserId, Arc<Semaphore>>>>;

/// The scan slots of one API.
#[derive(Debug)]
pub(crate) struct ScanSlots {
    shared: Arc<Semaphore>,
    /// A one-permit semaphore per user with a scan running or waiting.
    owners: Owners,
}

/// A slot held: the scan may run. Dropping it frees the slot. (Fields
/// drop in order: the permits before the owner's entry, which looks at
/// who still holds its semaphore.)
#[derive(Debug)]
pub(crate) struct ScanSlot {
    _shared: OwnedSemaphorePermit,
    _own: OwnedSemaphorePermit,
    _entry: OwnerEntry,
}

/// A hold on the owner's semaphore in `owners`; the last one to go
/// removes the entry, so that the map holds only users scanning now.
#[derive(Debug)]
struct OwnerEntry {
    owner: UserId,
    semaphore: Arc<Semaphore>,
    owners: Owners,
}

impl Drop for OwnerEntry {
    fn drop(&mut self) {
        let mut owners = self.owners.lock().unwrap_or_else(PoisonError::into_inner);
        // Held by the map and by this entry alone: no scan of the owner
        // runs or waits (clones are made under this lock only).
        if Arc::strong_count(&self.semaphore) == 2 {
            owners.remove(&self.owner);
        }
    }
}

impl ScanSlots {
    /// `slots` scans at once (at least one).
    pub(crate) fn new(slots: usize) -> Self {
        Self {
            shared: Arc::new(Semaphore::new(slots.max(1))),
            owners: Owners::default(),
        }
    }

    /// A slot for `owner`'s scan, after their earlier scans and then a
    /// shared slot; 503 when that takes longer than [`WAIT`].
    pub(crate) async fn take(&self, owner: UserId) -> Result<ScanSlot, ApiError> {
        let entry = {
            let mut owners = self.owners.lock().unwrap_or_else(PoisonError::into_inner);
            let semaphore = owners
                .entry(owner)
                .or_insert_with(|| Arc::new(Semaphore::new(1)));
            OwnerEntry {
                owner,
                semaphore: Arc::clone(semaphore),
                owners: Arc::clone(&self.owners),
            }
        };
        let own = Arc::clone(&entry.semaphore);
        let shared = Arc::clone(&self.shared);
        let permits = tokio::time::timeout(WAIT, async move {
            let own = own.acquire_owned().await?;
            Ok::<_, tokio::sync::AcquireError>((own, shared.acquire_owned().await?))
        })
        .await;
        match permits {
            Ok(Ok((own, shared))) => Ok(ScanSlot {
                _shared: shared,
                _own: own,
                _entry: entry,
            }),
            // (The semaphores are never closed.)
            Ok(Err(_)) | Err(_) => Err(ApiError::unavailable(Duration::from_secs(1), None)),
        }
    }

    /// Users with a scan running or waiting (for tests).
    #[cfg(test)]
    fn owners(&self) -> usize {
        self.owners.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(n: u128) -> UserId {
        UserId::from_uuid(uuid::Uuid::from_u128(n))
    }

    #[tokio::test(start_paused = true)]
    async fn a_users_scans_queue_behind_each_other_and_all_share_a_bound() {
        let slots = Arc::new(ScanSlots::new(2));
        let alice = slots.take(user(1)).await.unwrap();
        // alice's second scan waits for her first, not for a shared slot.
        let second = tokio::spawn({
            let slots = Arc::clone(&slots);
            async move { slots.take(user(1)).await }
        });
        let bob = slots.take(user(2)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!second.is_finished(), "waits while her first runs");
        drop(alice);
        let second = second.await.unwrap().expect("alice's second runs");
        // Both shared slots are held (alice's second, bob's): carol waits,
        // then gets 503, and her wait leaves no entry behind.
        let carol = slots.take(user(3)).await.unwrap_err();
        assert_eq!(carol.status.as_u16(), 503);
        assert_eq!(slots.owners(), 2);
        drop((second, bob));
        assert_eq!(slots.owners(), 0, "no entry outlives its scans");
        drop(slots.take(user(3)).await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn a_users_scan_waits_for_their_earlier_one_at_most_the_bound() {
        let slots = ScanSlots::new(4);
        let first = slots.take(user(1)).await.unwrap();
        let started = tokio::time::Instant::now();
        let second = slots.take(user(1)).await.unwrap_err();
        assert_eq!(second.status.as_u16(), 503);
        assert_eq!(started.elapsed(), WAIT);
        // Another user is not held up by it.
        drop(slots.take(user(2)).await.unwrap());
        drop(first);
        assert_eq!(slots.owners(), 0);
    }
}
