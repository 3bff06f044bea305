//! End-to-end tests of [`LogStore`] on real files in a temporary directory.

use super::*;
use std::future::Future;
use std::path::Path;

pub(super) fn block_on<F: Future>(f: F) -> F::Output {
    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .build()
        .expect("monoio runtime")
        .block_on(f)
}

pub(super) fn config(dir: &Path, shards: usize) -> StoreConfig {
    StoreConfig {
        dir: dir.to_path_buf(),
        shards,
        fsync: true,
        segment_bytes: 1 << 20,
        checkpoint_bytes: 64 << 20,
        queue_segment_bytes: 16 << 20,
        mailbox_limits: Default::default(),
        compact_dead_pct: 0,
    }
}

pub(super) fn msg(account: &str, mailbox: &str, body: &str) -> NewMessage {
    NewMessage {
        account: account.into(),
        mailbox: mailbox.into(),
        bytes: body.as_bytes().into(),
        flags: Flags::default(),
        internal_date: 1_700_000_000,
    }
}

pub(super) fn body(i: usize) -> String {
    format!("From: a@b\r\nSubject: {i}\r\n\r\nmessage number {i}\r\n")
}

pub(super) fn seen() -> Flags {
    Flags {
        system: SystemFlags(SystemFlags::SEEN),
        keywords: vec![],
    }
}

pub(super) async fn append_one(s: &LogStore, account: &str, mailbox: &str, b: &str) -> Appended {
    s.append(vec![msg(account, mailbox, b)])
        .await
        .expect("append")[0]
}

pub(super) type Dump = Vec<(String, u32, u32, u64, Vec<(u32, Flags, u64, Vec<u8>)>)>;

/// Everything observable about an account, for before/after-restart comparisons.
pub(super) fn dump(s: &LogStore, account: &str) -> Dump {
    s.list_mailboxes(account)
        .into_iter()
        .map(|mb| {
            let snap = s.snapshot(account, &mb.name).expect("snapshot");
            let msgs = snap
                .messages
                .iter()
                .map(|m| {
                    let bytes = s.read(account, &mb.name, m.uid).expect("read");
                    assert_eq!(bytes.len() as u32, m.size);
                    (m.uid, m.flags.clone(), m.modseq, bytes)
                })
                .collect();
            (
                mb.name,
                snap.uidvalidity,
                snap.uidnext,
                snap.highest_modseq,
                msgs,
            )
        })
        .collect()
}

/// Subscribers are told before the callers are answered; poll briefly all the same.
fn next_change(rx: &mut ChangeReceiver) -> MailboxChange {
    for _ in 0..5000 {
        match rx.try_recv() {
            Ok(c) => return c,
            Err(futures_channel::mpsc::TryRecvError::Closed) => panic!("change stream closed"),
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(1)),
        }
    }
    panic!("no change within 5s");
}

pub(super) fn last_segment(dir: &Path, shard: usize) -> std::path::PathBuf {
    let d = recovery::shard_dir(dir, shard);
    let n = *segment::list_segments(&d).unwrap().last().unwrap();
    segment::segment_path(&d, n)
}

#[test]
fn append_read_back_and_uids_increase() {
    let dir = tempfile::tempdir().unwrap();
    let s = LogStore::open(config(dir.path(), 2)).unwrap();
    block_on(async {
        let a = append_one(&s, "Alice@example.org", "inbox", &body(1)).await;
        let b = append_one(&s, "alice@example.org", "INBOX", ".dotted\r\n").await;
        assert_eq!((a.uid, b.uid), (1, 2));
        assert_eq!(a.uidvalidity, b.uidvalidity);
        assert!(b.modseq > a.modseq);
        assert_eq!(
            s.read("alice@example.org", "INBOX", 1).unwrap(),
            body(1).as_bytes()
        );
        let snap = s.snapshot("ALICE@example.org", "Inbox").unwrap();
        assert_eq!(snap.uidnext, 3);
        assert!(!snap.messages[0].needs_dot_stuffing);
        assert!(snap.messages[1].needs_dot_stuffing);
        let loc = s.locate("alice@example.org", "INBOX", 2).unwrap();
        let mut buf = vec![0; loc.len as usize];
        std::os::unix::fs::FileExt::read_exact_at(&*loc.file, &mut buf, loc.offset).unwrap();
        assert_eq!(buf, b".dotted\r\n");
        // First delivery created the default mailboxes.
        let names: Vec<_> = s
            .list_mailboxes("alice@example.org")
            .into_iter()
            .map(|m| (m.name, m.special_use, m.subscribed))
            .collect();
        assert_eq!(names[0], ("INBOX".to_string(), None, true));
        assert!(names.contains(&("Junk".to_string(), Some(SpecialUse::Junk), true)));
        assert_eq!(names.len(), 6);
        // Unknown mailbox of an existing account is not auto-created.
        assert!(matches!(
            s.append(vec![msg("alice@example.org", "Nope", "x")]).await,
            Err(StoreError::NoSuchMailbox)
        ));
        assert!(matches!(
            s.read("alice@example.org", "INBOX", 99),
            Err(StoreError::NotAllowed(_))
        ));
        // Batched append across accounts/shards keeps input order.
        let many: Vec<_> = (0..10)
            .map(|i| msg(&format!("user{i}"), "INBOX", &body(i)))
            .collect();
        let res = s.append(many).await.unwrap();
        assert!(res.iter().all(|a| a.uid == 1));
        for i in 0..10 {
            assert_eq!(
                s.read(&format!("user{i}"), "INBOX", 1).unwrap(),
                body(i).as_bytes()
            );
        }
    });
}

#[test]
fn flags_expunge_and_condstore() {
    let dir = tempfile::tempdir().unwrap();
    let s = LogStore::open(config(dir.path(), 1)).unwrap();
    block_on(async {
        for i in 0..3 {
            append_one(&s, "bob", "INBOX", &body(i)).await;
        }
        let before = s.snapshot("bob", "INBOX").unwrap();
        let ch = s
            .store_flags("bob", "INBOX", &[1, 2, 77], FlagOp::Add, seen(), None)
            .await
            .unwrap();
        assert_eq!(ch.len(), 2);
        assert!(ch[0].2 > before.highest_modseq && ch[1].2 > ch[0].2);
        // No-op change is not reported.
        let ch2 = s
            .store_flags("bob", "INBOX", &[1], FlagOp::Add, seen(), None)
            .await
            .unwrap();
        assert!(ch2.is_empty());
        // UNCHANGEDSINCE below message 1's modseq: only message 3 (untouched) changes.
        let guard = before.highest_modseq;
        let kw = Flags {
            system: SystemFlags(SystemFlags::FLAGGED),
            keywords: vec!["$Work".into()],
        };
        let ch3 = s
            .store_flags(
                "bob",
                "INBOX",
                &[1, 3],
                FlagOp::Replace,
                kw.clone(),
                Some(guard),
            )
            .await
            .unwrap();
        assert_eq!(ch3.iter().map(|c| c.0).collect::<Vec<_>>(), vec![3]);
        let snap = s.snapshot("bob", "INBOX").unwrap();
        assert_eq!(snap.messages[0].flags, seen());
        assert_eq!(snap.messages[2].flags, kw);
        assert_eq!(snap.messages[2].modseq, snap.highest_modseq);
        let info = &s.list_mailboxes("bob")[0];
        assert_eq!((info.messages, info.unseen), (3, 1));

        let hm = snap.highest_modseq;
        let gone = s.expunge("bob", "INBOX", &[2, 9]).await.unwrap();
        assert_eq!(gone, vec![2]);
        let snap = s.snapshot("bob", "INBOX").unwrap();
        assert_eq!(
            snap.messages.iter().map(|m| m.uid).collect::<Vec<_>>(),
            vec![1, 3]
        );
        assert!(snap.highest_modseq > hm);
        assert_eq!(s.expunged_since("bob", "INBOX", hm).unwrap(), vec![2]);
        assert!(
            s.expunged_since("bob", "INBOX", snap.highest_modseq)
                .unwrap()
                .is_empty()
        );
    });
}

#[test]
fn uidnext_survives_expunge_of_last_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = LogStore::open(config(dir.path(), 1)).unwrap();
        block_on(async {
            for i in 0..3 {
                append_one(&s, "c", "INBOX", &body(i)).await;
            }
            assert_eq!(s.expunge("c", "INBOX", &[3]).await.unwrap(), vec![3]);
        });
        s.close();
    }
    // Without and with checkpoint (close writes one; delete it for a full replay).
    for drop_checkpoint in [true, false] {
        if drop_checkpoint {
            let _ = std::fs::remove_file(recovery::shard_dir(dir.path(), 0).join("checkpoint"));
        }
        // The second round also sees the UID appended (and then checkpointed) by the first.
        let expect = 4 + u32::from(!drop_checkpoint);
        let s = LogStore::open(config(dir.path(), 1)).unwrap();
        assert_eq!(s.snapshot("c", "INBOX").unwrap().uidnext, expect);
        let a = block_on(append_one(&s, "c", "INBOX", "new"));
        assert_eq!(a.uid, expect);
        s.close();
    }
}

#[test]
fn subscriptions_outlive_their_mailbox_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let names = |s: &LogStore| {
        let subscribed: Vec<String> = s
            .list_mailboxes("e")
            .into_iter()
            .filter(|m| m.subscribed && m.name.starts_with('p'))
            .map(|m| m.name)
            .collect();
        (subscribed, s.lost_subscriptions("e"))
    };
    {
        let s = LogStore::open(config(dir.path(), 1)).unwrap();
        block_on(async {
            s.create_mailbox("e", "p/a").await.unwrap();
            s.create_mailbox("e", "p/b").await.unwrap();
            s.set_subscribed("e", "p/a", true).await.unwrap();
            s.set_subscribed("e", "p/b", true).await.unwrap();
            // A name that never had a mailbox may be subscribed too, once.
            s.set_subscribed("e", "p/later", true).await.unwrap();
            s.set_subscribed("e", "p/later", true).await.unwrap();
            s.delete_mailbox("e", "p/a").await.unwrap();
            s.delete_mailbox("e", "p/b").await.unwrap();
            s.set_subscribed("e", "p/b", false).await.unwrap();
            assert!(matches!(
                s.set_subscribed("e", "p/b", false).await,
                Err(StoreError::NoSuchMailbox)
            ));
            // Invalid names are refused before anything is written.
            assert!(matches!(
                s.set_subscribed("e", "p//x", true).await,
                Err(StoreError::NotAllowed(_))
            ));
        });
        assert_eq!(names(&s), (vec![], vec!["p/a".into(), "p/later".into()]));
        s.close();
    }
    for drop_checkpoint in [true, false] {
        if drop_checkpoint {
            let _ = std::fs::remove_file(recovery::shard_dir(dir.path(), 0).join("checkpoint"));
        }
        let s = LogStore::open(config(dir.path(), 1)).unwrap();
        assert_eq!(
            names(&s),
            (vec![], vec!["p/a".into(), "p/later".into()]),
            "checkpoint dropped: {drop_checkpoint}"
        );
        s.close();
    }
    let s = LogStore::open(config(dir.path(), 1)).unwrap();
    block_on(s.create_mailbox("e", "p/later")).unwrap();
    block_on(s.rename_mailbox("e", "p", "q")).unwrap();
    block_on(s.create_mailbox("e", "x")).unwrap();
    block_on(s.rename_mailbox("e", "x", "p/a")).unwrap();
    assert_eq!(names(&s), (vec!["p/a".into()], vec![]));
    s.close();
}

#[test]
fn restart_preserves_everything() {
    let dir = tempfile::tempdir().unwrap();
    let accounts = ["ann", "Ben", "cy@x.org", "dee"];
    let before: Vec<_>;
    {
        let s = LogStore::open(config(dir.path(), 3)).unwrap();
        block_on(async {
            for (n, acc) in accounts.iter().enumerate() {
                s.create_mailbox(acc, "Lists/rust").await.unwrap();
                for i in 0..(5 + n) {
                    append_one(&s, acc, "INBOX", &body(i)).await;
                    append_one(&s, acc, "Lists/rust", &body(100 + i)).await;
                }
                s.store_flags(acc, "INBOX", &[2, 4], FlagOp::Add, seen(), None)
                    .await
                    .unwrap();
                s.expunge(acc, "Lists/rust", &[1]).await.unwrap();
                s.set_subscribed(acc, "Lists/rust", true).await.unwrap();
            }
        });
        before = accounts.iter().map(|a| dump(&s, a)).collect();
        // Dropping the last clone closes the store.
    }
    let after_open = |expect_replay: bool| {
        let s = LogStore::open(config(dir.path(), 3)).unwrap();
        let after: Vec<_> = accounts.iter().map(|a| dump(&s, a)).collect();
        assert_eq!(before, after);
        assert!(
            s.list_mailboxes("ann")
                .iter()
                .any(|m| m.name == "Lists" && !m.subscribed)
        );
        assert!(
            s.list_mailboxes("ann")
                .iter()
                .any(|m| m.name == "Lists/rust" && m.subscribed)
        );
        assert_eq!(s.replayed_records() > 0, expect_replay);
        s.close();
    };
    after_open(false); // clean close wrote checkpoints: nothing to replay
    for sh in 0..3 {
        let _ = std::fs::remove_file(recovery::shard_dir(dir.path(), sh).join("checkpoint"));
    }
    after_open(true);
}

#[test]
fn torn_tail_is_truncated() {
    for garbage in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path(), 1);
        cfg.checkpoint_bytes = u64::MAX;
        let s = LogStore::open(cfg.clone()).unwrap();
        block_on(async {
            for i in 0..5 {
                append_one(&s, "t", "INBOX", &body(i)).await;
            }
        });
        let seg = last_segment(dir.path(), 0);
        let len_before_last = s.locate("t", "INBOX", 5).unwrap().offset;
        // Simulate a crash: no clean close (no checkpoint), then damage the tail.
        s.crash();
        let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
        if garbage {
            use std::io::{Seek, Write};
            let mut f = f;
            f.seek(std::io::SeekFrom::End(0)).unwrap();
            f.write_all(&[0x17, 0, 0, 0, 6, 1, 2, 3, 4, 5, 6]).unwrap();
        } else {
            f.set_len(len_before_last + 3).unwrap();
        }
        let _ = std::fs::remove_file(recovery::shard_dir(dir.path(), 0).join("checkpoint"));
        let s = LogStore::open(cfg).unwrap();
        let snap = s.snapshot("t", "INBOX").unwrap();
        let expect = if garbage { 5 } else { 4 };
        assert_eq!(snap.messages.len(), expect, "garbage={garbage}");
        for i in 0..expect {
            assert_eq!(
                s.read("t", "INBOX", i as u32 + 1).unwrap(),
                body(i).as_bytes()
            );
        }
        let a = block_on(append_one(&s, "t", "INBOX", "after"));
        assert_eq!(a.uid, expect as u32 + 1);
        assert_eq!(s.read("t", "INBOX", a.uid).unwrap(), b"after");
        s.close();
        let s = LogStore::open(config(dir.path(), 1)).unwrap();
        assert_eq!(s.snapshot("t", "INBOX").unwrap().messages.len(), expect + 1);
        s.close();
        drop(s);
    }
}

#[test]
fn corruption_in_older_segment_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), 1);
    cfg.segment_bytes = 256;
    cfg.checkpoint_bytes = u64::MAX;
    let s = LogStore::open(cfg.clone()).unwrap();
    block_on(async {
        for i in 0..10 {
            append_one(&s, "r", "INBOX", &body(i)).await;
        }
    });
    let d = recovery::shard_dir(dir.path(), 0);
    let segs = segment::list_segments(&d).unwrap();
    assert!(segs.len() > 3, "{segs:?}");
    // Reads span segments.
    for i in 0..10 {
        assert_eq!(
            s.read("r", "INBOX", i + 1).unwrap(),
            body(i as usize).as_bytes()
        );
    }
    s.crash();
    let _ = std::fs::remove_file(d.join("checkpoint"));
    let first = segment::segment_path(&d, segs[1]);
    let mut bytes = std::fs::read(&first).unwrap();
    let n = bytes.len();
    bytes[n - 2] ^= 0xff;
    std::fs::write(&first, bytes).unwrap();
    assert!(matches!(LogStore::open(cfg), Err(StoreError::Corrupt(_))));
}

#[test]
fn checkpoint_bounds_replay() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), 1);
    cfg.checkpoint_bytes = 2048;
    let before;
    {
        let s = LogStore::open(cfg.clone()).unwrap();
        block_on(async {
            for i in 0..40 {
                append_one(&s, "k", "INBOX", &body(i)).await;
            }
            s.store_flags("k", "INBOX", &[3], FlagOp::Add, seen(), None)
                .await
                .unwrap();
        });
        assert!(s.stats().checkpoints > 0);
        before = dump(&s, "k");
        let total = s.stats().records;
        // Crash without the final checkpoint: replay must start at the last periodic one.
        s.crash();
        let s = LogStore::open(cfg.clone()).unwrap();
        assert_eq!(dump(&s, "k"), before);
        let replayed = s.replayed_records();
        assert!(
            replayed > 0 && replayed < total / 2,
            "replayed {replayed} of {total}"
        );
        s.close();
    }
    // A damaged checkpoint falls back to a full replay with the same result.
    let ck = recovery::shard_dir(dir.path(), 0).join("checkpoint");
    let mut bytes = std::fs::read(&ck).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 1;
    std::fs::write(&ck, bytes).unwrap();
    let s = LogStore::open(cfg).unwrap();
    assert_eq!(dump(&s, "k"), before);
    assert!(s.replayed_records() >= 47, "{}", s.replayed_records());
}

#[test]
fn group_commit_shares_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let s = LogStore::open(config(dir.path(), 2)).unwrap();
    // Create the accounts first so the 200 appends are one record each.
    block_on(async {
        for t in 0..4 {
            append_one(&s, &format!("g{t}"), "INBOX", "init").await;
        }
    });
    let base = s.stats();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                block_on(async move {
                    let tasks: Vec<_> = (0..50)
                        .map(|i| {
                            let s = s.clone();
                            monoio::spawn(async move {
                                append_one(&s, &format!("g{t}"), "INBOX", &body(i)).await
                            })
                        })
                        .collect();
                    let mut uids = Vec::new();
                    for t in tasks {
                        uids.push(t.await.uid);
                    }
                    uids
                })
            })
        })
        .collect();
    for t in threads {
        let mut uids = t.join().unwrap();
        uids.sort_unstable();
        uids.dedup();
        assert_eq!(uids.len(), 50);
    }
    let st = s.stats();
    let records = st.records - base.records;
    let fsyncs = st.fsyncs - base.fsyncs;
    assert_eq!(records, 200);
    assert!(
        fsyncs * 4 <= records,
        "{fsyncs} fsyncs for {records} records"
    );
    for t in 0..4 {
        assert_eq!(
            s.snapshot(&format!("g{t}"), "INBOX")
                .unwrap()
                .messages
                .len(),
            51
        );
    }
}

#[test]
fn subscribers_see_changes() {
    let dir = tempfile::tempdir().unwrap();
    let s = LogStore::open(config(dir.path(), 1)).unwrap();
    block_on(async {
        append_one(&s, "sub", "INBOX", "x").await;
        s.create_mailbox("sub", "Tmp").await.unwrap();
        let mut rx = s.subscribe("sub", "INBOX");
        let mut tmp = s.subscribe("sub", "Tmp");
        let a = append_one(&s, "sub", "INBOX", "y").await;
        let f = s
            .store_flags("sub", "INBOX", &[2], FlagOp::Add, seen(), None)
            .await
            .unwrap();
        let e = s.expunge("sub", "INBOX", &[1]).await.unwrap();
        assert_eq!(e, vec![1]);
        s.delete_mailbox("sub", "Tmp").await.unwrap();
        let got: Vec<_> = (0..3).map(|_| next_change(&mut rx)).collect();
        assert_eq!(
            got[0],
            MailboxChange::Appended {
                uid: 2,
                modseq: a.modseq
            }
        );
        assert_eq!(
            got[1],
            MailboxChange::FlagsChanged {
                uid: 2,
                modseq: f[0].2
            }
        );
        assert!(matches!(got[2], MailboxChange::Expunged { uid: 1, .. }));
        assert_eq!(next_change(&mut tmp), MailboxChange::Gone);
        // Dropped receivers are pruned; commits still work.
        drop(rx);
        append_one(&s, "sub", "INBOX", "z").await;
        let mut none = s.subscribe("sub", "Missing");
        assert_eq!(next_change(&mut none), MailboxChange::Gone);
    });
}

fn next_account(rx: &mut AccountChangeReceiver) -> AccountChange {
    for _ in 0..5000 {
        match rx.try_recv() {
            Ok(c) => return c,
            Err(futures_channel::mpsc::TryRecvError::Closed) => panic!("stream closed"),
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(1)),
        }
    }
    panic!("no change within 5s");
}

#[test]
fn account_subscribers_see_every_mailbox_and_name() {
    let dir = tempfile::tempdir().unwrap();
    let s = LogStore::open(config(dir.path(), 1)).unwrap();
    block_on(async {
        append_one(&s, "acc", "INBOX", "x").await;
        // Another account's changes are not heard; the account key ignores case.
        let mut rx = s.subscribe_account("ACC");
        append_one(&s, "other", "INBOX", "x").await;
        let a = append_one(&s, "acc", "INBOX", "y").await;
        let inbox = s.snapshot("acc", "INBOX").unwrap().id;
        assert_eq!(
            next_account(&mut rx),
            AccountChange {
                mailbox: inbox,
                change: MailboxChange::Appended {
                    uid: 2,
                    modseq: a.modseq
                }
            }
        );
        s.create_mailbox("acc", "Tmp").await.unwrap();
        let tmp = s.snapshot("acc", "Tmp").unwrap().id;
        let named = |change| AccountChange {
            mailbox: tmp,
            change: MailboxChange::Named(change),
        };
        assert_eq!(
            next_account(&mut rx),
            named(NameChange::Created("Tmp".into()))
        );
        s.set_subscribed("acc", "Tmp", true).await.unwrap();
        assert_eq!(
            next_account(&mut rx),
            named(NameChange::Subscription {
                name: "Tmp".into(),
                subscribed: true
            })
        );
        s.rename_mailbox("acc", "Tmp", "Tmp2").await.unwrap();
        assert_eq!(next_account(&mut rx).change, MailboxChange::Gone);
        assert_eq!(
            next_account(&mut rx),
            named(NameChange::Renamed {
                from: "Tmp".into(),
                to: "Tmp2".into()
            })
        );
        s.delete_mailbox("acc", "Tmp2").await.unwrap();
        assert_eq!(next_account(&mut rx).change, MailboxChange::Gone);
        assert_eq!(
            next_account(&mut rx),
            named(NameChange::Deleted("Tmp2".into()))
        );
        assert!(rx.try_recv().is_err(), "nothing else");
    });
}

#[test]
fn mailbox_admin_rules() {
    let dir = tempfile::tempdir().unwrap();
    let s = LogStore::open(config(dir.path(), 1)).unwrap();
    block_on(async {
        append_one(&s, "m", "INBOX", &body(1)).await;
        append_one(&s, "m", "INBOX", &body(2)).await;
        s.store_flags("m", "INBOX", &[2], FlagOp::Add, seen(), None)
            .await
            .unwrap();
        assert!(matches!(
            s.delete_mailbox("m", "inbox").await,
            Err(StoreError::NotAllowed(_))
        ));
        assert!(matches!(
            s.create_mailbox("m", "Inbox").await,
            Err(StoreError::MailboxExists)
        ));
        assert!(matches!(
            s.create_mailbox("m", "").await,
            Err(StoreError::NotAllowed(_))
        ));
        let inbox_uv = s.snapshot("m", "INBOX").unwrap().uidvalidity;

        // RENAME INBOX: messages move to the new mailbox (new UIDs), INBOX stays, empty.
        s.rename_mailbox("m", "INBOX", "Old").await.unwrap();
        let old = s.snapshot("m", "Old").unwrap();
        assert_eq!(old.messages.len(), 2);
        assert_eq!(old.messages[1].flags, seen());
        assert_eq!(
            s.read("m", "Old", old.messages[0].uid).unwrap(),
            body(1).as_bytes()
        );
        let inbox = s.snapshot("m", "INBOX").unwrap();
        assert!(inbox.messages.is_empty());
        assert_eq!((inbox.uidvalidity, inbox.uidnext), (inbox_uv, 3));
        assert!(matches!(
            s.rename_mailbox("m", "INBOX", "Old").await,
            Err(StoreError::MailboxExists)
        ));

        // Rename moves children; the names under the old prefix are gone.
        s.create_mailbox("m", "a/b").await.unwrap();
        append_one(&s, "m", "a/b", "child").await;
        s.rename_mailbox("m", "a", "z").await.unwrap();
        let names: Vec<_> = s.list_mailboxes("m").into_iter().map(|m| m.name).collect();
        assert!(
            names.contains(&"z".into()) && names.contains(&"z/b".into()),
            "{names:?}"
        );
        assert!(!names.iter().any(|n| n.starts_with("a")), "{names:?}");
        assert_eq!(s.read("m", "z/b", 1).unwrap(), b"child");
        assert!(matches!(
            s.rename_mailbox("m", "nope", "x").await,
            Err(StoreError::NoSuchMailbox)
        ));

        // Copy duplicates bytes and flags under new UIDs.
        let pairs = s.copy("m", "Old", "Trash", &[1, 2, 50]).await.unwrap();
        assert_eq!(pairs, vec![(1, 1), (2, 2)]);
        assert_eq!(s.read("m", "Trash", 2).unwrap(), body(2).as_bytes());
        assert_eq!(s.snapshot("m", "Trash").unwrap().messages[1].flags, seen());

        // Deleted and re-created mailbox gets a new, larger UIDVALIDITY and fresh UIDs.
        let uv = s.snapshot("m", "Old").unwrap().uidvalidity;
        s.delete_mailbox("m", "Old").await.unwrap();
        assert!(matches!(
            s.snapshot("m", "Old"),
            Err(StoreError::NoSuchMailbox)
        ));
        s.create_mailbox("m", "Old").await.unwrap();
        let again = s.snapshot("m", "Old").unwrap();
        assert!(again.uidvalidity > uv);
        assert_eq!(again.uidnext, 1);
    });
    s.close();
    assert!(matches!(
        block_on(s.create_mailbox("m", "late")),
        Err(StoreError::Closed)
    ));
    // State including renames/deletes survives a full replay.
    let _ = std::fs::remove_file(recovery::shard_dir(dir.path(), 0).join("checkpoint"));
    let s = LogStore::open(config(dir.path(), 1)).unwrap();
    assert_eq!(s.read("m", "z/b", 1).unwrap(), b"child");
    assert!(s.snapshot("m", "Old").unwrap().messages.is_empty());
    assert!(s.snapshot("m", "INBOX").unwrap().messages.is_empty());
}

#[test]
fn small_segments_roll_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), 1);
    cfg.segment_bytes = 300;
    cfg.checkpoint_bytes = 1000;
    let before;
    {
        let s = LogStore::open(cfg.clone()).unwrap();
        block_on(async {
            for i in 0..30 {
                append_one(&s, "seg", "INBOX", &body(i)).await;
            }
            s.copy("seg", "INBOX", "Archive", &[1, 15, 30])
                .await
                .unwrap();
            s.expunge("seg", "INBOX", &[2, 3]).await.unwrap();
        });
        before = dump(&s, "seg");
        s.crash();
    }
    let d = recovery::shard_dir(dir.path(), 0);
    assert!(segment::list_segments(&d).unwrap().len() > 10);
    let s = LogStore::open(cfg.clone()).unwrap();
    assert_eq!(dump(&s, "seg"), before);
    let a = block_on(append_one(&s, "seg", "INBOX", "more"));
    assert_eq!(a.uid, 31);
    drop(s);
    let _ = std::fs::remove_file(d.join("checkpoint"));
    let s = LogStore::open(cfg).unwrap();
    assert_eq!(s.read("seg", "Archive", 3).unwrap(), body(29).as_bytes());
    assert_eq!(s.read("seg", "INBOX", 31).unwrap(), b"more");
}

#[test]
fn failed_request_does_not_disturb_its_batch() {
    let dir = tempfile::tempdir().unwrap();
    let s = LogStore::open(config(dir.path(), 1)).unwrap();
    block_on(async {
        append_one(&s, "b", "INBOX", "first").await;
        let tasks: Vec<_> = (0..30)
            .map(|i| {
                let s = s.clone();
                let mailbox = if i % 3 == 1 { "Missing" } else { "INBOX" };
                monoio::spawn(async move { s.append(vec![msg("b", mailbox, &body(i))]).await })
            })
            .collect();
        let mut ok = 0;
        for (i, t) in tasks.into_iter().enumerate() {
            match t.await {
                Ok(_) => {
                    assert_ne!(i % 3, 1);
                    ok += 1;
                }
                Err(StoreError::NoSuchMailbox) => assert_eq!(i % 3, 1),
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(ok, 20);
        let snap = s.snapshot("b", "INBOX").unwrap();
        assert_eq!(snap.messages.len(), 21);
        assert_eq!(snap.uidnext, 22);
    });
}

#[test]
fn second_open_of_same_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = LogStore::open(config(dir.path(), 1)).unwrap();
    assert!(matches!(
        LogStore::open(config(dir.path(), 1)),
        Err(StoreError::NotAllowed(_))
    ));
    drop(s);
    LogStore::open(config(dir.path(), 1)).unwrap();
}

#[test]
fn shard_count_mismatch_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    LogStore::open(config(dir.path(), 2)).unwrap().close();
    match LogStore::open(config(dir.path(), 3)) {
        Err(StoreError::Corrupt(msg)) => assert!(msg.contains("2 shards"), "{msg}"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    LogStore::open(config(dir.path(), 2)).unwrap();
}

#[test]
fn shard_hash_is_stable() {
    // FNV-1a of fixed input: a changed hash would strand existing accounts in wrong shards.
    assert_eq!(fnv1a(*b"a"), 0xaf63_dc4c_8601_ec8c);
    let dir = tempfile::tempdir().unwrap();
    let s = LogStore::open(config(dir.path(), 4)).unwrap();
    assert_eq!(
        s.shard_of("User@Example.org"),
        s.shard_of("user@example.org")
    );
}

// --- outbound queue -------------------------------------------------------------------------

fn queued(id: &str, rcpts: &[&str], body: &str) -> NewQueuedMessage {
    NewQueuedMessage {
        id: id.into(),
        created: 1_700_000_000,
        envelope: QueuedEnvelope {
            mail_from: "sender@example.org".into(),
            ..Default::default()
        },
        recipients: rcpts.iter().map(|r| QueuedRecipient::new(*r)).collect(),
        bytes: MessageBytes::new(
            b"DKIM-Signature: v=1\r\n".to_vec(),
            bytes::Bytes::copy_from_slice(body.as_bytes()),
        ),
    }
}

fn rcpt_update(id: &str, index: u32, state: RecipientState, reply: &str) -> QueueUpdate {
    QueueUpdate {
        id: id.into(),
        recipients: vec![(
            index,
            RecipientStatus {
                state,
                attempts: 1,
                next_attempt: if state == RecipientState::Deferred {
                    1_700_000_300
                } else {
                    0
                },
                last_reply: reply.into(),
                delay_warned: false,
            },
        )],
        ..Default::default()
    }
}

fn queue_ids(s: &LogStore) -> Vec<String> {
    let mut ids: Vec<String> = (0..s.queue_shards())
        .flat_map(|q| s.queue_list(q))
        .map(|m| m.id)
        .collect();
    ids.sort();
    ids
}

fn queue_config(dir: &Path) -> StoreConfig {
    StoreConfig {
        queue_segment_bytes: 16 << 10,
        ..config(dir, 2)
    }
}

#[test]
fn local_copies_and_queue_entry_commit_together_and_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let s = LogStore::open(config(dir.path(), 2)).unwrap();
    let mut events = s.queue_subscribe(1);
    block_on(async {
        let shared = bytes::Bytes::from_static(b"Subject: both\r\n\r\nhello\r\n");
        let local = vec![NewMessage {
            account: "alice@example.org".into(),
            mailbox: "INBOX".into(),
            bytes: MessageBytes::new(
                b"Delivered-To: alice@example.org\r\n".to_vec(),
                shared.clone(),
            ),
            flags: Flags::default(),
            internal_date: 1,
        }];
        let before = s.stats().batches;
        let appended = s
            .deliver(
                local,
                1,
                vec![queued(
                    "Q1",
                    &["bob@remote.test", "carol@remote.test"],
                    "Subject: both\r\n\r\nhello\r\n",
                )],
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(appended.len(), 1);
        // Alice's shard and the queue shard: at most one batch each.
        assert!(s.stats().batches - before <= 2);
        assert_eq!(
            s.read("alice@example.org", "INBOX", 1).unwrap(),
            b"Delivered-To: alice@example.org\r\nSubject: both\r\n\r\nhello\r\n"
        );
        let m = s.queued(1, "Q1").unwrap();
        assert_eq!(m.recipients.len(), 2);
        assert_eq!(m.recipients[0].status.state, RecipientState::Pending);
        assert_eq!(
            s.queue_bytes(1, "Q1").unwrap(),
            b"DKIM-Signature: v=1\r\nSubject: both\r\n\r\nhello\r\n"
        );
        assert_eq!(s.find_queued("Q1").map(|(q, _)| q), Some(1));
        assert!(s.queued(0, "Q1").is_none());
        // A duplicate id and an update of an unknown message are refused, and change nothing.
        assert!(matches!(
            s.deliver(vec![], 1, vec![queued("Q1", &["x@y.test"], "x")], vec![])
                .await,
            Err(StoreError::NotAllowed(_))
        ));
        assert!(matches!(
            s.deliver(
                vec![],
                1,
                vec![],
                vec![rcpt_update("nope", 0, RecipientState::Delivered, "")]
            )
            .await,
            Err(StoreError::NotAllowed(_))
        ));
        // One recipient delivered, the other deferred.
        s.deliver(
            vec![],
            1,
            vec![],
            vec![
                rcpt_update("Q1", 0, RecipientState::Delivered, "250 2.0.0 ok"),
                rcpt_update("Q1", 1, RecipientState::Deferred, "451 4.3.0 later"),
            ],
        )
        .await
        .unwrap();
    });
    assert_eq!(
        next_queue_event(&mut events),
        QueueEvent::Changed("Q1".into())
    );
    assert_eq!(
        next_queue_event(&mut events),
        QueueEvent::Changed("Q1".into())
    );
    s.crash();
    let s = LogStore::open(config(dir.path(), 2)).unwrap();
    let m = s.queued(1, "Q1").expect("still queued after restart");
    assert_eq!(m.recipients[0].status.state, RecipientState::Delivered);
    assert_eq!(m.recipients[1].status.state, RecipientState::Deferred);
    assert_eq!(m.recipients[1].status.last_reply, "451 4.3.0 later");
    assert_eq!(m.next_attempt(), Some(1_700_000_300));
    // Finishing the last recipient takes the message out of the queue, durably.
    let mut events = s.queue_subscribe(1);
    block_on(s.deliver(
        vec![],
        1,
        vec![],
        vec![rcpt_update("Q1", 1, RecipientState::Failed, "550 5.1.1 no")],
    ))
    .unwrap();
    assert_eq!(next_queue_event(&mut events), QueueEvent::Gone("Q1".into()));
    assert!(s.queued(1, "Q1").is_none());
    s.close();
    let s = LogStore::open(config(dir.path(), 2)).unwrap();
    assert!(queue_ids(&s).is_empty());
}

fn next_queue_event(rx: &mut QueueReceiver) -> QueueEvent {
    for _ in 0..5000 {
        match rx.try_recv() {
            Ok(c) => return c,
            Err(futures_channel::mpsc::TryRecvError::Closed) => panic!("queue events closed"),
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(1)),
        }
    }
    panic!("no queue event within 5s");
}

#[test]
fn spent_queue_segments_are_reclaimed_and_stragglers_copied_forward() {
    let dir = tempfile::tempdir().unwrap();
    let s = LogStore::open(queue_config(dir.path())).unwrap();
    let body = "x".repeat(2000);
    let qdir = recovery::shard_dir(dir.path(), 0);
    block_on(async {
        // ~40 messages of 2 KB in 16 KB segments: several segments.
        for i in 0..40 {
            s.deliver(
                vec![],
                0,
                vec![queued(&format!("M{i:02}"), &["r@remote.test"], &body)],
                vec![],
            )
            .await
            .unwrap();
        }
        assert!(segment::list_log(&qdir, segment::QUEUE_LOG).unwrap().len() >= 4);
        // All but M00 (in the first segment) and M39 (in the tail) are delivered.
        for i in 1..39 {
            s.deliver(
                vec![],
                0,
                vec![],
                vec![rcpt_update(
                    &format!("M{i:02}"),
                    0,
                    RecipientState::Delivered,
                    "250 ok",
                )],
            )
            .await
            .unwrap();
        }
        s.deliver(
            vec![],
            0,
            vec![],
            vec![rcpt_update("M00", 0, RecipientState::Deferred, "421 busy")],
        )
        .await
        .unwrap();
    });
    // The writer reclaims when idle: give it a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while segment::list_log(&qdir, segment::QUEUE_LOG).unwrap().len() > 2
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let left = segment::list_log(&qdir, segment::QUEUE_LOG).unwrap();
    assert!(left.len() <= 2, "segments left: {left:?}");
    let st = s.stats();
    assert!(st.queue_segments_reclaimed >= 2, "{st:?}");
    assert!(st.queue_copied_forward >= 1, "{st:?}");
    // M00 moved forward with its state and bytes intact.
    assert_eq!(queue_ids(&s), vec!["M00".to_string(), "M39".to_string()]);
    let m = s.queued(0, "M00").unwrap();
    assert_eq!(m.recipients[0].status.last_reply, "421 busy");
    let expect = format!("DKIM-Signature: v=1\r\n{body}");
    assert_eq!(s.queue_bytes(0, "M00").unwrap(), expect.as_bytes());
    // After a crash, nothing finished comes back and nothing live is lost.
    s.crash();
    let s = LogStore::open(queue_config(dir.path())).unwrap();
    assert_eq!(queue_ids(&s), vec!["M00".to_string(), "M39".to_string()]);
    assert_eq!(
        s.queued(0, "M00").unwrap().recipients[0].status.state,
        RecipientState::Deferred
    );
    assert_eq!(s.queue_bytes(0, "M00").unwrap(), expect.as_bytes());
}

#[test]
fn torn_queue_tail_is_truncated_and_earlier_entries_kept() {
    let dir = tempfile::tempdir().unwrap();
    let s = LogStore::open(config(dir.path(), 1)).unwrap();
    block_on(async {
        s.deliver(
            vec![],
            0,
            vec![queued("A", &["a@r.test"], "first\r\n")],
            vec![],
        )
        .await
        .unwrap();
        s.deliver(
            vec![],
            0,
            vec![queued("B", &["b@r.test"], "second\r\n")],
            vec![],
        )
        .await
        .unwrap();
    });
    s.crash();
    let qdir = recovery::shard_dir(dir.path(), 0);
    let n = *segment::list_log(&qdir, segment::QUEUE_LOG)
        .unwrap()
        .last()
        .unwrap();
    let path = segment::log_path(&qdir, segment::QUEUE_LOG, n);
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    let s = LogStore::open(config(dir.path(), 1)).unwrap();
    assert_eq!(queue_ids(&s), vec!["A".to_string()]);
    // The log goes on after the cut.
    block_on(s.deliver(
        vec![],
        0,
        vec![queued("C", &["c@r.test"], "third\r\n")],
        vec![],
    ))
    .unwrap();
    s.close();
    let s = LogStore::open(config(dir.path(), 1)).unwrap();
    assert_eq!(queue_ids(&s), vec!["A".to_string(), "C".to_string()]);
}

#[test]
fn mailbox_names_and_count_within_the_configured_limits() {
    use super::names::MailboxLimits;
    let dir = tempfile::tempdir().unwrap();
    // The account's default mailboxes count too: learn how many there are.
    let defaults = {
        let s = LogStore::open(config(dir.path(), 1)).unwrap();
        block_on(append_one(&s, "m", "INBOX", &body(1)));
        s.list_mailboxes("m").len()
    };
    let s = LogStore::open(StoreConfig {
        mailbox_limits: MailboxLimits {
            max_name_bytes: 40,
            max_level_bytes: 10,
            max_depth: 3,
            max_mailboxes: defaults + 3,
        },
        ..config(dir.path(), 1)
    })
    .unwrap();
    let names = |s: &LogStore| {
        let mut v: Vec<String> = s.list_mailboxes("m").into_iter().map(|m| m.name).collect();
        v.sort();
        v
    };
    block_on(async {
        for (name, why) in [
            ("a/b/c/d", "mailbox hierarchy too deep"),
            ("0123456789A", "mailbox name level too long"),
            ("a\u{85}b", "control character in mailbox name"),
            ("a//b", "empty hierarchy level in mailbox name"),
        ] {
            match s.create_mailbox("m", name).await {
                Err(StoreError::NotAllowed(reason)) => assert_eq!(reason, why, "{name:?}"),
                other => panic!("{name:?}: {other:?}"),
            }
        }
        let before = names(&s);
        assert_eq!(before.len(), defaults);
        // Three new mailboxes: a, a/b and a/b/c.
        s.create_mailbox("m", "a/b/c").await.unwrap();
        assert!(matches!(
            s.create_mailbox("m", "d").await,
            Err(StoreError::LimitReached(_))
        ));
        // RENAME INBOX makes a mailbox; an ordinary rename does not.
        assert!(matches!(
            s.rename_mailbox("m", "INBOX", "Old").await,
            Err(StoreError::LimitReached(_))
        ));
        s.rename_mailbox("m", "a", "e").await.unwrap();
        // The children's new names must fit too; then nothing moves.
        let full = names(&s);
        assert!(matches!(
            s.rename_mailbox("m", "e", "x/y").await,
            Err(StoreError::NotAllowed("mailbox hierarchy too deep"))
        ));
        assert_eq!(names(&s), full);
        s.delete_mailbox("m", "e/b/c").await.unwrap();
        // One place free: of five concurrent creates, exactly one gets it.
        let tasks: Vec<_> = (0..5)
            .map(|i| {
                let s = s.clone();
                monoio::spawn(async move { s.create_mailbox("m", &format!("n{i}")).await })
            })
            .collect();
        let mut created = 0;
        for t in tasks {
            match t.await {
                Ok(()) => created += 1,
                Err(StoreError::LimitReached(_)) => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(created, 1);
        assert_eq!(names(&s).len(), defaults + 3);
    });
    // Limits apply to new names only: a store opened with smaller ones keeps what it has.
    let kept = names(&s);
    s.close();
    let s = LogStore::open(StoreConfig {
        mailbox_limits: MailboxLimits {
            max_depth: 1,
            max_mailboxes: 2,
            ..MailboxLimits::DEFAULT
        },
        ..config(dir.path(), 1)
    })
    .unwrap();
    assert_eq!(names(&s), kept);
    block_on(append_one(&s, "m", "e/b", "still writable"));
}

/// A tmpfs of a few megabytes, mounted for one test and unmounted when dropped: the only
/// honest way to see what the store does when the disk fills up. `None`, with the reason
/// printed, where mounting is not allowed (tests not run as root, or in a container).
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(bytes: u64) -> Option<SmallDisk> {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let target = std::ffi::CString::new(dir.path().as_os_str().as_bytes()).unwrap();
        let options = std::ffi::CString::new(format!("size={bytes},mode=0700")).unwrap();
        // SAFETY: every pointer is a NUL-terminated string that outlives the call.
        let rc = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                options.as_ptr().cast(),
            )
        };
        if rc != 0 {
            eprintln!(
                "skipped: cannot mount a {bytes}-byte tmpfs: {}",
                std::io::Error::last_os_error()
            );
            return None;
        }
        Some(SmallDisk { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a ballast file that leaves about `leave` bytes free.
    fn fill_leaving(&self, leave: u64) {
        use std::io::Write;
        let ballast = self.path().join("ballast");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&ballast)
            .unwrap();
        let chunk = vec![0u8; 64 << 10];
        while free_bytes(self.path()) > leave + chunk.len() as u64 {
            f.write_all(&chunk).unwrap();
        }
    }

    fn free_ballast(&self) {
        std::fs::remove_file(self.path().join("ballast")).unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        use std::os::unix::ffi::OsStrExt;
        let target = std::ffi::CString::new(self.dir.path().as_os_str().as_bytes()).unwrap();
        // SAFETY: a NUL-terminated path; MNT_DETACH so a lingering file handle cannot block it.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
}

fn free_bytes(path: &Path) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: statvfs fills the zeroed struct it is given.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statvfs(p.as_ptr(), &mut st) }, 0);
    st.f_bavail as u64 * st.f_frsize as u64
}

#[test]
fn a_full_disk_fails_the_write_and_the_store_resumes_when_space_returns() {
    let Some(disk) = SmallDisk::mount(4 << 20) else {
        return;
    };
    let mut cfg = config(&disk.path().join("store"), 1);
    // Every 40 KiB message needs a new 64 KiB segment, so the disk fills during a roll-over:
    // the case that used to leave the shard refusing every write until a restart.
    cfg.segment_bytes = 64 << 10;
    let big = |i: usize| format!("{}{}", body(i), "x".repeat(40 << 10));
    let s = LogStore::open(cfg.clone()).unwrap();
    let mut acknowledged = Vec::new();
    block_on(async {
        for i in 0..3 {
            acknowledged.push(append_one(&s, "f", "INBOX", &big(i)).await.uid);
        }
        disk.fill_leaving(400 << 10);
        let failure = loop {
            let i = acknowledged.len();
            assert!(i < 100, "the disk never filled up");
            match s.append(vec![msg("f", "INBOX", &big(i))]).await {
                Ok(a) => acknowledged.push(a[0].uid),
                Err(e) => break e,
            }
        };
        assert!(failure.is_out_of_space(), "{failure:?}");
        // Still full: refused again, the same way.
        let again = s.append(vec![msg("f", "INBOX", &big(999))]).await;
        assert!(again.is_err_and(|e| e.is_out_of_space()));
        disk.free_ballast();
        let i = acknowledged.len();
        acknowledged.push(append_one(&s, "f", "INBOX", &big(i)).await.uid);
    });
    let expect: Vec<(u32, Vec<u8>)> = acknowledged
        .iter()
        .enumerate()
        .map(|(i, &uid)| (uid, big(i).into_bytes()))
        .collect();
    let stored = |s: &LogStore| -> Vec<(u32, Vec<u8>)> {
        let snap = s.snapshot("f", "INBOX").unwrap();
        snap.messages
            .iter()
            .map(|m| (m.uid, s.read("f", "INBOX", m.uid).unwrap()))
            .collect()
    };
    assert_eq!(stored(&s), expect);
    // And on disk: a crash now replays exactly the acknowledged messages.
    s.crash();
    let s = LogStore::open(cfg).unwrap();
    assert_eq!(stored(&s), expect);
}

#[test]
fn a_roll_over_undone_after_a_full_disk_leaves_no_sealed_segment_behind() {
    let Some(disk) = SmallDisk::mount(4 << 20) else {
        return;
    };
    let mut cfg = config(&disk.path().join("store"), 1);
    cfg.segment_bytes = 64 << 10;
    let big = |i: usize| format!("{}{}", body(i), "x".repeat(40 << 10));
    let s = LogStore::open(cfg.clone()).unwrap();
    let mut acknowledged = 0;
    block_on(async {
        for i in 0..3 {
            append_one(&s, "g", "INBOX", &big(i)).await;
            acknowledged += 1;
        }
        disk.fill_leaving(400 << 10);
        loop {
            assert!(acknowledged < 100, "the disk never filled up");
            match s.append(vec![msg("g", "INBOX", &big(acknowledged))]).await {
                Ok(_) => acknowledged += 1,
                Err(e) => break assert!(e.is_out_of_space(), "{e:?}"),
            }
        }
    });
    disk.free_ballast();
    // The checkpoint written at close lists the sealed segments. Had the segment the failed
    // batch rolled away from stayed listed as sealed, the checkpoint would not match the disk
    // and this open would replay the whole log (and compaction could pick the tail).
    s.close();
    let s = LogStore::open(cfg).unwrap();
    assert_eq!(s.replayed_records(), 0);
    assert_eq!(
        s.snapshot("g", "INBOX").unwrap().messages.len(),
        acknowledged
    );
    s.close();
}

/// A store written before appends carried an origin (EMAILID, save time) still opens, its
/// messages get ids that survive COPY, restarts, compaction and the checker, and no new message
/// can take one of them.
#[test]
fn messages_stored_before_origins_keep_stable_ids() {
    let dir = tempfile::tempdir().unwrap();
    // Small segments, so that compaction has sealed ones to rewrite.
    let cfg = StoreConfig {
        segment_bytes: 400,
        ..config(dir.path(), 1)
    };
    {
        let s = LogStore::open(cfg.clone()).unwrap();
        block_on(async {
            append_one(&s, "ann", "INBOX", &body(1)).await;
            append_one(&s, "ann", "INBOX", &body(2)).await;
        });
        s.close();
    }
    // Rewrite the log as the previous release wrote it: appends without origin (kind 6).
    assert_eq!(rewrite_as_pre_origin(dir.path()), 2);
    let inbox = store_mailbox_id(dir.path(), "INBOX");
    let ids = |s: &LogStore, mailbox: &str| -> Vec<(u32, EmailId, Option<i64>)> {
        let snap = s.snapshot("ann", mailbox).unwrap();
        snap.messages
            .iter()
            .map(|m| (m.uid, m.email_id, m.saved))
            .collect()
    };
    let legacy = |uid| EmailId {
        mailbox: inbox,
        uid,
    };
    let before_copy = now_unix();
    let expect;
    {
        let s = LogStore::open(cfg.clone()).unwrap();
        assert!(s.replayed_records() > 0);
        assert_eq!(
            ids(&s, "INBOX"),
            vec![(1, legacy(1), None), (2, legacy(2), None)]
        );
        block_on(async {
            s.create_mailbox("ann", "Kept").await.unwrap();
            assert_eq!(
                s.copy("ann", "INBOX", "Kept", &[2]).await.unwrap(),
                vec![(2, 1)]
            );
            append_one(&s, "ann", "INBOX", &body(3)).await;
            // Expunged so that compaction has something to drop.
            s.expunge("ann", "INBOX", &[1]).await.unwrap();
        });
        let kept = ids(&s, "Kept");
        assert_eq!(kept[0].1, legacy(2), "a copy keeps its source's EMAILID");
        let saved = kept[0].2.expect("a copy has a save time");
        assert!(saved >= before_copy && saved <= now_unix(), "{saved}");
        let inbox_now = ids(&s, "INBOX");
        assert_eq!(inbox_now[1].0, 3);
        assert_eq!(
            inbox_now[1].1,
            legacy(3),
            "a new message takes its own (mailbox, uid)"
        );
        expect = (inbox_now, kept);
        block_on(s.compact(Some(0))).unwrap();
        s.close();
    }
    for drop_checkpoint in [false, true] {
        if drop_checkpoint {
            std::fs::remove_file(recovery::shard_dir(dir.path(), 0).join("checkpoint")).unwrap();
        }
        let s = LogStore::open(cfg.clone()).unwrap();
        assert_eq!((ids(&s, "INBOX"), ids(&s, "Kept")), expect);
        s.close();
    }
    let report = check::check(dir.path(), false).unwrap();
    assert!(report.is_clean(), "{}", report.render());
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The store's id of mailbox `name` in the log of the one-shard store at `dir`.
fn store_mailbox_id(dir: &Path, name: &str) -> u64 {
    let shard = recovery::shard_dir(dir, 0);
    let seg = segment::segment_path(&shard, segment::list_segments(&shard).unwrap()[0]);
    let raw = std::fs::read(seg).unwrap();
    let mut pos = 0;
    while pos < raw.len() {
        let (rec, len) = record::decode(&raw[pos..]).unwrap();
        pos += len;
        if let record::Record::MailboxCreate {
            mailbox, name: n, ..
        } = rec
            && n == name
        {
            return mailbox;
        }
    }
    panic!("no mailbox {name}");
}
