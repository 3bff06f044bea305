//! End-to-end POP3: mail delivered over SMTP, fetched over POP3 (STLS on the plain port and
//! implicit TLS), compared byte for byte with what the store holds.

mod common;

use common::*;
use surel::store::MailStore;

fn deliver(server: &TestServer, to: &str, bodies: &[&str]) {
    let mut c = smtp_session(server);
    for body in bodies {
        let (code, text) = smtp_send(&mut c, "s@r.test", &[to], body);
        assert_eq!(code, 250, "{text}");
    }
    c.expect("QUIT", 221);
}

/// POP3 reply line; asserts it starts with `+OK` (or `-ERR` when `ok` is false).
fn pop(c: &mut Client, line: &str, ok: bool) -> String {
    c.send(&format!("{line}\r\n"));
    let reply = c.line().expect("reply");
    assert_eq!(reply.starts_with("+OK"), ok, "{line:?} -> {reply}");
    reply
}

/// Reads a multi-line body up to the terminating ".", undoing dot-stuffing.
fn multiline(c: &mut Client) -> Vec<u8> {
    let raw = c.raw_until(b"\r\n.\r\n");
    let body = &raw[..raw.len() - 3];
    let mut out = Vec::new();
    for line in body.split_inclusive(|b| *b == b'\n') {
        out.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
    }
    out
}

fn login_stls(server: &TestServer, user: &str) -> Client {
    let mut c = Client::connect(server.addr("pop3"));
    assert!(c.line().unwrap().starts_with("+OK"));
    pop(&mut c, "STLS", true);
    c.upgrade_tls();
    pop(&mut c, &format!("USER {user}"), true);
    pop(&mut c, &format!("PASS {PASSWORD}"), true);
    c
}

/// Logs in once the maildrop lock of a dropped session is gone (`-ERR [IN-USE]` until then).
fn login_when_released(server: &TestServer, user: &str) -> Client {
    let mut session = None;
    wait_until(
        "the maildrop lock",
        std::time::Duration::from_secs(5),
        || {
            let mut c = Client::connect(server.addr("pop3"));
            assert!(c.line().unwrap().starts_with("+OK"));
            pop(&mut c, "STLS", true);
            c.upgrade_tls();
            pop(&mut c, &format!("USER {user}"), true);
            c.send(&format!("PASS {PASSWORD}\r\n"));
            let reply = c.line().expect("reply");
            if reply.starts_with("+OK") {
                session = Some(c);
                return true;
            }
            assert!(reply.starts_with("-ERR [IN-USE]"), "{reply}");
            false
        },
    );
    session.unwrap()
}

#[test]
fn retr_returns_exactly_the_stored_bytes() {
    let mut server = TestServer::start(&["alice@example.test"], "");
    deliver(
        &server,
        "alice@example.test",
        &[
            "Subject: one\r\n\r\nplain body\r\n",
            "Subject: two\r\n\r\n..starts with dot\r\n...two dots\r\nend\r\n",
        ],
    );
    let mut c = login_stls(&server, "alice@example.test");
    let stat = pop(&mut c, "STAT", true);
    let parts: Vec<&str> = stat.split_whitespace().collect();
    assert_eq!(parts[1], "2");
    pop(&mut c, "LIST", true);
    let list = String::from_utf8(multiline(&mut c)).unwrap();
    let sizes: Vec<usize> = list
        .lines()
        .map(|l| l.split(' ').nth(1).unwrap().parse().unwrap())
        .collect();
    assert_eq!(sizes.len(), 2);
    assert_eq!(
        parts[2].parse::<usize>().unwrap(),
        sizes.iter().sum::<usize>()
    );
    let mut fetched = Vec::new();
    for n in 1..=2 {
        pop(&mut c, &format!("RETR {n}"), true);
        let bytes = multiline(&mut c);
        assert_eq!(
            bytes.len(),
            sizes[n - 1],
            "LIST size is the exact octet count"
        );
        fetched.push(bytes);
    }
    pop(&mut c, "QUIT", true);
    drop(c);
    server.stop();
    let store = server.open_store();
    let snap = store.snapshot("alice@example.test", "INBOX").unwrap();
    for (meta, bytes) in snap.messages.iter().zip(&fetched) {
        assert_eq!(
            &store.read("alice@example.test", "INBOX", meta.uid).unwrap(),
            bytes
        );
    }
    assert!(fetched[1].ends_with(b"\r\n.starts with dot\r\n..two dots\r\nend\r\n"));
}

#[test]
fn dele_rset_quit_and_dropped_connections() {
    let server = TestServer::start(&["alice@example.test"], "");
    deliver(
        &server,
        "alice@example.test",
        &[
            "Subject: a\r\n\r\n1\r\n",
            "Subject: b\r\n\r\n2\r\n",
            "Subject: c\r\n\r\n3\r\n",
        ],
    );

    // Dropped without QUIT: nothing deleted.
    let mut c = login_stls(&server, "alice@example.test");
    pop(&mut c, "DELE 1", true);
    drop(c);

    let mut c = login_when_released(&server, "alice@example.test");
    assert!(pop(&mut c, "STAT", true).starts_with("+OK 3 "));
    pop(&mut c, "DELE 1", true);
    pop(&mut c, "DELE 1", false);
    pop(&mut c, "RETR 1", false);
    pop(&mut c, "RSET", true);
    pop(&mut c, "RETR 1", true);
    multiline(&mut c);
    pop(&mut c, "DELE 2", true);
    assert!(pop(&mut c, "STAT", true).starts_with("+OK 2 "));
    pop(&mut c, "QUIT", true);
    drop(c);

    let mut c = login_stls(&server, "alice@example.test");
    assert!(pop(&mut c, "STAT", true).starts_with("+OK 2 "));
    pop(&mut c, "RETR 2", true);
    assert!(multiline(&mut c).ends_with(b"Subject: c\r\n\r\n3\r\n"));
    pop(&mut c, "QUIT", true);
}

#[test]
fn uidl_is_stable_across_sessions_and_restarts() {
    let mut server = TestServer::start(&["alice@example.test"], "");
    deliver(
        &server,
        "alice@example.test",
        &["Subject: a\r\n\r\n1\r\n", "Subject: b\r\n\r\n2\r\n"],
    );
    let uidl = |server: &TestServer| {
        let mut c = login_stls(server, "alice@example.test");
        pop(&mut c, "UIDL", true);
        let list = String::from_utf8(multiline(&mut c)).unwrap();
        let single = pop(&mut c, "UIDL 2", true);
        pop(&mut c, "QUIT", true);
        (list, single)
    };
    let (first, single) = uidl(&server);
    let ids: Vec<&str> = first
        .lines()
        .map(|l| l.split(' ').nth(1).unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1]);
    assert!(single.ends_with(ids[1]));
    assert_eq!(uidl(&server).0, first);
    server.restart();
    assert_eq!(uidl(&server).0, first);
}

#[test]
fn second_session_gets_in_use() {
    let server = TestServer::start(&["alice@example.test"], "");
    deliver(&server, "alice@example.test", &["Subject: a\r\n\r\n1\r\n"]);
    let mut first = login_stls(&server, "alice@example.test");
    let mut c = Client::connect(server.addr("pop3"));
    c.line();
    pop(&mut c, "STLS", true);
    c.upgrade_tls();
    pop(&mut c, "USER alice@example.test", true);
    let reply = pop(&mut c, &format!("PASS {PASSWORD}"), false);
    assert!(reply.contains("[IN-USE]"), "{reply}");
    pop(&mut first, "QUIT", true);
}

#[test]
fn cleartext_auth_is_refused_and_capa_reflects_tls() {
    let server = TestServer::start(&["alice@example.test"], "");
    let mut c = Client::connect(server.addr("pop3"));
    c.line();
    pop(&mut c, "CAPA", true);
    let capa = String::from_utf8(multiline(&mut c)).unwrap();
    assert!(capa.contains("STLS"), "{capa}");
    assert!(!capa.contains("SASL"), "{capa}");
    let reply = pop(&mut c, "USER alice@example.test", false);
    assert!(reply.contains("[AUTH]"), "{reply}");
    pop(&mut c, "FROB", false);
    pop(&mut c, &format!("NOOP {}", "x".repeat(5000)), false);
    pop(&mut c, "STLS", true);
    c.upgrade_tls();
    pop(&mut c, "CAPA", true);
    let capa = String::from_utf8(multiline(&mut c)).unwrap();
    assert!(!capa.contains("STLS"), "{capa}");
    assert!(capa.contains("SASL PLAIN LOGIN"), "{capa}");
    let reply = pop(
        &mut c,
        &format!("AUTH PLAIN {}", plain("alice@example.test", "nope")),
        false,
    );
    assert!(reply.contains("[AUTH]"), "{reply}");
    pop(
        &mut c,
        &format!("AUTH PLAIN {}", plain("alice@example.test", PASSWORD)),
        true,
    );
    pop(&mut c, "STAT", true);
    pop(&mut c, "QUIT", true);
}

#[test]
fn implicit_tls_top_and_pipelining() {
    let server = TestServer::start(&["alice@example.test"], "");
    deliver(
        &server,
        "alice@example.test",
        &["Subject: t\r\n\r\nl1\r\nl2\r\nl3\r\n"],
    );
    let mut c = Client::connect_tls(server.addr("pop3s"));
    assert!(c.line().unwrap().starts_with("+OK"));
    c.send(&format!(
        "USER alice@example.test\r\nPASS {PASSWORD}\r\nTOP 1 1\r\nNOOP\r\nQUIT\r\n"
    ));
    for _ in 0..3 {
        assert!(c.line().unwrap().starts_with("+OK"));
    }
    let top = multiline(&mut c);
    assert!(
        top.ends_with(b"Subject: t\r\n\r\nl1\r\n"),
        "{}",
        String::from_utf8_lossy(&top)
    );
    assert!(c.line().unwrap().starts_with("+OK"));
    assert!(c.line().unwrap().starts_with("+OK"));
}

#[test]
fn python_poplib_fetches_what_smtplib_sent() {
    let server = TestServer::start(&["alice@example.test"], "");
    let script = r#"
import smtplib, poplib, ssl, sys
smtp_port, pop_port, password = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
body = "Subject: from python\r\n\r\nhello from smtplib\r\n.dot line\r\n"
with smtplib.SMTP("127.0.0.1", smtp_port) as s:
    s.ehlo("py.test")
    s.sendmail("py@r.test", ["alice@example.test"], body)
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
p = poplib.POP3("127.0.0.1", pop_port)
p.stls(ctx)
p.user("alice@example.test"); p.pass_(password)
count, _ = p.stat()
resp, lines, octets = p.retr(count)
text = b"\r\n".join(lines)
assert b"hello from smtplib" in text and b"\r\n.dot line" in text, text
p.dele(count); p.quit()
p = poplib.POP3("127.0.0.1", pop_port); p.stls(ctx)
p.user("alice@example.test"); p.pass_(password)
assert p.stat()[0] == count - 1
p.quit()
print("python-ok")
"#;
    run_python_client(script, &server, "pop3");
}
