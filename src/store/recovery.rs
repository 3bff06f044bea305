//! Start-up of one shard: checkpoint load, log replay, tail repair.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};

use crossbeam_channel::Receiver;

use super::checkpoint::{self, Position};
use super::index::ShardIndex;
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
    let segs = list_segments(&dir)?;

    let ckpt = checkpoint::load(&dir).filter(|(_, pos)| {
        let ok = segs.contains(&pos.segment)
            && std::fs::metadata(super::segment::segment_path(&dir, pos.segment))
                .is_ok_and(|m| m.len() >= pos.offset);
        if !ok {
            tracing::warn!(dir = %dir.display(), ?pos, "checkpoint points past the log; full replay");
        }
        ok
    });
    let (mut index, start) = match ckpt {
        Some((ix, pos)) => (ix, pos),
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
    let mut since_checkpoint = 0u64;
    let mut last = None;
    for (i, &n) in segs.iter().enumerate() {
        let file = Arc::new(open_segment(&dir, n, false)?);
        let len = if n < start.segment {
            file.metadata()?.len()
        } else {
            let from = if n == start.segment { start.offset } else { 0 };
            let is_last = i + 1 == segs.len();
            let end = scan_segment(&file, n, from, is_last, |rec: Record, body| {
                index.apply(&rec, body).map_err(|e| {
                    StoreError::Corrupt(format!("{}: segment {n}: {e}", dir.display()))
                })
            })?;
            replayed += end.records;
            since_checkpoint += end.good_len - from;
            end.good_len
        };
        segments.insert(n, file.clone())?;
        last = Some((n, file, len));
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
    tracing::debug!(dir = %dir.display(), replayed, queue_replayed, queued = queue.entries.len(), from = ?start, "shard recovered");

    let shared = Arc::new(Shared {
        index: RwLock::new(index.clone()),
        segments,
        subs: Mutex::new(Default::default()),
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
    let writer = Writer::new(shared.clone(), rx, config, index, queue, log, qlog);
    Ok((shared, writer))
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
