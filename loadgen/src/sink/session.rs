//! The sink's SMTP session, sans-IO: bytes in, replies out. The driver feeds whatever it read;
//! the session answers every complete command in the buffer (PIPELINING: all replies of one
//! read go out in one write, in order) and keeps partial lines for the next read.
//!
//! ```text
//!   greeting ──EHLO/HELO──▶ ready ──MAIL──▶ mail ──RCPT*──▶ ──DATA──▶ data ──CRLF.CRLF──▶ ready
//!                            ▲  ▲                  │                                      │
//!                            │  └───── RSET ───────┤──BDAT n──▶ chunk ──(LAST)────────────┘
//!        STARTTLS (220) ─────┘ back to greeting     └──BDAT n (not LAST)──▶ chunk ──▶ mail
//! ```
//!
//! Each RCPT is answered from a seeded [`Rng`]: a set share is temp-failed (451), a set share is
//! perm-failed (550), the rest accepted (250). A message is accepted at the end of DATA (or
//! `BDAT … LAST`) when at least one recipient was; DATA/BDAT without one gets 554.
//! Nothing is stored unless [`SessionConfig::keep_content`]: the content is only counted.

use std::io::Write as _;

use memchr::memchr;

use super::data::DataReceiver;

/// Longest command line accepted, CRLF included (RFC 5321 §4.5.3.1.4 says 512; MAIL/RCPT with
/// extension parameters may be longer, so allow more before calling it garbage).
pub const MAX_COMMAND_LINE: usize = 4096;

/// Name in the greeting and the EHLO reply.
pub const HOSTNAME: &str = "sink.loadgen.invalid";

/// What every session of a sink is configured with.
#[derive(Clone, Copy, Debug)]
pub struct SessionConfig {
    /// Advertised in SIZE; larger messages get 552 (after their content has been read).
    pub max_message_size: u64,
    /// Advertise and accept STARTTLS (the driver has a TLS acceptor).
    pub offer_starttls: bool,
    /// Keep each accepted message's content in [`SinkSession::take_accepted`] (`--dump-dir`).
    pub keep_content: bool,
    /// Shares of recipients answered 451 and 550, in basis points (1/100 of a percent).
    pub tempfail_bp: u32,
    pub permfail_bp: u32,
}

impl SessionConfig {
    /// Percentages (0–100, fractions allowed) to basis points; their sum must not exceed 100.
    pub fn shares(tempfail_pct: f64, permfail_pct: f64) -> Result<(u32, u32), String> {
        let bp = |name: &str, p: f64| {
            if p.is_finite() && (0.0..=100.0).contains(&p) {
                Ok((p * 100.0).round() as u32)
            } else {
                Err(format!("{name} must be between 0 and 100, got {p}"))
            }
        };
        let (t, p) = (
            bp("--tempfail-pct", tempfail_pct)?,
            bp("--permfail-pct", permfail_pct)?,
        );
        if t + p > 10_000 {
            return Err("--tempfail-pct + --permfail-pct exceed 100".into());
        }
        Ok((t, p))
    }
}

/// splitmix64: tiny, seedable, and good enough to pick reply codes. One per core, so a run on
/// one core with one connection is reproducible reply for reply.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The generator of core `core` for run seed `seed`.
    pub fn for_core(seed: u64, core: usize) -> Rng {
        Rng(seed ^ (core as u64).wrapping_mul(0xD1B5_4A32_D192_ED03))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn verdict(&mut self, tempfail_bp: u32, permfail_bp: u32) -> Verdict {
        let x = (self.next_u64() % 10_000) as u32;
        if x < tempfail_bp {
            Verdict::TempFail
        } else if x < tempfail_bp + permfail_bp {
            Verdict::PermFail
        } else {
            Verdict::Accept
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Accept,
    TempFail,
    PermFail,
}

/// What the session did since the driver last took the tally. The driver adds it to the shared
/// counters once the replies have been written, so a counter never runs ahead of the client.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub recipients_accepted: u64,
    pub recipients_tempfailed: u64,
    pub recipients_permfailed: u64,
    /// Messages accepted (250 at the end of DATA / `BDAT … LAST`).
    pub messages: u64,
    /// Sum of the accepted recipients of those messages.
    pub recipients_delivered: u64,
    /// Content octets of those messages (after dot-unstuffing).
    pub bytes: u64,
    /// Transactions refused at DATA/BDAT (no accepted recipient, too big).
    pub messages_rejected: u64,
    /// Commands answered 500/501 (unknown, bad syntax, line too long).
    pub command_errors: u64,
}

impl Tally {
    pub fn is_empty(&self) -> bool {
        *self == Tally::default()
    }
}

/// What the driver must do after [`SinkSession::feed`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Write the replies (if any) and read more.
    Read,
    /// Write the replies (the 220), discard any unread input (RFC 3207: plaintext pipelined
    /// after STARTTLS must not be processed, CVE-2011-0411), run the TLS handshake, then call
    /// [`SinkSession::tls_started`].
    StartTls,
    /// Write the replies (the 221) and close.
    Close,
}

/// How the current BDAT chunk will be answered once its octets are in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChunkFate {
    Take,
    NoTransaction,
    NoRecipients,
}

#[derive(Debug)]
enum Mode {
    Command,
    Data,
    Chunk {
        remaining: u64,
        last: bool,
        fate: ChunkFate,
    },
    /// A command line grew past [`MAX_COMMAND_LINE`]: drop input up to its LF, then answer 500.
    DiscardLine,
}

/// An open mail transaction (after MAIL).
#[derive(Debug, Default)]
struct Transaction {
    accepted_recipients: u64,
    /// Set by the first BDAT: DATA is no longer allowed in this transaction.
    chunking: bool,
}

pub struct SinkSession {
    cfg: SessionConfig,
    tls: bool,
    greeted: bool,
    mode: Mode,
    txn: Option<Transaction>,
    data: DataReceiver,
    /// Content octets of the message being received (counted even when not kept).
    message_size: u64,
    too_big: bool,
    content: Vec<u8>,
    accepted: Vec<Vec<u8>>,
    tally: Tally,
}

impl SinkSession {
    pub fn new(cfg: SessionConfig) -> SinkSession {
        SinkSession {
            cfg,
            tls: false,
            greeted: false,
            mode: Mode::Command,
            txn: None,
            data: DataReceiver::new(),
            message_size: 0,
            too_big: false,
            content: Vec::new(),
            accepted: Vec::new(),
            tally: Tally::default(),
        }
    }

    pub fn greeting(&self, out: &mut Vec<u8>) {
        let _ = write!(out, "220 {HOSTNAME} ESMTP loadgen sink\r\n");
    }

    /// The TLS handshake after STARTTLS succeeded: RFC 3207 §4.2, forget everything the client
    /// said before (it must EHLO again).
    pub fn tls_started(&mut self) {
        self.tls = true;
        self.greeted = false;
        self.txn = None;
        self.mode = Mode::Command;
    }

    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// Counts since the last call.
    pub fn take_tally(&mut self) -> Tally {
        std::mem::take(&mut self.tally)
    }

    /// Content of the messages accepted since the last call (only with `keep_content`).
    pub fn take_accepted(&mut self) -> impl Iterator<Item = Vec<u8>> + '_ {
        self.accepted.drain(..)
    }

    /// Processes as much of `input` as possible, appending replies to `out`. Returns the octets
    /// consumed (the rest is an incomplete command line the caller keeps for the next call) and
    /// what to do next. Message content is always consumed entirely.
    pub fn feed(&mut self, input: &[u8], rng: &mut Rng, out: &mut Vec<u8>) -> (usize, Next) {
        let mut pos = 0;
        loop {
            match self.mode {
                Mode::Data => {
                    let (n, done) = self.feed_data(&input[pos..]);
                    pos += n;
                    if !done {
                        return (pos, Next::Read);
                    }
                    self.mode = Mode::Command;
                    self.end_of_message(out);
                }
                Mode::Chunk {
                    remaining,
                    last,
                    fate,
                } => {
                    let take = remaining.min((input.len() - pos) as u64);
                    let chunk = &input[pos..pos + take as usize];
                    if fate == ChunkFate::Take {
                        self.add_content(chunk);
                    }
                    pos += take as usize;
                    if take < remaining {
                        self.mode = Mode::Chunk {
                            remaining: remaining - take,
                            last,
                            fate,
                        };
                        return (pos, Next::Read);
                    }
                    self.mode = Mode::Command;
                    self.end_of_chunk(last, fate, out);
                }
                Mode::DiscardLine => match memchr(b'\n', &input[pos..]) {
                    Some(i) => {
                        pos += i + 1;
                        self.mode = Mode::Command;
                        self.error(out, b"500 5.5.2 Line too long\r\n");
                    }
                    None => return (input.len(), Next::Read),
                },
                Mode::Command => {
                    let rest = &input[pos..];
                    let Some(i) = memchr(b'\n', rest) else {
                        if rest.len() >= MAX_COMMAND_LINE {
                            self.mode = Mode::DiscardLine;
                            return (input.len(), Next::Read);
                        }
                        return (pos, Next::Read);
                    };
                    pos += i + 1;
                    if i + 1 > MAX_COMMAND_LINE {
                        self.error(out, b"500 5.5.2 Line too long\r\n");
                        continue;
                    }
                    let line = rest[..i].strip_suffix(b"\r").unwrap_or(&rest[..i]);
                    match self.command(line, rng, out) {
                        Next::Read => {}
                        next => return (pos, next),
                    }
                }
            }
        }
    }

    fn feed_data(&mut self, input: &[u8]) -> (usize, bool) {
        let SinkSession {
            data,
            message_size,
            too_big,
            content,
            cfg,
            ..
        } = self;
        data.feed(input, |s| {
            *message_size += s.len() as u64;
            if *message_size > cfg.max_message_size {
                if !*too_big {
                    *too_big = true;
                    // The message will be refused: stop holding its content.
                    *content = Vec::new();
                }
            } else if cfg.keep_content {
                content.extend_from_slice(s);
            }
        })
    }

    fn add_content(&mut self, s: &[u8]) {
        self.message_size += s.len() as u64;
        if self.message_size > self.cfg.max_message_size {
            if !self.too_big {
                self.too_big = true;
                self.content = Vec::new();
            }
        } else if self.cfg.keep_content {
            self.content.extend_from_slice(s);
        }
    }

    fn start_message(&mut self) {
        self.message_size = 0;
        self.too_big = false;
        self.content.clear();
    }

    fn error(&mut self, out: &mut Vec<u8>, reply: &[u8]) {
        self.tally.command_errors += 1;
        out.extend_from_slice(reply);
    }

    /// End of DATA or of `BDAT … LAST` in a transaction with accepted recipients.
    fn end_of_message(&mut self, out: &mut Vec<u8>) {
        let recipients = self.txn.take().map_or(0, |t| t.accepted_recipients);
        if self.too_big {
            self.tally.messages_rejected += 1;
            out.extend_from_slice(b"552 5.3.4 Message size exceeds fixed maximum message size\r\n");
            self.content = Vec::new();
            return;
        }
        self.tally.messages += 1;
        self.tally.recipients_delivered += recipients;
        self.tally.bytes += self.message_size;
        if self.cfg.keep_content {
            self.accepted.push(std::mem::take(&mut self.content));
        }
        out.extend_from_slice(b"250 2.0.0 Ok: queued\r\n");
    }

    fn end_of_chunk(&mut self, last: bool, fate: ChunkFate, out: &mut Vec<u8>) {
        match fate {
            ChunkFate::NoTransaction => {
                out.extend_from_slice(b"503 5.5.1 Bad sequence of commands: MAIL first\r\n");
            }
            ChunkFate::NoRecipients => {
                self.tally.messages_rejected += u64::from(last);
                out.extend_from_slice(b"554 5.5.1 No valid recipients\r\n");
            }
            ChunkFate::Take if last => self.end_of_message(out),
            ChunkFate::Take => {
                let _ = write!(out, "250 2.0.0 {} octets received\r\n", self.message_size);
            }
        }
    }

    fn command(&mut self, line: &[u8], rng: &mut Rng, out: &mut Vec<u8>) -> Next {
        let (verb, args) = match memchr(b' ', line) {
            Some(i) => (&line[..i], trim(&line[i + 1..])),
            None => (line, &b""[..]),
        };
        let is = |name: &str| verb.eq_ignore_ascii_case(name.as_bytes());
        if is("EHLO") {
            self.ehlo(args, out);
        } else if is("HELO") {
            if args.is_empty() {
                self.error(out, b"501 5.5.4 Syntax: HELO hostname\r\n");
            } else {
                self.greeted = true;
                self.txn = None;
                let _ = write!(out, "250 {HOSTNAME}\r\n");
            }
        } else if is("MAIL") {
            self.mail(args, out);
        } else if is("RCPT") {
            self.rcpt(args, rng, out);
        } else if is("DATA") {
            self.data_command(args, out);
        } else if is("BDAT") {
            self.bdat(args, out);
        } else if is("RSET") {
            self.txn = None;
            out.extend_from_slice(b"250 2.0.0 Ok\r\n");
        } else if is("NOOP") {
            out.extend_from_slice(b"250 2.0.0 Ok\r\n");
        } else if is("QUIT") {
            out.extend_from_slice(b"221 2.0.0 Bye\r\n");
            return Next::Close;
        } else if is("STARTTLS") {
            return self.starttls(args, out);
        } else if is("VRFY") {
            out.extend_from_slice(b"252 2.1.5 Cannot VRFY user, but will accept message\r\n");
        } else if is("HELP") {
            out.extend_from_slice(b"214 2.0.0 loadgen sink: see `loadgen sink --help`\r\n");
        } else if is("EXPN") || is("AUTH") || is("ETRN") || is("TURN") {
            out.extend_from_slice(b"502 5.5.1 Command not implemented\r\n");
        } else {
            self.error(out, b"500 5.5.1 Command unrecognized\r\n");
        }
        Next::Read
    }

    fn ehlo(&mut self, args: &[u8], out: &mut Vec<u8>) {
        if args.is_empty() {
            self.error(out, b"501 5.5.4 Syntax: EHLO hostname\r\n");
            return;
        }
        self.greeted = true;
        self.txn = None;
        let _ = write!(
            out,
            "250-{HOSTNAME}\r\n250-PIPELINING\r\n250-SIZE {}\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n\
             250-ENHANCEDSTATUSCODES\r\n250-CHUNKING\r\n",
            self.cfg.max_message_size
        );
        if self.cfg.offer_starttls && !self.tls {
            out.extend_from_slice(b"250-STARTTLS\r\n");
        }
        out.extend_from_slice(b"250 DSN\r\n");
    }

    fn mail(&mut self, args: &[u8], out: &mut Vec<u8>) {
        if !self.greeted {
            out.extend_from_slice(b"503 5.5.1 Bad sequence of commands: EHLO first\r\n");
            return;
        }
        if self.txn.is_some() {
            out.extend_from_slice(b"503 5.5.1 Bad sequence of commands: nested MAIL\r\n");
            return;
        }
        let Some((_path, params)) = parse_path(args, b"FROM:") else {
            self.error(out, b"501 5.1.7 Bad sender address syntax\r\n");
            return;
        };
        for param in params.split(|&b| b == b' ').filter(|p| !p.is_empty()) {
            let (key, value) = match memchr(b'=', param) {
                Some(i) => (&param[..i], Some(&param[i + 1..])),
                None => (param, None),
            };
            if key.is_empty() || !key.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-') {
                self.error(out, b"501 5.5.4 Bad MAIL parameter\r\n");
                return;
            }
            if key.eq_ignore_ascii_case(b"SIZE") {
                match value.and_then(parse_u64) {
                    Some(size) if size > self.cfg.max_message_size => {
                        out.extend_from_slice(
                            b"552 5.3.4 Message size exceeds fixed maximum message size\r\n",
                        );
                        return;
                    }
                    Some(_) => {}
                    None => {
                        self.error(out, b"501 5.5.4 Bad SIZE parameter\r\n");
                        return;
                    }
                }
            }
        }
        self.txn = Some(Transaction::default());
        out.extend_from_slice(b"250 2.1.0 Ok\r\n");
    }

    fn rcpt(&mut self, args: &[u8], rng: &mut Rng, out: &mut Vec<u8>) {
        if self.txn.is_none() {
            out.extend_from_slice(b"503 5.5.1 Bad sequence of commands: MAIL first\r\n");
            return;
        }
        match parse_path(args, b"TO:") {
            Some((path, _params)) if !path.is_empty() => {}
            _ => {
                self.error(out, b"501 5.1.3 Bad recipient address syntax\r\n");
                return;
            }
        }
        match rng.verdict(self.cfg.tempfail_bp, self.cfg.permfail_bp) {
            Verdict::Accept => {
                self.tally.recipients_accepted += 1;
                if let Some(t) = self.txn.as_mut() {
                    t.accepted_recipients += 1;
                }
                out.extend_from_slice(b"250 2.1.5 Ok\r\n");
            }
            Verdict::TempFail => {
                self.tally.recipients_tempfailed += 1;
                out.extend_from_slice(b"451 4.3.0 sink tempfail\r\n");
            }
            Verdict::PermFail => {
                self.tally.recipients_permfailed += 1;
                out.extend_from_slice(b"550 5.1.1 sink permfail\r\n");
            }
        }
    }

    fn data_command(&mut self, args: &[u8], out: &mut Vec<u8>) {
        if !args.is_empty() {
            self.error(out, b"501 5.5.4 Syntax: DATA\r\n");
            return;
        }
        match &self.txn {
            None => out.extend_from_slice(b"503 5.5.1 Bad sequence of commands: MAIL first\r\n"),
            Some(t) if t.chunking => {
                out.extend_from_slice(b"503 5.5.1 Bad sequence of commands: BDAT in progress\r\n")
            }
            Some(t) if t.accepted_recipients == 0 => {
                self.tally.messages_rejected += 1;
                out.extend_from_slice(b"554 5.5.1 No valid recipients\r\n");
            }
            Some(_) => {
                self.start_message();
                self.data.reset();
                self.mode = Mode::Data;
                out.extend_from_slice(b"354 End data with <CR><LF>.<CR><LF>\r\n");
            }
        }
    }

    fn bdat(&mut self, args: &[u8], out: &mut Vec<u8>) {
        let mut words = args.split(|&b| b == b' ').filter(|w| !w.is_empty());
        let size = words.next().and_then(parse_u64);
        let last = match words.next() {
            None => Some(false),
            Some(w) if w.eq_ignore_ascii_case(b"LAST") => Some(true),
            Some(_) => None,
        };
        let (Some(size), Some(last), None) = (size, last, words.next()) else {
            // The chunk size is unknown, so the octets that follow cannot be skipped: they
            // will be read as commands (and mostly answered 500), as RFC 3030 accepts.
            self.error(out, b"501 5.5.4 Syntax: BDAT size [LAST]\r\n");
            return;
        };
        let fate = match self.txn.as_mut() {
            None => ChunkFate::NoTransaction,
            Some(t) if t.accepted_recipients == 0 => ChunkFate::NoRecipients,
            Some(t) => {
                if !t.chunking {
                    t.chunking = true;
                    self.start_message();
                }
                ChunkFate::Take
            }
        };
        self.mode = Mode::Chunk {
            remaining: size,
            last,
            fate,
        };
    }

    fn starttls(&mut self, args: &[u8], out: &mut Vec<u8>) -> Next {
        if !self.cfg.offer_starttls {
            out.extend_from_slice(b"502 5.5.1 Command not implemented\r\n");
        } else if self.tls {
            out.extend_from_slice(b"503 5.5.1 Bad sequence of commands: TLS already active\r\n");
        } else if !args.is_empty() {
            self.error(out, b"501 5.5.4 Syntax: STARTTLS\r\n");
        } else {
            out.extend_from_slice(b"220 2.0.0 Ready to start TLS\r\n");
            return Next::StartTls;
        }
        Next::Read
    }
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|b| *b != b' ').unwrap_or(s.len());
    let end = s.iter().rposition(|b| *b != b' ').map_or(start, |i| i + 1);
    &s[start..end]
}

fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// `FROM:<path> params` / `TO:<path> params` → (path without brackets, params). A space after
/// the colon is tolerated (many clients send one); control octets in the path are not.
fn parse_path<'a>(args: &'a [u8], keyword: &[u8]) -> Option<(&'a [u8], &'a [u8])> {
    if args.len() < keyword.len() || !args[..keyword.len()].eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = trim(&args[keyword.len()..]);
    let rest = rest.strip_prefix(b"<")?;
    let end = memchr(b'>', rest)?;
    let path = &rest[..end];
    if path.iter().any(|b| *b < 0x20 || *b == 0x7f || *b == b'<') {
        return None;
    }
    let params = &rest[end + 1..];
    if !params.is_empty() && params[0] != b' ' {
        return None;
    }
    Some((path, trim(params)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> SessionConfig {
        SessionConfig {
            max_message_size: 1000,
            offer_starttls: true,
            keep_content: true,
            tempfail_bp: 0,
            permfail_bp: 0,
        }
    }

    /// Feed `input` in one piece; returns (replies as lines, consumed, next).
    fn run(s: &mut SinkSession, input: &[u8]) -> (Vec<String>, usize, Next) {
        let mut out = Vec::new();
        let (n, next) = s.feed(input, &mut Rng::new(1), &mut out);
        (lines(&out), n, next)
    }

    fn lines(out: &[u8]) -> Vec<String> {
        String::from_utf8_lossy(out)
            .split_terminator("\r\n")
            .map(str::to_string)
            .collect()
    }

    fn codes(lines: &[String]) -> Vec<&str> {
        lines.iter().map(|l| &l[..3]).collect()
    }

    fn greeted() -> SinkSession {
        let mut s = SinkSession::new(cfg());
        run(&mut s, b"EHLO client\r\n");
        s
    }

    #[test]
    fn ehlo_advertises_the_extensions() {
        let mut s = SinkSession::new(cfg());
        let (r, _, _) = run(&mut s, b"EHLO client.example\r\n");
        assert_eq!(
            r,
            [
                "250-sink.loadgen.invalid",
                "250-PIPELINING",
                "250-SIZE 1000",
                "250-8BITMIME",
                "250-SMTPUTF8",
                "250-ENHANCEDSTATUSCODES",
                "250-CHUNKING",
                "250-STARTTLS",
                "250 DSN"
            ]
        );
        let mut s = SinkSession::new(SessionConfig {
            offer_starttls: false,
            ..cfg()
        });
        let (r, _, _) = run(&mut s, b"ehlo x\r\nSTARTTLS\r\n");
        assert!(!r.iter().any(|l| l.contains("STARTTLS")));
        assert_eq!(r.last().unwrap(), "502 5.5.1 Command not implemented");
    }

    #[test]
    fn pipelined_transaction_is_answered_in_order() {
        let mut s = greeted();
        let input =
            b"MAIL FROM:<a@x> SIZE=10 BODY=8BITMIME SMTPUTF8\r\nRCPT TO:<b@x> NOTIFY=NEVER\r\n\
RCPT TO: <c@x>\r\nDATA\r\nhello\r\n..dot\r\n.\r\nNOOP\r\nQUIT\r\nNOOP\r\n";
        let (r, n, next) = run(&mut s, input);
        assert_eq!(codes(&r), ["250", "250", "250", "354", "250", "250", "221"]);
        assert_eq!(next, Next::Close);
        assert_eq!(
            n,
            input.len() - b"NOOP\r\n".len(),
            "nothing after QUIT is consumed"
        );
        let t = s.take_tally();
        assert_eq!(
            (t.messages, t.recipients_accepted, t.recipients_delivered),
            (1, 2, 2)
        );
        assert_eq!(t.bytes, b"hello\r\n.dot\r\n".len() as u64);
        assert_eq!(
            s.take_accepted().collect::<Vec<_>>(),
            [b"hello\r\n.dot\r\n"]
        );
        assert!(s.take_tally().is_empty());
    }

    #[test]
    fn partial_lines_wait_for_more_input() {
        let mut s = greeted();
        let (r, n, _) = run(&mut s, b"NOOP\r\nMAIL FROM:<a");
        assert_eq!((codes(&r), n), (vec!["250"], 6));
        let (r, n, _) = run(&mut s, b"MAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\nab");
        assert_eq!(codes(&r), ["250", "250", "354"]);
        assert_eq!(n, 40, "content is consumed as it comes");
        let (r, _, _) = run(&mut s, b"c\r\n.");
        assert!(r.is_empty());
        let (r, _, _) = run(&mut s, b"\r\n");
        assert_eq!(codes(&r), ["250"]);
        assert_eq!(s.take_accepted().collect::<Vec<_>>(), [b"abc\r\n"]);
    }

    #[test]
    fn bdat_chunks_including_last_and_empty_last() {
        let mut s = greeted();
        let input =
            b"MAIL FROM:<>\r\nRCPT TO:<b@x>\r\nBDAT 7\r\n.\r\nab\r\nBDAT 3 LAST\r\nxyzNOOP\r\n";
        let (r, n, _) = run(&mut s, input);
        assert_eq!(
            r,
            [
                "250 2.1.0 Ok",
                "250 2.1.5 Ok",
                "250 2.0.0 7 octets received",
                "250 2.0.0 Ok: queued",
                "250 2.0.0 Ok"
            ]
        );
        assert_eq!(n, input.len());
        assert_eq!(s.take_accepted().collect::<Vec<_>>(), [b".\r\nab\r\nxyz"]);
        // BDAT 0 LAST ends a message, and chunks split across reads are reassembled.
        let (r, _, _) = run(&mut s, b"MAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nBDAT 4\r\nab");
        assert_eq!(codes(&r), ["250", "250"]);
        let (r, _, _) = run(&mut s, b"cdBDAT 0 last\r\n");
        assert_eq!(codes(&r), ["250", "250"]);
        assert_eq!(s.take_accepted().collect::<Vec<_>>(), [b"abcd"]);
        assert_eq!(s.take_tally().messages, 2);
    }

    #[test]
    fn bdat_out_of_sequence_still_swallows_its_chunk() {
        let mut s = greeted();
        let (r, _, _) = run(&mut s, b"BDAT 6 LAST\r\nNOOP\r\nNOOP\r\n");
        assert_eq!(codes(&r), ["503", "250"]);
        let (r, _, _) = run(&mut s, b"BDAT x\r\nBDAT 1 MORE\r\nBDAT\r\n");
        assert_eq!(codes(&r), ["501", "501", "501"]);
        let (r, _, _) = run(
            &mut s,
            b"MAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nBDAT 2\r\nxxDATA\r\nRSET\r\n",
        );
        assert_eq!(codes(&r), ["250", "250", "250", "503", "250"]);
    }

    #[test]
    fn sequence_errors() {
        let mut s = SinkSession::new(cfg());
        let (r, _, _) = run(
            &mut s,
            b"MAIL FROM:<a@x>\r\nHELO h\r\nRCPT TO:<b@x>\r\nDATA\r\nMAIL FROM:<a@x>\r\nMAIL FROM:<a@x>\r\n",
        );
        assert_eq!(codes(&r), ["503", "250", "503", "503", "250", "503"]);
        // no recipient accepted: DATA refused, the transaction stays open until RSET
        let (r, _, _) = run(&mut s, b"DATA\r\nRSET\r\nDATA\r\n");
        assert_eq!(codes(&r), ["554", "250", "503"]);
        assert_eq!(s.take_tally().messages_rejected, 1);
    }

    #[test]
    fn garbage_gets_500_or_501_and_the_session_goes_on() {
        let mut s = greeted();
        let (r, _, next) = run(
            &mut s,
            b"\r\nFOO bar\r\n\x00\xff\r\nEHLO\r\nMAIL TO:<a@x>\r\nMAIL FROM:a@x\r\nMAIL FROM:<a@x>x\r\n\
MAIL FROM:<a@x> SIZE=abc\r\nMAIL FROM:<a@x> =x\r\nMAIL FROM:<a\x01@x>\r\nMAIL FROM:<a@x\r\n\
MAIL FROM:<a@x>\r\nRCPT TO:<>\r\nRCPT TO:b@x\r\nDATA now\r\nNOOP\r\n",
        );
        assert_eq!(
            codes(&r),
            [
                "500", "500", "500", "501", "501", "501", "501", "501", "501", "501", "501", "250",
                "501", "501", "501", "250"
            ]
        );
        assert_eq!(next, Next::Read);
        assert_eq!(s.take_tally().command_errors, 14);
    }

    #[test]
    fn over_long_lines_are_dropped_whole() {
        let mut s = greeted();
        let mut long = vec![b'A'; MAX_COMMAND_LINE + 10];
        // arrives in pieces without a LF: the session must not keep asking for it all
        let (r, n, _) = run(&mut s, &long);
        assert!(r.is_empty());
        assert_eq!(n, long.len());
        let (r, _, _) = run(&mut s, b"AAAA MAIL FROM:<a@x>\r\nNOOP\r\n");
        assert_eq!(r, ["500 5.5.2 Line too long", "250 2.0.0 Ok"]);
        // and in one read with its LF
        long.extend_from_slice(b"\r\nNOOP\r\n");
        let (r, n, _) = run(&mut s, &long);
        assert_eq!(codes(&r), ["500", "250"]);
        assert_eq!(n, long.len());
        // a line just under the limit is a command
        let mut ok = b"NOOP ".to_vec();
        ok.resize(MAX_COMMAND_LINE - 2, b'x');
        ok.extend_from_slice(b"\r\n");
        assert_eq!(codes(&run(&mut s, &ok).0), ["250"]);
    }

    #[test]
    fn size_limit() {
        let mut s = greeted();
        let (r, _, _) = run(
            &mut s,
            b"MAIL FROM:<a@x> SIZE=1001\r\nMAIL FROM:<a@x> SIZE=1000\r\n",
        );
        assert_eq!(codes(&r), ["552", "250"]);
        let mut big = b"RCPT TO:<b@x>\r\nDATA\r\n".to_vec();
        big.extend(std::iter::repeat_n(b'x', 999));
        big.extend_from_slice(b"\r\n.\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nBDAT 1001 LAST\r\n");
        big.extend(std::iter::repeat_n(b'y', 1001));
        big.extend_from_slice(b"MAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nBDAT 1000 LAST\r\n");
        big.extend(std::iter::repeat_n(b'z', 1000));
        let (r, n, _) = run(&mut s, &big);
        assert_eq!(
            codes(&r),
            [
                "250", "354", "552", "250", "250", "552", "250", "250", "250"
            ]
        );
        assert_eq!(n, big.len());
        let t = s.take_tally();
        assert_eq!((t.messages, t.messages_rejected, t.bytes), (1, 2, 1000));
        assert_eq!(s.take_accepted().count(), 1);
    }

    #[test]
    fn starttls_stops_at_the_command_and_resets_the_session() {
        let mut s = greeted();
        let input = b"STARTTLS\r\nMAIL FROM:<injected@x>\r\n";
        let (r, n, next) = run(&mut s, input);
        assert_eq!(r, ["220 2.0.0 Ready to start TLS"]);
        assert_eq!((n, next), (10, Next::StartTls));
        s.tls_started();
        let (r, _, _) = run(&mut s, b"MAIL FROM:<a@x>\r\nEHLO x\r\nSTARTTLS\r\n");
        assert_eq!(codes(&r)[0], "503", "EHLO is required again");
        assert!(!r.iter().any(|l| l.contains("STARTTLS")));
        assert_eq!(
            r.last().unwrap(),
            "503 5.5.1 Bad sequence of commands: TLS already active"
        );
    }

    #[test]
    fn recipient_shares_follow_the_seed() {
        let (t, p) = SessionConfig::shares(20.0, 10.0).unwrap();
        let c = SessionConfig {
            tempfail_bp: t,
            permfail_bp: p,
            ..cfg()
        };
        let replies = |seed| {
            let mut s = SinkSession::new(c);
            let mut rng = Rng::new(seed);
            let mut out = Vec::new();
            s.feed(b"EHLO x\r\nMAIL FROM:<a@x>\r\n", &mut rng, &mut out);
            out.clear();
            for _ in 0..2000 {
                s.feed(b"RCPT TO:<b@x>\r\n", &mut rng, &mut out);
            }
            (out, s.take_tally())
        };
        let (a, ta) = replies(7);
        let (b, _) = replies(7);
        let (c2, _) = replies(8);
        assert_eq!(a, b);
        assert_ne!(a, c2);
        assert_eq!(
            ta.recipients_accepted + ta.recipients_tempfailed + ta.recipients_permfailed,
            2000
        );
        assert!((340..=460).contains(&ta.recipients_tempfailed), "{ta:?}");
        assert!((140..=260).contains(&ta.recipients_permfailed), "{ta:?}");
        assert!(SessionConfig::shares(60.0, 50.0).is_err());
        assert!(SessionConfig::shares(-1.0, 0.0).is_err());
        assert!(SessionConfig::shares(f64::NAN, 0.0).is_err());
        assert_eq!(SessionConfig::shares(0.5, 100.0 - 0.5).unwrap(), (50, 9950));
    }

    #[test]
    fn byte_by_byte_equals_whole() {
        let input = b"EHLO x\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n.a\r\n\n.\n\r\n.\r\n\
MAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nBDAT 5 LAST\r\n12345BOGUS\r\nQUIT\r\n";
        let mut whole = SinkSession::new(cfg());
        let mut out_whole = Vec::new();
        whole.feed(input, &mut Rng::new(1), &mut out_whole);
        let mut s = SinkSession::new(cfg());
        let mut out = Vec::new();
        let mut rng = Rng::new(1);
        let mut pending: Vec<u8> = Vec::new();
        for &b in input.iter() {
            pending.push(b);
            let (n, _) = s.feed(&pending, &mut rng, &mut out);
            pending.drain(..n);
        }
        assert_eq!(lines(&out), lines(&out_whole));
        assert_eq!(
            s.take_accepted().collect::<Vec<_>>(),
            whole.take_accepted().collect::<Vec<_>>()
        );
        assert_eq!(s.take_tally(), whole.take_tally());
    }
}
