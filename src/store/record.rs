//! On-disk record format: `[len u32 LE][kind u8][crc32c u32 LE of kind+payload][payload]`.
//!
//! `len` is the payload length only, so a reader can skip a record without understanding it.
//! A message body is always the *last* field of a `MessageAppend` payload, so its file range is
//! `record_start + HEADER_LEN + len - body_len .. record_start + HEADER_LEN + len`, which is what
//! the index stores for zero-copy reads.

use bytes::Bytes;

use super::{EmailId, Flags, SpecialUse, SystemFlags};

pub const HEADER_LEN: usize = 9;
/// Upper bound on one record's payload. A length field above it can only be garbage (torn or
/// corrupted header), so we reject it before trying to allocate that much.
pub const MAX_PAYLOAD: u32 = 256 * 1024 * 1024;

const KIND_MAILBOX_CREATE: u8 = 1;
const KIND_MAILBOX_DELETE: u8 = 2;
const KIND_MAILBOX_RENAME: u8 = 3;
const KIND_SUBSCRIBE: u8 = 4;
const KIND_UNSUBSCRIBE: u8 = 5;
const KIND_MESSAGE_APPEND: u8 = 6;
const KIND_FLAGS_SET: u8 = 7;
const KIND_EXPUNGE: u8 = 8;
const KIND_SHARD_STATE: u8 = 9;
const KIND_SUBSCRIPTION: u8 = 10;
/// A `MessageAppend` with its [`AppendOrigin`] (OBJECTID/SAVEDATE). Kind 6 stays readable: logs
/// written before the origin existed replay as `origin: None`.
const KIND_MESSAGE_APPEND_ORIGIN: u8 = 11;

/// True for the kind bytes of `MessageAppend` frames: compaction streams large ones without
/// decoding them whole.
pub fn is_append_kind(kind: u8) -> bool {
    kind == KIND_MESSAGE_APPEND || kind == KIND_MESSAGE_APPEND_ORIGIN
}

/// Where a message came from and when it was saved into its mailbox. Written with every append
/// since RFC 8474/8514 support; a COPY or MOVE carries the source's `email_id` along, so the
/// EMAILID survives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendOrigin {
    pub email_id: EmailId,
    /// Unix seconds of the delivery, APPEND, COPY or MOVE that put the message here.
    pub saved: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    MailboxCreate {
        account: String,
        mailbox: u64,
        name: String,
        uidvalidity: u32,
        special_use: Option<SpecialUse>,
        subscribed: bool,
    },
    MailboxDelete {
        account: String,
        mailbox: u64,
    },
    MailboxRename {
        account: String,
        mailbox: u64,
        new_name: String,
    },
    Subscribe {
        account: String,
        mailbox: u64,
        subscribed: bool,
    },
    /// A subscription to a name that has no mailbox (RFC 9051 §6.3.9: it survives DELETE, and
    /// a client may subscribe before the mailbox exists). Subscriptions of existing mailboxes
    /// stay `Subscribe` records; replay turns this one into the mailbox's flag if a mailbox of
    /// that name exists or is created later.
    Subscription {
        account: String,
        name: String,
        subscribed: bool,
    },
    MessageAppend {
        account: String,
        mailbox: u64,
        uid: u32,
        modseq: u64,
        internal_date: i64,
        flags: Flags,
        /// `None` only for records written before origins existed.
        origin: Option<AppendOrigin>,
        body: MessageBytes,
    },
    FlagsSet {
        account: String,
        mailbox: u64,
        uid: u32,
        flags: Flags,
        modseq: u64,
    },
    Expunge {
        account: String,
        mailbox: u64,
        uid: u32,
        modseq: u64,
    },
    /// Written only by compaction (see `compact`): shard-wide counters that records it dropped
    /// had raised, so a replay never hands out a mailbox id or a UIDVALIDITY twice. Replay
    /// raises the index's counters to at least these values.
    ShardState {
        next_mailbox_id: u64,
        last_uidvalidity: u32,
    },
}

#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes than the header or the announced payload: a torn write at the tail.
    Truncated,
    /// Length field above [`MAX_PAYLOAD`].
    TooLarge(u32),
    BadCrc,
    /// CRC matched but the payload does not parse (unknown kind, bad field).
    Malformed(&'static str),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Truncated => f.write_str("truncated record"),
            DecodeError::TooLarge(n) => write!(f, "record length {n} too large"),
            DecodeError::BadCrc => f.write_str("record crc mismatch"),
            DecodeError::Malformed(why) => write!(f, "malformed record: {why}"),
        }
    }
}

/// The stored bytes of one message: a per-copy prefix (trace headers such as `Return-Path`,
/// `Delivered-To` or a `DKIM-Signature`) and a body that many copies share. They are written
/// contiguously, so on disk and to readers they are one message; only the writer sees the split,
/// which lets a delivery to N accounts hold the body once instead of N times.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessageBytes {
    pub prefix: Vec<u8>,
    pub body: Bytes,
}

impl MessageBytes {
    pub fn new(prefix: Vec<u8>, body: Bytes) -> Self {
        MessageBytes { prefix, body }
    }

    pub fn len(&self) -> usize {
        self.prefix.len() + self.body.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(&self.body);
    }

    /// The whole message in one buffer.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len());
        self.write_to(&mut v);
        v
    }

    /// True if some line of the whole message starts with '.', looking across the seam.
    pub fn needs_dot_stuffing(&self) -> bool {
        use super::index::needs_dot_stuffing;
        if self.prefix.is_empty() {
            return needs_dot_stuffing(&self.body);
        }
        needs_dot_stuffing(&self.prefix)
            || (self.prefix.ends_with(b"\n") && self.body.first() == Some(&b'.'))
            || memchr::memmem::find(&self.body, b"\n.").is_some()
    }
}

impl From<Vec<u8>> for MessageBytes {
    fn from(v: Vec<u8>) -> Self {
        MessageBytes {
            prefix: Vec::new(),
            body: Bytes::from(v),
        }
    }
}

impl From<Bytes> for MessageBytes {
    fn from(body: Bytes) -> Self {
        MessageBytes {
            prefix: Vec::new(),
            body,
        }
    }
}

impl From<&[u8]> for MessageBytes {
    fn from(v: &[u8]) -> Self {
        Bytes::copy_from_slice(v).into()
    }
}

pub fn special_use_code(s: Option<SpecialUse>) -> u8 {
    match s {
        None => 0,
        Some(SpecialUse::Sent) => 1,
        Some(SpecialUse::Drafts) => 2,
        Some(SpecialUse::Trash) => 3,
        Some(SpecialUse::Junk) => 4,
        Some(SpecialUse::Archive) => 5,
    }
}

pub fn special_use_from(code: u8) -> Result<Option<SpecialUse>, DecodeError> {
    Ok(match code {
        0 => None,
        1 => Some(SpecialUse::Sent),
        2 => Some(SpecialUse::Drafts),
        3 => Some(SpecialUse::Trash),
        4 => Some(SpecialUse::Junk),
        5 => Some(SpecialUse::Archive),
        _ => return Err(DecodeError::Malformed("special-use")),
    })
}

/// Little-endian field writer shared by records and checkpoints.
pub struct Enc<'a>(pub &'a mut Vec<u8>);

impl Enc<'_> {
    pub fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn bytes(&mut self, v: &[u8]) {
        // Callers bound sizes (MAX_PAYLOAD); the cast cannot truncate for valid records.
        self.u32(v.len() as u32);
        self.0.extend_from_slice(v);
    }
    pub fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }
    pub fn flags(&mut self, f: &Flags) {
        self.u8(f.system.0);
        self.u16(f.keywords.len().min(u16::MAX as usize) as u16);
        for k in f.keywords.iter().take(u16::MAX as usize) {
            self.str(k);
        }
    }
}

/// Bounds-checked reader: every accessor fails instead of panicking on short input.
pub struct Dec<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Dec<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Dec { buf, pos: 0 }
    }
    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }
    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.pos
    }
    /// Marks the rest of the input as consumed (a trailing field the caller took whole).
    pub fn skip_to_end(&mut self) {
        self.pos = self.buf.len();
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(DecodeError::Malformed("field past end"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
    pub fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(self.u64()? as i64)
    }
    pub fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    pub fn string(&mut self) -> Result<String, DecodeError> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| DecodeError::Malformed("utf-8"))
    }
    pub fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::Malformed("bool")),
        }
    }
    pub fn flags(&mut self) -> Result<Flags, DecodeError> {
        let system = SystemFlags(self.u8()?);
        let n = self.u16()? as usize;
        let mut keywords = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            keywords.push(self.string()?);
        }
        Ok(Flags { system, keywords })
    }
}

impl Record {
    pub fn account(&self) -> &str {
        match self {
            Record::MailboxCreate { account, .. }
            | Record::MailboxDelete { account, .. }
            | Record::MailboxRename { account, .. }
            | Record::Subscribe { account, .. }
            | Record::Subscription { account, .. }
            | Record::MessageAppend { account, .. }
            | Record::FlagsSet { account, .. }
            | Record::Expunge { account, .. } => account,
            Record::ShardState { .. } => "",
        }
    }

    /// The mailbox the record is about; `None` for shard-wide records.
    pub fn mailbox(&self) -> Option<u64> {
        match self {
            Record::MailboxCreate { mailbox, .. }
            | Record::MailboxDelete { mailbox, .. }
            | Record::MailboxRename { mailbox, .. }
            | Record::Subscribe { mailbox, .. }
            | Record::MessageAppend { mailbox, .. }
            | Record::FlagsSet { mailbox, .. }
            | Record::Expunge { mailbox, .. } => Some(*mailbox),
            Record::ShardState { .. } | Record::Subscription { .. } => None,
        }
    }

    fn kind(&self) -> u8 {
        match self {
            Record::MailboxCreate { .. } => KIND_MAILBOX_CREATE,
            Record::MailboxDelete { .. } => KIND_MAILBOX_DELETE,
            Record::MailboxRename { .. } => KIND_MAILBOX_RENAME,
            Record::Subscribe {
                subscribed: true, ..
            } => KIND_SUBSCRIBE,
            Record::Subscribe {
                subscribed: false, ..
            } => KIND_UNSUBSCRIBE,
            Record::MessageAppend { origin: None, .. } => KIND_MESSAGE_APPEND,
            Record::MessageAppend {
                origin: Some(_), ..
            } => KIND_MESSAGE_APPEND_ORIGIN,
            Record::FlagsSet { .. } => KIND_FLAGS_SET,
            Record::Expunge { .. } => KIND_EXPUNGE,
            Record::ShardState { .. } => KIND_SHARD_STATE,
            Record::Subscription { .. } => KIND_SUBSCRIPTION,
        }
    }

    /// Appends the encoded record to `out`. Returns the offset of the body bytes relative to
    /// the start of the record (only meaningful for `MessageAppend`).
    pub fn encode(&self, out: &mut Vec<u8>) -> usize {
        let start = out.len();
        out.extend_from_slice(&[0u8; HEADER_LEN]);
        let mut body_at = 0;
        {
            let mut e = Enc(out);
            match self {
                Record::MailboxCreate {
                    account,
                    mailbox,
                    name,
                    uidvalidity,
                    special_use,
                    subscribed,
                } => {
                    e.str(account);
                    e.u64(*mailbox);
                    e.str(name);
                    e.u32(*uidvalidity);
                    e.u8(special_use_code(*special_use));
                    e.u8(*subscribed as u8);
                }
                Record::MailboxDelete { account, mailbox } => {
                    e.str(account);
                    e.u64(*mailbox);
                }
                Record::MailboxRename {
                    account,
                    mailbox,
                    new_name,
                } => {
                    e.str(account);
                    e.u64(*mailbox);
                    e.str(new_name);
                }
                Record::Subscribe {
                    account, mailbox, ..
                } => {
                    e.str(account);
                    e.u64(*mailbox);
                }
                Record::Subscription {
                    account,
                    name,
                    subscribed,
                } => {
                    e.str(account);
                    e.str(name);
                    e.u8(*subscribed as u8);
                }
                Record::MessageAppend {
                    account,
                    mailbox,
                    uid,
                    modseq,
                    internal_date,
                    flags,
                    origin,
                    body,
                } => {
                    e.str(account);
                    e.u64(*mailbox);
                    e.u32(*uid);
                    e.u64(*modseq);
                    e.i64(*internal_date);
                    e.flags(flags);
                    if let Some(o) = origin {
                        e.u64(o.email_id.mailbox);
                        e.u32(o.email_id.uid);
                        e.i64(o.saved);
                    }
                    e.u32(body.len() as u32);
                    body_at = e.0.len() - start;
                    body.write_to(e.0);
                }
                Record::FlagsSet {
                    account,
                    mailbox,
                    uid,
                    flags,
                    modseq,
                } => {
                    e.str(account);
                    e.u64(*mailbox);
                    e.u32(*uid);
                    e.flags(flags);
                    e.u64(*modseq);
                }
                Record::Expunge {
                    account,
                    mailbox,
                    uid,
                    modseq,
                } => {
                    e.str(account);
                    e.u64(*mailbox);
                    e.u32(*uid);
                    e.u64(*modseq);
                }
                Record::ShardState {
                    next_mailbox_id,
                    last_uidvalidity,
                } => {
                    e.u64(*next_mailbox_id);
                    e.u32(*last_uidvalidity);
                }
            }
        }
        seal_frame(out, start, self.kind());
        body_at
    }

    pub fn encoded_len(&self) -> usize {
        let s = |x: &str| 4 + x.len();
        let fl = |f: &Flags| 3 + f.keywords.iter().map(|k| s(k)).sum::<usize>();
        HEADER_LEN
            + match self {
                Record::MailboxCreate { account, name, .. } => s(account) + 8 + s(name) + 6,
                Record::MailboxDelete { account, .. } => s(account) + 8,
                Record::MailboxRename {
                    account, new_name, ..
                } => s(account) + 8 + s(new_name),
                Record::Subscribe { account, .. } => s(account) + 8,
                Record::Subscription { account, name, .. } => s(account) + s(name) + 1,
                Record::MessageAppend {
                    account,
                    flags,
                    origin,
                    body,
                    ..
                } => {
                    s(account)
                        + 8
                        + 4
                        + 8
                        + 8
                        + fl(flags)
                        + if origin.is_some() { 8 + 4 + 8 } else { 0 }
                        + 4
                        + body.len()
                }
                Record::FlagsSet { account, flags, .. } => s(account) + 8 + 4 + fl(flags) + 8,
                Record::Expunge { account, .. } => s(account) + 8 + 4 + 8,
                Record::ShardState { .. } => 8 + 4,
            }
    }
}

/// A record type kept in a log of `[len][kind][crc][payload]` frames: the mailbox log holds
/// [`Record`]s, the outbound queue log holds `QueueRecord`s. Replay is written once over this.
pub trait LogRecord: Sized {
    /// Every kind byte this log's records use (a damaged log is searched for intact records
    /// by these).
    const KINDS: &'static [u8];
    /// Checks the CRC and decodes a payload; returns the record and, when it carries a
    /// message, the offset of the message bytes within the payload.
    fn decode_payload(kind: u8, crc: u32, payload: &[u8]) -> Result<(Self, usize), DecodeError>;
    /// The message bytes the record carries, if any.
    fn message(&self) -> Option<&MessageBytes>;
}

impl LogRecord for Record {
    const KINDS: &'static [u8] = &[
        KIND_MAILBOX_CREATE,
        KIND_MAILBOX_DELETE,
        KIND_MAILBOX_RENAME,
        KIND_SUBSCRIBE,
        KIND_UNSUBSCRIBE,
        KIND_MESSAGE_APPEND,
        KIND_MESSAGE_APPEND_ORIGIN,
        KIND_FLAGS_SET,
        KIND_EXPUNGE,
        KIND_SHARD_STATE,
        KIND_SUBSCRIPTION,
    ];
    fn decode_payload(kind: u8, crc: u32, payload: &[u8]) -> Result<(Self, usize), DecodeError> {
        decode_payload(kind, crc, payload)
    }
    fn message(&self) -> Option<&MessageBytes> {
        match self {
            Record::MessageAppend { body, .. } => Some(body),
            _ => None,
        }
    }
}

/// Writes the header of a frame whose payload was appended to `out` from `start + HEADER_LEN`.
pub fn seal_frame(out: &mut [u8], start: usize, kind: u8) {
    let payload_len = (out.len() - start - HEADER_LEN) as u32;
    let crc = record_crc(kind, &out[start + HEADER_LEN..]);
    out[start..start + 4].copy_from_slice(&payload_len.to_le_bytes());
    out[start + 4] = kind;
    out[start + 5..start + 9].copy_from_slice(&crc.to_le_bytes());
}

pub fn record_crc(kind: u8, payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&[kind]), payload)
}

/// Parses a header; `len` is validated against [`MAX_PAYLOAD`] only.
pub fn decode_header(h: &[u8; HEADER_LEN]) -> Result<(u32, u8, u32), DecodeError> {
    let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
    if len > MAX_PAYLOAD {
        return Err(DecodeError::TooLarge(len));
    }
    let crc = u32::from_le_bytes([h[5], h[6], h[7], h[8]]);
    Ok((len, h[4], crc))
}

/// Checks the CRC and decodes a payload. Returns the record and, for `MessageAppend`, the
/// offset of the body within the payload.
pub fn decode_payload(kind: u8, crc: u32, payload: &[u8]) -> Result<(Record, usize), DecodeError> {
    if record_crc(kind, payload) != crc {
        return Err(DecodeError::BadCrc);
    }
    let mut d = Dec::new(payload);
    let mut body_at = 0;
    let rec = match kind {
        KIND_MAILBOX_CREATE => Record::MailboxCreate {
            account: d.string()?,
            mailbox: d.u64()?,
            name: d.string()?,
            uidvalidity: d.u32()?,
            special_use: special_use_from(d.u8()?)?,
            subscribed: d.bool()?,
        },
        KIND_MAILBOX_DELETE => Record::MailboxDelete {
            account: d.string()?,
            mailbox: d.u64()?,
        },
        KIND_MAILBOX_RENAME => Record::MailboxRename {
            account: d.string()?,
            mailbox: d.u64()?,
            new_name: d.string()?,
        },
        KIND_SUBSCRIBE | KIND_UNSUBSCRIBE => Record::Subscribe {
            account: d.string()?,
            mailbox: d.u64()?,
            subscribed: kind == KIND_SUBSCRIBE,
        },
        KIND_SUBSCRIPTION => Record::Subscription {
            account: d.string()?,
            name: d.string()?,
            subscribed: d.bool()?,
        },
        KIND_MESSAGE_APPEND | KIND_MESSAGE_APPEND_ORIGIN => {
            let account = d.string()?;
            let mailbox = d.u64()?;
            let uid = d.u32()?;
            let modseq = d.u64()?;
            let internal_date = d.i64()?;
            let flags = d.flags()?;
            let origin = decode_origin(kind, &mut d)?;
            let n = d.u32()? as usize;
            body_at = d.pos;
            if payload.len() - d.pos != n {
                return Err(DecodeError::Malformed("body length"));
            }
            let body = MessageBytes::from(&payload[d.pos..]);
            d.pos = payload.len();
            Record::MessageAppend {
                account,
                mailbox,
                uid,
                modseq,
                internal_date,
                flags,
                origin,
                body,
            }
        }
        KIND_FLAGS_SET => Record::FlagsSet {
            account: d.string()?,
            mailbox: d.u64()?,
            uid: d.u32()?,
            flags: d.flags()?,
            modseq: d.u64()?,
        },
        KIND_EXPUNGE => Record::Expunge {
            account: d.string()?,
            mailbox: d.u64()?,
            uid: d.u32()?,
            modseq: d.u64()?,
        },
        KIND_SHARD_STATE => Record::ShardState {
            next_mailbox_id: d.u64()?,
            last_uidvalidity: d.u32()?,
        },
        _ => return Err(DecodeError::Malformed("unknown kind")),
    };
    if !d.is_empty() {
        return Err(DecodeError::Malformed("trailing bytes"));
    }
    Ok((rec, body_at))
}

/// The fields of a `MessageAppend` that precede its body, read from the start of its payload
/// without the body and without checking the CRC (the caller streams the rest and checks it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendHead {
    pub account: String,
    pub mailbox: u64,
    pub uid: u32,
    /// Offset of the body within the payload.
    pub body_at: usize,
    pub body_len: u32,
}

fn decode_origin(kind: u8, d: &mut Dec<'_>) -> Result<Option<AppendOrigin>, DecodeError> {
    if kind != KIND_MESSAGE_APPEND_ORIGIN {
        return Ok(None);
    }
    Ok(Some(AppendOrigin {
        email_id: EmailId {
            mailbox: d.u64()?,
            uid: d.u32()?,
        },
        saved: d.i64()?,
    }))
}

pub fn decode_append_head(kind: u8, payload_prefix: &[u8]) -> Result<AppendHead, DecodeError> {
    let mut d = Dec::new(payload_prefix);
    let account = d.string()?;
    let mailbox = d.u64()?;
    let uid = d.u32()?;
    let _modseq = d.u64()?;
    let _internal_date = d.i64()?;
    let _flags = d.flags()?;
    let _origin = decode_origin(kind, &mut d)?;
    let body_len = d.u32()?;
    Ok(AppendHead {
        account,
        mailbox,
        uid,
        body_at: d.pos,
        body_len,
    })
}

/// Decodes one record from the front of `buf`; returns it with the number of bytes consumed.
/// (Replay streams header and payload separately; this slice form is for tools and tests.)
#[cfg_attr(not(test), allow(dead_code))]
pub fn decode(buf: &[u8]) -> Result<(Record, usize), DecodeError> {
    let h: &[u8; HEADER_LEN] = buf
        .get(..HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or(DecodeError::Truncated)?;
    let (len, kind, crc) = decode_header(h)?;
    let end = HEADER_LEN + len as usize;
    let payload = buf.get(HEADER_LEN..end).ok_or(DecodeError::Truncated)?;
    let (rec, _) = decode_payload(kind, crc, payload)?;
    Ok((rec, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Record> {
        vec![
            Record::MailboxCreate {
                account: "alice@example.org".into(),
                mailbox: 7,
                name: "Archive/2024".into(),
                uidvalidity: 1_700_000_000,
                special_use: Some(SpecialUse::Archive),
                subscribed: true,
            },
            Record::MailboxDelete {
                account: "a".into(),
                mailbox: 3,
            },
            Record::MailboxRename {
                account: "a".into(),
                mailbox: 3,
                new_name: "Neu".into(),
            },
            Record::Subscribe {
                account: "a".into(),
                mailbox: 3,
                subscribed: false,
            },
            Record::Subscribe {
                account: "a".into(),
                mailbox: 3,
                subscribed: true,
            },
            Record::MessageAppend {
                account: "bob".into(),
                mailbox: 1,
                uid: 42,
                modseq: 99,
                internal_date: -5,
                flags: Flags {
                    system: SystemFlags(SystemFlags::SEEN | SystemFlags::DRAFT),
                    keywords: vec!["$Junk".into(), "work".into()],
                },
                origin: Some(AppendOrigin {
                    email_id: EmailId { mailbox: 4, uid: 9 },
                    saved: 1_700_000_123,
                }),
                body: b"Subject: hi\r\n\r\nbody\r\n".to_vec().into(),
            },
            Record::FlagsSet {
                account: "bob".into(),
                mailbox: 1,
                uid: 42,
                flags: Flags::default(),
                modseq: 100,
            },
            Record::Expunge {
                account: "bob".into(),
                mailbox: 1,
                uid: 42,
                modseq: 101,
            },
            Record::ShardState {
                next_mailbox_id: 12,
                last_uidvalidity: 1_700_000_001,
            },
            Record::Subscription {
                account: "a".into(),
                name: "Gone/Sub".into(),
                subscribed: true,
            },
            legacy_append(),
        ]
    }

    /// An append as written before origins existed (kind 6).
    fn legacy_append() -> Record {
        Record::MessageAppend {
            account: "bob".into(),
            mailbox: 2,
            uid: 7,
            modseq: 3,
            internal_date: 1_600_000_000,
            flags: Flags::default(),
            origin: None,
            body: b"old\r\n".to_vec().into(),
        }
    }

    #[test]
    fn pre_origin_append_still_decodes() {
        // The exact bytes the previous release wrote, laid out by hand so that a change to
        // `encode` cannot hide a change to what old logs hold.
        let mut payload = Vec::new();
        let mut e = Enc(&mut payload);
        e.str("bob");
        e.u64(2);
        e.u32(7);
        e.u64(3);
        e.i64(1_600_000_000);
        e.flags(&Flags::default());
        e.u32(5);
        payload.extend_from_slice(b"old\r\n");
        let mut frame = Vec::new();
        frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        frame.push(6);
        frame.extend_from_slice(&record_crc(6, &payload).to_le_bytes());
        frame.extend_from_slice(&payload);
        let (rec, n) = decode(&frame).unwrap();
        assert_eq!(n, frame.len());
        assert_eq!(rec, legacy_append());
        let mut again = Vec::new();
        rec.encode(&mut again);
        assert_eq!(again, frame, "an origin-less append keeps its old encoding");
        let head = decode_append_head(6, &payload).unwrap();
        assert_eq!((head.mailbox, head.uid, head.body_len), (2, 7, 5));
    }

    #[test]
    fn record_round_trip() {
        let mut buf = Vec::new();
        for r in samples() {
            let before = buf.len();
            let body_at = r.encode(&mut buf);
            assert_eq!(buf.len() - before, r.encoded_len(), "{r:?}");
            if let Record::MessageAppend { body, .. } = &r {
                assert_eq!(
                    &buf[before + body_at..before + body_at + body.len()],
                    &body.to_vec()[..]
                );
            }
        }
        let mut pos = 0;
        for r in samples() {
            let (got, n) = decode(&buf[pos..]).expect("decode");
            assert_eq!(got, r);
            pos += n;
        }
        assert_eq!(pos, buf.len());
    }

    #[test]
    fn append_head_matches_full_decode() {
        let rec = &samples()[5];
        let mut buf = Vec::new();
        let body_at = rec.encode(&mut buf);
        let payload = &buf[HEADER_LEN..];
        let kind = buf[4];
        assert_eq!(kind, KIND_MESSAGE_APPEND_ORIGIN);
        let head = decode_append_head(kind, payload).unwrap();
        assert_eq!(head.body_at + HEADER_LEN, body_at);
        assert_eq!(
            (head.account.as_str(), head.mailbox, head.uid),
            ("bob", 1, 42)
        );
        assert_eq!(head.body_len as usize, payload.len() - head.body_at);
        // A prefix that stops inside the fields is refused, not misread.
        for cut in [0, 3, 10, head.body_at - 1] {
            assert!(decode_append_head(kind, &payload[..cut]).is_err(), "{cut}");
        }
    }

    #[test]
    fn record_hostile_inputs() {
        let mut buf = Vec::new();
        samples()[5].encode(&mut buf);
        // Truncated header and truncated payload (length past end of input).
        for cut in [0, 1, 5, HEADER_LEN - 1, HEADER_LEN, buf.len() - 1] {
            assert_eq!(
                decode(&buf[..cut]).unwrap_err(),
                DecodeError::Truncated,
                "{cut}"
            );
        }
        // Flipped payload byte.
        let mut bad = buf.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0x40;
        assert_eq!(decode(&bad).unwrap_err(), DecodeError::BadCrc);
        // Flipped kind byte.
        let mut bad = buf.clone();
        bad[4] = 200;
        assert_eq!(decode(&bad).unwrap_err(), DecodeError::BadCrc);
        // Huge length.
        let mut bad = buf.clone();
        bad[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(decode(&bad), Err(DecodeError::TooLarge(_))));
        // Valid CRC over garbage payload of an unknown kind and of a known kind.
        for kind in [
            0u8,
            99,
            KIND_MESSAGE_APPEND,
            KIND_MESSAGE_APPEND_ORIGIN,
            KIND_MAILBOX_CREATE,
        ] {
            let payload = [0xffu8; 13];
            let mut rec = Vec::new();
            rec.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            rec.push(kind);
            rec.extend_from_slice(&record_crc(kind, &payload).to_le_bytes());
            rec.extend_from_slice(&payload);
            assert!(matches!(decode(&rec), Err(DecodeError::Malformed(_))));
        }
        // All-zero bytes (e.g. a preallocated tail) must not decode.
        assert!(decode(&[0u8; 64]).is_err());
    }
}
