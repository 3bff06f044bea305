//! The whole `ImapSession` fed arbitrary client bytes, with its store commands executed against
//! a real `LogStore` (on tmpfs, fsync off), driven the way the session tests' client drives it.
//!
//! Each input gets a fresh account holding three messages (plain, MIME multipart with a nested
//! message, one with dot lines and 8-bit text), so inputs do not see each other's mail; the store
//! is reopened empty every few thousand inputs to bound its size.
//!
//! Input: `[flags][split seed][client bytes...]`; `flags` picks implicit TLS, STARTTLS,
//! plaintext LOGIN, and small limits (line, literal, flush threshold, error count).
//!
//! Invariants:
//! * `feed` never reports more consumed octets than it was given;
//! * the output is a sequence of well-framed responses: CRLF lines, literals `{N}` followed by
//!   exactly N octets, each response starting with `* `, `+ ` or `tag OK|NO|BAD ` where the tag
//!   is a valid tag the client sent;
//! * every store command ends (`Step::Flush` is followed by `resume` until it does).
#![no_main]

use std::future::Future;
use std::path::PathBuf;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use libfuzzer_sys::fuzz_target;
use surel::auth::AuthOutcome;
use surel::imap::{ImapConfig, ImapEvent, ImapSession, Step};
use surel::store::{Flags, LogStore, MailStore, NewMessage, StoreConfig};

/// Inputs served by one store before it is thrown away.
const INPUTS_PER_STORE: u64 = 4000;

struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// The store's async methods only await a oneshot answered by its writer thread, so a
/// park-until-woken executor is enough (no runtime needed).
fn block_on<F: Future>(f: F) -> F::Output {
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park_timeout(std::time::Duration::from_millis(100));
    }
}

struct Shared {
    store: Option<(LogStore, PathBuf)>,
    inputs: u64,
}

static SHARED: Mutex<Shared> = Mutex::new(Shared {
    store: None,
    inputs: 0,
});
static ACCOUNTS: AtomicU64 = AtomicU64::new(0);

fn store() -> LogStore {
    let mut shared = SHARED.lock().unwrap();
    shared.inputs += 1;
    if shared.inputs.is_multiple_of(INPUTS_PER_STORE)
        && let Some((old, dir)) = shared.store.take()
    {
        old.close();
        let _ = std::fs::remove_dir_all(dir);
    }
    if shared.store.is_none() {
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!(
            "surel-fuzz-imap-{}-{}",
            std::process::id(),
            shared.inputs
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let store = LogStore::open(StoreConfig {
            dir: dir.clone(),
            shards: 1,
            fsync: false,
            segment_bytes: 64 << 20,
            checkpoint_bytes: 64 << 20,
            queue_segment_bytes: 16 << 20,
            ..Default::default()
        })
        .expect("store opens");
        shared.store = Some((store, dir));
    }
    shared.store.as_ref().unwrap().0.clone()
}

const PLAIN: &[u8] = b"From: Bob <bob@example.com>\r\nTo: alice@example.org\r\nSubject: one\r\n\
Date: Tue, 14 Nov 2023 10:00:00 +0000\r\nMessage-ID: <one@example.com>\r\n\r\nhello world\r\n";
const MULTIPART: &[u8] = b"From: =?utf-8?q?Caf=C3=A9?= <c@example.net>\r\nTo: a@example.org, \
\"Group\": x@y.z;\r\nSubject: two\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\npreamble\r\n--b1\r\n\
Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
caf=E9 au lait\r\n--b1\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\ninner body\r\n\
--b1\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\
Content-Disposition: attachment; filename=\"a.bin\"\r\n\r\nAAECAwQ=\r\n--b1--\r\n";
const DOTS: &[u8] = b"Subject: three\n\n.leading dot\n..two\n\xc3\xa9t\xc3\xa9 8-bit\n";

fn deliver(store: &LogStore, account: &str) {
    let messages = [PLAIN, MULTIPART, DOTS]
        .iter()
        .enumerate()
        .map(|(i, bytes)| NewMessage {
            account: account.to_string(),
            mailbox: "INBOX".into(),
            bytes: bytes.to_vec().into(),
            flags: Flags::default(),
            internal_date: 1_700_000_000 + i as i64,
        })
        .collect();
    block_on(store.append(messages)).expect("seed messages stored");
}

fn is_tag_char(b: u8) -> bool {
    b.is_ascii_graphic() && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b'+')
}

fn find_crlf(s: &[u8]) -> Option<usize> {
    s.windows(2).position(|w| w == b"\r\n")
}

/// `{N}` or `~{N}` at the end of a line: N.
fn literal_len(line: &[u8]) -> Option<usize> {
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|&b| b == b'{')?;
    let digits = &inner[open + 1..];
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

fn check_responses(out: &[u8], input: &[u8]) {
    let mut pos = 0;
    while pos < out.len() {
        let start = pos;
        // One response: lines joined by literals.
        loop {
            let rest = &out[pos..];
            let end = find_crlf(rest).unwrap_or_else(|| panic!("unterminated response at {pos}"));
            let line = &rest[..end];
            assert!(
                !line.contains(&b'\n'),
                "bare LF in {:?}",
                String::from_utf8_lossy(line)
            );
            pos += end + 2;
            match literal_len(line) {
                Some(n) => {
                    assert!(pos + n <= out.len(), "literal runs past the output");
                    pos += n;
                }
                None => break,
            }
        }
        let first = &out[start..];
        if first.starts_with(b"* ") || first.starts_with(b"+ ") {
            continue;
        }
        let sp = first
            .iter()
            .position(|&b| b == b' ')
            .unwrap_or_else(|| panic!("no tag in {:?}", String::from_utf8_lossy(first)));
        let tag = &first[..sp];
        // Any length: RFC 3501 sets no limit, and a parsed command's tag is echoed whole (only
        // the reader's refusals, which never parsed the line, fall back to `*` past 64).
        assert!(
            !tag.is_empty() && tag.iter().all(|&b| is_tag_char(b)),
            "bad tag {:?}",
            String::from_utf8_lossy(tag)
        );
        assert!(
            input.windows(tag.len()).any(|w| w == tag),
            "tag {:?} was never sent",
            String::from_utf8_lossy(tag)
        );
        let status = &first[sp + 1..];
        assert!(
            status.starts_with(b"OK ") || status.starts_with(b"NO ") || status.starts_with(b"BAD "),
            "not a status: {:?}",
            String::from_utf8_lossy(&first[..first.len().min(80)])
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let [flags, seed, input @ ..] = data else {
        return;
    };
    let store = store();
    let account = format!("fuzz{}", ACCOUNTS.fetch_add(1, Ordering::Relaxed));
    deliver(&store, &account);
    let mut config = ImapConfig {
        hostname: "imap.example.org".into(),
        allow_plaintext_auth: flags & 2 != 0,
        starttls: flags & 4 != 0,
        ..ImapConfig::default()
    };
    if flags & 8 != 0 {
        config.max_line = 200;
        config.max_literal = 300;
        config.flush_threshold = 64;
        config.max_errors = 4;
    }
    let mut s = ImapSession::new(config, flags & 1 != 0);
    let mut out = Vec::new();
    s.greeting(&mut out);

    let mut x = u32::from(*seed) | 0x100;
    let mut next = || {
        if *seed == 0 {
            return usize::MAX;
        }
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        (x % 23) as usize + 1
    };
    let mut buf: Vec<u8> = Vec::new();
    let mut fed = 0;
    'input: while fed < input.len() {
        let n = next().clamp(1, input.len() - fed);
        buf.extend_from_slice(&input[fed..fed + n]);
        fed += n;
        loop {
            let (used, ev) = s.feed(&buf, &mut out);
            assert!(used <= buf.len(), "consumed {used} of {}", buf.len());
            buf.drain(..used);
            match ev {
                None => break,
                Some(ImapEvent::Command(c)) => {
                    let mut step = block_on(s.execute(&store, *c, &mut out));
                    while step == Step::Flush {
                        step = block_on(s.resume(&store, &mut out));
                    }
                    if step == Step::Close {
                        break 'input;
                    }
                }
                Some(ImapEvent::Authenticate { password, .. }) => {
                    let outcome = if password == "pw" {
                        AuthOutcome::Accepted(account.clone())
                    } else {
                        AuthOutcome::Rejected
                    };
                    if s.auth_result(outcome, &mut out).is_some() {
                        break 'input;
                    }
                }
                Some(ImapEvent::StartTls) => {
                    buf.clear();
                    s.tls_started();
                }
                // Later input would be compressed; the session's side is what is fuzzed.
                Some(ImapEvent::Compress) => s.compression_started(),
                Some(ImapEvent::Close) => break 'input,
            }
        }
    }
    check_responses(&out, input);
});
