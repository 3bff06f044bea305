//! The IMAP session state machine (sans-IO).
//!
//! ```text
//!            greeting
//!               |
//!               v
//!   +----------------------+  LOGIN / AUTHENTICATE  +-----------------+
//!   |  NotAuthenticated    |------------------------>|  Authenticated  |<-----+
//!   +----------------------+  (ImapEvent::           +-----------------+      |
//!       |    STARTTLS (ImapEvent::StartTls,                |  SELECT/EXAMINE   | CLOSE, UNSELECT,
//!       |    stays NotAuthenticated)                       v  ok               | failed SELECT,
//!       |                                         +-----------------+          | mailbox gone
//!       |                                         |    Selected     |----------+
//!       |                                         +-----------------+
//!       |  LOGOUT, too many errors, timeout, shutdown      |
//!       +----------------------+---------------------------+
//!                              v
//!                        +-----------+
//!                        |  Logout   |  (ImapEvent::Close)
//!                        +-----------+
//! ```
//!
//! Driver contract (the methods match `crate::net::ProtocolSession`: `feed`, `is_idle`,
//! `on_timeout`, `on_shutdown`, with `type Event = ImapEvent`):
//! 1. Write [`ImapSession::greeting`] first.
//! 2. Call [`ImapSession::feed`] with received bytes; it appends responses to `out` and returns
//!    how many bytes it consumed. Keep the unconsumed rest and feed it again after the event
//!    (pipelined commands wait there, unparsed).
//! 3. On `Some(event)`:
//!    * [`ImapEvent::Command`]: `let mut step = session.execute(&store, *cmd, &mut out).await;`
//!      then, while `step == Step::Flush`, write `out` to the socket, clear it and
//!      `step = session.resume(&store, &mut out).await`. [`Step::Close`]: flush and close.
//!      [`Step::Idle`]: the client is in IDLE. Flush, feed any input already buffered, then
//!      wait for more input (feed it: `DONE` ends IDLE) or for a mailbox change, and on a
//!      change call [`ImapSession::idle_update`] and flush. Waiting on the change: either
//!      [`ImapSession::mailbox_changed`] (borrows the session), or
//!      [`ImapSession::take_change_receiver`] + `rx.recv()` beside the socket read +
//!      [`ImapSession::restore_change_receiver`] (when the read future also needs the session).
//!    * [`ImapEvent::Authenticate`]: verify, then [`ImapSession::auth_result`] (which may
//!      return [`ImapEvent::Close`] after too many failures).
//!    * [`ImapEvent::StartTls`]: flush `out`, drop all unconsumed input, handshake, then
//!      [`ImapSession::tls_started`].
//!    * [`ImapEvent::Compress`]: flush `out` as it is, then deflate everything written and
//!      inflate everything read from the next octet on, unconsumed input included; then
//!      [`ImapSession::compression_started`].
//!    * [`ImapEvent::Close`]: flush `out` and close.
//!
//!    Do not call `feed` while an event is outstanding (it consumes nothing then).
//! 4. While [`ImapSession::notifying`] (NOTIFY is set), between commands and in IDLE: take
//!    [`ImapSession::take_change_receiver`] and [`ImapSession::take_account_changes`], wait on
//!    them beside the socket read, call [`ImapSession::notify_update`] with what arrived, and
//!    give both back.

use imap_codec::{
    CommandCodec,
    decode::Decoder,
    imap_types::{
        IntoStatic, auth::AuthMechanism, command::CommandBody, extensions::enable::CapabilityEnable,
    },
};

use super::codec::{
    CommandExtras, CommandReader, Frame, extract_extras, split_multiappend, tag_of,
};
use super::mailbox::{Reporting, SelectedMailbox};
use super::search_criteria::{CriteriaError, parse_search_command};
use super::sort::parse_sort_or_thread;
use super::{ImapConfig, ImapError};
use crate::auth::AuthOutcome;
use crate::imap_w;
use crate::net::sasl::{
    SaslCredentials, SaslError, SaslExchange, SaslMechanism, SaslStep, encode_base64,
};
use crate::store::ChangeReceiver;

/// Largest literal accepted before authentication.
pub const PREAUTH_MAX_LITERAL: u32 = 8 * 1024;

/// Asynchronous work the driver must do for the session.
#[derive(Debug)]
pub enum ImapEvent {
    /// A command that needs the store: run it with [`ImapSession::execute`].
    Command(Box<ImapCommand>),
    /// Verify these credentials and report with [`ImapSession::auth_result`].
    Authenticate { username: String, password: String },
    /// Flush, discard buffered input, start TLS, then call [`ImapSession::tls_started`].
    StartTls,
    /// Flush, then compress both directions (RFC 4978), buffered input included; then call
    /// [`ImapSession::compression_started`].
    Compress,
    /// Flush and close the connection.
    Close,
}

/// A parsed command for [`ImapSession::execute`].
#[derive(Debug)]
pub struct ImapCommand {
    pub tag: String,
    pub body: CommandBody<'static>,
    pub extras: CommandExtras,
}

/// Result of [`ImapSession::execute`] / [`ImapSession::resume`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The command is complete (its tagged response is in `out`).
    Done,
    /// `out` holds a chunk of a long response: write it, then call `resume`.
    Flush,
    /// IDLE started: wait for input or mailbox changes.
    Idle,
    /// The session ended (e.g. too many errors): flush and close.
    Close,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    NotAuthenticated,
    Authenticated,
    Selected,
    Logout,
}

/// What the next input line means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Mode {
    Normal,
    /// An event is outstanding.
    Busy,
    Idle {
        tag: String,
    },
    /// An AUTHENTICATE exchange waits for the client's next response line.
    Sasl {
        tag: String,
        exchange: SaslExchange,
    },
    AwaitAuth {
        tag: String,
    },
}

pub struct ImapSession {
    pub(crate) config: ImapConfig,
    pub(crate) state: State,
    pub(crate) mode: Mode,
    pub(crate) tls: bool,
    pub(crate) account: Option<String>,
    pub(crate) selected: Option<SelectedMailbox>,
    pub(crate) reporting: Reporting,
    pub(crate) rev2: bool,
    pub(crate) errors: u32,
    pub(crate) inbox_checked: bool,
    pub(crate) fetch_job: Option<super::fetch::FetchJob>,
    /// COMPRESS DEFLATE was accepted.
    pub(crate) compressed: bool,
    /// NOTIFY SET in force, see [`super::notify`].
    pub(crate) notify: Option<super::notify::NotifySpec>,
    /// The account's changes while NOTIFY watches mailboxes besides the selected one.
    pub(crate) account_changes: Option<crate::store::AccountChangeReceiver>,
    reader: CommandReader,
}

impl ImapSession {
    /// A new session; `tls` is true on implicit-TLS listeners (993).
    pub fn new(config: ImapConfig, tls: bool) -> Self {
        // Before authentication only credentials are sent: keep literals small so an
        // unauthenticated peer cannot make the server buffer APPENDLIMIT bytes.
        let reader =
            CommandReader::new(config.max_line, config.max_literal.min(PREAUTH_MAX_LITERAL));
        ImapSession {
            config,
            state: State::NotAuthenticated,
            mode: Mode::Normal,
            tls,
            account: None,
            selected: None,
            reporting: Reporting::default(),
            rev2: false,
            errors: 0,
            inbox_checked: false,
            fetch_job: None,
            compressed: false,
            notify: None,
            account_changes: None,
            reader,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// The authenticated account, if any.
    pub fn account(&self) -> Option<&str> {
        self.account.as_deref()
    }

    /// The untagged greeting to send on connect.
    pub fn greeting(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"* OK [CAPABILITY ");
        self.write_capabilities(out);
        imap_w!(out, "] {} IMAP4rev2 server ready\r\n", self.config.hostname);
    }

    fn login_disabled(&self) -> bool {
        !self.tls && !self.config.allow_plaintext_auth
    }

    fn write_capabilities(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"IMAP4rev2 IMAP4rev1");
        if self.state == State::NotAuthenticated {
            if !self.tls && self.config.starttls {
                out.extend_from_slice(b" STARTTLS");
            }
            if self.login_disabled() {
                out.extend_from_slice(b" LOGINDISABLED");
            } else {
                out.extend_from_slice(b" AUTH=PLAIN AUTH=LOGIN");
            }
            out.extend_from_slice(b" SASL-IR");
        }
        out.extend_from_slice(
            b" LITERAL+ ID ENABLE IDLE NAMESPACE UIDPLUS MOVE UNSELECT SPECIAL-USE ESEARCH MULTIAPPEND \
CONDSTORE QRESYNC STATUS=SIZE LIST-STATUS LIST-EXTENDED CHILDREN BINARY",
        );
        out.extend_from_slice(
            b" SORT SORT=DISPLAY ESORT THREAD=ORDEREDSUBJECT THREAD=REFERENCES THREAD=REFS \
SEARCHRES WITHIN CONTEXT=SEARCH CONTEXT=SORT PREVIEW REPLACE I18NLEVEL=1 CATENATE OBJECTID \
SAVEDATE NOTIFY",
        );
        imap_w!(out, " APPENDLIMIT={}", self.config.max_literal);
        if self.offers_compress() {
            out.extend_from_slice(b" COMPRESS=DEFLATE");
        }
    }

    /// Memory held by a command still arriving (an APPEND's literal).
    pub fn held_bytes(&self) -> usize {
        self.reader.held_bytes()
    }

    /// The transfer memory budget is spent: the literal being received is dropped and its
    /// command answered `NO [UNAVAILABLE]` once the client has sent it.
    pub fn shed_transfer(&mut self) {
        self.reader.shed();
    }

    /// True between commands: nothing buffered, no event outstanding (safe to close).
    pub fn is_idle(&self) -> bool {
        self.reader.is_empty() && matches!(self.mode, Mode::Normal | Mode::Idle { .. })
    }

    /// True while the client is in IDLE.
    pub fn is_idling(&self) -> bool {
        matches!(self.mode, Mode::Idle { .. })
    }

    /// The change notifications of the selected mailbox (for waiting during IDLE).
    pub fn change_receiver(&mut self) -> Option<&mut ChangeReceiver> {
        self.selected.as_mut()?.change_receiver()
    }

    /// IDLE for drivers that wait on the socket and the mailbox at the same time (both
    /// futures cannot borrow the session): take the change receiver out (None if no mailbox
    /// is selected), await `rx.recv()` beside the read, give it back with
    /// [`Self::restore_change_receiver`], and call [`Self::idle_update`] if it fired.
    /// While it is out, the session does not see notifications, so restore it before the
    /// next command is fed.
    pub fn take_change_receiver(&mut self) -> Option<ChangeReceiver> {
        self.selected.as_mut()?.take_changes()
    }

    /// Give back a receiver from [`Self::take_change_receiver`] (dropped if the mailbox was
    /// closed meanwhile).
    pub fn restore_change_receiver(&mut self, rx: ChangeReceiver) {
        if let Some(mb) = self.selected.as_mut() {
            mb.restore_changes(rx);
            mb.mark_dirty();
        }
    }

    /// During IDLE: resolves when the selected mailbox has changed; then call
    /// [`ImapSession::idle_update`]. Never resolves when no mailbox is selected. Cancel-safe
    /// (a notification is only a wake-up; `idle_update` re-reads the mailbox state).
    pub async fn mailbox_changed(&mut self) {
        match self.change_receiver() {
            Some(rx) => {
                let _ = rx.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
        // The notification itself is only a wake-up: remember to re-read the mailbox.
        if let Some(mb) = self.selected.as_mut() {
            mb.mark_dirty();
        }
    }

    /// Inactivity timeout, or no login in time: say BYE (the driver closes after flushing).
    pub fn on_timeout(&mut self, out: &mut Vec<u8>) {
        if self.state == State::NotAuthenticated {
            out.extend_from_slice(b"* BYE Autologout; no login in time\r\n");
        } else {
            out.extend_from_slice(b"* BYE Autologout; idle for too long\r\n");
        }
        self.state = State::Logout;
    }

    /// Server shutdown: say BYE.
    pub fn on_shutdown(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"* BYE Server shutting down\r\n");
        self.state = State::Logout;
    }

    /// The driver has carried out an event that needs no other report.
    pub(crate) fn end_event(&mut self) {
        if self.mode == Mode::Busy {
            self.mode = Mode::Normal;
        }
    }

    /// TLS is up (after [`ImapEvent::StartTls`]).
    pub fn tls_started(&mut self) {
        self.tls = true;
        self.reader.reset();
        self.mode = Mode::Normal;
    }

    /// Outcome of the credential check for [`ImapEvent::Authenticate`].
    pub fn auth_result(&mut self, outcome: AuthOutcome, out: &mut Vec<u8>) -> Option<ImapEvent> {
        let Mode::AwaitAuth { tag } = std::mem::replace(&mut self.mode, Mode::Normal) else {
            return None;
        };
        match outcome {
            AuthOutcome::Accepted(account) => {
                self.account = Some(account);
                self.reader.set_max_literal(self.config.max_literal);
                self.reader.set_max_line(self.config.max_line_authenticated);
                self.state = State::Authenticated;
                imap_w!(out, "{tag} OK [CAPABILITY ");
                self.write_capabilities(out);
                out.extend_from_slice(b"] Logged in\r\n");
                None
            }
            AuthOutcome::Rejected => {
                ImapError::no_code("AUTHENTICATIONFAILED", "Authentication failed")
                    .write_tagged(&tag, out);
                self.count_error(out)
            }
            // RFC 5530: not a verdict on the credentials.
            AuthOutcome::Throttled | AuthOutcome::Busy => {
                ImapError::no_code(
                    "UNAVAILABLE",
                    "Temporary authentication failure, try again later",
                )
                .write_tagged(&tag, out);
                None
            }
        }
    }

    /// Count a protocol error; after too many, BYE.
    pub(crate) fn count_error(&mut self, out: &mut Vec<u8>) -> Option<ImapEvent> {
        self.errors += 1;
        if self.errors >= self.config.max_errors {
            out.extend_from_slice(b"* BYE Too many errors\r\n");
            self.state = State::Logout;
            return Some(ImapEvent::Close);
        }
        None
    }

    pub(crate) fn bad(&mut self, tag: &str, msg: &str, out: &mut Vec<u8>) -> Option<ImapEvent> {
        ImapError::bad(msg).write_tagged(tag, out);
        self.count_error(out)
    }

    /// Consume input; see the module docs for the contract.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, Option<ImapEvent>) {
        let mut pos = 0;
        while pos < input.len() {
            if self.state == State::Logout {
                return (input.len(), None);
            }
            let line_mode = match self.mode {
                Mode::Busy | Mode::AwaitAuth { .. } => return (pos, None),
                Mode::Normal => false,
                _ => true,
            };
            let (n, frame) = if line_mode {
                self.reader.push_line(&input[pos..])
            } else {
                self.reader.push(&input[pos..])
            };
            pos += n;
            let Some(frame) = frame else {
                continue;
            };
            let event = match frame {
                Frame::Continue => {
                    out.extend_from_slice(b"+ Ready for literal data\r\n");
                    None
                }
                Frame::TooBigSent { tag, literal } => {
                    ImapError::no_code("TOOBIG", format!("Literal of {literal} octets is too big"))
                        .write_tagged(&tag, out);
                    out.extend_from_slice(b"* BYE Literal too big to skip\r\n");
                    self.state = State::Logout;
                    Some(ImapEvent::Close)
                }
                Frame::TooBig { tag, literal } => {
                    ImapError::no_code("TOOBIG", format!("Literal of {literal} octets is too big"))
                        .write_tagged(&tag, out);
                    self.mode = Mode::Normal;
                    self.count_error(out)
                }
                Frame::LineTooLong { tag } => {
                    self.mode = Mode::Normal;
                    self.bad(&tag, "Line too long", out)
                }
                Frame::Shed { tag } => {
                    // Not the client's fault: a temporary refusal, not counted as an error.
                    ImapError::no_code("UNAVAILABLE", "Server busy: try again later")
                        .write_tagged(&tag, out);
                    None
                }
                Frame::Command => {
                    // Borrow the reader's buffer for the command and give it back afterwards,
                    // so its capacity is reused across commands.
                    let line = self.reader.take_command();
                    let ev = if line_mode {
                        self.handle_line(&line, out)
                    } else {
                        self.handle_command(&line, out)
                    };
                    self.reader.restore(line);
                    ev
                }
            };
            if let Some(ev) = event {
                if !matches!(ev, ImapEvent::Close) {
                    self.mode = match std::mem::replace(&mut self.mode, Mode::Normal) {
                        m @ Mode::AwaitAuth { .. } => m,
                        _ => Mode::Busy,
                    };
                }
                return (pos, Some(ev));
            }
        }
        (pos, None)
    }

    /// A plain line in IDLE or during an AUTHENTICATE exchange.
    fn handle_line(&mut self, line: &[u8], out: &mut Vec<u8>) -> Option<ImapEvent> {
        let text = line.strip_suffix(b"\n").unwrap_or(line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        match std::mem::replace(&mut self.mode, Mode::Normal) {
            Mode::Idle { tag } => {
                if text.eq_ignore_ascii_case(b"DONE") {
                    imap_w!(out, "{tag} OK IDLE terminated\r\n");
                    None
                } else {
                    self.bad(&tag, "Expected DONE", out)
                }
            }
            Mode::Sasl { tag, exchange } => self.sasl_step(tag, exchange.respond(text), out),
            other => {
                self.mode = other;
                None
            }
        }
    }

    /// Carry an AUTHENTICATE exchange one step on: a challenge, the credential check, or
    /// the refusal (`*` and malformed responses are BAD, RFC 9051 §6.2.2; an authorization
    /// identity of someone else is NO [AUTHORIZATIONFAILED]).
    fn sasl_step(&mut self, tag: String, step: SaslStep, out: &mut Vec<u8>) -> Option<ImapEvent> {
        match step {
            SaslStep::Challenge(exchange, challenge) => {
                imap_w!(out, "+ {challenge}\r\n");
                self.mode = Mode::Sasl { tag, exchange };
                None
            }
            SaslStep::Done(SaslCredentials { username, password }) => {
                self.mode = Mode::AwaitAuth { tag };
                Some(ImapEvent::Authenticate { username, password })
            }
            SaslStep::Failed(SaslError::AuthzidMismatch) => {
                ImapError::no_code("AUTHORIZATIONFAILED", "Cannot act as another user")
                    .write_tagged(&tag, out);
                None
            }
            SaslStep::Failed(e) => self.bad(&tag, &e.to_string(), out),
        }
    }

    fn handle_command(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> Option<ImapEvent> {
        let tag = tag_of(bytes);
        // CONTEXT=SEARCH/SORT: imap-codec does not know CANCELUPDATE; it needs no store.
        if let Some(parsed) = super::context::parse_cancel_update(bytes) {
            return match parsed {
                Err(msg) => self.bad(&tag, msg, out),
                Ok(_) if self.state != State::Selected => {
                    let msg = if self.state == State::Authenticated {
                        "No mailbox selected"
                    } else {
                        "Not authenticated"
                    };
                    self.bad(&tag, msg, out)
                }
                Ok(tags) => {
                    self.cancel_update(&tag, &tags, out);
                    None
                }
            };
        }
        if let Some(parsed) = super::notify::parse_notify(bytes, self.rev2) {
            use super::notify::NotifyError;
            if !matches!(self.state, State::Authenticated | State::Selected) {
                return self.bad(&tag, "Not authenticated", out);
            }
            return match parsed {
                Err(NotifyError::Syntax(msg)) => self.bad(&tag, msg, out),
                Err(NotifyError::BadEvent) => {
                    imap_w!(
                        out,
                        "{tag} NO [BADEVENT ({})] Unsupported event\r\n",
                        super::notify::SUPPORTED_EVENTS
                    );
                    None
                }
                Err(NotifyError::FetchAtt) => {
                    ImapError::no_code(
                        "CANNOT",
                        "MessageNew with fetch attributes is not supported",
                    )
                    .write_tagged(&tag, out);
                    None
                }
                Ok(request) => Some(ImapEvent::Command(Box::new(ImapCommand {
                    tag,
                    body: CommandBody::Noop,
                    extras: CommandExtras {
                        notify: Some(Box::new(request)),
                        ..Default::default()
                    },
                }))),
            };
        }
        if let Some(request) = super::compress::parse_compress(bytes) {
            return self.compress(tag, request, out);
        }
        // SEARCHRES: `$` is written out before anything parses the command.
        let substituted = super::searchres::substitute_dollar(bytes, self.selected.as_ref());
        let bytes: &[u8] = &substituted;
        let (cmd_bytes, mut extras) = match extract_extras(bytes) {
            Ok(x) => x,
            Err(msg) => return self.bad(&tag, &msg, out),
        };
        // SEARCH criteria nest deeper than imap-codec's parser allows: see `search_criteria`.
        let max_depth = self.config.limits.max_search_depth;
        let parsed = parse_search_command(&cmd_bytes, max_depth).or_else(|| {
            parse_sort_or_thread(&cmd_bytes, max_depth).map(|r| {
                r.map(|(cmd, ret)| {
                    extras.search_return = ret;
                    cmd
                })
            })
        });
        let command = match parsed {
            Some(Ok(cmd)) => cmd,
            Some(Err(CriteriaError::TooDeep)) => {
                let msg = format!(
                    "Search criteria nested deeper than this server's limit of {} levels \
                     (OR, NOT and parentheses)",
                    self.config.limits.max_search_depth
                );
                return self.bad(&tag, &msg, out);
            }
            Some(Err(CriteriaError::Syntax(msg))) => return self.bad(&tag, msg, out),
            None => match CommandCodec::default().decode(&cmd_bytes) {
                Ok((b"", cmd)) => cmd.into_static(),
                _ if let Some((first, more)) =
                    split_multiappend(bytes, self.reader.literal_ends()) =>
                {
                    extras.more_appends = more;
                    first
                }
                _ => {
                    let msg = if tag == "*" {
                        "Missing or invalid tag"
                    } else {
                        "Syntax error"
                    };
                    return self.bad(&tag, msg, out);
                }
            },
        };
        let tag = command.tag.inner().to_string();
        self.dispatch(tag, command.body, extras, out)
    }

    fn dispatch(
        &mut self,
        tag: String,
        body: CommandBody<'static>,
        extras: CommandExtras,
        out: &mut Vec<u8>,
    ) -> Option<ImapEvent> {
        let authed = matches!(self.state, State::Authenticated | State::Selected);
        let selected = self.state == State::Selected;
        let to_store = |body| {
            Some(ImapEvent::Command(Box::new(ImapCommand {
                tag: tag.clone(),
                body,
                extras: extras.clone(),
            })))
        };
        match body {
            CommandBody::Capability => {
                out.extend_from_slice(b"* CAPABILITY ");
                self.write_capabilities(out);
                imap_w!(out, "\r\n{tag} OK CAPABILITY completed\r\n");
                None
            }
            CommandBody::Noop if !selected => {
                imap_w!(out, "{tag} OK NOOP completed\r\n");
                None
            }
            CommandBody::Logout => {
                imap_w!(
                    out,
                    "* BYE {} logging out\r\n{tag} OK LOGOUT completed\r\n",
                    self.config.hostname
                );
                self.state = State::Logout;
                Some(ImapEvent::Close)
            }
            CommandBody::Id { .. } => {
                imap_w!(
                    out,
                    "* ID (\"name\" \"surel\" \"version\" \"{}\")\r\n{tag} OK ID completed\r\n",
                    env!("CARGO_PKG_VERSION")
                );
                None
            }
            CommandBody::StartTLS => {
                if self.tls || !self.config.starttls || self.state != State::NotAuthenticated {
                    return self.bad(&tag, "STARTTLS not available", out);
                }
                imap_w!(out, "{tag} OK Begin TLS negotiation now\r\n");
                self.reader.reset();
                Some(ImapEvent::StartTls)
            }
            CommandBody::Login { username, password } => {
                if self.state != State::NotAuthenticated {
                    return self.bad(&tag, "Already authenticated", out);
                }
                if self.login_disabled() {
                    ImapError::no_code("PRIVACYREQUIRED", "Use STARTTLS first")
                        .write_tagged(&tag, out);
                    return None;
                }
                let username = String::from_utf8_lossy(username.as_ref()).into_owned();
                let password = String::from_utf8_lossy(password.declassify().as_ref()).into_owned();
                self.mode = Mode::AwaitAuth { tag };
                Some(ImapEvent::Authenticate { username, password })
            }
            CommandBody::Authenticate {
                mechanism,
                initial_response,
            } => {
                if self.state != State::NotAuthenticated {
                    return self.bad(&tag, "Already authenticated", out);
                }
                if self.login_disabled() {
                    ImapError::no_code("PRIVACYREQUIRED", "Use STARTTLS first")
                        .write_tagged(&tag, out);
                    return None;
                }
                let mechanism = match mechanism {
                    AuthMechanism::Plain => SaslMechanism::Plain,
                    AuthMechanism::Login => SaslMechanism::Login,
                    _ => {
                        ImapError::no_code("CANNOT", "Unsupported authentication mechanism")
                            .write_tagged(&tag, out);
                        return None;
                    }
                };
                // imap-codec has already decoded the initial response (strict RFC 4648, or a
                // syntax error); the shared exchange takes it back in wire form.
                let initial = initial_response.map(|r| encode_base64(r.declassify()).into_bytes());
                let step = SaslExchange::start(mechanism, initial.as_deref());
                self.sasl_step(tag, step, out)
            }
            _ if !authed => self.bad(&tag, "Not authenticated", out),
            CommandBody::Enable { capabilities } => {
                let mut enabled = Vec::new();
                for cap in capabilities.as_ref() {
                    let name = cap.to_string().to_ascii_uppercase();
                    match (cap, name.as_str()) {
                        (CapabilityEnable::CondStore, _) | (_, "CONDSTORE")
                            if !self.reporting.condstore =>
                        {
                            self.reporting.condstore = true;
                            enabled.push("CONDSTORE");
                        }
                        (_, "QRESYNC") if !self.reporting.qresync => {
                            self.reporting.qresync = true;
                            self.reporting.condstore = true;
                            enabled.push("QRESYNC");
                        }
                        (_, "IMAP4REV2") if !self.rev2 => {
                            self.rev2 = true;
                            self.reporting.imap4rev2 = true;
                            enabled.push("IMAP4rev2");
                        }
                        _ => {}
                    }
                }
                out.extend_from_slice(b"* ENABLED");
                for e in enabled {
                    out.push(b' ');
                    out.extend_from_slice(e.as_bytes());
                }
                imap_w!(out, "\r\n{tag} OK ENABLE completed\r\n");
                None
            }
            CommandBody::Namespace => {
                imap_w!(
                    out,
                    "* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n{tag} OK NAMESPACE completed\r\n"
                );
                None
            }
            // REPLACE reached here as the APPEND it was rewritten into; it needs a selection.
            CommandBody::Append { .. } if extras.replace.is_some() && !selected => {
                self.bad(&tag, "No mailbox selected", out)
            }
            body @ (CommandBody::Select { .. }
            | CommandBody::Examine { .. }
            | CommandBody::Create { .. }
            | CommandBody::Delete { .. }
            | CommandBody::Rename { .. }
            | CommandBody::Subscribe { .. }
            | CommandBody::Unsubscribe { .. }
            | CommandBody::List { .. }
            | CommandBody::Lsub { .. }
            | CommandBody::Status { .. }
            | CommandBody::Append { .. }
            | CommandBody::Idle
            | CommandBody::Noop) => to_store(body),
            _ if !selected => self.bad(&tag, "No mailbox selected", out),
            body @ (CommandBody::Check
            | CommandBody::Close
            | CommandBody::Unselect
            | CommandBody::Expunge
            | CommandBody::ExpungeUid { .. }
            | CommandBody::Search { .. }
            | CommandBody::Sort { .. }
            | CommandBody::Thread { .. }
            | CommandBody::Fetch { .. }
            | CommandBody::Store { .. }
            | CommandBody::Copy { .. }
            | CommandBody::Move { .. }) => to_store(body),
            _ => self.bad(&tag, "Command not supported", out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> ImapSession {
        ImapSession::new(
            ImapConfig {
                allow_plaintext_auth: true,
                max_literal: 1000,
                max_errors: 5,
                ..ImapConfig::default()
            },
            false,
        )
    }

    fn run(s: &mut ImapSession, input: &[u8]) -> (String, Vec<ImapEvent>) {
        let mut out = Vec::new();
        let mut events = Vec::new();
        let mut rest = input;
        loop {
            let (n, ev) = s.feed(rest, &mut out);
            rest = &rest[n..];
            match ev {
                Some(ev) => {
                    if let ImapEvent::Authenticate { .. } = ev {
                        events.push(ev);
                        s.auth_result(AuthOutcome::Accepted("alice@example.org".into()), &mut out);
                        continue;
                    }
                    // Store commands are not run here: pretend they completed.
                    if let ImapEvent::Command(ref c) = ev {
                        imap_w!(&mut out, "{} OK (stub)\r\n", c.tag);
                    }
                    let close = matches!(ev, ImapEvent::Close);
                    events.push(ev);
                    s.mode = Mode::Normal;
                    if close {
                        break;
                    }
                }
                None => {
                    if rest.is_empty() {
                        break;
                    }
                }
            }
        }
        (String::from_utf8_lossy(&out).into_owned(), events)
    }

    #[test]
    fn capability_noop_logout() {
        let mut s = session();
        let (out, ev) = run(
            &mut s,
            b"a1 CAPABILITY\r\na2 NOOP\r\na3 LOGOUT\r\na4 NOOP\r\n",
        );
        assert!(
            out.starts_with("* CAPABILITY IMAP4rev2 IMAP4rev1 STARTTLS AUTH=PLAIN"),
            "{out}"
        );
        assert!(out.contains("a1 OK CAPABILITY completed\r\na2 OK NOOP completed\r\n* BYE"));
        assert!(out.ends_with("a3 OK LOGOUT completed\r\n"));
        assert!(matches!(ev.as_slice(), [ImapEvent::Close]));
    }

    #[test]
    fn login_disabled_without_tls() {
        let mut s = ImapSession::new(ImapConfig::default(), false);
        let mut g = Vec::new();
        s.greeting(&mut g);
        let g = String::from_utf8(g).unwrap();
        assert!(g.contains("STARTTLS LOGINDISABLED"), "{g}");
        let (out, _) = run(&mut s, b"a LOGIN alice pw\r\nb STARTTLS\r\n");
        assert!(out.starts_with("a NO [PRIVACYREQUIRED]"), "{out}");
        assert!(out.ends_with("b OK Begin TLS negotiation now\r\n"), "{out}");
        s.tls_started();
        let (out, ev) = run(&mut s, b"c CAPABILITY\r\nd LOGIN alice pw\r\n");
        assert!(
            !out.contains("STARTTLS") && out.contains("AUTH=PLAIN"),
            "{out}"
        );
        assert!(
            matches!(&ev[0], ImapEvent::Authenticate { username, password } if username == "alice" && password == "pw")
        );
        assert_eq!(s.state(), State::Authenticated);
    }

    #[test]
    fn authenticate_plain_and_login() {
        let mut s = session();
        let (out, ev) = run(&mut s, b"a AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==\r\n");
        assert!(out.starts_with("a OK [CAPABILITY"), "{out}");
        assert!(
            matches!(&ev[0], ImapEvent::Authenticate { username, password } if username == "alice" && password == "secret")
        );
        let mut s = session();
        let (out, ev) = run(&mut s, b"a AUTHENTICATE PLAIN\r\nAGFsaWNlAHNlY3JldA==\r\n");
        assert!(out.starts_with("+ \r\na OK"), "{out}");
        assert_eq!(ev.len(), 1);
        let mut s = session();
        let (out, ev) = run(&mut s, b"a AUTHENTICATE LOGIN\r\nYWxpY2U=\r\nc2VjcmV0\r\n");
        assert!(
            out.starts_with("+ VXNlcm5hbWU6\r\n+ UGFzc3dvcmQ6\r\na OK"),
            "{out}"
        );
        assert!(matches!(&ev[0], ImapEvent::Authenticate { username, .. } if username == "alice"));
        let mut s = session();
        let (out, _) = run(&mut s, b"a AUTHENTICATE PLAIN\r\n*\r\nb NOOP\r\n");
        assert!(
            out.contains("a BAD Authentication cancelled\r\nb OK NOOP"),
            "{out}"
        );
    }

    #[test]
    fn rejected_login() {
        let mut s = session();
        let mut out = Vec::new();
        let (_, ev) = s.feed(b"a LOGIN alice wrong\r\n", &mut out);
        assert!(matches!(ev, Some(ImapEvent::Authenticate { .. })));
        // Busy: further input waits.
        assert_eq!(s.feed(b"b NOOP\r\n", &mut out).0, 0);
        s.auth_result(AuthOutcome::Rejected, &mut out);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "a NO [AUTHENTICATIONFAILED] Authentication failed\r\n"
        );
        assert_eq!(s.state(), State::NotAuthenticated);
    }

    #[test]
    fn state_errors_and_enable() {
        let mut s = session();
        let (out, _) = run(&mut s, b"a SELECT INBOX\r\n");
        assert_eq!(out, "a BAD Not authenticated\r\n");
        let (out, _) = run(
            &mut s,
            b"b LOGIN alice pw\r\nc FETCH 1 FLAGS\r\nd ENABLE QRESYNC IMAP4rev2\r\ne NAMESPACE\r\n",
        );
        assert!(out.contains("c BAD No mailbox selected\r\n"), "{out}");
        assert!(out.contains("* ENABLED QRESYNC IMAP4rev2\r\nd OK"), "{out}");
        assert!(
            out.contains("* NAMESPACE ((\"\" \"/\")) NIL NIL\r\ne OK"),
            "{out}"
        );
        assert!(s.reporting.condstore && s.reporting.qresync);
        let (_, ev) = run(&mut s, b"f SELECT INBOX\r\n");
        assert!(matches!(&ev[0], ImapEvent::Command(c) if c.tag == "f"));
    }

    #[test]
    fn hostile_input() {
        let mut s = session();
        let (out, _) = run(&mut s, b"a1 FETCH (((\r\na2 NO\0OP\r\n\xff\xfe garbage\r\na3 APPEND INBOX {99999}\r\na4 NOOP\r\n");
        assert!(out.contains("a1 BAD"), "{out}");
        assert!(out.contains("a2 BAD"), "{out}");
        assert!(out.contains("* BAD"), "{out}");
        assert!(out.contains("a3 NO [TOOBIG]"), "{out}");
        assert!(out.ends_with("a4 OK NOOP completed\r\n"), "{out}");
        // Too many errors → BYE.
        let (out, ev) = run(&mut s, b"x\r\ny\r\nz\r\n");
        assert!(out.contains("* BYE Too many errors"), "{out}");
        assert!(matches!(ev.last(), Some(ImapEvent::Close)));
    }

    #[test]
    fn an_oversized_non_synchronizing_literal_closes_the_session() {
        let mut s = session();
        let (out, ev) = run(&mut s, b"a APPEND INBOX {99999+}\r\nxxxx");
        assert_eq!(
            out,
            "a NO [TOOBIG] Literal of 99999 octets is too big\r\n* BYE Literal too big to skip\r\n"
        );
        assert!(matches!(ev.last(), Some(ImapEvent::Close)));
    }

    #[test]
    fn small_literals_before_authentication() {
        let mut s = ImapSession::new(
            ImapConfig {
                allow_plaintext_auth: true,
                ..ImapConfig::default()
            },
            false,
        );
        let mut out = Vec::new();
        s.feed(b"a APPEND INBOX {100000}\r\n", &mut out);
        assert!(String::from_utf8_lossy(&out).starts_with("a NO [TOOBIG]"));
        out.clear();
        let (_, ev) = s.feed(b"b LOGIN alice pw\r\n", &mut out);
        assert!(ev.is_some());
        s.auth_result(AuthOutcome::Accepted("alice".into()), &mut out);
        out.clear();
        s.feed(b"c APPEND INBOX {100000}\r\n", &mut out);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "+ Ready for literal data\r\n"
        );
    }

    #[test]
    fn literal_continuations() {
        let mut s = session();
        let (out, ev) = run(&mut s, b"a LOGIN {5}\r\nalice {2}\r\npw\r\n");
        assert!(
            out.starts_with("+ Ready for literal data\r\n+ Ready for literal data\r\na OK"),
            "{out}"
        );
        assert_eq!(ev.len(), 1);
        let (out, ev) = run(&mut s, b"b APPEND INBOX (\\Seen) {5+}\r\nhello\r\n");
        assert_eq!(out, "b OK (stub)\r\n");
        assert!(
            matches!(&ev[0], ImapEvent::Command(c) if matches!(c.body, CommandBody::Append { .. }))
        );
        // BINARY (RFC 3516, part of IMAP4rev2): literal8 may carry NUL.
        let (_, ev) = run(&mut s, b"c APPEND INBOX ~{5+}\r\nhe\0lo\r\n");
        assert!(
            matches!(&ev[0], ImapEvent::Command(c) if matches!(c.body, CommandBody::Append { .. }))
        );
    }

    #[test]
    fn extras_reach_the_command() {
        let mut s = session();
        run(&mut s, b"a LOGIN alice pw\r\n");
        s.state = State::Selected;
        let (_, ev) = run(&mut s, b"b UID SEARCH RETURN (COUNT) ALL\r\nc LIST (SUBSCRIBED) \"\" * RETURN (STATUS (MESSAGES))\r\n");
        assert!(
            matches!(&ev[0], ImapEvent::Command(c) if c.extras.search_return.as_ref().unwrap().count)
        );
        assert!(
            matches!(&ev[1], ImapEvent::Command(c) if c.extras.list.as_ref().unwrap().select_subscribed)
        );
    }
}
