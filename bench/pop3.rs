//! POP3 protocol-core benchmarks (parser, dot-stuffing, a pipelined session).
//!
//! Not registered yet (the crate has `autobenches = false`); the integrator adds to Cargo.toml:
//! ```toml
//! [[bench]]
//! name = "pop3"
//! path = "bench/pop3.rs"
//! harness = false
//! ```
use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use surel::auth::AuthOutcome;
use surel::pop3::{MaildropOpen, Pop3Config, Pop3Event, Pop3Session, parse_command, write_stuffed};
use surel::store::{Flags, MailboxSnapshot, MessageMeta};

fn message(size: usize, dot_lines: bool) -> Vec<u8> {
    let mut m = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: bench\r\n\r\n".to_vec();
    let mut i = 0;
    while m.len() < size {
        if dot_lines && i % 10 == 0 {
            m.extend_from_slice(b".leading dot line\r\n");
        } else {
            m.extend_from_slice(b"The quick brown fox jumps over the lazy dog 0123456789.\r\n");
        }
        i += 1;
    }
    m
}

fn bench_parse(c: &mut Criterion) {
    let lines: [&[u8]; 5] = [
        b"RETR 12",
        b"LIST",
        b"TOP 3 10",
        b"uidl 1234",
        b"USER alice@example.org",
    ];
    c.bench_function("pop3/parse_command", |b| {
        b.iter(|| {
            for l in lines {
                black_box(parse_command(black_box(l)).unwrap());
            }
        })
    });
}

fn bench_stuff(c: &mut Criterion) {
    let mut g = c.benchmark_group("pop3/write_stuffed");
    for (name, dots) in [("clean_64k", false), ("dots_64k", true)] {
        let m = message(64 * 1024, dots);
        let mut out = Vec::with_capacity(80 * 1024);
        g.throughput(Throughput::Bytes(m.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                write_stuffed(black_box(&m), None, &mut out);
                black_box(out.len())
            })
        });
    }
    g.finish();
}

fn bench_session(c: &mut Criterion) {
    let config = Arc::new(Pop3Config::default());
    let metas: Vec<MessageMeta> = (1..=100)
        .map(|uid| MessageMeta {
            uid,
            size: 4000,
            internal_date: 0,
            flags: Flags::default(),
            modseq: 1,
            needs_dot_stuffing: false,
            email_id: Default::default(),
            saved: None,
        })
        .collect();
    let snapshot = MailboxSnapshot {
        id: 0,
        uidvalidity: 1,
        uidnext: 101,
        highest_modseq: 1,
        messages: metas,
    };
    let script = b"CAPA\r\nUSER alice\r\nPASS secret\r\nSTAT\r\nLIST\r\nUIDL\r\nDELE 1\r\nDELE 2\r\nQUIT\r\n";
    c.bench_function("pop3/session_login_list_uidl_quit_100", |b| {
        let mut out = Vec::with_capacity(16 * 1024);
        b.iter(|| {
            out.clear();
            let mut s = Pop3Session::new(config.clone(), true, false);
            s.greeting(&mut out);
            let mut input: &[u8] = script;
            loop {
                let (used, ev) = s.feed(input, &mut out);
                input = &input[used..];
                match ev {
                    Pop3Event::Authenticate { username, .. } => {
                        if let Some(Pop3Event::OpenMaildrop { .. }) =
                            s.auth_result(AuthOutcome::Accepted(username), &mut out)
                        {
                            s.maildrop_opened(MaildropOpen::Ok(snapshot.clone()), &mut out);
                        }
                    }
                    Pop3Event::Commit { .. } => {
                        s.commit_result(Ok(()), &mut out);
                        break;
                    }
                    Pop3Event::NeedInput | Pop3Event::Close => break,
                    _ => {}
                }
            }
            black_box(out.len())
        })
    });
}

criterion_group!(benches, bench_parse, bench_stuff, bench_session);
criterion_main!(benches);
