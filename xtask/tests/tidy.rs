//! Tidy checks: rules of the codebase that a test enforces rather than memory.
//! - every Rust source file starts with a `//!` doc comment;
//! - crates depend only downward (see docs/ARCHITECTURE.md), `cache-core` on no driver
//!   or framework, `cache-testkit` only as a dev-dependency, only `authd` on actix-web.

use std::fs;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").into()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "target" || n == "fuzz") {
                continue;
            }
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_source_file_starts_with_a_module_doc() {
    let root = root();
    let mut files = Vec::new();
    rust_files(&root.join("crates"), &mut files);
    rust_files(&root.join("xtask"), &mut files);
    assert!(files.len() > 10, "found only {} files", files.len());
    let missing: Vec<_> = files
        .iter()
        .filter(|f| {
            let text = fs::read_to_string(f).unwrap_or_default();
            !text.lines().find(|l| !l.trim().is_empty()).is_some_and(|l| l.starts_with("//!"))
        })
        .map(|f| f.strip_prefix(&root).unwrap_or(f).display().to_string())
        .collect();
    assert!(missing.is_empty(), "files without a leading `//!` doc: {missing:#?}");
}

/// Names of the dependencies in `[table]` of a manifest.
fn deps(manifest: &toml::Table, table: &str) -> Vec<String> {
    manifest
        .get(table)
        .and_then(|t| t.as_table())
        .map_or_else(Vec::new, |t| t.keys().cloned().collect())
}

fn manifest(krate: &str) -> toml::Table {
    let path = root().join("crates").join(krate).join("Cargo.toml");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.parse().unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

const WORKSPACE: &[&str] =
    &["cache-core", "cache-testkit", "cache-memory", "cache-sql", "cache-redis", "auth", "authd"];

/// What each crate may depend on among the workspace crates (normal dependencies).
fn allowed(krate: &str) -> &'static [&'static str] {
    match krate {
        "cache-core" => &[],
        "cache-testkit" | "cache-memory" | "cache-sql" | "cache-redis" | "auth" => &["cache-core"],
        "authd" => &["cache-core", "cache-memory", "cache-sql", "cache-redis", "auth"],
        _ => &[],
    }
}

#[test]
fn crates_depend_only_downward() {
    let crates: Vec<String> = fs::read_dir(root().join("crates"))
        .expect("crates/")
        .flatten()
        .filter(|e| e.path().join("Cargo.toml").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    for krate in &crates {
        assert!(WORKSPACE.contains(&krate.as_str()), "crate {krate} is not placed in the layering");
        let m = manifest(krate);
        for dep in deps(&m, "dependencies") {
            if WORKSPACE.contains(&dep.as_str()) {
                assert!(allowed(krate).contains(&dep.as_str()), "{krate} must not depend on {dep}");
            }
            if dep.starts_with("actix") {
                assert_eq!(krate, "authd", "only authd knows actix-web ({krate} -> {dep})");
            }
        }
    }
}

#[test]
fn cache_core_depends_on_no_driver_or_framework() {
    const FORBIDDEN: &[&str] = &[
        "fred",
        "redis",
        "diesel",
        "diesel-async",
        "bb8",
        "moka",
        "actix-web",
        "actix-session",
        "lettre",
        "argon2",
        "tokio-postgres",
        "libsqlite3-sys",
        "reqwest",
        "hyper",
    ];
    let m = manifest("cache-core");
    for dep in deps(&m, "dependencies") {
        assert!(!FORBIDDEN.contains(&dep.as_str()), "cache-core must not depend on {dep}");
        assert!(!WORKSPACE.contains(&dep.as_str()), "cache-core must not depend on {dep}");
    }
    // tokio is allowed for its sync primitives only: no I/O features.
    let tokio = m["dependencies"].get("tokio").and_then(|t| t.get("features"));
    if let Some(features) = tokio.and_then(|f| f.as_array()) {
        for f in features {
            let f = f.as_str().unwrap_or_default();
            assert!(
                !["net", "fs", "io-util", "process", "full"].contains(&f),
                "cache-core uses tokio/{f}"
            );
        }
    }
}

#[test]
fn the_testkit_is_only_a_dev_dependency() {
    for krate in WORKSPACE {
        assert!(
            !deps(&manifest(krate), "dependencies").iter().any(|d| d == "cache-testkit"),
            "{krate} depends on cache-testkit outside dev-dependencies"
        );
    }
}
