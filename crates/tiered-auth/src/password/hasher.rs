//! Password hashing (argon2id, PHC strings) on a dedicated pool of low-priority threads.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, mpsc};

use argon2::password_hash::{Output, PasswordHash, PasswordHasher as _, Salt, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::oneshot;

use crate::config::Argon2Params;
use crate::error::AuthError;

/// Salt length in bytes (the PHC recommendation is 16).
const SALT_LEN: usize = 16;

/// The `nice` value of the pool's threads: a login storm then only takes the CPU time the
/// session checks (and Redis) leave over, instead of an equal share (docs/benchmarks.md, goal B9).
#[cfg(target_os = "linux")]
const HASH_THREAD_NICE: i32 = 10;

/// A computation sent to the pool; it runs with the thread's reusable argon2 memory.
type Job = Box<dyn FnOnce(&mut Vec<Block>) + Send + 'static>;

/// Hashes and verifies passwords on `concurrency` dedicated threads named `argon2-{i}`,
/// fed from one queue: at most `concurrency` argon2 jobs run at once, the rest wait in
/// line instead of exhausting memory.
///
/// On Linux the threads run at nice +10, so session checks keep priority over password
/// hashing. Each thread keeps its argon2 working memory (`memory_kib`, more if it met a
/// stored hash with a higher cost) for its whole life, so a verification does not fault
/// in fresh pages every time (docs/benchmarks.md, goal B8): the pool holds about
/// `concurrency x memory_kib` of RAM. The threads exit once every clone is dropped.
#[derive(Clone)]
pub(crate) struct Hasher {
    argon2: Argon2<'static>,
    jobs: mpsc::Sender<Job>,
}

impl Hasher {
    pub(crate) fn new(params: Argon2Params, concurrency: usize) -> Result<Self, AuthError> {
        let params = Params::new(params.memory_kib, params.iterations, params.parallelism, None)
            .map_err(|e| AuthError::Config(format!("argon2 parameters: {e}")))?;
        if concurrency == 0 {
            return Err(AuthError::Config("hash_concurrency must be at least 1".to_owned()));
        }
        let block_count = params.block_count();
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..concurrency {
            let queue = Arc::clone(&queue);
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || pool_thread(&queue, block_count))
                .map_err(|e| AuthError::Config(format!("starting argon2 thread {i}: {e}")))?;
        }
        Ok(Self { argon2: Argon2::new(Algorithm::Argon2id, Version::V0x13, params), jobs })
    }

    /// Hashes synchronously; only for the dummy hash computed once in `AuthService::new`.
    pub(crate) fn hash_blocking(&self, password: &str) -> Result<String, AuthError> {
        hash_with(&self.argon2, password)
    }

    /// A new PHC string for `password`, computed on the hash pool.
    pub(crate) async fn hash(&self, password: String) -> Result<String, AuthError> {
        let argon2 = self.argon2.clone();
        self.run(move |_| hash_with(&argon2, &password)).await?
    }

    /// Whether `password` matches the PHC string `phc`, computed on the hash pool with the
    /// algorithm, version and parameters recorded in `phc`. A malformed `phc` is an
    /// internal error.
    pub(crate) async fn verify(&self, password: String, phc: String) -> Result<bool, AuthError> {
        metrics::counter!("auth_password_verifications_total").increment(1);
        self.run(move |memory| verify_with(memory, &password, &phc)).await?
    }

    /// Runs `job` on a pool thread and waits for its result. A caller that gives up
    /// (drops this future) does not stop a job already running: the thread stays busy
    /// until it ends, so the bound on concurrent jobs holds. A job whose caller gave up
    /// before it started is skipped.
    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Vec<Block>) -> T + Send + 'static,
    ) -> Result<T, AuthError> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |memory| {
            if tx.is_closed() {
                return;
            }
            // The caller may have gone meanwhile; nobody is left to tell.
            let _ = tx.send(job(memory));
        });
        self.jobs.send(job).map_err(|_| AuthError::internal("the argon2 pool is closed"))?;
        rx.await.map_err(|_| AuthError::internal("an argon2 job ended without a result"))
    }
}

/// The loop of one pool thread: takes jobs from the shared queue until every sender is
/// gone, and keeps argon2's working memory between them.
fn pool_thread(queue: &Mutex<mpsc::Receiver<Job>>, block_count: usize) {
    lower_priority();
    let mut memory = vec![Block::default(); block_count];
    loop {
        // The lock is held only while waiting for a job, never while running one. A
        // poisoned lock still guards a valid receiver (`recv` does not panic halfway).
        let job = match queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner).recv() {
            Ok(job) => job,
            Err(mpsc::RecvError) => return,
        };
        // A panicking job loses its answer (its caller gets an internal error), not the
        // thread: the pool keeps its size.
        if std::panic::catch_unwind(AssertUnwindSafe(|| job(&mut memory))).is_err() {
            tracing::error!("an argon2 job panicked");
        }
    }
}

/// Lowers the calling thread's scheduling priority to [`HASH_THREAD_NICE`]; on failure
/// logs once and goes on at normal priority. On Linux `setpriority` with a thread id
/// applies to that thread only.
#[cfg(target_os = "linux")]
fn lower_priority() {
    let tid = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(tid), HASH_THREAD_NICE) {
        tracing::warn!(error = %e, "could not lower the priority of an argon2 thread");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

fn hash_with(argon2: &Argon2<'_>, password: &str) -> Result<String, AuthError> {
    let mut salt = [0u8; SALT_LEN];
    cache_core::token::fill_random(&mut salt).map_err(AuthError::internal)?;
    let salt = SaltString::encode_b64(&salt).map_err(AuthError::internal)?;
    let hash = argon2.hash_password(password.as_bytes(), &salt).map_err(AuthError::internal)?;
    Ok(hash.to_string())
}

/// What argon2's `verify_password` does, with `memory` as the working memory (grown if
/// `phc` asks for more): the algorithm, version and parameters come from `phc`, and the
/// outputs are compared in constant time. A PHC string without a salt or a hash matches
/// nothing, as there.
fn verify_with(memory: &mut Vec<Block>, password: &str, phc: &str) -> Result<bool, AuthError> {
    let parsed = PasswordHash::new(phc).map_err(AuthError::internal)?;
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return Ok(false);
    };
    let algorithm = Algorithm::try_from(parsed.algorithm).map_err(AuthError::internal)?;
    let version = parsed
        .version
        .map(Version::try_from)
        .transpose()
        .map_err(AuthError::internal)?
        .unwrap_or_default();
    let params = Params::try_from(&parsed).map_err(AuthError::internal)?;
    let block_count = params.block_count();
    if memory.len() < block_count {
        memory.resize(block_count, Block::default());
    }
    let mut salt_buf = [0u8; Salt::MAX_LENGTH];
    let salt = salt.decode_b64(&mut salt_buf).map_err(AuthError::internal)?;
    let argon2 = Argon2::new(algorithm, version, params);
    let computed = Output::init_with(expected.len(), |out| {
        Ok(argon2.hash_password_into_with_memory(
            password.as_bytes(),
            salt,
            out,
            &mut memory[..block_count],
        )?)
    })
    .map_err(AuthError::internal)?;
    // `Output`'s equality is constant-time.
    Ok(computed == expected)
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
                        .run(move |_| {
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

    /// Small parameters that keep the tests fast.
    fn params(memory_kib: u32) -> Argon2Params {
        Argon2Params { memory_kib, iterations: 1, parallelism: 1 }
    }

    /// A PHC string made by argon2 itself.
    fn phc(algorithm: Algorithm, params: Params, password: &str) -> String {
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        Argon2::new(algorithm, Version::V0x13, params)
            .hash_password(password.as_bytes(), &salt)
            .unwrap()
            .to_string()
    }

    /// What argon2's own `verify_password` says: `Some(matches)`, `None` for an error.
    fn argon2_says(password: &str, phc: &str) -> Option<bool> {
        use argon2::password_hash::PasswordVerifier as _;
        let parsed = PasswordHash::new(phc).ok()?;
        match Argon2::default().verify_password(password.as_bytes(), &parsed) {
            Ok(()) => Some(true),
            Err(argon2::password_hash::Error::Password) => Some(false),
            Err(_) => None,
        }
    }

    #[tokio::test]
    async fn verify_agrees_with_argon2() {
        let m4096 = Params::new(4096, 1, 1, None).unwrap();
        let m8192 = Params::new(8192, 1, 1, None).unwrap();
        let cases = [
            // Made with the configured parameters, with lower ones, with higher ones.
            phc(Algorithm::Argon2id, m8192.clone(), "right"),
            phc(Algorithm::Argon2id, m4096.clone(), "right"),
            phc(Algorithm::Argon2id, Params::new(16384, 2, 2, None).unwrap(), "right"),
            // Another output length, other algorithms.
            phc(Algorithm::Argon2id, Params::new(4096, 1, 1, Some(16)).unwrap(), "right"),
            phc(Algorithm::Argon2i, m4096.clone(), "right"),
            phc(Algorithm::Argon2d, m4096, "right"),
        ];
        for configured in [8192, 4096] {
            let hasher = Hasher::new(params(configured), 1).unwrap();
            for phc in &cases {
                for password in ["right", "wrong", ""] {
                    let ours = hasher.verify(password.to_owned(), phc.clone()).await.unwrap();
                    assert_eq!(Some(ours), argon2_says(password, phc), "{password} {phc}");
                    assert_eq!(ours, password == "right", "{password} {phc}");
                }
            }
        }
    }

    #[tokio::test]
    async fn a_malformed_phc_is_an_internal_error() {
        let hasher = Hasher::new(params(4096), 1).unwrap();
        let good = phc(Algorithm::Argon2id, Params::new(4096, 1, 1, None).unwrap(), "pw");
        let malformed = [
            "not a phc string".to_owned(),
            good.replace("m=4096", "m=lots"),
            good.replace("m=4096", "m=1"),
            good.replace("$argon2id$", "$scrypt$"),
            good.replace("v=19", "v=7"),
            format!("{good}$extra"),
        ];
        for phc in malformed {
            assert_eq!(argon2_says("pw", &phc), None, "{phc}");
            assert!(
                matches!(
                    hasher.verify("pw".to_owned(), phc.clone()).await,
                    Err(AuthError::Internal(_))
                ),
                "{phc}"
            );
        }
        // The pool survived all that.
        assert!(hasher.verify("pw".to_owned(), good).await.unwrap());
    }

    #[tokio::test]
    async fn jobs_run_on_the_low_priority_pool_threads() {
        let hasher = Hasher::new(params(4096), 2).unwrap();
        for _ in 0..4 {
            let name = hasher.run(|_| std::thread::current().name().map(str::to_owned)).await;
            let name = name.unwrap().unwrap_or_default();
            assert!(name.starts_with("argon2-"), "{name}");
        }
        #[cfg(target_os = "linux")]
        {
            let nice = hasher
                .run(|_| rustix::process::getpriority_process(Some(rustix::thread::gettid())))
                .await
                .unwrap()
                .unwrap();
            // At least +10: already nicer than that, the thread may not lower its nice.
            assert!(nice >= HASH_THREAD_NICE, "nice {nice}");
        }
    }

    #[tokio::test]
    async fn a_panicking_job_is_an_internal_error_and_keeps_the_thread() {
        let hasher = Hasher::new(params(4096), 1).unwrap();
        #[allow(clippy::panic)]
        let answer = hasher.run(|_| -> u8 { panic!("boom") }).await;
        assert!(matches!(answer, Err(AuthError::Internal(_))));
        assert_eq!(hasher.run(|_| 7).await.unwrap(), 7);
    }
}
