//! The mailbox store: an append-only, log-structured store of accounts → mailboxes → messages.
//!
//! This module is the *only* code that touches segment files. Protocol code (SMTP delivery, POP3,
//! IMAP) reaches mail exclusively through the [`MailStore`] trait, so a distributed backend
//! (accounts sharded over nodes, logs replicated elsewhere) can later sit behind the same calls.
//!
//! Durability contract: every `async` method that changes state resolves only after the
//! records it wrote are on disk (fdatasync), unless the store was opened with `fsync = off`.
//! Concurrent writers on a shard share one fdatasync (group commit).
//!
//! Threading: accounts are partitioned into shards (`hash(account) % shards`, one shard per
//! core by default). Each shard has one log-writer thread that owns its segment files and does
//! the group commit, so no event loop ever blocks on fsync; the shard's in-memory index sits
//! behind a per-shard lock that readers hold only for a lookup (no global lock).
//! The async methods are runtime-agnostic (they await a oneshot completed by the writer thread),
//! so they work on monoio (io_uring or epoll) and in plain tests alike.

use std::path::PathBuf;
use std::sync::Arc;

/// Errors of the store layer. Protocol layers map them to their own reply codes in one place.
#[derive(Debug)]
pub enum StoreError {
    Io(std::io::Error),
    /// The named mailbox does not exist for this account.
    NoSuchMailbox,
    /// A mailbox with that name exists already (create/rename).
    MailboxExists,
    /// The operation is not allowed (e.g. deleting INBOX).
    NotAllowed(&'static str),
    /// Data on disk failed validation in a way that recovery could not repair.
    Corrupt(String),
    /// The store is shutting down.
    Closed,
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Io(e) => write!(f, "store i/o error: {e}"),
            StoreError::NoSuchMailbox => f.write_str("no such mailbox"),
            StoreError::MailboxExists => f.write_str("mailbox already exists"),
            StoreError::NotAllowed(why) => write!(f, "not allowed: {why}"),
            StoreError::Corrupt(why) => write!(f, "store corrupt: {why}"),
            StoreError::Closed => f.write_str("store is shut down"),
        }
    }
}
impl std::error::Error for StoreError {}
impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        StoreError::Io(e)
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// How the store is opened.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// Directory holding the shards' segment and checkpoint files (created if missing).
    pub dir: PathBuf,
    /// Number of shards (normally the number of cores). Must stay the same across restarts of
    /// one data directory; the store records it and refuses a different value.
    pub shards: usize,
    /// fdatasync before acknowledging (default true). `false` is for benchmarks only: UNSAFE.
    pub fsync: bool,
    /// Segment files roll over at this size.
    pub segment_bytes: u64,
    /// A checkpoint of the in-memory index is written after this many bytes of log since the last.
    pub checkpoint_bytes: u64,
}

/// IMAP system flags, as a bit set. Keywords are kept as strings beside them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SystemFlags(pub u8);
impl SystemFlags {
    pub const SEEN: u8 = 1;
    pub const ANSWERED: u8 = 2;
    pub const FLAGGED: u8 = 4;
    pub const DELETED: u8 = 8;
    pub const DRAFT: u8 = 16;
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Flags {
    pub system: SystemFlags,
    pub keywords: Vec<String>,
}

/// Special-use attributes (RFC 6154) of the default mailboxes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpecialUse {
    Sent,
    Drafts,
    Trash,
    Junk,
    Archive,
}

#[derive(Clone, Debug)]
pub struct MailboxInfo {
    pub name: String,
    pub special_use: Option<SpecialUse>,
    pub subscribed: bool,
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub highest_modseq: u64,
    pub messages: u32,
    pub unseen: u32,
    pub deleted: u32,
    /// Sum of the sizes of all messages.
    pub size: u64,
}

/// One message as the index knows it (no body bytes).
#[derive(Clone, Debug)]
pub struct MessageMeta {
    pub uid: u32,
    /// Exact octet count of the stored message.
    pub size: u32,
    /// Unix seconds.
    pub internal_date: i64,
    pub flags: Flags,
    pub modseq: u64,
    /// True if some line of the message starts with '.', so POP3 must dot-stuff it.
    pub needs_dot_stuffing: bool,
}

/// A consistent view of one mailbox at one moment; messages are in UID order.
#[derive(Clone, Debug)]
pub struct MailboxSnapshot {
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub highest_modseq: u64,
    pub messages: Vec<MessageMeta>,
}

/// Where a message's bytes live, for zero-copy sending (sendfile/splice) of a file range.
#[derive(Clone, Debug)]
pub struct MessageLocation {
    pub file: Arc<std::fs::File>,
    pub offset: u64,
    pub len: u32,
}

/// Result of an append.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    pub uidvalidity: u32,
    pub uid: u32,
    pub modseq: u64,
}

/// One message to append (used for batched appends: a delivery to N recipients is one commit).
#[derive(Clone, Debug)]
pub struct NewMessage {
    pub account: String,
    pub mailbox: String,
    pub bytes: Vec<u8>,
    pub flags: Flags,
    /// Unix seconds.
    pub internal_date: i64,
}

/// How a flag change combines with the current flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlagOp {
    Replace,
    Add,
    Remove,
}

/// A change to a mailbox, pushed to subscribers after it is durable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MailboxChange {
    Appended { uid: u32, modseq: u64 },
    FlagsChanged { uid: u32, modseq: u64 },
    Expunged { uid: u32, modseq: u64 },
    /// The mailbox was deleted or renamed away.
    Gone,
}

/// The narrow interface protocol code uses. Implemented by [`LogStore`].
#[allow(async_fn_in_trait)]
pub trait MailStore: Clone + Send + Sync + 'static {
    /// Append messages durably (one group commit); creates INBOX and the special-use
    /// mailboxes of an account on its first delivery. Results are in input order.
    async fn append(&self, messages: Vec<NewMessage>) -> StoreResult<Vec<Appended>>;
    /// The current state of one mailbox.
    fn snapshot(&self, account: &str, mailbox: &str) -> StoreResult<MailboxSnapshot>;
    /// The exact stored bytes of one message.
    fn read(&self, account: &str, mailbox: &str, uid: u32) -> StoreResult<Vec<u8>>;
    /// Where the bytes of one message are, for sendfile/splice.
    fn locate(&self, account: &str, mailbox: &str, uid: u32) -> StoreResult<MessageLocation>;
    /// Change flags of the given UIDs (absent UIDs are ignored). Returns (uid, new flags, modseq)
    /// of the messages whose flags actually changed. `unchanged_since`: CONDSTORE guard.
    async fn store_flags(
        &self,
        account: &str,
        mailbox: &str,
        uids: &[u32],
        op: FlagOp,
        flags: Flags,
        unchanged_since: Option<u64>,
    ) -> StoreResult<Vec<(u32, Flags, u64)>>;
    /// Expunge (tombstone) the given UIDs; returns those that existed. Durable before returning.
    async fn expunge(&self, account: &str, mailbox: &str, uids: &[u32]) -> StoreResult<Vec<u32>>;
    /// Copy messages into another mailbox of the same account; returns (source uid, new uid).
    async fn copy(
        &self,
        account: &str,
        from: &str,
        to: &str,
        uids: &[u32],
    ) -> StoreResult<Vec<(u32, u32)>>;
    fn list_mailboxes(&self, account: &str) -> Vec<MailboxInfo>;
    async fn create_mailbox(&self, account: &str, name: &str) -> StoreResult<()>;
    async fn delete_mailbox(&self, account: &str, name: &str) -> StoreResult<()>;
    /// RFC 3501 semantics: renaming INBOX moves its messages to the new name and leaves INBOX empty.
    async fn rename_mailbox(&self, account: &str, from: &str, to: &str) -> StoreResult<()>;
    async fn set_subscribed(&self, account: &str, name: &str, subscribed: bool) -> StoreResult<()>;
    /// Expunged UIDs with their modseq greater than `since` (QRESYNC VANISHED).
    fn expunged_since(&self, account: &str, mailbox: &str, since: u64) -> StoreResult<Vec<u32>>;
    /// A receiver of the mailbox's changes, pushed after each change is durable.
    fn subscribe(&self, account: &str, mailbox: &str) -> ChangeReceiver;
}

/// Receives [`MailboxChange`]s of one mailbox. Dropping it unsubscribes.
pub type ChangeReceiver = futures_channel::mpsc::UnboundedReceiver<MailboxChange>;
