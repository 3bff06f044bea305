//! COMPRESS=DEFLATE (RFC 4978): the session decides when compression starts; the connection
//! (`crate::net::deflate`) does it.
//!
//! `tag COMPRESS DEFLATE`, once authenticated (so after STARTTLS, which is only allowed before
//! login): the tagged OK goes out uncompressed, then both directions are raw DEFLATE from the
//! next octet ([`ImapEvent::Compress`]). Asking again gets `NO [COMPRESSIONACTIVE]`; another
//! mechanism, or COMPRESS on a listener that does not offer it, gets BAD.

use super::ImapSession;
use super::session::{ImapEvent, State};
use crate::imap_w;

/// A COMPRESS command's argument.
#[derive(Debug, PartialEq, Eq)]
pub enum CompressRequest {
    Deflate,
    /// A well-formed mechanism name this server does not know.
    Unknown,
    /// No argument, more than one, or not an atom.
    Malformed,
}

/// `Some` when `line` (a whole command line, CRLF included) is a COMPRESS command.
pub fn parse_compress(line: &[u8]) -> Option<CompressRequest> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut words = line.splitn(3, |&b| b == b' ');
    let _tag = words.next()?;
    if !words.next()?.eq_ignore_ascii_case(b"COMPRESS") {
        return None;
    }
    Some(match words.next() {
        Some(m) if m.eq_ignore_ascii_case(b"DEFLATE") => CompressRequest::Deflate,
        Some(m) if !m.is_empty() && m.iter().all(|&b| is_atom_char(b)) => CompressRequest::Unknown,
        _ => CompressRequest::Malformed,
    })
}

/// RFC 3501 ATOM-CHAR: any CHAR except atom-specials.
fn is_atom_char(b: u8) -> bool {
    b > b' ' && b < 0x7f && !b"(){%*\"\\]".contains(&b)
}

impl ImapSession {
    pub(crate) fn compress(
        &mut self,
        tag: String,
        request: CompressRequest,
        out: &mut Vec<u8>,
    ) -> Option<ImapEvent> {
        if !self.config.limits.compress {
            return self.bad(&tag, "Command not supported", out);
        }
        if self.state == State::NotAuthenticated {
            return self.bad(&tag, "Not authenticated", out);
        }
        match request {
            CompressRequest::Malformed => self.bad(&tag, "Syntax error: COMPRESS DEFLATE", out),
            CompressRequest::Unknown => self.bad(&tag, "Unknown compression mechanism", out),
            CompressRequest::Deflate if self.compressed => {
                imap_w!(
                    out,
                    "{tag} NO [COMPRESSIONACTIVE] DEFLATE active via COMPRESS\r\n"
                );
                None
            }
            CompressRequest::Deflate => {
                imap_w!(out, "{tag} OK DEFLATE active\r\n");
                self.compressed = true;
                Some(ImapEvent::Compress)
            }
        }
    }

    /// The connection compresses from here on (after [`ImapEvent::Compress`]).
    pub fn compression_started(&mut self) {
        self.end_event();
    }

    /// Whether COMPRESS=DEFLATE is in the capability list now.
    pub(crate) fn offers_compress(&self) -> bool {
        self.config.limits.compress && self.state != State::NotAuthenticated
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::AuthOutcome;
    use crate::imap::{ImapConfig, ImapLimits};

    #[test]
    fn parses_the_command_and_its_mechanism() {
        use CompressRequest::*;
        for (line, want) in [
            (&b"a COMPRESS DEFLATE\r\n"[..], Some(Deflate)),
            (b"a compress deflate\r\n", Some(Deflate)),
            (b"a1 Compress Deflate\n", Some(Deflate)),
            (b"a COMPRESS LZ4\r\n", Some(Unknown)),
            (b"a COMPRESS\r\n", Some(Malformed)),
            (b"a COMPRESS \r\n", Some(Malformed)),
            (b"a COMPRESS DEFLATE EXTRA\r\n", Some(Malformed)),
            (b"a COMPRESS (DEFLATE)\r\n", Some(Malformed)),
            (b"a COMPRESSX DEFLATE\r\n", None),
            (b"a NOOP\r\n", None),
            (b"COMPRESS\r\n", None),
        ] {
            assert_eq!(
                parse_compress(line),
                want,
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    fn session(compress: bool) -> ImapSession {
        ImapSession::new(
            ImapConfig {
                allow_plaintext_auth: true,
                limits: ImapLimits {
                    compress,
                    ..ImapLimits::default()
                },
                ..ImapConfig::default()
            },
            true,
        )
    }

    /// Feeds `input` whole; returns the replies and the event that stopped the session, with
    /// what it left unconsumed.
    fn feed<'a>(s: &mut ImapSession, input: &'a [u8]) -> (String, Option<ImapEvent>, &'a [u8]) {
        let mut out = Vec::new();
        let (n, ev) = s.feed(input, &mut out);
        (String::from_utf8(out).unwrap(), ev, &input[n..])
    }

    fn login(s: &mut ImapSession) {
        let (_, ev, _) = feed(s, b"l LOGIN alice pw\r\n");
        assert!(matches!(ev, Some(ImapEvent::Authenticate { .. })));
        let mut out = Vec::new();
        s.auth_result(AuthOutcome::Accepted("alice@example.org".into()), &mut out);
        let out = String::from_utf8(out).unwrap();
        assert!(out.contains(" COMPRESS=DEFLATE"), "{out}");
    }

    #[test]
    fn compress_after_login_then_compressionactive() {
        let mut s = session(true);
        let (out, ev, _) = feed(&mut s, b"a CAPABILITY\r\nb COMPRESS DEFLATE\r\n");
        assert!(ev.is_none());
        assert!(!out.contains("COMPRESS"), "not offered before login: {out}");
        assert!(out.ends_with("b BAD Not authenticated\r\n"), "{out}");
        login(&mut s);
        // What follows COMPRESS on the wire is compressed: the session must not consume it.
        let (out, ev, rest) = feed(&mut s, b"c COMPRESS DEFLATE\r\n\x01\x02\x03");
        assert_eq!(out, "c OK DEFLATE active\r\n");
        assert!(matches!(ev, Some(ImapEvent::Compress)));
        assert_eq!(rest, b"\x01\x02\x03");
        s.compression_started();
        let (out, ev, _) = feed(
            &mut s,
            b"d COMPRESS DEFLATE\r\ne COMPRESS LZ4\r\nf COMPRESS\r\ng NOOP\r\n",
        );
        assert!(ev.is_none());
        assert_eq!(
            out,
            "d NO [COMPRESSIONACTIVE] DEFLATE active via COMPRESS\r\n\
             e BAD Unknown compression mechanism\r\n\
             f BAD Syntax error: COMPRESS DEFLATE\r\n\
             g OK NOOP completed\r\n"
        );
    }

    #[test]
    fn unknown_mechanism_is_bad_and_leaves_compression_off() {
        let mut s = session(true);
        login(&mut s);
        let (out, ev, _) = feed(&mut s, b"a COMPRESS X-ZSTD\r\nb COMPRESS DEFLATE\r\n");
        assert_eq!(
            out,
            "a BAD Unknown compression mechanism\r\nb OK DEFLATE active\r\n"
        );
        assert!(matches!(ev, Some(ImapEvent::Compress)));
    }

    #[test]
    fn a_listener_without_compress_neither_offers_nor_accepts_it() {
        let mut s = session(false);
        let (_, ev, _) = feed(&mut s, b"l LOGIN alice pw\r\n");
        assert!(ev.is_some());
        let mut out = Vec::new();
        s.auth_result(AuthOutcome::Accepted("alice@example.org".into()), &mut out);
        assert!(!String::from_utf8(out).unwrap().contains("COMPRESS"));
        let (out, ev, _) = feed(&mut s, b"a CAPABILITY\r\nb COMPRESS DEFLATE\r\n");
        assert!(ev.is_none());
        assert!(!out.contains("COMPRESS="), "{out}");
        assert!(out.ends_with("b BAD Command not supported\r\n"), "{out}");
    }
}
