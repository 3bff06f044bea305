//! SELECT / EXAMINE (CONDSTORE, QRESYNC) and CLOSE / UNSELECT.

use imap_codec::imap_types::{command::SelectParameter, mailbox::Mailbox};

use super::{mailbox_name, special_use_attr, write_mailbox};
use crate::imap::mailbox::{SelectedMailbox, write_flags_fetch};
use crate::imap::sequence::{self, format_sorted};
use crate::imap::session::{ImapSession, State, Step};
use crate::imap::{ImapError, ImapResult};
use crate::imap_w;
use crate::store::{MailStore, SystemFlags};

impl ImapSession {
    pub(super) async fn select<S: MailStore>(
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
        let name = mailbox_name(mailbox, self.rev2)?;
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
        let mut mb = SelectedMailbox::new(name.clone(), read_only, snapshot, Some(changes));
        mb.track_recent(self.config.recent.clone(), &account);
        mb.write_flag_lists(out);
        imap_w!(out, "* {} EXISTS\r\n", mb.exists());
        if !self.rev2 {
            imap_w!(out, "* {} RECENT\r\n", mb.recent_count());
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
            "* OK [MAILBOXID ({})] Ok\r\n",
            super::super::objectid::mailbox_id(mb.id, mb.uidvalidity)
        );
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
                    let recent = mb.is_recent(m.uid, self.reporting);
                    write_flags_fetch(out, i + 1, m, true, true, recent);
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

    pub(super) async fn close<S: MailStore>(
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
}
