//! The in-process points (B5, B6, and the argon2 floor of B8): runs the criterion
//! benches of the crates (`cargo bench -p CRATE --bench NAME`) and reads their
//! estimates from `target/criterion`.

use std::path::Path;
use std::process::Command;

use anyhow::Context as _;

/// The criterion benches `cargo xtask bench` runs: (package, bench target).
pub const BENCHES: [(&str, &str); 5] = [
    ("cache-memory", "validate"),
    ("tiered-auth", "validate"),
    ("tiered-auth", "argon2"),
    ("cache-redis", "validate"),
    ("cache-sql", "validate"),
];

/// Runs every bench, short when `quick`, with the services of the run in the
/// environment.
pub fn run_all(
    root: &Path,
    quick: bool,
    database_url: &str,
    redis_url: &str,
) -> anyhow::Result<()> {
    for (package, bench) in BENCHES {
        eprintln!("criterion: cargo bench -p {package} --bench {bench}");
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()));
        cmd.current_dir(root)
            .args(["bench", "-q", "-p", package, "--bench", bench, "--", "--noplot"])
            .env("DATABASE_URL", database_url)
            .env("REDIS_URL", redis_url);
        if quick {
            // 18 points: a second of each, ten samples (criterion's least), keeps the
            // quick run under five minutes; the full run uses criterion's defaults.
            cmd.args(["--warm-up-time", "0.5", "--measurement-time", "1", "--sample-size", "10"]);
        }
        let status = cmd.status().context("cannot run cargo bench")?;
        if !status.success() {
            // The HTTP points do not depend on it: report its goals as not measured.
            eprintln!(
                "warning: cargo bench -p {package} --bench {bench} failed; its points are missing"
            );
        }
    }
    Ok(())
}

/// Criterion's median estimate of `group/function`, in nanoseconds.
pub fn median_ns(root: &Path, id: &str) -> Option<f64> {
    let path = root.join("target/criterion").join(id).join("new/estimates.json");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    json["median"]["point_estimate"].as_f64()
}

/// A field of one of the latency files the benches write next to criterion's output.
pub fn latency_ns(root: &Path, file: &str, field: &str) -> Option<f64> {
    let path = root.join("target/criterion").join(file);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    json[field].as_f64()
}
