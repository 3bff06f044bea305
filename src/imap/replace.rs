//! REPLACE (RFC 8508): `REPLACE n mailbox [flags] [date] literal` and `UID REPLACE`, for
//! clients that save drafts as they are typed.
//!
//! imap-codec does not parse REPLACE, but everything after the message number is APPEND's
//! syntax: [`extract_replace`] rewrites the command into an APPEND for imap-codec and keeps
//! the number beside it in the command extras.
//!
//! The replacement is appended first and the old message expunged only once that append is
//! durable, so a failure leaves at worst both messages, never neither. The responses follow
//! RFC 8508 §3.4: the APPENDUID of the new message in an untagged OK (the tagged OK has no
//! room for it), EXISTS when the new message lands in the selected mailbox, then EXPUNGE
//! (VANISHED under QRESYNC) for the old one.

use imap_codec::imap_types::mailbox::Mailbox;

use super::commands::mailbox_name;
use super::session::{ImapSession, Step};
use super::{ImapError, ImapResult};
use crate::imap_w;
use crate::store::{Flags, MailStore, NewMessage};

/// The message a REPLACE replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplaceTarget {
    /// A message sequence number, or a UID for UID REPLACE.
    pub id: u32,
    pub uid: bool,
}

/// Rewrite `tag [UID] REPLACE n rest` into `tag APPEND rest`. `verb_at` is where REPLACE
/// starts; `uid` tells whether `UID` preceded it. None when the command is not a REPLACE.
pub fn extract_replace(
    cmd: &[u8],
    after_tag: usize,
    verb_at: usize,
    uid: bool,
) -> Result<Option<(Vec<u8>, ReplaceTarget)>, String> {
    const VERB: &[u8] = b"REPLACE ";
    if cmd.len() < verb_at + VERB.len()
        || !cmd[verb_at..verb_at + VERB.len()].eq_ignore_ascii_case(VERB)
    {
        return Ok(None);
    }
    let num_at = verb_at + VERB.len();
    let digits = cmd[num_at..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    let id = std::str::from_utf8(&cmd[num_at..num_at + digits])
        .ok()
        .and_then(|d| d.parse::<u32>().ok())
        .filter(|&n| n > 0 && !cmd[num_at..].starts_with(b"0"))
        .ok_or("Invalid message number")?;
    if cmd.get(num_at + digits) != Some(&b' ') {
        return Err("Invalid message number".into());
    }
    let mut out = cmd[..after_tag].to_vec();
    out.extend_from_slice(b"APPEND ");
    out.extend_from_slice(&cmd[num_at + digits + 1..]);
    Ok(Some((out, ReplaceTarget { id, uid })))
}

impl ImapSession {
    /// REPLACE / UID REPLACE of a message of the selected mailbox by `message`, appended to
    /// `mailbox` (which may be another one).
    pub(crate) async fn replace<S: MailStore>(
        &mut self,
        store: &S,
        tag: &str,
        target: ReplaceTarget,
        mailbox: &Mailbox<'_>,
        message: (Flags, Option<i64>, Vec<u8>),
        out: &mut Vec<u8>,
    ) -> ImapResult<Step> {
        let rep = self.reporting;
        let account = self.account.clone().unwrap_or_default();
        let mb = self
            .selected
            .as_ref()
            .ok_or_else(|| ImapError::bad("No mailbox selected"))?;
        if mb.read_only {
            return Err(ImapError::no_code("READ-ONLY", "Mailbox is read-only"));
        }
        let index = if target.uid {
            mb.index_of(target.id)
        } else {
            (target.id as usize)
                .checked_sub(1)
                .filter(|&i| i < mb.messages.len())
        };
        // A bad sequence number is a protocol error (as in every command taking one); a UID
        // that no longer exists is an ordinary failure.
        let index = match index {
            Some(i) => i,
            None if target.uid => return Err(ImapError::no("No such message")),
            None => return Err(ImapError::bad("Invalid message sequence number")),
        };
        let old_uid = mb.messages[index].uid;
        if mb.pending_expunge.contains(&old_uid) {
            return Err(ImapError::no_code(
                "EXPUNGEISSUED",
                "The message has been expunged",
            ));
        }
        let source = mb.name.clone();
        let name = mailbox_name(mailbox, self.rev2)?;
        self.target_mailbox(store, &name)?;
        let (flags, date, bytes) = message;
        if bytes.is_empty() {
            return Err(ImapError::no("Empty message"));
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let appended = store
            .append(vec![NewMessage {
                account: account.clone(),
                mailbox: name.clone(),
                bytes: bytes.into(),
                flags,
                internal_date: date.unwrap_or(now),
            }])
            .await?;
        let new = appended
            .first()
            .ok_or_else(|| ImapError::no_code("SERVERBUG", "Append failed"))?;
        imap_w!(
            out,
            "* OK [APPENDUID {} {}] Replacement Message ready\r\n",
            new.uidvalidity,
            new.uid
        );
        self.mark_dirty_if_selected(&name);
        self.sync_selected(store, false, out);
        let gone = store.expunge(&account, &source, &[old_uid]).await?;
        if let Some(mb) = self.selected.as_mut() {
            mb.expunged_here(&gone, rep, out);
        }
        self.sync_selected(store, true, out);
        imap_w!(out, "{tag} OK REPLACE completed\r\n");
        Ok(Step::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut(cmd: &str) -> Result<Option<(String, ReplaceTarget)>, String> {
        let after_tag = cmd.find(' ').unwrap() + 1;
        let uid = cmd[after_tag..].to_ascii_uppercase().starts_with("UID ");
        let verb_at = after_tag + if uid { 4 } else { 0 };
        extract_replace(cmd.as_bytes(), after_tag, verb_at, uid)
            .map(|o| o.map(|(c, t)| (String::from_utf8(c).unwrap(), t)))
    }

    #[test]
    fn replace_is_rewritten_into_append() {
        assert_eq!(
            cut("a REPLACE 4 Drafts (\\Seen) {3}\r\nabc\r\n"),
            Ok(Some((
                "a APPEND Drafts (\\Seen) {3}\r\nabc\r\n".into(),
                ReplaceTarget { id: 4, uid: false }
            )))
        );
        assert_eq!(
            cut("a uid replace 4294967295 INBOX {1+}\r\nx\r\n"),
            Ok(Some((
                "a APPEND INBOX {1+}\r\nx\r\n".into(),
                ReplaceTarget {
                    id: u32::MAX,
                    uid: true
                }
            )))
        );
        assert_eq!(cut("a APPEND INBOX {1}\r\nx\r\n"), Ok(None));
        assert_eq!(cut("a REPLACEX 1 INBOX {1}\r\nx\r\n"), Ok(None));
        for bad in [
            "a REPLACE 0 INBOX {1}\r\nx\r\n",
            "a REPLACE 01 INBOX {1}\r\nx\r\n",
            "a REPLACE 4294967296 INBOX {1}\r\nx\r\n",
            "a REPLACE * INBOX {1}\r\nx\r\n",
            "a REPLACE 1:2 INBOX {1}\r\nx\r\n",
            "a REPLACE 1\r\n",
            "a REPLACE \r\n",
        ] {
            assert_eq!(cut(bad), Err("Invalid message number".into()), "{bad}");
        }
    }
}
