//! The architecture line: todo-http is the HTTP adapter only. An embedder
//! who mounts its Routers pulls in neither the database, nor the command
//! line, nor certificate generation, nor the logging set-up: those are
//! todo-server's.

use std::collections::{HashMap, HashSet};
use std::process::Command;

/// What todo-http must not reach through its normal dependencies.
const FORBIDDEN: &[&str] = &[
    "todo-store",
    "todo-sqlite-process",
    "todo-server",
    "diesel",
    "libsqlite3-sys",
    "pq-sys",
    "r2d2",
    "clap",
    "rcgen",
    "tracing-subscriber",
];

/// The packages `root` reaches through normal (and build) dependencies.
fn reached_from(metadata: &serde_json::Value, root: &str) -> HashSet<String> {
    let names: HashMap<&str, &str> = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let nodes: HashMap<&str, &serde_json::Value> = metadata["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["id"].as_str().unwrap(), n))
        .collect();
    let root = names
        .iter()
        .find(|(_, name)| **name == root)
        .map(|(id, _)| *id)
        .unwrap();
    let mut seen = HashSet::new();
    let mut stack = vec![root];
    while let Some(id) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        for dep in nodes[id]["deps"].as_array().unwrap() {
            let normal = dep["dep_kinds"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k["kind"].is_null() || k["kind"] == "build");
            if normal {
                stack.push(dep["pkg"].as_str().unwrap());
            }
        }
    }
    seen.iter().map(|id| names[id].to_owned()).collect()
}

fn metadata() -> serde_json::Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn todo_http_depends_on_no_store_command_line_certificate_generator_or_log_setup() {
    let metadata = metadata();
    let http = reached_from(&metadata, "todo-http");
    assert!(
        http.contains("todo-core") && http.contains("todo-auth") && http.contains("hyper"),
        "the walk found the adapter's own dependencies: {http:?}"
    );
    let mut found: Vec<&str> = FORBIDDEN
        .iter()
        .copied()
        .filter(|name| http.contains(*name))
        .collect();
    found.sort_unstable();
    assert!(found.is_empty(), "todo-http depends on {found:?}");

    // The walk does see them where they belong: the wiring has them all.
    let server = reached_from(&metadata, "todo-server");
    for name in ["todo-store", "clap", "rcgen", "tracing-subscriber"] {
        assert!(server.contains(name), "todo-server lost {name}");
    }
}

/// `unsafe` lives in one crate: every workspace member takes the
/// workspace's lints (`unsafe_code` forbidden) but todo-sqlite-process,
/// whose own deny it (one function allows it, for SQLite's C API).
#[test]
fn only_todo_sqlite_process_may_hold_unsafe_code() {
    let metadata = metadata();
    let members: HashSet<&str> = metadata["workspace_members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap())
        .collect();
    let workspace_lints = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml"),
    )
    .unwrap();
    assert!(workspace_lints.contains("unsafe_code = \"forbid\""));
    let mut checked = 0;
    for package in metadata["packages"].as_array().unwrap() {
        if !members.contains(package["id"].as_str().unwrap()) {
            continue;
        }
        let name = package["name"].as_str().unwrap();
        let manifest = std::fs::read_to_string(package["manifest_path"].as_str().unwrap()).unwrap();
        let inherits = manifest.contains("[lints]\nworkspace = true");
        if name == "todo-sqlite-process" {
            assert!(
                !inherits && manifest.contains("unsafe_code = \"deny\""),
                "{name}"
            );
            // Its copy of the workspace's lints kept in step: the same
            // lines in each table, but `unsafe_code`.
            for table in ["lints.rust", "lints.clippy"] {
                let workspace = lint_lines(&workspace_lints, &format!("workspace.{table}"));
                assert!(!workspace.is_empty(), "{table}");
                assert_eq!(
                    lint_lines(&manifest, table),
                    workspace,
                    "{name}'s [{table}]"
                );
            }
        } else {
            assert!(inherits, "{name} does not take the workspace's lints");
        }
        checked += 1;
    }
    assert!(checked >= 10, "{checked} members");
}

/// The settings of `[table]` in a manifest's text, `unsafe_code` left out,
/// sorted.
fn lint_lines(manifest: &str, table: &str) -> Vec<String> {
    let header = format!("[{table}]");
    let mut lines: Vec<String> = manifest
        .lines()
        .skip_while(|line| line.trim() != header)
        .skip(1)
        .take_while(|line| !line.trim_start().starts_with('['))
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter(|line| !line.starts_with("unsafe_code"))
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}
