//! The whole `Pop3Session` fed arbitrary client bytes by a fake driver (the one of the session's
//! unit tests: fixed passwords, a three-message maildrop, `write_stuffed` for RETR/TOP), and
//! `write_stuffed` itself on arbitrary message bytes.
//!
//! Input: `[flags][split seed][client bytes...]`; `flags` picks TLS, STLS, plaintext AUTH, the
//! maildrop outcome, the commit outcome and small limits.
//!
//! Invariants:
//! * `feed` never reports more consumed octets than it was given;
//! * the output is CRLF lines only (no bare LF), ending in CRLF;
//! * the UIDs QUIT expunges are distinct UIDs of the maildrop;
//! * whole input and chunked input give the same output (unless STLS was taken);
//! * `write_stuffed(m)` read back as a client does (CRLF lines up to `.`, one leading dot
//!   removed) is `m` with bare LF line ends made CRLF and a final CRLF added, and the `.` line is
//!   the last thing written; TOP gives a line-wise prefix of that.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use surel::auth::AuthOutcome;
use surel::pop3::{MaildropOpen, Pop3Config, Pop3Event, Pop3Session, write_stuffed};
use surel::store::{Flags, MailboxSnapshot, MessageMeta, StoreError};

const MESSAGES: [(u32, &[u8]); 3] = [
    (
        3,
        b"From: a@b\r\nSubject: one\r\n\r\nHello\r\n.dot line\r\n..two\r\n.\r\nbye\r\n",
    ),
    (7, b"Subject: two\n\nbare LF body\n.\nend"),
    (11, b"Subject: three\r\n\r\nthird\r\n"),
];

fn body(uid: u32) -> &'static [u8] {
    MESSAGES.iter().find(|(u, _)| *u == uid).expect("a UID of the maildrop").1
}

fn snapshot() -> MailboxSnapshot {
    MailboxSnapshot {
        id: 0,
        uidvalidity: 0x1234,
        uidnext: 12,
        highest_modseq: 1,
        messages: MESSAGES
            .iter()
            .map(|&(uid, bytes)| MessageMeta {
                uid,
                size: bytes.len() as u32,
                internal_date: 0,
                flags: Flags::default(),
                modseq: 1,
                needs_dot_stuffing: true,
                email_id: Default::default(),
                saved: None,
            })
            .collect(),
    }
}

#[derive(Debug, PartialEq)]
struct Run {
    out: Vec<u8>,
    stls: bool,
}

fn run(flags: u8, input: &[u8], chunks: &mut dyn FnMut() -> usize) -> Run {
    let mut config = Pop3Config {
        allow_plaintext_auth: flags & 4 != 0,
        ..Pop3Config::default()
    };
    if flags & 128 != 0 {
        config.max_line = 40;
        config.max_errors = 5;
    }
    let mut s = Pop3Session::new(Arc::new(config), flags & 1 != 0, flags & 2 != 0);
    let mut out = Vec::new();
    s.greeting(&mut out);
    let mut buf = Vec::new();
    let mut stls = false;
    let mut fed = 0;
    'input: while fed < input.len() {
        let n = chunks().clamp(1, input.len() - fed);
        buf.extend_from_slice(&input[fed..fed + n]);
        fed += n;
        loop {
            let (used, ev) = s.feed(&buf, &mut out);
            assert!(used <= buf.len(), "consumed {used} of {}", buf.len());
            buf.drain(..used);
            match ev {
                Pop3Event::NeedInput => {
                    if s.is_closed() {
                        break 'input;
                    }
                    break;
                }
                Pop3Event::Authenticate { username, password } => {
                    let outcome = if password == "secret" {
                        AuthOutcome::Accepted(format!("{username}@example.org"))
                    } else {
                        AuthOutcome::Rejected
                    };
                    match s.auth_result(outcome, &mut out) {
                        Some(Pop3Event::OpenMaildrop { .. }) => {
                            let opened = match (flags >> 3) & 3 {
                                1 => MaildropOpen::InUse,
                                2 => MaildropOpen::Failed(StoreError::Closed),
                                _ => MaildropOpen::Ok(snapshot()),
                            };
                            s.maildrop_opened(opened, &mut out);
                        }
                        Some(Pop3Event::Close) => break 'input,
                        Some(other) => panic!("auth_result returned {other:?}"),
                        None => {}
                    }
                }
                Pop3Event::OpenMaildrop { .. } => panic!("OpenMaildrop from feed"),
                Pop3Event::Send { uid, top_lines } => write_stuffed(body(uid), top_lines, &mut out),
                Pop3Event::Commit { expunge_uids } => {
                    let mut seen = Vec::new();
                    for uid in &expunge_uids {
                        assert!(MESSAGES.iter().any(|(u, _)| u == uid), "unknown UID {uid}");
                        assert!(!seen.contains(uid), "UID {uid} expunged twice");
                        seen.push(*uid);
                    }
                    let result = if flags & 32 == 0 {
                        Ok(())
                    } else {
                        Err(StoreError::Io(std::io::ErrorKind::StorageFull.into()))
                    };
                    s.commit_result(result, &mut out);
                    assert!(s.is_closed());
                    break 'input;
                }
                Pop3Event::StartTls => {
                    buf.clear();
                    s.tls_started();
                    stls = true;
                }
                Pop3Event::Close => break 'input,
            }
        }
    }
    assert!(out.ends_with(b"\r\n"), "unterminated output");
    for (i, &b) in out.iter().enumerate() {
        if b == b'\n' {
            assert!(i > 0 && out[i - 1] == b'\r', "bare LF at {i}: {out:?}");
        }
    }
    Run { out, stls }
}

/// `m` as CRLF lines: bare LF becomes CRLF, a final CRLF is added if missing.
fn normalize(m: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, &b) in m.iter().enumerate() {
        if b == b'\n' && (i == 0 || m[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        if out.ends_with(b"\r") {
            out.push(b'\n');
        } else {
            out.extend_from_slice(b"\r\n");
        }
    }
    out
}

/// Reads a multi-line body as a client does; returns the content and the octets read.
fn unstuff(wire: &[u8]) -> (Vec<u8>, usize) {
    let mut content = Vec::new();
    let mut pos = 0;
    loop {
        let rest = &wire[pos..];
        let n = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("the body ends with a . line")
            + 2;
        let line = &rest[..n];
        pos += n;
        if line == b".\r\n" {
            return (content, pos);
        }
        content.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
    }
}

fn check_stuffing(message: &[u8], top: u8) {
    let full = normalize(message);
    let mut wire = Vec::new();
    write_stuffed(message, None, &mut wire);
    let (content, read) = unstuff(&wire);
    assert_eq!(read, wire.len(), "data after the terminating dot");
    assert_eq!(content, full);

    let mut wire = Vec::new();
    write_stuffed(message, Some(u32::from(top)), &mut wire);
    let (content, read) = unstuff(&wire);
    assert_eq!(read, wire.len(), "data after the terminating dot (TOP)");
    assert!(full.starts_with(&content), "TOP is not a prefix");
    assert!(content.is_empty() || content.ends_with(b"\r\n"));
}

fuzz_target!(|data: &[u8]| {
    let [flags, seed, input @ ..] = data else {
        return;
    };
    check_stuffing(input, *seed);
    let whole = run(*flags, input, &mut || usize::MAX);
    let mut x = u32::from(*seed) | 0x100;
    let mut next = || {
        if *seed == 0 {
            return 1;
        }
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        (x % 13) as usize + 1
    };
    let split = run(*flags, input, &mut next);
    if !whole.stls && !split.stls {
        assert_eq!(
            String::from_utf8_lossy(&whole.out),
            String::from_utf8_lossy(&split.out)
        );
    }
});
