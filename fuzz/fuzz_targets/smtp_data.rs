//! `DataReceiver` and `BdatReceiver` against simple reference models, for any split of the
//! input.
//!
//! Input: `[split seed][size limit][line limit][bytes...]`.
//!
//! DATA reference (the one in `src/smtp/data.rs`'s tests, plus the limits): frame the input
//! with the DATA command's CRLF, find the first `CRLF.CRLF`, split the content into CRLF lines,
//! drop one leading dot per line. The receiver must stop exactly after the marker, store exactly
//! the unstuffed content (nothing once over the size limit), and report the size and line
//! limits as the reference computes them. BDAT: a chunk of `n` octets takes exactly the first
//! `n` octets, whatever the split.
#![no_main]

use libfuzzer_sys::fuzz_target;
use surel::smtp::{BdatReceiver, DataOutcome, DataReceiver};

struct Expected {
    content: Vec<u8>,
    consumed: usize,
    longest_line: usize,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn reference(input: &[u8]) -> Option<Expected> {
    let mut framed = b"\r\n".to_vec();
    framed.extend_from_slice(input);
    let end = find(&framed, b"\r\n.\r\n")?;
    let raw = &framed[2..end + 2];
    let mut content = Vec::new();
    let mut longest_line = 0;
    let mut rest = raw;
    while !rest.is_empty() {
        let n = find(rest, b"\r\n").expect("content ends with CRLF") + 2;
        let line = &rest[..n];
        // Line length counts the stuffing dot and the CRLF, as on the wire.
        longest_line = longest_line.max(line.len());
        content.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
        rest = &rest[n..];
    }
    Some(Expected {
        content,
        consumed: end + 3,
        longest_line,
    })
}

/// Chunk sizes from a seed: 0 means the whole input at once.
fn chunker(seed: u8) -> impl FnMut() -> usize {
    let mut x = u32::from(seed) | 0x100;
    move || {
        if seed == 0 {
            return usize::MAX;
        }
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        (x % 9) as usize + 1
    }
}

fuzz_target!(|data: &[u8]| {
    let [seed, size_limit, line_limit, input @ ..] = data else {
        return;
    };
    let max_size = usize::from(*size_limit) * 4;
    let max_line = usize::from(*line_limit).max(3);

    // DATA.
    let mut rx = DataReceiver::new(max_size, max_line);
    let mut message = Vec::new();
    let (mut consumed, mut done) = (0, false);
    let mut next = chunker(*seed);
    while consumed < input.len() && !done {
        let n = next().min(input.len() - consumed);
        let (used, d) = rx.feed(&input[consumed..consumed + n], &mut message);
        assert!(used <= n);
        if !d {
            assert_eq!(used, n, "input left over before the end marker");
        }
        consumed += used;
        done = d;
    }
    assert_eq!(done, rx.is_done());
    match reference(input) {
        None => assert!(!done, "ended without CRLF.CRLF"),
        Some(expected) => {
            assert!(done, "missed the end marker");
            assert_eq!(consumed, expected.consumed);
            assert_eq!(rx.received(), expected.content.len());
            let too_big = expected.content.len() > max_size;
            let outcome = rx.outcome();
            if too_big {
                assert_eq!(outcome, DataOutcome::TooBig);
                assert!(message.is_empty(), "oversized content kept");
            } else {
                assert_eq!(message, expected.content);
                let too_long = expected.longest_line > max_line;
                assert_eq!(
                    outcome,
                    if too_long {
                        DataOutcome::LineTooLong
                    } else {
                        DataOutcome::Ok
                    }
                );
            }
        }
    }

    // BDAT: the chunk size is the size limit byte.
    let size = u64::from(*size_limit);
    let mut rx = BdatReceiver::new(size);
    let mut chunk = Vec::new();
    let mut consumed = 0;
    let mut next = chunker(*seed);
    while consumed < input.len() && !rx.is_done() {
        let n = next().min(input.len() - consumed);
        let used = rx.feed(&input[consumed..consumed + n], Some(&mut chunk));
        assert!(used <= n);
        consumed += used;
    }
    let expected = &input[..input.len().min(size as usize)];
    assert_eq!(chunk, expected);
    assert_eq!(rx.remaining(), size - expected.len() as u64);
    assert_eq!(rx.is_done(), expected.len() as u64 == size);
});
