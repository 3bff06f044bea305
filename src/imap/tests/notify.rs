//! NOTIFY (RFC 5465) through the session and the store: which filter decides for a mailbox,
//! the STATUS reports for other mailboxes, `selected-delayed`, and the refused forms. The
//! driver's part (pushing between commands) is in `tests/imap_notify.rs`.

use super::*;
use crate::store::AccountChange;

/// Waits for `n` account changes, then writes what NOTIFY reports for them, as the driver's
/// pusher does.
async fn account_push(c: &mut Client, n: usize) -> String {
    let mut rx =
        c.s.take_account_changes()
            .expect("watching other mailboxes");
    let mut changes: Vec<AccountChange> = Vec::new();
    while changes.len() < n {
        let change = monoio::time::timeout(std::time::Duration::from_secs(5), rx.recv())
            .await
            .expect("a change notification")
            .unwrap();
        changes.push(change);
    }
    assert!(rx.try_recv().is_err(), "more changes than expected");
    c.s.restore_account_changes(rx);
    let mut out = Vec::new();
    c.s.notify_update(&c.store, false, &changes, &mut out);
    String::from_utf8(out).unwrap()
}

/// Waits for a change of the selected mailbox, then writes what NOTIFY reports.
async fn selected_push(c: &mut Client) -> String {
    c.settle().await;
    let mut out = Vec::new();
    c.s.notify_update(&c.store, true, &[], &mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn the_first_filter_naming_a_mailbox_decides() {
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let store = open_store(dir.path());
        deliver(&store, "INBOX", "one").await;
        let mut a = Client::login(&store).await;
        let mut b = Client::login(&store).await;
        for m in ["Lists", "Lists/Rust", "Other", "Unwatched"] {
            assert!(b.send(format!("c CREATE {m}\r\n")).await.contains("c OK"));
        }
        assert!(b.send("s SUBSCRIBE Other\r\n").await.contains("s OK"));
        let out = a
            .send(
                "n NOTIFY SET (mailboxes Lists NONE) (subtree Lists (MessageNew MessageExpunge)) \
                 (subscribed (MessageNew MessageExpunge FlagChange)) \
                 (inboxes (MessageExpunge MessageNew))\r\n",
            )
            .await;
        assert_eq!(out, "n OK NOTIFY completed\r\n");

        // (The default mailboxes are created subscribed; `Unwatched` is in no filter.)
        for m in ["Lists", "Lists/Rust", "Other", "Unwatched", "INBOX"] {
            deliver(&store, m, "two").await;
        }
        assert_eq!(
            account_push(&mut a, 5).await,
            "* STATUS Lists/Rust (MESSAGES 1 UIDNEXT 2 UNSEEN 1)\r\n\
             * STATUS Other (MESSAGES 1 UIDNEXT 2 UNSEEN 1)\r\n\
             * STATUS INBOX (MESSAGES 2 UIDNEXT 3 UNSEEN 2)\r\n"
        );

        // FlagChange only where it was asked for (`subscribed`, not `subtree`).
        for m in ["Lists/Rust", "Other"] {
            assert!(b.send(format!("s SELECT {m}\r\n")).await.contains("s OK"));
            let out = b.send("f STORE 1 +FLAGS.SILENT (\\Seen)\r\n").await;
            assert!(out.contains("f OK"), "{out}");
        }
        assert_eq!(
            account_push(&mut a, 2).await,
            "* STATUS Other (MESSAGES 1 UIDNEXT 2 UNSEEN 0)\r\n"
        );

        // NOTIFY SET STATUS reports the watched mailboxes at once, with HIGHESTMODSEQ once
        // CONDSTORE is on; NONE stops the subscription.
        assert!(a.send("e ENABLE CONDSTORE\r\n").await.contains("e OK"));
        let out = a
            .send("n2 NOTIFY SET STATUS (subtree Lists (MessageNew MessageExpunge))\r\n")
            .await;
        let modseq = |m: &str| store.snapshot("alice", m).unwrap().highest_modseq;
        assert_eq!(
            out,
            format!(
                "* STATUS Lists (MESSAGES 1 UIDNEXT 2 UNSEEN 1 HIGHESTMODSEQ {})\r\n\
                 * STATUS Lists/Rust (MESSAGES 1 UIDNEXT 2 UNSEEN 0 HIGHESTMODSEQ {})\r\n\
                 n2 OK NOTIFY completed\r\n",
                modseq("Lists"),
                modseq("Lists/Rust")
            )
        );
        assert_eq!(
            a.send("n3 NOTIFY NONE\r\n").await,
            "n3 OK NOTIFY completed\r\n"
        );
        assert!(a.s.take_account_changes().is_none());
        assert!(!a.s.notifying());
    });
}

#[test]
fn selected_delayed_keeps_expunges_for_a_command() {
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let store = open_store(dir.path());
        deliver(&store, "INBOX", "one").await;
        deliver(&store, "INBOX", "two").await;
        let mut a = Client::login(&store).await;
        let mut b = Client::login(&store).await;
        assert!(a.send("s SELECT INBOX\r\n").await.contains("s OK"));
        assert!(b.send("s SELECT INBOX\r\n").await.contains("s OK"));
        let out = a
            .send("n NOTIFY SET (selected-delayed (MessageNew MessageExpunge FlagChange))\r\n")
            .await;
        assert_eq!(out, "n OK NOTIFY completed\r\n");
        // Nothing watches other mailboxes: no account subscription is held.
        assert!(a.s.take_account_changes().is_none());

        let out = b
            .send("d UID STORE 1 +FLAGS.SILENT (\\Deleted)\r\nx UID EXPUNGE 1\r\n")
            .await;
        assert!(out.contains("x OK"), "{out}");
        deliver(&store, "INBOX", "three").await;
        // The new message is pushed; the expunge waits.
        assert_eq!(selected_push(&mut a).await, "* 3 EXISTS\r\n* 3 RECENT\r\n");
        assert_eq!(
            a.send("o NOOP\r\n").await,
            "* 1 EXPUNGE\r\no OK NOOP completed\r\n"
        );

        // `selected`: the expunge is pushed at once.
        let out = a
            .send("n2 NOTIFY SET (selected (MessageNew MessageExpunge))\r\n")
            .await;
        assert_eq!(out, "n2 OK NOTIFY completed\r\n");
        let out = b
            .send("d2 UID STORE 2 +FLAGS.SILENT (\\Deleted)\r\nx2 UID EXPUNGE 2\r\n")
            .await;
        assert!(out.contains("x2 OK"), "{out}");
        assert_eq!(selected_push(&mut a).await, "* 1 EXPUNGE\r\n");

        // `selected NONE`: the selected mailbox's changes are not pushed (a command reports them).
        let out = a.send("n3 NOTIFY SET (selected NONE)\r\n").await;
        assert_eq!(out, "n3 OK NOTIFY completed\r\n");
        deliver(&store, "INBOX", "four").await;
        assert_eq!(selected_push(&mut a).await, "");
        assert_eq!(
            a.send("o2 NOOP\r\n").await,
            "* 2 EXISTS\r\n* 2 RECENT\r\no2 OK NOOP completed\r\n"
        );
    });
}

#[test]
fn refused_forms_leave_the_session_usable() {
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let store = open_store(dir.path());
        deliver(&store, "INBOX", "one").await;
        let mut c = Client::unauthenticated(&store, ImapConfig::default());
        assert_eq!(
            c.send("a NOTIFY NONE\r\n").await,
            "a BAD Not authenticated\r\n"
        );
        assert!(c.send("L LOGIN alice pw\r\n").await.contains("L OK"));
        assert_eq!(
            c.send("b NOTIFY SET (personal (MessageNew MessageExpunge MailboxMetadata))\r\n")
                .await,
            "b NO [BADEVENT (MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange)] \
             Unsupported event\r\n"
        );
        assert_eq!(
            c.send("c NOTIFY SET (selected (MessageNew (UID) MessageExpunge))\r\n")
                .await,
            "c NO [CANNOT] MessageNew with fetch attributes is not supported\r\n"
        );
        assert_eq!(
            c.send("d NOTIFY SET (inboxes (MessageExpunge))\r\n").await,
            "d BAD MessageNew and MessageExpunge must be requested together\r\n"
        );
        assert_eq!(
            c.send("e NOTIFY SET (selected NONE) (selected NONE)\r\n")
                .await,
            "e BAD The selected mailbox is named twice\r\n"
        );
        assert_eq!(
            c.send("f NOTIFY\r\n").await,
            "f BAD Expected NOTIFY SET or NOTIFY NONE\r\n"
        );
        // None of them took effect.
        assert!(!c.s.notifying());
        assert_eq!(c.send("g NOOP\r\n").await, "g OK NOOP completed\r\n");
    });
}

#[test]
fn mailbox_names_and_subscriptions_as_list() {
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let store = open_store(dir.path());
        deliver(&store, "INBOX", "one").await;
        let mut a = Client::login(&store).await;
        let mut b = Client::login(&store).await;
        let out = a
            .send("n NOTIFY SET (personal (MailboxName SubscriptionChange))\r\n")
            .await;
        assert_eq!(out, "n OK NOTIFY completed\r\n");

        // CREATE makes the missing parent too.
        assert!(b.send("c CREATE Work/Jobs\r\n").await.contains("c OK"));
        assert_eq!(
            account_push(&mut a, 2).await,
            "* LIST () \"/\" Work\r\n* LIST () \"/\" Work/Jobs\r\n"
        );
        // RENAME moves the children along: each move is reported with its old name (the
        // store also tells each mailbox's own watchers it is gone: 2 events per move).
        assert!(b.send("r RENAME Work Play\r\n").await.contains("r OK"));
        assert_eq!(
            account_push(&mut a, 4).await,
            "* LIST () \"/\" Play (\"OLDNAME\" (Work))\r\n\
             * LIST () \"/\" Play/Jobs (\"OLDNAME\" (Work/Jobs))\r\n"
        );
        assert!(b.send("s SUBSCRIBE Play\r\n").await.contains("s OK"));
        assert!(b.send("s2 SUBSCRIBE Ghost\r\n").await.contains("s2 OK"));
        assert!(b.send("u UNSUBSCRIBE Play\r\n").await.contains("u OK"));
        assert_eq!(
            account_push(&mut a, 3).await,
            "* LIST (\\Subscribed) \"/\" Play\r\n\
             * LIST (\\Subscribed) \"/\" Ghost\r\n\
             * LIST () \"/\" Play\r\n"
        );
        assert!(b.send("d DELETE Play/Jobs\r\n").await.contains("d OK"));
        assert_eq!(
            account_push(&mut a, 2).await,
            "* LIST (\\NonExistent) \"/\" Play/Jobs\r\n"
        );

        // A narrower filter: only names under Play, and no subscription events.
        let out = a
            .send("n2 NOTIFY SET (subtree Play (MailboxName))\r\n")
            .await;
        assert_eq!(out, "n2 OK NOTIFY completed\r\n");
        assert!(b.send("c2 CREATE Other\r\n").await.contains("c2 OK"));
        assert!(b.send("s3 SUBSCRIBE Play\r\n").await.contains("s3 OK"));
        assert!(b.send("r2 RENAME Play Gone\r\n").await.contains("r2 OK"));
        assert_eq!(
            account_push(&mut a, 4).await,
            "* LIST () \"/\" Gone (\"OLDNAME\" (Play))\r\n"
        );
    });
}
