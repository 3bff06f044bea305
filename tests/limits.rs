//! Clients that try to exhaust the server: slowloris, slow readers, stalled message transfers,
//! connection floods; and a panic inside one connection. Each test runs the real binary and
//! attacks it over real sockets, then checks that others are still served.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

const ALICE: &str = "alice@example.test";

/// Reads until the server closes the connection (or `within` passes); returns what it sent
/// and whether it closed.
fn read_to_close(stream: &mut TcpStream, within: Duration) -> (Vec<u8>, bool) {
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return (got, true),
            Err(_) => {}
        }
    }
    (got, false)
}

/// Skips untagged IMAP responses up to the tagged one.
fn tagged(c: &mut Client, tag: &str) -> String {
    loop {
        let line = c.line().expect("tagged response");
        if line.starts_with(&format!("{tag} ")) {
            return line;
        }
    }
}

fn greeted(server: &TestServer, protocol: &str) -> TcpStream {
    let mut s = TcpStream::connect(server.addr(protocol)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).unwrap();
    assert!(n > 0, "no greeting");
    s
}

/// A message to alice goes through port 25 and is stored.
fn delivery_works(server: &TestServer) {
    let mut c = smtp_session(server);
    let (code, text) = smtp_send(
        &mut c,
        "x@remote.test",
        &[ALICE],
        "Subject: ok\r\n\r\nok\r\n",
    );
    assert_eq!(code, 250, "{text}");
    c.expect("QUIT", 221);
}

#[test]
fn slowloris_command_lines_are_cut_off() {
    let server = TestServer::start(
        &[ALICE],
        "[limits]\ncommand_line_timeout_secs = 2\nidle_timeout_secs = 300\n",
    );
    let mut s = greeted(&server, "smtp");
    let started = Instant::now();
    // One byte every 300 ms: each read restarts an idle timer, but not the line's deadline.
    let mut closed = false;
    for b in b"EHLO a-very-patient-client.example\r\n"
        .iter()
        .cycle()
        .take(100)
    {
        if s.write_all(&[*b]).is_err() {
            closed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
        if started.elapsed() > Duration::from_secs(4) {
            break;
        }
    }
    let (reply, eof) = read_to_close(&mut s, Duration::from_secs(5));
    let reply = String::from_utf8_lossy(&reply);
    assert!(closed || eof, "still open after {:?}", started.elapsed());
    assert!(reply.contains("421 4.4.2"), "{reply}");
    assert!(started.elapsed() < Duration::from_secs(8));

    // The same trickle on IMAP, before login.
    let mut s = greeted(&server, "imap");
    let started = Instant::now();
    for b in b"a1 CAPABILITY\r\n".iter().take(12) {
        if s.write_all(&[*b]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let (reply, eof) = read_to_close(&mut s, Duration::from_secs(5));
    assert!(eof, "IMAP trickle still open");
    assert!(
        String::from_utf8_lossy(&reply).contains("* BYE"),
        "{reply:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(9));

    // A client that is silent between commands is not hurried, and whole lines are served.
    let mut c = smtp_session(&server);
    std::thread::sleep(Duration::from_secs(3));
    c.expect("NOOP", 250);
    delivery_works(&server);
}

#[test]
fn trickled_message_content_is_cut_off_and_fast_content_is_not() {
    let server = TestServer::start(
        &[ALICE],
        "[limits]\ncommand_line_timeout_secs = 2\nmin_transfer_rate = 2000\n",
    );
    let mut slow = greeted(&server, "smtp");
    slow.write_all(
        format!("EHLO c\r\nMAIL FROM:<x@remote.test>\r\nRCPT TO:<{ALICE}>\r\nDATA\r\n").as_bytes(),
    )
    .unwrap();
    // About 40 octets per second, far under 2000/s once the 2 s grace is gone.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(6) {
        if slow.write_all(b"Subject: slow\r\n").is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(400));
    }
    let (reply, eof) = read_to_close(&mut slow, Duration::from_secs(5));
    let reply = String::from_utf8_lossy(&reply);
    assert!(eof, "trickled DATA still open: {reply}");
    assert!(reply.contains("421 4.4.2"), "{reply}");

    // 2 MB sent at full speed under the same limits is stored.
    let mut fast = smtp_session(&server);
    fast.expect("MAIL FROM:<x@remote.test>", 250);
    fast.expect(&format!("RCPT TO:<{ALICE}>"), 250);
    fast.expect("DATA", 354);
    let line = "x".repeat(998) + "\r\n";
    let mut body = String::from("Subject: big\r\n\r\n");
    for _ in 0..2000 {
        body.push_str(&line);
    }
    fast.send(&body);
    let (code, text) = fast.cmd(".");
    assert_eq!(code, 250, "{text}");
}

#[test]
fn a_client_that_never_reads_is_dropped() {
    let server = TestServer::start(
        &[ALICE],
        "[limits]\nwrite_timeout_secs = 2\nmax_message_size = 8388608\n",
    );
    // A 4 MB message for alice, then ask for it 20 times without reading a byte.
    let line = "y".repeat(998) + "\r\n";
    let mut body = String::from("Subject: big\r\n\r\n");
    for _ in 0..4000 {
        body.push_str(&line);
    }
    let mut c = smtp_session(&server);
    assert_eq!(smtp_send(&mut c, "x@remote.test", &[ALICE], &body).0, 250);

    let s = TcpStream::connect(server.addr("imaps")).unwrap();
    let mut tls = tls_wrap(s.try_clone().unwrap());
    tls.write_all(format!("a LOGIN {ALICE} \"{PASSWORD}\"\r\nb SELECT INBOX\r\n").as_bytes())
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("b OK") {
        let n = tls.read(&mut buf).unwrap();
        assert!(n > 0);
        seen.extend_from_slice(&buf[..n]);
    }
    let wanted: usize = 20 * 4_000_000;
    for i in 0..20 {
        tls.write_all(format!("f{i} FETCH 1 BODY.PEEK[]\r\n").as_bytes())
            .unwrap();
    }
    // Not reading: the server's writes stall once the socket buffers are full.
    std::thread::sleep(Duration::from_secs(5));
    // Now read: a server that gave up closed the connection after what the socket buffers
    // held; one that did not would send all 80 MB.
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut received = 0usize;
    let mut closed = false;
    while Instant::now() < deadline {
        match tls.read(&mut buf) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(n) => received += n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    assert!(closed, "the slow reader is still connected");
    assert!(
        received < wanted / 2,
        "the server kept writing: {received} of {wanted}"
    );
    drop(tls);
    let _ = s.shutdown(std::net::Shutdown::Both);
    // Others are served.
    delivery_works(&server);
}

#[test]
fn stalled_transfers_share_a_bounded_memory_budget() {
    let mut server = TestServer::start(
        &[ALICE],
        "[limits]\ntransfer_memory_mb = 16\nmax_message_size = 8388608\n",
    );
    let pid = server.child.as_ref().unwrap().id();
    let rss_kib = || -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    };
    let before = rss_kib();
    // 40 unauthenticated clients each send 4 MiB of a message and stall: 160 MiB unbounded.
    let chunk = ("z".repeat(1022) + "\r\n").repeat(1024);
    let mut stalled = Vec::new();
    for _ in 0..40 {
        let mut c = smtp_session(&server);
        c.expect("MAIL FROM:<x@remote.test>", 250);
        c.expect(&format!("RCPT TO:<{ALICE}>"), 250);
        c.expect("DATA", 354);
        for _ in 0..4 {
            c.send(&chunk);
        }
        stalled.push(c);
    }
    std::thread::sleep(Duration::from_millis(500));
    let during = rss_kib();
    eprintln!(
        "server RSS before {before} KiB, with 40 stalled 4 MiB transfers {during} KiB (budget 16 MiB)"
    );
    // The budget plus slack for read buffers and allocator pages; the unbounded server grew by
    // 160 MiB, and before freed buffers were handed back, by up to 68 MiB.
    assert!(
        during < before + 32 * 1024,
        "RSS grew by {} KiB",
        during - before
    );
    // The transfers over the budget were refused when they ended; the others were stored.
    let mut stored = 0;
    let mut refused = 0;
    for mut c in stalled {
        let (code, text) = c.cmd("\r\n.");
        match code {
            250 => stored += 1,
            452 => {
                assert!(text.contains("452 4.3.1"), "{text}");
                refused += 1;
            }
            _ => panic!("{text}"),
        }
    }
    assert!(
        refused > 0 && stored > 0,
        "stored {stored} refused {refused}"
    );
    // The budget is free again.
    let mut c = smtp_session(&server);
    c.expect("MAIL FROM:<x@remote.test>", 250);
    c.expect(&format!("RCPT TO:<{ALICE}>"), 250);
    c.expect("DATA", 354);
    for _ in 0..4 {
        c.send(&chunk);
    }
    assert_eq!(c.cmd("\r\n.").0, 250);
    server.stop();
    assert_eq!(inbox(&server, ALICE).len(), stored + 1);
}

#[test]
fn over_the_connection_cap_clients_get_421_even_with_few_descriptors() {
    let mut server = TestServer::prepare(
        &[ALICE],
        "[relay]\nmax_connections = 4\n[limits]\nmax_connections = 20000\n",
        &[],
    );
    server.open_files = Some(400);
    server.launch();
    server.wait_log("capping them");
    // 400 descriptors, 256 + 4 kept in reserve: 140 connections.
    let mut held = Vec::new();
    let refused = loop {
        let mut s = TcpStream::connect(server.addr("smtp")).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).expect("every client gets an answer");
        let line = String::from_utf8_lossy(&buf[..n]).to_string();
        if line.starts_with("421") {
            break line;
        }
        assert!(line.starts_with("220"), "{line}");
        held.push(s);
        assert!(held.len() <= 140, "the cap did not engage");
    };
    assert_eq!(held.len(), 140, "{refused}");
    assert!(refused.starts_with("421 4.7.0"), "{refused}");
    // The server still has descriptors for its own work.
    held.pop();
    let mut admitted = None;
    wait_until("the freed slot", Duration::from_secs(5), || {
        let mut c = Client::connect(server.addr("smtp"));
        let greeted = c.reply().0 == 220;
        admitted = greeted.then_some(c);
        greeted
    });
    let mut c = admitted.unwrap();
    c.expect("EHLO client.test", 250);
    let (code, text) = smtp_send(
        &mut c,
        "x@remote.test",
        &[ALICE],
        "Subject: ok\r\n\r\nok\r\n",
    );
    assert_eq!(code, 250, "{text}");
    drop(held);
    server.stop();
    assert_eq!(inbox(&server, ALICE).len(), 1);
}

#[test]
fn the_per_address_cap_counts_each_listener_alone() {
    let server = TestServer::start(&[ALICE], "[limits]\nmax_connections_per_ip = 3\n");
    let held: Vec<_> = (0..3).map(|_| greeted(&server, "smtp")).collect();
    let mut s = TcpStream::connect(server.addr("smtp")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 256];
    let n = s.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"421 "), "{:?}", &buf[..n]);
    // The same address is not locked out of IMAP (nor IMAPS) by its SMTP connections.
    let mut imap = Client::connect(server.addr("imap"));
    assert!(imap.line().unwrap().starts_with("* OK"));
    let mut imaps = Client::connect_tls(server.addr("imaps"));
    assert!(imaps.line().unwrap().starts_with("* OK"));
    drop(held);
}

#[test]
fn a_panic_in_one_connection_leaves_the_others_and_the_core_running() {
    let mut server = TestServer::prepare(&[ALICE], "", &[("SUREL_TEST_HOOKS", "1")]);
    server.cores = 1;
    server.launch();
    // A session on the only core, in the middle of its work.
    let mut a = Client::connect_tls(server.addr("imaps"));
    assert!(a.line().unwrap().starts_with("* OK"));
    a.send(&format!("a LOGIN {ALICE} \"{PASSWORD}\"\r\n"));
    assert!(tagged(&mut a, "a").starts_with("a OK"));
    a.send("b SELECT INBOX\r\n");
    assert!(tagged(&mut a, "b").starts_with("b OK"));

    for round in 0..3 {
        let mut b = Client::connect_tls(server.addr("imaps"));
        assert!(b.line().unwrap().starts_with("* OK"));
        b.send("x LOGIN panic@test-hook.invalid whatever\r\n");
        assert!(
            b.is_closed(),
            "round {round}: the panicking connection is closed"
        );
    }
    server.wait_log("connection task panicked, connection closed: test hook");
    server.wait_log("panics=3");

    // The other session, the listeners and delivery on the same core still work.
    a.send("c NOOP\r\n");
    assert!(tagged(&mut a, "c").starts_with("c OK"));
    delivery_works(&server);
    a.send("d NOOP\r\n");
    let mut saw_exists = false;
    loop {
        let line = a.line().unwrap();
        saw_exists |= line.contains("EXISTS");
        if line.starts_with("d OK") {
            break;
        }
    }
    assert!(saw_exists, "the delivery is seen by the session");
    let mut pop = Client::connect(server.addr("pop3"));
    assert!(pop.line().unwrap().starts_with("+OK"));
    server.stop();
    assert_eq!(inbox(&server, ALICE).len(), 1);
}

#[test]
fn run_as_drops_root_after_binding() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: run_as needs the tests to run as root");
        return;
    }
    let mut server = TestServer::prepare(&[ALICE], "run_as = \"nobody\"\n", &[]);
    // What an operator does: the data belongs to the service user.
    let status = std::process::Command::new("chown")
        .args(["-R", "nobody:"])
        .arg(server.data_dir())
        .status()
        .unwrap();
    assert!(status.success());
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(server.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    server.launch();
    let pid = server.child.as_ref().unwrap().id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uids: Vec<&str> = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        uids, ["65534"; 4],
        "real, effective, saved, fs uid: {status}"
    );
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let s = std::fs::read_to_string(task.unwrap().path().join("status")).unwrap();
        assert!(
            s.contains("Uid:\t65534\t65534\t65534\t65534"),
            "a thread kept root: {s}"
        );
    }
    server.wait_log("dropped privileges");
    delivery_works(&server);
    let mut c = Client::connect_tls(server.addr("imaps"));
    assert!(c.line().unwrap().starts_with("* OK"));
    c.send(&format!("a LOGIN {ALICE} \"{PASSWORD}\"\r\n"));
    assert!(tagged(&mut c, "a").starts_with("a OK"));
    server.stop();
    assert_eq!(inbox(&server, ALICE).len(), 1);
}

#[test]
fn stalled_imap_appends_share_the_transfer_budget() {
    let server = TestServer::start(
        &[ALICE],
        "[limits]\ntransfer_memory_mb = 8\nmax_message_size = 8388608\n",
    );
    // Ten logged-in clients each start a 3 MiB APPEND (non-synchronizing literal), send 1 MiB
    // of it and stall: 10 MiB held unbounded against an 8 MiB budget, 30 MiB once finished.
    const SIZE: usize = 3 << 20;
    let line = "a".repeat(1022) + "\r\n";
    let content = |i: usize| {
        let head = format!("Subject: append {i}\r\n\r\n");
        let mut m = head.clone();
        while m.len() + line.len() <= SIZE {
            m.push_str(&line);
        }
        m.push_str(&"b".repeat(SIZE - m.len() - 2));
        m.push_str("\r\n");
        m
    };
    let mut clients = Vec::new();
    for i in 0..10 {
        let mut c = login_tls_as(&server, ALICE);
        let m = content(i);
        c.send(&format!("t{i} APPEND INBOX {{{SIZE}+}}\r\n"));
        c.send(&m[..1 << 20]);
        clients.push((c, m));
    }
    let mut probe = login_tls_as(&server, ALICE);
    ok(&mut probe, "p", "NOOP");
    let (mut stored, mut refused) = (Vec::new(), 0);
    for (i, (c, m)) in clients.iter_mut().enumerate() {
        c.send(&m[1 << 20..]);
        c.send("\r\n");
        let (untagged, status) = collect(c, &format!("t{i}"));
        assert!(untagged.iter().all(|u| u.starts_with("* ")), "{untagged:?}");
        if status.starts_with(&format!("t{i} OK [APPENDUID ")) {
            stored.push(i);
        } else {
            assert_eq!(
                status,
                format!("t{i} NO [UNAVAILABLE] Server busy: try again later")
            );
            refused += 1;
        }
        // The session goes on either way.
        ok(c, "n", "NOOP");
    }
    eprintln!("stored {stored:?}, refused {refused}");
    assert!(refused >= 3, "30 MiB against an 8 MiB budget: {stored:?}");
    assert!(!stored.is_empty(), "the budget admits some: {refused}");
    // The budget came back: a refused client's retry is stored, and what was stored is exact.
    let (c, m) = &mut clients[0];
    c.send(&format!("r APPEND INBOX {{{SIZE}+}}\r\n"));
    c.send(m);
    c.send("\r\n");
    let (_, status) = collect(c, "r");
    assert!(status.starts_with("r OK [APPENDUID "), "{status}");
    ok(&mut probe, "s", "EXAMINE INBOX");
    let untagged = ok(&mut probe, "f", "FETCH 1:* (BODY.PEEK[])");
    assert_eq!(untagged.len(), stored.len() + 1, "{}", untagged.len());
    for (n, fetched) in untagged.iter().enumerate() {
        let i = stored.get(n).copied().unwrap_or(0);
        let expected = format!("* {} FETCH (BODY[] {{{SIZE}}}\r\n{})", n + 1, content(i));
        assert!(fetched == &expected, "message {} differs", n + 1);
    }
}
