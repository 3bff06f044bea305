//! The outbound queue at work: the per-core delivery [`scheduler`], the [`outcome`] of each
//! attempt and the retry policy, and the operator's [`control`] commands (`surel queue ...`).
//!
//! The queue's durable state lives in the store (`store::queue`): each shard has its own
//! queue, and the scheduler of core N works shard N's, on core N's event loop. Mail is
//! accepted into the queue of the core that received it, so nothing crosses cores.

pub mod control;
pub mod outcome;
pub mod scheduler;

use std::time::Duration;

use crate::config::Config;
use crate::dns::{DnsConfig, Resolver};
use crate::relay::client::{ClientConfig, ClientTimeouts, TlsPolicy};
use crate::relay::route::Routes;
use outcome::RetryPolicy;

/// Numbers the scheduler of one core works with (limits already split between the cores).
#[derive(Clone, Debug)]
pub struct QueueConfig {
    pub retry: RetryPolicy,
    pub max_connections: usize,
    pub max_connections_per_site: usize,
    pub max_messages_per_connection: usize,
    pub max_messages_per_minute_per_site: u32,
    pub return_limit: usize,
    /// This host's name, for reports.
    pub hostname: String,
}

/// Everything needed to send mail out: routes, DNS, the SMTP client's settings, the queue's
/// numbers. One per process; each core's scheduler holds a reference.
pub struct Outbound {
    pub routes: Routes,
    pub resolver: Resolver,
    /// Base client settings; TLS policy and credentials come from each destination.
    pub client: ClientConfig,
    pub queue: QueueConfig,
    /// Where this server listens, set once its listeners are bound: mail routed to one of
    /// these addresses would loop.
    own: std::sync::OnceLock<OwnAddresses>,
}

/// This server's listening addresses and the machine's interface addresses.
#[derive(Clone, Debug, Default)]
pub struct OwnAddresses {
    pub listeners: Vec<std::net::SocketAddr>,
    pub interfaces: Vec<std::net::IpAddr>,
}

impl OwnAddresses {
    /// Would connecting to `addr` reach this server?
    pub fn contains(&self, addr: std::net::SocketAddr) -> bool {
        self.listeners.iter().any(|l| {
            l.port() == addr.port()
                && (l.ip() == addr.ip()
                    || (l.ip().is_unspecified()
                        && (addr.ip().is_loopback() || self.interfaces.contains(&addr.ip()))))
        })
    }
}

/// The addresses of this machine's network interfaces.
pub fn interface_addresses() -> Vec<std::net::IpAddr> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let mut out = Vec::new();
    let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills a list we only read and then free with freeifaddrs; every
    // pointer is checked for null and cast by the family the kernel put in sa_family.
    unsafe {
        if libc::getifaddrs(&mut ifap) != 0 {
            return out;
        }
        let mut p = ifap;
        while !p.is_null() {
            let a = (*p).ifa_addr;
            if !a.is_null() {
                match i32::from((*a).sa_family) {
                    libc::AF_INET => {
                        let sin = a as *const libc::sockaddr_in;
                        out.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                            (*sin).sin_addr.s_addr,
                        ))));
                    }
                    libc::AF_INET6 => {
                        let sin6 = a as *const libc::sockaddr_in6;
                        out.push(IpAddr::V6(Ipv6Addr::from((*sin6).sin6_addr.s6_addr)));
                    }
                    _ => {}
                }
            }
            p = (*p).ifa_next;
        }
        libc::freeifaddrs(ifap);
    }
    out
}

impl Outbound {
    /// Records where this server listens (once, after binding).
    pub fn set_own_addresses(&self, listeners: Vec<std::net::SocketAddr>) {
        let _ = self.own.set(OwnAddresses {
            listeners,
            interfaces: interface_addresses(),
        });
    }

    /// Would connecting to `addr` reach this server itself?
    pub fn is_self(&self, addr: std::net::SocketAddr) -> bool {
        self.own.get().is_some_and(|o| o.contains(addr))
    }
}

#[derive(Debug)]
pub struct OutboundError(pub String);

impl std::fmt::Display for OutboundError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// `limit` for all cores → this core's share (at least 1; 0 stays "no limit" where it means that).
fn per_core(limit: usize, cores: usize) -> usize {
    limit.div_ceil(cores.max(1)).max(1)
}

impl Outbound {
    pub fn from_config(config: &Config, hostname: &str) -> Result<Outbound, OutboundError> {
        let relay = &config.relay;
        let cores = config.effective_cores();
        let nameservers = relay
            .nameservers
            .iter()
            .map(|n| {
                n.parse()
                    .map_err(|_| OutboundError(format!("relay.nameservers: bad address {n:?}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let resolver = Resolver::start(DnsConfig {
            nameservers,
            timeout: Duration::from_secs(relay.dns_timeout_secs.max(1)),
            ..DnsConfig::default()
        })
        .map_err(|e| OutboundError(format!("DNS resolver: {e}")))?;
        let extra_ca =
            (!relay.tls_ca_file.is_empty()).then(|| std::path::Path::new(&relay.tls_ca_file));
        let tls_configs = crate::relay::tls::client_configs(extra_ca)
            .map_err(|e| OutboundError(format!("outbound TLS: {e}")))?;
        let helo_name = if relay.helo_name.is_empty() {
            hostname.to_string()
        } else {
            relay.helo_name.clone()
        };
        let command = Duration::from_secs(relay.command_timeout_secs.max(1));
        let client = ClientConfig {
            helo_name,
            tls: TlsPolicy::May,
            tls_configs,
            credentials: None,
            timeouts: ClientTimeouts {
                connect: Duration::from_secs(relay.connect_timeout_secs.max(1)),
                greeting: command,
                command,
                data_block: command,
                data_done: Duration::from_secs(relay.data_timeout_secs.max(1)),
            },
        };
        let per_minute = relay.max_messages_per_minute_per_site;
        Ok(Outbound {
            own: std::sync::OnceLock::new(),
            routes: Routes::from_config(relay),
            resolver,
            client,
            queue: QueueConfig {
                retry: RetryPolicy {
                    initial: relay.retry_initial_secs.max(1) as i64,
                    max: relay.retry_max_secs.max(1) as i64,
                    lifetime: relay.queue_lifetime_secs as i64,
                    delay_warning: relay.delay_warning_secs as i64,
                },
                max_connections: per_core(relay.max_connections, cores),
                max_connections_per_site: per_core(relay.max_connections_per_site, cores),
                max_messages_per_connection: relay.max_messages_per_connection.max(1),
                max_messages_per_minute_per_site: if per_minute == 0 {
                    0
                } else {
                    per_core(per_minute as usize, cores) as u32
                },
                return_limit: relay.bounce_return_limit,
                hostname: hostname.to_string(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn own_addresses_detect_loops() {
        let own = super::OwnAddresses {
            listeners: vec![
                "0.0.0.0:25".parse().unwrap(),
                "127.0.0.1:2525".parse().unwrap(),
            ],
            interfaces: vec!["192.0.2.10".parse().unwrap()],
        };
        assert!(own.contains("192.0.2.10:25".parse().unwrap()));
        assert!(own.contains("127.0.0.1:25".parse().unwrap()));
        assert!(own.contains("127.0.0.1:2525".parse().unwrap()));
        assert!(!own.contains("192.0.2.11:25".parse().unwrap()));
        assert!(!own.contains("127.0.0.2:2525".parse().unwrap()));
        assert!(!own.contains("192.0.2.10:26".parse().unwrap()));
        assert!(
            super::interface_addresses()
                .iter()
                .any(|ip| ip.is_loopback())
        );
    }

    #[test]
    fn limits_split_between_cores() {
        assert_eq!(super::per_core(20, 2), 10);
        assert_eq!(super::per_core(21, 2), 11);
        assert_eq!(super::per_core(1, 4), 1);
        assert_eq!(super::per_core(5, 0), 5);
    }
}
