//! Message bodies read for IMAP FETCH and POP3 RETR: byte-exact over TLS for large messages, and
//! read without stalling the core — a read held pending (the test hook's "slow disk") leaves
//! the other sessions of the same core answering. Each runs under io_uring (where the kernel
//! allows it) and under the epoll driver.

mod common;

use std::time::{Duration, Instant};

use common::*;

const ALICE: &str = "alice@example.test";
/// `surel::store::body_read::TEST_SLOW_READ_ACCOUNT`: its body reads wait for the release file.
const SLOW: &str = "slow-read@test-hook.invalid";
const RELEASE_FILE: &str = "test-hook-release-reads";

/// A message of about `size` bytes of varied lines, none starting with a dot (so POP3 sends it
/// as stored).
fn large_message(size: usize) -> String {
    let mut m = String::from("Subject: large\r\nFrom: s@r.test\r\n\r\n");
    let mut i = 0u64;
    while m.len() < size {
        i += 1;
        m.push_str(&format!(
            "line {i:08} {}\r\n",
            "abcdefghij".repeat((i % 9) as usize)
        ));
    }
    m
}

fn deliver_to(server: &TestServer, to: &str, body: &str) {
    let mut c = smtp_session(server);
    assert_eq!(smtp_send(&mut c, "s@r.test", &[to], body).0, 250);
    c.expect("QUIT", 221);
}

/// The exact bytes of `UID FETCH n (BODY.PEEK[])` for message `n` holding `stored`, through the
/// tagged reply.
fn expected_fetch(tag: &str, n: u32, stored: &[u8]) -> Vec<u8> {
    let mut e = format!("* {n} FETCH (UID {n} BODY[] {{{}}}\r\n", stored.len()).into_bytes();
    e.extend_from_slice(stored);
    e.extend_from_slice(format!(")\r\n{tag} OK FETCH completed\r\n").as_bytes());
    e
}

/// The exact bytes of a RETR of `stored` after the `+OK` line.
fn expected_retr(stored: &[u8]) -> Vec<u8> {
    let mut e = stored.to_vec();
    e.extend_from_slice(b".\r\n");
    e
}

fn pop3_login(server: &TestServer, user: &str) -> Client {
    let mut c = Client::connect_tls(server.addr("pop3s"));
    assert!(c.line().unwrap().starts_with("+OK"));
    c.send(&format!("USER {user}\r\n"));
    assert!(c.line().unwrap().starts_with("+OK"));
    c.send(&format!("PASS {PASSWORD}\r\n"));
    let reply = c.line().unwrap();
    assert!(reply.starts_with("+OK"), "{reply}");
    c
}

fn large_bodies_are_byte_exact(env: &[(&str, &str)]) {
    let mut server = TestServer::start_with_env(&[ALICE], "", env);
    deliver_to(&server, ALICE, &large_message(3 << 20));
    deliver_to(&server, ALICE, &large_message(100_000));

    let mut imap = login_tls_as(&server, ALICE);
    ok(&mut imap, "s", "SELECT INBOX");
    imap.send("f UID FETCH 1 (BODY.PEEK[])\r\n");
    let fetched = imap.raw_until(b"f OK FETCH completed\r\n");
    imap.send("g UID FETCH 2 (BODY.PEEK[])\r\n");
    let fetched2 = imap.raw_until(b"g OK FETCH completed\r\n");
    ok(&mut imap, "z", "LOGOUT");

    let mut pop = pop3_login(&server, ALICE);
    pop.send("RETR 1\r\n");
    assert!(pop.line().unwrap().starts_with("+OK"));
    let retr = pop.raw_until(b"\r\n.\r\n");
    pop.send("RETR 2\r\n");
    assert!(pop.line().unwrap().starts_with("+OK"));
    let retr2 = pop.raw_until(b"\r\n.\r\n");
    pop.send("QUIT\r\n");
    assert!(pop.line().unwrap().starts_with("+OK"));

    server.stop();
    let stored = inbox(&server, ALICE);
    assert_eq!(stored.len(), 2);
    assert!(stored[0].len() > 3 << 20);
    // Whole-buffer comparisons: a mismatch would print megabytes, so compare, then report.
    assert!(
        fetched == expected_fetch("f", 1, &stored[0]),
        "FETCH of message 1 differs"
    );
    assert!(
        fetched2 == expected_fetch("g", 2, &stored[1]),
        "FETCH of message 2 differs"
    );
    assert!(retr == expected_retr(&stored[0]), "RETR 1 differs");
    assert!(retr2 == expected_retr(&stored[1]), "RETR 2 differs");
}

#[test]
fn large_bodies_are_byte_exact_over_tls() {
    large_bodies_are_byte_exact(&[]);
}

#[test]
fn large_bodies_are_byte_exact_over_tls_with_epoll() {
    large_bodies_are_byte_exact(&[("MONOIO_FORCE_LEGACY_DRIVER", "1")]);
}

/// Reads a line with a deadline (the client's own read timeout bounds each read).
fn line_within(c: &mut Client, what: &str) -> String {
    c.line().unwrap_or_else(|| panic!("{what}: no reply"))
}

fn pending_read_leaves_the_core_responsive(env: &[(&str, &str)]) {
    let mut env = env.to_vec();
    env.push(("SUREL_TEST_HOOKS", "1"));
    let mut server = TestServer::prepare(&[ALICE, SLOW], "", &env);
    // One core: every session below shares its event loop.
    server.cores = 1;
    server.launch();
    let body = large_message(200_000);
    deliver_to(&server, SLOW, &body);
    deliver_to(&server, ALICE, "Subject: quick\r\n\r\nquick\r\n");
    let release = server.data_dir().join(RELEASE_FILE);

    // The slow account's FETCH and RETR start reading and stay pending.
    let mut slow_imap = login_tls_as(&server, SLOW);
    ok(&mut slow_imap, "s", "SELECT INBOX");
    slow_imap.send("f UID FETCH 1 (BODY.PEEK[])\r\n");
    let mut slow_pop = pop3_login(&server, SLOW);
    slow_pop.send("RETR 1\r\n");

    // Meanwhile the core serves everyone else: new TLS handshakes, logins, FETCHes.
    let started = Instant::now();
    let mut other = login_tls_as(&server, ALICE);
    let (untagged, status) = imap(&mut other, "a", "EXAMINE INBOX");
    assert!(status.starts_with("a OK"), "{status}");
    assert!(untagged.contains(&"* 1 EXISTS".to_string()), "{untagged:?}");
    let (untagged, status) = imap(&mut other, "b", "UID FETCH 1 (UID RFC822.SIZE)");
    assert_eq!(status, "b OK FETCH completed");
    assert_eq!(untagged.len(), 1, "{untagged:?}");
    assert!(
        untagged[0].starts_with("* 1 FETCH (UID 1 RFC822.SIZE "),
        "{untagged:?}"
    );
    let mut other_pop = pop3_login(&server, ALICE);
    other_pop.send("RETR 1\r\n");
    assert!(line_within(&mut other_pop, "RETR").starts_with("+OK"));
    let quick = other_pop.raw_until(b"\r\n.\r\n");
    assert!(quick.ends_with(b"\r\n\r\nquick\r\n.\r\n"), "{quick:?}");
    assert!(started.elapsed() < Duration::from_secs(20));
    // Nothing of the held reads has come out: they really are pending.
    slow_imap.set_read_timeout(Duration::from_millis(200));
    assert!(
        slow_imap.try_line().is_err(),
        "the held FETCH answered before its read was released"
    );
    slow_imap.set_read_timeout(Duration::from_secs(30));
    slow_pop.set_read_timeout(Duration::from_millis(200));
    assert!(
        slow_pop.try_line().is_err(),
        "the held RETR answered before its read was released"
    );
    slow_pop.set_read_timeout(Duration::from_secs(30));

    // Release the "disk": both complete, byte-exact.
    std::fs::write(&release, b"").unwrap();
    let fetched = slow_imap.raw_until(b"f OK FETCH completed\r\n");
    assert!(line_within(&mut slow_pop, "RETR").starts_with("+OK"));
    let retr = slow_pop.raw_until(b"\r\n.\r\n");
    ok(&mut other, "c", "NOOP");
    server.stop();
    let stored = inbox(&server, SLOW);
    assert_eq!(stored.len(), 1);
    assert!(
        fetched == expected_fetch("f", 1, &stored[0]),
        "held FETCH differs"
    );
    assert!(retr == expected_retr(&stored[0]), "held RETR differs");
}

#[test]
fn a_pending_body_read_leaves_the_core_responsive() {
    pending_read_leaves_the_core_responsive(&[]);
}

#[test]
fn a_pending_body_read_leaves_the_core_responsive_with_epoll() {
    pending_read_leaves_the_core_responsive(&[("MONOIO_FORCE_LEGACY_DRIVER", "1")]);
}
