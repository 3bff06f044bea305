//! Server configuration: an embedded default (`surel config default` prints it), overridden by
//! an optional TOML file and then by command-line flags.
//!
//! Every limit has a safe default here, so a server started with no file is strict: no open
//! relay, no cleartext AUTH, TLS 1.2+, bounded lines, messages, recipients and connections.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The embedded default configuration, documented key by key.
pub const DEFAULT_CONFIG: &str = include_str!("default-config.toml");

#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for ConfigError {}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Name used in greetings and Received headers; empty = the system's host name.
    #[serde(default)]
    pub hostname: String,
    pub data_dir: PathBuf,
    /// Worker threads (one per core, each pinned); 0 = all cores.
    pub cores: usize,
    pub listen_address: IpAddr,
    /// Domains that are local in addition to `localhost` and the domains of existing users.
    pub local_domains: Vec<String>,
    /// Account that receives mail for `postmaster@<local domain>`; empty = first account created.
    pub postmaster: String,
    pub ports: Ports,
    /// Listeners not to start, by name (`smtp`, `submission`, `submissions`, `pop3`, `pop3s`, ...).
    pub disable: Vec<String>,
    /// After binding the listeners, become this user (started as root). Empty: stay as is.
    pub run_as: String,
    pub limits: Limits,
    pub tls: Tls,
    pub auth: Auth,
    pub store: Store,
    pub relay: Relay,
    /// alias address → one or more target addresses.
    pub aliases: HashMap<String, Vec<String>>,
}

/// Outbound mail: who may relay, where mail goes, how hard the queue tries.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Relay {
    /// Networks (CIDR) whose clients may relay through port 25 without authenticating.
    pub allowed_networks: Vec<String>,
    /// Everything goes through this host instead of DNS (empty: use MX records).
    pub smarthost: NextHop,
    /// Per destination domain: the host that takes its mail (overrides DNS and the smarthost).
    pub routes: HashMap<String, NextHop>,
    /// TLS towards hosts found through DNS: `may` (encrypt when offered, no certificate
    /// check), `require`, `verify` (require a certificate valid for the MX name) or `none`.
    pub tls: String,
    /// Extra CA certificates (PEM) trusted for `verify`, besides the system's.
    pub tls_ca_file: String,
    /// Port of hosts found through DNS (tests point it at a high port).
    pub smtp_port: u16,
    /// DNS servers, `ip:port`; empty: /etc/resolv.conf.
    pub nameservers: Vec<String>,
    pub dns_timeout_secs: u64,
    /// Name sent in EHLO; empty: the server's host name.
    pub helo_name: String,
    pub connect_timeout_secs: u64,
    pub command_timeout_secs: u64,
    pub data_timeout_secs: u64,
    /// Outbound connections in total (all cores).
    pub max_connections: usize,
    /// Outbound connections to one destination site (all cores).
    pub max_connections_per_site: usize,
    pub max_messages_per_connection: usize,
    /// Messages per minute to one destination site (all cores); 0: no limit.
    pub max_messages_per_minute_per_site: u32,
    /// First retry delay; it doubles with each attempt up to `retry_max_secs`.
    pub retry_initial_secs: u64,
    pub retry_max_secs: u64,
    /// A message not delivered after this long is returned to its sender.
    pub queue_lifetime_secs: u64,
    /// Send the sender a delay warning after this long (0: never).
    pub delay_warning_secs: u64,
    /// Failure reports return the whole original up to this size, else only its header.
    pub bounce_return_limit: usize,
}

/// A next hop: `"host:port"` (`"host"` alone: port 25), or a table with TLS and credentials.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum NextHop {
    Address(String),
    Detailed(NextHopDetail),
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NextHopDetail {
    pub host: String,
    #[serde(default)]
    pub port: Option<u16>,
    /// `may`, `require`, `verify` or `none`; default `may` (and `require` with credentials).
    #[serde(default)]
    pub tls: Option<String>,
    /// AUTH PLAIN/LOGIN credentials; only ever sent over TLS.
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: String,
}

impl NextHop {
    /// The detailed form; `None` for an empty address (no next hop configured).
    pub fn detail(&self) -> Option<NextHopDetail> {
        match self {
            NextHop::Address(a) if a.trim().is_empty() => None,
            NextHop::Address(a) => {
                let a = a.trim();
                // `[v6]:port`, `host:port`, or `host`.
                let (host, port) = match a.rsplit_once(':') {
                    Some((h, p))
                        if !h.is_empty()
                            && p.parse::<u16>().is_ok()
                            && (h.starts_with('[') || !h.contains(':')) =>
                    {
                        (
                            h.trim_start_matches('[').trim_end_matches(']').to_string(),
                            p.parse().ok(),
                        )
                    }
                    _ => (
                        a.trim_start_matches('[').trim_end_matches(']').to_string(),
                        None,
                    ),
                };
                Some(NextHopDetail {
                    host,
                    port,
                    tls: None,
                    username: String::new(),
                    password: String::new(),
                })
            }
            NextHop::Detailed(d) if d.host.trim().is_empty() => None,
            NextHop::Detailed(d) => Some(d.clone()),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ports {
    pub smtp: u16,
    pub submission: u16,
    pub submissions: u16,
    pub pop3: u16,
    pub pop3s: u16,
    pub imap: u16,
    pub imaps: u16,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub idle_timeout_secs: u64,
    pub command_timeout_secs: u64,
    /// A command line, or a transfer, must arrive whole within this of its first byte (plus
    /// what `min_transfer_rate` allows for its size).
    pub command_line_timeout_secs: u64,
    /// Octets per second an unfinished transfer must average after that.
    pub min_transfer_rate: u64,
    /// A reply write that makes no progress for this long closes the connection.
    pub write_timeout_secs: u64,
    /// Memory all unfinished incoming messages may hold together (MiB).
    pub transfer_memory_mb: usize,
    pub shutdown_grace_secs: u64,
    pub max_message_size: usize,
    pub max_recipients: usize,
    pub max_command_line: usize,
    pub max_data_line: usize,
    pub max_errors: usize,
    pub read_buffer: usize,
    /// IMAP autologout before LOGIN/AUTHENTICATE, counted from connect.
    pub imap_prelogin_timeout_secs: u64,
    /// Offer IMAP COMPRESS=DEFLATE (RFC 4978) after login.
    pub imap_compress: bool,
    /// Its DEFLATE level, 1 (fastest) to 9.
    pub imap_compress_level: u32,
    /// Deepest nesting of OR, NOT and parentheses in an IMAP SEARCH.
    pub imap_max_search_depth: usize,
    /// Live SEARCH/SORT results (RETURN (UPDATE), RFC 5267) one IMAP session may keep.
    pub imap_max_update_contexts: usize,
    /// Longest IMAP command line (literals excluded) after login; before login
    /// `max_command_line` applies (at least 8192, RFC 7162 §4).
    pub imap_max_command_line_authenticated: usize,
    /// Mailboxes per account.
    pub max_mailboxes: usize,
    /// Octets (UTF-8) of a whole mailbox name, of one hierarchy level, and levels per name.
    pub max_mailbox_name: usize,
    pub max_mailbox_level: usize,
    pub max_mailbox_depth: usize,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// PEM certificate chain and key; empty = a self-signed pair generated in `<data_dir>/tls/`.
    pub cert: String,
    pub key: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    /// Allow AUTH/LOGIN/USER+PASS without TLS. Unsafe outside tests and loopback benchmarks.
    pub allow_plaintext: bool,
    pub verifier_threads: usize,
    pub throttle_after_failures: u32,
    pub throttle_account_after_failures: u32,
    pub throttle_base_delay_ms: u64,
    pub throttle_max_delay_secs: u64,
    pub max_pending_per_ip: u32,
    /// How long a login waits for a password check slot before "try again later".
    pub busy_wait_secs: u64,
    /// MAIL FROM (and a local From: address) must belong to the authenticated account.
    pub enforce_sender: bool,
}

impl Limits {
    /// The mailbox model's limits (enforced by the store, consulted by IMAP).
    pub fn mailboxes(&self) -> crate::store::names::MailboxLimits {
        crate::store::names::MailboxLimits {
            max_name_bytes: self.max_mailbox_name,
            max_level_bytes: self.max_mailbox_level,
            max_depth: self.max_mailbox_depth,
            max_mailboxes: self.max_mailboxes,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Store {
    /// fdatasync before acknowledging. `false` is UNSAFE (acknowledged mail can be lost on a
    /// crash or power loss) and only meant for benchmarks.
    pub fsync: bool,
    pub segment_mb: u64,
    pub checkpoint_mb: u64,
    pub queue_segment_mb: u64,
    /// Compact a sealed mailbox log segment in the background once at least this percentage of
    /// it is dead (0: only `surel store compact`).
    pub compact_dead_pct: u8,
}

impl Config {
    /// Checks what serde cannot: network syntax, TLS policy names, next hops.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_limits()?;
        for n in &self.relay.allowed_networks {
            n.parse::<crate::delivery::router::Network>()
                .map_err(|e| ConfigError(format!("relay.allowed_networks: {e}")))?;
        }
        let policy = |where_: &str, p: &str| match p {
            "may" | "require" | "verify" | "none" => Ok(()),
            other => Err(ConfigError(format!(
                "{where_}: unknown TLS policy {other:?} (may, require, verify, none)"
            ))),
        };
        policy("relay.tls", &self.relay.tls)?;
        let hops = std::iter::once(("relay.smarthost".to_string(), &self.relay.smarthost)).chain(
            self.relay
                .routes
                .iter()
                .map(|(d, h)| (format!("relay.routes.{d:?}"), h)),
        );
        for (where_, hop) in hops {
            if let Some(d) = hop.detail() {
                if let Some(t) = &d.tls {
                    policy(&where_, t)?;
                }
                if (d.username.is_empty()) != (d.password.is_empty()) {
                    return Err(ConfigError(format!(
                        "{where_}: username and password go together"
                    )));
                }
            } else if matches!(hop, NextHop::Detailed(_)) {
                return Err(ConfigError(format!("{where_}: empty host")));
            }
        }
        for ns in &self.relay.nameservers {
            ns.parse::<std::net::SocketAddr>()
                .map_err(|_| ConfigError(format!("relay.nameservers: {ns:?} is not ip:port")))?;
        }
        Ok(())
    }
}

impl Config {
    /// Limits with a hard ceiling: mailbox names are copied and matched in full, and SEARCH
    /// trees are walked recursively.
    fn validate_limits(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        l.mailboxes()
            .within_ceiling()
            .map_err(|e| ConfigError(format!("limits: {e}")))?;
        let max = crate::imap::MAX_SEARCH_DEPTH_CEILING;
        if l.imap_max_search_depth == 0 || l.imap_max_search_depth > max {
            return Err(ConfigError(format!(
                "limits: imap_max_search_depth must be between 1 and {max}"
            )));
        }
        // RFC 5267 §4.3.1: at least one updating context per client.
        if l.imap_max_update_contexts == 0 || l.imap_max_update_contexts > 1000 {
            return Err(ConfigError(
                "limits: imap_max_update_contexts must be between 1 and 1000".into(),
            ));
        }
        if !(1..=9).contains(&l.imap_compress_level) {
            return Err(ConfigError(
                "limits: imap_compress_level must be between 1 and 9".into(),
            ));
        }
        if l.imap_prelogin_timeout_secs == 0 {
            return Err(ConfigError(
                "limits: imap_prelogin_timeout_secs must be at least 1".into(),
            ));
        }
        // RFC 7162 §4: clients may send command lines of 8192 octets.
        if !(8192..=16 << 20).contains(&l.imap_max_command_line_authenticated) {
            return Err(ConfigError(
                "limits: imap_max_command_line_authenticated must be between 8192 and 16777216"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Parses a TOML document layered over the embedded default: keys the file leaves out keep
    /// their default values.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let mut merged: toml::Table = DEFAULT_CONFIG
            .parse()
            .map_err(|e| ConfigError(format!("embedded default config: {e}")))?;
        let user: toml::Table = text.parse().map_err(|e| ConfigError(describe(&e, text)))?;
        merge(&mut merged, user);
        let serialized = toml::to_string(&merged).map_err(|e| ConfigError(e.to_string()))?;
        // Unknown keys and bad types are found here; report them against the user's text.
        let config = toml::from_str::<Config>(&serialized).map_err(|e| {
            let key = e.message().to_string();
            match locate_key(&key, text) {
                Some(line) => ConfigError(format!("line {line}: {key}")),
                None => ConfigError(key),
            }
        })?;
        config.validate()?;
        Ok(config)
    }

    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        match path {
            None => Config::from_toml(""),
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| ConfigError(format!("{}: {e}", p.display())))?;
                Config::from_toml(&text).map_err(|e| ConfigError(format!("{}: {e}", p.display())))
            }
        }
    }

    /// The host name to announce: the configured one, else the system's.
    pub fn effective_hostname(&self) -> String {
        if !self.hostname.is_empty() {
            return self.hostname.clone();
        }
        let mut buf = [0u8; 256];
        // SAFETY: buf is valid for its length; gethostname NUL-terminates on success.
        let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
        if rc == 0 {
            let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
            if let Ok(name) = std::str::from_utf8(&buf[..end])
                && !name.is_empty()
            {
                return name.to_ascii_lowercase();
            }
        }
        "localhost".to_string()
    }

    pub fn effective_cores(&self) -> usize {
        if self.cores > 0 {
            return self.cores;
        }
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    }

    pub fn is_enabled(&self, listener: &str) -> bool {
        !self
            .disable
            .iter()
            .any(|d| d.eq_ignore_ascii_case(listener))
    }
}

fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            // Maps the operator writes whole (aliases, routes) replace the default's.
            (Some(toml::Value::Table(b)), toml::Value::Table(o))
                if key != "aliases" && key != "routes" =>
            {
                merge(b, o)
            }
            (_, v) => {
                base.insert(key, v);
            }
        }
    }
}

fn describe(e: &toml::de::Error, text: &str) -> String {
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: {}", e.message())
        }
        None => e.message().to_string(),
    }
}

/// Finds the line of the first backquoted key named in a serde message (e.g. "unknown field
/// `prot`"), so the operator is told where to look.
fn locate_key(message: &str, text: &str) -> Option<usize> {
    let start = message.find('`')? + 1;
    let end = start + message[start..].find('`')?;
    let key = &message[start..end];
    text.lines()
        .position(|l| {
            let t = l.trim_start();
            t.starts_with(key) && t[key.len()..].trim_start().starts_with('=')
        })
        .map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_parses() {
        let c = Config::from_toml("").unwrap();
        assert_eq!(c.ports.smtp, 25);
        assert_eq!(c.ports.imaps, 993);
        assert!(c.store.fsync);
        assert!(!c.auth.allow_plaintext);
    }

    #[test]
    fn file_overrides_only_what_it_names() {
        let c = Config::from_toml("[ports]\nsmtp = 2525\n[limits]\nmax_recipients = 7\n").unwrap();
        assert_eq!(c.ports.smtp, 2525);
        assert_eq!(c.ports.submission, 587);
        assert_eq!(c.limits.max_recipients, 7);
        assert_eq!(c.limits.max_errors, 20);
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let err = Config::from_toml("hostname = \"x\"\n[ports]\nsmtpp = 1\n").unwrap_err();
        assert!(err.0.contains("smtpp"), "{err}");
        assert!(err.0.contains("line 3"), "{err}");
    }

    #[test]
    fn syntax_error_names_line() {
        let err = Config::from_toml("a = 1\nb = = 2\n").unwrap_err();
        assert!(err.0.contains("line 2"), "{err}");
    }

    #[test]
    fn relay_section() {
        let c = Config::from_toml(
            "[relay]\nallowed_networks = [\"10.0.0.0/8\"]\nsmarthost = \"smtp.example.net:587\"\n\
             [relay.routes]\n\"example.net\" = \"127.0.0.1:2525\"\n\
             \"secure.example\" = { host = \"mx.secure.example\", tls = \"verify\" }\n",
        )
        .unwrap();
        let sh = c.relay.smarthost.detail().unwrap();
        assert_eq!((sh.host.as_str(), sh.port), ("smtp.example.net", Some(587)));
        let r = c.relay.routes["example.net"].detail().unwrap();
        assert_eq!((r.host.as_str(), r.port), ("127.0.0.1", Some(2525)));
        let s = c.relay.routes["secure.example"].detail().unwrap();
        assert_eq!(s.tls.as_deref(), Some("verify"));
        assert_eq!(
            NextHop::Address("[::1]:26".into()).detail().unwrap().host,
            "::1"
        );
        assert_eq!(
            NextHop::Address("mx.test".into()).detail().unwrap().port,
            None
        );
        assert!(
            Config::from_toml("")
                .unwrap()
                .relay
                .smarthost
                .detail()
                .is_none()
        );
        for bad in [
            "[relay]\nallowed_networks = [\"10.0.0.0/99\"]\n",
            "[relay]\ntls = \"sometimes\"\n",
            "[relay]\nnameservers = [\"127.0.0.1\"]\n",
            "[relay.routes]\n\"x.test\" = { host = \"h\", username = \"u\" }\n",
        ] {
            assert!(Config::from_toml(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn imap_and_mailbox_limits() {
        let c = Config::from_toml("").unwrap();
        let l = crate::imap::ImapLimits::from_config(&c.limits);
        assert_eq!(l, crate::imap::ImapLimits::default());
        // RFC 7162 §4 asks for 8192; Dovecot's 64 KiB after login is the default.
        assert_eq!(c.limits.imap_max_command_line_authenticated, 65536);
        let c = Config::from_toml(
            "[limits]\nmax_mailboxes = 5\nimap_max_search_depth = 7\nimap_prelogin_timeout_secs = 2\nimap_compress = false\nimap_compress_level = 6\n",
        )
        .unwrap();
        let l = crate::imap::ImapLimits::from_config(&c.limits);
        assert_eq!(l.mailboxes.max_mailboxes, 5);
        assert_eq!(l.max_search_depth, 7);
        assert_eq!(l.prelogin_timeout, std::time::Duration::from_secs(2));
        assert!(!l.compress);
        assert_eq!(l.compress_level, 6);
        for bad in [
            "[limits]\nmax_mailboxes = 0\n",
            "[limits]\nmax_mailboxes = 1000000\n",
            "[limits]\nmax_mailbox_name = 5000\n",
            "[limits]\nmax_mailbox_depth = 0\n",
            "[limits]\nimap_max_search_depth = 100000\n",
            "[limits]\nimap_prelogin_timeout_secs = 0\n",
            "[limits]\nimap_max_update_contexts = 0\n",
            "[limits]\nimap_compress_level = 0\n",
            "[limits]\nimap_compress_level = 10\n",
            "[limits]\nimap_max_command_line_authenticated = 4096\n",
            "[limits]\nimap_max_command_line_authenticated = 100000000\n",
        ] {
            let err = Config::from_toml(bad).unwrap_err();
            assert!(err.0.starts_with("limits: "), "{bad}: {err}");
        }
    }

    #[test]
    fn aliases_replace_not_merge() {
        let c = Config::from_toml("[aliases]\n\"info@x.test\" = [\"a@x.test\", \"b@x.test\"]\n")
            .unwrap();
        assert_eq!(c.aliases["info@x.test"].len(), 2);
    }
}
