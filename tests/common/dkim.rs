//! An independent DKIM verifier for tests: mail-auth over hickory, resolving keys through the
//! DNS server the test started. Include it with `#[path = "common/dkim.rs"] mod dkim_check;`.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use mail_auth::hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts,
};
use mail_auth::{AuthenticatedMessage, DkimResult, MessageAuthenticator};

/// mail-auth's verdict on every DKIM signature of `message`, resolving through `dns` (UDP).
pub fn verdicts(dns: SocketAddr, message: &[u8]) -> Vec<DkimResult> {
    let mut udp = ConnectionConfig::udp();
    udp.port = dns.port();
    let mut opts = ResolverOpts::default();
    opts.timeout = Duration::from_secs(2);
    opts.attempts = 2;
    opts.cache_size = 0;
    let config = ResolverConfig::from_parts(
        None,
        vec![],
        vec![NameServerConfig::new(dns.ip(), true, vec![udp])],
    );
    let authenticator = MessageAuthenticator::new(config, opts).unwrap();
    let parsed = AuthenticatedMessage::parse(message).unwrap();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            authenticator
                .verify_dkim(&parsed)
                .await
                .into_iter()
                .map(|o| o.result().clone())
                .collect()
        })
}
