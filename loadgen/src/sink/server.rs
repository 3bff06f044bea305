//! The sink's listeners and connection driver: one pinned monoio runtime per core, each with its
//! own SO_REUSEPORT listener on the same address (the kernel spreads connections over them), and
//! a thin loop per connection around [`SinkSession`]: read, feed, dump, sleep `delay`, write the
//! whole reply batch, then add the batch's tally to the shared [`Counters`].

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::{TcpListener, TcpStream};
use monoio_rustls::{ServerTlsStream, TlsAcceptor};
use rustls::ServerConfig;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use super::counters::{Counters, Snapshot};
use super::session::{Next, Rng, SessionConfig, SinkSession};

/// A connection that says nothing for this long is closed (RFC 5321 §4.5.3.2.7: 5 minutes).
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Bound on writing one reply batch and on a TLS handshake.
const IO_TIMEOUT: Duration = Duration::from_secs(60);
/// How often an accept loop looks at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(25);
/// Read buffer per connection; command lines are shorter, content is consumed as it arrives.
const READ_BUFFER: usize = 16 * 1024;
/// Buffers kept per core for the next connections.
const POOL_MAX: usize = 256;

/// Everything [`Sink::start`] needs.
#[derive(Clone, Debug)]
pub struct SinkConfig {
    /// Port 0 picks a free port; [`Sink::addr`] tells which.
    pub listen: SocketAddr,
    pub cores: usize,
    /// Pin core k's thread to the k-th CPU counted from the last one (a load generator on the
    /// same machine pins from the first).
    pub pin: bool,
    /// Shares of recipients answered 451 / 550, in percent (fractions allowed).
    pub tempfail_pct: f64,
    pub permfail_pct: f64,
    /// Sleep before writing each reply batch (not before the greeting).
    pub delay: Duration,
    /// Offer STARTTLS with a self-signed certificate made at start.
    pub tls: bool,
    pub max_message_size: u64,
    /// Core k answers RCPT from `Rng::for_core(seed, k)`.
    pub seed: u64,
    /// Write each accepted message to `DIR/NNNNNNNN.eml` (numbered from 1 in acceptance order).
    pub dump_dir: Option<PathBuf>,
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            cores: 1,
            pin: false,
            tempfail_pct: 0.0,
            permfail_pct: 0.0,
            delay: Duration::ZERO,
            tls: false,
            max_message_size: 50 * 1024 * 1024,
            seed: 1,
            dump_dir: None,
        }
    }
}

/// Why the sink could not start.
#[derive(Debug)]
pub struct SinkError(pub String);

impl std::fmt::Display for SinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SinkError {}

fn err(what: impl std::fmt::Display) -> impl FnOnce(io::Error) -> SinkError {
    move |e| SinkError(format!("{what}: {e}"))
}

/// What every core shares.
struct Shared {
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    session: SessionConfig,
    delay: Duration,
    dump_dir: Option<PathBuf>,
    tls: Option<TlsAcceptor>,
}

/// A running sink. Dropping it stops it (like [`Sink::stop`]).
pub struct Sink {
    addr: SocketAddr,
    cores: usize,
    io_uring: bool,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
}

impl Sink {
    /// Binds one listener per core, generates the TLS certificate if asked, and starts the
    /// cores. Returns once every core accepts.
    pub fn start(cfg: SinkConfig) -> Result<Sink, SinkError> {
        let (tempfail_bp, permfail_bp) =
            SessionConfig::shares(cfg.tempfail_pct, cfg.permfail_pct).map_err(SinkError)?;
        let cores = cfg.cores.max(1);
        let listeners = bind_listeners(cfg.listen, cores)?;
        let addr = listeners[0].local_addr().map_err(err("listener address"))?;
        if let Some(dir) = &cfg.dump_dir {
            std::fs::create_dir_all(dir).map_err(err(dir.display()))?;
        }
        let tls = if cfg.tls {
            Some(self_signed_acceptor(addr)?)
        } else {
            None
        };
        let counters = Arc::new(Counters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared {
            counters: counters.clone(),
            stop: stop.clone(),
            session: SessionConfig {
                max_message_size: cfg.max_message_size,
                offer_starttls: cfg.tls,
                keep_content: cfg.dump_dir.is_some(),
                tempfail_bp,
                permfail_bp,
            },
            delay: cfg.delay,
            dump_dir: cfg.dump_dir.clone(),
            tls,
        });
        let cpus = if cfg.pin {
            core_affinity::get_core_ids().unwrap_or_default()
        } else {
            vec![]
        };
        let (ready_tx, ready_rx) = mpsc::channel();
        let mut sink = Sink {
            addr,
            cores,
            io_uring: true,
            counters,
            stop,
            workers: Vec::with_capacity(cores),
        };
        for (core, listener) in listeners.into_iter().enumerate() {
            let cpu = (!cpus.is_empty()).then(|| cpus[cpus.len() - 1 - core % cpus.len()]);
            let (shared, ready) = (shared.clone(), ready_tx.clone());
            let rng = Rng::for_core(cfg.seed, core);
            let handle = std::thread::Builder::new()
                .name(format!("sink-{core}"))
                .spawn(move || core_main(cpu, listener, shared, rng, ready))
                .map_err(err("spawn core thread"))?;
            sink.workers.push(handle);
        }
        drop(ready_tx);
        let deadline = Instant::now() + Duration::from_secs(10);
        for _ in 0..cores {
            let wait = deadline.saturating_duration_since(Instant::now());
            match ready_rx.recv_timeout(wait) {
                Ok(Ok(io_uring)) => sink.io_uring &= io_uring,
                Ok(Err(e)) => return Err(SinkError(e)),
                Err(_) => return Err(SinkError("a core did not start within 10 s".into())),
            }
        }
        Ok(sink)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn cores(&self) -> usize {
        self.cores
    }

    /// `io_uring` or `epoll` (if any core fell back to it).
    pub fn driver(&self) -> &'static str {
        if self.io_uring { "io_uring" } else { "epoll" }
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn snapshot(&self) -> Snapshot {
        self.counters.snapshot()
    }

    /// Waits until `n` recipients were delivered (accepted recipients of accepted messages), at
    /// most `timeout`. True if reached.
    pub fn wait_for_delivered(&self, n: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.counters.recipients_delivered() >= n {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops accepting, drops open connections, joins the cores; returns the final counters.
    pub fn stop(mut self) -> Snapshot {
        self.shutdown();
        self.counters.snapshot()
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// One SO_REUSEPORT listener per core on the same address. With port 0 the first one picks
/// the port and the others join it.
fn bind_listeners(addr: SocketAddr, cores: usize) -> Result<Vec<std::net::TcpListener>, SinkError> {
    if addr.port() != 0 {
        // SO_REUSEPORT would let us share the port with a forgotten sink (of the same user)
        // that would then silently take part of the connections: refuse instead. A plain
        // bind fails on any listener there.
        let probe = socket(addr).map_err(err("socket"))?;
        probe
            .bind(&addr.into())
            .map_err(err(format_args!("cannot listen on {addr}")))?;
    }
    let mut listeners = Vec::with_capacity(cores);
    let mut bound = addr;
    for _ in 0..cores {
        let s = socket(bound).map_err(err("socket"))?;
        s.set_reuse_port(true).map_err(err("SO_REUSEPORT"))?;
        s.bind(&bound.into())
            .map_err(err(format_args!("cannot listen on {bound}")))?;
        s.listen(1024).map_err(err("listen"))?;
        let l: std::net::TcpListener = s.into();
        bound = l.local_addr().map_err(err("listener address"))?;
        listeners.push(l);
    }
    Ok(listeners)
}

fn socket(addr: SocketAddr) -> io::Result<socket2::Socket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    // monoio's legacy (epoll) driver expects it and from_std does not set it.
    s.set_nonblocking(true)?;
    Ok(s)
}

fn self_signed_acceptor(addr: SocketAddr) -> Result<TlsAcceptor, SinkError> {
    let mut names = vec!["localhost".to_string()];
    if !addr.ip().is_unspecified() {
        names.push(addr.ip().to_string());
    }
    let pair = rcgen::generate_simple_self_signed(names)
        .map_err(|e| SinkError(format!("self-signed certificate: {e}")))?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pair.signing_key.serialize_der()));
    let config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .and_then(|b| {
                b.with_no_client_auth()
                    .with_single_cert(vec![pair.cert.der().clone()], key)
            })
            .map_err(|e| SinkError(format!("TLS configuration: {e}")))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// What one core owns.
struct Core {
    shared: Arc<Shared>,
    rng: RefCell<Rng>,
    pool: RefCell<Vec<Buffers>>,
}

/// A connection's read and reply buffers, reused by the next connection on the core.
#[derive(Default)]
struct Buffers {
    input: Vec<u8>,
    out: Vec<u8>,
}

impl Core {
    fn buffers(&self) -> Buffers {
        let mut b = self.pool.borrow_mut().pop().unwrap_or_default();
        b.input.clear();
        b.out.clear();
        b.input.reserve(READ_BUFFER);
        b
    }

    fn recycle(&self, b: Buffers) {
        let mut pool = self.pool.borrow_mut();
        if pool.len() < POOL_MAX && b.input.capacity() <= 4 * READ_BUFFER {
            pool.push(b);
        }
    }

    fn dump(&self, dir: &std::path::Path, content: &[u8]) {
        let counters = &self.shared.counters;
        let path = dir.join(format!("{:08}.eml", counters.next_dump_number()));
        let result = std::fs::write(&path, content);
        if let Err(e) = &result {
            eprintln!("loadgen sink: {}: {e}", path.display());
        }
        counters.dump_written(result.is_ok());
    }
}

fn core_main(
    cpu: Option<core_affinity::CoreId>,
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    rng: Rng,
    ready: mpsc::Sender<Result<bool, String>>,
) {
    if let Some(cpu) = cpu {
        let _ = core_affinity::set_for_current(cpu);
    }
    let rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .with_entries(1024)
        .enable_timer()
        .build();
    let mut rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(format!("cannot build a monoio runtime: {e}")));
            return;
        }
    };
    rt.block_on(async move {
        let listener = match TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                let _ = ready.send(Err(format!("listener: {e}")));
                return;
            }
        };
        let _ = ready.send(Ok(!monoio::utils::is_legacy()));
        let core = Rc::new(Core {
            shared: shared.clone(),
            rng: RefCell::new(rng),
            pool: RefCell::new(Vec::new()),
        });
        let stop = std::pin::pin!(stopped(&shared.stop));
        let mut stop = stop;
        loop {
            monoio::select! {
                _ = &mut stop => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        monoio::spawn(serve(stream, core.clone()));
                    }
                    // Out of descriptors and the like: back off instead of spinning.
                    Err(_) => monoio::time::sleep(Duration::from_millis(10)).await,
                },
            }
        }
    });
}

async fn stopped(stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        monoio::time::sleep(STOP_POLL).await;
    }
}

async fn serve(stream: TcpStream, core: Rc<Core>) {
    let counters = core.shared.counters.clone();
    counters.connection_opened();
    let _ = stream.set_nodelay(true);
    let mut buffers = core.buffers();
    let _ = converse(stream, &core, &mut buffers).await;
    core.recycle(buffers);
    counters.connection_closed();
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<ServerTlsStream<TcpStream>>),
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("{what} timed out"))
}

impl Stream {
    /// Appends what arrives to `buf`; 0 = the peer closed. On error the buffer may be lost
    /// (left empty): the connection is over anyway.
    async fn read(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(READ_BUFFER);
        }
        let owned = std::mem::take(buf);
        let (len, cap) = (owned.len(), owned.capacity());
        let slice = owned.slice_mut(len..cap);
        let result = match self {
            Stream::Plain(s) => monoio::time::timeout(IDLE_TIMEOUT, s.read(slice)).await,
            Stream::Tls(s) => monoio::time::timeout(IDLE_TIMEOUT, s.read(slice)).await,
        };
        let (r, slice) = result.map_err(|_| timed_out("read"))?;
        *buf = slice.into_inner();
        r
    }

    /// Writes all of `buf` and clears it (keeping its capacity).
    async fn write_all(&mut self, buf: &mut Vec<u8>) -> io::Result<()> {
        let owned = std::mem::take(buf);
        let result = match self {
            Stream::Plain(s) => monoio::time::timeout(IO_TIMEOUT, s.write_all(owned)).await,
            Stream::Tls(s) => monoio::time::timeout(IO_TIMEOUT, s.write_all(owned)).await,
        };
        let (r, mut owned) = result.map_err(|_| timed_out("write"))?;
        owned.clear();
        *buf = owned;
        r.map(|_| ())
    }

    async fn close(&mut self) {
        let _ = match self {
            Stream::Plain(s) => monoio::time::timeout(IO_TIMEOUT, s.shutdown()).await,
            // close_notify
            Stream::Tls(s) => monoio::time::timeout(IO_TIMEOUT, s.shutdown()).await,
        };
    }
}

async fn converse(stream: TcpStream, core: &Core, b: &mut Buffers) -> io::Result<()> {
    let shared = &core.shared;
    let mut io = Stream::Plain(stream);
    let mut session = SinkSession::new(shared.session);
    session.greeting(&mut b.out);
    io.write_all(&mut b.out).await?;
    loop {
        if io.read(&mut b.input).await? == 0 {
            return Ok(());
        }
        let (used, next) = session.feed(&b.input, &mut core.rng.borrow_mut(), &mut b.out);
        b.input.drain(..used);
        if let Some(dir) = &shared.dump_dir {
            // Before the 250 goes out: a client that saw it finds the file.
            for content in session.take_accepted() {
                core.dump(dir, &content);
            }
        }
        let tally = session.take_tally();
        if !b.out.is_empty() {
            if !shared.delay.is_zero() {
                monoio::time::sleep(shared.delay).await;
            }
            io.write_all(&mut b.out).await?;
        }
        // Only now: a counter never claims a message whose 250 the client has not been sent.
        shared.counters.add(&tally);
        match next {
            Next::Read => {}
            Next::Close => {
                io.close().await;
                return Ok(());
            }
            Next::StartTls => {
                let Some(acceptor) = &shared.tls else {
                    return Ok(());
                };
                let Stream::Plain(tcp) = io else {
                    return Ok(());
                };
                // RFC 3207: whatever the client pipelined after STARTTLS is dropped.
                b.input.clear();
                let tls = monoio::time::timeout(IO_TIMEOUT, acceptor.accept(tcp))
                    .await
                    .map_err(|_| timed_out("TLS handshake"))?
                    .map_err(io::Error::from)?;
                io = Stream::Tls(Box::new(tls));
                session.tls_started();
                shared.counters.tls_session();
            }
        }
    }
}
