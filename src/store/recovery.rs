//! Start-up of one shard: checkpoint load, log replay, tail repair.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};

use crossbeam_channel::Receiver;

use super::checkpoint::{self, Position};
use super::index::ShardIndex;
use super::segment::{SegmentSet, fsync_dir, list_segments, open_segment, scan_segment};
use super::writer::{Request, Shared, Stats, Writer};
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
            let end = scan_segment(&file, n, from, is_last, |rec, body| {
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
    stats
        .replayed_records
        .fetch_add(replayed, Ordering::Relaxed);
    tracing::debug!(dir = %dir.display(), replayed, from = ?start, "shard recovered");

    let shared = Arc::new(Shared {
        index: RwLock::new(index.clone()),
        segments,
        subs: Mutex::new(Default::default()),
        stats,
    });
    let writer = Writer::new(
        shared.clone(),
        rx,
        dir,
        config,
        index,
        cur_seg,
        cur_file,
        cur_len,
        since_checkpoint,
    );
    Ok((shared, writer))
}
