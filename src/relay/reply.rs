//! Reading a server's SMTP replies (RFC 5321 §4.2), sans-IO.
//!
//! [`ReplyReader::feed`] takes the unprocessed bytes of the caller's read buffer, consumes
//! complete lines only, and returns as soon as one reply is complete, so pipelined replies come
//! out one at a time in order and the caller keeps ownership of its buffer (no copy of the raw
//! input is kept here, only the text of the lines of a reply in progress).
//!
//! Grammar accepted: `code ("-" / SP) text CRLF` for each line, the last line with SP (or with no
//! text at all: `250CRLF`). A bare LF ends a line too, since servers that send one mean it and it
//! cannot be confused with anything else here. A line without its LF yet means "wait for more".
//!
//! Everything else is an error that ends the session, because after it the client can no longer
//! tell which reply answers which command:
//! * a code that is not three digits in `2..=5`, `0..=5`, `0..=9` (`000`, `999`, `1xx`, `HTTP/`);
//! * a continuation line whose code differs from the first line's;
//! * a NUL byte (no text protocol sends one; binary garbage does);
//! * a line longer than the limit (default 4096 octets), even before its LF arrives;
//! * more lines in one reply than the limit (default 256), so an endless `250-` stream cannot
//!   grow memory without bound.
//!
//! Text that is not UTF-8 is *not* an error: old servers still greet in Latin-1, and refusing
//! their replies would turn a harmless 250 into a retry loop. Such octets become U+FFFD.

use std::fmt;

use memchr::memchr;

/// Longest reply line accepted, CRLF included. RFC 5321 §4.5.3.1.5 says 512; real servers
/// exceed it with long EHLO keyword lists and verbose rejections.
pub const MAX_LINE: usize = 4096;
/// Most lines in one reply. An EHLO reply has about 20.
pub const MAX_LINES: usize = 256;

/// One complete reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// RFC 3463 status from the start of the first line (`5.1.1`), if it has one whose class
    /// matches the reply code.
    pub enhanced: Option<(u8, u16, u16)>,
    /// The text of each line after `code-`/`code `, with the enhanced status removed where a
    /// line starts with it. An EHLO reply's lines are its greeting and then one keyword each.
    pub lines: Vec<String>,
}

impl Reply {
    /// 2xx or 3xx.
    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }

    /// 4xx: try again later.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// 5xx: do not retry this.
    pub fn is_permanent(&self) -> bool {
        (500..600).contains(&self.code)
    }

    /// `"550 5.1.1 User unknown in virtual table"`: code, enhanced status, then the lines joined
    /// by spaces, control characters removed, so a log line or a DSN can carry it as is.
    pub fn text(&self) -> String {
        let mut out = self.code.to_string();
        if let Some((class, subject, detail)) = self.enhanced {
            out.push_str(&format!(" {class}.{subject}.{detail}"));
        }
        for line in &self.lines {
            let clean: String = line.chars().filter(|c| !c.is_control()).collect();
            let clean = clean.trim();
            if !clean.is_empty() {
                out.push(' ');
                out.push_str(clean);
            }
        }
        out
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

/// Why the input is not a valid reply stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplyError {
    LineTooLong {
        limit: usize,
    },
    TooManyLines {
        limit: usize,
    },
    /// Not `ddd`, `ddd-...` or `ddd ...`; `excerpt` is the start of the line, made printable.
    BadLine {
        excerpt: String,
    },
    /// A continuation line of a `first` reply started with another code.
    CodeMismatch {
        first: u16,
        line: u16,
    },
    Nul,
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyError::LineTooLong { limit } => {
                write!(f, "reply line longer than {limit} octets")
            }
            ReplyError::TooManyLines { limit } => write!(f, "reply with more than {limit} lines"),
            ReplyError::BadLine { excerpt } => write!(f, "malformed reply line {excerpt:?}"),
            ReplyError::CodeMismatch { first, line } => {
                write!(f, "reply {first} continued with code {line}")
            }
            ReplyError::Nul => f.write_str("NUL octet in reply"),
        }
    }
}

impl std::error::Error for ReplyError {}

/// A reply whose last line has not arrived yet.
#[derive(Debug)]
struct Partial {
    code: u16,
    lines: Vec<String>,
}

/// Incremental reply parser; see the module documentation.
#[derive(Debug)]
pub struct ReplyReader {
    max_line: usize,
    max_lines: usize,
    partial: Option<Partial>,
}

impl Default for ReplyReader {
    fn default() -> Self {
        Self::new()
    }
}

impl ReplyReader {
    pub fn new() -> Self {
        Self::with_limits(MAX_LINE, MAX_LINES)
    }

    /// `max_line`: octets per line including CRLF; `max_lines`: lines per reply.
    pub fn with_limits(max_line: usize, max_lines: usize) -> Self {
        ReplyReader {
            max_line: max_line.max(5),
            max_lines: max_lines.max(1),
            partial: None,
        }
    }

    /// True while a multi-line reply has started but not ended.
    pub fn in_reply(&self) -> bool {
        self.partial.is_some()
    }

    /// Consumes complete lines from `input` until one reply is complete. Returns the octets
    /// consumed (the caller drops them from its buffer) and the reply, or `None` when the input
    /// ends inside a reply; then call again with the unconsumed rest plus more input.
    ///
    /// After an error the stream is out of step: the caller must close the connection.
    pub fn feed(&mut self, input: &[u8]) -> Result<(usize, Option<Reply>), ReplyError> {
        let result = self.feed_lines(input);
        if result.is_err() {
            self.partial = None;
        }
        result
    }

    fn feed_lines(&mut self, input: &[u8]) -> Result<(usize, Option<Reply>), ReplyError> {
        let mut consumed = 0;
        loop {
            let rest = &input[consumed..];
            let Some(lf) = memchr(b'\n', rest) else {
                // A line that cannot fit once its LF arrives is refused now, so a server that
                // never sends LF cannot make the caller buffer without end.
                if rest.len() >= self.max_line {
                    return Err(ReplyError::LineTooLong {
                        limit: self.max_line,
                    });
                }
                return Ok((consumed, None));
            };
            if lf + 1 > self.max_line {
                return Err(ReplyError::LineTooLong {
                    limit: self.max_line,
                });
            }
            let raw = &rest[..lf];
            let line = raw.strip_suffix(b"\r").unwrap_or(raw);
            consumed += lf + 1;
            let (code, last, text) = parse_line(line)?;
            let partial = self.partial.get_or_insert_with(|| Partial {
                code,
                lines: Vec::new(),
            });
            if partial.code != code {
                return Err(ReplyError::CodeMismatch {
                    first: partial.code,
                    line: code,
                });
            }
            if partial.lines.len() == self.max_lines {
                return Err(ReplyError::TooManyLines {
                    limit: self.max_lines,
                });
            }
            partial
                .lines
                .push(String::from_utf8_lossy(text).into_owned());
            if last {
                let Partial { code, lines } = self.partial.take().expect("reply in progress");
                return Ok((consumed, Some(finish(code, lines))));
            }
        }
    }
}

/// Splits one line (without its line ending) into code, "is last line" and text.
fn parse_line(line: &[u8]) -> Result<(u16, bool, &[u8]), ReplyError> {
    if memchr(0, line).is_some() {
        return Err(ReplyError::Nul);
    }
    let bad = || ReplyError::BadLine {
        excerpt: excerpt(line),
    };
    let [a, b, c, rest @ ..] = line else {
        return Err(bad());
    };
    // RFC 5321 §4.2: the first digit is 2..5 (1yz is never used), the second 0..5.
    let valid = matches!(a, b'2'..=b'5') && matches!(b, b'0'..=b'5') && c.is_ascii_digit();
    if !valid {
        return Err(bad());
    }
    let code = u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0');
    match rest {
        [] => Ok((code, true, rest)),
        [b' ', text @ ..] => Ok((code, true, text)),
        [b'-', text @ ..] => Ok((code, false, text)),
        _ => Err(bad()),
    }
}

/// The start of a bad line, safe to print in a log.
fn excerpt(line: &[u8]) -> String {
    String::from_utf8_lossy(&line[..line.len().min(64)])
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn finish(code: u16, mut lines: Vec<String>) -> Reply {
    let enhanced = lines.first().and_then(|first| parse_enhanced(first, code));
    if let Some((prefix_len, _)) = enhanced {
        // Servers repeat the status on every line; one copy (in `enhanced`) is enough.
        let prefix = lines[0][..prefix_len].to_string();
        for line in &mut lines {
            if let Some(rest) = line.strip_prefix(&prefix)
                && (rest.is_empty() || rest.starts_with(' '))
            {
                *line = rest.trim_start_matches(' ').to_string();
            }
        }
    }
    Reply {
        code,
        enhanced: enhanced.map(|(_, status)| status),
        lines,
    }
}

/// `class.subject.detail` at the start of `text` (RFC 3463: 1-3 digits each after the class),
/// followed by a space or the end. The class must be the reply code's first digit, so a
/// hostname such as `5.example` or a mismatched status is not taken for one.
fn parse_enhanced(text: &str, code: u16) -> Option<(usize, (u8, u16, u16))> {
    let token = text.split(' ').next()?;
    let mut parts = token.split('.');
    let (class, subject, detail) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let number = |s: &str, max_len: usize| {
        (!s.is_empty() && s.len() <= max_len && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u16>().ok())
            .flatten()
    };
    let class = number(class, 1)?;
    if class != code / 100 {
        return None;
    }
    Some((
        token.len(),
        (class as u8, number(subject, 3)?, number(detail, 3)?),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` whole; returns every reply, or the first error.
    fn all(input: &[u8]) -> Result<Vec<Reply>, ReplyError> {
        let mut reader = ReplyReader::new();
        let mut replies = Vec::new();
        let mut pos = 0;
        loop {
            let (n, reply) = reader.feed(&input[pos..])?;
            pos += n;
            match reply {
                Some(r) => replies.push(r),
                None => return Ok(replies),
            }
        }
    }

    fn one(input: &[u8]) -> Reply {
        let replies = all(input).unwrap();
        assert_eq!(replies.len(), 1, "{replies:?}");
        replies.into_iter().next().unwrap()
    }

    #[test]
    fn single_line_with_enhanced_status() {
        let r = one(b"250 2.0.0 Ok: queued as 4XyZ\r\n");
        assert_eq!(r.code, 250);
        assert_eq!(r.enhanced, Some((2, 0, 0)));
        assert_eq!(r.lines, vec!["Ok: queued as 4XyZ"]);
        assert_eq!(r.text(), "250 2.0.0 Ok: queued as 4XyZ");
        assert!(r.is_positive() && !r.is_transient() && !r.is_permanent());
    }

    #[test]
    fn multi_line_ehlo() {
        let r = one(b"250-mx.example Hello\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 CHUNKING\r\n");
        assert_eq!(r.code, 250);
        assert_eq!(r.enhanced, None);
        assert_eq!(
            r.lines,
            vec!["mx.example Hello", "PIPELINING", "SIZE 1000", "CHUNKING"]
        );
    }

    #[test]
    fn repeated_enhanced_status_is_kept_once() {
        let r = one(b"550-5.1.1 User unknown\r\n550-5.1.1\r\n550 5.1.1 in virtual table\r\n");
        assert_eq!(r.enhanced, Some((5, 1, 1)));
        assert_eq!(r.lines, vec!["User unknown", "", "in virtual table"]);
        assert_eq!(r.text(), "550 5.1.1 User unknown in virtual table");
        assert!(r.is_permanent());
    }

    #[test]
    fn enhanced_status_must_match_the_class() {
        let r = one(b"550 2.0.0 odd\r\n");
        assert_eq!(r.enhanced, None);
        assert_eq!(r.text(), "550 2.0.0 odd");
        assert_eq!(one(b"250 5.example.com\r\n").enhanced, None);
        assert_eq!(one(b"451 4.3.0\r\n").enhanced, Some((4, 3, 0)));
        assert_eq!(one(b"451 4.3.0\r\n").text(), "451 4.3.0");
        assert_eq!(one(b"451 4.1234.0 x\r\n").enhanced, None);
        assert_eq!(one(b"451 4..0 x\r\n").enhanced, None);
    }

    #[test]
    fn bare_code_bare_lf_and_empty_text() {
        let r = one(b"250\r\n");
        assert_eq!((r.code, r.lines.clone()), (250, vec![String::new()]));
        assert_eq!(r.text(), "250");
        let r = one(b"220-a\n220 b\n");
        assert_eq!(r.lines, vec!["a", "b"]);
        // smtp-sink ends its EHLO reply with "250 " and nothing after.
        let r = one(b"250-smtp-sink\r\n250-DSN\r\n250 \r\n");
        assert_eq!(r.lines, vec!["smtp-sink", "DSN", ""]);
    }

    #[test]
    fn missing_line_end_waits() {
        let mut reader = ReplyReader::new();
        assert_eq!(reader.feed(b"250 Ok").unwrap(), (0, None));
        assert_eq!(reader.feed(b"250-a\r\n250 b").unwrap(), (7, None));
        assert!(reader.in_reply());
        let (n, r) = reader.feed(b"250 b\r\n").unwrap();
        assert_eq!(n, 7);
        assert_eq!(r.unwrap().lines, vec!["a", "b"]);
        assert!(!reader.in_reply());
    }

    #[test]
    fn pipelined_replies_come_out_one_at_a_time() {
        let input = b"250 2.1.0 Ok\r\n550 5.1.1 no\r\n250 2.1.5 Ok\r\n354 go\r\n";
        let replies = all(input).unwrap();
        let codes: Vec<u16> = replies.iter().map(|r| r.code).collect();
        assert_eq!(codes, vec![250, 550, 250, 354]);
        let mut reader = ReplyReader::new();
        let (n, _) = reader.feed(input).unwrap();
        assert_eq!(n, 14, "stops right after the first reply");
    }

    #[test]
    fn control_characters_are_removed_from_text() {
        let r = one(b"550 5.7.1 bad\tthing\x1b[31m\x7f here\r\n");
        assert_eq!(r.text(), "550 5.7.1 badthing[31m here");
    }

    #[test]
    fn non_utf8_text_is_replaced_not_refused() {
        let r = one(b"220 M\xfcnchen ESMTP\r\n");
        assert_eq!(r.lines, vec!["M\u{fffd}nchen ESMTP"]);
    }

    #[test]
    fn garbage_is_refused() {
        for bad in [
            &b"HTTP/1.1 400 Bad Request\r\n"[..],
            b"000 zero\r\n",
            b"999 nine\r\n",
            b"199 one\r\n",
            b"260 second digit\r\n",
            b"25 short\r\n",
            b"25\r\n",
            b"\r\n",
            b"250x\r\n",
            b"250_Ok\r\n",
            b"2a0 Ok\r\n",
            b"-250 Ok\r\n",
            b" 250 Ok\r\n",
        ] {
            let err = all(bad).unwrap_err();
            assert!(
                matches!(err, ReplyError::BadLine { .. }),
                "{bad:?}: {err:?}"
            );
        }
        assert_eq!(all(b"250 O\0k\r\n").unwrap_err(), ReplyError::Nul);
        assert_eq!(all(b"250-a\r\n\0\r\n").unwrap_err(), ReplyError::Nul);
        assert_eq!(
            all(b"250-a\r\n550 b\r\n").unwrap_err(),
            ReplyError::CodeMismatch {
                first: 250,
                line: 550
            }
        );
    }

    #[test]
    fn bad_line_excerpt_is_short_and_printable() {
        let mut line = b"HELLO\x1b[2J".to_vec();
        line.extend(std::iter::repeat_n(b'x', 500));
        line.extend_from_slice(b"\r\n");
        let ReplyError::BadLine { excerpt } = all(&line).unwrap_err() else {
            panic!()
        };
        assert!(excerpt.starts_with("HELLO?[2J"), "{excerpt}");
        assert!(excerpt.len() <= 64);
    }

    #[test]
    fn long_lines_are_refused_before_their_end_arrives() {
        let mut reader = ReplyReader::with_limits(100, 10);
        let mut line = b"250 ".to_vec();
        line.extend(std::iter::repeat_n(b'x', 94));
        line.extend_from_slice(b"\r\n");
        assert_eq!(line.len(), 100);
        assert!(reader.feed(&line).unwrap().1.is_some(), "exactly the limit");
        line.insert(5, b'y');
        assert_eq!(
            reader.feed(&line).unwrap_err(),
            ReplyError::LineTooLong { limit: 100 }
        );
        // Without any LF: refused once the line cannot fit any more.
        let mut reader = ReplyReader::with_limits(100, 10);
        assert_eq!(reader.feed(&[b'2'; 99]).unwrap(), (0, None));
        assert!(reader.feed(&[b'2'; 100]).is_err());
        // The default limit.
        let huge = vec![b'5'; 1 << 20];
        assert_eq!(
            ReplyReader::new().feed(&huge).unwrap_err(),
            ReplyError::LineTooLong { limit: MAX_LINE }
        );
    }

    #[test]
    fn endless_continuation_is_cut_off() {
        let mut reader = ReplyReader::new();
        let mut lines = 0;
        let err = loop {
            match reader.feed(b"250-more\r\n") {
                Ok((10, None)) => lines += 1,
                Ok(other) => panic!("{other:?}"),
                Err(e) => break e,
            }
            assert!(lines <= MAX_LINES);
        };
        assert_eq!(err, ReplyError::TooManyLines { limit: MAX_LINES });
        assert_eq!(lines, MAX_LINES);
        // Exactly the limit is a valid reply.
        let mut input = b"250-x\r\n".repeat(MAX_LINES - 1);
        input.extend_from_slice(b"250 end\r\n");
        assert_eq!(one(&input).lines.len(), MAX_LINES);
    }

    /// Feeds `input` as a driver would: appended to a buffer in chunks, with consumed octets
    /// dropped after each call.
    fn chunked(input: &[u8], splits: &[usize]) -> Result<Vec<Reply>, ReplyError> {
        let mut reader = ReplyReader::new();
        let mut buffer = Vec::new();
        let mut replies = Vec::new();
        let mut from = 0;
        for &to in splits.iter().chain(std::iter::once(&input.len())) {
            buffer.extend_from_slice(&input[from..to]);
            from = to;
            loop {
                let (n, reply) = reader.feed(&buffer)?;
                buffer.drain(..n);
                match reply {
                    Some(r) => replies.push(r),
                    None => break,
                }
            }
        }
        assert!(buffer.is_empty());
        Ok(replies)
    }

    #[test]
    fn every_split_point_gives_the_same_replies() {
        let input: &[u8] = b"220 mx ESMTP\r\n250-mx\r\n250-PIPELINING\n250 SIZE 10\r\n\
                             550-5.1.1 a\r\n550 5.1.1 b\r\n354 go ahead\r\n";
        let whole = all(input).unwrap();
        assert_eq!(whole.len(), 4);
        for a in 0..=input.len() {
            assert_eq!(chunked(input, &[a]).unwrap(), whole, "split at {a}");
            for b in a..=input.len() {
                assert_eq!(chunked(input, &[a, b]).unwrap(), whole, "split at {a},{b}");
            }
        }
        let every_byte: Vec<usize> = (1..input.len()).collect();
        assert_eq!(chunked(input, &every_byte).unwrap(), whole);
    }

    #[test]
    fn random_garbage_never_panics_and_stays_bounded() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let alphabet = b"0123456789 -\r\n\0\xffaZ.";
        for _ in 0..20_000 {
            let len = (next() % 40) as usize;
            let input: Vec<u8> = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            let mut reader = ReplyReader::with_limits(16, 4);
            let mut pos = 0;
            while let Ok((n, reply)) = reader.feed(&input[pos..]) {
                pos += n;
                assert!(pos <= input.len());
                if let Some(r) = reply {
                    assert!((200..=559).contains(&r.code));
                    assert!(!r.lines.is_empty() && r.lines.len() <= 4);
                } else {
                    assert!(input.len() - pos < 16);
                    break;
                }
            }
        }
    }
}
