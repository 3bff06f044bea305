//! Compaction on real files: what it drops, what it keeps byte for byte, what a replay of the
//! compacted log rebuilds, and what a crash after each of its steps leaves.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::store::record::Record;
use crate::store::tests::{Dump, append_one, block_on, config, dump, seen};
use crate::store::{
    FlagOp, LogStore, MailStore, StoreConfig, StoreError, check, recovery, segment,
};

/// A message of about `size` bytes whose text names `tag`.
fn sized(tag: &str, size: usize) -> String {
    let mut s = format!("From: a@b\r\nSubject: {tag}\r\n\r\n");
    while s.len() + 2 < size {
        s.push_str(&format!("{tag} line {}\r\n", s.len()));
    }
    s
}

/// Everything a client can observe of an account, tombstones (QRESYNC) included, plus the
/// shard counters that must never go backwards.
#[derive(Debug, PartialEq, Eq)]
struct State {
    mailboxes: Dump,
    tombstones: Vec<(String, Vec<u32>)>,
    /// Subscribed names without a mailbox (they outlive DELETE).
    lost_subscriptions: Vec<String>,
    next_mailbox_id: u64,
    last_uidvalidity: u32,
}

fn state(s: &LogStore, account: &str) -> State {
    let tombstones = s
        .list_mailboxes(account)
        .into_iter()
        .map(|m| {
            let t = s.expunged_since(account, &m.name, 0).unwrap();
            (m.name, t)
        })
        .collect();
    let mailboxes = dump(s, account);
    let lost_subscriptions = s.lost_subscriptions(account);
    // Read last and alone: taking the index lock again while holding it deadlocks as soon as
    // a background compaction step waits to write (std's RwLock lets the writer go first).
    let ix = s.inner.shards[s.shard_of(account)]
        .shared
        .index
        .read()
        .unwrap();
    State {
        mailboxes,
        tombstones,
        lost_subscriptions,
        next_mailbox_id: ix.next_mailbox_id,
        last_uidvalidity: ix.last_uidvalidity,
    }
}

fn shard_dir(dir: &Path) -> std::path::PathBuf {
    recovery::shard_dir(dir, 0)
}

/// Total bytes of the mailbox log of shard 0.
fn log_bytes(dir: &Path) -> u64 {
    let d = shard_dir(dir);
    segment::list_segments(&d)
        .unwrap()
        .iter()
        .map(|&n| {
            std::fs::metadata(segment::segment_path(&d, n))
                .unwrap()
                .len()
        })
        .sum()
}

/// Every record of shard 0's mailbox log, with its segment.
fn records(dir: &Path) -> Vec<(u32, Record)> {
    let d = shard_dir(dir);
    let mut out = Vec::new();
    for n in segment::list_segments(&d).unwrap() {
        let f = segment::open_segment(&d, n, false).unwrap();
        let walk = segment::walk_segment(&f, n, 0, |_, rec: Record, _| {
            out.push((n, rec));
            Ok(())
        })
        .unwrap();
        assert!(walk.failure.is_none(), "segment {n}: {:?}", walk.failure);
    }
    out
}

fn leftovers(dir: &Path) -> Vec<std::path::PathBuf> {
    super::leftovers(&shard_dir(dir)).unwrap()
}

fn assert_check_clean(dir: &Path) {
    let report = check::check(dir, false).unwrap();
    assert!(report.is_clean(), "{}", report.render());
}

/// Reopens the store twice — from its checkpoint, then with the checkpoint deleted (the whole
/// compacted log replayed) — and asserts both show `expect`. Leaves the store closed.
fn assert_reopens_to(cfg: &StoreConfig, account: &str, expect: &State) {
    let s = LogStore::open(cfg.clone()).unwrap();
    assert_eq!(&state(&s, account), expect, "reopened from the checkpoint");
    assert_eq!(
        s.replayed_records(),
        0,
        "the checkpoint of the close matches the log"
    );
    s.close();
    std::fs::remove_file(shard_dir(&cfg.dir).join("checkpoint")).unwrap();
    let s = LogStore::open(cfg.clone()).unwrap();
    assert!(s.replayed_records() > 0);
    assert_eq!(
        &state(&s, account),
        expect,
        "full replay of the compacted log"
    );
    s.close();
    assert_check_clean(&cfg.dir);
}

#[test]
fn compaction_drops_dead_records_and_keeps_live_bytes_and_counters() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), 1);
    cfg.segment_bytes = 64 << 10;
    let acc = "carol";
    let s = LogStore::open(cfg.clone()).unwrap();
    block_on(async {
        for i in 0..200 {
            append_one(&s, acc, "INBOX", &sized(&format!("inbox-{i}"), 1000)).await;
        }
        s.create_mailbox(acc, "Keep").await.unwrap();
        for i in 0..10 {
            append_one(&s, acc, "Keep", &sized(&format!("keep-{i}"), 1000)).await;
        }
        // Created last, so its UIDVALIDITY is the largest the shard handed out.
        s.create_mailbox(acc, "Gone").await.unwrap();
        for i in 0..20 {
            append_one(&s, acc, "Gone", &sized(&format!("gone-{i}"), 1000)).await;
        }
        // Flag changes that later ones supersede.
        let some: Vec<u32> = (1..=200).step_by(7).collect();
        for op in [FlagOp::Add, FlagOp::Remove, FlagOp::Add] {
            s.store_flags(acc, "INBOX", &some, op, seen(), None)
                .await
                .unwrap();
        }
        let dead: Vec<u32> = (1..=200).filter(|u| u % 4 != 0).collect();
        assert_eq!(s.expunge(acc, "INBOX", &dead).await.unwrap(), dead);
    });
    let gone_uidvalidity = s.snapshot(acc, "Gone").unwrap().uidvalidity;
    block_on(s.set_subscribed(acc, "Gone", true)).unwrap();
    block_on(s.delete_mailbox(acc, "Gone")).unwrap();
    assert_eq!(s.lost_subscriptions(acc), ["Gone"]);

    let before_records = records(dir.path());
    let gone_id = before_records
        .iter()
        .find_map(|(_, r)| match r {
            Record::MailboxCreate { mailbox, name, .. } if name == "Gone" => Some(*mailbox),
            _ => None,
        })
        .unwrap();
    let before = state(&s, acc);
    let size_before = log_bytes(dir.path());

    let report = block_on(s.compact(Some(50))).unwrap();
    assert!(report.segments >= 3, "{report:?}");
    let size_after = log_bytes(dir.path());
    assert_eq!(size_after, size_before - report.bytes_reclaimed);
    assert!(
        size_after < size_before / 2,
        "{size_before} -> {size_after}"
    );
    assert_eq!(s.stats().segments_compacted, report.segments);
    assert_eq!(s.stats().compaction_bytes_reclaimed, report.bytes_reclaimed);
    assert!(leftovers(dir.path()).is_empty());

    // What clients see did not change, and every body is at its new place byte for byte.
    assert_eq!(state(&s, acc), before);
    assert_eq!(
        s.lost_subscriptions(acc),
        ["Gone"],
        "the subscription outlives the create"
    );
    for (name, .., msgs) in &before.mailboxes {
        for (uid, _, _, bytes) in msgs {
            let loc = s.locate(acc, name, *uid).unwrap();
            let mut buf = vec![0; loc.len as usize];
            std::os::unix::fs::FileExt::read_exact_at(&*loc.file, &mut buf, loc.offset).unwrap();
            assert_eq!(&buf, bytes, "{name} uid {uid}");
        }
    }

    // The dead records are gone from the files.
    let after_records = records(dir.path());
    let appends: Vec<(u64, u32)> = after_records
        .iter()
        .filter_map(|(_, r)| match r {
            Record::MessageAppend { mailbox, uid, .. } => Some((*mailbox, *uid)),
            _ => None,
        })
        .collect();
    assert_eq!(
        appends.len(),
        50 + 10,
        "only live messages keep their append"
    );
    assert!(
        after_records
            .iter()
            .all(|(_, r)| r.mailbox() != Some(gone_id)),
        "records of the deleted mailbox are gone"
    );
    let mut flag_records = HashSet::new();
    for (_, r) in &after_records {
        if let Record::FlagsSet { mailbox, uid, .. } = r {
            assert!(
                flag_records.insert((*mailbox, *uid)),
                "superseded FlagsSet kept"
            );
            assert!(
                appends.contains(&(*mailbox, *uid)),
                "FlagsSet of a gone message"
            );
        }
    }
    assert!(!flag_records.is_empty());
    let expunges = after_records
        .iter()
        .filter(|(_, r)| matches!(r, Record::Expunge { .. }))
        .count();
    assert_eq!(expunges, 150, "tombstones stay for QRESYNC");

    // UIDs continue where they were; a new mailbox never reuses a UIDVALIDITY.
    let next = block_on(append_one(&s, acc, "INBOX", "after compaction"));
    assert_eq!(next.uid, 201);
    let expect = state(&s, acc);
    s.close();
    assert_reopens_to(&cfg, acc, &expect);
    let s = LogStore::open(cfg.clone()).unwrap();
    block_on(s.create_mailbox(acc, "Gone")).unwrap();
    assert!(s.snapshot(acc, "Gone").unwrap().uidvalidity > gone_uidvalidity);
    // The new mailbox takes over the name's subscription.
    assert!(
        s.list_mailboxes(acc)
            .iter()
            .any(|m| m.name == "Gone" && m.subscribed)
    );
    assert!(s.lost_subscriptions(acc).is_empty());
    s.close();
}

#[test]
fn crash_after_each_compaction_step_recovers_the_old_or_the_new_segment() {
    for step in 1..=5 {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path(), 1);
        cfg.segment_bytes = 4 << 20;
        let acc = "dave";
        let s = LogStore::open(cfg.clone()).unwrap();
        block_on(async {
            // Two records larger than a compaction step: one kept, one dropped.
            append_one(&s, acc, "INBOX", &sized("big-keep", 1_200_000)).await;
            for i in 0..12 {
                append_one(&s, acc, "INBOX", &sized(&format!("a{i}"), 64 << 10)).await;
            }
            append_one(&s, acc, "INBOX", &sized("big-gone", 1_100_000)).await;
            for i in 0..20 {
                append_one(&s, acc, "INBOX", &sized(&format!("b{i}"), 64 << 10)).await;
            }
            for op in [FlagOp::Add, FlagOp::Remove, FlagOp::Add] {
                s.store_flags(acc, "INBOX", &[1, 2, 3, 20], op, seen(), None)
                    .await
                    .unwrap();
            }
            let dead: Vec<u32> = (2..=34).filter(|u| u % 3 != 0).collect();
            s.expunge(acc, "INBOX", &dead).await.unwrap();
        });
        let before = state(&s, acc);
        let seg0 = segment::segment_path(&shard_dir(dir.path()), 0);
        let seg0_len = std::fs::metadata(&seg0).unwrap().len();
        assert!(
            seg0_len > 3 * super::STEP_BYTES as u64,
            "several copy steps"
        );

        s.stop_compaction_after(step);
        assert!(block_on(s.compact(Some(30))).is_err(), "step {step}");
        // The writer now refuses everything, like a dead process.
        assert!(block_on(append_one_result(&s, acc)).is_err());
        s.crash();

        let new_len = std::fs::metadata(&seg0).unwrap().len();
        if step <= 2 {
            assert_eq!(new_len, seg0_len, "step {step}: the old segment is in use");
            assert_eq!(leftovers(dir.path()).len(), 1, "step {step}");
        } else {
            assert!(new_len < seg0_len, "step {step}: the new segment is in use");
            assert!(leftovers(dir.path()).is_empty(), "step {step}");
        }

        let s = LogStore::open(cfg.clone()).unwrap();
        assert!(leftovers(dir.path()).is_empty(), "step {step}");
        assert_eq!(state(&s, acc), before, "step {step}");
        // Steps 3 and 4 leave a checkpoint that lists the old segment: ignored, full replay.
        let replayed = s.replayed_records();
        match step {
            3 | 4 => assert!(replayed > 20, "step {step}: replayed {replayed}"),
            _ => assert!(replayed < 5, "step {step}: replayed {replayed}"),
        }
        // A second compaction after the crash finishes the work.
        block_on(s.compact(Some(30))).unwrap();
        assert_eq!(state(&s, acc), before, "step {step}");
        assert!(
            std::fs::metadata(&seg0).unwrap().len() < seg0_len,
            "step {step}"
        );
        let a = block_on(append_one(&s, acc, "INBOX", "after"));
        assert_eq!(a.uid, 35, "step {step}");
        let expect = state(&s, acc);
        s.close();
        assert!(log_bytes(dir.path()) < seg0_len, "step {step}");
        assert_reopens_to(&cfg, acc, &expect);
    }
}

async fn append_one_result(s: &LogStore, acc: &str) -> Result<(), StoreError> {
    s.append(vec![crate::store::tests::msg(acc, "INBOX", "x")])
        .await
        .map(|_| ())
}

#[test]
fn records_orphaned_by_compaction_replay_to_the_same_index() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), 1);
    cfg.segment_bytes = 16 << 10;
    let acc = "erin";
    let s = LogStore::open(cfg.clone()).unwrap();
    let m = |tag: &str| sized(tag, 2000);
    block_on(async {
        // Segment 0: mailbox X and its messages, all dead by the end.
        s.create_mailbox(acc, "X").await.unwrap();
        for i in 0..7 {
            append_one(&s, acc, "X", &m(&format!("x{i}"))).await;
        }
        // Later segments, mostly live: X renamed, its flags changed, some expunged, a new X,
        // then the old X (now Y) deleted. These records outlive X's creation.
        for i in 0..7 {
            append_one(&s, acc, "INBOX", &m(&format!("i{i}"))).await;
        }
        s.rename_mailbox(acc, "X", "Y").await.unwrap();
        s.store_flags(acc, "Y", &[1, 2, 3], FlagOp::Add, seen(), None)
            .await
            .unwrap();
        s.expunge(acc, "Y", &[4, 5]).await.unwrap();
        s.create_mailbox(acc, "X").await.unwrap();
        append_one(&s, acc, "X", &m("new-x")).await;
        for i in 7..13 {
            append_one(&s, acc, "INBOX", &m(&format!("i{i}"))).await;
        }
        s.delete_mailbox(acc, "Y").await.unwrap();
        for i in 13..20 {
            append_one(&s, acc, "INBOX", &m(&format!("i{i}"))).await;
        }
    });
    let old_x = records(dir.path())
        .iter()
        .find_map(|(_, r)| match r {
            Record::MailboxCreate { mailbox, name, .. } if name == "X" => Some(*mailbox),
            _ => None,
        })
        .unwrap();
    let report = block_on(s.compact(Some(60))).unwrap();
    assert!(report.segments >= 1, "{report:?}");
    let after = records(dir.path());
    assert!(
        !after
            .iter()
            .any(|(_, r)| matches!(r, Record::MailboxCreate { mailbox, .. } if *mailbox == old_x)),
        "the dead mailbox's create was dropped"
    );
    assert!(
        after
            .iter()
            .any(|(seg, r)| *seg > 0 && r.mailbox() == Some(old_x)),
        "later records of the dead mailbox remain (orphans): the case under test"
    );
    assert!(
        after
            .iter()
            .any(|(_, r)| matches!(r, Record::ShardState { .. })),
        "the shard counters of the dropped create are kept"
    );
    let expect = state(&s, acc);
    s.close();
    assert_reopens_to(&cfg, acc, &expect);

    // After a full replay the writer still refuses to reuse the dropped mailbox's id.
    let s = LogStore::open(cfg.clone()).unwrap();
    block_on(s.create_mailbox(acc, "Y")).unwrap();
    let new_y = {
        let ix = s.inner.shards[0].shared.index.read().unwrap();
        ix.accounts[acc]
            .mailboxes
            .values()
            .find(|m| m.name == "Y")
            .unwrap()
            .id
    };
    assert!(new_y >= expect.next_mailbox_id && new_y != old_x, "{new_y}");
    s.close();
}

#[test]
fn background_compaction_runs_while_appending_and_reading() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), 1);
    cfg.segment_bytes = 64 << 10;
    cfg.compact_dead_pct = 50;
    let acc = "fay";
    let s = LogStore::open(cfg.clone()).unwrap();
    // uid → body of every acknowledged append.
    let sent: Arc<Mutex<HashMap<u32, String>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(60);

    let reader = {
        let (s, sent, done) = (s.clone(), sent.clone(), done.clone());
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !done.load(Ordering::Relaxed) && Instant::now() < deadline {
                let Ok(snap) = s.snapshot(acc, "INBOX") else {
                    continue;
                };
                for m in &snap.messages {
                    match s.read(acc, "INBOX", m.uid) {
                        Ok(bytes) => {
                            let expect = sent.lock().unwrap().get(&m.uid).cloned();
                            if let Some(expect) = expect {
                                assert_eq!(bytes, expect.as_bytes(), "uid {}", m.uid);
                                reads += 1;
                            }
                        }
                        // Expunged since the snapshot.
                        Err(StoreError::NotAllowed(_)) => {}
                        Err(e) => panic!("read uid {}: {e}", m.uid),
                    }
                }
            }
            reads
        })
    };

    let mut latencies = Vec::new();
    block_on(async {
        for i in 0..600u32 {
            let body = sized(&format!("m{i}"), 2000);
            let t = Instant::now();
            let a = append_one(&s, acc, "INBOX", &body).await;
            latencies.push(t.elapsed());
            sent.lock().unwrap().insert(a.uid, body);
            // Keep every fifth message; expunge the others once they are 8 behind.
            if a.uid > 8 && (a.uid - 8) % 5 != 0 {
                s.expunge(acc, "INBOX", &[a.uid - 8]).await.unwrap();
                sent.lock().unwrap().remove(&(a.uid - 8));
            }
            assert!(Instant::now() < deadline, "appends too slow");
        }
    });
    done.store(true, Ordering::Relaxed);
    let reads = reader.join().unwrap();
    assert!(reads > 600, "the reader ran alongside ({reads} reads)");

    let stats = s.stats();
    assert!(stats.segments_compacted > 0, "{stats:?}");
    // 600 messages of 2 kB is 1.2 MB of log without compaction.
    let size = log_bytes(dir.path());
    assert!(size < 700 << 10, "{size} bytes of log");
    latencies.sort();
    eprintln!(
        "background compaction: {} segments, {} bytes back, longest step {} µs; \
         append latency median {:?}, p99 {:?}, max {:?}",
        stats.segments_compacted,
        stats.compaction_bytes_reclaimed,
        stats.compaction_longest_step_us,
        latencies[latencies.len() / 2],
        latencies[latencies.len() * 99 / 100],
        latencies[latencies.len() - 1],
    );
    let expect = state(&s, acc);
    assert_eq!(expect.mailboxes[0].4.len(), sent.lock().unwrap().len());
    s.close();
    assert_reopens_to(&cfg, acc, &expect);
}

#[test]
fn a_segment_with_nothing_left_is_deleted_and_flags_only_ones_are_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), 1);
    cfg.segment_bytes = 16 << 10;
    let acc = "gus";
    let s = LogStore::open(cfg.clone()).unwrap();
    block_on(async {
        // INBOX exists before the messages, so segment 1.. hold appends only.
        append_one(&s, acc, "INBOX", "first").await;
        for i in 0..30 {
            append_one(&s, acc, "INBOX", &sized(&format!("m{i}"), 2000)).await;
        }
        let all: Vec<u32> = (2..=31).collect();
        s.expunge(acc, "INBOX", &all).await.unwrap();
    });
    let segs_before = segment::list_segments(&shard_dir(dir.path())).unwrap();
    let expect = state(&s, acc);
    block_on(s.compact(Some(50))).unwrap();
    let segs_after = segment::list_segments(&shard_dir(dir.path())).unwrap();
    assert!(
        segs_before.iter().any(|n| !segs_after.contains(n)),
        "an emptied segment was deleted: {segs_before:?} -> {segs_after:?}"
    );
    assert_eq!(state(&s, acc), expect);
    // Nothing left to win: a second pass rewrites nothing.
    let again = block_on(s.compact(Some(0))).unwrap();
    assert_eq!(again.segments, 0, "{again:?}");
    let a = block_on(append_one(&s, acc, "INBOX", "next"));
    assert_eq!(a.uid, 32);
    let expect = state(&s, acc);
    s.close();
    assert_reopens_to(&cfg, acc, &expect);
}
