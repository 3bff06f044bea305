//! CONTEXT=SEARCH and CONTEXT=SORT (RFC 5267 §4) end to end: the real binary over TLS, two
//! sessions on one mailbox. One keeps live SEARCH and SORT results (`RETURN (UPDATE)`), the
//! other appends, flags and expunges; the first sees exactly the ADDTO / REMOVEFROM it should
//! at its next NOOP or during IDLE.

mod common;

use std::time::{Duration, Instant};

use common::*;

const ALICE: &str = "alice@example.test";

fn append(c: &mut Client, tag: &str, date: &str, subject: &str) {
    let message = format!("From: bob@example.test\r\nSubject: {subject}\r\n\r\nbody\r\n");
    c.send(&format!(
        "{tag} APPEND INBOX \"{date}\" {{{}+}}\r\n{message}\r\n",
        message.len()
    ));
    let (_, status) = collect(c, tag);
    assert!(status.starts_with(&format!("{tag} OK")), "{status}");
}

/// NOOP until the other session's change has reached this one (the store notifies other
/// sessions just after answering the writer), returning the untagged responses of the first
/// NOOP that has any: the view is re-read from the store then, so they are the whole change.
fn noop_until_changed(c: &mut Client) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let untagged = ok(c, "n", "NOOP");
        if !untagged.is_empty() {
            return untagged;
        }
        assert!(Instant::now() < deadline, "no change reported");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn live_results_follow_another_session() {
    let server = TestServer::start(&[ALICE], "[limits]\nimap_max_update_contexts = 2\n");
    let mut a = login_tls_as(&server, ALICE);
    let mut b = login_tls_as(&server, ALICE);
    let caps = ok(&mut a, "c", "CAPABILITY");
    assert!(caps[0].contains(" ESORT ") && caps[0].contains(" CONTEXT=SEARCH CONTEXT=SORT "));
    // UIDs 1..3, arrival order 1, 3, 2.
    append(&mut b, "m1", "01-Jan-2024 09:00:00 +0000", "one");
    append(&mut b, "m2", "03-Jan-2024 09:00:00 +0000", "two");
    append(&mut b, "m3", "02-Jan-2024 09:00:00 +0000", "three");
    ok(&mut a, "e", "ENABLE IMAP4rev2");
    ok(&mut a, "s", "SELECT INBOX");
    ok(&mut b, "s", "SELECT INBOX");

    assert_eq!(
        imap(&mut a, "S1", "UID SEARCH RETURN (UPDATE) UNSEEN"),
        (
            vec!["* ESEARCH (TAG \"S1\") UID ALL 1:3".to_string()],
            "S1 OK SEARCH completed".to_string()
        )
    );
    assert_eq!(
        imap(
            &mut a,
            "S2",
            "SORT RETURN (UPDATE PARTIAL 1:2) (ARRIVAL) UTF-8 UNSEEN"
        ),
        (
            vec!["* ESEARCH (TAG \"S2\") PARTIAL (1:2 1,3)".to_string()],
            "S2 OK SORT completed".to_string()
        )
    );
    // Over the cap of two: NOUPDATE, and the result all the same.
    assert_eq!(
        imap(&mut a, "S3", "SEARCH RETURN (UPDATE COUNT) ALL"),
        (
            vec![
                "* NO [NOUPDATE \"S3\"] Too many contexts (at most 2 per session)".to_string(),
                "* ESEARCH (TAG \"S3\") COUNT 3".to_string()
            ],
            "S3 OK SEARCH completed".to_string()
        )
    );

    // A flag change takes UID 3 (arrival position 2) out.
    ok(&mut b, "f1", "UID STORE 3 +FLAGS (\\Seen)");
    assert_eq!(
        noop_until_changed(&mut a),
        [
            "* 3 FETCH (FLAGS (\\Seen))",
            "* ESEARCH (TAG \"S1\") UID REMOVEFROM (0 3)",
            "* ESEARCH (TAG \"S2\") REMOVEFROM (2 3)",
        ]
    );

    // A new message, seen during IDLE: ADDTO after EXISTS. Arrival Jan 2 12:00 puts it second.
    a.send("i IDLE\r\n");
    assert_eq!(a.line().unwrap(), "+ idling");
    append(&mut b, "m4", "02-Jan-2024 12:00:00 +0000", "four");
    let pushed: Vec<String> = (0..3).map(|_| a.line().unwrap()).collect();
    assert_eq!(
        pushed,
        [
            "* 4 EXISTS",
            "* ESEARCH (TAG \"S1\") UID ADDTO (0 4)",
            "* ESEARCH (TAG \"S2\") ADDTO (2 4)",
        ]
    );
    a.send("DONE\r\n");
    assert_eq!(
        collect(&mut a, "i"),
        (vec![], "i OK IDLE terminated".to_string())
    );

    // An expunge: REMOVEFROM first, while message 1 still has its number, then EXPUNGE.
    ok(&mut b, "f2", "UID STORE 1 +FLAGS.SILENT (\\Deleted)");
    ok(&mut b, "x", "EXPUNGE");
    let untagged = noop_until_changed(&mut a);
    assert_eq!(
        untagged,
        [
            "* ESEARCH (TAG \"S1\") UID REMOVEFROM (0 1)",
            "* ESEARCH (TAG \"S2\") REMOVEFROM (1 1)",
            "* 1 EXPUNGE",
        ]
    );

    // After CANCELUPDATE only the other context is updated; the tag of a live one is refused.
    ok(&mut a, "c1", "CANCELUPDATE \"S2\"");
    let (_, status) = imap(&mut a, "S1", "SEARCH RETURN (UPDATE) ALL");
    assert_eq!(status, "S1 BAD Tag reuse");
    // A flag change that leaves UID 2 matching says nothing about it.
    ok(&mut b, "f3", "UID STORE 2 +FLAGS (\\Flagged)");
    ok(&mut b, "f4", "UID STORE 3 -FLAGS (\\Seen)");
    let untagged = noop_until_changed(&mut a);
    assert_eq!(
        untagged,
        [
            "* 1 FETCH (FLAGS (\\Flagged))",
            "* 2 FETCH (FLAGS ())",
            "* ESEARCH (TAG \"S1\") UID ADDTO (0 3)",
        ]
    );

    // The selection ends the contexts: nothing more after SELECT.
    let (_, status) = imap(&mut a, "c2", "CANCELUPDATE \"S2\"");
    assert_eq!(status, "c2 NO No update context for S2");
    ok(&mut a, "s2", "SELECT INBOX");
    append(&mut b, "m5", "04-Jan-2024 09:00:00 +0000", "five");
    assert_eq!(noop_until_changed(&mut a), ["* 4 EXISTS"]);
    let (_, status) = imap(&mut a, "c3", "CANCELUPDATE \"S1\"");
    assert_eq!(status, "c3 NO No update context for S1");
}
