//! surel: a thread-per-core mail server. The module tree is the architecture:
//! `runtime` (cores, listeners, shutdown), `net` (buffered connections, TLS), `auth`,
//! one module per protocol (`smtp`, `pop3`, `imap`), `delivery` (the message pipeline), `queue`
//! and `relay` (outbound mail) and `store`.

pub mod auth;
pub mod config;
pub mod delivery;
pub mod dkim;
pub mod dns;
pub mod imap;
pub mod net;
pub mod pop3;
pub mod queue;
pub mod relay;
pub mod runtime;
pub mod smtp;
pub mod store;
