//! Test harness: runs the real `surel` binary on ephemeral loopback ports with a temporary data
//! directory, and speaks to it over real TCP and TLS connections.
#![allow(dead_code)]

mod imap_client;
#[allow(unused_imports)]
pub use imap_client::*;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const PASSWORD: &str = "correct horse";

/// Polls `f` until it holds, failing the test after `within`.
pub fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn surel_bin() -> &'static str {
    env!("CARGO_BIN_EXE_surel")
}

/// A server process with its own data directory.
pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub child: Option<Child>,
    pub ports: HashMap<String, SocketAddr>,
    pub extra_config: String,
    pub env: Vec<(String, String)>,
    pub cores: usize,
    /// Start the server with this open-files limit (soft and hard), unable to raise it.
    pub open_files: Option<u64>,
}

impl TestServer {
    /// A server with the given accounts (password [`PASSWORD`]) and extra TOML appended to the
    /// test configuration.
    pub fn start(users: &[&str], extra_config: &str) -> TestServer {
        Self::start_with_env(users, extra_config, &[])
    }

    pub fn start_with_env(users: &[&str], extra_config: &str, env: &[(&str, &str)]) -> TestServer {
        let mut server = Self::prepare(users, extra_config, env);
        server.launch();
        server
    }

    /// A server with its accounts and configuration, not started yet ([`launch`](Self::launch)).
    pub fn prepare(users: &[&str], extra_config: &str, env: &[(&str, &str)]) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = TestServer {
            dir,
            child: None,
            ports: HashMap::new(),
            extra_config: extra_config.to_string(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            cores: 2,
            open_files: None,
        };
        for u in users {
            server.add_user(u, PASSWORD);
        }
        server
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server running").id()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("surel.toml")
    }

    fn write_config(&self) {
        let config = format!(
            "hostname = \"mx.test\"\n\
             data_dir = \"{}\"\n\
             cores = {}\n\
             listen_address = \"127.0.0.1\"\n\
             local_domains = [\"example.test\"]\n\
             {}\n\
             [ports]\n\
             smtp = 0\nsubmission = 0\nsubmissions = 0\npop3 = 0\npop3s = 0\nimap = 0\nimaps = 0\n",
            self.data_dir().display(),
            self.cores,
            self.extra_config,
        );
        std::fs::write(self.config_path(), config).unwrap();
    }

    pub fn add_user(&self, address: &str, password: &str) {
        let out = run_cli(
            &["user", "add", address, "--password-stdin", "--data-dir"],
            &self.data_dir(),
            Some(password),
        );
        assert!(out.status.success(), "user add {address}: {:?}", out);
    }

    /// Starts the process and waits until every listener is bound.
    pub fn launch(&mut self) {
        self.write_config();
        let _ = std::fs::remove_file(self.data_dir().join("ports"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .unwrap();
        let mut cmd = Command::new(surel_bin());
        cmd.args(["serve", "--config"])
            .arg(self.config_path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        if let Some(n) = self.open_files {
            use std::os::unix::process::CommandExt;
            // SAFETY: only async-signal-safe calls between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    // Root could raise the limit again: take that power away first.
                    const CAP_SYS_RESOURCE: libc::c_ulong = 24; // linux/capability.h
                    if libc::geteuid() == 0 {
                        libc::prctl(libc::PR_CAPBSET_DROP, CAP_SYS_RESOURCE, 0, 0, 0);
                    }
                    let limit = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = cmd.spawn().expect("spawn surel");
        self.child = Some(child);
        let ports_file = self.data_dir().join("ports");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(text) = std::fs::read_to_string(&ports_file) {
                self.ports = text
                    .lines()
                    .filter_map(|l| {
                        let (name, addr) = l.split_once(' ')?;
                        Some((name.to_string(), addr.parse().ok()?))
                    })
                    .collect();
                if !self.ports.is_empty() {
                    return;
                }
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("server exited early ({status}); log:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "server did not start; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Waits (up to 10 s) until the log contains `needle` — the server writes its log through
    /// a buffer, so a line shows up a few milliseconds after the event — and returns the log.
    pub fn wait_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.log();
            if log.contains(needle) {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "{needle:?} not in the log:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn addr(&self, protocol: &str) -> SocketAddr {
        *self
            .ports
            .get(protocol)
            .unwrap_or_else(|| panic!("no {protocol} listener: {:?}", self.ports))
    }

    fn signal(&self, sig: i32) {
        if let Some(child) = &self.child {
            unsafe {
                libc::kill(child.id() as i32, sig);
            }
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) {
        self.signal(libc::SIGTERM);
        if let Some(mut child) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(40);
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    assert!(
                        status.success(),
                        "server exit status {status}; log:\n{}",
                        self.log()
                    );
                    return;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    panic!("server did not stop on SIGTERM; log:\n{}", self.log());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    pub fn sigterm(&self) {
        self.signal(libc::SIGTERM);
    }

    /// Waits for the process to exit by itself; returns whether it exited successfully.
    pub fn wait_exit(&mut self, within: Duration) -> bool {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// Opens the store read-only-style after the server stopped, through its public API.
    pub fn open_store(&self) -> surel::store::LogStore {
        surel::store::LogStore::open(surel::store::StoreConfig {
            dir: self.data_dir().join("store"),
            shards: self.cores,
            fsync: true,
            segment_bytes: 64 << 20,
            checkpoint_bytes: 64 << 20,
            queue_segment_bytes: 16 << 20,
            compact_dead_pct: 0,
            ..Default::default()
        })
        .expect("open store")
    }
}

/// Every message in `account`'s INBOX, read through the store's API (the server must be
/// stopped: the store is opened here).
pub fn inbox(server: &TestServer, account: &str) -> Vec<Vec<u8>> {
    use surel::store::MailStore;
    let store = server.open_store();
    let Ok(snap) = store.snapshot(account, "INBOX") else {
        return Vec::new();
    };
    snap.messages
        .iter()
        .map(|m| store.read(account, "INBOX", m.uid).unwrap())
        .collect()
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn run_cli(args: &[&str], data_dir: &Path, stdin: Option<&str>) -> std::process::Output {
    let mut cmd = Command::new(surel_bin());
    cmd.args(args);
    if args.last() == Some(&"--data-dir") {
        cmd.arg(data_dir);
    }
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn surel");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{input}\n").as_bytes())
            .unwrap();
    }
    child.wait_with_output().unwrap()
}

/// Runs `f` inside a monoio runtime (for the store's async API).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .unwrap()
        .block_on(f)
}

// ---------------------------------------------------------------------------------------------
// A line-oriented client over TCP or TLS.

enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
    /// After IMAP COMPRESS DEFLATE (RFC 4978), over either of the others.
    Deflate(Box<DeflateStream>),
    Empty,
}

/// A client's side of RFC 4978: raw DEFLATE both ways, each flush of a command a sync flush.
pub struct DeflateStream {
    inner: Stream,
    compress: flate2::Compress,
    decompress: flate2::Decompress,
    input: Vec<u8>,
    input_pos: usize,
}

impl Read for DeflateStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use flate2::FlushDecompress;
        loop {
            // Called even with no input waiting: the decompressor may hold inflated bytes.
            let (in_before, out_before) = (self.decompress.total_in(), self.decompress.total_out());
            self.decompress
                .decompress(&self.input[self.input_pos..], buf, FlushDecompress::None)
                .map_err(std::io::Error::other)?;
            self.input_pos += (self.decompress.total_in() - in_before) as usize;
            let produced = (self.decompress.total_out() - out_before) as usize;
            if produced > 0 || buf.is_empty() {
                return Ok(produced);
            }
            if self.input_pos < self.input.len() && self.decompress.total_in() != in_before {
                continue;
            }
            self.input.drain(..self.input_pos);
            self.input_pos = 0;
            let have = self.input.len();
            self.input.resize(have + 16384, 0);
            let n = self.inner.read(&mut self.input[have..])?;
            self.input.truncate(have + n);
            if n == 0 {
                return Ok(0);
            }
        }
    }
}

impl DeflateStream {
    fn deflate(&mut self, data: &[u8], flush: flate2::FlushCompress) -> std::io::Result<()> {
        let mut out = Vec::with_capacity(data.len() + 64);
        let mut pos = 0;
        loop {
            let before = self.compress.total_in();
            self.compress
                .compress_vec(&data[pos..], &mut out, flush)
                .map_err(std::io::Error::other)?;
            pos += (self.compress.total_in() - before) as usize;
            if pos == data.len() && out.len() < out.capacity() {
                break;
            }
            out.reserve(out.capacity().max(1024));
        }
        self.inner.write_all(&out)
    }
}

impl Write for DeflateStream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.deflate(buf, flate2::FlushCompress::None)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.deflate(&[], flate2::FlushCompress::Sync)?;
        self.inner.flush()
    }
}

impl Stream {
    fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Stream::Plain(s) => Some(s),
            Stream::Tls(s) => Some(&s.sock),
            Stream::Deflate(s) => s.inner.tcp(),
            Stream::Empty => None,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
            Stream::Deflate(s) => s.read(buf),
            Stream::Empty => Ok(0),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
            Stream::Deflate(s) => s.write(buf),
            Stream::Empty => Ok(0),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
            Stream::Deflate(s) => s.flush(),
            Stream::Empty => Ok(()),
        }
    }
}

pub struct Client {
    reader: BufReader<Stream>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Client {
            reader: BufReader::new(Stream::Plain(s)),
        }
    }

    pub fn connect_tls(addr: SocketAddr) -> Client {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Client {
            reader: BufReader::new(Stream::Tls(Box::new(tls_wrap(s)))),
        }
    }

    /// Connects from `source` instead of the system's choice: all of 127.0.0.0/8 is loopback
    /// on Linux, so a test can play many client addresses against a server on 127.0.0.1.
    /// `tls`: implicit TLS (465, 993, 995). Errors are returned, not panicked on.
    pub fn connect_from(source: IpAddr, addr: SocketAddr, tls: bool) -> std::io::Result<Client> {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            None,
        )?;
        socket.bind(&SocketAddr::new(source, 0).into())?;
        socket.connect_timeout(&addr.into(), Duration::from_secs(10))?;
        let s: TcpStream = socket.into();
        s.set_read_timeout(Some(Duration::from_secs(20)))?;
        let stream = if tls {
            Stream::Tls(Box::new(tls_wrap(s)))
        } else {
            Stream::Plain(s)
        };
        Ok(Client {
            reader: BufReader::new(stream),
        })
    }

    fn tcp(&self) -> Option<&TcpStream> {
        self.reader.get_ref().tcp()
    }

    /// How long a read may wait; past it [`Client::try_line`] returns the timeout error.
    pub fn set_read_timeout(&self, timeout: Duration) {
        if let Some(s) = self.tcp() {
            s.set_read_timeout(Some(timeout)).unwrap();
        }
    }

    /// Closing sends a reset, not a FIN, and leaves no TIME_WAIT socket behind: for loops that
    /// open thousands of connections.
    pub fn reset_on_close(&self) {
        if let Some(s) = self.tcp() {
            socket2::SockRef::from(s)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
        }
    }

    /// Upgrades the connection (after the server's go-ahead for STARTTLS/STLS).
    pub fn upgrade_tls(&mut self) {
        assert!(
            self.reader.buffer().is_empty(),
            "data after the TLS go-ahead"
        );
        let stream = std::mem::replace(self.reader.get_mut(), Stream::Empty);
        let Stream::Plain(tcp) = stream else {
            panic!("already TLS")
        };
        self.reader = BufReader::new(Stream::Tls(Box::new(tls_wrap(tcp))));
    }

    /// Compresses both directions from here on (after the server's OK to COMPRESS DEFLATE).
    pub fn start_deflate(&mut self) {
        self.start_deflate_with(flate2::Compress::new(flate2::Compression::default(), false));
    }

    /// The same, continuing a compressed stream the test has already begun sending by hand.
    /// Whatever was read past the OK is compressed and goes to the inflater.
    pub fn start_deflate_with(&mut self, compress: flate2::Compress) {
        let input = self.reader.buffer().to_vec();
        let inner = std::mem::replace(self.reader.get_mut(), Stream::Empty);
        self.reader = BufReader::new(Stream::Deflate(Box::new(DeflateStream {
            inner,
            compress,
            decompress: flate2::Decompress::new(false),
            input,
            input_pos: 0,
        })));
    }

    /// Octets received on the wire and after inflating, when compressing.
    pub fn deflate_totals(&self) -> Option<(u64, u64)> {
        match self.reader.get_ref() {
            Stream::Deflate(d) => Some((d.decompress.total_in(), d.decompress.total_out())),
            _ => None,
        }
    }

    pub fn send(&mut self, data: &str) {
        self.send_bytes(data.as_bytes());
    }

    pub fn send_bytes(&mut self, data: &[u8]) {
        let s = self.reader.get_mut();
        s.write_all(data).expect("write");
        s.flush().unwrap();
    }

    /// One line without its CRLF; `None` at EOF.
    pub fn line(&mut self) -> Option<String> {
        match self.try_line() {
            Ok(line) => line,
            // A closed connection; over TLS, one closed without close_notify.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::UnexpectedEof
                ) =>
            {
                None
            }
            Err(e) => panic!("read: {e}"),
        }
    }

    /// One line without its CRLF, `Ok(None)` at EOF, or the read error (a timeout, a reset).
    pub fn try_line(&mut self) -> std::io::Result<Option<String>> {
        let mut buf = Vec::new();
        if self.reader.read_until(b'\n', &mut buf)? == 0 {
            return Ok(None);
        }
        while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            buf.pop();
        }
        Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
    }

    pub fn raw_until(&mut self, end: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        while !out.ends_with(end) {
            let mut b = [0u8; 1];
            if self.reader.read(&mut b).expect("read") == 0 {
                break;
            }
            out.push(b[0]);
        }
        out
    }

    pub fn read_exact_bytes(&mut self, n: usize) -> Vec<u8> {
        let mut buf = vec![0u8; n];
        self.reader.read_exact(&mut buf).expect("read literal");
        buf
    }

    /// An SMTP reply: (code, joined text of all its lines).
    pub fn reply(&mut self) -> (u16, String) {
        let mut text = String::new();
        loop {
            let line = self.line().expect("reply line");
            assert!(line.len() >= 3, "short reply line {line:?}");
            let code: u16 = line[..3]
                .parse()
                .unwrap_or_else(|_| panic!("bad reply {line:?}"));
            text.push_str(&line);
            text.push('\n');
            if line.as_bytes().get(3) != Some(&b'-') {
                return (code, text);
            }
        }
    }

    /// Sends a command and returns its reply.
    pub fn cmd(&mut self, line: &str) -> (u16, String) {
        self.send(&format!("{line}\r\n"));
        self.reply()
    }

    pub fn expect(&mut self, line: &str, code: u16) -> String {
        let (c, text) = self.cmd(line);
        assert_eq!(c, code, "{line:?} -> {text}");
        text
    }

    pub fn is_closed(&mut self) -> bool {
        self.line().is_none()
    }
}

/// A TLS client over `tcp` that accepts the test server's self-signed certificate.
pub fn tls_wrap(tcp: TcpStream) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(AcceptAnyCert))
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

/// The test server's certificate is self-signed; these tests check protocol behaviour, not PKI.
#[derive(Debug)]
struct AcceptAnyCert;

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

pub fn b64(s: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in s.chunks(3) {
        let n = chunk.len();
        let v = (chunk[0] as u32) << 16
            | (*chunk.get(1).unwrap_or(&0) as u32) << 8
            | *chunk.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= n {
                out.push(T[(v >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Runs a Python client script with argv = [smtp port, `protocol` port, password]; it must
/// print `python-ok`.
pub fn run_python_client(script: &str, server: &TestServer, protocol: &str) {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(server.addr("smtp").port().to_string())
        .arg(server.addr(protocol).port().to_string())
        .arg(PASSWORD)
        .output()
        .expect("python3");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("python-ok"),
        "{out:?}"
    );
}

/// AUTH PLAIN initial response for `user`/`password`.
pub fn plain(user: &str, password: &str) -> String {
    b64(format!("\0{user}\0{password}").as_bytes())
}

/// SMTP: EHLO, MAIL, RCPT..., DATA, message, expecting 250 at the end. Returns the final reply.
pub fn smtp_send(c: &mut Client, from: &str, rcpts: &[&str], body: &str) -> (u16, String) {
    c.expect(&format!("MAIL FROM:<{from}>"), 250);
    for r in rcpts {
        c.expect(&format!("RCPT TO:<{r}>"), 250);
    }
    c.expect("DATA", 354);
    c.send(body);
    c.cmd(".")
}

/// Connects to port 25, reads the greeting and says EHLO.
pub fn smtp_session(server: &TestServer) -> Client {
    let mut c = Client::connect(server.addr("smtp"));
    assert_eq!(c.reply().0, 220);
    c.expect("EHLO client.test", 250);
    c
}
