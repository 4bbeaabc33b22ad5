//! Lists that scan (a filter no index holds, or `q`) hold a database
//! connection for as long as they read, up to every task of the owner, and
//! so do lists across many projects (a read of an index range each): a
//! few users repeating them would take the whole pool, and with it every
//! login, refresh and write of everyone else. So they take a slot first:
//! at most `slots` at once across users, leaving the rest of the pool to
//! other work, and one at a time per user: one user's searches queue
//! behind each other (a cheap wait, holding nothing) and not in front of
//! everyone's. The same make gives each user a few writes at once, with no
//! bound across users (`ScanSlots::per_user`), and a few plain lists at
//! once, with a bound across users (`ScanSlots::bounded`: each list holds
//! its page in memory).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use todo_core::{Error as CoreError, UserId};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::problem::ApiError;

/// How long a scan waits for a slot: as long as a request waits for a
/// pooled connection by default (the connection's wait comes after).
const WAIT: Duration = Duration::from_secs(2);

/// Per user with a scan running or waiting: their one-permit semaphore and
/// how many requests hold it (running or waiting), counted under the lock.
type Owners = Arc<Mutex<HashMap<UserId, (Arc<Semaphore>, usize)>>>;

/// The scan slots of one API (and, of the same make, its write and list
/// slots: `ScanSlots::per_user`).
#[derive(Debug)]
pub(crate) struct ScanSlots {
    shared: Arc<Semaphore>,
    owners: Owners,
    /// Slots one user may hold at once.
    per_user: usize,
}

/// A slot held: the scan may run. Hold it for as long as the scan runs
/// (move it into the blocking work: a request cancelled while its scan
/// runs must not give the slot back). (Fields drop in order: the permits
/// before the owner's entry.)
#[derive(Debug)]
pub(crate) struct ScanSlot {
    _shared: OwnedSemaphorePermit,
    _own: OwnedSemaphorePermit,
    _entry: OwnerEntry,
}

/// One request's hold on its owner's entry in `owners`; the last to go
/// removes it, so that the map holds only users scanning or waiting now.
#[derive(Debug)]
struct OwnerEntry {
    owner: UserId,
    owners: Owners,
}

impl OwnerEntry {
    /// Joins `owner`'s entry (made if need be) and hands out its semaphore.
    fn join(owners: &Owners, owner: UserId, per_user: usize) -> (Self, Arc<Semaphore>) {
        let mut map = owners.lock().unwrap_or_else(PoisonError::into_inner);
        let (semaphore, holders) = map
            .entry(owner)
            .or_insert_with(|| (Arc::new(Semaphore::new(per_user)), 0));
        *holders += 1;
        let entry = Self {
            owner,
            owners: Arc::clone(owners),
        };
        (entry, Arc::clone(semaphore))
    }
}

impl Drop for OwnerEntry {
    fn drop(&mut self) {
        let mut map = self.owners.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, holders)) = map.get_mut(&self.owner) {
            *holders -= 1;
            if *holders == 0 {
                map.remove(&self.owner);
            }
        }
    }
}

impl ScanSlots {
    /// `slots` scans at once (at least one), one a user.
    pub(crate) fn new(slots: usize) -> Self {
        Self {
            shared: Arc::new(Semaphore::new(slots.max(1))),
            owners: Owners::default(),
            per_user: 1,
        }
    }

    /// `per_user` slots at once a user (at least one), with no bound across
    /// users beyond the pool's own: for writes. A write may
    /// wait, holding its pooled connection, on rows another transaction of
    /// its user holds (their import, say): this bounds how many connections
    /// one user's waiting writes can hold, and the rest wait here, holding
    /// nothing.
    pub(crate) fn per_user(per_user: usize) -> Self {
        Self {
            shared: Arc::new(Semaphore::new(Semaphore::MAX_PERMITS)),
            owners: Owners::default(),
            per_user: per_user.max(1),
        }
    }

    /// `per_user` slots at once a user (at least one), and `slots` across
    /// users (at least one): for lists, whose pages are built in memory.
    pub(crate) fn bounded(slots: usize, per_user: usize) -> Self {
        Self {
            shared: Arc::new(Semaphore::new(slots.max(1))),
            owners: Owners::default(),
            per_user: per_user.max(1),
        }
    }

    /// A slot for `owner`'s scan, after their earlier scans and then a
    /// shared slot. Waiting more than [`WAIT`] behind their own scans is
    /// the user's doing: 429; for a shared slot, the service is busy: 503.
    pub(crate) async fn take(&self, owner: UserId) -> Result<ScanSlot, ApiError> {
        let (entry, own) = OwnerEntry::join(&self.owners, owner, self.per_user);
        let deadline = tokio::time::Instant::now() + WAIT;
        let busy = || ApiError::unavailable(Duration::from_secs(1), None);
        // (The semaphores are never closed: an acquire error cannot happen.)
        let own = match tokio::time::timeout_at(deadline, own.acquire_owned()).await {
            Ok(Ok(own)) => own,
            Ok(Err(_)) => return Err(busy()),
            Err(_) => {
                return Err(CoreError::RateLimited {
                    retry_after: Duration::from_secs(1),
                }
                .into());
            }
        };
        match tokio::time::timeout_at(deadline, Arc::clone(&self.shared).acquire_owned()).await {
            Ok(Ok(shared)) => Ok(ScanSlot {
                _shared: shared,
                _own: own,
                _entry: entry,
            }),
            Ok(Err(_)) | Err(_) => Err(busy()),
        }
    }

    /// Users with a scan running or waiting (for tests).
    #[cfg(test)]
    fn owners(&self) -> usize {
        self.owners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
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
    async fn lists_are_bounded_per_user_and_across_users() {
        let slots = ScanSlots::bounded(3, 2);
        let alice = [
            slots.take(user(1)).await.unwrap(),
            slots.take(user(1)).await.unwrap(),
        ];
        assert_eq!(
            slots.take(user(1)).await.unwrap_err().status.as_u16(),
            429,
            "her third waits on her own two"
        );
        let bob = slots.take(user(2)).await.unwrap();
        // Three are held across users: carol's waits, then 503.
        let started = tokio::time::Instant::now();
        assert_eq!(slots.take(user(3)).await.unwrap_err().status.as_u16(), 503);
        assert_eq!(started.elapsed(), WAIT);
        drop(alice);
        drop(slots.take(user(3)).await.unwrap());
        drop(bob);
        assert_eq!(slots.owners(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_users_scan_waits_for_their_earlier_one_at_most_the_bound_then_429() {
        let slots = ScanSlots::new(4);
        let first = slots.take(user(1)).await.unwrap();
        let started = tokio::time::Instant::now();
        let second = slots.take(user(1)).await.unwrap_err();
        assert_eq!(second.status.as_u16(), 429, "the wait was the user's own");
        assert_eq!(started.elapsed(), WAIT);
        // Another user is not held up by it.
        drop(slots.take(user(2)).await.unwrap());
        drop(first);
        assert_eq!(slots.owners(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_user_holds_at_most_their_write_slots_and_others_are_not_held_up() {
        let slots = ScanSlots::per_user(2);
        let first = slots.take(user(1)).await.unwrap();
        let second = slots.take(user(1)).await.unwrap();
        let third = slots.take(user(1)).await.unwrap_err();
        assert_eq!(
            third.status.as_u16(),
            429,
            "a third of hers waits, then 429"
        );
        let others: Vec<_> = (2..40).map(|n| slots.take(user(n))).collect();
        for other in others {
            drop(other.await.unwrap());
        }
        drop(first);
        drop(slots.take(user(1)).await.unwrap());
        drop(second);
        assert_eq!(slots.owners(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn waiters_that_give_up_together_leave_no_entry() {
        let slots = Arc::new(ScanSlots::new(1));
        let running = slots.take(user(1)).await.unwrap();
        let waiters: Vec<_> = (0..8)
            .map(|_| {
                let slots = Arc::clone(&slots);
                tokio::spawn(async move { slots.take(user(1)).await.map(drop) })
            })
            .collect();
        // Some give up by timing out, others are cancelled.
        for (n, waiter) in waiters.into_iter().enumerate() {
            if n % 2 == 0 {
                waiter.abort();
            } else {
                assert_eq!(waiter.await.unwrap().unwrap_err().status.as_u16(), 429);
            }
        }
        assert_eq!(slots.owners(), 1, "the running scan's");
        drop(running);
        assert_eq!(slots.owners(), 0);
    }
}
