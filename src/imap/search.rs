//! SEARCH evaluation (RFC 9051 §6.4.4) over one message at a time.
//!
//! Flag, size, date, UID and sequence keys use only the index metadata; header keys load and
//! decode the header (mail-parser decodes RFC 2047 words, so `SUBJECT café` finds
//! `=?utf-8?q?caf=C3=A9?=`); BODY/TEXT decode the MIME parts (transfer encoding and charset)
//! to UTF-8. All string matching is substring matching of i;unicode-casemap keys (I18NLEVEL=1,
//! see [`super::i18nlevel`]): case, accents' encoding and compatibility forms do not matter. The message bytes are
//! loaded at most once per message, and only if a key needs them.

use super::objectid::ExtensionKey;
use imap_codec::imap_types::search::SearchKey;
use mail_parser::{HeaderValue, MessageParser, PartType};

use super::codec::{days_from_civil, days_from_iso};
use super::i18nlevel::casemap;
use super::mime;
use super::sequence;
use crate::store::{MessageMeta, SystemFlags};

/// One message being searched.
pub struct SearchMessage<'a> {
    pub msn: u32,
    pub meta: &'a MessageMeta,
    /// Number of messages in the view (`*` for sequence numbers).
    pub exists: u32,
    /// Highest UID in the view (`*` for UIDs).
    pub max_uid: u32,
    /// `\Recent` in this session (session state, not in `meta`).
    pub recent: bool,
    loader: &'a mut dyn FnMut(u32) -> Option<Vec<u8>>,
    raw: Option<Option<Vec<u8>>>,
    body_text: Option<String>,
    header_text: Option<String>,
}

impl<'a> SearchMessage<'a> {
    pub fn new(
        msn: u32,
        meta: &'a MessageMeta,
        exists: u32,
        max_uid: u32,
        loader: &'a mut dyn FnMut(u32) -> Option<Vec<u8>>,
    ) -> Self {
        SearchMessage {
            msn,
            meta,
            exists,
            max_uid,
            recent: false,
            loader,
            raw: None,
            body_text: None,
            header_text: None,
        }
    }

    fn raw(&mut self) -> Option<&[u8]> {
        if self.raw.is_none() {
            self.raw = Some((self.loader)(self.meta.uid));
        }
        self.raw.as_ref().and_then(|r| r.as_deref())
    }

    fn header(&mut self) -> Option<&[u8]> {
        let raw = self.raw()?;
        let (h, _) = mime::split_header(raw, 0, raw.len());
        Some(&raw[h])
    }

    /// Case-mapped decoded text of all text parts (recursively through message/rfc822).
    fn body_text(&mut self) -> &str {
        if self.body_text.is_none() {
            let mut text = String::new();
            if let Some(raw) = self.raw()
                && let Some(msg) = MessageParser::default().parse(raw)
            {
                collect_text(&msg, &mut text, 0);
            }
            self.body_text = Some(casemap(&text));
        }
        self.body_text.as_deref().unwrap_or("")
    }

    /// Case-mapped raw header plus the decoded value of every field (for TEXT).
    fn header_text(&mut self) -> &str {
        if self.header_text.is_none() {
            let mut text = String::new();
            if let Some(header) = self.header() {
                text.push_str(&String::from_utf8_lossy(header));
                if let Some(msg) = MessageParser::default().parse_headers(header) {
                    for h in msg.root_part().headers() {
                        text.push('\n');
                        value_text(&h.value, &mut text);
                    }
                }
            }
            self.header_text = Some(casemap(&text));
        }
        self.header_text.as_deref().unwrap_or("")
    }

    /// Raw and decoded values of the header fields named `name`, case-mapped.
    fn header_values(&mut self, name: &str) -> Vec<String> {
        let Some(header) = self.header() else {
            return vec![];
        };
        let mut out: Vec<String> = mime::fields(header)
            .into_iter()
            .filter(|(n, _, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, _, v)| casemap(&String::from_utf8_lossy(&mime::unfold(v))))
            .collect();
        if out.is_empty() {
            return out;
        }
        if let Some(msg) = MessageParser::default().parse_headers(header) {
            for h in msg.root_part().headers() {
                if h.name.as_str().eq_ignore_ascii_case(name) {
                    let mut s = String::new();
                    value_text(&h.value, &mut s);
                    out.push(casemap(&s));
                }
            }
        }
        out
    }

    fn sent_day(&mut self) -> Option<i64> {
        let header = self.header()?;
        let msg = MessageParser::default().parse_headers(header)?;
        let d = msg.date()?;
        Some(days_from_civil(
            i64::from(d.year),
            u32::from(d.month),
            u32::from(d.day),
        ))
    }
}

fn collect_text(msg: &mail_parser::Message<'_>, out: &mut String, depth: usize) {
    for part in &msg.parts {
        match &part.body {
            PartType::Text(t) | PartType::Html(t) => {
                out.push_str(t);
                out.push('\n');
            }
            PartType::Message(m) if depth < 8 => collect_text(m, out, depth + 1),
            _ => {}
        }
    }
}

fn value_text(v: &HeaderValue<'_>, out: &mut String) {
    match v {
        HeaderValue::Text(t) => out.push_str(t),
        HeaderValue::TextList(l) => {
            for t in l {
                out.push_str(t);
                out.push(' ');
            }
        }
        HeaderValue::Address(a) => {
            for addr in a.iter() {
                if let Some(n) = &addr.name {
                    out.push_str(n);
                    out.push(' ');
                }
                if let Some(x) = &addr.address {
                    out.push('<');
                    out.push_str(x);
                    out.push_str("> ");
                }
            }
        }
        _ => {}
    }
}

fn astr(a: &impl AsRef<[u8]>) -> String {
    casemap(&String::from_utf8_lossy(a.as_ref()))
}

pub(super) fn day_of(date: &impl std::fmt::Debug) -> i64 {
    // imap-types' NaiveDate debug-prints chrono's `YYYY-MM-DD`.
    days_from_iso(&format!("{date:?}")).unwrap_or(0)
}

fn has(meta: &MessageMeta, flag: u8) -> bool {
    meta.flags.system.0 & flag != 0
}

/// Does the message match the key?
pub fn matches(key: &SearchKey<'_>, m: &mut SearchMessage<'_>) -> bool {
    let meta = m.meta;
    match key {
        SearchKey::And(keys) => keys.as_ref().iter().all(|k| matches(k, m)),
        SearchKey::Or(a, b) => matches(a, m) || matches(b, m),
        SearchKey::Not(k) => !matches(k, m),
        SearchKey::SequenceSet(set) => sequence::contains(set, m.msn, m.exists),
        SearchKey::Uid(set) => sequence::contains(set, meta.uid, m.max_uid),
        SearchKey::All => true,
        SearchKey::Answered => has(meta, SystemFlags::ANSWERED),
        SearchKey::Unanswered => !has(meta, SystemFlags::ANSWERED),
        SearchKey::Deleted => has(meta, SystemFlags::DELETED),
        SearchKey::Undeleted => !has(meta, SystemFlags::DELETED),
        SearchKey::Draft => has(meta, SystemFlags::DRAFT),
        SearchKey::Undraft => !has(meta, SystemFlags::DRAFT),
        SearchKey::Flagged => has(meta, SystemFlags::FLAGGED),
        SearchKey::Unflagged => !has(meta, SystemFlags::FLAGGED),
        SearchKey::Seen => has(meta, SystemFlags::SEEN),
        SearchKey::Unseen => !has(meta, SystemFlags::SEEN),
        SearchKey::Recent => m.recent,
        SearchKey::New => m.recent && !has(meta, SystemFlags::SEEN),
        SearchKey::Old => !m.recent,
        SearchKey::Keyword(k) => meta
            .flags
            .keywords
            .iter()
            .any(|x| x.eq_ignore_ascii_case(k.as_ref())),
        SearchKey::Unkeyword(k) => !meta
            .flags
            .keywords
            .iter()
            .any(|x| x.eq_ignore_ascii_case(k.as_ref())),
        SearchKey::Larger(n) => meta.size > *n,
        SearchKey::Smaller(n) => meta.size < *n,
        SearchKey::Before(d) => meta.internal_date.div_euclid(86_400) < day_of(d),
        SearchKey::On(d) => meta.internal_date.div_euclid(86_400) == day_of(d),
        SearchKey::Since(d) => meta.internal_date.div_euclid(86_400) >= day_of(d),
        SearchKey::SentBefore(d) => m.sent_day().is_some_and(|s| s < day_of(d)),
        SearchKey::SentOn(d) => m.sent_day().is_some_and(|s| s == day_of(d)),
        SearchKey::SentSince(d) => m.sent_day().is_some_and(|s| s >= day_of(d)),
        SearchKey::From(s) => header_contains(m, "from", &astr(s)),
        SearchKey::To(s) => header_contains(m, "to", &astr(s)),
        SearchKey::Cc(s) => header_contains(m, "cc", &astr(s)),
        SearchKey::Bcc(s) => header_contains(m, "bcc", &astr(s)),
        SearchKey::Subject(s) => header_contains(m, "subject", &astr(s)),
        SearchKey::Header(name, value) => {
            if let Some(key) = ExtensionKey::from_carrier(name.as_ref(), value.as_ref()) {
                return key.matches(meta);
            }
            let name = String::from_utf8_lossy(name.as_ref()).into_owned();
            header_contains(m, &name, &astr(value))
        }
        SearchKey::Body(s) => {
            let needle = astr(s);
            m.body_text().contains(&needle)
        }
        SearchKey::Text(s) => {
            let needle = astr(s);
            m.header_text().contains(&needle) || m.body_text().contains(&needle)
        }
        SearchKey::ModSequence { modseq, .. } => meta.modseq >= *modseq,
        // WITHIN (RFC 5032): internal date at most / more than N seconds before now.
        SearchKey::Younger(secs) => meta.internal_date >= unix_now() - i64::from(secs.get()),
        SearchKey::Older(secs) => meta.internal_date < unix_now() - i64::from(secs.get()),
        #[allow(unreachable_patterns)]
        _ => false,
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn header_contains(m: &mut SearchMessage<'_>, name: &str, needle: &str) -> bool {
    let values = m.header_values(name);
    // An empty string matches every message that has the field.
    !values.is_empty() && values.iter().any(|v| v.contains(needle))
}

/// True if any key needs the message bytes (so the caller can decide to load them).
pub fn needs_content(key: &SearchKey<'_>) -> bool {
    match key {
        SearchKey::And(keys) => keys.as_ref().iter().any(needs_content),
        SearchKey::Or(a, b) => needs_content(a) || needs_content(b),
        SearchKey::Not(k) => needs_content(k),
        SearchKey::Header(name, value) => {
            ExtensionKey::from_carrier(name.as_ref(), value.as_ref()).is_none()
        }
        SearchKey::From(_)
        | SearchKey::To(_)
        | SearchKey::Cc(_)
        | SearchKey::Bcc(_)
        | SearchKey::Subject(_)
        | SearchKey::Body(_)
        | SearchKey::Text(_)
        | SearchKey::SentBefore(_)
        | SearchKey::SentOn(_)
        | SearchKey::SentSince(_) => true,
        _ => false,
    }
}

/// True if the criteria mention MODSEQ (then the SEARCH response carries `(MODSEQ n)`).
pub fn mentions_modseq(key: &SearchKey<'_>) -> bool {
    match key {
        SearchKey::And(keys) => keys.as_ref().iter().any(mentions_modseq),
        SearchKey::Or(a, b) => mentions_modseq(a) || mentions_modseq(b),
        SearchKey::Not(k) => mentions_modseq(k),
        SearchKey::ModSequence { .. } => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Flags;
    use imap_codec::{CommandCodec, decode::Decoder, imap_types::command::CommandBody};

    fn key(criteria: &str) -> SearchKey<'static> {
        let line = format!("a SEARCH {criteria}\r\n");
        let (_, cmd) = CommandCodec::default()
            .decode(line.as_bytes())
            .expect(criteria);
        match cmd.body {
            CommandBody::Search { criteria, .. } => {
                let mut keys: Vec<SearchKey> = criteria.into_inner();
                let k = if keys.len() == 1 {
                    keys.pop().unwrap()
                } else {
                    SearchKey::And(keys.try_into().unwrap())
                };
                use imap_codec::imap_types::IntoStatic;
                k.into_static()
            }
            _ => panic!(),
        }
    }

    const MAIL: &str = "Date: Tue, 14 Nov 2023 10:00:00 +0100\r\n\
From: =?utf-8?q?Ren=C3=A9e?= <renee@example.org>\r\n\
To: Bob <bob@example.com>\r\n\
Cc: carol@example.net\r\n\
Subject: =?utf-8?q?caf=C3=A9_meeting?=\r\n\
X-Priority: 1\r\n\
Content-Type: multipart/alternative; boundary=b\r\n\
\r\n\
--b\r\n\
Content-Type: text/plain; charset=iso-8859-1\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
D=E9jeuner at NOON\r\n\
--b--\r\n";

    fn meta(uid: u32, size: u32, date: i64, flags: u8, kw: &[&str], modseq: u64) -> MessageMeta {
        MessageMeta {
            uid,
            size,
            internal_date: date,
            flags: Flags {
                system: SystemFlags(flags),
                keywords: kw.iter().map(|s| s.to_string()).collect(),
            },
            modseq,
            needs_dot_stuffing: false,
            email_id: Default::default(),
            saved: None,
        }
    }

    fn check(criteria: &str, meta: &MessageMeta, msn: u32) -> bool {
        let k = key(criteria);
        let mut loader = |_uid: u32| Some(MAIL.as_bytes().to_vec());
        let mut m = SearchMessage::new(msn, meta, 10, 50, &mut loader);
        matches(&k, &mut m)
    }

    #[test]
    fn metadata_keys() {
        // 2023-11-14 22:13:20 UTC
        let m = meta(
            7,
            1000,
            1_700_000_000,
            SystemFlags::SEEN | SystemFlags::FLAGGED,
            &["$Work"],
            42,
        );
        assert!(check("ALL", &m, 3));
        assert!(check("SEEN FLAGGED", &m, 3));
        assert!(!check("UNSEEN", &m, 3));
        assert!(check("UNANSWERED UNDELETED UNDRAFT", &m, 3));
        assert!(check("KEYWORD $work", &m, 3));
        assert!(check("UNKEYWORD $Other", &m, 3));
        assert!(check("3", &m, 3));
        assert!(check("1:2,3", &m, 3));
        assert!(!check("4:*", &m, 3));
        assert!(check("UID 7", &m, 3));
        assert!(check("UID 5:*", &m, 3));
        assert!(check("LARGER 999 SMALLER 1001", &m, 3));
        assert!(!check("LARGER 1000", &m, 3));
        assert!(check("ON 14-Nov-2023", &m, 3));
        assert!(check("SINCE 14-Nov-2023 BEFORE 15-Nov-2023", &m, 3));
        assert!(!check("BEFORE 14-Nov-2023", &m, 3));
        assert!(check("MODSEQ 42", &m, 3));
        assert!(!check("MODSEQ 43", &m, 3));
        assert!(check("NOT DELETED", &m, 3));
        assert!(check("OR DELETED SEEN", &m, 3));
        assert!(check("(SEEN (FLAGGED KEYWORD $Work))", &m, 3));
        assert!(!check("NOT OR SEEN DELETED", &m, 3));
        assert!(!check("NEW", &m, 3));
    }

    #[test]
    fn header_and_body_keys() {
        let m = meta(7, 1000, 1_700_000_000, 0, &[], 1);
        assert!(check("FROM renee@example.org", &m, 1));
        assert!(check("CHARSET UTF-8 FROM {6+}\r\nRen\u{e9}e", &m, 1));
        assert!(check("CHARSET UTF-8 SUBJECT {5+}\r\nCAF\u{c9}", &m, 1));
        assert!(check("SUBJECT meeting", &m, 1));
        assert!(check("TO bob", &m, 1));
        assert!(check("CC CAROL", &m, 1));
        assert!(!check("BCC carol", &m, 1));
        assert!(check("HEADER X-Priority 1", &m, 1));
        assert!(check("HEADER X-Priority \"\"", &m, 1));
        assert!(!check("HEADER X-Missing \"\"", &m, 1));
        assert!(check("BODY noon", &m, 1));
        assert!(!check("BODY meeting", &m, 1));
        assert!(check("TEXT meeting", &m, 1));
        // TEXT also sees decoded header values.
        assert!(check("CHARSET UTF-8 TEXT {5+}\r\ncaf\u{e9}", &m, 1));
        assert!(check("SENTON 14-Nov-2023", &m, 1));
        assert!(check("SENTSINCE 1-Jan-2020 SENTBEFORE 1-Jan-2024", &m, 1));
        assert!(!check("SENTBEFORE 14-Nov-2023", &m, 1));
    }

    #[test]
    fn decoded_body_search() {
        // QP + iso-8859-1 decoded: "Déjeuner".
        let m = meta(7, 1000, 1_700_000_000, 0, &[], 1);
        let k = key("CHARSET UTF-8 BODY {9+}\r\nd\u{e9}jeuner");
        let mut loader = |_uid: u32| Some(MAIL.as_bytes().to_vec());
        let mut sm = SearchMessage::new(1, &m, 1, 7, &mut loader);
        assert!(matches(&k, &mut sm));
        assert!(needs_content(&k));
        assert!(!needs_content(&key("SEEN UID 1:*")));
        assert!(mentions_modseq(&key("OR SEEN MODSEQ 5")));
    }
}
