//! Local delivery (the MDA step): an accepted SMTP transaction becomes one stored message per
//! recipient account, in that account's INBOX.
//!
//! Each account gets its own copy, prefixed with `Return-Path` (the envelope sender) and
//! `Delivered-To` (the account). Copies rather than shared references keep accounts
//! independent — they may live on different shards now and on different nodes later — and
//! the copies are appended in one batch, so they share the group commit of their shards.
//! An account named by several recipients (aliases, `+tag`s) receives the message once.

use crate::store::{Flags, MailStore, NewMessage, StoreError};

/// Why a delivery was not done; maps to the SMTP reply in one place.
#[derive(Debug)]
pub enum DeliveryError {
    /// Try again later (451): the store failed or is shutting down.
    Temporary(String),
}

impl From<StoreError> for DeliveryError {
    fn from(e: StoreError) -> Self {
        DeliveryError::Temporary(e.to_string())
    }
}

/// One message to deliver locally.
pub struct LocalMessage<'a> {
    /// Envelope sender; empty for the null sender `<>`.
    pub mail_from: &'a str,
    /// Target accounts, canonical; duplicates are delivered once.
    pub accounts: Vec<&'a str>,
    /// The message as received, with the Received header already prepended.
    pub message: &'a [u8],
}

/// Stores the message in every target account's INBOX. Returns once all copies are durable.
pub async fn deliver<S: MailStore>(store: &S, msg: LocalMessage<'_>) -> Result<(), DeliveryError> {
    let mut accounts = msg.accounts;
    accounts.sort_unstable();
    accounts.dedup();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let batch = accounts
        .iter()
        .map(|account| NewMessage {
            account: account.to_string(),
            mailbox: "INBOX".to_string(),
            bytes: with_trace_headers(msg.mail_from, account, msg.message).into(),
            flags: Flags::default(),
            internal_date: now,
        })
        .collect();
    store.append(batch).await?;
    Ok(())
}

/// `Return-Path` and `Delivered-To` go on top, as the final delivery step (RFC 5321 §4.4).
pub fn with_trace_headers(mail_from: &str, account: &str, message: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(message.len() + mail_from.len() + account.len() + 34);
    bytes.extend_from_slice(b"Return-Path: <");
    bytes.extend_from_slice(mail_from.as_bytes());
    bytes.extend_from_slice(b">\r\nDelivered-To: ");
    bytes.extend_from_slice(account.as_bytes());
    bytes.extend_from_slice(b"\r\n");
    bytes.extend_from_slice(message);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_headers_come_first() {
        let out = with_trace_headers("", "bob@x.test", b"Subject: hi\r\n\r\nbody\r\n");
        assert_eq!(
            out,
            b"Return-Path: <>\r\nDelivered-To: bob@x.test\r\nSubject: hi\r\n\r\nbody\r\n"
        );
    }
}
