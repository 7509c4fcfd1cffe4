//! [`RedisStore`]: the connection pool, the trust state and the journal replay.
//!
//! Trust: after every (re)connect, and after any connection error, the store distrusts
//! Redis (it may have restarted from an old snapshot, or failed over to a replica that
//! missed a `DEL`). Reads answer `Unavailable` (so a tiered store asks SQL) until a
//! background task has reloaded the scripts and replayed the recent revocations from the
//! journal into Redis. Writes are always allowed: they only add or remove cache entries,
//! and every revocation they could race with is checked inside the scripts.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cache_core::{Revocation, RevocationJournal, SharedClock, StoreError};
use fred::clients::{Client, Pool};
use fred::interfaces::{ClientLike, EventInterface};
use fred::prelude::{ClientState, Value};
use parking_lot::{Mutex, RwLock};
use tokio::sync::Notify;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;

use crate::codec::{micros, millis};
use crate::config::RedisConfig;
use crate::error::RedisError;
use crate::keys::Keys;
use crate::scripts::{Lua, Scripts, is_noscript, queue_evalsha};

/// Server figures for health output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedisInfo {
    /// `used_memory` in bytes.
    pub used_memory: u64,
    /// `connected_clients`.
    pub connected_clients: u64,
}

/// Revocations per pipeline during a replay.
const REPLAY_BATCH: usize = 500;

/// Connection health as last logged, so each transition is logged once.
const NEVER_CONNECTED: u8 = 0;
const HEALTHY: u8 = 1;
const DOWN: u8 = 2;

/// Whether Redis answers may be believed, and what is needed to believe them again.
struct Trust {
    /// Read on every call; written only under `state`.
    trusted: AtomicBool,
    /// (replays requested so far, trusted), changed together.
    state: Mutex<(u64, bool)>,
    wake: Notify,
    journal: RwLock<Option<Arc<dyn RevocationJournal>>>,
    logged: AtomicU8,
    completed: AtomicU64,
    trusted_gauge: metrics::Gauge,
    replays: metrics::Counter,
}

impl Trust {
    fn new() -> Self {
        Self {
            trusted: AtomicBool::new(false),
            state: Mutex::new((0, false)),
            wake: Notify::new(),
            journal: RwLock::new(None),
            logged: AtomicU8::new(NEVER_CONNECTED),
            completed: AtomicU64::new(0),
            trusted_gauge: metrics::gauge!("redis_trusted"),
            replays: metrics::counter!("redis_replays_total"),
        }
    }

    /// Stops trusting Redis and asks the replay task for a new replay.
    fn distrust(&self) {
        let mut state = self.state.lock();
        state.0 += 1;
        state.1 = false;
        self.trusted.store(false, Ordering::SeqCst);
        self.trusted_gauge.set(0.0);
        drop(state);
        self.wake.notify_one();
    }

    /// The generation a replay starting now answers.
    fn requested(&self) -> u64 {
        self.state.lock().0
    }

    /// Trusts Redis again, unless something happened since the replay started.
    fn trust_if_current(&self, generation: u64) -> bool {
        let mut state = self.state.lock();
        if state.0 != generation {
            return false;
        }
        state.1 = true;
        self.trusted.store(true, Ordering::SeqCst);
        self.trusted_gauge.set(1.0);
        true
    }
}

/// Everything the store and its background tasks share.
pub(crate) struct Shared {
    pub(crate) pool: Pool,
    pub(crate) keys: Keys,
    pub(crate) clock: SharedClock,
    pub(crate) config: RedisConfig,
    pub(crate) scripts: Scripts,
    trust: Trust,
}

impl Shared {
    /// A revocation may not have reached Redis: replay the journal (which has it) before
    /// trusting reads again.
    pub(crate) fn revocation_unconfirmed(&self) {
        tracing::debug!("a revocation was not confirmed by redis; replaying the journal");
        self.trust.distrust();
    }
}

/// Stops the background tasks and closes the connections when the last clone of a
/// store is dropped.
struct Tasks {
    handles: Vec<JoinHandle<()>>,
    pool: Pool,
}

impl Drop for Tasks {
    fn drop(&mut self) {
        for handle in &self.handles {
            handle.abort();
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let pool = self.pool.clone();
            runtime.spawn(async move {
                let _ = pool.quit().await;
            });
        }
    }
}

/// The Redis tier: sessions, user profiles and verifications in Redis through a fred
/// pool, with one Lua script per session write and one pipeline per session read. Cheap to clone (clones share the
/// pool and the background tasks).
#[derive(Clone)]
pub struct RedisStore {
    pub(crate) shared: Arc<Shared>,
    _tasks: Arc<Tasks>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.shared.keys.prefix())
            .field("trusted", &self.is_trusted())
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Builds a pool from `config` and connects it in the background. Does not fail when
    /// Redis is down (only on an invalid configuration): calls answer `Unavailable` until
    /// Redis is reachable and the journal (if any) has been replayed. Waits at most
    /// `connect_timeout` for that to happen, so a store built against a running Redis
    /// is usable at once.
    pub async fn connect(config: RedisConfig, clock: SharedClock) -> Result<Self, StoreError> {
        let pool = config.builder()?.build_pool(config.pool_size).map_err(RedisError::from)?;
        Self::from_pool(pool, config, clock).await
    }

    /// Uses a pool built by the caller (its own fred settings; `config` still supplies
    /// the prefix, TTLs and replay window). Clients not yet connected are connected here.
    pub async fn from_pool(
        pool: Pool,
        config: RedisConfig,
        clock: SharedClock,
    ) -> Result<Self, StoreError> {
        config.validate()?;
        let shared = Arc::new(Shared {
            keys: Keys::new(&config.key_prefix),
            pool: pool.clone(),
            clock,
            scripts: Scripts::new(),
            trust: Trust::new(),
            config,
        });
        let mut handles = Vec::new();
        // Subscribe to events before connecting, so the first connection is seen too.
        for client in pool.clients() {
            handles.push(tokio::spawn(watch_events(shared.clone(), client.clone())));
        }
        for client in pool.clients() {
            if client.state() == ClientState::Disconnected {
                // The connection task lives until `quit`; its handle is not needed.
                drop(client.connect());
            }
        }
        shared.trust.distrust();
        handles.push(tokio::spawn(replay_loop(shared.clone())));
        let store = Self { shared, _tasks: Arc::new(Tasks { handles, pool }) };
        let deadline = store.shared.config.connect_timeout;
        let _ = tokio::time::timeout(deadline, async {
            while !store.is_trusted() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        Ok(store)
    }

    /// Uses one fred client (see [`RedisStore::from_pool`]).
    pub async fn from_client(
        client: Client,
        config: RedisConfig,
        clock: SharedClock,
    ) -> Result<Self, StoreError> {
        let pool = Pool::from_clients(vec![client]).map_err(RedisError::from)?;
        Self::from_pool(pool, config, clock).await
    }

    /// Sets the revocation journal replayed into Redis after every (re)connect, and
    /// replays it now: reads answer `Unavailable` until that replay is done, so a tiered
    /// store uses SQL meanwhile.
    pub fn set_journal(&self, journal: Arc<dyn RevocationJournal>) {
        *self.shared.trust.journal.write() = Some(journal);
        self.shared.trust.distrust();
    }

    /// Round-trip time of a `PING`.
    pub async fn ping(&self) -> Result<Duration, StoreError> {
        let start = Instant::now();
        let _: Value = self.shared.pool.ping(None).await.map_err(RedisError::from)?;
        Ok(start.elapsed())
    }

    /// Memory use and client count from `INFO` (of one node in a Cluster).
    pub async fn info(&self) -> Result<RedisInfo, StoreError> {
        let text: String = self.shared.pool.info(None).await.map_err(RedisError::from)?;
        let field = |name: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| StoreError::from(RedisError::reply(format!("INFO lacks {name}"))))
        };
        Ok(RedisInfo {
            used_memory: field("used_memory")?,
            connected_clients: field("connected_clients")?,
        })
    }

    /// Whether Redis answers are believed (connected and journal replayed). While not,
    /// reads answer `Unavailable`.
    pub fn is_trusted(&self) -> bool {
        self.shared.trust.trusted.load(Ordering::SeqCst)
    }

    /// How many times the store has (re)gained trust in Redis: once per connection
    /// (re)established and journal replayed. For health and metrics
    /// (`redis_replays_total`).
    pub fn replays(&self) -> u64 {
        self.shared.trust.completed.load(Ordering::SeqCst)
    }

    /// The underlying pool (for commands this crate does not wrap).
    pub fn pool(&self) -> &Pool {
        &self.shared.pool
    }

    /// The configuration in use.
    pub fn config(&self) -> &RedisConfig {
        &self.shared.config
    }

    /// Fails fast while a replay is pending.
    pub(crate) fn ensure_trusted(&self) -> Result<(), RedisError> {
        if self.is_trusted() { Ok(()) } else { Err(RedisError::ReplayPending) }
    }
}

/// Distrusts Redis on every connection error and every (re)connect of one client.
async fn watch_events(shared: Arc<Shared>, client: Client) {
    let mut errors = client.error_rx();
    let mut reconnects = client.reconnect_rx();
    loop {
        tokio::select! {
            event = errors.recv() => match event {
                Ok((error, server)) => {
                    let server = server.map(|s| s.to_string()).unwrap_or_default();
                    match shared.trust.logged.swap(DOWN, Ordering::SeqCst) {
                        HEALTHY => tracing::warn!(
                            %error, %server,
                            "redis connection lost; reads go to the other tiers until it is back and replayed"
                        ),
                        NEVER_CONNECTED => tracing::warn!(
                            %error, %server,
                            "cannot reach redis yet; reads go to the other tiers meanwhile"
                        ),
                        _ => tracing::debug!(%error, %server, "redis connection error"),
                    }
                    shared.trust.distrust();
                }
                Err(RecvError::Lagged(_)) => shared.trust.distrust(),
                Err(RecvError::Closed) => return,
            },
            event = reconnects.recv() => match event {
                Ok(server) => {
                    tracing::debug!(%server, "redis connection (re)established; replay pending");
                    shared.trust.distrust();
                }
                Err(RecvError::Lagged(_)) => shared.trust.distrust(),
                Err(RecvError::Closed) => return,
            },
        }
    }
}

/// Replays the journal whenever trust was lost, then trusts Redis again.
async fn replay_loop(shared: Arc<Shared>) {
    let mut completed = 0u64;
    let mut backoff = Duration::from_millis(20);
    loop {
        let generation = shared.trust.requested();
        if generation == completed {
            shared.trust.wake.notified().await;
            continue;
        }
        if !shared.pool.clients().iter().all(ClientLike::is_connected) {
            let connect_timeout = shared.config.connect_timeout;
            let _ = tokio::time::timeout(connect_timeout, shared.pool.wait_for_connect()).await;
            // The connect notification may precede the state change; look again shortly.
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        match replay_once(&shared).await {
            Ok(replayed) => {
                backoff = Duration::from_millis(20);
                if shared.trust.trust_if_current(generation) {
                    completed = generation;
                    shared.trust.completed.fetch_add(1, Ordering::SeqCst);
                    shared.trust.replays.increment(1);
                    match shared.trust.logged.swap(HEALTHY, Ordering::SeqCst) {
                        NEVER_CONNECTED => {
                            tracing::info!(replayed, "connected to redis; revocations replayed")
                        }
                        DOWN => tracing::info!(
                            replayed,
                            "redis is back; revocations replayed, redis trusted again"
                        ),
                        _ => tracing::debug!(replayed, "revocations replayed into redis"),
                    }
                }
            }
            Err(error) => {
                tracing::debug!(%error, "revocation replay failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// Loads the scripts (a restarted Redis lost them) and applies the journal's
/// revocations of the replay window. Returns how many were applied. A row whose
/// transaction commits while the replay pages past its id is not seen here; every
/// instance's SQL journal follower applies it to Redis when it becomes visible.
async fn replay_once(shared: &Shared) -> Result<usize, StoreError> {
    shared.scripts.load_all(&shared.pool).await?;
    let journal = shared.trust.journal.read().clone();
    let Some(journal) = journal else { return Ok(0) };
    let window = chrono::Duration::from_std(shared.config.replay_window)
        .unwrap_or(chrono::Duration::days(30));
    let since = shared.clock.now() - window;
    // By id, in bounded pages: the window is the absolute session lifetime, which can
    // hold far more rows than one reply or one pipeline should.
    let (mut after, mut replayed) = (0, 0);
    loop {
        let page = journal.revocations_page(since, after, REPLAY_BATCH).await?;
        let full = page.len() >= REPLAY_BATCH;
        let Some(last) = page.last() else { break };
        after = last.id;
        let revocations: Vec<Revocation> = page.into_iter().map(|e| e.revocation).collect();
        apply_revocations(shared, &revocations).await?;
        replayed += revocations.len();
        if !full {
            break;
        }
    }
    Ok(replayed)
}

/// The key and argument lists of one revocation's script call (without publishing: the
/// instance that revoked already did).
fn revocation_call<'a>(
    shared: &'a Shared,
    revocation: &Revocation,
) -> (&'a Lua, Vec<String>, Vec<Value>) {
    let keys = &shared.keys;
    let now = micros(shared.clock.now());
    match revocation {
        Revocation::Session { key, .. } => (
            &shared.scripts.delete,
            vec![
                keys.session(key.user, &key.hash),
                keys.index(key.user),
                keys.fence(key.user),
                keys.tombstone(key.user, &key.hash),
            ],
            vec![
                key.hash.to_hex().into(),
                now.into(),
                millis(shared.config.fence_ttl).into(),
                "".into(),
                "".into(),
            ],
        ),
        Revocation::AllOfUser { user, keep, at } => (
            &shared.scripts.revoke_all,
            vec![keys.index(*user), keys.fence(*user)],
            vec![
                keys.user_base(*user).into(),
                keep.map(|k| k.to_hex()).unwrap_or_default().into(),
                micros(*at).into(),
                now.into(),
                millis(shared.config.fence_ttl).into(),
                "".into(),
                "".into(),
                "covered".into(),
            ],
        ),
    }
}

/// Applies revocations in pipelines of [`REPLAY_BATCH`] script calls. Idempotent, so a
/// batch that met a server without the scripts is simply sent again after loading them.
pub(crate) async fn apply_revocations(
    shared: &Shared,
    revocations: &[Revocation],
) -> Result<(), StoreError> {
    for batch in revocations.chunks(REPLAY_BATCH) {
        let mut reloaded = false;
        loop {
            let pipeline = shared.pool.next().pipeline();
            for revocation in batch {
                let (script, keys, args) = revocation_call(shared, revocation);
                queue_evalsha(&pipeline, script.sha(), &keys, &args)
                    .await
                    .map_err(RedisError::from)?;
            }
            let results = pipeline.try_all::<Value>().await;
            match results.into_iter().find_map(Result::err) {
                None => break,
                Some(e) if is_noscript(&e) && !reloaded => {
                    shared.scripts.load_all(&shared.pool).await?;
                    reloaded = true;
                }
                Some(e) => return Err(RedisError::from(e).into()),
            }
        }
    }
    Ok(())
}
