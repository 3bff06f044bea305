//! SMTP protocol core benchmarks: command parsing and DATA reception.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use surel::smtp::{DataReceiver, parse_command};

fn commands(c: &mut Criterion) {
    let lines: &[&[u8]] = &[
        b"EHLO client.example.org\r\n",
        b"MAIL FROM:<sender@example.com> SIZE=12345 BODY=8BITMIME\r\n",
        b"RCPT TO:<recipient@example.org>\r\n",
        b"DATA\r\n",
        b"BDAT 65536 LAST\r\n",
        b"QUIT\r\n",
    ];
    let mut g = c.benchmark_group("parse_command");
    for line in lines {
        let name = String::from_utf8_lossy(&line[..4]).to_string();
        g.bench_function(name, |b| {
            b.iter(|| black_box(parse_command(black_box(line))))
        });
    }
    g.finish();
}

/// A message of about `size` octets in 72-column lines, every 10th line dot-stuffed.
fn message(size: usize) -> Vec<u8> {
    let mut m = b"From: a@example.com\r\nTo: b@example.org\r\nSubject: bench\r\n\r\n".to_vec();
    let mut i = 0;
    while m.len() < size {
        if i % 10 == 0 {
            m.extend_from_slice(b"..");
        }
        m.extend_from_slice(&[b'a' + (i % 26) as u8; 70]);
        m.extend_from_slice(b"\r\n");
        i += 1;
    }
    m.extend_from_slice(b".\r\n");
    m
}

fn data(c: &mut Criterion) {
    let mut g = c.benchmark_group("data_receiver");
    for (name, size) in [("4KiB", 4096), ("1MiB", 1 << 20)] {
        let input = message(size);
        g.throughput(Throughput::Bytes(input.len() as u64));
        g.bench_function(name, |b| {
            let mut out = Vec::with_capacity(input.len());
            b.iter(|| {
                out.clear();
                let mut rx = DataReceiver::new(25 << 20, 65536);
                let (n, done) = rx.feed(black_box(&input), &mut out);
                assert!(done && n == input.len());
                black_box(out.len())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, commands, data);
criterion_main!(benches);
