//! The selected mailbox as this session's client sees it.
//!
//! Message sequence numbers are positions in `messages`, which only changes when this session
//! tells the client: EXISTS (new messages appended at the end) at any command boundary, and
//! EXPUNGE/VANISHED only where RFC 9051 §7.5.1 allows it (not during FETCH, STORE, SEARCH).
//! Until then a message expunged by another session stays in the view (its UID is in
//! `pending_expunge`), so numbers never shift under the client.
//!
//! Other sessions' changes arrive on the store's change receiver; it is drained at command
//! boundaries and any change triggers a diff against a fresh snapshot (simple and always
//! correct; the notifications themselves are only a "something changed" signal).

use std::collections::HashSet;
use std::sync::Arc;

use super::codec::write_astring;
use super::recent::RecentClaims;
use super::sequence::format_sorted;
use crate::imap_w;
use crate::store::{
    ChangeReceiver, Flags, MailStore, MailboxChange, MailboxSnapshot, MessageMeta, StoreError,
    SystemFlags,
};

pub struct SelectedMailbox {
    /// The store's id of the mailbox (RFC 8474 MAILBOXID, see [`super::objectid`]).
    pub id: u64,
    pub name: String,
    pub read_only: bool,
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub highest_modseq: u64,
    /// The client's view, in UID order; index + 1 = message sequence number.
    pub messages: Vec<MessageMeta>,
    /// UIDs expunged in the store but not yet announced to the client.
    pub pending_expunge: HashSet<u32>,
    changes: Option<ChangeReceiver>,
    /// A change notification arrived since the last sync.
    dirty: bool,
    /// Keywords announced in the last FLAGS response.
    announced_keywords: Vec<String>,
    /// UIDs that are `\Recent` in this session (see [`super::recent`]).
    recent: HashSet<u32>,
    /// Where new messages are claimed as recent; None until [`Self::track_recent`].
    recent_claims: Option<(Arc<RecentClaims>, String)>,
    /// SEARCHRES (RFC 5182): the UIDs `$` stands for; a new selection starts empty.
    pub saved_result: Vec<u32>,
    /// CONTEXT=SEARCH/SORT (RFC 5267 §4.3): live results; they end with the selection.
    pub contexts: Vec<super::context::UpdateContext>,
    /// UIDs added to the view or whose flags changed in it since the contexts were last
    /// brought up to date (kept only while there are contexts).
    pub changed_uids: Vec<u32>,
}

/// What the client has enabled that changes how updates are reported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reporting {
    pub condstore: bool,
    pub qresync: bool,
    /// ENABLE IMAP4rev2: no RECENT responses and no `\Recent` flag (RFC 9051 removed them).
    pub imap4rev2: bool,
}

/// Result of a sync.
#[derive(Debug, PartialEq, Eq)]
pub enum SyncOutcome {
    Ok,
    /// The mailbox no longer exists.
    Gone,
}

impl SelectedMailbox {
    pub fn new(
        name: String,
        read_only: bool,
        snapshot: MailboxSnapshot,
        changes: Option<ChangeReceiver>,
    ) -> Self {
        let mut mb = SelectedMailbox {
            id: snapshot.id,
            name,
            read_only,
            uidvalidity: snapshot.uidvalidity,
            uidnext: snapshot.uidnext,
            highest_modseq: snapshot.highest_modseq,
            messages: snapshot.messages,
            pending_expunge: HashSet::new(),
            changes,
            dirty: false,
            announced_keywords: Vec::new(),
            recent: HashSet::new(),
            recent_claims: None,
            saved_result: Vec::new(),
            contexts: Vec::new(),
            changed_uids: Vec::new(),
        };
        mb.announced_keywords = mb.keywords();
        mb
    }

    pub fn exists(&self) -> u32 {
        self.messages.len() as u32
    }

    /// Start tracking `\Recent` for `account`: a read-write view claims every message not
    /// yet claimed by another session; a read-only one (EXAMINE) only sees them.
    pub fn track_recent(&mut self, claims: Arc<RecentClaims>, account: &str) {
        self.recent_claims = Some((claims, account.to_owned()));
        self.claim_recent(0);
    }

    /// Claim `\Recent` among `messages[from..]` (the ones just added to the view).
    fn claim_recent(&mut self, from: usize) {
        let Some((claims, account)) = &self.recent_claims else {
            return;
        };
        let up_to = self.max_uid();
        let before = if self.read_only {
            claims.claimed_up_to(account, &self.name, self.uidvalidity)
        } else {
            claims.claim(account, &self.name, self.uidvalidity, up_to)
        };
        self.recent.extend(
            self.messages[from..]
                .iter()
                .map(|m| m.uid)
                .filter(|&uid| uid > before),
        );
    }

    /// Is the message `\Recent` in this session (as this client may be told)?
    pub fn is_recent(&self, uid: u32, rep: Reporting) -> bool {
        !rep.imap4rev2 && self.recent.contains(&uid)
    }

    /// Number of `\Recent` messages in the view (`* n RECENT`).
    pub fn recent_count(&self) -> usize {
        self.recent.len()
    }

    pub fn uids(&self) -> Vec<u32> {
        self.messages.iter().map(|m| m.uid).collect()
    }

    /// View indices of the messages whose UID is in the set.
    pub fn resolve_uid(&self, set: &imap_codec::imap_types::sequence::SequenceSet) -> Vec<usize> {
        super::sequence::resolve_uid_by(set, &self.messages, |m| m.uid)
    }

    pub fn max_uid(&self) -> u32 {
        self.messages.last().map_or(0, |m| m.uid)
    }

    /// Index of a UID in the view.
    pub fn index_of(&self, uid: u32) -> Option<usize> {
        self.messages.binary_search_by_key(&uid, |m| m.uid).ok()
    }

    /// The receiver the driver waits on during IDLE.
    pub fn change_receiver(&mut self) -> Option<&mut ChangeReceiver> {
        self.changes.as_mut()
    }

    /// Take the receiver out (see [`super::ImapSession::take_change_receiver`]).
    pub fn take_changes(&mut self) -> Option<ChangeReceiver> {
        self.changes.take()
    }

    /// Put a receiver taken with [`Self::take_changes`] back.
    pub fn restore_changes(&mut self, rx: ChangeReceiver) {
        self.changes = Some(rx);
    }

    /// Drain queued notifications; true if anything changed since the last sync.
    pub fn poll_changes(&mut self) -> bool {
        if let Some(rx) = self.changes.as_mut() {
            loop {
                match rx.try_recv() {
                    Ok(MailboxChange::Gone) => {
                        self.dirty = true;
                    }
                    Ok(_) => self.dirty = true,
                    Err(futures_channel::mpsc::TryRecvError::Empty) => break,
                    Err(futures_channel::mpsc::TryRecvError::Closed) => {
                        self.changes = None;
                        self.dirty = true;
                        break;
                    }
                }
            }
        }
        self.dirty || !self.pending_expunge.is_empty()
    }

    /// Mark the view as needing a diff (after a change notification taken by the driver).
    pub fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    /// Bring the view up to date with the store, writing the untagged responses.
    /// `allow_expunge`: whether EXPUNGE/VANISHED may be sent now.
    pub fn sync<S: MailStore>(
        &mut self,
        store: &S,
        account: &str,
        allow_expunge: bool,
        rep: Reporting,
        out: &mut Vec<u8>,
    ) -> SyncOutcome {
        if !self.poll_changes() {
            return SyncOutcome::Ok;
        }
        if self.dirty {
            self.dirty = false;
            let snap = match store.snapshot(account, &self.name) {
                Ok(s) => s,
                Err(StoreError::NoSuchMailbox) => return SyncOutcome::Gone,
                Err(e) => {
                    tracing::warn!(error = %e, "imap: snapshot failed during sync");
                    return SyncOutcome::Ok;
                }
            };
            if snap.uidvalidity != self.uidvalidity {
                return SyncOutcome::Gone;
            }
            let mut updates = Vec::new();
            self.merge(snap, rep, &mut updates);
            self.announce_new_keywords(None, out);
            out.extend_from_slice(&updates);
        }
        if allow_expunge && !self.pending_expunge.is_empty() {
            self.announce_expunges(rep, out);
        }
        SyncOutcome::Ok
    }

    fn merge(&mut self, snap: MailboxSnapshot, rep: Reporting, out: &mut Vec<u8>) {
        let mut j = 0;
        for i in 0..self.messages.len() {
            let uid = self.messages[i].uid;
            while j < snap.messages.len() && snap.messages[j].uid < uid {
                j += 1;
            }
            if j < snap.messages.len() && snap.messages[j].uid == uid {
                let fresh = &snap.messages[j];
                let cur = &mut self.messages[i];
                if cur.flags != fresh.flags || cur.modseq != fresh.modseq {
                    if !self.contexts.is_empty() {
                        self.changed_uids.push(uid);
                    }
                    let changed_flags = cur.flags != fresh.flags;
                    cur.flags = fresh.flags.clone();
                    cur.modseq = fresh.modseq;
                    if changed_flags || rep.condstore {
                        let recent = !rep.imap4rev2 && self.recent.contains(&uid);
                        // RFC 7162 §3.1 (erratum 1807): once CONDSTORE is on, unsolicited
                        // FETCH responses carry UID and MODSEQ.
                        write_flags_fetch(out, i + 1, cur, rep.condstore, rep.condstore, recent);
                    }
                }
                j += 1;
            } else {
                self.pending_expunge.insert(uid);
            }
        }
        let max = self.max_uid();
        let before = self.messages.len();
        self.messages
            .extend(snap.messages.into_iter().filter(|m| m.uid > max));
        self.uidnext = snap.uidnext.max(self.uidnext);
        self.highest_modseq = snap.highest_modseq.max(self.highest_modseq);
        if self.messages.len() != before {
            if !self.contexts.is_empty() {
                self.changed_uids
                    .extend(self.messages[before..].iter().map(|m| m.uid));
            }
            self.claim_recent(before);
            imap_w!(out, "* {} EXISTS\r\n", self.messages.len());
            if !rep.imap4rev2 && self.recent_claims.is_some() {
                imap_w!(out, "* {} RECENT\r\n", self.recent.len());
            }
        }
    }

    /// Send EXPUNGE (or VANISHED with QRESYNC) for the pending expunges and drop them.
    pub fn announce_expunges(&mut self, rep: Reporting, out: &mut Vec<u8>) {
        for uid in &self.pending_expunge {
            self.recent.remove(uid);
        }
        let mut gone: Vec<u32> = Vec::new();
        if rep.qresync {
            self.messages.retain(|m| {
                let keep = !self.pending_expunge.contains(&m.uid);
                if !keep {
                    gone.push(m.uid);
                }
                keep
            });
            if !gone.is_empty() {
                imap_w!(out, "* VANISHED {}\r\n", format_sorted(&gone));
            }
        } else {
            for idx in (0..self.messages.len()).rev() {
                if self.pending_expunge.contains(&self.messages[idx].uid) {
                    self.messages.remove(idx);
                    imap_w!(out, "* {} EXPUNGE\r\n", idx + 1);
                }
            }
        }
        self.pending_expunge.clear();
    }

    /// Remove messages this session expunged itself, announcing them immediately.
    pub fn expunged_here(&mut self, uids: &[u32], rep: Reporting, out: &mut Vec<u8>) {
        self.pending_expunge.extend(uids.iter().copied());
        self.announce_expunges(rep, out);
    }

    /// Apply flag changes this session made (store_flags result).
    pub fn apply_flags(&mut self, changed: &[(u32, Flags, u64)]) -> Vec<usize> {
        let mut idx = Vec::with_capacity(changed.len());
        for (uid, flags, modseq) in changed {
            if let Some(i) = self.index_of(*uid) {
                if !self.contexts.is_empty() {
                    self.changed_uids.push(*uid);
                }
                self.messages[i].flags = flags.clone();
                self.messages[i].modseq = *modseq;
                self.highest_modseq = self.highest_modseq.max(*modseq);
                idx.push(i);
            }
        }
        idx
    }

    /// `* FLAGS (...)` and `* OK [PERMANENTFLAGS (...)]` with the announced keywords.
    pub fn write_flag_lists(&self, out: &mut Vec<u8>) {
        const SYSTEM: &[u8] = b"\\Answered \\Flagged \\Deleted \\Seen \\Draft";
        out.extend_from_slice(b"* FLAGS (");
        out.extend_from_slice(SYSTEM);
        for k in &self.announced_keywords {
            out.push(b' ');
            write_astring(out, k.as_bytes());
        }
        out.extend_from_slice(b")\r\n");
        if self.read_only {
            out.extend_from_slice(b"* OK [PERMANENTFLAGS ()] Read-only mailbox\r\n");
        } else {
            out.extend_from_slice(b"* OK [PERMANENTFLAGS (");
            out.extend_from_slice(SYSTEM);
            for k in &self.announced_keywords {
                out.push(b' ');
                write_astring(out, k.as_bytes());
            }
            out.extend_from_slice(b" \\*)] Flags permitted\r\n");
        }
    }

    /// If messages now carry keywords the client was not told about, send new FLAGS lists
    /// (RFC 9051 §7.3.5) before the FETCH responses that use them.
    /// `changed`: view indices whose flags changed (None: check every message).
    pub fn announce_new_keywords(&mut self, changed: Option<&[usize]>, out: &mut Vec<u8>) {
        let is_new = |m: &MessageMeta| {
            m.flags.keywords.iter().any(|k| {
                !self
                    .announced_keywords
                    .iter()
                    .any(|a| a.eq_ignore_ascii_case(k))
            })
        };
        let new = match changed {
            Some(idx) => idx.iter().any(|&i| is_new(&self.messages[i])),
            None => self.messages.iter().any(is_new),
        };
        if new {
            // Grow, never shrink: a keyword dropped here could still be on a message whose
            // FETCH update follows (RFC 9051 §7.3.5 lets a client drop flags not listed), and
            // the list announced at SELECT stays valid for the whole selection, as in Dovecot.
            let mut keywords = self.keywords();
            for k in &self.announced_keywords {
                if !keywords.iter().any(|x| x.eq_ignore_ascii_case(k)) {
                    keywords.push(k.clone());
                }
            }
            keywords.sort();
            self.announced_keywords = keywords;
            self.write_flag_lists(out);
        }
    }

    /// Keywords in use, for the FLAGS response.
    pub fn keywords(&self) -> Vec<String> {
        let mut k: Vec<String> = Vec::new();
        for m in &self.messages {
            for kw in &m.flags.keywords {
                if !k.iter().any(|x| x.eq_ignore_ascii_case(kw)) {
                    k.push(kw.clone());
                }
            }
        }
        k.sort();
        k
    }
}

/// `(\Seen \Answered $kw)`, with `\Recent` if the message is recent in this session.
pub fn write_flags(out: &mut Vec<u8>, flags: &Flags, recent: bool) {
    out.push(b'(');
    let mut first = true;
    let mut sep = |out: &mut Vec<u8>| {
        if !first {
            out.push(b' ');
        }
        first = false;
    };
    let sys = flags.system.0;
    for (bit, name) in [
        (SystemFlags::SEEN, "\\Seen"),
        (SystemFlags::ANSWERED, "\\Answered"),
        (SystemFlags::FLAGGED, "\\Flagged"),
        (SystemFlags::DELETED, "\\Deleted"),
        (SystemFlags::DRAFT, "\\Draft"),
    ] {
        if sys & bit != 0 {
            sep(out);
            out.extend_from_slice(name.as_bytes());
        }
    }
    if recent {
        sep(out);
        out.extend_from_slice(b"\\Recent");
    }
    for k in &flags.keywords {
        sep(out);
        write_astring(out, k.as_bytes());
    }
    out.push(b')');
}

/// `* n FETCH ([UID u] FLAGS (...) [MODSEQ (m)])`
pub fn write_flags_fetch(
    out: &mut Vec<u8>,
    msn: usize,
    m: &MessageMeta,
    uid: bool,
    modseq: bool,
    recent: bool,
) {
    imap_w!(out, "* {msn} FETCH (");
    if uid {
        imap_w!(out, "UID {} ", m.uid);
    }
    out.extend_from_slice(b"FLAGS ");
    write_flags(out, &m.flags, recent);
    if modseq {
        imap_w!(out, " MODSEQ ({})", m.modseq);
    }
    out.extend_from_slice(b")\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(uid: u32, seen: bool, modseq: u64) -> MessageMeta {
        MessageMeta {
            uid,
            size: 10,
            internal_date: 0,
            flags: Flags {
                system: SystemFlags(if seen { SystemFlags::SEEN } else { 0 }),
                keywords: vec![],
            },
            modseq,
            needs_dot_stuffing: false,
            email_id: Default::default(),
            saved: None,
        }
    }

    fn snap(msgs: Vec<MessageMeta>) -> MailboxSnapshot {
        MailboxSnapshot {
            id: 0,
            uidvalidity: 1,
            uidnext: msgs.last().map_or(1, |m| m.uid + 1),
            highest_modseq: msgs.iter().map(|m| m.modseq).max().unwrap_or(0),
            messages: msgs,
        }
    }

    #[test]
    fn merge_defers_expunges_and_keeps_numbers() {
        let mut mb = SelectedMailbox::new(
            "INBOX".into(),
            false,
            snap(vec![
                meta(1, false, 1),
                meta(2, false, 2),
                meta(3, false, 3),
            ]),
            None,
        );
        let mut out = Vec::new();
        // Another session: 2 expunged, 3 seen, 4 appended.
        mb.merge(
            snap(vec![meta(1, false, 1), meta(3, true, 5), meta(4, false, 6)]),
            Reporting::default(),
            &mut out,
        );
        let s = String::from_utf8(out.clone()).unwrap();
        assert_eq!(s, "* 3 FETCH (FLAGS (\\Seen))\r\n* 4 EXISTS\r\n");
        assert_eq!(mb.exists(), 4);
        assert!(mb.pending_expunge.contains(&2));
        out.clear();
        mb.announce_expunges(Reporting::default(), &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), "* 2 EXPUNGE\r\n");
        assert_eq!(mb.uids(), vec![1, 3, 4]);
    }

    #[test]
    fn vanished_with_qresync() {
        let mut mb = SelectedMailbox::new(
            "INBOX".into(),
            false,
            snap((1..=5).map(|u| meta(u, false, u as u64)).collect()),
            None,
        );
        let mut out = Vec::new();
        let rep = Reporting {
            condstore: true,
            qresync: true,
            imap4rev2: false,
        };
        mb.expunged_here(&[2, 3, 5], rep, &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), "* VANISHED 2:3,5\r\n");
        assert_eq!(mb.uids(), vec![1, 4]);
    }
}
