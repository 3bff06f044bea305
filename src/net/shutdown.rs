//! Per-core shutdown notification. The process-wide flag is set from the signal thread; each
//! core watches it and wakes its own idle sessions, so no waker crosses threads.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

#[derive(Clone, Default)]
pub struct ShutdownSignal {
    inner: Rc<Inner>,
}

#[derive(Default)]
struct Inner {
    triggered: Cell<bool>,
    next_id: Cell<u64>,
    /// Keyed by waiter so a waiter that is dropped (its read won the race) removes itself:
    /// thousands of idle connections must not leave stale wakers behind.
    waiters: RefCell<HashMap<u64, Waker>>,
}

impl ShutdownSignal {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn trigger(&self) {
        self.inner.triggered.set(true);
        let waiters = std::mem::take(&mut *self.inner.waiters.borrow_mut());
        for (_, w) in waiters {
            w.wake();
        }
    }

    pub fn is_triggered(&self) -> bool {
        self.inner.triggered.get()
    }

    /// Resolves once [`trigger`](Self::trigger) has been called.
    pub fn wait(&self) -> ShutdownWait {
        let id = self.inner.next_id.get();
        self.inner.next_id.set(id + 1);
        ShutdownWait {
            inner: self.inner.clone(),
            id,
        }
    }
}

pub struct ShutdownWait {
    inner: Rc<Inner>,
    id: u64,
}

impl Future for ShutdownWait {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.inner.triggered.get() {
            return Poll::Ready(());
        }
        self.inner
            .waiters
            .borrow_mut()
            .insert(self.id, cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for ShutdownWait {
    fn drop(&mut self) {
        self.inner.waiters.borrow_mut().remove(&self.id);
    }
}
