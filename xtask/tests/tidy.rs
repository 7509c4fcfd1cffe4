//! Tidy checks: rules of the codebase that a test enforces rather than memory.
//! - every Rust source file starts with a `//!` doc comment;
//! - crates depend only downward (see docs/ARCHITECTURE.md), `cache-core` on no driver
//!   or framework, `cache-testkit` only as a dev-dependency, only the HTTP crates
//!   (`auth-actix`, `authd`, `session-actix`) on actix-web; `xtask` is on top: nothing
//!   depends on it;
//! - no library source reads the environment (only `authd` knows configuration);
//! - a source file over 600 lines says why at its top (`// tidy: long-file <reason>`);
//! - no import circle between the top-level modules of a crate;
//! - no dependency needs a newer Rust than the workspace's `rust-version`.

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
            // A crate root may take its doc from its README (`#![doc = include_str!(..)]`).
            !text.lines().find(|l| !l.trim().is_empty()).is_some_and(|l| {
                l.starts_with("//!") || l.starts_with("#![doc = include_str!(\"../README.md\")]")
            })
        })
        .map(|f| f.strip_prefix(&root).unwrap_or(f).display().to_string())
        .collect();
    assert!(missing.is_empty(), "files without a leading `//!` doc: {missing:#?}");
}

/// Names of the dependencies in `[table]` of a manifest: the package's name, also when
/// the dependency is renamed (`auth` is the package `tiered-auth`).
fn deps(manifest: &toml::Table, table: &str) -> Vec<String> {
    let Some(table) = manifest.get(table).and_then(|t| t.as_table()) else { return Vec::new() };
    table
        .iter()
        .map(|(key, spec)| {
            let package = spec.get("package").and_then(|p| p.as_str());
            // `auth.workspace = true` takes the workspace's `package = "tiered-auth"`.
            match (package, key.as_str()) {
                (Some(p), _) => p.to_owned(),
                (None, "auth") => "tiered-auth".to_owned(),
                (None, k) => k.to_owned(),
            }
        })
        .collect()
}

fn manifest(krate: &str) -> toml::Table {
    let path = root().join("crates").join(krate).join("Cargo.toml");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.parse().unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

const WORKSPACE: &[&str] = &[
    "cache-core",
    "cache-testkit",
    "cache-memory",
    "cache-sql",
    "cache-redis",
    "tiered-auth",
    "auth-actix",
    "authd",
    "session-actix",
];

/// The crates that know actix-web: the service and the adapters other apps link.
const ACTIX: &[&str] = &["auth-actix", "authd", "session-actix"];

/// What each crate may depend on among the workspace crates (normal dependencies).
fn allowed(krate: &str) -> &'static [&'static str] {
    match krate {
        "cache-core" => &[],
        "cache-testkit" | "cache-memory" | "cache-sql" | "cache-redis" | "tiered-auth" => {
            &["cache-core"]
        }
        "auth-actix" => &["cache-core", "tiered-auth"],
        "authd" => {
            &["cache-core", "cache-memory", "cache-sql", "cache-redis", "tiered-auth", "auth-actix"]
        }
        "session-actix" => &["cache-core", "cache-memory", "cache-sql", "cache-redis"],
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
                assert!(
                    ACTIX.contains(&krate.as_str()),
                    "only the HTTP crates know actix-web ({krate} -> {dep})"
                );
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

#[test]
fn xtask_depends_downward_and_nothing_depends_on_it() {
    let path = root().join("xtask").join("Cargo.toml");
    let xtask: toml::Table = fs::read_to_string(&path).unwrap().parse().unwrap();
    for dep in deps(&xtask, "dependencies") {
        assert_ne!(dep, "cache-testkit", "xtask depends on cache-testkit outside dev-dependencies");
    }
    for krate in WORKSPACE {
        let m = manifest(krate);
        for table in ["dependencies", "dev-dependencies", "build-dependencies"] {
            assert!(!deps(&m, table).iter().any(|d| d == "xtask"), "{krate} depends on xtask");
        }
    }
}

/// Library sources (not their tests, not `authd`, not the testkit, whose job is to read
/// `DATABASE_URL`/`REDIS_URL` for the skip policy) never read the environment: libraries
/// take typed arguments, and only `authd` knows configuration.
#[test]
fn no_environment_reads_outside_authd() {
    let root = root();
    let mut offenders = Vec::new();
    for krate in WORKSPACE.iter().filter(|k| !["authd", "cache-testkit"].contains(k)) {
        let mut files = Vec::new();
        rust_files(&root.join("crates").join(krate).join("src"), &mut files);
        for file in files {
            let text = fs::read_to_string(&file).unwrap_or_default();
            for (i, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or_default();
                if ["env::var(", "env::var_os(", "env::vars(", "env::vars_os(", "env!(\"AUTH"]
                    .iter()
                    .any(|p| code.contains(p))
                {
                    let shown = file.strip_prefix(&root).unwrap_or(&file).display().to_string();
                    offenders.push(format!("{shown}:{}", i + 1));
                }
            }
        }
    }
    assert!(offenders.is_empty(), "environment read outside authd: {offenders:#?}");
}

/// No source file grows past 600 lines without saying why at its top: past that, split it
/// along its seam (docs/ARCHITECTURE.md, STYLE: one subject per file).
#[test]
fn long_files_say_why() {
    const MAX_LINES: usize = 600;
    let root = root();
    let mut files = Vec::new();
    rust_files(&root.join("crates"), &mut files);
    rust_files(&root.join("xtask"), &mut files);
    let long: Vec<_> = files
        .iter()
        .filter(|f| {
            let text = fs::read_to_string(f).unwrap_or_default();
            text.lines().count() > MAX_LINES
                && !text.lines().take(20).any(|l| {
                    l.trim_start()
                        .strip_prefix("// tidy: long-file ")
                        .is_some_and(|reason| !reason.trim().is_empty())
                })
        })
        .map(|f| f.strip_prefix(&root).unwrap_or(f).display().to_string())
        .collect();
    assert!(
        long.is_empty(),
        "files over {MAX_LINES} lines without a `// tidy: long-file <reason>` line at the top: \
         {long:#?}"
    );
}

/// The modules of `crate`'s `src` down to `depth` levels (`app`, or with 2 also
/// `app::startup`: a file or a folder each) and, for each, the other such modules its
/// non-test code names through `crate::`.
fn module_graph(
    krate: &str,
    depth: usize,
) -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let src = root().join("crates").join(krate).join("src");
    // `a::b` is a module of its own when `src/a/b.rs` or `src/a/b/` exists.
    let module = |names: &[String]| -> String {
        let mut path = src.clone();
        let mut taken = Vec::new();
        for name in names.iter().take(depth) {
            let is_module = path.join(format!("{name}.rs")).is_file() || path.join(name).is_dir();
            if !taken.is_empty() && !is_module {
                break;
            }
            taken.push(name.clone());
            path = path.join(name);
        }
        taken.join("::")
    };
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph = std::collections::BTreeMap::<String, std::collections::BTreeSet<String>>::new();
    for file in files {
        let rel = file.strip_prefix(&src).unwrap_or(&file);
        let mut names: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().trim_end_matches(".rs").to_owned())
            .collect();
        if names.last().is_some_and(|n| n == "mod") {
            names.pop();
        }
        let Some(first) = names.first() else { continue };
        if ["lib", "main"].contains(&first.as_str()) {
            continue;
        }
        let top = module(&names);
        let text = fs::read_to_string(&file).unwrap_or_default();
        // Unit tests may reach anywhere in their crate; only the code's own imports count.
        let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or_default();
        for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for (i, _) in line.match_indices("crate::") {
                let path: Vec<String> = line[i + "crate::".len()..]
                    .split("::")
                    .map(|part| {
                        part.chars()
                            .take_while(|c| {
                                c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'
                            })
                            .collect::<String>()
                    })
                    .take_while(|name| !name.is_empty())
                    .collect();
                if path.is_empty() {
                    continue;
                }
                let name = module(&path);
                if name != top {
                    graph.entry(top.clone()).or_default().insert(name);
                }
            }
        }
    }
    graph
}

/// A module that (transitively) imports itself, as `a -> b -> a`.
fn find_circle(
    graph: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
) -> Option<Vec<String>> {
    fn walk(
        graph: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut std::collections::BTreeSet<String>,
    ) -> Option<Vec<String>> {
        let here = path.last()?.clone();
        for next in graph.get(&here).into_iter().flatten() {
            if let Some(i) = path.iter().position(|p| p == next) {
                let mut circle = path[i..].to_vec();
                circle.push(next.clone());
                return Some(circle);
            }
            if done.contains(next) {
                continue;
            }
            path.push(next.clone());
            if let Some(circle) = walk(graph, path, done) {
                return Some(circle);
            }
            path.pop();
        }
        done.insert(here);
        None
    }
    let mut done = std::collections::BTreeSet::new();
    for start in graph.keys() {
        if let Some(circle) = walk(graph, &mut vec![start.clone()], &mut done) {
            return Some(circle);
        }
    }
    None
}

/// No import circle between the top-level modules of a crate: a module that composes
/// others lives above them, and features import their settings, never the reverse.
/// `KNOWN` lists the circles not untangled yet, each with its issue; the test fails when
/// a new one appears, and when a known one is gone (so the list shrinks).
#[test]
fn no_import_circle_inside_a_crate() {
    // None left; a circle that cannot be untangled at once goes here with its issue.
    const KNOWN: &[(&str, &str, &str)] = &[];
    for krate in WORKSPACE {
        let mut graph = module_graph(krate, 1);
        for (k, a, b) in KNOWN.iter().filter(|(k, ..)| k == krate) {
            let (a, b) = (a.to_string(), b.to_string());
            let closes = graph.get(&a).is_some_and(|s| s.contains(&b))
                && graph.get(&b).is_some_and(|s| s.contains(&a));
            assert!(closes, "{k}: the known circle {a} <-> {b} is gone: drop it from KNOWN");
            graph.entry(b).or_default().remove(&a);
        }
        if let Some(circle) = find_circle(&graph) {
            panic!("import circle in {krate}: {}", circle.join(" -> "));
        }
    }
}

/// A `rust-version` as comparable numbers (`1.88` and `1.88.0` are equal).
fn rust_version(text: &str) -> Vec<u64> {
    let mut parts: Vec<u64> = text.split('.').map(|p| p.parse().unwrap_or(u64::MAX)).collect();
    parts.resize(3, 0);
    parts
}

/// No package of the dependency tree (every platform's, as `cargo metadata` resolves it)
/// declares a newer `rust-version` than the workspace (README, "Requirements"): an
/// upgrade that raises the minimum Rust fails here, so the declared one is raised on
/// purpose, with the README, never silently.
#[test]
fn no_dependency_needs_a_newer_rust_than_declared() {
    let root = root();
    let text = fs::read_to_string(root.join("Cargo.toml")).expect("the root manifest");
    let workspace: toml::Table = text.parse().expect("the root manifest parses");
    let declared = workspace["workspace"]["package"]["rust-version"]
        .as_str()
        .expect("[workspace.package] rust-version is set")
        .to_owned();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(&root)
        .output()
        .expect("cargo metadata runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON");
    let resolved: std::collections::HashSet<&str> = metadata["resolve"]["nodes"]
        .as_array()
        .expect("a resolved tree")
        .iter()
        .filter_map(|node| node["id"].as_str())
        .collect();
    let packages = metadata["packages"].as_array().expect("packages");
    assert!(packages.len() > 100, "found only {} packages", packages.len());
    let newer: Vec<String> = packages
        .iter()
        .filter(|p| p["id"].as_str().is_some_and(|id| resolved.contains(id)))
        .filter_map(|p| {
            let needs = p["rust_version"].as_str()?;
            (rust_version(needs) > rust_version(&declared))
                .then(|| {
                    let (name, version) = (p["name"].as_str()?, p["version"].as_str()?);
                    Some(format!("{name} {version} needs Rust {needs}"))
                })
                .flatten()
        })
        .collect();
    assert!(
        newer.is_empty(),
        "the workspace declares rust-version {declared}, but: {newer:#?}\n\
         raise it (Cargo.toml and README \"Requirements\") or keep the older release"
    );
}

/// No import circle one level down either (`app::startup` -> `app::stores` -> ...), so
/// that a folder's files keep an order among themselves too.
#[test]
fn no_import_circle_one_level_down() {
    for krate in WORKSPACE {
        if let Some(circle) = find_circle(&module_graph(krate, 2)) {
            panic!("import circle in {krate}: {}", circle.join(" -> "));
        }
    }
}
