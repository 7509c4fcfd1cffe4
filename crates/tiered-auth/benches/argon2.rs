//! argon2id hash and verify at the configured (default, production-minimum) parameters:
//! the floor of a login's latency (docs/benchmarks.md, goal B8), which `cargo xtask bench` reads from
//! `target/criterion/argon2/verify`.

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use auth::Argon2Params;
use criterion::{Criterion, criterion_group, criterion_main};

fn argon2_at_configured_parameters(c: &mut Criterion) {
    let p = Argon2Params::default();
    let params = Params::new(p.memory_kib, p.iterations, p.parallelism, None).unwrap();
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let salt = SaltString::encode_b64(&[7u8; 16]).unwrap();
    let password = "correct horse battery staple";
    let phc = argon2.hash_password(password.as_bytes(), &salt).unwrap().to_string();
    let parsed = PasswordHash::new(&phc).unwrap();

    let mut group = c.benchmark_group("argon2");
    // Tens of milliseconds an iteration: ten samples are plenty.
    group.sample_size(10);
    group.bench_function("hash", |b| {
        b.iter(|| argon2.hash_password(password.as_bytes(), &salt).unwrap())
    });
    group.bench_function("verify", |b| {
        b.iter(|| argon2.verify_password(password.as_bytes(), &parsed).unwrap())
    });
    group.finish();
}

criterion_group!(benches, argon2_at_configured_parameters);
criterion_main!(benches);
