//! The backends and tools a benchmark run needs: Redis and PostgreSQL (reused when they
//! answer, started locally when they do not), a database and a key prefix of the run's
//! own, and `wrk`, `psql`, `redis-cli` (installed with apt-get when missing).

use std::net::{TcpStream, ToSocketAddrs as _};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};

/// Local PostgreSQL when `DATABASE_URL` is unset (trust auth, as on CI).
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// Local Redis when `REDIS_URL` is unset.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
/// The benchmark's own database on the PostgreSQL server (dropped and re-created by
/// each run; never the shared `test` database).
pub const BENCH_DATABASE: &str = "authd_bench";
/// The benchmark's own Redis key prefix (its keys are deleted by each run, never the
/// whole database).
pub const BENCH_KEY_PREFIX: &str = "authd-bench:";

/// Where the run's backends are.
pub struct Services {
    /// PostgreSQL URL of the server's administrative database (the one given).
    pub admin_url: String,
    /// PostgreSQL URL of [`BENCH_DATABASE`].
    pub bench_url: String,
    /// Redis URL.
    pub redis_url: String,
}

/// `host:port` of a URL like `scheme://user@host:port/db?x`.
fn host_port(url: &str, default_port: u16) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    Some(if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:{default_port}")
    })
}

fn answers(url: &str, default_port: u16) -> bool {
    let Some(addr) = host_port(url, default_port) else { return false };
    let Ok(mut addrs) = addr.to_socket_addrs() else { return false };
    addrs.any(|a| TcpStream::connect_timeout(&a, Duration::from_millis(500)).is_ok())
}

fn wait_until(what: &str, mut ready: impl FnMut() -> bool) -> anyhow::Result<()> {
    for _ in 0..60 {
        if ready() {
            return Ok(());
        }
        super::pause(Duration::from_millis(500));
    }
    bail!("{what} did not come up within 30 s")
}

/// Runs a command to completion; fails with its stderr when it fails.
pub fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.stdin(Stdio::null()).output().with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!("{:?} failed: {}", cmd.get_program(), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Installs the Debian packages providing the missing programs.
pub fn ensure_tools() -> anyhow::Result<()> {
    let wanted = [("wrk", "wrk"), ("psql", "postgresql-client"), ("redis-cli", "redis-tools")];
    let missing: Vec<&str> = wanted.iter().filter(|(p, _)| !have(p)).map(|(_, pkg)| *pkg).collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("installing {}", missing.join(", "));
    run(Command::new("apt-get").arg("update").arg("-qq"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    Ok(())
}

impl Services {
    /// Uses `DATABASE_URL` / `REDIS_URL` (or the local defaults), starting the local
    /// servers when they are the defaults and do not answer.
    pub fn start_or_reuse() -> anyhow::Result<Self> {
        let admin_url =
            std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned());
        let redis_url = std::env::var("REDIS_URL").unwrap_or_else(|_| DEFAULT_REDIS_URL.to_owned());
        anyhow::ensure!(
            admin_url.starts_with("postgres"),
            "DATABASE_URL must be a PostgreSQL URL for the benchmark"
        );
        if !answers(&redis_url, 6379) {
            anyhow::ensure!(redis_url == DEFAULT_REDIS_URL, "Redis at REDIS_URL does not answer");
            eprintln!("starting Redis on 127.0.0.1:6379");
            run(Command::new("redis-server").args([
                "--daemonize",
                "yes",
                "--bind",
                "127.0.0.1",
                "--port",
                "6379",
                "--save",
                "",
                "--appendonly",
                "no",
            ]))?;
            wait_until("Redis", || answers(&redis_url, 6379))?;
        }
        if !answers(&admin_url, 5432) {
            anyhow::ensure!(
                admin_url == DEFAULT_DATABASE_URL,
                "PostgreSQL at DATABASE_URL does not answer"
            );
            eprintln!("starting PostgreSQL");
            let version = run(Command::new("ls").arg("/etc/postgresql"))?;
            let version =
                version.lines().next().context("no PostgreSQL cluster in /etc/postgresql")?;
            run(Command::new("pg_ctlcluster").args([
                "--skip-systemctl-redirect",
                version,
                "main",
                "start",
            ]))?;
            wait_until("PostgreSQL", || answers(&admin_url, 5432))?;
        }
        let bench_url = with_database(&admin_url, BENCH_DATABASE)?;
        Ok(Self { admin_url, bench_url, redis_url })
    }

    /// Drops and re-creates [`BENCH_DATABASE`], and deletes every key under
    /// [`BENCH_KEY_PREFIX`].
    pub fn reset(&self) -> anyhow::Result<()> {
        run(Command::new("psql").args([
            self.admin_url.as_str(),
            "-qX",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            &format!("DROP DATABASE IF EXISTS {BENCH_DATABASE} WITH (FORCE)"),
            "-c",
            &format!("CREATE DATABASE {BENCH_DATABASE}"),
        ]))
        .context("re-creating the benchmark database")?;
        // SCAN + UNLINK of our prefix only: the server is shared.
        let script = format!(
            "redis-cli -u \"$1\" --scan --pattern '{BENCH_KEY_PREFIX}*' | xargs -r -n 1000 redis-cli -u \"$1\" unlink > /dev/null"
        );
        run(Command::new("sh").args(["-c", &script, "sh", &self.redis_url]))
            .context("deleting the benchmark's Redis keys")?;
        Ok(())
    }
}

/// `url` with its database name replaced by `db`.
fn with_database(url: &str, db: &str) -> anyhow::Result<String> {
    let (scheme, rest) = url.split_once("://").context("not a URL")?;
    let (before_query, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let authority = before_query.split('/').next().unwrap_or(before_query);
    let mut out = format!("{scheme}://{authority}/{db}");
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_taken_apart() {
        assert_eq!(
            host_port("postgres://postgres@127.0.0.1:5432/test", 5432).unwrap(),
            "127.0.0.1:5432"
        );
        assert_eq!(host_port("redis://localhost", 6379).unwrap(), "localhost:6379");
        assert_eq!(
            host_port("postgres://u:p@db.example:6000/x?sslmode=disable", 5432).unwrap(),
            "db.example:6000"
        );
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/test?sslmode=disable", "b").unwrap(),
            "postgres://postgres@127.0.0.1:5432/b?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "b").unwrap(), "postgres://h/b");
    }
}
