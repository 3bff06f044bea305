//! Checkpoints: the shard index (metadata only) plus the log position it covers, so start-up
//! replays only the log written after it.
//!
//! File layout: `b"SURELCP3"`, crc32c u32 LE of the body, body length u64 LE, body. The body
//! starts with the position and the length of every *sealed* segment (those before the
//! position's segment) at the time of writing.
//!
//! A checkpoint is only an accelerator: if it is missing, unreadable or fails its CRC we fall
//! back to a full replay, which is always correct because the log alone rebuilds the index
//! (compaction rewrites sealed segments so that this stays true, see `compact`). Compaction
//! moves message bodies to other offsets, so a checkpoint taken before it would point into the
//! wrong bytes: recovery therefore uses a checkpoint only if the sealed segments on disk are
//! exactly the ones it lists, with the same lengths. A compacted segment is always strictly
//! shorter than the file it replaced (or gone), so a length names one version of a segment.
//! (Version 1 files, which had no segment list, version 2 files, which had no subscriptions
//! without mailbox, and version 3 files, which had no EMAILID and save time per message, are
//! ignored: one full replay after upgrading.)

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Write;
use std::path::Path;

use super::index::{Account, BodyLoc, Mailbox, Message, ShardIndex};
use super::record::{Dec, DecodeError, Enc, special_use_code, special_use_from};
use super::{EmailId, MessageMeta, StoreResult};

const MAGIC: &[u8; 8] = b"SURELCP4";
pub const FILE_NAME: &str = "checkpoint";

/// Log position a checkpoint covers: everything before (segment, offset) is in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    pub segment: u32,
    pub offset: u64,
}

/// Sealed segment number → its length in bytes.
pub type SealedLengths = BTreeMap<u32, u64>;

pub fn encode(index: &ShardIndex, pos: Position, sealed: &SealedLengths) -> Vec<u8> {
    let mut body = Vec::new();
    let mut e = Enc(&mut body);
    e.u32(pos.segment);
    e.u64(pos.offset);
    e.u32(sealed.len() as u32);
    for (n, len) in sealed {
        e.u32(*n);
        e.u64(*len);
    }
    e.u64(index.next_mailbox_id);
    e.u32(index.last_uidvalidity);
    e.u32(index.accounts.len() as u32);
    for (key, acc) in &index.accounts {
        e.str(key);
        e.u32(acc.mailboxes.len() as u32);
        for mb in acc.mailboxes.values() {
            e.u64(mb.id);
            e.str(&mb.name);
            e.u8(special_use_code(mb.special_use));
            e.u8(mb.subscribed as u8);
            e.u32(mb.uidvalidity);
            e.u32(mb.uidnext);
            e.u64(mb.highest_modseq);
            e.u32(mb.messages.len() as u32);
            for m in &mb.messages {
                e.u32(m.meta.uid);
                e.u32(m.meta.size);
                e.i64(m.meta.internal_date);
                e.flags(&m.meta.flags);
                e.u64(m.meta.modseq);
                e.u8(m.meta.needs_dot_stuffing as u8);
                e.u64(m.meta.email_id.mailbox);
                e.u32(m.meta.email_id.uid);
                match m.meta.saved {
                    Some(t) => {
                        e.u8(1);
                        e.i64(t);
                    }
                    None => e.u8(0),
                }
                e.u32(m.loc.segment);
                e.u64(m.loc.offset);
            }
            e.u32(mb.expunged.len() as u32);
            for (uid, modseq) in &mb.expunged {
                e.u32(*uid);
                e.u64(*modseq);
            }
        }
        e.u32(acc.lost_subscriptions.len() as u32);
        for name in &acc.lost_subscriptions {
            e.str(name);
        }
    }
    let mut out = Vec::with_capacity(body.len() + 20);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// A decoded checkpoint.
#[derive(Debug)]
pub struct Checkpoint {
    pub index: ShardIndex,
    pub pos: Position,
    pub sealed: SealedLengths,
}

pub fn decode(buf: &[u8]) -> Result<Checkpoint, DecodeError> {
    if buf.len() < 20 || &buf[..8] != MAGIC {
        return Err(DecodeError::Malformed("checkpoint header"));
    }
    let crc = u32::from_le_bytes([buf[8], buf[9], buf[10], buf[11]]);
    let mut l = [0u8; 8];
    l.copy_from_slice(&buf[12..20]);
    let body = &buf[20..];
    if u64::from_le_bytes(l) != body.len() as u64 {
        return Err(DecodeError::Truncated);
    }
    if crc32c::crc32c(body) != crc {
        return Err(DecodeError::BadCrc);
    }
    let mut d = Dec::new(body);
    let pos = Position {
        segment: d.u32()?,
        offset: d.u64()?,
    };
    let mut sealed = SealedLengths::new();
    for _ in 0..d.u32()? {
        let n = d.u32()?;
        sealed.insert(n, d.u64()?);
    }
    let mut index = ShardIndex {
        accounts: HashMap::new(),
        next_mailbox_id: d.u64()?,
        last_uidvalidity: d.u32()?,
        live: HashMap::new(),
    };
    for _ in 0..d.u32()? {
        let key = d.string()?;
        let mut acc = Account::default();
        for _ in 0..d.u32()? {
            let id = d.u64()?;
            let name = d.string()?;
            let special_use = special_use_from(d.u8()?)?;
            let subscribed = d.bool()?;
            let uidvalidity = d.u32()?;
            let uidnext = d.u32()?;
            let highest_modseq = d.u64()?;
            let n = d.u32()? as usize;
            let mut messages = Vec::with_capacity(n.min(1 << 20));
            for _ in 0..n {
                let uid = d.u32()?;
                let size = d.u32()?;
                let internal_date = d.i64()?;
                let flags = d.flags()?;
                let modseq = d.u64()?;
                let needs_dot_stuffing = d.bool()?;
                let email_id = EmailId {
                    mailbox: d.u64()?,
                    uid: d.u32()?,
                };
                let saved = if d.bool()? { Some(d.i64()?) } else { None };
                let segment = d.u32()?;
                let offset = d.u64()?;
                messages.push(Message {
                    meta: MessageMeta {
                        uid,
                        size,
                        internal_date,
                        flags,
                        modseq,
                        needs_dot_stuffing,
                        email_id,
                        saved,
                    },
                    loc: BodyLoc {
                        segment,
                        offset,
                        len: size,
                    },
                });
            }
            let n = d.u32()? as usize;
            let mut expunged = Vec::with_capacity(n.min(1 << 20));
            for _ in 0..n {
                expunged.push((d.u32()?, d.u64()?));
            }
            acc.by_name.insert(name.clone(), id);
            acc.mailboxes.insert(
                id,
                Mailbox {
                    id,
                    name,
                    special_use,
                    subscribed,
                    uidvalidity,
                    uidnext,
                    highest_modseq,
                    messages,
                    expunged,
                },
            );
        }
        for _ in 0..d.u32()? {
            acc.lost_subscriptions.insert(d.string()?);
        }
        index.accounts.insert(key, acc);
    }
    if !d.is_empty() {
        return Err(DecodeError::Malformed("checkpoint trailing bytes"));
    }
    index.recount_live();
    Ok(Checkpoint { index, pos, sealed })
}

/// Writes the checkpoint atomically: temp file, fdatasync, rename, fsync of the directory.
pub fn write(
    dir: &Path,
    index: &ShardIndex,
    pos: Position,
    sealed: &SealedLengths,
) -> StoreResult<()> {
    let bytes = encode(index, pos, sealed);
    let tmp = dir.join(format!("{FILE_NAME}.tmp"));
    let written = File::create(&tmp).and_then(|mut f| {
        f.write_all(&bytes)?;
        f.sync_data()
    });
    if let Err(e) = written {
        // Typically a full disk: give the space of the partial copy back to the log.
        let _ = std::fs::remove_file(&tmp);
        return Err(e.into());
    }
    std::fs::rename(&tmp, dir.join(FILE_NAME))?;
    super::segment::fsync_dir(dir)?;
    Ok(())
}

/// The shard's checkpoint, or `None` (with a warning if one existed but was unusable).
pub fn load(dir: &Path) -> Option<Checkpoint> {
    let path = dir.join(FILE_NAME);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read checkpoint; full replay");
            return None;
        }
    };
    match decode(&bytes) {
        Ok(x) => Some(x),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "bad checkpoint; full replay");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::index::BodyInfo;
    use crate::store::record::Record;
    use crate::store::{Flags, SpecialUse, SystemFlags};

    #[test]
    fn checkpoint_round_trip_and_crc() {
        let mut ix = ShardIndex::default();
        ix.apply(
            &Record::MailboxCreate {
                account: "a".into(),
                mailbox: 4,
                name: "Sent".into(),
                uidvalidity: 77,
                special_use: Some(SpecialUse::Sent),
                subscribed: true,
            },
            None,
        )
        .unwrap();
        for uid in 1..=3 {
            ix.apply(
                &Record::MessageAppend {
                    account: "a".into(),
                    mailbox: 4,
                    uid,
                    modseq: u64::from(uid) + 1,
                    internal_date: 1000,
                    flags: Flags {
                        system: SystemFlags(SystemFlags::SEEN),
                        keywords: vec!["k".into()],
                    },
                    // One message as written before origins existed, the others copies.
                    origin: (uid > 1).then_some(crate::store::record::AppendOrigin {
                        email_id: EmailId {
                            mailbox: 9,
                            uid: uid + 20,
                        },
                        saved: 5000 + i64::from(uid),
                    }),
                    body: Default::default(),
                },
                Some(BodyInfo::new(
                    BodyLoc {
                        segment: 0,
                        offset: u64::from(uid) * 100,
                        len: 10,
                    },
                    b".x",
                )),
            )
            .unwrap();
        }
        ix.apply(
            &Record::Expunge {
                account: "a".into(),
                mailbox: 4,
                uid: 3,
                modseq: 9,
            },
            None,
        )
        .unwrap();
        let pos = Position {
            segment: 2,
            offset: 12345,
        };
        let sealed = SealedLengths::from([(0, 900), (1, 1 << 20)]);
        let bytes = encode(&ix, pos, &sealed);
        let Checkpoint {
            index: back,
            pos: p,
            sealed: back_sealed,
        } = decode(&bytes).unwrap();
        assert_eq!(p, pos);
        assert_eq!(back_sealed, sealed);
        assert_eq!(back.live, ix.live);
        let mb = back.mailbox("a", "Sent").unwrap();
        assert_eq!(mb.uidnext, 4);
        assert_eq!(mb.highest_modseq, 9);
        assert_eq!(mb.expunged, vec![(3, 9)]);
        assert_eq!(mb.messages.len(), 2);
        assert_eq!(mb.messages[1].loc.offset, 200);
        assert!(mb.messages[0].meta.needs_dot_stuffing);
        assert_eq!(
            (mb.messages[0].meta.email_id, mb.messages[0].meta.saved),
            (EmailId { mailbox: 4, uid: 1 }, None)
        );
        assert_eq!(
            (mb.messages[1].meta.email_id, mb.messages[1].meta.saved),
            (
                EmailId {
                    mailbox: 9,
                    uid: 22
                },
                Some(5002)
            )
        );
        assert_eq!(back.next_mailbox_id, 5);

        let mut bad = bytes.clone();
        let n = bad.len();
        bad[n - 2] ^= 1;
        assert_eq!(decode(&bad).unwrap_err(), DecodeError::BadCrc);
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(decode(b"junk").is_err());
        // A version 1 checkpoint (no segment lengths) is not trusted.
        let mut v1 = bytes.clone();
        v1[..8].copy_from_slice(b"SURELCP1");
        assert!(decode(&v1).is_err());
        // Nor is a version 3 one (no EMAILID/save time): its messages would lose theirs.
        let mut v3 = bytes.clone();
        v3[..8].copy_from_slice(b"SURELCP3");
        assert!(decode(&v3).is_err());
    }
}
