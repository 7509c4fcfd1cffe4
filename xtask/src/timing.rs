//! `cargo xtask timing`: do known and unknown addresses cost the same (issue 11, item 7)?
//!
//! Starts the real `authd` application in this process (embedded SQLite in a temporary
//! folder, memory tier, mail written to that folder, the production argon2 parameters,
//! abuse limits off so that they do not answer for the flows) on a loopback port, then
//! for each of register, resend-verification and forgot-password sends `--requests`
//! requests (default 200) alternating a known address with an unknown one, and prints
//! per endpoint the median latency of each, the median of the paired differences
//! (known minus unknown) and the ratio of the medians. The figures go into
//! `docs/security.md`.
//!
//! Which address is "known" is what an attacker would probe for: register with the
//! address of an existing account, resend with the address of an unverified account,
//! forgot with the address of a verified account. Unknown addresses are fresh each time
//! (a registered one would become known). Each pair is sent in alternating order (known
//! first, then unknown first) so that drift and the background work one request leaves
//! behind fall on both sides alike.
//!
//! Timings from a debug build say little about production, so an unoptimized `xtask`
//! re-runs itself with `cargo run --release` unless `--debug` is given.

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use cache_core::token::fill_random;
use serde::Serialize;
use serde_json::json;

/// Arguments of `cargo xtask timing`.
#[derive(clap::Args, Clone)]
pub struct TimingArgs {
    /// Requests per endpoint, alternating known and unknown addresses (half each).
    #[arg(long, default_value_t = 200)]
    pub requests: usize,
    /// Unmeasured requests per endpoint first (warm-up), alternating likewise.
    #[arg(long, default_value_t = 20)]
    pub warmup: usize,
    /// Measure this build even when it is unoptimized (by default a debug build re-runs
    /// itself in release).
    #[arg(long)]
    pub debug: bool,
    /// Print the figures as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// The figures of one endpoint, in milliseconds.
#[derive(Debug, Clone, Serialize)]
struct Figures {
    endpoint: &'static str,
    pairs: usize,
    known_median_ms: f64,
    unknown_median_ms: f64,
    /// Median of (known - unknown) over the pairs.
    median_difference_ms: f64,
    /// known median / unknown median.
    ratio: f64,
}

/// Runs the task.
pub fn run(args: TimingArgs) -> anyhow::Result<()> {
    if cfg!(debug_assertions) && !args.debug {
        return rerun_in_release(&args);
    }
    ensure!(args.requests >= 2, "--requests must be at least 2");
    crate::runtime()?.block_on(measure(args))
}

/// Builds and runs this task in release (`cargo run --release -p xtask -- timing ...`).
fn rerun_in_release(args: &TimingArgs) -> anyhow::Result<()> {
    eprintln!("building xtask in release for the timing run (pass --debug to skip)");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut command = std::process::Command::new(cargo);
    command.current_dir(root).args(["run", "--release", "-q", "-p", "xtask", "--", "timing"]);
    command.args(["--requests", &args.requests.to_string()]);
    command.args(["--warmup", &args.warmup.to_string()]);
    if args.json {
        command.arg("--json");
    }
    let status = command.status().context("cannot run cargo")?;
    if !status.success() {
        bail!("the release timing run failed ({status})");
    }
    Ok(())
}

fn random_hex(bytes: usize) -> anyhow::Result<String> {
    let mut buf = vec![0u8; bytes];
    fill_random(&mut buf).context("the OS random source failed")?;
    Ok(hex::encode(buf))
}

fn fresh_email() -> anyhow::Result<String> {
    Ok(format!("unknown-{}@timing.example", random_hex(8)?))
}

const PASSWORD: &str = "timing run password 1234";

async fn measure(args: TimingArgs) -> anyhow::Result<()> {
    let dir = tempfile::TempDir::with_prefix("xtask-timing-")?;
    let mail_dir = dir.path().join("mail");

    let mut settings = authd::Settings::default();
    settings.server.listen = "127.0.0.1:0".parse()?;
    settings.server.workers = 2;
    settings.server.shutdown_timeout_secs = 1;
    settings.database.url = format!("sqlite://{}", dir.path().join("timing.db").display()).into();
    settings.mail.dir = mail_dir.clone();
    // Limits would answer 429 long before 200 requests; they are not what is measured.
    settings.abuse.enabled = false;
    settings.janitor.enabled = false;
    settings.validate()?;
    let app = authd::Application::build(settings).await.context("authd does not start")?;
    let base = format!("http://127.0.0.1:{}", app.port());
    let handle = app.handle();
    let server = tokio::spawn(app.run_until_stopped());

    let result = run_endpoints(&args, &base, &mail_dir).await;
    handle.stop(true).await;
    let _ = server.await;
    let figures = result?;

    eprintln!(
        "{} requests per endpoint (known/unknown alternating), in-process authd, SQLite, \
         argon2id at the production minimum:",
        args.requests
    );
    eprintln!(
        "{:<30} {:>12} {:>12} {:>14} {:>8}",
        "endpoint", "known ms", "unknown ms", "median diff", "ratio"
    );
    for f in &figures {
        eprintln!(
            "{:<30} {:>12.3} {:>12.3} {:>11.3} ms {:>8.3}",
            f.endpoint, f.known_median_ms, f.unknown_median_ms, f.median_difference_ms, f.ratio
        );
    }
    if args.json {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", serde_json::to_string_pretty(&figures)?)?;
    }
    Ok(())
}

async fn run_endpoints(
    args: &TimingArgs,
    base: &str,
    mail_dir: &Path,
) -> anyhow::Result<Vec<Figures>> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?;
    let post = |path: &str, body: serde_json::Value| {
        let request = http.post(format!("{base}{path}")).json(&body);
        async move {
            let start = Instant::now();
            let response = request.send().await?;
            let status = response.status();
            response.bytes().await?;
            let elapsed = start.elapsed();
            ensure!(status.as_u16() == 202, "{status} from {}", body["email"]);
            Ok::<_, anyhow::Error>(elapsed)
        }
    };
    let register = |email: &str| json!({"name": "Timing", "email": email, "password": PASSWORD});
    let email_only = |email: &str| json!({"email": email});

    // The known addresses: one verified account, one left unverified.
    let verified = format!("verified-{}@timing.example", random_hex(6)?);
    let unverified = format!("unverified-{}@timing.example", random_hex(6)?);
    post("/v1/auth/register", register(&verified)).await?;
    post("/v1/auth/register", register(&unverified)).await?;
    let token = wait_for_token(mail_dir, &verified).await?;
    let verify = http.post(format!("{base}/v1/auth/verify-email")).json(&json!({"token": token}));
    let status = verify.send().await?.status();
    ensure!(status.is_success(), "verifying the known account answered {status}");

    let mut figures = Vec::new();
    for (endpoint, known) in [
        ("/v1/auth/register", verified.as_str()),
        ("/v1/auth/resend-verification", unverified.as_str()),
        ("/v1/auth/forgot-password", verified.as_str()),
    ] {
        let body = |email: &str| {
            if endpoint == "/v1/auth/register" { register(email) } else { email_only(email) }
        };
        let mut pairs = Vec::new();
        for i in 0..(args.warmup + args.requests) / 2 {
            let unknown = fresh_email()?;
            let (k, u) = if i % 2 == 0 {
                let k = post(endpoint, body(known)).await?;
                (k, post(endpoint, body(&unknown)).await?)
            } else {
                let u = post(endpoint, body(&unknown)).await?;
                (post(endpoint, body(known)).await?, u)
            };
            if i >= args.warmup / 2 {
                pairs.push((ms(k), ms(u)));
            }
        }
        figures.push(summarize(endpoint, &pairs));
    }
    Ok(figures)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn summarize(endpoint: &'static str, pairs: &[(f64, f64)]) -> Figures {
    let known = median(pairs.iter().map(|p| p.0).collect());
    let unknown = median(pairs.iter().map(|p| p.1).collect());
    Figures {
        endpoint,
        pairs: pairs.len(),
        known_median_ms: known,
        unknown_median_ms: unknown,
        median_difference_ms: median(pairs.iter().map(|p| p.0 - p.1).collect()),
        ratio: known / unknown,
    }
}

/// The verification token mailed to `to` (the mail is written by a background task).
async fn wait_for_token(dir: &Path, to: &str) -> anyhow::Result<String> {
    let marker = "/verify-email#token=";
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for entry in std::fs::read_dir(dir).into_iter().flatten().filter_map(Result::ok) {
            let Ok(text) = std::fs::read_to_string(entry.path()) else { continue };
            if !text.lines().any(|l| l.trim().eq_ignore_ascii_case(&format!("to: {to}"))) {
                continue;
            }
            if let Some(i) = text.find(marker) {
                let token: String = text[i + marker.len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                    .collect();
                return Ok(token);
            }
        }
        ensure!(Instant::now() < deadline, "no verification mail to {to} in {}", dir.display());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_pairs() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        let f = summarize("x", &[(2.0, 1.0), (4.0, 2.0), (3.0, 3.0)]);
        assert_eq!((f.known_median_ms, f.unknown_median_ms), (3.0, 2.0));
        assert_eq!(f.median_difference_ms, 1.0);
        assert_eq!(f.ratio, 1.5);
    }
}
