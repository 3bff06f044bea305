//! The POP3 session state machine (sans-IO).
//!
//! The network driver owns the socket and the buffers; it hands received bytes to
//! [`Pop3Session::feed`], writes out whatever the session appended to `out`, and performs the
//! side effects asked for by [`Pop3Event`]s (password check, maildrop locking, message sending,
//! expunging, TLS handshake), reporting back through the matching method.
//!
//! Driver contract:
//! * `feed` returns how many input bytes it consumed; the driver keeps the rest and feeds it
//!   again (prepended to new data) once it has handled the event.
//! * After an event other than [`Pop3Event::NeedInput`] the driver must complete it before
//!   calling `feed` again: `Authenticate` → [`Pop3Session::auth_result`], `OpenMaildrop` →
//!   [`Pop3Session::maildrop_opened`], `Send` → append the message with
//!   [`write_stuffed`](super::write_stuffed), `Commit` → [`Pop3Session::commit_result`],
//!   `StartTls` → drop unconsumed input, handshake, [`Pop3Session::tls_started`].
//!   While such a completion is pending, `feed` consumes nothing and returns `NeedInput`.
//! * On [`Pop3Event::Close`] (returned by `feed`, or by `auth_result`) the driver flushes
//!   `out` and closes the connection. After `commit_result`, `timeout` and `shutdown` the
//!   session is closed too ([`Pop3Session::is_closed`]); `feed` then returns `Close`.

use std::borrow::Cow;
use std::fmt;
use std::io::Write as _;
use std::sync::Arc;

use crate::auth::AuthOutcome;
use crate::store::{MailboxSnapshot, StoreError};

use super::command::{Command, Line, parse_command, split_line};
use crate::net::sasl::{SaslCredentials, SaslError, SaslExchange, SaslMechanism, SaslStep};

/// Static configuration shared by all POP3 sessions of a listener.
#[derive(Clone, Debug)]
pub struct Pop3Config {
    /// Our host name (for logs and future use; not sent in the greeting).
    pub hostname: String,
    /// Longest accepted line, excluding CRLF. Also bounds SASL responses, hence 4096 by default
    /// (RFC 2449's 255 octets for commands is far below that).
    pub max_line: usize,
    /// After this many erroneous commands the session is closed.
    pub max_errors: usize,
    /// Allow USER/PASS/AUTH on a connection without TLS (default false).
    pub allow_plaintext_auth: bool,
}

impl Default for Pop3Config {
    fn default() -> Self {
        Pop3Config {
            hostname: "localhost".to_owned(),
            max_line: 4096,
            max_errors: 20,
            allow_plaintext_auth: false,
        }
    }
}

/// Result of the driver's attempt to lock and snapshot the maildrop (INBOX).
#[derive(Debug)]
pub enum MaildropOpen {
    /// Locked; the snapshot's messages (in UID order) become messages 1..n of the session.
    Ok(MailboxSnapshot),
    /// Another POP3 session holds the lock.
    InUse,
    /// The store failed.
    Failed(StoreError),
}

/// What the driver must do next.
#[derive(Clone, PartialEq, Eq)]
pub enum Pop3Event {
    /// Flush `out`, then read more input.
    NeedInput,
    /// Verify the credentials, then call [`Pop3Session::auth_result`].
    Authenticate { username: String, password: String },
    /// Lock the account's maildrop, snapshot INBOX, call [`Pop3Session::maildrop_opened`].
    OpenMaildrop { account: String },
    /// RETR/TOP: the `+OK` line is already in `out`; append the message with
    /// [`write_stuffed`](super::write_stuffed)`(bytes, top_lines, out)`, then continue feeding.
    Send { uid: u32, top_lines: Option<u32> },
    /// QUIT in TRANSACTION (UPDATE state): expunge these UIDs durably (possibly none), then
    /// call [`Pop3Session::commit_result`] and close after flushing.
    Commit { expunge_uids: Vec<u32> },
    /// `+OK Begin TLS negotiation` is in `out`: flush it, discard unconsumed input, handshake,
    /// call [`Pop3Session::tls_started`].
    StartTls,
    /// Flush `out` and close the connection.
    Close,
}

impl fmt::Debug for Pop3Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pop3Event::NeedInput => f.write_str("NeedInput"),
            Pop3Event::Authenticate { username, .. } => f
                .debug_struct("Authenticate")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Pop3Event::OpenMaildrop { account } => f
                .debug_struct("OpenMaildrop")
                .field("account", account)
                .finish(),
            Pop3Event::Send { uid, top_lines } => f
                .debug_struct("Send")
                .field("uid", uid)
                .field("top_lines", top_lines)
                .finish(),
            Pop3Event::Commit { expunge_uids } => f
                .debug_struct("Commit")
                .field("expunge_uids", expunge_uids)
                .finish(),
            Pop3Event::StartTls => f.write_str("StartTls"),
            Pop3Event::Close => f.write_str("Close"),
        }
    }
}

/// One message of the maildrop as the session sees it.
#[derive(Clone, Copy, Debug)]
struct Msg {
    uid: u32,
    size: u32,
    deleted: bool,
}

/// The locked maildrop during TRANSACTION: message numbers are indexes + 1, fixed for the
/// session; deletion only marks.
#[derive(Debug)]
struct Maildrop {
    uidvalidity: u32,
    msgs: Vec<Msg>,
    live_count: usize,
    live_size: u64,
}

impl Maildrop {
    fn new(snapshot: MailboxSnapshot) -> Self {
        let msgs: Vec<Msg> = snapshot
            .messages
            .iter()
            .map(|m| Msg {
                uid: m.uid,
                size: m.size,
                deleted: false,
            })
            .collect();
        Maildrop {
            uidvalidity: snapshot.uidvalidity,
            live_count: msgs.len(),
            live_size: msgs.iter().map(|m| u64::from(m.size)).sum(),
            msgs,
        }
    }

    /// Index of a live message, or the (uncounted) error reply.
    fn lookup(&self, n: u32) -> Result<usize, Reply> {
        let idx = (n as usize).wrapping_sub(1);
        match self.msgs.get(idx) {
            None => Err(Reply::Soft(Cow::Borrowed("no such message"))),
            Some(m) if m.deleted => Err(Reply::Soft(Cow::Owned(format!(
                "message {n} already deleted"
            )))),
            Some(_) => Ok(idx),
        }
    }

    fn uidl(&self, m: &Msg) -> String {
        format!("{:08x}{:08x}", self.uidvalidity, m.uid)
    }
}

/// Session states (RFC 1939 §3, plus the states waiting on the driver):
///
/// ```text
///   greeting
///      │
///      ▼
///  AUTHORIZATION ◄───────────────────────────────────┐   CAPA UTF8 USER PASS AUTH STLS QUIT
///      │ │ │ │                                       │
///      │ │ │ └─ QUIT ──► closed ("+OK Bye")          │
///      │ │ └─ STLS ──► WaitTls ── tls_started() ─────┤   (same state, TLS now active)
///      │ └─ AUTH ──► Sasl (challenges) ──────────────┤   ("*", bad base64: -ERR)
///      │               │                             │
///      └─ PASS ────────┴─► WaitAuth ── Rejected ─────┤   (-ERR [AUTH])
///                              │ Accepted            │
///                              ▼                     │
///                        WaitMaildrop ─ InUse/Failed─┘   (-ERR [IN-USE] / [SYS/TEMP])
///                              │ Ok(snapshot)
///                              ▼
///                         TRANSACTION        STAT LIST UIDL RETR TOP DELE NOOP RSET CAPA
///                              │ QUIT
///                              ▼
///                    UPDATE (WaitCommit: driver expunges the DELE'd UIDs)
///                              │ commit_result()
///                              ▼
///                           closed ("+OK Bye" / "-ERR [SYS/TEMP] ...")
/// ```
///
/// A connection that ends any other way (timeout, shutdown, too many errors, drop) never
/// enters UPDATE: nothing is expunged.
#[derive(Debug)]
enum State {
    Authorization {
        user: Option<String>,
    },
    /// An AUTH challenge was sent: waiting for the client's response line.
    Sasl(SaslExchange),
    WaitAuth,
    WaitMaildrop,
    WaitTls,
    Transaction(Maildrop),
    /// UPDATE state: the driver is expunging.
    WaitCommit,
    Closed,
}

/// Outcome of one command.
enum Reply {
    /// Response fully written.
    Done,
    /// Response (if any) written; hand this event to the driver.
    Event(Pop3Event),
    /// `-ERR <text>`, counted towards `max_errors` (protocol errors, auth failures).
    Err(Cow<'static, str>),
    /// `-ERR <text>`, not counted (e.g. "no such message").
    Soft(Cow<'static, str>),
}

const PLAINTEXT_DISALLOWED: &str =
    "[AUTH] Plaintext authentication disallowed on non-secure connection, use STLS";
const AUTH_FAILED: &str = "[AUTH] Authentication failed";
const AUTH_TRY_LATER: &str = "[SYS/TEMP] Temporary authentication failure, try again later";

/// One POP3 connection's protocol state.
pub struct Pop3Session {
    config: Arc<Pop3Config>,
    state: State,
    tls_active: bool,
    stls_available: bool,
    /// Set by the `UTF8` command (RFC 6856).
    utf8: bool,
    errors: usize,
    /// Discarding the rest of an over-long line.
    discarding: bool,
    account: Option<String>,
}

impl fmt::Debug for Pop3Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Authorization { .. } => "AUTHORIZATION",
            State::Sasl(_) => "SASL",
            State::WaitAuth => "WaitAuth",
            State::WaitMaildrop => "WaitMaildrop",
            State::WaitTls => "WaitTls",
            State::Transaction(_) => "TRANSACTION",
            State::WaitCommit => "UPDATE",
            State::Closed => "Closed",
        };
        f.debug_struct("Pop3Session")
            .field("state", &state)
            .field("tls_active", &self.tls_active)
            .field("account", &self.account)
            .field("errors", &self.errors)
            .finish()
    }
}

impl Pop3Session {
    pub fn new(config: Arc<Pop3Config>, tls_active: bool, stls_available: bool) -> Self {
        Pop3Session {
            config,
            state: State::Authorization { user: None },
            tls_active,
            stls_available,
            utf8: false,
            errors: 0,
            discarding: false,
            account: None,
        }
    }

    /// The server greeting.
    pub fn greeting(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"+OK surel POP3 server ready\r\n");
    }

    /// True once the session is over (the driver should flush `out` and close).
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// The authenticated account, once authentication succeeded.
    pub fn account(&self) -> Option<&str> {
        self.account.as_deref()
    }

    /// True once the client sent `UTF8` (RFC 6856): user names and passwords may be UTF-8.
    pub fn utf8_enabled(&self) -> bool {
        self.utf8
    }

    /// True in TRANSACTION state.
    pub fn in_transaction(&self) -> bool {
        matches!(self.state, State::Transaction(_))
    }

    fn auth_allowed(&self) -> bool {
        self.tls_active || self.config.allow_plaintext_auth
    }

    fn waiting(&self) -> bool {
        matches!(
            self.state,
            State::WaitAuth | State::WaitMaildrop | State::WaitTls | State::WaitCommit
        )
    }

    /// Process as many complete lines of `input` as possible, appending responses to `out`.
    /// Returns the number of bytes consumed and what the driver must do next.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, Pop3Event) {
        let mut pos = 0;
        loop {
            if self.is_closed() {
                return (input.len(), Pop3Event::Close);
            }
            if self.waiting() {
                debug_assert!(pos == 0, "feed() called while an event is pending");
                return (pos, Pop3Event::NeedInput);
            }
            let rest = &input[pos..];
            if rest.is_empty() {
                return (pos, Pop3Event::NeedInput);
            }
            match split_line(rest, self.config.max_line) {
                Line::Incomplete => {
                    if self.discarding {
                        // Still inside an over-long line; drop what we have (keeping a
                        // trailing CR is unnecessary: we only look for LF).
                        return (input.len(), Pop3Event::NeedInput);
                    }
                    return (pos, Pop3Event::NeedInput);
                }
                Line::TooLong { consumed, complete } => {
                    pos += consumed;
                    let was_discarding = self.discarding;
                    self.discarding = !complete;
                    if !was_discarding && let Some(ev) = self.line_too_long(out) {
                        return (pos, ev);
                    }
                }
                Line::Complete { line, consumed } => {
                    pos += consumed;
                    if self.discarding {
                        // Tail of an over-long line already answered.
                        self.discarding = false;
                        continue;
                    }
                    if let Some(ev) = self.handle_line(line, out) {
                        return (pos, ev);
                    }
                }
            }
        }
    }

    fn line_too_long(&mut self, out: &mut Vec<u8>) -> Option<Pop3Event> {
        if matches!(self.state, State::Sasl(_)) {
            self.state = State::Authorization { user: None };
        }
        self.finish(Reply::Err(Cow::Borrowed("line too long")), out)
    }

    /// Write the reply of one command; returns an event for the driver, if any.
    fn finish(&mut self, reply: Reply, out: &mut Vec<u8>) -> Option<Pop3Event> {
        match reply {
            Reply::Done => None,
            Reply::Event(ev) => Some(ev),
            Reply::Soft(msg) => {
                err_line(out, &msg);
                None
            }
            Reply::Err(msg) => {
                err_line(out, &msg);
                self.errors += 1;
                if self.errors >= self.config.max_errors {
                    tracing::debug!(account = ?self.account, "pop3: too many errors, closing");
                    err_line(out, "too many errors");
                    self.state = State::Closed;
                    Some(Pop3Event::Close)
                } else {
                    None
                }
            }
        }
    }

    fn handle_line(&mut self, line: &[u8], out: &mut Vec<u8>) -> Option<Pop3Event> {
        let reply = match self.state {
            State::Sasl(_) => self.sasl_line(line, out),
            _ => match parse_command(line) {
                Err(e) => Reply::Err(Cow::Borrowed(e.message())),
                Ok(cmd) => self.command(cmd, out),
            },
        };
        self.finish(reply, out)
    }

    fn command(&mut self, cmd: Command<'_>, out: &mut Vec<u8>) -> Reply {
        if let Command::Capa = cmd {
            self.write_capa(out);
            return Reply::Done;
        }
        match &mut self.state {
            State::Transaction(md) => {
                if let Command::Quit = cmd {
                    let expunge_uids = md.msgs.iter().filter(|m| m.deleted).map(|m| m.uid);
                    let expunge_uids = expunge_uids.collect();
                    self.state = State::WaitCommit;
                    return Reply::Event(Pop3Event::Commit { expunge_uids });
                }
                transaction_command(md, cmd, out)
            }
            State::Authorization { .. } => self.authorization_command(cmd, out),
            // Lines are not parsed as commands in the other states.
            _ => Reply::Err(Cow::Borrowed("Command not valid in this state")),
        }
    }

    fn authorization_command(&mut self, cmd: Command<'_>, out: &mut Vec<u8>) -> Reply {
        match cmd {
            Command::Quit => {
                out.extend_from_slice(b"+OK Bye\r\n");
                self.state = State::Closed;
                Reply::Event(Pop3Event::Close)
            }
            Command::User(name) => {
                if !self.auth_allowed() {
                    return Reply::Err(Cow::Borrowed(PLAINTEXT_DISALLOWED));
                }
                self.state = State::Authorization {
                    user: Some(name.to_owned()),
                };
                out.extend_from_slice(b"+OK\r\n");
                Reply::Done
            }
            Command::Pass(password) => {
                if !self.auth_allowed() {
                    return Reply::Err(Cow::Borrowed(PLAINTEXT_DISALLOWED));
                }
                let State::Authorization { user } = &mut self.state else {
                    unreachable!("authorization_command outside AUTHORIZATION")
                };
                let Some(username) = user.take() else {
                    return Reply::Err(Cow::Borrowed("No user name given, use USER first"));
                };
                self.state = State::WaitAuth;
                Reply::Event(Pop3Event::Authenticate {
                    username,
                    password: password.to_owned(),
                })
            }
            Command::Auth {
                mechanism,
                initial_response,
            } => {
                if !self.auth_allowed() {
                    return Reply::Err(Cow::Borrowed(PLAINTEXT_DISALLOWED));
                }
                self.state = State::Authorization { user: None };
                let Some(mechanism) = mechanism else {
                    out.extend_from_slice(b"+OK\r\nPLAIN\r\nLOGIN\r\n.\r\n");
                    return Reply::Done;
                };
                match SaslMechanism::from_name(mechanism.as_bytes()) {
                    Some(mechanism) => {
                        let step = SaslExchange::start(
                            mechanism,
                            initial_response.map(|ir| ir.as_bytes()),
                        );
                        self.sasl_step(step, out)
                    }
                    None => Reply::Err(Cow::Borrowed("Unsupported authentication mechanism")),
                }
            }
            Command::Stls => {
                if self.tls_active {
                    return Reply::Err(Cow::Borrowed("TLS already active"));
                }
                if !self.stls_available {
                    return Reply::Err(Cow::Borrowed("STLS not available"));
                }
                out.extend_from_slice(b"+OK Begin TLS negotiation\r\n");
                self.state = State::WaitTls;
                Reply::Event(Pop3Event::StartTls)
            }
            Command::Utf8 => {
                self.utf8 = true;
                out.extend_from_slice(b"+OK UTF8 enabled\r\n");
                Reply::Done
            }
            Command::Capa => unreachable!("CAPA handled for all states"),
            Command::Stat
            | Command::List(_)
            | Command::Retr(_)
            | Command::Dele(_)
            | Command::Noop
            | Command::Rset
            | Command::Top { .. }
            | Command::Uidl(_) => {
                Reply::Err(Cow::Borrowed("Command not valid in AUTHORIZATION state"))
            }
        }
    }

    /// A continuation line of an AUTH exchange.
    fn sasl_line(&mut self, line: &[u8], out: &mut Vec<u8>) -> Reply {
        match std::mem::replace(&mut self.state, State::Authorization { user: None }) {
            State::Sasl(exchange) => self.sasl_step(exchange.respond(line), out),
            _ => unreachable!("sasl_line outside a SASL exchange"),
        }
    }

    /// Carry an AUTH exchange one step on (RFC 5034: `*` cancels, a malformed response is
    /// -ERR; both leave the exchange).
    fn sasl_step(&mut self, step: SaslStep, out: &mut Vec<u8>) -> Reply {
        match step {
            SaslStep::Challenge(exchange, challenge) => {
                out.extend_from_slice(b"+ ");
                out.extend_from_slice(challenge.as_bytes());
                out.extend_from_slice(b"\r\n");
                self.state = State::Sasl(exchange);
                Reply::Done
            }
            SaslStep::Done(SaslCredentials { username, password }) => {
                self.state = State::WaitAuth;
                Reply::Event(Pop3Event::Authenticate { username, password })
            }
            SaslStep::Failed(SaslError::Cancelled) => {
                Reply::Soft(Cow::Borrowed("Authentication cancelled"))
            }
            SaslStep::Failed(SaslError::AuthzidMismatch) => Reply::Err(Cow::Borrowed(
                "[AUTH] Authorization identity must match authentication identity",
            )),
            SaslStep::Failed(SaslError::EmptyField) => {
                Reply::Err(Cow::Borrowed("Empty user name or password"))
            }
            SaslStep::Failed(SaslError::BadBase64) => {
                Reply::Err(Cow::Borrowed("Invalid base64 data"))
            }
            SaslStep::Failed(SaslError::Malformed) => {
                Reply::Err(Cow::Borrowed("Invalid SASL response"))
            }
        }
    }

    fn write_capa(&self, out: &mut Vec<u8>) {
        let authorization = matches!(self.state, State::Authorization { .. });
        out.extend_from_slice(b"+OK Capability list follows\r\n");
        if authorization && self.auth_allowed() {
            out.extend_from_slice(b"USER\r\n");
        }
        out.extend_from_slice(b"TOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n");
        if authorization && self.auth_allowed() {
            out.extend_from_slice(b"SASL PLAIN LOGIN\r\n");
        }
        if authorization && self.stls_available && !self.tls_active {
            out.extend_from_slice(b"STLS\r\n");
        }
        out.extend_from_slice(b"UTF8\r\nIMPLEMENTATION surel\r\n.\r\n");
    }

    /// The driver's answer to [`Pop3Event::Authenticate`]. On acceptance returns
    /// `OpenMaildrop`; on rejection writes `-ERR [AUTH] ...` and returns `None` (keep feeding),
    /// or `Some(Close)` if that was one error too many.
    pub fn auth_result(&mut self, outcome: AuthOutcome, out: &mut Vec<u8>) -> Option<Pop3Event> {
        if !matches!(self.state, State::WaitAuth) {
            debug_assert!(false, "auth_result without a pending Authenticate");
            return None;
        }
        match outcome {
            AuthOutcome::Accepted(account) => {
                self.state = State::WaitMaildrop;
                self.account = Some(account.clone());
                Some(Pop3Event::OpenMaildrop { account })
            }
            AuthOutcome::Rejected => {
                self.state = State::Authorization { user: None };
                self.finish(Reply::Err(Cow::Borrowed(AUTH_FAILED)), out)
            }
            // RFC 3206: a temporary condition, not a verdict on the credentials.
            AuthOutcome::Throttled | AuthOutcome::Busy => {
                self.state = State::Authorization { user: None };
                self.finish(Reply::Err(Cow::Borrowed(AUTH_TRY_LATER)), out)
            }
        }
    }

    /// The driver's answer to [`Pop3Event::OpenMaildrop`].
    pub fn maildrop_opened(&mut self, result: MaildropOpen, out: &mut Vec<u8>) {
        if !matches!(self.state, State::WaitMaildrop) {
            debug_assert!(false, "maildrop_opened without a pending OpenMaildrop");
            return;
        }
        match result {
            MaildropOpen::Ok(snapshot) => {
                self.state = State::Transaction(Maildrop::new(snapshot));
                out.extend_from_slice(b"+OK Logged in.\r\n");
            }
            MaildropOpen::InUse => {
                self.account = None;
                self.state = State::Authorization { user: None };
                err_line(out, "[IN-USE] Mailbox is locked by another POP3 session");
            }
            MaildropOpen::Failed(e) => {
                self.account = None;
                self.state = State::Authorization { user: None };
                err_line(out, store_failure(&e, StoreStep::OpenMaildrop));
            }
        }
    }

    /// The driver's answer to [`Pop3Event::Commit`]; the session is closed afterwards.
    pub fn commit_result(&mut self, result: Result<(), StoreError>, out: &mut Vec<u8>) {
        debug_assert!(matches!(self.state, State::WaitCommit));
        match result {
            Ok(()) => out.extend_from_slice(b"+OK Bye\r\n"),
            Err(e) => err_line(out, store_failure(&e, StoreStep::Expunge)),
        }
        self.state = State::Closed;
    }

    /// The TLS handshake after STLS completed: back to a fresh AUTHORIZATION state.
    pub fn tls_started(&mut self) {
        debug_assert!(matches!(self.state, State::WaitTls));
        self.tls_active = true;
        self.stls_available = false;
        self.discarding = false;
        self.state = State::Authorization { user: None };
    }

    /// Idle timeout: writes an `-ERR` line and closes (no UPDATE: nothing is expunged).
    pub fn timeout(&mut self, out: &mut Vec<u8>) {
        if !self.is_closed() {
            err_line(out, "Disconnected for inactivity");
            self.state = State::Closed;
        }
    }

    /// Server shutdown: writes an `-ERR` line and closes (no UPDATE: nothing is expunged).
    pub fn shutdown(&mut self, out: &mut Vec<u8>) {
        if !self.is_closed() {
            err_line(out, "[SYS/TEMP] Server shutting down");
            self.state = State::Closed;
        }
    }
}

/// What the session asked the store to do when it failed.
#[derive(Clone, Copy, Debug)]
enum StoreStep {
    OpenMaildrop,
    Expunge,
}

/// The reply text (after `-ERR `) for a store failure: the one place POP3 decides it. The
/// store's own words (errno, paths) go to the log only; every store failure is temporary for
/// the client (RFC 3206 `SYS/TEMP`), since nothing it sends differently would help.
fn store_failure(e: &StoreError, step: StoreStep) -> &'static str {
    tracing::warn!(error = %e, ?step, "pop3: store failure");
    match step {
        StoreStep::OpenMaildrop => "[SYS/TEMP] Unable to open mailbox, try again later",
        StoreStep::Expunge if e.is_out_of_space() => {
            "[SYS/TEMP] Not enough disk space, deleted messages were kept"
        }
        StoreStep::Expunge => "[SYS/TEMP] Some deleted messages were not removed",
    }
}

fn err_line(out: &mut Vec<u8>, msg: &str) {
    out.extend_from_slice(b"-ERR ");
    out.extend_from_slice(msg.as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn transaction_command(md: &mut Maildrop, cmd: Command<'_>, out: &mut Vec<u8>) -> Reply {
    match cmd {
        Command::Stat => {
            let _ = write!(out, "+OK {} {}\r\n", md.live_count, md.live_size);
            Reply::Done
        }
        Command::List(None) => {
            let _ = write!(
                out,
                "+OK {} messages ({} octets)\r\n",
                md.live_count, md.live_size
            );
            for (i, m) in md.msgs.iter().enumerate().filter(|(_, m)| !m.deleted) {
                let _ = write!(out, "{} {}\r\n", i + 1, m.size);
            }
            out.extend_from_slice(b".\r\n");
            Reply::Done
        }
        Command::List(Some(n)) => match md.lookup(n) {
            Ok(i) => {
                let _ = write!(out, "+OK {n} {}\r\n", md.msgs[i].size);
                Reply::Done
            }
            Err(e) => e,
        },
        Command::Uidl(None) => {
            out.extend_from_slice(b"+OK\r\n");
            for (i, m) in md.msgs.iter().enumerate().filter(|(_, m)| !m.deleted) {
                let _ = write!(out, "{} {}\r\n", i + 1, md.uidl(m));
            }
            out.extend_from_slice(b".\r\n");
            Reply::Done
        }
        Command::Uidl(Some(n)) => match md.lookup(n) {
            Ok(i) => {
                let _ = write!(out, "+OK {n} {}\r\n", md.uidl(&md.msgs[i]));
                Reply::Done
            }
            Err(e) => e,
        },
        Command::Retr(n) => match md.lookup(n) {
            Ok(i) => {
                let m = md.msgs[i];
                let _ = write!(out, "+OK {} octets\r\n", m.size);
                Reply::Event(Pop3Event::Send {
                    uid: m.uid,
                    top_lines: None,
                })
            }
            Err(e) => e,
        },
        Command::Top { msg, lines } => match md.lookup(msg) {
            Ok(i) => {
                out.extend_from_slice(b"+OK\r\n");
                Reply::Event(Pop3Event::Send {
                    uid: md.msgs[i].uid,
                    top_lines: Some(lines),
                })
            }
            Err(e) => e,
        },
        Command::Dele(n) => match md.lookup(n) {
            Ok(i) => {
                let m = &mut md.msgs[i];
                m.deleted = true;
                md.live_count -= 1;
                md.live_size -= u64::from(m.size);
                let _ = write!(out, "+OK message {n} deleted\r\n");
                Reply::Done
            }
            Err(e) => e,
        },
        Command::Noop => {
            out.extend_from_slice(b"+OK\r\n");
            Reply::Done
        }
        Command::Rset => {
            for m in &mut md.msgs {
                m.deleted = false;
            }
            md.live_count = md.msgs.len();
            md.live_size = md.msgs.iter().map(|m| u64::from(m.size)).sum();
            let _ = write!(
                out,
                "+OK maildrop has {} messages ({} octets)\r\n",
                md.live_count, md.live_size
            );
            Reply::Done
        }
        Command::User(_)
        | Command::Pass(_)
        | Command::Auth { .. }
        | Command::Stls
        | Command::Utf8 => Reply::Err(Cow::Borrowed("Command not valid in TRANSACTION state")),
        Command::Quit | Command::Capa => unreachable!("handled by the caller"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::sasl;
    use crate::pop3::write_stuffed;
    use crate::store::{Flags, MessageMeta};

    const M1: &[u8] = b"From: a@b\r\nSubject: one\r\n\r\nHello\r\n.dot line\r\nbye\r\n";
    const M2: &[u8] = b"Subject: two\r\n\r\nsecond\r\n";
    const M3: &[u8] = b"Subject: three\r\n\r\nthird\r\n";

    fn meta(uid: u32, bytes: &[u8]) -> MessageMeta {
        MessageMeta {
            uid,
            size: bytes.len() as u32,
            internal_date: 0,
            flags: Flags::default(),
            modseq: 1,
            needs_dot_stuffing: bytes.starts_with(b".") || bytes.windows(2).any(|w| w == b"\n."),
            email_id: Default::default(),
            saved: None,
        }
    }

    fn snapshot() -> MailboxSnapshot {
        MailboxSnapshot {
            id: 0,
            uidvalidity: 0x1234,
            uidnext: 12,
            highest_modseq: 1,
            messages: vec![meta(3, M1), meta(7, M2), meta(11, M3)],
        }
    }

    fn body(uid: u32) -> &'static [u8] {
        match uid {
            3 => M1,
            7 => M2,
            11 => M3,
            _ => panic!("no uid {uid}"),
        }
    }

    /// A minimal fake driver: feeds everything, answers events, collects output.
    struct Harness {
        s: Pop3Session,
        out: Vec<u8>,
        events: Vec<Pop3Event>,
        password: &'static str,
        maildrop: fn() -> MaildropOpen,
        commit: fn() -> Result<(), StoreError>,
        closed: bool,
    }

    impl Harness {
        fn new(config: Pop3Config, tls: bool, stls: bool) -> Self {
            let mut s = Pop3Session::new(Arc::new(config), tls, stls);
            let mut out = Vec::new();
            s.greeting(&mut out);
            assert_eq!(out, b"+OK surel POP3 server ready\r\n");
            out.clear();
            Harness {
                s,
                out,
                events: Vec::new(),
                password: "secret",
                maildrop: || MaildropOpen::Ok(snapshot()),
                commit: || Ok(()),
                closed: false,
            }
        }

        fn tls() -> Self {
            Harness::new(Pop3Config::default(), true, false)
        }

        /// Feed `input` as one buffer, driving events to completion; returns the output.
        fn send(&mut self, input: &str) -> String {
            let mut buf = input.as_bytes().to_vec();
            self.drive(&mut buf);
            String::from_utf8(std::mem::take(&mut self.out)).unwrap()
        }

        /// Feed `input` in chunks of `n` bytes, as a driver reading a slow socket would.
        fn send_chunked(&mut self, input: &str, n: usize) -> String {
            let mut buf = Vec::new();
            for chunk in input.as_bytes().chunks(n) {
                if self.closed {
                    break;
                }
                buf.extend_from_slice(chunk);
                self.drive(&mut buf);
            }
            String::from_utf8(std::mem::take(&mut self.out)).unwrap()
        }

        /// Feed `buf` (keeping its unconsumed tail), driving events to completion.
        fn drive(&mut self, buf: &mut Vec<u8>) {
            loop {
                let (used, ev) = self.s.feed(buf, &mut self.out);
                assert!(used <= buf.len());
                buf.drain(..used);
                self.events.push(ev.clone());
                match ev {
                    Pop3Event::NeedInput => {
                        if self.s.is_closed() {
                            self.closed = true;
                        }
                        break;
                    }
                    Pop3Event::Authenticate { username, password } => {
                        let outcome = if password == self.password {
                            AuthOutcome::Accepted(format!("{username}@example.org"))
                        } else {
                            AuthOutcome::Rejected
                        };
                        match self.s.auth_result(outcome, &mut self.out) {
                            Some(Pop3Event::OpenMaildrop { account }) => {
                                self.events.push(Pop3Event::OpenMaildrop { account });
                                self.s.maildrop_opened((self.maildrop)(), &mut self.out);
                            }
                            Some(Pop3Event::Close) => {
                                self.closed = true;
                                break;
                            }
                            Some(other) => panic!("unexpected {other:?}"),
                            None => {}
                        }
                    }
                    Pop3Event::OpenMaildrop { .. } => panic!("OpenMaildrop from feed"),
                    Pop3Event::Send { uid, top_lines } => {
                        write_stuffed(body(uid), top_lines, &mut self.out);
                    }
                    Pop3Event::Commit { .. } => {
                        self.s.commit_result((self.commit)(), &mut self.out);
                        assert!(self.s.is_closed());
                        self.closed = true;
                        break;
                    }
                    Pop3Event::StartTls => {
                        buf.clear();
                        self.s.tls_started();
                    }
                    Pop3Event::Close => {
                        self.closed = true;
                        break;
                    }
                }
            }
        }

        fn login(&mut self) {
            assert_eq!(
                self.send("USER alice\r\nPASS secret\r\n"),
                "+OK\r\n+OK Logged in.\r\n"
            );
            assert!(self.s.in_transaction());
            assert_eq!(self.s.account(), Some("alice@example.org"));
        }
    }

    const CAPA_TLS: &str = "+OK Capability list follows\r\nUSER\r\nTOP\r\nUIDL\r\nRESP-CODES\r\n\
        AUTH-RESP-CODE\r\nPIPELINING\r\nSASL PLAIN LOGIN\r\nUTF8\r\nIMPLEMENTATION surel\r\n.\r\n";
    const CAPA_PLAIN_STLS: &str = "+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\n\
        AUTH-RESP-CODE\r\nPIPELINING\r\nSTLS\r\nUTF8\r\nIMPLEMENTATION surel\r\n.\r\n";
    const CAPA_TRANSACTION: &str = "+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\n\
        AUTH-RESP-CODE\r\nPIPELINING\r\nUTF8\r\nIMPLEMENTATION surel\r\n.\r\n";

    #[test]
    fn happy_path() {
        let mut h = Harness::tls();
        assert_eq!(h.send("CAPA\r\n"), CAPA_TLS);
        h.login();
        assert_eq!(
            h.events[1],
            Pop3Event::Authenticate {
                username: "alice".into(),
                password: "secret".into()
            }
        );
        assert_eq!(
            h.events[2],
            Pop3Event::OpenMaildrop {
                account: "alice@example.org".into()
            }
        );
        assert_eq!(h.send("CAPA\r\n"), CAPA_TRANSACTION);
        let total = M1.len() + M2.len() + M3.len();
        assert_eq!(h.send("STAT\r\n"), format!("+OK 3 {total}\r\n"));
        assert_eq!(
            h.send("LIST\r\n"),
            format!(
                "+OK 3 messages ({total} octets)\r\n1 {}\r\n2 {}\r\n3 {}\r\n.\r\n",
                M1.len(),
                M2.len(),
                M3.len()
            )
        );
        assert_eq!(h.send("LIST 2\r\n"), format!("+OK 2 {}\r\n", M2.len()));
        assert_eq!(
            h.send("UIDL\r\n"),
            "+OK\r\n1 0000123400000003\r\n2 0000123400000007\r\n3 000012340000000b\r\n.\r\n"
        );
        assert_eq!(h.send("UIDL 3\r\n"), "+OK 3 000012340000000b\r\n");
        assert_eq!(
            h.send("RETR 1\r\n"),
            format!(
                "+OK {} octets\r\nFrom: a@b\r\nSubject: one\r\n\r\nHello\r\n..dot line\r\nbye\r\n.\r\n",
                M1.len()
            )
        );
        assert_eq!(
            h.events.last(),
            Some(&Pop3Event::NeedInput),
            "feeding continues after Send"
        );
        assert!(h.events.contains(&Pop3Event::Send {
            uid: 3,
            top_lines: None
        }));
        assert_eq!(
            h.send("TOP 1 1\r\n"),
            "+OK\r\nFrom: a@b\r\nSubject: one\r\n\r\nHello\r\n.\r\n"
        );
        assert_eq!(h.send("TOP 2 0\r\n"), "+OK\r\nSubject: two\r\n\r\n.\r\n");
        assert_eq!(h.send("NOOP\r\n"), "+OK\r\n");
        assert_eq!(h.send("DELE 1\r\n"), "+OK message 1 deleted\r\n");
        assert_eq!(h.send("DELE 3\r\n"), "+OK message 3 deleted\r\n");
        assert_eq!(h.send("STAT\r\n"), format!("+OK 1 {}\r\n", M2.len()));
        assert_eq!(
            h.send("LIST\r\n"),
            format!(
                "+OK 1 messages ({} octets)\r\n2 {}\r\n.\r\n",
                M2.len(),
                M2.len()
            )
        );
        assert_eq!(h.send("UIDL\r\n"), "+OK\r\n2 0000123400000007\r\n.\r\n");
        assert_eq!(
            h.send("RSET\r\n"),
            format!("+OK maildrop has 3 messages ({total} octets)\r\n")
        );
        assert_eq!(h.send("STAT\r\n"), format!("+OK 3 {total}\r\n"));
        assert_eq!(h.send("DELE 2\r\n"), "+OK message 2 deleted\r\n");
        assert_eq!(h.send("DELE 3\r\n"), "+OK message 3 deleted\r\n");
        assert_eq!(h.send("QUIT\r\n"), "+OK Bye\r\n");
        assert!(h.closed);
        assert!(h.events.contains(&Pop3Event::Commit {
            expunge_uids: vec![7, 11]
        }));
        // A closed session only says Close.
        let mut out = Vec::new();
        assert_eq!(h.s.feed(b"NOOP\r\n", &mut out), (6, Pop3Event::Close));
        assert!(out.is_empty());
    }

    #[test]
    fn quit_without_deletions_commits_nothing() {
        let mut h = Harness::tls();
        h.login();
        assert_eq!(h.send("QUIT\r\n"), "+OK Bye\r\n");
        assert_eq!(
            h.events
                .iter()
                .rev()
                .find(|e| matches!(e, Pop3Event::Commit { .. })),
            Some(&Pop3Event::Commit {
                expunge_uids: vec![]
            })
        );
    }

    #[test]
    fn commit_failure() {
        let mut h = Harness::tls();
        h.commit = || Err(StoreError::Io(std::io::Error::other("/data/store/0: EIO")));
        h.login();
        h.send("DELE 1\r\n");
        assert_eq!(
            h.send("QUIT\r\n"),
            "-ERR [SYS/TEMP] Some deleted messages were not removed\r\n"
        );
        assert!(h.s.is_closed());
        // A full disk says so, and nothing of the operating system's message reaches the client.
        let mut h = Harness::tls();
        h.commit = || {
            Err(StoreError::Io(std::io::Error::from_raw_os_error(
                libc::ENOSPC,
            )))
        };
        h.login();
        h.send("DELE 1\r\n");
        assert_eq!(
            h.send("QUIT\r\n"),
            "-ERR [SYS/TEMP] Not enough disk space, deleted messages were kept\r\n"
        );
    }

    #[test]
    fn deleted_and_missing_messages() {
        let mut h = Harness::tls();
        h.login();
        assert_eq!(h.send("DELE 2\r\n"), "+OK message 2 deleted\r\n");
        for cmd in ["RETR 2", "DELE 2", "LIST 2", "UIDL 2", "TOP 2 1"] {
            assert_eq!(
                h.send(&format!("{cmd}\r\n")),
                "-ERR message 2 already deleted\r\n",
                "{cmd}"
            );
        }
        for cmd in [
            "RETR 0",
            "RETR 4",
            "LIST 0",
            "UIDL 99",
            "DELE 4294967295",
            "TOP 4 0",
        ] {
            assert_eq!(
                h.send(&format!("{cmd}\r\n")),
                "-ERR no such message\r\n",
                "{cmd}"
            );
        }
        assert_eq!(h.send("RETR 99999999999\r\n"), "-ERR Invalid number\r\n");
        assert!(
            h.send("RSET\r\n")
                .starts_with("+OK maildrop has 3 messages")
        );
        assert!(h.send("RETR 2\r\n").starts_with("+OK "));
        // "no such message" is not counted as a protocol error.
        assert_eq!(h.s.errors, 1);
    }

    #[test]
    fn empty_maildrop() {
        let mut h = Harness::tls();
        h.maildrop = || {
            MaildropOpen::Ok(MailboxSnapshot {
                id: 0,
                uidvalidity: 1,
                uidnext: 1,
                highest_modseq: 0,
                messages: vec![],
            })
        };
        h.login();
        assert_eq!(h.send("STAT\r\n"), "+OK 0 0\r\n");
        assert_eq!(h.send("LIST\r\n"), "+OK 0 messages (0 octets)\r\n.\r\n");
        assert_eq!(h.send("UIDL\r\n"), "+OK\r\n.\r\n");
        assert_eq!(h.send("RETR 1\r\n"), "-ERR no such message\r\n");
    }

    #[test]
    fn quit_in_authorization() {
        let mut h = Harness::tls();
        assert_eq!(h.send("QUIT\r\nNOOP\r\n"), "+OK Bye\r\n");
        assert!(h.closed);
        assert!(
            !h.events
                .iter()
                .any(|e| matches!(e, Pop3Event::Commit { .. }))
        );
        let mut h = Harness::tls();
        assert_eq!(h.send("USER bob\r\nQUIT\r\n"), "+OK\r\n+OK Bye\r\n");
    }

    #[test]
    fn pipelining() {
        let mut h = Harness::tls();
        let out = h.send(
            "CAPA\r\nUSER alice\r\nPASS secret\r\nSTAT\r\nRETR 2\r\nDELE 2\r\nTOP 3 0\r\nLIST 2\r\nQUIT\r\n",
        );
        let expected = format!(
            "{CAPA_TLS}+OK\r\n+OK Logged in.\r\n+OK 3 {}\r\n+OK {} octets\r\n\
             Subject: two\r\n\r\nsecond\r\n.\r\n+OK message 2 deleted\r\n\
             +OK\r\nSubject: three\r\n\r\n.\r\n-ERR message 2 already deleted\r\n+OK Bye\r\n",
            M1.len() + M2.len() + M3.len(),
            M2.len()
        );
        assert_eq!(out, expected);
        assert!(h.events.contains(&Pop3Event::Commit {
            expunge_uids: vec![7]
        }));
    }

    #[test]
    fn output_independent_of_read_boundaries() {
        let user = sasl::encode_base64(b"alice");
        let pass = sasl::encode_base64(b"secret");
        let script = format!(
            "CAPA\r\nBOGUS\nAUTH LOGIN\r\n{user}\r\n{pass}\r\nSTAT\r\nLIST\nUIDL 2\r\n\
             RETR 1\r\nTOP 2 0\r\nDELE 1\r\nRETR 1\r\n{}\r\nRSET\r\nDELE 3\r\nQUIT\r\nNOOP\r\n",
            "x".repeat(100)
        );
        let config = || Pop3Config {
            max_line: 64,
            ..Pop3Config::default()
        };
        let mut whole = Harness::new(config(), true, false);
        let expected = whole.send(&script);
        assert!(expected.ends_with("+OK Bye\r\n"), "{expected}");
        assert!(expected.contains("-ERR line too long\r\n"));
        let commit = Pop3Event::Commit {
            expunge_uids: vec![11],
        };
        assert!(whole.events.contains(&commit));
        for n in 1..=17 {
            let mut h = Harness::new(config(), true, false);
            assert_eq!(h.send_chunked(&script, n), expected, "chunks of {n}");
            assert!(h.events.contains(&commit));
        }
    }

    #[test]
    fn feed_stops_at_events_and_keeps_the_rest() {
        let mut s = Pop3Session::new(Arc::new(Pop3Config::default()), true, false);
        let mut out = Vec::new();
        let input = b"USER a\r\nPASS b\r\nSTAT\r\n";
        let (used, ev) = s.feed(input, &mut out);
        assert_eq!(used, 16);
        assert!(matches!(ev, Pop3Event::Authenticate { .. }));
        // While the event is pending nothing is consumed.
        assert_eq!(s.feed(&input[used..], &mut out), (0, Pop3Event::NeedInput));
        assert_eq!(
            s.auth_result(AuthOutcome::Accepted("a".into()), &mut out),
            Some(Pop3Event::OpenMaildrop {
                account: "a".into()
            })
        );
        s.maildrop_opened(MaildropOpen::Ok(snapshot()), &mut out);
        assert_eq!(s.feed(&input[used..], &mut out), (6, Pop3Event::NeedInput));
        let total = M1.len() + M2.len() + M3.len();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("+OK\r\n+OK Logged in.\r\n+OK 3 {total}\r\n")
        );
    }

    #[test]
    fn partial_lines_and_bare_lf() {
        let mut s = Pop3Session::new(Arc::new(Pop3Config::default()), true, false);
        let mut out = Vec::new();
        assert_eq!(s.feed(b"CA", &mut out), (0, Pop3Event::NeedInput));
        assert_eq!(s.feed(b"CAPA\r", &mut out), (0, Pop3Event::NeedInput));
        assert!(out.is_empty());
        assert_eq!(
            s.feed(b"CAPA\r\nuser x\nNO", &mut out),
            (13, Pop3Event::NeedInput)
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("{CAPA_TLS}+OK\r\n")
        );
    }

    #[test]
    fn stls_and_capa_before_after_tls() {
        let mut h = Harness::new(Pop3Config::default(), false, true);
        assert_eq!(h.send("CAPA\r\n"), CAPA_PLAIN_STLS);
        // The command after STLS in the same buffer is discarded (no injection).
        assert_eq!(
            h.send("STLS\r\nUSER evil\r\n"),
            "+OK Begin TLS negotiation\r\n"
        );
        assert!(h.events.contains(&Pop3Event::StartTls));
        assert_eq!(h.send("CAPA\r\n"), CAPA_TLS);
        assert_eq!(h.send("STLS\r\n"), "-ERR TLS already active\r\n");
        h.login();
        assert_eq!(
            h.send("STLS\r\n"),
            "-ERR Command not valid in TRANSACTION state\r\n"
        );
    }

    #[test]
    fn stls_unavailable() {
        let mut h = Harness::new(Pop3Config::default(), false, false);
        assert_eq!(h.send("STLS\r\n"), "-ERR STLS not available\r\n");
        assert!(!h.send("CAPA\r\n").contains("STLS"));
        // Implicit TLS (pop3s): no STLS either.
        let mut h = Harness::new(Pop3Config::default(), true, true);
        assert!(!h.send("CAPA\r\n").contains("STLS"));
        assert_eq!(h.send("STLS\r\n"), "-ERR TLS already active\r\n");
    }

    #[test]
    fn plaintext_auth_refused() {
        let mut h = Harness::new(Pop3Config::default(), false, true);
        let refused = "-ERR [AUTH] Plaintext authentication disallowed on non-secure connection, use STLS\r\n";
        assert_eq!(h.send("USER alice\r\n"), refused);
        assert_eq!(h.send("PASS secret\r\n"), refused);
        assert_eq!(h.send("AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n"), refused);
        assert_eq!(h.send("AUTH LOGIN\r\n"), refused);
        assert_eq!(h.send("AUTH\r\n"), refused);
        assert!(
            !h.events
                .iter()
                .any(|e| matches!(e, Pop3Event::Authenticate { .. }))
        );
        let capa = h.send("CAPA\r\n");
        assert!(!capa.contains("USER\r\n") && !capa.contains("SASL"));
        // ... unless configured to allow it.
        let config = Pop3Config {
            allow_plaintext_auth: true,
            ..Pop3Config::default()
        };
        let mut h = Harness::new(config, false, true);
        let capa = h.send("CAPA\r\n");
        assert!(capa.contains("USER\r\n") && capa.contains("SASL PLAIN LOGIN\r\n"));
        assert!(capa.contains("STLS\r\n"));
        h.login();
    }

    #[test]
    fn wrong_password() {
        let mut h = Harness::tls();
        assert_eq!(
            h.send("USER alice\r\nPASS wrong\r\n"),
            "+OK\r\n-ERR [AUTH] Authentication failed\r\n"
        );
        assert!(!h.s.in_transaction());
        // USER is forgotten after a failed PASS.
        assert_eq!(
            h.send("PASS secret\r\n"),
            "-ERR No user name given, use USER first\r\n"
        );
        h.login();
    }

    #[test]
    fn wrong_state() {
        let mut h = Harness::tls();
        for cmd in [
            "STAT", "LIST", "RETR 1", "DELE 1", "NOOP", "RSET", "TOP 1 1", "UIDL",
        ] {
            assert_eq!(
                h.send(&format!("{cmd}\r\n")),
                "-ERR Command not valid in AUTHORIZATION state\r\n"
            );
        }
        h.login();
        for cmd in ["USER x", "PASS y", "AUTH PLAIN", "UTF8"] {
            assert_eq!(
                h.send(&format!("{cmd}\r\n")),
                "-ERR Command not valid in TRANSACTION state\r\n"
            );
        }
        assert_eq!(h.send("APOP a b\r\n"), "-ERR Unknown command\r\n");
        assert_eq!(h.send("STAT 1\r\n"), "-ERR Too many arguments\r\n");
        assert!(h.s.in_transaction());
    }

    #[test]
    fn auth_plain() {
        // With initial response.
        let mut h = Harness::tls();
        let ir = sasl::encode_base64(b"\0alice\0secret");
        assert_eq!(
            h.send(&format!("AUTH PLAIN {ir}\r\n")),
            "+OK Logged in.\r\n"
        );
        assert!(h.events.contains(&Pop3Event::Authenticate {
            username: "alice".into(),
            password: "secret".into()
        }));
        // Without: empty continuation.
        let mut h = Harness::tls();
        assert_eq!(h.send("auth plain\r\n"), "+ \r\n");
        assert_eq!(h.send(&format!("{ir}\r\n")), "+OK Logged in.\r\n");
        // authzid equal to authcid is fine, a different one is not.
        let mut h = Harness::tls();
        let ir2 = sasl::encode_base64(b"alice\0alice\0secret");
        assert_eq!(
            h.send(&format!("AUTH PLAIN {ir2}\r\n")),
            "+OK Logged in.\r\n"
        );
        let mut h = Harness::tls();
        let ir3 = sasl::encode_base64(b"admin\0alice\0secret");
        assert!(
            h.send(&format!("AUTH PLAIN {ir3}\r\n"))
                .starts_with("-ERR [AUTH] ")
        );
        // Wrong password.
        let bad = sasl::encode_base64(b"\0alice\0nope");
        assert_eq!(
            h.send(&format!("AUTH PLAIN {bad}\r\n")),
            "-ERR [AUTH] Authentication failed\r\n"
        );
        // Bad base64, malformed content, "=" (empty).
        assert_eq!(
            h.send("AUTH PLAIN !!!!\r\n"),
            "-ERR Invalid base64 data\r\n"
        );
        assert_eq!(
            h.send("AUTH PLAIN\r\n%%%%\r\n"),
            "+ \r\n-ERR Invalid base64 data\r\n"
        );
        let junk = sasl::encode_base64(b"alice secret");
        assert_eq!(
            h.send(&format!("AUTH PLAIN {junk}\r\n")),
            "-ERR Invalid SASL response\r\n"
        );
        assert_eq!(h.send("AUTH PLAIN =\r\n"), "-ERR Invalid SASL response\r\n");
        // Cancel.
        assert_eq!(
            h.send("AUTH PLAIN\r\n*\r\n"),
            "+ \r\n-ERR Authentication cancelled\r\n"
        );
        // Back in AUTHORIZATION and still usable.
        assert_eq!(
            h.send("AUTH X-UNKNOWN\r\n"),
            "-ERR Unsupported authentication mechanism\r\n"
        );
        assert_eq!(h.send("AUTH\r\n"), "+OK\r\nPLAIN\r\nLOGIN\r\n.\r\n");
        h.login();
    }

    #[test]
    fn auth_login() {
        let user = sasl::encode_base64(b"alice");
        let pass = sasl::encode_base64(b"secret");
        let mut h = Harness::tls();
        assert_eq!(h.send("AUTH LOGIN\r\n"), "+ VXNlcm5hbWU6\r\n");
        assert_eq!(h.send(&format!("{user}\r\n")), "+ UGFzc3dvcmQ6\r\n");
        assert_eq!(h.send(&format!("{pass}\r\n")), "+OK Logged in.\r\n");
        // Pipelined, with initial response.
        let mut h = Harness::tls();
        assert_eq!(
            h.send(&format!("AUTH LOGIN {user}\r\n{pass}\r\nSTAT\r\n")),
            format!(
                "+ UGFzc3dvcmQ6\r\n+OK Logged in.\r\n+OK 3 {}\r\n",
                M1.len() + M2.len() + M3.len()
            )
        );
        // Cancel at either step.
        let mut h = Harness::tls();
        assert_eq!(
            h.send("AUTH LOGIN\r\n*\r\n"),
            "+ VXNlcm5hbWU6\r\n-ERR Authentication cancelled\r\n"
        );
        assert_eq!(
            h.send(&format!("AUTH LOGIN {user}\r\n*\r\n")),
            "+ UGFzc3dvcmQ6\r\n-ERR Authentication cancelled\r\n"
        );
        assert_eq!(
            h.send("AUTH LOGIN\r\n@@\r\n"),
            "+ VXNlcm5hbWU6\r\n-ERR Invalid base64 data\r\n"
        );
        // Continuation lines are not commands ("QUIT" is valid base64 here).
        assert_eq!(
            h.send("AUTH LOGIN\r\nQUIT\r\n*\r\n"),
            "+ VXNlcm5hbWU6\r\n+ UGFzc3dvcmQ6\r\n-ERR Authentication cancelled\r\n"
        );
        assert!(!h.closed);
        // An empty user name ends the exchange at once (it could never log in).
        assert_eq!(
            h.send("AUTH LOGIN =\r\n"),
            "-ERR Empty user name or password\r\n"
        );
        let wrong = sasl::encode_base64(b"wrong");
        assert_eq!(
            h.send(&format!("AUTH LOGIN {user}\r\n{wrong}\r\n")),
            "+ UGFzc3dvcmQ6\r\n-ERR [AUTH] Authentication failed\r\n"
        );
    }

    #[test]
    fn maildrop_in_use_and_failed() {
        let mut h = Harness::tls();
        h.maildrop = || MaildropOpen::InUse;
        assert_eq!(
            h.send("USER alice\r\nPASS secret\r\n"),
            "+OK\r\n-ERR [IN-USE] Mailbox is locked by another POP3 session\r\n"
        );
        assert!(!h.s.in_transaction());
        assert_eq!(h.s.account(), None);
        h.maildrop = || MaildropOpen::Failed(StoreError::Corrupt("segment 3: bad crc".into()));
        assert_eq!(
            h.send("USER alice\r\nPASS secret\r\n"),
            "+OK\r\n-ERR [SYS/TEMP] Unable to open mailbox, try again later\r\n"
        );
        h.maildrop = || MaildropOpen::Ok(snapshot());
        h.login();
    }

    #[test]
    fn too_many_errors() {
        let config = Pop3Config {
            max_errors: 3,
            ..Pop3Config::default()
        };
        let mut h = Harness::new(config, true, false);
        assert_eq!(
            h.send("FOO\r\nBAR\r\nBAZ\r\nNOOP\r\n"),
            "-ERR Unknown command\r\n-ERR Unknown command\r\n-ERR Unknown command\r\n\
             -ERR too many errors\r\n"
        );
        assert!(h.closed && h.s.is_closed());
        // Failed logins count too.
        let config = Pop3Config {
            max_errors: 2,
            ..Pop3Config::default()
        };
        let mut h = Harness::new(config, true, false);
        assert_eq!(
            h.send("USER a\r\nPASS x\r\nUSER a\r\nPASS y\r\nUSER a\r\n"),
            "+OK\r\n-ERR [AUTH] Authentication failed\r\n+OK\r\n\
             -ERR [AUTH] Authentication failed\r\n-ERR too many errors\r\n"
        );
        assert!(h.closed);
    }

    #[test]
    fn default_error_limit_is_twenty() {
        let mut h = Harness::tls();
        let out = h.send(&"X\r\n".repeat(25));
        assert_eq!(out.matches("-ERR Unknown command").count(), 20);
        assert!(out.ends_with("-ERR too many errors\r\n"));
    }

    #[test]
    fn overlong_lines() {
        let config = Pop3Config {
            max_line: 16,
            ..Pop3Config::default()
        };
        let mut h = Harness::new(config, true, false);
        // Complete over-long line in one buffer.
        assert_eq!(
            h.send(&format!("USER {}\r\nNOOP\r\nCAPA\r\n", "x".repeat(40))),
            format!(
                "-ERR line too long\r\n-ERR Command not valid in AUTHORIZATION state\r\n{CAPA_TLS}"
            )
        );
        // Over-long line arriving in pieces: one error, the tail is discarded.
        let mut out = Vec::new();
        let s = &mut h.s;
        assert_eq!(s.feed(&[b'a'; 20], &mut out), (20, Pop3Event::NeedInput));
        assert_eq!(out, b"-ERR line too long\r\n");
        out.clear();
        assert_eq!(s.feed(&[b'b'; 30], &mut out), (30, Pop3Event::NeedInput));
        assert_eq!(s.feed(b"bbb", &mut out), (3, Pop3Event::NeedInput));
        assert!(out.is_empty());
        assert_eq!(
            s.feed(b"bb\r\nCAPA\r\n", &mut out),
            (10, Pop3Event::NeedInput)
        );
        assert_eq!(String::from_utf8(out).unwrap(), CAPA_TLS);
        // A line of exactly max_line octets is fine.
        assert_eq!(h.send("USER 0123456789a\r\n"), "+OK\r\n");
    }

    #[test]
    fn overlong_sasl_response_aborts_exchange() {
        let config = Pop3Config {
            max_line: 16,
            ..Pop3Config::default()
        };
        let mut h = Harness::new(config, true, false);
        assert_eq!(
            h.send(&format!("AUTH PLAIN\r\n{}\r\nCAPA\r\n", "A".repeat(40))),
            format!("+ \r\n-ERR line too long\r\n{CAPA_TLS}")
        );
    }

    #[test]
    fn nul_in_line() {
        let mut h = Harness::tls();
        assert_eq!(h.send("NO\0OP\r\n"), "-ERR NUL byte in command line\r\n");
        assert_eq!(h.send("USER a\0b\r\n"), "-ERR NUL byte in command line\r\n");
        assert_eq!(h.s.errors, 2);
    }

    #[test]
    fn empty_line_is_an_error() {
        let mut h = Harness::tls();
        assert_eq!(h.send("\r\n"), "-ERR Empty command\r\n");
    }

    #[test]
    fn utf8_command() {
        let mut h = Harness::tls();
        assert_eq!(h.send("UTF8\r\n"), "+OK UTF8 enabled\r\n");
        assert!(h.s.utf8_enabled());
        h.password = "s\u{e9}cret";
        assert_eq!(
            h.send("USER j\u{f6}rg\r\nPASS s\u{e9}cret\r\n"),
            "+OK\r\n+OK Logged in.\r\n"
        );
    }

    #[test]
    fn timeout_and_shutdown() {
        let mut h = Harness::tls();
        h.login();
        h.send("DELE 1\r\n");
        let mut out = Vec::new();
        h.s.timeout(&mut out);
        assert_eq!(out, b"-ERR Disconnected for inactivity\r\n");
        assert!(h.s.is_closed());
        // No UPDATE state: nothing is committed.
        assert_eq!(h.s.feed(b"QUIT\r\n", &mut out), (6, Pop3Event::Close));
        let mut h = Harness::tls();
        let mut out = Vec::new();
        h.s.shutdown(&mut out);
        assert_eq!(out, b"-ERR [SYS/TEMP] Server shutting down\r\n");
        h.s.shutdown(&mut out);
        assert_eq!(
            out, b"-ERR [SYS/TEMP] Server shutting down\r\n",
            "only once"
        );
    }

    #[test]
    fn debug_redacts_password() {
        let ev = Pop3Event::Authenticate {
            username: "alice".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{ev:?}").contains("hunter2"));
    }
}
