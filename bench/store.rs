//! Store throughput: 4 KiB appends (fsync off, and fsync on with 32 concurrent appenders
//! sharing group commits) and reads of a stored message.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use monoio::{LegacyDriver, Runtime, RuntimeBuilder};
use surel::store::{Flags, LogStore, MailStore, NewMessage, StoreConfig};

const BODY: usize = 4096;

fn runtime() -> Runtime<LegacyDriver> {
    RuntimeBuilder::<LegacyDriver>::new()
        .build()
        .expect("monoio runtime")
}

fn open(dir: &std::path::Path, fsync: bool) -> LogStore {
    LogStore::open(StoreConfig {
        dir: dir.to_path_buf(),
        shards: 2,
        fsync,
        segment_bytes: 64 << 20,
        checkpoint_bytes: 256 << 20,
        queue_segment_bytes: 16 << 20,
        compact_dead_pct: 50,
        ..Default::default()
    })
    .expect("open store")
}

fn message(i: usize) -> NewMessage {
    let mut bytes = format!("From: bench@example.org\r\nSubject: {i}\r\n\r\n").into_bytes();
    bytes.resize(BODY - 2, b'x');
    bytes.extend_from_slice(b"\r\n");
    NewMessage {
        account: format!("user{}", i % 8),
        mailbox: "INBOX".into(),
        bytes: bytes.into(),
        flags: Flags::default(),
        internal_date: 1_700_000_000,
    }
}

fn append(c: &mut Criterion) {
    let mut g = c.benchmark_group("append_4k");
    g.throughput(Throughput::Bytes(BODY as u64));
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), false);
    let mut rt = runtime();
    let mut i = 0;
    g.bench_function("fsync_off", |b| {
        b.iter(|| {
            i += 1;
            black_box(rt.block_on(store.append(vec![message(i)])).expect("append"))
        })
    });
    g.finish();
    store.close();

    const APPENDERS: usize = 32;
    let mut g = c.benchmark_group("append_4k_x32");
    g.throughput(Throughput::Elements(APPENDERS as u64));
    g.sample_size(20);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), true);
    let mut i = 0;
    g.bench_function("fsync_on_group_commit", |b| {
        b.iter(|| {
            rt.block_on(async {
                let tasks: Vec<_> = (0..APPENDERS)
                    .map(|_| {
                        i += 1;
                        let (s, m) = (store.clone(), message(i));
                        monoio::spawn(async move { s.append(vec![m]).await.expect("append") })
                    })
                    .collect();
                for t in tasks {
                    black_box(t.await);
                }
            })
        })
    });
    g.finish();
    store.close();
}

fn read(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), false);
    let mut rt = runtime();
    let uid = rt.block_on(store.append(vec![message(0)])).expect("append")[0].uid;
    let mut g = c.benchmark_group("read_4k");
    g.throughput(Throughput::Bytes(BODY as u64));
    g.bench_function("pread", |b| {
        b.iter(|| black_box(store.read("user0", "INBOX", uid).expect("read")))
    });
    g.finish();
    store.close();
}

criterion_group!(benches, append, read);
criterion_main!(benches);
