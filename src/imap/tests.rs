//! Scripted IMAP exchanges against a real [`LogStore`]: bytes in, responses asserted.

use super::*;
use crate::auth::AuthOutcome;
use crate::store::{Flags, LogStore, MailStore, NewMessage, StoreConfig};

#[path = "context_tests.rs"]
mod context_tests;
#[path = "sort_tests.rs"]
mod sort_tests;

fn open_store(dir: &std::path::Path) -> LogStore {
    open_store_with(dir, crate::store::names::MailboxLimits::DEFAULT)
}

fn open_store_with(dir: &std::path::Path, limits: crate::store::names::MailboxLimits) -> LogStore {
    LogStore::open(StoreConfig {
        dir: dir.to_path_buf(),
        shards: 1,
        fsync: false,
        segment_bytes: 64 << 20,
        checkpoint_bytes: 64 << 20,
        queue_segment_bytes: 16 << 20,
        mailbox_limits: limits,
        compact_dead_pct: 50,
    })
    .unwrap()
}

/// MAILBOXID of one of alice's mailboxes, from the store.
fn mailbox_id(store: &LogStore, mailbox: &str) -> String {
    let snap = store.snapshot("alice", mailbox).unwrap();
    crate::imap::objectid::mailbox_id(snap.id, snap.uidvalidity)
}

/// `out` with the id of every `[MAILBOXID (id)]` replaced by `*`: for exchanges about other
/// things whose CREATEd mailboxes are gone before their ids could be looked up (the ids
/// themselves are asserted in `tests/objectid.rs` here).
fn masked_ids(out: &str) -> String {
    let mut parts = out.split("[MAILBOXID (");
    let mut masked = parts.next().unwrap_or_default().to_string();
    for p in parts {
        masked.push_str("[MAILBOXID (*");
        masked.push_str(&p[p.find(")]").expect("closed MAILBOXID")..]);
    }
    masked
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .unwrap()
        .block_on(f)
}

/// A test client driving one session the way the connection driver does.
struct Client {
    s: ImapSession,
    store: LogStore,
    flushes: usize,
    idling: bool,
    closed: bool,
}

impl Client {
    /// A session over TLS that has not logged in yet.
    fn unauthenticated(store: &LogStore, config: ImapConfig) -> Client {
        Client {
            s: ImapSession::new(config, true),
            store: store.clone(),
            flushes: 0,
            idling: false,
            closed: false,
        }
    }

    async fn new(store: &LogStore, config: ImapConfig) -> Client {
        let mut c = Client::unauthenticated(store, config);
        let out = c.send("L LOGIN alice pw\r\n").await;
        assert!(out.contains("L OK"), "{out}");
        c
    }

    async fn login(store: &LogStore) -> Client {
        Client::new(store, ImapConfig::default()).await
    }

    /// Wait until a change notification reached the session (the store notifies
    /// subscribers just after answering the writer).
    async fn settle(&mut self) {
        monoio::time::timeout(std::time::Duration::from_secs(5), self.s.mailbox_changed())
            .await
            .expect("a change notification");
    }

    async fn send(&mut self, input: impl AsRef<[u8]>) -> String {
        let input = input.as_ref();
        let mut out = Vec::new();
        let mut pos = 0;
        loop {
            let (n, ev) = self.s.feed(&input[pos..], &mut out);
            pos += n;
            match ev {
                None => {
                    if pos >= input.len() {
                        break;
                    }
                }
                Some(ImapEvent::Command(c)) => {
                    let mut step = self.s.execute(&self.store, *c, &mut out).await;
                    while step == Step::Flush {
                        self.flushes += 1;
                        step = self.s.resume(&self.store, &mut out).await;
                    }
                    self.idling = step == Step::Idle;
                    if step == Step::Close {
                        self.closed = true;
                        break;
                    }
                }
                Some(ImapEvent::Authenticate { username, password }) => {
                    let outcome = if password == "pw" {
                        AuthOutcome::Accepted(username)
                    } else {
                        AuthOutcome::Rejected
                    };
                    if self.s.auth_result(outcome, &mut out).is_some() {
                        self.closed = true;
                        break;
                    }
                }
                Some(ImapEvent::StartTls) => self.s.tls_started(),
                // The script's bytes stay plain: only the session's side is exercised here.
                Some(ImapEvent::Compress) => self.s.compression_started(),
                Some(ImapEvent::Close) => {
                    self.closed = true;
                    break;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

fn msg(subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Bob <bob@example.com>\r\nTo: alice@example.org\r\nSubject: {subject}\r\n\
Date: Tue, 14 Nov 2023 10:00:00 +0000\r\nMessage-ID: <{subject}@example.com>\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

/// Stores `raw` as it is into alice's `mailbox`; returns its UID.
async fn store_raw(store: &LogStore, mailbox: &str, raw: &[u8], internal_date: i64) -> u32 {
    store
        .append(vec![NewMessage {
            account: "alice".into(),
            mailbox: mailbox.into(),
            bytes: raw.to_vec().into(),
            flags: Flags::default(),
            internal_date,
        }])
        .await
        .unwrap()[0]
        .uid
}

async fn deliver(store: &LogStore, mailbox: &str, subject: &str) -> u32 {
    store_raw(store, mailbox, &msg(subject, "hello world"), 1_700_000_000).await
}

#[test]
fn select_fetch_store_search() {
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let store = open_store(dir.path());
        for s in ["one", "two", "three"] {
            deliver(&store, "INBOX", s).await;
        }
        let mut c = Client::login(&store).await;
        let out = c.send("a SELECT INBOX\r\n").await;
        assert!(out.contains("* 3 EXISTS\r\n"), "{out}");
        assert!(out.contains("* OK [UIDVALIDITY "), "{out}");
        assert!(out.contains("* OK [UIDNEXT 4]"), "{out}");
        assert!(out.contains("* OK [HIGHESTMODSEQ "), "{out}");
        assert!(out.contains("\\Draft \\*)]"), "{out}");
        assert!(
            out.ends_with("a OK [READ-WRITE] SELECT completed\r\n"),
            "{out}"
        );

        let out = c.send("b FETCH 1:* (UID FLAGS ENVELOPE)\r\n").await;
        assert!(
            out.starts_with(
                "* 1 FETCH (UID 1 FLAGS (\\Recent) ENVELOPE (\"Tue, 14 Nov 2023 10:00:00 +0000\" \"one\""
            ),
            "{out}"
        );
        assert_eq!(out.matches("FETCH (UID").count(), 3);
        assert!(out.ends_with("b OK FETCH completed\r\n"));

        // BODY[] (not PEEK) sets \Seen and reports FLAGS.
        let out = c.send("c FETCH 2 BODY[TEXT]\r\n").await;
        assert_eq!(
            out,
            "* 2 FETCH (BODY[TEXT] {13}\r\nhello world\r\n FLAGS (\\Seen \\Recent))\r\nc OK FETCH completed\r\n"
        );
        let out = c
            .send("d FETCH 2 (FLAGS BODY.PEEK[HEADER.FIELDS (Subject)])\r\n")
            .await;
        assert!(
            out.contains(
                "FLAGS (\\Seen \\Recent) BODY[HEADER.FIELDS (Subject)] {16}\r\nSubject: two\r\n\r\n)"
            ),
            "{out}"
        );

        let out = c.send("e STORE 1,3 +FLAGS (\\Flagged $Work)\r\n").await;
        assert!(
            out.starts_with("* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work)\r\n"),
            "{out}"
        );
        assert!(
            out.contains("\\Draft $Work \\*)] Flags permitted\r\n"),
            "{out}"
        );
        assert!(
            out.contains("* 1 FETCH (FLAGS (\\Flagged \\Recent $Work))\r\n"),
            "{out}"
        );
        assert!(
            out.contains("* 3 FETCH (FLAGS (\\Flagged \\Recent $Work))\r\n"),
            "{out}"
        );
        let out = c.send("f UID STORE 3 -FLAGS.SILENT (\\Flagged)\r\n").await;
        assert_eq!(out, "f OK STORE completed\r\n");

        let out = c.send("g SEARCH FLAGGED\r\n").await;
        assert_eq!(out, "* SEARCH 1\r\ng OK SEARCH completed\r\n");
        let out = c.send("h UID SEARCH KEYWORD $work SUBJECT three\r\n").await;
        assert_eq!(out, "* SEARCH 3\r\nh OK SEARCH completed\r\n");
        let out = c
            .send("i SEARCH RETURN (MIN MAX COUNT ALL) UNSEEN\r\n")
            .await;
        assert_eq!(
            out,
            "* ESEARCH (TAG \"i\") MIN 1 MAX 3 ALL 1,3 COUNT 2\r\ni OK SEARCH completed\r\n"
        );
        let out = c.send("j SEARCH BODY WORLD NOT SEEN\r\n").await;
        assert_eq!(out, "* SEARCH 1 3\r\nj OK SEARCH completed\r\n");

        let out = c.send("k FETCH 9 FLAGS\r\n").await;
        assert!(out.starts_with("k BAD"), "{out}");
        let out = c.send("l UID FETCH 9 FLAGS\r\n").await;
        assert_eq!(out, "l OK FETCH completed\r\n");

        let out = c
            .send("m STATUS INBOX (MESSAGES UNSEEN UIDNEXT SIZE)\r\n")
            .await;
        assert!(
            out.starts_with("* STATUS INBOX (MESSAGES 3 UNSEEN 2 UIDNEXT 4 SIZE "),
            "{out}"
        );

        let out = c
            .send("n FETCH 1 (BODYSTRUCTURE RFC822.SIZE INTERNALDATE)\r\n")
            .await;
        assert!(out.contains("BODYSTRUCTURE (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 13 1 NIL NIL NIL NIL)"), "{out}");
        assert!(
            out.contains("INTERNALDATE \"14-Nov-2023 22:13:20 +0000\""),
            "{out}"
        );

        let out = c.send("o CLOSE\r\np FETCH 1 FLAGS\r\nq LOGOUT\r\n").await;
        assert!(
            out.starts_with("o OK CLOSE completed\r\np BAD No mailbox selected\r\n* BYE"),
            "{out}"
        );
        assert!(c.closed);
    });
}

#[test]
fn append_copy_move_expunge() {
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let store = open_store(dir.path());
        let mut c = Client::login(&store).await;
        let body = msg("appended", "line");
        let cmd = format!(
            "a APPEND INBOX (\\Seen) \"14-Nov-2023 22:13:20 +0000\" {{{}}}\r\n",
            body.len()
        );
        let mut input = cmd.into_bytes();
        input.extend_from_slice(&body);
        input.extend_from_slice(b"\r\n");
        let out = c.send(&input).await;
        assert!(
            out.starts_with("+ Ready for literal data\r\na OK [APPENDUID "),
            "{out}"
        );
        assert!(out.contains(" 1] APPEND completed"), "{out}");
        let out = c.send("b APPEND Nowhere {3+}\r\nabc\r\n").await;
        assert!(out.starts_with("b NO [TRYCREATE]"), "{out}");
        let out = c
            .send("b2 APPEND Sent (\\Seen) {3+}\r\none {3+}\r\ntwo () {5+}\r\nthree\r\n")
            .await;
        assert!(out.contains(" 1:3] APPEND completed"), "{out}");
        let out = c.send("c APPEND INBOX {999999999}\r\n").await;
        assert!(out.starts_with("c NO [TOOBIG]"), "{out}");

        let out = c
            .send("d SELECT INBOX\r\ne UID FETCH 1 (BODY.PEEK[] INTERNALDATE FLAGS)\r\n")
            .await;
        let expect = format!(
            "BODY[] {{{}}}\r\n{}",
            body.len(),
            String::from_utf8_lossy(&body)
        );
        assert!(out.contains(&expect), "{out}");
        assert!(
            out.contains("INTERNALDATE \"14-Nov-2023 22:13:20 +0000\" FLAGS (\\Seen \\Recent)"),
            "{out}"
        );

        c.send("f CREATE Archive/2023\r\n").await;
        let out = c.send("g COPY 1 Archive/2023\r\n").await;
        assert!(out.starts_with("g OK [COPYUID "), "{out}");
        assert!(out.contains(" 1 1] COPY completed"), "{out}");
        let out = c.send("h COPY 1 Missing\r\n").await;
        assert!(out.starts_with("h NO [TRYCREATE]"), "{out}");

        // Expunge; then the next append must not reuse UID 1.
        let out = c
            .send("i STORE 1 +FLAGS.SILENT (\\Deleted)\r\nj EXPUNGE\r\n")
            .await;
        assert!(
            out.contains("* 1 EXPUNGE\r\nj OK EXPUNGE completed"),
            "{out}"
        );
        let uid = deliver(&store, "INBOX", "next").await;
        assert_eq!(uid, 2);
        c.settle().await;
        let out = c.send("k NOOP\r\n").await;
        assert_eq!(out, "* 1 EXISTS\r\n* 1 RECENT\r\nk OK NOOP completed\r\n");

        let out = c.send("l UID MOVE 2 Archive/2023\r\n").await;
        assert!(out.starts_with("* OK [COPYUID "), "{out}");
        assert!(
            out.contains(" 2 2] Moved\r\n* 1 EXPUNGE\r\nl OK MOVE completed\r\n"),
            "{out}"
        );
        let out = c.send("m STATUS Archive/2023 (MESSAGES UIDNEXT)\r\n").await;
        assert!(
            out.starts_with("* STATUS Archive/2023 (MESSAGES 2 UIDNEXT 3)"),
            "{out}"
        );

        // UID EXPUNGE only removes the given UIDs.
        let out = c
            .send("n SELECT Archive/2023\r\no STORE 1:* +FLAGS (\\Deleted)\r\np UID EXPUNGE 2\r\n")
            .await;
        assert!(
            out.contains("* 2 EXPUNGE\r\np OK EXPUNGE completed"),
            "{out}"
        );
        let out = c
            .send("q UNSELECT\r\nr EXAMINE Archive/2023\r\ns STORE 1 +FLAGS (\\Seen)\r\n")
            .await;
        assert!(out.contains("r OK [READ-ONLY] EXAMINE completed"), "{out}");
        assert!(out.contains("s NO [READ-ONLY]"), "{out}");
    });
}

#[test]
fn mailbox_management_and_list() {
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let store = open_store(dir.path());
        deliver(&store, "INBOX", "x").await;
        let mut c = Client::login(&store).await;
        let out = c.send("a CREATE Work\r\nb CREATE Work/Projects\r\nc CREATE Work\r\nd SUBSCRIBE Work/Projects\r\n").await;
        assert!(
            out.contains(&format!(
                "a OK [MAILBOXID ({})] CREATE",
                mailbox_id(&store, "Work")
            )),
            "{out}"
        );
        assert!(out.contains("c NO [ALREADYEXISTS]"), "{out}");
        assert!(out.contains("d OK SUBSCRIBE"), "{out}");
        let out = c.send("e LIST \"\" *\r\n").await;
        assert!(
            out.contains("* LIST (\\HasNoChildren) \"/\" INBOX\r\n"),
            "{out}"
        );
        assert!(
            out.contains("* LIST (\\HasChildren) \"/\" Work\r\n"),
            "{out}"
        );
        assert!(
            out.contains("* LIST (\\HasNoChildren) \"/\" Work/Projects\r\n"),
            "{out}"
        );
        let out = c.send("f LIST \"\" %\r\n").await;
        assert!(!out.contains("Work/Projects"), "{out}");
        let out = c.send("g LIST \"\" \"\"\r\n").await;
        assert_eq!(
            out,
            "* LIST (\\Noselect) \"/\" \"\"\r\ng OK LIST completed\r\n"
        );
        let out = c
            .send("h LIST (SUBSCRIBED) \"\" Work* RETURN (STATUS (MESSAGES))\r\n")
            .await;
        assert!(out.contains("* LIST (\\HasNoChildren \\Subscribed) \"/\" Work/Projects\r\n* STATUS Work/Projects (MESSAGES 0)\r\n"), "{out}");
        assert!(!out.contains("INBOX"), "{out}");
        let out = c.send("i LSUB \"\" Work/*\r\n").await;
        assert_eq!(
            out,
            "* LSUB () \"/\" Work/Projects\r\ni OK LSUB completed\r\n"
        );
        let out = c.send("j LIST \"\" * RETURN (SPECIAL-USE)\r\n").await;
        assert!(
            out.contains("* LIST (\\HasNoChildren \\Sent) \"/\" Sent\r\n"),
            "{out}"
        );
        let out = c
            .send("k RENAME Work/Projects Work/Done\r\nl LIST \"\" Work/*\r\n")
            .await;
        assert!(out.contains("k OK RENAME"), "{out}");
        assert!(out.contains("\"/\" Work/Done\r\n"), "{out}");
        let out = c
            .send("m DELETE Work/Done\r\nn DELETE INBOX\r\no SELECT Work/Done\r\n")
            .await;
        assert!(out.contains("m OK DELETE"), "{out}");
        assert!(out.contains("n NO [CANNOT]"), "{out}");
        assert!(out.contains("o NO [NONEXISTENT]"), "{out}");
        // IMAP4rev1 names are modified UTF-7 on the wire, UTF-8 in the store.
        let out = c
            .send("q CREATE Entw&APw-rfe\r\nr LIST \"\" Entw*\r\n")
            .await;
        assert!(
            out.contains("* LIST (\\HasNoChildren) \"/\" Entw&APw-rfe\r\n"),
            "{out}"
        );
        assert!(
            store
                .list_mailboxes("alice")
                .iter()
                .any(|m| m.name == "Entw\u{fc}rfe")
        );
        // IMAP4rev2 clients use UTF-8 quoted strings.
        let out = c
            .send("s ENABLE IMAP4rev2\r\nt STATUS \"Entw\u{fc}rfe\" (MESSAGES)\r\n")
            .await;
        assert!(
            out.contains("* STATUS {9}\r\nEntw\u{fc}rfe (MESSAGES 0)\r\n"),
            "{out}"
        );
        // Deleting the selected mailbox closes it.
        let out = c
            .send("u CREATE Tmp\r\nv SELECT Tmp\r\nw DELETE Tmp\r\nx FETCH 1 UID\r\n")
            .await;
        assert!(
            out.contains("* OK [CLOSED] The selected mailbox was deleted\r\nw OK DELETE"),
            "{out}"
        );
        assert!(out.ends_with("x BAD No mailbox selected\r\n"), "{out}");
        let out = c.send("p STATUS Nope (MESSAGES)\r\n").await;
        assert!(out.starts_with("p NO [NONEXISTENT]"), "{out}");
    });
}

#[test]
fn two_sessions_see_each_other() {
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let store = open_store(dir.path());
        for s in ["a", "b", "c"] {
            deliver(&store, "INBOX", s).await;
        }
        let mut a = Client::login(&store).await;
        let mut b = Client::login(&store).await;
        a.send("1 SELECT INBOX\r\n").await;
        b.send("1 SELECT INBOX\r\n").await;
        let out = b
            .send("2 STORE 2 +FLAGS (\\Deleted)\r\n3 EXPUNGE\r\n4 STORE 1 +FLAGS (\\Answered)\r\n")
            .await;
        assert!(out.contains("* 2 EXPUNGE"), "{out}");
        deliver(&store, "INBOX", "d").await;
        a.settle().await;
        // FETCH: flags and EXISTS, but no EXPUNGE (numbers must not shift).
        let out = a.send("2 FETCH 2 UID\r\n").await;
        assert!(out.starts_with("* 2 FETCH (UID 2)\r\n"), "{out}");
        assert!(
            out.contains("* 1 FETCH (FLAGS (\\Answered \\Recent))\r\n"),
            "{out}"
        );
        assert!(out.contains("* 4 EXISTS\r\n"), "{out}");
        assert!(!out.contains("EXPUNGE"), "{out}");
        // NOOP: now the expunge is reported.
        let out = a.send("3 NOOP\r\n").await;
        assert_eq!(out, "* 2 EXPUNGE\r\n3 OK NOOP completed\r\n");
        let out = a.send("4 FETCH 1:* UID\r\n").await;
        assert!(out.contains("* 3 FETCH (UID 4)"), "{out}");

        // IDLE: a change wakes the driver, which calls idle_update.
        let out = a.send("5 IDLE\r\n").await;
        assert_eq!(out, "+ idling\r\n");
        assert!(a.idling && a.s.is_idling());
        deliver(&store, "INBOX", "e").await;
        a.settle().await;
        let mut out = Vec::new();
        a.s.idle_update(&a.store, &mut out);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "* 4 EXISTS\r\n* 4 RECENT\r\n"
        );
        let out = a.send("DONE\r\n").await;
        assert_eq!(out, "5 OK IDLE terminated\r\n");

        // The take/restore form, for drivers selecting over the socket and the mailbox.
        let out = a.send("6 IDLE\r\n").await;
        assert_eq!(out, "+ idling\r\n");
        let mut rx = a.s.take_change_receiver().expect("selected");
        b.send("7 STORE 1 +FLAGS (\\Flagged)\r\n").await;
        monoio::time::timeout(std::time::Duration::from_secs(5), rx.recv())
            .await
            .expect("a change notification")
            .unwrap();
        a.s.restore_change_receiver(rx);
        let mut out = Vec::new();
        a.s.idle_update(&a.store, &mut out);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "* 1 FETCH (FLAGS (\\Answered \\Flagged \\Recent))\r\n"
        );
        let out = a.send("DONE\r\n").await;
        assert_eq!(out, "6 OK IDLE terminated\r\n");
    });
}

#[test]
fn condstore_and_qresync() {
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let store = open_store(dir.path());
        for s in ["a", "b", "c", "d"] {
            deliver(&store, "INBOX", s).await;
        }
        let mut c = Client::login(&store).await;
        let out = c.send("1 ENABLE QRESYNC\r\n2 SELECT INBOX\r\n").await;
        assert!(out.contains("* ENABLED QRESYNC"), "{out}");
        let uv = store.snapshot("alice", "INBOX").unwrap().uidvalidity;
        let before = store.snapshot("alice", "INBOX").unwrap().highest_modseq;
        let out = c.send("3 STORE 1 +FLAGS (\\Seen)\r\n").await;
        assert!(
            out.contains("* 1 FETCH (UID 1 FLAGS (\\Seen \\Recent) MODSEQ ("),
            "{out}"
        );
        let out = c
            .send(format!(
                "4 STORE 1,2 (UNCHANGEDSINCE {before}) +FLAGS (\\Flagged)\r\n"
            ))
            .await;
        assert!(
            out.contains("* 2 FETCH (UID 2 FLAGS (\\Flagged \\Recent) MODSEQ ("),
            "{out}"
        );
        assert!(
            out.contains("4 OK [MODIFIED 1] Conditional STORE failed"),
            "{out}"
        );
        let out = c
            .send("5 UID STORE 3 +FLAGS (\\Deleted)\r\n6 UID EXPUNGE 3\r\n")
            .await;
        assert!(out.contains("* VANISHED 3\r\n"), "{out}");
        let out = c
            .send(format!(
                "7 UID FETCH 1:* (FLAGS) (CHANGEDSINCE {before} VANISHED)\r\n"
            ))
            .await;
        assert!(out.starts_with("* VANISHED (EARLIER) 3\r\n"), "{out}");
        assert!(
            out.contains("* 1 FETCH (UID 1 FLAGS (\\Seen \\Recent) MODSEQ ("),
            "{out}"
        );
        assert!(
            out.contains("* 2 FETCH (UID 2 FLAGS (\\Flagged \\Recent) MODSEQ ("),
            "{out}"
        );
        assert!(!out.contains("UID 4"), "{out}");
        let out = c.send(format!("8 SEARCH MODSEQ {}\r\n", before + 1)).await;
        assert!(out.starts_with("* SEARCH 1 2 (MODSEQ "), "{out}");
        // IMAP4rev2 answers SEARCH with ESEARCH.
        let out = c.send("9 ENABLE IMAP4rev2\r\n10 UID SEARCH ALL\r\n").await;
        assert!(
            out.contains("* ESEARCH (TAG \"10\") UID ALL 1:2,4\r\n10 OK"),
            "{out}"
        );

        // A client resynchronising after a disconnect.
        let mut r = Client::login(&store).await;
        let out = r
            .send(format!(
                "1 ENABLE QRESYNC\r\n2 SELECT INBOX (QRESYNC ({uv} {before}))\r\n"
            ))
            .await;
        assert!(out.contains("* VANISHED (EARLIER) 3\r\n"), "{out}");
        assert!(
            out.contains("* 1 FETCH (UID 1 FLAGS (\\Seen \\Recent) MODSEQ ("),
            "{out}"
        );
        assert!(
            out.contains("* 2 FETCH (UID 2 FLAGS (\\Flagged \\Recent) MODSEQ ("),
            "{out}"
        );
        assert!(!out.contains("UID 4"), "{out}");
        let out = r.send("3 STATUS INBOX (HIGHESTMODSEQ)\r\n").await;
        assert!(out.starts_with("* STATUS INBOX (HIGHESTMODSEQ "), "{out}");
        // Selecting another mailbox reports CLOSED first.
        let out = r.send("4 EXAMINE INBOX\r\n").await;
        assert!(out.starts_with("* OK [CLOSED]"), "{out}");
        let out = r.send("5 ENABLE IMAP4rev2\r\n6 SELECT Sent\r\n").await;
        assert!(out.contains("* LIST (\\Sent) \"/\" Sent\r\n"), "{out}");
        assert!(!out.contains("RECENT"), "{out}");
    });
}

#[test]
fn big_fetch_is_streamed_in_chunks() {
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let store = open_store(dir.path());
        let big = "x".repeat(3000);
        let mut batch = Vec::new();
        for i in 0..20 {
            batch.push(NewMessage {
                account: "alice".into(),
                mailbox: "INBOX".into(),
                bytes: msg(&format!("m{i}"), &big).into(),
                flags: Flags::default(),
                internal_date: 1_700_000_000,
            });
        }
        store.append(batch).await.unwrap();
        let config = ImapConfig {
            flush_threshold: 10_000,
            allow_plaintext_auth: true,
            ..ImapConfig::default()
        };
        let mut c = Client::new(&store, config).await;
        c.send("1 SELECT INBOX\r\n").await;
        let out = c.send("2 FETCH 1:* BODY.PEEK[]\r\n").await;
        assert_eq!(out.matches(" FETCH (BODY[] {").count(), 20);
        assert!(out.ends_with("2 OK FETCH completed\r\n"));
        assert!(c.flushes >= 5, "{}", c.flushes);
    });
}

#[test]
fn hostile_input_with_store() {
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let store = open_store(dir.path());
        deliver(&store, "INBOX", "x").await;
        let mut c = Client::login(&store).await;
        let out = c.send("1 SELECT INBOX\r\n2 FETCH 1 (FLAGS\r\n3 SEARCH (OR SEEN\r\n4 FETCH 1 BODY[1.2.3.4.5]\r\n5 NOOP\r\n").await;
        assert!(out.contains("2 BAD"), "{out}");
        assert!(out.contains("3 BAD"), "{out}");
        assert!(out.contains("4 OK FETCH"), "{out}");
        assert!(out.ends_with("5 OK NOOP completed\r\n"), "{out}");
        let out = c.send("6 SEARCH CHARSET KOI8-R ALL\r\n").await;
        assert!(out.starts_with("6 NO [BADCHARSET"), "{out}");
        let mut long = b"7 NOOP ".to_vec();
        long.extend(std::iter::repeat_n(b'a', 100_000));
        long.extend_from_slice(b"\r\n8 NOOP\r\n");
        let out = c.send(&long).await;
        assert!(out.starts_with("7 BAD Line too long\r\n8 OK"), "{out}");
        // Bad password counts as an error; errors accumulate to BYE.
        let out = c.send("x\r\ny\r\nz\r\nw\r\nv\r\nu\r\nt\r\n").await;
        assert!(out.contains("* BYE Too many errors"), "{out}");
        assert!(c.closed);
    });
}

#[test]
fn misc_commands() {
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let store = open_store(dir.path());
        deliver(&store, "INBOX", "x").await;
        // Failed login, then a successful one.
        let mut c = Client::unauthenticated(&store, ImapConfig::default());
        let out = c
            .send("1 LOGIN alice wrong\r\n2 ID NIL\r\n3 LOGIN alice pw\r\n")
            .await;
        assert!(out.starts_with("1 NO [AUTHENTICATIONFAILED]"), "{out}");
        assert!(out.contains("* ID (\"name\" \"surel\""), "{out}");
        assert!(out.contains("3 OK [CAPABILITY IMAP4rev2"), "{out}");
        let out = c
            .send("4 SUBSCRIBE Sent\r\n5 UNSUBSCRIBE Sent\r\n6 LSUB \"\" Sent\r\n")
            .await;
        assert!(
            out.contains("5 OK UNSUBSCRIBE completed\r\n6 OK LSUB"),
            "{out}"
        );
        let out = c
            .send(
                "7 SELECT INBOX\r\n8 CHECK\r\n9 FETCH 1 (RFC822.HEADER BINARY.SIZE[1] RFC822)\r\n",
            )
            .await;
        assert!(out.contains("8 OK CHECK completed\r\n"), "{out}");
        assert!(out.contains("RFC822.HEADER {"), "{out}");
        assert!(out.contains("BINARY.SIZE[1] 13 RFC822 {"), "{out}");
        // RFC822 (not .PEEK) sets \Seen.
        assert!(
            out.contains("FLAGS (\\Seen \\Recent))\r\n9 OK FETCH completed"),
            "{out}"
        );
        let out = c.send("10 UID SEARCH SEEN\r\n").await;
        assert_eq!(out, "* SEARCH 1\r\n10 OK SEARCH completed\r\n");
        let out = c.send("11 IDLE\r\nDONE\r\n12 LOGOUT\r\n").await;
        assert_eq!(
            out,
            "+ idling\r\n11 OK IDLE terminated\r\n* BYE localhost logging out\r\n12 OK LOGOUT completed\r\n"
        );
    });
}

/// A tiny deterministic PRNG for the robustness tests (no extra dependency).
struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const FRAGMENTS: &[&[u8]] = &[
    b"a1 ",
    b"UID ",
    b"FETCH ",
    b"1:* ",
    b"(",
    b")",
    b"BODY[",
    b"]",
    b"{5}\r\n",
    b"{3+}\r\n",
    b"~{2}\r\n",
    b"\r\n",
    b"\n",
    b"\0",
    b"\xff",
    b"\"",
    b"\\",
    b"SEARCH ",
    b"OR ",
    b"NOT ",
    b"LIST ",
    b"RETURN ",
    b"(STATUS (MESSAGES))",
    b"LOGIN ",
    b"AUTHENTICATE PLAIN",
    b"=",
    b"*",
    b"%",
    b"DONE\r\n",
    b"IDLE\r\n",
    b"APPEND INBOX ",
    b"{99999999999999999999}\r\n",
    b"SELECT INBOX (QRESYNC (1 1))",
    b"ENABLE QRESYNC\r\n",
    b"STARTTLS\r\n",
    b"CANCELUPDATE ",
    b"RETURN (UPDATE PARTIAL 1:2) ",
    b"SORT (ARRIVAL) UTF-8 ",
    b"x",
];

#[test]
fn random_input_never_panics() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for round in 0..300 {
        let mut s = ImapSession::new(
            ImapConfig {
                allow_plaintext_auth: true,
                max_errors: 1000,
                max_line: 512,
                max_literal: 4096,
                ..ImapConfig::default()
            },
            false,
        );
        let mut input = Vec::new();
        for _ in 0..rng.below(60) + 1 {
            if rng.below(4) == 0 {
                input.push(rng.next() as u8);
            } else {
                input.extend_from_slice(FRAGMENTS[rng.below(FRAGMENTS.len())]);
            }
        }
        let mut out = Vec::new();
        let mut pos = 0;
        let mut guard = 0;
        while pos < input.len() && guard < 10_000 {
            guard += 1;
            // Feed in random chunk sizes.
            let end = (pos + rng.below(16) + 1).min(input.len());
            let (n, ev) = s.feed(&input[pos..end], &mut out);
            pos += n;
            match ev {
                Some(ImapEvent::Authenticate { .. }) => {
                    s.auth_result(AuthOutcome::Accepted("alice".into()), &mut out);
                }
                Some(ImapEvent::StartTls) => s.tls_started(),
                Some(ImapEvent::Compress) => s.compression_started(),
                Some(ImapEvent::Close) => break,
                Some(ImapEvent::Command(_)) => {
                    // Pretend it ran.
                    s.mode = session::Mode::Normal;
                }
                None => {}
            }
        }
        assert!(guard < 10_000, "round {round}: no progress");
    }
}

#[test]
fn random_messages_never_panic() {
    let mut rng = XorShift(0x1234_5678_9abc_def1);
    let parts: &[&[u8]] = &[
        b"Content-Type: multipart/mixed; boundary=b\r\n",
        b"Content-Type: message/rfc822\r\n",
        b"Content-Type: text/plain; charset*=utf-8''x%ZZ\r\n",
        b"Content-Transfer-Encoding: base64\r\n",
        b"Content-Transfer-Encoding: quoted-printable\r\n",
        b"From: =?utf-8?b?????\r\n",
        b"To: a@, <b@c>, group:;\r\n",
        b"\r\n",
        b"\n",
        b"--b\r\n",
        b"--b--\r\n",
        b"--b",
        b"=\r\n",
        b"=4",
        b"body text\r\n",
        b" folded\r\n",
        b"\xc3\x28",
    ];
    for _ in 0..500 {
        let mut raw = Vec::new();
        for _ in 0..rng.below(40) {
            raw.extend_from_slice(parts[rng.below(parts.len())]);
        }
        let st = bodystructure::RenderedStructure::render(&raw);
        let depth = st.bodystructure.iter().fold(0i64, |d, &b| {
            d + i64::from(b == b'(') - i64::from(b == b')')
        });
        // Literals may contain parentheses; only check balance when there are none.
        if !st.bodystructure.contains(&b'{') {
            assert_eq!(depth, 0, "{}", String::from_utf8_lossy(&st.bodystructure));
        }
        let root = mime::parse(&raw);
        for _ in 0..5 {
            let path: Vec<u32> = (0..rng.below(4)).map(|_| rng.below(4) as u32).collect();
            for kind in [
                section::SectionKind::Full,
                section::SectionKind::Header,
                section::SectionKind::Text,
                section::SectionKind::Mime,
                section::SectionKind::HeaderFields(vec!["to".into()]),
            ] {
                let spec = section::SectionSpec {
                    path: path.clone(),
                    kind,
                };
                let _ = section::extract(&raw, &root, &spec);
            }
            let _ = section::binary(&raw, &root, &path);
        }
    }
}

#[test]
fn fetch_of_message_expunged_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let store = open_store(dir.path());
        for s in ["a", "b"] {
            deliver(&store, "INBOX", s).await;
        }
        let mut a = Client::login(&store).await;
        let mut b = Client::login(&store).await;
        a.send("1 SELECT INBOX\r\n").await;
        b.send("1 SELECT INBOX\r\n2 STORE 1 +FLAGS (\\Deleted)\r\n3 EXPUNGE\r\n")
            .await;
        a.settle().await;
        // Message 1 is gone from the store but still numbered in A's view.
        let out = a
            .send("2 FETCH 1:2 (UID BODY.PEEK[HEADER.FIELDS (Subject)])\r\n")
            .await;
        assert!(!out.contains("* 1 FETCH"), "{out}");
        assert!(
            out.contains("* 2 FETCH (UID 2 BODY[HEADER.FIELDS (Subject)]"),
            "{out}"
        );
        assert!(
            out.ends_with("2 OK [EXPUNGEISSUED] Some messages were expunged meanwhile\r\n"),
            "{out}"
        );
        // Flags-only items are answered from the view.
        let out = a.send("3 FETCH 1 FLAGS\r\n").await;
        assert!(
            out.starts_with("* 1 FETCH (FLAGS (\\Recent))\r\n3 OK FETCH"),
            "{out}"
        );
        let out = a.send("4 NOOP\r\n").await;
        assert_eq!(out, "* 1 EXPUNGE\r\n4 OK NOOP completed\r\n");
    });
}

#[test]
fn random_command_sequences_against_the_store() {
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let store = open_store(dir.path());
        for s in ["a", "b", "c", "d", "e"] {
            deliver(&store, "INBOX", s).await;
        }
        let config = ImapConfig {
            max_errors: u32::MAX,
            flush_threshold: 2048,
            ..ImapConfig::default()
        };
        let mut clients = [
            Client::new(&store, config.clone()).await,
            Client::new(&store, config).await,
        ];
        let mut rng = XorShift(0xdead_beef_cafe_f00d);
        let mut ok = 0;
        let templates: &[&str] = &[
            "SELECT INBOX",
            "EXAMINE INBOX",
            "SELECT Archive",
            "FETCH {s} (FLAGS UID ENVELOPE BODYSTRUCTURE)",
            "UID FETCH {s} (BODY.PEEK[1] BINARY.SIZE[1] MODSEQ)",
            "FETCH {s} BODY[]",
            "STORE {s} +FLAGS (\\Deleted)",
            "UID STORE {s} -FLAGS.SILENT (\\Seen)",
            "STORE {s} (UNCHANGEDSINCE 3) FLAGS ($x)",
            "EXPUNGE",
            "UID EXPUNGE {s}",
            "SEARCH {s} NOT DELETED",
            "UID SEARCH RETURN (MIN MAX COUNT) TEXT hello",
            "SEARCH RETURN (UPDATE COUNT) {s} UNSEEN",
            "UID SORT RETURN (UPDATE PARTIAL -1:-3) (REVERSE ARRIVAL) UTF-8 {s}",
            "CANCELUPDATE \"t1\" \"t2\"",
            "COPY {s} Archive",
            "UID MOVE {s} Archive",
            "APPEND INBOX {5+}\r\nhello",
            "NOOP",
            "CHECK",
            "CLOSE",
            "UNSELECT",
            "STATUS INBOX (MESSAGES UIDNEXT UNSEEN SIZE HIGHESTMODSEQ)",
            "LIST \"\" * RETURN (CHILDREN STATUS (MESSAGES))",
            "ENABLE QRESYNC",
            "UID FETCH 1:* FLAGS (CHANGEDSINCE 2 VANISHED)",
        ];
        let sets = ["1", "2:4", "*", "1:*", "3,1", "5:2", "9", "100:*"];
        for i in 0..400 {
            let c = &mut clients[rng.below(2)];
            if c.closed {
                continue;
            }
            let t = templates[rng.below(templates.len())];
            let cmd = t.replace("{s}", sets[rng.below(sets.len())]);
            let tag = format!("t{i}");
            let out = c.send(format!("{tag} {cmd}\r\n")).await;
            let done = [" OK", " NO", " BAD"]
                .iter()
                .any(|k| out.contains(&format!("{tag}{k}")));
            assert!(done, "{tag} {cmd} -> {out}");
            ok += usize::from(out.contains(&format!("{tag} OK")));
            // Invariant: after NOOP the view is exactly the store's mailbox.
            if i % 10 == 0 {
                for c in clients.iter_mut() {
                    // Notifications may trail the other session's reply by microseconds;
                    // the diff itself is what is checked here.
                    if let Some(mb) = c.s.selected.as_mut() {
                        mb.mark_dirty();
                    }
                    c.send("n NOOP\r\n").await;
                    if let Some(mb) = &c.s.selected {
                        let snap = store.snapshot("alice", &mb.name).unwrap();
                        let uids: Vec<u32> = snap.messages.iter().map(|m| m.uid).collect();
                        assert_eq!(mb.uids(), uids, "after {tag} {cmd}");
                        let flags: Vec<_> = snap.messages.iter().map(|m| &m.flags).collect();
                        let view: Vec<_> = mb.messages.iter().map(|m| &m.flags).collect();
                        assert_eq!(view, flags, "after {tag} {cmd}");
                    }
                }
            }
        }
        assert!(ok > 200, "{ok}");
        assert!(!clients[0].closed && !clients[1].closed);
    });
}

#[test]
fn mailbox_names_are_checked_before_anything_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let store = open_store(dir.path());
        deliver(&store, "INBOX", "x").await;
        let before = store.list_mailboxes("alice").len();
        let mut c = Client::login(&store).await;
        let huge = "a".repeat(10_000);
        let deep = vec!["d"; 33].join("/");
        for (command, reply) in [
            (
                format!("a CREATE {{10000+}}\r\n{huge}\r\n"),
                "a NO [CANNOT] Not allowed: mailbox name too long",
            ),
            (
                format!("b CREATE {deep}\r\n"),
                "b NO [CANNOT] Not allowed: mailbox hierarchy too deep",
            ),
            // Modified UTF-7 must be the canonical spelling, else LIST would show another name.
            (
                "c CREATE &AOk\r\n".into(),
                "c NO [CANNOT] Mailbox name is not valid modified UTF-7",
            ),
            (
                "d CREATE &AGE-\r\n".into(),
                "d NO [CANNOT] Mailbox name is not valid modified UTF-7",
            ),
            // 8-bit is not modified UTF-7, even when it is valid UTF-8.
            (
                "e CREATE {5+}\r\ncaf\u{e9}\r\n".into(),
                "e NO [CANNOT] Mailbox name is not valid modified UTF-7",
            ),
            (
                "f CREATE a//b\r\n".into(),
                "f NO [CANNOT] Not allowed: empty hierarchy level in mailbox name",
            ),
            (
                "g SELECT &AOk\r\n".into(),
                "g NO [CANNOT] Mailbox name is not valid modified UTF-7",
            ),
            // A missing target is TRYCREATE only when CREATE could make it.
            (
                "h APPEND a//b {1+}\r\nx\r\n".into(),
                "h NO [CANNOT] Invalid mailbox name: empty hierarchy level in mailbox name",
            ),
            (
                "i APPEND Later {1+}\r\nx\r\n".into(),
                "i NO [TRYCREATE] No such mailbox",
            ),
        ] {
            assert_eq!(
                c.send(&command).await,
                format!("{reply}\r\n"),
                "{command:.40}"
            );
        }
        assert_eq!(store.list_mailboxes("alice").len(), before);
        // IMAP4rev2 names are UTF-8, checked as such.
        let out = c.send("j ENABLE IMAP4rev2\r\n").await;
        assert!(out.ends_with("j OK ENABLE completed\r\n"), "{out}");
        for (command, reply) in [
            (
                &b"k CREATE {4+}\r\nab\xff\xfe\r\n"[..],
                "k NO [CANNOT] Mailbox name is not valid UTF-8\r\n",
            ),
            (
                b"l CREATE {3+}\r\na\x01b\r\n",
                "l NO [CANNOT] Not allowed: control character in mailbox name\r\n",
            ),
        ] {
            assert_eq!(c.send(command).await, reply);
        }
        assert_eq!(store.list_mailboxes("alice").len(), before);
        // What is accepted is listed as written and opens again.
        let mut c = Client::login(&store).await;
        let out = c
            .send("m CREATE Caf&AOk-/\r\nn LIST \"\" Caf*\r\no SELECT Caf&AOk-\r\n")
            .await;
        assert!(
            out.starts_with(&format!(
                "m OK [MAILBOXID ({})] CREATE completed\r\n* LIST (\\HasNoChildren) \"/\" Caf&AOk-\r\nn OK LIST completed\r\n",
                mailbox_id(&store, "Caf\u{e9}")
            )),
            "{out}"
        );
        assert!(
            out.ends_with("o OK [READ-WRITE] SELECT completed\r\n"),
            "{out}"
        );
        assert!(
            store
                .list_mailboxes("alice")
                .iter()
                .any(|m| m.name == "Caf\u{e9}")
        );
        // RENAME checks the names the children would get: d/c would become 33 levels deep.
        let deepest_allowed = vec!["e"; 32].join("/");
        let out = c
            .send(format!("p CREATE d/c\r\nq RENAME d {deepest_allowed}\r\n"))
            .await;
        assert_eq!(
            out,
            format!(
                "p OK [MAILBOXID ({})] CREATE completed\r\nq NO [CANNOT] Not allowed: mailbox hierarchy too deep\r\n",
                mailbox_id(&store, "d/c")
            )
        );
        assert!(
            store
                .list_mailboxes("alice")
                .iter()
                .any(|m| m.name == "d/c"),
            "nothing moved"
        );
    });
}

#[test]
fn mailboxes_per_account_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let defaults = {
        let store = open_store(dir.path());
        block_on(deliver(&store, "INBOX", "x"));
        let n = store.list_mailboxes("alice").len();
        store.close();
        n
    };
    let limits = crate::store::names::MailboxLimits {
        max_mailboxes: defaults + 2,
        ..crate::store::names::MailboxLimits::DEFAULT
    };
    block_on(async {
        let store = open_store_with(dir.path(), limits);
        let mut c = Client::login(&store).await;
        let out = c
            .send("a CREATE One\r\nb CREATE Two/Three\r\nc CREATE Two\r\nd CREATE Four\r\ne RENAME INBOX Old\r\n")
            .await;
        assert_eq!(
            masked_ids(&out),
            "a OK [MAILBOXID (*)] CREATE completed\r\n\
             b NO [LIMIT] Limit reached: too many mailboxes in the account\r\n\
             c OK [MAILBOXID (*)] CREATE completed\r\n\
             d NO [LIMIT] Limit reached: too many mailboxes in the account\r\n\
             e NO [LIMIT] Limit reached: too many mailboxes in the account\r\n"
        );
        let out = c.send("f DELETE One\r\ng CREATE Four\r\n").await;
        assert_eq!(
            out,
            format!(
                "f OK DELETE completed\r\ng OK [MAILBOXID ({})] CREATE completed\r\n",
                mailbox_id(&store, "Four")
            )
        );
        assert_eq!(store.list_mailboxes("alice").len(), defaults + 2);
    });
}

#[test]
fn search_nests_as_deep_as_configured() {
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let store = open_store(dir.path());
        for s in ["w1", "w2", "w3"] {
            deliver(&store, "INBOX", s).await;
        }
        // `OR OR ... a b c ...`: `terms` search terms nest `terms - 1` deep.
        let ors = |terms: usize, hit: &str| {
            let mut q = "OR ".repeat(terms - 1);
            for i in 1..terms {
                q.push_str(&format!("SUBJECT miss{i} "));
            }
            q.push_str(&format!("SUBJECT {hit}"));
            q
        };
        let mut c = Client::login(&store).await;
        c.send("a SELECT INBOX\r\n").await;
        // Ten nested ORs used to be a syntax error.
        let out = c.send(format!("b SEARCH {}\r\n", ors(11, "w2"))).await;
        assert_eq!(out, "* SEARCH 2\r\nb OK SEARCH completed\r\n");
        // Fifty terms, right-nested and in parentheses, with UID SEARCH.
        let mut right = String::new();
        for i in 1..50 {
            right.push_str(&format!("OR (SUBJECT miss{i} NOT DELETED) "));
        }
        right.push_str("SUBJECT w3");
        let out = c.send(format!("c UID SEARCH {right}\r\n")).await;
        assert_eq!(out, "* SEARCH 3\r\nc OK SEARCH completed\r\n");
        // The configured limit: reached is fine, one more level is refused and says why.
        let config = ImapConfig {
            limits: ImapLimits {
                max_search_depth: 5,
                ..ImapLimits::default()
            },
            ..ImapConfig::default()
        };
        let mut c = Client::new(&store, config).await;
        c.send("a SELECT INBOX\r\n").await;
        let out = c.send(format!("b SEARCH {}\r\n", ors(6, "w1"))).await;
        assert_eq!(out, "* SEARCH 1\r\nb OK SEARCH completed\r\n");
        let out = c
            .send(format!("c SEARCH {}\r\nd NOOP\r\n", ors(7, "w1")))
            .await;
        assert_eq!(
            out,
            "c BAD Search criteria nested deeper than this server's limit of 5 levels \
             (OR, NOT and parentheses)\r\nd OK NOOP completed\r\n"
        );
    });
}

mod catenate;
mod i18nlevel;
mod list_children;
mod notify;
mod objectid;
mod preview;
mod replace;
/// RFC 3501 / 9051 details checked against Dovecot's behaviour.
mod rfc;
