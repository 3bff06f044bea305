//! PREVIEW (RFC 8970): `FETCH n (PREVIEW)` and `PREVIEW (LAZY)`, a short plain-text summary of
//! the message for list views.
//!
//! The text comes from the MIME tree of [`super::mime`]: the first `text/plain` leaf that is not
//! an attachment, else the first `text/html` one with its markup dropped (mail-parser's
//! `html_to_text`, which also skips `<head>`, `<style>` and `<script>`). Encapsulated messages
//! are not entered: a forwarded message's words are not this message's. The body is decoded
//! (transfer encoding, then charset to UTF-8), quoted lines (`>`) and the signature after
//! `-- ` are left out of plain text, control characters and runs of white space become one
//! space, and the result is cut to [`PREVIEW_CHARS`] characters (RFC 8970 §3 allows 256).
//!
//! The preview is computed on every request, so `LAZY` (which lets a server answer NIL when
//! computing is expensive) gets the same answer.
//!
//! imap-codec does not parse the PREVIEW item: [`extract_preview`] cuts it out of a FETCH before
//! imap-codec sees the command, as `codec::extract_extras` does for other extensions.

use std::borrow::Cow;

use mail_parser::decoders::{charsets::map::charset_decoder, html::html_to_text};

use super::codec::{base64_decode, qp_decode};
use super::mime::{self, HeaderInfo, MimePart, PartKind};

/// Longest preview, in characters.
pub const PREVIEW_CHARS: usize = 200;

/// Encoded body bytes looked at: a preview needs the first lines, not a 40 MB attachment, but
/// HTML mail often starts with a long `<style>` block.
const MAX_SCAN: usize = 256 * 1024;

/// The PREVIEW fetch item of a FETCH command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreviewRequest {
    pub lazy: bool,
    /// PREVIEW was the only item: the command handed to imap-codec asks for UID in its place,
    /// which a plain FETCH must then not send.
    pub alone: bool,
}

/// The preview text of a whole message.
pub fn preview(raw: &[u8]) -> String {
    let root = mime::parse(raw);
    let (part, html) = match find_text(raw, &root, "plain") {
        Some(p) => (p, false),
        None => match find_text(raw, &root, "html") {
            Some(p) => (p, true),
            None => return String::new(),
        },
    };
    let text = decode_text(raw, part);
    if html {
        summarize(&html_to_text(&text), false)
    } else {
        summarize(&text, true)
    }
}

/// The first leaf of type `text/<subtype>` that is not an attachment, in document order.
fn find_text<'p>(raw: &[u8], part: &'p MimePart, subtype: &str) -> Option<&'p MimePart> {
    match &part.kind {
        PartKind::Leaf => {
            let attachment = HeaderInfo::parse(&raw[part.header.clone()])
                .disposition
                .is_some_and(|(d, _)| d == "attachment");
            (part.ctype == "text" && part.subtype == subtype && !attachment).then_some(part)
        }
        PartKind::Multipart(children) => children.iter().find_map(|c| find_text(raw, c, subtype)),
        PartKind::Message(_) => None,
    }
}

/// The part's body as UTF-8: transfer encoding undone, charset converted.
fn decode_text(raw: &[u8], part: &MimePart) -> String {
    let mut body = &raw[part.body.clone()];
    if body.len() > MAX_SCAN {
        // Cut at a line end so base64 stays in whole lines.
        let cut = memchr::memrchr(b'\n', &body[..MAX_SCAN]).map_or(MAX_SCAN, |i| i + 1);
        body = &body[..cut];
    }
    let cte = mime::raw_field(&raw[part.header.clone()], "content-transfer-encoding")
        .map(|v| String::from_utf8_lossy(&v).trim().to_ascii_lowercase())
        .unwrap_or_default();
    let bytes: Cow<'_, [u8]> = match cte.as_str() {
        "base64" => base64_decode(body).map_or(Cow::Borrowed(&[][..]), Cow::Owned),
        "quoted-printable" => Cow::Owned(qp_decode(body)),
        _ => Cow::Borrowed(body),
    };
    let charset = part
        .params
        .iter()
        .find(|(k, _)| k == "charset")
        .map(|(_, v)| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    match charset.as_str() {
        "" | "utf-8" | "utf8" | "us-ascii" => String::from_utf8_lossy(&bytes).into_owned(),
        other => match charset_decoder(other.as_bytes()) {
            Some(decode) => decode(&bytes),
            None => String::from_utf8_lossy(&bytes).into_owned(),
        },
    }
}

/// One line of at most [`PREVIEW_CHARS`] characters.
fn summarize(text: &str, plain: bool) -> String {
    let mut out = String::new();
    let mut chars = 0;
    let mut space = false;
    for line in text.lines() {
        if plain {
            // The RFC 3676 signature delimiter; quoted-printable decoding has already
            // dropped its trailing space (RFC 2045 §6.7 (3)).
            if line.trim_end() == "--" {
                break;
            }
            if line.starts_with('>') {
                continue;
            }
        }
        for ch in line.chars().chain([' ']) {
            if ch.is_whitespace() || ch.is_control() {
                space = !out.is_empty();
                continue;
            }
            if space {
                if chars + 1 >= PREVIEW_CHARS {
                    return out;
                }
                out.push(' ');
                chars += 1;
                space = false;
            }
            out.push(ch);
            chars += 1;
            if chars == PREVIEW_CHARS {
                return out;
            }
        }
    }
    out
}

/// Cut `PREVIEW` / `PREVIEW (LAZY)` out of a FETCH command. `items_at` is where the fetch
/// items start (after the sequence set). Returns the command to hand to imap-codec and the
/// request, or None when the command does not ask for PREVIEW.
pub fn extract_preview(
    cmd: &[u8],
    items_at: usize,
) -> Result<Option<(Vec<u8>, PreviewRequest)>, String> {
    if cmd.get(items_at) != Some(&b'(') {
        // A single item: `FETCH 1 PREVIEW`, `FETCH 1 PREVIEW (LAZY)`.
        let end = token_end(cmd, items_at);
        if !cmd[items_at..end].eq_ignore_ascii_case(b"PREVIEW") {
            return Ok(None);
        }
        let mut lazy = false;
        let mut rest = end;
        if cmd.get(end) == Some(&b' ') && cmd.get(end + 1) == Some(&b'(') {
            let close = group_end(cmd, end + 1).ok_or("Unbalanced parentheses")?;
            // `(LAZY)` belongs to PREVIEW; any other group is FETCH's modifiers.
            if let Some(l) = modifiers(&cmd[end + 2..close - 1])? {
                lazy = l;
                rest = close;
            }
        }
        let mut out = cmd[..items_at].to_vec();
        out.extend_from_slice(b"UID");
        out.extend_from_slice(&cmd[rest..]);
        return Ok(Some((out, PreviewRequest { lazy, alone: true })));
    }
    let close = group_end(cmd, items_at).ok_or("Unbalanced parentheses")?;
    let inner = &cmd[items_at + 1..close - 1];
    let tokens = split_top(inner);
    let mut kept: Vec<&[u8]> = Vec::new();
    let mut found = None;
    let mut i = 0;
    while i < tokens.len() {
        let t = tokens[i];
        if t.eq_ignore_ascii_case(b"PREVIEW") {
            let mut lazy = false;
            if let Some(next) = tokens.get(i + 1).filter(|n| n.starts_with(b"(")) {
                lazy = modifiers(&next[1..next.len() - 1])?.ok_or("Unknown PREVIEW modifier")?;
                i += 1;
            }
            found = Some(found.map_or(lazy, |l: bool| l && lazy));
        } else {
            kept.push(t);
        }
        i += 1;
    }
    let Some(lazy) = found else {
        return Ok(None);
    };
    let alone = kept.is_empty();
    let mut out = cmd[..items_at].to_vec();
    out.push(b'(');
    if alone {
        out.extend_from_slice(b"UID");
    }
    out.extend_from_slice(&kept.join(&b' '));
    out.push(b')');
    out.extend_from_slice(&cmd[close..]);
    Ok(Some((out, PreviewRequest { lazy, alone })))
}

/// PREVIEW modifiers: `Some(lazy)` when every word is one RFC 8970 defines (LAZY), `None` when
/// none is, an error when the list mixes them with unknown words.
fn modifiers(words: &[u8]) -> Result<Option<bool>, String> {
    let words: Vec<&[u8]> = words
        .split(|&b| b == b' ')
        .filter(|w| !w.is_empty())
        .collect();
    let lazy = words
        .iter()
        .filter(|w| w.eq_ignore_ascii_case(b"LAZY"))
        .count();
    if lazy == 0 {
        return Ok(None);
    }
    if lazy != words.len() {
        return Err("Unknown PREVIEW modifier".into());
    }
    Ok(Some(true))
}

/// End of an atom: space, CR, LF or the end.
pub(super) fn token_end(cmd: &[u8], at: usize) -> usize {
    cmd[at..]
        .iter()
        .position(|&b| matches!(b, b' ' | b'\r' | b'\n'))
        .map_or(cmd.len(), |p| at + p)
}

/// Index just past the `)` matching the `(` at `open` (quoted strings and `[...]` respected).
pub(super) fn group_end(cmd: &[u8], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut quoted = false;
    let mut escaped = false;
    for (i, &b) in cmd.iter().enumerate().skip(open) {
        if quoted {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => quoted = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => quoted = true,
            b'(' | b'[' => depth += 1,
            b')' | b']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            b'\r' | b'\n' => return None,
            _ => {}
        }
    }
    None
}

/// The space-separated items of a fetch list (nested groups stay whole).
pub(super) fn split_top(inner: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < inner.len() {
        match inner[i] {
            b' ' => {
                if i > start {
                    out.push(&inner[start..i]);
                }
                start = i + 1;
            }
            b'(' | b'[' => match group_end(inner, i) {
                Some(end) => i = end - 1,
                None => i = inner.len() - 1,
            },
            b'"' => {
                // Skip the quoted string (its escapes included).
                i += 1;
                while i < inner.len() && inner[i] != b'"' {
                    i += usize::from(inner[i] == b'\\') + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    if start < inner.len() {
        out.push(&inner[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut(cmd: &str) -> Result<Option<(String, PreviewRequest)>, String> {
        let items_at = cmd.find(" 1 ").map(|i| i + 3).unwrap();
        extract_preview(cmd.as_bytes(), items_at)
            .map(|o| o.map(|(c, r)| (String::from_utf8(c).unwrap(), r)))
    }

    #[test]
    fn preview_item_is_cut_from_fetch() {
        let req = |lazy, alone| PreviewRequest { lazy, alone };
        assert_eq!(
            cut("a FETCH 1 (PREVIEW)\r\n"),
            Ok(Some(("a FETCH 1 (UID)\r\n".into(), req(false, true))))
        );
        assert_eq!(
            cut("a FETCH 1 (FLAGS preview (lazy) BODY.PEEK[HEADER.FIELDS (SUBJECT \"X)\")])\r\n"),
            Ok(Some((
                "a FETCH 1 (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT \"X)\")])\r\n".into(),
                req(true, false)
            )))
        );
        assert_eq!(
            cut("a UID FETCH 1 PREVIEW (LAZY) (CHANGEDSINCE 4)\r\n"),
            Ok(Some((
                "a UID FETCH 1 UID (CHANGEDSINCE 4)\r\n".into(),
                req(true, true)
            )))
        );
        assert_eq!(
            cut("a FETCH 1 PREVIEW (CHANGEDSINCE 4)\r\n"),
            Ok(Some((
                "a FETCH 1 UID (CHANGEDSINCE 4)\r\n".into(),
                req(false, true)
            )))
        );
        assert_eq!(cut("a FETCH 1 (FLAGS UID)\r\n"), Ok(None));
        assert_eq!(cut("a FETCH 1 PREVIEWS\r\n"), Ok(None));
        // Hostile or wrong forms are refused, not guessed at.
        assert_eq!(
            cut("a FETCH 1 (PREVIEW (FUZZY))\r\n"),
            Err("Unknown PREVIEW modifier".into())
        );
        assert_eq!(
            cut("a FETCH 1 (PREVIEW (LAZY FUZZY))\r\n"),
            Err("Unknown PREVIEW modifier".into())
        );
        assert_eq!(
            cut("a FETCH 1 (PREVIEW\r\n"),
            Err("Unbalanced parentheses".into())
        );
        assert_eq!(
            cut("a FETCH 1 (PREVIEW))))\r\n"),
            Ok(Some(("a FETCH 1 (UID))))\r\n".into(), req(false, true))))
        );
    }

    #[test]
    fn plain_text_is_preferred_and_cleaned() {
        let msg = b"Subject: x\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n\
--b\r\nContent-Type: text/html\r\n\r\n<p>HTML version</p>\r\n\
--b\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
Hello   Bj=F6rn,\r\n\r\n> quoted reply\r\n\tsee\x01you =\r\nsoon.\r\n-- \r\nSignature\r\n\
--b--\r\n";
        assert_eq!(preview(msg), "Hello Bj\u{f6}rn, see you soon.");
    }

    #[test]
    fn html_is_stripped_when_there_is_no_plain_text() {
        let msg = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n\
--b\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename=a.txt\r\n\r\nattached\r\n\
--b\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n\
PGh0bWw+PGhlYWQ+PHN0eWxlPnAge2NvbG9yOnJlZH08L3N0eWxlPjwvaGVhZD48Ym9keT48cD5O\r\n\
w6RjaHN0ZXMgPGI+VHJlZmZlbjwvYj4gJmFtcDsgbWVocjwvcD48L2JvZHk+PC9odG1sPg==\r\n\
--b--\r\n";
        assert_eq!(preview(msg), "N\u{e4}chstes Treffen & mehr");
        // Nothing textual at all: the empty preview.
        assert_eq!(
            preview(
                b"Content-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw==\r\n"
            ),
            ""
        );
        // A forwarded message is not this message's text.
        assert_eq!(
            preview(b"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\ninner text\r\n"),
            ""
        );
    }

    #[test]
    fn long_text_is_cut_at_the_limit_in_characters() {
        let body = "\u{e9}t\u{e9} ".repeat(100);
        let msg = format!("Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n");
        let p = preview(msg.as_bytes());
        assert_eq!(p.chars().count(), PREVIEW_CHARS - 1);
        assert!(p.starts_with("\u{e9}t\u{e9} \u{e9}t\u{e9}"));
        assert!(!p.ends_with(' '));
        // No line breaks or control characters survive.
        let p = preview(b"\r\n line one\r\n\r\n\x1b[31mline two\t\r\n");
        assert_eq!(p, "line one [31mline two");
    }
}
