//! The message pipeline: everything between "DATA accepted" and "bytes on disk".
//!
//! An accepted message is an [`Envelope`] (sender, each recipient with its [`Route`], DSN
//! parameters) and one shared body ([`bytes::Bytes`]): copies for several accounts and the
//! queued copy all point at the same bytes, with only their per-copy trace headers apart.
//!
//! * [`router`]: RCPT TO address → [`Route`] (local accounts, remote domain) or [`Rejection`],
//!   including the relay policy. The SMTP session asks for it through an event, so it stays
//!   sans-IO.
//! * [`pipeline`]: the ordered stages (trace headers; DKIM signing of what leaves; later
//!   Authentication-Results and Sieve) and the two sinks — the mailbox store and the outbound
//!   queue — committed together (one request per store shard, so one group commit).
//! * [`dsn`]: RFC 3464 delivery status notifications.
//! * [`trace`]: `Received`, `Return-Path`, `Delivered-To`, dates and queue ids.
//!
//! What happens to queued mail afterwards (scheduling, relaying, retries, bounces) is the
//! `queue` and `relay` modules' business.

pub mod dsn;
pub mod envelope;
pub mod pipeline;
pub mod router;
pub mod trace;

pub use envelope::{Envelope, EnvelopeRecipient, Notify, Rejection, Ret, Route};
pub use pipeline::{DeliveryError, Pipeline};
