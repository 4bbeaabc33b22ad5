//! Lists that scan take a slot, and hold it for as long as their read
//! runs: with one slot, a second scan waits (the same user's: 429 after
//! the wait; another's: 503), while lists that do not scan go on; a
//! cancelled request does not give its running scan's slot back. A plain
//! list across more than 32 projects takes a slot as a scan does; one
//! across 32 does not.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Body;
use http::{Request, StatusCode, header};
use todo_core::memory::MemoryStore;
use todo_core::testing::{CountingHasher, ManualClock, ReversingDigest, SeededRandom, TableTokens};
use todo_core::{
    AuthLimits, AuthServices, ChangeLog, Credentials, LogPosition, Project, ProjectId, ProjectRole,
    ProjectStore, Registration, Standing, StoreError, Task, TaskCursor, TaskId, TaskInsert,
    TaskQuery, TaskService, TaskStore, TaskWrite, Timestamp, UserId,
};
use todo_http::{Api, TaskApi};
use tower::ServiceExt as _;

/// The in-memory store, whose text searches wait until released.
struct HeldSearches {
    tasks: Arc<MemoryStore>,
    /// Whose reads of the log wait until released, like searches.
    held_feeds: Mutex<Option<UserId>>,
    /// (searches inside the store now, released)
    state: Mutex<(usize, bool)>,
    changed: Condvar,
}

impl HeldSearches {
    fn state(&self) -> std::sync::MutexGuard<'_, (usize, bool)> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn release(&self) {
        self.state().1 = true;
        self.changed.notify_all();
    }

    fn searching(&self) -> usize {
        self.state().0
    }
}

impl TaskStore for HeldSearches {
    fn find_task(&self, owner: UserId, id: TaskId) -> Result<Option<Task>, StoreError> {
        self.tasks.find_task(owner, id)
    }
    fn list_tasks(
        &self,
        owner: UserId,
        query: &TaskQuery,
        after: Option<&TaskCursor>,
        limit: usize,
    ) -> Result<Vec<Task>, StoreError> {
        if query.text.is_some() {
            let mut state = self.state();
            state.0 += 1;
            while !state.1 {
                state = self
                    .changed
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            state.0 -= 1;
        }
        self.tasks.list_tasks(owner, query, after, limit)
    }
    fn list_tasks_within(
        &self,
        owner: UserId,
        query: &TaskQuery,
        after: Option<&TaskCursor>,
        limit: usize,
        max_projects: usize,
    ) -> Result<Option<Vec<Task>>, StoreError> {
        // (the inner store's own list, never held: searches do not come here)
        self.tasks
            .list_tasks_within(owner, query, after, limit, max_projects)
    }
    fn insert_task_within(
        &self,
        task: &Task,
        max_tasks: Option<u64>,
        may: &mut dyn FnMut(Standing) -> bool,
    ) -> Result<TaskInsert, StoreError> {
        self.tasks.insert_task_within(task, max_tasks, may)
    }
    fn project_tasks(
        &self,
        project: ProjectId,
        after: Option<(Timestamp, TaskId)>,
        limit: usize,
    ) -> Result<Vec<Task>, StoreError> {
        self.tasks.project_tasks(project, after, limit)
    }
    fn import(
        &self,
        owner: UserId,
        plan: &todo_core::import::ImportPlan,
        max_tasks: Option<u64>,
        max_projects: Option<u64>,
    ) -> Result<todo_core::import::ImportOutcome, StoreError> {
        self.tasks.import(owner, plan, max_tasks, max_projects)
    }
    fn write_task(
        &self,
        caller: UserId,
        id: TaskId,
        change: &mut dyn FnMut(&Task, ProjectRole) -> Option<Task>,
        follow_up: &mut dyn FnMut(&Task, &Task) -> Option<Task>,
        max_tasks: Option<u64>,
    ) -> Result<TaskWrite, StoreError> {
        self.tasks
            .write_task(caller, id, change, follow_up, max_tasks)
    }
    fn delete_task(
        &self,
        caller: UserId,
        id: TaskId,
        at: Timestamp,
        may: &mut dyn FnMut(&Task, ProjectRole) -> bool,
    ) -> Result<Option<Task>, StoreError> {
        self.tasks.delete_task(caller, id, at, may)
    }
    fn project_members(&self, project: ProjectId) -> Result<Vec<UserId>, StoreError> {
        self.tasks.project_members(project)
    }
    fn find_occurrence(
        &self,
        caller: UserId,
        series: todo_core::SeriesId,
        occurrence: u32,
    ) -> Result<Option<TaskId>, StoreError> {
        self.tasks.find_occurrence(caller, series, occurrence)
    }

    fn owned_tasks(
        &self,
        owner: UserId,
        after: Option<TaskId>,
        limit: usize,
    ) -> Result<Vec<Task>, StoreError> {
        self.tasks.owned_tasks(owner, after, limit)
    }
    fn fire_due_reminders(&self, now: Timestamp, limit: usize) -> Result<Vec<UserId>, StoreError> {
        self.tasks.fire_due_reminders(now, limit)
    }
    fn changes_after(
        &self,
        owner: UserId,
        after: LogPosition,
        limit: usize,
    ) -> Result<ChangeLog, StoreError> {
        let held = *self
            .held_feeds
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if held == Some(owner) {
            let mut state = self.state();
            state.0 += 1;
            while !state.1 {
                state = self
                    .changed
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            state.0 -= 1;
        }
        self.tasks.changes_after(owner, after, limit)
    }
    fn prune_changes(&self, before: Timestamp) -> Result<u64, StoreError> {
        self.tasks.prune_changes(before)
    }
}

fn get(path: &str, token: &str) -> Request<Body> {
    Request::get(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap()
}

/// The task API over a store whose searches wait until released, with
/// one scan slot, and users of these names.
struct Setup {
    app: axum::Router,
    held: Arc<HeldSearches>,
    store: Arc<MemoryStore>,
    /// Each user's id and access token, in the order named.
    users: Vec<(UserId, String)>,
    /// Releases the held searches when the test ends, also by a failed
    /// assertion (a search left held would keep the runtime from ending).
    release: ReleaseOnDrop,
}

struct ReleaseOnDrop(Arc<HeldSearches>);

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        self.0.release();
    }
}

fn setup(names: &[&str]) -> Setup {
    let store = Arc::new(MemoryStore::new());
    let clock = Arc::new(ManualClock::new());
    let tokens = Arc::new(TableTokens::new("todo-auth", "todo"));
    let auth = AuthServices::builder()
        .store(store.clone())
        .hasher(Arc::new(CountingHasher::new(1)))
        .signer(tokens.clone())
        .verifier(tokens)
        .refresh_hasher(Arc::new(ReversingDigest))
        .clock(clock.clone())
        .random(Arc::new(SeededRandom::new(1)))
        .limits(AuthLimits::unlimited())
        .build()
        .unwrap();
    let mut users = Vec::new();
    for name in names {
        let registration = Registration::parse(name, "correct horse", None).unwrap();
        let user = auth.sessions.register(None, registration).unwrap();
        let credentials = Credentials::offered(name, "correct horse");
        let token = auth
            .sessions
            .login(None, &credentials)
            .unwrap()
            .access_token;
        users.push((user.id, token));
    }
    let held = Arc::new(HeldSearches {
        tasks: store.clone(),
        held_feeds: Mutex::default(),
        state: Mutex::default(),
        changed: Condvar::new(),
    });
    let tasks = TaskService::new(held.clone(), clock, Arc::new(SeededRandom::new(2)));
    let api = TaskApi::new(tasks, Arc::clone(auth.sessions.gate()), Vec::new())
        .unwrap()
        .with_scan_slots(1);
    let app: axum::Router = Arc::new(api).routes().into();
    Setup {
        app,
        held: held.clone(),
        store,
        users,
        release: ReleaseOnDrop(held),
    }
}

/// Waits until a search is held in the store.
async fn until_searching(held: &HeldSearches) {
    let started = Instant::now();
    while held.searching() == 0 {
        assert!(started.elapsed() < Duration::from_secs(5), "never searched");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scans_take_a_slot_for_as_long_as_they_read() {
    let Setup {
        app,
        held,
        users,
        release: _release,
        ..
    } = setup(&["alice", "bob"]);
    let (alice, bob) = (users[0].1.clone(), users[1].1.clone());

    // alice's search runs (held in the store) and takes the one slot; her
    // request is then cancelled, as a client resetting its stream would.
    let first = tokio::spawn(app.clone().oneshot(get("/v1/tasks?q=plants", &alice)));
    until_searching(&held).await;
    first.abort();

    // Her scan still reads: the slot is still taken.
    let again = app
        .clone()
        .oneshot(get("/v1/tasks?q=plants", &alice))
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::TOO_MANY_REQUESTS);
    let other = app
        .clone()
        .oneshot(get("/v1/tasks?done=false", &bob))
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(held.searching(), 1, "no second search reached the store");

    // What does not scan goes on meanwhile.
    let plain = app.clone().oneshot(get("/v1/tasks", &bob)).await.unwrap();
    assert_eq!(plain.status(), StatusCode::OK);

    // Once the scan has read, the slot is free again.
    held.release();
    let started = Instant::now();
    while held.searching() > 0 {
        assert!(started.elapsed() < Duration::from_secs(5), "never ended");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let after = app
        .clone()
        .oneshot(get("/v1/tasks?done=false", &bob))
        .await
        .unwrap();
    assert_eq!(after.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_across_more_than_32_projects_take_a_slot() {
    let Setup {
        app,
        held,
        store,
        users,
        release: _release,
    } = setup(&["alice", "narrow", "wide"]);
    let now = Timestamp::from_unix_micros(1_700_000_000_000_000).unwrap();
    // narrow: a member of 32 projects, wide: of 33 (their Inboxes among
    // them), all their own.
    for ((user, _), projects) in users[1..].iter().zip([32u128, 33]) {
        let mut inbox = Project::inbox(*user, now);
        store.ensure_inbox(&inbox).unwrap();
        for n in 1..projects {
            inbox.id = ProjectId::from_uuid(uuid::Uuid::from_u128(user.as_uuid().as_u128() + n));
            inbox.inbox = false;
            assert!(store.insert_project_within(&inbox, None).unwrap());
        }
    }
    let (alice, narrow, wide) = (&users[0].1, &users[1].1, &users[2].1);
    // Before any slot is taken, both list.
    for token in [narrow, wide] {
        let listed = app.clone().oneshot(get("/v1/tasks", token)).await.unwrap();
        assert_eq!(listed.status(), StatusCode::OK);
    }
    // alice's search holds the one slot.
    let search = tokio::spawn(app.clone().oneshot(get("/v1/tasks?q=plants", alice)));
    until_searching(&held).await;
    let listed = app.clone().oneshot(get("/v1/tasks", narrow)).await.unwrap();
    assert_eq!(listed.status(), StatusCode::OK, "32 projects: no slot");
    let listed = app.clone().oneshot(get("/v1/tasks", wide)).await.unwrap();
    assert_eq!(
        listed.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "33 projects: waits for the slot, then 503"
    );
    // One project named is one range, whoever asks.
    let one = format!("/v1/tasks?project={}", ProjectId::inbox_of(users[2].0));
    let listed = app.clone().oneshot(get(&one, wide)).await.unwrap();
    assert_eq!(listed.status(), StatusCode::OK);
    held.release();
    assert_eq!(search.await.unwrap().unwrap().status(), StatusCode::OK);
    let listed = app.clone().oneshot(get("/v1/tasks", wide)).await.unwrap();
    assert_eq!(listed.status(), StatusCode::OK, "the slot is free again");
}

/// Reads of the change log take one of their user's list slots (two), and
/// hold it for as long as they read: one account reading its feed from
/// many connections at once made everyone's feed reads slow (attack of
/// session 22, F5). Its third read waits, then 429; another user's reads
/// go on meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_reads_of_the_log_take_their_list_slots() {
    let Setup {
        app,
        held,
        users,
        release: _release,
        ..
    } = setup(&["alice", "bob"]);
    let ((alice_id, alice), bob) = (users[0].clone(), users[1].1.clone());
    *held
        .held_feeds
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = Some(alice_id);
    let first = tokio::spawn(app.clone().oneshot(get("/v1/changes", &alice)));
    let second = tokio::spawn(app.clone().oneshot(get("/v1/changes", &alice)));
    let started = Instant::now();
    while held.searching() < 2 {
        assert!(started.elapsed() < Duration::from_secs(5), "never read");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Her two slots are taken: a third read waits, then 429, never
    // reaching the store; Bob's reads go on.
    let third = tokio::time::timeout(
        Duration::from_secs(5),
        app.clone().oneshot(get("/v1/changes", &alice)),
    )
    .await
    .expect("the third read answered, not held in the store")
    .unwrap();
    assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(held.searching(), 2);
    let bobs = app.clone().oneshot(get("/v1/changes", &bob)).await.unwrap();
    assert_eq!(bobs.status(), StatusCode::OK);
    held.release();
    for read in [first, second] {
        assert_eq!(read.await.unwrap().unwrap().status(), StatusCode::OK);
    }
    let again = app
        .clone()
        .oneshot(get("/v1/changes", &alice))
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::OK);
}
