//! Segment files of one shard: naming, the shared set of open files, and the replay scan
//! with tail repair.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use super::index::{BodyInfo, BodyLoc};
use super::record::{self, DecodeError, HEADER_LEN, LogRecord};
use super::{StoreError, StoreResult};

/// File name prefix of the mailbox log's segments.
pub const MAILBOX_LOG: &str = "seg";
/// File name prefix of the outbound queue log's segments.
pub const QUEUE_LOG: &str = "queue";

pub fn log_path(dir: &Path, log: &str, n: u32) -> PathBuf {
    dir.join(format!("{log}-{n:010}.log"))
}

pub fn segment_path(dir: &Path, n: u32) -> PathBuf {
    log_path(dir, MAILBOX_LOG, n)
}

/// Segment numbers of log `log` present in `dir`, ascending.
pub fn list_log(dir: &Path, log: &str) -> StoreResult<Vec<u32>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(n) = name
            .strip_prefix(log)
            .and_then(|r| r.strip_prefix('-'))
            .and_then(|r| r.strip_suffix(".log"))
            .and_then(|n| n.parse::<u32>().ok())
        {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Mailbox log segment numbers present in `dir`, ascending.
pub fn list_segments(dir: &Path) -> StoreResult<Vec<u32>> {
    list_log(dir, MAILBOX_LOG)
}

pub fn open_log(dir: &Path, log: &str, n: u32, create: bool) -> StoreResult<File> {
    Ok(OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .open(log_path(dir, log, n))?)
}

pub fn open_segment(dir: &Path, n: u32, create: bool) -> StoreResult<File> {
    open_log(dir, MAILBOX_LOG, n, create)
}

pub fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// All open segment files of a shard. Readers clone an `Arc<File>` out and pread without
/// holding this lock; the writer only inserts (on roll-over).
#[derive(Default)]
pub struct SegmentSet {
    files: RwLock<BTreeMap<u32, Arc<File>>>,
}

impl SegmentSet {
    pub fn get(&self, n: u32) -> StoreResult<Arc<File>> {
        let files = self.files.read().map_err(|_| poisoned())?;
        files
            .get(&n)
            .cloned()
            .ok_or_else(|| StoreError::Corrupt(format!("segment {n} referenced but not open")))
    }

    pub fn insert(&self, n: u32, f: Arc<File>) -> StoreResult<()> {
        self.files.write().map_err(|_| poisoned())?.insert(n, f);
        Ok(())
    }

    /// Forgets a segment; readers that already hold its `Arc<File>` finish their reads.
    pub fn remove(&self, n: u32) -> StoreResult<()> {
        self.files.write().map_err(|_| poisoned())?.remove(&n);
        Ok(())
    }

    /// Segment numbers, ascending.
    pub fn numbers(&self) -> Vec<u32> {
        self.files
            .read()
            .map(|f| f.keys().copied().collect())
            .unwrap_or_default()
    }

    pub fn read(&self, loc: BodyLoc) -> StoreResult<Vec<u8>> {
        let f = self.get(loc.segment)?;
        read_exact_at(&f, loc.offset, loc.len)
    }
}

pub fn read_exact_at(f: &File, offset: u64, len: u32) -> StoreResult<Vec<u8>> {
    let mut buf = vec![0u8; len as usize];
    f.read_exact_at(&mut buf, offset)?;
    Ok(buf)
}

fn poisoned() -> StoreError {
    StoreError::Corrupt("store lock poisoned by a panicked thread".into())
}

/// Result of scanning one segment.
pub struct ScanEnd {
    /// Offset just past the last good record.
    pub good_len: u64,
    pub records: u64,
}

/// Result of walking one segment without changing it.
pub struct Walk {
    /// Offset just past the last good record.
    pub good_len: u64,
    pub records: u64,
    pub file_len: u64,
    /// Why the walk stopped before the end of the file, at `good_len`.
    pub failure: Option<DecodeError>,
}

/// Reads the records of segment `n` from `start` until the end or the first bad record,
/// calling `f` with each record's offset. Changes nothing.
pub fn walk_segment<R: LogRecord>(
    file: &File,
    n: u32,
    start: u64,
    mut f: impl FnMut(u64, R, Option<BodyInfo>) -> StoreResult<()>,
) -> StoreResult<Walk> {
    let file_len = file.metadata()?.len();
    let mut r = BufReader::with_capacity(1 << 20, file);
    r.seek(SeekFrom::Start(start))?;
    let mut pos = start;
    let mut records = 0u64;
    let mut payload = Vec::new();
    let failure: DecodeError = loop {
        let mut h = [0u8; HEADER_LEN];
        let got = read_full(&mut r, &mut h)?;
        if got == 0 {
            return Ok(Walk {
                good_len: pos,
                records,
                file_len,
                failure: None,
            });
        }
        if got < HEADER_LEN {
            break DecodeError::Truncated;
        }
        let (len, kind, crc) = match record::decode_header(&h) {
            Ok(x) => x,
            Err(e) => break e,
        };
        let end = pos + HEADER_LEN as u64 + u64::from(len);
        if end > file_len {
            break DecodeError::Truncated;
        }
        payload.resize(len as usize, 0);
        if read_full(&mut r, &mut payload)? < payload.len() {
            break DecodeError::Truncated;
        }
        let (rec, body_at) = match R::decode_payload(kind, crc, &payload) {
            Ok(x) => x,
            Err(e) => break e,
        };
        let body = rec.message().map(|m| {
            BodyInfo::of(
                BodyLoc {
                    segment: n,
                    offset: pos + (HEADER_LEN + body_at) as u64,
                    len: m.len() as u32,
                },
                m,
            )
        });
        f(pos, rec, body)?;
        records += 1;
        pos = end;
    };
    Ok(Walk {
        good_len: pos,
        records,
        file_len,
        failure: Some(failure),
    })
}

/// Replays the records of segment `n` starting at `start`, calling `f` for each one.
///
/// A bad record is a torn write only if nothing after it was ever acknowledged, which holds
/// only for the tail of the *last* segment (older segments are fdatasynced before a roll).
/// So: if `is_last`, the file is truncated to the last good record; otherwise the store is
/// corrupt and we refuse to open rather than drop acknowledged mail.
pub fn scan_segment<R: LogRecord>(
    file: &File,
    n: u32,
    start: u64,
    is_last: bool,
    mut f: impl FnMut(R, Option<BodyInfo>) -> StoreResult<()>,
) -> StoreResult<ScanEnd> {
    let walk = walk_segment(file, n, start, |_, rec, body| f(rec, body))?;
    let Some(failure) = walk.failure else {
        return Ok(ScanEnd {
            good_len: walk.good_len,
            records: walk.records,
        });
    };
    let pos = walk.good_len;
    if !is_last {
        return Err(StoreError::Corrupt(format!(
            "segment {n}: {failure} at offset {pos} (not the log tail; refusing to drop data)"
        )));
    }
    tracing::warn!(
        segment = n,
        offset = pos,
        dropped_bytes = walk.file_len - pos,
        "torn record at log tail ({failure}); truncating to last good record"
    );
    file.set_len(pos)?;
    file.sync_all()?;
    Ok(ScanEnd {
        good_len: pos,
        records: walk.records,
    })
}

/// The offset of the first intact record of log `R` after `from` (exclusive), if any: a record
/// there means the damage at `from` is not a torn tail.
pub fn find_intact_record<R: LogRecord>(file: &File, from: u64) -> StoreResult<Option<u64>> {
    let file_len = file.metadata()?.len();
    if from + 1 >= file_len {
        return Ok(None);
    }
    let rest = read_exact_at(
        file,
        from + 1,
        (file_len - from - 1).min(u64::from(u32::MAX)) as u32,
    )?;
    for at in 0..rest.len().saturating_sub(HEADER_LEN - 1) {
        let Ok(h) = <&[u8; HEADER_LEN]>::try_from(&rest[at..at + HEADER_LEN]) else {
            break;
        };
        let Ok((len, kind, crc)) = record::decode_header(h) else {
            continue;
        };
        if !R::KINDS.contains(&kind) {
            continue;
        }
        let end = at + HEADER_LEN + len as usize;
        if end > rest.len() {
            continue;
        }
        if R::decode_payload(kind, crc, &rest[at + HEADER_LEN..end]).is_ok() {
            return Ok(Some(from + 1 + at as u64));
        }
    }
    Ok(None)
}

/// Reads until `buf` is full or EOF; returns the number of bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Flags;
    use crate::store::record::Record;

    fn append(uid: u32) -> Record {
        Record::MessageAppend {
            account: "a".into(),
            mailbox: 1,
            uid,
            modseq: u64::from(uid),
            internal_date: 0,
            flags: Flags::default(),
            origin: None,
            body: format!("message {uid}\r\n").into_bytes().into(),
        }
    }

    fn write_records(dir: &Path, n: u32, count: u32) -> Vec<u8> {
        let mut buf = Vec::new();
        for uid in 1..=count {
            append(uid).encode(&mut buf);
        }
        std::fs::write(segment_path(dir, n), &buf).unwrap();
        buf
    }

    fn scan(dir: &Path, n: u32, is_last: bool) -> StoreResult<(ScanEnd, Vec<Vec<u8>>)> {
        let f = open_segment(dir, n, false)?;
        let mut bodies = Vec::new();
        let end = scan_segment(&f, n, 0, is_last, |_: Record, b| {
            let b = b.expect("append");
            bodies.push(read_exact_at(&f, b.loc.offset, b.loc.len)?);
            Ok(())
        })?;
        Ok((end, bodies))
    }

    #[test]
    fn segment_scan_locates_bodies() {
        let dir = tempfile::tempdir().unwrap();
        write_records(dir.path(), 3, 5);
        assert_eq!(list_segments(dir.path()).unwrap(), vec![3]);
        let (end, bodies) = scan(dir.path(), 3, true).unwrap();
        assert_eq!(end.records, 5);
        assert_eq!(bodies[4], b"message 5\r\n");
    }

    #[test]
    fn segment_torn_tail_truncated_only_at_last_segment() {
        let dir = tempfile::tempdir().unwrap();
        let full = write_records(dir.path(), 0, 4);
        let cut = full.len() as u64 - 3;
        let f = open_segment(dir.path(), 0, false).unwrap();
        f.set_len(cut).unwrap();
        assert!(matches!(
            scan(dir.path(), 0, false),
            Err(StoreError::Corrupt(_))
        ));
        let (end, bodies) = scan(dir.path(), 0, true).unwrap();
        assert_eq!(end.records, 3);
        assert_eq!(bodies.len(), 3);
        assert_eq!(f.metadata().unwrap().len(), end.good_len);
    }
}
