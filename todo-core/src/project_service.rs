//! Projects as a service: making, reading, changing and deleting them, and
//! sharing them by username. Every call weighs the caller's [`Standing`]
//! in the project (one rule, in `project.rs`) before it does anything or
//! says anything about the project.

use std::sync::Arc;

use crate::error::{Error, Result, StoreError, TokenRejection, ValidationError};
use crate::feed::FeedToken;
use crate::live::ChangeBells;
use crate::ports::{RateLimiter, Sha256, Unlimited, UserStore};
use crate::precondition::Precondition;
use crate::project::{
    Member, MemberPut, Project, ProjectAction, ProjectColor, ProjectId, ProjectName, ProjectRole,
    ProjectStore, Standing,
};
use crate::query::{Page, PageLimit, ProjectCursor};
use crate::random::{Random, new_v7};
use crate::task::{Description, TaskVersion};
use crate::task_service::TaskService;
use crate::time::{Clock, Timestamp};
use crate::user::{UserId, Username};

/// How much one user may make and share.
#[derive(Clone)]
pub struct ProjectLimits {
    /// Projects a user may own, their Inbox counted (`None`: no limit).
    pub max_projects_per_user: Option<u64>,
    /// Members a project may have, its owner counted.
    pub max_members: usize,
    /// Projects a user may belong to, their own counted: others can share
    /// projects with anyone, without asking, so this bounds what they can
    /// put into someone's lists.
    pub max_memberships_per_user: usize,
    /// Writes (a project made, changed or deleted, a member added, changed
    /// or removed) per user; past it, 429.
    pub writes_per_user: Arc<dyn RateLimiter<UserId>>,
}

impl Default for ProjectLimits {
    /// 1,000 projects owned, 100 members each, 2,000 memberships, and no
    /// write limit (a server sets one).
    fn default() -> Self {
        Self {
            max_projects_per_user: Some(1_000),
            max_members: 100,
            max_memberships_per_user: 2_000,
            writes_per_user: Arc::new(Unlimited),
        }
    }
}

impl std::fmt::Debug for ProjectLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProjectLimits")
            .field("max_projects_per_user", &self.max_projects_per_user)
            .field("max_members", &self.max_members)
            .field("max_memberships_per_user", &self.max_memberships_per_user)
            .finish_non_exhaustive()
    }
}

/// A project to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewProject {
    /// Its name.
    pub name: ProjectName,
    /// Its description (may be empty).
    pub description: Description,
    /// Its colour, if any.
    pub color: Option<ProjectColor>,
}

/// A merge patch of a project's writable fields; `None` leaves a field alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProjectPatch {
    /// A new name.
    pub name: Option<ProjectName>,
    /// A new description.
    pub description: Option<Description>,
    /// `Some(None)` takes the colour away.
    pub color: Option<Option<ProjectColor>>,
    /// Archive or restore.
    pub archived: Option<bool>,
}

impl ProjectPatch {
    /// Applies the patch; whether anything changed.
    fn apply(self, project: &mut Project) -> bool {
        let before = project.clone();
        if let Some(name) = self.name {
            project.name = name;
        }
        if let Some(description) = self.description {
            project.description = description;
        }
        if let Some(color) = self.color {
            project.color = color;
        }
        if let Some(archived) = self.archived {
            project.archived = archived;
        }
        *project != before
    }
}

/// A service asked for a feed with no SHA-256 given
/// ([`ProjectService::with_sha256`]).
#[derive(Debug, thiserror::Error)]
#[error("the project service was given no SHA-256: feeds are off")]
struct NoSha256;

/// Projects and their members, for callers identified by their user id.
#[derive(Clone)]
pub struct ProjectService {
    projects: Arc<dyn ProjectStore>,
    users: Arc<dyn UserStore>,
    clock: Arc<dyn Clock>,
    random: Arc<dyn Random>,
    limits: ProjectLimits,
    /// This process's subscribers of the change streams, woken after each
    /// write (`None`: none here; they poll, or hear other processes).
    bells: Option<Arc<ChangeBells>>,
    /// What feed tokens are kept as (`None`: no feeds here).
    sha256: Option<Arc<dyn Sha256>>,
}

impl std::fmt::Debug for ProjectService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProjectService")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl ProjectService {
    /// A service with the default [`ProjectLimits`].
    #[must_use]
    pub fn new(
        projects: Arc<dyn ProjectStore>,
        users: Arc<dyn UserStore>,
        clock: Arc<dyn Clock>,
        random: Arc<dyn Random>,
    ) -> Self {
        Self {
            projects,
            users,
            clock,
            random,
            limits: ProjectLimits::default(),
            bells: None,
            sha256: None,
        }
    }

    /// The limits it keeps.
    #[must_use]
    pub fn limits(&self) -> &ProjectLimits {
        &self.limits
    }

    /// The same service waking the subscribers of `tasks` (in this
    /// process) as soon as a project or member change is recorded in
    /// their streams, as `tasks` does for its own writes.
    #[must_use]
    pub fn waking(mut self, tasks: &TaskService) -> Self {
        self.bells = Some(tasks.shared_bells());
        self
    }

    /// Wakes the subscribers of the project's members (after a write), and
    /// of `also` (a member just removed).
    fn ring_members(&self, id: ProjectId, also: Option<UserId>) {
        let Some(bells) = &self.bells else {
            return;
        };
        bells.ring_members(|| {
            let members = self.projects.members(id)?;
            let users = members.into_iter().map(|(member, _)| member.user);
            Ok::<_, crate::StoreError>(users.chain(also))
        });
    }

    /// The same service, publishing feeds ([`ProjectService::publish_feed`])
    /// whose tokens are kept as their SHA-256 by `sha256`
    /// (`todo_auth::Sha256Digest`).
    #[must_use]
    pub fn with_sha256(mut self, sha256: Arc<dyn Sha256>) -> Self {
        self.sha256 = Some(sha256);
        self
    }

    /// The same service with other limits.
    #[must_use]
    pub fn with_limits(mut self, limits: ProjectLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Takes one write from the caller's allowance.
    fn spend_write(&self, caller: UserId) -> Result<()> {
        self.limits
            .writes_per_user
            .check(&caller)
            .map_err(|retry_after| Error::RateLimited { retry_after })
    }

    /// Makes `caller`'s Inbox if an instance older than projects made the
    /// account (it then has none). Reads once; writes only then.
    fn ensure_inbox(&self, caller: UserId) -> Result<()> {
        let inbox = ProjectId::inbox_of(caller);
        if self.projects.standing(caller, inbox)? != Standing::Stranger {
            return Ok(());
        }
        match self
            .projects
            .ensure_inbox(&Project::inbox(caller, self.clock.now()))
        {
            Ok(_) => Ok(()),
            // The caller was deleted after their token was admitted.
            Err(StoreError::MissingReference(_)) => {
                Err(Error::InvalidToken(TokenRejection::Revoked))
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Makes a project owned by the caller. Fails with
    /// [`Error::QuotaExceeded`] past the projects a user may own.
    pub fn create(&self, caller: UserId, new: NewProject) -> Result<(Project, ProjectRole)> {
        self.spend_write(caller)?;
        let now = self.clock.now();
        let project = Project {
            id: ProjectId::from_uuid(new_v7(now, &*self.random)?),
            owner: caller,
            name: new.name,
            description: new.description,
            color: new.color,
            inbox: false,
            archived: false,
            created_at: now,
            updated_at: now,
            version: TaskVersion::FIRST,
        };
        let max = self.limits.max_projects_per_user;
        match self.projects.insert_project_within(&project, max) {
            Ok(true) => {
                if let Some(bells) = &self.bells {
                    bells.ring(caller);
                }
                Ok((project, ProjectRole::Owner))
            }
            Ok(false) => Err(Error::QuotaExceeded {
                what: "projects",
                limit: max.unwrap_or_default(),
            }),
            // The caller was deleted after their token was admitted.
            Err(StoreError::MissingReference(_)) => {
                Err(Error::InvalidToken(TokenRejection::Revoked))
            }
            Err(error) => Err(error.into()),
        }
    }

    /// The project with the caller's role in it; [`Error::NotFound`] for
    /// anyone who is not a member.
    pub fn get(&self, caller: UserId, id: ProjectId) -> Result<(Project, ProjectRole)> {
        if let Some(found) = self.projects.find_project(caller, id)? {
            return Ok(found);
        }
        if id != ProjectId::inbox_of(caller) {
            return Err(Error::NotFound);
        }
        self.ensure_inbox(caller)?;
        self.projects
            .find_project(caller, id)?
            .ok_or(Error::NotFound)
    }

    /// A page of the projects the caller is a member of, in creation order:
    /// its limit, or fewer when they are large ([`crate::PAGE_BYTES`]).
    pub fn list(
        &self,
        caller: UserId,
        limit: PageLimit,
        cursor: Option<ProjectCursor>,
    ) -> Result<Page<(Project, ProjectRole), ProjectCursor>> {
        if cursor.is_none() {
            self.ensure_inbox(caller)?;
        }
        let mut items = self.projects.list_projects(
            caller,
            cursor.map(|c| c.0),
            limit.get().saturating_add(1),
        )?;
        let fits = crate::query::fitting(
            &items,
            limit.get(),
            |(project, _)| project.json_bytes_at_most(),
            |(project, _)| project.json_bytes(),
        );
        let next_cursor = if items.len() > fits {
            items.truncate(fits);
            items.last().map(|(p, _)| ProjectCursor(p.id))
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    /// Changes the project (editors and the owner), if it is at the version
    /// `precondition` asks for. An Inbox keeps its name and is never
    /// archived. A patch that changes nothing keeps the version.
    pub fn update(
        &self,
        caller: UserId,
        id: ProjectId,
        patch: ProjectPatch,
        precondition: Precondition,
    ) -> Result<(Project, ProjectRole)> {
        self.spend_write(caller)?;
        // (not a member: not found; an Inbox made first if it is theirs)
        self.get(caller, id)?;
        let now = self.clock.now();
        // Decided on the project as the store holds it, under its lock: a
        // concurrent change is waited for, never a reason to refuse.
        let mut answer: Option<Result<(Project, ProjectRole)>> = None;
        let written = self
            .projects
            .modify_project(caller, id, &mut |current, role| {
                let decided = (|| {
                    Standing::Member(role).may(ProjectAction::Edit)?;
                    check(precondition, current.version)?;
                    let renamed = patch.name.as_ref().is_some_and(|n| *n != current.name);
                    if current.inbox && (renamed || patch.archived == Some(true)) {
                        return Err(Error::Conflict(
                            "an Inbox keeps its name and is never archived",
                        ));
                    }
                    let mut changed = current.clone();
                    if !patch.clone().apply(&mut changed) {
                        return Ok(None);
                    }
                    changed.version = current.version.next();
                    changed.updated_at = now;
                    Ok(Some(changed))
                })();
                match decided {
                    Ok(Some(changed)) => Some(changed),
                    Ok(None) => {
                        answer = Some(Ok((current.clone(), role)));
                        None
                    }
                    Err(error) => {
                        answer = Some(Err(error));
                        None
                    }
                }
            })?;
        match (written, answer) {
            (Some(done), _) => {
                self.ring_members(id, None);
                Ok(done)
            }
            (None, Some(answer)) => answer,
            // (removed meanwhile)
            (None, None) => Err(Error::NotFound),
        }
    }

    /// Publishes the project's read-only iCalendar feed under a new
    /// token, revoking the URL it had (the owner only: a feed shows the
    /// project to whoever holds its URL). The token is answered once;
    /// only its hash is kept.
    pub fn publish_feed(&self, caller: UserId, id: ProjectId) -> Result<(FeedToken, Timestamp)> {
        self.spend_write(caller)?;
        let (_, role) = self.get(caller, id)?;
        Standing::Member(role).may(ProjectAction::Share)?;
        let sha = self.sha()?;
        let token = FeedToken::generate(&*self.random)?;
        let now = self.clock.now();
        match self.projects.put_feed(id, &token.digest(sha), now) {
            Ok(()) => Ok((token, now)),
            // (deleted meanwhile)
            Err(StoreError::MissingReference(_)) => Err(Error::NotFound),
            Err(error) => Err(error.into()),
        }
    }

    /// When the project's feed was published (`None`: it has none); for
    /// its owner.
    pub fn feed(&self, caller: UserId, id: ProjectId) -> Result<Option<Timestamp>> {
        let (_, role) = self.get(caller, id)?;
        Standing::Member(role).may(ProjectAction::Share)?;
        Ok(self.projects.find_feed(id)?)
    }

    /// Revokes the project's feed (its owner): its URL answers 404 from
    /// now on. [`Error::NotFound`] if it had none.
    pub fn revoke_feed(&self, caller: UserId, id: ProjectId) -> Result<()> {
        self.spend_write(caller)?;
        let (_, role) = self.get(caller, id)?;
        Standing::Member(role).may(ProjectAction::Share)?;
        if self.projects.delete_feed(id)? {
            Ok(())
        } else {
            Err(Error::NotFound)
        }
    }

    /// The project whose feed `token` opens, with its owner;
    /// [`Error::NotFound`] for text that is no token, or the token of no
    /// feed (any more: revoked, its project deleted, its owner's account
    /// disabled or their tokens revoked since it was published).
    pub fn feed_project(&self, token: &str) -> Result<(ProjectId, UserId)> {
        let token = FeedToken::parse(token).ok_or(Error::NotFound)?;
        self.projects
            .feed_project(&token.digest(self.sha()?))?
            .ok_or(Error::NotFound)
    }

    /// Deletes the project and everything in it (the owner only; never an
    /// Inbox), if it is at the version `precondition` asks for.
    pub fn delete(&self, caller: UserId, id: ProjectId, precondition: Precondition) -> Result<()> {
        self.spend_write(caller)?;
        let (project, role) = self.get(caller, id)?;
        Standing::Member(role).may(ProjectAction::Delete)?;
        project.deletable()?;
        check(precondition, project.version)?;
        let expected = match precondition {
            Precondition::Version(version) => Some(version),
            Precondition::Any | Precondition::Unmatchable => None,
        };
        // Who to wake once it is gone (read before: after, nobody is), if
        // anyone here waits (one who comes meanwhile finds the deletion
        // at the streams' next look, a delay, not a loss).
        let members = self
            .bells
            .as_ref()
            .filter(|bells| !bells.nobody_waits())
            .map(|_| self.projects.members(id));
        // The condition again in the delete itself: a change between the
        // read and here fails it, as it does a task's.
        if self
            .projects
            .delete_project(caller, id, expected, self.clock.now())?
        {
            if let (Some(bells), Some(members)) = (&self.bells, members) {
                bells
                    .ring_members(|| members.map(|m| m.into_iter().map(|(member, _)| member.user)));
            }
            return Ok(());
        }
        match self.projects.find_project(caller, id)? {
            Some((current, _)) => Err(Error::VersionMismatch {
                current: current.version,
            }),
            None => Err(Error::NotFound),
        }
    }

    /// The project's members with their usernames, the owner first (any
    /// member may see them).
    pub fn members(&self, caller: UserId, id: ProjectId) -> Result<Vec<(Member, Username)>> {
        self.get(caller, id)?;
        Ok(self.projects.members(id)?)
    }

    /// Shares the project with `username` as `role` (editor or viewer), or
    /// changes their role (the owner only). An unknown username is
    /// [`Error::NotFound`], told only to the project's owner (but anyone
    /// may own a project: sharing tells whether an account exists, as
    /// registration does); the owner's own role never changes; a project
    /// holds [`ProjectLimits::max_members`], a user belongs to
    /// [`ProjectLimits::max_memberships_per_user`] at most.
    pub fn set_member(
        &self,
        caller: UserId,
        id: ProjectId,
        username: &Username,
        role: ProjectRole,
    ) -> Result<(Member, Username)> {
        if role == ProjectRole::Owner {
            return Err(Error::invalid(ValidationError::Format {
                field: "role",
                what: "role (editor or viewer)",
            }));
        }
        self.spend_write(caller)?;
        let (project, standing) = self.standing_in(caller, id)?;
        standing.may_set_role(&project, Standing::Stranger)?;
        let user = self.user_named(username)?;
        let target = self.projects.standing(user, id)?;
        standing.may_set_role(&project, target)?;
        let now = self.clock.now();
        let member = Member {
            user,
            role,
            added_at: now,
        };
        let put = self.projects.put_member(
            id,
            &member,
            self.limits.max_members,
            self.limits.max_memberships_per_user,
            now,
        );
        match put {
            Ok(MemberPut::Added(member) | MemberPut::Changed(member)) => {
                self.ring_members(id, None);
                Ok((member, username.clone()))
            }
            Ok(MemberPut::Full) => Err(Error::QuotaExceeded {
                what: "members",
                limit: self.limits.max_members as u64,
            }),
            Ok(MemberPut::UserFull) => Err(Error::QuotaExceeded {
                what: "the user's projects",
                limit: self.limits.max_memberships_per_user as u64,
            }),
            Ok(MemberPut::Owner) => Err(Error::Conflict("the owner cannot be demoted")),
            Ok(MemberPut::NoProject) => Err(Error::NotFound),
            // The user was deleted meanwhile: as an unknown name.
            Err(StoreError::MissingReference(_)) => Err(Error::NotFound),
            Err(error) => Err(error.into()),
        }
    }

    /// Removes `username` from the project: the owner removes anyone but
    /// themselves, any other member may leave.
    pub fn remove_member(&self, caller: UserId, id: ProjectId, username: &Username) -> Result<()> {
        let (_, standing) = self.standing_in(caller, id)?;
        // Whether the name is an account is told only to the owner: anyone
        // else may only name themselves.
        let named = self
            .users
            .find_user_by_username(username)?
            .map(|record| record.user.id);
        if named != Some(caller) {
            standing.may(ProjectAction::Share)?;
            // Leaving is free: someone who was put into many projects must
            // be able to get out of them.
            self.spend_write(caller)?;
        }
        let user = named.ok_or(Error::NotFound)?;
        let target = self.projects.standing(user, id)?;
        standing.may_remove(caller, user, target)?;
        if self.projects.remove_member(id, user, self.clock.now())? {
            self.ring_members(id, Some(user));
            Ok(())
        } else {
            // Removed meanwhile by someone else.
            Err(Error::NotFound)
        }
    }

    /// What feed tokens are kept as; without it, feeds are off (a wiring
    /// fault, not the caller's).
    fn sha(&self) -> Result<&dyn Sha256> {
        self.sha256
            .as_deref()
            .ok_or_else(|| Error::internal(NoSha256))
    }

    fn standing_in(&self, caller: UserId, id: ProjectId) -> Result<(Project, Standing)> {
        let (project, role) = self.get(caller, id)?;
        Ok((project, Standing::Member(role)))
    }

    fn user_named(&self, username: &Username) -> Result<UserId> {
        Ok(self
            .users
            .find_user_by_username(username)?
            .ok_or(Error::NotFound)?
            .user
            .id)
    }
}

/// A write's condition against the project's current version.
fn check(precondition: Precondition, current: TaskVersion) -> Result<()> {
    match precondition {
        Precondition::Any => Ok(()),
        Precondition::Version(expected) if expected == current => Ok(()),
        Precondition::Version(_) => Err(Error::VersionMismatch { current }),
        Precondition::Unmatchable => Err(Error::Unmatchable { current }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::memory::MemoryStore;
    use crate::testing::{ManualClock, SeededRandom, a_user};

    struct World {
        service: ProjectService,
        alice: UserId,
        bob: UserId,
        carol: UserId,
    }

    fn world(limits: ProjectLimits) -> World {
        let store = Arc::new(MemoryStore::new());
        let clock = Arc::new(ManualClock::new());
        let [alice, bob, carol] =
            ["alice", "bob", "carol"].map(|name| a_user(&*store, &*clock, name).unwrap());
        let service =
            ProjectService::new(store.clone(), store, clock, Arc::new(SeededRandom::new(7)))
                .with_limits(limits);
        World {
            service,
            alice,
            bob,
            carol,
        }
    }

    fn new(name: &str) -> NewProject {
        NewProject {
            name: ProjectName::parse(name).unwrap(),
            description: Description::default(),
            color: None,
        }
    }

    fn named(name: &str) -> Username {
        Username::parse(name).unwrap()
    }

    fn rename(name: &str) -> ProjectPatch {
        ProjectPatch {
            name: Some(ProjectName::parse(name).unwrap()),
            ..ProjectPatch::default()
        }
    }

    #[test]
    fn roles_decide_what_members_do_and_strangers_learn_nothing() {
        let w = world(ProjectLimits::default());
        let (garden, role) = w.service.create(w.alice, new("Garden")).unwrap();
        assert_eq!(role, ProjectRole::Owner);
        let id = garden.id;
        // Bob, a stranger: not found, whatever he asks.
        assert!(matches!(w.service.get(w.bob, id), Err(Error::NotFound)));
        assert!(matches!(
            w.service
                .update(w.bob, id, rename("Mine"), Precondition::Any),
            Err(Error::NotFound)
        ));
        assert!(matches!(w.service.members(w.bob, id), Err(Error::NotFound)));
        assert!(matches!(
            w.service
                .set_member(w.bob, id, &named("bob"), ProjectRole::Editor),
            Err(Error::NotFound)
        ));
        // A viewer reads, and writes nothing.
        w.service
            .set_member(w.alice, id, &named("bob"), ProjectRole::Viewer)
            .unwrap();
        assert_eq!(w.service.get(w.bob, id).unwrap().1, ProjectRole::Viewer);
        assert!(matches!(
            w.service
                .update(w.bob, id, rename("Mine"), Precondition::Any),
            Err(Error::Forbidden)
        ));
        // An editor changes it, but neither shares nor deletes it.
        w.service
            .set_member(w.alice, id, &named("bob"), ProjectRole::Editor)
            .unwrap();
        let (renamed, _) = w
            .service
            .update(w.bob, id, rename("Vegetables"), Precondition::Any)
            .unwrap();
        assert_eq!(renamed.name.as_str(), "Vegetables");
        assert_eq!(renamed.version, TaskVersion::FIRST.next());
        assert!(matches!(
            w.service
                .set_member(w.bob, id, &named("carol"), ProjectRole::Viewer),
            Err(Error::Forbidden)
        ));
        assert!(matches!(
            w.service.delete(w.bob, id, Precondition::Any),
            Err(Error::Forbidden)
        ));
        let members = w.service.members(w.bob, id).unwrap();
        let names: Vec<(&str, ProjectRole)> = members
            .iter()
            .map(|(m, name)| (name.as_str(), m.role))
            .collect();
        assert_eq!(
            names,
            [("alice", ProjectRole::Owner), ("bob", ProjectRole::Editor)]
        );
        // Removed, he loses it at once.
        w.service.remove_member(w.alice, id, &named("bob")).unwrap();
        assert!(matches!(w.service.get(w.bob, id), Err(Error::NotFound)));
        w.service.delete(w.alice, id, Precondition::Any).unwrap();
        assert!(matches!(w.service.get(w.alice, id), Err(Error::NotFound)));
    }

    #[test]
    fn only_the_owner_learns_whether_a_name_is_an_account() {
        let w = world(ProjectLimits::default());
        let (shared, _) = w.service.create(w.alice, new("Shared")).unwrap();
        for (name, role) in [("bob", ProjectRole::Viewer), ("carol", ProjectRole::Editor)] {
            w.service
                .set_member(w.alice, shared.id, &named(name), role)
                .unwrap();
        }
        // Bob, a viewer, naming someone else: forbidden, whether the name
        // is an account, a member, or nothing at all.
        for other in ["carol", "alice", "nobody"] {
            assert!(
                matches!(
                    w.service.remove_member(w.bob, shared.id, &named(other)),
                    Err(Error::Forbidden)
                ),
                "{other}"
            );
        }
        // The owner is told.
        assert!(matches!(
            w.service
                .remove_member(w.alice, shared.id, &named("nobody")),
            Err(Error::NotFound)
        ));
        // Nobody is made owner.
        assert!(matches!(
            w.service
                .set_member(w.alice, shared.id, &named("bob"), ProjectRole::Owner),
            Err(Error::Invalid(_))
        ));
    }

    #[test]
    fn writes_spend_the_users_allowance() {
        use crate::ports::RateLimiter;
        use std::time::Duration;

        /// Lets `n` writes through, then refuses every one.
        struct Allow(std::sync::atomic::AtomicU32);
        impl RateLimiter<UserId> for Allow {
            fn check(&self, _: &UserId) -> std::result::Result<(), Duration> {
                let left = self.0.load(std::sync::atomic::Ordering::SeqCst);
                if left == 0 {
                    return Err(Duration::from_secs(1));
                }
                self.0.store(left - 1, std::sync::atomic::Ordering::SeqCst);
                Ok(())
            }
        }
        let w = world(ProjectLimits {
            writes_per_user: Arc::new(Allow(std::sync::atomic::AtomicU32::new(2))),
            ..ProjectLimits::default()
        });
        let (one, _) = w.service.create(w.alice, new("One")).unwrap();
        w.service
            .set_member(w.alice, one.id, &named("bob"), ProjectRole::Viewer)
            .unwrap();
        assert!(matches!(
            w.service
                .set_member(w.alice, one.id, &named("carol"), ProjectRole::Viewer),
            Err(Error::RateLimited { .. })
        ));
        // Reads are not writes, and leaving is free: Bob leaves on his
        // own allowance, spent or not.
        assert!(w.service.get(w.alice, one.id).is_ok());
        w.service
            .remove_member(w.bob, one.id, &named("bob"))
            .unwrap();
        assert!(matches!(w.service.get(w.bob, one.id), Err(Error::NotFound)));
    }

    #[test]
    fn the_owner_stays_and_the_inbox_stays_private() {
        let w = world(ProjectLimits::default());
        let (shared, _) = w.service.create(w.alice, new("Shared")).unwrap();
        assert!(matches!(
            w.service
                .set_member(w.alice, shared.id, &named("alice"), ProjectRole::Editor),
            Err(Error::Conflict("the owner cannot be demoted"))
        ));
        assert!(matches!(
            w.service.remove_member(w.alice, shared.id, &named("alice")),
            Err(Error::Conflict("the owner cannot be removed"))
        ));
        assert!(matches!(
            w.service
                .set_member(w.alice, shared.id, &named("nobody"), ProjectRole::Editor),
            Err(Error::NotFound)
        ));
        // A member leaves by themselves.
        w.service
            .set_member(w.alice, shared.id, &named("carol"), ProjectRole::Viewer)
            .unwrap();
        w.service
            .remove_member(w.carol, shared.id, &named("carol"))
            .unwrap();
        assert!(matches!(
            w.service.get(w.carol, shared.id),
            Err(Error::NotFound)
        ));
        // The Inbox: never shared, deleted, renamed or archived.
        let inbox = ProjectId::inbox_of(w.alice);
        assert!(w.service.get(w.alice, inbox).unwrap().0.inbox);
        assert!(matches!(
            w.service
                .set_member(w.alice, inbox, &named("bob"), ProjectRole::Viewer),
            Err(Error::Conflict("an Inbox cannot be shared"))
        ));
        assert!(matches!(
            w.service.delete(w.alice, inbox, Precondition::Any),
            Err(Error::Conflict("an Inbox cannot be deleted"))
        ));
        assert!(matches!(
            w.service
                .update(w.alice, inbox, rename("Other"), Precondition::Any),
            Err(Error::Conflict(_))
        ));
        let recoloured = ProjectPatch {
            color: Some(Some(ProjectColor::parse("#112233").unwrap())),
            ..ProjectPatch::default()
        };
        let (inbox, _) = w
            .service
            .update(w.alice, inbox, recoloured, Precondition::Any)
            .unwrap();
        assert_eq!(inbox.color.unwrap().as_str(), "#112233");
        // Another's Inbox is not found, as any project of theirs.
        assert!(matches!(
            w.service.get(w.bob, inbox.id),
            Err(Error::NotFound)
        ));
    }

    #[test]
    fn versions_are_checked_and_caps_hold() {
        let w = world(ProjectLimits {
            max_projects_per_user: Some(2),
            max_members: 2,
            ..ProjectLimits::default()
        });
        let (one, _) = w.service.create(w.alice, new("One")).unwrap();
        assert!(matches!(
            w.service.create(w.alice, new("Two")),
            Err(Error::QuotaExceeded {
                what: "projects",
                limit: 2
            })
        ));
        let stale = Precondition::Version(TaskVersion::FIRST);
        w.service
            .update(w.alice, one.id, rename("Uno"), stale)
            .unwrap();
        assert!(matches!(
            w.service.update(w.alice, one.id, rename("Eins"), stale),
            Err(Error::VersionMismatch { .. })
        ));
        assert!(matches!(
            w.service.delete(w.alice, one.id, stale),
            Err(Error::VersionMismatch { .. })
        ));
        assert!(matches!(
            w.service
                .update(w.alice, one.id, rename("Eins"), Precondition::Unmatchable),
            Err(Error::Unmatchable { .. })
        ));
        // Nothing changed: same version.
        let (same, _) = w
            .service
            .update(w.alice, one.id, rename("Uno"), Precondition::Any)
            .unwrap();
        assert_eq!(same.version, TaskVersion::FIRST.next());
        // Two members: the owner and one more.
        w.service
            .set_member(w.alice, one.id, &named("bob"), ProjectRole::Viewer)
            .unwrap();
        assert!(matches!(
            w.service
                .set_member(w.alice, one.id, &named("carol"), ProjectRole::Viewer),
            Err(Error::QuotaExceeded {
                what: "members",
                limit: 2
            })
        ));
        // Pages of one walk her Inbox and the project.
        let first = w
            .service
            .list(w.alice, PageLimit::clamped(1), None)
            .unwrap();
        assert_eq!(first.items.len(), 1);
        let second = w
            .service
            .list(w.alice, PageLimit::clamped(1), first.next_cursor)
            .unwrap();
        assert_eq!(second.items.len(), 1);
        assert_eq!(second.next_cursor, None);
        assert_ne!(first.items[0].0.id, second.items[0].0.id);
    }
}
