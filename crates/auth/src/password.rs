//! Password hashing (argon2id, PHC strings) on the blocking pool with bounded
//! concurrency, and the password policy (length, and not on the breach list of
//! [`crate::passwords`]).

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

use crate::config::{Argon2Params, PasswordPolicy};
use crate::error::AuthError;

/// Salt length in bytes (the PHC recommendation is 16).
const SALT_LEN: usize = 16;

/// Hashes and verifies passwords. Each computation takes one permit of a semaphore, so at
/// most `concurrency` argon2 jobs (each `memory_kib` of RAM and one blocking thread) run
/// at once; the rest wait in line instead of exhausting memory.
#[derive(Clone)]
pub(crate) struct Hasher {
    argon2: Argon2<'static>,
    permits: Arc<Semaphore>,
}

impl Hasher {
    pub(crate) fn new(params: Argon2Params, concurrency: usize) -> Result<Self, AuthError> {
        let params = Params::new(params.memory_kib, params.iterations, params.parallelism, None)
            .map_err(|e| AuthError::Config(format!("argon2 parameters: {e}")))?;
        if concurrency == 0 {
            return Err(AuthError::Config("hash_concurrency must be at least 1".to_owned()));
        }
        Ok(Self {
            argon2: Argon2::new(Algorithm::Argon2id, Version::V0x13, params),
            permits: Arc::new(Semaphore::new(concurrency)),
        })
    }

    /// Hashes synchronously; only for the dummy hash computed once in `AuthService::new`.
    pub(crate) fn hash_blocking(&self, password: &str) -> Result<String, AuthError> {
        hash_with(&self.argon2, password)
    }

    /// A new PHC string for `password`, computed on the blocking pool.
    pub(crate) async fn hash(&self, password: String) -> Result<String, AuthError> {
        let argon2 = self.argon2.clone();
        self.run(move || hash_with(&argon2, &password)).await?
    }

    /// Whether `password` matches the PHC string `phc`, computed on the blocking pool with
    /// the parameters recorded in `phc`. A malformed `phc` is an internal error.
    pub(crate) async fn verify(&self, password: String, phc: String) -> Result<bool, AuthError> {
        metrics::counter!("auth_password_verifications_total").increment(1);
        let argon2 = self.argon2.clone();
        self.run(move || {
            let parsed = PasswordHash::new(&phc).map_err(AuthError::internal)?;
            match argon2.verify_password(password.as_bytes(), &parsed) {
                Ok(()) => Ok(true),
                Err(argon2::password_hash::Error::Password) => Ok(false),
                Err(e) => Err(AuthError::internal(e)),
            }
        })
        .await?
    }

    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, AuthError> {
        // The permit moves into the job, so it is held until the computation ends even if
        // the caller gives up waiting for it.
        let permit =
            Arc::clone(&self.permits).acquire_owned().await.map_err(AuthError::internal)?;
        tokio::task::spawn_blocking(move || {
            let out = job();
            drop(permit);
            out
        })
        .await
        .map_err(AuthError::internal)
    }
}

fn hash_with(argon2: &Argon2<'_>, password: &str) -> Result<String, AuthError> {
    let mut salt = [0u8; SALT_LEN];
    cache_core::token::fill_random(&mut salt).map_err(AuthError::internal)?;
    let salt = SaltString::encode_b64(&salt).map_err(AuthError::internal)?;
    let hash = argon2.hash_password(password.as_bytes(), &salt).map_err(AuthError::internal)?;
    Ok(hash.to_string())
}

/// Checks a new password against the policy. Length is counted in Unicode scalar values;
/// the password is never trimmed, normalized or truncated.
pub(crate) fn check_policy(
    policy: &PasswordPolicy,
    field: &'static str,
    password: &str,
) -> Result<(), AuthError> {
    let chars = password.chars().count();
    if chars < policy.min_chars {
        return Err(AuthError::WeakPassword(format!(
            "the password must be at least {} characters long",
            policy.min_chars
        )));
    }
    if chars > policy.max_chars {
        return Err(AuthError::invalid(
            field,
            format!("the password must be at most {} characters long", policy.max_chars),
        ));
    }
    if crate::passwords::is_common(password) {
        return Err(AuthError::WeakPassword(
            "this password is one of the most common passwords found in data breaches; \
             choose another"
                .to_owned(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn at_most_concurrency_jobs_run_at_once() {
        let hasher = Hasher::new(Argon2Params::INSECURE_FOR_TESTS, 2).unwrap();
        let active = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let jobs: Vec<_> = (0..8)
            .map(|_| {
                let (hasher, active, peak) = (hasher.clone(), active.clone(), peak.clone());
                tokio::spawn(async move {
                    hasher
                        .run(move || {
                            let now = active.fetch_add(1, Ordering::SeqCst) + 1;
                            peak.fetch_max(now, Ordering::SeqCst);
                            // Holds the permit long enough for the others to pile up.
                            #[allow(clippy::disallowed_methods)]
                            std::thread::sleep(std::time::Duration::from_millis(20));
                            active.fetch_sub(1, Ordering::SeqCst);
                        })
                        .await
                })
            })
            .collect();
        for job in jobs {
            job.await.unwrap().unwrap();
        }
        let peak = peak.load(Ordering::SeqCst);
        assert!((1..=2).contains(&peak), "{peak} jobs ran at once");
    }

    #[tokio::test]
    async fn hashes_are_salted_phc_strings_that_verify() {
        let hasher = Hasher::new(Argon2Params::INSECURE_FOR_TESTS, 1).unwrap();
        let a = hasher.hash("pässwörd 🔑".to_owned()).await.unwrap();
        let b = hasher.hash("pässwörd 🔑".to_owned()).await.unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{a}");
        assert_ne!(a, b);
        assert!(hasher.verify("pässwörd 🔑".to_owned(), a.clone()).await.unwrap());
        assert!(!hasher.verify("passwörd 🔑".to_owned(), a).await.unwrap());
        assert!(matches!(
            hasher.verify("x".to_owned(), "not a phc string".to_owned()).await,
            Err(AuthError::Internal(_))
        ));
    }

    #[test]
    fn policy_counts_scalar_values() {
        let policy = PasswordPolicy { min_chars: 8, max_chars: 128 };
        // Exactly the minimum length (and not a common password).
        assert!(check_policy(&policy, "password", "kq8#mz2p").is_ok());
        assert!(matches!(
            check_policy(&policy, "password", "1234567"),
            Err(AuthError::WeakPassword(_))
        ));
        assert!(check_policy(&policy, "password", &"ß".repeat(8)).is_ok());
        assert!(check_policy(&policy, "password", &"ß".repeat(128)).is_ok());
        assert!(matches!(
            check_policy(&policy, "password", &"ß".repeat(129)),
            Err(AuthError::InvalidInput { field: "password", .. })
        ));
        // Whitespace counts and is kept.
        assert!(check_policy(&policy, "password", "        ").is_ok());
        // Long enough, but on the breach list: refused with the reason.
        match check_policy(&policy, "password", "Baseball1") {
            Err(AuthError::WeakPassword(reason)) => assert!(reason.contains("common"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }
}
