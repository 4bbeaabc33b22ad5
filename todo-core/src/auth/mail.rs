//! What the auth services mail: a password-reset link asked for by login
//! (by anyone, so nothing in the answer or its timing may tell whether the
//! account exists), and a link that verifies the caller's address.

use std::net::IpAddr;
use std::sync::Arc;

use super::{AccountService, SessionService, Shared};
use crate::email_verification::{EMAIL_VERIFICATION_TTL, EmailToken, EmailVerificationRecord};
use crate::error::{Error, Result, StoreError, ValidationError};
use crate::mail::{LinkBase, Mail, Mailer};
use crate::password_reset::{PASSWORD_RESET_TTL, PasswordResetRecord, ResetToken};
use crate::ports::AuditEvent;
use crate::token::Principal;
use crate::user::{Email, UserRecord, Username};

/// Accounts one address may receive reset links for at once.
const ACCOUNTS_PER_ADDRESS: usize = 5;

/// How the services send mail: the mailer, and the origin its links
/// point to.
#[derive(Clone, Debug)]
pub(crate) struct Outbox {
    pub(crate) mailer: Arc<dyn Mailer>,
    pub(crate) links: LinkBase,
}

impl Shared {
    /// The outbox, when mail is configured and links can be digested.
    fn outbox(&self) -> Result<(&Outbox, &dyn crate::ports::Sha256)> {
        match (&self.outbox, &self.sha256) {
            (Some(outbox), Some(sha)) => Ok((outbox, &**sha)),
            _ => Err(Error::NoMail),
        }
    }

    /// Takes one mail of `purpose` from the recipient mailbox's allowance
    /// (whatever accounts give it: several accounts given one victim's
    /// address must not multiply what it receives, review of session 27,
    /// 2), then one from the account's. Each purpose has its own: a
    /// stranger who names a victim's address to have it verified must not
    /// spend what the victim's resets draw on (second review, 2).
    fn mail_allowance(
        &self,
        record: &UserRecord,
        to: &Email,
        client: Option<IpAddr>,
        purpose: Purpose,
    ) -> Result<()> {
        let throttled = |action| {
            move |retry_after| {
                self.audit(&AuditEvent::Throttled {
                    action,
                    username: Some(&record.user.username),
                    client,
                });
                Error::RateLimited { retry_after }
            }
        };
        let (name, by_address, by_account) = match purpose {
            Purpose::Reset => ("reset", "reset_mail_to_address", "reset_mail_to_account"),
            Purpose::Verify => ("verify", "verify_mail_to_address", "verify_mail_to_account"),
        };
        self.limits
            .mail_per_address
            .check(&format!("{name}:{}", mailbox(to)))
            .map_err(throttled(by_address))?;
        self.limits
            .mail_per_account
            .check(&format!("{name}:{}", record.user.id))
            .map_err(throttled(by_account))
    }

    fn send(
        &self,
        mailer: &dyn Mailer,
        record: &UserRecord,
        mail: &Mail,
        client: Option<IpAddr>,
        purpose: &'static str,
    ) -> Result<()> {
        let user = record.user.id;
        match mailer.send(mail) {
            Ok(()) => {
                self.audit(&AuditEvent::Mailed {
                    user,
                    purpose,
                    client,
                });
                Ok(())
            }
            Err(e) => {
                let reason = crate::error::chain(&e);
                self.audit(&AuditEvent::MailFailed {
                    user,
                    purpose,
                    client,
                    reason: &reason,
                });
                Err(Error::MailFailed(e))
            }
        }
    }
}

/// What a message is for: each has its own allowances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Reset,
    Verify,
}

/// The mailbox an address reaches, as allowances count it: lower-cased,
/// without a `+tag`, and for Gmail without dots (`V.ictim+1@Gmail.com`
/// is `victim@gmail.com`): tagged spellings of one mailbox must not each
/// get an allowance of their own (second review, 1).
fn mailbox(to: &Email) -> String {
    let lower = to.as_str().to_ascii_lowercase();
    let (local, domain) = lower.split_once('@').unwrap_or((&lower, ""));
    let local = local.split('+').next().unwrap_or(local);
    let local = if matches!(domain, "gmail.com" | "googlemail.com") {
        local.replace('.', "")
    } else {
        local.to_owned()
    };
    format!("{local}@{domain}")
}

/// Whether mail can be sent to `to` as it is written: an address stored
/// by an earlier version under looser rules may not be one
/// ([`Email::parse`] is today's rule).
fn mailable(to: &Email) -> bool {
    Email::parse(to.as_str()).is_ok()
}

/// A verification link that cannot be used, whatever the reason.
fn dead_link() -> Error {
    Error::Invalid(vec![ValidationError::Format {
        field: "token",
        what: "verification link (it may have been used or have expired)",
    }])
}

impl SessionService {
    /// Asks for a password-reset link by mail for the account `login`
    /// names (a username, or an address). Only what does not depend on the
    /// account happens here: the client address's limit (as for logins),
    /// and whether this server sends mail at all ([`Error::NoMail`]). The
    /// rest (finding the account, the link, the mail) is the returned
    /// [`ResetMail`]'s [`send`](ResetMail::send), for the caller to run
    /// after answering, so that neither the answer nor its timing says
    /// whether the account exists.
    pub fn password_reset_by_mail(&self, client: Option<IpAddr>, login: &str) -> Result<ResetMail> {
        let shared = self.shared();
        shared.outbox()?;
        shared.client_allowance(client, "password_reset_mail")?;
        Ok(ResetMail {
            shared: Arc::clone(shared),
            login: login.trim().to_owned(),
            client,
        })
    }

    /// Verifies the address a link was mailed to, once: the link dies,
    /// and the account's address is marked verified if it is still the
    /// one the link was sent to. Limited per client address like logins;
    /// one answer for every link that cannot be used.
    pub fn verify_email(&self, client: Option<IpAddr>, token: &str) -> Result<()> {
        let shared = self.shared();
        shared.client_allowance(client, "verify_email")?;
        let Some(sha) = shared.sha256.as_ref() else {
            return Err(dead_link());
        };
        let token = EmailToken::parse(token).ok_or_else(dead_link)?;
        let user = shared
            .users
            .use_email_verification(&token.digest(&**sha), shared.clock.now())?
            .ok_or_else(dead_link)?;
        shared.audit(&AuditEvent::EmailVerified { user, client });
        Ok(())
    }
}

/// The account-dependent part of a reset asked for by login (see
/// [`SessionService::password_reset_by_mail`]).
#[must_use = "nothing is mailed until it is sent"]
pub struct ResetMail {
    shared: Arc<Shared>,
    login: String,
    /// Who asked (for the audit log).
    client: Option<IpAddr>,
}

impl std::fmt::Debug for ResetMail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResetMail").finish_non_exhaustive()
    }
}

impl ResetMail {
    /// Finds the accounts `login` names (by username: the one, if its
    /// address is verified; by address: those whose verified address it is,
    /// at most five), and mails each enabled one a fresh link (replacing
    /// any older one), within the account's mail allowance. Blocking: it
    /// reads the store and talks to the mail server. Returns how many
    /// mails were sent, for tests; the client is never told.
    pub fn send(self) -> Result<usize> {
        let shared = &*self.shared;
        let (outbox, sha) = shared.outbox()?;
        let accounts = if self.login.contains('@') {
            match Email::parse(&self.login) {
                Ok(email) => shared
                    .users
                    .find_users_by_verified_email(&email, ACCOUNTS_PER_ADDRESS)?,
                Err(_) => Vec::new(),
            }
        } else {
            match Username::parse(&self.login) {
                Ok(name) => shared
                    .users
                    .find_user_by_username(&name)?
                    .into_iter()
                    .collect(),
                Err(_) => Vec::new(),
            }
        };
        let mut sent = 0;
        for record in accounts {
            let Some(to) = record.user.email.clone() else {
                continue;
            };
            if !record.user.email_verified || record.user.disabled || !mailable(&to) {
                continue;
            }
            if shared
                .mail_allowance(&record, &to, self.client, Purpose::Reset)
                .is_err()
            {
                continue;
            }
            let now = shared.clock.now();
            let token = ResetToken::generate(&*shared.random)?;
            let expires_at = now.saturating_add(PASSWORD_RESET_TTL);
            let link = PasswordResetRecord {
                hash: token.digest(sha),
                user_id: record.user.id,
                created_at: now,
                expires_at,
                used_at: None,
            };
            match shared.users.create_password_reset(&link) {
                Ok(()) => {}
                Err(StoreError::MissingReference(_)) => continue,
                Err(e) => return Err(e.into()),
            }
            let url = outbox.links.page_link(&format!("reset={}", token.expose()));
            let mail = Mail::password_reset(to, &record.user.username, &url, expires_at);
            // (a refused mail is in the audit log, with the mail server's words)
            if shared
                .send(
                    &*outbox.mailer,
                    &record,
                    &mail,
                    self.client,
                    "password_reset",
                )
                .is_ok()
            {
                sent += 1;
            }
        }
        Ok(sent)
    }
}

/// A message ready to go (see
/// [`AccountService::request_email_verification`]).
#[must_use = "nothing is mailed until it is sent"]
pub struct OutgoingMail {
    shared: Arc<Shared>,
    record: UserRecord,
    mail: Mail,
    /// Who asked (for the audit log).
    client: Option<IpAddr>,
    purpose: &'static str,
}

impl std::fmt::Debug for OutgoingMail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutgoingMail")
            .field("purpose", &self.purpose)
            .finish_non_exhaustive()
    }
}

impl OutgoingMail {
    /// Hands the message to the mail server (blocking; audited either
    /// way): [`Error::MailFailed`] when it is refused.
    pub fn send(self) -> Result<()> {
        let (outbox, _) = self.shared.outbox()?;
        self.shared.send(
            &*outbox.mailer,
            &self.record,
            &self.mail,
            self.client,
            self.purpose,
        )
    }
}

impl AccountService {
    /// Makes a link that verifies the caller's address (valid
    /// [`EMAIL_VERIFICATION_TTL`], once; a newer link replaces an older
    /// one), within the account's and the address's mail allowance, and
    /// returns the message for the caller to send: the mail server is
    /// not waited for here (a slow one would hold the request, attack of
    /// session 27, F3).
    /// Each request also counts against the client address's allowance of
    /// registrations: an account costs as much as a verification mail, so
    /// one address cannot send more by making accounts (second review, 1).
    pub fn request_email_verification(
        &self,
        client: Option<IpAddr>,
        principal: &Principal,
    ) -> Result<OutgoingMail> {
        super::require_login(principal)?;
        let shared = self.shared();
        let (outbox, sha) = shared.outbox()?;
        let record = shared.current_user(principal.user_id)?;
        let Some(to) = record.user.email.clone() else {
            return Err(Error::Conflict("the account has no e-mail address"));
        };
        if record.user.email_verified {
            return Err(Error::Conflict("the address is already verified"));
        }
        if !mailable(&to) {
            return Err(Error::Conflict(
                "mail cannot be sent to the account's address as it is written: give it a new one",
            ));
        }
        shared.client_limit(
            &*shared.limits.register_per_client,
            client,
            "verify_email_request",
            Some(&record.user.username),
        )?;
        shared.mail_allowance(&record, &to, client, Purpose::Verify)?;
        let now = shared.clock.now();
        let token = EmailToken::generate(&*shared.random)?;
        let expires_at = now.saturating_add(EMAIL_VERIFICATION_TTL);
        let link = EmailVerificationRecord {
            hash: token.digest(sha),
            user_id: record.user.id,
            email: to.clone(),
            created_at: now,
            expires_at,
        };
        match shared.users.create_email_verification(&link) {
            Ok(()) => {}
            Err(StoreError::MissingReference(_)) => return Err(Error::NotFound),
            Err(e) => return Err(e.into()),
        }
        let url = outbox
            .links
            .page_link(&format!("verify-email={}", token.expose()));
        let mail = Mail::verify_email(to, &url, expires_at);
        Ok(OutgoingMail {
            shared: Arc::clone(self.shared()),
            record,
            mail,
            client,
            purpose: "verify_email",
        })
    }
}
