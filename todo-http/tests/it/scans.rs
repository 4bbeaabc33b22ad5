//! Lists that scan take a slot, and hold it for as long as their read
//! runs: with one slot, a second scan waits (the same user's: 429 after
//! the wait; another's: 503), while lists that do not scan go on; a cancelled request does not give its running scan's slot back.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Body;
use http::{Request, StatusCode, header};
use todo_core::memory::MemoryStore;
use todo_core::testing::{CountingHasher, ManualClock, ReversingDigest, SeededRandom, TableTokens};
use todo_core::{
    AuthLimits, AuthServices, ChangeLog, Credentials, ProjectId, ProjectRole, Registration,
    Standing, StoreError, Task, TaskCursor, TaskId, TaskInsert, TaskQuery, TaskService, TaskStore,
    TaskWrite, Timestamp, UserId,
};
use todo_http::{Api, TaskApi};
use tower::ServiceExt as _;

/// The in-memory store, whose text searches wait until released.
struct HeldSearches {
    tasks: Arc<MemoryStore>,
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
        after: u64,
        limit: usize,
    ) -> Result<ChangeLog, StoreError> {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scans_take_a_slot_for_as_long_as_they_read() {
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
    let mut token = Vec::new();
    for name in ["alice", "bob"] {
        let registration = Registration::parse(name, "correct horse", None).unwrap();
        auth.sessions.register(None, registration).unwrap();
        let credentials = Credentials::offered(name, "correct horse");
        token.push(
            auth.sessions
                .login(None, &credentials)
                .unwrap()
                .access_token,
        );
    }
    let (alice, bob) = (token[0].clone(), token[1].clone());
    let held = Arc::new(HeldSearches {
        tasks: store,
        state: Mutex::default(),
        changed: Condvar::new(),
    });
    let tasks = TaskService::new(held.clone(), clock, Arc::new(SeededRandom::new(2)));
    let api = TaskApi::new(tasks, Arc::clone(auth.sessions.gate()), Vec::new())
        .unwrap()
        .with_scan_slots(1);
    let app: axum::Router = Arc::new(api).routes().into();

    // alice's search runs (held in the store) and takes the one slot; her
    // request is then cancelled, as a client resetting its stream would.
    let first = tokio::spawn(app.clone().oneshot(get("/v1/tasks?q=plants", &alice)));
    let started = Instant::now();
    while held.searching() == 0 {
        assert!(started.elapsed() < Duration::from_secs(5), "never searched");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
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
