//! Conditional writes (`If-Match`): which version of a task a change or a
//! deletion must find. The rule for a condition that names no version of
//! ours lives here, not in a server: it can match nothing, but that is
//! weighed only once the task is found, so another user's task is "not
//! found" whatever the condition says (RFC 9110 §13.2.1).

use crate::error::{Error, Result};
use crate::task::{Task, TaskId, TaskPatch, TaskVersion};
use crate::task_service::{TaskService, Written};
use crate::user::UserId;

/// What a conditional write asks the task's version to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// No condition, or `*`: any version will do.
    Any,
    /// This version only.
    Version(TaskVersion),
    /// A condition that names no version of ours (a malformed or foreign
    /// `ETag`): the write fails, with "not found" when the owner has no
    /// such task and a version mismatch when they have.
    Unmatchable,
}

impl Precondition {
    /// Weighs the condition against the version found, once the caller is
    /// known to see the task and be allowed the write.
    pub(crate) fn check(self, current: TaskVersion) -> Result<()> {
        match self {
            Self::Any => Ok(()),
            Self::Version(expected) if expected == current => Ok(()),
            Self::Version(_) => Err(Error::VersionMismatch { current }),
            Self::Unmatchable => Err(Error::Unmatchable { current }),
        }
    }
}

impl From<Option<TaskVersion>> for Precondition {
    fn from(expected: Option<TaskVersion>) -> Self {
        expected.map_or(Self::Any, Self::Version)
    }
}

impl TaskService {
    /// Changes the task `id` if it is at the version `precondition` asks
    /// for (see [`TaskService::update`]). The condition is weighed only
    /// after visibility and the caller's role.
    pub fn update_if(
        &self,
        caller: UserId,
        id: TaskId,
        patch: TaskPatch,
        precondition: Precondition,
    ) -> Result<Task> {
        self.write_if(caller, id, patch, precondition)
            .map(|written| written.task)
    }

    /// [`TaskService::update_if`], naming the next occurrence that
    /// completing a recurring task made (or found made already).
    pub fn write_if(
        &self,
        caller: UserId,
        id: TaskId,
        patch: TaskPatch,
        precondition: Precondition,
    ) -> Result<Written> {
        self.write_task(caller, id, patch, precondition)
    }

    /// Deletes the task `id` if it is at the version `precondition` asks
    /// for (see [`TaskService::delete`]).
    pub fn delete_if(&self, caller: UserId, id: TaskId, precondition: Precondition) -> Result<()> {
        self.delete_task(caller, id, precondition)
    }
}
