//! IMAP command framing (`surel::imap::codec::CommandReader`, literal-aware) and the command
//! decoding behind it (`extract_extras`, imap-codec's `CommandCodec`, `split_multiappend`).
//!
//! Input: `[flags][split seed][bytes...]`; `flags` picks plain-line mode (the mode used for
//! AUTHENTICATE continuations and IDLE), the line limit and the literal limit (small, so
//! refusals and skipped literals are reached).
//!
//! Invariants:
//! * `push` never reports more consumed octets than it was given;
//! * a complete command is exactly the input octets just before the point where it completed
//!   (nothing dropped, nothing added), ends with LF, and its literal ends are increasing offsets
//!   inside it;
//! * the frames (and their commands) are the same whether the input comes whole or in chunks;
//! * decoding a command never panics, and a tag echoed in an error is a valid tag or `*`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use surel::imap::codec::{CommandReader, Frame, extract_extras, split_multiappend, tag_of};

#[derive(Debug, PartialEq)]
enum Seen {
    Command(Vec<u8>, Vec<usize>),
    Other(Frame),
}

fn valid_tag(tag: &str) -> bool {
    tag == "*"
        || (!tag.is_empty()
            && tag.len() <= 64
            && tag.bytes().all(|b| {
                b.is_ascii_graphic()
                    && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b'+')
            }))
}

fn decode(cmd: &[u8], literal_ends: &[usize]) {
    use surel::imap::codec::CommandExtras;
    let tag = tag_of(cmd);
    assert!(valid_tag(&tag), "{tag:?}");
    if let Ok((stripped, extras)) = extract_extras(cmd) {
        let _: &CommandExtras = &extras;
        let _ = imap_decode(&stripped);
    }
    let _ = split_multiappend(cmd, literal_ends);
}

fn imap_decode(bytes: &[u8]) -> bool {
    use imap_codec::CommandCodec;
    use imap_codec::decode::Decoder;
    CommandCodec::default().decode(bytes).is_ok()
}

fn run(flags: u8, input: &[u8], chunks: &mut dyn FnMut() -> usize) -> Vec<Seen> {
    let line_mode = flags & 1 != 0;
    // At least 64: a shorter limit can refuse a line before its tag has been read, and the
    // tag echoed (`*` then) would depend on where the reads ended.
    let max_line = 64 + usize::from(flags >> 4) * 8;
    let max_literal = u32::from((flags >> 1) & 7) * 12;
    let mut reader = CommandReader::new(max_line, max_literal);
    let mut seen = Vec::new();
    let mut fed = 0;
    let mut pos = 0;
    // Like the session: the reader gets whatever has arrived and not been consumed yet.
    while pos < input.len() {
        if fed == pos {
            fed += chunks().clamp(1, input.len() - pos);
        }
        let window = &input[pos..fed];
        let (used, frame) = if line_mode {
            reader.push_line(window)
        } else {
            reader.push(window)
        };
        assert!(used <= window.len(), "consumed {used} of {}", window.len());
        pos += used;
        match frame {
            None => assert_eq!(used, window.len(), "stopped without a frame"),
            Some(Frame::Command) => {
                let cmd = reader.command().to_vec();
                let ends = reader.literal_ends().to_vec();
                assert!(cmd.ends_with(b"\n"), "{cmd:?}");
                assert!(input[..pos].ends_with(&cmd), "command is not the input");
                assert!(ends.windows(2).all(|w| w[0] <= w[1]));
                assert!(ends.iter().all(|&e| e <= cmd.len()));
                decode(&cmd, &ends);
                reader.clear();
                assert!(reader.is_empty());
                seen.push(Seen::Command(cmd, ends));
            }
            Some(Frame::TooBig { tag, literal }) => {
                assert!(valid_tag(&tag), "{tag:?}");
                seen.push(Seen::Other(Frame::TooBig { tag, literal }));
            }
            Some(Frame::LineTooLong { tag }) => {
                assert!(valid_tag(&tag), "{tag:?}");
                seen.push(Seen::Other(Frame::LineTooLong { tag }));
            }
            Some(other) => seen.push(Seen::Other(other)),
        }
    }
    seen
}

fuzz_target!(|data: &[u8]| {
    let [flags, seed, input @ ..] = data else {
        return;
    };
    let whole = run(*flags, input, &mut || usize::MAX);
    let mut x = u32::from(*seed) | 0x100;
    let mut next = || {
        if *seed == 0 {
            return 1;
        }
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        (x % 11) as usize + 1
    };
    let split = run(*flags, input, &mut next);
    assert_eq!(whole, split);
});
