//! `\Recent` (RFC 3501 §2.3.2): a message is recent in exactly one session, the first to
//! SELECT its mailbox after it arrived, or the one that has the mailbox selected (read-write)
//! when it arrives. IMAP4rev2 (RFC 9051) dropped it; rev1 clients still count on it.
//!
//! The store keeps no such state: every session of the process shares one [`RecentClaims`]
//! (through [`super::ImapConfig`], so across cores), a per-mailbox mark "UIDs up to here have
//! been claimed". A read-write session claims everything above the mark at SELECT and again
//! whenever it learns of new messages; what it claimed is its `\Recent` set. Claiming is one
//! compare-and-raise under a mutex, so two sessions racing for the same new message cannot
//! both win. EXAMINE (and STATUS) only look: RFC 3501 §6.3.2 forbids EXAMINE to take
//! `\Recent` away from anyone.
//!
//! The marks live in memory only: after a restart the first SELECT finds every message
//! recent, as after any server that loses its session state.

use std::collections::HashMap;
use std::sync::Mutex;

/// Which mailbox a mark belongs to. UIDVALIDITY is part of it: a mailbox deleted and created
/// again under the same name starts from nothing.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct MailboxKey {
    account: String,
    mailbox: String,
    uidvalidity: u32,
}

/// The per-mailbox "claimed up to UID" marks of this process.
#[derive(Debug, Default)]
pub struct RecentClaims {
    marks: Mutex<HashMap<MailboxKey, u32>>,
}

impl RecentClaims {
    /// Claim every UID above the mark up to `up_to` (inclusive) and return the mark before:
    /// UIDs in `(returned, up_to]` are recent in the caller's session and in no other.
    pub fn claim(&self, account: &str, mailbox: &str, uidvalidity: u32, up_to: u32) -> u32 {
        let key = MailboxKey {
            account: account.to_owned(),
            mailbox: mailbox.to_owned(),
            uidvalidity,
        };
        let mut marks = self.marks.lock().unwrap_or_else(|e| e.into_inner());
        let mark = marks.entry(key).or_insert(0);
        let before = *mark;
        *mark = before.max(up_to);
        before
    }

    /// The mark without claiming: UIDs above it are still recent for whoever selects next.
    pub fn claimed_up_to(&self, account: &str, mailbox: &str, uidvalidity: u32) -> u32 {
        let key = MailboxKey {
            account: account.to_owned(),
            mailbox: mailbox.to_owned(),
            uidvalidity,
        };
        let marks = self.marks.lock().unwrap_or_else(|e| e.into_inner());
        marks.get(&key).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_uid_is_claimed_once() {
        let claims = RecentClaims::default();
        assert_eq!(claims.claimed_up_to("a", "INBOX", 1), 0);
        assert_eq!(claims.claim("a", "INBOX", 1, 3), 0);
        // A second session claiming the same range gets nothing new.
        assert_eq!(claims.claim("a", "INBOX", 1, 3), 3);
        // A lower `up_to` (a session with an older view) never lowers the mark.
        assert_eq!(claims.claim("a", "INBOX", 1, 2), 3);
        assert_eq!(claims.claimed_up_to("a", "INBOX", 1), 3);
        // Other accounts, mailboxes and UIDVALIDITYs are separate.
        assert_eq!(claims.claim("b", "INBOX", 1, 5), 0);
        assert_eq!(claims.claim("a", "Sent", 1, 5), 0);
        assert_eq!(claims.claim("a", "INBOX", 2, 5), 0);
    }

    #[test]
    fn racing_cores_never_share_a_uid() {
        let claims = std::sync::Arc::new(RecentClaims::default());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let claims = claims.clone();
                std::thread::spawn(move || {
                    let mut mine = Vec::new();
                    for up_to in 1..=500 {
                        let before = claims.claim("a", "INBOX", 1, up_to);
                        mine.extend(before + 1..=up_to);
                    }
                    mine
                })
            })
            .collect();
        let mut all: Vec<u32> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        all.sort_unstable();
        assert_eq!(all, (1..=500).collect::<Vec<_>>());
    }
}
