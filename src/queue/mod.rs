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
    fn limits_split_between_cores() {
        assert_eq!(super::per_core(20, 2), 10);
        assert_eq!(super::per_core(21, 2), 11);
        assert_eq!(super::per_core(1, 4), 1);
        assert_eq!(super::per_core(5, 0), 5);
    }
}
