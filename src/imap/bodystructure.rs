//! ENVELOPE, BODY and BODYSTRUCTURE (RFC 9051 §7.5.2) from the raw message.
//!
//! String fields (date, subject, message-id, Content-ID, ...) are the raw header values,
//! unfolded, as the RFC asks; addresses are split by mail-parser and display names that are
//! not ASCII are sent as RFC 2047 encoded words so the response stays 7-bit. Sizes and line
//! counts are taken from the raw byte ranges of [`super::mime`].

use mail_parser::{Address, MessageParser};

use super::codec::{write_nstring, write_string};
use super::mime::{self, HeaderInfo, MimePart, PartKind};
use crate::imap_w;
use crate::net::sasl::encode_base64;

/// Write the ENVELOPE of a message (or encapsulated message) given its header block.
pub fn write_envelope(out: &mut Vec<u8>, header: &[u8]) {
    let parsed = MessageParser::default().parse_headers(header);
    let field = |name: &str| mime::raw_field(header, name);
    out.push(b'(');
    write_nstring(out, field("date").as_deref());
    out.push(b' ');
    write_nstring(out, field("subject").as_deref());
    let addr = |out: &mut Vec<u8>, a: Option<&Address>| {
        out.push(b' ');
        write_addresses(out, a);
    };
    let msg = parsed.as_ref();
    let from = msg.and_then(|m| m.from());
    addr(out, from);
    addr(out, msg.and_then(|m| m.sender()).or(from));
    addr(out, msg.and_then(|m| m.reply_to()).or(from));
    addr(out, msg.and_then(|m| m.to()));
    addr(out, msg.and_then(|m| m.cc()));
    addr(out, msg.and_then(|m| m.bcc()));
    out.push(b' ');
    write_nstring(out, field("in-reply-to").as_deref());
    out.push(b' ');
    write_nstring(out, field("message-id").as_deref());
    out.push(b')');
}

fn write_addresses(out: &mut Vec<u8>, a: Option<&Address>) {
    let Some(a) = a else {
        out.extend_from_slice(b"NIL");
        return;
    };
    let start = out.len();
    out.push(b'(');
    match a {
        Address::List(list) => {
            for addr in list {
                write_address(out, addr.name.as_deref(), addr.address.as_deref());
            }
        }
        Address::Group(groups) => {
            for g in groups {
                if let Some(name) = &g.name {
                    // Start of group: (NIL NIL "name" NIL)
                    out.extend_from_slice(b"(NIL NIL ");
                    write_string(out, name.as_bytes());
                    out.extend_from_slice(b" NIL)");
                    // mail-parser keeps a lone comment in a group (`g: (note) ;`) as an entry
                    // without an address: it is not a member (RFC 5322 §3.4, CFWS).
                    for addr in g.addresses.iter().filter(|a| a.address.is_some()) {
                        write_address(out, addr.name.as_deref(), addr.address.as_deref());
                    }
                    out.extend_from_slice(b"(NIL NIL NIL NIL)");
                } else {
                    for addr in &g.addresses {
                        write_address(out, addr.name.as_deref(), addr.address.as_deref());
                    }
                }
            }
        }
    }
    if out.len() == start + 1 {
        out.truncate(start);
        out.extend_from_slice(b"NIL");
    } else {
        out.push(b')');
    }
}

fn write_address(out: &mut Vec<u8>, name: Option<&str>, address: Option<&str>) {
    out.push(b'(');
    match name.filter(|n| !n.is_empty()) {
        Some(n) if n.is_ascii() => write_string(out, n.as_bytes()),
        Some(n) => write_string(
            out,
            format!("=?utf-8?b?{}?=", encode_base64(n.as_bytes())).as_bytes(),
        ),
        None => out.extend_from_slice(b"NIL"),
    }
    // An obsolete source route (`<@relay1,@relay2:user@domain>`, RFC 5322 §4.4) goes in the
    // adl field; the mailbox and host come from what follows the colon.
    let (adl, address) = match address {
        Some(a) if a.starts_with('@') => match a.split_once(':') {
            Some((route, rest)) => (Some(route), Some(rest)),
            None => (None, Some(a)),
        },
        other => (None, other),
    };
    out.push(b' ');
    write_nstring(out, adl.map(str::as_bytes));
    out.push(b' ');
    match address {
        Some(a) => match a.rfind('@') {
            Some(at) => {
                write_string(out, &a.as_bytes()[..at]);
                out.push(b' ');
                write_string(out, &a.as_bytes()[at + 1..]);
            }
            None => {
                write_string(out, a.as_bytes());
                out.extend_from_slice(b" \"\"");
            }
        },
        None => out.extend_from_slice(b"NIL \"\""),
    }
    out.push(b')');
}

/// Write BODY (`extended = false`) or BODYSTRUCTURE (`extended = true`) of a part.
pub fn write_body(out: &mut Vec<u8>, raw: &[u8], part: &MimePart, extended: bool) {
    let header = &raw[part.header.clone()];
    out.push(b'(');
    match &part.kind {
        PartKind::Multipart(children) => {
            for c in children {
                write_body(out, raw, c, extended);
            }
            out.push(b' ');
            write_string(out, part.subtype.to_ascii_uppercase().as_bytes());
            if extended {
                out.push(b' ');
                write_params(out, &part.params);
                write_extension_tail(out, header);
            }
        }
        kind => {
            write_string(out, part.ctype.to_ascii_uppercase().as_bytes());
            out.push(b' ');
            write_string(out, part.subtype.to_ascii_uppercase().as_bytes());
            out.push(b' ');
            write_params(out, &part.params);
            out.push(b' ');
            write_nstring(out, mime::raw_field(header, "content-id").as_deref());
            out.push(b' ');
            write_nstring(
                out,
                mime::raw_field(header, "content-description").as_deref(),
            );
            out.push(b' ');
            let enc = mime::raw_field(header, "content-transfer-encoding")
                .map(|e| e.to_ascii_uppercase())
                .unwrap_or_else(|| b"7BIT".to_vec());
            write_string(out, &enc);
            let body = &raw[part.body.clone()];
            imap_w!(out, " {}", body.len());
            // Lines of text: LFs, plus a final line without one (inside a multipart the CRLF
            // before the boundary belongs to the boundary).
            let lines = memchr::memchr_iter(b'\n', body).count()
                + usize::from(!body.is_empty() && !body.ends_with(b"\n"));
            if let PartKind::Message(inner) = kind {
                out.push(b' ');
                write_envelope(out, &raw[inner.header.clone()]);
                out.push(b' ');
                write_body(out, raw, inner, extended);
                imap_w!(out, " {lines}");
            } else if part.ctype == "text" {
                imap_w!(out, " {lines}");
            }
            if extended {
                out.push(b' ');
                write_nstring(out, mime::raw_field(header, "content-md5").as_deref());
                write_extension_tail(out, header);
            }
        }
    }
    out.push(b')');
}

/// ` disposition language location` (shared by single parts and multiparts).
fn write_extension_tail(out: &mut Vec<u8>, header: &[u8]) {
    out.push(b' ');
    let info = HeaderInfo::parse(header);
    match info.disposition {
        Some((d, params)) => {
            out.push(b'(');
            write_string(out, d.to_ascii_uppercase().as_bytes());
            out.push(b' ');
            write_params(out, &params);
            out.push(b')');
        }
        None => out.extend_from_slice(b"NIL"),
    }
    out.push(b' ');
    match mime::raw_field(header, "content-language") {
        Some(l) => {
            let langs: Vec<&[u8]> = l
                .split(|&b| b == b',')
                .map(|s| s.trim_ascii())
                .filter(|s| !s.is_empty())
                .collect();
            match langs.as_slice() {
                [] => out.extend_from_slice(b"NIL"),
                [one] => write_string(out, one),
                many => {
                    out.push(b'(');
                    for (i, l) in many.iter().enumerate() {
                        if i > 0 {
                            out.push(b' ');
                        }
                        write_string(out, l);
                    }
                    out.push(b')');
                }
            }
        }
        None => out.extend_from_slice(b"NIL"),
    }
    out.push(b' ');
    write_nstring(out, mime::raw_field(header, "content-location").as_deref());
}

fn write_params(out: &mut Vec<u8>, params: &[(String, String)]) {
    if params.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for (i, (k, v)) in params.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        write_string(out, k.to_ascii_uppercase().as_bytes());
        out.push(b' ');
        write_string(out, v.as_bytes());
    }
    out.push(b')');
}

/// ENVELOPE, BODY and BODYSTRUCTURE rendered once per message (see [`super::fetch`]'s cache).
#[derive(Debug, Clone)]
pub struct RenderedStructure {
    pub envelope: Vec<u8>,
    pub body: Vec<u8>,
    pub bodystructure: Vec<u8>,
}

impl RenderedStructure {
    pub fn render(raw: &[u8]) -> RenderedStructure {
        let root = mime::parse(raw);
        let mut envelope = Vec::new();
        write_envelope(&mut envelope, &raw[root.header.clone()]);
        let mut body = Vec::new();
        write_body(&mut body, raw, &root, false);
        let mut bodystructure = Vec::new();
        write_body(&mut bodystructure, raw, &root, true);
        RenderedStructure {
            envelope,
            body,
            bodystructure,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imap::mime::tests::NESTED;

    fn s(v: &[u8]) -> String {
        String::from_utf8_lossy(v).into_owned()
    }

    #[test]
    fn simple_envelope() {
        let raw = b"Date: Mon, 7 Feb 1994 21:52:25 -0800\r\n\
From: Fred Foobar <foobar@Blurdybloop.example>\r\n\
Subject: afternoon meeting\r\n\
To: mooch@owatagu.siam.edu.example\r\n\
Message-Id: <B27397-0100000@Blurdybloop.example>\r\n\
\r\n\
Hello Joe, do you think we can meet at 3:30 tomorrow?\r\n";
        let r = RenderedStructure::render(raw);
        assert_eq!(
            s(&r.envelope),
            "(\"Mon, 7 Feb 1994 21:52:25 -0800\" \"afternoon meeting\" \
((\"Fred Foobar\" NIL \"foobar\" \"Blurdybloop.example\")) \
((\"Fred Foobar\" NIL \"foobar\" \"Blurdybloop.example\")) \
((\"Fred Foobar\" NIL \"foobar\" \"Blurdybloop.example\")) \
((NIL NIL \"mooch\" \"owatagu.siam.edu.example\")) NIL NIL NIL \
\"<B27397-0100000@Blurdybloop.example>\")"
        );
        assert_eq!(
            s(&r.bodystructure),
            "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 55 1 NIL NIL NIL NIL)"
        );
        assert_eq!(
            s(&r.body),
            "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 55 1)"
        );
    }

    #[test]
    fn nested_bodystructure() {
        let r = RenderedStructure::render(NESTED);
        let bs = s(&r.bodystructure);
        assert!(bs.starts_with("(((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"utf-8\") NIL NIL \"7BIT\" 10 1 NIL NIL NIL NIL)"), "{bs}");
        assert!(
            bs.contains("\"ALTERNATIVE\" (\"BOUNDARY\" \"alt\") NIL NIL NIL)"),
            "{bs}"
        );
        // The encapsulated message carries its envelope and structure.
        assert!(
            bs.contains("(\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\""),
            "{bs}"
        );
        assert!(
            bs.contains("\"inner\" ((\"Bob\" NIL \"bob\" \"example.com\"))"),
            "{bs}"
        );
        assert!(
            bs.contains(
                "(\"APPLICATION\" \"OCTET-STREAM\" NIL NIL NIL \"BASE64\" 8 NIL NIL NIL NIL)"
            ),
            "{bs}"
        );
        assert!(
            bs.ends_with("\"MIXED\" (\"BOUNDARY\" \"outer\") NIL NIL NIL)"),
            "{bs}"
        );
        // Parenthesis balance.
        let depth = bs
            .bytes()
            .fold(0i32, |d, b| d + (b == b'(') as i32 - (b == b')') as i32);
        assert_eq!(depth, 0);
    }

    #[test]
    fn encoded_words_groups_and_8bit() {
        let raw = "From: =?iso-8859-1?q?Andr=E9?= <andre@example.fr>\r\n\
To: undisclosed:;\r\n\
Cc: Team: a@x.org, b@y.org;\r\n\
Subject: =?utf-8?b?w6l0w6k=?=\r\n\
X-Raw: caf\u{e9}\r\n\
Content-Type: text/plain; charset=\"iso-8859-1\"\r\n\
Content-Disposition: attachment; filename*=utf-8''r%C3%A9sum%C3%A9.txt\r\n\
Content-Language: en, fr\r\n\
\r\n\
x\r\n";
        let r = RenderedStructure::render(raw.as_bytes());
        let env = s(&r.envelope);
        // Subject stays raw (encoded word), name re-encoded as UTF-8 encoded word.
        assert!(env.contains("\"=?utf-8?b?w6l0w6k=?=\""), "{env}");
        assert!(
            env.contains("((\"=?utf-8?b?QW5kcsOp?=\" NIL \"andre\" \"example.fr\"))"),
            "{env}"
        );
        assert!(env.contains("((NIL NIL \"Team\" NIL)(NIL NIL \"a\" \"x.org\")(NIL NIL \"b\" \"y.org\")(NIL NIL NIL NIL))"), "{env}");
        let bs = s(&r.bodystructure);
        assert!(bs.contains("(\"ATTACHMENT\" (\"FILENAME\" {"), "{bs}");
        assert!(bs.contains("(\"en\" \"fr\")"), "{bs}");
    }

    #[test]
    fn group_comments_and_source_routes() {
        let raw = "From: <@relay.example,@hop.example:joe@example.org>\r\n\
To: group1: a@x.org;, group2: (foo) ;, Name (comment) <b@y.org>\r\n\
Cc: <@route.example:c@z.org>, \"Quoted\" <d@w.org>\r\n\
\r\n\
x\r\n";
        let r = RenderedStructure::render(raw.as_bytes());
        let env = s(&r.envelope);
        let from = "((NIL \"@relay.example,@hop.example\" \"joe\" \"example.org\"))";
        let to = "((NIL NIL \"group1\" NIL)(NIL NIL \"a\" \"x.org\")(NIL NIL NIL NIL)\
(NIL NIL \"group2\" NIL)(NIL NIL NIL NIL)\
(\"Name (comment)\" NIL \"b\" \"y.org\"))";
        let cc = "((NIL \"@route.example\" \"c\" \"z.org\")(\"Quoted\" NIL \"d\" \"w.org\"))";
        assert_eq!(
            env,
            format!("(NIL NIL {from} {from} {from} {to} {cc} NIL NIL NIL)")
        );
    }

    #[test]
    fn mixed_inside_alternative_with_8bit_subject() {
        let raw = "Subject: R\u{e9}sum\u{e9} \u{2014} 8-bit\r\n\
From: \"Last, First\" <first.last@example.org>\r\n\
Content-Type: multipart/alternative; boundary=\"=_alt\"\r\n\
\r\n\
--=_alt\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: 8bit\r\n\
\r\n\
line one\r\n\
line two\r\n\
--=_alt\r\n\
Content-Type: multipart/mixed; boundary=mix\r\n\
\r\n\
--mix\r\n\
Content-Type: text/html; charset=utf-8\r\n\
\r\n\
<b>hi</b>\r\n\
--mix\r\n\
Content-Type: image/png; name=\"dot.png\"\r\n\
Content-Disposition: inline; filename=\"dot.png\"\r\n\
Content-ID: <dot@x>\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
iVBORw0KGgo=\r\n\
--mix--\r\n\
--=_alt--\r\n";
        let r = RenderedStructure::render(raw.as_bytes());
        let env = s(&r.envelope);
        // 8-bit subject goes out as a literal, byte for byte.
        assert!(env.starts_with("(NIL {18}\r\nR\u{e9}sum\u{e9} \u{2014} 8-bit ((\"Last, First\" NIL \"first.last\" \"example.org\"))"), "{env}");
        let bs = s(&r.bodystructure);
        assert!(bs.starts_with("((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"utf-8\") NIL NIL \"8BIT\" 18 2 NIL NIL NIL NIL)"), "{bs}");
        assert!(
            bs.contains(
                "((\"TEXT\" \"HTML\" (\"CHARSET\" \"utf-8\") NIL NIL \"7BIT\" 9 1 NIL NIL NIL NIL)"
            ),
            "{bs}"
        );
        assert!(bs.contains("(\"IMAGE\" \"PNG\" (\"NAME\" \"dot.png\") \"<dot@x>\" NIL \"BASE64\" 12 NIL (\"INLINE\" (\"FILENAME\" \"dot.png\")) NIL NIL)"), "{bs}");
        assert!(
            bs.contains(" \"MIXED\" (\"BOUNDARY\" \"mix\") NIL NIL NIL)"),
            "{bs}"
        );
        assert!(
            bs.ends_with(" \"ALTERNATIVE\" (\"BOUNDARY\" \"=_alt\") NIL NIL NIL)"),
            "{bs}"
        );
        let b = s(&r.body);
        assert_eq!(
            b,
            "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"utf-8\") NIL NIL \"8BIT\" 18 2)\
((\"TEXT\" \"HTML\" (\"CHARSET\" \"utf-8\") NIL NIL \"7BIT\" 9 1)\
(\"IMAGE\" \"PNG\" (\"NAME\" \"dot.png\") \"<dot@x>\" NIL \"BASE64\" 12) \"MIXED\") \"ALTERNATIVE\")"
        );
    }

    #[test]
    fn message_without_header_fields() {
        let r = RenderedStructure::render(b"\r\nbody only\r\n");
        assert_eq!(s(&r.envelope), "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
    }
}
