//! `BODY[section]<partial>` and `BINARY[section]` extraction (RFC 9051 §6.4.5).
//!
//! Part numbering: the top-level message acts as an encapsulating message; a non-multipart
//! message has only part 1 (its body); a message/rfc822 part's sub-parts are those of the
//! encapsulated message, and `HEADER`/`TEXT` after a part path refer to the encapsulated
//! message of a message/rfc822 part, while `MIME` is the part's own MIME header.

use std::borrow::Cow;

use imap_codec::imap_types::fetch::Section;

use super::codec::{base64_decode, qp_decode};
use super::mime::{self, MimePart, PartKind};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SectionKind {
    /// `BODY[]` (empty path) or `BODY[1.2]` (a part's body).
    Full,
    Header,
    HeaderFields(Vec<String>),
    HeaderFieldsNot(Vec<String>),
    Text,
    Mime,
}

/// A section specification independent of imap-types' borrowed types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionSpec {
    pub path: Vec<u32>,
    pub kind: SectionKind,
}

impl SectionSpec {
    pub fn from_imap(section: Option<&Section<'_>>) -> SectionSpec {
        let path_of = |p: Option<&imap_codec::imap_types::fetch::Part>| -> Vec<u32> {
            p.map(|p| p.0.as_ref().iter().map(|n| n.get()).collect())
                .unwrap_or_default()
        };
        let names = |v: &[imap_codec::imap_types::core::AString<'_>]| -> Vec<String> {
            v.iter()
                .map(|a| String::from_utf8_lossy(a.as_ref()).into_owned())
                .collect()
        };
        match section {
            None => SectionSpec {
                path: vec![],
                kind: SectionKind::Full,
            },
            Some(Section::Part(p)) => SectionSpec {
                path: path_of(Some(p)),
                kind: SectionKind::Full,
            },
            Some(Section::Header(p)) => SectionSpec {
                path: path_of(p.as_ref()),
                kind: SectionKind::Header,
            },
            Some(Section::HeaderFields(p, f)) => SectionSpec {
                path: path_of(p.as_ref()),
                kind: SectionKind::HeaderFields(names(f.as_ref())),
            },
            Some(Section::HeaderFieldsNot(p, f)) => SectionSpec {
                path: path_of(p.as_ref()),
                kind: SectionKind::HeaderFieldsNot(names(f.as_ref())),
            },
            Some(Section::Text(p)) => SectionSpec {
                path: path_of(p.as_ref()),
                kind: SectionKind::Text,
            },
            Some(Section::Mime(p)) => SectionSpec {
                path: path_of(Some(p)),
                kind: SectionKind::Mime,
            },
        }
    }

    /// The section text as echoed in the FETCH response, e.g. `1.2.HEADER.FIELDS (FROM TO)`.
    pub fn name(&self) -> String {
        let mut s: Vec<String> = self.path.iter().map(|n| n.to_string()).collect();
        // Field names are echoed as the client sent them (quoted if they are not atoms).
        let fields = |f: &[String]| {
            let mut out = Vec::new();
            for (i, name) in f.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                super::codec::write_astring(&mut out, name.as_bytes());
            }
            format!("({})", String::from_utf8_lossy(&out))
        };
        match &self.kind {
            SectionKind::Full => {}
            SectionKind::Header => s.push("HEADER".into()),
            SectionKind::HeaderFields(f) => s.push(format!("HEADER.FIELDS {}", fields(f))),
            SectionKind::HeaderFieldsNot(f) => s.push(format!("HEADER.FIELDS.NOT {}", fields(f))),
            SectionKind::Text => s.push("TEXT".into()),
            SectionKind::Mime => s.push("MIME".into()),
        }
        s.join(".")
    }

    /// True if this section needs only the header (no MIME parse of the body).
    pub fn header_only(&self) -> bool {
        self.path.is_empty()
            && matches!(
                self.kind,
                SectionKind::Header
                    | SectionKind::HeaderFields(_)
                    | SectionKind::HeaderFieldsNot(_)
            )
    }
}

/// Find the part a numeric path refers to.
pub fn find_part<'p>(root: &'p MimePart, path: &[u32]) -> Option<&'p MimePart> {
    let mut cur = root;
    for (i, &n) in path.iter().enumerate() {
        let container: &MimePart = if i == 0 {
            cur
        } else if let PartKind::Message(inner) = &cur.kind {
            inner
        } else if cur.is_multipart() {
            cur
        } else {
            return None;
        };
        cur = match &container.kind {
            PartKind::Multipart(children) => children.get(n.checked_sub(1)? as usize)?,
            _ if n == 1 => container,
            _ => return None,
        };
    }
    Some(cur)
}

/// Extract a section; `None` if the section does not exist (the response is then an empty
/// string, as other servers do).
pub fn extract<'a>(raw: &'a [u8], root: &MimePart, spec: &SectionSpec) -> Option<Cow<'a, [u8]>> {
    if spec.path.is_empty() {
        return Some(match &spec.kind {
            SectionKind::Full => raw.into(),
            SectionKind::Text => raw[root.body.clone()].into(),
            SectionKind::Mime => return None,
            _ => header_section(&raw[root.header.clone()], &spec.kind),
        });
    }
    let part = find_part(root, &spec.path)?;
    match &spec.kind {
        SectionKind::Full => Some(raw[part.body.clone()].into()),
        SectionKind::Mime => Some(raw[part.header.clone()].into()),
        SectionKind::Text => match &part.kind {
            PartKind::Message(inner) => Some(raw[inner.body.clone()].into()),
            _ => None,
        },
        kind => match &part.kind {
            PartKind::Message(inner) => Some(header_section(&raw[inner.header.clone()], kind)),
            _ => None,
        },
    }
}

/// Header-only extraction for the top-level message (no MIME parse needed).
pub fn extract_header(raw: &[u8], spec: &SectionSpec) -> Cow<'static, [u8]> {
    let (h, _) = mime::split_header(raw, 0, raw.len());
    Cow::Owned(header_section(&raw[h], &spec.kind).into_owned())
}

fn header_section<'a>(header: &'a [u8], kind: &SectionKind) -> Cow<'a, [u8]> {
    let (names, keep) = match kind {
        SectionKind::HeaderFields(n) => (n, true),
        SectionKind::HeaderFieldsNot(n) => (n, false),
        _ => return header.into(),
    };
    let mut out = Vec::new();
    for (name, field, _) in mime::fields(header) {
        let listed = names
            .iter()
            .any(|n| n.as_bytes().eq_ignore_ascii_case(name));
        if listed == keep {
            out.extend_from_slice(field);
            if !field.ends_with(b"\n") {
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    out.extend_from_slice(b"\r\n");
    out.into()
}

/// Apply `<start.length>`.
pub fn partial(data: &[u8], range: Option<(u32, u32)>) -> &[u8] {
    match range {
        None => data,
        Some((start, len)) => {
            let s = (start as usize).min(data.len());
            let e = s.saturating_add(len as usize).min(data.len());
            &data[s..e]
        }
    }
}

/// Errors of BINARY[].
#[derive(Debug, PartialEq, Eq)]
pub enum BinaryError {
    NoSuchPart,
    UnknownCte,
}

/// `BINARY[path]`: the decoded content of a part (the whole message for an empty path).
pub fn binary<'a>(
    raw: &'a [u8],
    root: &MimePart,
    path: &[u32],
) -> Result<Cow<'a, [u8]>, BinaryError> {
    if path.is_empty() {
        return Ok(raw.into());
    }
    let part = find_part(root, path).ok_or(BinaryError::NoSuchPart)?;
    let body = &raw[part.body.clone()];
    if part.is_multipart() {
        return Ok(body.into());
    }
    let cte = mime::raw_field(&raw[part.header.clone()], "content-transfer-encoding")
        .map(|v| v.to_ascii_lowercase())
        .unwrap_or_default();
    match cte.as_slice() {
        b"" | b"7bit" | b"8bit" | b"binary" => Ok(body.into()),
        b"base64" => base64_decode(body)
            .map(Cow::Owned)
            .ok_or(BinaryError::UnknownCte),
        b"quoted-printable" => Ok(qp_decode(body).into()),
        _ => Err(BinaryError::UnknownCte),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imap::mime::{parse, tests::NESTED};

    fn spec(path: &[u32], kind: SectionKind) -> SectionSpec {
        SectionSpec {
            path: path.to_vec(),
            kind,
        }
    }

    fn get(raw: &[u8], s: SectionSpec) -> Option<String> {
        let root = parse(raw);
        extract(raw, &root, &s).map(|c| String::from_utf8_lossy(&c).into_owned())
    }

    #[test]
    fn numeric_paths() {
        assert_eq!(
            get(NESTED, spec(&[1, 1], SectionKind::Full)).unwrap(),
            "plain text"
        );
        assert_eq!(
            get(NESTED, spec(&[1, 2], SectionKind::Full)).unwrap(),
            "<p>html</p>"
        );
        assert_eq!(
            get(NESTED, spec(&[2, 1], SectionKind::Full)).unwrap(),
            "inner one"
        );
        assert_eq!(
            get(NESTED, spec(&[2, 2], SectionKind::Full)).unwrap(),
            "aGVsbG8="
        );
        assert!(get(NESTED, spec(&[3], SectionKind::Full)).is_none());
        assert!(get(NESTED, spec(&[1, 1, 1], SectionKind::Full)).is_none());
        assert!(get(NESTED, spec(&[0], SectionKind::Full)).is_none());
        // The whole encapsulated message.
        assert!(
            get(NESTED, spec(&[2], SectionKind::Full))
                .unwrap()
                .starts_with("From: Bob")
        );
    }

    #[test]
    fn header_text_mime() {
        let h = get(NESTED, spec(&[2], SectionKind::Header)).unwrap();
        assert!(
            h.starts_with("From: Bob") && h.ends_with("boundary=in\r\n\r\n"),
            "{h}"
        );
        let t = get(NESTED, spec(&[2], SectionKind::Text)).unwrap();
        assert!(t.starts_with("--in\r\n"), "{t}");
        let m = get(NESTED, spec(&[1, 2], SectionKind::Mime)).unwrap();
        assert_eq!(m, "Content-Type: text/html\r\n\r\n");
        assert!(get(NESTED, spec(&[1, 1], SectionKind::Text)).is_none());
        let top = get(NESTED, spec(&[], SectionKind::Text)).unwrap();
        assert!(top.starts_with("preamble"));
    }

    #[test]
    fn header_fields() {
        let f = get(
            NESTED,
            spec(
                &[],
                SectionKind::HeaderFields(vec!["subject".into(), "FROM".into()]),
            ),
        )
        .unwrap();
        assert_eq!(
            f,
            "From: Alice <alice@example.org>\r\nSubject: nested\r\n\r\n"
        );
        let f = get(
            NESTED,
            spec(
                &[],
                SectionKind::HeaderFieldsNot(vec!["content-type".into(), "mime-version".into()]),
            ),
        )
        .unwrap();
        assert_eq!(
            f,
            "From: Alice <alice@example.org>\r\nSubject: nested\r\n\r\n"
        );
        let f = get(
            NESTED,
            spec(&[2], SectionKind::HeaderFields(vec!["subject".into()])),
        )
        .unwrap();
        assert_eq!(f, "Subject: inner\r\n\r\n");
        // Missing field: just the blank line.
        let f = get(
            NESTED,
            spec(&[], SectionKind::HeaderFields(vec!["x-none".into()])),
        )
        .unwrap();
        assert_eq!(f, "\r\n");
        let s = spec(
            &[1, 2],
            SectionKind::HeaderFieldsNot(vec!["a".into(), "b".into()]),
        );
        assert_eq!(s.name(), "1.2.HEADER.FIELDS.NOT (a b)");
    }

    #[test]
    fn single_part_numbering_and_partial() {
        let raw = b"Subject: s\r\n\r\n0123456789";
        assert_eq!(
            get(raw, spec(&[1], SectionKind::Full)).unwrap(),
            "0123456789"
        );
        assert!(get(raw, spec(&[2], SectionKind::Full)).is_none());
        assert_eq!(partial(b"0123456789", Some((2, 3))), b"234");
        assert_eq!(partial(b"0123456789", Some((8, 30))), b"89");
        assert_eq!(partial(b"0123456789", Some((30, 3))), b"");
        assert_eq!(
            extract_header(raw, &spec(&[], SectionKind::Header)).as_ref(),
            b"Subject: s\r\n\r\n"
        );
    }

    #[test]
    fn binary_decodes() {
        let root = parse(NESTED);
        assert_eq!(binary(NESTED, &root, &[2, 2]).unwrap().as_ref(), b"hello");
        assert_eq!(binary(NESTED, &root, &[9]), Err(BinaryError::NoSuchPart));
        let raw = b"Content-Transfer-Encoding: x-uuencode\r\n\r\nbegin";
        let root = parse(raw);
        assert_eq!(binary(raw, &root, &[1]), Err(BinaryError::UnknownCte));
    }
}
