//! Compaction of the mailbox log: gives back the space of expunged messages, superseded flag
//! changes and deleted mailboxes.
//!
//! # What it does
//!
//! The shard's writer thread (which owns the files) picks a *sealed* segment `S` — never the
//! tail — of which at least `compact_dead_pct` percent is dead, and rewrites it
//! **in place**: the records of `S` that are still needed are copied, byte for byte and in
//! their original order, into `seg-S.compact`; that file is fdatasynced and renamed over
//! `seg-S.log`. Keeping the segment number and the record order means a replay meets the
//! surviving records exactly where it met them before, between the same neighbours, so no
//! record kind needs a "moved" meaning and nothing can be replayed twice: at every moment there
//! is exactly one file named `seg-S.log`, the old one or the new one.
//!
//! The copy runs in steps of about [`STEP_BYTES`] (read, decide, write, fdatasync), one step at
//! a time between group commits, so deliveries and fetches wait at most one step. A record larger
//! than a step (a big message) is streamed through in step-sized pieces, its CRC checked on the
//! way.
//!
//! # What survives, and why replay still builds the same index
//!
//! The index is a fold over the log ([`super::index`]), and must stay one: the checkpoint is only
//! an accelerator, so the compacted log *alone* must fold to the index the writer holds. Records
//! of `S`, judged against the writer's index:
//!
//! * `MessageAppend`: kept iff the message is still present (mailbox alive, UID not expunged).
//!   Dropped appends are of expunged messages or deleted mailboxes.
//! * `FlagsSet`: kept iff its modseq is the message's current modseq — it produced the current
//!   flags. Every other one was superseded by a later record that is kept (modseqs are unique
//!   and increasing per mailbox), or its message is gone.
//! * `Expunge`: kept iff its mailbox is alive. The tombstone answers QRESYNC (`expunged_since`)
//!   and, together with the kept appends and flag changes, carries UIDNEXT and HIGHESTMODSEQ:
//!   the largest UID ever appended is either still present or expunged, and every dropped
//!   record's modseq is below that of a kept record of the same mailbox (a superseded flag
//!   change below its successor, an expunged message's records below its expunge).
//! * `MailboxCreate`: kept iff the mailbox is alive (its UIDVALIDITY lives in it). The create of
//!   a deleted mailbox is dropped, and then so is every other record of that mailbox in `S`.
//! * `Subscription` (a name without mailbox): always kept.
//! * `MailboxRename`, `Subscribe`, `MailboxDelete`: kept unless their mailbox's create was
//!   dropped in this pass. (If the create is in another segment, the mailbox still exists at
//!   that point of a replay and its renames must be replayed to keep names from colliding.)
//! * `ShardState` (below): folded into the new one.
//!
//! When a create is dropped (or `S` held a `ShardState`), a [`Record::ShardState`] with the
//! largest mailbox id + 1 and UIDVALIDITY seen in `S` is appended at the end of the new file, so
//! a replay never hands out a mailbox id or UIDVALIDITY again. UIDNEXT, HIGHESTMODSEQ and
//! UIDVALIDITY therefore never go backwards.
//!
//! Records in *later* segments may now be *orphans*: a flag change or expunge of a message whose
//! append is gone, a rename or delete of a mailbox whose create is gone. Replay
//! ([`ShardIndex::apply_replayed`]) accepts them and applies only the counters they prove; the
//! writer's own index still refuses them, so a bug cannot create one unnoticed. A decision that
//! goes stale while the copy is in progress (a kept message is expunged meanwhile) only keeps a
//! record that a later record overrides; a dropped record can never become needed again, since
//! an expunged message or deleted mailbox does not come back.
//!
//! # Crash safety, step by step
//!
//! 0. Before starting on `S`, if the last checkpoint's position is not past `S`, a new one is
//!    written (its position is in the tail, so `S` is one of its sealed segments).
//! 1. Copy steps write only `seg-S.compact`. A crash leaves `seg-S.log` untouched; recovery
//!    deletes the temporary file.
//! 2. The new file is complete and fdatasynced (by the last copy step; the switch is a step of
//!    its own). Same as 1.
//! 3. `rename(seg-S.compact, seg-S.log)` (or `unlink` when nothing survives). A crash now finds
//!    the old `S` or the new one, both complete (the rename is made durable by the directory
//!    fsync of step 5's checkpoint). The last checkpoint lists the old length of `S`; the new
//!    file is strictly shorter, so with the new `S` recovery sees the mismatch, ignores the
//!    checkpoint and replays the whole log, which folds to the same index (above).
//! 4. Under the shard's index lock, the moved messages get their new offsets and the segment
//!    set gets the new file, together: readers look the file up under the same lock, so no
//!    reader pairs an old offset with the new file. Readers that already hold the old
//!    `Arc<File>` (a FETCH in progress, a sendfile) finish on the old, unlinked inode.
//! 5. When the pass has no segment left to rewrite, a checkpoint with the new locations and
//!    lengths is written; the next start replays only the tail again. (Until then a restart
//!    replays the whole log: correct, only slower.)
//!
//! Every acknowledged record that matters is in exactly one file at every point, and its bytes
//! are copied verbatim (CRC included), so a message is present once, byte-exact, with its UID
//! and flags, whatever step a crash interrupts. `compact::tests` stops a compaction after each
//! of these steps and reopens the store; `scripts/crash-test.sh` SIGKILLs a running server.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use futures_channel::oneshot;

use super::checkpoint::Position;
use super::index::{BodyLoc, ShardIndex};
use super::record::{self, HEADER_LEN, Record};
use super::segment::{MAILBOX_LOG, fsync_dir, segment_path};
use super::writer::{Reply, Writer};
use super::{StoreError, StoreResult};

/// Bytes of a segment read, judged and written per step.
pub const STEP_BYTES: usize = 1 << 20;
/// Enough of an append's payload to hold every field before its body.
const APPEND_HEAD_MAX: u64 = 64 << 10;
/// A segment is not rewritten to win back less than this.
const MIN_RECLAIM_BYTES: u64 = 4096;
/// An explicit pass seals the tail early only to win back this fraction of a segment or more.
const TAIL_SEAL_FRACTION: u64 = 8;
const TMP_SUFFIX: &str = ".compact";

/// What one compaction pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompactionReport {
    /// Segments rewritten (or deleted, when nothing in them was needed any more).
    pub segments: u64,
    /// Bytes of log given back.
    pub bytes_reclaimed: u64,
}

impl CompactionReport {
    pub fn add(&mut self, other: CompactionReport) {
        self.segments += other.segments;
        self.bytes_reclaimed += other.bytes_reclaimed;
    }
}

/// `seg-<N>.log.compact`: not a segment name, so start-up never replays it.
fn tmp_path(dir: &Path, n: u32) -> PathBuf {
    let mut path = segment_path(dir, n).into_os_string();
    path.push(TMP_SUFFIX);
    path.into()
}

/// Deletes the temporary files of compactions a crash interrupted (their segment is intact).
pub fn remove_leftovers(dir: &Path) -> StoreResult<()> {
    let mut removed = false;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with(MAILBOX_LOG) && name.ends_with(TMP_SUFFIX) {
            tracing::info!(file = %e.path().display(), "removing an interrupted compaction's temporary file");
            std::fs::remove_file(e.path())?;
            removed = true;
        }
    }
    if removed {
        fsync_dir(dir)?;
    }
    Ok(())
}

/// Leftover temporary files of interrupted compactions in `dir` (for `store check`).
pub fn leftovers(dir: &Path) -> StoreResult<Vec<PathBuf>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name();
        if name
            .to_str()
            .is_some_and(|n| n.starts_with(MAILBOX_LOG) && n.ends_with(TMP_SUFFIX))
        {
            out.push(e.path());
        }
    }
    out.sort();
    Ok(out)
}

/// The dead bytes of a segment of `len` bytes holding `live` bytes of messages, if they reach
/// `dead_pct` percent of it and are worth a rewrite. Everything but message bodies counts as
/// dead here (mailbox records, tombstones, current flags survive too): the rewrite finds out,
/// and a segment that turns out not to shrink is left alone (see `Compaction::settled`).
fn worth_compacting(len: u64, live: u64, dead_pct: u8) -> Option<u64> {
    let dead = len.saturating_sub(live);
    (len > 0 && dead >= MIN_RECLAIM_BYTES && dead * 100 >= u64::from(dead_pct.min(100)) * len)
        .then_some(dead)
}

/// The compaction state of one shard's writer.
pub struct Compaction {
    /// Background threshold: a sealed segment is rewritten once at least this percentage of
    /// it is dead (0: background compaction off).
    pub dead_pct: u8,
    job: Option<Job>,
    /// Segment → (length, live messages, live bytes) when it was last rewritten or found not
    /// worth it; it is looked at again only once that changed.
    settled: HashMap<u32, (u64, u32, u64)>,
    /// Segments whose compaction failed (damage, I/O error): left alone until a restart.
    failed: HashSet<u32>,
    /// An on-demand pass in progress.
    demand: Option<Demand>,
    /// The post-compaction checkpoint is still to be written.
    checkpoint_due: bool,
}

struct Demand {
    dead_pct: u8,
    waiters: Vec<oneshot::Sender<StoreResult<Reply>>>,
    report: CompactionReport,
    /// The tail segment was looked at (sealed if worth it) for this pass.
    tail_done: bool,
}

/// A message whose body moves, and where to.
struct Move {
    account: String,
    mailbox: u64,
    uid: u32,
    from: BodyLoc,
    to: BodyLoc,
}

/// A frame too large for one step, being streamed through.
struct LargeFrame {
    keep: bool,
    /// Offset in the source just past the frame.
    end: u64,
    /// Next source offset to copy.
    at: u64,
    crc: u32,
    expect_crc: u32,
    moved: Option<Move>,
}

/// The rewrite of one segment in progress.
struct Job {
    seg: u32,
    src: Arc<File>,
    src_len: u64,
    /// Next frame to judge.
    pos: u64,
    tmp: PathBuf,
    out: File,
    out_len: u64,
    buf: Vec<u8>,
    moves: Vec<Move>,
    /// Mailboxes whose create this pass dropped.
    dropped_creates: HashSet<(String, u64)>,
    /// Largest (mailbox id + 1, UIDVALIDITY) of the creates and shard states in `S`.
    floor: (u64, u32),
    need_shard_state: bool,
    large: Option<LargeFrame>,
    /// Every frame is judged and the new file written and synced: the switch is next.
    copied: bool,
}

/// Why a frame of the segment cannot be judged: the segment is damaged or the index disagrees.
fn damaged(seg: u32, offset: u64, why: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!(
        "segment {seg} at offset {offset}: {why} (compaction of this segment stopped; run `surel store check`)"
    ))
}

impl Job {
    fn mailbox_alive(index: &ShardIndex, account: &str, mailbox: u64) -> bool {
        index
            .accounts
            .get(account)
            .is_some_and(|a| a.mailboxes.contains_key(&mailbox))
    }

    /// Judges an append of `(account, mailbox, uid)` whose body is at `body` in `S`: `Some`
    /// with the move to record if it is kept.
    fn judge_append(
        &self,
        index: &ShardIndex,
        account: &str,
        mailbox: u64,
        uid: u32,
        body: BodyLoc,
    ) -> StoreResult<bool> {
        if self
            .dropped_creates
            .contains(&(account.to_string(), mailbox))
        {
            return Ok(false);
        }
        let present = index
            .accounts
            .get(account)
            .and_then(|a| a.mailboxes.get(&mailbox))
            .and_then(|mb| mb.get(uid));
        match present {
            None => Ok(false),
            Some(m) if m.loc == body => Ok(true),
            Some(m) => Err(damaged(
                self.seg,
                body.offset,
                format!(
                    "the index places uid {uid} of mailbox {mailbox} at {:?}, the log at {body:?}",
                    m.loc
                ),
            )),
        }
    }

    /// Whether record `rec` of `S` must be kept (see the module doc).
    fn judge(&mut self, index: &ShardIndex, rec: &Record, body_offset: u64) -> StoreResult<bool> {
        let dropped = |j: &Job, account: &str, mailbox: &u64| {
            j.dropped_creates.contains(&(account.to_string(), *mailbox))
        };
        Ok(match rec {
            Record::MailboxCreate {
                account,
                mailbox,
                uidvalidity,
                ..
            } => {
                self.floor.0 = self.floor.0.max(mailbox.saturating_add(1));
                self.floor.1 = self.floor.1.max(*uidvalidity);
                if Self::mailbox_alive(index, account, *mailbox) {
                    true
                } else {
                    self.dropped_creates.insert((account.clone(), *mailbox));
                    self.need_shard_state = true;
                    false
                }
            }
            Record::MailboxDelete { account, mailbox }
            | Record::MailboxRename {
                account, mailbox, ..
            }
            | Record::Subscribe {
                account, mailbox, ..
            } => !dropped(self, account, mailbox),
            // A name's subscription outlives its mailbox: always needed (and tiny).
            Record::Subscription { .. } => true,
            Record::MessageAppend {
                account,
                mailbox,
                uid,
                body,
                ..
            } => {
                let loc = BodyLoc {
                    segment: self.seg,
                    offset: body_offset,
                    len: body.len() as u32,
                };
                self.judge_append(index, account, *mailbox, *uid, loc)?
            }
            Record::FlagsSet {
                account,
                mailbox,
                uid,
                modseq,
                ..
            } => {
                !dropped(self, account, mailbox)
                    && index
                        .accounts
                        .get(account)
                        .and_then(|a| a.mailboxes.get(mailbox))
                        .and_then(|mb| mb.get(*uid))
                        .is_some_and(|m| m.meta.modseq == *modseq)
            }
            Record::Expunge {
                account, mailbox, ..
            } => !dropped(self, account, mailbox) && Self::mailbox_alive(index, account, *mailbox),
            Record::ShardState {
                next_mailbox_id,
                last_uidvalidity,
            } => {
                self.floor.0 = self.floor.0.max(*next_mailbox_id);
                self.floor.1 = self.floor.1.max(*last_uidvalidity);
                self.need_shard_state = true;
                false
            }
        })
    }

    fn read_at(&self, offset: u64, len: u64) -> StoreResult<Vec<u8>> {
        let mut buf = vec![0u8; len as usize];
        self.src
            .read_exact_at(&mut buf, offset)
            .map_err(|e| damaged(self.seg, offset, e))?;
        Ok(buf)
    }

    /// Where the next kept frame starts in the new file.
    fn out_pos(&self) -> u64 {
        self.out_len + self.buf.len() as u64
    }

    /// Judges and copies frames for about one step. Returns whether the segment is done.
    fn copy_step(&mut self, index: &ShardIndex) -> StoreResult<bool> {
        let mut budget = STEP_BYTES as u64;
        while budget > 0 && (self.large.is_some() || self.pos < self.src_len) {
            if self.large.is_some() {
                budget = budget.saturating_sub(self.stream_large(budget)?);
                continue;
            }
            let window = (self.src_len - self.pos).min(STEP_BYTES as u64);
            let data = self.read_at(self.pos, window)?;
            let mut at = 0usize;
            while at < data.len() && budget > 0 {
                let frame_start = self.pos;
                if data.len() - at < HEADER_LEN {
                    if at == 0 {
                        return Err(damaged(self.seg, frame_start, "truncated record header"));
                    }
                    break;
                }
                let h: &[u8; HEADER_LEN] = data[at..at + HEADER_LEN]
                    .try_into()
                    .map_err(|_| damaged(self.seg, frame_start, "header"))?;
                let (len, kind, crc) =
                    record::decode_header(h).map_err(|e| damaged(self.seg, frame_start, e))?;
                let frame_len = HEADER_LEN as u64 + u64::from(len);
                if frame_start + frame_len > self.src_len {
                    return Err(damaged(
                        self.seg,
                        frame_start,
                        "record runs past the segment end",
                    ));
                }
                if frame_len > STEP_BYTES as u64 {
                    if at > 0 {
                        break; // the next step starts with it
                    }
                    self.start_large(index, frame_start, len, kind, crc)?;
                    break;
                }
                let frame: std::borrow::Cow<'_, [u8]> = if at + frame_len as usize <= data.len() {
                    std::borrow::Cow::Borrowed(&data[at..at + frame_len as usize])
                } else if at == 0 {
                    std::borrow::Cow::Owned(self.read_at(frame_start, frame_len)?)
                } else {
                    break;
                };
                let (rec, body_at) = record::decode_payload(kind, crc, &frame[HEADER_LEN..])
                    .map_err(|e| damaged(self.seg, frame_start, e))?;
                let body_offset = frame_start + (HEADER_LEN + body_at) as u64;
                if self.judge(index, &rec, body_offset)? {
                    if let Record::MessageAppend {
                        account,
                        mailbox,
                        uid,
                        body,
                        ..
                    } = &rec
                    {
                        let to = self.out_pos() + (HEADER_LEN + body_at) as u64;
                        self.moves.push(Move {
                            account: account.clone(),
                            mailbox: *mailbox,
                            uid: *uid,
                            from: BodyLoc {
                                segment: self.seg,
                                offset: body_offset,
                                len: body.len() as u32,
                            },
                            to: BodyLoc {
                                segment: self.seg,
                                offset: to,
                                len: body.len() as u32,
                            },
                        });
                    }
                    self.buf.extend_from_slice(&frame);
                }
                at += frame_len as usize;
                self.pos += frame_len;
                budget = budget.saturating_sub(frame_len);
            }
        }
        let done = self.large.is_none() && self.pos >= self.src_len;
        if done && self.need_shard_state {
            Record::ShardState {
                next_mailbox_id: self.floor.0,
                last_uidvalidity: self.floor.1,
            }
            .encode(&mut self.buf);
        }
        self.flush()?;
        Ok(done)
    }

    /// Begins streaming a frame larger than a step (only message appends are that large).
    fn start_large(
        &mut self,
        index: &ShardIndex,
        frame_start: u64,
        len: u32,
        kind: u8,
        crc: u32,
    ) -> StoreResult<()> {
        if !record::is_append_kind(kind) {
            return Err(damaged(
                self.seg,
                frame_start,
                format!("record of kind {kind} with {len} bytes"),
            ));
        }
        let head_len = u64::from(len).min(APPEND_HEAD_MAX);
        let prefix = self.read_at(frame_start + HEADER_LEN as u64, head_len)?;
        let head = record::decode_append_head(kind, &prefix)
            .map_err(|e| damaged(self.seg, frame_start, e))?;
        if head.body_at as u64 + u64::from(head.body_len) != u64::from(len) {
            return Err(damaged(self.seg, frame_start, "body length"));
        }
        let from = BodyLoc {
            segment: self.seg,
            offset: frame_start + (HEADER_LEN + head.body_at) as u64,
            len: head.body_len,
        };
        let keep = self.judge_append(index, &head.account, head.mailbox, head.uid, from)?;
        let moved = keep.then(|| Move {
            account: head.account.clone(),
            mailbox: head.mailbox,
            uid: head.uid,
            from,
            to: BodyLoc {
                segment: self.seg,
                offset: self.out_pos() + (HEADER_LEN + head.body_at) as u64,
                len: head.body_len,
            },
        });
        let end = frame_start + HEADER_LEN as u64 + u64::from(len);
        if keep {
            let header = self.read_at(frame_start, HEADER_LEN as u64)?;
            self.buf.extend_from_slice(&header);
        }
        self.large = Some(LargeFrame {
            keep,
            end,
            at: frame_start + HEADER_LEN as u64,
            crc: crc32c::crc32c(&[kind]),
            expect_crc: crc,
            moved,
        });
        Ok(())
    }

    /// Copies up to `budget` bytes of the large frame; returns how many it read.
    fn stream_large(&mut self, budget: u64) -> StoreResult<u64> {
        let Some(l) = self.large.as_mut() else {
            return Ok(0);
        };
        let n = (l.end - l.at).min(budget.max(1));
        let at = l.at;
        let chunk = {
            let mut buf = vec![0u8; n as usize];
            self.src
                .read_exact_at(&mut buf, at)
                .map_err(|e| damaged(self.seg, at, e))?;
            buf
        };
        let l = self.large.as_mut().expect("checked above");
        l.crc = crc32c::crc32c_append(l.crc, &chunk);
        l.at += n;
        let keep = l.keep;
        if keep {
            self.buf.extend_from_slice(&chunk);
        }
        if self.large.as_ref().is_some_and(|l| l.at == l.end) {
            let l = self.large.take().expect("checked above");
            if l.crc != l.expect_crc {
                return Err(damaged(self.seg, self.pos, "record crc mismatch"));
            }
            if let Some(m) = l.moved {
                self.moves.push(m);
            }
            self.pos = l.end;
        }
        // Written (and synced) piece by piece, so the step stays short.
        self.flush()?;
        Ok(n)
    }

    fn flush(&mut self) -> StoreResult<()> {
        if !self.buf.is_empty() {
            self.out.write_all_at(&self.buf, self.out_len)?;
            self.out_len += self.buf.len() as u64;
            self.buf.clear();
        }
        Ok(())
    }
}

impl Compaction {
    pub fn new(dead_pct: u8) -> Self {
        Compaction {
            dead_pct,
            job: None,
            settled: HashMap::new(),
            failed: HashSet::new(),
            demand: None,
            checkpoint_due: false,
        }
    }

    /// Something is to be done: a rewrite in progress, an on-demand pass, a checkpoint.
    pub fn busy(&self) -> bool {
        self.job.is_some() || self.demand.is_some() || self.checkpoint_due
    }

    /// An on-demand pass (`surel store compact`): `reply` gets the report once no segment is
    /// left below the threshold.
    pub fn request(&mut self, dead_pct: Option<u8>, reply: oneshot::Sender<StoreResult<Reply>>) {
        // With background compaction off (0), an explicit request still uses the default.
        let pct = dead_pct.unwrap_or(if self.dead_pct == 0 {
            super::StoreConfig::default().compact_dead_pct
        } else {
            self.dead_pct
        });
        match &mut self.demand {
            Some(d) => {
                d.dead_pct = d.dead_pct.max(pct);
                d.waiters.push(reply);
            }
            None => {
                self.demand = Some(Demand {
                    dead_pct: pct,
                    waiters: vec![reply],
                    report: CompactionReport::default(),
                    tail_done: false,
                })
            }
        }
    }

    /// Whether a post-compaction checkpoint is due; it is no longer after this call.
    pub fn take_checkpoint_due(&mut self) -> bool {
        std::mem::take(&mut self.checkpoint_due)
    }

    /// Answers every waiting caller with `err` (the writer is stopping or refuses writes).
    pub fn fail_waiters(&mut self, why: &str) {
        if let Some(d) = self.demand.take() {
            for w in d.waiters {
                let _ = w.send(Err(StoreError::Io(std::io::Error::other(why.to_string()))));
            }
        }
    }

    /// Drops an unfinished rewrite and its temporary file (the segment itself is untouched).
    pub fn abandon(&mut self) {
        if let Some(job) = self.job.take() {
            drop(job.out);
            if let Err(e) = std::fs::remove_file(&job.tmp) {
                tracing::warn!(file = %job.tmp.display(), error = %e, "cannot remove a compaction's temporary file");
            }
        }
    }
}

impl Writer {
    /// Under the test hook ([`super::LogStore::stop_compaction_after`]), leaves the files
    /// exactly as they are at `step` and makes the writer refuse further work, like a process
    /// killed there. Always `false` outside tests.
    fn stop_here(&mut self, step: u32) -> bool {
        #[cfg(test)]
        if self
            .shared
            .stats
            .compaction_stop_after
            .compare_exchange(step, 0, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            self.compaction.job = None; // its temporary file stays, as after a crash
            self.compaction.fail_waiters("test: compaction stopped");
            self.poisoned = Some(format!("test: stopped after compaction step {step}"));
            return true;
        }
        let _ = step;
        false
    }

    /// The sealed segment most worth rewriting at `dead_pct`, if any.
    fn pick_segment(&self, dead_pct: u8) -> Option<u32> {
        let c = &self.compaction;
        let mut best: Option<(u32, u64, u64)> = None;
        for (&n, &len) in &self.log.sealed {
            if n == self.log.cur_seg || c.failed.contains(&n) {
                continue;
            }
            let used = self.private.live.get(&n).copied().unwrap_or_default();
            if c.settled.get(&n) == Some(&(len, used.messages, used.bytes)) {
                continue;
            }
            let Some(dead) = worth_compacting(len, used.bytes, dead_pct) else {
                continue;
            };
            // The largest dead share first (dead/len > best_dead/best_len, cross-multiplied).
            if best.is_none_or(|(_, bd, bl)| {
                u128::from(dead) * u128::from(bl) > u128::from(bd) * u128::from(len)
            }) {
                best = Some((n, dead, len));
            }
        }
        best.map(|(n, _, _)| n)
    }

    /// Whether the tail segment, were it sealed, would be picked at `dead_pct`, with at least
    /// an eighth of a full segment to win: segments are never merged, so sealing a tail early
    /// leaves one more small file for good.
    fn tail_worth_compacting(&self, dead_pct: u8) -> bool {
        let live = self
            .private
            .live
            .get(&self.log.cur_seg)
            .map_or(0, |u| u.bytes);
        worth_compacting(self.log.cur_len, live, dead_pct)
            .is_some_and(|dead| dead >= self.log.segment_bytes / TAIL_SEAL_FRACTION)
    }

    /// Does one bounded piece of compaction work between group commits. Returns whether more
    /// is pending (the caller keeps calling while it has nothing else to do).
    pub(super) fn compact_step(&mut self) -> bool {
        if let Some(why) = self.poisoned.clone() {
            self.compaction.abandon();
            self.compaction.fail_waiters(&why);
            self.compaction.checkpoint_due = false;
            return false;
        }
        let started = Instant::now();
        let more = self.compact_work();
        let us = started.elapsed().as_micros() as u64;
        self.shared
            .stats
            .compaction_longest_step_us
            .fetch_max(us, Ordering::Relaxed);
        more
    }

    fn compact_work(&mut self) -> bool {
        if self.compaction.job.is_none() {
            let pct = match &self.compaction.demand {
                Some(d) => d.dead_pct,
                // Background compaction is off.
                None if self.compaction.dead_pct == 0 && !self.compaction.checkpoint_due => {
                    return false;
                }
                None => self.compaction.dead_pct,
            };
            let picked = if pct == 0 && self.compaction.demand.is_none() {
                None
            } else {
                self.pick_segment(pct)
            };
            let Some(seg) = picked else {
                // Background compaction waits for the tail to fill and roll; an explicit pass
                // seals it now if it would qualify, so a quiet store can shrink too.
                if let Some(d) = self.compaction.demand.as_mut()
                    && !d.tail_done
                {
                    d.tail_done = true;
                    if self.tail_worth_compacting(pct) {
                        match self.seal_tail() {
                            Ok(()) => return true,
                            Err(e) => {
                                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot seal the log tail for compaction")
                            }
                        }
                    }
                }
                // Step 5, once per pass rather than per segment: a checkpoint costs as much as
                // the index is large.
                if self.compaction.checkpoint_due {
                    self.compaction.checkpoint_due = false;
                    self.write_checkpoint();
                    return !self.stop_here(5);
                }
                if let Some(d) = self.compaction.demand.take() {
                    for w in d.waiters {
                        let _ = w.send(Ok(Reply::Compacted(d.report)));
                    }
                }
                return false;
            };
            // Step 0: the checkpoint on disk must list `seg` among its sealed segments, so that
            // the rename below makes it recognizably stale.
            if self.checkpoint_segment.is_none_or(|c| c <= seg) {
                self.write_checkpoint();
                if self.checkpoint_segment.is_none_or(|c| c <= seg) {
                    self.compaction.failed.insert(seg);
                    return true;
                }
                return true;
            }
            if let Err(e) = self.start_job(seg) {
                tracing::warn!(dir = %self.dir.display(), segment = seg, error = %e, "cannot start compacting");
                self.compaction.failed.insert(seg);
            }
            return true;
        }
        let job = self.compaction.job.as_mut().expect("checked above");
        // Each step does at most one fdatasync, like a group commit: the copy steps sync what
        // they wrote, so the switch has nothing left to flush but the directory.
        if job.copied {
            if let Err(e) = self.finish_job() {
                self.job_failed(e);
            }
            return true;
        }
        let copied = match job.copy_step(&self.private) {
            Ok(done) => done,
            Err(e) => {
                self.job_failed(e);
                return true;
            }
        };
        if let Err(e) = self.fsync_job() {
            self.job_failed(e);
            return true;
        }
        if let Some(job) = self.compaction.job.as_mut() {
            job.copied = copied;
        }
        !self.stop_here(1)
    }

    fn job_failed(&mut self, e: StoreError) {
        if let Some(job) = &self.compaction.job {
            tracing::error!(dir = %self.dir.display(), segment = job.seg, error = %e, "compaction failed; the segment stays as it is");
            self.compaction.failed.insert(job.seg);
        }
        self.compaction.abandon();
    }

    /// fdatasyncs what the last step wrote, so the final sync has little left to do.
    fn fsync_job(&self) -> StoreResult<()> {
        if let Some(job) = &self.compaction.job
            && self.log.fsync
        {
            job.out.sync_data()?;
        }
        Ok(())
    }

    fn start_job(&mut self, seg: u32) -> StoreResult<()> {
        let src = self.shared.segments.get(seg)?;
        let src_len = src.metadata()?.len();
        let expected = self.log.sealed.get(&seg).copied();
        if expected != Some(src_len) {
            return Err(StoreError::Corrupt(format!(
                "segment {seg} is {src_len} bytes, expected {expected:?}"
            )));
        }
        let tmp = tmp_path(&self.dir, seg);
        let out = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        tracing::debug!(dir = %self.dir.display(), segment = seg, bytes = src_len, "compacting");
        self.compaction.job = Some(Job {
            seg,
            src,
            src_len,
            pos: 0,
            tmp,
            out,
            out_len: 0,
            buf: Vec::new(),
            moves: Vec::new(),
            dropped_creates: HashSet::new(),
            floor: (0, 0),
            need_shard_state: false,
            large: None,
            copied: false,
        });
        Ok(())
    }

    /// Steps 2–4: seal the new file, switch it in on disk, then in memory.
    fn finish_job(&mut self) -> StoreResult<()> {
        let job = self.compaction.job.as_mut().expect("a job is finishing");
        let seg = job.seg;
        let (src_len, new_len) = (job.src_len, job.out_len);
        let used = self.private.live.get(&seg).copied().unwrap_or_default();
        if new_len >= src_len {
            // Nothing to drop (tombstones and current flags only): not worth a rename.
            self.compaction.abandon();
            self.compaction
                .settled
                .insert(seg, (src_len, used.messages, used.bytes));
            return Ok(());
        }
        // Every message still homed in `seg` must have a new place before the switch.
        let mut covered = (0u32, 0u64);
        for m in &job.moves {
            let present = self
                .private
                .accounts
                .get(&m.account)
                .and_then(|a| a.mailboxes.get(&m.mailbox))
                .and_then(|mb| mb.get(m.uid));
            if let Some(msg) = present {
                if msg.loc != m.from {
                    return Err(damaged(
                        seg,
                        m.from.offset,
                        "message moved during compaction",
                    ));
                }
                covered.0 += 1;
                covered.1 += u64::from(m.from.len);
            }
        }
        if covered != (used.messages, used.bytes) {
            return Err(damaged(
                seg,
                0,
                format!(
                    "{} live messages ({} bytes) in the index, {} ({} bytes) copied",
                    used.messages, used.bytes, covered.0, covered.1
                ),
            ));
        }
        // The last copy step synced the new file.
        if self.stop_here(2) {
            return Ok(());
        }
        // Step 3: the switch on disk. No directory fsync here: whichever name a crash leaves
        // is a complete segment, and the checkpoint of step 5 fsyncs the directory anyway.
        let job = self.compaction.job.take().expect("a job is finishing");
        let path = segment_path(&self.dir, seg);
        let new_file = if new_len == 0 {
            drop(job.out);
            std::fs::remove_file(&job.tmp)
                .and_then(|()| std::fs::remove_file(&path))
                .map(|()| None)
        } else {
            std::fs::rename(&job.tmp, &path)
                .map(|()| Some(Arc::new(job.out)))
                .inspect_err(|_| {
                    let _ = std::fs::remove_file(&job.tmp);
                })
        };
        let new_file = match new_file {
            Ok(f) => f,
            Err(e) => {
                // Nothing switched: the old segment is still the one on disk and in memory.
                self.compaction.failed.insert(seg);
                return Err(e.into());
            }
        };
        if self.stop_here(3) {
            return Ok(());
        }
        // Step 4: the switch in memory, under the index lock readers take.
        for m in &job.moves {
            self.private
                .relocate(&m.account, m.mailbox, m.uid, m.from, m.to);
        }
        {
            let mut ix = self.shared.index.write().unwrap_or_else(|p| p.into_inner());
            for m in &job.moves {
                ix.relocate(&m.account, m.mailbox, m.uid, m.from, m.to);
            }
            let swapped = match &new_file {
                Some(f) => self.shared.segments.insert(seg, f.clone()),
                None => self.shared.segments.remove(seg),
            };
            if let Err(e) = swapped {
                self.poisoned = Some(format!("compaction: segment switch failed ({e}); restart"));
                return Ok(());
            }
        }
        match new_file {
            Some(_) => self.log.sealed.insert(seg, new_len),
            None => self.log.sealed.remove(&seg),
        };
        let used = self.private.live.get(&seg).copied().unwrap_or_default();
        self.compaction
            .settled
            .insert(seg, (new_len, used.messages, used.bytes));
        let done = CompactionReport {
            segments: 1,
            bytes_reclaimed: src_len - new_len,
        };
        let stats = &self.shared.stats;
        stats.segments_compacted.fetch_add(1, Ordering::Relaxed);
        stats
            .compaction_bytes_reclaimed
            .fetch_add(done.bytes_reclaimed, Ordering::Relaxed);
        if let Some(d) = &mut self.compaction.demand {
            d.report.add(done);
        }
        tracing::info!(dir = %self.dir.display(), segment = seg, before = src_len, after = new_len, "segment compacted");
        if self.stop_here(4) {
            return Ok(());
        }
        // Step 5 comes when the pass has nothing left to rewrite.
        self.compaction.checkpoint_due = true;
        Ok(())
    }

    /// Writes a checkpoint of the private index at the current tail position now.
    pub(super) fn write_checkpoint(&mut self) {
        let pos = Position {
            segment: self.log.cur_seg,
            offset: self.log.cur_len,
        };
        match super::checkpoint::write(&self.dir, &self.private, pos, &self.log.sealed) {
            Ok(()) => {
                self.log.since_checkpoint = 0;
                self.checkpoint_segment = Some(pos.segment);
                self.shared
                    .stats
                    .checkpoints
                    .fetch_add(1, Ordering::Relaxed);
            }
            // Not fatal: the log is the truth; start-up just replays more.
            Err(e) => tracing::warn!(dir = %self.dir.display(), error = %e, "checkpoint failed"),
        }
    }
}

#[cfg(test)]
mod tests;
