//! The results of a run: medians over the rounds, ratios to each point's baseline, the
//! goals (docs/benchmarks.md), one table on stdout and the same as JSON.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use super::cpu::CpuPerRequest;
use super::criterion::{latency_ns, median_ns};
use super::server::TierDeltas;
use super::wrk::WrkResult;

/// One measured run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Measured {
    /// wrk's figures.
    pub wrk: WrkResult,
    /// The tiers' work during the run.
    pub deltas: TierDeltas,
    /// The server's resident memory after the run.
    pub rss_kib: Option<u64>,
    /// CPU per request of authd, Redis and PostgreSQL during the run.
    pub cpu: CpuPerRequest,
}

/// The medians of a point over its rounds.
#[derive(Debug, Clone, Copy, Default)]
struct Summary {
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    memory_hit: Option<f64>,
    redis_hit: Option<f64>,
    sql_per_request: f64,
    errors: u64,
    rss_kib: Option<u64>,
    cpu: CpuPerRequest,
    runs: usize,
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

/// The median of the values, `None` when there are none.
fn median_of(values: impl Iterator<Item = f64>) -> Option<f64> {
    let v: Vec<f64> = values.collect();
    (!v.is_empty()).then(|| median(v))
}

fn summarize(runs: &[Measured]) -> Summary {
    let med = |f: &dyn Fn(&Measured) -> f64| median(runs.iter().map(f).collect());
    let ratio = |hits: f64, all: f64| if all > 0.0 { Some(hits / all) } else { None };
    let memory_hit =
        median_of(runs.iter().filter_map(|m| ratio(m.deltas.memory_hits, m.deltas.memory_lookups)));
    let redis_hit =
        median_of(runs.iter().filter_map(|m| ratio(m.deltas.redis_hits, m.deltas.redis_lookups)));
    Summary {
        rps: med(&|m| m.wrk.rps()),
        p50_us: med(&|m| m.wrk.p50_us as f64),
        p99_us: med(&|m| m.wrk.p99_us as f64),
        memory_hit,
        redis_hit,
        sql_per_request: med(&|m| {
            if m.wrk.requests == 0 { 0.0 } else { m.deltas.sql_queries / m.wrk.requests as f64 }
        }),
        errors: runs.iter().map(|m| m.wrk.errors()).sum(),
        rss_kib: runs.iter().filter_map(|m| m.rss_kib).max(),
        cpu: CpuPerRequest {
            authd_us: median_of(runs.iter().filter_map(|m| m.cpu.authd_us)),
            redis_us: median_of(runs.iter().filter_map(|m| m.cpu.redis_us)),
            postgres_us: median_of(runs.iter().filter_map(|m| m.cpu.postgres_us)),
            redis_commands: median_of(runs.iter().filter_map(|m| m.cpu.redis_commands)),
        },
        runs: runs.len(),
    }
}

/// How a point compares with its baseline.
#[derive(Clone, Copy)]
enum Compare {
    /// req/s over the baseline's req/s.
    Throughput(&'static str),
    /// p50 over the baseline's p50.
    P50(&'static str),
    /// p99 over the baseline's p99.
    P99(&'static str),
}

/// Each HTTP point's baseline.
fn baseline_of(point: &str) -> Option<Compare> {
    Some(match point {
        "me/memory" | "me/memory@10%" | "me/sqlite" => Compare::Throughput("ceiling"),
        "me/redis" => Compare::Throughput("baseline/redis"),
        "me/sql" => Compare::Throughput("baseline/sql"),
        "login" => Compare::P50("baseline/argon2"),
        "me/memory@half" => Compare::P99("ceiling@half"),
        "me/memory@half+storm" => Compare::P99("me/memory@half"),
        "me/memory+access" => Compare::Throughput("me/memory"),
        "scale/100k@fixed" | "scale/1000k@fixed" => Compare::P99("scale/10k@fixed"),
        super::session::OURS_MEMORY | super::session::OURS => {
            Compare::Throughput(super::session::ACTIX)
        }
        _ => return None,
    })
}

/// Everything a run measured.
pub struct Report {
    plan: Value,
    machine: BTreeMap<&'static str, String>,
    points: Vec<(String, Vec<Measured>)>,
    fixed_load_rps: Vec<f64>,
    criterion: BTreeMap<&'static str, Option<f64>>,
    elapsed: Duration,
    /// The labels of `--against`'s builds.
    against: Vec<String>,
    /// B10's memory: per scale point, (sessions, RSS before the sweep, after it) in KiB.
    scale_memory: Vec<(String, usize, u64, u64)>,
}

/// A goal's verdict.
struct Goal {
    id: &'static str,
    measure: String,
    value: Option<f64>,
    target: &'static str,
    met: Option<bool>,
}

impl Report {
    /// An empty report of a run with `plan` on `machine`.
    pub fn new(plan: Value, machine: BTreeMap<&'static str, String>) -> Self {
        Self {
            plan,
            machine,
            points: Vec::new(),
            fixed_load_rps: Vec::new(),
            criterion: BTreeMap::new(),
            elapsed: Duration::ZERO,
            against: Vec::new(),
            scale_memory: Vec::new(),
        }
    }

    /// Records one run of `point`.
    pub fn add(&mut self, point: &str, measured: Measured) {
        match self.points.iter_mut().find(|(p, _)| p == point) {
            Some((_, runs)) => runs.push(measured),
            None => self.points.push((point.to_owned(), vec![measured])),
        }
    }

    /// Records the offered load of a round's fixed-load points.
    pub fn set_fixed_load(&mut self, rps: f64) {
        self.fixed_load_rps.push(rps);
    }

    /// Reads the criterion results (in-process points).
    pub fn criterion(&mut self, root: &Path) {
        let c = &mut self.criterion;
        c.insert("memory/tiered_get_hit", median_ns(root, "memory/tiered_get_hit"));
        c.insert("memory/raw_moka_get", median_ns(root, "memory/raw_moka_get"));
        c.insert("validate/memory_hit", median_ns(root, "validate/memory_hit"));
        c.insert(
            "validate/memory_hit p99",
            latency_ns(root, "validate-memory-hit-latency.json", "p99_ns"),
        );
        c.insert(
            "memory/tiered_get_hit p99",
            latency_ns(root, "memory-tier-hit-latency.json", "p99_ns"),
        );
        c.insert("redis/store_get_hit", median_ns(root, "redis/store_get_hit"));
        c.insert("redis/tiered_get_hit", median_ns(root, "redis/tiered_get_hit"));
        c.insert("redis/raw_fred_get", median_ns(root, "redis/raw_fred_get"));
        for id in [
            "redis/store_get_with_user_hit",
            "redis/tiered_get_with_user_hit",
            "sql/postgres_store_get_with_user",
            "sql/sqlite_store_get_with_user",
        ] {
            c.insert(id, median_ns(root, id));
        }
        c.insert("sql/postgres_store_get_hit", median_ns(root, "sql/postgres_store_get_hit"));
        c.insert("sql/postgres_raw_select", median_ns(root, "sql/postgres_raw_select"));
        c.insert("sql/sqlite_store_get_hit", median_ns(root, "sql/sqlite_store_get_hit"));
        c.insert("sql/sqlite_raw_select", median_ns(root, "sql/sqlite_raw_select"));
        c.insert("argon2/hash", median_ns(root, "argon2/hash"));
        c.insert("argon2/verify", median_ns(root, "argon2/verify"));
    }

    fn summary(&self, point: &str) -> Option<Summary> {
        self.points.iter().find(|(p, _)| p == point).map(|(_, runs)| summarize(runs))
    }

    fn ratio(&self, point: &str) -> Option<(String, f64)> {
        let s = self.summary(point)?;
        match baseline_of(point)? {
            Compare::Throughput(b) => Some((format!("{b} req/s"), s.rps / self.summary(b)?.rps)),
            Compare::P50(b) => Some((format!("{b} p50"), s.p50_us / self.summary(b)?.p50_us)),
            Compare::P99(b) => Some((format!("{b} p99"), s.p99_us / self.summary(b)?.p99_us)),
        }
    }

    fn crit(&self, id: &str) -> Option<f64> {
        self.criterion.get(id).copied().flatten()
    }

    fn goals(&self) -> Vec<Goal> {
        let ratio = |p: &str| self.ratio(p).map(|(_, r)| r);
        let div = |a: Option<f64>, b: Option<f64>| Some(a? / b?);
        let at_least = |v: Option<f64>, min: f64| v.map(|v| v >= min);
        let at_most = |v: Option<f64>, max: f64| v.map(|v| v <= max);
        let mut goals = vec![
            Goal {
                id: "B1",
                measure: "me/memory req/s / ceiling req/s".into(),
                value: ratio("me/memory"),
                target: ">= 0.90",
                met: at_least(ratio("me/memory"), 0.90),
            },
            Goal {
                id: "B2",
                measure: "me/memory p99 / ceiling p99, same offered load".into(),
                value: ratio("me/memory@half"),
                target: "<= 1.10",
                met: at_most(ratio("me/memory@half"), 1.10),
            },
            Goal {
                id: "B3",
                measure: "me/redis req/s / baseline/redis req/s".into(),
                value: ratio("me/redis"),
                target: ">= 0.90",
                met: at_least(ratio("me/redis"), 0.90),
            },
            Goal {
                id: "B4",
                measure: "me/sql req/s / baseline/sql req/s".into(),
                value: ratio("me/sql"),
                target: ">= 0.90",
                met: at_least(ratio("me/sql"), 0.90),
            },
        ];
        // Issue 16: against actix-session's RedisSessionStore and a bare actix-web
        // handler, measured in the same rounds.
        let vs = |a: &str, b: &str| Some(self.summary(a)?.rps / self.summary(b)?.rps);
        let peer = super::session::PEER;
        let bare = super::session::CEILING;
        for (id, measure, value, target, min) in [
            (
                "P2",
                "me/memory req/s / peer/actix-session req/s",
                vs("me/memory", peer),
                ">= 1.6",
                1.6,
            ),
            ("P2", "me/memory req/s / ceiling/actix req/s", vs("me/memory", bare), ">= 0.75", 0.75),
            (
                "P3",
                "me/redis req/s / peer/actix-session req/s",
                vs("me/redis", peer),
                ">= 1.0",
                1.0,
            ),
            (
                "P4",
                "ceiling (authd /health/live) / ceiling/actix",
                vs("ceiling", bare),
                ">= 0.95",
                0.95,
            ),
        ] {
            goals.push(Goal {
                id,
                measure: measure.into(),
                value,
                target,
                met: at_least(value, min),
            });
        }
        let p99 = self.crit("validate/memory_hit p99");
        let vs_moka = div(self.crit("validate/memory_hit"), self.crit("memory/raw_moka_get"));
        goals.push(Goal {
            id: "B5",
            measure: "in-process validate, memory hit: p99 (us)".into(),
            value: p99.map(|ns| ns / 1000.0),
            target: "<= 2 us",
            met: at_most(p99, 2000.0),
        });
        goals.push(Goal {
            id: "B5",
            measure: "validate p50 / raw moka get p50".into(),
            value: vs_moka,
            target: "<= 10",
            met: at_most(vs_moka, 10.0),
        });
        let redis = div(self.crit("redis/tiered_get_hit"), self.crit("redis/raw_fred_get"));
        let sql =
            div(self.crit("sql/postgres_store_get_hit"), self.crit("sql/postgres_raw_select"));
        goals.push(Goal {
            id: "B6",
            measure: "Redis-tier get p50 / raw fred GET p50".into(),
            value: redis,
            target: "<= 1.3",
            met: at_most(redis, 1.3),
        });
        goals.push(Goal {
            id: "B6",
            measure: "SQL-tier get p50 / raw diesel select p50".into(),
            value: sql,
            target: "<= 1.3",
            met: at_most(sql, 1.3),
        });
        // What a validation reads: the session and its user, in one lookup.
        let redis_both =
            div(self.crit("redis/tiered_get_with_user_hit"), self.crit("redis/raw_fred_get"));
        let sql_both = div(
            self.crit("sql/postgres_store_get_with_user"),
            self.crit("sql/postgres_raw_select"),
        );
        goals.push(Goal {
            id: "B6",
            measure: "Redis-tier session+user p50 / raw fred GET p50".into(),
            value: redis_both,
            target: "<= 1.3",
            met: at_most(redis_both, 1.3),
        });
        goals.push(Goal {
            id: "B6",
            measure: "SQL-tier session+user p50 / raw diesel select p50".into(),
            value: sql_both,
            target: "<= 1.3",
            met: at_most(sql_both, 1.3),
        });
        let b7 = self.summary("me/memory@10%").map(|s| s.sql_per_request);
        goals.push(Goal {
            id: "B7",
            measure: "SQL queries per /v1/me (me/memory@10%: memory = 10% of sessions)".into(),
            value: b7,
            target: "<= 0.001",
            met: at_most(b7, 0.001),
        });
        goals.push(Goal {
            id: "B8",
            measure: "login p50 / baseline/argon2 p50 (one verify over HTTP)".into(),
            value: ratio("login"),
            target: "<= 1.2",
            met: at_most(ratio("login"), 1.2),
        });
        goals.push(Goal {
            id: "B9",
            measure: "/v1/me p99 during a login storm / without".into(),
            value: ratio("me/memory@half+storm"),
            target: "<= 2",
            met: at_most(ratio("me/memory@half+storm"), 2.0),
        });
        goals.push(Goal {
            id: "B10",
            measure: "/v1/me p99 at 1M sessions / at 10k".into(),
            value: ratio("scale/1000k@fixed"),
            target: "<= 1.2",
            met: at_most(ratio("scale/1000k@fixed"), 1.2),
        });
        goals
    }

    /// Figures shown next to the goals for comparison, judged against nothing.
    fn informational(&self) -> Vec<(String, Option<f64>)> {
        let login_ns = self.summary("login").map(|s| s.p50_us * 1000.0);
        let verify_ns = self.crit("argon2/verify");
        let mut out = vec![(
            "B8: login p50 / criterion argon2 verify (other process, earlier)".to_owned(),
            login_ns.zip(verify_ns).map(|(l, v)| l / v),
        )];
        // `--against REV`: this tree over the other build, same rounds.
        let vs = |a: &str, b: &str| Some(self.summary(a)?.rps / self.summary(b)?.rps);
        for rev in &self.against {
            for point in super::AGAINST_POINTS {
                out.push((
                    format!("{point} req/s: this tree / {rev}"),
                    vs(point, &format!("against/{rev}/{point}")),
                ));
            }
        }
        out
    }

    /// Records a scale point's memory: `sessions` seeded (and as many cached, with a
    /// tenth as many users), the authd RSS before and after the memory tier was loaded.
    pub fn set_scale_memory(
        &mut self,
        label: &str,
        sessions: usize,
        idle_kib: u64,
        loaded_kib: u64,
    ) {
        self.scale_memory.push((label.to_owned(), sessions, idle_kib, loaded_kib));
    }

    /// Bytes of authd RSS per cached session (its share of the user included), by
    /// scale point.
    fn bytes_per_cached_session(&self) -> Vec<(String, f64, u64)> {
        self.scale_memory
            .iter()
            .map(|(label, sessions, idle, loaded)| {
                let bytes =
                    loaded.saturating_sub(*idle) as f64 * 1024.0 / (*sessions).max(1) as f64;
                (label.clone(), bytes, *loaded)
            })
            .collect()
    }

    /// Records a build `--against` compares with.
    pub fn add_against(&mut self, label: &str) {
        self.against.push(label.to_owned());
    }

    /// Prints the table and the goals on stdout.
    pub fn finish(&mut self, elapsed: Duration) {
        self.elapsed = elapsed;
        let mut out = String::new();
        let fmt_opt =
            |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map_or_else(|| "-".to_owned(), f);
        out.push_str(&format!(
            "\n{:<22} {:>10} {:>8} {:>8}  {:<22} {:>6} {:>8} {:>8} {:>9} {:>6} {:>5} {:>6} {:>6} {:>6}\n",
            "point",
            "req/s",
            "p50 us",
            "p99 us",
            "baseline",
            "ratio",
            "mem hit",
            "redis hit",
            "SQL q/req",
            "errors",
            "runs",
            "authd",
            "redis",
            "pg"
        ));
        for (point, _) in &self.points {
            let Some(s) = self.summary(point) else { continue };
            let (base, ratio) =
                self.ratio(point).map_or(("-".to_owned(), None), |(b, r)| (b, Some(r)));
            out.push_str(&format!(
                "{:<22} {:>10.0} {:>8.0} {:>8.0}  {:<22} {:>6} {:>8} {:>8} {:>9.4} {:>6} {:>5} {:>6} {:>6} {:>6}\n",
                point,
                s.rps,
                s.p50_us,
                s.p99_us,
                base,
                fmt_opt(ratio, &|r| format!("{r:.2}")),
                fmt_opt(s.memory_hit, &|h| format!("{:.1}%", h * 100.0)),
                fmt_opt(s.redis_hit, &|h| format!("{:.1}%", h * 100.0)),
                s.sql_per_request,
                s.errors,
                s.runs,
                fmt_opt(s.cpu.authd_us, &|v| format!("{v:.1}")),
                fmt_opt(s.cpu.redis_us, &|v| format!("{v:.1}")),
                fmt_opt(s.cpu.postgres_us, &|v| format!("{v:.1}")),
            ));
        }
        out.push_str(
            "(authd, redis, pg: CPU microseconds per request of authd, redis-server and all local \
             postgres processes during the run, user + system)\n",
        );
        if !self.fixed_load_rps.is_empty() {
            out.push_str(&format!(
                "(@half: fixed offered load of about {:.0} req/s, half of what me/memory sustained)\n",
                median(self.fixed_load_rps.clone())
            ));
        }
        for (point, bytes, loaded) in self.bytes_per_cached_session() {
            out.push_str(&format!(
                "{point}: authd RSS {:.1} MiB with every session cached; {bytes:.0} bytes per cached session\n",
                loaded as f64 / 1024.0
            ));
        }
        out.push_str("\nin-process (criterion medians, ns):\n");
        for (id, v) in &self.criterion {
            out.push_str(&format!("  {id:<28} {}\n", fmt_opt(*v, &|v| format!("{v:.0}"))));
        }
        out.push_str("\ngoals:\n");
        for g in self.goals() {
            let verdict = match g.met {
                Some(true) => "met",
                Some(false) => "MISSED",
                None => "not measured",
            };
            out.push_str(&format!(
                "  {:<4} {:<62} {:>8} (goal {:<8}) {}\n",
                g.id,
                g.measure,
                fmt_opt(g.value, &|v| format!("{v:.3}")),
                g.target,
                verdict
            ));
        }
        out.push_str("\ninformational (not a goal):\n");
        for (measure, value) in self.informational() {
            out.push_str(&format!(
                "  {measure:<67} {:>8}\n",
                fmt_opt(value, &|v| format!("{v:.3}"))
            ));
        }
        out.push_str(&format!("\nrun took {:.0} s\n", elapsed.as_secs_f64()));
        let _ = std::io::stdout().lock().write_all(out.as_bytes());
    }

    /// Everything as JSON.
    pub fn to_json(&self) -> Value {
        let points: Vec<Value> = self
            .points
            .iter()
            .map(|(point, runs)| {
                let s = summarize(runs);
                json!({
                    "point": point,
                    "rps": s.rps, "p50_us": s.p50_us, "p99_us": s.p99_us,
                    "baseline": self.ratio(point).map(|(b, _)| b),
                    "ratio": self.ratio(point).map(|(_, r)| r),
                    "memory_hit_rate": s.memory_hit, "redis_hit_rate": s.redis_hit,
                    "sql_queries_per_request": s.sql_per_request,
                    "errors": s.errors, "rss_kib": s.rss_kib,
                    "cpu_us_per_request": s.cpu,
                    "runs": runs,
                })
            })
            .collect();
        let goals: Vec<Value> = self
            .goals()
            .into_iter()
            .map(|g| json!({"id": g.id, "measure": g.measure, "value": g.value, "goal": g.target, "met": g.met}))
            .collect();
        json!({
            "machine": self.machine,
            "plan": self.plan,
            "fixed_load_rps": self.fixed_load_rps,
            "points": points,
            "criterion_ns": self.criterion,
            "goals": goals,
            "informational": self
                .informational()
                .into_iter()
                .map(|(measure, value)| json!({"measure": measure, "value": value}))
                .collect::<Vec<_>>(),
            "against": self.against,
            "scale_memory": self
                .bytes_per_cached_session()
                .into_iter()
                .map(|(point, bytes, loaded)| json!({"point": point, "bytes_per_cached_session": bytes, "rss_kib": loaded}))
                .collect::<Vec<_>>(),
            "elapsed_s": self.elapsed.as_secs_f64(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_with_p50(p50_us: u64) -> Measured {
        Measured {
            wrk: WrkResult { requests: 1, duration_us: 1, p50_us, ..WrkResult::default() },
            deltas: TierDeltas::default(),
            rss_kib: None,
            cpu: CpuPerRequest::default(),
        }
    }

    #[test]
    fn b8_is_login_p50_over_the_argon2_baseline_of_the_same_run() {
        let mut report = Report::new(Value::Null, BTreeMap::new());
        for (argon2, login) in [(20_000, 22_000), (30_000, 33_000), (25_000, 40_000)] {
            report.add("baseline/argon2", run_with_p50(argon2));
            report.add("login", run_with_p50(login));
        }
        report.criterion.insert("argon2/verify", Some(20_000_000.0));
        // Medians of the rounds: 33 ms over 25 ms.
        let b8 = report.goals().into_iter().find(|g| g.id == "B8").unwrap();
        assert_eq!(b8.value, Some(33.0 / 25.0));
        assert_eq!(b8.met, Some(false));
        assert_eq!(report.informational()[0].1, Some(33.0 / 20.0));
        let json = report.to_json();
        assert_eq!(json["informational"][0]["value"], json!(33.0 / 20.0));
        let login = json["points"].as_array().unwrap().iter().find(|p| p["point"] == "login");
        assert_eq!(login.unwrap()["baseline"], "baseline/argon2 p50");
    }
}
