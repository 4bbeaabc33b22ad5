//! The core of todo: domain types that can only exist valid, the business
//! rules of the auth and task services, and the traits at the edges (stores,
//! password hasher, token signer and verifier, rate limiter, clock,
//! randomness, audit log).
//!
//! This crate does no I/O. It depends on no database, HTTP, async runtime or
//! crypto crate (`tests/it/dependencies.rs` holds that line); `todo-store` and
//! `todo-auth` implement its traits, so the same rules run in a server, in
//! another Rust program, and in tests with fakes.
//!
//! Inputs are parsed into types that can only hold valid values
//! ([`Title`], [`Username`], [`TaskQuery`], …), and the services take only
//! those: a service never sees unchecked text.
//!
//! # Example
//!
//! A task service over the in-memory store. Time and randomness are
//! parameters: here the fakes of [`testing`](crate#features); a program
//! passes `todo_auth::SystemClock` and `todo_auth::OsRandom`, and
//! `todo_store::SqlStore` for a database.
//!
//! ```
//! use std::sync::Arc;
//!
//! use todo_core::memory::MemoryStore;
//! use todo_core::testing::{ManualClock, SeededRandom};
//! use todo_core::{NewTask, TaskQuery, TaskService, Title};
//! # use todo_core::{PasswordHash, Role, User, UserId, UserRecord, UserStore, Username};
//!
//! let store = Arc::new(MemoryStore::new());
//! let clock = Arc::new(ManualClock::new());
//! let tasks = TaskService::new(store.clone(), clock.clone(), Arc::new(SeededRandom::new(1)));
//!
//! // Tasks belong to a user of the store (the auth service registers them).
//! # let now = todo_core::Clock::now(&*clock);
//! # let alice = UserId::from_uuid(todo_core::new_v7(now, &SeededRandom::new(2))?);
//! # store.insert_user(&UserRecord {
//! #     user: User {
//! #         id: alice,
//! #         username: Username::parse("alice")?,
//! #         email: None,
//! #         email_verified: false,
//! #         role: Role::User,
//! #         disabled: false,
//! #         created_at: now,
//! #         updated_at: now,
//! #     },
//! #     password_hash: PasswordHash::new("not a hash".to_owned()),
//! #     tokens_revoked_before: None,
//! # })?;
//! let task = tasks.create(alice, NewTask::titled(Title::parse("Buy milk")?))?;
//! let page = tasks.list(alice, &TaskQuery::default(), None)?;
//! assert_eq!(page.items, vec![task]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Features
//!
//! - `testing` (off by default): `todo_core::testing`, fakes of the edge
//!   traits for tests and examples (a clock moved by hand, seeded
//!   randomness, tokens kept in a table). None is secure, so production
//!   builds leave it out; a test checks that no normal build turns it on.

#![deny(missing_docs)]

mod access;
mod account_export;
mod api_token;
mod auth;
mod change;
mod device;
mod email_verification;
mod error;
mod feed;
pub mod ical;
pub mod import;
mod live;
mod mail;
pub mod memory;
mod passkey;
mod password_reset;
mod ports;
mod precondition;
mod project;
mod project_service;
mod query;
mod random;
mod recurrence;
mod relay;
mod reminder;
mod second_factor;
mod secret;
mod session;
mod task;
mod task_service;
#[cfg(feature = "testing")]
pub mod testing;
mod time;
mod token;
mod user;
mod webhook;

pub use access::AccessGate;
pub use account_export::{AccountExport, AccountReader};
pub use api_token::{
    API_TOKEN_PREFIX, ApiTokenGrant, ApiTokenHash, ApiTokenName, ApiTokenRecord, ApiTokenSecret,
    DEFAULT_API_TOKEN_LIFETIME, DEFAULT_MAX_API_TOKENS, Grant, MAX_API_TOKEN_LIFETIME, Scope,
    Scopes,
};
pub use auth::{
    AccountPatch, AccountService, AuthLimits, AuthServices, AuthServicesBuilder, Credentials,
    MfaChallenge, MissingDependency, NewApiToken, OutgoingMail, PasskeyChallenge, Registration,
    RequestOrigin, ResetMail, SessionService, SignIn, TotpEnrolment, UserAdmin, UserRef,
    retry_after_seconds,
};
pub use change::{
    BAD_CURSOR, Change, ChangeCursor, ChangeKind, ChangeLimit, ChangeLog, ChangePage, CursorError,
    LogPosition, MAX_CHANGES_PER_OWNER, MAX_CHANGES_PER_PROJECT, MIN_CHANGES_KEPT_PER_PROJECT,
    Subject, TRIM_EVERY, trims_at,
};
pub use device::{DEVICE_TOKEN_TTL, DeviceToken};
pub use email_verification::{
    EMAIL_VERIFICATION_TTL, EmailToken, EmailTokenHash, EmailVerificationRecord,
};
pub use error::{
    BoxError, Error, HashError, RandomError, Result, StoreError, TokenError, TokenRejection,
    ValidationError, chain as error_chain,
};
pub use feed::{FeedToken, FeedTokenHash};
pub use live::{ChangeSubscription, Changed};
pub use mail::{BadLinkBase, LinkBase, Mail, MailError, Mailer};
pub use passkey::{
    CEREMONY_TTL, CeremonyKind, CeremonyRecord, ChallengeId, ChallengeIdHash, MAX_PASSKEYS,
    NewCredential, PasskeyCeremonies, PasskeyId, PasskeyName, PasskeyRecord, PasskeyRefusal,
    registration_key,
};
pub use password_reset::{PASSWORD_RESET_TTL, PasswordResetRecord, ResetToken, ResetTokenHash};
pub use ports::{
    AccessTokenSigner, AccessTokenVerifier, AuditEvent, AuditSink, BackoffPolicy, LoginBackoff,
    NoAudit, PasswordHasher, RateLimiter, RefreshTokenHasher, RefreshTokenStore, SecondFactorStore,
    Sha256, TaskInsert, TaskStore, TaskWrite, ThrottleKey, Unlimited, UserStore, Verification,
    client_key,
};
pub use precondition::Precondition;
pub use project::{
    Member, MemberPut, Project, ProjectAction, ProjectColor, ProjectId, ProjectName, ProjectRole,
    ProjectStore, Standing,
};
pub use project_service::{NewProject, ProjectLimits, ProjectPatch, ProjectService};
pub use query::{
    PAGE_BYTES, Page, PageLimit, ProjectCursor, SearchText, TaskCursor, TaskQuery, TaskSort,
    UserCursor,
};
pub use random::{Random, new_v7};
pub use recurrence::{Frequency, Recurrence, TimeZoneName};
pub use relay::{LeasedStream, RelayBatch, RelayService, RelayStore, RelayedStream};
pub use reminder::{Reminder, Reminders};
pub use second_factor::{
    HmacSha1, MFA_TOKEN_ATTEMPTS, MFA_TOKEN_TTL, MfaChallengeRecord, MfaToken, MfaTokenHash,
    RECOVERY_CODES, RecoveryCode, RecoveryCodeHash, SealError, SecondFactorAnswer, SecondFactors,
    SecretSealer, TOTP_DIGITS, TOTP_ENROLMENT_TTL, TOTP_STEP, TotpCode, TotpRecord, TotpSecret,
    step_of,
};
pub use session::{EndedSessions, MAX_LIVE_SESSIONS, SessionKind, SessionRecord, UserAgent};
pub use task::{
    Description, Label, Labels, NewTask, Priority, SEARCH_SEPARATOR, Series, SeriesId, Task,
    TaskId, TaskPatch, TaskVersion, Title, TreeRefusal, search_text,
};
pub use task_service::{TaskLimits, TaskService, Written};
pub use time::{Clock, Timestamp};
pub use token::{
    AccessClaims, Principal, RefreshToken, RefreshTokenHash, RefreshTokenRecord, SessionId,
    TokenPair, TokenPolicy,
};
pub use user::{
    Email, Password, PasswordHash, Role, User, UserChange, UserId, UserPatch, UserRecord, Username,
};
pub use webhook::{
    Delivery, DeliveryAttempt, EventFilter, Leased, Pending, SLOW_COOL_DOWN, TargetCheck, Webhook,
    WebhookId, WebhookPolicy, WebhookSecret, WebhookService, WebhookSettlement, WebhookStore,
    WebhookUrl,
};
