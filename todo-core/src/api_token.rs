//! API tokens: what a script presents instead of a login.
//!
//! An API token is a session of its own ([`SessionKind::ApiToken`]): it is
//! listed among the user's sessions and ended like one, and the access gate
//! refuses it on every instance within a second of its end, as it refuses
//! the access tokens of an ended login. Unlike a login it carries no
//! refresh token and acts by itself, as a bearer token, limited to its
//! [`Scopes`] and, if it names one, to one project. Only its SHA-256 is
//! stored; the secret is shown once, at creation.

use std::fmt;
use std::time::Duration;

use zeroize::Zeroizing;

use crate::error::{RandomError, ValidationError};
use crate::ports::Sha256;
use crate::project::ProjectId;
use crate::random::Random;
use crate::session::SessionRecord;

/// What every API token starts with: a scanner for leaked secrets (and a
/// reader of a log) knows one when it sees it, and the servers tell it from
/// an access token without trying to parse it.
pub const API_TOKEN_PREFIX: &str = "todo_pat_";

/// The longest an API token may live (API.md: at most a year).
pub const MAX_API_TOKEN_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);

/// How long an API token lives when its creator names no expiry.
pub const DEFAULT_API_TOKEN_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

/// The most live API tokens a user keeps by default (a quota: one more is
/// refused, not made by ending an old one, which a script may still use).
pub const DEFAULT_MAX_API_TOKENS: usize = 50;

/// The secret of an API token: [`API_TOKEN_PREFIX`] and 256 random bits in
/// URL-safe base64, wiped from memory when dropped, never printed (nor
/// compared: only its digest is looked up).
#[derive(Clone)]
pub struct ApiTokenSecret(Zeroizing<String>);

/// What the store keeps of an [`ApiTokenSecret`]: its SHA-256, in hex.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ApiTokenHash(String);

impl ApiTokenSecret {
    /// A new secret of 256 random bits.
    pub fn generate(random: &dyn Random) -> Result<Self, RandomError> {
        crate::secret::generate(random, API_TOKEN_PREFIX).map(Self)
    }

    /// A bearer token that has the form of an API token; `None` for text
    /// that cannot be one (without a lookup).
    #[must_use]
    pub fn parse(raw: &str) -> Option<Self> {
        let random = raw.strip_prefix(API_TOKEN_PREFIX)?;
        crate::secret::is_canonical(random).then(|| Self(Zeroizing::new(raw.to_owned())))
    }

    /// Whether a bearer token claims to be an API token (by its prefix).
    #[must_use]
    pub fn is_claimed_by(raw: &str) -> bool {
        raw.starts_with(API_TOKEN_PREFIX)
    }

    /// The secret, to show its creator once; never log it.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What the store keeps of it: its SHA-256, in hex.
    #[must_use]
    pub fn digest(&self, sha: &dyn Sha256) -> ApiTokenHash {
        ApiTokenHash(crate::secret::sha256_hex(sha, &[self.0.as_bytes()]))
    }
}

impl fmt::Debug for ApiTokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiTokenSecret(<redacted>)")
    }
}

impl ApiTokenHash {
    /// A hash as the store keeps it.
    #[must_use]
    pub fn new(hex: String) -> Self {
        Self(hex)
    }

    /// The hash in hex.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One right an API token may be given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// List and read tasks.
    TasksRead,
    /// Create, change and delete tasks.
    TasksWrite,
    /// List and read projects and their members.
    ProjectsRead,
    /// Create, change and delete projects, and share them.
    ProjectsWrite,
    /// Read the change log (`/v1/changes`, `/v1/events`).
    EventsRead,
}

impl Scope {
    /// Every scope, in the order the API lists them.
    pub const ALL: [Self; 5] = [
        Self::TasksRead,
        Self::TasksWrite,
        Self::ProjectsRead,
        Self::ProjectsWrite,
        Self::EventsRead,
    ];

    /// Its name in the API.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::TasksRead => "tasks:read",
            Self::TasksWrite => "tasks:write",
            Self::ProjectsRead => "projects:read",
            Self::ProjectsWrite => "projects:write",
            Self::EventsRead => "events:read",
        }
    }

    /// The scope with this name.
    #[must_use]
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    const fn bit(self) -> u8 {
        match self {
            Self::TasksRead => 1,
            Self::TasksWrite => 2,
            Self::ProjectsRead => 4,
            Self::ProjectsWrite => 8,
            Self::EventsRead => 16,
        }
    }
}

/// A set of scopes, never empty once parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Scopes(u8);

impl Scopes {
    /// The scopes named in a request, at least one, each known and named
    /// once at most (a repeat is harmless and ignored).
    pub fn parse<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Self, ValidationError> {
        let mut scopes = Self(0);
        for name in names {
            let scope = Scope::parse(name).ok_or(ValidationError::Format {
                field: "scopes",
                what: "list of tasks:read, tasks:write, projects:read, projects:write, events:read",
            })?;
            scopes.0 |= scope.bit();
        }
        if scopes.0 == 0 {
            return Err(ValidationError::Blank { field: "scopes" });
        }
        Ok(scopes)
    }

    /// The scopes as stored: their names, space-separated (as OAuth does).
    #[must_use]
    pub fn to_stored(self) -> String {
        self.iter().map(Scope::as_str).collect::<Vec<_>>().join(" ")
    }

    /// The scopes stored as [`Self::to_stored`] wrote them; `None` if they
    /// are not.
    #[must_use]
    pub fn from_stored(stored: &str) -> Option<Self> {
        Self::parse(stored.split(' ')).ok()
    }

    /// Whether `scope` is among them.
    #[must_use]
    pub const fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    /// The scopes, in the order the API lists them.
    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.contains(*s))
    }
}

/// The name its creator gave an API token: 1 to 100 characters, trimmed,
/// no control characters (it is shown back in lists).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiTokenName(String);

impl ApiTokenName {
    /// The most characters a name has.
    pub const MAX_CHARS: usize = 100;

    /// A name as a request gives it.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        shown_name(raw, Self::MAX_CHARS).map(Self)
    }

    /// The name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A name a user gives something of theirs, shown back in lists (`name`):
/// 1 to `max` characters once trimmed, no control or invisible characters.
pub(crate) fn shown_name(raw: &str, max: usize) -> Result<String, ValidationError> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(ValidationError::Blank { field: "name" });
    }
    if name.chars().count() > max {
        return Err(ValidationError::Length {
            field: "name",
            min: 1,
            max,
        });
    }
    if name
        .chars()
        .any(|c| c.is_control() || crate::session::invisible(c))
    {
        return Err(ValidationError::Format {
            field: "name",
            what: "name without control characters",
        });
    }
    Ok(name.to_owned())
}

/// What an API token may do, beside acting for its user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiTokenGrant {
    /// What it may do.
    pub scopes: Scopes,
    /// The one project it may touch, if it is limited to one.
    pub project: Option<ProjectId>,
}

impl ApiTokenGrant {
    /// A grant a user may ask for. The change log carries whole tasks,
    /// projects and members, of every project: `events:read` comes with
    /// `tasks:read` and `projects:read` (it would otherwise read what they
    /// withhold), and never with a project (the log is not cut by one).
    pub fn new(scopes: Scopes, project: Option<ProjectId>) -> Result<Self, ValidationError> {
        if scopes.contains(Scope::EventsRead) {
            let reads = scopes.contains(Scope::TasksRead) && scopes.contains(Scope::ProjectsRead);
            if !reads || project.is_some() {
                return Err(ValidationError::Format {
                    field: "scopes",
                    what: "scope list: events:read needs tasks:read and projects:read, and no project",
                });
            }
        }
        Ok(Self { scopes, project })
    }

    /// Whether it may read the change log (`events:read` with what the log
    /// carries, and no project).
    #[must_use]
    pub const fn reads_events(self) -> bool {
        self.scopes.contains(Scope::EventsRead)
            && self.scopes.contains(Scope::TasksRead)
            && self.scopes.contains(Scope::ProjectsRead)
            && self.project.is_none()
    }
}

/// An API token as stored: its session, and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiTokenRecord {
    /// Its session ([`crate::SessionKind::ApiToken`]): its id, user,
    /// creation, last use, expiry and end.
    pub session: SessionRecord,
    /// The secret's digest.
    pub hash: ApiTokenHash,
    /// What its creator called it.
    pub name: ApiTokenName,
    /// What it may do.
    pub grant: ApiTokenGrant,
}

/// What a caller's credentials allow, beside who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// A login's access token: everything its user may do.
    Login,
    /// An API token: what its scopes and project allow.
    ApiToken(ApiTokenGrant),
}

impl Grant {
    /// Whether it allows `scope` (a login allows every scope). For
    /// `events:read`, only with what the change log carries
    /// ([`ApiTokenGrant::reads_events`]), however the grant was made.
    #[must_use]
    pub const fn allows(self, scope: Scope) -> bool {
        match (self, scope) {
            (Self::Login, _) => true,
            (Self::ApiToken(grant), Scope::EventsRead) => grant.reads_events(),
            (Self::ApiToken(grant), scope) => grant.scopes.contains(scope),
        }
    }

    /// The one project it is limited to, if any.
    #[must_use]
    pub const fn project(self) -> Option<ProjectId> {
        match self {
            Self::Login => None,
            Self::ApiToken(grant) => grant.project,
        }
    }

    /// Whether it is a login's.
    #[must_use]
    pub const fn is_login(self) -> bool {
        matches!(self, Self::Login)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::SeededRandom;

    #[test]
    fn a_secret_parses_back_and_nothing_else_does() {
        let secret = ApiTokenSecret::generate(&SeededRandom::new(1)).unwrap();
        assert!(secret.expose().starts_with(API_TOKEN_PREFIX));
        assert_eq!(
            ApiTokenSecret::parse(secret.expose()).map(|s| s.expose().to_owned()),
            Some(secret.expose().to_owned())
        );
        let random = &secret.expose()[API_TOKEN_PREFIX.len()..];
        assert!(ApiTokenSecret::parse(random).is_none(), "no prefix");
        assert!(ApiTokenSecret::parse(&format!("{}x", secret.expose())).is_none());
        assert!(ApiTokenSecret::parse("todo_pat_").is_none());
        assert!(!format!("{secret:?}").contains(random));
    }

    #[test]
    fn scopes_parse_known_names_only_and_round_trip() {
        let scopes = Scopes::parse(["tasks:read", "events:read", "tasks:read"]).unwrap();
        assert!(scopes.contains(Scope::TasksRead) && scopes.contains(Scope::EventsRead));
        assert!(!scopes.contains(Scope::TasksWrite));
        assert_eq!(scopes.to_stored(), "tasks:read events:read");
        assert_eq!(Scopes::from_stored(&scopes.to_stored()), Some(scopes));
        assert!(Scopes::parse(["tasks:admin"]).is_err());
        assert!(Scopes::parse(["Tasks:Read"]).is_err());
        assert!(Scopes::parse(std::iter::empty::<&str>()).is_err());
    }

    #[test]
    fn a_login_allows_every_scope_and_a_token_only_its_own() {
        let grant = Grant::ApiToken(ApiTokenGrant {
            scopes: Scopes::parse(["projects:read"]).unwrap(),
            project: None,
        });
        assert!(grant.allows(Scope::ProjectsRead));
        assert!(!grant.allows(Scope::ProjectsWrite));
        assert!(Scope::ALL.into_iter().all(|s| Grant::Login.allows(s)));
    }

    #[test]
    fn the_change_log_is_granted_only_with_what_it_carries() {
        let scopes = |names: &[&str]| Scopes::parse(names.iter().copied()).unwrap();
        let all = scopes(&["events:read", "tasks:read", "projects:read"]);
        assert!(ApiTokenGrant::new(all, None).unwrap().reads_events());
        assert!(ApiTokenGrant::new(scopes(&["events:read"]), None).is_err());
        assert!(ApiTokenGrant::new(scopes(&["events:read", "tasks:read"]), None).is_err());
        let project = ProjectId::inbox_of(crate::UserId::from_uuid(uuid::Uuid::from_u128(7)));
        assert!(ApiTokenGrant::new(all, Some(project)).is_err());
        let limited = ApiTokenGrant::new(scopes(&["tasks:read"]), Some(project)).unwrap();
        assert!(!limited.reads_events());
    }

    #[test]
    fn names_are_trimmed_bounded_and_printable() {
        assert_eq!(
            ApiTokenName::parse("  backup  ").unwrap().as_str(),
            "backup"
        );
        assert!(ApiTokenName::parse(" ").is_err());
        assert!(ApiTokenName::parse(&"x".repeat(101)).is_err());
        assert!(ApiTokenName::parse("a\u{202e}b").is_err());
        assert!(ApiTokenName::parse("a\nb").is_err());
    }
}
