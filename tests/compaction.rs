//! Compaction through the real server and the real command line: a mailbox with many expunged
//! messages shrinks on disk after `surel store compact`, and the server still serves every
//! live message byte for byte; background and on-demand compaction while mail is delivered,
//! fetched and expunged; `surel store check` on the result.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

const ALICE: &str = "alice@example.test";

/// A message of about `size` bytes, named by `id` in an `X-Test-Id` field.
fn message(id: &str, size: usize) -> String {
    let mut m = format!("From: s@r.test\r\nSubject: {id}\r\nX-Test-Id: <{id}>\r\n\r\n");
    let mut n = 0;
    while m.len() + 2 < size {
        // Some lines start with a dot: SMTP stuffs them, POP3 must stuff them again.
        m.push_str(if n % 9 == 0 { ".dot line " } else { "line " });
        m.push_str(&format!("{id} {n}\r\n"));
        n += 1;
    }
    m
}

/// `message` as it goes over SMTP DATA (`smtp_send` sends it verbatim).
fn dot_stuffed(message: &str) -> String {
    message
        .split_inclusive('\n')
        .map(|l| {
            if l.starts_with('.') {
                format!(".{l}")
            } else {
                l.to_string()
            }
        })
        .collect()
}

fn test_id(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    text.split("X-Test-Id: <")
        .nth(1)
        .and_then(|r| r.split('>').next())
        .expect("X-Test-Id")
        .to_string()
}

/// Bytes of mailbox log on disk, all shards.
fn log_bytes(data_dir: &Path) -> u64 {
    let mut total = 0;
    for shard in std::fs::read_dir(data_dir.join("store")).unwrap() {
        let shard = shard.unwrap().path();
        if !shard.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&shard).unwrap() {
            let f = f.unwrap();
            let name = f.file_name().to_string_lossy().to_string();
            if name.starts_with("seg-") && name.ends_with(".log") {
                total += f.metadata().unwrap().len();
            }
        }
    }
    total
}

/// An IMAP session over implicit TLS, logged in.
struct Imap {
    c: Client,
    next_tag: u32,
}

/// One FETCH response: UID, flags, and the BODY[] literal if asked for.
#[derive(Debug)]
struct Fetched {
    uid: u32,
    flags: String,
    body: Option<Vec<u8>>,
}

impl Imap {
    fn login(server: &TestServer, user: &str) -> Imap {
        let mut c = Client::connect_tls(server.addr("imaps"));
        assert!(c.line().unwrap().starts_with("* OK"));
        let mut imap = Imap { c, next_tag: 0 };
        imap.ok(&format!("LOGIN {user} \"{PASSWORD}\""));
        imap
    }

    /// Reads one response line with its literal (if it announces one) and the rest of it.
    fn response(&mut self) -> (String, Option<Vec<u8>>) {
        let line = self.c.raw_until(b"\r\n");
        assert!(!line.is_empty(), "connection closed");
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        let Some(open) = text.strip_suffix('}').and_then(|t| t.rfind('{')) else {
            return (text, None);
        };
        let n: usize = text[open + 1..text.len() - 1]
            .parse()
            .expect("literal size");
        let literal = self.c.read_exact_bytes(n);
        let rest = String::from_utf8_lossy(&self.c.raw_until(b"\r\n"))
            .trim_end()
            .to_string();
        (format!("{text}{rest}"), Some(literal))
    }

    /// Runs a command; returns its untagged responses (with literals). Asserts a tagged OK.
    fn run(&mut self, command: &str) -> Vec<(String, Option<Vec<u8>>)> {
        self.next_tag += 1;
        let tag = format!("t{}", self.next_tag);
        self.c.send(&format!("{tag} {command}\r\n"));
        let mut out = Vec::new();
        loop {
            let (text, literal) = self.response();
            if let Some(status) = text.strip_prefix(&format!("{tag} ")) {
                assert!(status.starts_with("OK"), "{command} -> {text}");
                return out;
            }
            out.push((text, literal));
        }
    }

    fn ok(&mut self, command: &str) -> Vec<String> {
        self.run(command).into_iter().map(|(t, _)| t).collect()
    }

    /// SELECT; returns (UIDVALIDITY, UIDNEXT).
    fn select(&mut self, mailbox: &str) -> (u32, u32) {
        let lines = self.ok(&format!("SELECT {mailbox}"));
        let code = |name: &str| -> u32 {
            lines
                .iter()
                .find_map(|l| l.split(&format!("[{name} ")).nth(1))
                .and_then(|r| r.split(']').next())
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in {lines:?}"))
        };
        (code("UIDVALIDITY"), code("UIDNEXT"))
    }

    fn fetch(&mut self, range: &str, items: &str) -> Vec<Fetched> {
        self.run(&format!("UID FETCH {range} ({items})"))
            .into_iter()
            .filter(|(t, _)| t.contains(" FETCH ("))
            .map(|(t, body)| {
                let uid = t
                    .split("UID ")
                    .nth(1)
                    .and_then(|r| r.split([' ', ')']).next())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("no UID in {t}"));
                let flags = t
                    .split("FLAGS (")
                    .nth(1)
                    .and_then(|r| r.split(')').next())
                    .unwrap_or("")
                    .to_string();
                Fetched { uid, flags, body }
            })
            .collect()
    }
}

/// POP3 over implicit TLS: every message, dot-stuffing undone.
fn pop3_messages(server: &TestServer, user: &str) -> Vec<Vec<u8>> {
    let mut c = Client::connect_tls(server.addr("pop3s"));
    assert!(c.line().unwrap().starts_with("+OK"));
    for cmd in [format!("USER {user}"), format!("PASS {PASSWORD}")] {
        c.send(&format!("{cmd}\r\n"));
        assert!(c.line().unwrap().starts_with("+OK"), "{cmd}");
    }
    c.send("STAT\r\n");
    let stat = c.line().unwrap();
    let n: usize = stat.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut out = Vec::new();
    for i in 1..=n {
        c.send(&format!("RETR {i}\r\n"));
        assert!(c.line().unwrap().starts_with("+OK"));
        let raw = c.raw_until(b"\r\n.\r\n");
        let mut body = Vec::new();
        for line in raw[..raw.len() - 3].split_inclusive(|b| *b == b'\n') {
            body.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
        }
        out.push(body);
    }
    c.send("QUIT\r\n");
    out
}

#[test]
fn store_compact_shrinks_a_mailbox_and_the_server_serves_every_live_message() {
    // Background compaction off: the shrinking below is the command's doing.
    let mut server = TestServer::start(&[ALICE], "[store]\nsegment_mb = 1\ncompact_dead_pct = 0\n");
    let mut smtp = smtp_session(&server);
    for i in 0..300 {
        let body = dot_stuffed(&message(&format!("m{i}"), 10_000));
        assert_eq!(smtp_send(&mut smtp, "s@r.test", &[ALICE], &body).0, 250);
    }
    smtp.expect("QUIT", 221);

    let mut imap = Imap::login(&server, ALICE);
    let (uidvalidity, uidnext) = imap.select("INBOX");
    let stored: BTreeMap<u32, Vec<u8>> = imap
        .fetch("1:*", "UID BODY.PEEK[]")
        .into_iter()
        .map(|f| (f.uid, f.body.expect("body")))
        .collect();
    assert_eq!(stored.len(), 300);
    // Keep every fifth message, flag some of the survivors, expunge the rest.
    let keep: Vec<u32> = stored.keys().copied().filter(|u| u % 5 == 0).collect();
    let gone: Vec<String> = stored
        .keys()
        .filter(|u| *u % 5 != 0)
        .map(|u| u.to_string())
        .collect();
    imap.ok(&format!(
        "UID STORE {} +FLAGS.SILENT (\\Deleted)",
        gone.join(",")
    ));
    imap.ok(&format!("UID EXPUNGE {}", gone.join(",")));
    imap.ok("UID STORE 1:* +FLAGS.SILENT (\\Flagged)");
    imap.ok("UID STORE 1:100 -FLAGS.SILENT (\\Flagged)");
    imap.ok("LOGOUT");
    server.stop();

    let before = log_bytes(&server.data_dir());
    assert!(before > 3_000_000, "{before}");
    let out = run_cli(
        &["store", "compact", "--data-dir"],
        &server.data_dir(),
        None,
    );
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(stdout.starts_with("compacted "), "{stdout}");
    let after = log_bytes(&server.data_dir());
    assert!(after < before / 3, "{before} -> {after} bytes ({stdout})");
    let check = run_cli(&["store", "check", "--data-dir"], &server.data_dir(), None);
    assert!(check.status.success(), "{check:?}");
    assert!(String::from_utf8_lossy(&check.stdout).contains("clean: "));

    server.launch();
    let mut imap = Imap::login(&server, ALICE);
    assert_eq!(imap.select("INBOX"), (uidvalidity, uidnext));
    let now = imap.fetch("1:*", "UID FLAGS BODY.PEEK[]");
    assert_eq!(now.iter().map(|f| f.uid).collect::<Vec<_>>(), keep);
    for f in &now {
        assert_eq!(f.body.as_ref().unwrap(), &stored[&f.uid], "uid {}", f.uid);
        assert_eq!(
            f.flags.contains("\\Flagged"),
            f.uid > 100,
            "uid {}: {}",
            f.uid,
            f.flags
        );
    }
    let popped = pop3_messages(&server, ALICE);
    assert_eq!(popped.len(), keep.len());
    for (bytes, uid) in popped.iter().zip(&keep) {
        assert_eq!(bytes, &stored[uid], "POP3, uid {uid}");
    }
    // UIDs go on from where they were.
    let mut smtp = smtp_session(&server);
    assert_eq!(
        smtp_send(
            &mut smtp,
            "s@r.test",
            &[ALICE],
            &dot_stuffed(&message("new", 500))
        )
        .0,
        250
    );
    imap.ok("NOOP");
    let newest = imap.fetch("*", "UID");
    assert_eq!(newest.last().unwrap().uid, uidnext);
}

#[test]
fn compaction_runs_while_mail_is_delivered_fetched_and_expunged() {
    let mut server =
        TestServer::start(&[ALICE], "[store]\nsegment_mb = 1\ncompact_dead_pct = 30\n");
    // id → what is sent (recorded before sending: IMAP may see it before the reply arrives).
    let sent: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let total = 700;
    let deliverer = {
        let (sent, done, addr) = (sent.clone(), done.clone(), server.addr("smtp"));
        std::thread::spawn(move || {
            let mut c = Client::connect(addr);
            assert_eq!(c.reply().0, 220);
            c.expect("EHLO client.test", 250);
            for i in 0..total {
                let id = format!("d{i}");
                let body = message(&id, 6_000);
                sent.lock().unwrap().insert(id, body.clone());
                let stuffed = dot_stuffed(&body);
                assert_eq!(smtp_send(&mut c, "s@r.test", &[ALICE], &stuffed).0, 250);
            }
            c.expect("QUIT", 221);
            done.store(true, Ordering::Relaxed);
        })
    };

    let deadline = Instant::now() + Duration::from_secs(90);
    let mut imap = Imap::login(&server, ALICE);
    let mut fetched = 0usize;
    let mut next_uid = 1u32;
    let mut compacted_online = false;
    let mut kept: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
    loop {
        let finished = done.load(Ordering::Relaxed);
        imap.select("INBOX");
        let new = imap.fetch(&format!("{next_uid}:*"), "UID BODY.PEEK[]");
        let mut expunge = Vec::new();
        let from = next_uid;
        for f in new.into_iter().filter(|f| f.uid >= from) {
            let body = f.body.unwrap();
            let id = test_id(&body);
            let expect = sent.lock().unwrap().get(&id).cloned();
            let expect = expect.unwrap_or_else(|| panic!("{id} was never sent"));
            assert!(
                body.ends_with(expect.as_bytes()),
                "uid {}: not the message sent",
                f.uid
            );
            fetched += 1;
            next_uid = f.uid + 1;
            if f.uid % 5 == 0 {
                kept.insert(f.uid, body);
            } else {
                expunge.push(f.uid.to_string());
            }
        }
        if !expunge.is_empty() {
            let set = expunge.join(",");
            imap.ok(&format!("UID STORE {set} +FLAGS.SILENT (\\Deleted)"));
            imap.ok(&format!("UID EXPUNGE {set}"));
        }
        // An on-demand pass through the control socket, in the middle of it all.
        if !compacted_online && fetched > total / 2 {
            let out = run_cli(
                &["store", "compact", "--data-dir"],
                &server.data_dir(),
                None,
            );
            assert!(out.status.success(), "{out:?}");
            compacted_online = true;
        }
        if finished {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "fetched only {fetched} of {total}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    deliverer.join().unwrap();
    assert_eq!(fetched, total);
    assert!(compacted_online);

    // Every kept message is still served byte for byte.
    let now = imap.fetch("1:*", "UID BODY.PEEK[]");
    assert_eq!(
        now.iter().map(|f| f.uid).collect::<Vec<_>>(),
        kept.keys().copied().collect::<Vec<_>>()
    );
    for f in &now {
        assert_eq!(f.body.as_ref().unwrap(), &kept[&f.uid], "uid {}", f.uid);
    }
    imap.ok("LOGOUT");
    // 700 messages of 6 kB are 4.2 MB of log before compaction.
    let size = log_bytes(&server.data_dir());
    assert!(size < 2_500_000, "{size} bytes of log");
    assert!(
        server.log().contains("segment compacted"),
        "{}",
        server.log()
    );
    server.stop();
    let check = run_cli(&["store", "check", "--data-dir"], &server.data_dir(), None);
    assert!(check.status.success(), "{check:?}");
}

/// The segment files of the shard holding the most of them, in order.
fn busiest_shard_segments(data_dir: &Path) -> Vec<std::path::PathBuf> {
    let mut best: Vec<std::path::PathBuf> = Vec::new();
    for shard in std::fs::read_dir(data_dir.join("store")).unwrap() {
        let shard = shard.unwrap().path();
        if !shard.is_dir() {
            continue;
        }
        let mut segs: Vec<_> = std::fs::read_dir(&shard)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                let n = p.file_name().unwrap().to_string_lossy();
                n.starts_with("seg-") && n.ends_with(".log")
            })
            .collect();
        segs.sort();
        if segs.len() > best.len() {
            best = segs;
        }
    }
    best
}

#[test]
fn store_check_exit_status_follows_damage_and_repair_only_cuts_torn_tails() {
    let mut server = TestServer::start(&[ALICE], "[store]\nsegment_mb = 1\n");
    let mut smtp = smtp_session(&server);
    for i in 0..250 {
        let body = dot_stuffed(&message(&format!("c{i}"), 10_000));
        assert_eq!(smtp_send(&mut smtp, "s@r.test", &[ALICE], &body).0, 250);
    }
    smtp.expect("QUIT", 221);
    let data = server.data_dir();
    let check = |repair: bool| {
        let args: &[&str] = if repair {
            &["store", "check", "--repair", "--data-dir"]
        } else {
            &["store", "check", "--data-dir"]
        };
        let out = run_cli(args, &data, None);
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    let (ok, text) = check(false);
    assert!(
        !ok && text.contains("in use"),
        "refused beside the server: {text}"
    );
    server.stop();
    let (ok, text) = check(false);
    assert!(
        ok && text.contains("clean: ") && text.contains("250 messages"),
        "{text}"
    );

    let segs = busiest_shard_segments(&data);
    assert!(segs.len() >= 3, "{segs:?}");
    // A flipped byte in a sealed segment: damage, never "repaired".
    let sealed = std::fs::read(&segs[0]).unwrap();
    let mut damaged = sealed.clone();
    damaged[sealed.len() / 2] ^= 0x20;
    std::fs::write(&segs[0], &damaged).unwrap();
    for repair in [false, true] {
        let (ok, text) = check(repair);
        assert!(!ok && text.contains("DAMAGE"), "repair={repair}: {text}");
        assert_eq!(std::fs::read(&segs[0]).unwrap(), damaged);
    }
    std::fs::write(&segs[0], &sealed).unwrap();

    // Half a record at the end of the last segment: a torn tail, which --repair cuts.
    let last = segs.last().unwrap();
    let good = std::fs::read(last).unwrap();
    let mut torn = good.clone();
    torn.extend_from_slice(&[0x00, 0x10, 0x00, 0x00, 6, 9, 9]);
    std::fs::write(last, &torn).unwrap();
    let (ok, text) = check(false);
    assert!(!ok && text.contains("torn tail"), "{text}");
    let (ok, text) = check(true);
    assert!(ok && text.contains("repaired"), "{text}");
    assert_eq!(std::fs::read(last).unwrap(), good);
    let (ok, text) = check(false);
    assert!(ok, "{text}");
    server.launch();
    let mut imap = Imap::login(&server, ALICE);
    imap.select("INBOX");
    assert_eq!(imap.fetch("1:*", "UID").len(), 250);
}
