//! What one client may hold at once: connection slots per address, and
//! bytes of request bodies buffered across the whole process.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, PoisonError};

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

/// The address a client is counted under: IPv4 as is (also when mapped
/// into IPv6), IPv6 by its /64.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
    }
}

/// Bytes of request bodies the process may buffer at once, shared by every
/// connection: a body that cannot get its share is refused (503) instead of
/// growing the heap.
#[derive(Debug, Clone)]
pub struct BodyBudget(Arc<Semaphore>);

impl BodyBudget {
    #[must_use]
    pub fn new(bytes: usize) -> Self {
        Self(Arc::new(Semaphore::new(bytes.min(Semaphore::MAX_PERMITS))))
    }

    /// `bytes` more of the budget, added to `held`; `false` (and `held`
    /// unchanged) when the budget cannot spare them now.
    pub fn reserve(&self, bytes: usize, held: &mut Option<OwnedSemaphorePermit>) -> bool {
        let Ok(n) = u32::try_from(bytes) else {
            return false;
        };
        match Arc::clone(&self.0).try_acquire_many_owned(n) {
            Ok(permit) => {
                match held {
                    Some(held) => held.merge(permit),
                    None => *held = Some(permit),
                }
                true
            }
            Err(_) => false,
        }
    }

    /// Bytes not reserved now.
    #[cfg(test)]
    pub(crate) fn available(&self) -> usize {
        self.0.available_permits()
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
        let budget = BodyBudget::new(100);
        let mut a = None;
        let mut b = None;
        assert!(budget.reserve(60, &mut a));
        assert!(budget.reserve(30, &mut a));
        assert!(!budget.reserve(20, &mut b), "only 10 bytes left");
        assert!(b.is_none());
        assert_eq!(budget.available(), 10);
        drop(a);
        assert!(budget.reserve(100, &mut b));
    }
}
