//! Message receivers: [`DataReceiver`] for `DATA` (dot-unstuffing, end marker detection) and
//! [`BdatReceiver`] for `BDAT` chunks (RFC 3030, exact octet counts, no unstuffing).
//!
//! Both are incremental: they accept input in pieces of any size (down to one byte) and keep
//! their state between calls, appending straight into the message `Vec` without per-line
//! allocation.
//!
//! ## End of data and SMTP smuggling
//! The only end-of-data marker is `CRLF . CRLF` (RFC 5321 §4.1.1.4), where the CRLF that ends the
//! `DATA` command line counts as the first CRLF, so a first line `.` ends an empty message.
//! Lines end only at CRLF: bare CR and bare LF are ordinary content, so `\n.\n`, `\r.\r`,
//! `\n.\r\n`, `\r\n.\n` and `\r.\r\n` are *not* end markers; they are stored as message content.
//! This closes the "SMTP smuggling" family of attacks (CVE-2023-51764/51765/51766), where a
//! sender hides a second transaction behind an end marker that another server recognises.

use memchr::memchr;

/// Where the scanner is relative to line structure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scan {
    /// At the start of a line (just after CRLF, or just after the DATA command).
    LineStart,
    /// A `.` was the first octet of the line (not yet copied).
    Dot,
    /// `.` then CR at line start: LF here ends the message.
    DotCr,
    /// Inside a line.
    Mid,
    /// Inside a line, the previous octet was CR.
    MidCr,
    /// The end marker was seen.
    Done,
}

/// How a finished DATA transfer turned out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataOutcome {
    Ok,
    /// More than `max_size` octets (after unstuffing): the content was discarded.
    TooBig,
    /// A line exceeded `max_line` octets (including its CRLF).
    LineTooLong,
}

/// Incremental `DATA` receiver with dot-unstuffing.
#[derive(Debug)]
pub struct DataReceiver {
    scan: Scan,
    /// Octets of the current line so far, including the leading dot and the line's CR/LF.
    line_len: usize,
    max_line: usize,
    max_size: usize,
    /// Unstuffed octets received (counted even when discarded).
    received: usize,
    too_big: bool,
    line_too_long: bool,
}

impl DataReceiver {
    /// `max_size`: maximum message size after unstuffing; `max_line`: maximum line length in
    /// octets including CRLF.
    pub fn new(max_size: usize, max_line: usize) -> Self {
        DataReceiver {
            scan: Scan::LineStart,
            line_len: 0,
            max_line,
            max_size,
            received: 0,
            too_big: false,
            line_too_long: false,
        }
    }

    /// Octets of message content received so far (after unstuffing).
    pub fn received(&self) -> usize {
        self.received
    }

    pub fn is_done(&self) -> bool {
        self.scan == Scan::Done
    }

    /// Result of the transfer (meaningful once [`is_done`](Self::is_done)).
    pub fn outcome(&self) -> DataOutcome {
        if self.too_big {
            DataOutcome::TooBig
        } else if self.line_too_long {
            DataOutcome::LineTooLong
        } else {
            DataOutcome::Ok
        }
    }

    #[inline]
    fn push(&mut self, message: &mut Vec<u8>, bytes: &[u8]) {
        self.received = self.received.saturating_add(bytes.len());
        if self.too_big {
            return;
        }
        if self.received > self.max_size {
            self.too_big = true;
            // Free what was collected: the message will not be delivered.
            *message = Vec::new();
            return;
        }
        message.extend_from_slice(bytes);
    }

    #[inline]
    fn grow_line(&mut self, n: usize) {
        self.line_len = self.line_len.saturating_add(n);
        if self.line_len > self.max_line {
            self.line_too_long = true;
        }
    }

    /// Consume input, appending unstuffed content to `message`. Returns `(consumed, done)`:
    /// all of `input` is consumed unless the end marker is found, in which case consumption
    /// stops right after it and `done` is true. The end marker itself is not stored.
    pub fn feed(&mut self, input: &[u8], message: &mut Vec<u8>) -> (usize, bool) {
        let mut pos = 0;
        while pos < input.len() {
            match self.scan {
                Scan::Done => return (pos, true),
                Scan::LineStart => {
                    self.line_len = 0;
                    if input[pos] == b'.' {
                        self.grow_line(1);
                        pos += 1;
                        self.scan = Scan::Dot;
                    } else {
                        self.scan = Scan::Mid;
                    }
                }
                Scan::Dot => {
                    if input[pos] == b'\r' {
                        self.grow_line(1);
                        pos += 1;
                        self.scan = Scan::DotCr;
                    } else {
                        // RFC 5321 §4.5.2: drop the leading dot, keep the rest of the line.
                        self.scan = Scan::Mid;
                    }
                }
                Scan::DotCr => {
                    if input[pos] == b'\n' {
                        pos += 1;
                        self.scan = Scan::Done;
                        return (pos, true);
                    }
                    // `.` CR <not LF>: the dot is dropped, the CR is content.
                    self.push(message, b"\r");
                    self.scan = Scan::Mid;
                }
                Scan::Mid => {
                    let rest = &input[pos..];
                    match memchr(b'\r', rest) {
                        Some(i) => {
                            self.push(message, &rest[..=i]);
                            self.grow_line(i + 1);
                            pos += i + 1;
                            self.scan = Scan::MidCr;
                        }
                        None => {
                            self.push(message, rest);
                            self.grow_line(rest.len());
                            pos = input.len();
                        }
                    }
                }
                Scan::MidCr => {
                    if input[pos] == b'\n' {
                        self.push(message, b"\n");
                        self.grow_line(1);
                        pos += 1;
                        self.scan = Scan::LineStart;
                    } else {
                        self.scan = Scan::Mid;
                    }
                }
            }
        }
        (pos, self.scan == Scan::Done)
    }
}

/// Incremental receiver for one `BDAT` chunk: exactly `size` octets, stored verbatim.
#[derive(Debug)]
pub struct BdatReceiver {
    remaining: u64,
}

impl BdatReceiver {
    pub fn new(size: u64) -> Self {
        BdatReceiver { remaining: size }
    }

    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    pub fn is_done(&self) -> bool {
        self.remaining == 0
    }

    /// Take up to the remaining chunk octets from `input`. If `sink` is given the octets are
    /// appended to it (the caller passes `None` to discard). Returns the octets consumed.
    pub fn feed(&mut self, input: &[u8], sink: Option<&mut Vec<u8>>) -> usize {
        let n = usize::try_from(self.remaining)
            .unwrap_or(usize::MAX)
            .min(input.len());
        if let Some(sink) = sink {
            sink.extend_from_slice(&input[..n]);
        }
        self.remaining -= n as u64;
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed all at once; returns (message, consumed, done).
    fn run(input: &[u8]) -> (Vec<u8>, usize, bool, DataOutcome) {
        let mut r = DataReceiver::new(1 << 20, 1000);
        let mut m = Vec::new();
        let (n, done) = r.feed(input, &mut m);
        (m, n, done, r.outcome())
    }

    #[test]
    fn simple_and_empty() {
        let (m, n, done, o) = run(b"Subject: x\r\n\r\nhello\r\n.\r\nQUIT\r\n");
        assert_eq!(m, b"Subject: x\r\n\r\nhello\r\n");
        assert_eq!(n, 24);
        assert!(done);
        assert_eq!(o, DataOutcome::Ok);
        let (m, n, done, _) = run(b".\r\nNOOP\r\n");
        assert!(done);
        assert_eq!(n, 3);
        assert!(m.is_empty());
    }

    #[test]
    fn unstuffing() {
        let (m, _, done, _) = run(b"..\r\n...\r\n.x\r\na.b\r\n ..\r\n.\r\n");
        assert!(done);
        assert_eq!(m, b".\r\n..\r\nx\r\na.b\r\n ..\r\n");
    }

    #[test]
    fn smuggling_variants_do_not_end_data() {
        for fake in [
            &b"\n.\n"[..],
            b"\r.\r",
            b"\n.\r\n",
            b"\r\n.\n",
            b"\r.\r\n",
            b"\r\n.\r",
            b"\r\n.\rX",
        ] {
            let mut input = b"body".to_vec();
            input.extend_from_slice(fake);
            input.extend_from_slice(b"MAIL FROM:<evil@x>\r\n");
            let mut r = DataReceiver::new(1 << 20, 1000);
            let mut m = Vec::new();
            let (n, done) = r.feed(&input, &mut m);
            assert!(!done, "{fake:?} ended DATA");
            assert_eq!(n, input.len());
            assert!(m.ends_with(b"MAIL FROM:<evil@x>\r\n"), "{fake:?}");
            let (n, done) = r.feed(b".\r\n", &mut m);
            assert!(done && n == 3);
        }
    }

    #[test]
    fn byte_by_byte_is_identical() {
        let input = b"a\r\n..b\r\n.\rc\r\n\n.\n\r.\r\r\n...\r\n.x\r\n.\r\n";
        let (whole, n, done, _) = run(input);
        assert!(done);
        assert_eq!(n, input.len());
        assert_eq!(whole, b"a\r\n.b\r\n\rc\r\n\n.\n\r.\r\r\n..\r\nx\r\n");
        for split in 1..4 {
            let mut r = DataReceiver::new(1 << 20, 1000);
            let mut m = Vec::new();
            let mut total = 0;
            for chunk in input.chunks(split) {
                let (n, done) = r.feed(chunk, &mut m);
                total += n;
                if done {
                    break;
                }
            }
            assert_eq!(total, input.len());
            assert_eq!(m, whole);
        }
    }

    #[test]
    fn size_limit_discards_but_finds_end() {
        let mut r = DataReceiver::new(10, 1000);
        let mut m = Vec::new();
        let (n, done) = r.feed(b"0123456789\r\nmore\r\n.\r\nNOOP", &mut m);
        assert!(done);
        assert_eq!(n, 21);
        assert_eq!(r.outcome(), DataOutcome::TooBig);
        assert!(m.is_empty());
        // Exactly at the limit is fine.
        let mut r = DataReceiver::new(10, 1000);
        let mut m = Vec::new();
        assert!(r.feed(b"01234567\r\n.\r\n", &mut m).1);
        assert_eq!(r.outcome(), DataOutcome::Ok);
    }

    #[test]
    fn long_lines() {
        let mut r = DataReceiver::new(1 << 20, 10);
        let mut m = Vec::new();
        assert!(r.feed(b"12345678\r\n.\r\n", &mut m).1);
        assert_eq!(r.outcome(), DataOutcome::Ok);
        let mut r = DataReceiver::new(1 << 20, 10);
        assert!(r.feed(b"123456789\r\n.\r\n", &mut m).1);
        assert_eq!(r.outcome(), DataOutcome::LineTooLong);
    }

    #[test]
    fn nul_and_8bit_are_stored() {
        let (m, _, done, _) = run(b"a\0b\xff\r\n.\r\n");
        assert!(done);
        assert_eq!(m, b"a\0b\xff\r\n");
    }

    #[test]
    fn bdat_exact() {
        let mut b = BdatReceiver::new(5);
        let mut m = Vec::new();
        assert_eq!(b.feed(b"abc", Some(&mut m)), 3);
        assert_eq!(b.feed(b"de\r\n.\r\n", Some(&mut m)), 2);
        assert!(b.is_done());
        assert_eq!(m, b"abcde");
        let mut b = BdatReceiver::new(u64::MAX);
        assert_eq!(b.feed(b"xyz", None), 3);
        assert_eq!(b.remaining(), u64::MAX - 3);
    }

    /// Straightforward reference: frame with the DATA command's CRLF, find the first
    /// `CRLF.CRLF`, split the content into CRLF lines and unstuff each.
    fn reference(input: &[u8]) -> Option<(Vec<u8>, usize)> {
        let mut framed = b"\r\n".to_vec();
        framed.extend_from_slice(input);
        let end = memchr::memmem::find(&framed, b"\r\n.\r\n")?;
        let content = &framed[2..end + 2];
        let mut out = Vec::new();
        let mut rest = content;
        while !rest.is_empty() {
            let n = memchr::memmem::find(rest, b"\r\n").unwrap() + 2;
            let line = &rest[..n];
            out.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
            rest = &rest[n..];
        }
        Some((out, end + 3))
    }

    #[test]
    fn random_input_matches_reference() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let len = (next() % 24) as usize;
            let input: Vec<u8> = (0..len).map(|_| b"\r\n.a"[(next() % 4) as usize]).collect();
            let mut r = DataReceiver::new(1 << 20, 1 << 20);
            let mut m = Vec::new();
            let mut consumed = 0;
            let mut done = false;
            // Random split points.
            while consumed < input.len() && !done {
                let n = 1 + (next() as usize % (input.len() - consumed));
                let (c, d) = r.feed(&input[consumed..consumed + n], &mut m);
                assert!(c <= n);
                consumed += c;
                done = d;
                if !d {
                    assert_eq!(c, n);
                }
            }
            match reference(&input) {
                Some((expected, n)) => {
                    assert!(done, "{input:?}");
                    assert_eq!(consumed, n, "{input:?}");
                    assert_eq!(m, expected, "{input:?}");
                }
                None => assert!(!done, "{input:?}"),
            }
        }
    }
}
