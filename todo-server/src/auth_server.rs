//! auth-server: registration, login, tokens and users over HTTPS, around
//! [`todo_http::AuthApi`].

use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Subcommand};
use todo_http::{AuthApi, AuthWithPage, Probe};

use crate::Error;
use crate::config::{main_with, run};
use crate::setup::{
    AuthParts, AuthSettings, NewUser, REFRESH_TOKEN_PURGE_INTERVAL, StoreProbe, create_user,
    purge_refresh_tokens_periodically,
};

/// auth-server's command line.
pub type Cli = crate::config::Cli<Settings, Command>;

/// Reads auth-server's command line.
#[must_use]
pub fn parse() -> Cli {
    Cli::parse_as(
        "auth-server",
        "todo's auth service: registration, login, tokens and users, over HTTPS",
    )
}

/// auth-server's own settings.
#[derive(Args, Debug)]
pub struct Settings {
    #[command(flatten)]
    auth: AuthSettings,
    /// Also serve the web page (and hand out its cookie sessions), for a
    /// gateway that puts the page, auth-server and task-server on one origin
    /// (deploy/nginx/todo.conf routes it so).
    #[arg(long, env = "TODO_WEB_PAGE")]
    web_page: bool,
}

/// What auth-server does besides serving.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the API (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
}

/// `auth-server user …`.
#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Create a user; the password comes from --password-file or standard input, never an argument.
    Create(NewUser),
}

/// `auth-server keys …`.
#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Make a new signing key; the old one keeps verifying tokens it signed.
    Rotate,
}

/// Runs auth-server as the command line says.
#[must_use]
pub fn main(cli: Cli) -> ExitCode {
    let server = cli.server.clone();
    main_with(&server, "auth-server", || dispatch(cli))
}

async fn dispatch(cli: Cli) -> Result<(), Error> {
    match cli.command.as_ref().unwrap_or(&Command::Serve) {
        Command::Serve => serve(&cli).await,
        Command::Migrate => cli.server.open_store().map(drop),
        Command::User(UserCommand::Create(user)) => {
            create_user(&cli.server, &cli.settings.auth, user)
        }
        Command::Keys(KeysCommand::Rotate) => cli.settings.auth.rotate_keys(&cli.server.data_dir),
    }
}

async fn serve(cli: &Cli) -> Result<(), Error> {
    let store = cli.server.open_store()?;
    let AuthParts {
        service,
        keys,
        hasher,
        ..
    } = cli
        .settings
        .auth
        .build(&cli.server.data_dir, store.clone())?;
    purge_refresh_tokens_periodically(service.sessions.clone(), REFRESH_TOKEN_PURGE_INTERVAL);
    let jwks = keys
        .to_jwks()
        .map_err(|e| Error::key("publishing the keys", e))?;
    let probes: Vec<Arc<dyn Probe>> = vec![StoreProbe::shared(store), hasher];
    let api = AuthApi::new(service, &jwks, probes).map_err(Error::api("auth"))?;
    crate::memory::check_server(&cli.server, Some(&cli.settings.auth), None)?;
    if cli.settings.web_page {
        let api = AuthWithPage::new(api);
        run(Arc::new(api), &cli.server, 8443, "auth-server", |_| {}).await
    } else {
        run(Arc::new(api), &cli.server, 8443, "auth-server", |_| {}).await
    }
}
