//! Networking shared by every protocol: the buffered connection and session loop, TLS set-up
//! and the server TLS stream (no fixed ciphertext buffers, so idle connections stay small), and
//! shutdown notification.

pub mod budget;
pub mod conn;
pub mod deflate;
pub mod sasl;
pub mod shutdown;
pub mod tls;
pub mod tls_stream;
pub mod upgrade;

pub use budget::TransferBudget;
pub use conn::{Connection, ConnectionSettings, Ended, ProtocolSession, Timeouts};
pub use shutdown::ShutdownSignal;
pub use tls_stream::{TlsAcceptor, TlsStream};
pub use upgrade::{Flow, SessionDriver, TlsSetup, serve_connection};
