//! SMTP (RFC 5321 + ESMTP) as a sans-IO state machine: no sockets, no async, no store. The
//! network driver feeds bytes into [`SmtpSession::feed`], writes the replies it appends to the
//! output buffer, and acts on the returned [`SmtpEvent`] (verify a password, store a message,
//! start TLS, close).
//!
//! Files, one concern each:
//! * [`command`]: zero-copy command parser ([`parse_command`] borrows the input line).
//! * [`data`]: `DATA` receiver (dot-unstuffing, `CRLF.CRLF` only, size/line limits) and `BDAT`
//!   receiver.
//! * [`session`]: the state machine; every reply decision is made there.
//! * [`reply`]: every reply code and text.
//! * `delivery::trace` writes the `Received:` header.
//!
//! Extensions: PIPELINING (RFC 2920), SIZE (1870), 8BITMIME (6152), SMTPUTF8 (6531),
//! ENHANCEDSTATUSCODES (2034), CHUNKING (3030), STARTTLS (3207), AUTH PLAIN LOGIN (4954).
//!
//! # State diagram (RFC 5321 §3, §4.1.4)
//!
//! ```text
//!  connect
//!     │ 220 greeting
//!     v
//!  ┌──────────┐  EHLO/HELO   ┌──────────┐  MAIL FROM   ┌──────────┐  RCPT TO   ┌──────────┐
//!  │ no HELO  │─────────────>│  ready   │─────────────>│   mail   │───────────>│   rcpt   │──┐
//!  └──────────┘              └──────────┘   250 2.1.0  └──────────┘  250 2.1.5 └──────────┘  │
//!     ^   STARTTLS: 220,         ^  │ ^                      │ RSET/EHLO/HELO     │  ^  RCPT │
//!     │   tls_started() forgets  │  │ │ AUTH: 334... ─> Authenticate ─> 235/535 │  └───────┘
//!     └── HELO/EHLO and AUTH     │  │ └──── auth_result()                        │
//!                                │  │                                             │ DATA: 354
//!                                │  │       ┌───────────────────────────┐         v
//!                                │  │       │ data: until CRLF.CRLF     │<────────┤
//!                                │  │       │ (dot-unstuffing, limits)  │         │ BDAT n [LAST]
//!                                │  │       └─────────────┬─────────────┘         v
//!                                │  │                     │        ┌─────────────────────────┐
//!                                │  │                     │        │ chunk: exactly n octets │
//!                                │  │                     │        │ not LAST: 250, to rcpt  │
//!                                │  │                     v        └────────────┬────────────┘
//!                                │  │            Deliver(Transaction) <─── LAST ┘
//!                                └──┼──── delivery_result(): 250 queued / 451 / 554
//!                                   │
//!  QUIT (in any command state): 221, Close.        Too many errors: 421 4.7.0, Close.
//!  shutdown(): 421 4.3.2.   timeout(): 421 4.4.2.   RSET, EHLO, HELO: back to `ready`.
//! ```
//!
//! Port rules ([`ListenerKind`]): on `Mx` (25) anyone may send to local recipients and
//! relaying is refused (`554 5.7.1`; authenticated clients get `451 4.3.0` until the outbound
//! queue exists). On `Submission` (587) and `Submissions` (465) MAIL requires AUTH (`530 5.7.0`),
//! and AUTH requires TLS unless `allow_plaintext_auth` (`538 5.7.11`).
//!
//! Pipelining: `feed` handles any number of commands per call and stops at each event; the driver
//! answers the event (e.g. `delivery_result`) and calls `feed` again with the unconsumed bytes,
//! so replies always come out in command order.

pub mod command;
pub mod data;
pub mod reply;
pub mod session;

pub use command::{Body, Command, CommandError, MailParams, parse_command};
pub use data::{BdatReceiver, DataOutcome, DataReceiver};
pub use session::{ListenerKind, SmtpConfig, SmtpEvent, SmtpSession, Transaction};

pub mod driver;
#[cfg(test)]
mod tests;
