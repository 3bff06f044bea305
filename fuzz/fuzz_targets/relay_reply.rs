//! The outbound SMTP client's reply reader (`surel::relay::reply::ReplyReader`) and the DSN
//! helpers of `surel::delivery::dsn`.
//!
//! Input: `[limits][split seed][bytes...]`.
//!
//! Reply reader invariants:
//! * `feed` never reports more consumed octets than it was given, and stops only at a complete
//!   reply or at the end of the input;
//! * every reply has a valid code (2..5, 0..5, 0..9), between 1 and the line limit of lines, an
//!   enhanced status only of the code's class, and printable `text()`;
//! * the replies and the error (if any) are the same whether the server's bytes arrive whole
//!   or in chunks.
//!
//! DSN invariants: `xtext_decode` inverts xtext encoding; `status_of` always gives `c.d.d`
//! with a class of 2, 4 or 5; `header_section` is the prefix up to the first blank line; a
//! report built from hostile fields (sender, ENVID, recipients, ORCPT, remote host and
//! diagnostic all taken from the input) has CRLF-only lines before the returned message, with
//! the boundary delimiting exactly three parts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use surel::delivery::dsn::{
    Action, Report, ReportedRecipient, build, header_section, status_of, xtext_decode,
};
use surel::relay::reply::{Reply, ReplyError, ReplyReader};

fn read_all(limits: u8, input: &[u8], chunks: &mut dyn FnMut() -> usize) -> (Vec<Reply>, Option<ReplyError>) {
    let max_line = 5 + usize::from(limits & 0x3f) * 4;
    let max_lines = 1 + usize::from(limits >> 6) * 3;
    let mut reader = ReplyReader::with_limits(max_line, max_lines);
    let mut replies = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut fed = 0;
    while fed < input.len() {
        let n = chunks().clamp(1, input.len() - fed);
        buf.extend_from_slice(&input[fed..fed + n]);
        fed += n;
        loop {
            match reader.feed(&buf) {
                Err(e) => return (replies, Some(e)),
                Ok((used, reply)) => {
                    assert!(used <= buf.len());
                    buf.drain(..used);
                    match reply {
                        Some(r) => {
                            check_reply(&r, max_lines);
                            replies.push(r);
                        }
                        None => {
                            // No reply yet: every complete line was taken.
                            assert!(!buf.contains(&b'\n'), "a complete line left over");
                            break;
                        }
                    }
                }
            }
        }
    }
    (replies, None)
}

fn check_reply(r: &Reply, max_lines: usize) {
    let (a, b) = (r.code / 100, r.code / 10 % 10);
    assert!((2..=5).contains(&a) && b <= 5, "code {}", r.code);
    assert!(!r.lines.is_empty() && r.lines.len() <= max_lines);
    if let Some((class, _, _)) = r.enhanced {
        assert_eq!(u16::from(class), a);
    }
    let text = r.text();
    assert!(text.starts_with(&r.code.to_string()));
    assert!(!text.chars().any(char::is_control), "{text:?}");
    assert_eq!(r.is_positive(), a <= 3);
    assert_eq!(r.is_transient(), a == 4);
    assert_eq!(r.is_permanent(), a == 5);
}

/// RFC 3461 §4 xtext.
fn xtext_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if (33..=126).contains(&b) && b != b'+' && b != b'=' {
            out.push(b as char);
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

fn check_dsn(input: &[u8]) {
    let text = String::from_utf8_lossy(input);
    assert_eq!(xtext_decode(&xtext_encode(&text)), text);
    let _ = xtext_decode(&text);

    for permanent in [false, true] {
        let status = status_of(&text, permanent);
        let parts: Vec<&str> = status.split('.').collect();
        assert_eq!(parts.len(), 3, "{status:?}");
        assert!(matches!(parts[0], "2" | "4" | "5"), "{status:?}");
        assert!(parts[1..].iter().all(|p| (1..=3).contains(&p.len())
            && p.bytes().all(|b| b.is_ascii_digit())), "{status:?}");
    }

    let head = header_section(input);
    assert!(input.starts_with(head));
    let blank = input.windows(4).position(|w| w == b"\r\n\r\n");
    match blank {
        Some(i) => assert_eq!(head.len(), i + 4),
        None => assert!(head.ends_with(b"\n\n") || head == input),
    }

    // A report whose every client- or server-chosen field comes from the input.
    let mut fields = text.split('\0');
    let mut next = || fields.next().unwrap_or("");
    let (to, envid, address, orcpt, remote, diagnostic) =
        (next(), next(), next(), next(), next(), next());
    let original = next().as_bytes();
    for action in [Action::Failed, Action::Delayed, Action::Delivered] {
        let report = Report {
            reporting_mta: "mx.example.test",
            queue_id: "QID42",
            to,
            envid: (!envid.is_empty()).then_some(envid),
            ret: None,
            arrival: 1_700_000_000,
            lifetime: Some(86_400),
            recipients: vec![ReportedRecipient {
                address,
                orcpt: (!orcpt.is_empty()).then_some(orcpt),
                action,
                status: status_of(diagnostic, true),
                remote_mta: (!remote.is_empty()).then_some(remote),
                diagnostic,
            }],
            original,
            return_limit: 64,
        };
        let m = build(&report, 1_700_000_100);
        let boundary = "QID42.1700000100/mx.example.test";
        let delimiter = format!("\r\n--{boundary}\r\n");
        // The part holding the original starts at the third delimiter; before it every line
        // is a CRLF line with no bare CR or LF, so no field broke out of its header.
        let mut starts = Vec::new();
        let mut at = 0;
        while let Some(i) = m[at..].windows(delimiter.len()).position(|w| w == delimiter.as_bytes()) {
            starts.push(at + i);
            at += i + delimiter.len();
            if starts.len() == 3 {
                break;
            }
        }
        assert_eq!(starts.len(), 3, "{}", String::from_utf8_lossy(&m));
        let framed = &m[..starts[2] + 2];
        for (i, &b) in framed.iter().enumerate() {
            match b {
                b'\n' => assert!(i > 0 && framed[i - 1] == b'\r', "bare LF at {i}"),
                b'\r' => assert!(framed.get(i + 1) == Some(&b'\n'), "bare CR at {i}"),
                _ => {}
            }
        }
        assert!(m.ends_with(format!("\r\n--{boundary}--\r\n").as_bytes()));
    }
}

fuzz_target!(|data: &[u8]| {
    let [limits, seed, input @ ..] = data else {
        return;
    };
    check_dsn(input);
    let whole = read_all(*limits, input, &mut || usize::MAX);
    let mut x = u32::from(*seed) | 0x100;
    let mut next = || {
        if *seed == 0 {
            return 1;
        }
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        (x % 13) as usize + 1
    };
    let split = read_all(*limits, input, &mut next);
    assert_eq!(whole, split);
});
