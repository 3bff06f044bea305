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
//!
//! Layout: `record` (on-disk record format), `segment` (segment files, replay scan, tail
//! repair), `index` (in-memory per-shard index, a fold over records), `writer` (log-writer
//! thread, group commit), `checkpoint` (index snapshots that bound replay), `recovery`
//! (start-up of a shard), `compact` (rewriting sealed segments without dead records), `check`
//! (offline verification). On disk: `<dir>/store.meta` (shard count) and per shard
//! `shard-<S>/seg-<N>.log` plus `shard-<S>/checkpoint` (and, while a compaction runs,
//! `seg-<N>.log.compact`).
//!
//! Writer design: the writer validates requests against a private copy of the index that
//! already includes the records of the current batch (so create-then-append in one batch
//! works), writes the batch with one `pwrite`, fdatasyncs once, applies the same records to the
//! shared index, answers the callers, then notifies subscribers. Logical errors
//! (`NoSuchMailbox`, ...) fail only their request. An I/O error fails the whole batch: the
//! segment is truncated back to the batch start and the private index reset; if that is not
//! possible (error after a mid-batch segment roll), the shard refuses writes until restart,
//! because disk and memory may disagree. A multi-account `append` is atomic per shard only.
//! `read`/`locate` of a UID that is not in the mailbox return `NotAllowed("no such message")`.
//!
//! Compaction ([`compact`]): the log is append-only, so the space of expunged messages,
//! superseded flag changes and deleted mailboxes comes back only when the writer rewrites a
//! sealed segment without them — in place, in small steps between group commits, crash-safe at
//! every step, and such that the compacted log alone still replays to the same index. `check`
//! verifies a store offline (`surel store check`).
//!
//! Readers look a message's segment file up under the same index lock as its location, so a
//! compaction that moves bodies never pairs an old offset with a new file. Bodies for FETCH and
//! RETR are then read without blocking the core's event loop on the disk ([`body_read`]).

pub mod body_read;
pub mod check;
mod checkpoint;
mod compact;
mod index;
pub mod names;
pub mod queue;
mod record;
mod recovery;
mod segment;
mod writer;

pub use compact::CompactionReport;
pub use queue::{
    NewQueuedMessage, Notify, QueueEvent, QueueUpdate, QueuedEnvelope, QueuedMessage,
    QueuedRecipient, RecipientState, RecipientStatus, Ret,
};
pub use record::MessageBytes;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use crossbeam_channel::Sender;
use futures_channel::oneshot;

use writer::{Op, Reply, Request, Shared, Stats};

/// Errors of the store layer. Protocol layers map them to their own reply codes in one place.
#[derive(Debug)]
pub enum StoreError {
    Io(std::io::Error),
    /// The named mailbox does not exist for this account.
    NoSuchMailbox,
    /// A mailbox with that name exists already (create/rename).
    MailboxExists,
    /// The operation is not allowed (e.g. deleting INBOX, an invalid mailbox name).
    NotAllowed(&'static str),
    /// A configured limit would be exceeded (e.g. mailboxes per account): the request is
    /// valid, and may succeed once the account has shrunk.
    LimitReached(&'static str),
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
            StoreError::LimitReached(what) => write!(f, "limit reached: {what}"),
            StoreError::Corrupt(why) => write!(f, "store corrupt: {why}"),
            StoreError::Closed => f.write_str("store is shut down"),
        }
    }
}
impl std::error::Error for StoreError {}

impl StoreError {
    /// The disk (ENOSPC) or a file-system quota (EDQUOT) is full: nothing was written, and
    /// retrying helps only once space is freed.
    pub fn is_out_of_space(&self) -> bool {
        matches!(self, StoreError::Io(io) if matches!(
            io.kind(),
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
        ))
    }
}
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
    /// Outbound queue log segments roll over at this size; a segment is deleted once every
    /// message in it is finished, so smaller segments give space back sooner.
    pub queue_segment_bytes: u64,
    /// Mailbox name sizes and the number of mailboxes per account, enforced by the writer.
    pub mailbox_limits: names::MailboxLimits,
    /// The writer compacts a sealed mailbox log segment in the background once at least this
    /// percentage of it is dead: expunged messages, deleted mailboxes, superseded flag changes
    /// (0: only on demand, [`LogStore::compact`]).
    pub compact_dead_pct: u8,
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
    /// The store's id of the mailbox: never reused, kept by RENAME (RFC 8474 MAILBOXID).
    pub id: u64,
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

/// The store's identity of a message's content (RFC 8474 EMAILID): the mailbox and UID it was
/// first saved under. Both are never reused (mailbox ids and UIDs only grow, across compaction
/// too), so no two different messages share one, and a COPY or MOVE carries it along. Messages
/// stored before ids were recorded get their own (mailbox, uid), which no later message can take.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct EmailId {
    pub mailbox: u64,
    pub uid: u32,
}

/// One message as the index knows it (no body bytes).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
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
    pub email_id: EmailId,
    /// Unix seconds it was saved into this mailbox (RFC 8514); `None` for messages stored
    /// before save times were recorded.
    pub saved: Option<i64>,
}

/// A consistent view of one mailbox at one moment; messages are in UID order.
#[derive(Clone, Debug)]
pub struct MailboxSnapshot {
    /// See [`MailboxInfo::id`].
    pub id: u64,
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
    /// The message; its body may be shared with other copies of the same delivery.
    pub bytes: MessageBytes,
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
    Appended {
        uid: u32,
        modseq: u64,
    },
    FlagsChanged {
        uid: u32,
        modseq: u64,
    },
    Expunged {
        uid: u32,
        modseq: u64,
    },
    /// The mailbox was deleted or renamed away.
    Gone,
    /// A name event: sent to account subscribers only ([`MailStore::subscribe_account`]).
    Named(NameChange),
}

/// A mailbox or subscription name that came, went or moved (IMAP NOTIFY MailboxName and
/// SubscriptionChange). Names are canonical (`INBOX` upper-case).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NameChange {
    Created(String),
    Deleted(String),
    Renamed { from: String, to: String },
    Subscription { name: String, subscribed: bool },
}

/// A change to one of an account's mailboxes, for sessions that watch the whole account
/// (IMAP NOTIFY). The mailbox is named by its never-reused id ([`MailboxInfo::id`]), so a
/// rename between the change and its report cannot misattribute it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountChange {
    pub mailbox: u64,
    pub change: MailboxChange,
}

/// The narrow interface protocol code uses. Implemented by [`LogStore`].
#[allow(async_fn_in_trait)]
pub trait MailStore: Clone + Send + Sync + 'static {
    /// Append messages durably (one group commit); creates INBOX and the special-use
    /// mailboxes of an account on its first delivery. Results are in input order.
    async fn append(&self, messages: Vec<NewMessage>) -> StoreResult<Vec<Appended>>;
    /// The current state of one mailbox.
    fn snapshot(&self, account: &str, mailbox: &str) -> StoreResult<MailboxSnapshot>;
    /// The exact stored bytes of one message, read synchronously: for callers that need a
    /// few messages at once off the hot path (SORT, THREAD). A cold read blocks the caller.
    fn read(&self, account: &str, mailbox: &str, uid: u32) -> StoreResult<Vec<u8>>;
    /// The exact stored bytes of one message, read without stalling the calling core while the
    /// disk works (FETCH, RETR): see [`body_read`].
    async fn read_body(&self, account: &str, mailbox: &str, uid: u32) -> StoreResult<Vec<u8>>;
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
    /// Subscribed names that have no mailbox (deleted since, or never created), sorted.
    fn lost_subscriptions(&self, account: &str) -> Vec<String>;
    async fn create_mailbox(&self, account: &str, name: &str) -> StoreResult<()>;
    async fn delete_mailbox(&self, account: &str, name: &str) -> StoreResult<()>;
    /// RFC 3501 semantics: renaming INBOX moves its messages to the new name and leaves INBOX empty.
    async fn rename_mailbox(&self, account: &str, from: &str, to: &str) -> StoreResult<()>;
    async fn set_subscribed(&self, account: &str, name: &str, subscribed: bool) -> StoreResult<()>;
    /// Expunged UIDs with their modseq greater than `since` (QRESYNC VANISHED).
    fn expunged_since(&self, account: &str, mailbox: &str, since: u64) -> StoreResult<Vec<u32>>;
    /// A receiver of the mailbox's changes, pushed after each change is durable.
    fn subscribe(&self, account: &str, mailbox: &str) -> ChangeReceiver;
    /// A receiver of the changes of every mailbox of the account, pushed after each change
    /// is durable (mailboxes created later included).
    fn subscribe_account(&self, account: &str) -> AccountChangeReceiver;
}

/// Receives [`MailboxChange`]s of one mailbox. Dropping it unsubscribes.
pub type ChangeReceiver = futures_channel::mpsc::UnboundedReceiver<MailboxChange>;

/// Receives the [`AccountChange`]s of one account. Dropping it unsubscribes.
pub type AccountChangeReceiver = futures_channel::mpsc::UnboundedReceiver<AccountChange>;

/// Receives the [`QueueEvent`]s of one shard's outbound queue. Dropping it unsubscribes.
pub type QueueReceiver = futures_channel::mpsc::UnboundedReceiver<QueueEvent>;

/// The outbound queue's side of the store. Each shard has its own queue (see [`queue`]); the
/// delivery scheduler of core N works the queue of shard N.
#[allow(async_fn_in_trait)]
pub trait QueueStore: Clone + Send + Sync + 'static {
    /// Number of queues (one per shard).
    fn queue_shards(&self) -> usize;
    /// Mailbox copies, then new queued messages and queue updates, all durable before it
    /// returns. Everything for one shard is one request, so local copies that live on
    /// `queue_shard` share the queue entry's group commit. Results are the appends', in order.
    async fn deliver(
        &self,
        appends: Vec<NewMessage>,
        queue_shard: usize,
        enqueue: Vec<NewQueuedMessage>,
        updates: Vec<QueueUpdate>,
    ) -> StoreResult<Vec<Appended>>;
    /// One queued message (no bytes), if it is still queued.
    fn queued(&self, shard: usize, id: &str) -> Option<QueuedMessage>;
    /// Looks a queue id up in every shard.
    fn find_queued(&self, id: &str) -> Option<(usize, QueuedMessage)>;
    /// The messages of one shard's queue, oldest first.
    fn queue_list(&self, shard: usize) -> Vec<QueuedMessage>;
    /// The stored bytes of a queued message.
    fn queue_bytes(&self, shard: usize, id: &str) -> StoreResult<Vec<u8>>;
    /// Events of one shard's queue, pushed after each change is durable.
    fn queue_subscribe(&self, shard: usize) -> QueueReceiver;
    /// Tells every queue's subscribers to try all waiting messages now.
    fn queue_flush(&self);
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            dir: PathBuf::from("data"),
            shards: 1,
            fsync: true,
            segment_bytes: 256 << 20,
            checkpoint_bytes: 64 << 20,
            queue_segment_bytes: 16 << 20,
            mailbox_limits: names::MailboxLimits::DEFAULT,
            compact_dead_pct: 50,
        }
    }
}

/// Counters of a [`LogStore`] since it was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// fdatasync calls on segment files (group commits plus segment roll-overs).
    pub fsyncs: u64,
    /// Records committed.
    pub records: u64,
    /// Group commits (batches) run by the writers.
    pub batches: u64,
    pub checkpoints: u64,
    /// Records replayed from the log at open (after the checkpoints).
    pub replayed_records: u64,
    /// Spent outbound queue segments deleted.
    pub queue_segments_reclaimed: u64,
    /// Queued messages copied forward out of a segment being reclaimed.
    pub queue_copied_forward: u64,
    /// Mailbox log segments rewritten (or deleted) by compaction.
    pub segments_compacted: u64,
    /// Bytes of mailbox log given back by compaction.
    pub compaction_bytes_reclaimed: u64,
    /// The longest one compaction step held up a shard's writer, in microseconds.
    pub compaction_longest_step_us: u64,
}

/// Stable across processes and restarts (unlike std's randomized hasher), so an account
/// always maps to the shard that holds its log.
fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

const META_FILE: &str = "store.meta";

/// The `shards=` line of a store's meta file.
fn meta_shards(path: &std::path::Path, text: &str) -> StoreResult<usize> {
    text.lines()
        .find_map(|l| l.strip_prefix("shards="))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .ok_or_else(|| StoreError::Corrupt(format!("{}: no valid shards= line", path.display())))
}

/// Records the shard count at first open and refuses a different one later: accounts are
/// placed by `hash % shards`, so a changed count would silently hide existing mail.
fn check_meta(config: &StoreConfig) -> StoreResult<()> {
    let path = config.dir.join(META_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let shards = meta_shards(&path, &text)?;
            if shards != config.shards {
                return Err(StoreError::Corrupt(format!(
                    "{} was created with {shards} shards but opened with {}; \
                     the shard count of a data directory cannot change",
                    config.dir.display(),
                    config.shards
                )));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let tmp = config.dir.join(format!("{META_FILE}.tmp"));
            {
                use std::io::Write;
                let mut f = std::fs::File::create(&tmp)?;
                write!(f, "surel-store 1\nshards={}\n", config.shards)?;
                f.sync_all()?;
            }
            std::fs::rename(&tmp, &path)?;
            segment::fsync_dir(&config.dir)?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Takes the store directory's exclusive lock, held while the store is open (and during an
/// offline check): two processes appending to the same segments would corrupt both.
fn lock_store_dir(dir: &std::path::Path) -> StoreResult<std::fs::File> {
    let lock = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join("store.lock"))?;
    // SAFETY: flock on a valid, owned file descriptor; no memory is involved.
    if unsafe {
        libc::flock(
            std::os::fd::AsRawFd::as_raw_fd(&lock),
            libc::LOCK_EX | libc::LOCK_NB,
        )
    } != 0
    {
        return Err(StoreError::NotAllowed(
            "data directory is already in use by another open store",
        ));
    }
    Ok(lock)
}

struct ShardHandle {
    shared: Arc<Shared>,
    /// `None` once closed. Senders hold the read lock while sending, so after `close` takes
    /// it no request can slip into a channel whose writer is already gone.
    tx: RwLock<Option<Sender<Request>>>,
}

struct Inner {
    /// flock'ed until close: two stores appending to the same segments would interleave
    /// records and corrupt both.
    lock: Mutex<Option<std::fs::File>>,
    shards: Vec<ShardHandle>,
    stats: Arc<Stats>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Inner {
    fn close(&self) {
        for s in &self.shards {
            s.tx.write().unwrap_or_else(|p| p.into_inner()).take();
        }
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for t in threads {
            if t.join().is_err() {
                tracing::error!("store writer thread panicked");
            }
        }
        // Released only after the writers are done with the files.
        self.lock.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.close();
    }
}

/// The log-structured [`MailStore`]. Cheap to clone; all clones share the same shards.
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore")
            .field("shards", &self.inner.shards.len())
            .finish()
    }
}

impl LogStore {
    /// Opens (or creates) the store: recovers every shard from its checkpoint and log, then
    /// starts one writer thread per shard.
    pub fn open(config: StoreConfig) -> StoreResult<LogStore> {
        if config.shards == 0 {
            return Err(StoreError::NotAllowed("shards must be at least 1"));
        }
        std::fs::create_dir_all(&config.dir)?;
        let lock = lock_store_dir(&config.dir)?;
        check_meta(&config)?;
        let stats = Arc::new(Stats::default());
        let mut opened = Vec::with_capacity(config.shards);
        for s in 0..config.shards {
            let (tx, rx) = crossbeam_channel::unbounded();
            let dir = recovery::shard_dir(&config.dir, s);
            let (shared, writer) = recovery::open_shard(dir, &config, stats.clone(), rx)?;
            opened.push((shared, tx, writer));
        }
        // Threads start only after every shard recovered, so a failed open leaves none behind.
        let mut shards = Vec::with_capacity(opened.len());
        let mut threads = Vec::with_capacity(opened.len());
        let mut spawn_err = None;
        for (s, (shared, tx, writer)) in opened.into_iter().enumerate() {
            match std::thread::Builder::new()
                .name(format!("store-writer-{s}"))
                .spawn(move || writer.run())
            {
                Ok(t) => threads.push(t),
                Err(e) => spawn_err = Some(e),
            }
            shards.push(ShardHandle {
                shared,
                tx: RwLock::new(Some(tx)),
            });
        }
        let inner = Arc::new(Inner {
            lock: Mutex::new(Some(lock)),
            shards,
            stats,
            threads: Mutex::new(threads),
        });
        if let Some(e) = spawn_err {
            inner.close();
            return Err(e.into());
        }
        Ok(LogStore { inner })
    }

    /// Opens the store of an existing data directory with the shard count it was created with
    /// (for tools that run while no server does, such as `surel queue`). Background compaction
    /// is off: a tool rewrites segments only when asked to ([`LogStore::compact`]).
    pub fn open_existing(dir: &std::path::Path) -> StoreResult<LogStore> {
        LogStore::open_existing_with(StoreConfig {
            dir: dir.to_path_buf(),
            compact_dead_pct: 0,
            ..StoreConfig::default()
        })
    }

    /// [`LogStore::open_existing`] with the settings of `config` (its `shards` is ignored: the
    /// store's own count is used), for tools whose work depends on them, such as an offline
    /// compaction honouring the configured segment size.
    pub fn open_existing_with(mut config: StoreConfig) -> StoreResult<LogStore> {
        let path = config.dir.join(META_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                StoreError::NotAllowed("no store in this data directory")
            }
            _ => StoreError::Io(e),
        })?;
        config.shards = meta_shards(&path, &text)?;
        LogStore::open(config)
    }

    /// Stops the writers after they committed everything already queued, and writes a final
    /// checkpoint per shard. Later calls on any clone fail with [`StoreError::Closed`].
    pub fn close(&self) {
        self.inner.close();
    }

    /// Closes like after a crash: everything acknowledged is on disk, but no final
    /// checkpoint is written, so the next open must replay.
    #[cfg(test)]
    pub(crate) fn crash(&self) {
        self.inner
            .stats
            .skip_final_checkpoint
            .store(true, Ordering::Relaxed);
        self.close();
    }

    /// Makes the next compaction stop dead after `step` (see [`compact`]), as if the process
    /// were killed there: the writer then refuses everything until the store is reopened.
    #[cfg(test)]
    pub(crate) fn stop_compaction_after(&self, step: u32) {
        self.inner
            .stats
            .compaction_stop_after
            .store(step, Ordering::Relaxed);
    }

    pub fn stats(&self) -> StoreStats {
        let s = &self.inner.stats;
        StoreStats {
            fsyncs: s.fsyncs.load(Ordering::Relaxed),
            records: s.records.load(Ordering::Relaxed),
            batches: s.batches.load(Ordering::Relaxed),
            checkpoints: s.checkpoints.load(Ordering::Relaxed),
            replayed_records: s.replayed_records.load(Ordering::Relaxed),
            queue_segments_reclaimed: s.queue_segments_reclaimed.load(Ordering::Relaxed),
            queue_copied_forward: s.queue_copied_forward.load(Ordering::Relaxed),
            segments_compacted: s.segments_compacted.load(Ordering::Relaxed),
            compaction_bytes_reclaimed: s.compaction_bytes_reclaimed.load(Ordering::Relaxed),
            compaction_longest_step_us: s.compaction_longest_step_us.load(Ordering::Relaxed),
        }
    }

    /// Compacts every shard's mailbox log segments of which at least `dead_pct` percent is dead
    /// (default: the configured threshold, or 50 if background compaction is off), while the
    /// store keeps serving. The tail segment is sealed first if it qualifies and has at least
    /// an eighth of a segment dead, so a quiet store shrinks too. Resolves when no such segment
    /// is left.
    pub async fn compact(&self, dead_pct: Option<u8>) -> StoreResult<CompactionReport> {
        let mut pending = Vec::new();
        for s in 0..self.inner.shards.len() {
            pending.push(self.send(s, Op::Compact { dead_pct })?);
        }
        let mut total = CompactionReport::default();
        for rx in pending {
            match rx.await.map_err(|_| StoreError::Closed)?? {
                Reply::Compacted(r) => total.add(r),
                _ => return Err(unexpected()),
            }
        }
        Ok(total)
    }

    /// Records replayed from the log at open; small after a recent checkpoint.
    pub fn replayed_records(&self) -> u64 {
        self.inner.stats.replayed_records.load(Ordering::Relaxed)
    }

    /// The shard that owns `account`.
    pub fn shard_of(&self, account: &str) -> usize {
        let h = fnv1a(account.bytes().map(|b| b.to_ascii_lowercase()));
        // Non-ASCII accounts are rare; lowercasing them fully keeps the mapping consistent
        // with the index's account keys.
        let h = if account.is_ascii() {
            h
        } else {
            fnv1a(account.to_lowercase().into_bytes())
        };
        (h % self.inner.shards.len() as u64) as usize
    }

    fn shard(&self, account: &str) -> &ShardHandle {
        &self.inner.shards[self.shard_of(account)]
    }

    /// The index of the shard that holds `account`, for reading (through a poisoned lock too,
    /// as everywhere in the store).
    fn read_index(&self, account: &str) -> std::sync::RwLockReadGuard<'_, index::ShardIndex> {
        self.shard(account)
            .shared
            .index
            .read()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn send(&self, shard: usize, op: Op) -> StoreResult<oneshot::Receiver<StoreResult<Reply>>> {
        let (reply, rx) = oneshot::channel();
        let guard = self.inner.shards[shard]
            .tx
            .read()
            .unwrap_or_else(|p| p.into_inner());
        let tx = guard.as_ref().ok_or(StoreError::Closed)?;
        tx.send(Request { op, reply })
            .map_err(|_| StoreError::Closed)?;
        Ok(rx)
    }

    async fn call(&self, account: &str, op: Op) -> StoreResult<Reply> {
        let rx = self.send(self.shard_of(account), op)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    fn with_mailbox<T>(
        &self,
        account: &str,
        mailbox: &str,
        f: impl FnOnce(&index::Mailbox) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let ix = self.read_index(account);
        f(ix.mailbox(account, mailbox)
            .ok_or(StoreError::NoSuchMailbox)?)
    }

    /// Where a message's body is, with the file it is in. The file is looked up under the index
    /// lock: compaction changes a location and its segment's file together under that lock.
    fn body_at(
        &self,
        account: &str,
        mailbox: &str,
        uid: u32,
    ) -> StoreResult<(Arc<std::fs::File>, index::BodyLoc)> {
        let shared = &self.shard(account).shared;
        self.with_mailbox(account, mailbox, |mb| {
            let loc = mb
                .get(uid)
                .map(|m| m.loc)
                .ok_or(StoreError::NotAllowed("no such message"))?;
            Ok((shared.segments.get(loc.segment)?, loc))
        })
    }
}

fn unexpected() -> StoreError {
    StoreError::Io(std::io::Error::other(
        "store writer sent a mismatched reply",
    ))
}

impl MailStore for LogStore {
    async fn append(&self, messages: Vec<NewMessage>) -> StoreResult<Vec<Appended>> {
        let n = messages.len();
        let mut per_shard: Vec<(Vec<usize>, Vec<NewMessage>)> = (0..self.inner.shards.len())
            .map(|_| Default::default())
            .collect();
        for (i, m) in messages.into_iter().enumerate() {
            let s = self.shard_of(&m.account);
            per_shard[s].0.push(i);
            per_shard[s].1.push(m);
        }
        // Send to every shard before awaiting any, so the shards commit in parallel.
        let mut pending = Vec::new();
        for (s, (idx, msgs)) in per_shard.into_iter().enumerate() {
            if !msgs.is_empty() {
                pending.push((idx, self.send(s, Op::Append(msgs))?));
            }
        }
        let mut out: Vec<Option<Appended>> = vec![None; n];
        for (idx, rx) in pending {
            match rx.await.map_err(|_| StoreError::Closed)?? {
                Reply::Appended(v) if v.len() == idx.len() => {
                    for (i, a) in idx.into_iter().zip(v) {
                        out[i] = Some(a);
                    }
                }
                _ => return Err(unexpected()),
            }
        }
        out.into_iter().map(|a| a.ok_or_else(unexpected)).collect()
    }

    fn snapshot(&self, account: &str, mailbox: &str) -> StoreResult<MailboxSnapshot> {
        self.with_mailbox(account, mailbox, |mb| Ok(mb.snapshot()))
    }

    fn read(&self, account: &str, mailbox: &str, uid: u32) -> StoreResult<Vec<u8>> {
        let (file, loc) = self.body_at(account, mailbox, uid)?;
        // The index lock is released here: the pread runs lock-free on the shared file.
        segment::read_exact_at(&file, loc.offset, loc.len)
    }

    async fn read_body(&self, account: &str, mailbox: &str, uid: u32) -> StoreResult<Vec<u8>> {
        let (file, loc) = self.body_at(account, mailbox, uid)?;
        // Like `read`, lock-free: the `Arc<File>` keeps the segment open even if compaction
        // retires it meanwhile.
        body_read::read_at(file, loc.offset, loc.len, account).await
    }

    fn locate(&self, account: &str, mailbox: &str, uid: u32) -> StoreResult<MessageLocation> {
        let (file, loc) = self.body_at(account, mailbox, uid)?;
        Ok(MessageLocation {
            file,
            offset: loc.offset,
            len: loc.len,
        })
    }

    async fn store_flags(
        &self,
        account: &str,
        mailbox: &str,
        uids: &[u32],
        op: FlagOp,
        flags: Flags,
        unchanged_since: Option<u64>,
    ) -> StoreResult<Vec<(u32, Flags, u64)>> {
        let op = Op::StoreFlags {
            account: account.to_string(),
            mailbox: mailbox.to_string(),
            uids: uids.to_vec(),
            op,
            flags,
            unchanged_since,
        };
        match self.call(account, op).await? {
            Reply::Flags(v) => Ok(v),
            _ => Err(unexpected()),
        }
    }

    async fn expunge(&self, account: &str, mailbox: &str, uids: &[u32]) -> StoreResult<Vec<u32>> {
        let op = Op::Expunge {
            account: account.to_string(),
            mailbox: mailbox.to_string(),
            uids: uids.to_vec(),
        };
        match self.call(account, op).await? {
            Reply::Uids(v) => Ok(v),
            _ => Err(unexpected()),
        }
    }

    async fn copy(
        &self,
        account: &str,
        from: &str,
        to: &str,
        uids: &[u32],
    ) -> StoreResult<Vec<(u32, u32)>> {
        let op = Op::Copy {
            account: account.to_string(),
            from: from.to_string(),
            to: to.to_string(),
            uids: uids.to_vec(),
        };
        match self.call(account, op).await? {
            Reply::Pairs(v) => Ok(v),
            _ => Err(unexpected()),
        }
    }

    fn list_mailboxes(&self, account: &str) -> Vec<MailboxInfo> {
        let ix = self.read_index(account);
        let Some(acc) = ix.account(account) else {
            return Vec::new();
        };
        let mut out: Vec<MailboxInfo> = acc.mailboxes.values().map(|m| m.info()).collect();
        drop(ix);
        out.sort_by(|a, b| (a.name != "INBOX", &a.name).cmp(&(b.name != "INBOX", &b.name)));
        out
    }

    fn lost_subscriptions(&self, account: &str) -> Vec<String> {
        let ix = self.read_index(account);
        ix.account(account)
            .map(|acc| acc.lost_subscriptions.iter().cloned().collect())
            .unwrap_or_default()
    }

    async fn create_mailbox(&self, account: &str, name: &str) -> StoreResult<()> {
        let op = Op::Create {
            account: account.to_string(),
            name: name.to_string(),
        };
        self.call(account, op).await.map(|_| ())
    }

    async fn delete_mailbox(&self, account: &str, name: &str) -> StoreResult<()> {
        let op = Op::Delete {
            account: account.to_string(),
            name: name.to_string(),
        };
        self.call(account, op).await.map(|_| ())
    }

    async fn rename_mailbox(&self, account: &str, from: &str, to: &str) -> StoreResult<()> {
        let op = Op::Rename {
            account: account.to_string(),
            from: from.to_string(),
            to: to.to_string(),
        };
        self.call(account, op).await.map(|_| ())
    }

    async fn set_subscribed(&self, account: &str, name: &str, subscribed: bool) -> StoreResult<()> {
        let op = Op::Subscribe {
            account: account.to_string(),
            name: name.to_string(),
            subscribed,
        };
        self.call(account, op).await.map(|_| ())
    }

    fn expunged_since(&self, account: &str, mailbox: &str, since: u64) -> StoreResult<Vec<u32>> {
        self.with_mailbox(account, mailbox, |mb| {
            let mut uids: Vec<u32> = mb
                .expunged
                .iter()
                .filter(|(_, m)| *m > since)
                .map(|(u, _)| *u)
                .collect();
            uids.sort_unstable();
            Ok(uids)
        })
    }

    fn subscribe(&self, account: &str, mailbox: &str) -> ChangeReceiver {
        let (tx, rx) = futures_channel::mpsc::unbounded();
        let shared = &self.shard(account).shared;
        let ix = shared.index.read().unwrap_or_else(|p| p.into_inner());
        match ix.mailbox(account, mailbox) {
            // Registered under the index lock, so no commit can fall between the caller's
            // view and the subscription without being reported.
            Some(mb) => shared
                .subs
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry((index::account_key(account), mb.id))
                .or_default()
                .push(tx),
            None => {
                let _ = tx.unbounded_send(MailboxChange::Gone);
            }
        }
        rx
    }

    fn subscribe_account(&self, account: &str) -> AccountChangeReceiver {
        let (tx, rx) = futures_channel::mpsc::unbounded();
        self.shard(account)
            .shared
            .account_subs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(index::account_key(account))
            .or_default()
            .push(tx);
        rx
    }
}

impl LogStore {
    fn queue_index(&self, shard: usize) -> std::sync::RwLockReadGuard<'_, queue::QueueIndex> {
        self.inner.shards[shard]
            .shared
            .queue
            .read()
            .unwrap_or_else(|p| p.into_inner())
    }
}

impl QueueStore for LogStore {
    fn queue_shards(&self) -> usize {
        self.inner.shards.len()
    }

    async fn deliver(
        &self,
        appends: Vec<NewMessage>,
        queue_shard: usize,
        enqueue: Vec<NewQueuedMessage>,
        updates: Vec<QueueUpdate>,
    ) -> StoreResult<Vec<Appended>> {
        let shards = self.inner.shards.len();
        if queue_shard >= shards {
            return Err(StoreError::NotAllowed("no such queue shard"));
        }
        let n = appends.len();
        let mut per_shard: Vec<(Vec<usize>, Vec<NewMessage>)> =
            (0..shards).map(|_| Default::default()).collect();
        for (i, m) in appends.into_iter().enumerate() {
            let s = self.shard_of(&m.account);
            per_shard[s].0.push(i);
            per_shard[s].1.push(m);
        }
        let mut queue_ops = Some((enqueue, updates));
        // Send to every shard before awaiting any, so the shards commit in parallel.
        let mut pending = Vec::new();
        for (s, (idx, msgs)) in per_shard.into_iter().enumerate() {
            let op = if s == queue_shard {
                let (enqueue, updates) = queue_ops.take().unwrap_or_default();
                if msgs.is_empty() && enqueue.is_empty() && updates.is_empty() {
                    continue;
                }
                Op::Deliver {
                    appends: msgs,
                    enqueue,
                    updates,
                }
            } else if msgs.is_empty() {
                continue;
            } else {
                Op::Append(msgs)
            };
            pending.push((idx, self.send(s, op)?));
        }
        let mut out: Vec<Option<Appended>> = vec![None; n];
        let mut first_err = None;
        for (idx, rx) in pending {
            match rx.await.map_err(|_| StoreError::Closed) {
                Ok(Ok(Reply::Appended(v))) if v.len() == idx.len() => {
                    for (i, a) in idx.into_iter().zip(v) {
                        out[i] = Some(a);
                    }
                }
                Ok(Ok(_)) => first_err = first_err.or(Some(unexpected())),
                Ok(Err(e)) | Err(e) => first_err = first_err.or(Some(e)),
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        out.into_iter().map(|a| a.ok_or_else(unexpected)).collect()
    }

    fn queued(&self, shard: usize, id: &str) -> Option<QueuedMessage> {
        if shard >= self.inner.shards.len() {
            return None;
        }
        self.queue_index(shard)
            .entries
            .get(id)
            .map(|e| e.message.clone())
    }

    fn find_queued(&self, id: &str) -> Option<(usize, QueuedMessage)> {
        (0..self.inner.shards.len()).find_map(|s| self.queued(s, id).map(|m| (s, m)))
    }

    fn queue_list(&self, shard: usize) -> Vec<QueuedMessage> {
        if shard >= self.inner.shards.len() {
            return Vec::new();
        }
        let mut out: Vec<QueuedMessage> = self
            .queue_index(shard)
            .entries
            .values()
            .map(|e| e.message.clone())
            .collect();
        out.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
        out
    }

    fn queue_bytes(&self, shard: usize, id: &str) -> StoreResult<Vec<u8>> {
        let loc = self
            .queue_index(shard)
            .entries
            .get(id)
            .map(|e| e.loc)
            .ok_or(StoreError::NotAllowed("no such message in the queue"))?;
        // The index lock is released here; the pread runs on the shared file.
        self.inner.shards[shard].shared.queue_segments.read(loc)
    }

    fn queue_subscribe(&self, shard: usize) -> QueueReceiver {
        let (tx, rx) = futures_channel::mpsc::unbounded();
        if let Some(s) = self.inner.shards.get(shard) {
            s.shared
                .queue_subs
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(tx);
        }
        rx
    }

    fn queue_flush(&self) {
        for s in &self.inner.shards {
            s.shared
                .queue_subs
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|tx| tx.unbounded_send(QueueEvent::Flush).is_ok());
        }
    }
}

/// Entry point for the fuzz targets in `fuzz/` (not an API): decodes a mailbox-log record
/// payload of `kind` (its CRC computed here, so the fuzzer reaches the field parser) and, if it
/// decodes, checks that encoding gives back exactly the same frame. Returns whether it decoded.
#[doc(hidden)]
pub fn fuzz_decode_record(kind: u8, payload: &[u8]) -> bool {
    fuzz_round_trip::<record::Record>(kind, payload, record::Record::encode, |r| r.encoded_len())
}

/// [`fuzz_decode_record`] for the outbound queue log's records.
#[doc(hidden)]
pub fn fuzz_decode_queue_record(kind: u8, payload: &[u8]) -> bool {
    fuzz_round_trip::<queue::QueueRecord>(kind, payload, queue::QueueRecord::encode, |r| {
        r.encoded_len()
    })
}

fn fuzz_round_trip<R: record::LogRecord + PartialEq + std::fmt::Debug>(
    kind: u8,
    payload: &[u8],
    encode: fn(&R, &mut Vec<u8>) -> usize,
    encoded_len: fn(&R) -> usize,
) -> bool {
    let crc = record::record_crc(kind, payload);
    let Ok((rec, body_at)) = R::decode_payload(kind, crc, payload) else {
        return false;
    };
    let mut frame = Vec::new();
    let body_in_frame = encode(&rec, &mut frame);
    assert_eq!(frame.len(), encoded_len(&rec), "encoded_len disagrees");
    let header: &[u8; record::HEADER_LEN] = frame[..record::HEADER_LEN].try_into().unwrap();
    assert_eq!(
        record::decode_header(header),
        Ok((payload.len() as u32, kind, crc))
    );
    assert_eq!(&frame[record::HEADER_LEN..], payload, "not the same bytes");
    if let Some(message) = rec.message() {
        assert_eq!(body_in_frame, record::HEADER_LEN + body_at);
        assert_eq!(&payload[body_at..], message.to_vec());
    }
    let (again, _) = R::decode_payload(kind, crc, &frame[record::HEADER_LEN..]).unwrap();
    assert_eq!(again, rec);
    true
}

/// Entry point for the fuzz targets in `fuzz/` (not an API): decodes `raw` as a checkpoint
/// file, then `body` wrapped in a valid checkpoint header (so the fuzzer reaches the body
/// parser), and checks that what decodes encodes to a checkpoint that decodes to the same index.
/// Returns whether the wrapped body decoded.
#[doc(hidden)]
pub fn fuzz_decode_checkpoint(raw: &[u8], body: &[u8]) -> bool {
    if let Ok(cp) = checkpoint::decode(raw) {
        fuzz_checkpoint_round_trip(&cp);
    }
    let mut file = b"SURELCP1".to_vec();
    file.extend_from_slice(&crc32c::crc32c(body).to_le_bytes());
    file.extend_from_slice(&(body.len() as u64).to_le_bytes());
    file.extend_from_slice(body);
    match checkpoint::decode(&file) {
        Ok(cp) => {
            fuzz_checkpoint_round_trip(&cp);
            true
        }
        Err(_) => false,
    }
}

fn fuzz_checkpoint_round_trip(cp: &checkpoint::Checkpoint) {
    let bytes = checkpoint::encode(&cp.index, cp.pos, &cp.sealed);
    let again = checkpoint::decode(&bytes).expect("an encoded checkpoint decodes");
    assert_eq!(again.pos, cp.pos);
    assert_eq!(again.sealed, cp.sealed);
    assert_eq!(canonical_index(&again.index), canonical_index(&cp.index));
}

/// The index as sorted, comparable text (its maps iterate in random order).
fn canonical_index(index: &index::ShardIndex) -> String {
    let mut out = format!("{} {}\n", index.next_mailbox_id, index.last_uidvalidity);
    let mut accounts: Vec<_> = index.accounts.iter().collect();
    accounts.sort_by(|a, b| a.0.cmp(b.0));
    for (key, acc) in accounts {
        let mut names: Vec<_> = acc.by_name.iter().collect();
        names.sort();
        out.push_str(&format!("{key:?} {names:?}\n"));
        let mut mailboxes: Vec<_> = acc.mailboxes.iter().collect();
        mailboxes.sort_by_key(|(id, _)| **id);
        for (id, mb) in mailboxes {
            out.push_str(&format!(
                "{id} {:?} {:?} {} {} {} {} {:?}\n",
                mb.name,
                mb.special_use,
                mb.subscribed,
                mb.uidvalidity,
                mb.uidnext,
                mb.highest_modseq,
                mb.expunged
            ));
            for m in &mb.messages {
                out.push_str(&format!("  {:?} {:?}\n", m.meta, m.loc));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;

/// Rewrites the closed one-shard store at `dir` as the release before OBJECTID/SAVEDATE wrote
/// it: appends without origin (kind 6), no checkpoint. Returns how many appends it changed.
#[cfg(test)]
pub(crate) fn rewrite_as_pre_origin(dir: &std::path::Path) -> usize {
    let shard = recovery::shard_dir(dir, 0);
    let mut stripped = 0;
    for n in segment::list_segments(&shard).unwrap() {
        let seg = segment::segment_path(&shard, n);
        let raw = std::fs::read(&seg).unwrap();
        let (mut old, mut pos) = (Vec::new(), 0);
        while pos < raw.len() {
            let (mut rec, len) = record::decode(&raw[pos..]).unwrap();
            pos += len;
            if let record::Record::MessageAppend { origin, .. } = &mut rec {
                stripped += usize::from(origin.take().is_some());
            }
            rec.encode(&mut old);
        }
        std::fs::write(&seg, &old).unwrap();
    }
    let _ = std::fs::remove_file(shard.join(checkpoint::FILE_NAME));
    stripped
}
