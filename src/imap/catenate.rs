//! CATENATE (RFC 4469): `APPEND mailbox [flags] [date] CATENATE (TEXT literal / URL url ...)`
//! builds the new message from text parts and parts of messages already in the account.
//!
//! imap-codec does not parse CATENATE: [`extract_catenate`] cuts the part list out of the
//! command (replacing it with a one-octet placeholder literal, so imap-codec still parses the
//! mailbox, flags and date) and keeps the parts in the command extras. The URL parts are
//! resolved when the command runs ([`ImapSession::catenated`]): IMAP URLs (RFC 5092) of this
//! account, absolute (`imap://user@host/...`, the authority is not checked: the mailbox is
//! always looked up in the session's own account) or server-relative (`/INBOX;UIDVALIDITY=7/;UID=3`),
//! with an optional `;SECTION=` (a part number, `HEADER`, `TEXT`, `n.MIME`, `n.HEADER`,
//! `n.TEXT`). A URL that does not resolve answers `NO [BADURL url]`; CATENATE is accepted for a
//! single message (not inside a MULTIAPPEND).

use std::borrow::Cow;

use super::codec::mutf7_decode;
use super::mime;
use super::section::{self, SectionKind, SectionSpec};
use super::session::ImapSession;
use crate::store::MailStore;

/// One part of a CATENATE list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatPart {
    Text(Vec<u8>),
    Url(String),
}

/// An APPEND rewritten for imap-codec, and the CATENATE parts cut out of it.
pub type CutCatenate = (Vec<u8>, Vec<CatPart>);

/// Cut `CATENATE (...)` out of an APPEND. Returns the command for imap-codec and the parts, or
/// None when the command is not an APPEND with CATENATE.
pub fn extract_catenate(cmd: &[u8], verb_at: usize) -> Result<Option<CutCatenate>, String> {
    const VERB: &[u8] = b"APPEND ";
    if !cmd
        .get(verb_at..verb_at + VERB.len())
        .is_some_and(|v| v.eq_ignore_ascii_case(VERB))
    {
        return Ok(None);
    }
    let mut at = verb_at + VERB.len();
    // Mailbox, then the optional flag list and date: skip them as imap-codec will parse them.
    at = match skip_astring(cmd, at) {
        Some(end) => end,
        None => return Ok(None),
    };
    for opener in [b'(', b'"'] {
        if cmd.get(at) == Some(&b' ') && cmd.get(at + 1) == Some(&opener) {
            at = match if opener == b'(' {
                memchr::memchr(b')', &cmd[at..]).map(|i| at + i + 1)
            } else {
                skip_quoted(cmd, at + 1)
            } {
                Some(end) => end,
                None => return Ok(None),
            };
        }
    }
    const CATENATE: &[u8] = b" CATENATE (";
    if !cmd
        .get(at..at + CATENATE.len())
        .is_some_and(|w| w.eq_ignore_ascii_case(CATENATE))
    {
        return Ok(None);
    }
    let keep = at;
    let mut i = at + CATENATE.len();
    let mut parts = Vec::new();
    loop {
        while cmd.get(i) == Some(&b' ') {
            i += 1;
        }
        match cmd.get(i) {
            Some(b')') => {
                i += 1;
                break;
            }
            None | Some(b'\r' | b'\n') => return Err("Unterminated CATENATE list".into()),
            _ => {}
        }
        let word_end = i + cmd[i..]
            .iter()
            .position(|&b| b == b' ')
            .ok_or("Bad CATENATE part")?;
        let word = &cmd[i..word_end];
        i = word_end + 1;
        if word.eq_ignore_ascii_case(b"TEXT") {
            let (bytes, end) = literal(cmd, i).ok_or("CATENATE TEXT needs a literal")?;
            parts.push(CatPart::Text(bytes.to_vec()));
            i = end;
        } else if word.eq_ignore_ascii_case(b"URL") {
            let (url, end) = astring(cmd, i).ok_or("Bad CATENATE URL")?;
            parts.push(CatPart::Url(String::from_utf8_lossy(&url).into_owned()));
            i = end;
        } else {
            return Err("Bad CATENATE part".into());
        }
    }
    if parts.is_empty() {
        return Err("Empty CATENATE list".into());
    }
    if !matches!(&cmd[i..], b"\r\n" | b"\n") {
        return Err("CATENATE is supported for a single message only".into());
    }
    let mut out = cmd[..keep].to_vec();
    out.extend_from_slice(b" {1}\r\nX\r\n");
    Ok(Some((out, parts)))
}

/// `{n}` / `{n+}` / `~{n}` CRLF and n octets at `at`: (bytes, index after them).
fn literal(cmd: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let at = if cmd.get(at) == Some(&b'~') {
        at + 1
    } else {
        at
    };
    if cmd.get(at) != Some(&b'{') {
        return None;
    }
    let close = at + memchr::memchr(b'}', &cmd[at..])?;
    let digits = std::str::from_utf8(&cmd[at + 1..close]).ok()?;
    let n: usize = digits.strip_suffix('+').unwrap_or(digits).parse().ok()?;
    let start = match cmd.get(close + 1..close + 3)? {
        b"\r\n" => close + 3,
        [b'\n', _] => close + 2,
        _ => return None,
    };
    let end = start.checked_add(n)?;
    Some((cmd.get(start..end)?, end))
}

/// An atom, quoted string or literal at `at`: (value, index after it).
fn astring(cmd: &[u8], at: usize) -> Option<(Cow<'_, [u8]>, usize)> {
    match cmd.get(at)? {
        b'"' => {
            let end = skip_quoted(cmd, at)?;
            let mut v = Vec::new();
            let mut escaped = false;
            for &b in &cmd[at + 1..end - 1] {
                if !escaped && b == b'\\' {
                    escaped = true;
                    continue;
                }
                escaped = false;
                v.push(b);
            }
            Some((Cow::Owned(v), end))
        }
        b'{' | b'~' => literal(cmd, at).map(|(v, end)| (Cow::Borrowed(v), end)),
        _ => {
            let end = at
                + cmd[at..]
                    .iter()
                    .position(|&b| matches!(b, b' ' | b')' | b'\r' | b'\n'))?;
            (end > at).then(|| (Cow::Borrowed(&cmd[at..end]), end))
        }
    }
}

fn skip_astring(cmd: &[u8], at: usize) -> Option<usize> {
    astring(cmd, at).map(|(_, end)| end)
}

/// Index after the quoted string whose opening quote is at `at`.
fn skip_quoted(cmd: &[u8], at: usize) -> Option<usize> {
    let mut i = at + 1;
    while i < cmd.len() {
        match cmd[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            b'\r' | b'\n' => return None,
            _ => i += 1,
        }
    }
    None
}

fn pct_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The parts of an IMAP URL CATENATE can use: (mailbox, UIDVALIDITY, UID, section).
fn parse_url(url: &str) -> Option<(String, Option<u32>, u32, Option<String>)> {
    let path = match url.get(..7) {
        Some(p) if p.eq_ignore_ascii_case("imap://") => &url[7 + url[7..].find('/')?..],
        _ => url,
    };
    let path = path.strip_prefix('/')?;
    let mut segments = path.split("/;");
    let first = segments.next()?;
    let (enc_name, params) = first.split_once(';').unwrap_or((first, ""));
    let uidvalidity = match params {
        "" => None,
        p => Some(strip_ci(p, "UIDVALIDITY=")?.parse().ok()?),
    };
    let uid: u32 = strip_ci(segments.next()?, "UID=")?.parse().ok()?;
    let section = match segments.next() {
        None => None,
        Some(s) => Some(pct_decode(strip_ci(s, "SECTION=")?)?),
    };
    if segments.next().is_some() || uid == 0 {
        return None;
    }
    Some((pct_decode(enc_name)?, uidvalidity, uid, section))
}

fn strip_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    (s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &s[prefix.len()..])
}

/// `1.2`, `HEADER`, `TEXT`, `1.MIME`, `1.HEADER`, `1.TEXT` as a section.
fn parse_section(s: &str) -> Option<SectionSpec> {
    let upper = s.to_ascii_uppercase();
    let mut path = Vec::new();
    let mut kind = SectionKind::Full;
    for (n, word) in upper.split('.').enumerate() {
        if kind != SectionKind::Full {
            return None;
        }
        match word.parse::<u32>() {
            Ok(p) if p > 0 && kind == SectionKind::Full => path.push(p),
            _ => {
                kind = match word {
                    "HEADER" => SectionKind::Header,
                    "TEXT" => SectionKind::Text,
                    "MIME" if n > 0 => SectionKind::Mime,
                    _ => return None,
                }
            }
        }
    }
    Some(SectionSpec { path, kind })
}

impl ImapSession {
    /// The message a CATENATE list describes; `Err(url)` names the first URL that does not
    /// resolve to a message (or part) of this account.
    pub(crate) fn catenated<S: MailStore>(
        &self,
        store: &S,
        parts: &[CatPart],
    ) -> Result<Vec<u8>, String> {
        let account = self.account.clone().unwrap_or_default();
        let mut message = Vec::new();
        for part in parts {
            match part {
                CatPart::Text(t) => message.extend_from_slice(t),
                CatPart::Url(url) => {
                    let data = self
                        .resolve_url(store, &account, url)
                        .ok_or_else(|| url.clone())?;
                    message.extend_from_slice(&data);
                }
            }
        }
        Ok(message)
    }

    fn resolve_url<S: MailStore>(&self, store: &S, account: &str, url: &str) -> Option<Vec<u8>> {
        let (name, uidvalidity, uid, section) = parse_url(url)?;
        // RFC 5092 mailbox names are modified UTF-7 for IMAP4rev1 servers' clients.
        let name = if self.rev2 {
            name
        } else {
            mutf7_decode(&name).unwrap_or(name)
        };
        let name = if name.eq_ignore_ascii_case("INBOX") {
            "INBOX".to_string()
        } else {
            name
        };
        if let Some(v) = uidvalidity
            && store.snapshot(account, &name).ok()?.uidvalidity != v
        {
            return None;
        }
        let raw = store.read(account, &name, uid).ok()?;
        let Some(section) = section else {
            return Some(raw);
        };
        let spec = parse_section(&section)?;
        let data = if spec.header_only() {
            section::extract_header(&raw, &spec).into_owned()
        } else {
            let root = mime::parse(&raw);
            section::extract(&raw, &root, &spec)?.into_owned()
        };
        Some(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut(cmd: &str) -> Result<Option<(String, Vec<CatPart>)>, String> {
        let verb_at = cmd.find(' ').unwrap() + 1;
        extract_catenate(cmd.as_bytes(), verb_at)
            .map(|o| o.map(|(c, p)| (String::from_utf8(c).unwrap(), p)))
    }

    #[test]
    fn catenate_list_is_cut_from_append() {
        assert_eq!(
            cut(
                "a APPEND Drafts (\\Seen) \"01-Jan-2024 00:00:00 +0000\" CATENATE (TEXT {3+}\r\nab) URL \"/INBOX;UIDVALIDITY=7/;UID=3/;SECTION=1.MIME\" URL /x/;UID=1)\r\n"
            ),
            Ok(Some((
                "a APPEND Drafts (\\Seen) \"01-Jan-2024 00:00:00 +0000\" {1}\r\nX\r\n".into(),
                vec![
                    CatPart::Text(b"ab)".to_vec()),
                    CatPart::Url("/INBOX;UIDVALIDITY=7/;UID=3/;SECTION=1.MIME".into()),
                    CatPart::Url("/x/;UID=1".into()),
                ]
            )))
        );
        assert_eq!(cut("a APPEND INBOX {3}\r\nabc\r\n"), Ok(None));
        assert_eq!(cut("a APPEND \"CATENATE (\" {3}\r\nabc\r\n"), Ok(None));
        for (bad, why) in [
            ("a APPEND INBOX CATENATE ()\r\n", "Empty CATENATE list"),
            (
                "a APPEND INBOX CATENATE (TEXT x)\r\n",
                "CATENATE TEXT needs a literal",
            ),
            (
                "a APPEND INBOX CATENATE (TEXT {9}\r\nab)\r\n",
                "CATENATE TEXT needs a literal",
            ),
            ("a APPEND INBOX CATENATE (FILE x)\r\n", "Bad CATENATE part"),
            (
                "a APPEND INBOX CATENATE (URL /x/;UID=1\r\n",
                "Unterminated CATENATE list",
            ),
            (
                "a APPEND INBOX CATENATE (URL /x/;UID=1) {1}\r\nx\r\n",
                "CATENATE is supported for a single message only",
            ),
        ] {
            assert_eq!(cut(bad), Err(why.into()), "{bad:?}");
        }
    }

    #[test]
    fn urls_and_sections() {
        assert_eq!(
            parse_url("imap://alice@host/Sent%20Items;UIDVALIDITY=9/;UID=4/;section=1.2.MIME"),
            Some(("Sent Items".into(), Some(9), 4, Some("1.2.MIME".into())))
        );
        assert_eq!(
            parse_url("/INBOX/;UID=2"),
            Some(("INBOX".into(), None, 2, None))
        );
        for bad in [
            "INBOX/;UID=2",
            "/INBOX/;UID=0",
            "/INBOX/;UID=x",
            "/INBOX;UIDVALIDITY=x/;UID=2",
            "/INBOX/;UID=2/;PARTIAL=0.5",
            "/INBOX%zz/;UID=2",
            "imap://host",
        ] {
            assert_eq!(parse_url(bad), None, "{bad}");
        }
        let s = |path: &[u32], kind| {
            Some(SectionSpec {
                path: path.to_vec(),
                kind,
            })
        };
        assert_eq!(parse_section("1.2"), s(&[1, 2], SectionKind::Full));
        assert_eq!(parse_section("header"), s(&[], SectionKind::Header));
        assert_eq!(parse_section("2.TEXT"), s(&[2], SectionKind::Text));
        assert_eq!(parse_section("1.MIME"), s(&[1], SectionKind::Mime));
        for bad in ["MIME", "0", "1.TEXT.2", "HEADER.FIELDS (A)", "1..2"] {
            assert_eq!(parse_section(bad), None, "{bad}");
        }
    }
}
