//! RFC 3501 / RFC 9051 details, each asserted on the exact responses: command line limits,
//! AUTHENTICATE through the shared SASL exchange, \Recent, the FLAGS list, CONDSTORE
//! enabling, ENVELOPE addresses, BINARY decoding, LIST/LSUB.

use super::*;
use crate::net::sasl::encode_base64;

/// A session that has not logged in (plaintext allowed), fed directly.
fn fresh_session(config: ImapConfig) -> ImapSession {
    ImapSession::new(
        ImapConfig {
            allow_plaintext_auth: true,
            ..config
        },
        false,
    )
}

/// Feed `input`, answering credential checks with `pw` accepted; returns the output and the
/// credentials the session asked to verify.
fn feed_unauthenticated(s: &mut ImapSession, input: &[u8]) -> (String, Vec<(String, String)>) {
    let mut out = Vec::new();
    let mut checked = Vec::new();
    let mut rest = input;
    loop {
        let (n, ev) = s.feed(rest, &mut out);
        rest = &rest[n..];
        match ev {
            Some(ImapEvent::Authenticate { username, password }) => {
                let outcome = if password == "pw" {
                    AuthOutcome::Accepted(username.clone())
                } else {
                    AuthOutcome::Rejected
                };
                checked.push((username, password));
                s.auth_result(outcome, &mut out);
            }
            Some(other) => panic!("unexpected event {other:?}"),
            None if rest.is_empty() => break,
            None => {}
        }
    }
    (String::from_utf8_lossy(&out).into_owned(), checked)
}

#[test]
fn command_lines_are_short_before_login_and_long_after() {
    let mut s = fresh_session(ImapConfig {
        max_line: 8192,
        max_line_authenticated: 65536,
        ..ImapConfig::default()
    });
    // A 31 KB ID command, as some clients send with many fields.
    let id = format!("ID (\"x\" \"{}\")", "y".repeat(31 * 1024));
    let (out, _) = feed_unauthenticated(&mut s, format!("a {id}\r\n").as_bytes());
    assert_eq!(out, "a BAD Line too long\r\n");
    let (out, _) =
        feed_unauthenticated(&mut s, format!("b LOGIN alice pw\r\nc {id}\r\n").as_bytes());
    let version = env!("CARGO_PKG_VERSION");
    assert!(out.starts_with("b OK [CAPABILITY "), "{out}");
    assert!(
        out.ends_with(&format!(
            "* ID (\"name\" \"surel\" \"version\" \"{version}\")\r\nc OK ID completed\r\n"
        )),
        "{out}"
    );
    // Past the authenticated limit: refused, and the session goes on.
    let huge = format!("d ID (\"x\" \"{}\")\r\ne NOOP\r\n", "y".repeat(65536));
    let (out, _) = feed_unauthenticated(&mut s, huge.as_bytes());
    assert_eq!(out, "d BAD Line too long\r\ne OK NOOP completed\r\n");
}

#[test]
fn authenticate_uses_the_strict_shared_sasl_exchange() {
    let b64 = |raw: &[u8]| encode_base64(raw);
    let cases: Vec<(String, &str)> = vec![
        // Empty user name or password: refused before any credential check.
        (
            format!("a AUTHENTICATE PLAIN {}\r\n", b64(b"\0\0pw")),
            "a BAD Empty user name or password\r\n",
        ),
        (
            format!("a AUTHENTICATE PLAIN {}\r\n", b64(b"\0alice\0")),
            "a BAD Empty user name or password\r\n",
        ),
        (
            format!("a AUTHENTICATE LOGIN\r\n{}\r\n\r\n", b64(b"alice")),
            "+ VXNlcm5hbWU6\r\n+ UGFzc3dvcmQ6\r\na BAD Empty user name or password\r\n",
        ),
        (
            "a AUTHENTICATE LOGIN\r\n\r\n".to_string(),
            "+ VXNlcm5hbWU6\r\na BAD Empty user name or password\r\n",
        ),
        // Base64 the old decoder repaired (inner space, missing alphabet): refused.
        (
            "a AUTHENTICATE PLAIN\r\nAGFsaWNl AHB3\r\n".to_string(),
            "+ \r\na BAD Invalid base64 data\r\n",
        ),
        (
            "a AUTHENTICATE PLAIN\r\nAGFsaWNlAHB3=\r\n".to_string(),
            "+ \r\na BAD Invalid base64 data\r\n",
        ),
        // `*` cancels.
        (
            "a AUTHENTICATE LOGIN\r\n*\r\n".to_string(),
            "+ VXNlcm5hbWU6\r\na BAD Authentication cancelled\r\n",
        ),
        // Acting as someone else.
        (
            format!("a AUTHENTICATE PLAIN {}\r\n", b64(b"bob\0alice\0pw")),
            "a NO [AUTHORIZATIONFAILED] Cannot act as another user\r\n",
        ),
    ];
    for (input, expected) in cases {
        let mut s = fresh_session(ImapConfig::default());
        let (out, checked) = feed_unauthenticated(&mut s, input.as_bytes());
        assert_eq!(out, expected, "{input:?}");
        assert!(checked.is_empty(), "{input:?} reached the verifier");
        assert_eq!(s.state(), session::State::NotAuthenticated);
    }
    // The good paths still work, with SASL-IR and with continuations.
    let mut s = fresh_session(ImapConfig::default());
    let (out, checked) = feed_unauthenticated(
        &mut s,
        format!(
            "a AUTHENTICATE LOGIN {}\r\n{}\r\n",
            b64(b"alice"),
            b64(b"pw")
        )
        .as_bytes(),
    );
    assert!(
        out.starts_with("+ UGFzc3dvcmQ6\r\na OK [CAPABILITY "),
        "{out}"
    );
    assert_eq!(checked, vec![("alice".to_string(), "pw".to_string())]);
}

/// Untagged lines of a command's output, and its tagged line.
fn split(out: &str) -> (Vec<&str>, &str) {
    let mut lines: Vec<&str> = out.split_terminator("\r\n").collect();
    let tagged = lines.pop().expect("a tagged line");
    (lines, tagged)
}

fn uidvalidity(store: &LogStore, mailbox: &str) -> u32 {
    store.snapshot("alice", mailbox).unwrap().uidvalidity
}

fn highest_modseq(store: &LogStore) -> u64 {
    store.snapshot("alice", "INBOX").unwrap().highest_modseq
}

const FLAGS: &str = "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)";
const PERMANENT: &str =
    "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Flags permitted";

#[test]
fn recent_belongs_to_exactly_one_session() {
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let store = open_store(dir.path());
        deliver(&store, "INBOX", "one").await;
        deliver(&store, "INBOX", "two").await;
        // One configuration, as the runtime shares it between every session of the process.
        let config = ImapConfig::default();
        let mut a = Client::new(&store, config.clone()).await;
        let mut b = Client::new(&store, config.clone()).await;
        let mut c = Client::new(&store, config.clone()).await;
        let v = uidvalidity(&store, "INBOX");
        let id = mailbox_id(&store, "INBOX");
        let select = |recent: u32, next: u32, tag: &str, verb: &str, mode: &str| {
            let m = highest_modseq(&store);
            format!(
                "{FLAGS}\r\n{}\r\n* {n} EXISTS\r\n* {recent} RECENT\r\n* OK [UNSEEN 1] First unseen\r\n\
* OK [UIDVALIDITY {v}] UIDs valid\r\n* OK [UIDNEXT {next}] Predicted next UID\r\n\
* OK [MAILBOXID ({id})] Ok\r\n* OK [HIGHESTMODSEQ {m}] Highest\r\n{tag} OK [{mode}] {verb} completed\r\n",
                if mode == "READ-ONLY" {
                    "* OK [PERMANENTFLAGS ()] Read-only mailbox"
                } else {
                    PERMANENT
                },
                n = next - 1,
            )
        };
        // Nobody has selected INBOX yet: both messages are recent for whoever comes first.
        assert_eq!(
            c.send("s1 STATUS INBOX (MESSAGES RECENT)\r\n").await,
            "* STATUS INBOX (MESSAGES 2 RECENT 2)\r\ns1 OK STATUS completed\r\n"
        );
        assert_eq!(
            a.send("a1 SELECT INBOX\r\n").await,
            select(2, 3, "a1", "SELECT", "READ-WRITE")
        );
        assert_eq!(
            b.send("b1 SELECT INBOX\r\n").await,
            select(0, 3, "b1", "SELECT", "READ-WRITE")
        );
        assert_eq!(
            c.send("s2 STATUS INBOX (RECENT)\r\n").await,
            "* STATUS INBOX (RECENT 0)\r\ns2 OK STATUS completed\r\n"
        );
        assert_eq!(
            a.send("a2 FETCH 1:* FLAGS\r\n").await,
            "* 1 FETCH (FLAGS (\\Recent))\r\n* 2 FETCH (FLAGS (\\Recent))\r\na2 OK FETCH completed\r\n"
        );
        assert_eq!(
            b.send("b2 FETCH 1:* FLAGS\r\n").await,
            "* 1 FETCH (FLAGS ())\r\n* 2 FETCH (FLAGS ())\r\nb2 OK FETCH completed\r\n"
        );

        // A message arriving while both have INBOX selected: the first to learn of it wins.
        deliver(&store, "INBOX", "three").await;
        a.settle().await;
        b.settle().await;
        assert_eq!(
            a.send("a3 NOOP\r\n").await,
            "* 3 EXISTS\r\n* 3 RECENT\r\na3 OK NOOP completed\r\n"
        );
        assert_eq!(
            b.send("b3 NOOP\r\n").await,
            "* 3 EXISTS\r\n* 0 RECENT\r\nb3 OK NOOP completed\r\n"
        );

        // One more: STATUS and EXAMINE see it as recent but do not take it away.
        deliver(&store, "INBOX", "four").await;
        assert_eq!(
            c.send("s3 STATUS INBOX (RECENT)\r\n").await,
            "* STATUS INBOX (RECENT 1)\r\ns3 OK STATUS completed\r\n"
        );
        assert_eq!(
            c.send("e1 EXAMINE INBOX\r\n").await,
            select(1, 5, "e1", "EXAMINE", "READ-ONLY")
        );
        assert_eq!(
            c.send("e2 FETCH 4 FLAGS\r\n").await,
            "* 4 FETCH (FLAGS (\\Recent))\r\ne2 OK FETCH completed\r\n"
        );
        b.settle().await;
        assert_eq!(
            b.send("b4 NOOP\r\n").await,
            "* 4 EXISTS\r\n* 1 RECENT\r\nb4 OK NOOP completed\r\n"
        );
        a.settle().await;
        assert_eq!(
            a.send("a4 NOOP\r\n").await,
            "* 4 EXISTS\r\n* 3 RECENT\r\na4 OK NOOP completed\r\n"
        );

        // SEARCH RECENT / NEW / OLD follow the session's own set.
        let out = a.send("a5 STORE 1 +FLAGS.SILENT (\\Seen)\r\n").await;
        assert_eq!(out, "a5 OK STORE completed\r\n");
        assert_eq!(
            a.send("a6 SEARCH RECENT\r\n").await,
            "* SEARCH 1 2 3\r\na6 OK SEARCH completed\r\n"
        );
        assert_eq!(
            a.send("a7 SEARCH NEW\r\n").await,
            "* SEARCH 2 3\r\na7 OK SEARCH completed\r\n"
        );
        assert_eq!(
            a.send("a8 SEARCH OLD\r\n").await,
            "* SEARCH 4\r\na8 OK SEARCH completed\r\n"
        );
        assert_eq!(
            b.send("b5 SEARCH RECENT\r\n").await,
            "* SEARCH 4\r\n* 1 FETCH (FLAGS (\\Seen))\r\nb5 OK SEARCH completed\r\n"
        );
        // Expunged messages leave the set.
        let out = a
            .send("a9 STORE 2 +FLAGS.SILENT (\\Deleted)\r\na10 EXPUNGE\r\na11 SEARCH RECENT\r\n")
            .await;
        assert_eq!(
            out,
            "a9 OK STORE completed\r\n* 2 EXPUNGE\r\na10 OK EXPUNGE completed\r\n\
* SEARCH 1 2\r\na11 OK SEARCH completed\r\n"
        );
    });
}

#[test]
fn imap4rev2_sessions_see_no_recent() {
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let store = open_store(dir.path());
        deliver(&store, "INBOX", "one").await;
        let config = ImapConfig::default();
        let mut c = Client::new(&store, config.clone()).await;
        assert_eq!(
            c.send("a ENABLE IMAP4rev2\r\n").await,
            "* ENABLED IMAP4rev2\r\na OK ENABLE completed\r\n"
        );
        let v = uidvalidity(&store, "INBOX");
        let m = highest_modseq(&store);
        assert_eq!(
            c.send("b SELECT INBOX\r\n").await,
            format!(
                "{FLAGS}\r\n{PERMANENT}\r\n* 1 EXISTS\r\n* OK [UIDVALIDITY {v}] UIDs valid\r\n\
* OK [UIDNEXT 2] Predicted next UID\r\n* OK [MAILBOXID ({})] Ok\r\n\
* OK [HIGHESTMODSEQ {m}] Highest\r\n* LIST () \"/\" INBOX\r\nb OK [READ-WRITE] SELECT completed\r\n",
                mailbox_id(&store, "INBOX")
            )
        );
        assert_eq!(
            c.send("c FETCH 1 FLAGS\r\n").await,
            "* 1 FETCH (FLAGS ())\r\nc OK FETCH completed\r\n"
        );
        deliver(&store, "INBOX", "two").await;
        c.settle().await;
        assert_eq!(
            c.send("d NOOP\r\n").await,
            "* 2 EXISTS\r\nd OK NOOP completed\r\n"
        );
    });
}

#[test]
fn flags_list_never_drops_a_keyword_a_message_still_shows() {
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let store = open_store(dir.path());
        deliver(&store, "INBOX", "one").await;
        deliver(&store, "INBOX", "two").await;
        let config = ImapConfig::default();
        let mut a = Client::new(&store, config.clone()).await;
        let mut b = Client::new(&store, config.clone()).await;
        a.send("a1 SELECT INBOX\r\n").await;
        a.send("a2 STORE 1 +FLAGS.SILENT ($Old)\r\n").await;
        b.send("b1 SELECT INBOX\r\n").await;
        a.send("a3 NOOP\r\n").await;
        // Another session swaps the keywords: $Old off message 1, $New on message 2.
        b.send("b2 STORE 1 -FLAGS.SILENT ($Old)\r\nb3 STORE 2 +FLAGS.SILENT ($New)\r\n")
            .await;
        a.settle().await;
        let out = a.send("a4 NOOP\r\n").await;
        assert_eq!(
            split(&out),
            (
                vec![
                    "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $New $Old)",
                    "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $New $Old \\*)] Flags permitted",
                    "* 1 FETCH (FLAGS (\\Recent))",
                    "* 2 FETCH (FLAGS (\\Recent $New))",
                ],
                "a4 OK NOOP completed"
            )
        );
    });
}

#[test]
fn first_condstore_command_reports_highestmodseq() {
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let store = open_store(dir.path());
        for s in ["one", "two", "three"] {
            deliver(&store, "INBOX", s).await;
        }
        let config = ImapConfig::default();
        let mut a = Client::new(&store, config.clone()).await;
        let mut b = Client::new(&store, config.clone()).await;
        a.send("a1 SELECT INBOX\r\n").await;
        b.send("b1 SELECT INBOX\r\n").await;
        // Raise message 3's MODSEQ above the others.
        b.send("b2 STORE 3 +FLAGS.SILENT (\\Flagged)\r\n").await;
        a.settle().await;
        a.send("a2 NOOP\r\n").await;
        let snap = store.snapshot("alice", "INBOX").unwrap();
        let modseq = |uid: u32| snap.messages.iter().find(|m| m.uid == uid).unwrap().modseq;
        let highest = snap.highest_modseq;
        assert!(modseq(3) > modseq(1));
        assert_eq!(
            a.send("a3 FETCH 1 (MODSEQ)\r\n").await,
            format!(
                "* OK [HIGHESTMODSEQ {highest}] Highest\r\n* 1 FETCH (MODSEQ ({}))\r\na3 OK FETCH completed\r\n",
                modseq(1)
            )
        );
        // Only the first time.
        assert_eq!(
            a.send("a4 FETCH 1 (MODSEQ)\r\n").await,
            format!(
                "* 1 FETCH (MODSEQ ({}))\r\na4 OK FETCH completed\r\n",
                modseq(1)
            )
        );
        // ESEARCH MIN / MAX: the MODSEQ of the message returned, not of every match.
        let search = |ret: &str, tag: &str| format!("{tag} UID SEARCH RETURN ({ret}) MODSEQ 1\r\n");
        assert_eq!(
            a.send(search("MIN", "a5")).await,
            format!(
                "* ESEARCH (TAG \"a5\") UID MIN 1 MODSEQ {}\r\na5 OK SEARCH completed\r\n",
                modseq(1)
            )
        );
        assert_eq!(
            a.send(search("MAX", "a6")).await,
            format!(
                "* ESEARCH (TAG \"a6\") UID MAX 3 MODSEQ {}\r\na6 OK SEARCH completed\r\n",
                modseq(3)
            )
        );
        assert_eq!(
            a.send(search("MIN COUNT", "a7")).await,
            format!(
                "* ESEARCH (TAG \"a7\") UID MIN 1 COUNT 3 MODSEQ {}\r\na7 OK SEARCH completed\r\n",
                modseq(3)
            )
        );
        // Unsolicited FETCH after CONDSTORE carries UID and MODSEQ (RFC 7162 §3.1).
        b.send("b3 STORE 2 +FLAGS.SILENT (\\Seen)\r\n").await;
        a.settle().await;
        let snap = store.snapshot("alice", "INBOX").unwrap();
        let m2 = snap.messages.iter().find(|m| m.uid == 2).unwrap().modseq;
        assert_eq!(
            a.send("a8 NOOP\r\n").await,
            format!(
                "* 2 FETCH (UID 2 FLAGS (\\Seen \\Recent) MODSEQ ({m2}))\r\na8 OK NOOP completed\r\n"
            )
        );
    });
}

async fn deliver_raw(store: &LogStore, raw: &[u8]) {
    store_raw(store, "INBOX", raw, 1_700_000_000).await;
}

#[test]
fn binary_decodes_quoted_printable_and_never_sends_nul_in_a_plain_literal() {
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let store = open_store(dir.path());
        deliver_raw(
            &store,
            b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\r\n\
trailing   \r\nsoft=  \r\nbreak caf=C3=A9\r\n\
--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n\
a\0b\r\n--b--\r\n",
        )
        .await;
        let mut c = Client::new(&store, ImapConfig::default()).await;
        c.send("a SELECT INBOX\r\n").await;
        assert_eq!(
            c.send("b FETCH 1 (BINARY.PEEK[1] BINARY.SIZE[1])\r\n")
                .await,
            "* 1 FETCH (BINARY[1] {25}\r\ntrailing\r\nsoftbreak caf\u{e9} BINARY.SIZE[1] 25)\r\nb OK FETCH completed\r\n"
        );
        // BINARY[] sends NUL in literal8; BODY[] has no such form, so NUL becomes 0x80.
        let out = c.send("c FETCH 1 (BINARY.PEEK[2] BODY.PEEK[2])\r\n").await;
        let expected: &[u8] =
            b"* 1 FETCH (BINARY[2] ~{3}\r\na\0b BODY[2] {3}\r\na\x80b)\r\nc OK FETCH completed\r\n";
        assert_eq!(out, String::from_utf8_lossy(expected));
        assert!(!out.contains(" {3}\r\na\0"), "{out:?}");
    });
}

#[test]
fn list_reference_pattern_lists_and_lsub_levels() {
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let store = open_store(dir.path());
        let mut c = Client::login(&store).await;
        let out = c
            .send(
                "a0 CREATE a\r\na1 CREATE a/b\r\na2 CREATE c\r\na3 SUBSCRIBE a/b\r\n\
a4 UNSUBSCRIBE a\r\na5 SUBSCRIBE c\r\n",
            )
            .await;
        assert!(out.ends_with("a5 OK SUBSCRIBE completed\r\n"), "{out}");
        // The reference and the pattern are joined as written (curl's imap://host/INBOX).
        assert_eq!(
            c.send("l1 LIST \"INBOX\" *\r\n").await,
            "* LIST (\\HasNoChildren) \"/\" INBOX\r\nl1 OK LIST completed\r\n"
        );
        assert_eq!(
            c.send("l2 LIST \"a/\" %\r\n").await,
            "* LIST (\\HasNoChildren) \"/\" a/b\r\nl2 OK LIST completed\r\n"
        );
        // Several patterns (RFC 5258 §3): each mailbox once, in the usual order.
        assert_eq!(
            c.send("l3 LIST \"\" (c \"a\" a*)\r\n").await,
            "* LIST (\\HasChildren) \"/\" a\r\n* LIST (\\HasNoChildren) \"/\" a/b\r\n\
* LIST (\\HasNoChildren) \"/\" c\r\nl3 OK LIST completed\r\n"
        );
        assert_eq!(
            c.send("l4 LIST (SUBSCRIBED) \"\" (a* c)\r\n").await,
            "* LIST (\\HasNoChildren \\Subscribed) \"/\" a/b\r\n\
* LIST (\\HasNoChildren \\Subscribed) \"/\" c\r\nl4 OK LIST completed\r\n"
        );
        assert_eq!(
            c.send("l5 LIST (RECURSIVEMATCH) \"\" *\r\n").await,
            "l5 BAD RECURSIVEMATCH needs another selection option\r\n"
        );
        // LSUB with %: the unsubscribed level above a subscribed mailbox is \Noselect.
        assert_eq!(
            c.send("l6 LSUB \"\" a%\r\n").await,
            "* LSUB (\\Noselect) \"/\" a\r\nl6 OK LSUB completed\r\n"
        );
        assert_eq!(
            c.send("l7 LSUB \"\" a*\r\n").await,
            "* LSUB () \"/\" a/b\r\nl7 OK LSUB completed\r\n"
        );
    });
}
