//! Thread-per-core workers: one pinned monoio runtime per core, closed/open-loop job
//! scheduling, per-second stats aggregation over a crossbeam channel.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use monoio_rustls::TlsConnector;
use rustls::pki_types::ServerName;

use crate::client::imap::{self, ImapClient};
use crate::client::pop3::{self, Pop3Client};
use crate::client::smtp::{self, SmtpClient};
use crate::client::{ClientError, Result as CResult};
use crate::message::{Generator, rcpt_users, user_name};
use crate::stats::{Delta, Latency, Second};

/// Set by the first SIGINT: no new jobs are started, the run ends and the summary is printed.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
    // a second Ctrl-C kills the process the usual way
    // SAFETY: signal(2) is async-signal-safe.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_DFL) };
}

/// Install the graceful Ctrl-C handler.
pub fn install_sigint() {
    // SAFETY: the handler only touches an atomic and calls signal(2).
    unsafe { libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t) };
}

/// Scheduling parameters shared by all workers.
pub struct Plan {
    pub cores: usize,
    pub pin: bool,
    pub connections: usize,
    pub rate: Option<f64>,
    pub count: Option<u64>,
    pub duration: Option<Duration>,
    pub timeout: Duration,
    pub quiet: bool,
    next: AtomicU64,
    stop: AtomicBool,
    start: OnceLock<Instant>,
}

impl Plan {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cores: usize,
        pin: bool,
        connections: usize,
        rate: Option<f64>,
        count: Option<u64>,
        duration: Option<Duration>,
        timeout: Duration,
        quiet: bool,
    ) -> Plan {
        let count = if count.is_none() && duration.is_none() {
            Some(1000)
        } else {
            count
        };
        Plan {
            cores: cores.max(1),
            pin,
            connections: connections.max(1),
            rate: rate.filter(|r| *r > 0.0),
            count,
            duration,
            timeout,
            quiet,
            next: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            start: OnceLock::new(),
        }
    }

    fn start(&self) -> Instant {
        *self.start.get().expect("plan started")
    }

    /// Take the next job: its number and intended start time (open loop) or now.
    pub fn next_job(&self) -> Option<(u64, Instant)> {
        if self.stop.load(Ordering::Relaxed) || INTERRUPTED.load(Ordering::Relaxed) {
            return None;
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        if self.count.is_some_and(|c| n >= c) {
            return None;
        }
        let start = self.start();
        let at = match self.rate {
            Some(r) => start + Duration::from_secs_f64(n as f64 / r),
            None => Instant::now(),
        };
        if let Some(d) = self.duration
            && at.duration_since(start) >= d
        {
            self.stop.store(true, Ordering::Relaxed);
            return None;
        }
        Some((n, at))
    }

    /// Open loop: sleep until the intended start; returns the time latency is measured from.
    async fn pace(&self, at: Instant) -> Instant {
        if self.rate.is_some() {
            let now = Instant::now();
            if at > now {
                monoio::time::sleep(at - now).await;
            }
            at
        } else {
            Instant::now()
        }
    }
}

/// TLS settings for a workload.
#[derive(Clone)]
pub struct Tls {
    pub connector: TlsConnector,
    pub name: ServerName<'static>,
}

pub struct SmtpWork {
    pub addr: SocketAddr,
    pub security: smtp::Security,
    pub tls: Option<Tls>,
    pub ehlo: String,
    pub from: String,
    /// Fixed credentials, or None with `auth_each` to log in as the first recipient.
    pub auth: Option<(String, String)>,
    pub auth_each: bool,
    pub pipelining: bool,
    pub msgs_per_conn: u64,
    pub rcpts: u32,
    pub users: u64,
    pub user_pattern: String,
    pub password: String,
    pub generator: Generator,
    pub track_delivered: bool,
    /// e2e mode: report each 250 to the watchers' shared state instead of recording SMTP latency.
    pub e2e: Option<Arc<crate::e2e::Shared>>,
}

pub struct FetchWork {
    pub addr: SocketAddr,
    pub tls: Option<Tls>,
    pub users: u64,
    pub user_pattern: String,
    pub password: String,
    pub pop3_security: pop3::Security,
    pub imap_security: imap::Security,
    pub dele: bool,
    pub headers_only: bool,
    pub store_flags: bool,
    pub expunge: bool,
}

#[derive(Clone)]
pub enum Work {
    Smtp(Arc<SmtpWork>),
    Pop3(Arc<FetchWork>),
    Imap(Arc<FetchWork>),
    /// SMTP senders plus IMAP IDLE watchers (one per account).
    E2e {
        smtp: Arc<SmtpWork>,
        watch: Arc<FetchWork>,
        shared: Arc<crate::e2e::Shared>,
        wait: Duration,
    },
}

impl Work {
    pub fn job_name(&self) -> &'static str {
        match self {
            Work::Smtp(_) | Work::E2e { .. } => "message",
            _ => "session",
        }
    }
}

enum Msg {
    Delta(Box<Delta>),
    Done { legacy: bool },
}

type Local = Rc<RefCell<Delta>>;

/// Everything the main thread collected.
pub struct Outcome {
    pub total: Delta,
    pub timeline: Vec<Second>,
    pub delivered: Vec<(u64, Vec<u64>)>,
    pub wall: Duration,
    pub legacy: bool,
}

pub(crate) fn tls_pair(t: &Option<Tls>) -> Option<(&TlsConnector, ServerName<'static>)> {
    t.as_ref().map(|t| (&t.connector, t.name.clone()))
}

async fn smtp_connect(w: &SmtpWork, plan: &Plan, first_user: u64) -> CResult<SmtpClient> {
    let auth_each;
    let auth = if w.auth_each {
        auth_each = (user_name(&w.user_pattern, first_user), w.password.clone());
        Some((auth_each.0.as_str(), auth_each.1.as_str()))
    } else {
        w.auth.as_ref().map(|(u, p)| (u.as_str(), p.as_str()))
    };
    SmtpClient::connect(
        w.addr,
        plan.timeout,
        w.security,
        tls_pair(&w.tls),
        &w.ehlo,
        auth,
    )
    .await
}

/// The sender of a connection's messages: the account it authenticated as (servers refuse
/// other senders from an authenticated client), else `--from`.
fn sender_for(w: &SmtpWork, first_user: u64) -> String {
    if w.auth_each {
        user_name(&w.user_pattern, first_user)
    } else if let Some((user, _)) = &w.auth {
        user.clone()
    } else {
        w.from.clone()
    }
}

async fn smtp_conn_task(plan: Arc<Plan>, w: Arc<SmtpWork>, local: Local) {
    let mut client: Option<SmtpClient> = None;
    let mut sender = w.from.clone();
    let mut used = 0u64;
    while let Some((n, at)) = plan.next_job() {
        let users: Vec<u64> = rcpt_users(n, w.rcpts, w.users).collect();
        let rcpts: Vec<String> = users
            .iter()
            .map(|&u| user_name(&w.user_pattern, u))
            .collect();
        if client.is_none() {
            sender = sender_for(&w, users[0]);
        }
        let msg = w.generator.build_from(n, &rcpts, &sender);
        let t0 = plan.pace(at).await;
        if client.is_none() {
            match smtp_connect(&w, &plan, users[0]).await {
                Ok(c) => {
                    client = Some(c);
                    used = 0;
                }
                Err(e) => {
                    local.borrow_mut().record_err(e.key());
                    continue;
                }
            }
        }
        let Some(c) = client.as_mut() else { continue };
        used += 1;
        let last = used >= w.msgs_per_conn || plan.count.is_some_and(|cnt| n + 1 >= cnt);
        match c
            .send_message(&sender, &rcpts, &msg, w.pipelining, last)
            .await
        {
            Ok(sent) => {
                {
                    let mut l = local.borrow_mut();
                    match &w.e2e {
                        Some(sh) => {
                            let now = Instant::now();
                            l.record_count(1, msg.len() as u64);
                            for &i in &sent.accepted {
                                if let Some(d) = sh.delivered(users[i], n, now) {
                                    l.record_latency(d);
                                }
                            }
                        }
                        None => l.record_ok(t0.elapsed(), 1, msg.len() as u64),
                    }
                    for code in &sent.rejected {
                        l.note(format!("rcpt-{code}"));
                    }
                    if w.track_delivered {
                        l.delivered
                            .push((n, sent.accepted.iter().map(|&i| users[i]).collect()));
                    }
                }
                if last {
                    let mut c = client.take().expect("client");
                    if !c.caps.pipelining {
                        c.quit().await;
                    }
                }
            }
            Err(e) => {
                local.borrow_mut().record_err(e.key());
                match e {
                    ClientError::Reply { .. } if !last => {}
                    ClientError::Reply { .. } => {
                        if let Some(mut c) = client.take() {
                            c.quit().await;
                        }
                    }
                    _ => client = None,
                }
            }
        }
    }
    if let Some(mut c) = client {
        c.quit().await;
    }
}

/// One POP3 session: login, STAT, RETR all (+DELE), QUIT. Returns (messages, bytes).
pub async fn pop3_session(
    w: &FetchWork,
    timeout: Duration,
    user: &str,
    mut sink: impl FnMut(&[u8]),
) -> CResult<(u64, u64)> {
    let mut c = Pop3Client::connect(w.addr, timeout, w.pop3_security, tls_pair(&w.tls)).await?;
    c.login(user, &w.password).await?;
    let (count, _) = c.stat().await?;
    let mut buf = Vec::with_capacity(16 * 1024);
    let (mut msgs, mut bytes) = (0, 0);
    for i in 1..=count {
        c.retr(i, &mut buf).await?;
        msgs += 1;
        bytes += buf.len() as u64;
        sink(&buf);
        if w.dele {
            c.dele(i).await?;
        }
    }
    c.quit().await?;
    Ok((msgs, bytes))
}

/// One IMAP session: LOGIN, SELECT INBOX, UID FETCH, optional STORE/EXPUNGE, LOGOUT.
pub async fn imap_session(
    w: &FetchWork,
    timeout: Duration,
    user: &str,
    keep: bool,
    mut sink: impl FnMut(&imap::Response),
) -> CResult<(u64, u64)> {
    let mut c = ImapClient::connect(w.addr, timeout, w.imap_security, tls_pair(&w.tls)).await?;
    c.keep_literals = keep;
    c.login(user, &w.password).await?;
    let exists = c.select("INBOX").await?;
    let (mut msgs, mut bytes) = (0u64, 0u64);
    if exists > 0 {
        let cmd = if w.headers_only {
            "UID FETCH 1:* (UID FLAGS RFC822.SIZE ENVELOPE)"
        } else {
            "UID FETCH 1:* (UID BODY.PEEK[])"
        };
        let headers_only = w.headers_only;
        c.fetch(cmd, |r| {
            msgs += 1;
            bytes += if headers_only {
                r.text.len() as u64 + r.literal_sizes.iter().sum::<usize>() as u64
            } else {
                r.literal_sizes.iter().sum::<usize>() as u64
            };
            sink(r);
        })
        .await?;
        if w.store_flags {
            c.command("UID STORE 1:* +FLAGS.SILENT (\\Seen)", |_| {})
                .await?;
        }
        if w.expunge {
            c.command("UID STORE 1:* +FLAGS.SILENT (\\Deleted)", |_| {})
                .await?;
            c.command("EXPUNGE", |_| {}).await?;
        }
    }
    c.logout().await?;
    Ok((msgs, bytes))
}

async fn fetch_conn_task(plan: Arc<Plan>, w: Arc<FetchWork>, imap: bool, local: Local) {
    while let Some((n, at)) = plan.next_job() {
        let user = user_name(&w.user_pattern, n % w.users.max(1) + 1);
        let t0 = plan.pace(at).await;
        let r = if imap {
            imap_session(&w, plan.timeout, &user, false, |_| {}).await
        } else {
            pop3_session(&w, plan.timeout, &user, |_| {}).await
        };
        match r {
            Ok((msgs, bytes)) => local.borrow_mut().record_ok(t0.elapsed(), msgs, bytes),
            Err(e) => local.borrow_mut().record_err(e.key()),
        }
    }
}

fn worker(
    core: usize,
    core_id: Option<core_affinity::CoreId>,
    plan: Arc<Plan>,
    work: Work,
    tx: Sender<Msg>,
) {
    if let Some(id) = core_id {
        let _ = core_affinity::set_for_current(id);
    }
    let conns = (plan.connections + plan.cores - 1 - core) / plan.cores;
    let rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .with_entries(1024)
        .enable_timer()
        .build();
    let mut rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadgen: core {core}: cannot build runtime: {e}");
            let _ = tx.send(Msg::Done { legacy: true });
            return;
        }
    };
    let tx2 = tx.clone();
    let legacy = rt.block_on(async move {
        let local: Local = Rc::new(RefCell::new(Delta::default()));
        let done = Rc::new(Cell::new(false));
        {
            let (local, done, tx) = (local.clone(), done.clone(), tx2.clone());
            monoio::spawn(async move {
                loop {
                    monoio::time::sleep(Duration::from_millis(1000)).await;
                    if done.get() {
                        break;
                    }
                    let d = std::mem::take(&mut *local.borrow_mut());
                    if !d.is_empty() {
                        let _ = tx.send(Msg::Delta(Box::new(d)));
                    }
                }
            });
        }
        let spawn_all = |work: &Work| {
            let mut handles = Vec::with_capacity(conns);
            for _ in 0..conns {
                let (plan, local) = (plan.clone(), local.clone());
                handles.push(match work {
                    Work::Smtp(w) | Work::E2e { smtp: w, .. } => {
                        monoio::spawn(smtp_conn_task(plan, w.clone(), local))
                    }
                    Work::Pop3(w) => monoio::spawn(fetch_conn_task(plan, w.clone(), false, local)),
                    Work::Imap(w) => monoio::spawn(fetch_conn_task(plan, w.clone(), true, local)),
                });
            }
            handles
        };
        match &work {
            Work::E2e {
                watch,
                shared,
                wait,
                ..
            } => {
                let senders = || {
                    let handles = spawn_all(&work);
                    async move {
                        for h in handles {
                            h.await;
                        }
                    }
                };
                crate::e2e::core_main(
                    core,
                    plan.cores,
                    watch.clone(),
                    shared.clone(),
                    plan.timeout,
                    *wait,
                    local.clone(),
                    senders,
                )
                .await;
            }
            _ => {
                for h in spawn_all(&work) {
                    h.await;
                }
            }
        }
        done.set(true);
        let d = std::mem::take(&mut *local.borrow_mut());
        if !d.is_empty() {
            let _ = tx2.send(Msg::Delta(Box::new(d)));
        }
        monoio::utils::is_legacy()
    });
    let _ = tx.send(Msg::Done { legacy });
}

fn fmt_ms(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}

/// Run the workload to completion and aggregate the results.
pub fn run(plan: Arc<Plan>, work: Work) -> Outcome {
    let (tx, rx): (Sender<Msg>, Receiver<Msg>) = crossbeam_channel::unbounded();
    let core_ids = if plan.pin {
        core_affinity::get_core_ids().unwrap_or_default()
    } else {
        vec![]
    };
    let start = Instant::now();
    let _ = plan.start.set(start);
    let mut threads = vec![];
    for core in 0..plan.cores {
        let id = if core_ids.is_empty() {
            None
        } else {
            Some(core_ids[core % core_ids.len()])
        };
        let (plan, work, tx) = (plan.clone(), work.clone(), tx.clone());
        threads.push(
            std::thread::Builder::new()
                .name(format!("loadgen-{core}"))
                .spawn(move || worker(core, id, plan, work, tx))
                .expect("spawn worker"),
        );
    }
    drop(tx);
    let unit = match work {
        Work::Smtp(_) | Work::E2e { .. } => "msg/s",
        _ => "sess/s",
    };
    let mut total = Delta::default();
    let mut cur = Delta::default();
    let mut timeline = Vec::new();
    let mut delivered = Vec::new();
    let mut done = 0;
    let mut legacy = false;
    let mut tick = 1u64;
    let push_second = |t: u64,
                       cur: &Delta,
                       timeline: &mut Vec<Second>,
                       total: &Delta,
                       quiet: bool| {
        let l = Latency::from_hist(&cur.hist);
        timeline.push(Second {
            t,
            ok: cur.ok,
            failed: cur.failed,
            msgs: cur.msgs,
            bytes: cur.bytes,
            p50_us: l.p50_us,
            p99_us: l.p99_us,
        });
        if !quiet {
            eprintln!(
                "[{t:>4}s] {:>8} {unit}  {:>7.2} MB/s  total {:>9}  errors {:>6}  p50 {:>10}  p99 {:>10}",
                cur.ok,
                cur.bytes as f64 / 1e6,
                total.ok,
                total.failed,
                fmt_ms(l.p50_us),
                fmt_ms(l.p99_us)
            );
        }
    };
    while done < plan.cores {
        let deadline = start + Duration::from_secs(tick);
        match rx.recv_deadline(deadline) {
            Ok(Msg::Delta(d)) => {
                total.merge(&d);
                cur.merge(&d);
                delivered.extend(d.delivered);
            }
            Ok(Msg::Done { legacy: l }) => {
                done += 1;
                legacy |= l;
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                push_second(tick, &cur, &mut timeline, &total, plan.quiet);
                cur = Delta::default();
                tick += 1;
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        }
    }
    let wall = start.elapsed();
    if !cur.is_empty() {
        push_second(tick, &cur, &mut timeline, &total, plan.quiet);
    }
    for t in threads {
        let _ = t.join();
    }
    Outcome {
        total,
        timeline,
        delivered,
        wall,
        legacy,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_bounds() {
        let p = Plan::new(1, false, 1, None, None, None, Duration::from_secs(1), true);
        let _ = p.start.set(Instant::now());
        let mut n = 0;
        while p.next_job().is_some() {
            n += 1;
        }
        assert_eq!(n, 1000);
        let p = Plan::new(
            1,
            false,
            1,
            Some(100.0),
            Some(10),
            None,
            Duration::from_secs(1),
            true,
        );
        let s = Instant::now();
        let _ = p.start.set(s);
        let times: Vec<_> = std::iter::from_fn(|| p.next_job()).collect();
        assert_eq!(times.len(), 10);
        assert_eq!(times[5].1 - s, Duration::from_millis(50));
        let p = Plan::new(
            1,
            false,
            1,
            Some(10.0),
            None,
            Some(Duration::from_secs(2)),
            Duration::from_secs(1),
            true,
        );
        let _ = p.start.set(Instant::now());
        assert_eq!(std::iter::from_fn(|| p.next_job()).count(), 20);
    }
}
