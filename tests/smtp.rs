//! End-to-end SMTP: the real server on ephemeral loopback ports, real TCP/TLS exchanges, and the
//! stored bytes read back through the store's public API.

mod common;

use common::*;
use std::time::Duration;

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn mx_delivers_to_local_recipients_with_trace_headers() {
    let mut server = TestServer::start(
        &["alice@example.test", "bob@example.test"],
        "[aliases]\n\"team@example.test\" = [\"alice@example.test\", \"bob@example.test\"]\n",
    );
    let mut c = smtp_session(&server);
    let body = "Subject: hello\r\nMessage-ID: <1@x>\r\n\r\nfirst line\r\n..dotted\r\n";
    let (code, text) = smtp_send(
        &mut c,
        "sender@remote.test",
        &["alice@example.test", "BOB+news@EXAMPLE.TEST"],
        body,
    );
    assert_eq!(code, 250, "{text}");
    assert!(text.contains("2.0.0"), "{text}");
    // The alias expands to both accounts; each gets the message once more.
    let (code, _) = smtp_send(
        &mut c,
        "",
        &["team@example.test"],
        "Subject: two\r\n\r\nx\r\n",
    );
    assert_eq!(code, 250);
    c.expect("QUIT", 221);
    server.stop();

    for account in ["alice@example.test", "bob@example.test"] {
        let msgs = inbox(&server, account);
        assert_eq!(msgs.len(), 2, "{account}");
        let first = &msgs[0];
        assert!(first.starts_with(b"Return-Path: <sender@remote.test>\r\nDelivered-To: "));
        assert!(contains(first, &format!("Delivered-To: {account}\r\n")));
        assert!(contains(first, "Received: from client.test"));
        assert!(contains(first, "by mx.test"));
        // Dot-unstuffing: "..dotted" arrives as ".dotted", and the body is exact.
        assert!(
            first.ends_with(b"\r\n\r\nfirst line\r\n.dotted\r\n"),
            "{:?}",
            String::from_utf8_lossy(first)
        );
        assert!(msgs[1].starts_with(b"Return-Path: <>\r\n"));
    }
}

#[test]
fn mx_rejects_unknown_users_and_relaying_but_takes_postmaster() {
    let server = TestServer::start(&["alice@example.test"], "");
    let mut c = smtp_session(&server);
    c.expect("MAIL FROM:<x@remote.test>", 250);
    let text = c.expect("RCPT TO:<nobody@example.test>", 550);
    assert!(text.contains("5.1.1"), "{text}");
    let (code, text) = c.cmd("RCPT TO:<victim@elsewhere.test>");
    assert!(code == 554 || code == 550, "{text}");
    assert!(text.contains("5.7.1"), "{text}");
    c.expect("RCPT TO:<postmaster@example.test>", 250);
    c.expect("RCPT TO:<postmaster>", 250);
    c.expect("RCPT TO:<PostMaster@localhost>", 250);
    c.expect("DATA", 354);
    c.send("Subject: pm\r\n\r\nhi\r\n");
    c.expect(".", 250);
    c.expect("QUIT", 221);
}

#[test]
fn protocol_errors_get_the_right_codes_and_the_session_goes_on() {
    let server = TestServer::start(&["alice@example.test"], "[limits]\nmax_errors = 6\n");
    let mut c = Client::connect(server.addr("smtp"));
    c.reply();
    c.expect("MAIL FROM:<a@b.test>", 503); // before EHLO
    c.expect("EHLO c.test", 250);
    c.expect("FROB", 500);
    c.expect("RCPT TO:<alice@example.test>", 503);
    c.expect("MAIL FROM:<not an address", 501);
    let text = c.expect("VRFY alice", 252);
    assert!(text.contains("2."), "{text}");
    c.expect("NOOP", 250);
    c.expect("HELP", 214);
    let long = format!("NOOP {}", "x".repeat(5000));
    let text = c.expect(&long, 500);
    assert!(text.contains("5.5.2"), "{text}");
    c.expect("RSET", 250);
    // A few more errors reach max_errors: 421 and the connection closes.
    let mut codes = Vec::new();
    while codes.last() != Some(&421) && codes.len() < 4 {
        codes.push(c.cmd("FROB").0);
    }
    assert_eq!(codes.last(), Some(&421), "{codes:?}");
    assert!(c.is_closed());
}

#[test]
fn pipelined_transaction_in_one_write_is_answered_in_order() {
    let mut server = TestServer::start(&["alice@example.test", "bob@example.test"], "");
    let mut c = Client::connect(server.addr("smtp"));
    c.reply();
    c.send(
        "EHLO p.test\r\nMAIL FROM:<s@r.test>\r\nRCPT TO:<alice@example.test>\r\n\
         RCPT TO:<nobody@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n\
         Subject: piped\r\n\r\nbody\r\n.\r\nQUIT\r\n",
    );
    let codes: Vec<u16> = (0..7).map(|_| c.reply().0).collect();
    assert_eq!(codes, vec![250, 250, 250, 550, 250, 354, 250]);
    assert_eq!(c.reply().0, 221);
    server.stop();
    assert_eq!(inbox(&server, "alice@example.test").len(), 1);
    assert_eq!(inbox(&server, "bob@example.test").len(), 1);
}

#[test]
fn smuggled_end_of_data_markers_do_not_end_the_message() {
    let mut server = TestServer::start(&["alice@example.test", "eve@example.test"], "");
    let mut c = smtp_session(&server);
    c.expect("MAIL FROM:<s@r.test>", 250);
    c.expect("RCPT TO:<alice@example.test>", 250);
    c.expect("DATA", 354);
    // Each of these would end DATA on a lenient server, and the MAIL FROM after it would start
    // a second, smuggled transaction.
    for fake in ["\n.\n", "\r.\r", "\n.\r\n", "\r\n.\n", "\r.\r\n"] {
        c.send(&format!("Subject: s\r\n\r\nbefore{fake}MAIL FROM:<evil@r.test>\r\nRCPT TO:<eve@example.test>\r\nDATA\r\n"));
    }
    c.expect(".", 250);
    c.expect("QUIT", 221);
    server.stop();
    assert_eq!(inbox(&server, "alice@example.test").len(), 1);
    assert!(inbox(&server, "eve@example.test").is_empty());
}

#[test]
fn size_limits_declared_and_actual() {
    let mut server = TestServer::start(
        &["alice@example.test"],
        "[limits]\nmax_message_size = 1000\n",
    );
    let mut c = smtp_session(&server);
    let text = c.expect("MAIL FROM:<s@r.test> SIZE=5000", 552);
    assert!(text.contains("5.3.4"), "{text}");
    c.expect("MAIL FROM:<s@r.test> SIZE=100", 250);
    c.expect("RCPT TO:<alice@example.test>", 250);
    c.expect("DATA", 354);
    c.send(&format!("Subject: big\r\n\r\n{}\r\n", "y".repeat(2000)));
    let text = c.expect(".", 552);
    assert!(text.contains("5.3.4"), "{text}");
    // The session goes on.
    let (code, _) = smtp_send(
        &mut c,
        "s@r.test",
        &["alice@example.test"],
        "Subject: ok\r\n\r\nsmall\r\n",
    );
    assert_eq!(code, 250);
    c.expect("QUIT", 221);
    server.stop();
    assert_eq!(inbox(&server, "alice@example.test").len(), 1);
}

#[test]
fn too_many_recipients() {
    let server = TestServer::start(&["alice@example.test"], "[limits]\nmax_recipients = 2\n");
    let mut c = smtp_session(&server);
    c.expect("MAIL FROM:<s@r.test>", 250);
    c.expect("RCPT TO:<alice@example.test>", 250);
    c.expect("RCPT TO:<alice+b@example.test>", 250);
    let text = c.expect("RCPT TO:<alice+c@example.test>", 452);
    assert!(text.contains("4.5.3"), "{text}");
}

#[test]
fn bdat_chunks_are_stored_exactly() {
    let mut server = TestServer::start(&["alice@example.test"], "");
    let mut c = smtp_session(&server);
    c.expect("MAIL FROM:<s@r.test>", 250);
    c.expect("RCPT TO:<alice@example.test>", 250);
    let part1 = "Subject: chunks\r\n\r\n.leading dot kept\r\n";
    let part2 = "second chunk\r\n";
    c.send(&format!("BDAT {}\r\n{part1}", part1.len()));
    assert_eq!(c.reply().0, 250);
    c.send(&format!("BDAT {} LAST\r\n{part2}", part2.len()));
    assert_eq!(c.reply().0, 250);
    c.expect("QUIT", 221);
    server.stop();
    let msgs = inbox(&server, "alice@example.test");
    assert_eq!(msgs.len(), 1);
    assert!(msgs[0].ends_with(format!("{part1}{part2}").as_bytes()));
}

#[test]
fn submission_requires_starttls_then_auth() {
    // elsewhere.test's mail goes to a port where nobody listens: it stays queued.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut server = TestServer::start(
        &["alice@example.test", "bob@example.test"],
        &format!("[relay.routes]\n\"elsewhere.test\" = \"{closed}\"\n"),
    );
    let mut c = Client::connect(server.addr("submission"));
    assert_eq!(c.reply().0, 220);
    let ehlo = c.expect("EHLO c.test", 250);
    assert!(ehlo.contains("STARTTLS"), "{ehlo}");
    assert!(!ehlo.contains("AUTH"), "AUTH offered before TLS: {ehlo}");
    let text = c.expect("MAIL FROM:<alice@example.test>", 530);
    assert!(text.contains("5.7.0"), "{text}");
    let (code, _) = c.cmd(&format!(
        "AUTH PLAIN {}",
        plain("alice@example.test", PASSWORD)
    ));
    assert!(code >= 500, "cleartext AUTH must be refused");
    c.expect("STARTTLS", 220);
    c.upgrade_tls();
    let ehlo = c.expect("EHLO c.test", 250);
    assert!(ehlo.contains("AUTH PLAIN LOGIN"), "{ehlo}");
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
    let text = c.expect(
        &format!("AUTH PLAIN {}", plain("alice@example.test", "wrong")),
        535,
    );
    assert!(text.contains("5.7.8"), "{text}");
    c.expect(
        &format!("AUTH PLAIN {}", plain("alice@example.test", PASSWORD)),
        235,
    );
    c.expect("MAIL FROM:<alice@example.test>", 250);
    // Authenticated: a remote recipient is accepted for the outbound queue.
    c.expect("RCPT TO:<friend@elsewhere.test>", 250);
    c.expect("RCPT TO:<bob@example.test>", 250);
    c.expect("DATA", 354);
    c.send("Subject: via 587\r\n\r\nhello\r\n");
    let text = c.expect(".", 250);
    let id = text.trim().rsplit(' ').next().unwrap().to_string();
    c.expect("QUIT", 221);
    server.stop();
    let msgs = inbox(&server, "bob@example.test");
    assert_eq!(msgs.len(), 1);
    assert!(
        contains(&msgs[0], "ESMTPSA"),
        "{}",
        String::from_utf8_lossy(&msgs[0])
    );
    // Delivered locally and queued for the rest: the same bytes, without the local trace
    // headers, wait in the queue under the id of the 250 reply.
    use surel::store::QueueStore;
    let store = server.open_store();
    let (shard, queued) = store
        .find_queued(&id)
        .expect("queued for the remote recipient");
    assert_eq!(queued.recipients.len(), 1);
    assert_eq!(queued.recipients[0].address, "friend@elsewhere.test");
    assert_eq!(queued.envelope.mail_from, "alice@example.test");
    let bytes = store.queue_bytes(shard, &id).unwrap();
    let local = &msgs[0];
    assert!(
        local.ends_with(&bytes),
        "queued copy differs from the local one"
    );
}

#[test]
fn implicit_tls_submission_with_auth_login() {
    let server = TestServer::start(&["alice@example.test"], "");
    let mut c = Client::connect_tls(server.addr("submissions"));
    assert_eq!(c.reply().0, 220);
    let ehlo = c.expect("EHLO c.test", 250);
    assert!(ehlo.contains("AUTH"), "{ehlo}");
    c.expect("MAIL FROM:<alice@example.test>", 530);
    c.expect("AUTH LOGIN", 334);
    c.expect(&b64(b"alice@example.test"), 334);
    c.expect(&b64(PASSWORD.as_bytes()), 235);
    let (code, _) = smtp_send(
        &mut c,
        "alice@example.test",
        &["alice@example.test"],
        "Subject: s\r\n\r\nx\r\n",
    );
    assert_eq!(code, 250);
    c.expect("QUIT", 221);
}

#[test]
fn starttls_on_port_25_discards_pipelined_plaintext() {
    let server = TestServer::start(&["alice@example.test"], "");
    let mut c = smtp_session(&server);
    // CVE-2011-0411: the NOOP injected after STARTTLS must not be answered inside TLS.
    c.send("STARTTLS\r\nNOOP\r\n");
    assert_eq!(c.reply().0, 220);
    c.upgrade_tls();
    let ehlo = c.expect("EHLO c.test", 250);
    assert!(!ehlo.contains("STARTTLS"));
    c.expect("NOOP", 250);
    c.expect("QUIT", 221);
}

#[test]
fn user_added_while_running_receives_mail_without_restart() {
    let server = TestServer::start(&["alice@example.test"], "");
    let mut c = smtp_session(&server);
    c.expect("MAIL FROM:<s@r.test>", 250);
    c.expect("RCPT TO:<carol@example.test>", 550);
    c.expect("QUIT", 221);
    server.add_user("carol@example.test", "pw-carol");
    // The server re-reads the accounts file at most once a second.
    // One session per try: unknown recipients count as protocol errors (max_errors).
    wait_until("carol to be known", Duration::from_secs(5), || {
        let mut c = smtp_session(&server);
        c.expect("MAIL FROM:<s@r.test>", 250);
        c.cmd("RCPT TO:<carol@example.test>").0 == 250
    });
}

#[test]
fn idle_timeout_closes_with_421() {
    let server = TestServer::start(&["alice@example.test"], "[limits]\nidle_timeout_secs = 1\n");
    let mut c = smtp_session(&server);
    let (code, text) = c.reply();
    assert_eq!(code, 421, "{text}");
    assert!(c.is_closed());
}

#[test]
fn per_ip_connection_limit_answers_421() {
    let server = TestServer::start(
        &["alice@example.test"],
        "[limits]\nmax_connections_per_ip = 2\n",
    );
    let mut a = Client::connect(server.addr("smtp"));
    assert_eq!(a.reply().0, 220);
    let mut b = Client::connect(server.addr("smtp"));
    assert_eq!(b.reply().0, 220);
    let mut c = Client::connect(server.addr("smtp"));
    assert_eq!(c.reply().0, 421);
    a.expect("QUIT", 221);
    drop(a);
    // The slot is free once the server has seen the close.
    wait_until("a free slot", Duration::from_secs(5), || {
        Client::connect(server.addr("smtp")).reply().0 == 220
    });
}

#[test]
fn works_on_the_epoll_fallback_driver() {
    let mut server = TestServer::start_with_env(
        &["alice@example.test"],
        "",
        &[("MONOIO_FORCE_LEGACY_DRIVER", "1")],
    );
    let mut c = smtp_session(&server);
    let (code, _) = smtp_send(
        &mut c,
        "s@r.test",
        &["alice@example.test"],
        "Subject: e\r\n\r\nx\r\n",
    );
    assert_eq!(code, 250);
    c.expect("QUIT", 221);
    server.stop();
    let log = server.log();
    assert!(
        log.contains("driver=\"epoll\"") || log.contains("driver=epoll"),
        "{log}"
    );
    assert!(!log.contains("io_uring"), "{log}");
    assert_eq!(inbox(&server, "alice@example.test").len(), 1);
}

#[test]
fn graceful_shutdown_finishes_a_transaction_in_flight() {
    let mut server = TestServer::start(&["alice@example.test"], "");
    let mut idle = smtp_session(&server);
    let mut c = smtp_session(&server);
    c.expect("MAIL FROM:<s@r.test>", 250);
    c.expect("RCPT TO:<alice@example.test>", 250);
    c.expect("DATA", 354);
    c.send("Subject: in flight\r\n\r\nfirst half\r\n");
    server.sigterm();
    // The idle session is told goodbye...
    assert_eq!(idle.reply().0, 421);
    // ...while the one inside DATA completes.
    c.send("second half\r\n");
    assert_eq!(c.cmd(".").0, 250);
    assert!(server.wait_exit(std::time::Duration::from_secs(20)));
    let msgs = inbox(&server, "alice@example.test");
    assert_eq!(msgs.len(), 1);
    assert!(msgs[0].ends_with(b"first half\r\nsecond half\r\n"));
}
