//! Changes committed by other processes, as PostgreSQL tells them: every
//! change inserted into the log notifies the channel `todo_changes` with
//! its project's id (`p:…`) or its recipient's (`u:…`) (a trigger,
//! migration `…_project_log`: in the writer's transaction, so the
//! notification is delivered when, and only if, the change commits).
//! [`SqlStore::listen_for_changes`] listens on a connection of its own and
//! hands them to a callback, a look's worth at a time: task-server wakes
//! its live streams with them (`TaskService::notify_changed`,
//! `notify_projects_changed`), so a
//! change made through one instance reaches the streams of every instance
//! at once. A notification says only "look again": the log stays the
//! source, and a notification lost while the listener reconnects costs a
//! delay (the streams also read unwoken now and then), never a change.
//!
//! SQLite has no other process to hear from: one process writes the file.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use diesel::prelude::*;
use todo_core::{ProjectId, UserId};
use uuid::Uuid;

use crate::SqlStore;
use crate::db::{DatabaseUrl, redact_url};

/// The channel the log's trigger notifies.
pub const CHANNEL: &str = "todo_changes";

/// How often the listener looks for notifications that arrived: the most
/// a notification waits here (libpq reads them without blocking).
const LOOK_EVERY: Duration = Duration::from_millis(50);
/// How often an idle listening connection is checked (a connection that
/// died without a word would otherwise be listened to for ever).
const CHECK_EVERY: Duration = Duration::from_secs(30);
/// Waits between reconnections, doubling from the first to the last.
const RECONNECT: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

/// What the listener heard. What arrived in one look (at most
/// 50 ms apart) is handed on together, each id once: a burst of
/// writes to one project is one wake-up, and every project of one look
/// one [`ChangeNotice::Projects`] (its members read in one statement, not
/// one a write: review of session 24, major 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeNotice {
    /// A change addressed to this user committed.
    Owner(UserId),
    /// Changes of these projects committed (each named once, in id
    /// order): their members' streams moved.
    Projects(Vec<ProjectId>),
    /// The listener (re)connected: changes made while it was not listening
    /// went unheard, anyone's may have changed.
    Anyone,
}

/// One notification's payload: `p:` and a project's id, or `u:` and a
/// user's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Named {
    Project(ProjectId),
    User(UserId),
}

/// A running listener; it stops when dropped (within its look interval,
/// without waiting for it: a thread stuck on a dead connection must not
/// hold up a shutdown).
#[derive(Debug)]
pub struct ChangeListener {
    stop: Arc<AtomicBool>,
    _thread: JoinHandle<()>,
}

impl Drop for ChangeListener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// libpq settings of the listening connection, unless the URL has its own:
/// a bounded connect, and TCP keepalives and a user timeout so that a
/// connection that died without a word is found in seconds, not after the
/// kernel's retransmissions (some 15 minutes).
const CONNECTION_SETTINGS: [(&str, &str); 6] = [
    ("connect_timeout", "5"),
    ("keepalives", "1"),
    ("keepalives_idle", "10"),
    ("keepalives_interval", "5"),
    ("keepalives_count", "3"),
    ("tcp_user_timeout", "15000"),
];

fn with_settings(url: &str) -> String {
    let mut url = url.to_owned();
    for (name, value) in CONNECTION_SETTINGS {
        if url.contains(&format!("{name}=")) {
            continue;
        }
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(name);
        url.push('=');
        url.push_str(value);
    }
    url
}

impl SqlStore {
    /// On PostgreSQL, calls `on_notice` with the project or user of every
    /// change committed to the log from now on, by any process (what
    /// arrived together, together: [`ChangeNotice`]), from a thread with a
    /// connection of its own (not the pool's), reconnecting when the
    /// connection is lost. `None` on SQLite.
    ///
    /// Fails only if the thread cannot be started.
    pub fn listen_for_changes(
        &self,
        on_notice: impl Fn(ChangeNotice) + Send + 'static,
    ) -> Result<Option<ChangeListener>, std::io::Error> {
        let DatabaseUrl::Postgres(url) = &self.url else {
            return Ok(None);
        };
        let url = with_settings(&crate::db::libpq_url(url));
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("todo-listen".to_owned())
            .spawn(move || listen(&url, &stopped, &on_notice))?;
        Ok(Some(ChangeListener {
            stop,
            _thread: thread,
        }))
    }
}

fn listen(url: &str, stop: &AtomicBool, on_notice: &dyn Fn(ChangeNotice)) {
    let mut wait = RECONNECT.0;
    let mut first = true;
    while !stop.load(Ordering::Relaxed) {
        if !first {
            // After a failure or a lost connection alike: a connection
            // that keeps failing is not retried in a tight loop.
            sleep_unless_stopped(wait, stop);
            wait = (wait * 2).min(RECONNECT.1);
        }
        first = false;
        let connected = PgConnection::establish(url)
            .map_err(|e| e.to_string())
            .and_then(|mut conn| {
                diesel::sql_query(format!("LISTEN {CHANNEL}"))
                    .execute(&mut conn)
                    .map(|_| conn)
                    .map_err(|e| e.to_string())
            });
        match connected {
            Ok(mut conn) => {
                tracing::debug!(target: "todo::store", "listening for changes");
                // What committed while nobody listened went unheard.
                on_notice(ChangeNotice::Anyone);
                let listened = Instant::now();
                let lost = follow(&mut conn, stop, on_notice);
                if listened.elapsed() >= CHECK_EVERY {
                    wait = RECONNECT.0;
                }
                if let Some(error) = lost {
                    tracing::warn!(target: "todo::store", %error, "the change listener's connection was lost; reconnecting");
                }
            }
            Err(error) => {
                let error = error.replace(url, &redact_url(url));
                tracing::warn!(target: "todo::store", %error, "the change listener cannot connect; retrying");
            }
        }
    }
}

/// What a notification's payload names.
fn parse_notice(payload: &str) -> Option<Named> {
    let (kind, id) = payload.split_once(':')?;
    let id = Uuid::parse_str(id).ok()?;
    match kind {
        "p" => Some(Named::Project(ProjectId::from_uuid(id))),
        "u" => Some(Named::User(UserId::from_uuid(id))),
        _ => None,
    }
}

/// Hands on what one look heard: its users one by one, its projects in
/// one notice (none if it heard nothing).
fn hand_on(heard: &mut Vec<Named>, on_notice: &dyn Fn(ChangeNotice)) {
    heard.sort_unstable();
    heard.dedup();
    let mut projects = Vec::new();
    for named in heard.drain(..) {
        match named {
            Named::Project(project) => projects.push(project),
            Named::User(user) => on_notice(ChangeNotice::Owner(user)),
        }
    }
    if !projects.is_empty() {
        on_notice(ChangeNotice::Projects(projects));
    }
}

/// Hands on what the connection hears until it fails (the error) or the
/// listener stops (`None`).
fn follow(
    conn: &mut PgConnection,
    stop: &AtomicBool,
    on_notice: &dyn Fn(ChangeNotice),
) -> Option<String> {
    let mut checked = Instant::now();
    let mut heard = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        for notification in conn.notifications_iter() {
            match notification {
                Ok(notification) => match parse_notice(&notification.payload) {
                    Some(named) => heard.push(named),
                    None => {
                        tracing::debug!(target: "todo::store", "a notification that names nothing")
                    }
                },
                Err(error) => {
                    hand_on(&mut heard, on_notice);
                    return Some(error.to_string());
                }
            }
        }
        hand_on(&mut heard, on_notice);
        if checked.elapsed() >= CHECK_EVERY {
            if let Err(error) = diesel::sql_query("SELECT 1").execute(conn) {
                return Some(error.to_string());
            }
            checked = Instant::now();
        }
        std::thread::sleep(LOOK_EVERY);
    }
    None
}

fn sleep_unless_stopped(wait: Duration, stop: &AtomicBool) {
    let until = Instant::now() + wait;
    while !stop.load(Ordering::Relaxed) && Instant::now() < until {
        std::thread::sleep(LOOK_EVERY.min(until.saturating_duration_since(Instant::now())));
    }
}

#[cfg(test)]
mod tests {
    use super::{ChangeNotice, Named, hand_on};
    use todo_core::{ProjectId, UserId};

    /// What one look heard is handed on with each id once, every project
    /// in one notice (review of session 24, major 1: a notice a write, a
    /// read of the members each, on the listener's one thread).
    #[test]
    fn a_look_hands_on_each_id_once_and_its_projects_together() {
        let user = |n: u128| UserId::from_uuid(uuid::Uuid::from_u128(n));
        let project = |n: u128| ProjectId::from_uuid(uuid::Uuid::from_u128(n));
        let mut heard = vec![
            Named::Project(project(2)),
            Named::User(user(7)),
            Named::Project(project(1)),
            Named::Project(project(2)),
            Named::User(user(7)),
            Named::Project(project(2)),
        ];
        let notices = std::cell::RefCell::new(Vec::new());
        hand_on(&mut heard, &|notice| notices.borrow_mut().push(notice));
        assert_eq!(
            notices.into_inner(),
            [
                ChangeNotice::Owner(user(7)),
                ChangeNotice::Projects(vec![project(1), project(2)]),
            ]
        );
        assert!(heard.is_empty(), "the next look starts empty");
        let silent = std::cell::Cell::new(0);
        hand_on(&mut heard, &|_| silent.set(silent.get() + 1));
        assert_eq!(silent.get(), 0, "a look that heard nothing says nothing");
    }
}
