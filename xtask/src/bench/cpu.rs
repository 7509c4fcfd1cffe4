//! CPU time the processes behind a point spent per request, to show where a ratio comes
//! from: authd (its `/proc/PID/stat`, every thread), Redis (`INFO cpu`, so a server on
//! another host counts too) and PostgreSQL (every local process whose name is
//! `postgres`: the backends and the background workers). User plus system time. wrk's
//! own time is not counted: the generator is the same for every point.

use std::process::Command;

/// Cumulative CPU seconds of each side at one instant; `None` where it cannot be read
/// (a remote PostgreSQL, a Redis that does not answer).
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuSample {
    authd: Option<f64>,
    redis: Option<f64>,
    postgres: Option<f64>,
    /// Commands Redis has run (`INFO commandstats`, see `costs::total_commands`).
    redis_commands: Option<f64>,
}

/// Microseconds of CPU per request of each side during one run.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct CpuPerRequest {
    /// authd.
    pub authd_us: Option<f64>,
    /// redis-server.
    pub redis_us: Option<f64>,
    /// PostgreSQL, all local processes.
    pub postgres_us: Option<f64>,
    /// Redis commands per request (not CPU: counted with the same `INFO` call).
    pub redis_commands: Option<f64>,
}

/// Clock ticks per second of `/proc/*/stat` (`getconf CLK_TCK`; 100 on Linux).
fn ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// utime + stime (fields 14 and 15) of a `/proc/PID/stat` line, in ticks. The command
/// name (field 2) may hold spaces, so fields are counted after its closing parenthesis.
fn stat_ticks(stat: &str) -> Option<(String, u64)> {
    let (head, rest) = stat.rsplit_once(')')?;
    let name = head.split_once('(')?.1.to_owned();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): utime is field 14, stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((name, utime + stime))
}

fn process_seconds(pid: u32, tick: f64) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat_ticks(&stat).map(|(_, t)| t as f64 / tick)
}

/// Every local process named `postgres`, summed.
fn postgres_seconds(tick: f64) -> Option<f64> {
    let mut total = 0u64;
    let mut found = false;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        if let Some((comm, ticks)) = stat_ticks(&stat)
            && comm == "postgres"
        {
            total += ticks;
            found = true;
        }
    }
    found.then(|| total as f64 / tick)
}

/// `used_cpu_sys + used_cpu_user` and the commands run, from one
/// `redis-cli -u URL INFO cpu commandstats`.
fn redis_sample(redis_url: &str) -> (Option<f64>, Option<f64>) {
    let info = Command::new("redis-cli")
        .args(["-u", redis_url, "INFO", "cpu", "commandstats"])
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .unwrap_or_default();
    (parse_redis_cpu(&info), super::costs::total_commands(&info).map(|n| n as f64))
}

fn parse_redis_cpu(info: &str) -> Option<f64> {
    let field = |name: &str| -> Option<f64> {
        info.lines().find_map(|l| l.trim().strip_prefix(name)?.strip_prefix(':')?.parse().ok())
    };
    Some(field("used_cpu_sys")? + field("used_cpu_user")?)
}

/// Reads the three sides' CPU time now.
pub struct CpuMeter {
    tick: f64,
    redis_url: String,
}

impl CpuMeter {
    /// A meter for authd processes and the Redis at `redis_url`.
    pub fn new(redis_url: &str) -> Self {
        Self { tick: ticks_per_second(), redis_url: redis_url.to_owned() }
    }

    /// The cumulative CPU time of `authd_pid`, Redis and PostgreSQL.
    pub fn sample(&self, authd_pid: u32) -> CpuSample {
        let (redis, redis_commands) = redis_sample(&self.redis_url);
        CpuSample {
            authd: process_seconds(authd_pid, self.tick),
            redis,
            postgres: postgres_seconds(self.tick),
            redis_commands,
        }
    }
}

impl CpuPerRequest {
    /// The CPU spent between two samples, per request.
    pub fn between(before: CpuSample, after: CpuSample, requests: u64) -> Self {
        let per = |b: Option<f64>, a: Option<f64>| {
            let (b, a) = (b?, a?);
            (requests > 0 && a >= b).then(|| (a - b) * 1e6 / requests as f64)
        };
        Self {
            authd_us: per(before.authd, after.authd),
            redis_us: per(before.redis, after.redis),
            postgres_us: per(before.postgres, after.postgres),
            redis_commands: per(before.redis_commands, after.redis_commands).map(|v| v / 1e6),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_give_name_and_ticks() {
        let line = "1234 (postgres: bench (x)) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0";
        assert_eq!(stat_ticks(line), Some(("postgres: bench (x)".to_owned(), 300)));
        assert_eq!(stat_ticks("garbage"), None);
        // The real thing: this process.
        let own = std::fs::read_to_string("/proc/self/stat").unwrap();
        assert!(stat_ticks(&own).is_some());
    }

    #[test]
    fn redis_info_cpu_is_summed() {
        let info = "# CPU\r\nused_cpu_sys:1.500000\r\nused_cpu_user:2.250000\r\nused_cpu_sys_children:9\r\n";
        assert_eq!(parse_redis_cpu(info), Some(3.75));
        assert_eq!(parse_redis_cpu("# CPU\r\n"), None);
    }

    #[test]
    fn per_request_is_the_difference_over_requests() {
        let before = CpuSample {
            authd: Some(1.0),
            redis: Some(2.0),
            postgres: None,
            redis_commands: Some(10.0),
        };
        let after = CpuSample {
            authd: Some(1.5),
            redis: Some(2.1),
            postgres: Some(3.0),
            redis_commands: Some(300_010.0),
        };
        let cpu = CpuPerRequest::between(before, after, 100_000);
        assert_eq!(cpu.authd_us, Some(5.0));
        assert!((cpu.redis_us.unwrap() - 1.0).abs() < 1e-9);
        assert_eq!(cpu.postgres_us, None);
        assert_eq!(cpu.redis_commands, Some(3.0));
        assert_eq!(CpuPerRequest::between(before, after, 0).authd_us, None);
    }
}
