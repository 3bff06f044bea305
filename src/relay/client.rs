//! The outbound SMTP client: one connection to one server, any number of transactions.
//!
//! It runs on a core's monoio event loop like everything else (no thread pool, nothing that
//! blocks): every read, write, connect and handshake is bounded by one of [`ClientTimeouts`].
//! After a timeout or an I/O error the stream is dropped at once, never read again: a cancelled
//! io_uring read may have taken bytes with it (see `net::conn`), and monoio-rustls cannot resume
//! an interrupted read at all.
//!
//! Replies are parsed by the sans-IO [`ReplyReader`] straight from the read buffer, which lives
//! as long as the connection. Commands of one round trip are gathered in one write buffer, also
//! reused. Message bodies are `Bytes` and go out as they are: with `BDAT` always, with `DATA`
//! unless a line starts with `.` or a bare LF needs its CR (then one stuffed copy is made).
//!
//! ```text
//!  connect ─> 220 greeting ─> EHLO (5xx: HELO) ─> [STARTTLS ─> TLS ─> EHLO] ─> [AUTH] ─> ready
//!  ready ─> MAIL, RCPT… [, DATA]  one write with PIPELINING, else one command per round trip
//!        ─> DATA: 354 ─> content CRLF.CRLF ─> reply     (or BDAT <n> LAST + content ─> reply)
//!        ─> ready   (RSET first if the transaction stopped before its content was sent)
//!  ready ─> QUIT ─> 221 ─> close
//! ```

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use memchr::memchr_iter;
use monoio::BufResult;
use monoio::buf::{IoBuf, IoBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use monoio_rustls::{ClientTlsStream, TlsConnector};

use super::reply::{MAX_LINE, Reply, ReplyError, ReplyReader};
use super::tls::{self, ClientTlsConfigs};
use crate::net::sasl::encode_base64;

/// Commands sent before reading their replies when the server offers PIPELINING. Bounded so
/// that a message with thousands of recipients cannot fill both directions' socket buffers
/// at once (RFC 2920 §5: the server stops reading while we have not read its replies).
const PIPELINE_WINDOW: usize = 100;

/// When to use STARTTLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsPolicy {
    /// Never.
    Disabled,
    /// When offered, without checking the certificate; a refused STARTTLS continues in clear,
    /// a failed handshake reconnects once without TLS (Postfix's `may`).
    May,
    /// STARTTLS must succeed, any certificate accepted (Postfix's `encrypt`). Otherwise a
    /// temporary error.
    Require,
    /// STARTTLS must succeed and the certificate must be valid for the server name (Postfix's
    /// `verify`/`secure`).
    Verify,
}

/// Time limits; the defaults are RFC 5321 §4.5.3.2's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientTimeouts {
    pub connect: Duration,
    /// For the `220` greeting.
    pub greeting: Duration,
    /// For each other reply (EHLO, STARTTLS, AUTH, MAIL, RCPT, DATA, RSET, QUIT), for writing
    /// commands, and for the TLS handshake.
    pub command: Duration,
    /// For each write of message content that makes no progress.
    pub data_block: Duration,
    /// For the reply after the whole message content.
    pub data_done: Duration,
}

impl Default for ClientTimeouts {
    fn default() -> Self {
        ClientTimeouts {
            connect: Duration::from_secs(30),
            greeting: Duration::from_secs(300),
            command: Duration::from_secs(300),
            data_block: Duration::from_secs(180),
            data_done: Duration::from_secs(600),
        }
    }
}

/// How to talk to servers. Shared by every connection of a route.
#[derive(Clone)]
pub struct ClientConfig {
    /// Our name in EHLO/HELO.
    pub helo_name: String,
    pub tls: TlsPolicy,
    pub tls_configs: ClientTlsConfigs,
    /// `(user, password)` for AUTH PLAIN (or LOGIN when that is all the server offers). Only
    /// ever sent over TLS: without it, connecting fails.
    pub credentials: Option<(String, String)>,
    pub timeouts: ClientTimeouts,
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("helo_name", &self.helo_name)
            .field("tls", &self.tls)
            .field("user", &self.credentials.as_ref().map(|(user, _)| user))
            .field("timeouts", &self.timeouts)
            .finish_non_exhaustive()
    }
}

/// What the server announced in its EHLO reply (all off after HELO).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub pipelining: bool,
    /// `SIZE` offered: `Some(limit)`, where 0 means no fixed limit (RFC 1870).
    pub size: Option<u64>,
    pub eight_bit_mime: bool,
    pub smtputf8: bool,
    pub chunking: bool,
    pub dsn: bool,
    pub starttls: bool,
    /// SASL mechanisms, upper case.
    pub auth: Vec<String>,
    pub enhanced_status_codes: bool,
}

impl Capabilities {
    /// Reads the keywords of an EHLO reply (every line after the first).
    pub fn from_ehlo(reply: &Reply) -> Capabilities {
        let mut caps = Capabilities::default();
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_ascii_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            let keyword = keyword.to_ascii_uppercase();
            // Old servers write `AUTH=PLAIN LOGIN` next to or instead of `AUTH PLAIN LOGIN`.
            let (keyword, first_param) = match keyword.split_once('=') {
                Some((k, p)) if k == "AUTH" => (k.to_string(), Some(p.to_string())),
                _ => (keyword, None),
            };
            match keyword.as_str() {
                "PIPELINING" => caps.pipelining = true,
                "SIZE" => {
                    caps.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0));
                }
                "8BITMIME" => caps.eight_bit_mime = true,
                "SMTPUTF8" => caps.smtputf8 = true,
                "CHUNKING" => caps.chunking = true,
                "DSN" => caps.dsn = true,
                "STARTTLS" => caps.starttls = true,
                "ENHANCEDSTATUSCODES" => caps.enhanced_status_codes = true,
                "AUTH" => {
                    for mechanism in first_param.into_iter().chain(words.map(str::to_string)) {
                        let mechanism = mechanism.to_ascii_uppercase();
                        if !mechanism.is_empty() && !caps.auth.contains(&mechanism) {
                            caps.auth.push(mechanism);
                        }
                    }
                }
                _ => {}
            }
        }
        caps
    }
}

/// One recipient of a transaction.
#[derive(Clone, Copy, Debug)]
pub struct OutboundRecipient<'a> {
    pub address: &'a str,
    /// DSN `NOTIFY=` value: `NEVER`, or e.g. `SUCCESS,FAILURE,DELAY`. Sent only if the server
    /// offers DSN.
    pub notify: Option<&'a str>,
    /// DSN `ORCPT=` value, already xtext-encoded: `rfc822;bob@example.org`.
    pub orcpt: Option<&'a str>,
}

/// One message for one transaction.
#[derive(Clone, Debug)]
pub struct OutboundMessage<'a> {
    /// The reverse path without brackets; `""` for the null sender `<>`.
    pub mail_from: &'a str,
    pub recipients: &'a [OutboundRecipient<'a>],
    /// DSN `RET=` (`FULL` or `HDRS`), sent only if the server offers DSN.
    pub ret: Option<&'a str>,
    /// DSN `ENVID=`, already xtext-encoded, sent only if the server offers DSN.
    pub envid: Option<&'a str>,
    /// The message, CRLF line endings, without dot-stuffing.
    pub body: Bytes,
    /// Non-ASCII addresses or headers: the server must offer SMTPUTF8. (Non-ASCII addresses
    /// are detected anyway.)
    pub needs_smtputf8: bool,
    /// The body has 8-bit octets: announced as `BODY=8BITMIME` when offered.
    pub eight_bit: bool,
}

/// The server's answers to one transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionResult {
    pub mail: Reply,
    /// One per recipient, in order; `None` when MAIL failed (the RCPT was not sent, or its
    /// reply only says that MAIL failed).
    pub recipients: Vec<Option<Reply>>,
    /// The reply to the end of the content, or the refusal of DATA; `None` if no recipient
    /// was accepted (nothing was sent).
    pub data: Option<Reply>,
}

impl TransactionResult {
    /// True if recipient `index` was accepted and the message content too.
    pub fn delivered(&self, index: usize) -> bool {
        let accepted = matches!(self.recipients.get(index), Some(Some(r)) if r.is_positive());
        accepted && self.mail.is_positive() && self.data.as_ref().is_some_and(|d| d.code == 250)
    }
}

/// Where in the session something happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Connect,
    Greeting,
    Ehlo,
    Helo,
    StartTls,
    TlsHandshake,
    Auth,
    Mail,
    Rcpt,
    Data,
    /// Sending the message content.
    Content,
    /// The reply after the content (`DATA`'s final reply, or `BDAT … LAST`).
    DataDone,
    Bdat,
    Rset,
    Quit,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Connect => "connect",
            Stage::Greeting => "initial greeting",
            Stage::Ehlo => "EHLO",
            Stage::Helo => "HELO",
            Stage::StartTls => "STARTTLS",
            Stage::TlsHandshake => "TLS handshake",
            Stage::Auth => "AUTH",
            Stage::Mail => "MAIL FROM",
            Stage::Rcpt => "RCPT TO",
            Stage::Data => "DATA",
            Stage::Content => "message content",
            Stage::DataDone => "end of data",
            Stage::Bdat => "BDAT",
            Stage::Rset => "RSET",
            Stage::Quit => "QUIT",
        })
    }
}

/// Why a connection or a transaction failed. [`is_permanent`](Self::is_permanent) tells the
/// queue whether to bounce or retry; `Display` gives one line for the log and the DSN.
#[derive(Debug)]
pub enum ClientError {
    /// The TCP connection failed or timed out.
    Connect {
        addr: SocketAddr,
        error: io::Error,
    },
    /// No progress within the limit.
    Timeout {
        stage: Stage,
        limit: Duration,
    },
    Io {
        stage: Stage,
        error: io::Error,
    },
    /// The server closed the connection.
    ConnectionClosed {
        stage: Stage,
    },
    /// The handshake failed: certificate refused, protocol error, connection lost, or the
    /// server sent clear text after its go-ahead (a response injection attempt).
    Tls {
        reason: String,
    },
    /// The policy needs TLS and the server did not offer STARTTLS.
    TlsNotOffered,
    /// The reply stream is not SMTP.
    BadReply {
        stage: Stage,
        error: ReplyError,
    },
    /// A reply that makes no sense at this point (DATA answered with 250).
    UnexpectedReply {
        stage: Stage,
        reply: Reply,
    },
    /// The server refused the session: greeting, EHLO/HELO, STARTTLS, AUTH, RSET, or a `421`
    /// (closing) in the middle of a transaction.
    Rejected {
        stage: Stage,
        reply: Reply,
    },
    /// Credentials are configured but the session is not encrypted; none were sent.
    AuthWithoutTls,
    /// Credentials are configured but the server offers neither PLAIN nor LOGIN.
    AuthNotOffered {
        offered: Vec<String>,
    },
    /// Refused before anything was sent, because the server could not take it: SMTPUTF8
    /// needed but not offered (5.6.7), larger than the server's SIZE (5.3.4), or an address
    /// or parameter that cannot be written in a command.
    MessageRefused {
        status: (u8, u16, u16),
        reason: String,
    },
    /// A caller mistake (invalid HELO name, credentials with a NUL, a closed client).
    Usage(String),
}

impl ClientError {
    /// True when retrying cannot help: a 5xx from the server (except for AUTH, which is this
    /// side's configuration) or a message the server cannot take.
    pub fn is_permanent(&self) -> bool {
        match self {
            ClientError::Rejected { stage, reply } => reply.is_permanent() && *stage != Stage::Auth,
            ClientError::MessageRefused { .. } => true,
            _ => false,
        }
    }

    /// The server's reply, when the server said no.
    pub fn reply(&self) -> Option<&Reply> {
        match self {
            ClientError::Rejected { reply, .. } | ClientError::UnexpectedReply { reply, .. } => {
                Some(reply)
            }
            _ => None,
        }
    }

    /// An RFC 3463 status for a DSN: the server's when it gave one, else one that names the
    /// kind of failure (4.4.1 no answer, 4.4.2 connection lost, 4.7.5 TLS, …).
    pub fn status(&self) -> (u8, u16, u16) {
        match self {
            ClientError::Connect { .. } => (4, 4, 1),
            ClientError::Timeout { stage, .. } if *stage == Stage::Connect => (4, 4, 1),
            ClientError::Timeout { .. }
            | ClientError::Io { .. }
            | ClientError::ConnectionClosed { .. } => (4, 4, 2),
            ClientError::Tls { .. } => (4, 7, 5),
            ClientError::TlsNotOffered => (4, 7, 4),
            ClientError::BadReply { .. } | ClientError::UnexpectedReply { .. } => (4, 5, 0),
            ClientError::Rejected { reply, .. } => reply.enhanced.unwrap_or(match reply.code {
                500..=599 => (5, 0, 0),
                _ => (4, 0, 0),
            }),
            ClientError::AuthWithoutTls | ClientError::AuthNotOffered { .. } => (4, 7, 0),
            ClientError::MessageRefused { status, .. } => *status,
            ClientError::Usage(_) => (4, 3, 5),
        }
    }
}

/// `io::Error` text without the `(os error 111)` suffix, which says nothing to a mail user.
fn io_text(error: &io::Error) -> String {
    let text = error.to_string();
    match text.find(" (os error ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Connect { addr, error } => {
                write!(f, "connect to {addr}: {}", io_text(error))
            }
            ClientError::Timeout { stage, limit } => match stage {
                Stage::Greeting => write!(f, "timed out after {limit:?} waiting for the greeting"),
                Stage::TlsHandshake | Stage::Content => {
                    write!(f, "timed out after {limit:?} during {stage}")
                }
                _ => write!(
                    f,
                    "timed out after {limit:?} waiting for the reply to {stage}"
                ),
            },
            ClientError::Io { stage, error } => {
                write!(f, "lost connection during {stage}: {}", io_text(error))
            }
            ClientError::ConnectionClosed { stage } => {
                write!(f, "connection closed by the server during {stage}")
            }
            ClientError::Tls { reason } => write!(f, "TLS handshake failed: {reason}"),
            ClientError::TlsNotOffered => {
                f.write_str("TLS is required, but the server did not offer STARTTLS")
            }
            ClientError::BadReply { stage, error } => {
                write!(f, "protocol error in reply to {stage}: {error}")
            }
            ClientError::Rejected { stage, reply } => {
                write!(f, "{} (in reply to {stage})", reply.text())
            }
            ClientError::UnexpectedReply { stage, reply } => {
                write!(f, "unexpected reply {} (in reply to {stage})", reply.text())
            }
            ClientError::AuthWithoutTls => {
                f.write_str("refusing to send credentials over an unencrypted connection")
            }
            ClientError::AuthNotOffered { offered } if offered.is_empty() => {
                f.write_str("credentials are configured but the server does not offer AUTH")
            }
            ClientError::AuthNotOffered { offered } => write!(
                f,
                "no usable AUTH mechanism (the server offers {})",
                offered.join(" ")
            ),
            ClientError::MessageRefused { reason, .. } => f.write_str(reason),
            ClientError::Usage(what) => f.write_str(what),
        }
    }
}

impl std::error::Error for ClientError {}

/// The byte stream under the session.
enum Transport {
    Plain(TcpStream),
    Tls(Box<ClientTlsStream<TcpStream>>),
    /// Dropped after a failure, or moved into the TLS handshake.
    Gone,
}

impl Transport {
    async fn read<B: IoBufMut>(&mut self, buf: B) -> BufResult<usize, B> {
        match self {
            Transport::Plain(s) => s.read(buf).await,
            Transport::Tls(s) => s.read(buf).await,
            Transport::Gone => (Err(gone()), buf),
        }
    }

    async fn write<B: IoBuf>(&mut self, buf: B) -> BufResult<usize, B> {
        match self {
            Transport::Plain(s) => s.write(buf).await,
            Transport::Tls(s) => s.write(buf).await,
            Transport::Gone => (Err(gone()), buf),
        }
    }

    async fn write_all<B: IoBuf>(&mut self, buf: B) -> BufResult<usize, B> {
        match self {
            Transport::Plain(s) => s.write_all(buf).await,
            Transport::Tls(s) => s.write_all(buf).await,
            Transport::Gone => (Err(gone()), buf),
        }
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(s) => s.shutdown().await,
            Transport::Tls(s) => s.shutdown().await,
            Transport::Gone => Ok(()),
        }
    }
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "connection already closed")
}

/// An open SMTP session, ready for [`send`](Self::send).
pub struct SmtpClient {
    stream: Transport,
    peer: SocketAddr,
    timeouts: ClientTimeouts,
    /// Received octets; `input[consumed..]` is not parsed yet. Allocated once.
    input: Vec<u8>,
    consumed: usize,
    /// Commands waiting to be written; reused.
    output: Vec<u8>,
    reader: ReplyReader,
    capabilities: Capabilities,
    tls_version: Option<&'static str>,
    /// The server said 421, or a RSET failed: no further transaction.
    closing: bool,
}

impl fmt::Debug for SmtpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpClient")
            .field("peer", &self.peer)
            .field("tls_version", &self.tls_version)
            .field("reusable", &self.is_reusable())
            .finish_non_exhaustive()
    }
}

/// The read buffer holds at least two maximal reply lines, so a partial line always fits.
const READ_BUFFER: usize = 2 * MAX_LINE;

impl SmtpClient {
    /// TCP connect, greeting, EHLO (HELO if EHLO gets a 5xx), STARTTLS as the policy says and
    /// EHLO again, then AUTH if there are credentials. With [`TlsPolicy::May`] a failed
    /// handshake is retried once on a new connection without TLS.
    pub async fn connect(
        addr: SocketAddr,
        server_name: &str,
        config: &ClientConfig,
    ) -> Result<SmtpClient, ClientError> {
        if !is_command_word(&config.helo_name) {
            return Err(ClientError::Usage(format!(
                "invalid HELO name {:?}",
                config.helo_name
            )));
        }
        if config.tls == TlsPolicy::Verify && tls::server_name(server_name).is_none() {
            return Err(ClientError::Usage(format!(
                "{server_name:?} is not a server name a certificate can be checked against"
            )));
        }
        match Self::open(addr, server_name, config, config.tls).await {
            Err(error) if config.tls == TlsPolicy::May && error.is_handshake_failure() => {
                tracing::info!(%addr, %error, "STARTTLS failed; retrying without TLS");
                Self::open(addr, server_name, config, TlsPolicy::Disabled).await
            }
            result => result,
        }
    }

    /// What the server offers (after STARTTLS: what it offered inside TLS).
    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    /// `"TLSv1.3"` or `"TLSv1.2"` when the session is encrypted.
    pub fn tls_version(&self) -> Option<&'static str> {
        self.tls_version
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// True if the connection can take another transaction.
    pub fn is_reusable(&self) -> bool {
        !self.closing && !matches!(self.stream, Transport::Gone)
    }

    /// Sends one message: MAIL, RCPTs, then the content by BDAT (CHUNKING) or DATA. With
    /// PIPELINING, MAIL, every RCPT and DATA go out in one write (RFC 2920); otherwise one
    /// command per round trip. `BDAT` waits for the RCPT replies, so no content is sent to a
    /// server that took no recipient. Per-recipient refusals are in the result, not an error.
    ///
    /// Errors: the session failed (the queue retries every recipient, or bounces them all if
    /// [`ClientError::is_permanent`]), or the message was refused before anything was sent.
    pub async fn send(
        &mut self,
        message: &OutboundMessage<'_>,
    ) -> Result<TransactionResult, ClientError> {
        if !self.is_reusable() {
            return Err(ClientError::Usage(
                "the connection cannot take another transaction".into(),
            ));
        }
        check_message(message)?;
        let caps = &self.capabilities;
        let needs_smtputf8 = message.needs_smtputf8
            || !message.mail_from.is_ascii()
            || message.recipients.iter().any(|r| !r.address.is_ascii());
        if needs_smtputf8 && !caps.smtputf8 {
            return Err(ClientError::MessageRefused {
                status: (5, 6, 7),
                reason: "SMTPUTF8 is required, but was not offered by the server".into(),
            });
        }
        let content = if caps.chunking {
            Content::Bdat(message.body.clone())
        } else {
            Content::Data(DataPayload::new(&message.body))
        };
        let size = content.size() as u64;
        if let Some(limit) = caps.size
            && limit > 0
            && size > limit
        {
            return Err(ClientError::MessageRefused {
                status: (5, 3, 4),
                reason: format!("message size {size} exceeds the server's limit of {limit} octets"),
            });
        }
        let mail_command = mail_command(message, caps, size, needs_smtputf8);
        let dsn = caps.dsn;
        let window = if caps.pipelining { PIPELINE_WINDOW } else { 1 };

        // Commands are numbered: 0 = MAIL, 1..=n = RCPT, n + 1 = DATA (not with BDAT).
        let n = message.recipients.len();
        let data_index = n + 1;
        let total = if matches!(content, Content::Data(_)) {
            n + 2
        } else {
            n + 1
        };
        let mut mail = None;
        let mut recipients: Vec<Option<Reply>> = vec![None; n];
        let mut accepted = 0;
        let mut data_go_ahead = None;
        let mut next = 0;
        while next < total {
            let mail_ok = mail.as_ref().is_none_or(Reply::is_positive);
            if !mail_ok || (next == data_index && accepted == 0) {
                break;
            }
            let end = (next + window).min(total);
            for index in next..end {
                match index {
                    0 => self.output.extend_from_slice(mail_command.as_bytes()),
                    i if i == data_index => self.output.extend_from_slice(b"DATA\r\n"),
                    i => rcpt_command(&mut self.output, &message.recipients[i - 1], dsn),
                }
            }
            self.write_output(stage_of(next, data_index)).await?;
            for index in next..end {
                let stage = stage_of(index, data_index);
                let reply = self.read_reply(stage, self.timeouts.command).await?;
                if reply.code == 421 {
                    return Err(self.abort(stage, reply));
                }
                match index {
                    0 => mail = Some(reply),
                    i if i == data_index => {
                        if reply.is_positive() && reply.code != 354 {
                            // Neither a go-ahead nor a refusal: sending the content now
                            // could have it read as commands.
                            return Err(self.fail(ClientError::UnexpectedReply { stage, reply }));
                        }
                        data_go_ahead = Some(reply)
                    }
                    i => {
                        accepted += usize::from(reply.is_positive());
                        recipients[i - 1] = Some(reply);
                    }
                }
            }
            next = end;
        }
        let mail = mail.expect("MAIL is always sent");
        if !mail.is_positive() {
            // With PIPELINING the RCPTs were sent anyway; their 503s only echo MAIL's failure.
            recipients.iter_mut().for_each(|r| *r = None);
        }
        let go_ahead = data_go_ahead.as_ref().is_some_and(|r| r.code == 354);
        if go_ahead && (!mail.is_positive() || accepted == 0) {
            // RFC 2920 §3.1: DATA was accepted although no recipient was. An empty message
            // ends the transaction; with no recipient, nothing is delivered.
            self.write_content(Bytes::from_static(b".\r\n")).await?;
            self.finish_content().await?;
            return Ok(TransactionResult {
                mail,
                recipients,
                data: None,
            });
        }
        if !mail.is_positive() {
            self.reset().await;
            return Ok(TransactionResult {
                mail,
                recipients,
                data: None,
            });
        }
        let data = match content {
            Content::Data(payload) => {
                if go_ahead {
                    self.write_content(payload.bytes).await?;
                    if !payload.tail.is_empty() {
                        self.write_content(Bytes::from_static(payload.tail)).await?;
                    }
                    Some(self.finish_content().await?)
                } else {
                    // DATA refused, or not sent because no recipient was accepted.
                    self.reset().await;
                    data_go_ahead.filter(|_| accepted > 0)
                }
            }
            Content::Bdat(body) if accepted > 0 => {
                self.output
                    .extend_from_slice(format!("BDAT {} LAST\r\n", body.len()).as_bytes());
                self.write_output(Stage::Bdat).await?;
                self.write_content(body).await?;
                Some(self.finish_content().await?)
            }
            Content::Bdat(_) => {
                self.reset().await;
                None
            }
        };
        Ok(TransactionResult {
            mail,
            recipients,
            data,
        })
    }

    /// Says QUIT, waits for the reply and closes (TLS close_notify first). Bounded by the
    /// command timeout; errors are ignored, the connection is over either way.
    pub async fn quit(mut self) {
        self.say_goodbye().await;
    }
}

/// How the content goes out.
enum Content {
    /// After `BDAT <len> LAST`, exactly as stored.
    Bdat(Bytes),
    Data(DataPayload),
}

impl Content {
    /// The size to declare with `SIZE=`: the octets the server will store.
    fn size(&self) -> usize {
        match self {
            Content::Bdat(body) => body.len(),
            Content::Data(payload) => payload.content_len,
        }
    }
}

fn stage_of(index: usize, data_index: usize) -> Stage {
    match index {
        0 => Stage::Mail,
        i if i == data_index => Stage::Data,
        _ => Stage::Rcpt,
    }
}

impl ClientError {
    /// A failure of the TLS handshake itself, after which [`TlsPolicy::May`] retries in clear.
    fn is_handshake_failure(&self) -> bool {
        matches!(
            self,
            ClientError::Tls { .. }
                | ClientError::Timeout {
                    stage: Stage::TlsHandshake,
                    ..
                }
        )
    }
}

// The session set-up.
impl SmtpClient {
    async fn open(
        addr: SocketAddr,
        server_name: &str,
        config: &ClientConfig,
        policy: TlsPolicy,
    ) -> Result<SmtpClient, ClientError> {
        let timeouts = config.timeouts;
        let tcp = match monoio::time::timeout(timeouts.connect, TcpStream::connect_addr(addr)).await
        {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(error)) => return Err(ClientError::Connect { addr, error }),
            Err(_) => {
                let error = io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("timed out after {:?}", timeouts.connect),
                );
                return Err(ClientError::Connect { addr, error });
            }
        };
        // Commands are batched here already; Nagle would only hold back the last segment of a
        // body until the server's delayed ACK.
        let _ = tcp.set_nodelay(true);
        let mut client = SmtpClient {
            stream: Transport::Plain(tcp),
            peer: addr,
            timeouts,
            input: Vec::with_capacity(READ_BUFFER),
            consumed: 0,
            output: Vec::with_capacity(1024),
            reader: ReplyReader::new(),
            capabilities: Capabilities::default(),
            tls_version: None,
            closing: false,
        };
        match client.set_up(server_name, config, policy).await {
            Ok(()) => Ok(client),
            Err(error) => {
                // The server is still listening after a refusal: leave politely.
                if matches!(
                    error,
                    ClientError::Rejected { .. }
                        | ClientError::TlsNotOffered
                        | ClientError::AuthWithoutTls
                        | ClientError::AuthNotOffered { .. }
                ) {
                    client.say_goodbye().await;
                }
                Err(error)
            }
        }
    }

    async fn set_up(
        &mut self,
        server_name: &str,
        config: &ClientConfig,
        policy: TlsPolicy,
    ) -> Result<(), ClientError> {
        let greeting = self
            .read_reply(Stage::Greeting, self.timeouts.greeting)
            .await?;
        if greeting.code != 220 {
            return Err(ClientError::Rejected {
                stage: Stage::Greeting,
                reply: greeting,
            });
        }
        self.hello(&config.helo_name).await?;
        if policy != TlsPolicy::Disabled {
            if !self.capabilities.starttls {
                if policy != TlsPolicy::May {
                    return Err(ClientError::TlsNotOffered);
                }
            } else {
                self.output.extend_from_slice(b"STARTTLS\r\n");
                self.write_output(Stage::StartTls).await?;
                let reply = self
                    .read_reply(Stage::StartTls, self.timeouts.command)
                    .await?;
                if reply.code == 220 {
                    let (tls_config, name) = match policy {
                        TlsPolicy::Verify => (
                            &config.tls_configs.verifying,
                            tls::server_name(server_name).ok_or_else(|| ClientError::Tls {
                                reason: format!("{server_name:?} is not a valid server name"),
                            })?,
                        ),
                        // Any name will do for SNI when the certificate is not checked.
                        _ => (
                            &config.tls_configs.insecure,
                            tls::server_name(server_name).unwrap_or_else(|| self.peer.ip().into()),
                        ),
                    };
                    self.start_tls(tls_config, name).await?;
                    self.hello(&config.helo_name).await?;
                } else if policy != TlsPolicy::May || reply.code == 421 {
                    return Err(ClientError::Rejected {
                        stage: Stage::StartTls,
                        reply,
                    });
                } else {
                    tracing::info!(peer = %self.peer, reply = %reply, "STARTTLS refused; continuing without TLS");
                }
            }
        }
        if let Some((user, password)) = &config.credentials {
            self.authenticate(user, password).await?;
        }
        Ok(())
    }

    /// EHLO, or HELO when EHLO gets a 5xx (a server without ESMTP).
    async fn hello(&mut self, name: &str) -> Result<(), ClientError> {
        self.output
            .extend_from_slice(format!("EHLO {name}\r\n").as_bytes());
        self.write_output(Stage::Ehlo).await?;
        let reply = self.read_reply(Stage::Ehlo, self.timeouts.command).await?;
        if reply.code == 250 {
            self.capabilities = Capabilities::from_ehlo(&reply);
            return Ok(());
        }
        if !reply.is_permanent() {
            return Err(ClientError::Rejected {
                stage: Stage::Ehlo,
                reply,
            });
        }
        self.output
            .extend_from_slice(format!("HELO {name}\r\n").as_bytes());
        self.write_output(Stage::Helo).await?;
        let reply = self.read_reply(Stage::Helo, self.timeouts.command).await?;
        if reply.code != 250 {
            return Err(ClientError::Rejected {
                stage: Stage::Helo,
                reply,
            });
        }
        self.capabilities = Capabilities::default();
        Ok(())
    }

    async fn start_tls(
        &mut self,
        config: &Arc<rustls::ClientConfig>,
        name: rustls::pki_types::ServerName<'static>,
    ) -> Result<(), ClientError> {
        if self.consumed < self.input.len() || self.reader.in_reply() {
            // RFC 3207 §6 / CVE-2011-1575 from the client's side: clear text after the 220
            // could be taken for the first reply inside TLS. Refuse rather than discard.
            self.stream = Transport::Gone;
            return Err(ClientError::Tls {
                reason: "the server sent data after its STARTTLS reply".into(),
            });
        }
        let Transport::Plain(tcp) = std::mem::replace(&mut self.stream, Transport::Gone) else {
            return Err(ClientError::Usage("STARTTLS on a TLS connection".into()));
        };
        let (config, probe) = tls::with_version_probe(config);
        let connector = TlsConnector::from(config);
        let limit = self.timeouts.command;
        match monoio::time::timeout(limit, connector.connect(name, tcp)).await {
            Ok(Ok(stream)) => {
                self.stream = Transport::Tls(Box::new(stream));
                self.tls_version = probe.get();
                // RFC 3207 §4.2: forget what was learnt in clear text.
                self.capabilities = Capabilities::default();
                Ok(())
            }
            Ok(Err(error)) => Err(ClientError::Tls {
                reason: match error {
                    monoio_rustls::TlsError::Rustls(e) => e.to_string(),
                    monoio_rustls::TlsError::Io(e) => io_text(&e),
                },
            }),
            Err(_) => Err(ClientError::Timeout {
                stage: Stage::TlsHandshake,
                limit,
            }),
        }
    }

    /// AUTH PLAIN (RFC 4616, initial response) or LOGIN; only over TLS.
    async fn authenticate(&mut self, user: &str, password: &str) -> Result<(), ClientError> {
        if !matches!(self.stream, Transport::Tls(_)) {
            return Err(ClientError::AuthWithoutTls);
        }
        let offers = |m: &str| self.capabilities.auth.iter().any(|a| a == m);
        if offers("PLAIN") {
            if user.contains('\0') || password.contains('\0') {
                return Err(ClientError::Usage(
                    "a user name or password with a NUL cannot be sent with AUTH PLAIN".into(),
                ));
            }
            let token = encode_base64(format!("\0{user}\0{password}").as_bytes());
            self.output
                .extend_from_slice(format!("AUTH PLAIN {token}\r\n").as_bytes());
            self.expect_auth(235).await
        } else if offers("LOGIN") {
            self.output.extend_from_slice(b"AUTH LOGIN\r\n");
            self.expect_auth(334).await?;
            self.output
                .extend_from_slice(format!("{}\r\n", encode_base64(user.as_bytes())).as_bytes());
            self.expect_auth(334).await?;
            self.output.extend_from_slice(
                format!("{}\r\n", encode_base64(password.as_bytes())).as_bytes(),
            );
            self.expect_auth(235).await
        } else {
            Err(ClientError::AuthNotOffered {
                offered: self.capabilities.auth.clone(),
            })
        }
    }

    /// Writes the queued AUTH line and checks the reply code.
    async fn expect_auth(&mut self, code: u16) -> Result<(), ClientError> {
        self.write_output(Stage::Auth).await?;
        let reply = self.read_reply(Stage::Auth, self.timeouts.command).await?;
        if reply.code == code {
            Ok(())
        } else {
            Err(ClientError::Rejected {
                stage: Stage::Auth,
                reply,
            })
        }
    }
}

// Reading, writing, ending.
impl SmtpClient {
    /// Drops the connection after a failure; nothing is read from it again.
    fn fail(&mut self, error: ClientError) -> ClientError {
        self.stream = Transport::Gone;
        self.input = Vec::new();
        self.consumed = 0;
        error
    }

    /// A 421 in a transaction: the server is closing, so do we.
    fn abort(&mut self, stage: Stage, reply: Reply) -> ClientError {
        self.fail(ClientError::Rejected { stage, reply })
    }

    /// Waits for the next complete reply, at most `limit` in all.
    async fn read_reply(&mut self, stage: Stage, limit: Duration) -> Result<Reply, ClientError> {
        let deadline = Instant::now() + limit;
        loop {
            match self.reader.feed(&self.input[self.consumed..]) {
                Ok((used, Some(reply))) => {
                    self.consumed += used;
                    if reply.code == 421 {
                        self.closing = true;
                    }
                    return Ok(reply);
                }
                Ok((used, None)) => self.consumed += used,
                Err(error) => return Err(self.fail(ClientError::BadReply { stage, error })),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match monoio::time::timeout(left, self.fill()).await {
                Ok(Ok(0)) => return Err(self.fail(ClientError::ConnectionClosed { stage })),
                Ok(Ok(_)) => {}
                Ok(Err(error)) => return Err(self.fail(ClientError::Io { stage, error })),
                // The cancelled read may have taken octets with it: the stream is done.
                Err(_) => return Err(self.fail(ClientError::Timeout { stage, limit })),
            }
        }
    }

    /// Reads more input into the spare room of the buffer. 0 = closed by the server.
    async fn fill(&mut self) -> io::Result<usize> {
        if matches!(self.stream, Transport::Gone) {
            return Err(gone());
        }
        if self.consumed == self.input.len() {
            self.input.clear();
            self.consumed = 0;
        } else if self.consumed > 0 {
            self.input.drain(..self.consumed);
            self.consumed = 0;
        }
        // The reader refuses a partial line of MAX_LINE octets, so there is always room.
        debug_assert!(self.input.len() < self.input.capacity());
        let buf = std::mem::take(&mut self.input);
        let start = buf.len();
        let mut buf = buf;
        let end = buf.bytes_total();
        let (result, slice) = self.stream.read(buf.slice_mut(start..end)).await;
        self.input = slice.into_inner();
        result
    }

    /// Writes the queued commands.
    async fn write_output(&mut self, stage: Stage) -> Result<(), ClientError> {
        let output = std::mem::take(&mut self.output);
        let limit = self.timeouts.command;
        match monoio::time::timeout(limit, self.stream.write_all(output)).await {
            Ok((Ok(_), mut output)) => {
                output.clear();
                self.output = output;
                Ok(())
            }
            Ok((Err(error), _)) => Err(self.fail(ClientError::Io { stage, error })),
            Err(_) => Err(self.fail(ClientError::Timeout { stage, limit })),
        }
    }

    /// Writes message content; each write must make progress within `data_block`.
    async fn write_content(&mut self, mut content: Bytes) -> Result<(), ClientError> {
        let stage = Stage::Content;
        let limit = self.timeouts.data_block;
        while !content.is_empty() {
            match monoio::time::timeout(limit, self.stream.write(content)).await {
                Ok((Ok(0), _)) => {
                    let error = io::Error::from(io::ErrorKind::WriteZero);
                    return Err(self.fail(ClientError::Io { stage, error }));
                }
                Ok((Ok(n), rest)) => content = Bytes::slice(&rest, n..),
                Ok((Err(error), _)) => return Err(self.fail(ClientError::Io { stage, error })),
                Err(_) => return Err(self.fail(ClientError::Timeout { stage, limit })),
            }
        }
        Ok(())
    }

    /// The reply after the content; the transaction is over whatever it says.
    async fn finish_content(&mut self) -> Result<Reply, ClientError> {
        let reply = self
            .read_reply(Stage::DataDone, self.timeouts.data_done)
            .await?;
        if reply.code == 421 {
            return Err(self.abort(Stage::DataDone, reply));
        }
        Ok(reply)
    }

    /// RSET after a transaction that stopped early. A failure only makes the connection
    /// unusable for the next one; the transaction's outcome is already known.
    async fn reset(&mut self) {
        self.output.extend_from_slice(b"RSET\r\n");
        if self.write_output(Stage::Rset).await.is_err() {
            return;
        }
        match self.read_reply(Stage::Rset, self.timeouts.command).await {
            Ok(reply) if reply.code == 250 => {}
            _ => self.closing = true,
        }
    }

    async fn say_goodbye(&mut self) {
        if matches!(self.stream, Transport::Gone) {
            return;
        }
        if !self.closing {
            self.output.extend_from_slice(b"QUIT\r\n");
            if self.write_output(Stage::Quit).await.is_ok() {
                let _ = self.read_reply(Stage::Quit, self.timeouts.command).await;
            }
        }
        if !matches!(self.stream, Transport::Gone) {
            let _ = monoio::time::timeout(self.timeouts.command, self.stream.shutdown()).await;
        }
        self.stream = Transport::Gone;
    }
}

/// `MAIL FROM:<…>` with the parameters the server supports.
fn mail_command(
    message: &OutboundMessage<'_>,
    caps: &Capabilities,
    size: u64,
    smtputf8: bool,
) -> String {
    let mut command = format!("MAIL FROM:<{}>", message.mail_from);
    if caps.size.is_some() {
        command.push_str(&format!(" SIZE={size}"));
    }
    if message.eight_bit && caps.eight_bit_mime {
        command.push_str(" BODY=8BITMIME");
    }
    if smtputf8 {
        command.push_str(" SMTPUTF8");
    }
    if caps.dsn {
        if let Some(ret) = message.ret {
            command.push_str(&format!(" RET={ret}"));
        }
        if let Some(envid) = message.envid {
            command.push_str(&format!(" ENVID={envid}"));
        }
    }
    command.push_str("\r\n");
    command
}

fn rcpt_command(out: &mut Vec<u8>, rcpt: &OutboundRecipient<'_>, dsn: bool) {
    out.extend_from_slice(b"RCPT TO:<");
    out.extend_from_slice(rcpt.address.as_bytes());
    out.push(b'>');
    if dsn {
        if let Some(notify) = rcpt.notify {
            out.extend_from_slice(b" NOTIFY=");
            out.extend_from_slice(notify.as_bytes());
        }
        if let Some(orcpt) = rcpt.orcpt {
            out.extend_from_slice(b" ORCPT=");
            out.extend_from_slice(orcpt.as_bytes());
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// A HELO name or ESMTP parameter value: printable ASCII, no space (xtext's alphabet).
fn is_command_word(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

/// An address goes between `<` and `>`: no control characters (a CR or LF would end the
/// command and start another: command injection), no brackets.
fn is_path(s: &str) -> bool {
    s.chars().all(|c| !c.is_control() && c != '<' && c != '>')
}

/// Refuses what cannot be written into a command safely.
fn check_message(message: &OutboundMessage<'_>) -> Result<(), ClientError> {
    let refuse = |status, reason: String| Err(ClientError::MessageRefused { status, reason });
    if !is_path(message.mail_from) {
        return refuse((5, 1, 7), format!("invalid sender {:?}", message.mail_from));
    }
    if message.recipients.is_empty() {
        return refuse((5, 1, 3), "no recipients".into());
    }
    for rcpt in message.recipients {
        if rcpt.address.is_empty() || !is_path(rcpt.address) {
            return refuse((5, 1, 3), format!("invalid recipient {:?}", rcpt.address));
        }
        for value in [rcpt.notify, rcpt.orcpt].into_iter().flatten() {
            if !is_command_word(value) {
                return refuse((5, 5, 4), format!("invalid RCPT parameter {value:?}"));
            }
        }
    }
    for value in [message.ret, message.envid].into_iter().flatten() {
        if !is_command_word(value) {
            return refuse((5, 5, 4), format!("invalid MAIL parameter {value:?}"));
        }
    }
    Ok(())
}

/// What follows DATA's 354 (RFC 5321 §4.5.2): the content with a `.` doubled at the start of
/// each line, every bare LF turned into CRLF (a receiver that ends lines at bare LF must not
/// see a `\n.\n` end marker we did not mean: SMTP smuggling, CVE-2023-51764), a final CRLF if
/// the content lacks one, then `.` CRLF.
///
/// Bare CR is left alone: it is content to an RFC 5321 receiver, and turning it into CRLF
/// could split a header in two.
#[derive(Debug)]
struct DataPayload {
    /// The body itself when it needs no change, else the transformed copy with the end marker.
    bytes: Bytes,
    /// Written after `bytes`: the end marker when `bytes` is the unchanged body.
    tail: &'static [u8],
    /// Octets the receiver stores (no stuffing dots, no end marker).
    content_len: usize,
}

impl DataPayload {
    fn new(body: &Bytes) -> DataPayload {
        if !needs_rewrite(body) {
            let (tail, added): (&'static [u8], usize) =
                if body.is_empty() || body.ends_with(b"\r\n") {
                    (b".\r\n", 0)
                } else {
                    (b"\r\n.\r\n", 2)
                };
            return DataPayload {
                bytes: body.clone(),
                tail,
                content_len: body.len() + added,
            };
        }
        // Each line is copied with its dot doubled if needed and its ending made CRLF.
        let mut out = Vec::with_capacity(body.len() + body.len() / 32 + 8);
        let mut content_len = 0;
        let mut push_line = |out: &mut Vec<u8>, line: &[u8]| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.first() == Some(&b'.') {
                out.push(b'.');
            }
            out.extend_from_slice(line);
            out.extend_from_slice(b"\r\n");
            content_len += line.len() + 2;
        };
        let mut start = 0;
        for lf in memchr_iter(b'\n', body) {
            push_line(&mut out, &body[start..lf]);
            start = lf + 1;
        }
        if start < body.len() {
            // The last line has no LF. A final lone CR is content, not half a line ending.
            let last = &body[start..];
            if last.first() == Some(&b'.') {
                out.push(b'.');
            }
            out.extend_from_slice(last);
            out.extend_from_slice(b"\r\n");
            content_len += last.len() + 2;
        }
        out.extend_from_slice(b".\r\n");
        DataPayload {
            bytes: Bytes::from(out),
            tail: b"",
            content_len,
        }
    }
}

/// True if a line starts with `.` or an LF lacks its CR: one pass of memchr over the LFs.
fn needs_rewrite(body: &[u8]) -> bool {
    if body.first() == Some(&b'.') {
        return true;
    }
    memchr_iter(b'\n', body)
        .any(|lf| lf == 0 || body[lf - 1] != b'\r' || body.get(lf + 1) == Some(&b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::{DataOutcome, DataReceiver};

    /// Everything written after the 354.
    fn wire(body: &[u8]) -> (Vec<u8>, DataPayload) {
        let payload = DataPayload::new(&Bytes::copy_from_slice(body));
        let mut out = payload.bytes.to_vec();
        out.extend_from_slice(payload.tail);
        (out, payload)
    }

    #[test]
    fn clean_body_goes_out_without_a_copy() {
        let body = Bytes::from_static(b"Subject: x\r\n\r\nhello\r\n");
        let payload = DataPayload::new(&body);
        assert_eq!(
            payload.bytes.as_ptr(),
            body.as_ptr(),
            "same buffer, no copy"
        );
        assert_eq!(payload.tail, b".\r\n");
        assert_eq!(payload.content_len, body.len());
        let body = Bytes::from_static(b"no final newline");
        let payload = DataPayload::new(&body);
        assert_eq!(payload.bytes.as_ptr(), body.as_ptr());
        assert_eq!(payload.tail, b"\r\n.\r\n");
        assert_eq!(payload.content_len, body.len() + 2);
        assert_eq!(wire(b"").0, b".\r\n");
        // A dot inside a line is not at a line start.
        assert_eq!(wire(b"a.b\r\n x.\r\n").0, b"a.b\r\n x.\r\n.\r\n");
    }

    #[test]
    fn dots_are_doubled_at_line_starts_only() {
        assert_eq!(wire(b".").0, b"..\r\n.\r\n");
        assert_eq!(wire(b".\r\n").0, b"..\r\n.\r\n");
        assert_eq!(
            wire(b".a\r\n..b\r\nc.\r\n.\r\nend").0,
            b"..a\r\n...b\r\nc.\r\n..\r\nend\r\n.\r\n"
        );
    }

    #[test]
    fn bare_lf_becomes_crlf_and_cannot_smuggle_an_end_marker() {
        assert_eq!(wire(b"a\nb\r\n").0, b"a\r\nb\r\n.\r\n");
        assert_eq!(wire(b"\n").0, b"\r\n.\r\n");
        // "\n.\n" ends DATA on a receiver that takes bare LF for a line end; sent as CRLF and
        // with the dot doubled, it is content to every receiver.
        let (out, _) = wire(b"x\n.\nMAIL FROM:<evil@x>\r\n");
        assert_eq!(out, b"x\r\n..\r\nMAIL FROM:<evil@x>\r\n.\r\n");
        // Bare CR stays content.
        assert_eq!(wire(b"a\rb\r\n.\r\r\n").0, b"a\rb\r\n..\r\r\n.\r\n");
        assert_eq!(wire(b"x\n.y\r").0, b"x\r\n..y\r\r\n.\r\n");
    }

    /// The model of what the receiver stores: bare LF made CRLF, a final CRLF added.
    fn normalised(body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, &b) in body.iter().enumerate() {
            if b == b'\n' && (i == 0 || body[i - 1] != b'\r') {
                out.push(b'\r');
            }
            out.push(b);
        }
        if !out.is_empty() && !out.ends_with(b"\r\n") {
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    #[test]
    fn surel_receiver_reads_back_exactly_the_normalised_body() {
        // Random bodies over the characters that matter, through the server's own DATA
        // receiver: it must end exactly at our end marker and store the normalised body.
        let mut x = 0x1234_5678_9abc_def1u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let len = (next() % 20) as usize;
            let body: Vec<u8> = (0..len).map(|_| b"\r\n.a"[(next() % 4) as usize]).collect();
            let (out, payload) = wire(&body);
            let mut receiver = DataReceiver::new(1 << 20, 1 << 20);
            let mut stored = Vec::new();
            let (consumed, done) = receiver.feed(&out, &mut stored);
            assert!(done, "{body:?} -> {out:?}");
            assert_eq!(consumed, out.len(), "{body:?} -> {out:?}");
            assert_eq!(receiver.outcome(), DataOutcome::Ok);
            assert_eq!(stored, normalised(&body), "{body:?} -> {out:?}");
            assert_eq!(payload.content_len, stored.len(), "{body:?}");
        }
    }

    #[test]
    fn capabilities_from_ehlo() {
        let reply = Reply {
            code: 250,
            enhanced: None,
            lines: [
                "mx.example Hello",
                "PIPELINING",
                "size 35882577",
                "8BITMIME",
                "AUTH PLAIN login",
                "AUTH=LOGIN CRAM-MD5",
                "ENHANCEDSTATUSCODES",
                "CHUNKING",
                "SMTPUTF8",
                "DSN",
                "STARTTLS",
                "",
                "X-UNKNOWN 1 2",
            ]
            .map(String::from)
            .to_vec(),
        };
        let caps = Capabilities::from_ehlo(&reply);
        assert_eq!(
            caps,
            Capabilities {
                pipelining: true,
                size: Some(35882577),
                eight_bit_mime: true,
                smtputf8: true,
                chunking: true,
                dsn: true,
                starttls: true,
                auth: vec!["PLAIN".into(), "LOGIN".into(), "CRAM-MD5".into()],
                enhanced_status_codes: true,
            }
        );
        let bare = Reply {
            code: 250,
            enhanced: None,
            lines: vec!["PIPELINING".into(), "SIZE".into()],
        };
        // The first line is the greeting, whatever it says.
        let caps = Capabilities::from_ehlo(&bare);
        assert!(!caps.pipelining);
        assert_eq!(caps.size, Some(0));
    }

    #[test]
    fn commands_and_their_parameters() {
        let rcpts = [OutboundRecipient {
            address: "bob@example.org",
            notify: Some("SUCCESS,FAILURE"),
            orcpt: Some("rfc822;bob@example.org"),
        }];
        let message = OutboundMessage {
            mail_from: "",
            recipients: &rcpts,
            ret: Some("HDRS"),
            envid: Some("Q123+2Bx"),
            body: Bytes::new(),
            needs_smtputf8: false,
            eight_bit: true,
        };
        let none = Capabilities::default();
        assert_eq!(mail_command(&message, &none, 10, false), "MAIL FROM:<>\r\n");
        let all = Capabilities {
            size: Some(0),
            eight_bit_mime: true,
            dsn: true,
            smtputf8: true,
            ..Capabilities::default()
        };
        assert_eq!(
            mail_command(&message, &all, 10, true),
            "MAIL FROM:<> SIZE=10 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=Q123+2Bx\r\n"
        );
        let mut out = Vec::new();
        rcpt_command(&mut out, &rcpts[0], false);
        rcpt_command(&mut out, &rcpts[0], true);
        assert_eq!(
            out,
            b"RCPT TO:<bob@example.org>\r\n\
              RCPT TO:<bob@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@example.org\r\n"
        );
    }

    #[test]
    fn injection_through_addresses_or_parameters_is_refused() {
        let ok = [OutboundRecipient {
            address: "bob@example.org",
            notify: None,
            orcpt: None,
        }];
        fn message<'a>(from: &'a str, rcpts: &'a [OutboundRecipient<'a>]) -> OutboundMessage<'a> {
            OutboundMessage {
                mail_from: from,
                recipients: rcpts,
                ret: None,
                envid: None,
                body: Bytes::new(),
                needs_smtputf8: false,
                eight_bit: false,
            }
        }
        assert!(check_message(&message("a@b", &ok)).is_ok());
        assert!(check_message(&message("\"a b\"@c", &ok)).is_ok());
        let err = check_message(&message("a@b>\r\nRCPT TO:<evil@x", &ok)).unwrap_err();
        assert_eq!(err.status(), (5, 1, 7));
        assert!(err.is_permanent());
        for bad in [
            OutboundRecipient {
                address: "x@y>\r\nDATA",
                notify: None,
                orcpt: None,
            },
            OutboundRecipient {
                address: "",
                notify: None,
                orcpt: None,
            },
            OutboundRecipient {
                address: "x@y",
                notify: Some("NEVER\r\nQUIT"),
                orcpt: None,
            },
            OutboundRecipient {
                address: "x@y",
                notify: None,
                orcpt: Some("rfc822;a b"),
            },
        ] {
            let rcpts = [bad];
            assert!(check_message(&message("a@b", &rcpts)).is_err(), "{bad:?}");
        }
        assert!(check_message(&message("a@b", &[])).is_err());
        let mut m = message("a@b", &ok);
        m.envid = Some("x y");
        assert!(check_message(&m).is_err());
    }

    #[test]
    fn error_texts() {
        let refused = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        let err = ClientError::Connect {
            addr: "127.0.0.1:2525".parse().unwrap(),
            error: refused,
        };
        assert_eq!(
            err.to_string(),
            "connect to 127.0.0.1:2525: Connection refused"
        );
        assert!(!err.is_permanent());
        assert_eq!(err.status(), (4, 4, 1));
        let reply = Reply {
            code: 550,
            enhanced: Some((5, 7, 1)),
            lines: vec!["go away".into()],
        };
        let err = ClientError::Rejected {
            stage: Stage::Greeting,
            reply: reply.clone(),
        };
        assert_eq!(
            err.to_string(),
            "550 5.7.1 go away (in reply to initial greeting)"
        );
        assert!(err.is_permanent());
        assert_eq!(err.reply(), Some(&reply));
        assert_eq!(err.status(), (5, 7, 1));
        let auth = ClientError::Rejected {
            stage: Stage::Auth,
            reply,
        };
        assert!(
            !auth.is_permanent(),
            "our credentials: retry, do not bounce"
        );
        let timeout = ClientError::Timeout {
            stage: Stage::Greeting,
            limit: Duration::from_millis(1500),
        };
        assert_eq!(
            timeout.to_string(),
            "timed out after 1.5s waiting for the greeting"
        );
        assert_eq!(timeout.status(), (4, 4, 2));
    }
}
