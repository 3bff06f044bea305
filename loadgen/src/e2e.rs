//! End-to-end delivery latency: IMAP IDLE watchers on the recipients' INBOX while SMTP
//! delivers; latency = SMTP `250` after DATA received → `* n EXISTS` seen by the watcher.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::client::imap::{ImapClient, Kind, parse_untagged_num};
use crate::message::user_name;
use crate::runner::{FetchWork, tls_pair};
use crate::stats::Delta;

#[derive(Default, Debug)]
struct UserState {
    /// 250 timestamps not matched by an EXISTS yet.
    sent: VecDeque<Instant>,
    /// EXISTS increments seen before the matching 250 was processed.
    early: VecDeque<Instant>,
}

/// State shared by all cores.
pub struct Shared {
    users: Mutex<HashMap<u64, UserState>>,
    /// Watchers that are idling (or gave up).
    pub ready: AtomicUsize,
    /// Cores whose senders have finished.
    pub senders_done: AtomicUsize,
    pub watchers: usize,
    pub aborted: AtomicBool,
}

impl Shared {
    pub fn new(watchers: usize) -> Shared {
        Shared {
            users: Mutex::new(HashMap::new()),
            ready: AtomicUsize::new(0),
            senders_done: AtomicUsize::new(0),
            watchers,
            aborted: AtomicBool::new(false),
        }
    }

    /// A 250 was received for a message to `user` at `t`. Returns a latency if the EXISTS
    /// already arrived (clamped at zero).
    pub fn delivered(&self, user: u64, t: Instant) -> Option<Duration> {
        let mut m = self.users.lock().expect("e2e lock");
        let st = m.entry(user).or_default();
        match st.early.pop_front() {
            Some(seen) => Some(seen.saturating_duration_since(t)),
            None => {
                st.sent.push_back(t);
                None
            }
        }
    }

    /// `n` new messages appeared in `user`'s INBOX at `t`; returns the matched latencies.
    pub fn arrived(&self, user: u64, n: u64, t: Instant) -> Vec<Duration> {
        let mut m = self.users.lock().expect("e2e lock");
        let st = m.entry(user).or_default();
        let mut out = Vec::new();
        for _ in 0..n {
            match st.sent.pop_front() {
                Some(s) => out.push(t.saturating_duration_since(s)),
                None => st.early.push_back(t),
            }
        }
        out
    }

    /// Nothing outstanding for `user`.
    pub fn settled(&self, user: u64) -> bool {
        self.users
            .lock()
            .expect("e2e lock")
            .get(&user)
            .is_none_or(|s| s.sent.is_empty())
    }

    /// (accepted but never seen, seen but never matched) over all users.
    pub fn leftovers(&self) -> (u64, u64) {
        let m = self.users.lock().expect("e2e lock");
        m.values().fold((0, 0), |(a, b), s| {
            (a + s.sent.len() as u64, b + s.early.len() as u64)
        })
    }
}

struct Watch {
    user: u64,
    fd: std::cell::Cell<Option<std::os::fd::RawFd>>,
    done: std::cell::Cell<bool>,
}

/// Watch one account: LOGIN, SELECT INBOX, IDLE, and turn EXISTS increments into latencies.
async fn watcher(
    w: std::sync::Arc<FetchWork>,
    shared: std::sync::Arc<Shared>,
    me: Rc<Watch>,
    timeout: Duration,
    long: Duration,
    local: Rc<RefCell<Delta>>,
) {
    let name = user_name(&w.user_pattern, me.user);
    let setup = async {
        let mut c = ImapClient::connect(w.addr, timeout, w.imap_security, tls_pair(&w.tls)).await?;
        c.login(&name, &w.password).await?;
        let exists = c.select("INBOX").await?;
        let tag = c.idle_start().await?;
        Ok::<_, crate::client::ClientError>((c, exists, tag))
    };
    let (mut c, mut exists, tag) = match setup.await {
        Ok(x) => x,
        Err(e) => {
            local.borrow_mut().note(format!("watch-{}", e.key()));
            me.done.set(true);
            shared.ready.fetch_add(1, Ordering::SeqCst);
            return;
        }
    };
    me.fd.set(Some(c.conn.raw_fd()));
    c.conn.set_timeout(long);
    shared.ready.fetch_add(1, Ordering::SeqCst);
    loop {
        let r = match c.read_response().await {
            Ok(r) => r,
            Err(_) => break, // shut down by the coordinator (or a real error)
        };
        if r.kind != Kind::Untagged {
            continue;
        }
        if let Some((n, kw)) = parse_untagged_num(&r.text)
            && kw.eq_ignore_ascii_case(b"EXISTS")
        {
            let now = Instant::now();
            if n as u64 > exists as u64 {
                let lat = shared.arrived(me.user, n as u64 - exists as u64, now);
                let mut l = local.borrow_mut();
                for d in lat {
                    l.record_latency(d);
                }
            }
            exists = n;
        }
    }
    let _ = tag;
    me.done.set(true);
}

/// Per-core e2e driver: start the watchers for this core's accounts, run `senders` once all
/// watchers (on every core) idle, then end each watcher once its messages have all been seen
/// (or `wait` after the senders finished).
#[allow(clippy::too_many_arguments)]
pub async fn core_main<F: std::future::Future<Output = ()>>(
    core: usize,
    cores: usize,
    w: std::sync::Arc<FetchWork>,
    shared: std::sync::Arc<Shared>,
    timeout: Duration,
    wait: Duration,
    local: Rc<RefCell<Delta>>,
    senders: impl FnOnce() -> F,
) {
    let long = Duration::from_secs(24 * 3600);
    let mut watches = Vec::new();
    let mut handles = Vec::new();
    for user in (1..=w.users).filter(|u| (*u as usize - 1) % cores == core) {
        let me = Rc::new(Watch {
            user,
            fd: std::cell::Cell::new(None),
            done: std::cell::Cell::new(false),
        });
        watches.push(me.clone());
        handles.push(monoio::spawn(watcher(
            w.clone(),
            shared.clone(),
            me,
            timeout,
            long,
            local.clone(),
        )));
    }
    let t0 = Instant::now();
    while shared.ready.load(Ordering::SeqCst) < shared.watchers {
        if t0.elapsed() > timeout {
            eprintln!("loadgen e2e: watchers not ready after {timeout:?}; starting anyway");
            break;
        }
        monoio::time::sleep(Duration::from_millis(10)).await;
    }
    senders().await;
    shared.senders_done.fetch_add(1, Ordering::SeqCst);
    while shared.senders_done.load(Ordering::SeqCst) < cores {
        monoio::time::sleep(Duration::from_millis(20)).await;
    }
    let deadline = Instant::now() + wait;
    loop {
        let mut open = 0;
        for me in &watches {
            if me.done.get() {
                continue;
            }
            if shared.settled(me.user) || Instant::now() >= deadline {
                if let Some(fd) = me.fd.take() {
                    // SAFETY: shutdown on a socket fd owned by a live watcher ends its read.
                    unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
                }
            } else {
                open += 1;
            }
        }
        if open == 0 {
            break;
        }
        monoio::time::sleep(Duration::from_millis(20)).await;
    }
    for h in handles {
        h.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching() {
        let s = Shared::new(1);
        let t = Instant::now();
        assert_eq!(s.delivered(1, t), None);
        assert_eq!(s.delivered(1, t + Duration::from_millis(1)), None);
        let l = s.arrived(1, 1, t + Duration::from_millis(5));
        assert_eq!(l, vec![Duration::from_millis(5)]);
        assert!(!s.settled(1));
        // EXISTS before the 250 was processed
        assert!(s.arrived(2, 1, t).is_empty());
        assert_eq!(
            s.delivered(2, t + Duration::from_millis(3)),
            Some(Duration::ZERO)
        );
        assert_eq!(s.leftovers(), (1, 0));
        let _ = s.arrived(1, 2, t + Duration::from_millis(9));
        assert!(s.settled(1));
        assert_eq!(s.leftovers(), (0, 1));
    }
}
