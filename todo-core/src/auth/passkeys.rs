//! Passkeys: registered, listed and removed by their signed-in user, and
//! signing in alone (user verification is the second factor). Each
//! ceremony's first step is kept in the store, so its second may reach
//! any instance; it is taken once, within five minutes.

use std::net::IpAddr;

use super::{AccountService, SessionService, Shared};
use crate::device::DeviceToken;
use crate::error::{Error, Result, StoreError};
use crate::passkey::{
    CEREMONY_TTL, CeremonyKind, CeremonyRecord, ChallengeId, MAX_PASSKEYS, PasskeyCeremonies,
    PasskeyId, PasskeyName, PasskeyRecord, registration_key,
};
use crate::ports::AuditEvent;
use crate::random::new_v7;
use crate::second_factor::SecondFactorAnswer;
use crate::session::UserAgent;
use crate::token::{Principal, TokenPair};

/// A passkey sign-in begun: the browser's options, and the id its answer
/// names.
#[derive(Debug)]
pub struct PasskeyChallenge {
    /// Names this sign-in to its second step; single-use, five minutes.
    pub challenge_id: ChallengeId,
    /// The options for `navigator.credentials.get`, as JSON.
    pub options: String,
}

impl Shared {
    fn ceremonies(&self) -> Result<&dyn PasskeyCeremonies> {
        self.passkeys.as_deref().ok_or(Error::NoPasskeys)
    }
}

/// A refused answer, for the log.
fn refused(error: &crate::passkey::PasskeyRefusal) -> Error {
    Error::InvalidPasskey(crate::error::chain(error))
}

impl AccountService {
    /// Begins registering a passkey, with the caller's password and, when
    /// the account has a second factor, a code or a passkey's answer: a
    /// passkey signs in alone, past a password change, so a stolen session
    /// must not add one (review of session 28, M1). Answers the options
    /// for the browser (the caller's passkeys excluded, user verification
    /// required); the state waits for
    /// [`Self::finish_passkey_registration`], in place of any registration
    /// of theirs begun before.
    pub fn start_passkey_registration(
        &self,
        client: Option<IpAddr>,
        principal: &Principal,
        current: &str,
        answer: Option<&SecondFactorAnswer>,
    ) -> Result<String> {
        super::require_login(principal)?;
        let shared = self.shared();
        let ceremonies = shared.ceremonies()?;
        let record = shared.current_user(principal.user_id)?;
        shared.confirm_password(client, &record, principal.session, current, "add_passkey")?;
        self.confirm_second_factor(client, &record, answer, "add_passkey")?;
        let existing: Vec<Vec<u8>> = shared
            .users
            .list_passkeys(record.user.id)?
            .into_iter()
            .map(|p| p.credential_id)
            .collect();
        if existing.len() >= MAX_PASSKEYS {
            return Err(Error::QuotaExceeded {
                what: "passkeys",
                limit: MAX_PASSKEYS as u64,
            });
        }
        let (options, state) = ceremonies
            .start_registration(record.user.id, &record.user.username, &existing)
            .map_err(|e| Error::Internal(Box::new(e)))?;
        let ceremony = CeremonyRecord {
            key: registration_key(record.user.id),
            kind: CeremonyKind::Registration,
            user_id: Some(record.user.id),
            state,
            expires_at: shared.clock.now().saturating_add(CEREMONY_TTL),
        };
        match shared.users.put_ceremony(&ceremony) {
            Ok(()) => Ok(options),
            Err(StoreError::MissingReference(_)) => Err(Error::NotFound),
            Err(e) => Err(e.into()),
        }
    }

    /// Finishes the caller's registration with the browser's answer, and
    /// keeps the passkey under `name`. The registration begun is spent
    /// whatever the answer; [`Error::InvalidPasskey`] for an answer that
    /// does not hold or no registration begun in the last five minutes.
    pub fn finish_passkey_registration(
        &self,
        client: Option<IpAddr>,
        principal: &Principal,
        name: PasskeyName,
        answer: &str,
    ) -> Result<PasskeyRecord> {
        super::require_login(principal)?;
        let shared = self.shared();
        let ceremonies = shared.ceremonies()?;
        let record = shared.current_user(principal.user_id)?;
        let now = shared.clock.now();
        let Some(ceremony) = shared.users.take_ceremony(
            &registration_key(record.user.id),
            CeremonyKind::Registration,
            now,
        )?
        else {
            return Err(Error::PasskeyRefused(
                "no registration begun, or it expired".to_owned(),
            ));
        };
        let credential = ceremonies
            .finish_registration(answer, &ceremony.state)
            .map_err(|e| Error::PasskeyRefused(crate::error::chain(&e)))?;
        let passkey = PasskeyRecord {
            id: PasskeyId::from_uuid(new_v7(now, &*shared.random)?),
            user_id: record.user.id,
            name,
            credential_id: credential.credential_id,
            credential: credential.credential,
            created_at: now,
            last_used_at: None,
        };
        match shared.users.add_passkey(&passkey, MAX_PASSKEYS) {
            Ok(true) => {}
            Ok(false) => {
                return Err(Error::QuotaExceeded {
                    what: "passkeys",
                    limit: MAX_PASSKEYS as u64,
                });
            }
            Err(StoreError::Conflict(_)) => {
                return Err(Error::Conflict("this passkey is registered already"));
            }
            Err(StoreError::MissingReference(_)) => return Err(Error::NotFound),
            Err(e) => return Err(e.into()),
        }
        shared.audit(&AuditEvent::SecondFactorAdded {
            user: record.user.id,
            method: "passkey",
            client,
        });
        Ok(passkey)
    }

    /// The caller's passkeys, oldest first.
    pub fn list_passkeys(&self, principal: &Principal) -> Result<Vec<PasskeyRecord>> {
        super::require_login(principal)?;
        Ok(self.shared().users.list_passkeys(principal.user_id)?)
    }

    /// Removes one of the caller's passkeys, with their password (and a
    /// code when an authenticator is enrolled): a stolen session must not
    /// strip the account of its ways in. [`Error::NotFound`] for another
    /// user's or a missing one.
    pub fn remove_passkey(
        &self,
        client: Option<IpAddr>,
        principal: &Principal,
        id: PasskeyId,
        current: &str,
        answer: Option<&SecondFactorAnswer>,
    ) -> Result<()> {
        super::require_login(principal)?;
        let shared = self.shared();
        let record = shared.current_user(principal.user_id)?;
        shared.confirm_password(
            client,
            &record,
            principal.session,
            current,
            "remove_passkey",
        )?;
        self.confirm_second_factor(client, &record, answer, "remove_passkey")?;
        if !shared.users.remove_passkey(record.user.id, id)? {
            return Err(Error::NotFound);
        }
        shared.audit(&AuditEvent::SecondFactorRemoved {
            user: record.user.id,
            client,
        });
        Ok(())
    }
}

impl Shared {
    /// Whether `answer` is one of `record`'s passkeys answering the
    /// challenge `challenge_id` names (taken whatever the answer): a
    /// passkey confirming an action of its signed-in user. `Ok(false)`
    /// (audited) for anything refused.
    pub(super) fn check_passkey(
        &self,
        client: Option<IpAddr>,
        record: &crate::user::UserRecord,
        challenge_id: &ChallengeId,
        answer: &str,
    ) -> Result<bool> {
        let ceremonies = self.ceremonies()?;
        let sha = self.sha256.as_deref().ok_or(Error::NoPasskeys)?;
        let now = self.clock.now();
        let key = challenge_id.digest(sha);
        let taken = self
            .users
            .take_ceremony(key.as_str(), CeremonyKind::Authentication, now)?;
        let verified = match taken {
            Some(ceremony) => match ceremonies.identify(answer) {
                Ok((user, credential_id)) if user == record.user.id => {
                    match self.users.find_passkey(&credential_id)? {
                        Some(passkey) if passkey.user_id == user => {
                            match ceremonies.finish_authentication(
                                answer,
                                &ceremony.state,
                                &passkey.credential,
                            ) {
                                Ok(updated) => self.users.passkey_used(
                                    passkey.id,
                                    &passkey.credential,
                                    updated.as_deref(),
                                    now,
                                )?,
                                Err(_) => false,
                            }
                        }
                        _ => false,
                    }
                }
                _ => false,
            },
            None => false,
        };
        if !verified {
            self.audit(&AuditEvent::SecondFactorFailed {
                user: record.user.id,
                method: "passkey",
                client,
            });
        }
        Ok(verified)
    }
}

impl SessionService {
    /// Begins a passkey sign-in, for any of this site's discoverable
    /// credentials (no username asked: nothing tells whether an account
    /// exists or has a passkey). Under the client address's login
    /// allowance: each start keeps a row.
    pub fn start_passkey_sign_in(&self, client: Option<IpAddr>) -> Result<PasskeyChallenge> {
        let shared = self.shared();
        let ceremonies = shared.ceremonies()?;
        shared.client_allowance(client, "passkey_sign_in")?;
        let sha = shared.sha256.as_deref().ok_or(Error::NoPasskeys)?;
        let (options, state) = ceremonies
            .start_authentication()
            .map_err(|e| Error::Internal(Box::new(e)))?;
        let challenge_id = ChallengeId::generate(&*shared.random)?;
        let ceremony = CeremonyRecord {
            key: challenge_id.digest(sha).as_str().to_owned(),
            kind: CeremonyKind::Authentication,
            user_id: None,
            state,
            expires_at: shared.clock.now().saturating_add(CEREMONY_TTL),
        };
        shared.users.put_ceremony(&ceremony)?;
        Ok(PasskeyChallenge {
            challenge_id,
            options,
        })
    }

    /// Finishes a passkey sign-in: the browser's answer to the challenge
    /// `challenge_id` names (spent whatever the answer), checked against
    /// the passkey it names, of an enabled account. Signs in as
    /// [`Self::sign_in`] does, with no second step: the passkey verified
    /// its user. [`Error::InvalidPasskey`] for anything refused, alike.
    pub fn finish_passkey_sign_in(
        &self,
        client: Option<IpAddr>,
        challenge_id: &ChallengeId,
        answer: &str,
        user_agent: Option<UserAgent>,
        device: Option<DeviceToken>,
    ) -> Result<TokenPair> {
        let shared = self.shared();
        let ceremonies = shared.ceremonies()?;
        shared.client_allowance(client, "passkey_sign_in")?;
        let sha = shared.sha256.as_deref().ok_or(Error::NoPasskeys)?;
        let now = shared.clock.now();
        let key = challenge_id.digest(sha);
        let invalid = |why: &str| Error::InvalidPasskey(why.to_owned());
        let Some(ceremony) =
            shared
                .users
                .take_ceremony(key.as_str(), CeremonyKind::Authentication, now)?
        else {
            return Err(invalid(
                "no sign-in begun under this challenge_id, or it expired",
            ));
        };
        let (user, credential_id) = ceremonies.identify(answer).map_err(|e| refused(&e))?;
        let Some(passkey) = shared
            .users
            .find_passkey(&credential_id)?
            .filter(|p| p.user_id == user)
        else {
            return Err(invalid("no such passkey of the user the answer names"));
        };
        let record = match shared.users.find_user(passkey.user_id)? {
            Some(record) if !record.user.disabled => record,
            _ => return Err(invalid("the passkey's account is disabled or gone")),
        };
        let updated =
            match ceremonies.finish_authentication(answer, &ceremony.state, &passkey.credential) {
                Ok(updated) => updated,
                Err(e) => {
                    shared.audit(&AuditEvent::SecondFactorFailed {
                        user: record.user.id,
                        method: "passkey",
                        client,
                    });
                    return Err(refused(&e));
                }
            };
        if !shared
            .users
            .passkey_used(passkey.id, &passkey.credential, updated.as_deref(), now)?
        {
            // Removed while it was weighed, or used at the same moment
            // (its counter moved: one of two copies of it).
            return Err(invalid("the passkey was removed or used meanwhile"));
        }
        let known_device = self.known_device(device, record.user.id, now);
        self.open_session(&record, client, user_agent, known_device)
    }
}
