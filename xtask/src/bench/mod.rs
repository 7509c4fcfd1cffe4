//! `cargo xtask bench`: the hot path measured against its own baselines, as
//! The product's benchmark spec defines it (points, goals B1..B10; docs/benchmarks.md).
//!
//! 1. Reuses or starts Redis and PostgreSQL, installs `wrk`/`psql`/`redis-cli` if missing.
//! 2. Builds `authd` in release with the `bench-routes` feature.
//! 3. Seeds one dataset into PostgreSQL (database `authd_bench`), Redis (prefix
//!    `authd-bench:`) and a SQLite file, and writes the tokens for the load generator.
//! 4. Runs the criterion benches (in-process points) before any server runs.
//! 5. Starts one `authd` per configuration and runs every HTTP point with wrk (64
//!    connections, keep-alive, closed loop, Zipf(1.0) cookies; login and its argon2
//!    baseline one connection), in rounds: each round runs every point once
//!    (A B A B ...), each run after its own warm-up, and the table shows the median of
//!    the rounds.
//! 6. Runs the session-store point (`session.rs`): actix-session's `RedisSessionStore`
//!    and `session-actix` (memory on, off) behind the same handler, in rounds.
//! 7. Prints the table and the goals, writes JSON under `target/bench/`.

mod costs;
mod cpu;
mod criterion;
mod report;
mod server;
mod services;
mod session;
mod wrk;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;

use crate::seed;
use cpu::{CpuMeter, CpuPerRequest};
use report::{Measured, Report};
use server::{Server, ServerConfig, Servers, TierDeltas, full_config, start_servers};
use services::{BENCH_KEY_PREFIX, Services};
use wrk::Load;

/// Arguments of `cargo xtask bench`.
#[derive(clap::Args, Clone)]
pub struct BenchArgs {
    /// A short run (1 round, 3 s a point, 20,000 sessions): under 5 minutes once built.
    #[arg(long)]
    pub quick: bool,
    /// Also measure `/v1/me` at 10k, 100k and 1M sessions (B10).
    #[arg(long)]
    pub scale: bool,
    /// Rounds per point (the table shows the median); default 3, 1 with --quick.
    #[arg(long)]
    pub runs: Option<usize>,
    /// Seeded sessions (default 100,000; 20,000 with --quick), over a tenth as many users.
    #[arg(long)]
    pub sessions: Option<usize>,
    /// Seconds per measured run (default 10; 3 with --quick).
    #[arg(long)]
    pub duration: Option<u64>,
    /// Use the `target/bench/authd` a previous run built (with `--features bench-routes`).
    #[arg(long)]
    pub no_build: bool,
    /// Do not run the criterion benches; read their last results from `target/criterion`.
    #[arg(long)]
    pub no_criterion: bool,
    /// Also run another authd on the full stack, measured as `against/REV/ceiling` and
    /// `against/REV/me/memory` in the same rounds: a before/after of the hot path in one
    /// run. REV is a git revision (a commit, tag or branch), built once under
    /// `target/bench/against/`, or the path of an authd binary. Repeatable.
    #[arg(long, value_name = "REV")]
    pub against: Vec<String>,
}

/// The points `--against` measures on both builds.
pub const AGAINST_POINTS: [&str; 2] = ["ceiling", "me/memory"];

/// Settings of one run, from the arguments.
#[derive(Debug, Clone, serde::Serialize)]
struct Plan {
    quick: bool,
    rounds: usize,
    sessions: usize,
    users: usize,
    duration_s: u64,
    warmup_s: u64,
    connections: u32,
    threads: u32,
    /// The memory tier of `me/memory` and the scale points: room for every session and
    /// user, so that after the warm-up every lookup is a memory hit ("memory tier warm").
    memory_entries: u64,
    /// The memory tier of `me/memory@10%` (B7): a tenth of the sessions.
    memory_entries_b7: u64,
    hash_concurrency: usize,
}

impl Plan {
    fn new(args: &BenchArgs) -> Self {
        let sessions = args.sessions.unwrap_or(if args.quick { 20_000 } else { 100_000 }).max(10);
        let hash_concurrency = auth::AuthConfig::default().hash_concurrency;
        Self {
            quick: args.quick,
            rounds: args.runs.unwrap_or(if args.quick { 1 } else { 3 }).max(1),
            sessions,
            users: (sessions / 10).max(1),
            duration_s: args.duration.unwrap_or(if args.quick { 3 } else { 10 }).max(1),
            warmup_s: if args.quick { 1 } else { 3 },
            connections: 64,
            threads: 2,
            memory_entries: (sessions + sessions / 10) as u64 + 1_000,
            memory_entries_b7: (sessions as u64 / 10).max(100),
            hash_concurrency,
        }
    }
}

/// The workspace root (xtask lives in it).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Runs the task.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let root = root();
    let plan = Plan::new(&args);
    let out_dir = root.join("target/bench");
    std::fs::create_dir_all(&out_dir)?;
    let started = std::time::Instant::now();

    services::ensure_tools()?;
    let services = Services::start_or_reuse()?;
    // The run uses its own copy of the binary: another `cargo build --release -p authd`
    // (without the feature) may replace target/release/authd meanwhile.
    let bin = out_dir.join("authd");
    if !args.no_build {
        eprintln!("building authd (release, bench-routes)");
        let status = std::process::Command::new(
            std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()),
        )
        .current_dir(&root)
        .args(["build", "--release", "-q", "-p", "authd", "--features", "bench-routes"])
        .status()?;
        anyhow::ensure!(status.success(), "building authd failed");
        std::fs::copy(root.join("target/release/authd"), &bin)
            .context("copying the authd binary")?;
    }
    anyhow::ensure!(bin.is_file(), "{} is missing: run without --no-build once", bin.display());

    if !args.no_criterion {
        criterion::run_all(&root, plan.quick, &services.admin_url, &services.redis_url)?;
    }

    let against = args
        .against
        .iter()
        .map(|rev| server::build_revision(&root, rev, args.no_build))
        .collect::<anyhow::Result<Vec<_>>>()?;

    let sqlite_path = out_dir.join("authd-bench.db");
    let tokens = out_dir.join("sessions.txt");
    seed_everything(&services, plan.sessions, &sqlite_path, &tokens, true)?;

    let mut report = Report::new(serde_json::to_value(&plan)?, machine());
    let mut servers = start_servers(&bin, &services, &plan, &sqlite_path, &out_dir)?;
    for built in against {
        report.add_against(&built.label);
        let config = ServerConfig {
            name: "against",
            ops_listener: built.ops_listener,
            ..full_config(&services, plan.memory_entries)
        };
        let server = Server::start(&built.bin, config, &out_dir)?;
        servers.against.push((built.label, server));
    }
    let session_bin = session::build(&root, args.no_build)?;
    let peers = session::Peers::start(&session_bin, &root, &services, plan.sessions)?;
    let cpu = CpuMeter::new(&services.redis_url);
    let runner = Runner { root: &root, plan: &plan, tokens: &tokens, cpu: &cpu };
    let rss_cold = servers.full.rss_kib(); // costs: the memory tier's bytes per entry
    runner.sweep(&servers.full)?;
    let memory_tier = costs::memory_tier(&servers.full, rss_cold);
    runner.sweep(&servers.full_access)?;
    for (_, other) in &servers.against {
        runner.sweep(other)?;
    }
    for round in 0..plan.rounds {
        eprintln!("round {} of {}", round + 1, plan.rounds);
        runner.round(&servers, &peers, &mut report)?;
    }
    let costs = costs::measure(&runner, &servers.full, &services, memory_tier);
    drop(servers);
    drop(peers);
    // actix-session's RedisSessionStore against ours, side by side (issue 14).
    session::run(&session_bin, &root, &services, &plan, &mut report)?;

    if args.scale {
        runner.scale(&bin, &services, &out_dir, &mut report)?;
    }

    report.criterion(&root);
    report.finish(started.elapsed());
    let json = serde_json::to_string_pretty(&costs::attach(report.to_json(), costs))?;
    let stamp = cache_core::Clock::now(&cache_core::SystemClock).format("%Y%m%dT%H%M%SZ");
    std::fs::write(out_dir.join(format!("bench-{stamp}.json")), &json)?;
    std::fs::write(out_dir.join("latest.json"), &json)?;
    eprintln!("JSON: target/bench/latest.json (and bench-{stamp}.json)");
    Ok(())
}

/// Seeds `sessions` sessions (over a tenth as many users) into PostgreSQL and Redis,
/// and into the SQLite file when `sqlite`, after wiping the previous run's data.
fn seed_everything(
    services: &Services,
    sessions: usize,
    sqlite_path: &Path,
    tokens: &Path,
    sqlite: bool,
) -> anyhow::Result<()> {
    services.reset()?;
    let users = (sessions / 10).max(1);
    eprintln!("seeding {users} users and {sessions} sessions");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        let data = seed::generate(users, sessions, seed::DEFAULT_PASSWORD).await?;
        let pg = crate::migrate::connect_and_migrate(&services.bench_url).await?;
        seed::load_sql(&pg, &data).await?;
        let redis = seed::connect_redis(&services.redis_url, BENCH_KEY_PREFIX).await?;
        seed::load_redis(&redis, &data).await?;
        if sqlite {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", sqlite_path.display()));
            }
            let url = format!("sqlite://{}", sqlite_path.display());
            let lite = crate::migrate::connect_and_migrate(&url).await?;
            seed::load_sql(&lite, &data).await?;
        }
        seed::write_tokens(tokens, &data)
    })
}

struct Runner<'a> {
    root: &'a Path,
    plan: &'a Plan,
    tokens: &'a Path,
    cpu: &'a CpuMeter,
}

impl Runner<'_> {
    fn zipf(&self, server: &Server, path: &str, delay_ms: u64, duration: Duration) -> Load {
        Load {
            url: server.url(path),
            script: wrk::scripts_dir(self.root).join("zipf.lua"),
            args: vec![
                self.tokens.display().to_string(),
                "session".to_owned(),
                "1.0".to_owned(),
                delay_ms.to_string(),
            ],
            threads: self.plan.threads,
            connections: self.plan.connections,
            duration,
        }
    }

    /// Loads every session (and user) into the memory tier of `server`: each wrk thread
    /// requests every token once, in file order.
    fn sweep(&self, server: &Server) -> anyhow::Result<()> {
        // A cold memory tier serves about 10,000 req/s here (every request goes to
        // Redis): time for each of the 2 threads to cover its half.
        let secs = (self.plan.sessions as u64 / 8_000).max(2);
        let mut load = self.zipf(server, "/v1/me", 0, Duration::from_secs(secs));
        load.args[2] = "0".to_owned();
        let result = load.run().context("memory warm-up sweep")?;
        eprintln!(
            "  warm-up sweep: {} requests over {} sessions",
            result.requests, self.plan.sessions
        );
        Ok(())
    }

    /// B8's baseline: `GET /bench/baseline/argon2` one request at a time (1 thread, 1
    /// connection), as `login` runs. zipf.lua for its result line; the route ignores the
    /// session cookie it adds.
    fn argon2_baseline(&self, server: &Server, duration: Duration) -> Load {
        Load {
            threads: 1,
            connections: 1,
            ..self.zipf(server, "/bench/baseline/argon2", 0, duration)
        }
    }

    fn login(&self, server: &Server, connections: u32, duration: Duration) -> Load {
        Load {
            url: server.url("/v1/auth/login"),
            script: wrk::scripts_dir(self.root).join("login.lua"),
            args: vec![self.plan.users.to_string(), seed::DEFAULT_PASSWORD.to_owned()],
            threads: 1,
            connections,
            duration,
        }
    }

    fn durations(&self) -> (Duration, Duration) {
        (Duration::from_secs(self.plan.warmup_s), Duration::from_secs(self.plan.duration_s))
    }

    /// Warm-up, then a measured run with the `/metrics` deltas around it.
    fn measure(
        &self,
        name: &str,
        server: &Server,
        warmup: &Load,
        load: &Load,
    ) -> anyhow::Result<Measured> {
        warmup.run().with_context(|| format!("{name}: warm-up"))?;
        let before = server.metrics()?;
        let cpu_before = self.cpu.sample(server.pid());
        let result = load.run().with_context(|| format!("{name}: run"))?;
        let cpu =
            CpuPerRequest::between(cpu_before, self.cpu.sample(server.pid()), result.requests);
        let after = server.metrics()?;
        let deltas = TierDeltas::between(&before, &after);
        wrk::print_line(name, &result);
        Ok(Measured { wrk: result, deltas, rss_kib: server.rss_kib(), cpu })
    }

    /// A zipf.lua point (2 threads, 64 connections): measured and recorded.
    fn point(
        &self,
        report: &mut Report,
        name: &str,
        server: &Server,
        path: &str,
        delay_ms: u64,
    ) -> anyhow::Result<Measured> {
        self.point_with(report, name, server, |d| self.zipf(server, path, delay_ms, d))
    }

    /// A point whose warm-up and run are `load` for their durations: measured and
    /// recorded.
    fn point_with(
        &self,
        report: &mut Report,
        name: &str,
        server: &Server,
        load: impl Fn(Duration) -> Load,
    ) -> anyhow::Result<Measured> {
        let (warm, run) = self.durations();
        let m = self.measure(name, server, &load(warm), &load(run))?;
        report.add(name, m.clone());
        Ok(m)
    }

    /// A point on a `session_bench` process (no tier counters): measured and recorded.
    fn peer_point(
        &self,
        report: &mut Report,
        proc: &session::Proc,
        name: &str,
        load: impl Fn(Duration) -> Load,
    ) -> anyhow::Result<()> {
        let (warm, run) = self.durations();
        load(warm).run().with_context(|| format!("{name}: warm-up"))?;
        let cpu_before = self.cpu.sample(proc.pid());
        let result = load(run).run().with_context(|| format!("{name}: run"))?;
        let cpu = CpuPerRequest::between(cpu_before, self.cpu.sample(proc.pid()), result.requests);
        wrk::print_line(name, &result);
        report
            .add(name, Measured { wrk: result, deltas: TierDeltas::default(), rss_kib: None, cpu });
        Ok(())
    }

    /// One round: every point once. The references of issue 16 run next to what they
    /// are compared with: the bare actix-web handler next to authd's `/health/live`,
    /// actix-session's `RedisSessionStore` between `me/memory` and `me/redis`.
    fn round(
        &self,
        s: &Servers,
        peers: &session::Peers,
        report: &mut Report,
    ) -> anyhow::Result<()> {
        let bare = &peers.ceiling;
        self.peer_point(report, bare, session::CEILING, |d| Load {
            url: bare.url("/health"),
            ..self.zipf(&s.full, "/health", 0, d)
        })?;
        self.point(report, "ceiling", &s.full, "/health/live", 0)?;
        let me = self.point(report, "me/memory", &s.full, "/v1/me", 0)?;
        // Issue 17: what the access log costs when an operator turns it on.
        self.point(report, "me/memory+access", &s.full_access, "/v1/me", 0)?;
        for (label, other) in &s.against {
            self.point(report, &format!("against/{label}/ceiling"), other, "/health/live", 0)?;
            self.point(report, &format!("against/{label}/me/memory"), other, "/v1/me", 0)?;
        }
        let peer = &peers.peer;
        self.peer_point(report, peer, session::PEER, |d| {
            let mut load = self.zipf(&s.full, "/me", 0, d);
            load.url = peer.url("/me");
            load.args[0] = peer.tokens.display().to_string();
            load.args[1] = "id".to_owned();
            load
        })?;
        self.point(report, "me/redis", &s.redis, "/v1/me", 0)?;
        self.point(report, "me/memory@10%", &s.full_b7, "/v1/me", 0)?;
        self.point(report, "baseline/redis", &s.redis, "/bench/baseline/redis", 0)?;
        self.point(report, "baseline/sql", &s.sql, "/bench/baseline/sql", 0)?;
        self.point(report, "me/sql", &s.sql, "/v1/me", 0)?;
        self.point(report, "me/sqlite", &s.sqlite, "/v1/me", 0)?;

        // B2 and B9 compare latencies at the same offered load: half of what
        // `me/memory` sustained this round.
        let delay = fixed_load_delay(self.plan.connections, me.wrk.rps() * 0.5);
        report.set_fixed_load(self.plan.connections as f64 * 1000.0 / delay as f64);
        self.point(report, "ceiling@half", &s.full, "/health/live", delay)?;
        self.point(report, "me/memory@half", &s.full, "/v1/me", delay)?;

        // B8: one login at a time, right after one bare argon2 verify at a time on the
        // same server.
        self.point_with(report, "baseline/argon2", &s.full, |d| self.argon2_baseline(&s.full, d))?;
        self.point_with(report, "login", &s.full, |d| self.login(&s.full, 1, d))?;

        // B9: `/v1/me` at the same load while as many logins run as the hash pool takes.
        let (warm, run) = self.durations();
        let storm_conns = u32::try_from(self.plan.hash_concurrency * 2).unwrap_or(4);
        let storm =
            self.login(&s.full, storm_conns, warm + run + Duration::from_secs(2)).spawn()?;
        pause(Duration::from_millis(500));
        let during = self.point(report, "me/memory@half+storm", &s.full, "/v1/me", delay);
        let logins = wrk::finish(storm)?;
        let during = during?;
        eprintln!("    (storm: {:.1} logins/s, p50 {} ms)", logins.rps(), logins.p50_us / 1000);
        report.add(
            "login-storm",
            Measured {
                wrk: logins,
                deltas: TierDeltas::default(),
                rss_kib: during.rss_kib,
                cpu: CpuPerRequest::default(),
            },
        );
        Ok(())
    }

    /// B10: `/v1/me` on the full stack at 10k, 100k and 1M sessions. At every size the
    /// memory tier has room for every session and user and is loaded by a sweep before
    /// the points (as `me/memory`): what B10 asks is whether the hot path itself slows
    /// down with the number of sessions (a larger moka map, more cache misses of the CPU),
    /// and what a cached session costs in memory (the RSS after the sweep, per entry).
    /// A tier smaller than the working set answers the rest from Redis, as
    /// `me/memory@10%` measures.
    fn scale(
        &self,
        bin: &Path,
        services: &Services,
        out_dir: &Path,
        report: &mut Report,
    ) -> anyhow::Result<()> {
        let mut delay = None;
        for sessions in [10_000usize, 100_000, 1_000_000] {
            let tokens = out_dir.join(format!("sessions-{sessions}.txt"));
            seed_everything(services, sessions, Path::new(""), &tokens, false)?;
            let cap = (sessions + sessions / 10) as u64 + 1_000;
            let server = Server::start(bin, full_config(services, cap), out_dir)?;
            let plan = Plan { sessions, ..self.plan.clone() };
            let runner = Runner { root: self.root, plan: &plan, tokens: &tokens, cpu: self.cpu };
            let idle_kib = server.rss_kib();
            runner.sweep(&server)?;
            let label = format!("scale/{}k", sessions / 1000);
            if let (Some(idle), Some(loaded)) = (idle_kib, server.rss_kib()) {
                report.set_scale_memory(&label, sessions, idle, loaded);
            }
            let sat = runner.point(report, &label, &server, "/v1/me", 0)?;
            // The same offered load at every size: half of what 10k sessions sustained.
            let d = *delay.get_or_insert_with(|| {
                fixed_load_delay(self.plan.connections, sat.wrk.rps() * 0.5)
            });
            runner.point(report, &format!("{label}@fixed"), &server, "/v1/me", d)?;
            drop(server);
        }
        Ok(())
    }
}

/// Waits on the orchestrating thread, which runs no async task: processes and wrk do
/// the work meanwhile.
#[allow(clippy::disallowed_methods)] // The ban protects async workers; this is none.
pub(crate) fn pause(d: Duration) {
    std::thread::sleep(d);
}

/// The per-connection delay (ms, at least 1) that makes `connections` connections
/// offer about `rate` requests per second.
fn fixed_load_delay(connections: u32, rate: f64) -> u64 {
    if rate <= 0.0 {
        return 1;
    }
    ((connections as f64 * 1000.0 / rate).round() as u64).max(1)
}

/// The machine, for the record.
fn machine() -> BTreeMap<&'static str, String> {
    let mut m = BTreeMap::new();
    m.insert("nproc", std::thread::available_parallelism().map_or(0, |n| n.get()).to_string());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    m.insert("cpu", cpu);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| t.lines().next().map(str::to_owned))
        .unwrap_or_default();
    m.insert("memory", mem.split_whitespace().skip(1).collect::<Vec<_>>().join(" "));
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_load_delay_is_connections_over_rate() {
        assert_eq!(fixed_load_delay(64, 6400.0), 10);
        assert_eq!(fixed_load_delay(64, 1_000_000.0), 1);
        assert_eq!(fixed_load_delay(64, 0.0), 1);
    }
}
