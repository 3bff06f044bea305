//! The per-shard log writer thread and its group commit.
//!
//! The writer owns the shard's segment files and a *private* copy of the index that already
//! contains the effects of records written but not yet synced. Requests are validated and
//! turned into records against that private copy (so a create followed by an append in the
//! same batch works); only after the one fdatasync of the batch are the same records applied
//! to the shared index that readers see, then the callers are answered, then subscribers are
//! told. An acknowledgement or a visible change therefore never precedes durability.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crossbeam_channel::Receiver;
use futures_channel::mpsc::UnboundedSender;
use futures_channel::oneshot;

use super::checkpoint::{self, Position};
use super::index::{
    BodyInfo, BodyLoc, ShardIndex, account_key, canonical_name, combine_flags, same_flags,
};
use super::record::{MAX_PAYLOAD, Record};
use super::segment::{SegmentSet, fsync_dir, open_segment};
use super::{
    Appended, FlagOp, Flags, MailboxChange, NewMessage, SpecialUse, StoreError, StoreResult,
};

/// Group-commit caps: bound the latency one batch adds and the memory it buffers.
const MAX_BATCH_REQUESTS: usize = 256;
const MAX_BATCH_BYTES: usize = 8 << 20;

/// Mailboxes every account gets on first use.
pub const DEFAULT_MAILBOXES: [(&str, Option<SpecialUse>); 6] = [
    ("INBOX", None),
    ("Sent", Some(SpecialUse::Sent)),
    ("Drafts", Some(SpecialUse::Drafts)),
    ("Trash", Some(SpecialUse::Trash)),
    ("Junk", Some(SpecialUse::Junk)),
    ("Archive", Some(SpecialUse::Archive)),
];

pub enum Op {
    Append(Vec<NewMessage>),
    StoreFlags {
        account: String,
        mailbox: String,
        uids: Vec<u32>,
        op: FlagOp,
        flags: Flags,
        unchanged_since: Option<u64>,
    },
    Expunge {
        account: String,
        mailbox: String,
        uids: Vec<u32>,
    },
    Copy {
        account: String,
        from: String,
        to: String,
        uids: Vec<u32>,
    },
    Create {
        account: String,
        name: String,
    },
    Delete {
        account: String,
        name: String,
    },
    Rename {
        account: String,
        from: String,
        to: String,
    },
    Subscribe {
        account: String,
        name: String,
        subscribed: bool,
    },
}

impl Op {
    fn approx_bytes(&self) -> usize {
        match self {
            Op::Append(m) => m.iter().map(|m| m.bytes.len() + 64).sum(),
            _ => 64,
        }
    }
}

pub enum Reply {
    Appended(Vec<Appended>),
    Flags(Vec<(u32, Flags, u64)>),
    Uids(Vec<u32>),
    Pairs(Vec<(u32, u32)>),
    Done,
}

pub struct Request {
    pub op: Op,
    pub reply: oneshot::Sender<StoreResult<Reply>>,
}

/// Counters, shared by all shards of a store.
#[derive(Default)]
pub struct Stats {
    pub fsyncs: AtomicU64,
    pub records: AtomicU64,
    pub batches: AtomicU64,
    pub checkpoints: AtomicU64,
    pub replayed_records: AtomicU64,
    /// Test hook: writers exit without the final checkpoint, as after a crash.
    pub skip_final_checkpoint: std::sync::atomic::AtomicBool,
}

pub type Subscribers = HashMap<(String, u64), Vec<UnboundedSender<MailboxChange>>>;

/// The part of a shard that readers share with its writer.
pub struct Shared {
    pub index: RwLock<ShardIndex>,
    pub segments: SegmentSet,
    pub subs: Mutex<Subscribers>,
    pub stats: Arc<Stats>,
}

pub struct Writer {
    pub shared: Arc<Shared>,
    pub rx: Receiver<Request>,
    pub dir: PathBuf,
    pub fsync: bool,
    pub segment_bytes: u64,
    pub checkpoint_bytes: u64,
    pub private: ShardIndex,
    pub cur_seg: u32,
    pub cur_file: Arc<File>,
    /// Bytes of the current segment already written to the file.
    pub cur_len: u64,
    pub since_checkpoint: u64,
    // Per-batch state below.
    buf: Vec<u8>,
    pending: Vec<(Record, Option<BodyInfo>)>,
    changes: Vec<(String, u64, MailboxChange)>,
    batch_start: Position,
    rolled: bool,
    emitted: usize,
    /// Set when a failed batch may have left records on disk that the index does not know;
    /// from then on the shard refuses writes until a restart replays the log.
    poisoned: Option<String>,
}

/// Errors a request reports without affecting other requests of the batch.
fn is_logical(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::NoSuchMailbox | StoreError::MailboxExists | StoreError::NotAllowed(_)
    )
}

fn now_secs() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs().min(u64::from(u32::MAX)) as u32)
        .unwrap_or(1)
}

fn io_err(msg: &str) -> StoreError {
    StoreError::Io(std::io::Error::other(msg.to_string()))
}

impl Writer {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        shared: Arc<Shared>,
        rx: Receiver<Request>,
        dir: PathBuf,
        config: &super::StoreConfig,
        private: ShardIndex,
        cur_seg: u32,
        cur_file: Arc<File>,
        cur_len: u64,
        since_checkpoint: u64,
    ) -> Self {
        Writer {
            shared,
            rx,
            dir,
            fsync: config.fsync,
            segment_bytes: config.segment_bytes.max(1),
            checkpoint_bytes: config.checkpoint_bytes,
            private,
            cur_seg,
            cur_file,
            cur_len,
            since_checkpoint,
            buf: Vec::new(),
            pending: Vec::new(),
            changes: Vec::new(),
            batch_start: Position {
                segment: cur_seg,
                offset: cur_len,
            },
            rolled: false,
            emitted: 0,
            poisoned: None,
        }
    }

    pub fn run(mut self) {
        // Ends when every sender is gone (store closed); queued requests are still delivered
        // before that, so everything accepted is committed.
        while let Ok(first) = self.rx.recv() {
            let mut bytes = first.op.approx_bytes();
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH_REQUESTS && bytes < MAX_BATCH_BYTES {
                match self.rx.try_recv() {
                    Ok(r) => {
                        bytes += r.op.approx_bytes();
                        batch.push(r);
                    }
                    Err(_) => break,
                }
            }
            self.run_batch(batch);
        }
        if self.poisoned.is_none()
            && !self
                .shared
                .stats
                .skip_final_checkpoint
                .load(Ordering::Relaxed)
        {
            self.maybe_checkpoint(true);
        }
    }

    fn run_batch(&mut self, batch: Vec<Request>) {
        if let Some(why) = &self.poisoned {
            for r in batch {
                let _ = r.reply.send(Err(io_err(why)));
            }
            return;
        }
        self.batch_start = Position {
            segment: self.cur_seg,
            offset: self.cur_len,
        };
        self.rolled = false;
        let mut replies = Vec::with_capacity(batch.len());
        let mut fatal: Option<StoreError> = None;
        for req in batch {
            if fatal.is_some() {
                replies.push((req.reply, None));
                continue;
            }
            self.emitted = 0;
            match self.process(req.op) {
                Err(e) if self.emitted > 0 && !is_logical(&e) => {
                    fatal = Some(e);
                    replies.push((req.reply, None));
                }
                r => replies.push((req.reply, Some(r))),
            }
        }
        if fatal.is_none()
            && let Err(e) = self.sync()
        {
            fatal = Some(e);
        }
        if let Some(e) = fatal {
            let msg = format!("shard write failed, batch rolled back: {e}");
            tracing::error!(dir = %self.dir.display(), "{msg}");
            self.abort();
            for (tx, _) in replies {
                let _ = tx.send(Err(io_err(&msg)));
            }
            return;
        }

        let nrec = self.pending.len() as u64;
        {
            let mut ix = self.shared.index.write().unwrap_or_else(|p| p.into_inner());
            for (rec, body) in self.pending.drain(..) {
                if let Err(e) = ix.apply(&rec, body) {
                    // The private copy accepted this record, so this is a bug, not bad input.
                    tracing::error!("shared index rejected a committed record: {e}");
                }
            }
        }
        let stats = &self.shared.stats;
        stats.records.fetch_add(nrec, Ordering::Relaxed);
        stats.batches.fetch_add(1, Ordering::Relaxed);
        for (tx, r) in replies {
            if let Some(r) = r {
                let _ = tx.send(r);
            }
        }
        self.notify();
        self.maybe_checkpoint(false);
    }

    /// Writes the batch buffer and makes it durable with one fdatasync.
    fn sync(&mut self) -> StoreResult<()> {
        let wrote = !self.buf.is_empty() || self.rolled || self.cur_len != self.batch_start.offset;
        self.flush_buf()?;
        if wrote && self.fsync {
            self.cur_file.sync_data()?;
            self.shared.stats.fsyncs.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    fn flush_buf(&mut self) -> StoreResult<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.cur_file.write_all_at(&self.buf, self.cur_len)?;
        self.cur_len += self.buf.len() as u64;
        self.since_checkpoint += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Starts a new segment. The old one is fdatasynced first, so only the last segment can
    /// ever have a torn tail — which is what lets recovery treat damage elsewhere as corruption.
    fn roll(&mut self) -> StoreResult<()> {
        self.flush_buf()?;
        if self.fsync {
            self.cur_file.sync_data()?;
            self.shared.stats.fsyncs.fetch_add(1, Ordering::Relaxed);
        }
        let n = self
            .cur_seg
            .checked_add(1)
            .ok_or_else(|| io_err("segment numbers exhausted"))?;
        let f = Arc::new(open_segment(&self.dir, n, true)?);
        if self.fsync {
            fsync_dir(&self.dir)?;
        }
        self.shared.segments.insert(n, f.clone())?;
        self.cur_seg = n;
        self.cur_file = f;
        self.cur_len = 0;
        self.rolled = true;
        Ok(())
    }

    /// Undoes a failed batch: drops its records from the file and resets the private index to
    /// the last committed state.
    fn abort(&mut self) {
        self.buf.clear();
        self.pending.clear();
        self.changes.clear();
        if self.rolled {
            self.poisoned =
                Some("an earlier write failed after a segment roll-over; restart the store".into());
        } else if let Err(e) = self.cur_file.set_len(self.batch_start.offset) {
            self.poisoned = Some(format!("cannot roll back a failed write ({e}); restart"));
        } else {
            self.cur_len = self.batch_start.offset;
        }
        self.private = self
            .shared
            .index
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
    }

    fn notify(&mut self) {
        if self.changes.is_empty() {
            return;
        }
        let shared = self.shared.clone();
        let mut subs = shared.subs.lock().unwrap_or_else(|p| p.into_inner());
        for (account, mailbox, change) in self.changes.drain(..) {
            let key = (account, mailbox);
            let gone = change == MailboxChange::Gone;
            if let Some(list) = subs.get_mut(&key) {
                list.retain(|tx| tx.unbounded_send(change.clone()).is_ok());
                if list.is_empty() || gone {
                    subs.remove(&key);
                }
            }
        }
    }

    fn maybe_checkpoint(&mut self, force: bool) {
        if self.since_checkpoint == 0 || (!force && self.since_checkpoint < self.checkpoint_bytes) {
            return;
        }
        let pos = Position {
            segment: self.cur_seg,
            offset: self.cur_len,
        };
        match checkpoint::write(&self.dir, &self.private, pos) {
            Ok(()) => {
                self.since_checkpoint = 0;
                self.shared
                    .stats
                    .checkpoints
                    .fetch_add(1, Ordering::Relaxed);
            }
            // Not fatal: the log is the truth; start-up just replays more.
            Err(e) => tracing::warn!(dir = %self.dir.display(), error = %e, "checkpoint failed"),
        }
    }

    /// Encodes `rec` into the batch and applies it to the private index.
    fn emit(&mut self, rec: Record, change: Option<MailboxChange>) -> StoreResult<()> {
        let need = rec.encoded_len() as u64;
        let used = self.cur_len + self.buf.len() as u64;
        if used > 0 && used + need > self.segment_bytes {
            self.roll()?;
        }
        let rec_start = self.cur_len + self.buf.len() as u64;
        let before = self.buf.len();
        let body_at = rec.encode(&mut self.buf);
        let body = match &rec {
            Record::MessageAppend { body, .. } => Some(BodyInfo::new(
                BodyLoc {
                    segment: self.cur_seg,
                    offset: rec_start + body_at as u64,
                    len: body.len() as u32,
                },
                body,
            )),
            _ => None,
        };
        if let Err(e) = self.private.apply(&rec, body) {
            self.buf.truncate(before);
            return Err(StoreError::Corrupt(format!("internal: {e}")));
        }
        self.emitted += 1;
        // The body is in the buffer now; the shared index needs only the metadata.
        let rec = match rec {
            Record::MessageAppend {
                account,
                mailbox,
                uid,
                modseq,
                internal_date,
                flags,
                body: _,
            } => Record::MessageAppend {
                account,
                mailbox,
                uid,
                modseq,
                internal_date,
                flags,
                body: Vec::new(),
            },
            r => r,
        };
        if let Some(c) = change {
            let mb = match &rec {
                Record::MailboxCreate { mailbox, .. }
                | Record::MailboxDelete { mailbox, .. }
                | Record::MailboxRename { mailbox, .. }
                | Record::Subscribe { mailbox, .. }
                | Record::MessageAppend { mailbox, .. }
                | Record::FlagsSet { mailbox, .. }
                | Record::Expunge { mailbox, .. } => *mailbox,
            };
            self.changes.push((rec.account().to_string(), mb, c));
        }
        self.pending.push((rec, body));
        Ok(())
    }

    fn mailbox_id(&self, key: &str, name: &str) -> StoreResult<u64> {
        self.private
            .accounts
            .get(key)
            .and_then(|a| a.by_name.get(canonical_name(name).as_ref()))
            .copied()
            .ok_or(StoreError::NoSuchMailbox)
    }

    fn mailbox(&self, key: &str, id: u64) -> StoreResult<&super::index::Mailbox> {
        self.private
            .accounts
            .get(key)
            .and_then(|a| a.mailboxes.get(&id))
            .ok_or(StoreError::NoSuchMailbox)
    }

    fn emit_create(
        &mut self,
        key: &str,
        name: &str,
        special_use: Option<SpecialUse>,
        subscribed: bool,
    ) -> StoreResult<u64> {
        let id = self.private.next_mailbox_id.max(1);
        // Clock-based so it is larger than any value a previous incarnation of the same
        // name could have had, and forced past the shard's last one so it is never reused.
        let uidvalidity = now_secs().max(self.private.last_uidvalidity.saturating_add(1));
        self.emit(
            Record::MailboxCreate {
                account: key.to_string(),
                mailbox: id,
                name: canonical_name(name).into_owned(),
                uidvalidity,
                special_use,
                subscribed,
            },
            None,
        )?;
        Ok(id)
    }

    fn ensure_account(&mut self, key: &str) -> StoreResult<()> {
        if self.private.accounts.contains_key(key) {
            return Ok(());
        }
        for (name, su) in DEFAULT_MAILBOXES {
            self.emit_create(key, name, su, true)?;
        }
        Ok(())
    }

    fn emit_append(
        &mut self,
        key: &str,
        id: u64,
        body: Vec<u8>,
        flags: Flags,
        internal_date: i64,
    ) -> StoreResult<Appended> {
        let mb = self.mailbox(key, id)?;
        let uidvalidity = mb.uidvalidity;
        let uid = mb.uidnext;
        if uid == u32::MAX {
            return Err(StoreError::NotAllowed("mailbox UID space exhausted"));
        }
        let modseq = mb.highest_modseq + 1;
        self.emit(
            Record::MessageAppend {
                account: key.to_string(),
                mailbox: id,
                uid,
                modseq,
                internal_date,
                flags,
                body,
            },
            Some(MailboxChange::Appended { uid, modseq }),
        )?;
        Ok(Appended {
            uidvalidity,
            uid,
            modseq,
        })
    }

    fn process(&mut self, op: Op) -> StoreResult<Reply> {
        match op {
            Op::Append(msgs) => self.append(msgs).map(Reply::Appended),
            Op::StoreFlags {
                account,
                mailbox,
                uids,
                op,
                flags,
                unchanged_since,
            } => self
                .store_flags(&account, &mailbox, &uids, op, &flags, unchanged_since)
                .map(Reply::Flags),
            Op::Expunge {
                account,
                mailbox,
                uids,
            } => self.expunge(&account, &mailbox, &uids).map(Reply::Uids),
            Op::Copy {
                account,
                from,
                to,
                uids,
            } => self.copy(&account, &from, &to, &uids).map(Reply::Pairs),
            Op::Create { account, name } => self.create(&account, &name).map(|_| Reply::Done),
            Op::Delete { account, name } => self.delete(&account, &name).map(|_| Reply::Done),
            Op::Rename { account, from, to } => {
                self.rename(&account, &from, &to).map(|_| Reply::Done)
            }
            Op::Subscribe {
                account,
                name,
                subscribed,
            } => self
                .subscribe(&account, &name, subscribed)
                .map(|_| Reply::Done),
        }
    }

    fn append(&mut self, msgs: Vec<NewMessage>) -> StoreResult<Vec<Appended>> {
        // Validate everything first so a bad message leaves no partial commit behind.
        for m in &msgs {
            if m.bytes.len() as u64 > u64::from(MAX_PAYLOAD) - 64 * 1024 {
                return Err(StoreError::NotAllowed("message too large"));
            }
            let key = account_key(&m.account);
            let ok = if self.private.accounts.contains_key(&key) {
                self.mailbox_id(&key, &m.mailbox).is_ok()
            } else {
                let c = canonical_name(&m.mailbox);
                DEFAULT_MAILBOXES.iter().any(|(n, _)| *n == c)
            };
            if !ok {
                return Err(StoreError::NoSuchMailbox);
            }
        }
        let mut out = Vec::with_capacity(msgs.len());
        for m in msgs {
            let key = account_key(&m.account);
            self.ensure_account(&key)?;
            let id = self.mailbox_id(&key, &m.mailbox)?;
            let flags = combine_flags(&Flags::default(), FlagOp::Replace, &m.flags);
            out.push(self.emit_append(&key, id, m.bytes, flags, m.internal_date)?);
        }
        Ok(out)
    }

    fn store_flags(
        &mut self,
        account: &str,
        mailbox: &str,
        uids: &[u32],
        op: FlagOp,
        flags: &Flags,
        unchanged_since: Option<u64>,
    ) -> StoreResult<Vec<(u32, Flags, u64)>> {
        let key = account_key(account);
        let id = self.mailbox_id(&key, mailbox)?;
        let mut out = Vec::new();
        for &uid in uids {
            let mb = self.mailbox(&key, id)?;
            let Some(m) = mb.get(uid) else { continue };
            if unchanged_since.is_some_and(|u| m.meta.modseq > u) {
                continue;
            }
            let new = combine_flags(&m.meta.flags, op, flags);
            if same_flags(&new, &m.meta.flags) {
                continue;
            }
            let modseq = mb.highest_modseq + 1;
            self.emit(
                Record::FlagsSet {
                    account: key.clone(),
                    mailbox: id,
                    uid,
                    flags: new.clone(),
                    modseq,
                },
                Some(MailboxChange::FlagsChanged { uid, modseq }),
            )?;
            out.push((uid, new, modseq));
        }
        Ok(out)
    }

    fn emit_expunge(&mut self, key: &str, id: u64, uid: u32) -> StoreResult<bool> {
        let mb = self.mailbox(key, id)?;
        if mb.get(uid).is_none() {
            return Ok(false);
        }
        let modseq = mb.highest_modseq + 1;
        self.emit(
            Record::Expunge {
                account: key.to_string(),
                mailbox: id,
                uid,
                modseq,
            },
            Some(MailboxChange::Expunged { uid, modseq }),
        )?;
        Ok(true)
    }

    fn expunge(&mut self, account: &str, mailbox: &str, uids: &[u32]) -> StoreResult<Vec<u32>> {
        let key = account_key(account);
        let id = self.mailbox_id(&key, mailbox)?;
        let mut out = Vec::new();
        for &uid in uids {
            if self.emit_expunge(&key, id, uid)? {
                out.push(uid);
            }
        }
        Ok(out)
    }

    /// Bodies of the given messages, read back from the segments. Bodies written earlier in
    /// this batch are still in the buffer, so it is flushed (not synced) first.
    fn read_bodies(&mut self, key: &str, id: u64, uids: &[u32]) -> StoreResult<Vec<StoredCopy>> {
        self.flush_buf()?;
        let mb = self.mailbox(key, id)?;
        let mut out = Vec::new();
        for &uid in uids {
            if let Some(m) = mb.get(uid) {
                let body = self.shared.segments.read(m.loc)?;
                out.push((uid, body, m.meta.flags.clone(), m.meta.internal_date));
            }
        }
        Ok(out)
    }

    fn copy(
        &mut self,
        account: &str,
        from: &str,
        to: &str,
        uids: &[u32],
    ) -> StoreResult<Vec<(u32, u32)>> {
        let key = account_key(account);
        let src = self.mailbox_id(&key, from)?;
        let dst = self.mailbox_id(&key, to)?;
        let bodies = self.read_bodies(&key, src, uids)?;
        let mut out = Vec::with_capacity(bodies.len());
        for (uid, body, flags, date) in bodies {
            let a = self.emit_append(&key, dst, body, flags, date)?;
            out.push((uid, a.uid));
        }
        Ok(out)
    }

    fn create(&mut self, account: &str, name: &str) -> StoreResult<()> {
        validate_name(name)?;
        let key = account_key(account);
        // Validate before initializing the account, so a refused create writes nothing.
        if canonical_name(name) == "INBOX" || self.mailbox_id(&key, name).is_ok() {
            return Err(StoreError::MailboxExists);
        }
        self.ensure_account(&key)?;
        if self.mailbox_id(&key, name).is_ok() {
            return Err(StoreError::MailboxExists);
        }
        // RFC 3501: create missing superior hierarchy levels too.
        let mut prefix_end = 0;
        for (i, _) in name.match_indices('/') {
            if i > prefix_end {
                let parent = &name[..i];
                if self.mailbox_id(&key, parent).is_err() {
                    self.emit_create(&key, parent, None, false)?;
                }
            }
            prefix_end = i + 1;
        }
        self.emit_create(&key, name, None, false)?;
        Ok(())
    }

    fn delete(&mut self, account: &str, name: &str) -> StoreResult<()> {
        if canonical_name(name) == "INBOX" {
            return Err(StoreError::NotAllowed("INBOX cannot be deleted"));
        }
        let key = account_key(account);
        let id = self.mailbox_id(&key, name)?;
        self.emit(
            Record::MailboxDelete {
                account: key,
                mailbox: id,
            },
            Some(MailboxChange::Gone),
        )
    }

    fn rename(&mut self, account: &str, from: &str, to: &str) -> StoreResult<()> {
        validate_name(to)?;
        let key = account_key(account);
        let src = self.mailbox_id(&key, from)?;
        if self.mailbox_id(&key, to).is_ok() {
            return Err(StoreError::MailboxExists);
        }
        if canonical_name(from) == "INBOX" {
            // RFC 3501: move INBOX's messages to a new mailbox; INBOX stays, empty.
            let uids: Vec<u32> = self
                .mailbox(&key, src)?
                .messages
                .iter()
                .map(|m| m.meta.uid)
                .collect();
            let bodies = self.read_bodies(&key, src, &uids)?;
            let dst = self.emit_create(&key, to, None, false)?;
            for (uid, body, flags, date) in bodies {
                self.emit_append(&key, dst, body, flags, date)?;
                self.emit_expunge(&key, src, uid)?;
            }
            return Ok(());
        }
        let old_name = self.mailbox(&key, src)?.name.clone();
        let child_prefix = format!("{old_name}/");
        let mut moves = vec![(src, to.to_string())];
        if let Some(acc) = self.private.accounts.get(&key) {
            for mb in acc.mailboxes.values() {
                if let Some(rest) = mb.name.strip_prefix(&child_prefix) {
                    moves.push((mb.id, format!("{to}/{rest}")));
                }
            }
        }
        for (_, new_name) in &moves {
            if self.mailbox_id(&key, new_name).is_ok() {
                return Err(StoreError::MailboxExists);
            }
        }
        for (id, new_name) in moves {
            self.emit(
                Record::MailboxRename {
                    account: key.clone(),
                    mailbox: id,
                    new_name,
                },
                Some(MailboxChange::Gone),
            )?;
        }
        Ok(())
    }

    fn subscribe(&mut self, account: &str, name: &str, subscribed: bool) -> StoreResult<()> {
        let key = account_key(account);
        let id = self.mailbox_id(&key, name)?;
        if self.mailbox(&key, id)?.subscribed == subscribed {
            return Ok(());
        }
        self.emit(
            Record::Subscribe {
                account: key,
                mailbox: id,
                subscribed,
            },
            None,
        )
    }
}

/// (source uid, body, flags, internal date) of a message about to be copied.
type StoredCopy = (u32, Vec<u8>, Flags, i64);

fn validate_name(name: &str) -> StoreResult<()> {
    if name.is_empty()
        || name.starts_with('/')
        || name.ends_with('/')
        || name.contains("//")
        || name.chars().any(|c| c.is_control())
    {
        return Err(StoreError::NotAllowed("invalid mailbox name"));
    }
    Ok(())
}
