//! The core of todo: domain types that can only exist valid, the business
//! rules of the auth and task services, and the traits at the edges (stores,
//! password hasher, token signer and verifier, rate limiter, clock,
//! randomness, audit log).
//!
//! This crate does no I/O. It depends on no database, HTTP, async runtime or
//! crypto crate (`tests/dependencies.rs` holds that line); `todo-store` and
//! `todo-auth` implement its traits.

mod access;
mod auth;
mod device;
mod error;
pub mod memory;
mod ports;
mod query;
mod random;
mod task;
mod task_service;
pub mod testing;
mod time;
mod token;
mod user;

pub use access::AccessGate;
pub use auth::{
    AccountPatch, AccountService, AuthLimits, AuthServices, AuthServicesBuilder, Credentials,
    MissingDependency, Registration, SessionService, UserAdmin, UserRef, retry_after_seconds,
};
pub use device::{DEVICE_TOKEN_TTL, DeviceToken};
pub use error::{
    BoxError, Error, HashError, RandomError, Result, StoreError, TokenError, TokenRejection,
    ValidationError,
};
pub use ports::{
    AccessTokenSigner, AccessTokenVerifier, AuditEvent, AuditSink, BackoffPolicy, LoginBackoff,
    NoAudit, PasswordHasher, RateLimiter, RefreshTokenHasher, RefreshTokenStore, TaskStore,
    ThrottleKey, Unlimited, UserStore, Verification,
};
pub use query::{Page, PageLimit, SearchText, TaskCursor, TaskQuery, TaskSort, UserCursor};
pub use random::{Random, new_v7};
pub use task::{
    Description, Label, Labels, NewTask, Priority, SEARCH_SEPARATOR, Task, TaskId, TaskPatch,
    TaskVersion, Title, search_text,
};
pub use task_service::{TaskLimits, TaskService};
pub use time::{Clock, Timestamp};
pub use token::{
    AccessClaims, FamilyId, Principal, RefreshToken, RefreshTokenHash, RefreshTokenRecord,
    TokenPair, TokenPolicy,
};
pub use user::{
    Email, Password, PasswordHash, Role, User, UserChange, UserId, UserPatch, UserRecord, Username,
};
