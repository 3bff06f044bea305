//! Runs one workload described by a parsed command line (`loadgen --help`). The binary is a
//! thin shell around [`run`]; tests call it in-process to check the counts it reports.

use std::sync::Arc;
use std::time::Duration;

use crate::cli::{Cli, Cmd, Common, HoldArgs, MessageArgs};
use crate::client::{imap, pop3, smtp};
use crate::hold::HoldPlan;
use crate::message::{Generator, SizeSpec, rfc5322_now};
use crate::runner::{self, FetchWork, Plan, SmtpWork, Tls, Work};
use crate::stats::{Cpu, Latency, Summary, rusage};
use crate::verify::{self, Via};

fn tls_for(c: &Common, addr: std::net::SocketAddr) -> Result<Tls, String> {
    if c.ca.is_none() && !c.insecure && !addr.ip().is_loopback() {
        return Err(
            "TLS to a non-loopback target needs --ca FILE or an explicit --insecure".into(),
        );
    }
    let cfg = crate::tls::client_config(c.ca.as_deref())?;
    Ok(Tls {
        connector: monoio_rustls::TlsConnector::from(cfg),
        name: crate::tls::server_name(c.sni.as_deref(), addr)?,
    })
}

fn plan_for(c: &Common, count_override: Option<u64>) -> Plan {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    // A loopback server shares the machine: leave it half of the CPUs by default.
    let loopback = c.addr(1).map(|a| a.ip().is_loopback()).unwrap_or(false);
    let cores = c
        .cores
        .unwrap_or(if loopback { (cpus / 2).max(1) } else { cpus });
    Plan::new(
        cores,
        !c.no_pin,
        c.connections,
        c.rate,
        count_override.or(c.count),
        if count_override.is_some() {
            None
        } else {
            c.duration.map(Duration::from_secs_f64)
        },
        Duration::from_secs_f64(c.timeout.max(0.001)),
        c.quiet,
    )
}

fn run_id(c: &Common) -> String {
    c.run_id.clone().unwrap_or_else(|| {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        format!("{ms:x}")
    })
}

fn parse_auth(a: Option<&str>) -> Result<(Option<(String, String)>, bool), String> {
    match a {
        None => Ok((None, false)),
        Some("each") => Ok((None, true)),
        Some(s) => {
            let (u, p) = s
                .split_once(':')
                .ok_or("--auth expects USER:PASS or each")?;
            Ok((Some((u.to_string(), p.to_string())), false))
        }
    }
}

struct SmtpSetup<'a> {
    common: &'a Common,
    msg: &'a MessageArgs,
    starttls: bool,
    tls: bool,
    auth: Option<&'a str>,
    pipelining: bool,
    msgs_per_conn: u64,
    rcpts: u32,
    track: bool,
    run_id: String,
}

fn smtp_work(s: &SmtpSetup) -> Result<SmtpWork, String> {
    let c = s.common;
    let addr = c.addr(if s.tls { 465 } else { 25 })?;
    let security = if s.tls {
        smtp::Security::Implicit
    } else if s.starttls {
        smtp::Security::StartTls
    } else {
        smtp::Security::None
    };
    let tls = if security != smtp::Security::None {
        Some(tls_for(c, addr)?)
    } else {
        None
    };
    let (auth, auth_each) = parse_auth(s.auth)?;
    Ok(SmtpWork {
        addr,
        security,
        tls,
        ehlo: s.msg.ehlo.clone(),
        from: s.msg.from.clone(),
        auth,
        auth_each,
        pipelining: s.pipelining,
        msgs_per_conn: s.msgs_per_conn.max(1),
        rcpts: s.rcpts.max(1),
        users: c.users.max(1),
        user_pattern: c.user_pattern.clone(),
        password: c.password.clone(),
        generator: Generator {
            seed: c.seed,
            run_id: s.run_id.clone(),
            size: SizeSpec::parse(s.msg.size, Some(s.msg.size_dist.as_str()))?,
            from: s.msg.from.clone(),
            date: rfc5322_now(),
        },
        track_delivered: s.track,
        e2e: None,
    })
}

fn fetch_work(
    c: &Common,
    tls_flag: bool,
    start_tls: bool,
    imap_proto: bool,
) -> Result<FetchWork, String> {
    let port = match (imap_proto, tls_flag) {
        (true, false) => 143,
        (true, true) => 993,
        (false, false) => 110,
        (false, true) => 995,
    };
    let addr = c.addr(port)?;
    let tls = if tls_flag || start_tls {
        Some(tls_for(c, addr)?)
    } else {
        None
    };
    Ok(FetchWork {
        addr,
        tls,
        users: c.users.max(1),
        user_pattern: c.user_pattern.clone(),
        password: c.password.clone(),
        pop3_security: if tls_flag {
            pop3::Security::Implicit
        } else if start_tls {
            pop3::Security::Stls
        } else {
            pop3::Security::None
        },
        imap_security: if tls_flag {
            imap::Security::Implicit
        } else if start_tls {
            imap::Security::StartTls
        } else {
            imap::Security::None
        },
        dele: false,
        headers_only: false,
        store_flags: false,
        expunge: false,
    })
}

fn finish(
    protocol: &str,
    target: String,
    run_id: String,
    plan: &Plan,
    work: &Work,
    out: runner::Outcome,
) -> Summary {
    let secs = out.wall.as_secs_f64().max(1e-9);
    let (user, sys) = rusage();
    Summary {
        protocol: protocol.into(),
        target,
        run_id,
        cores: plan.cores,
        connections: plan.connections,
        load_model: if plan.rate.is_some() {
            "open".into()
        } else {
            "closed".into()
        },
        rate: plan.rate,
        driver: if out.legacy {
            "epoll".into()
        } else {
            "io_uring".into()
        },
        duration_s: secs,
        job: work.job_name().into(),
        jobs_ok: out.total.ok,
        jobs_failed: out.total.failed,
        jobs_per_s: out.total.ok as f64 / secs,
        messages: out.total.msgs,
        messages_per_s: out.total.msgs as f64 / secs,
        bytes: out.total.bytes,
        mb_per_s: out.total.bytes as f64 / 1e6 / secs,
        errors: out.total.errors.clone(),
        latency: Latency::from_hist(&out.total.hist),
        cpu: Cpu {
            user_s: user,
            sys_s: sys,
            total_s: user + sys,
            pct_of_one_core: (user + sys) / secs * 100.0,
        },
        timeline: out.timeline,
        verify: None,
        hold: None,
    }
}

/// `loadgen hold`: many idle IMAP connections; the summary's jobs are connections
/// (ok = alive at the end of the hold), its latency the connect → IDLE time.
fn run_hold(a: &HoldArgs, rid: String) -> Result<Summary, String> {
    let c = &a.common;
    let w = fetch_work(c, a.tls, a.starttls, true)?;
    let base = plan_for(c, Some(1));
    let plan = Arc::new(HoldPlan {
        connections: c.connections.max(1),
        cores: base.cores,
        pin: base.pin,
        timeout: base.timeout,
        hold: Duration::from_secs_f64(a.hold),
        ramp_rate: a.ramp_rate,
        pid: a.pid,
        quiet: c.quiet,
    });
    let target = w.addr.to_string();
    let out = crate::hold::run(plan.clone(), Arc::new(w))?;
    let secs = out.wall.as_secs_f64().max(1e-9);
    let (user, sys) = rusage();
    let r = &out.result;
    let lost = r.established.saturating_sub(r.alive);
    Ok(Summary {
        protocol: "imap-hold".into(),
        target,
        run_id: rid,
        cores: plan.cores,
        connections: plan.connections,
        load_model: "hold".into(),
        rate: None,
        driver: if r.legacy { "epoll" } else { "io_uring" }.into(),
        duration_s: secs,
        job: "connection".into(),
        jobs_ok: r.alive,
        jobs_failed: r.failed + lost,
        jobs_per_s: r.established as f64 / out.report.establish_s.max(1e-9),
        messages: r.exists,
        messages_per_s: 0.0,
        bytes: 0,
        mb_per_s: 0.0,
        errors: r.errors.clone(),
        latency: out.setup_latency,
        cpu: Cpu {
            user_s: user,
            sys_s: sys,
            total_s: user + sys,
            pct_of_one_core: (user + sys) / secs * 100.0,
        },
        timeline: vec![],
        verify: None,
        hold: Some(out.report),
    })
}

fn write_outputs(s: &Summary, c: &Common) -> Result<(), String> {
    if let Some(p) = &c.json {
        let j = serde_json::to_string_pretty(s).map_err(|e| e.to_string())?;
        std::fs::write(p, j).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    if let Some(p) = &c.plot {
        let unit = if s.job == "message" {
            "msg/s"
        } else {
            "sessions/s"
        };
        let title = format!("loadgen {} -> {} (run {})", s.protocol, s.target, s.run_id);
        std::fs::write(p, crate::plot::svg(&title, unit, &s.timeline))
            .map_err(|e| format!("{}: {e}", p.display()))?;
    }
    Ok(())
}

/// Runs the workload, prints the summary table and writes `--json`/`--plot`. Returns the
/// summary; [`succeeded`] tells whether it should count as a pass.
pub fn run(cli: Cli) -> Result<Summary, String> {
    let common = match &cli.cmd {
        Cmd::Smtp(a) => &a.common,
        Cmd::Pop3(a) => &a.common,
        Cmd::Imap(a) => &a.common,
        Cmd::Seed(a) => &a.common,
        Cmd::E2e(a) => &a.common,
        Cmd::Hold(a) => &a.common,
        Cmd::Sink(_) => return Err("`loadgen sink` runs through loadgen::sink::run".into()),
    };
    if common.legacy_driver {
        // SAFETY: no other threads exist yet.
        unsafe { std::env::set_var("MONOIO_FORCE_LEGACY_DRIVER", "1") };
    }
    let rid = run_id(common);
    if let Cmd::Hold(a) = &cli.cmd {
        let summary = run_hold(a, rid)?;
        print!("{}", summary.table());
        write_outputs(&summary, common)?;
        return Ok(summary);
    }
    let (protocol, plan, work, verify_job) = match &cli.cmd {
        Cmd::Smtp(a) => {
            let setup = SmtpSetup {
                common: &a.common,
                msg: &a.msg,
                starttls: a.starttls,
                tls: a.tls,
                auth: a.auth.as_deref(),
                pipelining: a.pipelining,
                msgs_per_conn: a.msgs_per_conn,
                rcpts: a.rcpts,
                track: a.verify,
                run_id: rid.clone(),
            };
            let w = smtp_work(&setup)?;
            let vj = if a.verify {
                let url = a
                    .verify_via
                    .clone()
                    .unwrap_or_else(|| format!("imap://{}:143", w.addr.ip()));
                let (via, addr) = verify::parse_via(&url)?;
                let tls = if matches!(via, Via::Imaps | Via::Pop3s) {
                    Some(tls_for(&a.common, addr)?)
                } else {
                    None
                };
                Some(verify::VerifyJob {
                    via,
                    addr,
                    tls,
                    timeout: Duration::from_secs_f64(a.common.timeout),
                    wait: Duration::from_secs_f64(a.verify_wait),
                    user_pattern: a.common.user_pattern.clone(),
                    password: a.common.password.clone(),
                    users: w.users,
                    rcpts: w.rcpts,
                    generator: w.generator.clone(),
                })
            } else {
                None
            };
            (
                "smtp",
                plan_for(&a.common, None),
                Work::Smtp(Arc::new(w)),
                vj,
            )
        }
        Cmd::Seed(a) => {
            let setup = SmtpSetup {
                common: &a.common,
                msg: &a.msg,
                starttls: a.starttls,
                tls: a.tls,
                auth: a.auth.as_deref(),
                pipelining: true,
                msgs_per_conn: a.msgs_per_conn,
                rcpts: 1,
                track: false,
                run_id: rid.clone(),
            };
            let w = smtp_work(&setup)?;
            let total = a.common.users.max(1) * a.per_user;
            (
                "seed",
                plan_for(&a.common, Some(total)),
                Work::Smtp(Arc::new(w)),
                None,
            )
        }
        Cmd::E2e(a) => {
            let setup = SmtpSetup {
                common: &a.common,
                msg: &a.msg,
                starttls: a.starttls,
                tls: a.tls,
                auth: a.auth.as_deref(),
                pipelining: a.pipelining,
                msgs_per_conn: a.msgs_per_conn,
                rcpts: a.rcpts,
                track: false,
                run_id: rid.clone(),
            };
            let mut w = smtp_work(&setup)?;
            let url = a
                .watch
                .clone()
                .unwrap_or_else(|| format!("imap://{}:143", w.addr.ip()));
            let (via, waddr) = verify::parse_via(&url)?;
            if !matches!(via, Via::Imap | Via::Imaps) {
                return Err("--watch must be imap:// or imaps://".into());
            }
            let mut watch_common = a.common.clone();
            watch_common.target = waddr.to_string();
            let watch = fetch_work(&watch_common, via == Via::Imaps, false, true)?;
            let shared = Arc::new(crate::e2e::Shared::new(w.users as usize, rid.clone()));
            w.e2e = Some(shared.clone());
            let work = Work::E2e {
                smtp: Arc::new(w),
                watch: Arc::new(watch),
                shared,
                wait: Duration::from_secs_f64(a.e2e_wait),
            };
            ("e2e", plan_for(&a.common, None), work, None)
        }
        Cmd::Pop3(a) => {
            let mut w = fetch_work(&a.common, a.tls, a.stls, false)?;
            w.dele = a.dele;
            (
                "pop3",
                plan_for(&a.common, None),
                Work::Pop3(Arc::new(w)),
                None,
            )
        }
        Cmd::Imap(a) => {
            let mut w = fetch_work(&a.common, a.tls, a.starttls, true)?;
            w.headers_only = a.headers_only;
            w.store_flags = a.store_flags;
            w.expunge = a.expunge;
            (
                "imap",
                plan_for(&a.common, None),
                Work::Imap(Arc::new(w)),
                None,
            )
        }
        Cmd::Hold(_) | Cmd::Sink(_) => unreachable!("handled above"),
    };
    let target = match &work {
        Work::Smtp(w) => w.addr.to_string(),
        Work::E2e { smtp, watch, .. } => format!("{} (watching {})", smtp.addr, watch.addr),
        Work::Pop3(w) | Work::Imap(w) => w.addr.to_string(),
    };
    let plan = Arc::new(plan);
    let mut out = runner::run(plan.clone(), work.clone());
    let delivered = std::mem::take(&mut out.delivered);
    let mut summary = finish(protocol, target, rid, &plan, &work, out);
    if let Work::E2e { shared, .. } = &work {
        let (unseen, unmatched) = shared.leftovers();
        if unseen > 0 {
            summary.errors.insert("not-seen-by-idle".into(), unseen);
        }
        if unmatched > 0 {
            summary.errors.insert("seen-without-250".into(), unmatched);
        }
    }
    if let Some(vj) = verify_job {
        eprintln!(
            "verify: fetching {} delivered messages back via {:?} {}",
            delivered.len(),
            vj.via,
            vj.addr
        );
        summary.verify = Some(verify::verify(&vj, &delivered));
    }
    print!("{}", summary.table());
    write_outputs(&summary, common)?;
    Ok(summary)
}

/// False when the run must fail loudly: mail lost, duplicated or corrupted, e2e messages
/// never seen, or every job failed.
pub fn succeeded(summary: &Summary) -> bool {
    if let Some(v) = &summary.verify
        && !v.ok()
    {
        eprintln!(
            "\n!!! VERIFY FAILED: {} lost, {} duplicated, {} corrupted (of {} expected) !!!",
            v.lost, v.duplicated, v.corrupted, v.expected
        );
        return false;
    }
    if let Some(unseen) = summary.errors.get("not-seen-by-idle") {
        eprintln!("\n!!! E2E: {unseen} accepted messages were never seen by the IDLE watchers !!!");
        return false;
    }
    if summary.jobs_ok == 0 && summary.jobs_failed > 0 {
        eprintln!("loadgen: every {} failed", summary.job);
        return false;
    }
    true
}
