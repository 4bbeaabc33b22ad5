//! `todo-gateway`: the compose set's gateway process. It runs nginx and keeps
//! the addresses of nginx's upstream servers what DNS says now.
//!
//! nginx resolves the host names of an `upstream` block once, when it loads
//! its configuration, and will not start while one of them does not resolve.
//! In a compose set, a container that is stopped has no name, and one started
//! again comes back on a new address. nginx alone would keep sending to the
//! old address until it is restarted, and a gateway restarted while one
//! server is stopped would not start at all. So this program resolves the
//! names itself and writes each upstream's `server` lines to a file that
//! nginx's configuration includes (`DIR/NAME.conf`). Then it starts nginx.
//! Every two seconds it resolves the names again. When an address changes,
//! it rewrites the file and sends nginx SIGHUP, which makes nginx reload
//! without dropping a connection. It passes the signals it gets on to nginx
//! and exits with nginx's status.
//!
//! ```text
//! todo-gateway --dir DIR --upstream NAME=HOST:PORT[,HOST:PORT…]… -- NGINX [ARG…]
//! ```
//!
//! Kubernetes needs none of this: a Service's address stays put.

use std::collections::BTreeSet;
use std::io::{self, Write as _};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, ExitStatus};
use std::sync::mpsc;
use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process};
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
use signal_hook::iterator::Signals;

/// How often the names are resolved again.
const RESOLVE_EVERY: Duration = Duration::from_secs(2);
/// How long a signal may wait before it is passed on to nginx.
const POLL: Duration = Duration::from_millis(100);

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("todo-gateway: {e}");
            ExitCode::from(1)
        }
    }
}

fn run() -> Result<ExitCode, Error> {
    let config = Config::parse(std::env::args().skip(1))?;
    std::fs::create_dir_all(&config.dir).map_err(|e| Error::Io {
        path: config.dir.clone(),
        source: e,
    })?;
    // Taken before nginx starts: none is lost, none kills us instead.
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGQUIT, SIGHUP]).map_err(Error::Signals)?;
    let mut current = resolve_all(&config.upstreams, &system_resolve);
    write_all(&config.dir, &config.upstreams, &current)?;
    log_addresses(&config.upstreams, &current);

    let (program, args) = config
        .command
        .split_first()
        .ok_or(Error::Usage("no nginx command after --"))?;
    let mut nginx = Command::new(program)
        .args(args)
        .spawn()
        .map_err(|e| Error::Io {
            path: PathBuf::from(program),
            source: e,
        })?;
    let pid = Pid::from_child(&nginx);

    // Resolution blocks (getaddrinfo, up to the resolver's timeouts), so it
    // runs on a thread of its own: signals never wait for DNS.
    let (addresses, changes) = mpsc::sync_channel(1);
    let upstreams = config.upstreams.clone();
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(RESOLVE_EVERY);
            if addresses
                .send(resolve_all(&upstreams, &system_resolve))
                .is_err()
            {
                return;
            }
        }
    });

    loop {
        for raw in signals.pending() {
            if let Some(signal) = forwarded(raw) {
                // nginx gone already: its status comes next.
                let _ = kill_process(pid, signal);
            }
        }
        if let Some(status) = nginx.try_wait().map_err(|e| Error::Io {
            path: PathBuf::from(program),
            source: e,
        })? {
            return Ok(exit_code(status));
        }
        match changes.recv_timeout(POLL) {
            Ok(resolved) if resolved != current => {
                // An unwritable file keeps nginx on the addresses it has.
                match write_all(&config.dir, &config.upstreams, &resolved) {
                    Ok(()) => {
                        current = resolved;
                        log_addresses(&config.upstreams, &current);
                        let _ = kill_process(pid, Signal::HUP);
                    }
                    Err(e) => eprintln!("todo-gateway: {e}"),
                }
            }
            Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return Err(Error::ResolverStopped),
        }
    }
}

/// What went wrong, for the one line the program prints before it exits.
#[derive(Debug, thiserror::Error)]
enum Error {
    #[error(
        "{0}\nusage: todo-gateway --dir DIR --upstream NAME=HOST:PORT[,HOST:PORT…]… -- NGINX [ARG…]"
    )]
    Usage(&'static str),
    #[error("--upstream {0}: not NAME=HOST:PORT[,HOST:PORT…]")]
    BadUpstream(String),
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("cannot take signals: {0}")]
    Signals(#[source] io::Error),
    #[error("the resolving thread stopped")]
    ResolverStopped,
}

/// An nginx `upstream` block's servers, by name and port.
#[derive(Debug, Clone, PartialEq)]
struct Upstream {
    /// The file's name in the directory: `NAME.conf`.
    name: String,
    servers: Vec<(String, u16)>,
}

#[derive(Debug, PartialEq)]
struct Config {
    dir: PathBuf,
    upstreams: Vec<Upstream>,
    command: Vec<String>,
}

impl Config {
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Config, Error> {
        let mut dir = None;
        let mut upstreams = Vec::new();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--dir" => {
                    dir = Some(PathBuf::from(
                        args.next().ok_or(Error::Usage("--dir needs a value"))?,
                    ))
                }
                "--upstream" => {
                    let value = args
                        .next()
                        .ok_or(Error::Usage("--upstream needs a value"))?;
                    upstreams.push(Upstream::parse(&value).ok_or(Error::BadUpstream(value))?);
                }
                "--" => break,
                _ => return Err(Error::Usage("unknown argument")),
            }
        }
        let command: Vec<String> = args.collect();
        if command.is_empty() {
            return Err(Error::Usage("no nginx command after --"));
        }
        if upstreams.is_empty() {
            return Err(Error::Usage("no --upstream"));
        }
        Ok(Config {
            dir: dir.ok_or(Error::Usage("no --dir"))?,
            upstreams,
            command,
        })
    }
}

impl Upstream {
    fn parse(arg: &str) -> Option<Upstream> {
        let (name, list) = arg.split_once('=')?;
        // The name becomes a file name: nothing that leaves the directory.
        let name_ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !name_ok {
            return None;
        }
        let servers = list
            .split(',')
            .map(|server| {
                let (host, port) = server.rsplit_once(':')?;
                let port: u16 = port.parse().ok()?;
                (!host.is_empty() && port != 0).then(|| (host.to_owned(), port))
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Upstream {
            name: name.to_owned(),
            servers,
        })
    }
}

/// Each upstream's addresses, in the order of the upstreams: what the files
/// hold. Sorted, so that the same answers in another order are no change.
type Resolved = Vec<BTreeSet<SocketAddr>>;

fn system_resolve(host: &str, port: u16) -> Vec<SocketAddr> {
    // A name that does not resolve (a stopped container) has no servers.
    (host, port)
        .to_socket_addrs()
        .map(Iterator::collect)
        .unwrap_or_default()
}

fn resolve_all(upstreams: &[Upstream], resolve: &dyn Fn(&str, u16) -> Vec<SocketAddr>) -> Resolved {
    upstreams
        .iter()
        .map(|upstream| {
            upstream
                .servers
                .iter()
                .flat_map(|(host, port)| resolve(host, *port))
                .collect()
        })
        .collect()
}

/// The `server` lines of one upstream block.
fn render(addresses: &BTreeSet<SocketAddr>) -> String {
    if addresses.is_empty() {
        // nginx wants a server in every block; one marked down makes each
        // request a 502, which the gateway answers as its 503.
        return "# no server resolves\nserver 127.0.0.1:9 down;\n".to_owned();
    }
    addresses
        .iter()
        .map(|address| format!("server {address};\n"))
        .collect()
}

/// Writes each upstream's file whole (a new file renamed over the old), so
/// nginx never reads half of one.
fn write_all(dir: &Path, upstreams: &[Upstream], resolved: &Resolved) -> Result<(), Error> {
    for (upstream, addresses) in upstreams.iter().zip(resolved) {
        let path = dir.join(format!("{}.conf", upstream.name));
        let partial = dir.join(format!(".{}.conf.new", upstream.name));
        let write = || -> io::Result<()> {
            let mut file = std::fs::File::create(&partial)?;
            file.write_all(render(addresses).as_bytes())?;
            std::fs::rename(&partial, &path)
        };
        write().map_err(|e| Error::Io {
            path: path.clone(),
            source: e,
        })?;
    }
    Ok(())
}

fn log_addresses(upstreams: &[Upstream], resolved: &Resolved) {
    for (upstream, addresses) in upstreams.iter().zip(resolved) {
        let list: Vec<String> = addresses.iter().map(ToString::to_string).collect();
        eprintln!(
            "todo-gateway: upstream {}: {}",
            upstream.name,
            if list.is_empty() {
                "no server resolves".to_owned()
            } else {
                list.join(" ")
            }
        );
    }
}

/// The signals passed on to nginx: TERM and INT stop it at once, QUIT
/// gracefully, HUP reloads its configuration.
fn forwarded(raw: i32) -> Option<Signal> {
    match raw {
        SIGTERM => Some(Signal::TERM),
        SIGINT => Some(Signal::INT),
        SIGQUIT => Some(Signal::QUIT),
        SIGHUP => Some(Signal::HUP),
        _ => None,
    }
}

/// nginx's status as ours; killed by a signal, 128 + its number, as a shell
/// reports it.
fn exit_code(status: ExitStatus) -> ExitCode {
    use std::os::unix::process::ExitStatusExt as _;
    let code = status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1);
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> impl Iterator<Item = String> {
        list.iter()
            .map(|s| (*s).to_owned())
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn parses_upstreams_and_the_command() -> Result<(), Error> {
        let config = Config::parse(args(&[
            "--dir",
            "/tmp/u",
            "--upstream",
            "todo_auth=auth-server-1:8080,auth-server-2:8080",
            "--upstream",
            "todo_tasks=task-server-1:8080",
            "--",
            "/usr/sbin/nginx",
            "-g",
            "daemon off;",
        ]))?;
        assert_eq!(config.dir, PathBuf::from("/tmp/u"));
        assert_eq!(
            config.upstreams,
            vec![
                Upstream {
                    name: "todo_auth".into(),
                    servers: vec![
                        ("auth-server-1".into(), 8080),
                        ("auth-server-2".into(), 8080)
                    ],
                },
                Upstream {
                    name: "todo_tasks".into(),
                    servers: vec![("task-server-1".into(), 8080)]
                },
            ]
        );
        assert_eq!(config.command, vec!["/usr/sbin/nginx", "-g", "daemon off;"]);
        Ok(())
    }

    #[test]
    fn refuses_what_is_not_an_upstream_or_leaves_out_a_part() {
        for bad in [
            "x",
            "=a:1",
            "a=",
            "a=b",
            "a=b:0",
            "a=b:x",
            "a=:80",
            "../a=b:80",
            "a/b=c:80",
            "a=b:80,",
        ] {
            assert!(Upstream::parse(bad).is_none(), "{bad} was taken");
        }
        assert!(matches!(
            Config::parse(args(&["--dir", "d", "--upstream", "a=b:1"])),
            Err(Error::Usage("no nginx command after --"))
        ));
        assert!(matches!(
            Config::parse(args(&["--dir", "d", "--", "nginx"])),
            Err(Error::Usage("no --upstream"))
        ));
        assert!(matches!(
            Config::parse(args(&["--upstream", "a=b:1", "--", "nginx"])),
            Err(Error::Usage("no --dir"))
        ));
        assert!(matches!(
            Config::parse(args(&["--dir", "d", "--upstream", "a=b", "--", "nginx"])),
            Err(Error::BadUpstream(_))
        ));
        assert!(matches!(
            Config::parse(args(&["--frobnicate"])),
            Err(Error::Usage("unknown argument"))
        ));
    }

    #[test]
    fn resolves_each_upstream_sorted_without_repeats_and_drops_names_that_do_not_resolve() {
        let upstreams = vec![
            Upstream {
                name: "a".into(),
                servers: vec![("two".into(), 80), ("gone".into(), 80), ("one".into(), 80)],
            },
            Upstream {
                name: "b".into(),
                servers: vec![("gone".into(), 81)],
            },
        ];
        let fake = |host: &str, port: u16| -> Vec<SocketAddr> {
            match host {
                "one" => vec![SocketAddr::from(([10, 0, 0, 1], port))],
                // A name with two answers, one of them another's too.
                "two" => vec![
                    SocketAddr::from(([10, 0, 0, 2], port)),
                    SocketAddr::from(([10, 0, 0, 1], port)),
                ],
                _ => vec![],
            }
        };
        let resolved = resolve_all(&upstreams, &fake);
        assert_eq!(
            render(&resolved[0]),
            "server 10.0.0.1:80;\nserver 10.0.0.2:80;\n"
        );
        assert_eq!(
            render(&resolved[1]),
            "# no server resolves\nserver 127.0.0.1:9 down;\n"
        );
        // The same answers in another order are the same.
        let again = resolve_all(&upstreams, &|host: &str, port: u16| {
            let mut answers = fake(host, port);
            answers.reverse();
            answers
        });
        assert_eq!(resolved, again);
    }

    #[test]
    fn writes_each_file_whole_and_replaces_it() -> Result<(), Box<dyn std::error::Error>> {
        let dir = std::env::temp_dir().join(format!("todo-gateway-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let upstreams = vec![Upstream {
            name: "todo_auth".into(),
            servers: vec![("x".into(), 1)],
        }];
        let first: Resolved = vec![BTreeSet::from([SocketAddr::from(([10, 0, 0, 1], 8080))])];
        write_all(&dir, &upstreams, &first)?;
        assert_eq!(
            std::fs::read_to_string(dir.join("todo_auth.conf"))?,
            "server 10.0.0.1:8080;\n"
        );
        let second: Resolved = vec![BTreeSet::from([SocketAddr::from(([10, 0, 0, 9], 8080))])];
        write_all(&dir, &upstreams, &second)?;
        assert_eq!(
            std::fs::read_to_string(dir.join("todo_auth.conf"))?,
            "server 10.0.0.9:8080;\n"
        );
        let left: Vec<_> = std::fs::read_dir(&dir)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()?;
        assert_eq!(
            left,
            vec![std::ffi::OsString::from("todo_auth.conf")],
            "no partial file is left"
        );
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }

    #[test]
    fn passes_on_the_signals_that_stop_or_reload_nginx_only() {
        assert_eq!(forwarded(SIGTERM), Some(Signal::TERM));
        assert_eq!(forwarded(SIGQUIT), Some(Signal::QUIT));
        assert_eq!(forwarded(SIGHUP), Some(Signal::HUP));
        assert_eq!(forwarded(SIGINT), Some(Signal::INT));
        assert_eq!(forwarded(signal_hook::consts::SIGUSR1), None);
    }
}
