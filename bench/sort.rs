//! SORT and THREAD on a 100 000-message mailbox, through the IMAP session and a real store,
//! as Roundcube runs them on every list view: SORT (DATE), SORT (SUBJECT), SORT (FROM),
//! THREAD=REFERENCES and THREAD=ORDEREDSUBJECT over ALL.
//!
//! The first SORT reads every header into the per-core field cache; its time is printed once
//! ("cold"). The measured iterations are the warm case, which is what a client that sorts
//! again and again sees. Run with a short measurement time:
//! `cargo bench --bench sort -- --measurement-time 5`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use monoio::{LegacyDriver, Runtime, RuntimeBuilder};
use surel::auth::AuthOutcome;
use surel::imap::{ImapConfig, ImapEvent, ImapSession, Step};
use surel::store::{Flags, LogStore, MailStore, NewMessage, StoreConfig};

const MESSAGES: usize = 100_000;
/// Conversations in the mailbox: replies reference earlier messages of the same one.
const CONVERSATIONS: usize = 8_000;

fn runtime() -> Runtime<LegacyDriver> {
    RuntimeBuilder::<LegacyDriver>::new()
        .build()
        .expect("monoio runtime")
}

/// A deterministic pseudo-random sequence (no dependency, same mailbox on every run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
}

const NAMES: &[&str] = &[
    "Alice", "Bob", "Carol", "Dave", "Émile", "Frank", "Grace", "Heidi", "Ivan", "Judy",
];

fn message(i: usize, rng: &mut Lcg, last_in_conversation: &mut [Option<usize>]) -> NewMessage {
    let conversation = rng.next() as usize % CONVERSATIONS;
    let name = NAMES[rng.next() as usize % NAMES.len()];
    let date = 1_600_000_000 + (i as i64) * 600 + (rng.next() % 3600) as i64;
    let (prefix, references) = match last_in_conversation[conversation] {
        Some(parent) => ("Re: ", format!("References: <{parent}@bench.test>\r\n")),
        None => ("", String::new()),
    };
    last_in_conversation[conversation] = Some(i);
    let header = format!(
        "From: {name} <{}{}@example.org>\r\nTo: list@example.org\r\n\
Subject: {prefix}[list] Topic number {conversation}\r\nDate: {}\r\n\
Message-ID: <{i}@bench.test>\r\n{references}MIME-Version: 1.0\r\n\r\n",
        name.to_lowercase(),
        rng.next() % 100,
        rfc2822(date),
    );
    let mut bytes = header.into_bytes();
    bytes.extend_from_slice(&b"Some body text for the message.\r\n".repeat(20));
    NewMessage {
        account: "bench".into(),
        mailbox: "INBOX".into(),
        bytes: bytes.into(),
        flags: Flags::default(),
        internal_date: date + 30,
    }
}

fn rfc2822(t: i64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{day} {} {year} {:02}:{:02}:{:02} +0000",
        MONTHS[(month - 1) as usize],
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Feed one command and run it to completion; returns the response bytes.
async fn run(session: &mut ImapSession, store: &LogStore, command: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let (_, event) = session.feed(command, &mut out);
    match event {
        Some(ImapEvent::Command(cmd)) => {
            let mut step = session.execute(store, *cmd, &mut out).await;
            while step == Step::Flush {
                step = session.resume(store, &mut out).await;
            }
        }
        Some(ImapEvent::Authenticate { username, .. }) => {
            session.auth_result(AuthOutcome::Accepted(username), &mut out);
        }
        other => panic!("unexpected {other:?}"),
    }
    out
}

fn sort_and_thread(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LogStore::open(StoreConfig {
        dir: dir.path().to_path_buf(),
        shards: 1,
        fsync: false,
        segment_bytes: 256 << 20,
        checkpoint_bytes: 1 << 30,
        queue_segment_bytes: 16 << 20,
        ..Default::default()
    })
    .expect("open store");
    let rt = std::cell::RefCell::new(runtime());
    let mut session = ImapSession::new(ImapConfig::default(), true);
    rt.borrow_mut().block_on(async {
        let mut rng = Lcg(42);
        let mut last = vec![None; CONVERSATIONS];
        let mut i = 0;
        while i < MESSAGES {
            let batch: Vec<NewMessage> = (i..(i + 1000).min(MESSAGES))
                .map(|n| message(n, &mut rng, &mut last))
                .collect();
            i += batch.len();
            store.append(batch).await.expect("append");
        }
        run(&mut session, &store, b"l LOGIN bench pw\r\n").await;
        let selected = run(&mut session, &store, b"s SELECT INBOX\r\n").await;
        assert!(
            String::from_utf8_lossy(&selected).contains(&format!("* {MESSAGES} EXISTS")),
            "{}",
            String::from_utf8_lossy(&selected)
        );
        let start = Instant::now();
        let out = run(&mut session, &store, b"w SORT (DATE) UTF-8 ALL\r\n").await;
        eprintln!(
            "sort/cold: first SORT (DATE) of {MESSAGES} messages, reading every header: {:?}",
            start.elapsed()
        );
        assert!(out.ends_with(b"w OK SORT completed\r\n"));
    });

    let mut g = c.benchmark_group("imap_sort_100k");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(5));
    for (name, command) in [
        ("sort_date", &b"a SORT (DATE) UTF-8 ALL\r\n"[..]),
        ("sort_subject", b"a SORT (SUBJECT) UTF-8 ALL\r\n"),
        ("sort_from", b"a SORT (FROM) UTF-8 ALL\r\n"),
        ("thread_references", b"a THREAD REFERENCES UTF-8 ALL\r\n"),
        (
            "thread_orderedsubject",
            b"a THREAD ORDEREDSUBJECT UTF-8 ALL\r\n",
        ),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let out = rt.borrow_mut().block_on(run(&mut session, &store, command));
                assert!(out.ends_with(b" completed\r\n"));
                black_box(out.len())
            })
        });
    }
    g.finish();
    store.close();
}

criterion_group!(benches, sort_and_thread);
criterion_main!(benches);
