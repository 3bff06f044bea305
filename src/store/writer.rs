//! The per-shard log writer thread and its group commit.
//!
//! The writer owns the shard's two logs — the mailbox log and the outbound queue log (see
//! [`super::queue`]) — and a *private* copy of each index that already contains the effects of
//! records written but not yet synced. Requests are validated and turned into records against
//! that private copy (so a create followed by an append in the same batch works); only after
//! the batch's fdatasync (one per log the batch wrote to) are the same records applied to the
//! shared indexes that readers see, then subscribers are told, then the callers are answered.
//! An acknowledgement or a visible change therefore never precedes durability.
//!
//! When the queue has nothing to do the writer reclaims spent queue segments (deletes sealed
//! segments without live messages, copying a few long-deferred messages forward first), and
//! compacts the mailbox log (see [`super::compact`]) one bounded step at a time.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crossbeam_channel::Receiver;
use futures_channel::mpsc::UnboundedSender;
use futures_channel::oneshot;

use super::checkpoint::SealedLengths;
use super::compact::{Compaction, CompactionReport};
use super::index::{
    BodyInfo, BodyLoc, ShardIndex, account_key, canonical_name, combine_flags, same_flags,
};
use super::names::{self, MailboxLimits};
use super::queue::{
    NewQueuedMessage, QueueEvent, QueueIndex, QueueRecord, QueueUpdate, QueuedMessage,
};
use super::record::{AppendOrigin, MAX_PAYLOAD, MessageBytes, Record};
use super::segment::{QUEUE_LOG, SegmentSet, fsync_dir, log_path, open_log};
use super::{
    Appended, EmailId, FlagOp, Flags, MailboxChange, NameChange, NewMessage, SpecialUse,
    StoreError, StoreResult,
};

/// Group-commit caps: bound the latency one batch adds and the memory it buffers.
const MAX_BATCH_REQUESTS: usize = 256;
const MAX_BATCH_BYTES: usize = 8 << 20;
/// Under sustained load (the request channel never empty), reclaim spent queue segments and do
/// a step of mailbox log compaction after this many batches anyway.
const RECLAIM_EVERY_BATCHES: u32 = 64;
/// The same while an on-demand compaction is waited for.
const COMPACT_ON_DEMAND_EVERY_BATCHES: u32 = 4;

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
    /// Mailbox copies, queued messages and queue updates, committed in this order in one batch.
    Deliver {
        appends: Vec<NewMessage>,
        enqueue: Vec<NewQueuedMessage>,
        updates: Vec<QueueUpdate>,
    },
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
    /// Compact every segment of which at least this percentage is dead (default: the
    /// configured one); answered with [`Reply::Compacted`] when done.
    Compact {
        dead_pct: Option<u8>,
    },
}

impl Op {
    fn approx_bytes(&self) -> usize {
        match self {
            Op::Append(m) => m.iter().map(|m| m.bytes.len() + 64).sum(),
            Op::Deliver {
                appends, enqueue, ..
            } => {
                appends.iter().map(|m| m.bytes.len() + 64).sum::<usize>()
                    + enqueue.iter().map(|m| m.bytes.len() + 256).sum::<usize>()
            }
            _ => 64,
        }
    }
}

pub enum Reply {
    Appended(Vec<Appended>),
    Flags(Vec<(u32, Flags, u64)>),
    Uids(Vec<u32>),
    Pairs(Vec<(u32, u32)>),
    Compacted(CompactionReport),
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
    /// Queue segments deleted after their messages were finished.
    pub queue_segments_reclaimed: AtomicU64,
    /// Queued messages copied forward out of a segment being reclaimed.
    pub queue_copied_forward: AtomicU64,
    /// Mailbox log segments rewritten or deleted by compaction.
    pub segments_compacted: AtomicU64,
    /// Bytes of mailbox log given back by compaction.
    pub compaction_bytes_reclaimed: AtomicU64,
    /// The longest a single compaction step kept the writer from committing, in microseconds.
    pub compaction_longest_step_us: AtomicU64,
    /// Test hook: writers exit without the final checkpoint, as after a crash.
    pub skip_final_checkpoint: std::sync::atomic::AtomicBool,
    /// Test hook: a compaction stops dead after this step (1–5, see `compact`); 0 = never.
    #[cfg(test)]
    pub compaction_stop_after: std::sync::atomic::AtomicU32,
}

pub type Subscribers = HashMap<(String, u64), Vec<UnboundedSender<MailboxChange>>>;

/// Subscribers to every mailbox of an account, by account key.
pub type AccountSubscribers = HashMap<String, Vec<UnboundedSender<super::AccountChange>>>;

/// The part of a shard that readers share with its writer.
pub struct Shared {
    pub index: RwLock<ShardIndex>,
    pub segments: SegmentSet,
    pub subs: Mutex<Subscribers>,
    pub account_subs: Mutex<AccountSubscribers>,
    pub queue: RwLock<QueueIndex>,
    pub queue_segments: SegmentSet,
    pub queue_subs: Mutex<Vec<UnboundedSender<QueueEvent>>>,
    pub stats: Arc<Stats>,
}

/// The open end of one log: the segment being appended to and the batch's pending bytes.
pub struct LogTail {
    /// File name prefix of the log's segments.
    pub log: &'static str,
    pub dir: PathBuf,
    pub segment_bytes: u64,
    pub fsync: bool,
    pub cur_seg: u32,
    pub cur_file: Arc<File>,
    /// Bytes of the current segment already written to the file.
    pub cur_len: u64,
    /// Bytes written since the last checkpoint (meaningful for the mailbox log).
    pub since_checkpoint: u64,
    /// Lengths of the sealed segments (all but the current one), for checkpoints and compaction
    /// (meaningful for the mailbox log).
    pub sealed: SealedLengths,
    buf: Vec<u8>,
    /// Where the current batch began: segment, its file, and the offset in it.
    batch_start_seg: u32,
    batch_start_file: Arc<File>,
    batch_start: u64,
    rolled: bool,
}

impl LogTail {
    pub fn new(
        log: &'static str,
        dir: PathBuf,
        config: &super::StoreConfig,
        segment_bytes: u64,
        cur: (u32, Arc<File>, u64),
    ) -> Self {
        LogTail {
            log,
            dir,
            segment_bytes: segment_bytes.max(1),
            fsync: config.fsync,
            batch_start_seg: cur.0,
            batch_start_file: cur.1.clone(),
            cur_seg: cur.0,
            cur_file: cur.1,
            cur_len: cur.2,
            since_checkpoint: 0,
            sealed: SealedLengths::new(),
            buf: Vec::new(),
            batch_start: cur.2,
            rolled: false,
        }
    }

    fn begin_batch(&mut self) {
        self.batch_start_seg = self.cur_seg;
        self.batch_start_file = self.cur_file.clone();
        self.batch_start = self.cur_len;
        self.rolled = false;
    }

    /// Where the next record will start.
    fn next_offset(&self) -> u64 {
        self.cur_len + self.buf.len() as u64
    }

    /// Rolls to a new segment first if a record of `need` bytes does not fit in this one.
    fn make_room(&mut self, need: usize, segments: &SegmentSet, stats: &Stats) -> StoreResult<()> {
        let used = self.next_offset();
        if used > 0 && used + need as u64 > self.segment_bytes {
            self.roll(segments, stats)?;
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

    /// Writes the batch's bytes and makes them durable with one fdatasync.
    fn sync(&mut self, stats: &Stats) -> StoreResult<()> {
        let wrote = !self.buf.is_empty() || self.rolled || self.cur_len != self.batch_start;
        self.flush_buf()?;
        if wrote && self.fsync {
            self.cur_file.sync_data()?;
            stats.fsyncs.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Starts a new segment. The old one is fdatasynced first, so only the last segment can
    /// ever have a torn tail — which is what lets recovery treat damage elsewhere as corruption.
    fn roll(&mut self, segments: &SegmentSet, stats: &Stats) -> StoreResult<()> {
        self.flush_buf()?;
        if self.fsync {
            self.cur_file.sync_data()?;
            stats.fsyncs.fetch_add(1, Ordering::Relaxed);
        }
        let n = self
            .cur_seg
            .checked_add(1)
            .ok_or_else(|| io_err("segment numbers exhausted"))?;
        let f = Arc::new(open_log(&self.dir, self.log, n, true)?);
        if self.fsync {
            fsync_dir(&self.dir)?;
        }
        segments.insert(n, f.clone())?;
        self.sealed.insert(self.cur_seg, self.cur_len);
        self.cur_seg = n;
        self.cur_file = f;
        self.cur_len = 0;
        self.rolled = true;
        Ok(())
    }

    /// Drops the failed batch's bytes from the files, so the log continues where the batch
    /// began. `Err` when that is impossible and the log on disk may now hold records memory
    /// does not know.
    ///
    /// A full disk often strikes just after a roll-over, so a batch that rolled is undone too:
    /// the segments it created (or began to create, when the roll itself failed) are deleted,
    /// durably, before anything else is written. Left behind, one of them would pass for the
    /// log's tail at the next start, and a torn record at the end of the real tail would then
    /// read as corruption.
    fn abort(&mut self, segments: &SegmentSet) -> Result<(), String> {
        self.buf.clear();
        let mut removed = false;
        for n in u64::from(self.batch_start_seg) + 1..=u64::from(self.cur_seg) + 1 {
            let Ok(n) = u32::try_from(n) else { break };
            segments
                .remove(n)
                .map_err(|e| format!("cannot forget segment {n} of a failed write ({e})"))?;
            match std::fs::remove_file(log_path(&self.dir, self.log, n)) {
                Ok(()) => removed = true,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(format!(
                        "cannot delete segment {n} of a failed write ({e}); restart"
                    ));
                }
            }
        }
        if removed && self.fsync {
            fsync_dir(&self.dir).map_err(|e| {
                format!("cannot make the removal of a failed write durable ({e}); restart")
            })?;
        }
        self.cur_seg = self.batch_start_seg;
        self.cur_file = self.batch_start_file.clone();
        // The segment the batch began in is the tail again, not sealed (checkpoints and
        // compaction go by this list).
        let first_rolled = self.batch_start_seg;
        self.sealed.retain(|&n, _| n < first_rolled);
        self.rolled = false;
        self.cur_file
            .set_len(self.batch_start)
            .map_err(|e| format!("cannot roll back a failed write ({e}); restart"))?;
        self.cur_len = self.batch_start;
        Ok(())
    }
}

pub struct Writer {
    pub shared: Arc<Shared>,
    pub rx: Receiver<Request>,
    pub dir: PathBuf,
    pub checkpoint_bytes: u64,
    pub mailbox_limits: MailboxLimits,
    pub private: ShardIndex,
    pub queue_private: QueueIndex,
    /// The mailbox log.
    pub log: LogTail,
    /// The outbound queue log.
    pub qlog: LogTail,
    pub compaction: Compaction,
    /// Segment of the position of the checkpoint on disk, if there is a usable one.
    pub checkpoint_segment: Option<u32>,
    // Per-batch state below.
    pending: Vec<(Record, Option<BodyInfo>)>,
    queue_pending: Vec<(QueueRecord, Option<BodyInfo>)>,
    changes: Vec<(String, u64, MailboxChange)>,
    queue_events: Vec<QueueEvent>,
    emitted: usize,
    /// Set when a failed batch may have left records on disk that the index does not know;
    /// from then on the shard refuses writes until a restart replays the log.
    pub(super) poisoned: Option<String>,
}

/// Errors a request reports without affecting other requests of the batch.
fn is_logical(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::NoSuchMailbox
            | StoreError::MailboxExists
            | StoreError::NotAllowed(_)
            | StoreError::LimitReached(_)
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
    pub fn new(
        shared: Arc<Shared>,
        rx: Receiver<Request>,
        config: &super::StoreConfig,
        private: ShardIndex,
        queue_private: QueueIndex,
        log: LogTail,
        qlog: LogTail,
    ) -> Self {
        Writer {
            shared,
            rx,
            dir: log.dir.clone(),
            checkpoint_bytes: config.checkpoint_bytes,
            mailbox_limits: config.mailbox_limits,
            private,
            queue_private,
            log,
            qlog,
            compaction: Compaction::new(config.compact_dead_pct),
            checkpoint_segment: None,
            pending: Vec::new(),
            queue_pending: Vec::new(),
            changes: Vec::new(),
            queue_events: Vec::new(),
            emitted: 0,
            poisoned: None,
        }
    }

    pub fn run(mut self) {
        // Ends when every sender is gone (store closed); queued requests are still delivered
        // before that, so everything accepted is committed.
        let mut since_reclaim = 0;
        // Look for compaction work once at start-up, then after batches.
        let mut compact_pending = true;
        loop {
            let first = if compact_pending {
                // Compaction work waits: do a step whenever no request does.
                match self.rx.try_recv() {
                    Ok(r) => r,
                    Err(crossbeam_channel::TryRecvError::Empty) => {
                        compact_pending = self.compact_step();
                        continue;
                    }
                    Err(crossbeam_channel::TryRecvError::Disconnected) => break,
                }
            } else {
                match self.rx.recv() {
                    Ok(r) => r,
                    Err(_) => break,
                }
            };
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
            // Reclaim between batches when idle, and now and then under sustained load too,
            // so a busy queue's and a busy mailbox log's disk use stay bounded.
            since_reclaim += 1;
            let every = if self.compaction.busy() {
                COMPACT_ON_DEMAND_EVERY_BATCHES
            } else {
                RECLAIM_EVERY_BATCHES
            };
            if self.rx.is_empty() || since_reclaim >= every {
                since_reclaim = 0;
                self.reclaim_queue();
                compact_pending = self.compact_step();
            }
        }
        self.compaction.abandon();
        self.compaction.fail_waiters("store is shut down");
        if self.poisoned.is_none()
            && !self
                .shared
                .stats
                .skip_final_checkpoint
                .load(Ordering::Relaxed)
        {
            // A compaction's checkpoint may still be due with no log written since the last
            // one; without it the next start would replay the whole log.
            if self.compaction.take_checkpoint_due() {
                self.write_checkpoint();
            } else {
                self.maybe_checkpoint(true);
            }
        }
    }

    fn run_batch(&mut self, batch: Vec<Request>) {
        if let Some(why) = &self.poisoned {
            for r in batch {
                let _ = r.reply.send(Err(io_err(why)));
            }
            return;
        }
        self.log.begin_batch();
        self.qlog.begin_batch();
        let mut replies = Vec::with_capacity(batch.len());
        let mut fatal: Option<StoreError> = None;
        for req in batch {
            let req = match req {
                Request {
                    op: Op::Compact { dead_pct },
                    reply,
                } => {
                    self.compaction.request(dead_pct, reply);
                    continue;
                }
                r => r,
            };
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
            // Callers decide their reply by the cause (a full disk is not a broken one), so
            // they get the operating system's error code; the context is in the log above.
            let os_code = match &e {
                StoreError::Io(io) => io.raw_os_error(),
                _ => None,
            };
            for (tx, _) in replies {
                let err = match os_code {
                    Some(code) => StoreError::Io(std::io::Error::from_raw_os_error(code)),
                    None => io_err(&msg),
                };
                let _ = tx.send(Err(err));
            }
            return;
        }

        let nrec = (self.pending.len() + self.queue_pending.len()) as u64;
        self.publish();
        let stats = &self.shared.stats;
        stats.records.fetch_add(nrec, Ordering::Relaxed);
        stats.batches.fetch_add(1, Ordering::Relaxed);
        // Subscribers first: once a caller is told its change is done, every other session's
        // channel already holds it, so their next command reports it.
        self.notify();
        for (tx, r) in replies {
            if let Some(r) = r {
                let _ = tx.send(r);
            }
        }
        self.maybe_checkpoint(false);
    }

    /// Applies the committed records to the shared indexes readers see.
    fn publish(&mut self) {
        if !self.pending.is_empty() {
            let mut ix = self.shared.index.write().unwrap_or_else(|p| p.into_inner());
            for (rec, body) in self.pending.drain(..) {
                if let Err(e) = ix.apply(&rec, body) {
                    // The private copy accepted this record, so this is a bug, not bad input.
                    tracing::error!("shared index rejected a committed record: {e}");
                }
            }
        }
        if !self.queue_pending.is_empty() {
            let mut q = self.shared.queue.write().unwrap_or_else(|p| p.into_inner());
            for (rec, body) in self.queue_pending.drain(..) {
                if let Err(e) = q.apply(&rec, body) {
                    tracing::error!("shared queue index rejected a committed record: {e}");
                }
            }
        }
    }

    /// Writes both logs' batch bytes and makes them durable (one fdatasync per log written).
    fn sync(&mut self) -> StoreResult<()> {
        self.log.sync(&self.shared.stats)?;
        self.qlog.sync(&self.shared.stats)
    }

    /// Undoes a failed batch: drops its records from the files and resets the private indexes
    /// to the last committed state.
    fn abort(&mut self) {
        self.pending.clear();
        self.queue_pending.clear();
        self.changes.clear();
        self.queue_events.clear();
        let logs = [
            (&mut self.log, &self.shared.segments),
            (&mut self.qlog, &self.shared.queue_segments),
        ];
        for (tail, segments) in logs {
            if let Err(why) = tail.abort(segments) {
                self.poisoned = Some(why);
            }
        }
        self.private = self
            .shared
            .index
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        self.queue_private = self
            .shared
            .queue
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
    }

    fn notify(&mut self) {
        if !self.changes.is_empty() {
            let shared = self.shared.clone();
            let mut subs = shared.subs.lock().unwrap_or_else(|p| p.into_inner());
            let mut account_subs = shared
                .account_subs
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            for (account, mailbox, change) in self.changes.drain(..) {
                if let Some(list) = account_subs.get_mut(&account) {
                    let event = super::AccountChange {
                        mailbox,
                        change: change.clone(),
                    };
                    list.retain(|tx| tx.unbounded_send(event.clone()).is_ok());
                    if list.is_empty() {
                        account_subs.remove(&account);
                    }
                }
                if matches!(change, MailboxChange::Named(_)) {
                    continue;
                }
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
        if !self.queue_events.is_empty() {
            let shared = self.shared.clone();
            let mut subs = shared.queue_subs.lock().unwrap_or_else(|p| p.into_inner());
            for event in self.queue_events.drain(..) {
                subs.retain(|tx| tx.unbounded_send(event.clone()).is_ok());
            }
        }
    }

    /// Ends the mailbox log's current segment now (between batches), so compaction may take it.
    pub(super) fn seal_tail(&mut self) -> StoreResult<()> {
        self.log.begin_batch();
        let rolled = self.log.roll(&self.shared.segments, &self.shared.stats);
        if rolled.is_err()
            && let Err(why) = self.log.abort(&self.shared.segments)
        {
            self.poisoned = Some(why);
        }
        rolled
    }

    fn maybe_checkpoint(&mut self, force: bool) {
        if self.log.since_checkpoint == 0
            || (!force && self.log.since_checkpoint < self.checkpoint_bytes)
        {
            return;
        }
        self.write_checkpoint();
    }

    /// Encodes `rec` into the mailbox log's batch and applies it to the private index.
    fn emit(&mut self, rec: Record, change: Option<MailboxChange>) -> StoreResult<()> {
        self.log
            .make_room(rec.encoded_len(), &self.shared.segments, &self.shared.stats)?;
        let rec_start = self.log.next_offset();
        let before = self.log.buf.len();
        let body_at = rec.encode(&mut self.log.buf);
        let body = match &rec {
            Record::MessageAppend { body, .. } => Some(BodyInfo::of(
                BodyLoc {
                    segment: self.log.cur_seg,
                    offset: rec_start + body_at as u64,
                    len: body.len() as u32,
                },
                body,
            )),
            _ => None,
        };
        if let Err(e) = self.private.apply(&rec, body) {
            self.log.buf.truncate(before);
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
                origin,
                body: _,
            } => Record::MessageAppend {
                account,
                mailbox,
                uid,
                modseq,
                internal_date,
                flags,
                origin,
                body: Default::default(),
            },
            r => r,
        };
        if let Some(c) = change
            && let Some(mb) = rec.mailbox()
        {
            self.changes.push((rec.account().to_string(), mb, c));
        }
        self.pending.push((rec, body));
        Ok(())
    }

    /// Encodes `rec` into the queue log's batch and applies it to the private queue index.
    fn emit_queue(&mut self, rec: QueueRecord) -> StoreResult<()> {
        self.qlog.make_room(
            rec.encoded_len(),
            &self.shared.queue_segments,
            &self.shared.stats,
        )?;
        let rec_start = self.qlog.next_offset();
        let before = self.qlog.buf.len();
        let body_at = rec.encode(&mut self.qlog.buf);
        let body = match &rec {
            QueueRecord::Message { bytes, .. } => Some(BodyInfo::of(
                BodyLoc {
                    segment: self.qlog.cur_seg,
                    offset: rec_start + body_at as u64,
                    len: bytes.len() as u32,
                },
                bytes,
            )),
            QueueRecord::Update(_) => None,
        };
        let live = match self.queue_private.apply(&rec, body) {
            Ok(live) => live,
            Err(e) => {
                self.qlog.buf.truncate(before);
                return Err(StoreError::Corrupt(format!("internal: {e}")));
            }
        };
        self.emitted += 1;
        let (rec, id) = match rec {
            QueueRecord::Message { message, .. } => {
                let id = message.id.clone();
                (
                    QueueRecord::Message {
                        message,
                        bytes: MessageBytes::default(),
                    },
                    id,
                )
            }
            QueueRecord::Update(u) => {
                let id = u.id.clone();
                (QueueRecord::Update(u), id)
            }
        };
        self.queue_events.push(if live {
            QueueEvent::Changed(id)
        } else {
            QueueEvent::Gone(id)
        });
        self.queue_pending.push((rec, body));
        Ok(())
    }

    /// Deletes sealed queue segments that no live message calls home, oldest first; a head
    /// segment with only a few live messages left gets them copied forward first.
    fn reclaim_queue(&mut self) {
        if self.poisoned.is_some() {
            return;
        }
        let mut copied = false;
        loop {
            let Some(&head) = self.shared.queue_segments.numbers().first() else {
                return;
            };
            if head == self.qlog.cur_seg {
                return;
            }
            match self.queue_private.live.get(&head).copied() {
                None => {
                    if let Err(e) = self.delete_queue_segment(head) {
                        tracing::warn!(dir = %self.dir.display(), segment = head, error = %e, "could not delete a spent queue segment");
                        return;
                    }
                }
                Some(u) if !copied && u.bytes <= self.qlog.segment_bytes / 2 => {
                    copied = true;
                    if let Err(e) = self.copy_forward(head) {
                        tracing::warn!(dir = %self.dir.display(), segment = head, error = %e, "queue copy-forward failed");
                        return;
                    }
                }
                Some(_) => return,
            }
        }
    }

    fn delete_queue_segment(&mut self, n: u32) -> StoreResult<()> {
        self.shared.queue_segments.remove(n)?;
        std::fs::remove_file(log_path(&self.dir, QUEUE_LOG, n))?;
        if self.qlog.fsync {
            fsync_dir(&self.dir)?;
        }
        self.shared
            .stats
            .queue_segments_reclaimed
            .fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Rewrites the live messages whose home is segment `n` at the tail of the queue log, as
    /// one durable batch, so `n` can go.
    fn copy_forward(&mut self, n: u32) -> StoreResult<()> {
        let file = self.shared.queue_segments.get(n)?;
        let homed: Vec<(QueuedMessage, BodyLoc)> = self
            .queue_private
            .entries
            .values()
            .filter(|e| e.loc.segment == n)
            .map(|e| (e.message.clone(), e.loc))
            .collect();
        self.log.begin_batch();
        self.qlog.begin_batch();
        self.emitted = 0;
        let mut result = Ok(());
        for (message, loc) in &homed {
            let bytes = match super::segment::read_exact_at(&file, loc.offset, loc.len) {
                Ok(b) => b,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            };
            if let Err(e) = self.emit_queue(QueueRecord::Message {
                message: message.clone(),
                bytes: bytes.into(),
            }) {
                result = Err(e);
                break;
            }
        }
        // Nobody needs telling: the messages did not change, only where their bytes are.
        self.queue_events.clear();
        if let Err(e) = result.and_then(|_| self.sync()) {
            self.abort();
            return Err(e);
        }
        self.shared
            .stats
            .queue_copied_forward
            .fetch_add(homed.len() as u64, Ordering::Relaxed);
        self.publish();
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
        let name = canonical_name(name).into_owned();
        self.emit(
            Record::MailboxCreate {
                account: key.to_string(),
                mailbox: id,
                name: name.clone(),
                uidvalidity,
                special_use,
                subscribed,
            },
            None,
        )?;
        self.named(key, id, NameChange::Created(name));
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
        body: MessageBytes,
        flags: Flags,
        internal_date: i64,
        copied_from: Option<EmailId>,
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
                origin: Some(AppendOrigin {
                    email_id: copied_from.unwrap_or(EmailId { mailbox: id, uid }),
                    saved: i64::from(now_secs()),
                }),
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
            Op::Deliver {
                appends,
                enqueue,
                updates,
            } => self.deliver(appends, enqueue, updates).map(Reply::Appended),
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
            // Taken out of the batch by `run_batch`.
            Op::Compact { .. } => Err(StoreError::NotAllowed("compaction is not a log write")),
        }
    }

    /// Checks a batch of appends before any is written, so a bad one leaves no partial commit.
    fn check_appends(&self, msgs: &[NewMessage]) -> StoreResult<()> {
        for m in msgs {
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
        Ok(())
    }

    fn append(&mut self, msgs: Vec<NewMessage>) -> StoreResult<Vec<Appended>> {
        self.check_appends(&msgs)?;
        let mut out = Vec::with_capacity(msgs.len());
        for m in msgs {
            let key = account_key(&m.account);
            self.ensure_account(&key)?;
            let id = self.mailbox_id(&key, &m.mailbox)?;
            let flags = combine_flags(&Flags::default(), FlagOp::Replace, &m.flags);
            out.push(self.emit_append(&key, id, m.bytes, flags, m.internal_date, None)?);
        }
        Ok(out)
    }

    /// Checks queue additions and updates before any is written.
    fn check_queue(
        &self,
        enqueue: &[NewQueuedMessage],
        updates: &[QueueUpdate],
    ) -> StoreResult<()> {
        for (i, q) in enqueue.iter().enumerate() {
            if q.bytes.len() as u64 > u64::from(MAX_PAYLOAD) - 64 * 1024 {
                return Err(StoreError::NotAllowed("message too large"));
            }
            if q.recipients.is_empty() {
                return Err(StoreError::NotAllowed("queued message without recipients"));
            }
            if self.queue_private.entries.contains_key(&q.id)
                || enqueue[..i].iter().any(|o| o.id == q.id)
            {
                return Err(StoreError::NotAllowed("queue id already in use"));
            }
        }
        for u in updates {
            match enqueue.iter().find(|q| q.id == u.id) {
                Some(q) => {
                    if u.recipients
                        .iter()
                        .any(|(i, _)| *i as usize >= q.recipients.len())
                    {
                        return Err(StoreError::NotAllowed("recipient index out of range"));
                    }
                }
                None => self
                    .queue_private
                    .check(u)
                    .map_err(StoreError::NotAllowed)?,
            }
        }
        Ok(())
    }

    fn deliver(
        &mut self,
        appends: Vec<NewMessage>,
        enqueue: Vec<NewQueuedMessage>,
        updates: Vec<QueueUpdate>,
    ) -> StoreResult<Vec<Appended>> {
        self.check_appends(&appends)?;
        self.check_queue(&enqueue, &updates)?;
        let out = self.append(appends)?;
        for q in enqueue {
            let size = q.bytes.len() as u32;
            self.emit_queue(QueueRecord::Message {
                message: QueuedMessage {
                    id: q.id,
                    created: q.created,
                    envelope: q.envelope,
                    recipients: q.recipients,
                    held: false,
                    size,
                },
                bytes: q.bytes,
            })?;
        }
        for u in updates {
            self.emit_queue(QueueRecord::Update(u))?;
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
        self.log.flush_buf()?;
        let mb = self.mailbox(key, id)?;
        let mut out = Vec::new();
        for &uid in uids {
            if let Some(m) = mb.get(uid) {
                let body = self.shared.segments.read(m.loc)?;
                out.push(StoredCopy {
                    uid,
                    body: body.into(),
                    flags: m.meta.flags.clone(),
                    internal_date: m.meta.internal_date,
                    email_id: m.meta.email_id,
                });
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
        for c in bodies {
            let a = self.emit_append(
                &key,
                dst,
                c.body,
                c.flags,
                c.internal_date,
                Some(c.email_id),
            )?;
            out.push((c.uid, a.uid));
        }
        Ok(out)
    }

    fn create(&mut self, account: &str, name: &str) -> StoreResult<()> {
        self.validate_name(name)?;
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
        let missing: Vec<&str> = names::ancestors(name)
            .filter(|parent| self.mailbox_id(&key, parent).is_err())
            .collect();
        self.check_room(&key, missing.len() + 1)?;
        for parent in missing {
            self.emit_create(&key, parent, None, false)?;
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
        let mb = self.mailbox(&key, id)?;
        let kept_subscription = mb.subscribed.then(|| mb.name.clone());
        let old_name = mb.name.clone();
        self.emit(
            Record::MailboxDelete {
                account: key.clone(),
                mailbox: id,
            },
            Some(MailboxChange::Gone),
        )?;
        self.named(&key, id, NameChange::Deleted(old_name));
        // RFC 9051 §6.3.9: DELETE does not unsubscribe; the name stays subscribed without
        // its mailbox (LIST (SUBSCRIBED) shows it \NonExistent).
        if let Some(name) = kept_subscription {
            self.emit(
                Record::Subscription {
                    account: key,
                    name,
                    subscribed: true,
                },
                None,
            )?;
        }
        Ok(())
    }

    fn rename(&mut self, account: &str, from: &str, to: &str) -> StoreResult<()> {
        self.validate_name(to)?;
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
            self.check_room(&key, 1)?;
            let bodies = self.read_bodies(&key, src, &uids)?;
            let dst = self.emit_create(&key, to, None, false)?;
            for c in bodies {
                self.emit_append(
                    &key,
                    dst,
                    c.body,
                    c.flags,
                    c.internal_date,
                    Some(c.email_id),
                )?;
                self.emit_expunge(&key, src, c.uid)?;
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
            // The children's new names may outgrow the limits the new name itself passed.
            self.validate_name(new_name)?;
            if self.mailbox_id(&key, new_name).is_ok() {
                return Err(StoreError::MailboxExists);
            }
        }
        for (id, new_name) in moves {
            let from = self.mailbox(&key, id)?.name.clone();
            self.emit(
                Record::MailboxRename {
                    account: key.clone(),
                    mailbox: id,
                    new_name: new_name.clone(),
                },
                Some(MailboxChange::Gone),
            )?;
            self.named(&key, id, NameChange::Renamed { from, to: new_name });
        }
        Ok(())
    }

    fn subscribe(&mut self, account: &str, name: &str, subscribed: bool) -> StoreResult<()> {
        let key = account_key(account);
        let Ok(id) = self.mailbox_id(&key, name) else {
            return self.subscribe_name(&key, name, subscribed);
        };
        let mb = self.mailbox(&key, id)?;
        if mb.subscribed == subscribed {
            return Ok(());
        }
        let name = mb.name.clone();
        self.emit(
            Record::Subscribe {
                account: key.clone(),
                mailbox: id,
                subscribed,
            },
            None,
        )?;
        self.named(&key, id, NameChange::Subscription { name, subscribed });
        Ok(())
    }

    /// Records a name event for the account's subscribers (sent with the batch's changes).
    fn named(&mut self, key: &str, id: u64, change: NameChange) {
        self.changes
            .push((key.to_string(), id, MailboxChange::Named(change)));
    }
}

impl Writer {
    /// SUBSCRIBE/UNSUBSCRIBE of a name that has no mailbox (RFC 9051 §6.3.7 lets a client
    /// subscribe to a name before it exists).
    fn subscribe_name(&mut self, key: &str, name: &str, subscribed: bool) -> StoreResult<()> {
        let canonical = canonical_name(name).into_owned();
        let held = self
            .private
            .accounts
            .get(key)
            .map(|a| &a.lost_subscriptions);
        let known = held.is_some_and(|set| set.contains(&canonical));
        if !subscribed {
            if !known {
                return Err(StoreError::NoSuchMailbox);
            }
        } else {
            if known {
                return Ok(());
            }
            self.validate_name(name)?;
            // The set is bounded like the mailboxes themselves: each entry costs memory and a
            // checkpoint line.
            if held.map_or(0, |set| set.len()) >= self.mailbox_limits.max_mailboxes {
                return Err(StoreError::LimitReached(
                    "too many subscriptions in the account",
                ));
            }
            self.ensure_account(key)?;
        }
        self.emit(
            Record::Subscription {
                account: key.to_owned(),
                name: canonical.clone(),
                subscribed,
            },
            None,
        )?;
        self.named(
            key,
            0,
            NameChange::Subscription {
                name: canonical,
                subscribed,
            },
        );
        Ok(())
    }
}

/// A message about to be copied, as read from its source mailbox.
struct StoredCopy {
    uid: u32,
    body: MessageBytes,
    flags: Flags,
    internal_date: i64,
    email_id: EmailId,
}

impl Writer {
    /// A name a request would bring into existence, against the rules of [`super::names`].
    /// Names already stored stay usable even if the limits have shrunk since.
    fn validate_name(&self, name: &str) -> StoreResult<()> {
        names::check_name(name, &self.mailbox_limits)
            .map_err(|e| StoreError::NotAllowed(e.reason()))
    }

    /// Room in the account for `adding` more mailboxes. The writer is the only place that
    /// sees every session's creates in order, so the limit holds however many race.
    fn check_room(&self, key: &str, adding: usize) -> StoreResult<()> {
        let have = self
            .private
            .accounts
            .get(key)
            .map_or(0, |a| a.mailboxes.len());
        if have + adding > self.mailbox_limits.max_mailboxes {
            return Err(StoreError::LimitReached(
                "too many mailboxes in the account",
            ));
        }
        Ok(())
    }
}
