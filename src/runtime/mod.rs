//! The engine: one pinned worker thread per core, each with its own monoio runtime (io_uring,
//! or the epoll driver where io_uring is unavailable or `MONOIO_FORCE_LEGACY_DRIVER=1`), its own
//! SO_REUSEPORT listeners, and its own connections. Cores share nothing on the hot path but
//! [`Services`] (immutable config plus the store and auth handles, which shard internally).
//!
//! Shutdown: SIGTERM/SIGINT set a process-wide flag; each core notices it, stops accepting,
//! tells idle sessions goodbye, lets sessions inside a transaction finish for up to
//! `shutdown_grace_secs`, then returns. The store is closed (flushed, checkpointed) last.

pub mod limits;
pub mod listeners;
pub mod log;
pub mod privileges;

use std::net::SocketAddr;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use monoio::net::{TcpListener, TcpStream};
use monoio::{FusionDriver, FusionRuntime, RuntimeBuilder};

use crate::auth::{
    AuthConfig, Authenticator, DirectoryConfig, LocalDirectory, ThrottleConfig, UserDb,
};
use crate::config::Config;
use crate::delivery::Pipeline;
use crate::delivery::router::Network;
use crate::dkim::{DkimKeys, DkimSigner};
use crate::net::{ConnectionSettings, ShutdownSignal, Timeouts, TransferBudget};
use crate::queue::Outbound;
use crate::queue::scheduler::Scheduler;
use crate::store::{LogStore, StoreConfig};
pub use limits::ConnectionLimits;
pub use listeners::Protocol;

/// Everything a connection may need, shared by all cores. Each field is safe to use from any
/// core without a global lock.
pub struct Services {
    pub config: Config,
    pub hostname: String,
    pub store: LogStore,
    pub directory: Arc<LocalDirectory>,
    pub auth: Authenticator,
    pub tls: Arc<rustls::ServerConfig>,
    pub limits: Arc<ConnectionLimits>,
    pub smtp: Arc<crate::smtp::SmtpConfig>,
    pub pop3: Arc<crate::pop3::Pop3Config>,
    pub imap: crate::imap::ImapConfig,
    pub pop3_locks: crate::pop3::driver::MaildropLocks,
    pub timeouts: Timeouts,
    /// Buffer sizes, the write timeout and the transfer memory budget of every connection.
    pub connection: ConnectionSettings,
    /// Networks whose clients may relay without authenticating (`relay.allowed_networks`).
    pub relay_networks: Vec<Network>,
    /// The message pipeline every accepted message goes through.
    pub pipeline: Pipeline<LogStore, DkimSigner>,
    /// Routes, DNS and client settings for mail leaving through the queue.
    pub outbound: Arc<Outbound>,
    /// Debug builds started with `SUREL_TEST_HOOKS=1`: enables [`TEST_PANIC_USER`] and
    /// [`TEST_RELEASE_READS`].
    pub test_hooks: bool,
}

/// In a debug build started with `SUREL_TEST_HOOKS=1`, logging in as this user panics the
/// connection's task (to test that a panic stays inside its connection).
pub const TEST_PANIC_USER: &str = "panic@test-hook.invalid";

/// With `SUREL_TEST_HOOKS=1` (debug builds), body reads of
/// [`crate::store::body_read::TEST_SLOW_READ_ACCOUNT`] wait, off the event loop, until this
/// file exists in the data directory: a test holds a FETCH or RETR in a "slow disk" read.
pub const TEST_RELEASE_READS: &str = "test-hook-release-reads";

/// Per-core state, owned by the core's thread.
pub struct Core {
    /// This core's number; also the store shard whose outbound queue it works.
    pub index: usize,
    pub services: Arc<Services>,
    pub shutdown: ShutdownSignal,
    pub tls: crate::net::TlsAcceptor,
}

impl Core {
    /// Runs a protocol driver over an accepted connection with this core's TLS acceptor and
    /// the configured handshake timeout and read buffer.
    pub async fn serve_connection<D: crate::net::SessionDriver>(
        &self,
        stream: TcpStream,
        implicit_tls: bool,
        driver: &mut D,
    ) {
        let services = &self.services;
        let tls = crate::net::TlsSetup {
            acceptor: &self.tls,
            handshake_timeout: services.timeouts.command,
            connection: &services.connection,
        };
        crate::net::serve_connection(stream, implicit_tls, tls, driver).await;
    }

    /// Checks a password off the event loop. A client whose checks are all in flight (a
    /// webmail or an office behind one address logging many users in at once) waits for a
    /// slot for up to `auth.busy_wait_secs` before being told to try later; that is capacity,
    /// never counted as a failure. Every failed attempt is logged (for operators and
    /// fail2ban, see `contrib/fail2ban`), with the user name as given and the reason.
    pub async fn authenticate(
        &self,
        protocol: Protocol,
        peer: SocketAddr,
        username: &str,
        password: &str,
    ) -> crate::auth::AuthOutcome {
        use crate::auth::AuthOutcome;
        // Debug builds only, and only when the test harness asks for it: a way for tests to
        // make a connection task panic through the real path.
        #[cfg(debug_assertions)]
        if self.services.test_hooks && username == TEST_PANIC_USER {
            panic!("test hook: deliberate panic in a connection task");
        }
        let auth = &self.services.auth;
        let patience = Duration::from_secs(self.services.config.auth.busy_wait_secs);
        let started = Instant::now();
        let outcome = loop {
            match auth.verify(peer.ip(), username, password).await {
                AuthOutcome::Busy if started.elapsed() < patience => {
                    monoio::time::sleep(Duration::from_millis(10)).await;
                }
                outcome => break outcome,
            }
        };
        let reason = match &outcome {
            AuthOutcome::Accepted(account) => {
                tracing::info!(
                    "login: protocol={} client={} user={account}",
                    protocol.name(),
                    peer.ip()
                );
                return outcome;
            }
            AuthOutcome::Rejected => "password",
            AuthOutcome::Throttled => "throttled",
            AuthOutcome::Busy => "busy",
        };
        // `{:?}` quotes and escapes the name as given: it cannot forge a log line.
        tracing::info!(
            "login failed: protocol={} client={} user={:?} reason={reason}",
            protocol.name(),
            peer.ip(),
            username
        );
        outcome
    }
}

#[derive(Debug)]
pub struct ServerError(pub String);

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for ServerError {}

/// Set by the signal handler thread; read by every core.
static SHUTDOWN: AtomicBool = AtomicBool::new(false);

pub fn request_shutdown() {
    SHUTDOWN.store(true, Ordering::Release);
}

impl Services {
    pub fn open(config: Config) -> Result<Arc<Services>, ServerError> {
        let hostname = config.effective_hostname();
        let data_dir = config.data_dir.clone();
        std::fs::create_dir_all(&data_dir)
            .map_err(|e| ServerError(format!("{}: {e}", data_dir.display())))?;
        let cores = config.effective_cores();
        let store = LogStore::open(StoreConfig {
            dir: data_dir.join("store"),
            shards: cores,
            fsync: config.store.fsync,
            segment_bytes: config.store.segment_mb.max(1) << 20,
            checkpoint_bytes: config.store.checkpoint_mb.max(1) << 20,
            queue_segment_bytes: config.store.queue_segment_mb.max(1) << 20,
            mailbox_limits: config.limits.mailboxes(),
            compact_dead_pct: config.store.compact_dead_pct.min(100),
        })
        .map_err(|e| ServerError(format!("opening the store: {e}")))?;
        let users = UserDb::open(&data_dir).map_err(|e| ServerError(e.to_string()))?;
        users
            .watch()
            .map_err(|e| ServerError(format!("users file watcher: {e}")))?;
        let directory = LocalDirectory::new(
            users.clone(),
            DirectoryConfig {
                local_domains: config.local_domains.clone(),
                aliases: config.aliases.clone(),
                postmaster: (!config.postmaster.is_empty()).then(|| config.postmaster.clone()),
            },
        )
        .map_err(|e| ServerError(format!("directory: {e}")))?;
        let directory = Arc::new(directory);
        let auth = Authenticator::new(
            users.clone(),
            AuthConfig {
                threads: config.auth.verifier_threads.max(1),
                throttle: ThrottleConfig {
                    free_failures: config.auth.throttle_after_failures,
                    account_free_failures: config.auth.throttle_account_after_failures,
                    base_delay: Duration::from_millis(config.auth.throttle_base_delay_ms.max(1)),
                    max_delay: Duration::from_secs(config.auth.throttle_max_delay_secs),
                    max_pending_per_ip: config.auth.max_pending_per_ip,
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .map_err(|e| ServerError(format!("authenticator: {e}")))?;
        let none_if_empty = |s: &str| (!s.is_empty()).then(|| Path::new(s).to_path_buf());
        let tls = crate::net::tls::server_config(
            none_if_empty(&config.tls.cert).as_deref(),
            none_if_empty(&config.tls.key).as_deref(),
            &data_dir,
            &hostname,
        )
        .map_err(|e| ServerError(format!("TLS: {e}")))?;
        let outbound_connections = config.relay.max_connections;
        let open_files = raise_open_files_limit(wanted_open_files(&config));
        let max_connections = limits::cap_below_open_files(
            config.limits.max_connections,
            open_files,
            outbound_connections,
        );
        if max_connections < config.limits.max_connections {
            tracing::warn!(
                configured = config.limits.max_connections,
                open_files,
                max_connections,
                "the open-files limit leaves room for fewer connections than configured: \
                 capping them so that clients over the cap get a reply"
            );
        }
        let limits = ConnectionLimits::new(max_connections, config.limits.max_connections_per_ip);
        let l = &config.limits;
        let smtp = Arc::new(crate::smtp::SmtpConfig {
            hostname: hostname.clone(),
            max_message_size: l.max_message_size,
            max_recipients: l.max_recipients,
            max_command_line: l.max_command_line,
            max_data_line: l.max_data_line,
            max_errors: l.max_errors,
            allow_plaintext_auth: config.auth.allow_plaintext,
            enforce_sender: config.auth.enforce_sender,
        });
        let pop3 = Arc::new(crate::pop3::Pop3Config {
            hostname: hostname.clone(),
            max_line: l.max_command_line,
            max_errors: l.max_errors,
            allow_plaintext_auth: config.auth.allow_plaintext,
        });
        let imap = crate::imap::ImapConfig {
            hostname: hostname.clone(),
            max_literal: u32::try_from(l.max_message_size).unwrap_or(u32::MAX),
            max_line: l.max_command_line.max(8192),
            max_line_authenticated: l.imap_max_command_line_authenticated,
            max_errors: u32::try_from(l.max_errors).unwrap_or(u32::MAX),
            allow_plaintext_auth: config.auth.allow_plaintext,
            limits: crate::imap::ImapLimits::from_config(l),
            ..Default::default()
        };
        let timeouts = Timeouts {
            idle: Duration::from_secs(l.idle_timeout_secs.max(1)),
            command: Duration::from_secs(l.command_timeout_secs.max(1)),
            line: Duration::from_secs(l.command_line_timeout_secs.max(1)),
            min_rate: l.min_transfer_rate,
            deadline: None,
        };
        let connection = ConnectionSettings {
            read_buffer: l.read_buffer,
            write_timeout: Duration::from_secs(l.write_timeout_secs.max(1)),
            budget: Arc::new(TransferBudget::new(
                l.transfer_memory_mb.saturating_mul(1 << 20),
            )),
        };
        let relay_networks = config
            .relay
            .allowed_networks
            .iter()
            .map(|n| n.parse::<Network>().map_err(ServerError))
            .collect::<Result<Vec<_>, _>>()?;
        let keys = DkimKeys::load(&crate::dkim::key_dir(&data_dir))
            .map_err(|e| ServerError(format!("DKIM keys: {e}")))?;
        for key in keys.iter() {
            tracing::info!(
                domain = key.domain(),
                selector = key.selector(),
                algorithm = %key.algorithm(),
                "DKIM signing key"
            );
        }
        let signer = DkimSigner::start(keys, cores.clamp(1, 2));
        let mut pipeline = Pipeline::new(store.clone(), signer, hostname.clone());
        if config.auth.enforce_sender {
            pipeline = pipeline.with_sender_check(directory.clone());
        }
        let outbound = Arc::new(
            Outbound::from_config(&config, &hostname).map_err(|e| ServerError(e.to_string()))?,
        );
        let test_hooks = cfg!(debug_assertions)
            && std::env::var_os("SUREL_TEST_HOOKS").is_some_and(|v| v == "1");
        if test_hooks {
            crate::store::body_read::enable_test_hook(data_dir.join(TEST_RELEASE_READS));
        }
        Ok(Arc::new(Services {
            config,
            hostname,
            store,
            directory,
            auth,
            tls,
            limits,
            smtp,
            pop3,
            imap,
            pop3_locks: Default::default(),
            timeouts,
            connection,
            relay_networks,
            pipeline,
            outbound,
            test_hooks,
        }))
    }
}

/// Binds every enabled listener, starts one worker per core and blocks until shutdown.
pub fn serve(config: Config) -> Result<(), ServerError> {
    let cores = config.effective_cores();
    let mut bound = Vec::new();
    for protocol in Protocol::ALL {
        if !config.is_enabled(protocol.name()) {
            continue;
        }
        let addr = SocketAddr::new(
            config.listen_address,
            protocol.configured_port(&config.ports),
        );
        let listener = listeners::bind(protocol, addr, cores)
            .map_err(|e| ServerError(format!("{} listener on {addr}: {e}", protocol.name())))?;
        tracing::info!(protocol = protocol.name(), address = %listener.address, "listening");
        bound.push(listener);
    }
    if !config.run_as.is_empty() {
        // Raising the hard open-files limit needs root: do it before root is gone.
        raise_open_files_limit(wanted_open_files(&config));
        privileges::drop_to(&config.run_as, &config.data_dir)?;
    }
    let services = Services::open(config)?;
    let cfg = &services.config;
    let control = crate::queue::control::serve(
        &cfg.data_dir,
        services.store.clone(),
        crate::queue::control::BounceSettings {
            hostname: services.hostname.clone(),
            return_limit: cfg.relay.bounce_return_limit,
        },
    )
    .map_err(|e| ServerError(format!("control socket: {e}")))?;
    services
        .outbound
        .set_own_addresses(bound.iter().map(|b| b.address).collect());
    write_ports_file(&cfg.data_dir, &bound)?;
    install_signal_handlers()?;

    let core_ids = core_affinity::get_core_ids().unwrap_or_default();
    let mut threads = Vec::new();
    for index in 0..cores {
        let sockets: Vec<(Protocol, std::net::TcpListener)> = bound
            .iter_mut()
            .map(|b| (b.protocol, b.per_core.pop().expect("one socket per core")))
            .collect();
        let services = services.clone();
        let core_id = core_ids.get(index % core_ids.len().max(1)).copied();
        let handle = std::thread::Builder::new()
            .name(format!("core-{index}"))
            .spawn(move || run_core(index, core_id, sockets, services))
            .map_err(|e| ServerError(format!("spawning core {index}: {e}")))?;
        threads.push(handle);
    }
    let mut failed = None;
    for t in threads {
        if let Ok(Err(e)) | Err(e) = t.join().map_err(|_| ServerError("a core panicked".into())) {
            failed = Some(e);
        }
    }
    let _ = std::fs::remove_file(&control);
    services.store.close();
    let _ = std::fs::remove_file(cfg.data_dir.join("ports"));
    tracing::info!("stopped");
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// `<data_dir>/ports`: one `name address` line per listener, written once every listener is
/// bound, so scripts and tests know where to connect (and that the server is ready).
fn write_ports_file(
    data_dir: &Path,
    bound: &[listeners::BoundListener],
) -> Result<(), ServerError> {
    let mut text = String::new();
    for b in bound {
        text.push_str(&format!("{} {}\n", b.protocol.name(), b.address));
    }
    let tmp = data_dir.join("ports.tmp");
    std::fs::write(&tmp, text)
        .and_then(|_| std::fs::rename(&tmp, data_dir.join("ports")))
        .map_err(|e| ServerError(format!("writing ports file: {e}")))
}

/// Descriptors for every configured connection, inbound and outbound, plus the reserve.
fn wanted_open_files(config: &Config) -> u64 {
    (config.limits.max_connections as u64)
        .saturating_add(limits::RESERVED_DESCRIPTORS + config.relay.max_connections as u64)
}

/// Every connection is a file descriptor: lift the soft open-files limit towards `wanted`
/// (as far as the hard limit allows, or further when privileged), so the connection caps,
/// not a default of 1024, decide how many clients fit. Returns the limit in force.
fn raise_open_files_limit(wanted: u64) -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_max < wanted {
            // Only root may raise the hard limit; elsewhere this fails and we keep the max.
            let raised = libc::rlimit {
                rlim_cur: wanted,
                rlim_max: wanted,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
        if limit.rlim_cur < limit.rlim_max {
            let target = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &target) == 0 {
                limit = target;
            } else {
                tracing::warn!("could not raise the open-files limit");
            }
        }
    }
    tracing::info!(open_files = limit.rlim_cur, "open-files limit");
    limit.rlim_cur
}

fn install_signal_handlers() -> Result<(), ServerError> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .map_err(|e| ServerError(format!("signal handlers: {e}")))?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                tracing::info!(signal = sig, "shutting down");
                request_shutdown();
            }
        })
        .map_err(|e| ServerError(format!("signal thread: {e}")))?;
    Ok(())
}

fn run_core(
    index: usize,
    core_id: Option<core_affinity::CoreId>,
    sockets: Vec<(Protocol, std::net::TcpListener)>,
    services: Arc<Services>,
) -> Result<(), ServerError> {
    if let Some(id) = core_id
        && !core_affinity::set_for_current(id)
    {
        tracing::warn!(core = index, "could not pin the worker to its core");
    }
    let runtime = RuntimeBuilder::<FusionDriver>::new()
        .with_entries(1024)
        .enable_timer()
        .build()
        .map_err(|e| ServerError(format!("core {index}: runtime: {e}")))?;
    let driver = match runtime {
        FusionRuntime::Uring(_) => "io_uring",
        FusionRuntime::Legacy(_) => "epoll",
    };
    tracing::info!(core = index, driver, "core started");
    let mut runtime = runtime;
    runtime.block_on(async move {
        let core = Rc::new(Core {
            index,
            tls: crate::net::TlsAcceptor::from(services.tls.clone()),
            services,
            shutdown: ShutdownSignal::new(),
        });
        for (protocol, std_listener) in sockets {
            let listener = TcpListener::from_std(std_listener)
                .map_err(|e| ServerError(format!("core {index}: listener: {e}")))?;
            monoio::spawn(accept_loop(protocol, listener, core.clone()));
        }
        let scheduler = Scheduler::new(
            index,
            core.services.store.clone(),
            core.services.directory.clone(),
            core.services.outbound.clone(),
            core.shutdown.clone(),
        );
        monoio::spawn(scheduler.clone().run());
        while !SHUTDOWN.load(Ordering::Acquire) {
            monoio::time::sleep(Duration::from_millis(100)).await;
        }
        core.shutdown.trigger();
        drain(&core, &scheduler).await;
        Ok(())
    })
}

/// Waits for this process's connections, and this core's outbound transactions, to finish,
/// up to the grace period (an outbound transaction cut short is sent again after restart).
async fn drain(core: &Core, scheduler: &Scheduler) {
    let grace = Duration::from_secs(core.services.config.limits.shutdown_grace_secs);
    let deadline = Instant::now() + grace;
    while (core.services.limits.active() > 0 || scheduler.busy() > 0) && Instant::now() < deadline {
        monoio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn accept_loop(protocol: Protocol, listener: TcpListener, core: Rc<Core>) {
    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted = monoio::select! {
            r = listener.accept() => Some(r),
            _ = core.shutdown.wait() => None,
        };
        match accepted {
            None => return,
            Some(Ok((stream, peer))) => {
                backoff = Duration::from_millis(5);
                let _ = stream.set_nodelay(true);
                match core.services.limits.admit(protocol, peer.ip()) {
                    Some(admission) => {
                        let connection = handle(protocol, stream, peer, core.clone(), admission);
                        monoio::spawn(PanicContained::new(protocol, peer, connection));
                    }
                    None => {
                        monoio::spawn(refuse(protocol, stream));
                    }
                }
            }
            Some(Err(e)) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(protocol = protocol.name(), error = %e, "accept failed");
                monoio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

async fn handle(
    protocol: Protocol,
    stream: TcpStream,
    peer: SocketAddr,
    core: Rc<Core>,
    _admission: limits::Admission,
) {
    match protocol {
        Protocol::Smtp | Protocol::Submission | Protocol::Submissions => {
            crate::smtp::driver::serve(protocol, stream, peer, &core).await
        }
        Protocol::Pop3 | Protocol::Pop3s => {
            crate::pop3::driver::serve(protocol, stream, peer, &core).await
        }
        Protocol::Imap | Protocol::Imaps => {
            crate::imap::driver::serve(protocol, stream, peer, &core).await
        }
    }
}

/// Connection tasks that panicked since start (all cores).
static CONNECTION_PANICS: AtomicU64 = AtomicU64::new(0);

/// How many connection tasks have panicked since the process started.
pub fn connection_panics() -> u64 {
    CONNECTION_PANICS.load(Ordering::Relaxed)
}

/// A connection's task, with any panic inside it contained to that connection: monoio does not
/// catch task panics, so one would otherwise unwind through the core's event loop and take
/// every connection and listener of the core with it. The connection is dropped (its socket
/// closed, its admission and memory reservations released), the panic logged with the
/// connection's context and counted, and the core goes on.
struct PanicContained<F> {
    protocol: Protocol,
    peer: SocketAddr,
    task: std::pin::Pin<Box<F>>,
}

impl<F: std::future::Future<Output = ()>> PanicContained<F> {
    fn new(protocol: Protocol, peer: SocketAddr, task: F) -> Self {
        PanicContained {
            protocol,
            peer,
            task: Box::pin(task),
        }
    }
}

impl<F: std::future::Future<Output = ()>> std::future::Future for PanicContained<F> {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        let task = self.task.as_mut();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| task.poll(cx))) {
            Ok(poll) => poll,
            Err(payload) => {
                let total = CONNECTION_PANICS.fetch_add(1, Ordering::Relaxed) + 1;
                let what = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "non-text panic".into());
                tracing::error!(
                    protocol = self.protocol.name(),
                    client = %self.peer,
                    panics = total,
                    "connection task panicked, connection closed: {what}"
                );
                std::task::Poll::Ready(())
            }
        }
    }
}

/// Tells a client over the connection cap why it is turned away, in its protocol's words.
async fn refuse(protocol: Protocol, mut stream: TcpStream) {
    use monoio::io::AsyncWriteRentExt;
    let line: &'static [u8] = match protocol {
        Protocol::Smtp | Protocol::Submission => b"421 4.7.0 Too many connections, try later\r\n",
        Protocol::Pop3 => b"-ERR [SYS/TEMP] Too many connections, try later\r\n",
        Protocol::Imap => b"* BYE Too many connections, try later\r\n",
        // Implicit-TLS ports cannot say anything before the handshake.
        Protocol::Submissions | Protocol::Pop3s | Protocol::Imaps => return,
    };
    let _ = stream.write_all(line).await;
}
