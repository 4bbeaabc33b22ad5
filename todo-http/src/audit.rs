//! Security events to the log, as `todo::audit` events.

use todo_core::{AuditEvent, AuditSink};

/// Writes each audit event as one log line with target `todo::audit`.
#[derive(Debug, Clone, Copy)]
pub struct TracingAudit;

impl AuditSink for TracingAudit {
    fn record(&self, event: &AuditEvent<'_>) {
        let client = |c: &Option<std::net::IpAddr>| c.map(|ip| ip.to_string()).unwrap_or_default();
        match event {
            AuditEvent::Registered { user, client: c } => {
                tracing::info!(target: "todo::audit", event = "registered", %user, client = client(c));
            }
            AuditEvent::LoginSucceeded { user, client: c } => {
                tracing::info!(target: "todo::audit", event = "login_succeeded", %user, client = client(c));
            }
            AuditEvent::LoginFailed {
                username,
                client: c,
            } => {
                let username = username.map(|u| u.to_string()).unwrap_or_default();
                tracing::warn!(target: "todo::audit", event = "login_failed", username, client = client(c));
            }
            AuditEvent::Throttled {
                action,
                username,
                client: c,
            } => {
                let username = username.map(|u| u.to_string()).unwrap_or_default();
                tracing::warn!(target: "todo::audit", event = "throttled", action, username, client = client(c));
            }
            AuditEvent::RefreshTokenReused {
                user,
                family,
                client: c,
            } => {
                tracing::warn!(target: "todo::audit", event = "refresh_token_reused", %user, %family, client = client(c));
            }
            AuditEvent::LoggedOut { user, client: c } => {
                tracing::info!(target: "todo::audit", event = "logged_out", %user, client = client(c));
            }
            AuditEvent::PasswordChanged { user, client: c } => {
                tracing::info!(target: "todo::audit", event = "password_changed", %user, client = client(c));
            }
            AuditEvent::AdminAction {
                actor,
                action,
                target,
            } => {
                tracing::info!(target: "todo::audit", event = "admin_action", %actor, action, %target);
            }
            _ => tracing::info!(target: "todo::audit", event = ?event),
        }
    }
}
