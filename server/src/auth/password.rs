//! Password hashing: argon2id at OWASP's minimum (19 MiB, t=2, p=1), computed on a fixed set of
//! `hash_concurrency` dedicated threads fed by a bounded queue, so logins cannot starve the
//! runtime. Each thread owns one 19 MiB block of argon2 memory, allocated once and reused by every
//! hash it computes, so the memory hashing takes is `hash_concurrency` × 19 MiB whatever the
//! allocator does with freed memory. An unknown account is checked against a dummy hash, so it
//! costs the same time as a known one.

use std::sync::{Arc, Mutex};

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use subtle::ConstantTimeEq;
use tokio::sync::{mpsc, oneshot};

use super::AuthError;

/// Hashes and verifies passwords on `hash_concurrency` dedicated threads. Cheap to clone; the
/// threads end when the last clone is dropped.
#[derive(Clone, Debug)]
pub struct Passwords {
    jobs: mpsc::Sender<Job>,
    dummy: Arc<String>,
}

/// One piece of work for a hashing thread, given that thread's argon2 memory; it sends its own
/// answer.
type Job = Box<dyn FnOnce(&mut Scratch) + Send>;

/// The parameters new hashes use (OWASP's minimum for argon2id): 19 MiB, 2 passes, 1 lane.
fn params() -> Result<Params, AuthError> {
    Params::new(19 * 1024, 2, 1, None).map_err(|e| AuthError::Setup(format!("argon2 params: {e}")))
}

/// A hashing thread's argon2 memory: `Params::block_count` blocks of 1 KiB, allocated and written
/// when the thread starts (so the server's RSS shows it from the start) and reused by every hash
/// of that thread.
struct Scratch(Vec<Block>);

impl Scratch {
    fn new(blocks: usize) -> Self {
        Self(vec![Block::new(); blocks])
    }
}

/// The most a stored hash may ask of a verification: 64 MiB, 10 passes, 4 lanes. Confab writes
/// 19 MiB, 2 and 1; a hash asking more (written by something else) never matches, rather than
/// costing the server memory or time it does not budget.
const MAX_VERIFY_M_KIB: u32 = 64 * 1024;
const MAX_VERIFY_T: u32 = 10;
const MAX_VERIFY_P: u32 = 4;

/// Whether a stored hash's parameters exceed the caps above.
fn asks_too_much(params: &Params) -> bool {
    params.m_cost() > MAX_VERIFY_M_KIB || params.t_cost() > MAX_VERIFY_T || params.p_cost() > MAX_VERIFY_P
}

/// A PHC string (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`) for `password` with a fresh
/// 16-byte salt.
fn hash_blocking(scratch: &mut Scratch, password: &[u8]) -> Result<String, AuthError> {
    let setup = |e: &dyn std::fmt::Display| AuthError::Setup(format!("hashing: {e}"));
    let params = params()?;
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| setup(&e))?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    let a = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let memory = scratch.0.get_mut(..params.block_count()).ok_or_else(|| setup(&"no argon2 memory"))?;
    a.hash_password_into_with_memory(password, &salt, &mut out, memory).map_err(|e| setup(&e))?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| setup(&e))?,
        salt: Some(Salt::new(&salt).map_err(|e| setup(&e))?),
        hash: Some(Output::new(&out).map_err(|e| setup(&e))?),
    };
    Ok(phc.to_string())
}

/// True when `password` hashes to `hash` (a PHC string) under the algorithm, version and
/// parameters written in it; the outputs are compared in constant time. A hash that does not
/// parse never matches.
fn verify_blocking(scratch: &mut Scratch, password: &[u8], hash: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else { return false };
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else { return false };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm.as_str()) else { return false };
    let Ok(version) = parsed.version.map_or(Ok(Version::default()), Version::try_from) else { return false };
    let Ok(params) = Params::try_from(&parsed) else { return false };
    let mut out = [0u8; Output::MAX_LENGTH];
    let Some(out) = out.get_mut(..expected.len()) else { return false };
    if asks_too_much(&params) {
        tracing::warn!(
            m = params.m_cost(),
            t = params.t_cost(),
            p = params.p_cost(),
            "a stored password hash asks too much"
        );
        return false;
    }
    let blocks = params.block_count();
    let a = Argon2::new(algorithm, version, params);
    // More memory than the thread's own (a hash written with a larger `m` than Confab's) is
    // borrowed for this hash only, and refused rather than aborting when it cannot be had.
    let mut borrowed = Vec::new();
    let memory = if blocks <= scratch.0.len() {
        &mut scratch.0[..blocks]
    } else {
        if borrowed.try_reserve_exact(blocks).is_err() {
            return false;
        }
        borrowed.resize(blocks, Block::new());
        &mut borrowed[..]
    };
    a.hash_password_into_with_memory(password, salt, out, memory).is_ok() && bool::from(out.ct_eq(expected.as_bytes()))
}

/// A hashing thread's loop: takes the next job from the shared queue until every sender is gone.
/// The lock is held only while waiting for a job, never while hashing.
fn work(queue: &Mutex<mpsc::Receiver<Job>>, blocks: usize) {
    let mut scratch = Scratch::new(blocks);
    loop {
        let job = match queue.lock() {
            Ok(mut rx) => rx.blocking_recv(),
            Err(_) => None,
        };
        match job {
            Some(job) => job(&mut scratch),
            None => return,
        }
    }
}

impl Passwords {
    /// Starts `concurrency` hashing threads (named `confab-argon2-N`), each with its own 19 MiB of
    /// argon2 memory; that many hashes may run at once, later ones wait in line.
    pub async fn new(concurrency: u32) -> Result<Self, AuthError> {
        let threads = concurrency.max(1) as usize;
        let (jobs, rx) = mpsc::channel(threads);
        let queue = Arc::new(Mutex::new(rx));
        let blocks = params()?.block_count();
        for i in 0..threads {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("confab-argon2-{i}"))
                .spawn(move || work(&queue, blocks))
                .map_err(|e| AuthError::Setup(format!("starting a hashing thread: {e}")))?;
        }
        let mut this = Self { jobs, dummy: Arc::new(String::new()) };
        this.dummy = Arc::new(this.hash("confab-dummy-password").await?);
        Ok(this)
    }

    /// Runs `f` on a hashing thread, waiting for a place in the queue, and returns its answer.
    async fn run<T: Send + 'static>(&self, f: impl FnOnce(&mut Scratch) -> T + Send + 'static) -> Result<T, AuthError> {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |scratch| {
            let _ = reply.send(f(scratch));
        });
        self.jobs.send(job).await.map_err(|_| AuthError::Setup("hasher closed".into()))?;
        answer.await.map_err(|_| AuthError::Setup("a hashing thread ended".into()))
    }

    /// A PHC string for `password`.
    pub async fn hash(&self, password: &str) -> Result<String, AuthError> {
        let password = password.as_bytes().to_vec();
        self.run(move |s| hash_blocking(s, &password)).await?
    }

    /// True when `password` matches `hash`. With no hash (unknown account, or an account without
    /// a password) the dummy is checked, for equal cost, and the answer is false.
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> Result<bool, AuthError> {
        let (target, real) = match hash {
            Some(h) => (h.to_string(), true),
            None => (self.dummy.as_str().to_string(), false),
        };
        let password = password.as_bytes().to_vec();
        let ok = self.run(move |s| verify_blocking(s, &password, &target)).await?;
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
        assert!(!p.verify("correct horse", Some("not a phc string")).await.expect("verify"));
    }

    /// Hashes stored before the reused memory (made by the crate's `PasswordHasher`) still verify,
    /// and the crate's `PasswordVerifier` accepts ours: the PHC strings are the same format.
    #[tokio::test]
    async fn hashes_agree_with_the_argon2_crates_own_hasher_and_verifier() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let p = Passwords::new(1).await.expect("init");
        let a = Argon2::new(Algorithm::Argon2id, Version::V0x13, params().expect("params"));
        let theirs = a.hash_password(b"correct horse").expect("hash").to_string();
        assert!(p.verify("correct horse", Some(&theirs)).await.expect("verify"));
        assert!(!p.verify("wrong horse", Some(&theirs)).await.expect("verify"));
        let ours = p.hash("correct horse").await.expect("hash");
        assert!(a.verify_password(b"correct horse", ours.as_str()).is_ok());
        assert!(a.verify_password(b"wrong horse", ours.as_str()).is_err());
        // Other parameters written in the hash are honoured (a smaller m, another version).
        let small = Argon2::new(Algorithm::Argon2i, Version::V0x10, Params::new(64, 1, 1, None).expect("params"));
        let old = small.hash_password(b"pw").expect("hash").to_string();
        assert!(p.verify("pw", Some(&old)).await.expect("verify"));
        // A larger `m` borrows memory for one hash; one beyond the caps never matches.
        let large =
            Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(32 * 1024, 1, 1, None).expect("params"));
        let bigger = large.hash_password(b"pw").expect("hash").to_string();
        assert!(p.verify("pw", Some(&bigger)).await.expect("verify"));
        let greedy =
            "$argon2id$v=19$m=4194304,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        let parsed = PasswordHash::new(greedy).expect("a well-formed PHC string");
        assert!(asks_too_much(&Params::try_from(&parsed).expect("params")), "4 GiB is over the cap");
        let ours = Params::try_from(&PasswordHash::new(&bigger).expect("phc")).expect("params");
        assert!(!asks_too_much(&params().expect("params")) && !asks_too_much(&ours));
        assert!(!p.verify("pw", Some(greedy)).await.expect("verify"));
    }

    /// The memory bound rests on every hash running on one of the `concurrency` named threads
    /// with that thread's one block of memory: 12 verifications at once, each reporting the
    /// thread it ran on and the memory it used, used at most 2 threads and one block on each.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hashing_runs_on_a_fixed_set_of_threads() {
        let p = Passwords::new(2).await.expect("init");
        let h = p.hash("pw").await.expect("hash");
        let mut all = tokio::task::JoinSet::new();
        for _ in 0..12 {
            let (p, h) = (p.clone(), h.clone());
            all.spawn(async move {
                p.run(move |s| {
                    let t = std::thread::current();
                    (verify_blocking(s, b"pw", &h), t.id(), t.name().map(str::to_string), s.0.as_ptr() as usize)
                })
                .await
                .expect("run")
            });
        }
        let mut memory = std::collections::HashMap::new();
        while let Some(r) = all.join_next().await {
            let (ok, id, name, block) = r.expect("join");
            assert!(ok);
            assert!(name.as_deref().is_some_and(|n| n.starts_with("confab-argon2-")), "{name:?}");
            memory.entry(id).or_insert_with(std::collections::HashSet::new).insert(block);
        }
        assert!((1..=2).contains(&memory.len()), "{memory:?}");
        assert!(memory.values().all(|blocks| blocks.len() == 1), "{memory:?}");
    }
}
