//! Mail the auth services send: a password-reset link, an address's
//! verification link. The core writes the message and the link; a
//! [`Mailer`] delivers it (the servers' is SMTP, with lettre).

use std::fmt;

use crate::time::Timestamp;
use crate::user::{Email, Username};

/// Delivers a message, blocking until the mail server took it or refused
/// it. The services call it off the async workers (as they do the store),
/// and never while a client waits for an answer that must not depend on
/// whether mail was sent (a reset asked for by login).
pub trait Mailer: Send + Sync + fmt::Debug {
    /// Hands `mail` to the mail server.
    ///
    /// # Errors
    ///
    /// [`MailError`] when it could not be handed over.
    fn send(&self, mail: &Mail) -> Result<(), MailError>;
}

/// A message could not be handed to the mail server.
#[derive(Debug, thiserror::Error)]
#[error("the mail was not sent")]
pub struct MailError(#[source] pub Box<dyn std::error::Error + Send + Sync>);

/// One message, to one address, as plain text and as HTML.
#[derive(Clone, PartialEq, Eq)]
pub struct Mail {
    /// The recipient.
    pub to: Email,
    /// The subject line.
    pub subject: String,
    /// The plain-text body.
    pub text: String,
    /// The HTML body (the same words, the link clickable).
    pub html: String,
}

impl fmt::Debug for Mail {
    // The bodies carry a secret link: never in a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mail")
            .field("to", &self.to)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

/// The origin the links in mail point to (`https://todo.example.com`):
/// configured, never taken from a request's `Host` (whoever asks for a
/// reset by login is not signed in, and could name any host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkBase(String);

/// Why a text is not a [`LinkBase`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the public URL must be https:// and a host (with an optional port), nothing else: {0:?}")]
pub struct BadLinkBase(String);

impl LinkBase {
    /// `https://` and a host with an optional port; a trailing `/` is
    /// dropped; no path, query, fragment or user part.
    ///
    /// # Errors
    ///
    /// [`BadLinkBase`] for anything else.
    pub fn parse(raw: &str) -> Result<Self, BadLinkBase> {
        let bad = || BadLinkBase(raw.to_owned());
        let rest = raw.strip_prefix("https://").ok_or_else(bad)?;
        let host = rest.strip_suffix('/').unwrap_or(rest);
        let ok = !host.is_empty()
            && host.len() <= 260
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
        if !ok {
            return Err(bad());
        }
        Ok(Self(format!("https://{host}")))
    }

    /// The page's address with `fragment` (`reset=…`): the token travels
    /// in the fragment, which no server, log or `Referer` sees.
    #[must_use]
    pub fn page_link(&self, fragment: &str) -> String {
        format!("{}/#{fragment}", self.0)
    }

    /// The origin, as given.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The host (and port) alone.
    #[must_use]
    pub fn host(&self) -> &str {
        self.0.strip_prefix("https://").unwrap_or(&self.0)
    }
}

/// When a link stops working, to the minute: `2026-12-06 22:31 UTC`.
fn until(at: Timestamp) -> String {
    let t = at.to_datetime();
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute()
    )
}

impl Mail {
    /// The password-reset message: the link and when it stops working.
    #[must_use]
    pub fn password_reset(to: Email, username: &Username, link: &str, expires: Timestamp) -> Self {
        let name = username.as_str();
        let expires = until(expires);
        Self {
            to,
            subject: "Reset your todo password".to_owned(),
            text: format!(
                "Someone asked to reset the password of the todo account {name}.\n\n\
                 To choose a new password, open this link (it works once, until {expires}):\n\n\
                 {link}\n\n\
                 Choosing a new password signs the account out everywhere.\n\
                 If you did not ask for this, ignore this message: your password stays as it is.\n"
            ),
            html: html_page(
                &format!(
                    "Someone asked to reset the password of the todo account <b>{}</b>.",
                    escape(name)
                ),
                link,
                "Choose a new password",
                &format!(
                    "The link works once, until {expires}. Choosing a new password signs the \
                     account out everywhere. If you did not ask for this, ignore this message: \
                     your password stays as it is."
                ),
            ),
        }
    }

    /// The address-verification message. It names no account: whoever
    /// registers chooses the username, and a verification can be sent to
    /// any address, so no text of theirs goes in it (review of session
    /// 27, 2).
    #[must_use]
    pub fn verify_email(to: Email, link: &str, expires: Timestamp) -> Self {
        let expires = until(expires);
        Self {
            to,
            subject: "Confirm your e-mail address for todo".to_owned(),
            text: format!(
                "A todo account was given this address.\n\n\
                 To confirm that it is yours, open this link (it works once, until {expires}):\n\n\
                 {link}\n\n\
                 A confirmed address can receive password-reset links.\n\
                 If this was not you, ignore this message.\n"
            ),
            html: html_page(
                "A todo account was given this address.",
                link,
                "Confirm this address",
                &format!(
                    "The link works once, until {expires}. A confirmed address can receive \
                     password-reset links. If this was not you, ignore this message."
                ),
            ),
        }
    }
}

fn html_page(opening: &str, link: &str, action: &str, closing: &str) -> String {
    let link = escape(link);
    format!(
        "<!doctype html>\n<html><body>\n<p>{opening}</p>\n\
         <p><a href=\"{link}\">{action}</a></p>\n\
         <p>{}</p>\n</body></html>\n",
        escape(closing)
    )
}

/// HTML-escapes text and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_base_is_an_https_origin_and_nothing_more() {
        let base = LinkBase::parse("https://todo.example.com/").unwrap();
        assert_eq!(
            base.page_link("reset=abc"),
            "https://todo.example.com/#reset=abc"
        );
        assert!(LinkBase::parse("https://[::1]:8443").is_ok());
        for bad in [
            "http://todo.example.com",
            "https://",
            "https://todo.example.com/path",
            "https://user@todo.example.com",
            "https://todo.example.com?x",
            "https://todo.example.com#x",
            "todo.example.com",
        ] {
            assert!(LinkBase::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn messages_carry_the_link_in_both_bodies_and_escape_html() {
        let to = Email::parse("alice@example.com").unwrap();
        let name = Username::parse("alice").unwrap();
        let link = "https://todo.example.com/#reset=a&b";
        let mail = Mail::password_reset(to, &name, link, Timestamp::UNIX_EPOCH);
        assert!(mail.text.contains(link));
        assert!(
            mail.html
                .contains("https://todo.example.com/#reset=a&amp;b")
        );
        assert!(!mail.html.contains("a&b"));
        assert!(!format!("{mail:?}").contains("reset="));
    }
}
