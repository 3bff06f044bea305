//! IMAP4rev2 / IMAP4rev1 protocol core (RFC 9051, RFC 3501), sans-IO.
//!
//! The connection driver owns the socket; this module only consumes bytes and produces bytes:
//!
//! * [`ImapSession::feed`] frames and parses client input (literal-aware, bounded memory) and
//!   answers everything that needs neither the store nor the authenticator itself. When async
//!   work is needed it returns an [`ImapEvent`] and stops consuming input.
//! * [`ImapSession::execute`] / [`ImapSession::resume`] run a store command
//!   ([`ImapEvent::Command`]) against any [`crate::store::MailStore`], writing responses in
//!   bounded chunks ([`Step::Flush`]).
//! * [`ImapSession::auth_result`], [`ImapSession::tls_started`], [`ImapSession::idle_update`]
//!   complete the other events.
//!
//! Supported: IMAP4rev2 and IMAP4rev1 (modified UTF-7 names for rev1 clients, UTF-8 in the
//! store), STARTTLS/LOGINDISABLED, AUTH=PLAIN/LOGIN with SASL-IR, LITERAL+, ID, ENABLE,
//! NAMESPACE, IDLE, UIDPLUS, MOVE, UNSELECT, SPECIAL-USE, ESEARCH (MIN/MAX/COUNT/ALL; ESEARCH
//! replaces SEARCH once IMAP4rev2 is enabled), MULTIAPPEND, CONDSTORE, QRESYNC (VANISHED,
//! SELECT QRESYNC without seq-match data), STATUS=SIZE, LIST-STATUS, LIST-EXTENDED,
//! CHILDREN (`children`: also `\NonExistent` levels and subscriptions that outlive DELETE),
//! APPENDLIMIT, BINARY fetch, SORT, SORT=DISPLAY, ESORT (`sort`, `esearch`), THREAD=ORDEREDSUBJECT,
//! THREAD=REFERENCES, THREAD=REFS (`thread`, over the cached fields of `message_fields`),
//! SEARCHRES (`searchres`), WITHIN, CONTEXT=SEARCH and CONTEXT=SORT (`context`: PARTIAL, the
//! CONTEXT hint, UPDATE with ADDTO/REMOVEFROM, CANCELUPDATE, NOUPDATE), COMPRESS=DEFLATE
//! (`compress`; the connection layer compresses), PREVIEW (`preview`), REPLACE (`replace`),
//! CATENATE (`catenate`: TEXT parts and URLs of this account's messages), I18NLEVEL=1
//! (`i18nlevel`: i;unicode-casemap for SEARCH and SORT), OBJECTID (`objectid`: MAILBOXID and
//! EMAILID from the store's never-reused ids, THREADID always NIL), SAVEDATE (`savedate`: NIL
//! for messages stored before save times were recorded), NOTIFY (`notify`: MessageNew without
//! fetch attributes, MessageExpunge, FlagChange, MailboxName, SubscriptionChange; pushed
//! between commands and in IDLE). Not supported: METADATA,
//! QUOTA, I18NLEVEL=2 (COMPARATOR).
//!
//! Layout: `codec` (framing and response-writing helpers over imap-codec), `session` (states),
//! `mailbox` (the selected mailbox view), `commands` (store commands), `fetch`, `mime` (MIME
//! tree with byte ranges), `bodystructure` (ENVELOPE/BODYSTRUCTURE), `section`
//! (`BODY[section]<partial>`), `search`, `sequence`.

pub mod bodystructure;
pub mod catenate;
pub mod children;
pub mod codec;
mod commands;
pub mod compress;
pub mod context;
pub mod driver;
pub mod esearch;
pub mod fetch;
pub mod i18nlevel;
pub mod mailbox;
pub mod message_fields;
pub mod mime;
pub mod notify;
pub mod objectid;
pub mod preview;
pub mod recent;
pub mod replace;
pub mod savedate;
pub mod search;
pub mod search_criteria;
pub mod searchres;
pub mod section;
pub mod sequence;
pub mod session;
pub mod sort;
#[cfg(test)]
mod tests;
pub mod thread;

pub use session::{ImapCommand, ImapEvent, ImapSession, Step};

use std::time::Duration;

use crate::store::StoreError;
use crate::store::names::MailboxLimits;

/// Configuration of the IMAP protocol core (one per listener; cheap to clone).
#[derive(Clone, Debug)]
pub struct ImapConfig {
    /// Host name used in the greeting and BYE responses.
    pub hostname: String,
    /// Largest literal accepted (also advertised as APPENDLIMIT).
    pub max_literal: u32,
    /// Longest command line (without literals) accepted before login.
    pub max_line: usize,
    /// Longest command line (without literals) accepted after login.
    pub max_line_authenticated: usize,
    /// After this many protocol errors (BAD) in one session the server says BYE.
    pub max_errors: u32,
    /// Allow LOGIN / AUTHENTICATE without TLS (otherwise LOGINDISABLED before STARTTLS).
    pub allow_plaintext_auth: bool,
    /// Offer STARTTLS (the listener has a certificate and the connection is not TLS yet).
    pub starttls: bool,
    /// Bytes of FETCH output after which [`ImapSession::execute`] yields [`Step::Flush`].
    pub flush_threshold: usize,
    pub limits: ImapLimits,
    /// `\Recent` bookkeeping shared by every session of the process (all cores).
    pub recent: std::sync::Arc<recent::RecentClaims>,
}

/// The largest SEARCH nesting the configuration accepts: the criteria tree is walked
/// recursively (evaluation, drop), and this depth fits a core thread's stack with room to spare.
pub const MAX_SEARCH_DEPTH_CEILING: usize = 1000;

/// Resource limits of an IMAP session (`[limits]` in the configuration).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImapLimits {
    /// Mailbox name sizes and the number of mailboxes per account.
    pub mailboxes: MailboxLimits,
    /// Deepest nesting of OR, NOT and parentheses in SEARCH criteria.
    pub max_search_depth: usize,
    /// SEARCH/SORT results kept up to date with RETURN (UPDATE) per session (RFC 5267 §4.3.1).
    pub max_update_contexts: usize,
    /// Autologout before authentication: how long after accept a connection may go on
    /// without logging in (RFC 9051 §5.4 asks for 30 minutes only after login).
    pub prelogin_timeout: Duration,
    /// Offer COMPRESS=DEFLATE after login.
    pub compress: bool,
    /// DEFLATE level of the server's side, 1 to 9.
    pub compress_level: u32,
}

impl Default for ImapLimits {
    fn default() -> Self {
        ImapLimits {
            mailboxes: MailboxLimits::DEFAULT,
            max_search_depth: 100,
            max_update_contexts: 8,
            prelogin_timeout: Duration::from_secs(60),
            compress: true,
            compress_level: crate::net::deflate::DEFAULT_LEVEL,
        }
    }
}

impl ImapLimits {
    pub fn from_config(l: &crate::config::Limits) -> Self {
        ImapLimits {
            mailboxes: l.mailboxes(),
            max_search_depth: l.imap_max_search_depth,
            max_update_contexts: l.imap_max_update_contexts,
            prelogin_timeout: Duration::from_secs(l.imap_prelogin_timeout_secs.max(1)),
            compress: l.imap_compress,
            compress_level: l.imap_compress_level,
        }
    }
}

impl Default for ImapConfig {
    fn default() -> Self {
        ImapConfig {
            hostname: "localhost".into(),
            max_literal: 64 << 20,
            max_line: 8192,
            max_line_authenticated: 64 * 1024,
            max_errors: 10,
            allow_plaintext_auth: false,
            starttls: true,
            flush_threshold: 256 * 1024,
            limits: ImapLimits::default(),
            recent: std::sync::Arc::default(),
        }
    }
}

/// Errors of the IMAP layer. The tagged response (BAD / NO and response code) for each is
/// decided in one place: [`ImapError::write_tagged`].
#[derive(Debug)]
pub enum ImapError {
    /// Syntax or protocol misuse: tagged BAD.
    Bad(String),
    /// The command failed: tagged NO with an optional response code.
    No(Option<&'static str>, String),
    /// The store refused or failed.
    Store(StoreError),
}

impl ImapError {
    pub fn bad(msg: impl Into<String>) -> Self {
        ImapError::Bad(msg.into())
    }
    pub fn no(msg: impl Into<String>) -> Self {
        ImapError::No(None, msg.into())
    }
    pub fn no_code(code: &'static str, msg: impl Into<String>) -> Self {
        ImapError::No(Some(code), msg.into())
    }

    /// Write the tagged completion for this error.
    pub fn write_tagged(&self, tag: &str, out: &mut Vec<u8>) {
        let (kind, code, text): (&str, Option<&str>, String) = match self {
            ImapError::Bad(m) => ("BAD", None, m.clone()),
            ImapError::No(code, m) => ("NO", *code, m.clone()),
            ImapError::Store(e) => match e {
                StoreError::NoSuchMailbox => ("NO", Some("NONEXISTENT"), "No such mailbox".into()),
                StoreError::MailboxExists => {
                    ("NO", Some("ALREADYEXISTS"), "Mailbox already exists".into())
                }
                StoreError::NotAllowed(why) => {
                    ("NO", Some("CANNOT"), format!("Not allowed: {why}"))
                }
                StoreError::LimitReached(what) => {
                    ("NO", Some("LIMIT"), format!("Limit reached: {what}"))
                }
                StoreError::Closed => ("NO", Some("UNAVAILABLE"), "Server shutting down".into()),
                // The operating system's words (errno, paths) go to the log only. A full disk
                // is OVERQUOTA, as Dovecot answers it: RFC 5530 has no closer code, and unlike
                // UNAVAILABLE it tells the client that retrying at once will not help.
                StoreError::Io(_) if e.is_out_of_space() => {
                    tracing::warn!(error = %e, "imap: store out of space");
                    ("NO", Some("OVERQUOTA"), "Not enough disk space".into())
                }
                StoreError::Io(_) => {
                    tracing::warn!(error = %e, "imap: store failure");
                    (
                        "NO",
                        Some("UNAVAILABLE"),
                        "Temporary storage failure, try again later".into(),
                    )
                }
                StoreError::Corrupt(_) => {
                    tracing::error!(error = %e, "imap: store failure");
                    ("NO", Some("SERVERBUG"), "Internal error".into())
                }
            },
        };
        out.extend_from_slice(tag.as_bytes());
        out.push(b' ');
        out.extend_from_slice(kind.as_bytes());
        out.push(b' ');
        if let Some(code) = code {
            out.push(b'[');
            out.extend_from_slice(code.as_bytes());
            out.extend_from_slice(b"] ");
        }
        // Text must not contain CR/LF.
        for b in text.bytes() {
            out.push(if b == b'\r' || b == b'\n' { b' ' } else { b });
        }
        out.extend_from_slice(b"\r\n");
    }

    pub fn is_bad(&self) -> bool {
        matches!(self, ImapError::Bad(_))
    }
}

impl From<StoreError> for ImapError {
    fn from(e: StoreError) -> Self {
        ImapError::Store(e)
    }
}

impl std::fmt::Display for ImapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImapError::Bad(m) => write!(f, "BAD {m}"),
            ImapError::No(_, m) => write!(f, "NO {m}"),
            ImapError::Store(e) => write!(f, "store: {e}"),
        }
    }
}
impl std::error::Error for ImapError {}

pub type ImapResult<T> = Result<T, ImapError>;
