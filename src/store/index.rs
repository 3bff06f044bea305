//! In-memory index of one shard: account → mailboxes → messages, rebuilt by folding records.
//!
//! The index is a pure function of the log: [`ShardIndex::apply`] is the only mutator, used
//! identically by start-up replay, by the writer's private (pre-commit) copy and by the shared
//! copy readers see after a commit. That keeps "what the writer decided" and "what recovery
//! rebuilds" from ever drifting apart.
//!
//! Replay uses [`ShardIndex::apply_replayed`], which also accepts the *orphans* a compacted log
//! holds (see `compact`): a record about a message or mailbox whose own records compaction
//! already dropped because it was expunged or deleted. An orphan changes nothing but the
//! counters it proves (UIDNEXT, HIGHESTMODSEQ, the tombstone of an expunge), so a replay of a
//! compacted log folds to the same index as the log it came from.

use std::collections::{BTreeSet, HashMap};

use super::queue::SegmentUse;
use super::record::Record;
use super::{EmailId, Flags, MailboxInfo, MailboxSnapshot, MessageMeta, SpecialUse, SystemFlags};

/// Where a message body lives in the shard's segments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodyLoc {
    pub segment: u32,
    pub offset: u64,
    pub len: u32,
}

/// What an append record contributes besides its fields; computed where the body is at hand.
#[derive(Clone, Copy, Debug)]
pub struct BodyInfo {
    pub loc: BodyLoc,
    pub needs_dot_stuffing: bool,
}

impl BodyInfo {
    pub fn new(loc: BodyLoc, body: &[u8]) -> Self {
        BodyInfo {
            loc,
            needs_dot_stuffing: needs_dot_stuffing(body),
        }
    }

    pub fn of(loc: BodyLoc, message: &super::record::MessageBytes) -> Self {
        BodyInfo {
            loc,
            needs_dot_stuffing: message.needs_dot_stuffing(),
        }
    }
}

pub fn needs_dot_stuffing(body: &[u8]) -> bool {
    body.first() == Some(&b'.') || memchr::memmem::find(body, b"\n.").is_some()
}

#[derive(Clone, Debug)]
pub struct Message {
    pub meta: MessageMeta,
    pub loc: BodyLoc,
}

#[derive(Clone, Debug)]
pub struct Mailbox {
    pub id: u64,
    pub name: String,
    pub special_use: Option<SpecialUse>,
    pub subscribed: bool,
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub highest_modseq: u64,
    /// Sorted by UID.
    pub messages: Vec<Message>,
    /// (uid, modseq of the expunge), in modseq order.
    pub expunged: Vec<(u32, u64)>,
}

impl Mailbox {
    pub fn find(&self, uid: u32) -> Option<usize> {
        self.messages
            .binary_search_by_key(&uid, |m| m.meta.uid)
            .ok()
    }

    pub fn get(&self, uid: u32) -> Option<&Message> {
        self.find(uid).map(|i| &self.messages[i])
    }

    pub fn snapshot(&self) -> MailboxSnapshot {
        MailboxSnapshot {
            id: self.id,
            uidvalidity: self.uidvalidity,
            uidnext: self.uidnext,
            highest_modseq: self.highest_modseq,
            messages: self.messages.iter().map(|m| m.meta.clone()).collect(),
        }
    }

    pub fn info(&self) -> MailboxInfo {
        let mut unseen = 0;
        let mut deleted = 0;
        let mut size = 0u64;
        for m in &self.messages {
            if m.meta.flags.system.0 & SystemFlags::SEEN == 0 {
                unseen += 1;
            }
            if m.meta.flags.system.0 & SystemFlags::DELETED != 0 {
                deleted += 1;
            }
            size += u64::from(m.meta.size);
        }
        MailboxInfo {
            id: self.id,
            name: self.name.clone(),
            special_use: self.special_use,
            subscribed: self.subscribed,
            uidvalidity: self.uidvalidity,
            uidnext: self.uidnext,
            highest_modseq: self.highest_modseq,
            messages: self.messages.len() as u32,
            unseen,
            deleted,
            size,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Account {
    pub mailboxes: HashMap<u64, Mailbox>,
    /// Canonical name (see [`canonical_name`]) → id.
    pub by_name: HashMap<String, u64>,
    /// Subscribed canonical names with no mailbox (a mailbox's own subscription is its
    /// `subscribed` flag). A mailbox created or renamed onto one of them takes it over.
    pub lost_subscriptions: BTreeSet<String>,
}

impl Account {
    pub fn lookup(&self, name: &str) -> Option<&Mailbox> {
        let id = self.by_name.get(canonical_name(name).as_ref())?;
        self.mailboxes.get(id)
    }
}

#[derive(Clone, Debug, Default)]
pub struct ShardIndex {
    /// Keyed by lowercased account name.
    pub accounts: HashMap<String, Account>,
    pub next_mailbox_id: u64,
    /// Largest UIDVALIDITY handed out in this shard, so new ones are always larger.
    pub last_uidvalidity: u32,
    /// Live messages and their body bytes per segment (derived, not stored in checkpoints):
    /// what compaction would have to keep of each segment.
    pub live: HashMap<u32, SegmentUse>,
}

/// What replaying one record did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replayed {
    Applied,
    /// The record is about a message or mailbox whose records compaction dropped; only the
    /// counters it proves were applied.
    Orphan,
}

fn add_use(live: &mut HashMap<u32, SegmentUse>, loc: BodyLoc) {
    let u = live.entry(loc.segment).or_default();
    u.messages += 1;
    u.bytes += u64::from(loc.len);
}

/// "INBOX" is case-insensitive (RFC 3501); every other name is kept verbatim.
pub fn canonical_name(name: &str) -> std::borrow::Cow<'_, str> {
    if name.eq_ignore_ascii_case("INBOX") {
        std::borrow::Cow::Borrowed("INBOX")
    } else {
        std::borrow::Cow::Borrowed(name)
    }
}

pub fn account_key(account: &str) -> String {
    account.to_lowercase()
}

impl ShardIndex {
    pub fn account(&self, account: &str) -> Option<&Account> {
        self.accounts.get(&account_key(account))
    }

    pub fn mailbox(&self, account: &str, name: &str) -> Option<&Mailbox> {
        self.account(account)?.lookup(name)
    }

    fn mailbox_mut(&mut self, account: &str, id: u64) -> Result<&mut Mailbox, String> {
        self.accounts
            .get_mut(account)
            .and_then(|a| a.mailboxes.get_mut(&id))
            .ok_or_else(|| format!("record for unknown mailbox {id} of account {account:?}"))
    }

    fn add_live(&mut self, loc: BodyLoc) {
        add_use(&mut self.live, loc);
    }

    fn drop_live(&mut self, loc: BodyLoc) {
        if let Some(u) = self.live.get_mut(&loc.segment) {
            u.messages = u.messages.saturating_sub(1);
            u.bytes = u.bytes.saturating_sub(u64::from(loc.len));
            if u.messages == 0 {
                self.live.remove(&loc.segment);
            }
        }
    }

    /// Rebuilds [`ShardIndex::live`] from the messages (after loading a checkpoint).
    pub fn recount_live(&mut self) {
        let mut live = HashMap::new();
        for acc in self.accounts.values() {
            for mb in acc.mailboxes.values() {
                for m in &mb.messages {
                    add_use(&mut live, m.loc);
                }
            }
        }
        self.live = live;
    }

    /// Points message `uid` at the copy of its body at `to`, if it is still there and its body
    /// is still at `from`. Returns whether it moved.
    pub fn relocate(
        &mut self,
        account: &str,
        mailbox: u64,
        uid: u32,
        from: BodyLoc,
        to: BodyLoc,
    ) -> bool {
        let Some(mb) = self
            .accounts
            .get_mut(account)
            .and_then(|a| a.mailboxes.get_mut(&mailbox))
        else {
            return false;
        };
        let Some(i) = mb.find(uid) else { return false };
        if mb.messages[i].loc != from || from.len != to.len {
            return false;
        }
        mb.messages[i].loc = to;
        if from.segment != to.segment {
            self.drop_live(from);
            self.add_live(to);
        }
        true
    }

    /// Whether a record about mailbox `id` of `account` refers to a mailbox this shard no longer
    /// knows but once allocated: its records were dropped by compaction.
    fn is_orphan_mailbox(&self, account: &str, id: u64) -> bool {
        let known = self
            .accounts
            .get(account)
            .is_some_and(|a| a.mailboxes.contains_key(&id));
        !known && id < self.next_mailbox_id
    }

    /// Folds one record into the index. Validates before mutating, so an error leaves the
    /// index unchanged. `body` must be given for `MessageAppend`.
    pub fn apply(&mut self, rec: &Record, body: Option<BodyInfo>) -> Result<(), String> {
        self.fold(rec, body, false).map(|_| ())
    }

    /// [`ShardIndex::apply`] for a record read back from the log at start-up, which may be an
    /// orphan of compaction (see the module doc).
    pub fn apply_replayed(
        &mut self,
        rec: &Record,
        body: Option<BodyInfo>,
    ) -> Result<Replayed, String> {
        self.fold(rec, body, true)
    }

    fn fold(
        &mut self,
        rec: &Record,
        body: Option<BodyInfo>,
        replay: bool,
    ) -> Result<Replayed, String> {
        if replay
            && let Some(id) = rec.mailbox()
            && !matches!(rec, Record::MailboxCreate { .. })
            && self.is_orphan_mailbox(rec.account(), id)
        {
            // The mailbox was deleted and compaction dropped its creation: nothing of it is
            // left to change. Its id stays allocated (ids are never reused).
            return Ok(Replayed::Orphan);
        }
        match rec {
            Record::MailboxCreate {
                account,
                mailbox,
                name,
                uidvalidity,
                special_use,
                subscribed,
            } => {
                let key = canonical_name(name).into_owned();
                if let Some(acc) = self.accounts.get(account)
                    && (acc.by_name.contains_key(&key) || acc.mailboxes.contains_key(mailbox))
                {
                    return Err(format!("mailbox {name:?} created twice"));
                }
                let acc = self.accounts.entry(account.clone()).or_default();
                acc.by_name.insert(key.clone(), *mailbox);
                // A subscription the name kept without a mailbox now belongs to this one.
                let subscribed = acc.lost_subscriptions.remove(&key) || *subscribed;
                acc.mailboxes.insert(
                    *mailbox,
                    Mailbox {
                        id: *mailbox,
                        name: key,
                        special_use: *special_use,
                        subscribed,
                        uidvalidity: *uidvalidity,
                        uidnext: 1,
                        highest_modseq: 1,
                        messages: Vec::new(),
                        expunged: Vec::new(),
                    },
                );
                self.next_mailbox_id = self.next_mailbox_id.max(mailbox + 1);
                self.last_uidvalidity = self.last_uidvalidity.max(*uidvalidity);
            }
            Record::MailboxDelete { account, mailbox } => {
                let acc = self
                    .accounts
                    .get_mut(account)
                    .ok_or_else(|| format!("delete in unknown account {account:?}"))?;
                let mb = acc
                    .mailboxes
                    .remove(mailbox)
                    .ok_or_else(|| format!("delete of unknown mailbox {mailbox}"))?;
                acc.by_name.remove(&mb.name);
                for m in &mb.messages {
                    self.drop_live(m.loc);
                }
            }
            Record::MailboxRename {
                account,
                mailbox,
                new_name,
            } => {
                let acc = self
                    .accounts
                    .get_mut(account)
                    .ok_or_else(|| format!("rename in unknown account {account:?}"))?;
                let key = canonical_name(new_name).into_owned();
                if acc.by_name.contains_key(&key) {
                    return Err(format!("rename onto existing mailbox {new_name:?}"));
                }
                let mb = acc
                    .mailboxes
                    .get_mut(mailbox)
                    .ok_or_else(|| format!("rename of unknown mailbox {mailbox}"))?;
                acc.by_name.remove(&mb.name);
                acc.by_name.insert(key.clone(), *mailbox);
                if acc.lost_subscriptions.remove(&key) {
                    mb.subscribed = true;
                }
                mb.name = key;
            }
            Record::Subscribe {
                account,
                mailbox,
                subscribed,
            } => {
                self.mailbox_mut(account, *mailbox)?.subscribed = *subscribed;
            }
            Record::Subscription {
                account,
                name,
                subscribed,
            } => {
                let acc = self.accounts.entry(account.clone()).or_default();
                let key = canonical_name(name).into_owned();
                if let Some(id) = acc.by_name.get(&key) {
                    if let Some(mb) = acc.mailboxes.get_mut(id) {
                        mb.subscribed = *subscribed;
                    }
                } else if *subscribed {
                    acc.lost_subscriptions.insert(key);
                } else {
                    acc.lost_subscriptions.remove(&key);
                }
            }
            Record::MessageAppend {
                account,
                mailbox,
                uid,
                modseq,
                internal_date,
                flags,
                origin,
                ..
            } => {
                let body = body.ok_or("append without body location")?;
                let mb = self.mailbox_mut(account, *mailbox)?;
                if *uid < mb.uidnext {
                    return Err(format!("uid {uid} reused in mailbox {mailbox}"));
                }
                mb.uidnext = uid.saturating_add(1);
                mb.highest_modseq = mb.highest_modseq.max(*modseq);
                // UIDs only grow, so pushing keeps the vector sorted.
                mb.messages.push(Message {
                    meta: MessageMeta {
                        uid: *uid,
                        size: body.loc.len,
                        internal_date: *internal_date,
                        flags: flags.clone(),
                        modseq: *modseq,
                        needs_dot_stuffing: body.needs_dot_stuffing,
                        email_id: origin.map_or(
                            EmailId {
                                mailbox: *mailbox,
                                uid: *uid,
                            },
                            |o| o.email_id,
                        ),
                        saved: origin.map(|o| o.saved),
                    },
                    loc: body.loc,
                });
                self.add_live(body.loc);
            }
            Record::FlagsSet {
                account,
                mailbox,
                uid,
                flags,
                modseq,
            } => {
                let mb = self.mailbox_mut(account, *mailbox)?;
                let Some(i) = mb.find(*uid) else {
                    if !replay {
                        return Err(format!("flags for unknown uid {uid}"));
                    }
                    // The message was expunged and its append dropped by compaction; the
                    // record still proves how far UIDs and modseqs had gone at this point.
                    mb.uidnext = mb.uidnext.max(uid.saturating_add(1));
                    mb.highest_modseq = mb.highest_modseq.max(*modseq);
                    return Ok(Replayed::Orphan);
                };
                mb.highest_modseq = mb.highest_modseq.max(*modseq);
                let m = &mut mb.messages[i].meta;
                m.flags = flags.clone();
                m.modseq = *modseq;
            }
            Record::Expunge {
                account,
                mailbox,
                uid,
                modseq,
            } => {
                let mb = self.mailbox_mut(account, *mailbox)?;
                let Some(i) = mb.find(*uid) else {
                    if !replay {
                        return Err(format!("expunge of unknown uid {uid}"));
                    }
                    // Compaction dropped the expunged message's append but keeps the tombstone
                    // (QRESYNC needs it); it also carries the message's UID past UIDNEXT.
                    mb.uidnext = mb.uidnext.max(uid.saturating_add(1));
                    mb.highest_modseq = mb.highest_modseq.max(*modseq);
                    mb.expunged.push((*uid, *modseq));
                    return Ok(Replayed::Orphan);
                };
                let loc = mb.messages.remove(i).loc;
                mb.highest_modseq = mb.highest_modseq.max(*modseq);
                mb.expunged.push((*uid, *modseq));
                self.drop_live(loc);
            }
            Record::ShardState {
                next_mailbox_id,
                last_uidvalidity,
            } => {
                self.next_mailbox_id = self.next_mailbox_id.max(*next_mailbox_id);
                self.last_uidvalidity = self.last_uidvalidity.max(*last_uidvalidity);
            }
        }
        Ok(Replayed::Applied)
    }
}

/// Flags after applying `op`; keywords keep first-seen order and are deduplicated
/// case-insensitively (IMAP keywords are atoms compared without case).
pub fn combine_flags(old: &Flags, op: super::FlagOp, f: &Flags) -> Flags {
    use super::FlagOp;
    let mut out = match op {
        FlagOp::Replace => Flags {
            system: f.system,
            keywords: Vec::new(),
        },
        FlagOp::Add => Flags {
            system: SystemFlags(old.system.0 | f.system.0),
            keywords: old.keywords.clone(),
        },
        FlagOp::Remove => Flags {
            system: SystemFlags(old.system.0 & !f.system.0),
            keywords: old
                .keywords
                .iter()
                .filter(|k| !f.keywords.iter().any(|r| r.eq_ignore_ascii_case(k)))
                .cloned()
                .collect(),
        },
    };
    if op != FlagOp::Remove {
        for k in &f.keywords {
            if !out.keywords.iter().any(|x| x.eq_ignore_ascii_case(k)) {
                out.keywords.push(k.clone());
            }
        }
    }
    out
}

/// Same flags regardless of keyword order/case.
pub fn same_flags(a: &Flags, b: &Flags) -> bool {
    a.system == b.system
        && a.keywords.len() == b.keywords.len()
        && a.keywords
            .iter()
            .all(|k| b.keywords.iter().any(|x| x.eq_ignore_ascii_case(k)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::FlagOp;

    fn kw(system: u8, k: &[&str]) -> Flags {
        Flags {
            system: SystemFlags(system),
            keywords: k.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn flag_ops() {
        let old = kw(SystemFlags::SEEN, &["a", "b"]);
        let add = combine_flags(&old, FlagOp::Add, &kw(SystemFlags::FLAGGED, &["B", "c"]));
        assert!(same_flags(
            &add,
            &kw(SystemFlags::SEEN | SystemFlags::FLAGGED, &["a", "b", "c"])
        ));
        let rem = combine_flags(&old, FlagOp::Remove, &kw(SystemFlags::SEEN, &["A"]));
        assert!(same_flags(&rem, &kw(0, &["b"])));
        let rep = combine_flags(&old, FlagOp::Replace, &kw(0, &["x", "x"]));
        assert!(same_flags(&rep, &kw(0, &["x"])));
    }

    #[test]
    fn dot_stuffing_detection() {
        assert!(needs_dot_stuffing(b".hi\r\n"));
        assert!(needs_dot_stuffing(b"a\r\n.\r\n"));
        assert!(!needs_dot_stuffing(b"a.b\r\nc\r\n"));
    }

    #[test]
    fn apply_rejects_inconsistent_records() {
        let mut ix = ShardIndex::default();
        let create = Record::MailboxCreate {
            account: "a".into(),
            mailbox: 1,
            name: "inbox".into(),
            uidvalidity: 5,
            special_use: None,
            subscribed: true,
        };
        ix.apply(&create, None).unwrap();
        assert!(ix.mailbox("A", "INBOX").is_some()); // lookups lowercase the account
        assert!(ix.mailbox("a", "Inbox").is_some());
        assert!(ix.apply(&create, None).is_err());
        let app = |uid| Record::MessageAppend {
            account: "a".into(),
            mailbox: 1,
            uid,
            modseq: 2,
            internal_date: 0,
            flags: Flags::default(),
            origin: None,
            body: Default::default(),
        };
        let loc = BodyInfo::new(
            BodyLoc {
                segment: 0,
                offset: 0,
                len: 0,
            },
            b"",
        );
        ix.apply(&app(3), Some(loc)).unwrap();
        assert!(ix.apply(&app(3), Some(loc)).is_err());
        assert!(ix.apply(&app(4), None).is_err());
        assert_eq!(ix.mailbox("a", "INBOX").unwrap().uidnext, 4);
    }
}
