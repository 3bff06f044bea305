//! `surel store check`: verifies a store offline, without changing it unless asked to repair.
//!
//! For every shard it reads every record of every segment of both logs (mailbox and outbound
//! queue) and checks its CRC and format; replays the mailbox log into a fresh index and the
//! queue log into a fresh queue index, reporting records that do not fold (the same rules as
//! start-up, compaction's orphans included); and compares the index the log produces up to the
//! checkpoint's position with the checkpoint's own index, message locations included. Damage is
//! reported with its file and offset.
//!
//! A bad record at the end of a log's last segment, with no intact record after it, is a torn
//! write: the server's start-up truncates it, and so does `--repair`. Anything else — damage in
//! an older segment, or intact records after the damage — is never "repaired" here: dropping it
//! could drop acknowledged mail, so it is reported and the check fails. (`--repair` is
//! therefore stricter than start-up, which treats any bad record in the last segment as torn.)
//!
//! The check takes the store's lock, so it refuses to run beside a server using the store.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::checkpoint;
use super::index::{Mailbox, Replayed, ShardIndex};
use super::queue::{QueueIndex, QueueRecord};
use super::record::{LogRecord, Record};
use super::recovery::{checkpoint_matches, shard_dir};
use super::segment::{
    MAILBOX_LOG, QUEUE_LOG, find_intact_record, list_log, log_path, open_log, walk_segment,
};
use super::{META_FILE, StoreError, StoreResult};

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// Worth knowing, harmless (a stale checkpoint, a leftover temporary file).
    Note,
    /// A torn write at a log's end: start-up (or `--repair`) truncates it.
    TornTail,
    /// Fixed by `--repair`.
    Repaired,
    /// Damage that needs a human: nothing was changed.
    Damage,
}

#[derive(Clone, Debug)]
pub struct Finding {
    pub severity: Severity,
    pub shard: usize,
    /// The file concerned (relative to the store directory).
    pub file: String,
    pub offset: Option<u64>,
    pub what: String,
}

/// What a check found and how much it looked at.
#[derive(Clone, Debug, Default)]
pub struct CheckReport {
    pub shards: usize,
    pub segments: u64,
    pub records: u64,
    pub messages: u64,
    pub message_bytes: u64,
    pub queued: u64,
    pub findings: Vec<Finding>,
}

impl CheckReport {
    /// No damage and no torn tail left.
    pub fn is_clean(&self) -> bool {
        !self
            .findings
            .iter()
            .any(|f| matches!(f.severity, Severity::Damage | Severity::TornTail))
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for f in &self.findings {
            let what = match f.severity {
                Severity::Note => "note",
                Severity::TornTail => "torn tail",
                Severity::Repaired => "repaired",
                Severity::Damage => "DAMAGE",
            };
            let at = f.offset.map(|o| format!(" offset {o}")).unwrap_or_default();
            out.push_str(&format!(
                "{what}: shard {} {}{at}: {}\n",
                f.shard, f.file, f.what
            ));
        }
        out.push_str(&format!(
            "{}: {} shards, {} segments, {} records, {} messages ({} bytes), {} queued\n",
            if self.is_clean() {
                "clean"
            } else {
                "NOT clean"
            },
            self.shards,
            self.segments,
            self.records,
            self.messages,
            self.message_bytes,
            self.queued
        ));
        out
    }
}

/// At most this many index differences are reported per shard.
const MAX_DIFFERENCES: usize = 20;

/// Checks the store in `dir` (the `store` directory of a data directory). With `repair`, torn
/// tails are truncated and leftover compaction files removed; nothing else is changed.
pub fn check(dir: &Path, repair: bool) -> StoreResult<CheckReport> {
    let meta = dir.join(META_FILE);
    let text = std::fs::read_to_string(&meta).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => StoreError::NotAllowed("no store in this data directory"),
        _ => StoreError::Io(e),
    })?;
    let shards = super::meta_shards(&meta, &text)?;
    let _lock = super::lock_store_dir(dir).map_err(|e| match e {
        StoreError::NotAllowed(_) => StoreError::NotAllowed(
            "the store is in use (is the server running?): stop it first; `store check` works offline only",
        ),
        e => e,
    })?;
    let mut report = CheckReport {
        shards,
        ..Default::default()
    };
    for shard in 0..shards {
        ShardCheck {
            dir: shard_dir(dir, shard),
            store_dir: dir.to_path_buf(),
            shard,
            repair,
            report: &mut report,
        }
        .run()?;
    }
    Ok(report)
}

struct ShardCheck<'a> {
    dir: PathBuf,
    store_dir: PathBuf,
    shard: usize,
    repair: bool,
    report: &'a mut CheckReport,
}

impl ShardCheck<'_> {
    fn name(&self, path: &Path) -> String {
        path.strip_prefix(&self.store_dir)
            .unwrap_or(path)
            .display()
            .to_string()
    }

    fn find(&mut self, severity: Severity, file: &Path, offset: Option<u64>, what: String) {
        let file = self.name(file);
        self.report.findings.push(Finding {
            severity,
            shard: self.shard,
            file,
            offset,
            what,
        });
    }

    fn run(&mut self) -> StoreResult<()> {
        if !self.dir.is_dir() {
            let dir = self.dir.clone();
            self.find(
                Severity::Note,
                &dir,
                None,
                "shard directory missing (never written)".into(),
            );
            return Ok(());
        }
        for tmp in super::compact::leftovers(&self.dir)? {
            if self.repair {
                std::fs::remove_file(&tmp)?;
                self.find(
                    Severity::Repaired,
                    &tmp,
                    None,
                    "removed an interrupted compaction's temporary file".into(),
                );
            } else {
                self.find(
                    Severity::Note,
                    &tmp,
                    None,
                    "temporary file of an interrupted compaction (start-up removes it)".into(),
                );
            }
        }
        self.mailbox_log()?;
        self.queue_log()
    }

    /// Walks one segment; reports and (for a torn tail, with `repair`) fixes a bad record.
    /// Returns how far the good records go.
    fn walk<R: LogRecord>(
        &mut self,
        log: &str,
        n: u32,
        is_last: bool,
        f: impl FnMut(u64, R, Option<super::index::BodyInfo>) -> StoreResult<()>,
    ) -> StoreResult<u64> {
        let path = log_path(&self.dir, log, n);
        let file = open_log(&self.dir, log, n, false)?;
        let walk = walk_segment(&file, n, 0, f)?;
        self.report.segments += 1;
        self.report.records += walk.records;
        let Some(failure) = walk.failure else {
            return Ok(walk.good_len);
        };
        let at = walk.good_len;
        let bad_bytes = walk.file_len - at;
        let intact = find_intact_record::<R>(&file, at)?;
        match (is_last, intact) {
            (true, None) if self.repair => {
                file.set_len(at)?;
                file.sync_all()?;
                self.find(
                    Severity::Repaired,
                    &path,
                    Some(at),
                    format!("{failure}: truncated the torn tail ({bad_bytes} bytes)"),
                );
            }
            (true, None) => self.find(
                Severity::TornTail,
                &path,
                Some(at),
                format!(
                    "{failure}: the last {bad_bytes} bytes are an interrupted write (start-up or --repair truncates them)"
                ),
            ),
            (true, Some(next)) => self.find(
                Severity::Damage,
                &path,
                Some(at),
                format!(
                    "{failure}, but an intact record follows at offset {next}: not a torn tail, not repaired"
                ),
            ),
            (false, next) => self.find(
                Severity::Damage,
                &path,
                Some(at),
                format!(
                    "{failure} in a sealed segment ({bad_bytes} bytes from here unreadable{}); the server refuses to open this store",
                    next.map(|o| format!(", next intact record at offset {o}"))
                        .unwrap_or_default()
                ),
            ),
        }
        Ok(at)
    }

    fn mailbox_log(&mut self) -> StoreResult<()> {
        let segs = list_log(&self.dir, MAILBOX_LOG)?;
        let ckpt = checkpoint::load(&self.dir);
        let ckpt_path = self.dir.join(checkpoint::FILE_NAME);
        let ckpt = match ckpt {
            Some(c) if checkpoint_matches(&self.dir, &segs, &c) => Some(c),
            Some(_) => {
                self.find(
                    Severity::Note,
                    &ckpt_path,
                    None,
                    "checkpoint does not match the segments (left by an interrupted compaction); start-up replays the whole log".into(),
                );
                None
            }
            None => {
                if ckpt_path.exists() {
                    self.find(
                        Severity::Note,
                        &ckpt_path,
                        None,
                        "checkpoint unreadable; start-up replays the whole log".into(),
                    );
                }
                None
            }
        };
        let mut index = ShardIndex::default();
        let mut compared = ckpt.is_none();
        let mut problems: Vec<(u32, u64, String)> = Vec::new();
        let mut lengths = HashMap::new();
        for (i, &n) in segs.iter().enumerate() {
            let is_last = i + 1 == segs.len();
            let mut pending_compare: Option<Vec<String>> = None;
            let good = self.walk(MAILBOX_LOG, n, is_last, |at, rec: Record, body| {
                if !compared && let Some(c) = &ckpt {
                    let reached = n > c.pos.segment || (n == c.pos.segment && at >= c.pos.offset);
                    if reached {
                        pending_compare = Some(index_differences(&c.index, &index));
                        compared = true;
                    }
                }
                if let Err(e) = index.apply_replayed(&rec, body).map(|_: Replayed| ()) {
                    problems.push((n, at, e));
                }
                Ok(())
            })?;
            lengths.insert(n, good);
            if let Some(diffs) = pending_compare {
                self.report_differences(&ckpt_path, diffs);
            }
        }
        if !compared && let Some(c) = &ckpt {
            let end_reached = segs.last().is_some_and(|&last| {
                last == c.pos.segment && lengths.get(&last).is_some_and(|&l| l >= c.pos.offset)
            });
            if end_reached {
                let diffs = index_differences(&c.index, &index);
                self.report_differences(&ckpt_path, diffs);
            } else {
                self.find(
                    Severity::Note,
                    &ckpt_path,
                    None,
                    "the log ends before the checkpoint's position; not compared".into(),
                );
            }
        }
        for (n, at, e) in problems.into_iter().take(MAX_DIFFERENCES) {
            let path = log_path(&self.dir, MAILBOX_LOG, n);
            self.find(
                Severity::Damage,
                &path,
                Some(at),
                format!("record does not fold into the index: {e}"),
            );
        }
        // Every message must lie inside the good part of an existing segment.
        let mut outside = Vec::new();
        for (key, acc) in &index.accounts {
            for mb in acc.mailboxes.values() {
                for m in &mb.messages {
                    self.report.messages += 1;
                    self.report.message_bytes += u64::from(m.meta.size);
                    let ok = lengths
                        .get(&m.loc.segment)
                        .is_some_and(|&l| m.loc.offset + u64::from(m.loc.len) <= l);
                    if !ok {
                        outside.push(format!(
                            "{key}/{} uid {} at {:?}",
                            mb.name, m.meta.uid, m.loc
                        ));
                    }
                }
            }
        }
        for o in outside.into_iter().take(MAX_DIFFERENCES) {
            let dir = self.dir.clone();
            self.find(
                Severity::Damage,
                &dir,
                None,
                format!("message outside the readable log: {o}"),
            );
        }
        Ok(())
    }

    fn report_differences(&mut self, ckpt_path: &Path, diffs: Vec<String>) {
        let n = diffs.len();
        for d in diffs {
            self.find(
                Severity::Damage,
                ckpt_path,
                None,
                format!("checkpoint disagrees with the log: {d}"),
            );
        }
        if n >= MAX_DIFFERENCES {
            self.find(
                Severity::Damage,
                ckpt_path,
                None,
                "(more differences not shown)".into(),
            );
        }
    }

    fn queue_log(&mut self) -> StoreResult<()> {
        let segs = list_log(&self.dir, QUEUE_LOG)?;
        let mut queue = QueueIndex::default();
        let mut problems = Vec::new();
        for (i, &n) in segs.iter().enumerate() {
            let is_last = i + 1 == segs.len();
            self.walk(QUEUE_LOG, n, is_last, |at, rec: QueueRecord, body| {
                if let Err(e) = queue.apply(&rec, body) {
                    problems.push((n, at, e));
                }
                Ok(())
            })?;
        }
        for (n, at, e) in problems.into_iter().take(MAX_DIFFERENCES) {
            let path = log_path(&self.dir, QUEUE_LOG, n);
            self.find(
                Severity::Damage,
                &path,
                Some(at),
                format!("queue record does not fold: {e}"),
            );
        }
        self.report.queued += queue.entries.len() as u64;
        Ok(())
    }
}

/// Where two indexes differ, as readable lines (at most [`MAX_DIFFERENCES`]).
fn index_differences(expected: &ShardIndex, actual: &ShardIndex) -> Vec<String> {
    let mut out = Vec::new();
    let mut say = |s: String| {
        if out.len() < MAX_DIFFERENCES {
            out.push(s);
        }
    };
    if expected.next_mailbox_id != actual.next_mailbox_id {
        say(format!(
            "next mailbox id {} vs {} in the log",
            expected.next_mailbox_id, actual.next_mailbox_id
        ));
    }
    if expected.last_uidvalidity != actual.last_uidvalidity {
        say(format!(
            "last UIDVALIDITY {} vs {} in the log",
            expected.last_uidvalidity, actual.last_uidvalidity
        ));
    }
    let mut keys: Vec<&String> = expected
        .accounts
        .keys()
        .chain(actual.accounts.keys())
        .collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        let (Some(a), Some(b)) = (expected.accounts.get(key), actual.accounts.get(key)) else {
            say(format!("account {key:?} only on one side"));
            continue;
        };
        if a.lost_subscriptions != b.lost_subscriptions {
            say(format!(
                "{key}: subscriptions without mailbox: checkpoint has {:?}; log has {:?}",
                a.lost_subscriptions, b.lost_subscriptions
            ));
        }
        let mut ids: Vec<&u64> = a.mailboxes.keys().chain(b.mailboxes.keys()).collect();
        ids.sort();
        ids.dedup();
        for id in ids {
            match (a.mailboxes.get(id), b.mailboxes.get(id)) {
                (Some(x), Some(y)) => {
                    if let Some(d) = mailbox_difference(x, y) {
                        say(format!("{key}/{}: {d}", x.name));
                    }
                }
                _ => say(format!("{key}: mailbox {id} only on one side")),
            }
        }
    }
    out
}

fn mailbox_difference(a: &Mailbox, b: &Mailbox) -> Option<String> {
    let fields = |m: &Mailbox| {
        format!(
            "name {:?} special-use {:?} subscribed {} uidvalidity {} uidnext {} highestmodseq {}",
            m.name, m.special_use, m.subscribed, m.uidvalidity, m.uidnext, m.highest_modseq
        )
    };
    if fields(a) != fields(b) {
        return Some(format!(
            "checkpoint has {}; log has {}",
            fields(a),
            fields(b)
        ));
    }
    if a.messages.len() != b.messages.len() {
        return Some(format!(
            "{} messages in the checkpoint, {} in the log",
            a.messages.len(),
            b.messages.len()
        ));
    }
    for (x, y) in a.messages.iter().zip(&b.messages) {
        if x.meta != y.meta || x.loc != y.loc {
            return Some(format!(
                "uid {}: checkpoint {:?} at {:?}; log {:?} at {:?}",
                x.meta.uid, x.meta, x.loc, y.meta, y.loc
            ));
        }
    }
    if a.expunged != b.expunged {
        return Some(format!(
            "{} tombstones in the checkpoint, {} in the log",
            a.expunged.len(),
            b.expunged.len()
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{append_one, block_on, body, config};
    use crate::store::{LogStore, segment};

    fn severities(r: &CheckReport) -> Vec<Severity> {
        r.findings.iter().map(|f| f.severity).collect()
    }

    /// A closed one-shard store with 20 messages over several segments; returns its segments.
    fn store_with_messages(dir: &Path) -> Vec<PathBuf> {
        let mut cfg = config(dir, 1);
        cfg.segment_bytes = 1024;
        let s = LogStore::open(cfg).unwrap();
        block_on(async {
            for i in 0..20 {
                append_one(&s, "hal", "INBOX", &body(i)).await;
            }
        });
        s.close();
        let d = shard_dir(dir, 0);
        let segs: Vec<PathBuf> = segment::list_segments(&d)
            .unwrap()
            .into_iter()
            .map(|n| segment::segment_path(&d, n))
            .collect();
        assert!(segs.len() >= 3, "{segs:?}");
        segs
    }

    #[test]
    fn clean_store_is_clean_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        store_with_messages(dir.path());
        let r = check(dir.path(), false).unwrap();
        assert!(r.is_clean(), "{}", r.render());
        assert_eq!(severities(&r), vec![]);
        assert_eq!((r.shards, r.messages), (1, 20));
        assert!(r.records >= 26, "{}", r.render());
        assert!(r.render().starts_with("clean:"));
    }

    #[test]
    fn torn_tail_is_reported_and_repair_truncates_only_it() {
        let dir = tempfile::tempdir().unwrap();
        let segs = store_with_messages(dir.path());
        let last = segs.last().unwrap();
        let good = std::fs::read(last).unwrap();
        let mut torn = good.clone();
        torn.extend_from_slice(&[0x40, 0, 0, 0, 6, 1, 2, 3, 4, 5, 6, 7]);
        std::fs::write(last, &torn).unwrap();

        let r = check(dir.path(), false).unwrap();
        assert!(!r.is_clean());
        assert_eq!(severities(&r), vec![Severity::TornTail], "{}", r.render());
        assert_eq!(r.findings[0].offset, Some(good.len() as u64));
        assert_eq!(
            std::fs::read(last).unwrap(),
            torn,
            "a check without --repair changes nothing"
        );

        let r = check(dir.path(), true).unwrap();
        assert_eq!(severities(&r), vec![Severity::Repaired], "{}", r.render());
        assert!(r.is_clean());
        assert_eq!(std::fs::read(last).unwrap(), good);
        let r = check(dir.path(), false).unwrap();
        assert!(r.is_clean(), "{}", r.render());
        assert_eq!(r.messages, 20);
    }

    #[test]
    fn damage_is_reported_and_never_repaired() {
        // In a sealed segment, and in the last one with intact records after it.
        for which in ["sealed", "last"] {
            let dir = tempfile::tempdir().unwrap();
            let segs = store_with_messages(dir.path());
            let victim = if which == "sealed" {
                &segs[1]
            } else {
                segs.last().unwrap()
            };
            let mut bytes = std::fs::read(victim).unwrap();
            // A byte of the first record's payload: intact records follow it.
            bytes[12] ^= 0x55;
            std::fs::write(victim, &bytes).unwrap();
            for repair in [false, true] {
                let r = check(dir.path(), repair).unwrap();
                assert!(!r.is_clean(), "{which}: {}", r.render());
                assert!(
                    severities(&r).contains(&Severity::Damage),
                    "{which}: {}",
                    r.render()
                );
                assert_eq!(
                    std::fs::read(victim).unwrap(),
                    bytes,
                    "{which}: left as it was"
                );
            }
        }
    }

    #[test]
    fn leftover_compaction_file_is_a_note_and_the_open_store_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let segs = store_with_messages(dir.path());
        let tmp = PathBuf::from(format!("{}.compact", segs[0].display()));
        std::fs::write(&tmp, b"partial").unwrap();
        let r = check(dir.path(), false).unwrap();
        assert!(r.is_clean(), "{}", r.render());
        assert_eq!(severities(&r), vec![Severity::Note]);
        assert!(tmp.exists());
        let r = check(dir.path(), true).unwrap();
        assert_eq!(severities(&r), vec![Severity::Repaired]);
        assert!(!tmp.exists());

        let s = LogStore::open(config(dir.path(), 1)).unwrap();
        assert!(matches!(
            check(dir.path(), false),
            Err(StoreError::NotAllowed(_))
        ));
        s.close();
    }

    #[test]
    fn checkpoint_that_disagrees_with_the_log_is_damage() {
        let dir = tempfile::tempdir().unwrap();
        store_with_messages(dir.path());
        let d = shard_dir(dir.path(), 0);
        let c = checkpoint::load(&d).unwrap();
        let mut index = c.index.clone();
        let mb = index
            .accounts
            .get_mut("hal")
            .unwrap()
            .mailboxes
            .values_mut()
            .find(|m| m.name == "INBOX")
            .unwrap();
        mb.uidnext += 5;
        checkpoint::write(&d, &index, c.pos, &c.sealed).unwrap();
        let r = check(dir.path(), false).unwrap();
        assert!(!r.is_clean());
        assert!(
            r.findings
                .iter()
                .any(|f| f.severity == Severity::Damage && f.what.contains("uidnext")),
            "{}",
            r.render()
        );
    }
}
