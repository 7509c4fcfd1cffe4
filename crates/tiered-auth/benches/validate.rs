//! `AuthService::validate` of a session cookie whose session and user are in the memory
//! tier (docs/benchmarks.md, goal B5): parse, SHA-256 of the secret, two memory hits, nothing renewed.
//! Such a validation never waits, so its future is polled once, in place, with a no-op
//! waker: what is measured is the call, not an executor.
//!
//! Besides criterion's estimates, the run writes the p50/p99 of single validations to
//! `target/criterion/validate-memory-hit-latency.json` (criterion reports no
//! percentiles).

use std::sync::Arc;
use std::time::{Duration, Instant};

use auth::{AuthConfig, AuthService, ClientInfo, FileMailer, Stores};
use cache_core::{
    MockAccountStore, Session, SessionStore as _, SessionToken, SharedClock, SystemClock, Tiered,
    User, UserCache as _, UserId,
};
use cache_memory::{MemoryConfig, MemoryStore};
use criterion::{Criterion, criterion_group, criterion_main};

fn validate_memory_hit(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let clock: SharedClock = SystemClock::shared();
    let config =
        MemoryConfig { max_entries: 100_000, ttl: Duration::from_secs(3600), ..Default::default() };
    // The back is a second memory store standing in for the authority: only hits are
    // measured, so it is never asked.
    let store = Arc::new(Tiered::new(
        MemoryStore::new(config, clock.clone()),
        MemoryStore::new(config, clock.clone()),
    ));
    let stores = Stores {
        sessions: store.clone(),
        users: store.clone(),
        verifications: store.clone(),
        accounts: Arc::new(MockAccountStore::new()),
    };
    let mailer = Arc::new(FileMailer::new(std::env::temp_dir().join("auth-bench-mail")));
    let service = AuthService::new(AuthConfig::default(), stores, mailer, clock.clone()).unwrap();

    let now = clock.now();
    let user = User {
        id: UserId::new(4242).unwrap(),
        name: "Bench User".to_owned(),
        email: "bench@example.com".to_owned(),
        email_verified: true,
        created_at: now,
    };
    let token = SessionToken::generate(user.id).unwrap();
    let session = Session {
        key: token.key(),
        created_at: now,
        renewed_at: now,
        expires_at: now + chrono::Duration::days(7),
        absolute_expires_at: now + chrono::Duration::days(30),
        user_agent: Some("bench".to_owned()),
        ip: None,
        version: 0,
    };
    rt.block_on(async {
        store.put_user(&user).await.unwrap();
        store.create(&session).await.unwrap();
    });
    let cookie = token.encode();
    let client = ClientInfo::default();

    let mut group = c.benchmark_group("validate");
    group.bench_function("memory_hit", |b| {
        b.iter(|| poll_now(service.validate(&cookie, &client)).unwrap())
    });
    group.finish();

    let mut samples: Vec<u64> = (0..200_000)
        .map(|_| {
            let start = Instant::now();
            let ok = poll_now(service.validate(&cookie, &client)).is_ok();
            let ns = start.elapsed().as_nanos();
            assert!(ok);
            u64::try_from(ns).unwrap_or(u64::MAX)
        })
        .collect();
    samples.sort_unstable();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    let json = format!(
        "{{\"what\":\"AuthService::validate, memory hit, one call\",\"samples\":{},\"p50_ns\":{},\"p99_ns\":{}}}\n",
        samples.len(),
        pct(0.50),
        pct(0.99)
    );
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"))
        .join("criterion");
    if std::fs::create_dir_all(&dir).is_ok() {
        let _ = std::fs::write(dir.join("validate-memory-hit-latency.json"), json);
    }
}

/// Polls `fut` once with a no-op waker; a validation served from memory is ready at once.
fn poll_now<F: Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    match fut.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
        std::task::Poll::Ready(out) => out,
        std::task::Poll::Pending => panic!("a memory-served validation waited"),
    }
}

criterion_group!(benches, validate_memory_hit);
criterion_main!(benches);
