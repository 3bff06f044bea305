//! Accounts, passwords and recipient resolution.
//!
//! * [`UserDb`]: the accounts file in the data directory (`users`), one account per line with its
//!   Argon2id PHC hash. `surel user add/passwd/remove/list` edit it (atomically: write a temp file,
//!   fsync, rename); a running server notices the change (mtime/size/inode checked at most once per
//!   second) and reloads, so changes need no restart.
//! * [`Authenticator`]: verifies passwords. Argon2 (~34 ms) never runs on a core's event loop: it
//!   runs on a small pool of verifier threads, and a cache of verified credentials (keyed by an
//!   HMAC of the password under a per-process random key, invalidated when the stored hash
//!   changes) makes repeated logins cost microseconds. Failed attempts close a gate per client
//!   address and per account for a growing delay ([`throttle`]).
//! * [`Directory`]: answers "is this a local domain / account / alias?" for RCPT TO, synchronously
//!   from memory. [`LocalDirectory`] implements it over the accounts snapshot plus configured
//!   domains and aliases.
//!
//! Addresses are canonicalized to lowercase as a whole ([`canonical_address`]): one spelling
//! per account, so the accounts file, mailboxes, the credential cache and RCPT resolution all
//! agree without each doing its own case folding.
//!
//! Wiring: open one [`UserDb`] per process and clone it (clones share the live snapshot); build
//! one [`Authenticator`] and one [`LocalDirectory`] from it and hand clones/`Arc`s to every
//! core. Drivers call `Authenticator::verify(ip, user, pass).await` and answer `Throttled` and
//! `Busy` with their protocol's temporary failure.

mod directory;
pub mod throttle;
mod users;
mod verifier;

pub use directory::{DirectoryConfig, LocalDirectory, MAX_ALIAS_DEPTH};
pub use throttle::ThrottleConfig;
pub use users::{
    AccountTable, REFRESH_INTERVAL_MS, USERS_FILE, USERS_LOCK_FILE, UserDb, canonical_address,
};
pub use verifier::{AuthConfig, Authenticator};

use std::net::IpAddr;

/// Errors of the auth layer.
#[derive(Debug)]
pub enum AuthError {
    Io(std::io::Error),
    /// The users file has a malformed line.
    BadUsersFile {
        line: usize,
        why: String,
    },
    BadAddress(String),
    UnknownUser(String),
    UserExists(String),
    Hash(String),
}

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthError::Io(e) => write!(f, "{e}"),
            AuthError::BadUsersFile { line, why } => write!(f, "users file, line {line}: {why}"),
            AuthError::BadAddress(a) => write!(f, "bad address: {a:?}"),
            AuthError::UnknownUser(a) => write!(f, "unknown user: {a}"),
            AuthError::UserExists(a) => write!(f, "user already exists: {a}"),
            AuthError::Hash(e) => write!(f, "password hash error: {e}"),
        }
    }
}
impl std::error::Error for AuthError {}
impl From<std::io::Error> for AuthError {
    fn from(e: std::io::Error) -> Self {
        AuthError::Io(e)
    }
}

/// What a recipient address resolves to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recipient {
    /// Deliver to these local accounts (an alias may expand to several; `+tag` is stripped;
    /// `postmaster@<local domain>` goes to the configured postmaster account).
    Local(Vec<String>),
    /// The domain is local but no such account or alias exists (550 5.1.1).
    UnknownLocal,
    /// Not a local domain: relaying, allowed only for authenticated clients.
    Remote,
}

/// Outcome of a login attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthOutcome {
    /// Authenticated as this canonical account address.
    Accepted(String),
    /// Wrong password or unknown user.
    Rejected,
    /// Too many recent failures from this address or against this account: nothing was
    /// checked. Answer with a temporary failure.
    Throttled,
    /// The password checkers are saturated for this client: nothing was checked, and it is
    /// not a failure. Answer with a temporary failure.
    Busy,
}

impl AuthOutcome {
    /// Not a verdict on the password: the client should try again later.
    pub fn is_temporary(&self) -> bool {
        matches!(self, AuthOutcome::Throttled | AuthOutcome::Busy)
    }
}

/// Used by protocol drivers; implemented by the concrete auth service.
pub trait Directory: Send + Sync {
    fn resolve(&self, address: &str) -> Recipient;
    fn is_local_domain(&self, domain: &str) -> bool;
}

/// Client identity used for throttling.
pub type ClientIp = IpAddr;
