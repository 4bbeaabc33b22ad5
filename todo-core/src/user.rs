//! Users: ids, usernames, e-mail addresses, passwords and roles.

use std::fmt;

use unicode_normalization::UnicodeNormalization;
use zeroize::Zeroizing;

use crate::error::ValidationError;
use crate::time::Timestamp;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(::uuid::Uuid);

        impl $name {
            /// Wraps an id read back from storage or a token.
            #[must_use]
            pub const fn from_uuid(id: ::uuid::Uuid) -> Self {
                Self(id)
            }

            /// The UUID inside.
            #[must_use]
            pub const fn as_uuid(&self) -> &::uuid::Uuid {
                &self.0
            }

            /// Parses the hyphenated form (`01890a5d-ac96-774b-bcce-b302099a8057`),
            /// in either case; no other spelling is accepted.
            pub fn parse(raw: &str) -> Result<Self, $crate::ValidationError> {
                if raw.len() != 36 {
                    return Err($crate::ValidationError::Format { field: $field, what: "UUID" });
                }
                ::uuid::Uuid::try_parse(raw)
                    .map(Self)
                    .map_err(|_| $crate::ValidationError::Format { field: $field, what: "UUID" })
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                ::std::fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl ::std::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0.hyphenated())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::ValidationError;
            fn from_str(raw: &str) -> Result<Self, Self::Err> {
                Self::parse(raw)
            }
        }
    };
}
pub(crate) use uuid_id;

uuid_id!(
    /// A user's id (UUIDv7).
    UserId,
    "id"
);

/// A username: 3 to 32 characters of `a-z 0-9 _ . -`, case-folded to lower case.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Username(String);

impl Username {
    /// The shortest username.
    pub const MIN_CHARS: usize = 3;
    /// The longest username.
    pub const MAX_CHARS: usize = 32;

    /// Parses a username, folded to lower case so that `Alice` and `alice` are one user.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        const FIELD: &str = "username";
        let too_long = ValidationError::Length {
            field: FIELD,
            min: Self::MIN_CHARS,
            max: Self::MAX_CHARS,
        };
        // Bound the work before folding: no valid username is longer than this.
        if raw.len() > Self::MAX_CHARS * 4 {
            return Err(too_long);
        }
        let folded = raw.to_lowercase();
        let chars = folded.chars().count();
        if !(Self::MIN_CHARS..=Self::MAX_CHARS).contains(&chars) {
            return Err(too_long);
        }
        let allowed = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b);
        if !folded.bytes().all(allowed) {
            return Err(ValidationError::Charset {
                field: FIELD,
                allowed: "the letters a-z, digits and _ . -",
            });
        }
        Ok(Self(folded))
    }

    /// The normalized username.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Username({})", self.0)
    }
}

/// An e-mail address as mail can be sent to it: a local part of 1 to 64 of
/// RFC 5322's atom characters (ASCII letters, digits and
/// ``#$&'*+-/=?^_`{|}~``) in dot-separated runs, `@`, and a domain of
/// ASCII letters, digits and hyphens in dotted labels, the last not all
/// digits; 254 at most. Not quoted local parts, comments, address
/// literals, encoded words, relay routing (`%`, `!`) or non-ASCII
/// addresses: a mail library or a relay reads those as another address,
/// so that the mail would go elsewhere than the address shown (attacks of
/// session 27, F4 and N6).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    /// The longest address (RFC 5321's limit).
    pub const MAX_CHARS: usize = 254;

    /// Parses an address; refuses what cannot be one rather than checking it is deliverable.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let address = Self::from_stored(raw)?;
        let (local, domain) = raw.split_once('@').unwrap_or_default();
        let atom = |run: &str| {
            !run.is_empty()
                && run
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b))
        };
        let label = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        // (`=?…?=` is an encoded word to a mail reader, shown as other
        // text; `%` and `!` route through a relay to another host; an
        // all-numeric top label is an address, not a domain: attacks of
        // session 27, F4 and N6)
        let routed = local.contains("=?") || local.contains(['%', '!']);
        let tld_ok = domain
            .rsplit('.')
            .next()
            .is_some_and(|tld| tld.bytes().any(|b| b.is_ascii_alphabetic()));
        if local.split('.').all(atom) && !routed && domain.split('.').all(label) && tld_ok {
            Ok(address)
        } else {
            Err(ValidationError::Format {
                field: "email",
                what: "e-mail address",
            })
        }
    }

    /// An address as the store kept it, under the looser rules of earlier
    /// versions (one `@`, a dotted domain, no spaces or control
    /// characters): an account given one then still reads back. Mail to
    /// one that [`Email::parse`] refuses is not sent.
    pub fn from_stored(raw: &str) -> Result<Self, ValidationError> {
        const FIELD: &str = "email";
        let bad = ValidationError::Format {
            field: FIELD,
            what: "e-mail address",
        };
        if raw.len() > Self::MAX_CHARS * 4 || raw.chars().count() > Self::MAX_CHARS {
            return Err(ValidationError::Length {
                field: FIELD,
                min: 3,
                max: Self::MAX_CHARS,
            });
        }
        let Some((local, domain)) = raw.split_once('@') else {
            return Err(bad);
        };
        let clean = |s: &str| {
            !s.chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '@')
        };
        let domain_ok = domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && domain.chars().count() <= 253;
        if local.is_empty() || local.chars().count() > 64 || !clean(local) || !clean(domain) {
            return Err(bad);
        }
        if !domain_ok {
            return Err(bad);
        }
        Ok(Self(raw.to_owned()))
    }

    /// The address as given.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Email({})", self.0)
    }
}

/// A password: a secret that is zeroed when dropped and never printed.
///
/// It is NFKC-normalised, so that the same password typed on different
/// keyboards hashes alike.
#[derive(Clone)]
pub struct Password(Zeroizing<String>);

impl Password {
    /// The shortest password accepted.
    pub const MIN_CHARS: usize = 8;
    /// The longest password: bounds what hashing one costs.
    pub const MAX_CHARS: usize = 128;
    /// Longer input is refused before it is normalised or hashed. NFKC can
    /// merge characters, so this is looser than `MAX_CHARS` times four.
    pub const MAX_INPUT_BYTES: usize = 1024;

    /// A new password for `username`, held to every rule.
    pub fn new_for(raw: &str, username: &Username) -> Result<Self, ValidationError> {
        const FIELD: &str = "password";
        let length = ValidationError::Length {
            field: FIELD,
            min: Self::MIN_CHARS,
            max: Self::MAX_CHARS,
        };
        let password = Self::normalise(raw).ok_or_else(|| length.clone())?;
        let chars = password.0.chars().count();
        if !(Self::MIN_CHARS..=Self::MAX_CHARS).contains(&chars) {
            return Err(length);
        }
        if password.0.to_lowercase() == username.as_str() {
            return Err(ValidationError::PasswordIsUsername { field: FIELD });
        }
        Ok(password)
    }

    /// A password offered at login or for a check. Only the input size is
    /// held to the limit: a stored hash may predate today's rules.
    #[must_use]
    pub fn offered(raw: &str) -> Option<Self> {
        Self::normalise(raw)
    }

    fn normalise(raw: &str) -> Option<Self> {
        if raw.len() > Self::MAX_INPUT_BYTES {
            return None;
        }
        let mut normalised = Zeroizing::new(String::with_capacity(raw.len()));
        normalised.extend(raw.nfkc());
        Some(Self(normalised))
    }

    /// The normalised secret, for a hasher.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// A stored password hash (a PHC string). Not printed, though not secret like
/// a password: it is what an attacker who steals the database cracks.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    /// Wraps a PHC string made by a [`crate::PasswordHasher`] or read from storage.
    #[must_use]
    pub fn new(phc: String) -> Self {
        Self(phc)
    }

    /// The PHC string, for storage and verification.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(<redacted>)")
    }
}

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Acts on their own tasks and account.
    User,
    /// Also manages other users.
    Admin,
}

impl Role {
    /// The role as stored and shown (`"user"`, `"admin"`).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Admin => "admin",
        }
    }

    /// Parses `user` or `admin`.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        match raw {
            "user" => Ok(Self::User),
            "admin" => Ok(Self::Admin),
            _ => Err(ValidationError::Format {
                field: "role",
                what: "role (user or admin)",
            }),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A user as the API shows one: never a password or hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The user's id.
    pub id: UserId,
    /// Their username.
    pub username: Username,
    /// Their email address, if they gave one.
    pub email: Option<Email>,
    /// Whether they proved the address theirs by its link; a change of
    /// address unverifies it.
    pub email_verified: bool,
    /// Their role.
    pub role: Role,
    /// A disabled user cannot log in, and their tokens are refused.
    pub disabled: bool,
    /// When they were created.
    pub created_at: Timestamp,
    /// When they last changed.
    pub updated_at: Timestamp,
}

/// A user as stored: with the password hash and the revocation mark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// What the API shows.
    pub user: User,
    /// The hash of their password.
    pub password_hash: PasswordHash,
    /// Access tokens issued (in whole seconds) before this instant are
    /// refused by validation: set when the password changes.
    pub tokens_revoked_before: Option<Timestamp>,
}

/// The fields of a stored user one write changes; `None` leaves a field as
/// it is, so concurrent changes to other fields are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserChange {
    /// A new address; `Some(None)` removes it.
    pub email: Option<Option<Email>>,
    /// A new role.
    pub role: Option<Role>,
    /// Disable or enable.
    pub disabled: Option<bool>,
    /// Moves the revocation cut: tokens issued before it are refused.
    pub revoke_before: Option<Timestamp>,
    /// The time of the change.
    pub updated_at: Timestamp,
}

impl UserChange {
    /// A change of nothing but `updated_at`.
    #[must_use]
    pub fn at(updated_at: Timestamp) -> Self {
        Self {
            email: None,
            role: None,
            disabled: None,
            revoke_before: None,
            updated_at,
        }
    }
}

/// An admin's change to a user; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserPatch {
    /// Disable or enable.
    pub disabled: Option<bool>,
    /// A new role.
    pub role: Option<Role>,
    /// `Some(None)` removes the address.
    pub email: Option<Option<Email>>,
}
