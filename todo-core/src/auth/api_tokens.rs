//! API tokens: made, listed and revoked by a signed-in user (a login, never
//! another API token), each a session of its own.

use std::net::IpAddr;

use super::SessionService;
use crate::api_token::{
    ApiTokenGrant, ApiTokenName, ApiTokenRecord, ApiTokenSecret, DEFAULT_API_TOKEN_LIFETIME,
    MAX_API_TOKEN_LIFETIME,
};
use crate::error::{Error, Result, StoreError, TokenRejection, ValidationError};
use crate::ports::AuditEvent;
use crate::random::new_v7;
use crate::session::{SessionKind, SessionRecord, UserAgent};
use crate::time::Timestamp;
use crate::token::{Principal, SessionId};

/// What a user asks for when they make an API token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApiToken {
    /// What they call it.
    pub name: ApiTokenName,
    /// What it may do, and where.
    pub grant: ApiTokenGrant,
    /// When it expires; `None`: after [`DEFAULT_API_TOKEN_LIFETIME`]. At
    /// most [`MAX_API_TOKEN_LIFETIME`] from its making.
    pub expires_at: Option<Timestamp>,
}

/// Where a request to make an API token came from, shown among the user's
/// sessions.
#[derive(Debug, Clone, Default)]
pub struct RequestOrigin {
    /// The client's address, if known.
    pub client: Option<IpAddr>,
    /// The client's `User-Agent`, made safe to show.
    pub user_agent: Option<UserAgent>,
}

impl SessionService {
    /// Makes an API token for the caller, after their password (weighed, and
    /// throttled as every confirmation is): a stolen access token alone must
    /// not turn into a credential that outlives its session by a year.
    /// Only a login may make one ([`Error::Forbidden`] for an API token).
    /// The secret is returned once; only its digest is kept. Fails with
    /// [`Error::QuotaExceeded`] past the user's quota of live API tokens,
    /// and as invalid input for an expiry in the past or more than a year
    /// ahead.
    pub fn create_api_token(
        &self,
        origin: RequestOrigin,
        caller: &Principal,
        new: NewApiToken,
        current_password: Option<&str>,
    ) -> Result<(ApiTokenRecord, ApiTokenSecret)> {
        super::require_login(caller)?;
        // (a grant made by hand, not by `ApiTokenGrant::new`, is weighed too)
        let grant = ApiTokenGrant::new(new.grant.scopes, new.grant.project)?;
        let shared = self.shared();
        let Some(digest) = shared.sha256.as_ref() else {
            return Err(Error::Forbidden);
        };
        let now = shared.clock.now();
        let expires_at = match new.expires_at {
            None => now.saturating_add(DEFAULT_API_TOKEN_LIFETIME),
            Some(at) if at > now && at <= now.saturating_add(MAX_API_TOKEN_LIFETIME) => at,
            Some(_) => {
                return Err(Error::Invalid(vec![ValidationError::Range {
                    field: "expires_at",
                    min: now.unix_seconds(),
                    max: now.saturating_add(MAX_API_TOKEN_LIFETIME).unix_seconds(),
                }]));
            }
        };
        self.confirm(origin.client, caller, current_password, "create_api_token")?;
        let secret = ApiTokenSecret::generate(&*shared.random)?;
        let token = ApiTokenRecord {
            session: SessionRecord {
                id: SessionId::from_uuid(new_v7(now, &*shared.random)?),
                user_id: caller.user_id,
                kind: SessionKind::ApiToken,
                created_at: now,
                last_used_at: now,
                expires_at,
                user_agent: origin.user_agent,
                address: origin.client,
                ended_at: None,
            },
            hash: secret.digest(&**digest),
            name: new.name,
            grant,
        };
        match shared
            .refresh_tokens
            .create_api_token(&token, shared.max_api_tokens)
        {
            Ok(true) => {}
            Ok(false) => {
                return Err(Error::QuotaExceeded {
                    what: "API tokens",
                    limit: u64::try_from(shared.max_api_tokens).unwrap_or(u64::MAX),
                });
            }
            Err(StoreError::MissingReference(_)) => {
                return Err(Error::InvalidToken(TokenRejection::Revoked));
            }
            Err(e) => return Err(e.into()),
        }
        shared.audit(&AuditEvent::ApiTokenCreated {
            user: caller.user_id,
            token: token.session.id,
            client: origin.client,
        });
        Ok((token, secret))
    }

    /// The caller's live API tokens, newest first (never their secrets:
    /// none is kept).
    pub fn list_api_tokens(&self, caller: &Principal) -> Result<Vec<ApiTokenRecord>> {
        super::require_login(caller)?;
        let shared = self.shared();
        Ok(shared
            .refresh_tokens
            .list_api_tokens(caller.user_id, shared.clock.now())?)
    }

    /// Revokes one of the caller's API tokens: its session ends, and every
    /// instance refuses it within a second (no password needed, however
    /// new the token: see [`Self::end_session`]). [`Error::NotFound`] for
    /// anything but a live API token of theirs.
    pub fn revoke_api_token(
        &self,
        client: Option<IpAddr>,
        caller: &Principal,
        id: SessionId,
    ) -> Result<()> {
        if !self
            .list_api_tokens(caller)?
            .iter()
            .any(|t| t.session.id == id)
        {
            return Err(Error::NotFound);
        }
        self.end_session(client, caller, id, None)
    }
}
