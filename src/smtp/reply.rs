//! Every SMTP reply surel sends, in one place.
//!
//! Fixed replies are complete lines (`code SP enhanced-code SP text CRLF`, RFC 5321 §4.2 and
//! RFC 3463/2034); replies with variable parts are built by the small functions below. Enhanced
//! status codes are used on every reply except the greeting, the EHLO/HELO answers and the
//! SASL `334` challenges.

use std::io::Write as _;

use crate::delivery::{DeliveryError, Rejection};

pub const OK: &[u8] = b"250 2.0.0 Ok\r\n";
pub const SENDER_OK: &[u8] = b"250 2.1.0 Ok\r\n";
pub const RECIPIENT_OK: &[u8] = b"250 2.1.5 Ok\r\n";
pub const BYE: &[u8] = b"221 2.0.0 Bye\r\n";
pub const START_DATA: &[u8] = b"354 Start mail input; end with <CRLF>.<CRLF>\r\n";
pub const READY_TLS: &[u8] = b"220 2.0.0 Ready to start TLS\r\n";
pub const VRFY: &[u8] =
    b"252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery\r\n";
pub const HELP: &[u8] =
    b"214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS AUTH\r\n";
pub const AUTH_OK: &[u8] = b"235 2.7.0 Authentication successful\r\n";

pub const SHUTTING_DOWN: &[u8] = b"421 4.3.2 Service shutting down\r\n";
pub const TIMEOUT: &[u8] = b"421 4.4.2 Timeout\r\n";
pub const TOO_MANY_ERRORS: &[u8] = b"421 4.7.0 Too many errors\r\n";
pub const TOO_MANY_RECIPIENTS: &[u8] = b"452 4.5.3 Too many recipients\r\n";

pub const UNKNOWN_COMMAND: &[u8] = b"500 5.5.1 Command unrecognized\r\n";
pub const LINE_TOO_LONG: &[u8] = b"500 5.5.2 Line too long\r\n";
pub const BARE_LF: &[u8] = b"500 5.5.2 Bare LF not allowed; lines end with CRLF\r\n";
pub const SYNTAX: &[u8] = b"501 5.5.4 Syntax error in parameters or arguments\r\n";
pub const INVALID_CHARACTER: &[u8] = b"501 5.5.2 Invalid character in command\r\n";
pub const BAD_SENDER: &[u8] = b"501 5.1.7 Bad sender address syntax\r\n";
pub const BAD_RECIPIENT: &[u8] = b"501 5.1.3 Bad recipient address syntax\r\n";
pub const BAD_BASE64: &[u8] = b"501 5.5.2 Invalid base64 data\r\n";
pub const AUTH_CANCELLED: &[u8] = b"501 5.7.0 Authentication cancelled\r\n";
pub const NOT_IMPLEMENTED: &[u8] = b"502 5.5.1 Command not implemented\r\n";
pub const TLS_NOT_AVAILABLE: &[u8] = b"502 5.5.1 STARTTLS not available\r\n";
pub const NEED_HELO: &[u8] = b"503 5.5.1 Send HELO/EHLO first\r\n";
pub const NEED_EHLO: &[u8] = b"503 5.5.1 Send EHLO first\r\n";
pub const NEED_MAIL: &[u8] = b"503 5.5.1 Need MAIL command first\r\n";
pub const NEED_RCPT: &[u8] = b"503 5.5.1 Need RCPT command first (no valid recipients)\r\n";
pub const NESTED_MAIL: &[u8] = b"503 5.5.1 Nested MAIL command\r\n";
pub const ALREADY_AUTHENTICATED: &[u8] = b"503 5.5.1 Already authenticated\r\n";
pub const AUTH_IN_TRANSACTION: &[u8] = b"503 5.5.1 AUTH not allowed during a mail transaction\r\n";
pub const ALREADY_TLS: &[u8] = b"503 5.5.1 TLS already active\r\n";
pub const DATA_AFTER_BDAT: &[u8] = b"503 5.5.1 DATA not allowed after BDAT\r\n";
pub const RCPT_AFTER_BDAT: &[u8] = b"503 5.5.1 RCPT not allowed after BDAT\r\n";
pub const PARAMS_NEED_EHLO: &[u8] = b"555 5.5.4 MAIL parameters require EHLO\r\n";
pub const UNKNOWN_MECHANISM: &[u8] = b"504 5.5.4 Unrecognized authentication type\r\n";
pub const AUTH_REQUIRED: &[u8] = b"530 5.7.0 Authentication required\r\n";
pub const AUTH_FAILED: &[u8] = b"535 5.7.8 Authentication credentials invalid\r\n";
/// RFC 4954 §6: not a verdict on the credentials (throttled or busy).
pub const AUTH_TRY_LATER: &[u8] =
    b"454 4.7.0 Temporary authentication failure, try again later\r\n";
pub const ENCRYPTION_REQUIRED: &[u8] =
    b"538 5.7.11 Encryption required for requested authentication mechanism\r\n";
pub const UNKNOWN_USER: &[u8] = b"550 5.1.1 Recipient address rejected: User unknown\r\n";
pub const TRANSFER_MEMORY_FULL: &[u8] =
    b"452 4.3.1 Insufficient system resources, try again later\r\n";
pub const MESSAGE_TOO_BIG: &[u8] = b"552 5.3.4 Message size exceeds fixed maximum message size\r\n";
pub const UTF8_REQUIRED: &[u8] = b"553 5.6.7 Non-ASCII address requires the SMTPUTF8 parameter\r\n";
pub const RELAY_DENIED: &[u8] = b"554 5.7.1 Relay access denied\r\n";
pub const SENDER_NOT_OWNED: &[u8] =
    b"553 5.7.1 Sender address not owned by the authenticated account\r\n";
pub const UNKNOWN_PARAMETER: &[u8] = b"555 5.5.4 Unsupported parameter\r\n";

/// `220 <hostname> ESMTP surel`
pub fn greeting(out: &mut Vec<u8>, hostname: &str) {
    let _ = write!(out, "220 {hostname} ESMTP surel\r\n");
}

/// `250 <hostname>` (HELO answer; no enhanced code, RFC 2034 §3).
pub fn helo(out: &mut Vec<u8>, hostname: &str) {
    let _ = write!(out, "250 {hostname}\r\n");
}

/// Multi-line EHLO answer: greeting line then one line per extension.
pub fn ehlo(out: &mut Vec<u8>, hostname: &str, client: &str, extensions: &[&str]) {
    let _ = write!(
        out,
        "250{}{hostname} Hello {client}\r\n",
        if extensions.is_empty() { ' ' } else { '-' }
    );
    for (i, ext) in extensions.iter().enumerate() {
        let sep = if i + 1 == extensions.len() { ' ' } else { '-' };
        let _ = write!(out, "250{sep}{ext}\r\n");
    }
}

/// `250 2.0.0 <n> octets received` (non-LAST BDAT chunk).
pub fn chunk_received(out: &mut Vec<u8>, octets: u64) {
    let _ = write!(out, "250 2.0.0 {octets} octets received\r\n");
}

/// `250 2.0.0 Ok: queued as <id>`
pub fn queued(out: &mut Vec<u8>, id: &str) {
    let _ = write!(out, "250 2.0.0 Ok: queued as {id}\r\n");
}

/// The reply to a refused RCPT.
pub fn rejection(r: Rejection) -> &'static [u8] {
    match r {
        Rejection::UnknownUser => UNKNOWN_USER,
        Rejection::RelayDenied => RELAY_DENIED,
    }
}

/// The reply to a message the pipeline could not take (after DATA or the last BDAT).
pub fn delivery_error(out: &mut Vec<u8>, e: &DeliveryError) {
    match e {
        DeliveryError::Temporary(why) => {
            out.extend_from_slice(b"451 4.3.0 ");
            push_text(out, why, "Temporary local problem, try again later");
        }
        DeliveryError::InsufficientStorage => {
            out.extend_from_slice(b"452 4.3.1 Insufficient system storage\r\n")
        }
        DeliveryError::ShuttingDown => {
            out.extend_from_slice(b"451 4.3.2 System not accepting network messages\r\n")
        }
        DeliveryError::TooLarge => out.extend_from_slice(MESSAGE_TOO_BIG),
        DeliveryError::SenderNotOwned => out.extend_from_slice(
            b"553 5.7.1 From: address not owned by the authenticated account\r\n",
        ),
    }
}

/// Append `text` (control characters replaced by spaces so it cannot break the reply framing)
/// and CRLF; `fallback` if `text` is empty.
fn push_text(out: &mut Vec<u8>, text: &str, fallback: &str) {
    let text = if text.trim().is_empty() {
        fallback
    } else {
        text
    };
    out.extend(
        text.bytes()
            .map(|b| if b < 0x20 || b == 0x7f { b' ' } else { b }),
    );
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_replies_are_single_crlf_lines() {
        for r in [
            OK,
            BYE,
            START_DATA,
            LINE_TOO_LONG,
            TOO_MANY_ERRORS,
            AUTH_OK,
            UNKNOWN_PARAMETER,
        ] {
            assert!(r.ends_with(b"\r\n"));
            assert_eq!(memchr::memchr_iter(b'\n', r).count(), 1);
            assert!(r[..3].iter().all(u8::is_ascii_digit));
        }
    }

    #[test]
    fn ehlo_lines() {
        let mut out = Vec::new();
        ehlo(&mut out, "mx", "client", &["PIPELINING", "SIZE 10"]);
        assert_eq!(
            out,
            b"250-mx Hello client\r\n250-PIPELINING\r\n250 SIZE 10\r\n"
        );
    }

    #[test]
    fn delivery_text_cannot_inject_lines() {
        let mut out = Vec::new();
        delivery_error(
            &mut out,
            &DeliveryError::Temporary("disk\r\n250 full".into()),
        );
        assert_eq!(out, b"451 4.3.0 disk  250 full\r\n");
        let mut out = Vec::new();
        delivery_error(&mut out, &DeliveryError::Temporary(String::new()));
        assert_eq!(
            out,
            b"451 4.3.0 Temporary local problem, try again later\r\n"
        );
    }

    #[test]
    fn delivery_errors_map_to_their_codes() {
        for (e, code) in [
            (DeliveryError::InsufficientStorage, "452 4.3.1 "),
            (DeliveryError::ShuttingDown, "451 4.3.2 "),
            (DeliveryError::TooLarge, "552 5.3.4 "),
        ] {
            let mut out = Vec::new();
            delivery_error(&mut out, &e);
            assert!(out.starts_with(code.as_bytes()), "{e:?}");
            assert!(out.ends_with(b"\r\n"));
        }
        assert!(rejection(Rejection::UnknownUser).starts_with(b"550 5.1.1"));
        assert!(rejection(Rejection::RelayDenied).starts_with(b"554 5.7.1"));
    }
}
