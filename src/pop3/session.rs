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
use crate::store::MailboxSnapshot;

use super::command::{Command, Line, parse_command, split_line};
use super::sasl;

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
#[derive(Clone, Debug)]
pub enum MaildropOpen {
    /// Locked; the snapshot's messages (in UID order) become messages 1..n of the session.
    Ok(MailboxSnapshot),
    /// Another POP3 session holds the lock.
    InUse,
    /// The store failed.
    Failed,
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

/// Session states (RFC 1939 §3, plus the waits on the driver):
///
/// ```text
///            greeting
///               │
///               ▼
///   ┌──────► AUTHORIZATION ──── QUIT ─────────────────────► closed ("+OK Bye")
///   │  USER/PASS, AUTH │  ▲ STLS → WaitTls → tls_started()
///   │  (SaslPlain,     │  │ (same state, TLS now active)
///   │   SaslLogin*)    ▼  │
///   │             WaitAuth ── Rejected ──┐ (back to AUTHORIZATION)
///   │                  │ Accepted        │
///   │                  ▼                 │
///   │           WaitMaildrop ── InUse/Failed ─► AUTHORIZATION
///   │                  │ Ok(snapshot)
///   │                  ▼
///   │            TRANSACTION   STAT LIST RETR TOP DELE UIDL NOOP RSET
///   │                  │ QUIT
///   │                  ▼
///   │            UPDATE (WaitCommit: driver expunges DELE'd UIDs)
///   │                  │ commit_result()
///   │                  ▼
///   │               closed ("+OK Bye" / "-ERR [SYS/TEMP] ...")
/// ```
///
/// A connection that ends in any other way (timeout, shutdown, drop) never enters UPDATE:
/// nothing is expunged.
#[derive(Debug)]
enum State {
    Authorization { user: Option<String> },
    /// `AUTH PLAIN` without initial response: waiting for the base64 line.
    SaslPlain,
    /// `AUTH LOGIN`: waiting for the user name.
    SaslLoginUser,
    /// `AUTH LOGIN`: waiting for the password.
    SaslLoginPass { username: String },
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
            State::SaslPlain | State::SaslLoginUser | State::SaslLoginPass { .. } => "SASL",
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
                    if !was_discarding {
                        if let Some(ev) = self.line_too_long(out) {
                            return (pos, ev);
                        }
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
        if matches!(
            self.state,
            State::SaslPlain | State::SaslLoginUser | State::SaslLoginPass { .. }
        ) {
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
            State::SaslPlain | State::SaslLoginUser | State::SaslLoginPass { .. } => {
                self.sasl_line(line, out)
            }
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
                if mechanism.eq_ignore_ascii_case("PLAIN") {
                    match initial_response {
                        Some(ir) => self.sasl_plain(ir.as_bytes()),
                        None => {
                            self.state = State::SaslPlain;
                            out.extend_from_slice(b"+ \r\n");
                            Reply::Done
                        }
                    }
                } else if mechanism.eq_ignore_ascii_case("LOGIN") {
                    match initial_response {
                        Some(ir) => self.sasl_login_user(ir.as_bytes(), out),
                        None => {
                            self.state = State::SaslLoginUser;
                            login_challenge(out, sasl::LOGIN_USERNAME_CHALLENGE);
                            Reply::Done
                        }
                    }
                } else {
                    Reply::Err(Cow::Borrowed("Unsupported authentication mechanism"))
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
        let state = std::mem::replace(&mut self.state, State::Authorization { user: None });
        if line == b"*" {
            return Reply::Soft(Cow::Borrowed("Authentication cancelled"));
        }
        match state {
            State::SaslPlain => self.sasl_plain(line),
            State::SaslLoginUser => self.sasl_login_user(line, out),
            State::SaslLoginPass { username } => match decode_text(line) {
                Ok(password) => {
                    self.state = State::WaitAuth;
                    Reply::Event(Pop3Event::Authenticate { username, password })
                }
                Err(e) => e,
            },
            _ => unreachable!("sasl_line outside a SASL exchange"),
        }
    }

    fn sasl_plain(&mut self, response: &[u8]) -> Reply {
        self.state = State::Authorization { user: None };
        match sasl::decode_plain(response) {
            Ok(creds) => {
                if creds.authzid.as_ref().is_some_and(|z| *z != creds.authcid) {
                    return Reply::Err(Cow::Borrowed(
                        "[AUTH] Authorization identity must match authentication identity",
                    ));
                }
                self.state = State::WaitAuth;
                Reply::Event(Pop3Event::Authenticate {
                    username: creds.authcid,
                    password: creds.password,
                })
            }
            Err(sasl::PlainError::Base64(_)) => Reply::Err(Cow::Borrowed("Invalid base64 data")),
            Err(_) => Reply::Err(Cow::Borrowed("Invalid SASL PLAIN response")),
        }
    }

    fn sasl_login_user(&mut self, response: &[u8], out: &mut Vec<u8>) -> Reply {
        self.state = State::Authorization { user: None };
        match decode_text(response) {
            Ok(username) => {
                self.state = State::SaslLoginPass { username };
                login_challenge(out, sasl::LOGIN_PASSWORD_CHALLENGE);
                Reply::Done
            }
            Err(e) => e,
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
            MaildropOpen::Failed => {
                self.account = None;
                self.state = State::Authorization { user: None };
                err_line(out, "[SYS/TEMP] Unable to open mailbox, try again later");
            }
        }
    }

    /// The driver's answer to [`Pop3Event::Commit`]; the session is closed afterwards.
    pub fn commit_result(&mut self, ok: bool, out: &mut Vec<u8>) {
        debug_assert!(matches!(self.state, State::WaitCommit));
        if ok {
            out.extend_from_slice(b"+OK Bye\r\n");
        } else {
            err_line(out, "[SYS/TEMP] Some deleted messages were not removed");
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

fn err_line(out: &mut Vec<u8>, msg: &str) {
    out.extend_from_slice(b"-ERR ");
    out.extend_from_slice(msg.as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn login_challenge(out: &mut Vec<u8>, challenge: &str) {
    out.extend_from_slice(b"+ ");
    out.extend_from_slice(challenge.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Decode a base64 SASL response that must be UTF-8 text (LOGIN user name / password).
fn decode_text(b64: &[u8]) -> Result<String, Reply> {
    let raw = sasl::decode_base64(b64).map_err(|_| Reply::Err(Cow::Borrowed("Invalid base64 data")))?;
    String::from_utf8(raw).map_err(|_| Reply::Err(Cow::Borrowed("Invalid UTF-8 in SASL response")))
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
