//! Runs wrk (closed loop, keep-alive, fixed connections) with the Lua scripts under
//! `xtask/bench/` and reads the figures their `done` hook prints.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};

/// What one wrk run measured (latencies in microseconds).
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub struct WrkResult {
    /// Completed requests.
    pub requests: u64,
    /// Length of the run.
    pub duration_us: u64,
    /// Median latency.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Slowest request.
    pub max_us: u64,
    /// Mean latency.
    pub mean_us: f64,
    /// Connections that failed.
    pub connect_errors: u64,
    /// Socket read errors.
    pub read_errors: u64,
    /// Socket write errors.
    pub write_errors: u64,
    /// Responses with a status >= 400.
    pub status_errors: u64,
    /// Requests that timed out.
    pub timeouts: u64,
}

impl WrkResult {
    /// Requests per second.
    pub fn rps(&self) -> f64 {
        if self.duration_us == 0 {
            0.0
        } else {
            self.requests as f64 * 1e6 / self.duration_us as f64
        }
    }

    /// Every kind of failure together.
    pub fn errors(&self) -> u64 {
        self.connect_errors
            + self.read_errors
            + self.write_errors
            + self.status_errors
            + self.timeouts
    }
}

/// One load run.
#[derive(Debug, Clone)]
pub struct Load {
    /// Full URL.
    pub url: String,
    /// `zipf.lua` or `login.lua`.
    pub script: PathBuf,
    /// Arguments after `--`.
    pub args: Vec<String>,
    /// wrk threads.
    pub threads: u32,
    /// Open connections.
    pub connections: u32,
    /// How long.
    pub duration: Duration,
}

impl Load {
    fn command(&self) -> Command {
        let mut cmd = Command::new("wrk");
        cmd.arg(format!("-t{}", self.threads))
            .arg(format!("-c{}", self.connections))
            .arg(format!("-d{}s", self.duration.as_secs().max(1)))
            .arg("--timeout")
            .arg("10s")
            .arg("-s")
            .arg(&self.script)
            .arg(&self.url)
            .arg("--")
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Runs to completion.
    pub fn run(&self) -> anyhow::Result<WrkResult> {
        let output = self.command().output().context("cannot run wrk")?;
        parse(&output)
    }

    /// Starts in the background; finish with [`finish`].
    pub fn spawn(&self) -> anyhow::Result<Child> {
        self.command().spawn().context("cannot run wrk")
    }
}

/// Waits for a run started with [`Load::spawn`].
pub fn finish(child: Child) -> anyhow::Result<WrkResult> {
    parse(&child.wait_with_output()?)
}

fn parse(output: &Output) -> anyhow::Result<WrkResult> {
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!("wrk failed: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    let line = stdout.lines().find_map(|l| l.strip_prefix("BENCHJSON ")).with_context(|| {
        format!("wrk printed no result: {}", String::from_utf8_lossy(&output.stderr).trim())
    })?;
    Ok(serde_json::from_str(line)?)
}

/// The Lua scripts' directory.
pub fn scripts_dir(root: &Path) -> PathBuf {
    root.join("xtask").join("bench")
}

/// Prints one run's line on stderr: `name`, req/s, p50, p99 and the errors if any.
pub fn print_line(name: &str, result: &WrkResult) {
    let errors = result.errors();
    let errors = if errors > 0 { format!("  ({errors} errors)") } else { String::new() };
    eprintln!(
        "  {name:<22} {:>9.0} req/s  p50 {:>6} us  p99 {:>6} us{errors}",
        result.rps(),
        result.p50_us,
        result.p99_us,
    );
}
