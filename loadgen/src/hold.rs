//! `loadgen hold`: open many IMAP connections (LOGIN, SELECT INBOX, IDLE), hold them idle,
//! and measure what an idle connection costs the server (VmRSS of `--pid` before the first
//! connection and once every connection idles).
//!
//! While holding, nothing is read: untagged responses the server pushes (EXISTS, keep-alive
//! `* OK`) wait in the socket and are read after `DONE`, so no read is ever cancelled and the
//! client does no work per idle connection. A connection the server dropped shows up as an
//! error on `DONE`.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::client::imap::{ImapClient, parse_untagged_num};
use crate::message::user_name;
use crate::runner::{FetchWork, INTERRUPTED, tls_pair};
use crate::stats::{Latency, new_hist};

/// Parameters of a hold run.
pub struct HoldPlan {
    pub connections: usize,
    pub cores: usize,
    pub pin: bool,
    /// Per operation (connect, each command) while setting up and tearing down.
    pub timeout: Duration,
    pub hold: Duration,
    pub ramp_rate: f64,
    pub pid: Option<u32>,
    pub quiet: bool,
}

/// Memory figures from `/proc/PID/status`, in KiB.
#[derive(Serialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcMem {
    pub vm_rss_kib: u64,
    pub vm_hwm_kib: u64,
    pub rss_anon_kib: u64,
    pub threads: u64,
}

/// The value of a `Key:   1234 kB` (or plain number) line of `/proc/PID/status`.
pub fn status_field(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        if k != key {
            return None;
        }
        let mut it = v.split_whitespace();
        let n: u64 = it.next()?.parse().ok()?;
        match it.next() {
            None | Some("kB") => Some(n),
            Some(_) => None,
        }
    })
}

/// Parse the memory lines of a `/proc/PID/status` text (VmRSS is required).
pub fn parse_status(status: &str) -> Option<ProcMem> {
    Some(ProcMem {
        vm_rss_kib: status_field(status, "VmRSS")?,
        vm_hwm_kib: status_field(status, "VmHWM").unwrap_or(0),
        rss_anon_kib: status_field(status, "RssAnon").unwrap_or(0),
        threads: status_field(status, "Threads").unwrap_or(0),
    })
}

/// Read `/proc/PID/status` (`None` = this process).
pub fn proc_mem(pid: Option<u32>) -> Result<ProcMem, String> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/status"),
        None => "/proc/self/status".into(),
    };
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    parse_status(&text).ok_or_else(|| format!("{path}: no VmRSS line"))
}

/// Raise the soft RLIMIT_NOFILE to the hard limit; returns (soft, hard) afterwards.
pub fn raise_nofile() -> Result<(u64, u64), String> {
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(format!(
            "getrlimit(NOFILE): {}",
            std::io::Error::last_os_error()
        ));
    }
    let mut target = lim.rlim_max;
    if target == libc::RLIM_INFINITY {
        // NOFILE cannot be unlimited: the kernel caps it at fs.nr_open
        target = std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(1 << 20);
    }
    if lim.rlim_cur < target {
        lim.rlim_cur = target;
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(format!(
                "setrlimit(NOFILE, {}): {}",
                target,
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok((lim.rlim_cur as u64, lim.rlim_max as u64))
}

/// (after - before) / n in KiB, None without connections.
pub fn per_conn_kib(before: u64, after: u64, n: u64) -> Option<f64> {
    (n > 0).then(|| (after as f64 - before as f64) / n as f64)
}

#[derive(Serialize, Clone, Debug, Default)]
pub struct ServerMem {
    pub pid: u32,
    /// Before the first connection.
    pub before: ProcMem,
    /// As soon as every connection idles (or failed).
    pub idle: ProcMem,
    /// At the end of the hold, before DONE.
    pub end_of_hold: ProcMem,
    /// (idle.VmRSS - before.VmRSS) / established connections.
    pub kib_per_conn: Option<f64>,
    /// Same with the end-of-hold reading (growth while idle shows here).
    pub kib_per_conn_end_of_hold: Option<f64>,
    /// Checkpoint: the ramp pauses once the first fifth of the connections idle.
    pub checkpoint: Option<ProcMem>,
    pub checkpoint_conns: u64,
    /// (idle - checkpoint) / (connections opened after the checkpoint): the marginal cost,
    /// insensitive to one-off memory the server releases or allocates at the first connections
    /// (allocator purges after the warm-up, lazily built caches).
    pub kib_per_conn_marginal: Option<f64>,
}

/// What `loadgen hold` measured.
#[derive(Serialize, Clone, Debug, Default)]
pub struct HoldReport {
    pub security: String,
    pub requested: usize,
    /// Connections that reached IDLE (`+` received).
    pub established: u64,
    /// Connections that failed before reaching IDLE (errors by `stage:kind`).
    pub failed: u64,
    /// Start of the ramp until the last connection idled (or failed).
    pub establish_s: f64,
    pub ramp_rate: f64,
    pub hold_s: f64,
    /// Connections whose DONE got the tagged OK after the hold.
    pub alive_at_end: u64,
    /// Untagged EXISTS received while idling (read after DONE).
    pub exists_seen: u64,
    pub logout_ok: u64,
    pub nofile_limit: u64,
    /// Client (loadgen) memory once every connection idles.
    pub client: ProcMem,
    pub client_kib_per_conn: Option<f64>,
    pub server: Option<ServerMem>,
}

impl HoldReport {
    pub fn table(&self) -> String {
        let mut s = String::new();
        s += &format!(
            "  hold          {} requested ({}), ramp {:.0}/s, held {:.1} s\n",
            self.requested, self.security, self.ramp_rate, self.hold_s
        );
        s += &format!(
            "  established   {:>12}        {:>8} failed   all in {:.2} s\n",
            self.established, self.failed, self.establish_s
        );
        s += &format!(
            "  alive at end  {:>12}        (DONE -> OK; {} lost while idle)   EXISTS seen {}   LOGOUT ok {}\n",
            self.alive_at_end,
            self.established.saturating_sub(self.alive_at_end),
            self.exists_seen,
            self.logout_ok
        );
        let per = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.1} KiB/conn"));
        s += &format!(
            "  client RSS    {} KiB at idle ({}), RLIMIT_NOFILE {}\n",
            self.client.vm_rss_kib,
            per(self.client_kib_per_conn),
            self.nofile_limit
        );
        if let Some(m) = &self.server {
            s += &format!(
                "  server RSS    pid {}: before {} KiB, after (all idle) {} KiB, end of hold {} KiB (HWM {} KiB, {} threads)\n",
                m.pid,
                m.before.vm_rss_kib,
                m.idle.vm_rss_kib,
                m.end_of_hold.vm_rss_kib,
                m.end_of_hold.vm_hwm_kib,
                m.end_of_hold.threads
            );
            s += &format!(
                "  server/conn   {} (after-before)/{}; end of hold {}\n",
                per(m.kib_per_conn),
                self.established,
                per(m.kib_per_conn_end_of_hold)
            );
            if let Some(cp) = &m.checkpoint {
                s += &format!(
                    "  marginal      {} (after-checkpoint)/{}; checkpoint {} KiB at {} idle\n",
                    per(m.kib_per_conn_marginal),
                    self.established.saturating_sub(m.checkpoint_conns),
                    cp.vm_rss_kib,
                    m.checkpoint_conns
                );
            }
        }
        s
    }
}

/// Per-core results.
pub struct CoreResult {
    pub established: u64,
    pub failed: u64,
    pub alive: u64,
    pub exists: u64,
    pub logout_ok: u64,
    pub errors: BTreeMap<String, u64>,
    /// Connect → IDLE continuation, per connection.
    pub setup: Histogram<u64>,
    pub legacy: bool,
}

impl Default for CoreResult {
    fn default() -> Self {
        CoreResult {
            established: 0,
            failed: 0,
            alive: 0,
            exists: 0,
            logout_ok: 0,
            errors: BTreeMap::new(),
            setup: new_hist(),
            legacy: false,
        }
    }
}

impl CoreResult {
    fn merge(&mut self, o: &CoreResult) {
        self.established += o.established;
        self.failed += o.failed;
        self.alive += o.alive;
        self.exists += o.exists;
        self.logout_ok += o.logout_ok;
        for (k, v) in &o.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
        let _ = self.setup.add(&o.setup);
        self.legacy |= o.legacy;
    }
    fn err(&mut self, stage: &str, key: String) {
        *self.errors.entry(format!("{stage}:{key}")).or_default() += 1;
    }
}

struct Shared {
    start: Instant,
    /// Connections that reached IDLE or failed.
    settled: AtomicUsize,
    established: AtomicUsize,
    /// Set by the main thread when the hold is over.
    release: AtomicBool,
    /// Connections from this index on wait for the checkpoint (0 = no checkpoint).
    split: usize,
    /// When the second part of the ramp starts (set after the checkpoint sample).
    phase2: OnceLock<Instant>,
}

/// A single-threaded gate: futures wait until it is opened.
#[derive(Default)]
struct Gate {
    open: Cell<bool>,
    waiters: RefCell<Vec<Waker>>,
}

impl Gate {
    fn open(&self) {
        self.open.set(true);
        for w in self.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }
}

/// Waits for gate 0 (release) or 1 (second part of the ramp) of a core.
struct GateWait(Rc<(Gate, Gate)>, u8);

impl Future for GateWait {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let g = if self.1 == 0 { &self.0.0 } else { &self.0.1 };
        if g.open.get() {
            Poll::Ready(())
        } else {
            g.waiters.borrow_mut().push(cx.waker().clone());
            Poll::Pending
        }
    }
}

async fn hold_conn(
    i: usize,
    w: Arc<FetchWork>,
    sh: Arc<Shared>,
    plan: Arc<HoldPlan>,
    gates: Rc<(Gate, Gate)>,
    res: Rc<RefCell<CoreResult>>,
) {
    let (base, k) = if sh.split > 0 && i >= sh.split {
        GateWait(gates.clone(), 1).await;
        // unset only when released early (Ctrl-C): the setup below then gives up
        (sh.phase2.get().copied().unwrap_or(sh.start), i - sh.split)
    } else {
        (sh.start, i)
    };
    let due = base + Duration::from_secs_f64(k as f64 / plan.ramp_rate);
    let now = Instant::now();
    if due > now {
        monoio::time::sleep(due - now).await;
    }
    let user = user_name(&w.user_pattern, i as u64 % w.users.max(1) + 1);
    let t0 = Instant::now();
    let stage = Cell::new("connect");
    let setup = async {
        let mut c =
            ImapClient::connect(w.addr, plan.timeout, w.imap_security, tls_pair(&w.tls)).await?;
        stage.set("login");
        c.login(&user, &w.password).await?;
        stage.set("select");
        c.select("INBOX").await?;
        stage.set("idle");
        let tag = c.idle_start().await?;
        Ok::<_, crate::client::ClientError>((c, tag))
    };
    let r = if INTERRUPTED.load(Ordering::Relaxed) {
        Err(crate::client::ClientError::Protocol("interrupted".into()))
    } else {
        setup.await
    };
    let (mut c, tag) = match r {
        Ok(x) => x,
        Err(e) => {
            {
                let mut r = res.borrow_mut();
                r.failed += 1;
                r.err(stage.get(), e.key());
            }
            sh.settled.fetch_add(1, Ordering::SeqCst);
            return;
        }
    };
    {
        let mut r = res.borrow_mut();
        r.established += 1;
        r.setup
            .saturating_record((t0.elapsed().as_micros() as u64).max(1));
    }
    sh.established.fetch_add(1, Ordering::SeqCst);
    sh.settled.fetch_add(1, Ordering::SeqCst);
    GateWait(gates.clone(), 0).await;
    let mut exists = 0u64;
    let done = c
        .idle_done_with(&tag, |r| {
            if let Some((_, kw)) = parse_untagged_num(&r.text)
                && kw.eq_ignore_ascii_case(b"EXISTS")
            {
                exists += 1;
            }
        })
        .await;
    {
        let mut r = res.borrow_mut();
        r.exists += exists;
        if let Err(e) = done {
            r.err("done", e.key());
            return;
        }
        r.alive += 1;
    }
    let out = c.logout().await;
    let mut r = res.borrow_mut();
    match out {
        Ok(()) => r.logout_ok += 1,
        Err(e) => r.err("logout", e.key()),
    }
}

fn core_main(
    core: usize,
    core_id: Option<core_affinity::CoreId>,
    plan: Arc<HoldPlan>,
    w: Arc<FetchWork>,
    sh: Arc<Shared>,
) -> CoreResult {
    if let Some(id) = core_id {
        let _ = core_affinity::set_for_current(id);
    }
    let rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .with_entries(1024)
        .enable_timer()
        .build();
    let mut rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadgen: core {core}: cannot build runtime: {e}");
            let mut r = CoreResult::default();
            let mine = (plan.connections + plan.cores - 1 - core) / plan.cores;
            r.failed = mine as u64;
            *r.errors.entry("runtime".into()).or_default() += mine as u64;
            sh.settled.fetch_add(mine, Ordering::SeqCst);
            return r;
        }
    };
    rt.block_on(async move {
        let res = Rc::new(RefCell::new(CoreResult::default()));
        let gates = Rc::new((Gate::default(), Gate::default()));
        let mut handles = Vec::new();
        for i in (core..plan.connections).step_by(plan.cores) {
            handles.push(monoio::spawn(hold_conn(
                i,
                w.clone(),
                sh.clone(),
                plan.clone(),
                gates.clone(),
                res.clone(),
            )));
        }
        while !sh.release.load(Ordering::SeqCst) {
            if sh.phase2.get().is_some() && !gates.1.open.get() {
                gates.1.open();
            }
            monoio::time::sleep(Duration::from_millis(10)).await;
        }
        gates.1.open(); // released early (Ctrl-C): the waiting connections give up
        gates.0.open();
        for h in handles {
            h.await;
        }
        let mut r = std::mem::take(&mut *res.borrow_mut());
        r.legacy = monoio::utils::is_legacy();
        r
    })
}

/// Sleep up to `d`, returning early on Ctrl-C.
fn sleep_interruptible(d: Duration) {
    let end = Instant::now() + d;
    while !INTERRUPTED.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= end {
            break;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(50)));
    }
}

/// What [`run`] hands back to the app: the report plus the aggregated counters.
pub struct HoldOutcome {
    pub report: HoldReport,
    pub result: CoreResult,
    pub setup_latency: Latency,
    pub wall: Duration,
}

/// Run a hold: ramp up, wait until every connection idles (or failed), measure, hold, tear down.
pub fn run(plan: Arc<HoldPlan>, w: Arc<FetchWork>) -> Result<HoldOutcome, String> {
    let (nofile, hard) = raise_nofile()?;
    // each connection needs a socket; keep a few descriptors for everything else
    if (nofile as usize) < plan.connections + 64 {
        eprintln!(
            "loadgen hold: warning: RLIMIT_NOFILE is {nofile} (hard {hard}) for {} connections; \
             raise it (ulimit -n) or expect `connect:io` errors",
            plan.connections
        );
    }
    let before = plan.pid.map(|p| proc_mem(Some(p))).transpose()?;
    let core_ids = if plan.pin {
        core_affinity::get_core_ids().unwrap_or_default()
    } else {
        vec![]
    };
    let sh = Arc::new(Shared {
        start: Instant::now() + Duration::from_millis(20),
        settled: AtomicUsize::new(0),
        established: AtomicUsize::new(0),
        release: AtomicBool::new(false),
        // with --pid, pause the ramp after a fifth of the connections for a checkpoint sample
        split: if plan.pid.is_some() && plan.connections >= 10 {
            plan.connections / 5
        } else {
            0
        },
        phase2: OnceLock::new(),
    });
    let mut threads = Vec::new();
    for core in 0..plan.cores {
        let id = (!core_ids.is_empty()).then(|| core_ids[core % core_ids.len()]);
        let (plan, w, sh) = (plan.clone(), w.clone(), sh.clone());
        threads.push(
            std::thread::Builder::new()
                .name(format!("loadgen-{core}"))
                .spawn(move || core_main(core, id, plan, w, sh))
                .map_err(|e| format!("spawn worker: {e}"))?,
        );
    }
    let mut next_report = sh.start + Duration::from_secs(1);
    let mut checkpoint = None;
    let mut checkpoint_conns = 0;
    while sh.settled.load(Ordering::SeqCst) < plan.connections
        && !INTERRUPTED.load(Ordering::Relaxed)
        && !threads.iter().all(|t| t.is_finished())
    {
        std::thread::sleep(Duration::from_millis(5));
        if sh.split > 0
            && sh.phase2.get().is_none()
            && sh.settled.load(Ordering::SeqCst) >= sh.split
        {
            checkpoint_conns = sh.established.load(Ordering::SeqCst) as u64;
            checkpoint = plan.pid.map(|p| proc_mem(Some(p))).transpose()?;
            let _ = sh.phase2.set(Instant::now() + Duration::from_millis(20));
        }
        if !plan.quiet && Instant::now() >= next_report {
            next_report += Duration::from_secs(1);
            let settled = sh.settled.load(Ordering::SeqCst);
            let est = sh.established.load(Ordering::SeqCst);
            eprintln!(
                "[{:>5.1}s] established {est:>7}  failed {:>6}  pending {:>7}",
                sh.start.elapsed().as_secs_f64(),
                settled - est,
                plan.connections - settled
            );
        }
    }
    let establish = sh.start.elapsed();
    let established = sh.established.load(Ordering::SeqCst) as u64;
    let idle = plan.pid.map(|p| proc_mem(Some(p))).transpose()?;
    let client = proc_mem(None)?;
    if !plan.quiet {
        eprintln!(
            "loadgen hold: {established} connections idle after {:.2} s{}; holding {:.1} s",
            establish.as_secs_f64(),
            idle.map_or(String::new(), |m| format!(
                ", server VmRSS {} KiB",
                m.vm_rss_kib
            )),
            plan.hold.as_secs_f64()
        );
    }
    let hold_start = Instant::now();
    sleep_interruptible(plan.hold);
    let held = hold_start.elapsed();
    let end = plan.pid.map(|p| proc_mem(Some(p))).transpose()?;
    sh.release.store(true, Ordering::SeqCst);
    let mut total = CoreResult::default();
    for t in threads {
        match t.join() {
            Ok(r) => total.merge(&r),
            Err(_) => return Err("a worker thread panicked".into()),
        }
    }
    let server = match (plan.pid, before, idle, end) {
        (Some(pid), Some(before), Some(idle), Some(end)) => Some(ServerMem {
            pid,
            before,
            idle,
            end_of_hold: end,
            kib_per_conn: per_conn_kib(before.vm_rss_kib, idle.vm_rss_kib, established),
            kib_per_conn_end_of_hold: per_conn_kib(before.vm_rss_kib, end.vm_rss_kib, established),
            checkpoint,
            checkpoint_conns,
            kib_per_conn_marginal: checkpoint.and_then(|cp| {
                per_conn_kib(
                    cp.vm_rss_kib,
                    idle.vm_rss_kib,
                    established.saturating_sub(checkpoint_conns),
                )
            }),
        }),
        _ => None,
    };
    let security = match w.imap_security {
        crate::client::imap::Security::None => "plain",
        crate::client::imap::Security::StartTls => "STARTTLS",
        crate::client::imap::Security::Implicit => "implicit TLS",
    };
    let report = HoldReport {
        security: security.into(),
        requested: plan.connections,
        established: total.established,
        failed: total.failed,
        establish_s: establish.as_secs_f64(),
        ramp_rate: plan.ramp_rate,
        hold_s: held.as_secs_f64(),
        alive_at_end: total.alive,
        exists_seen: total.exists,
        logout_ok: total.logout_ok,
        nofile_limit: nofile,
        client,
        client_kib_per_conn: (established > 0)
            .then(|| client.vm_rss_kib as f64 / established as f64),
        server,
    };
    Ok(HoldOutcome {
        setup_latency: Latency::from_hist(&total.setup),
        report,
        result: total,
        wall: sh.start.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tsurel\nUmask:\t0022\nState:\tS (sleeping)\nPid:\t4242\n\
VmPeak:\t 1234567 kB\nVmSize:\t  987654 kB\nVmHWM:\t   65432 kB\nVmRSS:\t   54321 kB\n\
RssAnon:\t   40000 kB\nRssFile:\t   14321 kB\nThreads:\t3\nVmRSSX:\t1 kB\n";

    #[test]
    fn parses_proc_status() {
        assert_eq!(status_field(STATUS, "VmRSS"), Some(54321));
        assert_eq!(status_field(STATUS, "Threads"), Some(3));
        assert_eq!(status_field(STATUS, "State"), None);
        assert_eq!(status_field(STATUS, "Vm"), None);
        assert_eq!(status_field(STATUS, "Missing"), None);
        assert_eq!(
            parse_status(STATUS),
            Some(ProcMem {
                vm_rss_kib: 54321,
                vm_hwm_kib: 65432,
                rss_anon_kib: 40000,
                threads: 3
            })
        );
        assert_eq!(parse_status("Name:\tx\nVmHWM:\t1 kB\n"), None);
        // kernel threads have no Vm lines; garbage values are rejected
        assert_eq!(status_field("VmRSS:\t12 MB\n", "VmRSS"), None);
        assert_eq!(status_field("VmRSS:\tabc kB\n", "VmRSS"), None);
        // the real file of this process parses
        let me = proc_mem(None).unwrap();
        assert!(me.vm_rss_kib > 0 && me.threads >= 1);
        assert!(proc_mem(Some(u32::MAX)).is_err());
    }

    #[test]
    fn per_connection_and_rlimit() {
        assert_eq!(per_conn_kib(1000, 21000, 10000), Some(2.0));
        assert_eq!(per_conn_kib(1000, 500, 100), Some(-5.0));
        assert_eq!(per_conn_kib(1000, 2000, 0), None);
        let (soft, hard) = raise_nofile().unwrap();
        assert!(soft == hard || hard == libc::RLIM_INFINITY, "{soft} {hard}");
    }

    /// A tiny IMAP server: every connection gets LOGIN/SELECT/IDLE answered, one EXISTS pushed
    /// during IDLE; connection number `drop_at` is closed while idling.
    fn fake_imap(listener: std::net::TcpListener, conns: usize, drop_at: usize) {
        use std::io::{BufRead, BufReader, Write};
        let mut threads = vec![];
        for n in 0..conns {
            let (s, _) = listener.accept().unwrap();
            threads.push(std::thread::spawn(move || {
                let mut w = s.try_clone().unwrap();
                let mut r = BufReader::new(s);
                w.write_all(b"* OK fake IMAP4rev1\r\n").unwrap();
                let mut idle_tag = String::new();
                let mut line = String::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let l = line.trim_end();
                    if l == "DONE" {
                        w.write_all(format!("{idle_tag} OK idle done\r\n").as_bytes())
                            .unwrap();
                        continue;
                    }
                    let (tag, cmd) = l.split_once(' ').unwrap();
                    let reply = match cmd.split(' ').next().unwrap() {
                        "LOGIN" => format!("{tag} OK logged in\r\n"),
                        "SELECT" => format!("* 1 EXISTS\r\n{tag} OK [READ-WRITE] selected\r\n"),
                        "IDLE" => {
                            if n == drop_at {
                                w.write_all(b"+ idling\r\n").unwrap();
                                return; // dropped while idle
                            }
                            idle_tag = tag.to_string();
                            "+ idling\r\n* 2 EXISTS\r\n* OK still here\r\n".to_string()
                        }
                        "LOGOUT" => format!("* BYE\r\n{tag} OK bye\r\n"),
                        _ => format!("{tag} BAD what\r\n"),
                    };
                    w.write_all(reply.as_bytes()).unwrap();
                }
            }));
        }
        for t in threads {
            t.join().unwrap();
        }
    }

    #[test]
    fn holds_against_a_fake_server() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || fake_imap(listener, 12, 3));
        let w = FetchWork {
            addr,
            tls: None,
            users: 5,
            user_pattern: "u%d".into(),
            password: "p".into(),
            pop3_security: crate::client::pop3::Security::None,
            imap_security: crate::client::imap::Security::None,
            dele: false,
            headers_only: false,
            store_flags: false,
            expunge: false,
        };
        let plan = HoldPlan {
            connections: 12,
            cores: 2,
            pin: false,
            timeout: Duration::from_secs(10),
            hold: Duration::from_millis(200),
            ramp_rate: 1000.0,
            pid: Some(std::process::id()),
            quiet: true,
        };
        let out = run(Arc::new(plan), Arc::new(w)).unwrap();
        server.join().unwrap();
        let r = &out.report;
        assert_eq!((r.requested, r.established, r.failed), (12, 12, 0));
        assert_eq!(r.alive_at_end, 11);
        assert_eq!(r.exists_seen, 11);
        assert_eq!(r.logout_ok, 11);
        assert_eq!(
            out.result.errors.values().sum::<u64>(),
            1,
            "{:?}",
            out.result.errors
        );
        assert!(out.result.errors.keys().all(|k| k.starts_with("done:")));
        assert!(r.hold_s >= 0.2);
        let m = r.server.as_ref().unwrap();
        assert!(m.before.vm_rss_kib > 0 && m.kib_per_conn.is_some());
        assert_eq!(m.checkpoint_conns, 2);
        assert!(m.kib_per_conn_marginal.is_some());
        assert_eq!(out.setup_latency.count, 12);
    }

    #[test]
    fn report_table() {
        let r = HoldReport {
            security: "plain".into(),
            requested: 10,
            established: 9,
            failed: 1,
            alive_at_end: 8,
            server: Some(ServerMem {
                pid: 7,
                kib_per_conn: Some(12.25),
                ..Default::default()
            }),
            ..Default::default()
        };
        let t = r.table();
        assert!(t.contains("1 lost while idle"), "{t}");
        assert!(t.contains("12.2 KiB/conn"), "{t}");
        let j = serde_json::to_string(&r).unwrap();
        assert!(j.contains("\"kib_per_conn\":12.25"), "{j}");
    }
}
