//! Security events to the log, as `todo::audit` events.

use std::net::IpAddr;

use todo_core::{AuditEvent, AuditSink, SessionId, UserId, Username};
use tracing::field::{DisplayValue, display};

/// Writes each audit event as one log line with target `todo::audit`.
#[derive(Debug, Clone, Copy)]
pub struct TracingAudit;

/// One audit line: its event name and whichever fields the event has (a
/// field an event lacks is left out of the line).
#[derive(Default)]
struct Line<'a> {
    event: &'static str,
    /// Worth a look by itself: guessing, throttling, a stolen token.
    warn: bool,
    user: Option<UserId>,
    username: Option<&'a Username>,
    action: Option<&'static str>,
    family: Option<SessionId>,
    actor: Option<UserId>,
    target: Option<UserId>,
    client: Option<IpAddr>,
    /// An event this sink does not know, as `Debug` shows it.
    other: Option<String>,
}

impl<'a> Line<'a> {
    fn of(event: &AuditEvent<'a>) -> Self {
        match *event {
            AuditEvent::Registered { user, client } => Self::user("registered", user, client),
            AuditEvent::LoginSucceeded { user, client } => {
                Self::user("login_succeeded", user, client)
            }
            AuditEvent::LoginFailed { username, client } => Self {
                event: "login_failed",
                warn: true,
                username,
                client,
                ..Self::default()
            },
            AuditEvent::Throttled {
                action,
                username,
                client,
            } => Self {
                event: "throttled",
                warn: true,
                action: Some(action),
                username,
                client,
                ..Self::default()
            },
            AuditEvent::RefreshTokenReused {
                user,
                family,
                client,
            } => Self {
                warn: true,
                family: Some(family),
                ..Self::user("refresh_token_reused", user, client)
            },
            AuditEvent::LoggedOut { user, client } => Self::user("logged_out", user, client),
            AuditEvent::SessionsEnded {
                user,
                session,
                client,
            } => Self {
                family: session,
                ..Self::user("sessions_ended", user, client)
            },
            AuditEvent::PasswordReset { user, client } => Self {
                warn: true,
                ..Self::user("password_reset", user, client)
            },
            AuditEvent::ApiTokenCreated {
                user,
                token,
                client,
            } => Self {
                family: Some(token),
                ..Self::user("api_token_created", user, client)
            },
            AuditEvent::AccountDeleted { user, client } => {
                Self::user("account_deleted", user, client)
            }
            AuditEvent::Mailed {
                user,
                purpose,
                client,
            } => Self {
                action: Some(purpose),
                ..Self::user("mailed", user, client)
            },
            AuditEvent::MailFailed {
                user,
                purpose,
                client,
                reason,
            } => Self {
                warn: true,
                action: Some(purpose),
                other: Some(reason.to_owned()),
                ..Self::user("mail_failed", user, client)
            },
            AuditEvent::EmailChanged { user, client } => Self::user("email_changed", user, client),
            AuditEvent::EmailVerified { user, client } => {
                Self::user("email_verified", user, client)
            }
            AuditEvent::PasswordChanged { user, client } => {
                Self::user("password_changed", user, client)
            }
            AuditEvent::SecondFactorAsked { user, client } => {
                Self::user("second_factor_asked", user, client)
            }
            AuditEvent::SecondFactorAdded {
                user,
                method,
                client,
            } => Self {
                action: Some(method),
                ..Self::user("second_factor_added", user, client)
            },
            AuditEvent::SecondFactorRemoved { user, client } => Self {
                warn: true,
                ..Self::user("second_factor_removed", user, client)
            },
            AuditEvent::SecondFactorFailed {
                user,
                method,
                client,
            } => Self {
                warn: true,
                action: Some(method),
                ..Self::user("second_factor_failed", user, client)
            },
            AuditEvent::RecoveryCodeUsed { user, left, client } => Self {
                warn: true,
                other: Some(format!("{left} left")),
                ..Self::user("recovery_code_used", user, client)
            },
            AuditEvent::AdminAction {
                actor,
                action,
                target,
            } => Self {
                event: "admin_action",
                actor: Some(actor),
                action: Some(action),
                target: Some(target),
                ..Self::default()
            },
            // An event added to the core after this sink: named, not lost.
            ref other => Self {
                event: "other",
                other: Some(format!("{other:?}")),
                ..Self::default()
            },
        }
    }

    fn user(event: &'static str, user: UserId, client: Option<IpAddr>) -> Self {
        Self {
            event,
            user: Some(user),
            client,
            ..Self::default()
        }
    }
}

fn shown<T: std::fmt::Display>(value: Option<T>) -> Option<DisplayValue<T>> {
    value.map(display)
}

impl AuditSink for TracingAudit {
    fn record(&self, event: &AuditEvent<'_>) {
        let line = Line::of(event);
        let (user, username, family) = (shown(line.user), shown(line.username), shown(line.family));
        let (actor, target, client) = (shown(line.actor), shown(line.target), shown(line.client));
        let (name, action, other) = (line.event, line.action, line.other);
        if line.warn {
            tracing::warn!(target: "todo::audit", event = name, user, username, action, family, actor, target, client, other);
        } else {
            tracing::info!(target: "todo::audit", event = name, user, username, action, family, actor, target, client, other);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each event keeps the fields it carries and its level.
    #[test]
    fn an_event_becomes_one_line_with_its_own_fields() {
        let user = UserId::from_uuid(uuid::Uuid::from_u128(1));
        let client = Some(IpAddr::from([192, 0, 2, 1]));
        let reused = Line::of(&AuditEvent::RefreshTokenReused {
            user,
            family: SessionId::from_uuid(uuid::Uuid::from_u128(2)),
            client,
        });
        assert_eq!(reused.event, "refresh_token_reused");
        assert!(reused.warn);
        assert_eq!((reused.user, reused.client), (Some(user), client));
        assert!(reused.family.is_some() && reused.actor.is_none());

        let admin = Line::of(&AuditEvent::AdminAction {
            actor: user,
            action: "disable",
            target: user,
        });
        assert!(!admin.warn);
        assert_eq!(admin.action, Some("disable"));
        assert!(admin.user.is_none() && admin.client.is_none());
    }
}
