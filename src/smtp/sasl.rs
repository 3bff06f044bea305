//! Protocol-neutral SASL helpers (RFC 4648 base64, RFC 4616 PLAIN), shared by SMTP AUTH and
//! (later) POP3 AUTH / IMAP AUTHENTICATE.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with `=` padding.
pub fn base64_encode(input: &[u8]) -> String {
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(ALPHABET[(n >> 18) as usize & 63] as char);
        out.push(ALPHABET[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            ALPHABET[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            ALPHABET[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

fn value(c: u8) -> Option<u32> {
    Some(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    } as u32)
}

/// Strict standard base64 decoding: length a multiple of 4, `=` padding only at the end, no
/// whitespace. Returns `None` on any violation.
pub fn base64_decode(input: &[u8]) -> Option<Vec<u8>> {
    if !input.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(input.len() / 4 * 3);
    let chunks = input.len() / 4;
    for (i, q) in input.chunks_exact(4).enumerate() {
        let pad = q.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && i + 1 != chunks) {
            return None;
        }
        let mut n = 0u32;
        for &c in &q[..4 - pad] {
            n = (n << 6) | value(c)?;
        }
        n <<= 6 * pad as u32;
        out.push((n >> 16) as u8);
        if pad < 2 {
            out.push((n >> 8) as u8);
        }
        if pad < 1 {
            out.push(n as u8);
        }
    }
    Some(out)
}

/// Split a decoded RFC 4616 PLAIN message `authzid NUL authcid NUL passwd` into its three
/// UTF-8 parts. The authentication identity and the password must be non-empty.
pub fn parse_plain(message: &[u8]) -> Option<(String, String, String)> {
    let mut parts = message.split(|&b| b == 0);
    let authzid = parts.next()?;
    let authcid = parts.next()?;
    let password = parts.next()?;
    if parts.next().is_some() || authcid.is_empty() || password.is_empty() {
        return None;
    }
    Some((
        String::from_utf8(authzid.to_vec()).ok()?,
        String::from_utf8(authcid.to_vec()).ok()?,
        String::from_utf8(password.to_vec()).ok()?,
    ))
}

/// Decode a base64 PLAIN response into `(authzid, authcid, password)`.
pub fn decode_plain(b64: &str) -> Option<(String, String, String)> {
    parse_plain(&base64_decode(b64.as_bytes())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4648_vectors() {
        let v: [(&str, &str); 7] = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, enc) in v {
            assert_eq!(base64_encode(plain.as_bytes()), enc);
            assert_eq!(base64_decode(enc.as_bytes()).unwrap(), plain.as_bytes());
        }
        assert_eq!(base64_encode(b"Username:"), "VXNlcm5hbWU6");
        assert_eq!(base64_encode(b"Password:"), "UGFzc3dvcmQ6");
    }

    #[test]
    fn all_bytes_round_trip() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        for n in 0..data.len() {
            assert_eq!(
                base64_decode(base64_encode(&data[..n]).as_bytes()).unwrap(),
                &data[..n]
            );
        }
    }

    #[test]
    fn bad_base64() {
        for bad in [
            "Zg", "Zg=", "Z===", "Zg==Zg==", "Zm9v\r\n", "Zm 9", "Zm9*", "====", "=Zm9",
        ] {
            assert_eq!(base64_decode(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn plain() {
        let b64 = base64_encode(b"\0alice@example.org\0secret");
        assert_eq!(
            decode_plain(&b64),
            Some((String::new(), "alice@example.org".into(), "secret".into()))
        );
        let b64 = base64_encode(b"admin\0alice\0pw");
        assert_eq!(
            decode_plain(&b64),
            Some(("admin".into(), "alice".into(), "pw".into()))
        );
        for bad in [
            &b"alice\0secret"[..],
            b"\0\0secret",
            b"\0alice\0",
            b"\0a\0b\0c",
            b"\0\xff\0pw",
        ] {
            assert_eq!(decode_plain(&base64_encode(bad)), None);
        }
        assert_eq!(decode_plain("not base64!"), None);
    }
}
