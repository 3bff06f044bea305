//! A real DNS server for tests: dnsmasq on 127.0.0.1 and a free high port, serving only the
//! records given on its command line, killed on drop.
//!
//! Include it with `#[path = "common/dns.rs"] mod dns_server;` (or `pub mod dns;` in
//! `common/mod.rs`). dnsmasq comes from the Debian package `dnsmasq-base`; without it the
//! tests fail with a message saying so (CI installs it), they are not skipped.
//!
//! Record options (see `man dnsmasq`): `--mx-host=domain,exchange,preference`,
//! `--host-record=name,ipv4,ipv6`, `--txt-record=name,"text"`, `--local=/test/` (unknown
//! names under `.test` answer NXDOMAIN; names outside every `--local` zone answer REFUSED),
//! `--local-ttl=SECONDS` (the TTL of these records; dnsmasq's default is 0, never cached).
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DNSMASQ_PATHS: &[&str] = &["/usr/sbin/dnsmasq", "/usr/bin/dnsmasq", "/sbin/dnsmasq"];

/// A running dnsmasq. Queries are logged (see [`Dnsmasq::queries`]).
pub struct Dnsmasq {
    child: Option<Child>,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Dnsmasq {
    /// Starts dnsmasq with `records` (dnsmasq options) on a free loopback port, and waits
    /// until it accepts connections.
    pub fn start(records: &[&str]) -> Dnsmasq {
        let binary = dnsmasq_binary();
        // The port is free when probed but could be taken before dnsmasq binds it: retry.
        let mut last_error = String::new();
        for _ in 0..5 {
            let dir = tempfile::tempdir().expect("tempdir");
            let port = free_port();
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let log = dir.path().join("dnsmasq.log");
            let stderr = std::fs::File::create(dir.path().join("stderr")).expect("stderr file");
            let mut command = Command::new(&binary);
            command
                .arg("--keep-in-foreground")
                .arg("--conf-file=/dev/null")
                .arg("--no-resolv")
                .arg("--no-hosts")
                .arg("--no-poll")
                .arg(format!("--port={port}"))
                .arg("--listen-address=127.0.0.1")
                .arg("--bind-interfaces")
                .arg("--pid-file=")
                .arg("--log-queries")
                .arg(format!("--log-facility={}", log.display()));
            // As root dnsmasq drops to `nobody` unless told otherwise, and then cannot
            // write its log in our temporary directory.
            if unsafe { libc::geteuid() } == 0 {
                command.arg("--user=root");
            }
            command
                .args(records)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr);
            let child = command
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));
            let mut server = Dnsmasq {
                child: Some(child),
                addr,
                dir,
            };
            match server.wait_ready() {
                Ok(()) => return server,
                // Dropping `server` kills that dnsmasq.
                Err(why) => last_error = why,
            }
        }
        panic!("dnsmasq did not start: {last_error}");
    }

    /// Where it answers (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Kills it now (a later query to [`Dnsmasq::addr`] finds a closed port).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The query log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dnsmasq.log")).unwrap_or_default()
    }

    /// How many queries of `record_type` (`"MX"`, `"A"`, `"AAAA"`, `"TXT"`) for `name` (no
    /// final dot) it has received. The log is written as queries arrive; allow for a short
    /// delay before counting a query that was just answered.
    pub fn queries(&self, record_type: &str, name: &str) -> usize {
        let needle = format!("query[{record_type}] {name} from ");
        self.log()
            .lines()
            .filter(|line| {
                line.to_ascii_lowercase()
                    .contains(&needle.to_ascii_lowercase())
            })
            .count()
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Err(format!("dnsmasq exited ({status}): {}", self.stderr()));
            }
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!(
            "dnsmasq not listening on {} after 10 s: {}",
            self.addr,
            self.stderr()
        ))
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        self.stop();
    }
}

/// dnsmasq's path; panics with what to install when it is missing.
pub fn dnsmasq_binary() -> PathBuf {
    let in_path = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("dnsmasq"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    DNSMASQ_PATHS
        .iter()
        .map(PathBuf::from)
        .chain(in_path)
        .find(|path| Path::new(path).is_file())
        .unwrap_or_else(|| {
            panic!(
                "dnsmasq not found (looked in {DNSMASQ_PATHS:?} and $PATH): the DNS tests need a \
                 real DNS server. Install the Debian package dnsmasq-base \
                 (`apt-get install dnsmasq-base`)."
            )
        })
}

/// A loopback port free for both UDP and TCP right now.
pub fn free_port() -> u16 {
    for _ in 0..100 {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind UDP");
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both UDP and TCP");
}
