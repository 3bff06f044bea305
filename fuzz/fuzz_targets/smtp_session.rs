//! The whole `SmtpSession` fed arbitrary client bytes, answered the way `src/smtp/tests.rs`'s
//! fake driver answers it (routing through `delivery::router::route` over a fake directory).
//!
//! Input: `[flags][split seed][client bytes...]`. `flags` picks the listener kind, TLS, STARTTLS,
//! plaintext AUTH, relay permission, delivery failure and small or default limits; the split
//! seed picks the chunk sizes of the second run (0: byte at a time).
//!
//! Invariants:
//! * `feed` never reports more consumed octets than it was given;
//! * every reply is CRLF-terminated lines `ddd-text` ... `ddd text` with one code per reply and
//!   no bare CR or LF inside a line;
//! * a delivered transaction respects the limits (size, recipient count, size = octets after
//!   the Received header) and has at least one recipient;
//! * feeding the same bytes whole or in chunks gives the same replies and the same
//!   transactions, unless STARTTLS was taken (the driver then drops pipelined input, so the two
//!   runs legitimately differ).
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use surel::auth::{AuthOutcome, Directory, Recipient};
use surel::delivery::{DeliveryError, Envelope, router};
use surel::smtp::{ListenerKind, SmtpConfig, SmtpEvent, SmtpSession};

struct FakeDir;

impl Directory for FakeDir {
    fn resolve(&self, address: &str) -> Recipient {
        if address == "postmaster" {
            return Recipient::Local(vec!["admin@example.org".into()]);
        }
        match address.to_ascii_lowercase().rsplit_once('@') {
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

#[derive(Clone, Copy)]
struct Setup {
    kind: ListenerKind,
    tls: bool,
    starttls: bool,
    plaintext_auth: bool,
    relay_client: bool,
    fail_delivery: bool,
    small_limits: bool,
}

impl Setup {
    fn from_flags(f: u8) -> Setup {
        Setup {
            kind: match f & 3 {
                1 => ListenerKind::Submission,
                2 => ListenerKind::Submissions,
                _ => ListenerKind::Mx,
            },
            tls: f & 4 != 0,
            starttls: f & 8 != 0,
            plaintext_auth: f & 16 != 0,
            relay_client: f & 32 != 0,
            fail_delivery: f & 64 != 0,
            small_limits: f & 128 != 0,
        }
    }

    fn config(&self) -> SmtpConfig {
        let mut c = SmtpConfig {
            hostname: "mx.example.org".into(),
            allow_plaintext_auth: self.plaintext_auth,
            ..SmtpConfig::default()
        };
        if self.small_limits {
            c.max_message_size = 200;
            c.max_recipients = 3;
            c.max_command_line = 80;
            c.max_data_line = 40;
            c.max_errors = 6;
        }
        c
    }
}

/// What one run produced, with the random queue ids taken out.
#[derive(Debug, PartialEq)]
struct Run {
    replies: Vec<u8>,
    /// Envelope (id blanked) and message content after the Received header.
    delivered: Vec<(Envelope, Vec<u8>)>,
    starttls: bool,
    closed: bool,
}

fn run(setup: Setup, input: &[u8], chunks: &mut dyn FnMut() -> usize) -> Run {
    let config = Arc::new(setup.config());
    let mut s = SmtpSession::new(
        config.clone(),
        setup.kind,
        "192.0.2.7:40000".parse().unwrap(),
        setup.tls,
        setup.starttls,
    );
    s.set_relay_client(setup.relay_client);
    let mut out = Vec::new();
    s.greeting(&mut out);
    let mut buf = Vec::new();
    let mut ids = Vec::new();
    let mut r = Run {
        replies: Vec::new(),
        delivered: Vec::new(),
        starttls: false,
        closed: false,
    };
    let mut fed = 0;
    'input: while fed < input.len() {
        let n = chunks().clamp(1, input.len() - fed);
        buf.extend_from_slice(&input[fed..fed + n]);
        fed += n;
        // Every event either consumes input or moves the session on; a session that answers
        // the same event forever is a bug (libFuzzer reports it as a timeout).
        loop {
            let (used, ev) = s.feed(&buf, &mut out);
            assert!(used <= buf.len(), "consumed {used} of {}", buf.len());
            buf.drain(..used);
            match ev {
                SmtpEvent::NeedInput => break,
                SmtpEvent::Route { address, may_relay } => {
                    let routed = router::route(&FakeDir, &address, may_relay);
                    s.route_result(routed, &mut out);
                }
                SmtpEvent::CheckSender { address, account } => {
                    // Sender binding: an account may send as itself only.
                    s.sender_result(address.eq_ignore_ascii_case(&account), &mut out);
                }
                SmtpEvent::Authenticate { username, password } => {
                    let outcome = if password == "secret" {
                        AuthOutcome::Accepted(username)
                    } else {
                        AuthOutcome::Rejected
                    };
                    s.auth_result(outcome, &mut out);
                }
                SmtpEvent::Deliver(t) => {
                    assert!(t.size <= config.max_message_size, "size {}", t.size);
                    assert!(t.size <= t.message.len());
                    assert!(t.message.starts_with(b"Received: from "));
                    let received = &t.message[..t.message.len() - t.size];
                    assert!(received.ends_with(b"\r\n"), "{received:?}");
                    assert!(!t.envelope.recipients.is_empty());
                    assert!(t.envelope.recipients.len() <= config.max_recipients);
                    assert!(!t.envelope.id.is_empty());
                    ids.push(t.envelope.id.clone());
                    let content = t.message[t.message.len() - t.size..].to_vec();
                    let mut envelope = t.envelope;
                    envelope.id.clear();
                    r.delivered.push((envelope, content));
                    let result = if setup.fail_delivery {
                        Err(DeliveryError::Temporary("disk on fire".into()))
                    } else {
                        Ok(())
                    };
                    s.delivery_result(result, &mut out);
                }
                SmtpEvent::StartTls => {
                    // CVE-2011-0411: whatever was pipelined after STARTTLS is dropped.
                    buf.clear();
                    s.tls_started();
                    r.starttls = true;
                    break;
                }
                SmtpEvent::Close => {
                    r.closed = true;
                    break 'input;
                }
            }
        }
    }
    check_replies(&out);
    // Queue ids are random: replace them so two runs compare equal.
    let mut text = out;
    for id in &ids {
        text = replace(&text, id.as_bytes(), b"<id>");
    }
    r.replies = text;
    r
}

fn replace(hay: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(needle) {
            out.extend_from_slice(with);
            i += needle.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

/// Every reply: lines `ddd-...` continuing with the same code, ending with `ddd ...` (or a
/// bare `ddd`), each ending in CRLF with no other CR or LF.
fn check_replies(out: &[u8]) {
    assert!(out.ends_with(b"\r\n"), "unterminated reply: {out:?}");
    let mut continuing: Option<&[u8]> = None;
    // Without the final LF, every piece split at LF must end in CR.
    for line in out[..out.len() - 1].split(|&b| b == b'\n') {
        let line = line
            .strip_suffix(b"\r")
            .unwrap_or_else(|| panic!("bare LF in {out:?}"));
        assert!(!line.contains(&b'\r'), "bare CR in {line:?}");
        assert!(line.len() >= 3, "short line {line:?}");
        let code = &line[..3];
        assert!(
            matches!(code[0], b'2'..=b'5') && code[1..].iter().all(u8::is_ascii_digit),
            "bad code in {line:?}"
        );
        if let Some(first) = continuing {
            assert_eq!(first, code, "code changed inside a reply");
        }
        continuing = match line.get(3) {
            Some(b'-') => Some(code),
            Some(b' ') | None => None,
            Some(_) => panic!("no separator after the code: {line:?}"),
        };
    }
    assert!(continuing.is_none(), "last reply has no final line");
}

fuzz_target!(|data: &[u8]| {
    let [flags, seed, input @ ..] = data else {
        return;
    };
    let setup = Setup::from_flags(*flags);
    let whole = run(setup, input, &mut || usize::MAX);
    let mut x = u32::from(*seed) | 0x100;
    let mut next = || {
        if *seed == 0 {
            return 1;
        }
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        (x % 17) as usize + 1
    };
    let split = run(setup, input, &mut next);
    if !whole.starttls && !split.starttls {
        assert_eq!(
            String::from_utf8_lossy(&whole.replies),
            String::from_utf8_lossy(&split.replies)
        );
        assert_eq!(whole, split);
    }
});
