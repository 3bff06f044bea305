//! End-to-end delivery latency: IMAP IDLE watchers on the recipients' INBOX while SMTP
//! delivers; latency = SMTP `250` after DATA received → `* n EXISTS` seen by the watcher.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::client::imap::{ImapClient, Response, parse_untagged_num};
use crate::message::user_name;
use crate::runner::{FetchWork, tls_pair};
use crate::stats::Delta;
use crate::verify::{loadgen_id, our_part};

#[derive(Default, Debug)]
struct UserState {
    /// message number -> time its 250 was received, not seen by the watcher yet.
    sent: HashMap<u64, Instant>,
    /// message number -> time the watcher saw it, before its 250 was processed.
    early: HashMap<u64, Instant>,
}

/// State shared by all cores.
pub struct Shared {
    users: Mutex<HashMap<u64, UserState>>,
    /// Only messages with this run id are matched (others are counted as foreign).
    pub run_id: String,
    /// Watchers that are idling (or gave up).
    pub ready: AtomicUsize,
    /// Cores whose senders have finished.
    pub senders_done: AtomicUsize,
    pub watchers: usize,
    pub aborted: AtomicBool,
}

impl Shared {
    pub fn new(watchers: usize, run_id: String) -> Shared {
        Shared {
            users: Mutex::new(HashMap::new()),
            run_id,
            ready: AtomicUsize::new(0),
            senders_done: AtomicUsize::new(0),
            watchers,
            aborted: AtomicBool::new(false),
        }
    }

    /// A 250 was received at `t` for message `n` to `user`. Returns the latency if the
    /// watcher already saw the message (clamped at zero).
    pub fn delivered(&self, user: u64, n: u64, t: Instant) -> Option<Duration> {
        let mut m = self.users.lock().expect("e2e lock");
        let st = m.entry(user).or_default();
        match st.early.remove(&n) {
            Some(seen) => Some(seen.saturating_duration_since(t)),
            None => {
                st.sent.insert(n, t);
                None
            }
        }
    }

    /// The watcher saw message `n` in `user`'s INBOX at `t`; returns its latency once the
    /// 250 is known.
    pub fn arrived(&self, user: u64, n: u64, t: Instant) -> Option<Duration> {
        let mut m = self.users.lock().expect("e2e lock");
        let st = m.entry(user).or_default();
        match st.sent.remove(&n) {
            Some(s) => Some(t.saturating_duration_since(s)),
            None => {
                st.early.insert(n, t);
                None
            }
        }
    }

    /// Nothing outstanding for `user`.
    pub fn settled(&self, user: u64) -> bool {
        self.users
            .lock()
            .expect("e2e lock")
            .get(&user)
            .is_none_or(|s| s.sent.is_empty())
    }

    /// (accepted but never seen, seen but never accepted) over all users.
    pub fn leftovers(&self) -> (u64, u64) {
        let m = self.users.lock().expect("e2e lock");
        m.values().fold((0, 0), |(a, b), s| {
            (a + s.sent.len() as u64, b + s.early.len() as u64)
        })
    }
}

fn exists_of(r: &Response) -> Option<u32> {
    match parse_untagged_num(&r.text) {
        Some((n, kw)) if kw.eq_ignore_ascii_case(b"EXISTS") => Some(n),
        _ => None,
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
        c.keep_literals = true;
        c.login(&name, &w.password).await?;
        let exists = c.select("INBOX").await?;
        let tag = c.idle_start().await?;
        Ok::<_, crate::client::ClientError>((c, exists, tag))
    };
    let (mut c, exists, tag) = match setup.await {
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
    let mut tag = tag;
    let mut fetched = exists;
    'outer: loop {
        let r = match c.read_response().await {
            Ok(r) => r,
            Err(_) => break, // shut down by the coordinator (or a real error)
        };
        let Some(new) = exists_of(&r) else { continue };
        if new <= fetched {
            fetched = new;
            continue;
        }
        // New mail: leave IDLE, identify the new messages by their X-Loadgen-Id, re-IDLE.
        let mut seen_at = Instant::now();
        let mut top = new;
        let done = c
            .idle_done_with(&tag, |r| {
                if let Some(n) = exists_of(r) {
                    top = top.max(n);
                }
            })
            .await;
        if done.is_err() {
            break;
        }
        while top > fetched {
            let (lo, hi) = (fetched + 1, top);
            let mut ids = Vec::new();
            let mut more = hi;
            let cmd = format!("FETCH {lo}:{hi} (BODY.PEEK[HEADER.FIELDS (X-Loadgen-Id)])");
            let res = c
                .command(&cmd, |r| {
                    if let Some(n) = exists_of(r) {
                        more = more.max(n);
                    } else if let Some((_, kw)) = parse_untagged_num(&r.text)
                        && kw.eq_ignore_ascii_case(b"FETCH")
                    {
                        let id = r.literals.iter().find_map(|l| {
                            our_part(l)
                                .and_then(loadgen_id)
                                .map(|(run, n)| (run.to_string(), n))
                        });
                        ids.push(id);
                    }
                })
                .await;
            if res.is_err() {
                break 'outer;
            }
            let mut l = local.borrow_mut();
            for id in ids {
                match id {
                    Some((run, n)) if run == shared.run_id => {
                        if let Some(d) = shared.arrived(me.user, n, seen_at) {
                            l.record_latency(d);
                        }
                    }
                    _ => l.note("foreign-message".into()),
                }
            }
            drop(l);
            fetched = hi;
            if more > top {
                top = more;
                seen_at = Instant::now();
            }
        }
        match c.idle_start().await {
            Ok(t) => tag = t,
            Err(_) => break,
        }
    }
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
        let s = Shared::new(1, "r".into());
        let t = Instant::now();
        assert_eq!(s.delivered(1, 10, t), None);
        assert_eq!(s.delivered(1, 11, t + Duration::from_millis(1)), None);
        assert_eq!(
            s.arrived(1, 11, t + Duration::from_millis(5)),
            Some(Duration::from_millis(4))
        );
        assert!(!s.settled(1));
        // seen before the 250 was processed
        assert_eq!(s.arrived(2, 7, t), None);
        assert_eq!(
            s.delivered(2, 7, t + Duration::from_millis(3)),
            Some(Duration::ZERO)
        );
        assert_eq!(s.leftovers(), (1, 0));
        assert_eq!(
            s.arrived(1, 10, t + Duration::from_millis(9)),
            Some(Duration::from_millis(9))
        );
        assert!(s.settled(1));
        assert_eq!(s.arrived(3, 1, t), None);
        assert_eq!(s.leftovers(), (0, 1));
    }
}
