//! OBJECTID (RFC 8474) and SAVEDATE (RFC 8514) through the session and the store: MAILBOXID in
//! SELECT, CREATE, STATUS and LIST RETURN STATUS, kept by RENAME; EMAILID kept by COPY and
//! MOVE; THREADID NIL; SAVEDATE; the SEARCH keys; refused forms.

use super::*;

fn meta(store: &LogStore, mailbox: &str, uid: u32) -> crate::store::MessageMeta {
    let snap = store.snapshot("alice", mailbox).unwrap();
    snap.messages.into_iter().find(|m| m.uid == uid).unwrap()
}

fn email_id(store: &LogStore, mailbox: &str, uid: u32) -> String {
    crate::imap::objectid::email_id(meta(store, mailbox, uid).email_id)
}

fn save_date(store: &LogStore, mailbox: &str, uid: u32) -> String {
    let mut out = Vec::new();
    crate::imap::savedate::write_save_date(&mut out, &meta(store, mailbox, uid));
    String::from_utf8(out).unwrap()
}

#[test]
fn mailboxid_in_select_create_status_and_list_survives_rename() {
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let store = open_store(dir.path());
        deliver(&store, "INBOX", "one").await;
        let mut c = Client::login(&store).await;
        let snap = store.snapshot("alice", "INBOX").unwrap();
        let inbox = mailbox_id(&store, "INBOX");
        assert_eq!(
            c.send("s EXAMINE INBOX\r\n").await,
            format!(
                "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n\
* OK [PERMANENTFLAGS ()] Read-only mailbox\r\n* 1 EXISTS\r\n* 1 RECENT\r\n\
* OK [UNSEEN 1] First unseen\r\n* OK [UIDVALIDITY {}] UIDs valid\r\n\
* OK [UIDNEXT 2] Predicted next UID\r\n* OK [MAILBOXID ({inbox})] Ok\r\n\
* OK [HIGHESTMODSEQ {}] Highest\r\ns OK [READ-ONLY] EXAMINE completed\r\n",
                snap.uidvalidity, snap.highest_modseq
            )
        );
        let out = c.send("a CREATE Projects\r\n").await;
        let id = mailbox_id(&store, "Projects");
        assert_eq!(out, format!("a OK [MAILBOXID ({id})] CREATE completed\r\n"));
        assert_ne!(id, inbox);
        assert_eq!(
            c.send(
                "b STATUS Projects (MAILBOXID)\r\nc STATUS INBOX (MESSAGES mailboxid UIDNEXT)\r\n"
            )
            .await,
            format!(
                "* STATUS Projects (MAILBOXID ({id}))\r\nb OK STATUS completed\r\n\
* STATUS INBOX (MESSAGES 1 UIDNEXT 2 MAILBOXID ({inbox}))\r\nc OK STATUS completed\r\n"
            )
        );
        // RENAME keeps the id; the name's new mailbox would get another one.
        assert_eq!(
            c.send(
                "d RENAME Projects Archive/Projects\r\n\
e LIST \"\" Archive/Projects RETURN (STATUS (MAILBOXID MESSAGES))\r\n"
            )
            .await,
            format!(
                "d OK RENAME completed\r\n\
* LIST (\\HasNoChildren) \"/\" Archive/Projects\r\n\
* STATUS Archive/Projects (MAILBOXID ({id}) MESSAGES 0)\r\ne OK LIST completed\r\n"
            )
        );
        let out = c.send("f CREATE Projects\r\n").await;
        let again = mailbox_id(&store, "Projects");
        assert_eq!(
            out,
            format!("f OK [MAILBOXID ({again})] CREATE completed\r\n")
        );
        assert_ne!(again, id, "a MAILBOXID is never reused");
        assert_eq!(
            c.send("g STATUS Projects (MAILBOXID\r\nh STATUS Nope (MAILBOXID)\r\ni NOOP\r\n")
                .await,
            "g BAD Unbalanced parentheses\r\nh NO [NONEXISTENT] No such mailbox\r\n\
i OK NOOP completed\r\n"
        );
    });
}

#[test]
fn emailid_threadid_and_savedate_fetch_and_search() {
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let store = open_store(dir.path());
        deliver(&store, "INBOX", "one").await;
        deliver(&store, "INBOX", "two").await;
        store.create_mailbox("alice", "Kept").await.unwrap();
        let mut c = Client::login(&store).await;
        c.send("s SELECT INBOX\r\n").await;
        let (e1, e2) = (email_id(&store, "INBOX", 1), email_id(&store, "INBOX", 2));
        assert_ne!(e1, e2);
        assert_eq!(
            c.send("a FETCH 1:2 (EMAILID THREADID)\r\n").await,
            format!(
                "* 1 FETCH (EMAILID ({e1}) THREADID NIL)\r\n\
* 2 FETCH (EMAILID ({e2}) THREADID NIL)\r\na OK FETCH completed\r\n"
            )
        );
        assert_eq!(
            c.send("b UID FETCH 2 (FLAGS SAVEDATE)\r\nc FETCH 1 EMAILID\r\n")
                .await,
            format!(
                "* 2 FETCH (UID 2 FLAGS (\\Recent) {})\r\nb OK FETCH completed\r\n\
* 1 FETCH (EMAILID ({e1}))\r\nc OK FETCH completed\r\n",
                save_date(&store, "INBOX", 2)
            )
        );
        // COPY and MOVE keep the EMAILID; the copy's save date is its own.
        assert_eq!(
            c.send("d COPY 1 Kept\r\ne MOVE 2 Kept\r\n").await,
            format!(
                "d OK [COPYUID {v} 1 1] COPY completed\r\n* OK [COPYUID {v} 2 2] Moved\r\n\
* 2 EXPUNGE\r\ne OK MOVE completed\r\n",
                v = store.snapshot("alice", "Kept").unwrap().uidvalidity
            )
        );
        assert_eq!(email_id(&store, "Kept", 1), e1);
        assert_eq!(email_id(&store, "Kept", 2), e2);
        assert!(meta(&store, "Kept", 1).saved >= meta(&store, "INBOX", 1).saved);
        c.send("f SELECT Kept\r\n").await;
        assert_eq!(
            c.send("g FETCH 1:2 (EMAILID SAVEDATE)\r\n").await,
            format!(
                "* 1 FETCH (EMAILID ({e1}) {})\r\n* 2 FETCH (EMAILID ({e2}) {})\r\n\
g OK FETCH completed\r\n",
                save_date(&store, "Kept", 1),
                save_date(&store, "Kept", 2)
            )
        );
        assert_eq!(
            c.send(format!(
                "h SEARCH EMAILID {e2}\r\ni UID SEARCH OR EMAILID {e1} THREADID T1\r\n\
j SEARCH THREADID T1\r\nk SEARCH SAVEDATESUPPORTED SAVEDSINCE 1-Jan-2000\r\n\
l SEARCH SAVEDBEFORE 1-Jan-2000\r\nm SEARCH NOT SAVEDON \"1-Jan-2000\"\r\n"
            ))
            .await,
            "* SEARCH 2\r\nh OK SEARCH completed\r\n* SEARCH 1\r\ni OK SEARCH completed\r\n\
* SEARCH\r\nj OK SEARCH completed\r\n* SEARCH 1 2\r\nk OK SEARCH completed\r\n\
* SEARCH\r\nl OK SEARCH completed\r\n* SEARCH 1 2\r\nm OK SEARCH completed\r\n"
        );
        // A real HEADER search is not taken for one of these keys.
        assert_eq!(
            c.send("n SEARCH HEADER Subject one\r\n").await,
            "* SEARCH 1\r\nn OK SEARCH completed\r\n"
        );
        assert_eq!(
            c.send(
                "o SEARCH EMAILID \"a b\"\r\np SEARCH SAVEDON 31-Foo-2020\r\nq SEARCH EMAILID\r\n\
r FETCH 1 (EMAILID\r\ns NOOP\r\n"
            )
            .await,
            "o BAD Invalid object id\r\np BAD Invalid date\r\nq BAD Missing search key argument\r\n\
r BAD Unbalanced parentheses\r\ns OK NOOP completed\r\n"
        );
    });
}

/// Messages stored before the store recorded origins: their EMAILID is their own mailbox and
/// UID, SAVEDATE is NIL, and the SAVED* keys compare their INTERNALDATE.
#[test]
fn messages_stored_before_upgrading() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    block_on(deliver(&store, "INBOX", "old"));
    store.close();
    drop(store);
    assert_eq!(crate::store::rewrite_as_pre_origin(dir.path()), 1);
    block_on(async {
        let store = open_store(dir.path());
        let m = meta(&store, "INBOX", 1);
        assert_eq!(m.saved, None);
        let id = crate::imap::objectid::email_id(crate::store::EmailId {
            mailbox: store.snapshot("alice", "INBOX").unwrap().id,
            uid: 1,
        });
        let mut c = Client::login(&store).await;
        c.send("s SELECT INBOX\r\n").await;
        assert_eq!(
            c.send("a FETCH 1 (EMAILID SAVEDATE)\r\n").await,
            format!("* 1 FETCH (EMAILID ({id}) SAVEDATE NIL)\r\na OK FETCH completed\r\n")
        );
        // `deliver` stores INTERNALDATE 14-Nov-2023 22:13:20 UTC.
        assert_eq!(m.internal_date, 1_700_000_000);
        assert_eq!(
            c.send(
                "b SEARCH SAVEDON 14-Nov-2023\r\nc SEARCH SAVEDBEFORE 14-Nov-2023\r\n\
d SEARCH SAVEDSINCE 15-Nov-2023\r\ne SEARCH SAVEDATESUPPORTED\r\n"
            )
            .await,
            "* SEARCH 1\r\nb OK SEARCH completed\r\n* SEARCH\r\nc OK SEARCH completed\r\n\
* SEARCH\r\nd OK SEARCH completed\r\n* SEARCH 1\r\ne OK SEARCH completed\r\n"
        );
    });
}
