//! The crate's errors: what a value can be wrong about, what a store can fail
//! with, and what a service call answers. The HTTP layer maps [`Error`] to a
//! status in exactly one place.

use std::time::Duration;

use crate::task::TaskVersion;

/// A boxed source error, kept for the log.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a value offered for a domain type is not valid. Each carries the name
/// of the field it concerns, as the API spells it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationError {
    #[error("must be {min} to {max} characters long")]
    Length {
        field: &'static str,
        min: usize,
        max: usize,
    },
    #[error("must not be blank")]
    Blank { field: &'static str },
    #[error("may contain only {allowed}")]
    Charset {
        field: &'static str,
        allowed: &'static str,
    },
    #[error("must be between {min} and {max}")]
    Range {
        field: &'static str,
        min: i64,
        max: i64,
    },
    #[error("must not contain the same value twice")]
    Duplicate { field: &'static str },
    #[error("may hold at most {max} items")]
    TooMany { field: &'static str, max: usize },
    #[error("is not a valid {what}")]
    Format {
        field: &'static str,
        what: &'static str,
    },
    #[error("must not equal the username")]
    PasswordIsUsername { field: &'static str },
}

impl ValidationError {
    /// The API name of the field this error concerns.
    #[must_use]
    pub fn field(&self) -> &'static str {
        match self {
            Self::Length { field, .. }
            | Self::Blank { field }
            | Self::Charset { field, .. }
            | Self::Range { field, .. }
            | Self::Duplicate { field }
            | Self::TooMany { field, .. }
            | Self::Format { field, .. }
            | Self::PasswordIsUsername { field } => field,
        }
    }
}

/// What a storage adapter can fail with. Adapters keep the driver's error as
/// the source; no driver type crosses this boundary.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A uniqueness rule was broken (a taken username, a duplicate id).
    #[error("conflict with stored data: {0}")]
    Conflict(&'static str),
    /// A row the write refers to is gone (an owner deleted meanwhile).
    #[error("a referenced row is missing: {0}")]
    MissingReference(&'static str),
    /// The database cannot be reached or is busy past its wait: retryable.
    #[error("storage unavailable")]
    Unavailable(#[source] BoxError),
    /// Anything else: a bug, corrupt data, a failed migration.
    #[error("storage failure")]
    Internal(#[source] BoxError),
}

/// What a password hasher can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HashError {
    /// The hashing queue is full; the caller should come back later.
    #[error("password hashing is saturated")]
    Busy { retry_after: Duration },
    /// A stored hash could not be parsed.
    #[error("stored password hash is malformed")]
    Malformed(#[source] BoxError),
    #[error("password hashing failed")]
    Internal(#[source] BoxError),
}

/// Why an access token was refused. Callers answer every kind the same way
/// (the reason is for the log only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenRejection {
    #[error("token is malformed")]
    Malformed,
    #[error("token signature or algorithm is not accepted")]
    BadSignature,
    #[error("token key id is unknown")]
    UnknownKey,
    #[error("token has expired")]
    Expired,
    #[error("token is not yet valid")]
    NotYetValid,
    #[error("token issuer or audience is wrong")]
    WrongAudience,
    #[error("token claims are invalid")]
    BadClaims,
    /// The account is gone or disabled, or its tokens were revoked.
    #[error("token was revoked")]
    Revoked,
}

/// What an access-token signer or verifier can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    #[error("access token rejected: {0}")]
    Rejected(TokenRejection),
    #[error("signing failed")]
    Signing(#[source] BoxError),
}

/// The system's source of randomness failed.
#[derive(Debug, thiserror::Error)]
#[error("randomness unavailable")]
pub struct RandomError(#[source] pub BoxError);

/// The answer of every service call that fails.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("invalid input")]
    Invalid(Vec<ValidationError>),
    /// Login failed: unknown user, wrong password or disabled account, alike.
    #[error("invalid credentials")]
    InvalidCredentials,
    /// The current password given for a password change is wrong.
    #[error("the current password is wrong")]
    WrongPassword,
    /// An access token is missing its mark in any way.
    #[error("invalid access token")]
    InvalidToken(TokenRejection),
    /// A refresh token is unknown, expired, revoked or reused.
    #[error("invalid refresh token")]
    InvalidRefreshToken,
    #[error("the username is taken")]
    UsernameTaken,
    /// Missing, or owned by someone else: the two are never told apart.
    #[error("not found")]
    NotFound,
    #[error("the object has changed: its version is now {current}")]
    VersionMismatch { current: TaskVersion },
    #[error("forbidden")]
    Forbidden,
    /// A request that would leave the system in a state it refuses.
    #[error("{0}")]
    Conflict(&'static str),
    #[error("too many requests")]
    RateLimited { retry_after: Duration },
    /// A per-user quota is used up (what is counted, e.g. "tasks").
    #[error("the quota of {what} is used up ({limit})")]
    QuotaExceeded { what: &'static str, limit: u64 },
    /// Self-service registration is switched off; an administrator creates users.
    #[error("registration is closed")]
    RegistrationClosed,
    #[error("overloaded")]
    Overloaded { retry_after: Duration },
    #[error("storage unavailable")]
    Unavailable(#[source] StoreError),
    #[error("internal error")]
    Internal(#[source] BoxError),
}

impl Error {
    pub(crate) fn invalid(error: ValidationError) -> Self {
        Self::Invalid(vec![error])
    }

    pub(crate) fn internal(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Internal(Box::new(error))
    }
}

impl From<ValidationError> for Error {
    fn from(error: ValidationError) -> Self {
        Self::invalid(error)
    }
}

impl From<StoreError> for Error {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(_) => Self::Unavailable(error),
            StoreError::Conflict(_) | StoreError::MissingReference(_) | StoreError::Internal(_) => {
                Self::internal(error)
            }
        }
    }
}

impl From<HashError> for Error {
    fn from(error: HashError) -> Self {
        match error {
            HashError::Busy { retry_after } => Self::Overloaded { retry_after },
            HashError::Malformed(_) | HashError::Internal(_) => Self::internal(error),
        }
    }
}

impl From<TokenError> for Error {
    fn from(error: TokenError) -> Self {
        match error {
            TokenError::Rejected(reason) => Self::InvalidToken(reason),
            TokenError::Signing(_) => Self::internal(error),
        }
    }
}

impl From<RandomError> for Error {
    fn from(error: RandomError) -> Self {
        Self::internal(error)
    }
}

/// Shorthand for service results.
pub type Result<T, E = Error> = std::result::Result<T, E>;
