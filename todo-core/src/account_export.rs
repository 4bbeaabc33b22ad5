//! What an account export says of the account itself: the user, their
//! sessions and their API tokens, read for the signed-in caller (the
//! tasks, projects and webhooks come from their own services). It holds
//! no password hash ([`AccountExport`] has the user, not their record);
//! the API-token records carry their tokens' digests, which the adapter
//! does not write out.

use std::sync::Arc;

use crate::api_token::ApiTokenRecord;
use crate::error::{Error, Result, TokenRejection};
use crate::ports::{RefreshTokenStore, UserStore};
use crate::session::SessionRecord;
use crate::time::Clock;
use crate::token::Principal;
use crate::user::User;

/// The account part of an export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountExport {
    /// The account as the API shows it.
    pub user: User,
    /// Its live sessions (sign-ins and API tokens), newest first.
    pub sessions: Vec<SessionRecord>,
    /// Its live API tokens (never their secrets: only digests are kept).
    pub api_tokens: Vec<ApiTokenRecord>,
}

/// Reads [`AccountExport`]s: for a server that serves the export beside
/// the tasks (task-server), which has the stores but not the auth
/// services.
#[derive(Clone)]
pub struct AccountReader {
    users: Arc<dyn UserStore>,
    sessions: Arc<dyn RefreshTokenStore>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for AccountReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountReader").finish_non_exhaustive()
    }
}

impl AccountReader {
    /// A reader over the stores auth-server writes.
    pub fn new(
        users: Arc<dyn UserStore>,
        sessions: Arc<dyn RefreshTokenStore>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            users,
            sessions,
            clock,
        }
    }

    /// The caller's account (a sign-in's only: an API token's principal is
    /// [`Error::Forbidden`]); a disabled or deleted account is refused as
    /// its revoked token is.
    pub fn read(&self, principal: &Principal) -> Result<AccountExport> {
        crate::auth::require_login(principal)?;
        let id = principal.user_id;
        let user = match self.users.find_user(id)? {
            Some(record) if !record.user.disabled => record.user,
            _ => return Err(Error::InvalidToken(TokenRejection::Revoked)),
        };
        let now = self.clock.now();
        Ok(AccountExport {
            user,
            sessions: self.sessions.list_sessions(id, now)?,
            api_tokens: self.sessions.list_api_tokens(id, now)?,
        })
    }
}
