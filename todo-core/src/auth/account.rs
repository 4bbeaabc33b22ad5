//! The caller's own account: read it, change its address, change its
//! password, delete it.

use std::net::IpAddr;
use std::sync::Arc;

use super::Shared;
use crate::error::{Error, Result};
use crate::ports::AuditEvent;
use crate::second_factor::SecondFactorAnswer;
use crate::token::Principal;
use crate::user::{Email, Password, Role, User, UserChange};

/// The caller's change to their own account; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountPatch {
    /// The e-mail address; `Some(None)` removes it.
    pub email: Option<Option<Email>>,
}

/// The signed-in caller's own account.
#[derive(Clone)]
pub struct AccountService {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for AccountService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountService").finish_non_exhaustive()
    }
}

impl AccountService {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    pub(super) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The caller's own account.
    pub fn me(&self, principal: &Principal) -> Result<User> {
        super::require_login(principal)?;
        self.shared
            .current_user(principal.user_id)
            .map(|record| record.user)
    }

    /// Applies the fields `patch` names; a patch that names none changes
    /// nothing and answers the account as it is (as [`Self::me`]).
    /// `current` is the caller's password, which a change of address needs.
    pub fn patch_me(
        &self,
        client: Option<IpAddr>,
        principal: &Principal,
        patch: AccountPatch,
        current: Option<&str>,
    ) -> Result<User> {
        match patch.email {
            Some(email) => self.update_me(client, principal, email, current),
            None => self.me(principal),
        }
    }

    /// Changes the caller's e-mail address (`None` removes it), with their
    /// password again: a verified address receives reset links, so a
    /// stolen session that could change it could take the account (review
    /// of session 27, 1). The address is unverified, and links pending for
    /// the old one die, in the same write ([`crate::UserStore::change_user`]). The same address again changes nothing
    /// and needs no password.
    pub fn update_me(
        &self,
        client: Option<IpAddr>,
        principal: &Principal,
        email: Option<Email>,
        current: Option<&str>,
    ) -> Result<User> {
        super::require_login(principal)?;
        let mut record = self.shared.current_user(principal.user_id)?;
        if record.user.email != email {
            let Some(current) = current else {
                return Err(Error::invalid(crate::error::ValidationError::Blank {
                    field: "current_password",
                }));
            };
            self.shared.confirm_password(
                client,
                &record,
                principal.session,
                current,
                "change_email",
            )?;
            let now = self.shared.clock.now();
            let change = UserChange {
                email: Some(email.clone()),
                ..UserChange::at(now)
            };
            if !self.shared.users.change_user(record.user.id, &change)? {
                return Err(Error::NotFound);
            }
            self.shared.audit(&AuditEvent::EmailChanged {
                user: record.user.id,
                client,
            });
            record.user.email = email;
            record.user.email_verified = false;
            record.user.updated_at = now;
        }
        Ok(record.user)
    }

    /// Changes the caller's password after checking the current one, and
    /// revokes every refresh token and every access token issued before.
    pub fn change_password(
        &self,
        client: Option<IpAddr>,
        principal: &Principal,
        current: &str,
        new: &str,
    ) -> Result<()> {
        super::require_login(principal)?;
        let record = self.shared.current_user(principal.user_id)?;
        let username = &record.user.username;
        // (the request names it `new_password`: its faults are that field's)
        let new = Password::new_for(new, username).map_err(|e| e.of_field("new_password"))?;
        self.shared.confirm_password(
            client,
            &record,
            principal.session,
            current,
            "change_password",
        )?;
        let new_hash = self.shared.hasher.hash(&new)?;
        self.shared.install_password(&record, &new_hash)?;
        self.shared.audit(&AuditEvent::PasswordChanged {
            user: record.user.id,
            client,
        });
        Ok(())
    }

    /// Deletes the caller's account after checking their password: the
    /// account, its sessions and tokens, everything it owns (tasks,
    /// projects with their tasks, webhooks, feeds) and its memberships of
    /// others' projects, whose members are told (`member.removed`), in
    /// one transaction. What it made in others' projects stays theirs.
    /// Its tokens are refused at once here and within
    /// [`crate::AccessGate::MAX_STALENESS`] everywhere.
    ///
    /// An account with a second factor needs a code too (`answer`).
    pub fn delete_me(
        &self,
        client: Option<IpAddr>,
        principal: &Principal,
        current: &str,
        answer: Option<&SecondFactorAnswer>,
    ) -> Result<()> {
        super::require_login(principal)?;
        let record = self.shared.current_user(principal.user_id)?;
        // As on the admin path: an administrator's account is deleted by
        // another, so that one is always left.
        if record.user.role == Role::Admin {
            return Err(Error::Conflict(
                "an administrator's account is deleted by another administrator",
            ));
        }
        self.shared.confirm_password(
            client,
            &record,
            principal.session,
            current,
            "delete_account",
        )?;
        self.confirm_second_factor(client, &record, answer, "delete_account")?;
        let now = self.shared.clock.now();
        if !self.shared.users.delete_user(record.user.id, now)? {
            return Err(Error::NotFound);
        }
        self.shared.gate.forget(record.user.id);
        self.shared.audit(&AuditEvent::AccountDeleted {
            user: record.user.id,
            client,
        });
        Ok(())
    }
}
