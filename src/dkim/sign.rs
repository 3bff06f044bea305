//! The `DKIM-Signature` header field of one message, and the domain it is signed for.

use mail_auth::common::crypto::{Algorithm, DkimKey as KeyPair, Sha256, SigningKey};
use mail_auth::common::headers::{HeaderWriter, Writable};
use mail_auth::dkim::{Canonicalization, DkimSigner as MailAuthSigner};
use mail_parser::MessageParser;

use super::key::normalize_domain;
use super::{DkimError, DkimKey};

/// The header fields signed when present (RFC 6376 5.4.1's list, trimmed to what a relay
/// should never change). From comes first and is always signed, once more than it occurs.
pub const SIGNED_HEADERS: [&str; 12] = [
    "From",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "Reply-To",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
];

/// mail-auth's signer owns its key; a borrowing key lets one loaded key serve every message
/// (and every signer thread) without copying key material.
struct BorrowedKey<'a>(&'a KeyPair);

impl SigningKey for BorrowedKey<'_> {
    type Hasher = Sha256;

    fn sign(&self, input: impl Writable) -> mail_auth::Result<Vec<u8>> {
        self.0.sign(input)
    }

    fn algorithm(&self) -> Algorithm {
        self.0.algorithm()
    }
}

/// Signs `message` (a complete RFC 5322 message with CRLF line endings) with `key` and returns
/// the complete `DKIM-Signature: ...\r\n` header field, folded, to prepend to it.
///
/// Canonicalization is relaxed/relaxed (survives the whitespace changes relays make). The
/// signed fields are those of [`SIGNED_HEADERS`] present in the message (every occurrence),
/// plus From once more than it occurs: that extra, empty instance makes a From added in
/// transit break the signature, so nobody can prepend a second From that a mail client would
/// display instead of the signed one. Fails if the message has no From field.
pub fn sign(key: &DkimKey, message: &[u8]) -> Result<Vec<u8>, DkimError> {
    let mut present = [false; SIGNED_HEADERS.len()];
    for (name, _) in header_fields(message) {
        if let Some(i) = SIGNED_HEADERS
            .iter()
            .position(|h| name.eq_ignore_ascii_case(h.as_bytes()))
        {
            present[i] = true;
        }
    }
    if !present[0] {
        return Err(DkimError("the message has no From header field".into()));
    }
    let mut headers: Vec<&str> = SIGNED_HEADERS
        .iter()
        .zip(present)
        .filter_map(|(name, present)| present.then_some(*name))
        .collect();
    // mail-auth signs every occurrence of a listed name and appends the names it did not
    // find to h=: a second "From" becomes the empty, oversigned instance.
    headers.push("From");

    let signature = MailAuthSigner::from_key(BorrowedKey(&key.pair))
        .domain(key.domain())
        .selector(key.selector())
        .headers(headers)
        .header_canonicalization(Canonicalization::Relaxed)
        .body_canonicalization(Canonicalization::Relaxed)
        .sign(message)
        .map_err(|e| DkimError(format!("DKIM signing for {}: {e}", key.domain())))?;
    let mut field = Vec::with_capacity(640);
    signature.write_header(&mut field);
    Ok(field)
}

/// The domain of the first address of the first From header field, lowercased (A-labels):
/// the domain a DKIM signature must carry to align for DMARC. None without a From field, an
/// address, or a valid domain name in it.
pub fn from_domain(message: &[u8]) -> Option<String> {
    let address = from_address(message)?;
    let (_, domain) = address.rsplit_once('@')?;
    normalize_domain(domain)
}

/// The address of the first From: header field (as written; see [`from_domain`]).
pub fn from_address(message: &[u8]) -> Option<String> {
    // Found by the same splitter `sign` uses, so both agree on which field is "the From".
    let (_, value) = header_fields(message).find(|(name, _)| name.eq_ignore_ascii_case(b"From"))?;
    // That one field alone goes through mail-parser's RFC 5322 address parser (display names,
    // comments, groups, encoded words: an "@" there is not the address).
    let mut field = Vec::with_capacity(value.len() + 9);
    field.extend_from_slice(b"From:");
    field.extend_from_slice(value);
    if !value.ends_with(b"\n") {
        field.extend_from_slice(b"\r\n");
    }
    field.extend_from_slice(b"\r\n");
    let parsed = MessageParser::new().parse_headers(&field)?;
    Some(parsed.from()?.first()?.address()?.to_string())
}

/// The header fields of `message` as (name, value) — value unparsed, folding and line end
/// included — split the way mail-auth's signer splits them (its splitter is private), so
/// that `sign` asks it to sign exactly the fields it will find. A field runs to the first
/// line end not followed by a space or tab; the header section ends at an empty line or at a
/// line without a colon (which mail-auth takes for the start of the body).
fn header_fields(message: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let mut pos = 0;
    std::iter::from_fn(move || {
        let rest = message.get(pos..).filter(|r| !r.is_empty())?;
        let line_end = memchr::memchr(b'\n', rest).map_or(rest.len(), |i| i + 1);
        let colon = memchr::memchr(b':', &rest[..line_end])?;
        let mut end = line_end;
        while matches!(rest.get(end), Some(b' ' | b'\t')) {
            end = memchr::memchr(b'\n', &rest[end..]).map_or(rest.len(), |i| end + i + 1);
        }
        pos += end;
        Some((&rest[..colon], &rest[colon + 1..end]))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_fields_split_like_the_signer() {
        let fields = |m: &'static [u8]| -> Vec<(&'static str, &'static str)> {
            header_fields(m)
                .map(|(n, v)| {
                    (
                        std::str::from_utf8(n).unwrap(),
                        std::str::from_utf8(v).unwrap(),
                    )
                })
                .collect()
        };
        assert_eq!(
            fields(b"From: a\r\nSubject: x\r\n\ty\r\nTo:b\r\n\r\nX: body\r\n"),
            [
                ("From", " a\r\n"),
                ("Subject", " x\r\n\ty\r\n"),
                ("To", "b\r\n")
            ]
        );
        // A line without a colon ends the header section, as an empty line does.
        assert_eq!(
            fields(b"From: a\r\nnot a field\r\nTo: b\r\n"),
            [("From", " a\r\n")]
        );
        // Unterminated last field, bare LF, a colon only on a continuation line.
        assert_eq!(fields(b"A: 1\nB: 2"), [("A", " 1\n"), ("B", " 2")]);
        assert_eq!(fields(b"Subject x\r\n :y\r\n"), []);
        assert_eq!(fields(b""), []);
        assert_eq!(fields(b"\r\nFrom: a\r\n"), []);
        assert_eq!(fields(b"From: a\r\n \r\n"), [("From", " a\r\n \r\n")]);
    }

    #[test]
    fn from_domain_takes_the_first_address_of_the_first_from() {
        let cases: &[(&[u8], Option<&str>)] = &[
            (
                b"From: alice@Example.ORG\r\n\r\nbody\r\n",
                Some("example.org"),
            ),
            (
                b"from: Alice <alice@example.org>\r\n\r\n",
                Some("example.org"),
            ),
            (
                b"From: a@one.example, b@two.example\r\nTo: x@y.example\r\n\r\n",
                Some("one.example"),
            ),
            (
                b"From: Team: a@x.example, b@y.example;\r\n\r\n",
                Some("x.example"),
            ),
            // Folded.
            (
                b"From: Alice\r\n <alice@folded.example>\r\n\r\n",
                Some("folded.example"),
            ),
            // An "@" in a display name, quoted or encoded, is not the address.
            (
                b"From: \"boss@bank.example\" <mallory@evil.example>\r\n\r\n",
                Some("evil.example"),
            ),
            (
                b"From: =?utf-8?q?boss=40bank.example?= <mallory@evil.example>\r\n\r\n",
                Some("evil.example"),
            ),
            (
                b"From: (boss@bank.example) mallory@evil.example\r\n\r\n",
                Some("evil.example"),
            ),
            // Two From fields (invalid): the first.
            (
                b"From: a@first.example\r\nFrom: b@second.example\r\n\r\n",
                Some("first.example"),
            ),
            (
                b"Subject: hi\r\nFROM:x@late.example\r\n\r\n",
                Some("late.example"),
            ),
            // IDN.
            (
                "From: a@Bücher.example\r\n\r\n".as_bytes(),
                Some("xn--bcher-kva.example"),
            ),
            // LF only.
            (b"From: a@lf.example\n\nbody\n", Some("lf.example")),
            (b"From: a@dot.example.\r\n\r\n", Some("dot.example")),
            // No usable domain.
            (b"From: nobody\r\n\r\n", None),
            (b"From: <>\r\n\r\n", None),
            (b"From: a@[192.0.2.1]\r\n\r\n", None),
            (b"From: a@exa_mple.org\r\n\r\n", None),
            (b"From: a@\r\n\r\n", None),
            (b"From:\r\n\r\n", None),
            (b"To: a@b.example\r\n\r\n", None),
            // A From in the body is not a header field.
            (b"Subject: x\r\n\r\nFrom: a@body.example\r\n", None),
            (b"", None),
            (b"\r\n\r\n", None),
            (b"\xff\xfe\x00From: a@b.example", None),
        ];
        for (message, expected) in cases {
            assert_eq!(
                from_domain(message).as_deref(),
                *expected,
                "{:?}",
                String::from_utf8_lossy(message)
            );
        }
    }

    #[test]
    fn from_domain_survives_garbage() {
        // Deterministic pseudo-random headers: no panic, and any answer is a valid name.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let alphabet = b"From:@<>\"(),;. \r\n\t=?aZ09-\\[]\x80\xff";
        for _ in 0..5_000 {
            let len = (seed % 200) as usize;
            let mut message = b"From:".to_vec();
            for _ in 0..len {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                message.push(alphabet[(seed % alphabet.len() as u64) as usize]);
            }
            if let Some(domain) = from_domain(&message) {
                assert!(super::super::key::is_dns_name(&domain), "{domain:?}");
            }
        }
    }
}
