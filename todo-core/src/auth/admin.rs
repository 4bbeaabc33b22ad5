//! User administration: the administrators' operations on any account, and
//! making accounts without registration.

use std::sync::Arc;

use super::{Registration, Shared};
use crate::error::{Error, Result};
use crate::ports::AuditEvent;
use crate::query::{Page, PageLimit, UserCursor};
use crate::session::SessionRecord;
use crate::token::Principal;
use crate::user::{Role, User, UserChange, UserId, UserPatch};

/// A user as a caller names one: an id, or text that cannot be one.
///
/// Text that cannot be an id names no user: [`UserAdmin`] answers it with
/// [`Error::NotFound`], like an id nobody has, but only after the caller's
/// admin rights are checked, so that a caller who is not an administrator is
/// refused ([`Error::Forbidden`]) whatever they name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserRef {
    /// A well-formed id (whether or not a user has it).
    Id(UserId),
    /// Text that cannot be an id.
    Malformed,
}

impl UserRef {
    /// What `raw` names: an id if it parses as one. Never fails.
    #[must_use]
    pub fn parse(raw: &str) -> Self {
        UserId::parse(raw).map_or(Self::Malformed, Self::Id)
    }

    /// The id, or [`Error::NotFound`]: call after the admin check.
    pub(super) fn id(self) -> Result<UserId> {
        match self {
            Self::Id(id) => Ok(id),
            Self::Malformed => Err(Error::NotFound),
        }
    }
}

impl From<UserId> for UserRef {
    fn from(id: UserId) -> Self {
        Self::Id(id)
    }
}

/// The administrators' operations on users. Every call but
/// [`UserAdmin::create_user`] re-reads the caller's role from the store.
#[derive(Clone)]
pub struct UserAdmin {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for UserAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserAdmin").finish_non_exhaustive()
    }
}

impl UserAdmin {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// Creates a user with any role, without limits: for bootstrapping the
    /// first admin from the command line.
    pub fn create_user(&self, registration: Registration, role: Role) -> Result<User> {
        self.shared.create_user(registration, role)
    }

    /// A page of users in creation order (admins only).
    pub fn list_users(
        &self,
        principal: &Principal,
        limit: PageLimit,
        cursor: Option<UserCursor>,
    ) -> Result<Page<User, UserCursor>> {
        self.require_admin(principal)?;
        let mut items = self
            .shared
            .users
            .list_users(cursor.map(|c| c.0), limit.get().saturating_add(1))?;
        let next_cursor = if items.len() > limit.get() {
            items.truncate(limit.get());
            items.last().map(|u| UserCursor(u.id))
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    /// Any user (admins only).
    pub fn get_user(&self, principal: &Principal, user: impl Into<UserRef>) -> Result<User> {
        self.require_admin(principal)?;
        let id = user.into().id()?;
        self.shared
            .users
            .find_user(id)?
            .map(|r| r.user)
            .ok_or(Error::NotFound)
    }

    /// Disables, enables, promotes, demotes or re-addresses a user (admins
    /// only). Disabling revokes the user's refresh tokens. Admins cannot
    /// disable or demote themselves, so that there is always one left.
    pub fn patch_user(
        &self,
        principal: &Principal,
        user: impl Into<UserRef>,
        patch: UserPatch,
    ) -> Result<User> {
        self.require_admin(principal)?;
        let id = user.into().id()?;
        let self_harm = patch.disabled == Some(true) || patch.role == Some(Role::User);
        if id == principal.user_id && self_harm {
            return Err(Error::Conflict(
                "admins cannot disable or demote themselves",
            ));
        }
        let mut record = self.shared.users.find_user(id)?.ok_or(Error::NotFound)?;
        let before = record.user.clone();
        if let Some(disabled) = patch.disabled {
            record.user.disabled = disabled;
        }
        if let Some(role) = patch.role {
            record.user.role = role;
        }
        // (only a new address is written: writing one unverifies it)
        let email = patch.email.filter(|email| *email != before.email);
        if let Some(email) = &email {
            record.user.email.clone_from(email);
            record.user.email_verified = false;
        }
        if record.user != before {
            let now = self.shared.clock.now();
            record.user.updated_at = now;
            // Only the fields the patch names are written: a password
            // change landing meanwhile is kept. Disabling ends every token
            // issued so far, so that enabling the account again does not
            // revive a stolen one.
            let change = UserChange {
                email,
                role: patch.role,
                disabled: patch.disabled,
                revoke_before: (record.user.disabled && !before.disabled).then_some(now),
                updated_at: now,
            };
            if !self.shared.users.change_user(id, &change)? {
                return Err(Error::NotFound);
            }
            self.shared.gate.forget(id);
            self.shared.audit(&AuditEvent::AdminAction {
                actor: principal.user_id,
                action: "patch_user",
                target: id,
            });
        }
        if record.user.disabled && !before.disabled {
            self.shared
                .refresh_tokens
                .end_other_sessions(id, None, self.shared.clock.now())?;
            self.shared.limits.login_failures.forget_devices(id)?;
            // (a link made before would give the account back to its holder)
            self.shared.users.delete_password_resets(id)?;
        }
        Ok(record.user)
    }

    /// Deletes a user with their tasks and tokens (admins only, not themselves).
    pub fn delete_user(&self, principal: &Principal, user: impl Into<UserRef>) -> Result<()> {
        self.require_admin(principal)?;
        let id = user.into().id()?;
        if id == principal.user_id {
            return Err(Error::Conflict("admins cannot delete themselves"));
        }
        if !self.shared.users.delete_user(id, self.shared.clock.now())? {
            return Err(Error::NotFound);
        }
        self.shared.gate.forget(id);
        self.shared.audit(&AuditEvent::AdminAction {
            actor: principal.user_id,
            action: "delete_user",
            target: id,
        });
        Ok(())
    }

    /// A user's live sessions, newest first (admins only; audited, as the
    /// sessions tell where and when the user signs in).
    pub fn user_sessions(
        &self,
        principal: &Principal,
        user: impl Into<UserRef>,
    ) -> Result<Vec<SessionRecord>> {
        let id = self.existing_user(principal, user)?;
        let sessions = self
            .shared
            .refresh_tokens
            .list_sessions(id, self.shared.clock.now())?;
        self.shared.audit(&AuditEvent::AdminAction {
            actor: principal.user_id,
            action: "list_sessions",
            target: id,
        });
        Ok(sessions)
    }

    /// Ends every session of a user (admins only): their refresh tokens
    /// die and their access tokens are refused within
    /// [`crate::AccessGate::MAX_STALENESS`], at once on this instance.
    /// Returns how many it ended. The account stays enabled: the user
    /// signs in again (disable it to keep them out).
    pub fn end_user_sessions(
        &self,
        principal: &Principal,
        user: impl Into<UserRef>,
    ) -> Result<u64> {
        let id = self.existing_user(principal, user)?;
        let now = self.shared.clock.now();
        let ended = self
            .shared
            .refresh_tokens
            .end_other_sessions(id, None, now)?;
        self.shared.gate.forget(id);
        self.shared.audit(&AuditEvent::AdminAction {
            actor: principal.user_id,
            action: "end_sessions",
            target: id,
        });
        Ok(ended)
    }

    /// After the admin check: the id of a user who exists, else
    /// [`Error::NotFound`].
    fn existing_user(&self, principal: &Principal, user: impl Into<UserRef>) -> Result<UserId> {
        self.require_admin(principal)?;
        let id = user.into().id()?;
        match self.shared.users.find_user(id)? {
            Some(_) => Ok(id),
            None => Err(Error::NotFound),
        }
    }

    /// The quick look, before a request's body is read: a caller whose
    /// admitted role (the access gate's reading of the store, at most a
    /// second old) is not admin is refused at once. Each call checks the
    /// stored role again all the same.
    pub fn screen(principal: &Principal) -> Result<()> {
        super::require_login(principal)?;
        if principal.role == Role::Admin {
            Ok(())
        } else {
            Err(Error::Forbidden)
        }
    }

    /// The role in a token may be minutes old: admin rights are checked
    /// against the stored account on every admin call.
    /// The shared state, for the service's other files.
    pub(super) fn shared(&self) -> &Shared {
        &self.shared
    }

    /// The configured origin of mailed links, when mail is configured:
    /// an administrator's reset link points there too.
    #[must_use]
    pub fn link_base(&self) -> Option<&crate::mail::LinkBase> {
        self.shared.outbox.as_ref().map(|outbox| &outbox.links)
    }

    pub(super) fn require_admin(&self, principal: &Principal) -> Result<()> {
        super::require_login(principal)?;
        let record = self.shared.current_user(principal.user_id)?;
        if record.user.role == Role::Admin {
            Ok(())
        } else {
            Err(Error::Forbidden)
        }
    }
}
