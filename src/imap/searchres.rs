//! SEARCHRES (RFC 5182): `SEARCH RETURN (SAVE)` keeps a result, and `$` stands for it in the
//! commands that follow (`FETCH $`, `UID STORE $`, `COPY $`, `SEARCH UID $ ...`).
//!
//! imap-codec has no `$` in its sequence-set grammar, so before a command is parsed each `$`
//! token is replaced by the set it stands for, written out: message numbers where the grammar
//! wants message numbers, UIDs after `UID`. The saved result is kept as UIDs (in the
//! [`SelectedMailbox`], so a new SELECT starts empty), which is also how a message expunged
//! since simply drops out of it. The command is rewritten when it is parsed, and a pipelined
//! command is only parsed after the previous one has run (the session consumes no input while
//! a command is outstanding), so `$` always means the latest saved result, as §2.1 requires.
//!
//! An empty result has no sequence-set to stand for it: in search criteria `$` becomes
//! `NOT ALL`; as the message set of FETCH, STORE, COPY, MOVE or UID EXPUNGE the command becomes
//! its UID form on UID 4294967295, the one UID the store never hands out, so it matches nothing
//! and answers OK with no data, as §2.1 asks.

use std::borrow::Cow;

use super::codec::SearchReturn;
use super::esearch::saved_positions;
use super::mailbox::SelectedMailbox;
use super::sequence::format_sorted;
use super::session::ImapSession;

/// A UID no message has (the store's UIDs stay below it).
const NO_SUCH_UID: &str = "4294967295";

/// Search keys whose argument is a string, where `$` is text, not a set.
const STRING_KEYS: &[&[u8]] = &[
    b"BCC",
    b"BODY",
    b"CC",
    b"FROM",
    b"KEYWORD",
    b"SUBJECT",
    b"TEXT",
    b"TO",
    b"UNKEYWORD",
];

impl ImapSession {
    /// Keep the result of a `RETURN (SAVE)` (view indices in result order).
    pub(crate) fn save_result(&mut self, r: &SearchReturn, indices: &[usize]) {
        let Some(mb) = self.selected.as_mut() else {
            return;
        };
        let mut uids: Vec<u32> = saved_positions(r, indices.len())
            .into_iter()
            .map(|p| mb.messages[indices[p]].uid)
            .collect();
        uids.sort_unstable();
        uids.dedup();
        mb.saved_result = uids;
    }

    /// A search with SAVE failed: `$` is empty afterwards (RFC 5182 §2.1).
    pub(crate) fn forget_result(&mut self) {
        if let Some(mb) = self.selected.as_mut() {
            mb.saved_result.clear();
        }
    }
}

/// Replace the `$` tokens of a command (see the module docs). Commands without `$`, and
/// commands outside the Selected state, are returned unchanged.
pub fn substitute_dollar<'a>(cmd: &'a [u8], selected: Option<&SelectedMailbox>) -> Cow<'a, [u8]> {
    let Some(mb) = selected else {
        return cmd.into();
    };
    if memchr::memchr(b'$', cmd).is_none() {
        return cmd.into();
    }
    let Some(tag_end) = memchr::memchr(b' ', cmd) else {
        return cmd.into();
    };
    let mut verb_at = tag_end + 1;
    let is_uid = word_at(cmd, verb_at).eq_ignore_ascii_case(b"UID");
    if is_uid {
        verb_at += 4;
    }
    let verb = word_at(cmd, verb_at).to_ascii_uppercase();
    let criteria = match verb.as_slice() {
        b"SEARCH" | b"SORT" | b"THREAD" => true,
        b"FETCH" | b"STORE" | b"COPY" | b"MOVE" | b"EXPUNGE" => false,
        _ => return cmd.into(),
    };
    let uids = &mb.saved_result;
    let msns: Vec<u32> = uids
        .iter()
        .filter_map(|&u| mb.index_of(u).map(|i| i as u32 + 1))
        .collect();
    let mut out: Vec<u8> = Vec::with_capacity(cmd.len() + 16);
    let mut copied = 0;
    let mut at = verb_at + verb.len();
    let mut changed = false;
    // (start, end) of the last two tokens before `at`, to see what a `$` is an argument of.
    let mut prev: [(usize, usize); 2] = [(0, 0); 2];
    while at < cmd.len() {
        match cmd[at] {
            b'"' => {
                at += 1;
                while at < cmd.len() && cmd[at] != b'"' {
                    at += if cmd[at] == b'\\' { 2 } else { 1 };
                }
                at += 1;
            }
            b'{' => match literal_end(cmd, at) {
                Some(end) => at = end,
                None => at += 1,
            },
            b' ' | b'(' | b')' | b'\r' | b'\n' => at += 1,
            _ => {
                let start = at;
                while at < cmd.len() && !matches!(cmd[at], b' ' | b'(' | b')' | b'\r' | b'\n') {
                    at += 1;
                }
                let token = &cmd[start..at];
                let first_argument = start == verb_at + verb.len() + 1;
                if token == b"$" && (criteria || first_argument) {
                    let before = &cmd[prev[1].0..prev[1].1];
                    let two_before = &cmd[prev[0].0..prev[0].1];
                    let is_text = criteria
                        && (STRING_KEYS.iter().any(|k| before.eq_ignore_ascii_case(k))
                            || two_before.eq_ignore_ascii_case(b"HEADER"));
                    if !is_text {
                        let after_uid_key = criteria && before.eq_ignore_ascii_case(b"UID");
                        let (replace_from, text) = if criteria {
                            let set: &[u32] = if after_uid_key { uids } else { &msns };
                            match (set.is_empty(), after_uid_key) {
                                (true, true) => (prev[1].0, "NOT ALL".to_string()),
                                (true, false) => (start, "NOT ALL".to_string()),
                                (false, _) => (start, format_sorted(set)),
                            }
                        } else {
                            let set: &[u32] = if is_uid { uids } else { &msns };
                            if set.is_empty() {
                                (start, NO_SUCH_UID.to_string())
                            } else {
                                (start, format_sorted(set))
                            }
                        };
                        if !criteria && !is_uid && msns.is_empty() {
                            // The UID form of the command, on a UID that matches nothing.
                            out.extend_from_slice(&cmd[copied..verb_at]);
                            out.extend_from_slice(b"UID ");
                            copied = verb_at;
                        }
                        out.extend_from_slice(&cmd[copied..replace_from]);
                        out.extend_from_slice(text.as_bytes());
                        copied = at;
                        changed = true;
                    }
                }
                prev = [prev[1], (start, at)];
            }
        }
    }
    if !changed {
        return cmd.into();
    }
    out.extend_from_slice(&cmd[copied..]);
    out.into()
}

fn word_at(s: &[u8], at: usize) -> &[u8] {
    let rest = s.get(at..).unwrap_or(b"");
    let len = rest
        .iter()
        .position(|&b| matches!(b, b' ' | b'\r' | b'\n' | b'('))
        .unwrap_or(rest.len());
    &rest[..len]
}

/// Where a `{N}` / `{N+}` literal that starts at `at` ends (after its data), if it is one.
fn literal_end(s: &[u8], at: usize) -> Option<usize> {
    let close = at + memchr::memchr(b'}', &s[at..])?;
    let digits = &s[at + 1..close];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    if digits.is_empty() || digits.len() > 10 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let len: usize = std::str::from_utf8(digits).ok()?.parse().ok()?;
    let data = close
        + 1
        + if s[close + 1..].starts_with(b"\r\n") {
            2
        } else {
            1
        };
    Some(data.saturating_add(len).min(s.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Flags, MailboxSnapshot, MessageMeta};

    fn mailbox(uids: &[u32], saved: &[u32]) -> SelectedMailbox {
        let messages = uids
            .iter()
            .map(|&uid| MessageMeta {
                uid,
                size: 1,
                internal_date: 0,
                flags: Flags::default(),
                modseq: 1,
                needs_dot_stuffing: false,
                email_id: Default::default(),
                saved: None,
            })
            .collect();
        let mut mb = SelectedMailbox::new(
            "INBOX".into(),
            false,
            MailboxSnapshot {
                id: 0,
                uidvalidity: 1,
                uidnext: 100,
                highest_modseq: 1,
                messages,
            },
            None,
        );
        mb.saved_result = saved.to_vec();
        mb
    }

    fn sub(cmd: &str, mb: &SelectedMailbox) -> String {
        String::from_utf8(substitute_dollar(cmd.as_bytes(), Some(mb)).into_owned()).unwrap()
    }

    #[test]
    fn dollar_becomes_the_saved_set() {
        // UIDs 10, 20, 30, 40 are messages 1..4; saved: 20, 30 and an expunged 25.
        let mb = mailbox(&[10, 20, 30, 40], &[20, 25, 30]);
        assert_eq!(sub("a FETCH $ FLAGS\r\n", &mb), "a FETCH 2:3 FLAGS\r\n");
        assert_eq!(
            sub("a UID FETCH $ (FLAGS)\r\n", &mb),
            "a UID FETCH 20,25,30 (FLAGS)\r\n"
        );
        assert_eq!(
            sub("a STORE $ +FLAGS ($Junk)\r\n", &mb),
            "a STORE 2:3 +FLAGS ($Junk)\r\n"
        );
        assert_eq!(
            sub("a uid copy $ Trash\r\n", &mb),
            "a uid copy 20,25,30 Trash\r\n"
        );
        assert_eq!(
            sub("a UID SEARCH UID $ SEEN\r\n", &mb),
            "a UID SEARCH UID 20,25,30 SEEN\r\n"
        );
        assert_eq!(
            sub("a SEARCH OR $ (NOT $) \r\n", &mb),
            "a SEARCH OR 2:3 (NOT 2:3) \r\n"
        );
        assert_eq!(
            sub("a UID SORT (DATE) UTF-8 $\r\n", &mb),
            "a UID SORT (DATE) UTF-8 2:3\r\n"
        );
    }

    #[test]
    fn dollar_as_text_is_left_alone() {
        let mb = mailbox(&[10, 20], &[10]);
        for cmd in [
            "a SEARCH KEYWORD $\r\n",
            "a SEARCH SUBJECT $ FROM \"$\"\r\n",
            "a SEARCH HEADER X-Tag $\r\n",
            "a SEARCH BODY {1+}\r\n$\r\n",
            "a SEARCH $Forwarded\r\n",
            "a STORE 1 +FLAGS ($)\r\n",
            "a SELECT $\r\n",
            "a CREATE $\r\n",
            "a APPEND $ {1+}\r\n$\r\n",
        ] {
            assert_eq!(sub(cmd, &mb), cmd);
        }
        assert_eq!(
            substitute_dollar(b"a FETCH $ FLAGS\r\n", None).as_ref(),
            b"a FETCH $ FLAGS\r\n"
        );
    }

    #[test]
    fn empty_saved_result_matches_nothing() {
        let mb = mailbox(&[10, 20], &[]);
        assert_eq!(sub("a SEARCH $\r\n", &mb), "a SEARCH NOT ALL\r\n");
        assert_eq!(
            sub("a SEARCH UID $ SEEN\r\n", &mb),
            "a SEARCH NOT ALL SEEN\r\n"
        );
        assert_eq!(
            sub("a FETCH $ FLAGS\r\n", &mb),
            "a UID FETCH 4294967295 FLAGS\r\n"
        );
        assert_eq!(
            sub("a UID STORE $ +FLAGS (\\Seen)\r\n", &mb),
            "a UID STORE 4294967295 +FLAGS (\\Seen)\r\n"
        );
        // Saved messages all expunged: the same for message numbers, UIDs stay as they are.
        let mb = mailbox(&[10, 20], &[15]);
        assert_eq!(sub("a COPY $ x\r\n", &mb), "a UID COPY 4294967295 x\r\n");
        assert_eq!(sub("a UID COPY $ x\r\n", &mb), "a UID COPY 15 x\r\n");
    }

    #[test]
    fn hostile_commands() {
        let mb = mailbox(&[10, 20], &[10]);
        for cmd in [
            "$",
            "a $",
            "a FETCH $",
            "a FETCH \"$",
            "a FETCH {99999999999999}\r\n$",
            "a FETCH {5}\r\n$",
            "a SEARCH {1}",
            "a SEARCH \\\"$\\",
            "a UID",
            "a UID $ $ $",
            "a SEARCH UID",
            "a SEARCH $$ $",
            "a SEARCH ((((($)))))\r\n",
        ] {
            let _ = substitute_dollar(cmd.as_bytes(), Some(&mb));
        }
        assert_eq!(
            sub("a SEARCH ((((($)))))\r\n", &mb),
            "a SEARCH (((((1)))))\r\n"
        );
        // Only the message-set argument of FETCH is a set.
        assert_eq!(sub("a FETCH 1 $\r\n", &mb), "a FETCH 1 $\r\n");
        let many = format!("a SEARCH {}\r\n", "$ ".repeat(50_000));
        let start = std::time::Instant::now();
        assert_eq!(sub(&many, &mb).matches('1').count(), 50_000);
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
    }
}
