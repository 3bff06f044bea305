//! Drive the library's SMTP and POP3 clients against tiny in-process fake servers
//! (std threads on loopback) and check what goes over the wire.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::time::Duration;

use loadgen::client::pop3::{self, Pop3Client};
use loadgen::client::smtp::{self, SmtpClient};
use loadgen::message::{Generator, SizeSpec};

fn rt() -> monoio::Runtime<monoio::time::TimeDriver<monoio::LegacyDriver>> {
    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .unwrap()
}

/// A minimal SMTP server: PIPELINING, rejects `nobody@`, returns the un-stuffed DATA.
fn fake_smtp(listener: TcpListener) -> Vec<Vec<u8>> {
    let (s, _) = listener.accept().unwrap();
    fake_smtp_session(s)
}

fn fake_smtp_session(s: std::net::TcpStream) -> Vec<Vec<u8>> {
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    w.write_all(b"220 fake ESMTP\r\n").unwrap();
    let mut got = vec![];
    let mut line = Vec::new();
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line).unwrap() == 0 {
            break;
        }
        let cmd = String::from_utf8_lossy(&line).to_ascii_uppercase();
        if cmd.starts_with("EHLO") {
            w.write_all(b"250-fake\r\n250-PIPELINING\r\n250-SIZE 1000000\r\n250 8BITMIME\r\n")
                .unwrap();
        } else if cmd.starts_with("MAIL") {
            w.write_all(b"250 2.1.0 ok\r\n").unwrap();
        } else if cmd.starts_with("RCPT") {
            if cmd.contains("NOBODY@") {
                w.write_all(b"550 5.1.1 no such user\r\n").unwrap();
            } else {
                w.write_all(b"250 2.1.5 ok\r\n").unwrap();
            }
        } else if cmd.starts_with("DATA") {
            w.write_all(b"354 go\r\n").unwrap();
            let mut msg = vec![];
            loop {
                line.clear();
                r.read_until(b'\n', &mut line).unwrap();
                if line == b".\r\n" {
                    break;
                }
                let l = if line.starts_with(b".") {
                    &line[1..]
                } else {
                    &line[..]
                };
                msg.extend_from_slice(l);
            }
            got.push(msg);
            w.write_all(b"250 2.0.0 queued\r\n").unwrap();
        } else if cmd.starts_with("QUIT") {
            w.write_all(b"221 bye\r\n").unwrap();
            break;
        } else {
            w.write_all(b"502 what\r\n").unwrap();
        }
    }
    got
}

#[test]
fn smtp_pipelined_delivery_roundtrip() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || fake_smtp(listener));
    let g = Generator {
        seed: 3,
        run_id: "t".into(),
        size: SizeSpec::Realistic,
        from: "a@example.test".into(),
        date: "Thu, 1 Jan 1970 00:00:00 +0000".into(),
    };
    let msgs: Vec<Vec<u8>> = (0..20)
        .map(|n| g.build(n, &["u1@example.test".into()]))
        .collect();
    assert!(
        msgs.iter().any(|m| m.windows(2).any(|w| w == b"\n.")),
        "generator should produce dot lines"
    );
    assert!(
        msgs.iter().any(|m| m.windows(5).any(|w| w == b"\r\n.\r\n")),
        "generator should produce lone-dot lines"
    );
    let sent = msgs.clone();
    rt().block_on(async move {
        let mut c = SmtpClient::connect(
            addr,
            Duration::from_secs(5),
            smtp::Security::None,
            None,
            "me",
            None,
        )
        .await
        .unwrap();
        assert!(c.caps.pipelining);
        assert_eq!(c.caps.size, Some(1_000_000));
        for (i, m) in sent.iter().enumerate() {
            let rcpts = vec![
                "u1@example.test".to_string(),
                "nobody@example.test".to_string(),
            ];
            let last = i + 1 == sent.len();
            let r = c
                .send_message("a@example.test", &rcpts, m, i % 2 == 0, last)
                .await
                .unwrap();
            assert_eq!(r.accepted, vec![0]);
            assert_eq!(r.rejected, vec![550]);
        }
    });
    let got = server.join().unwrap();
    assert_eq!(got, msgs);
}

#[test]
fn smtp_all_recipients_rejected() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || fake_smtp(listener));
    rt().block_on(async move {
        let mut c = SmtpClient::connect(
            addr,
            Duration::from_secs(5),
            smtp::Security::None,
            None,
            "me",
            None,
        )
        .await
        .unwrap();
        for pipelining in [true, false] {
            let e = c
                .send_message(
                    "a@x",
                    &["nobody@x".to_string()],
                    b"Subject: x\r\n\r\nx\r\n",
                    pipelining,
                    false,
                )
                .await
                .unwrap_err();
            assert_eq!(e.key(), "550", "pipelining={pipelining}");
        }
        c.quit().await;
    });
    // the naive server said 354 to the pipelined DATA: the client ended it with an empty body
    assert_eq!(server.join().unwrap(), vec![Vec::<u8>::new()]);
}

#[test]
fn pop3_retr_unstuffs() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let body = b"Subject: a\r\n\r\n.leading dot\r\n.\r\nend\r\n".to_vec();
    let mut stuffed = vec![];
    smtp::dot_stuff_into(&body, &mut stuffed);
    let server = std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        let mut w = s.try_clone().unwrap();
        let mut r = BufReader::new(s);
        w.write_all(b"+OK fake\r\n").unwrap();
        let mut line = String::new();
        loop {
            line.clear();
            if r.read_line(&mut line).unwrap() == 0 {
                break;
            }
            let u = line.to_ascii_uppercase();
            if u.starts_with("STAT") {
                w.write_all(b"+OK 1 50\r\n").unwrap();
            } else if u.starts_with("RETR") {
                w.write_all(b"+OK 50 octets\r\n").unwrap();
                w.write_all(&stuffed).unwrap();
            } else if u.starts_with("PASS WRONG") {
                w.write_all(b"-ERR [AUTH] no\r\n").unwrap();
            } else if u.starts_with("QUIT") {
                w.write_all(b"+OK bye\r\n").unwrap();
                break;
            } else {
                w.write_all(b"+OK\r\n").unwrap();
            }
        }
    });
    let expect = body.clone();
    rt().block_on(async move {
        let mut c = Pop3Client::connect(addr, Duration::from_secs(5), pop3::Security::None, None)
            .await
            .unwrap();
        assert_eq!(c.login("u", "wrong").await.unwrap_err().key(), "-ERR");
        c.login("u", "p").await.unwrap();
        assert_eq!(c.stat().await.unwrap(), (1, 50));
        let mut out = vec![];
        c.retr(1, &mut out).await.unwrap();
        assert_eq!(out, expect);
        c.quit().await.unwrap();
    });
    server.join().unwrap();
}

/// The whole runner (2 worker threads, closed loop, connection reuse) against a fake server
/// that serves each connection on its own thread.
#[test]
fn runner_counts_every_message() {
    use loadgen::runner::{self, Plan, SmtpWork, Work};
    use std::sync::{Arc, Mutex};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let g2 = got.clone();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let g = g2.clone();
            std::thread::spawn(move || {
                let msgs = fake_smtp_session(s.unwrap());
                g.lock().unwrap().extend(msgs);
            });
        }
    });
    let generator = Generator {
        seed: 9,
        run_id: "run".into(),
        size: SizeSpec::Fixed(2000),
        from: "a@example.test".into(),
        date: "Thu, 1 Jan 1970 00:00:00 +0000".into(),
    };
    let work = SmtpWork {
        addr,
        security: smtp::Security::None,
        tls: None,
        ehlo: "me".into(),
        from: "a@example.test".into(),
        auth: None,
        auth_each: false,
        pipelining: true,
        msgs_per_conn: 3,
        rcpts: 2,
        users: 7,
        user_pattern: "user%04d@example.test".into(),
        password: "x".into(),
        generator: generator.clone(),
        track_delivered: true,
        e2e: None,
    };
    let plan = Arc::new(Plan::new(
        2,
        false,
        4,
        None,
        Some(50),
        None,
        Duration::from_secs(5),
        true,
    ));
    let out = runner::run(plan, Work::Smtp(Arc::new(work)));
    assert_eq!(out.total.ok, 50);
    assert_eq!(out.total.failed, 0);
    assert_eq!(out.total.bytes, 50 * 2000);
    assert_eq!(out.total.hist.len(), 50);
    let mut delivered = out.delivered.clone();
    delivered.sort();
    assert_eq!(delivered.len(), 50);
    assert_eq!(delivered[7], (7, vec![1, 2])); // (7*2+0)%7+1, (7*2+1)%7+1
    // wait for the server threads to record the last sessions
    for _ in 0..100 {
        if got.lock().unwrap().len() == 50 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut got = got.lock().unwrap().clone();
    got.sort();
    let mut want: Vec<Vec<u8>> = (0..50)
        .map(|n| {
            let to: Vec<String> = loadgen::message::rcpt_users(n, 2, 7)
                .map(|u| loadgen::message::user_name("user%04d@example.test", u))
                .collect();
            generator.build(n, &to)
        })
        .collect();
    want.sort();
    assert_eq!(got, want);
}
