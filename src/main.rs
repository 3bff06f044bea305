//! The `surel` command: run the server, manage accounts, print the default configuration.

use std::io::{IsTerminal, Read};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use surel::auth::UserDb;
use surel::config::{Config, DEFAULT_CONFIG};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "surel",
    version,
    about = "A thread-per-core mail server: SMTP, POP3, IMAP"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (on the embedded default configuration unless --config is given).
    Serve {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Add N to every port (e.g. 10000: 10025, 10587, 10465, 10110, ...), to run unprivileged.
        #[arg(long, default_value_t = 0)]
        port_offset: u16,
        /// Worker threads, one per core (default: all cores).
        #[arg(long)]
        cores: Option<usize>,
        /// Address to listen on (overrides `listen_address`).
        #[arg(long)]
        listen: Option<IpAddr>,
    },
    /// Manage accounts (takes effect in a running server without a restart).
    User {
        #[command(subcommand)]
        action: UserAction,
    },
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// DKIM signing keys for outbound mail (kept in <data_dir>/dkim/).
    Dkim {
        #[command(subcommand)]
        action: DkimAction,
    },
    /// Inspect and manage the outbound queue (works while the server runs, and without it).
    Queue {
        #[command(subcommand)]
        action: QueueAction,
        #[arg(long, global = true)]
        data_dir: Option<PathBuf>,
        #[arg(long, global = true)]
        config: Option<PathBuf>,
    },
    /// Maintain the message store: compaction, consistency check.
    Store {
        #[command(subcommand)]
        action: StoreAction,
        #[arg(long, global = true)]
        data_dir: Option<PathBuf>,
        #[arg(long, global = true)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum StoreAction {
    /// Give back the space of expunged messages and deleted mailboxes now (works while the
    /// server runs, and without it).
    Compact {
        /// Rewrite segments of which at least this percentage is dead (default: the configured
        /// `[store] compact_dead_pct`, or 50 when that is 0).
        #[arg(long, value_parser = clap::value_parser!(u8).range(0..=100))]
        dead_pct: Option<u8>,
    },
    /// Verify every record of every segment, the index and the checkpoints (offline only:
    /// stop the server first). Exit status 0 when clean.
    Check {
        /// Truncate torn log tails (only what start-up would) and remove leftover temporary
        /// files; damage elsewhere is reported, never dropped.
        #[arg(long)]
        repair: bool,
    },
}

#[derive(Subcommand)]
enum DkimAction {
    /// Generate a signing key for DOMAIN; prints the DNS TXT record to publish.
    Generate {
        domain: String,
        /// rsa (rsa-sha256, 2048-bit) or ed25519 (RFC 8463; not every receiver checks it).
        #[arg(long, default_value = "rsa")]
        algorithm: String,
        /// The DNS label the key is published under: <selector>._domainkey.<domain>.
        #[arg(long, default_value = "surel")]
        selector: String,
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum QueueAction {
    /// Every queued message: id, size, arrival, sender; each recipient with its state,
    /// attempts, next try and last reply.
    List {
        /// One JSON object per message.
        #[arg(long)]
        json: bool,
    },
    /// Try every waiting message now (needs a running server).
    Flush,
    /// Drop a message from the queue, without telling its sender.
    Remove { id: String },
    /// Return a message to its sender now (failure report) and drop it.
    Bounce { id: String },
    /// Keep a message in the queue without trying it.
    Hold { id: String },
    /// Try a held message again.
    Release { id: String },
}

#[derive(Subcommand)]
enum UserAction {
    /// Create an account; the password is read from standard input.
    Add {
        address: String,
        #[arg(long, required = true)]
        password_stdin: bool,
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Create many accounts at once from FILE ("-" = standard input): one `address password`
    /// per line. Hashes on all cores and rewrites the accounts file once.
    Import {
        file: PathBuf,
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Change an account's password, read from standard input.
    Passwd {
        address: String,
        #[arg(long, required = true)]
        password_stdin: bool,
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Delete an account (its stored mail is kept).
    Remove {
        address: String,
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// List accounts, one per line.
    List {
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Print the embedded default configuration.
    Default,
    /// Check a configuration file and print the effective values.
    Check { file: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("surel: {message}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(config: Option<PathBuf>, data_dir: Option<PathBuf>) -> Result<Config, String> {
    let mut cfg = Config::load(config.as_deref()).map_err(|e| e.to_string())?;
    if let Some(dir) = data_dir {
        cfg.data_dir = dir;
    }
    Ok(cfg)
}

fn read_password() -> Result<String, String> {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .map_err(|e| format!("reading the password: {e}"))?;
    let password = input.lines().next().unwrap_or("").to_string();
    if password.is_empty() {
        return Err("empty password on standard input".into());
    }
    Ok(password)
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Serve {
            config,
            data_dir,
            port_offset,
            cores,
            listen,
        } => {
            let _log = init_logging()?;
            let mut cfg = load_config(config, data_dir)?;
            if let Some(n) = cores {
                cfg.cores = n;
            }
            if let Some(addr) = listen {
                cfg.listen_address = addr;
            }
            apply_port_offset(&mut cfg, port_offset)?;
            surel::runtime::serve(cfg).map_err(|e| e.to_string())
        }
        Command::User { action } => user_command(action),
        Command::Dkim { action } => dkim_command(action),
        Command::Queue {
            action,
            data_dir,
            config,
        } => queue_command(action, config, data_dir),
        Command::Store {
            action,
            data_dir,
            config,
        } => store_command(action, config, data_dir),
        Command::Config { action } => match action {
            ConfigAction::Default => {
                print!("{DEFAULT_CONFIG}");
                Ok(())
            }
            ConfigAction::Check { file } => {
                let cfg = Config::load(Some(&file)).map_err(|e| e.to_string())?;
                println!("{cfg:#?}");
                Ok(())
            }
        },
    }
}

fn user_command(action: UserAction) -> Result<(), String> {
    let open = |config, data_dir| -> Result<UserDb, String> {
        let cfg = load_config(config, data_dir)?;
        UserDb::open(&cfg.data_dir).map_err(|e| e.to_string())
    };
    match action {
        UserAction::Add {
            address,
            data_dir,
            config,
            ..
        } => {
            let db = open(config, data_dir)?;
            let password = read_password()?;
            db.add(&address, &password).map_err(|e| e.to_string())
        }
        UserAction::Import {
            file,
            data_dir,
            config,
        } => {
            let db = open(config, data_dir)?;
            let text = if file.as_os_str() == "-" {
                let mut t = String::new();
                std::io::stdin()
                    .read_to_string(&mut t)
                    .map_err(|e| format!("reading standard input: {e}"))?;
                t
            } else {
                std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?
            };
            let mut accounts = Vec::new();
            for (n, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let (address, password) = line
                    .split_once(char::is_whitespace)
                    .filter(|(_, p)| !p.trim().is_empty())
                    .ok_or_else(|| format!("line {}: expected `address password`", n + 1))?;
                accounts.push((address.to_string(), password.trim().to_string()));
            }
            db.add_many(&accounts).map_err(|e| e.to_string())?;
            println!("imported {} accounts", accounts.len());
            Ok(())
        }
        UserAction::Passwd {
            address,
            data_dir,
            config,
            ..
        } => {
            let db = open(config, data_dir)?;
            let password = read_password()?;
            db.set_password(&address, &password)
                .map_err(|e| e.to_string())
        }
        UserAction::Remove {
            address,
            data_dir,
            config,
        } => open(config, data_dir)?
            .remove(&address)
            .map_err(|e| e.to_string()),
        UserAction::List { data_dir, config } => {
            for address in open(config, data_dir)?.list().map_err(|e| e.to_string())? {
                println!("{address}");
            }
            Ok(())
        }
    }
}

fn dkim_command(action: DkimAction) -> Result<(), String> {
    match action {
        DkimAction::Generate {
            domain,
            algorithm,
            selector,
            data_dir,
            config,
        } => {
            let algorithm: surel::dkim::DkimAlgorithm =
                algorithm.parse().map_err(|e: surel::dkim::DkimError| e.0)?;
            let cfg = load_config(config, data_dir)?;
            let dir = surel::dkim::key_dir(&cfg.data_dir);
            let (path, record) =
                surel::dkim::generate(&dir, &domain, &selector, algorithm).map_err(|e| e.0)?;
            eprintln!("surel: wrote {}; publish this DNS record:", path.display());
            println!("{record}");
            Ok(())
        }
    }
}

fn queue_command(
    action: QueueAction,
    config: Option<PathBuf>,
    data_dir: Option<PathBuf>,
) -> Result<(), String> {
    use surel::queue::control::{self, BounceSettings, Command as Q};
    let cfg = load_config(config, data_dir)?;
    let cmd = match action {
        QueueAction::List { json } => Q::List { json },
        QueueAction::Flush => Q::Flush,
        QueueAction::Remove { id } => Q::Remove(id),
        QueueAction::Bounce { id } => Q::Bounce(id),
        QueueAction::Hold { id } => Q::Hold(id),
        QueueAction::Release { id } => Q::Release(id),
    };
    // Validated here too, so a bad id is refused the same way with or without a server.
    Q::parse(&cmd.to_line())?;
    let output = match control::send(&cfg.data_dir, &cmd)? {
        Some(answer) => answer?,
        None => {
            let store = surel::store::LogStore::open_existing(&cfg.data_dir.join("store"))
                .map_err(|e| format!("{}: {e}", cfg.data_dir.display()))?;
            let bounce = BounceSettings {
                hostname: cfg.effective_hostname(),
                return_limit: cfg.relay.bounce_return_limit,
            };
            let answer = control::execute(&store, &cmd, &bounce, false);
            store.close();
            answer?
        }
    };
    print!("{output}");
    Ok(())
}

fn store_command(
    action: StoreAction,
    config: Option<PathBuf>,
    data_dir: Option<PathBuf>,
) -> Result<(), String> {
    use surel::queue::control::{self, BounceSettings, Command as C};
    use surel::store::StoreConfig;
    let cfg = load_config(config, data_dir)?;
    let store_dir = cfg.data_dir.join("store");
    match action {
        StoreAction::Compact { dead_pct } => {
            let cmd = C::StoreCompact { dead_pct };
            let output = match control::send(&cfg.data_dir, &cmd)? {
                Some(answer) => answer?,
                None => {
                    let store = surel::store::LogStore::open_existing_with(StoreConfig {
                        dir: store_dir.clone(),
                        shards: 0,
                        fsync: cfg.store.fsync,
                        segment_bytes: cfg.store.segment_mb.max(1) << 20,
                        checkpoint_bytes: cfg.store.checkpoint_mb.max(1) << 20,
                        queue_segment_bytes: cfg.store.queue_segment_mb.max(1) << 20,
                        // Only the pass asked for.
                        compact_dead_pct: 0,
                        mailbox_limits: cfg.limits.mailboxes(),
                    })
                    .map_err(|e| format!("{}: {e}", cfg.data_dir.display()))?;
                    // No server: the threshold comes from this configuration.
                    let pct = dead_pct.or(match cfg.store.compact_dead_pct {
                        0 => None,
                        p => Some(p.min(100)),
                    });
                    let bounce = BounceSettings {
                        hostname: cfg.effective_hostname(),
                        return_limit: cfg.relay.bounce_return_limit,
                    };
                    let answer = control::execute(
                        &store,
                        &C::StoreCompact { dead_pct: pct },
                        &bounce,
                        false,
                    );
                    store.close();
                    answer?
                }
            };
            print!("{output}");
            Ok(())
        }
        StoreAction::Check { repair } => {
            let report = surel::store::check::check(&store_dir, repair)
                .map_err(|e| format!("{}: {e}", store_dir.display()))?;
            print!("{}", report.render());
            if report.is_clean() {
                Ok(())
            } else {
                Err("the store is damaged (see above)".into())
            }
        }
    }
}

fn apply_port_offset(cfg: &mut Config, offset: u16) -> Result<(), String> {
    if offset == 0 {
        return Ok(());
    }
    let p = &mut cfg.ports;
    for (name, port) in [
        ("smtp", &mut p.smtp),
        ("submission", &mut p.submission),
        ("submissions", &mut p.submissions),
        ("pop3", &mut p.pop3),
        ("pop3s", &mut p.pop3s),
        ("imap", &mut p.imap),
        ("imaps", &mut p.imaps),
    ] {
        if *port != 0 {
            *port = port.checked_add(offset).ok_or_else(|| {
                format!("--port-offset {offset} pushes the {name} port past 65535")
            })?;
        }
    }
    Ok(())
}

/// Logs go to stderr through a buffer and a writer thread (`runtime::log`): an event loop
/// never waits on whatever reads stderr. The guard flushes what is left when it is dropped.
fn init_logging() -> Result<surel::runtime::log::FlushGuard, String> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SUREL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (writer, guard) = surel::runtime::log::BufferedStderr::start()
        .map_err(|e| format!("log writer thread: {e}"))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    Ok(guard)
}
