//! The session-store point (issue 14): the same actix-web handler (read one value from
//! the session, answer small JSON) on actix-session's own `RedisSessionStore` and on
//! `session-actix` over the tiered stack (memory on, memory off; Redis and PostgreSQL
//! below), side by side in one run. The server is the example
//! `crates/session-actix/examples/session_bench.rs`, one process per store, each
//! seeding its own sessions and writing their cookies for `zipf.lua`.
//!
//! Goals: ours / actix >= 1.5 with the memory tier on, >= 1.0 with it off.
//!
//! The same binary serves the two reference points of issue 16 that run in every round
//! of the `/v1/me` points ([`Peers`]): `peer/actix-session` (actix-session's
//! `RedisSessionStore` with as many sessions as the main run) and `ceiling/actix` (a bare
//! actix-web handler, `--store none`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use super::cpu::CpuPerRequest;
use super::report::{Measured, Report};
use super::server::{TierDeltas, http_get};
use super::services::{BENCH_KEY_PREFIX, Services};
use super::wrk::{self, Load};
use super::{Plan, pause};

/// The baseline point: actix-session's `RedisSessionStore`.
pub const ACTIX: &str = "session/actix-redis";
/// Ours with the memory tier on.
pub const OURS_MEMORY: &str = "session/ours+memory";
/// Ours with the memory tier off.
pub const OURS: &str = "session/ours";

/// The peer of `/v1/me` (issue 16): actix-session's `RedisSessionStore`, in every round.
pub const PEER: &str = "peer/actix-session";
/// The framework's ceiling: a bare actix-web handler, in every round.
pub const CEILING: &str = "ceiling/actix";

/// Sessions each server of the session point seeds (Zipf(1.0) over them, as the
/// `/v1/me` points).
const SESSIONS: usize = 2_000;

/// One `session_bench` process; killed when dropped.
pub struct Proc {
    name: &'static str,
    port: u16,
    /// The seeded sessions' cookie values (cookie `id`), empty for `--store none`.
    pub tokens: PathBuf,
    child: Child,
}

impl Proc {
    fn start(
        bin: &Path,
        name: &'static str,
        store_args: &[&str],
        services: &Services,
        out_dir: &Path,
    ) -> anyhow::Result<Self> {
        Self::start_with(bin, name, store_args, SESSIONS, services, out_dir)
    }

    fn start_with(
        bin: &Path,
        name: &'static str,
        store_args: &[&str],
        sessions: usize,
        services: &Services,
        out_dir: &Path,
    ) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let slug = name.replace(['/', '+'], "-");
        let tokens = out_dir.join(format!("{slug}.txt"));
        let logs = out_dir.join("logs");
        std::fs::create_dir_all(&logs)?;
        let log = std::fs::File::create(logs.join(format!("{slug}.log")))?;
        let child = Command::new(bin)
            .args(store_args)
            .args(["--port", &port.to_string(), "--redis-url", &services.redis_url])
            .args(["--database-url", &services.bench_url])
            .args(["--prefix", &format!("{BENCH_KEY_PREFIX}{slug}:")])
            .args(["--sessions", &sessions.to_string()])
            .arg("--tokens")
            .arg(&tokens)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let mut proc = Self { name, port, tokens, child };
        proc.wait_ready()?;
        Ok(proc)
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!("session_bench ({}) exited at start-up with {status}", self.name);
            }
            if let Ok((200, _)) = http_get(self.port, "/health") {
                return Ok(());
            }
            pause(Duration::from_millis(200));
        }
        bail!("session_bench ({}) was not ready within 120 s", self.name)
    }
}

impl Proc {
    /// `http://127.0.0.1:{port}{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// The two reference points of the `/v1/me` rounds.
pub struct Peers {
    /// actix-session's `RedisSessionStore` behind `GET /me`: one Redis `GET` a request.
    pub peer: Proc,
    /// A bare actix-web `GET /health`.
    pub ceiling: Proc,
}

impl Peers {
    /// Starts both from `bin` ([`build`]), the peer with `sessions` sessions in the
    /// bench's Redis.
    pub fn start(
        bin: &Path,
        root: &Path,
        services: &Services,
        sessions: usize,
    ) -> anyhow::Result<Self> {
        let out_dir = root.join("target/bench");
        eprintln!("starting session_bench: {PEER} ({sessions} sessions), {CEILING}");
        let peer =
            Proc::start_with(bin, PEER, &["--store", "actix-redis"], sessions, services, &out_dir)?;
        let ceiling = Proc::start_with(bin, CEILING, &["--store", "none"], 0, services, &out_dir)?;
        Ok(Self { peer, ceiling })
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Builds the example in release (unless `no_build`), copies it to
/// `root/target/bench` and returns that copy: one build for the whole run.
pub fn build(root: &Path, no_build: bool) -> anyhow::Result<PathBuf> {
    let bin = root.join("target/bench/session_bench");
    if !no_build {
        eprintln!("building session-actix's session_bench (release)");
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()))
            .current_dir(root)
            .args(["build", "--release", "-q", "-p", "session-actix", "--example", "session_bench"])
            .status()?;
        anyhow::ensure!(status.success(), "building session_bench failed");
        std::fs::copy(root.join("target/release/examples/session_bench"), &bin)
            .context("copying the session_bench binary")?;
    }
    anyhow::ensure!(bin.is_file(), "{} is missing: run without --no-build once", bin.display());
    Ok(bin)
}

/// Runs the point: the three stores, each measured once per round (A B C A B C ...),
/// recorded in `report` and printed with the ratios.
pub fn run(
    bin: &Path,
    root: &Path,
    services: &Services,
    plan: &Plan,
    report: &mut Report,
) -> anyhow::Result<()> {
    let out_dir = root.join("target/bench");
    eprintln!(
        "starting session_bench: actix RedisSessionStore, ours (memory on), ours (memory off)"
    );
    let procs = [
        Proc::start(bin, ACTIX, &["--store", "actix-redis"], services, &out_dir)?,
        Proc::start(bin, OURS_MEMORY, &["--store", "tiered", "--memory"], services, &out_dir)?,
        Proc::start(bin, OURS, &["--store", "tiered"], services, &out_dir)?,
    ];
    let load = |p: &Proc, duration: Duration| Load {
        url: format!("http://127.0.0.1:{}/me", p.port),
        script: wrk::scripts_dir(root).join("zipf.lua"),
        args: vec![
            p.tokens.display().to_string(),
            "id".to_owned(),
            "1.0".to_owned(),
            "0".to_owned(),
        ],
        threads: plan.threads,
        connections: plan.connections,
        duration,
    };
    let (warmup, duration) =
        (Duration::from_secs(plan.warmup_s), Duration::from_secs(plan.duration_s));
    let mut rps = [Vec::new(), Vec::new(), Vec::new()];
    for round in 0..plan.rounds {
        eprintln!("session stores, round {} of {}", round + 1, plan.rounds);
        for (i, p) in procs.iter().enumerate() {
            load(p, warmup).run().with_context(|| format!("{}: warm-up", p.name))?;
            let result = load(p, duration).run().with_context(|| format!("{}: run", p.name))?;
            wrk::print_line(p.name, &result);
            rps[i].push(result.rps());
            let measured = Measured {
                wrk: result,
                deltas: TierDeltas::default(),
                rss_kib: None,
                cpu: CpuPerRequest::default(),
            };
            report.add(p.name, measured);
        }
    }
    let med = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    let (actix, memory, plain) = (med(&rps[0]), med(&rps[1]), med(&rps[2]));
    let ratio = |ours: f64| if actix > 0.0 { ours / actix } else { 0.0 };
    eprintln!(
        "session stores (median req/s): actix RedisSessionStore {actix:.0}, ours+memory {memory:.0}, ours {plain:.0}"
    );
    eprintln!(
        "  ours+memory / actix = {:.2} (goal >= 1.5: {}); ours / actix = {:.2} (goal >= 1.0: {})",
        ratio(memory),
        if ratio(memory) >= 1.5 { "met" } else { "MISSED" },
        ratio(plain),
        if ratio(plain) >= 1.0 { "met" } else { "MISSED" },
    );
    Ok(())
}
