//! Connection admission: a total cap and a per-IP cap, checked at accept time.
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

const SHARDS: usize = 64;

pub struct ConnectionLimits {
    max_total: usize,
    max_per_ip: usize,
    total: AtomicUsize,
    per_ip: Vec<Mutex<HashMap<IpAddr, usize>>>,
    hasher: std::collections::hash_map::RandomState,
}

/// Holds one admitted connection's place; released on drop.
pub struct Admission {
    limits: Arc<ConnectionLimits>,
    ip: IpAddr,
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

    fn shard(&self, ip: &IpAddr) -> &Mutex<HashMap<IpAddr, usize>> {
        &self.per_ip[self.hasher.hash_one(ip) as usize % SHARDS]
    }

    /// Admits a connection from `ip`, or returns `None` when a cap is reached.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Admission> {
        if self.total.fetch_add(1, Ordering::AcqRel) >= self.max_total {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let mut counts = self.shard(&ip).lock().unwrap_or_else(|p| p.into_inner());
        let count = counts.entry(ip).or_insert(0);
        if *count >= self.max_per_ip {
            drop(counts);
            self.total.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        *count += 1;
        Some(Admission {
            limits: self.clone(),
            ip,
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
            .shard(&self.ip)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(c) = counts.get_mut(&self.ip) {
            *c -= 1;
            if *c == 0 {
                counts.remove(&self.ip);
            }
        }
        drop(counts);
        self.limits.total.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_total_and_per_ip_and_releases_on_drop() {
        let limits = ConnectionLimits::new(3, 2);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let a1 = limits.admit(a).unwrap();
        let _a2 = limits.admit(a).unwrap();
        assert!(limits.admit(a).is_none(), "per-ip cap");
        let _b1 = limits.admit(b).unwrap();
        assert!(limits.admit(b).is_none(), "total cap");
        drop(a1);
        let _b2 = limits.admit(b).expect("room again after a drop");
        assert_eq!(limits.active(), 3);
    }
}
