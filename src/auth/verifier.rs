//! [`Authenticator`]: password verification off the event loops, with a verified-credential
//! cache and per-IP failure throttling.
//!
//! * Argon2 costs tens of milliseconds of CPU: running it on a core's event loop would stall
//!   every connection of that core. Jobs go over a crossbeam channel to a small pool of
//!   verifier threads; the async caller awaits a `futures_channel::oneshot`, so this works
//!   under any runtime.
//! * Cache: account → (PHC string it was verified against, HMAC-SHA256(process key, password)).
//!   A hit needs the account's *current* PHC to equal the cached one, so `surel user passwd`
//!   or `remove` invalidates it implicitly. The plaintext is never stored, and the HMAC key is
//!   random per process, so a memory dump does not give an offline-crackable fast hash.
//! * Unknown users (and malformed usernames) are verified against a dummy hash made with the
//!   same parameters as real ones, so timing does not reveal which accounts exist. Unknown
//!   users are never cached; a cache hit is only possible for a correct password, which an
//!   attacker learning "fast answer" already knows.
//! * Throttling ([`super::throttle`]): `verify` consults a gate per address and per account
//!   before looking at the password, and records the outcome. A closed gate answers
//!   `Throttled` without checking anything; a saturated verifier or an address with its share
//!   of checks in flight answers `Busy`. Neither is a verdict on the password, and neither
//!   counts as a failure. `verify` never sleeps (it stays runtime-agnostic).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use argon2::Argon2;
use argon2::password_hash::PasswordVerifier;
use futures_channel::oneshot;
use sha2::{Digest, Sha256};

use super::throttle::{self, Refusal, Throttle, ThrottleConfig};
use super::users::{UserDb, canonical_address, hash_password};
use super::{AuthError, AuthOutcome, ClientIp};

/// Configuration of the [`Authenticator`].
#[derive(Clone, Debug)]
pub struct AuthConfig {
    /// Number of verifier threads.
    pub threads: usize,
    /// Maximum number of cached verified credentials.
    pub cache_capacity: usize,
    /// Maximum number of verifications waiting for a verifier thread; beyond it attempts are
    /// rejected at once (an overload or password-spraying flood must not grow memory and
    /// latency without bound).
    pub queue_capacity: usize,
    pub throttle: ThrottleConfig,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            threads: 2,
            cache_capacity: 100_000,
            queue_capacity: 4096,
            throttle: ThrottleConfig::default(),
        }
    }
}

type Mac = [u8; 32];

struct CacheEntry {
    phc: String,
    mac: Mac,
    /// Insertion sequence number, for evicting the oldest.
    seq: u64,
}

struct Cache {
    map: HashMap<String, CacheEntry>,
    next_seq: u64,
    capacity: usize,
}

impl Cache {
    fn insert(&mut self, account: String, phc: String, mac: Mac) {
        if self.capacity == 0 {
            return;
        }
        if !self.map.contains_key(&account) && self.map.len() >= self.capacity {
            // Evict the oldest tenth in one pass so the O(n) scan is amortized.
            let drop_n = (self.capacity / 10).max(1);
            let mut seqs: Vec<u64> = self.map.values().map(|e| e.seq).collect();
            let cut = if drop_n >= seqs.len() {
                u64::MAX
            } else {
                *seqs.select_nth_unstable(drop_n - 1).1
            };
            self.map.retain(|_, e| e.seq > cut);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.map.insert(account, CacheEntry { phc, mac, seq });
    }
}

/// One of a client IP's pending-hash slots; given back on drop, even if the waiting future
/// is cancelled.
struct PendingHash<'a> {
    inner: &'a Inner,
    ip: IpAddr,
}

impl<'a> PendingHash<'a> {
    fn take(inner: &'a Inner, ip: IpAddr) -> Option<Self> {
        let mut t = inner.throttle.lock().unwrap_or_else(|e| e.into_inner());
        t.begin_check(ip).then(|| PendingHash { inner, ip })
    }
}

impl Drop for PendingHash<'_> {
    fn drop(&mut self) {
        let mut t = self
            .inner
            .throttle
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        t.end_check(self.ip);
    }
}

/// A check the throttle admitted: its verdict is recorded and its place given back under one
/// lock, so no other check is admitted in between; given back on drop if it never finished
/// (a cancelled login).
struct AdmittedCheck<'a> {
    inner: &'a Inner,
    check: Option<throttle::Check>,
}

impl AdmittedCheck<'_> {
    fn finish(mut self, outcome: &AuthOutcome) {
        let Some(check) = self.check.take() else {
            return;
        };
        let mut t = self
            .inner
            .throttle
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match outcome {
            AuthOutcome::Accepted(_) => t.succeeded(check, Instant::now()),
            AuthOutcome::Rejected => t.failed(check, Instant::now()),
            AuthOutcome::Throttled | AuthOutcome::Busy => t.abandoned(check),
        }
    }
}

impl Drop for AdmittedCheck<'_> {
    fn drop(&mut self) {
        if let Some(check) = self.check.take() {
            self.inner
                .throttle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .abandoned(check);
        }
    }
}

/// Password bytes wiped on drop (best effort: no copies are made by us).
struct Secret(Vec<u8>);

impl Drop for Secret {
    fn drop(&mut self) {
        for b in self.0.iter_mut() {
            // SAFETY: writing through a valid &mut u8.
            unsafe { std::ptr::write_volatile(b, 0) };
        }
    }
}

struct Job {
    phc: Arc<str>,
    password: Secret,
    reply: oneshot::Sender<bool>,
}

struct Inner {
    users: UserDb,
    jobs: crossbeam_channel::Sender<Job>,
    hmac_key: [u8; 32],
    dummy_phc: Arc<str>,
    cache: Mutex<Cache>,
    throttle: Mutex<Throttle>,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// Verifies passwords; cheap to clone, `Send + Sync`. The verifier threads exit when the last
/// clone is dropped.
#[derive(Clone)]
pub struct Authenticator {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("users", &self.inner.users.path())
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Starts `config.threads` verifier threads (at least one). Computes one dummy hash with
    /// the user db's parameters (for unknown users), so this costs one argon2 hash.
    pub fn new(users: UserDb, config: AuthConfig) -> Result<Authenticator, AuthError> {
        let mut filler = [0u8; 32];
        rand::fill(&mut filler);
        let dummy_phc: Arc<str> = hash_password(users.params(), &filler)?.into();
        let mut hmac_key = [0u8; 32];
        rand::fill(&mut hmac_key);

        let (tx, rx) = crossbeam_channel::bounded::<Job>(config.queue_capacity.max(1));
        for i in 0..config.threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("surel-auth-{i}"))
                .spawn(move || {
                    let argon = Argon2::default();
                    while let Ok(job) = rx.recv() {
                        // Parameters come from the PHC string, not from `argon`.
                        let ok = argon.verify_password(&job.password.0, &*job.phc).is_ok();
                        let _ = job.reply.send(ok);
                    }
                })?;
        }
        Ok(Authenticator {
            inner: Arc::new(Inner {
                users,
                jobs: tx,
                hmac_key,
                dummy_phc,
                cache: Mutex::new(Cache {
                    map: HashMap::new(),
                    next_seq: 0,
                    capacity: config.cache_capacity,
                }),
                throttle: Mutex::new(Throttle::new(config.throttle)),
                hits: AtomicU64::new(0),
                misses: AtomicU64::new(0),
            }),
        })
    }

    /// The accounts this authenticator checks against.
    pub fn users(&self) -> &UserDb {
        &self.inner.users
    }

    /// Checks `username` (any case) / `password`, unless a throttling gate for this address
    /// or this account is closed (`Throttled`: nothing was checked) or this address already
    /// has its share of checks in flight or the verifiers are saturated (`Busy`). Records the
    /// outcome for throttling. Never sleeps: a caller that wants to wait out `Busy` retries.
    pub async fn verify(&self, ip: ClientIp, username: &str, password: &str) -> AuthOutcome {
        let account = throttle::account_key(username);
        let admitted = self
            .inner
            .throttle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .admit(ip, &account, Instant::now());
        let check = match admitted {
            Ok(check) => AdmittedCheck {
                inner: &self.inner,
                check: Some(check),
            },
            Err(Refusal::Closed(_)) => return AuthOutcome::Throttled,
            Err(Refusal::Wait) => return AuthOutcome::Busy,
        };
        let outcome = self.check(ip, username, password).await;
        check.finish(&outcome);
        outcome
    }

    async fn check(&self, ip: ClientIp, username: &str, password: &str) -> AuthOutcome {
        let inner = &*self.inner;
        let account = canonical_address(username).ok();
        let table = inner.users.accounts();
        let phc: Option<Arc<str>> = account.as_deref().and_then(|a| table.phc(a)).map(Arc::from);
        drop(table);

        // Computed for unknown users too, so known and unknown names take the same path.
        let mac = hmac_sha256(&inner.hmac_key, password.as_bytes());
        let mac = match (&account, &phc) {
            (Some(account), Some(phc)) => {
                let cache = inner.cache.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(e) = cache.map.get(account)
                    && *e.phc == **phc
                    && ct_eq(&e.mac, &mac)
                {
                    drop(cache);
                    inner.hits.fetch_add(1, Ordering::Relaxed);
                    return AuthOutcome::Accepted(account.clone());
                }
                Some(mac)
            }
            _ => None,
        };
        let Some(_slot) = PendingHash::take(inner, ip) else {
            return AuthOutcome::Busy;
        };
        let (reply, result) = oneshot::channel();
        let job = Job {
            phc: phc.clone().unwrap_or_else(|| inner.dummy_phc.clone()),
            password: Secret(password.as_bytes().to_vec()),
            reply,
        };
        match inner.jobs.try_send(job) {
            Ok(()) => {
                inner.misses.fetch_add(1, Ordering::Relaxed);
            }
            Err(crossbeam_channel::TrySendError::Full(_)) => {
                tracing::warn!("password verifier queue full");
                return AuthOutcome::Busy;
            }
            Err(crossbeam_channel::TrySendError::Disconnected(_)) => {
                tracing::error!("password verifier threads are gone");
                return AuthOutcome::Busy;
            }
        }
        let ok = result.await.unwrap_or(false);
        match (ok, account, phc, mac) {
            (true, Some(account), Some(phc), Some(mac)) => {
                inner
                    .cache
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(account.clone(), phc.to_string(), mac);
                AuthOutcome::Accepted(account)
            }
            _ => AuthOutcome::Rejected,
        }
    }

    /// Recent failed logins from `ip` (its address gate), for logs and tests.
    pub fn failures(&self, ip: ClientIp) -> u32 {
        self.inner
            .throttle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .client_failures(ip, Instant::now())
    }

    /// (cache hits, cache misses) since start. Every verification that ran argon2 is a miss.
    pub fn cache_stats(&self) -> (u64, u64) {
        (
            self.inner.hits.load(Ordering::Relaxed),
            self.inner.misses.load(Ordering::Relaxed),
        )
    }
}

fn hmac_sha256(key: &[u8; 32], message: &[u8]) -> Mac {
    const BLOCK: usize = 64;
    let mut ipad = [0x36u8; BLOCK];
    let mut opad = [0x5cu8; BLOCK];
    for (i, k) in key.iter().enumerate() {
        ipad[i] ^= k;
        opad[i] ^= k;
    }
    let inner = Sha256::new()
        .chain_update(ipad)
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(opad)
        .chain_update(inner)
        .finalize()
        .into()
}

fn ct_eq(a: &Mac, b: &Mac) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::users::test_params;
    use std::net::Ipv4Addr;
    use std::time::Duration;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn setup(config: AuthConfig) -> (tempfile::TempDir, UserDb, Authenticator) {
        let dir = tempfile::tempdir().unwrap();
        let users = UserDb::open_with_params(dir.path(), test_params()).unwrap();
        users.add("alice@example.com", "correct horse").unwrap();
        let auth = Authenticator::new(users.clone(), config).unwrap();
        (dir, users, auth)
    }

    #[test]
    fn busy_is_not_a_failure_and_cached_credentials_need_no_slot() {
        let (_dir, _users, auth) = setup(AuthConfig::default());
        let ip: IpAddr = "192.0.2.9".parse().unwrap();
        let ok = block_on(auth.verify(ip, "alice@example.com", "correct horse"));
        assert_eq!(ok, AuthOutcome::Accepted("alice@example.com".into()));
        auth.inner
            .throttle
            .lock()
            .unwrap()
            .config_mut()
            .max_pending_per_ip = 0;
        let (_, misses) = auth.cache_stats();
        // No slot: a miss is not checked, not counted as a failure.
        for _ in 0..5 {
            assert_eq!(
                block_on(auth.verify(ip, "alice@example.com", "wrong")),
                AuthOutcome::Busy
            );
        }
        assert_eq!(auth.failures(ip), 0);
        // The cache answers without a slot.
        assert_eq!(
            block_on(auth.verify(ip, "alice@example.com", "correct horse")),
            ok
        );
        assert_eq!(auth.cache_stats().1, misses, "no hash ran: no miss counted");
        assert!(auth.inner.throttle.lock().unwrap().pending_is_empty());
    }

    #[test]
    fn a_closed_gate_checks_nothing_not_even_the_cache() {
        let (_d, _users, auth) = setup(AuthConfig {
            throttle: ThrottleConfig {
                max_delay: Duration::from_secs(60),
                ..Default::default()
            },
            ..Default::default()
        });
        block_on(async {
            // Cached, so a right guess would otherwise be answered at once.
            assert!(matches!(
                auth.verify(IP, "alice@example.com", "correct horse").await,
                AuthOutcome::Accepted(_)
            ));
            for _ in 0..3 {
                assert_eq!(
                    auth.verify(IP, "nobody@example.com", "x").await,
                    AuthOutcome::Rejected
                );
            }
            let (hits, misses) = auth.cache_stats();
            // The address's gate is closed: even the right password is not looked at.
            assert_eq!(
                auth.verify(IP, "alice@example.com", "correct horse").await,
                AuthOutcome::Throttled
            );
            assert_eq!(auth.cache_stats(), (hits, misses), "nothing was checked");
            // Another address is not affected.
            let other: IpAddr = "198.51.100.7".parse().unwrap();
            assert!(matches!(
                auth.verify(other, "alice@example.com", "correct horse")
                    .await,
                AuthOutcome::Accepted(_)
            ));
        });
        assert_eq!(auth.failures(IP), 3);
    }

    #[test]
    fn authenticator_is_send_sync_clone() {
        fn check<T: Send + Sync + Clone + 'static>() {}
        check::<Authenticator>();
    }

    const IP: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

    #[test]
    fn hmac_matches_rfc4231_shape() {
        // RFC 4231 test case 2 uses a 4-byte key; ours is a 32-byte key zero-padded the same
        // way, so check with "Jefe" padded to 32 bytes (HMAC pads keys with zeros anyway).
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        let mac = hmac_sha256(&key, b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn accept_reject_cache_and_invalidation() {
        // Throttling is tested on its own; here every attempt is checked.
        let (_d, users, auth) = setup(AuthConfig {
            throttle: ThrottleConfig {
                free_failures: 100,
                account_free_failures: 100,
                ..Default::default()
            },
            ..Default::default()
        });
        block_on(async {
            assert_eq!(
                auth.verify(IP, "alice@example.com", "correct horse").await,
                AuthOutcome::Accepted("alice@example.com".into())
            );
            assert_eq!(auth.cache_stats(), (0, 1));
            // Second login (any case): cache hit, no argon2.
            assert_eq!(
                auth.verify(IP, "Alice@EXAMPLE.com", "correct horse").await,
                AuthOutcome::Accepted("alice@example.com".into())
            );
            assert_eq!(auth.cache_stats(), (1, 1));
            // Wrong password: miss, rejected.
            assert_eq!(
                auth.verify(IP, "alice@example.com", "wrong").await,
                AuthOutcome::Rejected
            );
            assert_eq!(auth.cache_stats(), (1, 2));
            // Unknown and malformed users.
            assert_eq!(
                auth.verify(IP, "nobody@example.com", "correct horse").await,
                AuthOutcome::Rejected
            );
            assert_eq!(auth.verify(IP, "", "").await, AuthOutcome::Rejected);
            assert_eq!(auth.cache_stats(), (1, 4));

            // Password change (through another handle, as the CLI would) invalidates.
            let cli =
                UserDb::open_with_params(users.path().parent().unwrap(), test_params()).unwrap();
            cli.set_password("alice@example.com", "new pass").unwrap();
            users.force_refresh();
            assert_eq!(
                auth.verify(IP, "alice@example.com", "correct horse").await,
                AuthOutcome::Rejected
            );
            assert_eq!(
                auth.verify(IP, "alice@example.com", "new pass").await,
                AuthOutcome::Accepted("alice@example.com".into())
            );
            assert_eq!(auth.cache_stats(), (1, 6));
            assert_eq!(
                auth.verify(IP, "alice@example.com", "new pass").await,
                AuthOutcome::Accepted("alice@example.com".into())
            );
            assert_eq!(auth.cache_stats(), (2, 6));

            // Removal: rejected even though the cache still holds an entry.
            cli.remove("alice@example.com").unwrap();
            users.force_refresh();
            assert_eq!(
                auth.verify(IP, "alice@example.com", "new pass").await,
                AuthOutcome::Rejected
            );
        });
    }

    #[test]
    fn concurrent_verifications_from_threads() {
        let (_d, _users, auth) = setup(AuthConfig::default());
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let auth = auth.clone();
                std::thread::spawn(move || {
                    let pw = if i % 2 == 0 { "correct horse" } else { "nope" };
                    // One address gets two checks at once (its free failures); the others
                    // are told to wait, as `Core::authenticate` does.
                    let deadline = std::time::Instant::now() + Duration::from_secs(10);
                    loop {
                        match block_on(auth.verify(IP, "alice@example.com", pw)) {
                            AuthOutcome::Busy if std::time::Instant::now() < deadline => {
                                std::thread::sleep(Duration::from_millis(5));
                            }
                            outcome => break outcome,
                        }
                    }
                })
            })
            .collect();
        let accepted = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|o| matches!(o, AuthOutcome::Accepted(_)))
            .count();
        assert_eq!(accepted, 2);
    }

    #[test]
    fn cache_is_bounded() {
        let mut c = Cache {
            map: HashMap::new(),
            next_seq: 0,
            capacity: 20,
        };
        for i in 0..100 {
            c.insert(format!("u{i}"), "p".into(), [0; 32]);
            assert!(c.map.len() <= 20);
        }
        assert!(c.map.contains_key("u99"));
        assert!(!c.map.contains_key("u0"));
    }
}
