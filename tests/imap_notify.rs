//! NOTIFY (RFC 5465) end to end: the real binary over TLS, two sessions of one account.
//! Session A sets NOTIFY for its selected mailbox and for all its mailboxes, then sends
//! nothing; session B appends, flags and expunges in INBOX and in another mailbox, and
//! creates, renames and deletes a mailbox. A must
//! receive exactly the untagged responses NOTIFY asks for, while silent between commands.

mod common;

use std::time::Duration;

use common::*;

const ALICE: &str = "alice@example.test";
const MESSAGE: &str = "From: bob@example.test\r\nSubject: hi\r\n\r\nbody\r\n";

/// The next `n` lines pushed to a silent client, each within the deadline.
fn pushed(c: &mut Client, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| match c.try_line() {
            Ok(Some(line)) => line,
            other => panic!("nothing pushed in time: {other:?}"),
        })
        .collect()
}

/// Nothing more was pushed: a NOOP's answer comes with no untagged response before it.
/// (A stray push already on its way would show up here, before the tagged OK.)
fn nothing_more(c: &mut Client, tag: &str) {
    assert_eq!(
        imap(c, tag, "NOOP"),
        (vec![], format!("{tag} OK NOOP completed"))
    );
}

#[test]
fn notifications_reach_a_silent_client() {
    let server = TestServer::start(&[ALICE], "");
    let mut a = login_tls_as(&server, ALICE);
    let mut b = login_tls_as(&server, ALICE);
    let caps = ok(&mut a, "c", "CAPABILITY");
    assert!(caps[0].contains(" NOTIFY"), "{caps:?}");
    ok(&mut b, "c", "CREATE Lists");
    ok(&mut a, "s", "SELECT INBOX");

    // Errors first: the session survives them.
    assert_eq!(
        imap(&mut a, "e1", "NOTIFY SET (personal (AnnotationChange))"),
        (
            vec![],
            "e1 NO [BADEVENT (MessageNew MessageExpunge FlagChange MailboxName \
             SubscriptionChange)] Unsupported event"
                .to_string()
        )
    );
    let (untagged, status) = imap(&mut a, "e2", "NOTIFY SET (personal (MessageNew))");
    assert!(
        untagged.is_empty() && status.starts_with("e2 BAD "),
        "{status}"
    );

    assert_eq!(
        imap(
            &mut a,
            "n",
            "NOTIFY SET STATUS (selected (MessageNew MessageExpunge FlagChange)) \
             (personal (MessageNew MessageExpunge MailboxName))"
        ),
        (
            vec![
                "* STATUS Archive (MESSAGES 0 UIDNEXT 1 UNSEEN 0)".to_string(),
                "* STATUS Drafts (MESSAGES 0 UIDNEXT 1 UNSEEN 0)".to_string(),
                "* STATUS Junk (MESSAGES 0 UIDNEXT 1 UNSEEN 0)".to_string(),
                "* STATUS Lists (MESSAGES 0 UIDNEXT 1 UNSEEN 0)".to_string(),
                "* STATUS Sent (MESSAGES 0 UIDNEXT 1 UNSEEN 0)".to_string(),
                "* STATUS Trash (MESSAGES 0 UIDNEXT 1 UNSEEN 0)".to_string(),
            ],
            "n OK NOTIFY completed".to_string()
        )
    );
    a.set_read_timeout(Duration::from_secs(10));

    // The selected mailbox: EXISTS, FETCH FLAGS, EXPUNGE, each pushed unasked.
    append_ok(&mut b, "a1", "INBOX", MESSAGE);
    assert_eq!(pushed(&mut a, 2), ["* 1 EXISTS", "* 1 RECENT"]);
    ok(&mut b, "s", "SELECT INBOX");
    ok(&mut b, "f1", "STORE 1 +FLAGS.SILENT (\\Flagged)");
    assert_eq!(
        pushed(&mut a, 1),
        ["* 1 FETCH (FLAGS (\\Flagged \\Recent))"]
    );
    ok(&mut b, "d1", "STORE 1 +FLAGS.SILENT (\\Deleted)");
    assert_eq!(
        pushed(&mut a, 1),
        ["* 1 FETCH (FLAGS (\\Flagged \\Deleted \\Recent))"]
    );
    ok(&mut b, "x1", "EXPUNGE");
    assert_eq!(pushed(&mut a, 1), ["* 1 EXPUNGE"]);

    // Another mailbox: a STATUS per new or expunged message, none for its flag change
    // (FlagChange was not asked for `personal`).
    append_ok(&mut b, "a2", "Lists", MESSAGE);
    assert_eq!(
        pushed(&mut a, 1),
        ["* STATUS Lists (MESSAGES 1 UIDNEXT 2 UNSEEN 1)"]
    );
    ok(&mut b, "s2", "SELECT Lists");
    ok(&mut b, "f2", "STORE 1 +FLAGS.SILENT (\\Seen \\Deleted)");
    ok(&mut b, "x2", "EXPUNGE");
    assert_eq!(
        pushed(&mut a, 1),
        ["* STATUS Lists (MESSAGES 0 UIDNEXT 2 UNSEEN 0)"]
    );

    // MailboxName: a LIST for a mailbox another session created, renamed, deleted.
    ok(&mut b, "c2", "CREATE Later");
    assert_eq!(pushed(&mut a, 1), ["* LIST () \"/\" Later"]);
    ok(&mut b, "r2", "RENAME Later Sooner");
    assert_eq!(
        pushed(&mut a, 1),
        ["* LIST () \"/\" Sooner (\"OLDNAME\" (Later))"]
    );
    ok(&mut b, "d2", "DELETE Sooner");
    assert_eq!(pushed(&mut a, 1), ["* LIST (\\NonExistent) \"/\" Sooner"]);
    nothing_more(&mut a, "q1");

    // In IDLE, NOTIFY decides too: another mailbox's change comes as STATUS.
    a.send("i IDLE\r\n");
    assert_eq!(a.line().unwrap(), "+ idling");
    append_ok(&mut b, "a5", "Lists", MESSAGE);
    assert_eq!(
        pushed(&mut a, 1),
        ["* STATUS Lists (MESSAGES 1 UIDNEXT 3 UNSEEN 1)"]
    );
    a.send("DONE\r\n");
    assert_eq!(
        collect(&mut a, "i"),
        (vec![], "i OK IDLE terminated".to_string())
    );

    // NOTIFY NONE: nothing is pushed any more; the next NOOP reports the selected mailbox as
    // without NOTIFY (and nothing about the others).
    ok(&mut a, "n2", "NOTIFY NONE");
    append_ok(&mut b, "a3", "Lists", MESSAGE);
    ok(&mut b, "c3", "CREATE Unreported");
    append_ok(&mut b, "a4", "INBOX", MESSAGE);
    // B's INBOX append is durable, and A's NOOP re-reads the mailbox from the store.
    assert_eq!(
        imap(&mut a, "q2", "NOOP"),
        (
            vec!["* 1 EXISTS".to_string(), "* 1 RECENT".to_string()],
            "q2 OK NOOP completed".to_string()
        )
    );
    ok(&mut a, "o", "LOGOUT");
}
