//! Second factors: a TOTP authenticator enrolled, confirmed and removed by
//! its user (or removed by an administrator), the two-step login, and the
//! check of a code that every one of them shares.
//!
//! Every code, wherever it is offered, is counted against one throttle of
//! the account's own ([`ThrottleKey::SecondFactor`]): a login's second
//! step, a confirmation and a removal cannot be played against each other
//! for more guesses. A code is accepted once: its step is taken in the
//! store, atomically, and an older or equal one is refused.

use std::net::IpAddr;
use std::sync::Arc;

use zeroize::Zeroizing;

use super::{AccountService, SessionService, Shared, UserAdmin, UserRef};
use crate::device::DeviceToken;
use crate::error::{Error, Result, StoreError};
use crate::ports::{AuditEvent, ThrottleKey};
use crate::second_factor::{
    HmacSha1, MFA_TOKEN_ATTEMPTS, MFA_TOKEN_TTL, MfaChallengeRecord, MfaToken, RECOVERY_CODES,
    RecoveryCode, SecondFactorAnswer, SecondFactors, SecretSealer, TOTP_ENROLMENT_TTL, TotpCode,
    TotpRecord, TotpSecret,
};
use crate::session::UserAgent;
use crate::token::{Principal, RefreshTokenHash, TokenPair};
use crate::user::UserRecord;

/// What offers second factors: the key secrets are sealed under, the
/// HMAC the codes are computed with, and the name authenticator apps show.
pub(crate) struct Mfa {
    pub(crate) sealer: Arc<dyn SecretSealer>,
    pub(crate) hmac: Arc<dyn HmacSha1>,
    pub(crate) issuer: String,
}

/// What a password sign-in answers.
#[derive(Debug)]
pub enum SignIn {
    /// Signed in: the account has no second factor.
    Tokens(TokenPair),
    /// The password matched; the account's second factor is next
    /// ([`SessionService::complete_sign_in`]).
    SecondFactor(MfaChallenge),
}

/// A two-step login waiting for its second factor.
#[derive(Debug)]
pub struct MfaChallenge {
    /// The token the second step names: single-use, for
    /// [`MFA_TOKEN_ATTEMPTS`] codes, within [`MFA_TOKEN_TTL`].
    pub token: MfaToken,
    /// The methods the second step takes (`"totp"`, `"recovery_code"`).
    pub methods: Vec<&'static str>,
    /// Seconds until the token expires.
    pub expires_in: u64,
}

/// A TOTP enrolment begun: what the user's authenticator app takes.
#[derive(Debug)]
pub struct TotpEnrolment {
    /// The secret (to type in, in base32).
    pub secret: TotpSecret,
    /// The `otpauth://` URI (to scan).
    pub uri: Zeroizing<String>,
}

impl Shared {
    fn mfa(&self) -> Result<&Mfa> {
        self.mfa.as_ref().ok_or(Error::NoSecondFactors)
    }

    fn sha(&self) -> Result<&dyn crate::ports::Sha256> {
        self.sha256.as_deref().ok_or(Error::NoSecondFactors)
    }

    fn open_secret(&self, mfa: &Mfa, totp: &TotpRecord) -> Result<TotpSecret> {
        let plain = mfa
            .sealer
            .open(totp.user_id, &totp.sealed_secret)
            .map_err(Error::internal)?;
        TotpSecret::from_bytes(&plain)
            .ok_or_else(|| Error::Internal("an unsealed TOTP secret is not 20 bytes".into()))
    }

    /// Takes one guess from `record`'s allowance of codes (the
    /// [`ThrottleKey::SecondFactor`] key of `AuthLimits::code_failures`),
    /// counted as wrong until it is found right ([`Self::code_was_right`]).
    /// A right code clears the owner's typos, but not a guesser's count
    /// past the free failures, so the owner's sign-ins hand a password
    /// thief no fresh guesses; a new password clears it. A login's second
    /// step from a `device` that signed in to the account before counts
    /// against that device alone (attack of session 28, F1: a password
    /// thief's wrong codes had shut the owner out of every new sign-in).
    fn take_code_guess(
        &self,
        client: Option<IpAddr>,
        record: &UserRecord,
        action: &'static str,
        device: Option<&RefreshTokenHash>,
    ) -> Result<()> {
        let key = ThrottleKey::SecondFactor(record.user.id, device);
        self.limits
            .code_failures
            .reserve(key, self.clock.now())?
            .map_err(|retry_after| {
                self.audit(&AuditEvent::Throttled {
                    action,
                    username: Some(&record.user.username),
                    client,
                });
                Error::RateLimited { retry_after }
            })
    }

    /// Weighs a code for `record`'s confirmed second factor, under the
    /// account's allowance of codes (a known `device`'s own, at a login's
    /// second step); `Ok(false)` (audited) when it is wrong, used, or the
    /// account has no confirmed authenticator.
    pub(super) fn check_second_factor(
        &self,
        client: Option<IpAddr>,
        record: &UserRecord,
        answer: &SecondFactorAnswer,
        action: &'static str,
        device: Option<&RefreshTokenHash>,
    ) -> Result<bool> {
        if let SecondFactorAnswer::Passkey {
            challenge_id,
            answer,
        } = answer
        {
            return self.check_passkey(client, record, challenge_id, answer);
        }
        let mfa = self.mfa()?;
        let user = record.user.id;
        let factors = self.users.second_factors(user)?;
        let confirmed = factors.totp.as_ref().filter(|t| t.confirmed_at.is_some());
        // Opened before the guess is counted: a server holding another key
        // fails (500, logged) without spending the owner's allowance.
        let secret = match (confirmed, answer) {
            (Some(totp), SecondFactorAnswer::Totp(_)) => Some(self.open_secret(mfa, totp)?),
            _ => None,
        };
        self.take_code_guess(client, record, action, device)?;
        let now = self.clock.now();
        let (accepted, method) = match (confirmed, answer, secret) {
            (Some(totp), SecondFactorAnswer::Totp(code), Some(secret)) => {
                let fresh = secret
                    .matching_step(&*mfa.hmac, *code, now)
                    .filter(|step| totp.last_step.is_none_or(|last| *step > last));
                let taken = match fresh {
                    Some(step) => self.users.use_totp_step(user, step)?,
                    None => false,
                };
                (taken, "totp")
            }
            (Some(_), SecondFactorAnswer::RecoveryCode(code), _) => {
                let used = self
                    .users
                    .use_recovery_code(user, &code.digest(self.sha()?), now)?;
                if used {
                    self.audit(&AuditEvent::RecoveryCodeUsed {
                        user,
                        left: factors.recovery_codes_left.saturating_sub(1),
                        client,
                    });
                }
                (used, "recovery_code")
            }
            _ => (false, "totp"),
        };
        if accepted {
            self.code_was_right(user, device)?;
        } else {
            self.code_failed(user, method, client);
        }
        Ok(accepted)
    }

    /// A right code: the owner's typos before it forgotten, a guesser's
    /// count (past the free failures) kept less this guess
    /// ([`crate::LoginBackoff::settle`]).
    fn code_was_right(
        &self,
        user: crate::user::UserId,
        device: Option<&RefreshTokenHash>,
    ) -> Result<()> {
        Ok(self
            .limits
            .code_failures
            .settle(ThrottleKey::SecondFactor(user, device))?)
    }

    /// Forgets `user`'s count of codes: their password changed (whoever
    /// guessed no longer has it), or their second factors were removed.
    /// (Their devices' own counts fade with the week.)
    pub(crate) fn forget_code_guesses(&self, user: crate::user::UserId) -> Result<()> {
        Ok(self
            .limits
            .code_failures
            .record_success(ThrottleKey::SecondFactor(user, None))?)
    }

    fn code_failed(&self, user: crate::user::UserId, method: &'static str, client: Option<IpAddr>) {
        self.audit(&AuditEvent::SecondFactorFailed {
            user,
            method,
            client,
        });
    }
}

impl SessionService {
    /// Stores a two-step login for `record`, whose password just matched.
    pub(super) fn challenge(
        &self,
        client: Option<IpAddr>,
        record: &UserRecord,
        factors: &SecondFactors,
        now: crate::time::Timestamp,
    ) -> Result<MfaChallenge> {
        let shared = self.shared();
        // Fail closed: an enrolled account on a server without the key is
        // refused, never signed in on its password alone.
        shared.mfa()?;
        let token = MfaToken::generate(&*shared.random)?;
        let challenge = MfaChallengeRecord {
            hash: token.digest(shared.sha()?),
            user_id: record.user.id,
            created_at: now,
            expires_at: now.saturating_add(MFA_TOKEN_TTL),
            attempts_left: MFA_TOKEN_ATTEMPTS,
        };
        match shared.users.create_mfa_challenge(&challenge) {
            Ok(()) => shared.audit(&AuditEvent::SecondFactorAsked {
                user: record.user.id,
                client,
            }),
            // The account was deleted while the password was weighed.
            Err(StoreError::MissingReference(_)) => return Err(Error::InvalidCredentials),
            Err(e) => return Err(e.into()),
        }
        Ok(MfaChallenge {
            token,
            methods: factors.methods(),
            expires_in: MFA_TOKEN_TTL.as_secs(),
        })
    }

    /// A two-step login's second step: the `mfa_token` a password sign-in
    /// answered, and a code. Each call takes one of the token's attempts;
    /// the first right code ends the token and signs in (as
    /// [`Self::sign_in`] does, with `user_agent` and `device` as its
    /// credentials would). [`Error::InvalidMfaToken`] for a token unknown,
    /// used, expired or out of attempts, or whose account was disabled or
    /// changed its password since; [`Error::InvalidSecondFactor`] for a
    /// wrong or used code.
    pub fn complete_sign_in(
        &self,
        client: Option<IpAddr>,
        token: &MfaToken,
        answer: &SecondFactorAnswer,
        user_agent: Option<UserAgent>,
        device: Option<DeviceToken>,
    ) -> Result<TokenPair> {
        let shared = self.shared();
        shared.client_allowance(client, "login_mfa")?;
        let now = shared.clock.now();
        let hash = token.digest(shared.sha()?);
        let Some(challenge) = shared.users.take_mfa_attempt(&hash, now)? else {
            return Err(Error::InvalidMfaToken);
        };
        let record = match shared.users.find_user(challenge.user_id)? {
            Some(record)
                if !record.user.disabled
                    && record
                        .tokens_revoked_before
                        .is_none_or(|cut| cut <= challenge.created_at) =>
            {
                record
            }
            _ => {
                shared.users.finish_mfa_challenge(&hash)?;
                return Err(Error::InvalidMfaToken);
            }
        };
        // A device that signed in to the account before has its own count
        // of codes, as it has of passwords.
        let known_device = self.known_device(device, record.user.id, now);
        let device_digest = known_device
            .as_ref()
            .map(|d| self.refresh_hasher().digest(d.secret()));
        if !shared.check_second_factor(
            client,
            &record,
            answer,
            "login_mfa",
            device_digest.as_ref(),
        )? {
            return Err(Error::InvalidSecondFactor);
        }
        if !shared.users.finish_mfa_challenge(&hash)? {
            // Another right code finished it first.
            return Err(Error::InvalidMfaToken);
        }
        self.open_session(&record, client, user_agent, known_device)
    }

    /// The device token presented, if it signed in to `user` before (its
    /// allowance is then its own, and no new one is handed out).
    pub(super) fn known_device(
        &self,
        device: Option<DeviceToken>,
        user: crate::user::UserId,
        now: crate::time::Timestamp,
    ) -> Option<DeviceToken> {
        device.filter(|d| {
            let digest = self.refresh_hasher().digest(d.secret());
            matches!(
                self.shared().limits.login_failures.device_owner(&digest, now),
                Ok(Some(owner)) if owner == user
            )
        })
    }
}

impl AccountService {
    /// What the caller has enrolled (`totp`, `recovery_code`, `passkey`):
    /// the first two are what their login asks for as its second step.
    pub fn second_factor_methods(&self, principal: &Principal) -> Result<Vec<&'static str>> {
        super::require_login(principal)?;
        Ok(self
            .shared()
            .users
            .second_factors(principal.user_id)?
            .enrolled())
    }

    /// Begins a TOTP enrolment, with the caller's password (and one of
    /// their passkeys when they have any): a new secret,
    /// stored sealed and pending until [`Self::confirm_totp`] (in place of
    /// any pending one). [`Error::Conflict`] when one is confirmed already.
    pub fn begin_totp(
        &self,
        client: Option<IpAddr>,
        principal: &Principal,
        current: &str,
        answer: Option<&SecondFactorAnswer>,
    ) -> Result<TotpEnrolment> {
        super::require_login(principal)?;
        let shared = self.shared();
        let mfa = shared.mfa()?;
        let record = shared.current_user(principal.user_id)?;
        shared.confirm_password(client, &record, principal.session, current, "enrol_totp")?;
        let enrolled = Error::Conflict("an authenticator is enrolled already: remove it first");
        if shared.users.second_factors(record.user.id)?.required() {
            return Err(enrolled);
        }
        // An account with passkeys proves one too: an authenticator of a
        // thief's would become its second factor, and with it the thief
        // would add passkeys and remove the owner's (attack of session 28
        // on passkeys, F3).
        self.confirm_second_factor(client, &record, answer, "enrol_totp")?;
        let secret = TotpSecret::generate(&*shared.random)?;
        let enrolment = TotpRecord {
            user_id: record.user.id,
            sealed_secret: mfa
                .sealer
                .seal(record.user.id, secret.expose())
                .map_err(Error::internal)?,
            created_at: shared.clock.now(),
            confirmed_at: None,
            last_step: None,
        };
        match shared.users.begin_totp(&enrolment) {
            Ok(true) => {}
            Ok(false) => return Err(enrolled),
            Err(StoreError::MissingReference(_)) => return Err(Error::NotFound),
            Err(e) => return Err(e.into()),
        }
        let uri = secret.otpauth_uri(&mfa.issuer, &record.user.username);
        Ok(TotpEnrolment { secret, uri })
    }

    /// Confirms the pending enrolment with a code from the authenticator
    /// (taken as used), and answers ten new recovery codes, shown this
    /// once. [`Error::Conflict`] when none is pending (or it is older than
    /// [`TOTP_ENROLMENT_TTL`], or another began meanwhile);
    /// [`Error::WrongCode`] for a wrong code.
    pub fn confirm_totp(
        &self,
        client: Option<IpAddr>,
        principal: &Principal,
        code: TotpCode,
    ) -> Result<Vec<RecoveryCode>> {
        super::require_login(principal)?;
        let shared = self.shared();
        let mfa = shared.mfa()?;
        let sha = shared.sha()?;
        let record = shared.current_user(principal.user_id)?;
        let user = record.user.id;
        let now = shared.clock.now();
        let none_pending = Error::Conflict("no enrolment is pending: begin again");
        let pending = shared
            .users
            .second_factors(user)?
            .totp
            .filter(|t| t.confirmed_at.is_none())
            .filter(|t| now < t.created_at.saturating_add(TOTP_ENROLMENT_TTL))
            .ok_or(none_pending)?;
        let secret = shared.open_secret(mfa, &pending)?;
        shared.take_code_guess(client, &record, "confirm_totp", None)?;
        let Some(step) = secret.matching_step(&*mfa.hmac, code, now) else {
            shared.code_failed(user, "totp", client);
            return Err(Error::WrongCode);
        };
        let codes = (0..RECOVERY_CODES)
            .map(|_| RecoveryCode::generate(&*shared.random))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let hashes: Vec<_> = codes.iter().map(|c| c.digest(sha)).collect();
        if !shared
            .users
            .confirm_totp(user, pending.created_at, step, now, &hashes)?
        {
            return Err(Error::Conflict("no enrolment is pending: begin again"));
        }
        shared.code_was_right(user, None)?;
        shared.audit(&AuditEvent::SecondFactorAdded {
            user,
            method: "totp",
            client,
        });
        Ok(codes)
    }

    /// Removes the caller's authenticator and recovery codes, with their
    /// password and a current code (or a recovery code).
    /// [`Error::NotFound`] when they have none confirmed.
    pub fn remove_totp(
        &self,
        client: Option<IpAddr>,
        principal: &Principal,
        current: &str,
        answer: &SecondFactorAnswer,
    ) -> Result<()> {
        super::require_login(principal)?;
        let shared = self.shared();
        let record = shared.current_user(principal.user_id)?;
        shared.confirm_password(client, &record, principal.session, current, "remove_totp")?;
        if !shared.users.second_factors(record.user.id)?.required() {
            return Err(Error::NotFound);
        }
        if !shared.check_second_factor(client, &record, answer, "remove_totp", None)? {
            return Err(Error::WrongCode);
        }
        // (the authenticator only: passkeys go one by one; attack of
        // session 28 on passkeys, F1)
        shared.users.remove_totp(record.user.id)?;
        shared.audit(&AuditEvent::SecondFactorRemoved {
            user: record.user.id,
            client,
        });
        Ok(())
    }

    /// With the password confirmed, asks for a second factor too when the
    /// account has one (an authenticator, or a passkey): `answer` must be a
    /// right code or a passkey's answer
    /// ([`Error::Invalid`] naming `code` when it is missing,
    /// [`Error::WrongCode`] when wrong).
    pub(super) fn confirm_second_factor(
        &self,
        client: Option<IpAddr>,
        record: &UserRecord,
        answer: Option<&SecondFactorAnswer>,
        action: &'static str,
    ) -> Result<()> {
        let shared = self.shared();
        let factors = shared.users.second_factors(record.user.id)?;
        if !factors.required() && factors.passkeys == 0 {
            return Ok(());
        }
        let Some(answer) = answer else {
            return Err(Error::invalid(crate::error::ValidationError::Blank {
                field: "code",
            }));
        };
        if shared.check_second_factor(client, record, answer, action, None)? {
            Ok(())
        } else {
            Err(Error::WrongCode)
        }
    }
}

impl UserAdmin {
    /// Removes a user's second factors (admins only; audited): for a user
    /// who lost their authenticator and their recovery codes. Their
    /// pending two-step logins end with them.
    pub fn remove_second_factors(
        &self,
        principal: &Principal,
        user: impl Into<UserRef>,
    ) -> Result<()> {
        self.require_admin(principal)?;
        let id = user.into().id()?;
        if id == principal.user_id {
            // (attack of session 28, F3: a bearer token alone had turned
            // off its own administrator's second factor)
            return Err(Error::Conflict(
                "an administrator removes their own second factors from their account, with their password and a code",
            ));
        }
        let shared = self.shared();
        if shared.users.find_user(id)?.is_none() {
            return Err(Error::NotFound);
        }
        shared.users.remove_second_factors(id)?;
        shared.forget_code_guesses(id)?;
        shared.audit(&AuditEvent::AdminAction {
            actor: principal.user_id,
            action: "remove_second_factors",
            target: id,
        });
        Ok(())
    }
}
