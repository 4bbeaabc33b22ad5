//! The library crates answer typed errors: no function of todo-core,
//! todo-auth, todo-store, todo-http or todo-server (public or not: a
//! private one's error reaches the public API through `?`) returns
//! `Result<_, String>` or a boxed `dyn Error`, which a caller can only
//! print, not match on.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every function signature of `source` (public or not, `async`, `const`,
/// trait methods: a private helper's error reaches the public API through
/// `?`), and every type alias, whitespace collapsed.
fn public_signatures(source: &str) -> Vec<String> {
    // The code only: not comments (doc examples), not a module's tests.
    let code: String = source
        .split("#[cfg(test)]")
        .next()
        .unwrap_or("")
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let source = code.as_str();
    let mut signatures = Vec::new();
    for keyword in ["fn ", "type "] {
        let mut rest = source;
        while let Some(at) = rest.find(keyword) {
            let starts_a_word = at == 0 || rest[..at].ends_with(char::is_whitespace);
            let tail = &rest[at..];
            let end = tail.find(['{', ';']).unwrap_or(tail.len());
            if starts_a_word {
                let signature = tail[..end].split_whitespace().collect::<Vec<_>>().join(" ");
                // A type alias reads as a function answering its right side.
                signatures.push(signature.replacen(" = ", " -> ", 1));
            }
            rest = &tail[end.max(keyword.len())..];
        }
    }
    signatures
}

fn untyped(signature: &str) -> bool {
    let Some(result) = signature.split("->").nth(1) else {
        return false;
    };
    let result = result.replace(' ', "");
    result.contains("Result<")
        && (result.ends_with(",String>")
            || result.contains("Box<dynstd::error::Error")
            || result.contains("Box<dynError")
            || result.ends_with(",BoxError>"))
}

#[test]
fn no_public_function_of_the_library_crates_answers_an_untyped_error() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut files = Vec::new();
    for krate in [
        "todo-core",
        "todo-auth",
        "todo-store",
        "todo-http",
        "todo-server",
    ] {
        rust_files(&workspace.join(krate).join("src"), &mut files);
    }
    assert!(files.len() > 20, "found the sources: {files:?}");
    let mut seen = 0;
    let mut untyped_ones = Vec::new();
    for file in &files {
        for signature in public_signatures(&std::fs::read_to_string(file).unwrap()) {
            seen += 1;
            if untyped(&signature) {
                untyped_ones.push(format!("{}: {signature}", file.display()));
            }
        }
    }
    assert!(seen > 100, "read the public functions ({seen})");
    assert!(
        untyped_ones.is_empty(),
        "public functions with untyped errors:\n{}",
        untyped_ones.join("\n")
    );
    // The reading itself recognises what it must refuse.
    assert!(untyped("pub fn parse(raw: &str) -> Result<Self, String>"));
    assert!(untyped(
        "pub fn run() -> Result<(), Box<dyn std::error::Error + Send>>"
    ));
    assert!(!untyped(
        "pub fn parse(raw: &str) -> Result<Self, DatabaseUrlError>"
    ));
}
