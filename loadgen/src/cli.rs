//! Command-line interface (clap derive).

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "loadgen",
    version,
    about = "Thread-per-core load generator for mail servers (SMTP, POP3, IMAP)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Deliver messages over SMTP (closed or open loop), optionally verify them afterwards.
    Smtp(SmtpArgs),
    /// POP3 sessions: USER/PASS, STAT, RETR all (optionally DELE), QUIT; one session per job.
    Pop3(Pop3Args),
    /// IMAP sessions: LOGIN, SELECT INBOX, UID FETCH 1:*, optional STORE/EXPUNGE, LOGOUT.
    Imap(ImapArgs),
    /// End-to-end delivery latency: SMTP delivery while IMAP IDLE sessions watch every
    /// recipient's INBOX; latency = 250 after DATA → `* n EXISTS` seen.
    E2e(E2eArgs),
    /// Fill --users accounts with --per-user messages each, quickly (pipelined, many per connection).
    Seed(SeedArgs),
    /// Hold --connections idle IMAP connections (LOGIN, SELECT INBOX, IDLE) for --hold seconds,
    /// optionally measuring the server's memory per connection (--pid).
    Hold(HoldArgs),
    /// SMTP sink: accept (or temp/perm-fail a share of) mail and count it, as the destination
    /// of relay benchmarks. Prints `listening ADDR` first; see --expect and --stats-file.
    Sink(SinkArgs),
}

fn on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" | "true" | "yes" | "1" => Ok(true),
        "off" | "false" | "no" | "0" => Ok(false),
        _ => Err(format!("expected on|off, got {s:?}")),
    }
}

/// Options shared by every subcommand.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Server address HOST:PORT (HOST alone uses the protocol's default port).
    #[arg(long, short = 't', default_value = "127.0.0.1")]
    pub target: String,
    /// Worker threads, one monoio runtime per core, pinned (default: all CPUs, or half of
    /// them when the target is on loopback and so shares the machine with the server).
    #[arg(long)]
    pub cores: Option<usize>,
    /// Do not pin worker threads to CPUs.
    #[arg(long)]
    pub no_pin: bool,
    /// Concurrent connections (spread over the cores).
    #[arg(long, short = 'c', default_value_t = 16)]
    pub connections: usize,
    /// Open loop: start jobs at this rate per second (latency measured from the intended
    /// start time, i.e. corrected for coordinated omission). Default: closed loop.
    #[arg(long, short = 'r')]
    pub rate: Option<f64>,
    /// Stop after this many jobs (messages for smtp, sessions for pop3/imap).
    /// Default 1000 when --duration is not given either.
    #[arg(long, short = 'n')]
    pub count: Option<u64>,
    /// Stop starting new jobs after this many seconds.
    #[arg(long, short = 'd')]
    pub duration: Option<f64>,
    /// Per-operation timeout in seconds (connect, each read/write).
    #[arg(long, default_value_t = 30.0)]
    pub timeout: f64,
    /// Number of accounts; recipients/logins are spread over them.
    #[arg(long, default_value_t = 1000)]
    pub users: u64,
    /// Account name pattern, expanded with a 1-based index (%d, %Nd, %0Nd).
    #[arg(long, default_value = "user%04d@example.test")]
    pub user_pattern: String,
    /// Password of every account.
    #[arg(long, default_value = "password")]
    pub password: String,
    /// Seed for the deterministic message generator.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Run id used in X-Loadgen-Id / Message-ID (default: derived from the clock).
    #[arg(long)]
    pub run_id: Option<String>,
    /// Write the summary (with the per-second timeline) as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write an SVG plot of throughput and p99 latency per second.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Accept any TLS certificate (default for loopback targets unless --ca is given).
    #[arg(long)]
    pub insecure: bool,
    /// Verify the server certificate against this PEM CA bundle.
    #[arg(long)]
    pub ca: Option<String>,
    /// TLS server name to send (default: the target IP, i.e. no SNI).
    #[arg(long)]
    pub sni: Option<String>,
    /// Force the epoll driver instead of io_uring.
    #[arg(long)]
    pub legacy_driver: bool,
    /// No live progress line.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

impl Common {
    /// Resolve the target, using `default_port` when none is given.
    pub fn addr(&self, default_port: u16) -> Result<SocketAddr, String> {
        let t = self.target.trim();
        let with_port = if t
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
            && !t.ends_with(']')
        {
            t.to_string()
        } else {
            format!("{t}:{default_port}")
        };
        with_port
            .to_socket_addrs()
            .map_err(|e| format!("bad --target {t:?}: {e}"))?
            .next()
            .ok_or_else(|| format!("--target {t:?} did not resolve"))
    }
}

#[derive(Args, Debug, Clone)]
pub struct MessageArgs {
    /// Message size in bytes (with --size-dist fixed).
    #[arg(long, short = 's', default_value_t = 4096)]
    pub size: usize,
    /// Size distribution: fixed (uses --size) or realistic (90 % 2-8 KB text, 10 % 50-500 KB MIME+base64).
    #[arg(long, default_value = "fixed")]
    pub size_dist: String,
    /// Envelope sender and From: address.
    #[arg(long, default_value = "loadgen@example.test")]
    pub from: String,
    /// EHLO name.
    #[arg(long, default_value = "loadgen.example.test")]
    pub ehlo: String,
}

#[derive(Args, Debug, Clone)]
pub struct SmtpArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub msg: MessageArgs,
    /// Upgrade with STARTTLS after EHLO.
    #[arg(long, conflicts_with = "tls")]
    pub starttls: bool,
    /// Implicit TLS (smtps).
    #[arg(long)]
    pub tls: bool,
    /// AUTH PLAIN as USER:PASS, or `each` to authenticate as the first recipient's account
    /// (from --user-pattern/--password).
    #[arg(long)]
    pub auth: Option<String>,
    /// Send MAIL/RCPT/DATA in one write when the server advertises PIPELINING (on|off).
    #[arg(long, default_value = "on", value_parser = on_off, action = clap::ArgAction::Set)]
    pub pipelining: bool,
    /// Messages per connection (1 = a new connection for every message).
    #[arg(long, default_value_t = 1)]
    pub msgs_per_conn: u64,
    /// Recipients per message.
    #[arg(long, default_value_t = 1)]
    pub rcpts: u32,
    /// After the run, fetch every delivered message back and compare it byte for byte.
    #[arg(long)]
    pub verify: bool,
    /// Where to fetch from for --verify: imap://HOST:PORT, imaps://, pop3://, pop3s://
    /// (default imap://<target host>:143).
    #[arg(long)]
    pub verify_via: Option<String>,
    /// Keep re-checking for missing messages this many seconds (queued delivery).
    #[arg(long, default_value_t = 30.0)]
    pub verify_wait: f64,
}

#[derive(Args, Debug, Clone)]
pub struct Pop3Args {
    #[command(flatten)]
    pub common: Common,
    /// Upgrade with STLS.
    #[arg(long, alias = "starttls", conflicts_with = "tls")]
    pub stls: bool,
    /// Implicit TLS (pop3s).
    #[arg(long)]
    pub tls: bool,
    /// DELE every retrieved message.
    #[arg(long)]
    pub dele: bool,
}

#[derive(Args, Debug, Clone)]
pub struct ImapArgs {
    #[command(flatten)]
    pub common: Common,
    /// Upgrade with STARTTLS.
    #[arg(long, conflicts_with = "tls")]
    pub starttls: bool,
    /// Implicit TLS (imaps).
    #[arg(long)]
    pub tls: bool,
    /// Fetch `(UID FLAGS RFC822.SIZE ENVELOPE)` instead of full bodies (a caching client).
    #[arg(long)]
    pub headers_only: bool,
    /// `UID STORE 1:* +FLAGS.SILENT (\Seen)` after fetching.
    #[arg(long)]
    pub store_flags: bool,
    /// Mark everything \Deleted and EXPUNGE.
    #[arg(long)]
    pub expunge: bool,
}

#[derive(Args, Debug, Clone)]
pub struct E2eArgs {
    /// SMTP side (--target is the SMTP server; one IDLE watcher per account in --users).
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub msg: MessageArgs,
    /// IMAP server to watch: imap://HOST:PORT or imaps://HOST:PORT (default imap://<target host>:143).
    #[arg(long)]
    pub watch: Option<String>,
    /// Upgrade SMTP with STARTTLS after EHLO.
    #[arg(long, conflicts_with = "tls")]
    pub starttls: bool,
    /// Implicit TLS for SMTP.
    #[arg(long)]
    pub tls: bool,
    /// AUTH PLAIN as USER:PASS or `each`.
    #[arg(long)]
    pub auth: Option<String>,
    /// Pipeline MAIL/RCPT/DATA (on|off).
    #[arg(long, default_value = "on", value_parser = on_off, action = clap::ArgAction::Set)]
    pub pipelining: bool,
    /// Messages per SMTP connection.
    #[arg(long, default_value_t = 1)]
    pub msgs_per_conn: u64,
    /// Recipients per message.
    #[arg(long, default_value_t = 1)]
    pub rcpts: u32,
    /// After the last delivery, wait at most this many seconds for outstanding EXISTS.
    #[arg(long, default_value_t = 30.0)]
    pub e2e_wait: f64,
}

#[derive(Args, Debug, Clone)]
pub struct SeedArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub msg: MessageArgs,
    /// Messages per account (total = --users x --per-user; --count/--duration are ignored).
    #[arg(long, default_value_t = 10)]
    pub per_user: u64,
    /// Messages per connection.
    #[arg(long, default_value_t = 100)]
    pub msgs_per_conn: u64,
    /// Upgrade with STARTTLS after EHLO.
    #[arg(long, conflicts_with = "tls")]
    pub starttls: bool,
    /// Implicit TLS.
    #[arg(long)]
    pub tls: bool,
    /// AUTH PLAIN as USER:PASS or `each`.
    #[arg(long)]
    pub auth: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct HoldArgs {
    /// IMAP server; --connections is the number of connections held. --count, --duration
    /// and --rate are ignored.
    #[command(flatten)]
    pub common: Common,
    /// Upgrade with STARTTLS.
    #[arg(long, conflicts_with = "tls")]
    pub starttls: bool,
    /// Implicit TLS (imaps).
    #[arg(long)]
    pub tls: bool,
    /// Seconds to hold the connections in IDLE once all of them are established.
    #[arg(long, default_value_t = 10.0, value_parser = non_negative)]
    pub hold: f64,
    /// Ramp-up pace: new connections per second (so the server's accept queue doesn't overflow).
    #[arg(long, default_value_t = 2000.0, value_parser = positive)]
    pub ramp_rate: f64,
    /// Server process id: its VmRSS (/proc/PID/status) is read before the first connection and
    /// once all connections idle, giving the server memory per idle connection.
    #[arg(long)]
    pub pid: Option<u32>,
}

#[derive(Args, Debug, Clone)]
pub struct SinkArgs {
    /// Address to listen on, HOST:PORT (port 0 picks a free one; the first stdout line says which).
    #[arg(long, short = 'l')]
    pub listen: String,
    /// Worker threads, one monoio runtime and SO_REUSEPORT listener each (default: half the CPUs).
    #[arg(long)]
    pub cores: Option<usize>,
    /// Do not pin worker threads (by default they are pinned from the last CPU downwards).
    #[arg(long)]
    pub no_pin: bool,
    /// Percentage of recipients answered `451 4.3.0 sink tempfail`.
    #[arg(long, default_value_t = 0.0, value_parser = percent)]
    pub tempfail_pct: f64,
    /// Percentage of recipients answered `550 5.1.1 sink permfail`.
    #[arg(long, default_value_t = 0.0, value_parser = percent)]
    pub permfail_pct: f64,
    /// Sleep this long before writing each batch of replies (once per command read).
    #[arg(long, default_value_t = 0)]
    pub delay_ms: u64,
    /// Offer STARTTLS with a self-signed certificate generated at start.
    #[arg(long)]
    pub tls: bool,
    /// Advertised SIZE; larger messages are refused with 552.
    #[arg(long, default_value_t = 50 * 1024 * 1024)]
    pub max_message_size: u64,
    /// Stop after this many seconds in any case.
    #[arg(long, default_value_t = 3600.0, value_parser = non_negative)]
    pub duration: f64,
    /// Exit (status 0) as soon as this many recipients were delivered (accepted recipients of
    /// accepted messages). If the run ends otherwise first, the exit status is 1.
    #[arg(long)]
    pub expect: Option<u64>,
    /// Rewrite this file atomically every 100 ms with the counters as JSON.
    #[arg(long)]
    pub stats_file: Option<PathBuf>,
    /// Print the summary at exit as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Seed of the per-core generators choosing which recipients fail.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Write every accepted message to DIR/NNNNNNNN.eml (numbered from 1 in acceptance order).
    #[arg(long)]
    pub dump_dir: Option<PathBuf>,
    /// Force the epoll driver instead of io_uring.
    #[arg(long)]
    pub legacy_driver: bool,
    /// No progress line on stderr.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

fn percent(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=100.0).contains(&v) => Ok(v),
        _ => Err(format!("expected a percentage 0-100, got {s:?}")),
    }
}

fn non_negative(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("expected a number >= 0, got {s:?}")),
    }
}

fn positive(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("expected a number > 0, got {s:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_smtp() {
        let c = Cli::try_parse_from([
            "loadgen",
            "smtp",
            "--target",
            "127.0.0.1:2525",
            "--connections",
            "32",
            "--count",
            "20000",
            "--size",
            "4096",
            "--users",
            "1000",
            "--pipelining",
            "off",
            "--rcpts",
            "3",
        ])
        .unwrap();
        let Cmd::Smtp(a) = c.cmd else { panic!() };
        assert!(!a.pipelining);
        assert_eq!(a.rcpts, 3);
        assert_eq!(a.common.addr(25).unwrap().port(), 2525);
        assert_eq!(a.common.count, Some(20000));
        let c = Cli::try_parse_from(["loadgen", "imap", "--headers-only"]).unwrap();
        let Cmd::Imap(a) = c.cmd else { panic!() };
        assert_eq!(a.common.addr(143).unwrap().to_string(), "127.0.0.1:143");
        assert!(Cli::try_parse_from(["loadgen", "smtp", "--tls", "--starttls"]).is_err());
    }

    #[test]
    fn parse_hold() {
        let c = Cli::try_parse_from(["loadgen", "hold"]).unwrap();
        let Cmd::Hold(a) = c.cmd else { panic!() };
        assert_eq!(a.hold, 10.0);
        assert_eq!(a.ramp_rate, 2000.0);
        assert_eq!(a.pid, None);
        assert!(!a.tls && !a.starttls);
        assert_eq!(a.common.connections, 16);
        let c = Cli::try_parse_from([
            "loadgen",
            "hold",
            "-t",
            "127.0.0.1:41993",
            "--tls",
            "--connections",
            "10000",
            "--hold",
            "0",
            "--ramp-rate",
            "500",
            "--pid",
            "4242",
            "--users",
            "1000",
            "--cores",
            "1",
        ])
        .unwrap();
        let Cmd::Hold(a) = c.cmd else { panic!() };
        assert!(a.tls);
        assert_eq!(a.common.connections, 10000);
        assert_eq!(a.hold, 0.0);
        assert_eq!(a.ramp_rate, 500.0);
        assert_eq!(a.pid, Some(4242));
        assert_eq!(a.common.cores, Some(1));
        assert_eq!(a.common.addr(993).unwrap().port(), 41993);
        for bad in [
            &["--tls", "--starttls"][..],
            &["--ramp-rate", "0"],
            &["--ramp-rate", "-5"],
            &["--hold", "-1"],
            &["--hold", "nan"],
            &["--pid", "x"],
        ] {
            let mut argv = vec!["loadgen", "hold"];
            argv.extend_from_slice(bad);
            assert!(Cli::try_parse_from(argv).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn parse_sink() {
        let c = Cli::try_parse_from(["loadgen", "sink", "--listen", "127.0.0.1:0"]).unwrap();
        let Cmd::Sink(a) = c.cmd else { panic!() };
        assert_eq!((a.tempfail_pct, a.permfail_pct, a.delay_ms), (0.0, 0.0, 0));
        assert_eq!((a.duration, a.seed, a.expect), (3600.0, 1, None));
        assert_eq!(a.max_message_size, 52_428_800);
        assert!(!a.tls && !a.json && a.dump_dir.is_none() && a.stats_file.is_none());
        let c = Cli::try_parse_from([
            "loadgen",
            "sink",
            "-l",
            "127.0.0.1:2526",
            "--cores",
            "2",
            "--tempfail-pct",
            "12.5",
            "--permfail-pct",
            "5",
            "--delay-ms",
            "20",
            "--tls",
            "--expect",
            "1000",
            "--stats-file",
            "/tmp/s.json",
            "--json",
            "--seed",
            "9",
            "--dump-dir",
            "/tmp/d",
            "--duration",
            "60",
        ])
        .unwrap();
        let Cmd::Sink(a) = c.cmd else { panic!() };
        assert_eq!(
            (a.tempfail_pct, a.permfail_pct, a.delay_ms),
            (12.5, 5.0, 20)
        );
        assert_eq!((a.cores, a.expect, a.seed), (Some(2), Some(1000), 9));
        assert!(a.tls && a.json);
        for bad in [
            &["--tempfail-pct", "101"][..],
            &["--permfail-pct", "-1"],
            &["--tempfail-pct", "nan"],
            &["--duration", "-1"],
            &["--expect", "x"],
        ] {
            let mut argv = vec!["loadgen", "sink", "--listen", "127.0.0.1:0"];
            argv.extend_from_slice(bad);
            assert!(Cli::try_parse_from(argv).is_err(), "{bad:?} accepted");
        }
        assert!(
            Cli::try_parse_from(["loadgen", "sink"]).is_err(),
            "--listen is required"
        );
    }
}
