//! The response budget, and the answers it has paid for that are still
//! being sent.
//!
//! A built answer waits in memory, paid from the budget, until its client
//! reads it. A client that stops reading keeps its share for as long as its
//! connection lasts, and a few of them kept every share: session 30's
//! second attack (F1) held the whole 32 MiB with 2 MB pages that 16
//! connections from 4 addresses never read, and another user's pages got
//! 503. So a read the budget cannot pay makes the answers that are stalled
//! give way: an answer that has been sending for [`GRACE`] and has handed
//! nothing to its connection for [`GRACE`], or less than [`MIN_DRAIN`] a
//! second since it began, has its connection dropped, and the read waits a
//! moment for what that frees. Nothing is taken from a client that reads
//! unless the budget is short, and then only from the slowest.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
// (tokio's, which a test can pause and advance)
use tokio::time::Instant;

use crate::admission::{BodyBudget, BodyShare};

/// How long an answer may go without handing a piece to its connection
/// before a read that the budget cannot pay may take its share; also the
/// age an answer must reach before its pace is judged.
pub(crate) const GRACE: Duration = Duration::from_secs(2);

/// The pace, in bytes a second since it began, below which an answer
/// gives way to a read the budget cannot pay (a client that reads a little
/// now and then, to stay above [`GRACE`], holds its share no longer).
pub(crate) const MIN_DRAIN: usize = 32 * 1024;

/// Answers at most this long are not tracked: they are handed to their
/// connection in one piece at once, and what they hold is small.
pub(crate) const TRACKED_ABOVE: usize = 16 * 1024;

/// How long a read refused by the budget waits, after making stalled
/// answers give way, for the shares they free.
const WAIT_FOR_FREED: Duration = Duration::from_millis(500);

/// How often it looks meanwhile.
const WAIT_STEP: Duration = Duration::from_millis(10);

/// Bytes of built answers not yet handed to their connections, across the
/// process, and the larger of those answers as they are sent.
#[derive(Debug)]
pub(crate) struct ResponseBudget {
    bytes: BodyBudget,
    sending: Arc<Mutex<HashMap<u64, Arc<Sending>>>>,
    next: AtomicU64,
}

/// One answer being sent, as the budget sees it.
#[derive(Debug)]
struct Sending {
    began: Instant,
    /// Bytes its share holds.
    bytes: usize,
    /// Bytes handed to the connection so far.
    handed: AtomicUsize,
    /// When it last handed a piece, in milliseconds after `began`.
    last_ms: AtomicU64,
    /// The client whose share it is.
    client: IpAddr,
    /// Drops the answer's connection (and with it the answer).
    drop_connection: Arc<Notify>,
}

impl Sending {
    /// Whether it may be made to give way at `now`.
    fn stalled(&self, now: Instant) -> bool {
        let age = now.saturating_duration_since(self.began);
        if age < GRACE {
            return false;
        }
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        let quiet = age.saturating_sub(last);
        let handed = self.handed.load(Ordering::Relaxed) as f64;
        quiet >= GRACE || handed < MIN_DRAIN as f64 * age.as_secs_f64()
    }
}

impl ResponseBudget {
    /// A budget of `bytes`, shared as [`BodyBudget::new`] shares it.
    pub(crate) fn new(bytes: usize, max_body_bytes: usize) -> Self {
        Self {
            bytes: BodyBudget::new(bytes, max_body_bytes),
            sending: Arc::new(Mutex::new(HashMap::new())),
            next: AtomicU64::new(0),
        }
    }

    /// Pays for an answer of `bytes` to `client`, whose connection
    /// `drop_connection` drops. `None` when the budget cannot pay, even
    /// after the stalled answers that could free enough have given way.
    /// With `make_room` false it takes nothing from others and waits for
    /// nothing.
    pub(crate) async fn pay(
        &self,
        client: IpAddr,
        bytes: usize,
        drop_connection: &Arc<Notify>,
        make_room: bool,
    ) -> Option<Paid> {
        let mut share = None;
        if !self.bytes.reserve(Some(client), bytes, &mut share) {
            if !make_room || !self.make_stalled_give_way(client, bytes) {
                return None;
            }
            let waiting = Instant::now();
            loop {
                tokio::time::sleep(WAIT_STEP).await;
                if self.bytes.reserve(Some(client), bytes, &mut share) {
                    break;
                }
                if waiting.elapsed() >= WAIT_FOR_FREED {
                    return None;
                }
            }
        }
        let tracked = (bytes > TRACKED_ABOVE).then(|| self.track(client, bytes, drop_connection));
        Some(Paid {
            _share: share,
            tracked,
        })
    }

    /// An answer the budget does not pay for (a write's, always sent), or
    /// one of nothing.
    pub(crate) fn unpaid() -> Paid {
        Paid {
            _share: None,
            tracked: None,
        }
    }

    fn track(&self, client: IpAddr, bytes: usize, drop_connection: &Arc<Notify>) -> Tracked {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let sending = Arc::new(Sending {
            began: Instant::now(),
            bytes,
            handed: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
            client: todo_core::client_key(client),
            drop_connection: Arc::clone(drop_connection),
        });
        self.sending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, Arc::clone(&sending));
        Tracked {
            id,
            sending,
            registry: Arc::clone(&self.sending),
        }
    }

    /// Drops the connections of the stalled answers, stalest first, that
    /// free `bytes` for `client` (from `client`'s own answers when its own
    /// share is what is short); `false`, dropping none, when they could not.
    fn make_stalled_give_way(&self, client: IpAddr, bytes: usize) -> bool {
        let own_only = self.bytes.client_share_short(client, bytes);
        let key = todo_core::client_key(client);
        let now = Instant::now();
        let mut stalled: Vec<Arc<Sending>> = self
            .sending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .filter(|s| (!own_only || s.client == key) && s.stalled(now))
            .cloned()
            .collect();
        let short = if own_only {
            (self.bytes.client_held(client) + bytes).saturating_sub(self.bytes.per_client())
        } else {
            bytes.saturating_sub(self.bytes.available())
        };
        let freeable: usize = stalled.iter().map(|s| s.bytes).sum();
        if freeable < short {
            return false;
        }
        stalled.sort_by_key(|s| s.began + Duration::from_millis(s.last_ms.load(Ordering::Relaxed)));
        let mut freed = 0;
        for answer in stalled {
            if freed >= short {
                break;
            }
            freed += answer.bytes;
            tracing::info!(
                target: "todo::http",
                client = %answer.client,
                bytes = answer.bytes,
                handed = answer.handed.load(Ordering::Relaxed),
                "a stalled answer gives way to a read the response budget could not pay: its connection is dropped"
            );
            answer.drop_connection.notify_one();
        }
        true
    }

    /// Answers being sent and tracked now.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.sending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// An answer's share of the budget, held until the answer is sent or
/// dropped.
#[derive(Debug)]
pub(crate) struct Paid {
    _share: Option<BodyShare>,
    tracked: Option<Tracked>,
}

impl Paid {
    /// Whether it is tracked as it is sent (a larger answer).
    pub(crate) fn is_tracked(&self) -> bool {
        self.tracked.is_some()
    }

    /// `n` more bytes were handed to the connection.
    pub(crate) fn handed(&self, n: usize) {
        if let Some(tracked) = &self.tracked {
            let sending = &tracked.sending;
            sending.handed.fetch_add(n, Ordering::Relaxed);
            let ms = u64::try_from(sending.began.elapsed().as_millis()).unwrap_or(u64::MAX);
            sending.last_ms.fetch_max(ms, Ordering::Relaxed);
        }
    }
}

/// An answer in the registry; taken out on drop.
#[derive(Debug)]
struct Tracked {
    id: u64,
    sending: Arc<Sending>,
    registry: Arc<Mutex<HashMap<u64, Arc<Sending>>>>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.registry
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const ONE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const TWO: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));
    const MIB: usize = 1024 * 1024;

    /// Whether `connection` was told to drop (without waiting).
    async fn told_to_drop(connection: &Notify) -> bool {
        tokio::time::timeout(Duration::from_millis(1), connection.notified())
            .await
            .is_ok()
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_the_budget_cannot_pay_takes_the_share_of_a_stalled_answer() {
        // 8 MiB, all of which one client may hold.
        let budget = Arc::new(ResponseBudget::new(8 * MIB, 8 * MIB));
        let connections: Vec<Arc<Notify>> = (0..4).map(|_| Arc::new(Notify::new())).collect();
        let mut held = Vec::new();
        for connection in &connections {
            held.push(Some(
                budget.pay(ONE, 2 * MIB, connection, true).await.unwrap(),
            ));
        }
        assert_eq!(budget.tracked(), 4);
        // Young answers keep their shares: the read is refused at once.
        let other = Arc::new(Notify::new());
        assert!(budget.pay(TWO, 2 * MIB, &other, true).await.is_none());
        for connection in &connections {
            assert!(!told_to_drop(connection).await);
        }
        // Past the grace: the two answers that handed pieces a moment ago
        // at a good pace stay; of the two that have been quiet for the
        // grace, the stalest gives way, and only it (the read needs one
        // share).
        tokio::time::advance(Duration::from_millis(500)).await;
        held[0].as_ref().unwrap().handed(MIB / 4);
        tokio::time::advance(GRACE).await;
        held[1].as_ref().unwrap().handed(MIB);
        held[2].as_ref().unwrap().handed(MIB / 4);
        let waiting = tokio::spawn({
            let budget = Arc::clone(&budget);
            async move { budget.pay(TWO, 2 * MIB, &other, true).await }
        });
        tokio::task::yield_now().await;
        let told: Vec<bool> = {
            let mut told = Vec::new();
            for connection in &connections {
                told.push(told_to_drop(connection).await);
            }
            told
        };
        assert_eq!(told, [false, false, false, true]);
        // Dropping the connection frees its answer; the read is then paid.
        held[3] = None;
        let paid = waiting.await.unwrap();
        assert!(
            paid.is_some(),
            "the read is paid once the stalled answer is gone"
        );
        assert_eq!(budget.tracked(), 4, "the three left and the read's");
    }

    #[tokio::test(start_paused = true)]
    async fn answers_that_are_read_keep_their_shares() {
        let budget = ResponseBudget::new(8 * MIB, 8 * MIB);
        let connection = Arc::new(Notify::new());
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(budget.pay(ONE, 2 * MIB, &connection, true).await.unwrap());
        }
        for _ in 0..3 {
            tokio::time::advance(Duration::from_secs(1)).await;
            for paid in &held {
                paid.handed(MIN_DRAIN + 1024);
            }
        }
        let other = Arc::new(Notify::new());
        assert!(budget.pay(TWO, 2 * MIB, &other, true).await.is_none());
        assert!(
            !told_to_drop(&connection).await,
            "a connection that reads is left alone"
        );
        // One that reads too slowly gives way.
        tokio::time::advance(Duration::from_secs(1)).await;
        for paid in &held[1..] {
            paid.handed(MIN_DRAIN + 1024);
        }
        held[0].handed(1024);
        let budget = Arc::new(budget);
        let waiting = tokio::spawn({
            let budget = Arc::clone(&budget);
            async move { budget.pay(TWO, 2 * MIB, &other, true).await.is_some() }
        });
        tokio::time::timeout(Duration::from_secs(1), connection.notified())
            .await
            .unwrap();
        drop(held.remove(0));
        assert!(waiting.await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_short_of_its_own_share_takes_only_its_own_stalled_answers() {
        // 32 MiB: a quarter, 8 MiB, a client.
        let budget = ResponseBudget::new(32 * MIB, 2 * MIB);
        let (one, two) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let mut others = Vec::new();
        for _ in 0..4 {
            others.push(budget.pay(TWO, 2 * MIB, &two, true).await.unwrap());
        }
        let mut mine = Vec::new();
        for _ in 0..4 {
            mine.push(budget.pay(ONE, 2 * MIB, &one, true).await.unwrap());
        }
        tokio::time::advance(GRACE * 2).await;
        // Every answer is stalled; ONE's quarter is what is short, so
        // TWO's answers are not touched, and ONE's own give way.
        let budget = Arc::new(budget);
        let waiting = tokio::spawn({
            let budget = Arc::clone(&budget);
            let one = Arc::clone(&one);
            async move { budget.pay(ONE, 2 * MIB, &one, true).await.is_some() }
        });
        tokio::time::timeout(Duration::from_secs(1), one.notified())
            .await
            .unwrap();
        assert!(
            !told_to_drop(&two).await,
            "another client's answers are not touched"
        );
        drop(mine.remove(0));
        assert!(waiting.await.unwrap());
        drop(others);
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_gives_way_when_the_stalled_could_not_free_enough() {
        let budget = ResponseBudget::new(8 * MIB, 8 * MIB);
        let stalled = Arc::new(Notify::new());
        let reading = Arc::new(Notify::new());
        let _small = budget.pay(ONE, 20 * 1024, &stalled, true).await.unwrap();
        let large = budget.pay(TWO, 7 * MIB, &reading, true).await.unwrap();
        tokio::time::advance(GRACE * 2).await;
        large.handed(MIB);
        let three = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 3));
        assert!(
            budget
                .pay(three, 2 * MIB, &Arc::new(Notify::new()), true)
                .await
                .is_none()
        );
        assert!(
            !told_to_drop(&stalled).await,
            "an answer that could not free enough is left alone"
        );
        assert!(!told_to_drop(&reading).await);
    }
}
