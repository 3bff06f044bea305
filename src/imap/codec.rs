//! Framing and parsing glue over imap-codec, and the response-writing helpers.
//!
//! [`CommandReader`] frames client input into complete commands with bounded memory: it scans
//! lines, recognises literal announcements (`{N}`, `{N+}`, `~{N}`) at line ends, asks for a
//! continuation for synchronizing literals and refuses oversized literals *before* their bytes
//! arrive. Only complete commands reach imap-codec's decoder, so the decoder never sees a
//! partial command. A few extension syntaxes imap-codec does not parse (ESEARCH `RETURN (...)`,
//! LIST-EXTENDED selection/return options, FETCH PREVIEW, REPLACE, CATENATE, the FETCH and
//! STATUS items of OBJECTID and SAVEDATE) are cut out of the command text first and returned
//! beside it as [`CommandExtras`]; the SEARCH keys of OBJECTID and SAVEDATE are parsed by
//! `search_criteria`.
//!
//! Responses are written by hand straight into the output buffer: big literals (BODY[]) are
//! copied once, from the store's bytes into `out`.

use std::fmt::Write as _;

use imap_codec::{
    CommandCodec,
    decode::Decoder,
    imap_types::{
        IntoStatic,
        command::{Command, CommandBody},
        datetime::DateTime,
        extensions::binary::LiteralOrLiteral8,
        flag::Flag,
    },
};

/// What the reader produced from the input.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A complete command (its bytes are in [`CommandReader::command`]).
    Command,
    /// A synchronizing literal was announced and accepted: send a continuation request.
    Continue,
    /// A command was refused without being read completely (tag, reason).
    TooBig { tag: String, literal: u64 },
    /// A non-synchronizing literal over the limit: the client sends its bytes anyway, and
    /// skipping them could cost without bound (a length of up to 19 digits, or a compressed
    /// stream inflating 1000:1), so the connection is to be closed, as Dovecot does.
    TooBigSent { tag: String, literal: u64 },
    /// A line exceeded the limit; the rest of the line is discarded.
    LineTooLong { tag: String },
    /// A command whose literal was dropped mid-way ([`CommandReader::shed`]) has been read to
    /// its end; it is refused without being run.
    Shed { tag: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadState {
    /// Reading a line up to LF.
    Line,
    /// Reading this many literal bytes.
    Literal(u64),
    /// Skipping the bytes of a refused non-synchronizing literal, then the rest of the line.
    Skip(u64),
    /// Dropping input up to and including the next LF.
    DiscardLine,
}

/// Frames IMAP commands from a byte stream.
#[derive(Debug)]
pub struct CommandReader {
    buf: Vec<u8>,
    /// Start of the line currently being read inside `buf`.
    line_start: usize,
    state: ReadState,
    max_line: usize,
    max_literal: u32,
    /// Offsets in `buf` just after each literal of the current command (for MULTIAPPEND).
    literal_ends: Vec<usize>,
    /// The tag of a command being discarded by [`Self::shed`], answered once it has been read.
    shed_tag: Option<String>,
}

/// Capacity a finished command's buffer may keep for the next one; larger buffers (an APPEND's
/// literal) are freed so that idle connections do not hold them.
const KEPT_CAPACITY: usize = 64 * 1024;

impl CommandReader {
    pub fn new(max_line: usize, max_literal: u32) -> Self {
        CommandReader {
            buf: Vec::new(),
            line_start: 0,
            state: ReadState::Line,
            max_line,
            max_literal,
            literal_ends: Vec::new(),
            shed_tag: None,
        }
    }

    /// Memory held by a command still being received (its literals), for the transfer budget.
    pub fn held_bytes(&self) -> usize {
        match self.state {
            ReadState::Literal(_) => self.buf.capacity(),
            _ => 0,
        }
    }

    /// Drops the literal being received: the rest of the command is read and discarded, then
    /// [`Frame::Shed`] asks the session to refuse it (the transfer memory budget is spent).
    pub fn shed(&mut self) {
        if let ReadState::Literal(left) = self.state {
            self.shed_tag = Some(tag_of(&self.buf));
            self.clear();
            self.buf = Vec::new();
            self.state = ReadState::Skip(left);
        }
    }

    /// The bytes of the last complete command (valid after [`Frame::Command`]).
    pub fn command(&self) -> &[u8] {
        &self.buf
    }

    /// Forget the current command (call after handling [`Frame::Command`]).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.literal_ends.clear();
        self.line_start = 0;
        if self.buf.capacity() > KEPT_CAPACITY {
            self.buf = Vec::new();
        }
    }

    /// Take the bytes of the last complete command out of the reader (no copy); hand the
    /// buffer back with [`Self::restore`] once the command is handled.
    pub fn take_command(&mut self) -> Vec<u8> {
        self.line_start = 0;
        std::mem::take(&mut self.buf)
    }

    /// Return a buffer taken with [`Self::take_command`] for reuse.
    pub fn restore(&mut self, mut buf: Vec<u8>) {
        if self.buf.is_empty() && buf.capacity() <= KEPT_CAPACITY {
            buf.clear();
            self.buf = buf;
        }
        self.line_start = 0;
        self.literal_ends.clear();
    }

    /// Offsets just after each literal of the last complete command.
    pub fn literal_ends(&self) -> &[usize] {
        &self.literal_ends
    }

    /// Drop everything buffered (STARTTLS).
    pub fn reset(&mut self) {
        self.clear();
        self.shed_tag = None;
        self.state = ReadState::Line;
    }

    /// Change the line limit (smaller before authentication).
    pub fn set_max_line(&mut self, max_line: usize) {
        self.max_line = max_line;
    }

    /// Change the literal limit (smaller before authentication).
    pub fn set_max_literal(&mut self, max_literal: u32) {
        self.max_literal = max_literal;
    }

    /// True when nothing of a command is buffered.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty() && self.state == ReadState::Line && self.shed_tag.is_none()
    }

    /// Read only a plain line (for AUTHENTICATE continuations and IDLE's DONE): the same as
    /// [`Self::push`] but literal announcements are not interpreted.
    pub fn push_line(&mut self, input: &[u8]) -> (usize, Option<Frame>) {
        self.push_inner(input, false)
    }

    /// Consume input up to the next frame event; returns (bytes consumed, event).
    pub fn push(&mut self, input: &[u8]) -> (usize, Option<Frame>) {
        self.push_inner(input, true)
    }

    fn push_inner(&mut self, input: &[u8], literals: bool) -> (usize, Option<Frame>) {
        let mut pos = 0;
        while pos < input.len() {
            match self.state {
                ReadState::DiscardLine => match memchr::memchr(b'\n', &input[pos..]) {
                    Some(i) => {
                        pos += i + 1;
                        self.state = ReadState::Line;
                    }
                    None => return (input.len(), None),
                },
                ReadState::Skip(n) => {
                    let take = (n as usize).min(input.len() - pos);
                    pos += take;
                    let left = n - take as u64;
                    self.state = if left > 0 {
                        ReadState::Skip(left)
                    } else if self.shed_tag.is_some() {
                        // A shed command goes on after its literal: read on to its end.
                        self.buf.clear();
                        self.line_start = 0;
                        ReadState::Line
                    } else {
                        ReadState::DiscardLine
                    };
                }
                ReadState::Literal(n) => {
                    let take = (n as usize).min(input.len() - pos);
                    self.buf.extend_from_slice(&input[pos..pos + take]);
                    pos += take;
                    let left = n - take as u64;
                    if left == 0 {
                        self.state = ReadState::Line;
                        self.line_start = self.buf.len();
                        self.literal_ends.push(self.buf.len());
                    } else {
                        self.state = ReadState::Literal(left);
                    }
                }
                ReadState::Line => {
                    let rest = &input[pos..];
                    let (chunk, complete) = match memchr::memchr(b'\n', rest) {
                        Some(i) => (&rest[..=i], true),
                        None => (rest, false),
                    };
                    let line_len = self.buf.len() - self.line_start + chunk.len();
                    if line_len > self.max_line {
                        let tag = tag_of_split(&self.buf, chunk);
                        let tag = self.shed_tag.take().unwrap_or(tag);
                        self.clear();
                        if complete {
                            pos += chunk.len();
                        } else {
                            pos += chunk.len();
                            self.state = ReadState::DiscardLine;
                        }
                        return (pos, Some(Frame::LineTooLong { tag }));
                    }
                    self.buf.extend_from_slice(chunk);
                    pos += chunk.len();
                    if !complete {
                        continue;
                    }
                    let line = &self.buf[self.line_start..];
                    let announced = literals.then(|| literal_announcement(line)).flatten();
                    if let Some(tag) = self.shed_tag.take() {
                        self.clear();
                        match announced {
                            // The client sends these bytes anyway: skip them too.
                            Some((len, false)) if len <= u64::from(self.max_literal) => {
                                self.shed_tag = Some(tag);
                                self.state = ReadState::Skip(len);
                                continue;
                            }
                            Some((len, false)) => {
                                self.state = ReadState::DiscardLine;
                                return (pos, Some(Frame::TooBigSent { tag, literal: len }));
                            }
                            // Refusing instead of inviting the literal ends the command.
                            Some((_, true)) | None => return (pos, Some(Frame::Shed { tag })),
                        }
                    }
                    match announced {
                        Some((len, sync)) => {
                            if len > u64::from(self.max_literal)
                                || self.buf.len() as u64 + len
                                    > u64::from(self.max_literal) + 4 * self.max_line as u64
                            {
                                let tag = tag_of(&self.buf);
                                self.clear();
                                if !sync {
                                    self.state = ReadState::DiscardLine;
                                    return (pos, Some(Frame::TooBigSent { tag, literal: len }));
                                }
                                return (pos, Some(Frame::TooBig { tag, literal: len }));
                            }
                            self.state = ReadState::Literal(len);
                            if len == 0 {
                                self.state = ReadState::Line;
                                self.line_start = self.buf.len();
                                self.literal_ends.push(self.buf.len());
                            }
                            if sync {
                                return (pos, Some(Frame::Continue));
                            }
                        }
                        None => return (pos, Some(Frame::Command)),
                    }
                }
            }
        }
        (pos, None)
    }
}

/// `{N}\r\n`, `{N+}\r\n`, `~{N}\r\n` at the end of a line → (N, synchronizing).
fn literal_announcement(line: &[u8]) -> Option<(u64, bool)> {
    let line = line.strip_suffix(b"\n")?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = line.strip_suffix(b"}")?;
    let open = memchr::memrchr(b'{', line)?;
    let mut digits = &line[open + 1..];
    let mut sync = true;
    if let Some(d) = digits
        .strip_suffix(b"+")
        .or_else(|| digits.strip_suffix(b"-"))
    {
        digits = d;
        sync = false;
    }
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits)
        .ok()?
        .parse()
        .ok()
        .map(|n| (n, sync))
}

/// The tag of a (possibly malformed) command line, or `*` if it has none we can echo.
pub fn tag_of(line: &[u8]) -> String {
    let end = line
        .iter()
        .position(|&b| b == b' ' || b == b'\r' || b == b'\n')
        .unwrap_or(line.len());
    let tag = &line[..end];
    if !tag.is_empty() && tag.len() <= 64 && tag.iter().all(|&b| is_tag_char(b)) {
        String::from_utf8_lossy(tag).into_owned()
    } else {
        "*".into()
    }
}

/// The tag of a command whose first octets are `buffered` followed by `more` (a line refused
/// before all of it arrived). A read can end inside the tag, so it is looked for across both,
/// and echoed only if its end is there: never a truncated tag the client did not send.
fn tag_of_split(buffered: &[u8], more: &[u8]) -> String {
    // One octet past the longest tag `tag_of` echoes tells a long tag from a complete one.
    const HEAD: usize = 65;
    let mut head = Vec::with_capacity(HEAD);
    head.extend_from_slice(&buffered[..buffered.len().min(HEAD)]);
    let want = HEAD - head.len();
    head.extend_from_slice(&more[..more.len().min(want)]);
    if head.iter().any(|&b| matches!(b, b' ' | b'\r' | b'\n')) {
        tag_of(&head)
    } else {
        "*".into()
    }
}

fn is_tag_char(b: u8) -> bool {
    b.is_ascii_graphic() && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b'+')
}

// ---------------------------------------------------------------------------------------------
// Extension syntax imap-codec does not parse.

/// ESEARCH `RETURN (...)` options (RFC 4731 / RFC 9051).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchReturn {
    pub min: bool,
    pub max: bool,
    pub all: bool,
    pub count: bool,
    /// SEARCHRES (RFC 5182): keep the result for `$`.
    pub save: bool,
    /// RFC 5267 §4.4 / RFC 9394.
    pub partial: Option<super::esearch::PartialRange>,
    /// CONTEXT=SEARCH / CONTEXT=SORT (RFC 5267 §4.3): keep the result up to date with
    /// ADDTO / REMOVEFROM notifications ([`super::context`]).
    pub update: bool,
    /// RFC 5267 §4.2: a hint that the criteria will be used again (no result item; accepted and
    /// otherwise ignored, as the RFC allows).
    pub context: bool,
}

impl SearchReturn {
    /// No result item requested (`RETURN ()` means `RETURN (ALL)`; SAVE is not an item).
    pub fn is_empty(&self) -> bool {
        !(self.min || self.max || self.all || self.count || self.partial.is_some())
    }
}

/// LIST-EXTENDED (RFC 5258) selection and return options, and LIST-STATUS (RFC 5819).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions {
    pub extended: bool,
    pub select_subscribed: bool,
    pub select_special_use: bool,
    pub recursive_match: bool,
    pub return_subscribed: bool,
    pub return_children: bool,
    pub return_special_use: bool,
    /// STATUS item names (upper case) requested with `RETURN (STATUS (...))`.
    pub return_status: Option<Vec<String>>,
    /// Several patterns, `LIST "" (a b)` (RFC 5258 §3): they replace the one imap-codec
    /// parsed (a placeholder). Raw as the client wrote them (quotes removed).
    pub patterns: Option<Vec<String>>,
}

/// One further message of a MULTIAPPEND (RFC 3502).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendMessage {
    pub flags: Vec<Flag<'static>>,
    pub date: Option<DateTime>,
    pub message: LiteralOrLiteral8<'static>,
}

/// Extension data cut out of a command before imap-codec parses it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandExtras {
    pub search_return: Option<SearchReturn>,
    pub list: Option<ListOptions>,
    /// Messages 2..n of a MULTIAPPEND (the first is in the APPEND command itself).
    pub more_appends: Vec<AppendMessage>,
    /// FETCH PREVIEW (RFC 8970), see [`super::preview`].
    pub preview: Option<super::preview::PreviewRequest>,
    /// FETCH EMAILID/THREADID (RFC 8474) and SAVEDATE (RFC 8514), see [`super::objectid`].
    pub fetch_items: Option<super::objectid::ExtraFetchItems>,
    /// STATUS MAILBOXID (RFC 8474): `Some(alone)`, see [`super::objectid`].
    pub status_mailboxid: Option<bool>,
    /// REPLACE (RFC 8508): the command was rewritten into an APPEND; this is the message it
    /// replaces, see [`super::replace`].
    pub replace: Option<super::replace::ReplaceTarget>,
    /// APPEND CATENATE (RFC 4469): the parts of the message, see [`super::catenate`].
    pub catenate: Option<Vec<super::catenate::CatPart>>,
    /// NOTIFY (RFC 5465): the command was carried as a NOOP, see [`super::notify`].
    pub notify: Option<Box<super::notify::NotifyRequest>>,
}

/// MULTIAPPEND: imap-codec parses only single-message APPEND, so split
/// `tag APPEND mbox msg1 msg2 ...` at literal ends: the first message is decoded as a normal
/// APPEND (`cmd[..end of its literal]` + CRLF), every further message from a synthetic
/// `tag APPEND INBOX <msg>` command. None if the command is not a valid MULTIAPPEND.
pub fn split_multiappend(
    cmd: &[u8],
    literal_ends: &[usize],
) -> Option<(Command<'static>, Vec<AppendMessage>)> {
    let tag = tag_of(cmd);
    let verb_at = tag.len() + 1;
    if literal_ends.len() < 2
        || !cmd
            .get(verb_at..verb_at + 7)?
            .eq_ignore_ascii_case(b"APPEND ")
    {
        return None;
    }
    let codec = CommandCodec::default();
    let decode = |bytes: &[u8]| -> Option<Command<'static>> {
        match codec.decode(bytes) {
            Ok((b"", c)) if matches!(c.body, CommandBody::Append { .. }) => Some(c.into_static()),
            _ => None,
        }
    };
    let with_crlf = |head: &[u8], body: &[u8]| {
        let mut p = head.to_vec();
        p.extend_from_slice(body);
        p.extend_from_slice(b"\r\n");
        p
    };
    // The first literal may be the mailbox name, so the first message ends at the first or
    // the second literal (trying no further keeps this linear in the command size).
    let (first, mut at) = literal_ends
        .iter()
        .take(2)
        .find_map(|&end| decode(&with_crlf(&cmd[..end], b"")).map(|c| (c, end)))?;
    let head = format!("{tag} APPEND INBOX").into_bytes();
    let mut more = Vec::new();
    loop {
        let rest = &cmd[at..];
        if rest == b"\r\n" || rest == b"\n" {
            break;
        }
        if !rest.starts_with(b" ") {
            return None;
        }
        let next = *literal_ends.iter().find(|&&e| e > at)?;
        let c = decode(&with_crlf(&head, &cmd[at..next]))?;
        if let CommandBody::Append {
            flags,
            date,
            message,
            ..
        } = c.body
        {
            more.push(AppendMessage {
                flags,
                date,
                message,
            });
        }
        at = next;
    }
    (!more.is_empty()).then_some((first, more))
}

/// Remove `RETURN (...)` from SEARCH and LIST-EXTENDED options from LIST; returns the command
/// to hand to imap-codec (borrowed when unchanged).
pub fn extract_extras(cmd: &[u8]) -> Result<(std::borrow::Cow<'_, [u8]>, CommandExtras), String> {
    let mut extras = CommandExtras::default();
    // Split off "tag SP"
    let Some(sp) = memchr::memchr(b' ', cmd) else {
        return Ok((cmd.into(), extras));
    };
    let after_tag = sp + 1;
    let rest = &cmd[after_tag..];
    let upper_starts =
        |s: &[u8], w: &[u8]| s.len() >= w.len() && s[..w.len()].eq_ignore_ascii_case(w);
    let mut verb_at = after_tag;
    if upper_starts(rest, b"UID ") {
        verb_at += 4;
    }
    let verb = &cmd[verb_at..];
    if let Some((rewritten, target)) =
        super::replace::extract_replace(cmd, after_tag, verb_at, verb_at != after_tag)?
    {
        extras.replace = Some(target);
        return Ok((rewritten.into(), extras));
    }
    if verb_at == after_tag
        && let Some((rewritten, parts)) = super::catenate::extract_catenate(cmd, verb_at)?
    {
        extras.catenate = Some(parts);
        return Ok((rewritten.into(), extras));
    }
    if upper_starts(verb, b"FETCH ") {
        let set_at = verb_at + b"FETCH ".len();
        if let Some(sp) = memchr::memchr(b' ', &cmd[set_at..]) {
            let items_at = set_at + sp + 1;
            let mut cur: std::borrow::Cow<'_, [u8]> = cmd.into();
            if let Some((rewritten, items)) = super::objectid::extract_fetch_items(&cur, items_at)?
            {
                extras.fetch_items = Some(items);
                cur = rewritten.into();
            }
            if let Some((rewritten, request)) = super::preview::extract_preview(&cur, items_at)? {
                extras.preview = Some(request);
                cur = rewritten.into();
            }
            return Ok((cur, extras));
        }
    }
    if upper_starts(verb, b"STATUS ")
        && verb_at == after_tag
        && let Some(open) = memchr::memrchr(b'(', cmd)
        && let Some((rewritten, alone)) = super::objectid::extract_status_mailboxid(cmd, open)?
    {
        extras.status_mailboxid = Some(alone);
        return Ok((rewritten.into(), extras));
    }
    if upper_starts(verb, b"SEARCH RETURN ") {
        let opts_at = verb_at + b"SEARCH RETURN ".len();
        let (words, end) = paren_words(cmd, opts_at)?;
        extras.search_return = Some(super::esearch::parse_return_options(&words)?);
        let mut out = cmd[..verb_at + b"SEARCH".len()].to_vec();
        out.extend_from_slice(&cmd[end..]);
        return Ok((out.into(), extras));
    }
    if upper_starts(verb, b"LIST ") && verb_at == after_tag {
        let mut out: Vec<u8> = cmd[..verb_at + 5].to_vec();
        let mut at = verb_at + 5;
        let mut opts = ListOptions::default();
        if cmd.get(at) == Some(&b'(') {
            opts.extended = true;
            let (words, end) = paren_words(cmd, at)?;
            for w in words {
                match w.to_ascii_uppercase().as_str() {
                    "SUBSCRIBED" => opts.select_subscribed = true,
                    "SPECIAL-USE" => opts.select_special_use = true,
                    "RECURSIVEMATCH" => opts.recursive_match = true,
                    "REMOTE" => {}
                    other => return Err(format!("Unknown LIST selection option {other}")),
                }
            }
            at = end;
            if cmd.get(at) == Some(&b' ') {
                at += 1;
            }
            // RFC 5258 §3.1: RECURSIVEMATCH alone (or with REMOTE) is a syntax error.
            if opts.recursive_match && !opts.select_subscribed && !opts.select_special_use {
                return Err("RECURSIVEMATCH needs another selection option".into());
            }
        }
        // Several patterns after the reference: `"ref" (pat1 "pat 2")`.
        let reference_end = token_end(cmd, at);
        if cmd.get(reference_end) == Some(&b' ') && cmd.get(reference_end + 1) == Some(&b'(') {
            let (patterns, end) = pattern_list(cmd, reference_end + 1)?;
            opts.extended = true;
            opts.patterns = Some(patterns);
            let mut rewritten = cmd[..reference_end].to_vec();
            rewritten.extend_from_slice(b" \"\"");
            rewritten.extend_from_slice(&cmd[end..]);
            let (rest, mut extras) = extract_extras(&rewritten)?;
            let rest = rest.into_owned();
            let list = extras.list.get_or_insert_with(ListOptions::default);
            list.extended = true;
            list.patterns = opts.patterns.take();
            list.select_subscribed |= opts.select_subscribed;
            list.select_special_use |= opts.select_special_use;
            list.recursive_match |= opts.recursive_match;
            return Ok((rest.into(), extras));
        }
        // RETURN clause at the end: find the last " RETURN (" outside quotes.
        let body = &cmd[at..];
        let line_end = body.len()
            - body
                .iter()
                .rev()
                .take_while(|b| **b == b'\r' || **b == b'\n')
                .count();
        let mut body_end = line_end;
        if let Some(ret) = find_return(&body[..line_end]) {
            opts.extended = true;
            let abs = at + ret + b" RETURN ".len();
            parse_list_return(cmd, abs, &mut opts)?;
            body_end = ret;
        }
        if opts.extended {
            out.extend_from_slice(&body[..body_end]);
            out.extend_from_slice(b"\r\n");
            extras.list = Some(opts);
            return Ok((out.into(), extras));
        }
    }
    Ok((cmd.into(), extras))
}

/// The index just after a quoted string or atom starting at `at`.
fn token_end(cmd: &[u8], at: usize) -> usize {
    if cmd.get(at) != Some(&b'"') {
        return cmd[at..]
            .iter()
            .position(|&b| matches!(b, b' ' | b'\r' | b'\n' | b'('))
            .map_or(cmd.len(), |p| at + p);
    }
    let mut i = at + 1;
    while let Some(&b) = cmd.get(i) {
        match b {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    cmd.len()
}

/// `(pattern SP pattern ...)` of quoted strings or atoms (no literals); returns the patterns
/// and the index after `)`.
fn pattern_list(cmd: &[u8], at: usize) -> Result<(Vec<String>, usize), String> {
    let mut patterns = Vec::new();
    let mut i = at + 1;
    loop {
        match cmd.get(i) {
            Some(b' ') => i += 1,
            Some(b')') if !patterns.is_empty() => return Ok((patterns, i + 1)),
            Some(b')') => return Err("Empty pattern list".into()),
            Some(b'{') | Some(b'(') | Some(b'\r') | Some(b'\n') | None => {
                return Err("Bad pattern list".into());
            }
            Some(b'"') => {
                let end = token_end(cmd, i);
                if cmd.get(end - 1) != Some(&b'"') || end - i < 2 {
                    return Err("Unterminated quoted pattern".into());
                }
                let mut text = Vec::new();
                let mut j = i + 1;
                while j < end - 1 {
                    if cmd[j] == b'\\' {
                        j += 1;
                    }
                    text.push(cmd[j]);
                    j += 1;
                }
                patterns.push(String::from_utf8_lossy(&text).into_owned());
                i = end;
            }
            Some(_) => {
                let end = cmd[i..]
                    .iter()
                    .position(|&b| matches!(b, b' ' | b')' | b'\r' | b'\n'))
                    .map_or(cmd.len(), |p| i + p);
                patterns.push(String::from_utf8_lossy(&cmd[i..end]).into_owned());
                i = end;
            }
        }
    }
}

fn find_return(s: &[u8]) -> Option<usize> {
    let mut in_quote = false;
    let mut esc = false;
    let mut found = None;
    for (i, &b) in s.iter().enumerate() {
        if in_quote {
            if esc {
                esc = false;
            } else if b == b'\\' {
                esc = true;
            } else if b == b'"' {
                in_quote = false;
            }
            continue;
        }
        if b == b'"' {
            in_quote = true;
        } else if b == b' ' && s.len() >= i + 9 && s[i..i + 9].eq_ignore_ascii_case(b" RETURN (") {
            found = Some(i);
        }
    }
    found
}

fn parse_list_return(cmd: &[u8], at: usize, opts: &mut ListOptions) -> Result<(), String> {
    // "(" [opt *(SP opt)] ")" where opt may be STATUS (items)
    if cmd.get(at) != Some(&b'(') {
        return Err("RETURN needs a list".into());
    }
    let mut i = at + 1;
    loop {
        while cmd.get(i) == Some(&b' ') {
            i += 1;
        }
        match cmd.get(i) {
            Some(b')') => return Ok(()),
            None => return Err("Unbalanced parenthesis".into()),
            _ => {}
        }
        let start = i;
        while let Some(&b) = cmd.get(i) {
            if b == b' ' || b == b')' || b == b'(' {
                break;
            }
            i += 1;
        }
        let word = String::from_utf8_lossy(&cmd[start..i]).to_ascii_uppercase();
        match word.as_str() {
            "SUBSCRIBED" => opts.return_subscribed = true,
            "CHILDREN" => opts.return_children = true,
            "SPECIAL-USE" => opts.return_special_use = true,
            "STATUS" => {
                while cmd.get(i) == Some(&b' ') {
                    i += 1;
                }
                let (words, end) = paren_words(cmd, i)?;
                opts.return_status = Some(words.iter().map(|w| w.to_ascii_uppercase()).collect());
                i = end;
            }
            "" => return Err("Bad RETURN option".into()),
            other => return Err(format!("Unknown LIST return option {other}")),
        }
    }
}

/// Parse `(word word ...)` starting at `at` (which must be `(`); returns the words and the
/// index just after `)`.
pub(crate) fn paren_words(cmd: &[u8], at: usize) -> Result<(Vec<String>, usize), String> {
    if cmd.get(at) != Some(&b'(') {
        return Err("Expected (".into());
    }
    let close = cmd[at..]
        .iter()
        .position(|&b| b == b')')
        .ok_or_else(|| "Unbalanced parenthesis".to_string())?;
    let inner = &cmd[at + 1..at + close];
    if inner.iter().any(|&b| b == b'(' || b == b'"' || b == b'{') {
        return Err("Bad option list".into());
    }
    let words = inner
        .split(|&b| b == b' ')
        .filter(|w| !w.is_empty())
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect();
    Ok((words, at + close + 1))
}

// ---------------------------------------------------------------------------------------------
// Response writing helpers.

/// Write an IMAP string: quoted if short printable ASCII, otherwise a literal.
pub fn write_string(out: &mut Vec<u8>, s: &[u8]) {
    if s.len() <= 1024 && s.iter().all(|&b| (0x20..0x7f).contains(&b)) {
        out.push(b'"');
        for &b in s {
            if b == b'"' || b == b'\\' {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        write_literal(out, s);
    }
}

/// `{N}\r\n` followed by the bytes.
pub fn write_literal(out: &mut Vec<u8>, s: &[u8]) {
    let _ = write!(Vec8(out), "{{{}}}\r\n", s.len());
    out.extend_from_slice(s);
}

/// NIL or a string.
pub fn write_nstring(out: &mut Vec<u8>, s: Option<&[u8]>) {
    match s {
        Some(s) => write_string(out, s),
        None => out.extend_from_slice(b"NIL"),
    }
}

/// An astring (mailbox names): atom when possible, else quoted / literal.
pub fn write_astring(out: &mut Vec<u8>, s: &[u8]) {
    let atom = !s.is_empty()
        && s.iter().all(|&b| {
            b.is_ascii_graphic()
                && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']')
        });
    if atom {
        out.extend_from_slice(s);
    } else {
        write_string(out, s);
    }
}

/// `fmt::Write` over a byte vector.
pub struct Vec8<'a>(pub &'a mut Vec<u8>);
impl std::fmt::Write for Vec8<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// Append formatted text to a byte buffer: `w!(out, "* {} EXISTS\r\n", n)`.
#[macro_export]
#[doc(hidden)]
macro_rules! imap_w {
    ($out:expr, $($arg:tt)*) => {{
        use std::fmt::Write as _;
        let _ = write!($crate::imap::codec::Vec8($out), $($arg)*);
    }};
}

// ---------------------------------------------------------------------------------------------
// Dates.

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Civil date of days since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `"dd-Mon-yyyy hh:mm:ss +0000"` (quoted) for INTERNALDATE.
pub fn write_internal_date(out: &mut Vec<u8>, secs: i64) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    imap_w!(
        out,
        "\"{:02}-{}-{:04} {:02}:{:02}:{:02} +0000\"",
        d,
        MONTHS[(m - 1) as usize],
        y,
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    );
}

/// Parse `YYYY-MM-DD` (the Display form of chrono's NaiveDate) into days since the epoch.
pub fn days_from_iso(s: &str) -> Option<i64> {
    let mut it = s.splitn(3, '-');
    let y: i64 = it.next()?.parse().ok()?;
    let m: u32 = it.next()?.parse().ok()?;
    let d: u32 = it.next()?.parse().ok()?;
    Some(days_from_civil(y, m, d))
}

// ---------------------------------------------------------------------------------------------
// Modified UTF-7 mailbox names (RFC 3501 §5.1.3), for IMAP4rev1 clients.

const B64_IMAP: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

/// Decode modified UTF-7; None if the input is not valid modified UTF-7.
///
/// Valid means canonical: exactly what [`mutf7_encode`] makes of the decoded name. That
/// refuses 8-bit and control characters, unterminated shifts, printable ASCII inside a shift,
/// two shifts in a row, odd or non-zero padding bits and unpaired surrogates — each of which
/// would otherwise store a name that LIST shows differently from how the client wrote it.
pub fn mutf7_decode(s: &str) -> Option<String> {
    let decoded = mutf7_decode_lenient(s)?;
    (mutf7_encode(&decoded) == s).then_some(decoded)
}

fn mutf7_decode_lenient(s: &str) -> Option<String> {
    if !s.contains('&') {
        return Some(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let end = after.find('-')?;
        let enc = &after[..end];
        if enc.is_empty() {
            out.push('&');
        } else {
            let mut acc = 0u32;
            let mut bits = 0;
            let mut units = Vec::new();
            let mut bytes = Vec::new();
            for c in enc.bytes() {
                let v = B64_IMAP.iter().position(|&b| b == c)? as u32;
                acc = (acc << 6) | v;
                bits += 6;
                if bits >= 8 {
                    bits -= 8;
                    bytes.push((acc >> bits) as u8);
                    acc &= (1 << bits) - 1;
                }
            }
            for pair in bytes.chunks(2) {
                if pair.len() == 2 {
                    units.push(u16::from_be_bytes([pair[0], pair[1]]));
                }
            }
            out.push_str(&String::from_utf16(&units).ok()?);
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

/// Encode a UTF-8 name as modified UTF-7.
pub fn mutf7_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    let mut pending: Vec<u16> = Vec::new();
    let flush = |pending: &mut Vec<u16>, out: &mut String| {
        if pending.is_empty() {
            return;
        }
        let bytes: Vec<u8> = pending.iter().flat_map(|u| u.to_be_bytes()).collect();
        out.push('&');
        for chunk in bytes.chunks(3) {
            let n = (u32::from(chunk[0]) << 16)
                | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
                | u32::from(*chunk.get(2).unwrap_or(&0));
            let chars = chunk.len() + 1;
            for k in 0..chars {
                out.push(B64_IMAP[(n >> (18 - 6 * k)) as usize & 63] as char);
            }
        }
        out.push('-');
        pending.clear();
    };
    for c in s.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut pending, &mut out);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut buf = [0u16; 2];
            pending.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush(&mut pending, &mut out);
    out
}

// ---------------------------------------------------------------------------------------------
// Content-Transfer-Encoding decoders (BINARY fetch). SASL base64 is strict and lives in
// `crate::net::sasl`; message bodies are decoded leniently, as RFC 2045 §6.8 asks ("all line
// breaks or other characters not found in Table 1 must be ignored by decoding software").

/// Base64 body decoding: whitespace skipped, stops at `=`; None on any other invalid character.
pub fn base64_decode(input: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len() / 4 * 3);
    let mut acc = 0u32;
    let mut bits = 0;
    for &c in input {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            b' ' | b'\t' | b'\r' | b'\n' => continue,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// Quoted-printable decoding (RFC 2045 §6.7). Line by line: trailing spaces and tabs are
/// dropped (rule 3: transports may add them, so they are never data), a line then ending in
/// `=` is a soft break (joined to the next, `=` and line break removed), `=XY` is the octet
/// XY. A `=` not followed by two hex digits is kept as it is (§6.7 note 2 suggests it).
/// Hard line breaks keep their form (CRLF or a bare LF).
pub fn qp_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut rest = input;
    while !rest.is_empty() {
        let (line, ending, next) = match memchr::memchr(b'\n', rest) {
            Some(lf) if lf > 0 && rest[lf - 1] == b'\r' => {
                (&rest[..lf - 1], &b"\r\n"[..], &rest[lf + 1..])
            }
            Some(lf) => (&rest[..lf], &b"\n"[..], &rest[lf + 1..]),
            None => (rest, &b""[..], &b""[..]),
        };
        rest = next;
        let mut end = line.len();
        while end > 0 && matches!(line[end - 1], b' ' | b'\t') {
            end -= 1;
        }
        let line = &line[..end];
        let (content, soft_break) = match line.strip_suffix(b"=") {
            Some(content) => (content, true),
            None => (line, false),
        };
        qp_decode_line(content, &mut out);
        if !soft_break {
            out.extend_from_slice(ending);
        }
    }
    out
}

fn qp_decode_line(line: &[u8], out: &mut Vec<u8>) {
    let hex = |c: u8| (c as char).to_digit(16);
    let mut i = 0;
    while i < line.len() {
        let b = line[i];
        if b == b'='
            && let (Some(h), Some(l)) = (
                line.get(i + 1).and_then(|&c| hex(c)),
                line.get(i + 2).and_then(|&c| hex(c)),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(b);
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(r: &mut CommandReader, mut input: &[u8]) -> Vec<Frame> {
        let mut frames = vec![];
        while !input.is_empty() {
            let (n, f) = r.push(input);
            input = &input[n..];
            if let Some(f) = f {
                if f == Frame::Command {
                    r.clear();
                }
                frames.push(f);
            }
        }
        frames
    }

    #[test]
    fn frames_lines_and_literals() {
        let mut r = CommandReader::new(1000, 100);
        let (n, f) = r.push(b"a1 LOGIN {5}\r\nalice");
        assert_eq!(f, Some(Frame::Continue));
        assert_eq!(n, 14);
        let (n2, f) = r.push(b"alice pw\r\na2 NOOP\r\n");
        assert_eq!(n2, 5 + 5);
        assert_eq!(f, Some(Frame::Command));
        // The command was assembled across calls.
        let _ = n2;
    }

    #[test]
    fn split_literal_and_pipelining() {
        let mut r = CommandReader::new(1000, 100);
        let (n, f) = r.push(b"a1 LOGIN {5}\r\n");
        assert_eq!((n, f), (14, Some(Frame::Continue)));
        let (n, f) = r.push(b"ali");
        assert_eq!((n, f), (3, None));
        let (n, f) = r.push(b"ce {2+}\r\npw\r\na2 NOOP\r\n");
        assert_eq!(f, Some(Frame::Command));
        assert_eq!(r.command(), b"a1 LOGIN {5}\r\nalice {2+}\r\npw\r\n");
        assert_eq!(n, 13);
        r.clear();
        assert_eq!(feed_all(&mut r, b"a2 NOOP\r\n"), vec![Frame::Command]);
    }

    #[test]
    fn refuses_big_literals_before_reading() {
        let mut r = CommandReader::new(1000, 100);
        let (_, f) = r.push(b"a1 APPEND INBOX {1000000}\r\n");
        assert_eq!(
            f,
            Some(Frame::TooBig {
                tag: "a1".into(),
                literal: 1_000_000
            })
        );
        assert!(r.is_empty());
        // Non-synchronizing: the client sends the bytes anyway; the session closes rather
        // than skip a length it cannot bound.
        let (n, f) = r.push(b"a2 APPEND INBOX {9999999999999999999+}\r\nxxxx");
        assert_eq!(n, 40);
        assert_eq!(
            f,
            Some(Frame::TooBigSent {
                tag: "a2".into(),
                literal: 9_999_999_999_999_999_999
            })
        );
    }

    #[test]
    fn a_shed_literal_is_skipped_to_the_end_of_its_command() {
        let mut r = CommandReader::new(1000, 100_000);
        // MULTIAPPEND with non-synchronizing literals, shed inside the first one.
        let (_, f) = r.push(b"a1 APPEND INBOX {300+}\r\n");
        assert_eq!(f, None);
        let (n, f) = r.push(&[b'x'; 100]);
        assert_eq!((n, f), (100, None));
        assert_eq!(r.held_bytes(), r.buf.capacity());
        assert!(r.held_bytes() >= 100);
        r.shed();
        assert_eq!(r.held_bytes(), 0, "the literal's memory is given back");
        assert_eq!(r.buf.capacity(), 0);
        let mut rest = vec![b'x'; 200];
        rest.extend_from_slice(b" {5+}\r\nhello\r\na2 NOOP\r\n");
        assert_eq!(
            feed_all(&mut r, &rest),
            vec![Frame::Shed { tag: "a1".into() }, Frame::Command]
        );
        assert_eq!(r.command(), b"");
        assert!(r.is_empty());

        // A synchronizing literal after the shed one is refused instead of invited.
        let (_, f) = r.push(b"a3 APPEND INBOX {10}\r\n");
        assert_eq!(f, Some(Frame::Continue));
        r.push(b"0123");
        r.shed();
        assert!(!r.is_empty(), "the rest of the command is still to come");
        assert_eq!(
            feed_all(&mut r, b"456789 {5}\r\n"),
            vec![Frame::Shed { tag: "a3".into() }]
        );
        assert!(r.is_empty());
        assert_eq!(feed_all(&mut r, b"a4 NOOP\r\n"), vec![Frame::Command]);
        // A shed command may not announce more than a literal's limit to be skipped.
        r.push(b"a6 APPEND INBOX {10+}\r\n0123");
        r.shed();
        assert_eq!(
            feed_all(&mut r, b"456789 {200000+}\r\n"),
            vec![Frame::TooBigSent {
                tag: "a6".into(),
                literal: 200_000
            }]
        );
        r.reset();
        // Outside a literal there is nothing to shed.
        r.clear();
        r.push(b"a5 NO");
        r.shed();
        assert_eq!(feed_all(&mut r, b"OP\r\n"), vec![Frame::Command]);
    }

    #[test]
    fn overlong_line() {
        let mut r = CommandReader::new(20, 100);
        let mut input = b"a1 NOOP ".to_vec();
        input.extend_from_slice(&[b'x'; 100]);
        input.extend_from_slice(b"\r\na2 NOOP\r\n");
        let frames = feed_all(&mut r, &input);
        assert_eq!(
            frames,
            vec![Frame::LineTooLong { tag: "a1".into() }, Frame::Command]
        );
    }

    /// Found by fuzz/imap_reader: when a read ended inside the tag of a line that then
    /// overflowed, the reply echoed the part of the tag read so far.
    #[test]
    fn overlong_line_split_inside_tag() {
        let mut r = CommandReader::new(100, 100);
        assert_eq!(r.push(b"abc"), (3, None));
        let mut rest = b"def NOOP ".to_vec();
        rest.extend_from_slice(&[b'x'; 100]);
        rest.extend_from_slice(b"\r\na2 NOOP\r\n");
        assert_eq!(
            feed_all(&mut r, &rest),
            vec![
                Frame::LineTooLong {
                    tag: "abcdef".into()
                },
                Frame::Command
            ]
        );
        // A word too long to be a tag gives `*`, however it was split.
        let mut r = CommandReader::new(100, 100);
        assert_eq!(r.push(&[b'A'; 30]), (30, None));
        let mut rest = vec![b'A'; 100];
        rest.extend_from_slice(b"\r\n");
        assert_eq!(
            feed_all(&mut r, &rest),
            vec![Frame::LineTooLong { tag: "*".into() }]
        );
    }

    #[test]
    fn multiappend_split() {
        let mut r = CommandReader::new(1000, 100);
        let input = b"m APPEND {5+}\r\nINBOX (\\Seen) {3+}\r\none {3+}\r\ntwo \"14-Nov-2023 22:13:20 +0000\" {5+}\r\nthree\r\n";
        let frames = {
            let (n, f) = r.push(input);
            assert_eq!(n, input.len());
            f
        };
        assert_eq!(frames, Some(Frame::Command));
        let (first, more) = split_multiappend(r.command(), r.literal_ends()).unwrap();
        assert!(matches!(first.body, CommandBody::Append { .. }));
        assert_eq!(more.len(), 2);
        assert!(more[1].date.is_some());
        // A normal APPEND is not a MULTIAPPEND.
        assert!(split_multiappend(b"a APPEND INBOX {1+}\r\nx\r\n", &[21]).is_none());
        // Garbage after the first message.
        assert!(
            split_multiappend(b"a APPEND INBOX {1+}\r\nx junk {1+}\r\ny\r\n", &[21, 35]).is_none()
        );
    }

    #[test]
    fn tags() {
        assert_eq!(tag_of(b"a1 NOOP"), "a1");
        assert_eq!(tag_of(b"\x00x NOOP"), "*");
        assert_eq!(tag_of(b"a+b NOOP"), "*");
    }

    #[test]
    fn extras_search_return() {
        let (cmd, ex) = extract_extras(b"t UID SEARCH RETURN (MIN COUNT) UNSEEN\r\n").unwrap();
        assert_eq!(&cmd[..], b"t UID SEARCH UNSEEN\r\n");
        let r = ex.search_return.unwrap();
        assert!(r.min && r.count && !r.max);
        let (_, ex) = extract_extras(b"t SEARCH RETURN () ALL\r\n").unwrap();
        assert!(ex.search_return.unwrap().all);
    }

    #[test]
    fn extras_list() {
        let (cmd, ex) = extract_extras(
            b"t LIST (SUBSCRIBED) \"\" \"*\" RETURN (CHILDREN STATUS (MESSAGES UNSEEN))\r\n",
        )
        .unwrap();
        assert_eq!(&cmd[..], b"t LIST \"\" \"*\"\r\n");
        let o = ex.list.unwrap();
        assert!(o.select_subscribed && o.return_children);
        assert_eq!(o.return_status.unwrap(), vec!["MESSAGES", "UNSEEN"]);
        let (cmd, ex) = extract_extras(b"t LIST \"\" \"RETURN (x\"\r\n").unwrap();
        assert_eq!(&cmd[..], b"t LIST \"\" \"RETURN (x\"\r\n");
        assert!(ex.list.is_none());
        assert!(extract_extras(b"t LIST (BOGUS) \"\" *\r\n").is_err());
        // RFC 5258: RECURSIVEMATCH needs a base selection option.
        assert!(extract_extras(b"t LIST (RECURSIVEMATCH) \"\" *\r\n").is_err());
        assert!(extract_extras(b"t LIST (REMOTE RECURSIVEMATCH) \"\" *\r\n").is_err());
        assert!(extract_extras(b"t LIST (SUBSCRIBED RECURSIVEMATCH) \"\" *\r\n").is_ok());
    }

    #[test]
    fn extras_list_of_patterns() {
        let (cmd, ex) = extract_extras(
            b"t LIST (SUBSCRIBED) \"\" (a \"b c\" \"q\\\"x\") RETURN (CHILDREN)\r\n",
        )
        .unwrap();
        assert_eq!(&cmd[..], b"t LIST \"\" \"\"\r\n");
        let o = ex.list.unwrap();
        assert_eq!(
            o.patterns,
            Some(vec!["a".to_string(), "b c".to_string(), "q\"x".to_string()])
        );
        assert!(o.select_subscribed && o.return_children && o.extended);
        let (cmd, ex) = extract_extras(b"t LIST ref (%)\r\n").unwrap();
        assert_eq!(&cmd[..], b"t LIST ref \"\"\r\n");
        assert_eq!(ex.list.unwrap().patterns, Some(vec!["%".to_string()]));
        // Hostile: empty list, literal inside, unterminated, unbalanced.
        for bad in [
            &b"t LIST \"\" ()\r\n"[..],
            b"t LIST \"\" (a {3}\r\n",
            b"t LIST \"\" (\"a)\r\n",
            b"t LIST \"\" (a\r\n",
            b"t LIST \"\" ((a))\r\n",
        ] {
            assert!(extract_extras(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn strings_and_dates() {
        let mut out = vec![];
        write_string(&mut out, b"a \"q\"");
        assert_eq!(out, b"\"a \\\"q\\\"\"");
        out.clear();
        write_string(&mut out, "caf\u{e9}".as_bytes());
        assert_eq!(out, b"{5}\r\ncaf\xc3\xa9");
        out.clear();
        write_internal_date(&mut out, 1_700_000_000);
        assert_eq!(out, b"\"14-Nov-2023 22:13:20 +0000\"");
        assert_eq!(days_from_iso("1970-01-02"), Some(1));
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
    }

    #[test]
    fn modified_utf7() {
        assert_eq!(mutf7_encode("Entw\u{fc}rfe"), "Entw&APw-rfe");
        assert_eq!(mutf7_decode("Entw&APw-rfe").unwrap(), "Entw\u{fc}rfe");
        assert_eq!(mutf7_encode("A&B"), "A&-B");
        assert_eq!(mutf7_decode("A&-B").unwrap(), "A&B");
        // RFC 3501 example: ~peter/mail/台北/日本語
        assert_eq!(
            mutf7_encode("~peter/mail/\u{53f0}\u{5317}/\u{65e5}\u{672c}\u{8a9e}"),
            "~peter/mail/&U,BTFw-/&ZeVnLIqe-"
        );
        assert_eq!(
            mutf7_decode("~peter/mail/&U,BTFw-/&ZeVnLIqe-").unwrap(),
            "~peter/mail/\u{53f0}\u{5317}/\u{65e5}\u{672c}\u{8a9e}"
        );
        assert_eq!(mutf7_decode("&Jjo-!").unwrap(), "\u{263a}!");
        assert_eq!(mutf7_encode("\u{1f600}"), "&2D3eAA-");
        assert_eq!(mutf7_decode("&2D3eAA-").unwrap(), "\u{1f600}");
        assert!(mutf7_decode("&unterminated").is_none());
        assert!(mutf7_decode("&*-").is_none());
    }

    #[test]
    fn modified_utf7_must_be_canonical() {
        for bad in [
            "caf\u{e9}",  // 8-bit: IMAP4rev1 names are 7-bit
            "a\tb",       // control character
            "A&B",        // a bare '&'
            "&AGE-",      // "a", which must be written as itself
            "&AOk-&AOk-", // two shifts in a row: "&AOkA6Q-"
            "&AOl-",      // non-zero padding bits
            "&AO-",       // a partial UTF-16 unit
            "&2D0-",      // an unpaired high surrogate
            "&3gA-",      // an unpaired low surrogate
            "&AOk",       // unterminated
        ] {
            assert_eq!(mutf7_decode(bad), None, "{bad:?}");
        }
        for good in [
            "INBOX",
            "A&-B",
            "&AOkA6Q-",
            "Entw&APw-rfe",
            "&2D3eAA-",
            "a b/c",
        ] {
            let decoded = mutf7_decode(good).unwrap();
            assert_eq!(mutf7_encode(&decoded), good);
        }
    }

    #[test]
    fn body_base64_is_lenient_about_line_breaks() {
        assert_eq!(
            base64_decode(b"AGFsaWNl\r\nAHNlY3JldA==\r\n").unwrap(),
            b"\0alice\0secret"
        );
        assert!(base64_decode(b"a*b").is_none());
    }

    #[test]
    fn quoted_printable_follows_rfc2045() {
        assert_eq!(qp_decode(b"Caf=E9=\r\n au"), b"Caf\xe9 au");
        // Trailing whitespace on a line is transport padding, never data.
        assert_eq!(qp_decode(b"one  \r\ntwo\t\r\nend \t"), b"one\r\ntwo\r\nend");
        // `=` followed by whitespace before the line end is still a soft break.
        assert_eq!(qp_decode(b"soft= \t\r\nbreak=  \nhere"), b"softbreakhere");
        // Encoded whitespace survives; a bare LF keeps its form.
        assert_eq!(qp_decode(b"keep=20\nx=09"), b"keep \nx\t");
        // Hostile: `=` at the very end, `=` with non-hex digits, lone CR, lowercase hex.
        assert_eq!(qp_decode(b"end="), b"end");
        assert_eq!(qp_decode(b"a=G1=\rb=e9"), b"a=G1=\rb\xe9");
        assert_eq!(qp_decode(b"="), b"");
        assert_eq!(qp_decode(b"\r\n\r\n"), b"\r\n\r\n");
        assert_eq!(qp_decode(b""), b"");
    }
}
