//! The outbound queue's durable half: its records, its log and its in-memory index.
//!
//! Each shard keeps a second log beside its mailbox log, `queue-<N>.log`, written by the same
//! log-writer thread, so a delivery with local and remote recipients commits its mailbox copies
//! and its queue entry in the same batch (one group commit per shard). The queue log holds two
//! kinds of records:
//!
//! * [`QueueRecord::Message`]: a queued message with the full state of every recipient and the
//!   message bytes (last, so their file range is known, as for mailbox appends). It is written
//!   when the message is accepted, and again — a *copy forward* — when its segment is reclaimed
//!   while the message is still waiting (see below); a later copy replaces an earlier one.
//! * [`QueueRecord::Update`]: new states of some recipients of one message (delivered, deferred
//!   with the next attempt and the last reply, failed), a hold/release, or the removal of the
//!   message. A message whose recipients are all final (delivered or failed) leaves the index.
//!
//! There is no checkpoint: the index is rebuilt at start-up by replaying the queue segments that
//! still exist, which stay few because spent segments are reclaimed:
//!
//! * The *home* of a message is the segment of its latest `Message` record. Updates are always
//!   written after their message's record, so they sit in its home or a later segment.
//! * A sealed segment is deleted once no live message has its home there **and** every older
//!   segment is gone (so an update of a still-live older message is never lost with it).
//! * A sealed head segment that holds only a few live messages (long-deferred mail) has them
//!   copied forward into the tail, fsynced, and then the segment is deleted.
//!
//! Replay ignores updates of messages it does not know (their message was finished and its
//! segment reclaimed) and lets a later `Message` record of an id replace the earlier one.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;

use super::index::{BodyInfo, BodyLoc};
use super::record::{
    Dec, DecodeError, Enc, HEADER_LEN, LogRecord, MessageBytes, record_crc, seal_frame,
};

const KIND_QUEUE_MESSAGE: u8 = 32;
const KIND_QUEUE_UPDATE: u8 = 33;

/// RFC 3461 `NOTIFY`, as a bit set. Empty means the client did not say, which RFC 3461 §4.1
/// treats as `FAILURE` (and, at the MTA's discretion, `DELAY`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Notify(pub u8);

impl Notify {
    pub const NEVER: u8 = 1;
    pub const SUCCESS: u8 = 2;
    pub const FAILURE: u8 = 4;
    pub const DELAY: u8 = 8;

    pub fn is_given(self) -> bool {
        self.0 != 0
    }
    pub fn on_success(self) -> bool {
        self.0 & Self::SUCCESS != 0
    }
    pub fn on_failure(self) -> bool {
        !self.is_given() || self.0 & Self::FAILURE != 0
    }
    pub fn on_delay(self) -> bool {
        !self.is_given() || self.0 & Self::DELAY != 0
    }
    /// The `NOTIFY=` value to pass on to the next hop, if the client gave one.
    pub fn param(self) -> Option<String> {
        if !self.is_given() {
            return None;
        }
        if self.0 & Self::NEVER != 0 {
            return Some("NEVER".into());
        }
        let mut parts = Vec::new();
        for (bit, name) in [
            (Self::SUCCESS, "SUCCESS"),
            (Self::FAILURE, "FAILURE"),
            (Self::DELAY, "DELAY"),
        ] {
            if self.0 & bit != 0 {
                parts.push(name);
            }
        }
        Some(parts.join(","))
    }
}

/// RFC 3461 `RET`: how much of the original a failure report returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ret {
    Full,
    Headers,
}

/// Where one recipient of a queued message stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecipientState {
    /// Not tried yet.
    Pending,
    /// Tried and refused temporarily; tried again at `next_attempt`.
    Deferred,
    /// Accepted by the next hop (final).
    Delivered,
    /// Refused permanently or expired; a failure report went to the sender if wanted (final).
    Failed,
}

impl RecipientState {
    pub fn is_final(self) -> bool {
        matches!(self, RecipientState::Delivered | RecipientState::Failed)
    }
    pub fn name(self) -> &'static str {
        match self {
            RecipientState::Pending => "pending",
            RecipientState::Deferred => "deferred",
            RecipientState::Delivered => "delivered",
            RecipientState::Failed => "failed",
        }
    }
    fn code(self) -> u8 {
        match self {
            RecipientState::Pending => 0,
            RecipientState::Deferred => 1,
            RecipientState::Delivered => 2,
            RecipientState::Failed => 3,
        }
    }
    fn from_code(c: u8) -> Result<Self, DecodeError> {
        Ok(match c {
            0 => RecipientState::Pending,
            1 => RecipientState::Deferred,
            2 => RecipientState::Delivered,
            3 => RecipientState::Failed,
            _ => return Err(DecodeError::Malformed("recipient state")),
        })
    }
}

/// The changing part of a recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecipientStatus {
    pub state: RecipientState,
    /// Delivery attempts made.
    pub attempts: u32,
    /// Unix seconds of the next attempt (0: as soon as possible).
    pub next_attempt: i64,
    /// The last reply of the next hop, or why the attempt failed, as a log line can quote it.
    pub last_reply: String,
    /// A delay report (RFC 3464 `Action: delayed`) went out already.
    pub delay_warned: bool,
}

impl Default for RecipientStatus {
    fn default() -> Self {
        RecipientStatus {
            state: RecipientState::Pending,
            attempts: 0,
            next_attempt: 0,
            last_reply: String::new(),
            delay_warned: false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedRecipient {
    /// The address to deliver to (RCPT TO as received).
    pub address: String,
    /// RFC 3461 `ORCPT`, xtext as received (`rfc822;bob@example.org`).
    pub orcpt: Option<String>,
    pub notify: Notify,
    pub status: RecipientStatus,
}

impl QueuedRecipient {
    pub fn new(address: impl Into<String>) -> Self {
        QueuedRecipient {
            address: address.into(),
            orcpt: None,
            notify: Notify::default(),
            status: RecipientStatus::default(),
        }
    }
}

/// What a queued message carries besides its recipients.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueuedEnvelope {
    /// Reverse path; `""` for the null sender (never bounced).
    pub mail_from: String,
    pub ret: Option<Ret>,
    /// RFC 3461 `ENVID`, xtext as received.
    pub envid: Option<String>,
    /// The envelope has non-ASCII addresses: the next hop must offer SMTPUTF8.
    pub smtputf8: bool,
    /// The content has 8-bit octets (`BODY=8BITMIME`).
    pub eight_bit: bool,
}

/// A message to put in the queue.
#[derive(Clone, Debug)]
pub struct NewQueuedMessage {
    /// The queue id (also in the `250` reply and in every log line of the message).
    pub id: String,
    /// Unix seconds when it was accepted; the queue lifetime counts from here.
    pub created: i64,
    pub envelope: QueuedEnvelope,
    pub recipients: Vec<QueuedRecipient>,
    pub bytes: MessageBytes,
}

/// A queued message as the index knows it (no message bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedMessage {
    pub id: String,
    pub created: i64,
    pub envelope: QueuedEnvelope,
    pub recipients: Vec<QueuedRecipient>,
    /// Put on hold by the operator: not tried until released.
    pub held: bool,
    /// Octets of the stored message.
    pub size: u32,
}

impl QueuedMessage {
    /// Every recipient delivered or failed.
    pub fn is_finished(&self) -> bool {
        self.recipients.iter().all(|r| r.status.state.is_final())
    }
    /// The earliest next attempt among unfinished recipients.
    pub fn next_attempt(&self) -> Option<i64> {
        self.recipients
            .iter()
            .filter(|r| !r.status.state.is_final())
            .map(|r| r.status.next_attempt)
            .min()
    }
}

/// A change to one queued message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueUpdate {
    pub id: String,
    /// (recipient index, its new status).
    pub recipients: Vec<(u32, RecipientStatus)>,
    /// Hold (`Some(true)`) or release (`Some(false)`).
    pub held: Option<bool>,
    /// Drop the message from the queue (operator's `queue remove`).
    pub remove: bool,
}

/// What the queue's subscribers (the delivery schedulers) hear after a commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueueEvent {
    /// The message was enqueued or changed; read it again.
    Changed(String),
    /// The message left the queue (finished or removed).
    Gone(String),
    /// The operator asked for every waiting message to be tried now (`queue flush`).
    Flush,
}

/// A record of the queue log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueueRecord {
    Message {
        message: QueuedMessage,
        bytes: MessageBytes,
    },
    Update(QueueUpdate),
}

impl QueueRecord {
    fn encode_recipient_status(e: &mut Enc<'_>, s: &RecipientStatus) {
        e.u8(s.state.code());
        e.u32(s.attempts);
        e.i64(s.next_attempt);
        e.str(&s.last_reply);
        e.u8(s.delay_warned as u8);
    }

    fn decode_recipient_status(d: &mut Dec<'_>) -> Result<RecipientStatus, DecodeError> {
        Ok(RecipientStatus {
            state: RecipientState::from_code(d.u8()?)?,
            attempts: d.u32()?,
            next_attempt: d.i64()?,
            last_reply: d.string()?,
            delay_warned: d.bool()?,
        })
    }

    fn opt_str(e: &mut Enc<'_>, s: &Option<String>) {
        match s {
            None => e.u8(0),
            Some(v) => {
                e.u8(1);
                e.str(v);
            }
        }
    }

    fn dec_opt_str(d: &mut Dec<'_>) -> Result<Option<String>, DecodeError> {
        Ok(match d.u8()? {
            0 => None,
            1 => Some(d.string()?),
            _ => return Err(DecodeError::Malformed("option")),
        })
    }

    /// Appends the encoded record to `out`; returns the offset of the message bytes relative to
    /// the record start (only meaningful for `Message`).
    pub fn encode(&self, out: &mut Vec<u8>) -> usize {
        let start = out.len();
        out.extend_from_slice(&[0u8; HEADER_LEN]);
        let mut body_at = 0;
        let kind;
        {
            let mut e = Enc(out);
            match self {
                QueueRecord::Message { message, bytes } => {
                    kind = KIND_QUEUE_MESSAGE;
                    e.str(&message.id);
                    e.i64(message.created);
                    e.u8(message.held as u8);
                    let env = &message.envelope;
                    e.str(&env.mail_from);
                    e.u8(match env.ret {
                        None => 0,
                        Some(Ret::Full) => 1,
                        Some(Ret::Headers) => 2,
                    });
                    Self::opt_str(&mut e, &env.envid);
                    e.u8(env.smtputf8 as u8);
                    e.u8(env.eight_bit as u8);
                    e.u32(message.recipients.len() as u32);
                    for r in &message.recipients {
                        e.str(&r.address);
                        Self::opt_str(&mut e, &r.orcpt);
                        e.u8(r.notify.0);
                        Self::encode_recipient_status(&mut e, &r.status);
                    }
                    e.u32(bytes.len() as u32);
                    body_at = e.0.len() - start;
                    bytes.write_to(e.0);
                }
                QueueRecord::Update(u) => {
                    kind = KIND_QUEUE_UPDATE;
                    e.str(&u.id);
                    e.u8(match u.held {
                        None => 0,
                        Some(true) => 1,
                        Some(false) => 2,
                    });
                    e.u8(u.remove as u8);
                    e.u32(u.recipients.len() as u32);
                    for (i, s) in &u.recipients {
                        e.u32(*i);
                        Self::encode_recipient_status(&mut e, s);
                    }
                }
            }
        }
        seal_frame(out, start, kind);
        body_at
    }

    /// Exact size of the encoded record, header included.
    pub fn encoded_len(&self) -> usize {
        let s = |x: &str| 4 + x.len();
        let opt = |x: &Option<String>| 1 + x.as_deref().map_or(0, s);
        let status = |st: &RecipientStatus| 1 + 4 + 8 + s(&st.last_reply) + 1;
        HEADER_LEN
            + match self {
                QueueRecord::Message { message, bytes } => {
                    let env = &message.envelope;
                    s(&message.id)
                        + 8
                        + 1
                        + s(&env.mail_from)
                        + 1
                        + opt(&env.envid)
                        + 2
                        + 4
                        + message
                            .recipients
                            .iter()
                            .map(|r| s(&r.address) + opt(&r.orcpt) + 1 + status(&r.status))
                            .sum::<usize>()
                        + 4
                        + bytes.len()
                }
                QueueRecord::Update(u) => {
                    s(&u.id)
                        + 1
                        + 1
                        + 4
                        + u.recipients
                            .iter()
                            .map(|(_, st)| 4 + status(st))
                            .sum::<usize>()
                }
            }
    }
}

impl LogRecord for QueueRecord {
    const KINDS: &'static [u8] = &[KIND_QUEUE_MESSAGE, KIND_QUEUE_UPDATE];
    fn decode_payload(kind: u8, crc: u32, payload: &[u8]) -> Result<(Self, usize), DecodeError> {
        if record_crc(kind, payload) != crc {
            return Err(DecodeError::BadCrc);
        }
        let mut d = Dec::new(payload);
        let mut body_at = 0;
        let rec = match kind {
            KIND_QUEUE_MESSAGE => {
                let id = d.string()?;
                let created = d.i64()?;
                let held = d.bool()?;
                let mail_from = d.string()?;
                let ret = match d.u8()? {
                    0 => None,
                    1 => Some(Ret::Full),
                    2 => Some(Ret::Headers),
                    _ => return Err(DecodeError::Malformed("ret")),
                };
                let envid = Self::dec_opt_str(&mut d)?;
                let smtputf8 = d.bool()?;
                let eight_bit = d.bool()?;
                let n = d.u32()? as usize;
                let mut recipients = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    recipients.push(QueuedRecipient {
                        address: d.string()?,
                        orcpt: Self::dec_opt_str(&mut d)?,
                        notify: Notify(d.u8()?),
                        status: Self::decode_recipient_status(&mut d)?,
                    });
                }
                let len = d.u32()? as usize;
                body_at = d.position();
                if payload.len() - body_at != len {
                    return Err(DecodeError::Malformed("queued message length"));
                }
                let bytes = MessageBytes::from(Bytes::copy_from_slice(&payload[body_at..]));
                d.skip_to_end();
                QueueRecord::Message {
                    message: QueuedMessage {
                        id,
                        created,
                        envelope: QueuedEnvelope {
                            mail_from,
                            ret,
                            envid,
                            smtputf8,
                            eight_bit,
                        },
                        recipients,
                        held,
                        size: len as u32,
                    },
                    bytes,
                }
            }
            KIND_QUEUE_UPDATE => {
                let id = d.string()?;
                let held = match d.u8()? {
                    0 => None,
                    1 => Some(true),
                    2 => Some(false),
                    _ => return Err(DecodeError::Malformed("hold")),
                };
                let remove = d.bool()?;
                let n = d.u32()? as usize;
                let mut recipients = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    let i = d.u32()?;
                    recipients.push((i, Self::decode_recipient_status(&mut d)?));
                }
                QueueRecord::Update(QueueUpdate {
                    id,
                    recipients,
                    held,
                    remove,
                })
            }
            _ => return Err(DecodeError::Malformed("unknown queue record kind")),
        };
        if !d.is_empty() {
            return Err(DecodeError::Malformed("trailing bytes"));
        }
        Ok((rec, body_at))
    }

    fn message(&self) -> Option<&MessageBytes> {
        match self {
            QueueRecord::Message { bytes, .. } => Some(bytes),
            QueueRecord::Update(_) => None,
        }
    }
}

/// A live queue entry.
#[derive(Clone, Debug)]
pub struct QueueEntry {
    pub message: QueuedMessage,
    /// Where the message bytes are; its segment is the entry's home.
    pub loc: BodyLoc,
}

/// Live messages and their octets per queue segment (by home).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SegmentUse {
    pub messages: u32,
    pub bytes: u64,
}

/// The queue of one shard in memory: a fold over its queue log, like [`super::index::ShardIndex`].
#[derive(Clone, Debug, Default)]
pub struct QueueIndex {
    pub entries: HashMap<String, QueueEntry>,
    /// Use of every queue segment that is home to a live message.
    pub live: BTreeMap<u32, SegmentUse>,
}

impl QueueIndex {
    fn add_live(&mut self, loc: BodyLoc) {
        let u = self.live.entry(loc.segment).or_default();
        u.messages += 1;
        u.bytes += u64::from(loc.len);
    }

    fn drop_live(&mut self, loc: BodyLoc) {
        if let Some(u) = self.live.get_mut(&loc.segment) {
            u.messages = u.messages.saturating_sub(1);
            u.bytes = u.bytes.saturating_sub(u64::from(loc.len));
            if u.messages == 0 {
                self.live.remove(&loc.segment);
            }
        }
    }

    fn remove(&mut self, id: &str) {
        if let Some(e) = self.entries.remove(id) {
            self.drop_live(e.loc);
        }
    }

    /// Checks an update against the current state without applying it.
    pub fn check(&self, u: &QueueUpdate) -> Result<(), &'static str> {
        let e = self
            .entries
            .get(&u.id)
            .ok_or("no such message in the queue")?;
        if u.recipients
            .iter()
            .any(|(i, _)| *i as usize >= e.message.recipients.len())
        {
            return Err("recipient index out of range");
        }
        Ok(())
    }

    /// Folds one record in. Returns whether the message is still in the queue afterwards.
    /// An update of an unknown message is ignored (it finished and its segment was reclaimed).
    pub fn apply(&mut self, rec: &QueueRecord, body: Option<BodyInfo>) -> Result<bool, String> {
        match rec {
            QueueRecord::Message { message, .. } => {
                let loc = body.ok_or("queued message without location")?.loc;
                self.remove(&message.id);
                if message.is_finished() {
                    return Ok(false);
                }
                self.add_live(loc);
                self.entries.insert(
                    message.id.clone(),
                    QueueEntry {
                        message: message.clone(),
                        loc,
                    },
                );
                Ok(true)
            }
            QueueRecord::Update(u) => {
                if u.remove {
                    self.remove(&u.id);
                    return Ok(false);
                }
                let Some(e) = self.entries.get_mut(&u.id) else {
                    return Ok(false);
                };
                for (i, status) in &u.recipients {
                    let r = e
                        .message
                        .recipients
                        .get_mut(*i as usize)
                        .ok_or_else(|| format!("queue {}: recipient {i} out of range", u.id))?;
                    r.status = status.clone();
                }
                if let Some(h) = u.held {
                    e.message.held = h;
                }
                if e.message.is_finished() {
                    self.remove(&u.id);
                    return Ok(false);
                }
                Ok(true)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::record::decode_header;

    fn message(id: &str, n: usize) -> QueuedMessage {
        QueuedMessage {
            id: id.into(),
            created: 1_700_000_000,
            envelope: QueuedEnvelope {
                mail_from: "a@example.test".into(),
                ret: Some(Ret::Headers),
                envid: Some("env+2B1".into()),
                smtputf8: false,
                eight_bit: true,
            },
            recipients: (0..n)
                .map(|i| QueuedRecipient {
                    address: format!("r{i}@example.net"),
                    orcpt: (i == 0).then(|| "rfc822;r0@example.net".to_string()),
                    notify: Notify(Notify::FAILURE | Notify::DELAY),
                    status: RecipientStatus::default(),
                })
                .collect(),
            held: false,
            size: 0,
        }
    }

    fn decode(buf: &[u8]) -> (QueueRecord, usize, usize) {
        let h: &[u8; HEADER_LEN] = buf[..HEADER_LEN].try_into().unwrap();
        let (len, kind, crc) = decode_header(h).unwrap();
        let end = HEADER_LEN + len as usize;
        let (rec, at) = QueueRecord::decode_payload(kind, crc, &buf[HEADER_LEN..end]).unwrap();
        (rec, at, end)
    }

    #[test]
    fn queue_records_round_trip() {
        let bytes = MessageBytes::new(
            b"DKIM-Signature: x\r\n".to_vec(),
            Bytes::from_static(b"Subject: s\r\n\r\nbody\r\n"),
        );
        let mut m = message("Q1", 3);
        m.size = bytes.len() as u32;
        let recs = vec![
            QueueRecord::Message {
                message: m.clone(),
                bytes: bytes.clone(),
            },
            QueueRecord::Update(QueueUpdate {
                id: "Q1".into(),
                recipients: vec![(
                    2,
                    RecipientStatus {
                        state: RecipientState::Deferred,
                        attempts: 3,
                        next_attempt: 1_700_000_600,
                        last_reply: "451 4.3.0 try later".into(),
                        delay_warned: true,
                    },
                )],
                held: Some(true),
                remove: false,
            }),
        ];
        let mut buf = Vec::new();
        let mut ats = Vec::new();
        for r in &recs {
            let start = buf.len();
            ats.push(start + r.encode(&mut buf));
            assert_eq!(buf.len() - start, r.encoded_len(), "{r:?}");
        }
        let (first, at, end) = decode(&buf);
        assert_eq!(&buf[ats[0]..ats[0] + bytes.len()], &bytes.to_vec()[..]);
        assert_eq!(at, ats[0] - HEADER_LEN);
        match &first {
            QueueRecord::Message { message, bytes: b } => {
                assert_eq!(message, &m);
                assert_eq!(b.to_vec(), bytes.to_vec());
            }
            other => panic!("{other:?}"),
        }
        let (second, _, end2) = decode(&buf[end..]);
        assert_eq!(second, recs[1]);
        assert_eq!(end + end2, buf.len());
        // A flipped byte anywhere in the payload is caught by the CRC.
        for i in HEADER_LEN..end {
            let mut bad = buf[..end].to_vec();
            bad[i] ^= 0x20;
            let h: &[u8; HEADER_LEN] = bad[..HEADER_LEN].try_into().unwrap();
            let (_, kind, crc) = decode_header(h).unwrap();
            assert!(QueueRecord::decode_payload(kind, crc, &bad[HEADER_LEN..]).is_err());
        }
    }

    #[test]
    fn queue_garbage_with_valid_crc_is_malformed_not_a_panic() {
        for kind in [KIND_QUEUE_MESSAGE, KIND_QUEUE_UPDATE, 99] {
            for len in [0usize, 1, 7, 40] {
                let payload = vec![0xffu8; len];
                let crc = record_crc(kind, &payload);
                assert!(QueueRecord::decode_payload(kind, crc, &payload).is_err());
            }
        }
    }

    fn loc(segment: u32, len: u32) -> Option<BodyInfo> {
        Some(BodyInfo {
            loc: BodyLoc {
                segment,
                offset: 0,
                len,
            },
            needs_dot_stuffing: false,
        })
    }

    fn status(state: RecipientState) -> RecipientStatus {
        RecipientStatus {
            state,
            ..Default::default()
        }
    }

    #[test]
    fn index_tracks_live_messages_per_segment() {
        let mut ix = QueueIndex::default();
        let rec = |m: QueuedMessage| QueueRecord::Message {
            message: m,
            bytes: MessageBytes::default(),
        };
        assert!(ix.apply(&rec(message("A", 2)), loc(0, 100)).unwrap());
        assert!(ix.apply(&rec(message("B", 1)), loc(0, 50)).unwrap());
        assert_eq!(
            ix.live[&0],
            SegmentUse {
                messages: 2,
                bytes: 150
            }
        );
        // One of A's recipients is delivered: A stays.
        let up = |id: &str, i, s| {
            QueueRecord::Update(QueueUpdate {
                id: id.into(),
                recipients: vec![(i, status(s))],
                ..Default::default()
            })
        };
        assert!(
            ix.apply(&up("A", 0, RecipientState::Delivered), None)
                .unwrap()
        );
        // B's only recipient failed: B leaves, segment 0 keeps A.
        assert!(!ix.apply(&up("B", 0, RecipientState::Failed), None).unwrap());
        assert_eq!(
            ix.live[&0],
            SegmentUse {
                messages: 1,
                bytes: 100
            }
        );
        // A copied forward to segment 3 moves its home.
        let mut a = ix.entries["A"].message.clone();
        a.held = true;
        assert!(ix.apply(&rec(a), loc(3, 100)).unwrap());
        assert!(!ix.live.contains_key(&0));
        assert_eq!(ix.live[&3].messages, 1);
        assert!(ix.entries["A"].message.held);
        // Updates of unknown messages are ignored; bad indexes are errors.
        assert!(
            !ix.apply(&up("gone", 0, RecipientState::Delivered), None)
                .unwrap()
        );
        assert!(
            ix.apply(&up("A", 9, RecipientState::Delivered), None)
                .is_err()
        );
        assert!(
            ix.check(&QueueUpdate {
                id: "A".into(),
                recipients: vec![(9, status(RecipientState::Failed))],
                ..Default::default()
            })
            .is_err()
        );
        // Removal.
        let rm = QueueRecord::Update(QueueUpdate {
            id: "A".into(),
            remove: true,
            ..Default::default()
        });
        assert!(!ix.apply(&rm, None).unwrap());
        assert!(ix.entries.is_empty() && ix.live.is_empty());
    }

    #[test]
    fn notify_semantics() {
        let unset = Notify::default();
        assert!(unset.on_failure() && unset.on_delay() && !unset.on_success());
        assert_eq!(unset.param(), None);
        let never = Notify(Notify::NEVER);
        assert!(!never.on_failure() && !never.on_delay() && !never.on_success());
        assert_eq!(never.param().as_deref(), Some("NEVER"));
        let s = Notify(Notify::SUCCESS | Notify::DELAY);
        assert!(!s.on_failure() && s.on_delay() && s.on_success());
        assert_eq!(s.param().as_deref(), Some("SUCCESS,DELAY"));
    }
}
