//! Projects, their members, and the one rule of who may do what to a
//! project and the objects in it.
//!
//! A caller's [`Standing`] in a project is their membership's
//! [`ProjectRole`], or none. Every check of a project, its members or its
//! tasks is [`Standing::may`] (or, for members, [`Standing::may_set_role`]
//! and [`Standing::may_remove`]), so that the rule is written once and a
//! handler has no check of its own to forget. Who is not a member learns
//! nothing, not even that the project exists: [`Error::NotFound`], as for
//! a missing one; an administrator who is not a member is no exception.

use std::fmt;

use crate::error::{Error, StoreError, ValidationError};
use crate::feed::FeedTokenHash;
use crate::task::{Description, TaskVersion, check_name};
use crate::time::Timestamp;
use crate::user::{UserId, Username, uuid_id};

uuid_id!(
    /// A project's id (UUIDv7; an Inbox's is its owner's id, see
    /// [`ProjectId::inbox_of`]).
    ProjectId,
    "project_id"
);

impl ProjectId {
    /// The id of `owner`'s Inbox. Derived from the owner, so that every
    /// instance that makes the Inbox makes the same one, once.
    #[must_use]
    pub const fn inbox_of(owner: UserId) -> Self {
        Self(*owner.as_uuid())
    }
}

/// A project's name: 1 to 100 characters, not blank, no control characters.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ProjectName(String);

impl ProjectName {
    /// The longest name, in characters.
    pub const MAX_CHARS: usize = 100;
    /// The shortest name, in characters.
    pub const MIN_CHARS: usize = 1;
    /// The name every Inbox has.
    pub const INBOX: &'static str = "Inbox";

    /// Parses a name; refuses a blank one, a longer one, or control characters.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        check_name("name", raw, Self::MIN_CHARS, Self::MAX_CHARS)?;
        Ok(Self(raw.to_owned()))
    }

    /// The name as given.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ProjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProjectName({:?})", self.0)
    }
}

/// A project's colour as the page shows it: `#rrggbb`, kept in lower case.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProjectColor([u8; 7]);

impl ProjectColor {
    /// Parses `#rrggbb` (hex digits in either case).
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let bytes = raw.as_bytes();
        let well_formed =
            bytes.len() == 7 && bytes[0] == b'#' && bytes[1..].iter().all(u8::is_ascii_hexdigit);
        if !well_formed {
            return Err(ValidationError::Format {
                field: "color",
                what: "colour (#rrggbb)",
            });
        }
        let mut color = [0; 7];
        for (to, from) in color.iter_mut().zip(bytes) {
            *to = from.to_ascii_lowercase();
        }
        Ok(Self(color))
    }

    /// The colour as `#rrggbb`.
    #[must_use]
    pub fn as_str(&self) -> &str {
        // Only ASCII is ever stored (checked in `parse`).
        std::str::from_utf8(&self.0).unwrap_or("#000000")
    }
}

impl fmt::Debug for ProjectColor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProjectColor({})", self.as_str())
    }
}

/// A member's role in a project, from the least to the most it allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProjectRole {
    /// Reads the project and its tasks.
    Viewer,
    /// Also writes its tasks and changes the project.
    Editor,
    /// Also deletes it and decides who else is a member. One per project,
    /// for good: the owner cannot be demoted or removed.
    Owner,
}

impl ProjectRole {
    /// The role as the API spells it.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Editor => "editor",
            Self::Owner => "owner",
        }
    }

    /// A role that may be given to a member: `editor` or `viewer` (a
    /// project has one owner, its creator).
    pub fn parse_grantable(raw: &str) -> Result<Self, ValidationError> {
        match raw {
            "editor" => Ok(Self::Editor),
            "viewer" => Ok(Self::Viewer),
            _ => Err(ValidationError::Format {
                field: "role",
                what: "role (editor or viewer)",
            }),
        }
    }

    /// Any role, as stored.
    #[must_use]
    pub fn parse_stored(raw: &str) -> Option<Self> {
        match raw {
            "owner" => Some(Self::Owner),
            "editor" => Some(Self::Editor),
            "viewer" => Some(Self::Viewer),
            _ => None,
        }
    }
}

/// What a caller asks to do to a project or to what is in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProjectAction {
    /// See the project, its members and its tasks (and their changes).
    Read,
    /// Create, change, complete or delete the project's tasks.
    WriteTasks,
    /// Change the project's name, description, colour or archived flag.
    Edit,
    /// Delete the project (and, once tasks belong to projects, its tasks).
    Delete,
    /// Share it: add a member or change a member's role.
    Share,
}

impl ProjectAction {
    /// Every action, for tests and documents that go through them all.
    pub const ALL: [Self; 5] = [
        Self::Read,
        Self::WriteTasks,
        Self::Edit,
        Self::Delete,
        Self::Share,
    ];

    /// The least role that may do it.
    const fn least_role(self) -> ProjectRole {
        match self {
            Self::Read => ProjectRole::Viewer,
            Self::WriteTasks | Self::Edit => ProjectRole::Editor,
            Self::Delete | Self::Share => ProjectRole::Owner,
        }
    }
}

/// A caller's standing in one project: a member in some role, or nobody
/// (a stranger, a removed member, an administrator who is not a member).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Not a member.
    Stranger,
    /// A member in this role.
    Member(ProjectRole),
}

impl Standing {
    /// The rule: a stranger gets [`Error::NotFound`] for anything (the
    /// project's existence is not told), a member whose role is below the
    /// action's gets [`Error::Forbidden`].
    pub fn may(self, action: ProjectAction) -> Result<(), Error> {
        match self {
            Self::Stranger => Err(Error::NotFound),
            Self::Member(role) if role >= action.least_role() => Ok(()),
            Self::Member(_) => Err(Error::Forbidden),
        }
    }

    /// May the caller give a user (now in `target`'s standing) a role in
    /// `project`? Only the owner shares, never an Inbox, and the owner's
    /// own role cannot change.
    pub fn may_set_role(self, project: &Project, target: Standing) -> Result<(), Error> {
        self.may(ProjectAction::Share)?;
        if project.inbox {
            return Err(Error::Conflict("an Inbox cannot be shared"));
        }
        if target == Self::Member(ProjectRole::Owner) {
            return Err(Error::Conflict("the owner cannot be demoted"));
        }
        Ok(())
    }

    /// May the caller (`caller`) remove the member `target`, whose standing
    /// is `target_standing`? The owner removes anyone but themselves; any
    /// other member may only leave.
    pub fn may_remove(
        self,
        caller: UserId,
        target: UserId,
        target_standing: Standing,
    ) -> Result<(), Error> {
        self.may(ProjectAction::Read)?;
        if caller != target {
            self.may(ProjectAction::Share)?;
        }
        if target_standing == Self::Member(ProjectRole::Owner) {
            return Err(Error::Conflict("the owner cannot be removed"));
        }
        match target_standing {
            // Not a member: as for any unknown name.
            Self::Stranger => Err(Error::NotFound),
            Self::Member(_) => Ok(()),
        }
    }
}

/// A project as stored and shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    /// Its id.
    pub id: ProjectId,
    /// The user who made it, its one owner.
    pub owner: UserId,
    /// Its name.
    pub name: ProjectName,
    /// Its description (may be empty).
    pub description: Description,
    /// Its colour, if one was chosen.
    pub color: Option<ProjectColor>,
    /// Whether this is its owner's Inbox (never deleted, never shared).
    pub inbox: bool,
    /// Whether it is archived (shown as such; lists still include it).
    pub archived: bool,
    /// When it was made.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
    /// 1 when made, one more at every change (its `ETag`).
    pub version: TaskVersion,
}

impl Project {
    /// About how long this project is as JSON on the wire (its text,
    /// escaped, and room for the rest): what a page of projects is
    /// weighed by.
    #[must_use]
    pub fn json_bytes(&self) -> usize {
        self.json_weight(crate::query::json_text_bytes)
    }

    /// A bound of [`Project::json_bytes`] that reads no text.
    #[must_use]
    pub fn json_bytes_at_most(&self) -> usize {
        self.json_weight(crate::query::json_text_bytes_at_most)
    }

    /// The project's weight, its text measured by `text`.
    fn json_weight(&self, text: fn(&str) -> usize) -> usize {
        // ids, times, colour, flags, the caller's role
        const REST: usize = 512;
        REST + text(self.name.as_str()) + text(self.description.as_str())
    }

    /// `owner`'s Inbox as it is made with the account.
    #[must_use]
    pub fn inbox(owner: UserId, now: Timestamp) -> Self {
        Self {
            id: ProjectId::inbox_of(owner),
            owner,
            name: ProjectName(ProjectName::INBOX.to_owned()),
            description: Description::default(),
            color: None,
            inbox: true,
            archived: false,
            created_at: now,
            updated_at: now,
            version: TaskVersion::FIRST,
        }
    }

    /// May it be deleted at all (by its owner)? Not if it is an Inbox.
    pub fn deletable(&self) -> Result<(), Error> {
        if self.inbox {
            Err(Error::Conflict("an Inbox cannot be deleted"))
        } else {
            Ok(())
        }
    }
}

/// A member of a project, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The member.
    pub user: UserId,
    /// Their role.
    pub role: ProjectRole,
    /// Since when they are a member (the owner: since the project was made).
    pub added_at: Timestamp,
}

impl Member {
    /// The order members are listed in: the owner first, then by when
    /// they were added.
    #[must_use]
    pub fn listing_key(&self) -> (bool, Timestamp, UserId) {
        (self.role != ProjectRole::Owner, self.added_at, self.user)
    }
}

/// What [`ProjectStore::put_member`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberPut {
    /// The user was not a member and now is, as this.
    Added(Member),
    /// The user was a member; their role is now this (`added_at` kept).
    Changed(Member),
    /// The project has `max` members already (the owner counted); nobody
    /// was added.
    Full,
    /// The user is a member of `max_memberships` projects already (their
    /// own counted); nobody was added.
    UserFull,
    /// The user is the project's owner, whose role never changes, or the
    /// role asked for is owner, which is nobody else's: nothing was
    /// written.
    Owner,
    /// The project is gone.
    NoProject,
}

/// Where projects and their members are kept. Every read of a project for
/// a caller comes with the caller's role, from the same query, and a
/// project the caller is not a member of is not found, like a missing one.
/// Every write records its change (`project.*`, `member.*`) in the stream
/// of every member, in the same transaction (an Inbox's making: none).
pub trait ProjectStore: Send + Sync {
    /// Makes the project with its owner as its one member, in one step, if
    /// the owner owns fewer than `max` projects (`None`: no limit; the
    /// projects others share with them are not counted); `false` at the
    /// limit. Fails with [`StoreError::Conflict`]
    /// on a duplicate id, and [`StoreError::MissingReference`] for an
    /// unknown owner.
    ///
    /// [`StoreError::Conflict`]: crate::StoreError::Conflict
    /// [`StoreError::MissingReference`]: crate::StoreError::MissingReference
    fn insert_project_within(
        &self,
        project: &Project,
        max: Option<u64>,
    ) -> Result<bool, StoreError>;
    /// Makes `inbox` (an owner's Inbox, [`Project::inbox`]) unless that
    /// owner's Inbox exists; returns whether it did. Any number of
    /// concurrent calls make it once.
    fn ensure_inbox(&self, inbox: &Project) -> Result<bool, StoreError>;
    /// The project with the caller's role in it; `None` if there is no
    /// such project or the caller is not a member.
    fn find_project(
        &self,
        caller: UserId,
        id: ProjectId,
    ) -> Result<Option<(Project, ProjectRole)>, StoreError>;
    /// Up to `limit` of the projects the caller is a member of, each with
    /// the caller's role, by id (so by creation), after `after` if given.
    fn list_projects(
        &self,
        caller: UserId,
        after: Option<ProjectId>,
        limit: usize,
    ) -> Result<Vec<(Project, ProjectRole)>, StoreError>;
    /// Changes the project in one step, holding it from the read to the
    /// write: `change` is given the project as it is and `editor`'s role in
    /// it, and answers the project as it should be (its writable fields:
    /// name, description, colour, archived, `updated_at`, version), or
    /// `None` to leave it. A write is recorded as `project.updated` in
    /// every member's stream (of the moment it commits). Answers the
    /// project written, with the role; `None` if nothing was written (the
    /// editor is not a member, or `change` said so).
    fn modify_project(
        &self,
        editor: UserId,
        id: ProjectId,
        change: &mut dyn FnMut(&Project, ProjectRole) -> Option<Project>,
    ) -> Result<Option<(Project, ProjectRole)>, StoreError>;
    /// Writes the project's writable fields if its version is still
    /// `expected` and `editor` is still its owner or an editor, in one step
    /// ([`ProjectStore::modify_project`]); returns whether it did.
    fn update_project(
        &self,
        editor: UserId,
        project: &Project,
        expected: TaskVersion,
    ) -> Result<bool, StoreError> {
        let written = self.modify_project(editor, project.id, &mut |current, role| {
            (current.version == expected && role >= ProjectRole::Editor).then(|| project.clone())
        })?;
        Ok(written.is_some())
    }
    /// Deletes the project and its members if `owner` owns it, it is not an
    /// Inbox and (if given) its version is `expected`, in one statement;
    /// returns whether it did.
    fn delete_project(
        &self,
        owner: UserId,
        id: ProjectId,
        expected: Option<TaskVersion>,
        at: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Publishes the project's feed under `hash` (made at `at`), in place
    /// of the one it had: the old URL stops working with this write.
    /// Fails with [`StoreError::MissingReference`] for a project gone.
    ///
    /// [`StoreError::MissingReference`]: crate::StoreError::MissingReference
    fn put_feed(
        &self,
        project: ProjectId,
        hash: &FeedTokenHash,
        at: Timestamp,
    ) -> Result<(), StoreError>;
    /// Deletes the project's feed; whether it had one.
    fn delete_feed(&self, project: ProjectId) -> Result<bool, StoreError>;
    /// When the project's feed was published, if it has one that still
    /// opens (as [`ProjectStore::feed_project`] would open it).
    fn find_feed(&self, project: ProjectId) -> Result<Option<Timestamp>, StoreError>;
    /// The project whose feed's token has this hash, with its owner, if
    /// there is one and its owner's account still stands by it: not
    /// disabled, and no revocation of the owner's tokens (a password
    /// change) since the feed was published. A feed
    /// is one of the owner's credentials: what ends the others ends it.
    fn feed_project(&self, hash: &FeedTokenHash)
    -> Result<Option<(ProjectId, UserId)>, StoreError>;
    /// The project's members with their usernames, the owner first, then
    /// by when they were added.
    fn members(&self, id: ProjectId) -> Result<Vec<(Member, Username)>, StoreError>;
    /// The user's standing in the project (a missing project: a stranger).
    fn standing(&self, user: UserId, id: ProjectId) -> Result<Standing, StoreError>;
    /// Adds `member` to the project, or changes their role if they are one
    /// already, in one step: never the owner's row, never into an Inbox,
    /// and a new member only while the project has fewer than `max`
    /// members and the user belongs to fewer than `max_memberships`
    /// projects. Either is recorded as a `member.added` change at `at`
    /// in every member's stream.
    fn put_member(
        &self,
        id: ProjectId,
        member: &Member,
        max: usize,
        max_memberships: usize,
        at: Timestamp,
    ) -> Result<MemberPut, StoreError>;
    /// Removes the user from the project, unless they are its owner;
    /// returns whether they were removed. The removal is recorded as a
    /// `member.removed` change at `at` in the stream of every member and
    /// in the removed user's.
    fn remove_member(&self, id: ProjectId, user: UserId, at: Timestamp)
    -> Result<bool, StoreError>;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    use ProjectAction::{Delete, Edit, Read, Share, WriteTasks};

    fn at() -> Timestamp {
        Timestamp::from_unix_micros(1_767_225_600_000_000).unwrap()
    }

    fn user(n: u128) -> UserId {
        UserId::from_uuid(uuid::Uuid::from_u128(n))
    }

    /// What API.md gives, written out as a table rather than derived from
    /// the roles' order: 2xx, 403 or 404 for each standing and action.
    #[test]
    fn the_matrix_is_api_mds() {
        #[derive(Debug, PartialEq)]
        enum Outcome {
            Allowed,
            Forbidden,
            NotFound,
        }
        use Outcome::{Allowed as A, Forbidden as F, NotFound as N};
        let owner = Standing::Member(ProjectRole::Owner);
        let editor = Standing::Member(ProjectRole::Editor);
        let viewer = Standing::Member(ProjectRole::Viewer);
        let stranger = Standing::Stranger;
        //                  Read WriteTasks Edit Delete Share
        let expected = [
            (owner, [A, A, A, A, A]),
            (editor, [A, A, A, F, F]),
            (viewer, [A, F, F, F, F]),
            (stranger, [N, N, N, N, N]),
        ];
        for (standing, outcomes) in expected {
            for (action, outcome) in [Read, WriteTasks, Edit, Delete, Share]
                .into_iter()
                .zip(outcomes)
            {
                let got = match standing.may(action) {
                    Ok(()) => A,
                    Err(Error::Forbidden) => F,
                    Err(Error::NotFound) => N,
                    Err(other) => panic!("{standing:?} {action:?}: {other:?}"),
                };
                assert_eq!(got, outcome, "{standing:?} {action:?}");
            }
        }
        assert_eq!(ProjectAction::ALL, [Read, WriteTasks, Edit, Delete, Share]);
    }

    #[test]
    fn only_the_owner_shares_and_never_an_inbox_or_their_own_role() {
        let alice = user(1);
        let shared = Project {
            inbox: false,
            ..Project::inbox(alice, at())
        };
        let owner = Standing::Member(ProjectRole::Owner);
        let editor = Standing::Member(ProjectRole::Editor);
        assert!(owner.may_set_role(&shared, Standing::Stranger).is_ok());
        assert!(owner.may_set_role(&shared, editor).is_ok());
        assert!(matches!(
            owner.may_set_role(&shared, owner),
            Err(Error::Conflict("the owner cannot be demoted"))
        ));
        assert!(matches!(
            owner.may_set_role(&Project::inbox(alice, at()), Standing::Stranger),
            Err(Error::Conflict("an Inbox cannot be shared"))
        ));
        assert!(matches!(
            editor.may_set_role(&shared, Standing::Stranger),
            Err(Error::Forbidden)
        ));
        assert!(matches!(
            Standing::Stranger.may_set_role(&shared, editor),
            Err(Error::NotFound)
        ));
    }

    #[test]
    fn members_leave_the_owner_removes_and_stays() {
        let (alice, bob, carol) = (user(1), user(2), user(3));
        let owner = Standing::Member(ProjectRole::Owner);
        let editor = Standing::Member(ProjectRole::Editor);
        let viewer = Standing::Member(ProjectRole::Viewer);
        // A member leaves, whatever their role.
        assert!(viewer.may_remove(bob, bob, viewer).is_ok());
        assert!(editor.may_remove(bob, bob, editor).is_ok());
        // The owner removes others, never themselves.
        assert!(owner.may_remove(alice, bob, editor).is_ok());
        assert!(matches!(
            owner.may_remove(alice, alice, owner),
            Err(Error::Conflict("the owner cannot be removed"))
        ));
        // Nobody else removes anybody.
        assert!(matches!(
            editor.may_remove(bob, carol, viewer),
            Err(Error::Forbidden)
        ));
        assert!(matches!(
            editor.may_remove(bob, alice, owner),
            Err(Error::Forbidden)
        ));
        // A stranger learns nothing; removing a non-member is not found.
        assert!(matches!(
            Standing::Stranger.may_remove(carol, carol, Standing::Stranger),
            Err(Error::NotFound)
        ));
        assert!(matches!(
            owner.may_remove(alice, carol, Standing::Stranger),
            Err(Error::NotFound)
        ));
    }

    #[test]
    fn an_inbox_is_its_owners_and_cannot_be_deleted() {
        let alice = user(1);
        let inbox = Project::inbox(alice, at());
        assert_eq!(inbox.id, ProjectId::inbox_of(alice));
        assert_eq!(inbox.id.as_uuid(), alice.as_uuid());
        assert_eq!(inbox.name.as_str(), "Inbox");
        assert!(matches!(
            inbox.deletable(),
            Err(Error::Conflict("an Inbox cannot be deleted"))
        ));
        let other = Project {
            inbox: false,
            ..inbox
        };
        assert!(other.deletable().is_ok());
    }

    #[test]
    fn names_colors_and_roles_parse_as_the_api_says() {
        assert!(ProjectName::parse("Garden").is_ok());
        assert_eq!(
            ProjectName::parse(&"x".repeat(100)).unwrap().as_str().len(),
            100
        );
        assert_eq!(
            ProjectName::parse(&"x".repeat(101)).unwrap_err().field(),
            "name"
        );
        assert!(matches!(
            ProjectName::parse(" \u{200B} "),
            Err(ValidationError::Blank { field: "name" })
        ));
        assert!(ProjectName::parse("a\u{7}b").is_err());
        assert_eq!(ProjectColor::parse("#A0b1C2").unwrap().as_str(), "#a0b1c2");
        for bad in [
            "a0b1c2",
            "#a0b1c",
            "#a0b1c2f",
            "#g0b1c2",
            "#a0b1c\u{e9}",
            "",
        ] {
            assert_eq!(
                ProjectColor::parse(bad).unwrap_err().field(),
                "color",
                "{bad:?}"
            );
        }
        assert_eq!(
            ProjectRole::parse_grantable("editor"),
            Ok(ProjectRole::Editor)
        );
        assert_eq!(
            ProjectRole::parse_grantable("viewer"),
            Ok(ProjectRole::Viewer)
        );
        for bad in ["owner", "Editor", "admin", ""] {
            assert_eq!(
                ProjectRole::parse_grantable(bad).unwrap_err().field(),
                "role"
            );
        }
        for role in [ProjectRole::Owner, ProjectRole::Editor, ProjectRole::Viewer] {
            assert_eq!(ProjectRole::parse_stored(role.as_str()), Some(role));
        }
        assert_eq!(ProjectRole::parse_stored("admin"), None);
    }
}
