//! A typed client talking to the running system over TLS (see `src/client.rs`).
//!
//! ```text
//! ./scripts/run &            # or: cargo run -p todo
//! cargo run -p todo-examples --example client -- https://localhost:8443 data/tls-cert.pem [https://localhost:8444]
//! ```

use std::net::ToSocketAddrs;
use std::path::Path;

use todo_examples::client::{TodoClient, demo};
use todo_testkit::Client;

fn connect(url: &str, ca: &Path) -> Result<Client, Box<dyn std::error::Error>> {
    let authority = url
        .strip_prefix("https://")
        .ok_or("use an https:// URL")?
        .trim_end_matches('/');
    let host = authority
        .rsplit_once(':')
        .map_or(authority, |(host, _)| host);
    let addr = authority.to_socket_addrs()?.next().ok_or("no address")?;
    Ok(Client::https_with_ca_file(addr, host, ca)?)
}

#[allow(clippy::print_stdout)] // an example talks to its reader
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let auth_url = args
        .first()
        .map_or("https://localhost:8443", String::as_str);
    let ca = Path::new(args.get(1).map_or("data/tls-cert.pem", String::as_str));
    let tasks_url = args.get(2).map_or(auth_url, String::as_str);
    let client = TodoClient::new(connect(auth_url, ca)?, connect(tasks_url, ca)?);
    let username = format!("client{}", std::process::id());
    for line in demo(client, &username).await? {
        println!("{line}");
    }
    Ok(())
}
