//! What callers hand the session and admin services: a registration and a
//! login attempt, parsed.

use crate::device::DeviceToken;
use crate::error::ValidationError;
use crate::session::UserAgent;
use crate::user::{Email, Password, Username};

/// A registration, parsed: every field valid.
#[derive(Debug, Clone)]
pub struct Registration {
    /// The name to sign in with (folded to lower case).
    pub username: Username,
    /// The password, already checked against the username.
    pub password: Password,
    /// An e-mail address, if one was given.
    pub email: Option<Email>,
}

impl Registration {
    /// Parses the three fields, reporting every invalid one.
    ///
    /// # Errors
    ///
    /// Every field that is not valid, in the order username, email, password.
    pub fn parse(
        username: &str,
        password: &str,
        email: Option<&str>,
    ) -> std::result::Result<Self, Vec<ValidationError>> {
        let mut errors = Vec::new();
        let username = Username::parse(username).map_err(|e| errors.push(e)).ok();
        let email = match email.map(Email::parse) {
            Some(Err(e)) => {
                errors.push(e);
                None
            }
            Some(Ok(email)) => Some(email),
            None => None,
        };
        let password = match &username {
            Some(username) => Password::new_for(password, username),
            // Still check the password on its own, to report both fields at once.
            None => Username::parse("placeholder-user")
                .and_then(|placeholder| Password::new_for(password, &placeholder)),
        };
        let password = password.map_err(|e| errors.push(e)).ok();
        match (username, password) {
            (Some(username), Some(password)) if errors.is_empty() => Ok(Self {
                username,
                password,
                email,
            }),
            _ => Err(errors),
        }
    }
}

/// A login attempt as offered: fields that cannot be valid are `None`, and
/// fail like a wrong password.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The username offered, if it can be one.
    pub username: Option<Username>,
    /// The password offered, unless it is too long to be anyone's.
    pub password: Option<Password>,
    /// A device token from an earlier login, if the client has one.
    pub device: Option<DeviceToken>,
    /// The client's `User-Agent`, shown among the user's sessions.
    pub user_agent: Option<UserAgent>,
}

impl Credentials {
    /// The username and password as offered, without a device token.
    #[must_use]
    pub fn offered(username: &str, password: &str) -> Self {
        Self {
            username: Username::parse(username).ok(),
            password: Password::offered(password),
            device: None,
            user_agent: None,
        }
    }

    /// With the device token a client presents (ignored when malformed).
    #[must_use]
    pub fn with_device(mut self, raw: Option<&str>) -> Self {
        self.device = raw.and_then(DeviceToken::parse);
        self
    }

    /// With the client's `User-Agent` header, made safe to show.
    #[must_use]
    pub fn with_user_agent(mut self, raw: Option<&str>) -> Self {
        self.user_agent = raw.and_then(UserAgent::from_header);
        self
    }
}
