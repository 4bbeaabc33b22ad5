//! The library embedded in-process, without HTTP: SQLite in `./data`, real
//! argon2id and Ed25519 tokens. Registers a demo user on the first run (and
//! logs in on later ones: the data survives), adds tasks, lists them with a
//! filter.
//!
//! ```text
//! cargo run -p todo-examples --example embedded [-- DATABASE_URL]
//! ```

use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use todo_auth::{
    Argon2Config, Argon2Hasher, BackoffPolicy, FailedLoginBackoff, JwtSigner, JwtVerifier,
    KeyAlgorithm, KeySet, KeyedLimiter, LimitPolicy, OsRandom, Sha256RefreshTokenHasher,
    SigningKey, SystemClock,
};
use todo_core::{
    AuthDeps, AuthLimits, AuthService, Credentials, Error as CoreError, Label, Labels, NewTask,
    NoAudit, Priority, Registration, TaskQuery, TaskService, Title, TokenPolicy,
};
use todo_store::{DatabaseUrl, SqlStore, StoreConfig};

#[allow(clippy::print_stdout)] // an example talks to its reader
fn main() -> Result<(), Box<dyn Error>> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "sqlite://data/embedded.db".to_owned());
    let store = Arc::new(SqlStore::open_and_migrate(&StoreConfig::new(
        DatabaseUrl::parse(&url)?,
    ))?);
    let clock = Arc::new(SystemClock);

    // A fresh signing key each run is fine in-process: tokens live minutes.
    let key = SigningKey::generate(KeyAlgorithm::EdDsa)?;
    let policy = TokenPolicy::default();
    let verifier = JwtVerifier::new(
        KeySet::new([key.public_key().clone()]),
        &policy.issuer,
        &policy.audience,
        30,
    );
    let per_client = LimitPolicy {
        burst: 10,
        period: Duration::from_secs(6),
        max_keys: 10_000,
    };
    let auth = AuthService::new(AuthDeps {
        users: store.clone(),
        refresh_tokens: store.clone(),
        hasher: Arc::new(Argon2Hasher::new(Argon2Config::default())?),
        signer: Arc::new(JwtSigner::new(key)),
        verifier: Arc::new(verifier),
        refresh_hasher: Arc::new(Sha256RefreshTokenHasher),
        clock: clock.clone(),
        random: Arc::new(OsRandom),
        limits: AuthLimits {
            register_per_client: Arc::new(KeyedLimiter::new(per_client, clock.clone())),
            login_per_client: Arc::new(KeyedLimiter::new(per_client, clock.clone())),
            login_per_account: Arc::new(KeyedLimiter::new(per_client, clock.clone())),
            login_failures: Arc::new(FailedLoginBackoff::new(BackoffPolicy::default())),
        },
        audit: Arc::new(NoAudit),
        policy,
    });
    let tasks = TaskService::new(store.clone(), clock, Arc::new(OsRandom));

    let registration = Registration::parse("demo", "correct horse battery", None)
        .map_err(|errors| format!("{errors:?}"))?;
    match auth.register(None, registration) {
        Ok(user) => println!("registered {} ({})", user.username, user.id),
        Err(CoreError::UsernameTaken) => println!("demo user exists: logging in"),
        Err(e) => return Err(e.into()),
    }
    let pair = auth.login(None, &Credentials::offered("demo", "correct horse battery"))?;
    let me = auth.authenticate(&pair.access_token)?;
    println!(
        "logged in as {} (access token valid {} s)",
        me.username, pair.expires_in
    );

    for (title, label, priority) in [
        ("Water the plants", "home", 1),
        ("Write the report", "work", 3),
        ("Call the bank", "home", 2),
    ] {
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
    println!(
        "tasks labelled 'home' ({} shown, newest first):",
        page.items.len()
    );
    for task in &page.items {
        println!(
            "  [{}] p{} {}",
            if task.done { "x" } else { " " },
            task.priority.get(),
            task.title
        );
    }
    auth.logout(None, &pair.refresh_token)?;
    println!("logged out; data kept in {url}");
    Ok(())
}
