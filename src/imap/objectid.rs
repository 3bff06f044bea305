//! OBJECTID (RFC 8474): MAILBOXID, EMAILID and THREADID.
//!
//! * MAILBOXID is `M<id>-<uidvalidity>` from the store's mailbox id, which is never reused in a
//!   shard (the counter survives compaction as a `ShardState` record) and which RENAME keeps.
//!   The UIDVALIDITY (also never reused, and unchanged by RENAME) keeps a rebuilt store from
//!   handing an old id to a new mailbox.
//! * EMAILID is `E<mailbox>-<uid>`: the mailbox and UID the message was first stored under (see
//!   `store::EmailId`), which COPY and MOVE carry along, so a copy has its source's EMAILID.
//!   Messages stored before the store recorded it get their own mailbox and UID, so their id
//!   is stable too.
//! * THREADID is always NIL: surel threads only on request (THREAD), per mailbox, so it has no
//!   thread identity that would stay the same across mailboxes and over time. RFC 8474 §5.2
//!   lets a server that does not thread return NIL; `SEARCH THREADID x` then matches nothing.
//!
//! imap-codec knows none of this syntax: [`extract_fetch_items`] cuts the FETCH items out as
//! `preview::extract_preview` does, [`extract_status_mailboxid`] cuts the STATUS item, and the
//! SEARCH keys are parsed by `search_criteria` into [`ExtensionKey`]s carried in a HEADER key
//! whose field name no message can have (it contains a colon).

use crate::store::EmailId;

/// MAILBOXID of a mailbox.
pub fn mailbox_id(id: u64, uidvalidity: u32) -> String {
    format!("M{id}-{uidvalidity}")
}

/// EMAILID of a message.
pub fn email_id(id: EmailId) -> String {
    format!("E{}-{}", id.mailbox, id.uid)
}

/// RFC 8474 §3: `objectid = 1*255(ALPHA / DIGIT / "_" / "-")`.
pub fn is_objectid(s: &[u8]) -> bool {
    (1..=255).contains(&s.len())
        && s.iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-')
}

/// FETCH items of OBJECTID and SAVEDATE found in a FETCH command.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExtraFetchItems {
    pub email_id: bool,
    pub thread_id: bool,
    /// RFC 8514, see [`super::savedate`].
    pub save_date: bool,
    /// These were the only items: the command handed to imap-codec asks for UID in their
    /// place, which a plain FETCH must then not send.
    pub alone: bool,
}

fn extra_item(word: &[u8], items: &mut ExtraFetchItems) -> bool {
    let flag = if word.eq_ignore_ascii_case(b"EMAILID") {
        &mut items.email_id
    } else if word.eq_ignore_ascii_case(b"THREADID") {
        &mut items.thread_id
    } else if word.eq_ignore_ascii_case(b"SAVEDATE") {
        &mut items.save_date
    } else {
        return false;
    };
    *flag = true;
    true
}

/// Cuts EMAILID, THREADID and SAVEDATE out of the FETCH items starting at `items_at`; `None`
/// when there are none.
pub fn extract_fetch_items(
    cmd: &[u8],
    items_at: usize,
) -> Result<Option<(Vec<u8>, ExtraFetchItems)>, String> {
    use super::preview::{group_end, split_top, token_end};
    let mut items = ExtraFetchItems::default();
    if cmd.get(items_at) != Some(&b'(') {
        let end = token_end(cmd, items_at);
        if !extra_item(&cmd[items_at..end], &mut items) {
            return Ok(None);
        }
        items.alone = true;
        let mut out = cmd[..items_at].to_vec();
        out.extend_from_slice(b"UID");
        out.extend_from_slice(&cmd[end..]);
        return Ok(Some((out, items)));
    }
    let close = group_end(cmd, items_at).ok_or("Unbalanced parentheses")?;
    let inner = &cmd[items_at + 1..close - 1];
    let kept: Vec<&[u8]> = split_top(inner)
        .into_iter()
        .filter(|t| !extra_item(t, &mut items))
        .collect();
    if items == ExtraFetchItems::default() {
        return Ok(None);
    }
    items.alone = kept.is_empty();
    let mut out = cmd[..items_at].to_vec();
    out.push(b'(');
    if items.alone {
        out.extend_from_slice(b"UID");
    }
    out.extend_from_slice(&kept.join(&b' '));
    out.push(b')');
    out.extend_from_slice(&cmd[close..]);
    Ok(Some((out, items)))
}

/// The STATUS item MAILBOXID: `Some(alone)` when the item list starting at `items_at` holds it
/// (cut out; when it was alone, MESSAGES stands in for it and is not to be sent).
pub fn extract_status_mailboxid(
    cmd: &[u8],
    items_at: usize,
) -> Result<Option<(Vec<u8>, bool)>, String> {
    use super::preview::{group_end, split_top};
    if cmd.get(items_at) != Some(&b'(') {
        return Ok(None);
    }
    let close = group_end(cmd, items_at).ok_or("Unbalanced parentheses")?;
    let tokens = split_top(&cmd[items_at + 1..close - 1]);
    let kept: Vec<&[u8]> = tokens
        .iter()
        .copied()
        .filter(|t| !t.eq_ignore_ascii_case(b"MAILBOXID"))
        .collect();
    if kept.len() == tokens.len() {
        return Ok(None);
    }
    let alone = kept.is_empty();
    let mut out = cmd[..items_at].to_vec();
    out.push(b'(');
    if alone {
        out.extend_from_slice(b"MESSAGES");
    }
    out.extend_from_slice(&kept.join(&b' '));
    out.push(b')');
    out.extend_from_slice(&cmd[close..]);
    Ok(Some((out, alone)))
}

/// A SEARCH key of OBJECTID or SAVEDATE, which imap-types has no variant for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtensionKey {
    EmailId(String),
    ThreadId(String),
    /// RFC 8514 keys, with the day (days since the epoch) they compare with.
    SavedBefore(i64),
    SavedOn(i64),
    SavedSince(i64),
    SaveDateSupported,
}

/// Field name prefix of the HEADER key that carries an [`ExtensionKey`]: a colon cannot occur
/// in a header field name, so no client search for a real field is taken for one.
const CARRIER: &str = ":surel:";

/// Search key names handled here, with their number of arguments.
pub fn search_key_arguments(name: &[u8]) -> Option<usize> {
    const ONE: &[&[u8]] = &[
        b"EMAILID",
        b"THREADID",
        b"SAVEDBEFORE",
        b"SAVEDON",
        b"SAVEDSINCE",
    ];
    if name.eq_ignore_ascii_case(b"SAVEDATESUPPORTED") {
        Some(0)
    } else if ONE.iter().any(|k| name.eq_ignore_ascii_case(k)) {
        Some(1)
    } else {
        None
    }
}

/// Parses an extension key from its name and argument (`day` converts an IMAP date).
pub fn parse_search_key(
    name: &[u8],
    arg: Option<&[u8]>,
    day: impl Fn(&[u8]) -> Option<i64>,
) -> Result<ExtensionKey, &'static str> {
    let name = name.to_ascii_uppercase();
    let id = |a: Option<&[u8]>| -> Result<String, &'static str> {
        let a = a.ok_or("Missing search key argument")?;
        if !is_objectid(a) {
            return Err("Invalid object id");
        }
        Ok(String::from_utf8_lossy(a).into_owned())
    };
    let date =
        |a: Option<&[u8]>| -> Result<i64, &'static str> { a.and_then(&day).ok_or("Invalid date") };
    Ok(match name.as_slice() {
        b"EMAILID" => ExtensionKey::EmailId(id(arg)?),
        b"THREADID" => ExtensionKey::ThreadId(id(arg)?),
        b"SAVEDBEFORE" => ExtensionKey::SavedBefore(date(arg)?),
        b"SAVEDON" => ExtensionKey::SavedOn(date(arg)?),
        b"SAVEDSINCE" => ExtensionKey::SavedSince(date(arg)?),
        b"SAVEDATESUPPORTED" => ExtensionKey::SaveDateSupported,
        _ => return Err("Invalid search key"),
    })
}

impl ExtensionKey {
    /// (field name, value) of the carrier HEADER key.
    pub fn to_carrier(&self) -> (String, String) {
        let (kind, value) = match self {
            ExtensionKey::EmailId(v) => ("EMAILID", v.clone()),
            ExtensionKey::ThreadId(v) => ("THREADID", v.clone()),
            ExtensionKey::SavedBefore(d) => ("SAVEDBEFORE", d.to_string()),
            ExtensionKey::SavedOn(d) => ("SAVEDON", d.to_string()),
            ExtensionKey::SavedSince(d) => ("SAVEDSINCE", d.to_string()),
            ExtensionKey::SaveDateSupported => ("SAVEDATESUPPORTED", String::new()),
        };
        (format!("{CARRIER}{kind}"), value)
    }

    /// The key a carrier HEADER key stands for; `None` for a real HEADER key.
    pub fn from_carrier(name: &[u8], value: &[u8]) -> Option<ExtensionKey> {
        let kind = name.strip_prefix(CARRIER.as_bytes())?;
        let value = std::str::from_utf8(value).ok()?;
        let day = || value.parse::<i64>().ok();
        Some(match kind {
            b"EMAILID" => ExtensionKey::EmailId(value.to_string()),
            b"THREADID" => ExtensionKey::ThreadId(value.to_string()),
            b"SAVEDBEFORE" => ExtensionKey::SavedBefore(day()?),
            b"SAVEDON" => ExtensionKey::SavedOn(day()?),
            b"SAVEDSINCE" => ExtensionKey::SavedSince(day()?),
            b"SAVEDATESUPPORTED" => ExtensionKey::SaveDateSupported,
            _ => return None,
        })
    }

    /// Does the message match? Needs only its metadata.
    pub fn matches(&self, meta: &crate::store::MessageMeta) -> bool {
        match self {
            ExtensionKey::EmailId(id) => *id == email_id(meta.email_id),
            // No message has a THREADID (see the module doc).
            ExtensionKey::ThreadId(_) => false,
            ExtensionKey::SavedBefore(d) => super::savedate::save_day(meta) < *d,
            ExtensionKey::SavedOn(d) => super::savedate::save_day(meta) == *d,
            ExtensionKey::SavedSince(d) => super::savedate::save_day(meta) >= *d,
            ExtensionKey::SaveDateSupported => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut(cmd: &str) -> Result<Option<(String, ExtraFetchItems)>, String> {
        let items_at = cmd.find(" 1 ").map(|i| i + 3).unwrap();
        extract_fetch_items(cmd.as_bytes(), items_at)
            .map(|o| o.map(|(c, r)| (String::from_utf8(c).unwrap(), r)))
    }

    #[test]
    fn fetch_items_are_cut() {
        let items = |e, t, s, alone| ExtraFetchItems {
            email_id: e,
            thread_id: t,
            save_date: s,
            alone,
        };
        assert_eq!(
            cut("a FETCH 1 EMAILID\r\n"),
            Ok(Some((
                "a FETCH 1 UID\r\n".into(),
                items(true, false, false, true)
            )))
        );
        assert_eq!(
            cut("a UID FETCH 1 (emailid FLAGS ThreadId SAVEDATE) (CHANGEDSINCE 3)\r\n"),
            Ok(Some((
                "a UID FETCH 1 (FLAGS) (CHANGEDSINCE 3)\r\n".into(),
                items(true, true, true, false)
            )))
        );
        assert_eq!(
            cut("a FETCH 1 (SAVEDATE THREADID)\r\n"),
            Ok(Some((
                "a FETCH 1 (UID)\r\n".into(),
                items(false, true, true, true)
            )))
        );
        assert_eq!(cut("a FETCH 1 (FLAGS EMAILIDS)\r\n"), Ok(None));
        assert_eq!(
            cut("a FETCH 1 (EMAILID\r\n"),
            Err("Unbalanced parentheses".into())
        );
    }

    #[test]
    fn status_item_is_cut() {
        let cut = |c: &str| {
            let at = c.find('(').unwrap();
            extract_status_mailboxid(c.as_bytes(), at)
                .map(|o| o.map(|(c, a)| (String::from_utf8(c).unwrap(), a)))
        };
        assert_eq!(
            cut("a STATUS x (MAILBOXID)\r\n"),
            Ok(Some(("a STATUS x (MESSAGES)\r\n".into(), true)))
        );
        assert_eq!(
            cut("a STATUS x (UIDNEXT mailboxid MESSAGES)\r\n"),
            Ok(Some(("a STATUS x (UIDNEXT MESSAGES)\r\n".into(), false)))
        );
        assert_eq!(cut("a STATUS x (UIDNEXT)\r\n"), Ok(None));
    }

    #[test]
    fn ids_follow_the_objectid_syntax() {
        assert!(is_objectid(mailbox_id(u64::MAX, u32::MAX).as_bytes()));
        assert!(is_objectid(
            email_id(EmailId {
                mailbox: 7,
                uid: 42
            })
            .as_bytes()
        ));
        assert!(!is_objectid(b""));
        assert!(!is_objectid(b"a b"));
        assert!(!is_objectid(&[b'a'; 256]));
        let key = ExtensionKey::SavedOn(19_000);
        let (name, value) = key.to_carrier();
        assert_eq!(
            ExtensionKey::from_carrier(name.as_bytes(), value.as_bytes()),
            Some(key)
        );
        assert_eq!(ExtensionKey::from_carrier(b"Subject", b"x"), None);
    }
}
