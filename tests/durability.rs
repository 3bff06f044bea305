//! Durability through the real server: restarts, a torn log tail, and SIGKILL during delivery.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use surel::store::MailStore;

const ACCOUNT: &str = "alice@example.test";

fn stored_uids_and_bodies(server: &TestServer) -> Vec<(u32, Vec<u8>)> {
    let store = server.open_store();
    let snap = store.snapshot(ACCOUNT, "INBOX").expect("INBOX");
    snap.messages
        .iter()
        .map(|m| (m.uid, store.read(ACCOUNT, "INBOX", m.uid).unwrap()))
        .collect()
}

fn deliver_numbered(server: &TestServer, from: usize, to: usize) {
    let mut c = smtp_session(server);
    for n in from..to {
        let body = format!("Subject: message {n}\r\nX-Test-Id: id-{n}\r\n\r\nbody {n}\r\n");
        assert_eq!(smtp_send(&mut c, "s@r.test", &[ACCOUNT], &body).0, 250);
    }
    c.expect("QUIT", 221);
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// The segment file holding the account's messages: the largest one.
fn largest_segment(server: &TestServer) -> std::path::PathBuf {
    let mut best: Option<(u64, std::path::PathBuf)> = None;
    for shard in std::fs::read_dir(server.data_dir().join("store")).unwrap() {
        let shard = shard.unwrap().path();
        if !shard.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&shard).unwrap() {
            let p = f.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            if name.starts_with("seg-") {
                let len = std::fs::metadata(&p).unwrap().len();
                if best.as_ref().is_none_or(|(l, _)| len > *l) {
                    best = Some((len, p));
                }
            }
        }
    }
    best.expect("a segment file").1
}

#[test]
fn restart_keeps_messages_uids_and_uidvalidity() {
    let mut server = TestServer::start(&[ACCOUNT], "");
    deliver_numbered(&server, 0, 5);
    server.stop();
    let before = stored_uids_and_bodies(&server);
    let uidvalidity = server
        .open_store()
        .snapshot(ACCOUNT, "INBOX")
        .unwrap()
        .uidvalidity;
    assert_eq!(before.len(), 5);
    server.launch();
    deliver_numbered(&server, 5, 6);
    server.stop();
    let after = stored_uids_and_bodies(&server);
    assert_eq!(&after[..5], &before[..]);
    assert!(
        after[5].0 > before[4].0,
        "UIDs keep increasing across restarts"
    );
    assert_eq!(
        server
            .open_store()
            .snapshot(ACCOUNT, "INBOX")
            .unwrap()
            .uidvalidity,
        uidvalidity
    );
}

#[test]
fn torn_tail_is_cut_and_everything_before_it_survives() {
    let mut server = TestServer::start(&[ACCOUNT], "");
    deliver_numbered(&server, 0, 3);
    server.stop();
    let before = stored_uids_and_bodies(&server);
    let segment = largest_segment(&server);

    // A crash in the middle of writing a record: a header promising more than what follows.
    let mut bytes = std::fs::read(&segment).unwrap();
    let good_len = bytes.len();
    bytes.extend_from_slice(&[
        0x00, 0x10, 0x00, 0x00, 0x06, 0xde, 0xad, 0xbe, 0xef, b'R', b'e',
    ]);
    std::fs::write(&segment, &bytes).unwrap();
    server.launch();
    deliver_numbered(&server, 3, 4);
    server.stop();
    let after = stored_uids_and_bodies(&server);
    assert_eq!(
        &after[..3],
        &before[..],
        "nothing before the torn record is lost"
    );
    assert_eq!(after.len(), 4);
    assert!(contains(&after[3].1, "id-3"));

    // Cut the log in the middle of the last message's record: that message is gone, the
    // ones before it are intact, and the server starts.
    let segment = largest_segment(&server);
    let len = std::fs::metadata(&segment).unwrap().len();
    assert!(len > good_len as u64);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap();
    f.set_len(len - 20).unwrap();
    drop(f);
    server.launch();
    server.stop();
    let recovered = stored_uids_and_bodies(&server);
    assert_eq!(&recovered[..], &after[..3]);
}

#[test]
fn sigkill_during_delivery_loses_no_acknowledged_message() {
    let mut server = TestServer::start(&[ACCOUNT, "bob@example.test"], "");
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let addr = server.addr("smtp");
    let mut clients = Vec::new();
    for t in 0..4 {
        let acked = acked.clone();
        let stop = stop.clone();
        clients.push(std::thread::spawn(move || {
            // Errors are expected once the server is killed; every loop is bounded.
            let _ = std::panic::catch_unwind(move || {
                let mut c = Client::connect(addr);
                c.reply();
                c.cmd("EHLO k.test");
                for n in 0..5000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let id = format!("kill-{t}-{n}");
                    if c.cmd("MAIL FROM:<s@r.test>").0 != 250
                        || c.cmd(&format!("RCPT TO:<{ACCOUNT}>")).0 != 250
                        || c.cmd("RCPT TO:<bob@example.test>").0 != 250
                        || c.cmd("DATA").0 != 354
                    {
                        break;
                    }
                    c.send(&format!(
                        "Subject: {id}\r\nX-Test-Id: <{id}>\r\n\r\n{}\r\n",
                        "z".repeat(2000)
                    ));
                    if c.cmd(".").0 == 250 {
                        acked.lock().unwrap().push(id);
                    }
                }
            });
        }));
    }
    // Kill in the middle of the load: once a good number were acknowledged, with more in flight.
    wait_until("the load to run", Duration::from_secs(30), || {
        acked.lock().unwrap().len() >= 200
    });
    server.kill();
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    eprintln!("{} messages acknowledged before SIGKILL", acked.len());
    assert!(
        acked.len() > 10,
        "the load ran: {} acknowledged",
        acked.len()
    );

    // Recovery happens at start-up.
    server.launch();
    server.stop();
    let store = server.open_store();
    for account in [ACCOUNT, "bob@example.test"] {
        let snap = store.snapshot(account, "INBOX").unwrap();
        let mut seen = std::collections::HashMap::<String, usize>::new();
        for m in &snap.messages {
            let bytes = store.read(account, "INBOX", m.uid).unwrap();
            let text = String::from_utf8_lossy(&bytes);
            let id = text
                .split("X-Test-Id: <")
                .nth(1)
                .and_then(|r| r.split('>').next())
                .expect("test id")
                .to_string();
            assert!(
                text.ends_with(&format!("{}\r\n", "z".repeat(2000))),
                "intact body"
            );
            *seen.entry(id).or_default() += 1;
        }
        for id in &acked {
            assert_eq!(
                seen.get(id),
                Some(&1),
                "{account}: acknowledged {id} must be stored exactly once"
            );
        }
        assert!(seen.values().all(|&n| n == 1), "no duplicates");
    }
}
