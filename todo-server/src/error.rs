//! What can stop a server from starting, or an administrative command
//! from finishing: one enum, each variant naming the setting or file
//! concerned.

use std::path::PathBuf;

/// A boxed cause from another layer, kept as the `source`.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a server or command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting's value is not usable; `setting` is the flag's name.
    #[error("{setting}: {message}")]
    Setting {
        /// The flag, e.g. `--db-pool-size`.
        setting: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// A file or directory could not be read, written or created.
    #[error("{}: {source}", path.display())]
    File {
        /// The file concerned.
        path: PathBuf,
        /// The operating system's answer.
        source: std::io::Error,
    },
    /// TLS could not be set up from the configured (or self-signed) files.
    #[error("{context}: {source}")]
    Tls {
        /// `--tls-cert/--tls-key`, `self-signed certificate` or `TLS`.
        context: &'static str,
        /// What went wrong.
        source: crate::tls::TlsError,
    },
    /// A key could not be read, made or written.
    #[error("{context}: {source}")]
    Key {
        /// The flag or file concerned.
        context: String,
        /// What went wrong.
        source: todo_auth::KeyError,
    },
    /// The database could not be opened or migrated.
    #[error("{context}: {source}")]
    Store {
        /// `opening the database URL` or `migrating`.
        context: String,
        /// What the store said.
        source: todo_core::StoreError,
    },
    /// A listener could not be bound.
    #[error("{setting} {addr}: {source}")]
    Bind {
        /// `--listen` or `--metrics-listen`.
        setting: &'static str,
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// The operating system's answer.
        source: std::io::Error,
    },
    /// The async runtime could not be built.
    #[error("starting the runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// A user could not be made (`user create`).
    #[error("{0}")]
    InvalidUser(String),
    /// The service refused an administrative command.
    #[error("{context}: {source}")]
    Service {
        /// What was being done.
        context: &'static str,
        /// The service's error.
        source: todo_core::Error,
    },
    /// An HTTP API could not be assembled.
    #[error("building the {api} API: {source}")]
    Api {
        /// Which API.
        api: &'static str,
        /// Why.
        source: Cause,
    },
    /// The JWKS URL is not usable.
    #[error(transparent)]
    Jwks(#[from] crate::jwks::JwksError),
    /// The auth services were built without a part they need (a wiring bug).
    #[error(transparent)]
    Wiring(#[from] todo_core::MissingDependency),
}

impl Error {
    pub(crate) fn setting(setting: &'static str, message: impl std::fmt::Display) -> Self {
        Self::Setting {
            setting,
            message: message.to_string(),
        }
    }

    pub(crate) fn file(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::File {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn key(context: impl std::fmt::Display, source: todo_auth::KeyError) -> Self {
        Self::Key {
            context: context.to_string(),
            source,
        }
    }

    pub(crate) fn api(api: &'static str) -> impl FnOnce(serde_json::Error) -> Self {
        move |source| Self::Api {
            api,
            source: Box::new(source),
        }
    }
}
