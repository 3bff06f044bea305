//! Base64 (RFC 4648) and the SASL exchange (PLAIN, RFC 4616, and LOGIN) shared by SMTP AUTH,
//! POP3 AUTH and IMAP AUTHENTICATE; nothing in here knows a protocol.
//!
//! [`SaslExchange`] is the one place that decides what a client's SASL responses mean: each
//! protocol only frames the challenges (`334 `, `+ `) and maps a [`SaslError`] to its own
//! reply (`501 5.5.2`, `-ERR`, `BAD`/`NO`). Strict everywhere: invalid base64, an empty user
//! name or password, or an authorization identity other than the user's own are refused
//! before any credential check.
//!
//! Decoding is strict about the alphabet (no whitespace, no URL-safe characters) and about
//! padding placement, but accepts unpadded input, since some SASL clients omit the `=`.

use std::fmt;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// The server challenge of SASL LOGIN asking for the user name ("Username:" in base64).
pub const LOGIN_USERNAME_CHALLENGE: &str = "VXNlcm5hbWU6";
/// The server challenge of SASL LOGIN asking for the password ("Password:" in base64).
pub const LOGIN_PASSWORD_CHALLENGE: &str = "UGFzc3dvcmQ6";

const INVALID: u8 = 0xFF;

const DECODE_TABLE: [u8; 256] = {
    let mut table = [INVALID; 256];
    let mut i = 0;
    while i < 64 {
        table[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// Why base64 input was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Base64Error {
    /// A byte outside the base64 alphabet (including whitespace and NUL).
    InvalidByte(u8),
    /// `=` somewhere other than the last one or two positions of a 4-aligned input.
    BadPadding,
    /// The input length cannot encode a whole number of bytes.
    BadLength,
}

impl fmt::Display for Base64Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Base64Error::InvalidByte(b) => write!(f, "invalid base64 byte 0x{b:02x}"),
            Base64Error::BadPadding => f.write_str("invalid base64 padding"),
            Base64Error::BadLength => f.write_str("invalid base64 length"),
        }
    }
}
impl std::error::Error for Base64Error {}

/// Standard base64 with padding.
pub fn encode_base64(input: &[u8]) -> String {
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    let mut chunks = input.chunks_exact(3);
    for c in &mut chunks {
        let n = (u32::from(c[0]) << 16) | (u32::from(c[1]) << 8) | u32::from(c[2]);
        for shift in [18, 12, 6, 0] {
            out.push(ALPHABET[((n >> shift) & 63) as usize] as char);
        }
    }
    match *chunks.remainder() {
        [a] => {
            let n = u32::from(a) << 16;
            out.push(ALPHABET[((n >> 18) & 63) as usize] as char);
            out.push(ALPHABET[((n >> 12) & 63) as usize] as char);
            out.push_str("==");
        }
        [a, b] => {
            let n = (u32::from(a) << 16) | (u32::from(b) << 8);
            out.push(ALPHABET[((n >> 18) & 63) as usize] as char);
            out.push(ALPHABET[((n >> 12) & 63) as usize] as char);
            out.push(ALPHABET[((n >> 6) & 63) as usize] as char);
            out.push('=');
        }
        _ => {}
    }
    out
}

/// Decode standard base64. Padding is optional but, if present, must be correct.
pub fn decode_base64(input: &[u8]) -> Result<Vec<u8>, Base64Error> {
    let data = match input {
        [rest @ .., b'=', b'='] | [rest @ .., b'='] => {
            if !input.len().is_multiple_of(4) {
                return Err(Base64Error::BadPadding);
            }
            rest
        }
        _ => input,
    };
    let mut out = Vec::with_capacity(data.len() / 4 * 3 + 2);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for &b in data {
        let v = DECODE_TABLE[b as usize];
        if v == INVALID {
            return Err(if b == b'=' {
                Base64Error::BadPadding
            } else {
                Base64Error::InvalidByte(b)
            });
        }
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    if data.len() % 4 == 1 {
        return Err(Base64Error::BadLength);
    }
    Ok(out)
}

/// Decode a SASL initial response sent on the AUTH command line (RFC 5034 / RFC 4954): a lone
/// `=` stands for an empty response, anything else is base64.
pub fn decode_initial_response(input: &[u8]) -> Result<Vec<u8>, Base64Error> {
    if input == b"=" {
        Ok(Vec::new())
    } else {
        decode_base64(input)
    }
}

/// The decoded credentials of a SASL PLAIN response (`[authzid] NUL authcid NUL passwd`).
#[derive(Clone, PartialEq, Eq)]
pub struct PlainCredentials {
    /// The authorization identity, if the client sent a non-empty one.
    pub authzid: Option<String>,
    /// The authentication identity (the user name).
    pub authcid: String,
    pub password: String,
}

impl fmt::Debug for PlainCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlainCredentials")
            .field("authzid", &self.authzid)
            .field("authcid", &self.authcid)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Why a SASL PLAIN response was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlainError {
    Base64(Base64Error),
    /// Not exactly three NUL-separated fields.
    Malformed,
    /// Empty user name or password.
    EmptyField,
    /// A field is not UTF-8 (RFC 4616 requires UTF-8).
    NotUtf8,
}

impl fmt::Display for PlainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlainError::Base64(e) => e.fmt(f),
            PlainError::Malformed => f.write_str("malformed PLAIN response"),
            PlainError::EmptyField => f.write_str("empty user name or password"),
            PlainError::NotUtf8 => f.write_str("PLAIN response is not UTF-8"),
        }
    }
}
impl std::error::Error for PlainError {}

/// Decode a base64 SASL PLAIN response (initial response or continuation line).
pub fn decode_plain(b64: &[u8]) -> Result<PlainCredentials, PlainError> {
    let raw = decode_base64(b64).map_err(PlainError::Base64)?;
    parse_plain(&raw)
}

/// Parse an already base64-decoded SASL PLAIN message.
pub fn parse_plain(raw: &[u8]) -> Result<PlainCredentials, PlainError> {
    let mut parts = raw.split(|&b| b == 0);
    let (Some(authzid), Some(authcid), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(PlainError::Malformed);
    };
    if authcid.is_empty() || password.is_empty() {
        return Err(PlainError::EmptyField);
    }
    let text = |b: &[u8]| {
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| PlainError::NotUtf8)
    };
    Ok(PlainCredentials {
        authzid: if authzid.is_empty() {
            None
        } else {
            Some(text(authzid)?)
        },
        authcid: text(authcid)?,
        password: text(password)?,
    })
}

/// The mechanisms every protocol offers (all need TLS, or `allow_plaintext_auth`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaslMechanism {
    Plain,
    Login,
}

impl SaslMechanism {
    /// The mechanism a client named (case-insensitive), if supported.
    pub fn from_name(name: &[u8]) -> Option<SaslMechanism> {
        if name.eq_ignore_ascii_case(b"PLAIN") {
            Some(SaslMechanism::Plain)
        } else if name.eq_ignore_ascii_case(b"LOGIN") {
            Some(SaslMechanism::Login)
        } else {
            None
        }
    }
}

/// The credentials a finished exchange yields, to be verified by the caller.
#[derive(Clone, PartialEq, Eq)]
pub struct SaslCredentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for SaslCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaslCredentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Why an exchange ended without credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaslError {
    /// The client answered a challenge with `*` (RFC 4422 §3.5).
    Cancelled,
    /// Not base64 (RFC 4648, strictly: no whitespace, padding in place).
    BadBase64,
    /// Base64, but not the mechanism's shape: PLAIN without three fields, a field that is
    /// not UTF-8, NUL inside a LOGIN field.
    Malformed,
    /// Empty user name or password: refused without asking the verifier.
    EmptyField,
    /// PLAIN with an authorization identity other than the user's own (acting for someone
    /// else is not supported).
    AuthzidMismatch,
}

impl fmt::Display for SaslError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SaslError::Cancelled => "Authentication cancelled",
            SaslError::BadBase64 => "Invalid base64 data",
            SaslError::Malformed => "Malformed SASL response",
            SaslError::EmptyField => "Empty user name or password",
            SaslError::AuthzidMismatch => {
                "Authorization identity must match authentication identity"
            }
        })
    }
}
impl std::error::Error for SaslError {}

/// What the protocol does next in an exchange.
#[derive(Debug)]
pub enum SaslStep {
    /// Send this base64 challenge (`334 <c>`, `+ <c>`) and give the client's next line to
    /// [`SaslExchange::respond`].
    Challenge(SaslExchange, &'static str),
    /// Verify these credentials.
    Done(SaslCredentials),
    /// Reply with the protocol's error for this and leave the exchange.
    Failed(SaslError),
}

/// One SASL PLAIN or LOGIN exchange, sans-IO. A value of this type is "waiting for the
/// client's next response line".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslExchange {
    waiting_for: Awaiting,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Awaiting {
    PlainResponse,
    LoginUsername,
    LoginPassword { username: String },
}

impl SaslExchange {
    /// Start an exchange; `initial_response` is the SASL-IR / AUTH command-line argument
    /// (still base64; a lone `=` is an empty response).
    pub fn start(mechanism: SaslMechanism, initial_response: Option<&[u8]>) -> SaslStep {
        let waiting_for = match mechanism {
            SaslMechanism::Plain => Awaiting::PlainResponse,
            SaslMechanism::Login => Awaiting::LoginUsername,
        };
        let exchange = SaslExchange { waiting_for };
        match initial_response {
            None => {
                let challenge = match mechanism {
                    SaslMechanism::Plain => "",
                    SaslMechanism::Login => LOGIN_USERNAME_CHALLENGE,
                };
                SaslStep::Challenge(exchange, challenge)
            }
            Some(ir) => match decode_initial_response(ir) {
                Ok(decoded) => exchange.advance(decoded),
                Err(_) => SaslStep::Failed(SaslError::BadBase64),
            },
        }
    }

    /// The client's response line to the last challenge (CRLF already stripped).
    pub fn respond(self, line: &[u8]) -> SaslStep {
        if line == b"*" {
            return SaslStep::Failed(SaslError::Cancelled);
        }
        match decode_base64(line) {
            Ok(decoded) => self.advance(decoded),
            Err(_) => SaslStep::Failed(SaslError::BadBase64),
        }
    }

    fn advance(self, decoded: Vec<u8>) -> SaslStep {
        match self.waiting_for {
            Awaiting::PlainResponse => match parse_plain(&decoded) {
                Ok(c) if c.authzid.as_ref().is_some_and(|z| *z != c.authcid) => {
                    SaslStep::Failed(SaslError::AuthzidMismatch)
                }
                Ok(c) => SaslStep::Done(SaslCredentials {
                    username: c.authcid,
                    password: c.password,
                }),
                Err(PlainError::EmptyField) => SaslStep::Failed(SaslError::EmptyField),
                Err(_) => SaslStep::Failed(SaslError::Malformed),
            },
            Awaiting::LoginUsername => match login_field(decoded) {
                Ok(username) => SaslStep::Challenge(
                    SaslExchange {
                        waiting_for: Awaiting::LoginPassword { username },
                    },
                    LOGIN_PASSWORD_CHALLENGE,
                ),
                Err(e) => SaslStep::Failed(e),
            },
            Awaiting::LoginPassword { username } => match login_field(decoded) {
                Ok(password) => SaslStep::Done(SaslCredentials { username, password }),
                Err(e) => SaslStep::Failed(e),
            },
        }
    }
}

/// A LOGIN user name or password: non-empty UTF-8 without NUL.
fn login_field(decoded: Vec<u8>) -> Result<String, SaslError> {
    if decoded.is_empty() {
        return Err(SaslError::EmptyField);
    }
    match String::from_utf8(decoded) {
        Ok(text) if !text.contains('\0') => Ok(text),
        _ => Err(SaslError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4648_vectors() {
        let vectors: [(&[u8], &str); 7] = [
            (b"", ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg=="),
            (b"fooba", "Zm9vYmE="),
            (b"foobar", "Zm9vYmFy"),
        ];
        for (plain, enc) in vectors {
            assert_eq!(encode_base64(plain), enc);
            assert_eq!(decode_base64(enc.as_bytes()).unwrap(), plain);
        }
    }

    #[test]
    fn unpadded_accepted() {
        assert_eq!(decode_base64(b"Zg").unwrap(), b"f");
        assert_eq!(decode_base64(b"Zm8").unwrap(), b"fo");
        assert_eq!(decode_base64(b"Zm9vYg").unwrap(), b"foob");
    }

    #[test]
    fn round_trip_all_bytes() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        for len in 0..data.len() {
            let enc = encode_base64(&data[..len]);
            assert_eq!(decode_base64(enc.as_bytes()).unwrap(), &data[..len]);
        }
    }

    #[test]
    fn invalid_input() {
        assert_eq!(decode_base64(b"Zm9v!"), Err(Base64Error::InvalidByte(b'!')));
        assert_eq!(decode_base64(b"Zm 9v"), Err(Base64Error::InvalidByte(b' ')));
        assert_eq!(decode_base64(b"Zm9\0"), Err(Base64Error::InvalidByte(0)));
        assert_eq!(decode_base64(b"Zm9-"), Err(Base64Error::InvalidByte(b'-')));
        assert_eq!(decode_base64(b"Z"), Err(Base64Error::BadLength));
        assert_eq!(decode_base64(b"Zm9vY"), Err(Base64Error::BadLength));
        assert_eq!(decode_base64(b"Zg="), Err(Base64Error::BadPadding));
        assert_eq!(decode_base64(b"Z==="), Err(Base64Error::BadPadding));
        assert_eq!(decode_base64(b"Zg==Zg=="), Err(Base64Error::BadPadding));
        assert_eq!(decode_base64(b"="), Err(Base64Error::BadPadding));
        assert_eq!(decode_base64(b"===="), Err(Base64Error::BadPadding));
    }

    #[test]
    fn plain_ok() {
        let c = decode_plain(encode_base64(b"\0alice@example.org\0s3cr et").as_bytes()).unwrap();
        assert_eq!(c.authzid, None);
        assert_eq!(c.authcid, "alice@example.org");
        assert_eq!(c.password, "s3cr et");
        let c = decode_plain(encode_base64(b"admin\0alice\0pw").as_bytes()).unwrap();
        assert_eq!(c.authzid.as_deref(), Some("admin"));
        assert!(!format!("{c:?}").contains("pw\""));
    }

    #[test]
    fn plain_errors() {
        let enc = |b: &[u8]| encode_base64(b);
        assert_eq!(
            decode_plain(b"%%%%"),
            Err(PlainError::Base64(Base64Error::InvalidByte(b'%')))
        );
        assert_eq!(
            decode_plain(enc(b"alice pw").as_bytes()),
            Err(PlainError::Malformed)
        );
        assert_eq!(
            decode_plain(enc(b"\0alice").as_bytes()),
            Err(PlainError::Malformed)
        );
        assert_eq!(
            decode_plain(enc(b"\0a\0b\0c").as_bytes()),
            Err(PlainError::Malformed)
        );
        assert_eq!(
            decode_plain(enc(b"\0\0pw").as_bytes()),
            Err(PlainError::EmptyField)
        );
        assert_eq!(
            decode_plain(enc(b"\0alice\0").as_bytes()),
            Err(PlainError::EmptyField)
        );
        assert_eq!(
            decode_plain(enc(b"\0al\xffce\0pw").as_bytes()),
            Err(PlainError::NotUtf8)
        );
        assert_eq!(decode_plain(b""), Err(PlainError::Malformed));
    }

    #[test]
    fn initial_response() {
        assert_eq!(decode_initial_response(b"=").unwrap(), b"");
        assert_eq!(decode_initial_response(b"Zm9v").unwrap(), b"foo");
        assert_eq!(decode_initial_response(b"=="), Err(Base64Error::BadPadding));
        assert_eq!(decode_base64(b"").unwrap(), b"");
    }

    #[test]
    fn login_challenges() {
        assert_eq!(
            decode_base64(LOGIN_USERNAME_CHALLENGE.as_bytes()).unwrap(),
            b"Username:"
        );
        assert_eq!(
            decode_base64(LOGIN_PASSWORD_CHALLENGE.as_bytes()).unwrap(),
            b"Password:"
        );
    }

    fn done(step: SaslStep) -> SaslCredentials {
        match step {
            SaslStep::Done(c) => c,
            other => panic!("expected credentials, got {other:?}"),
        }
    }

    fn failed(step: SaslStep) -> SaslError {
        match step {
            SaslStep::Failed(e) => e,
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    fn challenge(step: SaslStep, expected: &str) -> SaslExchange {
        match step {
            SaslStep::Challenge(x, c) if c == expected => x,
            other => panic!("expected challenge {expected:?}, got {other:?}"),
        }
    }

    #[test]
    fn exchange_plain_with_and_without_initial_response() {
        let b64 = encode_base64(b"\0alice\0pw");
        let c = done(SaslExchange::start(
            SaslMechanism::Plain,
            Some(b64.as_bytes()),
        ));
        assert_eq!((c.username.as_str(), c.password.as_str()), ("alice", "pw"));
        let x = challenge(SaslExchange::start(SaslMechanism::Plain, None), "");
        let c = done(x.respond(b64.as_bytes()));
        assert_eq!(c.username, "alice");
        // The user's own authorization identity is fine; anyone else's is not.
        let own = encode_base64(b"alice\0alice\0pw");
        done(SaslExchange::start(
            SaslMechanism::Plain,
            Some(own.as_bytes()),
        ));
        let other = encode_base64(b"admin\0alice\0pw");
        assert_eq!(
            failed(SaslExchange::start(
                SaslMechanism::Plain,
                Some(other.as_bytes())
            )),
            SaslError::AuthzidMismatch
        );
    }

    #[test]
    fn exchange_login_two_challenges() {
        let x = challenge(
            SaslExchange::start(SaslMechanism::Login, None),
            LOGIN_USERNAME_CHALLENGE,
        );
        let x = challenge(x.respond(b"YWxpY2U="), LOGIN_PASSWORD_CHALLENGE);
        let c = done(x.respond(b"cHc="));
        assert_eq!((c.username.as_str(), c.password.as_str()), ("alice", "pw"));
        // The user name as initial response skips the first challenge.
        let x = challenge(
            SaslExchange::start(SaslMechanism::Login, Some(b"YWxpY2U=")),
            LOGIN_PASSWORD_CHALLENGE,
        );
        assert_eq!(done(x.respond(b"cHc=")).password, "pw");
    }

    #[test]
    fn exchange_hostile_responses() {
        let plain = || challenge(SaslExchange::start(SaslMechanism::Plain, None), "");
        let login_pass = || {
            challenge(
                SaslExchange::start(SaslMechanism::Login, Some(b"YWxpY2U=")),
                LOGIN_PASSWORD_CHALLENGE,
            )
        };
        // `*` cancels at every step.
        assert_eq!(failed(plain().respond(b"*")), SaslError::Cancelled);
        assert_eq!(failed(login_pass().respond(b"*")), SaslError::Cancelled);
        // Base64 with whitespace, junk or bad padding is refused, not repaired.
        for junk in [
            &b"AGFsaWNlAHB3 "[..],
            b"AGFs aWNlAHB3",
            b"!!!!",
            b"AGFsaWNlAHB3=",
            b"A",
        ] {
            assert_eq!(
                failed(plain().respond(junk)),
                SaslError::BadBase64,
                "{junk:?}"
            );
        }
        // Empty user name or password, in either mechanism.
        for empty in [&b"\0\0pw"[..], b"\0alice\0"] {
            let b64 = encode_base64(empty);
            assert_eq!(
                failed(plain().respond(b64.as_bytes())),
                SaslError::EmptyField
            );
        }
        assert_eq!(failed(login_pass().respond(b"")), SaslError::EmptyField);
        assert_eq!(
            failed(SaslExchange::start(SaslMechanism::Login, Some(b"="))),
            SaslError::EmptyField
        );
        // Wrong shape, NUL inside a LOGIN field, invalid UTF-8.
        let nul = encode_base64(b"p\0w");
        assert_eq!(
            failed(login_pass().respond(nul.as_bytes())),
            SaslError::Malformed
        );
        let latin1 = encode_base64(b"\xe9t\xe9");
        assert_eq!(
            failed(login_pass().respond(latin1.as_bytes())),
            SaslError::Malformed
        );
        let two_fields = encode_base64(b"alice\0pw");
        assert_eq!(
            failed(plain().respond(two_fields.as_bytes())),
            SaslError::Malformed
        );
        assert_eq!(
            failed(SaslExchange::start(SaslMechanism::Plain, Some(b"="))),
            SaslError::Malformed
        );
        assert_eq!(
            SaslMechanism::from_name(b"plain"),
            Some(SaslMechanism::Plain)
        );
        assert_eq!(SaslMechanism::from_name(b"CRAM-MD5"), None);
    }
}
