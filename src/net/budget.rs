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

/// Returns the pages this thread has freed to the operating system.
///
/// mimalloc keeps freed pages resident for a short delay and returns them only when the thread
/// that freed them allocates again. After a burst of refused transfers an event loop may sit
/// idle holding several times the budget in freed buffers (the growth steps of the messages it
/// was receiving), so an attacker's burst would leave the resident size inflated until the next
/// client arrives. This walks the thread's heap: for rare events such as a shed transfer only.
pub fn return_freed_memory() {
    // SAFETY: mi_collect only touches the calling thread's heap and may be called at any time;
    // under another global allocator it finds nothing to collect.
    unsafe { libmimalloc_sys::mi_collect(true) }
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
