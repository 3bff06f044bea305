//! The MIME structure of a message as byte ranges into the raw message.
//!
//! IMAP needs exact octet ranges (BODY[1.2.MIME], sizes and line counts in BODYSTRUCTURE),
//! which mail-parser's part offsets do not give uniformly for nested messages, so the tree is
//! built here: boundaries are found on the raw bytes, and mail-parser is used only to decode
//! each part's header block (Content-Type / Content-Disposition parameters incl. RFC 2231,
//! addresses, encoded words).

use std::ops::Range;

use mail_parser::{MessageParser, MimeHeaders};

/// Maximum nesting of multiparts / encapsulated messages we descend into.
const MAX_DEPTH: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartKind {
    /// A leaf part (text, image, ...).
    Leaf,
    /// multipart/*: the children in order.
    Multipart(Vec<MimePart>),
    /// message/rfc822 (or global): the encapsulated message, whose `header` is the
    /// encapsulated message's header.
    Message(Box<MimePart>),
}

/// One MIME entity. For the root, `header` is the message header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MimePart {
    /// Header block including the blank line that ends it.
    pub header: Range<usize>,
    pub body: Range<usize>,
    /// Lower-case type and subtype.
    pub ctype: String,
    pub subtype: String,
    /// Content-Type parameters (names lower-cased, RFC 2231 decoded).
    pub params: Vec<(String, String)>,
    pub kind: PartKind,
}

impl MimePart {
    pub fn is_multipart(&self) -> bool {
        matches!(self.kind, PartKind::Multipart(_))
    }
}

/// Parse the structure of a whole message.
pub fn parse(raw: &[u8]) -> MimePart {
    parse_entity(raw, 0, raw.len(), false, 0)
}

/// Split `[start, end)` into its header block and body.
pub fn split_header(raw: &[u8], start: usize, end: usize) -> (Range<usize>, Range<usize>) {
    let s = &raw[start..end];
    // A part that starts with an empty line has no header.
    if s.starts_with(b"\r\n") {
        return (start..start + 2, start + 2..end);
    }
    if s.starts_with(b"\n") {
        return (start..start + 1, start + 1..end);
    }
    let mut i = 0;
    while let Some(nl) = memchr::memchr(b'\n', &s[i..]) {
        let next = i + nl + 1;
        match s.get(next) {
            Some(b'\n') => return (start..start + next + 1, start + next + 1..end),
            Some(b'\r') if s.get(next + 1) == Some(&b'\n') => {
                return (start..start + next + 2, start + next + 2..end);
            }
            _ => i = next,
        }
    }
    // No blank line: everything is header.
    (start..end, end..end)
}

fn parse_entity(raw: &[u8], start: usize, end: usize, digest: bool, depth: usize) -> MimePart {
    let (header, body) = split_header(raw, start, end);
    let hdr = HeaderInfo::parse(&raw[header.clone()]);
    let (mut ctype, mut subtype, params) = match hdr.content_type {
        Some(ct) => ct,
        None if digest => ("message".into(), "rfc822".into(), vec![]),
        None => (
            "text".into(),
            "plain".into(),
            vec![("charset".into(), "us-ascii".into())],
        ),
    };
    let mut kind = PartKind::Leaf;
    if depth < MAX_DEPTH {
        if ctype == "multipart" {
            let boundary = params
                .iter()
                .find(|(k, _)| k == "boundary")
                .map(|(_, v)| v.as_str());
            let children = boundary
                .filter(|b| !b.is_empty())
                .map(|b| split_multipart(raw, body.clone(), b.as_bytes()))
                .unwrap_or_default();
            if children.is_empty() {
                // Unparseable multipart: present it as text so BODYSTRUCTURE stays valid.
                ctype = "text".into();
                subtype = "plain".into();
            } else {
                let digest = subtype == "digest";
                kind = PartKind::Multipart(
                    children
                        .into_iter()
                        .map(|r| parse_entity(raw, r.start, r.end, digest, depth + 1))
                        .collect(),
                );
            }
        } else if ctype == "message" && (subtype == "rfc822" || subtype == "global") && !hdr.encoded
        {
            kind = PartKind::Message(Box::new(parse_entity(
                raw,
                body.start,
                body.end,
                false,
                depth + 1,
            )));
        }
    }
    MimePart {
        header,
        body,
        ctype,
        subtype,
        params,
        kind,
    }
}

/// Body ranges of the parts of a multipart body (CRLF before each delimiter excluded).
fn split_multipart(raw: &[u8], body: Range<usize>, boundary: &[u8]) -> Vec<Range<usize>> {
    let mut delim = b"--".to_vec();
    delim.extend_from_slice(boundary);
    let finder = memchr::memmem::Finder::new(&delim);
    let mut parts = Vec::new();
    let mut part_start: Option<usize> = None;
    let mut pos = body.start;
    while let Some(i) = finder.find(&raw[pos..body.end]) {
        let at = pos + i;
        let at_line_start = at == body.start || raw[at - 1] == b'\n';
        let after = at + delim.len();
        if !at_line_start {
            pos = at + 1;
            continue;
        }
        let close = raw[after..body.end].starts_with(b"--");
        // The delimiter line must end here (transport padding allowed).
        let line_end = memchr::memchr(b'\n', &raw[after..body.end])
            .map(|n| after + n + 1)
            .unwrap_or(body.end);
        let tail = &raw[after + if close { 2 } else { 0 }..line_end];
        if !tail.iter().all(|b| b.is_ascii_whitespace()) {
            pos = at + 1;
            continue;
        }
        if let Some(s) = part_start {
            let mut e = at;
            if e > s && raw[e - 1] == b'\n' {
                e -= 1;
                if e > s && raw[e - 1] == b'\r' {
                    e -= 1;
                }
            }
            parts.push(s..e.max(s));
        }
        if close {
            return parts;
        }
        part_start = Some(line_end);
        pos = line_end;
        if pos >= body.end {
            break;
        }
    }
    if let Some(s) = part_start {
        parts.push(s..body.end);
    }
    parts
}

/// (type, subtype, parameters).
pub type ContentType = (String, String, Vec<(String, String)>);

/// The decoded header fields IMAP needs from a part's header block.
#[derive(Debug, Default, Clone)]
pub struct HeaderInfo {
    /// (type, subtype, parameters), lower-cased names.
    pub content_type: Option<ContentType>,
    pub disposition: Option<(String, Vec<(String, String)>)>,
    /// Content-Transfer-Encoding is base64 or quoted-printable.
    pub encoded: bool,
}

impl HeaderInfo {
    pub fn parse(header: &[u8]) -> HeaderInfo {
        let mut info = HeaderInfo::default();
        if let Some(cte) = raw_field(header, "content-transfer-encoding") {
            let v = String::from_utf8_lossy(&cte).trim().to_ascii_lowercase();
            info.encoded = v == "base64" || v == "quoted-printable";
        }
        let wants_ct = raw_field(header, "content-type").is_some();
        let wants_cd = raw_field(header, "content-disposition").is_some();
        if !wants_ct && !wants_cd {
            return info;
        }
        let Some(msg) = MessageParser::default().parse_headers(header) else {
            return info;
        };
        let root = msg.root_part();
        if wants_ct && let Some(ct) = root.content_type() {
            let t = ct.ctype().to_ascii_lowercase();
            let sub = ct.subtype().map(|s| s.to_ascii_lowercase());
            if let Some(sub) = sub.filter(|s| !s.is_empty()) {
                let params = ct
                    .attributes()
                    .unwrap_or_default()
                    .iter()
                    .map(|a| (a.name.to_ascii_lowercase(), a.value.to_string()))
                    .collect();
                info.content_type = Some((t, sub, params));
            }
        }
        if wants_cd && let Some(cd) = root.content_disposition() {
            let params = cd
                .attributes()
                .unwrap_or_default()
                .iter()
                .map(|a| (a.name.to_ascii_lowercase(), a.value.to_string()))
                .collect();
            info.disposition = Some((cd.ctype().to_ascii_lowercase(), params));
        }
        info
    }
}

/// A header field: (name, whole field bytes incl. CRLF, raw value).
pub type Field<'a> = (&'a [u8], &'a [u8], &'a [u8]);

/// Iterate the fields of a header block: (name, whole field bytes incl. CRLF, raw value).
pub fn fields(header: &[u8]) -> Vec<Field<'_>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < header.len() {
        let start = i;
        // A field runs to the first LF not followed by WSP.
        let mut end = header.len();
        let mut j = i;
        while let Some(nl) = memchr::memchr(b'\n', &header[j..]) {
            let next = j + nl + 1;
            if next < header.len() && (header[next] == b' ' || header[next] == b'\t') {
                j = next;
                continue;
            }
            end = next;
            break;
        }
        let field = &header[start..end];
        i = end;
        if field == b"\r\n" || field == b"\n" {
            continue;
        }
        if let Some(colon) = memchr::memchr(b':', field) {
            let name = trim(&field[..colon]);
            out.push((name, field, &field[colon + 1..]));
        }
    }
    out
}

/// The unfolded, trimmed raw value of the first field `name` (case-insensitive).
pub fn raw_field(header: &[u8], name: &str) -> Option<Vec<u8>> {
    fields(header)
        .into_iter()
        .find(|(n, _, _)| n.eq_ignore_ascii_case(name.as_bytes()))
        .map(|(_, _, v)| unfold(v))
}

/// Remove CR/LF of folded lines and trim surrounding whitespace.
pub fn unfold(v: &[u8]) -> Vec<u8> {
    let v: Vec<u8> = v
        .iter()
        .copied()
        .filter(|&b| b != b'\r' && b != b'\n')
        .collect();
    trim(&v).to_vec()
}

fn trim(v: &[u8]) -> &[u8] {
    let s = v
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(v.len());
    let e = v
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(s, |e| e + 1);
    &v[s..e]
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub const NESTED: &[u8] = b"From: Alice <alice@example.org>\r\n\
Subject: nested\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"outer\"\r\n\
\r\n\
preamble\r\n\
--outer\r\n\
Content-Type: multipart/alternative; boundary=alt\r\n\
\r\n\
--alt\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
plain text\r\n\
--alt\r\n\
Content-Type: text/html\r\n\
\r\n\
<p>html</p>\r\n\
--alt--\r\n\
--outer\r\n\
Content-Type: message/rfc822\r\n\
\r\n\
From: Bob <bob@example.com>\r\n\
Subject: inner\r\n\
Content-Type: multipart/mixed; boundary=in\r\n\
\r\n\
--in\r\n\
\r\n\
inner one\r\n\
--in\r\n\
Content-Type: application/octet-stream\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
aGVsbG8=\r\n\
--in--\r\n\
--outer--\r\n\
epilogue\r\n";

    fn text<'a>(raw: &'a [u8], r: &Range<usize>) -> &'a str {
        std::str::from_utf8(&raw[r.clone()]).unwrap()
    }

    #[test]
    fn nested_structure() {
        let root = parse(NESTED);
        assert_eq!(
            (root.ctype.as_str(), root.subtype.as_str()),
            ("multipart", "mixed")
        );
        let PartKind::Multipart(ch) = &root.kind else {
            panic!()
        };
        assert_eq!(ch.len(), 2);
        let PartKind::Multipart(alt) = &ch[0].kind else {
            panic!()
        };
        assert_eq!(text(NESTED, &alt[0].body), "plain text");
        assert_eq!(text(NESTED, &alt[1].body), "<p>html</p>");
        assert_eq!(alt[0].params, vec![("charset".into(), "utf-8".into())]);
        let PartKind::Message(inner) = &ch[1].kind else {
            panic!()
        };
        assert!(text(NESTED, &inner.header).starts_with("From: Bob"));
        let PartKind::Multipart(inch) = &inner.kind else {
            panic!()
        };
        // A part without header defaults to text/plain.
        assert_eq!(inch[0].ctype, "text");
        assert_eq!(text(NESTED, &inch[0].body), "inner one");
        assert_eq!(text(NESTED, &inch[1].body), "aGVsbG8=");
    }

    #[test]
    fn missing_content_type_and_no_body() {
        let raw = b"Subject: x\r\n\r\nbody\r\n";
        let p = parse(raw);
        assert_eq!((p.ctype.as_str(), p.subtype.as_str()), ("text", "plain"));
        assert_eq!(text(raw, &p.body), "body\r\n");
        let raw = b"Subject: only header\r\n";
        let p = parse(raw);
        assert_eq!(p.body, raw.len()..raw.len());
    }

    #[test]
    fn broken_multipart_is_text() {
        let raw = b"Content-Type: multipart/mixed; boundary=zz\r\n\r\nno delimiters\r\n";
        let p = parse(raw);
        assert_eq!(p.ctype, "text");
        assert_eq!(p.kind, PartKind::Leaf);
    }

    #[test]
    fn rfc2231_params() {
        let raw = b"Content-Type: application/pdf;\r\n name*0*=utf-8''caf%C3%A9;\r\n name*1*=.pdf\r\n\r\nx";
        let p = parse(raw);
        assert_eq!(p.params, vec![("name".into(), "caf\u{e9}.pdf".into())]);
    }

    #[test]
    fn fields_unfold() {
        let h = b"Subject: a\r\n b\r\nX-Y: z\r\n\r\n";
        let f = fields(h);
        assert_eq!(f.len(), 2);
        assert_eq!(raw_field(h, "subject").unwrap(), b"a b");
        assert_eq!(raw_field(h, "x-y").unwrap(), b"z");
    }
}
