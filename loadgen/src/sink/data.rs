//! Incremental `DATA` receiver: finds the end-of-data marker and undoes dot-stuffing, handing
//! the message content to the caller in slices (one per run of lines, not one per byte), so the
//! sink can count it without storing it, or append it to a buffer for `--dump-dir`.
//!
//! ## End of data and SMTP smuggling
//! The only end marker is `CRLF . CRLF` (RFC 5321 §4.1.1.4); the CRLF that ends the `DATA`
//! command line counts as the first CRLF, so a first line `.` ends an empty message. Lines end
//! only at CRLF: bare CR and bare LF are content, so `\n.\n`, `\r.\r`, `\n.\r\n` and `\r\n.\n`
//! do not end the message (the "SMTP smuggling" family, CVE-2023-51764/51765/51766). A relay
//! under test that emits one of them must see its message swallowed whole, not split in two.

use memchr::memchr;

/// Where the scanner is relative to the line structure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scan {
    /// At the start of a line (after CRLF, or right after the DATA command).
    LineStart,
    /// The line began with a dot, which was dropped.
    Dot,
    /// `.` CR at the start of a line: LF now ends the message.
    DotCr,
    /// Inside a line; `prev_cr` says whether the last octet was CR.
    Mid,
    /// The end marker was consumed.
    Done,
}

/// One DATA transfer. Create a new one (or [`DataReceiver::reset`]) per message.
#[derive(Debug)]
pub struct DataReceiver {
    scan: Scan,
    /// In [`Scan::Mid`]: the previous octet (possibly in the previous input slice) was CR.
    prev_cr: bool,
}

impl Default for DataReceiver {
    fn default() -> Self {
        Self::new()
    }
}

impl DataReceiver {
    pub fn new() -> Self {
        DataReceiver {
            scan: Scan::LineStart,
            prev_cr: false,
        }
    }

    pub fn reset(&mut self) {
        *self = Self::new();
    }

    pub fn is_done(&self) -> bool {
        self.scan == Scan::Done
    }

    /// Consumes `input`, passing unstuffed content to `content`. Returns `(consumed, done)`:
    /// everything is consumed unless the end marker is found, in which case consumption stops
    /// right after it. The end marker is not content.
    pub fn feed(&mut self, input: &[u8], mut content: impl FnMut(&[u8])) -> (usize, bool) {
        let mut pos = 0;
        // Start of the content not yet handed out: runs of ordinary lines go out in one slice.
        let mut span = 0;
        while pos < input.len() {
            match self.scan {
                Scan::Done => return (pos, true),
                Scan::LineStart => {
                    if input[pos] == b'.' {
                        if pos > span {
                            content(&input[span..pos]);
                        }
                        pos += 1;
                        span = pos;
                        self.scan = Scan::Dot;
                    } else {
                        self.scan = Scan::Mid;
                        self.prev_cr = false;
                    }
                }
                Scan::Dot => {
                    if input[pos] == b'\r' {
                        // Hold the CR back: it is content only if no LF follows.
                        pos += 1;
                        span = pos;
                        self.scan = Scan::DotCr;
                    } else {
                        // RFC 5321 §4.5.2: the leading dot goes, the rest of the line stays.
                        self.scan = Scan::Mid;
                        self.prev_cr = false;
                    }
                }
                Scan::DotCr => {
                    if input[pos] == b'\n' {
                        self.scan = Scan::Done;
                        return (pos + 1, true);
                    }
                    // `.` CR <not LF>: the held-back CR is content after all.
                    content(b"\r");
                    self.scan = Scan::Mid;
                    self.prev_cr = true;
                }
                Scan::Mid => match memchr(b'\n', &input[pos..]) {
                    Some(i) => {
                        let crlf = if i > 0 {
                            input[pos + i - 1] == b'\r'
                        } else {
                            self.prev_cr
                        };
                        pos += i + 1;
                        self.prev_cr = false;
                        if crlf {
                            self.scan = Scan::LineStart;
                        }
                    }
                    None => {
                        self.prev_cr = input[input.len() - 1] == b'\r';
                        pos = input.len();
                    }
                },
            }
        }
        if pos > span {
            content(&input[span..pos]);
        }
        (pos, self.scan == Scan::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(r: &mut DataReceiver, input: &[u8], out: &mut Vec<u8>) -> (usize, bool) {
        r.feed(input, |s| out.extend_from_slice(s))
    }

    fn whole(input: &[u8]) -> (Vec<u8>, usize, bool) {
        let mut out = Vec::new();
        let (n, done) = collect(&mut DataReceiver::new(), input, &mut out);
        (out, n, done)
    }

    #[test]
    fn plain_message_and_empty_message() {
        let (m, n, done) = whole(b"Subject: x\r\n\r\nhello\r\n.\r\nQUIT\r\n");
        assert_eq!(m, b"Subject: x\r\n\r\nhello\r\n");
        assert_eq!(n, 24);
        assert!(done);
        let (m, n, done) = whole(b".\r\nNOOP\r\n");
        assert!(done && n == 3 && m.is_empty());
    }

    #[test]
    fn dot_unstuffing() {
        let (m, _, done) = whole(b"..\r\n...\r\n.x\r\na.b\r\n ..\r\n.\r\n");
        assert!(done);
        assert_eq!(m, b".\r\n..\r\nx\r\na.b\r\n ..\r\n");
    }

    #[test]
    fn smuggling_markers_are_content() {
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
            let mut r = DataReceiver::new();
            let mut m = Vec::new();
            let (n, done) = collect(&mut r, &input, &mut m);
            assert!(!done, "{fake:?} ended DATA");
            assert_eq!(n, input.len());
            assert!(m.ends_with(b"MAIL FROM:<evil@x>\r\n"), "{fake:?}");
            assert_eq!(collect(&mut r, b".\r\n", &mut m), (3, true));
        }
    }

    #[test]
    fn nul_and_8bit_are_content() {
        let (m, _, done) = whole(b"a\0b\xff\r\n.\r\n");
        assert!(done);
        assert_eq!(m, b"a\0b\xff\r\n");
    }

    #[test]
    fn nothing_is_consumed_after_the_end() {
        let mut r = DataReceiver::new();
        let mut m = Vec::new();
        assert_eq!(collect(&mut r, b"x\r\n.\r\nRSET\r\n", &mut m), (6, true));
        assert!(r.is_done());
        assert_eq!(collect(&mut r, b"RSET\r\n", &mut m), (0, true));
        assert_eq!(m, b"x\r\n");
    }

    /// The reference: frame with the DATA line's CRLF, find the first `CRLF.CRLF`, split the
    /// content into CRLF-terminated lines and unstuff each.
    fn reference(input: &[u8]) -> Option<(Vec<u8>, usize)> {
        let mut framed = b"\r\n".to_vec();
        framed.extend_from_slice(input);
        let end = framed.windows(5).position(|w| w == b"\r\n.\r\n")?;
        let body = &framed[2..end + 2];
        let mut out = Vec::new();
        let mut rest = body;
        while !rest.is_empty() {
            let len = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .map_or(rest.len(), |i| i + 2);
            let line = &rest[..len];
            out.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
            rest = &rest[len..];
        }
        Some((out, end + 3))
    }

    #[test]
    fn matches_the_reference_for_every_split() {
        // A small alphabet of the octets that matter, walked exhaustively up to length 6 and
        // fed whole, byte by byte, and in two pieces at every split point.
        let alphabet = [b'.', b'\r', b'\n', b'a'];
        let mut cases: Vec<Vec<u8>> = vec![vec![]];
        for _ in 0..6 {
            let next: Vec<Vec<u8>> = cases
                .iter()
                .flat_map(|c| {
                    alphabet.iter().map(move |&b| {
                        let mut c = c.clone();
                        c.push(b);
                        c
                    })
                })
                .collect();
            cases.extend(next);
        }
        cases.sort();
        cases.dedup();
        for case in cases {
            let mut input = case.clone();
            input.extend_from_slice(b"\r\n.\r\nTAIL");
            let (want, want_n) = reference(&input).expect("terminated");
            let (got, n, done) = whole(&input);
            assert!(done, "{case:?}");
            assert_eq!((&got, n), (&want, want_n), "whole {case:?}");
            for split in 0..=input.len() {
                let mut r = DataReceiver::new();
                let mut m = Vec::new();
                let (a, done_a) = collect(&mut r, &input[..split], &mut m);
                let total = if done_a {
                    a
                } else {
                    assert_eq!(a, split);
                    a + collect(&mut r, &input[split..], &mut m).0
                };
                assert!(r.is_done());
                assert_eq!((&m, total), (&want, want_n), "split {split} {case:?}");
            }
            let mut r = DataReceiver::new();
            let mut m = Vec::new();
            let mut total = 0;
            for b in input.chunks(1) {
                let (n, done) = collect(&mut r, b, &mut m);
                total += n;
                if done {
                    break;
                }
            }
            assert_eq!((&m, total), (&want, want_n), "bytewise {case:?}");
        }
    }
}
