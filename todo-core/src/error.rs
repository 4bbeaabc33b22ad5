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
    /// Too short or too long, counted in characters.
    #[error("must be {min} to {max} characters long")]
    Length {
        /// The field, as the API names it.
        field: &'static str,
        /// The fewest characters allowed.
        min: usize,
        /// The most characters allowed.
        max: usize,
    },
    /// Empty, or only white space.
    #[error("must not be blank")]
    Blank {
        /// The field, as the API names it.
        field: &'static str,
    },
    /// A character outside the allowed set.
    #[error("may contain only {allowed}")]
    Charset {
        /// The field, as the API names it.
        field: &'static str,
        /// The allowed characters, in words.
        allowed: &'static str,
    },
    /// A number outside its range.
    #[error("must be between {min} and {max}")]
    Range {
        /// The field, as the API names it.
        field: &'static str,
        /// The smallest value allowed.
        min: i64,
        /// The largest value allowed.
        max: i64,
    },
    /// A set given with a repeated member.
    #[error("must not contain the same value twice")]
    Duplicate {
        /// The field, as the API names it.
        field: &'static str,
    },
    /// A list longer than allowed.
    #[error("may hold at most {max} items")]
    TooMany {
        /// The field, as the API names it.
        field: &'static str,
        /// The most items allowed.
        max: usize,
    },
    /// Not in the format the field takes (a timestamp, an email, a cursor).
    #[error("is not a valid {what}")]
    Format {
        /// The field, as the API names it.
        field: &'static str,
        /// What the value should have been, in words.
        what: &'static str,
    },
    /// A password equal to its username: the first thing an attacker tries.
    #[error("must not equal the username")]
    PasswordIsUsername {
        /// The field, as the API names it.
        field: &'static str,
    },
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

    /// The same fault, of the field `field` as the request names it (a
    /// new password checked by the rules of `password`).
    #[must_use]
    pub fn of_field(mut self, name: &'static str) -> Self {
        match &mut self {
            Self::Length { field, .. }
            | Self::Blank { field }
            | Self::Charset { field, .. }
            | Self::Range { field, .. }
            | Self::Duplicate { field }
            | Self::TooMany { field, .. }
            | Self::Format { field, .. }
            | Self::PasswordIsUsername { field } => *field = name,
        }
        self
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
    Busy {
        /// When a retry has a fair chance.
        retry_after: Duration,
    },
    /// A stored hash could not be parsed.
    #[error("stored password hash is malformed")]
    Malformed(#[source] BoxError),
    /// The hashing itself failed (bad parameters, no randomness): a bug or
    /// a broken host, never the password's fault.
    #[error("password hashing failed")]
    Internal(#[source] BoxError),
}

/// Why an access token was refused. Callers answer every kind the same way
/// (the reason is for the log only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenRejection {
    /// Not a token at all: wrong shape, bad encoding, unreadable header.
    #[error("token is malformed")]
    Malformed,
    /// The signature does not verify, or the algorithm is not the key's.
    #[error("token signature or algorithm is not accepted")]
    BadSignature,
    /// No key of the verifier has the token's `kid`.
    #[error("token key id is unknown")]
    UnknownKey,
    /// Past `exp`, beyond the leeway.
    #[error("token has expired")]
    Expired,
    /// Before `nbf`, beyond the leeway.
    #[error("token is not yet valid")]
    NotYetValid,
    /// Issued by someone else, or for another audience.
    #[error("token issuer or audience is wrong")]
    WrongAudience,
    /// A claim is missing or not of its type (a `sub` that is no user id).
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
    /// The token was refused; the reason is for the log.
    #[error("access token rejected: {0}")]
    Rejected(TokenRejection),
    /// The signer failed: a key or library fault, not the caller's.
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
    /// The input was refused, every reason listed (each names its field).
    #[error("invalid input")]
    Invalid(Vec<ValidationError>),
    /// Login failed: unknown user, wrong password or disabled account, alike.
    #[error("invalid credentials")]
    InvalidCredentials,
    /// The current password given for a password change is wrong.
    #[error("the current password is wrong")]
    WrongPassword,
    /// The password matched, but the account has a second factor:
    /// [`crate::SessionService::login`] cannot sign it in alone (use
    /// [`crate::SessionService::sign_in`]).
    #[error("the account needs a second factor")]
    SecondFactorRequired,
    /// A login's second step named an `mfa_token` that is unknown, used,
    /// expired or out of attempts.
    #[error("invalid mfa_token")]
    InvalidMfaToken,
    /// A login's second step offered a wrong or used code.
    #[error("the code is wrong or was used")]
    InvalidSecondFactor,
    /// A signed-in caller confirming an action offered a wrong or used
    /// code.
    #[error("the code is wrong or was used")]
    WrongCode,
    /// This server offers no second factors (no key to seal them under).
    #[error("this server offers no second factors")]
    NoSecondFactors,
    /// A passkey sign-in was refused (an unknown, spent or expired
    /// `challenge_id`, an unknown passkey, a disabled account, an answer
    /// that does not verify): why, for the log only.
    #[error("the passkey sign-in was refused")]
    InvalidPasskey(String),
    /// A passkey's registration was refused (none begun, or an answer that
    /// does not hold): why, for the log only.
    #[error("the passkey was not registered")]
    PasskeyRefused(String),
    /// This server offers no passkeys (no relying party configured).
    #[error("this server offers no passkeys")]
    NoPasskeys,
    /// An access token is missing its mark in any way.
    #[error("invalid access token")]
    InvalidToken(TokenRejection),
    /// A refresh token is unknown, expired, revoked or reused.
    #[error("invalid refresh token")]
    InvalidRefreshToken,
    /// Registration or creation under a username someone already has.
    #[error("the username is taken")]
    UsernameTaken,
    /// Missing, or owned by someone else: the two are never told apart.
    #[error("not found")]
    NotFound,
    /// What was asked for is no longer kept (changes older than the
    /// retention): the client must start over from the current state.
    #[error("gone: no longer kept")]
    Gone,
    /// `If-Match` named no version of ours at all (a malformed or foreign
    /// `ETag`): nothing can match it.
    #[error("the condition names no version of this object (it is at {current})")]
    Unmatchable {
        /// The version stored now.
        current: TaskVersion,
    },
    /// `If-Match` named a version that is no longer current.
    #[error("the object has changed: its version is now {current}")]
    VersionMismatch {
        /// The version stored now.
        current: TaskVersion,
    },
    /// Authenticated, but not allowed (an admin call by a user).
    #[error("forbidden")]
    Forbidden,
    /// A request that would leave the system in a state it refuses.
    #[error("{0}")]
    Conflict(&'static str),
    /// A rate limit or the failed-login delay refused the call.
    #[error("too many requests")]
    RateLimited {
        /// When the limit lets the caller in again.
        retry_after: Duration,
    },
    /// A per-user quota is used up (what is counted, e.g. "tasks").
    #[error("the quota of {what} is used up ({limit})")]
    QuotaExceeded {
        /// What is counted, in words ("tasks").
        what: &'static str,
        /// How many the quota allows.
        limit: u64,
    },
    /// Self-service registration is switched off; an administrator creates users.
    #[error("registration is closed")]
    RegistrationClosed,
    /// Shed rather than queued (the hashing queue is full): retry later.
    #[error("overloaded")]
    Overloaded {
        /// When a retry has a fair chance.
        retry_after: Duration,
    },
    /// This server sends no mail (none is configured): what needs it
    /// cannot be done here.
    #[error("this server sends no mail")]
    NoMail,
    /// The mail server did not take a message: retryable.
    #[error(transparent)]
    MailFailed(crate::mail::MailError),
    /// The store is down or busy past its wait: retryable.
    #[error("storage unavailable")]
    Unavailable(#[source] StoreError),
    /// A file to import was refused, and nothing of it imported: where
    /// and why.
    #[error("the file was not imported: {0}")]
    BadImport(#[from] crate::import::ImportError),
    /// A bug or a broken dependency; the source is for the log only.
    #[error("internal error")]
    Internal(#[source] BoxError),
}

/// An error and its sources, `: `-separated (for a log line).
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
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
