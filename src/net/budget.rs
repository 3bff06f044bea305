//! The memory that all unfinished transfers (message bodies still arriving) may hold together.
//!
//! A message is received into memory before it is stored, so without a shared bound a few
//! hundred unauthenticated clients, each sending most of a maximum-size message and then
//! stalling, would exhaust the machine. Each connection reserves what its session holds as the
//! bytes arrive; when the budget is spent, that session drops its message and answers a
//! temporary failure (`452 4.3.1`) at its end instead.

use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug)]
pub struct TransferBudget {
    limit: usize,
    used: AtomicUsize,
}

impl TransferBudget {
    pub fn new(limit: usize) -> Self {
        TransferBudget {
            limit,
            used: AtomicUsize::new(0),
        }
    }

    /// Takes `bytes` from the budget, or nothing if that would pass the limit.
    pub fn try_reserve(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&total| total <= self.limit)
            })
            .is_ok()
    }

    pub fn release(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// Bytes reserved right now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_stop_at_the_limit_and_come_back() {
        let budget = TransferBudget::new(100);
        assert!(budget.try_reserve(60));
        assert!(!budget.try_reserve(41), "past the limit");
        assert!(budget.try_reserve(40));
        assert_eq!(budget.used(), 100);
        budget.release(60);
        assert!(budget.try_reserve(50));
        assert!(!budget.try_reserve(usize::MAX), "no overflow");
        assert_eq!(budget.used(), 90);
    }
}
