//! `loadgen sink`: an SMTP server that swallows mail, as the destination of relay benchmarks
//! and tests. It answers like a real destination (a set share of recipients temp-failed or
//! perm-failed, an optional delay per reply batch, SIZE, STARTTLS) and counts exactly what it
//! accepted, so a script can tell when a relay's queue has drained (`--expect`,
//! `--stats-file`).
//!
//! - [`session`]: the SMTP conversation, sans-IO (bytes in, replies out), with [`data`] for
//!   DATA's end-of-data detection and dot-unstuffing.
//! - [`server`]: listeners (SO_REUSEPORT, one pinned monoio runtime per core) and the thin
//!   connection driver; [`Sink`] is the in-process handle tests can start and stop.
//! - [`counters`]: atomics shared by the cores and the JSON [`Snapshot`].
//! - [`run`]: the command line's main loop (progress line, stats file, `--expect`,
//!   `--duration`, signals, summary).

pub mod counters;
pub mod data;
pub mod server;
pub mod session;

use std::io::Write as _;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::cli::SinkArgs;
pub use counters::{Counters, Snapshot};
pub use server::{Sink, SinkConfig, SinkError};

/// How often `run` checks `--expect`, the deadline and the signals.
const POLL: Duration = Duration::from_millis(10);
/// How often `--stats-file` is rewritten.
const STATS_FILE_EVERY: Duration = Duration::from_millis(100);

/// Why a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StopReason {
    /// `--expect N` recipients were delivered.
    Expect,
    /// `--duration` elapsed.
    Duration,
    /// SIGINT or SIGTERM.
    Signal,
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StopReason::Expect => "expect",
            StopReason::Duration => "duration",
            StopReason::Signal => "signal",
        })
    }
}

/// What `loadgen sink` prints at exit (`--json`: as one JSON object, the counters flattened in).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SinkSummary {
    pub listen: String,
    pub cores: usize,
    pub driver: String,
    pub duration_s: f64,
    pub stopped_by: StopReason,
    pub expect: Option<u64>,
    #[serde(flatten)]
    pub counters: Snapshot,
}

impl SinkSummary {
    /// False when `--expect N` was given and not reached (the exit status is then 1).
    pub fn succeeded(&self) -> bool {
        self.expect
            .is_none_or(|n| self.counters.recipients_delivered >= n)
    }

    pub fn table(&self) -> String {
        let c = &self.counters;
        let secs = self.duration_s.max(1e-9);
        let expect = match self.expect {
            Some(n) => format!(" (expected {n})"),
            None => String::new(),
        };
        format!(
            "loadgen sink {} — {} core(s), {}, {:.1} s, stopped by {}\n\
             connections          {:>10}  (TLS {})\n\
             messages             {:>10}  ({:.1}/s, rejected {})\n\
             recipients accepted  {:>10}  (tempfailed {}, permfailed {})\n\
             recipients delivered {:>10}{expect}\n\
             bytes                {:>10}  ({:.2} MB/s)\n\
             command errors       {:>10}\n",
            self.listen,
            self.cores,
            self.driver,
            self.duration_s,
            self.stopped_by,
            c.connections,
            c.tls_sessions,
            c.messages,
            c.messages as f64 / secs,
            c.messages_rejected,
            c.recipients_accepted,
            c.recipients_tempfailed,
            c.recipients_permfailed,
            c.recipients_delivered,
            c.bytes,
            c.bytes as f64 / 1e6 / secs,
            c.command_errors,
        )
    }
}

extern "C" fn on_sigterm(_: libc::c_int) {
    crate::runner::INTERRUPTED.store(true, Ordering::Relaxed);
}

/// SIGTERM ends the run like the first SIGINT does (see [`crate::runner::install_sigint`]).
fn install_sigterm() {
    // SAFETY: the handler only stores to an atomic.
    unsafe { libc::signal(libc::SIGTERM, on_sigterm as *const () as libc::sighandler_t) };
}

fn config(a: &SinkArgs) -> Result<SinkConfig, String> {
    let listen = std::net::ToSocketAddrs::to_socket_addrs(a.listen.as_str())
        .map_err(|e| format!("bad --listen {:?}: {e}", a.listen))?
        .next()
        .ok_or_else(|| format!("--listen {:?} did not resolve", a.listen))?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    Ok(SinkConfig {
        listen,
        // The sink shares the machine with the relay and the load generator.
        cores: a.cores.unwrap_or((cpus / 2).max(1)),
        pin: !a.no_pin,
        tempfail_pct: a.tempfail_pct,
        permfail_pct: a.permfail_pct,
        delay: Duration::from_millis(a.delay_ms),
        tls: a.tls,
        max_message_size: a.max_message_size,
        seed: a.seed,
        dump_dir: a.dump_dir.clone(),
    })
}

/// `loadgen sink`: starts the sink, prints `listening ADDR` as the first line on stdout, then
/// runs until `--expect`, `--duration` or a signal, printing a progress line per second on
/// stderr and rewriting `--stats-file` every 100 ms. Prints the summary on stdout.
pub fn run(a: &SinkArgs) -> Result<SinkSummary, String> {
    if a.legacy_driver {
        // SAFETY: no other threads exist yet.
        unsafe { std::env::set_var("MONOIO_FORCE_LEGACY_DRIVER", "1") };
    }
    install_sigterm();
    let sink = Sink::start(config(a)?).map_err(|e| e.to_string())?;
    // Output errors are ignored: a script that stops reading (`| head -1`) must not kill the
    // sink, and println! would panic on the closed pipe.
    let _ = writeln!(std::io::stdout(), "listening {}", sink.addr());
    let start = Instant::now();
    let duration = Duration::from_secs_f64(a.duration);
    let write_stats = |s: &Snapshot| -> Result<(), String> {
        if let Some(path) = &a.stats_file {
            let json = serde_json::to_vec(s).map_err(|e| e.to_string())?;
            counters::write_atomically(path, &json)
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok(())
    };
    write_stats(&sink.snapshot())?;
    let mut last_stats = Instant::now();
    let mut second = 1u64;
    let mut previous = Snapshot::default();
    let stopped_by = loop {
        if a.expect
            .is_some_and(|n| sink.counters().recipients_delivered() >= n)
        {
            break StopReason::Expect;
        }
        if crate::runner::INTERRUPTED.load(Ordering::Relaxed) {
            break StopReason::Signal;
        }
        let elapsed = start.elapsed();
        if elapsed >= duration {
            break StopReason::Duration;
        }
        if last_stats.elapsed() >= STATS_FILE_EVERY {
            write_stats(&sink.snapshot())?;
            last_stats = Instant::now();
        }
        if elapsed >= Duration::from_secs(second) {
            let now = sink.snapshot();
            if !a.quiet {
                let _ = writeln!(
                    std::io::stderr(),
                    "{}",
                    progress_line(second, &previous, &now)
                );
            }
            previous = now;
            second += 1;
        }
        std::thread::sleep(POLL.min(duration.saturating_sub(elapsed)));
    };
    let duration_s = start.elapsed().as_secs_f64();
    let (listen, cores, driver) = (sink.addr().to_string(), sink.cores(), sink.driver());
    let counters = sink.stop();
    write_stats(&counters)?;
    let summary = SinkSummary {
        listen,
        cores,
        driver: driver.into(),
        duration_s,
        stopped_by,
        expect: a.expect,
        counters,
    };
    if a.json {
        let json = serde_json::to_string_pretty(&summary).map_err(|e| e.to_string())?;
        let _ = writeln!(std::io::stdout(), "{json}");
    } else {
        let _ = write!(std::io::stdout(), "{}", summary.table());
    }
    Ok(summary)
}

fn progress_line(t: u64, before: &Snapshot, now: &Snapshot) -> String {
    format!(
        "[{t:>4}s] {:>7} msg/s  {:>7.2} MB/s  messages {:>9}  rcpt ok {:>9} 4xx {:>7} 5xx {:>7}  conns open {:>5}",
        now.messages - before.messages,
        (now.bytes - before.bytes) as f64 / 1e6,
        now.messages,
        now.recipients_accepted,
        now.recipients_tempfailed,
        now.recipients_permfailed,
        now.connections_open,
    )
}
