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
//! * [`received`]: `Received:` header, RFC 5322 dates, queue ids.
//! * [`sasl`]: protocol-neutral base64 and SASL PLAIN helpers (reused by POP3).
//!
//! Extensions: PIPELINING (RFC 2920), SIZE (1870), 8BITMIME (6152), SMTPUTF8 (6531),
//! ENHANCEDSTATUSCODES (2034), CHUNKING (3030), STARTTLS (3207), AUTH PLAIN LOGIN (4954).
//!
//! # State diagram (RFC 5321 §3, §4.1.4)
//!
//! ```text
//!   connect ──> 220 greeting
//!                   │
//!                   v
//!   ┌──────> [no HELO] ──EHLO/HELO──> [ready] <──────────── RSET / EHLO / HELO (any state
//!   │            │                    │   ^    AUTH ─> 334 ─> (auth_result)  below: reset)
//!   │            │ STARTTLS           │   │
//!   │            v                    │   └── 250 queued / 451 / 554 (delivery_result)
//!   └─ tls_started() <── 220 ─────────┤                       ^
//!      (forget HELO, AUTH)            │ MAIL FROM             │ Deliver
//!                                     v                       │
//!                                 [mail] ──RCPT TO──> [rcpt] ─┤── DATA ─> 354 ─> [data] ─ CRLF.CRLF
//!                                                       │  ^  └── BDAT n ─> [chunk] ─ n octets ──┐
//!                                                       └──┘        ^  (not LAST: 250, back) │
//!                                                  RCPT TO          └────────────────────────┘
//!
//!   QUIT (any command state) ─> 221, Close          too many errors ─> 421 4.7.0, Close
//!   shutdown() ─> 421 4.3.2, closed                 timeout() ─> 421 4.4.2, closed
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
pub mod received;
pub mod reply;
pub mod sasl;
pub mod session;

pub use command::{Body, Command, CommandError, MailParams, parse_command};
pub use data::{BdatReceiver, DataOutcome, DataReceiver};
pub use session::{DeliveryFailure, ListenerKind, SmtpConfig, SmtpEvent, SmtpSession, Transaction};

#[cfg(test)]
mod tests;
