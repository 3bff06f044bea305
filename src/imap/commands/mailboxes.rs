//! CREATE, DELETE, RENAME, SUBSCRIBE/UNSUBSCRIBE, LIST/LSUB (LIST-EXTENDED, LIST-STATUS)
//! and STATUS.

use std::collections::HashMap;

use imap_codec::imap_types::{
    mailbox::{ListMailbox, Mailbox},
    status::StatusDataItemName,
};

use super::{mailbox_name, special_use_attr, write_mailbox};
use crate::imap::children::Hierarchy;
use crate::imap::codec::{ListOptions, mutf7_decode};
use crate::imap::session::{ImapSession, Step};
use crate::imap::{ImapError, ImapResult};
use crate::imap_w;
use crate::store::names::HIERARCHY_DELIMITER;
use crate::store::{MailStore, MailboxInfo, StoreError};

/// Longest LIST reference + pattern accepted (matching costs pattern × name length).
const MAX_LIST_PATTERN: usize = 1024;

/// LIST pattern matching: `*` matches anything, `%` anything but the delimiter.
/// Dynamic programming over (pattern, name), O(len(pattern) * len(name)): a backtracking
/// matcher is exponential on patterns like `*a*a*a*a*b`.
pub(crate) fn pattern_matches(pattern: &[u8], name: &[u8]) -> bool {
    // dp[j]: the pattern prefix seen so far matches name[..j].
    let mut dp = vec![false; name.len() + 1];
    dp[0] = true;
    for &p in pattern {
        let mut next = vec![false; name.len() + 1];
        match p {
            b'*' => {
                next[0] = dp[0];
                for j in 1..=name.len() {
                    next[j] = dp[j] || next[j - 1];
                }
            }
            b'%' => {
                next[0] = dp[0];
                for j in 1..=name.len() {
                    next[j] = dp[j] || (next[j - 1] && name[j - 1] != b'/');
                }
            }
            c => {
                for j in 1..=name.len() {
                    next[j] = dp[j - 1] && name[j - 1] == c;
                }
            }
        }
        dp = next;
        if !dp.iter().any(|&m| m) {
            return false;
        }
    }
    dp[name.len()]
}

fn inbox_fold(pattern: &str, name: &str) -> bool {
    // INBOX matches case-insensitively.
    if name == "INBOX" {
        pattern_matches(pattern.to_ascii_uppercase().as_bytes(), b"INBOX")
    } else if let Some(rest) = name.strip_prefix("INBOX/") {
        let up = pattern.to_ascii_uppercase();
        up.starts_with("INBOX/") && pattern_matches(&pattern.as_bytes()[6..], rest.as_bytes())
            || pattern_matches(pattern.as_bytes(), name.as_bytes())
    } else {
        pattern_matches(pattern.as_bytes(), name.as_bytes())
    }
}

impl ImapSession {
    pub(super) async fn create<S: MailStore>(
        &mut self,
        store: &S,
        tag: &str,
        mailbox: &Mailbox<'_>,
        out: &mut Vec<u8>,
    ) -> ImapResult<Step> {
        let mut name = mailbox_name(mailbox, self.rev2)?;
        // RFC 9051 §6.3.4: one trailing delimiter only declares that children will follow.
        if let Some(parent) = name.strip_suffix(HIERARCHY_DELIMITER) {
            name = if parent.eq_ignore_ascii_case("INBOX") {
                "INBOX".into()
            } else {
                parent.to_string()
            };
        }
        if name == "INBOX" {
            return Err(ImapError::no_code("ALREADYEXISTS", "INBOX always exists"));
        }
        // The store checks the name and the account's mailbox count.
        store.create_mailbox(&self.account_name(), &name).await?;
        self.sync_selected(store, true, out);
        // RFC 8474 §4.1: the new mailbox's MAILBOXID in the tagged OK.
        match self.find_mailbox(store, &name) {
            Some(info) => imap_w!(
                out,
                "{tag} OK [MAILBOXID ({})] CREATE completed\r\n",
                super::super::objectid::mailbox_id(info.id, info.uidvalidity)
            ),
            None => imap_w!(out, "{tag} OK CREATE completed\r\n"),
        }
        Ok(Step::Done)
    }

    pub(super) async fn delete<S: MailStore>(
        &mut self,
        store: &S,
        tag: &str,
        mailbox: &Mailbox<'_>,
        out: &mut Vec<u8>,
    ) -> ImapResult<Step> {
        let name = mailbox_name(mailbox, self.rev2)?;
        if name == "INBOX" {
            return Err(ImapError::no_code("CANNOT", "INBOX cannot be deleted"));
        }
        store.delete_mailbox(&self.account_name(), &name).await?;
        self.mark_dirty_if_selected(&name);
        self.sync_selected(store, true, out);
        imap_w!(out, "{tag} OK DELETE completed\r\n");
        Ok(Step::Done)
    }

    pub(super) async fn rename<S: MailStore>(
        &mut self,
        store: &S,
        tag: &str,
        from: &Mailbox<'_>,
        to: &Mailbox<'_>,
        out: &mut Vec<u8>,
    ) -> ImapResult<Step> {
        let (from, to) = (mailbox_name(from, self.rev2)?, mailbox_name(to, self.rev2)?);
        if to == "INBOX" {
            return Err(ImapError::no_code("ALREADYEXISTS", "INBOX always exists"));
        }
        // The store checks the new names (children's included) and, when INBOX's messages
        // move to a new mailbox, the account's mailbox count.
        store
            .rename_mailbox(&self.account_name(), &from, &to)
            .await?;
        self.mark_dirty_if_selected(&from);
        self.sync_selected(store, true, out);
        imap_w!(out, "{tag} OK RENAME completed\r\n");
        Ok(Step::Done)
    }

    pub(super) async fn subscribe<S: MailStore>(
        &mut self,
        store: &S,
        tag: &str,
        mailbox: &Mailbox<'_>,
        on: bool,
        out: &mut Vec<u8>,
    ) -> ImapResult<Step> {
        let name = mailbox_name(mailbox, self.rev2)?;
        store
            .set_subscribed(&self.account_name(), &name, on)
            .await?;
        self.sync_selected(store, true, out);
        imap_w!(
            out,
            "{tag} OK {} completed\r\n",
            if on { "SUBSCRIBE" } else { "UNSUBSCRIBE" }
        );
        Ok(Step::Done)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn list<S: MailStore>(
        &mut self,
        store: &S,
        tag: &str,
        reference: &Mailbox<'_>,
        pattern: &ListMailbox<'_>,
        opts: ListOptions,
        lsub: bool,
        out: &mut Vec<u8>,
    ) -> ImapResult<Step> {
        let verb = if lsub { "LSUB" } else { "LIST" };
        let reference = match reference {
            Mailbox::Inbox => "INBOX".to_string(),
            Mailbox::Other(o) => String::from_utf8_lossy(o.as_ref()).into_owned(),
        };
        let single = match pattern {
            ListMailbox::Token(t) => String::from_utf8_lossy(t.as_ref()).into_owned(),
            ListMailbox::String(s) => String::from_utf8_lossy(s.as_ref()).into_owned(),
        };
        let patterns = opts.patterns.clone().unwrap_or_else(|| vec![single]);
        let patterns: Vec<String> = patterns
            .into_iter()
            .map(|p| {
                if self.rev2 {
                    p
                } else {
                    mutf7_decode(&p).unwrap_or(p)
                }
            })
            .collect();
        if patterns.len() == 1 && patterns[0].is_empty() && !opts.extended {
            imap_w!(
                out,
                "* {verb} (\\Noselect) \"/\" \"\"\r\n{tag} OK {verb} completed\r\n"
            );
            return Ok(Step::Done);
        }
        // RFC 3501 §6.3.8: the reference and the pattern are joined as they are (a reference
        // that does not end in "/" is not a level of hierarchy): `LIST "INBOX" *` lists INBOX
        // and its children, as Dovecot does and curl's imap://host/INBOX URL expects.
        let mut full_patterns = Vec::with_capacity(patterns.len());
        for pattern in &patterns {
            let full = if pattern.starts_with('/') {
                pattern.clone()
            } else {
                format!("{reference}{pattern}")
            };
            if full.len() > MAX_LIST_PATTERN {
                return Err(ImapError::bad("Mailbox pattern too long"));
            }
            full_patterns.push(full);
        }
        let matches_any = |name: &str| full_patterns.iter().any(|p| inbox_fold(p, name));
        let account = self.account_name();
        // The store lists INBOX first, then by name; the hierarchy keeps that order.
        let boxes = store.list_mailboxes(&account);
        let lost = store.lost_subscriptions(&account);
        let tree = Hierarchy::new(
            boxes.iter().map(|b| (b.name.as_str(), b.subscribed)),
            lost.iter().map(String::as_str),
        );
        let info_of: HashMap<&str, &MailboxInfo> =
            boxes.iter().map(|b| (b.name.as_str(), b)).collect();
        // RFC 3501 knows only \Noselect; RFC 5258 and RFC 9051 name a name without a
        // mailbox \NonExistent (which implies \Noselect).
        let missing_attr = if self.rev2 || opts.extended {
            "\\NonExistent"
        } else {
            "\\Noselect"
        };
        for (name, ni) in tree.names() {
            if !matches_any(name) {
                continue;
            }
            if lsub {
                // RFC 3501 §6.3.9: with `%`, an unsubscribed level that has subscribed
                // descendants the pattern does not reach is shown as \Noselect, so the
                // client can descend.
                let attrs = if ni.subscribed && ni.exists {
                    ""
                } else if ni.subscribed
                    || tree.subscribed_descendants(name).any(|d| !matches_any(d))
                {
                    "\\Noselect"
                } else {
                    continue;
                };
                imap_w!(out, "* LSUB ({attrs}) \"/\" ");
                write_mailbox(out, name, self.rev2);
                out.extend_from_slice(b"\r\n");
                continue;
            }
            let child_subscribed = tree.has_subscribed_descendant(name);
            if opts.select_subscribed {
                if !(ni.subscribed || opts.recursive_match && child_subscribed) {
                    continue;
                }
            } else if !ni.exists && !tree.has_children(name) {
                // A subscription alone (or a level above one) is no mailbox to list.
                continue;
            }
            let info = info_of.get(name).copied();
            let special_use = info.and_then(|b| b.special_use);
            if opts.select_special_use && special_use.is_none() {
                continue;
            }
            let mut attrs: Vec<&str> = Vec::new();
            if !ni.exists {
                attrs.push(missing_attr);
            }
            attrs.push(tree.child_attr(name));
            if (opts.select_subscribed || opts.return_subscribed) && ni.subscribed {
                attrs.push("\\Subscribed");
            }
            if let Some(su) = special_use {
                attrs.push(special_use_attr(su));
            }
            imap_w!(out, "* LIST ({}) \"/\" ", attrs.join(" "));
            write_mailbox(out, name, self.rev2);
            if opts.recursive_match && opts.select_subscribed && !ni.subscribed && child_subscribed
            {
                out.extend_from_slice(b" (\"CHILDINFO\" (\"SUBSCRIBED\"))");
            }
            out.extend_from_slice(b"\r\n");
            // RFC 5819: no STATUS for a name that is not a mailbox.
            if let (Some(items), Some(b)) = (&opts.return_status, info) {
                let wants_recent = items.iter().any(|i| i == "RECENT");
                let recent = if wants_recent {
                    self.recent_in(store, b)
                } else {
                    0
                };
                write_status(out, b, self.rev2, recent, items.iter().map(String::as_str));
            }
        }
        self.sync_selected(store, true, out);
        imap_w!(out, "{tag} OK {verb} completed\r\n");
        Ok(Step::Done)
    }

    pub(super) fn status<S: MailStore>(
        &mut self,
        store: &S,
        tag: &str,
        mailbox: &Mailbox<'_>,
        items: &[StatusDataItemName],
        mailboxid: Option<bool>,
        out: &mut Vec<u8>,
    ) -> ImapResult<Step> {
        let name = mailbox_name(mailbox, self.rev2)?;
        let info = self
            .find_mailbox(store, &name)
            .ok_or(ImapError::Store(StoreError::NoSuchMailbox))?;
        let names: Vec<&str> = items
            .iter()
            .map(|i| match i {
                StatusDataItemName::Messages => "MESSAGES",
                StatusDataItemName::Recent => "RECENT",
                StatusDataItemName::UidNext => "UIDNEXT",
                StatusDataItemName::UidValidity => "UIDVALIDITY",
                StatusDataItemName::Unseen => "UNSEEN",
                StatusDataItemName::Deleted => "DELETED",
                StatusDataItemName::DeletedStorage => "DELETED-STORAGE",
                StatusDataItemName::Size => "SIZE",
                StatusDataItemName::HighestModSeq => "HIGHESTMODSEQ",
                #[allow(unreachable_patterns)]
                _ => "",
            })
            .collect();
        let mut names = names;
        match mailboxid {
            // MESSAGES only stood in for MAILBOXID in the command imap-codec parsed.
            Some(true) => names = vec!["MAILBOXID"],
            Some(false) => names.push("MAILBOXID"),
            None => {}
        }
        if names.contains(&"HIGHESTMODSEQ") {
            self.enable_condstore(out);
        }
        let recent = if names.contains(&"RECENT") {
            self.recent_in(store, &info)
        } else {
            0
        };
        write_status(out, &info, self.rev2, recent, names.into_iter());
        self.sync_selected(store, true, out);
        imap_w!(out, "{tag} OK STATUS completed\r\n");
        Ok(Step::Done)
    }

    /// Messages no session has claimed as `\Recent` yet (STATUS RECENT; RFC 3501 §6.3.10).
    fn recent_in<S: MailStore>(&self, store: &S, info: &MailboxInfo) -> u64 {
        let account = self.account_name();
        let mark = self
            .config
            .recent
            .claimed_up_to(&account, &info.name, info.uidvalidity);
        if info.uidnext <= mark + 1 {
            return 0;
        }
        store.snapshot(&account, &info.name).map_or(0, |snap| {
            snap.messages.iter().filter(|m| m.uid > mark).count() as u64
        })
    }
}

/// `* STATUS name (ITEM n ...)` for the given upper-case item names.
pub(crate) fn write_status<'a>(
    out: &mut Vec<u8>,
    info: &MailboxInfo,
    rev2: bool,
    recent: u64,
    items: impl Iterator<Item = &'a str>,
) {
    out.extend_from_slice(b"* STATUS ");
    write_mailbox(out, &info.name, rev2);
    out.extend_from_slice(b" (");
    let mut first = true;
    for item in items {
        if item == "MAILBOXID" {
            if !first {
                out.push(b' ');
            }
            first = false;
            imap_w!(
                out,
                "MAILBOXID ({})",
                super::super::objectid::mailbox_id(info.id, info.uidvalidity)
            );
            continue;
        }
        let value = match item {
            "MESSAGES" => info.messages as u64,
            "RECENT" => recent,
            "UIDNEXT" => info.uidnext as u64,
            "UIDVALIDITY" => info.uidvalidity as u64,
            "UNSEEN" => info.unseen as u64,
            "DELETED" => info.deleted as u64,
            "SIZE" => info.size,
            "HIGHESTMODSEQ" => info.highest_modseq,
            _ => continue,
        };
        if !first {
            out.push(b' ');
        }
        first = false;
        imap_w!(out, "{item} {value}");
    }
    out.extend_from_slice(b")\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_patterns() {
        assert!(pattern_matches(b"*", b"a/b"));
        assert!(pattern_matches(b"%", b"a"));
        assert!(!pattern_matches(b"%", b"a/b"));
        assert!(pattern_matches(b"a/%", b"a/b"));
        assert!(pattern_matches(b"a*b", b"a/x/b"));
        assert!(!pattern_matches(b"a", b"ab"));
        assert!(pattern_matches(b"", b""));
        assert!(!pattern_matches(b"", b"a"));
        assert!(pattern_matches(b"a%", b"a"));
        assert!(pattern_matches(b"%/%", b"a/b"));
        assert!(!pattern_matches(b"%/%", b"a/b/c"));
        // No exponential blow-up.
        let name = [b'a'; 200];
        assert!(!pattern_matches(b"*a*a*a*a*a*a*a*a*a*a*a*a*b", &name));
        assert!(inbox_fold("inbox", "INBOX"));
        assert!(inbox_fold("Inbox/%", "INBOX/x"));
        assert!(!inbox_fold("Sent", "INBOX"));
    }
}
