//! `cargo xtask seed`: verified users and sessions for benchmarks, and the README's demo
//! login.
//!
//! Users are `user{i}@bench.example` (i from 0), all with one password whose argon2id
//! hash (at the production parameters) is computed once, so seeding costs no hashing
//! per user. Sessions are spread round-robin over the users. SQL gets multi-row INSERTs
//! ([`SqlStore::insert_accounts_bulk`]), Redis pipelined fills
//! ([`RedisStore::put_sessions_bulk`]), several batches in flight at once.
//!
//! The session tokens (the cookie values) go to `target/bench/sessions.txt` for the load
//! generator: that file holds live credentials of the seeded accounts, says so in its
//! first line, is readable by its owner only, and is never printed.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use argon2::password_hash::{PasswordHasher as _, SaltString};
use cache_core::token::fill_random;
use cache_core::{
    AccountStore as _, Clock as _, Conflict, NewUser, Session, SessionToken, StoreError,
    SystemClock, User, UserId,
};
use cache_redis::{RedisConfig, RedisStore};
use cache_sql::SqlStore;
use chrono::{DateTime, Utc};
use indicatif::{ProgressBar, ProgressStyle};

use crate::migrate::{DEFAULT_DATABASE_URL, connect_and_migrate};

/// Where the session tokens go by default.
pub const DEFAULT_TOKENS_FILE: &str = "target/bench/sessions.txt";
/// The password of every seeded account unless `--password` says otherwise.
pub const DEFAULT_PASSWORD: &str = "bench-password-1234";
/// The demo account of the README's quick start.
pub const DEMO_EMAIL: &str = "demo@example.com";
/// The demo account's password unless `--password` says otherwise.
pub const DEMO_PASSWORD: &str = "demo-password-1234";
/// First line of the tokens file.
const TOKENS_HEADER: &str = "# BENCH-ONLY SECRETS: live session tokens of the seeded accounts, \
                             written by `cargo xtask seed` for the load generator. Never share or log them.";

/// Accounts or sessions per bulk call (each call is one transaction / a few pipelines).
const SQL_CHUNK: usize = 30_000;
const REDIS_CHUNK: usize = 2_000;
/// Bulk calls in flight at once.
const IN_FLIGHT: usize = 4;

/// Arguments of `cargo xtask seed`.
#[derive(clap::Args, Clone)]
pub struct SeedArgs {
    /// Verified users to create (`user{i}@bench.example`).
    #[arg(long, default_value_t = 0)]
    pub users: usize,
    /// Sessions to create, spread over the users.
    #[arg(long, default_value_t = 0)]
    pub sessions: usize,
    /// The SQL database (`postgres://...` or `sqlite://path`), migrated first.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, hide_env_values = true)]
    pub database_url: String,
    /// Also fill this Redis (the Redis tier's cache) with the users and sessions.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Key prefix of the Redis tier (authd's `redis.key_prefix`).
    #[arg(long, default_value = "ta:")]
    pub key_prefix: String,
    /// Password of every seeded account (and of the demo account).
    #[arg(long)]
    pub password: Option<String>,
    /// Also create the verified demo account `demo@example.com` (README quick start).
    #[arg(long)]
    pub demo: bool,
    /// Where to write the session tokens.
    #[arg(long, default_value = DEFAULT_TOKENS_FILE)]
    pub tokens_file: PathBuf,
}

/// Generated users and sessions, kept in memory until written everywhere.
pub struct Dataset {
    /// The accounts (profile and shared password hash).
    pub accounts: Vec<NewUser>,
    /// The sessions.
    pub sessions: Vec<Session>,
    /// The token of each session, same order.
    pub tokens: Vec<SessionToken>,
}

impl Dataset {
    /// `users` verified accounts with `password_hash`, and `sessions` sessions spread
    /// round-robin over them, created at `now` with authd's default lifetimes (7 days
    /// idle, 30 days absolute) so that none is renewed during a benchmark.
    pub fn generate(
        users: usize,
        sessions: usize,
        password_hash: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(sessions == 0 || users > 0, "sessions need at least one user");
        let mut accounts = Vec::with_capacity(users);
        for i in 0..users {
            accounts.push(NewUser {
                user: User {
                    id: UserId::random()?,
                    name: format!("Bench User {i}"),
                    email: format!("user{i}@bench.example"),
                    email_verified: true,
                    created_at: now,
                },
                password_hash: password_hash.to_owned(),
            });
        }
        let config = auth::AuthConfig::default();
        let mut all = Vec::with_capacity(sessions);
        let mut tokens = Vec::with_capacity(sessions);
        for j in 0..sessions {
            let token = SessionToken::generate(accounts[j % users].user.id)?;
            all.push(Session {
                key: token.key(),
                created_at: now,
                renewed_at: now,
                expires_at: now + config.session_idle,
                absolute_expires_at: now + config.session_absolute,
                user_agent: Some("cargo-xtask-seed".to_owned()),
                ip: None,
                version: 0,
            });
            tokens.push(token);
        }
        Ok(Self { accounts, sessions: all, tokens })
    }

    fn users(&self) -> Vec<User> {
        self.accounts.iter().map(|a| a.user.clone()).collect()
    }
}

/// An argon2id PHC string of `password` at the production parameters (computed once).
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let p = auth::Argon2Params::default();
    let params = argon2::Params::new(p.memory_kib, p.iterations, p.parallelism, None)
        .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
    let argon2 = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut salt = [0u8; 16];
    fill_random(&mut salt)?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    let hash = argon2
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("argon2: {e}"))?;
    Ok(hash.to_string())
}

fn progress(total: usize, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(total as u64);
    let style =
        ProgressStyle::with_template("{msg:>24} [{bar:32}] {pos}/{len} ({per_sec}, {elapsed})")
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(what.to_owned());
    bar
}

/// Writes the accounts and sessions into SQL, `IN_FLIGHT` transactions at once.
pub async fn load_sql(store: &SqlStore, data: &Dataset) -> anyhow::Result<()> {
    let bar =
        progress(data.accounts.len() + data.sessions.len(), &format!("{} rows", store.backend()));
    // Accounts first, all of them: sessions of a user are inserted after the user.
    for chunks in data.accounts.chunks(SQL_CHUNK * IN_FLIGHT) {
        let jobs = chunks.chunks(SQL_CHUNK).map(|c| store.insert_accounts_bulk(c));
        for n in join_all(jobs).await {
            bar.inc(n.context("inserting accounts")?);
        }
    }
    for chunks in data.sessions.chunks(SQL_CHUNK * IN_FLIGHT) {
        let jobs = chunks.chunks(SQL_CHUNK).map(|c| store.insert_sessions_bulk(c));
        for n in join_all(jobs).await {
            bar.inc(n.context("inserting sessions")?);
        }
    }
    bar.finish();
    Ok(())
}

/// Fills Redis with the users and sessions, `IN_FLIGHT` pipelined calls at once (the
/// bench's Redis baseline reads the session keys written here).
pub async fn load_redis(store: &RedisStore, data: &Dataset) -> anyhow::Result<()> {
    let users = data.users();
    let bar = progress(users.len() + data.sessions.len(), "redis entries");
    for chunks in users.chunks(REDIS_CHUNK * IN_FLIGHT) {
        let jobs = chunks.chunks(REDIS_CHUNK).map(|c| store.put_users_bulk(c));
        for n in join_all(jobs).await {
            bar.inc(n.context("filling users")?);
        }
    }
    for chunks in data.sessions.chunks(REDIS_CHUNK * IN_FLIGHT) {
        let jobs = chunks.chunks(REDIS_CHUNK).map(|c| store.put_sessions_bulk(c));
        for n in join_all(jobs).await {
            bar.inc(n.context("filling sessions")?);
        }
    }
    bar.finish();
    Ok(())
}

/// Runs futures concurrently on the current task and collects their outputs in order.
async fn join_all<F: Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let handles: Vec<_> = futures.collect();
    let mut out = Vec::with_capacity(handles.len());
    // The stores are Send + Sync, but the futures borrow the data: poll them together
    // here rather than spawning.
    let mut pinned: Vec<_> = handles.into_iter().map(Box::pin).collect();
    let mut results: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (fut, slot) in pinned.iter_mut().zip(results.iter_mut()) {
            if slot.is_none() {
                match fut.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending { std::task::Poll::Pending } else { std::task::Poll::Ready(()) }
    })
    .await;
    out.extend(results.into_iter().flatten());
    out
}

/// Writes the tokens, one cookie value a line after the warning header, readable by the
/// owner only.
pub fn write_tokens(path: &Path, data: &Dataset) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(path).with_context(|| format!("cannot write {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    writeln!(out, "{TOKENS_HEADER}")?;
    for token in &data.tokens {
        writeln!(out, "{}", token.encode())?;
    }
    out.flush()?;
    Ok(())
}

/// A Redis tier client for bulk fills: the given prefix, and a command timeout long
/// enough for pipelines on a busy machine.
pub async fn connect_redis(url: &str, key_prefix: &str) -> anyhow::Result<RedisStore> {
    let config = RedisConfig {
        url: url.to_owned(),
        key_prefix: key_prefix.to_owned(),
        command_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(5),
        ..RedisConfig::default()
    };
    let store = RedisStore::connect(config, SystemClock::shared()).await?;
    anyhow::ensure!(store.is_trusted(), "Redis did not answer within 5 s");
    Ok(store)
}

/// Creates the verified demo account; `false` when it exists already.
async fn create_demo(store: &SqlStore, password: &str) -> anyhow::Result<bool> {
    let user = User {
        id: UserId::random()?,
        name: "Demo User".to_owned(),
        email: DEMO_EMAIL.to_owned(),
        email_verified: true,
        created_at: SystemClock.now(),
    };
    let hash = tokio::task::spawn_blocking({
        let password = password.to_owned();
        move || hash_password(&password)
    })
    .await??;
    match store.create_account(&NewUser { user, password_hash: hash }).await {
        Ok(()) => Ok(true),
        Err(StoreError::Conflict(Conflict::Exists)) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Runs the task.
pub async fn run(args: SeedArgs) -> anyhow::Result<()> {
    let sql = connect_and_migrate(&args.database_url).await?;
    if args.demo {
        let password = args.password.as_deref().unwrap_or(DEMO_PASSWORD);
        if create_demo(&sql, password).await? {
            eprintln!("demo account created: {DEMO_EMAIL} / {password} (email verified)");
        } else {
            eprintln!("demo account {DEMO_EMAIL} exists already (its password is unchanged)");
        }
    }
    if args.users == 0 && args.sessions == 0 {
        return Ok(());
    }
    let password = args.password.as_deref().unwrap_or(DEFAULT_PASSWORD);
    let redis = match &args.redis_url {
        Some(url) => Some(connect_redis(url, &args.key_prefix).await?),
        None => None,
    };
    let data = generate(args.users, args.sessions, password).await?;
    load_sql(&sql, &data).await?;
    if let Some(redis) = &redis {
        load_redis(redis, &data).await?;
    }
    write_tokens(&args.tokens_file, &data)?;
    eprintln!(
        "seeded {} users (password {password}) and {} sessions; tokens in {}",
        data.accounts.len(),
        data.sessions.len(),
        args.tokens_file.display()
    );
    Ok(())
}

/// Hashes the password once (on the blocking pool) and generates the dataset.
pub async fn generate(
    users: usize,
    sessions: usize,
    password: &str,
) -> anyhow::Result<Arc<Dataset>> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || {
        let hash = hash_password(&password)?;
        Dataset::generate(users, sessions, &hash, SystemClock.now()).map(Arc::new)
    })
    .await?
}
