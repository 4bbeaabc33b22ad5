//! The binary with a stand-in for nginx (a shell that records the signals it
//! gets): the upstream files before it starts, signals passed on, its exit
//! status as ours.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

fn wait_for(what: &str, mut done: impl FnMut() -> bool) -> Result {
    let start = Instant::now();
    while !done() {
        // Long: a lookup of name.invalid goes to the resolver.
        if start.elapsed() > Duration::from_secs(30) {
            return Err(format!("waited 30 s for {what}").into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn writes_the_files_before_nginx_starts_passes_signals_on_and_exits_as_nginx_did() -> Result {
    let dir = tempfile::tempdir()?;
    let upstreams = dir.path().join("upstreams");
    let seen = dir.path().join("seen");
    let pid_file = dir.path().join("nginx.pid");
    // The stand-in sets its traps first, copies the file it was started with
    // (it must exist by then), and writes its pid file only half a second
    // later, as nginx sets its handlers before it writes its pid: a HUP that
    // comes before must wait, not kill it. It notes each HUP ("early" if its
    // pid file is not written yet) and exits 7 on TERM.
    let script = format!(
        "trap 'if [ -s {p} ]; then echo hup; else echo early; fi >> {s}' HUP; trap 'exit 7' TERM; cp {u}/todo_auth.conf {d}/at-start; \
         sleep 0.5; echo $$ > {p}; while :; do sleep 0.02; done",
        u = upstreams.display(),
        d = dir.path().display(),
        s = seen.display(),
        p = pid_file.display(),
    );
    let gateway = Command::new(env!("CARGO_BIN_EXE_todo-gateway"))
        .arg("--dir")
        .arg(&upstreams)
        .arg("--pid-file")
        .arg(&pid_file)
        .args(["--upstream", "todo_auth=localhost:8080,name.invalid:8080"])
        .args(["--upstream", "todo_tasks=name.invalid:8081"])
        .args(["--", "sh", "-c", &script])
        .env_remove("TODO_GATEWAY_ALLOW")
        .stderr(Stdio::piped())
        .spawn()?;
    let pid = Pid::from_child(&gateway);

    let at_start = dir.path().join("at-start");
    wait_for("the stand-in to start", || !read(&at_start).is_empty())?;
    let auth = read(&at_start);
    assert!(
        auth.contains("server 127.0.0.1:8080;\n"),
        "localhost's address: {auth}"
    );
    assert!(
        !auth.contains("invalid"),
        "a name that does not resolve is left out: {auth}"
    );
    assert_eq!(
        read(&upstreams.join("todo_tasks.conf")),
        "# no server resolves\nserver 127.0.0.1:9 down;\n",
        "an upstream with no address gets a server that is down"
    );

    // Before the stand-in's pid file: held until it is there.
    assert!(
        read(&pid_file).is_empty(),
        "the stand-in wrote its pid file early"
    );
    kill_process(pid, Signal::HUP)?;
    wait_for("the HUP to reach the stand-in", || read(&seen) == "hup\n")?;
    kill_process(pid, Signal::HUP)?;
    wait_for("the second HUP", || read(&seen) == "hup\nhup\n")?;
    kill_process(pid, Signal::TERM)?;
    let output = gateway.wait_with_output()?;
    assert_eq!(
        output.status.code(),
        Some(7),
        "the stand-in's status: {output:?}"
    );
    let log = String::from_utf8(output.stderr)?;
    assert!(
        log.contains("upstream todo_tasks: no server resolves"),
        "{log}"
    );
    Ok(())
}

#[test]
fn reports_nginx_killed_by_a_signal_as_128_and_the_signal() -> Result {
    let dir = tempfile::tempdir()?;
    let output = Command::new(env!("CARGO_BIN_EXE_todo-gateway"))
        .arg("--dir")
        .arg(dir.path().join("u"))
        .arg("--pid-file")
        .arg(dir.path().join("pid"))
        .args(["--upstream", "a=localhost:1"])
        .args(["--", "sh", "-c", "kill -KILL $$"])
        .output()?;
    assert_eq!(output.status.code(), Some(128 + 9), "{output:?}");
    Ok(())
}

#[test]
fn refuses_a_bad_command_line_with_its_usage() -> Result {
    let output = Command::new(env!("CARGO_BIN_EXE_todo-gateway"))
        .args([
            "--dir",
            "/nonexistent",
            "--pid-file",
            "/nonexistent/pid",
            "--upstream",
            "a=b",
            "--",
            "true",
        ])
        .output()?;
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8(output.stderr)?.contains("--upstream a=b: not NAME=HOST:PORT"));
    Ok(())
}
