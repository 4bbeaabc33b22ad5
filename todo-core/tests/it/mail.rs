//! Mail: an address verified by its link, and a reset asked for by login
//! mailed only to a verified address of an enabled account, with nothing
//! told to the one who asked.

use std::sync::Arc;
use std::time::Duration;

use todo_core::{
    AccountPatch, AuthLimits, Email, Error, Registration, TokenRejection, UserPatch,
    ValidationError,
};

use crate::auth::{Harness, LINKS, harness, harness_with};

const ADDR: Option<std::net::IpAddr> =
    Some(std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 9)));

const PW: Option<&str> = Some("correct horse");

fn dead(result: Result<(), Error>) -> bool {
    matches!(&result, Err(Error::Invalid(e)) if matches!(e[..], [ValidationError::Format { field: "token", .. }]))
}

/// Registers `name` with `email`, and signs them in.
fn with_address(h: &Harness, name: &str, email: &str) -> todo_core::Principal {
    let registration = Registration::parse(name, "correct horse", Some(email)).unwrap();
    h.auth.sessions.register(ADDR, registration).unwrap();
    h.principal(name, "correct horse").0
}

/// The token in the last mail's link after `#{what}=`, checking that the
/// link is on the configured origin and in both bodies.
fn token_in_last_mail(h: &Harness, what: &str) -> String {
    let mail = h.mail.sent().pop().expect("a mail");
    let prefix = format!("{LINKS}/#{what}=");
    let start = mail.text.find(&prefix).expect("the link") + prefix.len();
    let token: String = mail.text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    assert!(
        mail.html.contains(&format!("{prefix}{token}")),
        "{}",
        mail.html
    );
    token
}

fn verify(h: &Harness, me: &todo_core::Principal) {
    h.auth
        .account
        .request_email_verification(ADDR, me)
        .unwrap()
        .send()
        .unwrap();
    let token = token_in_last_mail(h, "verify-email");
    h.auth.sessions.verify_email(ADDR, &token).unwrap();
}

#[test]
fn an_address_is_verified_once_by_the_link_mailed_to_it() {
    let h = harness();
    let me = with_address(&h, "alice", "alice@example.com");
    assert!(!h.auth.account.me(&me).unwrap().email_verified);
    h.auth
        .account
        .request_email_verification(ADDR, &me)
        .unwrap()
        .send()
        .unwrap();
    let mail = h.mail.sent().pop().unwrap();
    assert_eq!(mail.to, Email::parse("alice@example.com").unwrap());
    let token = token_in_last_mail(&h, "verify-email");
    h.auth.sessions.verify_email(ADDR, &token).unwrap();
    assert!(h.auth.account.me(&me).unwrap().email_verified);
    assert!(h.audit.events().iter().any(|e| e.contains("EmailVerified")));
    // Once; and a verified address is not verified again.
    assert!(dead(h.auth.sessions.verify_email(ADDR, &token)));
    assert!(matches!(
        h.auth.account.request_email_verification(ADDR, &me),
        Err(Error::Conflict(_))
    ));
    // Junk is refused alike, before any lookup.
    assert!(dead(h.auth.sessions.verify_email(ADDR, "not a token")));
}

#[test]
fn a_change_of_address_unverifies_it_and_kills_the_old_link() {
    let h = harness();
    let me = with_address(&h, "alice", "alice@example.com");
    verify(&h, &me);
    h.auth
        .account
        .request_email_verification(ADDR, &me)
        .unwrap_err();
    let patch = AccountPatch {
        email: Some(Some(Email::parse("alice@example.org").unwrap())),
    };
    let user = h.auth.account.patch_me(ADDR, &me, patch, PW).unwrap();
    assert!(!user.email_verified);
    // A link sent to the old address, used after the change: nothing.
    let patch = AccountPatch {
        email: Some(Some(Email::parse("alice@example.com").unwrap())),
    };
    h.auth.account.patch_me(ADDR, &me, patch, PW).unwrap();
    h.auth
        .account
        .request_email_verification(ADDR, &me)
        .unwrap()
        .send()
        .unwrap();
    let to_old = token_in_last_mail(&h, "verify-email");
    let patch = AccountPatch {
        email: Some(Some(Email::parse("mallory@example.net").unwrap())),
    };
    h.auth.account.patch_me(ADDR, &me, patch, PW).unwrap();
    assert!(dead(h.auth.sessions.verify_email(ADDR, &to_old)));
    assert!(!h.auth.account.me(&me).unwrap().email_verified);
    // No address: nothing to verify.
    h.auth
        .account
        .patch_me(ADDR, &me, AccountPatch { email: Some(None) }, PW)
        .unwrap();
    assert!(matches!(
        h.auth.account.request_email_verification(ADDR, &me),
        Err(Error::Conflict(_))
    ));
    // An administrator's change of address unverifies it too.
    let bob = with_address(&h, "bob", "bob@example.com");
    verify(&h, &bob);
    let admin = h.admin();
    let patch = UserPatch {
        email: Some(Some(Email::parse("bob@example.org").unwrap())),
        ..UserPatch::default()
    };
    let user = h.auth.admin.patch_user(&admin, bob.user_id, patch).unwrap();
    assert!(!user.email_verified);
}

#[test]
fn a_verification_link_expires_after_a_day() {
    let h = harness();
    let me = with_address(&h, "alice", "alice@example.com");
    h.auth
        .account
        .request_email_verification(ADDR, &me)
        .unwrap()
        .send()
        .unwrap();
    let token = token_in_last_mail(&h, "verify-email");
    h.clock.advance(todo_core::EMAIL_VERIFICATION_TTL);
    assert!(dead(h.auth.sessions.verify_email(ADDR, &token)));
}

#[test]
fn a_reset_by_login_mails_a_verified_address_only_and_the_link_works_once() {
    let h = harness();
    let me = with_address(&h, "alice", "Alice@Example.com");
    let (_, pair) = h.principal("alice", "correct horse");
    // Not verified yet: nothing is sent, and the asker is not told.
    let sent = h
        .auth
        .sessions
        .password_reset_by_mail(ADDR, "alice")
        .unwrap()
        .send()
        .unwrap();
    assert_eq!(sent, 0);
    assert!(h.mail.sent().is_empty());
    verify(&h, &me);
    let before = h.mail.sent().len();
    // By username, and by address in another case.
    for login in ["alice", " alice@example.COM "] {
        let sent = h
            .auth
            .sessions
            .password_reset_by_mail(ADDR, login)
            .unwrap()
            .send()
            .unwrap();
        assert_eq!(sent, 1, "{login}");
    }
    assert_eq!(h.mail.sent().len(), before + 2);
    let older = {
        let mut sent = h.mail.sent();
        sent.pop();
        let mail = sent.pop().unwrap();
        let start = mail.text.find("#reset=").unwrap() + "#reset=".len();
        mail.text[start..start + 43].to_owned()
    };
    let mail = h.mail.sent().pop().unwrap();
    assert_eq!(mail.to.as_str(), "Alice@Example.com");
    assert!(mail.subject.contains("password"));
    // A newer link replaces the older: only the last works, and once.
    let token = token_in_last_mail(&h, "reset");
    assert!(
        dead(
            h.auth
                .sessions
                .reset_password(ADDR, &older, "a brand new horse")
        ),
        "the older link died with the newer"
    );
    h.auth
        .sessions
        .reset_password(ADDR, &token, "a brand new horse")
        .unwrap();
    assert!(dead(h.auth.sessions.reset_password(
        ADDR,
        &token,
        "another new horse"
    )));
    // Every session ended; the new password signs in.
    assert!(matches!(
        h.auth.sessions.authenticate(&pair.access_token),
        Err(Error::InvalidToken(TokenRejection::Revoked))
    ));
    h.login("alice", "a brand new horse").unwrap();
    // Unknown accounts and junk: the same Ok, nothing sent.
    for login in [
        "nobody",
        "nobody@example.com",
        "@",
        "",
        "x".repeat(300).as_str(),
    ] {
        let sent = h
            .auth
            .sessions
            .password_reset_by_mail(ADDR, login)
            .unwrap()
            .send()
            .unwrap();
        assert_eq!(sent, 0, "{login}");
    }
}

#[test]
fn a_mailed_reset_link_expires_after_thirty_minutes() {
    let h = harness();
    let me = with_address(&h, "alice", "alice@example.com");
    verify(&h, &me);
    h.auth
        .sessions
        .password_reset_by_mail(ADDR, "alice")
        .unwrap()
        .send()
        .unwrap();
    let token = token_in_last_mail(&h, "reset");
    h.clock.advance(todo_core::PASSWORD_RESET_TTL);
    assert!(dead(h.auth.sessions.reset_password(
        ADDR,
        &token,
        "a brand new horse"
    )));
    h.login("alice", "correct horse").unwrap();
}

#[test]
fn a_disabled_account_gets_no_reset_mail() {
    let h = harness();
    let me = with_address(&h, "alice", "alice@example.com");
    verify(&h, &me);
    let admin = h.admin();
    let disable = UserPatch {
        disabled: Some(true),
        ..UserPatch::default()
    };
    h.auth
        .admin
        .patch_user(&admin, me.user_id, disable)
        .unwrap();
    let sent = h
        .auth
        .sessions
        .password_reset_by_mail(ADDR, "alice")
        .unwrap()
        .send()
        .unwrap();
    assert_eq!(sent, 0);
}

/// Lets `n` checks through, then refuses every one.
struct Allow(std::sync::atomic::AtomicUsize);

impl<K: ?Sized> todo_core::RateLimiter<K> for Allow {
    fn check(&self, _key: &K) -> Result<(), Duration> {
        let left = self.0.load(std::sync::atomic::Ordering::SeqCst);
        if left == 0 {
            return Err(Duration::from_secs(60));
        }
        self.0.store(left - 1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}

fn allow(n: usize) -> Arc<Allow> {
    Arc::new(Allow(std::sync::atomic::AtomicUsize::new(n)))
}

#[test]
fn mail_to_an_account_is_limited_and_the_asker_is_not_told() {
    let h = harness_with(
        AuthLimits {
            mail_per_account: allow(2),
            ..AuthLimits::unlimited()
        },
        2,
    );
    let me = with_address(&h, "alice", "alice@example.com");
    verify(&h, &me);
    // One more mail in the allowance: a reset; then none, silently.
    let reset = |h: &Harness| {
        h.auth
            .sessions
            .password_reset_by_mail(ADDR, "alice")
            .unwrap()
            .send()
            .unwrap()
    };
    assert_eq!(reset(&h), 1);
    assert_eq!(reset(&h), 0);
    assert_eq!(h.mail.sent().len(), 2);
    assert!(
        h.audit
            .events()
            .iter()
            .any(|e| e.contains("reset_mail_to_account"))
    );
    // The account's own request is told.
    let patch = AccountPatch {
        email: Some(Some(Email::parse("alice@example.org").unwrap())),
    };
    h.auth.account.patch_me(ADDR, &me, patch, PW).unwrap();
    assert!(matches!(
        h.auth.account.request_email_verification(ADDR, &me),
        Err(Error::RateLimited { .. })
    ));
}

#[test]
fn mail_to_one_address_is_limited_whichever_accounts_give_it() {
    /// Two checks a key, the keys told apart.
    #[derive(Default)]
    struct TwoEach(std::sync::Mutex<std::collections::HashMap<String, usize>>);
    impl todo_core::RateLimiter<String> for TwoEach {
        fn check(&self, key: &String) -> Result<(), Duration> {
            let mut seen = self.0.lock().unwrap();
            let n = seen.entry(key.clone()).or_default();
            *n += 1;
            if *n > 2 {
                Err(Duration::from_secs(60))
            } else {
                Ok(())
            }
        }
    }
    let h = harness_with(
        AuthLimits {
            mail_per_address: Arc::new(TwoEach::default()),
            ..AuthLimits::unlimited()
        },
        2,
    );
    // Three accounts give the victim's address (in any case): two mails reach it.
    let accounts = ["acct1", "acct2", "acct3"].map(|name| {
        let address = if name == "acct2" {
            "Victim@Example.com"
        } else {
            "victim@example.com"
        };
        with_address(&h, name, address)
    });
    for me in &accounts[..2] {
        h.auth
            .account
            .request_email_verification(ADDR, me)
            .unwrap()
            .send()
            .unwrap();
    }
    assert!(matches!(
        h.auth
            .account
            .request_email_verification(ADDR, &accounts[2]),
        Err(Error::RateLimited { .. })
    ));
    assert_eq!(h.mail.sent().len(), 2);
    // Another address is its own.
    let other = with_address(&h, "bcct1", "someone@example.com");
    h.auth
        .account
        .request_email_verification(ADDR, &other)
        .unwrap()
        .send()
        .unwrap();
}

#[test]
fn the_address_limit_is_the_logins_and_is_told_to_everyone_alike() {
    struct Refuse;
    impl<K: ?Sized> todo_core::RateLimiter<K> for Refuse {
        fn check(&self, _key: &K) -> Result<(), Duration> {
            Err(Duration::from_secs(60))
        }
    }
    let h = harness_with(
        AuthLimits {
            login_per_client: Arc::new(Refuse),
            ..AuthLimits::unlimited()
        },
        2,
    );
    for login in ["nobody", "alice"] {
        assert!(matches!(
            h.auth.sessions.password_reset_by_mail(ADDR, login),
            Err(Error::RateLimited { .. })
        ));
    }
}

#[test]
fn a_change_of_address_kills_a_reset_link_mailed_to_the_old_one() {
    let h = harness();
    let me = with_address(&h, "alice", "alice@example.com");
    verify(&h, &me);
    h.auth
        .sessions
        .password_reset_by_mail(ADDR, "alice")
        .unwrap()
        .send()
        .unwrap();
    let token = token_in_last_mail(&h, "reset");
    let patch = AccountPatch {
        email: Some(Some(Email::parse("alice@example.org").unwrap())),
    };
    h.auth.account.patch_me(ADDR, &me, patch, PW).unwrap();
    assert!(dead(h.auth.sessions.reset_password(
        ADDR,
        &token,
        "a brand new horse"
    )));
    h.login("alice", "correct horse").unwrap();
}

#[test]
fn a_refused_mail_is_an_error_for_the_account_and_nothing_for_the_asker() {
    let h = harness();
    let me = with_address(&h, "alice", "alice@example.com");
    verify(&h, &me);
    h.mail.fail(true);
    let sent = h
        .auth
        .sessions
        .password_reset_by_mail(ADDR, "alice")
        .unwrap()
        .send()
        .unwrap();
    assert_eq!(sent, 0);
    assert!(h.audit.events().iter().any(|e| e.contains("MailFailed")));
    let bob = with_address(&h, "bob", "bob@example.com");
    assert!(matches!(
        h.auth
            .account
            .request_email_verification(ADDR, &bob)
            .unwrap()
            .send(),
        Err(Error::MailFailed(_))
    ));
}

#[test]
fn without_a_mailer_both_answer_no_mail() {
    let h = crate::auth::harness_without_mail();
    let me = with_address(&h, "alice", "alice@example.com");
    assert!(matches!(
        h.auth.account.request_email_verification(ADDR, &me),
        Err(Error::NoMail)
    ));
    assert!(matches!(
        h.auth.sessions.password_reset_by_mail(ADDR, "alice"),
        Err(Error::NoMail)
    ));
}

#[test]
fn tagged_spellings_of_one_mailbox_share_its_allowance_and_resets_keep_their_own() {
    /// Two checks a key, the keys told apart.
    #[derive(Default)]
    struct TwoEach(std::sync::Mutex<std::collections::HashMap<String, usize>>);
    impl todo_core::RateLimiter<String> for TwoEach {
        fn check(&self, key: &String) -> Result<(), Duration> {
            let mut seen = self.0.lock().unwrap();
            let n = seen.entry(key.clone()).or_default();
            *n += 1;
            if *n > 2 {
                Err(Duration::from_secs(60))
            } else {
                Ok(())
            }
        }
    }
    let h = harness_with(
        AuthLimits {
            mail_per_address: Arc::new(TwoEach::default()),
            ..AuthLimits::unlimited()
        },
        2,
    );
    // The victim's own account, verified (one verification to their mailbox).
    let victim = with_address(&h, "victim", "victim@gmail.com");
    verify(&h, &victim);
    // A stranger's accounts name the same mailbox in other spellings: one
    // more verification reaches it, then none.
    let spellings = [
        "Victim+1@gmail.com",
        "v.i.c.t.i.m@GMAIL.com",
        "victim+x@gmail.com",
    ];
    let mut results = Vec::new();
    for (i, address) in spellings.iter().enumerate() {
        let me = with_address(&h, &format!("stranger{i}"), address);
        results.push(
            h.auth
                .account
                .request_email_verification(ADDR, &me)
                .map(drop),
        );
    }
    assert!(results[0].is_ok(), "{results:?}");
    assert!(
        matches!(results[1], Err(Error::RateLimited { .. })),
        "{results:?}"
    );
    assert!(
        matches!(results[2], Err(Error::RateLimited { .. })),
        "{results:?}"
    );
    // The victim's resets draw on an allowance of their own.
    let sent = h
        .auth
        .sessions
        .password_reset_by_mail(ADDR, "victim")
        .unwrap()
        .send()
        .unwrap();
    assert_eq!(sent, 1);
}

#[test]
fn verification_requests_count_against_the_clients_registrations() {
    let h = harness_with(
        AuthLimits {
            register_per_client: allow(2),
            ..AuthLimits::unlimited()
        },
        2,
    );
    // (two registrations from ADDR take the allowance)
    let me = with_address(&h, "alice", "alice@example.com");
    with_address(&h, "bob", "bob@example.com");
    assert!(matches!(
        h.auth.account.request_email_verification(ADDR, &me),
        Err(Error::RateLimited { .. })
    ));
    // Another client address is not refused.
    let other = Some(std::net::IpAddr::V4(std::net::Ipv4Addr::new(
        198, 51, 100, 7,
    )));
    let allowed = harness_with(
        AuthLimits {
            register_per_client: allow(2),
            ..AuthLimits::unlimited()
        },
        2,
    );
    let me = with_address(&allowed, "carol", "carol@example.com");
    allowed
        .auth
        .account
        .request_email_verification(other, &me)
        .unwrap()
        .send()
        .unwrap();
}

#[test]
fn an_address_an_earlier_version_stored_is_not_mailed() {
    let h = harness();
    let me = with_address(&h, "alice", "alice@example.com");
    verify(&h, &me);
    // Stored under the looser rules of before (a list of two, to a mail library).
    let mut record = todo_core::UserStore::find_user(&*h.store, me.user_id)
        .unwrap()
        .unwrap();
    record.user.email = Some(Email::from_stored("alice,mallory@example.com").unwrap());
    assert!(todo_core::UserStore::update_user(&*h.store, &record).unwrap());
    let before = h.mail.sent().len();
    let sent = h
        .auth
        .sessions
        .password_reset_by_mail(ADDR, "alice")
        .unwrap()
        .send()
        .unwrap();
    assert_eq!(sent, 0);
    record.user.email_verified = false;
    assert!(todo_core::UserStore::update_user(&*h.store, &record).unwrap());
    assert!(matches!(
        h.auth.account.request_email_verification(ADDR, &me),
        Err(Error::Conflict(_))
    ));
    assert_eq!(h.mail.sent().len(), before);
}

#[test]
fn an_administrators_change_of_address_kills_the_users_reset_link() {
    let h = harness();
    let me = with_address(&h, "alice", "alice@example.com");
    verify(&h, &me);
    h.auth
        .sessions
        .password_reset_by_mail(ADDR, "alice")
        .unwrap()
        .send()
        .unwrap();
    let token = token_in_last_mail(&h, "reset");
    let admin = h.admin();
    let patch = UserPatch {
        email: Some(Some(Email::parse("alice@example.net").unwrap())),
        ..UserPatch::default()
    };
    h.auth.admin.patch_user(&admin, me.user_id, patch).unwrap();
    assert!(dead(h.auth.sessions.reset_password(
        ADDR,
        &token,
        "a brand new horse"
    )));
}
