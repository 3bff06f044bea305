//! CONTEXT=SEARCH and CONTEXT=SORT (RFC 5267 §4): `RETURN (UPDATE)` keeps the result of a
//! SEARCH or SORT live for as long as the mailbox stays selected, and the client is told how it
//! changes with unsolicited `* ESEARCH (TAG "t") [UID] ADDTO (...)` / `REMOVEFROM (...)`.
//!
//! A context keeps its result as UIDs in result order, the criteria, and the highest MODSEQ it
//! has seen. Every time the session brings its view up to date
//! ([`ImapSession::sync_selected`]) the contexts are brought up to date too, after the EXISTS
//! and FETCH responses of the merge (so the message numbers of an ADDTO are valid, §4.3.3) and
//! before any EXPUNGE or VANISHED (so those of a REMOVEFROM still are, §4.3.4). A message
//! waiting to be announced as expunged no longer matches.
//!
//! Only messages that changed are evaluated again: the view logs the UIDs it adds or whose
//! flags it changes (its own STORE or another session's, whatever their MODSEQ order), and a
//! message's text never changes, so any other message still answers the criteria as before.
//! (MODSEQ alone would not do: this session's own STORE can raise the view's highest MODSEQ
//! above a change made elsewhere that the view has not merged yet.) Criteria that depend on more than the
//! message are the exception: message numbers and `*` (positions move when messages come and
//! go) make the whole view evaluated again when it changes, and WITHIN (time) on every update.
//!
//! SEARCH contexts report position 0 with sets in mailbox order; SORT contexts report the
//! 1-based positions of §4.3.3/§4.3.4 (sort keys never change, so survivors keep their order
//! and only insertions and removals need positions). The CONTEXT return option is a hint that
//! is accepted and ignored (§4.2); PARTIAL is in [`super::esearch`].
//!
//! Contexts end with the selection (SELECT, EXAMINE, CLOSE, UNSELECT, or the mailbox going
//! away) and with `CANCELUPDATE "tag" ...` (§4.3.5). A session keeps at most
//! `[limits] imap_max_update_contexts`; past that a search answers `* NO [NOUPDATE "tag"]` and
//! completes without updates (§4.3.1).

use std::collections::HashSet;
use std::rc::Rc;

use imap_codec::imap_types::{
    IntoStatic,
    extensions::sort::{SortCriterion, SortKey},
    search::SearchKey,
    sequence::{SeqOrUid, Sequence, SequenceSet},
};

use super::mailbox::{Reporting, SelectedMailbox};
use super::message_fields::{MessageFields, fields_for};
use super::search::{self, SearchMessage};
use super::sequence::format_sorted;
use super::session::ImapSession;
use super::sort::sort_order;
use super::{ImapError, ImapResult};
use crate::imap_w;
use crate::store::MailStore;

/// What besides the message itself the criteria depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Depends {
    /// Only the message (flags, MODSEQ, text, dates).
    Message,
    /// Message numbers or `*`: positions in the view.
    Position,
    /// The clock (WITHIN's YOUNGER / OLDER).
    Time,
}

/// One live result (`RETURN (UPDATE)`).
pub struct UpdateContext {
    tag: String,
    uid: bool,
    key: SearchKey<'static>,
    /// None for SEARCH (mailbox order, position 0).
    sort: Option<Vec<SortCriterion>>,
    /// UIDs in result order.
    result: Vec<u32>,
    /// Length of the view when `result` was computed.
    view_len: usize,
    depends: Depends,
}

/// The criteria of a command as one key (a list of keys is their AND).
pub(crate) fn combine(keys: Vec<SearchKey<'_>>) -> ImapResult<SearchKey<'static>> {
    let key = if keys.len() == 1 {
        keys.into_iter().next().unwrap_or(SearchKey::All)
    } else {
        SearchKey::And(
            keys.try_into()
                .map_err(|_| ImapError::bad("Empty search"))?,
        )
    };
    Ok(key.into_static())
}

/// The view indices among `candidates` whose message matches `key`, in the order given.
pub(crate) fn matching_among<S: MailStore>(
    store: &S,
    account: &str,
    mb: &SelectedMailbox,
    rep: Reporting,
    key: &SearchKey<'_>,
    candidates: impl IntoIterator<Item = usize>,
) -> Vec<usize> {
    let exists = mb.exists();
    let max_uid = mb.max_uid();
    let mut loader = |u: u32| store.read(account, &mb.name, u).ok();
    let mut found = Vec::new();
    for i in candidates {
        let meta = &mb.messages[i];
        let mut m = SearchMessage::new(i as u32 + 1, meta, exists, max_uid, &mut loader);
        m.recent = mb.is_recent(meta.uid, rep);
        if search::matches(key, &mut m) {
            found.push(i);
        }
    }
    found
}

fn depends(key: &SearchKey<'_>) -> Depends {
    let has_star = |set: &SequenceSet| {
        set.0.as_ref().iter().any(|s| match s {
            Sequence::Single(v) => *v == SeqOrUid::Asterisk,
            Sequence::Range(a, b) => *a == SeqOrUid::Asterisk || *b == SeqOrUid::Asterisk,
        })
    };
    let max = |a: Depends, b: Depends| match (a, b) {
        (Depends::Time, _) | (_, Depends::Time) => Depends::Time,
        (Depends::Position, _) | (_, Depends::Position) => Depends::Position,
        _ => Depends::Message,
    };
    match key {
        SearchKey::And(keys) => keys
            .as_ref()
            .iter()
            .map(depends)
            .fold(Depends::Message, max),
        SearchKey::Or(a, b) => max(depends(a), depends(b)),
        SearchKey::Not(k) => depends(k),
        SearchKey::SequenceSet(_) => Depends::Position,
        SearchKey::Uid(set) if has_star(set) => Depends::Position,
        SearchKey::Younger(_) | SearchKey::Older(_) => Depends::Time,
        _ => Depends::Message,
    }
}

/// `CANCELUPDATE "t1" "t2" ...` (RFC 5267 §5: `"CANCELUPDATE" 1*(SP quoted)`): None if the
/// command is another one, else the tags or a syntax error.
pub fn parse_cancel_update(cmd: &[u8]) -> Option<Result<Vec<String>, &'static str>> {
    let at = memchr::memchr(b' ', cmd)? + 1;
    let verb = b"CANCELUPDATE";
    let rest = cmd.get(at..)?;
    if rest.len() < verb.len() || !rest[..verb.len()].eq_ignore_ascii_case(verb) {
        return None;
    }
    let mut s = &rest[verb.len()..];
    s = s.strip_suffix(b"\n").unwrap_or(s);
    s = s.strip_suffix(b"\r").unwrap_or(s);
    if !s.is_empty() && s[0] != b' ' {
        return None;
    }
    let mut tags = Vec::new();
    while !s.is_empty() {
        let Some(q) = s.strip_prefix(b" \"") else {
            return Some(Err("CANCELUPDATE takes quoted tags"));
        };
        let mut tag = Vec::new();
        let mut i = 0;
        loop {
            match q.get(i) {
                None => return Some(Err("Unterminated quoted string")),
                Some(b'"') => break,
                Some(b'\\') => match q.get(i + 1) {
                    Some(&c @ (b'"' | b'\\')) => {
                        tag.push(c);
                        i += 2;
                    }
                    _ => return Some(Err("Invalid escape in quoted string")),
                },
                Some(b'\r' | b'\n' | 0) => return Some(Err("Invalid quoted string")),
                Some(&c) => {
                    tag.push(c);
                    i += 1;
                }
            }
        }
        match String::from_utf8(tag) {
            Ok(t) if !t.is_empty() => tags.push(t),
            _ => return Some(Err("Invalid tag")),
        }
        s = &q[i + 1..];
    }
    if tags.is_empty() {
        return Some(Err("CANCELUPDATE needs at least one tag"));
    }
    Some(Ok(tags))
}

/// `n1,n2:n4` with the numbers in the order given (ascending runs become ranges).
fn set(numbers: &[u32]) -> String {
    format_sorted(numbers)
}

impl ImapSession {
    /// Before a SEARCH or SORT with UPDATE runs: a tag that already names a live context is
    /// refused (RFC 5267 §4.3: "SHALL result in ... a BAD response").
    pub(crate) fn check_update_tag(&self, tag: &str) -> ImapResult<()> {
        let in_use = self
            .selected
            .as_ref()
            .is_some_and(|mb| mb.contexts.iter().any(|c| c.tag == tag));
        if in_use {
            return Err(ImapError::bad("Tag reuse"));
        }
        Ok(())
    }

    /// Is there room for one more context? If not, say NOUPDATE now, before the command's
    /// results (§4.3.1: the other return options are still honoured).
    pub(crate) fn room_for_context(&self, tag: &str, out: &mut Vec<u8>) -> bool {
        let used = self.selected.as_ref().map_or(0, |mb| mb.contexts.len());
        if used >= self.config.limits.max_update_contexts {
            imap_w!(
                out,
                "* NO [NOUPDATE \"{tag}\"] Too many contexts (at most {} per session)\r\n",
                self.config.limits.max_update_contexts
            );
            return false;
        }
        true
    }

    /// Keep the result just returned (view indices in result order) live.
    pub(crate) fn start_context(
        &mut self,
        tag: &str,
        uid: bool,
        key: SearchKey<'static>,
        sort: Option<Vec<SortCriterion>>,
        order: &[usize],
    ) {
        let Some(mb) = self.selected.as_mut() else {
            return;
        };
        let ctx = UpdateContext {
            tag: tag.to_string(),
            uid,
            depends: depends(&key),
            key,
            sort,
            result: order.iter().map(|&i| mb.messages[i].uid).collect(),
            view_len: mb.messages.len(),
        };
        mb.contexts.push(ctx);
    }

    /// `CANCELUPDATE`: stop the named contexts. Unknown tags are reported (NO) after the known
    /// ones are cancelled.
    pub(crate) fn cancel_update(&mut self, tag: &str, tags: &[String], out: &mut Vec<u8>) {
        let Some(mb) = self.selected.as_mut() else {
            ImapError::bad("No mailbox selected").write_tagged(tag, out);
            return;
        };
        let mut unknown = Vec::new();
        for t in tags {
            let before = mb.contexts.len();
            mb.contexts.retain(|c| &c.tag != t);
            if mb.contexts.len() == before {
                unknown.push(t.as_str());
            }
        }
        if unknown.is_empty() {
            imap_w!(out, "{tag} OK CANCELUPDATE completed\r\n");
        } else {
            imap_w!(
                out,
                "{tag} NO No update context for {}\r\n",
                unknown.join(" ")
            );
        }
    }

    /// This session expunged `uids` itself: REMOVEFROM, then EXPUNGE / VANISHED.
    pub(crate) fn expunged_here<S: MailStore>(
        &mut self,
        store: &S,
        uids: &[u32],
        out: &mut Vec<u8>,
    ) {
        let rep = self.reporting;
        if let Some(mb) = self.selected.as_mut() {
            mb.pending_expunge.extend(uids.iter().copied());
        }
        self.update_contexts(store, out);
        if let Some(mb) = self.selected.as_mut() {
            mb.announce_expunges(rep, out);
        }
        // Criteria on message numbers now mean other messages.
        self.update_contexts(store, out);
    }

    /// Bring every context up to date with the view, writing ADDTO / REMOVEFROM. Call after
    /// the view's EXISTS and before its EXPUNGE responses (see the module docs).
    pub(crate) fn update_contexts<S: MailStore>(&mut self, store: &S, out: &mut Vec<u8>) {
        let account = self.account.clone().unwrap_or_default();
        let rep = self.reporting;
        let Some(mb) = self.selected.as_mut() else {
            return;
        };
        if mb.contexts.is_empty() {
            return;
        }
        let mut contexts = std::mem::take(&mut mb.contexts);
        let mb: &SelectedMailbox = mb;
        for ctx in &mut contexts {
            update_one(store, &account, mb, rep, ctx, out);
        }
        if let Some(mb) = self.selected.as_mut() {
            mb.contexts = contexts;
            mb.changed_uids.clear();
        }
    }
}

fn update_one<S: MailStore>(
    store: &S,
    account: &str,
    mb: &SelectedMailbox,
    rep: Reporting,
    ctx: &mut UpdateContext,
    out: &mut Vec<u8>,
) {
    let view = &mb.messages;
    // Every change to the view is logged in `changed_uids`, leaves an expunge pending or
    // changes its length: without any of them only the clock can change a result.
    let quiet =
        mb.changed_uids.is_empty() && view.len() == ctx.view_len && mb.pending_expunge.is_empty();
    if quiet && ctx.depends != Depends::Time {
        return;
    }
    let gone = |uid: u32| mb.pending_expunge.contains(&uid) || mb.index_of(uid).is_none();
    let full = match ctx.depends {
        Depends::Time => true,
        Depends::Position => !quiet,
        Depends::Message => false,
    };
    let mut candidates: Vec<usize> = if full {
        (0..view.len()).collect()
    } else {
        mb.changed_uids
            .iter()
            .filter_map(|&u| mb.index_of(u))
            .collect()
    };
    candidates.sort_unstable();
    candidates.dedup();
    candidates.retain(|&i| !mb.pending_expunge.contains(&view[i].uid));
    let evaluated: HashSet<u32> = candidates.iter().map(|&i| view[i].uid).collect();
    let matched: HashSet<u32> = matching_among(store, account, mb, rep, &ctx.key, candidates)
        .into_iter()
        .map(|i| view[i].uid)
        .collect();
    ctx.view_len = view.len();
    // Differences only: both sets are as small as the change (the result may be large).
    let removed: HashSet<u32> = ctx
        .result
        .iter()
        .copied()
        .filter(|&u| gone(u) || (evaluated.contains(&u) && !matched.contains(&u)))
        .collect();
    let added: HashSet<u32> = if ctx.sort.is_none() {
        // A SEARCH result is in UID order.
        matched
            .iter()
            .copied()
            .filter(|u| ctx.result.binary_search(u).is_err())
            .collect()
    } else if matched.is_empty() {
        HashSet::new()
    } else {
        let old: HashSet<u32> = ctx.result.iter().copied().collect();
        matched
            .iter()
            .copied()
            .filter(|u| !old.contains(u))
            .collect()
    };
    if removed.is_empty() && added.is_empty() {
        return;
    }
    let mut members: Vec<usize> = ctx
        .result
        .iter()
        .filter(|u| !removed.contains(u))
        .chain(added.iter())
        .filter_map(|&u| mb.index_of(u))
        .collect();
    members.sort_unstable();
    let order = match &ctx.sort {
        None => members,
        Some(criteria) => {
            let needs_fields = criteria
                .iter()
                .any(|c| !matches!(c.key, SortKey::Arrival | SortKey::Size));
            let fields = if needs_fields {
                fields_for(store, account, &mb.name, mb.uidvalidity, view, &members)
            } else {
                Vec::new()
            };
            if added.len() * 16 < members.len() {
                // Sort keys never change, so the survivors keep their order: only the new
                // members need placing (a few comparisons each, not a sort of the result).
                let field = |i: usize| -> Vec<Rc<MessageFields>> {
                    match members.binary_search(&i) {
                        Ok(k) if needs_fields => vec![fields[k].clone()],
                        _ => Vec::new(),
                    }
                };
                let before = |a: usize, b: usize| -> bool {
                    let mut f = field(a);
                    f.extend(field(b));
                    sort_order(view, &[a, b], &f, criteria)[0] == a
                };
                let mut order: Vec<usize> = ctx
                    .result
                    .iter()
                    .filter(|u| !removed.contains(u))
                    .filter_map(|&u| mb.index_of(u))
                    .collect();
                let mut fresh: Vec<usize> = added.iter().filter_map(|&u| mb.index_of(u)).collect();
                fresh.sort_unstable();
                for i in fresh {
                    let at = order.partition_point(|&j| before(j, i));
                    order.insert(at, i);
                }
                order
            } else {
                sort_order(view, &members, &fields, criteria)
            }
        }
    };
    let new: Vec<u32> = order.iter().map(|&i| view[i].uid).collect();
    write_changes(ctx, mb, &new, &removed, &added, out);
    ctx.result = new;
}

/// REMOVEFROM then ADDTO turning `ctx.result` into `new` (both in result order), `removed`
/// and `added` being their differences.
fn write_changes(
    ctx: &UpdateContext,
    mb: &SelectedMailbox,
    new: &[u32],
    removed: &HashSet<u32>,
    added: &HashSet<u32>,
    out: &mut Vec<u8>,
) {
    let number = |u: u32| -> Option<u32> {
        if ctx.uid {
            Some(u)
        } else {
            mb.index_of(u).map(|i| i as u32 + 1)
        }
    };
    // (position, numbers) pairs, each applied in turn on the client's list.
    let mut removals: Vec<(usize, Vec<u32>)> = Vec::new();
    let mut additions: Vec<(usize, Vec<u32>)> = Vec::new();
    if ctx.sort.is_none() {
        let mut gone: Vec<u32> = removed.iter().filter_map(|&u| number(u)).collect();
        gone.sort_unstable();
        if !gone.is_empty() {
            removals.push((0, gone));
        }
        let mut fresh: Vec<u32> = added.iter().filter_map(|&u| number(u)).collect();
        fresh.sort_unstable();
        if !fresh.is_empty() {
            additions.push((0, fresh));
        }
    } else {
        // Runs of removed entries; earlier runs are gone by the time a later one is applied.
        let mut removed_before = 0;
        let mut i = 0;
        while i < ctx.result.len() {
            if !removed.contains(&ctx.result[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < ctx.result.len() && removed.contains(&ctx.result[i]) {
                i += 1;
            }
            let run: Vec<u32> = ctx.result[start..i]
                .iter()
                .filter_map(|&u| number(u))
                .collect();
            removals.push((start - removed_before + 1, run));
            removed_before += i - start;
        }
        // Runs of added entries, applied left to right: everything before a run is in place.
        let mut j = 0;
        while j < new.len() {
            if !added.contains(&new[j]) {
                j += 1;
                continue;
            }
            let start = j;
            while j < new.len() && added.contains(&new[j]) {
                j += 1;
            }
            let run: Vec<u32> = new[start..j].iter().filter_map(|&u| number(u)).collect();
            additions.push((start + 1, run));
        }
    }
    for (item, pairs) in [("REMOVEFROM", &removals), ("ADDTO", &additions)] {
        if pairs.is_empty() {
            continue;
        }
        imap_w!(out, "* ESEARCH (TAG \"{}\")", ctx.tag);
        if ctx.uid {
            out.extend_from_slice(b" UID");
        }
        imap_w!(out, " {item} (");
        for (k, (pos, numbers)) in pairs.iter().enumerate() {
            if k > 0 {
                out.push(b' ');
            }
            imap_w!(out, "{pos} {}", set(numbers));
        }
        out.extend_from_slice(b")\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancel_update_syntax() {
        let p = |s: &str| parse_cancel_update(s.as_bytes());
        assert_eq!(p("a CANCELUPDATE \"b1\"\r\n"), Some(Ok(vec!["b1".into()])));
        assert_eq!(
            p("a cancelupdate \"b1\" \"x\\\"y\"\r\n"),
            Some(Ok(vec!["b1".into(), "x\"y".into()]))
        );
        assert_eq!(p("a CANCELUPDATES \"b1\"\r\n"), None);
        assert_eq!(p("a NOOP\r\n"), None);
        for bad in [
            "a CANCELUPDATE\r\n",
            "a CANCELUPDATE b1\r\n",
            "a CANCELUPDATE \"b1\r\n",
            "a CANCELUPDATE \"\"\r\n",
            "a CANCELUPDATE \"b1\"  \"b2\"\r\n",
            "a CANCELUPDATE \"b1\" x\r\n",
            "a CANCELUPDATE \"a\\b\"\r\n",
        ] {
            assert!(matches!(p(bad), Some(Err(_))), "{bad}");
        }
    }

    #[test]
    fn what_criteria_depend_on() {
        use imap_codec::{CommandCodec, decode::Decoder, imap_types::command::CommandBody};
        let key = |c: &str| {
            let line = format!("a SEARCH {c}\r\n");
            match CommandCodec::default()
                .decode(line.as_bytes())
                .unwrap()
                .1
                .body
            {
                CommandBody::Search { criteria, .. } => combine(criteria.into_inner()).unwrap(),
                _ => unreachable!(),
            }
        };
        assert_eq!(depends(&key("SEEN KEYWORD x")), Depends::Message);
        assert_eq!(depends(&key("UID 1:5")), Depends::Message);
        assert_eq!(depends(&key("UID 5:*")), Depends::Position);
        assert_eq!(depends(&key("NOT 1:3")), Depends::Position);
        assert_eq!(depends(&key("OR SEEN YOUNGER 60")), Depends::Time);
    }
}
