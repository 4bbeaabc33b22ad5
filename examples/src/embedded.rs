//! The library embedded in-process, without HTTP: a store (SQLite, or the
//! in-memory one), real argon2id and Ed25519 tokens; register (or log in,
//! when the user exists: the data survives), add tasks, list them with a
//! filter.

use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use todo_auth::{
    Argon2Config, Argon2Hasher, BackoffPolicy, FailedLoginBackoff, JwtSigner, JwtVerifier,
    KeyAlgorithm, KeySet, KeyedLimiter, LimitPolicy, OsRandom, SigningKey, SystemClock,
};
use todo_core::memory::MemoryStore;
use todo_core::{
    AuthLimits, Credentials, Error as CoreError, Label, Labels, NewTask, Priority,
    RefreshTokenStore, Registration, SessionService, TaskQuery, TaskService, TaskStore, Title,
    TokenPolicy, UserStore,
};
use todo_store::{DatabaseUrl, SqlStore, StoreConfig};

/// Every store trait at once, so one value serves both services.
pub trait Store: UserStore + TaskStore + RefreshTokenStore {}
impl<T: UserStore + TaskStore + RefreshTokenStore> Store for T {}

/// A SQL store at `url` (`sqlite://PATH` or `postgres://…`), migrated.
pub fn sql_store(url: &str) -> Result<Arc<dyn Store>, Box<dyn Error>> {
    let config = StoreConfig::new(DatabaseUrl::parse(url)?);
    Ok(Arc::new(SqlStore::open_and_migrate(&config)?))
}

/// The in-memory store: no database at all.
#[must_use]
pub fn memory_store() -> Arc<dyn Store> {
    Arc::new(MemoryStore::new())
}

/// The session service over `store`, with a fresh Ed25519 signing key
/// (fine in-process: tokens live minutes), and the verifier of its tokens.
pub fn sessions(
    store: &Arc<dyn Store>,
    argon2: Argon2Config,
) -> Result<(SessionService, Arc<JwtVerifier>), Box<dyn Error>> {
    let clock = Arc::new(SystemClock);
    let key = SigningKey::generate(KeyAlgorithm::EdDsa)?;
    let policy = TokenPolicy::default();
    let keys = KeySet::new([key.public_key().clone()]);
    let verifier = Arc::new(JwtVerifier::new(keys, &policy.issuer, &policy.audience, 30));
    let per_client = LimitPolicy {
        burst: 10,
        period: Duration::from_secs(6),
        max_keys: 10_000,
    };
    // The clock, randomness and refresh-token digest are todo-auth's; no
    // audit log (the default).
    let sessions = todo_auth::auth_services()
        .users(store.clone())
        .refresh_tokens(store.clone())
        .hasher(Arc::new(Argon2Hasher::new(argon2)?))
        .signer(Arc::new(JwtSigner::new(key)))
        .verifier(verifier.clone())
        .limits(AuthLimits {
            register_per_client: Arc::new(KeyedLimiter::new(per_client, clock.clone())),
            login_per_client: Arc::new(KeyedLimiter::new(per_client, clock.clone())),
            refresh_per_client: Arc::new(KeyedLimiter::new(per_client, clock.clone())),
            login_per_account: Arc::new(KeyedLimiter::new(per_client, clock.clone())),
            login_failures: Arc::new(FailedLoginBackoff::new(BackoffPolicy::default())),
            code_failures: Arc::new(FailedLoginBackoff::new(BackoffPolicy::CODES)),
            confirmations_per_session: Arc::new(KeyedLimiter::new(per_client, clock.clone())),
            mail_per_account: Arc::new(KeyedLimiter::new(per_client, clock.clone())),
            mail_per_address: Arc::new(KeyedLimiter::new(per_client, clock.clone())),
        })
        .policy(policy)
        .build()?
        .sessions;
    Ok((sessions, verifier))
}

/// Runs the example on `store`; returns what it would print, line by line.
pub fn run(store: Arc<dyn Store>, argon2: Argon2Config) -> Result<Vec<String>, Box<dyn Error>> {
    let mut out = Vec::new();
    let clock = Arc::new(SystemClock);
    let (auth, _) = sessions(&store, argon2)?;
    let tasks = TaskService::new(store, clock, Arc::new(OsRandom))
        .with_sha256(Arc::new(todo_auth::Sha256Digest));

    let registration = Registration::parse("demo", "correct horse battery", None)
        .map_err(|errors| format!("{errors:?}"))?;
    match auth.register(None, registration) {
        Ok(user) => out.push(format!("registered {} ({})", user.username, user.id)),
        Err(CoreError::UsernameTaken) => out.push("demo user exists: logging in".to_owned()),
        Err(e) => return Err(e.into()),
    }
    let pair = auth.login(None, &Credentials::offered("demo", "correct horse battery"))?;
    let me = auth.authenticate(&pair.access_token)?;
    out.push(format!(
        "logged in as {} (access token valid {} s)",
        me.username, pair.expires_in
    ));

    let plan = [
        ("Water the plants", "home", 1),
        ("Write the report", "work", 3),
        ("Call the bank", "home", 2),
    ];
    for (title, label, priority) in plan {
        let new = NewTask {
            priority: Priority::new(priority)?,
            labels: Labels::parse([label])?,
            ..NewTask::titled(Title::parse(title)?)
        };
        tasks.create(me.user_id, new)?;
    }
    let home = TaskQuery {
        label: Some(Label::parse("home")?),
        ..TaskQuery::default()
    };
    let page = tasks.list(me.user_id, &home, None)?;
    out.push(format!(
        "tasks labelled 'home' ({} shown, newest first):",
        page.items.len()
    ));
    for task in &page.items {
        out.push(format!(
            "  [{}] p{} {}",
            if task.done { "x" } else { " " },
            task.priority.get(),
            task.title
        ));
    }
    auth.logout(None, &pair.refresh_token)?;
    out.push("logged out".to_owned());
    Ok(out)
}
