//! COMPRESS=DEFLATE: the connection's deflate layer on realistic mail (headers, a prose text
//! part, its HTML twin, a base64 attachment), written as the connection writes FETCH output
//! (32 KiB chunks, a sync flush per 256 KiB reply buffer), at levels 1 and 6; and inflating a
//! client's commands. Before the benches it prints the compression ratios and the heap one
//! connection's compression state takes (counted by a wrapping allocator).
//!
//! `cargo bench --bench compress`

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use surel::net::deflate::{DEFLATE_CHUNK, DeflateLayer, Inflater};

struct Counting;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: same layout as asked.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: allocated above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A deterministic pseudo-random stream (xorshift), so every run sees the same mail.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

const WORDS: &[&str] = &[
    "the", "report", "meeting", "budget", "quarter", "team", "please", "find", "attached",
    "regards", "we", "will", "discuss", "next", "week", "project", "deadline", "customer",
    "invoice", "update", "thanks", "for", "your", "help", "with", "this", "and", "of", "to", "in",
    "is", "on", "that", "review", "draft", "schedule", "Monday", "Friday", "office", "numbers",
    "sales", "growth", "figures", "agenda", "minutes", "action", "items", "owner",
];

fn prose(rng: &mut Rng, len: usize) -> String {
    let mut s = String::new();
    let mut col = 0;
    while s.len() < len {
        let w = WORDS[(rng.next() % WORDS.len() as u64) as usize];
        s.push_str(w);
        col += w.len() + 1;
        if rng.next().is_multiple_of(11) {
            s.push('.');
        }
        if col > 68 {
            s.push_str("\r\n");
            col = 0;
        } else {
            s.push(' ');
        }
    }
    s
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for (i, c) in bytes.chunks(3).enumerate() {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for k in 0..4 {
            s.push(A[(n >> (18 - 6 * k) & 63) as usize] as char);
        }
        if i % 19 == 18 {
            s.push_str("\r\n");
        }
    }
    s
}

/// One message of about `text` octets of prose (twice: plain and HTML) and `attachment`
/// octets of random binary, base64-encoded.
fn mail(rng: &mut Rng, i: usize, text: usize, attachment: usize) -> Vec<u8> {
    let body = prose(rng, text);
    let html = format!(
        "<html><body><p>{}</p></body></html>",
        body.replace("\r\n", "<br>\r\n")
    );
    let bin: Vec<u8> = (0..attachment).map(|_| rng.next() as u8).collect();
    format!(
        "Return-Path: <bob@example.org>\r\n\
Received: from mail.example.org (mail.example.org [192.0.2.{a}]) by mx.example.com with ESMTPS id {i:08x}\r\n\
\tfor <alice@example.com>; Tue, 14 Nov 2023 10:{m:02}:00 +0100\r\n\
DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=s1; h=from:to:subject:date;\r\n\
\tbh={bh}; b={b}\r\n\
From: Bob Example <bob@example.org>\r\nTo: Alice <alice@example.com>\r\n\
Subject: Re: quarterly numbers ({i})\r\nDate: Tue, 14 Nov 2023 10:{m:02}:00 +0100\r\n\
Message-ID: <{i}.{r}@example.org>\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n\
--b{i}\r\nContent-Type: multipart/alternative; boundary=\"a{i}\"\r\n\r\n\
--a{i}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n\
--a{i}\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{html}\r\n--a{i}--\r\n\
--b{i}\r\nContent-Type: application/pdf; name=\"figures.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\n{att}\r\n--b{i}--\r\n",
        a = i % 250,
        m = i % 60,
        r = rng.next(),
        bh = base64(&rng.next().to_le_bytes().repeat(4)),
        b = base64(&rng.next().to_le_bytes().repeat(32)),
        att = base64(&bin),
    )
    .into_bytes()
}

/// FETCH output for `n` messages, as the session writes it.
fn fetch_output(n: usize, text: usize, attachment: usize) -> Vec<u8> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut out = Vec::new();
    for i in 0..n {
        let m = mail(&mut rng, i, text, attachment);
        out.extend_from_slice(
            format!(
                "* {} FETCH (UID {} FLAGS (\\Seen) BODY[] {{{}}}\r\n",
                i + 1,
                i + 1,
                m.len()
            )
            .as_bytes(),
        );
        out.extend_from_slice(&m);
        out.extend_from_slice(b")\r\n");
    }
    out
}

/// Deflates `data` as the connection does: 32 KiB chunks, a sync flush at the end of each
/// 256 KiB reply buffer. Returns the compressed size.
fn write_like_connection(layer: &mut DeflateLayer, data: &[u8]) -> usize {
    let mut total = 0;
    for reply in data.chunks(256 * 1024) {
        let mut chunks = reply.chunks(DEFLATE_CHUNK).peekable();
        while let Some(chunk) = chunks.next() {
            let last = chunks.peek().is_none();
            layer.deflater.deflate(chunk, last).unwrap();
            if last || layer.deflater.pending() >= DEFLATE_CHUNK {
                let z = layer.deflater.take_output();
                total += z.len();
                layer.deflater.restore_output(z, 2 * DEFLATE_CHUNK);
            }
        }
    }
    total
}

fn report() {
    let before = ALLOCATED.load(Ordering::Relaxed);
    let layer = DeflateLayer::new(16384, 1);
    let state = ALLOCATED.load(Ordering::Relaxed) - before;
    drop(layer);
    println!("per-connection compression state (16 KiB read buffer): {state} bytes on the heap");
    for (name, text, attachment) in [
        ("text mail (6 KiB prose + HTML)", 6 * 1024, 0),
        (
            "mixed mail (6 KiB prose + HTML + 24 KiB attachment)",
            6 * 1024,
            24 * 1024,
        ),
    ] {
        let data = fetch_output(200, text, attachment);
        for level in [1, 6] {
            let mut layer = DeflateLayer::new(16384, level);
            let z = write_like_connection(&mut layer, &data);
            println!(
                "{name}, level {level}: {} -> {} octets, ratio {:.2}",
                data.len(),
                z,
                data.len() as f64 / z as f64
            );
        }
    }
}

fn bench(c: &mut Criterion) {
    report();
    for (name, text, attachment) in [("text", 6 * 1024, 0), ("mixed", 6 * 1024, 24 * 1024)] {
        let data = fetch_output(100, text, attachment);
        let mut g = c.benchmark_group(format!("deflate_fetch_{name}"));
        g.throughput(Throughput::Bytes(data.len() as u64));
        for level in [1, 6] {
            let mut layer = DeflateLayer::new(16384, level);
            g.bench_function(format!("level{level}"), |b| {
                b.iter(|| black_box(write_like_connection(&mut layer, black_box(&data))))
            });
        }
        g.finish();
    }

    // The other direction: a client's compressed commands inflated into a 16 KiB buffer.
    let commands: Vec<u8> = (0..2000)
        .flat_map(|i| {
            format!(
                "a{i} UID FETCH {i}:{} (UID FLAGS BODY.PEEK[HEADER.FIELDS (From Subject)])\r\n",
                i + 50
            )
            .into_bytes()
        })
        .collect();
    let mut client = DeflateLayer::new(16384, 6);
    client.deflater.deflate(&commands, true).unwrap();
    let z = client.deflater.take_output();
    let mut g = c.benchmark_group("inflate_commands");
    g.throughput(Throughput::Bytes(commands.len() as u64));
    g.bench_function("16KiB_buffer", |b| {
        let mut input = Vec::with_capacity(16384);
        b.iter(|| {
            let mut inflater = Inflater::new(16384);
            inflater.push_raw(&z);
            let mut total = 0;
            loop {
                input.clear();
                let n = inflater.inflate_into(&mut input).unwrap();
                if n == 0 {
                    break;
                }
                total += n;
            }
            assert_eq!(total, commands.len());
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
