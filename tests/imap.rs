//! End-to-end IMAP over real TCP/TLS connections: what real clients do, checked against the
//! store; IDLE wake-up on SMTP delivery; two sessions on one mailbox; UIDs across restarts.

mod common;

use std::time::{Duration, Instant};

use common::*;

const ALICE: &str = "alice@example.test";

fn login_tls(server: &TestServer) -> Client {
    login_tls_as(server, ALICE)
}

fn deliver(server: &TestServer, bodies: &[&str]) {
    let mut c = smtp_session(server);
    for body in bodies {
        assert_eq!(smtp_send(&mut c, "s@r.test", &[ALICE], body).0, 250);
    }
    c.expect("QUIT", 221);
}

#[test]
fn starttls_is_required_for_login_on_143() {
    let server = TestServer::start(&[ALICE], "");
    let mut c = Client::connect(server.addr("imap"));
    let greeting = c.line().unwrap();
    assert!(greeting.starts_with("* OK"), "{greeting}");
    let caps = ok(&mut c, "a", "CAPABILITY").join(" ");
    assert!(
        caps.contains("STARTTLS") && caps.contains("LOGINDISABLED"),
        "{caps}"
    );
    let (_, status) = imap(&mut c, "b", &format!("LOGIN {ALICE} \"{PASSWORD}\""));
    assert!(
        status.starts_with("b NO") || status.starts_with("b BAD"),
        "{status}"
    );
    ok(&mut c, "c", "STARTTLS");
    c.upgrade_tls();
    let caps = ok(&mut c, "d", "CAPABILITY").join(" ");
    assert!(
        !caps.contains("LOGINDISABLED") && caps.contains("AUTH=PLAIN"),
        "{caps}"
    );
    ok(
        &mut c,
        "e",
        &format!("AUTHENTICATE PLAIN {}", plain(ALICE, PASSWORD)),
    );
    ok(&mut c, "f", "SELECT INBOX");
    ok(&mut c, "g", "LOGOUT");
}

#[test]
fn fetch_returns_the_stored_bytes_and_structure() {
    let mut server = TestServer::start(&[ALICE], "");
    deliver(
        &server,
        &[
            "Subject: =?utf-8?q?caf=C3=A9?=\r\nFrom: Bob <bob@r.test>\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAEC\r\n--b--\r\n",
        ],
    );
    let mut c = login_tls(&server);
    let select = ok(&mut c, "s", "SELECT INBOX").join("\n");
    assert!(select.contains("* 1 EXISTS"), "{select}");
    let fetched = ok(
        &mut c,
        "f",
        "UID FETCH 1:* (UID RFC822.SIZE ENVELOPE BODYSTRUCTURE BODY.PEEK[])",
    );
    let all = fetched.join("\n");
    assert!(
        all.contains("\"multipart\" \"mixed\"") || all.contains("\"MIXED\""),
        "{all}"
    );
    assert!(all.contains("\"Bob\" NIL \"bob\" \"r.test\""), "{all}");
    let flags = ok(&mut c, "g", "FETCH 1 (FLAGS)").join("");
    assert!(
        !flags.contains("\\Seen"),
        "PEEK must not set \\Seen: {flags}"
    );
    ok(&mut c, "h", "FETCH 1 (BODY[1])");
    let flags = ok(&mut c, "i", "FETCH 1 (FLAGS)").join("");
    assert!(flags.contains("\\Seen"), "{flags}");
    ok(&mut c, "z", "LOGOUT");
    server.stop();
    let store = server.open_store();
    use surel::store::MailStore;
    let snap = store.snapshot(ALICE, "INBOX").unwrap();
    let stored = store.read(ALICE, "INBOX", snap.messages[0].uid).unwrap();
    assert!(
        all.contains(&format!("RFC822.SIZE {}", stored.len())),
        "{all}"
    );
    let stored_text = String::from_utf8_lossy(&stored).trim_end().to_string();
    assert!(all.contains(&stored_text), "BODY[] is the stored message");
}

#[test]
fn idle_sees_smtp_delivery_within_a_second() {
    let server = TestServer::start(&[ALICE], "");
    deliver(&server, &["Subject: first\r\n\r\n1\r\n"]);
    let mut c = login_tls(&server);
    ok(&mut c, "s", "SELECT INBOX");
    c.send("i IDLE\r\n");
    assert!(c.line().unwrap().starts_with("+"));
    let sent = Instant::now();
    deliver(&server, &["Subject: second\r\n\r\n2\r\n"]);
    let line = c.line().unwrap();
    assert_eq!(line, "* 2 EXISTS");
    assert!(
        sent.elapsed() < Duration::from_secs(1),
        "{:?}",
        sent.elapsed()
    );
    c.send("DONE\r\n");
    let (_, status) = collect(&mut c, "i");
    assert!(status.starts_with("i OK"), "{status}");
    ok(&mut c, "n", "NOOP");
}

#[test]
fn two_sessions_see_each_others_changes() {
    let server = TestServer::start(&[ALICE], "");
    deliver(
        &server,
        &[
            "Subject: a\r\n\r\n1\r\n",
            "Subject: b\r\n\r\n2\r\n",
            "Subject: c\r\n\r\n3\r\n",
        ],
    );
    let mut a = login_tls(&server);
    let mut b = login_tls(&server);
    ok(&mut a, "a1", "SELECT INBOX");
    ok(&mut b, "b1", "SELECT INBOX");
    ok(&mut a, "a2", "STORE 2 +FLAGS.SILENT (\\Flagged)");
    let noop = ok(&mut b, "b2", "NOOP").join("\n");
    assert!(
        noop.contains("* 2 FETCH") && noop.contains("\\Flagged"),
        "{noop}"
    );
    ok(&mut a, "a3", "STORE 1 +FLAGS.SILENT (\\Deleted)");
    ok(&mut a, "a4", "EXPUNGE");
    // During a FETCH no EXPUNGE may be sent; it comes with the NOOP.
    let noop = ok(&mut b, "b3", "NOOP").join("\n");
    assert!(noop.contains("* 1 EXPUNGE"), "{noop}");
    deliver(&server, &["Subject: d\r\n\r\n4\r\n"]);
    let noop = ok(&mut b, "b4", "NOOP").join("\n");
    assert!(noop.contains("* 3 EXISTS"), "{noop}");
}

#[test]
fn uids_are_never_reused_and_uidvalidity_survives_restart() {
    let mut server = TestServer::start(&[ALICE], "");
    deliver(
        &server,
        &["Subject: a\r\n\r\n1\r\n", "Subject: b\r\n\r\n2\r\n"],
    );
    let mut c = login_tls(&server);
    let select = ok(&mut c, "s", "SELECT INBOX").join("\n");
    let uidvalidity = select
        .split("UIDVALIDITY ")
        .nth(1)
        .and_then(|r| r.split(']').next())
        .expect("UIDVALIDITY")
        .to_string();
    ok(&mut c, "d", "UID STORE 2 +FLAGS.SILENT (\\Deleted)");
    ok(&mut c, "e", "UID EXPUNGE 2");
    ok(&mut c, "z", "LOGOUT");
    server.restart();
    deliver(&server, &["Subject: c\r\n\r\n3\r\n"]);
    let mut c = login_tls(&server);
    let select = ok(&mut c, "s", "SELECT INBOX").join("\n");
    assert!(
        select.contains(&format!("UIDVALIDITY {uidvalidity}]")),
        "{select}"
    );
    let uids = ok(&mut c, "f", "UID FETCH 1:* (UID)").join("\n");
    assert!(
        uids.contains("UID 1)") && uids.contains("UID 3)") && !uids.contains("UID 2)"),
        "{uids}"
    );
}

#[test]
fn condstore_and_qresync_resync_after_changes() {
    let server = TestServer::start(&[ALICE], "");
    deliver(
        &server,
        &[
            "Subject: a\r\n\r\n1\r\n",
            "Subject: b\r\n\r\n2\r\n",
            "Subject: c\r\n\r\n3\r\n",
        ],
    );
    let mut c = login_tls(&server);
    ok(&mut c, "e", "ENABLE QRESYNC");
    let select = ok(&mut c, "s", "SELECT INBOX").join("\n");
    let field = |text: &str, key: &str| -> String {
        text.split(&format!("{key} "))
            .nth(1)
            .and_then(|r| r.split(']').next())
            .unwrap()
            .to_string()
    };
    let uidvalidity = field(&select, "UIDVALIDITY");
    let modseq = field(&select, "HIGHESTMODSEQ");
    ok(&mut c, "z", "LOGOUT");

    // Another client changes the mailbox meanwhile.
    let mut other = login_tls(&server);
    ok(&mut other, "s", "SELECT INBOX");
    ok(&mut other, "f", "STORE 3 +FLAGS.SILENT (\\Seen)");
    ok(&mut other, "d", "STORE 1 +FLAGS.SILENT (\\Deleted)");
    ok(&mut other, "x", "EXPUNGE");

    let mut c = login_tls(&server);
    ok(&mut c, "e", "ENABLE QRESYNC");
    let resync = ok(
        &mut c,
        "s",
        &format!("SELECT INBOX (QRESYNC ({uidvalidity} {modseq}))"),
    )
    .join("\n");
    assert!(resync.contains("VANISHED (EARLIER) 1"), "{resync}");
    assert!(
        resync.contains("UID 3") && resync.contains("\\Seen"),
        "{resync}"
    );
    let changed = ok(
        &mut c,
        "f",
        &format!("UID FETCH 1:* (FLAGS) (CHANGEDSINCE {modseq})"),
    )
    .join("\n");
    assert!(
        changed.contains("UID 3") && !changed.contains("UID 2 "),
        "{changed}"
    );
}

#[test]
fn append_with_literal_and_mailbox_commands() {
    let server = TestServer::start(&[ALICE], "");
    let mut c = login_tls(&server);
    ok(&mut c, "c", "CREATE Projects/2026");
    let list = ok(&mut c, "l", "LIST \"\" \"*\"").join("\n");
    assert!(
        list.contains("Projects/2026") && list.contains("\\Sent"),
        "{list}"
    );
    let msg = "Subject: appended\r\n\r\nbody\r\n";
    c.send(&format!(
        "a APPEND Projects/2026 (\\Seen) {{{}}}\r\n",
        msg.len()
    ));
    assert!(c.line().unwrap().starts_with('+'));
    c.send(&format!("{msg}\r\n"));
    let (_, status) = collect(&mut c, "a");
    assert!(status.contains("APPENDUID"), "{status}");
    let status = ok(&mut c, "t", "STATUS Projects/2026 (MESSAGES UNSEEN SIZE)").join("");
    assert!(
        status.contains("MESSAGES 1") && status.contains("UNSEEN 0"),
        "{status}"
    );
    ok(&mut c, "s", "SELECT Projects/2026");
    ok(&mut c, "m", "MOVE 1 INBOX");
    ok(&mut c, "r", "RENAME Projects/2026 Archive/2026");
    ok(&mut c, "d", "DELETE Archive/2026");
    let (_, bad) = imap(&mut c, "x", "FETCH (((");
    assert!(bad.starts_with("x BAD"), "{bad}");
    ok(&mut c, "n", "NOOP");
}

#[test]
fn python_imaplib_reads_what_smtplib_sent() {
    let server = TestServer::start(&[ALICE], "");
    let script = r#"
import smtplib, imaplib, ssl, sys
smtp_port, imap_port, password = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
with smtplib.SMTP("127.0.0.1", smtp_port) as s:
    s.sendmail("py@r.test", ["alice@example.test"], "Subject: py\r\n\r\nfrom smtplib\r\n")
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
m = imaplib.IMAP4("127.0.0.1", imap_port)
m.starttls(ctx)
m.login("alice@example.test", password)
typ, data = m.select("INBOX")
assert typ == "OK" and data[0] == b"1", data
typ, data = m.search(None, "SUBJECT", "py")
assert data[0] == b"1", data
typ, data = m.fetch("1", "(RFC822)")
assert b"from smtplib" in data[0][1], data
m.store("1", "+FLAGS", "\\Deleted"); m.expunge()
assert m.select("INBOX")[1][0] == b"0"
m.logout()
print("python-ok")
"#;
    run_python_client(script, &server, "imap");
}

/// Every command of RFC 9051/3501 and each advertised extension, once, over a real TLS
/// connection, in the order a client would use them; each must complete with a tagged OK
/// and the untagged data named beside it.
#[test]
fn every_command_and_extension_over_tls() {
    let server = TestServer::start(&[ALICE], "");
    deliver(
        &server,
        &[
            "Subject: one\r\nFrom: a@r.test\r\nDate: Mon, 2 Nov 2026 10:00:00 +0000\r\n\r\nfirst body\r\n",
            "Subject: two\r\nFrom: b@r.test\r\nDate: Tue, 3 Nov 2026 10:00:00 +0000\r\n\r\nsecond body\r\n",
        ],
    );
    let mut c = Client::connect_tls(server.addr("imaps"));
    c.line();
    let steps: &[(&str, &[&str])] = &[
        ("CAPABILITY", &["* CAPABILITY"]),
        ("NOOP", &[]),
        ("ID (\"name\" \"test\")", &["* ID"]),
        ("AUTHENTICATE PLAIN", &[]), // replaced below with SASL-IR
        ("ENABLE CONDSTORE", &["* ENABLED"]),
        ("NAMESPACE", &["* NAMESPACE"]),
        (
            "LIST \"\" \"*\" RETURN (SUBSCRIBED CHILDREN SPECIAL-USE STATUS (MESSAGES))",
            &["\\Sent", "* STATUS"],
        ),
        ("LIST (SPECIAL-USE) \"\" \"*\"", &["\\Trash"]),
        ("LSUB \"\" \"*\"", &["* LSUB"]),
        ("CREATE Work", &[]),
        ("SUBSCRIBE Work", &[]),
        ("UNSUBSCRIBE Work", &[]),
        ("RENAME Work Play", &[]),
        (
            "STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY UNSEEN DELETED SIZE HIGHESTMODSEQ)",
            &["MESSAGES 2", "SIZE "],
        ),
        ("EXAMINE INBOX", &["[READ-ONLY]"]),
        ("SELECT INBOX (CONDSTORE)", &["* 2 EXISTS", "HIGHESTMODSEQ"]),
        (
            "FETCH 1:* (FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODY BODYSTRUCTURE UID MODSEQ)",
            &["* 2 FETCH"],
        ),
        (
            "FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)] BODY.PEEK[TEXT]<0.5> BINARY.PEEK[1] RFC822.HEADER)",
            &["first"],
        ),
        (
            "FETCH 2 (RFC822.TEXT BODY[HEADER.FIELDS.NOT (DATE)] BODY[1.MIME])",
            &["second body"],
        ),
        ("SEARCH SUBJECT two", &["* SEARCH 2"]),
        (
            "SEARCH RETURN (MIN MAX COUNT) OR FROM a@r.test BODY \"SECOND\"",
            &["* ESEARCH", "COUNT 2"],
        ),
        (
            "UID SEARCH SINCE 1-Nov-2026 SENTBEFORE 3-Nov-2026 NOT DELETED",
            &["* SEARCH 1"],
        ),
        ("STORE 1 +FLAGS (\\Answered $Label)", &["\\Answered"]),
        ("UID STORE 2 (UNCHANGEDSINCE 1) +FLAGS (\\Flagged)", &[]),
        ("COPY 1 Play", &["[COPYUID"]),
        ("UID COPY 2 Play", &["[COPYUID"]),
        ("UID MOVE 2 Play", &["* 2 EXPUNGE"]),
        ("CHECK", &[]),
        ("STORE 1 +FLAGS.SILENT (\\Deleted)", &[]),
        ("UID EXPUNGE 1", &["* 1 EXPUNGE"]),
        ("SELECT Play", &["* 3 EXISTS"]),
        ("STORE 1:2 +FLAGS.SILENT (\\Deleted)", &[]),
        ("EXPUNGE", &["EXPUNGE"]),
        ("UNSELECT", &[]),
        ("SELECT Play", &["* 1 EXISTS"]),
        ("CLOSE", &[]),
        ("DELETE Play", &[]),
    ];
    for (n, (command, expect)) in steps.iter().enumerate() {
        let tag = format!("t{n}");
        let command = if command.starts_with("AUTHENTICATE") {
            format!("AUTHENTICATE PLAIN {}", plain(ALICE, PASSWORD))
        } else {
            command.to_string()
        };
        let (untagged, status) = imap(&mut c, &tag, &command);
        assert!(
            status.starts_with(&format!("{tag} OK")),
            "{command} -> {status}\n{untagged:#?}"
        );
        let all = format!("{}\n{status}", untagged.join("\n"));
        for e in *expect {
            assert!(all.contains(e), "{command}: expected {e:?} in\n{all}");
        }
    }
    // APPEND with a non-synchronizing literal (LITERAL+), then IDLE/DONE, then LOGOUT.
    let msg = "Subject: plus\r\n\r\nx\r\n";
    c.send(&format!(
        "a1 APPEND INBOX (\\Draft) \"02-Nov-2026 10:00:00 +0000\" {{{}+}}\r\n{msg}\r\n",
        msg.len()
    ));
    let (_, status) = collect(&mut c, "a1");
    assert!(status.contains("[APPENDUID"), "{status}");
    // BINARY (RFC 3516): APPEND with a literal8.
    let bin = "Subject: bin\r\nContent-Transfer-Encoding: binary\r\n\r\n\u{1}\u{2}raw\r\n";
    c.send(&format!("a2 APPEND INBOX ~{{{}}}\r\n", bin.len()));
    assert!(c.line().unwrap().starts_with('+'));
    c.send(&format!("{bin}\r\n"));
    let (_, status) = collect(&mut c, "a2");
    assert!(status.starts_with("a2 OK"), "{status}");
    ok(&mut c, "s", "SELECT INBOX");
    c.send("i IDLE\r\n");
    assert!(c.line().unwrap().starts_with('+'));
    c.send("DONE\r\n");
    let (_, status) = collect(&mut c, "i");
    assert!(status.starts_with("i OK"), "{status}");
    let (untagged, status) = imap(&mut c, "z", "LOGOUT");
    assert!(untagged.iter().any(|l| l.starts_with("* BYE")) && status.starts_with("z OK"));
}

#[test]
fn autologout_before_login() {
    let server = TestServer::start(&[ALICE], "[limits]\nimap_prelogin_timeout_secs = 1\n");
    // Silent after the greeting.
    let start = Instant::now();
    let mut c = Client::connect(server.addr("imap"));
    assert!(c.line().unwrap().starts_with("* OK"));
    assert_eq!(
        c.line().as_deref(),
        Some("* BYE Autologout; no login in time")
    );
    assert!(c.is_closed());
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(10),
        "{waited:?}"
    );
    // Busy, but never logging in: a NOOP every 200 ms does not keep the connection.
    let start = Instant::now();
    let mut c = Client::connect(server.addr("imap"));
    assert!(c.line().unwrap().starts_with("* OK"));
    let mut noops = 0;
    let bye = loop {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "never logged out"
        );
        c.send(&format!("n{noops} NOOP\r\n"));
        let line = c.line().expect("a reply");
        if line.starts_with("* BYE") {
            break line;
        }
        assert_eq!(line, format!("n{noops} OK NOOP completed"));
        noops += 1;
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(bye, "* BYE Autologout; no login in time");
    assert!(noops >= 3, "{noops}");
    // After login the pre-login deadline no longer applies.
    let mut c = login_tls(&server);
    std::thread::sleep(Duration::from_millis(1500));
    ok(&mut c, "n", "NOOP");
    ok(&mut c, "z", "LOGOUT");
}

#[test]
fn mailbox_names_count_and_deep_searches_over_the_wire() {
    let server = TestServer::start(
        &[ALICE],
        "[limits]\nmax_mailboxes = 10\nimap_max_search_depth = 20\n",
    );
    deliver(
        &server,
        &[
            "Subject: alpha\r\n\r\none\r\n",
            "Subject: beta\r\n\r\ntwo\r\n",
        ],
    );
    let mut c = login_tls(&server);
    let listed = |c: &mut Client| ok(c, "L", "LIST \"\" *");
    let defaults = listed(&mut c);
    // Refused names leave no trace.
    let huge = "x".repeat(10_000);
    c.send(&format!("h CREATE {{{}+}}\r\n{huge}\r\n", huge.len()));
    let (untagged, status) = collect(&mut c, "h");
    assert_eq!(
        (untagged, status.as_str()),
        (vec![], "h NO [CANNOT] Not allowed: mailbox name too long")
    );
    let (untagged, status) = imap(&mut c, "u", "CREATE &Jjo");
    assert_eq!(
        (untagged, status.as_str()),
        (
            vec![],
            "u NO [CANNOT] Mailbox name is not valid modified UTF-7"
        )
    );
    assert_eq!(listed(&mut c), defaults);
    // Mailboxes up to the configured count, then NO [LIMIT].
    let mut created = 0;
    let refusal = loop {
        assert!(created <= 10, "no limit");
        let (_, status) = imap(&mut c, "c", &format!("CREATE Folder{created}"));
        if !status.starts_with("c OK") {
            break status;
        }
        created += 1;
    };
    assert_eq!(
        refusal,
        "c NO [LIMIT] Limit reached: too many mailboxes in the account"
    );
    assert_eq!(defaults.len() + created, 10);
    assert_eq!(listed(&mut c).len(), 10);
    // SEARCH: ten nested ORs work; past the configured depth, BAD names the limit.
    ok(&mut c, "s", "SELECT INBOX");
    let ors = |terms: usize| {
        let mut q = "OR ".repeat(terms - 1);
        for i in 1..terms {
            q.push_str(&format!("SUBJECT miss{i} "));
        }
        q.push_str("SUBJECT beta");
        q
    };
    let (untagged, status) = imap(&mut c, "a", &format!("SEARCH {}", ors(11)));
    assert_eq!(
        (untagged, status.as_str()),
        (vec!["* SEARCH 2".to_string()], "a OK SEARCH completed")
    );
    let (untagged, status) = imap(&mut c, "b", &format!("UID SEARCH {}", ors(21)));
    assert_eq!(
        (untagged, status.as_str()),
        (vec!["* SEARCH 2".to_string()], "b OK SEARCH completed")
    );
    let (untagged, status) = imap(&mut c, "d", &format!("SEARCH {}", ors(22)));
    assert_eq!(
        (untagged, status.as_str()),
        (
            vec![],
            "d BAD Search criteria nested deeper than this server's limit of 20 levels \
             (OR, NOT and parentheses)"
        )
    );
    ok(&mut c, "z", "LOGOUT");
}

/// NOOP until the session reports something (a delivery reaches a session's next command
/// boundary once the store's notification arrived); returns that NOOP's untagged lines.
fn noop_until_untagged(c: &mut Client, tag: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut round = 0;
    loop {
        round += 1;
        let untagged = ok(c, &format!("{tag}{round}"), "NOOP");
        if !untagged.is_empty() {
            return untagged;
        }
        assert!(Instant::now() < deadline, "no update reached the session");
        std::thread::yield_now();
    }
}

/// `* STATUS INBOX (UIDVALIDITY v HIGHESTMODSEQ m)` → (v, m).
fn validity_and_modseq(c: &mut Client, tag: &str) -> (u64, u64) {
    let status = ok(c, tag, "STATUS INBOX (UIDVALIDITY HIGHESTMODSEQ)");
    let nums: Vec<u64> = status[0]
        .trim_end_matches(')')
        .split(' ')
        .filter_map(|w| w.parse().ok())
        .collect();
    (nums[0], nums[1])
}

#[test]
fn recent_is_claimed_by_one_session_over_real_connections() {
    let server = TestServer::start(&[ALICE], "");
    deliver(&server, &["Subject: one\r\n\r\nhello\r\n"]);
    let mut a = login_tls(&server);
    let mut b = login_tls(&server);
    let (v, m) = validity_and_modseq(&mut b, "s");
    let id = mailbox_id(&mut b, "s0", "INBOX");
    // STATUS RECENT only looks.
    assert_eq!(
        ok(&mut b, "s2", "STATUS INBOX (RECENT)"),
        vec!["* STATUS INBOX (RECENT 1)"]
    );
    let selected = |recent: u32| {
        vec![
            "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)".to_string(),
            "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Flags permitted".to_string(),
            "* 1 EXISTS".to_string(),
            format!("* {recent} RECENT"),
            "* OK [UNSEEN 1] First unseen".to_string(),
            format!("* OK [UIDVALIDITY {v}] UIDs valid"),
            "* OK [UIDNEXT 2] Predicted next UID".to_string(),
            format!("* OK [MAILBOXID ({id})] Ok"),
            format!("* OK [HIGHESTMODSEQ {m}] Highest"),
        ]
    };
    assert_eq!(ok(&mut a, "a1", "SELECT INBOX"), selected(1));
    assert_eq!(ok(&mut b, "b1", "SELECT INBOX"), selected(0));
    assert_eq!(
        ok(&mut a, "a2", "FETCH 1 FLAGS"),
        vec!["* 1 FETCH (FLAGS (\\Recent))"]
    );
    assert_eq!(
        ok(&mut b, "b2", "FETCH 1 FLAGS"),
        vec!["* 1 FETCH (FLAGS ())"]
    );
    // New mail while both have INBOX selected: whoever hears of it first keeps \Recent.
    deliver(&server, &["Subject: two\r\n\r\nhello\r\n"]);
    assert_eq!(
        noop_until_untagged(&mut a, "an"),
        vec!["* 2 EXISTS", "* 2 RECENT"]
    );
    assert_eq!(
        noop_until_untagged(&mut b, "bn"),
        vec!["* 2 EXISTS", "* 0 RECENT"]
    );
    assert_eq!(ok(&mut a, "a3", "SEARCH RECENT"), vec!["* SEARCH 1 2"]);
    assert_eq!(ok(&mut b, "b3", "SEARCH OLD"), vec!["* SEARCH 1 2"]);
}

#[test]
fn long_command_lines_after_login_and_strict_sasl_everywhere() {
    let server = TestServer::start(&[ALICE], "");
    let id = format!("ID (\"x-long\" \"{}\")", "y".repeat(31 * 1024));
    // Before login the limit stays small.
    let mut c = Client::connect_tls(server.addr("imaps"));
    assert!(c.line().unwrap().starts_with("* OK"));
    let (untagged, status) = imap(&mut c, "a", &id);
    assert_eq!((untagged, status.as_str()), (vec![], "a BAD Line too long"));
    // An empty password never reaches the verifier (and costs no login attempt).
    let (untagged, status) = imap(
        &mut c,
        "b",
        &format!(
            "AUTHENTICATE PLAIN {}",
            b64(format!("\0{ALICE}\0").as_bytes())
        ),
    );
    assert_eq!(
        (untagged, status.as_str()),
        (vec![], "b BAD Empty user name or password")
    );
    c.send("c AUTHENTICATE PLAIN\r\n");
    assert_eq!(c.line().unwrap(), "+ ");
    c.send("AGFsaWNl AHB3\r\n");
    let (untagged, status) = collect(&mut c, "c");
    assert_eq!(
        (untagged, status.as_str()),
        (vec![], "c BAD Invalid base64 data")
    );
    ok(
        &mut c,
        "d",
        &format!("AUTHENTICATE PLAIN {}", plain(ALICE, PASSWORD)),
    );
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        ok(&mut c, "e", &id),
        vec![format!(
            "* ID (\"name\" \"surel\" \"version\" \"{version}\")"
        )]
    );

    // SMTP AUTH and POP3 AUTH use the same exchange.
    let mut s = Client::connect_tls(server.addr("submissions"));
    assert_eq!(s.reply().0, 220);
    s.expect("EHLO client.test", 250);
    let (code, text) = s.cmd(&format!(
        "AUTH PLAIN {}",
        b64(format!("\0{ALICE}\0").as_bytes())
    ));
    assert_eq!(
        (code, text.trim_end()),
        (501, "501 5.5.2 Invalid base64 data")
    );
    let (code, _) = s.cmd("AUTH PLAIN AGFsaWNl=AHB3");
    assert_eq!(code, 501);
    let mut p = Client::connect_tls(server.addr("pop3s"));
    assert!(p.line().unwrap().starts_with("+OK"));
    p.send(&format!(
        "AUTH PLAIN {}\r\n",
        b64(format!("\0{ALICE}\0").as_bytes())
    ));
    assert_eq!(p.line().unwrap(), "-ERR Empty user name or password");
}

#[test]
fn list_inbox_reference_and_nul_in_binary_parts() {
    let server = TestServer::start(&[ALICE], "");
    let mut c = login_tls(&server);
    ok(&mut c, "a", "SELECT INBOX");
    // curl imaps://host/INBOX sends exactly this.
    assert_eq!(
        ok(&mut c, "l", "LIST \"INBOX\" *"),
        vec!["* LIST (\\HasNoChildren) \"/\" INBOX"]
    );
    let message: &[u8] = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n\
a\0b\r\n--b--\r\n";
    c.send(&format!("p APPEND INBOX ~{{{}+}}\r\n", message.len()));
    c.send_bytes(message);
    c.send("\r\n");
    let (untagged, status) = collect(&mut c, "p");
    assert!(status.starts_with("p OK [APPENDUID "), "{status}");
    if untagged.is_empty() {
        assert_eq!(
            noop_until_untagged(&mut c, "n"),
            vec!["* 1 EXISTS", "* 1 RECENT"]
        );
    } else {
        assert_eq!(untagged, vec!["* 1 EXISTS", "* 1 RECENT"]);
    }
    c.send("f FETCH 1 (BINARY.PEEK[1] BODY.PEEK[1])\r\n");
    let line = response_line(&mut c).unwrap();
    assert_eq!(
        line,
        b"* 1 FETCH (BINARY[1] ~{3}\r\na\0b BODY[1] {3}\r\na\x80b)\r\n".to_vec()
    );
    let (untagged, status) = collect(&mut c, "f");
    assert_eq!(
        (untagged, status.as_str()),
        (vec![], "f OK FETCH completed")
    );
}

/// APPEND with a non-synchronizing literal; returns the untagged responses before the OK.
fn append_raw(c: &mut Client, tag: &str, message: &str) -> Vec<String> {
    c.send(&format!("{tag} APPEND INBOX {{{}+}}\r\n", message.len()));
    c.send(message);
    c.send("\r\n");
    let (untagged, status) = collect(c, tag);
    assert!(status.starts_with(&format!("{tag} OK")), "{status}");
    untagged
}

/// The number in `... MODSEQ (n))` or `... MODSEQ n`.
fn modseq_in(line: &str) -> u64 {
    let at = line.rfind("MODSEQ ").expect("MODSEQ") + "MODSEQ ".len();
    line[at..]
        .trim_start_matches('(')
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn envelope_qp_flags_condstore_and_list_details_over_real_connections() {
    let server = TestServer::start(&[ALICE], "");
    let mut a = login_tls(&server);
    let mut b = login_tls(&server);
    let mut c = login_tls(&server);
    ok(&mut a, "a0", "SELECT INBOX");
    assert_eq!(
        append_raw(
            &mut a,
            "a1",
            "From: <@route.example:joe@example.org>\r\nTo: group2: (foo) ;\r\nSubject: env\r\n\r\nx\r\n"
        ),
        vec!["* 1 EXISTS", "* 1 RECENT"]
    );
    assert_eq!(
        append_raw(
            &mut a,
            "a2",
            "Subject: qp\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nline  \r\nsoft= \r\nbreak=3D\r\n"
        ),
        vec!["* 2 EXISTS", "* 2 RECENT"]
    );
    let route = "((NIL \"@route.example\" \"joe\" \"example.org\"))";
    assert_eq!(
        ok(&mut a, "a3", "FETCH 1 ENVELOPE"),
        vec![format!(
            "* 1 FETCH (ENVELOPE (NIL \"env\" {route} {route} {route} \
((NIL NIL \"group2\" NIL)(NIL NIL NIL NIL)) NIL NIL NIL NIL))"
        )]
    );
    assert_eq!(
        ok(&mut a, "a4", "FETCH 2 BINARY.PEEK[1]"),
        vec!["* 2 FETCH (BINARY[1] {18}\r\nline\r\nsoftbreak=\r\n)"]
    );

    // The FLAGS list keeps a keyword until the FETCH that takes it off has been sent.
    ok(&mut b, "b0", "SELECT INBOX");
    ok(&mut a, "a5", "STORE 1 +FLAGS.SILENT ($Old)");
    noop_until_untagged(&mut b, "bn");
    ok(&mut b, "b1", "STORE 1 -FLAGS.SILENT ($Old)");
    ok(&mut b, "b2", "STORE 2 +FLAGS.SILENT ($New)");
    assert_eq!(
        noop_until_untagged(&mut a, "an"),
        vec![
            "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $New $Old)",
            "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $New $Old \\*)] Flags permitted",
            "* 1 FETCH (FLAGS (\\Recent))",
            "* 2 FETCH (FLAGS (\\Recent $New))",
        ]
    );

    // The first CONDSTORE-enabling command reports HIGHESTMODSEQ, once.
    let (_, highest) = validity_and_modseq(&mut c, "c1");
    let first = ok(&mut a, "a6", "FETCH 1 (MODSEQ)");
    assert_eq!(first.len(), 2, "{first:?}");
    assert_eq!(first[0], format!("* OK [HIGHESTMODSEQ {highest}] Highest"));
    let m1 = modseq_in(&first[1]);
    assert_eq!(first[1], format!("* 1 FETCH (MODSEQ ({m1}))"));
    let m2 = modseq_in(&ok(&mut a, "a7", "FETCH 2 (MODSEQ)")[0]);
    assert!(m1 < m2);
    assert_eq!(
        ok(&mut a, "a8", "UID SEARCH RETURN (MIN) MODSEQ 1"),
        vec![format!("* ESEARCH (TAG \"a8\") UID MIN 1 MODSEQ {m1}")]
    );
    assert_eq!(
        ok(&mut a, "a9", "UID SEARCH RETURN (MAX) MODSEQ 1"),
        vec![format!("* ESEARCH (TAG \"a9\") UID MAX 2 MODSEQ {m2}")]
    );
    // Now other sessions' flag changes come with UID and MODSEQ.
    ok(&mut b, "b3", "STORE 2 +FLAGS.SILENT (\\Seen)");
    let (_, m2) = validity_and_modseq(&mut c, "c2");
    assert_eq!(
        noop_until_untagged(&mut a, "ao"),
        vec![format!(
            "* 2 FETCH (UID 2 FLAGS (\\Seen \\Recent $New) MODSEQ ({m2}))"
        )]
    );

    // LIST-EXTENDED pattern lists, RECURSIVEMATCH alone, LSUB levels.
    for (i, cmd) in [
        "CREATE a",
        "CREATE a/b",
        "CREATE c",
        "SUBSCRIBE a/b",
        "UNSUBSCRIBE a",
        "SUBSCRIBE c",
    ]
    .iter()
    .enumerate()
    {
        ok(&mut c, &format!("m{i}"), cmd);
    }
    assert_eq!(
        ok(&mut c, "l1", "LIST \"\" (c \"a\" a*)"),
        vec![
            "* LIST (\\HasChildren) \"/\" a",
            "* LIST (\\HasNoChildren) \"/\" a/b",
            "* LIST (\\HasNoChildren) \"/\" c",
        ]
    );
    let (untagged, status) = imap(&mut c, "l2", "LIST (RECURSIVEMATCH) \"\" *");
    assert_eq!(
        (untagged, status.as_str()),
        (
            vec![],
            "l2 BAD RECURSIVEMATCH needs another selection option"
        )
    );
    assert_eq!(
        ok(&mut c, "l3", "LSUB \"\" a%"),
        vec!["* LSUB (\\Noselect) \"/\" a"]
    );
}
