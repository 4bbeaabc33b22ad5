//! The backends the conformance suite runs on: the in-memory store always,
//! SQLite always, PostgreSQL whenever `TODO_TEST_POSTGRES_URL` is given (see
//! `todo_store::testing` for what happens without it).

use std::sync::Arc;

use todo_core::memory::MemoryStore;
use todo_core::{ProjectStore, RefreshTokenStore, RelayStore, TaskStore, UserStore, WebhookStore};
use todo_store::testing::TestDatabase;
use todo_store::{SqlStore, StoreConfig};

pub use todo_store::testing::{fresh_postgres_database, postgres_admin_url};

/// Every store trait at once.
pub trait Stores:
    UserStore + TaskStore + RefreshTokenStore + WebhookStore + RelayStore + ProjectStore
{
}
impl<T> Stores for T where
    T: UserStore + TaskStore + RefreshTokenStore + WebhookStore + RelayStore + ProjectStore
{
}

/// A fresh, empty, migrated store.
pub struct Fixture {
    pub store: Arc<dyn Stores>,
    /// The SQL store, for tests of SQL-only behaviour.
    pub sql: Option<SqlStore>,
    pub config: Option<StoreConfig>,
    _database: Option<TestDatabase>,
}

pub fn memory() -> Fixture {
    Fixture {
        store: Arc::new(MemoryStore::new()),
        sql: None,
        config: None,
        _database: None,
    }
}

fn from(database: TestDatabase) -> Fixture {
    Fixture {
        store: Arc::new(database.store.clone()),
        sql: Some(database.store.clone()),
        config: Some(database.config.clone()),
        _database: Some(database),
    }
}

pub fn sqlite() -> Fixture {
    from(TestDatabase::sqlite())
}

pub fn postgres() -> Option<Fixture> {
    TestDatabase::postgres().map(from)
}
