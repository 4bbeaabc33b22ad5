//! The architecture line: todo-core does no I/O and knows no database, HTTP,
//! async runtime or crypto crate, directly or through another crate.

use std::collections::{HashMap, HashSet};
use std::process::Command;

const FORBIDDEN: &[&str] = &[
    "diesel",
    "r2d2",
    "argon2",
    "jsonwebtoken",
    "governor",
    "hyper",
    "rustls",
    "tokio",
    "aws-lc-rs",
    "aws-lc-sys",
    "ring",
    "libsqlite3-sys",
    "pq-sys",
    "reqwest",
    "password-hash",
    "sha2",
];

#[test]
fn todo_core_depends_on_no_database_http_runtime_or_crypto_crate() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo metadata");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();

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
        .find(|(_, name)| **name == "todo-core")
        .map(|(id, _)| *id)
        .unwrap();

    // Walk normal (non-dev) dependencies only: what an embedder would pull in.
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
    let reached: Vec<&str> = seen.iter().map(|id| names[id]).collect();
    assert!(
        reached.contains(&"thiserror"),
        "the walk found the core's own dependencies"
    );
    let bad: Vec<&&str> = reached.iter().filter(|n| FORBIDDEN.contains(n)).collect();
    assert!(
        bad.is_empty(),
        "todo-core reaches {bad:?}; all it reaches: {reached:?}"
    );
}

/// The features `cargo tree` resolves for todo-core across the workspace,
/// one entry per line it prints for todo-core (e.g. `"testing"` or `""`).
fn core_features(edges: &str) -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .args(["tree", "--locked", "--workspace", "--prefix", "none"])
        .args(["-e", edges, "-f", "{p} [{f}]"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo tree");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter(|line| line.starts_with("todo-core v"))
        .filter_map(|line| {
            let features = line.rsplit_once('[')?.1;
            Some(features.split_once(']')?.0.to_owned())
        })
        .collect()
}

/// `todo_core::testing` (a clock moved by hand, seeded randomness, tokens in
/// a table) must never be compiled into a build of the workspace's
/// libraries and binaries: only tests, benchmarks and examples enable it,
/// through their dev-dependencies.
#[test]
fn no_build_without_dev_dependencies_compiles_the_testing_fakes() {
    let built = core_features("normal,build");
    assert!(!built.is_empty(), "cargo tree printed no todo-core");
    assert!(
        built
            .iter()
            .all(|f| !f.split(',').any(|f| f.trim() == "testing")),
        "a normal dependency enables todo-core's `testing`: {built:?}"
    );
    // The same reading sees the feature where the tests do turn it on.
    let tested = core_features("all");
    assert!(
        tested
            .iter()
            .any(|f| f.split(',').any(|f| f.trim() == "testing")),
        "the dev-dependencies' `testing` was not seen: {tested:?}"
    );
}
