//! auth-server: configuration and wiring around `todo_http::AuthApi`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use todo_http::config::{ServerArgs, main_with, run};
use todo_http::setup::{
    AuthParts, AuthSettings, REFRESH_TOKEN_PURGE_INTERVAL, create_user,
    purge_refresh_tokens_periodically,
};
use todo_http::{AuthApi, AuthWithPage, Probe};
use todo_store::SqlStore;

#[derive(Parser, Debug)]
#[command(
    name = "auth-server",
    version,
    about = "todo's auth service: registration, login, tokens and users, over HTTPS"
)]
struct Cli {
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    auth: AuthSettings,
    /// Also serve the web page (and hand out its cookie sessions), for a
    /// gateway that puts the page, auth-server and task-server on one origin
    /// (deploy/nginx/todo.conf routes it so).
    #[arg(long, env = "TODO_WEB_PAGE")]
    web_page: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
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

#[derive(Subcommand, Debug)]
enum UserCommand {
    /// Create a user; the password comes from --password-file or standard input, never an argument.
    Create {
        #[arg(long)]
        username: String,
        /// Make the user an administrator.
        #[arg(long)]
        admin: bool,
        #[arg(long)]
        email: Option<String>,
        /// A file holding the password (else it is read from standard input).
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum KeysCommand {
    /// Make a new signing key; the old one keeps verifying tokens it signed.
    Rotate,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let server = cli.server.clone();
    main_with(&server, "auth-server", || dispatch(cli))
}

async fn dispatch(cli: Cli) -> Result<(), String> {
    match cli.command.as_ref().unwrap_or(&Command::Serve) {
        Command::Serve => serve(&cli).await,
        Command::Migrate => {
            let store = open_store(&cli.server)?;
            let ran = store.migrate().map_err(|e| format!("migrating: {e}"))?;
            tracing::info!(ran, "migrations applied");
            Ok(())
        }
        Command::User(UserCommand::Create {
            username,
            admin,
            email,
            password_file,
        }) => create_user(
            &cli.server,
            &cli.auth,
            username,
            *admin,
            email.as_deref(),
            password_file.as_deref(),
        ),
        Command::Keys(KeysCommand::Rotate) => cli.auth.rotate_keys(&cli.server.data_dir),
    }
}

fn open_store(args: &ServerArgs) -> Result<SqlStore, String> {
    let config = args.store_config()?;
    SqlStore::open(&config).map_err(|e| format!("opening the database {}: {e}", config.url))
}

async fn serve(cli: &Cli) -> Result<(), String> {
    let store = open_store(&cli.server)?;
    let ran = store.migrate().map_err(|e| format!("migrating: {e}"))?;
    tracing::info!(ran, backend = ?store.backend(), "database ready");
    let AuthParts {
        service,
        keys,
        hasher,
        ..
    } = cli.auth.build(&cli.server.data_dir, store.clone())?;
    purge_refresh_tokens_periodically(service.sessions.clone(), REFRESH_TOKEN_PURGE_INTERVAL);
    let jwks = keys.to_jwks().map_err(|e| e.to_string())?;
    let probes: Vec<Arc<dyn Probe>> = vec![Arc::new(store), hasher];
    let api = AuthApi::new(service, &jwks, probes).map_err(|e| e.to_string())?;
    if cli.web_page {
        let api = AuthWithPage::new(api);
        run(Arc::new(api), &cli.server, 8443, "auth-server", |_| {}).await
    } else {
        run(Arc::new(api), &cli.server, 8443, "auth-server", |_| {}).await
    }
}
