//! Raw DEFLATE (RFC 1951, no zlib header) for both directions of a connection, as IMAP's
//! COMPRESS=DEFLATE (RFC 4978) asks. It sits between the stream (plain or TLS) and the
//! connection's read and write buffers, so every protocol above it sees plain bytes.
//!
//! Memory stays bounded whatever the peer sends:
//! * inflated bytes only ever go into the spare capacity of the connection's read buffer, which
//!   never grows, so the session's line and literal limits see them like bytes from the socket
//!   and a small input that inflates to gigabytes (a decompression bomb) is cut into
//!   buffer-sized pieces the session must consume first;
//! * compressed input waits in a buffer of the read buffer's size, read only once the previous
//!   one is inflated.
//!
//! Every reply write ends in a sync flush (an empty stored block, `00 00 ff ff`), so the peer
//! can inflate all of it at once and never waits on bytes held in the compressor.
//!
//! The state per connection is about 370 KiB of heap (`bench/compress.rs` counts it): mostly
//! the miniz_oxide compressor (a 32 KiB window, 64 KiB hash chains, a 64 KiB symbol buffer;
//! unlike zlib's, its window and memory level cannot be lowered), then the decompressor's
//! 32 KiB window and the read-buffer-sized input buffer.

use std::io;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// Level 1 is miniz_oxide's fast greedy matcher: about 7 times less CPU per octet than the
/// default level 6 (110 against 16 MiB/s on the bench's mail), for half its ratio on text
/// (3.2 against 6.6) and nearly the same on mail with attachments (1.50 against 1.63).
pub const DEFAULT_LEVEL: u32 = 1;

/// Input to the compressor per call while a large body is written, so that the compressed
/// output buffer stays about this size instead of the body's.
pub const DEFLATE_CHUNK: usize = 32 * 1024;

/// One connection's compression state: an inflater for what the peer sends, a deflater for
/// what it receives. Two parts, because while IMAP IDLE waits for input through the read half
/// of a split stream, updates go out through the write half at the same time.
pub struct DeflateLayer {
    pub inflater: Inflater,
    pub deflater: Deflater,
}

impl DeflateLayer {
    /// `raw_capacity`: the size of the buffer compressed input is read into (the connection's
    /// read buffer size).
    pub fn new(raw_capacity: usize, level: u32) -> Self {
        DeflateLayer {
            inflater: Inflater::new(raw_capacity),
            deflater: Deflater {
                compress: Compress::new(Compression::new(level), false),
                zout: Vec::new(),
            },
        }
    }

    /// Octets received and produced so far: (in raw, in plain, out plain, out raw).
    pub fn totals(&self) -> (u64, u64, u64, u64) {
        (
            self.inflater.decompress.total_in(),
            self.inflater.decompress.total_out(),
            self.deflater.compress.total_in(),
            self.deflater.compress.total_out(),
        )
    }
}

/// The peer-to-us direction.
pub struct Inflater {
    decompress: Decompress,
    /// Compressed bytes from the peer; `raw[raw_start..]` is not inflated yet.
    raw: Vec<u8>,
    raw_start: usize,
    /// The peer ended its stream (a final block); nothing may follow.
    ended: bool,
}

fn invalid(e: impl std::error::Error + Send + Sync + 'static) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl Inflater {
    pub fn new(raw_capacity: usize) -> Self {
        Inflater {
            decompress: Decompress::new(false),
            raw: Vec::with_capacity(raw_capacity),
            raw_start: 0,
            ended: false,
        }
    }

    /// Queues compressed bytes that arrived before the layer existed: what a client sent right
    /// after its COMPRESS command, read together with it.
    pub fn push_raw(&mut self, bytes: &[u8]) {
        self.compact_raw();
        self.raw.extend_from_slice(bytes);
    }

    /// Compressed input is waiting to be inflated.
    pub fn has_raw(&self) -> bool {
        self.raw_start < self.raw.len()
    }

    fn compact_raw(&mut self) {
        if self.raw_start == self.raw.len() {
            self.raw.clear();
        } else if self.raw_start > 0 {
            self.raw.drain(..self.raw_start);
        }
        self.raw_start = 0;
    }

    /// The buffer to read compressed input into: append to its spare capacity, then give it
    /// back with [`restore_raw`](Self::restore_raw). What it still holds stays at its start.
    pub fn take_raw(&mut self) -> Vec<u8> {
        self.compact_raw();
        std::mem::take(&mut self.raw)
    }

    pub fn restore_raw(&mut self, raw: Vec<u8>) {
        self.raw = raw;
        self.raw_start = 0;
    }

    /// Inflates waiting input into the spare capacity of `out`, which is never grown. Returns
    /// the number of bytes produced: 0 when `out` is full or the input so far ends inside a
    /// block (more must be read). Called even when no compressed input waits: the
    /// decompressor keeps inflated bytes that did not fit in `out` last time.
    pub fn inflate_into(&mut self, out: &mut Vec<u8>) -> io::Result<usize> {
        let start = out.len();
        while out.len() < out.capacity() {
            if self.ended {
                if self.has_raw() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "data after the end of the compressed stream",
                    ));
                }
                break;
            }
            let (in_before, out_before) = (self.decompress.total_in(), out.len());
            let status = self
                .decompress
                .decompress_vec(&self.raw[self.raw_start..], out, FlushDecompress::None)
                .map_err(invalid)?;
            let consumed = (self.decompress.total_in() - in_before) as usize;
            self.raw_start += consumed;
            if status == Status::StreamEnd {
                self.ended = true;
            } else if consumed == 0 && out.len() == out_before {
                break;
            }
        }
        Ok(out.len() - start)
    }
}

/// The us-to-peer direction.
pub struct Deflater {
    compress: Compress,
    /// Compressed bytes for the peer, written out by the connection.
    zout: Vec<u8>,
}

impl Deflater {
    /// Compresses `input` onto the pending output. `sync`: end with a sync flush, so that
    /// everything so far can be inflated by the peer.
    pub fn deflate(&mut self, input: &[u8], sync: bool) -> io::Result<()> {
        let flush = if sync {
            FlushCompress::Sync
        } else {
            FlushCompress::None
        };
        let mut pos = 0;
        loop {
            // Mail text rarely compresses to less than a fifth; a little more than that is
            // reserved, and the loop asks again if the compressor fills it.
            let want = (input.len() - pos) / 4 + 64;
            if self.zout.capacity() - self.zout.len() < want {
                self.zout.reserve(want.max(1024));
            }
            let before = self.compress.total_in();
            self.compress
                .compress_vec(&input[pos..], &mut self.zout, flush)
                .map_err(invalid)?;
            pos += (self.compress.total_in() - before) as usize;
            // A flush is complete once the compressor leaves room unused (as with zlib).
            if pos == input.len() && (!sync || self.zout.len() < self.zout.capacity()) {
                return Ok(());
            }
        }
    }

    /// Compressed output waiting to be written.
    pub fn pending(&self) -> usize {
        self.zout.len()
    }

    /// The compressed output so far, to be written out and handed back with
    /// [`restore_output`](Self::restore_output).
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.zout)
    }

    /// Gives back the output buffer once written, keeping its capacity unless it exceeds
    /// `shrink_above`.
    pub fn restore_output(&mut self, mut buf: Vec<u8>, shrink_above: usize) {
        buf.clear();
        if buf.capacity() > shrink_above {
            buf = Vec::new();
        }
        self.zout = buf;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compress, Compression, Decompress};

    /// A peer's side: its own deflate/inflate pair, as an RFC 4978 client keeps.
    struct Peer {
        c: Compress,
        d: Decompress,
    }

    impl Peer {
        fn new() -> Self {
            Peer {
                c: Compress::new(Compression::default(), false),
                d: Decompress::new(false),
            }
        }
        fn send(&mut self, plain: &[u8]) -> Vec<u8> {
            let mut out = Vec::with_capacity(plain.len() + 64);
            let mut pos = 0;
            loop {
                let before = self.c.total_in();
                self.c
                    .compress_vec(&plain[pos..], &mut out, FlushCompress::Sync)
                    .unwrap();
                pos += (self.c.total_in() - before) as usize;
                if pos == plain.len() && out.len() < out.capacity() {
                    return out;
                }
                out.reserve(1024);
            }
        }
        /// Inflates everything `z` holds; with a sync flush at its end nothing may be missing.
        fn receive(&mut self, z: &[u8]) -> Vec<u8> {
            let mut out = Vec::with_capacity(z.len() * 8 + 1024);
            let mut pos = 0;
            while pos < z.len() {
                let before = self.d.total_in();
                self.d
                    .decompress_vec(&z[pos..], &mut out, FlushDecompress::Sync)
                    .unwrap();
                pos += (self.d.total_in() - before) as usize;
                out.reserve(4096);
            }
            out
        }
    }

    fn mail_text(len: usize) -> Vec<u8> {
        let mut m = b"From: Alice <alice@example.org>\r\nSubject: Minutes\r\n\r\n".to_vec();
        let mut i = 0u32;
        while m.len() < len {
            m.extend_from_slice(
                format!("Item {i}: the committee agreed to revisit budget line {i}.\r\n")
                    .as_bytes(),
            );
            i += 1;
        }
        m.truncate(len);
        m
    }

    #[test]
    fn round_trip_both_directions() {
        let mut layer = DeflateLayer::new(16384, DEFAULT_LEVEL);
        let mut peer = Peer::new();
        // Server to client, several replies, each readable on its own.
        for (i, reply) in [
            b"* OK hello\r\n".to_vec(),
            mail_text(100_000),
            b"a1 OK done\r\n".to_vec(),
        ]
        .iter()
        .enumerate()
        {
            layer.deflater.deflate(reply, true).unwrap();
            let z = layer.deflater.take_output();
            assert_eq!(&peer.receive(&z), reply, "reply {i}");
            layer.deflater.restore_output(z, 1 << 20);
        }
        // Client to server.
        let cmd = b"a2 UID FETCH 1:* (FLAGS)\r\n";
        layer.inflater.push_raw(&peer.send(cmd));
        let mut input = Vec::with_capacity(16384);
        assert_eq!(layer.inflater.inflate_into(&mut input).unwrap(), cmd.len());
        assert_eq!(&input, cmd);
        assert!(!layer.inflater.has_raw());
        let (_, plain_in, plain_out, raw_out) = layer.totals();
        assert_eq!(plain_in, cmd.len() as u64);
        assert_eq!(plain_out, 100_000 + 12 + 12);
        assert!(raw_out < 100_000 / 4, "mail text compresses: {raw_out}");
    }

    #[test]
    fn every_sync_flush_ends_in_an_empty_stored_block() {
        let mut layer = DeflateLayer::new(1024, DEFAULT_LEVEL);
        let mut peer = Peer::new();
        // Unflushed output stays in the compressor; the flush after it must carry it too.
        layer.deflater.deflate(b"* 1 EXISTS\r\n", false).unwrap();
        layer.deflater.deflate(b"* 0 RECENT\r\n", true).unwrap();
        let z = layer.deflater.take_output();
        assert!(z.ends_with(&[0, 0, 0xff, 0xff]), "{z:02x?}");
        assert_eq!(peer.receive(&z), b"* 1 EXISTS\r\n* 0 RECENT\r\n");
        layer.deflater.restore_output(z, 1 << 20);
        // A flush with nothing new still completes and the stream stays in step.
        layer.deflater.deflate(b"", true).unwrap();
        layer.deflater.deflate(b"a OK\r\n", true).unwrap();
        let z = layer.deflater.take_output();
        assert!(z.ends_with(&[0, 0, 0xff, 0xff]));
        assert_eq!(peer.receive(&z), b"a OK\r\n");
    }

    #[test]
    fn input_split_at_every_byte_boundary() {
        let mut peer = Peer::new();
        let cmds = b"a1 NOOP\r\na2 SELECT INBOX\r\n".repeat(20);
        let z = peer.send(&cmds);
        for split in 1..z.len() {
            let mut layer = DeflateLayer::new(4096, DEFAULT_LEVEL);
            let mut input = Vec::with_capacity(4096);
            layer.inflater.push_raw(&z[..split]);
            layer.inflater.inflate_into(&mut input).unwrap();
            layer.inflater.push_raw(&z[split..]);
            layer.inflater.inflate_into(&mut input).unwrap();
            assert_eq!(input, cmds, "split at {split}");
        }
    }

    #[test]
    fn a_decompression_bomb_never_grows_the_read_buffer() {
        // 16 MiB of one byte compresses to about 16 KiB: a thousandfold expansion.
        let mut peer = Peer::new();
        let bomb = vec![b'A'; 16 << 20];
        let z = peer.send(&bomb);
        assert!(z.len() < 32 * 1024, "{}", z.len());
        let capacity = 16384;
        let mut layer = DeflateLayer::new(capacity, DEFAULT_LEVEL);
        let mut input: Vec<u8> = Vec::with_capacity(capacity);
        let mut total = 0usize;
        let mut fed = 0;
        while total < bomb.len() {
            if !layer.inflater.has_raw() {
                let end = (fed + capacity).min(z.len());
                layer.inflater.push_raw(&z[fed..end]);
                fed = end;
            }
            let n = layer.inflater.inflate_into(&mut input).unwrap();
            assert!(input.capacity() == capacity && input.len() <= capacity);
            assert!(layer.inflater.raw.capacity() <= 2 * capacity);
            assert!(input.iter().all(|&b| b == b'A'));
            total += n;
            // The session consumes what it can; the layer never runs ahead of it.
            input.clear();
        }
        assert_eq!(total, bomb.len());
        // A full read buffer stops inflation: nothing is produced, nothing lost.
        let mut layer = DeflateLayer::new(capacity, DEFAULT_LEVEL);
        layer.inflater.push_raw(&z[..1024]);
        let mut full = Vec::with_capacity(8);
        assert_eq!(layer.inflater.inflate_into(&mut full).unwrap(), 8);
        assert_eq!(layer.inflater.inflate_into(&mut full).unwrap(), 0);
        full.clear();
        assert_eq!(layer.inflater.inflate_into(&mut full).unwrap(), 8);
        assert_eq!(full, b"AAAAAAAA");
    }

    #[test]
    fn corrupt_input_and_data_after_the_end_are_errors() {
        let mut layer = DeflateLayer::new(1024, DEFAULT_LEVEL);
        let mut input = Vec::with_capacity(1024);
        // Block type 3 is reserved (RFC 1951 §3.2.3).
        layer.inflater.push_raw(&[0xff, 0xff, 0xff]);
        let e = layer.inflater.inflate_into(&mut input).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);

        let mut c = Compress::new(Compression::default(), false);
        let mut z = Vec::with_capacity(256);
        c.compress_vec(b"a LOGOUT\r\n", &mut z, FlushCompress::Finish)
            .unwrap();
        z.extend_from_slice(b"junk");
        let mut layer = DeflateLayer::new(1024, DEFAULT_LEVEL);
        layer.inflater.push_raw(&z);
        let mut input = Vec::with_capacity(1024);
        let e = layer.inflater.inflate_into(&mut input).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert_eq!(input, b"a LOGOUT\r\n");
    }
}
