//! Session tests: a fake driver pumps bytes through [`SmtpSession`] like the network driver.

use std::sync::Arc;

use super::*;
use crate::auth::{AuthOutcome, Directory, Recipient};
use crate::delivery::{DeliveryError, Route, router};
use crate::net::sasl::encode_base64 as base64_encode;

struct FakeDir;

impl Directory for FakeDir {
    fn resolve(&self, address: &str) -> Recipient {
        let lower = address.to_ascii_lowercase();
        // Exact match: the session normalises a bare `postmaster`.
        if address == "postmaster" {
            return Recipient::Local(vec!["admin@example.org".into()]);
        }
        match lower.rsplit_once('@') {
            Some((local, "example.org")) => match local {
                "alice" | "bob" => Recipient::Local(vec![format!("{local}@example.org")]),
                "team" => {
                    Recipient::Local(vec!["alice@example.org".into(), "bob@example.org".into()])
                }
                "postmaster" => Recipient::Local(vec!["admin@example.org".into()]),
                _ => Recipient::UnknownLocal,
            },
            _ => Recipient::Remote,
        }
    }
    fn is_local_domain(&self, domain: &str) -> bool {
        domain.eq_ignore_ascii_case("example.org")
    }
}

/// A fake network driver.
struct H {
    s: SmtpSession,
    buf: Vec<u8>,
    out: Vec<u8>,
    delivered: Vec<Transaction>,
    auths: Vec<(String, String)>,
    closed: bool,
    tls_starts: usize,
    /// Result the next deliveries get.
    fail_delivery: Option<DeliveryError>,
}

fn config() -> SmtpConfig {
    SmtpConfig {
        hostname: "mx.example.org".into(),
        ..SmtpConfig::default()
    }
}

impl H {
    fn new(kind: ListenerKind, tls: bool, starttls: bool) -> H {
        H::with(config(), kind, tls, starttls)
    }
    fn mx() -> H {
        H::new(ListenerKind::Mx, false, true)
    }
    fn with(cfg: SmtpConfig, kind: ListenerKind, tls: bool, starttls: bool) -> H {
        let mut s = SmtpSession::new(
            Arc::new(cfg),
            kind,
            "192.0.2.7:40000".parse().unwrap(),
            tls,
            starttls,
        );
        let mut out = Vec::new();
        s.greeting(&mut out);
        assert_eq!(out, b"220 mx.example.org ESMTP surel\r\n");
        H {
            s,
            buf: Vec::new(),
            out: Vec::new(),
            delivered: Vec::new(),
            auths: Vec::new(),
            closed: false,
            tls_starts: 0,
            fail_delivery: None,
        }
    }

    fn send(&mut self, bytes: impl AsRef<[u8]>) -> &mut Self {
        assert!(!self.closed, "send after close");
        self.buf.extend_from_slice(bytes.as_ref());
        self.pump();
        self
    }

    fn pump(&mut self) {
        loop {
            let (n, ev) = self.s.feed(&self.buf, &mut self.out);
            assert!(n <= self.buf.len());
            self.buf.drain(..n);
            match ev {
                SmtpEvent::NeedInput => return,
                SmtpEvent::Route { address, may_relay } => {
                    let r = router::route(&FakeDir, &address, may_relay);
                    self.s.route_result(r, &mut self.out);
                }
                SmtpEvent::CheckSender { address, account } => {
                    let ok = router::sender_allowed(&FakeDir, &address, &account);
                    self.s.sender_result(ok, &mut self.out);
                }
                SmtpEvent::Deliver(t) => {
                    self.delivered.push(t);
                    let r = match self.fail_delivery.clone() {
                        Some(f) => Err(f),
                        None => Ok(()),
                    };
                    self.s.delivery_result(r, &mut self.out);
                }
                SmtpEvent::Authenticate { username, password } => {
                    let outcome = if password == "secret" {
                        AuthOutcome::Accepted(username.clone())
                    } else {
                        AuthOutcome::Rejected
                    };
                    self.auths.push((username, password));
                    self.s.auth_result(outcome, &mut self.out);
                }
                SmtpEvent::StartTls => {
                    // CVE-2011-0411: anything pipelined after STARTTLS is dropped.
                    self.buf.clear();
                    self.s.tls_started();
                    self.tls_starts += 1;
                    return;
                }
                SmtpEvent::Close => {
                    self.closed = true;
                    return;
                }
            }
        }
    }

    /// Replies so far, as text, and clear them.
    fn take(&mut self) -> String {
        String::from_utf8(std::mem::take(&mut self.out)).unwrap()
    }

    /// The final line of each reply, reduced to `code enhanced` (or just the code).
    fn codes(&mut self) -> Vec<String> {
        self.take()
            .split("\r\n")
            .filter(|l| l.len() >= 4 && l.as_bytes()[3] == b' ')
            .map(|l| {
                let mut it = l.split(' ');
                let code = it.next().unwrap();
                match it.next() {
                    Some(e) if e.len() >= 5 && e.as_bytes()[1] == b'.' => format!("{code} {e}"),
                    _ => code.to_string(),
                }
            })
            .collect()
    }
}

/// Each recipient's address and route.
fn routes(t: &Transaction) -> Vec<(String, Route)> {
    t.envelope
        .recipients
        .iter()
        .map(|r| (r.address.clone(), r.route.clone()))
        .collect()
}

fn codes(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// The message without the Received header.
fn body(t: &Transaction) -> &[u8] {
    let m = &t.message;
    assert!(m.starts_with(b"Received: from "));
    let mut i = 0;
    loop {
        let nl = memchr::memmem::find(&m[i..], b"\r\n").unwrap() + i;
        if m.get(nl + 2) != Some(&b'\t') {
            return &m[nl + 2..];
        }
        i = nl + 2;
    }
}

fn auth_plain(user: &str, pass: &str) -> String {
    base64_encode(format!("\0{user}\0{pass}").as_bytes())
}

const PIPELINE: &[u8] = b"EHLO client.example\r\nMAIL FROM:<sender@remote.example>\r\n\
RCPT TO:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n\
Subject: hi\r\n\r\n..leading dot\r\n...two\r\nbody\r\n.\r\nQUIT\r\n";

#[test]
fn pipelined_transaction_replies_in_order() {
    let mut h = H::mx();
    h.send(PIPELINE);
    let out = h.take();
    let lines: Vec<&str> = out.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines[0], "250-mx.example.org Hello client.example");
    assert!(lines.contains(&"250-PIPELINING"));
    assert!(lines.contains(&"250-SIZE 26214400"));
    assert!(lines.contains(&"250-8BITMIME"));
    assert!(lines.contains(&"250-SMTPUTF8"));
    assert!(lines.contains(&"250-ENHANCEDSTATUSCODES"));
    assert!(lines.contains(&"250-CHUNKING"));
    assert!(lines.contains(&"250 STARTTLS"));
    assert!(!out.contains("AUTH"), "AUTH offered without TLS: {out}");
    let rest: Vec<&str> = lines
        .iter()
        .skip_while(|l| l.starts_with("250-") || **l == "250 STARTTLS")
        .copied()
        .collect();
    assert_eq!(rest[0], "250 2.1.0 Ok");
    assert_eq!(rest[1], "250 2.1.5 Ok");
    assert_eq!(rest[2], "250 2.1.5 Ok");
    assert_eq!(rest[3], "354 Start mail input; end with <CRLF>.<CRLF>");
    assert!(rest[4].starts_with("250 2.0.0 Ok: queued as "));
    assert_eq!(rest[5], "221 2.0.0 Bye");
    assert_eq!(rest.len(), 6);
    assert!(h.closed);
    assert_eq!(h.delivered.len(), 1);
    let t = &h.delivered[0];
    assert_eq!(t.envelope.mail_from, "sender@remote.example");
    assert_eq!(
        routes(t),
        vec![
            (
                "alice@example.org".to_string(),
                Route::Local(vec!["alice@example.org".to_string()])
            ),
            (
                "bob@example.org".to_string(),
                Route::Local(vec!["bob@example.org".to_string()])
            ),
        ]
    );
    assert_eq!(
        body(t),
        b"Subject: hi\r\n\r\n.leading dot\r\n..two\r\nbody\r\n"
    );
    assert_eq!(t.size, body(t).len());
    assert_eq!(t.envelope.authenticated_as, None);
    assert!(rest[4].ends_with(&t.envelope.id));
    let received = std::str::from_utf8(&t.message[..t.message.len() - t.size]).unwrap();
    assert!(
        received.starts_with(&format!(
            "Received: from client.example (unknown [192.0.2.7])\r\n\tby mx.example.org (surel) with ESMTP id {};\r\n\t",
            t.envelope.id
        )),
        "{received}"
    );
    assert!(received.ends_with(" +0000\r\n"));
}

#[test]
fn byte_at_a_time_is_identical() {
    let mut whole = H::mx();
    whole.send(PIPELINE);
    let whole_codes = whole.codes();
    let mut h = H::mx();
    for &b in PIPELINE {
        h.send([b]);
    }
    assert_eq!(h.codes(), whole_codes);
    assert!(h.closed);
    assert_eq!(h.delivered.len(), 1);
    assert_eq!(body(&h.delivered[0]), body(&whole.delivered[0]));
    let (mut a, b) = (
        h.delivered[0].envelope.clone(),
        &whole.delivered[0].envelope,
    );
    a.id = b.id.clone();
    assert_eq!(&a, b);
}

#[test]
fn every_split_point_is_identical() {
    let msg: &[u8] = b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n\
a\r\n..b\r\n.\rc\r\n\n.\n\r.\r\r\n.x\r\n.\r\nRSET\r\n";
    let mut whole = H::mx();
    whole.send(msg);
    let expected = body(&whole.delivered[0]).to_vec();
    assert_eq!(expected, b"a\r\n.b\r\n\rc\r\n\n.\n\r.\r\r\nx\r\n");
    let expected_codes = whole.codes();
    for split in 1..msg.len() {
        let mut h = H::mx();
        h.send(&msg[..split]).send(&msg[split..]);
        assert_eq!(body(&h.delivered[0]), expected, "split at {split}");
        assert_eq!(h.codes(), expected_codes, "split at {split}");
    }
}

fn start_data(h: &mut H) {
    h.send("EHLO c\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n");
    assert_eq!(h.codes(), codes(&["250", "250 2.1.0", "250 2.1.5", "354"]));
}

#[test]
fn smuggling_variants_are_content() {
    for fake in ["\n.\n", "\r.\r", "\n.\r\n", "\r\n.\n", "\r.\r\n"] {
        let mut h = H::mx();
        start_data(&mut h);
        let smuggled = format!(
            "hello{fake}MAIL FROM:<evil@remote.example>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nevil\r\n"
        );
        h.send(&smuggled);
        assert!(h.delivered.is_empty(), "{fake:?} ended DATA");
        assert_eq!(h.codes(), Vec::<String>::new(), "{fake:?}");
        h.send(".\r\n");
        assert_eq!(h.delivered.len(), 1, "{fake:?}");
        let b = body(&h.delivered[0]);
        assert!(
            memchr::memmem::find(
                b,
                b"MAIL FROM:<evil@remote.example>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nevil\r\n"
            )
            .is_some(),
            "{fake:?}: {:?}",
            String::from_utf8_lossy(b)
        );
        assert_eq!(h.delivered[0].envelope.recipients.len(), 1);
        assert_eq!(h.codes(), codes(&["250 2.0.0"]));
    }
}

#[test]
fn empty_message() {
    let mut h = H::mx();
    start_data(&mut h);
    h.send(".\r\n");
    assert_eq!(h.codes(), codes(&["250 2.0.0"]));
    assert_eq!(body(&h.delivered[0]), b"");
    assert_eq!(h.delivered[0].size, 0);
    // Received has the single recipient.
    let m = String::from_utf8(h.delivered[0].message.clone()).unwrap();
    assert!(m.contains("\r\n\tfor <alice@example.org>; "), "{m}");
}

#[test]
fn dot_unstuffing() {
    let mut h = H::mx();
    start_data(&mut h);
    h.send("..\r\n...\r\n.a\r\nb.\r\n.\r\n");
    assert_eq!(body(&h.delivered[0]), b".\r\n..\r\na\r\nb.\r\n");
}

#[test]
fn nul_in_data_is_stored_nul_in_command_rejected() {
    let mut h = H::mx();
    h.send("EHLO c\r\nNOOP\0\r\nMAIL FROM:<a@remote.example>\0\r\nNOOP\r\n");
    assert_eq!(
        h.codes(),
        codes(&["250", "501 5.5.2", "501 5.5.2", "250 2.0.0"])
    );
    h.send("MAIL FROM:<a@remote.example>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\na\0b\r\n.\r\n");
    assert_eq!(
        h.codes(),
        codes(&["250 2.1.0", "250 2.1.5", "354", "250 2.0.0"])
    );
    assert_eq!(body(&h.delivered[0]), b"a\0b\r\n");
}

#[test]
fn overlong_command_line() {
    let mut h = H::mx();
    h.send("EHLO c\r\n");
    h.take();
    // Complete over-long line in one piece.
    let long = format!("NOOP {}\r\n", "x".repeat(5000));
    h.send(&long).send("NOOP\r\n");
    assert_eq!(h.codes(), codes(&["500 5.5.2", "250 2.0.0"]));
    // Over-long partial line: consumed without waiting for its end.
    h.send("x".repeat(4096));
    assert_eq!(h.codes(), codes(&["500 5.5.2"]));
    assert!(h.buf.is_empty());
    h.send("y".repeat(10000))
        .send("MAIL FROM:<x@y.z>\r\n")
        .send("NOOP\r\n");
    // The MAIL line ends the discarded line; NOOP works.
    assert_eq!(h.codes(), codes(&["250 2.0.0"]));
    // Exactly at the limit (4096 incl. CRLF) is fine.
    let exact = format!("NOOP {}\r\n", "x".repeat(4096 - 7));
    assert_eq!(exact.len(), 4096);
    h.send(&exact);
    assert_eq!(h.codes(), codes(&["250 2.0.0"]));
    let over = format!("NOOP {}\r\n", "x".repeat(4096 - 6));
    h.send(&over);
    assert_eq!(h.codes(), codes(&["500 5.5.2"]));
    assert!(!h.closed);
}

#[test]
fn bare_lf_command_rejected() {
    let mut h = H::mx();
    h.send("EHLO c\nNOOP\r\n");
    assert_eq!(h.codes(), codes(&["500 5.5.2", "250 2.0.0"]));
}

#[test]
fn too_many_errors_closes() {
    let mut h = H::mx();
    for _ in 0..19 {
        h.send("BOGUS\r\n");
    }
    assert!(!h.closed);
    h.send("BOGUS\r\nNOOP\r\n");
    assert!(h.closed);
    let c = h.codes();
    assert_eq!(c.len(), 21);
    assert_eq!(c[19], "500 5.5.1");
    assert_eq!(c[20], "421 4.7.0");
    // Closed sessions stay closed.
    let mut out = Vec::new();
    assert_eq!(h.s.feed(b"NOOP\r\n", &mut out), (0, SmtpEvent::Close));
    assert!(out.is_empty());
}

#[test]
fn sequence_errors() {
    let mut h = H::mx();
    h.send("MAIL FROM:<a@b.c>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n");
    assert_eq!(h.codes(), codes(&["503 5.5.1", "503 5.5.1", "503 5.5.1"]));
    h.send("HELO c\r\nRCPT TO:<alice@example.org>\r\nDATA\r\nMAIL FROM:<a@b.c>\r\nDATA\r\nMAIL FROM:<a@b.c>\r\n");
    assert_eq!(
        h.codes(),
        codes(&[
            "250",
            "503 5.5.1",
            "503 5.5.1",
            "250 2.1.0",
            "503 5.5.1",
            "503 5.5.1"
        ])
    );
    // RSET ends the transaction.
    h.send("RSET\r\nRCPT TO:<alice@example.org>\r\nMAIL FROM:<a@b.c>\r\n");
    assert_eq!(h.codes(), codes(&["250 2.0.0", "503 5.5.1", "250 2.1.0"]));
    assert!(!h.s.is_idle());
    // EHLO ends it too.
    h.send("EHLO c\r\n");
    h.take();
    assert!(h.s.is_idle());
    h.send("RCPT TO:<alice@example.org>\r\n");
    assert_eq!(h.codes(), codes(&["503 5.5.1"]));
}

#[test]
fn misc_commands() {
    let mut h = H::mx();
    h.send(
        "NOOP\r\nnoop x\r\nVRFY alice\r\nEXPN list\r\nHELP\r\nRSET\r\nFOO\r\nRSET x\r\nEHLO\r\n",
    );
    assert_eq!(
        h.codes(),
        codes(&[
            "250 2.0.0",
            "250 2.0.0",
            "252 2.5.2",
            "502 5.5.1",
            "214 2.0.0",
            "250 2.0.0",
            "500 5.5.1",
            "501 5.5.4",
            "501 5.5.4"
        ])
    );
    h.send("helo x.y\r\n");
    assert_eq!(h.take(), "250 mx.example.org\r\n");
    h.send("quit\r\n");
    assert_eq!(h.take(), "221 2.0.0 Bye\r\n");
    assert!(h.closed);
}

#[test]
fn helo_gives_smtp_protocol() {
    let mut h = H::mx();
    h.send("HELO old\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<alice@example.org>\r\nRCPT TO:<PostMaster>\r\nDATA\r\nx\r\n.\r\n");
    let t = &h.delivered[0];
    let m = String::from_utf8_lossy(&t.message);
    assert!(m.contains("with SMTP id"), "{m}");
    assert_eq!(
        routes(t)[1],
        (
            "PostMaster".to_string(),
            Route::Local(vec!["admin@example.org".to_string()])
        )
    );
    // No service extensions without EHLO.
    h.send("MAIL FROM:<a@b.c> SIZE=10\r\nMAIL FROM:<a@b.c> BODY=8BITMIME\r\n");
    let all = h.take();
    assert!(
        all.ends_with(
            "555 5.5.4 MAIL parameters require EHLO\r\n555 5.5.4 MAIL parameters require EHLO\r\n"
        ),
        "{all}"
    );
}

#[test]
fn mail_params_and_addresses() {
    let mut h = H::mx();
    h.send("EHLO c\r\n");
    h.take();
    for (cmd, code) in [
        ("MAIL FROM:<a@b.c> SIZE=26214400 BODY=8BITMIME", "250 2.1.0"),
        ("RSET", "250 2.0.0"),
        ("MAIL FROM:<a@b.c> SIZE=26214401", "552 5.3.4"),
        ("MAIL FROM:<a@b.c> BODY=BINARYMIME", "555 5.5.4"),
        ("MAIL FROM:<a@b.c> FOO=bar", "555 5.5.4"),
        ("MAIL FROM:<a@b.c> SIZE=x", "501 5.5.4"),
        ("MAIL FROM:a@b.c", "501 5.5.4"),
        ("MAIL FROM:<a@@b.c>", "501 5.1.7"),
        ("MAIL FROM:<jörg@b.c>", "553 5.6.7"),
        ("MAIL FROM:<jörg@b.c> SMTPUTF8", "250 2.1.0"),
        ("RCPT TO:<alice@example.org> FOO=1", "555 5.5.4"),
        ("RCPT TO:<alice@example.org> NOTIFY=SOMETIMES", "501 5.5.4"),
        ("RCPT TO:<alice>", "501 5.1.3"),
        ("RCPT TO:<@relay.example:alice@example.org>", "250 2.1.5"),
        ("RCPT TO:<\"alice\"@example.org>", "550 5.1.1"),
        ("RSET", "250 2.0.0"),
        ("MAIL FROM:<@a.b,@c.d:x@b.c> AUTH=<>", "250 2.1.0"),
        ("RCPT TO:<jörg@example.org>", "553 5.6.7"),
    ] {
        h.send(format!("{cmd}\r\n"));
        assert_eq!(h.codes(), codes(&[code]), "{cmd}");
    }
}

#[test]
fn recipients_on_mx() {
    let mut h = H::mx();
    h.send("EHLO c\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<nobody@example.org>\r\nRCPT TO:<x@elsewhere.example>\r\nRCPT TO:<team@example.org>\r\nRCPT TO:<postmaster>\r\n");
    assert_eq!(
        h.codes(),
        codes(&[
            "250",
            "250 2.1.0",
            "550 5.1.1",
            "554 5.7.1",
            "250 2.1.5",
            "250 2.1.5"
        ])
    );
    h.send("DATA\r\nx\r\n.\r\n");
    let t = &h.delivered[0];
    assert_eq!(t.envelope.recipients.len(), 2);
    assert!(matches!(&t.envelope.recipients[0].route, Route::Local(a) if a.len() == 2));
    let m = String::from_utf8_lossy(&t.message);
    assert!(!m.contains("\tfor <"), "{m}");
}

#[test]
fn authenticated_senders_use_their_own_addresses() {
    let mut cfg = config();
    cfg.allow_plaintext_auth = true;
    let mut h = H::with(cfg, ListenerKind::Submission, false, false);
    h.send(format!(
        "EHLO c\r\nAUTH PLAIN {}\r\n",
        auth_plain("alice@example.org", "secret")
    ));
    h.take();
    // Someone else's address, an unknown local one, a remote one: refused. Hers, an alias
    // that leads to her, and <> are hers.
    h.send("MAIL FROM:<bob@example.org>\r\nMAIL FROM:<nobody@example.org>\r\nMAIL FROM:<alice@elsewhere.test>\r\n");
    assert_eq!(h.codes(), codes(&["553 5.7.1", "553 5.7.1", "553 5.7.1"]));
    h.send("MAIL FROM:<alice@example.org>\r\nRSET\r\nMAIL FROM:<>\r\nRSET\r\nMAIL FROM:<team@example.org>\r\n");
    assert_eq!(
        h.codes(),
        codes(&[
            "250 2.1.0",
            "250 2.0.0",
            "250 2.1.0",
            "250 2.0.0",
            "250 2.1.0"
        ])
    );
    // The Received header names the account.
    h.send("RCPT TO:<bob@example.org>\r\nDATA\r\nx\r\n.\r\n");
    let m = String::from_utf8_lossy(&h.delivered[0].message).into_owned();
    assert!(
        m.contains("(Authenticated sender: alice@example.org)"),
        "{m}"
    );
}

#[test]
fn relay_clients_and_dsn_parameters() {
    // Not authenticated, but from an allowed network: may relay.
    let mut h = H::mx();
    h.s.set_relay_client(true);
    h.send("EHLO c\r\n");
    assert!(h.take().contains("250-DSN\r\n"));
    h.send("MAIL FROM:<a@b.c> RET=HDRS ENVID=xyz+2B1\r\nRCPT TO:<x@remote.example> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;x+40remote.example\r\nRCPT TO:<alice@example.org> NOTIFY=NEVER\r\nDATA\r\nhi\r\n.\r\n");
    assert_eq!(
        h.codes(),
        codes(&["250 2.1.0", "250 2.1.5", "250 2.1.5", "354", "250 2.0.0"])
    );
    let e = &h.delivered[0].envelope;
    assert_eq!(e.ret, Some(crate::delivery::Ret::Headers));
    assert_eq!(e.envid.as_deref(), Some("xyz+2B1"));
    let r = &e.recipients[0];
    assert_eq!(
        r.route,
        Route::Remote {
            domain: "remote.example".into()
        }
    );
    assert!(r.notify.on_success() && r.notify.on_delay() && !r.notify.on_failure());
    assert_eq!(r.orcpt.as_deref(), Some("rfc822;x+40remote.example"));
    assert!(!e.recipients[1].notify.on_failure());
    // Without that, the same recipient is refused.
    let mut h = H::mx();
    h.send("EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<x@remote.example>\r\n");
    assert_eq!(h.codes(), codes(&["250", "250 2.1.0", "554 5.7.1"]));
}

#[test]
fn max_recipients() {
    let mut cfg = config();
    cfg.max_recipients = 2;
    let mut h = H::with(cfg, ListenerKind::Mx, false, false);
    h.send("EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\nRCPT TO:<team@example.org>\r\nDATA\r\nx\r\n.\r\n");
    assert_eq!(
        h.codes(),
        codes(&[
            "250",
            "250 2.1.0",
            "250 2.1.5",
            "250 2.1.5",
            "452 4.5.3",
            "354",
            "250 2.0.0"
        ])
    );
    assert_eq!(h.delivered[0].envelope.recipients.len(), 2);
    assert_eq!(h.delivered[0].envelope.mail_from, "");
}

#[test]
fn message_size_limit() {
    let mut cfg = config();
    cfg.max_message_size = 10;
    let mut h = H::with(cfg, ListenerKind::Mx, false, false);
    h.send("EHLO c\r\n");
    assert!(h.take().contains("250-SIZE 10\r\n"));
    h.send("MAIL FROM:<a@b.c> SIZE=11\r\nMAIL FROM:<a@b.c> SIZE=10\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n");
    assert_eq!(
        h.codes(),
        codes(&["552 5.3.4", "250 2.1.0", "250 2.1.5", "354"])
    );
    h.send("0123456789\r\n.\r\nNOOP\r\n");
    assert_eq!(h.codes(), codes(&["552 5.3.4", "250 2.0.0"]));
    assert!(h.delivered.is_empty());
    assert!(h.s.is_idle());
    // Exactly at the limit is accepted.
    h.send("MAIL FROM:<a@b.c>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n01234567\r\n.\r\n");
    assert_eq!(
        h.codes(),
        codes(&["250 2.1.0", "250 2.1.5", "354", "250 2.0.0"])
    );
    assert_eq!(h.delivered[0].size, 10);
}

#[test]
fn long_data_line() {
    let mut cfg = config();
    cfg.max_data_line = 100;
    let mut h = H::with(cfg, ListenerKind::Mx, false, false);
    start_data(&mut h);
    h.send(format!("{}\r\nshort\r\n.\r\nNOOP\r\n", "x".repeat(99)));
    assert_eq!(h.codes(), codes(&["500 5.5.2", "250 2.0.0"]));
    assert!(h.delivered.is_empty());
    assert!(!h.closed);
}

#[test]
fn delivery_failures() {
    let mut h = H::mx();
    h.fail_delivery = Some(DeliveryError::Temporary("disk failed".into()));
    start_data(&mut h);
    h.send(".\r\n");
    assert_eq!(h.take(), "451 4.3.0 disk failed\r\n");
    h.fail_delivery = Some(DeliveryError::InsufficientStorage);
    h.send("MAIL FROM:<>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n.\r\n");
    assert_eq!(
        h.codes(),
        codes(&["250 2.1.0", "250 2.1.5", "354", "452 4.3.1"])
    );
}

#[test]
fn bdat_chunks() {
    let mut h = H::mx();
    h.send("EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<alice@example.org>\r\nBDAT 5\r\nab\r\n.BDAT 3 LAST\r\nxyzNOOP\r\n");
    assert_eq!(
        h.codes(),
        codes(&[
            "250",
            "250 2.1.0",
            "250 2.1.5",
            "250 2.0.0",
            "250 2.0.0",
            "250 2.0.0"
        ])
    );
    assert_eq!(body(&h.delivered[0]), b"ab\r\n.xyz");
    assert_eq!(h.delivered[0].size, 8);
    // Byte at a time.
    let mut h2 = H::mx();
    for &b in b"EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<alice@example.org>\r\nBDAT 5\r\nab\r\n.BDAT 3 LAST\r\nxyzNOOP\r\n" {
        h2.send([b]);
    }
    assert_eq!(body(&h2.delivered[0]), b"ab\r\n.xyz");
    // 5 octets received reply text.
    h.send("MAIL FROM:<a@b.c>\r\nRCPT TO:<alice@example.org>\r\nBDAT 2\r\nhi");
    assert!(h.take().ends_with("250 2.0.0 2 octets received\r\n"));
    // DATA and RCPT after BDAT are refused.
    h.send("DATA\r\nRCPT TO:<bob@example.org>\r\n");
    assert_eq!(h.codes(), codes(&["503 5.5.1", "503 5.5.1"]));
    h.send("BDAT 0 LAST\r\n");
    assert_eq!(h.codes(), codes(&["250 2.0.0"]));
    assert_eq!(body(&h.delivered[1]), b"hi");
}

#[test]
fn bdat_zero_last_and_sequence_errors() {
    let mut h = H::mx();
    // BDAT without MAIL: 503, but the chunk octets are consumed, not run as commands.
    h.send("EHLO c\r\nBDAT 6\r\nQUIT\r\nBDAT 0 LAST\r\nNOOP\r\n");
    assert_eq!(
        h.codes(),
        codes(&["250", "503 5.5.1", "503 5.5.1", "250 2.0.0"])
    );
    assert!(!h.closed);
    h.send("MAIL FROM:<a@b.c>\r\nBDAT 6 LAST\r\nQUIT\r\nNOOP\r\n");
    assert_eq!(h.codes(), codes(&["250 2.1.0", "503 5.5.1", "250 2.0.0"]));
    h.send("RCPT TO:<alice@example.org>\r\nBDAT 0 LAST\r\n");
    assert_eq!(h.codes(), codes(&["250 2.1.5", "250 2.0.0"]));
    assert_eq!(body(&h.delivered[0]), b"");
}

#[test]
fn bdat_size_limit() {
    let mut cfg = config();
    cfg.max_message_size = 10;
    let mut h = H::with(cfg, ListenerKind::Mx, false, false);
    h.send("EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<alice@example.org>\r\nBDAT 6\r\n123456BDAT 5 LAST\r\n12345NOOP\r\n");
    assert_eq!(
        h.codes(),
        codes(&[
            "250",
            "250 2.1.0",
            "250 2.1.5",
            "250 2.0.0",
            "552 5.3.4",
            "250 2.0.0"
        ])
    );
    assert!(h.delivered.is_empty());
    // A huge declared chunk is discarded without buffering and the session goes on.
    h.send("MAIL FROM:<a@b.c>\r\nRCPT TO:<alice@example.org>\r\nBDAT 1000000\r\n");
    h.send(vec![b'x'; 1_000_000]);
    h.send("NOOP\r\n");
    assert_eq!(
        h.codes(),
        codes(&["250 2.1.0", "250 2.1.5", "552 5.3.4", "250 2.0.0"])
    );
}

fn submission() -> H {
    H::new(ListenerKind::Submission, false, true)
}

#[test]
fn submission_requires_starttls_then_auth() {
    let mut h = submission();
    h.send("EHLO c\r\n");
    let ehlo = h.take();
    assert!(
        ehlo.contains("STARTTLS") && !ehlo.contains("AUTH"),
        "{ehlo}"
    );
    h.send(format!(
        "AUTH PLAIN {}\r\nMAIL FROM:<alice@example.org>\r\n",
        auth_plain("alice@example.org", "secret")
    ));
    assert_eq!(h.codes(), codes(&["538 5.7.11", "530 5.7.0"]));
    assert!(h.auths.is_empty());
    // STARTTLS; pipelined bytes after it are discarded by the driver.
    h.send("STARTTLS\r\nMAIL FROM:<injected@x.y>\r\n");
    assert_eq!(h.take(), "220 2.0.0 Ready to start TLS\r\n");
    assert_eq!(h.tls_starts, 1);
    // State was reset: EHLO required again.
    h.send("MAIL FROM:<alice@example.org>\r\nEHLO c\r\n");
    let out = h.take();
    assert!(out.starts_with("503 5.5.1"), "{out}");
    assert!(out.contains("250-AUTH PLAIN LOGIN\r\n") || out.contains("250 AUTH PLAIN LOGIN\r\n"));
    assert!(!out.contains("STARTTLS"));
    h.send("STARTTLS\r\nMAIL FROM:<alice@example.org>\r\n");
    assert_eq!(h.codes(), codes(&["503 5.5.1", "530 5.7.0"]));
    h.send(format!(
        "AUTH PLAIN {}\r\n",
        auth_plain("alice@example.org", "secret")
    ));
    assert_eq!(h.take(), "235 2.7.0 Authentication successful\r\n");
    assert_eq!(h.s.authenticated_as(), Some("alice@example.org"));
    h.send(format!(
        "AUTH PLAIN {}\r\n",
        auth_plain("alice@example.org", "secret")
    ));
    assert_eq!(h.codes(), codes(&["503 5.5.1"]));
    h.send("MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\nRCPT TO:<x@remote.example>\r\nDATA\r\nhi\r\n.\r\n");
    assert_eq!(
        h.codes(),
        codes(&["250 2.1.0", "250 2.1.5", "250 2.1.5", "354", "250 2.0.0"])
    );
    let t = &h.delivered[0];
    assert_eq!(
        t.envelope.authenticated_as.as_deref(),
        Some("alice@example.org")
    );
    // The authenticated client may relay: the remote recipient is routed to the queue.
    assert_eq!(
        t.envelope.recipients[1].route,
        Route::Remote {
            domain: "remote.example".into()
        }
    );
    assert!(String::from_utf8_lossy(&t.message).contains("with ESMTPSA id"));
}

#[test]
fn tls_started_forgets_auth() {
    let mut cfg = config();
    cfg.allow_plaintext_auth = true;
    let mut h = H::with(cfg, ListenerKind::Submission, false, true);
    h.send(format!(
        "EHLO c\r\nAUTH PLAIN {}\r\n",
        auth_plain("alice@example.org", "secret")
    ));
    assert_eq!(h.codes(), codes(&["250", "235 2.7.0"]));
    h.send("STARTTLS\r\n");
    assert_eq!(h.tls_starts, 1);
    h.send("EHLO c\r\nMAIL FROM:<a@b.c>\r\n");
    assert_eq!(h.codes(), codes(&["220 2.0.0", "250", "530 5.7.0"]));
    assert_eq!(h.s.authenticated_as(), None);
}

#[test]
fn submissions_auth_mechanisms() {
    let mut h = H::new(ListenerKind::Submissions, true, false);
    h.send("EHLO c\r\n");
    let ehlo = h.take();
    assert!(
        ehlo.ends_with("250 AUTH PLAIN LOGIN\r\n") && !ehlo.contains("STARTTLS"),
        "{ehlo}"
    );
    // PLAIN without initial response.
    h.send("AUTH PLAIN\r\n");
    assert_eq!(h.take(), "334 \r\n");
    h.send(format!("{}\r\n", auth_plain("bob@example.org", "wrong")));
    assert_eq!(h.take(), "535 5.7.8 Authentication credentials invalid\r\n");
    assert_eq!(
        h.auths,
        vec![("bob@example.org".to_string(), "wrong".to_string())]
    );
    // Cancel.
    h.send("AUTH PLAIN\r\n*\r\n");
    assert_eq!(h.codes(), codes(&["334", "501 5.7.0"]));
    // Bad base64, in the initial response and in a continuation.
    h.send("AUTH PLAIN !!!!\r\nAUTH LOGIN\r\nnot base64\r\n");
    assert_eq!(h.codes(), codes(&["501 5.5.2", "334", "501 5.5.2"]));
    // Valid base64, invalid PLAIN structure.
    h.send(format!("AUTH PLAIN {}\r\n", base64_encode(b"nonul")));
    assert_eq!(h.codes(), codes(&["501 5.5.2"]));
    // "=" is an empty initial response: invalid for both mechanisms.
    h.send("AUTH PLAIN =\r\nAUTH LOGIN =\r\n");
    assert_eq!(h.codes(), codes(&["501 5.5.2", "501 5.5.2"]));
    // Unknown mechanism.
    h.send("AUTH CRAM-MD5\r\n");
    assert_eq!(h.codes(), codes(&["504 5.5.4"]));
    // LOGIN, full dialogue.
    h.send("AUTH LOGIN\r\n");
    assert_eq!(h.take(), "334 VXNlcm5hbWU6\r\n");
    h.send(format!("{}\r\n", base64_encode(b"bob@example.org")));
    assert_eq!(h.take(), "334 UGFzc3dvcmQ6\r\n");
    h.send(format!("{}\r\n", base64_encode(b"secret")));
    assert_eq!(h.take(), "235 2.7.0 Authentication successful\r\n");
    assert_eq!(h.s.authenticated_as(), Some("bob@example.org"));
}

#[test]
fn auth_login_with_initial_response_and_cancel() {
    let mut h = H::new(ListenerKind::Submissions, true, false);
    h.send(format!(
        "EHLO c\r\nAUTH LOGIN {}\r\n*\r\n",
        base64_encode(b"bob")
    ));
    assert_eq!(h.codes(), codes(&["250", "334", "501 5.7.0"]));
    h.send(format!(
        "AUTH LOGIN {}\r\n{}\r\n",
        base64_encode(b"bob@example.org"),
        base64_encode(b"secret")
    ));
    assert_eq!(h.codes(), codes(&["334", "235 2.7.0"]));
}

#[test]
fn auth_rules() {
    let mut h = H::new(ListenerKind::Submissions, true, false);
    // Needs EHLO, not HELO.
    h.send("AUTH PLAIN\r\nHELO c\r\nAUTH PLAIN\r\n");
    assert_eq!(h.codes(), codes(&["503 5.5.1", "250", "503 5.5.1"]));
    // Authorization identity different from the authentication identity is refused.
    h.send(format!(
        "EHLO c\r\nAUTH PLAIN {}\r\n",
        base64_encode(b"admin\0bob\0secret")
    ));
    assert_eq!(h.codes(), codes(&["250", "535 5.7.8"]));
    assert!(h.auths.is_empty());
    // Mx without TLS: AUTH not offered and refused.
    let mut h = H::mx();
    h.send(format!(
        "EHLO c\r\nAUTH PLAIN {}\r\n",
        auth_plain("a", "secret")
    ));
    assert_eq!(h.codes(), codes(&["250", "538 5.7.11"]));
    // Relay denied on 25 for an unauthenticated client.
    h.send("MAIL FROM:<a@b.c>\r\nRCPT TO:<victim@remote.example>\r\n");
    assert_eq!(h.codes(), codes(&["250 2.1.0", "554 5.7.1"]));
    // No AUTH inside a transaction.
    let mut h = H::new(ListenerKind::Mx, true, false);
    h.send("EHLO c\r\nMAIL FROM:<a@b.c>\r\nAUTH PLAIN\r\n");
    assert_eq!(h.codes(), codes(&["250", "250 2.1.0", "503 5.5.1"]));
}

#[test]
fn starttls_unavailable_or_active() {
    let mut h = H::new(ListenerKind::Mx, false, false);
    h.send("EHLO c\r\nSTARTTLS\r\n");
    let out = h.take();
    assert!(!out.contains("250-STARTTLS") && out.ends_with("502 5.5.1 STARTTLS not available\r\n"));
    let mut h = H::new(ListenerKind::Submissions, true, true);
    h.send("STARTTLS\r\nSTARTTLS now\r\n");
    assert_eq!(h.codes(), codes(&["503 5.5.1", "501 5.5.4"]));
}

#[test]
fn shutdown_and_timeout() {
    let mut h = H::mx();
    assert!(h.s.is_idle());
    h.send("EHLO c\r\nMAIL FROM:<a@b.c>\r\n");
    assert!(!h.s.is_idle());
    let mut out = Vec::new();
    h.s.shutdown(&mut out);
    assert_eq!(out, b"421 4.3.2 Service shutting down\r\n");
    assert_eq!(h.s.feed(b"NOOP\r\n", &mut out).1, SmtpEvent::Close);
    let mut h = H::mx();
    let mut out = Vec::new();
    h.s.timeout(&mut out);
    assert_eq!(out, b"421 4.4.2 Timeout\r\n");
    assert_eq!(h.s.feed(b"", &mut out), (0, SmtpEvent::Close));
}

#[test]
fn in_data_is_not_idle() {
    let mut h = H::mx();
    start_data(&mut h);
    assert!(!h.s.is_idle());
    h.send("x\r\n.\r\n");
    assert!(h.s.is_idle());
}

#[test]
fn peer_name_in_received() {
    let mut h = H::mx();
    h.s.set_peer_name("client.example\r\nX-Evil: 1".into());
    start_data(&mut h);
    h.send(".\r\n");
    let m = String::from_utf8_lossy(&h.delivered[0].message).to_string();
    assert!(
        m.starts_with("Received: from c (client.exampleX-Evil:1 [192.0.2.7])\r\n"),
        "{m}"
    );
}

#[test]
fn partial_line_left_unconsumed() {
    let mut s = SmtpSession::new(
        Arc::new(config()),
        ListenerKind::Mx,
        "[2001:db8::1]:25".parse().unwrap(),
        false,
        false,
    );
    let mut out = Vec::new();
    assert_eq!(s.feed(b"NOOP\r\nNO", &mut out), (6, SmtpEvent::NeedInput));
    assert_eq!(out, b"250 2.0.0 Ok\r\n");
    assert_eq!(s.feed(b"NO", &mut out), (0, SmtpEvent::NeedInput));
}

#[test]
fn deliver_then_pipelined_commands_continue() {
    let mut s = SmtpSession::new(
        Arc::new(config()),
        ListenerKind::Mx,
        "192.0.2.1:25".parse().unwrap(),
        false,
        false,
    );
    let input = b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nx\r\n.\r\nMAIL FROM:<>\r\nRCPT TO:<bob@example.org>\r\nBDAT 1 LAST\r\nyQUIT\r\n";
    let mut out = Vec::new();
    // Feeds until an event other than a routing request, answering those on the way.
    let next = |s: &mut SmtpSession, input: &[u8], out: &mut Vec<u8>| {
        let mut used = 0;
        loop {
            let (n, ev) = s.feed(&input[used..], out);
            used += n;
            match ev {
                SmtpEvent::Route { address, may_relay } => {
                    assert!(!s.is_idle());
                    s.route_result(router::route(&FakeDir, &address, may_relay), out)
                }
                ev => return (used, ev),
            }
        }
    };
    let (n, ev) = next(&mut s, input, &mut out);
    let SmtpEvent::Deliver(t) = ev else {
        panic!("{ev:?}")
    };
    assert_eq!(&input[n..n + 4], b"MAIL");
    assert!(!s.is_idle());
    s.delivery_result(Ok(()), &mut out);
    let out_text = String::from_utf8(out.clone()).unwrap();
    assert!(out_text.ends_with(&format!("250 2.0.0 Ok: queued as {}\r\n", t.envelope.id)));
    let (n2, ev) = next(&mut s, &input[n..], &mut out);
    let SmtpEvent::Deliver(t2) = ev else {
        panic!("{ev:?}")
    };
    assert_ne!(t.envelope.id, t2.envelope.id);
    s.delivery_result(Ok(()), &mut out);
    let (n3, ev) = next(&mut s, &input[n + n2..], &mut out);
    assert_eq!(ev, SmtpEvent::Close);
    assert_eq!(n + n2 + n3, input.len());
    assert!(
        String::from_utf8(out)
            .unwrap()
            .ends_with("221 2.0.0 Bye\r\n")
    );
}

#[test]
fn event_debug_redacts_password() {
    let e = SmtpEvent::Authenticate {
        username: "u".into(),
        password: "hunter2".into(),
    };
    assert!(!format!("{e:?}").contains("hunter2"));
}

/// Deterministic xorshift PRNG for the hostile-input property test.
struct Rng(u64);
impl Rng {
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

/// Random streams of commands and hostile fragments: the session never panics, and feeding the
/// stream at random split points gives the same replies and messages as feeding it whole.
#[test]
fn random_streams_are_split_invariant() {
    const TOKENS: &[&str] = &[
        "EHLO c\r\n",
        "HELO c\r\n",
        "MAIL FROM:<a@b.c>\r\n",
        "MAIL FROM:<>\r\n",
        "MAIL FROM:<a@b.c> SIZE=50\r\n",
        "RCPT TO:<alice@example.org>\r\n",
        "RCPT TO:<x@remote.example>\r\n",
        "RCPT TO:<nobody@example.org>\r\n",
        "DATA\r\n",
        "BDAT 3\r\n",
        "BDAT 2 LAST\r\n",
        "BDAT 0 LAST\r\n",
        "RSET\r\n",
        "NOOP\r\n",
        "STARTTLS\r\n",
        "AUTH PLAIN\r\n",
        "AUTH LOGIN\r\n",
        "*\r\n",
        "Ym9i\r\n",
        "c2VjcmV0\r\n",
        "AGJvYgBzZWNyZXQ=\r\n",
        ".\r\n",
        ".\r\n",
        "..\r\n",
        "\r\n",
        "\n",
        "\r",
        ".",
        "x",
        "\0",
        "\u{e9}",
        "NOOP 0123456789012345678901234567890123456789\r\n",
        "Subject: fuzz\r\n",
    ];
    let cfg = || SmtpConfig {
        hostname: "mx.example.org".into(),
        max_message_size: 60,
        max_recipients: 3,
        max_command_line: 40,
        max_data_line: 30,
        max_errors: 1000,
        allow_plaintext_auth: true,
        // The streams send as a@b.c after logging in as bob.
        enforce_sender: false,
    };
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut delivered, mut replies) = (0, 0);
    for round in 0..1000 {
        let mut input = Vec::new();
        if round % 3 != 0 {
            input.extend_from_slice(
                b"EHLO c\r\nAUTH PLAIN AGJvYgBzZWNyZXQ=\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<alice@example.org>\r\n",
            );
        }
        for _ in 0..rng.below(60) {
            input.extend_from_slice(TOKENS[rng.below(TOKENS.len())].as_bytes());
        }
        let kind = [ListenerKind::Mx, ListenerKind::Submission][round % 2];
        let run = |splits: &mut dyn FnMut(usize) -> usize| {
            let mut h = H::with(cfg(), kind, false, false);
            let mut pos = 0;
            while pos < input.len() && !h.closed {
                let n = splits(input.len() - pos).max(1);
                h.send(&input[pos..pos + n]);
                pos += n;
            }
            let bodies: Vec<Vec<u8>> = h.delivered.iter().map(|t| body(t).to_vec()).collect();
            (h.codes(), bodies)
        };
        let whole = run(&mut |rest| rest);
        let mut r2 = Rng(rng.next() | 1);
        let split = run(&mut |rest| 1 + r2.below(rest.min(7)));
        assert_eq!(
            whole,
            split,
            "round {round}: {:?}",
            String::from_utf8_lossy(&input)
        );
        let bytes = run(&mut |_| 1);
        assert_eq!(whole, bytes, "round {round}");
        delivered += whole.1.len();
        replies += whole.0.len();
    }
    // The streams do exercise deliveries, not just errors.
    assert!(delivered > 100 && replies > 10000, "{delivered} {replies}");
}

#[test]
fn shed_transfer_discards_the_rest_and_answers_452() {
    let mut h = H::mx();
    start_data(&mut h);
    h.send(vec![b'x'; 5000]);
    assert!(h.s.held_bytes() >= 5000);
    h.s.shed_transfer();
    assert_eq!(h.s.held_bytes(), 0, "the message memory is given back");
    h.send("\r\nmore\r\n".repeat(1000));
    assert_eq!(h.s.held_bytes(), 0, "the rest is discarded as it arrives");
    h.send(".\r\n");
    assert_eq!(h.codes(), codes(&["452 4.3.1"]));
    assert!(h.delivered.is_empty());
    // The session goes on: the next transaction is stored.
    h.send("MAIL FROM:<a@remote.example>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\nok\r\n.\r\n");
    assert_eq!(
        h.codes(),
        codes(&["250 2.1.0", "250 2.1.5", "354", "250 2.0.0"])
    );
    assert_eq!(body(&h.delivered[0]), b"ok\r\n");

    // BDAT: the chunk in progress is refused at once; the transaction is gone.
    h.send("MAIL FROM:<a@b.c>\r\nRCPT TO:<alice@example.org>\r\nBDAT 10\r\n12345");
    h.s.shed_transfer();
    h.send("67890BDAT 2 LAST\r\nxyNOOP\r\n");
    assert_eq!(
        h.codes(),
        codes(&[
            "250 2.1.0",
            "250 2.1.5",
            "452 4.3.1",
            "503 5.5.1",
            "250 2.0.0"
        ])
    );
    assert_eq!(h.delivered.len(), 1);
}
