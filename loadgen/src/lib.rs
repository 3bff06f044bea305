//! loadgen: a thread-per-core load generator for mail servers (SMTP delivery, POP3/IMAP fetch).
//!
//! The library exposes the protocol clients and reply parsers so integration tests
//! (and the server's own tests) can drive a server with them.

pub mod app;
pub mod cli;
pub mod client;
pub mod e2e;
pub mod hold;
pub mod message;
pub mod plot;
pub mod runner;
pub mod sink;
pub mod stats;
pub mod tls;
pub mod verify;
