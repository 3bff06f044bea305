//! APPEND and MULTIAPPEND (RFC 3502): all messages in one store commit, APPENDUID.

use imap_codec::imap_types::mailbox::Mailbox;

use super::mailbox_name;
use crate::imap::sequence::format_sorted;
use crate::imap::session::{ImapSession, Step};
use crate::imap::{ImapError, ImapResult};
use crate::imap_w;
use crate::store::{Flags, MailStore, NewMessage};

impl ImapSession {
    /// APPEND of one message, or MULTIAPPEND of several (all in one store commit).
    pub(super) async fn append<S: MailStore>(
        &mut self,
        store: &S,
        tag: &str,
        mailbox: &Mailbox<'_>,
        messages: Vec<(Flags, Option<i64>, Vec<u8>)>,
        out: &mut Vec<u8>,
    ) -> ImapResult<Step> {
        let name = mailbox_name(mailbox, self.rev2)?;
        self.target_mailbox(store, &name)?;
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
                bytes: bytes.into(),
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
}
