//! Password resets: an administrator makes a single-use link for a user
//! without mail (a user with a verified address asks for one by mail:
//! `mail.rs`), and whoever holds either kind chooses a new password, which
//! ends every session of the user.

use std::net::IpAddr;

use super::{SessionService, UserAdmin, UserRef};
use crate::error::{Error, Result, StoreError, ValidationError};
use crate::password_reset::{PASSWORD_RESET_TTL, PasswordResetRecord, ResetToken};
use crate::ports::AuditEvent;
use crate::time::Timestamp;
use crate::token::Principal;
use crate::user::Password;

/// What a link that cannot be used is answered with, whatever the reason
/// (unknown, used, expired, its user gone): one answer, naming the field.
fn dead_link() -> Error {
    Error::Invalid(vec![ValidationError::Format {
        field: "token",
        what: "reset link (it may have been used or have expired)",
    }])
}

impl UserAdmin {
    /// Makes a password-reset link for a user (admins only; audited): its
    /// token, shown once, and when it expires ([`PASSWORD_RESET_TTL`]). A
    /// newer link replaces any older one of the user's. The user's
    /// password, sessions and tokens are untouched until the link is used.
    pub fn password_reset_link(
        &self,
        principal: &Principal,
        user: impl Into<UserRef>,
    ) -> Result<(ResetToken, Timestamp)> {
        self.require_admin(principal)?;
        let id = user.into().id()?;
        let shared = self.shared();
        let Some(sha) = shared.sha256.as_ref() else {
            return Err(Error::Forbidden);
        };
        if shared.users.find_user(id)?.is_none() {
            return Err(Error::NotFound);
        }
        let now = shared.clock.now();
        let token = ResetToken::generate(&*shared.random)?;
        let expires_at = now.saturating_add(PASSWORD_RESET_TTL);
        let record = PasswordResetRecord {
            hash: token.digest(&**sha),
            user_id: id,
            created_at: now,
            expires_at,
            used_at: None,
        };
        match shared.users.create_password_reset(&record) {
            Ok(()) => {}
            Err(StoreError::MissingReference(_)) => return Err(Error::NotFound),
            Err(e) => return Err(e.into()),
        }
        shared.audit(&AuditEvent::AdminAction {
            actor: principal.user_id,
            action: "password_reset_link",
            target: id,
        });
        Ok((token, expires_at))
    }
}

impl SessionService {
    /// Sets a new password with a reset link, once: the link dies, every
    /// session and token of the user ends (on every instance within a
    /// second), and the old password no longer signs in. Limited per client
    /// address like logins, before anything is read; a link that cannot be
    /// used (unknown, used, expired) is refused before any hashing, and
    /// with one answer whatever the reason.
    pub fn reset_password(
        &self,
        client: Option<IpAddr>,
        token: &str,
        new_password: &str,
    ) -> Result<()> {
        let shared = self.shared();
        shared.client_allowance(client, "reset_password")?;
        let Some(sha) = shared.sha256.as_ref() else {
            return Err(dead_link());
        };
        let token = ResetToken::parse(token).ok_or_else(dead_link)?;
        let hash = token.digest(&**sha);
        let now = shared.clock.now();
        let reset = shared
            .users
            .find_password_reset(&hash)?
            .filter(|r| r.is_live(now))
            .ok_or_else(dead_link)?;
        let record = shared
            .users
            .find_user(reset.user_id)?
            .ok_or_else(dead_link)?;
        let new = Password::new_for(new_password, &record.user.username)
            .map_err(|e| e.of_field("new_password"))?;
        let new_hash = shared.hasher.hash(&new)?;
        // Spent before the password changes: of two uses at once, one.
        if !shared.users.use_password_reset(&hash, shared.clock.now())? {
            return Err(dead_link());
        }
        // (lost to a password change since its reading: the link is spent)
        shared
            .install_password(&record, &new_hash)
            .map_err(|e| match e {
                Error::Conflict(_) => dead_link(),
                other => other,
            })?;
        shared.audit(&AuditEvent::PasswordReset {
            user: record.user.id,
            client,
        });
        Ok(())
    }
}
