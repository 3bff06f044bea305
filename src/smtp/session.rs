//! The SMTP session state machine: bytes in, replies and [`SmtpEvent`]s out. All reply
//! decisions are made here (texts live in [`super::reply`]).

use std::net::SocketAddr;
use std::sync::Arc;

use memchr::memchr;

use super::command::{Body, Command, CommandError, MailParams, parse_command};
use super::data::{BdatReceiver, DataOutcome, DataReceiver};
use super::reply;
use crate::auth::AuthOutcome;
use crate::delivery::trace::{TraceInfo, queue_id, unix_now, write_received};
use crate::delivery::{DeliveryError, Envelope, EnvelopeRecipient, Notify, Rejection, Ret, Route};
use crate::net::sasl::{SaslCredentials, SaslError, SaslExchange, SaslMechanism, SaslStep};

/// Which listener accepted the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenerKind {
    /// Port 25: mail exchange; no authentication needed to deliver to local recipients.
    Mx,
    /// Port 587: STARTTLS, then AUTH, required before MAIL.
    Submission,
    /// Port 465: implicit TLS; AUTH required before MAIL.
    Submissions,
}

/// Session limits and identity, shared by all sessions of a listener via `Arc`.
#[derive(Clone, Debug)]
pub struct SmtpConfig {
    /// Name used in the greeting, EHLO answer and Received header.
    pub hostname: String,
    /// Largest accepted message (octets, after dot-unstuffing); advertised in SIZE.
    pub max_message_size: usize,
    /// More recipients are refused with `452 4.5.3`.
    pub max_recipients: usize,
    /// Longest command line including CRLF (longer: `500 5.5.2`, line discarded).
    pub max_command_line: usize,
    /// Longest message line including CRLF (longer: message refused with `500 5.5.2`).
    pub max_data_line: usize,
    /// Errors tolerated before `421 4.7.0` and close.
    pub max_errors: usize,
    /// Offer and accept AUTH without TLS (testing only).
    pub allow_plaintext_auth: bool,
    /// An authenticated client may only use its own addresses as MAIL FROM.
    pub enforce_sender: bool,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            hostname: "localhost".to_string(),
            max_message_size: 25 * 1024 * 1024,
            max_recipients: 100,
            max_command_line: 4096,
            max_data_line: 65536,
            max_errors: 20,
            allow_plaintext_auth: false,
            enforce_sender: true,
        }
    }
}

/// A complete, accepted message for the driver to hand to the delivery pipeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transaction {
    /// Sender, routed recipients, DSN parameters; `envelope.id` is the queue id (also in the
    /// Received header and the final 250 reply).
    pub envelope: Envelope,
    /// The message with the `Received:` header already prepended.
    pub message: Vec<u8>,
    /// Octets received from the client (after dot-unstuffing; without the Received header).
    pub size: usize,
}

/// What the driver must do after [`SmtpSession::feed`].
#[derive(Clone, PartialEq, Eq)]
pub enum SmtpEvent {
    /// Flush the output, read more input, call `feed` again with the unconsumed bytes.
    NeedInput,
    /// Verify the credentials (off the event loop), then call [`SmtpSession::auth_result`].
    Authenticate { username: String, password: String },
    /// Route this RCPT TO address (see `delivery::router`), then call
    /// [`SmtpSession::route_result`]. `may_relay`: the client may send to other domains.
    Route { address: String, may_relay: bool },
    /// May `account` (authenticated) send as `address`? Call [`SmtpSession::sender_result`].
    CheckSender { address: String, account: String },
    /// Store the message durably, then call [`SmtpSession::delivery_result`], then `feed`
    /// again with the unconsumed bytes (pipelined commands may follow).
    Deliver(Transaction),
    /// `220 2.0.0 Ready to start TLS` is in the output. Flush it, DISCARD any unconsumed input
    /// (CVE-2011-0411), run the handshake, call [`SmtpSession::tls_started`].
    StartTls,
    /// Flush the output and close the connection.
    Close,
}

impl std::fmt::Debug for SmtpEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SmtpEvent::NeedInput => f.write_str("NeedInput"),
            SmtpEvent::Authenticate { username, .. } => f
                .debug_struct("Authenticate")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            SmtpEvent::CheckSender { address, account } => f
                .debug_struct("CheckSender")
                .field("address", address)
                .field("account", account)
                .finish(),
            SmtpEvent::Route { address, may_relay } => f
                .debug_struct("Route")
                .field("address", address)
                .field("may_relay", may_relay)
                .finish(),
            SmtpEvent::Deliver(t) => f.debug_tuple("Deliver").field(t).finish(),
            SmtpEvent::StartTls => f.write_str("StartTls"),
            SmtpEvent::Close => f.write_str("Close"),
        }
    }
}

/// What to do with the octets of a BDAT chunk.
#[derive(Debug)]
enum BdatMode {
    Store,
    /// The chunk would exceed the size limit: discard it, then 552.
    TooBig,
    /// Bad sequence: discard the chunk, then this reply.
    Reject(&'static [u8]),
}

#[derive(Debug)]
enum State {
    /// Reading command lines.
    Command,
    /// Discarding the rest of an over-long line (already answered).
    DiscardLine,
    Data(DataReceiver),
    Bdat {
        rx: BdatReceiver,
        size: u64,
        last: bool,
        mode: BdatMode,
    },
    /// A `334` challenge of an AUTH exchange was sent; the next line is the response.
    Auth(SaslExchange),
    WaitAuth,
    /// MAIL FROM of an authenticated client waits for the sender check.
    WaitSender(Box<Tx>),
    WaitRoute,
    WaitDelivery,
    WaitTls,
    Closed,
}

/// A RCPT waiting for its route.
#[derive(Debug)]
struct PendingRcpt {
    address: String,
    notify: Notify,
    orcpt: Option<String>,
}

/// The mail transaction in progress (after MAIL).
#[derive(Debug)]
struct Tx {
    mail_from: String,
    smtputf8: bool,
    eight_bit: bool,
    ret: Option<Ret>,
    envid: Option<String>,
    recipients: Vec<EnvelopeRecipient>,
    pending: Option<PendingRcpt>,
    message: Vec<u8>,
    /// Queue id, set when the message content starts (Received header written).
    id: Option<String>,
    /// Octets of content received (BDAT bookkeeping).
    body_len: usize,
    /// BDAT was used: DATA is no longer allowed.
    bdat: bool,
    /// The shared transfer memory ran out: the content is being discarded, and the
    /// transaction ends in `452 4.3.1`.
    shed: bool,
}

/// One SMTP connection's protocol state. See the [module docs](super) for the state diagram.
#[derive(Debug)]
pub struct SmtpSession {
    config: Arc<SmtpConfig>,
    kind: ListenerKind,
    peer: SocketAddr,
    ptr: Option<String>,
    tls_active: bool,
    starttls_available: bool,
    state: State,
    /// HELO/EHLO argument and whether it was EHLO.
    helo: Option<(String, bool)>,
    authenticated_as: Option<String>,
    /// The client's address is in `relay.allowed_networks`.
    relay_client: bool,
    errors: usize,
    tx: Option<Tx>,
    /// Queue id of the message handed out in the last `Deliver`.
    pending_id: String,
}

impl SmtpSession {
    pub fn new(
        config: Arc<SmtpConfig>,
        kind: ListenerKind,
        peer: SocketAddr,
        tls_active: bool,
        starttls_available: bool,
    ) -> Self {
        SmtpSession {
            config,
            kind,
            peer,
            ptr: None,
            tls_active,
            starttls_available,
            state: State::Command,
            helo: None,
            authenticated_as: None,
            relay_client: false,
            errors: 0,
            tx: None,
            pending_id: String::new(),
        }
    }

    /// Record the client's verified reverse DNS name (used in the Received header).
    /// Non-printable characters are dropped so the name cannot break the header.
    pub fn set_peer_name(&mut self, name: String) {
        let name: String = name.chars().filter(|c| c.is_ascii_graphic()).collect();
        self.ptr = (!name.is_empty()).then_some(name);
    }

    /// The client connects from a network allowed to relay without authenticating.
    pub fn set_relay_client(&mut self, allowed: bool) {
        self.relay_client = allowed;
    }

    /// `220 <hostname> ESMTP surel`
    pub fn greeting(&mut self, out: &mut Vec<u8>) {
        reply::greeting(out, &self.config.hostname);
    }

    /// True when not inside a transaction or an AUTH/DATA/BDAT exchange (safe to shut down).
    pub fn is_idle(&self) -> bool {
        match self.state {
            State::Command => self.tx.is_none(),
            State::Closed => true,
            _ => false,
        }
    }

    /// Memory held by the message being received.
    pub fn held_bytes(&self) -> usize {
        self.tx.as_ref().map_or(0, |tx| tx.message.capacity())
    }

    /// Drops the message being received; the rest of it is discarded as it arrives and the
    /// transaction is refused with `452 4.3.1` (the client may try again later).
    pub fn shed_transfer(&mut self) {
        if let Some(tx) = self.tx.as_mut() {
            tx.shed = true;
            tx.message = Vec::new();
        }
    }

    /// The account the client authenticated as.
    pub fn authenticated_as(&self) -> Option<&str> {
        self.authenticated_as.as_deref()
    }

    /// `421 4.3.2 Service shutting down`; the session is closed.
    pub fn shutdown(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(reply::SHUTTING_DOWN);
        self.state = State::Closed;
    }

    /// `421 4.4.2 Timeout`; the session is closed.
    pub fn timeout(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(reply::TIMEOUT);
        self.state = State::Closed;
    }

    /// After the STARTTLS handshake: forget everything learned before (RFC 3207 §4.2).
    pub fn tls_started(&mut self) {
        self.tls_active = true;
        self.helo = None;
        self.authenticated_as = None;
        self.tx = None;
        self.state = State::Command;
    }

    /// Result of the [`SmtpEvent::Authenticate`] check.
    pub fn auth_result(&mut self, outcome: AuthOutcome, out: &mut Vec<u8>) {
        if matches!(self.state, State::Closed) {
            return;
        }
        self.state = State::Command;
        match outcome {
            AuthOutcome::Accepted(account) => {
                self.authenticated_as = Some(account);
                out.extend_from_slice(reply::AUTH_OK);
            }
            AuthOutcome::Rejected => {
                self.reject(out, reply::AUTH_FAILED);
                self.check_errors(out);
            }
            AuthOutcome::Throttled | AuthOutcome::Busy => {
                out.extend_from_slice(reply::AUTH_TRY_LATER)
            }
        }
    }

    /// Result of the check of [`SmtpEvent::CheckSender`].
    pub fn sender_result(&mut self, allowed: bool, out: &mut Vec<u8>) {
        let State::WaitSender(tx) = std::mem::replace(&mut self.state, State::Command) else {
            return;
        };
        if allowed {
            self.tx = Some(*tx);
            out.extend_from_slice(reply::SENDER_OK);
        } else {
            self.reject(out, reply::SENDER_NOT_OWNED);
        }
    }

    /// Result of routing the address of [`SmtpEvent::Route`].
    pub fn route_result(&mut self, result: Result<Route, Rejection>, out: &mut Vec<u8>) {
        if !matches!(self.state, State::WaitRoute) {
            return;
        }
        self.state = State::Command;
        let Some(tx) = self.tx.as_mut() else {
            return;
        };
        let Some(pending) = tx.pending.take() else {
            return;
        };
        match result {
            Ok(route) => {
                tx.recipients.push(EnvelopeRecipient {
                    address: pending.address,
                    route,
                    notify: pending.notify,
                    orcpt: pending.orcpt,
                });
                out.extend_from_slice(reply::RECIPIENT_OK);
            }
            Err(rejection) => self.reject(out, reply::rejection(rejection)),
        }
    }

    /// Result of storing the message of [`SmtpEvent::Deliver`].
    pub fn delivery_result(&mut self, result: Result<(), DeliveryError>, out: &mut Vec<u8>) {
        if matches!(self.state, State::Closed) {
            return;
        }
        self.state = State::Command;
        match result {
            Ok(()) => reply::queued(out, &self.pending_id),
            Err(e) => reply::delivery_error(out, &e),
        }
    }

    /// Consume as much of `input` as possible, appending replies to `out`. Returns how many
    /// bytes were consumed and what the driver must do next. Partial command lines are left
    /// unconsumed (`NeedInput`), except one already longer than `max_command_line`, which is
    /// consumed and discarded.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, SmtpEvent) {
        let mut pos = 0;
        loop {
            let event = match &mut self.state {
                State::Closed => return (pos, SmtpEvent::Close),
                State::WaitAuth
                | State::WaitSender(_)
                | State::WaitRoute
                | State::WaitDelivery
                | State::WaitTls => {
                    return (pos, SmtpEvent::NeedInput);
                }
                State::DiscardLine => match memchr(b'\n', &input[pos..]) {
                    None => return (input.len(), SmtpEvent::NeedInput),
                    Some(i) => {
                        pos += i + 1;
                        self.state = State::Command;
                        None
                    }
                },
                State::Data(rx) => {
                    let mut scratch = Vec::new();
                    let message = match self.tx.as_mut() {
                        Some(tx) if !tx.shed => &mut tx.message,
                        _ => &mut scratch,
                    };
                    let (n, done) = rx.feed(&input[pos..], message);
                    pos += n;
                    if !done {
                        return (pos, SmtpEvent::NeedInput);
                    }
                    let (outcome, size) = (rx.outcome(), rx.received());
                    self.finish_message(outcome, size, out)
                }
                State::Bdat {
                    rx,
                    size,
                    last,
                    mode,
                } => {
                    let sink = match self.tx.as_mut() {
                        Some(tx) if matches!(mode, BdatMode::Store) && !tx.shed => {
                            Some(&mut tx.message)
                        }
                        _ => None,
                    };
                    pos += rx.feed(&input[pos..], sink);
                    if !rx.is_done() {
                        return (pos, SmtpEvent::NeedInput);
                    }
                    let (size, last) = (*size, *last);
                    match std::mem::replace(mode, BdatMode::Store) {
                        BdatMode::Reject(r) => {
                            self.state = State::Command;
                            self.reject(out, r);
                            None
                        }
                        BdatMode::TooBig => self.finish_message(DataOutcome::TooBig, 0, out),
                        BdatMode::Store if self.tx.as_ref().is_some_and(|tx| tx.shed) => {
                            // Each chunk has its reply: refuse the transaction now.
                            self.finish_message(DataOutcome::Ok, 0, out)
                        }
                        BdatMode::Store => {
                            let body_len = match self.tx.as_mut() {
                                Some(tx) => {
                                    tx.body_len += size as usize;
                                    tx.body_len
                                }
                                None => 0,
                            };
                            if last {
                                self.finish_message(DataOutcome::Ok, body_len, out)
                            } else {
                                self.state = State::Command;
                                reply::chunk_received(out, size);
                                None
                            }
                        }
                    }
                }
                State::Command | State::Auth(_) => {
                    let rest = &input[pos..];
                    let max = self.config.max_command_line;
                    match memchr(b'\n', rest) {
                        None if rest.len() >= max => {
                            pos = input.len();
                            self.state = State::DiscardLine;
                            self.reject(out, reply::LINE_TOO_LONG);
                            None
                        }
                        None => return (pos, SmtpEvent::NeedInput),
                        Some(i) => {
                            let line = &rest[..=i];
                            pos += i + 1;
                            if line.len() > max {
                                self.state = State::Command;
                                self.reject(out, reply::LINE_TOO_LONG);
                                None
                            } else if !line.ends_with(b"\r\n") {
                                self.state = State::Command;
                                self.reject(out, reply::BARE_LF);
                                None
                            } else {
                                self.handle_line(&line[..line.len() - 2], out)
                            }
                        }
                    }
                }
            };
            if self.check_errors(out) {
                return (pos, SmtpEvent::Close);
            }
            if let Some(event) = event {
                return (pos, event);
            }
        }
    }

    /// Count an error and send its reply.
    fn reject(&mut self, out: &mut Vec<u8>, r: &[u8]) {
        self.errors += 1;
        out.extend_from_slice(r);
    }

    /// After too many errors: `421` and close. Returns true if the session is now closed.
    fn check_errors(&mut self, out: &mut Vec<u8>) -> bool {
        if matches!(self.state, State::Closed) {
            return true;
        }
        if self.errors > 0 && self.errors >= self.config.max_errors {
            out.extend_from_slice(reply::TOO_MANY_ERRORS);
            self.state = State::Closed;
            return true;
        }
        false
    }

    fn auth_allowed(&self) -> bool {
        self.tls_active || self.config.allow_plaintext_auth
    }

    fn handle_line(&mut self, line: &[u8], out: &mut Vec<u8>) -> Option<SmtpEvent> {
        if let State::Auth(exchange) = std::mem::replace(&mut self.state, State::Command) {
            return self.auth_step(exchange.respond(line), out);
        }
        let command = match parse_command(line) {
            Ok(c) => c,
            Err(e) => {
                self.reject(
                    out,
                    match e {
                        CommandError::Unrecognized => reply::UNKNOWN_COMMAND,
                        CommandError::InvalidCharacter => reply::INVALID_CHARACTER,
                        CommandError::Syntax => reply::SYNTAX,
                        CommandError::BadSender => reply::BAD_SENDER,
                        CommandError::BadRecipient => reply::BAD_RECIPIENT,
                        CommandError::UnknownParameter => reply::UNKNOWN_PARAMETER,
                    },
                );
                return None;
            }
        };
        match command {
            Command::Ehlo(name) => {
                self.tx = None;
                self.helo = Some((name.to_string(), true));
                let size = format!("SIZE {}", self.config.max_message_size);
                let mut ext = vec![
                    "PIPELINING",
                    &size,
                    "8BITMIME",
                    "SMTPUTF8",
                    "ENHANCEDSTATUSCODES",
                    "CHUNKING",
                    "DSN",
                ];
                if self.starttls_available && !self.tls_active {
                    ext.push("STARTTLS");
                }
                if self.auth_allowed() {
                    ext.push("AUTH PLAIN LOGIN");
                }
                reply::ehlo(out, &self.config.hostname, name, &ext);
            }
            Command::Helo(name) => {
                self.tx = None;
                self.helo = Some((name.to_string(), false));
                reply::helo(out, &self.config.hostname);
            }
            Command::Mail { path, params } => {
                if self.helo.is_none() {
                    self.reject(out, reply::NEED_HELO);
                } else if self.tx.is_some() {
                    self.reject(out, reply::NESTED_MAIL);
                } else if self.kind != ListenerKind::Mx && self.authenticated_as.is_none() {
                    self.reject(out, reply::AUTH_REQUIRED);
                } else if params != MailParams::default() && !matches!(self.helo, Some((_, true))) {
                    // Service extensions were not negotiated (RFC 5321 §4.1.1.2).
                    self.reject(out, reply::PARAMS_NEED_EHLO);
                } else if !path.is_ascii() && !params.smtputf8 {
                    self.reject(out, reply::UTF8_REQUIRED);
                } else if params
                    .size
                    .is_some_and(|s| s > self.config.max_message_size)
                {
                    out.extend_from_slice(reply::MESSAGE_TOO_BIG);
                } else {
                    let tx = Tx {
                        mail_from: path.to_string(),
                        smtputf8: params.smtputf8,
                        eight_bit: params.body == Some(Body::EightBitMime),
                        ret: params.ret,
                        envid: params.envid.map(str::to_string),
                        recipients: Vec::new(),
                        pending: None,
                        message: Vec::new(),
                        id: None,
                        body_len: 0,
                        bdat: false,
                        shed: false,
                    };
                    if let Some(account) = self
                        .authenticated_as
                        .clone()
                        .filter(|_| self.config.enforce_sender)
                    {
                        self.state = State::WaitSender(Box::new(tx));
                        return Some(SmtpEvent::CheckSender {
                            address: path.to_string(),
                            account,
                        });
                    }
                    self.tx = Some(tx);
                    out.extend_from_slice(reply::SENDER_OK);
                }
            }
            Command::Rcpt { path, params } => {
                let may_relay = self.authenticated_as.is_some() || self.relay_client;
                let Some(tx) = self.tx.as_mut() else {
                    self.reject(out, reply::NEED_MAIL);
                    return None;
                };
                if tx.bdat {
                    // The Received header (with its `for` clause) is already written.
                    self.reject(out, reply::RCPT_AFTER_BDAT);
                } else if tx.recipients.len() >= self.config.max_recipients {
                    out.extend_from_slice(reply::TOO_MANY_RECIPIENTS);
                } else if !path.is_ascii() && !tx.smtputf8 {
                    self.reject(out, reply::UTF8_REQUIRED);
                } else {
                    tx.pending = Some(PendingRcpt {
                        address: path.to_string(),
                        notify: params.notify,
                        orcpt: params.orcpt.map(str::to_string),
                    });
                    self.state = State::WaitRoute;
                    return Some(SmtpEvent::Route {
                        address: path.to_string(),
                        may_relay,
                    });
                }
            }
            Command::Data => match self.tx.as_ref() {
                None => self.reject(out, reply::NEED_MAIL),
                Some(tx) if tx.bdat => self.reject(out, reply::DATA_AFTER_BDAT),
                Some(tx) if tx.recipients.is_empty() => {
                    self.reject(out, reply::NEED_RCPT);
                }
                Some(_) => {
                    self.start_message();
                    out.extend_from_slice(reply::START_DATA);
                    self.state = State::Data(DataReceiver::new(
                        self.config.max_message_size,
                        self.config.max_data_line,
                    ));
                }
            },
            Command::Bdat { size, last } => {
                let max = self.config.max_message_size;
                let mode = match self.tx.as_mut() {
                    None => BdatMode::Reject(reply::NEED_MAIL),
                    Some(tx) if tx.recipients.is_empty() => BdatMode::Reject(reply::NEED_RCPT),
                    Some(tx) if size > (max - tx.body_len.min(max)) as u64 => BdatMode::TooBig,
                    Some(tx) => {
                        tx.bdat = true;
                        // Bounded: a declared size is not a promise to send it.
                        tx.message.reserve((size as usize).min(1 << 20));
                        BdatMode::Store
                    }
                };
                if matches!(mode, BdatMode::Store) {
                    self.start_message();
                }
                self.state = State::Bdat {
                    rx: BdatReceiver::new(size),
                    size,
                    last,
                    mode,
                };
            }
            Command::Rset => {
                self.tx = None;
                out.extend_from_slice(reply::OK);
            }
            Command::Noop => out.extend_from_slice(reply::OK),
            Command::Quit => {
                out.extend_from_slice(reply::BYE);
                self.state = State::Closed;
                return Some(SmtpEvent::Close);
            }
            Command::Vrfy(_) => out.extend_from_slice(reply::VRFY),
            Command::Expn(_) => out.extend_from_slice(reply::NOT_IMPLEMENTED),
            Command::Help => out.extend_from_slice(reply::HELP),
            Command::StartTls => {
                if self.tls_active {
                    self.reject(out, reply::ALREADY_TLS);
                } else if !self.starttls_available {
                    self.reject(out, reply::TLS_NOT_AVAILABLE);
                } else {
                    out.extend_from_slice(reply::READY_TLS);
                    self.state = State::WaitTls;
                    return Some(SmtpEvent::StartTls);
                }
            }
            Command::Auth { mechanism, initial } => {
                return self.auth_command(mechanism, initial, out);
            }
        }
        None
    }

    /// Write the Received header and assign the queue id, once per transaction.
    fn start_message(&mut self) {
        let hostname = &self.config.hostname;
        let protocol = match (&self.helo, self.tls_active, self.authenticated_as.is_some()) {
            (Some((_, true)), false, false) => "ESMTP",
            (Some((_, true)), true, false) => "ESMTPS",
            (Some((_, true)), false, true) => "ESMTPA",
            (Some((_, true)), true, true) => "ESMTPSA",
            _ => "SMTP",
        };
        let helo = self.helo.as_ref().map_or("unknown", |(h, _)| h.as_str());
        let Some(tx) = self.tx.as_mut() else {
            return;
        };
        if tx.id.is_some() {
            return;
        }
        let id = queue_id();
        let single = match tx.recipients.as_slice() {
            [r] => Some(r.address.as_str()),
            _ => None,
        };
        write_received(
            &mut tx.message,
            &TraceInfo {
                helo,
                ptr: self.ptr.as_deref(),
                ip: self.peer.ip(),
                hostname,
                protocol,
                id: &id,
                single_recipient: single,
                authenticated: self.authenticated_as.as_deref(),
                unix_seconds: unix_now(),
            },
        );
        tx.id = Some(id);
    }

    /// End of DATA or of the LAST BDAT chunk.
    fn finish_message(
        &mut self,
        outcome: DataOutcome,
        size: usize,
        out: &mut Vec<u8>,
    ) -> Option<SmtpEvent> {
        self.state = State::Command;
        if self.tx.as_ref().is_some_and(|tx| tx.shed) {
            self.tx = None;
            out.extend_from_slice(reply::TRANSFER_MEMORY_FULL);
            return None;
        }
        match outcome {
            DataOutcome::TooBig => {
                self.tx = None;
                out.extend_from_slice(reply::MESSAGE_TOO_BIG);
                None
            }
            DataOutcome::LineTooLong => {
                self.tx = None;
                out.extend_from_slice(reply::LINE_TOO_LONG);
                None
            }
            DataOutcome::Ok => {
                let tx = self.tx.take()?;
                self.pending_id = tx.id.unwrap_or_default();
                self.state = State::WaitDelivery;
                Some(SmtpEvent::Deliver(Transaction {
                    envelope: Envelope {
                        id: self.pending_id.clone(),
                        mail_from: tx.mail_from,
                        ret: tx.ret,
                        envid: tx.envid,
                        smtputf8: tx.smtputf8,
                        eight_bit: tx.eight_bit,
                        authenticated_as: self.authenticated_as.clone(),
                        recipients: tx.recipients,
                    },
                    message: tx.message,
                    size,
                }))
            }
        }
    }

    fn auth_command(
        &mut self,
        mechanism: &str,
        initial: Option<&str>,
        out: &mut Vec<u8>,
    ) -> Option<SmtpEvent> {
        if self.authenticated_as.is_some() {
            self.reject(out, reply::ALREADY_AUTHENTICATED);
        } else if !matches!(self.helo, Some((_, true))) {
            self.reject(out, reply::NEED_EHLO);
        } else if self.tx.is_some() {
            self.reject(out, reply::AUTH_IN_TRANSACTION);
        } else if !self.auth_allowed() {
            self.reject(out, reply::ENCRYPTION_REQUIRED);
        } else if let Some(mechanism) = SaslMechanism::from_name(mechanism.as_bytes()) {
            let step = SaslExchange::start(mechanism, initial.map(str::as_bytes));
            return self.auth_step(step, out);
        } else {
            self.reject(out, reply::UNKNOWN_MECHANISM);
        }
        None
    }

    /// Carry an AUTH exchange one step on (RFC 4954 §4: `*` cancels with 501, a malformed
    /// response is 501 5.5.2, acting for another identity is refused like bad credentials).
    fn auth_step(&mut self, step: SaslStep, out: &mut Vec<u8>) -> Option<SmtpEvent> {
        match step {
            SaslStep::Challenge(exchange, challenge) => {
                out.extend_from_slice(b"334 ");
                out.extend_from_slice(challenge.as_bytes());
                out.extend_from_slice(b"\r\n");
                self.state = State::Auth(exchange);
                None
            }
            SaslStep::Done(SaslCredentials { username, password }) => {
                self.state = State::WaitAuth;
                Some(SmtpEvent::Authenticate { username, password })
            }
            SaslStep::Failed(SaslError::Cancelled) => {
                out.extend_from_slice(reply::AUTH_CANCELLED);
                None
            }
            SaslStep::Failed(SaslError::AuthzidMismatch) => {
                self.reject(out, reply::AUTH_FAILED);
                None
            }
            SaslStep::Failed(
                SaslError::BadBase64 | SaslError::Malformed | SaslError::EmptyField,
            ) => {
                self.reject(out, reply::BAD_BASE64);
                None
            }
        }
    }
}
