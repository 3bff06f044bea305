//! Base64 (RFC 4648) and SASL PLAIN (RFC 4616) / LOGIN helpers.
//!
//! Shared by SMTP AUTH, POP3 AUTH and IMAP AUTHENTICATE; nothing in here knows a protocol.
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
}
