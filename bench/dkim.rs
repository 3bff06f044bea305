//! DKIM signing cost per message (`surel::dkim::sign`, relaxed/relaxed) for RSA-2048 and
//! Ed25519 on a 4 KiB message: what one signer thread spends per outbound message.
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use surel::dkim::{DkimAlgorithm, DkimKeys, generate, sign};

fn message(size: usize) -> Vec<u8> {
    let mut m = b"From: Alice <alice@example.org>\r\nTo: bob@example.net\r\n\
Subject: bench\r\nDate: Tue, 2 Dec 2025 08:00:00 +0000\r\nMessage-ID: <b@example.org>\r\n\
MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        .to_vec();
    while m.len() < size {
        m.extend_from_slice(b"The quick brown fox  jumps over the lazy dog 0123456789. \r\n");
    }
    m.truncate(size - 2);
    m.extend_from_slice(b"\r\n");
    m
}

fn bench_sign(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), "example.org", "rsa", DkimAlgorithm::Rsa).unwrap();
    generate(dir.path(), "example.net", "ed", DkimAlgorithm::Ed25519).unwrap();
    let keys = DkimKeys::load(dir.path()).unwrap();
    let m = message(4096);

    let mut g = c.benchmark_group("dkim/sign_4k");
    g.throughput(Throughput::Elements(1));
    for (name, domain) in [("rsa2048", "example.org"), ("ed25519", "example.net")] {
        let key = keys.for_domain(domain).unwrap();
        g.bench_function(name, |b| {
            b.iter(|| black_box(sign(key, black_box(&m)).unwrap()))
        });
    }
    g.finish();
}

criterion_group!(benches, bench_sign);
criterion_main!(benches);
