//! What one client may hold at once: connection slots per address, and
//! bytes of request bodies buffered across the whole process.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use todo_core::client_key;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Connection (or, behind a trusted proxy, request) slots per client
/// address: at most `cap` each. IPv6 addresses count per /64, the block one
/// subscriber usually gets. Memory is bounded by the slots held: an address
/// whose count falls to zero is forgotten.
#[derive(Debug)]
pub struct ClientSlots {
    cap: usize,
    held: Mutex<HashMap<IpAddr, usize>>,
}

impl ClientSlots {
    #[must_use]
    pub fn new(cap: usize) -> Arc<Self> {
        Arc::new(Self {
            cap,
            held: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for `client`, or `None` when it already holds `cap`.
    pub fn try_take(self: &Arc<Self>, client: IpAddr) -> Option<ClientSlot> {
        let key = client_key(client);
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let count = held.entry(key).or_insert(0);
        if *count >= self.cap {
            return None;
        }
        *count += 1;
        Some(ClientSlot {
            slots: Arc::clone(self),
            key,
        })
    }
}

#[cfg(test)]
impl ClientSlots {
    /// Addresses holding a slot now.
    pub(crate) fn addresses(&self) -> usize {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// One slot of one client; given back on drop.
#[derive(Debug)]
pub struct ClientSlot {
    slots: Arc<ClientSlots>,
    key: IpAddr,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut held = self
            .slots
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = held.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                held.remove(&self.key);
            }
        }
    }
}

/// Bytes of request bodies the process may buffer at once, shared by every
/// connection: a body that cannot get its share is refused (503) instead of
/// growing the heap. One client (an address, an IPv6 /64, or a forwarded
/// client behind a trusted proxy) may hold a quarter of it at most, so one
/// address alone cannot spend it all and refuse everyone's writes.
#[derive(Debug, Clone)]
pub struct BodyBudget {
    total: Arc<Semaphore>,
    per_client: usize,
    held: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl BodyBudget {
    /// A budget of `bytes`, of which one client may hold a quarter, and
    /// never less than `max_body_bytes` (one whole body).
    #[must_use]
    pub fn new(bytes: usize, max_body_bytes: usize) -> Self {
        let bytes = bytes.min(Semaphore::MAX_PERMITS);
        Self {
            total: Arc::new(Semaphore::new(bytes)),
            per_client: (bytes / 4).max(max_body_bytes).min(bytes),
            held: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// `bytes` more of the budget for `client`, added to `share`; `false`
    /// (and `share` unchanged) when the client's quarter or the whole
    /// budget cannot spare them now. A client not known (`None`: a router
    /// mounted where no address is given) has no quarter of its own, only
    /// the whole budget.
    pub fn reserve(
        &self,
        client: Option<IpAddr>,
        bytes: usize,
        share: &mut Option<BodyShare>,
    ) -> bool {
        let Ok(n) = u32::try_from(bytes) else {
            return false;
        };
        let key = match share {
            Some(share) => share.key,
            None => client.map(client_key),
        };
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(key) = key {
            let mine = held.get(&key).copied().unwrap_or(0);
            if mine.saturating_add(bytes) > self.per_client {
                return false;
            }
        }
        let Ok(permit) = Arc::clone(&self.total).try_acquire_many_owned(n) else {
            return false;
        };
        if let Some(key) = key {
            *held.entry(key).or_insert(0) += bytes;
        }
        match share {
            Some(share) => {
                share.permit.merge(permit);
                share.bytes += bytes;
            }
            None => {
                *share = Some(BodyShare {
                    permit,
                    bytes,
                    key,
                    held: Arc::clone(&self.held),
                });
            }
        }
        true
    }

    /// Bytes not reserved now.
    pub(crate) fn available(&self) -> usize {
        self.total.available_permits()
    }

    /// The most one client may hold.
    pub(crate) fn per_client(&self) -> usize {
        self.per_client
    }

    /// Bytes `client` holds now.
    pub(crate) fn client_held(&self, client: IpAddr) -> usize {
        let held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.get(&client_key(client)).copied().unwrap_or(0)
    }
}

/// One request's share of the [`BodyBudget`]; given back on drop.
#[derive(Debug)]
pub struct BodyShare {
    permit: OwnedSemaphorePermit,
    bytes: usize,
    /// The client whose quarter it counts against, when known.
    key: Option<IpAddr>,
    held: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl BodyShare {
    /// Bytes this share holds.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Gives back what it holds past `bytes` (nothing when it holds no
    /// more).
    pub(crate) fn shrink_to(&mut self, bytes: usize) {
        let Some(back) = self.bytes.checked_sub(bytes).filter(|n| *n > 0) else {
            return;
        };
        // (the permits go back to the whole budget as `_returned` drops; a
        // share holds a permit a byte, so the split cannot fail, and if it
        // did the count is left as the permits are)
        let Some(_returned) = self.permit.split(back) else {
            return;
        };
        self.bytes = bytes;
        if let Some(key) = self.key {
            let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(count) = held.get_mut(&key) {
                *count = count.saturating_sub(back);
                if *count == 0 {
                    held.remove(&key);
                }
            }
        }
    }
}

impl Drop for BodyShare {
    fn drop(&mut self) {
        let Some(key) = self.key else {
            return;
        };
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = held.get_mut(&key) {
            *count = count.saturating_sub(self.bytes);
            if *count == 0 {
                held.remove(&key);
            }
        }
        // `permit` gives the bytes back to the whole budget as it drops.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_holds_at_most_its_cap_and_gets_slots_back() {
        let slots = ClientSlots::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = slots.try_take(a).unwrap();
        let _second = slots.try_take(a).unwrap();
        assert!(slots.try_take(a).is_none(), "a third slot for one address");
        assert!(
            slots.try_take(b).is_some(),
            "another address is not affected"
        );
        drop(first);
        assert!(
            slots.try_take(a).is_some(),
            "a slot given back is free again"
        );
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let slots = ClientSlots::new(1);
        let _one = slots.try_take("2001:db8:1:2::1".parse().unwrap()).unwrap();
        assert!(
            slots
                .try_take("2001:db8:1:2:ffff::9".parse().unwrap())
                .is_none(),
            "another address of the same /64"
        );
        assert!(slots.try_take("2001:db8:1:3::1".parse().unwrap()).is_some());
        let _v4 = slots.try_take("198.51.100.7".parse().unwrap()).unwrap();
        assert!(
            slots
                .try_take("::ffff:198.51.100.7".parse().unwrap())
                .is_none()
        );
    }

    #[test]
    fn forgotten_addresses_leave_no_entry() {
        let slots = ClientSlots::new(4);
        for i in 0..100u8 {
            let slot = slots.try_take(IpAddr::from([10, 0, 0, i])).unwrap();
            drop(slot);
        }
        assert!(slots.held.lock().unwrap().is_empty());
    }

    #[test]
    fn the_budget_is_shared_and_given_back() {
        let budget = BodyBudget::new(100, 10);
        let clients: Vec<IpAddr> = (1..=5).map(|i| IpAddr::from([192, 0, 2, i])).collect();
        let mut shares: Vec<Option<BodyShare>> = (0..5).map(|_| None).collect();
        assert!(budget.reserve(Some(clients[0]), 20, &mut shares[0]));
        assert!(budget.reserve(Some(clients[0]), 5, &mut shares[0]));
        assert_eq!(shares[0].as_ref().unwrap().bytes(), 25);
        assert!(
            !budget.reserve(Some(clients[0]), 1, &mut shares[0]),
            "one client holds a quarter at most"
        );
        let mut second = None;
        assert!(
            !budget.reserve(Some(clients[0]), 1, &mut second),
            "across its requests too"
        );
        assert!(second.is_none());
        for i in 1..4 {
            assert!(budget.reserve(Some(clients[i]), 25, &mut shares[i]));
        }
        assert_eq!(budget.available(), 0);
        assert!(
            !budget.reserve(Some(clients[4]), 1, &mut shares[4]),
            "all spent"
        );
        assert!(shares[4].is_none());
        shares[0] = None;
        assert_eq!(budget.available(), 25);
        assert!(budget.reserve(Some(clients[4]), 25, &mut shares[4]));
        assert!(budget.reserve(Some(clients[0]), 0, &mut second));
        drop(shares);
        drop(second);
        assert_eq!(budget.available(), 100);
        assert!(budget.held.lock().unwrap().is_empty());
    }

    /// A client whose address nobody knows has no quarter to fill: unknown
    /// clients together are bounded by the whole budget only, and never
    /// stop a known client from having its quarter.
    #[test]
    fn unknown_clients_are_bounded_by_the_whole_budget_only() {
        let budget = BodyBudget::new(100, 10);
        let mut unknown = None;
        assert!(budget.reserve(None, 60, &mut unknown), "past a quarter");
        let mut known = None;
        let client = IpAddr::from([192, 0, 2, 1]);
        assert!(budget.reserve(Some(client), 25, &mut known));
        assert!(
            !budget.reserve(None, 20, &mut None),
            "past the whole budget"
        );
        drop(unknown);
        assert_eq!(budget.available(), 75);
        assert!(budget.reserve(None, 75, &mut None));
    }

    #[test]
    fn a_small_budget_still_admits_one_whole_body() {
        let budget = BodyBudget::new(100, 60);
        let mut share = None;
        assert!(budget.reserve(Some(IpAddr::from([192, 0, 2, 1])), 60, &mut share));
    }
}
