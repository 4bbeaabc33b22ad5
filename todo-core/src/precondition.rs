//! Conditional writes (`If-Match`): which version of a task a change or a
//! deletion must find. The rule for a condition that names no version of
//! ours lives here, not in a server: it can match nothing, but that is
//! weighed only once the task is found, so another user's task is "not
//! found" whatever the condition says (RFC 9110 §13.2.1).

use crate::error::{Error, Result};
use crate::task::{Task, TaskId, TaskPatch, TaskVersion};
use crate::task_service::TaskService;
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

impl TaskService {
    /// Changes `owner`'s task `id` if it is at the version `precondition`
    /// asks for (see [`TaskService::update`]).
    pub fn update_if(
        &self,
        owner: UserId,
        id: TaskId,
        patch: TaskPatch,
        precondition: Precondition,
    ) -> Result<Task> {
        let expected = self.expected_version(owner, id, precondition)?;
        self.update(owner, id, patch, expected)
    }

    /// Deletes `owner`'s task `id` if it is at the version `precondition`
    /// asks for (see [`TaskService::delete`]).
    pub fn delete_if(&self, owner: UserId, id: TaskId, precondition: Precondition) -> Result<()> {
        let expected = self.expected_version(owner, id, precondition)?;
        self.delete(owner, id, expected)
    }

    /// The version the write must find (`None`: any); an unmatchable
    /// condition fails here, after the task is looked up.
    fn expected_version(
        &self,
        owner: UserId,
        id: TaskId,
        precondition: Precondition,
    ) -> Result<Option<TaskVersion>> {
        match precondition {
            Precondition::Any => Ok(None),
            Precondition::Version(version) => Ok(Some(version)),
            Precondition::Unmatchable => Err(Error::Unmatchable {
                current: self.get(owner, id)?.version,
            }),
        }
    }
}
