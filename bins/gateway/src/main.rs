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
//! (its old workers finish their requests). It passes TERM, INT, QUIT and
//! HUP on to nginx, stops nginx when it must stop itself, and exits with
//! nginx's status.
//!
//! ```text
//! todo-gateway --dir DIR --pid-file NGINX_PID_FILE [--allow CIDR]…
//!     --upstream NAME=HOST:PORT[,HOST:PORT…]… -- NGINX [ARG…]
//! ```
//!
//! `TODO_GATEWAY_ALLOW` adds networks to `--allow` (comma-separated): with
//! any, an address outside them is never written (a stopped server's name
//! that a resolver's search domain turns into someone else's host).
//! Kubernetes needs none of this: a Service's address stays put.

use std::collections::{BTreeSet, HashMap};
use std::io::{self, Write as _};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
use signal_hook::iterator::Signals;

/// How often the names are resolved again.
const RESOLVE_EVERY: Duration = Duration::from_secs(2);
/// How long a signal may wait before it is passed on to nginx.
const POLL: Duration = Duration::from_millis(100);
/// The failed lookup in a row at which a name loses its addresses: the
/// first two failures keep them (one slow answer of the resolver does not
/// take a server out); a stopped container's name is gone at the third
/// round, about 6 s (nginx meanwhile passes its requests to the other
/// server).
const FORGET_AFTER: u32 = 3;
/// How long a reload may wait for nginx's pid file before it is said.
const READY_WARNING: Duration = Duration::from_secs(10);
/// How long nginx has to stop when this program stops it.
const STOP_GRACE: Duration = Duration::from_secs(5);

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
    let config = Config::parse(
        std::env::args().skip(1),
        std::env::var("TODO_GATEWAY_ALLOW").ok().as_deref(),
    )?;
    std::fs::create_dir_all(&config.dir).map_err(|e| Error::Io {
        path: config.dir.clone(),
        source: e,
    })?;
    // Taken before nginx starts: none is lost, none kills us instead.
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGQUIT, SIGHUP]).map_err(Error::Signals)?;
    let mut names = Names::default();
    let mut current = names.round(&config.upstreams, &config.allow, &system_resolve);
    write_all(&config.dir, &config.upstreams, &current)?;
    log_addresses(&config.upstreams, &current);

    // Told to stop while resolving: nginx never starts.
    for raw in signals.pending() {
        if raw != SIGHUP {
            return Ok(ExitCode::from(128 + u8::try_from(raw).unwrap_or(0)));
        }
    }
    let (program, args) = config
        .command
        .split_first()
        .ok_or(Error::Usage("no nginx command after --"))?;
    // From here on, any way out of this function stops nginx (Drop).
    let mut nginx = Nginx::start(program, args)?;

    // Resolution blocks (getaddrinfo, up to the resolver's timeouts), so it
    // runs on a thread of its own: signals never wait for DNS.
    let (addresses, changes) = mpsc::sync_channel(1);
    let (upstreams, allow) = (config.upstreams.clone(), config.allow.clone());
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(RESOLVE_EVERY);
            if addresses
                .send(names.round(&upstreams, &allow, &system_resolve))
                .is_err()
            {
                return;
            }
        }
    });

    // nginx dies of a HUP that comes before it has set its handlers, which
    // it has once it has written its pid file: reloads wait until then.
    // A reload waiting: since when, and whether that was said yet.
    let mut reload: Option<(Instant, bool)> = None;
    loop {
        for raw in signals.pending() {
            match forwarded(raw) {
                Some(Signal::HUP) => reload = reload.or(Some((Instant::now(), false))),
                Some(signal) => nginx.signal(signal),
                None => {}
            }
        }
        if let Some(status) = nginx.try_wait()? {
            return Ok(exit_code(status));
        }
        if let Some((since, said)) = &mut reload {
            if nginx.is_ready(&config.pid_file) {
                nginx.signal(Signal::HUP);
                reload = None;
            } else if since.elapsed() > READY_WARNING && !*said {
                eprintln!(
                    "todo-gateway: a reload waits for nginx's pid in {} (is it the pid file of nginx's configuration?)",
                    config.pid_file.display()
                );
                *said = true;
            }
        }
        match changes.recv_timeout(POLL) {
            Ok(resolved) if resolved != current => {
                // An unwritable file keeps nginx on the addresses it has.
                match write_all(&config.dir, &config.upstreams, &resolved) {
                    Ok(()) => {
                        current = resolved;
                        log_addresses(&config.upstreams, &current);
                        reload = reload.or(Some((Instant::now(), false)));
                    }
                    Err(e) => eprintln!("todo-gateway: {e}"),
                }
            }
            Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return Err(Error::ResolverStopped),
        }
    }
}

/// nginx's process, stopped (TERM, then KILL after [`STOP_GRACE`]) when
/// dropped before it has exited: the gateway never leaves it behind.
#[derive(Debug)]
struct Nginx {
    child: Child,
    pid: Pid,
    program: PathBuf,
    exited: bool,
}

impl Nginx {
    fn start(program: &str, args: &[String]) -> Result<Nginx, Error> {
        let program = PathBuf::from(program);
        let child = Command::new(&program)
            .args(args)
            .spawn()
            .map_err(|e| Error::Io {
                path: program.clone(),
                source: e,
            })?;
        let pid = Pid::from_child(&child);
        Ok(Nginx {
            child,
            pid,
            program,
            exited: false,
        })
    }

    fn signal(&self, signal: Signal) {
        // Gone already: its status comes next.
        let _ = kill_process(self.pid, signal);
    }

    fn try_wait(&mut self) -> Result<Option<ExitStatus>, Error> {
        let status = self.child.try_wait().map_err(|e| Error::Io {
            path: self.program.clone(),
            source: e,
        })?;
        self.exited |= status.is_some();
        Ok(status)
    }

    /// Whether nginx has written its own pid to its pid file.
    fn is_ready(&self, pid_file: &Path) -> bool {
        std::fs::read_to_string(pid_file)
            .ok()
            .and_then(|text| text.trim().parse::<i32>().ok())
            == Some(self.pid.as_raw_nonzero().get())
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if self.exited {
            return;
        }
        self.signal(Signal::TERM);
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(POLL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What went wrong, for the one line the program prints before it exits.
#[derive(Debug, thiserror::Error)]
enum Error {
    #[error(
        "{0}\nusage: todo-gateway --dir DIR --pid-file FILE [--allow CIDR]… \
         --upstream NAME=HOST:PORT[,HOST:PORT…]… -- NGINX [ARG…]"
    )]
    Usage(&'static str),
    #[error("--upstream {0}: not NAME=HOST:PORT[,HOST:PORT…]")]
    BadUpstream(String),
    #[error("--upstream {0}: a second upstream of that name")]
    RepeatedUpstream(String),
    #[error("--allow {0}: not an address and a prefix length (10.0.0.0/8)")]
    BadNetwork(String),
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
    pid_file: PathBuf,
    allow: Vec<Network>,
    upstreams: Vec<Upstream>,
    command: Vec<String>,
}

impl Config {
    /// The command line, and `TODO_GATEWAY_ALLOW`'s networks.
    fn parse(
        mut args: impl Iterator<Item = String>,
        allow_env: Option<&str>,
    ) -> Result<Config, Error> {
        let mut dir = None;
        let mut pid_file = None;
        let mut allow = Vec::new();
        let mut upstreams: Vec<Upstream> = Vec::new();
        let network =
            |text: &str| Network::parse(text).ok_or_else(|| Error::BadNetwork(text.to_owned()));
        while let Some(arg) = args.next() {
            let mut value = |what| args.next().ok_or(Error::Usage(what));
            match arg.as_str() {
                "--dir" => dir = Some(PathBuf::from(value("--dir needs a value")?)),
                "--pid-file" => pid_file = Some(PathBuf::from(value("--pid-file needs a value")?)),
                "--allow" => allow.push(network(&value("--allow needs a value")?)?),
                "--upstream" => {
                    let value = value("--upstream needs a value")?;
                    let upstream =
                        Upstream::parse(&value).ok_or_else(|| Error::BadUpstream(value.clone()))?;
                    if upstreams.iter().any(|u| u.name == upstream.name) {
                        return Err(Error::RepeatedUpstream(value));
                    }
                    upstreams.push(upstream);
                }
                "--" => break,
                _ => return Err(Error::Usage("unknown argument")),
            }
        }
        for text in allow_env
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            allow.push(network(text)?);
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
            pid_file: pid_file.ok_or(Error::Usage("no --pid-file"))?,
            allow,
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

/// A network, `10.0.0.0/8` or `fd00::/8`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Network {
    address: IpAddr,
    prefix: u8,
}

impl Network {
    fn parse(text: &str) -> Option<Network> {
        let (address, prefix) = text.split_once('/')?;
        let address: IpAddr = address.parse().ok()?;
        let prefix: u8 = prefix.parse().ok()?;
        let bits = if address.is_ipv4() { 32 } else { 128 };
        (prefix <= bits).then_some(Network { address, prefix })
    }

    fn contains(&self, address: IpAddr) -> bool {
        let mask = |bits: u32| -> u128 {
            let keep = u32::from(self.prefix);
            if keep == 0 {
                0
            } else {
                u128::MAX << (bits - keep)
            }
        };
        match (self.address, address) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                (u128::from(u32::from(net)) ^ u128::from(u32::from(a)))
                    & mask(32)
                    & u128::from(u32::MAX)
                    == 0
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => (u128::from(net) ^ u128::from(a)) & mask(128) == 0,
            _ => false,
        }
    }
}

/// Each upstream's addresses, in the order of the upstreams: what the files
/// hold. Sorted, so that the same answers in another order are no change.
type Resolved = Vec<BTreeSet<SocketAddr>>;

/// How a name is looked up: the system's resolver, or a test's.
type Resolve<'a> = &'a dyn Fn(&str, u16) -> io::Result<Vec<SocketAddr>>;

fn system_resolve(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    (host, port).to_socket_addrs().map(Iterator::collect)
}

/// What each name resolved to last, and in how many rounds since it has not.
#[derive(Debug, Default)]
struct Names {
    known: HashMap<(String, u16), (Vec<SocketAddr>, u32)>,
    /// What was left out of each name's last answer: said when it changes.
    refused: HashMap<(String, u16), Vec<SocketAddr>>,
}

impl Names {
    /// One round of lookups: each name's answer, or its last one while it
    /// has failed fewer than [`FORGET_AFTER`] rounds in a row; only
    /// addresses nginx can be given (no IPv6 zone) and, when `allow` names
    /// networks, within one of them.
    fn round(
        &mut self,
        upstreams: &[Upstream],
        allow: &[Network],
        resolve: Resolve<'_>,
    ) -> Resolved {
        upstreams
            .iter()
            .map(|upstream| {
                upstream
                    .servers
                    .iter()
                    .flat_map(|(host, port)| self.lookup(host, *port, allow, resolve))
                    .collect()
            })
            .collect()
    }

    fn lookup(
        &mut self,
        host: &str,
        port: u16,
        allow: &[Network],
        resolve: Resolve<'_>,
    ) -> Vec<SocketAddr> {
        let key = (host.to_owned(), port);
        match resolve(host, port) {
            Ok(addresses) => {
                let (usable, mut refused): (Vec<_>, Vec<_>) =
                    addresses.into_iter().partition(|a| usable(a, allow));
                refused.sort();
                if !refused.is_empty() && self.refused.get(&key) != Some(&refused) {
                    eprintln!(
                        "todo-gateway: {host}: left out {refused:?} (an IPv6 zone, or outside --allow)"
                    );
                }
                self.refused.insert(key.clone(), refused);
                self.known.insert(key, (usable.clone(), 0));
                usable
            }
            Err(e) => match self.known.get_mut(&key) {
                Some((last, failures)) if *failures + 1 < FORGET_AFTER => {
                    *failures += 1;
                    eprintln!(
                        "todo-gateway: {host}: {e} (keeping its last addresses, failure {failures})"
                    );
                    last.clone()
                }
                _ => {
                    self.known.remove(&key);
                    Vec::new()
                }
            },
        }
    }
}

fn usable(address: &SocketAddr, allow: &[Network]) -> bool {
    let zoned = matches!(address, SocketAddr::V6(v6) if v6.scope_id() != 0);
    !zoned && (allow.is_empty() || allow.iter().any(|network| network.contains(address.ip())))
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
            // A new file, never one that is there (a link, say).
            match std::fs::remove_file(&partial) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&partial)?;
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

    fn v4(a: [u8; 4], port: u16) -> SocketAddr {
        SocketAddr::from((a, port))
    }

    #[test]
    fn parses_upstreams_networks_and_the_command() -> Result<(), Error> {
        let config = Config::parse(
            args(&[
                "--dir",
                "/tmp/u",
                "--pid-file",
                "/tmp/nginx.pid",
                "--allow",
                "10.0.0.0/8",
                "--upstream",
                "todo_auth=auth-server-1.:8080,auth-server-2.:8080",
                "--upstream",
                "todo_tasks=task-server-1:8080",
                "--",
                "/usr/sbin/nginx",
                "-g",
                "daemon off;",
            ]),
            Some(" 172.30.77.128/25, fd00::/8 ,"),
        )?;
        assert_eq!(config.dir, PathBuf::from("/tmp/u"));
        assert_eq!(config.pid_file, PathBuf::from("/tmp/nginx.pid"));
        assert_eq!(config.allow.len(), 3);
        assert_eq!(
            config.upstreams,
            vec![
                Upstream {
                    name: "todo_auth".into(),
                    servers: vec![
                        ("auth-server-1.".into(), 8080),
                        ("auth-server-2.".into(), 8080)
                    ],
                },
                Upstream {
                    name: "todo_tasks".into(),
                    servers: vec![("task-server-1".into(), 8080)],
                },
            ]
        );
        assert_eq!(config.command, vec!["/usr/sbin/nginx", "-g", "daemon off;"]);
        Ok(())
    }

    #[test]
    fn refuses_what_is_not_an_upstream_or_a_network_or_leaves_out_a_part() {
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
        for bad in [
            "10.0.0.0",
            "10.0.0.0/33",
            "::/129",
            "x/8",
            "10.0.0.0/-1",
            "/8",
        ] {
            assert!(Network::parse(bad).is_none(), "{bad} was taken");
        }
        let parse = |list: &[&str], env: Option<&str>| Config::parse(args(list), env);
        // A whole command line with `extra` before its `--`.
        let full = |extra: &[&str], env: Option<&str>| {
            let mut list = vec!["--dir", "d", "--pid-file", "p", "--upstream", "a=b:1"];
            list.extend_from_slice(extra);
            list.extend_from_slice(&["--", "nginx"]);
            Config::parse(args(&list), env)
        };
        assert!(full(&[], None).is_ok());
        assert!(matches!(
            full(&["--upstream", "a=c:2"], None),
            Err(Error::RepeatedUpstream(_))
        ));
        assert!(matches!(
            full(&["--allow", "10.0.0.0"], None),
            Err(Error::BadNetwork(_))
        ));
        assert!(matches!(
            full(&[], Some("10.0.0.0/8,nonsense")),
            Err(Error::BadNetwork(_))
        ));
        assert!(matches!(
            parse(
                &["--dir", "d", "--pid-file", "p", "--upstream", "a=b:1"],
                None
            ),
            Err(Error::Usage("no nginx command after --"))
        ));
        assert!(matches!(
            parse(&["--dir", "d", "--pid-file", "p", "--", "nginx"], None),
            Err(Error::Usage("no --upstream"))
        ));
        assert!(matches!(
            parse(
                &["--pid-file", "p", "--upstream", "a=b:1", "--", "nginx"],
                None
            ),
            Err(Error::Usage("no --dir"))
        ));
        assert!(matches!(
            parse(&["--dir", "d", "--upstream", "a=b:1", "--", "nginx"], None),
            Err(Error::Usage("no --pid-file"))
        ));
        assert!(matches!(
            parse(&["--frobnicate"], None),
            Err(Error::Usage("unknown argument"))
        ));
    }

    #[test]
    fn networks_hold_the_addresses_within_their_prefix_only()
    -> Result<(), Box<dyn std::error::Error>> {
        let range = Network::parse("172.30.77.128/25").ok_or("range")?;
        assert!(range.contains("172.30.77.128".parse()?));
        assert!(range.contains("172.30.77.255".parse()?));
        assert!(!range.contains("172.30.77.127".parse()?));
        assert!(!range.contains("172.30.78.130".parse()?));
        assert!(
            !range.contains("::ffff:172.30.77.130".parse()?),
            "no family crossing"
        );
        let everything = Network::parse("0.0.0.0/0").ok_or("all")?;
        assert!(everything.contains("8.8.8.8".parse()?));
        let host = Network::parse("10.1.2.3/32").ok_or("host")?;
        assert!(host.contains("10.1.2.3".parse()?) && !host.contains("10.1.2.2".parse()?));
        let v6 = Network::parse("fd00:1::/32").ok_or("v6")?;
        assert!(v6.contains("fd00:1:ffff::1".parse()?));
        assert!(!v6.contains("fd00:2::1".parse()?));
        Ok(())
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
        let fake = |host: &str, port: u16| -> io::Result<Vec<SocketAddr>> {
            match host {
                "one" => Ok(vec![v4([10, 0, 0, 1], port)]),
                // A name with two answers, one of them another's too.
                "two" => Ok(vec![v4([10, 0, 0, 2], port), v4([10, 0, 0, 1], port)]),
                _ => Err(io::Error::other("no such name")),
            }
        };
        let resolved = Names::default().round(&upstreams, &[], &fake);
        assert_eq!(
            render(&resolved[0]),
            "server 10.0.0.1:80;\nserver 10.0.0.2:80;\n"
        );
        assert_eq!(
            render(&resolved[1]),
            "# no server resolves\nserver 127.0.0.1:9 down;\n"
        );
        // The same answers in another order are the same.
        let again = Names::default().round(&upstreams, &[], &|host: &str, port: u16| {
            let mut answers = fake(host, port)?;
            answers.reverse();
            Ok(answers)
        });
        assert_eq!(resolved, again);
    }

    #[test]
    fn a_name_that_fails_keeps_its_addresses_for_two_rounds_and_loses_them_at_the_third() {
        let upstreams = vec![Upstream {
            name: "a".into(),
            servers: vec![("flaky".into(), 80)],
        }];
        let up = |_: &str, port: u16| -> io::Result<Vec<SocketAddr>> {
            Ok(vec![v4([10, 0, 0, 7], port)])
        };
        let down =
            |_: &str, _: u16| -> io::Result<Vec<SocketAddr>> { Err(io::Error::other("timed out")) };
        let mut names = Names::default();
        let known = names.round(&upstreams, &[], &up);
        assert_eq!(names.round(&upstreams, &[], &down), known, "first failure");
        assert_eq!(names.round(&upstreams, &[], &down), known, "second failure");
        assert!(
            names.round(&upstreams, &[], &down)[0].is_empty(),
            "third failure"
        );
        // Back: its addresses at once, and its count starts over.
        assert_eq!(names.round(&upstreams, &[], &up), known);
        assert_eq!(names.round(&upstreams, &[], &down), known);
        // A name never seen has nothing to keep.
        assert!(Names::default().round(&upstreams, &[], &down)[0].is_empty());
    }

    #[test]
    fn leaves_out_addresses_outside_the_allowed_networks_and_zoned_ipv6()
    -> Result<(), Box<dyn std::error::Error>> {
        let upstreams = vec![Upstream {
            name: "a".into(),
            servers: vec![("x".into(), 80)],
        }];
        let answers = |_: &str, port: u16| -> io::Result<Vec<SocketAddr>> {
            Ok(vec![
                v4([172, 30, 77, 130], port),
                // What a search domain could make of a stopped server's name.
                v4([93, 184, 216, 34], port),
                SocketAddr::V6(std::net::SocketAddrV6::new(
                    std::net::Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1),
                    port,
                    0,
                    2,
                )),
            ])
        };
        let allow = [Network::parse("172.30.77.128/25").ok_or("range")?];
        let resolved = Names::default().round(&upstreams, &allow, &answers);
        assert_eq!(render(&resolved[0]), "server 172.30.77.130:80;\n");
        // Without --allow every address but the zoned one.
        let open = Names::default().round(&upstreams, &[], &answers);
        assert_eq!(
            render(&open[0]),
            "server 93.184.216.34:80;\nserver 172.30.77.130:80;\n"
        );
        Ok(())
    }

    #[test]
    fn writes_each_file_whole_and_replaces_it_and_never_through_a_link()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let upstreams = vec![Upstream {
            name: "todo_auth".into(),
            servers: vec![("x".into(), 1)],
        }];
        let first: Resolved = vec![BTreeSet::from([v4([10, 0, 0, 1], 8080)])];
        write_all(dir.path(), &upstreams, &first)?;
        assert_eq!(
            std::fs::read_to_string(dir.path().join("todo_auth.conf"))?,
            "server 10.0.0.1:8080;\n"
        );
        // A link where the new file goes is replaced, not written through.
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep")?;
        std::os::unix::fs::symlink(&victim, dir.path().join(".todo_auth.conf.new"))?;
        let second: Resolved = vec![BTreeSet::from([v4([10, 0, 0, 9], 8080)])];
        write_all(dir.path(), &upstreams, &second)?;
        assert_eq!(
            std::fs::read_to_string(dir.path().join("todo_auth.conf"))?,
            "server 10.0.0.9:8080;\n"
        );
        assert_eq!(std::fs::read_to_string(&victim)?, "keep");
        let mut left: Vec<_> = std::fs::read_dir(dir.path())?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()?;
        left.sort();
        assert_eq!(
            left,
            vec![std::ffi::OsString::from("todo_auth.conf"), "victim".into()],
            "no partial file is left"
        );
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
