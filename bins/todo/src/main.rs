//! `todo`: the whole system in one process — auth API, task API and the web
//! page on one HTTPS origin, SQLite in the data directory, a self-signed
//! certificate and a signing key created on first start. It mounts both
//! routers of `todo-http` itself (`todo_http::setup::one_origin`): the
//! example of embedding them.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use todo_http::config::{ServerArgs, main_with, run};
use todo_http::setup::{AuthSettings, TaskSettings, create_user, one_origin_with};
use todo_store::SqlStore;

#[derive(Parser, Debug)]
#[command(
    name = "todo",
    version,
    about = "The todo system in one process: both APIs and the web page on one HTTPS origin"
)]
struct Cli {
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    auth: AuthSettings,
    #[command(flatten)]
    tasks: TaskSettings,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the page and both APIs (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Create a user; the password comes from --password-file or standard input.
    CreateUser {
        #[arg(long)]
        username: String,
        /// Make the user an administrator.
        #[arg(long)]
        admin: bool,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let server = cli.server.clone();
    main_with(&server, "todo", || dispatch(cli))
}

async fn dispatch(cli: Cli) -> Result<(), String> {
    match &cli.command {
        Some(Command::CreateUser {
            username,
            admin,
            email,
            password_file,
        }) => {
            return create_user(
                &cli.server,
                &cli.auth,
                username,
                *admin,
                email.as_deref(),
                password_file.as_deref(),
            );
        }
        Some(Command::Migrate) | Some(Command::Serve) | None => {}
    }
    let config = cli.server.store_config()?;
    let store =
        SqlStore::open(&config).map_err(|e| format!("opening the database {}: {e}", config.url))?;
    let ran = store.migrate().map_err(|e| format!("migrating: {e}"))?;
    tracing::info!(ran, backend = ?store.backend(), "database ready");
    if matches!(cli.command, Some(Command::Migrate)) {
        return Ok(());
    }

    let app = one_origin_with(&cli.auth, &cli.tasks, &cli.server.data_dir, store)?;
    let data_dir = cli.server.data_dir.display().to_string();
    let plain = cli.server.plain_http;
    let open = cli.auth.registration == todo_http::setup::RegistrationMode::Open;
    run(Arc::new(app), &cli.server, 8443, "todo", |url| {
        #[allow(clippy::print_stdout)] // the one thing a person starting it needs to read
        {
            println!("\n  todo is running at {url}/\n");
            if !plain {
                println!(
                    "  The certificate is self-signed ({data_dir}/tls-cert.pem): your browser will"
                );
                println!("  warn once; accept it for this address, or trust that file.");
            }
            if open {
                println!(
                    "  First: open the page and register an account. For an administrator, run"
                );
            } else {
                println!("  Registration is closed (--registration closed): create users with");
            }
            println!("    todo create-user [--admin] --username NAME   (password on stdin)");
            println!("  Data stays in {data_dir}/ across restarts. Ctrl-C stops the server.\n");
        }
    })
    .await
}
