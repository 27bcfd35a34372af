//! Password hashing: argon2id at OWASP's minimum (19 MiB, t=2, p=1), computed on a fixed set of
//! `hash_concurrency` dedicated threads fed by a bounded queue, so logins cannot starve the
//! runtime and the memory hashing keeps is bounded whatever the allocator does (each thread's
//! allocator keeps at most its last 19 MiB block). An unknown account is checked against a dummy
//! hash, so it costs the same time as a known one.

use std::sync::{Arc, Mutex};

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::{mpsc, oneshot};

use super::AuthError;

/// Hashes and verifies passwords on `hash_concurrency` dedicated threads. Cheap to clone; the
/// threads end when the last clone is dropped.
#[derive(Clone, Debug)]
pub struct Passwords {
    jobs: mpsc::Sender<Job>,
    dummy: Arc<String>,
}

/// One piece of work for a hashing thread; it sends its own answer.
type Job = Box<dyn FnOnce() + Send>;

fn argon2() -> Result<Argon2<'static>, AuthError> {
    let params = Params::new(19 * 1024, 2, 1, None).map_err(|e| AuthError::Setup(format!("argon2 params: {e}")))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

fn hash_blocking(password: &[u8]) -> Result<String, AuthError> {
    Ok(argon2()?.hash_password(password).map_err(|e| AuthError::Setup(format!("hashing: {e}")))?.to_string())
}

fn verify_blocking(password: &[u8], hash: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else { return false };
    argon2().is_ok_and(|a| a.verify_password(password, &parsed).is_ok())
}

/// A hashing thread's loop: takes the next job from the shared queue until every sender is gone.
/// The lock is held only while waiting for a job, never while hashing.
fn work(queue: &Mutex<mpsc::Receiver<Job>>) {
    loop {
        let job = match queue.lock() {
            Ok(mut rx) => rx.blocking_recv(),
            Err(_) => None,
        };
        match job {
            Some(job) => job(),
            None => return,
        }
    }
}

impl Passwords {
    /// Starts `concurrency` hashing threads (named `confab-argon2-N`); that many hashes may run
    /// at once, later ones wait in line.
    pub async fn new(concurrency: u32) -> Result<Self, AuthError> {
        let threads = concurrency.max(1) as usize;
        let (jobs, rx) = mpsc::channel(threads);
        let queue = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("confab-argon2-{i}"))
                .spawn(move || work(&queue))
                .map_err(|e| AuthError::Setup(format!("starting a hashing thread: {e}")))?;
        }
        let mut this = Self { jobs, dummy: Arc::new(String::new()) };
        this.dummy = Arc::new(this.hash("confab-dummy-password").await?);
        Ok(this)
    }

    /// Runs `f` on a hashing thread, waiting for a place in the queue, and returns its answer.
    async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, AuthError> {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = reply.send(f());
        });
        self.jobs.send(job).await.map_err(|_| AuthError::Setup("hasher closed".into()))?;
        answer.await.map_err(|_| AuthError::Setup("a hashing thread ended".into()))
    }

    /// A PHC string for `password`.
    pub async fn hash(&self, password: &str) -> Result<String, AuthError> {
        let password = password.as_bytes().to_vec();
        self.run(move || hash_blocking(&password)).await?
    }

    /// True when `password` matches `hash`. With no hash (unknown account, or an account without
    /// a password) the dummy is checked, for equal cost, and the answer is false.
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> Result<bool, AuthError> {
        let (target, real) = match hash {
            Some(h) => (h.to_string(), true),
            None => (self.dummy.as_str().to_string(), false),
        };
        let password = password.as_bytes().to_vec();
        let ok = self.run(move || verify_blocking(&password, &target)).await?;
        Ok(ok && real)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_use_owasp_parameters() {
        let p = Passwords::new(2).await.expect("init");
        let h = p.hash("correct horse").await.expect("hash");
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(p.verify("correct horse", Some(&h)).await.expect("verify"));
        assert!(!p.verify("wrong horse", Some(&h)).await.expect("verify"));
        assert!(!p.verify("confab-dummy-password", None).await.expect("dummy never matches"));
    }

    /// The memory bound rests on every hash running on one of the `concurrency` named threads:
    /// 12 verifications at once, each reporting the thread it ran on, used at most 2 threads.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hashing_runs_on_a_fixed_set_of_threads() {
        let p = Passwords::new(2).await.expect("init");
        let h = p.hash("pw").await.expect("hash");
        let mut all = tokio::task::JoinSet::new();
        for _ in 0..12 {
            let (p, h) = (p.clone(), h.clone());
            all.spawn(async move {
                p.run(move || {
                    let t = std::thread::current();
                    (verify_blocking(b"pw", &h), t.id(), t.name().map(str::to_string))
                })
                .await
                .expect("run")
            });
        }
        let mut threads = std::collections::HashSet::new();
        while let Some(r) = all.join_next().await {
            let (ok, id, name) = r.expect("join");
            assert!(ok);
            assert!(name.as_deref().is_some_and(|n| n.starts_with("confab-argon2-")), "{name:?}");
            threads.insert(id);
        }
        assert!((1..=2).contains(&threads.len()), "{threads:?}");
    }
}
