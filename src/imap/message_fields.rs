//! The header fields SORT and THREAD compare (RFC 5256, RFC 5957), extracted once per message
//! and kept in a per-thread cache.
//!
//! Roundcube sorts on every list view, so a 100 000-message mailbox must not be re-parsed each
//! time. Within one UIDVALIDITY a UID always names the same bytes (IMAP never rewrites a
//! message), so a cache keyed by (account, mailbox, UIDVALIDITY, UID) is never stale: an append
//! is a miss that fills one entry, an expunge leaves a dead entry that is pruned once dead
//! entries outnumber the live ones. Each core has its own cache (thread-per-core: no locks),
//! bounded by [`CACHE_MAX`] entries.
//!
//! Only the header is read: the first [`HEADER_PREFIX`] bytes of the message straight from the
//! store's file, and the whole message only when the header is longer than that.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::rc::Rc;

use mail_parser::{Address, HeaderValue, MessageParser};

use crate::store::{MailStore, MessageMeta};

/// Bytes read first when looking for the end of the header.
const HEADER_PREFIX: usize = 16 * 1024;

/// Entries kept per thread before the caches of other mailboxes are dropped (a few hundred
/// bytes each: under 100 MB at the limit).
const CACHE_MAX: usize = 250_000;

/// What SORT and THREAD need of one message. Strings are case-mapped already (see
/// [`casemap`]), so comparisons are plain byte comparisons.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageFields {
    /// The Date: field in UTC seconds, or the internal date when it is missing or unparsable
    /// (RFC 5256 §3, DATE).
    pub sent_date: i64,
    /// RFC 5256 §2.1 base subject, case-mapped.
    pub base_subject: Box<str>,
    /// Subject extraction removed a `Re:`, `Fwd:`, `(fwd)` or `[fwd: ...]` (REFERENCES step 5).
    pub subject_is_reply: bool,
    /// addr-mailbox (local part) of the first From, To and Cc address, case-mapped.
    pub from_mailbox: Box<str>,
    pub to_mailbox: Box<str>,
    pub cc_mailbox: Box<str>,
    /// RFC 5957 display name of the first From / To address (its addr-spec when it has none).
    pub display_from: Box<str>,
    pub display_to: Box<str>,
    /// Message-ID without angle brackets.
    pub message_id: Option<Box<str>>,
    /// References, or the first In-Reply-To id when there is no References (RFC 5256 §2.2).
    pub references: Box<[Box<str>]>,
}

impl MessageFields {
    /// Extract the fields from a message header (the whole message is fine too).
    pub fn from_header(header: &[u8], internal_date: i64) -> MessageFields {
        let Some(msg) = MessageParser::default().parse_headers(header) else {
            return MessageFields {
                sent_date: internal_date,
                ..MessageFields::default()
            };
        };
        let (base_subject, subject_is_reply) = base_subject(msg.subject().unwrap_or(""));
        let sent_date = msg
            .date()
            .filter(|d| d.is_valid())
            .map_or(internal_date, |d| d.to_timestamp());
        let mut references: Vec<Box<str>> = ids(msg.references());
        if references.is_empty() {
            references = ids(msg.in_reply_to()).into_iter().take(1).collect();
        }
        MessageFields {
            sent_date,
            base_subject: casemap(&base_subject).into(),
            subject_is_reply,
            from_mailbox: casemap(first_mailbox(msg.from())).into(),
            to_mailbox: casemap(first_mailbox(msg.to())).into(),
            cc_mailbox: casemap(first_mailbox(msg.cc())).into(),
            display_from: casemap(&display_name(msg.from())).into(),
            display_to: casemap(&display_name(msg.to())).into(),
            message_id: msg
                .message_id()
                .filter(|id| !id.is_empty())
                .map(|id| id.trim().into()),
            references: references.into(),
        }
    }
}

fn ids(v: &HeaderValue<'_>) -> Vec<Box<str>> {
    let ids: Vec<Box<str>> = match v {
        HeaderValue::Text(t) => vec![t.trim().into()],
        HeaderValue::TextList(l) => l.iter().map(|t| t.trim().into()).collect(),
        _ => vec![],
    };
    ids.into_iter().filter(|id| !id.is_empty()).collect()
}

/// The local part of the first address (`addr-mailbox` of the ENVELOPE), empty if none.
fn first_mailbox<'a>(a: Option<&'a Address<'_>>) -> &'a str {
    let Some(addr) = a.and_then(|a| a.first()).and_then(|a| a.address.as_deref()) else {
        return "";
    };
    addr.rsplit_once('@').map_or(addr, |(local, _)| local)
}

/// RFC 5957: the display name of the first address if it has a non-empty one, else its
/// addr-spec (`mailbox@host`).
fn display_name(a: Option<&Address<'_>>) -> String {
    let Some(first) = a.and_then(|a| a.first()) else {
        return String::new();
    };
    match first.name.as_deref().map(str::trim) {
        Some(name) if !name.is_empty() => name.to_string(),
        _ => first.address.as_deref().unwrap_or("").to_string(),
    }
}

/// The comparator's key: i;unicode-casemap (I18NLEVEL=1, see [`super::i18nlevel`]), which on
/// ASCII is i;ascii-casemap, RFC 5256's default.
pub fn casemap(s: &str) -> String {
    super::i18nlevel::casemap(s)
}

/// RFC 5256 §2.1 base subject of an already RFC 2047-decoded subject, and whether extraction
/// removed a reply or forward marker.
pub fn base_subject(decoded: &str) -> (String, bool) {
    // Step 1: every run of whitespace (folding included) becomes one space.
    let mut s = String::with_capacity(decoded.len());
    for c in decoded.chars() {
        let c = if matches!(c, '\t' | '\r' | '\n') {
            ' '
        } else {
            c
        };
        if !(c == ' ' && s.ends_with(' ')) {
            s.push(c);
        }
    }
    let mut s: &str = &s;
    let mut is_reply = false;
    loop {
        // Step 2: trailing "(fwd)" and whitespace.
        loop {
            let t = s.trim_end_matches(' ');
            if let Some(rest) = strip_suffix_ci(t, "(fwd)") {
                s = rest;
                is_reply = true;
            } else {
                s = t;
                break;
            }
        }
        // Steps 3 to 5: leaders (blobs, Re:, Fw:, Fwd:) and a leading blob, until stable.
        loop {
            let before = s.len();
            loop {
                if let Some(rest) = s.strip_prefix(' ') {
                    s = rest;
                } else if let Some(n) = refwd_leader(s) {
                    s = &s[n..];
                    is_reply = true;
                } else {
                    break;
                }
            }
            // Step 4, for every leading blob at once: step 3 would fail again after each
            // (its blobs end where they ended), and doing them one by one is quadratic.
            // (Step 2 left no trailing space, so a non-empty rest is a non-blank one.)
            while let Some(n) = blob(s)
                && n < s.len()
            {
                s = &s[n..];
            }
            if s.len() == before {
                break;
            }
        }
        // Step 6: "[fwd: ...]" wraps a forwarded subject; unwrap and start again.
        if s.len() >= 6
            && s.is_char_boundary(5)
            && s[..5].eq_ignore_ascii_case("[fwd:")
            && s.ends_with(']')
        {
            s = &s[5..s.len() - 1];
            is_reply = true;
            continue;
        }
        return (s.to_string(), is_reply);
    }
}

fn strip_suffix_ci<'a>(s: &'a str, suffix: &str) -> Option<&'a str> {
    let at = s.len().checked_sub(suffix.len())?;
    (s.is_char_boundary(at) && s[at..].eq_ignore_ascii_case(suffix)).then(|| &s[..at])
}

/// Length of `subj-blob` (`"[" *BLOBCHAR "]" *WSP`) at the start of `s`.
fn blob(s: &str) -> Option<usize> {
    let inner = s.strip_prefix('[')?;
    let close = inner.find(['[', ']'])?;
    if inner.as_bytes()[close] != b']' {
        return None;
    }
    let end = 1 + close + 1;
    Some(end + s[end..].len() - s[end..].trim_start_matches(' ').len())
}

/// Length of `*subj-blob subj-refwd` at the start of `s`, where
/// `subj-refwd = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":"`.
fn refwd_leader(s: &str) -> Option<usize> {
    let mut at = 0;
    while let Some(n) = blob(&s[at..]) {
        at += n;
    }
    let b = s.as_bytes();
    let word = if b.len() >= at + 3 && b[at..at + 3].eq_ignore_ascii_case(b"fwd") {
        3
    } else if b.len() >= at + 2
        && (b[at..at + 2].eq_ignore_ascii_case(b"fw") || b[at..at + 2].eq_ignore_ascii_case(b"re"))
    {
        2
    } else {
        return None;
    };
    at += word;
    while b.get(at) == Some(&b' ') {
        at += 1;
    }
    if let Some(n) = blob(&s[at..]) {
        at += n;
    }
    (b.get(at) == Some(&b':')).then_some(at + 1)
}

type MailboxFields = Rc<RefCell<HashMap<u32, Rc<MessageFields>>>>;

thread_local! {
    static FIELDS_CACHE: RefCell<HashMap<(String, String, u32), MailboxFields>> =
        RefCell::new(HashMap::new());
    static CACHED: Cell<usize> = const { Cell::new(0) };
}

/// The fields of `view[i]` for each `i` in `wanted`, in that order, from the cache or read
/// from the store. `view` is the whole selected mailbox (for pruning dead entries).
pub fn fields_for<S: MailStore>(
    store: &S,
    account: &str,
    mailbox: &str,
    uidvalidity: u32,
    view: &[MessageMeta],
    wanted: &[usize],
) -> Vec<Rc<MessageFields>> {
    let cache = FIELDS_CACHE.with(|c| {
        c.borrow_mut()
            .entry((account.to_string(), mailbox.to_string(), uidvalidity))
            .or_default()
            .clone()
    });
    let mut map = cache.borrow_mut();
    let mut added = 0;
    let out = wanted
        .iter()
        .map(|&i| {
            let meta = &view[i];
            map.entry(meta.uid)
                .or_insert_with(|| {
                    added += 1;
                    let header = read_header(store, account, mailbox, meta.uid);
                    Rc::new(MessageFields::from_header(
                        header.as_deref().unwrap_or(b""),
                        meta.internal_date,
                    ))
                })
                .clone()
        })
        .collect();
    // Expunged messages leave dead entries; drop them once they outnumber the live ones.
    if map.len() > 2 * view.len() + 1024 {
        let before = map.len();
        map.retain(|uid, _| view.binary_search_by_key(uid, |m| m.uid).is_ok());
        CACHED.with(|n| n.set(n.get().saturating_sub(before - map.len())));
    }
    drop(map);
    let total = CACHED.with(|n| {
        n.set(n.get() + added);
        n.get()
    });
    if total > CACHE_MAX {
        // Keep this mailbox (it is being sorted right now); forget the others.
        let kept = cache.borrow().len();
        FIELDS_CACHE.with(|c| c.borrow_mut().retain(|_, v| Rc::ptr_eq(v, &cache)));
        CACHED.with(|n| n.set(kept));
    }
    out
}

/// The message's header: a prefix read from the store's file, or the whole message when the
/// header does not end within it.
fn read_header<S: MailStore>(store: &S, account: &str, mailbox: &str, uid: u32) -> Option<Vec<u8>> {
    let loc = store.locate(account, mailbox, uid).ok()?;
    let len = loc.len as usize;
    if len > HEADER_PREFIX {
        let mut buf = vec![0; HEADER_PREFIX];
        loc.file.read_exact_at(&mut buf, loc.offset).ok()?;
        if memchr::memmem::find(&buf, b"\r\n\r\n").is_some()
            || memchr::memmem::find(&buf, b"\n\n").is_some()
        {
            return Some(buf);
        }
    }
    store.read(account, mailbox, uid).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(s: &str) -> (String, bool) {
        base_subject(s)
    }

    #[test]
    fn base_subject_rfc5256() {
        assert_eq!(base("Hello"), ("Hello".into(), false));
        assert_eq!(base("Re: Hello"), ("Hello".into(), true));
        assert_eq!(base("RE:   Re: re:Hello"), ("Hello".into(), true));
        assert_eq!(base("Fwd: Hello"), ("Hello".into(), true));
        assert_eq!(base("FW: Hello"), ("Hello".into(), true));
        assert_eq!(base("Re[2]: Hello"), ("Hello".into(), true));
        assert_eq!(base("[list] Re: Hello"), ("Hello".into(), true));
        assert_eq!(base("[list] Hello"), ("Hello".into(), false));
        assert_eq!(base("Hello (fwd)"), ("Hello".into(), true));
        assert_eq!(base("Hello (FWD) (fwd)  "), ("Hello".into(), true));
        assert_eq!(base("[Fwd: Re: Hello]"), ("Hello".into(), true));
        assert_eq!(
            base("Re: [fwd: [list] Hello (fwd)]"),
            ("Hello".into(), true)
        );
        assert_eq!(
            base("  Hello\t\r\n  world  "),
            ("Hello world".into(), false)
        );
        // A blob that is all there is stays (removing it would leave nothing).
        assert_eq!(base("[list]"), ("[list]".into(), false));
        assert_eq!(base("Re: [list]"), ("[list]".into(), true));
        // Not leaders: no colon, or a word that only starts with "re".
        assert_eq!(base("Regarding: x"), ("Regarding: x".into(), false));
        assert_eq!(base("Re x"), ("Re x".into(), false));
        assert_eq!(base(""), (String::new(), false));
    }

    #[test]
    fn base_subject_hostile() {
        // Unbalanced brackets, lone markers, non-ASCII next to the markers: no panic, and
        // linear enough for long inputs.
        for s in [
            "[",
            "]",
            "[[[",
            "[fwd:",
            "[fwd:]",
            "[fwd:é]",
            "é(fwd)",
            "(fwd)",
            "Re:",
            "re: re: re:",
            "[é] Re[é]: ü",
            "Fwd",
            "\u{2028}Re: x",
        ] {
            let _ = base(s);
        }
        assert_eq!(base("[fwd:]"), (String::new(), true));
        let long = "Re: ".repeat(20_000) + "x";
        let start = std::time::Instant::now();
        assert_eq!(base(&long), ("x".into(), true));
        let blobs = "[a]".repeat(20_000) + " x";
        assert_eq!(base(&blobs).0, "x");
        assert!(start.elapsed() < std::time::Duration::from_secs(10));
    }

    #[test]
    fn fields_from_header() {
        let h = b"From: =?utf-8?q?Ren=C3=A9e?= <Renee@Example.org>\r\n\
To: bob@example.com, carol@example.net\r\n\
Subject: =?utf-8?q?Re:_caf=C3=A9?= [fwd: x]\r\n\
Date: Tue, 14 Nov 2023 10:00:00 +0100\r\n\
Message-ID: <a@b>\r\nIn-Reply-To: <z@b> <y@b>\r\n\r\nbody";
        let f = MessageFields::from_header(h, 5);
        assert_eq!(f.sent_date, 1_699_952_400);
        assert_eq!(&*f.base_subject, "CAFE\u{301} [FWD: X]");
        assert!(f.subject_is_reply);
        assert_eq!(&*f.from_mailbox, "RENEE");
        assert_eq!(&*f.to_mailbox, "BOB");
        assert_eq!(&*f.cc_mailbox, "");
        assert_eq!(&*f.display_from, "RENE\u{301}E");
        assert_eq!(&*f.display_to, "BOB@EXAMPLE.COM");
        assert_eq!(f.message_id.as_deref(), Some("a@b"));
        assert_eq!(&*f.references, &["z@b".into()] as &[Box<str>]);
        let f = MessageFields::from_header(b"Date: garbage\r\nReferences: <1@x> <2@x>\r\n\r\n", 77);
        assert_eq!(f.sent_date, 77);
        assert_eq!(f.references.len(), 2);
        assert_eq!(MessageFields::from_header(b"", 9).sent_date, 9);
        assert_eq!(
            MessageFields::from_header(b"\xff\xfe\0:::\r\n\r\n", 9).sent_date,
            9
        );
    }
}
