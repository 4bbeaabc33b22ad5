//! `todo`: the whole system in one process — auth API, task API and the web
//! page on one HTTPS origin, SQLite in the data directory, a self-signed
//! certificate and a signing key created on first start
//! ([`crate::setup::one_origin_with`]).

use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Subcommand};

use crate::Error;
use crate::config::{main_with, run};
use crate::setup::{
    AuthSettings, NewUser, RegistrationMode, TaskSettings, create_user, one_origin_with,
};

/// `todo`'s command line.
pub type Cli = crate::config::Cli<Settings, Command>;

/// Reads `todo`'s command line.
#[must_use]
pub fn parse() -> Cli {
    Cli::parse_as(
        "todo",
        "The todo system in one process: both APIs and the web page on one HTTPS origin",
    )
}

/// `todo`'s own settings: auth-server's and task-server's.
#[derive(Args, Debug)]
pub struct Settings {
    #[command(flatten)]
    auth: AuthSettings,
    #[command(flatten)]
    tasks: TaskSettings,
}

/// What `todo` does besides serving.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the page and both APIs (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Create a user; the password comes from --password-file or standard input.
    CreateUser(NewUser),
}

/// Runs `todo` as the command line says.
#[must_use]
pub fn main(cli: Cli) -> ExitCode {
    let server = cli.server.clone();
    main_with(&server, "todo", || dispatch(cli))
}

/// The port `todo` serves on when `--listen` names none.
const DEFAULT_PORT: u16 = 8443;

async fn dispatch(mut cli: Cli) -> Result<(), Error> {
    // One command, passkeys included: without --public-url, the page's
    // origin is the one it prints (a passkey made there works there; a
    // deployment under another name says its own --public-url).
    if cli.settings.auth.mail.public_url.is_none() {
        let port = cli
            .server
            .listen
            .map_or(DEFAULT_PORT, |addr| addr.port())
            .max(1);
        let scheme = if cli.server.plain_http {
            "http"
        } else {
            "https"
        };
        cli.settings.auth.mail.public_url = Some(format!("{scheme}://localhost:{port}"));
    }
    match &cli.command {
        Some(Command::CreateUser(user)) => {
            return create_user(&cli.server, &cli.settings.auth, user);
        }
        Some(Command::Migrate) => return cli.server.open_store().map(drop),
        Some(Command::Serve) | None => {}
    }
    let store = cli.server.open_store()?;
    let app = one_origin_with(
        &cli.settings.auth,
        &cli.settings.tasks,
        &cli.server.data_dir,
        store,
        cli.server.max_connections,
    )?;
    crate::memory::check_server(
        &cli.server,
        Some(&cli.settings.auth),
        Some(&cli.settings.tasks),
    )?;
    let data_dir = cli.server.data_dir.display().to_string();
    let plain = cli.server.plain_http;
    let open = cli.settings.auth.registration == RegistrationMode::Open;
    run(Arc::new(app), &cli.server, DEFAULT_PORT, "todo", |url| {
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
