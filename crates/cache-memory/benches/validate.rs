//! The memory tier's hit path (docs/benchmarks.md, goal B5): `Tiered<memory, back>::get` of a cached
//! session next to a raw moka `get` of the same key with the same value type. A memory
//! hit never waits, so its future is polled once, in place, with a no-op waker: what is
//! measured is the call, not an executor.
//!
//! Besides criterion's estimates, the run writes the p50/p99 of single tiered hits to
//! `target/criterion/memory-tier-hit-latency.json` (criterion reports no percentiles).

use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_core::token::Secret;
use cache_core::{Session, SessionKey, SessionStore, SharedClock, SystemClock, Tiered, UserId};
use cache_memory::moka::sync::Cache;
use cache_memory::{MemoryConfig, MemoryStore};
use criterion::{Criterion, criterion_group, criterion_main};

fn session(clock: &SharedClock) -> Session {
    let now = clock.now();
    Session {
        key: SessionKey {
            user: UserId::new(42).unwrap(),
            hash: Secret::generate().unwrap().hash(),
        },
        created_at: now,
        renewed_at: now,
        expires_at: now + chrono::Duration::days(7),
        absolute_expires_at: now + chrono::Duration::days(30),
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) bench".to_owned()),
        ip: Some("127.0.0.1".parse().unwrap()),
        version: 0,
    }
}

fn memory_hit(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let clock = SystemClock::shared();
    let config =
        MemoryConfig { max_entries: 100_000, ttl: Duration::from_secs(3600), ..Default::default() };
    let tiered = Arc::new(Tiered::new(
        MemoryStore::new(config, clock.clone()),
        MemoryStore::new(config, clock.clone()),
    ));
    let s = session(&clock);
    rt.block_on(tiered.create(&s)).unwrap();
    let raw: Cache<SessionKey, Session> = Cache::new(100_000);
    raw.insert(s.key, s.clone());
    let key = s.key;

    let mut group = c.benchmark_group("memory");
    group.bench_function("tiered_get_hit", |b| {
        b.iter(|| poll_now(tiered.get(&key)).unwrap().unwrap())
    });
    group.bench_function("raw_moka_get", |b| b.iter(|| raw.get(&key).unwrap()));
    group.finish();

    // Single-call latency distribution of the tiered hit.
    let mut samples: Vec<u64> = (0..200_000)
        .map(|_| {
            let start = Instant::now();
            let found = poll_now(tiered.get(&key));
            let ns = start.elapsed().as_nanos();
            assert!(matches!(found, Ok(Some(_))));
            u64::try_from(ns).unwrap_or(u64::MAX)
        })
        .collect();
    samples.sort_unstable();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    let json = format!(
        "{{\"what\":\"Tiered<memory,memory>::get hit, one call\",\"samples\":{},\"p50_ns\":{},\"p99_ns\":{}}}\n",
        samples.len(),
        pct(0.50),
        pct(0.99)
    );
    let dir = criterion_dir();
    if std::fs::create_dir_all(&dir).is_ok() {
        let _ = std::fs::write(dir.join("memory-tier-hit-latency.json"), json);
    }
}

/// Polls `fut` once with a no-op waker; a memory hit is ready at once.
fn poll_now<F: Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    match fut.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
        std::task::Poll::Ready(out) => out,
        std::task::Poll::Pending => panic!("a memory hit waited"),
    }
}

/// `target/criterion` of this workspace (benches run with the package as cwd).
fn criterion_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"))
        .join("criterion")
}

criterion_group!(benches, memory_hit);
criterion_main!(benches);
