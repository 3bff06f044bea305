//! POP3 (RFC 1939) protocol core, sans-IO: the network driver feeds bytes in and performs the
//! side effects the session asks for (see [`session`] for the driver contract).
//!
//! Extensions: CAPA and response codes (RFC 2449), STLS (RFC 2595), AUTH PLAIN/LOGIN
//! (RFC 5034, RFC 4616), UTF8 (RFC 6856), PIPELINING. No APOP.
//!
//! * [`command`]: line framing and the borrowing command parser.
//! * [`session`]: the state machine ([`Pop3Session`]).
//! * [`stuff`]: dot-stuffed multi-line bodies for RETR/TOP ([`write_stuffed`]).

pub mod command;
pub mod driver;
pub mod session;
pub mod stuff;

pub use command::{Command, ParseError, parse_command};
pub use session::{MaildropOpen, Pop3Config, Pop3Event, Pop3Session};
pub use stuff::write_stuffed;
