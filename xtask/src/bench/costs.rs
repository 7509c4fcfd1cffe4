//! What `cargo xtask capacity` (docs/capacity.md) needs that the points do not measure,
//! recorded as the report's top-level `costs` object (each point's Redis commands per
//! request are `cpu.rs`'s, `cpu_us_per_request.redis_commands`):
//!
//! - `memory`: the memory tier's bytes per entry: `full`'s RSS after the warm-up sweep
//!   minus its RSS before, over the `memory_tier_entries` gauge;
//! - `redis`: bytes per key kind (`MEMORY USAGE key SAMPLES 0` on up to
//!   [`KEYS_SAMPLED`] keys of each kind under `authd-bench:{u:`, times the kind's
//!   count from a `SCAN`), hence bytes per session (its key and its share of the
//!   user's index), per user (the cached profile) and per tombstone;
//! - `postgres`: `pg_total_relation_size` (heap, indexes, TOAST) over the rows of the
//!   tables a session, a user, a revocation and a security event live in;
//! - `login` and `revocation`: one operation's SQL statements (`sql_queries_total`),
//!   Redis commands (`INFO commandstats`, by name), CPU µs of authd, Redis and
//!   PostgreSQL (as the points'), and PostgreSQL's WAL bytes, WAL syncs, commits and
//!   rows written (`pg_current_wal_lsn`, `pg_stat_wal`, `pg_stat_database`), measured on
//!   `full` after the rounds: logins as `login.lua` sends them, revocations as
//!   `POST /v1/auth/logout` of the last seeded sessions (which no later step uses).
//!
//! Redis counts the commands a Lua script runs as well as the script's `EVALSHA`; the
//! bench's own `INFO` calls are left out. `pg_stat_wal` is the whole server's: other
//! databases' traffic during the step counts too (the bench is meant to run alone).
//! The bench's four other authd processes run meanwhile: like every instance of a fleet
//! they follow the revocation journal and re-apply each revocation to their caches and
//! to Redis, so that work counts in the Redis and PostgreSQL figures of a revocation
//! (not in authd's, which are `full`'s process alone).

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::{Value, json};

use super::cpu::{CpuPerRequest, CpuSample};
use super::server::{Metrics, Server};
use super::services::{self, BENCH_KEY_PREFIX, Services};
use super::{Runner, pause};

/// Keys of each kind whose `MEMORY USAGE` is read.
const KEYS_SAMPLED: usize = 2_000;
/// Sessions logged out for the revocation cost (at most a quarter of those seeded).
const REVOCATIONS: usize = 2_000;
/// The wait before the last sample of an operation step: PostgreSQL backends publish
/// their statistics at most once a second, and the event log writes in batches.
const SETTLE: Duration = Duration::from_millis(2_500);

/// Calls per command in `INFO commandstats` text (`cmdstat_get:calls=5,usec=...`).
pub fn parse_commandstats(info: &str) -> BTreeMap<String, u64> {
    info.lines()
        .filter_map(|l| {
            let (name, rest) = l.trim().strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest.split(',').find_map(|f| f.strip_prefix("calls="))?.parse().ok()?;
            Some((name.to_owned(), calls))
        })
        .collect()
}

/// The commands Redis has run, `INFO` (the bench's own sampling) left out; `None`
/// when the text holds no command statistics.
pub fn total_commands(info: &str) -> Option<u64> {
    let stats = parse_commandstats(info);
    (!stats.is_empty()).then(|| stats.iter().filter(|(n, _)| *n != "info").map(|(_, c)| c).sum())
}

fn redis_cli(url: &str, args: &[&str]) -> anyhow::Result<String> {
    services::run(Command::new("redis-cli").arg("-u").arg(url).args(args))
}

fn commandstats(url: &str) -> anyhow::Result<BTreeMap<String, u64>> {
    Ok(parse_commandstats(&redis_cli(url, &["INFO", "commandstats"])?))
}

/// The whole server's WAL and the bench database's transactions, at one instant.
const PG_STATS: &str = "SELECT pg_current_wal_lsn() - '0/0'::pg_lsn, w.wal_records, w.wal_sync, \
     w.wal_write, d.xact_commit, d.tup_inserted + d.tup_updated + d.tup_deleted, \
     (SELECT count(*) FROM security_events), (SELECT count(*) FROM session_revocations) \
     FROM pg_stat_wal w, pg_stat_database d WHERE d.datname = current_database()";
const PG_FIELDS: [&str; 8] = [
    "wal_bytes",
    "wal_records",
    "wal_syncs",
    "wal_writes",
    "commits",
    "rows_written",
    "security_events",
    "session_revocations",
];

fn psql(url: &str, sql: &str) -> anyhow::Result<String> {
    services::run(Command::new("psql").args([url, "-XAtq", "-F", " ", "-c", sql]))
}

fn pg_stats(url: &str) -> anyhow::Result<Vec<f64>> {
    let out = psql(url, PG_STATS)?;
    let v: Vec<f64> = out.split_whitespace().filter_map(|f| f.parse().ok()).collect();
    anyhow::ensure!(v.len() == PG_FIELDS.len(), "unexpected statistics: {out:?}");
    Ok(v)
}

/// Everything an operation's cost is a difference of.
struct Snapshot {
    metrics: Metrics,
    cpu: CpuSample,
    redis: BTreeMap<String, u64>,
    pg: Vec<f64>,
}

impl Snapshot {
    fn take(runner: &Runner<'_>, server: &Server, services: &Services) -> anyhow::Result<Self> {
        Ok(Self {
            metrics: server.metrics()?,
            cpu: runner.cpu.sample(server.pid()),
            redis: commandstats(&services.redis_url)?,
            pg: pg_stats(&services.bench_url)?,
        })
    }

    /// Per operation, from `self` to `after`.
    fn cost(&self, after: &Self, ops: u64, failures: u64, seconds: f64) -> Value {
        let per = |d: f64| if ops == 0 { f64::NAN } else { d / ops as f64 };
        let sql = after.metrics.sum("sql_queries_total", &[])
            - self.metrics.sum("sql_queries_total", &[]);
        let by_name: BTreeMap<&str, f64> = after
            .redis
            .iter()
            .filter(|(name, _)| *name != "info")
            .filter_map(|(name, calls)| {
                let d = calls.saturating_sub(self.redis.get(name).copied().unwrap_or(0));
                (d > 0).then(|| (name.as_str(), per(d as f64)))
            })
            .collect();
        let pg: BTreeMap<&str, f64> = PG_FIELDS
            .iter()
            .zip(self.pg.iter().zip(&after.pg))
            .map(|(name, (b, a))| (*name, per(a - b)))
            .collect();
        json!({
            "ops": ops,
            "failures": failures,
            "seconds": seconds,
            "sql_statements_per_op": per(sql),
            "redis_commands_per_op": by_name.values().sum::<f64>(),
            "redis_commands_by_name_per_op": by_name,
            "cpu_us_per_op": CpuPerRequest::between(self.cpu, after.cpu, ops),
            "postgres_per_op": pg,
        })
    }
}

/// The memory tier's figures right after the warm-up sweep; `rss_cold_kib` is `full`'s
/// RSS before it.
pub fn memory_tier(server: &Server, rss_cold_kib: Option<u64>) -> Value {
    let entries = server.metrics().map(|m| m.sum("memory_tier_entries", &[])).ok();
    let warm = server.rss_kib();
    let per_entry = match (rss_cold_kib, warm, entries) {
        (Some(c), Some(w), Some(e)) if e > 0.0 && w >= c => Some((w - c) as f64 * 1024.0 / e),
        _ => None,
    };
    json!({
        "method": "authd (full) VmRSS after the warm-up sweep minus before it, over the \
                   memory_tier_entries gauge (sessions and users)",
        "rss_cold_kib": rss_cold_kib,
        "rss_warm_kib": warm,
        "entries": entries,
        "bytes_per_entry": per_entry,
    })
}

/// The kind of a key under `authd-bench:{u:U}:`.
fn key_kind(key: &str) -> &'static str {
    let rest = key.split_once("}:").map_or("", |(_, r)| r);
    match rest {
        "idx" => "index",
        "user" => "user",
        "fence" => "fence",
        _ if rest.starts_with("s:") => "session",
        _ if rest.starts_with("t:") => "tombstone",
        _ => "other",
    }
}

/// Mean `MEMORY USAGE` of the keys (expired ones skipped).
fn mean_usage(url: &str, keys: &[&str]) -> anyhow::Result<Option<f64>> {
    let script: String = keys.iter().map(|k| format!("MEMORY USAGE {k} SAMPLES 0\n")).collect();
    let mut child = Command::new("redis-cli")
        .args(["-u", url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot run redis-cli")?;
    let mut stdin = child.stdin.take().context("redis-cli stdin")?;
    let writer = std::thread::spawn(move || stdin.write_all(script.as_bytes()));
    let out = child.wait_with_output()?;
    writer.join().map_err(|_| anyhow::anyhow!("writing to redis-cli panicked"))??;
    let sizes: Vec<f64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    Ok((!sizes.is_empty()).then(|| sizes.iter().sum::<f64>() / sizes.len() as f64))
}

fn redis_bytes(url: &str) -> anyhow::Result<Value> {
    let pattern = format!("{BENCH_KEY_PREFIX}{{u:*");
    let listing = redis_cli(url, &["--scan", "--pattern", &pattern])?;
    let mut kinds: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for key in listing.lines().filter(|k| !k.is_empty()) {
        kinds.entry(key_kind(key)).or_default().push(key);
    }
    let mut table = BTreeMap::new();
    for (kind, keys) in &kinds {
        let mean = mean_usage(url, &keys[..keys.len().min(KEYS_SAMPLED)])?;
        table.insert(*kind, (keys.len() as f64, mean));
    }
    let count = |k: &str| table.get(k).map_or(0.0, |(n, _)| *n);
    let total = |k: &str| table.get(k).map_or(0.0, |(n, m)| n * m.unwrap_or(0.0));
    let sessions = count("session");
    let keys: BTreeMap<&str, Value> =
        table.iter().map(|(k, (n, m))| (*k, json!({"count": n, "mean_bytes": m}))).collect();
    let bytes_per_session =
        (sessions > 0.0).then(|| (total("session") + total("index")) / sessions);
    Ok(json!({
        "method": format!(
            "MEMORY USAGE (SAMPLES 0) of up to {KEYS_SAMPLED} keys of each kind under \
             {pattern}, mean times the kind's SCAN count; a session is its key plus its \
             share of its user's index"
        ),
        "keys": keys,
        "bytes_per_session": bytes_per_session,
        "bytes_per_user": table.get("user").and_then(|(_, m)| *m),
        "bytes_per_tombstone": table.get("tombstone").and_then(|(_, m)| *m),
    }))
}

/// Bytes and rows of the tables the model stores into.
fn pg_tables(url: &str) -> anyhow::Result<Value> {
    let mut table = BTreeMap::new();
    for name in ["sessions", "users", "session_revocations", "security_events"] {
        let sql = format!("SELECT pg_total_relation_size('{name}'), count(*) FROM {name}");
        let out = psql(url, &sql)?;
        let v: Vec<f64> = out.split_whitespace().filter_map(|f| f.parse().ok()).collect();
        let [bytes, rows] = v[..] else { anyhow::bail!("unexpected answer for {name}: {out:?}") };
        let per_row = (rows > 0.0).then(|| bytes / rows);
        table.insert(name, json!({"bytes": bytes, "rows": rows, "bytes_per_row": per_row}));
    }
    Ok(json!(table))
}

/// `POST /v1/auth/logout` with each token's cookie, one keep-alive connection, one at a
/// time: (logged out, failed).
fn logout_all(server: &Server, tokens: &[String]) -> anyhow::Result<(u64, u64)> {
    let base = server.url("");
    let host = base.trim_start_matches("http://").to_owned();
    let connect = || -> anyhow::Result<(TcpStream, BufReader<TcpStream>)> {
        let stream = TcpStream::connect(&host)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let reader = BufReader::new(stream.try_clone()?);
        Ok((stream, reader))
    };
    let (mut stream, mut reader) = connect()?;
    let (mut ok, mut failed) = (0, 0);
    for token in tokens {
        // One write: a request split over several packets waits for delayed ACKs.
        let request = format!(
            "POST /v1/auth/logout HTTP/1.1\r\nHost: {host}\r\nOrigin: {base}\r\n\
             Cookie: session={token}\r\nContent-Length: 0\r\n\r\n"
        );
        stream.write_all(request.as_bytes())?;
        let mut status = String::new();
        reader.read_line(&mut status)?;
        let (mut length, mut close) = (0usize, false);
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 || line == "\r\n" {
                break;
            }
            let lower = line.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
            close |= lower.starts_with("connection:") && lower.contains("close");
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        if status.split_whitespace().nth(1) == Some("204") {
            ok += 1;
        } else {
            failed += 1;
        }
        if close {
            (stream, reader) = connect()?;
        }
    }
    Ok((ok, failed))
}

/// The last tokens of the sessions file (the coldest under Zipf).
fn tail_tokens(path: &std::path::Path, n: usize) -> anyhow::Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let tokens: Vec<&str> = text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    let n = n.min(tokens.len() / 4);
    Ok(tokens[tokens.len() - n..].iter().map(|t| (*t).to_owned()).collect())
}

fn step(
    runner: &Runner<'_>,
    server: &Server,
    services: &Services,
    op: impl FnOnce() -> anyhow::Result<(u64, u64)>,
) -> anyhow::Result<Value> {
    let before = Snapshot::take(runner, server, services)?;
    let started = Instant::now();
    let (ops, failures) = op()?;
    let seconds = started.elapsed().as_secs_f64();
    pause(SETTLE);
    let after = Snapshot::take(runner, server, services)?;
    Ok(before.cost(&after, ops, failures, seconds))
}

/// Measures the costs on `server` (the full stack, after the rounds) and prints them;
/// `memory` is [`memory_tier`]'s. A part that fails is recorded as its error.
pub fn measure(runner: &Runner<'_>, server: &Server, services: &Services, memory: Value) -> Value {
    eprintln!("costs: bytes per session, one login, one revocation");
    let record = |r: anyhow::Result<Value>| {
        r.unwrap_or_else(|e| {
            eprintln!("  costs: {e:#}");
            json!({"error": format!("{e:#}")})
        })
    };
    let pg_before = record(pg_tables(&services.bench_url));
    let login = record(step(runner, server, services, || {
        let conns = u32::try_from(runner.plan.hash_concurrency).unwrap_or(1).max(1);
        let run = Duration::from_secs(runner.plan.duration_s);
        let w = runner.login(server, conns, run).run()?;
        Ok((w.requests.saturating_sub(w.status_errors), w.errors()))
    }));
    let revocation = record(step(runner, server, services, || {
        logout_all(server, &tail_tokens(runner.tokens, REVOCATIONS)?)
    }));
    let costs = json!({
        "memory": memory,
        "redis": record(redis_bytes(&services.redis_url)),
        "postgres": {"tables": pg_before, "tables_after_ops": record(pg_tables(&services.bench_url))},
        "login": login,
        "revocation": revocation,
    });
    print(&costs);
    costs
}

/// The report's JSON with `costs` as its top-level `costs` object.
pub fn attach(mut report: Value, costs: Value) -> Value {
    report["costs"] = costs;
    report
}

/// The short section on stdout.
fn print(costs: &Value) {
    let f = |v: &Value| v.as_f64().map_or_else(|| "-".to_owned(), |x| format!("{x:.1}"));
    let mut out = String::from("\ncosts (for cargo xtask capacity):\n");
    out.push_str(&format!(
        "  bytes per session: memory tier {} per entry, Redis {} (+{} per user), PostgreSQL {} (+{} per user)\n",
        f(&costs["memory"]["bytes_per_entry"]),
        f(&costs["redis"]["bytes_per_session"]),
        f(&costs["redis"]["bytes_per_user"]),
        f(&costs["postgres"]["tables"]["sessions"]["bytes_per_row"]),
        f(&costs["postgres"]["tables"]["users"]["bytes_per_row"]),
    ));
    for op in ["login", "revocation"] {
        let c = &costs[op];
        out.push_str(&format!(
            "  {op:<10} x{}: SQL {} stmt, Redis {} cmd, CPU us authd {} redis {} pg {}, WAL {} B, {} syncs\n",
            c["ops"],
            f(&c["sql_statements_per_op"]),
            f(&c["redis_commands_per_op"]),
            f(&c["cpu_us_per_op"]["authd_us"]),
            f(&c["cpu_us_per_op"]["redis_us"]),
            f(&c["cpu_us_per_op"]["postgres_us"]),
            f(&c["postgres_per_op"]["wal_bytes"]),
            f(&c["postgres_per_op"]["wal_syncs"]),
        ));
    }
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commandstats_are_parsed_and_info_left_out() {
        let info = "# Commandstats\r\n\
                    cmdstat_info:calls=7,usec=30,usec_per_call=30.00\r\n\
                    cmdstat_mget:calls=100,usec=6,usec_per_call=3.00,rejected_calls=0\r\n\
                    cmdstat_evalsha:calls=5,usec=63\r\n";
        let stats = parse_commandstats(info);
        assert_eq!(stats.get("mget"), Some(&100));
        assert_eq!(stats.len(), 3);
        assert_eq!(total_commands(info), Some(105));
        assert_eq!(total_commands("# CPU\r\nused_cpu_sys:1.0\r\n"), None);
    }

    #[test]
    fn keys_are_sorted_by_kind() {
        assert_eq!(key_kind("authd-bench:{u:12}:s:abcd"), "session");
        assert_eq!(key_kind("authd-bench:{u:12}:t:abcd"), "tombstone");
        assert_eq!(key_kind("authd-bench:{u:12}:idx"), "index");
        assert_eq!(key_kind("authd-bench:{u:12}:user"), "user");
        assert_eq!(key_kind("authd-bench:{u:12}:fence"), "fence");
        assert_eq!(key_kind("authd-bench:{u:12}:vs:verify"), "other");
    }
}
