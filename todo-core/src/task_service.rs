//! The task service: each user's own tasks, and nobody else's.

use std::sync::Arc;

use crate::error::{Error, Result, StoreError, TokenRejection};
use crate::ports::TaskStore;
use crate::query::{Page, TaskCursor, TaskQuery};
use crate::random::{Random, new_v7};
use crate::task::{NewTask, Task, TaskId, TaskPatch, TaskVersion};
use crate::time::Clock;
use crate::user::UserId;

/// How often an unconditional update retries after losing a race.
const UPDATE_ATTEMPTS: usize = 3;

/// The task service. Every call takes the owner, and the store scopes every
/// query by it: another user's task is simply not found.
#[derive(Clone)]
pub struct TaskService {
    store: Arc<dyn TaskStore>,
    clock: Arc<dyn Clock>,
    random: Arc<dyn Random>,
}

impl std::fmt::Debug for TaskService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskService").finish_non_exhaustive()
    }
}

impl TaskService {
    #[must_use]
    pub fn new(store: Arc<dyn TaskStore>, clock: Arc<dyn Clock>, random: Arc<dyn Random>) -> Self {
        Self {
            store,
            clock,
            random,
        }
    }

    /// Creates a task at version 1; `done: true` sets `completed_at`.
    pub fn create(&self, owner: UserId, new: NewTask) -> Result<Task> {
        let now = self.clock.now();
        let task = Task {
            id: TaskId::from_uuid(new_v7(now, &*self.random)?),
            owner,
            title: new.title,
            description: new.description,
            done: new.done,
            completed_at: new.done.then_some(now),
            due_at: new.due_at,
            priority: new.priority,
            labels: new.labels,
            archived: new.archived,
            created_at: now,
            updated_at: now,
            version: TaskVersion::FIRST,
        };
        match self.store.insert_task(&task) {
            Ok(()) => Ok(task),
            // The owner was deleted after their token was admitted: their
            // token is revoked, which is what the caller must hear.
            Err(StoreError::MissingReference(_)) => {
                Err(Error::InvalidToken(TokenRejection::Revoked))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub fn get(&self, owner: UserId, id: TaskId) -> Result<Task> {
        self.store.find_task(owner, id)?.ok_or(Error::NotFound)
    }

    /// A page of the owner's tasks; `cursor` must come from the same query.
    pub fn list(
        &self,
        owner: UserId,
        query: &TaskQuery,
        cursor: Option<&TaskCursor>,
    ) -> Result<Page<Task, TaskCursor>> {
        if let Some(cursor) = cursor {
            cursor.check(query)?;
        }
        let limit = query.limit.get();
        let mut items = self
            .store
            .list_tasks(owner, query, cursor, limit.saturating_add(1))?;
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|last| query.cursor_after(last))
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    /// Applies a merge patch. With `expected`, a task at another version is
    /// left alone ([`Error::VersionMismatch`]). A patch that changes nothing
    /// keeps the version.
    pub fn update(
        &self,
        owner: UserId,
        id: TaskId,
        patch: TaskPatch,
        expected: Option<TaskVersion>,
    ) -> Result<Task> {
        for _ in 0..UPDATE_ATTEMPTS {
            let mut task = self.get(owner, id)?;
            if let Some(expected) = expected
                && expected != task.version
            {
                return Err(Error::VersionMismatch {
                    current: task.version,
                });
            }
            let now = self.clock.now();
            let stored_version = task.version;
            if !patch.clone().apply(&mut task, now) {
                return Ok(task);
            }
            task.version = stored_version.next();
            task.updated_at = now;
            if self.store.update_task(&task, stored_version)? {
                return Ok(task);
            }
            // Someone else changed it in between: with a precondition that
            // is a mismatch; without one, apply the patch to the new state.
            if expected.is_some() {
                let current = self.get(owner, id)?;
                return Err(Error::VersionMismatch {
                    current: current.version,
                });
            }
        }
        Err(Error::Conflict(
            "the task is being changed by others; try again",
        ))
    }

    /// Deletes a task; with `expected`, only at that version.
    pub fn delete(&self, owner: UserId, id: TaskId, expected: Option<TaskVersion>) -> Result<()> {
        if self.store.delete_task(owner, id, expected)? {
            return Ok(());
        }
        match (expected, self.store.find_task(owner, id)?) {
            (Some(_), Some(current)) => Err(Error::VersionMismatch {
                current: current.version,
            }),
            _ => Err(Error::NotFound),
        }
    }
}
