//! Outbound SMTP: the client the relay uses to hand queued mail to other servers.
//!
//! * [`reply`]: sans-IO reader of the server's replies (multi-line, limits, garbage refused).
//! * [`tls`]: the client TLS configurations (system roots + extra CA, or accept-any for
//!   opportunistic TLS) and the negotiated-version probe.
//! * [`client`]: [`SmtpClient`], one connection on a core's monoio event loop: greeting,
//!   EHLO/HELO, STARTTLS by [`TlsPolicy`], AUTH, then transactions with PIPELINING and
//!   CHUNKING when offered, every step under a timeout.
//!
//! It knows nothing of the queue, DNS or routing: the caller picks the address, the server name
//! and the policy, and decides from [`ClientError::is_permanent`] and the replies in
//! [`TransactionResult`] whether to retry, bounce or mark delivered.

pub mod client;
pub mod reply;
pub mod tls;

pub use client::{
    Capabilities, ClientConfig, ClientError, ClientTimeouts, OutboundMessage, OutboundRecipient,
    SmtpClient, Stage, TlsPolicy, TransactionResult,
};
pub use reply::{Reply, ReplyError, ReplyReader};
pub use tls::{ClientTlsConfigs, client_configs};
pub mod route;
