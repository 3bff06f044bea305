//! `surel dkim generate` end to end: the record it prints, served by a real DNS server on
//! 127.0.0.1, lets an independent verifier (mail-auth over hickory) check mail signed with
//! the key it wrote.

mod common;
#[path = "common/dkim.rs"]
mod dkim_check;

use std::net::{SocketAddr, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use common::run_cli;
use mail_auth::DkimResult;
use mail_auth::hickory_resolver::proto::op::{Message, OpCode, ResponseCode};
use mail_auth::hickory_resolver::proto::rr::rdata::TXT;
use mail_auth::hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use surel::dkim::{DkimAlgorithm, DkimKeys, key_dir, sign, txt_record_value};

/// An authoritative DNS server for one TXT record, on 127.0.0.1 (UDP, an ephemeral port).
/// Every other name is NXDOMAIN. Stops when dropped.
struct TxtServer {
    addr: SocketAddr,
    queries: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TxtServer {
    fn start(name: &str, strings: Vec<String>) -> TxtServer {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let name = Name::from_ascii(name).unwrap();
        let (queries, stop) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let thread = {
            let (queries, stop) = (queries.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((len, peer)) = socket.recv_from(&mut buf) else {
                        continue;
                    };
                    let Ok(request) = Message::from_vec(&buf[..len]) else {
                        continue;
                    };
                    queries.fetch_add(1, Ordering::Relaxed);
                    let mut response = Message::response(request.metadata.id, OpCode::Query);
                    response.metadata.authoritative = true;
                    response.metadata.recursion_desired = request.metadata.recursion_desired;
                    response.edns = request.edns.clone();
                    let mut found = false;
                    for query in &request.queries {
                        response.add_query(query.clone());
                        if query.query_type() == RecordType::TXT && query.name() == &name {
                            found = true;
                            response.add_answer(Record::from_rdata(
                                query.name().clone(),
                                60,
                                RData::TXT(TXT::new(strings.clone())),
                            ));
                        }
                    }
                    if !found {
                        response.metadata.response_code = ResponseCode::NXDomain;
                    }
                    let _ = socket.send_to(&response.to_vec().unwrap(), peer);
                }
            })
        };
        TxtServer {
            addr,
            queries,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for TxtServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// mail-auth's verdicts on `message` when resolving through `server`.
fn verify(server: &TxtServer, message: &[u8]) -> Vec<DkimResult> {
    dkim_check::verdicts(server.addr, message)
}

/// `name. IN TXT ( "a" "b" )` → (name, [a, b]).
fn parse_record_line(line: &str) -> (String, Vec<String>) {
    let (name, rest) = line.split_once(' ').expect("name");
    let inner = rest
        .strip_prefix("IN TXT ( ")
        .and_then(|r| r.strip_suffix(" )"))
        .unwrap_or_else(|| panic!("not a TXT record line: {line}"));
    let pieces: Vec<&str> = inner.split('"').collect();
    // Quoted strings separated by single spaces: "a" "b" → ["", a, " ", b, ""].
    assert!(pieces.len() >= 3 && pieces.len() % 2 == 1, "{line}");
    for (i, piece) in pieces.iter().enumerate() {
        if i % 2 == 0 {
            let expected = if i == 0 || i == pieces.len() - 1 {
                ""
            } else {
                " "
            };
            assert_eq!(*piece, expected, "{line}");
        }
    }
    let strings = pieces
        .iter()
        .skip(1)
        .step_by(2)
        .map(|s| s.to_string())
        .collect();
    (name.to_string(), strings)
}

const MESSAGE: &str = "From: Postmaster <postmaster@example.org>\r\n\
To: someone@example.net\r\n\
Subject: DKIM end to end\r\n\
Date: Tue, 2 Dec 2025 08:00:00 +0000\r\n\
Message-ID: <e2e@example.org>\r\n\
\r\n\
Signed by a key from `surel dkim generate`.\r\n";

fn generate_publish_and_verify(data: &Path, args: &[&str], algorithm: DkimAlgorithm) {
    let out = run_cli(args, data, None);
    assert!(out.status.success(), "{args:?}: {out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stdout.lines().count(), 1, "one record line: {stdout}");
    let (name, strings) = parse_record_line(stdout.trim_end());
    assert!(
        strings.iter().all(|s| !s.is_empty() && s.len() <= 255),
        "{strings:?}"
    );

    // The key file it wrote, where it said it wrote it, private to the owner.
    let selector = name.split('.').next().unwrap().to_string();
    let path = key_dir(data).join(format!("{selector}._domainkey.example.org.pem"));
    assert!(stderr.contains(&path.display().to_string()), "{stderr}");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    let keys = DkimKeys::load(&key_dir(data)).unwrap();
    let key = keys.iter().find(|k| k.path() == path).expect("key loads");
    assert_eq!(key.algorithm(), algorithm);
    assert_eq!(name, format!("{}.", key.record_name()));
    assert_eq!(strings.concat(), txt_record_value(key));

    // Published as printed (several character-strings), it verifies mail signed with the key.
    let dns = TxtServer::start(&name, strings);
    let mut signed = sign(key, MESSAGE.as_bytes()).unwrap();
    signed.extend_from_slice(MESSAGE.as_bytes());
    assert_eq!(verify(&dns, &signed), [DkimResult::Pass], "{algorithm}");
    assert!(dns.queries.load(Ordering::Relaxed) >= 1, "went through DNS");
    // And a tampered body does not.
    let tampered = String::from_utf8(signed)
        .unwrap()
        .replace("Signed by", "Forged by");
    assert_eq!(
        verify(&dns, tampered.as_bytes()),
        [DkimResult::Neutral(mail_auth::Error::Dkim(
            mail_auth::dkim::DkimError::FailedBodyHashMatch
        ))]
    );
}

#[test]
fn generated_key_and_printed_record_verify_through_dns() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    // Defaults: RSA, selector "surel".
    generate_publish_and_verify(
        data,
        &["dkim", "generate", "Example.ORG", "--data-dir"],
        DkimAlgorithm::Rsa,
    );
    generate_publish_and_verify(
        data,
        &[
            "dkim",
            "generate",
            "example.org",
            "--algorithm",
            "ed25519",
            "--selector",
            "ed2025",
            "--data-dir",
        ],
        DkimAlgorithm::Ed25519,
    );
    // The newest of the domain's two keys is the one that signs (the second run started
    // after the first had exited: its file is the younger by far more than a clock tick).
    let keys = DkimKeys::load(&key_dir(data)).unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys.for_domain("example.org").unwrap().selector(), "ed2025");
}

#[test]
fn bad_input_exits_1_with_one_line_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let fail = |args: &[&str], expected: &str| {
        let out = run_cli(args, data, None);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
        assert!(out.stdout.is_empty(), "{out:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.starts_with("surel: "), "{err}");
        assert!(err.contains(expected), "{args:?}: {err}");
    };
    fail(
        &[
            "dkim",
            "generate",
            "example.org",
            "--algorithm",
            "dsa",
            "--data-dir",
        ],
        "unknown DKIM algorithm",
    );
    fail(
        &["dkim", "generate", "../etc", "--data-dir"],
        "invalid domain",
    );
    fail(&["dkim", "generate", "", "--data-dir"], "invalid domain");
    fail(
        &[
            "dkim",
            "generate",
            "example.org",
            "--selector",
            "a/b",
            "--data-dir",
        ],
        "invalid selector",
    );
    assert!(!key_dir(data).exists());

    let ok = run_cli(
        &[
            "dkim",
            "generate",
            "example.org",
            "--algorithm",
            "ed25519",
            "--data-dir",
        ],
        data,
        None,
    );
    assert!(ok.status.success(), "{ok:?}");
    let path = key_dir(data).join("surel._domainkey.example.org.pem");
    let before = std::fs::read(&path).unwrap();
    fail(
        &["dkim", "generate", "EXAMPLE.org", "--data-dir"],
        "already exists",
    );
    assert_eq!(std::fs::read(&path).unwrap(), before, "key untouched");
}
