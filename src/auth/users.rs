//! The accounts file (`<data_dir>/users`) and its live-reloaded in-memory snapshot.
//!
//! Format: UTF-8 text, one account per line, `address<TAB>phc-hash`; lines that are blank or
//! start with `#` are comments and are preserved verbatim by edits. (On read, any run of
//! spaces/tabs separates the two fields, so a hand-edited file with spaces still loads; we
//! always write a single TAB.) Accounts keep their file order: the first account is the default
//! postmaster.
//!
//! Addresses are canonicalized to lowercase as a whole (local part included): mail systems in
//! practice treat local parts case-insensitively, and one canonical spelling means one account,
//! one mailbox, one cache key. See [`canonical_address`].
//!
//! Edits (`add`/`set_password`/`remove`) are read-modify-write under an exclusive `flock` on
//! `<data_dir>/users.lock` (so two `surel user ...` invocations cannot lose each other's
//! change), and the new file is written to a temp file in the same directory, fsynced, renamed
//! over `users`, then the directory is fsynced: a crash leaves either the old or the new file.
//!
//! Readers (protocol drivers, the authenticator, the directory) never touch the file on their
//! hot path: they take an `Arc<AccountTable>` snapshot. [`UserDb::accounts`] stats the file at
//! most once per second (an atomic timestamp guards it, so concurrent cores don't all stat) and
//! reloads when (mtime, size, inode, device) changed. A reload that fails (e.g. a half-edited
//! file written in place by hand) is logged and the old snapshot stays in service.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Instant;

use argon2::password_hash::PasswordHasher;
use argon2::password_hash::phc::PasswordHash;
use argon2::{Algorithm, Argon2, Params, Version};

use super::AuthError;

/// Name of the accounts file inside the data directory.
pub const USERS_FILE: &str = "users";
/// Name of the lock file serializing edits of the accounts file.
pub const USERS_LOCK_FILE: &str = "users.lock";
/// Minimum interval between two stats of the accounts file by [`UserDb::refresh_if_changed`].
pub const REFRESH_INTERVAL_MS: u64 = 1000;

const MAX_ADDRESS_LEN: usize = 254;
const MAX_LOCAL_LEN: usize = 64;
const MAX_LABEL_LEN: usize = 63;

/// Validates `address` and returns its canonical form (the whole address lowercased).
///
/// Accepted: `local@domain` with exactly one `@`; the local part is non-empty, at most 64
/// bytes, without whitespace, control characters, `<`, `>` or `"` (no quoted local parts);
/// the domain is dot-separated labels of `[a-z0-9-]` (1..=63 chars, no leading/trailing `-`)
/// with at least two labels, except the bare `localhost`; total length at most 254 bytes.
/// Address literals (`[127.0.0.1]`) are not valid *account* addresses.
pub fn canonical_address(address: &str) -> Result<String, AuthError> {
    let bad = || AuthError::BadAddress(address.to_string());
    if address.is_empty() || address.len() > MAX_ADDRESS_LEN {
        return Err(bad());
    }
    let (local, domain) = address.split_once('@').ok_or_else(bad)?;
    if local.is_empty()
        || local.len() > MAX_LOCAL_LEN
        || local
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"' | '@'))
    {
        return Err(bad());
    }
    let domain = canonical_domain(domain).ok_or_else(bad)?;
    if !domain.contains('.') && domain != "localhost" {
        return Err(bad());
    }
    Ok(format!("{}@{}", local.to_lowercase(), domain))
}

/// Lowercases and validates a domain name (labels of `[a-z0-9-]`); `None` if invalid.
/// Single-label domains are accepted here; [`canonical_address`] adds the "two labels or
/// `localhost`" rule for accounts.
pub(crate) fn canonical_domain(domain: &str) -> Option<String> {
    if domain.is_empty() || domain.len() > MAX_ADDRESS_LEN {
        return None;
    }
    let domain = domain.to_ascii_lowercase();
    for label in domain.split('.') {
        if label.is_empty()
            || label.len() > MAX_LABEL_LEN
            || label.starts_with('-')
            || label.ends_with('-')
            || !label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return None;
        }
    }
    Some(domain)
}

/// An immutable snapshot of the accounts file.
#[derive(Debug, Default)]
pub struct AccountTable {
    /// (canonical address, PHC string), in file order.
    accounts: Vec<(String, String)>,
    index: HashMap<String, usize>,
    domains: HashSet<String>,
}

impl AccountTable {
    fn from_accounts(accounts: Vec<(String, String)>) -> AccountTable {
        let index = accounts
            .iter()
            .enumerate()
            .map(|(i, (a, _))| (a.clone(), i))
            .collect();
        let domains = accounts
            .iter()
            .filter_map(|(a, _)| a.rsplit_once('@').map(|(_, d)| d.to_string()))
            .collect();
        AccountTable {
            accounts,
            index,
            domains,
        }
    }

    /// The PHC hash of a canonical address.
    pub fn phc(&self, canonical: &str) -> Option<&str> {
        self.index
            .get(canonical)
            .map(|&i| self.accounts[i].1.as_str())
    }

    /// Whether this canonical address is an account.
    pub fn contains(&self, canonical: &str) -> bool {
        self.index.contains_key(canonical)
    }

    /// Canonical addresses in file order.
    pub fn addresses(&self) -> impl Iterator<Item = &str> {
        self.accounts.iter().map(|(a, _)| a.as_str())
    }

    /// The first account of the file (the default postmaster).
    pub fn first(&self) -> Option<&str> {
        self.accounts.first().map(|(a, _)| a.as_str())
    }

    /// Whether some account lives in this (lowercase) domain.
    pub fn has_domain(&self, domain: &str) -> bool {
        self.domains.contains(domain)
    }

    /// The domains of all accounts.
    pub fn domains(&self) -> impl Iterator<Item = &str> {
        self.domains.iter().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.accounts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
    }
}

/// Identity of one version of the file: changes whenever the file is replaced or rewritten.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileStamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
}

impl FileStamp {
    fn of(m: &std::fs::Metadata) -> FileStamp {
        FileStamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: m.mtime(),
            mtime_nsec: m.mtime_nsec(),
        }
    }
}

/// One line of the file, kept so that edits preserve comments and order.
#[derive(Clone, Debug)]
enum Line {
    Other(String),
    Account { address: String, phc: String },
}

#[derive(Debug)]
struct Shared {
    table: RwLock<Arc<AccountTable>>,
    /// Stamp of the file the current table was loaded from (`None`: file absent).
    stamp: Mutex<Option<FileStamp>>,
    /// Milliseconds since [`epoch`] of the last stat (0 = never).
    last_check_ms: AtomicU64,
    /// A refresher thread watches the file, so readers never stat it themselves.
    watched: std::sync::atomic::AtomicBool,
}

fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    // +1 so that the first check ever is never mistaken for "never checked".
    epoch.elapsed().as_millis() as u64 + 1
}

/// Handle on the accounts file; cheap to clone (clones share the snapshot).
#[derive(Clone, Debug)]
pub struct UserDb {
    dir: PathBuf,
    path: PathBuf,
    params: Params,
    shared: Arc<Shared>,
}

impl UserDb {
    /// Opens the accounts file of `data_dir` (a missing file means no users). New hashes use
    /// the argon2 crate's default parameters (Argon2id v19, m=19 MiB, t=2, p=1).
    pub fn open(data_dir: impl AsRef<Path>) -> Result<UserDb, AuthError> {
        Self::open_with_params(data_dir, Params::default())
    }

    /// Like [`UserDb::open`] but hashes new passwords with these Argon2id parameters (tests use
    /// cheap ones; verification always uses the parameters recorded in each hash).
    pub fn open_with_params(
        data_dir: impl AsRef<Path>,
        params: Params,
    ) -> Result<UserDb, AuthError> {
        let dir = data_dir.as_ref().to_path_buf();
        let path = dir.join(USERS_FILE);
        let (lines, stamp) = read_file(&path)?;
        let table = table_of(&lines);
        Ok(UserDb {
            dir,
            path,
            params,
            shared: Arc::new(Shared {
                table: RwLock::new(Arc::new(table)),
                stamp: Mutex::new(stamp),
                last_check_ms: AtomicU64::new(now_ms()),
                watched: std::sync::atomic::AtomicBool::new(false),
            }),
        })
    }

    /// Path of the accounts file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The Argon2 parameters used for new hashes.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// Hashes a password the way [`UserDb::add`] would (Argon2id, random salt) into a PHC string.
    pub fn hash_password(&self, password: &str) -> Result<String, AuthError> {
        hash_password(&self.params, password.as_bytes())
    }

    /// The current snapshot, after a (rate-limited) check for changes of the file.
    pub fn accounts(&self) -> Arc<AccountTable> {
        if !self.shared.watched.load(Ordering::Relaxed) {
            self.refresh_if_changed();
        }
        self.snapshot()
    }

    /// Starts a thread that checks the file every [`REFRESH_INTERVAL_MS`] and reloads it when
    /// it changed, so [`UserDb::accounts`] is a memory read only (no stat on an event loop).
    /// The thread ends when the last clone of this database is dropped.
    pub fn watch(&self) -> std::io::Result<()> {
        let weak = Arc::downgrade(&self.shared);
        let path = self.path.clone();
        let (dir, params) = (self.dir.clone(), self.params.clone());
        std::thread::Builder::new()
            .name("users-watch".into())
            .spawn(move || {
                while let Some(shared) = weak.upgrade() {
                    let db = UserDb {
                        dir: dir.clone(),
                        path: path.clone(),
                        params: params.clone(),
                        shared,
                    };
                    db.force_refresh();
                    drop(db);
                    std::thread::sleep(std::time::Duration::from_millis(REFRESH_INTERVAL_MS));
                }
            })?;
        self.shared.watched.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// The current snapshot, without looking at the file.
    pub fn snapshot(&self) -> Arc<AccountTable> {
        self.shared
            .table
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reloads the file if it changed since the last load; stats it at most once per
    /// [`REFRESH_INTERVAL_MS`]. Returns whether a new snapshot was installed.
    pub fn refresh_if_changed(&self) -> bool {
        let now = now_ms();
        let last = self.shared.last_check_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) < REFRESH_INTERVAL_MS {
            return false;
        }
        // Only the thread that wins the race does the stat.
        if self
            .shared
            .last_check_ms
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        self.reload(false)
    }

    /// Checks the file now, ignoring the rate limit; reloads it if it changed.
    pub fn force_refresh(&self) -> bool {
        self.shared.last_check_ms.store(now_ms(), Ordering::Relaxed);
        self.reload(false)
    }

    fn reload(&self, always: bool) -> bool {
        let current = match std::fs::metadata(&self.path) {
            Ok(m) => Some(FileStamp::of(&m)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot stat users file");
                return false;
            }
        };
        let mut stamp = self.shared.stamp.lock().unwrap_or_else(|e| e.into_inner());
        if !always && *stamp == current {
            return false;
        }
        match read_file(&self.path) {
            Ok((lines, new_stamp)) => {
                let table = Arc::new(table_of(&lines));
                tracing::info!(accounts = table.len(), "users file (re)loaded");
                *self.shared.table.write().unwrap_or_else(|e| e.into_inner()) = table;
                *stamp = new_stamp;
                true
            }
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e,
                    "users file changed but cannot be loaded; keeping the previous accounts");
                // Remember the stamp so a broken file is not re-parsed every second.
                *stamp = current;
                false
            }
        }
    }

    /// Canonical addresses of all accounts, in file order (re-read from disk).
    pub fn list(&self) -> Result<Vec<String>, AuthError> {
        let (lines, _) = read_file(&self.path)?;
        Ok(lines
            .into_iter()
            .filter_map(|l| match l {
                Line::Account { address, .. } => Some(address),
                Line::Other(_) => None,
            })
            .collect())
    }

    /// Creates an account. Errors: `BadAddress`, `UserExists`.
    pub fn add(&self, address: &str, password: &str) -> Result<(), AuthError> {
        self.add_many(&[(address.to_string(), password.to_string())])
    }

    /// Creates several accounts in one edit of the file, hashing their passwords on all cores
    /// (bulk imports and benchmark set-up would otherwise pay one Argon2 hash and one file
    /// rewrite per account, one after the other). All or nothing: any bad or existing address
    /// fails the whole import.
    pub fn add_many(&self, accounts: &[(String, String)]) -> Result<(), AuthError> {
        let mut addresses = Vec::with_capacity(accounts.len());
        for (address, _) in accounts {
            let address = canonical_address(address)?;
            if addresses.contains(&address) {
                return Err(AuthError::UserExists(address));
            }
            addresses.push(address);
        }
        // Fail fast before paying for the hashes; checked again under the lock.
        let existing = self.list()?;
        if let Some(a) = addresses.iter().find(|a| existing.contains(a)) {
            return Err(AuthError::UserExists(a.clone()));
        }
        let phcs = self.hash_passwords(accounts.iter().map(|(_, p)| p.as_str()).collect())?;
        self.edit(|lines| {
            for (address, phc) in addresses.iter().zip(&phcs) {
                if has_account(lines, address) {
                    return Err(AuthError::UserExists(address.clone()));
                }
                lines.push(Line::Account {
                    address: address.clone(),
                    phc: phc.clone(),
                });
            }
            Ok(())
        })
    }

    fn hash_passwords(&self, passwords: Vec<&str>) -> Result<Vec<String>, AuthError> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let chunk = passwords.len().div_ceil(threads).max(1);
        std::thread::scope(|scope| {
            let workers: Vec<_> = passwords
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(move || {
                        part.iter()
                            .map(|p| self.hash_password(p))
                            .collect::<Result<Vec<_>, _>>()
                    })
                })
                .collect();
            let mut all = Vec::with_capacity(passwords.len());
            for w in workers {
                all.extend(
                    w.join()
                        .map_err(|_| AuthError::Hash("hash thread panicked".into()))??,
                );
            }
            Ok(all)
        })
    }

    /// Replaces the password of an account. Errors: `BadAddress`, `UnknownUser`.
    pub fn set_password(&self, address: &str, password: &str) -> Result<(), AuthError> {
        let address = canonical_address(address)?;
        if !self.list()?.contains(&address) {
            return Err(AuthError::UnknownUser(address));
        }
        let new_phc = self.hash_password(password)?;
        self.edit(|lines| {
            for line in lines.iter_mut() {
                if let Line::Account { address: a, phc } = line
                    && *a == address
                {
                    *phc = new_phc.clone();
                    return Ok(());
                }
            }
            Err(AuthError::UnknownUser(address.clone()))
        })
    }

    /// Deletes an account. Errors: `BadAddress`, `UnknownUser`.
    pub fn remove(&self, address: &str) -> Result<(), AuthError> {
        let address = canonical_address(address)?;
        self.edit(|lines| {
            let before = lines.len();
            lines.retain(|l| !matches!(l, Line::Account { address: a, .. } if *a == address));
            if lines.len() == before {
                return Err(AuthError::UnknownUser(address.clone()));
            }
            Ok(())
        })
    }

    /// Read-modify-write of the file under the edit lock, then reload the snapshot.
    fn edit(
        &self,
        change: impl FnOnce(&mut Vec<Line>) -> Result<(), AuthError>,
    ) -> Result<(), AuthError> {
        // A fresh install may not have its data directory yet (`surel user add` comes first).
        std::fs::create_dir_all(&self.dir)?;
        let _lock = EditLock::acquire(&self.dir.join(USERS_LOCK_FILE))?;
        let (mut lines, _) = read_file(&self.path)?;
        change(&mut lines)?;
        let mut text = String::new();
        for line in &lines {
            match line {
                Line::Other(s) => text.push_str(s),
                Line::Account { address, phc } => {
                    text.push_str(address);
                    text.push('\t');
                    text.push_str(phc);
                }
            }
            text.push('\n');
        }
        write_atomically(&self.dir, &self.path, text.as_bytes())?;
        self.shared.last_check_ms.store(now_ms(), Ordering::Relaxed);
        self.reload(true);
        Ok(())
    }
}

fn has_account(lines: &[Line], address: &str) -> bool {
    lines
        .iter()
        .any(|l| matches!(l, Line::Account { address: a, .. } if a == address))
}

fn table_of(lines: &[Line]) -> AccountTable {
    AccountTable::from_accounts(
        lines
            .iter()
            .filter_map(|l| match l {
                Line::Account { address, phc } => Some((address.clone(), phc.clone())),
                Line::Other(_) => None,
            })
            .collect(),
    )
}

pub(crate) fn hash_password(params: &Params, password: &[u8]) -> Result<String, AuthError> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password(password)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

/// Reads and parses the file; a missing file is an empty one. The stamp is taken from the
/// opened file descriptor, so it describes exactly the bytes that were read.
fn read_file(path: &Path) -> Result<(Vec<Line>, Option<FileStamp>), AuthError> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), None)),
        Err(e) => return Err(e.into()),
    };
    let stamp = FileStamp::of(&file.metadata()?);
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    Ok((parse(&text)?, Some(stamp)))
}

fn parse(text: &str) -> Result<Vec<Line>, AuthError> {
    let mut lines = Vec::new();
    let mut seen = HashSet::new();
    for (i, raw) in text.lines().enumerate() {
        let bad = |why: String| AuthError::BadUsersFile { line: i + 1, why };
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            lines.push(Line::Other(raw.to_string()));
            continue;
        }
        let (address, phc) = trimmed
            .split_once([' ', '\t'])
            .ok_or_else(|| bad("expected `address<TAB>hash`".into()))?;
        let phc = phc.trim();
        let address = canonical_address(address).map_err(|e| bad(e.to_string()))?;
        let parsed = PasswordHash::new(phc).map_err(|e| bad(format!("bad password hash: {e}")))?;
        if !parsed.algorithm.as_str().starts_with("argon2") {
            return Err(bad(format!(
                "unsupported hash algorithm {}",
                parsed.algorithm
            )));
        }
        if !seen.insert(address.clone()) {
            return Err(bad(format!("duplicate account {address}")));
        }
        lines.push(Line::Account {
            address,
            phc: phc.to_string(),
        });
    }
    Ok(lines)
}

/// Writes `path` atomically: temp file in the same directory, fsync, rename, fsync directory.
/// The file is created mode 0600 (it holds password hashes).
fn write_atomically(dir: &Path, path: &Path, contents: &[u8]) -> Result<(), AuthError> {
    let tmp = dir.join(format!(".{USERS_FILE}.tmp.{}", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(AuthError::from)
}

/// An exclusive `flock` held until drop (closing the descriptor releases it).
struct EditLock {
    _file: File,
}

impl EditLock {
    fn acquire(path: &Path) -> std::io::Result<EditLock> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)?;
        loop {
            // SAFETY: flock on a descriptor we own; no memory is involved.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                return Ok(EditLock { _file: file });
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }
}

#[cfg(test)]
pub(crate) fn test_params() -> Params {
    Params::new(Params::MIN_M_COST, 1, 1, None).expect("valid params")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(dir: &Path) -> UserDb {
        UserDb::open_with_params(dir, test_params()).unwrap()
    }

    #[test]
    fn add_many_is_one_all_or_nothing_edit() {
        let dir = tempfile::tempdir().unwrap();
        let users = db(dir.path());
        let batch: Vec<(String, String)> = (1..=5)
            .map(|i| (format!("user{i}@Example.test"), format!("pw{i}")))
            .collect();
        users.add_many(&batch).unwrap();
        assert_eq!(users.list().unwrap().len(), 5);
        assert!(users.snapshot().contains("user3@example.test"));
        // One existing address in a batch rejects the whole batch.
        let again = vec![
            ("new@example.test".to_string(), "x".to_string()),
            ("user1@example.test".to_string(), "y".to_string()),
        ];
        assert!(matches!(
            users.add_many(&again),
            Err(AuthError::UserExists(_))
        ));
        assert_eq!(users.list().unwrap().len(), 5);
        let dup = vec![
            ("d@example.test".into(), "x".into()),
            ("D@example.test".into(), "y".into()),
        ];
        assert!(matches!(
            users.add_many(&dup),
            Err(AuthError::UserExists(_))
        ));
    }

    #[test]
    fn canonical_addresses() {
        assert_eq!(
            canonical_address("Bob@Example.COM").unwrap(),
            "bob@example.com"
        );
        assert_eq!(
            canonical_address("root@localhost").unwrap(),
            "root@localhost"
        );
        assert_eq!(
            canonical_address("a.b+c@x-y.z9.org").unwrap(),
            "a.b+c@x-y.z9.org"
        );
        for bad in [
            "",
            "bob",
            "@example.com",
            "bob@",
            "bob@@example.com",
            "b@b@example.com",
            "bo b@example.com",
            "bob@exa mple.com",
            "<bob@example.com>",
            "bob\t@example.com",
            "bob\n@example.com",
            "bob@example",
            "bob@example..com",
            "bob@-example.com",
            "bob@exam_ple.com",
            "bob@[127.0.0.1]",
            "\"bob\"@example.com",
        ] {
            assert!(
                matches!(canonical_address(bad), Err(AuthError::BadAddress(_))),
                "{bad:?} accepted"
            );
        }
        let long = format!("{}@{}.com", "a".repeat(60), "b".repeat(60));
        assert!(canonical_address(&long).is_ok());
        let too_long = format!("a@{}.com", vec!["b".repeat(60); 5].join("."));
        assert!(too_long.len() > 254);
        assert!(canonical_address(&too_long).is_err());
        assert!(canonical_address(&format!("{}@x.com", "a".repeat(65))).is_err());
    }

    #[test]
    fn add_list_passwd_remove_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let users = db(dir.path());
        assert!(users.list().unwrap().is_empty());
        assert!(users.snapshot().is_empty());

        users.add("Alice@Example.com", "pw-a").unwrap();
        users.add("bob@example.com", "pw-b").unwrap();
        users.add("carol@other.org", "pw-c").unwrap();
        assert_eq!(
            users.list().unwrap(),
            ["alice@example.com", "bob@example.com", "carol@other.org"]
        );
        let snap = users.snapshot();
        assert_eq!(snap.first(), Some("alice@example.com"));
        assert!(snap.has_domain("other.org"));
        let old_phc = snap.phc("bob@example.com").unwrap().to_string();
        assert!(old_phc.starts_with("$argon2id$v=19$"));

        assert!(matches!(
            users.add("ALICE@example.com", "x"),
            Err(AuthError::UserExists(a)) if a == "alice@example.com"
        ));

        users.set_password("BOB@example.com", "pw-b2").unwrap();
        let new_phc = users.snapshot().phc("bob@example.com").unwrap().to_string();
        assert_ne!(old_phc, new_phc);
        assert!(matches!(
            users.set_password("nobody@example.com", "x"),
            Err(AuthError::UnknownUser(_))
        ));

        users.remove("alice@example.com").unwrap();
        assert!(matches!(
            users.remove("alice@example.com"),
            Err(AuthError::UnknownUser(_))
        ));
        assert!(matches!(
            users.remove("not an address"),
            Err(AuthError::BadAddress(_))
        ));
        assert!(matches!(
            users.add("bad", "x"),
            Err(AuthError::BadAddress(_))
        ));
        assert_eq!(
            users.list().unwrap(),
            ["bob@example.com", "carol@other.org"]
        );
        assert_eq!(users.snapshot().first(), Some("bob@example.com"));
        assert!(!users.snapshot().contains("alice@example.com"));

        // A fresh handle sees the same thing.
        let again = db(dir.path());
        assert_eq!(
            again.list().unwrap(),
            ["bob@example.com", "carol@other.org"]
        );
        assert_eq!(
            again.snapshot().phc("bob@example.com"),
            Some(new_phc.as_str())
        );
    }

    #[test]
    fn file_format_is_stable_and_comments_survive() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(USERS_FILE);
        let users = db(dir.path());
        let phc = users.hash_password("secret").unwrap();
        std::fs::write(
            &path,
            format!("# accounts\n\nold@example.com   {phc}\n# end\n"),
        )
        .unwrap();
        users.force_refresh();
        assert_eq!(users.snapshot().phc("old@example.com"), Some(phc.as_str()));
        users.add("new@example.com", "pw").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5);
        assert_eq!(lines[0], "# accounts");
        assert_eq!(lines[1], "");
        assert_eq!(lines[2], format!("old@example.com\t{phc}"));
        assert_eq!(lines[3], "# end");
        let (addr, new_phc) = lines[4].split_once('\t').unwrap();
        assert_eq!(addr, "new@example.com");
        assert!(new_phc.starts_with("$argon2id$v=19$m=8,t=1,p=1$"));
        assert!(text.ends_with('\n'));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn atomic_write_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let users = db(dir.path());
        users.add("a@example.com", "1").unwrap();
        users.set_password("a@example.com", "2").unwrap();
        users.remove("a@example.com").unwrap();
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, [USERS_FILE, USERS_LOCK_FILE]);
    }

    #[test]
    fn production_default_is_argon2id_with_crate_defaults() {
        use argon2::password_hash::PasswordVerifier;
        let dir = tempfile::tempdir().unwrap();
        let users = UserDb::open(dir.path()).unwrap();
        let phc = users.hash_password("pw").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(
            Argon2::default()
                .verify_password(b"pw", phc.as_str())
                .is_ok()
        );
    }

    #[test]
    fn missing_data_dir_is_created_on_first_add() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("not").join("yet");
        let users = db(&data);
        assert!(users.list().unwrap().is_empty());
        users.add("first@localhost", "pw").unwrap();
        assert_eq!(users.list().unwrap(), ["first@localhost"]);
    }

    #[test]
    fn malformed_file_is_reported_with_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(USERS_FILE);
        std::fs::write(&path, "# c\nbob@example.com\n").unwrap();
        assert!(matches!(
            UserDb::open(dir.path()),
            Err(AuthError::BadUsersFile { line: 2, .. })
        ));
        std::fs::write(&path, "bob@example.com\tnot-a-hash\n").unwrap();
        assert!(matches!(
            UserDb::open(dir.path()),
            Err(AuthError::BadUsersFile { line: 1, .. })
        ));
    }

    #[test]
    fn reload_picks_up_external_change() {
        let dir = tempfile::tempdir().unwrap();
        let server = db(dir.path());
        let cli = db(dir.path());
        assert!(server.snapshot().is_empty());
        server.force_refresh();
        let checked = Instant::now();
        cli.add("x@example.com", "pw").unwrap();
        // Rate limited: the server checked less than a second ago (unless fsync was slow).
        if checked.elapsed().as_millis() < 900 {
            assert!(!server.refresh_if_changed());
            assert!(server.snapshot().is_empty());
        }
        assert!(server.force_refresh());
        assert!(server.snapshot().contains("x@example.com"));
        // Nothing changed: no reload.
        assert!(!server.force_refresh());
        cli.remove("x@example.com").unwrap();
        assert!(server.force_refresh());
        assert!(server.snapshot().is_empty());
        // A broken edit keeps the previous snapshot.
        cli.add("y@example.com", "pw").unwrap();
        server.force_refresh();
        std::fs::write(server.path(), "garbage\n").unwrap();
        assert!(!server.force_refresh());
        assert!(server.snapshot().contains("y@example.com"));
    }

    #[test]
    fn concurrent_edits_do_not_lose_updates() {
        let dir = tempfile::tempdir().unwrap();
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let users = db(dir.path());
                std::thread::spawn(move || {
                    for j in 0..3 {
                        users.add(&format!("u{i}-{j}@example.com"), "pw").unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(db(dir.path()).list().unwrap().len(), 12);
    }
}
