//! Store-backed commands: [`ImapSession::execute`] and the handlers it dispatches to.
//!
//! Every handler writes its untagged responses and its own tagged OK (response codes such as
//! APPENDUID differ per command); failures come back as [`ImapError`] and are written in one
//! place. Before a tagged OK in the Selected state, pending mailbox updates are sent through
//! [`ImapSession::sync_selected`], with EXPUNGE allowed only where RFC 9051 §7.5.1 allows it.
//!
//! One file per command group: `select` (SELECT/EXAMINE, CLOSE/UNSELECT), `mailboxes`
//! (CREATE, DELETE, RENAME, (UN)SUBSCRIBE, LIST/LSUB, STATUS), `append` (APPEND and
//! MULTIAPPEND), `messages` (EXPUNGE, SEARCH, STORE, COPY/MOVE). FETCH lives in
//! [`super::fetch`].

mod append;
pub(crate) mod mailboxes;
mod messages;
mod select;

use imap_codec::imap_types::{
    command::CommandBody, extensions::binary::LiteralOrLiteral8, flag::Flag, mailbox::Mailbox,
    search::SearchKey,
};

use super::codec::{ListOptions, SearchReturn, mutf7_decode, mutf7_encode, write_astring};
use super::session::{ImapCommand, ImapSession, Mode, Step};
use super::{ImapError, ImapResult};
use crate::imap_w;
use crate::store::names::check_name;
use crate::store::{Flags, MailStore, MailboxInfo, SpecialUse, StoreError, SystemFlags};

/// The name a client's mailbox argument refers to (INBOX is case-insensitive). Names are
/// stored in UTF-8: IMAP4rev2 clients send UTF-8 (RFC 9051 §5.1), IMAP4rev1 clients modified
/// UTF-7 (RFC 3501 §5.1.3), decoded here. A name that is not valid in the session's encoding
/// is refused (`NO [CANNOT]`) by every command: stored, it would be listed under a name the
/// client never wrote and could not open.
pub(crate) fn mailbox_name(m: &Mailbox<'_>, utf8: bool) -> ImapResult<String> {
    match m {
        Mailbox::Inbox => Ok("INBOX".into()),
        Mailbox::Other(o) => {
            let raw = std::str::from_utf8(o.as_ref());
            let name = if utf8 {
                raw.map_err(|_| ImapError::no_code("CANNOT", "Mailbox name is not valid UTF-8"))?
                    .to_string()
            } else {
                raw.ok().and_then(mutf7_decode).ok_or_else(|| {
                    ImapError::no_code("CANNOT", "Mailbox name is not valid modified UTF-7")
                })?
            };
            Ok(if name.eq_ignore_ascii_case("INBOX") {
                "INBOX".into()
            } else {
                name
            })
        }
    }
}

/// Write a stored (UTF-8) mailbox name for this client (modified UTF-7 for IMAP4rev1).
pub(crate) fn write_mailbox(out: &mut Vec<u8>, name: &str, rev2: bool) {
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
            CommandBody::Noop if let Some(request) = extras.notify.clone() => {
                self.notify_command(store, &tag, *request, out)
            }
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
            } => self.status(
                store,
                &tag,
                &mailbox,
                &item_names,
                extras.status_mailboxid,
                out,
            ),
            CommandBody::Append {
                mailbox,
                flags,
                date,
                message,
            } => {
                let mut first = (
                    to_flags(&flags),
                    date.map(|d| d.as_ref().timestamp()),
                    literal_bytes(message),
                );
                if let Some(parts) = &extras.catenate {
                    // The literal imap-codec parsed only stood in for the CATENATE list.
                    match self.catenated(store, parts) {
                        Ok(bytes) if bytes.len() > self.config.max_literal as usize => {
                            let e = ImapError::no_code("TOOBIG", "Message too large");
                            e.write_tagged(&tag, out);
                            return Step::Done;
                        }
                        Ok(bytes) => first.2 = bytes,
                        Err(url) => {
                            // RFC 4469 §5: the URL goes back in the response code.
                            let url: String = url
                                .chars()
                                .filter(|c| !matches!(c, ']' | '\r' | '\n'))
                                .collect();
                            imap_w!(out, "{tag} NO [BADURL {url}] URL not found\r\n");
                            return Step::Done;
                        }
                    }
                }
                if let Some(target) = extras.replace {
                    self.replace(store, &tag, target, &mailbox, first, out)
                        .await
                } else {
                    let mut messages = vec![first];
                    for m in extras.more_appends {
                        messages.push((
                            to_flags(&m.flags),
                            m.date.map(|d| d.as_ref().timestamp()),
                            literal_bytes(m.message),
                        ));
                    }
                    self.append(store, &tag, &mailbox, messages, out).await
                }
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
                    if extras.search_return.as_ref().is_some_and(|r| r.save) {
                        self.forget_result();
                    }
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
            CommandBody::Sort {
                sort_criteria,
                charset,
                search_criteria,
                uid,
            } => self.sort(
                store,
                &tag,
                sort_criteria.as_ref(),
                &charset,
                search_criteria.into_inner(),
                uid,
                extras.search_return.clone(),
                out,
            ),
            CommandBody::Thread {
                algorithm,
                charset,
                search_criteria,
                uid,
            } => self.thread(
                store,
                &tag,
                &algorithm,
                &charset,
                search_criteria.into_inner(),
                uid,
                out,
            ),
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
                    extras.preview,
                    extras.fetch_items,
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
        self.continue_fetch(store, out).await
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
    pub(crate) fn mark_dirty_if_selected(&mut self, name: &str) {
        if let Some(mb) = self.selected.as_mut().filter(|m| m.name == name) {
            mb.mark_dirty();
        }
    }

    fn account_name(&self) -> String {
        self.account.clone().unwrap_or_default()
    }

    /// The target of APPEND, COPY or MOVE. A missing one is answered `NO [TRYCREATE]` only if
    /// CREATE could make it (the store's own name rules, with the same limits); otherwise the
    /// client would loop on CREATE, so `NO [CANNOT]`. An existing mailbox stays writable even
    /// if the limits have shrunk since it was made.
    pub(crate) fn target_mailbox<S: MailStore>(
        &self,
        store: &S,
        name: &str,
    ) -> ImapResult<MailboxInfo> {
        match self.find_mailbox(store, name) {
            Some(info) => Ok(info),
            None => {
                check_name(name, &self.config.limits.mailboxes).map_err(|e| {
                    ImapError::no_code("CANNOT", format!("Invalid mailbox name: {e}"))
                })?;
                Err(ImapError::no_code("TRYCREATE", "No such mailbox"))
            }
        }
    }

    fn find_mailbox<S: MailStore>(&self, store: &S, name: &str) -> Option<MailboxInfo> {
        store
            .list_mailboxes(&self.account_name())
            .into_iter()
            .find(|m| m.name == name)
    }
}
