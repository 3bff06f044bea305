//! DNS lookups for the outbound relay (MX, then A/AAAA of each exchange) and for inbound checks
//! (TXT for SPF, DKIM, DMARC).
//!
//! ## What this module owns
//! One OS thread named `dns`. It runs a tokio current-thread runtime holding a hickory
//! resolver and hickory's answer cache (answers are kept for their TTL). Nothing else in surel
//! touches tokio.
//!
//! ## Why a side thread
//! hickory-resolver only runs on tokio, while every surel core runs its own monoio runtime
//! (io_uring or epoll), where a tokio future panics ("there is no reactor running"). So the
//! cores never run hickory: [`Resolver`] is a cheap clone holding a channel sender. A lookup
//! puts a request on a bounded queue and awaits a `futures_channel::oneshot`, which works
//! under monoio, tokio or any other executor and never blocks the caller's thread.
//! DNS traffic is small next to mail traffic, so one thread is enough, and one cache serves
//! every core.
//!
//! ## What callers get
//! The answers are already classified, in one place ([`answer`]), into what a mail server
//! acts on:
//! * NXDOMAIN is permanent (the domain does not exist): [`MxLookup::NoSuchDomain`],
//!   [`IpLookup::NotFound`], [`TxtLookup::NotFound`].
//! * NODATA (the name exists, without records of that type) is not an error: an MX lookup
//!   then says [`MxLookup::NoMx`] (deliver to the domain's own addresses, RFC 5321 §5.1).
//! * SERVFAIL, REFUSED, timeouts and network errors are temporary: `TempFail(why)`.
//!
//! ## Names
//! Every name is looked up as a fully qualified name: no search list, no `ndots`, no
//! `domain` from resolv.conf, so `example` is never retried as `example.corp.local`. Names
//! are checked first ([`name`]): letters, digits, `-` and `_`, labels of 1 to 63 octets, at
//! most 253 octets in all; a Unicode domain is converted to its A-label (punycode) form. A
//! name that fails the check cannot exist in the DNS and gets the "does not exist" answer
//! without a query.
//!
//! ## Bounds
//! * Each lookup answers within `timeout × (attempts + 1)`, whatever the servers do (CNAME
//!   chains included).
//! * At most [`DnsConfig::max_in_flight`] lookups run at once; further requests wait in a
//!   queue of [`DnsConfig::queue_capacity`]; beyond that a request is answered at once with
//!   `TempFail("resolver overloaded")`.
//! * If the thread has stopped (or [`Resolver::shutdown`] was called), every request is
//!   answered `TempFail("resolver stopped")`: never a hang, never a panic.
//!
//! ## Configuration
//! With [`DnsConfig::nameservers`] set, only those servers are asked (UDP, then TCP for
//! truncated answers), on their given port, and `/etc/hosts` is not read. When it is empty,
//! the `nameserver` lines of `/etc/resolv.conf` are used (port 53) and `/etc/hosts` is
//! consulted first, like the system resolver; the other resolv.conf options are ignored in
//! favour of [`DnsConfig`]. hickory answers `localhost.` itself (127.0.0.1 / ::1, RFC 6761):
//! the relay must refuse loopback destinations on its own.

mod answer;
mod name;
mod side_thread;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_channel::oneshot;
use hickory_resolver::proto::rr::Name;
use tokio::sync::mpsc;

use name::query_name;

/// Configuration of the [`Resolver`].
#[derive(Clone, Debug)]
pub struct DnsConfig {
    /// Nameservers to query (UDP+TCP) — tests point this at a DNS server on 127.0.0.1:PORT.
    /// Empty = the system configuration (/etc/resolv.conf).
    pub nameservers: Vec<SocketAddr>,
    /// Per-query timeout and attempts; every lookup is bounded in time.
    /// `attempts` counts every try, the first included (like resolv.conf's `attempts:`).
    pub timeout: Duration,
    pub attempts: usize,
    /// Cache size (entries); answers are cached with their TTLs (hickory's cache).
    pub cache_size: usize,
    /// Requests waiting for the DNS thread; beyond it a lookup answers
    /// `TempFail("resolver overloaded")` at once.
    pub queue_capacity: usize,
    /// Lookups the DNS thread runs at once; the others wait in the queue.
    pub max_in_flight: usize,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            nameservers: Vec::new(),
            timeout: Duration::from_secs(5),
            attempts: 2,
            cache_size: 4096,
            queue_capacity: 65536,
            max_in_flight: 1024,
        }
    }
}

impl DnsConfig {
    /// The most one lookup may take: every attempt plus one more timeout of slack for a
    /// CNAME hop or a TCP retry of a truncated answer.
    pub fn lookup_deadline(&self) -> Duration {
        let tries = u32::try_from(self.attempts.max(1)).unwrap_or(u32::MAX);
        self.timeout.saturating_mul(tries.saturating_add(1))
    }
}

/// One MX record: a host that accepts mail for the domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MxHost {
    pub preference: u16,
    /// Lowercase, A-label (punycode) form, no trailing dot.
    pub exchange: String,
}

/// The answer to an MX lookup, in the terms of RFC 5321 §5.1 and RFC 7505.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MxLookup {
    /// MX records, sorted by preference; equal preferences in random order (RFC 5321 §5.1).
    /// Null MX records ("." exchange) mixed with real ones are left out.
    Hosts(Vec<MxHost>),
    /// The domain exists but has no MX: deliver to its own A/AAAA (implicit MX).
    NoMx,
    /// A single MX with exchange "." (RFC 7505): the domain accepts no mail.
    NullMx,
    /// NXDOMAIN: the domain does not exist (a permanent failure).
    NoSuchDomain,
    /// SERVFAIL, timeout, refused, network error: try again later. The string says what.
    TempFail(String),
}

/// The addresses of a host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IpLookup {
    /// IPv4 first, then IPv6, without duplicates; never empty. When one family answers and
    /// the other fails temporarily, the addresses found are returned.
    Addrs(Vec<IpAddr>),
    /// No such name, or a name without A and AAAA records.
    NotFound,
    TempFail(String),
}

/// The TXT records of a name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxtLookup {
    /// One string per record, its character-strings concatenated (a DKIM key longer than 255
    /// octets comes split in several). Octets that are not UTF-8 become U+FFFD. Never empty.
    Records(Vec<String>),
    /// No such name, or no TXT record at it.
    NotFound,
    TempFail(String),
}

/// The resolver could not be started.
#[derive(Debug)]
pub struct DnsError(pub String);

impl fmt::Display for DnsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DNS resolver: {}", self.0)
    }
}

impl std::error::Error for DnsError {}

/// What a core sends to the DNS thread. Names are checked before they are sent.
enum Request {
    Mx {
        name: Name,
        reply: oneshot::Sender<MxLookup>,
    },
    Ips {
        name: Name,
        reply: oneshot::Sender<IpLookup>,
    },
    Txt {
        name: Name,
        reply: oneshot::Sender<TxtLookup>,
    },
}

/// A handle to the DNS thread; clone it freely (one per core, per connection...). The thread
/// stops when the last clone is dropped or [`Resolver::shutdown`] is called.
#[derive(Clone)]
pub struct Resolver {
    requests: mpsc::Sender<Request>,
    /// Dropping (or firing) this sender stops the thread, even while requests are queued.
    stop: Arc<Mutex<Option<oneshot::Sender<()>>>>,
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolver").finish_non_exhaustive()
    }
}

const STOPPED: &str = "resolver stopped";
const OVERLOADED: &str = "resolver overloaded";

impl Resolver {
    /// Starts the side thread. Errors (bad system config...) are returned, not panicked.
    /// Blocks until the thread has built its resolver (it reads /etc/resolv.conf when no
    /// nameserver is configured), so call it at start-up, not on a core's event loop.
    pub fn start(config: DnsConfig) -> Result<Resolver, DnsError> {
        if config.timeout.is_zero() {
            return Err(DnsError("the query timeout must not be zero".into()));
        }
        let (requests, queue) = mpsc::channel(config.queue_capacity.max(1));
        let (stop, stopped) = oneshot::channel();
        side_thread::spawn(config, queue, stopped)?;
        Ok(Resolver {
            requests,
            stop: Arc::new(Mutex::new(Some(stop))),
        })
    }

    /// MX lookup for a mail domain (RFC 5321 §5.1, RFC 7505).
    pub async fn mx(&self, domain: &str) -> MxLookup {
        let Some(name) = query_name(domain) else {
            return MxLookup::NoSuchDomain;
        };
        self.ask(|reply| Request::Mx { name, reply })
            .await
            .unwrap_or_else(MxLookup::TempFail)
    }

    /// A and AAAA of a host, both families, IPv4 first then IPv6 (deduplicated).
    /// `host` is a name: an address literal is looked up as a name (and not found).
    pub async fn ips(&self, host: &str) -> IpLookup {
        let Some(name) = query_name(host) else {
            return IpLookup::NotFound;
        };
        self.ask(|reply| Request::Ips { name, reply })
            .await
            .unwrap_or_else(IpLookup::TempFail)
    }

    /// TXT strings of a name, each record's character-strings concatenated.
    pub async fn txt(&self, name: &str) -> TxtLookup {
        let Some(name) = query_name(name) else {
            return TxtLookup::NotFound;
        };
        self.ask(|reply| Request::Txt { name, reply })
            .await
            .unwrap_or_else(TxtLookup::TempFail)
    }

    /// Stops the DNS thread (for every clone of this handle): lookups in flight or queued,
    /// and all later ones, answer `TempFail("resolver stopped")`. Does not wait.
    pub fn shutdown(&self) {
        let stop = self.stop.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(stop) = stop {
            let _ = stop.send(());
        }
    }

    /// Queues a request and awaits its answer; `Err` says why there is none.
    async fn ask<T>(
        &self,
        request: impl FnOnce(oneshot::Sender<T>) -> Request,
    ) -> Result<T, String> {
        let (reply, answer) = oneshot::channel();
        match self.requests.try_send(request(reply)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => return Err(OVERLOADED.into()),
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(STOPPED.into()),
        }
        // The sender is dropped unanswered only when the thread stops (or a lookup task
        // panicked, which tokio contains).
        answer.await.map_err(|_| STOPPED.to_string())
    }
}
