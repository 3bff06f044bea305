//! IMAP protocol core: command framing + parsing of typical client commands, and FETCH
//! response encoding (FLAGS+ENVELOPE for 100 messages, BODY[] of a 4 KiB message, and the
//! cold ENVELOPE/BODYSTRUCTURE rendering that the per-thread cache saves).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use imap_codec::{CommandCodec, decode::Decoder};
use surel::imap::bodystructure::RenderedStructure;
use surel::imap::codec::{CommandReader, Frame, extract_extras};
use surel::imap::fetch::{FetchItem, Label, write_fetch_response};
use surel::imap::section::{SectionKind, SectionSpec};
use surel::store::{Flags, MessageMeta, SystemFlags};

const COMMANDS: &[&[u8]] = &[
    b"a1 UID FETCH 1:* (UID FLAGS RFC822.SIZE INTERNALDATE BODY.PEEK[HEADER.FIELDS (From To Cc Subject Date Message-ID)])\r\n",
    b"a2 UID STORE 4711 +FLAGS.SILENT (\\Seen \\Flagged)\r\n",
    b"a3 SELECT INBOX (CONDSTORE)\r\n",
    b"a4 UID SEARCH RETURN (ALL COUNT) UNSEEN SINCE 1-Jan-2024 NOT DELETED\r\n",
    b"a5 LIST \"\" \"*\" RETURN (SPECIAL-USE STATUS (MESSAGES UNSEEN))\r\n",
    b"a6 APPEND Sent (\\Seen) {12+}\r\nhello world!\r\n",
    b"a7 NOOP\r\n",
    b"a8 UID FETCH 100:200 (FLAGS) (CHANGEDSINCE 12345)\r\n",
];

fn message(i: usize, body_len: usize) -> Vec<u8> {
    let mut m = format!(
        "Date: Tue, 14 Nov 2023 10:00:00 +0100\r\nFrom: \"Alice Example\" <alice@example.org>\r\n\
To: Bob <bob@example.com>, carol@example.net\r\nCc: =?utf-8?q?Ren=C3=A9e?= <renee@example.fr>\r\n\
Subject: Quarterly report {i}\r\nMessage-ID: <{i}.report@example.org>\r\n\
MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    )
    .into_bytes();
    while m.len() < body_len {
        m.extend_from_slice(b"The quick brown fox jumps over the lazy dog. 0123456789\r\n");
    }
    m
}

fn meta(uid: u32, size: usize) -> MessageMeta {
    MessageMeta {
        uid,
        size: size as u32,
        internal_date: 1_700_000_000,
        flags: Flags {
            system: SystemFlags(SystemFlags::SEEN),
            keywords: vec!["$Label1".into()],
        },
        modseq: 7,
        needs_dot_stuffing: false,
        email_id: Default::default(),
        saved: None,
    }
}

fn parsing(c: &mut Criterion) {
    let mut g = c.benchmark_group("imap_parse");
    let total: usize = COMMANDS.iter().map(|c| c.len()).sum();
    g.throughput(Throughput::Bytes(total as u64));
    g.bench_function("typical_commands", |b| {
        let codec = CommandCodec::default();
        let mut reader = CommandReader::new(64 * 1024, 64 << 20);
        b.iter(|| {
            for cmd in COMMANDS {
                let mut input: &[u8] = cmd;
                while !input.is_empty() {
                    let (n, frame) = reader.push(input);
                    input = &input[n..];
                    if frame == Some(Frame::Command) {
                        let (bytes, extras) = extract_extras(reader.command()).unwrap();
                        let parsed = codec.decode(&bytes).map(|(_, c)| c.tag.inner().len());
                        black_box((parsed.ok(), extras));
                        reader.clear();
                    }
                }
            }
        })
    });
    g.finish();
}

fn encoding(c: &mut Criterion) {
    let mut g = c.benchmark_group("imap_fetch_encode");
    let msgs: Vec<(MessageMeta, Vec<u8>)> = (0..100)
        .map(|i| {
            let raw = message(i, 2048);
            (meta(i as u32 + 1, raw.len()), raw)
        })
        .collect();
    let structures: Vec<RenderedStructure> = msgs
        .iter()
        .map(|(_, raw)| RenderedStructure::render(raw))
        .collect();
    let items = [FetchItem::Uid, FetchItem::Flags, FetchItem::Envelope];
    let mut out = Vec::with_capacity(1 << 20);
    g.throughput(Throughput::Elements(100));
    g.bench_function("flags_envelope_100_cached", |b| {
        b.iter(|| {
            out.clear();
            for (i, ((m, _), st)) in msgs.iter().zip(&structures).enumerate() {
                write_fetch_response(&mut out, i + 1, m, &items, None, Some(st), false, false);
            }
            black_box(out.len())
        })
    });
    g.bench_function("envelope_bodystructure_render_100_cold", |b| {
        b.iter(|| {
            for (_, raw) in &msgs {
                black_box(RenderedStructure::render(raw));
            }
        })
    });
    let raw = message(0, 4096);
    let m = meta(1, raw.len());
    let body_items = [
        FetchItem::Uid,
        FetchItem::Section {
            spec: SectionSpec {
                path: vec![],
                kind: SectionKind::Full,
            },
            partial: None,
            peek: true,
            label: Label::Body,
        },
    ];
    g.throughput(Throughput::Bytes(raw.len() as u64));
    g.bench_function("body_4k", |b| {
        b.iter(|| {
            out.clear();
            write_fetch_response(&mut out, 1, &m, &body_items, Some(&raw), None, false, false);
            black_box(out.len())
        })
    });
    g.finish();
}

criterion_group!(benches, parsing, encoding);
criterion_main!(benches);
