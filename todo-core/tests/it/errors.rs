//! The library crates answer typed errors: no public function of todo-core,
//! todo-auth or todo-store returns `Result<_, String>` or a boxed
//! `dyn Error`, which a caller can only print, not match on.

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

/// Every `pub fn` signature of `source`, whitespace collapsed.
fn public_signatures(source: &str) -> Vec<String> {
    let mut signatures = Vec::new();
    let mut rest = source;
    while let Some(at) = rest.find("pub fn ") {
        let tail = &rest[at..];
        let end = tail.find(['{', ';']).unwrap_or(tail.len());
        signatures.push(tail[..end].split_whitespace().collect::<Vec<_>>().join(" "));
        rest = &tail[end..];
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
