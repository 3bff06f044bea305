//! Brute-force throttling: a gate per client address and a gate per target account, consulted
//! *before* any password is looked at.
//!
//! A gate counts recent failures. After `free_failures` of them it closes for a delay that
//! starts at `base_delay` and doubles with each further failure up to `max_delay`; while it is
//! closed, attempts through it are refused without checking the password (not even against
//! the credential cache, which would otherwise answer "right" or "wrong" at full speed) and
//! the client is told to try later. So the number of password checks is bounded by the gates
//! however the client behaves: new connection per guess, pipelined guesses, dropped
//! connections — the bound holds because nothing is checked while a gate is closed, not
//! because a reply is slow.
//!
//! * The address gate (IPv4 address, or IPv6 /64) bounds one attacker's guess rate over all
//!   accounts. A successful login clears only the failures that address made against *that*
//!   account, so owning one valid account does not buy free guesses at the others.
//! * The account gate (the name as given, lowercased, known or not) bounds a distributed
//!   attack on one account. An address that logged into the account successfully within the
//!   `expiry` window is not held back by the account's gate (only by its own), so an attack
//!   on an account does not lock its owner out.
//! * Failures are forgotten `expiry` after the last one; both maps are bounded.
//! * Checks in flight count as failures-to-be: a gate admits concurrent checks only while its
//!   failures plus its checks in flight stay within its free failures, and once past them
//!   one check at a time. Otherwise guesses sent in parallel (or by clients that drop their
//!   connection without waiting) would all pass a gate that is open only because the first
//!   ones have not failed yet. Such a client is told to wait ([`Refusal::Wait`]), which is
//!   never counted as a failure.
//!
//! The same structure counts password checks in flight per address (`max_pending_per_ip`): a
//! host cannot occupy every verifier thread. Running out of those slots is a capacity limit,
//! not a failure: it is never counted against anyone.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Failure throttling policy.
#[derive(Clone, Debug)]
pub struct ThrottleConfig {
    /// Failures per address answered without closing its gate.
    pub free_failures: u32,
    /// Failures against one account (from anywhere) before its gate closes.
    pub account_free_failures: u32,
    /// The first closing; it doubles with each further failure.
    pub base_delay: Duration,
    /// Upper bound of a closing.
    pub max_delay: Duration,
    /// A gate forgets its failures this long after the last one.
    pub expiry: Duration,
    /// Addresses and accounts tracked, each (oldest forgotten first).
    pub max_entries: usize,
    /// Password checks one address may have queued or running at once.
    pub max_pending_per_ip: u32,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            free_failures: 2,
            account_free_failures: 5,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(15),
            expiry: Duration::from_secs(15 * 60),
            max_entries: 100_000,
            max_pending_per_ip: 4,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Gate {
    failures: u32,
    last_failure: Instant,
    open_at: Instant,
}

impl Gate {
    fn new(now: Instant) -> Gate {
        Gate {
            failures: 0,
            last_failure: now,
            open_at: now,
        }
    }
}

struct ClientGate {
    gate: Gate,
    /// Failures of this address per account (a few, newest kept), to undo on success.
    by_account: Vec<(String, u32)>,
}

struct AccountGate {
    gate: Gate,
    /// Addresses that logged in successfully, and when.
    trusted: Vec<(IpAddr, Instant)>,
}

const MAX_ACCOUNTS_PER_CLIENT: usize = 16;
const MAX_TRUSTED_PER_ACCOUNT: usize = 8;

pub struct Throttle {
    config: ThrottleConfig,
    clients: HashMap<IpAddr, ClientGate>,
    accounts: HashMap<String, AccountGate>,
    pending: HashMap<IpAddr, u32>,
    /// Admitted checks not yet recorded, per address gate and per account gate.
    clients_in_flight: HashMap<IpAddr, u32>,
    accounts_in_flight: HashMap<String, u32>,
}

/// An admitted password check; give it back with [`Throttle::failed`],
/// [`Throttle::succeeded`] or [`Throttle::abandoned`].
#[derive(Debug)]
#[must_use]
pub struct Check {
    client: IpAddr,
    account: String,
    /// Counted on the account's gate (not when the address is trusted by it).
    on_account: bool,
}

impl Check {
    pub fn ip(&self) -> IpAddr {
        self.client
    }
}

/// Why a check may not run now.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A gate is closed for this long: the client is told to try later.
    Closed(Duration),
    /// A gate is open but busy with checks whose failure would use up what it allows: retry
    /// shortly. Not a failure.
    Wait,
}

fn add_in_flight<K: std::hash::Hash + Eq>(map: &mut HashMap<K, u32>, key: K) {
    *map.entry(key).or_insert(0) += 1;
}

fn remove_in_flight<K: std::hash::Hash + Eq>(map: &mut HashMap<K, u32>, key: &K) {
    if let Some(n) = map.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            map.remove(key);
        }
    }
}

/// The address an attacker controls as a unit: IPv4 as is (mapped IPv6 as IPv4), IPv6 per /64.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut seg = v6.segments();
                seg[4..].fill(0);
                IpAddr::V6(seg.into())
            }
        },
    }
}

/// The account a login names, as the gate knows it.
pub fn account_key(username: &str) -> String {
    username.trim().to_lowercase()
}

impl Throttle {
    pub fn new(config: ThrottleConfig) -> Throttle {
        Throttle {
            config,
            clients: HashMap::new(),
            accounts: HashMap::new(),
            pending: HashMap::new(),
            clients_in_flight: HashMap::new(),
            accounts_in_flight: HashMap::new(),
        }
    }

    pub fn config(&self) -> &ThrottleConfig {
        &self.config
    }

    #[cfg(test)]
    pub fn config_mut(&mut self) -> &mut ThrottleConfig {
        &mut self.config
    }

    fn delay_for(&self, failures: u32, free: u32) -> Duration {
        if failures <= free {
            return Duration::ZERO;
        }
        let doublings = (failures - free - 1).min(31);
        self.config
            .base_delay
            .checked_mul(1u32 << doublings)
            .unwrap_or(self.config.max_delay)
            .min(self.config.max_delay)
    }

    fn live(&self, gate: &Gate, now: Instant) -> bool {
        now.saturating_duration_since(gate.last_failure) < self.config.expiry
    }

    /// Whether one more check may pass a gate with `failures` recent failures, `in_flight`
    /// checks running and `free` failures allowed before it closes.
    fn gate_admits(failures: u32, in_flight: u32, free: u32) -> bool {
        failures.saturating_add(in_flight) < free || in_flight == 0
    }

    /// May a password for `account` from `ip` be checked now? On `Ok` the check counts as in
    /// flight until it is given back.
    pub fn admit(&mut self, ip: IpAddr, account: &str, now: Instant) -> Result<Check, Refusal> {
        let client = client_key(ip);
        let mut closed = Duration::ZERO;
        let mut client_failures = 0;
        if let Some(c) = self.clients.get(&client)
            && self.live(&c.gate, now)
        {
            closed = closed.max(c.gate.open_at.saturating_duration_since(now));
            client_failures = c.gate.failures;
        }
        let mut account_failures = 0;
        let mut on_account = true;
        if let Some(a) = self.accounts.get(account) {
            on_account = !a.trusted.iter().any(|(ip, at)| {
                *ip == client && now.saturating_duration_since(*at) < self.config.expiry
            });
            if on_account && self.live(&a.gate, now) {
                closed = closed.max(a.gate.open_at.saturating_duration_since(now));
                account_failures = a.gate.failures;
            }
        }
        if !closed.is_zero() {
            return Err(Refusal::Closed(closed));
        }
        let client_busy = self.clients_in_flight.get(&client).copied().unwrap_or(0);
        let account_busy = self.accounts_in_flight.get(account).copied().unwrap_or(0);
        if !Self::gate_admits(client_failures, client_busy, self.config.free_failures)
            || (on_account
                && !Self::gate_admits(
                    account_failures,
                    account_busy,
                    self.config.account_free_failures,
                ))
        {
            return Err(Refusal::Wait);
        }
        add_in_flight(&mut self.clients_in_flight, client);
        if on_account {
            add_in_flight(&mut self.accounts_in_flight, account.to_string());
        }
        Ok(Check {
            client,
            account: account.to_string(),
            on_account,
        })
    }

    /// Gives back a check that ended without a verdict (capacity, cancellation).
    pub fn abandoned(&mut self, check: Check) {
        remove_in_flight(&mut self.clients_in_flight, &check.client);
        if check.on_account {
            remove_in_flight(&mut self.accounts_in_flight, &check.account);
        }
    }

    /// The check found a wrong password (or an unknown user).
    pub fn failed(&mut self, check: Check, now: Instant) {
        self.record_failure(check.client, &check.account, now);
        self.abandoned(check);
    }

    /// The check found the right password.
    pub fn succeeded(&mut self, check: Check, now: Instant) {
        self.record_success(check.client, &check.account, now);
        self.abandoned(check);
    }

    /// Counts a wrong password (or unknown user) for `account` from `ip`.
    fn record_failure(&mut self, ip: IpAddr, account: &str, now: Instant) {
        if self.config.max_entries == 0 {
            return;
        }
        let client = client_key(ip);
        if !self.clients.contains_key(&client) && self.clients.len() >= self.config.max_entries {
            self.evict_clients(now);
        }
        if !self.accounts.contains_key(account) && self.accounts.len() >= self.config.max_entries {
            self.evict_accounts(now);
        }
        let expiry = self.config.expiry;
        let c = self.clients.entry(client).or_insert_with(|| ClientGate {
            gate: Gate::new(now),
            by_account: Vec::new(),
        });
        if now.saturating_duration_since(c.gate.last_failure) >= expiry {
            c.gate.failures = 0;
            c.by_account.clear();
        }
        c.gate.failures = c.gate.failures.saturating_add(1);
        c.gate.last_failure = now;
        match c.by_account.iter_mut().find(|(a, _)| a == account) {
            Some((_, n)) => *n += 1,
            None => {
                if c.by_account.len() >= MAX_ACCOUNTS_PER_CLIENT {
                    c.by_account.remove(0);
                }
                c.by_account.push((account.to_string(), 1));
            }
        }
        let client_failures = c.gate.failures;
        let a = self
            .accounts
            .entry(account.to_string())
            .or_insert_with(|| AccountGate {
                gate: Gate::new(now),
                trusted: Vec::new(),
            });
        if now.saturating_duration_since(a.gate.last_failure) >= expiry {
            a.gate.failures = 0;
        }
        a.gate.failures = a.gate.failures.saturating_add(1);
        a.gate.last_failure = now;
        let account_failures = a.gate.failures;
        let client_delay = self.delay_for(client_failures, self.config.free_failures);
        let account_delay = self.delay_for(account_failures, self.config.account_free_failures);
        if let Some(c) = self.clients.get_mut(&client) {
            c.gate.open_at = now + client_delay;
        }
        if let Some(a) = self.accounts.get_mut(account) {
            a.gate.open_at = now + account_delay;
        }
    }

    /// A correct password for `account` from `ip`: that address's failures against that
    /// account are forgiven (not its failures against others), and the address becomes
    /// trusted by the account's gate.
    fn record_success(&mut self, ip: IpAddr, account: &str, now: Instant) {
        let client = client_key(ip);
        let mut forgive = 0;
        if let Some(c) = self.clients.get_mut(&client)
            && let Some(i) = c.by_account.iter().position(|(a, _)| a == account)
        {
            forgive = c.by_account.remove(i).1;
            c.gate.failures = c.gate.failures.saturating_sub(forgive);
        }
        if forgive > 0 {
            let failures = self.clients.get(&client).map_or(0, |c| c.gate.failures);
            let delay = self.delay_for(failures, self.config.free_failures);
            if let Some(c) = self.clients.get_mut(&client) {
                c.gate.open_at = c.gate.last_failure + delay;
            }
        }
        if !self.accounts.contains_key(account) && self.accounts.len() >= self.config.max_entries {
            self.evict_accounts(now);
        }
        let a = self
            .accounts
            .entry(account.to_string())
            .or_insert_with(|| AccountGate {
                gate: Gate::new(now),
                trusted: Vec::new(),
            });
        a.trusted.retain(|(ip, _)| *ip != client);
        if a.trusted.len() >= MAX_TRUSTED_PER_ACCOUNT {
            a.trusted.remove(0);
        }
        a.trusted.push((client, now));
    }

    /// Recent failures of an address (for logs and tests).
    pub fn client_failures(&self, ip: IpAddr, now: Instant) -> u32 {
        self.clients
            .get(&client_key(ip))
            .filter(|c| self.live(&c.gate, now))
            .map_or(0, |c| c.gate.failures)
    }

    /// Recent failures against an account.
    pub fn account_failures(&self, account: &str, now: Instant) -> u32 {
        self.accounts
            .get(account)
            .filter(|a| self.live(&a.gate, now))
            .map_or(0, |a| a.gate.failures)
    }

    /// Takes one of `ip`'s check-in-flight slots, if it has one left.
    pub fn begin_check(&mut self, ip: IpAddr) -> bool {
        let key = client_key(ip);
        if self.pending.get(&key).copied().unwrap_or(0) >= self.config.max_pending_per_ip {
            return false;
        }
        *self.pending.entry(key).or_insert(0) += 1;
        true
    }

    pub fn end_check(&mut self, ip: IpAddr) {
        let key = client_key(ip);
        if let Some(n) = self.pending.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                self.pending.remove(&key);
            }
        }
    }

    #[cfg(test)]
    pub fn pending_is_empty(&self) -> bool {
        self.pending.is_empty()
            && self.clients_in_flight.is_empty()
            && self.accounts_in_flight.is_empty()
    }

    /// Drops expired addresses, then if still full the oldest tenth.
    fn evict_clients(&mut self, now: Instant) {
        let expiry = self.config.expiry;
        self.clients
            .retain(|_, c| now.saturating_duration_since(c.gate.last_failure) < expiry);
        let max = self.config.max_entries;
        if self.clients.len() >= max {
            let mut times: Vec<Instant> =
                self.clients.values().map(|c| c.gate.last_failure).collect();
            let drop_n = (max / 10).max(1).min(times.len());
            let cut = *times.select_nth_unstable(drop_n - 1).1;
            self.clients.retain(|_, c| c.gate.last_failure > cut);
        }
    }

    fn evict_accounts(&mut self, now: Instant) {
        // An entry matters while its failures or its newest trust are recent.
        fn touched(a: &AccountGate) -> Instant {
            a.trusted
                .iter()
                .map(|(_, at)| *at)
                .fold(a.gate.last_failure, Instant::max)
        }
        let expiry = self.config.expiry;
        self.accounts
            .retain(|_, a| now.saturating_duration_since(touched(a)) < expiry);
        let max = self.config.max_entries;
        if self.accounts.len() >= max {
            let mut times: Vec<Instant> = self.accounts.values().map(touched).collect();
            let drop_n = (max / 10).max(1).min(times.len());
            let cut = *times.select_nth_unstable(drop_n - 1).1;
            self.accounts.retain(|_, a| touched(a) > cut);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));

    fn t() -> Throttle {
        Throttle::new(ThrottleConfig {
            max_delay: Duration::from_secs(5),
            ..Default::default()
        })
    }

    /// How many checks an attacker gets in `secs` seconds, trying every 10 ms.
    fn guesses(t: &mut Throttle, from: &[IpAddr], account: &str, secs: u64) -> u32 {
        let start = Instant::now();
        let mut checks = 0;
        for step in 0..secs * 100 {
            let now = start + Duration::from_millis(step * 10);
            let ip = from[step as usize % from.len()];
            if let Ok(check) = t.admit(ip, account, now) {
                checks += 1;
                t.failed(check, now);
            }
        }
        checks
    }

    #[test]
    fn one_address_gets_the_intended_number_of_checks() {
        let mut t = t();
        // 2 free, then closed for 1, 2, 4, 5, 5, ... s: in 20 s, 2 + 6 checks.
        let n = guesses(&mut t, &[A], "alice", 20);
        assert!((7..=8).contains(&n), "{n}");
        // Another account does not get a fresh budget from the same address.
        assert!(
            t.admit(A, "bob", Instant::now() + Duration::from_millis(19_990))
                .is_err()
        );
    }

    #[test]
    fn many_addresses_against_one_account_are_bounded_by_its_gate() {
        let mut t = t();
        let ips: Vec<IpAddr> = (0..200u32)
            .map(|i| {
                IpAddr::V6(Ipv6Addr::from(
                    (0x2001_0db8u128 << 96) | (u128::from(i) << 64),
                ))
            })
            .collect();
        // 5 free for the account, then 1, 2, 4, 5, 5 s...: in 20 s about 5 + 6.
        let n = guesses(&mut t, &ips, "alice", 20);
        assert!((10..=12).contains(&n), "{n}");
    }

    #[test]
    fn success_forgives_only_its_own_account() {
        let mut t = t();
        let now = Instant::now();
        t.record_failure(A, "bob", now);
        t.record_failure(A, "carol", now);
        t.record_failure(A, "alice", now);
        assert!(
            t.admit(A, "dave", now).is_err(),
            "3 failures close the gate"
        );
        t.record_success(A, "alice", now);
        assert_eq!(
            t.client_failures(A, now),
            2,
            "bob's and carol's failures stay"
        );
        assert!(t.admit(A, "dave", now).is_ok(), "back to 2 free failures");
        t.record_failure(A, "dave", now);
        assert!(t.admit(A, "dave", now).is_err());
    }

    #[test]
    fn the_owner_is_not_locked_out_by_an_attack_on_the_account() {
        let mut t = t();
        let now = Instant::now();
        t.record_success(B, "alice", now);
        for i in 0..10u8 {
            let attacker = IpAddr::V4(Ipv4Addr::new(203, 0, 113, i));
            t.record_failure(attacker, "alice", now);
        }
        assert!(
            t.admit(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 99)), "alice", now)
                .is_err()
        );
        assert!(t.admit(B, "alice", now).is_ok(), "a trusted address passes");
    }

    #[test]
    fn keys_expiry_and_bounds() {
        let mut t = Throttle::new(ThrottleConfig {
            expiry: Duration::from_secs(60),
            max_entries: 10,
            ..Default::default()
        });
        let now = Instant::now();
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        t.record_failure(a, "x", now);
        t.record_failure(b, "y", now);
        assert_eq!(t.client_failures(a, now), 2, "one /64");
        let mapped = IpAddr::V6(Ipv4Addr::new(203, 0, 113, 5).to_ipv6_mapped());
        t.record_failure(mapped, "z", now);
        assert_eq!(t.client_failures("203.0.113.5".parse().unwrap(), now), 1);
        assert_eq!(t.client_failures(a, now + Duration::from_secs(61)), 0);
        assert!(t.admit(a, "x", now + Duration::from_secs(61)).is_ok());
        for i in 0..100u32 {
            let ip = IpAddr::V6(Ipv6Addr::from(u128::from(i) << 64));
            t.record_failure(
                ip,
                &format!("u{i}"),
                now + Duration::from_millis(u64::from(i)),
            );
            assert!(t.clients.len() <= 10 && t.accounts.len() <= 10);
        }
        let newest = IpAddr::V6(Ipv6Addr::from(99u128 << 64));
        assert_eq!(t.client_failures(newest, now + Duration::from_secs(1)), 1);
    }

    #[test]
    fn checks_in_flight_count_against_the_gates() {
        let mut t = t();
        let now = Instant::now();
        // Two free failures: two checks may run at once, a third waits (not a failure).
        let first = t.admit(A, "alice", now).unwrap();
        let second = t.admit(A, "bob", now).unwrap();
        assert_eq!(t.admit(A, "carol", now).unwrap_err(), Refusal::Wait);
        t.failed(first, now);
        assert_eq!(t.admit(A, "carol", now).unwrap_err(), Refusal::Wait);
        t.failed(second, now);
        // Past the free failures: one at a time, and its failure closes the gate.
        let third = t.admit(A, "carol", now).unwrap();
        assert_eq!(t.admit(A, "dave", now).unwrap_err(), Refusal::Wait);
        t.failed(third, now);
        assert!(matches!(t.admit(A, "dave", now), Err(Refusal::Closed(_))));
        // A check that ends without a verdict gives its place back and counts nothing.
        let later = now + Duration::from_secs(2);
        let check = t.admit(A, "dave", later).unwrap();
        t.abandoned(check);
        assert_eq!(t.client_failures(A, later), 3);
        let check = t.admit(A, "dave", later).unwrap();
        t.succeeded(check, later);
        assert!(t.pending_is_empty());

        // The account gate: many addresses, five free failures, then one check at a time.
        let mut t = self::t();
        let checks: Vec<Check> = (0..5u8)
            .map(|i| {
                t.admit(IpAddr::V4(Ipv4Addr::new(203, 0, 113, i)), "erin", now)
                    .unwrap()
            })
            .collect();
        assert_eq!(
            t.admit(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 50)), "erin", now)
                .unwrap_err(),
            Refusal::Wait
        );
        for c in checks {
            t.failed(c, now);
        }
        let one = t
            .admit(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 51)), "erin", now)
            .unwrap();
        assert_eq!(
            t.admit(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 52)), "erin", now)
                .unwrap_err(),
            Refusal::Wait
        );
        t.failed(one, now);
        assert!(matches!(
            t.admit(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 53)), "erin", now),
            Err(Refusal::Closed(_))
        ));
    }

    #[test]
    fn pending_checks_per_address_are_capped() {
        let mut t = Throttle::new(ThrottleConfig {
            max_pending_per_ip: 2,
            ..Default::default()
        });
        assert!(t.begin_check(A) && t.begin_check(A));
        assert!(!t.begin_check(A));
        assert!(t.begin_check(B));
        t.end_check(A);
        assert!(t.begin_check(A));
        t.end_check(A);
        t.end_check(A);
        t.end_check(B);
        assert!(t.pending_is_empty());
        // Capacity is not failure.
        assert_eq!(t.client_failures(A, Instant::now()), 0);
    }
}
