//! SORT and UID SORT (RFC 5256 §3), SORT=DISPLAY (RFC 5957) and ESORT (RFC 5267), plus the
//! parser shared with THREAD.
//!
//! The header fields compared come from [`super::message_fields`] (cached per core, so a
//! repeated SORT of a big mailbox reads no message). Strings compare with the case mapping of
//! [`super::message_fields::casemap`]; every tie is broken by message sequence number, as the
//! RFC requires.

use std::cmp::Ordering;
use std::rc::Rc;

use imap_codec::{
    CommandCodec,
    decode::Decoder,
    imap_types::{
        IntoStatic,
        command::{Command, CommandBody},
        core::Charset,
        extensions::sort::{SortCriterion, SortKey},
        search::SearchKey,
    },
};

use super::codec::{SearchReturn, paren_words};
use super::esearch::{self, parse_return_options};
use super::message_fields::{MessageFields, fields_for};
use super::search_criteria::{CriteriaError, parse_criteria};
use super::session::{ImapSession, Step};
use super::{ImapError, ImapResult};
use crate::imap_w;
use crate::store::{MailStore, MessageMeta};

/// Longest `(sort criteria)` list accepted: nine keys, each with REVERSE, fit easily.
const MAX_SORT_CRITERIA_LEN: usize = 256;

/// If `cmd` is `[UID] SORT [RETURN (...)] (criteria) charset search-criteria` or
/// `[UID] THREAD algorithm charset search-criteria`, parse it; `None` for any other command.
///
/// imap-codec parses both, but its search criteria stop at nine levels of nesting; as for
/// SEARCH ([`super::search_criteria`]) the criteria are parsed here with the configured depth,
/// and imap-codec checks the head (tag, sort keys, algorithm, charset). The ESORT `RETURN`
/// options, which imap-codec does not know, are returned beside the command.
pub fn parse_sort_or_thread(
    cmd: &[u8],
    max_depth: usize,
) -> Option<Result<(Command<'static>, Option<SearchReturn>), CriteriaError>> {
    let mut at = memchr::memchr(b' ', cmd)? + 1;
    if starts_with_word(&cmd[at..], b"UID ") {
        at += 4;
    }
    let is_thread = if starts_with_word(&cmd[at..], b"SORT ") {
        at += 5;
        false
    } else if starts_with_word(&cmd[at..], b"THREAD ") {
        at += 7;
        true
    } else {
        return None;
    };
    Some(parse_from(cmd, at, is_thread, max_depth))
}

fn parse_from(
    cmd: &[u8],
    mut at: usize,
    is_thread: bool,
    max_depth: usize,
) -> Result<(Command<'static>, Option<SearchReturn>), CriteriaError> {
    let syntax = CriteriaError::Syntax;
    let mut head = cmd[..at].to_vec();
    let mut ret = None;
    if !is_thread && starts_with_word(&cmd[at..], b"RETURN ") {
        let (words, end) =
            paren_words(cmd, at + 7).map_err(|_| syntax("Invalid RETURN options"))?;
        ret = Some(parse_return_options(&words).map_err(|_| syntax("Invalid RETURN options"))?);
        if cmd.get(end) != Some(&b' ') {
            return Err(syntax("Missing sort criteria"));
        }
        at = end + 1;
    }
    // The sort criteria, or the threading algorithm: one word or one flat parenthesized list.
    let end = if is_thread {
        atom_end(cmd, at)
    } else {
        if cmd.get(at) != Some(&b'(') {
            return Err(syntax("Expected sort criteria"));
        }
        let close = cmd[at..]
            .iter()
            .take(MAX_SORT_CRITERIA_LEN)
            .position(|&b| b == b')')
            .ok_or(syntax("Invalid sort criteria"))?;
        at + close + 1
    };
    if end == at {
        return Err(syntax("Missing threading algorithm"));
    }
    head.extend_from_slice(&cmd[at..end]);
    at = end;
    if cmd.get(at) != Some(&b' ') {
        return Err(syntax("Missing charset"));
    }
    // The charset: an atom or a quoted string.
    let charset_end = if cmd.get(at + 1) == Some(&b'"') {
        let close = cmd[at + 2..]
            .iter()
            .position(|&b| matches!(b, b'"' | b'\\' | b'\r' | b'\n'))
            .ok_or(syntax("Invalid charset"))?;
        if cmd[at + 2 + close] != b'"' {
            return Err(syntax("Invalid charset"));
        }
        at + 2 + close + 1
    } else {
        atom_end(cmd, at + 1)
    };
    if charset_end == at + 1 || cmd.get(charset_end) != Some(&b' ') {
        return Err(syntax("Missing search criteria"));
    }
    head.extend_from_slice(&cmd[at..charset_end]);
    head.extend_from_slice(b" ALL\r\n");
    let (criteria, end) = parse_criteria(cmd, charset_end + 1, max_depth)?;
    if !matches!(&cmd[end..], b"\r\n" | b"\n") {
        return Err(syntax("Syntax error in search criteria"));
    }
    let mut command = match CommandCodec::default().decode(&head) {
        Ok((b"", c)) => c.into_static(),
        _ => return Err(syntax("Syntax error")),
    };
    match &mut command.body {
        CommandBody::Sort {
            search_criteria, ..
        }
        | CommandBody::Thread {
            search_criteria, ..
        } => *search_criteria = criteria,
        _ => return Err(syntax("Syntax error")),
    }
    Ok((command, ret))
}

fn atom_end(s: &[u8], at: usize) -> usize {
    at + s
        .get(at..)
        .unwrap_or(b"")
        .iter()
        .position(|b| !b.is_ascii_graphic() || matches!(b, b'(' | b')' | b'{' | b'"' | b'\\'))
        .unwrap_or(s.len().saturating_sub(at))
}

fn starts_with_word(s: &[u8], word: &[u8]) -> bool {
    s.len() >= word.len() && s[..word.len()].eq_ignore_ascii_case(word)
}

/// SORT, THREAD and SEARCH take UTF-8 and US-ASCII (a subset of it).
pub(crate) fn check_charset(charset: &Charset<'_>) -> ImapResult<()> {
    let name = charset.as_ref();
    if name.eq_ignore_ascii_case("UTF-8") || name.eq_ignore_ascii_case("US-ASCII") {
        Ok(())
    } else {
        Err(ImapError::no_code(
            "BADCHARSET (UTF-8 US-ASCII)",
            format!("Unsupported charset {name}"),
        ))
    }
}

/// The order of `indices` (view indices) under the sort criteria; `fields[k]` belongs to
/// `indices[k]` (it may be empty when no criterion needs header fields).
pub fn sort_order(
    view: &[MessageMeta],
    indices: &[usize],
    fields: &[Rc<MessageFields>],
    criteria: &[SortCriterion],
) -> Vec<usize> {
    let mut order: Vec<usize> = (0..indices.len()).collect();
    order.sort_unstable_by(|&a, &b| {
        for c in criteria {
            let o = compare(c.key.clone(), view, indices, fields, a, b);
            let o = if c.reverse { o.reverse() } else { o };
            if o != Ordering::Equal {
                return o;
            }
        }
        indices[a].cmp(&indices[b])
    });
    order.into_iter().map(|k| indices[k]).collect()
}

fn compare(
    key: SortKey,
    view: &[MessageMeta],
    indices: &[usize],
    fields: &[Rc<MessageFields>],
    a: usize,
    b: usize,
) -> Ordering {
    let (ma, mb) = (&view[indices[a]], &view[indices[b]]);
    match key {
        SortKey::Arrival => ma.internal_date.cmp(&mb.internal_date),
        SortKey::Size => ma.size.cmp(&mb.size),
        SortKey::Date => fields[a].sent_date.cmp(&fields[b].sent_date),
        SortKey::Subject => fields[a].base_subject.cmp(&fields[b].base_subject),
        SortKey::From => fields[a].from_mailbox.cmp(&fields[b].from_mailbox),
        SortKey::To => fields[a].to_mailbox.cmp(&fields[b].to_mailbox),
        SortKey::Cc => fields[a].cc_mailbox.cmp(&fields[b].cc_mailbox),
        SortKey::DisplayFrom => fields[a].display_from.cmp(&fields[b].display_from),
        SortKey::DisplayTo => fields[a].display_to.cmp(&fields[b].display_to),
    }
}

impl ImapSession {
    /// SORT / UID SORT, with ESORT's `RETURN` options when given.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn sort<S: MailStore>(
        &mut self,
        store: &S,
        tag: &str,
        criteria: &[SortCriterion],
        charset: &Charset<'_>,
        keys: Vec<SearchKey<'_>>,
        uid: bool,
        ret: Option<SearchReturn>,
        out: &mut Vec<u8>,
    ) -> ImapResult<Step> {
        if let Err(e) = check_charset(charset) {
            if ret.as_ref().is_some_and(|r| r.save) {
                self.forget_result();
            }
            return Err(e);
        }
        let update = ret.as_ref().is_some_and(|r| r.update);
        let live_key = if update {
            self.check_update_tag(tag)?;
            Some(super::context::combine(keys.clone())?)
        } else {
            None
        };
        let found = self.matching(store, keys)?;
        if found.mentions_modseq {
            self.reporting.condstore = true;
        }
        let live_key = live_key.filter(|_| self.room_for_context(tag, out));
        let account = self.account.clone().unwrap_or_default();
        let mb = self
            .selected
            .as_ref()
            .ok_or_else(|| ImapError::bad("No mailbox selected"))?;
        let needs_fields = criteria
            .iter()
            .any(|c| !matches!(c.key, SortKey::Arrival | SortKey::Size));
        let fields = if needs_fields {
            fields_for(
                store,
                &account,
                &mb.name,
                mb.uidvalidity,
                &mb.messages,
                &found.indices,
            )
        } else {
            Vec::new()
        };
        let order = sort_order(&mb.messages, &found.indices, &fields, criteria);
        let numbers = esearch::numbers(&mb.messages, &order, uid);
        let modseq = found.mentions_modseq.then_some(found.max_modseq);
        match &ret {
            Some(r) => esearch::write_esearch(out, tag, uid, r, &numbers, modseq),
            None => {
                out.extend_from_slice(b"* SORT");
                for n in &numbers {
                    imap_w!(out, " {n}");
                }
                if let Some(m) = modseq.filter(|_| !numbers.is_empty()) {
                    imap_w!(out, " (MODSEQ {m})");
                }
                out.extend_from_slice(b"\r\n");
            }
        }
        if let Some(r) = ret.as_ref().filter(|r| r.save) {
            self.save_result(r, &order);
        }
        if let Some(key) = live_key {
            self.start_context(tag, uid, key, Some(criteria.to_vec()), &order);
        }
        self.sync_selected(store, uid, out);
        imap_w!(out, "{tag} OK SORT completed\r\n");
        Ok(Step::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(cmd: &str) -> Result<(Command<'static>, Option<SearchReturn>), CriteriaError> {
        parse_sort_or_thread(cmd.as_bytes(), 100).expect("a SORT or THREAD command")
    }

    #[test]
    fn sort_and_thread_commands() {
        let (c, ret) = parse("a UID SORT (REVERSE DATE subject) UTF-8 OR SEEN FROM x\r\n").unwrap();
        assert!(ret.is_none());
        match c.body {
            CommandBody::Sort {
                sort_criteria,
                charset,
                search_criteria,
                uid,
            } => {
                assert!(uid);
                assert_eq!(charset.as_ref(), "UTF-8");
                let crit = sort_criteria.as_ref();
                assert_eq!(crit.len(), 2);
                assert!(crit[0].reverse && crit[0].key == SortKey::Date);
                assert!(!crit[1].reverse && crit[1].key == SortKey::Subject);
                assert_eq!(search_criteria.as_ref().len(), 1);
            }
            other => panic!("{other:?}"),
        }
        let (c, ret) =
            parse("b SORT RETURN (MIN COUNT PARTIAL 1:5) (DISPLAYFROM) \"us-ascii\" ALL\r\n")
                .unwrap();
        let ret = ret.unwrap();
        assert!(ret.min && ret.count && ret.partial.is_some() && !ret.all);
        assert!(matches!(c.body, CommandBody::Sort { uid: false, .. }));
        let (c, _) = parse("c THREAD REFS UTF-8 (SEEN) UNDELETED\r\n").unwrap();
        match c.body {
            CommandBody::Thread {
                algorithm,
                search_criteria,
                ..
            } => {
                assert_eq!(algorithm.to_string(), "REFS");
                assert_eq!(search_criteria.as_ref().len(), 2);
            }
            other => panic!("{other:?}"),
        }
        assert!(parse_sort_or_thread(b"a SEARCH ALL\r\n", 100).is_none());
        assert!(parse_sort_or_thread(b"a SORTX ALL\r\n", 100).is_none());
        // Deeper than imap-codec's nine levels, within the configured limit.
        let deep = format!("d SORT (ARRIVAL) UTF-8 {}SEEN\r\n", "NOT ".repeat(50));
        assert!(parse(&deep).is_ok());
        let deeper = format!("d SORT (ARRIVAL) UTF-8 {}SEEN\r\n", "NOT ".repeat(101));
        assert_eq!(parse(&deeper).unwrap_err(), CriteriaError::TooDeep);
    }

    #[test]
    fn hostile_sort_and_thread_commands() {
        for bad in [
            "a SORT\r\n",
            "a SORT \r\n",
            "a SORT ALL\r\n",
            "a SORT () UTF-8 ALL\r\n",
            "a SORT (DATE UTF-8 ALL\r\n",
            "a SORT (BOGUS) UTF-8 ALL\r\n",
            "a SORT (REVERSE) UTF-8 ALL\r\n",
            "a SORT (REVERSE REVERSE DATE) UTF-8 ALL\r\n",
            "a SORT (DATE) ALL\r\n",
            "a SORT (DATE) UTF-8\r\n",
            "a SORT (DATE) UTF-8 \r\n",
            "a SORT (DATE) \"UTF-8 ALL\r\n",
            "a SORT (DATE) \"UTF\\-8\" ALL\r\n",
            "a SORT (DATE) UTF-8 ALL extra)\r\n",
            "a SORT (DATE) UTF-8 (ALL\r\n",
            "a SORT ((DATE)) UTF-8 ALL\r\n",
            "a SORT RETURN (BOGUS) (DATE) UTF-8 ALL\r\n",
            "a SORT RETURN (ALL PARTIAL 1:2) (DATE) UTF-8 ALL\r\n",
            "a SORT RETURN (DATE) UTF-8 ALL\r\n",
            "a SORT RETURN ( (DATE) UTF-8 ALL\r\n",
            "a THREAD\r\n",
            "a THREAD  UTF-8 ALL\r\n",
            "a THREAD REFERENCES\r\n",
            "a THREAD REFERENCES UTF-8\r\n",
            "a THREAD (REFERENCES) UTF-8 ALL\r\n",
            "a THREAD REFERENCES UTF-8 ALL ALL)\r\n",
            "a THREAD REFERENCES {5}\r\nUTF-8 ALL\r\n",
            "a UID THREAD REFERENCES UTF-8 SUBJECT {99+}\r\nx\r\n",
            "\"a SORT (DATE) UTF-8 ALL\r\n",
        ] {
            assert!(
                matches!(
                    parse_sort_or_thread(bad.as_bytes(), 100),
                    Some(Err(CriteriaError::Syntax(_))) | None
                ),
                "{bad:?}"
            );
        }
        let long = format!("a SORT ({}DATE) UTF-8 ALL\r\n", "REVERSE ".repeat(100));
        assert!(parse(&long).is_err());
        let nested = format!("a THREAD REFS UTF-8 {}SEEN\r\n", "(".repeat(100_000));
        assert_eq!(parse(&nested).unwrap_err(), CriteriaError::TooDeep);
    }

    fn meta(uid: u32, size: u32, date: i64) -> MessageMeta {
        MessageMeta {
            uid,
            size,
            internal_date: date,
            flags: Default::default(),
            modseq: 1,
            needs_dot_stuffing: false,
            email_id: Default::default(),
            saved: None,
        }
    }

    #[test]
    fn order_with_ties_and_reverse() {
        let view = vec![
            meta(1, 30, 5),
            meta(2, 10, 5),
            meta(3, 20, 4),
            meta(4, 10, 6),
        ];
        let all = [0, 1, 2, 3];
        let key = |reverse, key| SortCriterion { reverse, key };
        let sizes = sort_order(&view, &all, &[], &[key(false, SortKey::Size)]);
        assert_eq!(sizes, vec![1, 3, 2, 0]);
        // Ties keep mailbox order, REVERSE or not.
        let rev = sort_order(&view, &all, &[], &[key(true, SortKey::Arrival)]);
        assert_eq!(rev, vec![3, 0, 1, 2]);
        let two = sort_order(
            &view,
            &all,
            &[],
            &[key(false, SortKey::Size), key(true, SortKey::Arrival)],
        );
        assert_eq!(two, vec![3, 1, 2, 0]);
        let subjects = ["b", "A", "a", "c"];
        let fields: Vec<_> = subjects
            .iter()
            .map(|s| {
                Rc::new(MessageFields {
                    base_subject: super::super::message_fields::casemap(s).into(),
                    ..Default::default()
                })
            })
            .collect();
        let by_subject = sort_order(&view, &all, &fields, &[key(false, SortKey::Subject)]);
        assert_eq!(by_subject, vec![1, 2, 0, 3]);
        // A subset: fields are aligned with the indices given.
        let some = sort_order(&view, &[1, 3], &fields[..2], &[key(true, SortKey::Subject)]);
        assert_eq!(some, vec![1, 3]);
    }
}
