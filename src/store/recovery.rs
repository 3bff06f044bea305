//! Start-up of one shard: checkpoint load, log replay, tail repair.
//!
//! A checkpoint is used only if the sealed segments on disk are exactly those it lists, with
//! the lengths it lists (compaction changes both; see `checkpoint`); otherwise every segment is
//! replayed. Temporary files of a compaction that a crash interrupted are deleted: the segment
//! they were to replace is still in place, complete.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};

use crossbeam_channel::Receiver;

use super::checkpoint::{self, Position, SealedLengths};
use super::index::{Replayed, ShardIndex};
use super::queue::{QueueIndex, QueueRecord};
use super::record::Record;
use super::segment::{
    MAILBOX_LOG, QUEUE_LOG, SegmentSet, fsync_dir, list_log, list_segments, open_log, open_segment,
    scan_segment,
};
use super::writer::{LogTail, Request, Shared, Stats, Writer};
use super::{StoreConfig, StoreError, StoreResult};

pub fn shard_dir(base: &Path, shard: usize) -> PathBuf {
    base.join(format!("shard-{shard}"))
}

pub fn open_shard(
    dir: PathBuf,
    config: &StoreConfig,
    stats: Arc<Stats>,
    rx: Receiver<Request>,
) -> StoreResult<(Arc<Shared>, Writer)> {
    std::fs::create_dir_all(&dir)?;
    super::compact::remove_leftovers(&dir)?;
    let segs = list_segments(&dir)?;

    let ckpt = checkpoint::load(&dir).filter(|c| {
        let usable = checkpoint_matches(&dir, &segs, c);
        if !usable {
            tracing::warn!(dir = %dir.display(), pos = ?c.pos, "checkpoint does not match the segments on disk; full replay");
        }
        usable
    });
    let checkpoint_segment = ckpt.as_ref().map(|c| c.pos.segment);
    let (mut index, start) = match ckpt {
        Some(c) => (c.index, c.pos),
        None => (
            ShardIndex::default(),
            Position {
                segment: 0,
                offset: 0,
            },
        ),
    };

    let segments = SegmentSet::default();
    let mut replayed = 0u64;
    let mut orphans = 0u64;
    let mut since_checkpoint = 0u64;
    let mut sealed = SealedLengths::new();
    let mut last = None;
    for (i, &n) in segs.iter().enumerate() {
        let file = Arc::new(open_segment(&dir, n, false)?);
        let len = if n < start.segment {
            file.metadata()?.len()
        } else {
            let from = if n == start.segment { start.offset } else { 0 };
            let is_last = i + 1 == segs.len();
            let end = scan_segment(&file, n, from, is_last, |rec: Record, body| {
                match index.apply_replayed(&rec, body) {
                    Ok(Replayed::Applied) => Ok(()),
                    Ok(Replayed::Orphan) => {
                        orphans += 1;
                        Ok(())
                    }
                    Err(e) => Err(StoreError::Corrupt(format!(
                        "{}: segment {n}: {e}",
                        dir.display()
                    ))),
                }
            })?;
            replayed += end.records;
            since_checkpoint += end.good_len - from;
            end.good_len
        };
        segments.insert(n, file.clone())?;
        if let Some((prev, _, prev_len)) = last.replace((n, file, len)) {
            sealed.insert(prev, prev_len);
        }
    }
    let (cur_seg, cur_file, cur_len) = match last {
        Some(x) => x,
        None => {
            let f = Arc::new(open_segment(&dir, 0, true)?);
            fsync_dir(&dir)?;
            segments.insert(0, f.clone())?;
            (0, f, 0)
        }
    };
    let (queue, queue_segments, queue_tail, queue_replayed) = replay_queue(&dir)?;
    stats
        .replayed_records
        .fetch_add(replayed + queue_replayed, Ordering::Relaxed);
    tracing::debug!(dir = %dir.display(), replayed, orphans, queue_replayed, queued = queue.entries.len(), from = ?start, "shard recovered");

    let shared = Arc::new(Shared {
        index: RwLock::new(index.clone()),
        segments,
        subs: Mutex::new(Default::default()),
        account_subs: Mutex::new(Default::default()),
        queue: RwLock::new(queue.clone()),
        queue_segments,
        queue_subs: Mutex::new(Vec::new()),
        stats,
    });
    let mut log = LogTail::new(
        MAILBOX_LOG,
        dir.clone(),
        config,
        config.segment_bytes,
        (cur_seg, cur_file, cur_len),
    );
    log.since_checkpoint = since_checkpoint;
    let qlog = LogTail::new(
        QUEUE_LOG,
        dir.clone(),
        config,
        config.queue_segment_bytes,
        queue_tail,
    );
    let mut writer = Writer::new(shared.clone(), rx, config, index, queue, log, qlog);
    writer.log.sealed = sealed;
    writer.checkpoint_segment = checkpoint_segment;
    Ok((shared, writer))
}

/// Whether checkpoint `c` describes the segments `segs` present in `dir`: its position lies in
/// an existing segment, and the sealed segments before it are exactly the ones it lists, with
/// the same lengths.
pub fn checkpoint_matches(dir: &Path, segs: &[u32], c: &checkpoint::Checkpoint) -> bool {
    let len = |n: u32| std::fs::metadata(super::segment::segment_path(dir, n)).map(|m| m.len());
    if !segs.contains(&c.pos.segment) || len(c.pos.segment).map_or(true, |l| l < c.pos.offset) {
        return false;
    }
    let before: Vec<u32> = segs
        .iter()
        .copied()
        .filter(|&n| n < c.pos.segment)
        .collect();
    before.len() == c.sealed.len()
        && before.iter().all(|&n| {
            c.sealed
                .get(&n)
                .is_some_and(|&l| len(n).is_ok_and(|a| a == l))
        })
}

/// Rebuilds the queue index from every queue segment (there is no queue checkpoint: spent
/// segments are deleted, so what is left is mostly live). Returns the index, the open
/// segments, the tail (segment, file, length) and the number of records replayed.
#[allow(clippy::type_complexity)]
fn replay_queue(
    dir: &Path,
) -> StoreResult<(QueueIndex, SegmentSet, (u32, Arc<std::fs::File>, u64), u64)> {
    let segs = list_log(dir, QUEUE_LOG)?;
    let mut queue = QueueIndex::default();
    let set = SegmentSet::default();
    let mut replayed = 0;
    let mut last = None;
    for (i, &n) in segs.iter().enumerate() {
        let file = Arc::new(open_log(dir, QUEUE_LOG, n, false)?);
        let is_last = i + 1 == segs.len();
        let end = scan_segment(&file, n, 0, is_last, |rec: QueueRecord, body| {
            queue.apply(&rec, body).map(|_| ()).map_err(|e| {
                StoreError::Corrupt(format!("{}: queue segment {n}: {e}", dir.display()))
            })
        })?;
        replayed += end.records;
        set.insert(n, file.clone())?;
        last = Some((n, file, end.good_len));
    }
    let tail = match last {
        Some(t) => t,
        None => {
            let f = Arc::new(open_log(dir, QUEUE_LOG, 0, true)?);
            fsync_dir(dir)?;
            set.insert(0, f.clone())?;
            (0, f, 0)
        }
    };
    Ok((queue, set, tail, replayed))
}
