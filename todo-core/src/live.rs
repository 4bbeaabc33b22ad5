//! Live changes: a subscriber of an owner's stream is woken when a change
//! to it commits, and then reads what is new from the change log. The log
//! stays the only source of what happened; a wake-up only says "look
//! again", so a missed or doubled one can delay a change but never lose or
//! repeat it (the cursor decides what is read).
//!
//! The wake-ups are plain [`std::task::Waker`]s: no async runtime is
//! assumed, so an embedding program awaits [`ChangeSubscription::next`] on
//! whatever executor it runs.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll, Waker};

use crate::change::{Change, ChangeCursor, ChangeLimit};
use crate::error::Result;
use crate::task_service::TaskService;
use crate::user::UserId;

/// Who is waiting for whose changes, in one process. Shared by every clone
/// of a [`TaskService`]; a change made through another process (another
/// instance on the same database) reaches it through
/// [`TaskService::notify_changed`].
#[derive(Default)]
pub(crate) struct ChangeBells {
    owners: Mutex<HashMap<UserId, Vec<Weak<Bell>>>>,
}

impl ChangeBells {
    /// Rings every subscriber of `owner`'s stream.
    pub(crate) fn ring(&self, owner: UserId) {
        // Rung after the map's lock is let go: a waker may drop its
        // subscription at once, which takes the lock.
        let mut ringing = Vec::new();
        {
            let mut owners = self.owners.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(bells) = owners.get_mut(&owner) {
                bells.retain(|bell| match bell.upgrade() {
                    Some(bell) => {
                        ringing.push(bell);
                        true
                    }
                    None => false,
                });
                if bells.is_empty() {
                    owners.remove(&owner);
                }
            }
        }
        for bell in ringing {
            bell.ring();
        }
    }

    /// Rings every subscriber (after a gap in what was heard of other
    /// processes' changes: a listener that reconnected).
    pub(crate) fn ring_all(&self) {
        let ringing: Vec<Arc<Bell>> = self
            .owners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .flatten()
            .filter_map(Weak::upgrade)
            .collect();
        for bell in ringing {
            bell.ring();
        }
    }

    fn hang(&self, owner: UserId) -> Arc<Bell> {
        let bell = Arc::new(Bell::default());
        self.owners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(owner)
            .or_default()
            .push(Arc::downgrade(&bell));
        bell
    }

    fn take_down(&self, owner: UserId, bell: &Arc<Bell>) {
        let mut owners = self.owners.lock().unwrap_or_else(PoisonError::into_inner);
        let bell = Arc::downgrade(bell);
        if let Some(bells) = owners.get_mut(&owner) {
            bells.retain(|other| other.strong_count() > 0 && !Weak::ptr_eq(other, &bell));
            if bells.is_empty() {
                owners.remove(&owner);
            }
        }
    }

    /// Whether nobody in this process waits for any stream: ringing would
    /// wake no one, so a write need not look up whom to ring.
    pub(crate) fn nobody_waits(&self) -> bool {
        self.owners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }

    /// Rings the subscribers of each of `members`' streams (after a write
    /// that went to them), every subscriber if `members` fails (the streams
    /// poll now and then too; waking all is the sure way). `members` is
    /// read only if someone in this process waits: an API client's writes,
    /// with no page open, read nothing to ring. A subscriber who hangs its
    /// bell after this look reads the log after hanging it, and finds the
    /// write there.
    pub(crate) fn ring_members<M, E>(&self, members: impl FnOnce() -> Result<M, E>)
    where
        M: IntoIterator<Item = UserId>,
    {
        if self.nobody_waits() {
            return;
        }
        match members() {
            Ok(members) => members.into_iter().for_each(|member| self.ring(member)),
            Err(_) => self.ring_all(),
        }
    }

    /// Subscribers waiting now, across owners (for metrics and tests).
    pub(crate) fn subscribers(&self) -> usize {
        self.owners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .map(Vec::len)
            .sum()
    }
}

/// One subscriber's flag: rung since it last looked, and who to wake.
#[derive(Default)]
struct Bell {
    state: Mutex<BellState>,
}

#[derive(Default)]
struct BellState {
    rung: bool,
    waker: Option<Waker>,
}

impl Bell {
    fn ring(&self) {
        let waker = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.rung = true;
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    fn poll_rung(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if std::mem::take(&mut state.rung) {
            return Poll::Ready(());
        }
        match &state.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => state.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

/// An owner's stream followed from a cursor: [`ChangeSubscription::next`]
/// waits for and returns what commits after it, each change once, in the
/// order they committed. Made by [`TaskService::subscribe`].
///
/// ```
/// use std::sync::Arc;
///
/// use todo_core::memory::MemoryStore;
/// use todo_core::testing::{ManualClock, SeededRandom};
/// use todo_core::{ChangeKind, NewTask, TaskService, Title};
/// # let store = Arc::new(MemoryStore::new());
/// # let clock = Arc::new(ManualClock::new());
/// # let alice = todo_core::testing::a_user(&*store, &*clock, "alice")?;
/// let tasks = TaskService::new(store, clock, Arc::new(SeededRandom::new(1)));
/// let mut live = tasks.subscribe(alice, None)?;
/// let milk = tasks.create(alice, NewTask::titled(Title::parse("Buy milk")?))?;
///
/// // Any executor will do; this one blocks the thread.
/// let changes = todo_core::testing::block_on(live.next())?;
/// assert_eq!(changes.len(), 1);
/// assert_eq!((changes[0].kind, changes[0].task_id().unwrap()), (ChangeKind::TaskCreated, milk.id));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ChangeSubscription {
    service: TaskService,
    owner: UserId,
    cursor: ChangeCursor,
    bell: Arc<Bell>,
}

impl std::fmt::Debug for ChangeSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeSubscription")
            .field("owner", &self.owner)
            .field("cursor", &self.cursor)
            .finish_non_exhaustive()
    }
}

impl ChangeSubscription {
    pub(crate) fn new(service: TaskService, owner: UserId, cursor: ChangeCursor) -> Self {
        let bell = service.bells().hang(owner);
        Self {
            service,
            owner,
            cursor,
            bell,
        }
    }

    /// After the last change returned: where a client resumes from.
    #[must_use]
    pub fn cursor(&self) -> ChangeCursor {
        self.cursor
    }

    /// Resolves once a change to the stream may have committed since the
    /// last time it resolved (possibly none: read to know). Cancel-safe.
    pub fn changed(&self) -> Changed<'_> {
        Changed(&self.bell)
    }

    /// The changes after the cursor, at most `limit`, oldest first, and
    /// moves the cursor past them; empty when there are none. Blocks on
    /// the store: an async caller runs it where blocking is allowed.
    /// Fails with [`crate::Error::Gone`] if retention dropped changes the
    /// subscriber has not read.
    pub fn read(&mut self, limit: ChangeLimit) -> Result<Vec<Change>> {
        let page = self
            .service
            .changes(self.owner, Some(&self.cursor), limit)?;
        self.cursor = page.next_cursor;
        Ok(page.items)
    }

    /// The next changes after the cursor (one page at most), waiting until
    /// there are some. Reads the store on the calling thread.
    pub async fn next(&mut self) -> Result<Vec<Change>> {
        loop {
            let changes = self.read(ChangeLimit::default())?;
            if !changes.is_empty() {
                return Ok(changes);
            }
            self.changed().await;
        }
    }
}

impl Drop for ChangeSubscription {
    fn drop(&mut self) {
        self.service.bells().take_down(self.owner, &self.bell);
    }
}

/// The future of [`ChangeSubscription::changed`].
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct Changed<'a>(&'a Bell);

impl std::fmt::Debug for Bell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Bell")
    }
}

impl Future for Changed<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.poll_rung(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    use uuid::Uuid;

    use super::*;

    struct Counting(AtomicUsize);

    impl Wake for Counting {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn user(n: u128) -> UserId {
        UserId::from_uuid(Uuid::from_u128(n))
    }

    #[test]
    fn a_ring_wakes_only_the_owners_subscribers_and_is_remembered_until_looked_at() {
        let bells = ChangeBells::default();
        let (alice, bob) = (user(1), user(2));
        let (a, b) = (bells.hang(alice), bells.hang(bob));
        let counter = Arc::new(Counting(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&counter));
        let mut cx = Context::from_waker(&waker);
        assert!(a.poll_rung(&mut cx).is_pending());
        assert!(b.poll_rung(&mut cx).is_pending());
        bells.ring(alice);
        assert_eq!(counter.0.load(Ordering::SeqCst), 1, "only alice's waker");
        assert!(a.poll_rung(&mut cx).is_ready());
        assert!(a.poll_rung(&mut cx).is_pending(), "a ring is taken once");
        assert!(b.poll_rung(&mut cx).is_pending());
        // Rung while nobody waits: the next look sees it.
        bells.ring(bob);
        assert!(b.poll_rung(&mut cx).is_ready());
    }

    #[test]
    fn members_are_read_to_ring_only_while_someone_waits() {
        let bells = ChangeBells::default();
        let (alice, bob) = (user(1), user(2));
        let reads = std::cell::Cell::new(0);
        let members = || {
            reads.set(reads.get() + 1);
            Ok::<_, ()>([alice, bob])
        };
        assert!(bells.nobody_waits());
        bells.ring_members(members);
        assert_eq!(reads.get(), 0, "nobody waits: nothing read");
        let bell = bells.hang(bob);
        assert!(!bells.nobody_waits());
        bells.ring_members(members);
        assert_eq!(reads.get(), 1);
        let mut cx = Context::from_waker(Waker::noop());
        assert!(
            bell.poll_rung(&mut cx).is_ready(),
            "bob's bell rung through the members"
        );
        bells.take_down(bob, &bell);
        assert!(bells.nobody_waits(), "taken down");
        let dropped = bells.hang(alice);
        drop(dropped);
        bells.ring_members(members);
        assert_eq!(
            reads.get(),
            2,
            "a dropped bell counts until a ring forgets it"
        );
        assert!(bells.nobody_waits(), "forgotten by that ring");
        bells.ring_members(members);
        assert_eq!(reads.get(), 2);
    }

    #[test]
    fn taken_down_and_dropped_bells_are_forgotten() {
        let bells = ChangeBells::default();
        let alice = user(1);
        let kept = bells.hang(alice);
        let dropped = bells.hang(alice);
        let taken = bells.hang(alice);
        assert_eq!(bells.subscribers(), 3);
        bells.take_down(alice, &taken);
        assert_eq!(bells.subscribers(), 2);
        drop(dropped);
        bells.ring(alice);
        assert_eq!(bells.subscribers(), 1);
        bells.take_down(alice, &kept);
        assert_eq!(bells.subscribers(), 0);
        assert!(bells.owners.lock().unwrap().is_empty());
    }
}
