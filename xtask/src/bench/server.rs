//! One `authd` process per configuration, on a free loopback port, and what the
//! benchmark reads from it: readiness, Prometheus metrics, resident memory.

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use super::services::{BENCH_KEY_PREFIX, Services};

/// How one `authd` is configured (everything else is authd's default).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Short name (`full`, `redis`, `sql`, `sqlite`), also the log file's.
    pub name: &'static str,
    /// `DATABASE_URL`.
    pub database_url: String,
    /// `REDIS_URL`, when the Redis tier is on.
    pub redis_url: Option<String>,
    /// The memory tier's `max_entries`, when it is on.
    pub memory_entries: Option<u64>,
    /// The memory tier's `ttl_secs` (and `fence_ttl_secs`), when not authd's default.
    pub memory_ttl_secs: Option<u64>,
    /// `redis.key_prefix`.
    pub key_prefix: String,
    /// Whether the build has the operations listener (`server.ops_listen`, since issue
    /// 11); before it, `/metrics` was on the public listener and the key unknown.
    pub ops_listener: bool,
    /// The access log on: `log.access_level = info` and `authd::access` at `info` in
    /// `RUST_LOG`, one line per request into the server's log file. Off (`warn` only),
    /// the access line is filtered out and only the request span is paid.
    pub access_log: bool,
}

/// A running `authd`; stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Server {
    /// The configuration it runs with.
    pub config: ServerConfig,
    port: u16,
    /// The operations listener (`/metrics`); the public one for builds without it.
    ops_port: u16,
    child: Child,
}

/// Another `authd` for `--against`.
pub struct Built {
    /// Its name in the points: the revision's short commit, or the binary's file name.
    pub label: String,
    /// The binary (release; `bench-routes` when built here).
    pub bin: std::path::PathBuf,
    /// Whether it has `server.ops_listen`.
    pub ops_listener: bool,
}

/// The six configurations, and the other builds of `--against`.
pub struct Servers {
    pub full: Server,
    /// `full` with the access log on (`me/memory+access`).
    pub full_access: Server,
    pub full_b7: Server,
    pub redis: Server,
    pub sql: Server,
    pub sqlite: Server,
    /// `--against`: (label, server).
    pub against: Vec<(String, Server)>,
}

pub fn full_config(services: &Services, memory_entries: u64) -> ServerConfig {
    ServerConfig {
        name: "full",
        database_url: services.bench_url.clone(),
        redis_url: Some(services.redis_url.clone()),
        memory_entries: Some(memory_entries),
        // Entries stay for the whole run once loaded: "memory tier warm". (authd's
        // default of 30 s would send every session unused for 30 s back to Redis.)
        memory_ttl_secs: Some(3600),
        key_prefix: BENCH_KEY_PREFIX.to_owned(),
        ops_listener: true,
        access_log: false,
    }
}

pub fn start_servers(
    bin: &Path,
    services: &Services,
    plan: &super::Plan,
    sqlite_path: &Path,
    out_dir: &Path,
) -> anyhow::Result<Servers> {
    let base = full_config(services, plan.memory_entries);
    eprintln!(
        "starting authd: memory+redis+postgres (three times: one with a tenth of the memory \
         tier, one with the access log on), redis+postgres, postgres, sqlite"
    );
    Ok(Servers {
        full: Server::start(bin, base.clone(), out_dir)?,
        full_access: Server::start(
            bin,
            ServerConfig { name: "full-access", access_log: true, ..base.clone() },
            out_dir,
        )?,
        full_b7: Server::start(
            bin,
            ServerConfig {
                name: "full-b7",
                memory_entries: Some(plan.memory_entries_b7),
                ..base.clone()
            },
            out_dir,
        )?,
        redis: Server::start(
            bin,
            ServerConfig { name: "redis", memory_entries: None, ..base.clone() },
            out_dir,
        )?,
        sql: Server::start(
            bin,
            ServerConfig { name: "sql", memory_entries: None, redis_url: None, ..base.clone() },
            out_dir,
        )?,
        sqlite: Server::start(
            bin,
            ServerConfig {
                name: "sqlite",
                database_url: format!("sqlite://{}", sqlite_path.display()),
                redis_url: None,
                ..base
            },
            out_dir,
        )?,
        against: Vec::new(),
    })
}

/// Builds `authd` (release, `bench-routes`) from git revision `rev` of the repository at
/// `root`: the revision's tree is exported (`git archive`) to
/// `target/bench/against/src-{commit}` and built with its own lock file into
/// `target/bench/against/target`, kept between runs so that a second run builds nothing.
/// A `rev` that names an existing file is that binary, taken as is (with the operations
/// listener, which every build since issue 11 has).
pub fn build_revision(root: &Path, rev: &str, no_build: bool) -> anyhow::Result<Built> {
    let path = Path::new(rev);
    if path.is_file() {
        let label =
            path.file_name().map_or_else(|| rev.to_owned(), |n| n.to_string_lossy().into_owned());
        return Ok(Built { label, bin: path.to_path_buf(), ops_listener: true });
    }
    let git = |args: &[&str]| -> anyhow::Result<std::process::Output> {
        let out = Command::new("git").current_dir(root).args(args).output()?;
        anyhow::ensure!(
            out.status.success(),
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(out)
    };
    let commit =
        String::from_utf8(git(&["rev-parse", "--verify", &format!("{rev}^{{commit}}")])?.stdout)?
            .trim()
            .to_owned();
    let short = &commit[..12.min(commit.len())];
    let dir = root.join("target/bench/against");
    let src = dir.join(format!("src-{short}"));
    if !src.join("Cargo.toml").is_file() {
        std::fs::create_dir_all(&src)?;
        let archive = git(&["archive", "--format=tar", &commit])?;
        let mut tar = Command::new("tar")
            .arg("-x")
            .arg("-C")
            .arg(&src)
            .stdin(Stdio::piped())
            .spawn()
            .context("running tar")?;
        tar.stdin.take().context("tar's stdin")?.write_all(&archive.stdout)?;
        anyhow::ensure!(tar.wait()?.success(), "unpacking {rev} failed");
    }
    let bin = dir.join(format!("authd-{short}"));
    if !no_build || !bin.is_file() {
        eprintln!("building authd at {rev} ({commit}) for --against");
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()))
            .current_dir(&src)
            .env("CARGO_TARGET_DIR", dir.join("target"))
            .args(["build", "--release", "-q", "-p", "authd", "--features", "bench-routes"])
            .status()?;
        anyhow::ensure!(status.success(), "building authd at {rev} failed");
        std::fs::copy(dir.join("target/release/authd"), &bin)
            .context("copying the --against binary")?;
    }
    // The settings' sources of that revision say whether it knows `ops_listen`.
    let settings = src.join("crates/authd/src");
    let ops_listener = grep_tree(&settings, "ops_listen")?;
    Ok(Built { label: short.to_owned(), bin, ops_listener })
}

/// Whether any `.rs` file under `dir` contains `needle`.
fn grep_tree(dir: &Path, needle: &str) -> anyhow::Result<bool> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            if grep_tree(&path, needle)? {
                return Ok(true);
            }
        } else if path.extension().is_some_and(|e| e == "rs")
            && std::fs::read_to_string(&path).is_ok_and(|t| t.contains(needle))
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A free loopback port (bound, then released for the child to bind).
fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Server {
    /// Starts `bin` with `config` in `run_dir` (no `authd.toml` there), logging to
    /// `run_dir/logs/authd-{name}.log`, and waits until `/health/ready` says `ok`.
    pub fn start(bin: &Path, config: ServerConfig, run_dir: &Path) -> anyhow::Result<Self> {
        let port = free_port()?;
        let ops_port = if config.ops_listener { free_port()? } else { port };
        let logs = run_dir.join("logs");
        std::fs::create_dir_all(&logs)?;
        let log = std::fs::File::create(logs.join(format!("authd-{}.log", config.name)))?;
        let mut cmd = Command::new(bin);
        for (key, _) in std::env::vars_os() {
            if key
                .to_str()
                .is_some_and(|k| k.starts_with("AUTHD_") || k == "DATABASE_URL" || k == "REDIS_URL")
            {
                cmd.env_remove(key);
            }
        }
        cmd.current_dir(run_dir)
            .env("RUST_LOG", if config.access_log { "warn,authd::access=info" } else { "warn" })
            .env("AUTHD_SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .env("DATABASE_URL", &config.database_url)
            .env("AUTHD_REDIS__KEY_PREFIX", &config.key_prefix)
            .env("AUTHD_MEMORY__ENABLED", config.memory_entries.is_some().to_string())
            .env("AUTHD_MAIL__DIR", run_dir.join("mail"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if config.access_log {
            cmd.env("AUTHD_LOG__ACCESS_LEVEL", "info");
        }
        if config.ops_listener {
            cmd.env("AUTHD_SERVER__OPS_LISTEN", format!("127.0.0.1:{ops_port}"));
        }
        if let Some(entries) = config.memory_entries {
            cmd.env("AUTHD_MEMORY__MAX_ENTRIES", entries.to_string());
        }
        if let Some(ttl) = config.memory_ttl_secs {
            cmd.env("AUTHD_MEMORY__TTL_SECS", ttl.to_string())
                .env("AUTHD_MEMORY__FENCE_TTL_SECS", ttl.max(600).to_string());
        }
        if let Some(url) = &config.redis_url {
            cmd.env("REDIS_URL", url);
        }
        let child = cmd.spawn().with_context(|| format!("cannot start {}", bin.display()))?;
        let mut server = Self { config, port, ops_port, child };
        server.wait_ready()?;
        Ok(server)
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!("authd ({}) exited at start-up with {status}; see its log", self.config.name);
            }
            if let Ok((200, body)) = http_get(self.port, "/health/ready") {
                // `degraded` while Redis is not trusted yet: wait for `ok`.
                if body.contains("\"status\":\"ok\"") {
                    return Ok(());
                }
            }
            super::pause(Duration::from_millis(200));
        }
        bail!("authd ({}) was not ready within 60 s; see its log", self.config.name)
    }

    /// `http://127.0.0.1:{port}{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The counters of `/metrics`.
    pub fn metrics(&self) -> anyhow::Result<Metrics> {
        let (status, body) = http_get(self.ops_port, "/metrics")?;
        anyhow::ensure!(status == 200, "/metrics answered {status}");
        Ok(Metrics::parse(&body))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory of the process in KiB (`VmRSS`).
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Graceful first, so the stores close their connections.
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            super::pause(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.1 GET on loopback: status and body.
pub fn http_get(port: u16, path: &str) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").context("malformed HTTP response")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("malformed HTTP status line")?;
    Ok((status, body.to_owned()))
}

/// Prometheus samples: series (`name{labels}`) to value.
#[derive(Debug, Clone, Default)]
pub struct Metrics(HashMap<String, f64>);

impl Metrics {
    fn parse(text: &str) -> Self {
        let mut samples = HashMap::new();
        for line in text.lines() {
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            if let Some((series, value)) = line.rsplit_once(' ')
                && let Ok(v) = value.parse::<f64>()
            {
                samples.insert(series.to_owned(), v);
            }
        }
        Self(samples)
    }

    /// Sum of the samples of `name` whose labels include every `key="value"` of `labels`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .filter(|(series, _)| {
                let (n, rest) = series.split_once('{').unwrap_or((series, ""));
                n == name && labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
            })
            .map(|(_, v)| v)
            .sum()
    }
}

/// What the tiers did during one measured run (deltas of `/metrics`).
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct TierDeltas {
    /// Session lookups answered by the memory tier, and all that asked it.
    pub memory_hits: f64,
    /// Session lookups that asked the memory tier.
    pub memory_lookups: f64,
    /// Session lookups answered by the Redis tier.
    pub redis_hits: f64,
    /// Session lookups that asked the Redis tier.
    pub redis_lookups: f64,
    /// Statements sent to SQL.
    pub sql_queries: f64,
}

impl TierDeltas {
    /// The deltas between two scrapes.
    pub fn between(before: &Metrics, after: &Metrics) -> Self {
        let d = |name: &str, labels: &[(&str, &str)]| {
            after.sum(name, labels) - before.sum(name, labels)
        };
        let lookups = "tier_lookups_total";
        let tier = |t: &'static str| {
            let hits = d(lookups, &[("kind", "session"), ("tier", t), ("result", "hit")]);
            let all = hits
                + d(lookups, &[("kind", "session"), ("tier", t), ("result", "miss")])
                + d(lookups, &[("kind", "session"), ("tier", t), ("result", "error")]);
            (hits, all)
        };
        let (memory_hits, memory_lookups) = tier("memory");
        let (redis_hits, redis_lookups) = tier("redis");
        Self {
            memory_hits,
            memory_lookups,
            redis_hits,
            redis_lookups,
            sql_queries: d("sql_queries_total", &[]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_summed_by_labels() {
        let text = "# TYPE x counter\n\
                    tier_lookups_total{kind=\"session\",tier=\"memory\",result=\"hit\"} 90\n\
                    tier_lookups_total{kind=\"session\",tier=\"memory\",result=\"miss\"} 10\n\
                    tier_lookups_total{kind=\"user\",tier=\"memory\",result=\"hit\"} 5\n\
                    sql_queries_total{backend=\"postgres\"} 7\n";
        let before = Metrics::default();
        let after = Metrics::parse(text);
        assert_eq!(after.sum("tier_lookups_total", &[("tier", "memory")]), 105.0);
        let d = TierDeltas::between(&before, &after);
        assert_eq!((d.memory_hits, d.memory_lookups, d.sql_queries), (90.0, 100.0, 7.0));
        assert_eq!(d.redis_lookups, 0.0);
    }
}
