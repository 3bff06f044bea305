//! Deterministic message generator. Message `n` of a run is a pure function of
//! (seed, run id, n, size spec, envelope), so it can be regenerated for verification.

use crate::client::smtp::base64;

/// SplitMix64: tiny, fast, good enough for load data.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SizeSpec {
    /// Total message size in bytes (approximately exact: headers + padded body).
    Fixed(usize),
    /// 90 %: 2-8 KB plain text; 10 %: 50-500 KB multipart/mixed with a base64 attachment.
    Realistic,
}

impl SizeSpec {
    pub fn parse(size: usize, dist: Option<&str>) -> Result<SizeSpec, String> {
        match dist {
            None | Some("fixed") => Ok(SizeSpec::Fixed(size)),
            Some("realistic") => Ok(SizeSpec::Realistic),
            Some(o) => Err(format!("unknown --size-dist {o:?} (fixed|realistic)")),
        }
    }
}

const WORDS: &[&str] = &[
    "the",
    "mail",
    "server",
    "load",
    "queue",
    "message",
    "delivery",
    "throughput",
    "latency",
    "core",
    "thread",
    "ring",
    "buffer",
    "socket",
    "header",
    "body",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "lazy",
    "dog",
    "lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet",
    "consectetur",
    "adipiscing",
    "elit",
    "sed",
    "do",
    "eiusmod",
    "tempor",
    "incididunt",
    "ut",
    "labore",
    "et",
    "dolore",
    "magna",
    "aliqua",
    "report",
    "meeting",
    "tomorrow",
    "agenda",
    "please",
    "review",
    "attached",
    "draft",
    "thanks",
    "regards",
    "invoice",
    "budget",
    "q3",
    "numbers",
];

/// Parameters shared by all messages of a run.
#[derive(Clone, Debug)]
pub struct Generator {
    pub seed: u64,
    pub run_id: String,
    pub size: SizeSpec,
    pub from: String,
    /// Fixed Date header for the whole run (keeps messages reproducible).
    pub date: String,
}

/// Append roughly `target` bytes of wrapped text lines (≤ 78 chars, CRLF). About one line
/// in 40 starts with a dot and about one in 300 is a lone `.`, to exercise dot-stuffing.
fn text_lines(rng: &mut Rng, target: usize, out: &mut Vec<u8>) {
    let start = out.len();
    let mut line_len = 0usize;
    while out.len() - start < target {
        if line_len == 0 {
            let r = rng.next_u64();
            if r.is_multiple_of(300) {
                // a line consisting of a single dot: must be stuffed to "..".
                out.extend_from_slice(b".\r\n");
                continue;
            }
            if r.is_multiple_of(40) {
                out.push(b'.');
                line_len += 1;
            }
        }
        let w = WORDS[(rng.next_u64() % WORDS.len() as u64) as usize];
        if line_len > 0 {
            out.push(b' ');
            line_len += 1;
        }
        out.extend_from_slice(w.as_bytes());
        line_len += w.len();
        if line_len > 66 {
            out.extend_from_slice(b"\r\n");
            line_len = 0;
        }
    }
    if line_len > 0 {
        out.extend_from_slice(b"\r\n");
    }
}

impl Generator {
    /// The `X-Loadgen-Id` value of message `n`.
    pub fn id(&self, n: u64) -> String {
        format!("{}-{}", self.run_id, n)
    }

    /// Build message `n` addressed to `to` (the To: header shows the first recipient).
    pub fn build(&self, n: u64, to: &[String]) -> Vec<u8> {
        self.build_from(n, to, &self.from)
    }

    /// Like [`Generator::build`], with `from` in the From: header.
    pub fn build_from(&self, n: u64, to: &[String], from: &str) -> Vec<u8> {
        let mut rng =
            Rng::new(self.seed.wrapping_mul(0x1000_0000_01B3) ^ n.wrapping_mul(0x9E37_79B9));
        let mut m = Vec::with_capacity(match self.size {
            SizeSpec::Fixed(s) => s + 64,
            SizeSpec::Realistic => 8192,
        });
        let to_hdr = to
            .first()
            .map(String::as_str)
            .unwrap_or("undisclosed-recipients:;");
        // X-Loadgen-Id is always the first header: verification compares from here on.
        m.extend_from_slice(
            format!(
                "X-Loadgen-Id: {id}\r\nMessage-ID: <{id}@loadgen.invalid>\r\nDate: {date}\r\nFrom: Load Generator <{from}>\r\nTo: <{to_hdr}>\r\nSubject: loadgen message {n}\r\nMIME-Version: 1.0\r\n",
                id = self.id(n),
                date = self.date,
            )
            .as_bytes(),
        );
        let (body_target, attach) = match self.size {
            SizeSpec::Fixed(s) => (s.saturating_sub(m.len() + 48), 0),
            SizeSpec::Realistic => {
                if rng.next_u64().is_multiple_of(10) {
                    (
                        rng.range(500, 2000) as usize,
                        rng.range(50_000, 500_000) as usize,
                    )
                } else {
                    (rng.range(2048, 8192) as usize - 256, 0)
                }
            }
        };
        if attach == 0 {
            m.extend_from_slice(b"Content-Type: text/plain; charset=us-ascii\r\n\r\n");
            match self.size {
                SizeSpec::Fixed(s) => {
                    text_lines(&mut rng, body_target, &mut m);
                    // trim/pad to the exact size where possible, keeping a final CRLF
                    if m.len() > s && s >= 2 {
                        let hdr_end = memchr::memmem::find(&m, b"\r\n\r\n")
                            .map(|p| p + 4)
                            .unwrap_or(0);
                        let cut = s.max(hdr_end + 2);
                        m.truncate(cut - 2);
                        m.extend_from_slice(b"\r\n");
                    }
                    while m.len() < s {
                        let pad = (s - m.len()).min(78);
                        if pad <= 2 {
                            m.truncate(m.len() - 2);
                            m.extend(std::iter::repeat_n(b'x', pad));
                            m.extend_from_slice(b"\r\n");
                            break;
                        }
                        m.extend(std::iter::repeat_n(b'x', pad - 2));
                        m.extend_from_slice(b"\r\n");
                    }
                }
                SizeSpec::Realistic => text_lines(&mut rng, body_target, &mut m),
            }
        } else {
            let boundary = format!("=_loadgen_{:016x}", rng.next_u64());
            m.extend_from_slice(
                format!("Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\nThis is a multi-part message in MIME format.\r\n\r\n--{boundary}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n").as_bytes(),
            );
            text_lines(&mut rng, body_target, &mut m);
            m.extend_from_slice(
                format!("\r\n--{boundary}\r\nContent-Type: application/octet-stream; name=\"data-{n}.bin\"\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"data-{n}.bin\"\r\n\r\n").as_bytes(),
            );
            let raw_len = attach * 3 / 4;
            let mut raw = Vec::with_capacity(raw_len + 8);
            while raw.len() < raw_len {
                raw.extend_from_slice(&rng.next_u64().to_le_bytes());
            }
            raw.truncate(raw_len);
            let b64 = base64(&raw);
            for chunk in b64.as_bytes().chunks(76) {
                m.extend_from_slice(chunk);
                m.extend_from_slice(b"\r\n");
            }
            m.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        }
        m
    }
}

/// Expand a user pattern such as `user%04d@example.test` with a 1-based index.
/// Supports `%d`, `%Nd` and `%0Nd` (first occurrence); without a `%`, the pattern is returned.
pub fn user_name(pattern: &str, idx: u64) -> String {
    let Some(p) = pattern.find('%') else {
        return pattern.to_string();
    };
    let rest = &pattern[p + 1..];
    let Some(d) = rest.find('d') else {
        return pattern.to_string();
    };
    let spec = &rest[..d];
    let zero = spec.starts_with('0');
    let width: usize = spec.trim_start_matches('0').parse().unwrap_or(0);
    let num = if zero {
        format!("{idx:0width$}")
    } else {
        format!("{idx:width$}")
    };
    format!("{}{}{}", &pattern[..p], num, &rest[d + 1..])
}

/// 1-based user indexes of the recipients of message `n` (spread round-robin over `users`).
pub fn rcpt_users(n: u64, rcpts: u32, users: u64) -> impl Iterator<Item = u64> {
    let users = users.max(1);
    (0..rcpts as u64).map(move |k| (n * rcpts as u64 + k) % users + 1)
}

/// Current time as an RFC 5322 date (UTC).
pub fn rfc5322_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    rfc5322(secs)
}

pub fn rfc5322(secs: u64) -> String {
    let days = secs / 86400;
    let rem = secs % 86400;
    let (h, mi, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // civil from days (Howard Hinnant)
    let z = days as i64 + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    let wd = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
    let mon = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][(m - 1) as usize];
    format!("{wd}, {d} {mon} {y} {h:02}:{mi:02}:{s:02} +0000")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generator(size: SizeSpec) -> Generator {
        Generator {
            seed: 7,
            run_id: "r1".into(),
            size,
            from: "a@example.test".into(),
            date: rfc5322(0),
        }
    }

    fn check_lines(m: &[u8]) {
        assert!(m.ends_with(b"\r\n"));
        for line in m.split(|&b| b == b'\n') {
            assert!(line.len() <= 998);
            if !line.is_empty() {
                assert_eq!(line.last(), Some(&b'\r'));
            }
        }
        // no bare CR
        assert_eq!(
            m.iter().filter(|&&b| b == b'\r').count(),
            m.iter().filter(|&&b| b == b'\n').count()
        );
    }

    #[test]
    fn deterministic_and_unique() {
        let g = generator(SizeSpec::Realistic);
        let to = vec!["user0001@example.test".to_string()];
        assert_eq!(g.build(5, &to), g.build(5, &to));
        assert_ne!(g.build(5, &to), g.build(6, &to));
        let m = g.build(5, &to);
        assert!(m.starts_with(b"X-Loadgen-Id: r1-5\r\nMessage-ID: <r1-5@loadgen.invalid>\r\n"));
    }

    #[test]
    fn fixed_size_exact() {
        for s in [400usize, 1000, 4096, 4097, 10_000, 100_000] {
            let g = generator(SizeSpec::Fixed(s));
            for n in 0..20 {
                let m = g.build(n, &["u@x".into()]);
                assert_eq!(m.len(), s, "size {s} n {n}");
                check_lines(&m);
            }
        }
    }

    #[test]
    fn realistic_distribution() {
        let g = generator(SizeSpec::Realistic);
        let (mut small, mut big) = (0, 0);
        for n in 0..300 {
            let m = g.build(n, &["u@x".into()]);
            check_lines(&m);
            if m.len() < 9000 {
                assert!(m.len() >= 2000, "{}", m.len());
                small += 1;
            } else {
                assert!(m.len() > 50_000 && m.len() < 700_000, "{}", m.len());
                assert!(memchr::memmem::find(&m, b"Content-Transfer-Encoding: base64").is_some());
                big += 1;
            }
        }
        assert!(small > 240 && big > 10, "{small} {big}");
    }

    #[test]
    fn users_and_dates() {
        assert_eq!(
            user_name("user%04d@example.test", 7),
            "user0007@example.test"
        );
        assert_eq!(user_name("u%d", 12), "u12");
        assert_eq!(user_name("fixed@x", 3), "fixed@x");
        assert_eq!(rcpt_users(0, 2, 1000).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(rcpt_users(999, 1, 1000).collect::<Vec<_>>(), vec![1000]);
        assert_eq!(rcpt_users(1000, 1, 1000).collect::<Vec<_>>(), vec![1]);
        assert_eq!(rfc5322(0), "Thu, 1 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc5322(1_700_000_000), "Tue, 14 Nov 2023 22:13:20 +0000");
    }
}
