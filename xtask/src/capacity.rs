//! `cargo xtask capacity`: the capacity model of docs/capacity.md, computed from a bench
//! report (`target/bench/latest.json`): for 10k, 1M and 100M live sessions and 1k,
//! 100k and 1M requests per second (5 % of them logins), how many authd cores, Redis
//! Cluster shards (memory and commands), PostgreSQL cores, IOPS and storage, and which
//! limit is reached first. Every figure is a measured input (`M..`, a field of the
//! report) or an assumption (`A..`), combined by the formulas printed under the tables.
//! `--write FILE` replaces the part of FILE between the `<!-- capacity:begin -->` and
//! `<!-- capacity:end -->` markers.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde_json::Value;

/// Options of `cargo xtask capacity`.
#[derive(Debug, clap::Args)]
pub struct CapacityArgs {
    /// The bench report to model from (a relative path is from the workspace root).
    #[arg(long, default_value = "target/bench/latest.json")]
    input: PathBuf,
    /// Replace the generated part of this markdown file (between the capacity markers)
    /// instead of printing it.
    #[arg(long)]
    write: Option<PathBuf>,
}

const BEGIN: &str = "<!-- capacity:begin -->";
const END: &str = "<!-- capacity:end -->";
const DAY: f64 = 86_400.0;

/// An assumption: id, what, value, unit, why.
type Assumption = (&'static str, &'static str, f64, &'static str, &'static str);

const ASSUMPTIONS: [Assumption; 15] = [
    ("A1", "logins per request", 0.05, "", "issue 16: 5 % of the requests are logins"),
    (
        "A2",
        "revocations (logouts) per login",
        1.0,
        "",
        "upper bound: every session ends with a logout; expiry costs no request",
    ),
    ("A3", "planned CPU utilization", 0.5, "", "headroom for peaks and for losing a node"),
    (
        "A4",
        "usable memory per Redis shard",
        25e9,
        "B",
        "a 32 GB node with room to fork for a snapshot",
    ),
    (
        "A5",
        "Redis memory over MEMORY USAGE",
        1.25,
        "x",
        "the expiry dict's entries, allocator fragmentation",
    ),
    ("A6", "Redis cores per shard", 1.0, "", "one main thread runs every command"),
    (
        "A7",
        "life of a logout tombstone",
        30.0 * DAY,
        "s",
        "the session's remaining absolute life: up to the 30-day default (a bench tombstone's PTTL)",
    ),
    (
        "A8",
        "revocation journal retention",
        30.0 * DAY,
        "s",
        "at least the absolute session life (janitor)",
    ),
    ("A9", "security event retention", 90.0 * DAY, "s", "authd's events.retention_days default"),
    (
        "A10",
        "PostgreSQL page writes per row written",
        1.0,
        "",
        "upper bound: no two rows share a page write at checkpoint; reads come from cache",
    ),
    (
        "A11",
        "memory tier of each authd, share of sessions and users",
        0.1,
        "",
        "as in point me/memory@10%, whose per-check costs M1..M4 are",
    ),
    (
        "A12",
        "limit: PostgreSQL primary cores",
        64.0,
        "",
        "one large server; the writes do not shard",
    ),
    ("A13", "limit: PostgreSQL write IOPS", 64_000.0, "", "one provisioned-IOPS cloud volume"),
    ("A14", "limit: PostgreSQL storage", 16e12, "B", "one 16 TB volume"),
    (
        "A15",
        "limit: Redis Cluster shards",
        1_000.0,
        "",
        "Redis Cluster's documented maximum of 1000 nodes",
    ),
];

fn assumption(id: &str) -> f64 {
    ASSUMPTIONS.iter().find(|a| a.0 == id).map_or(f64::NAN, |a| a.2)
}

/// A measured input: key (for the formulas), shown id, what, value, where in the report.
#[derive(Debug, Clone)]
struct Input {
    key: String,
    id: String,
    what: String,
    value: f64,
    source: String,
}

/// The measured inputs.
#[derive(Debug)]
struct Inputs(Vec<Input>);

/// The per-check inputs: key, what, field of point [`CHECK`].
const CHECK_FIELDS: [(&str, &str, &str); 4] = [
    ("check.authd_us", "authd CPU µs per check", "cpu_us_per_request.authd_us"),
    ("check.redis_us", "Redis CPU µs per check", "cpu_us_per_request.redis_us"),
    ("check.redis_cmds", "Redis commands per check", "cpu_us_per_request.redis_commands"),
    ("check.sql", "SQL statements per check", "sql_queries_per_request"),
];
/// The point whose per-request costs are a check's.
const CHECK: &str = "me/memory@10%";
/// The per-operation inputs of a login and a revocation: key suffix, what, field.
const OP_FIELDS: [(&str, &str, &str); 8] = [
    ("authd_us", "authd CPU µs", "cpu_us_per_op.authd_us"),
    ("redis_us", "Redis CPU µs", "cpu_us_per_op.redis_us"),
    ("pg_us", "PostgreSQL CPU µs", "cpu_us_per_op.postgres_us"),
    ("redis_cmds", "Redis commands", "redis_commands_per_op"),
    ("wal_syncs", "PostgreSQL WAL syncs", "postgres_per_op.wal_syncs"),
    ("rows", "PostgreSQL rows written", "postgres_per_op.rows_written"),
    ("events", "security events written", "postgres_per_op.security_events"),
    ("journal", "revocation journal rows written", "postgres_per_op.session_revocations"),
];
/// Bytes: key, what, path under `costs`.
const BYTE_FIELDS: [(&str, &str, &str); 8] = [
    ("mem.entry", "memory tier bytes per entry", "memory.bytes_per_entry"),
    ("redis.session", "Redis bytes per session", "redis.bytes_per_session"),
    ("redis.user", "Redis bytes per user", "redis.bytes_per_user"),
    ("redis.tombstone", "Redis bytes per tombstone", "redis.bytes_per_tombstone"),
    ("pg.session", "PostgreSQL bytes per session", "postgres.tables.sessions.bytes_per_row"),
    ("pg.user", "PostgreSQL bytes per user", "postgres.tables.users.bytes_per_row"),
    (
        "pg.journal",
        "PostgreSQL bytes per journal row",
        "postgres.tables_after_ops.session_revocations.bytes_per_row",
    ),
    (
        "pg.event",
        "PostgreSQL bytes per security event",
        "postgres.tables_after_ops.security_events.bytes_per_row",
    ),
];

fn lookup<'a>(mut v: &'a Value, path: &str) -> Option<&'a Value> {
    for key in path.split('.') {
        v = v.get(key)?;
    }
    Some(v)
}

impl Inputs {
    fn get(&self, key: &str) -> f64 {
        self.0.iter().find(|i| i.key == key).map_or(f64::NAN, |i| i.value)
    }

    /// Reads every input from a bench report; a missing one is an error naming it.
    fn from_report(report: &Value) -> anyhow::Result<Self> {
        let points = report["points"].as_array().context("no points in the report")?;
        let point = |name: &str| points.iter().find(|p| p["point"] == name);
        let at = |p: &str, path: &str| lookup(point(p)?, path)?.as_f64();
        let cost = |path: &str| lookup(&report["costs"], path)?.as_f64();
        let mut inputs = Vec::new();
        let mut add =
            |key: String, what: String, value: Option<f64>, source: String| -> anyhow::Result<()> {
                let value = value
                    .filter(|v| v.is_finite())
                    .with_context(|| format!("{what} is missing from the report: {source}"))?;
                let id = format!("M{}", inputs.len() + 1);
                inputs.push(Input { key, id, what, value, source });
                Ok(())
            };
        for (key, what, field) in CHECK_FIELDS {
            add(key.into(), what.into(), at(CHECK, field), format!("point `{CHECK}` `{field}`"))?;
        }
        let per_statement = at("me/sql", "cpu_us_per_request.postgres_us")
            .zip(at("me/sql", "sql_queries_per_request"))
            .and_then(|(us, q)| (q > 0.0).then(|| us / q));
        add(
            "check.pg_us_per_sql".into(),
            "PostgreSQL CPU µs per SQL statement of a check".into(),
            per_statement,
            "point `me/sql` `cpu_us_per_request.postgres_us` / `sql_queries_per_request`".into(),
        )?;
        for op in ["login", "revocation"] {
            for (suffix, what, field) in OP_FIELDS {
                let path = format!("{op}.{field}");
                // A login writes no journal row and a revocation may write no event:
                // an absent counter there is a zero, not a gap.
                let value = cost(&path).or(Some(0.0).filter(|_| suffix == "journal"));
                add(
                    format!("{op}.{suffix}"),
                    format!("{what} per {op}"),
                    value,
                    format!("`costs.{path}`"),
                )?;
            }
        }
        for (key, what, path) in BYTE_FIELDS {
            add(key.into(), what.into(), cost(path), format!("`costs.{path}`"))?;
        }
        let plan = &report["plan"];
        let per_user = plan["sessions"].as_f64().zip(plan["users"].as_f64()).map(|(s, u)| s / u);
        add(
            "sessions_per_user".into(),
            "sessions per user".into(),
            per_user,
            "`plan.sessions` / `plan.users`".into(),
        )?;
        Ok(Self(inputs))
    }
}

/// One cell of the grid.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Cell {
    sessions: f64,
    rps: f64,
    logins: f64,
    revocations: f64,
    authd_cores: f64,
    memory_tier_bytes: f64,
    redis_cmds: f64,
    redis_us_per_cmd: f64,
    redis_bytes: f64,
    shards_memory: f64,
    shards_ops: f64,
    shards: f64,
    pg_cores: f64,
    pg_iops: f64,
    pg_bytes: f64,
}

/// The formulas, as the document prints them under the tables; `[key]` stands for the
/// id of that measured input.
const FORMULAS: &str = "\
- logins/s L = R × A1; checks/s C = R − L; revocations/s V = L × A2; users U = S / [sessions_per_user]; \
implied session life = S / L
- authd cores = (C × [check.authd_us] + L × [login.authd_us] + V × [revocation.authd_us]) / 10⁶ / A3
- authd memory tier = (S + U) × A11 × [mem.entry], in each instance
- Redis commands/s = C × [check.redis_cmds] + L × [login.redis_cmds] + V × [revocation.redis_cmds]; \
µs/command = Redis CPU / commands
- Redis CPU = (C × [check.redis_us] + L × [login.redis_us] + V × [revocation.redis_us]) / 10⁶ core-s/s; \
shards (commands) = ⌈Redis CPU / (A6 × A3)⌉
- Redis memory = (S × [redis.session] + U × [redis.user] + V × A7 × [redis.tombstone]) × A5; \
shards (memory) = ⌈Redis memory / A4⌉; Redis shards = max(memory, commands, 1)
- PostgreSQL cores = (C × [check.sql] × [check.pg_us_per_sql] + L × [login.pg_us] + V × [revocation.pg_us]) / 10⁶ / A3
- PostgreSQL IOPS = L × ([login.wal_syncs] + [login.rows] × A10) + V × ([revocation.wal_syncs] + [revocation.rows] × A10)
- PostgreSQL storage = S × [pg.session] + U × [pg.user] \
+ (L × [login.journal] + V × [revocation.journal]) × A8 × [pg.journal] \
+ (L × [login.events] + V × [revocation.events]) × A9 × [pg.event]
- first wall: the largest of PostgreSQL cores / A12, IOPS / A13, storage / A14 and Redis shards / A15 \
(authd keeps no state and scales out)";

fn model(m: &Inputs, sessions: f64, rps: f64) -> Cell {
    let a = assumption;
    let logins = rps * a("A1");
    let checks = rps - logins;
    let revocations = logins * a("A2");
    let users = sessions / m.get("sessions_per_user");
    let per_s = |check: f64, what: &str| {
        checks * check
            + logins * m.get(&format!("login.{what}"))
            + revocations * m.get(&format!("revocation.{what}"))
    };
    let authd_cores = per_s(m.get("check.authd_us"), "authd_us") / 1e6 / a("A3");
    let redis_cpu = per_s(m.get("check.redis_us"), "redis_us") / 1e6;
    let redis_cmds = per_s(m.get("check.redis_cmds"), "redis_cmds");
    let redis_bytes = (sessions * m.get("redis.session")
        + users * m.get("redis.user")
        + revocations * a("A7") * m.get("redis.tombstone"))
        * a("A5");
    let shards_memory = (redis_bytes / a("A4")).ceil();
    let shards_ops = (redis_cpu / (a("A6") * a("A3"))).ceil();
    let pg_sql_us = m.get("check.sql") * m.get("check.pg_us_per_sql");
    let pg_cores = per_s(pg_sql_us, "pg_us") / 1e6 / a("A3");
    let io = |op: &str| m.get(&format!("{op}.wal_syncs")) + m.get(&format!("{op}.rows")) * a("A10");
    let pg_iops = logins * io("login") + revocations * io("revocation");
    let journal_rows = per_s(0.0, "journal") * a("A8");
    let events = per_s(0.0, "events") * a("A9");
    let pg_bytes = sessions * m.get("pg.session")
        + users * m.get("pg.user")
        + journal_rows * m.get("pg.journal")
        + events * m.get("pg.event");
    Cell {
        sessions,
        rps,
        logins,
        revocations,
        authd_cores,
        memory_tier_bytes: (sessions + users) * a("A11") * m.get("mem.entry"),
        redis_cmds,
        redis_us_per_cmd: redis_cpu * 1e6 / redis_cmds,
        redis_bytes,
        shards_memory,
        shards_ops,
        shards: shards_memory.max(shards_ops).max(1.0),
        pg_cores,
        pg_iops,
        pg_bytes,
    }
}

/// Each limited resource's use as a share of its limit.
fn shares(c: &Cell) -> [(&'static str, f64); 4] {
    [
        ("PostgreSQL cores", c.pg_cores / assumption("A12")),
        ("PostgreSQL IOPS", c.pg_iops / assumption("A13")),
        ("PostgreSQL storage", c.pg_bytes / assumption("A14")),
        ("Redis shards", c.shards / assumption("A15")),
    ]
}

/// The limit reached first (the largest share of its limit) and that share.
fn first_wall(c: &Cell) -> (&'static str, f64) {
    shares(c).into_iter().fold(("none", 0.0), |best, x| if x.1 > best.1 { x } else { best })
}

const SESSIONS: [f64; 3] = [1e4, 1e6, 1e8];
const RATES: [f64; 3] = [1e3, 1e5, 1e6];

/// `1.2k`, `3.4M`, ... for counts.
fn si(v: f64) -> String {
    let (div, suffix) = match v.abs() {
        x if x >= 1e12 => (1e12, "T"),
        x if x >= 1e9 => (1e9, "G"),
        x if x >= 1e6 => (1e6, "M"),
        x if x >= 1e3 => (1e3, "k"),
        _ => (1.0, ""),
    };
    let x = v / div;
    if x >= 100.0 || (suffix.is_empty() && x == x.round()) {
        format!("{x:.0}{suffix}")
    } else if x >= 10.0 {
        format!("{x:.1}{suffix}")
    } else {
        format!("{x:.2}{suffix}")
    }
}

fn bytes(v: f64) -> String {
    format!("{}B", si(v))
}

fn duration(s: f64) -> String {
    match s {
        s if s >= DAY => format!("{:.1} d", s / DAY),
        s if s >= 3600.0 => format!("{:.1} h", s / 3600.0),
        s if s >= 60.0 => format!("{:.0} min", s / 60.0),
        s => format!("{s:.1} s"),
    }
}

/// The generated markdown: assumptions, inputs, the grid, the formulas.
fn render(report: &Value, inputs: &Inputs, source: &str) -> String {
    let mut out = String::new();
    let plan = &report["plan"];
    let _ = writeln!(
        out,
        "Generated by `cargo xtask capacity` from `{source}` (a `cargo xtask bench` run: {} \
         round(s) of {} s a point, {} sessions, on {} CPU(s) `{}`).\n",
        plan["rounds"],
        plan["duration_s"],
        plan["sessions"],
        report["machine"]["nproc"].as_str().unwrap_or("?"),
        report["machine"]["cpu"].as_str().unwrap_or("?"),
    );
    out.push_str("### Assumptions\n\n| id | assumption | value | why |\n|---|---|---|---|\n");
    for (id, what, value, unit, why) in ASSUMPTIONS {
        let v = match unit {
            "s" => duration(value),
            "B" => bytes(value),
            "x" => format!("{value}×"),
            _ => si(value),
        };
        let _ = writeln!(out, "| {id} | {what} | {v} | {why} |");
    }
    out.push_str("\n### Measured inputs\n\n| id | figure | value | source (bench report) |\n|---|---|---|---|\n");
    for i in &inputs.0 {
        let _ = writeln!(out, "| {} | {} | {} | {} |", i.id, i.what, num(i.value), i.source);
    }
    out.push_str(
        "\n### Load and CPU\n\n| live sessions S | requests/s R | logins/s | revocations/s | \
         implied session life | authd cores | authd memory tier | Redis commands/s | Redis µs/command | \
         PostgreSQL cores |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let cells: Vec<Cell> = SESSIONS
        .iter()
        .flat_map(|&s| RATES.iter().map(move |&r| (s, r)))
        .map(|(s, r)| model(inputs, s, r))
        .collect();
    for c in &cells {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {:.2} | {} |",
            si(c.sessions),
            si(c.rps),
            si(c.logins),
            si(c.revocations),
            duration(c.sessions / c.logins),
            num(c.authd_cores),
            bytes(c.memory_tier_bytes),
            si(c.redis_cmds),
            c.redis_us_per_cmd,
            num(c.pg_cores),
        );
    }
    out.push_str(
        "\n### Memory, storage, shards and the first wall\n\n| live sessions S | requests/s R | \
         Redis memory | shards (memory) | shards (commands) | Redis shards | PostgreSQL IOPS | \
         PostgreSQL storage | share of the limits: PG cores, IOPS, storage, Redis shards | \
         first wall |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for c in &cells {
        let (wall, share) = first_wall(c);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {wall}{} |",
            si(c.sessions),
            si(c.rps),
            bytes(c.redis_bytes),
            si(c.shards_memory),
            si(c.shards_ops),
            si(c.shards),
            si(c.pg_iops),
            bytes(c.pg_bytes),
            shares(c).map(|(_, x)| format!("{:.0} %", x * 100.0)).join(", "),
            match share {
                s if s > 1.0 => " (past its limit)",
                s if s < 0.5 => " (none near: the largest share)",
                _ => "",
            },
        );
    }
    let mut formulas = FORMULAS.to_owned();
    for i in &inputs.0 {
        formulas = formulas.replace(&format!("[{}]", i.key), &i.id);
    }
    let _ = writeln!(out, "\nFormulas (S, R of the row; M.. measured, A.. assumed):\n\n{formulas}");
    out
}

/// A figure with three significant digits or so.
fn num(v: f64) -> String {
    match v.abs() {
        x if x >= 1000.0 => si(v),
        x if x >= 10.0 => format!("{v:.1}"),
        x if x >= 0.01 || x == 0.0 => format!("{v:.2}"),
        _ => format!("{v:.1e}"),
    }
}

/// Replaces the text between the markers of `doc` with `generated`.
fn splice(doc: &str, generated: &str) -> anyhow::Result<String> {
    let start = doc.find(BEGIN).with_context(|| format!("no {BEGIN} marker"))? + BEGIN.len();
    let end = doc[start..].find(END).with_context(|| format!("no {END} marker"))? + start;
    Ok(format!("{}\n{}\n{}", &doc[..start], generated.trim_end(), &doc[end..]))
}

fn from_root(path: &Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_owned();
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map_or_else(|| path.to_owned(), |r| r.join(path))
}

/// Runs the task.
pub fn run(args: CapacityArgs) -> anyhow::Result<()> {
    let input = from_root(&args.input);
    let text = std::fs::read_to_string(&input).with_context(|| {
        format!("cannot read {} (run cargo xtask bench first)", input.display())
    })?;
    let report: Value = serde_json::from_str(&text).context("the bench report is not JSON")?;
    let inputs = Inputs::from_report(&report)?;
    let generated = render(&report, &inputs, &args.input.display().to_string());
    match args.write {
        None => std::io::stdout().lock().write_all(generated.as_bytes())?,
        Some(path) => {
            let path = from_root(&path);
            let doc = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            std::fs::write(&path, splice(&doc, &generated)?)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small report: the numbers the assertions below add up by hand.
    fn fixture() -> Value {
        serde_json::from_str(include_str!("../tests/fixtures/capacity-report.json")).unwrap()
    }

    #[test]
    fn the_model_adds_up_the_costs_of_each_cell() {
        let inputs = Inputs::from_report(&fixture()).unwrap();
        assert_eq!(inputs.get("sessions_per_user"), 10.0);
        assert_eq!(inputs.get("login.journal"), 0.0);
        let c = model(&inputs, 1e6, 1e5);
        // 95k checks, 5k logins, 5k revocations a second.
        assert_eq!((c.logins, c.revocations), (5_000.0, 5_000.0));
        // (95k × 30 + 5k × 25,000 + 5k × 100) µs = 128.35 core-seconds, at 50 %.
        assert!((c.authd_cores - 256.7).abs() < 1e-9, "{}", c.authd_cores);
        // Redis CPU (95k × 4 + 10k × 100) µs = 1.38 s/s: 3 shards at 50 %.
        assert_eq!(c.shards_ops, 3.0);
        assert!((c.redis_cmds - (95_000.0 * 0.5 + 10_000.0 * 10.0)).abs() < 1e-6);
        // (1M × 200 + 100k × 100 + 5k × 30 d × 80) × 1.25 bytes.
        let redis = (2e8 + 1e7 + 5_000.0 * 30.0 * DAY * 80.0) * 1.25;
        assert!((c.redis_bytes - redis).abs() < 1.0);
        assert_eq!(c.shards_memory, (redis / 25e9).ceil());
        assert_eq!(c.shards, c.shards_memory.max(c.shards_ops));
        // (95k × 0.001 × 35 + 5k × 1,000 + 5k × 200) µs, at 50 %.
        assert!((c.pg_cores - (3_325.0 + 5e6 + 1e6) / 1e6 / 0.5).abs() < 1e-9);
        assert_eq!(c.pg_iops, 5_000.0 * (2.0 + 3.0) + 5_000.0 * (1.0 + 2.0));
        let storage = 1e6 * 300.0
            + 1e5 * 400.0
            + 5_000.0 * 30.0 * DAY * 100.0
            + 10_000.0 * 90.0 * DAY * 250.0;
        assert!((c.pg_bytes - storage).abs() < 1.0);
        assert_eq!(c.memory_tier_bytes, 1.1e6 * 0.1 * 500.0);
        let (wall, share) = first_wall(&c);
        assert_eq!(wall, "PostgreSQL storage");
        assert!(share > 1.0);
    }

    #[test]
    fn a_missing_input_is_named() {
        let mut report = fixture();
        report["costs"]["redis"]["bytes_per_user"] = Value::Null;
        let err = Inputs::from_report(&report).unwrap_err().to_string();
        assert!(err.contains("Redis bytes per user"), "{err}");
    }

    #[test]
    fn the_document_is_spliced_between_the_markers() {
        let doc = format!("intro\n{BEGIN}\nold\n{END}\noutro\n");
        let new = splice(&doc, "new table\n").unwrap();
        assert_eq!(new, format!("intro\n{BEGIN}\nnew table\n{END}\noutro\n"));
        assert!(splice("no markers", "x").is_err());
        let inputs = Inputs::from_report(&fixture()).unwrap();
        let text = render(&fixture(), &inputs, "fixture.json");
        assert!(
            text.contains("| A15 |") && text.contains("| M30 |") && !text.contains("["),
            "{text}"
        );
        assert_eq!(text.matches("\n| 100M |").count(), 6);
    }

    #[test]
    fn figures_are_short() {
        assert_eq!(si(1_000.0), "1.00k");
        assert_eq!(si(100_000_000.0), "100M");
        assert_eq!(si(12.0), "12");
        assert_eq!(bytes(25e9), "25.0GB");
        assert_eq!(duration(30.0 * DAY), "30.0 d");
        assert_eq!(num(0.000_013), "1.3e-5");
        assert_eq!(num(0.0), "0.00");
    }
}
