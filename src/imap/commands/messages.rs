//! EXPUNGE / UID EXPUNGE, SEARCH (ESEARCH), STORE (UNCHANGEDSINCE), COPY / MOVE (COPYUID).

use imap_codec::imap_types::{
    command::StoreModifier,
    flag::{Flag, StoreResponse, StoreType},
    mailbox::Mailbox,
    search::SearchKey,
    sequence::SequenceSet,
};

use super::{mailbox_name, to_flags};
use crate::imap::codec::SearchReturn;
use crate::imap::context;
use crate::imap::esearch;
use crate::imap::mailbox::write_flags_fetch;
use crate::imap::search;
use crate::imap::sequence;
use crate::imap::session::{ImapSession, Step};
use crate::imap::{ImapError, ImapResult};
use crate::imap_w;
use crate::store::{FlagOp, MailStore, SystemFlags};

/// Messages matched by search criteria.
pub(crate) struct Matching {
    /// View indices, ascending.
    pub indices: Vec<usize>,
    /// Highest MODSEQ among them (reported when the criteria mention MODSEQ, RFC 7162).
    pub max_modseq: u64,
    pub mentions_modseq: bool,
}

impl ImapSession {
    pub(super) async fn expunge<S: MailStore>(
        &mut self,
        store: &S,
        tag: &str,
        set: Option<&SequenceSet>,
        out: &mut Vec<u8>,
    ) -> ImapResult<Step> {
        let account = self.account_name();
        let rep = self.reporting;
        let mb = self
            .selected
            .as_mut()
            .ok_or_else(|| ImapError::bad("No mailbox selected"))?;
        if mb.read_only {
            return Err(ImapError::no_code("READ-ONLY", "Mailbox is read-only"));
        }
        let candidates: Vec<usize> = match set {
            Some(s) => mb.resolve_uid(s),
            None => (0..mb.messages.len()).collect(),
        };
        let deleted: Vec<u32> = candidates
            .into_iter()
            .map(|i| &mb.messages[i])
            .filter(|m| m.flags.system.0 & SystemFlags::DELETED != 0)
            .map(|m| m.uid)
            .collect();
        if !deleted.is_empty() {
            let gone = store.expunge(&account, &mb.name, &deleted).await?;
            self.expunged_here(store, &gone, out);
        }
        self.sync_selected(store, true, out);
        let highest = self.selected.as_ref().map_or(0, |m| m.highest_modseq);
        if rep.condstore {
            imap_w!(
                out,
                "{tag} OK [HIGHESTMODSEQ {highest}] EXPUNGE completed\r\n"
            );
        } else {
            imap_w!(out, "{tag} OK EXPUNGE completed\r\n");
        }
        Ok(Step::Done)
    }

    pub(super) fn search<S: MailStore>(
        &mut self,
        store: &S,
        tag: &str,
        keys: Vec<SearchKey<'_>>,
        uid: bool,
        ret: Option<SearchReturn>,
        out: &mut Vec<u8>,
    ) -> ImapResult<Step> {
        let update = ret.as_ref().is_some_and(|r| r.update);
        let live_key = if update {
            self.check_update_tag(tag)?;
            Some(context::combine(keys.clone())?)
        } else {
            None
        };
        let found = self.matching(store, keys)?;
        if found.mentions_modseq {
            // The first CONDSTORE-enabling command reports HIGHESTMODSEQ (RFC 7162 §3.1).
            self.enable_condstore(out);
        }
        let live_key = live_key.filter(|_| self.room_for_context(tag, out));
        let mb = self
            .selected
            .as_ref()
            .ok_or_else(|| ImapError::bad("No mailbox selected"))?;
        let hits = esearch::numbers(&mb.messages, &found.indices, uid);
        let modseq = found.mentions_modseq.then_some(found.max_modseq);
        match &ret {
            Some(r) => {
                // RFC 7162 §3.1.5 (with RFC 4731): MODSEQ is that of the messages returned.
                // With only MIN and/or MAX those are the messages; ALL, COUNT or PARTIAL stand
                // for every match.
                let modseq_of = |i: Option<&usize>| i.map_or(0, |&i| mb.messages[i].modseq);
                let returned = if r.all || r.count || r.partial.is_some() || !(r.min || r.max) {
                    modseq
                } else {
                    let mut m = 0;
                    if r.min {
                        m = m.max(modseq_of(found.indices.first()));
                    }
                    if r.max {
                        m = m.max(modseq_of(found.indices.last()));
                    }
                    modseq.map(|_| m)
                };
                esearch::write_esearch(out, tag, uid, r, &hits, returned)
            }
            None => {
                out.extend_from_slice(b"* SEARCH");
                for h in &hits {
                    imap_w!(out, " {h}");
                }
                if let Some(m) = modseq.filter(|_| !hits.is_empty()) {
                    imap_w!(out, " (MODSEQ {m})");
                }
                out.extend_from_slice(b"\r\n");
            }
        }
        if let Some(r) = ret.as_ref().filter(|r| r.save) {
            self.save_result(r, &found.indices);
        }
        if let Some(key) = live_key {
            self.start_context(tag, uid, key, None, &found.indices);
        }
        self.sync_selected(store, uid, out);
        imap_w!(out, "{tag} OK SEARCH completed\r\n");
        Ok(Step::Done)
    }

    /// The view indices (ascending) of the messages matching the criteria, as SEARCH, SORT
    /// and THREAD select them.
    pub(crate) fn matching<S: MailStore>(
        &self,
        store: &S,
        keys: Vec<SearchKey<'_>>,
    ) -> ImapResult<Matching> {
        let account = self.account_name();
        let mb = self
            .selected
            .as_ref()
            .ok_or_else(|| ImapError::bad("No mailbox selected"))?;
        let key = context::combine(keys)?;
        let indices = context::matching_among(
            store,
            &account,
            mb,
            self.reporting,
            &key,
            0..mb.messages.len(),
        );
        let max_modseq = indices
            .iter()
            .map(|&i| mb.messages[i].modseq)
            .max()
            .unwrap_or(0);
        Ok(Matching {
            indices,
            max_modseq,
            mentions_modseq: search::mentions_modseq(&key),
        })
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn store<S: MailStore>(
        &mut self,
        store: &S,
        tag: &str,
        set: &SequenceSet,
        kind: StoreType,
        response: StoreResponse,
        flags: &[Flag<'_>],
        uid: bool,
        modifiers: &[StoreModifier],
        out: &mut Vec<u8>,
    ) -> ImapResult<Step> {
        let account = self.account_name();
        let unchanged_since = modifiers
            .iter()
            .map(|StoreModifier::UnchangedSince(v)| *v)
            .next();
        if unchanged_since.is_some() {
            self.enable_condstore(out);
        }
        let rep = self.reporting;
        let mb = self
            .selected
            .as_mut()
            .ok_or_else(|| ImapError::bad("No mailbox selected"))?;
        if mb.read_only {
            return Err(ImapError::no_code("READ-ONLY", "Mailbox is read-only"));
        }
        let indices = if uid {
            mb.resolve_uid(set)
        } else {
            sequence::resolve_msn(set, mb.exists())?
        };
        let mut modified = Vec::new();
        let mut uids = Vec::with_capacity(indices.len());
        for &i in &indices {
            let m = &mb.messages[i];
            match unchanged_since {
                Some(us) if m.modseq > us => modified.push(if uid { m.uid } else { i as u32 + 1 }),
                _ => uids.push(m.uid),
            }
        }
        let op = match kind {
            StoreType::Replace => FlagOp::Replace,
            StoreType::Add => FlagOp::Add,
            StoreType::Remove => FlagOp::Remove,
        };
        let changed = if uids.is_empty() {
            Vec::new()
        } else {
            store
                .store_flags(
                    &account,
                    &mb.name,
                    &uids,
                    op,
                    to_flags(flags),
                    unchanged_since,
                )
                .await?
        };
        let changed_idx = mb.apply_flags(&changed);
        mb.announce_new_keywords(Some(&changed_idx), out);
        // Messages the store refused under UNCHANGEDSINCE (changed meanwhile elsewhere).
        if let Some(us) = unchanged_since {
            let done: std::collections::HashSet<u32> = changed.iter().map(|c| c.0).collect();
            for &u in &uids {
                if !done.contains(&u)
                    && let Some(i) = mb.index_of(u)
                    && mb.messages[i].modseq > us
                {
                    modified.push(if uid { u } else { i as u32 + 1 });
                }
            }
        }
        let silent = response == StoreResponse::Silent;
        for i in changed_idx {
            if !silent || rep.condstore {
                let m = &mb.messages[i];
                if silent {
                    imap_w!(out, "* {} FETCH (", i + 1);
                    if uid || rep.condstore {
                        imap_w!(out, "UID {} ", m.uid);
                    }
                    imap_w!(out, "MODSEQ ({}))\r\n", m.modseq);
                } else {
                    let recent = mb.is_recent(m.uid, rep);
                    write_flags_fetch(out, i + 1, m, uid || rep.condstore, rep.condstore, recent);
                }
            }
        }
        self.sync_selected(store, uid, out);
        if modified.is_empty() {
            imap_w!(out, "{tag} OK STORE completed\r\n");
        } else {
            imap_w!(
                out,
                "{tag} OK [MODIFIED {}] Conditional STORE failed\r\n",
                sequence::format_set(&modified)
            );
        }
        Ok(Step::Done)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn copy<S: MailStore>(
        &mut self,
        store: &S,
        tag: &str,
        set: &SequenceSet,
        dest: &Mailbox<'_>,
        uid: bool,
        is_move: bool,
        out: &mut Vec<u8>,
    ) -> ImapResult<Step> {
        let account = self.account_name();
        let dest = mailbox_name(dest, self.rev2)?;
        let dest_info = self.target_mailbox(store, &dest)?;
        let mb = self
            .selected
            .as_mut()
            .ok_or_else(|| ImapError::bad("No mailbox selected"))?;
        if is_move && mb.read_only {
            return Err(ImapError::no_code("READ-ONLY", "Mailbox is read-only"));
        }
        let indices = if uid {
            mb.resolve_uid(set)
        } else {
            sequence::resolve_msn(set, mb.exists())?
        };
        let uids: Vec<u32> = indices.iter().map(|&i| mb.messages[i].uid).collect();
        if uids.is_empty() {
            self.sync_selected(store, uid, out);
            imap_w!(out, "{tag} OK No messages\r\n");
            return Ok(Step::Done);
        }
        let pairs = store.copy(&account, &mb.name, &dest, &uids).await?;
        let (src, dst) = uid_pair_sets(&pairs);
        let copyuid = format!("COPYUID {} {src} {dst}", dest_info.uidvalidity);
        if is_move {
            imap_w!(out, "* OK [{copyuid}] Moved\r\n");
            let moved: Vec<u32> = pairs.iter().map(|p| p.0).collect();
            let gone = store.expunge(&account, &mb.name, &moved).await?;
            self.expunged_here(store, &gone, out);
            self.sync_selected(store, true, out);
            imap_w!(out, "{tag} OK MOVE completed\r\n");
        } else {
            if mb.name == dest {
                mb.mark_dirty();
            }
            self.sync_selected(store, true, out);
            imap_w!(out, "{tag} OK [{copyuid}] COPY completed\r\n");
        }
        Ok(Step::Done)
    }
}

/// COPYUID source and destination sets, in corresponding order, with runs that are
/// consecutive on both sides compressed to ranges.
pub(crate) fn uid_pair_sets(pairs: &[(u32, u32)]) -> (String, String) {
    let (mut src, mut dst) = (String::new(), String::new());
    let mut i = 0;
    while i < pairs.len() {
        let mut j = i;
        while j + 1 < pairs.len()
            && pairs[j + 1].0 == pairs[j].0 + 1
            && pairs[j + 1].1 == pairs[j].1 + 1
        {
            j += 1;
        }
        if !src.is_empty() {
            src.push(',');
            dst.push(',');
        }
        if i == j {
            src.push_str(&pairs[i].0.to_string());
            dst.push_str(&pairs[i].1.to_string());
        } else {
            src.push_str(&format!("{}:{}", pairs[i].0, pairs[j].0));
            dst.push_str(&format!("{}:{}", pairs[i].1, pairs[j].1));
        }
        i = j + 1;
    }
    (src, dst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copyuid_sets() {
        let (s, d) = uid_pair_sets(&[(1, 10), (2, 11), (3, 12), (7, 13), (9, 20)]);
        assert_eq!((s.as_str(), d.as_str()), ("1:3,7,9", "10:12,13,20"));
    }
}
