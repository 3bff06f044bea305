//! REPLACE / UID REPLACE (RFC 8508) through the session and the store: the untagged APPENDUID,
//! EXISTS and EXPUNGE (VANISHED under QRESYNC) in the order the RFC shows, another mailbox as
//! target, and the refusals that must leave the old message in place.

use super::*;

fn literal(tag: &str, command: &str, message: &str) -> String {
    format!("{tag} {command} {{{}+}}\r\n{message}\r\n", message.len())
}

#[test]
fn replace_appends_then_expunges_the_old_message() {
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let store = open_store(dir.path());
        deliver(&store, "INBOX", "one").await;
        deliver(&store, "INBOX", "two").await;
        let mut c = Client::login(&store).await;
        c.send("e ENABLE IMAP4rev2\r\ns SELECT INBOX\r\n").await;
        let inbox = store.snapshot("alice", "INBOX").unwrap().uidvalidity;
        let drafts = store.snapshot("alice", "Drafts").unwrap().uidvalidity;
        let draft = "Subject: draft v2\r\n\r\nmore text";
        assert_eq!(
            c.send(literal("r1", "REPLACE 1 INBOX (\\Draft)", draft))
                .await,
            format!(
                "* OK [APPENDUID {inbox} 3] Replacement Message ready\r\n* 3 EXISTS\r\n\
* 1 EXPUNGE\r\nr1 OK REPLACE completed\r\n"
            )
        );
        // Into another mailbox: no EXISTS here, the old message goes all the same.
        assert_eq!(
            c.send(literal("r2", "UID REPLACE 2 Drafts", draft)).await,
            format!(
                "* OK [APPENDUID {drafts} 1] Replacement Message ready\r\n* 1 EXPUNGE\r\n\
r2 OK REPLACE completed\r\n"
            )
        );
        assert_eq!(
            c.send("f FETCH 1:* (UID FLAGS RFC822.SIZE)\r\n").await,
            format!(
                "* 1 FETCH (UID 3 FLAGS (\\Draft) RFC822.SIZE {})\r\nf OK FETCH completed\r\n",
                draft.len()
            )
        );
        // Refusals leave everything as it was.
        let out = c
            .send(
                literal("b1", "REPLACE 2 INBOX", draft)
                    + &literal("b2", "UID REPLACE 1 INBOX", draft)
                    + &literal("b3", "REPLACE 1 Nowhere", draft)
                    + "b4 REPLACE 1 INBOX {0+}\r\n\r\n"
                    + "b5 REPLACE x INBOX {1+}\r\nx\r\n",
            )
            .await;
        assert_eq!(
            out,
            "b1 BAD Invalid message sequence number\r\nb2 NO No such message\r\n\
b3 NO [TRYCREATE] No such mailbox\r\nb4 NO Empty message\r\nb5 BAD Invalid message number\r\n"
        );
        assert_eq!(
            c.send("s2 STATUS INBOX (MESSAGES UIDNEXT)\r\ns3 STATUS Drafts (MESSAGES)\r\n")
                .await,
            "* STATUS INBOX (MESSAGES 1 UIDNEXT 4)\r\ns2 OK STATUS completed\r\n\
* STATUS Drafts (MESSAGES 1)\r\ns3 OK STATUS completed\r\n"
        );
        // Read-only and unselected: refused before the literal is stored anywhere.
        assert_eq!(
            c.send("x EXAMINE INBOX\r\n".to_string() + &literal("b6", "REPLACE 1 Drafts", draft))
                .await
                .rsplit_once("x OK")
                .map(|(_, rest)| rest.to_string())
                .unwrap(),
            " [READ-ONLY] EXAMINE completed\r\nb6 NO [READ-ONLY] Mailbox is read-only\r\n"
        );
        assert_eq!(
            c.send("u UNSELECT\r\n".to_string() + &literal("b7", "REPLACE 1 Drafts", draft))
                .await,
            "u OK UNSELECT completed\r\nb7 BAD No mailbox selected\r\n"
        );
        assert_eq!(
            c.send("s4 STATUS Drafts (MESSAGES)\r\n").await,
            "* STATUS Drafts (MESSAGES 1)\r\ns4 OK STATUS completed\r\n"
        );
    });
}

#[test]
fn replace_reports_vanished_under_qresync() {
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let store = open_store(dir.path());
        deliver(&store, "INBOX", "one").await;
        let mut c = Client::login(&store).await;
        c.send("e ENABLE QRESYNC IMAP4rev2\r\ns SELECT INBOX\r\n")
            .await;
        let inbox = store.snapshot("alice", "INBOX").unwrap().uidvalidity;
        assert_eq!(
            c.send(literal("r", "UID REPLACE 1 INBOX", "Subject: v2\r\n\r\nx"))
                .await,
            format!(
                "* OK [APPENDUID {inbox} 2] Replacement Message ready\r\n* 2 EXISTS\r\n\
* VANISHED 1\r\nr OK REPLACE completed\r\n"
            )
        );
    });
}
