//! Connection admission: a total cap and a per-IP cap per listener, checked at accept time.
//!
//! The per-IP cap counts each listener on its own, so a flood of SMTP connections from one
//! address does not lock the same address (a NAT'd office, a webmail) out of IMAP. The total
//! cap is kept below the open-files limit ([`cap_below_open_files`]) so that it, and not a
//! failing `accept`, is what turns clients away, with a reply.
//!
//! The per-IP counts are split over independently locked shards so cores accepting at the
//! same time rarely meet on one lock; nothing here is touched after a connection is admitted
//! except once more when it closes.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::Protocol;

const SHARDS: usize = 64;

/// Where a connection is counted per address: its listener and its client's address.
type Origin = (Protocol, IpAddr);

pub struct ConnectionLimits {
    max_total: usize,
    max_per_ip: usize,
    total: AtomicUsize,
    per_ip: Vec<Mutex<HashMap<Origin, usize>>>,
    hasher: std::collections::hash_map::RandomState,
}

/// Holds one admitted connection's place; released on drop.
pub struct Admission {
    limits: Arc<ConnectionLimits>,
    origin: Origin,
}

/// Descriptors kept out of the connection cap: store segments and checkpoints, listeners,
/// the control socket, DNS sockets, log and key files, and the refusal of clients over the
/// cap (each needs a descriptor for the moment it takes to say `421`).
pub const RESERVED_DESCRIPTORS: u64 = 256;

/// The total connection cap that fits under an open-files limit of `open_files`, keeping
/// `reserve` descriptors (plus the outbound connections, `outbound`) for everything else.
pub fn cap_below_open_files(configured: usize, open_files: u64, outbound: usize) -> usize {
    let reserve = RESERVED_DESCRIPTORS + outbound as u64;
    let room = open_files.saturating_sub(reserve).max(1);
    configured.min(usize::try_from(room).unwrap_or(usize::MAX))
}

impl ConnectionLimits {
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<Self> {
        Arc::new(ConnectionLimits {
            max_total,
            max_per_ip,
            total: AtomicUsize::new(0),
            per_ip: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: Default::default(),
        })
    }

    fn shard(&self, origin: &Origin) -> &Mutex<HashMap<Origin, usize>> {
        &self.per_ip[self.hasher.hash_one(origin) as usize % SHARDS]
    }

    pub fn max_total(&self) -> usize {
        self.max_total
    }

    /// Admits a connection from `ip` on `listener`, or returns `None` when a cap is reached.
    pub fn admit(self: &Arc<Self>, listener: Protocol, ip: IpAddr) -> Option<Admission> {
        if self.total.fetch_add(1, Ordering::AcqRel) >= self.max_total {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let origin = (listener, ip);
        let mut counts = self
            .shard(&origin)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let count = counts.entry(origin).or_insert(0);
        if *count >= self.max_per_ip {
            drop(counts);
            self.total.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        *count += 1;
        Some(Admission {
            limits: self.clone(),
            origin,
        })
    }

    pub fn active(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut counts = self
            .limits
            .shard(&self.origin)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(c) = counts.get_mut(&self.origin) {
            *c -= 1;
            if *c == 0 {
                counts.remove(&self.origin);
            }
        }
        drop(counts);
        self.limits.total.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMTP: Protocol = Protocol::Smtp;

    #[test]
    fn caps_total_and_per_ip_and_releases_on_drop() {
        let limits = ConnectionLimits::new(3, 2);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let a1 = limits.admit(SMTP, a).unwrap();
        let _a2 = limits.admit(SMTP, a).unwrap();
        assert!(limits.admit(SMTP, a).is_none(), "per-ip cap");
        let _b1 = limits.admit(SMTP, b).unwrap();
        assert!(limits.admit(SMTP, b).is_none(), "total cap");
        drop(a1);
        let _b2 = limits.admit(SMTP, b).expect("room again after a drop");
        assert_eq!(limits.active(), 3);
    }

    #[test]
    fn per_ip_cap_is_per_listener() {
        let limits = ConnectionLimits::new(100, 2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let _s: Vec<_> = (0..2).map(|_| limits.admit(SMTP, a).unwrap()).collect();
        assert!(limits.admit(SMTP, a).is_none());
        assert!(
            limits.admit(Protocol::Imaps, a).is_some(),
            "IMAPS unaffected"
        );
    }

    #[test]
    fn the_cap_keeps_descriptors_in_reserve() {
        assert_eq!(cap_below_open_files(20_000, 20_000, 256), 20_000 - 512);
        assert_eq!(cap_below_open_files(1000, 1_048_576, 256), 1000);
        assert_eq!(cap_below_open_files(1000, 100, 0), 1, "never zero");
    }
}
