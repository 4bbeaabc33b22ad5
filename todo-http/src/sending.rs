//! The response budget, and the answers it has paid for that are still
//! being sent.
//!
//! A built answer waits in memory, paid from the budget, until its client
//! reads it. A client that stops reading keeps its share for as long as its
//! connection lasts, and a few of them kept every share: session 30's
//! second attack (F1) held the whole 32 MiB with 2 MB pages that 16
//! connections from 4 addresses never read, and another user's pages got
//! 503. So a read the budget cannot pay makes the answers that are stalled
//! give way: an answer that has been sending for [`GRACE`] and has
//! handed nothing to its connection for [`GRACE`], or less than
//! [`MIN_DRAIN`] a second since it began, is dropped with its carrier, the
//! stalest first (by the last piece handed), and the read waits a moment
//! for what that frees. Over HTTP/2 only the answer's stream is reset, so
//! the connection's other requests (a write's answer among them) go on;
//! an HTTP/1.1 connection carries the one answer, and is dropped. Nothing
//! is taken while the budget can pay, nor the reader's own. A write's
//! answer gives way as a read's does (a client that stopped reading it
//! while the budget is short learns the outcome by reading the task).
//!
//! A write's answer is sent whatever it costs (the write is made), so a
//! write is given room for its answer before it is made ([`WriteRoom`]):
//! [`WRITE_ANSWER`] from an overdraft of a quarter of the budget (a client
//! a quarter of that), which reads never use, else from the budget, else
//! from what stalled answers free by giving way; without room it is
//! refused (503) and nothing is written. The answer is paid from its room
//! and the rest given back. The room is taken once the write's body has
//! arrived, so a client holding bodies back holds none (session 31: its
//! attack, F2, 5,857 unread answers of 41 KB to 20-byte patches, sent
//! unpaid, took the server past 256 MiB; review 2, M2, a check at
//! admission let a burst of writes whose bodies came at once all be made;
//! review 3, counting writes at admission let unsent login bodies refuse
//! every write).
//! This raises what holding the budget costs (reading every answer at
//! [`MIN_DRAIN`], or asking again within [`GRACE`]); it does not make it
//! impossible (SECURITY.md, session 31).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
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

/// What a write's answer is given room for before the write is made, and
/// what a write refused for want of it asks stalled answers to free: more
/// than a task's or a project's answer can take (10,000 characters of
/// description, four bytes each at most, and the rest). An answer larger
/// still (an import's) pays the rest as [`ResponseBudget::pay`] does.
const WRITE_ANSWER: usize = 64 * 1024;

/// Reads and writes that may wait so at once, across the process: a read
/// holds its built answer (a page, about 2 MiB at most) unpaid while it
/// waits, a write its body, so more are refused at once.
const MAX_WAITING: usize = 4;

/// What the response budgets did, across the process: the metrics read it
/// (`todo_http_answers_given_way_total` and the two refusals).
#[derive(Debug)]
pub(crate) struct BudgetCounts {
    /// Stalled answers made to give way (their stream reset, or their
    /// HTTP/1.1 connection dropped).
    pub(crate) given_way: AtomicU64,
    /// Reads answered 503: the budget could not pay their answers.
    pub(crate) reads_refused: AtomicU64,
    /// Writes refused before they were made: no room for their answers.
    pub(crate) writes_refused: AtomicU64,
    /// Answers ended because they handed nothing to their connection for
    /// its deadline (their clients stopped reading): HTTP/2 streams reset,
    /// HTTP/1.1 connections dropped (`crate::server`).
    pub(crate) answers_stalled: AtomicU64,
}

/// The process's [`BudgetCounts`].
pub(crate) static COUNTS: BudgetCounts = BudgetCounts {
    given_way: AtomicU64::new(0),
    reads_refused: AtomicU64::new(0),
    writes_refused: AtomicU64::new(0),
    answers_stalled: AtomicU64::new(0),
};

/// Whether stalled answers are to give way now, or only to be weighed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GiveWay {
    Now,
    /// Only whether they could: none is told.
    IfCould,
}

/// What the budget may drop to take back an answer's share: an HTTP/2
/// stream (reset, its connection's other streams going on) or an HTTP/1.1
/// connection.
#[derive(Debug, Default)]
pub(crate) struct DropHandle {
    drop_now: Notify,
}

impl DropHandle {
    /// Drops it (whoever runs it is told, and acts at once).
    pub(crate) fn drop_it(&self) {
        self.drop_now.notify_one();
    }

    /// Resolves once it is to be dropped.
    pub(crate) async fn dropped(&self) {
        self.drop_now.notified().await;
    }
}

/// Room taken for a write's answer before the write is made (see
/// [`ResponseBudget::reserve_write`]); it pays the answer once built.
#[derive(Debug)]
pub(crate) struct Reserved {
    share: BodyShare,
    /// Taken from the overdraft (rooms are, while it has room), not the
    /// budget.
    from_overdraft: bool,
}

/// Where a write's room is taken and kept until its answer is paid: the
/// server puts one in a write's extensions; the body's reader takes the
/// room once the body has arrived (so a body held back holds nothing),
/// and the frontend takes it, once the client is known and before the
/// request is routed, for a write without a body.
#[derive(Debug, Clone)]
pub(crate) struct WriteRoom {
    budget: Arc<ResponseBudget>,
    carrier: Arc<DropHandle>,
    reserved: Arc<Mutex<Option<Reserved>>>,
}

impl WriteRoom {
    pub(crate) fn new(budget: Arc<ResponseBudget>, carrier: Arc<DropHandle>) -> Self {
        Self {
            budget,
            carrier,
            reserved: Arc::new(Mutex::new(None)),
        }
    }

    /// Takes the room (once) for `client` (the forwarded client behind a
    /// trusted proxy, as the request body's share is counted); `false`
    /// when it cannot be had: the write is then to be refused (503)
    /// before it is made.
    pub(crate) async fn reserve(&self, client: IpAddr) -> bool {
        if self.lock().is_some() {
            return true;
        }
        let Some(reserved) = self.budget.reserve_write(client, &self.carrier).await else {
            tracing::warn!(
                target: "todo::http",
                client = %client,
                status = 503,
                "write refused: the response budget has no room for its answer"
            );
            return false;
        };
        *self.lock() = Some(reserved);
        true
    }

    /// The room taken, for the answer to be paid from.
    pub(crate) fn take(&self) -> Option<Reserved> {
        self.lock().take()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Reserved>> {
        self.reserved.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Bytes of built answers not yet handed to their connections, across the
/// process, and the larger of those answers as they are sent.
#[derive(Debug)]
pub(crate) struct ResponseBudget {
    bytes: BodyBudget,
    sending: Arc<Mutex<HashMap<u64, Arc<Sending>>>>,
    next: AtomicU64,
    waiting: Semaphore,
    /// What writes' answers the budget could not pay hold.
    overdraft: BodyBudget,
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
    /// Paid from the overdraft (wholly or in part: a write's room, or a
    /// write's answer the budget could not pay): it gives way to a write
    /// that finds no room, not to a read.
    from_overdraft: bool,
    /// It has been made to give way (its carrier told to drop): no
    /// other read counts on it.
    given_way: AtomicBool,
    /// Its stream (HTTP/2) or connection (HTTP/1.1).
    carrier: Arc<DropHandle>,
}

impl Sending {
    /// Whether it may be made to give way at `now` to a read on
    /// `requester`.
    fn stalled(&self, now: Instant, requester: &Arc<DropHandle>) -> bool {
        if self.given_way.load(Ordering::Relaxed) || Arc::ptr_eq(&self.carrier, requester) {
            return false;
        }
        let age = now.saturating_duration_since(self.began);
        if age < GRACE {
            return false;
        }
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        let quiet = age.saturating_sub(last);
        let handed = self.handed.load(Ordering::Relaxed) as f64;
        quiet >= GRACE || handed < MIN_DRAIN as f64 * age.as_secs_f64()
    }

    /// When it last handed a piece (or began).
    fn last_handed(&self) -> Instant {
        self.began + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

impl ResponseBudget {
    /// A budget of `bytes`, shared as [`BodyBudget::new`] shares it.
    pub(crate) fn new(bytes: usize, max_body_bytes: usize) -> Self {
        Self {
            bytes: BodyBudget::new(bytes, max_body_bytes),
            sending: Arc::new(Mutex::new(HashMap::new())),
            next: AtomicU64::new(0),
            waiting: Semaphore::new(MAX_WAITING),
            // (a quarter of it a client, with no floor: a large body
            // limit must not give one client all of it)
            overdraft: BodyBudget::new(bytes / 4, 0),
        }
    }

    /// Whether a write from `client`, carried by `carrier`, is admitted
    /// before its body is read: while the overdraft or the budget has room
    /// for its answer now, or stalled answers could free it. It takes
    /// nothing and drops nothing: the room is taken once the body has
    /// arrived ([`Self::reserve_write`]), and the write refused then if it
    /// cannot be had. Refusing here spares reading a body for nothing.
    pub(crate) fn may_write(&self, client: IpAddr, carrier: &Arc<DropHandle>) -> bool {
        let bytes = self.room_bytes();
        let fits = |budget: &BodyBudget| {
            budget.available() >= bytes && budget.client_held(client) + bytes <= budget.per_client()
        };
        if fits(&self.overdraft) || fits(&self.bytes) {
            return true;
        }
        // (a check only: the answers give way once the body has arrived,
        // when the room is taken; review of session 32, m2)
        let admitted = self.make_stalled_give_way(
            &self.overdraft,
            true,
            client,
            bytes,
            carrier,
            GiveWay::IfCould,
        ) || self.make_stalled_give_way(
            &self.bytes,
            false,
            client,
            bytes,
            carrier,
            GiveWay::IfCould,
        );
        if !admitted {
            COUNTS.writes_refused.fetch_add(1, Ordering::Relaxed);
        }
        admitted
    }

    /// The room a write's answer is given: [`WRITE_ANSWER`], or a quarter
    /// of what one client may hold of the budget when that is less (a
    /// small budget still admits a few writes at once).
    fn room_bytes(&self) -> usize {
        WRITE_ANSWER.min(self.bytes.per_client() / 4)
    }

    /// Room for the answer to a write from `client`, carried by
    /// `carrier`, taken before the write is made: from the overdraft, else
    /// from the budget, else from what stalled answers free by giving way
    /// (waiting as a read does). `None`: the write is to be refused. Every
    /// write with room holds it until its answer is sent, so those answers
    /// hold at most the budget and the overdraft however many arrive at
    /// once (SECURITY.md, session 31, review 2 M2; the writes that have
    /// none are said in session 32's rows). Taken once the write's body
    /// has arrived ([`WriteRoom`]): a client holding a body back holds no
    /// room (review 3: counting writes at admission let unsent login
    /// bodies refuse every write).
    pub(crate) async fn reserve_write(
        &self,
        client: IpAddr,
        carrier: &Arc<DropHandle>,
    ) -> Option<Reserved> {
        let reserved = self.try_reserve_write_or_wait(client, carrier).await;
        if reserved.is_none() {
            COUNTS.writes_refused.fetch_add(1, Ordering::Relaxed);
        }
        reserved
    }

    async fn try_reserve_write_or_wait(
        &self,
        client: IpAddr,
        carrier: &Arc<DropHandle>,
    ) -> Option<Reserved> {
        let bytes = self.room_bytes();
        if let Some(reserved) = self.try_reserve_write(client, bytes) {
            return Some(reserved);
        }
        let _waiting = self.waiting.try_acquire().ok()?;
        let gave_way =
            self.make_stalled_give_way(&self.overdraft, true, client, bytes, carrier, GiveWay::Now)
                || self.make_stalled_give_way(
                    &self.bytes,
                    false,
                    client,
                    bytes,
                    carrier,
                    GiveWay::Now,
                );
        if !gave_way {
            return None;
        }
        let waiting = Instant::now();
        loop {
            tokio::time::sleep(WAIT_STEP).await;
            if let Some(reserved) = self.try_reserve_write(client, bytes) {
                return Some(reserved);
            }
            if waiting.elapsed() >= WAIT_FOR_FREED {
                return None;
            }
        }
    }

    /// Room of `bytes` for `client`: from the overdraft first, which reads
    /// never use, so that writes waiting their turn hold nothing of what
    /// pays reads until the overdraft is spent.
    fn try_reserve_write(&self, client: IpAddr, bytes: usize) -> Option<Reserved> {
        let mut share = None;
        let from_overdraft = if self.overdraft.reserve(Some(client), bytes, &mut share) {
            true
        } else if self.bytes.reserve(Some(client), bytes, &mut share) {
            false
        } else {
            return None;
        };
        share.map(|share| Reserved {
            share,
            from_overdraft,
        })
    }

    /// Pays for an answer of `bytes` to `client`, carried by `carrier`.
    /// `None` when the budget cannot pay, even after the stalled answers
    /// that could free enough have given way. A write's answer (`read`
    /// false) takes nothing from others and waits for nothing: it is paid
    /// from its room ([`Self::reserve_write`]) when it has one, and what
    /// that and the budget cannot pay comes from the overdraft, or, past
    /// it, from nothing (a write made is answered).
    pub(crate) async fn pay(
        &self,
        client: IpAddr,
        bytes: usize,
        carrier: &Arc<DropHandle>,
        read: bool,
        room: Option<Reserved>,
    ) -> Option<Paid> {
        if let Some(Reserved {
            mut share,
            from_overdraft,
        }) = room
        {
            let rest = bytes.saturating_sub(share.bytes());
            share.shrink_to(bytes);
            let (extra, extra_overdraft) = match rest {
                0 => (None, false),
                rest => self.pay_write(client, rest),
            };
            let from_overdraft = from_overdraft || extra_overdraft;
            return Some(self.paid(client, bytes, carrier, from_overdraft, Some(share), extra));
        }
        if !read {
            let (share, from_overdraft) = self.pay_write(client, bytes);
            return Some(self.paid(client, bytes, carrier, from_overdraft, share, None));
        }
        let mut share = None;
        if !self.bytes.reserve(Some(client), bytes, &mut share)
            && !self.wait_for_read(client, bytes, carrier, &mut share).await
        {
            COUNTS.reads_refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(self.paid(client, bytes, carrier, false, share, None))
    }

    /// Makes stalled answers give way to a read of `bytes` the budget
    /// could not pay, and waits for what they free; `false` when they
    /// could not, or did not in time (or too many reads wait already).
    async fn wait_for_read(
        &self,
        client: IpAddr,
        bytes: usize,
        carrier: &Arc<DropHandle>,
        share: &mut Option<BodyShare>,
    ) -> bool {
        let Ok(_waiting) = self.waiting.try_acquire() else {
            return false;
        };
        if !self.make_stalled_give_way(&self.bytes, false, client, bytes, carrier, GiveWay::Now) {
            return false;
        }
        let waiting = Instant::now();
        loop {
            tokio::time::sleep(WAIT_STEP).await;
            if self.bytes.reserve(Some(client), bytes, share) {
                return true;
            }
            if waiting.elapsed() >= WAIT_FOR_FREED {
                return false;
            }
        }
    }

    /// Pays `bytes` of a write's answer from the budget, else as much of
    /// it as the overdraft has left for `client` (once that is spent, its
    /// next write is refused: [`Self::may_write`]); whether the overdraft
    /// paid.
    fn pay_write(&self, client: IpAddr, bytes: usize) -> (Option<BodyShare>, bool) {
        let mut share = None;
        if self.bytes.reserve(Some(client), bytes, &mut share) {
            return (share, false);
        }
        let room = (self.overdraft.per_client())
            .saturating_sub(self.overdraft.client_held(client))
            .min(self.overdraft.available())
            .min(bytes);
        if room > 0 {
            let _ = self.overdraft.reserve(Some(client), room, &mut share);
        }
        (share, true)
    }

    /// An answer paid by `share` and `extra`, tracked as it is sent when
    /// it is large: with its whole size, what dropping it frees of memory,
    /// though its shares may hold less (a write's answer the overdraft
    /// could not wholly pay).
    fn paid(
        &self,
        client: IpAddr,
        bytes: usize,
        carrier: &Arc<DropHandle>,
        from_overdraft: bool,
        share: Option<BodyShare>,
        extra: Option<BodyShare>,
    ) -> Paid {
        let tracked =
            (bytes > TRACKED_ABOVE).then(|| self.track(client, bytes, carrier, from_overdraft));
        Paid {
            tracked,
            _share: share,
            _extra: extra,
        }
    }

    /// An answer the budget does not pay for: one of nothing, or a
    /// refusal.
    pub(crate) fn unpaid() -> Paid {
        Paid {
            tracked: None,
            _share: None,
            _extra: None,
        }
    }

    fn track(
        &self,
        client: IpAddr,
        bytes: usize,
        carrier: &Arc<DropHandle>,
        from_overdraft: bool,
    ) -> Tracked {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let sending = Arc::new(Sending {
            began: Instant::now(),
            bytes,
            handed: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
            client: todo_core::client_key(client),
            from_overdraft,
            given_way: AtomicBool::new(false),
            carrier: Arc::clone(carrier),
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

    /// Drops the carriers of the stalled answers, stalest first, that
    /// free `bytes` for `client`: first from `client`'s own answers what
    /// its own share is short of, then from any what the whole budget is
    /// short of. `false`, dropping none, when they could not; with
    /// [`GiveWay::IfCould`], drops none either way.
    /// Those paid from `budget`: the response budget (`overdraft` false),
    /// or the overdraft.
    fn make_stalled_give_way(
        &self,
        budget: &BodyBudget,
        overdraft: bool,
        client: IpAddr,
        bytes: usize,
        requester: &Arc<DropHandle>,
        give_way: GiveWay,
    ) -> bool {
        let key = todo_core::client_key(client);
        let now = Instant::now();
        let own_short = (budget.client_held(client) + bytes).saturating_sub(budget.per_client());
        let whole_short = bytes.saturating_sub(budget.available());
        // Chosen and told under the registry's lock: an answer still in it
        // still holds its share (`Paid` leaves the registry before it gives
        // its share back), and no other read can choose it again.
        let registry = self.sending.lock().unwrap_or_else(PoisonError::into_inner);
        let mut stalled: Vec<&Arc<Sending>> = registry
            .values()
            .filter(|s| s.from_overdraft == overdraft && s.stalled(now, requester))
            .collect();
        stalled.sort_by_key(|s| s.last_handed());
        let (own, others): (Vec<&Arc<Sending>>, Vec<&Arc<Sending>>) =
            stalled.into_iter().partition(|s| s.client == key);
        let mut chosen = Vec::new();
        let mut own_freed = 0;
        let mut own = own.into_iter();
        while own_freed < own_short {
            let Some(answer) = own.next() else {
                return false;
            };
            own_freed += answer.bytes;
            chosen.push(answer);
        }
        // The rest of what the whole budget is short of, from any (the
        // client's own left over included), stalest first.
        let mut rest: Vec<&Arc<Sending>> = own.chain(others).collect();
        rest.sort_by_key(|s| s.last_handed());
        let mut freed = own_freed;
        for answer in rest {
            if freed >= whole_short {
                break;
            }
            freed += answer.bytes;
            chosen.push(answer);
        }
        if freed < whole_short {
            return false;
        }
        if give_way == GiveWay::IfCould {
            return true;
        }
        for answer in chosen {
            answer.given_way.store(true, Ordering::Relaxed);
            COUNTS.given_way.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                target: "todo::http",
                client = %answer.client,
                bytes = answer.bytes,
                handed = answer.handed.load(Ordering::Relaxed),
                "a stalled answer gives way to a request the response budget could not pay: its stream (HTTP/2) or connection is dropped"
            );
            answer.carrier.drop_it();
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
    // (dropped in this order: out of the registry, then the share given
    // back, so an answer the registry holds always holds its share)
    tracked: Option<Tracked>,
    _share: Option<BodyShare>,
    /// What a write's room did not cover.
    _extra: Option<BodyShare>,
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
    const THREE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 3));
    const MIB: usize = 1024 * 1024;

    fn connection() -> Arc<DropHandle> {
        Arc::new(DropHandle::default())
    }

    /// Whether `connection` was told to drop (without waiting).
    async fn told_to_drop(connection: &DropHandle) -> bool {
        tokio::time::timeout(Duration::from_millis(1), connection.dropped())
            .await
            .is_ok()
    }

    /// Which of `connections` were told to drop.
    async fn told(connections: &[Arc<DropHandle>]) -> Vec<bool> {
        let mut told = Vec::new();
        for connection in connections {
            told.push(told_to_drop(connection).await);
        }
        told
    }

    /// `n` answers of `bytes` to `client`, each on a connection of its own.
    async fn answers(
        budget: &ResponseBudget,
        client: IpAddr,
        n: usize,
        bytes: usize,
    ) -> (Vec<Option<Paid>>, Vec<Arc<DropHandle>>) {
        let connections: Vec<Arc<DropHandle>> = (0..n).map(|_| connection()).collect();
        let mut paid = Vec::new();
        for connection in &connections {
            paid.push(Some(
                budget
                    .pay(client, bytes, connection, true, None)
                    .await
                    .unwrap(),
            ));
        }
        (paid, connections)
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_the_budget_cannot_pay_takes_the_share_of_a_stalled_answer() {
        // 8 MiB, all of which one client may hold.
        let budget = Arc::new(ResponseBudget::new(8 * MIB, 8 * MIB));
        let (mut held, connections) = answers(&budget, ONE, 4, 2 * MIB).await;
        assert_eq!(budget.tracked(), 4);
        // (counted across the process: other tests may run in it)
        let given_way = COUNTS.given_way.load(Ordering::Relaxed);
        let refused = COUNTS.reads_refused.load(Ordering::Relaxed);
        // Young answers keep their shares: the read is refused at once.
        let other = connection();
        assert!(budget.pay(TWO, 2 * MIB, &other, true, None).await.is_none());
        assert!(COUNTS.reads_refused.load(Ordering::Relaxed) > refused);
        assert_eq!(told(&connections).await, [false; 4]);
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
            async move { budget.pay(TWO, 2 * MIB, &other, true, None).await }
        });
        tokio::task::yield_now().await;
        assert_eq!(told(&connections).await, [false, false, false, true]);
        assert!(COUNTS.given_way.load(Ordering::Relaxed) > given_way);
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
    async fn an_answer_given_way_is_counted_on_by_one_read_only() {
        let budget = Arc::new(ResponseBudget::new(8 * MIB, 8 * MIB));
        let (held, connections) = answers(&budget, ONE, 4, 2 * MIB).await;
        // Only the first is stalled: the others keep handing pieces.
        tokio::time::advance(GRACE * 2).await;
        for paid in &held[1..] {
            paid.as_ref().unwrap().handed(MIB);
        }
        let first = tokio::spawn({
            let budget = Arc::clone(&budget);
            async move {
                budget
                    .pay(TWO, 2 * MIB, &connection(), true, None)
                    .await
                    .is_some()
            }
        });
        tokio::task::yield_now().await;
        assert_eq!(told(&connections).await, [true, false, false, false]);
        // A second read finds nothing more to take, and is refused at once.
        let asked = Instant::now();
        assert!(
            budget
                .pay(THREE, 2 * MIB, &connection(), true, None)
                .await
                .is_none()
        );
        assert_eq!(
            asked.elapsed(),
            Duration::from_millis(0),
            "refused without waiting"
        );
        // (the first waits for a share that is never freed here)
        assert!(!first.await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn answers_that_are_read_keep_their_shares() {
        let budget = Arc::new(ResponseBudget::new(8 * MIB, 8 * MIB));
        let (mut held, connections) = answers(&budget, ONE, 4, 2 * MIB).await;
        for _ in 0..3 {
            tokio::time::advance(Duration::from_secs(1)).await;
            for paid in held.iter().flatten() {
                paid.handed(MIN_DRAIN + 1024);
            }
        }
        assert!(
            budget
                .pay(TWO, 2 * MIB, &connection(), true, None)
                .await
                .is_none()
        );
        assert_eq!(
            told(&connections).await,
            [false; 4],
            "connections that read are left alone"
        );
        // One that reads too slowly gives way.
        tokio::time::advance(Duration::from_secs(1)).await;
        for paid in held[1..].iter().flatten() {
            paid.handed(MIN_DRAIN + 1024);
        }
        held[0].as_ref().unwrap().handed(1024);
        let waiting = tokio::spawn({
            let budget = Arc::clone(&budget);
            async move {
                budget
                    .pay(TWO, 2 * MIB, &connection(), true, None)
                    .await
                    .is_some()
            }
        });
        tokio::task::yield_now().await;
        assert_eq!(told(&connections).await, [true, false, false, false]);
        held[0] = None;
        assert!(waiting.await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_short_of_its_own_share_takes_its_own_stalled_answers_first() {
        // 32 MiB: a quarter, 8 MiB, a client.
        let budget = Arc::new(ResponseBudget::new(32 * MIB, 2 * MIB));
        let (_others, others) = answers(&budget, TWO, 4, 2 * MIB).await;
        tokio::time::advance(Duration::from_millis(10)).await;
        let (mut mine, own) = answers(&budget, ONE, 4, 2 * MIB).await;
        tokio::time::advance(GRACE * 2).await;
        // Every answer is stalled, TWO's the stalest; ONE's quarter is
        // what is short (the whole budget has 16 MiB to spare), so one of
        // ONE's own gives way and TWO's are not touched.
        let waiting = tokio::spawn({
            let budget = Arc::clone(&budget);
            async move {
                budget
                    .pay(ONE, 2 * MIB, &connection(), true, None)
                    .await
                    .is_some()
            }
        });
        tokio::task::yield_now().await;
        assert_eq!(
            told(&others).await,
            [false; 4],
            "another client's answers are not touched"
        );
        let own_told = told(&own).await;
        assert_eq!(own_told.iter().filter(|t| **t).count(), 1, "{own_told:?}");
        let given = own_told.iter().position(|t| *t).unwrap();
        mine[given] = None;
        assert!(waiting.await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn short_of_both_its_share_and_the_whole_it_frees_both() {
        // 8 MiB, 4 MiB a client (the largest body).
        let budget = Arc::new(ResponseBudget::new(8 * MIB, 4 * MIB));
        let (mut of_two, two) = answers(&budget, TWO, 2, 5 * MIB / 4).await;
        let (mut of_three, three) = answers(&budget, THREE, 2, 5 * MIB / 4).await;
        tokio::time::advance(Duration::from_millis(10)).await;
        let (mut mine, own) = answers(&budget, ONE, 3, MIB).await;
        tokio::time::advance(GRACE * 2).await;
        // ONE holds 3 of its 4 MiB and asks 2: its own share is short by
        // 1 MiB, the whole budget (nothing free) by 2. One of its own
        // first, then the stalest of the rest (the others', older).
        let waiting = tokio::spawn({
            let budget = Arc::clone(&budget);
            async move {
                budget
                    .pay(ONE, 2 * MIB, &connection(), true, None)
                    .await
                    .is_some()
            }
        });
        tokio::task::yield_now().await;
        let own_told = told(&own).await;
        let others_told = [told(&two).await, told(&three).await].concat();
        let count = |told: &[bool]| told.iter().filter(|t| **t).count();
        assert_eq!(count(&own_told), 1, "{own_told:?}");
        assert_eq!(count(&others_told), 1, "{others_told:?}");
        let held = mine.iter_mut().zip(&own_told).chain(
            of_two
                .iter_mut()
                .chain(of_three.iter_mut())
                .zip(&others_told),
        );
        for (paid, told) in held {
            if *told {
                *paid = None;
            }
        }
        assert!(waiting.await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn a_writes_answer_gives_way_as_a_reads_does_but_never_the_readers_own() {
        let budget = Arc::new(ResponseBudget::new(8 * MIB, 8 * MIB));
        // The reader's own carrier, the stalest.
        let own = connection();
        let _own = budget.pay(TWO, 2 * MIB, &own, true, None).await.unwrap();
        tokio::time::advance(Duration::from_millis(10)).await;
        // A write's answer, stalled, the next stalest.
        let written = connection();
        let write = budget
            .pay(ONE, 2 * MIB, &written, false, None)
            .await
            .unwrap();
        tokio::time::advance(Duration::from_millis(10)).await;
        let (_others, others) = answers(&budget, THREE, 2, 2 * MIB).await;
        tokio::time::advance(GRACE * 2).await;
        // The read needs 2 MiB: the write's answer gives way, not the
        // reader's own (older still) nor the two younger.
        let waiting = tokio::spawn({
            let budget = Arc::clone(&budget);
            let own = Arc::clone(&own);
            async move { budget.pay(TWO, 2 * MIB, &own, true, None).await.is_some() }
        });
        tokio::task::yield_now().await;
        assert_eq!(told(&[own, written]).await, [false, true]);
        assert_eq!(told(&others).await, [false; 2]);
        drop(write);
        assert!(waiting.await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_the_budget_cannot_pay_is_paid_from_the_overdraft_and_then_refused() {
        // 8 MiB, a quarter a client; the overdraft 2 MiB, 512 KiB a client.
        let budget = Arc::new(ResponseBudget::new(8 * MIB, 64 * 1024));
        let carrier = connection();
        let (_reads, _) = answers(&budget, TWO, 1, 2 * MIB).await;
        let mut writes = Vec::new();
        // ONE's quarter of the budget pays its first writes' answers.
        for _ in 0..2 {
            assert!(budget.may_write(ONE, &carrier));
            writes.push(budget.pay(ONE, MIB, &carrier, false, None).await.unwrap());
        }
        // Then its quarter of the overdraft (512 KiB), however the answers
        // fall: the second of 300 KiB finds 212 left, and is sent all the
        // same; its client's next write is refused before it is made.
        let overdrawn = connection();
        for _ in 0..2 {
            assert!(budget.may_write(ONE, &carrier));
            writes.push(
                budget
                    .pay(ONE, 300 * 1024, &overdrawn, false, None)
                    .await
                    .unwrap(),
            );
        }
        assert!(!budget.may_write(ONE, &carrier), "its overdraft is spent");
        assert!(budget.may_write(THREE, &carrier), "another client's is not");
        // An answer to a write made meanwhile is still sent, unpaid.
        assert!(budget.pay(ONE, 1024, &carrier, false, None).await.is_some());
        // A read is not paid by the overdraft, nor does it take from it.
        tokio::time::advance(GRACE * 2).await;
        assert!(
            budget
                .pay(ONE, MIB, &connection(), true, None)
                .await
                .is_none()
        );
        assert!(!told_to_drop(&overdrawn).await);
        // Once those answers are stalled, its next write is admitted (the
        // check drops nothing), and they give way when it takes its room.
        assert!(budget.may_write(ONE, &carrier));
        assert!(!told_to_drop(&overdrawn).await, "the check drops nothing");
        let room = tokio::spawn({
            let budget = Arc::clone(&budget);
            let carrier = Arc::clone(&carrier);
            async move { budget.reserve_write(ONE, &carrier).await.is_some() }
        });
        tokio::task::yield_now().await;
        assert!(told_to_drop(&overdrawn).await);
        // Sent or dropped, the answers give their shares back.
        writes.clear();
        assert!(room.await.unwrap());
        assert!(budget.may_write(ONE, &carrier));
    }

    #[tokio::test(start_paused = true)]
    async fn the_smallest_budget_still_admits_writes() {
        // 64 KiB (the least the configuration takes): an overdraft of 16
        // KiB, 4 KiB a client, less than a room; rooms of 16 KiB, all from
        // the budget, four at once.
        let budget = ResponseBudget::new(64 * 1024, 64 * 1024);
        let carrier = connection();
        assert!(budget.may_write(ONE, &carrier));
        let room = budget.reserve_write(ONE, &carrier).await.unwrap();
        let answer = budget.pay(ONE, 1024, &carrier, false, Some(room));
        let _answer = answer.await.unwrap();
        assert_eq!(budget.bytes.available(), 63 * 1024, "pays its answer only");
        assert!(
            budget.may_write(TWO, &carrier),
            "the room's rest given back"
        );
        let mut rooms = Vec::new();
        while let Some(room) = budget.try_reserve_write(TWO, budget.room_bytes()) {
            rooms.push(room);
        }
        assert_eq!(rooms.len(), 3);
        assert!(!budget.may_write(ONE, &carrier), "no room left");
        rooms.pop();
        assert!(budget.may_write(ONE, &carrier));
    }

    #[tokio::test(start_paused = true)]
    async fn writes_arriving_at_once_take_room_up_to_the_budget_and_overdraft() {
        // 1 MiB (256 KiB a client); the overdraft 256 KiB (64 KiB a
        // client): room for 16 answers from the budget and 4 from it.
        let budget = ResponseBudget::new(MIB, 64 * 1024);
        let carrier = connection();
        let clients: Vec<IpAddr> = (1..=64u8)
            .map(|n| IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, n)))
            .collect();
        // A burst of writes, a few from each of many clients, all
        // admitted before any body arrives (the check at admission lets
        // every one through), then their bodies arrive at once.
        let burst: Vec<IpAddr> = clients.iter().cycle().take(4 * 64).copied().collect();
        assert!(
            burst
                .iter()
                .all(|client| budget.may_write(*client, &carrier))
        );
        let counted = COUNTS.writes_refused.load(Ordering::Relaxed);
        let mut rooms = Vec::new();
        let mut refused = 0;
        for client in &burst {
            match budget.reserve_write(*client, &carrier).await {
                Some(room) => rooms.push((*client, room)),
                None => refused += 1,
            }
        }
        assert_eq!(rooms.len(), 20, "the budget's 16 and the overdraft's 4");
        assert_eq!(refused, 4 * 64 - 20);
        assert!(COUNTS.writes_refused.load(Ordering::Relaxed) >= counted + refused);
        // Every write made is answered from its room: the answers hold
        // what the rooms held, not a byte more.
        let mut answers = Vec::new();
        for (client, room) in rooms {
            let paid = budget.pay(client, 41 * 1024, &carrier, false, Some(room));
            answers.push(paid.await.unwrap());
        }
        assert_eq!(budget.bytes.available(), MIB - 16 * 41 * 1024);
        assert_eq!(budget.overdraft.available(), 256 * 1024 - 4 * 41 * 1024);
        drop(answers);
        assert_eq!(budget.bytes.available(), MIB);
        assert_eq!(budget.overdraft.available(), 256 * 1024);
    }

    #[tokio::test(start_paused = true)]
    async fn one_client_takes_rooms_up_to_its_quarters_and_others_still_write() {
        // 1 MiB (256 KiB a client); the overdraft 256 KiB (64 KiB a
        // client): one room from the overdraft and four from the budget.
        let budget = ResponseBudget::new(MIB, 64 * 1024);
        let carrier = connection();
        let mut rooms = Vec::new();
        while let Some(room) = budget.reserve_write(ONE, &carrier).await {
            rooms.push(room);
            assert!(rooms.len() <= 5, "past its quarters");
        }
        assert_eq!(rooms.len(), 5);
        assert!(!budget.may_write(ONE, &carrier));
        assert!(budget.may_write(TWO, &carrier));
        assert!(budget.reserve_write(TWO, &carrier).await.is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_writes_room_pays_a_small_answer_and_the_rest_of_a_large_one() {
        let budget = ResponseBudget::new(8 * MIB, 8 * MIB);
        let carrier = connection();
        // (the overdraft, 2 MiB, pays rooms first)
        let room = budget.reserve_write(ONE, &carrier).await.unwrap();
        assert_eq!(budget.overdraft.available(), 2 * MIB - WRITE_ANSWER);
        let small = budget.pay(ONE, 1024, &carrier, false, Some(room)).await;
        assert_eq!(
            budget.overdraft.available(),
            2 * MIB - 1024,
            "the rest given back"
        );
        drop(small);
        // An answer larger than its room pays the rest from the budget.
        let room = budget.reserve_write(ONE, &carrier).await.unwrap();
        let large = budget.pay(ONE, 3 * WRITE_ANSWER, &carrier, false, Some(room));
        let large = large.await.unwrap();
        assert_eq!(budget.overdraft.available(), 2 * MIB - WRITE_ANSWER);
        assert_eq!(budget.bytes.available(), 8 * MIB - 2 * WRITE_ANSWER);
        assert!(large.is_tracked());
        drop(large);
        assert_eq!(budget.bytes.available(), 8 * MIB);
        assert_eq!(budget.overdraft.available(), 2 * MIB);
        assert_eq!(budget.bytes.client_held(ONE), 0);
        assert_eq!(budget.overdraft.client_held(ONE), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn stalled_answers_give_way_to_a_write_that_finds_no_room() {
        // 256 KiB, all of which one client may hold; the overdraft 64 KiB.
        let budget = Arc::new(ResponseBudget::new(256 * 1024, 256 * 1024));
        let stalled = connection();
        let held = budget.pay(ONE, 200 * 1024, &stalled, true, None).await;
        // What the read left (56 KiB) and a client's quarter of the
        // overdraft (16 KiB) are each less than a write's room.
        assert!(budget.try_reserve_write(TWO, WRITE_ANSWER).is_none());
        // Young, the read's answer keeps its share: refused at once.
        let asked = Instant::now();
        assert!(budget.reserve_write(THREE, &connection()).await.is_none());
        assert_eq!(asked.elapsed(), Duration::ZERO);
        assert!(!told_to_drop(&stalled).await);
        // Stalled, it gives way, and the write has its room once it is gone.
        tokio::time::advance(GRACE * 2).await;
        let waiting = tokio::spawn({
            let budget = Arc::clone(&budget);
            async move { budget.reserve_write(THREE, &connection()).await.is_some() }
        });
        tokio::task::yield_now().await;
        assert!(told_to_drop(&stalled).await);
        drop(held);
        assert!(waiting.await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn only_a_few_reads_wait_at_once() {
        let budget = Arc::new(ResponseBudget::new(16 * MIB, 16 * MIB));
        let (_held, _connections) = answers(&budget, ONE, 8, 2 * MIB).await;
        tokio::time::advance(GRACE * 2).await;
        let mut waiting = Vec::new();
        for _ in 0..MAX_WAITING {
            waiting.push(tokio::spawn({
                let budget = Arc::clone(&budget);
                async move {
                    budget
                        .pay(TWO, 2 * MIB, &connection(), true, None)
                        .await
                        .is_some()
                }
            }));
        }
        tokio::task::yield_now().await;
        // One more is refused at once, though stalled answers are left.
        let asked = Instant::now();
        assert!(
            budget
                .pay(THREE, 2 * MIB, &connection(), true, None)
                .await
                .is_none()
        );
        assert_eq!(asked.elapsed(), Duration::from_millis(0));
        for waiting in waiting {
            // (none is freed here: each gives up after its wait)
            assert!(!waiting.await.unwrap());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_gives_way_when_the_stalled_could_not_free_enough() {
        let budget = ResponseBudget::new(8 * MIB, 8 * MIB);
        let (stalled, reading) = (connection(), connection());
        let _small = budget
            .pay(ONE, 20 * 1024, &stalled, true, None)
            .await
            .unwrap();
        let large = budget
            .pay(TWO, 7 * MIB, &reading, true, None)
            .await
            .unwrap();
        tokio::time::advance(GRACE * 2).await;
        large.handed(MIB);
        assert!(
            budget
                .pay(THREE, 2 * MIB, &connection(), true, None)
                .await
                .is_none()
        );
        assert_eq!(
            told(&[stalled, reading]).await,
            [false, false],
            "an answer that could not free enough is left alone"
        );
    }
}
