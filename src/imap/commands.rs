//! Store-backed commands: [`ImapSession::execute`] and the handlers it dispatches to.
//!
//! Every handler writes its untagged responses and its own tagged OK (response codes such as
//! APPENDUID differ per command); failures come back as [`ImapError`] and are written in one
//! place. Before a tagged OK in the Selected state, pending mailbox updates are sent through
//! [`ImapSession::sync_selected`], with EXPUNGE allowed only where RFC 9051 §7.5.1 allows it.

use std::collections::HashSet;

use imap_codec::imap_types::{
    command::{CommandBody, SelectParameter, StoreModifier},
    extensions::binary::LiteralOrLiteral8,
    flag::{Flag, StoreResponse, StoreType},
    mailbox::{ListMailbox, Mailbox},
    search::SearchKey,
    sequence::SequenceSet,
    status::StatusDataItemName,
};

use super::codec::{ListOptions, SearchReturn, mutf7_decode, mutf7_encode, write_astring};
use super::mailbox::{SelectedMailbox, write_flags_fetch};
use super::search::{self, SearchMessage};
use super::sequence::{self, format_sorted};
use super::session::{ImapCommand, ImapSession, Mode, State, Step};
use super::{ImapError, ImapResult};
use crate::imap_w;
use crate::store::{
    FlagOp, Flags, MailStore, MailboxInfo, NewMessage, SpecialUse, StoreError, SystemFlags,
};

/// The name a client's mailbox argument refers to (INBOX is case-insensitive). Names are
/// stored in UTF-8; IMAP4rev1 clients send modified UTF-7 (RFC 3501 §5.1.3), decoded here.
pub(crate) fn mailbox_name(m: &Mailbox<'_>, rev2: bool) -> String {
    match m {
        Mailbox::Inbox => "INBOX".into(),
        Mailbox::Other(o) => {
            let s = String::from_utf8_lossy(o.as_ref()).into_owned();
            let s = s.trim_end_matches('/').to_string();
            let s = if rev2 {
                s
            } else {
                mutf7_decode(&s).unwrap_or(s)
            };
            if s.eq_ignore_ascii_case("INBOX") {
                "INBOX".into()
            } else {
                s
            }
        }
    }
}

/// Write a stored (UTF-8) mailbox name for this client (modified UTF-7 for IMAP4rev1).
fn write_mailbox(out: &mut Vec<u8>, name: &str, rev2: bool) {
    if rev2 || name.is_ascii() && !name.contains('&') {
        write_astring(out, name.as_bytes());
    } else {
        write_astring(out, mutf7_encode(name).as_bytes());
    }
}

fn to_flags(flags: &[Flag<'_>]) -> Flags {
    let mut f = Flags::default();
    for flag in flags {
        match flag {
            Flag::Seen => f.system.0 |= SystemFlags::SEEN,
            Flag::Answered => f.system.0 |= SystemFlags::ANSWERED,
            Flag::Flagged => f.system.0 |= SystemFlags::FLAGGED,
            Flag::Deleted => f.system.0 |= SystemFlags::DELETED,
            Flag::Draft => f.system.0 |= SystemFlags::DRAFT,
            Flag::Keyword(k) => {
                let k = k.as_ref().to_string();
                if !f.keywords.iter().any(|x| x.eq_ignore_ascii_case(&k)) {
                    f.keywords.push(k);
                }
            }
            // \Recent and unknown system flags cannot be set.
            Flag::Extension(_) => {}
        }
    }
    f
}

fn literal_bytes(message: LiteralOrLiteral8<'_>) -> Vec<u8> {
    match message {
        LiteralOrLiteral8::Literal(l) => l.into_inner().into_owned(),
        LiteralOrLiteral8::Literal8(l) => l.data.into_owned(),
    }
}

fn special_use_attr(s: SpecialUse) -> &'static str {
    match s {
        SpecialUse::Sent => "\\Sent",
        SpecialUse::Drafts => "\\Drafts",
        SpecialUse::Trash => "\\Trash",
        SpecialUse::Junk => "\\Junk",
        SpecialUse::Archive => "\\Archive",
    }
}

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
    /// Run a store command (from [`super::ImapEvent::Command`]). See the module docs of
    /// [`super::session`] for the driver loop around it.
    pub async fn execute<S: MailStore>(
        &mut self,
        store: &S,
        cmd: ImapCommand,
        out: &mut Vec<u8>,
    ) -> Step {
        let ImapCommand { tag, body, extras } = cmd;
        self.mode = Mode::Normal;
        if !self.inbox_checked {
            self.inbox_checked = true;
            self.ensure_inbox(store).await;
        }
        let result = match body {
            CommandBody::Select {
                mailbox,
                parameters,
            } => {
                self.select(store, &tag, &mailbox, &parameters, false, out)
                    .await
            }
            CommandBody::Examine {
                mailbox,
                parameters,
            } => {
                self.select(store, &tag, &mailbox, &parameters, true, out)
                    .await
            }
            CommandBody::Create { mailbox } => self.create(store, &tag, &mailbox, out).await,
            CommandBody::Delete { mailbox } => self.delete(store, &tag, &mailbox, out).await,
            CommandBody::Rename { from, to } => self.rename(store, &tag, &from, &to, out).await,
            CommandBody::Subscribe { mailbox } => {
                self.subscribe(store, &tag, &mailbox, true, out).await
            }
            CommandBody::Unsubscribe { mailbox } => {
                self.subscribe(store, &tag, &mailbox, false, out).await
            }
            CommandBody::List {
                reference,
                mailbox_wildcard,
            } => {
                let opts = extras.list.clone().unwrap_or_default();
                self.list(store, &tag, &reference, &mailbox_wildcard, opts, false, out)
            }
            CommandBody::Lsub {
                reference,
                mailbox_wildcard,
            } => {
                let opts = ListOptions {
                    select_subscribed: true,
                    ..ListOptions::default()
                };
                self.list(store, &tag, &reference, &mailbox_wildcard, opts, true, out)
            }
            CommandBody::Status {
                mailbox,
                item_names,
            } => self.status(store, &tag, &mailbox, &item_names, out),
            CommandBody::Append {
                mailbox,
                flags,
                date,
                message,
            } => {
                let mut messages = vec![(
                    to_flags(&flags),
                    date.map(|d| d.as_ref().timestamp()),
                    literal_bytes(message),
                )];
                for m in extras.more_appends {
                    messages.push((
                        to_flags(&m.flags),
                        m.date.map(|d| d.as_ref().timestamp()),
                        literal_bytes(m.message),
                    ));
                }
                self.append(store, &tag, &mailbox, messages, out).await
            }
            CommandBody::Idle => {
                self.sync_selected(store, true, out);
                out.extend_from_slice(b"+ idling\r\n");
                self.mode = Mode::Idle { tag };
                return Step::Idle;
            }
            body @ (CommandBody::Noop | CommandBody::Check) => {
                self.sync_selected(store, true, out);
                let verb = if body == CommandBody::Noop {
                    "NOOP"
                } else {
                    "CHECK"
                };
                imap_w!(out, "{tag} OK {verb} completed\r\n");
                Ok(Step::Done)
            }
            CommandBody::Close => self.close(store, &tag, true, out).await,
            CommandBody::Unselect => self.close(store, &tag, false, out).await,
            CommandBody::Expunge => self.expunge(store, &tag, None, out).await,
            CommandBody::ExpungeUid { sequence_set } => {
                self.expunge(store, &tag, Some(&sequence_set), out).await
            }
            CommandBody::Search {
                charset,
                criteria,
                uid,
            } => {
                let charset = charset.map(|c| c.as_ref().to_ascii_uppercase());
                if let Some(cs) = charset.filter(|c| c != "UTF-8" && c != "US-ASCII") {
                    Err(ImapError::no_code(
                        "BADCHARSET (UTF-8 US-ASCII)",
                        format!("Unsupported charset {cs}"),
                    ))
                } else {
                    let keys: Vec<SearchKey<'_>> = criteria.into_inner();
                    // IMAP4rev2 (RFC 9051 §6.4.4): ESEARCH replaces SEARCH; no options = ALL.
                    let ret = extras.search_return.clone().or_else(|| {
                        self.rev2.then(|| SearchReturn {
                            all: true,
                            ..SearchReturn::default()
                        })
                    });
                    self.search(store, &tag, keys, uid, ret, out)
                }
            }
            CommandBody::Fetch {
                sequence_set,
                macro_or_item_names,
                uid,
                modifiers,
            } => {
                self.start_fetch(
                    store,
                    tag.clone(),
                    &sequence_set,
                    &macro_or_item_names,
                    uid,
                    &modifiers,
                    out,
                )
                .await
            }
            CommandBody::Store {
                sequence_set,
                kind,
                response,
                flags,
                uid,
                modifiers,
            } => {
                self.store(
                    store,
                    &tag,
                    &sequence_set,
                    kind,
                    response,
                    &flags,
                    uid,
                    &modifiers,
                    out,
                )
                .await
            }
            CommandBody::Copy {
                sequence_set,
                mailbox,
                uid,
            } => {
                self.copy(store, &tag, &sequence_set, &mailbox, uid, false, out)
                    .await
            }
            CommandBody::Move {
                sequence_set,
                mailbox,
                uid,
            } => {
                self.copy(store, &tag, &sequence_set, &mailbox, uid, true, out)
                    .await
            }
            _ => Err(ImapError::bad("Command not supported")),
        };
        match result {
            Ok(step) => step,
            Err(e) => {
                e.write_tagged(&tag, out);
                if e.is_bad() && self.count_error(out).is_some() {
                    return Step::Close;
                }
                Step::Done
            }
        }
    }

    /// Continue after [`Step::Flush`].
    pub async fn resume<S: MailStore>(&mut self, store: &S, out: &mut Vec<u8>) -> Step {
        self.continue_fetch(store, out)
    }

    /// During IDLE: a change notification arrived (the driver took one from
    /// [`ImapSession::change_receiver`]); write the updates.
    pub fn idle_update<S: MailStore>(&mut self, store: &S, out: &mut Vec<u8>) {
        if let Some(mb) = self.selected.as_mut() {
            mb.mark_dirty();
        }
        self.sync_selected(store, true, out);
    }

    async fn ensure_inbox<S: MailStore>(&mut self, store: &S) {
        let account = self.account.clone().unwrap_or_default();
        if store
            .list_mailboxes(&account)
            .iter()
            .any(|m| m.name == "INBOX")
        {
            return;
        }
        // The store creates an account's default mailboxes (INBOX, Sent, Drafts, Trash, Junk,
        // Archive) on its first write; creating one of them initializes a fresh account.
        match store.create_mailbox(&account, "Trash").await {
            Ok(()) | Err(StoreError::MailboxExists) => {}
            Err(e) => tracing::warn!(error = %e, "imap: cannot initialize the account"),
        }
        if !store
            .list_mailboxes(&account)
            .iter()
            .any(|m| m.name == "INBOX")
        {
            tracing::warn!(account, "imap: account has no INBOX");
        }
    }

    /// This session changed the selected mailbox itself: re-read it at the next sync rather
    /// than wait for the store's notification.
    fn mark_dirty_if_selected(&mut self, name: &str) {
        if let Some(mb) = self.selected.as_mut().filter(|m| m.name == name) {
            mb.mark_dirty();
        }
    }

    fn account_name(&self) -> String {
        self.account.clone().unwrap_or_default()
    }

    fn find_mailbox<S: MailStore>(&self, store: &S, name: &str) -> Option<MailboxInfo> {
        store
            .list_mailboxes(&self.account_name())
            .into_iter()
            .find(|m| m.name == name)
    }

    async fn select<S: MailStore>(
        &mut self,
        store: &S,
        tag: &str,
        mailbox: &Mailbox<'_>,
        params: &[SelectParameter],
        read_only: bool,
        out: &mut Vec<u8>,
    ) -> ImapResult<Step> {
        if self.selected.take().is_some() {
            self.state = State::Authenticated;
            if self.rev2 || self.reporting.qresync {
                out.extend_from_slice(b"* OK [CLOSED] Previous mailbox closed\r\n");
            }
        }
        self.state = State::Authenticated;
        let account = self.account_name();
        let name = mailbox_name(mailbox, self.rev2);
        let mut qresync = None;
        for p in params {
            match p {
                SelectParameter::CondStore => self.reporting.condstore = true,
                SelectParameter::QResync {
                    uid_validity,
                    mod_sequence_value,
                    known_uids,
                    ..
                } => {
                    if !self.reporting.qresync {
                        return Err(ImapError::bad("QRESYNC is not enabled"));
                    }
                    qresync = Some((
                        uid_validity.get(),
                        mod_sequence_value.get(),
                        known_uids.clone(),
                    ));
                }
            }
        }
        let changes = store.subscribe(&account, &name);
        let snapshot = store.snapshot(&account, &name)?;
        let mb = SelectedMailbox::new(name.clone(), read_only, snapshot, Some(changes));
        out.extend_from_slice(b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft");
        let keywords = mb.keywords();
        for k in &keywords {
            out.push(b' ');
            write_astring(out, k.as_bytes());
        }
        out.extend_from_slice(b")\r\n");
        if read_only {
            out.extend_from_slice(b"* OK [PERMANENTFLAGS ()] Read-only mailbox\r\n");
        } else {
            out.extend_from_slice(
                b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft",
            );
            for k in &keywords {
                out.push(b' ');
                write_astring(out, k.as_bytes());
            }
            out.extend_from_slice(b" \\*)] Flags permitted\r\n");
        }
        imap_w!(out, "* {} EXISTS\r\n", mb.exists());
        if !self.rev2 {
            out.extend_from_slice(b"* 0 RECENT\r\n");
            if let Some(i) = mb
                .messages
                .iter()
                .position(|m| m.flags.system.0 & SystemFlags::SEEN == 0)
            {
                imap_w!(out, "* OK [UNSEEN {}] First unseen\r\n", i + 1);
            }
        }
        imap_w!(out, "* OK [UIDVALIDITY {}] UIDs valid\r\n", mb.uidvalidity);
        imap_w!(out, "* OK [UIDNEXT {}] Predicted next UID\r\n", mb.uidnext);
        imap_w!(
            out,
            "* OK [HIGHESTMODSEQ {}] Highest\r\n",
            mb.highest_modseq.max(1)
        );
        if self.rev2 {
            // RFC 9051 §6.3.2: the LIST response carries the canonical name and attributes.
            let su = self.find_mailbox(store, &name).and_then(|i| i.special_use);
            imap_w!(
                out,
                "* LIST ({}) \"/\" ",
                su.map(special_use_attr).unwrap_or("")
            );
            write_mailbox(out, &name, true);
            out.extend_from_slice(b"\r\n");
        }
        if let Some((uidvalidity, modseq, known)) = qresync
            && uidvalidity == mb.uidvalidity
        {
            let mut gone = store.expunged_since(&account, &name, modseq)?;
            if let Some(known) = &known {
                gone.retain(|&u| sequence::contains(known, u, u32::MAX));
            }
            gone.sort_unstable();
            gone.dedup();
            if !gone.is_empty() {
                imap_w!(out, "* VANISHED (EARLIER) {}\r\n", format_sorted(&gone));
            }
            for (i, m) in mb.messages.iter().enumerate() {
                if m.modseq > modseq {
                    write_flags_fetch(out, i + 1, m, true, true);
                }
            }
        }
        self.selected = Some(mb);
        self.state = State::Selected;
        let mode = if read_only { "READ-ONLY" } else { "READ-WRITE" };
        imap_w!(
            out,
            "{tag} OK [{mode}] {} completed\r\n",
            if read_only { "EXAMINE" } else { "SELECT" }
        );
        Ok(Step::Done)
    }

    async fn create<S: MailStore>(
        &mut self,
        store: &S,
        tag: &str,
        mailbox: &Mailbox<'_>,
        out: &mut Vec<u8>,
    ) -> ImapResult<Step> {
        let name = mailbox_name(mailbox, self.rev2);
        if name == "INBOX" {
            return Err(ImapError::no_code("ALREADYEXISTS", "INBOX always exists"));
        }
        if name.is_empty() || name.split('/').any(|p| p.is_empty()) {
            return Err(ImapError::no_code("CANNOT", "Invalid mailbox name"));
        }
        store.create_mailbox(&self.account_name(), &name).await?;
        self.sync_selected(store, true, out);
        imap_w!(out, "{tag} OK CREATE completed\r\n");
        Ok(Step::Done)
    }

    async fn delete<S: MailStore>(
        &mut self,
        store: &S,
        tag: &str,
        mailbox: &Mailbox<'_>,
        out: &mut Vec<u8>,
    ) -> ImapResult<Step> {
        let name = mailbox_name(mailbox, self.rev2);
        if name == "INBOX" {
            return Err(ImapError::no_code("CANNOT", "INBOX cannot be deleted"));
        }
        store.delete_mailbox(&self.account_name(), &name).await?;
        self.mark_dirty_if_selected(&name);
        self.sync_selected(store, true, out);
        imap_w!(out, "{tag} OK DELETE completed\r\n");
        Ok(Step::Done)
    }

    async fn rename<S: MailStore>(
        &mut self,
        store: &S,
        tag: &str,
        from: &Mailbox<'_>,
        to: &Mailbox<'_>,
        out: &mut Vec<u8>,
    ) -> ImapResult<Step> {
        let (from, to) = (mailbox_name(from, self.rev2), mailbox_name(to, self.rev2));
        if to == "INBOX" {
            return Err(ImapError::no_code("ALREADYEXISTS", "INBOX always exists"));
        }
        store
            .rename_mailbox(&self.account_name(), &from, &to)
            .await?;
        self.mark_dirty_if_selected(&from);
        self.sync_selected(store, true, out);
        imap_w!(out, "{tag} OK RENAME completed\r\n");
        Ok(Step::Done)
    }

    async fn subscribe<S: MailStore>(
        &mut self,
        store: &S,
        tag: &str,
        mailbox: &Mailbox<'_>,
        on: bool,
        out: &mut Vec<u8>,
    ) -> ImapResult<Step> {
        let name = mailbox_name(mailbox, self.rev2);
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
    fn list<S: MailStore>(
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
        let pattern = match pattern {
            ListMailbox::Token(t) => String::from_utf8_lossy(t.as_ref()).into_owned(),
            ListMailbox::String(s) => String::from_utf8_lossy(s.as_ref()).into_owned(),
        };
        let pattern = if self.rev2 {
            pattern
        } else {
            mutf7_decode(&pattern).unwrap_or(pattern)
        };
        if pattern.is_empty() && !opts.extended {
            imap_w!(
                out,
                "* {verb} (\\Noselect) \"/\" \"\"\r\n{tag} OK {verb} completed\r\n"
            );
            return Ok(Step::Done);
        }
        let full = if pattern.starts_with('/') || reference.is_empty() {
            pattern.clone()
        } else if reference.ends_with('/') {
            format!("{reference}{pattern}")
        } else {
            format!("{reference}/{pattern}")
        };
        if full.len() > MAX_LIST_PATTERN {
            return Err(ImapError::bad("Mailbox pattern too long"));
        }
        let mut boxes = store.list_mailboxes(&self.account_name());
        boxes.sort_by(|a, b| a.name.cmp(&b.name));
        // Every proper ancestor of a mailbox has children; ancestors of subscribed mailboxes
        // have subscribed children (RECURSIVEMATCH / CHILDINFO).
        let mut parents: HashSet<&str> = HashSet::new();
        let mut subscribed_parents: HashSet<&str> = HashSet::new();
        for b in &boxes {
            for (i, _) in b.name.match_indices('/') {
                parents.insert(&b.name[..i]);
                if b.subscribed {
                    subscribed_parents.insert(&b.name[..i]);
                }
            }
        }
        for b in &boxes {
            if !inbox_fold(&full, &b.name) {
                continue;
            }
            let child_subscribed = subscribed_parents.contains(b.name.as_str());
            if opts.select_subscribed
                && !b.subscribed
                && !(opts.recursive_match && child_subscribed)
            {
                continue;
            }
            if opts.select_special_use && b.special_use.is_none() {
                continue;
            }
            let has_children = parents.contains(b.name.as_str());
            let mut attrs: Vec<&str> = Vec::new();
            if !lsub {
                attrs.push(if has_children {
                    "\\HasChildren"
                } else {
                    "\\HasNoChildren"
                });
                if (opts.select_subscribed || opts.return_subscribed) && b.subscribed {
                    attrs.push("\\Subscribed");
                }
                if let Some(su) = b.special_use {
                    attrs.push(special_use_attr(su));
                }
            }
            imap_w!(out, "* {verb} ({}) \"/\" ", attrs.join(" "));
            write_mailbox(out, &b.name, self.rev2);
            if opts.recursive_match && opts.select_subscribed && !b.subscribed && child_subscribed {
                out.extend_from_slice(b" (\"CHILDINFO\" (\"SUBSCRIBED\"))");
            }
            out.extend_from_slice(b"\r\n");
            if let Some(items) = &opts.return_status {
                write_status(out, b, self.rev2, items.iter().map(String::as_str));
            }
        }
        self.sync_selected(store, true, out);
        imap_w!(out, "{tag} OK {verb} completed\r\n");
        Ok(Step::Done)
    }

    fn status<S: MailStore>(
        &mut self,
        store: &S,
        tag: &str,
        mailbox: &Mailbox<'_>,
        items: &[StatusDataItemName],
        out: &mut Vec<u8>,
    ) -> ImapResult<Step> {
        let name = mailbox_name(mailbox, self.rev2);
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
        if names.contains(&"HIGHESTMODSEQ") {
            self.reporting.condstore = true;
        }
        write_status(out, &info, self.rev2, names.into_iter());
        self.sync_selected(store, true, out);
        imap_w!(out, "{tag} OK STATUS completed\r\n");
        Ok(Step::Done)
    }

    #[allow(clippy::too_many_arguments)]
    /// APPEND of one message, or MULTIAPPEND of several (all in one store commit).
    async fn append<S: MailStore>(
        &mut self,
        store: &S,
        tag: &str,
        mailbox: &Mailbox<'_>,
        messages: Vec<(Flags, Option<i64>, Vec<u8>)>,
        out: &mut Vec<u8>,
    ) -> ImapResult<Step> {
        let name = mailbox_name(mailbox, self.rev2);
        if self.find_mailbox(store, &name).is_none() {
            return Err(ImapError::no_code("TRYCREATE", "No such mailbox"));
        }
        if messages.iter().any(|m| m.2.is_empty()) {
            return Err(ImapError::no("Empty message"));
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let account = self.account_name();
        let batch = messages
            .into_iter()
            .map(|(flags, date, bytes)| NewMessage {
                account: account.clone(),
                mailbox: name.clone(),
                bytes,
                flags,
                internal_date: date.unwrap_or(now),
            })
            .collect();
        let appended = store.append(batch).await?;
        // Report the new message in this response (RFC 9051 §6.3.12).
        self.mark_dirty_if_selected(&name);
        let uidvalidity = appended
            .first()
            .ok_or_else(|| ImapError::no_code("SERVERBUG", "Append failed"))?
            .uidvalidity;
        let uids: Vec<u32> = appended.iter().map(|a| a.uid).collect();
        self.sync_selected(store, true, out);
        imap_w!(
            out,
            "{tag} OK [APPENDUID {uidvalidity} {}] APPEND completed\r\n",
            format_sorted(&uids)
        );
        Ok(Step::Done)
    }

    async fn close<S: MailStore>(
        &mut self,
        store: &S,
        tag: &str,
        expunge: bool,
        out: &mut Vec<u8>,
    ) -> ImapResult<Step> {
        let mb = self
            .selected
            .take()
            .ok_or_else(|| ImapError::bad("No mailbox selected"))?;
        self.state = State::Authenticated;
        if expunge && !mb.read_only {
            let deleted: Vec<u32> = mb
                .messages
                .iter()
                .filter(|m| m.flags.system.0 & SystemFlags::DELETED != 0)
                .map(|m| m.uid)
                .collect();
            if !deleted.is_empty() {
                store
                    .expunge(&self.account_name(), &mb.name, &deleted)
                    .await?;
            }
        }
        imap_w!(
            out,
            "{tag} OK {} completed\r\n",
            if expunge { "CLOSE" } else { "UNSELECT" }
        );
        Ok(Step::Done)
    }

    async fn expunge<S: MailStore>(
        &mut self,
        store: &S,
        tag: &str,
        set: Option<&SequenceSet>,
        out: &mut Vec<u8>,
    ) -> ImapResult<Step> {
        let account = self.account_name();
        let rep = self.reporting;
        let mb = self
            .selected
            .as_mut()
            .ok_or_else(|| ImapError::bad("No mailbox selected"))?;
        if mb.read_only {
            return Err(ImapError::no_code("READ-ONLY", "Mailbox is read-only"));
        }
        let candidates: Vec<usize> = match set {
            Some(s) => mb.resolve_uid(s),
            None => (0..mb.messages.len()).collect(),
        };
        let deleted: Vec<u32> = candidates
            .into_iter()
            .map(|i| &mb.messages[i])
            .filter(|m| m.flags.system.0 & SystemFlags::DELETED != 0)
            .map(|m| m.uid)
            .collect();
        if !deleted.is_empty() {
            let gone = store.expunge(&account, &mb.name, &deleted).await?;
            mb.expunged_here(&gone, rep, out);
        }
        self.sync_selected(store, true, out);
        let highest = self.selected.as_ref().map_or(0, |m| m.highest_modseq);
        if rep.condstore {
            imap_w!(
                out,
                "{tag} OK [HIGHESTMODSEQ {highest}] EXPUNGE completed\r\n"
            );
        } else {
            imap_w!(out, "{tag} OK EXPUNGE completed\r\n");
        }
        Ok(Step::Done)
    }

    fn search<S: MailStore>(
        &mut self,
        store: &S,
        tag: &str,
        keys: Vec<SearchKey<'_>>,
        uid: bool,
        ret: Option<SearchReturn>,
        out: &mut Vec<u8>,
    ) -> ImapResult<Step> {
        let account = self.account_name();
        let mb = self
            .selected
            .as_ref()
            .ok_or_else(|| ImapError::bad("No mailbox selected"))?;
        let key = if keys.len() == 1 {
            keys.into_iter().next().unwrap_or(SearchKey::All)
        } else {
            SearchKey::And(
                keys.try_into()
                    .map_err(|_| ImapError::bad("Empty search"))?,
            )
        };
        let mentions_modseq = search::mentions_modseq(&key);
        if mentions_modseq {
            self.reporting.condstore = true;
        }
        let exists = mb.exists();
        let max_uid = mb.max_uid();
        let mut loader = |u: u32| store.read(&account, &mb.name, u).ok();
        let mut hits: Vec<u32> = Vec::new();
        let mut max_modseq = 0;
        for (i, meta) in mb.messages.iter().enumerate() {
            let mut m = SearchMessage::new(i as u32 + 1, meta, exists, max_uid, &mut loader);
            if search::matches(&key, &mut m) {
                hits.push(if uid { meta.uid } else { i as u32 + 1 });
                max_modseq = max_modseq.max(meta.modseq);
            }
        }
        match ret {
            Some(r) => {
                imap_w!(out, "* ESEARCH (TAG \"{tag}\")");
                if uid {
                    out.extend_from_slice(b" UID");
                }
                if !hits.is_empty() {
                    if r.min {
                        imap_w!(out, " MIN {}", hits[0]);
                    }
                    if r.max {
                        imap_w!(out, " MAX {}", hits[hits.len() - 1]);
                    }
                    if r.all {
                        imap_w!(out, " ALL {}", format_sorted(&hits));
                    }
                }
                if r.count {
                    imap_w!(out, " COUNT {}", hits.len());
                }
                if mentions_modseq && !hits.is_empty() {
                    imap_w!(out, " MODSEQ {max_modseq}");
                }
                out.extend_from_slice(b"\r\n");
            }
            None => {
                out.extend_from_slice(b"* SEARCH");
                for h in &hits {
                    imap_w!(out, " {h}");
                }
                if mentions_modseq && !hits.is_empty() {
                    imap_w!(out, " (MODSEQ {max_modseq})");
                }
                out.extend_from_slice(b"\r\n");
            }
        }
        self.sync_selected(store, uid, out);
        imap_w!(out, "{tag} OK SEARCH completed\r\n");
        Ok(Step::Done)
    }

    #[allow(clippy::too_many_arguments)]
    async fn store<S: MailStore>(
        &mut self,
        store: &S,
        tag: &str,
        set: &SequenceSet,
        kind: StoreType,
        response: StoreResponse,
        flags: &[Flag<'_>],
        uid: bool,
        modifiers: &[StoreModifier],
        out: &mut Vec<u8>,
    ) -> ImapResult<Step> {
        let account = self.account_name();
        let unchanged_since = modifiers
            .iter()
            .map(|StoreModifier::UnchangedSince(v)| *v)
            .next();
        if unchanged_since.is_some() {
            self.reporting.condstore = true;
        }
        let rep = self.reporting;
        let mb = self
            .selected
            .as_mut()
            .ok_or_else(|| ImapError::bad("No mailbox selected"))?;
        if mb.read_only {
            return Err(ImapError::no_code("READ-ONLY", "Mailbox is read-only"));
        }
        let indices = if uid {
            mb.resolve_uid(set)
        } else {
            sequence::resolve_msn(set, mb.exists())?
        };
        let mut modified = Vec::new();
        let mut uids = Vec::with_capacity(indices.len());
        for &i in &indices {
            let m = &mb.messages[i];
            match unchanged_since {
                Some(us) if m.modseq > us => modified.push(if uid { m.uid } else { i as u32 + 1 }),
                _ => uids.push(m.uid),
            }
        }
        let op = match kind {
            StoreType::Replace => FlagOp::Replace,
            StoreType::Add => FlagOp::Add,
            StoreType::Remove => FlagOp::Remove,
        };
        let changed = if uids.is_empty() {
            Vec::new()
        } else {
            store
                .store_flags(
                    &account,
                    &mb.name,
                    &uids,
                    op,
                    to_flags(flags),
                    unchanged_since,
                )
                .await?
        };
        let changed_idx = mb.apply_flags(&changed);
        // Messages the store refused under UNCHANGEDSINCE (changed meanwhile elsewhere).
        if let Some(us) = unchanged_since {
            let done: std::collections::HashSet<u32> = changed.iter().map(|c| c.0).collect();
            for &u in &uids {
                if !done.contains(&u)
                    && let Some(i) = mb.index_of(u)
                    && mb.messages[i].modseq > us
                {
                    modified.push(if uid { u } else { i as u32 + 1 });
                }
            }
        }
        let silent = response == StoreResponse::Silent;
        for i in changed_idx {
            if !silent || rep.condstore {
                let m = &mb.messages[i];
                if silent {
                    imap_w!(out, "* {} FETCH (", i + 1);
                    if uid || rep.qresync {
                        imap_w!(out, "UID {} ", m.uid);
                    }
                    imap_w!(out, "MODSEQ ({}))\r\n", m.modseq);
                } else {
                    write_flags_fetch(out, i + 1, m, uid || rep.qresync, rep.condstore);
                }
            }
        }
        self.sync_selected(store, uid, out);
        if modified.is_empty() {
            imap_w!(out, "{tag} OK STORE completed\r\n");
        } else {
            imap_w!(
                out,
                "{tag} OK [MODIFIED {}] Conditional STORE failed\r\n",
                sequence::format_set(&modified)
            );
        }
        Ok(Step::Done)
    }

    #[allow(clippy::too_many_arguments)]
    async fn copy<S: MailStore>(
        &mut self,
        store: &S,
        tag: &str,
        set: &SequenceSet,
        dest: &Mailbox<'_>,
        uid: bool,
        is_move: bool,
        out: &mut Vec<u8>,
    ) -> ImapResult<Step> {
        let account = self.account_name();
        let rep = self.reporting;
        let dest = mailbox_name(dest, self.rev2);
        let Some(dest_info) = self.find_mailbox(store, &dest) else {
            return Err(ImapError::no_code("TRYCREATE", "No such mailbox"));
        };
        let mb = self
            .selected
            .as_mut()
            .ok_or_else(|| ImapError::bad("No mailbox selected"))?;
        if is_move && mb.read_only {
            return Err(ImapError::no_code("READ-ONLY", "Mailbox is read-only"));
        }
        let indices = if uid {
            mb.resolve_uid(set)
        } else {
            sequence::resolve_msn(set, mb.exists())?
        };
        let uids: Vec<u32> = indices.iter().map(|&i| mb.messages[i].uid).collect();
        if uids.is_empty() {
            self.sync_selected(store, uid, out);
            imap_w!(out, "{tag} OK No messages\r\n");
            return Ok(Step::Done);
        }
        let pairs = store.copy(&account, &mb.name, &dest, &uids).await?;
        let (src, dst) = uid_pair_sets(&pairs);
        let copyuid = format!("COPYUID {} {src} {dst}", dest_info.uidvalidity);
        if is_move {
            imap_w!(out, "* OK [{copyuid}] Moved\r\n");
            let moved: Vec<u32> = pairs.iter().map(|p| p.0).collect();
            let gone = store.expunge(&account, &mb.name, &moved).await?;
            mb.expunged_here(&gone, rep, out);
            self.sync_selected(store, true, out);
            imap_w!(out, "{tag} OK MOVE completed\r\n");
        } else {
            if mb.name == dest {
                mb.mark_dirty();
            }
            self.sync_selected(store, true, out);
            imap_w!(out, "{tag} OK [{copyuid}] COPY completed\r\n");
        }
        Ok(Step::Done)
    }
}

/// COPYUID source and destination sets, in corresponding order, with runs that are
/// consecutive on both sides compressed to ranges.
pub(crate) fn uid_pair_sets(pairs: &[(u32, u32)]) -> (String, String) {
    let (mut src, mut dst) = (String::new(), String::new());
    let mut i = 0;
    while i < pairs.len() {
        let mut j = i;
        while j + 1 < pairs.len()
            && pairs[j + 1].0 == pairs[j].0 + 1
            && pairs[j + 1].1 == pairs[j].1 + 1
        {
            j += 1;
        }
        if !src.is_empty() {
            src.push(',');
            dst.push(',');
        }
        if i == j {
            src.push_str(&pairs[i].0.to_string());
            dst.push_str(&pairs[i].1.to_string());
        } else {
            src.push_str(&format!("{}:{}", pairs[i].0, pairs[j].0));
            dst.push_str(&format!("{}:{}", pairs[i].1, pairs[j].1));
        }
        i = j + 1;
    }
    (src, dst)
}

/// `* STATUS name (ITEM n ...)` for the given upper-case item names.
fn write_status<'a>(
    out: &mut Vec<u8>,
    info: &MailboxInfo,
    rev2: bool,
    items: impl Iterator<Item = &'a str>,
) {
    out.extend_from_slice(b"* STATUS ");
    write_mailbox(out, &info.name, rev2);
    out.extend_from_slice(b" (");
    let mut first = true;
    for item in items {
        let value = match item {
            "MESSAGES" => info.messages as u64,
            "RECENT" => 0,
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

    #[test]
    fn copyuid_sets() {
        let (s, d) = uid_pair_sets(&[(1, 10), (2, 11), (3, 12), (7, 13), (9, 20)]);
        assert_eq!((s.as_str(), d.as_str()), ("1:3,7,9", "10:12,13,20"));
    }
}
